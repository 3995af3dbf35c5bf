//! Container lifecycle: create (state, layer, cgroup, init, network), start, monitor, stop, remove.
//! The state record is written before any resource exists and names every resource, so `destroy`
//! undoes a half-made container exactly as it removes a finished one.

pub mod events;
mod exec;
mod hosts;
pub mod logs;
mod names;
pub mod oci;
mod ops;
pub mod state;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

pub use exec::{exec, ExecRequest};
pub use ops::{inspect, kill as kill_container, observed_name, remove, stop, update, usage, Usage};

use crate::cgroups::{CgroupError, Hierarchies, Manager, MemoryWatch};
use crate::config::Paths;
use crate::image::{now_secs, ImageError, Store};
use crate::network::{self, Attachment, BridgeConfig, NamespacePlan, NetworkError, PortMapping};
use crate::process::{
    self, Attach, ChildConfig, ChildStdio, ParentIo, ProcessError, Role, Running, Stream,
    Supervisor, Watch,
};
use crate::rootfs::RootSource;
use crate::security::seccomp::Filter;
use crate::spec::{build_spec, RunRequest, SpecError};
use state::{Observed, ProcessRef, State, StateError, Status};

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

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        op,
        path: path.to_path_buf(),
        source,
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

/// `poc run`: in the foreground poc itself is the monitor and returns the container's exit code;
/// with `-d` a detached monitor takes over and poc prints the id.
pub fn run(paths: &Paths, req: RunRequest) -> Result<i32, ContainerError> {
    let prepared = prepare(paths, req)?;
    if prepared.run_request().detach {
        run_detached(paths, prepared)
    } else {
        run_attached(paths, prepared)
    }
}

/// Everything that can be checked before anything is created: image, cgroup hierarchy, Spec.
fn prepare(paths: &Paths, req: RunRequest) -> Result<Prepared, ContainerError> {
    let image = Store::new(paths.images_dir()).get(&req.image)?;
    // An unknown network is refused before anything is made, in Docker's words.
    let bridge = paths
        .bridge_for(&req.network)
        .map_err(|e| ContainerError::Refused(e.to_string()))?;
    // Containers' state (config.json holds their environment) and layers are root's alone.
    for dir in [
        paths.state_root.join("containers"),
        paths.store_root.join("containers"),
    ] {
        crate::private::ensure_dir(&dir).map_err(io("create", &dir))?;
    }
    let hierarchies = Hierarchies::detect()?;
    let id = new_id();
    let container_dir = paths.container_dir(&id);
    let etc_dir = paths.container_state_dir(&id).join("etc");
    // The overlay's mount point is only a name for the container's root while the init builds it
    // (after pivot_root nothing is mounted on it): it lives on the state root (a tmpfs), not beside
    // the layer on disk, where every directory costs a block to make and, on a filesystem mounted
    // with online discard (ext4 `discard`, as on cloud images), a synchronous discard to remove:
    // 1-4 ms per directory here, on the path of every `run --rm`.
    let merged = paths.container_state_dir(&id).join(MOUNT_POINT);
    let cgroup_path = format!("{}/{}", paths.cgroup_parent.trim_end_matches('/'), id);
    let mut spec = build_spec(
        &req,
        &image.meta.defaults,
        &id,
        &merged,
        &etc_dir,
        &cgroup_path,
    )?;
    set_user(&mut spec, &image.rootfs, req.user.as_deref())?;
    if let Some(process) = spec.process() {
        crate::security::check_grantable(process)
            .map_err(|e| ContainerError::Refused(e.to_string()))?;
    }
    let seccomp = compile_seccomp(paths, &spec)?;
    let root = RootSource::Overlay {
        lower: image.rootfs.clone(),
        upper: container_dir.join("upper"),
        work: container_dir.join("work"),
    };
    let state = State {
        name: req.name.clone(),
        image: req.image.clone(),
        command: spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default(),
        auto_remove: req.remove,
        tty: req.tty,
        limits: req.limits.clone(),
        network_mode: req.network.clone(),
        ..State::creating(
            id.clone(),
            Manager::for_path(&hierarchies, &cgroup_path)?,
            cgroup_path,
            container_dir,
        )
    };
    Ok(Prepared {
        spec,
        bridge,
        seccomp,
        hierarchies,
        state,
        root,
        front: Front::Run(Box::new(req)),
    })
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

/// The process's user and groups, looked up in the image's /etc files through a descriptor of its
/// root (root and its groups when no `--user` is given, as Docker).
fn set_user(spec: &mut Spec, image_root: &Path, user: Option<&str>) -> Result<(), ContainerError> {
    let root = crate::rootfs::open_dir(image_root)
        .map_err(|e| ContainerError::Refused(format!("the image's root: {e}")))?;
    let ids = crate::security::user::resolve(root.as_fd(), user)
        .map_err(|e| ContainerError::Refused(e.to_string()))?;
    if let Some(process) = spec.process_mut().as_mut() {
        crate::spec::set_process_user(process, &ids);
    }
    Ok(())
}

fn run_attached(paths: &Paths, mut p: Prepared) -> Result<i32, ContainerError> {
    let (mut supervisor, running, io) = start(paths, &mut p)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut to_terminal = |stream: Stream, data: &[u8]| match stream {
        Stream::Stdout => process::write_all(stdout.as_fd(), data),
        Stream::Stderr => process::write_all(stderr.as_fd(), data),
    };
    monitor(
        paths,
        &p.state,
        &mut supervisor,
        running,
        io,
        Some(Attach {
            stdin: p.run_request().interactive,
        }),
        &mut to_terminal,
    )
}

/// Forks the monitor, which creates the container as its own child, reports on a pipe whether it
/// started, and stays to log, reap and record. The CLI prints the id and returns.
fn run_detached(paths: &Paths, mut p: Prepared) -> Result<i32, ContainerError> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io("pipe", Path::new("report"))(e.into()))?;
    // SAFETY: poc is single-threaded here; the child only runs poc's own code and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| io("fork", Path::new("monitor"))(e.into()))? {
        nix::unistd::ForkResult::Child => {
            drop(report_r);
            become_monitor(&report_w);
            let code = match start(paths, &mut p) {
                Ok((mut supervisor, running, io)) => {
                    let _ = nix::unistd::write(&report_w, b"OK");
                    drop(report_w);
                    process::release_startup_code();
                    let _ = monitor(
                        paths,
                        &p.state,
                        &mut supervisor,
                        running,
                        io,
                        None,
                        &mut |_, _| {},
                    );
                    0
                }
                Err(e) => {
                    let message = format!("{}{e}", e.exit_code() as u8 as char);
                    let _ = nix::unistd::write(&report_w, message.as_bytes());
                    1
                }
            };
            // SAFETY: the monitor's work is done; skip the CLI's exit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(report_w);
            let mut report = Vec::new();
            let mut file = std::fs::File::from(report_r);
            let _ = std::io::Read::read_to_end(&mut file, &mut report);
            match report.as_slice() {
                b"OK" => {
                    println!("{}", p.state.id);
                    Ok(0)
                }
                [code, message @ ..] => Err(ContainerError::Process(ProcessError::Init {
                    code: *code as i32,
                    message: String::from_utf8_lossy(message).into_owned(),
                })),
                [] => Err(ContainerError::Refused(
                    "the container's monitor died while starting it".into(),
                )),
            }
        }
    }
}

/// Creates and starts the container with poc's signals already routed to a Supervisor (nothing sent
/// in between is lost); on failure everything made so far is removed.
fn start(
    paths: &Paths,
    p: &mut Prepared,
) -> Result<(Supervisor, Running, ParentIo), ContainerError> {
    let supervisor = Supervisor::new()?;
    let req = p.run_request();
    let pipes = if req.tty {
        Ok((ChildStdio::Terminal, ParentIo::default()))
    } else {
        process::pipes(req.interactive)
    };
    let started = pipes
        .map_err(ContainerError::from)
        .and_then(|(stdio, parent_io)| {
            let created = create(paths, p, stdio)?;
            let gate = created
                .gate
                .ok_or(ContainerError::Process(ProcessError::Sync(
                    nix::Error::EBADF,
                )))?;
            let running = created.child.start(gate, created.pty_master)?;
            p.state.status = Status::Running;
            p.state.started = Some(now_secs());
            state::save(paths, &p.state)?;
            Ok((running, parent_io))
        });
    match started {
        Ok((running, io)) => Ok((supervisor, running, io)),
        Err(e) => Err(e.with_cleanup(destroy(paths, &p.state))),
    }
}

/// The detached monitor leaves the user's session and terminal, and keeps no descriptor of the
/// caller's: whoever reads poc's output sees it end when the CLI exits.
fn become_monitor(report: &OwnedFd) {
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    let _ = nix::sys::prctl::set_name(c"poc-monitor");
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    ) {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let keep = report.as_raw_fd() as u32;
    // SAFETY: closes descriptors this process inherited and does not use.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
    }
}

/// The create path, one step after another; each step's resource is named in the state first.
/// Ends with the init set up (root, limits, privileges) and waiting at its start gate.
fn create(paths: &Paths, p: &mut Prepared, stdio: ChildStdio) -> Result<Created, ContainerError> {
    let state = &mut p.state;
    if state.name.is_none() && matches!(p.front, Front::Run(_)) {
        // `poc run` without --name: a generated name, as Docker gives (OCI ids are their own names).
        state.name = Some(names::reserve(paths, &state.id)?);
    } else {
        state::reserve(paths, &state.id, state.name.as_deref())?;
    }
    state.monitor = ProcessRef::of(std::process::id() as i32);
    state::save(paths, state)?;
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
    crate::private::create_dir(&state.container_dir).map_err(io("create", &state.container_dir))?;
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
    let mut child =
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
    // Only hooks read the state (poc run's Specs have none): no /proc or freezer reads otherwise.
    let oci_state = if p.spec.hooks().is_some() {
        oci::state_bytes(state)
    } else {
        Vec::new()
    };
    let hooks = p.spec.hooks().clone().unwrap_or_default();
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
    let pty_master = child.prepare(process::Release {
        state: &oci_state,
        runtime_hooks: &mut runtime_hooks,
    })?;
    Ok(Created {
        child,
        pty_master,
        gate: parent_gate,
    })
}

/// Logs the container's output (and hands it to `sink`), waits for its end and records it.
fn monitor(
    paths: &Paths,
    state: &State,
    supervisor: &mut Supervisor,
    running: Running,
    parent_io: ParentIo,
    attach: Option<Attach>,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> Result<i32, ContainerError> {
    // Journaled here, not while starting: a detached run has already told the CLI it started.
    events::record(paths, state, "start", &[("pid", running.pid.to_string())]);
    let log_path = state.log_path();
    let mut log = logs::Writer::create(&log_path).map_err(io("create", &log_path))?;
    let mut record = |stream: Stream, data: &[u8]| {
        // A full disk must not stop the container's output from reaching the user.
        let _ = log.append(stream, data);
        sink(stream, data);
    };
    let mut memory = MemoryEvents::new(paths, state);
    let watch = memory.as_mut().map(|m| m as &mut dyn Watch);
    let code = supervisor.wait(running, parent_io, attach, &mut record, watch)?;
    // A last look: what the kernel counted as the container ended (an OOM kill) comes before its exit.
    if let Some(m) = memory.as_mut() {
        m.report(true);
    }
    record_exit(paths, state, code)?;
    Ok(code)
}

/// Journals the memory events the kernel notifies for the container's cgroup.
struct MemoryEvents<'a> {
    paths: &'a Paths,
    state: &'a State,
    watch: MemoryWatch,
}

impl<'a> MemoryEvents<'a> {
    fn new(paths: &'a Paths, state: &'a State) -> Option<Self> {
        Some(MemoryEvents {
            paths,
            state,
            watch: MemoryWatch::new(&state.cgroup)?,
        })
    }
}

impl Watch for MemoryEvents<'_> {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.watch.fd()
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        self.watch.deadline()
    }

    fn ready(&mut self) {
        self.report(false);
    }
}

impl MemoryEvents<'_> {
    fn report(&mut self, last: bool) {
        for e in self.watch.check(last) {
            events::record(
                self.paths,
                self.state,
                e.kind,
                &[
                    ("count", e.count.to_string()),
                    ("total", e.total.to_string()),
                ],
            );
        }
    }
}

/// After the init exited and its output is in the log: remove an `--rm` container, or record the
/// exit and release the cgroup. A container removed meanwhile (`rm -f`) needs nothing more.
fn record_exit(paths: &Paths, state: &State, code: i32) -> Result<(), ContainerError> {
    events::record(paths, state, "exit", &[("exitCode", code.to_string())]);
    let _lock = match state::lock(paths, &state.id) {
        Ok(lock) => lock,
        Err(StateError::NoSuchContainer(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !state::exists(paths, &state.id) {
        return Ok(());
    }
    // What `destroy` needs (cgroup, network, directories) never changes while a container runs, so
    // ours will do; a kept container's record is re-read, as `update` may have changed its limits.
    if state.auto_remove {
        return destroy(paths, state);
    }
    let mut state = state::load(paths, &state.id)?;
    state.status = Status::Exited;
    state.exit_code = Some(code);
    state.finished = Some(now_secs());
    state.cgroup.remove()?;
    // Like Docker, a stopped container keeps no address or published port.
    leave_bridge(paths, &state)?;
    state.network = None;
    state::save(paths, &state)?;
    Ok(())
}

fn write_config(paths: &Paths, spec: &Spec, state: &State) -> Result<(), ContainerError> {
    let path = paths.container_state_dir(&state.id).join(CONFIG_FILE);
    let text = serde_json::to_vec(spec).map_err(|e| io("write", &path)(e.into()))?;
    crate::private::write(&path, &text).map_err(io("write", &path))
}

/// The Spec a container was created with.
pub fn load_config(paths: &Paths, id: &str) -> Result<Spec, ContainerError> {
    let path = paths.container_state_dir(id).join(CONFIG_FILE);
    let text = std::fs::read(&path).map_err(io("read", &path))?;
    serde_json::from_slice(&text).map_err(|e| io("read", &path)(e.into()))
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
    let address = state.network.as_ref().map(|a| a.address);
    let address6 = state
        .network
        .as_ref()
        .and_then(|a| a.ipv6.map(|v6| v6.address));
    for (file, text) in [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            network::hosts_file(&hostname, address, address6, state.name.as_deref()),
        ),
        (
            "resolv.conf",
            network::resolv_conf(&host_resolv, &req.network, &req.dns),
        ),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io("write", &path))?;
    }
    Ok(())
}

/// Takes an address (and host ports) on the bridge, records them, and makes sure the bridge and its
/// NAT are there, with this container's ports among the published ones.
fn join_bridge(
    paths: &Paths,
    state: &mut State,
    bridge: &BridgeConfig,
    ports: &[PortMapping],
) -> Result<(), ContainerError> {
    let is_live = |holder: &str| {
        state::load(paths, holder)
            .is_ok_and(|s| s.status != Status::Exited && s.observed() != Observed::Dead)
    };
    state.network = Some(network::prepare(bridge, &state.id, ports, &is_live)?);
    state::save(paths, state)?;
    let published = if ports.is_empty() {
        Vec::new()
    } else {
        published_ports(paths, &bridge.name, None)
    };
    network::ensure_bridge(bridge, &published)?;
    Ok(())
}

/// The bridge a container is attached to: a named network's from its record, the default one's
/// from the attachment (its subnets follow from its addresses).
fn bridge_of(paths: &Paths, attachment: &Attachment) -> BridgeConfig {
    if let Some(record) = attachment
        .network
        .as_ref()
        .and_then(|name| paths.network_record(name).ok())
        .filter(|r| r.bridge == attachment.bridge)
    {
        return paths.bridge_of_record(&record);
    }
    let subnet = ipnetwork::Ipv4Network::new(attachment.address, attachment.prefix)
        .and_then(|n| ipnetwork::Ipv4Network::new(n.network(), attachment.prefix))
        .unwrap_or(paths.subnet);
    BridgeConfig {
        subnet6: attachment.ipv6.and_then(|v6| v6.subnet()),
        ..paths.bridge_named(&attachment.bridge, subnet)
    }
}

/// The ports published on `bridge` by containers that hold them, but `except`.
fn published_ports(paths: &Paths, bridge: &str, except: Option<&str>) -> Vec<network::Published> {
    state::list(paths)
        .into_iter()
        .filter(|s| Some(s.id.as_str()) != except)
        .filter_map(|s| s.network)
        .filter(|a| a.bridge == bridge)
        .flat_map(|a| a.published().collect::<Vec<_>>())
        .collect()
}

/// Gives the container's place on the bridge back: veth, address, ports (and their NAT rules).
fn leave_bridge(paths: &Paths, state: &State) -> Result<(), ContainerError> {
    let Some(attachment) = &state.network else {
        return Ok(());
    };
    let bridge = bridge_of(paths, attachment);
    network::release(&bridge, &state.id, attachment)?;
    hosts::refresh(paths, &bridge)?;
    if !attachment.ports.is_empty() {
        network::sync_ports(
            &bridge,
            &published_ports(paths, &bridge.name, Some(&state.id)),
        )?;
    }
    Ok(())
}

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
            return Err(io("remove", &state.container_dir)(e))
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
    let remove_subdir = |sub: &PathBuf| remove_entry(sub, |p| std::fs::remove_dir_all(p));
    std::thread::scope(|scope| {
        // A thread that cannot be started leaves its directory to this one.
        let (started, inline): (Vec<_>, Vec<_>) = subdirs
            .iter()
            .map(|sub| {
                // The main thread's stack size: removal recurses as deep as the container nested.
                std::thread::Builder::new()
                    .stack_size(8 << 20)
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

/// 64 hex digits from the kernel's random pool.
pub(crate) fn new_id() -> String {
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
