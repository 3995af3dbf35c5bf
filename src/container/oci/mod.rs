//! The OCI runtime front door (runc's command line): `create` from a bundle, `start`, `state`,
//! `kill`, `delete`, `pause`/`resume`, `exec --process`, `update --resources`, `ps`. The container
//! is made by the same `create` as `poc run`'s; what differs is that poc exits once the init waits
//! at its start gate, so the init becomes the caller's child (conmon and containerd's shim are
//! subreapers and reap it themselves), and that the gate is a FIFO in the state directory that
//! `start` opens later.

mod bundle;
mod exec;
mod lifecycle;

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub use bundle::network_plan;
pub use exec::{exec, ExecRequest};
pub use lifecycle::{delete, kill, pause, pids, resume, start, state, state_bytes, update};

use super::state::{self, State, StateError, Status};
use super::{destroy, ContainerError, Front, Prepared};
use crate::cgroups::{Hierarchies, Manager};
use crate::config::Paths;
use crate::error::io;
use crate::id::ContainerId;
use crate::network::NetworkMode;
use crate::process::ChildStdio;
use crate::rootfs::RootSource;

/// The OCI runtime spec version poc implements.
pub const OCI_VERSION: &str = "1.0.2";

/// The FIFO an OCI container's init waits on until `start` writes to it.
const START_FIFO: &str = "exec.fifo";

/// What `poc create` was asked for, beyond the bundle's config.json.
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub new_keyring: bool,
    /// cgroupsPath is systemd's "slice:prefix:name".
    pub systemd_cgroup: bool,
}

/// The bundle front door's part of `Prepared`.
pub struct BundleOptions {
    pub preserve_fds: u32,
    pub new_keyring: bool,
    /// Namespaces given by path, opened here and joined by the init.
    pub join: Vec<(OwnedFd, CloneFlags)>,
    /// A pid namespace given by path: the init is cloned into it.
    pub join_pid: Option<OwnedFd>,
}

/// OCI ids: what runc accepts (letters, digits, `_ + - .`), which also keeps them one path
/// component of the state root.
pub fn check_id(id: &str) -> Result<ContainerId, ContainerError> {
    ContainerId::parse(id).map_err(|e| ContainerError::Refused(e.to_string()))
}

/// The container `id` exactly (no name or prefix lookup: a runtime's caller names what it made).
fn load(paths: &Paths, id: &str) -> Result<State, ContainerError> {
    check_id(id)?;
    state::load(paths, id).map_err(|e| match e {
        StateError::NoSuchContainer(_) => not_exist(id),
        e => e.into(),
    })
}

fn load_locked(paths: &Paths, id: &str) -> Result<(state::Lock, State), ContainerError> {
    check_id(id)?;
    state::load_locked(paths, id).map_err(|e| match e {
        StateError::NoSuchContainer(_) => not_exist(id),
        e => e.into(),
    })
}

/// runc's wording, which containerd and podman look for.
fn not_exist(id: &str) -> ContainerError {
    ContainerError::Refused(format!("container {id} does not exist"))
}

/// `create`: the container set up from the bundle, its init waiting for `start`; the pid file
/// written; nothing printed (without a terminal, poc's stdio are the container's).
pub fn create(paths: &Paths, req: CreateRequest) -> Result<(), ContainerError> {
    let id = check_id(&req.id)?;
    if state::exists(paths, &req.id) {
        return Err(ContainerError::Refused(format!(
            "container with id {} already exists",
            req.id
        )));
    }
    crate::private::ensure_dir(&paths.state_root.join("containers"))
        .map_err(io("create", &paths.state_root))?;
    let (bundle_dir, spec) = bundle::read(&req.bundle)?;
    let mut p = prepare(paths, &req, id, bundle_dir, spec)?;
    let console_size = p
        .spec
        .process()
        .as_ref()
        .and_then(|process| process.console_size())
        .map(|s| (s.height(), s.width()));
    let stdio = if p.state.tty {
        ChildStdio::Terminal
    } else {
        ChildStdio::Inherit
    };
    let made = super::create(paths, &mut p, stdio).and_then(|created| {
        if let (Some(master), Some(socket)) = (&created.pty_master, &req.console_socket) {
            send_console(socket, master, console_size)?;
        }
        let pid = created.child.pid.as_raw();
        p.state.status = Status::Created;
        p.state.monitor = None;
        state::save(paths, &p.state)?;
        if let Some(file) = &req.pid_file {
            write_pid_file(file, pid)?;
        }
        Ok(())
    });
    made.map_err(|e| e.with_cleanup(destroy(paths, &p.state)))
}

/// What can be checked before anything is made: the process, its privileges, the cgroup (unused),
/// the seccomp filter, the namespaces given by path; the state record to write first.
fn prepare(
    paths: &Paths,
    req: &CreateRequest,
    id: ContainerId,
    bundle_dir: PathBuf,
    spec: Spec,
) -> Result<Prepared, ContainerError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| ContainerError::Refused("config.json has no process to run".into()))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && req.console_socket.is_none() {
        return Err(ContainerError::Refused(
            "process.terminal needs --console-socket: the pty master is sent there".into(),
        ));
    }
    crate::security::check_grantable(process)
        .map_err(|e| ContainerError::Refused(e.to_string()))?;
    let hierarchies = Hierarchies::detect()?;
    let cgroup_path = bundle::cgroup_path(&spec, paths, &req.id, req.systemd_cgroup);
    let cgroup = Manager::for_path(&hierarchies, &cgroup_path)?;
    cgroup.check_unused()?;
    let seccomp = super::compile_seccomp(paths, &spec)?;
    let (join, join_pid) = bundle::open_joined_namespaces(&spec)?;
    let new_netns = bundle::has_new_namespace(&spec, LinuxNamespaceType::Network);
    let state = State {
        command: process.args().clone().unwrap_or_default(),
        tty: terminal,
        network_mode: if new_netns {
            NetworkMode::None
        } else {
            NetworkMode::Host
        },
        bundle: Some(bundle_dir),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..State::creating(
            id,
            cgroup,
            cgroup_path,
            paths.container_state_dir(&req.id).join("work"),
        )
    };
    Ok(Prepared {
        spec,
        // An OCI bundle brings its own network namespace; poc attaches it to no bridge.
        bridge: None,
        seccomp,
        hierarchies,
        state,
        root: RootSource::Bundle,
        front: Front::Bundle(BundleOptions {
            preserve_fds: req.preserve_fds,
            new_keyring: req.new_keyring,
            join,
            join_pid,
        }),
    })
}

/// The start gate of an OCI container: a FIFO in its state directory (root's alone), opened here
/// read-write so that the open never blocks; the init reads a byte from it, `start` writes one.
pub fn open_start_fifo(paths: &Paths, id: &str) -> Result<OwnedFd, ContainerError> {
    let path = paths.container_state_dir(id).join(START_FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| io("create", &path)(e.into()))?;
    Ok(nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io("open", &path)(e.into()))?)
}

/// Hands the pty master to the caller's console socket (SCM_RIGHTS), sized as the Spec asks.
fn send_console(
    socket: &Path,
    master: &OwnedFd,
    size: Option<(u64, u64)>,
) -> Result<(), ContainerError> {
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows as u16,
            ws_col: cols as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on a pty master we hold, with a valid winsize.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(io("connect to the console socket", socket))?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(b"/dev/ptmx")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| io("send the terminal to", socket)(e.into()))?;
    Ok(())
}

/// The pid as bare digits (containerd's shim parses it with Atoi), written whole and renamed in.
fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.poc-tmp"));
    std::fs::write(&tmp, pid.to_string()).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("write", path)(e).into()
    })
}
