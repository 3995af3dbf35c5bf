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

pub fn run(bench: &mut Bench, peers: &mut Peers, against: &[Peer]) -> Result<SuiteReport> {
    let runs = bench.opts.runs.max(1);
    bench.ensure_image("busybox", &["busybox"])?;
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
    let docker_runs = (runs / 3).max(10).min(runs);

    // poc's container, and the file its update writes (the raw write writes the same one).
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
    // docker's container, with the same limit.
    let docker_name = format!("pocbench-update-{}", std::process::id());
    if docker {
        let (mut cmd, image) = peers.docker_client(bench, "busybox")?;
        cmd.args(["run", "-d", "--name", &docker_name])
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

    // Whose turn it is to write which limit: poc and the raw write share the file, so each write
    // changes it; docker's container has its own.
    let next_file = std::cell::Cell::new(0usize);
    let mut next_docker = 0usize;
    let mut command = |bench: &mut Bench, peers: &mut Peers, v: Variant| -> Result<Command> {
        Ok(match v {
            Variant::Poc => {
                let (mem, _, _) = LIMITS[next_file.get() % 2];
                next_file.set(next_file.get() + 1);
                bench.poc(["update", &id, "--mem", mem])
            }
            Variant::Raw => {
                let (_, _, bytes) = LIMITS[next_file.get() % 2];
                next_file.set(next_file.get() + 1);
                let mut cmd = Command::new(raw.as_ref().expect("built"));
                cmd.arg(&file).arg(bytes.to_string());
                cmd
            }
            Variant::Docker => {
                let (_, mem, _) = LIMITS[next_docker % 2];
                next_docker += 1;
                let (mut cmd, _) = peers.docker_client(bench, "busybox")?;
                cmd.args([
                    "update",
                    "--memory",
                    mem,
                    "--memory-swap",
                    "-1",
                    &docker_name,
                ]);
                cmd
            }
        })
    };

    let mut rows: Vec<Row> = variants
        .iter()
        .map(|v| Row::new("update", v.name(), "wall time", "ms", false))
        .collect();
    let chunk = (runs / 10).max(1);
    let steps = runs.div_ceil(chunk) + 1;
    let per_round = 0.004 * variants.len() as f64 + if docker { 0.04 / 3.0 } else { 0.0 };
    let mut progress = Progress::new("update", steps, per_round * (runs + WARM_UP) as f64);
    progress.step("warm-up", per_round * WARM_UP as f64);
    for _ in 0..WARM_UP {
        for &v in &variants {
            measure::time(&mut command(bench, peers, v)?)?;
        }
    }
    // poc update really writes the file: one update, read back.
    let expected = LIMITS[next_file.get() % 2].2;
    measure::time(&mut command(bench, peers, Variant::Poc)?)?;
    if read_limit(&file) != Some(expected) {
        return Err(fail(format!(
            "after poc update, {} holds {:?}, not {expected}",
            file.display(),
            std::fs::read_to_string(&file).unwrap_or_default().trim()
        )));
    }
    for round in 0..runs {
        if round % chunk == 0 {
            let last = (round + chunk).min(runs);
            progress.step(
                &format!("updates {}-{last} of {runs}", round + 1),
                per_round * (last - round) as f64,
            );
        }
        let n = variants.len();
        for k in 0..n {
            let i = (k + round) % n;
            let v = variants[i];
            if v == Variant::Docker && !docker_round(round, runs, docker_runs) {
                continue;
            }
            let mut cmd = command(bench, peers, v)?;
            if rows[i].command.is_empty() {
                rows[i].command = measure::command_line(&cmd);
            }
            let elapsed = measure::time(&mut cmd)?;
            rows[i].samples.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    let _ = measure::output(&mut bench.poc(["rm", "-f", &id]));
    if docker {
        let (mut cmd, _) = peers.docker_client(bench, "busybox")?;
        let _ = measure::output(cmd.args(["rm", "-f", &docker_name]));
    }

    notes.insert(
        0,
        format!(
            "{runs} updates per peer{}, interleaved, after {WARM_UP} unmeasured each: the memory limit of a running `sleep` container (created with 128M), 64M and 128M in turn; wall time from spawn to reaped exit of the whole process",
            if docker { format!(" ({docker_runs} for docker, spread over the same rounds)") } else { String::new() }
        ),
    );
    if raw.is_some() {
        notes.push(format!(
            "raw write: a static C program (rawwrite.c) that opens, writes and closes poc's container's limit file, {}; poc update and it write the same file, each write changing the value",
            file.display()
        ));
    }
    if docker {
        notes.push("docker: `docker update --memory M --memory-swap -1` on a container of the bench's own dockerd (cgroupfs driver): client, daemon, containerd and runc update".into());
    }
    let baseline = if raw.is_some() { "raw write" } else { "poc" };
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
    let median = |name: &str| {
        suite
            .results
            .iter()
            .find(|r| r.peer == name)
            .map(|r| r.summary.median)
    };
    if let (Some(poc), Some(raw)) = (median("poc"), median("raw write")) {
        suite.notes.push(format!(
            "poc update / raw write = {:.2} (the issue's target: at most 1.5)",
            poc / raw
        ));
    }
    if let (Some(poc), Some(docker)) = (median("poc"), median("docker")) {
        suite.notes.push(format!(
            "docker update / poc update = {:.1} (the issue's target: at least 25)",
            docker / poc
        ));
    }
    Ok(suite)
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
