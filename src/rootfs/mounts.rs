//! One OCI mount entry onto the new root: options parsed into flags and data, targets resolved
//! inside the root so a symlink in the image cannot send a mount elsewhere.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::{io, resolve_in_root, RootfsError};

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

pub fn mount_one(root: &Path, m: &Mount) -> Result<(), RootfsError> {
    let target = resolve_in_root(root, m.destination());
    let (flags, propagation, data) = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("bind");
    let is_bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let source = m.source().as_deref();
    let mount_err = |source: nix::Error| RootfsError::Mount {
        what: m
            .source()
            .as_ref()
            .map_or(typ.to_string(), |s| s.display().to_string()),
        path: target.clone(),
        source,
    };

    // The target must exist: a file for a file bind, a directory otherwise.
    if is_bind && source.is_some_and(|s| !s.is_dir()) {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        if !target.exists() {
            std::fs::write(&target, b"").map_err(io("create", &target))?;
        }
    } else {
        std::fs::create_dir_all(&target).map_err(io("create", &target))?;
    }

    if is_bind {
        mount(
            source,
            &target,
            None::<&str>,
            flags | MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(mount_err)?;
        // Bind mounts ignore most flags on creation; a remount applies them.
        let remount = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !remount.is_empty() {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                remount | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(mount_err)?;
        }
    } else {
        let data = (!data.is_empty()).then_some(data.as_str());
        mount(source, &target, Some(typ), flags, data).map_err(mount_err)?;
    }
    if !propagation.is_empty() {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(mount_err)?;
    }
    Ok(())
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
