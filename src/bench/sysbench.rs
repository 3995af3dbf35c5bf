//! The sysbench suite: five tests, each run on the host and in a container under each peer,
//! interleaved and repeated; the container's fileio on its writable layer and on a volume.
//!   cpu           many threads on prime sieves: the scheduler's and cgroups' cost to CPU work
//!   threads       mutex and yield contention: the cost of scheduling many threads in a cgroup
//!   memory-write  concurrent writes: memory bandwidth under the memory controller's accounting
//!   memory-fill   1 MiB blocks: raw copy speed, page faults charged to the container
//!   fileio        random reads and writes with fsync: overlay (or a bind mount) against the host's
//!                 filesystem, on the same device (the bench works inside poc's store)

use std::collections::BTreeMap;
use std::path::Path;

use super::measure::{self, Progress};
use super::peers::{self, Job, Peer, Peers};
use super::report::{Extras, Figures, Row, SuiteReport};
use super::{fail, Bench, Result};

/// The image the suite runs in, and how `poc bench` builds it when it is missing.
pub const IMAGE_INIT: [&str; 5] = ["debian", "--with", "sysbench,iperf3", "--name", "sysbench"];

pub const TESTS: [&str; 5] = ["cpu", "threads", "memory-write", "memory-fill", "fileio"];

/// Times and sizes of one run of the suite.
#[derive(Debug, Clone)]
pub struct Scale {
    pub cpu_secs: u64,
    pub threads_secs: u64,
    pub memory_secs: u64,
    pub fill_bytes: u64,
    pub file_bytes: u64,
    pub fileio_secs: u64,
}

impl Scale {
    pub fn new(quick: bool, time: Option<u64>, file_size: Option<u64>) -> Scale {
        // Quick: about a minute in total for host and poc with three rounds (33 runs).
        let mut s = if quick {
            Scale {
                cpu_secs: 2,
                threads_secs: 2,
                memory_secs: 2,
                fill_bytes: 1 << 30,
                file_bytes: 256 << 20,
                fileio_secs: 2,
            }
        } else {
            Scale {
                cpu_secs: 60,
                threads_secs: 10,
                memory_secs: 60,
                fill_bytes: 10 << 30,
                file_bytes: 10 << 30,
                fileio_secs: 300,
            }
        };
        if let Some(t) = time {
            s.cpu_secs = t;
            s.threads_secs = t;
            s.memory_secs = t;
            s.fileio_secs = t;
        }
        if let Some(size) = file_size {
            s.file_bytes = size;
            s.fill_bytes = s.fill_bytes.min(size.max(1 << 20));
        }
        s
    }
}

fn size_arg(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else if bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else {
        format!("{}K", bytes.div_ceil(1024))
    }
}

/// What a test runs, and which figure of its output it reports.
struct Test {
    name: &'static str,
    argv: Vec<String>,
    metric: &'static str,
    unit: &'static str,
    /// Seconds one run is expected to take (for the progress display).
    expected: f64,
}

fn test(name: &str, s: &Scale) -> Test {
    match name {
        "cpu" => Test {
            name: "cpu",
            argv: measure::words(&format!(
                "sysbench cpu --threads=100 --cpu-max-prime=64000 --time={} run",
                s.cpu_secs
            )),
            metric: "events per second",
            unit: "events/s",
            expected: s.cpu_secs as f64 + 1.0,
        },
        "threads" => Test {
            name: "threads",
            argv: measure::words(&format!(
                "sysbench threads --threads=64 --thread-yields=100 --thread-locks=2 --time={} run",
                s.threads_secs
            )),
            metric: "events",
            unit: "events",
            expected: s.threads_secs as f64 + 1.0,
        },
        "memory-write" => Test {
            name: "memory-write",
            argv: measure::words(&format!(
                "sysbench memory --threads=100 --memory-oper=write --time={} run",
                s.memory_secs
            )),
            metric: "throughput",
            unit: "MiB/s",
            expected: s.memory_secs as f64 + 1.0,
        },
        "memory-fill" => Test {
            name: "memory-fill",
            argv: measure::words(&format!(
                "sysbench memory --memory-block-size=1M --memory-total-size={} run",
                size_arg(s.fill_bytes)
            )),
            metric: "throughput",
            unit: "MiB/s",
            expected: s.fill_bytes as f64 / 4e9 + 1.0,
        },
        _ => {
            let size = size_arg(s.file_bytes);
            let script = format!(
                "sysbench fileio --file-total-size={size} prepare >/dev/null && \
                 sysbench fileio --file-total-size={size} --file-test-mode=rndrw --time={} \
                 --max-requests=0 run; rc=$?; \
                 sysbench fileio --file-total-size={size} cleanup >/dev/null; exit $rc",
                s.fileio_secs
            );
            Test {
                name: "fileio",
                argv: vec!["sh".into(), "-c".into(), script],
                metric: "file operations",
                unit: "ops/s",
                expected: s.fileio_secs as f64 + s.file_bytes as f64 / 300e6 + 1.0,
            }
        }
    }
}

/// The number after `key` on the first line that starts with it (after indentation).
fn number_after(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].split_whitespace().next())
        .and_then(|w| w.trim_end_matches('s').parse().ok())
}

/// The figures of one sysbench run: the reported one first, then secondary ones by name.
pub fn parse(test: &str, output: &str) -> Option<Figures> {
    let mut extra = BTreeMap::new();
    let mut put = |name: &str, value: Option<f64>| {
        if let Some(v) = value {
            extra.insert(name.to_string(), v);
        }
    };
    put("latency_avg_ms", number_after(output, "avg:"));
    put("latency_p95_ms", number_after(output, "95th percentile:"));
    put("latency_max_ms", number_after(output, "max:"));
    let main = match test {
        "cpu" => number_after(output, "events per second:"),
        "threads" => {
            let fairness = output
                .lines()
                .map(str::trim_start)
                .find(|l| l.starts_with("events (avg/stddev):"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.split_once('/'))
                .and_then(|(_, sd)| sd.parse().ok());
            put("events_per_thread_stddev", fairness);
            number_after(output, "total number of events:")
        }
        "memory-write" | "memory-fill" => output
            .lines()
            .find(|l| l.contains("MiB transferred ("))
            .and_then(|l| l.split_once('(')?.1.split_whitespace().next())
            .and_then(|v| v.parse().ok()),
        _ => {
            let reads = number_after(output, "reads/s:");
            let writes = number_after(output, "writes/s:");
            let fsyncs = number_after(output, "fsyncs/s:");
            put("reads_per_s", reads);
            put("writes_per_s", writes);
            put("fsyncs_per_s", fsyncs);
            put("read_mib_per_s", number_after(output, "read, MiB/s:"));
            put("written_mib_per_s", number_after(output, "written, MiB/s:"));
            Some(reads? + writes? + fsyncs?)
        }
    }?;
    Some((main, extra))
}

/// One cell of the suite: a test under a peer, on a variant of storage.
struct Cell {
    test: usize,
    peer: Peer,
    /// fileio in a container on a volume instead of its writable layer.
    volume: bool,
}

impl Cell {
    fn case(&self, tests: &[Test]) -> String {
        let name = tests[self.test].name;
        if self.volume {
            format!("{name}:volume")
        } else {
            name.to_string()
        }
    }
}

pub fn run(bench: &mut Bench, peers: &mut Peers, against: &[Peer]) -> Result<SuiteReport> {
    let opts = bench.opts.clone();
    let scale = Scale::new(opts.quick, opts.time, opts.file_size);
    let names: Vec<&str> = if opts.tests.is_empty() {
        TESTS.to_vec()
    } else {
        opts.tests.iter().map(String::as_str).collect()
    };
    let tests: Vec<Test> = names.iter().map(|n| test(n, &scale)).collect();
    prepare(bench, &tests, &scale)?;
    let mut peer_list = vec![Peer::Host];
    peer_list.extend(against.iter().copied().filter(|p| *p != Peer::Host));
    let cells = cells(&tests, &peer_list);
    let host_dir = bench.dir("host-fileio")?;
    let mut runner = Runner {
        bench,
        peers,
        tests: &tests,
        host_dir: &host_dir,
        rows: Vec::new(),
        extras: Extras::new(),
    };
    runner.measure(&cells)?;
    let Runner { rows, extras, .. } = runner;
    let notes = notes(bench, &scale, &host_dir, against);
    let mut suite = SuiteReport {
        name: "sysbench".into(),
        title: "sysbench: host against containers".into(),
        baseline: "host".into(),
        notes,
        results: rows,
    };
    suite.finish(&extras);
    Ok(suite)
}

/// Refuses to start without sysbench on the host, room for fileio, or the image (built when it
/// is the suite's own).
fn prepare(bench: &Bench, tests: &[Test], scale: &Scale) -> Result<()> {
    if peers::find_program("sysbench").is_none() {
        return Err(fail(
            "sysbench is not installed on the host (the baseline): apt-get install sysbench",
        ));
    }
    if tests.iter().any(|t| t.name == "fileio") {
        check_space(bench, scale.file_bytes)?;
    }
    let image = &bench.opts.image;
    if image == "sysbench" {
        bench.ensure_image(image, &IMAGE_INIT)?;
    } else if !bench.paths.images_dir().join(image).join("rootfs").is_dir() {
        return Err(fail(format!(
            "no image {image}: build one with sysbench in it"
        )));
    }
    Ok(())
}

/// Every test under every peer, fileio in a container also on a volume.
fn cells(tests: &[Test], peers: &[Peer]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (i, t) in tests.iter().enumerate() {
        for &peer in peers {
            cells.push(Cell {
                test: i,
                peer,
                volume: false,
            });
            if t.name == "fileio" && peer != Peer::Host {
                cells.push(Cell {
                    test: i,
                    peer,
                    volume: true,
                });
            }
        }
    }
    cells
}

/// Runs the cells and keeps their figures, a row per (case, peer).
struct Runner<'a> {
    bench: &'a mut Bench,
    peers: &'a mut Peers,
    tests: &'a [Test],
    /// Where the host's fileio runs.
    host_dir: &'a Path,
    rows: Vec<Row>,
    extras: Extras,
}

impl Runner<'_> {
    /// `--repeat` rounds of every cell; within a test, the peers take turns going first.
    fn measure(&mut self, cells: &[Cell]) -> Result<()> {
        let repeat = self.bench.opts.repeat.max(1);
        let expected: f64 = cells
            .iter()
            .map(|c| self.tests[c.test].expected + 0.5)
            .sum::<f64>()
            * repeat as f64;
        let mut progress = Progress::new("sysbench-suite", cells.len() * repeat, expected);
        for round in 0..repeat {
            for group in cells.chunk_by(|a, b| a.test == b.test) {
                for i in measure::turns(round, group.len()) {
                    let cell = &group[i];
                    progress.step(
                        &format!(
                            "{} on {} (round {}/{repeat})",
                            cell.case(self.tests),
                            cell.peer.name(),
                            round + 1
                        ),
                        self.tests[cell.test].expected + 0.5,
                    );
                    self.run_cell(cell)?;
                }
            }
        }
        Ok(())
    }

    /// One run of `cell`'s test, its figures added to its row.
    fn run_cell(&mut self, cell: &Cell) -> Result<()> {
        let t = &self.tests[cell.test];
        let case = cell.case(self.tests);
        let peer = cell.peer.name();
        let volume = match cell.volume {
            true => Some(self.bench.dir(&format!("volume-{peer}"))?),
            false => None,
        };
        let job = Job {
            image: self.bench.opts.image.clone(),
            argv: t.argv.clone(),
            workdir: Some(match cell.volume {
                true => peers::VOLUME_TARGET.to_string(),
                false => "/var/tmp".to_string(),
            }),
            volume,
            host_dir: Some(self.host_dir.to_path_buf()),
            bridge: false,
        };
        let cmd = self.peers.command(self.bench, cell.peer, &job)?;
        let command = peers::command_line(cell.peer, &cmd, &job);
        let (_, out) = peers::run_timed(self.peers, cell.peer, cmd)?;
        let (value, extra) = parse(t.name, &out).ok_or_else(|| {
            fail(format!(
                "sysbench {case} on {peer}: no figures in its output:\n{out}"
            ))
        })?;
        let i = match self
            .rows
            .iter()
            .position(|r| r.case == case && r.peer == peer)
        {
            Some(i) => i,
            None => {
                let mut row = Row::new(&case, peer, t.metric, t.unit, true);
                row.command = command;
                self.rows.push(row);
                self.rows.len() - 1
            }
        };
        self.rows[i].samples.push(value);
        self.extras
            .entry((case, peer.to_string()))
            .or_default()
            .push(extra);
        Ok(())
    }
}

/// How the suite was scaled and where it ran.
fn notes(bench: &Bench, scale: &Scale, host_dir: &Path, against: &[Peer]) -> Vec<String> {
    let opts = &bench.opts;
    let scaled = if opts.time.is_some() || opts.file_size.is_some() {
        "scaled by --time/--file-size"
    } else if opts.quick {
        "quick scale (--quick)"
    } else {
        "full scale"
    };
    let repeat = opts.repeat.max(1);
    let host_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let host_cgroup = host_cgroup
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
        .and_then(|l| l.splitn(3, ':').nth(2))
        .unwrap_or("?");
    let mut notes = vec![
        format!(
            "{scaled}: cpu {} s, threads {} s, memory-write {} s, memory-fill {}, fileio {} for {} s; {repeat} round(s), peers interleaved",
            scale.cpu_secs,
            scale.threads_secs,
            scale.memory_secs,
            size_arg(scale.fill_bytes),
            size_arg(scale.file_bytes),
            scale.fileio_secs
        ),
        format!(
            "image {}; containers without a network; the host's fileio runs in {}, on the filesystem of the containers' writable layers; fileio:volume is a bind mount of a directory beside it",
            opts.image,
            host_dir.display()
        ),
        format!("the host's runs are children of poc bench, in its (memory) cgroup {host_cgroup}; each container has a leaf of its own"),
        "ratio: the peer's median over the host's (above 1 is faster than the host)".into(),
    ];
    if against.contains(&Peer::Podman) {
        notes.push("podman mounts the writable layer of a --rm container with overlay's volatile option: fsync does nothing there, so its fileio on that layer is not comparable".into());
    }
    if against.contains(&Peer::Crun) && !bench.hierarchies.v1.is_empty() {
        notes.push("crun runs in a mount namespace of its own without the cgroup2 mount (crun 1.8 refuses hybrid hosts)".into());
    }
    notes
}

/// Refuses a fileio size the store's filesystem cannot hold (with a margin).
fn check_space(bench: &Bench, bytes: u64) -> Result<()> {
    let stat = nix::sys::statvfs::statvfs(&bench.work)
        .map_err(|e| fail(format!("statvfs {}: {e}", bench.work.display())))?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    let need = bytes + bytes / 10 + (512 << 20);
    if free < need {
        return Err(fail(format!(
            "fileio needs {} free in {} ({} free): use --file-size or --quick",
            size_arg(need.next_multiple_of(1 << 20)),
            bench.work.display(),
            size_arg(free / (1 << 20) * (1 << 20))
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: &str = "CPU speed:\n    events per second:  1234.56\n\nGeneral statistics:\n    total time:                          10.0010s\n    total number of events:              12345\n\nLatency (ms):\n         min:                                    0.21\n         avg:                                   51.80\n         max:                                  200.10\n         95th percentile:                       99.33\n         sum:                               639460.59\n\nThreads fairness:\n    events (avg/stddev):           123.4500/3.12\n";

    #[test]
    fn figures_of_sysbench_outputs() {
        let (v, extra) = parse("cpu", CPU).unwrap();
        assert_eq!(v, 1234.56);
        assert_eq!(extra["latency_avg_ms"], 51.8);
        assert_eq!(extra["latency_p95_ms"], 99.33);
        assert_eq!(extra["latency_max_ms"], 200.1);
        let (v, extra) = parse("threads", CPU).unwrap();
        assert_eq!(v, 12345.0);
        assert_eq!(extra["events_per_thread_stddev"], 3.12);
        let mem = "Total operations: 1024 (  512.00 per second)\n\n10240.00 MiB transferred (5120.50 MiB/sec)\n";
        assert_eq!(parse("memory-fill", mem).unwrap().0, 5120.5);
        let fileio = "File operations:\n    reads/s:                      123.45\n    writes/s:                     82.30\n    fsyncs/s:                     263.37\n\nThroughput:\n    read, MiB/s:                  1.93\n    written, MiB/s:               1.29\n";
        let (v, extra) = parse("fileio", fileio).unwrap();
        assert!((v - 469.12).abs() < 1e-9);
        assert_eq!(extra["written_mib_per_s"], 1.29);
        assert!(parse("fileio", "nothing").is_none());
    }

    #[test]
    fn quick_and_overrides() {
        let s = Scale::new(true, Some(1), Some(16 << 20));
        assert_eq!((s.cpu_secs, s.fileio_secs, s.file_bytes), (1, 1, 16 << 20));
        assert_eq!(s.fill_bytes, 16 << 20);
        assert_eq!(size_arg(10 << 30), "10G");
        assert_eq!(size_arg(16 << 20), "16M");
        let full = Scale::new(false, None, None);
        assert_eq!((full.cpu_secs, full.fileio_secs), (60, 300));
    }
}
