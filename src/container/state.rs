//! The state store: one directory per container under the state root, a JSON state file written
//! atomically (write + rename), and a name index whose entries are claimed with O_EXCL.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cgroups::Manager;
use crate::config::Paths;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the name {0:?} is already in use by another container; choose another or remove that one"
    )]
    NameInUse(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

/// Everything poc records about a container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    pub status: Status,
    /// The container's init, as seen from the host.
    pub pid: Option<i32>,
    /// The poc process that created it and waits for it.
    pub owner_pid: i32,
    pub created: u64,
    pub started: Option<u64>,
    pub cgroup: Manager,
    pub cgroup_path: String,
    /// The writable layer (overlay upper, work and mount point).
    pub layer_dir: PathBuf,
    pub auto_remove: bool,
}

const STATE_FILE: &str = "state.json";

/// Claims the container's directory and, if it has one, its name. Either both succeed or neither
/// is left behind.
pub fn reserve(paths: &Paths, id: &str, name: Option<&str>) -> Result<PathBuf, StateError> {
    let dir = paths.container_state_dir(id);
    let parent = dir.parent().unwrap_or(&dir);
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    std::fs::create_dir(&dir).map_err(io("create", &dir))?;
    if let Some(name) = name {
        if let Err(e) = claim_name(paths, name, id) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    }
    Ok(dir)
}

fn claim_name(paths: &Paths, name: &str, id: &str) -> Result<(), StateError> {
    let names = paths.names_dir();
    std::fs::create_dir_all(&names).map_err(io("create", &names))?;
    let path = names.join(name);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => file.write_all(id.as_bytes()).map_err(io("write", &path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StateError::NameInUse(name.to_string()))
        }
        Err(e) => Err(io("create", &path)(e)),
    }
}

pub fn save(paths: &Paths, state: &State) -> Result<(), StateError> {
    let dir = paths.container_state_dir(&state.id);
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))
}

pub fn load(paths: &Paths, id: &str) -> Result<State, StateError> {
    let path = paths.container_state_dir(id).join(STATE_FILE);
    let text = std::fs::read(&path).map_err(io("read", &path))?;
    serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
}

/// Every container with a readable state file.
pub fn list(paths: &Paths) -> Vec<State> {
    let dir = paths.state_root.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| load(paths, &e.file_name().to_string_lossy()).ok())
        .collect()
}

/// Removes the state directory and the name entry (only if it still points at this container).
pub fn remove(paths: &Paths, id: &str, name: Option<&str>) -> Result<(), StateError> {
    if let Some(name) = name {
        let path = paths.names_dir().join(name);
        if std::fs::read_to_string(&path).is_ok_and(|owner| owner == id) {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    let dir = paths.container_state_dir(id);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchies;

    fn paths(root: &Path) -> Paths {
        Paths {
            state_root: root.join("state"),
            store_root: root.join("store"),
            cgroup_parent: "/poc-test".into(),
        }
    }

    fn state(id: &str, name: Option<&str>) -> State {
        let h = Hierarchies::parse_mountinfo("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        State {
            id: id.into(),
            name: name.map(String::from),
            image: "busybox".into(),
            command: vec!["sh".into()],
            status: Status::Running,
            pid: Some(42),
            owner_pid: 41,
            created: 1,
            started: Some(2),
            cgroup: Manager::for_path(&h, "/poc-test/x").unwrap(),
            cgroup_path: "/poc-test/x".into(),
            layer_dir: "/tmp/x".into(),
            auto_remove: true,
        }
    }

    #[test]
    fn names_are_unique_and_released() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        reserve(&p, "a1", Some("web")).unwrap();
        let err = reserve(&p, "b2", Some("web")).unwrap_err();
        assert!(matches!(err, StateError::NameInUse(_)), "{err}");
        assert!(
            !p.container_state_dir("b2").exists(),
            "a refused reservation leaves nothing"
        );
        remove(&p, "a1", Some("web")).unwrap();
        reserve(&p, "b2", Some("web")).unwrap();
    }

    #[test]
    fn state_round_trips_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        reserve(&p, "c3", None).unwrap();
        save(&p, &state("c3", None)).unwrap();
        let loaded = load(&p, "c3").unwrap();
        assert_eq!(loaded.pid, Some(42));
        assert_eq!(loaded.cgroup, state("c3", None).cgroup);
        assert_eq!(list(&p).len(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(p.container_state_dir("c3"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("state.json")]);
        remove(&p, "c3", None).unwrap();
        assert!(list(&p).is_empty());
    }
}
