//! `poc trace`: real BPF programs in the kernel, watching real containers.

mod common;

use std::os::unix::process::CommandExt;

use common::pty::{wait_exit, Pty};
use common::{assert_error, hierarchy_of, is_cgroup_v1, stderr, stdout, Env, Lines};

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn a_memory_limit_lowered_under_page_cache_is_reported_with_its_reclaim() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "cache",
        "--network",
        "none",
        "--mem",
        "256M",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/tmp/fill bs=1M count=96 2>/dev/null; echo filled; exec sleep 600",
    ]);
    env.wait_for_log(&id, "filled");
    let mut trace = Lines::start(
        env.command(&["trace", "cache", "--limits", "--json", "--duration", "60s"]),
        Some("watching"),
    );
    // Any writer is seen, not only poc: this test process writes the file itself. (First: on v2
    // the lowering below can OOM-kill the container, whose /tmp is on tmpfs in the guest.)
    std::fs::write(env.memory_limit_file(&id), "201326592").unwrap();
    let line = trace.wait_for(30, "the test's own write", |l| {
        json(l)["value"] == "201326592"
    });
    let e = json(&line);
    assert_ne!(e["comm"], "poc", "{e}");
    assert_eq!(e["pid"], std::process::id(), "{e}");

    assert!(env
        .poc(&["update", "cache", "--mem", "48M"])
        .status
        .success());
    let line = trace.wait_for(30, "a memory limit write", |l| {
        let e = json(l);
        e["type"] == "limit-write" && e["value"] == "50331648"
    });
    let e = json(&line);
    assert_eq!(e["comm"], "poc", "{e}");
    assert!(
        e["file"] == "memory.limit_in_bytes" || e["file"] == "memory.max",
        "{e}"
    );
    assert!(e["reclaim_passes"].as_u64().unwrap() > 0, "no reclaim: {e}");
    assert!(e["reclaim_ms"].as_f64().unwrap() > 0.0, "{e}");
    assert!(
        e["kernel_us"].as_f64().unwrap() >= e["reclaim_ms"].as_f64().unwrap(),
        "{e}"
    );
    // (On v1 the cache goes back to disk and usage drops under the limit; in the v2 guest /tmp's
    // layer is on tmpfs, which cannot be reclaimed without swap, so usage may stay above it.)
    if is_cgroup_v1() {
        assert!(e["usage_after"].as_u64().unwrap() <= 48 << 20, "{e}");
    }
    drop(trace);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn a_cpu_limit_lowered_under_a_busy_loop_is_seen_throttling_it() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "spin",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    env.wait_running();
    let mut trace = Lines::start(
        env.command(&["trace", "spin", "--limits", "--json", "--duration", "60s"]),
        Some("watching"),
    );
    assert!(env
        .poc(&["update", "spin", "--cpus", "0.2"])
        .status
        .success());
    let quota = trace.wait_for(30, "the quota write", |l| {
        let f = json(l)["file"].clone();
        f == "cpu.max" || f == "cpu.cfs_quota_us"
    });
    assert_eq!(json(&quota)["error"], serde_json::Value::Null, "{quota}");
    let throttle = json(&trace.wait_for(30, "a throttle", |l| json(l)["type"] == "throttle"));
    let after = throttle["after_write_ms"].as_f64().unwrap();
    // The quota is enforced at the latest when the next period's runtime runs out.
    assert!((0.0..=1000.0).contains(&after), "{throttle}");
    drop(trace);

    // Watching for one write and plotting it: the process ends by itself and leaves the chart.
    let plot = env.store().join("writes.svg");
    let mut watcher = Lines::start(
        env.command(&[
            "trace",
            "spin",
            "--limits",
            "--count",
            "1",
            "--plot",
            plot.to_str().unwrap(),
        ]),
        Some("watching"),
    );
    assert!(env
        .poc(&["update", "spin", "--cpus", "0.3"])
        .status
        .success());
    assert_eq!(watcher.rest().len(), 1);
    assert!(watcher.child.wait().unwrap().success());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("(n=1)").count(), 1, "{svg}");

    // --sched sees the same thing and says why the loop waits. At 0.1 CPU the loop waits throttled
    // about 900 ms a second: the verdict holds even when the tests running beside it keep both CPUs
    // busy (at 0.3 their run-queue waits outweighed the throttling once).
    assert!(env
        .poc(&["update", "spin", "--cpus", "0.1"])
        .status
        .success());
    let out = env.poc(&["trace", "spin", "--sched", "--json", "--duration", "3s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let samples: Vec<serde_json::Value> = stdout(&out).lines().map(json).collect();
    assert!(samples.len() >= 2, "{samples:?}");
    let last = samples.last().unwrap();
    assert_eq!(last["verdict"], "throttled by its CPU limit", "{last}");
    let throttled = last["throttled_wait_ms_per_second"].as_f64().unwrap();
    let cgroup = last["cgroup_throttled_ms_per_second"].as_f64().unwrap();
    assert!(throttled > 300.0 && cgroup > 300.0, "{last}");
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn mem_counts_the_page_faults_of_a_workload_of_known_size() {
    let env = Env::with_busybox();
    // On SIGUSR1 the shell runs dd with a fresh 40 MiB buffer that read(2) fills from /dev/zero:
    // 10240 pages, each faulted in once (in kernel mode, on a user address). Transparent huge pages
    // would fault 2 MiB at a time, so they are off for the container (prctl PR_SET_THP_DISABLE is
    // inherited through fork and exec, from poc to its monitor to the container).
    let mut run = env.command(&[
        "run", "-d", "--name", "faulter", "--network", "none", "busybox", "sh", "-c",
        "trap 'dd if=/dev/zero of=/dev/null bs=40M count=1 2>/dev/null; echo done' USR1; sleep 600 & wait; exec sleep 600",
    ]);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        run.pre_exec(|| {
            if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    env.wait_running();
    let mut trace = Lines::start(
        env.command(&[
            "trace",
            "faulter",
            "--mem",
            "--json",
            "--interval",
            "250ms",
            "--duration",
            "60s",
        ]),
        Some("tracing"),
    );
    // A first sample, then the workload.
    let first = json(&trace.wait_for(30, "a sample", |_| true));
    assert!(env.poc(&["kill", "-s", "USR1", "faulter"]).status.success());
    env.wait_for_log(&id, "done");
    let before = first["page_faults"].as_u64().unwrap();
    let line = trace.wait_for(30, "the faults counted", |l| {
        json(l)["page_faults"].as_u64().unwrap() >= before + 10240
    });
    // Let a last interval pass so that nothing is still being counted.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let settled = trace.wait_for(30, "a later sample", |l| {
        json(l)["seconds"].as_f64() > json(&line)["seconds"].as_f64()
    });
    let faults = json(&settled)["page_faults"].as_u64().unwrap() - before;
    // Stated tolerance: the fork of the shell and the exec of dd add a few hundred.
    assert!(
        (10240..=10240 + 1024).contains(&faults),
        "{faults} faults for 10240 pages"
    );
    drop(trace);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn the_experiment_reports_every_phase_and_gives_the_limits_back() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "lab",
        "--network",
        "none",
        "--mem",
        "128M",
        "--cpus",
        "1",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    env.wait_running();
    let file = env.memory_limit_file(&id);
    let before = std::fs::read_to_string(&file).unwrap();
    let plot = env.store().join("latency.svg");
    let out = env.poc(&[
        "trace",
        "lab",
        "--limits",
        "--experiment",
        "--iterations",
        "5",
        "--mem-low",
        "64M",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["memory lower", "memory raise", "cpu lower", "cpu raise"]
    );
    for p in phases {
        assert_eq!(p["kernel_us"]["n"], 5, "{p}");
        let kernel = p["kernel_us"]["median"].as_f64().unwrap();
        let user = p["user_us"]["median"].as_f64().unwrap();
        assert!(kernel > 0.0 && kernel <= user, "{p}");
    }
    assert_eq!(phases[0]["value"], "67108864");
    assert!(
        phases[2]["throttle_ms"]["n"].as_u64().unwrap() >= 1,
        "{}",
        phases[2]
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "limits given back"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("(n=5)").count(), 4);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

/// The file holding container `id`'s CPU quota, as the host sees it.
fn cpu_quota_file(env: &Env, id: &str) -> std::path::PathBuf {
    let file = if is_cgroup_v1() {
        "cpu.cfs_quota_us"
    } else {
        "cpu.max"
    };
    hierarchy_of("cpu")
        .join(env.cgroup_parent.trim_start_matches('/'))
        .join(id)
        .join(file)
}

/// Gives the Env's cgroup parent the lowest CPU weight, so that a busy loop in it runs only on
/// CPU time no other test wants (a weight inside the container's own cgroup would not do: groups
/// compete at the level of their parents). Tests that judge a loop's waits run beside it.
fn run_on_idle_cpu_only(env: &Env) {
    let (file, lowest) = if is_cgroup_v1() {
        ("cpu.shares", "2")
    } else {
        ("cpu.weight", "1")
    };
    let parent = hierarchy_of("cpu").join(env.cgroup_parent.trim_start_matches('/'));
    std::fs::write(parent.join(file), lowest).unwrap();
}

#[test]
fn the_experiment_on_an_idle_container_waits_for_nothing_and_shows_progress_only_on_a_terminal() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "quiet",
        "--network",
        "none",
        "--mem",
        "128M",
        "--cpus",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    env.wait_running();
    let limits = [env.memory_limit_file(&id), cpu_quota_file(&env, &id)];
    let before: Vec<String> = limits
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    // Speed is not asserted here (measured and reported instead): only that every phase was
    // measured and that the quota write was not waited on for a throttling that cannot come.
    let out = env.poc(&[
        "trace",
        "quiet",
        "--limits",
        "--experiment",
        "--iterations",
        "20",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["iterations_done"], 20, "{report}");
    assert_eq!(report["interrupted_by"], serde_json::Value::Null);
    assert!(report["seconds_per_iteration"].as_f64().unwrap() > 0.0);
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["memory lower", "memory raise", "cpu lower", "cpu raise"]
    );
    for p in phases {
        assert_eq!(p["kernel_us"]["n"], 20, "{p}");
        assert_eq!(p["failures"], 0, "{p}");
    }
    let cpu_lower = &phases[2];
    assert_eq!(cpu_lower["not_throttled_idle"], 20, "{cpu_lower}");
    assert_eq!(
        cpu_lower["throttle_ms"],
        serde_json::Value::Null,
        "{cpu_lower}"
    );
    // Not a terminal: the one line that says what runs, no progress line.
    let said = stderr(&out);
    assert_eq!(said.lines().count(), 1, "{said:?}");
    assert!(
        said.starts_with("experiment on quiet: 20 iterations"),
        "{said:?}"
    );
    assert!(!said.contains('\r') && !said.contains("left"), "{said:?}");
    for (file, was) in limits.iter().zip(&before) {
        assert_eq!(&std::fs::read_to_string(file).unwrap(), was, "{file:?}");
    }

    // On a terminal: a line rewritten in place, erased before the summary.
    let mut cmd = env.command(&[
        "trace",
        "quiet",
        "--limits",
        "--experiment",
        "--iterations",
        "200",
    ]);
    let mut pty = Pty::spawn(&mut cmd, 24, 120);
    pty.expect("iteration 1/200, ~");
    let seen = pty.expect("not throttled (idle)");
    assert!(seen.contains(" s left\r\x1b[K"), "{seen:?}");
    assert_eq!(wait_exit(&mut pty.child), 0);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn ctrl_c_stops_the_experiment_and_gives_the_limits_back() {
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "--name",
        "spinner",
        "--network",
        "none",
        "--mem",
        "128M",
        "--cpu",
        "1000000",
        "--cpu-period",
        "1000000",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    env.wait_running();
    run_on_idle_cpu_only(&env);
    let limits = [env.memory_limit_file(&id), cpu_quota_file(&env, &id)];
    let before: Vec<String> = limits
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut experiment = Lines::start(
        env.command(&[
            "trace",
            "spinner",
            "--limits",
            "--experiment",
            "--iterations",
            "1000000",
            "--cpu-low",
            "500000",
        ]),
        Some("experiment on spinner"),
    );
    // The signal comes while the quota is lowered (0.5 s per 1 s period: the loop runs half a
    // second before it is throttled, so the lowered value stays that long at least).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&limits[1])
        .unwrap()
        .starts_with("500000")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the quota was never lowered"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = nix::unistd::Pid::from_raw(experiment.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let summary = experiment.rest();
    assert_eq!(wait_exit(&mut experiment.child), 130, "{summary:#?}");
    assert!(
        summary[0].contains("stopped by SIGINT after") && summary[0].contains("limits restored"),
        "{summary:#?}"
    );
    for (file, was) in limits.iter().zip(&before) {
        assert_eq!(&std::fs::read_to_string(file).unwrap(), was, "{file:?}");
    }
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn bad_requests_are_refused_in_one_line() {
    let env = Env::with_busybox();
    assert_error(
        &env.poc(&["trace", "nobody", "--mem"]),
        125,
        "no such container",
    );
    let id = env.run_detached(&[
        "--name",
        "idle",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_error(&env.poc(&["trace", "idle"]), 125, "--limits");
    assert_error(
        &env.poc(&["trace", "idle", "--limits", "--plot", "x.svg"]),
        125,
        "--count, --duration or --experiment",
    );
    assert_error(
        &env.poc(&["trace", "idle", "--mem", "--experiment"]),
        125,
        "--limits",
    );
    assert_error(
        &env.poc(&["trace", "idle", "--sched", "--iterations", "3"]),
        125,
        "--experiment",
    );
    assert_error(
        &env.poc(&[
            "trace",
            "idle",
            "--limits",
            "--experiment",
            "--iterations",
            "0",
        ]),
        125,
        "--iterations",
    );
    assert_error(&env.poc(&["trace", "idle", "--net"]), 125, "--network none");
    // Not root: refused before anything is read or loaded.
    let mut cmd = env.command(&["trace", "idle", "--mem"]);
    cmd.uid(65534).gid(65534);
    let out = cmd.output().unwrap();
    assert_error(&out, 125, "as root");
    assert!(env.poc(&["stop", "-t", "0", "idle"]).status.success());
    assert_error(&env.poc(&["trace", "idle", "--sched"]), 125, "not running");
    assert!(env.poc(&["rm", &id]).status.success());
    env.assert_clean();
}

/// Round-trip times in us of `ping -c COUNT -i 0.005 ADDR` run by the host's busybox in the
/// network namespace of `netns` (a /proc/PID/ns/net or /run/netns path): the same binary for
/// both sides of a comparison.
fn ping_times(netns: &str, addr: &str, count: usize) -> Vec<f64> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args([
            "busybox",
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.005",
            addr,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ping {addr}: {}", stderr(&out));
    let times: Vec<f64> = stdout(&out)
        .lines()
        .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok())
        .map(|ms: f64| ms * 1000.0)
        .collect();
    assert_eq!(times.len(), count, "{}", stdout(&out));
    times
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The independent method's baseline: a network namespace joined to the host by a veth pair and
/// nothing else, removed when dropped.
struct PlainNetns {
    name: String,
    host_if: String,
    host_addr: String,
}

impl PlainNetns {
    fn make() -> Self {
        let pid = std::process::id();
        let name = format!("ptplain{pid}");
        let host_if = format!("ptph{}", pid % 100_000);
        let peer_if = format!("ptpp{}", pid % 100_000);
        // 10.200-249.x.0/30: beside the Envs' bridge subnets (10.100-199.x.0/24).
        let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 256);
        let plain = PlainNetns {
            name,
            host_if,
            host_addr: format!("{net}.1"),
        };
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        };
        ip(&["netns", "add", &plain.name]);
        ip(&[
            "link",
            "add",
            &plain.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            &plain.name,
        ]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &plain.host_if]);
        ip(&["link", "set", &plain.host_if, "up"]);
        ip(&[
            "-n",
            &plain.name,
            "addr",
            "add",
            &format!("{net}.2/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &plain.name, "link", "set", &peer_if, "up"]);
        plain
    }

    fn netns(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for PlainNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// bpftool, if installed (it lives in /usr/sbin, which PATH may lack).
fn bpftool() -> Option<std::process::Command> {
    ["bpftool", "/usr/sbin/bpftool"].iter().find_map(|b| {
        let found = std::process::Command::new(b)
            .arg("version")
            .output()
            .is_ok();
        found.then(|| std::process::Command::new(b))
    })
}

/// The ids of the BPF programs process `pid` holds, from its fds' fdinfo ("prog_id:").
fn bpf_programs_of(pid: u32) -> Vec<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap();
    let mut ids: Vec<u64> = fds
        .flatten()
        .filter_map(|fd| {
            let info = std::fs::read_to_string(fd.path()).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[test]
fn net_sees_every_packet_of_a_ping_and_its_bridge_time_matches_the_rtt_difference() {
    const PINGS: usize = 200;
    const ROUNDS: usize = 3;
    let env = Env::with_busybox();
    let id = env.run_detached(&["--name", "pinger", "busybox", "sleep", "600"]);
    env.wait_running();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            env.state_root()
                .join("containers")
                .join(&id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let container_netns = format!("/proc/{}/ns/net", state["init"]["pid"]);
    let gateway = env.subnet.replace(".0/24", ".1");
    let plain = PlainNetns::make();
    // One interval that holds all the traffic: the latencies come from one histogram.
    let mut trace = Lines::start(
        env.command(&[
            "trace",
            "pinger",
            "--net",
            "--json",
            "--interval",
            "15s",
            "--duration",
            "15s",
        ]),
        Some("tracing"),
    );
    let programs = bpf_programs_of(trace.child.id());
    assert_eq!(
        programs.len(),
        3,
        "net_xmit, net_receive, net_drop: {programs:?}"
    );
    // Interleaved rounds: the machine's drift hits both sides alike.
    let (mut through_bridge, mut plain_veth) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        through_bridge.extend(ping_times(&container_netns, &gateway, PINGS));
        plain_veth.extend(ping_times(&plain.netns(), &plain.host_addr, PINGS));
    }
    let line = trace.wait_for(60, "the sample", |_| true);
    assert!(trace.child.wait().unwrap().success());
    let s = json(&line);
    let sent = (PINGS * ROUNDS) as u64;
    // A new bridge sends IPv6 multicast (MLD, router solicitations) for a while; the container's
    // eth0 has IPv6 off, so each such packet is dropped there, with its reason.
    let ipv6: u64 = s["drops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == "IPV6DISABLED")
        .map(|d| d["count"].as_u64().unwrap())
        .sum();
    for (way, what, other) in [
        ("from_container", "requests", 0),
        ("to_container", "replies", ipv6),
    ] {
        let d = &s[way];
        // Stated tolerance, 1%: an ARP exchange.
        let packets = d["packets"].as_u64().unwrap() - other;
        assert!(
            (sent..=sent + sent / 100).contains(&packets),
            "{packets} packets {way} for {sent} {what}: {s}"
        );
        for segment in ["veth", "bridge"] {
            let l = &d[segment];
            assert!(l["n"].as_u64().unwrap() >= sent, "{way} {segment}: {s}");
            let m = l["median_us"].as_f64().unwrap();
            assert!(m > 0.0 && m <= l["p99_us"].as_f64().unwrap(), "{s}");
        }
    }
    // Both pings cross a veth pair; only the container's crosses the bridge, both ways. So the
    // RTT difference is what the two bridge segments take.
    let rtt_difference = median(&mut through_bridge) - median(&mut plain_veth);
    let bridge = s["from_container"]["bridge"]["median_us"].as_f64().unwrap()
        + s["to_container"]["bridge"]["median_us"].as_f64().unwrap();
    let agree = match std::env::var("POC_EMULATED_CPU") {
        // The target, 20 us, on a real CPU.
        Err(_) => (bridge - rtt_difference).abs() <= 20.0,
        // Under emulation (the v2 guest's TCG) every microsecond is stretched and noisy, 80-150 us
        // here: the same order of magnitude is all that can be asked; the counts above still hold.
        Ok(_) => bridge > 0.0 && (rtt_difference / 3.0..=rtt_difference * 3.0).contains(&bridge),
    };
    assert!(
        agree,
        "trace --net: the bridge takes {bridge:.1} us a round trip; ping: {rtt_difference:.1} us more than over a plain veth"
    );
    eprintln!(
        "bridge per round trip: trace --net {bridge:.1} us, RTT difference {rtt_difference:.1} us; veth out {} us, in {} us",
        s["from_container"]["veth"]["median_us"], s["to_container"]["veth"]["median_us"]
    );
    // Nothing left behind: the programs the tracer held are gone with it (the kernel frees them
    // when their last fd closes: give it a moment). Checked where bpftool is installed.
    for id in programs.into_iter().filter(|_| bpftool().is_some()) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while program_exists(id) {
            assert!(
                std::time::Instant::now() < deadline,
                "BPF program {id} left"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    drop(plain);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

fn program_exists(id: u64) -> bool {
    bpftool()
        .unwrap()
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}
