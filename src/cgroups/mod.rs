//! cgroups: one leaf per container under an absolute parent, limits in cgroup v2 meanings, two backends.
//! Knows nothing about containers or the CLI; never touches a cgroup outside the leaves it creates and
//! the parent path it is given (beyond enabling missing v2 controllers on the way down).

pub mod devices;
mod events;
mod fs;
mod stats;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

pub use events::MemoryWatch;
pub use fs::CgroupError;
pub use stats::{Psi, Sample};

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

    /// Writes the limits in `resources` to the leaf, and its device rules if it has any (over an
    /// implicit deny-all: `Some` of an empty list denies every device). Call it before the
    /// container's process runs; on v2 the rules stay in force after poc exits.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.plan(resources)?.iter().try_for_each(Write::perform)?;
        match resources.devices() {
            Some(rules) => self.apply_devices(rules),
            None => Ok(()),
        }
    }

    /// Device rules are set once, when the container is created: they are not in `plan`, which
    /// `update` shares, so an update can never reset them.
    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        match self {
            Manager::V1(m) => m.apply_devices(rules),
            Manager::V2(m) => Ok(devices::attach_program(m.leaf(), rules)?),
        }
    }

    fn plan(&self, resources: &LinuxResources) -> Result<Vec<Write>, CgroupError> {
        refuse_unsupported(resources, self.is_v2())?;
        match self {
            Manager::V1(m) => m.plan(resources),
            Manager::V2(m) => m.plan(resources),
        }
    }

    /// Changes the limits of a running container, all or nothing: each file's previous value is
    /// read first, and if a write is refused the ones before it are put back. Returns what changed
    /// and how long each write took in the kernel (as seen from here).
    pub fn update(&self, resources: &LinuxResources) -> Result<Vec<Change>, CgroupError> {
        let mut done: Vec<Change> = Vec::new();
        for write in self.plan(resources)? {
            // Reading the previous value can fail too (a missing file): either way, undo.
            let attempt = fs::read(&write.dir, &write.file).and_then(|previous| {
                let started = std::time::Instant::now();
                write.perform()?;
                Ok((previous, started.elapsed().as_secs_f64() * 1e6))
            });
            let (previous, micros) = match attempt {
                Ok(result) => result,
                Err(e) => {
                    for change in done.iter().rev() {
                        let _ = fs::write(&change.dir, &change.file, &change.previous);
                    }
                    return Err(e);
                }
            };
            done.push(Change {
                dir: write.dir,
                file: write.file,
                value: write.value,
                previous,
                micros,
            });
        }
        Ok(done)
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

/// Resources poc cannot set on this cgroup version are refused, never ignored: kernel memory
/// limits (gone from current kernels), RDMA, and on v2 what has no v2 file (swappiness, the OOM
/// killer switch, net_cls/net_prio, real-time CPU time, leaf weights); on v1 the raw `unified` map.
fn refuse_unsupported(resources: &LinuxResources, v2: bool) -> Result<(), CgroupError> {
    let refuse = |what: &str| Err(CgroupError::Unsupported(what.to_string()));
    let version = if v2 { "cgroup v2" } else { "cgroup v1" };
    if let Some(m) = resources.memory() {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return refuse("memory.kernel and memory.kernelTCP (kernel memory limits)");
        }
        if m.use_hierarchy() == Some(false) {
            return refuse("memory.useHierarchy false (the kernel always accounts hierarchically)");
        }
        if v2 && m.swappiness().is_some() {
            return refuse("memory.swappiness on cgroup v2");
        }
        if v2 && m.disable_oom_killer() == Some(true) {
            return refuse("memory.disableOOMKiller on cgroup v2");
        }
    }
    if let Some(c) = resources.cpu() {
        if v2 && (c.realtime_runtime().is_some() || c.realtime_period().is_some()) {
            return refuse("cpu.realtimeRuntime and realtimePeriod on cgroup v2");
        }
        if !v2 && c.idle().is_some() {
            return refuse("cpu.idle on cgroup v1");
        }
    }
    if let Some(b) = resources.block_io() {
        let leaf_weights = b.leaf_weight().is_some()
            || b.weight_device()
                .iter()
                .flatten()
                .any(|d| d.leaf_weight().is_some());
        if leaf_weights {
            return refuse("blockIO leafWeight");
        }
    }
    if v2 && resources.network().is_some() {
        return refuse("network (net_cls, net_prio) on cgroup v2");
    }
    if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return refuse("rdma");
    }
    if !v2 && resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return refuse(&format!("unified (raw cgroup v2 files) on {version}"));
    }
    Ok(())
}

/// One write of a limit: `value` into `dir/file`.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub dir: PathBuf,
    pub file: String,
    pub value: String,
}

impl Write {
    fn new(dir: &Path, file: impl Into<String>, value: &str) -> Self {
        Write {
            dir: dir.to_path_buf(),
            file: file.into(),
            value: value.to_string(),
        }
    }

    fn perform(&self) -> Result<(), CgroupError> {
        fs::write(&self.dir, &self.file, &self.value)
    }
}

/// A limit `update` changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub dir: PathBuf,
    pub file: String,
    pub value: String,
    pub previous: String,
    /// The write(2) as timed from user space, in microseconds.
    pub micros: f64,
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

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime shared:2 - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/memory rw,relatime shared:3 - cgroup cgroup rw,memory
28 25 0:26 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
29 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
30 25 0:28 /nested /mnt/other rw,relatime - cgroup cgroup rw,pids
";

    #[test]
    fn mountinfo_finds_v1_controllers_and_unified() {
        let h = Hierarchies::parse_mountinfo(HYBRID);
        assert_eq!(
            h.v1,
            vec![
                (PathBuf::from("/sys/fs/cgroup/cpu"), vec!["cpu".to_string()]),
                (
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    vec!["memory".to_string()]
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/systemd"),
                    vec!["name=systemd".to_string()]
                ),
            ]
        );
        assert_eq!(h.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let m = Manager::for_path(&h, "/poc/abc").unwrap();
        assert!(matches!(m, Manager::V1(_)));
        assert!(m
            .leaf_dirs()
            .contains(&PathBuf::from("/sys/fs/cgroup/unified/poc/abc")));
    }

    #[test]
    fn pure_v2_is_detected() {
        let h = Hierarchies::parse_mountinfo(
            "29 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let m = Manager::for_path(&h, "/poc/abc").unwrap();
        assert_eq!(m.leaf_dirs(), vec![PathBuf::from("/sys/fs/cgroup/poc/abc")]);
    }

    #[test]
    fn cgroup_paths_cannot_escape() {
        for bad in ["poc/x", "/", "/poc/../x", "/poc//x", ""] {
            assert!(relative_path(bad).is_err(), "{bad}");
        }
        assert_eq!(relative_path("/poc/x").unwrap(), PathBuf::from("poc/x"));
    }

    /// A v2 manager for `/poc/x` over a temporary directory, and the leaf's directory.
    fn fake_v2_leaf() -> (tempfile::TempDir, Manager, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let h = Hierarchies::parse_mountinfo(&format!(
            "1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n",
            tmp.path().display()
        ));
        let m = Manager::for_path(&h, "/poc/x").unwrap();
        let leaf = tmp.path().join("poc/x");
        std::fs::create_dir_all(&leaf).unwrap();
        (tmp, m, leaf)
    }

    #[test]
    fn an_update_refused_midway_puts_the_earlier_values_back() {
        use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};
        let (_tmp, m, leaf) = fake_v2_leaf();
        std::fs::write(leaf.join("memory.max"), "max").unwrap();
        // pids.max is missing: its write fails after memory.max was written.
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(9i64).build().unwrap())
            .build()
            .unwrap();
        let err = m.update(&resources).unwrap_err().to_string();
        assert!(err.contains("pids.max"), "{err}");
        assert_eq!(
            std::fs::read_to_string(leaf.join("memory.max")).unwrap(),
            "max"
        );
        std::fs::write(leaf.join("pids.max"), "max").unwrap();
        let changes = m.update(&resources).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].previous, "max");
        assert_eq!(std::fs::read_to_string(leaf.join("pids.max")).unwrap(), "9");
        assert_eq!(counter("low 0\nhigh 2\noom_kill 3\n", "oom_kill"), 3);
    }

    #[test]
    fn device_rules_are_applied_at_creation_and_never_by_an_update() {
        use oci_spec::runtime::LinuxResourcesBuilder;
        let (_tmp, m, leaf) = fake_v2_leaf();
        let resources = LinuxResourcesBuilder::default()
            .devices(devices::default_rules())
            .build()
            .unwrap();
        assert_eq!(m.update(&resources).unwrap(), Vec::new());
        // A temp dir is no cgroup: the program cannot be attached, and the error says where.
        let err = m.apply(&resources).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("device rules for {}: ", leaf.display())),
            "{err}"
        );
    }

    #[test]
    fn shares_map_to_weight() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        for weight in 1..=10_000 {
            assert_eq!(shares_to_weight(weight_to_shares(weight)), weight);
        }
    }
}
