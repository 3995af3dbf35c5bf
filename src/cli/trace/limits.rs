//! `poc trace C --limits [--experiment]` on the terminal: each limit write as a line (or JSON), the
//! experiment's progress on stderr and its summary per phase, and their histograms with --plot.
//! The measuring is src/trace/limits; this file only presents what it hands back.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::trace::limits::{self, Experiment, LimitWrite, Phase, Record, Report, Step, Throttle};
use crate::trace::{self, percentiles, Target, TraceError};
use crate::units::human_size;

/// Prints limit writes as they happen (`json`: one object each); with `plot`, the histograms of
/// the kernel time per file written at the end.
pub fn watch(
    target: &Target,
    opts: &limits::WatchOptions,
    json: bool,
    plot: Option<&PathBuf>,
) -> Result<(), TraceError> {
    let mut seen: Vec<(String, Vec<f64>)> = Vec::new();
    limits::watch(target, opts, &mut |record| {
        let line = match record {
            Record::Write(w) => {
                match seen.iter_mut().find(|(file, _)| *file == w.file) {
                    Some((_, times)) => times.push(w.kernel_us),
                    None => seen.push((w.file.clone(), vec![w.kernel_us])),
                }
                if json {
                    serde_json::to_string(w).unwrap_or_default()
                } else {
                    write_line(w)
                }
            }
            Record::Throttle(t) if json => serde_json::to_string(t).unwrap_or_default(),
            Record::Throttle(t) => throttle_line(t),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })?;
    match plot {
        Some(path) => {
            let svg = crate::plot::histograms(
                &format!("poc trace {} --limits: kernel time per write", target.name),
                &seen,
                "microseconds in the kernel",
            );
            trace::write_file(path, svg)
        }
        None => Ok(()),
    }
}

fn write_line(w: &LimitWrite) -> String {
    let outcome = match &w.error {
        Some(e) => format!("failed: {e}"),
        None => "ok".to_string(),
    };
    let mut line = format!(
        "{}  {}[{}] {}={}  {}  kernel {:.1} us",
        w.time, w.comm, w.pid, w.file, w.value, outcome, w.kernel_us
    );
    if w.reclaim_passes > 0 {
        line.push_str(&format!(
            "  reclaim: {} passes, {:.3} ms, {} pages",
            w.reclaim_passes, w.reclaim_ms, w.reclaimed_pages
        ));
    }
    if let Some(u) = w.usage_after {
        line.push_str(&format!("  usage after {}", human_size(u)));
    }
    line
}

fn throttle_line(t: &Throttle) -> String {
    format!(
        "{}  first throttled switch-out {:.3} ms after the quota write (pid {}, cpu {})",
        t.time, t.after_write_ms, t.pid, t.cpu
    )
}

/// Runs the experiment with its progress on stderr, then prints its summary (`json`: one
/// document) and writes its histograms to `plot`. The exit code: 0, or 128 + the signal that
/// stopped it early (the shell's convention).
pub fn experiment(
    target: &Target,
    x: &Experiment,
    json: bool,
    plot: Option<&PathBuf>,
) -> Result<i32, TraceError> {
    let mut progress = ProgressLine::new(&target.name);
    let report = limits::experiment(target, x, &mut |p| progress.show(p));
    // The summary starts on a clean line.
    drop(progress);
    let report = report?;
    if json {
        let summary = summary_json(target, &report);
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print_summary(target, &report);
    }
    if let Some(path) = plot {
        trace::write_file(path, histograms(target, &report.phases))?;
    }
    Ok(report.stopped_by.map_or(0, |s| 128 + s as i32))
}

fn histograms(target: &Target, phases: &[Phase]) -> String {
    crate::plot::histograms(
        &format!(
            "poc trace {} --limits --experiment: kernel time per write",
            target.name
        ),
        &phases
            .iter()
            .map(|p| (phase_title(p), p.kernel_us.clone()))
            .collect::<Vec<_>>(),
        "microseconds in the kernel",
    )
}

/// "cpu lower (cpu.cfs_quota_us=10000)".
fn phase_title(p: &Phase) -> String {
    format!("{} ({}={})", p.name(), p.file, p.value)
}

fn stats(values: &[f64]) -> Option<(f64, f64, f64)> {
    percentiles(&mut values.to_vec())
}

fn seconds_per_iteration(report: &Report) -> Option<f64> {
    (report.done > 0).then(|| report.seconds / report.done as f64)
}

fn passes(p: &Phase) -> Vec<f64> {
    p.reclaim_passes.iter().map(|v| *v as f64).collect()
}

fn summary_json(target: &Target, report: &Report) -> serde_json::Value {
    serde_json::json!({
        "container": target.name,
        "id": target.id,
        "iterations": report.iterations,
        "iterations_done": report.done,
        "seconds": report.seconds,
        "seconds_per_iteration": seconds_per_iteration(report),
        "interrupted_by": report.stopped_by.map(|s| s.as_str()),
        "phases": report.phases.iter().map(phase_json).collect::<Vec<_>>(),
    })
}

fn phase_json(p: &Phase) -> serde_json::Value {
    let s = |v: &[f64]| {
        stats(v).map(|(min, med, p99)| serde_json::json!({"min": min, "median": med, "p99": p99, "n": v.len()}))
    };
    serde_json::json!({
        "phase": p.name(),
        "file": p.file,
        "value": p.value,
        "kernel_us": s(&p.kernel_us),
        "user_us": s(&p.user_us),
        "reclaim_passes": s(&passes(p)),
        "reclaim_ms": s(&p.reclaim_ms),
        "settle_ms": s(&p.settle_ms),
        "throttle_ms": s(&p.throttle_ms),
        "not_throttled_idle": p.not_throttled_idle,
        "not_throttled_timeout": p.not_throttled_timeout,
        "failures": p.failures,
        "errors": p.errors,
        "samples": {"kernel_us": p.kernel_us, "user_us": p.user_us, "throttle_ms": p.throttle_ms},
    })
}

fn print_summary(target: &Target, report: &Report) {
    let pace = seconds_per_iteration(report)
        .map(|s| format!(" ({:.1} ms each)", s * 1e3))
        .unwrap_or_default();
    let ran = match report.stopped_by {
        Some(signal) => format!(
            "stopped by {} after {} of {} iterations",
            signal.as_str(),
            report.done,
            report.iterations
        ),
        None => format!("{} iterations", report.iterations),
    };
    println!(
        "poc trace {} --limits --experiment: {ran} in {:.1} s{pace}; limits restored; times min / median / p99",
        target.name, report.seconds
    );
    for p in &report.phases {
        print_phase(p);
    }
}

/// min / median / p99 of `v` with its unit, or "-" without samples.
fn spread(v: &[f64], unit: &str) -> String {
    match stats(v) {
        Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1} {unit}"),
        None => "-".to_string(),
    }
}

fn print_phase(p: &Phase) {
    println!("\n{}", phase_title(p));
    println!(
        "  kernel (write entry to return)   {}",
        spread(&p.kernel_us, "us")
    );
    println!(
        "  write() seen from user space     {}",
        spread(&p.user_us, "us")
    );
    if p.reclaim_passes.iter().any(|v| *v > 0) {
        println!(
            "  reclaim passes                   {}",
            spread(&passes(p), "")
        );
        println!(
            "  reclaim time                     {}",
            spread(&p.reclaim_ms, "ms")
        );
    }
    if !p.settle_ms.is_empty() {
        println!(
            "  until usage <= limit             {}",
            spread(&p.settle_ms, "ms")
        );
    }
    if p.step == Step::CpuLower {
        print_throttling(p);
    }
    if p.failures > 0 {
        println!(
            "  failed writes                    {} ({})",
            p.failures,
            p.errors.join(", ")
        );
    }
}

/// The lowered quota's effect: the delay to the first throttle, and the writes none followed.
fn print_throttling(p: &Phase) {
    println!(
        "  first throttle after the write   {}",
        spread(&p.throttle_ms, "ms")
    );
    let written = p.user_us.len() - p.failures;
    if p.not_throttled_idle > 0 {
        println!(
            "  not throttled (idle)             {} of {written} writes: no task of the container was runnable",
            p.not_throttled_idle
        );
    }
    if p.not_throttled_timeout > 0 {
        let label = format!("not throttled within {} s", limits::THROTTLE_WAIT.as_secs());
        println!(
            "  {label:<33}{} of {written} writes: a task was runnable but never ran out of quota",
            p.not_throttled_timeout
        );
    }
}

/// The experiment's progress on stderr: one line at the start, then, on a terminal only, a line
/// rewritten in place ("iteration 37/1000, ~12 s left"), at most ten times a second and erased
/// when dropped.
struct ProgressLine {
    name: String,
    terminal: bool,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new(name: &str) -> Self {
        ProgressLine {
            name: name.to_string(),
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, p: &limits::Progress) {
        let mut err = std::io::stderr().lock();
        if p.done == 0 {
            let _ = writeln!(
                err,
                "experiment on {}: {} iteration{} of 4 limit writes; Ctrl-C stops it early, and the limits are restored either way",
                self.name,
                p.total,
                if p.total == 1 { "" } else { "s" }
            );
            return;
        }
        if !self.terminal {
            return;
        }
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let left = p.elapsed.as_secs_f64() / p.done as f64 * (p.total - p.done) as f64;
        let _ = write!(
            err,
            "\r\x1b[Kiteration {}/{}, ~{} left",
            p.done,
            p.total,
            time_left(left)
        );
        let _ = err.flush();
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        if self.terminal && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// "12 s" under two minutes, then "3 min".
fn time_left(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{:.0} s", seconds.ceil())
    } else {
        format!("{:.0} min", (seconds / 60.0).ceil())
    }
}
