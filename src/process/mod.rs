//! Processes in containers: the init (clone3 into new namespaces, straight into its cgroup where the
//! kernel allows) and exec'd processes (joining an init's namespaces), each with a sync channel to the
//! parent, its stdio plan and the setup sequence up to exec. Owns no host state.

pub mod hooks;
mod init;
mod stub;
mod supervise;
mod syscall;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub use supervise::{write_all, Attach, Supervisor, Watch};

use crate::network::NamespacePlan;
use crate::rootfs::RootSource;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("clone of the container's init: {0}")]
    Clone(nix::Error),
    #[error("sync channel with the container's init: {0}")]
    Sync(nix::Error),
    /// The init reported a failure before exec; `code` follows Docker (125, 126, 127).
    #[error("{message}")]
    Init { code: i32, message: String },
    #[error("preparing the exec stub (memfd): {0}")]
    Stub(nix::Error),
    #[error("{op}: {source}")]
    Terminal {
        op: &'static str,
        source: nix::Error,
    },
    #[error("joining the container's pid namespace: {0}")]
    PidNamespace(nix::Error),
    #[error("--preserve-fds {count}: descriptor {fd} is not open (the caller passes 3 .. 3+N)")]
    PreserveFds { count: u32, fd: RawFd },
}

impl ProcessError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ProcessError::Init { code, .. } => *code,
            _ => 125,
        }
    }
}

/// Which process is being started.
pub enum Role {
    /// A container's first process: new namespaces, its root filesystem, its network.
    Init {
        root: RootSource,
        network: NamespacePlan,
        /// The host's cgroup hierarchies, read before the init's cgroup namespace hides them: the
        /// container's /sys/fs/cgroup mirrors them.
        cgroups: crate::cgroups::Hierarchies,
        /// Existing namespaces the init joins instead of making new ones (OCI `namespaces[].path`).
        join: Vec<(OwnedFd, nix::sched::CloneFlags)>,
        /// Join a new session keyring, so that the container never sees the caller's keys.
        new_keyring: bool,
    },
    /// A process joining a running container (`poc exec`): its namespaces, opened from the init's
    /// /proc/PID/ns, the mount namespace last. See [`spawn`] for who joins which.
    Exec {
        namespaces: Vec<(OwnedFd, nix::sched::CloneFlags)>,
        /// The pid namespace the process is born in (none: poc's own).
        pid: Option<OwnedFd>,
        /// Join a new session keyring, so that the process never sees the caller's keys.
        new_keyring: bool,
        /// The v1 pids leaf's `tasks`, opened by poc: the process writes `0` to it first thing
        /// (see `cgroups::Manager::pids_tasks_file`).
        pids_tasks: Option<OwnedFd>,
    },
}

/// Where the process's stdin, stdout and stderr go.
pub enum ChildStdio {
    /// The child's ends of pipes the parent reads and writes; no stdin pipe means /dev/null.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty allocated inside the container; the master is sent to the parent.
    Terminal,
    /// The caller's own stdin, stdout and stderr (an OCI runtime's: conmon's or the shim's pipes).
    Inherit,
}

/// The parent's ends of the child's pipes.
#[derive(Default)]
pub struct ParentIo {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Opens /dev/null on any of fds 0-2 that poc was started without, so that no descriptor poc opens
/// later lands there (a container process sets its stdio up by dup2 onto 0-2 and closes the rest).
pub fn ensure_standard_descriptors() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // open returns the lowest free descriptor: this one.
            // SAFETY: a plain open of /dev/null, left open for the life of the process.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// SIGCHLD back to its default. A caller may hand poc SIGCHLD ignored (exec keeps SIG_IGN): the
/// kernel then reaps poc's children itself, sends no signal, and every wait for one (an OCI exec's
/// process, a hook, a killed init, a benchmark's peer) fails with ECHILD and loses its status.
pub fn default_sigchld() {
    // SAFETY: the default disposition installs no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
}

/// `--preserve-fds N` hands the caller's descriptors 3 .. 3+N to the container's process. Checked
/// before poc opens anything of its own: a number the caller left free would be filled by one of
/// poc's descriptors (the start gate, the cgroup directory the process is born in, a namespace),
/// and the container would be given it, with a way to the host's root.
pub fn check_preserved_fds(count: u32) -> Result<(), ProcessError> {
    for fd in 3..3 + count as RawFd {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(ProcessError::PreserveFds { count, fd });
        }
    }
    Ok(())
}

/// Runs `spawn` with poc's children born in the pid namespace `ns` (none: poc's own), then puts
/// poc's own back. Only the container's process joins it, never what poc forks later: the runtime's
/// hooks belong to the runtime's namespaces (they have the host's root and every capability), and
/// in a pod's pid namespace the pod's processes could see, signal and trace them.
pub fn spawn_in_pid_namespace<T>(
    ns: Option<&OwnedFd>,
    spawn: impl FnOnce() -> Result<T, ProcessError>,
) -> Result<T, ProcessError> {
    let Some(ns) = ns else {
        return spawn();
    };
    let own = nix::fcntl::open(
        "/proc/self/ns/pid",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(ProcessError::PidNamespace)?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(ProcessError::PidNamespace)?;
    let spawned = spawn();
    // poc's own active namespace: always allowed.
    let restored = nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWPID);
    let spawned = spawned?;
    restored.map_err(ProcessError::PidNamespace)?;
    Ok(spawned)
}

/// Pipes for a container's stdio: the child's ends and the parent's.
pub fn pipes(with_stdin: bool) -> Result<(ChildStdio, ParentIo), ProcessError> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ProcessError::Sync);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin_child, stdin_parent) = if with_stdin {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok((
        ChildStdio::Pipes {
            stdin: stdin_child,
            stdout: out_w,
            stderr: err_w,
        },
        ParentIo {
            stdin: stdin_parent,
            stdout: Some(out_r),
            stderr: Some(err_r),
        },
    ))
}

/// Which of a container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// What the child needs besides the Spec, whose `process` it runs.
pub struct ChildConfig<'a> {
    pub spec: &'a Spec,
    pub role: Role,
    pub stdio: ChildStdio,
    /// cgroup v1 `tasks` files the child writes `0` to before anything else (it joins them itself).
    pub join_cgroups: Vec<std::path::PathBuf>,
    /// The compiled seccomp filter, loaded just before the command (none: unconfined).
    pub seccomp: Option<&'a crate::security::seccomp::Filter>,
    /// Descriptors 3 .. 3+N that the command inherits (OCI `--preserve-fds`); all others are closed.
    pub preserve_fds: u32,
    /// The start gate: once set up, the child says it is ready and reads one byte from this before
    /// it runs its command (`start`). None: it goes straight on (exec'd processes).
    pub gate: Option<OwnedFd>,
    /// The Spec's hooks: the child asks the parent to run prestart and createRuntime before
    /// pivot_root, and runs createContainer there and startContainer after the gate itself.
    pub hooks: Option<&'a oci_spec::runtime::Hooks>,
}

/// A pipe for the start gate of a process whose parent starts it itself (`poc run`): the child's
/// end for `ChildConfig::gate`, the parent's end for `Child::start`.
pub fn gate_pipe() -> Result<(OwnedFd, OwnedFd), ProcessError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ProcessError::Sync)
}

/// A cloned init, waiting for `release`.
pub struct Child {
    pub pid: Pid,
    /// True when clone3 placed it in the cgroup given to `spawn`.
    pub born_in_cgroup: bool,
    sock: OwnedFd,
    /// The command, to name it if the exec stub reports that it cannot be executed.
    command: String,
}

/// The container's process after exec.
pub struct Running {
    pub pid: Pid,
    /// The pty master when the Spec asks for a terminal.
    pub pty_master: Option<OwnedFd>,
}

// Message tags on the sync channel (init -> parent). EOF means the command was exec'd (the socket
// is close-on-exec there). MSG_EXEC_FAILED comes from the exec stub with the errno of its execve.
// MSG_HOOKS asks the parent to run its hooks now (the init waits for MSG_HOOKS_DONE); MSG_READY
// says the child waits at its start gate.
const MSG_PTY: u8 = b'P';
const MSG_ERROR: u8 = b'E';
const MSG_EXEC_FAILED: u8 = b'X';
const MSG_HOOKS: u8 = b'H';
const MSG_READY: u8 = b'R';
// Parent -> init: go on (followed by the state JSON its hooks read), and hooks done.
const MSG_GO: u8 = b'G';
const MSG_HOOKS_DONE: u8 = b'h';

/// What the parent does while the child sets up.
pub struct Release<'a> {
    /// The container's OCI state, handed to the child's own hooks.
    pub state: &'a [u8],
    /// Runs the runtime's hooks (prestart, createRuntime) when the child asks for them.
    pub runtime_hooks: &'a mut dyn FnMut() -> Result<(), String>,
}

/// Clones the child (an init into the Spec's new namespaces); it waits until `release`. `cgroup_dir`
/// is a cgroup2 directory to be born in (CLONE_INTO_CGROUP), so not even the init runs outside its
/// cgroup. The child's ends of its stdio are closed here, in the parent, once it exists.
///
/// The child is born undumpable (the flag is inherited from this process, which sets it first):
/// until its command runs, a process in the container cannot open its /proc/PID/fd, cwd, root or
/// exe, which are the host's. Its first act is to close every descriptor it does not need.
pub fn spawn(mut cfg: ChildConfig, cgroup_dir: Option<&OwnedFd>) -> Result<Child, ProcessError> {
    nix::sys::prctl::set_dumpable(false).map_err(ProcessError::Sync)?;
    let stub = stub::memfd()?;
    let command = cfg
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ProcessError::Sync)?;
    let cgroup = cgroup_dir.map(|fd| fd.as_raw_fd());
    let (pid, born_in_cgroup) = match cfg.role {
        Role::Init { .. } => {
            let cloned = clone_child(namespace_flags(cfg.spec), cgroup);
            let (pid, born) = cloned.map_err(ProcessError::Clone)?;
            if pid == 0 {
                drop(parent_sock);
                init::run(&cfg, child_sock, stub);
            }
            (pid, born)
        }
        Role::Exec { .. } => clone_exec(&mut cfg, cgroup, &parent_sock, child_sock, stub)?,
    };
    let oom_score_adj = cfg.spec.process().as_ref().and_then(|p| p.oom_score_adj());
    drop(cfg);
    if let Some(adj) = oom_score_adj {
        // From here, through the host's /proc: the child may have no /proc of its own.
        let path = format!("/proc/{pid}/oom_score_adj");
        if let Err(e) = std::fs::write(&path, adj.to_string()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            return Err(ProcessError::Init {
                code: 125,
                message: format!("process.oomScoreAdj {adj}: {e}"),
            });
        }
    }
    Ok(Child {
        pid: Pid::from_raw(pid),
        born_in_cgroup,
        sock: parent_sock,
        command,
    })
}

impl Child {
    /// Lets the child set up (root, privileges...) and waits until it is ready at its start gate.
    /// Returns the pty master when the Spec asks for a terminal.
    pub fn prepare(&mut self, release: Release) -> Result<Option<OwnedFd>, ProcessError> {
        let prepared = self.go(release.state).and_then(|()| {
            match self.receive(true, release.runtime_hooks)? {
                (pty, true) => Ok(pty),
                (_, false) => Err(ProcessError::Sync(nix::Error::EPIPE)),
            }
        });
        self.reaped_on_error(prepared)
    }

    /// Opens the gate of a prepared child (`gate` is the parent's end of its `gate_pipe`) and
    /// returns once the command was exec'd, or with the error that kept it from running.
    pub fn start(
        self,
        gate: OwnedFd,
        pty_master: Option<OwnedFd>,
    ) -> Result<Running, ProcessError> {
        let opened = nix::unistd::write(&gate, b"S").map_err(ProcessError::Sync);
        drop(gate);
        let ran = opened.and_then(|_| self.receive(false, &mut || Ok(())));
        let (pty, _) = self.reaped_on_error(ran)?;
        Ok(Running {
            pid: self.pid,
            pty_master: pty_master.or(pty),
        })
    }

    /// Lets a child without a gate go on; returns once the exec happened, or with the child's own
    /// error (command not found, mount refused...).
    pub fn release(self) -> Result<Running, ProcessError> {
        let ran = self
            .go(b"{}")
            .and_then(|()| self.receive(false, &mut || Ok(())));
        let (pty_master, _) = self.reaped_on_error(ran)?;
        Ok(Running {
            pid: self.pid,
            pty_master,
        })
    }

    /// A child that fails before its command runs is killed (it may still be waiting on us) and
    /// reaped here. Left as a zombie it would pass to poc's caller when poc exits (conmon and
    /// containerd's shim are subreapers), and an exec'd one would keep the container's pid
    /// namespace, and so its init, from ending until someone reaped it.
    fn reaped_on_error<T>(&self, result: Result<T, ProcessError>) -> Result<T, ProcessError> {
        if result.is_err() {
            let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
            while nix::sys::wait::waitpid(self.pid, None) == Err(nix::Error::EINTR) {}
        }
        result
    }

    fn go(&self, state: &[u8]) -> Result<(), ProcessError> {
        let mut msg = Vec::with_capacity(state.len() + 1);
        msg.push(MSG_GO);
        msg.extend_from_slice(state);
        nix::unistd::write(&self.sock, &msg).map_err(ProcessError::Sync)?;
        Ok(())
    }

    /// Reads the child's messages until it is ready (`until_ready`) or its command runs (EOF).
    fn receive(
        &self,
        until_ready: bool,
        runtime_hooks: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(Option<OwnedFd>, bool), ProcessError> {
        let mut pty_master = None;
        loop {
            let mut buf = [0u8; 4096];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!([RawFd; 1]);
            let msg = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(ProcessError::Sync)?;
            let mut fds = Vec::new();
            for c in msg.cmsgs().map_err(ProcessError::Sync)? {
                if let ControlMessageOwned::ScmRights(received) = c {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fds.extend(
                        received
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let len = msg.bytes;
            match buf[..len].first() {
                None => return Ok((pty_master, false)),
                Some(&MSG_PTY) => pty_master = fds.pop(),
                Some(&MSG_READY) if until_ready => return Ok((pty_master, true)),
                Some(&MSG_READY) => {}
                Some(&MSG_HOOKS) => {
                    runtime_hooks().map_err(|message| ProcessError::Init { code: 125, message })?;
                    nix::unistd::write(&self.sock, &[MSG_HOOKS_DONE])
                        .map_err(ProcessError::Sync)?;
                }
                Some(&MSG_ERROR) if len >= 2 => {
                    return Err(ProcessError::Init {
                        code: buf[1] as i32,
                        message: String::from_utf8_lossy(&buf[2..len]).into_owned(),
                    })
                }
                Some(&MSG_EXEC_FAILED) if len >= 2 => {
                    return Err(exec_failed(&self.command, buf[1] as i32));
                }
                Some(_) => return Err(ProcessError::Sync(nix::Error::EBADMSG)),
            }
        }
    }
}

/// Docker's codes for a command that cannot run: 127 when it does not exist, 126 otherwise.
/// The wording is runc's ("no such file or directory", "permission denied"): podman, containerd
/// and dockerd derive 127 and 126 from it.
fn exec_failed(command: &str, errno: i32) -> ProcessError {
    match nix::Error::from_raw(errno) {
        nix::Error::ENOENT => ProcessError::Init {
            code: 127,
            message: format!("exec: {command:?}: no such file or directory"),
        },
        e => ProcessError::Init {
            code: 126,
            message: format!(
                "exec: {command:?} cannot be executed: {}",
                e.desc().to_lowercase()
            ),
        },
    }
}

/// The namespaces the init is cloned into: those of the Spec without a path (a path is joined).
fn namespace_flags(spec: &Spec) -> u64 {
    let mut flags = 0u64;
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces.into_iter().filter(|ns| ns.path().is_none()) {
        flags |= match ns.typ() {
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            // The cgroup namespace is unshared by the init once it is inside its cgroups (v1 moves
            // happen after clone), so that its cgroup root is the container's leaf.
            _ => 0,
        } as u64;
    }
    flags
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Clones a process that joins a running container (`poc exec`) so that it is never seen in the
/// container before it is inside. Cloned straight into the container's pid namespace, it would
/// wait there for poc's go with the host's root, mounts and network: any process of the container
/// could read the host's mount table and sockets through its /proc/PID, and one with
/// CAP_SYS_PTRACE could walk the host's files through its root or through a directory
/// descriptor it inherited (the cgroup2 leaf's climbs to the host's root). So an intermediate
/// child, born in the cgroup2 leaf but in poc's own pid namespace (invisible to the container),
/// puts the process's stdio in place and closes every other descriptor, joins the container's
/// v1 cgroups and namespaces (the mount namespace last, which moves its root and cwd into the
/// container) and, for its children, the pid namespace; then clones the process as poc's own
/// child (CLONE_PARENT), reports its pid and exits.
fn clone_exec(
    cfg: &mut ChildConfig,
    cgroup: Option<RawFd>,
    parent_sock: &OwnedFd,
    child_sock: OwnedFd,
    stub: OwnedFd,
) -> Result<(i32, bool), ProcessError> {
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ProcessError::Sync)?;
    let (middle, born_in_cgroup) = clone_child(0, cgroup).map_err(ProcessError::Clone)?;
    if middle == 0 {
        // Only poc holds the parent's end: the process sees its channel close if poc dies.
        let _ = nix::unistd::close(parent_sock.as_raw_fd());
        drop(report_r);
        intermediate(cfg, child_sock, stub, report_w);
    }
    drop(report_w);
    let mut report = Vec::new();
    let read = std::io::Read::read_to_end(&mut std::fs::File::from(report_r), &mut report);
    while nix::sys::wait::waitpid(Pid::from_raw(middle), None) == Err(nix::Error::EINTR) {}
    read.map_err(|e| ProcessError::Sync(nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;
    match report.as_slice() {
        [b'P', pid @ ..] if pid.len() == 4 => {
            let pid = i32::from_le_bytes([pid[0], pid[1], pid[2], pid[3]]);
            Ok((pid, born_in_cgroup))
        }
        [b'E', message @ ..] => Err(ProcessError::Init {
            code: 125,
            message: String::from_utf8_lossy(message).into_owned(),
        }),
        _ => Err(ProcessError::Sync(nix::Error::EPIPE)),
    }
}

/// The intermediate's part of [`clone_exec`]: enters the container, clones the process, writes
/// `P` and its pid (or `E` and what failed) to `report`, and exits.
fn intermediate(cfg: &mut ChildConfig, sock: OwnedFd, stub: OwnedFd, report: OwnedFd) -> ! {
    // A panic must not unwind into the parent's frames, which this forked child still has.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        init::enter_for_exec(cfg, &sock, &stub, &[report.as_raw_fd()])?;
        match clone_child(libc::CLONE_PARENT as u64, None) {
            Ok((0, _)) => {
                // The report is the intermediate's to write (and poc's to see end with it).
                let _ = nix::unistd::close(report.as_raw_fd());
                init::run(cfg, sock, stub);
            }
            Ok((pid, _)) => Ok(pid),
            Err(e) => Err(format!("clone: {e}")),
        }
    }));
    let message = match outcome {
        Ok(Ok(pid)) => [&[b'P'][..], &pid.to_le_bytes()].concat(),
        Ok(Err(e)) => format!("E{e}").into_bytes(),
        Err(_) => b"Epoc exec's intermediate process panicked".to_vec(),
    };
    let _ = nix::unistd::write(&report, &message);
    // SAFETY: _exit skips the parent's atexit handlers and buffered streams, which are not ours.
    unsafe { libc::_exit(0) }
}

/// Fork-like clone3 (no new stack): returns 0 in the child. Falls back to plain clone3 when the kernel
/// refuses CLONE_INTO_CGROUP, and to clone(2) on kernels without clone3.
fn clone_child(flags: u64, cgroup: Option<RawFd>) -> nix::Result<(i32, bool)> {
    // A sibling (CLONE_PARENT) gets the caller's own exit signal; clone3 wants none named.
    let sibling = flags & libc::CLONE_PARENT as u64 != 0;
    let exit_signal = if sibling { 0 } else { libc::SIGCHLD as u64 };
    let call = |flags: u64, cgroup: Option<RawFd>| -> nix::Result<i32> {
        let mut args = CloneArgs {
            flags,
            exit_signal,
            ..Default::default()
        };
        if let Some(fd) = cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd as u64;
        }
        // SAFETY: clone3 without CLONE_VM duplicates the process like fork; the args outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        nix::Error::result(ret).map(|pid| pid as i32)
    };
    if let Some(fd) = cgroup {
        match call(flags, Some(fd)) {
            Ok(pid) => return Ok((pid, true)),
            Err(nix::Error::ENOSYS) => {}
            Err(_) => return call(flags, None).map(|pid| (pid, false)),
        }
    }
    match call(flags, None) {
        Err(nix::Error::ENOSYS) => {
            // SAFETY: clone(2) with a null stack behaves like fork.
            let ret = unsafe { libc::syscall(libc::SYS_clone, flags | exit_signal, 0, 0, 0, 0) };
            nix::Error::result(ret).map(|pid| (pid as i32, false))
        }
        other => other.map(|pid| (pid, false)),
    }
}

/// A detached monitor lives as long as its container but, once the container runs, executes only
/// its poll loop: the code and constants that created the container need not stay mapped. Read-only
/// mappings of poc's own binary without private (written) pages hold nothing but the file's bytes,
/// so dropping them is safe; what the loop uses refaults from the page cache, page by page
/// (MADV_RANDOM turns off the kernel's 64 KiB fault-around). This keeps a monitor near 1 MiB of RSS.
pub fn release_startup_code() {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(range) = fields.first().and_then(|f| f.split_once('-')) {
            // A mapping's header: "start-end perms offset dev inode path".
            let ours = fields.len() >= 6
                && !fields[1].contains('w')
                && std::path::Path::new(fields[5]) == exe;
            current = match (
                ours,
                usize::from_str_radix(range.0, 16),
                usize::from_str_radix(range.1, 16),
            ) {
                (true, Ok(start), Ok(end)) => Some((start, end - start)),
                _ => None,
            };
        } else if let (Some((start, len)), ["Anonymous:", "0", "kB"]) = (current, fields.as_slice())
        {
            // SAFETY: a read-only mapping of our own binary with no private pages: its contents come
            // back from the file on the next access.
            unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_RANDOM);
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
            }
            current = None;
        }
    }
}
