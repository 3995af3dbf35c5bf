//! Container lifecycle: create (state, layer, cgroup, init, network), start, monitor, stop, remove.
//! The state record is written before any resource exists and names every resource, so `destroy`
//! undoes a half-made container exactly as it removes a finished one.

mod bridge;
pub mod events;
mod exec;
mod hosts;
pub mod logs;
mod names;
pub mod oci;
mod ops;
mod remove;
mod run;
pub mod state;

use std::os::fd::OwnedFd;

use oci_spec::runtime::Spec;

pub use exec::{exec, ExecRequest};
pub use ops::{inspect, kill as kill_container, observed_name, remove, stop, update, usage, Usage};
pub use remove::destroy;
pub use run::run;

use crate::cgroups::{CgroupError, Hierarchies};
use crate::config::Paths;
use crate::error::io;
use crate::image::ImageError;
use crate::network::{self, BridgeConfig, NamespacePlan, NetworkError};
use crate::process::{self, ChildConfig, ChildStdio, ProcessError, Role};
use crate::rootfs::RootSource;
use crate::security::seccomp::Filter;
use crate::spec::{RunRequest, SpecError};
use bridge::{bridge_of, join_bridge, leave_bridge, write_etc_files};
use state::{ProcessRef, State, StateError};

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
    #[error(transparent)]
    Io(#[from] crate::error::PathError),
    #[error("{0}")]
    Refused(String),
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

    fn with_cleanup(self, cleanup: Result<(), ContainerError>) -> Self {
        match cleanup {
            Ok(()) => self,
            Err(e) => ContainerError::Cleanup {
                cause: Box::new(self),
                cleanup: Box::new(e),
            },
        }
    }
}

const CONFIG_FILE: &str = "config.json";
/// The overlay's mount point, in the container's state directory.
const MOUNT_POINT: &str = "merged";

/// A container's configuration, ready to create.
struct Prepared {
    spec: Spec,
    /// The bridge a `poc run` container joins (the default network's or a named one's).
    bridge: Option<BridgeConfig>,
    seccomp: Option<Filter>,
    hierarchies: Hierarchies,
    state: State,
    root: RootSource,
    front: Front,
}

/// The two front doors to one create path: `poc run` (an image and flags; poc starts the
/// container itself and stays as its monitor) and an OCI bundle (`poc create`; the caller starts
/// it later and reaps it).
enum Front {
    Run(Box<RunRequest>),
    Bundle(oci::BundleOptions),
}

impl Prepared {
    fn run_request(&self) -> &RunRequest {
        match &self.front {
            Front::Run(req) => req,
            Front::Bundle(_) => unreachable!("poc run's containers have a RunRequest"),
        }
    }
}

/// What `create` leaves: the init, set up and waiting at its start gate.
struct Created {
    child: process::Child,
    pty_master: Option<OwnedFd>,
    /// The parent's end of the gate when poc starts the container itself (`poc run`).
    gate: Option<OwnedFd>,
}

/// The Spec's seccomp profile as a filter ready to load (compiled once, then read from the cache).
pub fn compile_seccomp(paths: &Paths, spec: &Spec) -> Result<Option<Filter>, ContainerError> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    crate::security::seccomp::compile(profile, &paths.seccomp_cache())
        .map(Some)
        .map_err(|e| ContainerError::Refused(e.to_string()))
}

/// The create path, one step after another; each step's resource is named in the state first.
/// Ends with the init set up (root, limits, privileges) and waiting at its start gate.
fn create(paths: &Paths, p: &mut Prepared, stdio: ChildStdio) -> Result<Created, ContainerError> {
    record(paths, p)?;
    make_layer_and_cgroup(paths, p)?;
    let (mut child, parent_gate) = spawn_init(paths, p, stdio)?;
    let pty_master = release_init(&p.spec, &p.state, &mut child)?;
    Ok(Created {
        child,
        pty_master,
        gate: parent_gate,
    })
}

/// The state first: id and name reserved, the record saved, the container's directory in the store
/// made, the Spec saved; for `poc run` the place on the bridge and the /etc files that name it.
fn record(paths: &Paths, p: &mut Prepared) -> Result<(), ContainerError> {
    let state = &mut p.state;
    if state.name.is_none() && matches!(p.front, Front::Run(_)) {
        // `poc run` without --name: a generated name, as Docker gives (OCI ids are their own names).
        state.name = Some(names::reserve(paths, &state.id)?);
    } else {
        state::reserve(paths, &state.id, state.name.as_deref())?;
    }
    state.monitor = ProcessRef::of(std::process::id() as i32);
    state::save(paths, state)?;
    crate::private::create_dir(&state.container_dir).map_err(io("create", &state.container_dir))?;
    write_config(paths, &p.spec, state)?;
    if let Front::Run(req) = &p.front {
        if let Some(bridge) = &p.bridge {
            join_bridge(paths, state, bridge, &req.ports)?;
        }
        write_etc_files(paths, &p.spec, state, req)?;
        if let Some(bridge) = &p.bridge {
            hosts::refresh(paths, bridge)?;
        }
    }
    Ok(())
}

/// The overlay's directories (for an image) and the container's cgroup with the Spec's limits.
fn make_layer_and_cgroup(paths: &Paths, p: &Prepared) -> Result<(), ContainerError> {
    let state = &p.state;
    if let RootSource::Overlay { upper, work, .. } = &p.root {
        // The upper directory's mode is the container's `/`: 0755 inside a private directory.
        let merged = paths.container_state_dir(&state.id).join(MOUNT_POINT);
        for dir in [upper, work, &merged] {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
    }
    state.cgroup.create()?;
    if let Some(resources) = p.spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        state.cgroup.apply(resources)?;
    }
    Ok(())
}

/// The init cloned into its namespaces and cgroup, attached to its network, setting itself up;
/// with the parent's end of its start gate when poc starts it itself.
fn spawn_init(
    paths: &Paths,
    p: &mut Prepared,
    stdio: ChildStdio,
) -> Result<(process::Child, Option<OwnedFd>), ContainerError> {
    let state = &mut p.state;
    let (gate, parent_gate) = match &p.front {
        Front::Run(_) => {
            let (child_end, parent_end) = process::gate_pipe()?;
            (child_end, Some(parent_end))
        }
        Front::Bundle(_) => (oci::open_start_fifo(paths, &state.id)?, None),
    };
    let (network, join, new_keyring, preserve_fds) = match &mut p.front {
        Front::Run(_) => (
            NamespacePlan::for_container(&state.network_mode, state.network.as_ref()),
            Vec::new(),
            true,
            0,
        ),
        Front::Bundle(b) => (
            oci::network_plan(&p.spec),
            std::mem::take(&mut b.join),
            b.new_keyring,
            b.preserve_fds,
        ),
    };
    let cgroup_fd = state.cgroup.clone_into_fd();
    let cfg = ChildConfig {
        join_cgroups: state.cgroup.self_join_files(),
        spec: &p.spec,
        role: Role::Init {
            cgroups: p.hierarchies.clone(),
            root: p.root.clone(),
            network,
            join,
            new_keyring,
        },
        stdio,
        seccomp: p.seccomp.as_ref(),
        preserve_fds,
        gate: Some(gate),
        hooks: p.spec.hooks().as_ref(),
    };
    let join_pid = match &p.front {
        Front::Bundle(b) => b.join_pid.as_ref(),
        Front::Run(_) => None,
    };
    let child =
        process::spawn_in_pid_namespace(join_pid, || process::spawn(cfg, cgroup_fd.as_ref()))?;
    // Not saved yet: if poc dies before release, the waiting init sees its channel close and exits.
    state.init = ProcessRef::of(child.pid.as_raw());
    state
        .cgroup
        .add_task(child.pid.as_raw(), child.born_in_cgroup)?;
    if let Some(attachment) = &state.network {
        network::attach(
            &bridge_of(paths, attachment),
            attachment,
            child.pid.as_raw(),
        )?;
    }
    Ok((child, parent_gate))
}

/// The runtime's hooks (prestart, createRuntime) run, then the init is let go on to its start
/// gate; returns the pty master when it has a terminal.
fn release_init(
    spec: &Spec,
    state: &State,
    child: &mut process::Child,
) -> Result<Option<OwnedFd>, ContainerError> {
    // Only hooks read the state (poc run's Specs have none): no /proc or freezer reads otherwise.
    let oci_state = if spec.hooks().is_some() {
        oci::state_bytes(state)
    } else {
        Vec::new()
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let mut runtime_hooks = || {
        let none = Vec::new();
        process::hooks::run_all(
            "prestart",
            hooks.prestart().as_ref().unwrap_or(&none),
            &oci_state,
        )?;
        process::hooks::run_all(
            "createRuntime",
            hooks.create_runtime().as_ref().unwrap_or(&none),
            &oci_state,
        )
    };
    Ok(child.prepare(process::Release {
        state: &oci_state,
        runtime_hooks: &mut runtime_hooks,
    })?)
}

fn write_config(paths: &Paths, spec: &Spec, state: &State) -> Result<(), ContainerError> {
    let path = paths.container_state_dir(&state.id).join(CONFIG_FILE);
    let text = serde_json::to_vec(spec).map_err(|e| io("write", &path)(e.into()))?;
    Ok(crate::private::write(&path, &text).map_err(io("write", &path))?)
}

/// The Spec a container was created with.
pub fn load_config(paths: &Paths, id: &str) -> Result<Spec, ContainerError> {
    let path = paths.container_state_dir(id).join(CONFIG_FILE);
    let text = std::fs::read(&path).map_err(io("read", &path))?;
    Ok(serde_json::from_slice(&text).map_err(|e| io("read", &path)(e.into()))?)
}
