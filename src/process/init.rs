//! A container process from clone to exec, in the order the kernel needs. An init: cgroup namespace,
//! hostname, network, root filesystem; an exec'd process: the init's namespaces. Then both: terminal or
//! stdio, working directory, scheduling, privileges, user, exec.
//! Runs in the cloned child only; it never returns into poc's own code.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::{access, AccessFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{ChildConfig, ChildStdio, Role, MSG_ERROR, MSG_PTY};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error("{0}")]
    Setup(String),
    #[error("container command {0:?} not found in PATH ({1})")]
    NotFound(String, String),
    #[error("container command {0:?}: no such file or directory")]
    NoSuchFile(String),
    #[error("container command {0:?} cannot be executed: {1}")]
    CannotExecute(String, nix::Error),
}

impl InitError {
    fn exit_code(&self) -> i32 {
        match self {
            InitError::Setup(_) => 125,
            InitError::NotFound(..) | InitError::NoSuchFile(_) => 127,
            InitError::CannotExecute(..) => 126,
        }
    }
}

fn setup_err(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> InitError + '_ {
    move |e| InitError::Setup(format!("{what}: {e}"))
}

/// Entry point in the child. Reports any failure on the sync channel and exits with Docker's code.
pub fn run(cfg: &ChildConfig, sock: OwnedFd) -> ! {
    // A panic must not unwind into the parent's frames, which this forked child still has.
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup_and_exec(cfg, &sock)));
    let (code, message) = match result {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => (e.exit_code(), e.to_string()),
        Err(_) => (125, "the container's init panicked".to_string()),
    };
    let mut msg = vec![MSG_ERROR, code as u8];
    msg.extend_from_slice(message.as_bytes());
    msg.truncate(4000);
    let _ = nix::unistd::write(&sock, &msg);
    // SAFETY: _exit skips the parent's atexit handlers and buffered streams, which are not ours.
    unsafe { libc::_exit(code) }
}

fn setup_and_exec(cfg: &ChildConfig, sock: &OwnedFd) -> Result<Infallible, InitError> {
    let spec = cfg.spec;
    wait_for_release(sock)?;
    for file in &cfg.join_cgroups {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"0"))
            .map_err(|e| setup_err(&format!("joining cgroup {}", file.display()))(&e))?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Setup("the spec has no process".into()))?;
    let tty = process.terminal().unwrap_or(false);
    match &cfg.role {
        Role::Init { root, network } => {
            if has_namespace(spec, LinuxNamespaceType::Cgroup) {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                    .map_err(|e| setup_err("cgroup namespace")(&e))?;
            }
            if has_namespace(spec, LinuxNamespaceType::Uts) {
                if let Some(hostname) = spec.hostname() {
                    nix::unistd::sethostname(hostname).map_err(|e| setup_err("hostname")(&e))?;
                }
            }
            crate::network::setup_in_namespace(*network).map_err(|e| setup_err("network")(&e))?;
            crate::rootfs::prepare(spec, root, tty)
                .map_err(|e| setup_err("root filesystem")(&e))?;
        }
        Role::Exec { namespaces, .. } => {
            for (fd, kind) in namespaces {
                nix::sched::setns(fd, *kind)
                    .map_err(|e| setup_err(&format!("joining the {kind:?} namespace"))(&e))?;
            }
        }
    }

    nix::unistd::setsid().map_err(|e| setup_err("setsid")(&e))?;
    match &cfg.stdio {
        ChildStdio::Terminal => attach_terminal(sock, matches!(cfg.role, Role::Init { .. }))?,
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            match stdin {
                Some(fd) => dup_onto_stdio(fd, &[0])?,
                None => redirect_stdin_to_null()?,
            }
            dup_onto_stdio(stdout, &[1])?;
            dup_onto_stdio(stderr, &[2])?;
        }
        ChildStdio::Inherit { stdin: true } => {}
        ChildStdio::Inherit { stdin: false } => redirect_stdin_to_null()?,
    }

    let cwd = process.cwd();
    std::fs::create_dir_all(cwd)
        .map_err(|e| setup_err(&format!("working directory {}", cwd.display()))(&e))?;
    nix::unistd::chdir(cwd)
        .map_err(|e| setup_err(&format!("working directory {}", cwd.display()))(&e))?;

    if let Some(nice) = process.scheduler().as_ref().and_then(|s| *s.nice()) {
        // SAFETY: plain syscall on our own process.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            return Err(setup_err("nice")(&nix::Error::last()));
        }
    }
    let user = match &cfg.role {
        Role::Exec {
            user: Some(user), ..
        } => Some(resolve_user(user)?),
        _ => None,
    };

    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let command = args
        .first()
        .ok_or_else(|| InitError::Setup("no command to run".into()))?;
    let path = find_executable(command, &env)?;

    if process.no_new_privileges().unwrap_or(false) {
        crate::security::set_no_new_privs().map_err(|e| setup_err("privileges")(&e))?;
    }
    if let Some(caps) = process.capabilities() {
        crate::security::apply_capabilities(caps).map_err(|e| setup_err("capabilities")(&e))?;
    }
    // Last: a non-root uid loses the capabilities needed to change it.
    if let Some((uid, gid)) = user {
        let gid = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setgroups(&[gid]).map_err(|e| setup_err("groups")(&e))?;
        nix::unistd::setgid(gid).map_err(|e| setup_err("gid")(&e))?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).map_err(|e| setup_err("uid")(&e))?;
    }
    close_inherited_fds();
    reset_signals();
    exec(command, &path, &args, &env)
}

/// `-u user[:group]` with names looked up in the container's /etc/passwd and /etc/group.
fn resolve_user(spec: &str) -> Result<(u32, u32), InitError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == user || f[2] == user));
    let (uid, default_gid) = match (user.parse::<u32>(), &entry) {
        (Ok(uid), _) => (
            uid,
            entry
                .as_ref()
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(uid),
        ),
        (Err(_), Some(f)) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0)),
        (Err(_), None) => {
            return Err(InitError::Setup(format!(
                "unable to find user {user}: no matching entry in /etc/passwd"
            )))
        }
    };
    let gid = match group {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => std::fs::read_to_string("/etc/group")
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    InitError::Setup(format!(
                        "unable to find group {g}: no matching entry in /etc/group"
                    ))
                })?,
        },
    };
    Ok((uid, gid))
}

fn wait_for_release(sock: &OwnedFd) -> Result<(), InitError> {
    let mut byte = [0u8; 1];
    match nix::unistd::read(sock, &mut byte) {
        Ok(1) => Ok(()),
        // The parent is gone: nobody will ever start this container.
        _ => unsafe { libc::_exit(125) },
    }
}

fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

/// Allocates the terminal from the container's own devpts (so it is /dev/pts/0 inside), makes it the
/// controlling terminal and stdio, binds it over /dev/console and hands the master to the parent.
fn attach_terminal(sock: &OwnedFd, bind_console: bool) -> Result<(), InitError> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let err = setup_err("terminal");
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(|e| err(&e))?;
    grantpt(&master).map_err(|e| setup_err("terminal")(&e))?;
    unlockpt(&master).map_err(|e| setup_err("terminal")(&e))?;
    let name = ptsname_r(&master).map_err(|e| setup_err("terminal")(&e))?;
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| setup_err("terminal")(&e))?;
    if bind_console {
        crate::rootfs::bind_console(Path::new(&name)).map_err(|e| setup_err("terminal")(&e))?;
    }

    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[MSG_PTY])],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| setup_err("terminal")(&e))?;
    drop(master);

    // SAFETY: TIOCSCTTY on a terminal we own, in a new session without a controlling terminal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(setup_err("terminal")(&nix::Error::last()));
    }
    dup_onto_stdio(&slave, &[0, 1, 2])
}

fn redirect_stdin_to_null() -> Result<(), InitError> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| setup_err("stdin")(&e))?;
    dup_onto_stdio(&null, &[0])
}

fn dup_onto_stdio(fd: &OwnedFd, targets: &[i32]) -> Result<(), InitError> {
    for &target in targets {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(setup_err("stdio")(&nix::Error::last()));
        }
    }
    Ok(())
}

/// Descriptors poc inherited from its caller must not reach the container.
fn close_inherited_fds() {
    // SAFETY: marks fds >= 3 close-on-exec; stdio stays.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Rust ignores SIGPIPE and poc blocks signals it forwards; the container starts with the defaults.
fn reset_signals() {
    // SAFETY: restoring default dispositions in a single-threaded process about to exec.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Looks `command` up in the container's PATH, as the shell would.
fn find_executable(command: &str, env: &[String]) -> Result<PathBuf, InitError> {
    if command.contains('/') {
        return Ok(PathBuf::from(command));
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(command);
        if candidate.is_file() {
            if access(&candidate, AccessFlags::X_OK).is_ok() {
                return Ok(candidate);
            }
            denied.get_or_insert(candidate);
        }
    }
    match denied {
        Some(path) => Ok(path),
        None => Err(InitError::NotFound(
            command.to_string(),
            path_var.to_string(),
        )),
    }
}

fn exec(
    command: &str,
    path: &Path,
    args: &[String],
    env: &[String],
) -> Result<Infallible, InitError> {
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| InitError::Setup(format!("{s:?} contains a NUL byte")))
    };
    let c_path = to_c(&path.to_string_lossy())?;
    let c_args = args
        .iter()
        .map(|a| to_c(a))
        .collect::<Result<Vec<_>, _>>()?;
    let c_env = env.iter().map(|e| to_c(e)).collect::<Result<Vec<_>, _>>()?;
    let err = nix::unistd::execve(&c_path, &c_args, &c_env).unwrap_err();
    Err(match err {
        nix::Error::ENOENT => InitError::NoSuchFile(command.to_string()),
        other => InitError::CannotExecute(command.to_string(), other),
    })
}
