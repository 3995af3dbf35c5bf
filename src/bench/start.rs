//! The start suite: how long `run --rm IMAGE true` takes, spawn to reaped exit, under each peer,
//! interleaved, with no network (loopback only, like runc's default spec), and the floor: a small
//! C program that does only what any runtime must (floor.c), with and without a memory cgroup.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::measure::{self, Progress};
use super::peers::{self, Job, Peer, Peers};
use super::report::{Row, SuiteReport};
use super::{fail, Bench, Result};

const FLOOR_C: &str = include_str!("floor.c");

/// Where the floor's memory leaf goes, and its limit file: in the bench's cgroup parent.
fn floor_cgroup(bench: &Bench) -> Option<(PathBuf, &'static str)> {
    let parent = bench.cgroup_parent.trim_start_matches('/');
    if let Some((root, _)) = bench
        .hierarchies
        .v1
        .iter()
        .find(|(_, c)| c.iter().any(|c| c == "memory"))
    {
        let dir = root.join(parent);
        std::fs::create_dir_all(&dir).ok()?;
        return Some((dir, "memory.limit_in_bytes"));
    }
    let root = bench.hierarchies.unified.as_ref()?;
    let dir = root.join(parent);
    std::fs::create_dir_all(&dir).ok()?;
    let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory");
    let controllers = std::fs::read_to_string(dir.join("cgroup.subtree_control")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "memory")
        .then_some((dir, "memory.max"))
}

/// One variant measured: a row name and how to make the command of run number `i`.
enum Variant {
    Peer(Peer),
    Floor {
        name: &'static str,
        cgroup: Option<(PathBuf, &'static str)>,
    },
}

impl Variant {
    fn name(&self) -> &'static str {
        match self {
            Variant::Peer(p) => p.name(),
            Variant::Floor { name, .. } => name,
        }
    }
}

pub fn run(bench: &mut Bench, peers: &mut Peers, against: &[Peer]) -> Result<SuiteReport> {
    let runs = bench.opts.runs.max(1);
    let rootfs = bench.ensure_image("busybox", &["busybox"])?;
    let (variants, notes) = plan(bench, against, runs);
    let rows = measure(bench, peers, &variants, &rootfs, runs)?;
    Ok(report(rows, notes, against))
}

/// The variants to start (the peers, then the floor with and without a memory cgroup when it
/// builds), and the notes that say how.
fn plan(bench: &mut Bench, against: &[Peer], runs: usize) -> (Vec<Variant>, Vec<String>) {
    let mut variants: Vec<Variant> = against
        .iter()
        .filter(|p| **p != Peer::Host)
        .map(|p| Variant::Peer(*p))
        .collect();
    let mut notes = vec![
        format!("{runs} starts per peer, interleaved; wall time from spawn to reaped exit of `run --rm busybox true` without a network"),
        "runc and crun run an OCI bundle whose config.json is the Spec poc builds for the same container (same capabilities, seccomp profile, masked paths, mounts), its root an overlay of the same image".into(),
        format!("poc's state root is a tmpfs (as /run is on a typical host); cgroups under {}", bench.cgroup_parent),
    ];
    match bench.compile_c("floor", FLOOR_C) {
        Ok(binary) => {
            variants.push(Variant::Floor {
                name: "floor",
                cgroup: None,
            });
            match floor_cgroup(bench) {
                Some(cg) => variants.push(Variant::Floor {
                    name: "floor+memcg",
                    cgroup: Some(cg),
                }),
                None => notes.push("floor+memcg not measured: no memory controller here".into()),
            }
            notes.push("floor: six namespaces, an overlay root on fresh directories, pivot_root, /proc, exec (floor.c); floor+memcg adds a memory cgroup leaf with a limit".into());
            bench.floor = Some(binary);
        }
        Err(why) => notes.push(format!("the floor was not measured: {why}")),
    }
    if against.contains(&Peer::Crun) && !bench.hierarchies.v1.is_empty() {
        notes.push("crun runs in a mount namespace of its own without the cgroup2 mount (crun 1.8 refuses hybrid hosts)".into());
    }
    (variants, notes)
}

/// `runs` rounds of one start per variant, interleaved, after one warm-up start each (page
/// cache, dockerd's first container, the seccomp cache).
fn measure(
    bench: &mut Bench,
    peers: &mut Peers,
    variants: &[Variant],
    rootfs: &Path,
    runs: usize,
) -> Result<Vec<Row>> {
    let job = Job {
        image: "busybox".into(),
        argv: vec!["true".into()],
        ..Job::default()
    };
    let mut rows: Vec<Row> = variants
        .iter()
        .map(|v| Row::new("start", v.name(), "wall time", "ms", false))
        .collect();
    let round_secs = 0.05 * variants.len() as f64;
    let mut progress = Progress::new("start", runs + 1, (runs + 1) as f64 * round_secs);
    for round in 0..=runs {
        let step = match round {
            0 => "warm-up".to_string(),
            _ => format!("round {round}/{runs}"),
        };
        progress.step(&step, round_secs);
        for i in measure::turns(round, variants.len()) {
            let (cmd, peer) = match &variants[i] {
                Variant::Peer(p) => (peers.command(bench, *p, &job)?, *p),
                Variant::Floor { cgroup, .. } => {
                    (floor_command(bench, rootfs, round, cgroup)?, Peer::Host)
                }
            };
            if round == 1 {
                rows[i].command = peers::command_line(peer, &cmd, &job);
            }
            let elapsed = peers::time(peers, peer, cmd)?;
            if round > 0 {
                rows[i].samples.push(elapsed.as_secs_f64() * 1e3);
            }
        }
    }
    Ok(rows)
}

/// The suite's report against crun (else the floor, else poc), with poc's time over the floor's.
fn report(rows: Vec<Row>, mut notes: Vec<String>, against: &[Peer]) -> SuiteReport {
    let baseline = if against.contains(&Peer::Crun) {
        "crun"
    } else if rows.iter().any(|r| r.peer == "floor") {
        "floor"
    } else {
        "poc"
    };
    notes.push(format!(
        "ratio: the peer's median time over {baseline}'s (below 1 is faster)"
    ));
    let mut suite = SuiteReport {
        name: "start".into(),
        title: "start: run --rm true".into(),
        baseline: baseline.into(),
        notes,
        results: rows,
    };
    suite.finish(&Default::default());
    if let (Some(poc), Some(floor)) = (suite.median("start", "poc"), suite.median("start", "floor"))
    {
        suite
            .notes
            .push(format!("poc / floor = {:.2}", poc / floor));
    }
    suite
}

fn floor_command(
    bench: &Bench,
    rootfs: &Path,
    round: usize,
    cgroup: &Option<(PathBuf, &'static str)>,
) -> Result<Command> {
    let binary = bench
        .floor
        .as_ref()
        .ok_or_else(|| fail("the floor is not built"))?;
    // Inside poc's store, beside the containers' writable layers.
    let dir = bench.work.join(format!("floor-run-{round}"));
    let mut cmd = Command::new(binary);
    cmd.arg(rootfs).arg(dir).arg("/bin/true");
    if let Some((parent, limit)) = cgroup {
        cmd.arg(parent.join(format!("floor-{round}"))).arg(limit);
    }
    Ok(cmd)
}
