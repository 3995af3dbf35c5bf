//! The container's filesystem view, built inside its own mount namespace: overlay root, the Spec's
//! mounts, /dev nodes, pivot_root, masked and read-only paths. Never touches the host's mount table.

mod mounts;
mod resolve;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::Spec;

pub use resolve::resolve_in_root;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount of {what} on {path}: {source}")]
    Mount {
        what: String,
        path: PathBuf,
        source: nix::Error,
    },
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |source| RootfsError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
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
}

/// Builds the root at `spec.root.path` and pivots into it. Runs in the container's init, in its
/// new mount namespace, before privileges are dropped.
pub fn prepare(spec: &Spec, source: &RootSource, tty: bool) -> Result<(), RootfsError> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    // Nothing we mount from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make private", Path::new("/")))?;
    mount_root(&root, source)?;
    for m in spec.mounts().iter().flatten() {
        mounts::mount_one(&root, m)?;
    }
    create_devices(&root, spec)?;
    if tty {
        let console = root.join("dev/console");
        std::fs::write(&console, b"").map_err(io("create", &console))?;
    }
    pivot_into(&root)?;
    if let Some(linux) = spec.linux() {
        for path in linux.masked_paths().iter().flatten() {
            mask(Path::new(path))?;
        }
        for path in linux.readonly_paths().iter().flatten() {
            make_read_only(Path::new(path))?;
        }
    }
    Ok(())
}

fn mount_root(root: &Path, source: &RootSource) -> Result<(), RootfsError> {
    match source {
        RootSource::Overlay { lower, upper, work } => {
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            mount(
                Some("overlay"),
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

/// Device nodes from the Spec, plus the usual /dev symlinks. Existing nodes (a bind-mounted /dev) stay.
fn create_devices(root: &Path, spec: &Spec) -> Result<(), RootfsError> {
    let devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    for device in devices {
        let path = resolve_in_root(root, device.path());
        let kind = match device.typ() {
            oci_spec::runtime::LinuxDeviceType::B => SFlag::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let mode = device.file_mode().unwrap_or(0o666);
        match mknod(
            &path,
            kind,
            Mode::from_bits_truncate(mode),
            makedev(device.major() as u64, device.minor() as u64),
        ) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(sys("mknod", &path)(e)),
        }
        // mknod's mode passed through the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &path))?;
        nix::unistd::chown(
            &path,
            device.uid().map(Into::into),
            device.gid().map(Into::into),
        )
        .map_err(sys("chown", &path))?;
    }
    let dev = root.join("dev");
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let path = dev.join(link);
        match symlink(target, &path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io("symlink", &path)(e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the new root.
fn pivot_into(root: &Path) -> Result<(), RootfsError> {
    nix::unistd::chdir(root).map_err(sys("chdir", root))?;
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root", root))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root", Path::new("/")))?;
    nix::unistd::chdir("/").map_err(sys("chdir", Path::new("/")))
}

/// Hides a host path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<(), RootfsError> {
    let result = if path.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match result {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(RootfsError::Mount {
            what: "mask".into(),
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn make_read_only(path: &Path) -> Result<(), RootfsError> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(source) => {
            return Err(RootfsError::Mount {
                what: "read-only bind".into(),
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(()) => {}
    }
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(Some(path), path, None::<&str>, flags, None::<&str>).map_err(|source| {
        RootfsError::Mount {
            what: "read-only remount".into(),
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Binds the terminal's slave over /dev/console, as a console-attached init expects.
pub fn bind_console(pts: &Path) -> Result<(), RootfsError> {
    let console = Path::new("/dev/console");
    mount(
        Some(pts),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| RootfsError::Mount {
        what: pts.display().to_string(),
        path: console.to_path_buf(),
        source,
    })
}
