//! One OCI mount entry onto the new root: options parsed into flags and data, targets resolved
//! inside the root so a symlink in the image cannot send a mount elsewhere.

use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::MsFlags;
use oci_spec::runtime::Mount;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{resolve, Mounts, RootfsError};
use crate::cgroups::Hierarchies;

/// Splits OCI mount options into mount(2) flags, propagation flags and the filesystem's data string.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let (set, clear, prop) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (
                MsFlags::MS_BIND | MsFlags::MS_REC,
                MsFlags::empty(),
                MsFlags::empty(),
            ),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) - clear;
        propagation |= prop;
    }
    (flags, propagation, data.join(","))
}

/// Mounts `m` onto its destination under `root`. The destination is opened (and made if missing)
/// inside the root by descriptor, and the mount is made on that descriptor: a symlink planted in the
/// image or swapped in by another container sharing a volume cannot send it anywhere else.
pub fn mount_one(
    mounts: &dyn Mounts,
    root: BorrowedFd,
    m: &Mount,
    cgroups: &Hierarchies,
) -> Result<(), RootfsError> {
    let destination = m.destination();
    let (flags, propagation, data) = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("bind");
    let is_bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let source = m.source().as_deref();
    let mount_err = |source: nix::Error| RootfsError::Mount {
        what: m
            .source()
            .as_ref()
            .map_or(typ.to_string(), |s| s.display().to_string()),
        path: destination.to_path_buf(),
        source,
    };

    let target = if is_bind && source.is_some_and(|s| !s.is_dir()) {
        resolve::create_file(root, destination)?
    } else {
        // Kernel filesystems go on real directories, never through a symlink of the image's.
        let extra = if is_bind {
            ResolveFlag::empty()
        } else {
            ResolveFlag::RESOLVE_NO_SYMLINKS
        };
        resolve::mkdir_all(root, destination, extra)?
    };

    if is_bind {
        let source = source.ok_or_else(|| mount_err(nix::Error::EINVAL))?;
        let source = nix::fcntl::open(
            source,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(mount_err)?;
        mounts
            .bind(source.as_fd(), target.as_fd(), flags, propagation)
            .map_err(mount_err)?;
    } else if typ == "cgroup" {
        super::cgroupfs::mount_view(mounts, cgroups, root, destination, &target, flags)
            .map_err(mount_err)?;
    } else {
        let data = (!data.is_empty()).then_some(data.as_str());
        let target = resolve::proc_path(&target);
        mounts
            .mount(source, &target, Some(typ), flags, data)
            .map_err(mount_err)?;
        if !propagation.is_empty() {
            // The new mount is reached by resolving the destination again.
            let mounted = resolve::mkdir_all(root, destination, ResolveFlag::RESOLVE_NO_SYMLINKS)?;
            let mounted: &Path = &resolve::proc_path(&mounted);
            mounts
                .mount(None, mounted, None, propagation, None)
                .map_err(mount_err)?;
        }
    }
    Ok(())
}

/// A bind mount made whole before it is attached: the source tree is cloned (open_tree), its
/// flags and propagation set on the detached copy (mount_setattr), and only then moved onto the
/// target descriptor (move_mount), so the container never sees it writable or shared.
pub fn bind(
    source: &impl AsFd,
    target: &impl AsFd,
    flags: MsFlags,
    propagation: MsFlags,
) -> nix::Result<()> {
    let recursive = if flags.contains(MsFlags::MS_REC) {
        libc::AT_RECURSIVE as u32
    } else {
        0
    };
    // SAFETY: open_tree of a descriptor we hold, with an empty path; the result is owned below.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_fd().as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32 | recursive,
        )
    };
    let tree = nix::Error::result(tree)?;
    // SAFETY: the kernel just gave us this descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    set_attributes(&tree, flags, propagation, recursive)?;
    // SAFETY: move_mount between two descriptors we hold, with empty paths.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_fd().as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    nix::Error::result(moved).map(drop)
}

/// Makes the mount `fd` is the root of read-only, leaving the mounts below it alone.
pub fn set_read_only(fd: &impl AsFd) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr(fd, 0, &attr)
}

/// mount_attr of linux/mount.h.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

fn set_attributes(
    tree: &OwnedFd,
    flags: MsFlags,
    propagation: MsFlags,
    recursive: u32,
) -> nix::Result<()> {
    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    for (flag, bit) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(flag) {
            attr.attr_set |= bit;
        }
    }
    // Shared, slave or private; a bind into a container is private unless asked otherwise.
    let kind = propagation - MsFlags::MS_REC;
    attr.propagation = if kind.is_empty() {
        MsFlags::MS_PRIVATE.bits()
    } else {
        kind.bits()
    };
    mount_setattr(tree, recursive, &attr)
}

fn mount_setattr(fd: &impl AsFd, recursive: u32, attr: &MountAttr) -> nix::Result<()> {
    // SAFETY: mount_setattr on a descriptor we hold, with a struct of the size we pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as u32 | recursive,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::Error::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = [
            "nosuid",
            "ro",
            "rbind",
            "rprivate",
            "mode=755",
            "size=65536k",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, prop, data) = parse_options(&opts);
        assert_eq!(
            flags,
            MsFlags::MS_NOSUID | MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(prop, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "mode=755,size=65536k");
        let (flags, _, _) = parse_options(&["ro".to_string(), "rw".to_string()]);
        assert!(flags.is_empty());
    }
}
