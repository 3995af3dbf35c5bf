//! A container's resource use from its cgroup's own files, v1 and v2 alike, in one shape.

use std::path::Path;

use super::fs;

/// Counters and gauges read at one instant.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    /// CPU time used so far, nanoseconds.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// None when unlimited.
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// Periods in which the CPU quota ran out, and the time spent throttled (ns).
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    /// Page faults so far (minor and major), from memory.stat.
    pub page_faults: u64,
    /// Pressure stall information, "some" share over the last 10 s in percent, where the kernel
    /// keeps it (cgroup2 files; on hybrid hosts from the unified leaf).
    pub psi: Option<Psi>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Psi {
    pub cpu: f64,
    pub memory: f64,
    pub io: f64,
}

/// `some avg10=1.23 ...` from the three pressure files of a cgroup2 directory.
fn psi(dir: &Path) -> Option<Psi> {
    let some = |file: &str| -> Option<f64> {
        let text = fs::read(dir, file).ok()?;
        let line = text.lines().find(|l| l.starts_with("some "))?;
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("avg10="))?
            .parse()
            .ok()
    };
    Some(Psi {
        cpu: some("cpu.pressure")?,
        memory: some("memory.pressure").unwrap_or(0.0),
        io: some("io.pressure").unwrap_or(0.0),
    })
}

/// `key value` lines (cpu.stat, memory.stat...).
fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn number(dir: &Path, file: &str) -> u64 {
    fs::read(dir, file)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A limit, or None for "max" and v1's "no limit" (close to i64::MAX, page aligned).
fn limit(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|v| *v < (1 << 62))
}

/// v1: one directory per controller, plus the unified leaf of a hybrid host for pressure.
pub fn v1(dir_of: impl Fn(&str) -> Option<std::path::PathBuf>, unified: Option<&Path>) -> Sample {
    let mut s = Sample {
        psi: unified.and_then(psi),
        ..Sample::default()
    };
    if let Some(d) = dir_of("cpuacct") {
        s.cpu_ns = number(&d, "cpuacct.usage");
    }
    if let Some(d) = dir_of("cpu") {
        let stat = fs::read(&d, "cpu.stat").unwrap_or_default();
        s.throttled_periods = keyed(&stat, "nr_throttled");
        s.throttled_ns = keyed(&stat, "throttled_time");
    }
    if let Some(d) = dir_of("memory") {
        s.page_faults = keyed(&fs::read(&d, "memory.stat").unwrap_or_default(), "pgfault");
        s.memory_bytes = number(&d, "memory.usage_in_bytes");
        s.memory_limit = fs::read(&d, "memory.limit_in_bytes")
            .ok()
            .as_deref()
            .and_then(limit);
    }
    if let Some(d) = dir_of("pids") {
        s.pids = number(&d, "pids.current");
    }
    if let Some(d) = dir_of("blkio") {
        let io = fs::read(&d, "blkio.throttle.io_service_bytes").unwrap_or_default();
        for line in io.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [_, "Read", v] => s.io_read_bytes += v.parse::<u64>().unwrap_or(0),
                [_, "Write", v] => s.io_write_bytes += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    s
}

/// v2: everything in the leaf.
pub fn v2(leaf: &Path) -> Sample {
    let cpu = fs::read(leaf, "cpu.stat").unwrap_or_default();
    let mut s = Sample {
        cpu_ns: keyed(&cpu, "usage_usec") * 1000,
        throttled_periods: keyed(&cpu, "nr_throttled"),
        throttled_ns: keyed(&cpu, "throttled_usec") * 1000,
        memory_bytes: number(leaf, "memory.current"),
        memory_limit: fs::read(leaf, "memory.max").ok().as_deref().and_then(limit),
        pids: number(leaf, "pids.current"),
        page_faults: keyed(
            &fs::read(leaf, "memory.stat").unwrap_or_default(),
            "pgfault",
        ),
        psi: psi(leaf),
        ..Sample::default()
    };
    for line in fs::read(leaf, "io.stat").unwrap_or_default().lines() {
        for field in line.split_whitespace() {
            if let Some(v) = field.strip_prefix("rbytes=") {
                s.io_read_bytes += v.parse::<u64>().unwrap_or(0);
            } else if let Some(v) = field.strip_prefix("wbytes=") {
                s.io_write_bytes += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_files_are_read_into_one_sample() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("cpu.stat"),
            "usage_usec 2500\nuser_usec 2000\nnr_periods 9\nnr_throttled 4\nthrottled_usec 700\n",
        )
        .unwrap();
        std::fs::write(d.join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(d.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            d.join("memory.stat"),
            "anon 4096\npgfault 77\npgmajfault 1\n",
        )
        .unwrap();
        for (file, avg) in [("cpu", "12.50"), ("memory", "0.00"), ("io", "1.25")] {
            std::fs::write(
                d.join(format!("{file}.pressure")),
                format!("some avg10={avg} avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            )
            .unwrap();
        }
        std::fs::write(
            d.join("io.stat"),
            "8:0 rbytes=100 wbytes=20 rios=1\n8:16 rbytes=1 wbytes=2\n",
        )
        .unwrap();
        let s = v2(d);
        assert_eq!(
            s,
            Sample {
                cpu_ns: 2_500_000,
                memory_bytes: 4096,
                memory_limit: None,
                pids: 3,
                io_read_bytes: 101,
                io_write_bytes: 22,
                throttled_periods: 4,
                throttled_ns: 700_000,
                page_faults: 77,
                psi: Some(Psi {
                    cpu: 12.5,
                    memory: 0.0,
                    io: 1.25
                }),
            }
        );
    }

    #[test]
    fn v1_unlimited_memory_reads_as_none() {
        assert_eq!(limit("9223372036854771712"), None);
        assert_eq!(limit("67108864"), Some(67108864));
        assert_eq!(
            keyed(
                "nr_periods 5\nnr_throttled 2\nthrottled_time 9\n",
                "nr_throttled"
            ),
            2
        );
    }
}
