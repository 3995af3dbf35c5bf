//! `poc bench`: suites run for real (poc's containers beside the host, the floor and whichever
//! runtimes are installed), their reports checked against the documented JSON schema, their charts
//! parsed as SVG, and nothing left behind, also after Ctrl-C.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cgroup_mounts, stderr, stdout, Env};
use serde_json::Value;

/// Checks `report` against schema poc-bench/1 (README, "poc bench": the JSON report).
fn check_schema(report: &Value) {
    let is_num = |v: &Value| v.is_f64() || v.is_u64() || v.is_i64();
    assert_eq!(report["schema"], "poc-bench/1");
    assert!(report["poc_version"].is_string());
    assert!(report["started"].as_str().unwrap().ends_with('Z'));
    assert!(is_num(&report["seconds"]));
    let m = &report["machine"];
    for key in ["kernel", "cgroup", "cpu_model", "os"] {
        assert!(m[key].is_string(), "machine.{key}");
    }
    assert!(["v1", "v2", "hybrid"].contains(&m["cgroup"].as_str().unwrap()));
    assert!(m["cpus"].as_u64().unwrap() >= 1 && m["memory_bytes"].as_u64().unwrap() > 0);
    for peer in report["peers"].as_array().unwrap() {
        assert!(
            peer["name"].is_string() && peer["version"].is_string(),
            "{peer}"
        );
        assert!(peer.get("skipped").is_none_or(Value::is_string), "{peer}");
    }
    for suite in report["suites"].as_array().unwrap() {
        for key in ["name", "title", "baseline"] {
            assert!(suite[key].is_string(), "suite.{key}");
        }
        assert!(suite["notes"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string));
        let rows = suite["results"].as_array().unwrap();
        assert!(!rows.is_empty(), "no results in {suite}");
        for row in rows {
            for key in ["case", "peer", "metric", "unit", "command"] {
                assert!(row[key].is_string(), "row.{key} in {row}");
            }
            assert!(row["higher_is_better"].is_boolean());
            let samples = row["samples"].as_array().unwrap();
            assert!(!samples.is_empty() && samples.iter().all(is_num), "{row}");
            let s = &row["summary"];
            for key in ["median", "min", "max", "p10", "p90", "rsd_percent"] {
                assert!(is_num(&s[key]), "summary.{key} in {row}");
            }
            assert_eq!(s["n"].as_u64().unwrap() as usize, samples.len());
            assert!(s["min"].as_f64() <= s["median"].as_f64());
            assert!(s["median"].as_f64() <= s["max"].as_f64());
            assert!(row["ratio"].is_null() || is_num(&row["ratio"]));
            assert!(row["extra"].as_object().unwrap().values().all(is_num));
        }
    }
}

fn read_report(dir: &Path) -> Value {
    let json = std::fs::read(dir.join("report.json")).expect("report.json written");
    let report: Value = serde_json::from_slice(&json).unwrap();
    check_schema(&report);
    report
}

/// The chart of `suite` is an SVG document with a bar per measured row.
fn check_chart(dir: &Path, suite: &Value) {
    let name = suite["name"].as_str().unwrap();
    let text = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the chart is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let bars = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("height") != Some("100%"))
        .count();
    let with_ratio = suite["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["ratio"].is_null())
        .count();
    assert!(
        bars >= with_ratio && with_ratio > 0,
        "{bars} bars for {with_ratio} rows"
    );
}

fn row<'a>(suite: &'a Value, case: &str, peer: &str) -> Option<&'a Value> {
    suite["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["case"] == case && r["peer"] == peer)
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(program).is_file()
}

/// Nothing of a bench left: its work directory, its cgroups (beside the Env's parent), mounts.
fn assert_bench_clean(env: &Env) {
    let left: Vec<PathBuf> = std::fs::read_dir(env.store())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|p| !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("bench-")),
        "work directories left: {left:?}"
    );
    let prefix = format!("{}-bench-", env.cgroup_parent.trim_start_matches('/'));
    for mount in cgroup_mounts() {
        let left: Vec<PathBuf> = std::fs::read_dir(&mount)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|p| !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)),
            "cgroups left in {}",
            mount.display()
        );
    }
    env.assert_clean();
}

#[test]
fn bench_start_times_poc_beside_the_floor_and_the_installed_runtimes() {
    let env = Env::new();
    let out_dir = env.dir.path().join("report");
    let out = env.poc(&[
        "bench",
        "start",
        "--runs",
        "3",
        "--against",
        "poc,runc,crun",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_report(&out_dir);
    let suite = &report["suites"][0];
    assert_eq!(suite["name"], "start");
    let poc = row(suite, "start", "poc").expect("poc measured");
    assert_eq!(poc["samples"].as_array().unwrap().len(), 3);
    assert!(poc["summary"]["min"].as_f64().unwrap() > 0.1, "{poc}");
    assert!(poc["command"]
        .as_str()
        .unwrap()
        .contains("run --rm --network none busybox true"));
    for runtime in ["runc", "crun"] {
        let peer = report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == runtime)
            .unwrap();
        if installed(runtime) {
            assert!(peer.get("skipped").is_none(), "{peer}");
            let r = row(suite, "start", runtime).expect("an installed runtime is measured");
            assert_eq!(r["samples"].as_array().unwrap().len(), 3);
        } else {
            assert!(peer["skipped"].as_str().unwrap().contains("not installed"));
            assert!(row(suite, "start", runtime).is_none());
        }
    }
    if installed("gcc") {
        assert!(row(suite, "start", "floor").is_some(), "{suite}");
    }
    assert!(suite["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| !r["ratio"].is_null()));
    check_chart(&out_dir, suite);
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(md.contains("| start | poc | wall time"), "{md}");
    assert_eq!(stdout(&out), md, "stdout is the Markdown report");
    assert_bench_clean(&env);
}

#[test]
fn bench_sysbench_suite_runs_on_the_host_and_in_containers_on_the_layer_and_a_volume() {
    if let Ok(why) = std::env::var("POC_SKIP_ARCHIVE") {
        eprintln!("skipped: the sysbench image needs Debian's archive ({why})");
        return;
    }
    let env = Env::new();
    let out_dir = env.dir.path().join("report");
    let mut against = "host,poc".to_string();
    if installed("runc") {
        against.push_str(",runc");
    }
    let out = env.poc(&[
        "bench",
        "sysbench-suite",
        "--tests",
        "cpu,fileio",
        "--time",
        "1",
        "--file-size",
        "8M",
        "--repeat",
        "2",
        "--against",
        &against,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_report(&out_dir);
    let suite = &report["suites"][0];
    assert_eq!(suite["name"], "sysbench");
    assert_eq!(suite["baseline"], "host");
    let mut cells = vec![
        ("cpu", "host"),
        ("cpu", "poc"),
        ("fileio", "host"),
        ("fileio", "poc"),
        ("fileio:volume", "poc"),
    ];
    if installed("runc") {
        cells.extend([("cpu", "runc"), ("fileio:volume", "runc")]);
    }
    for (case, peer) in cells {
        let r = row(suite, case, peer).unwrap_or_else(|| panic!("{case} on {peer}: {suite}"));
        let samples = r["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "{r}");
        assert!(samples.iter().all(|v| v.as_f64().unwrap() > 0.0), "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(row(suite, "fileio:volume", "host").is_none());
    let fileio = row(suite, "fileio", "poc").unwrap();
    assert!(
        fileio["extra"]["fsyncs_per_s"].as_f64().unwrap() > 0.0,
        "{fileio}"
    );
    check_chart(&out_dir, suite);
    // The image stays for the next run; the bench's containers do not.
    assert!(env
        .store()
        .join("images/sysbench/rootfs/usr/bin/sysbench")
        .exists());
    assert_bench_clean(&env);
}

#[test]
fn bench_refuses_bad_input_in_one_line_and_leaves_nothing() {
    let env = Env::with_busybox();
    let out = env.poc(&["bench", "start", "--against", "lxc"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown peer \"lxc\""),
        "{}",
        stderr(&out)
    );
    let out = env.poc(&["bench", "sysbench-suite", "--time", "0"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    if installed("sysbench") {
        let out = env.poc(&["bench", "sysbench-suite", "--file-size", "100T"]);
        assert_eq!(out.status.code(), Some(125));
        let err = stderr(&out);
        assert!(
            err.contains("fileio needs") && err.contains("--file-size"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_bench_clean(&env);
}

#[test]
fn ctrl_c_stops_a_bench_and_removes_everything_it_made() {
    let env = Env::with_busybox();
    let mut child = env
        .command(&["bench", "start", "--runs", "100000", "--against", "poc"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its progress lines, as they come.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("round 3/")) {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no progress from the bench: {seen:#?}"),
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the bench did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    seen.extend(lines.iter());
    assert!(seen.iter().any(|l| l.contains("interrupted")), "{seen:#?}");
    assert_bench_clean(&env);
}

#[test]
fn bench_update_times_poc_update_against_a_raw_write_and_docker_update() {
    let env = Env::with_busybox();
    let docker = installed("dockerd") && std::env::var_os("POC_SKIP_OCI_CLIENTS").is_none();
    // What dockerd and its containerd make outside their roots, when it is not there already.
    let outside: Vec<&str> = ["/run/docker", "/run/containerd", "/etc/docker/key.json"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let out_dir = env.dir.path().join("report");
    let out = env.poc(&[
        "bench",
        "update",
        "--runs",
        "5",
        "--against",
        if docker { "poc,docker" } else { "poc" },
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_report(&out_dir);
    let suite = &report["suites"][0];
    assert_eq!(suite["name"], "update");
    let poc = row(suite, "update", "poc").expect("poc update measured");
    assert_eq!(poc["samples"].as_array().unwrap().len(), 5);
    assert!(poc["command"].as_str().unwrap().contains("update"), "{poc}");
    if installed("gcc") {
        let raw = row(suite, "update", "raw write").expect("the raw write measured");
        assert_eq!(raw["samples"].as_array().unwrap().len(), 5);
        assert!(poc["ratio"].as_f64().unwrap() > 0.0);
        check_chart(&out_dir, suite);
    }
    match row(suite, "update", "docker") {
        Some(d) => {
            assert!(docker);
            assert!(d["command"].as_str().unwrap().contains("docker"), "{d}");
            assert!(d["summary"]["median"].as_f64() > poc["summary"]["median"].as_f64());
        }
        None => assert!(!docker, "docker was asked for: {suite}"),
    }
    for path in outside {
        assert!(
            !Path::new(path).exists(),
            "{path} left by the bench's dockerd"
        );
    }
    assert_bench_clean(&env);
}

#[test]
fn bench_net_measures_the_bridge_against_a_plain_namespace_and_removes_both() {
    if let Ok(why) = std::env::var("POC_SKIP_ARCHIVE") {
        eprintln!("skipped: the iperf3 image needs Debian's archive ({why})");
        return;
    }
    let env = Env::with_busybox();
    let links = || -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pb"))
            .collect()
    };
    let links_before = links();
    let out_dir = env.dir.path().join("report");
    let out = env.poc(&[
        "bench",
        "net",
        "--runs",
        "3",
        "--time",
        "1",
        "--against",
        "poc",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = read_report(&out_dir);
    let suite = &report["suites"][0];
    assert_eq!(suite["name"], "net");
    for (case, peer) in [
        ("start", "poc none"),
        ("start", "poc bridge"),
        ("rtt", "poc bridge"),
        ("rtt", "plain netns+veth"),
        ("tcp", "poc bridge"),
        ("tcp", "plain netns+veth"),
    ] {
        let r = row(suite, case, peer).unwrap_or_else(|| panic!("{case} {peer}: {suite}"));
        assert!(r["summary"]["median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ratio"].as_f64().is_some(), "{r}");
    }
    check_chart(&out_dir, suite);
    // The plain namespace and its veth pair are the bench's and gone with it.
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        netns
            .iter()
            .all(|n| !n.to_string_lossy().starts_with("pbns")),
        "{netns:?}"
    );
    assert_eq!(links(), links_before, "the bench's bridge or veths left");
    assert_bench_clean(&env);
}
