//! Running the processes a suite measures (each one waited for, and stopped when the bench is
//! interrupted), timing them, and summarising samples: median and spread.

use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{check_interrupted, fail, Result, CHILD};

/// Median and spread of one figure's samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// The 10th and 90th percentiles (the spread the charts draw).
    pub p10: f64,
    pub p90: f64,
    /// Relative standard deviation, in percent of the mean.
    pub rsd_percent: f64,
    pub n: usize,
}

impl Summary {
    /// None for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let rsd_percent = if mean == 0.0 {
            0.0
        } else {
            var.sqrt() / mean.abs() * 100.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            p10: percentile(&sorted, 0.10),
            p90: percentile(&sorted, 0.90),
            rsd_percent,
            n,
        })
    }
}

/// The `q` quantile of sorted samples, by linear interpolation.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.len() == 1 {
        return sorted[0];
    }
    let pos = q * (sorted.len() - 1) as f64;
    let low = pos.floor() as usize;
    let high = pos.ceil() as usize;
    sorted[low] + (sorted[high] - sorted[low]) * (pos - low as f64)
}

/// Reads a pipe to its end on a thread of its own.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child`, known to the signal handler meanwhile (it is sent SIGTERM on Ctrl-C).
fn wait_registered(mut child: std::process::Child) -> std::io::Result<Output> {
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    // A signal that arrived between spawn and store: the child must not run on.
    if super::interrupted() {
        let _ = child.kill();
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    Ok(Output {
        status: status?,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn describe(cmd: &Command) -> String {
    let mut words = vec![quote(&cmd.get_program().to_string_lossy())];
    words.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    words.join(" ")
}

/// A word as a shell reads it back.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd`, its output captured; an error (with the command's stderr) unless it succeeds.
pub fn output(cmd: &mut Command) -> Result<Output> {
    check_interrupted()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", describe(cmd))))?;
    let out = wait_registered(child).map_err(|e| fail(format!("{}: {e}", describe(cmd))))?;
    check_interrupted()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(fail(format!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            last.unwrap_or("no error output")
        )));
    }
    Ok(out)
}

/// Runs `cmd` with the bench's stdio (for `poc init`'s progress).
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    check_interrupted()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", describe(cmd))))?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    check_interrupted()?;
    status.map_err(|e| fail(format!("{}: {e}", describe(cmd))))
}

/// Runs `cmd` with no output, ignoring how it ends (cleanup).
pub fn quiet(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// The wall time of one run of `cmd` (spawn to reaped exit), output discarded; an error unless it
/// succeeds.
pub fn time(cmd: &mut Command) -> Result<Duration> {
    check_interrupted()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", describe(cmd))))?;
    let out = wait_registered(child).map_err(|e| fail(format!("{}: {e}", describe(cmd))))?;
    let elapsed = started.elapsed();
    check_interrupted()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            stderr.lines().last().unwrap_or("no error output")
        )));
    }
    Ok(elapsed)
}

/// The order in which `n` peers take their turns in round `round`: each round starts one further
/// along, so that none always runs on a machine just warmed up (or just heated) by the same
/// neighbour.
pub fn turns(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n)
}

/// A command line without quoting, split into its words.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// The command line as a reader would type it (for the report).
pub fn command_line(cmd: &Command) -> String {
    describe(cmd)
}

/// The first line of `PROGRAM ARGS` output (a version), or None when it does not run.
pub fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Progress on stderr: which step, and about how long is left.
pub struct Progress {
    pub suite: &'static str,
    total: usize,
    done: usize,
    /// Expected seconds of the steps still to run (updated as steps finish).
    expected_left: f64,
}

impl Progress {
    pub fn new(suite: &'static str, total: usize, expected_secs: f64) -> Self {
        Progress {
            suite,
            total,
            done: 0,
            expected_left: expected_secs,
        }
    }

    /// Announces the next step (expected to take `secs`).
    pub fn step(&mut self, what: &str, secs: f64) {
        self.done += 1;
        eprintln!(
            "bench {}: [{}/{}] {what} (about {} left)",
            self.suite,
            self.done,
            self.total,
            human_secs(self.expected_left.max(0.0))
        );
        self.expected_left -= secs;
    }
}

pub fn human_secs(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert_eq!(s.n, 4);
        assert!((s.p90 - 7.9).abs() < 1e-9, "{}", s.p90);
        assert!(Summary::of(&[]).is_none());
        assert_eq!(Summary::of(&[5.0]).unwrap().p10, 5.0);
    }

    #[test]
    fn seconds_for_people() {
        assert_eq!(human_secs(59.4), "59s");
        assert_eq!(human_secs(61.0), "1m01s");
        assert_eq!(human_secs(3700.0), "1h01m");
        assert_eq!(quote("a b'c"), r"'a b'\''c'");
        assert_eq!(quote("--time=1"), "--time=1");
    }

    #[test]
    fn each_round_starts_one_peer_further() {
        assert_eq!(turns(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(turns(4, 3).collect::<Vec<_>>(), [1, 2, 0]);
    }
}
