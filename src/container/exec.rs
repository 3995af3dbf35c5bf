//! `poc exec`: a new process in a running container: its namespaces, its cgroup, its capabilities,
//! environment and working directory, with the user's command.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;

use super::state::{self, Observed};
use super::{load_config, ContainerError};
use crate::config::Paths;
use crate::process::{self, Attach, ChildConfig, ChildStdio, ParentIo, Role, Stream, Supervisor};

pub struct ExecRequest {
    pub container: String,
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    pub command: Vec<String>,
}

pub fn exec(paths: &Paths, req: ExecRequest) -> Result<i32, ContainerError> {
    let id = state::resolve(paths, &req.container)?;
    let st = state::load(paths, &id)?;
    let init = match st.init {
        Some(init) if st.observed() == Observed::Running && init.is_alive() => init,
        _ => {
            return Err(ContainerError::Refused(format!(
                "container {} is not running",
                req.container
            )))
        }
    };
    let mut spec = load_config(paths, &id)?;
    let mut proc_ = spec.process().clone().unwrap_or_default();
    if let Some(user) = &req.user {
        crate::spec::set_process_user(&mut proc_, &resolve_user(init.pid, user)?);
    }
    let mut env = proc_.env().clone().unwrap_or_default();
    for var in &req.env {
        crate::spec::set_env(&mut env, var);
    }
    proc_.set_env(Some(env));
    proc_.set_args(Some(req.command.clone()));
    proc_.set_terminal(Some(req.tty));
    if let Some(dir) = &req.workdir {
        proc_.set_cwd(dir.clone());
    }
    spec.set_process(Some(proc_));

    let mut supervisor = Supervisor::new()?;
    // Pipes that poc relays, never poc's own descriptors: a process the command leaves behind must
    // not keep the caller's terminal (and read what they type next).
    let (stdio, parent_io) = if req.tty {
        (ChildStdio::Terminal, ParentIo::default())
    } else {
        process::pipes(req.interactive)?
    };
    let child = spawn_in(paths, &st, &spec, stdio, 0)?;
    let running = child.release()?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut to_terminal = |stream: Stream, data: &[u8]| match stream {
        Stream::Stdout => process::write_all(stdout.as_fd(), data),
        Stream::Stderr => process::write_all(stderr.as_fd(), data),
    };
    Ok(supervisor.wait(
        running,
        parent_io,
        Some(Attach {
            stdin: req.interactive,
        }),
        &mut to_terminal,
        None,
    )?)
}

/// Clones a process into the container `st` (its namespaces, joined from its init's; its cgroup;
/// its seccomp filter) that will run `spec`'s process; it waits for `release`.
pub fn spawn_in(
    paths: &Paths,
    st: &state::State,
    spec: &oci_spec::runtime::Spec,
    stdio: ChildStdio,
    preserve_fds: u32,
) -> Result<process::Child, ContainerError> {
    let init = st
        .init
        .ok_or_else(|| ContainerError::Refused(format!("container {} has no init", st.id)))?;
    let pid_ns = open_namespace(init.pid, "pid")?;
    let mut namespaces = Vec::new();
    // The mount namespace last: after it, paths are the container's.
    for (kind, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        if let Some(fd) = open_namespace(init.pid, kind)? {
            namespaces.push((fd, flag));
        }
    }
    // The container's own filter: an exec'd process is no less confined than its init.
    let seccomp = super::compile_seccomp(paths, spec)?;
    let cgroup_fd = st.cgroup.clone_into_fd();
    // Until its go, the process waits in poc's own v1 pids leaf (see pids_tasks_file).
    let pids_tasks = st.cgroup.pids_tasks_file();
    let pids_tasks_fd = match &pids_tasks {
        Some(file) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .map(OwnedFd::from)
                .map_err(crate::error::io("open", file))?,
        ),
        None => None,
    };
    let mut join_cgroups = st.cgroup.self_join_files();
    join_cgroups.retain(|file| Some(file) != pids_tasks.as_ref());
    let cfg = ChildConfig {
        join_cgroups,
        spec,
        role: Role::Exec {
            namespaces,
            pid: pid_ns,
            new_keyring: true,
            pids_tasks: pids_tasks_fd,
        },
        stdio,
        seccomp: seccomp.as_ref(),
        preserve_fds,
        gate: None,
        hooks: None,
    };
    let child = process::spawn(cfg, cgroup_fd.as_ref())?;
    if let Err(e) = st.cgroup.add_task(child.pid.as_raw(), child.born_in_cgroup) {
        let _ = nix::sys::signal::kill(child.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child.pid, None);
        return Err(e.into());
    }
    Ok(child)
}

/// `-u USER` looked up in the running container's own files, through its root as the init sees it.
fn resolve_user(init: i32, user: &str) -> Result<crate::security::user::UserIds, ContainerError> {
    let root_path = PathBuf::from(format!("/proc/{init}/root"));
    let root = crate::rootfs::open_dir(&root_path)
        .map_err(|e| ContainerError::Refused(format!("the container's root: {e}")))?;
    crate::security::user::resolve(root.as_fd(), Some(user))
        .map_err(|e| ContainerError::Refused(e.to_string()))
}

/// The init's namespace of `kind`, unless it is poc's own (e.g. `--network host`).
fn open_namespace(pid: i32, kind: &str) -> Result<Option<OwnedFd>, ContainerError> {
    let theirs = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
    let ours = PathBuf::from(format!("/proc/self/ns/{kind}"));
    let inode = |p: &PathBuf| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let their_inode = inode(&theirs).map_err(crate::error::io("open", &theirs))?;
    if inode(&ours).ok() == Some(their_inode) {
        return Ok(None);
    }
    let file = std::fs::File::open(&theirs).map_err(crate::error::io("open", &theirs))?;
    Ok(Some(file.into()))
}
