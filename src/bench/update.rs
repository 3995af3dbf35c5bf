//! The update suite: how long changing a running container's memory limit takes as a user does
//! it, one whole process per update: `poc update`, against a raw C program that opens, writes and
//! closes the same cgroup file (rawwrite.c, the floor of any process that does it), and against
//! `docker update` on a container of the bench's private dockerd. Each writes the limit, 64M and
//! 128M in turn, interleaved (poc, raw, docker, poc, raw, ...); docker, at ~30 ms an update, gets
//! fewer runs, spread over the same rounds.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::measure::{self, Progress};
use super::peers::{Peer, Peers};
use super::report::{Row, SuiteReport};
use super::{fail, Bench, Result};

const RAW_C: &str = include_str!("rawwrite.c");

/// The two limits written in turn, as poc and docker take them and as bytes for the raw write.
const LIMITS: [(&str, &str, u64); 2] = [("64M", "64m", 64 << 20), ("128M", "128m", 128 << 20)];

/// Updates that are not measured, per variant, before the first measured one.
const WARM_UP: usize = 3;

/// The memory limit file of poc's container `id`, from its cgroup directories (`poc inspect`):
/// memory.limit_in_bytes on cgroup v1 (and hybrid hosts), memory.max on v2.
fn limit_file(bench: &Bench, id: &str) -> Result<PathBuf> {
    let out = measure::output(&mut bench.poc(["inspect", id]))?;
    let value: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("poc inspect {id}: {e}")))?;
    let dirs: Vec<PathBuf> = value[0]["Cgroup"]["Directories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(PathBuf::from))
        .collect();
    ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|f| f.exists())
        .ok_or_else(|| {
            fail(format!(
                "no memory limit file in the cgroup directories of {id}: {dirs:?}"
            ))
        })
}

/// The limit in `file`, in bytes ("max" is none).
fn read_limit(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// One way of updating the limit: a row of the report.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Poc,
    Raw,
    Docker,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Poc => "poc",
            Variant::Raw => "raw write",
            Variant::Docker => "docker",
        }
    }
}

/// Whether docker updates in round `round` of `rounds`: `wanted` of them, evenly spread.
fn docker_round(round: usize, rounds: usize, wanted: usize) -> bool {
    round * wanted / rounds != (round + 1) * wanted / rounds
}

/// The variants measured, and what the raw write and docker need.
struct Plan {
    variants: Vec<Variant>,
    /// The raw write's binary, when it built.
    raw: Option<PathBuf>,
    docker: bool,
    runs: usize,
    /// docker's updates, spread over the rounds (it takes ~30 ms an update).
    docker_runs: usize,
    notes: Vec<String>,
}

impl Plan {
    fn new(bench: &mut Bench, against: &[Peer]) -> Self {
        let runs = bench.opts.runs.max(1);
        let mut notes = Vec::new();
        let mut variants = vec![Variant::Poc];
        let raw = match bench.compile_c("rawwrite", RAW_C) {
            Ok(binary) => {
                variants.push(Variant::Raw);
                Some(binary)
            }
            Err(why) => {
                notes.push(format!("the raw write was not measured: {why}"));
                None
            }
        };
        let docker = against.contains(&Peer::Docker);
        if docker {
            variants.push(Variant::Docker);
        }
        notes.extend(super::unmeasured(
            against,
            "it has no update command of its own here",
        ));
        Plan {
            variants,
            raw,
            docker,
            runs,
            docker_runs: (runs / 3).max(10).min(runs),
            notes,
        }
    }
}

/// The containers updated, and whose turn it is to write which limit: poc and the raw write
/// share poc's container's file, so each write changes it; docker's container has its own.
struct Targets {
    /// poc's container, and the file its update writes (the raw write writes the same one).
    id: String,
    file: PathBuf,
    raw: Option<PathBuf>,
    docker_name: Option<String>,
    next_file: usize,
    next_docker: usize,
}

impl Targets {
    /// A `sleep` container under poc and under docker (when measured), both with 128M.
    fn start(bench: &mut Bench, peers: &mut Peers, plan: &Plan) -> Result<Self> {
        let out = measure::output(&mut bench.poc([
            "run",
            "-d",
            "--network",
            "none",
            "--mem",
            "128M",
            "busybox",
            "sleep",
            "100000",
        ]))?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if id.is_empty() {
            return Err(fail("poc run -d printed no container id"));
        }
        let file = limit_file(bench, &id)?;
        let docker_name = plan
            .docker
            .then(|| format!("pocbench-update-{}", std::process::id()));
        if let Some(name) = &docker_name {
            let (mut cmd, image) = peers.docker_client(bench, "busybox")?;
            cmd.args(["run", "-d", "--name", name])
                .args([
                    "--network",
                    "none",
                    "--memory",
                    "128m",
                    "--memory-swap",
                    "-1",
                ])
                .args([image.as_str(), "sleep", "100000"]);
            measure::output(&mut cmd)?;
        }
        Ok(Targets {
            id,
            file,
            raw: plan.raw.clone(),
            docker_name,
            next_file: 0,
            next_docker: 0,
        })
    }

    /// The next update of variant `v`: the other limit than its container's last one.
    fn command(&mut self, bench: &mut Bench, peers: &mut Peers, v: Variant) -> Result<Command> {
        let unmeasured = || fail(format!("{} is not measured", v.name()));
        let (poc_mem, _, bytes) = LIMITS[self.next_file % 2];
        match v {
            Variant::Poc => {
                self.next_file += 1;
                Ok(bench.poc(["update", &self.id, "--mem", poc_mem]))
            }
            Variant::Raw => {
                let mut cmd = Command::new(self.raw.as_ref().ok_or_else(unmeasured)?);
                self.next_file += 1;
                cmd.arg(&self.file).arg(bytes.to_string());
                Ok(cmd)
            }
            Variant::Docker => {
                let name = self.docker_name.as_ref().ok_or_else(unmeasured)?;
                let (_, docker_mem, _) = LIMITS[self.next_docker % 2];
                self.next_docker += 1;
                let (mut cmd, _) = peers.docker_client(bench, "busybox")?;
                cmd.args([
                    "update",
                    "--memory",
                    docker_mem,
                    "--memory-swap",
                    "-1",
                    name,
                ]);
                Ok(cmd)
            }
        }
    }

    /// poc update really writes the file: one update, read back.
    fn check_poc_writes(&mut self, bench: &mut Bench, peers: &mut Peers) -> Result<()> {
        let expected = LIMITS[self.next_file % 2].2;
        measure::time(&mut self.command(bench, peers, Variant::Poc)?)?;
        if read_limit(&self.file) != Some(expected) {
            return Err(fail(format!(
                "after poc update, {} holds {:?}, not {expected}",
                self.file.display(),
                std::fs::read_to_string(&self.file)
                    .unwrap_or_default()
                    .trim()
            )));
        }
        Ok(())
    }

    fn remove(&self, bench: &mut Bench, peers: &mut Peers) -> Result<()> {
        let _ = measure::output(&mut bench.poc(["rm", "-f", &self.id]));
        if let Some(name) = &self.docker_name {
            let (mut cmd, _) = peers.docker_client(bench, "busybox")?;
            let _ = measure::output(cmd.args(["rm", "-f", name]));
        }
        Ok(())
    }
}

pub fn run(bench: &mut Bench, peers: &mut Peers, against: &[Peer]) -> Result<SuiteReport> {
    bench.ensure_image("busybox", &["busybox"])?;
    let plan = Plan::new(bench, against);
    let mut targets = Targets::start(bench, peers, &plan)?;
    let rows = measure(bench, peers, &plan, &mut targets)?;
    targets.remove(bench, peers)?;
    Ok(report(plan, &targets.file, rows))
}

/// `WARM_UP` unmeasured updates per variant, the check that poc's update writes the file, then
/// `runs` rounds of one update per variant, interleaved (docker's spread over the rounds).
fn measure(
    bench: &mut Bench,
    peers: &mut Peers,
    plan: &Plan,
    targets: &mut Targets,
) -> Result<Vec<Row>> {
    let (runs, variants) = (plan.runs, &plan.variants);
    let mut rows: Vec<Row> = variants
        .iter()
        .map(|v| Row::new("update", v.name(), "wall time", "ms", false))
        .collect();
    let chunk = (runs / 10).max(1);
    let steps = runs.div_ceil(chunk) + 1;
    let per_round = 0.004 * variants.len() as f64 + if plan.docker { 0.04 / 3.0 } else { 0.0 };
    let mut progress = Progress::new("update", steps, per_round * (runs + WARM_UP) as f64);
    progress.step("warm-up", per_round * WARM_UP as f64);
    for _ in 0..WARM_UP {
        for &v in variants {
            measure::time(&mut targets.command(bench, peers, v)?)?;
        }
    }
    targets.check_poc_writes(bench, peers)?;
    for round in 0..runs {
        if round % chunk == 0 {
            let last = (round + chunk).min(runs);
            progress.step(
                &format!("updates {}-{last} of {runs}", round + 1),
                per_round * (last - round) as f64,
            );
        }
        for i in measure::turns(round, variants.len()) {
            let v = variants[i];
            if v == Variant::Docker && !docker_round(round, runs, plan.docker_runs) {
                continue;
            }
            let mut cmd = targets.command(bench, peers, v)?;
            if rows[i].command.is_empty() {
                rows[i].command = measure::command_line(&cmd);
            }
            let elapsed = measure::time(&mut cmd)?;
            rows[i].samples.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    Ok(rows)
}

/// The suite's report against the raw write (else poc), with the ratios the issue set targets
/// for.
fn report(plan: Plan, file: &Path, rows: Vec<Row>) -> SuiteReport {
    let (runs, docker_runs, docker) = (plan.runs, plan.docker_runs, plan.docker);
    let mut notes = plan.notes;
    notes.insert(
        0,
        format!(
            "{runs} updates per peer{}, interleaved, after {WARM_UP} unmeasured each: the memory limit of a running `sleep` container (created with 128M), 64M and 128M in turn; wall time from spawn to reaped exit of the whole process",
            if docker { format!(" ({docker_runs} for docker, spread over the same rounds)") } else { String::new() }
        ),
    );
    if plan.raw.is_some() {
        notes.push(format!(
            "raw write: a static C program (rawwrite.c) that opens, writes and closes poc's container's limit file, {}; poc update and it write the same file, each write changing the value",
            file.display()
        ));
    }
    if docker {
        notes.push("docker: `docker update --memory M --memory-swap -1` on a container of the bench's own dockerd (cgroupfs driver): client, daemon, containerd and runc update".into());
    }
    let baseline = if plan.raw.is_some() {
        "raw write"
    } else {
        "poc"
    };
    notes.push(format!(
        "ratio: the peer's median time over {baseline}'s (below 1 is faster)"
    ));
    let mut suite = SuiteReport {
        name: "update".into(),
        title: "update: the memory limit of a running container".into(),
        baseline: baseline.into(),
        notes,
        results: rows,
    };
    suite.finish(&Default::default());
    let median = |peer: &str| suite.median("update", peer);
    let (poc, raw, docker) = (median("poc"), median("raw write"), median("docker"));
    if let (Some(poc), Some(raw)) = (poc, raw) {
        suite.notes.push(format!(
            "poc update / raw write = {:.2} (the issue's target: at most 1.5)",
            poc / raw
        ));
    }
    if let (Some(poc), Some(docker)) = (poc, docker) {
        suite.notes.push(format!(
            "docker update / poc update = {:.1} (the issue's target: at least 25)",
            docker / poc
        ));
    }
    suite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rounds_are_spread() {
        let picked: Vec<usize> = (0..300).filter(|r| docker_round(*r, 300, 100)).collect();
        assert_eq!(picked.len(), 100);
        assert_eq!(&picked[..3], &[2, 5, 8]);
        assert_eq!((0..5).filter(|r| docker_round(*r, 5, 5)).count(), 5);
        assert_eq!((0..60).filter(|r| docker_round(*r, 60, 20)).count(), 20);
    }
}
