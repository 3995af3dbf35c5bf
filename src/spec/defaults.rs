//! Docker's defaults (capabilities, masked paths, kernel mounts, device nodes) and `build_spec`,
//! which lays a request over them. Reads only a --security-opt seccomp file and the host's devices.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSchedulerPolicy, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, SchedulerBuilder, Spec, SpecBuilder,
};

use super::security::{self, CapName, SeccompChoice};
use super::{Limits, RunRequest, Security, SpecError};
use crate::image::ImageDefaults;
use crate::network::NetworkMode;

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
    let hostname = req
        .hostname
        .clone()
        .unwrap_or_else(|| crate::id::short(id).to_string());
    let sec = &req.security;
    let kept = container_capabilities(sec);
    let seccomp = seccomp_profile(sec, &kept)?;
    let process = process(req, image, &hostname, kept)?;
    let mounts = container_mounts(req, etc_dir)?;
    let mut linux = linux(req, cgroups_path)?;
    linux.set_seccomp(seccomp);
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

/// The image's command and environment as the flags change them, with the capabilities the
/// container keeps, its nice value and ulimits.
fn process(
    req: &RunRequest,
    image: &ImageDefaults,
    hostname: &str,
    kept: Vec<Capability>,
) -> Result<oci_spec::runtime::Process, SpecError> {
    let args = if req.command.is_empty() {
        image.cmd.clone()
    } else {
        req.command.clone()
    };
    let sec = &req.security;
    let capabilities = kept
        .into_iter()
        .collect::<oci_spec::runtime::Capabilities>();
    let mut process = ProcessBuilder::default()
        .terminal(req.tty)
        .args(args)
        .env(environment(req, image, hostname))
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
    Ok(process)
}

/// The image's environment, then HOSTNAME (and TERM with a terminal), then each -e over them.
fn environment(req: &RunRequest, image: &ImageDefaults, hostname: &str) -> Vec<String> {
    let mut env = image.env.clone();
    env.push(format!("HOSTNAME={hostname}"));
    if req.tty {
        env.push("TERM=xterm".into());
    }
    for var in &req.env {
        set_env(&mut env, var);
    }
    env
}

/// The kernel filesystems, then each --tmpfs, each -v, and the generated /etc files.
fn container_mounts(req: &RunRequest, etc_dir: &Path) -> Result<Vec<Mount>, SpecError> {
    let sec = &req.security;
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
    Ok(mounts)
}

/// Namespaces, limits, devices and the paths hidden from the container (seccomp is set apart).
fn linux(req: &RunRequest, cgroups_path: &str) -> Result<oci_spec::runtime::Linux, SpecError> {
    let sec = &req.security;
    // A privileged container sees the host's /proc and /sys as they are.
    let (masked, read_only): (&[&str], &[&str]) = if sec.privileged {
        (&[], &[])
    } else {
        (&MASKED_PATHS, &READONLY_PATHS)
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(&req.network)?)
        .resources(resources(&req.limits)?)
        .cgroups_path(PathBuf::from(cgroups_path))
        .devices(container_devices(sec)?)
        .masked_paths(masked.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(read_only.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .build()?;
    if let Some(resources) = linux.resources_mut().as_mut() {
        resources.set_devices(Some(device_rules(sec)));
    }
    Ok(linux)
}

/// Every namespace of its own, but the host's network with --network host.
fn namespaces(network: &NetworkMode) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, SpecError> {
    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if *network != NetworkMode::Host {
        namespaces.push(LinuxNamespaceType::Network);
    }
    Ok(namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?)
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
