//! `--experiment`: alternating memory and CPU limit writes on the container, each measured in the
//! kernel and from user space, with what follows it (reclaim settling, the first throttle). The
//! container's limits are written back at the end, also when a signal stops it early.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use nix::sys::signal::Signal;

use super::signals::{stop_requested, StopOnSignals};
use super::{drain, LimitWrite, Record, PROGRAMS};
use crate::error::io;
use crate::trace::{Probe, Target, TraceError};

/// What `--experiment` writes.
pub struct Experiment {
    pub iterations: usize,
    pub mem_low: Option<u64>,
    pub cpu_low: Option<u64>,
}

/// How far the experiment is, for a progress display: reported once with `done` 0 before the
/// first write, then after every iteration.
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
}

/// One phase's samples.
pub struct Phase {
    pub step: Step,
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

impl Phase {
    fn new(step: Step, file: String, value: String) -> Self {
        Phase {
            step,
            file,
            value,
            kernel_us: Vec::new(),
            user_us: Vec::new(),
            reclaim_passes: Vec::new(),
            reclaim_ms: Vec::new(),
            settle_ms: Vec::new(),
            throttle_ms: Vec::new(),
            not_throttled_idle: 0,
            not_throttled_timeout: 0,
            failures: 0,
            errors: Vec::new(),
        }
    }

    /// The step's name, as reports show it ("cpu lower").
    pub fn name(&self) -> &'static str {
        self.step.name()
    }
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
pub const THROTTLE_WAIT: Duration = Duration::from_secs(1);
/// The longest wait for usage to come down to a lowered memory limit after the write returned.
const SETTLE_WAIT: Duration = Duration::from_secs(1);
/// After a limit is raised back, a container with a runnable task gets this long to refill what
/// the lowered limit took (page cache, CPU time) before the next write lowers one again. (A
/// lowered limit needs no pause: nothing refills under it, and its effect has been waited for.)
const REFILL_PAUSE: Duration = Duration::from_millis(5);

/// The four writes of an iteration, in order.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Step {
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

    pub fn name(self) -> &'static str {
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
                .map_err(io("read", p))
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

    /// Each step's phase, with the open file it writes and the value it writes there.
    fn phases<'f>(
        &self,
        mem_fd: &'f std::fs::File,
        cpu_fd: &'f std::fs::File,
    ) -> Vec<(&'f std::fs::File, Phase)> {
        Step::ALL
            .iter()
            .map(|&step| {
                let (fd, file, value) = match step {
                    Step::MemoryLower => (mem_fd, &self.mem_file, &self.mem_low),
                    Step::MemoryRaise => (mem_fd, &self.mem_file, &self.mem_original),
                    Step::CpuLower => (cpu_fd, &self.cpu_file, &self.cpu_low),
                    Step::CpuRaise => (cpu_fd, &self.cpu_file, &self.cpu_original),
                };
                let file = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (fd, Phase::new(step, file, value.clone()))
            })
            .collect()
    }

    /// Writes the values from before the experiment back. A container that is gone has no
    /// limits left to restore, so only a failure while it runs is an error.
    fn restore(&self, target: &Target) -> Result<(), TraceError> {
        let mem = std::fs::write(&self.mem_file, &self.mem_original)
            .map_err(io("restore", &self.mem_file));
        let cpu = std::fs::write(&self.cpu_file, &self.cpu_original)
            .map_err(io("restore", &self.cpu_file));
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
            .map_err(io("open", p))
    };
    let mem_fd = open(&limits.mem_file)?;
    let cpu_fd = open(&limits.cpu_file)?;
    let mut driver = Driver {
        target,
        ring: probe.ring()?,
        tid: nix::unistd::gettid().as_raw() as u32,
    };
    let mut phases = limits.phases(&mem_fd, &cpu_fd);
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
        phases: phases.into_iter().map(|(_, p)| p).collect(),
        iterations: x.iterations,
        done,
        seconds,
        stopped_by,
    })
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
        phases: &mut [(&std::fs::File, Phase)],
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
            for (fd, phase) in phases.iter_mut() {
                if stop_requested() {
                    return Ok(done);
                }
                self.measure(fd, phase);
            }
            on_progress(&progress(done + 1));
        }
        Ok(iterations)
    }

    /// One write of `phase`'s value, with what follows it: the kernel's view of the write, for a
    /// lowered memory limit the time until usage is under it, for a lowered CPU quota the time
    /// until the container is first throttled.
    fn measure(&mut self, fd: &std::fs::File, phase: &mut Phase) {
        let step = phase.step;
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
        std::fs::read(format!("/proc/{tid}/stat"))
            .ok()
            .and_then(|stat| thread_state(&stat))
            == Some('R')
    })
}

/// The state letter of a /proc/TID/stat line: after the command name, which the thread chooses
/// and may hold ") " and bytes that are not UTF-8.
fn thread_state(stat: &[u8]) -> Option<char> {
    let after_name = stat.iter().rposition(|&b| b == b')')? + 1;
    let state = stat[after_name..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())?;
    Some(char::from(*state))
}

#[cfg(test)]
mod tests {
    use super::thread_state;

    #[test]
    fn the_state_is_read_after_the_command_name_whatever_it_holds() {
        assert_eq!(thread_state(b"42 (sh) R 1 42 42 0 -1"), Some('R'));
        assert_eq!(thread_state(b"7 (a) b) S 1 7 7"), Some('S'));
        assert_eq!(thread_state(b"7 (\xff) R 1 7 7"), Some('R'));
        assert_eq!(thread_state(b"7 (sleep"), None);
    }
}
