//! cgroups: one leaf per container under an absolute parent, limits in cgroup v2 meanings, two backends.
//! Knows nothing about containers or the CLI; never touches a cgroup outside the leaves it creates and
//! the parent path it is given (beyond enabling missing v2 controllers on the way down).

pub mod devices;
mod events;
mod fs;
mod plan;
mod stats;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use events::MemoryWatch;
pub use fs::CgroupError;
pub use plan::Change;
use plan::Write;
pub use stats::{Psi, Sample};

/// The CFS period a CPU quota is measured over when none is given, in microseconds (the kernel's
/// default, as Docker and runc use).
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// The cgroup hierarchies mounted on this host, read from /proc/self/mountinfo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hierarchies {
    /// cgroup v1 hierarchies: mount point and the controllers bound to it (`name=X` for a named one).
    pub v1: Vec<(PathBuf, Vec<String>)>,
    /// The cgroup2 mount: the whole tree on a pure v2 host, `/sys/fs/cgroup/unified` on hybrid ones.
    pub unified: Option<PathBuf>,
}

const V1_CONTROLLERS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "rdma",
    "misc",
];

impl Hierarchies {
    pub fn detect() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text =
            std::fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, "", e))?;
        Ok(Self::parse_mountinfo(&text))
    }

    pub fn parse_mountinfo(text: &str) -> Self {
        let mut found = Hierarchies::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            // A mount of a sub-tree (another cgroup namespace's view) is not a hierarchy root.
            if left.len() < 5 || right.len() < 3 || left[3] != "/" {
                continue;
            }
            let mount_point = PathBuf::from(left[4]);
            match right[0] {
                "cgroup2" => found.unified = Some(mount_point),
                "cgroup" => {
                    // Named hierarchies (name=systemd) hold no controller but a container still
                    // gets its own leaf there: at their root it would see release_agent.
                    let controllers: Vec<String> = right[2]
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(String::from)
                        .collect();
                    if !controllers.is_empty() {
                        found.v1.push((mount_point, controllers));
                    }
                }
                _ => {}
            }
        }
        found
    }
}

/// Which backend a host needs: v1 (legacy or hybrid) whenever v1 controllers are mounted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum Manager {
    V1(v1::V1Manager),
    V2(v2::V2Manager),
}

impl Manager {
    /// The manager for the cgroup `path` (absolute, e.g. `/poc/<id>`) on this host.
    pub fn for_path(hierarchies: &Hierarchies, path: &str) -> Result<Self, CgroupError> {
        let relative = relative_path(path)?;
        if !hierarchies.v1.is_empty() {
            return Ok(Manager::V1(v1::V1Manager::new(hierarchies, &relative)));
        }
        match &hierarchies.unified {
            Some(root) => Ok(Manager::V2(v2::V2Manager::new(root, &relative))),
            None => Err(CgroupError::NoCgroupFs),
        }
    }

    /// Creates the leaf (and its parents), ready to receive limits and processes.
    pub fn create(&self) -> Result<(), CgroupError> {
        match self {
            Manager::V1(m) => m.create(),
            Manager::V2(m) => m.create(),
        }
    }

    /// The container's resource use now, from its cgroup's files.
    pub fn sample(&self) -> Sample {
        match self {
            Manager::V1(m) => stats::v1(
                |controller| m.dir_of(controller),
                m.unified_leaf().as_deref(),
            ),
            Manager::V2(m) => stats::v2(m.leaf()),
        }
    }

    /// Memory in use and OOM kills so far, if the memory controller is there.
    pub fn memory_report(&self) -> Option<(u64, u64)> {
        match self {
            Manager::V1(m) => m.memory_report(),
            Manager::V2(m) => m.memory_report(),
        }
    }

    /// Memory in use, if the memory controller is there.
    pub fn memory_usage(&self) -> Option<u64> {
        match self {
            Manager::V1(m) => m.memory_usage(),
            Manager::V2(m) => m.memory_usage(),
        }
    }

    /// OOM kills so far, if the memory controller is there.
    pub fn oom_kills(&self) -> Option<u64> {
        match self {
            Manager::V1(m) => m.oom_kills(),
            Manager::V2(m) => m.oom_kills(),
        }
    }

    /// A directory fd of a cgroup2 leaf for `clone3(CLONE_INTO_CGROUP)`: the process is born inside it.
    pub fn clone_into_fd(&self) -> Option<OwnedFd> {
        match self {
            Manager::V1(m) => m.unified_leaf().and_then(|leaf| fs::open_dir(&leaf)),
            Manager::V2(m) => fs::open_dir(m.leaf()),
        }
    }

    /// The v1 pids leaf's `tasks` file. A process poc starts in a running container (`exec`) joins
    /// that leaf after it is cloned, not before: a clone inside fails at pids.max, where a move
    /// passes it, so the container's owner could not exec into a fork-bombed container.
    pub fn pids_tasks_file(&self) -> Option<PathBuf> {
        match self {
            Manager::V1(m) => m.pids_tasks_file(),
            Manager::V2(_) => None,
        }
    }

    /// The files a single-threaded process writes `0` to, to move itself into the v1 leaves.
    ///
    /// Moving another process (its pid into `cgroup.procs`) takes the kernel's global threadgroup
    /// rwsem for writing, which waits for an RCU grace period when the lock is cold: 6-8 ms here,
    /// per container start. A thread moving itself through `tasks` skips that lock
    /// (cgroup_procs_write_start), at 0.3 ms. So the init and exec'd processes join their v1 leaves
    /// themselves, before anything else they do.
    pub fn self_join_files(&self) -> Vec<PathBuf> {
        match self {
            Manager::V1(m) => m.task_files(),
            Manager::V2(_) => Vec::new(),
        }
    }

    /// Moves `pid` into the cgroup2 leaf, unless clone3 already placed it there (`born_in_unified`).
    /// The v1 leaves are joined by the process itself: see [`Manager::self_join_files`].
    pub fn add_task(&self, pid: i32, born_in_unified: bool) -> Result<(), CgroupError> {
        match self {
            Manager::V1(m) => m.add_task(pid, born_in_unified),
            Manager::V2(_) if born_in_unified => Ok(()),
            Manager::V2(m) => fs::add_pid(m.leaf(), pid),
        }
    }

    /// Freezes (`pause`) or thaws (`resume`) every process of the container, and waits until the
    /// kernel says it is done: v1 `freezer.state` FROZEN/THAWED, v2 `cgroup.freeze` and the
    /// `frozen` line of `cgroup.events`.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let (dir, file, value, check_file, done): (PathBuf, &str, &str, &str, &str) = match self {
            Manager::V1(m) => {
                let dir = m.dir_of("freezer").ok_or(CgroupError::NoFreezer)?;
                let value = if frozen { "FROZEN" } else { "THAWED" };
                (dir, "freezer.state", value, "freezer.state", value)
            }
            Manager::V2(m) => (
                m.leaf().to_path_buf(),
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
                "cgroup.events",
                if frozen { "frozen 1" } else { "frozen 0" },
            ),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            // v1 may stay FREEZING while a task is busy in the kernel: writing again retries it.
            fs::write(&dir, file, value)?;
            if fs::read(&dir, check_file)?
                .lines()
                .any(|l| l.trim() == done)
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(CgroupError::Freeze(
                    dir,
                    if frozen { "frozen" } else { "thawed" },
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Whether the container's processes are frozen now.
    pub fn is_frozen(&self) -> bool {
        match self {
            Manager::V1(m) => m
                .dir_of("freezer")
                .and_then(|d| fs::read(&d, "freezer.state").ok())
                .is_some_and(|s| s.trim() == "FROZEN"),
            Manager::V2(m) => fs::read(m.leaf(), "cgroup.events")
                .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1")),
        }
    }

    /// Every process in the container's cgroup (host pids).
    pub fn pids(&self) -> Vec<i32> {
        let dir = match self {
            Manager::V1(m) => m
                .dir_of("pids")
                .or_else(|| m.unified_leaf())
                .or_else(|| m.leaf_dirs().into_iter().next()),
            Manager::V2(m) => Some(m.leaf().to_path_buf()),
        };
        let mut pids: Vec<i32> = dir
            .and_then(|d| fs::read(&d, "cgroup.procs").ok())
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        pids.sort_unstable();
        pids
    }

    /// Every thread in the container's cgroup (host thread ids): v1 `tasks`, v2 `cgroup.threads`.
    #[cfg_attr(not(feature = "trace"), allow(dead_code))] // for poc trace alone
    pub fn threads(&self) -> Vec<i32> {
        let (dir, file) = match self {
            Manager::V1(m) => (m.dir_of("pids").or_else(|| m.dir_of("cpu")), "tasks"),
            Manager::V2(m) => (Some(m.leaf().to_path_buf()), "cgroup.threads"),
        };
        dir.and_then(|d| fs::read(&d, file).ok())
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Refuses a cgroup that exists and holds processes in any hierarchy: removing the container
    /// kills what is in its cgroup, so it must not share one (an OCI cgroupsPath may name any).
    pub fn check_unused(&self) -> Result<(), CgroupError> {
        for dir in self.leaf_dirs() {
            if fs::read(&dir, "cgroup.procs").is_ok_and(|procs| !procs.trim().is_empty()) {
                return Err(CgroupError::InUse(dir));
            }
        }
        Ok(())
    }

    /// Kills whatever is left in the leaf and removes it. Missing leaves are fine: remove is idempotent.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.leaf_dirs()
            .iter()
            .try_for_each(|dir| fs::remove_leaf(dir))
    }

    /// The container's directory in the cgroup2 hierarchy (the leaf on v2, the unified leaf on a
    /// hybrid host): its inode number is the cgroup id BPF programs see.
    #[cfg_attr(not(feature = "trace"), allow(dead_code))] // for poc trace alone
    pub fn unified_dir(&self) -> Option<PathBuf> {
        match self {
            Manager::V1(m) => m.unified_leaf(),
            Manager::V2(m) => Some(m.leaf().to_path_buf()),
        }
    }

    /// The file holding the hard memory limit and the one holding the CPU quota, with how a
    /// value is written to each (v2 `cpu.max` takes "QUOTA PERIOD").
    #[cfg_attr(not(feature = "trace"), allow(dead_code))] // for poc trace alone
    pub fn limit_files(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        match self {
            Manager::V1(m) => (
                m.dir_of("memory").map(|d| d.join("memory.limit_in_bytes")),
                m.dir_of("cpu").map(|d| d.join("cpu.cfs_quota_us")),
            ),
            Manager::V2(m) => (
                Some(m.leaf().join("memory.max")),
                Some(m.leaf().join("cpu.max")),
            ),
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Manager::V2(_))
    }

    /// Every directory this container owns, one per hierarchy.
    pub fn leaf_dirs(&self) -> Vec<PathBuf> {
        match self {
            Manager::V1(m) => m.leaf_dirs(),
            Manager::V2(m) => vec![m.leaf().to_path_buf()],
        }
    }
}

/// `name N` from a flat keyed file such as memory.events or memory.oom_control.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `/poc/abc` -> `poc/abc`, refusing anything that could climb out of the hierarchy.
fn relative_path(path: &str) -> Result<PathBuf, CgroupError> {
    let trimmed = path.trim_start_matches('/');
    let bad = trimmed.is_empty()
        || !path.starts_with('/')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(CgroupError::BadPath(path.to_string()));
    }
    Ok(PathBuf::from(trimmed))
}

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the mapping runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// The inverse of [`shares_to_weight`], for `--cpu-weight`: rounded up, so that a weight survives
/// the trip through shares exactly (v2 hosts write the weight back out).
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + ((weight.clamp(1, 10_000) - 1) * 262_142).div_ceil(9999)
}
