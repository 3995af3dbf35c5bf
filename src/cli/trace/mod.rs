//! `poc trace CONTAINER --limits|--mem|--sched|--net`: eBPF measurements of the kernel's work for one
//! container (see src/trace): checks the flags, finds the container, and prints what trace hands
//! back, one table for the per-interval modes.

mod limits;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Paths;
use crate::container::state::{self, Observed};
use crate::trace::{self, mem, net, sched, Target, TraceError};
use crate::units::human_size;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["limits", "mem", "sched", "net"]))]
pub struct Args {
    /// Report every write to the container's cgroup files (by anyone): kernel time, reclaim,
    /// and after a CPU quota write the delay until its tasks are first throttled.
    #[arg(long)]
    limits: bool,
    /// Per interval: usage, RSS, page faults, LRU isolation, memcg reclaim, swap, OOM kills.
    #[arg(long)]
    mem: bool,
    /// Per interval: run-queue waits, the share due to CPU throttling, and a verdict.
    #[arg(long)]
    sched: bool,
    /// Per interval, each way between the container's eth0 and the host: latency through the veth
    /// and the bridge (min/median/p99), packets and bytes per second, drops with their reasons.
    #[arg(long)]
    net: bool,
    /// With --limits: drive alternating memory and CPU limit changes and summarise them per phase
    /// (the container's limits are restored at the end, also when Ctrl-C stops it early).
    #[arg(long)]
    experiment: bool,
    /// With --experiment: rounds of the four phases (default 100).
    #[arg(long)]
    iterations: Option<usize>,
    /// With --experiment: the lowered memory limit (default: 3/4 of the usage at the start).
    #[arg(long, value_parser = crate::spec::parse_memory)]
    mem_low: Option<u64>,
    /// With --experiment: the lowered CPU quota in microseconds per period (default 10000).
    #[arg(long, value_parser = crate::spec::parse_cpu_quota)]
    cpu_low: Option<u64>,
    /// With --limits: stop after this many reports.
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this long (30s, 2m...).
    #[arg(long, value_parser = crate::units::parse_duration)]
    duration: Option<Duration>,
    /// Time between reports of --mem, --sched and --net.
    #[arg(long, value_parser = crate::units::parse_duration, default_value = "1s")]
    interval: Duration,
    /// One JSON object per report.
    #[arg(long)]
    json: bool,
    /// Write an SVG: time series (--mem, --sched), histograms of kernel time per write (--limits)
    /// or of each segment's latency over the whole run (--net).
    #[arg(long)]
    plot: Option<PathBuf>,
    container: String,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    check(&args).map_err(anyhow::Error::msg)?;
    let target = target(paths, &args.container)?;
    let plot = args.plot.as_ref();
    if args.limits && args.experiment {
        let experiment = trace::limits::Experiment {
            iterations: args.iterations.unwrap_or(100),
            mem_low: args.mem_low,
            cpu_low: args.cpu_low,
        };
        return Ok(limits::experiment(&target, &experiment, args.json, plot)?);
    }
    if args.limits {
        let opts = trace::limits::WatchOptions {
            count: args.count,
            duration: args.duration,
        };
        limits::watch(&target, &opts, args.json, plot)?;
    } else if args.net {
        trace_net(&target, &args)?;
    } else if args.mem {
        trace_mem(&target, &args)?;
    } else {
        trace_sched(&target, &args)?;
    }
    Ok(0)
}

/// The flag combinations clap cannot check (its `requires` counts a flag's default `false` as
/// given), as the message to refuse them with.
fn check(args: &Args) -> Result<(), String> {
    if args.interval < Duration::from_millis(10) {
        return Err("--interval: at least 10ms".into());
    }
    if args.experiment && !args.limits {
        return Err("--experiment goes with --limits".into());
    }
    if !args.experiment
        && (args.iterations.is_some() || args.mem_low.is_some() || args.cpu_low.is_some())
    {
        return Err("--iterations, --mem-low and --cpu-low go with --experiment".into());
    }
    if args.count.is_some() && !args.limits {
        return Err("--count goes with --limits".into());
    }
    let endless = args.count.is_none() && args.duration.is_none();
    if args.limits && !args.experiment && args.plot.is_some() && endless {
        return Err(
            "--plot with --limits needs an end: --count, --duration or --experiment".into(),
        );
    }
    if args.iterations == Some(0) {
        return Err("--iterations: at least 1".into());
    }
    if let Some(dir) = args.plot.as_ref().and_then(|p| p.parent()) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(format!(
                "--plot: directory {} does not exist",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The container `name_or_id` as trace needs it, from poc's state.
fn target(paths: &Paths, name_or_id: &str) -> Result<Target, super::Exit> {
    let id = state::resolve(paths, name_or_id)?;
    let state = state::load(paths, &id)?;
    let container = trace::Container {
        id: state.id.to_string(),
        name: state
            .name
            .clone()
            .unwrap_or_else(|| state.id.short().to_string()),
        cgroup: state.cgroup.clone(),
        init_pid: state.init.map(|p| p.pid),
        network_mode: state.network_mode.clone(),
        network: state.network.clone(),
        running: Box::new(move || state.observed() == Observed::Running),
    };
    Ok(Target::of(container)?)
}

/// A column of a per-interval table: its header, its width (right-aligned; 0: the last column,
/// left-aligned after two spaces), and the cell of a sample.
struct Column<S> {
    header: &'static str,
    width: usize,
    cell: fn(&S) -> String,
}

/// The per-interval modes' output: a header and a row per sample, or one JSON object per sample.
fn print_samples<S: serde::Serialize>(json: bool, columns: &[Column<S>]) -> impl FnMut(&S) + '_ {
    if !json {
        println!("{}", table_line(columns, |c| c.header.to_string()));
    }
    move |s: &S| {
        if json {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        } else {
            println!("{}", table_line(columns, |c| (c.cell)(s)));
        }
    }
}

const fn column<S>(header: &'static str, width: usize, cell: fn(&S) -> String) -> Column<S> {
    Column {
        header,
        width,
        cell,
    }
}

fn table_line<S>(columns: &[Column<S>], text: impl Fn(&Column<S>) -> String) -> String {
    let mut line = String::new();
    for (i, column) in columns.iter().enumerate() {
        let cell = text(column);
        match (i, column.width) {
            (_, 0) => line.push_str(&format!("  {cell}")),
            (0, w) => line.push_str(&format!("{cell:>w$}")),
            (_, w) => line.push_str(&format!(" {cell:>w$}")),
        }
    }
    line
}

const MEM_COLUMNS: [Column<mem::MemSample>; 11] = [
    column("SECONDS", 7, |s| format!("{:.1}", s.seconds)),
    column("USAGE", 10, |s| human_size(s.usage_bytes)),
    column("RSS", 10, |s| human_size(s.rss_bytes)),
    column("SWAP", 9, |s| human_size(s.swap_bytes)),
    column("FAULTS/s", 10, |s| {
        format!("{:.0}", s.page_faults_per_second)
    }),
    column("ISOLATED/s", 11, |s| {
        format!("{:.0}", s.lru_isolated_per_second)
    }),
    column("RECLAIM/s", 9, |s| {
        format!("{:.1}", s.reclaim_passes_per_second)
    }),
    column("RECL ms/s", 10, |s| {
        format!("{:.3}", s.reclaim_ms_per_second)
    }),
    column("PAGES/s", 10, |s| {
        format!("{:.0}", s.reclaimed_pages_per_second)
    }),
    column("FAULTS", 9, |s| s.page_faults.to_string()),
    column("OOM", 4, |s| s.oom_kills.to_string()),
];

fn trace_mem(target: &Target, args: &Args) -> Result<(), TraceError> {
    let samples = mem::run(
        target,
        args.interval,
        args.duration,
        &mut print_samples(args.json, &MEM_COLUMNS),
    )?;
    let Some(path) = &args.plot else {
        return Ok(());
    };
    let measures: [Measure<mem::MemSample>; 6] = [
        ("Usage", "MiB", |s| s.usage_bytes as f64 / 1048576.0),
        ("RSS", "MiB", |s| s.rss_bytes as f64 / 1048576.0),
        ("Page faults", "per second", |s| s.page_faults_per_second),
        ("LRU pages isolated", "per second", |s| {
            s.lru_isolated_per_second
        }),
        ("Memcg reclaim passes", "per second", |s| {
            s.reclaim_passes_per_second
        }),
        ("Memcg reclaim time", "ms per second", |s| {
            s.reclaim_ms_per_second
        }),
    ];
    write_plot(path, target, "--mem", &samples, |s| s.seconds, &measures)
}

const SCHED_COLUMNS: [Column<sched::SchedSample>; 10] = [
    column("SECONDS", 7, |s| format!("{:.1}", s.seconds)),
    column("CPU %", 6, |s| format!("{:.1}", s.cpu_percent)),
    column("WAITS/s", 8, |s| format!("{:.0}", s.waits_per_second)),
    column("AVG us", 9, |s| format!("{:.1}", s.wait_avg_us)),
    column("P99 us", 9, |s| format!("{:.0}", s.wait_p99_us)),
    column("MAX us", 10, |s| format!("{:.0}", s.wait_max_us)),
    column("THROTTLED ms", 13, |s| {
        format!("{:.1}", s.throttled_wait_ms_per_second)
    }),
    column("OTHER ms", 12, |s| {
        format!("{:.1}", s.other_wait_ms_per_second)
    }),
    column("CPU.STAT ms", 12, |s| {
        format!("{:.1}", s.cgroup_throttled_ms_per_second)
    }),
    column("VERDICT", 0, |s| s.verdict.to_string()),
];

fn trace_sched(target: &Target, args: &Args) -> Result<(), TraceError> {
    let samples = sched::run(
        target,
        args.interval,
        args.duration,
        &mut print_samples(args.json, &SCHED_COLUMNS),
    )?;
    let Some(path) = &args.plot else {
        return Ok(());
    };
    let measures: [Measure<sched::SchedSample>; 4] = [
        ("CPU", "% of one CPU", |s| s.cpu_percent),
        ("Run-queue wait, average", "us", |s| s.wait_avg_us),
        ("Waiting while throttled", "ms per second", |s| {
            s.throttled_wait_ms_per_second
        }),
        ("Waiting for the host", "ms per second", |s| {
            s.other_wait_ms_per_second
        }),
    ];
    write_plot(path, target, "--sched", &samples, |s| s.seconds, &measures)
}

/// Latencies as median/p99 in us ("-" without packets).
fn latency(l: &net::Latency) -> String {
    match (l.median_us, l.p99_us) {
        (Some(m), Some(p)) => format!("{m:.1}/{p:.1}"),
        _ => "-".to_string(),
    }
}

fn drops(s: &net::NetSample) -> String {
    if s.drops.is_empty() {
        return "-".to_string();
    }
    let drops: Vec<String> = s
        .drops
        .iter()
        .map(|d| format!("{} {} ({})", d.count, d.reason, d.r#where))
        .collect();
    drops.join(", ")
}

const NET_COLUMNS: [Column<net::NetSample>; 11] = [
    column("SECONDS", 7, |s| format!("{:.1}", s.seconds)),
    column("OUT pkt/s", 9, |s| {
        format!("{:.0}", s.from_container.packets_per_second)
    }),
    column("OUT B/s", 10, |s| {
        human_size(s.from_container.bytes_per_second as u64)
    }),
    column("OUT veth us", 13, |s| latency(&s.from_container.veth)),
    column("OUT bridge", 13, |s| latency(&s.from_container.bridge)),
    column("IN pkt/s", 9, |s| {
        format!("{:.0}", s.to_container.packets_per_second)
    }),
    column("IN B/s", 10, |s| {
        human_size(s.to_container.bytes_per_second as u64)
    }),
    column("IN bridge us", 13, |s| latency(&s.to_container.bridge)),
    column("IN veth", 13, |s| latency(&s.to_container.veth)),
    column("PATH ms/s", 9, |s| {
        format!("{:.3}", s.in_path_ms_per_second)
    }),
    column("DROPS", 0, drops),
];

fn trace_net(target: &Target, args: &Args) -> Result<(), TraceError> {
    let (_, run) = net::run(
        target,
        args.interval,
        args.duration,
        &mut print_samples(args.json, &NET_COLUMNS),
    )?;
    let Some(path) = &args.plot else {
        return Ok(());
    };
    let sets: Vec<(String, Vec<f64>)> = run
        .segments
        .iter()
        .map(|(title, hist)| {
            let (values, sampled) = net::histogram_values(hist);
            let note = if sampled { ", sampled" } else { "" };
            (format!("{title}{note}"), values)
        })
        .collect();
    let svg = crate::plot::histograms(
        &format!("poc trace {} --net: latency per packet", target.name),
        &sets,
        "microseconds",
    );
    trace::write_file(path, svg)
}

/// A panel: title, unit, and the value of a sample.
type Measure<S> = (&'static str, &'static str, fn(&S) -> f64);

fn write_plot<S>(
    path: &std::path::Path,
    target: &Target,
    mode: &str,
    samples: &[S],
    x: fn(&S) -> f64,
    measures: &[Measure<S>],
) -> Result<(), trace::TraceError> {
    let panels: Vec<crate::plot::Panel> = measures
        .iter()
        .map(|(title, unit, m)| crate::plot::Panel {
            title: title.to_string(),
            unit: unit.to_string(),
            series: vec![crate::plot::Series {
                name: target.name.clone(),
                points: samples.iter().map(|s| (x(s), m(s))).collect(),
            }],
        })
        .collect();
    let svg = crate::plot::time_series(
        &format!("poc trace {} {mode}", target.name),
        "seconds",
        &panels,
    );
    trace::write_file(path, svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<S>(columns: &[Column<S>]) -> String {
        table_line(columns, |c| c.header.to_string())
    }

    #[test]
    fn the_tables_keep_their_columns_aligned() {
        assert_eq!(
            header(&SCHED_COLUMNS),
            format!(
                "{:>7} {:>6} {:>8} {:>9} {:>9} {:>10} {:>13} {:>12} {:>12}  VERDICT",
                "SECONDS",
                "CPU %",
                "WAITS/s",
                "AVG us",
                "P99 us",
                "MAX us",
                "THROTTLED ms",
                "OTHER ms",
                "CPU.STAT ms"
            )
        );
        assert!(header(&NET_COLUMNS).ends_with(" PATH ms/s  DROPS"));
        let sample = mem::MemSample {
            seconds: 1.04,
            usage_bytes: 3 << 20,
            rss_bytes: 1 << 20,
            swap_bytes: 0,
            page_faults: 12,
            page_faults_per_second: 11.6,
            lru_isolated_per_second: 0.0,
            reclaim_passes_per_second: 0.0,
            reclaim_ms_per_second: 0.0,
            reclaimed_pages_per_second: 0.0,
            oom_kills: 0,
        };
        let row = table_line(&MEM_COLUMNS, |c| (c.cell)(&sample));
        assert_eq!(row.len(), header(&MEM_COLUMNS).len(), "{row}");
        assert!(row.starts_with("    1.0 "), "{row}");
        assert!(row.ends_with("        12    0"), "{row}");
    }
}
