//! podman runs its containers through the runtime under test (`podman --runtime PATH`): what a
//! podman user does, checked from the host too. The runtime is POC_OCI_RUNTIME (e.g.
//! /usr/sbin/runc), else poc; see tests/common/oci.rs for the private roots each test gets.

mod common;

use std::time::{Duration, Instant};

use common::oci::podman::Podman;
use common::oci::{
    assert_isolated, assert_ps_lists_only, frozen, memory_limit_of, ok, wait_for, IMAGE,
};
use common::pty::{wait_exit, Pty};
use common::{stderr, stdout};

const MIB: u64 = 1 << 20;

/// A container that says "ready", then loops until a signal it traps ends it.
const TRAPS_TERM: &str = "trap 'echo bye; exit 42' TERM; trap 'echo got-usr1' USR1; \
                          echo ready; while :; do sleep 0.1; done";

fn wait_for_log(podman: &Podman, id: &str, needle: &str) {
    wait_for(&format!("{needle:?} in the log of {id}"), || {
        stdout(&podman.podman(&["logs", id]))
            .contains(needle)
            .then_some(())
    });
}

#[test]
fn podman_run_rm_prints_the_output_and_returns_the_exit_status() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let out = podman.run(&["--rm", IMAGE, "sh", "-c", "echo hello; echo oops >&2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(stderr(&out).contains("oops"), "{}", stderr(&out));
    let out = podman.run(&["--rm", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    podman.assert_clean();
}

#[test]
fn podman_run_of_a_missing_command_exits_127() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let out = podman.run(&["--rm", IMAGE, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no-such-command"),
        "the error names the command: {}",
        stderr(&out)
    );
    podman.assert_clean();
}

#[test]
fn podman_exec_into_a_detached_container_pipes_stdin_and_stdout_and_returns_the_status() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let id = podman.run_detached(&["--name", "worker"], &["sleep", "1000"]);
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "running");
    let mut exec = podman.command(&["exec", "-i", "worker", "sh", "-c", "tr a-z A-Z; exit 5"]);
    let out = common::oci::output_within(&mut exec, Some(b"hello from the host\n"));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "HELLO FROM THE HOST\n");
    // The exec'd process is in the container: it sees the container's pid 1.
    let out = podman.podman(&["exec", "worker", "cat", "/proc/1/cmdline"]);
    assert_eq!(ok(&out, "podman exec"), "sleep\u{0}1000\u{0}");
    ok(
        &podman.podman(&["rm", "-f", "-t", "0", "worker"]),
        "podman rm -f",
    );
    podman.assert_clean();
}

#[test]
fn podman_exec_t_gives_a_terminal_of_the_callers_size() {
    let Some(podman) = Podman::start() else {
        return;
    };
    podman.run_detached(&["--name", "tty"], &["sleep", "1000"]);
    let mut cmd = podman.command(&["exec", "-it", "tty", "sh"]);
    let mut pty = Pty::spawn(&mut cmd, 40, 120);
    pty.send("tty; stty size; echo pid1=$(cat /proc/1/comm)\n");
    pty.expect("pid1=sleep");
    let seen = pty.expect("40 120");
    assert!(seen.contains("/dev/pts/"), "{seen}");
    pty.send("exit 3\n");
    assert_eq!(wait_exit(&mut pty.child), 3);
    ok(
        &podman.podman(&["rm", "-f", "-t", "0", "tty"]),
        "podman rm -f",
    );
    podman.assert_clean();
}

#[test]
fn podman_stop_sends_sigterm_and_rm_leaves_nothing_behind() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let id = podman.run_detached(&["--name", "web"], &["sh", "-c", TRAPS_TERM]);
    wait_for_log(&podman, &id, "ready");
    let asked = Instant::now();
    ok(&podman.podman(&["stop", "-t", "30", "web"]), "podman stop");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "the container's TERM trap ended it, not the stop timeout's SIGKILL"
    );
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "exited");
    assert_eq!(podman.inspect(&id, "{{.State.ExitCode}}"), "42");
    wait_for_log(&podman, &id, "bye");
    ok(&podman.podman(&["rm", "web"]), "podman rm");
    podman.assert_clean();
}

#[test]
fn podman_kill_delivers_the_signal_the_user_names() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let id = podman.run_detached(&["--name", "target"], &["sh", "-c", TRAPS_TERM]);
    wait_for_log(&podman, &id, "ready");
    ok(
        &podman.podman(&["kill", "-s", "USR1", "target"]),
        "podman kill -s USR1",
    );
    wait_for_log(&podman, &id, "got-usr1");
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "running");
    ok(&podman.podman(&["kill", "target"]), "podman kill");
    wait_for("the killed container to exit", || {
        (podman.inspect(&id, "{{.State.Status}}") == "exited").then_some(())
    });
    assert_eq!(podman.inspect(&id, "{{.State.ExitCode}}"), "137");
    ok(&podman.podman(&["rm", "target"]), "podman rm");
    podman.assert_clean();
}

#[test]
fn podman_update_memory_changes_the_limit_the_host_sees() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let id = podman.run_detached(&["--memory", "64m"], &["sleep", "1000"]);
    let pid = podman.pid_of(&id);
    assert_eq!(memory_limit_of(pid), Some(64 * MIB));
    ok(
        &podman.podman(&["update", "--memory", "128m", &id]),
        "podman update",
    );
    assert_eq!(memory_limit_of(pid), Some(128 * MIB));
    ok(
        &podman.podman(&["rm", "-f", "-t", "0", &id]),
        "podman rm -f",
    );
    podman.assert_clean();
}

#[test]
fn podman_pause_freezes_the_container_and_unpause_thaws_it() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let id = podman.run_detached(&[], &["sh", "-c", "while :; do sleep 0.05; done"]);
    let pid = podman.pid_of(&id);
    assert!(!frozen(pid));
    ok(&podman.podman(&["pause", &id]), "podman pause");
    assert!(frozen(pid), "the host sees the cgroup frozen");
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "paused");
    ok(&podman.podman(&["unpause", &id]), "podman unpause");
    assert!(!frozen(pid), "the host sees the cgroup thawed");
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "running");
    ok(
        &podman.podman(&["rm", "-f", "-t", "0", &id]),
        "podman rm -f",
    );
    podman.assert_clean();
}

#[test]
fn a_podman_container_has_its_own_processes_hostname_and_memory_limit() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let id = podman.run_detached(
        &["--hostname", "box", "--memory", "64m"],
        &["sleep", "1000"],
    );
    let pid = podman.pid_of(&id);
    assert_isolated(&podman.env, pid);
    assert_eq!(memory_limit_of(pid), Some(64 * MIB));
    let out = podman.podman(&["exec", &id, "hostname"]);
    assert_eq!(ok(&out, "podman exec hostname").trim(), "box");
    let out = podman.podman(&["exec", &id, "ps", "-o", "pid,comm"]);
    let ps = ok(&out, "podman exec ps");
    assert_ps_lists_only(&ps, "sleep");
    ok(
        &podman.podman(&["rm", "-f", "-t", "0", &id]),
        "podman rm -f",
    );
    podman.assert_clean();
}
