//! The container's whole configuration as one OCI `Spec`, built from an image and the user's flags,
//! and the validation of every user value (memory, quotas, cpu lists). No I/O beyond reading what the
//! host has (limits, CPUs, its devices for --privileged) and a --security-opt seccomp profile file.
//! Here what a request holds; `parse` checks each flag's value, `defaults` builds the `Spec` from
//! Docker's defaults and the request.

use std::path::PathBuf;

use crate::cgroups::DEFAULT_CPU_PERIOD;
use crate::network::NetworkMode;

mod defaults;
mod parse;
pub mod security;

#[cfg(test)]
pub use defaults::DEFAULT_CAPABILITIES;
pub use defaults::{build_spec, default_devices, resources, set_env, set_process_user};
pub use parse::{
    container_path, parse_cpu_period, parse_cpu_quota, parse_cpu_shares, parse_cpu_weight,
    parse_cpus, parse_cpuset, parse_env, parse_hostname, parse_memory, parse_nice, parse_pids,
    parse_volume, parse_workdir,
};
pub use security::{CapName, DeviceRequest, SeccompChoice, Tmpfs};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("building the container configuration: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
    #[error("--mem-soft ({soft}) must not be above --mem ({hard})")]
    SoftAboveHard { soft: String, hard: String },
    #[error("--security-opt seccomp={path}: {why}")]
    Seccomp { path: String, why: String },
    #[error("{flag} {bytes} is too large: sizes must be below 8388608t (2^63 bytes)")]
    TooLarge { flag: &'static str, bytes: u64 },
}

/// One `-v HOST:CONTAINER[:ro|rw]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

/// CPU bandwidth: `quota` microseconds of CPU time per `period`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuQuota {
    pub quota: u64,
    pub period: u64,
}

impl CpuQuota {
    pub fn from_cpus(cpus: f64) -> Self {
        CpuQuota {
            quota: (cpus * DEFAULT_CPU_PERIOD as f64).round() as u64,
            period: DEFAULT_CPU_PERIOD,
        }
    }
}

/// The resource limits a user can ask for, in cgroup v2 meanings.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub memory: Option<u64>,
    pub memory_soft: Option<u64>,
    pub cpu: Option<CpuQuota>,
    pub cpu_shares: Option<u64>,
    pub pids: Option<u64>,
    pub cpuset: Option<String>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Takes every limit `other` sets (an update), keeping the rest.
    pub fn merge(&mut self, other: &Limits) {
        self.memory = other.memory.or(self.memory);
        self.memory_soft = other.memory_soft.or(self.memory_soft);
        self.cpu = other.cpu.or(self.cpu);
        self.cpu_shares = other.cpu_shares.or(self.cpu_shares);
        self.pids = other.pids.or(self.pids);
        self.cpuset = other.cpuset.clone().or(self.cpuset.take());
    }
}

/// Everything `poc run` was asked for, validated.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub name: Option<String>,
    pub detach: bool,
    pub remove: bool,
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub volumes: Vec<Volume>,
    pub hostname: Option<String>,
    pub limits: Limits,
    pub nice: Option<i32>,
    pub network: NetworkMode,
    pub ports: Vec<crate::network::PortMapping>,
    pub dns: Vec<std::net::IpAddr>,
    /// `--user`: name, uid, uid:gid or name:group, looked up in the image (None: root).
    pub user: Option<String>,
    pub security: Security,
    pub image: String,
    pub command: Vec<String>,
}

/// Docker's security flags, parsed (see `security`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub cap_add: Vec<CapName>,
    pub cap_drop: Vec<CapName>,
    /// Every capability, every device, no seccomp, no masked paths, /sys and cgroups writable.
    pub privileged: bool,
    pub seccomp: SeccompChoice,
    /// poc sets no_new_privs unless told otherwise (Docker does not by default).
    pub no_new_privileges: bool,
    pub read_only: bool,
    pub devices: Vec<DeviceRequest>,
    pub tmpfs: Vec<Tmpfs>,
    pub ulimits: Vec<oci_spec::runtime::PosixRlimit>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            privileged: false,
            seccomp: SeccompChoice::Default,
            no_new_privileges: true,
            read_only: false,
            devices: Vec::new(),
            tmpfs: Vec::new(),
            ulimits: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
