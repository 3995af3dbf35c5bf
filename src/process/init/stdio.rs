//! The child's descriptors: stdio in place and everything else it inherited closed, first of all;
//! later the terminal, allocated inside the container and handed to the parent.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::{setup_err, InitError, Syscall};
use crate::process::{ChildConfig, ChildStdio, Role, MSG_PTY};

/// The child's stdio becomes its pipes (or /dev/null until its terminal exists), and every other
/// descriptor it inherited from poc (the cgroup directory, the caller's terminal, logs, poc's own
/// pipes) is closed, before the child waits, joins or resolves anything. poc keeps fds 0-2 open, so
/// nothing kept here can sit on 0-2.
pub(super) fn isolate_descriptors(
    sys: &dyn Syscall,
    cfg: &ChildConfig,
    sock: &OwnedFd,
    stub: &OwnedFd,
    extra: &[RawFd],
) -> Result<(), InitError> {
    let null = || {
        nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| setup_err("stdio")(&e))
    };
    match &cfg.stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            match stdin {
                Some(fd) => dup_onto_stdio(fd.as_raw_fd(), &[0])?,
                None => dup_onto_stdio(null()?.as_raw_fd(), &[0])?,
            }
            dup_onto_stdio(stdout.as_raw_fd(), &[1])?;
            dup_onto_stdio(stderr.as_raw_fd(), &[2])?;
        }
        ChildStdio::Terminal => dup_onto_stdio(null()?.as_raw_fd(), &[0, 1, 2])?,
        ChildStdio::Inherit => {}
    }
    let mut keep = vec![sock.as_raw_fd(), stub.as_raw_fd()];
    keep.extend_from_slice(extra);
    keep.extend(cfg.gate.as_ref().map(|fd| fd.as_raw_fd()));
    match &cfg.role {
        Role::Exec {
            namespaces,
            pid,
            pids_tasks,
            ..
        } => {
            keep.extend(namespaces.iter().map(|(fd, _)| fd.as_raw_fd()));
            keep.extend(pid.iter().chain(pids_tasks).map(|fd| fd.as_raw_fd()));
        }
        Role::Init {
            join: namespaces, ..
        } => {
            keep.extend(namespaces.iter().map(|(fd, _)| fd.as_raw_fd()));
        }
    }
    // The caller's descriptors it asked to pass on stay open across exec; never one of poc's own
    // (the CLI checked that the caller's were all open before poc opened anything).
    for fd in 3..3 + cfg.preserve_fds as RawFd {
        if keep.contains(&fd) {
            return Err(InitError::Setup(format!(
                "--preserve-fds: descriptor {fd} is poc's own, not the caller's"
            )));
        }
        keep.push(fd);
        sys.keep_open_across_exec(fd)
            .map_err(|e| setup_err(&format!("--preserve-fds: descriptor {fd}"))(&e))?;
    }
    close_all_but(sys, &keep).map_err(|e| setup_err("closing inherited descriptors")(&e))
}

/// Closes every descriptor from 3 up except those in `keep`.
pub(super) fn close_all_but(sys: &dyn Syscall, keep: &[RawFd]) -> nix::Result<()> {
    let mut keep: Vec<u32> = keep.iter().map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep.into_iter().filter(|&fd| fd >= 3) {
        if fd > next {
            sys.close_range(next, fd - 1)?;
        }
        next = next.max(fd + 1);
    }
    sys.close_range(next, u32::MAX)
}

/// Allocates the terminal from the container's own devpts (so it is /dev/pts/0 inside), makes it the
/// controlling terminal and stdio, binds it over /dev/console and hands the master to the parent.
pub(super) fn attach_terminal(
    sys: &dyn Syscall,
    sock: &OwnedFd,
    bind_console: bool,
) -> Result<(), InitError> {
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
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| setup_err("terminal")(&e))?;
    if bind_console {
        crate::rootfs::bind_console(sys.mounts(), slave.as_fd())
            .map_err(|e| setup_err("terminal")(&e))?;
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
    dup_onto_stdio(slave.as_raw_fd(), &[0, 1, 2])
}

fn dup_onto_stdio(fd: RawFd, targets: &[i32]) -> Result<(), InitError> {
    for &target in targets {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(setup_err("stdio")(&nix::Error::last()));
        }
    }
    Ok(())
}
