//! The net suite: what poc's bridge network costs, three figures in one run.
//!   start  `poc run --rm busybox true` without a network (the test's baseline), on poc's bridge,
//!          and `docker run --rm` (the bench's dockerd has no bridge: no network either)
//!   rtt    ping from a container on the bridge to its gateway, against ping from a plain network
//!          namespace joined to the host by a veth pair and nothing else (made here)
//!   tcp    iperf3 from a container to the host, against iperf3 from that plain namespace
//! All traffic stays between the host and namespaces the bench makes; the namespace and the veth
//! pair are removed by `Bench::drop`, also after an error or Ctrl-C.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::measure::{self, Progress};
use super::peers::{self, Job, Peer, Peers};
use super::report::{Row, SuiteReport};
use super::{check_interrupted, fail, Bench, Result};

/// The row name of the baseline of the rtt and tcp tests.
const PLAIN: &str = "plain netns+veth";

/// (min, avg, max) round-trip times in ms from ping's summary line: busybox's
/// "round-trip min/avg/max = 0.045/0.067/0.190 ms" or iputils' "rtt min/avg/max/mdev = ...".
pub fn parse_ping(output: &str) -> Option<(f64, f64, f64)> {
    let line = output.lines().find(|l| l.contains("min/avg/max"))?;
    let (_, values) = line.split_once('=')?;
    let mut numbers = values
        .split_whitespace()
        .next()?
        .split('/')
        .map(|v| v.parse::<f64>().ok());
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

/// Packets sent and received, from ping's "N packets transmitted, M packets received" line.
pub fn parse_ping_counts(output: &str) -> Option<(u64, u64)> {
    let line = output.lines().find(|l| l.contains("packets transmitted"))?;
    let mut words = line.split(',').map(|part| {
        part.split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
    });
    Some((words.next()??, words.next()??))
}

/// What one iperf3 client run (`-J`) measured: bits per second received, and the sender's
/// retransmits (absent from some outputs).
pub fn parse_iperf3(json: &str) -> Option<(f64, Option<f64>)> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let end = &value["end"];
    let bits = end["sum_received"]["bits_per_second"].as_f64()?;
    let retransmits = end["sum_sent"]["retransmits"].as_f64();
    Some((bits, retransmits))
}

/// How /proc/net/tcp writes a local IPv4 address and port.
fn proc_net_tcp_address(addr: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_ne_bytes(addr.octets()))
}

/// Whether a TCP socket of this network namespace listens on `addr:port`.
fn listening(addr: Ipv4Addr, port: u16) -> bool {
    let wanted = proc_net_tcp_address(addr, port);
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
}

/// Whether `path` is a mount point (in this process's mount namespace).
fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p) == path)
}

/// `ip ARGS`, an error (with ip's message) unless it succeeds.
fn ip(args: &[&str]) -> Result<()> {
    measure::output(Command::new("ip").args(args)).map(|_| ())
}

/// The baseline's network: a namespace and a veth pair to the host, addresses on both ends,
/// nothing else (no bridge, no nftables). Its removal is registered with the bench first.
struct PlainNet {
    netns: String,
    host_addr: Ipv4Addr,
}

impl PlainNet {
    fn make(bench: &mut Bench) -> Result<Self> {
        let pid = std::process::id();
        let netns = format!("pbns{pid}");
        let host_if = format!("pbh{}", pid % 100_000);
        let peer_if = format!("pbp{}", pid % 100_000);
        // The /24 after the bench's bridge subnet.
        let base = u32::from(bench.subnet.network()) + 256;
        let host_addr = Ipv4Addr::from(base + 1);
        let peer_addr = Ipv4Addr::from(base + 2);
        // Names of the bench's own: a namespace or link already there is someone else's (its
        // removal is registered before it is made, so that an interrupted `ip` leaves nothing).
        if Path::new("/run/netns").join(&netns).exists()
            || Path::new("/sys/class/net").join(&host_if).exists()
        {
            return Err(fail(format!(
                "the network namespace {netns} or the link {host_if} exists already: left by an earlier bench? (ip netns del {netns}; ip link del {host_if})"
            )));
        }
        // `ip netns add` makes /run/netns a mount point (a bind mount of itself) and leaves it:
        // undone at the end when it was not one before and no namespace is left in it.
        let run_dir = PathBuf::from("/run/netns");
        let (dir_existed, was_mount) = (run_dir.exists(), is_mount_point(&run_dir));
        {
            let netns = netns.clone();
            bench.on_cleanup(move || {
                let _ = measure::quiet(Command::new("ip").args(["netns", "del", &netns]));
                let empty = std::fs::read_dir(&run_dir).is_ok_and(|mut d| d.next().is_none());
                if !was_mount && empty && is_mount_point(&run_dir) {
                    let _ = nix::mount::umount2(&run_dir, nix::mount::MntFlags::MNT_DETACH);
                }
                if !dir_existed && empty {
                    let _ = std::fs::remove_dir(&run_dir);
                }
            });
        }
        ip(&["netns", "add", &netns])?;
        {
            let host_if = host_if.clone();
            bench.on_cleanup(move || {
                let _ = measure::quiet(Command::new("ip").args(["link", "del", &host_if]));
            });
        }
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &netns,
        ])?;
        ip(&["addr", "add", &format!("{host_addr}/24"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{peer_addr}/24"),
            "dev",
            &peer_if,
        ])?;
        ip(&["-n", &netns, "link", "set", &peer_if, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(PlainNet { netns, host_addr })
    }

    /// `ARGV` run in the namespace.
    fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).args(argv);
        cmd
    }
}

/// `iperf3 -s -1` on the host, bound to `addr:port`, killed (by its PID) if still running when
/// dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(addr: Ipv4Addr, port: u16) -> Result<Self> {
        check_interrupted()?;
        let child = Command::new("iperf3")
            .args(["-s", "-1", "-B", &addr.to_string(), "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot run iperf3: {e}")))?;
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !listening(addr, port) {
            check_interrupted()?;
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(fail(format!(
                    "iperf3 -s -B {addr} -p {port} ended ({status}) before listening"
                )));
            }
            if Instant::now() > deadline {
                return Err(fail(format!("iperf3 -s did not listen on {addr}:{port}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// Waits for the server to end after its one client (a few seconds at most).
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn median_of(suite: &SuiteReport, case: &str, peer: &str) -> Option<f64> {
    suite
        .results
        .iter()
        .find(|r| r.case == case && r.peer == peer)
        .map(|r| r.summary.median)
}

pub fn run(bench: &mut Bench, peers: &mut Peers, against: &[Peer]) -> Result<SuiteReport> {
    for (program, package) in [("ip", "iproute2"), ("iperf3", "iperf3")] {
        if peers::find_program(program).is_none() {
            return Err(fail(format!(
                "{program} is not installed on the host (the net suite needs it): apt-get install {package}"
            )));
        }
    }
    let runs = bench.opts.runs.max(1);
    let quick = bench.opts.quick;
    let busybox = bench
        .ensure_image("busybox", &["busybox"])?
        .join("bin/busybox");
    let image = bench.opts.image.clone();
    bench.ensure_image(&image, &super::sysbench::IMAGE_INIT)?;
    let docker = against.contains(&Peer::Docker);
    let mut notes = Vec::new();
    notes.extend(super::unmeasured(against, "only poc and docker are"));
    let gateway = Ipv4Addr::from(u32::from(bench.subnet.network()) + 1);
    let pings = (runs * 5).max(50);
    let rtt_rounds = if quick { 3 } else { 5 };
    let tcp_rounds = (runs / 20).clamp(2, 5);
    let tcp_secs = bench.opts.time.unwrap_or(if quick { 2 } else { 5 });
    let port = 20_000 + (std::process::id() % 20_000) as u16;

    let start_variants: Vec<(&str, Peer, bool)> = {
        let mut v = vec![
            ("poc none", Peer::Poc, false),
            ("poc bridge", Peer::Poc, true),
        ];
        if docker {
            v.push(("docker", Peer::Docker, false));
        }
        v
    };
    let mut rows: Vec<Row> = Vec::new();
    for (name, _, _) in &start_variants {
        let mut row = Row::new("start", name, "wall time", "ms", false);
        row.baseline = *name == "poc none";
        rows.push(row);
    }
    let mut rtt_rows = [
        Row::new("rtt", "poc bridge", "ping RTT (average)", "ms", false),
        Row::new("rtt", PLAIN, "ping RTT (average)", "ms", false),
    ];
    rtt_rows[1].baseline = true;
    let mut tcp_rows = [
        Row::new("tcp", "poc bridge", "throughput", "Gbit/s", true),
        Row::new("tcp", PLAIN, "throughput", "Gbit/s", true),
    ];
    tcp_rows[1].baseline = true;

    let chunk = (runs / 5).max(1);
    let start_secs = 0.1 * start_variants.len() as f64;
    let rtt_secs = pings as f64 * 0.0025 + 0.1;
    let tcp_secs_f = tcp_secs as f64 + 0.5;
    let mut progress = Progress::new(
        "net",
        1 + runs.div_ceil(chunk) + rtt_rounds + tcp_rounds,
        start_secs * (runs + 1) as f64
            + 2.0 * rtt_secs * rtt_rounds as f64
            + 2.0 * tcp_secs_f * tcp_rounds as f64,
    );

    // Start times; the warm-up's bridged run makes the bridge and its NAT.
    let job = |bridge: bool| Job {
        image: "busybox".into(),
        argv: vec!["true".into()],
        bridge,
        ..Job::default()
    };
    progress.step("start: warm-up (makes the bridge)", start_secs);
    for round in 0..=runs {
        if round > 0 && (round - 1) % chunk == 0 {
            let last = (round - 1 + chunk).min(runs);
            progress.step(
                &format!("start: rounds {round}-{last} of {runs}"),
                start_secs * (last + 1 - round) as f64,
            );
        }
        let n = start_variants.len();
        for k in 0..n {
            let i = (k + round) % n;
            let (_, peer, bridge) = start_variants[i];
            let cmd = peers.command(bench, peer, &job(bridge))?;
            if round == 1 {
                rows[i].command = measure::command_line(&cmd);
            }
            let elapsed = peers::time(peers, peer, cmd)?;
            if round > 0 {
                rows[i].samples.push(elapsed.as_secs_f64() * 1e3);
            }
        }
    }

    // The baseline's network.
    let plain = PlainNet::make(bench)?;

    // RTT: `rtt_rounds` pings of `pings` packets each, interleaved.
    let ping = |target: Ipv4Addr| measure::words(&format!("ping -q -c {pings} -i 0.002 {target}"));
    let mut extras = std::collections::BTreeMap::new();
    for round in 0..rtt_rounds {
        progress.step(
            &format!("rtt: round {}/{rtt_rounds} ({pings} pings each)", round + 1),
            2.0 * rtt_secs,
        );
        for k in 0..2 {
            let i = (k + round) % 2;
            let (cmd, peer) = if i == 0 {
                let job = Job {
                    image: "busybox".into(),
                    argv: ping(gateway),
                    bridge: true,
                    ..Job::default()
                };
                (peers.command(bench, Peer::Poc, &job)?, Peer::Poc)
            } else {
                let mut argv = vec![busybox.to_string_lossy().into_owned()];
                argv.extend(ping(plain.host_addr));
                (plain.command(&argv), Peer::Host)
            };
            if rtt_rows[i].command.is_empty() {
                rtt_rows[i].command = measure::command_line(&cmd);
            }
            let (_, out) = peers::run_timed(peers, peer, cmd)?;
            let (min, avg, max) = parse_ping(&out).ok_or_else(|| {
                fail(format!(
                    "no round-trip times in ping's output ({}):\n{out}",
                    rtt_rows[i].peer
                ))
            })?;
            rtt_rows[i].samples.push(avg);
            let mut extra = std::collections::BTreeMap::new();
            extra.insert("rtt_min_ms".to_string(), min);
            extra.insert("rtt_max_ms".to_string(), max);
            if let Some((sent, received)) = parse_ping_counts(&out) {
                extra.insert(
                    "lost_percent".to_string(),
                    (sent - received.min(sent)) as f64 * 100.0 / sent.max(1) as f64,
                );
            }
            extras
                .entry(("rtt".to_string(), rtt_rows[i].peer.clone()))
                .or_insert_with(Vec::new)
                .push(extra);
        }
    }

    // TCP: `tcp_rounds` iperf3 runs of `tcp_secs` each, interleaved, each to a fresh server.
    let iperf = |target: Ipv4Addr| {
        measure::words(&format!("iperf3 -c {target} -p {port} -t {tcp_secs} -J"))
    };
    for round in 0..tcp_rounds {
        progress.step(
            &format!("tcp: round {}/{tcp_rounds} ({tcp_secs} s each)", round + 1),
            2.0 * tcp_secs_f,
        );
        for k in 0..2 {
            let i = (k + round) % 2;
            let (cmd, peer, server) = if i == 0 {
                let job = Job {
                    image: image.clone(),
                    argv: iperf(gateway),
                    bridge: true,
                    ..Job::default()
                };
                let server = Server::start(gateway, port)?;
                (peers.command(bench, Peer::Poc, &job)?, Peer::Poc, server)
            } else {
                let server = Server::start(plain.host_addr, port)?;
                (plain.command(&iperf(plain.host_addr)), Peer::Host, server)
            };
            if tcp_rows[i].command.is_empty() {
                tcp_rows[i].command = measure::command_line(&cmd);
            }
            let (_, out) = peers::run_timed(peers, peer, cmd)?;
            server.finish();
            let (bits, retransmits) = parse_iperf3(&out).ok_or_else(|| {
                fail(format!(
                    "no throughput in iperf3's output ({}):\n{out}",
                    tcp_rows[i].peer
                ))
            })?;
            tcp_rows[i].samples.push(bits / 1e9);
            let mut extra = std::collections::BTreeMap::new();
            if let Some(r) = retransmits {
                extra.insert("retransmits".to_string(), r);
            }
            extras
                .entry(("tcp".to_string(), tcp_rows[i].peer.clone()))
                .or_insert_with(Vec::new)
                .push(extra);
        }
    }
    rows.extend(rtt_rows);
    rows.extend(tcp_rows);

    notes.insert(0, format!(
        "start: {runs} starts each, interleaved, after one warm-up: `run --rm busybox true`, wall time from spawn to reaped exit; poc none: `--network none` (loopback only; the test's baseline); poc bridge: poc's bridge {} on {} (a veth pair, an address lease, nftables NAT)",
        bench.bridge, bench.subnet
    ));
    if docker {
        notes.push("docker: `docker run --rm --network none`: the bench's dockerd runs with --bridge=none and no iptables, so docker's start has no network (a lower bound of its bridged start)".into());
        notes.push("docker not measured for rtt and tcp: its dockerd has no bridge".into());
    }
    notes.push(format!(
        "rtt: {rtt_rounds} rounds of `ping -q -c {pings} -i 0.002` (the image's static busybox), interleaved, each sample the round's average: poc bridge from a container on the bridge to its gateway {gateway}; {PLAIN} (the test's baseline): from a network namespace ({}) joined to the host by a veth pair and nothing else, to the host's end {}",
        plain.netns, plain.host_addr
    ));
    notes.push(format!(
        "tcp: {tcp_rounds} rounds of `iperf3 -c -t {tcp_secs}` to `iperf3 -s -1` on the host, interleaved, Gbit/s received: poc bridge from a container of the image {image} to the gateway; {PLAIN} (the test's baseline): the host's iperf3 in that namespace to the veth's host end"
    ));
    notes.push("ratio: the row's median over its test's baseline (start, rtt: below 1 is faster; tcp: above 1 is faster)".into());
    let mut suite = SuiteReport {
        name: "net".into(),
        title: "net: poc's bridge network".into(),
        baseline: "the test's baseline".into(),
        notes,
        results: rows,
    };
    suite.finish(&extras);
    if let (Some(none), Some(bridge)) = (
        median_of(&suite, "start", "poc none"),
        median_of(&suite, "start", "poc bridge"),
    ) {
        suite.notes.push(format!(
            "the bridge adds {:.2} ms to a start",
            bridge - none
        ));
        if let Some(docker) = median_of(&suite, "start", "docker") {
            suite.notes.push(format!(
                "poc bridge / docker = {:.3} (the issue's target: at most 0.1)",
                bridge / docker
            ));
        }
    }
    Ok(suite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summaries() {
        let busybox = "PING 10.150.0.1 (10.150.0.1): 56 data bytes\n\n--- 10.150.0.1 ping statistics ---\n500 packets transmitted, 498 packets received, 0% packet loss\nround-trip min/avg/max = 0.045/0.067/0.190 ms\n";
        assert_eq!(parse_ping(busybox), Some((0.045, 0.067, 0.19)));
        assert_eq!(parse_ping_counts(busybox), Some((500, 498)));
        let iputils = "--- 10.0.0.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 4ms\nrtt min/avg/max/mdev = 0.031/0.052/0.081/0.017 ms\n";
        assert_eq!(parse_ping(iputils), Some((0.031, 0.052, 0.081)));
        assert_eq!(parse_ping_counts(iputils), Some((5, 5)));
        assert_eq!(parse_ping("ping: sendto: Network unreachable\n"), None);
        assert_eq!(parse_ping("round-trip min/avg/max = 0.1/x/0.3 ms"), None);
    }

    #[test]
    fn iperf3_json() {
        let json = r#"{"start": {"connected": []}, "intervals": [],
            "end": {"sum_sent": {"bytes": 1, "bits_per_second": 2.51e10, "retransmits": 3},
                    "sum_received": {"bytes": 1, "bits_per_second": 2.5e10}}}"#;
        assert_eq!(parse_iperf3(json), Some((2.5e10, Some(3.0))));
        let no_retransmits = r#"{"end": {"sum_received": {"bits_per_second": 1e9}}}"#;
        assert_eq!(parse_iperf3(no_retransmits), Some((1e9, None)));
        let failed = r#"{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server: Connection refused"}"#;
        assert_eq!(parse_iperf3(failed), None);
        assert_eq!(parse_iperf3("iperf3: error"), None);
    }

    #[test]
    fn proc_net_tcp_addresses() {
        // Little-endian hosts print the address's bytes reversed; the port is big-endian hex.
        let expected = if cfg!(target_endian = "little") {
            "0100960A:1451"
        } else {
            "0A960001:1451"
        };
        assert_eq!(
            proc_net_tcp_address(Ipv4Addr::new(10, 150, 0, 1), 5201),
            expected
        );
    }
}
