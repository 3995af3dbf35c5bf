//! `poc trace C --limits`: every write(2) to the container's cgroup files, by any process, timed in
//! the kernel from the syscall's entry to its return, with the memcg reclaim it did on the way
//! (passes, time, pages) and, after a CPU quota write, the delay until a task of the container is
//! first switched out because its group ran out of quota. `--experiment` drives the changes itself,
//! waits only for what can still happen (no throttling is awaited when no task of the container is
//! runnable), and always writes the container's limits back, also when a signal stops it.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

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
    /// When the write returned (kernel monotonic ns): a quota write arms the throttle watch then.
    #[serde(skip)]
    pub ts_end: u64,
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
    /// The return of the quota write that armed it (kernel monotonic ns).
    #[serde(skip)]
    pub armed_ns: u64,
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
                ts_end: e.ts_end,
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
                armed_ns: e.armed_ts,
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

/// How far the experiment is, for a progress display: reported once with `done` 0 before the
/// first write, then after every iteration.
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
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
    /// CPU lower: writes after which no task of the container was runnable, so nothing could use
    /// up the quota and no throttling was waited for.
    pub not_throttled_idle: usize,
    /// CPU lower: writes after which a task was runnable but none was throttled within
    /// [`THROTTLE_WAIT`].
    pub not_throttled_timeout: usize,
    pub failures: usize,
    pub errors: Vec<String>,
}

/// What the experiment measured, and how it ended.
pub struct Report {
    pub phases: Vec<Phase>,
    /// Iterations asked for, and iterations completed (fewer when a signal stopped it).
    pub iterations: usize,
    pub done: usize,
    /// Wall time of the writes and waits (not the loading of the BPF programs).
    pub seconds: f64,
    /// The signal that stopped the experiment early, if one did.
    pub stopped_by: Option<Signal>,
}

/// The longest wait for a lowered CPU quota to throttle a container with a runnable task. The
/// quota bites when the group's runtime for the period is used up, so within a period (100 ms
/// by default) for a task that keeps running.
const THROTTLE_WAIT: Duration = Duration::from_secs(1);
/// The longest wait for usage to come down to a lowered memory limit after the write returned.
const SETTLE_WAIT: Duration = Duration::from_secs(1);
/// After a limit is raised back, a container with a runnable task gets this long to refill what
/// the lowered limit took (page cache, CPU time) before the next write lowers one again. (A
/// lowered limit needs no pause: nothing refills under it, and its effect has been waited for.)
const REFILL_PAUSE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, PartialEq)]
enum Step {
    MemoryLower,
    MemoryRaise,
    CpuLower,
    CpuRaise,
}

impl Step {
    const ALL: [Step; 4] = [
        Step::MemoryLower,
        Step::MemoryRaise,
        Step::CpuLower,
        Step::CpuRaise,
    ];

    fn raises(self) -> bool {
        matches!(self, Step::MemoryRaise | Step::CpuRaise)
    }

    fn name(self) -> &'static str {
        match self {
            Step::MemoryLower => "memory lower",
            Step::MemoryRaise => "memory raise",
            Step::CpuLower => "cpu lower",
            Step::CpuRaise => "cpu raise",
        }
    }
}

/// The two files the experiment writes, their values before it, and the lowered values.
struct Limits {
    mem_file: PathBuf,
    cpu_file: PathBuf,
    mem_original: String,
    cpu_original: String,
    mem_low: String,
    cpu_low: String,
}

impl Limits {
    fn of(target: &Target, x: &Experiment) -> Result<Self, TraceError> {
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
        let quota_low = x.cpu_low.unwrap_or(10_000);
        let cpu_low = if target.cgroup().is_v2() {
            let period = cpu_original.split_whitespace().nth(1).unwrap_or("100000");
            format!("{quota_low} {period}")
        } else {
            quota_low.to_string()
        };
        Ok(Limits {
            mem_file,
            cpu_file,
            mem_original,
            cpu_original,
            mem_low: mem_low.to_string(),
            cpu_low,
        })
    }

    /// Writes the values from before the experiment back. A container that is gone has no
    /// limits left to restore, so only a failure while it runs is an error.
    fn restore(&self, target: &Target) -> Result<(), TraceError> {
        let mem = std::fs::write(&self.mem_file, &self.mem_original)
            .map_err(super::io("restore", &self.mem_file));
        let cpu = std::fs::write(&self.cpu_file, &self.cpu_original)
            .map_err(super::io("restore", &self.cpu_file));
        match mem.and(cpu) {
            Err(e) if target.alive() => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Drives alternating memory and CPU limit changes on the container and measures, per phase, the
/// kernel's time and the user-space view of the same writes. The container's limits are
/// restored at the end, also when SIGINT, SIGTERM or SIGHUP stops it early (the report then
/// covers what was done).
pub fn experiment(
    target: &Target,
    x: &Experiment,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Report, TraceError> {
    let limits = Limits::of(target, x)?;
    let mut probe = Probe::attach(target, &PROGRAMS)?;
    let open = |p: &PathBuf| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(super::io("open", p))
    };
    let mem_fd = open(&limits.mem_file)?;
    let cpu_fd = open(&limits.cpu_file)?;
    let mut driver = Driver {
        target,
        ring: probe.ring()?,
        tid: nix::unistd::gettid().as_raw() as u32,
    };
    let mut phases: Vec<(Step, &std::fs::File, Phase)> = Step::ALL
        .iter()
        .map(|&step| {
            let (fd, file, value) = match step {
                Step::MemoryLower => (&mem_fd, &limits.mem_file, &limits.mem_low),
                Step::MemoryRaise => (&mem_fd, &limits.mem_file, &limits.mem_original),
                Step::CpuLower => (&cpu_fd, &limits.cpu_file, &limits.cpu_low),
                Step::CpuRaise => (&cpu_fd, &limits.cpu_file, &limits.cpu_original),
            };
            let phase = Phase {
                name: step.name(),
                file: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                value: value.clone(),
                ..Phase::default()
            };
            (step, fd, phase)
        })
        .collect();
    let started = Instant::now();
    let signals = StopOnSignals::install();
    let driven = driver.drive(&mut phases, x.iterations, started, on_progress);
    let seconds = started.elapsed().as_secs_f64();
    let restored = limits.restore(target);
    let stopped_by = signals.caught();
    drop(signals);
    let done = driven?;
    restored?;
    Ok(Report {
        phases: phases.into_iter().map(|(_, _, p)| p).collect(),
        iterations: x.iterations,
        done,
        seconds,
        stopped_by,
    })
}

/// The experiment's summary on stdout (text or JSON) and its histograms in the `--plot` file.
pub fn publish(target: &Target, x: &Experiment, report: &Report) -> Result<(), TraceError> {
    if x.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(target, report)).unwrap_or_default()
        );
    } else {
        print_summary(target, report);
    }
    match &x.plot {
        Some(path) => super::write_file(path, plot(target, &report.phases)),
        None => Ok(()),
    }
}

/// The writing side of the experiment: its own thread id (to pick its writes out of the ring).
struct Driver<'a> {
    target: &'a Target,
    ring: RingBuf<MapData>,
    tid: u32,
}

impl Driver<'_> {
    /// Runs the iterations until done or a stop signal; returns the iterations completed.
    fn drive(
        &mut self,
        phases: &mut [(Step, &std::fs::File, Phase)],
        iterations: usize,
        started: Instant,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<usize, TraceError> {
        let progress = |done| Progress {
            done,
            total: iterations,
            elapsed: started.elapsed(),
        };
        on_progress(&progress(0));
        for done in 0..iterations {
            if !self.target.alive() {
                return Err(TraceError::NotRunning(self.target.name.clone()));
            }
            for (step, fd, phase) in phases.iter_mut() {
                if stop_requested() {
                    return Ok(done);
                }
                self.measure(*step, fd, phase);
            }
            on_progress(&progress(done + 1));
        }
        Ok(iterations)
    }

    /// One write of `phase`'s value, with what follows it: the kernel's view of the write, for a
    /// lowered memory limit the time until usage is under it, for a lowered CPU quota the time
    /// until the container is first throttled.
    fn measure(&mut self, step: Step, fd: &std::fs::File, phase: &mut Phase) {
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
        let written = errno.is_none();
        if step == Step::MemoryLower && written {
            let limit: u64 = phase.value.parse().unwrap_or(u64::MAX);
            phase.settle_ms.push(self.settle_ms(limit, returned));
        }
        // A quota is used up only by running: with no task of the container runnable, no
        // throttling can follow the write, so none is waited for.
        let watch_throttle = step == Step::CpuLower && written;
        let idle = watch_throttle && !has_runnable_task(self.target);
        let (write, throttle_ms) = self.collect(watch_throttle && !idle);
        if let Some(w) = write {
            phase.kernel_us.push(w.kernel_us);
            phase.reclaim_passes.push(w.reclaim_passes);
            phase.reclaim_ms.push(w.reclaim_ms);
        }
        match throttle_ms {
            Some(ms) => phase.throttle_ms.push(ms),
            None if idle => phase.not_throttled_idle += 1,
            None if watch_throttle && !stop_requested() => phase.not_throttled_timeout += 1,
            None => {}
        }
        if step.raises() && has_runnable_task(self.target) {
            std::thread::sleep(REFILL_PAUSE);
        }
    }

    /// From the write's return until usage is at or under `limit`, ms. v1 and v2 both reclaim
    /// inside the write, so usage is normally under the limit when it returns (0 here); anything
    /// else is measured by polling.
    fn settle_ms(&self, limit: u64, returned: Instant) -> f64 {
        let above = || {
            self.target
                .cgroup()
                .memory_report()
                .is_some_and(|(u, _)| u > limit)
        };
        if !above() {
            return 0.0;
        }
        while above() && returned.elapsed() < SETTLE_WAIT && !stop_requested() {
            std::thread::sleep(Duration::from_micros(200));
        }
        returned.elapsed().as_secs_f64() * 1e3
    }

    /// This thread's write as the kernel reported it and, with `throttle`, the delay until the
    /// first throttled switch-out that this write armed (not an earlier one still in the ring).
    fn collect(&mut self, throttle: bool) -> (Option<LimitWrite>, Option<f64>) {
        let deadline = Instant::now() + THROTTLE_WAIT;
        let mut write: Option<LimitWrite> = None;
        let mut throttle_ms = None;
        loop {
            for record in drain(&mut self.ring) {
                match record {
                    Record::Write(w) if w.tid == self.tid => write = Some(w),
                    Record::Throttle(t)
                        if throttle && write.as_ref().is_some_and(|w| w.ts_end == t.armed_ns) =>
                    {
                        throttle_ms = Some(t.after_write_ms)
                    }
                    _ => {}
                }
            }
            let complete = write.is_some() && (!throttle || throttle_ms.is_some());
            if complete || Instant::now() >= deadline || stop_requested() {
                return (write, throttle_ms);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Whether any thread of the container is running or waiting for a CPU (state R): only such a
/// thread can use up a CPU quota or refill what a lowered limit took. A throttled thread stays R.
fn has_runnable_task(target: &Target) -> bool {
    target.cgroup().threads().iter().any(|tid| {
        std::fs::read_to_string(format!("/proc/{tid}/stat"))
            .ok()
            .and_then(|stat| thread_state(&stat))
            == Some('R')
    })
}

/// The state letter of a /proc/TID/stat line: after the command name, which may hold ") ".
fn thread_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The signal that asked the experiment to stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

fn stop_requested() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

/// While it lives, SIGINT, SIGTERM and SIGHUP ask the experiment to stop at its next step rather
/// than kill poc with the container's limits lowered. A signal that was ignored (a background
/// job's SIGINT, nohup's SIGHUP) stays ignored. The earlier dispositions come back on drop.
struct StopOnSignals {
    previous: Vec<(Signal, SigAction)>,
}

impl StopOnSignals {
    fn install() -> Self {
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut previous = Vec::new();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only stores an atomic.
            let Ok(old) = (unsafe { sigaction(signal, &action) }) else {
                continue;
            };
            if matches!(old.handler(), SigHandler::SigIgn) {
                // SAFETY: puts back the disposition the kernel just gave us.
                let _ = unsafe { sigaction(signal, &old) };
            }
            previous.push((signal, old));
        }
        StopOnSignals { previous }
    }

    fn caught(&self) -> Option<Signal> {
        Signal::try_from(STOP_SIGNAL.load(Ordering::SeqCst)).ok()
    }
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores a disposition sigaction returned.
            let _ = unsafe { sigaction(*signal, old) };
        }
    }
}

fn plot(target: &Target, phases: &[Phase]) -> String {
    crate::plot::histograms(
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
    )
}

fn stats(values: &[f64]) -> Option<(f64, f64, f64)> {
    percentiles(&mut values.to_vec())
}

fn seconds_per_iteration(report: &Report) -> Option<f64> {
    (report.done > 0).then(|| report.seconds / report.done as f64)
}

fn summary_json(target: &Target, report: &Report) -> serde_json::Value {
    let s = |v: &[f64]| {
        stats(v).map(|(min, med, p99)| serde_json::json!({"min": min, "median": med, "p99": p99, "n": v.len()}))
    };
    serde_json::json!({
        "container": target.name,
        "id": target.id,
        "iterations": report.iterations,
        "iterations_done": report.done,
        "seconds": report.seconds,
        "seconds_per_iteration": seconds_per_iteration(report),
        "interrupted_by": report.stopped_by.map(|s| s.as_str()),
        "phases": report.phases.iter().map(|p| serde_json::json!({
            "phase": p.name,
            "file": p.file,
            "value": p.value,
            "kernel_us": s(&p.kernel_us),
            "user_us": s(&p.user_us),
            "reclaim_passes": s(&p.reclaim_passes.iter().map(|v| *v as f64).collect::<Vec<_>>()),
            "reclaim_ms": s(&p.reclaim_ms),
            "settle_ms": s(&p.settle_ms),
            "throttle_ms": s(&p.throttle_ms),
            "not_throttled_idle": p.not_throttled_idle,
            "not_throttled_timeout": p.not_throttled_timeout,
            "failures": p.failures,
            "errors": p.errors,
            "samples": {"kernel_us": p.kernel_us, "user_us": p.user_us, "throttle_ms": p.throttle_ms},
        })).collect::<Vec<_>>(),
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
    let fmt = |v: &[f64], unit: &str| match stats(v) {
        Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1} {unit}"),
        None => "-".to_string(),
    };
    for p in &report.phases {
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
        if p.name == Step::CpuLower.name() {
            println!(
                "  first throttle after the write   {}",
                fmt(&p.throttle_ms, "ms")
            );
            let written = p.user_us.len() - p.failures;
            if p.not_throttled_idle > 0 {
                println!(
                    "  not throttled (idle)             {} of {written} writes: no task of the container was runnable",
                    p.not_throttled_idle
                );
            }
            if p.not_throttled_timeout > 0 {
                let label = format!("not throttled within {} s", THROTTLE_WAIT.as_secs());
                println!(
                    "  {label:<33}{} of {written} writes: a task was runnable but never ran out of quota",
                    p.not_throttled_timeout
                );
            }
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

#[cfg(test)]
mod tests {
    use super::thread_state;

    #[test]
    fn the_state_is_read_after_the_command_name_whatever_it_holds() {
        assert_eq!(thread_state("42 (sh) R 1 42 42 0 -1"), Some('R'));
        assert_eq!(thread_state("7 (a) b) S 1 7 7"), Some('S'));
        assert_eq!(thread_state("7 (sleep"), None);
    }
}
