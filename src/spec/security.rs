//! Docker's security flags as Spec values: capabilities (--cap-add, --cap-drop, --privileged),
//! --security-opt (seccomp, no-new-privileges), --device, --tmpfs and --ulimit, parsed and checked.
//! Only the Spec's shape: what enforces them lives in security/, cgroups/ and rootfs/.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{Capability, LinuxDeviceType, PosixRlimit, PosixRlimitBuilder};

/// A capability named on the command line (`NET_ADMIN`, `cap_net_admin`), or `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapName {
    All,
    One(Capability),
}

pub fn parse_capability(text: &str) -> Result<CapName, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if name == "ALL" {
        return Ok(CapName::All);
    }
    Capability::from_str(name)
        .map(CapName::One)
        .map_err(|_| format!("unknown capability {text:?} (examples: NET_ADMIN, SYS_PTRACE, ALL)"))
}

/// The capabilities a container keeps, as Docker computes them: its default set (or, privileged,
/// every capability `available` to poc); `--cap-drop ALL` empties it before `--cap-add`,
/// `--cap-add ALL` fills it before `--cap-drop`; otherwise drops, then adds.
pub fn capabilities(
    default: &[Capability],
    available: &[Capability],
    privileged: bool,
    add: &[CapName],
    drop: &[CapName],
) -> Vec<Capability> {
    let mut caps: Vec<Capability> = if privileged || add.contains(&CapName::All) {
        available.to_vec()
    } else {
        default.to_vec()
    };
    if drop.contains(&CapName::All) {
        caps.clear();
    }
    caps.retain(|c| !drop.contains(&CapName::One(*c)));
    for cap in add {
        match cap {
            CapName::One(c) if !caps.contains(c) => caps.push(*c),
            _ => {}
        }
    }
    caps
}

/// What `--security-opt seccomp=` chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile, for the container's capabilities.
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format.
    Profile(PathBuf),
}

/// One `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    Seccomp(SeccompChoice),
    NoNewPrivileges(bool),
}

/// `seccomp=unconfined`, `seccomp=PROFILE.json`, `no-new-privileges[=true|false]` (Docker also
/// accepts `:` for `=`).
pub fn parse_security_opt(text: &str) -> Result<SecurityOpt, String> {
    let (key, value) = match text.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (text, None),
    };
    match (key, value) {
        ("seccomp", Some("unconfined")) => Ok(SecurityOpt::Seccomp(SeccompChoice::Unconfined)),
        ("seccomp", Some(path)) if !path.is_empty() => {
            if !Path::new(path).is_file() {
                return Err(format!("seccomp profile {path} is not a file"));
            }
            Ok(SecurityOpt::Seccomp(SeccompChoice::Profile(PathBuf::from(
                path,
            ))))
        }
        ("no-new-privileges", None | Some("true")) => Ok(SecurityOpt::NoNewPrivileges(true)),
        ("no-new-privileges", Some("false")) => Ok(SecurityOpt::NoNewPrivileges(false)),
        ("apparmor" | "label" | "systempaths", _) => Err(format!(
            "{text:?} is not supported: poc applies no AppArmor or SELinux profile"
        )),
        _ => Err(format!(
            "{text:?} is not a security option (seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges)"
        )),
    }
}

/// A host device given to the container (`--device`, or every host device when privileged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    pub container: PathBuf,
    pub typ: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    /// cgroup access: some of `rwm`.
    pub access: String,
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` (permissions some of `rwm`, default all three).
pub fn parse_device(text: &str) -> Result<DeviceRequest, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let is_access = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
    let (host, container, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, a] if is_access(a) => (*h, *h, *a),
        [h, c] => (*h, *c, "rwm"),
        [h, c, a] if is_access(a) => (*h, *c, *a),
        _ => return Err(format!("'{text}' is not HOST[:CONTAINER][:rwm]")),
    };
    if !container.starts_with('/') {
        return Err(format!("'{text}': the container path must be absolute"));
    }
    let mut device = host_device(Path::new(host)).map_err(|why| format!("'{text}': {why}"))?;
    device.container = PathBuf::from(container);
    device.access = access.to_string();
    Ok(device)
}

/// A character or block device of the host's, as the container will get it.
fn host_device(path: &Path) -> Result<DeviceRequest, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(format!("{} is not a device", path.display()));
    };
    let rdev = meta.rdev();
    Ok(DeviceRequest {
        container: path.to_path_buf(),
        typ,
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        mode: meta.mode() & 0o7777,
        access: "rwm".into(),
    })
}

/// Every device under the host's /dev, as `--privileged` gives them (Docker skips the same places:
/// the container has its own pts, shm and mqueue, and /dev/console is its terminal's).
pub fn host_devices() -> Vec<DeviceRequest> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let skipped = ["pts", "shm", "mqueue", "fd", "console", ".lxc", ".udev"];
            if dir == Path::new("/dev") && skipped.iter().any(|s| name == *s) {
                continue;
            }
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_char_device() || kind.is_block_device() {
                found.extend(host_device(&path).ok());
            }
        }
    }
    found.sort_by(|a, b| a.container.cmp(&b.container));
    found
}

/// `--tmpfs PATH[:OPTIONS]`: a tmpfs the container may write, Docker's default flags first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub path: PathBuf,
    pub options: Vec<String>,
}

pub fn parse_tmpfs(text: &str) -> Result<Tmpfs, String> {
    let (path, options) = match text.split_once(':') {
        Some((p, o)) => (p, Some(o)),
        None => (text, None),
    };
    let path = super::container_path(path).map_err(|why| format!("'{text}': {why}"))?;
    let mut all: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
    all.extend(
        options
            .unwrap_or_default()
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from),
    );
    Ok(Tmpfs { path, options: all })
}

/// `--ulimit NAME=SOFT[:HARD]` (a number, or `unlimited`/-1).
pub fn parse_ulimit(text: &str) -> Result<PosixRlimit, String> {
    let bad = || format!("'{text}' is not NAME=SOFT[:HARD] (example: nofile=1024:2048)");
    let (name, values) = text.split_once('=').ok_or_else(bad)?;
    let typ = crate::security::rlimit_type(name).ok_or_else(|| {
        format!("unknown ulimit {name:?} (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack, as)")
    })?;
    let value = |v: &str| match v {
        "unlimited" | "-1" => Ok(u64::MAX),
        v => v.parse::<u64>().map_err(|_| bad()),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(format!("'{text}': the soft limit is above the hard limit"));
    }
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_dockers_add_and_drop_rules() {
        let default = [Capability::Chown, Capability::Kill, Capability::NetRaw];
        let all = [
            Capability::Chown,
            Capability::Kill,
            Capability::NetRaw,
            Capability::SysAdmin,
        ];
        let cap = |s: &str| parse_capability(s).unwrap();
        assert_eq!(cap("cap_net_admin"), CapName::One(Capability::NetAdmin));
        assert_eq!(cap("SYS_PTRACE"), CapName::One(Capability::SysPtrace));
        assert_eq!(cap("all"), CapName::All);
        assert!(parse_capability("FLY").is_err());
        let set = |add: &[&str], drop: &[&str], privileged| {
            let add: Vec<_> = add.iter().map(|s| cap(s)).collect();
            let drop: Vec<_> = drop.iter().map(|s| cap(s)).collect();
            capabilities(&default, &all, privileged, &add, &drop)
        };
        assert_eq!(
            set(&[], &["NET_RAW"], false),
            [Capability::Chown, Capability::Kill]
        );
        assert_eq!(set(&["SYS_ADMIN"], &["ALL"], false), [Capability::SysAdmin]);
        assert_eq!(set(&["ALL"], &["CHOWN"], false).len(), 3);
        assert_eq!(set(&[], &[], true).len(), 4);
    }

    #[test]
    fn security_options_devices_tmpfs_and_ulimits_parse() {
        assert_eq!(
            parse_security_opt("seccomp=unconfined").unwrap(),
            SecurityOpt::Seccomp(SeccompChoice::Unconfined)
        );
        assert_eq!(
            parse_security_opt("no-new-privileges:false").unwrap(),
            SecurityOpt::NoNewPrivileges(false)
        );
        assert!(parse_security_opt("seccomp=/no/such.json").is_err());
        assert!(parse_security_opt("apparmor=unconfined")
            .unwrap_err()
            .contains("not supported"));
        let null = parse_device("/dev/null:/dev/mynull:rw").unwrap();
        assert_eq!(
            (null.typ, null.major, null.minor, null.access.as_str()),
            (LinuxDeviceType::C, 1, 3, "rw")
        );
        assert_eq!(
            parse_device("/dev/zero:r").unwrap().container,
            PathBuf::from("/dev/zero")
        );
        assert!(parse_device("/etc/passwd")
            .unwrap_err()
            .contains("not a device"));
        assert!(parse_device("/dev/null:rel").is_err());
        let t = parse_tmpfs("/run:size=1m,exec").unwrap();
        assert_eq!(t.path, PathBuf::from("/run"));
        assert_eq!(t.options, ["nosuid", "nodev", "noexec", "size=1m", "exec"]);
        assert!(parse_tmpfs("/proc/x").is_err());
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft(), u.hard()), (1024, 2048));
        assert_eq!(parse_ulimit("core=unlimited").unwrap().hard(), u64::MAX);
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("files=1").is_err());
    }
}
