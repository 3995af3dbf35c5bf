//! Attacks on the OCI front door (`poc create --bundle`, `start`, `exec --process`), performed for
//! real: a hostile process in the container (tests/attack/oci.c does the work there) or a hostile
//! bundle root filesystem tries to reach the host through what poc does for a runtime's caller.
//! Each test asserts the refusal; where a defence already held, the attack stays as a regression
//! test. The bundles are built here: busybox and the attack programs, a config.json like runc's.

mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_error, attack_dir, stderr, Env, DOCKER_CAPS};

fn caps_json(caps: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    })
}

/// A file only the host can see, holding a token no container may ever read.
struct HostMarker {
    path: String,
    token: String,
}

fn host_marker(env: &Env) -> HostMarker {
    let token = format!("host-only-{}-{}", std::process::id(), env.cgroup_parent);
    let path = env.dir.path().join("host-marker");
    std::fs::write(&path, &token).unwrap();
    HostMarker {
        path: path.to_string_lossy().into_owned(),
        token,
    }
}

/// An OCI bundle: a busybox root filesystem and a config.json to adjust before `write`.
struct Bundle {
    dir: PathBuf,
    config: serde_json::Value,
}

impl Bundle {
    /// A bundle under the Env's directory whose process runs `args`, as runc's default config
    /// describes it (its namespaces, mounts, masked and read-only paths) with Docker's
    /// capabilities, and the attack programs bound read-only at /attack.
    fn new(env: &Env, name: &str, args: &[&str]) -> Self {
        let dir = env.dir.path().join("bundles").join(name);
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "attack"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "cat", "grep", "sleep", "true", "ls", "echo", "mkdir", "chmod", "printf",
        ] {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "hostname": "oci",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin"],
                "cwd": "/",
                "capabilities": caps_json(&DOCKER_CAPS),
                "noNewPrivileges": true,
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
                {"destination": "/attack", "type": "bind",
                 "source": attack_dir().to_string_lossy(), "options": ["rbind", "ro"]},
            ],
            "linux": {
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                    {"type": "mount"}, {"type": "cgroup"},
                ],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                  "/proc/sysrq-trigger"],
            },
        });
        Bundle { dir, config }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn write(&self) {
        let text = serde_json::to_vec_pretty(&self.config).unwrap();
        std::fs::write(self.dir.join("config.json"), text).unwrap();
    }
}

/// Where the container `id`'s output goes: `create` hands its own stdout and stderr to the init.
fn output_file(env: &Env, id: &str) -> PathBuf {
    env.dir.path().join(format!("{id}.out"))
}

/// `poc create --bundle DIR EXTRA... ID` with stdout and stderr in a file (the init keeps them:
/// pipes would never end); returns poc's status and what it wrote itself.
fn create(env: &Env, bundle: &Bundle, id: &str, extra: &[&str]) -> Output {
    bundle.write();
    let bundle_dir = bundle.dir.to_string_lossy().into_owned();
    let mut args = vec!["create", "--bundle", &bundle_dir];
    args.extend_from_slice(extra);
    args.push(id);
    run_logged(env.command(&args), &output_file(env, id))
}

/// Runs `cmd` with stdout and stderr appended to `file`; returns its status and what it added.
fn run_logged(mut cmd: Command, file: &Path) -> Output {
    let before = std::fs::read(file).map(|t| t.len()).unwrap_or(0);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let status = cmd
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("poc runs");
    let text = std::fs::read(file).unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: text[before..].to_vec(),
    }
}

fn poc_ok(env: &Env, args: &[&str]) -> Output {
    let out = env.poc(args);
    assert!(out.status.success(), "poc {args:?}: {}", stderr(&out));
    out
}

/// `poc exec --process FILE EXTRA... ID` of `process` (a process.json), output appended to the
/// container's file.
fn exec(env: &Env, id: &str, process: &serde_json::Value, extra: &[&str]) -> Output {
    let file = env.dir.path().join(format!("{id}-process.json"));
    std::fs::write(&file, serde_json::to_vec(process).unwrap()).unwrap();
    let file = file.to_string_lossy().into_owned();
    let mut args = vec!["exec", "--process", &file];
    args.extend_from_slice(extra);
    args.push(id);
    run_logged(env.command(&args), &output_file(env, id))
}

/// A process.json running `args` as root in /, with `caps` if given.
fn process(args: &[&str], caps: Option<&[&str]>) -> serde_json::Value {
    let mut p = serde_json::json!({
        "args": args, "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
    });
    if let Some(caps) = caps {
        p["capabilities"] = caps_json(caps);
    }
    p
}

fn container_output(env: &Env, id: &str) -> String {
    std::fs::read_to_string(output_file(env, id)).unwrap_or_default()
}

/// Waits until the container's output holds `needle`, and returns the output.
fn wait_output(env: &Env, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = container_output(env, id);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {id}'s output: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_escape(text: &str, what: &str) {
    assert!(!text.contains("ESCAPE"), "{what}: {text}");
}

fn oci_status(env: &Env, id: &str) -> String {
    let out = poc_ok(env, &["state", id]);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    state["status"].as_str().unwrap_or_default().to_string()
}

fn delete(env: &Env, id: &str) {
    poc_ok(env, &["delete", "--force", id]);
}

/// `--preserve-fds N` hands the caller's descriptors 3 .. 3+N to the container. When the caller
/// holds fewer, the numbers it did not fill were poc's own when the container's process set
/// itself up: the start gate's FIFO, the cgroup directory it was born in (a directory of the
/// host's, from which `..` climbs to the host's root), the exec stub. They must never be passed on.
#[test]
fn preserve_fds_beyond_what_the_caller_holds_are_refused() {
    let env = Env::new();
    let marker = host_marker(&env);
    let fds = ["/attack/oci", "fds", &marker.path, &marker.token];
    let bundle = Bundle::new(&env, "fds", &fds);
    // The test holds no descriptor beyond stdio in its children: Rust opens everything
    // close-on-exec.
    let out = create(&env, &bundle, "fds", &["--preserve-fds", "3"]);
    if out.status.success() {
        poc_ok(&env, &["start", "fds"]);
        let text = wait_output(&env, "fds", "fds done");
        delete(&env, "fds");
        panic!("create --preserve-fds 3 without the descriptors ran: {text}");
    }
    assert_error(&out, 125, "--preserve-fds");

    // What the caller does hold is passed on, and nothing else.
    let passed = env.dir.path().join("passed");
    std::fs::write(&passed, "the caller's").unwrap();
    let file = std::fs::File::open(&passed).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    bundle.write();
    let bundle_dir = bundle.dir.to_string_lossy().into_owned();
    let mut cmd = env.command(&[
        "create",
        "--bundle",
        &bundle_dir,
        "--preserve-fds",
        "1",
        "fds",
    ]);
    // SAFETY: between fork and exec, on descriptor numbers the child owns: the file onto 3, kept
    // open across exec (dup2 onto itself would leave it close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            let ret = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            match ret {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    let out = run_logged(cmd, &output_file(&env, "fds"));
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "fds"]);
    let text = wait_output(&env, "fds", "fds done");
    assert_no_escape(&text, "create --preserve-fds 1");
    assert!(text.contains("fd 3 mode 100000"), "{text}");
    assert!(!text.contains("fd 4"), "{text}");

    // exec --preserve-fds, into the running container, alike.
    let out = exec(
        &env,
        "fds",
        &process(&fds, Some(&DOCKER_CAPS)),
        &["--preserve-fds", "3"],
    );
    assert_no_escape(&container_output(&env, "fds"), "exec --preserve-fds 3");
    assert_error(&out, 125, "--preserve-fds");
    delete(&env, "fds");
}

/// Between `create` and `start` the init waits at its start gate holding poc's binary, the gate's
/// FIFO and the host's view until pivot. `exec` may join a created container: the process it runs
/// must get no more than the container's own (a process.json without `capabilities` is the
/// container's set, as runc gives it; a config.json without them is none at all), so that it can
/// neither reach the init (not dumpable: CAP_SYS_PTRACE would be needed) nor start it early by
/// writing to its gate, nor mount.
#[test]
fn exec_into_a_created_container_cannot_reach_its_init_or_start_it() {
    let env = Env::new();
    let marker = host_marker(&env);
    let poc = std::fs::metadata(env!("CARGO_BIN_EXE_poc")).unwrap();
    let (dev, ino) = (poc.dev().to_string(), poc.ino().to_string());
    let attack = [
        "/attack/oci",
        "init",
        "1",
        &marker.path,
        &marker.token,
        &dev,
        &ino,
    ];
    let bundle = Bundle::new(&env, "gate", &["sh", "-c", "echo started"]);
    let out = create(&env, &bundle, "gate", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let runc_default = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    for (caps, what) in [
        (Some(&DOCKER_CAPS[..]), "Docker's capabilities"),
        (Some(&runc_default[..]), "runc's default capabilities"),
        (None, "no capabilities in process.json"),
    ] {
        let out = exec(&env, "gate", &process(&attack, caps), &[]);
        let text = container_output(&env, "gate");
        assert_no_escape(&text, what);
        assert!(out.status.code().is_some(), "{what}: {}", stderr(&out));
        assert!(text.ends_with("init done\n"), "{what}: {text}");
        assert_eq!(oci_status(&env, "gate"), "created", "{what}: {text}");
        assert!(!text.contains("started"), "{what}: {text}");
    }
    poc_ok(&env, &["start", "gate"]);
    wait_output(&env, "gate", "started");
    delete(&env, "gate");

    // A config.json without capabilities: the init has none (runc's reading), not root's all.
    let mut bundle = Bundle::new(&env, "nocaps", &["grep", "^Cap", "/proc/self/status"]);
    bundle.config["process"]
        .as_object_mut()
        .unwrap()
        .remove("capabilities");
    let out = create(&env, &bundle, "nocaps", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "nocaps"]);
    let text = wait_output(&env, "nocaps", "CapAmb");
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(
            text.contains(&format!("{set}:\t0000000000000000")),
            "{set}: {text}"
        );
    }
    delete(&env, "nocaps");
}

/// Waits for `child` up to `limit`; kills it (our own child, by its pid) if it is still running.
fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An exec'd process reaches its command through poc's exec stub, and keeps the sync channel
/// across that one exec to report a command that cannot run. An exec makes a process dumpable:
/// the container's root, stopping each new process again and again with SIGSTOP (it lands right
/// after the exec, before the stub's first instruction), took the channel with pidfd_getfd.
/// Whoever holds it decides when `poc exec` returns (never: it waits for the channel's end) and
/// what it reports (an error, a forged pty master). The stub must run undumpable.
#[test]
fn a_container_cannot_take_the_sync_channel_of_a_process_exec_starts() {
    const ROUNDS: usize = 25;
    let env = Env::new();
    let bundle = Bundle::new(&env, "thief", &["/attack/oci", "steal"]);
    let out = create(&env, &bundle, "thief", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "thief"]);
    let file = env.dir.path().join("true.json");
    let p = process(&["true"], Some(&DOCKER_CAPS));
    std::fs::write(&file, serde_json::to_vec(&p).unwrap()).unwrap();
    let file = file.to_string_lossy().into_owned();
    let (mut hung, mut slowest) = (0, Duration::ZERO);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut child = env
            .command(&["exec", "--process", &file, "thief"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Held by a thief, an exec never returns; a slow machine (the emulated v2 guest) with a
        // process stopped hundreds of times on the way may take seconds.
        match wait_or_kill(&mut child, Duration::from_secs(60)) {
            Some(status) => {
                assert!(status.success(), "exec: {status}");
                slowest = slowest.max(started.elapsed());
            }
            None => {
                hung += 1;
                break;
            }
        }
    }
    let text = container_output(&env, "thief");
    assert_no_escape(&text, "the stub's sync channel");
    assert_eq!(
        hung, 0,
        "an exec never returned (slowest before: {slowest:?})"
    );
    // The thief was there: it stopped processes exec started (it misses those that come and go
    // between two of its looks; before the fix it took the channel of one in two it stopped).
    let watched = text.lines().filter(|l| l.starts_with("watched")).count();
    assert!(watched >= 5, "{text}");
    delete(&env, "thief");
}

/// `unshare --mount --net --propagation private -- poc ARGS...`: poc (and a container sharing its
/// namespaces) in a mount and a network namespace of the test's own, thrown away after, so that a
/// regression changes nothing of the machine's.
fn create_unshared(env: &Env, bundle: &Bundle, id: &str) -> Output {
    bundle.write();
    let mut cmd = env.command(&[]);
    let poc = Path::new(env!("CARGO_BIN_EXE_poc"));
    let bundle_dir = bundle.dir.to_string_lossy().into_owned();
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .arg(poc)
        .args(["create", "--bundle", &bundle_dir, id])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null());
    cmd = unshare;
    run_logged(cmd, &output_file(env, id))
}

/// A bundle's settings that would act on the host rather than the container are refused, as runc
/// refuses them: a sysctl outside the container's own namespaces (kernel.core_pattern is the
/// machine's; net.* without a network namespace of its own is the host's network), a key that is
/// not a dotted name, and a config without a mount namespace (poc would make the host's mounts
/// private and pivot_root the host's mount namespace into the bundle). Each is tried from poc in
/// a throwaway mount and network namespace, so that a regression hurts nothing; the values are
/// the current ones.
#[test]
fn bundle_settings_that_act_on_the_host_are_refused() {
    let env = Env::new();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let core_pattern = core_pattern.trim_end_matches('\n');
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let refused = |id: &str, needle: &str, change: &dyn Fn(&mut Bundle)| {
        let mut bundle = Bundle::new(&env, id, &["true"]);
        change(&mut bundle);
        let out = create_unshared(&env, &bundle, id);
        if out.status.success() {
            let _ = env.poc(&["delete", "--force", id]);
        }
        assert_error(&out, 125, needle);
    };
    let sysctl = |b: &mut Bundle, key: &str, value: &str| {
        b.config["linux"]["sysctl"] = serde_json::json!({ key: value });
    };
    let without = |b: &mut Bundle, kind: &str| {
        let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != kind);
    };
    refused("core", "kernel.core_pattern", &|b| {
        sysctl(b, "kernel.core_pattern", core_pattern)
    });
    refused("hostnet", "net.ipv4.ip_forward", &|b| {
        without(b, "network");
        sysctl(b, "net.ipv4.ip_forward", forward.trim());
    });
    refused("dotdot", "net.ipv4/../../kernel.core_pattern", &|b| {
        sysctl(b, "net.ipv4/../../kernel.core_pattern", "core")
    });
    refused("nomount", "mount namespace", &|b| without(b, "mount"));
    // What is the container's own is still set: net.* in its network namespace, IPC limits in its
    // IPC namespace.
    let mut bundle = Bundle::new(
        &env,
        "own",
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
            "/proc/sys/kernel/shmmni",
        ],
    );
    bundle.config["linux"]["sysctl"] = serde_json::json!({
        "net.ipv4.ip_unprivileged_port_start": "81", "kernel.shmmni": "1234",
    });
    let out = create(&env, &bundle, "own", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "own"]);
    wait_output(&env, "own", "81\n1234\n");
    delete(&env, "own");
}

/// The mounts made by the test's own process (its mount namespace is the host's).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(String::from)
        .collect()
}

/// A bundle's root filesystem is the container's to write (it persists from one run to the next)
/// and may come from a hostile image: symlinks planted where poc mounts, makes device nodes or
/// binds the console, aimed at the host's paths (absolute, or climbing with `..`). Everything
/// must land inside the root, or be refused: the host's directory stays empty, the host's file
/// keeps its content, owner and mode, and no mount appears on the host.
#[test]
fn a_hostile_rootfs_cannot_aim_mounts_devices_or_the_console_at_the_host() {
    let env = Env::new();
    let marker = host_marker(&env);
    std::os::unix::fs::chown(&marker.path, Some(1234), Some(1234)).unwrap();
    std::fs::set_permissions(&marker.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host_dir = env.dir.path().join("host-dir");
    std::fs::create_dir(&host_dir).unwrap();
    let volume = env.dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("x"), "from the volume").unwrap();
    let hosts = env.dir.path().join("hosts");
    std::fs::write(&hosts, "from the caller").unwrap();
    let check_host = |what: &str| {
        let meta = std::fs::metadata(&marker.path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&marker.path).unwrap(),
            marker.token,
            "{what}"
        );
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (1234, 0o600), "{what}");
        let made: Vec<_> = std::fs::read_dir(&host_dir).unwrap().collect();
        assert!(
            made.is_empty(),
            "{what}: made in the host's directory: {made:?}"
        );
        assert_eq!(mounts_under(env.dir.path()), Vec::<String>::new(), "{what}");
    };
    let climb = format!("../../../../../../../..{}", marker.path);

    // /dev from the root filesystem itself (no tmpfs over it), its nodes aimed at the host.
    let script = "cat /mnt/data/x; echo; cat /etc/hosts; echo; ls -l /dev/zero /dev/full /dev/tty";
    let mut bundle = Bundle::new(&env, "planted", &["sh", "-c", script]);
    let mounts = bundle.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/dev" && m["destination"] != "/dev/pts");
    mounts.push(
        serde_json::json!({"destination": "/mnt/data", "type": "bind",
        "source": volume.to_string_lossy(), "options": ["rbind", "rw"]}),
    );
    mounts.push(
        serde_json::json!({"destination": "/etc/hosts", "type": "bind",
        "source": hosts.to_string_lossy(), "options": ["bind", "ro"]}),
    );
    let rootfs = bundle.rootfs();
    symlink(&host_dir, rootfs.join("mnt")).unwrap();
    std::fs::write(rootfs.join("etc/hostname"), "oci\n").unwrap();
    symlink(
        "../../../../../../../../etc/hostname",
        rootfs.join("etc/hosts"),
    )
    .unwrap();
    symlink(&marker.path, rootfs.join("dev/zero")).unwrap();
    symlink(&climb, rootfs.join("dev/full")).unwrap();
    symlink(&climb, rootfs.join("dev/tty")).unwrap();
    let out = create(&env, &bundle, "planted", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "planted"]);
    let text = wait_output(&env, "planted", "/dev/tty");
    assert!(
        text.contains("from the volume\nfrom the caller\n"),
        "{text}"
    );
    // The mount points were made inside the root, where the links lead when resolved there.
    assert!(rootfs
        .join(host_dir.strip_prefix("/").unwrap())
        .join("data")
        .is_dir());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
        "oci\n"
    );
    delete(&env, "planted");
    check_host("planted links");
    assert_ne!(
        std::fs::read_to_string("/etc/hostname").unwrap(),
        "from the caller"
    );

    // A file's mount point aimed at the host's file: a link that does not resolve in the root.
    let mut bundle = Bundle::new(&env, "hostsfile", &["cat", "/etc/hosts"]);
    bundle.config["mounts"].as_array_mut().unwrap().push(
        serde_json::json!({"destination": "/etc/hosts", "type": "bind",
            "source": hosts.to_string_lossy(), "options": ["bind", "ro"]}),
    );
    symlink(&marker.path, bundle.rootfs().join("etc/hosts")).unwrap();
    let out = create(&env, &bundle, "hostsfile", &[]);
    if out.status.success() {
        poc_ok(&env, &["start", "hostsfile"]);
        wait_output(&env, "hostsfile", "from the caller");
        delete(&env, "hostsfile");
    } else {
        assert_error(&out, 125, "/etc/hosts");
    }
    check_host("/etc/hosts -> the host's file");

    // The console, bound over /dev/console for a terminal, aimed at the host's file.
    let socket = env.dir.path().join("console.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let socket = socket.to_string_lossy().into_owned();
    for (id, target) in [("console", marker.path.as_str()), ("console2", &climb)] {
        let mut bundle = Bundle::new(&env, id, &["true"]);
        bundle.config["process"]["terminal"] = serde_json::json!(true);
        let mounts = bundle.config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev" && m["destination"] != "/dev/pts");
        std::fs::create_dir_all(bundle.rootfs().join("dev/pts")).unwrap();
        symlink(target, bundle.rootfs().join("dev/console")).unwrap();
        let out = create(&env, &bundle, id, &["--console-socket", &socket]);
        if out.status.success() {
            delete(&env, id);
        }
        check_host(&format!("/dev/console -> {target}"));
    }

    // /proc, where poc mounts procfs, aimed at the host's directory.
    let bundle = Bundle::new(&env, "proclink", &["true"]);
    std::fs::remove_dir(bundle.rootfs().join("proc")).unwrap();
    symlink(&host_dir, bundle.rootfs().join("proc")).unwrap();
    let out = create(&env, &bundle, "proclink", &[]);
    assert_error(&out, 125, "/proc");
    check_host("/proc -> the host's directory");
}

/// runc's CVE-2024-21626 on the OCI path: a working directory through one of the init's or the
/// exec'd process's descriptors (/proc/self/fd/N) would start the command in the host's
/// filesystem; and CVE-2019-5736: a command interpreted by /proc/self/exe would run, and expose,
/// the runtime's binary. Both are refused, for `create` and `exec --process` alike.
#[test]
fn runc_cwd_and_exe_escapes_are_refused_on_the_oci_path() {
    let env = Env::new();
    let marker = host_marker(&env);
    let climb = ["/attack/attack", "climb", &marker.path, &marker.token];
    for n in 3..=9 {
        let id = format!("cwd{n}");
        let mut bundle = Bundle::new(&env, &id, &climb);
        bundle.config["process"]["cwd"] = serde_json::json!(format!("/proc/self/fd/{n}"));
        let out = create(&env, &bundle, &id, &[]);
        if out.status.success() {
            poc_ok(&env, &["start", &id]);
            let text = wait_output(&env, &id, "cwd");
            delete(&env, &id);
            panic!("create with cwd /proc/self/fd/{n} ran: {text}");
        }
        assert_error(&out, 125, "working directory");
    }
    let script = "printf '#!/proc/self/exe\\n' > /evil && chmod +x /evil && exec sleep 100";
    let bundle = Bundle::new(&env, "target", &["sh", "-c", script]);
    let out = create(&env, &bundle, "target", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "target"]);
    for n in 3..=12 {
        let mut p = process(&climb, Some(&DOCKER_CAPS));
        p["cwd"] = serde_json::json!(format!("/proc/self/fd/{n}"));
        let out = exec(&env, "target", &p, &[]);
        assert_no_escape(
            &container_output(&env, "target"),
            &format!("exec cwd fd {n}"),
        );
        assert_error(&out, 125, "working directory");
    }
    let poc = std::fs::read(env!("CARGO_BIN_EXE_poc")).unwrap();
    let out = exec(
        &env,
        "target",
        &process(&["/evil"], Some(&DOCKER_CAPS)),
        &[],
    );
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(std::fs::read(env!("CARGO_BIN_EXE_poc")).unwrap(), poc);
    delete(&env, "target");
}

/// A container may join another's pid namespace (a pod's). Its prestart and createRuntime hooks
/// are the runtime's: they run in the runtime's namespaces (runtime spec), with the host's root and
/// every capability. poc joined the pid namespace itself, for the init it clones, so the hooks it
/// ran afterwards were born in the pod's namespace too, where the pod's processes could see,
/// signal (stop, kill) and, given CAP_SYS_PTRACE, enter them.
#[test]
fn the_runtimes_hooks_never_run_in_a_pid_namespace_the_container_joins() {
    let env = Env::new();
    let token = format!("hook-token-{}", std::process::id());
    let pod = Bundle::new(&env, "pod", &["/attack/oci", "watch", &token]);
    let out = create(&env, &pod, "pod", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    poc_ok(&env, &["start", "pod"]);
    wait_output(&env, "pod", "watching");
    let state: serde_json::Value =
        serde_json::from_slice(&poc_ok(&env, &["state", "pod"]).stdout).unwrap();
    let pid_ns = format!("/proc/{}/ns/pid", state["pid"]);

    let mut member = Bundle::new(&env, "member", &["true"]);
    for ns in member.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "pid" {
            ns["path"] = serde_json::json!(pid_ns);
        }
    }
    let hook = serde_json::json!({
        "path": "/bin/sh", "args": ["sh", "-c", format!("sleep 0.5 # {token}")],
    });
    member.config["hooks"] = serde_json::json!({"prestart": [hook], "createRuntime": [hook]});
    let out = create(&env, &member, "member", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The watcher goes round /proc in milliseconds; each hook lived half a second.
    std::thread::sleep(Duration::from_millis(100));
    let text = container_output(&env, "pod");
    assert!(!text.contains("SAW"), "{text}");
    assert_eq!(oci_status(&env, "pod"), "running", "{text}");
    delete(&env, "member");
    delete(&env, "pod");
}
