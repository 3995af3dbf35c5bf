//! `poc events`: lifecycle and limit changes from the journal, OOM kills and memory limit breaches
//! from the kernel's notifications, live and replayed.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, stdout, Env, Lines};

/// A `poc events --format json` running in the background, its events read line by line.
struct Follower {
    lines: Lines,
}

impl Follower {
    fn start(env: &Env, args: &[&str]) -> Self {
        let mut full = vec!["events", "--format", "json"];
        full.extend_from_slice(args);
        Follower {
            lines: Lines::start(env.command(&full), None),
        }
    }

    /// Waits for an event of `kind` (about `id`) and returns it.
    fn wait_for(&mut self, kind: &str, id: &str) -> serde_json::Value {
        let line = self
            .lines
            .wait_for(30, &format!("{kind} event for {id}"), |l| {
                let e: serde_json::Value =
                    serde_json::from_str(l).expect("one JSON event per line");
                e["type"] == kind && e["id"] == id
            });
        serde_json::from_str(&line).unwrap()
    }

    fn kinds(&self) -> Vec<String> {
        self.lines
            .seen
            .iter()
            .map(|l| {
                let e: serde_json::Value = serde_json::from_str(l).unwrap();
                e["type"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

fn now_secs() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{:.6}", now.as_secs_f64())
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running(env: &Env, id: &str) -> bool {
    let out = env.poc(&["inspect", id]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v[0]["State"]["Running"] == true
}

#[test]
fn an_oom_kill_after_update_is_reported_with_the_containers_name() {
    let env = Env::with_busybox();
    let mut events = Follower::start(&env, &["--since", &now_secs(), "hog"]);
    let id = env.run_detached(&[
        "--name", "hog", "--network", "none", "--mem", "256M", "busybox", "sh", "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?; exec sleep 60",
    ]);
    events.wait_for("start", &id);
    assert!(env.poc(&["update", "hog", "--mem", "32M"]).status.success());
    let update = events.wait_for("update", &id);
    let written = &update["attributes"];
    assert!(
        written["memory.max"] == "33554432" || written["memory.limit_in_bytes"] == "33554432",
        "{update}"
    );
    assert!(env
        .poc(&["exec", "hog", "touch", "/tmp/go"])
        .status
        .success());
    let oom = events.wait_for("oom-kill", &id);
    assert_eq!(oom["name"], "hog");
    assert_eq!(oom["attributes"]["count"], "1");
    events.wait_for("memory-max", &id);
    env.wait_for_log(&id, "dd=137");
    // The kernel killed dd, the biggest process; the container's init lives on.
    assert!(running(&env, &id));
    assert!(env.poc(&["rm", "-f", "hog"]).status.success());
    let exit = events.wait_for("exit", &id);
    assert_eq!(exit["attributes"]["exitCode"], "137");
    events.wait_for("remove", &id);
    let kinds = events.kinds();
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(
        at("start") < at("update") && at("update") < at("oom-kill"),
        "{kinds:?}"
    );
    env.assert_clean();
}

#[test]
fn a_soft_limit_breach_is_reported_while_the_container_keeps_running() {
    let env = Env::with_busybox();
    let since = now_secs();
    let id = env.run_detached(&[
        "--name", "soft", "--network", "none", "--mem", "128M", "--mem-soft", "16M", "busybox",
        "sh", "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; dd if=/dev/zero of=/dev/null bs=24M count=1; echo dd=$?; exec sleep 60",
    ]);
    env.wait_running();
    let mut events = Follower::start(&env, &["--since", &since, &id[..12]]);
    events.wait_for("start", &id);
    assert!(env
        .poc(&["exec", "soft", "touch", "/tmp/go"])
        .status
        .success());
    // Over the soft limit, the kernel reclaims (and on v2 slows the process down) but kills nothing.
    env.wait_for_log(&id, "dd=0");
    let high = events.wait_for("memory-high", &id);
    assert_eq!(high["name"], "soft");
    assert!(running(&env, &id), "a soft limit never kills");
    assert!(!events.kinds().contains(&"oom-kill".to_string()));
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn since_and_until_replay_the_journal_for_the_containers_asked_for() {
    let env = Env::with_busybox();
    let since = now_secs();
    let a = env.run_detached(&["--name", "a", "--network", "none", "busybox", "sleep", "60"]);
    let b = env.run_detached(&["--name", "b", "--network", "none", "busybox", "true"]);
    wait_until(|| running(&env, &a));
    assert!(env.poc(&["kill", "-s", "USR1", "a"]).status.success());
    assert!(env.poc(&["stop", "-t", "1", "a"]).status.success());
    assert!(env.poc(&["rm", "a"]).status.success());
    let until = now_secs();
    let out = env.poc(&["events", "--since", &since, "--until", &until, "a"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"start"), "{text}");
    assert_eq!(kinds.last(), Some(&"remove"), "{text}");
    for kind in ["kill", "stop", "exit"] {
        assert!(kinds.contains(&kind), "{kind} missing: {text}");
    }
    assert!(
        lines[0].contains(&format!("container start {a} (")),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.contains("name=a")), "{text}");
    assert!(text.contains("signal=SIGUSR1"), "{text}");
    assert!(!text.contains(&b), "{text}");
    // Everything, as JSON: b's start and exit too, oldest first.
    let out = env.poc(&[
        "events", "--since", &since, "--until", &until, "--format", "json",
    ]);
    let all: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(all.iter().any(|e| e["id"] == b && e["type"] == "exit"));
    wait_until(|| env.poc(&["rm", "b"]).status.success());
    let times: Vec<u64> = all.iter().map(|e| e["time"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    env.assert_clean();
}

#[test]
fn bad_times_are_refused_in_one_line() {
    let env = Env::new();
    assert_error(
        &env.poc(&["events", "--since", "yesterday"]),
        125,
        "--since",
    );
    assert_error(
        &env.poc(&["events", "--since", "10s", "--until", "1m"]),
        125,
        "--until is before --since",
    );
}
