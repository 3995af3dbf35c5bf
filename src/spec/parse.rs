//! The flag parsers: each user value checked and turned into what a request holds, with one line
//! saying what was wrong. Reads only what the host has (online CPUs, volume paths); writes nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::Volume;
use crate::units::parse_size;

/// Smallest memory limit accepted, as Docker does: below this a shell cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// A memory limit: a size of at least [`MIN_MEMORY`].
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_MEMORY {
        return Err(format!("'{text}' is below the minimum memory limit of 6M"));
    }
    Ok(bytes)
}

/// `--cpus 1.5`: a fraction of the host's CPUs, from 0.01 up to the number online.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of CPUs (example: 1.5)"))?;
    let online = online_cpus().len() as f64;
    if !(cpus >= 0.01 && cpus <= online) {
        return Err(format!(
            "'{text}' is out of range: from 0.01 to {online:.2}, as there are {online} CPUs online"
        ));
    }
    Ok(cpus)
}

/// `--cpu 50000`: a CFS quota in microseconds per period (the kernel's minimum is 1000).
pub fn parse_cpu_quota(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1000, 1_000_000_000, "microseconds")
}

/// `--cpu-period 100000`: the CFS period in microseconds (the kernel accepts 1 ms to 1 s).
pub fn parse_cpu_period(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1000, 1_000_000, "microseconds")
}

/// `--pids 100`: the most processes the container may hold at once.
pub fn parse_pids(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1, 4_194_304, "processes")
}

/// `--cpu-shares 512`: relative CPU weight in cgroup v1 units (2 to 262144, default 1024).
pub fn parse_cpu_shares(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 2, 262_144, "shares")
}

/// `--cpu-weight 50`: relative CPU weight in cgroup v2 units (1 to 10000, default 100).
pub fn parse_cpu_weight(text: &str) -> Result<u64, String> {
    parse_bounded_u64(text, 1, 10_000, "(weight)")
}

/// `--nice 10`: the process's nice value.
pub fn parse_nice(text: &str) -> Result<i32, String> {
    let nice: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))?;
    if !(-20..=19).contains(&nice) {
        return Err(format!("'{text}' is out of range: from -20 to 19"));
    }
    Ok(nice)
}

fn parse_bounded_u64(text: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a positive whole number of {what}"))?;
    if !(min..=max).contains(&value) {
        return Err(format!(
            "'{text}' is out of range: from {min} to {max} {what}"
        ));
    }
    Ok(value)
}

/// Parses a cpu list like `0-2,4` into the set of CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<BTreeSet<u32>, String> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',') {
        let bad = || format!("'{text}' is not a CPU list (examples: 0, 0-1, 0,2)");
        let (low, high) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if low > high {
            return Err(bad());
        }
        cpus.extend(low..=high);
    }
    Ok(cpus)
}

/// `--cpuset 0-1`: a CPU list whose CPUs are all online.
pub fn parse_cpuset(text: &str) -> Result<String, String> {
    let wanted = parse_cpu_list(text)?;
    let online = online_cpus();
    if let Some(missing) = wanted.iter().find(|cpu| !online.contains(cpu)) {
        return Err(format!(
            "CPU {missing} is not online (online: {})",
            format_cpu_list(&online)
        ));
    }
    Ok(format_cpu_list(&wanted))
}

fn format_cpu_list(cpus: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The CPUs the kernel has online, from sysfs; falls back to the count the scheduler reports.
pub fn online_cpus() -> BTreeSet<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s).ok())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            (0..n).collect()
        })
}

/// `-e KEY=VALUE` (or `-e KEY`, which takes the value from poc's own environment as Docker does).
pub fn parse_env(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(text.to_string()),
        Some(_) => Err(format!("'{text}' has an empty variable name")),
        None if text.is_empty() => Err("an empty variable name".to_string()),
        None => {
            Ok(std::env::var(text).map_or_else(|_| text.to_string(), |v| format!("{text}={v}")))
        }
    }
}

/// `--hostname h`: a valid host name (RFC 1123 labels, at most 64 bytes as the kernel allows).
pub fn parse_hostname(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(format!("'{text}' is not a valid host name"));
    }
    Ok(text.to_string())
}

/// `-w /dir`: an absolute path inside the container.
pub fn parse_workdir(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("'{text}' must be an absolute path"));
    }
    Ok(PathBuf::from(text))
}

pub fn parse_volume(text: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        [_, _, mode] => return Err(format!("unknown mode '{mode}' in '{text}' (use ro or rw)")),
        _ => return Err(format!("'{text}' is not HOST:CONTAINER[:ro]")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("'{text}': both paths must be absolute"));
    }
    let container = container_path(container).map_err(|why| format!("'{text}': {why}"))?;
    let host = Path::new(host);
    if !host.exists() {
        return Err(format!(
            "'{text}': host path {} does not exist",
            host.display()
        ));
    }
    Ok(Volume {
        host: host.to_path_buf(),
        container,
        read_only,
    })
}

/// A path inside the container that a volume or tmpfs may cover: absolute, not `/`, and not under
/// /proc, /sys or /dev, which are the runtime's to mount (as runc refuses them).
pub fn container_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("{text} must be an absolute path"));
    }
    let path = normalize(text);
    if path == Path::new("/") {
        return Err("cannot mount over the container's root".into());
    }
    match ["/proc", "/sys", "/dev"]
        .iter()
        .find(|k| path.starts_with(k))
    {
        Some(kernel) => Err(format!(
            "{} is under {kernel}, which a volume may not cover",
            path.display()
        )),
        None => Ok(path),
    }
}

/// An absolute path with `.` and `..` worked out as the kernel would from `/` (symlinks aside).
fn normalize(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in Path::new(path).components() {
        match part {
            std::path::Component::Normal(name) => out.push(name),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_have_a_minimum_and_a_maximum() {
        assert!(parse_memory("1M").unwrap_err().contains("minimum"));
        assert_eq!(parse_memory("64M"), Ok(64 << 20));
        assert!(parse_memory("9000000t").unwrap_err().contains("too large"));
    }

    #[test]
    fn cpu_values_are_checked() {
        assert!(parse_cpus("0.5").is_ok());
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("1000000").unwrap_err().contains("online"));
        assert!(parse_cpus("abc").is_err());
        assert!(parse_cpu_quota("999").is_err());
        assert_eq!(parse_cpu_quota("50000"), Ok(50_000));
        assert!(parse_cpu_period("2000000").is_err());
        assert!(parse_pids("0").is_err());
        assert!(parse_nice("20").is_err());
        assert_eq!(parse_nice("-5"), Ok(-5));
    }

    #[test]
    fn cpu_lists_parse_and_normalise() {
        assert_eq!(
            parse_cpu_list("0-2,4").unwrap(),
            BTreeSet::from([0, 1, 2, 4])
        );
        assert_eq!(
            format_cpu_list(&BTreeSet::from([0, 1, 2, 4, 6, 7])),
            "0-2,4,6-7"
        );
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpuset("0").is_ok());
        assert!(parse_cpuset("4095").unwrap_err().contains("not online"));
    }

    #[test]
    fn names_hostnames_volumes_env() {
        assert!(parse_hostname("box.local").is_ok());
        assert!(parse_hostname("bad_host").is_err());
        assert!(parse_hostname("-x").is_err());
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.container, PathBuf::from("/data"));
        assert!(parse_volume("relative:/data").is_err());
        assert!(parse_volume("/tmp:/data:xx").is_err());
        assert!(parse_volume("/no/such/dir/poc:/data")
            .unwrap_err()
            .contains("does not exist"));
        for kernel in [
            "/proc",
            "/proc/sys",
            "/sys/fs/cgroup",
            "/dev",
            "/dev/shm",
            "/x/../proc",
        ] {
            let err = parse_volume(&format!("/tmp:{kernel}")).unwrap_err();
            assert!(err.contains("may not cover"), "{kernel}: {err}");
        }
        assert_eq!(
            parse_volume("/tmp:/data/./x/../y").unwrap().container,
            PathBuf::from("/data/y")
        );
        assert!(parse_volume("/tmp:/devices").is_ok());
        assert!(parse_env("=x").is_err());
        assert_eq!(parse_env("A=b=c"), Ok("A=b=c".into()));
        assert!(parse_workdir("rel").is_err());
    }
}
