//! Privileges of the container's process: the capability sets, no_new_privs and seccomp.
//! Runs only in the container's init, after its mounts are done and before exec.

// Wired into the start path by the security issue.
#[cfg_attr(not(test), allow(dead_code))]
pub mod seccomp;

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

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
}

/// Reduces the process to `wanted`: the bounding set first (it limits what exec can grant),
/// then effective, permitted and inheritable (each capset must keep effective within permitted);
/// ambient is cleared unless asked for.
pub fn apply_capabilities(wanted: &LinuxCapabilities) -> Result<(), SecurityError> {
    let bounding = to_caps(wanted.bounding())?;
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| SecurityError::Caps {
                set: CapSet::Bounding,
                source,
            })?;
        }
    }
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
    for cap in to_caps(wanted.ambient())? {
        caps::raise(None, CapSet::Ambient, cap).map_err(|source| SecurityError::Caps {
            set: CapSet::Ambient,
            source,
        })?;
    }
    Ok(())
}

fn to_caps(list: &Option<Capabilities>) -> Result<CapsHashSet, SecurityError> {
    let mut set = CapsHashSet::new();
    for cap in list.iter().flatten() {
        let name = format!("CAP_{cap}");
        let found = caps::all()
            .into_iter()
            .find(|c| c.to_string() == name)
            .ok_or(SecurityError::Unknown(name))?;
        set.insert(found);
    }
    Ok(set)
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
