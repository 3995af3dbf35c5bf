//! `poc stop`, `poc kill`, `poc rm`, `poc inspect`: act on containers by name, id or id prefix.
//! Each container is handled on its own; failures are reported one line each.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::Paths;
use crate::container;

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kill [-s SIG] CONTAINER...` (Docker: SIGKILL by default) or runc's `kill [--all] ID [SIGNAL]`
/// (SIGTERM by default), told apart by a second argument that is a signal, or by --all.
#[derive(clap::Args)]
pub struct KillArgs {
    /// Signal to send: a name (HUP, SIGHUP) or a number.
    #[arg(short, long, value_parser = parse_signal)]
    signal: Option<Signal>,
    /// Signal every process of the container, not only its init (runc's form: one ID).
    #[arg(short, long)]
    all: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Kill and remove running containers too.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(paths: &Paths, args: StopArgs) -> Result<i32, super::Exit> {
    Ok(each(&args.containers, |c| {
        container::stop(paths, c, Duration::from_secs(args.time))
    }))
}

pub fn kill(paths: &Paths, args: KillArgs) -> Result<i32, super::Exit> {
    match args.containers.as_slice() {
        [id, signal] if args.signal.is_none() && parse_signal(signal).is_ok() => {
            let signal = parse_signal(signal).map_err(anyhow::Error::msg)?;
            return super::oci::kill(paths, id, signal, args.all);
        }
        [id] if args.all => {
            return super::oci::kill(paths, id, args.signal.unwrap_or(Signal::SIGTERM), true);
        }
        _ if args.all => {
            return Err(anyhow::anyhow!("kill --all takes one container id and a signal").into())
        }
        _ => {}
    }
    let signal = args.signal.unwrap_or(Signal::SIGKILL);
    Ok(each(&args.containers, |c| {
        container::kill_container(paths, c, signal)
    }))
}

pub fn rm(paths: &Paths, args: RmArgs) -> Result<i32, super::Exit> {
    Ok(each(&args.containers, |c| {
        container::remove(paths, c, args.force)
    }))
}

pub fn inspect(paths: &Paths, args: InspectArgs) -> Result<i32, super::Exit> {
    let mut found = Vec::new();
    let mut code = 0;
    for c in &args.containers {
        match container::inspect(paths, c) {
            Ok(value) => found.push(value),
            Err(e) => {
                eprintln!("poc: {e}");
                code = 125;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(code)
}

/// Runs `act` on each container (or network), printing the name as given on success and a line
/// for each failure, as Docker does; 125 if any failed.
pub(super) fn each<T, E: std::fmt::Display>(
    containers: &[String],
    act: impl Fn(&str) -> Result<T, E>,
) -> i32 {
    let mut code = 0;
    for c in containers {
        match act(c) {
            Ok(_) => println!("{c}"),
            Err(e) => {
                eprintln!("poc: {e}");
                code = 125;
            }
        }
    }
    code
}

fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| format!("unknown signal {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
