//! The records the BPF programs write, as bpf/trace.h defines them (keep the two in step; the
//! size checks below catch a field added on one side only).

pub const NAME_LEN: usize = 32;
pub const HIST_BUCKETS: usize = 32;
pub const EVENT_LIMIT_WRITE: u32 = 1;
pub const EVENT_THROTTLE: u32 = 2;

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

// SAFETY: plain C structs of integers, no padding the kernel leaves uninitialised that we rely on.
unsafe impl aya::Pod for MemCounters {}
// SAFETY: as above.
unsafe impl aya::Pod for SchedCounters {}

const _: () = assert!(std::mem::size_of::<LimitEvent>() == 144);
const _: () = assert!(std::mem::size_of::<ThrottleEvent>() == 32);
const _: () = assert!(std::mem::size_of::<MemCounters>() == 48);
const _: () = assert!(std::mem::size_of::<SchedCounters>() == 48 + 8 * HIST_BUCKETS);

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
