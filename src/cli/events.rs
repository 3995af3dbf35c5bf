//! `poc events [--since T] [--until T] [--format json] [CONTAINER...]`: what happens to containers
//! (start, exit, kill, stop, update, oom-kill, memory-high, memory-max, remove), live, like
//! `docker events`; with --since, from the journal first.

use crate::config::Paths;
use crate::container::events::{self, Event};
use crate::units::{now_ns, parse_time, rfc3339};

#[derive(clap::Args)]
pub struct Args {
    /// Show events from this time on: Unix seconds, RFC 3339, or a duration ago (10m).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms); without it, follow until interrupted.
    #[arg(long)]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Only events of these containers (names, or id prefixes of 12+ characters; they need not exist yet).
    containers: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let now = now_ns();
    let time = |flag: &str, text: &Option<String>| -> Result<Option<u64>, super::Exit> {
        text.as_deref()
            .map(|t| parse_time(t, now).map_err(|e| anyhow::anyhow!("{flag}: {e}").into()))
            .transpose()
    };
    let since = time("--since", &args.since)?;
    let until = time("--until", &args.until)?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(anyhow::anyhow!("--until is before --since").into());
        }
    }
    let wanted =
        |e: &Event| args.containers.is_empty() || args.containers.iter().any(|q| e.is_about(q));
    let show = |e: &Event| {
        if args.format == Format::Json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", line(e));
        }
    };
    let (past, position) = match since {
        Some(since) => events::read_since(paths, since),
        None => (Vec::new(), events::end(paths)),
    };
    for e in past.iter().filter(|e| wanted(e)) {
        if until.is_some_and(|u| e.time > u) {
            return Ok(0);
        }
        show(e);
    }
    if until.is_some_and(|u| u <= now) {
        return Ok(0);
    }
    events::follow(paths, position, until, &mut |e| {
        if wanted(e) {
            show(e);
        }
        true
    })?;
    Ok(0)
}

/// Docker's layout: `TIME container TYPE ID (key=value, ...)`.
fn line(e: &Event) -> String {
    let mut attributes: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    attributes.push(format!("image={}", e.image));
    if let Some(name) = &e.name {
        attributes.push(format!("name={name}"));
    }
    format!(
        "{} container {} {} ({})",
        rfc3339(e.time),
        e.kind,
        e.id,
        attributes.join(", ")
    )
}
