//! File operations on cgroupfs that every backend shares, with errors that name the path and the value.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to {op} {path}{}: {source}", if value.is_empty() { String::new() } else { format!(" (value {value:?})") })]
    Io {
        op: &'static str,
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("no cgroup filesystem is mounted (looked in /proc/self/mountinfo)")]
    NoCgroupFs,
    #[error("invalid cgroup path {0:?}: it must be absolute, like /poc")]
    BadPath(String),
    #[error(
        "the {controller} controller is not available on this host, so {what} cannot be limited"
    )]
    MissingController {
        controller: &'static str,
        what: &'static str,
    },
    #[error("processes of {0} did not exit within 5 s; the cgroup was left in place")]
    Busy(PathBuf),
    #[error("{0} did not reach the freezer state {1} within 5 s")]
    Freeze(PathBuf, &'static str),
    #[error("the cgroup {0} already holds processes: a container's cgroup must be its own")]
    InUse(PathBuf),
    #[error(
        "the freezer controller is not available on this host, so the container cannot be paused"
    )]
    NoFreezer,
    #[error("poc does not support {0}")]
    Unsupported(String),
    #[error(transparent)]
    Devices(#[from] super::devices::DeviceError),
}

impl CgroupError {
    pub fn io(op: &'static str, path: &Path, value: &str, source: std::io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.to_path_buf(),
            value: value.to_string(),
            source,
        }
    }
}

/// One write(2) of `value` to an existing cgroup file, as the kernel expects it.
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| CgroupError::io("write", &path, value, e))
}

pub fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CgroupError::io("read", &path, "", e))
}

pub fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(dir).map_err(|e| CgroupError::io("create", dir, "", e))
}

pub fn add_pid(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    write(dir, "cgroup.procs", &pid.to_string())
}

pub fn open_dir(dir: &Path) -> Option<OwnedFd> {
    std::fs::File::open(dir).ok().map(OwnedFd::from)
}

/// Kills what is left in `dir`, waits for the kernel to let go of it and removes it.
pub fn remove_leaf(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_micros(100);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if Instant::now() > deadline {
                    return Err(CgroupError::Busy(dir.to_path_buf()));
                }
                kill_all(dir);
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(CgroupError::io("remove", dir, "", e)),
        }
    }
}

/// SIGKILLs every process in the leaf `dir`: they are the container's, and the container is going.
fn kill_all(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
