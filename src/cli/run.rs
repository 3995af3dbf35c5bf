//! `poc run [flags] IMAGE [CMD...]`: flags become a RunRequest; the container module does the rest.

use std::path::PathBuf;

use crate::config::Paths;
use crate::network::NetworkMode;
use oci_spec::runtime::PosixRlimit;

use crate::cgroups::DEFAULT_CPU_PERIOD;
use crate::spec::security::{self, SecurityOpt};
use crate::spec::{
    self, CapName, CpuQuota, DeviceRequest, Limits, RunRequest, Security, Tmpfs, Volume,
};

/// What `run` and `exec` both say about the process they start.
#[derive(clap::Args)]
pub struct ProcessFlags {
    /// Keep stdin open and connected to the container.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal for the container.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy poc's own).
    #[arg(short, long, value_parser = spec::parse_env)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_parser = spec::parse_workdir)]
    pub workdir: Option<PathBuf>,
}

/// The resource limits `run` sets and `update` changes, in cgroup v2 meanings.
#[derive(clap::Args)]
pub struct LimitFlags {
    /// Memory limit (memory.max; v1 memory.limit_in_bytes), e.g. 64M, 1.5G.
    #[arg(short, long = "mem", visible_alias = "memory", value_name = "SIZE", allow_hyphen_values = true, value_parser = spec::parse_memory)]
    pub mem: Option<u64>,
    /// Soft memory limit (memory.high; v1 memory.soft_limit_in_bytes).
    #[arg(long, visible_alias = "memory-reservation", value_name = "SIZE", allow_hyphen_values = true, value_parser = spec::parse_memory)]
    pub mem_soft: Option<u64>,
    /// CPUs the container may use, e.g. 1.5 (quota = N x 100000 us per 100000 us).
    #[arg(long, allow_hyphen_values = true, value_parser = spec::parse_cpus, conflicts_with = "cpu")]
    pub cpus: Option<f64>,
    /// CPU quota in microseconds per period (cpu.max; v1 cpu.cfs_quota_us).
    #[arg(long, value_name = "QUOTA_US", allow_hyphen_values = true, value_parser = spec::parse_cpu_quota)]
    pub cpu: Option<u64>,
    /// CPU period in microseconds (default 100000).
    #[arg(long, value_name = "US", allow_hyphen_values = true, value_parser = spec::parse_cpu_period, requires = "cpu", conflicts_with = "cpus")]
    pub cpu_period: Option<u64>,
    /// Relative CPU weight, in cgroup v1 shares (cpu.weight on v2).
    #[arg(short = 'c', long, allow_hyphen_values = true, value_parser = spec::parse_cpu_shares, conflicts_with = "cpu_weight")]
    pub cpu_shares: Option<u64>,
    /// Relative CPU weight in cgroup v2 units (1-10000, default 100).
    #[arg(long, allow_hyphen_values = true, value_parser = spec::parse_cpu_weight)]
    pub cpu_weight: Option<u64>,
    /// Most processes the container may hold (pids.max).
    #[arg(long, visible_alias = "pids-limit", allow_hyphen_values = true, value_parser = spec::parse_pids)]
    pub pids: Option<u64>,
    /// CPUs the container may run on, e.g. 0-1 or 0,2.
    #[arg(long, visible_alias = "cpuset-cpus", value_parser = spec::parse_cpuset)]
    pub cpuset: Option<String>,
}

impl LimitFlags {
    pub fn to_limits(&self) -> Limits {
        let cpu = match (self.cpus, self.cpu) {
            (Some(cpus), _) => Some(CpuQuota::from_cpus(cpus)),
            (None, Some(quota)) => Some(CpuQuota {
                quota,
                period: self.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD),
            }),
            (None, None) => None,
        };
        Limits {
            memory: self.mem,
            memory_soft: self.mem_soft,
            cpu,
            cpu_shares: self
                .cpu_shares
                .or(self.cpu_weight.map(crate::cgroups::weight_to_shares)),
            pids: self.pids,
            cpuset: self.cpuset.clone(),
        }
    }
}

/// Docker's security flags.
#[derive(clap::Args)]
pub struct SecurityFlags {
    /// Add a capability (NET_ADMIN, SYS_PTRACE..., or ALL).
    #[arg(long, value_name = "CAP", value_parser = security::parse_capability)]
    cap_add: Vec<CapName>,
    /// Drop a capability (or ALL).
    #[arg(long, value_name = "CAP", value_parser = security::parse_capability)]
    cap_drop: Vec<CapName>,
    /// Every capability and device, no seccomp filter, no masked paths, writable /sys.
    #[arg(long)]
    privileged: bool,
    /// seccomp=unconfined, seccomp=PROFILE.json (Docker's format), no-new-privileges[=false].
    #[arg(long, value_name = "OPT", value_parser = security::parse_security_opt)]
    security_opt: Vec<SecurityOpt>,
    /// Give a host device: HOST[:CONTAINER][:rwm].
    #[arg(long, value_parser = security::parse_device)]
    device: Vec<DeviceRequest>,
    /// Mount the container's root read-only.
    #[arg(long)]
    read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS] (size=64m,mode=1777...).
    #[arg(long, value_parser = security::parse_tmpfs)]
    tmpfs: Vec<Tmpfs>,
    /// Set a resource limit: NAME=SOFT[:HARD] (nofile=1024:2048, core=0, nproc=512...).
    #[arg(long, value_parser = security::parse_ulimit)]
    ulimit: Vec<PosixRlimit>,
}

impl SecurityFlags {
    fn into_security(self) -> Security {
        let mut sec = Security {
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            read_only: self.read_only,
            devices: self.device,
            tmpfs: self.tmpfs,
            ulimits: self.ulimit,
            ..Security::default()
        };
        for opt in self.security_opt {
            match opt {
                SecurityOpt::Seccomp(choice) => sec.seccomp = choice,
                SecurityOpt::NoNewPrivileges(on) => sec.no_new_privileges = on,
            }
        }
        sec
    }
}

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Give the container a name.
    #[arg(long, value_parser = crate::names::parse_name)]
    name: Option<String>,
    /// Run in the background: print the container's id and return; a monitor stays with it.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    #[command(flatten)]
    process: ProcessFlags,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short, long, value_parser = spec::parse_volume)]
    volume: Vec<Volume>,
    /// Container host name (default: the short id).
    #[arg(long, value_parser = spec::parse_hostname)]
    hostname: Option<String>,
    #[command(flatten)]
    limits: LimitFlags,
    /// Nice value of the container's process (-20 to 19).
    #[arg(long, allow_hyphen_values = true, value_parser = spec::parse_nice)]
    nice: Option<i32>,
    /// bridge (default): poc's bridge with NAT; none: loopback only; host: the host's network;
    /// NAME: a network made by `poc network create`.
    #[arg(long, value_parser = crate::network::parse_network_mode, default_value = "bridge")]
    network: NetworkMode,
    /// Publish container ports: [[IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp], ports or equal ranges
    /// (8000-8010:80-90); without HOST_PORT, a free host port is picked (see `poc port`).
    #[arg(short, long, value_parser = crate::network::parse_ports)]
    publish: Vec<crate::network::PortSpec>,
    /// Docker's "publish every exposed port": refused, poc's images declare no exposed ports.
    #[arg(short = 'P', long, hide = true)]
    publish_all: bool,
    /// DNS server for the container's /etc/resolv.conf (repeatable).
    #[arg(long)]
    dns: Vec<std::net::IpAddr>,
    /// User: name, uid, uid:gid or name:group (looked up in the image).
    #[arg(short, long)]
    user: Option<String>,
    #[command(flatten)]
    security: SecurityFlags,
    /// Image to run.
    image: String,
    /// Command and arguments (default: the image's, /bin/sh).
    command: Vec<String>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    if args.publish_all {
        return Err(anyhow::anyhow!(
            "-P/--publish-all: poc's images declare no exposed ports; publish them with -p [[IP:]HOST_PORT:]CONTAINER_PORT"
        )
        .into());
    }
    if !args.publish.is_empty() && !args.network.joins_bridge() {
        return Err(anyhow::anyhow!(
            "--publish needs a bridge network (the default one or a named one), not --network none or host"
        )
        .into());
    }
    let request = RunRequest {
        name: args.name,
        detach: args.detach,
        remove: args.rm,
        interactive: args.process.interactive,
        tty: args.process.tty,
        env: args.process.env,
        workdir: args.process.workdir,
        volumes: args.volume,
        hostname: args.hostname,
        limits: args.limits.to_limits(),
        nice: args.nice,
        network: args.network,
        ports: args.publish.into_iter().flat_map(|p| p.0).collect(),
        dns: args.dns,
        user: args.user,
        security: args.security.into_security(),
        image: args.image,
        command: args.command,
    };
    crate::container::run(paths, request).map_err(|e| super::Exit {
        code: e.exit_code(),
        error: e.into(),
    })
}
