//! /sys/fs/cgroup inside the container, as Docker mounts it: the container's own cgroups only (it
//! is in its cgroup namespace by now, so each hierarchy's mount shows its leaf as the root), read-only
//! unless privileged. Mirrors the host's layout: cgroup2 alone on a pure v2 host; on v1 and hybrid
//! hosts a tmpfs with one mount per hierarchy (named ones too) and the host's controller symlinks.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use crate::cgroups::Hierarchies;

use super::{resolve, Mounts};

const HOST_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Mounts the container's view of `hierarchies` (the host's, read by poc before the cgroup
/// namespace) on `destination` under `root` (`target` is its descriptor); `flags` come from the Spec
/// (ro...). Runs before pivot_root, while /sys/fs/cgroup is still the host's.
pub fn mount_view(
    m: &dyn Mounts,
    hierarchies: &Hierarchies,
    root: BorrowedFd,
    destination: &Path,
    target: &OwnedFd,
    flags: MsFlags,
) -> nix::Result<()> {
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let target_path = resolve::proc_path(target);
    if hierarchies.v1.is_empty() {
        return m.mount(
            Some(Path::new("cgroup2")),
            &target_path,
            Some("cgroup2"),
            flags,
            None,
        );
    }
    mount_tmpfs(m, &target_path, flags - MsFlags::MS_RDONLY)?;
    // The tmpfs covers the target now: resolving the destination again reaches its root.
    let tmpfs = resolve::open_in(
        root,
        destination,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        ResolveFlag::RESOLVE_NO_SYMLINKS,
    )?;
    for (mount_point, controllers) in &hierarchies.v1 {
        let name = leaf_name(mount_point)?;
        let dir = make_dir(&tmpfs, &name)?;
        let options = v1_options(controllers);
        m.mount(
            Some(Path::new("cgroup")),
            &resolve::proc_path(&dir),
            Some("cgroup"),
            flags,
            Some(options.as_str()),
        )?;
    }
    if let Some(unified) = &hierarchies.unified {
        let dir = make_dir(&tmpfs, &leaf_name(unified)?)?;
        m.mount(
            Some(Path::new("cgroup2")),
            &resolve::proc_path(&dir),
            Some("cgroup2"),
            flags,
            None,
        )?;
    }
    copy_controller_links(&tmpfs);
    if flags.contains(MsFlags::MS_RDONLY) {
        mount_tmpfs_remount_ro(m, &resolve::proc_path(&tmpfs), flags)?;
    }
    Ok(())
}

fn mount_tmpfs(m: &dyn Mounts, target: &Path, flags: MsFlags) -> nix::Result<()> {
    m.mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=64k"),
    )
}

fn mount_tmpfs_remount_ro(m: &dyn Mounts, target: &Path, flags: MsFlags) -> nix::Result<()> {
    m.mount(
        None,
        target,
        None,
        flags | MsFlags::MS_REMOUNT,
        Some("mode=755,size=64k"),
    )
}

/// The last component of a host mount point (`cpu,cpuacct`, `systemd`, `unified`).
fn leaf_name(mount_point: &Path) -> nix::Result<PathBuf> {
    mount_point
        .strip_prefix(HOST_CGROUP_ROOT)
        .ok()
        .filter(|rest| rest.components().count() == 1)
        .map(Path::to_path_buf)
        .ok_or(nix::Error::ENOTSUP)
}

fn make_dir(parent: &OwnedFd, name: &Path) -> nix::Result<OwnedFd> {
    nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o755))?;
    nix::fcntl::openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
}

/// Mount options naming a v1 hierarchy: its controllers, or `none,name=X` for a named one.
fn v1_options(controllers: &[String]) -> String {
    match controllers {
        [named] if named.starts_with("name=") => format!("none,{named}"),
        _ => controllers.join(","),
    }
}

/// `cpu -> cpu,cpuacct` and the like, as the host has them.
fn copy_controller_links(tmpfs: &OwnedFd) {
    let Ok(entries) = std::fs::read_dir(HOST_CGROUP_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let target = std::fs::read_link(entry.path());
        if let (true, Ok(target)) = (is_link, target) {
            let _ = nix::unistd::symlinkat(&target, tmpfs.as_fd(), entry.file_name().as_os_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_mount_options_name_controllers_or_the_named_hierarchy() {
        assert_eq!(v1_options(&["cpu".into(), "cpuacct".into()]), "cpu,cpuacct");
        assert_eq!(v1_options(&["name=systemd".into()]), "none,name=systemd");
        assert_eq!(
            leaf_name(Path::new("/sys/fs/cgroup/cpu,cpuacct")).unwrap(),
            PathBuf::from("cpu,cpuacct")
        );
        assert!(leaf_name(Path::new("/mnt/elsewhere")).is_err());
    }
}
