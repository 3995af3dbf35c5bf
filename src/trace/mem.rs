//! `poc trace C --mem`: per interval, the container's memory as the kernel handles it: usage and
//! RSS (its cgroup files), page faults (user and kernel mode, on its behalf), LRU pages isolated
//! for reclaim, memcg reclaim passes and their time and yield (BPF, by its tasks), swap, OOM kills.

use std::time::Duration;

use super::abi::MemCounters;
use super::{Probe, Target, TraceError};
use crate::cgroups::Manager;

pub const PROGRAMS: [(&str, &str); 5] = [
    ("mem_fault_user", "page_fault_user"),
    ("mem_fault_kernel", "page_fault_kernel"),
    ("mem_lru_isolate", "mm_vmscan_lru_isolate"),
    ("mem_reclaim_begin", "mm_vmscan_memcg_reclaim_begin"),
    ("mem_reclaim_end", "mm_vmscan_memcg_reclaim_end"),
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct MemSample {
    pub seconds: f64,
    pub usage_bytes: u64,
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    pub page_faults: u64,
    pub page_faults_per_second: f64,
    pub lru_isolated_per_second: f64,
    pub reclaim_passes_per_second: f64,
    pub reclaim_ms_per_second: f64,
    pub reclaimed_pages_per_second: f64,
    pub oom_kills: u64,
}

/// Anonymous memory and swap from memory.stat / memory.swap.current.
fn rss_and_swap(m: &Manager) -> (u64, u64) {
    let (mem, _) = m.limit_files();
    let Some(dir) = mem.as_ref().and_then(|f| f.parent()) else {
        return (0, 0);
    };
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let key = |k: &str| {
        stat.lines().find_map(|l| {
            l.strip_prefix(k)?
                .strip_prefix(' ')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    if m.is_v2() {
        let swap = std::fs::read_to_string(dir.join("memory.swap.current"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        (key("anon").unwrap_or(0), swap)
    } else {
        (key("rss").unwrap_or(0), key("swap").unwrap_or(0))
    }
}

/// Samples every `interval` and hands each sample to `each`, until `duration` or the container stops.
pub fn run(
    target: &Target,
    interval: Duration,
    duration: Option<Duration>,
    each: &mut dyn FnMut(&MemSample),
) -> Result<Vec<MemSample>, TraceError> {
    let probe = Probe::attach(target, &PROGRAMS)?;
    let mut before = probe.counters::<MemCounters>("mem", MemCounters::add)?;
    let (_, kills_at_start) = target.cgroup().memory_report().unwrap_or((0, 0));
    let mut total_faults = 0u64;
    super::every(
        target,
        "memory",
        interval,
        duration,
        |secs, seconds| {
            let now = probe.counters::<MemCounters>("mem", MemCounters::add)?;
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            let faults = (now.faults_user + now.faults_kernel)
                .saturating_sub(before.faults_user + before.faults_kernel);
            total_faults += faults;
            let (usage, kills) = target.cgroup().memory_report().unwrap_or((0, 0));
            let (rss, swap) = rss_and_swap(target.cgroup());
            let sample = MemSample {
                seconds,
                usage_bytes: usage,
                rss_bytes: rss,
                swap_bytes: swap,
                page_faults: total_faults,
                page_faults_per_second: faults as f64 / secs,
                lru_isolated_per_second: rate(now.lru_isolated, before.lru_isolated),
                reclaim_passes_per_second: rate(now.reclaim_passes, before.reclaim_passes),
                reclaim_ms_per_second: rate(now.reclaim_ns, before.reclaim_ns) / 1e6,
                reclaimed_pages_per_second: rate(now.reclaimed_pages, before.reclaimed_pages),
                oom_kills: kills.saturating_sub(kills_at_start),
            };
            before = now;
            Ok(sample)
        },
        each,
    )
}
