//! `poc bench SUITE`: containers against the host and other runtimes, measured side by side; a
//! table on stdout and report.md, report.json and one chart per suite in --out.

use std::path::PathBuf;

use crate::bench::{self, BenchError, Options, Peer, Suite};
use crate::config::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// sysbench-suite, start, update, net, or all.
    #[arg(value_parser = ["sysbench-suite", "start", "update", "net", "all"])]
    suite: String,
    /// Scale times and sizes down (the sysbench suite then takes about a minute for host and poc).
    #[arg(long)]
    quick: bool,
    /// Peers, comma separated: host, poc, runc, crun, docker, podman (those not installed are
    /// skipped with a note). Default: host,poc for sysbench-suite; every runtime for start;
    /// poc,docker for update and net.
    #[arg(long, value_delimiter = ',', value_parser = Peer::parse)]
    against: Option<Vec<Peer>>,
    /// Rounds of each sysbench test per peer (median and spread over them).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Starts, updates or pings per peer in the start, update and net suites.
    #[arg(long)]
    runs: Option<usize>,
    /// sysbench tests to run, comma separated: cpu, threads, memory-write, memory-fill, fileio.
    #[arg(long, value_delimiter = ',', value_parser = ["cpu", "threads", "memory-write", "memory-fill", "fileio"])]
    tests: Vec<String>,
    /// Seconds of each timed sysbench test (overrides the defaults and --quick).
    #[arg(long, value_name = "SECS")]
    time: Option<u64>,
    /// fileio's total file size, e.g. 1G (overrides the defaults and --quick).
    #[arg(long, value_parser = crate::units::parse_size)]
    file_size: Option<u64>,
    /// The image with sysbench and iperf3 (built as `poc init debian --with sysbench,iperf3 --name
    /// sysbench` when it is missing).
    #[arg(long, default_value = "sysbench", value_parser = crate::names::parse_name)]
    image: String,
    /// Where report.md, report.json and the charts go (default: ./poc-bench-DATE-TIME).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let suites: Vec<Suite> = match args.suite.as_str() {
        "sysbench-suite" => vec![Suite::Sysbench],
        "start" => vec![Suite::Start],
        "update" => vec![Suite::Update],
        "net" => vec![Suite::Net],
        _ => Suite::ALL.to_vec(),
    };
    if args.time == Some(0) {
        return Err(anyhow::anyhow!("--time must be at least 1 second").into());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = crate::units::rfc3339(crate::units::now_ns());
        let stamp: String = stamp
            .chars()
            .take(19)
            .filter(|c| c.is_ascii_digit() || *c == 'T')
            .collect();
        PathBuf::from(format!("poc-bench-{}", stamp.replace('T', "-")))
    });
    let opts = Options {
        quick: args.quick,
        repeat: args.repeat,
        runs: 0,
        tests: args.tests,
        time: args.time,
        file_size: args.file_size,
        image: args.image,
    };
    let report = match bench::run(paths, opts, &suites, args.against.as_deref(), args.runs) {
        Ok(r) => r,
        Err(BenchError::Interrupted) => {
            eprintln!("poc: bench interrupted; everything it made is removed");
            return Ok(130);
        }
        Err(e) => return Err(anyhow::anyhow!("bench: {e}").into()),
    };
    print!("{}", report.markdown());
    let files = report.write(&out).map_err(anyhow::Error::msg)?;
    for file in files {
        eprintln!("bench: wrote {}", file.display());
    }
    Ok(0)
}
