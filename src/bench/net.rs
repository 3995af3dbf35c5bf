//! The net suite: what poc's bridge network costs, three figures in one run.
//!   start  `poc run --rm busybox true` without a network (the test's baseline), on poc's bridge,
//!          and `docker run --rm` (the bench's dockerd has no bridge: no network either)
//!   rtt    ping from a container on the bridge to its gateway, against ping from a plain network
//!          namespace joined to the host by a veth pair and nothing else (plain.rs)
//!   tcp    iperf3 from a container to the host, against iperf3 from that plain namespace
//! All traffic stays between the host and namespaces the bench makes; the namespace and the veth
//! pair are removed by `Bench::drop`, also after an error or Ctrl-C.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use super::measure::{self, Progress};
use super::peers::{self, Job, Peer, Peers};
use super::plain::{PlainNet, Server};
use super::report::{Extras, Figures, Row, SuiteReport};
use super::{fail, Bench, Result};

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

/// What the suite runs, from the options: how many of each test, and where it sends packets.
struct Plan {
    runs: usize,
    /// The image with iperf3 in it.
    image: String,
    /// The static busybox of the busybox image: the plain namespace's ping.
    busybox: PathBuf,
    docker: bool,
    /// The bench bridge's gateway: where containers ping and send to.
    gateway: Ipv4Addr,
    pings: usize,
    rtt_rounds: usize,
    tcp_rounds: usize,
    tcp_secs: u64,
    /// iperf3's port.
    port: u16,
    /// The start test's rows: name, peer, on poc's bridge.
    starts: Vec<(&'static str, Peer, bool)>,
}

impl Plan {
    fn new(bench: &mut Bench, against: &[Peer]) -> Result<Self> {
        let runs = bench.opts.runs.max(1);
        let quick = bench.opts.quick;
        let busybox = bench
            .ensure_image("busybox", &["busybox"])?
            .join("bin/busybox");
        let image = bench.opts.image.clone();
        bench.ensure_image(&image, &super::sysbench::IMAGE_INIT)?;
        let docker = against.contains(&Peer::Docker);
        let mut starts = vec![
            ("poc none", Peer::Poc, false),
            ("poc bridge", Peer::Poc, true),
        ];
        if docker {
            starts.push(("docker", Peer::Docker, false));
        }
        Ok(Plan {
            runs,
            image,
            busybox,
            docker,
            gateway: Ipv4Addr::from(u32::from(bench.subnet.network()) + 1),
            pings: (runs * 5).max(50),
            rtt_rounds: if quick { 3 } else { 5 },
            tcp_rounds: (runs / 20).clamp(2, 5),
            tcp_secs: bench.opts.time.unwrap_or(if quick { 2 } else { 5 }),
            port: 20_000 + (std::process::id() % 20_000) as u16,
            starts,
        })
    }

    /// Starts per progress step.
    fn chunk(&self) -> usize {
        (self.runs / 5).max(1)
    }

    /// Expected seconds of a round of starts, of a round of pings (both paths), of a tcp round.
    fn round_secs(&self) -> (f64, f64, f64) {
        (
            0.1 * self.starts.len() as f64,
            2.0 * (self.pings as f64 * 0.0025 + 0.1),
            2.0 * (self.tcp_secs as f64 + 0.5),
        )
    }

    fn progress(&self) -> Progress {
        let (start, rtt, tcp) = self.round_secs();
        Progress::new(
            "net",
            1 + self.runs.div_ceil(self.chunk()) + self.rtt_rounds + self.tcp_rounds,
            start * (self.runs + 1) as f64
                + rtt * self.rtt_rounds as f64
                + tcp * self.tcp_rounds as f64,
        )
    }
}

pub fn run(bench: &mut Bench, peers: &mut Peers, against: &[Peer]) -> Result<SuiteReport> {
    for (program, package) in [("ip", "iproute2"), ("iperf3", "iperf3")] {
        if peers::find_program(program).is_none() {
            return Err(fail(format!(
                "{program} is not installed on the host (the net suite needs it): apt-get install {package}"
            )));
        }
    }
    let plan = Plan::new(bench, against)?;
    let mut progress = plan.progress();
    let mut rows = measure_starts(bench, peers, &plan, &mut progress)?;
    let plain = PlainNet::make(bench)?;
    let mut extras = Extras::new();
    let pair = &mut Pair {
        bench,
        peers,
        progress: &mut progress,
        extras: &mut extras,
    };
    rows.extend(measure_rtt(pair, &plan, &plain)?);
    rows.extend(measure_tcp(pair, &plan, &plain)?);
    let notes = notes(bench, &plan, &plain, against);
    Ok(report(rows, notes, &extras))
}

/// `run --rm busybox true` without a network, on poc's bridge and under docker, interleaved;
/// the warm-up's bridged run makes the bridge and its NAT.
fn measure_starts(
    bench: &mut Bench,
    peers: &mut Peers,
    plan: &Plan,
    progress: &mut Progress,
) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = plan
        .starts
        .iter()
        .map(|(name, _, _)| {
            let row = Row::new("start", name, "wall time", "ms", false);
            if *name == "poc none" {
                row.baseline()
            } else {
                row
            }
        })
        .collect();
    let job = |bridge: bool| Job {
        image: "busybox".into(),
        argv: vec!["true".into()],
        bridge,
        ..Job::default()
    };
    let (runs, chunk, (round_secs, _, _)) = (plan.runs, plan.chunk(), plan.round_secs());
    progress.step("start: warm-up (makes the bridge)", round_secs);
    for round in 0..=runs {
        if round > 0 && (round - 1) % chunk == 0 {
            let last = (round - 1 + chunk).min(runs);
            progress.step(
                &format!("start: rounds {round}-{last} of {runs}"),
                round_secs * (last + 1 - round) as f64,
            );
        }
        for i in measure::turns(round, plan.starts.len()) {
            let (_, peer, bridge) = plan.starts[i];
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
    Ok(rows)
}

/// What the rtt and tcp tests share while they measure.
struct Pair<'a> {
    bench: &'a mut Bench,
    peers: &'a mut Peers,
    progress: &'a mut Progress,
    extras: &'a mut Extras,
}

/// The two routes the rtt and tcp tests compare, in their rows' order.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// From a container on poc's bridge to its gateway.
    Bridge,
    /// From the plain namespace to the host's end of its veth pair.
    Plain,
}

const ROUTES: [Route; 2] = [Route::Bridge, Route::Plain];

/// One run of a pair test: the command, the peer it runs under, and the iperf3 server it talks
/// to (waited for after the run).
type PairRun = (Command, Peer, Option<Server>);

/// A test of both routes: `rounds` rounds, interleaved, each run's output read by `figures` (the
/// row's sample and secondary figures); `what` names the figure an output may lack.
struct PairTest {
    case: &'static str,
    metric: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    rounds: usize,
    /// How a round is described, after "CASE: round I/N ", and its expected seconds.
    detail: String,
    round_secs: f64,
    what: &'static str,
    figures: fn(&str) -> Option<Figures>,
}

impl Pair<'_> {
    /// Runs `test`, `command` making each run of a route; the rows of both routes, the plain
    /// one the baseline.
    fn measure(
        &mut self,
        test: &PairTest,
        mut command: impl FnMut(&mut Pair, Route) -> Result<PairRun>,
    ) -> Result<[Row; 2]> {
        let row = |peer| {
            Row::new(
                test.case,
                peer,
                test.metric,
                test.unit,
                test.higher_is_better,
            )
        };
        let mut rows = [row(ROW_PEERS[0]), row(ROW_PEERS[1]).baseline()];
        for round in 0..test.rounds {
            self.progress.step(
                &format!(
                    "{}: round {}/{} {}",
                    test.case,
                    round + 1,
                    test.rounds,
                    test.detail
                ),
                test.round_secs,
            );
            for i in measure::turns(round, 2) {
                let (cmd, peer, server) = command(self, ROUTES[i])?;
                let row = &mut rows[i];
                if row.command.is_empty() {
                    row.command = measure::command_line(&cmd);
                }
                let (_, out) = peers::run_timed(self.peers, peer, cmd)?;
                if let Some(server) = server {
                    server.finish();
                }
                let (value, extra) = (test.figures)(&out)
                    .ok_or_else(|| fail(format!("no {} ({}):\n{out}", test.what, row.peer)))?;
                row.samples.push(value);
                self.extras
                    .entry((test.case.to_string(), row.peer.clone()))
                    .or_default()
                    .push(extra);
            }
        }
        Ok(rows)
    }
}

/// The rtt and tcp rows' peers, in the order of [`ROUTES`].
const ROW_PEERS: [&str; 2] = ["poc bridge", PLAIN];

/// Ping's average round trip, with its min, max and loss as secondary figures.
fn ping_figures(out: &str) -> Option<Figures> {
    let (min, avg, max) = parse_ping(out)?;
    let mut extra = BTreeMap::from([
        ("rtt_min_ms".to_string(), min),
        ("rtt_max_ms".to_string(), max),
    ]);
    if let Some((sent, received)) = parse_ping_counts(out) {
        extra.insert(
            "lost_percent".to_string(),
            (sent - received.min(sent)) as f64 * 100.0 / sent.max(1) as f64,
        );
    }
    Some((avg, extra))
}

/// iperf3's throughput in Gbit/s, with the sender's retransmits as a secondary figure.
fn iperf3_figures(out: &str) -> Option<Figures> {
    let (bits, retransmits) = parse_iperf3(out)?;
    let extra = retransmits
        .map(|r| ("retransmits".to_string(), r))
        .into_iter()
        .collect();
    Some((bits / 1e9, extra))
}

/// RTT: `rtt_rounds` pings of `pings` packets each, interleaved.
fn measure_rtt(pair: &mut Pair, plan: &Plan, plain: &PlainNet) -> Result<[Row; 2]> {
    let pings = plan.pings;
    let ping = |target: Ipv4Addr| measure::words(&format!("ping -q -c {pings} -i 0.002 {target}"));
    let test = PairTest {
        case: "rtt",
        metric: "ping RTT (average)",
        unit: "ms",
        higher_is_better: false,
        rounds: plan.rtt_rounds,
        detail: format!("({pings} pings each)"),
        round_secs: plan.round_secs().1,
        what: "round-trip times in ping's output",
        figures: ping_figures,
    };
    pair.measure(&test, |pair, route| {
        Ok(match route {
            Route::Bridge => {
                let job = Job {
                    image: "busybox".into(),
                    argv: ping(plan.gateway),
                    bridge: true,
                    ..Job::default()
                };
                (
                    pair.peers.command(pair.bench, Peer::Poc, &job)?,
                    Peer::Poc,
                    None,
                )
            }
            Route::Plain => {
                let mut argv = vec![plan.busybox.to_string_lossy().into_owned()];
                argv.extend(ping(plain.host_addr));
                (plain.command(&argv), Peer::Host, None)
            }
        })
    })
}

/// TCP: `tcp_rounds` iperf3 runs of `tcp_secs` each, interleaved, each to a fresh server.
fn measure_tcp(pair: &mut Pair, plan: &Plan, plain: &PlainNet) -> Result<[Row; 2]> {
    let (port, secs) = (plan.port, plan.tcp_secs);
    let iperf =
        |target: Ipv4Addr| measure::words(&format!("iperf3 -c {target} -p {port} -t {secs} -J"));
    let test = PairTest {
        case: "tcp",
        metric: "throughput",
        unit: "Gbit/s",
        higher_is_better: true,
        rounds: plan.tcp_rounds,
        detail: format!("({secs} s each)"),
        round_secs: plan.round_secs().2,
        what: "throughput in iperf3's output",
        figures: iperf3_figures,
    };
    pair.measure(&test, |pair, route| {
        Ok(match route {
            Route::Bridge => {
                let job = Job {
                    image: plan.image.clone(),
                    argv: iperf(plan.gateway),
                    bridge: true,
                    ..Job::default()
                };
                let server = Server::start(plan.gateway, port)?;
                let cmd = pair.peers.command(pair.bench, Peer::Poc, &job)?;
                (cmd, Peer::Poc, Some(server))
            }
            Route::Plain => {
                let server = Server::start(plain.host_addr, port)?;
                (
                    plain.command(&iperf(plain.host_addr)),
                    Peer::Host,
                    Some(server),
                )
            }
        })
    })
}

/// How each test ran, for a reader who wants to run it again.
fn notes(bench: &Bench, plan: &Plan, plain: &PlainNet, against: &[Peer]) -> Vec<String> {
    let (runs, gateway, image) = (plan.runs, plan.gateway, &plan.image);
    let (pings, rtt_rounds, tcp_rounds, tcp_secs) =
        (plan.pings, plan.rtt_rounds, plan.tcp_rounds, plan.tcp_secs);
    let mut notes = vec![format!(
        "start: {runs} starts each, interleaved, after one warm-up: `run --rm busybox true`, wall time from spawn to reaped exit; poc none: `--network none` (loopback only; the test's baseline); poc bridge: poc's bridge {} on {} (a veth pair, an address lease, nftables NAT)",
        bench.bridge, bench.subnet
    )];
    notes.extend(super::unmeasured(against, "only poc and docker are"));
    if plan.docker {
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
    notes
}

/// The suite's report, with what the bridge adds to a start.
fn report(rows: Vec<Row>, notes: Vec<String>, extras: &Extras) -> SuiteReport {
    let mut suite = SuiteReport {
        name: "net".into(),
        title: "net: poc's bridge network".into(),
        baseline: "the test's baseline".into(),
        notes,
        results: rows,
    };
    suite.finish(extras);
    let median = |peer: &str| suite.median("start", peer);
    if let (Some(none), Some(bridge)) = (median("poc none"), median("poc bridge")) {
        let docker = median("docker");
        suite.notes.push(format!(
            "the bridge adds {:.2} ms to a start",
            bridge - none
        ));
        if let Some(docker) = docker {
            suite.notes.push(format!(
                "poc bridge / docker = {:.3} (the issue's target: at most 0.1)",
                bridge / docker
            ));
        }
    }
    suite
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
}
