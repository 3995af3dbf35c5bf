//! runc's command line, driven the way podman (conmon), containerd's shim and dockerd drive it, on
//! bundles the tests build: a busybox rootfs and a config.json generated here. Like conmon and the
//! shim, the test process is a child subreaper: once `poc create` returns, the container's init is
//! its child, and each test reaps what it adopted (a thread per test, as those callers do).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_error, hierarchy_of, ignored_mask, ignoring, is_cgroup_v1, read_trimmed, stderr, stdout,
    Env, HANDED_DOWN_IGNORED,
};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The caller of an OCI runtime: an Env (private state root, store and cgroup parent) and the
/// processes adopted from poc. The reaper goes first on drop, killing what a failed test left.
struct Oci {
    reaper: Reaper,
    env: Env,
}

impl Oci {
    fn new() -> Self {
        Oci {
            reaper: Reaper::new(),
            env: Env::new(),
        }
    }

    /// `poc --root STATE ARGS...`: the state root by flag, as containerd's shim passes it.
    fn command(&self, args: &[&str]) -> Command {
        let root = self.env.state_root();
        let mut full = vec!["--root", root.to_str().unwrap()];
        full.extend_from_slice(args);
        let mut cmd = self.env.command(&full);
        cmd.env_remove("POC_STATE_ROOT");
        cmd
    }

    fn poc(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("poc runs")
    }

    /// A bundle named `id` (its cgroupsPath is the id's leaf under the Env's cgroup parent) running
    /// `args`, with the host directory `out` bound read-write at /out.
    fn bundle(&self, id: &str, args: &[&str]) -> Bundle {
        let dir = self.env.dir.path().join(format!("bundle-{id}"));
        let out = self.env.dir.path().join(format!("out-{id}"));
        std::fs::create_dir_all(&out).unwrap();
        busybox_rootfs(&dir.join("rootfs"));
        let config = config(&self.env.cgroup_parent, id, &out, args);
        let bundle = Bundle { dir, out, config };
        bundle.save();
        bundle
    }

    /// A process.json for `exec --process` (written once, read by poc at once).
    fn process_file(&self, name: &str, args: &[&str]) -> PathBuf {
        let path = self.env.dir.path().join(format!("process-{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&process(args)).unwrap()).unwrap();
        path
    }

    /// A fresh path for a pid file.
    fn pid_file(&self) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        self.env.dir.path().join(format!("pid-{n}"))
    }

    /// `create --bundle B --pid-file F EXTRA... ID` from `/`, so that a relative root.path must be
    /// taken from the bundle. Returns poc's output and the pid file's path.
    fn try_create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> (Output, PathBuf) {
        let pid_file = self.pid_file();
        let bundle_dir = bundle.dir.to_str().unwrap();
        let pid_path = pid_file.to_str().unwrap();
        let mut args = vec!["create", "--bundle", bundle_dir, "--pid-file", pid_path];
        args.extend_from_slice(extra);
        args.push(id);
        let mut cmd = self.command(&args);
        cmd.current_dir("/");
        (output_to_files(&self.env, cmd), pid_file)
    }

    /// `create` that must succeed silently; returns the init's pid, adopted.
    fn create(&self, bundle: &Bundle, id: &str) -> Pid {
        let (out, pid_file) = self.try_create(bundle, id, &[]);
        assert!(out.status.success(), "create {id}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "create prints nothing");
        assert_eq!(stderr(&out), "", "create prints nothing");
        self.adopt_from(&pid_file)
    }

    /// The pid in `pid_file` (bare digits, as containerd's shim parses it), adopted.
    fn adopt_from(&self, pid_file: &Path) -> Pid {
        let text = std::fs::read_to_string(pid_file).unwrap();
        assert!(
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
            "pid file {text:?}"
        );
        let pid = Pid::from_raw(text.parse().unwrap());
        self.reaper.adopt(pid);
        pid
    }

    /// The init's pid from `state`, adopted (for a create without --pid-file).
    fn adopt_from_state(&self, id: &str) -> Pid {
        let state = self.state(id);
        assert_eq!(state["status"], "created");
        let pid = Pid::from_raw(state["pid"].as_i64().unwrap() as i32);
        self.reaper.adopt(pid);
        pid
    }

    fn start(&self, id: &str) {
        let out = self.poc(&["start", id]);
        assert!(out.status.success(), "start {id}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
    }

    fn state(&self, id: &str) -> Value {
        let out = self.poc(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `delete [--force] ID`, which must succeed silently.
    fn delete(&self, id: &str, force: bool) {
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        let out = self.poc(args);
        assert!(out.status.success(), "delete {id}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
        assert_eq!(stderr(&out), "");
    }

    /// Nothing left: no state, cgroup or mount (the Env's checks), no adopted process unreaped, and
    /// no zombie of this Env's containers that poc handed to us without a pid to reap it by.
    fn assert_clean(&self) {
        self.env.assert_clean();
        let watched = self.reaper.watched();
        assert!(watched.is_empty(), "processes never reaped: {watched:?}");
        let zombies = zombies_of(&self.env);
        assert!(
            zombies.is_empty(),
            "zombies left to the caller: {zombies:?}"
        );
    }
}

/// Runs `cmd` with stdout and stderr in files, read once it exits: a pipe would stay open in a
/// container (or a detached process) that inherited it, and reading it to the end would hang.
fn output_to_files(env: &Env, mut cmd: Command) -> Output {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let out_path = env.dir.path().join(format!("stdout-{n}"));
    let err_path = env.dir.path().join(format!("stderr-{n}"));
    let status = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .expect("poc runs");
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

struct Bundle {
    dir: PathBuf,
    /// The host directory bound at /out in the container.
    out: PathBuf,
    config: Value,
}

impl Bundle {
    fn save(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// A root filesystem of busybox alone: the static binary and a link per applet in /bin.
fn busybox_rootfs(root: &Path) {
    static APPLETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let applets = APPLETS.get_or_init(|| {
        let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
        assert!(out.status.success(), "busybox-static is installed");
        stdout(&out).lines().map(String::from).collect()
    });
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc", "out"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in applets.iter().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
}

fn process(args: &[&str]) -> Value {
    json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": [PATH, "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": common::DOCKER_CAPS,
            "effective": common::DOCKER_CAPS,
            "permitted": common::DOCKER_CAPS,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true,
    })
}

/// runc spec's config, made for these tests: six new namespaces, a read-only root relative to the
/// bundle, /out bound from the host, the cgroup leaf `id` under the test's cgroup parent.
fn config(cgroup_parent: &str, id: &str, out: &Path, args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": process(args),
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "oci",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]},
        ],
        "linux": {
            "cgroupsPath": format!("{cgroup_parent}/{id}"),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

/// Makes the test process a child subreaper, as conmon and containerd's shim are.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).unwrap());
}

/// Reaps the processes a test adopted from poc, as they end: an init does not finish exiting
/// until the other processes of its pid namespace (exec'd ones, our children too) are reaped.
struct Reaper {
    shared: Arc<Reaped>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Reaped {
    state: Mutex<ReapState>,
    changed: Condvar,
}

#[derive(Default)]
struct ReapState {
    watched: Vec<Pid>,
    ended: HashMap<Pid, Result<WaitStatus, nix::Error>>,
    stop: bool,
}

impl Reaped {
    /// The state, even after a test panicked while holding it.
    fn lock(&self) -> std::sync::MutexGuard<'_, ReapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reaper {
    fn new() -> Self {
        become_subreaper();
        let shared = Arc::new(Reaped::default());
        let reaped = shared.clone();
        let thread = std::thread::spawn(move || loop {
            {
                let mut st = reaped.lock();
                if st.stop {
                    return;
                }
                let mut ended = Vec::new();
                // Only the pids we were given: other tests' threads wait for their own children.
                for &pid in &st.watched {
                    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                            ended.push((pid, Ok(s)))
                        }
                        Ok(_) | Err(nix::Error::EINTR) => {}
                        Err(e) => ended.push((pid, Err(e))),
                    }
                }
                if !ended.is_empty() {
                    st.watched.retain(|p| !ended.iter().any(|(e, _)| e == p));
                    st.ended.extend(ended);
                    reaped.changed.notify_all();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        });
        Reaper {
            shared,
            thread: Some(thread),
        }
    }

    fn adopt(&self, pid: Pid) {
        self.shared.lock().watched.push(pid);
    }

    fn watched(&self) -> Vec<Pid> {
        self.shared.lock().watched.clone()
    }

    /// How `pid` ended; it must be our child (ECHILD means poc kept it, or someone else reaped it).
    fn wait(&self, pid: Pid) -> WaitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut st = self.shared.lock();
        loop {
            if let Some(&result) = st.ended.get(&pid) {
                drop(st);
                return result.unwrap_or_else(|e| panic!("waiting for {pid}: {e}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(st);
                // Where it is stuck says why (an init waits in zap_pid_ns_processes until every
                // other process of its pid namespace is reaped).
                let read = |what: &str| {
                    std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default()
                };
                panic!("{pid} did not end: {} {}", read("stat"), read("stack"));
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let pids = self.watched();
        for &pid in &pids {
            // Still our unreaped child: the pid cannot belong to anyone else.
            let _ = kill(pid, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.watched().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.shared.lock().stop = true;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Zombie children of the test process that died in one of this Env's cgroups: processes poc left
/// to its caller without telling it their pid.
fn zombies_of(env: &Env) -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
            fields.first() == Some(&"Z")
                && fields.get(1) == Some(&me.as_str())
                && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| c.contains(&env.cgroup_parent))
        })
        .collect()
}

fn ppid_of(pid: Pid) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn namespace_of(pid: impl std::fmt::Display, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Waits until `path` exists and holds a whole line; returns its text, trimmed.
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A cgroup file of container `id` as the host sees it: the v1 name or the v2 one.
fn cgroup_file(env: &Env, id: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
    hierarchy_of(controller)
        .join(env.cgroup_parent.trim_start_matches('/'))
        .join(id)
        .join(if is_cgroup_v1() { v1 } else { v2 })
}

#[test]
fn create_leaves_the_init_waiting_as_the_callers_child_until_start() {
    let oci = Oci::new();
    let mut bundle = oci.bundle(
        "first",
        &[
            "sh",
            "-c",
            "echo ran > /out/ran; while [ ! -e /out/stop ]; do sleep 0.1; done; exit 3",
        ],
    );
    bundle.config["annotations"] = json!({"org.example.story": "first", "com.example.n": "1"});
    bundle.save();
    let pid = oci.create(&bundle, "first");
    assert_eq!(
        ppid_of(pid),
        std::process::id() as i32,
        "the init is the caller's child once poc exits"
    );
    assert_eq!(oci.env.container_ids(), ["first"]);
    let state = oci.state("first");
    assert_eq!(state["ociVersion"], "1.0.2");
    assert_eq!(state["id"], "first");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid.as_raw());
    assert_eq!(
        state["bundle"],
        json!(std::fs::canonicalize(&bundle.dir).unwrap())
    );
    assert_eq!(
        state["annotations"],
        json!({"org.example.story": "first", "com.example.n": "1"})
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !bundle.out.join("ran").exists(),
        "the command waits for start"
    );

    let started = Instant::now();
    oci.start("first");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(wait_for_file(&bundle.out.join("ran")), "ran");
    let state = oci.state("first");
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], pid.as_raw());

    std::fs::write(bundle.out.join("stop"), "").unwrap();
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 3));
    assert_eq!(oci.state("first")["status"], "stopped");
    oci.delete("first", false);
    assert_error(&oci.poc(&["state", "first"]), 125, "does not exist");
    oci.assert_clean();
}

/// `poc create` with `fds` as its descriptors 3, 4...
fn create_with_fds(
    oci: &Oci,
    bundle: &Bundle,
    id: &str,
    extra: &[&str],
    fds: &[&OwnedFd],
) -> std::process::Child {
    let bundle_dir = bundle.dir.to_str().unwrap();
    let mut args = vec!["create", "--bundle", bundle_dir];
    args.extend_from_slice(extra);
    args.push(id);
    let mut cmd = oci.command(&args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut high = [0 as RawFd; 8];
    assert!(raw.len() <= high.len());
    // SAFETY: only fcntl and dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that placing one never overwrites another.
            for (i, fd) in raw.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().take(raw.len()).enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().expect("poc runs")
}

fn read_all(mut from: impl Read) -> String {
    let mut text = String::new();
    from.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn without_a_terminal_the_container_uses_creates_stdio_and_only_preserved_fds() {
    let oci = Oci::new();
    let script = "echo to-out; echo to-err >&2; exec ls /proc/self/fd";

    // A descriptor the caller leaks (containerd's shim leaks a socket on fd 3) stays out.
    let bundle = oci.bundle("plain", &["sh", "-c", script]);
    let (leak_r, leak_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut create = create_with_fds(&oci, &bundle, "plain", &[], &[&leak_w]);
    drop(leak_w);
    let status = create.wait().unwrap();
    let (out, err) = (create.stdout.take().unwrap(), create.stderr.take().unwrap());
    assert!(status.success(), "create: {}", read_all(err));
    nix::fcntl::fcntl(
        &leak_r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    assert_eq!(
        nix::unistd::read(&leak_r, &mut [0u8; 1]),
        Ok(0),
        "fd 3 is closed in the container: its pipe ends with poc"
    );
    let pid = oci.adopt_from_state("plain");
    oci.start("plain");
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 0));
    // Besides the command's output, nothing: create printed nothing. ls's own directory is fd 3.
    assert_eq!(read_all(out), "to-out\n0\n1\n2\n3\n");
    assert_eq!(read_all(err), "to-err\n");
    oci.delete("plain", false);

    // --preserve-fds 2: fds 3 and 4 reach the command, and no more.
    let script = "echo via-3 >&3; echo via-4 >&4; exec ls /proc/self/fd";
    let bundle = oci.bundle("kept", &["sh", "-c", script]);
    let (r3, w3) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (r4, w4) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut create = create_with_fds(&oci, &bundle, "kept", &["--preserve-fds", "2"], &[&w3, &w4]);
    drop((w3, w4));
    let status = create.wait().unwrap();
    let (out, err) = (create.stdout.take().unwrap(), create.stderr.take().unwrap());
    assert!(status.success(), "create: {}", read_all(err));
    let pid = oci.adopt_from_state("kept");
    oci.start("kept");
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 0));
    assert_eq!(read_all(out), "0\n1\n2\n3\n4\n5\n");
    assert_eq!(read_all(err), "");
    assert_eq!(read_all(std::fs::File::from(r3)), "via-3\n");
    assert_eq!(read_all(std::fs::File::from(r4)), "via-4\n");
    oci.delete("kept", false);
    oci.assert_clean();
}

/// Accepts one connection on the console socket and takes the pty master it carries.
fn receive_console(listener: &std::os::unix::net::UnixListener) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "poc never connected");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us this descriptor.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

#[test]
fn a_terminal_is_sent_to_the_console_socket_with_the_size_asked() {
    let oci = Oci::new();
    let mut bundle = oci.bundle("console", &["sh", "-c", "stty size; tty; echo done"]);
    bundle.config["process"]["terminal"] = json!(true);
    bundle.config["process"]["consoleSize"] = json!({"height": 31, "width": 97});
    bundle.save();
    let socket = oci.env.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (out, pid_file) = oci.try_create(
        &bundle,
        "console",
        &["--console-socket", socket.to_str().unwrap()],
    );
    assert!(out.status.success(), "create: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
    let pid = oci.adopt_from(&pid_file);
    let master = std::fs::File::from(receive_console(&listener));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Ends with EIO once the container's last process closes the terminal.
        let mut text = Vec::new();
        let mut buf = [0u8; 1024];
        let mut master = master;
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
    });
    oci.start("console");
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 0));
    let seen = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(seen, "31 97\r\n/dev/pts/0\r\ndone\r\n");
    oci.delete("console", false);
    oci.assert_clean();
}

#[test]
fn kill_signals_the_init_or_every_process_and_delete_needs_force_while_running() {
    let oci = Oci::new();
    // kill ID 15: the init's own handler runs.
    let bundle = oci.bundle(
        "term",
        &[
            "sh",
            "-c",
            "trap 'echo term > /out/term; exit 7' TERM; echo up > /out/up; \
             while true; do sleep 0.1; done",
        ],
    );
    let pid = oci.create(&bundle, "term");
    oci.start("term");
    wait_for_file(&bundle.out.join("up"));
    assert_error(
        &oci.poc(&["delete", "term"]),
        125,
        "cannot delete container term that is not stopped",
    );
    assert_eq!(oci.state("term")["status"], "running");
    let out = oci.poc(&["kill", "term", "15"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 7));
    assert_eq!(read_trimmed(&bundle.out.join("term")), "term");
    oci.delete("term", false);

    // kill --all ID 9: every process of the container, not only the init.
    let bundle = oci.bundle(
        "all",
        &["sh", "-c", "sleep 1000 & echo $! > /out/sleeper; wait"],
    );
    let pid = oci.create(&bundle, "all");
    oci.start("all");
    wait_for_file(&bundle.out.join("sleeper"));
    let out = oci.poc(&["ps", "--format", "json", "all"]);
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids.len(), 2, "sh and its sleep: {pids:?}");
    let out = oci.poc(&["kill", "--all", "all", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        oci.reaper.wait(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    for other in pids.iter().filter(|p| **p != pid.as_raw()) {
        assert!(
            !Path::new(&format!("/proc/{other}")).exists(),
            "the sleep ({other}) was killed too"
        );
    }
    assert_eq!(oci.state("all")["status"], "stopped");
    oci.delete("all", false);

    // delete --force of a running container kills it.
    let bundle = oci.bundle("forced", &["sleep", "1000"]);
    let pid = oci.create(&bundle, "forced");
    oci.start("forced");
    oci.delete("forced", true);
    assert_eq!(
        oci.reaper.wait(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );

    // Unknown ids: an error in runc's words, or nothing at all with --force (the shim's cleanup).
    assert_error(
        &oci.poc(&["delete", "nosuch"]),
        125,
        "container nosuch does not exist",
    );
    oci.delete("nosuch", true);
    oci.assert_clean();
}

#[test]
fn exec_process_joins_the_container_as_the_callers_child() {
    let oci = Oci::new();
    let bundle = oci.bundle("host", &["sleep", "1000"]);
    std::fs::write(bundle.rootfs().join("etc/notexec"), "#!/bin/sh\n").unwrap();
    let init = oci.create(&bundle, "host");
    oci.start("host");

    // --detach --pid-file: the process runs on as the caller's child.
    let process = oci.process_file("detached", &["sleep", "1000"]);
    let pid_file = oci.pid_file();
    let cmd = oci.command(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "host",
    ]);
    let out = output_to_files(&oci.env, cmd);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
    let pid = oci.adopt_from(&pid_file);
    assert_eq!(ppid_of(pid), std::process::id() as i32);
    for kind in ["pid", "net", "mnt", "ipc", "uts", "cgroup"] {
        assert_eq!(
            namespace_of(pid, kind),
            namespace_of(init, kind),
            "{kind} namespace"
        );
        assert_ne!(namespace_of(pid, kind), namespace_of("self", kind));
    }
    assert_eq!(
        read_trimmed(Path::new(&format!("/proc/{pid}/cgroup"))),
        read_trimmed(Path::new(&format!("/proc/{init}/cgroup"))),
        "the exec'd process is in the container's cgroups"
    );

    // Without --detach, poc returns the process's exit status, its output on poc's own.
    let process = oci.process_file("status", &["sh", "-c", "echo from-exec; exit 5"]);
    let out = oci.poc(&["exec", "--process", process.to_str().unwrap(), "host"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-exec\n");
    // Also when the caller handed poc SIGCHLD ignored (the kernel would reap the process before
    // poc's wait), and the process starts with no signal ignored.
    let mut cmd = oci.command(&["exec", "--process", process.to_str().unwrap(), "host"]);
    let out = ignoring(&mut cmd, &HANDED_DOWN_IGNORED).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let process = oci.process_file("signals", &["cat", "/proc/self/status"]);
    let mut cmd = oci.command(&["exec", "--process", process.to_str().unwrap(), "host"]);
    let out = ignoring(&mut cmd, &HANDED_DOWN_IGNORED).output().unwrap();
    assert_eq!(ignored_mask(&stdout(&out)), "0000000000000000");

    // runc's words for what cannot run, from which the clients derive 127 and 126.
    for (args, code, words) in [
        (["nope"], 127, "executable file not found in $PATH"),
        (["/bin/nope"], 127, "no such file or directory"),
        (["/etc/notexec"], 126, "permission denied"),
    ] {
        let process = oci.process_file("fails", &args);
        let out = oci.poc(&["exec", "--process", process.to_str().unwrap(), "host"]);
        assert_error(&out, code, words);
    }

    oci.delete("host", true);
    assert_eq!(
        oci.reaper.wait(init),
        WaitStatus::Signaled(init, Signal::SIGKILL, false)
    );
    assert_eq!(
        oci.reaper.wait(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );

    // A container whose command is missing is never created.
    let bundle = oci.bundle("missing", &["nope"]);
    let (out, pid_file) = oci.try_create(&bundle, "missing", &[]);
    assert_error(&out, 127, "executable file not found in $PATH");
    assert!(!pid_file.exists());
    oci.assert_clean();
}

#[test]
fn pause_freezes_the_container_and_resume_thaws_it() {
    let oci = Oci::new();
    let bundle = oci.bundle(
        "frozen",
        &[
            "sh",
            "-c",
            "while true; do echo t >> /out/ticks; sleep 0.1; done",
        ],
    );
    let pid = oci.create(&bundle, "frozen");
    oci.start("frozen");
    wait_for_file(&bundle.out.join("ticks"));
    let (freezer, frozen, thawed) = if is_cgroup_v1() {
        (
            cgroup_file(&oci.env, "frozen", "freezer", "freezer.state", ""),
            "FROZEN",
            "THAWED",
        )
    } else {
        (
            cgroup_file(&oci.env, "frozen", "memory", "", "cgroup.events"),
            "frozen 1",
            "frozen 0",
        )
    };
    let ticks = || std::fs::read_to_string(bundle.out.join("ticks")).unwrap();

    let out = oci.poc(&["pause", "frozen"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(oci.state("frozen")["status"], "paused");
    assert!(read_trimmed(&freezer).contains(frozen), "{freezer:?}");
    let before = ticks();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ticks(), before, "nothing runs while paused");

    let out = oci.poc(&["resume", "frozen"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(oci.state("frozen")["status"], "running");
    assert!(read_trimmed(&freezer).contains(thawed), "{freezer:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ticks() == before {
        assert!(Instant::now() < deadline, "the container runs again");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A paused container can be deleted with --force too (it is thawed to die).
    let out = oci.poc(&["pause", "frozen"]);
    assert!(out.status.success(), "{}", stderr(&out));
    oci.delete("frozen", true);
    assert_eq!(
        oci.reaper.wait(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    oci.assert_clean();
}

#[test]
fn update_resources_from_a_file_or_stdin_sets_limits_and_zeros_change_nothing() {
    let oci = Oci::new();
    let mut bundle = oci.bundle("limits", &["sleep", "1000"]);
    let resources = &mut bundle.config["linux"]["resources"];
    resources["memory"] = json!({"limit": 128 << 20});
    resources["cpu"] = json!({"shares": 512});
    resources["pids"] = json!({"limit": 100});
    bundle.save();
    let pid = oci.create(&bundle, "limits");
    oci.start("limits");
    let memory = oci.env.memory_limit_file("limits");
    let pids = cgroup_file(&oci.env, "limits", "pids", "pids.max", "pids.max");
    let cpu = cgroup_file(&oci.env, "limits", "cpu", "cpu.shares", "cpu.weight");
    assert_eq!(read_trimmed(&memory), (128 << 20).to_string());
    assert_eq!(read_trimmed(&pids), "100");
    let cpu_before = read_trimmed(&cpu);
    if is_cgroup_v1() {
        assert_eq!(cpu_before, "512");
    }

    // docker's JSON: every field present, zeros meaning "unchanged".
    let docker = |memory: u64, pids: u64| {
        json!({
            "memory": {"limit": memory, "swap": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0},
            "pids": {"limit": pids},
            "blockIO": {"weight": 0},
        })
        .to_string()
    };
    let file = oci.env.dir.path().join("resources.json");
    std::fs::write(&file, docker(64 << 20, 50)).unwrap();
    let out = oci.poc(&["update", "--resources", file.to_str().unwrap(), "limits"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(read_trimmed(&memory), (64 << 20).to_string());
    assert_eq!(read_trimmed(&pids), "50");
    assert_eq!(read_trimmed(&cpu), cpu_before, "shares 0 is no change");

    // From stdin, in go-runc's words (docker update through containerd).
    let mut child = oci
        .command(&["update", "--resources=-", "limits"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(docker(96 << 20, 60).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_trimmed(&memory), (96 << 20).to_string());
    assert_eq!(read_trimmed(&pids), "60");
    assert_eq!(read_trimmed(&cpu), cpu_before);

    oci.delete("limits", true);
    assert_eq!(
        oci.reaper.wait(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    oci.assert_clean();
}

#[test]
fn ps_lists_the_host_pids_of_the_init_and_of_exec_processes() {
    let oci = Oci::new();
    let bundle = oci.bundle("listed", &["sleep", "1000"]);
    let init = oci.create(&bundle, "listed");
    oci.start("listed");
    let process = oci.process_file("sleeper", &["sleep", "1000"]);
    let pid_file = oci.pid_file();
    let cmd = oci.command(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "listed",
    ]);
    let out = output_to_files(&oci.env, cmd);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    let exec = oci.adopt_from(&pid_file);

    let out = oci.poc(&["ps", "--format", "json", "listed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap();
    pids.sort_unstable();
    let mut expected = vec![init.as_raw(), exec.as_raw()];
    expected.sort_unstable();
    assert_eq!(pids, expected);

    oci.delete("listed", true);
    for pid in [init, exec] {
        assert_eq!(
            oci.reaper.wait(pid),
            WaitStatus::Signaled(pid, Signal::SIGKILL, false)
        );
    }
    oci.assert_clean();
}

/// A hook that notes its name in `dir`/order and keeps the state it read in `dir`/NAME.json.
fn note_hook(dir: &Path, name: &str) -> Value {
    let dir = dir.display();
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo {name} >> {dir}/order; cat > {dir}/{name}.json")],
        "env": [PATH],
    })
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin_and_a_failing_prestart_fails_create() {
    let oci = Oci::new();
    let mut bundle = oci.bundle("hooked", &["sleep", "1000"]);
    let host = bundle.out.clone();
    bundle.config["hooks"] = json!({
        "prestart": [note_hook(&host, "prestart")],
        "createRuntime": [note_hook(&host, "createRuntime")],
        "createContainer": [note_hook(&host, "createContainer")],
        // In the container, after pivot_root: its /out is the same directory.
        "startContainer": [note_hook(Path::new("/out"), "startContainer")],
        "poststart": [note_hook(&host, "poststart")],
        "poststop": [note_hook(&host, "poststop")],
    });
    bundle.save();
    let order = host.join("order");
    let pid = oci.create(&bundle, "hooked");
    assert_eq!(
        lines_of(&order),
        ["prestart", "createRuntime", "createContainer"]
    );
    oci.start("hooked");
    assert_eq!(
        lines_of(&order),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart"
        ]
    );
    let out = oci.poc(&["kill", "hooked", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        oci.reaper.wait(pid),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    oci.delete("hooked", false);
    assert_eq!(lines_of(&order).last().unwrap(), "poststop");

    let bundle_path = json!(std::fs::canonicalize(&bundle.dir).unwrap());
    for name in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let text = std::fs::read(host.join(format!("{name}.json"))).unwrap();
        let state: Value = serde_json::from_slice(&text)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&text)));
        assert_eq!(state["id"], "hooked", "{name}");
        assert_eq!(state["bundle"], bundle_path, "{name}");
        if name == "poststop" {
            assert_eq!(state["status"], "stopped");
        } else {
            assert_eq!(state["pid"], pid.as_raw(), "{name}: the init's host pid");
        }
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&std::fs::read(host.join("poststart.json")).unwrap())
            .unwrap()["status"],
        "running"
    );

    // A failing prestart hook: create fails with its output, and nothing is left.
    let mut bundle = oci.bundle("hookfails", &["sleep", "1000"]);
    let host = bundle.out.clone();
    bundle.config["hooks"] = json!({
        "prestart": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo prestart >> {}/order; echo hook-broke >&2; exit 3", host.display())],
        }],
        "createRuntime": [note_hook(&host, "createRuntime")],
    });
    bundle.save();
    let (out, pid_file) = oci.try_create(&bundle, "hookfails", &[]);
    assert_error(&out, 125, "hook-broke");
    assert!(stderr(&out).contains("prestart hook"), "{}", stderr(&out));
    assert_eq!(lines_of(&host.join("order")), ["prestart"]);
    assert!(!pid_file.exists());
    oci.assert_clean();
}

/// Whether a mount made under / after `mount --rbind / /target` shows under /target: the check of
/// runtime-tools' linux_rootfs_propagation (a shared root exposes it; a private one does not).
const PROPAGATION_CHECK: &str = "{ mount --rbind / /target && mount --bind /test /mnt2 && \
     { test -e /target/mnt2/example && echo exposed || echo hidden; }; } > /out/propagation 2>&1";

#[test]
fn sysctl_propagation_relative_root_default_devices_and_a_joined_netns_are_applied() {
    let oci = Oci::new();
    let host_port_start = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let host_value = read_trimmed(Path::new(host_port_start));
    assert_ne!(host_value, "99");
    let script = format!(
        "cat {host_port_start} > /out/sysctl; \
         for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo $d; done > /out/devices; \
         echo x > /dev/null && head -c 3 /dev/zero | wc -c > /out/devio; \
         {PROPAGATION_CHECK}"
    );
    let mut bundle = oci.bundle("tuned", &["sh", "-c", &script]);
    let linux = &mut bundle.config["linux"];
    linux["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "99"});
    linux["rootfsPropagation"] = json!("shared");
    // podman's way: no device listed; the standard nodes are made all the same.
    linux["devices"] = json!([]);
    add_mount_test_dirs(&mut bundle);
    let pid = oci.create(&bundle, "tuned");
    oci.start("tuned");
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 0));
    assert_eq!(read_trimmed(&bundle.out.join("sysctl")), "99");
    assert_eq!(
        read_trimmed(Path::new(host_port_start)),
        host_value,
        "the host's own value is untouched"
    );
    assert_eq!(
        lines_of(&bundle.out.join("devices")),
        ["null", "zero", "full", "random", "urandom", "tty"]
    );
    assert_eq!(read_trimmed(&bundle.out.join("devio")), "3");
    assert_eq!(read_trimmed(&bundle.out.join("propagation")), "exposed");
    oci.delete("tuned", false);

    // A network namespace given by path is joined (one of ours, held by a sleep).
    let mut holder = Command::new("sleep");
    holder.arg("1000");
    // SAFETY: unshare only, between fork and exec.
    unsafe {
        holder.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(Into::into)
        });
    }
    let mut holder = holder.spawn().unwrap();
    let netns = format!("/proc/{}/ns/net", holder.id());
    let script = format!("readlink /proc/self/ns/net > /out/netns; {PROPAGATION_CHECK}");
    let mut bundle = oci.bundle("joined", &["sh", "-c", &script]);
    for ns in bundle.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = json!(netns);
        }
    }
    bundle.config["linux"]["rootfsPropagation"] = json!("private");
    add_mount_test_dirs(&mut bundle);
    let pid = oci.create(&bundle, "joined");
    oci.start("joined");
    assert_eq!(oci.reaper.wait(pid), WaitStatus::Exited(pid, 0));
    assert_eq!(
        read_trimmed(&bundle.out.join("netns")),
        namespace_of(holder.id(), "net")
    );
    assert_eq!(read_trimmed(&bundle.out.join("propagation")), "hidden");
    oci.delete("joined", false);
    holder.kill().unwrap();
    holder.wait().unwrap();
    oci.assert_clean();
}

/// What PROPAGATION_CHECK needs: its directories in the (read-only) root and CAP_SYS_ADMIN.
fn add_mount_test_dirs(bundle: &mut Bundle) {
    for dir in ["target", "mnt2", "test"] {
        std::fs::create_dir_all(bundle.rootfs().join(dir)).unwrap();
    }
    std::fs::write(bundle.rootfs().join("test/example"), "").unwrap();
    let caps = &mut bundle.config["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        caps[set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    bundle.save();
}

#[test]
fn what_poc_cannot_do_is_refused_in_one_line_and_leaves_nothing() {
    let oci = Oci::new();
    let refused = |bundle: &Bundle, id: &str, extra: &[&str], words: &str| {
        let (out, pid_file) = oci.try_create(bundle, id, extra);
        assert_error(&out, 125, words);
        assert!(!pid_file.exists(), "{id}: no pid file");
        assert_eq!(oci.env.container_ids(), Vec::<String>::new(), "{id}");
    };

    let mut bundle = oci.bundle("userns", &["true"]);
    let linux = &mut bundle.config["linux"];
    linux["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let mapping = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    linux["uidMappings"] = mapping.clone();
    linux["gidMappings"] = mapping;
    bundle.save();
    refused(&bundle, "userns", &[], "user namespace");

    let bundle = oci.bundle("badid", &["true"]);
    refused(&bundle, "../x", &[], "invalid container id");
    assert!(!oci.env.state_root().join("x").exists());

    let missing = Bundle {
        dir: oci.env.dir.path().join("no-such-bundle"),
        out: PathBuf::new(),
        config: Value::Null,
    };
    refused(&missing, "nobundle", &[], "no-such-bundle");

    let mut bundle = oci.bundle("noprocess", &["true"]);
    bundle.config.as_object_mut().unwrap().remove("process");
    bundle.save();
    refused(&bundle, "noprocess", &[], "no process");

    let mut bundle = oci.bundle("noconsole", &["true"]);
    bundle.config["process"]["terminal"] = json!(true);
    bundle.save();
    refused(&bundle, "noconsole", &[], "--console-socket");

    // A cgroup that already holds a process of ours is not a container's to take.
    let busy = hierarchy_of("memory")
        .join(oci.env.cgroup_parent.trim_start_matches('/'))
        .join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(busy.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let bundle = oci.bundle("busy", &["true"]);
    refused(&bundle, "busy", &[], "already holds processes");
    assert_eq!(
        read_trimmed(&busy.join("cgroup.procs")),
        sleeper.id().to_string(),
        "the cgroup and its process are left alone"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    std::fs::remove_dir(&busy).unwrap();
    oci.assert_clean();
}

#[test]
fn log_json_records_failures_and_version_prints_three_lines_even_after_global_flags() {
    let oci = Oci::new();
    let log = oci.env.dir.path().join("log.json");
    let log_arg = log.to_str().unwrap();
    let out = oci.poc(&["--log", log_arg, "--log-format", "json", "delete", "gone"]);
    assert_error(&out, 125, "container gone does not exist");
    let flag = format!("--log={log_arg}");
    let out = oci.poc(&[&flag, "--log-format=json", "state", "gone"]);
    assert_error(&out, 125, "container gone does not exist");
    let lines = lines_of(&log);
    assert_eq!(lines.len(), 2, "one line per failure, appended: {lines:?}");
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["level"], "error");
        let msg = entry["msg"].as_str().unwrap();
        assert!(msg.contains("container gone does not exist"), "{msg}");
        assert!(stderr(&out).contains(msg), "the same text on stderr");
        let time = entry["time"].as_str().unwrap();
        let date = time.as_bytes();
        assert!(
            time.len() >= 20
                && date[4] == b'-'
                && date[7] == b'-'
                && date[10] == b'T'
                && date[13] == b':'
                && (time.ends_with('Z') || time[19..].contains(['+', '-'])),
            "RFC 3339: {time}"
        );
    }

    // Alone, and after the global flags, as containerd's go-runc asks.
    for out in [
        oci.env.poc(&["--version"]),
        oci.poc(&["--log", log_arg, "--log-format", "json", "--version"]),
    ] {
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let version: Vec<&str> = text.lines().collect();
        assert_eq!(version.len(), 3, "{text}");
        assert!(version[0].starts_with("poc version "), "{text}");
        assert!(version[1].starts_with("commit: "), "{text}");
        assert!(version[2].starts_with("spec: 1."), "{text}");
    }
    assert_eq!(lines_of(&log).len(), 2, "no error logged");
    oci.assert_clean();
}
