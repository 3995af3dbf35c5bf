//! Real OCI clients (podman, containerd's ctr, dockerd) running containers through the runtime under
//! test: each fixture has private roots, sockets and cgroup parent, builds its busybox image itself,
//! starts its daemons as children and stops them by PID. Touches nothing outside what it made.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{cgroup_mounts, hierarchy_of, is_cgroup_v1};

pub mod containerd;
pub mod docker;
pub mod image;
pub mod podman;

/// The name of the busybox image every client imports (see image.rs).
pub const IMAGE: &str = "localhost/poc-busybox:test";

/// How long one client command may take before the test gives up on it (and kills it).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The runtime the clients are given: `POC_OCI_RUNTIME` (an absolute path, e.g. /usr/sbin/runc),
/// else the poc binary under test.
pub fn runtime_under_test() -> PathBuf {
    match std::env::var_os("POC_OCI_RUNTIME") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(
                path.is_absolute() && path.is_file(),
                "POC_OCI_RUNTIME={} is not an absolute path to a runtime binary",
                path.display()
            );
            path
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_poc")),
    }
}

/// True when `POC_SKIP_OCI_CLIENTS` (set to the reason) asks to skip the client tests, as in the
/// cgroup v2 guest, which has no podman, containerd or dockerd. The line goes to the real stderr,
/// past the test harness's capture, so that a skip shows in the run's output.
pub fn skipped() -> bool {
    let Some(reason) = std::env::var_os("POC_SKIP_OCI_CLIENTS") else {
        return false;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("an OCI client test")
        .to_string();
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped (POC_SKIP_OCI_CLIENTS={})",
        reason.to_string_lossy()
    );
    true
}

/// Fails the test, naming the Debian package, when a program a client needs is not installed.
pub fn require(program: &str, package: &str) {
    assert!(
        Path::new(program).is_file(),
        "{program} is missing: install the Debian package {package} (apt-get install {package}), \
         or set POC_SKIP_OCI_CLIENTS=REASON to skip the OCI client tests"
    );
}

/// Runs `cmd` to completion with `input` on its stdin, killing it (by its PID, before it is
/// reaped) if it takes longer than two minutes: a runtime that hangs fails the test, not the run.
pub fn output_within(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "{what} took more than {COMMAND_TIMEOUT:?}; stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Asserts a zero exit status and returns stdout.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Private directories and a cgroup parent for one client test. Dropping it kills whatever is left
/// in its cgroups, removes them, unmounts what is mounted under its directory and removes that.
pub struct OciEnv {
    dir: Option<tempfile::TempDir>,
    pub cgroup_parent: String,
    /// What the clients are told the runtime is: the runtime under test, or a wrapper that logs
    /// each call's arguments to `POC_OCI_ARGV_LOG` and then executes it.
    pub runtime: PathBuf,
}

impl OciEnv {
    /// The environment poc reads its defaults from, for the clients to pass on to the runtime:
    /// a client that gives no `--root` (podman) and poc's seccomp cache then stay in this test's
    /// directory, not in /run/poc and /var/lib/poc. (runc ignores them.)
    pub fn runtime_vars(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("POC_STATE_ROOT", self.path("poc-state")),
            ("POC_STORE", self.path("poc-store")),
        ]
    }

    /// A script that sets `runtime_vars` and executes the runtime, for a client that passes the
    /// runtime neither flags nor its environment.
    pub fn wrapper_with_runtime_vars(&self) -> PathBuf {
        let wrapper = self.path("runtime-with-vars");
        let exports: String = self
            .runtime_vars()
            .iter()
            .map(|(k, v)| format!("export {k}='{}'\n", v.display()))
            .collect();
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n{exports}exec '{}' \"$@\"\n",
                self.runtime.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        wrapper
    }

    /// An environment whose clients are given `runtime` (an absolute path).
    pub fn new(client: &str, runtime: &Path) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the OCI client tests run containers: run them as root"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("poc-oci-{client}-"))
            .tempdir_in("/var/tmp")
            .unwrap();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup_parent = format!("/poc-oci-{}-{n}", std::process::id());
        let runtime = match std::env::var_os("POC_OCI_ARGV_LOG") {
            Some(log) if !log.is_empty() => {
                argv_logging_wrapper(dir.path(), runtime, Path::new(&log))
            }
            _ => runtime.to_path_buf(),
        };
        OciEnv {
            dir: Some(dir),
            cgroup_parent,
            runtime,
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.as_ref().unwrap().path().join(relative)
    }

    /// Every cgroup directory under the parent, in every hierarchy, deepest first.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for mount in cgroup_mounts() {
            let parent = mount.join(self.cgroup_parent.trim_start_matches('/'));
            collect_dirs(&parent, &mut found);
        }
        found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        found
    }

    /// The processes in any cgroup under the parent.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .cgroups()
            .iter()
            .filter_map(|cg| std::fs::read_to_string(cg.join("cgroup.procs")).ok())
            .flat_map(|procs| {
                procs
                    .lines()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The mount points under this environment's directory.
    pub fn mounts(&self) -> Vec<String> {
        let dir = format!(
            "{}/",
            self.path("").display().to_string().trim_end_matches('/')
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(String::from)
            .collect()
    }

    /// Processes other than `daemons` whose command line names this environment's directory: a
    /// shim, conmon or runtime process left behind.
    pub fn stray_processes(&self, daemons: &[i32]) -> Vec<String> {
        let dir = self.path("").display().to_string();
        let dir = dir.trim_end_matches('/');
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if daemons.contains(&pid) || pid == std::process::id() as i32 {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(dir) {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }

    /// Nothing of the containers may remain: no cgroup under the parent (but those named in
    /// `clients_own`, such as podman's `conmon`, when no process is left in them), no process in
    /// them, no mount under the private directory (but the client's own `mounts_kept`), and no
    /// process naming the directory (but the `daemons`).
    pub fn assert_clean(&self, clients_own: &[&str], mounts_kept: &[PathBuf], daemons: &[i32]) {
        // conmon and the shims exit just after the container is removed: give them a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.cgroup_pids();
            let strays = self.stray_processes(daemons);
            if pids.is_empty() && strays.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left: in the cgroups {pids:?}, naming the test's directory {strays:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let parents: Vec<PathBuf> = cgroup_mounts()
            .iter()
            .map(|m| m.join(self.cgroup_parent.trim_start_matches('/')))
            .collect();
        let clients = |cg: &Path| {
            cg.parent().is_some_and(|p| parents.iter().any(|q| q == p))
                && cg
                    .file_name()
                    .is_some_and(|n| clients_own.iter().any(|c| n == *c))
        };
        let cgroups: Vec<PathBuf> = self
            .cgroups()
            .into_iter()
            .filter(|cg| !parents.contains(cg) && !clients(cg))
            .collect();
        assert_eq!(cgroups, Vec::<PathBuf>::new(), "cgroups left");
        let mounts: Vec<String> = self
            .mounts()
            .into_iter()
            .filter(|m| !mounts_kept.iter().any(|k| Path::new(m) == k))
            .collect();
        assert_eq!(mounts, Vec::<String>::new(), "mounts left");
    }

    /// The runtime keeps no per-container state under `root`, the private `--root` a client gave
    /// it (files at its top level, such as a lock, may stay).
    pub fn assert_no_runtime_state(&self, root: &Path) {
        let mut state = Vec::new();
        collect_files(root, 0, &mut state);
        assert_eq!(state, Vec::<PathBuf>::new(), "the runtime's state left");
    }

    fn kill_cgroup_processes(&self) {
        for _ in 0..50 {
            let pids = self.cgroup_pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OciEnv {
    fn drop(&mut self) {
        self.kill_cgroup_processes();
        for cg in self.cgroups() {
            for _ in 0..100 {
                if std::fs::remove_dir(&cg).is_ok() || !cg.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Deepest first; detached, as a client may still hold one open for a moment.
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.matches('/').count()));
        for mount in &mounts {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let left = self.mounts();
        if let Some(dir) = self.dir.take() {
            if left.is_empty() {
                drop(dir);
            } else {
                // Never remove a tree with something mounted in it: that would delete through the mount.
                let kept = dir.keep();
                eprintln!("{} kept: still mounted there: {left:?}", kept.display());
            }
        }
    }
}

fn collect_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    found.push(dir.to_path_buf());
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), found);
        }
    }
}

/// Files below the top level of `dir` (any depth), where a runtime keeps per-container state.
fn collect_files(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&entry.path(), depth + 1, found),
            Ok(_) if depth > 0 => found.push(entry.path()),
            _ => {}
        }
    }
}

/// A script that appends its arguments to `log` and then executes `runtime` with them: how the
/// clients call the runtime, one line per call.
fn argv_logging_wrapper(dir: &Path, runtime: &Path, log: &Path) -> PathBuf {
    let wrapper = dir.join("runtime-argv-logger");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            runtime.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// A daemon the test started as its child; stopped by its PID (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `log` and waits until `ready` holds.
    pub fn start(
        name: &'static str,
        mut cmd: Command,
        log: PathBuf,
        ready: impl Fn() -> bool,
    ) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        let mut daemon = Daemon { name, child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{name} exited ({status}): {}", daemon.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready after 30 s: {}",
                daemon.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        daemon
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("{} ignored SIGTERM for 20 s: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of `pid`'s cgroup holding `controller` (v1), or its unified cgroup (v2).
pub fn cgroup_of(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    let v1 = is_cgroup_v1();
    let path = text
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':');
            Some((fields.next()?, fields.next()?, fields.next()?))
        })
        .find(|(id, controllers, _)| {
            if v1 {
                controllers.split(',').any(|c| c == controller)
            } else {
                *id == "0"
            }
        })
        .map(|(_, _, path)| path.trim_start_matches('/').to_string())
        .unwrap_or_else(|| panic!("{pid} has no {controller} cgroup: {text}"));
    hierarchy_of(controller).join(path)
}

/// The hard memory limit of `pid`'s cgroup, read from the host (None when unlimited).
pub fn memory_limit_of(pid: i32) -> Option<u64> {
    let cgroup = cgroup_of(pid, "memory");
    let file = if is_cgroup_v1() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    let text = std::fs::read_to_string(cgroup.join(file)).unwrap();
    let text = text.trim();
    // v1 says "unlimited" with the largest page-aligned number.
    text.parse().ok().filter(|&n: &u64| n < (1 << 62))
}

/// Whether `pid`'s cgroup is frozen, read from the host (v1 freezer.state, v2 cgroup.events).
pub fn frozen(pid: i32) -> bool {
    if is_cgroup_v1() {
        let state =
            std::fs::read_to_string(cgroup_of(pid, "freezer").join("freezer.state")).unwrap();
        state.trim() == "FROZEN"
    } else {
        let events =
            std::fs::read_to_string(cgroup_of(pid, "memory").join("cgroup.events")).unwrap();
        events.lines().any(|l| l == "frozen 1")
    }
}

/// From the host: `pid` has its own pid, mount, UTS and IPC namespaces, and its memory cgroup is
/// under `env`'s parent.
pub fn assert_isolated(env: &OciEnv, pid: i32) {
    for kind in ["pid", "mnt", "uts", "ipc"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        let container = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
        assert_ne!(host, container, "the {kind} namespace is the host's");
    }
    let cgroup = cgroup_of(pid, "memory");
    let parent = hierarchy_of("memory").join(env.cgroup_parent.trim_start_matches('/'));
    assert!(
        cgroup.starts_with(&parent) && cgroup != parent,
        "{} is not under {}",
        cgroup.display(),
        parent.display()
    );
}

/// Asserts that the output of `ps -o pid,comm`, run in a container whose first process is `init`,
/// lists just those two: the container has its own pid namespace and sees nothing else.
pub fn assert_ps_lists_only(ps: &str, init: &str) {
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "only the container's processes: {ps}");
    assert_eq!(rows[0], ["1", init], "{ps}");
    assert_eq!(rows[1][1], "ps", "{ps}");
}

/// Waits (up to 20 s) until `probe` returns Some, and returns it.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
