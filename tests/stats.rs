//! `poc stats`: numbers checked against workloads of known size.

mod common;

use common::{assert_error, stdout, Env};

fn stats(env: &Env, who: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["stats", "--no-stream", "--format", "json"];
    args.extend_from_slice(who);
    let out = env.poc(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stats_report_cpu_memory_pids_and_throttling_of_known_workloads() {
    let env = Env::with_busybox();
    let busy = env.run_detached(&[
        "--name",
        "busy",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    // 40 MB held in a shell variable; the shell stays (no tail exec), so two processes.
    let holder = env.run_detached(&[
        "--name",
        "holder",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ready; while true; do sleep 1; done",
    ]);
    env.wait_for_log(&holder, "ready");
    let rows = stats(&env, &[]);
    assert_eq!(rows.len(), 2);
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    let b = row("busy");
    let cpu = b["cpu_percent"].as_f64().unwrap();
    assert!(
        (20.0..=70.0).contains(&cpu),
        "a loop under --cpus 0.5 used {cpu:.1}%"
    );
    assert!(b["throttled_periods"].as_u64().unwrap() > 0, "{b}");
    let h = row("holder");
    let mem = h["memory_bytes"].as_u64().unwrap();
    assert!(
        (40_000_000..=90_000_000).contains(&mem),
        "holding 40 MB, stats said {mem}"
    );
    assert_eq!(h["pids"], 2);
    assert!(h["cpu_percent"].as_f64().unwrap() < 10.0);

    let table = stdout(&env.poc(&["stats", "--no-stream", "busy"]));
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with(&busy[..12]));
    assert!(env.poc(&["rm", "-f", &busy, &holder]).status.success());
    assert_error(
        &env.poc(&["stats", "--no-stream", "busy"]),
        125,
        "no such container",
    );
    env.assert_clean();
}
