//! Removal: everything a container's state names (init, cgroup, network place, layer, records),
//! undone in reverse order of creation, for a finished or a half-made container alike.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::{self, ProcessRef, State};
use super::{events, leave_bridge, ContainerError};
use crate::config::Paths;
use crate::error::io;

/// Removes everything `state` names, in reverse order of creation; safe to call on a half-made
/// container, on one whose monitor died, and twice.
pub fn destroy(paths: &Paths, state: &State) -> Result<(), ContainerError> {
    if state.cgroup.is_frozen() {
        // Frozen processes do not die of SIGKILL until thawed.
        let _ = state.cgroup.freeze(false);
    }
    if let Some(init) = state.init {
        kill_and_wait(init);
    }
    state.cgroup.remove()?;
    leave_bridge(paths, state)?;
    match remove_layer(&state.container_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove", &state.container_dir)(e).into())
        }
        _ => {}
    }
    state::remove(paths, &state.id, state.name.as_deref())?;
    events::record(paths, state, "remove", &[]);
    Ok(())
}

/// Removes a container's directory on disk (its overlay upper and work directories, its log).
/// Removing a directory can wait on the disk: on a filesystem mounted with online discard (ext4
/// `discard`, as on cloud images) each one waits for the discard of its block, 0.2-4 ms here
/// depending on the disk's load. So the subdirectories (upper, and work with the `work` overlayfs
/// made in it) go in parallel, one thread each, and their waits overlap; the threads are joined
/// before this returns (poc forks again later, e.g. to close nf_tables sockets).
fn remove_layer(dir: &Path) -> std::io::Result<()> {
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            subdirs.push(entry.path());
        } else {
            remove_entry(&entry.path(), |p| std::fs::remove_file(p))?;
        }
    }
    let remove_subdir = |sub: &PathBuf| remove_entry(sub, crate::private::remove_tree);
    std::thread::scope(|scope| {
        // A thread that cannot be started leaves its directory to this one.
        let (started, inline): (Vec<_>, Vec<_>) = subdirs
            .iter()
            .map(|sub| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || remove_subdir(sub))
                    .map_err(|_| sub)
            })
            .partition(Result::is_ok);
        let mut results: Vec<std::io::Result<()>> = inline
            .into_iter()
            .filter_map(Result::err)
            .map(remove_subdir)
            .collect();
        // Every thread is joined, whichever fails.
        results.extend(started.into_iter().filter_map(Result::ok).map(|thread| {
            thread
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("removal thread panicked")))
        }));
        results.into_iter().collect::<std::io::Result<()>>()
    })?;
    std::fs::remove_dir(dir)
}

/// `remove` of one entry, where an entry already gone is fine.
fn remove_entry(path: &Path, remove: fn(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    match remove(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// SIGKILLs a container's init and waits until it is gone (reaped by its monitor, or by us when it
/// is our own child).
fn kill_and_wait(init: ProcessRef) {
    if !init.is_alive() {
        return;
    }
    let pid = Pid::from_raw(init.pid);
    let _ = kill(pid, Signal::SIGKILL);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while init.is_alive() && std::time::Instant::now() < deadline {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
