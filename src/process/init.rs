//! A container process from clone to exec, in the order the boundary needs. First, before anything
//! of the container's is touched: stdio in place and every other descriptor closed. Then an init's
//! cgroup namespace, hostname, network and root filesystem, or an exec'd process's namespaces; then
//! terminal, rlimits, nice, privileges, user, working directory (resolved inside the root, entered
//! as the user), seccomp, and the exec of the command through the sealed stub.
//! Runs in the cloned child only; it never returns into poc's own code. The security-relevant calls
//! go through `Syscall` (syscall.rs), so that init/tests.rs checks this order without root.

mod stdio;

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::ResolveFlag;
use nix::unistd::{access, AccessFlags};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::syscall::{LinuxSyscall, Syscall};
use super::{
    ChildConfig, ChildStdio, Role, MSG_ERROR, MSG_GO, MSG_HOOKS, MSG_HOOKS_DONE, MSG_READY,
};
use stdio::{attach_terminal, isolate_descriptors};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error("{0}")]
    Setup(String),
    // runc's wording: podman, containerd and dockerd derive 127 and 126 from it.
    #[error("exec: {0:?}: executable file not found in $PATH (PATH={1})")]
    NotFound(String, String),
    #[error("exec: {0:?}: stat {0}: no such file or directory")]
    Missing(String),
    #[error("exec: {0:?}: permission denied")]
    Denied(String),
}

impl InitError {
    fn exit_code(&self) -> i32 {
        match self {
            InitError::Setup(_) => 125,
            InitError::NotFound(..) | InitError::Missing(_) => 127,
            InitError::Denied(_) => 126,
        }
    }
}

fn setup_err(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> InitError + '_ {
    move |e| InitError::Setup(format!("{what}: {e}"))
}

/// Entry point in the child. Reports any failure on the sync channel and exits with Docker's code.
pub fn run(cfg: &ChildConfig, sock: OwnedFd, stub: OwnedFd) -> ! {
    // A panic must not unwind into the parent's frames, which this forked child still has.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        isolate_descriptors(&LinuxSyscall, cfg, &sock, &stub, &[])?;
        setup_and_exec(&LinuxSyscall, cfg, &sock, &stub)
    }));
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

/// Waits for the parent's go, enters the container (an init builds it), then makes the process
/// what the Spec says, dropping privileges step by step, and execs its command.
fn setup_and_exec(
    sys: &dyn Syscall,
    cfg: &ChildConfig,
    sock: &OwnedFd,
    stub: &OwnedFd,
) -> Result<Infallible, InitError> {
    let state = wait_for_release(sock)?;
    join_cgroups(&cfg.join_cgroups)?;
    let process = cfg
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Setup("the spec has no process".into()))?;
    let tty = process.terminal().unwrap_or(false);
    enter_container(sys, cfg, sock, &state, tty)?;
    sys.set_session().map_err(|e| setup_err("setsid")(&e))?;
    if tty {
        attach_terminal(sys, sock, matches!(cfg.role, Role::Init { .. }))?;
    }
    let workdir = open_working_directory(process.cwd())?;
    apply_rlimits(sys, process)?;
    apply_nice(process)?;

    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let command = args
        .first()
        .ok_or_else(|| InitError::Setup("no command to run".into()))?;
    let path = find_executable(command, &env)?;

    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if no_new_privs {
        sys.set_no_new_privs()
            .map_err(|e| setup_err("privileges")(&e))?;
    } else {
        // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while poc still has it.
        install_seccomp(sys, cfg)?;
    }
    become_user(sys, process, &workdir)?;
    if let Some(gate) = &cfg.gate {
        wait_at_gate(sock, gate)?;
        if let Some(hooks) = cfg.hooks.and_then(|h| h.start_container().as_ref()) {
            super::hooks::run_all("startContainer", hooks, &state).map_err(InitError::Setup)?;
        }
    }
    // The stub (which keeps the sync channel across its exec) must run undumpable: a process in
    // the container could otherwise take the channel with pidfd_getfd. An exec is undumpable
    // when its file is unreadable to the caller: the stub's memfd is execute-only, and from here
    // on nothing in the effective set overrides that.
    sys.lower_effective_for_exec()
        .map_err(|e| setup_err("capabilities")(&e))?;
    if no_new_privs {
        // Last, so that as few calls as possible run under the filter before the command's own.
        install_seccomp(sys, cfg)?;
    }
    sys.reset_signals();
    exec_through_stub(sys, sock, stub, &path, &args, &env)
}

/// The intermediate of an exec (see process::clone_exec), in poc's own pid namespace: puts the
/// process's stdio in place and closes what it must not inherit, joins the container's v1 cgroups
/// (but the pids one, which the process joins itself after its clone: a clone there fails at
/// pids.max), then its namespaces (the mount namespace last), then, for the process it clones
/// next, its pid namespace.
pub(super) fn enter_for_exec(
    cfg: &mut ChildConfig,
    sock: &OwnedFd,
    stub: &OwnedFd,
    keep: &[RawFd],
) -> Result<(), String> {
    enter_for_exec_steps(cfg, sock, stub, keep).map_err(|e| e.to_string())
}

fn enter_for_exec_steps(
    cfg: &mut ChildConfig,
    sock: &OwnedFd,
    stub: &OwnedFd,
    keep: &[RawFd],
) -> Result<(), InitError> {
    // Here, in the host's mount namespace: the process's stdio is put in place (a /dev/null opened
    // in the container, where its root could make it a link to /proc/self/fd/2, would reopen the
    // caller's terminal), and every descriptor it does not need is closed.
    isolate_descriptors(&LinuxSyscall, cfg, sock, stub, keep)?;
    // The stdio descriptors are on 0-2 now, their old numbers closed: not dropped (a number may be
    // reused by then), and the process inherits 0-2 as they are.
    std::mem::forget(std::mem::replace(&mut cfg.stdio, ChildStdio::Inherit));
    join_cgroups(&std::mem::take(&mut cfg.join_cgroups))?;
    let Role::Exec {
        namespaces, pid, ..
    } = &mut cfg.role
    else {
        return Ok(());
    };
    join_namespaces(&LinuxSyscall, &std::mem::take(namespaces))?;
    if let Some(pid) = pid.take() {
        LinuxSyscall
            .set_namespace(pid.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| setup_err("joining the pid namespace")(&e))?;
    }
    Ok(())
}

/// cgroup v1 `tasks` files: the child joins them itself, before anything else.
fn join_cgroups(files: &[PathBuf]) -> Result<(), InitError> {
    for file in files {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"0"))
            .map_err(|e| setup_err(&format!("joining cgroup {}", file.display()))(&e))?;
    }
    Ok(())
}

/// An init makes its container: namespaces it joins or makes, hostname, network, and the root
/// filesystem it pivots into. An exec'd process joins the init's namespaces.
fn enter_container(
    sys: &dyn Syscall,
    cfg: &ChildConfig,
    sock: &OwnedFd,
    state: &[u8],
    tty: bool,
) -> Result<(), InitError> {
    let spec = cfg.spec;
    let (root, network, cgroups, join, new_keyring) = match &cfg.role {
        Role::Init {
            root,
            network,
            cgroups,
            join,
            new_keyring,
        } => (root, *network, cgroups, join, *new_keyring),
        // Joined by the intermediate already (see process::clone_exec): none are left here.
        Role::Exec {
            namespaces,
            new_keyring,
            pids_tasks,
            ..
        } => {
            if let Some(tasks) = pids_tasks {
                nix::unistd::write(tasks, b"0")
                    .map_err(|e| setup_err("joining the pids cgroup")(&e))?;
                // Closed at once: opened by poc, it would move any pid its holder names. (Its
                // OwnedFd is never dropped here: this process execs or exits.)
                let _ = nix::unistd::close(tasks.as_raw_fd());
            }
            join_namespaces(sys, namespaces)?;
            return match new_keyring {
                true => join_new_session_keyring(),
                false => Ok(()),
            };
        }
    };
    join_namespaces(sys, join)?;
    if new_keyring {
        join_new_session_keyring()?;
    }
    if has_new_namespace(spec, LinuxNamespaceType::Cgroup) {
        sys.unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| setup_err("cgroup namespace")(&e))?;
    }
    if has_namespace(spec, LinuxNamespaceType::Uts) {
        if let Some(hostname) = spec.hostname() {
            sys.set_hostname(hostname)
                .map_err(|e| setup_err("hostname")(&e))?;
        }
    }
    crate::network::setup_in_namespace(network).map_err(|e| setup_err("network")(&e))?;
    let mut before_pivot = || container_hooks(cfg, sock, state);
    crate::rootfs::prepare(sys.mounts(), spec, root, cgroups, tty, &mut before_pivot).map_err(|e| {
        match e {
            crate::rootfs::RootfsError::Hook(message) => InitError::Setup(message),
            e => setup_err("root filesystem")(&e),
        }
    })
}

fn join_namespaces(
    sys: &dyn Syscall,
    namespaces: &[(OwnedFd, nix::sched::CloneFlags)],
) -> Result<(), InitError> {
    for (fd, kind) in namespaces {
        sys.set_namespace(fd.as_fd(), *kind)
            .map_err(|e| setup_err(&format!("joining the {kind:?} namespace"))(&e))?;
    }
    Ok(())
}

fn apply_nice(process: &Process) -> Result<(), InitError> {
    if let Some(nice) = process.scheduler().as_ref().and_then(|s| *s.nice()) {
        // SAFETY: plain syscall on our own process.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            return Err(setup_err("nice")(&nix::Error::last()));
        }
    }
    Ok(())
}

/// The bounding set lowered, then the user (groups, gid, uid), the working directory entered as
/// that user, and the Spec's capability sets.
fn become_user(sys: &dyn Syscall, process: &Process, workdir: &OwnedFd) -> Result<(), InitError> {
    if let Some(caps) = process.capabilities() {
        sys.set_bounding(caps)
            .map_err(|e| setup_err("capabilities")(&e))?;
    }
    set_user(sys, process)?;
    // As the user, without effective capabilities (setuid cleared them): a directory it may not
    // enter is refused, as runc does.
    sys.enter_directory(workdir.as_fd())
        .map_err(|e| setup_err(&format!("working directory {}", process.cwd().display()))(&e))?;
    check_inside_root(process.cwd())?;
    if let Some(caps) = process.capabilities() {
        // For any user, as runc: the Spec decides (poc's own Specs give a non-root user none).
        sys.set_capabilities(caps)
            .map_err(|e| setup_err("capabilities")(&e))?;
    }
    Ok(())
}

fn install_seccomp(sys: &dyn Syscall, cfg: &ChildConfig) -> Result<(), InitError> {
    match cfg.seccomp {
        Some(filter) => sys
            .install_seccomp(filter)
            .map_err(|e| setup_err("seccomp filter")(&e)),
        None => Ok(()),
    }
}

/// The working directory, opened (and made if missing) inside the container's root: no symlink or
/// `..` leads out, and no /proc magic link is followed (`-w /proc/self/fd/N` and swapped-in links
/// to descriptors are refused). Entered later, as the container's user.
fn open_working_directory(cwd: &Path) -> Result<OwnedFd, InitError> {
    let err = |e: &dyn std::fmt::Display| {
        InitError::Setup(format!("working directory {}: {e}", cwd.display()))
    };
    let root = crate::rootfs::open_dir(Path::new("/")).map_err(|e| err(&e))?;
    crate::rootfs::mkdir_all_in_root(root.as_fd(), cwd, ResolveFlag::empty()).map_err(|e| {
        match e.errno() {
            nix::Error::ELOOP => {
                err(&"it leads through a /proc descriptor link or a symlink loop (refused)")
            }
            _ => err(&e),
        }
    })
}

/// The kernel's own view of where we are must be under our root, not "(unreachable)/...".
fn check_inside_root(cwd: &Path) -> Result<(), InitError> {
    match nix::unistd::getcwd() {
        Ok(here) if here.is_absolute() => Ok(()),
        _ => Err(InitError::Setup(format!(
            "working directory {}: outside the container's root (refused)",
            cwd.display()
        ))),
    }
}

/// Groups, gid, uid from the Spec (resolved by poc beforehand). The permitted set survives the
/// change of uid (PR_SET_KEEPCAPS) so that the Spec's sets can be applied next; the effective set
/// is empty until then.
fn set_user(sys: &dyn Syscall, process: &Process) -> Result<(), InitError> {
    let user = process.user();
    let mut groups: Vec<nix::unistd::Gid> = vec![nix::unistd::Gid::from_raw(user.gid())];
    for gid in user.additional_gids().iter().flatten() {
        let gid = nix::unistd::Gid::from_raw(*gid);
        if !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    sys.set_groups(&groups)
        .map_err(|e| setup_err("groups")(&e))?;
    sys.set_gid(nix::unistd::Gid::from_raw(user.gid()))
        .map_err(|e| setup_err("gid")(&e))?;
    let keep = process.capabilities().is_some() && user.uid() != 0;
    if keep {
        sys.set_keep_caps(true)
            .map_err(|e| setup_err("keep capabilities")(&e))?;
    }
    sys.set_uid(nix::unistd::Uid::from_raw(user.uid()))
        .map_err(|e| setup_err("uid")(&e))?;
    if keep {
        sys.set_keep_caps(false)
            .map_err(|e| setup_err("keep capabilities")(&e))?;
    }
    // poc's own umask is not the container's: runc's default.
    sys.set_umask(nix::sys::stat::Mode::from_bits_truncate(
        user.umask().unwrap_or(0o022),
    ));
    Ok(())
}

fn apply_rlimits(sys: &dyn Syscall, process: &Process) -> Result<(), InitError> {
    for limit in process.rlimits().iter().flatten() {
        let resource = crate::security::rlimit_resource(limit.typ());
        let value = libc::rlimit {
            rlim_cur: limit.soft(),
            rlim_max: limit.hard(),
        };
        if let Err(e) = sys.set_rlimit(resource, &value) {
            let name = crate::security::rlimit_name(limit.typ());
            return Err(setup_err(&format!("--ulimit {name}"))(&e));
        }
    }
    Ok(())
}

/// Waits for the parent's go; returns the container's state JSON that came with it (for hooks).
fn wait_for_release(sock: &OwnedFd) -> Result<Vec<u8>, InitError> {
    let mut message = vec![0u8; 1 << 20];
    match nix::unistd::read(sock, &mut message) {
        Ok(n) if n >= 1 && message[0] == MSG_GO => {
            message.truncate(n);
            message.remove(0);
            Ok(message)
        }
        // The parent is gone: nobody will ever start this container.
        // SAFETY: _exit in the child, as in `run`.
        _ => unsafe { libc::_exit(125) },
    }
}

/// Before pivot_root: the runtime's prestart and createRuntime hooks (run by the parent, in the
/// host's namespaces, while we wait), then createContainer, here in the container's namespaces.
fn container_hooks(cfg: &ChildConfig, sock: &OwnedFd, state: &[u8]) -> Result<(), String> {
    let Some(hooks) = cfg.hooks else {
        return Ok(());
    };
    let nonempty =
        |h: &Option<Vec<oci_spec::runtime::Hook>>| h.as_ref().is_some_and(|h| !h.is_empty());
    if nonempty(hooks.prestart()) || nonempty(hooks.create_runtime()) {
        nix::unistd::write(sock, &[MSG_HOOKS]).map_err(|e| format!("sync channel: {e}"))?;
        let mut reply = [0u8; 1];
        match nix::unistd::read(sock, &mut reply) {
            Ok(1) if reply[0] == MSG_HOOKS_DONE => {}
            // The parent reports its hook's failure itself.
            // SAFETY: _exit in the child, as in `run`.
            _ => unsafe { libc::_exit(125) },
        }
    }
    if let Some(create) = hooks.create_container() {
        super::hooks::run_all("createContainer", create, state)?;
    }
    Ok(())
}

/// Tells the parent we are ready, then waits for `start` to open the gate. The gate closing
/// without a byte means nobody will start this container.
fn wait_at_gate(sock: &OwnedFd, gate: &OwnedFd) -> Result<(), InitError> {
    nix::unistd::write(sock, &[MSG_READY]).map_err(|e| setup_err("sync channel")(&e))?;
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(gate, &mut byte) {
            Ok(1) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            // SAFETY: _exit in the child, as in `run`.
            _ => unsafe { libc::_exit(125) },
        }
    }
}

/// A new anonymous session keyring (runc does the same unless told `--no-new-keyring`): keys the
/// caller's session holds are out of reach. A kernel without keyrings has nothing to hide.
fn join_new_session_keyring() -> Result<(), InitError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl with a null name creates and joins a new anonymous session keyring.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match nix::Error::result(ret) {
        Ok(_) | Err(nix::Error::ENOSYS) => Ok(()),
        Err(e) => Err(setup_err("session keyring")(&e)),
    }
}

/// A namespace of `typ` the init makes (one given by path is joined instead).
fn has_new_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ && n.path().is_none()))
}

fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

/// Looks `command` up in the container's PATH, as the shell would.
fn find_executable(command: &str, env: &[String]) -> Result<PathBuf, InitError> {
    if command.contains('/') {
        use std::os::unix::fs::PermissionsExt;
        return match std::fs::metadata(command) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(InitError::Missing(command.to_string()))
            }
            Ok(m) if m.is_dir() || m.permissions().mode() & 0o111 == 0 => {
                Err(InitError::Denied(command.to_string()))
            }
            _ => Ok(PathBuf::from(command)),
        };
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

/// Execs the sealed stub, which execs the command: argv is `poc-exec SYNC_FD PATH ARGS...`. The
/// sync socket stays open across this exec only; the stub marks it close-on-exec again.
fn exec_through_stub(
    sys: &dyn Syscall,
    sock: &OwnedFd,
    stub: &OwnedFd,
    path: &Path,
    args: &[String],
    env: &[String],
) -> Result<Infallible, InitError> {
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| InitError::Setup(format!("{s:?} contains a NUL byte")))
    };
    let mut argv = vec![
        to_c("poc-exec")?,
        to_c(&sock.as_raw_fd().to_string())?,
        to_c(&path.to_string_lossy())?,
    ];
    for arg in args {
        argv.push(to_c(arg)?);
    }
    let envp = env.iter().map(|e| to_c(e)).collect::<Result<Vec<_>, _>>()?;
    sys.keep_open_across_exec(sock.as_raw_fd())
        .map_err(|e| setup_err("sync channel")(&e))?;
    let err = sys.exec(stub.as_fd(), &argv, &envp);
    Err(setup_err("executing poc's exec stub")(&err))
}

#[cfg(test)]
mod tests;
