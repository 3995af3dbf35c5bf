//! `poc trace CONTAINER --limits|--mem|--sched|--net`: eBPF measurements of the kernel's work for one
//! container (see src/trace).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Paths;
use crate::container::state;
use crate::trace::{self, limits, mem, net, sched, Target};
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
    if !nix::unistd::geteuid().is_root() {
        return Err(trace::TraceError::NotRoot.into());
    }
    if args.interval < Duration::from_millis(10) {
        return Err(anyhow::anyhow!("--interval: at least 10ms").into());
    }
    // (clap's `requires` counts a flag's default `false` as given, so these are checked here.)
    if args.experiment && !args.limits {
        return Err(anyhow::anyhow!("--experiment goes with --limits").into());
    }
    if !args.experiment
        && (args.iterations.is_some() || args.mem_low.is_some() || args.cpu_low.is_some())
    {
        return Err(
            anyhow::anyhow!("--iterations, --mem-low and --cpu-low go with --experiment").into(),
        );
    }
    if args.count.is_some() && !args.limits {
        return Err(anyhow::anyhow!("--count goes with --limits").into());
    }
    if args.limits
        && !args.experiment
        && args.plot.is_some()
        && args.count.is_none()
        && args.duration.is_none()
    {
        return Err(anyhow::anyhow!(
            "--plot with --limits needs an end: --count, --duration or --experiment"
        )
        .into());
    }
    let iterations = args.iterations.unwrap_or(100);
    if iterations == 0 {
        return Err(anyhow::anyhow!("--iterations: at least 1").into());
    }
    if let Some(dir) = args.plot.as_ref().and_then(|p| p.parent()) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(
                anyhow::anyhow!("--plot: directory {} does not exist", dir.display()).into(),
            );
        }
    }
    let id = state::resolve(paths, &args.container)?;
    let target = Target::of(state::load(paths, &id)?)?;
    if args.limits {
        if args.experiment {
            let experiment = limits::Experiment {
                iterations,
                mem_low: args.mem_low,
                cpu_low: args.cpu_low,
                json: args.json,
                plot: args.plot,
            };
            let mut progress = ProgressLine::new(&target.name);
            let report = limits::experiment(&target, &experiment, &mut |p| progress.show(p));
            // The summary starts on a clean line.
            drop(progress);
            let report = report?;
            limits::publish(&target, &experiment, &report)?;
            // Stopped by a signal: the shell's convention, 128 + its number.
            return Ok(report.stopped_by.map_or(0, |s| 128 + s as i32));
        } else {
            limits::watch(
                &target,
                &limits::WatchOptions {
                    json: args.json,
                    count: args.count,
                    duration: args.duration,
                    plot: args.plot,
                },
            )?;
        }
        return Ok(0);
    }
    let json = args.json;
    if args.net {
        return trace_net(&target, &args);
    }
    if args.mem {
        if !json {
            println!(
                "{:>7} {:>10} {:>10} {:>9} {:>10} {:>11} {:>9} {:>10} {:>10} {:>9} {:>4}",
                "SECONDS",
                "USAGE",
                "RSS",
                "SWAP",
                "FAULTS/s",
                "ISOLATED/s",
                "RECLAIM/s",
                "RECL ms/s",
                "PAGES/s",
                "FAULTS",
                "OOM"
            );
        }
        let samples = mem::run(&target, args.interval, args.duration, &mut |s| {
            if json {
                println!("{}", serde_json::to_string(s).unwrap_or_default());
            } else {
                println!(
                    "{:>7.1} {:>10} {:>10} {:>9} {:>10.0} {:>11.0} {:>9.1} {:>10.3} {:>10.0} {:>9} {:>4}",
                    s.seconds,
                    human_size(s.usage_bytes),
                    human_size(s.rss_bytes),
                    human_size(s.swap_bytes),
                    s.page_faults_per_second,
                    s.lru_isolated_per_second,
                    s.reclaim_passes_per_second,
                    s.reclaim_ms_per_second,
                    s.reclaimed_pages_per_second,
                    s.page_faults,
                    s.oom_kills
                );
            }
        })?;
        if let Some(path) = &args.plot {
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
            write_plot(path, &target, "--mem", &samples, |s| s.seconds, &measures)?;
        }
    } else {
        if !json {
            println!(
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
            );
        }
        let samples = sched::run(&target, args.interval, args.duration, &mut |s| {
            if json {
                println!("{}", serde_json::to_string(s).unwrap_or_default());
            } else {
                println!(
                    "{:>7.1} {:>6.1} {:>8.0} {:>9.1} {:>9.0} {:>10.0} {:>13.1} {:>12.1} {:>12.1}  {}",
                    s.seconds,
                    s.cpu_percent,
                    s.waits_per_second,
                    s.wait_avg_us,
                    s.wait_p99_us,
                    s.wait_max_us,
                    s.throttled_wait_ms_per_second,
                    s.other_wait_ms_per_second,
                    s.cgroup_throttled_ms_per_second,
                    s.verdict
                );
            }
        })?;
        if let Some(path) = &args.plot {
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
            write_plot(path, &target, "--sched", &samples, |s| s.seconds, &measures)?;
        }
    }
    Ok(0)
}

fn trace_net(target: &Target, args: &Args) -> Result<i32, super::Exit> {
    let json = args.json;
    if !json {
        println!(
            "{:>7} {:>9} {:>10} {:>13} {:>13} {:>9} {:>10} {:>13} {:>13} {:>9}  DROPS",
            "SECONDS",
            "OUT pkt/s",
            "OUT B/s",
            "OUT veth us",
            "OUT bridge",
            "IN pkt/s",
            "IN B/s",
            "IN bridge us",
            "IN veth",
            "PATH ms/s"
        );
    }
    let (_, run) = net::run(target, args.interval, args.duration, &mut |s| {
        if json {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        } else {
            println!("{}", net_line(s));
        }
    })?;
    if let Some(path) = &args.plot {
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
        trace::write_file(path, svg)?;
    }
    Ok(0)
}

/// One interval as a table row: latencies as median/p99 in us ("-" without packets).
fn net_line(s: &net::NetSample) -> String {
    let lat = |l: &net::Latency| match (l.median_us, l.p99_us) {
        (Some(m), Some(p)) => format!("{m:.1}/{p:.1}"),
        _ => "-".to_string(),
    };
    let drops: Vec<String> = s
        .drops
        .iter()
        .map(|d| format!("{} {} ({})", d.count, d.reason, d.r#where))
        .collect();
    let (o, i) = (&s.from_container, &s.to_container);
    format!(
        "{:>7.1} {:>9.0} {:>10} {:>13} {:>13} {:>9.0} {:>10} {:>13} {:>13} {:>9.3}  {}",
        s.seconds,
        o.packets_per_second,
        human_size(o.bytes_per_second as u64),
        lat(&o.veth),
        lat(&o.bridge),
        i.packets_per_second,
        human_size(i.bytes_per_second as u64),
        lat(&i.bridge),
        lat(&i.veth),
        s.in_path_ms_per_second,
        if drops.is_empty() {
            "-".to_string()
        } else {
            drops.join(", ")
        }
    )
}

/// The experiment's progress on stderr: one line at the start, then, on a terminal only, a line
/// rewritten in place ("iteration 37/1000, ~12 s left"), at most ten times a second and erased
/// when dropped.
struct ProgressLine {
    name: String,
    terminal: bool,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new(name: &str) -> Self {
        ProgressLine {
            name: name.to_string(),
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, p: &limits::Progress) {
        let mut err = std::io::stderr().lock();
        if p.done == 0 {
            let _ = writeln!(
                err,
                "experiment on {}: {} iteration{} of 4 limit writes; Ctrl-C stops it early, and the limits are restored either way",
                self.name,
                p.total,
                if p.total == 1 { "" } else { "s" }
            );
            return;
        }
        if !self.terminal {
            return;
        }
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let left = p.elapsed.as_secs_f64() / p.done as f64 * (p.total - p.done) as f64;
        let _ = write!(
            err,
            "\r\x1b[Kiteration {}/{}, ~{} left",
            p.done,
            p.total,
            time_left(left)
        );
        let _ = err.flush();
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        if self.terminal && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// "12 s" under two minutes, then "3 min".
fn time_left(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{:.0} s", seconds.ceil())
    } else {
        format!("{:.0} min", (seconds / 60.0).ceil())
    }
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
