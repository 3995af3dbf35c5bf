//! `poc trace C --limits`: every write(2) to the container's cgroup files, by any process, timed in
//! the kernel from the syscall's entry to its return, with the memcg reclaim it did on the way
//! (passes, time, pages) and, after a CPU quota write, the delay until a task of the container is
//! first switched out because its group ran out of quota. `--experiment` drives the changes itself,
//! waits only for what can still happen (no throttling is awaited when no task of the container is
//! runnable), and always writes the container's limits back, also when a signal stops it.
//! Both hand records to the caller (the CLI prints them); nothing here writes to stdout.

mod experiment;
mod signals;

pub use experiment::{experiment, Experiment, Phase, Progress, Report, Step, THROTTLE_WAIT};

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};

use super::abi::{self, LimitEvent, ThrottleEvent, EVENT_LIMIT_WRITE, EVENT_THROTTLE};
use super::{wall_ns, Probe, Target, TraceError};
use crate::units::rfc3339;

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
    /// Stop after this many records.
    pub count: Option<usize>,
    pub duration: Option<Duration>,
}

/// Hands every limit write and throttle to `each` as it happens, until the count or duration is
/// reached or the container stops. A memory limit write comes with the container's usage after
/// it. Events are submitted without a wake-up (one costs microseconds inside the write being
/// measured) and collected every 20 ms.
pub fn watch(
    target: &Target,
    opts: &WatchOptions,
    each: &mut dyn FnMut(&Record),
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
        for mut record in drain(&mut ring) {
            if let Record::Write(w) = &mut record {
                if w.file.starts_with("memory.") {
                    w.usage_after = target.cgroup().memory_report().map(|(u, _)| u);
                }
            }
            each(&record);
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
