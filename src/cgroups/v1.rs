//! cgroup v1 (legacy and hybrid hosts): one directory per hierarchy, limits translated from v2 meanings,
//! plus a leaf in the unified hierarchy so BPF programs can filter by cgroup id as on v2 hosts.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::devices;
use super::fs::{self, CgroupError};
use super::{Hierarchies, Write};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct V1Manager {
    /// (leaf directory, controllers of its hierarchy)
    leaves: Vec<(PathBuf, Vec<String>)>,
    /// The cgroup2 root on a hybrid host (the unified leaf is `unified_root/relative`).
    unified_root: Option<PathBuf>,
    relative: PathBuf,
}

impl V1Manager {
    pub fn new(hierarchies: &Hierarchies, relative: &Path) -> Self {
        V1Manager {
            leaves: hierarchies
                .v1
                .iter()
                .map(|(mount, controllers)| (mount.join(relative), controllers.clone()))
                .collect(),
            unified_root: hierarchies.unified.clone(),
            relative: relative.to_path_buf(),
        }
    }

    pub fn unified_leaf(&self) -> Option<PathBuf> {
        self.unified_root
            .as_ref()
            .map(|root| root.join(&self.relative))
    }

    pub fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        self.leaf_of(controller).map(Path::to_path_buf)
    }

    pub fn task_files(&self) -> Vec<PathBuf> {
        self.leaves
            .iter()
            .map(|(dir, _)| dir.join("tasks"))
            .collect()
    }

    pub fn pids_tasks_file(&self) -> Option<PathBuf> {
        Some(self.leaf_of("pids")?.join("tasks"))
    }

    /// Bytes in use and OOM kills so far, from the memory hierarchy.
    pub fn memory_report(&self) -> Option<(u64, u64)> {
        Some((self.memory_usage()?, self.oom_kills()?))
    }

    pub fn memory_usage(&self) -> Option<u64> {
        let dir = self.leaf_of("memory")?;
        fs::read(dir, "memory.usage_in_bytes").ok()?.parse().ok()
    }

    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.leaf_of("memory")?;
        Some(super::counter(
            &fs::read(dir, "memory.oom_control").ok()?,
            "oom_kill",
        ))
    }

    pub fn leaf_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.leaves.iter().map(|(dir, _)| dir.clone()).collect();
        dirs.extend(self.unified_leaf());
        dirs
    }

    fn leaf_of(&self, controller: &str) -> Option<&Path> {
        self.leaves
            .iter()
            .find(|(_, controllers)| controllers.iter().any(|c| c == controller))
            .map(|(dir, _)| dir.as_path())
    }

    fn require(&self, controller: &'static str, what: &'static str) -> Result<&Path, CgroupError> {
        self.leaf_of(controller)
            .ok_or(CgroupError::MissingController { controller, what })
    }

    pub fn create(&self) -> Result<(), CgroupError> {
        for dir in self.leaf_dirs() {
            fs::create_dir(&dir)?;
        }
        if let Some(leaf) = self.leaf_of("cpuset") {
            init_cpuset(leaf, &self.relative)?;
        }
        Ok(())
    }

    /// The file writes that set `resources`, in the order the kernel needs them.
    pub fn plan(&self, resources: &LinuxResources) -> Result<Vec<Write>, CgroupError> {
        let mut plan = Vec::new();
        if let Some(memory) = resources.memory() {
            self.plan_memory(memory, &mut plan)?;
        }
        if let Some(cpu) = resources.cpu() {
            self.plan_cpu(cpu, &mut plan)?;
        }
        if let Some(pids) = resources.pids() {
            let limit = pids.limit();
            plan.push(Write::new(
                self.require("pids", "processes")?,
                "pids.max",
                &if limit < 0 {
                    "max".to_string()
                } else {
                    limit.to_string()
                },
            ));
        }
        if let Some(io) = resources.block_io() {
            self.plan_block_io(io, &mut plan)?;
        }
        for limit in resources.hugepage_limits().iter().flatten() {
            plan.push(Write::new(
                self.require("hugetlb", "huge pages")?,
                format!("hugetlb.{}.limit_in_bytes", limit.page_size()),
                &limit.limit().to_string(),
            ));
        }
        if let Some(network) = resources.network() {
            self.plan_network(network, &mut plan)?;
        }
        Ok(plan)
    }

    fn plan_memory(&self, memory: &LinuxMemory, plan: &mut Vec<Write>) -> Result<(), CgroupError> {
        let mut limit_writes = Vec::new();
        if let Some(limit) = memory.limit() {
            let dir = self.require("memory", "memory")?;
            limit_writes.push(Write::new(dir, "memory.limit_in_bytes", &limit.to_string()));
        }
        if let Some(swap) = memory.swap() {
            let dir = self.require("memory", "memory and swap")?;
            let memsw = Write::new(dir, "memory.memsw.limit_in_bytes", &swap.to_string());
            // The kernel keeps memsw >= limit at every step: raising both, memsw goes first.
            let current = fs::read(dir, "memory.memsw.limit_in_bytes")
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(i64::MAX);
            let raising = memory.limit().is_some_and(|l| l < 0 || l > current);
            if raising {
                limit_writes.insert(0, memsw);
            } else {
                limit_writes.push(memsw);
            }
        }
        plan.extend(limit_writes);
        if let Some(soft) = memory.reservation() {
            let dir = self.require("memory", "memory")?;
            plan.push(Write::new(
                dir,
                "memory.soft_limit_in_bytes",
                &soft.to_string(),
            ));
        }
        if let Some(swappiness) = memory.swappiness() {
            let dir = self.require("memory", "swappiness")?;
            plan.push(Write::new(
                dir,
                "memory.swappiness",
                &swappiness.to_string(),
            ));
        }
        if let Some(disable) = memory.disable_oom_killer() {
            let dir = self.require("memory", "the OOM killer")?;
            let value = if disable { "1" } else { "0" };
            plan.push(Write::new(dir, "memory.oom_control", value));
        }
        Ok(())
    }

    fn plan_cpu(&self, cpu: &LinuxCpu, plan: &mut Vec<Write>) -> Result<(), CgroupError> {
        if let Some(quota) = cpu.quota() {
            let dir = self.require("cpu", "CPU time")?;
            // The period first: the kernel checks the quota against the period already set.
            if let Some(period) = cpu.period() {
                plan.push(Write::new(dir, "cpu.cfs_period_us", &period.to_string()));
            }
            plan.push(Write::new(dir, "cpu.cfs_quota_us", &quota.to_string()));
        }
        if let Some(shares) = cpu.shares() {
            plan.push(Write::new(
                self.require("cpu", "CPU shares")?,
                "cpu.shares",
                &shares.to_string(),
            ));
        }
        if let Some(cpus) = cpu.cpus() {
            plan.push(Write::new(
                self.require("cpuset", "CPUs")?,
                "cpuset.cpus",
                cpus,
            ));
        }
        if let Some(mems) = cpu.mems() {
            plan.push(Write::new(
                self.require("cpuset", "memory nodes")?,
                "cpuset.mems",
                mems,
            ));
        }
        if let Some(burst) = cpu.burst() {
            plan.push(Write::new(
                self.require("cpu", "CPU burst")?,
                "cpu.cfs_burst_us",
                &burst.to_string(),
            ));
        }
        // The period before the runtime, as for the CFS quota.
        if let Some(period) = cpu.realtime_period() {
            plan.push(Write::new(
                self.require("cpu", "real-time CPU time")?,
                "cpu.rt_period_us",
                &period.to_string(),
            ));
        }
        if let Some(runtime) = cpu.realtime_runtime() {
            plan.push(Write::new(
                self.require("cpu", "real-time CPU time")?,
                "cpu.rt_runtime_us",
                &runtime.to_string(),
            ));
        }
        Ok(())
    }

    fn plan_block_io(&self, io: &LinuxBlockIo, plan: &mut Vec<Write>) -> Result<(), CgroupError> {
        if let Some(weight) = io.weight() {
            let dir = self.require("blkio", "block I/O weight")?;
            plan.push(Write::new(dir, "blkio.weight", &weight.to_string()));
        }
        for d in io.weight_device().iter().flatten() {
            if let Some(weight) = d.weight() {
                let dir = self.require("blkio", "block I/O weight")?;
                let value = format!("{}:{} {weight}", d.major(), d.minor());
                plan.push(Write::new(dir, "blkio.weight_device", &value));
            }
        }
        for (devices, file) in [
            (
                io.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
            ),
            (
                io.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
            ),
            (
                io.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
            ),
            (
                io.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
            ),
        ] {
            for d in devices.iter().flatten() {
                let dir = self.require("blkio", "block I/O bandwidth")?;
                let value = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                plan.push(Write::new(dir, file, &value));
            }
        }
        Ok(())
    }

    fn plan_network(
        &self,
        network: &LinuxNetwork,
        plan: &mut Vec<Write>,
    ) -> Result<(), CgroupError> {
        if let Some(class_id) = network.class_id() {
            plan.push(Write::new(
                self.require("net_cls", "the network class id")?,
                "net_cls.classid",
                &class_id.to_string(),
            ));
        }
        for p in network.priorities().iter().flatten() {
            plan.push(Write::new(
                self.require("net_prio", "network priorities")?,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            ));
        }
        Ok(())
    }

    /// The devices controller enforces the rules; without it (not mounted) the cgroup v2 program
    /// does, on the unified leaf. Never both: either one alone is the whole policy.
    pub fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        if let Some(dir) = self.leaf_of("devices") {
            return Ok(devices::write_v1(dir, rules)?);
        }
        match self.unified_leaf() {
            Some(leaf) => Ok(devices::attach_program(&leaf, rules)?),
            None => Err(CgroupError::MissingController {
                controller: "devices",
                what: "device access",
            }),
        }
    }

    /// The unified leaf only: the v1 leaves are joined through [`V1Manager::task_files`].
    pub fn add_task(&self, pid: i32, born_in_unified: bool) -> Result<(), CgroupError> {
        match self.unified_leaf() {
            Some(leaf) if !born_in_unified => fs::add_pid(&leaf, pid),
            _ => Ok(()),
        }
    }
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and refuses tasks until both are
/// set: copy them down from the parent at every level poc created.
fn init_cpuset(leaf: &Path, relative: &Path) -> Result<(), CgroupError> {
    let depth = relative.components().count();
    let mut levels: Vec<&Path> = leaf.ancestors().take(depth + 1).collect();
    levels.reverse();
    for pair in levels.windows(2) {
        let (parent, dir) = (pair[0], pair[1]);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(dir, file)?.is_empty() {
                fs::write(dir, file, &fs::read(parent, file)?)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    /// A fake v1 tree: cpu, memory, cpuset and pids hierarchies under a temp dir, files pre-created.
    fn fake_tree() -> (tempfile::TempDir, V1Manager) {
        let tmp = tempfile::tempdir().unwrap();
        let mut h = Hierarchies::default();
        for c in ["cpu", "memory", "cpuset", "pids"] {
            h.v1.push((tmp.path().join(c), vec![c.to_string()]));
        }
        h.unified = Some(tmp.path().join("unified"));
        let m = V1Manager::new(&h, Path::new("poc/leaf"));
        std::fs::create_dir_all(tmp.path().join("cpuset/poc/leaf")).unwrap();
        for dir in ["cpuset", "cpuset/poc", "cpuset/poc/leaf"] {
            let (cpus, mems) = if dir == "cpuset" {
                ("0-1", "0")
            } else {
                ("", "")
            };
            std::fs::write(tmp.path().join(dir).join("cpuset.cpus"), cpus).unwrap();
            std::fs::write(tmp.path().join(dir).join("cpuset.mems"), mems).unwrap();
        }
        (tmp, m)
    }

    fn touch(dir: &Path, files: &[&str]) {
        for f in files {
            std::fs::write(dir.join(f), "").unwrap();
        }
    }

    #[test]
    fn create_initialises_cpuset_down_the_path() {
        let (tmp, m) = fake_tree();
        m.create().unwrap();
        for dir in ["cpuset/poc", "cpuset/poc/leaf"] {
            assert_eq!(
                std::fs::read_to_string(tmp.path().join(dir).join("cpuset.cpus")).unwrap(),
                "0-1"
            );
            assert_eq!(
                std::fs::read_to_string(tmp.path().join(dir).join("cpuset.mems")).unwrap(),
                "0"
            );
        }
        assert!(tmp.path().join("unified/poc/leaf").is_dir());
        assert_eq!(m.leaf_dirs().len(), 5);
    }

    #[test]
    fn limits_are_translated_to_v1_files() {
        let (tmp, m) = fake_tree();
        m.create().unwrap();
        let root = tmp.path();
        touch(
            &root.join("memory/poc/leaf"),
            &["memory.limit_in_bytes", "memory.soft_limit_in_bytes"],
        );
        touch(
            &root.join("cpu/poc/leaf"),
            &["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"],
        );
        touch(&root.join("pids/poc/leaf"), &["pids.max"]);
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .reservation(32i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(200_000u64)
                    .shares(512u64)
                    .cpus("1")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
            .build()
            .unwrap();
        for w in m.plan(&resources).unwrap() {
            w.perform().unwrap();
        }
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(
            read("memory/poc/leaf/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read("memory/poc/leaf/memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        assert_eq!(read("cpu/poc/leaf/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/poc/leaf/cpu.cfs_period_us"), "200000");
        assert_eq!(read("cpu/poc/leaf/cpu.shares"), "512");
        assert_eq!(read("cpuset/poc/leaf/cpuset.cpus"), "1");
        assert_eq!(read("pids/poc/leaf/pids.max"), "20");
    }

    #[test]
    fn device_rules_go_to_the_devices_leaf_outside_the_plan() {
        use oci_spec::runtime::LinuxDeviceCgroup;
        let tmp = tempfile::tempdir().unwrap();
        let h = Hierarchies {
            v1: vec![(tmp.path().join("devices"), vec!["devices".into()])],
            unified: None,
        };
        let m = V1Manager::new(&h, Path::new("poc/x"));
        m.create().unwrap();
        let leaf = tmp.path().join("devices/poc/x");
        touch(&leaf, &["devices.allow", "devices.deny"]);
        let rules = devices::default_rules();
        m.apply_devices(&rules).unwrap();
        let read = |f: &str| std::fs::read_to_string(leaf.join(f)).unwrap();
        assert_eq!(read("devices.deny"), "a\n");
        assert_eq!(read("devices.allow").lines().count(), rules.len() - 1);
        assert!(read("devices.allow").starts_with("c *:* m\nb *:* m\nc 1:3 rwm\n"));
        // `update` shares the plan: it must never carry device rules.
        let resources = LinuxResourcesBuilder::default()
            .devices(rules)
            .build()
            .unwrap();
        assert_eq!(m.plan(&resources).unwrap(), Vec::new());

        let bare = V1Manager::new(&Hierarchies::default(), Path::new("poc/x"));
        let err = bare
            .apply_devices(&[LinuxDeviceCgroup::default()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("devices controller"), "{err}");
    }

    #[test]
    fn a_missing_controller_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let h = Hierarchies {
            v1: vec![(tmp.path().join("cpu"), vec!["cpu".into()])],
            unified: None,
        };
        let m = V1Manager::new(&h, Path::new("poc/x"));
        let resources = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5i64).build().unwrap())
            .build()
            .unwrap();
        let err = m.plan(&resources).unwrap_err().to_string();
        assert!(err.contains("pids controller"), "{err}");
    }
}
