//! `poc trace C --net`: what a packet of the container costs between its eth0 and the host, per
//! direction and segment, measured per skb in the kernel (bpf/trace.bpf.c): through the veth pair
//! (start_xmit on one end to netif_receive_skb on the other) and through the bridge (to the host's
//! stack or another port). Per interval: packets and bytes, min/median/p99 per segment, drops
//! with the kernel's reasons, and the packet-time spent in the path. Reads the container's state,
//! /proc and /sys; changes nothing in the network.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::abi::{
    net_bucket_bounds, NetCounters, NetDropKey, NetHist, NET_SEGMENTS, SEG_IN_BRIDGE, SEG_IN_VETH,
    SEG_OUT_BRIDGE, SEG_OUT_VETH,
};
use super::{Probe, Target, TraceError};
use crate::error::io;
use crate::network::NetworkMode;

pub const PROGRAMS: [(&str, &str); 3] = [
    ("net_xmit", "net_dev_start_xmit"),
    ("net_receive", "netif_receive_skb"),
    ("net_drop", "kfree_skb"),
];

/// The container's veth pair and bridge as the kernel names them: (network namespace inode,
/// ifindex), since ifindexes repeat across namespaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Devices {
    pub host_ns: u32,
    pub container_ns: u32,
    pub container_if: u32,
    pub host_veth_if: u32,
    pub bridge_if: u32,
    pub host_veth: String,
    pub bridge: String,
}

impl Devices {
    /// The devices of a container on a bridge network; one clear refusal for any other.
    pub fn of(target: &Target) -> Result<Self, TraceError> {
        let attachment = match (&target.network_mode, &target.network) {
            (mode, Some(a)) if mode.joins_bridge() => a,
            (mode, _) => {
                let mode = match mode {
                    NetworkMode::None => "--network none",
                    NetworkMode::Host => "--network host",
                    NetworkMode::Bridge | NetworkMode::Named(_) => "no bridge attachment recorded",
                };
                return Err(TraceError::Refused(format!(
                    "container {} has no veth pair to trace ({mode}): --net needs a container on a bridge network",
                    target.name
                )));
            }
        };
        let init_pid = target
            .init_pid
            .ok_or_else(|| TraceError::NotRunning(target.name.clone()))?;
        let container_ns = netns_inode(&format!("/proc/{init_pid}/ns/net"))?;
        let host_ns = netns_inode("/proc/self/ns/net")?;
        let sys = |dev: &str, file: &str| sys_net_number(dev, file);
        Ok(Devices {
            host_ns,
            container_ns,
            // A veth's iflink is its peer's ifindex (in the peer's namespace).
            container_if: sys(&attachment.host_veth, "iflink")?,
            host_veth_if: sys(&attachment.host_veth, "ifindex")?,
            bridge_if: sys(&attachment.bridge, "ifindex")?,
            host_veth: attachment.host_veth.clone(),
            bridge: attachment.bridge.clone(),
        })
    }

    /// The BPF object's globals that name these devices.
    fn globals(&self) -> [(&'static str, u32); 5] {
        [
            ("net_host_ns", self.host_ns),
            ("net_cont_ns", self.container_ns),
            ("net_if_cont", self.container_if),
            ("net_if_host", self.host_veth_if),
            ("net_if_bridge", self.bridge_if),
        ]
    }
}

/// The address of a kernel function from /proc/kallsyms (the bridge's, when it is a module, is
/// listed with `[bridge]` after it); 0 when it is not there or hidden (`kptr_restrict` 2 shows
/// zeros even to root). Without the bridge's rx handler, packets between two containers on the
/// bridge are not followed through it; everything else is.
fn kernel_symbol(name: &str) -> u64 {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open("/proc/kallsyms") else {
        return 0;
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let address = words.next()?;
            let _kind = words.next()?;
            (words.next()? == name).then(|| u64::from_str_radix(address, 16).ok())?
        })
        .unwrap_or(0)
}

/// The inode of a network namespace file: the kernel's `net->ns.inum`.
fn netns_inode(path: &str) -> Result<u32, TraceError> {
    let p = Path::new(path);
    let ino = std::fs::metadata(p).map_err(io("stat", p))?.ino();
    u32::try_from(ino).map_err(|_| TraceError::Load(format!("{path}: inode {ino} is not 32 bits")))
}

/// A number from /sys/class/net/DEV/FILE (this process's network namespace).
fn sys_net_number(dev: &str, file: &str) -> Result<u32, TraceError> {
    let path = Path::new("/sys/class/net").join(dev).join(file);
    let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
    text.trim()
        .parse()
        .map_err(|_| TraceError::Load(format!("{}: not a number: {text:?}", path.display())))
}

/// Latencies of one segment over an interval, from its histogram: the bucket's middle (min: its
/// lower edge), so within about 2% of the kernel's values.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub n: u64,
    pub min_us: Option<f64>,
    pub median_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mean_us: Option<f64>,
}

impl Latency {
    pub fn of(h: &NetHist) -> Self {
        let total: u64 = h.buckets.iter().sum();
        if total == 0 {
            return Latency::default();
        }
        let first = h.buckets.iter().position(|n| *n > 0);
        Latency {
            n: total,
            min_us: first.map(|i| net_bucket_bounds(i).0 as f64 / 1e3),
            median_us: quantile_us(h, total, 0.5),
            p99_us: quantile_us(h, total, 0.99),
            mean_us: (h.count > 0).then(|| h.sum_ns as f64 / h.count as f64 / 1e3),
        }
    }
}

/// The middle of the bucket that holds the q-quantile, in us.
fn quantile_us(h: &NetHist, total: u64, q: f64) -> Option<f64> {
    let want = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            let (low, high) = net_bucket_bounds(i);
            return Some((low + high) as f64 / 2.0 / 1e3);
        }
    }
    None
}

/// One direction over an interval. `packets` entered the veth (start_xmit on its first end);
/// bytes are frame lengths (a GSO packet counts once, with all its bytes).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Direction {
    pub packets: u64,
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
    pub veth: Latency,
    pub bridge: Latency,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DropCount {
    pub r#where: &'static str,
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NetSample {
    pub seconds: f64,
    /// Out of the container: its eth0, the veth, the bridge, the host's stack (or another port).
    pub from_container: Direction,
    /// Into it: the bridge (from the host's stack or another port), the veth, its eth0.
    pub to_container: Direction,
    /// The time the container's packets spent in the four segments, summed, per second: the
    /// average number of its packets inside the veth/bridge path at any moment (x1000).
    pub in_path_ms_per_second: f64,
    pub drops: Vec<DropCount>,
}

/// Where a dropped packet was (net_drop_key.where).
fn drop_place(place: u32) -> &'static str {
    match place.checked_sub(1) {
        None => "container's stack",
        Some(SEG_OUT_VETH) => "out: veth",
        Some(SEG_OUT_BRIDGE) => "out: bridge",
        Some(SEG_IN_BRIDGE) => "in: bridge",
        Some(SEG_IN_VETH) => "in: veth",
        Some(_) => "unknown",
    }
}

/// The names of enum skb_drop_reason, from the kfree_skb tracepoint's format (its
/// `__print_symbolic` list); empty when tracefs is not mounted.
pub fn drop_reason_names() -> HashMap<u32, String> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|root| {
            std::fs::read_to_string(format!("{root}/events/skb/kfree_skb/format")).ok()
        })
        .map(|format| parse_symbolic(&format))
        .unwrap_or_default()
}

/// `{ 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, ...` from a tracepoint's print format.
fn parse_symbolic(format: &str) -> HashMap<u32, String> {
    let Some((_, list)) = format.split_once("__print_symbolic(") else {
        return HashMap::new();
    };
    list.split('{')
        .filter_map(|item| {
            let (number, rest) = item.split_once(',')?;
            let name = rest.split('"').nth(1)?;
            Some((number.trim().parse().ok()?, name.to_string()))
        })
        .collect()
}

/// Everything the kernel has counted so far.
#[derive(Clone)]
struct Totals {
    segments: Vec<NetHist>,
    counters: NetCounters,
    drops: HashMap<NetDropKey, u64>,
}

impl Totals {
    fn read(probe: &Probe) -> Result<Self, TraceError> {
        let segments = (0..NET_SEGMENTS)
            .map(|s| probe.counters_at::<NetHist>("net_hist", s, NetHist::add))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Totals {
            segments,
            counters: probe.counters::<NetCounters>("net_count", NetCounters::add)?,
            drops: probe
                .hash_entries::<NetDropKey, u64>("net_drops")?
                .into_iter()
                .collect(),
        })
    }

    fn segment_since(&self, before: &Totals, seg: u32) -> NetHist {
        self.segments[seg as usize].since(&before.segments[seg as usize])
    }
}

/// The histograms of a whole run, per segment, for the plot.
pub struct RunHistograms {
    pub segments: Vec<(&'static str, NetHist)>,
}

pub const SEGMENT_TITLES: [(u32, &str); 4] = [
    (SEG_OUT_VETH, "out: veth (container eth0 -> host veth)"),
    (
        SEG_OUT_BRIDGE,
        "out: bridge (host veth -> host stack or another port)",
    ),
    (
        SEG_IN_BRIDGE,
        "in: bridge (host stack or another port -> host veth)",
    ),
    (SEG_IN_VETH, "in: veth (host veth -> container eth0)"),
];

/// Most values a plot's histogram is drawn from; a larger run is scaled down, bucket by bucket.
const PLOT_VALUES: u64 = 200_000;

/// A segment's histogram as values for the plot (each bucket's middle, in us), and whether it
/// had to be scaled down.
pub fn histogram_values(h: &NetHist) -> (Vec<f64>, bool) {
    let total: u64 = h.buckets.iter().sum();
    let sampled = total > PLOT_VALUES;
    let mut values = Vec::new();
    for (i, n) in h.buckets.iter().enumerate() {
        let n = if sampled {
            (*n as u128 * PLOT_VALUES as u128 / total as u128) as usize
        } else {
            *n as usize
        };
        let (low, high) = net_bucket_bounds(i);
        let middle = (low + high) as f64 / 2.0 / 1e3;
        values.extend(std::iter::repeat_n(middle, n));
    }
    (values, sampled)
}

fn sample(
    now: &Totals,
    before: &Totals,
    secs: f64,
    seconds: f64,
    reasons: &HashMap<u32, String>,
) -> NetSample {
    let direction = |dir: usize, veth: u32, bridge: u32| {
        let packets = now.counters.packets[dir].saturating_sub(before.counters.packets[dir]);
        Direction {
            packets,
            packets_per_second: packets as f64 / secs,
            bytes_per_second: now.counters.bytes[dir].saturating_sub(before.counters.bytes[dir])
                as f64
                / secs,
            veth: Latency::of(&now.segment_since(before, veth)),
            bridge: Latency::of(&now.segment_since(before, bridge)),
        }
    };
    let in_path_ns: u64 = (0..NET_SEGMENTS)
        .map(|s| now.segment_since(before, s).sum_ns)
        .sum();
    let mut drops: Vec<DropCount> = now
        .drops
        .iter()
        .filter_map(|(key, total)| {
            let count = total.saturating_sub(*before.drops.get(key).unwrap_or(&0));
            (count > 0).then(|| DropCount {
                r#where: drop_place(key.place),
                reason: reasons
                    .get(&key.reason)
                    .cloned()
                    .unwrap_or_else(|| format!("reason {}", key.reason)),
                count,
            })
        })
        .collect();
    drops.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    NetSample {
        seconds,
        from_container: direction(0, SEG_OUT_VETH, SEG_OUT_BRIDGE),
        to_container: direction(1, SEG_IN_VETH, SEG_IN_BRIDGE),
        in_path_ms_per_second: in_path_ns as f64 / 1e6 / secs,
        drops,
    }
}

/// Samples every `interval` and hands each sample to `each`, until `duration` or the container
/// stops; returns the samples and the whole run's histograms.
pub fn run(
    target: &Target,
    interval: Duration,
    duration: Option<Duration>,
    each: &mut dyn FnMut(&NetSample),
) -> Result<(Vec<NetSample>, RunHistograms), TraceError> {
    let devices = Devices::of(target)?;
    let bridge_handler = [("net_br_handle_frame", kernel_symbol("br_handle_frame"))];
    let probe = Probe::attach_with(target, &PROGRAMS, &devices.globals(), &bridge_handler)?;
    let reasons = drop_reason_names();
    let start = Totals::read(&probe)?;
    let mut before = start.clone();
    let what = format!(
        "packets on {} <-> {} <-> {}",
        devices.host_veth, devices.bridge, "its eth0"
    );
    let samples = super::every(
        target,
        &what,
        interval,
        duration,
        |secs, seconds| {
            let now = Totals::read(&probe)?;
            let s = sample(&now, &before, secs, seconds, &reasons);
            before = now;
            Ok(s)
        },
        each,
    )?;
    let segments = SEGMENT_TITLES
        .iter()
        .map(|(seg, title)| (*title, before.segment_since(&start, *seg)))
        .collect();
    Ok((samples, RunHistograms { segments }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::abi::NET_BUCKETS;

    /// The C side's bucketing, for checking the bounds against it.
    fn bucket(v: u64) -> usize {
        if v < 16 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros() as u64;
        let sub = (v >> (msb - 4)) & 15;
        (((msb - 3) << 4) + sub).min(NET_BUCKETS as u64 - 1) as usize
    }

    #[test]
    fn every_latency_falls_inside_its_bucket_bounds() {
        for v in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            33,
            1000,
            4095,
            4096,
            50_000,
            999_999_999,
        ] {
            let (low, high) = net_bucket_bounds(bucket(v));
            assert!(low <= v && v < high, "{v} in [{low}, {high})");
            assert!(high - low <= low / 16 + 1, "{v}: bucket too wide");
        }
    }

    #[test]
    fn median_and_p99_come_from_the_buckets_that_hold_them() {
        let mut h = NetHist::default();
        h.buckets[bucket(20_000)] = 98;
        h.buckets[bucket(100_000)] = 2;
        h.count = 100;
        h.sum_ns = 98 * 20_000 + 2 * 100_000;
        let l = Latency::of(&h);
        assert_eq!(l.n, 100);
        let median = l.median_us.unwrap();
        assert!((median - 20.0).abs() < 0.7, "{median}");
        let p99 = l.p99_us.unwrap();
        assert!((p99 - 100.0).abs() < 3.5, "{p99}");
        assert!(l.min_us.unwrap() <= 20.0);
        assert!((l.mean_us.unwrap() - 21.6).abs() < 1e-9);
        assert!(Latency::of(&NetHist::default()).median_us.is_none());
    }

    #[test]
    fn drop_reasons_are_read_from_the_tracepoint_format() {
        let format = r#"print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" })"#;
        let names = parse_symbolic(format);
        assert_eq!(names.get(&3).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(names.len(), 2);
        assert_eq!(drop_place(0), "container's stack");
        assert_eq!(drop_place(1 + SEG_IN_VETH), "in: veth");
    }
}
