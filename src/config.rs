//! Where poc keeps things: state root, image store and cgroup parent.
//! Every path is configurable so tests and users never collide; nothing here touches the disk.

use std::path::PathBuf;

use crate::network::BridgeConfig;

pub const DEFAULT_STATE_ROOT: &str = "/run/poc";
pub const DEFAULT_STORE_ROOT: &str = "/var/lib/poc";
pub const DEFAULT_CGROUP_PARENT: &str = "/poc";
pub const DEFAULT_BRIDGE: &str = "poc0";
pub const DEFAULT_SUBNET: &str = "10.77.0.0/16";

/// The three roots every command works under.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Container state (small JSON files, locks): tmpfs, gone at reboot like the containers.
    pub state_root: PathBuf,
    /// Images and the containers' writable layers: on disk.
    pub store_root: PathBuf,
    /// Absolute cgroup path under which every container gets its own leaf.
    pub cgroup_parent: String,
    /// The bridge network containers join by default.
    pub bridge: String,
    pub subnet: ipnetwork::Ipv4Network,
    /// The bridge's IPv6 subnet, if it has IPv6 (`--ipv6`).
    pub subnet6: Option<ipnetwork::Ipv6Network>,
}

impl Paths {
    pub fn images_dir(&self) -> PathBuf {
        self.store_root.join("images")
    }

    /// A container's writable layer (overlay upper and work dirs) and its log live beside the images,
    /// on disk, so that file I/O inside a container is measured against the same device as the host's.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.store_root.join("containers").join(id)
    }

    pub fn container_state_dir(&self, id: &str) -> PathBuf {
        self.state_root.join("containers").join(id)
    }

    /// Compiled seccomp filters, kept across reboots (compiling takes tens of milliseconds).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.store_root.join("seccomp")
    }

    pub fn names_dir(&self) -> PathBuf {
        self.state_root.join("names")
    }

    /// The configured bridge network.
    pub fn bridge_config(&self) -> BridgeConfig {
        BridgeConfig {
            subnet6: self.subnet6,
            ..self.bridge_named(&self.bridge, self.subnet)
        }
    }

    /// A bridge network by name (leases and lock under the state root).
    pub fn bridge_named(&self, name: &str, subnet: ipnetwork::Ipv4Network) -> BridgeConfig {
        BridgeConfig {
            name: name.to_string(),
            subnet,
            subnet6: None,
            state_dir: self.state_root.join("networks").join(name),
        }
    }
}
