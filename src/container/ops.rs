//! Operations on existing containers: kill, stop, remove, inspect. Each finds the container by name,
//! id or id prefix, and acts on what the host shows (is the init alive?), not only on the record.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::state::{self, Observed, Status};
use super::{destroy, events, load_config, ContainerError};
use crate::cgroups::CgroupError;
use crate::config::Paths;
use crate::spec::Limits;

/// Sends `signal` to the container's init.
pub fn kill(paths: &Paths, query: &str, signal: Signal) -> Result<String, ContainerError> {
    let id = state::resolve(paths, query)?;
    let st = state::load(paths, &id)?;
    match st.init {
        Some(init) if st.observed() == Observed::Running && init.is_alive() => {
            nix::sys::signal::kill(Pid::from_raw(init.pid), signal).map_err(|e| {
                ContainerError::Refused(format!("signalling container {query}: {e}"))
            })?;
            events::record(paths, &st, "kill", &[("signal", signal.as_str().into())]);
            Ok(id)
        }
        _ => Err(ContainerError::Refused(format!(
            "container {query} is not running"
        ))),
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns once the exit is recorded. Stopping a container
/// that is not running succeeds, as with Docker.
pub fn stop(paths: &Paths, query: &str, grace: Duration) -> Result<String, ContainerError> {
    let id = state::resolve(paths, query)?;
    let mut st = state::load(paths, &id)?;
    if st.observed() == Observed::Paused {
        // As Docker: a paused container is thawed, then stopped.
        let _lock = state::lock(paths, &id)?;
        st = state::load(paths, &id)?;
        st.cgroup.freeze(false)?;
        st.status = Status::Running;
        state::save(paths, &st)?;
    }
    if let Some(init) = st
        .init
        .filter(|i| st.status == Status::Running && i.is_alive())
    {
        let pid = Pid::from_raw(init.pid);
        events::record(
            paths,
            &st,
            "stop",
            &[("timeout", grace.as_secs().to_string())],
        );
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        if !wait_until(grace, || !init.is_alive()) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            wait_until(Duration::from_secs(10), || !init.is_alive());
        }
    }
    // The monitor drains the output and records the exit (or removes an --rm container).
    wait_until(Duration::from_secs(10), || match state::load(paths, &id) {
        Ok(s) => s.status != Status::Running || !s.monitor.is_some_and(|m| m.is_alive()),
        Err(_) => true,
    });
    Ok(id)
}

/// Removes a stopped container, or with `force` a running one (killed first).
pub fn remove(paths: &Paths, query: &str, force: bool) -> Result<String, ContainerError> {
    let id = state::resolve(paths, query)?;
    let (_lock, st) = state::load_locked(paths, &id)?;
    let live = matches!(
        st.observed(),
        Observed::Running | Observed::Creating | Observed::Created | Observed::Paused
    );
    if live && !force {
        return Err(ContainerError::Refused(format!(
            "container {query} is running: stop it first or use rm -f"
        )));
    }
    destroy(paths, &st)?;
    Ok(id)
}

/// Everything poc knows about a container, as Docker-like JSON.
pub fn inspect(paths: &Paths, query: &str) -> Result<serde_json::Value, ContainerError> {
    let id = state::resolve(paths, query)?;
    let st = state::load(paths, &id)?;
    let spec = load_config(paths, &id).ok();
    let observed = st.observed();
    let time = |secs: Option<u64>| secs.map(|s| crate::units::rfc3339(s * 1_000_000_000));
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let ipv6 = st.network.as_ref().and_then(|a| a.ipv6);
    let mounts: Vec<serde_json::Value> = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            serde_json::json!({
                "Type": m.typ(),
                "Source": m.source(),
                "Destination": m.destination(),
                "Options": m.options(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "Id": st.id,
        "Name": st.name,
        "Image": st.image,
        "Created": time(Some(st.created)),
        "State": {
            "Status": observed_name(observed),
            "Running": matches!(observed, Observed::Running | Observed::Paused),
            "Paused": observed == Observed::Paused,
            "Pid": st.init.filter(|_| matches!(observed, Observed::Running | Observed::Paused)).map(|i| i.pid),
            "MonitorPid": st.monitor.filter(|m| m.is_alive()).map(|m| m.pid),
            "ExitCode": st.exit_code,
            "StartedAt": time(st.started),
            "FinishedAt": time(st.finished),
        },
        "Config": {
            "Cmd": st.command,
            "Env": process.as_ref().and_then(|p| p.env().clone()),
            "WorkingDir": process.as_ref().map(|p| p.cwd().clone()),
            "Tty": st.tty,
            "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()),
            "AutoRemove": st.auto_remove,
        },
        "Limits": st.limits,
        "NetworkSettings": {
            "Mode": st.network_mode,
            "Bridge": st.network.as_ref().map(|a| a.bridge.clone()),
            "IPAddress": st.network.as_ref().map(|a| a.address),
            "Gateway": st.network.as_ref().map(|a| a.gateway),
            "GlobalIPv6Address": ipv6.map(|v6| v6.address),
            "GlobalIPv6PrefixLen": ipv6.map(|v6| v6.prefix),
            "IPv6Gateway": ipv6.map(|v6| v6.gateway),
            "HostVeth": st.network.as_ref().map(|a| a.host_veth.clone()),
            "Ports": st.network.as_ref().map(|a| a.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
        },
        "Cgroup": { "Path": st.cgroup_path, "Directories": st.cgroup.leaf_dirs() },
        "Mounts": mounts,
        "LogPath": st.log_path(),
        "ContainerDir": st.container_dir,
        "Spec": spec,
    }))
}

pub fn observed_name(observed: Observed) -> &'static str {
    match observed {
        Observed::Creating => "creating",
        Observed::Created => "created",
        Observed::Running => "running",
        Observed::Paused => "paused",
        Observed::Exited(_) => "exited",
        Observed::Dead => "dead",
    }
}

/// Polls `done` until it holds or `limit` passes; true if it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What `poc update` did to one container.
#[derive(Debug, serde::Serialize)]
pub struct UpdateReport {
    pub id: String,
    pub changes: Vec<crate::cgroups::Change>,
    /// After a memory limit change: bytes in use, and OOM kills the change caused.
    pub memory_usage: Option<u64>,
    pub oom_kills: Option<u64>,
}

/// Changes a running container's limits by writing its cgroup files, all or nothing; records the
/// new limits. Touches nothing else: no image, no network, no helper process.
pub fn update(paths: &Paths, query: &str, limits: &Limits) -> Result<UpdateReport, ContainerError> {
    let id = state::resolve(paths, query)?;
    let (_lock, mut st) = state::load_locked(paths, &id)?;
    if st.observed() != Observed::Running {
        return Err(ContainerError::Refused(format!(
            "container {query} is not running"
        )));
    }
    let resources = crate::spec::resources(limits)?;
    let touches_memory = limits.memory.is_some() || limits.memory_soft.is_some();
    // Only cgroup v2's memory.max OOM-kills when a write lowers it below the usage: v1 reclaims
    // or refuses with EBUSY (below), so there the kills are not counted around the write.
    let counts_oom = touches_memory && st.cgroup.is_v2();
    let oom_before = if counts_oom {
        st.cgroup.oom_kills()
    } else {
        None
    };
    let changes = st.cgroup.update(&resources).map_err(|e| match &e {
        CgroupError::Io { path, source, .. }
            if source.raw_os_error() == Some(libc::EBUSY) && path.ends_with("memory.limit_in_bytes") =>
        {
            ContainerError::Refused(format!(
                "container {query} uses more memory than the new limit and the kernel could not reclaim it \
                 (cgroup v1 refuses with EBUSY rather than OOM-kill); no limit was changed"
            ))
        }
        _ => ContainerError::Cgroup(e),
    })?;
    let mut memory_usage = None;
    let mut oom_kills = None;
    if counts_oom {
        if let Some((usage, kills)) = st.cgroup.memory_report() {
            memory_usage = Some(usage);
            oom_kills = Some(kills.saturating_sub(oom_before.unwrap_or(kills)));
        }
    } else if touches_memory {
        memory_usage = st.cgroup.memory_usage();
        oom_kills = memory_usage.map(|_| 0);
    }
    st.limits.merge(limits);
    state::save(paths, &st)?;
    let written: Vec<(&str, String)> = changes
        .iter()
        .map(|c| (c.file.as_str(), c.value.clone()))
        .collect();
    events::record(paths, &st, "update", &written);
    Ok(UpdateReport {
        id,
        changes,
        memory_usage,
        oom_kills,
    })
}

/// A container's resource use at one instant: its cgroup's counters and its veth's.
pub struct Usage {
    pub at: std::time::Instant,
    pub cgroup: crate::cgroups::Sample,
    /// Bytes the container received and sent (its host-side veth counts them the other way round).
    pub net_rx: u64,
    pub net_tx: u64,
}

pub fn usage(st: &state::State) -> Usage {
    let counter = |veth: &str, name: &str| -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{veth}/statistics/{name}"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let (net_rx, net_tx) = match &st.network {
        Some(a) => (
            counter(&a.host_veth, "tx_bytes"),
            counter(&a.host_veth, "rx_bytes"),
        ),
        None => (0, 0),
    };
    Usage {
        at: std::time::Instant::now(),
        cgroup: st.cgroup.sample(),
        net_rx,
        net_tx,
    }
}
