//! The records the BPF programs write, as bpf/trace.h defines them (keep the two in step; the
//! size checks below catch a field added on one side only).

pub const NAME_LEN: usize = 32;
pub const HIST_BUCKETS: usize = 32;
pub const EVENT_LIMIT_WRITE: u32 = 1;
pub const EVENT_THROTTLE: u32 = 2;
pub const NET_SUB_BITS: u32 = 4;
pub const NET_BUCKETS: usize = 512;
/// enum net_segment: out of the container through its veth, then the bridge; in through the
/// bridge, then the veth.
pub const SEG_OUT_VETH: u32 = 0;
pub const SEG_OUT_BRIDGE: u32 = 1;
pub const SEG_IN_BRIDGE: u32 = 2;
pub const SEG_IN_VETH: u32 = 3;
pub const NET_SEGMENTS: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LimitEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub reclaim_passes: u32,
    pub ts_start: u64,
    pub ts_end: u64,
    pub ret: i64,
    pub dir_ino: u64,
    pub reclaim_ns: u64,
    pub reclaimed_pages: u64,
    pub comm: [u8; 16],
    pub file: [u8; NAME_LEN],
    pub value: [u8; NAME_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThrottleEvent {
    pub kind: u32,
    pub pid: u32,
    pub cpu: u32,
    pub pad: u32,
    pub ts: u64,
    pub armed_ts: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemCounters {
    pub faults_user: u64,
    pub faults_kernel: u64,
    pub lru_isolated: u64,
    pub reclaim_passes: u64,
    pub reclaim_ns: u64,
    pub reclaimed_pages: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedCounters {
    pub waits: u64,
    pub wait_ns: u64,
    pub wait_max_ns: u64,
    pub throttled_wait_ns: u64,
    pub throttled_switches: u64,
    pub preempted_switches: u64,
    pub hist: [u64; HIST_BUCKETS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetHist {
    pub count: u64,
    pub sum_ns: u64,
    pub buckets: [u64; NET_BUCKETS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetCounters {
    /// [0] out of the container, [1] into it.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetDropKey {
    /// Where it was: 0 on the container's eth0 or host veth outside the path; 1 + the segment.
    pub place: u32,
    pub reason: u32,
}

// SAFETY: plain C structs of integers, no padding the kernel leaves uninitialised that we rely on.
unsafe impl aya::Pod for MemCounters {}
// SAFETY: as above.
unsafe impl aya::Pod for SchedCounters {}
// SAFETY: as above.
unsafe impl aya::Pod for NetHist {}
// SAFETY: as above.
unsafe impl aya::Pod for NetCounters {}
// SAFETY: as above.
unsafe impl aya::Pod for NetDropKey {}

const _: () = assert!(std::mem::size_of::<LimitEvent>() == 144);
const _: () = assert!(std::mem::size_of::<ThrottleEvent>() == 32);
const _: () = assert!(std::mem::size_of::<MemCounters>() == 48);
const _: () = assert!(std::mem::size_of::<SchedCounters>() == 48 + 8 * HIST_BUCKETS);
const _: () = assert!(std::mem::size_of::<NetHist>() == 16 + 8 * NET_BUCKETS);
const _: () = assert!(std::mem::size_of::<NetCounters>() == 32);
const _: () = assert!(std::mem::size_of::<NetDropKey>() == 8);

/// Reads a record of type `T` from a ring buffer item, if it is long enough.
pub fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= std::mem::size_of::<T>())
        // SAFETY: the length is checked and T is a plain C struct; read_unaligned needs no alignment.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A NUL-terminated name from a fixed array.
pub fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string()
}

impl SchedCounters {
    pub fn add(&mut self, o: &SchedCounters) {
        self.waits += o.waits;
        self.wait_ns += o.wait_ns;
        self.wait_max_ns = self.wait_max_ns.max(o.wait_max_ns);
        self.throttled_wait_ns += o.throttled_wait_ns;
        self.throttled_switches += o.throttled_switches;
        self.preempted_switches += o.preempted_switches;
        for (a, b) in self.hist.iter_mut().zip(o.hist) {
            *a += b;
        }
    }
}

impl MemCounters {
    pub fn add(&mut self, o: &MemCounters) {
        self.faults_user += o.faults_user;
        self.faults_kernel += o.faults_kernel;
        self.lru_isolated += o.lru_isolated;
        self.reclaim_passes += o.reclaim_passes;
        self.reclaim_ns += o.reclaim_ns;
        self.reclaimed_pages += o.reclaimed_pages;
    }
}

impl Default for NetHist {
    fn default() -> Self {
        NetHist {
            count: 0,
            sum_ns: 0,
            buckets: [0; NET_BUCKETS],
        }
    }
}

impl NetHist {
    pub fn add(&mut self, o: &NetHist) {
        self.count += o.count;
        self.sum_ns += o.sum_ns;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
    }

    /// What was added since `before` (the kernel's counters only grow).
    pub fn since(&self, before: &NetHist) -> NetHist {
        let mut d = NetHist {
            count: self.count.saturating_sub(before.count),
            sum_ns: self.sum_ns.saturating_sub(before.sum_ns),
            ..NetHist::default()
        };
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i].saturating_sub(before.buckets[i]);
        }
        d
    }
}

impl NetCounters {
    pub fn add(&mut self, o: &NetCounters) {
        for i in 0..2 {
            self.packets[i] += o.packets[i];
            self.bytes[i] += o.bytes[i];
        }
    }
}

/// The range of latencies, in ns, that bucket `index` of a [`NetHist`] holds: [low, high).
/// The inverse of net_bucket() in bpf/trace.bpf.c.
pub fn net_bucket_bounds(index: usize) -> (u64, u64) {
    let sub = 1u64 << NET_SUB_BITS;
    let i = index as u64;
    if i < sub {
        return (i, i + 1);
    }
    let group = i >> NET_SUB_BITS;
    let width = 1u64 << (group - 1);
    let low = (sub + (i & (sub - 1))) * width;
    (low, low + width)
}
