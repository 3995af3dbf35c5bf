//! Container lifecycle: create (state, layer, cgroup, init, network), start, wait, destroy.
//! The state record is written before any resource exists and names every resource, so `destroy`
//! undoes a half-made container exactly as it removes a finished one.

pub mod state;

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroups::{CgroupError, Hierarchies, Manager};
use crate::config::Paths;
use crate::image::{now_secs, ImageError, Store};
use crate::network::{self, NetworkError};
use crate::process::{self, InitConfig, ProcessError, Supervisor};
use crate::rootfs::RootSource;
use crate::spec::{build_spec, RunRequest, SpecError};
use state::{State, StateError, Status};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("network: {0}")]
    Network(#[from] NetworkError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{cause} (and cleaning up failed too: {cleanup})")]
    Cleanup {
        cause: Box<ContainerError>,
        cleanup: Box<ContainerError>,
    },
}

impl ContainerError {
    /// Docker's convention: 125 for poc's own errors, 126/127 when the command cannot run.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Process(e) => e.exit_code(),
            ContainerError::Cleanup { cause, .. } => cause.exit_code(),
            _ => 125,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `poc run` in the foreground: create, start, wait, remove. Returns the container's exit code.
pub fn run(paths: &Paths, req: &RunRequest) -> Result<i32, ContainerError> {
    let image = Store::new(paths.images_dir()).get(&req.image)?;
    let hierarchies = Hierarchies::detect()?;
    let id = new_id();
    let layer_dir = paths.layer_dir(&id);
    let etc_dir = paths.container_state_dir(&id).join("etc");
    let cgroup_path = format!("{}/{}", paths.cgroup_parent.trim_end_matches('/'), id);
    let spec = build_spec(
        req,
        &image.meta.defaults,
        &id,
        &layer_dir.join("merged"),
        &etc_dir,
        &cgroup_path,
    )?;
    let cgroup = Manager::for_path(&hierarchies, &cgroup_path)?;

    state::reserve(paths, &id, req.name.as_deref())?;
    let mut state = State {
        id: id.clone(),
        name: req.name.clone(),
        image: req.image.clone(),
        command: spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default(),
        status: Status::Creating,
        pid: None,
        owner_pid: std::process::id() as i32,
        created: now_secs(),
        started: None,
        cgroup,
        cgroup_path,
        layer_dir,
        auto_remove: req.remove,
    };
    let root = RootSource::Overlay {
        lower: image.rootfs.clone(),
        upper: state.layer_dir.join("upper"),
        work: state.layer_dir.join("work"),
    };
    let outcome = create_and_wait(paths, req, &spec, root, &mut state);
    let cleanup = destroy(paths, &state);
    match (outcome, cleanup) {
        (Ok(code), Ok(())) => Ok(code),
        (Err(cause), Ok(())) => Err(cause),
        (Ok(_), Err(cleanup)) => Err(cleanup),
        (Err(cause), Err(cleanup)) => Err(ContainerError::Cleanup {
            cause: Box::new(cause),
            cleanup: Box::new(cleanup),
        }),
    }
}

fn create_and_wait(
    paths: &Paths,
    req: &RunRequest,
    spec: &Spec,
    root: RootSource,
    state: &mut State,
) -> Result<i32, ContainerError> {
    state::save(paths, state)?;
    write_etc_files(paths, spec, state, req)?;
    let RootSource::Overlay { upper, work, .. } = &root;
    for dir in [upper, work, &state.layer_dir.join("merged")] {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    state.cgroup.create()?;
    if let Some(resources) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        state.cgroup.apply(resources)?;
    }

    let mut supervisor = Supervisor::new()?;
    let cgroup_fd = state.cgroup.clone_into_fd();
    let cfg = InitConfig {
        spec,
        root,
        network: req.network,
        interactive: req.interactive,
    };
    let child = process::spawn(&cfg, cgroup_fd.as_ref())?;
    // Not saved yet: if poc dies before release, the waiting init sees its channel close and exits.
    state.pid = Some(child.pid.as_raw());
    state.status = Status::Created;
    state
        .cgroup
        .add_task(child.pid.as_raw(), child.born_in_cgroup)?;
    network::attach(req.network, child.pid.as_raw())?;

    let running = child.release()?;
    state.status = Status::Running;
    state.started = Some(now_secs());
    state::save(paths, state)?;
    let code = supervisor.wait(running, req.interactive)?;
    state.pid = None;
    state.status = Status::Stopped;
    Ok(code)
}

/// hostname, hosts and resolv.conf, bound read-write into the container from its state directory.
fn write_etc_files(
    paths: &Paths,
    spec: &Spec,
    state: &State,
    req: &RunRequest,
) -> Result<(), ContainerError> {
    let dir = paths.container_state_dir(&state.id).join("etc");
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let hostname = spec.hostname().clone().unwrap_or_default();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (file, text) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", network::hosts_file(&hostname)),
        (
            "resolv.conf",
            network::resolv_conf(&host_resolv, req.network),
        ),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io("write", &path))?;
    }
    Ok(())
}

/// Removes everything `state` names, in reverse order of creation; safe to call on a half-made
/// container and to call twice.
pub fn destroy(paths: &Paths, state: &State) -> Result<(), ContainerError> {
    if let Some(pid) = state.pid {
        let pid = Pid::from_raw(pid);
        if kill(pid, Signal::SIGKILL).is_ok() && state.owner_pid == std::process::id() as i32 {
            let _ = waitpid(pid, None);
        }
    }
    state.cgroup.remove()?;
    match std::fs::remove_dir_all(&state.layer_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove", &state.layer_dir)(e))
        }
        _ => {}
    }
    state::remove(paths, &state.id, state.name.as_deref())?;
    Ok(())
}

/// 64 hex digits from the kernel's random pool.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most the remaining length into our buffer.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
