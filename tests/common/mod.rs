//! Shared fixture for the integration tests: each `Env` has its own image store, state root and
//! cgroup parent, so tests run in parallel and never touch real containers; dropping it removes all.
#![allow(dead_code)]

pub mod net;
pub mod oci;
pub mod pty;

/// Docker's default capabilities, as dockerd and podman put them in config.json.
pub const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static NAMED_SUBNETS: AtomicUsize = AtomicUsize::new(0);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub cgroup_parent: String,
    /// This Env's own bridge and subnet, removed when it is dropped.
    pub bridge: String,
    pub subnet: String,
    /// The bridge's IPv6 subnet, for an Env made by `with_ipv6`.
    pub subnet6: Option<String>,
}

impl Env {
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the integration tests run containers: run them as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("poc-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let cgroup_parent = format!("/poc-test-{pid}-{n}");
        let bridge = format!("pt{}n{n}", pid % 100_000);
        let subnet = format!("10.{}.{}.0/24", 100 + pid % 100, n % 256);
        Env {
            dir,
            cgroup_parent,
            bridge,
            subnet,
            subnet6: None,
        }
    }

    /// An Env with the busybox image whose bridge has IPv6 too: fd77:1:A:B::/64 for the IPv4
    /// subnet 10.A.B.0/24, so as unique as that one.
    pub fn with_ipv6() -> Self {
        let mut env = Env::with_busybox();
        let octets: Vec<&str> = env.subnet.split(['.', '/']).collect();
        env.subnet6 = Some(format!("fd77:1:{}:{}::/64", octets[1], octets[2]));
        env
    }

    /// An Env with the busybox image installed.
    pub fn with_busybox() -> Self {
        let env = Env::new();
        let out = env.poc(&["init", "busybox"]);
        assert!(out.status.success(), "poc init busybox: {}", stderr(&out));
        env
    }

    /// A /24 for a named network of this process's own (`10.{200+pid%50}.{k}.0/24`), apart from
    /// every Env's default subnet and from the other tests' named networks.
    pub fn named_subnet(&self) -> String {
        let k = NAMED_SUBNETS.fetch_add(1, Ordering::SeqCst);
        assert!(k < 256, "more named networks than /24s set aside");
        format!("10.{}.{k}.0/24", 200 + std::process::id() % 50)
    }

    /// The named networks' records in this Env's store: (name, bridge) each.
    pub fn network_records(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.store().join("networks")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (field("name"), field("bridge"))
            })
            .collect()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn state_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_poc"));
        cmd.args(args)
            .env("POC_STORE", self.store())
            .env("POC_STATE_ROOT", self.state_root())
            .env("POC_CGROUP_PARENT", &self.cgroup_parent)
            .env("POC_BRIDGE", &self.bridge)
            .env("POC_SUBNET", &self.subnet)
            .stdin(Stdio::null());
        if let Some(subnet6) = &self.subnet6 {
            cmd.env("POC_SUBNET6", subnet6);
        }
        cmd
    }

    pub fn poc(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("poc runs")
    }

    /// `poc run -d ARGS...`: asserts success and a 64-hex id on stdout, and returns the id.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        let out = self.poc(&full);
        assert!(out.status.success(), "{}", stderr(&out));
        let id = stdout(&out).trim().to_string();
        assert_eq!(id.len(), 64, "{id:?}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        id
    }

    /// The state files of the containers that exist now.
    pub fn container_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_root().join("containers")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Waits until the container's log holds `needle` (its output so far is in the panic message).
    pub fn wait_for_log(&self, container: &str, needle: &str) {
        // Generous: the emulated v2 guest takes tens of seconds where the host takes one (a 40 MB
        // string built by busybox's shell), more when the machine is busy.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let logs = stdout(&self.poc(&["logs", container]));
            if logs.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} never appeared in the log of {container}: {logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until exactly one container is running and returns its state as JSON.
    pub fn wait_running(&self) -> serde_json::Value {
        // Generous, as wait_for_log: a start in the emulated guest on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            for id in self.container_ids() {
                let path = self
                    .state_root()
                    .join("containers")
                    .join(&id)
                    .join("state.json");
                if let Ok(text) = std::fs::read_to_string(path) {
                    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if state["status"] == "running" {
                        return state;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no container reached running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The leaf directories of this Env's containers, in every cgroup hierarchy.
    pub fn cgroup_leaves(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .iter()
            .map(|m| m.join(self.cgroup_parent.trim_start_matches('/')))
            .filter_map(|parent| std::fs::read_dir(parent).ok())
            .flat_map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
            })
            .collect()
    }

    /// The file holding container `id`'s hard memory limit, as the host sees it.
    pub fn memory_limit_file(&self, id: &str) -> PathBuf {
        let file = if is_cgroup_v1() {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        hierarchy_of("memory")
            .join(self.cgroup_parent.trim_start_matches('/'))
            .join(id)
            .join(file)
    }

    /// Nothing of a container may remain: no mount, cgroup leaf, state or writable layer.
    pub fn assert_clean(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&dir)).collect();
        assert!(leaked.is_empty(), "mounts left: {leaked:?}");
        assert_eq!(self.cgroup_leaves(), Vec::<PathBuf>::new(), "cgroups left");
        assert_eq!(self.container_ids(), Vec::<String>::new(), "state left");
        let names = self.state_root().join("names");
        let names_left: Vec<_> = std::fs::read_dir(&names)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(names_left.is_empty(), "names left: {names_left:?}");
        // A container's veth pair goes with its network namespace, which the kernel tears down in
        // the background after the init exits: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let on_bridge: Vec<_> =
                std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge))
                    .map(|d| d.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default();
            if on_bridge.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "veths left on {}: {on_bridge:?}",
                self.bridge
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let networks = self.state_root().join("networks");
        for dir in [
            networks.join(&self.bridge).join("addresses"),
            networks.join(HOST_PORTS),
        ] {
            let kind = dir.display();
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{kind} leases left: {left:?}");
        }
        // Named networks: each test removes what it created, bridge, tables, leases and record.
        let records = self.network_records();
        assert!(records.is_empty(), "named networks left: {records:?}");
        let lease_dirs: Vec<_> = std::fs::read_dir(self.state_root().join("networks"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            lease_dirs
                .iter()
                .all(|d| *d == *self.bridge || *d == HOST_PORTS),
            "networks' lease directories left: {lease_dirs:?}"
        );
        let layers = self.store().join("containers");
        let layers_left: Vec<_> = std::fs::read_dir(&layers)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(layers_left.is_empty(), "layers left: {layers_left:?}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Remove what a failed test may have left, then the parent: leaves first, killing stragglers.
        for leaf in self.cgroup_leaves() {
            for _ in 0..100 {
                if let Ok(procs) = std::fs::read_to_string(leaf.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                if std::fs::remove_dir(&leaf).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for mount in cgroup_mounts() {
            let _ = std::fs::remove_dir(mount.join(self.cgroup_parent.trim_start_matches('/')));
        }
        // Named networks a failed test left, then the default bridge and poc's tables for it.
        for (name, _) in self.network_records() {
            let _ = self.command(&["network", "rm", &name]).output();
        }
        if std::path::Path::new("/sys/class/net")
            .join(&self.bridge)
            .exists()
            || self.state_root().join("networks").exists()
        {
            let out = self.command(&["network", "rm"]).output();
            if let Ok(out) = out {
                if !out.status.success() {
                    eprintln!("poc network rm: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
    }
}

/// The directory of the static programs built from tests/attack/*.c, which tests mount into
/// containers (`-v DIR:/attack:ro`). Built here when a compiler is present; the v2 guest has none
/// and uses what scripts/vm-test.sh built before it booted.
pub fn attack_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("attack");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attack/build.sh");
            if Command::new("cc").arg("--version").output().is_ok() {
                let status = Command::new(script)
                    .arg(&out)
                    .status()
                    .expect("build.sh runs");
                assert!(status.success(), "building tests/attack failed");
            }
            assert!(
                out.join("attack").exists(),
                "{} has no attack programs",
                out.display()
            );
            out
        })
        .clone()
}

/// Mount points of every cgroup hierarchy on this host.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let fields: Vec<&str> = left.split(' ').collect();
            (matches!(fstype, "cgroup" | "cgroup2") && fields.get(3) == Some(&"/"))
                .then(|| PathBuf::from(fields[4]))
        })
        .collect()
}

/// True on hosts with cgroup v1 controllers (legacy or hybrid).
pub fn is_cgroup_v1() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - cgroup cgroup ") && l.contains("memory"))
}

/// The directory of the hierarchy holding `controller` (v1), or the unified root (v2).
pub fn hierarchy_of(controller: &str) -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if is_cgroup_v1() {
            if right[0] == "cgroup" && right[2].split(',').any(|o| o == controller) {
                return PathBuf::from(fields[4]);
            }
        } else if right[0] == "cgroup2" {
            return PathBuf::from(fields[4]);
        }
    }
    panic!("no cgroup hierarchy for {controller}");
}

/// A loopback port nothing listens on: bound, learned, closed.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a poc error: exit status `code` and exactly one line on stderr containing `needle`.
pub fn assert_error(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

pub fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A long-running poc command (events, trace) whose stdout lines are read as they come.
pub struct Lines {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    /// Starts `cmd` with stdout piped; with `ready`, waits until its stderr says that.
    pub fn start(mut cmd: Command, ready: Option<&str>) -> Self {
        use std::io::BufRead;
        cmd.stdout(Stdio::piped());
        if ready.is_some() {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("poc starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        if let Some(needle) = ready {
            let err = child.stderr.take().unwrap();
            let mut reader = std::io::BufReader::new(err);
            let mut said = String::new();
            loop {
                let mut line = String::new();
                let n = reader.read_line(&mut line).unwrap_or(0);
                said.push_str(&line);
                assert!(n > 0, "{needle:?} never said; stderr: {said}");
                if line.contains(needle) {
                    break;
                }
            }
            // Keep draining stderr so the command never blocks on it.
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut sink);
            });
        }
        Lines {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to `secs`) for a line for which `found` holds, and returns it.
    pub fn wait_for(&mut self, secs: u64, what: &str, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self.seen.iter().find(|l| found(l)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {what} within {secs} s; seen: {:#?}", self.seen),
            }
        }
    }

    /// Every line until the command exits.
    pub fn rest(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(60)) {
            self.seen.push(l);
        }
        self.seen.clone()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where poc leases host ports, beside the networks' directories (src/network/ipam.rs).
pub const HOST_PORTS: &str = "published-host-ports";

pub const IPV6_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Held by each test that sets up a network with IPv6 (poc switches IPv6 forwarding on and never
/// off) while it runs: the first records the value found, the last puts it back (tests of one file
/// run in parallel).
pub struct Ipv6ForwardingRestored;

/// How many tests hold the guard, and the value found before the first.
static FORWARDING_USERS: std::sync::Mutex<(u32, Option<String>)> = std::sync::Mutex::new((0, None));

impl Ipv6ForwardingRestored {
    pub fn hold() -> Self {
        let mut users = FORWARDING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 {
            users.1 = Some(read_trimmed(std::path::Path::new(IPV6_FORWARDING)));
        }
        users.0 += 1;
        Ipv6ForwardingRestored
    }
}

impl Drop for Ipv6ForwardingRestored {
    fn drop(&mut self) {
        let mut users = FORWARDING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 {
            if let Some(previous) = users.1.take() {
                let _ = std::fs::write(IPV6_FORWARDING, previous);
            }
        }
    }
}

/// Signals a caller can hand poc ignored (exec keeps SIG_IGN: a shell's `&` ignores SIGINT and
/// SIGQUIT, nohup SIGHUP), a real-time one among them, and SIGCHLD.
pub const HANDED_DOWN_IGNORED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGUSR1,
    40,
    libc::SIGCHLD,
];

/// `cmd` starts with `signals` ignored.
pub fn ignoring<'a>(cmd: &'a mut Command, signals: &'static [libc::c_int]) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) calls between fork and exec; SIG_IGN is kept across exec.
    unsafe {
        cmd.pre_exec(move || {
            for &s in signals {
                if libc::signal(s, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// The SigIgn mask in a /proc/PID/status text.
pub fn ignored_mask(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| panic!("no SigIgn in {status}"))
}
