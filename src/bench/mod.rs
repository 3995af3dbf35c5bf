//! `poc bench`: what a container costs, measured side by side in one run, against the host and the
//! runtimes people already use. Each suite runs its peers interleaved (A B C A B C ...) so that
//! the machine's drift hits them alike, and reports medians, spread and ratios (report.rs).
//!
//! poc is measured as a user runs it: this process starts the poc binary it was started from, with
//! a private state root (on a tmpfs, as /run is on real hosts), cgroup parent and bridge, and the
//! user's image store (images are built once). Everything the bench makes lives under one work
//! directory in the store (so the host's file I/O runs on the same filesystem as the containers'
//! writable layers) and one cgroup parent; `Bench::drop` removes both, also after Ctrl-C.
//! Owns: the bench's work directory, its cgroup parent and bridge, its peers' private daemons.

mod clients;
pub mod measure;
pub mod net;
pub mod peers;
mod plain;
pub mod report;
pub mod start;
pub mod sysbench;
pub mod update;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::cgroups::Hierarchies;
use crate::config::Paths;

pub use peers::Peer;
pub use report::Report;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, BenchError>;

pub fn fail(message: impl Into<String>) -> BenchError {
    BenchError::Failed(message.into())
}

/// What the user asked for, shared by the suites (each reads what concerns it).
#[derive(Debug, Clone)]
pub struct Options {
    /// Scaled-down sizes and times (about a minute for the sysbench suite).
    pub quick: bool,
    /// Repetitions of each sysbench test per peer.
    pub repeat: usize,
    /// Starts (or updates, or pings) per peer in the start, update and net suites.
    pub runs: usize,
    /// sysbench tests to run (all when empty).
    pub tests: Vec<String>,
    /// Seconds of each timed sysbench test (overrides the suite's and --quick's).
    pub time: Option<u64>,
    /// Total size of fileio's files (overrides the suite's and --quick's).
    pub file_size: Option<u64>,
    /// The image with sysbench (and iperf3, for the net suite).
    pub image: String,
}

/// Set by SIGINT, SIGTERM or SIGHUP: every suite stops at its next step and the bench cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The child being waited for, sent SIGTERM when the bench is interrupted (0: none).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, libc::SIGTERM) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        Err(BenchError::Interrupted)
    } else {
        Ok(())
    }
}

fn catch_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores atomics and calls kill.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// The bench's private world: work directory, state root, cgroup parent, bridge; removed on drop.
pub struct Bench {
    pub opts: Options,
    pub paths: Paths,
    /// The poc binary this process was started from.
    pub poc: PathBuf,
    pub work: PathBuf,
    /// The state root of the bench's poc containers (a tmpfs mounted on work/state).
    pub state_root: PathBuf,
    pub cgroup_parent: String,
    pub bridge: String,
    pub subnet: ipnetwork::Ipv4Network,
    pub hierarchies: Hierarchies,
    state_mounted: bool,
    /// The start-time floor, once built (start.rs).
    pub floor: Option<PathBuf>,
    /// Directories outside the work directory that peers' daemons create and leave (they were
    /// absent when the bench started): removed at the end if empty.
    pub foreign_dirs: Vec<(PathBuf, bool)>,
    /// What suites made outside the work directory and cgroup parent (net.rs: a network namespace
    /// and a veth pair), undone first at the end, last registered first.
    cleanups: Vec<Box<dyn FnOnce()>>,
}

impl Bench {
    pub fn new(paths: &Paths, opts: Options) -> Result<Self> {
        catch_signals();
        let poc = std::env::current_exe().map_err(|e| fail(format!("poc's own path: {e}")))?;
        let pid = std::process::id();
        let hierarchies = Hierarchies::detect().map_err(|e| fail(e.to_string()))?;
        let work = paths.store_root.join(format!("bench-{pid}"));
        std::fs::create_dir_all(&paths.store_root)
            .map_err(|e| fail(format!("create {}: {e}", paths.store_root.display())))?;
        std::fs::create_dir(&work).map_err(|e| fail(format!("create {}: {e}", work.display())))?;
        let third = 150 + pid % 50;
        let mut bench = Bench {
            opts,
            paths: paths.clone(),
            poc,
            state_root: work.join("state"),
            work,
            // Beside the user's parent (default /poc-bench-PID), not under it: poc removes an
            // empty parent of its own when its last container goes.
            cgroup_parent: format!("{}-bench-{pid}", parent_base(&paths.cgroup_parent)),
            bridge: format!("pb{}", pid % 100_000),
            subnet: format!("10.{third}.0.0/24")
                .parse()
                .expect("a valid subnet"),
            hierarchies,
            state_mounted: false,
            floor: None,
            foreign_dirs: Vec::new(),
            cleanups: Vec::new(),
        };
        bench.mount_state()?;
        Ok(bench)
    }

    /// The state root on a tmpfs, as /run/poc is on a typical host (on a disk, each state file's
    /// atomic rename alone costs a few tenths of a millisecond).
    fn mount_state(&mut self) -> Result<()> {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir(&self.state_root)
            .map_err(|e| fail(format!("create {}: {e}", self.state_root.display())))?;
        mount(
            Some("poc-bench-state"),
            &self.state_root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=64m,mode=0700"),
        )
        .map_err(|e| {
            fail(format!(
                "mount a tmpfs on {}: {e}",
                self.state_root.display()
            ))
        })?;
        self.state_mounted = true;
        Ok(())
    }

    /// A directory of the work directory, created.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// `poc ARGS` under the bench's state root, store, cgroup parent and bridge.
    pub fn poc<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Command {
        let mut cmd = Command::new(&self.poc);
        cmd.args(args)
            .env("POC_STATE_ROOT", &self.state_root)
            .env("POC_STORE", &self.paths.store_root)
            .env("POC_CGROUP_PARENT", &self.cgroup_parent)
            .env("POC_BRIDGE", &self.bridge)
            .env("POC_SUBNET", self.subnet.to_string());
        cmd
    }

    /// `name.c` compiled (static, -O2) into the work directory; Err(why) without a C compiler.
    pub fn compile_c(&self, name: &str, source: &str) -> std::result::Result<PathBuf, String> {
        let cc = ["cc", "gcc"]
            .into_iter()
            .find(|c| peers::find_program(c).is_some())
            .ok_or("no C compiler (gcc) to build it")?;
        let dir = self.dir(name).map_err(|e| e.to_string())?;
        let file = dir.join(format!("{name}.c"));
        std::fs::write(&file, source).map_err(|e| e.to_string())?;
        let binary = dir.join(name);
        let out = Command::new(cc)
            .args(["-O2", "-static", "-o"])
            .arg(&binary)
            .arg(&file)
            .output()
            .map_err(|e| format!("{cc}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{cc} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
        Ok(binary)
    }

    /// Ensures the image `name` exists, building it when missing (`poc init`, with its progress).
    pub fn ensure_image(&self, name: &str, init_args: &[&str]) -> Result<PathBuf> {
        let rootfs = self.paths.images_dir().join(name).join("rootfs");
        if rootfs.is_dir() {
            return Ok(rootfs);
        }
        eprintln!(
            "bench: building the image {name}: poc init {}",
            init_args.join(" ")
        );
        let status = measure::status(self.poc(["init"]).args(init_args))?;
        if !status.success() || !rootfs.is_dir() {
            return Err(fail(format!(
                "could not build the image {name} (poc init {})",
                init_args.join(" ")
            )));
        }
        Ok(rootfs)
    }

    /// Remembers `dir` for removal at the end if it does not exist now: its empty directories
    /// only, or (`whole`) everything in it (a cache a peer made there).
    pub fn note_foreign_dir(&mut self, dir: &str, whole: bool) {
        let dir = PathBuf::from(dir);
        if !dir.exists() && !self.foreign_dirs.iter().any(|(d, _)| *d == dir) {
            self.foreign_dirs.push((dir, whole));
        }
    }

    /// Runs `undo` when the bench ends (also on an error or Ctrl-C).
    pub fn on_cleanup(&mut self, undo: impl FnOnce() + 'static) {
        self.cleanups.push(Box::new(undo));
    }

    fn cleanup(&mut self) {
        while let Some(undo) = self.cleanups.pop() {
            undo();
        }
        // Containers of the bench's state root, then its network.
        let containers = self.state_root.join("containers");
        let ids: Vec<String> = std::fs::read_dir(&containers)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = measure::quiet(self.poc(["rm", "-f"]).args(&ids));
        }
        if self.state_root.join("networks").join(&self.bridge).exists() {
            let _ = measure::quiet(&mut self.poc(["network", "rm"]));
        }
        unmount_under(&self.work);
        if self.state_mounted {
            let _ = nix::mount::umount2(&self.state_root, nix::mount::MntFlags::MNT_DETACH);
            self.state_mounted = false;
        }
        remove_cgroup_tree(&self.hierarchies, &self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.work);
        for (dir, whole) in self.foreign_dirs.iter().rev() {
            if *whole {
                let _ = std::fs::remove_dir_all(dir);
            } else {
                remove_dirs_depth_first(dir);
            }
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The note for peers asked for that a suite does not measure (None when there are none).
pub fn unmeasured(against: &[Peer], why: &str) -> Option<String> {
    let others: Vec<&str> = against
        .iter()
        .filter(|p| !matches!(p, Peer::Poc | Peer::Docker | Peer::Host))
        .map(|p| p.name())
        .collect();
    (!others.is_empty())
        .then(|| format!("not measured in this suite: {} ({why})", others.join(", ")))
}

/// The user's cgroup parent without its trailing slash (/poc when it is the root).
fn parent_base(parent: &str) -> &str {
    match parent.trim_end_matches('/') {
        "" => "/poc",
        base => base,
    }
}

/// Unmounts every mount at or under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    points.sort();
    points.dedup();
    for point in points.iter().rev() {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes the cgroup `path` (absolute, e.g. /poc-bench-1) and every cgroup under it, in every
/// hierarchy. Only empty cgroups can go: processes still in one keep it (and say so).
pub fn remove_cgroup_tree(hierarchies: &Hierarchies, path: &str) {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return;
    }
    let mut roots: Vec<PathBuf> = hierarchies.v1.iter().map(|(p, _)| p.clone()).collect();
    roots.extend(hierarchies.unified.clone());
    for root in roots {
        remove_dirs_depth_first(&root.join(relative));
    }
}

fn remove_dirs_depth_first(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs_depth_first(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// One-line description of the machine, for the report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub kernel: String,
    /// "v2", "hybrid" (v1 controllers and a cgroup2 mount) or "v1".
    pub cgroup: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub os: String,
}

impl Machine {
    pub fn detect(hierarchies: &Hierarchies) -> Machine {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let cgroup = match (hierarchies.v1.is_empty(), hierarchies.unified.is_some()) {
            (true, _) => "v2",
            (false, true) => "hybrid",
            (false, false) => "v1",
        }
        .to_string();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        Machine {
            kernel,
            cgroup,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            os,
        }
    }
}

/// A suite `poc bench` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Sysbench,
    Start,
    Update,
    Net,
}

impl Suite {
    pub const ALL: [Suite; 4] = [Suite::Sysbench, Suite::Start, Suite::Update, Suite::Net];

    /// The peers measured when `--against` is not given.
    pub fn default_peers(self) -> Vec<Peer> {
        match self {
            Suite::Sysbench => vec![Peer::Host, Peer::Poc],
            Suite::Start => vec![
                Peer::Poc,
                Peer::Runc,
                Peer::Crun,
                Peer::Docker,
                Peer::Podman,
            ],
            Suite::Update | Suite::Net => vec![Peer::Poc, Peer::Docker],
        }
    }

    /// Runs of the start, update and net suites when `--runs` is not given.
    pub fn default_runs(self, quick: bool) -> usize {
        match (self, quick) {
            (Suite::Sysbench, _) => 1,
            (Suite::Start, false) => 200,
            (Suite::Start, true) => 40,
            (Suite::Update, false) => 300,
            (Suite::Update, true) => 60,
            (Suite::Net, false) => 100,
            (Suite::Net, true) => 20,
        }
    }
}

/// Runs `suites` with `against` (or each suite's default peers) and reports them all.
pub fn run(
    paths: &Paths,
    opts: Options,
    suites: &[Suite],
    against: Option<&[Peer]>,
    runs: Option<usize>,
) -> Result<Report> {
    let started_ns = crate::units::now_ns();
    let clock = std::time::Instant::now();
    let mut bench = Bench::new(paths, opts)?;
    let mut peers = peers::Peers::new();
    let mut infos: Vec<report::PeerInfo> = Vec::new();
    let mut reports = Vec::new();
    let outcome = (|| -> Result<()> {
        for &suite in suites {
            let wanted = against.map_or_else(|| suite.default_peers(), <[Peer]>::to_vec);
            let mut usable = Vec::new();
            for peer in wanted {
                let missing = peer.missing();
                if !infos.iter().any(|i| i.name == peer.name()) {
                    infos.push(report::PeerInfo {
                        name: peer.name().into(),
                        version: peers::Peers::version(&bench, peer),
                        skipped: missing.map(String::from),
                    });
                }
                match missing {
                    Some(why) => eprintln!("bench: {} not measured: {why}", peer.name()),
                    None => usable.push(peer),
                }
            }
            bench.opts.runs = runs.unwrap_or_else(|| suite.default_runs(bench.opts.quick));
            let report = match suite {
                Suite::Sysbench => sysbench::run(&mut bench, &mut peers, &usable)?,
                Suite::Start => start::run(&mut bench, &mut peers, &usable)?,
                Suite::Update => update::run(&mut bench, &mut peers, &usable)?,
                Suite::Net => net::run(&mut bench, &mut peers, &usable)?,
            };
            reports.push(report);
        }
        Ok(())
    })();
    peers.stop(&bench);
    let machine = Machine::detect(&bench.hierarchies);
    drop(bench);
    outcome?;
    Ok(Report {
        schema: report::SCHEMA.into(),
        poc_version: env!("CARGO_PKG_VERSION").into(),
        started: crate::units::rfc3339(started_ns),
        seconds: clock.elapsed().as_secs_f64(),
        machine,
        peers: infos,
        suites: reports,
    })
}
