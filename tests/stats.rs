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
    // 40 MB held in the container's /dev/shm (a tmpfs, charged to its memory cgroup): written by
    // head alone, which takes a moment even in the TCG guest (growing a 40 MB shell variable did
    // not, once). The shell stays (no tail exec), so two processes.
    let holder = env.run_detached(&[
        "--name",
        "holder",
        "busybox",
        "sh",
        "-c",
        "head -c 40000000 /dev/zero >/dev/shm/hold; echo ready; while true; do sleep 1; done",
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

#[test]
fn a_duration_of_samples_is_plotted_as_svg() {
    let env = Env::with_busybox();
    let busy = env.run_detached(&[
        "--name",
        "spinner",
        "--network",
        "none",
        "--cpus",
        "0.1",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    let faulting = env.run_detached(&[
        "--name",
        "faulter",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        // A fresh 4 MiB buffer ten times a second: about 10000 faults/s for little CPU, so that the
        // other tests' workloads keep theirs (the v2 guest has two emulated CPUs).
        "while true; do dd if=/dev/zero of=/dev/null bs=4M count=1 2>/dev/null; sleep 0.1; done",
    ]);
    let plot = env.store().join("stats.svg");
    let plot_arg = plot.to_str().unwrap();
    let out = env.poc(&[
        "stats",
        "--duration",
        "3s",
        "--interval",
        "500ms",
        "--format",
        "json",
        "--plot",
        plot_arg,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // One JSON array per sample: about six in three seconds.
    let text = stdout(&out);
    let samples: Vec<Vec<serde_json::Value>> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // (Each sample also takes the reading's own time, which an emulated guest stretches.)
    assert!(
        (4..=7).contains(&samples.len()),
        "{} samples",
        samples.len()
    );
    // The highest rate seen: on a loaded (or emulated) machine one interval may be quiet.
    let peak = |name: &str, field: &str| {
        samples
            .iter()
            .flatten()
            .filter(|r| r["name"] == name)
            .map(|r| r[field].as_f64().unwrap())
            .fold(0f64, f64::max)
    };
    // Under --cpus 0.1 a loop runs 10 ms of each 100 ms period and waits out the rest.
    let throttled = peak("spinner", "throttled_ms_per_second");
    assert!(throttled > 50.0, "throttled {throttled} ms/s");
    let faults = peak("faulter", "page_faults_per_second");
    // (Some thousands on a quiet machine; 91 in the emulated guest on a busy one.)
    assert!(faults > 20.0, "{faults} page faults/s");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for title in ["CPU", "Memory", "Page faults", "Throttled", "Processes"] {
        assert!(svg.contains(&format!(">{title} (")), "no {title} panel");
    }
    let panels = svg.matches("font-weight=\"bold\"").count();
    assert_eq!(svg.matches("<polyline").count(), 2 * panels);
    assert!(svg.contains(">spinner</text>") && svg.contains(">faulter</text>"));

    // A chart that cannot be written is refused before sampling; --plot needs --duration.
    let nowhere = env.store().join("no/such/dir/s.svg");
    assert_error(
        &env.poc(&[
            "stats",
            "--duration",
            "1s",
            "--plot",
            nowhere.to_str().unwrap(),
        ]),
        125,
        "--plot",
    );
    assert_error(&env.poc(&["stats", "--plot", plot_arg]), 125, "--duration");
    assert_error(
        &env.poc(&["stats", "--duration", "soon"]),
        125,
        "--duration",
    );
    assert!(env.poc(&["rm", "-f", &busy, &faulting]).status.success());
    env.assert_clean();
}
