//! The command line: clap definitions and dispatch. Errors become one line on stderr and Docker's
//! exit codes (125 for poc's own errors); anyhow lives only here.

mod bench;
mod events;
mod exec;
mod images;
mod init;
mod logs;
mod manage;
mod network;
mod oci;
mod port;
mod ps;
mod rmi;
mod run;
mod stats;
mod table;
mod top;
#[cfg_attr(not(feature = "trace"), path = "trace_off.rs")]
mod trace;
mod update;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{
    Paths, DEFAULT_BRIDGE, DEFAULT_CGROUP_PARENT, DEFAULT_STATE_ROOT, DEFAULT_STORE_ROOT,
    DEFAULT_SUBNET,
};

#[derive(Parser)]
#[command(
    name = "poc",
    about = "A container runtime that tells you what containers cost",
    arg_required_else_help = true
)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    /// Print the version (runc's three lines).
    // Also after global flags: containerd's go-runc asks `--root R --log L --log-format json --version`.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where poc keeps things; every command takes these, also from the environment.
#[derive(clap::Args)]
struct Globals {
    /// Where container state lives (`--root`, as runc names it).
    #[arg(long, visible_alias = "root", global = true, env = "POC_STATE_ROOT", default_value = DEFAULT_STATE_ROOT)]
    state_root: PathBuf,
    /// Where images and containers' writable layers live.
    #[arg(long, global = true, env = "POC_STORE", default_value = DEFAULT_STORE_ROOT)]
    store: PathBuf,
    /// Absolute cgroup path under which each container gets its own leaf.
    #[arg(long, global = true, env = "POC_CGROUP_PARENT", default_value = DEFAULT_CGROUP_PARENT)]
    cgroup_parent: String,
    /// The bridge containers join (created on first use).
    #[arg(long, global = true, env = "POC_BRIDGE", default_value = DEFAULT_BRIDGE, value_parser = crate::network::parse_bridge_name)]
    bridge: String,
    /// The default bridge's IPv4 subnet; the gateway is its first address. Before the command
    /// (or `poc run --subnet`): `poc network create` has a --subnet of its own.
    #[arg(long, env = "POC_SUBNET", default_value = DEFAULT_SUBNET, value_parser = crate::network::parse_subnet)]
    subnet: ipnetwork::Ipv4Network,
    /// The bridge's IPv6 subnet (IPv6 and NAT66 on the bridge); hidden until `network create --ipv6`.
    #[arg(long, global = true, hide = true, env = "POC_SUBNET6", value_parser = crate::network::parse_subnet6)]
    subnet6: Option<ipnetwork::Ipv6Network>,
    /// Also append errors to this file (runc's --log; containerd reads it when a call fails).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The --log file's format: text or json (one {"level","msg","time"} object per line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// OCI cgroupsPath is systemd's "slice:prefix:name" (poc then writes the cgroup files itself).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where errors also go besides stderr (`--log`), set once the command line is parsed.
static LOG: std::sync::OnceLock<(PathBuf, LogFormat)> = std::sync::OnceLock::new();

/// Appends an error line to the `--log` file, if one was given.
fn log_error(message: &str) {
    let Some((path, format)) = LOG.get() else {
        return;
    };
    let time = crate::units::rfc3339(crate::units::now_ns());
    let line = match format {
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({"level": "error", "msg": message, "time": time})
        ),
        LogFormat::Text => format!("time={time:?} level=error msg={message:?}\n"),
    };
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

impl Globals {
    /// The paths every command works under; also takes note of `--log`.
    fn paths(&self) -> Paths {
        if let Some(path) = &self.log {
            let _ = LOG.set((path.clone(), self.log_format));
        }
        Paths {
            state_root: self.state_root.clone(),
            store_root: self.store.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            bridge: self.bridge.clone(),
            subnet: self.subnet,
            subnet6: self.subnet6,
        }
    }
}

/// `poc update` alone: building (and dropping) every subcommand's parser is most of what a
/// sub-millisecond update would spend in poc itself (measured: clap was 70% of its instructions).
#[derive(Parser)]
#[command(
    name = "poc-update",
    bin_name = "poc update",
    about = "Change running containers' limits (direct cgroup writes)"
)]
struct UpdateCli {
    #[command(flatten)]
    globals: Globals,
    #[command(flatten)]
    args: update::Args,
}

/// `poc run` alone, for the same reason: the container's start time includes poc's own parse
/// (measured: the full command tree costs `run` about 0.3 ms more than its own arguments).
#[derive(Parser)]
#[command(
    name = "poc-run",
    bin_name = "poc run",
    about = "Run a command in a new container",
    trailing_var_arg = true
)]
struct RunCli {
    #[command(flatten)]
    globals: Globals,
    #[command(flatten)]
    args: run::Args,
}

/// The arguments without the subcommand's name at position 1.
fn args_without_subcommand() -> impl Iterator<Item = std::ffi::OsString> {
    std::env::args_os()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, a)| a)
}

#[derive(Subcommand)]
enum Command {
    /// Build an image: alpine (default, downloaded and verified), busybox, debian, or --from a tarball.
    Init(init::Args),
    /// List images.
    Images(images::Args),
    /// Remove an image.
    Rmi(rmi::Args),
    /// Run a command in a new container.
    Run(Box<run::Args>),
    /// List containers.
    Ps(ps::Args),
    /// Print a container's output.
    Logs(logs::Args),
    /// Run a command in a running container.
    Exec(exec::Args),
    /// Stop containers: SIGTERM, then SIGKILL after a grace period.
    Stop(manage::StopArgs),
    /// Send a signal to containers.
    Kill(manage::KillArgs),
    /// Remove containers.
    Rm(manage::RmArgs),
    /// Show everything about containers, as JSON.
    Inspect(manage::InspectArgs),
    /// List a container's published ports (or the host side of one).
    Port(port::Args),
    /// Change running containers' limits (direct cgroup writes).
    Update(update::Args),
    /// Live resource use of running containers: CPU, memory, network, block I/O, pids, throttling.
    Stats(stats::Args),
    /// Full-screen live view: stats table and sparkline histories (CPU, memory, page faults, throttling, PSI).
    Top(top::Args),
    /// eBPF: the kernel's time to enforce limit changes, live memory and scheduling metrics.
    Trace(Box<trace::Args>),
    /// What happens to containers, live: start, exit, kill, stop, update, OOM kills, memory limit breaches, removal.
    Events(events::Args),
    /// Networks: create named ones, list, inspect, remove.
    #[command(subcommand)]
    Network(network::Command),
    /// Benchmarks: containers against the host and other runtimes (sysbench-suite, start, update, net, all).
    Bench(bench::Args),
    /// OCI: create a container from a bundle; its process waits for `start`.
    Create(oci::CreateArgs),
    /// OCI: run the process of a created container.
    Start(oci::IdArg),
    /// OCI: a container's state as JSON.
    State(oci::IdArg),
    /// OCI: remove a stopped (or, with --force, any) container.
    Delete(oci::DeleteArgs),
    /// Freeze every process of containers.
    Pause(oci::PauseArgs),
    /// Thaw paused containers.
    #[command(visible_alias = "unpause")]
    Resume(oci::PauseArgs),
}

/// Failures a command wants reported with a specific exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Self {
        Exit {
            code: 125,
            error: e.into(),
        }
    }
}

/// runc's three lines: callers (podman, containerd) read the first.
fn print_version() {
    println!("poc version {}", env!("CARGO_PKG_VERSION"));
    println!("commit: {}", option_env!("POC_COMMIT").unwrap_or("unknown"));
    println!("spec: {}", crate::container::oci::OCI_VERSION);
}

pub fn main() -> i32 {
    crate::process::default_sigchld();
    let first = std::env::args_os().nth(1);
    match first.as_ref().and_then(|a| a.to_str()) {
        Some("--version" | "-v") => {
            print_version();
            0
        }
        Some("update") => match UpdateCli::try_parse_from(args_without_subcommand()) {
            Ok(cli) => {
                let paths = cli.globals.paths();
                report(require_root().and_then(|()| update::run(&paths, cli.args)))
            }
            Err(e) => usage_error(e),
        },
        Some("run") => match RunCli::try_parse_from(args_without_subcommand()) {
            Ok(cli) => {
                // As in `prepare_stdio` for run: its container sets its stdio up on fds 0-2.
                crate::process::ensure_standard_descriptors();
                let paths = cli.globals.paths();
                report(require_root().and_then(|()| run::run(&paths, cli.args)))
            }
            Err(e) => usage_error(e),
        },
        _ => match parse() {
            Ok((globals, command)) => {
                prepare_stdio(&command);
                let paths = globals.paths();
                report(require_root().and_then(|()| dispatch(&paths, &globals, command)))
            }
            Err(code) => code,
        },
    }
}

/// The whole command line: the command to run, or the exit code of `--version`, help or a usage
/// error, already printed.
fn parse() -> Result<(Globals, Command), i32> {
    let cli = Cli::try_parse().map_err(usage_error)?;
    match cli.command {
        _ if cli.version => {
            print_version();
            Err(0)
        }
        Some(command) => Ok((cli.globals, command)),
        None => {
            use clap::CommandFactory;
            let missing = Cli::command().error(
                clap::error::ErrorKind::MissingSubcommand,
                "a command is required",
            );
            Err(usage_error(missing))
        }
    }
}

/// Every command works with namespaces, cgroups, mounts or root's own directories: as another
/// user it would fail half-way with a raw permission error, so it is refused in one line first.
/// (Help, `--version` and usage errors never get here.)
fn require_root() -> Result<(), Exit> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(anyhow::anyhow!("poc needs root: run it as root (or with sudo)").into())
}

/// Printing commands end quietly when their reader goes away (`poc ps | head -1`), as Unix tools
/// do. `run` and `exec` relay a container's output and must outlive a closed reader: for them a
/// write error loses that output, never the process that reaps and records the container.
fn prepare_stdio(command: &Command) {
    if matches!(
        command,
        Command::Run(_) | Command::Exec(_) | Command::Create(_)
    ) {
        // They start container processes, which set their stdio up on fds 0-2.
        crate::process::ensure_standard_descriptors();
    } else {
        // SAFETY: restoring a default disposition before anything else runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}

fn dispatch(paths: &Paths, globals: &Globals, command: Command) -> Result<i32, Exit> {
    match command {
        Command::Init(args) => init::run(paths, args),
        Command::Images(args) => images::run(paths, args),
        Command::Rmi(args) => rmi::run(paths, args),
        Command::Run(args) => run::run(paths, *args),
        Command::Ps(args) => ps::run(paths, args),
        Command::Logs(args) => logs::run(paths, args),
        Command::Exec(args) => exec::run(paths, args),
        Command::Stop(args) => manage::stop(paths, args),
        Command::Kill(args) => manage::kill(paths, args),
        Command::Create(args) => oci::create(paths, args, globals.systemd_cgroup),
        Command::Start(args) => oci::start(paths, args),
        Command::State(args) => oci::state(paths, args),
        Command::Delete(args) => oci::delete(paths, args),
        Command::Pause(args) => oci::pause(paths, args, true),
        Command::Resume(args) => oci::pause(paths, args, false),
        Command::Rm(args) => manage::rm(paths, args),
        Command::Inspect(args) => manage::inspect(paths, args),
        Command::Port(args) => port::run(paths, args),
        Command::Update(args) => update::run(paths, args),
        Command::Stats(args) => stats::run(paths, args),
        Command::Events(args) => events::run(paths, args),
        Command::Bench(args) => bench::run(paths, args),
        Command::Top(args) => top::run(paths, args),
        Command::Trace(args) => trace::run(paths, *args),
        Command::Network(command) => network::run(paths, command),
    }
}

fn report(result: Result<i32, Exit>) -> i32 {
    match result {
        Ok(code) => code,
        Err(exit) => {
            let message = one_line(&exit.error);
            eprintln!("poc: {message}");
            log_error(&message);
            exit.code
        }
    }
}

/// The whole chain of causes on one line, without repeating a cause already in its parent's message.
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text.replace('\n', " ")
}

/// clap's errors, reduced to their first line (help and version print as usual).
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                125
            } else {
                0
            }
        }
        _ => {
            // Everything clap says before its usage block, on one line.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("tip:")
                        && !l.starts_with("For more information")
                })
                .collect();
            eprintln!(
                "poc: {} (see poc --help)",
                message.join(" ").trim_start_matches("error: ")
            );
            125
        }
    }
}
