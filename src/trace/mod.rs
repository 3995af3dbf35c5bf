//! `poc trace`: what the kernel does for one container, measured with eBPF. The programs
//! (bpf/trace.bpf.c) attach to tracepoints only and filter in the kernel by the container's cgroup;
//! this module loads the ones a mode needs and decodes what they report into samples and records.
//! It reads the container's cgroup files (the CLI hands it what poc's state says of the container)
//! and hands samples and records back; only `--experiment` writes its limits. Prints no reports.

pub mod abi;
pub mod limits;
pub mod mem;
pub mod net;
pub mod sched;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aya::maps::{MapData, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::cgroups::Manager;
use crate::error::io;
use crate::network::{Attachment, NetworkMode};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/trace.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("this kernel has no BTF ({0} is missing): poc trace needs a kernel built with CONFIG_DEBUG_INFO_BTF")]
    NoBtf(String),
    #[error("this kernel has no tracepoint {0}, which this mode needs")]
    NoTracepoint(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} has no cgroup2 directory (the cgroup id BPF filters by); mount the unified hierarchy")]
    NoCgroup2(String),
    #[error("loading the BPF programs: {0}")]
    Load(String),
    #[error(transparent)]
    Io(#[from] crate::error::PathError),
    #[error("{0}")]
    Refused(String),
}

/// Writes a report file (an SVG).
pub fn write_file(path: &Path, text: String) -> Result<(), TraceError> {
    Ok(std::fs::write(path, text).map_err(io("write", path))?)
}

/// The container to trace, as the CLI found it in poc's state: trace sits below `container` and
/// reads no container state itself.
pub struct Container {
    pub id: String,
    pub name: String,
    pub cgroup: Manager,
    /// Its init process (None when it has none).
    pub init_pid: Option<i32>,
    pub network_mode: NetworkMode,
    pub network: Option<Attachment>,
    /// Whether it still runs; asked again while it is traced.
    pub running: Box<dyn Fn() -> bool>,
}

/// The container being traced, as the kernel knows it.
pub struct Target {
    pub id: String,
    pub name: String,
    pub init_pid: Option<i32>,
    pub network_mode: NetworkMode,
    pub network: Option<Attachment>,
    /// Its cgroup2 id: the inode number of its cgroup2 directory.
    pub cgroup_id: u64,
    /// Inode numbers of all its cgroup directories (one per hierarchy on v1).
    pub dirs: Vec<u64>,
    cgroup: Manager,
    running: Box<dyn Fn() -> bool>,
}

impl Target {
    pub fn of(container: Container) -> Result<Self, TraceError> {
        let name = container.name;
        if !(container.running)() {
            return Err(TraceError::NotRunning(name));
        }
        let unified = container
            .cgroup
            .unified_dir()
            .ok_or_else(|| TraceError::NoCgroup2(name.clone()))?;
        let ino = |dir: &Path| {
            std::fs::metadata(dir)
                .map(|m| m.ino())
                .map_err(io("stat", dir))
        };
        let cgroup_id = ino(&unified).map_err(|_| TraceError::NoCgroup2(name.clone()))?;
        let mut dirs = vec![cgroup_id];
        for dir in container.cgroup.leaf_dirs() {
            let i = ino(&dir)?;
            if !dirs.contains(&i) {
                dirs.push(i);
            }
        }
        Ok(Target {
            id: container.id,
            name,
            init_pid: container.init_pid,
            network_mode: container.network_mode,
            network: container.network,
            cgroup_id,
            dirs,
            cgroup: container.cgroup,
            running: container.running,
        })
    }

    pub fn cgroup(&self) -> &Manager {
        &self.cgroup
    }

    pub fn alive(&self) -> bool {
        (self.running)()
    }
}

/// Loaded programs, attached; detached and unloaded when dropped.
pub struct Probe {
    bpf: Ebpf,
}

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

impl Probe {
    /// Loads the object with the target's cgroup id, and loads and attaches `programs`
    /// (program name, tracepoint).
    pub fn attach(target: &Target, programs: &[(&str, &str)]) -> Result<Self, TraceError> {
        Self::attach_with(target, programs, &[], &[])
    }

    /// As [`Probe::attach`], with more of the object's `const volatile` globals set (`__u32`
    /// ones, then `__u64` ones).
    pub fn attach_with(
        target: &Target,
        programs: &[(&str, &str)],
        globals: &[(&str, u32)],
        globals64: &[(&str, u64)],
    ) -> Result<Self, TraceError> {
        if !Path::new(BTF_PATH).exists() {
            return Err(TraceError::NoBtf(BTF_PATH.into()));
        }
        let btf = Btf::from_sys_fs().map_err(|e| TraceError::NoBtf(format!("{BTF_PATH} ({e})")))?;
        let mut loader = EbpfLoader::new();
        loader
            .btf(Some(&btf))
            .override_global("target_cgid", &target.cgroup_id, true);
        for (name, value) in globals {
            loader.override_global(name, value, true);
        }
        for (name, value) in globals64 {
            loader.override_global(name, value, true);
        }
        let mut bpf = loader
            .load(OBJECT)
            .map_err(|e| TraceError::Load(e.to_string()))?;
        {
            let mut dirs: aya::maps::HashMap<_, u64, u8> = bpf
                .map_mut("target_dirs")
                .ok_or_else(|| TraceError::Load("no map target_dirs".into()))?
                .try_into()
                .map_err(|e: aya::maps::MapError| TraceError::Load(e.to_string()))?;
            for dir in &target.dirs {
                dirs.insert(dir, 1, 0)
                    .map_err(|e| TraceError::Load(e.to_string()))?;
            }
        }
        for (program, tracepoint) in programs {
            let p: &mut BtfTracePoint = bpf
                .program_mut(program)
                .ok_or_else(|| TraceError::Load(format!("no program {program}")))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| TraceError::Load(e.to_string()))?;
            p.load(tracepoint, &btf).map_err(|e| match e {
                aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => {
                    TraceError::NoTracepoint(tracepoint.to_string())
                }
                e => TraceError::Load(format!("{program} ({tracepoint}): {e}")),
            })?;
            p.attach().map_err(|e| {
                TraceError::Load(format!("attaching {program} to {tracepoint}: {e}"))
            })?;
        }
        Ok(Probe { bpf })
    }

    /// Every key and value of the hash map `map`.
    pub fn hash_entries<K: aya::Pod, V: aya::Pod>(
        &self,
        map: &str,
    ) -> Result<Vec<(K, V)>, TraceError> {
        let hash: aya::maps::HashMap<_, K, V> = self
            .bpf
            .map(map)
            .ok_or_else(|| TraceError::Load(format!("no map {map}")))?
            .try_into()
            .map_err(|e: aya::maps::MapError| TraceError::Load(e.to_string()))?;
        hash.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TraceError::Load(e.to_string()))
    }

    pub fn ring(&mut self) -> Result<RingBuf<MapData>, TraceError> {
        let map = self
            .bpf
            .take_map("events")
            .ok_or_else(|| TraceError::Load("no map events".into()))?;
        RingBuf::try_from(map).map_err(|e| TraceError::Load(e.to_string()))
    }

    /// The per-CPU counters in `map`, summed.
    pub fn counters<T: aya::Pod + Default>(
        &self,
        map: &str,
        add: fn(&mut T, &T),
    ) -> Result<T, TraceError> {
        self.counters_at(map, 0, add)
    }

    /// The per-CPU counters at `index` of the array `map`, summed.
    pub fn counters_at<T: aya::Pod + Default>(
        &self,
        map: &str,
        index: u32,
        add: fn(&mut T, &T),
    ) -> Result<T, TraceError> {
        let array: aya::maps::PerCpuArray<_, T> = self
            .bpf
            .map(map)
            .ok_or_else(|| TraceError::Load(format!("no map {map}")))?
            .try_into()
            .map_err(|e: aya::maps::MapError| TraceError::Load(e.to_string()))?;
        let values = array
            .get(&index, 0)
            .map_err(|e| TraceError::Load(e.to_string()))?;
        let mut sum = T::default();
        for v in values.iter() {
            add(&mut sum, v);
        }
        Ok(sum)
    }
}

/// The per-interval modes' loop: says what it traces, then every `interval` calls `sample` with the
/// seconds since its previous call and since the start, hands the result to `each` and keeps it,
/// until `duration` has passed or the container stops.
pub fn every<S>(
    target: &Target,
    what: &str,
    interval: std::time::Duration,
    duration: Option<std::time::Duration>,
    mut sample: impl FnMut(f64, f64) -> Result<S, TraceError>,
    each: &mut dyn FnMut(&S),
) -> Result<Vec<S>, TraceError> {
    eprintln!(
        "tracing the {what} of {} (cgroup id {}) every {interval:?}; Ctrl-C to stop",
        target.name, target.cgroup_id
    );
    let start = std::time::Instant::now();
    let mut at = start;
    let mut samples = Vec::new();
    loop {
        std::thread::sleep(interval);
        if !target.alive() {
            return Ok(samples);
        }
        let secs = at.elapsed().as_secs_f64().max(1e-9);
        at = std::time::Instant::now();
        let s = sample(secs, start.elapsed().as_secs_f64())?;
        each(&s);
        samples.push(s);
        if duration.is_some_and(|d| start.elapsed() + interval / 2 >= d) {
            return Ok(samples);
        }
    }
}

/// CLOCK_MONOTONIC (what bpf_ktime_get_ns reads) now, in ns.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Converts a BPF timestamp (monotonic) to wall-clock ns since the epoch.
pub fn wall_ns(monotonic: u64) -> u64 {
    let now_wall = crate::units::now_ns();
    let now_mono = monotonic_ns();
    (now_wall + monotonic).saturating_sub(now_mono)
}

/// Median and p99 and min of a sample (sorted in place).
pub fn percentiles(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((values[0], at(0.5), at(0.99)))
}
