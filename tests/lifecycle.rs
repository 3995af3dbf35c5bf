//! Containers without a daemon: `run -d` and its monitor, `ps`, `logs`, `exec`, `stop`, `kill`, `rm`,
//! `inspect`, and what the host shows after processes are SIGKILLed.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_error, hierarchy_of, ignored_mask, ignoring, read_trimmed, stderr, stdout, Env,
    HANDED_DOWN_IGNORED,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `poc ps -a --format json`, as a list of rows.
fn ps(env: &Env) -> Vec<serde_json::Value> {
    let out = env.poc(&["ps", "-a", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn row(env: &Env, id: &str) -> Option<serde_json::Value> {
    ps(env).into_iter().find(|r| r["id"] == id)
}

/// Waits until the container's `state` column is `want` (or it is gone, for "gone").
fn wait_state(env: &Env, id: &str, want: &str) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = row(env, id);
        match &r {
            None if want == "gone" => return None,
            Some(r) if r["state"] == want => return Some(r.clone()),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached {want}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_json(env: &Env, id: &str) -> serde_json::Value {
    let path = env
        .state_root()
        .join("containers")
        .join(id)
        .join("state.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn pid_of(state: &serde_json::Value, who: &str) -> Pid {
    Pid::from_raw(state[who]["pid"].as_i64().unwrap() as i32)
}

#[test]
fn run_d_returns_at_once_and_the_container_lives_on_until_stopped() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "web",
        "--mem",
        "64M",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    let r = wait_state(&env, &id, "running").unwrap();
    assert_eq!(r["name"], "web");
    assert!(r["status"].as_str().unwrap().starts_with("Up"));
    assert_eq!(r["limits"]["memory"], 64 << 20);
    let table = stdout(&env.poc(&["ps"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains("web") && l.contains("mem=64.0MiB")),
        "{table}"
    );
    assert_eq!(stdout(&env.poc(&["ps", "-q"])).trim(), &id[..12]);

    std::thread::sleep(Duration::from_millis(400));
    assert!(stdout(&env.poc(&["logs", "web"])).contains("tick\n"));
    let out = env.poc(&["stop", "-t", "1", "web"]);
    assert_eq!(stdout(&out), "web\n", "{}", stderr(&out));
    let r = wait_state(&env, &id, "exited").unwrap();
    assert_eq!(
        r["exit_code"], 137,
        "sh ignores SIGTERM as PID 1, so the grace period ends in SIGKILL"
    );
    assert!(
        stdout(&env.poc(&["ps"])).lines().count() == 1,
        "ps without -a hides exited containers"
    );
    assert!(
        env.cgroup_leaves().is_empty(),
        "a stopped container's cgroup is released"
    );
    let out = env.poc(&["rm", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn stop_lets_a_container_that_handles_sigterm_exit_on_its_own() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 3' TERM; while true; do sleep 0.05; done",
    ]);
    wait_state(&env, &id, "running");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(env.poc(&["stop", "-t", "10", &id[..8]]).status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no need to wait for the grace period"
    );
    assert_eq!(wait_state(&env, &id, "exited").unwrap()["exit_code"], 3);
    assert_eq!(stdout(&env.poc(&["logs", &id])), "bye\n");
    assert!(env.poc(&["rm", &id]).status.success());
    env.assert_clean();
}

#[test]
fn rm_containers_remove_themselves_detached_or_not() {
    let env = Env::with_busybox();
    let id = env.run_detached(&["--rm", "busybox", "sh", "-c", "echo done"]);
    wait_state(&env, &id, "gone");
    let out = env.poc(&["run", "--rm", "busybox", "true"]);
    assert!(out.status.success());
    env.assert_clean();
}

#[test]
fn a_caller_that_ignores_sigchld_still_gets_the_containers_exit_code() {
    let env = Env::with_busybox();
    for args in [&["run", "--rm"][..], &["run", "-d", "--rm"][..]] {
        let mut cmd = env.command(&[args, &["busybox", "sh", "-c", "exit 3"]].concat());
        ignoring(&mut cmd, &[libc::SIGCHLD]);
        let mut poc = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
        // The kernel reaps an ignored child without a signal: poc used to wait for it forever.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = poc.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = poc.kill();
                panic!("poc {args:?} with SIGCHLD ignored did not return");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let expected = if args.contains(&"-d") { 0 } else { 3 };
        assert_eq!(status.code(), Some(expected), "{args:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ps(&env).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    env.assert_clean();
}

#[test]
fn signals_the_caller_ignored_are_not_ignored_in_the_container() {
    let env = Env::with_busybox();
    let mut run = env.command(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    let out = ignoring(&mut run, &HANDED_DOWN_IGNORED).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ignored_mask(&stdout(&out)), "0000000000000000", "run");

    let id = env.run_detached(&["busybox", "sleep", "1000"]);
    let mut exec = env.command(&["exec", &id, "cat", "/proc/self/status"]);
    let out = ignoring(&mut exec, &HANDED_DOWN_IGNORED).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ignored_mask(&stdout(&out)), "0000000000000000", "exec");
    // And poc exec, its waits no longer taken by the kernel, returns the process's status.
    let mut exec = env.command(&["exec", &id, "sh", "-c", "exit 4"]);
    let out = ignoring(&mut exec, &HANDED_DOWN_IGNORED).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn an_init_that_renames_itself_to_bytes_not_utf8_and_a_fake_state_is_still_running() {
    let env = Env::with_busybox();
    // The init's command name, which /proc/PID/stat prints inside parentheses, becomes a byte
    // that is not UTF-8 followed by what looks like the end of the name and a zombie's state.
    let id = env.run_detached(&[
        "busybox",
        "sh",
        "-c",
        "printf '\\377) Z 0 0' > /proc/self/comm; sleep 1000; true",
    ]);
    let pid = wait_state(&env, &id, "running").unwrap()["pid"]
        .as_i64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(format!("/proc/{pid}/comm")).unwrap()[0] != 0xff {
        assert!(Instant::now() < deadline, "the init never renamed itself");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(row(&env, &id).unwrap()["state"], "running");
    let out = env.poc(&["exec", &id, "echo", "inside"]);
    assert_eq!(stdout(&out), "inside\n", "{}", stderr(&out));
    assert_error(&env.poc(&["rm", &id]), 125, "is running");
    assert!(env.poc(&["stop", "-t", "1", &id]).status.success());
    assert!(env.poc(&["rm", &id]).status.success());
    env.assert_clean();
}

#[test]
fn exec_reaches_a_container_at_its_pids_limit() {
    // A clone inside a cgroup fails at pids.max; the owner must still get in to clean up.
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--pids",
        "4",
        "busybox",
        "sh",
        "-c",
        // The shell and three sleeps: four processes, the limit.
        "sleep 1000 & sleep 1000 & sleep 1000 & echo forked; wait",
    ]);
    env.wait_for_log(&id, "forked");
    let refused = env.poc(&["exec", &id, "sh", "-c", "sleep 1 & echo forked"]);
    assert!(
        stderr(&refused).contains("can't fork"),
        "{}",
        stderr(&refused)
    );
    let out = env.poc(&["exec", &id, "echo", "inside"]);
    assert_eq!(stdout(&out), "inside\n", "{}", stderr(&out));
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn a_foreground_container_is_kept_as_exited_with_its_logs_until_rm() {
    let env = Env::with_busybox();
    let out = env.poc(&[
        "run",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "to-out\n");
    assert_eq!(stderr(&out), "to-err\n");
    let rows = ps(&env);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "exited");
    assert!(
        rows[0]["status"]
            .as_str()
            .unwrap()
            .starts_with("Exited (3)"),
        "{}",
        rows[0]
    );
    let logs = env.poc(&["logs", "fg"]);
    assert_eq!(stdout(&logs), "to-out\n");
    assert_eq!(stderr(&logs), "to-err\n");
    let out = env.poc(&["run", "--name", "fg", "busybox", "true"]);
    assert_error(&out, 125, "already in use");
    assert!(env.poc(&["rm", "fg"]).status.success());
    env.assert_clean();
}

#[test]
fn logs_tail_timestamps_and_follow() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done",
    ]);
    let follow = env.command(&["logs", "-f", "counter"]).output().unwrap();
    assert_eq!(
        stdout(&follow),
        "line1\nline2\nline3\nline4\nline5\n",
        "-f follows until the container exits"
    );
    wait_state(&env, &id, "exited");
    assert_eq!(
        stdout(&env.poc(&["logs", "--tail", "2", "counter"])),
        "line4\nline5\n"
    );
    let stamped = stdout(&env.poc(&["logs", "-t", "--tail", "1", "counter"]));
    let (time, text) = stamped.split_once(' ').unwrap();
    assert_eq!(text, "line5\n");
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.contains('T'),
        "{time}"
    );
    assert!(env.poc(&["rm", "counter"]).status.success());
}

#[test]
fn logs_hold_everything_a_container_wrote_quickly_before_exiting() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "busybox",
        "sh",
        "-c",
        "yes 0123456789abcdef | head -c 10485760",
    ]);
    wait_state(&env, &id, "exited");
    let out = env.poc(&["logs", &id]);
    let text = out.stdout;
    assert_eq!(text.len(), 10 << 20, "all 10 MiB are in the log");
    assert!(text
        .chunks(17)
        .take((10 << 20) / 17)
        .all(|c| c == b"0123456789abcdef\n"));
    assert!(env.poc(&["rm", &id]).status.success());
    env.assert_clean();
}

#[test]
fn exec_joins_the_containers_namespaces_and_cgroup() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "box",
        "--hostname",
        "boxhost",
        "busybox",
        "sh",
        "-c",
        "echo made-by-init > /tmp/marker; exec sleep 60",
    ]);
    wait_state(&env, &id, "running");
    std::thread::sleep(Duration::from_millis(200));
    let out = env.poc(&["exec", "box", "sh", "-c", "hostname; cat /tmp/marker; cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/self/cgroup | head -1; grep CapBnd /proc/self/status"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "boxhost", "{text} {}", stderr(&out));
    assert_eq!(lines[1], "made-by-init");
    assert_eq!(lines[2], "sleep 60 ", "PID 1 is the container's init");
    assert!(
        lines[3].ends_with(":/"),
        "the cgroup namespace is the container's: {}",
        lines[3]
    );
    assert_eq!(lines[4], "CapBnd:\t00000000a80425fb");

    // While an exec'd process runs, the host sees it in the container's leaf.
    let mut child = env.command(&["exec", "box", "sleep", "3"]).spawn().unwrap();
    let leaf = hierarchy_of("pids")
        .join(env.cgroup_parent.trim_start_matches('/'))
        .join(&id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_trimmed(&leaf.join("cgroup.procs")).lines().count() < 2 {
        assert!(
            Instant::now() < deadline,
            "exec'd process never joined the cgroup"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let out = env.poc(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "box",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g; exit 5",
    ]);
    assert_eq!(stdout(&out), "bar\n/tmp\n65534\n65534\n");
    assert_eq!(
        out.status.code(),
        Some(5),
        "the exec'd command's status is poc's"
    );
    let out = env.poc(&["exec", "-u", "1000:1000", "box", "id"]);
    assert!(
        stdout(&out).starts_with("uid=1000 gid=1000"),
        "{}",
        stdout(&out)
    );
    assert_error(&env.poc(&["exec", "box", "nosuchcmd"]), 127, "not found");
    assert_error(
        &env.poc(&["exec", "-u", "nosuchuser", "box", "true"]),
        125,
        "unable to find user",
    );

    assert!(env.poc(&["rm", "-f", "box"]).status.success());
    assert_error(&env.poc(&["exec", "box", "true"]), 125, "no such container");
    env.assert_clean();
}

#[test]
fn exec_into_a_stopped_container_is_refused() {
    let env = Env::with_busybox();
    assert!(env
        .poc(&["run", "--name", "done", "busybox", "true"])
        .status
        .success());
    assert_error(&env.poc(&["exec", "done", "true"]), 125, "not running");
    assert!(env.poc(&["rm", "done"]).status.success());
}

#[test]
fn kill_sends_the_signal_asked_for() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "k",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; while true; do sleep 0.05; done",
    ]);
    wait_state(&env, &id, "running");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stdout(&env.poc(&["kill", "-s", "USR1", "k"])), "k\n");
    env.wait_for_log("k", "got USR1");
    assert!(env.poc(&["kill", "k"]).status.success());
    assert_eq!(wait_state(&env, &id, "exited").unwrap()["exit_code"], 137);
    assert_error(&env.poc(&["kill", "k"]), 125, "not running");
    assert_error(
        &env.poc(&["kill", "-s", "BOGUS", "k"]),
        125,
        "unknown signal",
    );
    assert!(env.poc(&["rm", "k"]).status.success());
    env.assert_clean();
}

#[test]
fn rm_refuses_a_running_container_without_force() {
    let env = Env::with_busybox();
    let id = env.run_detached(&["--name", "busy", "busybox", "sleep", "60"]);
    wait_state(&env, &id, "running");
    assert_error(&env.poc(&["rm", "busy"]), 125, "is running");
    assert_eq!(stdout(&env.poc(&["rm", "-f", "busy"])), "busy\n");
    assert_error(&env.poc(&["rm", "busy"]), 125, "no such container");
    env.assert_clean();
}

#[test]
fn ids_names_and_prefixes_resolve_and_inspect_tells_all() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name", "named", "--cpus", "0.5", "-e", "X=1", "busybox", "sleep", "60",
    ]);
    wait_state(&env, &id, "running");
    for query in [id.as_str(), &id[..12], &id[..5], "named"] {
        let out = env.poc(&["inspect", query]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = &json[0];
        assert_eq!(c["Id"], id.as_str(), "{query}");
        assert_eq!(c["Name"], "named");
        assert_eq!(c["State"]["Status"], "running");
        assert!(c["State"]["Pid"].as_i64().unwrap() > 1);
        assert!(c["State"]["MonitorPid"].as_i64().unwrap() > 1);
        assert!(c["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("X=1")));
        assert_eq!(c["Limits"]["cpu"]["quota"], 50000);
        assert!(c["Cgroup"]["Path"].as_str().unwrap().ends_with(&id));
        assert!(c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Destination"] == "/proc"));
    }
    assert_error(
        &env.poc(&["inspect", "nothing-here"]),
        125,
        "no such container",
    );
    assert!(env.poc(&["rm", "-f", "named"]).status.success());
    env.assert_clean();
}

#[test]
fn ps_tells_the_truth_after_sigkills_and_rm_f_recovers_everything() {
    let env = Env::with_busybox();
    // The monitor is SIGKILLed: the container runs on, unmonitored.
    let id = env.run_detached(&["busybox", "sleep", "60"]);
    wait_state(&env, &id, "running");
    let st = state_json(&env, &id);
    kill(pid_of(&st, "monitor"), Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(row(&env, &id).unwrap()["state"], "running");
    // Then its init too: nobody recorded an exit, so the container is dead.
    kill(pid_of(&st, "init"), Signal::SIGKILL).unwrap();
    let r = wait_state(&env, &id, "dead").unwrap();
    assert_eq!(r["status"], "Dead");
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();

    // The init is SIGKILLed under a live monitor: the exit is recorded.
    let id = env.run_detached(&["busybox", "sleep", "60"]);
    wait_state(&env, &id, "running");
    kill(pid_of(&state_json(&env, &id), "init"), Signal::SIGKILL).unwrap();
    assert_eq!(wait_state(&env, &id, "exited").unwrap()["exit_code"], 137);
    assert!(env.poc(&["rm", &id]).status.success());
    env.assert_clean();
}

#[test]
fn twenty_containers_started_concurrently_all_run_and_rm_f_leaves_nothing() {
    let env = Env::with_busybox();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    env.run_detached(&["--name", &format!("c{i}"), "busybox", "sleep", "60"])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for id in &ids {
        wait_state(&env, id, "running");
    }
    let listed = stdout(&env.poc(&["ps", "-q"]));
    assert_eq!(listed.lines().count(), 20, "{listed}");
    let mut rm = vec!["rm", "-f"];
    let short: Vec<String> = listed.lines().map(String::from).collect();
    rm.extend(short.iter().map(String::as_str));
    let out = env.poc(&rm);
    assert!(out.status.success(), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn racing_commands_on_one_container_act_one_after_the_other() {
    let env = Env::with_busybox();
    let id = env.run_detached(&["--name", "raced", "busybox", "sleep", "60"]);
    wait_state(&env, &id, "running");
    let results: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    if i % 2 == 0 {
                        env.poc(&["rm", "-f", "raced"])
                    } else {
                        env.poc(&["stop", "-t", "0", "raced"])
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let removed = results
        .iter()
        .step_by(2)
        .filter(|o| o.status.success())
        .count();
    assert_eq!(
        removed, 1,
        "exactly one rm -f removes it; the other finds it gone"
    );
    for failed in results.iter().filter(|o| !o.status.success()) {
        assert!(
            stderr(failed).contains("no such container"),
            "{}",
            stderr(failed)
        );
    }
    env.assert_clean();
}

#[test]
fn duplicate_names_are_refused_while_the_first_exists() {
    let env = Env::with_busybox();
    let id = env.run_detached(&["--name", "one", "busybox", "sleep", "60"]);
    assert_error(
        &env.poc(&["run", "-d", "--name", "one", "busybox", "true"]),
        125,
        "already in use",
    );
    assert_eq!(ps(&env).len(), 1);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    let id = env.run_detached(&["--name", "one", "busybox", "true"]);
    wait_state(&env, &id, "exited");
    assert!(env.poc(&["rm", "one"]).status.success());
    env.assert_clean();
}

#[test]
fn a_closed_reader_ends_ps_quietly_and_never_orphans_a_container() {
    let env = Env::with_busybox();
    for _ in 0..3 {
        env.run_detached(&["busybox", "sleep", "60"]);
    }
    let mut lister = env
        .command(&["ps", "-a"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(lister.stdout.take());
    let out = lister.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // A foreground container whose reader went away still runs to its end and is cleaned up.
    let mut run = env
        .command(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "yes | head -c 2000000; exit 4",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(run.stdout.take());
    assert_eq!(run.wait().unwrap().code(), Some(4));
    let ids: Vec<String> = ps(&env)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    assert!(env.poc(&rm).status.success());
    env.assert_clean();
}
