//! `poc trace C --sched`: per interval, how long the container's tasks waited to run (from the
//! moment they were runnable to the moment they ran), how much of that waiting was its group being
//! throttled by its CPU quota, the time its cpu.stat counts as throttled, and a verdict.

use std::time::Duration;

use super::abi::{SchedCounters, HIST_BUCKETS};
use super::{Probe, Target, TraceError};

pub const PROGRAMS: [(&str, &str); 3] = [
    ("sched_wakeup", "sched_wakeup"),
    ("sched_wakeup_new", "sched_wakeup_new"),
    ("sched_switch", "sched_switch"),
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct SchedSample {
    pub seconds: f64,
    pub cpu_percent: f64,
    pub waits_per_second: f64,
    pub wait_avg_us: f64,
    /// Upper bound of the log2 bucket holding the 99th percentile.
    pub wait_p99_us: f64,
    pub wait_max_us: f64,
    /// Of all waiting, the share spent with the group throttled.
    pub throttled_wait_ms_per_second: f64,
    pub other_wait_ms_per_second: f64,
    pub throttled_switches_per_second: f64,
    /// cpu.stat's own throttled time over the interval.
    pub cgroup_throttled_ms_per_second: f64,
    pub verdict: &'static str,
}

pub fn verdict(throttled_ms: f64, other_ms: f64, cgroup_throttled_ms: f64) -> &'static str {
    let total = throttled_ms + other_ms;
    if (throttled_ms > 1.0 || cgroup_throttled_ms > 1.0) && throttled_ms >= other_ms {
        "throttled by its CPU limit"
    } else if other_ms > 10.0 && other_ms > throttled_ms {
        "waiting for a busy host"
    } else if total < 1.0 {
        "runs when it wants to"
    } else {
        "mostly runs when it wants to"
    }
}

fn p99_bucket(hist: &[u64; HIST_BUCKETS]) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return (1u64 << (i + 1).min(63)) as f64 / 1e3;
        }
    }
    0.0
}

pub fn run(
    target: &Target,
    interval: Duration,
    duration: Option<Duration>,
    each: &mut dyn FnMut(&SchedSample),
) -> Result<Vec<SchedSample>, TraceError> {
    let probe = Probe::attach(target, &PROGRAMS)?;
    let mut before = probe.counters::<SchedCounters>("sched", SchedCounters::add)?;
    let mut cg_before = target.cgroup().sample();
    super::every(
        target,
        "scheduling",
        interval,
        duration,
        |secs, seconds| {
            let now = probe.counters::<SchedCounters>("sched", SchedCounters::add)?;
            let cg = target.cgroup().sample();
            let waits = now.waits.saturating_sub(before.waits);
            let wait_ns = now.wait_ns.saturating_sub(before.wait_ns);
            let throttled_ns = now
                .throttled_wait_ns
                .saturating_sub(before.throttled_wait_ns);
            let mut hist = [0u64; HIST_BUCKETS];
            for (i, h) in hist.iter_mut().enumerate() {
                *h = now.hist[i].saturating_sub(before.hist[i]);
            }
            let throttled_ms = throttled_ns as f64 / 1e6 / secs;
            let other_ms = wait_ns.saturating_sub(throttled_ns) as f64 / 1e6 / secs;
            let cg_throttled =
                cg.throttled_ns.saturating_sub(cg_before.throttled_ns) as f64 / 1e6 / secs;
            let sample = SchedSample {
                seconds,
                cpu_percent: cg.cpu_ns.saturating_sub(cg_before.cpu_ns) as f64 / 1e7 / secs,
                waits_per_second: waits as f64 / secs,
                wait_avg_us: if waits > 0 {
                    wait_ns as f64 / waits as f64 / 1e3
                } else {
                    0.0
                },
                wait_p99_us: p99_bucket(&hist),
                // The maximum is kept since the start (per CPU); it is what the kernel saw so far.
                wait_max_us: now.wait_max_ns as f64 / 1e3,
                throttled_wait_ms_per_second: throttled_ms,
                other_wait_ms_per_second: other_ms,
                throttled_switches_per_second: now
                    .throttled_switches
                    .saturating_sub(before.throttled_switches)
                    as f64
                    / secs,
                cgroup_throttled_ms_per_second: cg_throttled,
                verdict: verdict(throttled_ms, other_ms, cg_throttled),
            };
            before = now;
            cg_before = cg;
            Ok(sample)
        },
        each,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_names_the_larger_cause_of_waiting() {
        assert_eq!(verdict(400.0, 5.0, 450.0), "throttled by its CPU limit");
        assert_eq!(verdict(0.0, 300.0, 0.0), "waiting for a busy host");
        assert_eq!(verdict(0.0, 0.2, 0.0), "runs when it wants to");
        assert_eq!(verdict(0.0, 0.0, 200.0), "throttled by its CPU limit");
    }

    #[test]
    fn p99_is_the_bucket_that_holds_it() {
        let mut h = [0u64; HIST_BUCKETS];
        h[10] = 99; // 1-2 us
        h[20] = 1; // about 1 ms
        assert_eq!(p99_bucket(&h), 2048.0 / 1e3);
        h[20] = 5;
        assert_eq!(p99_bucket(&h), (1u64 << 21) as f64 / 1e3);
    }
}
