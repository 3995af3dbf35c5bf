//! `poc stats [--no-stream] [--format json] [--duration D [--plot F.svg]] [CONTAINER...]`: CPU, memory,
//! network, block I/O, pids and throttling of running containers, like `docker stats`, from their
//! cgroups' own files; over a duration, also as an SVG time series.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Paths;
use crate::container::state::{self, Observed, State};
use crate::container::{usage, Usage};
use crate::id::ContainerId;

use crate::units::human_size;

#[derive(clap::Args)]
pub struct Args {
    /// Print one sample and exit (measured over half a second).
    #[arg(long)]
    no_stream: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Sample for this long, then exit (30s, 2m...).
    #[arg(long, value_parser = crate::units::parse_duration, conflicts_with = "no_stream")]
    duration: Option<Duration>,
    /// Time between samples.
    #[arg(long, value_parser = crate::units::parse_duration, default_value = "1s")]
    interval: Duration,
    /// Write the samples as an SVG time series (CPU, memory, page faults, throttling, pids, PSI).
    #[arg(long, requires = "duration")]
    plot: Option<PathBuf>,
    /// Containers (default: all running ones).
    containers: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

/// The containers named (each must be running), or all running ones.
pub(super) fn choose(paths: &Paths, queries: &[String]) -> Result<Vec<State>, super::Exit> {
    if queries.is_empty() {
        return Ok(state::list(paths)
            .into_iter()
            .filter(|s| s.observed() == Observed::Running)
            .collect());
    }
    let mut chosen = Vec::new();
    for query in queries {
        let st = state::load(paths, &state::resolve(paths, query)?)?;
        if st.observed() != Observed::Running {
            return Err(anyhow::anyhow!("container {query} is not running").into());
        }
        chosen.push(st);
    }
    Ok(chosen)
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let containers = choose(paths, &args.containers)?;
    if args.interval < Duration::from_millis(10) {
        return Err(anyhow::anyhow!("--interval: at least 10ms").into());
    }
    if let Some(plot) = &args.plot {
        // Refuse a place the chart cannot go before sampling for minutes.
        let dir = plot.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(anyhow::anyhow!(
                "--plot: directory {} does not exist",
                dir.unwrap().display()
            )
            .into());
        }
    }
    let host_memory = host_memory_bytes();
    let start = Instant::now();
    let mut history: Vec<(f64, Vec<Row>)> = Vec::new();
    let mut before: Vec<Usage> = containers.iter().map(usage).collect();
    let interval = if args.no_stream {
        Duration::from_millis(500)
    } else {
        args.interval
    };
    loop {
        std::thread::sleep(interval);
        let after: Vec<Usage> = containers.iter().map(usage).collect();
        let rows: Vec<Row> = containers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(s, (b, a))| Row::new(s, b, a, host_memory))
            .collect();
        if args.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            if !args.no_stream {
                print!("\x1b[2J\x1b[H");
            }
            print_table(&rows);
        }
        if args.no_stream {
            return Ok(0);
        }
        before = after;
        let elapsed = start.elapsed();
        if args.plot.is_some() {
            history.push((elapsed.as_secs_f64(), rows));
        }
        if args.duration.is_some_and(|d| elapsed + interval / 2 >= d) {
            break;
        }
    }
    if let Some(path) = &args.plot {
        let svg = crate::plot::time_series(
            &format!("poc stats, every {:?}", interval),
            "seconds",
            &panels(&history),
        );
        std::fs::write(path, svg)
            .map_err(|e| anyhow::anyhow!("--plot: writing {}: {e}", path.display()))?;
    }
    Ok(0)
}

/// One panel per measure, one line per container.
fn panels(history: &[(f64, Vec<Row>)]) -> Vec<crate::plot::Panel> {
    type Measure = fn(&Row) -> Option<f64>;
    let measures: [(&str, &str, Measure); 8] = [
        ("CPU", "% of one CPU", |r| Some(r.cpu_percent)),
        ("Memory", "MiB", |r| Some(r.memory_bytes as f64 / 1048576.0)),
        ("Page faults", "per second", |r| {
            Some(r.page_faults_per_second)
        }),
        ("Throttled", "ms per second", |r| {
            Some(r.throttled_ms_per_second)
        }),
        ("Processes", "pids", |r| Some(r.pids as f64)),
        ("CPU pressure", "some avg10 %", |r| r.psi.map(|p| p.cpu)),
        ("Memory pressure", "some avg10 %", |r| {
            r.psi.map(|p| p.memory)
        }),
        ("I/O pressure", "some avg10 %", |r| r.psi.map(|p| p.io)),
    ];
    let Some((_, first)) = history.first() else {
        return Vec::new();
    };
    measures
        .iter()
        .filter(|(_, _, m)| first.iter().any(|r| m(r).is_some()))
        .map(|(title, unit, measure)| crate::plot::Panel {
            title: title.to_string(),
            unit: unit.to_string(),
            series: first
                .iter()
                .enumerate()
                .map(|(i, r)| crate::plot::Series {
                    name: r.name.clone().unwrap_or_else(|| r.id.short().to_string()),
                    points: history
                        .iter()
                        .filter_map(|(t, rows)| Some((*t, measure(rows.get(i)?)?)))
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// One container's numbers over one interval.
#[derive(serde::Serialize)]
pub(super) struct Row {
    pub id: ContainerId,
    pub name: Option<String>,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub pids: u64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
    /// Rates over the last interval.
    pub page_faults_per_second: f64,
    pub throttled_ms_per_second: f64,
    pub psi: Option<crate::cgroups::Psi>,
}

impl Row {
    pub fn new(s: &State, before: &Usage, after: &Usage, host_memory: u64) -> Self {
        let wall = after.at.duration_since(before.at).as_nanos().max(1) as f64;
        let cpu = after.cgroup.cpu_ns.saturating_sub(before.cgroup.cpu_ns) as f64;
        let limit = after
            .cgroup
            .memory_limit
            .unwrap_or(host_memory)
            .min(host_memory);
        Row {
            id: s.id.clone(),
            name: s.name.clone(),
            cpu_percent: cpu / wall * 100.0,
            memory_bytes: after.cgroup.memory_bytes,
            memory_limit: limit,
            memory_percent: after.cgroup.memory_bytes as f64 / limit.max(1) as f64 * 100.0,
            net_rx_bytes: after.net_rx,
            net_tx_bytes: after.net_tx,
            block_read_bytes: after.cgroup.io_read_bytes,
            block_write_bytes: after.cgroup.io_write_bytes,
            pids: after.cgroup.pids,
            throttled_periods: after.cgroup.throttled_periods,
            throttled_seconds: after.cgroup.throttled_ns as f64 / 1e9,
            page_faults_per_second: after
                .cgroup
                .page_faults
                .saturating_sub(before.cgroup.page_faults)
                as f64
                / wall
                * 1e9,
            throttled_ms_per_second: after
                .cgroup
                .throttled_ns
                .saturating_sub(before.cgroup.throttled_ns)
                as f64
                / wall
                * 1e3,
            psi: after.cgroup.psi,
        }
    }
}

fn print_table(rows: &[Row]) {
    let w = super::table::name_width(rows.iter().filter_map(|r| r.name.as_deref()));
    println!(
        "{:<12}   {:<w$} {:>7}   {:<21} {:>7}   {:<19} {:<19} {:>5}   THROTTLED",
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS"
    );
    for r in rows {
        println!(
            "{:<12}   {:<w$} {:>6.2}%   {:<21} {:>6.2}%   {:<19} {:<19} {:>5}   {} / {:.2}s",
            r.id.short(),
            r.name.as_deref().unwrap_or(""),
            r.cpu_percent,
            format!(
                "{} / {}",
                human_size(r.memory_bytes),
                human_size(r.memory_limit)
            ),
            r.memory_percent,
            format!(
                "{} / {}",
                human_size(r.net_rx_bytes),
                human_size(r.net_tx_bytes)
            ),
            format!(
                "{} / {}",
                human_size(r.block_read_bytes),
                human_size(r.block_write_bytes)
            ),
            r.pids,
            r.throttled_periods,
            r.throttled_seconds
        );
    }
}

/// The host's memory, the limit shown for a container without one.
pub(super) fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            })
        })
        .flatten()
        .map_or(u64::MAX, |kib| kib * 1024)
}
