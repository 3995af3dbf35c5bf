//! A bundle's config.json as poc reads it: what it refuses rather than ignores, the defaults runc
//! adds (no capabilities, the standard devices), the cgroup path and the namespaces given by path.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxNamespaceType, LinuxResources,
    Spec,
};

use super::ContainerError;
use crate::config::Paths;
use crate::container::CONFIG_FILE;
use crate::error::io;
use crate::network::NamespacePlan;

/// The bundle's config.json, its root resolved, refused where poc cannot do what it asks, with
/// runc's defaults added; and the bundle's own path.
pub(super) fn read(bundle: &Path) -> Result<(PathBuf, Spec), ContainerError> {
    let bundle = std::fs::canonicalize(bundle).map_err(io("open the bundle", bundle))?;
    let config_path = bundle.join(CONFIG_FILE);
    let text = std::fs::read(&config_path).map_err(io("read", &config_path))?;
    let mut spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| ContainerError::Refused(format!("{}: {e}", config_path.display())))?;
    let root = root_path(&spec, &bundle)?;
    if let Some(r) = spec.root_mut() {
        r.set_path(root.clone());
    }
    check_supported(&spec)?;
    // No capabilities listed means none (runc's reading), never all of root's.
    if let Some(process) = spec.process_mut() {
        if process.capabilities().is_none() {
            process.set_capabilities(Some(no_capabilities()));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(resources) = linux.resources() {
            let json = serde_json::to_vec(resources).unwrap_or_default();
            linux.set_resources(Some(parse_resources(&json)?));
        }
    }
    add_default_devices(&mut spec)?;
    Ok((bundle, spec))
}

/// Every capability set empty (oci-spec's default would be three capabilities).
pub(super) fn no_capabilities() -> LinuxCapabilities {
    let none = Capabilities::new;
    LinuxCapabilitiesBuilder::default()
        .bounding(none())
        .effective(none())
        .inheritable(none())
        .permitted(none())
        .ambient(none())
        .build()
        .expect("empty capability sets")
}

/// `root.path`, relative to the bundle when it is not absolute.
fn root_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, ContainerError> {
    let path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| ContainerError::Refused("config.json has no root".into()))?;
    let path = if path.is_absolute() {
        path
    } else {
        bundle.join(path)
    };
    let root = std::fs::canonicalize(&path).map_err(io("open the root", &path))?;
    if !root.is_dir() {
        return Err(ContainerError::Refused(format!(
            "root.path {} is not a directory",
            root.display()
        )));
    }
    Ok(root)
}

/// What poc cannot do is refused, never ignored.
fn check_supported(spec: &Spec) -> Result<(), ContainerError> {
    let refuse = |what: &str| {
        Err(ContainerError::Refused(format!(
            "{what} is not supported by poc"
        )))
    };
    let Some(linux) = spec.linux() else {
        return refuse("a config.json without a linux section");
    };
    let has = |v: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        v.as_ref().is_some_and(|m| !m.is_empty())
    };
    if has(linux.uid_mappings()) || has(linux.gid_mappings()) {
        return refuse("a user namespace (linux.uidMappings, gidMappings)");
    }
    for ns in linux.namespaces().iter().flatten() {
        match (ns.typ(), ns.path()) {
            (LinuxNamespaceType::User, _) => return refuse("a user namespace"),
            (LinuxNamespaceType::Time, _) => return refuse("a time namespace"),
            _ => {}
        }
    }
    let mount_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Mount);
    if !mount_ns {
        // The root is built and pivoted into inside the init's mount namespace: without a new one
        // that would be the caller's (the host's) namespace.
        return refuse("a container without a mount namespace of its own");
    }
    check_sysctls(linux)?;
    if linux.intel_rdt().is_some() {
        return refuse("linux.intelRdt");
    }
    if let Some(p) = spec.process() {
        if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()) {
            return refuse("process.apparmorProfile (AppArmor)");
        }
        if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) {
            return refuse("process.selinuxLabel (SELinux)");
        }
    }
    if linux.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
        return refuse("linux.mountLabel (SELinux)");
    }
    Ok(())
}

/// `linux.sysctl` keys as runc allows them: dotted names, each in a namespace the container has
/// of its own (IPC keys with an IPC namespace, net.* with a network namespace, the host and domain
/// names with a UTS namespace). Anything else (kernel.core_pattern, vm.*, net.* in the host's
/// network) would be written to the host's kernel.
fn check_sysctls(linux: &oci_spec::runtime::Linux) -> Result<(), ContainerError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let own = |typ: LinuxNamespaceType, kind: &str| -> Result<bool, ContainerError> {
        let Some(ns) = namespaces.iter().find(|n| n.typ() == typ) else {
            return Ok(false);
        };
        let Some(path) = ns.path() else {
            return Ok(true);
        };
        // Joined by path: the container's own unless it is poc's (the host's) namespace.
        let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
        let theirs = id(path).map_err(io("open the namespace", path))?;
        Ok(id(Path::new(&format!("/proc/self/ns/{kind}"))).ok() != Some(theirs))
    };
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        let valid = key
            .split('.')
            .all(|part| !part.is_empty() && part != ".." && !part.contains('/'));
        if !valid {
            return Err(ContainerError::Refused(format!(
                "invalid sysctl key {key:?}: a dotted name such as net.ipv4.ip_forward"
            )));
        }
        let allowed = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            own(LinuxNamespaceType::Ipc, "ipc")?
        } else if key.starts_with("net.") {
            own(LinuxNamespaceType::Network, "net")?
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            own(LinuxNamespaceType::Uts, "uts")?
        } else {
            false
        };
        if !allowed {
            return Err(ContainerError::Refused(format!(
                "sysctl {key:?} is not in a namespace of the container's own: it would change the host"
            )));
        }
    }
    Ok(())
}

/// runc makes the standard /dev nodes and allows them in the device cgroup whatever the Spec
/// lists (podman lists none): the same here, after the Spec's own rules.
fn add_default_devices(spec: &mut Spec) -> Result<(), ContainerError> {
    let Some(linux) = spec.linux_mut() else {
        return Ok(());
    };
    let mut devices = linux.devices().clone().unwrap_or_default();
    for d in crate::spec::default_devices()? {
        if !devices.iter().any(|e| e.path() == d.path()) {
            devices.push(d);
        }
    }
    linux.set_devices(Some(devices));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let rules = match resources.devices() {
        Some(rules) => {
            let mut rules = rules.clone();
            rules.extend(crate::cgroups::devices::default_rules().into_iter().skip(1));
            rules
        }
        None => crate::cgroups::devices::default_rules(),
    };
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    Ok(())
}

/// `linux.cgroupsPath`: absolute as given; relative under poc's cgroup parent; systemd's
/// "slice:prefix:name" (with --systemd-cgroup) as the path systemd would give it; none: the
/// parent and the id.
pub(super) fn cgroup_path(spec: &Spec, paths: &Paths, id: &str, systemd: bool) -> String {
    let parent = paths.cgroup_parent.trim_end_matches('/');
    let given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty());
    match given {
        None => format!("{parent}/{id}"),
        Some(p) if systemd && p.split(':').count() == 3 => {
            let parts: Vec<&str> = p.split(':').collect();
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            format!("/{slice}/{}-{}.scope", parts[1], parts[2])
        }
        Some(p) if p.starts_with('/') => p,
        Some(p) => format!("{parent}/{p}"),
    }
}

pub(super) fn has_new_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ && n.path().is_none()))
}

/// The init's network plan: loopback up in a new namespace; nothing in a joined or the host's.
pub fn network_plan(spec: &Spec) -> NamespacePlan {
    if has_new_namespace(spec, LinuxNamespaceType::Network) {
        NamespacePlan::Loopback
    } else {
        NamespacePlan::Host
    }
}

/// Namespaces the Spec gives by path, opened here: the pid namespace for poc to clone the init
/// into (it applies to children cloned afterwards), the others for the init to join.
type Joined = (Vec<(OwnedFd, CloneFlags)>, Option<OwnedFd>);

pub(super) fn open_joined_namespaces(spec: &Spec) -> Result<Joined, ContainerError> {
    let mut join = Vec::new();
    let mut pid = None;
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        let Some(path) = ns.path() else { continue };
        let flag = match ns.typ() {
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            _ => continue,
        };
        let fd: OwnedFd = std::fs::File::open(path)
            .map_err(io("open the namespace", path))?
            .into();
        if flag == CloneFlags::CLONE_NEWNS && same_namespace(&fd, "mnt") {
            // The root is pivoted inside the mount namespace: never poc's (the host's) own.
            return Err(ContainerError::Refused(format!(
                "the mount namespace {} is poc's own: a container needs one of its own",
                path.display()
            )));
        }
        if flag == CloneFlags::CLONE_NEWPID {
            pid = Some(fd);
        } else {
            join.push((fd, flag));
        }
    }
    Ok((join, pid))
}

/// Whether the namespace `fd` is the one of `kind` poc itself runs in.
fn same_namespace(fd: &OwnedFd, kind: &str) -> bool {
    let theirs = nix::sys::stat::fstat(fd);
    let ours = nix::sys::stat::stat(format!("/proc/self/ns/{kind}").as_str());
    matches!((theirs, ours), (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

/// LinuxResources from JSON, with runc's reading of zeros and empty strings as "not set".
pub(super) fn parse_resources(json: &[u8]) -> Result<LinuxResources, ContainerError> {
    let mut value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| ContainerError::Refused(format!("--resources: {e}")))?;
    for (section, keys) in [
        (
            "memory",
            &["limit", "reservation", "swap", "kernel", "kernelTCP"][..],
        ),
        (
            "cpu",
            &[
                "shares",
                "quota",
                "period",
                "realtimeRuntime",
                "realtimePeriod",
                "cpus",
                "mems",
            ][..],
        ),
        ("pids", &["limit"][..]),
        ("blockIO", &["weight", "leafWeight"][..]),
    ] {
        if let Some(obj) = value.get_mut(section).and_then(|s| s.as_object_mut()) {
            for key in keys {
                let unset = match obj.get(*key) {
                    Some(serde_json::Value::Number(n)) => n.as_f64() == Some(0.0),
                    Some(serde_json::Value::String(s)) => s.is_empty(),
                    Some(serde_json::Value::Null) => true,
                    _ => false,
                };
                if unset {
                    obj.remove(*key);
                }
            }
        }
    }
    serde_json::from_value(value).map_err(|e| ContainerError::Refused(format!("--resources: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_in_docker_resources_mean_unchanged() {
        let r = parse_resources(
            br#"{"memory":{"limit":67108864,"swap":0},"cpu":{"shares":0,"quota":0,"period":0,"cpus":"","mems":""},"pids":{"limit":50},"blockIO":{"weight":0}}"#,
        )
        .unwrap();
        let memory = r.memory().as_ref().unwrap();
        assert_eq!(memory.limit(), Some(64 << 20));
        assert_eq!(memory.swap(), None);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (None, None, None)
        );
        assert_eq!(cpu.cpus(), &None);
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(50));
        assert_eq!(r.block_io().as_ref().and_then(|b| b.weight()), None);
    }

    #[test]
    fn cgroup_paths_follow_runc() {
        let paths = Paths {
            state_root: "/run/x".into(),
            store_root: "/var/x".into(),
            cgroup_parent: "/poc".into(),
            bridge: "poc0".into(),
            subnet: "10.77.0.0/16".parse().unwrap(),
            subnet6: None,
        };
        let spec_with = |p: Option<&str>| {
            let mut spec = Spec::default();
            let mut linux = spec.linux().clone().unwrap_or_default();
            linux.set_cgroups_path(p.map(PathBuf::from));
            spec.set_linux(Some(linux));
            spec
        };
        assert_eq!(
            cgroup_path(&spec_with(None), &paths, "c1", false),
            "/poc/c1"
        );
        assert_eq!(
            cgroup_path(&spec_with(Some("/default/c1")), &paths, "c1", false),
            "/default/c1"
        );
        assert_eq!(
            cgroup_path(&spec_with(Some("x/c1")), &paths, "c1", false),
            "/poc/x/c1"
        );
        assert_eq!(
            cgroup_path(
                &spec_with(Some("system.slice:docker:c1")),
                &paths,
                "c1",
                true
            ),
            "/system.slice/docker-c1.scope"
        );
    }
}
