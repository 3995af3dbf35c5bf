//! The OCI commands on a container `create` made: `start`, `state`, `kill`, `delete`,
//! `pause`/`resume`, `ps`, `update --resources`.

use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::bundle::parse_resources;
use super::{check_id, load, load_locked, OCI_VERSION, START_FIFO};
use crate::config::Paths;
use crate::container::state::{self, Observed, State, Status};
use crate::container::{destroy, events, load_config, observed_name, ContainerError};
use crate::error::io;
use crate::process;
use crate::units::now_secs;

/// `start`: opens the gate of a created container, which then runs its command; poststart hooks.
pub fn start(paths: &Paths, id: &str) -> Result<(), ContainerError> {
    let (_lock, mut st) = load_locked(paths, id)?;
    match st.observed() {
        Observed::Created => {}
        Observed::Running | Observed::Paused => {
            return Err(ContainerError::Refused(format!(
                "container {id} is already running"
            )))
        }
        _ => {
            return Err(ContainerError::Refused(format!(
                "cannot start container {id}: it is not in the created state"
            )))
        }
    }
    let fifo = paths.container_state_dir(id).join(START_FIFO);
    // Non-blocking: with its init gone nobody reads the FIFO, and the open fails (ENXIO).
    let gate = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| match e {
        nix::Error::ENXIO => {
            ContainerError::Refused(format!("cannot start container {id}: its init is gone"))
        }
        e => io("open", &fifo)(e.into()).into(),
    })?;
    nix::unistd::write(&gate, b"S").map_err(|e| io("write", &fifo)(e.into()))?;
    wait_until_unread(&gate).map_err(|e| io("wait on", &fifo)(e.into()))?;
    drop(gate);
    let _ = std::fs::remove_file(&fifo);
    st.status = Status::Running;
    st.started = Some(now_secs());
    state::save(paths, &st)?;
    let pid = st.init.map_or(0, |i| i.pid);
    events::record(paths, &st, "start", &[("pid", pid.to_string())]);
    if let Some(hooks) = load_config(paths, id)?
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
    {
        // The container runs: a failed poststart hook is reported, not fatal (runtime spec).
        if let Err(e) = process::hooks::run_all("poststart", &hooks, &state_bytes(&st)) {
            eprintln!("poc: warning: {e}");
        }
    }
    Ok(())
}

/// Returns once nobody holds the start FIFO open for reading: the init holds it (close-on-exec)
/// through its startContainer hooks until it executes the command (or dies). poststart hooks run
/// after the command is executed (runtime spec), and `start` returns only then, as runc's does.
fn wait_until_unread(gate: &OwnedFd) -> nix::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    // On a FIFO's write end, poll reports POLLERR once it has no reader, whatever was asked.
    let mut fds = [PollFd::new(gate.as_fd(), PollFlags::empty())];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) if fds[0].revents().is_some_and(|r| !r.is_empty()) => return Ok(()),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The OCI state of a container (runc's fields: rootfs, created and owner besides the spec's).
pub fn state_of(st: &State) -> serde_json::Value {
    let observed = st.observed();
    let status = match observed {
        Observed::Creating => "creating",
        Observed::Created => "created",
        Observed::Running if st.cgroup.is_frozen() => "paused",
        Observed::Running => "running",
        Observed::Paused => "paused",
        Observed::Exited(_) | Observed::Dead => "stopped",
    };
    let pid = match observed {
        Observed::Exited(_) | Observed::Dead => 0,
        _ => st.init.map_or(0, |i| i.pid),
    };
    serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": st.id,
        "pid": pid,
        "status": status,
        "bundle": st.bundle,
        "rootfs": st.bundle.as_ref().map(|_| st.container_dir.parent().map(|d| d.join("rootfs"))),
        "created": crate::units::rfc3339(st.created * 1_000_000_000),
        "owner": "",
        "annotations": st.annotations,
    })
}

/// The state as hooks read it on their stdin.
pub fn state_bytes(st: &State) -> Vec<u8> {
    serde_json::to_vec(&state_of(st)).unwrap_or_default()
}

/// `state ID`.
pub fn state(paths: &Paths, id: &str) -> Result<serde_json::Value, ContainerError> {
    let mut value = state_of(&load(paths, id)?);
    // The root the container was made from, not poc's own directory.
    if let Ok(spec) = load_config(paths, id) {
        if let Some(root) = spec.root() {
            value["rootfs"] = serde_json::json!(root.path());
        }
    }
    Ok(value)
}

/// `kill [--all] ID SIGNAL`: the init, or every process of the container.
pub fn kill(paths: &Paths, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
    let st = load(paths, id)?;
    let init = match (st.observed(), st.init) {
        (Observed::Created | Observed::Running | Observed::Paused, Some(init)) => init,
        _ => {
            return Err(ContainerError::Refused(format!(
                "container {id} is not running"
            )))
        }
    };
    let pids = if all {
        st.cgroup.pids()
    } else {
        vec![init.pid]
    };
    for pid in pids {
        match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => {
                return Err(ContainerError::Refused(format!(
                    "signalling container {id}: {e}"
                )))
            }
        }
    }
    events::record(paths, &st, "kill", &[("signal", signal.as_str().into())]);
    Ok(())
}

/// `delete [--force] ID`: a created or stopped container (a running one with `force`, killed
/// first); poststop hooks after. An unknown id with `force` is not an error.
pub fn delete(paths: &Paths, id: &str, force: bool) -> Result<(), ContainerError> {
    let (_lock, st) = match load_locked(paths, id) {
        Ok(found) => found,
        Err(_) if force && check_id(id).is_ok() && !state::exists(paths, id) => return Ok(()),
        Err(e) => return Err(e),
    };
    let observed = st.observed();
    if matches!(observed, Observed::Running | Observed::Paused) && !force {
        return Err(ContainerError::Refused(format!(
            "cannot delete container {id} that is not stopped: {}",
            observed_name(observed)
        )));
    }
    let spec = load_config(paths, id).ok();
    let mut stopped = st.clone();
    stopped.status = Status::Exited;
    destroy(paths, &st)?;
    if let Some(hooks) = spec
        .as_ref()
        .and_then(|s| s.hooks().clone())
        .and_then(|h| h.poststop().clone())
    {
        if let Err(e) = process::hooks::run_all("poststop", &hooks, &state_bytes(&stopped)) {
            eprintln!("poc: warning: {e}");
        }
    }
    Ok(())
}

/// `pause ID`: every process of the container frozen.
pub fn pause(paths: &Paths, id: &str) -> Result<(), ContainerError> {
    let (_lock, mut st) = load_locked(paths, id)?;
    if st.observed() != Observed::Running {
        return Err(ContainerError::Refused(format!(
            "container {id} is not running"
        )));
    }
    st.cgroup.freeze(true)?;
    st.status = Status::Paused;
    state::save(paths, &st)?;
    events::record(paths, &st, "pause", &[]);
    Ok(())
}

/// `resume ID`: thawed again.
pub fn resume(paths: &Paths, id: &str) -> Result<(), ContainerError> {
    let (_lock, mut st) = load_locked(paths, id)?;
    if st.observed() != Observed::Paused {
        return Err(ContainerError::Refused(format!(
            "container {id} is not paused"
        )));
    }
    st.cgroup.freeze(false)?;
    st.status = Status::Running;
    state::save(paths, &st)?;
    events::record(paths, &st, "unpause", &[]);
    Ok(())
}

/// `ps ID`: the host pids of the container's processes.
pub fn pids(paths: &Paths, id: &str) -> Result<Vec<i32>, ContainerError> {
    let st = load(paths, id)?;
    Ok(st.cgroup.pids())
}

/// `update --resources FILE ID`: runc's LinuxResources JSON. Zeros and empty strings mean
/// "unchanged" (docker sends every field, most of them 0).
pub fn update(paths: &Paths, id: &str, json: &[u8]) -> Result<(), ContainerError> {
    let st = load(paths, id)?;
    if !matches!(
        st.observed(),
        Observed::Created | Observed::Running | Observed::Paused
    ) {
        return Err(ContainerError::Refused(format!(
            "container {id} is not running"
        )));
    }
    let resources = parse_resources(json)?;
    st.cgroup.update(&resources)?;
    events::record(paths, &st, "update", &[]);
    Ok(())
}
