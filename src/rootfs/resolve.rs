//! Paths inside a container's root, resolved by descriptor: openat2 with RESOLVE_IN_ROOT (symlinks
//! and `..` never leave the root) and RESOLVE_NO_MAGICLINKS (no jump through /proc/PID/fd or cwd).
//! Whatever is then done to a path (mount, mknod, chdir) is done to the descriptor, never the name.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::{sys, RootfsError};

const IN_ROOT: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// A directory to resolve paths under, as an O_PATH descriptor.
pub fn open_dir(path: &Path) -> Result<OwnedFd, RootfsError> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open", path))
}

/// `path` (absolute or relative, as the container would see it) under `root`, opened with `flags`;
/// `extra` adds resolve flags (RESOLVE_NO_SYMLINKS where a kernel filesystem is mounted).
pub fn open_in(
    root: BorrowedFd,
    path: &Path,
    flags: OFlag,
    extra: ResolveFlag,
) -> nix::Result<OwnedFd> {
    let relative = relative(path);
    // openat2 refuses a mode without O_CREAT; nothing here creates through it.
    let how = || {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(IN_ROOT | extra)
    };
    // A path through `..` (a symlink such as /etc/hosts -> ../../etc/hostname) fails with EAGAIN
    // when any mount or rename happened on the machine meanwhile, and is to be retried: with other
    // containers starting, it did fail a container's create now and then.
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(root, relative.as_path(), how()) {
            Err(nix::Error::EAGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

/// The directory `path` under `root`, made (with its missing parents) if needed. A dangling symlink
/// on the way is followed inside the root and its target made, as runc does.
pub fn mkdir_all(
    root: BorrowedFd,
    path: &Path,
    extra: ResolveFlag,
) -> Result<OwnedFd, RootfsError> {
    mkdir_following(root, path, extra, 0)
}

const MAX_LINKS: usize = 40;

fn mkdir_following(
    root: BorrowedFd,
    path: &Path,
    extra: ResolveFlag,
    links: usize,
) -> Result<OwnedFd, RootfsError> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    match open_in(root, path, flags, extra) {
        Err(nix::Error::ENOENT) => {}
        other => return other.map_err(sys("open", path)),
    }
    let (parent, name) = split(path)?;
    let parent_fd = mkdir_following(root, &parent, extra, links)?;
    match nix::sys::stat::mkdirat(&parent_fd, name.as_path(), Mode::from_bits_truncate(0o755)) {
        Ok(()) => {}
        Err(nix::Error::EEXIST) if links < MAX_LINKS => {
            // Something is there but did not open: a dangling symlink (made inside the root).
            if let Ok(target) = nix::fcntl::readlinkat(&parent_fd, name.as_path()) {
                let target = parent.join(target);
                mkdir_following(root, &target, extra, links + 1)?;
            }
        }
        Err(nix::Error::EEXIST) => return Err(sys("mkdir", path)(nix::Error::ELOOP)),
        Err(e) => return Err(sys("mkdir", path)(e)),
    }
    open_in(root, path, flags, extra).map_err(sys("open", path))
}

/// The file `path` under `root` as an O_PATH descriptor, created empty (parents too) if missing:
/// a mount point for a file bind mount.
pub fn create_file(root: BorrowedFd, path: &Path) -> Result<OwnedFd, RootfsError> {
    match open_in(root, path, OFlag::O_PATH, ResolveFlag::empty()) {
        Err(nix::Error::ENOENT) => {}
        other => return other.map_err(sys("open", path)),
    }
    let (parent, name) = split(path)?;
    let parent_fd = mkdir_all(root, &parent, ResolveFlag::empty())?;
    let made = nix::fcntl::openat(
        &parent_fd,
        name.as_path(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    );
    match made {
        Ok(_) | Err(nix::Error::EEXIST) => {}
        Err(e) => return Err(sys("create", path)(e)),
    }
    open_in(root, path, OFlag::O_PATH, ResolveFlag::empty()).map_err(sys("open", path))
}

/// The name through which mount(2) and friends reach what `fd` refers to.
pub fn proc_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// `path` without its leading `/` (openat2 resolves relative to the root descriptor).
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// The parent directory and last name of `path`; a path ending in `..` or `/` has no name to make.
fn split(path: &Path) -> Result<(PathBuf, PathBuf), RootfsError> {
    let rel = relative(path);
    match (rel.parent(), rel.components().next_back()) {
        (Some(parent), Some(Component::Normal(name))) => {
            Ok((parent.to_path_buf(), PathBuf::from(name)))
        }
        _ => Err(sys("create", path)(nix::Error::EINVAL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(proc_path(fd)).unwrap()
    }

    #[test]
    fn symlinks_and_dot_dot_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real", r.join("climb")).unwrap();
        symlink("/etc", r.join("hostetc")).unwrap();
        let fd = open_dir(r).unwrap();
        let open = |p: &str| {
            open_in(
                fd.as_fd(),
                Path::new(p),
                OFlag::O_PATH,
                ResolveFlag::empty(),
            )
        };
        assert_eq!(real(&open("/abs/dir").unwrap()), r.join("real/dir"));
        assert_eq!(real(&open("/climb/dir").unwrap()), r.join("real/dir"));
        assert_eq!(real(&open("/../../real").unwrap()), r.join("real"));
        assert_eq!(open("/hostetc/passwd").unwrap_err(), nix::Error::ENOENT);
    }

    #[test]
    fn magic_links_are_refused_and_made_directories_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        symlink("/elsewhere", r.join("made")).unwrap();
        let fd = open_dir(r).unwrap();
        // A root that has a /proc: the real one.
        let host = open_dir(Path::new("/")).unwrap();
        for magic in ["/proc/self/cwd", "/proc/self/fd/0", "/proc/self/root"] {
            let opened = open_in(
                host.as_fd(),
                Path::new(magic),
                OFlag::O_PATH,
                ResolveFlag::empty(),
            );
            assert_eq!(opened.unwrap_err(), nix::Error::ELOOP, "{magic}");
        }
        let made = mkdir_all(fd.as_fd(), Path::new("/made/a/b"), ResolveFlag::empty()).unwrap();
        assert_eq!(real(&made), r.join("elsewhere/a/b"));
        let file = create_file(fd.as_fd(), Path::new("/etc/x.conf")).unwrap();
        assert_eq!(real(&file), r.join("etc/x.conf"));
        let no_links = mkdir_all(
            fd.as_fd(),
            Path::new("/made/c"),
            ResolveFlag::RESOLVE_NO_SYMLINKS,
        );
        assert!(no_links.is_err());
    }
}
