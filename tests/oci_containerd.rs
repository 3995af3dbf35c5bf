//! containerd (started by each test, with its own roots and sockets) runs its tasks through the
//! runtime under test: `ctr run --runc-binary PATH`, then what a ctr user does with tasks, checked
//! from the host too. The runtime is POC_OCI_RUNTIME (e.g. /usr/sbin/runc), else poc.

mod common;

use common::oci::containerd::Containerd;
use common::oci::{assert_isolated, assert_ps_lists_only, memory_limit_of, ok, wait_for};
use common::{stderr, stdout};

const MIB: u64 = 1 << 20;

fn wait_until_stopped(ctr: &Containerd, id: &str) {
    wait_for(&format!("task {id} to stop"), || {
        ctr.task(id)
            .is_some_and(|(_, status)| status == "STOPPED")
            .then_some(())
    });
}

#[test]
fn ctr_run_rm_prints_the_output_and_returns_the_exit_status() {
    let Some(ctr) = Containerd::start() else {
        return;
    };
    let out = ctr.run(
        &["--rm"],
        "hello",
        &["sh", "-c", "echo hello; echo oops >&2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(stderr(&out).contains("oops"), "{}", stderr(&out));
    let out = ctr.run(&["--rm"], "three", &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    ctr.assert_clean();
}

#[test]
fn ctr_task_exec_runs_a_process_in_the_running_container() {
    let Some(ctr) = Containerd::start() else {
        return;
    };
    ok(&ctr.run(&["-d"], "box", &["sleep", "1000"]), "ctr run -d");
    let (pid, status) = ctr.task("box").expect("the task is listed");
    assert_eq!(status, "RUNNING");
    let out = ctr.exec(
        "box",
        "look",
        &["sh", "-c", "cat /proc/1/cmdline; echo; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sleep\u{0}1000\u{0}\n");
    // The container lives on after the exec'd process ends.
    assert_eq!(ctr.task("box"), Some((pid, "RUNNING".to_string())));
    ok(
        &ctr.ctr(&["task", "kill", "-s", "SIGKILL", "box"]),
        "ctr task kill",
    );
    wait_until_stopped(&ctr, "box");
    ok(&ctr.ctr(&["task", "delete", "box"]), "ctr task delete");
    ok(
        &ctr.ctr(&["container", "delete", "box"]),
        "ctr container delete",
    );
    ctr.assert_clean();
}

#[test]
fn ctr_task_kill_sends_sigterm_and_task_delete_reports_the_exit_status() {
    let Some(ctr) = Containerd::start() else {
        return;
    };
    let script = "trap 'exit 42' TERM; touch /tmp/trapped; while :; do sleep 0.1; done";
    ok(
        &ctr.run(&["-d"], "svc", &["sh", "-c", script]),
        "ctr run -d",
    );
    let mut probes = 0;
    wait_for("the TERM trap to be set", || {
        probes += 1;
        let out = ctr.exec(
            "svc",
            &format!("probe{probes}"),
            &["test", "-e", "/tmp/trapped"],
        );
        out.status.success().then_some(())
    });
    ok(&ctr.ctr(&["task", "kill", "svc"]), "ctr task kill");
    wait_until_stopped(&ctr, "svc");
    let out = ctr.ctr(&["task", "delete", "svc"]);
    assert!(
        stderr(&out).contains("exit code 42"),
        "the trap's status: {}",
        stderr(&out)
    );
    assert_eq!(ctr.task("svc"), None, "the task is gone");
    ok(
        &ctr.ctr(&["container", "delete", "svc"]),
        "ctr container delete",
    );
    let containers = ok(&ctr.ctr(&["container", "ls", "-q"]), "ctr container ls");
    assert_eq!(containers.trim(), "");
    ctr.assert_clean();
}

#[test]
fn ctr_task_ps_lists_the_containers_processes_by_host_pid() {
    let Some(ctr) = Containerd::start() else {
        return;
    };
    ok(
        &ctr.run(
            &["-d"],
            "pair",
            &["sh", "-c", "sleep 1000 & exec sleep 1001"],
        ),
        "ctr run -d",
    );
    let (pid, _) = ctr.task("pair").expect("the task is listed");
    let listed = wait_for("two processes in ctr task ps", || {
        let out = ctr.ctr(&["task", "ps", "pair"]);
        let pids: Vec<i32> = ok(&out, "ctr task ps")
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        (pids.len() == 2).then_some(pids)
    });
    assert!(listed.contains(&pid), "{listed:?} lacks the init {pid}");
    let mut commands: Vec<String> = listed
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap())
        .collect();
    commands.sort();
    assert_eq!(commands, ["sleep\u{0}1000\u{0}", "sleep\u{0}1001\u{0}"]);
    ok(
        &ctr.ctr(&["task", "kill", "-s", "SIGKILL", "pair"]),
        "ctr task kill",
    );
    wait_until_stopped(&ctr, "pair");
    ok(&ctr.ctr(&["task", "delete", "pair"]), "ctr task delete");
    ok(
        &ctr.ctr(&["container", "delete", "pair"]),
        "ctr container delete",
    );
    ctr.assert_clean();
}

#[test]
fn ctr_task_metrics_reports_the_memory_limit_the_host_sees() {
    let Some(ctr) = Containerd::start() else {
        return;
    };
    let limit = (64 * MIB).to_string();
    ok(
        &ctr.run(
            &["-d", "--memory-limit", &limit],
            "capped",
            &["sleep", "1000"],
        ),
        "ctr run -d",
    );
    let (pid, _) = ctr.task("capped").expect("the task is listed");
    assert_eq!(memory_limit_of(pid), Some(64 * MIB));
    let metrics = ok(&ctr.ctr(&["task", "metrics", "capped"]), "ctr task metrics");
    // v1: memory.limit_in_bytes; v2: memory.usage_limit.
    let reported =
        metrics
            .lines()
            .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                ["memory.limit_in_bytes" | "memory.usage_limit", value] => Some(value.to_string()),
                _ => None,
            });
    assert_eq!(reported, Some(limit), "{metrics}");
    ok(
        &ctr.ctr(&["task", "kill", "-s", "SIGKILL", "capped"]),
        "ctr task kill",
    );
    wait_until_stopped(&ctr, "capped");
    ok(&ctr.ctr(&["task", "delete", "capped"]), "ctr task delete");
    ok(
        &ctr.ctr(&["container", "delete", "capped"]),
        "ctr container delete",
    );
    ctr.assert_clean();
}

#[test]
fn a_ctr_container_sees_only_its_own_processes() {
    let Some(ctr) = Containerd::start() else {
        return;
    };
    ok(&ctr.run(&["-d"], "alone", &["sleep", "1000"]), "ctr run -d");
    let (pid, _) = ctr.task("alone").expect("the task is listed");
    assert_isolated(&ctr.env, pid);
    let out = ctr.exec("alone", "ps", &["ps", "-o", "pid,comm"]);
    let ps = ok(&out, "ctr task exec ps");
    assert_ps_lists_only(&ps, "sleep");
    ok(
        &ctr.ctr(&["task", "kill", "-s", "SIGKILL", "alone"]),
        "ctr task kill",
    );
    wait_until_stopped(&ctr, "alone");
    ok(&ctr.ctr(&["task", "delete", "alone"]), "ctr task delete");
    ok(
        &ctr.ctr(&["container", "delete", "alone"]),
        "ctr container delete",
    );
    ctr.assert_clean();
}
