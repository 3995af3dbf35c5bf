//! Where poc keeps things: state root, image store and cgroup parent.
//! Every path is configurable so tests and users never collide; nothing here touches the disk.

use std::path::PathBuf;

use crate::network::named::{self, NetworkRecord};
use crate::network::{BridgeConfig, NetworkError, NetworkMode};

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

    /// The container's hostname, hosts and resolv.conf, bound read-write into it: on the store's
    /// disk with its layer, as Docker keeps them, never in the state root (a small tmpfs, /run,
    /// that a container writing to its /etc/hosts could fill).
    pub fn container_etc_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("etc")
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

    /// A bridge network by its interface's name (leases and lock under the state root).
    pub fn bridge_named(&self, name: &str, subnet: ipnetwork::Ipv4Network) -> BridgeConfig {
        BridgeConfig {
            name: name.to_string(),
            subnet,
            subnet6: None,
            state_dir: self.network_leases_root().join(name),
            named: None,
        }
    }

    /// Named networks' records (`poc network create`): in the store, they outlive a reboot.
    pub fn networks_dir(&self) -> PathBuf {
        self.store_root.join("networks")
    }

    /// Where each bridge's leases and lock live: on the state root, gone at reboot like containers.
    pub fn network_leases_root(&self) -> PathBuf {
        self.state_root.join("networks")
    }

    /// The named network `name`'s record.
    pub fn network_record(&self, name: &str) -> Result<NetworkRecord, NetworkError> {
        named::get(&self.networks_dir(), name)
    }

    /// A named network's bridge.
    pub fn bridge_of_record(&self, record: &NetworkRecord) -> BridgeConfig {
        record.bridge_config(&self.networks_dir(), &self.network_leases_root())
    }

    /// The bridge a container in `mode` joins: the default network's, a named network's (which
    /// must exist), or none.
    pub fn bridge_for(&self, mode: &NetworkMode) -> Result<Option<BridgeConfig>, NetworkError> {
        match mode {
            NetworkMode::Bridge => Ok(Some(self.bridge_config())),
            NetworkMode::Named(name) => {
                Ok(Some(self.bridge_of_record(&self.network_record(name)?)))
            }
            NetworkMode::None | NetworkMode::Host => Ok(None),
        }
    }
}
