//! `poc run`: a container from an image and flags, started at once, with poc (or, with `-d`, a
//! forked monitor) staying to log its output, reap it and record its exit. Creation itself is
//! `super::create`'s, shared with the OCI front door.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::Spec;

use super::state::{self, State, StateError, Status};
use super::{
    compile_seccomp, create, destroy, events, leave_bridge, logs, ContainerError, Front, Prepared,
    MOUNT_POINT,
};
use crate::cgroups::{Hierarchies, Manager, MemoryWatch};
use crate::config::Paths;
use crate::error::io;
use crate::id::ContainerId;
use crate::image::Store;
use crate::process::{
    self, Attach, ChildStdio, ParentIo, ProcessError, Running, Stream, Supervisor, Watch,
};
use crate::rootfs::RootSource;
use crate::spec::{build_spec, RunRequest};
use crate::units::now_secs;

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
    let id = ContainerId::generate();
    let container_dir = paths.container_dir(&id);
    let etc_dir = paths.container_etc_dir(&id);
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
                    // The exit code (125-127) as one byte, then the message.
                    let mut report = vec![e.exit_code() as u8];
                    report.extend_from_slice(e.to_string().as_bytes());
                    let _ = nix::unistd::write(&report_w, &report);
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
                    code: i32::from(*code),
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
