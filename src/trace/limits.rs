//! `poc trace C --limits`: every write(2) to the container's cgroup files, by any process, timed in
//! the kernel from the syscall's entry to its return, with the memcg reclaim it did on the way
//! (passes, time, pages) and, after a CPU quota write, the delay until a task of the container is
//! first switched out because its group ran out of quota. `--experiment` drives the changes itself.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};

use super::abi::{self, LimitEvent, ThrottleEvent, EVENT_LIMIT_WRITE, EVENT_THROTTLE};
use super::{percentiles, wall_ns, Probe, Target, TraceError};
use crate::container::logs::rfc3339;

pub const PROGRAMS: [(&str, &str); 5] = [
    ("limits_enter", "sys_enter"),
    ("limits_exit", "sys_exit"),
    ("limits_reclaim_begin", "mm_vmscan_memcg_reclaim_begin"),
    ("limits_reclaim_end", "mm_vmscan_memcg_reclaim_end"),
    ("limits_switch", "sched_switch"),
];

/// One write to a limit file, as the kernel saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitWrite {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub pid: u32,
    pub comm: String,
    pub file: String,
    pub value: String,
    /// Bytes written, or the error the kernel returned.
    pub result: i64,
    pub error: Option<String>,
    /// From the entry of write(2) to its return, in the kernel.
    pub kernel_us: f64,
    pub reclaim_passes: u32,
    pub reclaim_ms: f64,
    pub reclaimed_pages: u64,
    /// The container's memory use when the report was made (after a memory limit write).
    pub usage_after: Option<u64>,
    #[serde(skip)]
    pub tid: u32,
}

/// After a CPU quota write: the first switch-out of a container task with its group throttled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throttle {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub after_write_ms: f64,
    pub pid: u32,
    pub cpu: u32,
}

pub enum Record {
    Write(LimitWrite),
    Throttle(Throttle),
}

fn decode(bytes: &[u8]) -> Option<Record> {
    let kind: u32 = abi::read(bytes)?;
    match kind {
        EVENT_LIMIT_WRITE => {
            let e: LimitEvent = abi::read(bytes)?;
            Some(Record::Write(LimitWrite {
                kind: "limit-write",
                time: rfc3339(wall_ns(e.ts_start)),
                pid: e.pid,
                comm: abi::text(&e.comm),
                file: abi::text(&e.file),
                value: abi::text(&e.value),
                result: e.ret,
                error: (e.ret < 0).then(|| {
                    nix::errno::Errno::from_raw(-e.ret as i32)
                        .desc()
                        .to_string()
                }),
                kernel_us: e.ts_end.saturating_sub(e.ts_start) as f64 / 1e3,
                reclaim_passes: e.reclaim_passes,
                reclaim_ms: e.reclaim_ns as f64 / 1e6,
                reclaimed_pages: e.reclaimed_pages,
                usage_after: None,
                tid: e.tid,
            }))
        }
        EVENT_THROTTLE => {
            let e: ThrottleEvent = abi::read(bytes)?;
            Some(Record::Throttle(Throttle {
                kind: "throttle",
                time: rfc3339(wall_ns(e.ts)),
                after_write_ms: e.ts.saturating_sub(e.armed_ts) as f64 / 1e6,
                pid: e.pid,
                cpu: e.cpu,
            }))
        }
        _ => None,
    }
}

fn drain(ring: &mut RingBuf<MapData>) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(r) = decode(&item) {
            out.push(r);
        }
    }
    out
}

pub struct WatchOptions {
    pub json: bool,
    pub count: Option<usize>,
    pub duration: Option<Duration>,
    /// At the end, histograms of the kernel time per file written.
    pub plot: Option<PathBuf>,
}

/// Reports limit changes as they happen, until the count or duration is reached or the container
/// stops. Events are submitted without a wake-up (one costs microseconds inside the write being
/// measured) and collected every 20 ms.
pub fn watch(target: &Target, opts: &WatchOptions) -> Result<(), TraceError> {
    let mut seen: Vec<(String, Vec<f64>)> = Vec::new();
    watch_until_done(target, opts, &mut seen)?;
    if let Some(path) = &opts.plot {
        let svg = crate::plot::histograms(
            &format!("poc trace {} --limits: kernel time per write", target.name),
            &seen,
            "microseconds in the kernel",
        );
        super::write_file(path, svg)?;
    }
    Ok(())
}

fn watch_until_done(
    target: &Target,
    opts: &WatchOptions,
    seen: &mut Vec<(String, Vec<f64>)>,
) -> Result<(), TraceError> {
    let mut probe = Probe::attach(target, &PROGRAMS)?;
    let mut ring = probe.ring()?;
    eprintln!(
        "watching the cgroup files of {} (cgroup id {}); Ctrl-C to stop",
        target.name, target.cgroup_id
    );
    let started = Instant::now();
    let mut reported = 0usize;
    let mut last_alive_check = Instant::now();
    loop {
        for record in drain(&mut ring) {
            let line = match record {
                Record::Write(mut w) => {
                    match seen.iter_mut().find(|(file, _)| *file == w.file) {
                        Some((_, times)) => times.push(w.kernel_us),
                        None => seen.push((w.file.clone(), vec![w.kernel_us])),
                    }
                    if w.file.starts_with("memory.") {
                        w.usage_after = target.cgroup().memory_report().map(|(u, _)| u);
                    }
                    if opts.json {
                        serde_json::to_string(&w).unwrap_or_default()
                    } else {
                        write_line(&w)
                    }
                }
                Record::Throttle(t) => {
                    if opts.json {
                        serde_json::to_string(&t).unwrap_or_default()
                    } else {
                        format!(
                            "{}  first throttled switch-out {:.3} ms after the quota write (pid {}, cpu {})",
                            t.time, t.after_write_ms, t.pid, t.cpu
                        )
                    }
                }
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            reported += 1;
            if opts.count.is_some_and(|c| reported >= c) {
                return Ok(());
            }
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(());
        }
        if last_alive_check.elapsed() > Duration::from_millis(500) {
            if !target.alive() {
                return Ok(());
            }
            last_alive_check = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
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
        line.push_str(&format!(
            "  usage after {}",
            crate::cli::format::human_size(u)
        ));
    }
    line
}

/// What `--experiment` writes.
pub struct Experiment {
    pub iterations: usize,
    pub mem_low: Option<u64>,
    pub cpu_low: Option<u64>,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

/// One phase's samples.
#[derive(Default, serde::Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub file: String,
    pub value: String,
    /// Kernel time of each write (entry to return), microseconds.
    pub kernel_us: Vec<f64>,
    /// The whole write() call as this process saw it, microseconds.
    pub user_us: Vec<f64>,
    pub reclaim_passes: Vec<u32>,
    pub reclaim_ms: Vec<f64>,
    /// Memory phases: from the write's return until usage was at or under the limit, ms.
    pub settle_ms: Vec<f64>,
    /// CPU phases: from the write's return to the first throttled switch-out, ms.
    pub throttle_ms: Vec<f64>,
    pub failures: usize,
    pub errors: Vec<String>,
}

/// Drives alternating memory and CPU limit changes on the container (restoring its limits at the
/// end) and reports, per phase, the kernel's time and the user-space view of the same writes.
pub fn experiment(target: &Target, x: &Experiment) -> Result<Vec<Phase>, TraceError> {
    let (mem_file, cpu_file) = target.cgroup().limit_files();
    let need = |f: Option<PathBuf>, what: &str| {
        f.filter(|p| p.exists()).ok_or_else(|| {
            TraceError::Refused(format!("container {} has no {what} file", target.name))
        })
    };
    let mem_file = need(mem_file, "memory limit")?;
    let cpu_file = need(cpu_file, "CPU quota")?;
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .map_err(super::io("read", p))
    };
    let mem_original = read(&mem_file)?;
    let cpu_original = read(&cpu_file)?;
    let usage = target.cgroup().memory_report().map_or(0, |(u, _)| u);
    let mem_low = x
        .mem_low
        .unwrap_or_else(|| (usage / 4 * 3 / 4096 * 4096).max(4 << 20));
    let v2 = target.cgroup().is_v2();
    let period = cpu_original
        .split_whitespace()
        .nth(1)
        .unwrap_or("100000")
        .to_string();
    let quota_low = x.cpu_low.unwrap_or(10_000);
    let cpu_low = if v2 {
        format!("{quota_low} {period}")
    } else {
        quota_low.to_string()
    };
    let mut probe = Probe::attach(target, &PROGRAMS)?;
    let mut ring = probe.ring()?;
    let open = |p: &PathBuf| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(super::io("open", p))
    };
    let mem_fd = open(&mem_file)?;
    let cpu_fd = open(&cpu_file)?;
    let file_name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let phase = |name, file: &PathBuf, value| Phase {
        name,
        file: file_name(file),
        value,
        ..Phase::default()
    };
    let mut phases = vec![
        (
            &mem_fd,
            phase("memory lower", &mem_file, mem_low.to_string()),
        ),
        (
            &mem_fd,
            phase("memory raise", &mem_file, mem_original.clone()),
        ),
        (&cpu_fd, phase("cpu lower", &cpu_file, cpu_low)),
        (&cpu_fd, phase("cpu raise", &cpu_file, cpu_original.clone())),
    ];
    let tid = nix::unistd::gettid().as_raw() as u32;
    let result = (|| -> Result<(), TraceError> {
        for _ in 0..x.iterations {
            if !target.alive() {
                return Err(TraceError::NotRunning(target.name.clone()));
            }
            for (fd, phase) in phases.iter_mut() {
                let bytes = phase.value.as_bytes();
                let started = Instant::now();
                // SAFETY: a plain write of our buffer to an fd we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
                let user = started.elapsed();
                let errno = (n < 0).then(std::io::Error::last_os_error);
                let returned = Instant::now();
                phase.user_us.push(user.as_secs_f64() * 1e6);
                if let Some(e) = &errno {
                    phase.failures += 1;
                    if !phase.errors.contains(&e.to_string()) {
                        phase.errors.push(e.to_string());
                    }
                }
                if phase.name == "memory lower" && errno.is_none() {
                    // v1 and v2 both reclaim inside the write, so usage is normally under the
                    // limit when it returns (0 here); anything else is measured by polling.
                    let limit: u64 = phase.value.parse().unwrap_or(u64::MAX);
                    let above = || {
                        target
                            .cgroup()
                            .memory_report()
                            .is_some_and(|(u, _)| u > limit)
                    };
                    let mut settled = 0.0;
                    if above() {
                        while above() && returned.elapsed() < Duration::from_secs(1) {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        settled = returned.elapsed().as_secs_f64() * 1e3;
                    }
                    phase.settle_ms.push(settled);
                }
                let wants_throttle = phase.name == "cpu lower" && errno.is_none();
                let deadline = Instant::now() + Duration::from_secs(1);
                let mut got_write = false;
                let mut got_throttle = !wants_throttle;
                while !(got_write && got_throttle) && Instant::now() < deadline {
                    for r in drain(&mut ring) {
                        match r {
                            Record::Write(w) if w.tid == tid => {
                                phase.kernel_us.push(w.kernel_us);
                                phase.reclaim_passes.push(w.reclaim_passes);
                                phase.reclaim_ms.push(w.reclaim_ms);
                                got_write = true;
                            }
                            Record::Throttle(t) if wants_throttle => {
                                phase.throttle_ms.push(t.after_write_ms);
                                got_throttle = true;
                            }
                            _ => {}
                        }
                    }
                    if !(got_write && got_throttle) {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                // Let the workload refill what the lowered limit took (page cache, CPU time).
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    })();
    // Whatever happened, the container gets its limits back.
    let _ = std::fs::write(&mem_file, &mem_original);
    let _ = std::fs::write(&cpu_file, &cpu_original);
    result?;
    let phases: Vec<Phase> = phases.into_iter().map(|(_, p)| p).collect();
    if x.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(target, &phases)).unwrap_or_default()
        );
    } else {
        print_summary(target, &phases, x.iterations);
    }
    if let Some(path) = &x.plot {
        let svg = crate::plot::histograms(
            &format!(
                "poc trace {} --limits --experiment: kernel time per write",
                target.name
            ),
            &phases
                .iter()
                .map(|p| {
                    (
                        format!("{} ({}={})", p.name, p.file, p.value),
                        p.kernel_us.clone(),
                    )
                })
                .collect::<Vec<_>>(),
            "microseconds in the kernel",
        );
        super::write_file(path, svg)?;
    }
    Ok(phases)
}

fn stats(values: &[f64]) -> Option<(f64, f64, f64)> {
    percentiles(&mut values.to_vec())
}

fn summary_json(target: &Target, phases: &[Phase]) -> serde_json::Value {
    let s = |v: &[f64]| {
        stats(v).map(|(min, med, p99)| serde_json::json!({"min": min, "median": med, "p99": p99, "n": v.len()}))
    };
    serde_json::json!({
        "container": target.name,
        "id": target.id,
        "phases": phases.iter().map(|p| serde_json::json!({
            "phase": p.name,
            "file": p.file,
            "value": p.value,
            "kernel_us": s(&p.kernel_us),
            "user_us": s(&p.user_us),
            "reclaim_passes": s(&p.reclaim_passes.iter().map(|v| *v as f64).collect::<Vec<_>>()),
            "reclaim_ms": s(&p.reclaim_ms),
            "settle_ms": s(&p.settle_ms),
            "throttle_ms": s(&p.throttle_ms),
            "failures": p.failures,
            "errors": p.errors,
            "samples": {"kernel_us": p.kernel_us, "user_us": p.user_us, "throttle_ms": p.throttle_ms},
        })).collect::<Vec<_>>(),
    })
}

fn print_summary(target: &Target, phases: &[Phase], iterations: usize) {
    println!(
        "poc trace {} --limits --experiment: {iterations} iterations; times min / median / p99",
        target.name
    );
    let fmt = |v: &[f64], unit: &str| match stats(v) {
        Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1} {unit}"),
        None => "-".to_string(),
    };
    for p in phases {
        println!("\n{} ({}={})", p.name, p.file, p.value);
        println!(
            "  kernel (write entry to return)   {}",
            fmt(&p.kernel_us, "us")
        );
        println!(
            "  write() seen from user space     {}",
            fmt(&p.user_us, "us")
        );
        if p.reclaim_passes.iter().any(|v| *v > 0) {
            let passes: Vec<f64> = p.reclaim_passes.iter().map(|v| *v as f64).collect();
            println!("  reclaim passes                   {}", fmt(&passes, ""));
            println!(
                "  reclaim time                     {}",
                fmt(&p.reclaim_ms, "ms")
            );
        }
        if !p.settle_ms.is_empty() {
            println!(
                "  until usage <= limit             {}",
                fmt(&p.settle_ms, "ms")
            );
        }
        if p.name == "cpu lower" {
            println!(
                "  first throttle after the write   {}{}",
                fmt(&p.throttle_ms, "ms"),
                if p.throttle_ms.len() < p.user_us.len() - p.failures {
                    format!(
                        " ({} of {} writes saw no throttling within 1 s: is the container busy?)",
                        p.user_us.len() - p.failures - p.throttle_ms.len(),
                        p.user_us.len() - p.failures
                    )
                } else {
                    String::new()
                }
            );
        }
        if p.failures > 0 {
            println!(
                "  failed writes                    {} ({})",
                p.failures,
                p.errors.join(", ")
            );
        }
    }
}
