//! The mount calls that build a container's root, behind a seam: `LinuxMounts` makes them, the
//! init's tests record them (their order and where each lands) without root. Resolution by
//! descriptor, mkdir and mknod stay plain calls: they act only inside the root being built.

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::mount::{umount2, MntFlags, MsFlags};

use super::{mounts, sys, RootfsError};

/// The mount(2) family as the root filesystem uses it.
pub trait Mounts {
    /// mount(2). A target under the root is always `/proc/self/fd/N` of a descriptor resolved inside it.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;

    /// `source` bound onto `target` with its flags and propagation set before it is attached.
    fn bind(
        &self,
        source: BorrowedFd,
        target: BorrowedFd,
        flags: MsFlags,
        propagation: MsFlags,
    ) -> nix::Result<()>;

    /// Makes the mount `mount` is the root of read-only, leaving the mounts below it alone.
    fn set_read_only(&self, mount: BorrowedFd) -> nix::Result<()>;

    /// Makes `root` the root of the mount namespace and detaches the old one.
    fn pivot_root(&self, root: BorrowedFd) -> Result<(), RootfsError>;
}

/// The kernel's mount calls.
pub struct LinuxMounts;

impl Mounts for LinuxMounts {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn bind(
        &self,
        source: BorrowedFd,
        target: BorrowedFd,
        flags: MsFlags,
        propagation: MsFlags,
    ) -> nix::Result<()> {
        mounts::bind(&source, &target, flags, propagation)
    }

    fn set_read_only(&self, mount: BorrowedFd) -> nix::Result<()> {
        mounts::set_read_only(&mount)
    }

    /// pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the new root.
    fn pivot_root(&self, root: BorrowedFd) -> Result<(), RootfsError> {
        let here = Path::new(".");
        nix::unistd::fchdir(root).map_err(sys("chdir", here))?;
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root", here))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root", Path::new("/")))?;
        nix::unistd::chdir("/").map_err(sys("chdir", Path::new("/")))
    }
}
