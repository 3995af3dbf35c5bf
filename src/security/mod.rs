//! Privileges of the container's process: capability sets, no_new_privs, seccomp, the user it runs
//! as. Runs in the container's process after its mounts are done and before exec (users are
//! resolved before, in poc, through a descriptor of the container's root; filters are compiled there).

pub mod seccomp;
pub mod user;

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability {0}")]
    Unknown(String),
    #[error("setting the {set:?} capability set: {source}")]
    Caps {
        set: CapSet,
        source: caps::errors::CapsError,
    },
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("{0}")]
    NotGrantable(String),
}

/// Limits what any later exec can grant to `wanted`'s bounding set. Done first, while poc's
/// process still holds CAP_SETPCAP, and before the user changes.
pub fn apply_bounding(wanted: &LinuxCapabilities) -> Result<(), SecurityError> {
    let bounding = to_caps(wanted.bounding())?;
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| SecurityError::Caps {
                set: CapSet::Bounding,
                source,
            })?;
        }
    }
    Ok(())
}

/// Sets effective, permitted and inheritable to `wanted`'s (each capset must keep effective within
/// permitted); ambient is cleared unless asked for. For a root process, after `apply_bounding`.
pub fn apply_sets(wanted: &LinuxCapabilities) -> Result<(), SecurityError> {
    caps::clear(None, CapSet::Ambient).map_err(|source| SecurityError::Caps {
        set: CapSet::Ambient,
        source,
    })?;
    for (set, list) in [
        (CapSet::Effective, wanted.effective()),
        (CapSet::Permitted, wanted.permitted()),
        (CapSet::Inheritable, wanted.inheritable()),
    ] {
        caps::set(None, set, &to_caps(list)?)
            .map_err(|source| SecurityError::Caps { set, source })?;
    }
    // The kernel keeps in the ambient set only what is both permitted and inheritable; runc's
    // default config lists ambient capabilities without inheritable ones, and runc skips them.
    let inheritable = to_caps(wanted.inheritable())?;
    let permitted = to_caps(wanted.permitted())?;
    for cap in to_caps(wanted.ambient())?
        .into_iter()
        .filter(|c| inheritable.contains(c) && permitted.contains(c))
    {
        caps::raise(None, CapSet::Ambient, cap).map_err(|source| SecurityError::Caps {
            set: CapSet::Ambient,
            source,
        })?;
    }
    Ok(())
}

fn to_caps(list: &Option<Capabilities>) -> Result<CapsHashSet, SecurityError> {
    list.iter()
        .flatten()
        .map(|cap| {
            let name = format!("CAP_{cap}");
            name.parse().map_err(|_| SecurityError::Unknown(name))
        })
        .collect()
}

/// Docker's names for the rlimits.
const RLIMIT_NAMES: [(&str, PosixRlimitType); 16] = [
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
    ("as", PosixRlimitType::RlimitAs),
];

pub fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    RLIMIT_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// `nofile` for RLIMIT_NOFILE, as `--ulimit` spells it.
pub fn rlimit_name(typ: PosixRlimitType) -> &'static str {
    RLIMIT_NAMES
        .iter()
        .find(|(_, t)| *t == typ)
        .map_or("?", |(n, _)| n)
}

/// setrlimit's resource number for an OCI rlimit type.
pub fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Refuses, before anything is created, what the container's process could not be given on this
/// host: a capability poc does not hold itself, or a hard rlimit above poc's own without
/// CAP_SYS_RESOURCE (these machines run poc without it).
pub fn check_grantable(process: &oci_spec::runtime::Process) -> Result<(), SecurityError> {
    let held = caps::read(None, CapSet::Permitted).map_err(|source| SecurityError::Caps {
        set: CapSet::Permitted,
        source,
    })?;
    let wanted = match process.capabilities() {
        Some(caps) => to_caps(caps.bounding())?,
        None => CapsHashSet::new(),
    };
    if let Some(missing) = wanted.difference(&held).next() {
        return Err(SecurityError::NotGrantable(format!(
            "capability {missing} (--cap-add) cannot be given: poc itself does not hold it on this host"
        )));
    }
    let can_raise = held.contains(&caps::Capability::CAP_SYS_RESOURCE);
    for limit in process.rlimits().iter().flatten() {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct we pass.
        if unsafe { libc::getrlimit(rlimit_resource(limit.typ()), &mut current) } != 0 {
            continue;
        }
        if limit.hard() > current.rlim_max && !can_raise {
            let show = |v: u64| {
                if v == libc::RLIM_INFINITY {
                    "unlimited".to_string()
                } else {
                    v.to_string()
                }
            };
            return Err(SecurityError::NotGrantable(format!(
                "--ulimit {}: a hard limit of {} is above poc's own ({}), and raising it needs CAP_SYS_RESOURCE, which this host does not give poc",
                rlimit_name(limit.typ()),
                show(limit.hard()),
                show(current.rlim_max)
            )));
        }
    }
    Ok(())
}

/// The capabilities poc itself may give (its permitted set): what `--privileged` means here.
pub fn own_capabilities() -> Vec<oci_spec::runtime::Capability> {
    let Ok(held) = caps::read(None, CapSet::Permitted) else {
        return Vec::new();
    };
    let mut names: Vec<String> = held.iter().map(|c| c.to_string()).collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| n.strip_prefix("CAP_"))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Lowers the effective set to what cannot read a file its mode forbids (no CAP_DAC_OVERRIDE or
/// CAP_DAC_READ_SEARCH): the kernel then finds the exec stub unreadable and runs it undumpable.
/// The command's own capabilities come from the permitted, ambient and bounding sets at its exec,
/// which this leaves alone.
pub fn lower_effective_for_exec() -> Result<(), SecurityError> {
    for cap in [
        caps::Capability::CAP_DAC_OVERRIDE,
        caps::Capability::CAP_DAC_READ_SEARCH,
    ] {
        caps::drop(None, CapSet::Effective, cap).map_err(|source| SecurityError::Caps {
            set: CapSet::Effective,
            source,
        })?;
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<(), SecurityError> {
    nix::sys::prctl::set_no_new_privs().map_err(SecurityError::NoNewPrivs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_names_map_to_kernel_capabilities() {
        let list: Capabilities = crate::spec::DEFAULT_CAPABILITIES.iter().copied().collect();
        let set = to_caps(&Some(list)).unwrap();
        assert_eq!(set.len(), 14);
        assert!(set.contains(&caps::Capability::CAP_NET_BIND_SERVICE));
        assert!(set.contains(&caps::Capability::CAP_AUDIT_WRITE));
        assert!(!set.contains(&caps::Capability::CAP_SYS_ADMIN));
    }
}
