//! The OCI runtime front door (runc's command line): `create` from a bundle, `start`, `state`,
//! `kill`, `delete`, `pause`/`resume`, `exec --process`, `update --resources`, `ps`. The container
//! is made by the same `create` as `poc run`'s; what differs is that poc exits once the init waits
//! at its start gate, so the init becomes the caller's child (conmon and containerd's shim are
//! subreapers and reap it themselves), and that the gate is a FIFO in the state directory that
//! `start` opens later.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::Pid;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxNamespaceType, LinuxResources,
    Process, Spec,
};

use super::state::{self, Observed, State, StateError, Status};
use super::{destroy, events, load_config, ContainerError, Front, Prepared};
use crate::cgroups::{Hierarchies, Manager};
use crate::config::Paths;
use crate::error::io;
use crate::id::ContainerId;
use crate::image::now_secs;
use crate::network::{NamespacePlan, NetworkMode};
use crate::process::{self, ChildStdio};
use crate::rootfs::RootSource;

/// The OCI runtime spec version poc implements.
pub const OCI_VERSION: &str = "1.0.2";

/// The FIFO an OCI container's init waits on until `start` writes to it.
const START_FIFO: &str = "exec.fifo";

/// What `poc create` was asked for, beyond the bundle's config.json.
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub new_keyring: bool,
    /// cgroupsPath is systemd's "slice:prefix:name".
    pub systemd_cgroup: bool,
}

/// The bundle front door's part of `Prepared`.
pub struct BundleOptions {
    pub preserve_fds: u32,
    pub new_keyring: bool,
    /// Namespaces given by path, opened here and joined by the init.
    pub join: Vec<(OwnedFd, CloneFlags)>,
    /// A pid namespace given by path: the init is cloned into it.
    pub join_pid: Option<OwnedFd>,
}

/// OCI ids: what runc accepts (letters, digits, `_ + - .`), which also keeps them one path
/// component of the state root.
pub fn check_id(id: &str) -> Result<ContainerId, ContainerError> {
    ContainerId::parse(id).map_err(|e| ContainerError::Refused(e.to_string()))
}

/// The container `id` exactly (no name or prefix lookup: a runtime's caller names what it made).
fn load(paths: &Paths, id: &str) -> Result<State, ContainerError> {
    check_id(id)?;
    state::load(paths, id).map_err(|e| match e {
        StateError::NoSuchContainer(_) => not_exist(id),
        e => e.into(),
    })
}

fn load_locked(paths: &Paths, id: &str) -> Result<(state::Lock, State), ContainerError> {
    check_id(id)?;
    state::load_locked(paths, id).map_err(|e| match e {
        StateError::NoSuchContainer(_) => not_exist(id),
        e => e.into(),
    })
}

/// runc's wording, which containerd and podman look for.
fn not_exist(id: &str) -> ContainerError {
    ContainerError::Refused(format!("container {id} does not exist"))
}

/// `create`: the container set up from the bundle, its init waiting for `start`; the pid file
/// written; nothing printed (without a terminal, poc's stdio are the container's).
pub fn create(paths: &Paths, req: CreateRequest) -> Result<(), ContainerError> {
    let id = check_id(&req.id)?;
    if state::exists(paths, &req.id) {
        return Err(ContainerError::Refused(format!(
            "container with id {} already exists",
            req.id
        )));
    }
    crate::private::ensure_dir(&paths.state_root.join("containers"))
        .map_err(io("create", &paths.state_root))?;
    let bundle = std::fs::canonicalize(&req.bundle).map_err(io("open the bundle", &req.bundle))?;
    let config_path = bundle.join(super::CONFIG_FILE);
    let text = std::fs::read(&config_path).map_err(io("read", &config_path))?;
    let mut spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| ContainerError::Refused(format!("{}: {e}", config_path.display())))?;
    let root = root_path(&spec, &bundle)?;
    if let Some(r) = spec.root_mut() {
        r.set_path(root.clone());
    }
    check_supported(&spec)?;
    // No capabilities listed means none (runc's reading), never all of root's.
    if let Some(process) = spec.process_mut() {
        if process.capabilities().is_none() {
            process.set_capabilities(Some(no_capabilities()));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(resources) = linux.resources() {
            let json = serde_json::to_vec(resources).unwrap_or_default();
            linux.set_resources(Some(parse_resources(&json)?));
        }
    }
    add_default_devices(&mut spec)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| ContainerError::Refused("config.json has no process to run".into()))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && req.console_socket.is_none() {
        return Err(ContainerError::Refused(
            "process.terminal needs --console-socket: the pty master is sent there".into(),
        ));
    }
    crate::security::check_grantable(process)
        .map_err(|e| ContainerError::Refused(e.to_string()))?;
    let hierarchies = Hierarchies::detect()?;
    let cgroup_path = cgroup_path(&spec, paths, &req.id, req.systemd_cgroup);
    let cgroup = Manager::for_path(&hierarchies, &cgroup_path)?;
    cgroup.check_unused()?;
    let seccomp = super::compile_seccomp(paths, &spec)?;
    let (join, join_pid) = open_joined_namespaces(&spec)?;
    let new_netns = has_new_namespace(&spec, LinuxNamespaceType::Network);
    let state = State {
        command: process.args().clone().unwrap_or_default(),
        tty: terminal,
        network_mode: if new_netns {
            NetworkMode::None
        } else {
            NetworkMode::Host
        },
        bundle: Some(bundle),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..State::creating(
            id,
            cgroup,
            cgroup_path,
            paths.container_state_dir(&req.id).join("work"),
        )
    };
    let console_size = process.console_size().map(|s| (s.height(), s.width()));
    let mut p = Prepared {
        spec,
        // An OCI bundle brings its own network namespace; poc attaches it to no bridge.
        bridge: None,
        seccomp,
        hierarchies,
        state,
        root: RootSource::Bundle,
        front: Front::Bundle(BundleOptions {
            preserve_fds: req.preserve_fds,
            new_keyring: req.new_keyring,
            join,
            join_pid,
        }),
    };
    let stdio = if terminal {
        ChildStdio::Terminal
    } else {
        ChildStdio::Inherit
    };
    let made = super::create(paths, &mut p, stdio).and_then(|created| {
        if let (Some(master), Some(socket)) = (&created.pty_master, &req.console_socket) {
            send_console(socket, master, console_size)?;
        }
        let pid = created.child.pid.as_raw();
        p.state.status = Status::Created;
        p.state.monitor = None;
        state::save(paths, &p.state)?;
        if let Some(file) = &req.pid_file {
            write_pid_file(file, pid)?;
        }
        Ok(())
    });
    made.map_err(|e| e.with_cleanup(destroy(paths, &p.state)))
}

/// Every capability set empty (oci-spec's default would be three capabilities).
fn no_capabilities() -> LinuxCapabilities {
    let none = Capabilities::new;
    LinuxCapabilitiesBuilder::default()
        .bounding(none())
        .effective(none())
        .inheritable(none())
        .permitted(none())
        .ambient(none())
        .build()
        .expect("empty capability sets")
}

/// `root.path`, relative to the bundle when it is not absolute.
fn root_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, ContainerError> {
    let path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| ContainerError::Refused("config.json has no root".into()))?;
    let path = if path.is_absolute() {
        path
    } else {
        bundle.join(path)
    };
    let root = std::fs::canonicalize(&path).map_err(io("open the root", &path))?;
    if !root.is_dir() {
        return Err(ContainerError::Refused(format!(
            "root.path {} is not a directory",
            root.display()
        )));
    }
    Ok(root)
}

/// What poc cannot do is refused, never ignored.
fn check_supported(spec: &Spec) -> Result<(), ContainerError> {
    let refuse = |what: &str| {
        Err(ContainerError::Refused(format!(
            "{what} is not supported by poc"
        )))
    };
    let Some(linux) = spec.linux() else {
        return refuse("a config.json without a linux section");
    };
    let has = |v: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        v.as_ref().is_some_and(|m| !m.is_empty())
    };
    if has(linux.uid_mappings()) || has(linux.gid_mappings()) {
        return refuse("a user namespace (linux.uidMappings, gidMappings)");
    }
    for ns in linux.namespaces().iter().flatten() {
        match (ns.typ(), ns.path()) {
            (LinuxNamespaceType::User, _) => return refuse("a user namespace"),
            (LinuxNamespaceType::Time, _) => return refuse("a time namespace"),
            _ => {}
        }
    }
    let mount_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Mount);
    if !mount_ns {
        // The root is built and pivoted into inside the init's mount namespace: without a new one
        // that would be the caller's (the host's) namespace.
        return refuse("a container without a mount namespace of its own");
    }
    check_sysctls(linux)?;
    if linux.intel_rdt().is_some() {
        return refuse("linux.intelRdt");
    }
    if let Some(p) = spec.process() {
        if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()) {
            return refuse("process.apparmorProfile (AppArmor)");
        }
        if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) {
            return refuse("process.selinuxLabel (SELinux)");
        }
    }
    if linux.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
        return refuse("linux.mountLabel (SELinux)");
    }
    Ok(())
}

/// `linux.sysctl` keys as runc allows them: dotted names, each in a namespace the container has
/// of its own (IPC keys with an IPC namespace, net.* with a network namespace, the host and domain
/// names with a UTS namespace). Anything else (kernel.core_pattern, vm.*, net.* in the host's
/// network) would be written to the host's kernel.
fn check_sysctls(linux: &oci_spec::runtime::Linux) -> Result<(), ContainerError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let own = |typ: LinuxNamespaceType, kind: &str| -> Result<bool, ContainerError> {
        let Some(ns) = namespaces.iter().find(|n| n.typ() == typ) else {
            return Ok(false);
        };
        let Some(path) = ns.path() else {
            return Ok(true);
        };
        // Joined by path: the container's own unless it is poc's (the host's) namespace.
        let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
        let theirs = id(path).map_err(io("open the namespace", path))?;
        Ok(id(Path::new(&format!("/proc/self/ns/{kind}"))).ok() != Some(theirs))
    };
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        let valid = key
            .split('.')
            .all(|part| !part.is_empty() && part != ".." && !part.contains('/'));
        if !valid {
            return Err(ContainerError::Refused(format!(
                "invalid sysctl key {key:?}: a dotted name such as net.ipv4.ip_forward"
            )));
        }
        let allowed = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            own(LinuxNamespaceType::Ipc, "ipc")?
        } else if key.starts_with("net.") {
            own(LinuxNamespaceType::Network, "net")?
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            own(LinuxNamespaceType::Uts, "uts")?
        } else {
            false
        };
        if !allowed {
            return Err(ContainerError::Refused(format!(
                "sysctl {key:?} is not in a namespace of the container's own: it would change the host"
            )));
        }
    }
    Ok(())
}

/// runc makes the standard /dev nodes and allows them in the device cgroup whatever the Spec
/// lists (podman lists none): the same here, after the Spec's own rules.
fn add_default_devices(spec: &mut Spec) -> Result<(), ContainerError> {
    let Some(linux) = spec.linux_mut() else {
        return Ok(());
    };
    let mut devices = linux.devices().clone().unwrap_or_default();
    for d in crate::spec::default_devices()? {
        if !devices.iter().any(|e| e.path() == d.path()) {
            devices.push(d);
        }
    }
    linux.set_devices(Some(devices));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let rules = match resources.devices() {
        Some(rules) => {
            let mut rules = rules.clone();
            rules.extend(crate::cgroups::devices::default_rules().into_iter().skip(1));
            rules
        }
        None => crate::cgroups::devices::default_rules(),
    };
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    Ok(())
}

/// `linux.cgroupsPath`: absolute as given; relative under poc's cgroup parent; systemd's
/// "slice:prefix:name" (with --systemd-cgroup) as the path systemd would give it; none: the
/// parent and the id.
fn cgroup_path(spec: &Spec, paths: &Paths, id: &str, systemd: bool) -> String {
    let parent = paths.cgroup_parent.trim_end_matches('/');
    let given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty());
    match given {
        None => format!("{parent}/{id}"),
        Some(p) if systemd && p.split(':').count() == 3 => {
            let parts: Vec<&str> = p.split(':').collect();
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            format!("/{slice}/{}-{}.scope", parts[1], parts[2])
        }
        Some(p) if p.starts_with('/') => p,
        Some(p) => format!("{parent}/{p}"),
    }
}

fn has_new_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ && n.path().is_none()))
}

/// The init's network plan: loopback up in a new namespace; nothing in a joined or the host's.
pub fn network_plan(spec: &Spec) -> NamespacePlan {
    if has_new_namespace(spec, LinuxNamespaceType::Network) {
        NamespacePlan::Loopback
    } else {
        NamespacePlan::Host
    }
}

/// Namespaces the Spec gives by path, opened here: the pid namespace for poc to clone the init
/// into (it applies to children cloned afterwards), the others for the init to join.
type Joined = (Vec<(OwnedFd, CloneFlags)>, Option<OwnedFd>);

fn open_joined_namespaces(spec: &Spec) -> Result<Joined, ContainerError> {
    let mut join = Vec::new();
    let mut pid = None;
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        let Some(path) = ns.path() else { continue };
        let flag = match ns.typ() {
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            _ => continue,
        };
        let fd: OwnedFd = std::fs::File::open(path)
            .map_err(io("open the namespace", path))?
            .into();
        if flag == CloneFlags::CLONE_NEWNS && same_namespace(&fd, "mnt") {
            // The root is pivoted inside the mount namespace: never poc's (the host's) own.
            return Err(ContainerError::Refused(format!(
                "the mount namespace {} is poc's own: a container needs one of its own",
                path.display()
            )));
        }
        if flag == CloneFlags::CLONE_NEWPID {
            pid = Some(fd);
        } else {
            join.push((fd, flag));
        }
    }
    Ok((join, pid))
}

/// Whether the namespace `fd` is the one of `kind` poc itself runs in.
fn same_namespace(fd: &OwnedFd, kind: &str) -> bool {
    let theirs = nix::sys::stat::fstat(fd);
    let ours = nix::sys::stat::stat(format!("/proc/self/ns/{kind}").as_str());
    matches!((theirs, ours), (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

/// The start gate of an OCI container: a FIFO in its state directory (root's alone), opened here
/// read-write so that the open never blocks; the init reads a byte from it, `start` writes one.
pub fn open_start_fifo(paths: &Paths, id: &str) -> Result<OwnedFd, ContainerError> {
    let path = paths.container_state_dir(id).join(START_FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| io("create", &path)(e.into()))?;
    Ok(nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io("open", &path)(e.into()))?)
}

/// Hands the pty master to the caller's console socket (SCM_RIGHTS), sized as the Spec asks.
fn send_console(
    socket: &Path,
    master: &OwnedFd,
    size: Option<(u64, u64)>,
) -> Result<(), ContainerError> {
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows as u16,
            ws_col: cols as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on a pty master we hold, with a valid winsize.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(io("connect to the console socket", socket))?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(b"/dev/ptmx")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| io("send the terminal to", socket)(e.into()))?;
    Ok(())
}

/// The pid as bare digits (containerd's shim parses it with Atoi), written whole and renamed in.
fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.poc-tmp"));
    std::fs::write(&tmp, pid.to_string()).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("write", path)(e).into()
    })
}

/// `start`: opens the gate of a created container, which then runs its command; poststart hooks.
pub fn start(paths: &Paths, id: &str) -> Result<(), ContainerError> {
    let (_lock, mut st) = load_locked(paths, id)?;
    match st.observed() {
        Observed::Created => {}
        Observed::Running | Observed::Paused => {
            return Err(ContainerError::Refused(format!(
                "container {id} is already running"
            )))
        }
        _ => {
            return Err(ContainerError::Refused(format!(
                "cannot start container {id}: it is not in the created state"
            )))
        }
    }
    let fifo = paths.container_state_dir(id).join(START_FIFO);
    // Non-blocking: with its init gone nobody reads the FIFO, and the open fails (ENXIO).
    let gate = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| match e {
        nix::Error::ENXIO => {
            ContainerError::Refused(format!("cannot start container {id}: its init is gone"))
        }
        e => io("open", &fifo)(e.into()).into(),
    })?;
    nix::unistd::write(&gate, b"S").map_err(|e| io("write", &fifo)(e.into()))?;
    wait_until_unread(&gate).map_err(|e| io("wait on", &fifo)(e.into()))?;
    drop(gate);
    let _ = std::fs::remove_file(&fifo);
    st.status = Status::Running;
    st.started = Some(now_secs());
    state::save(paths, &st)?;
    let pid = st.init.map_or(0, |i| i.pid);
    events::record(paths, &st, "start", &[("pid", pid.to_string())]);
    if let Some(hooks) = load_config(paths, id)?
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
    {
        // The container runs: a failed poststart hook is reported, not fatal (runtime spec).
        if let Err(e) = process::hooks::run_all("poststart", &hooks, &state_bytes(&st)) {
            eprintln!("poc: warning: {e}");
        }
    }
    Ok(())
}

/// Returns once nobody holds the start FIFO open for reading: the init holds it (close-on-exec)
/// through its startContainer hooks until it executes the command (or dies). poststart hooks run
/// after the command is executed (runtime spec), and `start` returns only then, as runc's does.
fn wait_until_unread(gate: &OwnedFd) -> nix::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    // On a FIFO's write end, poll reports POLLERR once it has no reader, whatever was asked.
    let mut fds = [PollFd::new(gate.as_fd(), PollFlags::empty())];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) if fds[0].revents().is_some_and(|r| !r.is_empty()) => return Ok(()),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The OCI state of a container (runc's fields: rootfs, created and owner besides the spec's).
pub fn state_of(st: &State) -> serde_json::Value {
    let observed = st.observed();
    let status = match observed {
        Observed::Creating => "creating",
        Observed::Created => "created",
        Observed::Running if st.cgroup.is_frozen() => "paused",
        Observed::Running => "running",
        Observed::Paused => "paused",
        Observed::Exited(_) | Observed::Dead => "stopped",
    };
    let pid = match observed {
        Observed::Exited(_) | Observed::Dead => 0,
        _ => st.init.map_or(0, |i| i.pid),
    };
    serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": st.id,
        "pid": pid,
        "status": status,
        "bundle": st.bundle,
        "rootfs": st.bundle.as_ref().map(|_| st.container_dir.parent().map(|d| d.join("rootfs"))),
        "created": super::logs::rfc3339(st.created * 1_000_000_000),
        "owner": "",
        "annotations": st.annotations,
    })
}

/// The state as hooks read it on their stdin.
pub fn state_bytes(st: &State) -> Vec<u8> {
    serde_json::to_vec(&state_of(st)).unwrap_or_default()
}

/// `state ID`.
pub fn state(paths: &Paths, id: &str) -> Result<serde_json::Value, ContainerError> {
    let mut value = state_of(&load(paths, id)?);
    // The root the container was made from, not poc's own directory.
    if let Ok(spec) = load_config(paths, id) {
        if let Some(root) = spec.root() {
            value["rootfs"] = serde_json::json!(root.path());
        }
    }
    Ok(value)
}

/// `kill [--all] ID SIGNAL`: the init, or every process of the container.
pub fn kill(paths: &Paths, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
    let st = load(paths, id)?;
    let init = match (st.observed(), st.init) {
        (Observed::Created | Observed::Running | Observed::Paused, Some(init)) => init,
        _ => {
            return Err(ContainerError::Refused(format!(
                "container {id} is not running"
            )))
        }
    };
    let pids = if all {
        st.cgroup.pids()
    } else {
        vec![init.pid]
    };
    for pid in pids {
        match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => {
                return Err(ContainerError::Refused(format!(
                    "signalling container {id}: {e}"
                )))
            }
        }
    }
    events::record(paths, &st, "kill", &[("signal", signal.as_str().into())]);
    Ok(())
}

/// `delete [--force] ID`: a created or stopped container (a running one with `force`, killed
/// first); poststop hooks after. An unknown id with `force` is not an error.
pub fn delete(paths: &Paths, id: &str, force: bool) -> Result<(), ContainerError> {
    let (_lock, st) = match load_locked(paths, id) {
        Ok(found) => found,
        Err(_) if force && check_id(id).is_ok() && !state::exists(paths, id) => return Ok(()),
        Err(e) => return Err(e),
    };
    let observed = st.observed();
    if matches!(observed, Observed::Running | Observed::Paused) && !force {
        return Err(ContainerError::Refused(format!(
            "cannot delete container {id} that is not stopped: {}",
            super::observed_name(observed)
        )));
    }
    let spec = load_config(paths, id).ok();
    let mut stopped = st.clone();
    stopped.status = Status::Exited;
    destroy(paths, &st)?;
    if let Some(hooks) = spec
        .as_ref()
        .and_then(|s| s.hooks().clone())
        .and_then(|h| h.poststop().clone())
    {
        if let Err(e) = process::hooks::run_all("poststop", &hooks, &state_bytes(&stopped)) {
            eprintln!("poc: warning: {e}");
        }
    }
    Ok(())
}

/// `pause ID`: every process of the container frozen.
pub fn pause(paths: &Paths, id: &str) -> Result<(), ContainerError> {
    let (_lock, mut st) = load_locked(paths, id)?;
    if st.observed() != Observed::Running {
        return Err(ContainerError::Refused(format!(
            "container {id} is not running"
        )));
    }
    st.cgroup.freeze(true)?;
    st.status = Status::Paused;
    state::save(paths, &st)?;
    events::record(paths, &st, "pause", &[]);
    Ok(())
}

/// `resume ID`: thawed again.
pub fn resume(paths: &Paths, id: &str) -> Result<(), ContainerError> {
    let (_lock, mut st) = load_locked(paths, id)?;
    if st.observed() != Observed::Paused {
        return Err(ContainerError::Refused(format!(
            "container {id} is not paused"
        )));
    }
    st.cgroup.freeze(false)?;
    st.status = Status::Running;
    state::save(paths, &st)?;
    events::record(paths, &st, "unpause", &[]);
    Ok(())
}

/// `ps ID`: the host pids of the container's processes.
pub fn pids(paths: &Paths, id: &str) -> Result<Vec<i32>, ContainerError> {
    let st = load(paths, id)?;
    Ok(st.cgroup.pids())
}

/// `update --resources FILE ID`: runc's LinuxResources JSON. Zeros and empty strings mean
/// "unchanged" (docker sends every field, most of them 0).
pub fn update(paths: &Paths, id: &str, json: &[u8]) -> Result<(), ContainerError> {
    let st = load(paths, id)?;
    if !matches!(
        st.observed(),
        Observed::Created | Observed::Running | Observed::Paused
    ) {
        return Err(ContainerError::Refused(format!(
            "container {id} is not running"
        )));
    }
    let resources = parse_resources(json)?;
    st.cgroup.update(&resources)?;
    events::record(paths, &st, "update", &[]);
    Ok(())
}

/// LinuxResources from JSON, with runc's reading of zeros and empty strings as "not set".
fn parse_resources(json: &[u8]) -> Result<LinuxResources, ContainerError> {
    let mut value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| ContainerError::Refused(format!("--resources: {e}")))?;
    for (section, keys) in [
        (
            "memory",
            &["limit", "reservation", "swap", "kernel", "kernelTCP"][..],
        ),
        (
            "cpu",
            &[
                "shares",
                "quota",
                "period",
                "realtimeRuntime",
                "realtimePeriod",
                "cpus",
                "mems",
            ][..],
        ),
        ("pids", &["limit"][..]),
        ("blockIO", &["weight", "leafWeight"][..]),
    ] {
        if let Some(obj) = value.get_mut(section).and_then(|s| s.as_object_mut()) {
            for key in keys {
                let unset = match obj.get(*key) {
                    Some(serde_json::Value::Number(n)) => n.as_f64() == Some(0.0),
                    Some(serde_json::Value::String(s)) => s.is_empty(),
                    Some(serde_json::Value::Null) => true,
                    _ => false,
                };
                if unset {
                    obj.remove(*key);
                }
            }
        }
    }
    serde_json::from_value(value).map_err(|e| ContainerError::Refused(format!("--resources: {e}")))
}

/// What `exec --process FILE` was asked for.
pub struct ExecRequest {
    pub id: String,
    pub process: PathBuf,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--tty` on the command line (the process file's `terminal` counts too).
    pub tty: bool,
    pub preserve_fds: u32,
}

/// `exec --process FILE ID`: a process of the file's description joins the container. It is the
/// caller's child; with `--detach` poc returns once it runs, otherwise waits and returns its code.
pub fn exec(paths: &Paths, req: ExecRequest) -> Result<i32, ContainerError> {
    let st = load(paths, &req.id)?;
    if !matches!(st.observed(), Observed::Running | Observed::Created) {
        return Err(ContainerError::Refused(format!(
            "cannot exec in container {}: it is not running",
            req.id
        )));
    }
    // Read at once: the caller deletes the file right after the call.
    let text = std::fs::read(&req.process).map_err(io("read", &req.process))?;
    let mut process: Process = serde_json::from_slice(&text)
        .map_err(|e| ContainerError::Refused(format!("{}: {e}", req.process.display())))?;
    if req.tty {
        process.set_terminal(Some(true));
    }
    let terminal = process.terminal().unwrap_or(false);
    if terminal && req.console_socket.is_none() {
        return Err(ContainerError::Refused(
            "a terminal needs --console-socket: the pty master is sent there".into(),
        ));
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ContainerError::Refused(
            "process.apparmorProfile (AppArmor) is not supported by poc".into(),
        ));
    }
    let mut spec = load_config(paths, &st.id)?;
    // A process.json without capabilities gets the container's (runc's reading), never root's all.
    if process.capabilities().is_none() {
        let container = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone());
        process.set_capabilities(Some(container.unwrap_or_else(no_capabilities)));
    }
    crate::security::check_grantable(&process)
        .map_err(|e| ContainerError::Refused(e.to_string()))?;
    spec.set_process(Some(process));
    let stdio = if terminal {
        ChildStdio::Terminal
    } else {
        ChildStdio::Inherit
    };
    let child = super::exec::spawn_in(paths, &st, &spec, stdio, req.preserve_fds)?;
    let pid = child.pid;
    let running = child.release()?;
    if let (Some(master), Some(socket)) = (&running.pty_master, &req.console_socket) {
        let size = spec
            .process()
            .as_ref()
            .and_then(|p| p.console_size())
            .map(|s| (s.height(), s.width()));
        send_console(socket, master, size)?;
    }
    if let Some(file) = &req.pid_file {
        write_pid_file(file, pid.as_raw())?;
    }
    if req.detach {
        return Ok(0);
    }
    drop(running);
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => {
                return Ok(128 + signal as i32)
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(io("wait for", Path::new("the exec'd process"))(e.into()).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_in_docker_resources_mean_unchanged() {
        let r = parse_resources(
            br#"{"memory":{"limit":67108864,"swap":0},"cpu":{"shares":0,"quota":0,"period":0,"cpus":"","mems":""},"pids":{"limit":50},"blockIO":{"weight":0}}"#,
        )
        .unwrap();
        let memory = r.memory().as_ref().unwrap();
        assert_eq!(memory.limit(), Some(64 << 20));
        assert_eq!(memory.swap(), None);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (None, None, None)
        );
        assert_eq!(cpu.cpus(), &None);
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(50));
        assert_eq!(r.block_io().as_ref().and_then(|b| b.weight()), None);
    }

    #[test]
    fn cgroup_paths_follow_runc() {
        let paths = Paths {
            state_root: "/run/x".into(),
            store_root: "/var/x".into(),
            cgroup_parent: "/poc".into(),
            bridge: "poc0".into(),
            subnet: "10.77.0.0/16".parse().unwrap(),
            subnet6: None,
        };
        let spec_with = |p: Option<&str>| {
            let mut spec = Spec::default();
            let mut linux = spec.linux().clone().unwrap_or_default();
            linux.set_cgroups_path(p.map(PathBuf::from));
            spec.set_linux(Some(linux));
            spec
        };
        assert_eq!(
            cgroup_path(&spec_with(None), &paths, "c1", false),
            "/poc/c1"
        );
        assert_eq!(
            cgroup_path(&spec_with(Some("/default/c1")), &paths, "c1", false),
            "/default/c1"
        );
        assert_eq!(
            cgroup_path(&spec_with(Some("x/c1")), &paths, "c1", false),
            "/poc/x/c1"
        );
        assert_eq!(
            cgroup_path(
                &spec_with(Some("system.slice:docker:c1")),
                &paths,
                "c1",
                true
            ),
            "/system.slice/docker-c1.scope"
        );
    }
}
