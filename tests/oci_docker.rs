//! dockerd (started by each test on a containerd of its own) runs its containers through the
//! runtime under test: `dockerd --add-runtime NAME=PATH`, then `docker run --runtime NAME` and what
//! a docker user does next, checked from the host too. The runtime is POC_OCI_RUNTIME (e.g.
//! /usr/sbin/runc), else poc.

mod common;

use std::time::{Duration, Instant};

use common::oci::docker::Docker;
use common::oci::{
    assert_isolated, assert_ps_lists_only, memory_limit_of, ok, output_within, wait_for, IMAGE,
};
use common::{stderr, stdout};

const MIB: u64 = 1 << 20;

#[test]
fn docker_run_rm_prints_the_output_and_returns_the_exit_status() {
    let Some(docker) = Docker::start() else {
        return;
    };
    let out = docker.run(&["--rm", IMAGE, "sh", "-c", "echo hello; echo oops >&2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(stderr(&out).contains("oops"), "{}", stderr(&out));
    let out = docker.run(&["--rm", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = docker.run(&["--rm", IMAGE, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    docker.assert_clean();
}

#[test]
fn docker_exec_into_a_detached_container_pipes_stdin_and_stdout_and_returns_the_status() {
    let Some(docker) = Docker::start() else {
        return;
    };
    let id = docker.run_detached(
        &["--name", "worker", "--hostname", "box"],
        &["sleep", "1000"],
    );
    assert_eq!(docker.inspect(&id, "{{.State.Status}}"), "running");
    let pid: i32 = docker.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert_isolated(docker.env(), pid);
    let mut exec = docker.command(&["exec", "-i", "worker", "sh", "-c", "tr a-z A-Z; exit 5"]);
    let out = output_within(&mut exec, Some(b"hello from the host\n"));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "HELLO FROM THE HOST\n");
    let out = docker.docker(&["exec", "worker", "hostname"]);
    assert_eq!(ok(&out, "docker exec hostname").trim(), "box");
    let out = docker.docker(&["exec", "worker", "ps", "-o", "pid,comm"]);
    let ps = ok(&out, "docker exec ps");
    assert_ps_lists_only(&ps, "sleep");
    ok(&docker.docker(&["rm", "-f", "worker"]), "docker rm -f");
    docker.assert_clean();
}

#[test]
fn docker_update_memory_changes_the_limit_the_host_sees() {
    let Some(docker) = Docker::start() else {
        return;
    };
    let id = docker.run_detached(&["--memory", "64m"], &["sleep", "1000"]);
    let pid: i32 = docker.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert_eq!(memory_limit_of(pid), Some(64 * MIB));
    let out = docker.docker(&["update", "--memory", "128m", "--memory-swap", "256m", &id]);
    ok(&out, "docker update");
    assert_eq!(memory_limit_of(pid), Some(128 * MIB));
    assert_eq!(
        docker.inspect(&id, "{{.HostConfig.Memory}}"),
        (128 * MIB).to_string()
    );
    ok(&docker.docker(&["rm", "-f", &id]), "docker rm -f");
    docker.assert_clean();
}

#[test]
fn docker_stop_sends_sigterm_and_rm_leaves_nothing_behind() {
    let Some(docker) = Docker::start() else {
        return;
    };
    let script = "trap 'echo bye; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let id = docker.run_detached(&["--name", "web"], &["sh", "-c", script]);
    wait_for("the container to say ready", || {
        stdout(&docker.docker(&["logs", &id]))
            .contains("ready")
            .then_some(())
    });
    let asked = Instant::now();
    ok(&docker.docker(&["stop", "-t", "30", "web"]), "docker stop");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "the container's TERM trap ended it, not the stop timeout's SIGKILL"
    );
    assert_eq!(docker.inspect(&id, "{{.State.Status}}"), "exited");
    assert_eq!(docker.inspect(&id, "{{.State.ExitCode}}"), "42");
    assert!(stdout(&docker.docker(&["logs", &id])).contains("bye"));
    ok(&docker.docker(&["rm", "web"]), "docker rm");
    docker.assert_clean();
}
