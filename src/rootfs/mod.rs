//! The container's filesystem view, built inside its own mount namespace: overlay root, the Spec's
//! mounts, /dev nodes, pivot_root, masked and read-only paths. Never touches the host's mount table.

mod cgroupfs;
mod mounts;
mod resolve;
mod syscall;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use crate::cgroups::Hierarchies;

pub use resolve::{mkdir_all as mkdir_all_in_root, open_dir, open_in, proc_path};
pub use syscall::{LinuxMounts, Mounts};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("mount of {what} on {path}: {source}")]
    Mount {
        what: String,
        path: PathBuf,
        source: nix::Error,
    },
    /// A hook run before pivot_root failed (its own message).
    #[error("{0}")]
    Hook(String),
}

impl RootfsError {
    /// The kernel's error.
    pub fn errno(&self) -> nix::Error {
        match self {
            RootfsError::Sys { source, .. } | RootfsError::Mount { source, .. } => *source,
            RootfsError::Hook(_) => nix::Error::EIO,
        }
    }
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |source| RootfsError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the container's root comes from.
#[derive(Debug, Clone)]
pub enum RootSource {
    /// An image (read-only lower) with this container's own upper and work directories.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    /// An OCI bundle's root directory, used as it is (`root.path`, made absolute by the caller).
    Bundle,
}

/// Builds the root at `spec.root.path` and pivots into it. Runs in the container's init, in its
/// new mount namespace, before privileges are dropped. Everything under the root is reached through
/// descriptors resolved inside it (see `resolve`), never by a name the image could redirect.
/// Every mount goes through `m`.
pub fn prepare(
    m: &dyn Mounts,
    spec: &Spec,
    source: &RootSource,
    cgroups: &Hierarchies,
    tty: bool,
    before_pivot: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(), RootfsError> {
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    // Nothing we mount from here on may propagate back to the host. A container asking for
    // slave or shared propagation keeps receiving the host's mounts (slave), never sends its own.
    let propagation = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    let first = match propagation.as_deref() {
        Some("slave" | "rslave" | "shared" | "rshared") => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_PRIVATE,
    };
    let slash = Path::new("/");
    m.mount(None, slash, None, MsFlags::MS_REC | first, None)
        .map_err(sys("make private", slash))?;
    mount_root(m, &root_path, source)?;
    let root = resolve::open_dir(&root_path)?;
    for entry in spec.mounts().iter().flatten() {
        mounts::mount_one(m, root.as_fd(), entry, cgroups)?;
    }
    create_devices(root.as_fd(), spec)?;
    if tty {
        resolve::create_file(root.as_fd(), Path::new("/dev/console"))?;
    }
    // OCI hooks that must see the container's mounts, not yet its root.
    before_pivot().map_err(RootfsError::Hook)?;
    m.pivot_root(root.as_fd())?;
    drop(root);
    let root = resolve::open_dir(Path::new("/"))?;
    if let Some(propagation) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
    {
        set_root_propagation(m, &propagation)?;
    }
    if let Some(linux) = spec.linux() {
        for (key, value) in linux.sysctl().iter().flatten() {
            write_sysctl(root.as_fd(), key, value)?;
        }
        let null = open_dev_null(root.as_fd())?;
        for path in linux.masked_paths().iter().flatten() {
            mask(m, root.as_fd(), &null, Path::new(path))?;
        }
        for path in linux.readonly_paths().iter().flatten() {
            make_read_only(m, root.as_fd(), Path::new(path))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        // The root mount alone: /dev, /proc, tmpfs and volumes keep their own flags.
        m.set_read_only(root.as_fd())
            .map_err(sys("read-only root", Path::new("/")))?;
    }
    Ok(())
}

fn mount_root(m: &dyn Mounts, root: &Path, source: &RootSource) -> Result<(), RootfsError> {
    match source {
        // A mount point of its own, which pivot_root needs; recursive, so that what the caller
        // mounted inside the bundle stays.
        RootSource::Bundle => m
            .mount(
                Some(root),
                root,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|source| RootfsError::Mount {
                what: "the bundle's root".into(),
                path: root.to_path_buf(),
                source,
            }),
        RootSource::Overlay { lower, upper, work } => {
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            m.mount(
                Some(Path::new("overlay")),
                root,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(|source| RootfsError::Mount {
                what: format!("overlay ({data})"),
                path: root.to_path_buf(),
                source,
            })
        }
    }
}

/// Device nodes from the Spec, plus the usual /dev symlinks. Existing nodes (a bind-mounted /dev)
/// stay. Nodes are made with their exact mode (no umask) relative to their directory's descriptor.
fn create_devices(root: BorrowedFd, spec: &Spec) -> Result<(), RootfsError> {
    let devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let made = devices
        .iter()
        .try_for_each(|device| make_device(root, device));
    nix::sys::stat::umask(old_umask);
    made?;
    let dev = resolve::mkdir_all(root, Path::new("/dev"), ResolveFlag::RESOLVE_NO_SYMLINKS)?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match nix::unistd::symlinkat(target, &dev, link) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(sys("symlink", &Path::new("/dev").join(link))(e)),
        }
    }
    Ok(())
}

fn make_device(root: BorrowedFd, device: &LinuxDevice) -> Result<(), RootfsError> {
    let path = device.path();
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(sys("mknod", path)(nix::Error::EINVAL)),
    };
    let dir = resolve::mkdir_all(root, parent, ResolveFlag::RESOLVE_NO_SYMLINKS)?;
    let kind = match device.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let mode = Mode::from_bits_truncate(device.file_mode().unwrap_or(0o666));
    let dev = makedev(device.major() as u64, device.minor() as u64);
    match mknodat(&dir, name, kind, mode, dev) {
        Ok(()) => {}
        Err(nix::Error::EEXIST) => {
            // A node already there (a bound /dev) stays; anything else the image put under
            // that name (a symlink, a file) is replaced by the node.
            let st = nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(sys("stat", path))?;
            let existing = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if ![SFlag::S_IFCHR, SFlag::S_IFBLK, SFlag::S_IFIFO].contains(&existing) {
                nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                    .map_err(sys("replace", path))?;
                mknodat(&dir, name, kind, mode, dev).map_err(sys("mknod", path))?;
            }
        }
        Err(e) => return Err(sys("mknod", path)(e)),
    }
    nix::unistd::fchownat(
        &dir,
        name,
        device.uid().map(Into::into),
        device.gid().map(Into::into),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys("chown", path))
}

/// `linux.rootfsPropagation`, applied to the whole tree under the new root.
fn set_root_propagation(m: &dyn Mounts, value: &str) -> Result<(), RootfsError> {
    let flags = match value {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => {
            return Err(sys("rootfsPropagation", Path::new(value))(
                nix::Error::EINVAL,
            ))
        }
    };
    let slash = Path::new("/");
    m.mount(None, slash, None, flags, None)
        .map_err(sys("set the propagation of", slash))
}

/// One `linux.sysctl` entry, written through the container's own /proc (so a namespaced key such
/// as net.* reaches the container's namespace). Keys are dotted names, never paths.
fn write_sysctl(root: BorrowedFd, key: &str, value: &str) -> Result<(), RootfsError> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let valid = !key.is_empty()
        && key
            .split('.')
            .all(|part| !part.is_empty() && part != ".." && !part.contains('/'));
    if !valid {
        return Err(sys("sysctl", &path)(nix::Error::EINVAL));
    }
    let file = resolve::open_in(
        root,
        &path,
        OFlag::O_WRONLY,
        ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
    .map_err(sys("open the sysctl", &path))?;
    // The container's /proc, not whatever a bundle put there (a directory, a bind mount).
    let on_proc = nix::sys::statfs::fstatfs(&file)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    if !on_proc {
        return Err(sys("write the sysctl (not on procfs)", &path)(
            nix::Error::EXDEV,
        ));
    }
    nix::unistd::write(&file, value.as_bytes())
        .map(drop)
        .map_err(sys("write the sysctl", &path))
}

/// The container's /dev/null, checked to be the null device: it is bound over masked files.
fn open_dev_null(root: BorrowedFd) -> Result<OwnedFd, RootfsError> {
    let path = Path::new("/dev/null");
    let null = resolve::open_in(root, path, OFlag::O_PATH, ResolveFlag::RESOLVE_NO_SYMLINKS)
        .map_err(sys("open", path))?;
    let st = nix::sys::stat::fstat(&null).map_err(sys("stat", path))?;
    let is_null = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && st.st_rdev == makedev(1, 3);
    if !is_null {
        return Err(sys("use as the null device", path)(nix::Error::EPERM));
    }
    Ok(null)
}

/// Hides a host path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(m: &dyn Mounts, root: BorrowedFd, null: &OwnedFd, path: &Path) -> Result<(), RootfsError> {
    let target = match resolve::open_in(root, path, OFlag::O_PATH, ResolveFlag::RESOLVE_NO_SYMLINKS)
    {
        Err(nix::Error::ENOENT) => return Ok(()),
        other => other.map_err(sys("open", path))?,
    };
    let is_dir = nix::sys::stat::fstat(&target)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
    let result = if is_dir {
        m.mount(
            Some(Path::new("tmpfs")),
            &resolve::proc_path(&target),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        m.bind(
            null.as_fd(),
            target.as_fd(),
            MsFlags::empty(),
            MsFlags::empty(),
        )
    };
    result.map_err(|source| RootfsError::Mount {
        what: "mask".into(),
        path: path.to_path_buf(),
        source,
    })
}

fn make_read_only(m: &dyn Mounts, root: BorrowedFd, path: &Path) -> Result<(), RootfsError> {
    let target = match resolve::open_in(root, path, OFlag::O_PATH, ResolveFlag::RESOLVE_NO_SYMLINKS)
    {
        Err(nix::Error::ENOENT) => return Ok(()),
        other => other.map_err(sys("open", path))?,
    };
    let flags = MsFlags::MS_REC
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    let bound = m.bind(target.as_fd(), target.as_fd(), flags, MsFlags::empty());
    bound.map_err(|source| RootfsError::Mount {
        what: "read-only bind".into(),
        path: path.to_path_buf(),
        source,
    })
}

/// Binds the terminal's slave over /dev/console, as a console-attached init expects.
pub fn bind_console(m: &dyn Mounts, slave: BorrowedFd) -> Result<(), RootfsError> {
    let console = Path::new("/dev/console");
    let root = resolve::open_dir(Path::new("/"))?;
    let target = resolve::open_in(
        root.as_fd(),
        console,
        OFlag::O_PATH,
        ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
    .map_err(sys("open", console))?;
    m.bind(slave, target.as_fd(), MsFlags::empty(), MsFlags::empty())
        .map_err(|source| RootfsError::Mount {
            what: "the terminal".into(),
            path: console.to_path_buf(),
            source,
        })
}
