//! Where poc keeps things: state root, image store and cgroup parent.
//! Every path is configurable so tests and users never collide; nothing here touches the disk.

use std::path::PathBuf;

pub const DEFAULT_STATE_ROOT: &str = "/run/poc";
pub const DEFAULT_STORE_ROOT: &str = "/var/lib/poc";
pub const DEFAULT_CGROUP_PARENT: &str = "/poc";

/// The three roots every command works under.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Container state (small JSON files, locks): tmpfs, gone at reboot like the containers.
    pub state_root: PathBuf,
    /// Images and the containers' writable layers: on disk.
    pub store_root: PathBuf,
    /// Absolute cgroup path under which every container gets its own leaf.
    pub cgroup_parent: String,
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

    pub fn names_dir(&self) -> PathBuf {
        self.state_root.join("names")
    }
}
