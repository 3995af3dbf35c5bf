//! poc's own files are root's alone: the directories that hold images, containers' layers and their
//! state 0700, configuration, state and logs 0600 (they hold environment secrets; a container's upper
//! layer holds whatever it planted, setuid files included). Never what a container sees (its rootfs,
//! /etc files). A root poc makes is 0700 too; an existing one (`--store /srv/x`) keeps its mode.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Makes `dir` (and missing parents) 0700; when it exists with wider modes (made by an older poc),
/// it is narrowed. Only for directories that are poc's alone, never a root a user chose.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    // Usually there already: one stat on the start path.
    let meta = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dir_all(dir)?;
            std::fs::metadata(dir)?
        }
        other => other?,
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `dir` and any missing parents, each 0700.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `dir`, 0700; fails if it exists (a claim).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Writes `data` to a new or truncated file that only root can read.
pub fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(data)
}

/// Open options for a private file (0600 when created).
pub fn options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

/// Removes the directory `root` and everything under it, however deep (a missing `root` is fine).
/// std's remove_dir_all holds a descriptor and a stack frame per level, so a container that nested
/// directories deeper than the descriptor limit (seconds of work: 1100 levels against a limit of
/// 1024) made its layer impossible to remove. Here one descriptor is open at a time: the walk goes
/// down by name and back up through `..`, which must be the directory it came from (same device
/// and inode: the tree belongs to a container that is gone, nothing moves it meanwhile).
pub fn remove_tree(root: &Path) -> std::io::Result<()> {
    let open_at = |dir: &OwnedFd, name: &OsStr| {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        nix::fcntl::openat(dir, name, flags, Mode::empty())
    };
    let top = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root);
    let mut dir = match top {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => OwnedFd::from(other?),
    };
    // Per level, from the top: the directory's name in its parent, its identity, and the
    // subdirectories still to empty.
    let mut levels = vec![(OsString::new(), identity(&dir)?, empty_out(&dir)?)];
    while let Some((_, _, pending)) = levels.last_mut() {
        if let Some(sub) = pending.pop() {
            match open_at(&dir, &sub) {
                Ok(child) => {
                    levels.push((sub, identity(&child)?, empty_out(&child)?));
                    dir = child;
                }
                Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let (name, _, _) = levels.pop().unwrap_or_default();
        let Some((_, parent_id, pending)) = levels.last_mut() else {
            break;
        };
        let parent = open_at(&dir, OsStr::new(".."))?;
        if identity(&parent)? != *parent_id {
            return Err(std::io::Error::other(format!(
                "{}: a directory moved while it was being removed",
                root.display()
            )));
        }
        match unlinkat(&parent, name.as_os_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            // Something appeared in it meanwhile: empty it again.
            Err(nix::Error::ENOTEMPTY) => pending.push(name),
            Err(e) => return Err(e.into()),
        }
        dir = parent;
    }
    drop(dir);
    match std::fs::remove_dir(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A directory's device and inode.
fn identity(dir: &OwnedFd) -> nix::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(dir)?;
    Ok((st.st_dev, st.st_ino))
}

/// Removes every file and empty subdirectory of `dir`; returns the subdirectories left to empty.
fn empty_out(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let mut entries = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let mut pending = Vec::new();
    for entry in entries.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(kind) => kind == nix::dir::Type::Directory,
            None => nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR),
        };
        let how = match is_dir {
            true => UnlinkatFlags::RemoveDir,
            false => UnlinkatFlags::NoRemoveDir,
        };
        match unlinkat(dir, name, how) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(nix::Error::ENOTEMPTY | nix::Error::EEXIST) if is_dir => {
                pending.push(name.to_os_string())
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_deeper_than_the_descriptor_limit_is_removed_with_everything_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("layer");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("top"), "x").unwrap();
        std::fs::create_dir_all(root.join("wide/a/b")).unwrap();
        std::fs::create_dir(root.join("wide/c")).unwrap();
        // A link out of the tree, to a directory that must keep what it holds.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("kept"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("wide/a/out")).unwrap();
        // 3000 levels (a path longer than PATH_MAX), each made relative to the last.
        let mut dir = OwnedFd::from(std::fs::File::open(&root).unwrap());
        for _ in 0..3000 {
            nix::sys::stat::mkdirat(&dir, "d", Mode::S_IRWXU).unwrap();
            dir = nix::fcntl::openat(
                &dir,
                "d",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .unwrap();
        }
        std::fs::write(
            format!(
                "/proc/self/fd/{}/deepest",
                std::os::fd::AsRawFd::as_raw_fd(&dir)
            ),
            "x",
        )
        .unwrap();
        drop(dir);
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(outside.join("kept").exists(), "the link was followed");
        remove_tree(&root).unwrap();
    }

    #[test]
    fn roots_are_made_or_narrowed_to_0700_and_files_are_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tmp.path().join("a/b");
        ensure_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        write(&root.join("f"), b"secret").unwrap();
        assert_eq!(mode(&root.join("f")), 0o600);
    }
}
