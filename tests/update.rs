//! `poc update`: limits of a running container changed live, visible in the cgroup files and in
//! behaviour, all or nothing, and bad values rejected with nothing changed.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, hierarchy_of, is_cgroup_v1, read_trimmed, stdout, Env};

fn leaf(env: &Env, controller: &str, id: &str) -> std::path::PathBuf {
    hierarchy_of(controller)
        .join(env.cgroup_parent.trim_start_matches('/'))
        .join(id)
}

/// CPU time the container used over `window`, in seconds.
fn cpu_seconds_over(env: &Env, id: &str, window: Duration) -> f64 {
    let read = || -> f64 {
        if is_cgroup_v1() {
            read_trimmed(&leaf(env, "cpuacct", id).join("cpuacct.usage"))
                .parse::<f64>()
                .unwrap()
                / 1e9
        } else {
            let stat = read_trimmed(&leaf(env, "cpu", id).join("cpu.stat"));
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .parse::<f64>()
                .unwrap()
                / 1e6
        }
    };
    let before = read();
    std::thread::sleep(window);
    read() - before
}

#[test]
fn every_knob_is_written_to_the_cgroup_files_and_shown_by_ps() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "web",
        "--network",
        "none",
        "--mem",
        "64M",
        "busybox",
        "sleep",
        "60",
    ]);
    env.wait_running();
    let out = env.poc(&[
        "update",
        "web",
        "--mem",
        "128M",
        "--mem-soft",
        "96M",
        "--cpus",
        "1.5",
        "--pids",
        "200",
        "--cpuset",
        "0",
        "--cpu-weight",
        "50",
    ]);
    assert_eq!(stdout(&out), "web\n", "{}", common::stderr(&out));
    let expected: Vec<(&str, &str, &str)> = if is_cgroup_v1() {
        vec![
            ("memory", "memory.limit_in_bytes", "134217728"),
            ("memory", "memory.soft_limit_in_bytes", "100663296"),
            ("cpu", "cpu.cfs_quota_us", "150000"),
            ("cpu", "cpu.shares", "1287"),
            ("pids", "pids.max", "200"),
            ("cpuset", "cpuset.cpus", "0"),
        ]
    } else {
        vec![
            ("memory", "memory.max", "134217728"),
            ("memory", "memory.high", "100663296"),
            ("cpu", "cpu.max", "150000 100000"),
            ("cpu", "cpu.weight", "50"),
            ("pids", "pids.max", "200"),
            ("cpuset", "cpuset.cpus", "0"),
        ]
    };
    for (controller, file, value) in expected {
        assert_eq!(
            read_trimmed(&leaf(&env, controller, &id).join(file)),
            value,
            "{file}"
        );
    }
    let table = stdout(&env.poc(&["ps"]));
    assert!(
        table.contains("mem=128.0MiB mem-soft=96.0MiB cpus=1.50 shares=1287 pids=200 cpuset=0"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &env.poc(&["update", "--json", "web", "--pids", "100"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["changes"][0]["file"], "pids.max");
    assert_eq!(json[0]["changes"][0]["previous"], "200");
    assert!(json[0]["changes"][0]["micros"].as_f64().unwrap() > 0.0);
    // The record of a container that exits keeps the limits it was updated to.
    assert!(env.poc(&["stop", "-t", "0", "web"]).status.success());
    let inspected: serde_json::Value =
        serde_json::from_slice(&env.poc(&["inspect", "web"]).stdout).unwrap();
    assert_eq!(inspected[0]["State"]["Status"], "exited");
    assert_eq!(inspected[0]["Limits"]["pids"], 100);
    assert_eq!(inspected[0]["Limits"]["memory"], 128u64 << 20);
    assert!(env.poc(&["rm", "-f", "web"]).status.success());
    env.assert_clean();
}

#[test]
fn a_busy_loop_slows_down_after_cpus_0_2() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    env.wait_running();
    let free = cpu_seconds_over(&env, &id, Duration::from_secs(1));
    assert!(env.poc(&["update", &id, "--cpus", "0.2"]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    let limited = cpu_seconds_over(&env, &id, Duration::from_secs(2)) / 2.0;
    assert!(free > 0.5, "the loop ran freely first: {free:.2} CPU");
    assert!(limited < 0.3, "after --cpus 0.2 it used {limited:.2} CPU");
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn a_memory_hog_is_killed_after_the_limit_drops_below_its_need() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--network", "none", "--mem", "256M", "busybox", "sh", "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?; exec sleep 60",
    ]);
    env.wait_running();
    assert!(env.poc(&["update", &id, "--mem", "32M"]).status.success());
    assert!(env.poc(&["exec", &id, "touch", "/tmp/go"]).status.success());
    env.wait_for_log(&id, "dd=137");
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn bad_values_and_stopped_containers_change_nothing() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "steady",
        "--network",
        "none",
        "--mem",
        "64M",
        "busybox",
        "sleep",
        "60",
    ]);
    env.wait_running();
    let file = if is_cgroup_v1() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    for (flag, value) in [
        ("--mem", "64X"),
        ("--mem", "0"),
        ("--cpus", "0"),
        ("--pids", "-1"),
        ("--cpuset", "4095"),
        ("--cpu-weight", "0"),
    ] {
        assert_error(&env.poc(&["update", "steady", flag, value]), 125, flag);
    }
    assert_error(&env.poc(&["update", "steady"]), 125, "nothing to update");
    // Docker refuses a period beside --cpus (its quota's period is fixed): so does poc, rather
    // than drop the period without a word.
    assert_error(
        &env.poc(&["update", "steady", "--cpus", "1", "--cpu-period", "1000000"]),
        125,
        "cannot be used with",
    );
    assert_error(
        &env.poc(&["update", "steady", "--mem", "32M", "--mem-soft", "64M"]),
        125,
        "--mem-soft",
    );
    assert_eq!(
        read_trimmed(&leaf(&env, "memory", &id).join(file)),
        "67108864"
    );
    assert_error(
        &env.poc(&["update", "nobody-here", "--mem", "64M"]),
        125,
        "no such container",
    );
    assert!(env.poc(&["stop", "-t", "0", "steady"]).status.success());
    assert_error(
        &env.poc(&["update", "steady", "--mem", "128M"]),
        125,
        "not running",
    );
    assert!(env.poc(&["rm", "steady"]).status.success());
    env.assert_clean();
}

#[test]
fn lowering_memory_below_usage_follows_the_kernels_policy() {
    let env = Env::with_busybox();
    // The shell holds 40 MB in a variable (and stays: no tail exec), anonymous memory, no swap here.
    let id = env.run_detached(&[
        "--network",
        "none",
        "--mem",
        "256M",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ready; while true; do sleep 1; done",
    ]);
    env.wait_running();
    env.wait_for_log(&id, "ready");
    let out = env.poc(&["update", &id, "--mem", "16M", "--pids", "77"]);
    if is_cgroup_v1() {
        // v1 reclaims once and refuses with EBUSY: reported, and nothing changed (pids too).
        assert_error(&out, 125, "could not reclaim");
        assert_eq!(
            read_trimmed(&leaf(&env, "memory", &id).join("memory.limit_in_bytes")),
            "268435456"
        );
        assert_eq!(
            read_trimmed(&leaf(&env, "pids", &id).join("pids.max")),
            "max"
        );
    } else {
        // v2 reclaims and, when it cannot, OOM-kills: here the shell holding the memory, so the
        // container ends. The update itself succeeds and says so.
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert!(
            common::stderr(&out).contains("OOM kill"),
            "{}",
            common::stderr(&out)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ps: serde_json::Value =
                serde_json::from_slice(&env.poc(&["ps", "-a", "--format", "json"]).stdout).unwrap();
            if ps[0]["exit_code"] == 137 {
                break;
            }
            assert!(Instant::now() < deadline, "{ps}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = env.poc(&["rm", "-f", &id]);
    env.assert_clean();
}
