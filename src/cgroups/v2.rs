//! cgroup v2 (pure unified hosts): one leaf directory, controllers enabled on the way down, v2 files.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::fs::{self, CgroupError};

/// Controllers a container's limits may need, in the order the kernel lists them.
const WANTED: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct V2Manager {
    root: PathBuf,
    leaf: PathBuf,
}

impl V2Manager {
    pub fn new(root: &Path, relative: &Path) -> Self {
        V2Manager {
            root: root.to_path_buf(),
            leaf: root.join(relative),
        }
    }

    /// Bytes in use and OOM kills so far.
    pub fn memory_report(&self) -> Option<(u64, u64)> {
        Some((self.memory_usage()?, self.oom_kills()?))
    }

    pub fn memory_usage(&self) -> Option<u64> {
        fs::read(&self.leaf, "memory.current").ok()?.parse().ok()
    }

    pub fn oom_kills(&self) -> Option<u64> {
        Some(super::counter(
            &fs::read(&self.leaf, "memory.events").ok()?,
            "oom_kill",
        ))
    }

    pub fn leaf(&self) -> &Path {
        &self.leaf
    }

    /// Creates the path down to the leaf and enables, in each inner node's `cgroup.subtree_control`,
    /// the wanted controllers its parent offers that are not enabled yet. Inner nodes hold no processes
    /// (the "no internal processes" rule), so only leaves get tasks.
    pub fn create(&self) -> Result<(), CgroupError> {
        fs::create_dir(&self.leaf)?;
        let mut inner: Vec<&Path> = self
            .leaf
            .ancestors()
            .skip(1)
            .take_while(|p| p.starts_with(&self.root))
            .collect();
        inner.reverse();
        for dir in inner {
            let available = fs::read(dir, "cgroup.controllers")?;
            let enabled = fs::read(dir, "cgroup.subtree_control")?;
            let missing: Vec<String> = WANTED
                .iter()
                .filter(|c| {
                    available.split(' ').any(|a| a == **c) && !enabled.split(' ').any(|e| e == **c)
                })
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                fs::write(dir, "cgroup.subtree_control", &missing.join(" "))?;
            }
        }
        Ok(())
    }

    /// The file writes that set `resources`.
    pub fn plan(&self, resources: &LinuxResources) -> Result<Vec<super::Write>, CgroupError> {
        let mut plan = Vec::new();
        let leaf = &self.leaf;
        if let Some(memory) = resources.memory() {
            plan.extend(memory_writes(leaf, memory)?);
        }
        if let Some(cpu) = resources.cpu() {
            if let Some(quota) = cpu.quota() {
                let period = cpu.period().unwrap_or(super::DEFAULT_CPU_PERIOD);
                plan.push(super::Write::new(
                    leaf,
                    "cpu.max",
                    &format!("{quota} {period}"),
                ));
            }
            if let Some(shares) = cpu.shares() {
                plan.push(super::Write::new(
                    leaf,
                    "cpu.weight",
                    &super::shares_to_weight(shares).to_string(),
                ));
            }
            if let Some(cpus) = cpu.cpus() {
                plan.push(super::Write::new(leaf, "cpuset.cpus", cpus));
            }
            if let Some(mems) = cpu.mems() {
                plan.push(super::Write::new(leaf, "cpuset.mems", mems));
            }
            if let Some(idle) = cpu.idle() {
                plan.push(super::Write::new(leaf, "cpu.idle", &idle.to_string()));
            }
            if let Some(burst) = cpu.burst() {
                plan.push(super::Write::new(leaf, "cpu.max.burst", &burst.to_string()));
            }
        }
        if let Some(pids) = resources.pids() {
            plan.push(super::Write::new(leaf, "pids.max", &max_or(pids.limit())));
        }
        if let Some(io) = resources.block_io() {
            plan.extend(block_io_writes(leaf, io));
        }
        for limit in resources.hugepage_limits().iter().flatten() {
            plan.push(super::Write::new(
                leaf,
                format!("hugetlb.{}.max", limit.page_size()),
                &max_or(limit.limit()),
            ));
        }
        for (file, value) in resources.unified().iter().flatten() {
            plan.push(unified_write(leaf, file, value)?);
        }
        Ok(plan)
    }
}

/// memory.max, memory.high and memory.swap.max.
fn memory_writes(
    leaf: &Path,
    memory: &oci_spec::runtime::LinuxMemory,
) -> Result<Vec<super::Write>, CgroupError> {
    let mut plan = Vec::new();
    if let Some(limit) = memory.limit() {
        plan.push(super::Write::new(leaf, "memory.max", &max_or(limit)));
    }
    if let Some(soft) = memory.reservation() {
        plan.push(super::Write::new(leaf, "memory.high", &max_or(soft)));
    }
    if let Some(swap) = memory.swap() {
        // OCI's swap is memory + swap; v2 limits the swap alone.
        let value = match (swap, memory.limit()) {
            (-1, _) => "max".to_string(),
            (swap, Some(limit)) if limit >= 0 && swap >= limit => (swap - limit).to_string(),
            _ => {
                return Err(CgroupError::Unsupported(
                    "memory.swap without a memory.limit at most as large, on cgroup v2".into(),
                ))
            }
        };
        plan.push(super::Write::new(leaf, "memory.swap.max", &value));
    }
    Ok(plan)
}

/// io.weight (default and per device) and io.max.
fn block_io_writes(leaf: &Path, io: &oci_spec::runtime::LinuxBlockIo) -> Vec<super::Write> {
    let mut plan = Vec::new();
    if let Some(weight) = io.weight() {
        plan.push(super::Write::new(
            leaf,
            "io.weight",
            &format!("default {}", blkio_to_io_weight(weight)),
        ));
    }
    for d in io.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            let value = format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(weight));
            plan.push(super::Write::new(leaf, "io.weight", &value));
        }
    }
    for (devices, key) in [
        (io.throttle_read_bps_device(), "rbps"),
        (io.throttle_write_bps_device(), "wbps"),
        (io.throttle_read_iops_device(), "riops"),
        (io.throttle_write_iops_device(), "wiops"),
    ] {
        for d in devices.iter().flatten() {
            let value = format!("{}:{} {key}={}", d.major(), d.minor(), d.rate());
            plan.push(super::Write::new(leaf, "io.max", &value));
        }
    }
    plan
}

/// A raw `unified` entry: one file of this leaf, a plain name, never a path, never the cgroup.*
/// core files.
fn unified_write(leaf: &Path, file: &str, value: &str) -> Result<super::Write, CgroupError> {
    if file.contains('/') || file.starts_with("cgroup.") || file.starts_with('.') {
        return Err(CgroupError::Unsupported(format!("unified key {file:?}")));
    }
    Ok(super::Write::new(leaf, file, value))
}

/// A limit, or "max" for OCI's -1 (unlimited).
fn max_or(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// blkio.weight (10..1000) to io.weight (1..10000), as runc and crun map it.
fn blkio_to_io_weight(weight: u16) -> u64 {
    1 + (u64::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    /// A fake cgroup2 tree: the root offers every controller and has only cpu enabled below it.
    fn fake_tree() -> (tempfile::TempDir, V2Manager) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu\n").unwrap();
        std::fs::create_dir_all(root.join("poc/leaf")).unwrap();
        std::fs::write(
            root.join("poc/cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("poc/cgroup.subtree_control"), "").unwrap();
        for f in [
            "memory.max",
            "memory.high",
            "cpu.max",
            "cpu.weight",
            "pids.max",
            "cpuset.cpus",
            "cgroup.procs",
        ] {
            std::fs::write(root.join("poc/leaf").join(f), "").unwrap();
        }
        let m = V2Manager::new(root, Path::new("poc/leaf"));
        (tmp, m)
    }

    #[test]
    fn create_enables_only_missing_controllers_on_inner_nodes() {
        let (tmp, m) = fake_tree();
        m.create().unwrap();
        let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+cpuset +io +memory +pids");
        assert_eq!(
            read("poc/cgroup.subtree_control"),
            "+cpuset +cpu +io +memory +pids"
        );
    }

    #[test]
    fn oci_swap_io_and_hugetlb_become_v2_values() {
        let (_tmp, m) = fake_tree();
        let resources: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":100,"swap":300},"pids":{"limit":-1},
                "blockIO":{"weight":10,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1000}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        )
        .unwrap();
        let writes: Vec<(String, String)> = m
            .plan(&resources)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        let has = |f: &str, v: &str| writes.contains(&(f.to_string(), v.to_string()));
        assert!(
            has("memory.max", "100") && has("memory.swap.max", "200"),
            "{writes:?}"
        );
        assert!(
            has("pids.max", "max") && has("io.weight", "default 1"),
            "{writes:?}"
        );
        assert!(
            has("io.max", "8:0 rbps=1000") && has("hugetlb.2MB.max", "4194304"),
            "{writes:?}"
        );
    }

    #[test]
    fn what_v2_cannot_do_is_refused_not_ignored() {
        let (_tmp, m) = fake_tree();
        for json in [
            r#"{"memory":{"swappiness":10}}"#,
            r#"{"memory":{"kernel":1000000}}"#,
            r#"{"network":{"classID":1}}"#,
            r#"{"memory":{"swap":300}}"#,
            r#"{"unified":{"../x":"1"}}"#,
        ] {
            let resources: LinuxResources = serde_json::from_str(json).unwrap();
            let manager = super::super::Manager::V2(m.clone());
            assert!(manager.update(&resources).is_err(), "{json} was accepted");
        }
    }

    #[test]
    fn limits_are_written_in_v2_files() {
        let (tmp, m) = fake_tree();
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .reservation(48i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(1024u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(30i64).build().unwrap())
            .build()
            .unwrap();
        for w in m.plan(&resources).unwrap() {
            w.perform().unwrap();
        }
        let read = |f: &str| std::fs::read_to_string(tmp.path().join("poc/leaf").join(f)).unwrap();
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.high"), (48u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("pids.max"), "30");
        assert_eq!(read("cpuset.cpus"), "0");
        super::super::fs::add_pid(m.leaf(), 42).unwrap();
        assert_eq!(read("cgroup.procs"), "42");
    }

    #[test]
    fn a_refused_write_names_file_and_value() {
        let (tmp, m) = fake_tree();
        std::fs::remove_file(tmp.path().join("poc/leaf/pids.max")).unwrap();
        let resources = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(7i64).build().unwrap())
            .build()
            .unwrap();
        let err = m
            .plan(&resources)
            .unwrap()
            .iter()
            .try_for_each(|w| w.perform())
            .unwrap_err()
            .to_string();
        assert!(err.contains("pids.max") && err.contains("\"7\""), "{err}");
    }
}
