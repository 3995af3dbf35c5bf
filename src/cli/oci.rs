//! runc's command line, for podman (conmon), containerd's shim and dockerd: `create`, `start`,
//! `state`, `delete`, `pause`, `resume`, and the OCI forms of `kill`, `exec`, `update` and `ps`
//! (their Docker-style forms live beside them). Ids are exact: a runtime's caller names what it made.

use std::io::Read;
use std::path::PathBuf;

use crate::config::Paths;
use crate::container::oci;
use crate::container::state;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The bundle: a directory with config.json (and usually the root filesystem).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid (as seen from the host) to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (when process.terminal is true).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Not supported: poc always uses pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass descriptors 3 .. 3+N on to the container's process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(clap::Args)]
pub struct IdArg {
    id: String,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Kill a running container first; an unknown id is not an error.
    #[arg(short, long)]
    force: bool,
    id: String,
}

#[derive(clap::Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn create(paths: &Paths, args: CreateArgs, systemd_cgroup: bool) -> Result<i32, super::Exit> {
    // First: nothing of poc's may be open yet where the caller's descriptors should be.
    crate::process::check_preserved_fds(args.preserve_fds).map_err(|e| exit(e.into()))?;
    if args.no_pivot {
        return Err(anyhow::anyhow!(
            "--no-pivot is not supported: poc always pivots into the container's root"
        )
        .into());
    }
    oci::create(
        paths,
        oci::CreateRequest {
            id: args.id,
            bundle: args.bundle,
            pid_file: args.pid_file,
            console_socket: args.console_socket,
            preserve_fds: args.preserve_fds,
            new_keyring: !args.no_new_keyring,
            systemd_cgroup,
        },
    )
    .map_err(exit)?;
    Ok(0)
}

pub fn start(paths: &Paths, args: IdArg) -> Result<i32, super::Exit> {
    oci::start(paths, &args.id).map_err(exit)?;
    Ok(0)
}

pub fn state(paths: &Paths, args: IdArg) -> Result<i32, super::Exit> {
    let value = oci::state(paths, &args.id).map_err(exit)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(0)
}

pub fn delete(paths: &Paths, args: DeleteArgs) -> Result<i32, super::Exit> {
    oci::delete(paths, &args.id, args.force).map_err(exit)?;
    Ok(0)
}

/// `pause`/`resume` take exact ids (runc) or, like Docker's, names and id prefixes.
pub fn pause(paths: &Paths, args: PauseArgs, frozen: bool) -> Result<i32, super::Exit> {
    let mut code = 0;
    for c in &args.containers {
        let result = lookup(paths, c).and_then(|id| {
            if frozen {
                oci::pause(paths, &id)
            } else {
                oci::resume(paths, &id)
            }
        });
        if let Err(e) = result {
            eprintln!("poc: {e}");
            super::log_error(&e.to_string());
            code = 125;
        }
    }
    Ok(code)
}

/// An exact id first, then a name or a unique prefix.
fn lookup(paths: &Paths, query: &str) -> Result<String, crate::container::ContainerError> {
    if oci::check_id(query).is_ok() && state::exists(paths, query) {
        return Ok(query.to_string());
    }
    Ok(state::resolve(paths, query)?)
}

/// `kill [--all] ID SIGNAL`.
pub fn kill(
    paths: &Paths,
    id: &str,
    signal: nix::sys::signal::Signal,
    all: bool,
) -> Result<i32, super::Exit> {
    oci::kill(paths, id, signal, all).map_err(exit)?;
    Ok(0)
}

/// `exec --process FILE [--detach] [--pid-file F] [--console-socket S] [--tty] ID`.
pub fn exec(paths: &Paths, request: oci::ExecRequest) -> Result<i32, super::Exit> {
    // First: nothing of poc's may be open yet where the caller's descriptors should be.
    crate::process::check_preserved_fds(request.preserve_fds).map_err(|e| exit(e.into()))?;
    oci::exec(paths, request).map_err(exit)
}

/// `update --resources FILE|- ID`.
pub fn update(paths: &Paths, file: &std::path::Path, id: &str) -> Result<i32, super::Exit> {
    let mut json = Vec::new();
    if file == std::path::Path::new("-") {
        std::io::stdin().read_to_end(&mut json)?;
    } else {
        json = std::fs::read(file)
            .map_err(|e| anyhow::anyhow!("--resources {}: {e}", file.display()))?;
    }
    oci::update(paths, id, &json).map_err(exit)?;
    Ok(0)
}

/// `ps [--format json] ID`: the container's host pids, as a JSON array or one per line with the
/// command.
pub fn ps(paths: &Paths, id: &str, json: bool) -> Result<i32, super::Exit> {
    let pids = oci::pids(paths, id).map_err(exit)?;
    if json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    println!("{:>8}  CMD", "PID");
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // The container wrote these: no escape sequence of its reaches the operator's terminal.
        let line: String = text
            .join(" ")
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        println!("{pid:>8}  {line}");
    }
    Ok(0)
}

fn exit(e: crate::container::ContainerError) -> super::Exit {
    super::Exit {
        code: e.exit_code(),
        error: e.into(),
    }
}
