//! The security-relevant steps of a container process's setup, behind a seam (as youki's `Syscall`):
//! `LinuxSyscall` makes the calls; tests record them and check their order without root. Reading
//! the sync channel, resolving paths and the like stay plain calls in init.rs.

use std::ffi::CString;
use std::os::fd::{BorrowedFd, RawFd};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::LinuxCapabilities;

use crate::rootfs::{LinuxMounts, Mounts};
use crate::security::seccomp::Filter;
use crate::security::SecurityError;

#[cfg(test)]
pub mod recording;

/// The calls that decide what a container process can reach, in the order init.rs makes them.
pub trait Syscall {
    /// The mount calls of the root filesystem.
    fn mounts(&self) -> &dyn Mounts;
    /// Closes descriptors `first` to `last` (close_range).
    fn close_range(&self, first: u32, last: u32) -> nix::Result<()>;
    /// Clears close-on-exec: `fd` crosses the exec into the command.
    fn keep_open_across_exec(&self, fd: RawFd) -> nix::Result<()>;
    fn set_namespace(&self, fd: BorrowedFd, kind: CloneFlags) -> nix::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    fn set_hostname(&self, name: &str) -> nix::Result<()>;
    fn set_session(&self) -> nix::Result<()>;
    fn set_rlimit(
        &self,
        resource: libc::__rlimit_resource_t,
        limit: &libc::rlimit,
    ) -> nix::Result<()>;
    fn set_no_new_privs(&self) -> Result<(), SecurityError>;
    fn install_seccomp(&self, filter: &Filter) -> nix::Result<()>;
    /// Drops from the bounding set what the Spec does not list.
    fn set_bounding(&self, caps: &LinuxCapabilities) -> Result<(), SecurityError>;
    fn set_groups(&self, groups: &[Gid]) -> nix::Result<()>;
    fn set_gid(&self, gid: Gid) -> nix::Result<()>;
    fn set_uid(&self, uid: Uid) -> nix::Result<()>;
    /// PR_SET_KEEPCAPS: whether the permitted set survives a change of uid away from 0.
    fn set_keep_caps(&self, keep: bool) -> nix::Result<()>;
    fn set_umask(&self, mask: Mode);
    /// fchdir: the working directory, entered by descriptor.
    fn enter_directory(&self, dir: BorrowedFd) -> nix::Result<()>;
    /// The Spec's effective, permitted, inheritable and ambient sets.
    fn set_capabilities(&self, caps: &LinuxCapabilities) -> Result<(), SecurityError>;
    fn lower_effective_for_exec(&self) -> Result<(), SecurityError>;
    /// Default signal dispositions and an empty mask for the command.
    fn reset_signals(&self);
    /// execveat of the exec stub; returns only on failure.
    fn exec(&self, stub: BorrowedFd, argv: &[CString], envp: &[CString]) -> nix::Error;
}

/// The kernel's calls, exactly as the init makes them.
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mounts(&self) -> &dyn Mounts {
        &LinuxMounts
    }

    fn close_range(&self, first: u32, last: u32) -> nix::Result<()> {
        // SAFETY: closes descriptors of this single-threaded child; none of them is used afterwards.
        let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        nix::Error::result(ret).map(drop)
    }

    fn keep_open_across_exec(&self, fd: RawFd) -> nix::Result<()> {
        // SAFETY: F_SETFD on a descriptor number; a closed one fails with EBADF.
        nix::Error::result(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
    }

    fn set_namespace(&self, fd: BorrowedFd, kind: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(fd, kind)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn set_hostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn set_session(&self) -> nix::Result<()> {
        nix::unistd::setsid().map(drop)
    }

    fn set_rlimit(
        &self,
        resource: libc::__rlimit_resource_t,
        limit: &libc::rlimit,
    ) -> nix::Result<()> {
        // SAFETY: setrlimit on our own process with a valid struct.
        nix::Error::result(unsafe { libc::setrlimit(resource, limit) }).map(drop)
    }

    fn set_no_new_privs(&self) -> Result<(), SecurityError> {
        crate::security::set_no_new_privs()
    }

    fn install_seccomp(&self, filter: &Filter) -> nix::Result<()> {
        filter.install()
    }

    fn set_bounding(&self, caps: &LinuxCapabilities) -> Result<(), SecurityError> {
        crate::security::apply_bounding(caps)
    }

    fn set_groups(&self, groups: &[Gid]) -> nix::Result<()> {
        nix::unistd::setgroups(groups)
    }

    fn set_gid(&self, gid: Gid) -> nix::Result<()> {
        nix::unistd::setgid(gid)
    }

    fn set_uid(&self, uid: Uid) -> nix::Result<()> {
        nix::unistd::setuid(uid)
    }

    fn set_keep_caps(&self, keep: bool) -> nix::Result<()> {
        nix::sys::prctl::set_keepcaps(keep)
    }

    fn set_umask(&self, mask: Mode) {
        nix::sys::stat::umask(mask);
    }

    fn enter_directory(&self, dir: BorrowedFd) -> nix::Result<()> {
        nix::unistd::fchdir(dir)
    }

    fn set_capabilities(&self, caps: &LinuxCapabilities) -> Result<(), SecurityError> {
        crate::security::apply_sets(caps)
    }

    fn lower_effective_for_exec(&self) -> Result<(), SecurityError> {
        crate::security::lower_effective_for_exec()
    }

    /// Rust ignores SIGPIPE, poc blocks the signals it forwards, and poc's caller may have handed
    /// it any signal ignored (a shell's `&` ignores SIGINT and SIGQUIT; exec keeps SIG_IGN). The
    /// container starts with the defaults: every signal, real-time ones included, as runc and
    /// crun do.
    fn reset_signals(&self) {
        // The kernel's struct sigaction, all zeros: SIG_DFL, no flags, no restorer, empty mask
        // (raw, because glibc refuses the two real-time signals it keeps for itself).
        let default = [0u64; 4];
        for signo in 1..=64 {
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                continue;
            }
            // SAFETY: installs the default disposition, no handler; the old one is not asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signo,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        let _ =
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    }

    fn exec(&self, stub: BorrowedFd, argv: &[CString], envp: &[CString]) -> nix::Error {
        let flags = nix::fcntl::AtFlags::AT_EMPTY_PATH;
        match nix::unistd::execveat(stub, c"", argv, envp, flags) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }
}
