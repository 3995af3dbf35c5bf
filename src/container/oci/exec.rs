//! `exec --process FILE ID`: a process described by a runtime-spec process.json joins the
//! container, as the caller's child.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use super::bundle::no_capabilities;
use super::{load, send_console, write_pid_file, ContainerError};
use crate::config::Paths;
use crate::container::load_config;
use crate::container::state::Observed;
use crate::error::io;
use crate::process::ChildStdio;

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
    let child = crate::container::exec::spawn_in(paths, &st, &spec, stdio, req.preserve_fds)?;
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
