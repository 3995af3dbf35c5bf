//! The state store: one directory per container under the state root, a JSON state file written
//! atomically (write + rename), and a name index whose entries are claimed with O_EXCL.

use std::io::Write;
use std::path::PathBuf;

use crate::cgroups::Manager;
use crate::config::Paths;
use crate::error::io;
use crate::id::ContainerId;
use crate::network::{Attachment, NetworkMode};
use crate::spec::Limits;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the name {0:?} is already in use by another container; choose another or remove that one"
    )]
    NameInUse(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("{0:?} matches several containers: {1}; give more of the id")]
    Ambiguous(String, String),
    #[error(transparent)]
    Io(#[from] crate::error::PathError),
    #[error("state file {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    /// Set up and waiting for `start` (OCI `create`).
    Created,
    Running,
    /// Frozen by `pause`.
    Paused,
    Exited,
}

/// A process identified beyond its pid: the start time (clock ticks after boot, from
/// /proc/PID/stat) tells a live process from a later one that reused the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessRef {
    pub fn of(pid: i32) -> Option<Self> {
        stat(pid).map(|(_, start_time)| ProcessRef { pid, start_time })
    }

    /// True while the process exists and has not been reaped (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|(state, start)| state != "Z" && start == self.start_time)
    }
}

/// The state letter and the start time (clock ticks after boot) from /proc/PID/stat. The fields
/// are counted after the command name, which the process itself chooses (prctl PR_SET_NAME): it
/// may hold spaces, `)` and bytes that are not UTF-8, so only what follows its last `)` is read.
fn stat(pid: i32) -> Option<(String, u64)> {
    let path = format!("/proc/{pid}/stat");
    // One read into a buffer longer than any such line (procfs returns it whole): std's
    // read_to_string stats the file, which says 0 bytes, and grows its buffer from 32 (seven calls).
    let mut buf = vec![0u8; 2048];
    let mut file = std::fs::File::open(&path).ok()?;
    let n = std::io::Read::read(&mut file, &mut buf).ok()?;
    if n < buf.len() {
        buf.truncate(n);
    } else {
        buf = std::fs::read(&path).ok()?;
    }
    let after_name = buf.iter().rposition(|&b| b == b')')? + 1;
    let text = std::str::from_utf8(&buf[after_name..]).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    Some((fields.first()?.to_string(), fields.get(19)?.parse().ok()?))
}

/// Everything poc records about a container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub id: ContainerId,
    pub name: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    pub status: Status,
    /// The container's init, as seen from the host.
    pub init: Option<ProcessRef>,
    /// The process that reaps the init and records its exit: poc itself in the foreground, the
    /// detached monitor otherwise.
    pub monitor: Option<ProcessRef>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// Docker's convention: the status, or 128 + N after signal N.
    pub exit_code: Option<i32>,
    pub cgroup: Manager,
    pub cgroup_path: String,
    /// The writable layer (overlay upper and work directories) and the log; the overlay's mount
    /// point is in the state directory.
    pub container_dir: PathBuf,
    pub auto_remove: bool,
    pub tty: bool,
    pub limits: Limits,
    pub network_mode: NetworkMode,
    /// The container's place on the bridge while it has one.
    pub network: Option<Attachment>,
    /// The OCI bundle it was created from (`poc create`); none for `poc run`'s own containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// The Spec's annotations, reported by `state`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// What a container is doing, as far as the host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Creating,
    /// Waiting for `start`.
    Created,
    Running,
    Paused,
    Exited(i32),
    /// Recorded as running, but its init is gone and nobody recorded how it ended.
    Dead,
}

impl State {
    /// The record of a container about to be created: its id, cgroup and directory named, nothing
    /// made or started yet. Each front door sets what it knows besides.
    pub fn creating(
        id: ContainerId,
        cgroup: Manager,
        cgroup_path: String,
        container_dir: PathBuf,
    ) -> Self {
        State {
            id,
            name: None,
            image: String::new(),
            command: Vec::new(),
            status: Status::Creating,
            init: None,
            monitor: None,
            created: crate::units::now_secs(),
            started: None,
            finished: None,
            exit_code: None,
            cgroup,
            cgroup_path,
            container_dir,
            auto_remove: false,
            tty: false,
            limits: Default::default(),
            network_mode: Default::default(),
            network: None,
            bundle: None,
            annotations: Default::default(),
        }
    }

    pub fn observed(&self) -> Observed {
        match self.status {
            Status::Exited => Observed::Exited(self.exit_code.unwrap_or(-1)),
            Status::Creating => match self.monitor {
                Some(m) if m.is_alive() => Observed::Creating,
                _ => Observed::Dead,
            },
            Status::Created => match self.init {
                Some(init) if init.is_alive() => Observed::Created,
                _ => Observed::Dead,
            },
            Status::Paused => match self.init {
                Some(init) if init.is_alive() => Observed::Paused,
                _ => Observed::Dead,
            },
            Status::Running => match self.init {
                Some(init) if init.is_alive() => Observed::Running,
                _ => match self.monitor {
                    // The monitor is recording the exit right now.
                    Some(m) if m.is_alive() => Observed::Running,
                    _ => Observed::Dead,
                },
            },
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.container_dir.join("container.log")
    }
}

const STATE_FILE: &str = "state.json";

/// Claims the container's directory and, if it has one, its name. Either both succeed or neither
/// is left behind.
pub fn reserve(paths: &Paths, id: &str, name: Option<&str>) -> Result<PathBuf, StateError> {
    let dir = paths.container_state_dir(id);
    let parent = dir.parent().unwrap_or(&dir);
    crate::private::create_dir_all(parent).map_err(io("create", parent))?;
    crate::private::create_dir(&dir).map_err(io("create", &dir))?;
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
    crate::private::create_dir_all(&names).map_err(io("create", &names))?;
    let path = names.join(name);
    match crate::private::options()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => Ok(file.write_all(id.as_bytes()).map_err(io("write", &path))?),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StateError::NameInUse(name.to_string()))
        }
        Err(e) => Err(io("create", &path)(e).into()),
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
    crate::private::write(&tmp, &text).map_err(io("write", &tmp))?;
    Ok(std::fs::rename(&tmp, &path).map_err(io("rename", &path))?)
}

/// A container removed between being resolved and being read (racing `rm`) is reported as missing.
pub fn load(paths: &Paths, id: &str) -> Result<State, StateError> {
    let path = paths.container_state_dir(id).join(STATE_FILE);
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StateError::NoSuchContainer(id.to_string()),
        _ => io("read", &path)(e).into(),
    })?;
    serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
}

/// Holds a container's lock: an flock on its state directory. Commands that change a container take
/// it, then re-read the state, so racing commands act one after the other on what is really there.
pub struct Lock {
    _dir: nix::fcntl::Flock<std::fs::File>,
}

pub fn lock(paths: &Paths, id: &str) -> Result<Lock, StateError> {
    let dir = paths.container_state_dir(id);
    let file = std::fs::File::open(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StateError::NoSuchContainer(id.to_string()),
        _ => io("open", &dir)(e).into(),
    })?;
    let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io("lock", &dir)(e.into()))?;
    Ok(Lock { _dir: locked })
}

/// Loads the state under its lock; a container removed while we waited is reported as missing.
pub fn load_locked(paths: &Paths, id: &str) -> Result<(Lock, State), StateError> {
    let lock = lock(paths, id)?;
    Ok((lock, load(paths, id)?))
}

/// The id of the container a user means, in Docker's order: its full id (an OCI container's id
/// too), its name, or a unique prefix of the id.
pub fn resolve(paths: &Paths, query: &str) -> Result<String, StateError> {
    if ContainerId::parse(query).is_ok() && exists(paths, query) {
        return Ok(query.to_string());
    }
    if let Ok(id) = std::fs::read_to_string(paths.names_dir().join(query)) {
        if !query.contains('/') && !query.is_empty() {
            return Ok(id);
        }
    }
    let dir = paths.state_root.join("containers");
    let matches: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|id| !query.is_empty() && id.starts_with(query))
                .collect()
        })
        .unwrap_or_default();
    match matches.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(StateError::NoSuchContainer(query.to_string())),
        many => Err(StateError::Ambiguous(
            query.to_string(),
            many.iter()
                .map(|id| crate::id::short(id))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Whether the container's record still exists (it may have been removed while we waited).
pub fn exists(paths: &Paths, id: &str) -> bool {
    paths.container_state_dir(id).join(STATE_FILE).exists()
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
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &dir)(e).into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchies;
    use std::path::Path;

    fn paths(root: &Path) -> Paths {
        Paths {
            state_root: root.join("state"),
            store_root: root.join("store"),
            cgroup_parent: "/poc-test".into(),
            bridge: "poc0".into(),
            subnet: "10.88.0.0/16".parse().unwrap(),
            subnet6: None,
        }
    }

    fn state(id: &str, name: Option<&str>) -> State {
        let h = Hierarchies::parse_mountinfo("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        State {
            id: ContainerId::parse(id).unwrap(),
            name: name.map(String::from),
            image: "busybox".into(),
            command: vec!["sh".into()],
            status: Status::Running,
            init: ProcessRef::of(std::process::id() as i32),
            monitor: None,
            created: 1,
            started: Some(2),
            finished: None,
            exit_code: None,
            cgroup: Manager::for_path(&h, "/poc-test/x").unwrap(),
            cgroup_path: "/poc-test/x".into(),
            container_dir: "/tmp/x".into(),
            auto_remove: true,
            tty: false,
            limits: Limits::default(),
            network_mode: NetworkMode::None,
            network: None,
            bundle: None,
            annotations: Default::default(),
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
    fn names_ids_and_prefixes_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let a = format!("abc{}", "0".repeat(61));
        let b = format!("abd{}", "0".repeat(61));
        reserve(&p, &a, Some("web")).unwrap();
        reserve(&p, &b, None).unwrap();
        assert_eq!(resolve(&p, "web").unwrap(), a);
        assert_eq!(resolve(&p, "abc").unwrap(), a);
        assert_eq!(resolve(&p, &b).unwrap(), b);
        assert!(matches!(resolve(&p, "ab"), Err(StateError::Ambiguous(..))));
        // An OCI container's exact id wins over a poc container named the same.
        reserve(&p, "host", None).unwrap();
        save(&p, &state("host", None)).unwrap();
        let c = format!("c{}", "0".repeat(63));
        reserve(&p, &c, Some("host")).unwrap();
        assert_eq!(resolve(&p, "host").unwrap(), "host");
        assert_eq!(resolve(&p, "ho").unwrap(), "host");
        assert!(matches!(
            resolve(&p, "zz"),
            Err(StateError::NoSuchContainer(_))
        ));
        assert!(matches!(
            resolve(&p, ""),
            Err(StateError::NoSuchContainer(_))
        ));
    }

    #[test]
    fn a_dead_init_is_observed_as_dead_and_pid_reuse_is_detected() {
        let mut s = state("d4", None);
        s.init = Some(ProcessRef {
            pid: std::process::id() as i32,
            start_time: 1,
        });
        assert_eq!(s.observed(), Observed::Dead);
        s.status = Status::Exited;
        s.exit_code = Some(137);
        assert_eq!(s.observed(), Observed::Exited(137));
    }

    #[test]
    fn state_round_trips_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        reserve(&p, "c3", None).unwrap();
        save(&p, &state("c3", None)).unwrap();
        let loaded = load(&p, "c3").unwrap();
        assert_eq!(loaded.init, ProcessRef::of(std::process::id() as i32));
        assert_eq!(loaded.observed(), Observed::Running);
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
