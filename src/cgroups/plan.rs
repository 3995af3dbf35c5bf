//! Limits as file writes: `plan` turns LinuxResources into the writes each backend needs (refusing
//! what it cannot set), `apply` performs them at creation, `update` performs them on a running
//! container all or nothing, putting the earlier values back when one is refused.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use super::{devices, fs, CgroupError, Manager};

impl Manager {
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
    pub(super) fn new(dir: &Path, file: impl Into<String>, value: &str) -> Self {
        Write {
            dir: dir.to_path_buf(),
            file: file.into(),
            value: value.to_string(),
        }
    }

    pub(super) fn perform(&self) -> Result<(), CgroupError> {
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
