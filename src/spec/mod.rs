//! The container's whole configuration as one OCI `Spec`, built from an image and the user's flags,
//! and the validation of every user value (sizes, quotas, cpu lists). No I/O beyond reading what the
//! host has (limits, CPUs, its devices for --privileged) and a --security-opt seccomp profile file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSchedulerPolicy, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, SchedulerBuilder, Spec, SpecBuilder,
};

use crate::network::NetworkMode;
use crate::units::parse_size;

pub mod security;

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

/// Smallest memory limit accepted, as Docker does: below this a shell cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// A memory limit: a size of at least [`MIN_MEMORY`].
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_MEMORY {
        return Err(format!("'{text}' is below the minimum memory limit of 6M"));
    }
    Ok(bytes)
}

/// `--cpus 1.5`: a fraction of the host's CPUs, from 0.01 up to the number online.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of CPUs (example: 1.5)"))?;
    let online = online_cpus().len() as f64;
    if !(cpus >= 0.01 && cpus <= online) {
        return Err(format!(
            "'{text}' is out of range: from 0.01 to {online:.2}, as there are {online} CPUs online"
        ));
    }
    Ok(cpus)
}

/// `--cpu 50000`: a CFS quota in microseconds per period (the kernel's minimum is 1000).
pub fn parse_cpu_quota(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1000, 1_000_000_000, "microseconds")
}

/// `--cpu-period 100000`: the CFS period in microseconds (the kernel accepts 1 ms to 1 s).
pub fn parse_cpu_period(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1000, 1_000_000, "microseconds")
}

/// `--pids 100`: the most processes the container may hold at once.
pub fn parse_pids(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1, 4_194_304, "processes")
}

/// `--cpu-shares 512`: relative CPU weight in cgroup v1 units (2 to 262144, default 1024).
pub fn parse_cpu_shares(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 2, 262_144, "shares")
}

/// `--cpu-weight 50`: relative CPU weight in cgroup v2 units (1 to 10000, default 100).
pub fn parse_cpu_weight(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1, 10_000, "(weight)")
}

/// `--nice 10`: the process's nice value.
pub fn parse_nice(text: &str) -> Result<i32, String> {
    let nice: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))?;
    if !(-20..=19).contains(&nice) {
        return Err(format!("'{text}' is out of range: from -20 to 19"));
    }
    Ok(nice)
}

fn parse_bounded_u64(text: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a positive whole number of {what}"))?;
    if !(min..=max).contains(&value) {
        return Err(format!(
            "'{text}' is out of range: from {min} to {max} {what}"
        ));
    }
    Ok(value)
}

/// Parses a cpu list like `0-2,4` into the set of CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<BTreeSet<u32>, String> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',') {
        let bad = || format!("'{text}' is not a CPU list (examples: 0, 0-1, 0,2)");
        let (low, high) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if low > high {
            return Err(bad());
        }
        cpus.extend(low..=high);
    }
    Ok(cpus)
}

/// `--cpuset 0-1`: a CPU list whose CPUs are all online.
pub fn parse_cpuset(text: &str) -> Result<String, String> {
    let wanted = parse_cpu_list(text)?;
    let online = online_cpus();
    if let Some(missing) = wanted.iter().find(|cpu| !online.contains(cpu)) {
        return Err(format!(
            "CPU {missing} is not online (online: {})",
            format_cpu_list(&online)
        ));
    }
    Ok(format_cpu_list(&wanted))
}

fn format_cpu_list(cpus: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The CPUs the kernel has online, from sysfs; falls back to the count the scheduler reports.
pub fn online_cpus() -> BTreeSet<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s).ok())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            (0..n).collect()
        })
}

/// `-e KEY=VALUE` (or `-e KEY`, which takes the value from poc's own environment as Docker does).
pub fn parse_env(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(text.to_string()),
        Some(_) => Err(format!("'{text}' has an empty variable name")),
        None if text.is_empty() => Err("an empty variable name".to_string()),
        None => {
            Ok(std::env::var(text).map_or_else(|_| text.to_string(), |v| format!("{text}={v}")))
        }
    }
}

/// `--name web`: Docker's rule, so names are safe as file names and in `ps` columns.
pub fn parse_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= 128
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(format!(
            "'{text}' is not a valid name: use letters, digits, '_', '.', '-', starting with a letter or digit"
        ));
    }
    Ok(text.to_string())
}

/// `--hostname h`: a valid host name (RFC 1123 labels, at most 64 bytes as the kernel allows).
pub fn parse_hostname(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(format!("'{text}' is not a valid host name"));
    }
    Ok(text.to_string())
}

/// `-w /dir`: an absolute path inside the container.
pub fn parse_workdir(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("'{text}' must be an absolute path"));
    }
    Ok(PathBuf::from(text))
}

/// One `-v HOST:CONTAINER[:ro|rw]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

pub fn parse_volume(text: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        [_, _, mode] => return Err(format!("unknown mode '{mode}' in '{text}' (use ro or rw)")),
        _ => return Err(format!("'{text}' is not HOST:CONTAINER[:ro]")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("'{text}': both paths must be absolute"));
    }
    let container = container_path(container).map_err(|why| format!("'{text}': {why}"))?;
    let host = Path::new(host);
    if !host.exists() {
        return Err(format!(
            "'{text}': host path {} does not exist",
            host.display()
        ));
    }
    Ok(Volume {
        host: host.to_path_buf(),
        container,
        read_only,
    })
}

/// A path inside the container that a volume or tmpfs may cover: absolute, not `/`, and not under
/// /proc, /sys or /dev, which are the runtime's to mount (as runc refuses them).
pub fn container_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("{text} must be an absolute path"));
    }
    let path = normalize(text);
    if path == Path::new("/") {
        return Err("cannot mount over the container's root".into());
    }
    match ["/proc", "/sys", "/dev"]
        .iter()
        .find(|k| path.starts_with(k))
    {
        Some(kernel) => Err(format!(
            "{} is under {kernel}, which a volume may not cover",
            path.display()
        )),
        None => Ok(path),
    }
}

/// An absolute path with `.` and `..` worked out as the kernel would from `/` (symlinks aside).
fn normalize(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in Path::new(path).components() {
        match part {
            std::path::Component::Normal(name) => out.push(name),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
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

/// What an image contributes to a container's process.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
}

impl Default for ImageDefaults {
    fn default() -> Self {
        ImageDefaults {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["/bin/sh".into()],
        }
    }
}

/// Docker's default capability set: what a container's root keeps.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Host paths under /proc and /sys that leak host information: hidden (Docker's list).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Files poc writes for each container and binds into it.
pub const GENERATED_ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// Builds the container's Spec. `rootfs` is the directory the container's root will be;
/// `etc_dir` holds the generated /etc files.
pub fn build_spec(
    req: &RunRequest,
    image: &ImageDefaults,
    id: &str,
    rootfs: &Path,
    etc_dir: &Path,
    cgroups_path: &str,
) -> Result<Spec, SpecError> {
    let args = if req.command.is_empty() {
        image.cmd.clone()
    } else {
        req.command.clone()
    };
    let hostname = req.hostname.clone().unwrap_or_else(|| id[..12].to_string());

    let mut env = image.env.clone();
    env.push(format!("HOSTNAME={hostname}"));
    if req.tty {
        env.push("TERM=xterm".into());
    }
    for var in &req.env {
        set_env(&mut env, var);
    }

    let sec = &req.security;
    let kept = container_capabilities(sec);
    let seccomp = seccomp_profile(sec, &kept)?;
    let capabilities = kept
        .into_iter()
        .collect::<oci_spec::runtime::Capabilities>();
    let mut process = ProcessBuilder::default()
        .terminal(req.tty)
        .args(args)
        .env(env)
        .cwd(req.workdir.clone().unwrap_or_else(|| PathBuf::from("/")))
        .no_new_privileges(sec.no_new_privileges)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(capabilities.clone())
                .effective(capabilities.clone())
                .permitted(capabilities)
                .inheritable(oci_spec::runtime::Capabilities::new())
                .ambient(oci_spec::runtime::Capabilities::new())
                .build()?,
        );
    if let Some(nice) = req.nice {
        process = process.scheduler(
            SchedulerBuilder::default()
                .policy(LinuxSchedulerPolicy::SchedOther)
                .nice(nice)
                .build()?,
        );
    }
    let mut process = process.build()?;
    process.set_rlimits((!sec.ulimits.is_empty()).then(|| sec.ulimits.clone()));

    let mut mounts = default_mounts(sec.privileged)?;
    for tmpfs in &sec.tmpfs {
        let options: Vec<&str> = tmpfs.options.iter().map(String::as_str).collect();
        mounts.push(mount(
            &tmpfs.path.to_string_lossy(),
            "tmpfs",
            "tmpfs",
            &options,
        )?);
    }
    for volume in &req.volumes {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if volume.read_only {
            options.push("ro".into());
        }
        mounts.push(bind_mount(&volume.host, &volume.container, options)?);
    }
    for file in GENERATED_ETC_FILES {
        mounts.push(bind_mount(
            &etc_dir.join(file),
            &Path::new("/etc").join(file),
            vec!["bind".into(), "rprivate".into()],
        )?);
    }

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if req.network != NetworkMode::Host {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;

    // A privileged container sees the host's /proc and /sys as they are.
    let (masked, read_only): (&[&str], &[&str]) = if sec.privileged {
        (&[], &[])
    } else {
        (&MASKED_PATHS, &READONLY_PATHS)
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources(&req.limits)?)
        .cgroups_path(PathBuf::from(cgroups_path))
        .devices(container_devices(sec)?)
        .masked_paths(masked.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(read_only.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .build()?;
    linux.set_seccomp(seccomp);
    if let Some(resources) = linux.resources_mut().as_mut() {
        resources.set_devices(Some(device_rules(sec)));
    }

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .hostname(hostname)
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(sec.read_only)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

/// The OCI user for resolved ids (the primary group first among the supplementary ones).
pub fn user(ids: &crate::security::user::UserIds) -> oci_spec::runtime::User {
    let mut user = oci_spec::runtime::User::default();
    user.set_uid(ids.uid);
    user.set_gid(ids.gid);
    user.set_additional_gids(Some(ids.groups.clone()));
    user
}

/// Sets the process's user. As Docker does, a user other than root keeps only the bounding set:
/// no effective, permitted, inheritable or ambient capabilities (the init applies the Spec's sets
/// for any user, as runc does, so that is where a non-root user's capabilities are decided).
pub fn set_process_user(
    process: &mut oci_spec::runtime::Process,
    ids: &crate::security::user::UserIds,
) {
    process.set_user(user(ids));
    if ids.uid != 0 {
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_effective(None)
                .set_permitted(None)
                .set_inheritable(None)
                .set_ambient(None);
            process.set_capabilities(Some(caps));
        }
    }
}

/// Sets or replaces `KEY=VALUE` in an environment list.
pub fn set_env(env: &mut Vec<String>, var: &str) {
    let key = var.split('=').next().unwrap_or(var);
    env.retain(|existing| existing.split('=').next() != Some(key));
    env.push(var.to_string());
}

pub fn resources(limits: &Limits) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    if let (Some(soft), Some(hard)) = (limits.memory_soft, limits.memory) {
        if soft > hard {
            return Err(SpecError::SoftAboveHard {
                soft: soft.to_string(),
                hard: hard.to_string(),
            });
        }
    }
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(max) = limits.memory {
        memory = memory.limit(signed(max, "--mem")?);
    }
    if let Some(soft) = limits.memory_soft {
        memory = memory.reservation(signed(soft, "--mem-soft")?);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(quota) = limits.cpu {
        cpu = cpu.quota(quota.quota as i64).period(quota.period);
    }
    if let Some(shares) = limits.cpu_shares {
        cpu = cpu.shares(shares);
    }
    if let Some(cpus) = &limits.cpuset {
        cpu = cpu.cpus(cpus.clone());
    }
    let mut resources = LinuxResourcesBuilder::default()
        .memory(memory.build()?)
        .cpu(cpu.build()?);
    if let Some(pids) = limits.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids as i64).build()?);
    }
    Ok(resources.build()?)
}

/// A size as the OCI spec holds it, signed (the flag parsers refuse anything larger already).
fn signed(bytes: u64, flag: &'static str) -> Result<i64, SpecError> {
    i64::try_from(bytes).map_err(|_| SpecError::TooLarge { flag, bytes })
}

fn bind_mount(source: &Path, destination: &Path, options: Vec<String>) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Docker's default capabilities, changed by --cap-add, --cap-drop and --privileged (which may
/// only give what poc itself holds: this host may lack some, such as CAP_SYS_RESOURCE).
fn container_capabilities(sec: &Security) -> Vec<Capability> {
    let available = if sec.privileged || sec.cap_add.contains(&CapName::All) {
        crate::security::own_capabilities()
    } else {
        Vec::new()
    };
    security::capabilities(
        &DEFAULT_CAPABILITIES,
        &available,
        sec.privileged,
        &sec.cap_add,
        &sec.cap_drop,
    )
}

/// The seccomp profile, resolved for the capabilities the container keeps as Docker does: its
/// default, a Docker-format file (`--security-opt seccomp=FILE`, read here), or none.
fn seccomp_profile(
    sec: &Security,
    caps: &[Capability],
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, SpecError> {
    use crate::security::seccomp;
    if sec.privileged {
        return Ok(None);
    }
    match &sec.seccomp {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::Default => Ok(Some(seccomp::default_profile(caps))),
        SeccompChoice::Profile(path) => {
            let err = |why: String| SpecError::Seccomp {
                path: path.display().to_string(),
                why,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            seccomp::docker_profile(&text, caps)
                .map(Some)
                .map_err(|e| err(e.to_string()))
        }
    }
}

/// The device cgroup's rules: Docker's default (deny all but the standard nodes, mknod of any)
/// plus each --device with its access; every device when privileged.
fn device_rules(sec: &Security) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use crate::cgroups::devices::rule;
    if sec.privileged {
        return vec![rule(true, LinuxDeviceType::A, None, None, "rwm")];
    }
    let mut rules = crate::cgroups::devices::default_rules();
    for d in &sec.devices {
        rules.push(rule(true, d.typ, Some(d.major), Some(d.minor), &d.access));
    }
    rules
}

/// The default nodes, the --device ones, and every host device when privileged.
fn container_devices(sec: &Security) -> Result<Vec<LinuxDevice>, SpecError> {
    let mut devices = default_devices()?;
    let host = if sec.privileged {
        security::host_devices()
    } else {
        Vec::new()
    };
    for d in host.iter().chain(&sec.devices) {
        if devices.iter().any(|known| known.path() == &d.container) {
            continue;
        }
        devices.push(
            LinuxDeviceBuilder::default()
                .path(d.container.clone())
                .typ(d.typ)
                .major(d.major)
                .minor(d.minor)
                .file_mode(d.mode)
                .uid(0u32)
                .gid(0u32)
                .build()?,
        );
    }
    Ok(devices)
}

/// The kernel filesystems every container gets, as Docker mounts them (writable /sys and cgroups
/// only when privileged).
fn default_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let ro = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro])?,
        // The container's own cgroups, read-only (the JVM, Go and .NET size themselves from them).
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro],
        )?,
    ])
}

/// The standard device nodes: null, zero, full, random, urandom, tty.
pub fn default_devices() -> Result<Vec<LinuxDevice>, SpecError> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(name, major, minor)| {
        Ok(LinuxDeviceBuilder::default()
            .path(PathBuf::from("/dev").join(name))
            .typ(LinuxDeviceType::C)
            .major(*major as i64)
            .minor(*minor as i64)
            .file_mode(0o666u32)
            .uid(0u32)
            .gid(0u32)
            .build()?)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_have_a_minimum_and_a_maximum() {
        assert!(parse_memory("1M").unwrap_err().contains("minimum"));
        assert_eq!(parse_memory("64M"), Ok(64 << 20));
        assert!(parse_memory("9000000t").unwrap_err().contains("too large"));
    }

    #[test]
    fn cpu_values_are_checked() {
        assert!(parse_cpus("0.5").is_ok());
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("1000000").unwrap_err().contains("online"));
        assert!(parse_cpus("abc").is_err());
        assert_eq!(
            CpuQuota::from_cpus(1.5),
            CpuQuota {
                quota: 150_000,
                period: 100_000
            }
        );
        assert!(parse_cpu_quota("999").is_err());
        assert_eq!(parse_cpu_quota("50000"), Ok(50_000));
        assert!(parse_cpu_period("2000000").is_err());
        assert!(parse_pids("0").is_err());
        assert!(parse_nice("20").is_err());
        assert_eq!(parse_nice("-5"), Ok(-5));
    }

    #[test]
    fn cpu_lists_parse_and_normalise() {
        assert_eq!(
            parse_cpu_list("0-2,4").unwrap(),
            BTreeSet::from([0, 1, 2, 4])
        );
        assert_eq!(
            format_cpu_list(&BTreeSet::from([0, 1, 2, 4, 6, 7])),
            "0-2,4,6-7"
        );
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpuset("0").is_ok());
        assert!(parse_cpuset("4095").unwrap_err().contains("not online"));
    }

    #[test]
    fn names_hostnames_volumes_env() {
        assert!(parse_name("web-1.a_b").is_ok());
        assert!(parse_name("-web").is_err());
        assert!(parse_name("a/b").is_err());
        assert!(parse_hostname("box.local").is_ok());
        assert!(parse_hostname("bad_host").is_err());
        assert!(parse_hostname("-x").is_err());
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.container, PathBuf::from("/data"));
        assert!(parse_volume("relative:/data").is_err());
        assert!(parse_volume("/tmp:/data:xx").is_err());
        assert!(parse_volume("/no/such/dir/poc:/data")
            .unwrap_err()
            .contains("does not exist"));
        for kernel in [
            "/proc",
            "/proc/sys",
            "/sys/fs/cgroup",
            "/dev",
            "/dev/shm",
            "/x/../proc",
        ] {
            let err = parse_volume(&format!("/tmp:{kernel}")).unwrap_err();
            assert!(err.contains("may not cover"), "{kernel}: {err}");
        }
        assert_eq!(
            parse_volume("/tmp:/data/./x/../y").unwrap().container,
            PathBuf::from("/data/y")
        );
        assert!(parse_volume("/tmp:/devices").is_ok());
        assert!(parse_env("=x").is_err());
        assert_eq!(parse_env("A=b=c"), Ok("A=b=c".into()));
        assert!(parse_workdir("rel").is_err());
    }

    fn request() -> RunRequest {
        RunRequest {
            name: None,
            detach: false,
            remove: true,
            interactive: false,
            tty: false,
            env: vec!["PATH=/bin".into(), "FOO=bar".into()],
            workdir: Some("/tmp".into()),
            volumes: vec![Volume {
                host: "/tmp".into(),
                container: "/data".into(),
                read_only: true,
            }],
            hostname: None,
            limits: Limits {
                memory: Some(64 << 20),
                memory_soft: Some(32 << 20),
                cpu: Some(CpuQuota {
                    quota: 50_000,
                    period: 100_000,
                }),
                cpu_shares: None,
                pids: Some(50),
                cpuset: Some("0".into()),
            },
            nice: Some(5),
            network: NetworkMode::None,
            ports: vec![],
            dns: vec![],
            user: None,
            security: Security::default(),
            image: "busybox".into(),
            command: vec![],
        }
    }

    #[test]
    fn spec_carries_flags_and_image_defaults() {
        let id = "0123456789abcdef".repeat(4);
        let spec = build_spec(
            &request(),
            &ImageDefaults::default(),
            &id,
            Path::new("/r"),
            Path::new("/etc-dir"),
            "/poc/x",
        )
        .unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process.args().as_ref().unwrap(),
            &vec!["/bin/sh".to_string()]
        );
        let env = process.env().as_ref().unwrap();
        assert!(
            env.contains(&"PATH=/bin".to_string()),
            "user env replaces the image's: {env:?}"
        );
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(env.contains(&"FOO=bar".to_string()));
        assert!(env.contains(&"HOSTNAME=0123456789ab".to_string()));
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        assert_eq!(process.cwd(), Path::new("/tmp"));
        assert_eq!(process.scheduler().as_ref().unwrap().nice(), &Some(5));
        assert_eq!(process.no_new_privileges(), Some(true));
        let linux = spec.linux().as_ref().unwrap();
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(
            resources.memory().as_ref().unwrap().reservation(),
            Some(32 << 20)
        );
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(resources.pids().as_ref().unwrap().limit(), 50);
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(ns.contains(&LinuxNamespaceType::Network));
        assert!(ns.contains(&LinuxNamespaceType::Cgroup));
        let mounts = spec.mounts().as_ref().unwrap();
        let volume = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/data"))
            .unwrap();
        assert!(volume
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new("/etc/resolv.conf")
                && m.source().as_deref() == Some(Path::new("/etc-dir/resolv.conf"))));
        let caps = process.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(!caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
    }

    #[test]
    fn host_network_keeps_the_host_netns_and_soft_above_hard_fails() {
        let mut req = request();
        req.network = NetworkMode::Host;
        req.command = vec!["true".into()];
        let id = "f".repeat(64);
        let spec = build_spec(
            &req,
            &ImageDefaults::default(),
            &id,
            Path::new("/r"),
            Path::new("/e"),
            "/p/x",
        )
        .unwrap();
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        req.limits.memory_soft = Some(128 << 20);
        assert!(matches!(
            build_spec(
                &req,
                &ImageDefaults::default(),
                &id,
                Path::new("/r"),
                Path::new("/e"),
                "/p/x"
            ),
            Err(SpecError::SoftAboveHard { .. })
        ));
    }
}
