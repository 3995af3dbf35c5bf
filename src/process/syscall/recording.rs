//! A recording double of `Syscall` and `Mounts` for tests: each call is logged with its arguments
//! (a descriptor as the path it names), nothing reaches the kernel, exec fails with ENOEXEC.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::LinuxCapabilities;

use super::Syscall;
use crate::rootfs::{Mounts, RootfsError};
use crate::security::seccomp::Filter;
use crate::security::SecurityError;

/// One call, as the process would have made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    CloseRange(u32, u32),
    KeepOpenAcrossExec(RawFd),
    SetNamespace(CloneFlags),
    Unshare(CloneFlags),
    SetHostname(String),
    /// `target` as given; `lands_on`, the path it names (through /proc/self/fd for a descriptor).
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        lands_on: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
        flags: MsFlags,
    },
    SetReadOnly(PathBuf),
    PivotRoot(PathBuf),
    SetSession,
    SetRlimit(libc::__rlimit_resource_t, u64, u64),
    SetNoNewPrivs,
    InstallSeccomp,
    SetBounding,
    SetGroups(Vec<u32>),
    SetGid(u32),
    SetUid(u32),
    SetKeepCaps(bool),
    SetUmask(u32),
    EnterDirectory(PathBuf),
    SetCapabilities,
    LowerEffectiveForExec,
    ResetSignals,
    Exec(Vec<String>),
}

impl Call {
    /// A call of the mount family (mount, bind, read-only, pivot_root).
    pub fn is_mount(&self) -> bool {
        matches!(
            self,
            Call::Mount { .. } | Call::Bind { .. } | Call::SetReadOnly(_) | Call::PivotRoot(_)
        )
    }
}

#[derive(Default)]
pub struct Recorder {
    calls: RefCell<Vec<Call>>,
}

impl Recorder {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

fn fd_path(fd: BorrowedFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

fn lands_on(path: &Path) -> PathBuf {
    match path.strip_prefix("/proc/self/fd") {
        Ok(_) => std::fs::read_link(path).unwrap_or_default(),
        Err(_) => path.to_path_buf(),
    }
}

impl Mounts for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        _data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            lands_on: lands_on(target),
            fstype: fstype.map(str::to_string),
            flags,
        });
        Ok(())
    }

    fn bind(
        &self,
        source: BorrowedFd,
        target: BorrowedFd,
        flags: MsFlags,
        _propagation: MsFlags,
    ) -> nix::Result<()> {
        self.record(Call::Bind {
            source: fd_path(source),
            target: fd_path(target),
            flags,
        });
        Ok(())
    }

    fn set_read_only(&self, mount: BorrowedFd) -> nix::Result<()> {
        self.record(Call::SetReadOnly(fd_path(mount)));
        Ok(())
    }

    fn pivot_root(&self, root: BorrowedFd) -> Result<(), RootfsError> {
        self.record(Call::PivotRoot(fd_path(root)));
        Ok(())
    }
}

impl Syscall for Recorder {
    fn mounts(&self) -> &dyn Mounts {
        self
    }

    fn close_range(&self, first: u32, last: u32) -> nix::Result<()> {
        self.record(Call::CloseRange(first, last));
        Ok(())
    }

    fn keep_open_across_exec(&self, fd: RawFd) -> nix::Result<()> {
        self.record(Call::KeepOpenAcrossExec(fd));
        Ok(())
    }

    fn set_namespace(&self, _fd: BorrowedFd, kind: CloneFlags) -> nix::Result<()> {
        self.record(Call::SetNamespace(kind));
        Ok(())
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(Call::Unshare(flags));
        Ok(())
    }

    fn set_hostname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::SetHostname(name.to_string()));
        Ok(())
    }

    fn set_session(&self) -> nix::Result<()> {
        self.record(Call::SetSession);
        Ok(())
    }

    fn set_rlimit(
        &self,
        resource: libc::__rlimit_resource_t,
        limit: &libc::rlimit,
    ) -> nix::Result<()> {
        self.record(Call::SetRlimit(resource, limit.rlim_cur, limit.rlim_max));
        Ok(())
    }

    fn set_no_new_privs(&self) -> Result<(), SecurityError> {
        self.record(Call::SetNoNewPrivs);
        Ok(())
    }

    fn install_seccomp(&self, _filter: &Filter) -> nix::Result<()> {
        self.record(Call::InstallSeccomp);
        Ok(())
    }

    fn set_bounding(&self, _caps: &LinuxCapabilities) -> Result<(), SecurityError> {
        self.record(Call::SetBounding);
        Ok(())
    }

    fn set_groups(&self, groups: &[Gid]) -> nix::Result<()> {
        self.record(Call::SetGroups(groups.iter().map(|g| g.as_raw()).collect()));
        Ok(())
    }

    fn set_gid(&self, gid: Gid) -> nix::Result<()> {
        self.record(Call::SetGid(gid.as_raw()));
        Ok(())
    }

    fn set_uid(&self, uid: Uid) -> nix::Result<()> {
        self.record(Call::SetUid(uid.as_raw()));
        Ok(())
    }

    fn set_keep_caps(&self, keep: bool) -> nix::Result<()> {
        self.record(Call::SetKeepCaps(keep));
        Ok(())
    }

    fn set_umask(&self, mask: Mode) {
        self.record(Call::SetUmask(mask.bits()));
    }

    fn enter_directory(&self, dir: BorrowedFd) -> nix::Result<()> {
        self.record(Call::EnterDirectory(fd_path(dir)));
        Ok(())
    }

    fn set_capabilities(&self, _caps: &LinuxCapabilities) -> Result<(), SecurityError> {
        self.record(Call::SetCapabilities);
        Ok(())
    }

    fn lower_effective_for_exec(&self) -> Result<(), SecurityError> {
        self.record(Call::LowerEffectiveForExec);
        Ok(())
    }

    fn reset_signals(&self) {
        self.record(Call::ResetSignals);
    }

    fn exec(&self, _stub: BorrowedFd, argv: &[CString], _envp: &[CString]) -> nix::Error {
        let argv = argv.iter().map(|a| a.to_string_lossy().into_owned());
        self.record(Call::Exec(argv.collect()));
        nix::Error::ENOEXEC
    }
}
