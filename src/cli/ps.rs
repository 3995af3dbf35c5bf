//! `poc ps [-a] [-q] [--format json]`: containers as a table, ids, or JSON.

use crate::config::Paths;
use crate::container::observed_name;
use crate::container::state::{self, Observed, State};
use crate::spec::Limits;
use crate::units::{ago, duration, human_size, now_secs, rfc3339};

#[derive(clap::Args)]
pub struct Args {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Print only the ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table")]
    format: Format,
    /// OCI (runc's `ps ID`): the processes of this container instead of a list of containers.
    container: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    if let Some(id) = &args.container {
        return super::oci::ps(paths, id, matches!(args.format, Format::Json));
    }
    let mut containers: Vec<(State, Observed)> = state::list(paths)
        .into_iter()
        .map(|s| {
            let observed = s.observed();
            (s, observed)
        })
        .filter(|(_, o)| {
            args.all
                || matches!(
                    o,
                    Observed::Running | Observed::Creating | Observed::Created | Observed::Paused
                )
        })
        .collect();
    containers.sort_by(|a, b| b.0.created.cmp(&a.0.created).then(a.0.id.cmp(&b.0.id)));
    if args.quiet {
        for (s, _) in &containers {
            println!("{}", s.id.short());
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> =
                containers.iter().map(|(s, o)| json_row(s, *o)).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = containers.iter().map(|(s, o)| table_row(s, *o)).collect();
            super::table::print(
                &[
                    "CONTAINER ID",
                    "NAME",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "PID",
                    "LIMITS",
                ],
                &rows,
            );
        }
    }
    Ok(0)
}

/// The init's pid while it runs (or is paused); none once it has ended.
fn pid(s: &State, o: Observed) -> Option<i32> {
    s.init
        .filter(|_| matches!(o, Observed::Running | Observed::Paused))
        .map(|i| i.pid)
}

fn table_row(s: &State, o: Observed) -> Vec<String> {
    let pid = pid(s, o).map_or(String::new(), |pid| pid.to_string());
    vec![
        s.id.short().to_string(),
        s.name.clone().unwrap_or_default(),
        s.image.clone(),
        command(&s.command),
        ago(s.created),
        status(s, o),
        ports(s).join(", "),
        pid,
        limits(&s.limits),
    ]
}

/// Published ports as Docker's ps shows them, `0.0.0.0:8080->80/tcp`; a stopped container holds
/// none.
fn ports(s: &State) -> Vec<String> {
    s.network
        .iter()
        .flat_map(|a| a.ports.iter().map(ToString::to_string))
        .collect()
}

fn command(args: &[String]) -> String {
    let joined = args.join(" ");
    let short: String = joined.chars().take(18).collect();
    if short.len() < joined.len() {
        format!("\"{short}…\"")
    } else {
        format!("\"{short}\"")
    }
}

/// "Up 3 seconds", "Exited (0) 5 seconds ago", "Dead", "Created".
fn status(s: &State, observed: Observed) -> String {
    let now = now_secs();
    match observed {
        Observed::Running => format!(
            "Up {}",
            duration(now.saturating_sub(s.started.unwrap_or(s.created)))
        ),
        Observed::Exited(code) => {
            format!("Exited ({code}) {}", ago(s.finished.unwrap_or(s.created)))
        }
        Observed::Paused => format!(
            "Up {} (Paused)",
            duration(now.saturating_sub(s.started.unwrap_or(s.created)))
        ),
        Observed::Dead => "Dead".to_string(),
        Observed::Creating | Observed::Created => "Created".to_string(),
    }
}

pub fn limits(l: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(m) = l.memory {
        parts.push(format!("mem={}", human_size(m)));
    }
    if let Some(m) = l.memory_soft {
        parts.push(format!("mem-soft={}", human_size(m)));
    }
    if let Some(c) = l.cpu {
        parts.push(format!("cpus={:.2}", c.quota as f64 / c.period as f64));
    }
    if let Some(c) = l.cpu_shares {
        parts.push(format!("shares={c}"));
    }
    if let Some(p) = l.pids {
        parts.push(format!("pids={p}"));
    }
    if let Some(c) = &l.cpuset {
        parts.push(format!("cpuset={c}"));
    }
    parts.join(" ")
}

fn json_row(s: &State, observed: Observed) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "name": s.name,
        "image": s.image,
        "command": s.command,
        "created": rfc3339(s.created * 1_000_000_000),
        "state": observed_name(observed),
        "status": status(s, observed),
        "exit_code": s.exit_code,
        "ports": ports(s),
        "pid": pid(s, observed),
        "limits": s.limits,
    })
}
