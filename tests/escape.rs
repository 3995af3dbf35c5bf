//! Attacks from inside a container, performed for real: each test is one story of a hostile image or
//! a compromised process trying to reach the host (tests/attack/attack.c does the work in the
//! container), and asserts the refusal. Races repeat enough to have caught the bugs they guard.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pty::{wait_exit, Pty};
use common::{assert_error, attack_dir, is_cgroup_v1, read_trimmed, stderr, stdout, Env};

/// A file only the host can see, holding a token no container may ever read.
struct HostMarker {
    path: String,
    token: String,
}

fn host_marker(env: &Env) -> HostMarker {
    let token = format!(
        "host-only-{}-{}",
        std::process::id(),
        env.cgroup_parent.len()
    );
    let path = env.dir.path().join("host-marker");
    std::fs::write(&path, &token).unwrap();
    HostMarker {
        path: path.to_string_lossy().into_owned(),
        token,
    }
}

fn attack_volume() -> String {
    format!("{}:/attack:ro", attack_dir().display())
}

/// `poc run --rm` of the attack program (or a shell script using it) in a busybox container.
fn attack(env: &Env, flags: &[&str], command: &[&str]) -> std::process::Output {
    let args = attack_args(&["run", "--rm"], flags, command);
    env.poc(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `poc run -d --name NAME` of a busybox container with the attack programs at /attack.
fn attacker(env: &Env, name: &str, flags: &[&str], command: &[&str]) {
    let args = attack_args(&["--name", name], flags, command);
    env.run_detached(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// `FIRST... --network none -v ATTACK:/attack:ro FLAGS... busybox COMMAND...`
fn attack_args(first: &[&str], flags: &[&str], command: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--network".into(),
        "none".into(),
        "-v".into(),
        attack_volume(),
    ]);
    args.extend(flags.iter().map(|s| s.to_string()));
    args.push("busybox".into());
    args.extend(command.iter().map(|s| s.to_string()));
    args
}

fn assert_no_escape(out: &std::process::Output, what: &str) {
    let text = format!("{}{}", stdout(out), stderr(out));
    assert!(!text.contains("ESCAPE"), "{what}: {text}");
}

fn init_pid(env: &Env, name: &str) -> i32 {
    let out = env.poc(&["inspect", name]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = if json.is_array() { &json[0] } else { &json };
    state["State"]["Pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no init pid in {state}")) as i32
}

fn container_id(env: &Env, name: &str) -> String {
    read_trimmed(&env.state_root().join("names").join(name))
}

/// Runs `setup` (a shell snippet) then the descriptor scanner in container `name`, which watches
/// every other process's descriptors, cwd and exe for the host marker and poc's binary; runs `exec`
/// in the container `rounds` times meanwhile, each expected to exit with `code`; and asserts the
/// scanner never got out (it stops, and its container with it, once it does).
#[allow(clippy::too_many_arguments)]
fn exec_under_watch(
    env: &Env,
    name: &str,
    flags: &[&str],
    setup: &str,
    exec: &[&str],
    rounds: usize,
    code: i32,
) {
    let marker = host_marker(env);
    // A mount only the host has, named by the token: seen in a process's mountinfo, it is the
    // host's mount table.
    let _mount = HostMount::new(&env.dir.path().join("host-mount"), &marker.token);
    let poc = std::fs::metadata(env!("CARGO_BIN_EXE_poc")).unwrap();
    // With CAP_SYS_PTRACE the process's exe, poc's binary until it execs, can be opened: such a
    // container can trace that process, which is not yet confined (as with runc); not checked.
    let (dev, ino) = match flags.contains(&"SYS_PTRACE") {
        true => (0, 0),
        false => (poc.dev(), poc.ino()),
    };
    let script = format!(
        "{setup} exec /attack/attack fdscan 1000000000 {} {} {dev} {ino}",
        marker.path, marker.token,
    );
    attacker(env, name, flags, &["sh", "-c", &script]);
    let mut args = vec!["exec", name];
    args.extend_from_slice(exec);
    for round in 0..rounds {
        let out = env.poc(&args);
        if out.status.code() != Some(code) || round % 10 == 9 || round + 1 == rounds {
            let logs = stdout(&env.poc(&["logs", name]));
            assert!(
                !logs.contains("ESCAPE"),
                "after {} execs: {logs}",
                round + 1
            );
            assert_eq!(
                out.status.code(),
                Some(code),
                "exec {round}: {}",
                stderr(&out)
            );
        }
    }
    assert!(env.poc(&["rm", "-f", name]).status.success());
}

/// A tmpfs mounted on the host for a test, its source `source`; unmounted when dropped.
struct HostMount(std::path::PathBuf);

impl HostMount {
    fn new(dir: &Path, source: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some(source),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=4k"),
        )
        .unwrap();
        HostMount(dir.to_path_buf())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_process_watching_proc_during_exec_finds_no_host_descriptor_or_poc_binary() {
    let env = Env::with_busybox();
    // The review saw the cgroup directory fd after 3 to 52 execs.
    exec_under_watch(&env, "watcher", &[], "", &["true"], 150, 0);
    env.assert_clean();
}

#[test]
fn an_exec_is_never_seen_in_the_container_with_the_hosts_root_or_mounts() {
    // The review's way out: the exec'd process waited for poc's go in the container's pid
    // namespace but the host's mount namespace. Any container read the host's mount table through
    // its /proc/PID/mountinfo; one with CAP_SYS_PTRACE walked the host's files through its root.
    let env = Env::with_busybox();
    exec_under_watch(
        &env,
        "tracer",
        &["--cap-add", "SYS_PTRACE"],
        "",
        &["true"],
        60,
        0,
    );
    exec_under_watch(&env, "reader", &[], "", &["true"], 60, 0);
    env.assert_clean();
}

#[test]
fn neither_run_nor_exec_hands_the_callers_session_keyring_to_the_container() {
    // The review's leak: `poc exec` kept the caller's session keyring, whose keys a container
    // allowed keyctl (seccomp unconfined) could read.
    let env = Env::with_busybox();
    let caller = format!("poc-test-caller-{}", std::process::id());
    let in_callers_keyring = |args: &[&str]| {
        let mut cmd = env.command(args);
        let name = std::ffi::CString::new(caller.clone()).unwrap();
        // SAFETY: one keyctl(2) between fork and exec; the session keyring is kept across exec.
        unsafe {
            cmd.pre_exec(
                move || match libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) {
                    -1 => Err(std::io::Error::last_os_error()),
                    _ => Ok(()),
                },
            );
        }
        let out = cmd.output().unwrap();
        let text = stdout(&out);
        assert!(
            text.contains("session keyring keyring;"),
            "{args:?}: {text}{}",
            stderr(&out)
        );
        assert!(!text.contains(&caller), "{args:?}: {text}");
    };
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    let run = attack_args(
        &["run", "--rm"],
        &unconfined,
        &["/attack/attack", "keyring"],
    );
    in_callers_keyring(&run.iter().map(String::as_str).collect::<Vec<_>>());
    attacker(&env, "keys", &unconfined, &["sleep", "1000"]);
    in_callers_keyring(&["exec", "keys", "/attack/attack", "keyring"]);
    assert!(env.poc(&["rm", "-f", "keys"]).status.success());
    env.assert_clean();
}

#[test]
fn a_container_that_nests_directories_past_pocs_descriptor_limit_is_still_removed() {
    // The review's way to make a container impossible to remove: `rm` held a descriptor per level
    // of its writable layer, and 1100 levels exceed a limit of 1024 (EMFILE, every time).
    let env = Env::with_busybox();
    let nest = "/attack/attack nest 1100 /root && sleep 1000";
    attacker(&env, "nester", &[], &["sh", "-c", nest]);
    let id = container_id(&env, "nester");
    env.wait_for_log(&id, "nested 1100");
    let mut rm = env.command(&["rm", "-f", &id]);
    // SAFETY: one setrlimit(2) between fork and exec; the limit is kept across exec.
    unsafe {
        rm.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let out = rm.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn what_a_container_writes_to_its_etc_files_lands_in_the_store_not_the_state_root() {
    // The review filled the state root (a small tmpfs under /run on real hosts) with 60 MB
    // written to /etc/hostname, a bind mount of a file there.
    let env = Env::with_busybox();
    let id = env.run_detached(&["busybox", "sleep", "1000"]);
    for file in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
        let write = format!("echo written-by-the-container >> {file}");
        let out = env.poc(&["exec", &id, "sh", "-c", &write]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
    }
    let holding = |root: &Path| -> usize {
        let out = Command::new("grep")
            .args(["-rl", "written-by-the-container"])
            .arg(root)
            .output()
            .unwrap();
        stdout(&out).lines().count()
    };
    assert_eq!(holding(&env.state_root()), 0);
    assert_eq!(holding(&env.store().join("containers").join(&id)), 3);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn an_exec_never_opens_the_containers_dev_null_with_the_callers_descriptors() {
    // The second review's find: the exec'd process opened /dev/null for its stdin inside the
    // container, where root made it a link to /proc/self/fd/2, which was then still the caller's
    // stderr: the process got the caller's terminal or file, read-write.
    let env = Env::with_busybox();
    let id = env.run_detached(&[
        "busybox",
        "sh",
        "-c",
        "rm /dev/null && ln -s /proc/self/fd/2 /dev/null && echo swapped; sleep 1000",
    ]);
    env.wait_for_log(&id, "swapped");
    let caller_stderr = env.dir.path().join("callers-stderr");
    let file = std::fs::File::create(&caller_stderr).unwrap();
    let out = env
        .command(&["exec", &id, "readlink", "/proc/self/fd/0"])
        .stderr(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdin = stdout(&out);
    assert!(!stdin.contains("callers-stderr"), "stdin is {stdin}");
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn a_command_interpreted_by_proc_self_exe_never_runs_or_exposes_poc() {
    // CVE-2019-5736: a command whose interpreter is /proc/self/exe ran the runtime's own binary
    // in the container, where another process opened it through /proc/PID/exe to overwrite it.
    // Here the interpreter is the sealed stub, which refuses such a command line (127).
    let env = Env::with_busybox();
    let setup = "printf '#!/proc/self/exe\\n' > /evil && chmod +x /evil &&";
    exec_under_watch(&env, "hijack", &[], setup, &["/evil"], 40, 127);
    env.assert_clean();
}

#[test]
fn exec_refuses_a_working_directory_swapped_for_a_descriptor_link() {
    let env = Env::with_busybox();
    let marker = host_marker(&env);
    attacker(&env, "swapper", &["-w", "/work"], &["sleep", "1000"]);
    for n in 3..=20 {
        let link = format!("rm -rf /work; ln -s /proc/self/fd/{n} /work");
        let out = env.poc(&["exec", "-w", "/", "swapper", "sh", "-c", &link]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = env.poc(&[
            "exec",
            "swapper",
            "/attack/attack",
            "climb",
            &marker.path,
            &marker.token,
        ]);
        assert_no_escape(&out, &format!("/work -> /proc/self/fd/{n}"));
        assert_error(&out, 125, "working directory");
    }
    assert!(env.poc(&["rm", "-f", "swapper"]).status.success());
    env.assert_clean();
}

#[test]
fn a_working_directory_through_proc_self_fd_never_lands_on_the_host() {
    let env = Env::with_busybox();
    let marker = host_marker(&env);
    let climb = ["/attack/attack", "climb", &marker.path, &marker.token];
    for n in 3..=12 {
        let dir = format!("/proc/self/fd/{n}");
        let out = attack(&env, &["-w", &dir], &climb);
        assert_no_escape(&out, &format!("run -w {dir}"));
        assert_error(&out, 125, "working directory");
        let out = attack(&env, &["-d", "-w", &dir], &climb);
        assert_no_escape(&out, &format!("run -d -w {dir}"));
        assert_error(&out, 125, "working directory");
    }
    attacker(&env, "target", &[], &["sleep", "1000"]);
    for n in 3..=14 {
        let dir = format!("/proc/self/fd/{n}");
        let mut args = vec!["exec", "-w", &dir, "target"];
        args.extend_from_slice(&climb);
        let out = env.poc(&args);
        assert_no_escape(&out, &format!("exec -w {dir}"));
        assert_error(&out, 125, "working directory");
    }
    assert!(env.poc(&["rm", "-f", "target"]).status.success());
    env.assert_clean();
}

/// The busybox image again, with `/app` a symlink to one of the init's descriptors.
fn image_with_app_link(env: &Env, target: &str) {
    let rootfs = env.store().join("images/busybox/rootfs");
    let tarball = env.dir.path().join("app-link.tar");
    let file = std::fs::File::create(&tarball).unwrap();
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &rootfs).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    tar.append_link(&mut header, "app", target).unwrap();
    tar.finish().unwrap();
    let out = env.poc(&["init", "--from", &tarball.to_string_lossy(), "applink"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_image_whose_workdir_links_to_a_descriptor_cannot_reach_the_host() {
    let env = Env::with_busybox();
    let marker = host_marker(&env);
    image_with_app_link(&env, "/proc/self/fd/8");
    let volume = attack_volume();
    for detach in [false, true] {
        let mut args = vec![
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &volume,
            "-w",
            "/app",
        ];
        if detach {
            args.push("-d");
        }
        args.extend_from_slice(&[
            "applink",
            "/attack/attack",
            "climb",
            &marker.path,
            &marker.token,
        ]);
        let out = env.poc(&args);
        assert_no_escape(&out, "-w /app");
        assert_error(&out, 125, "working directory");
    }
    env.assert_clean();
}

#[test]
fn device_nodes_a_container_makes_cannot_be_opened() {
    let env = Env::with_busybox();
    let nodes = [
        ("kvm", "c 10 232"),
        ("fuse", "c 10 229"),
        ("loop-control", "c 10 237"),
        ("hwrng", "c 10 183"),
        ("tty1", "c 4 1"),
        ("sda", "b 8 0"),
    ];
    let mut script = String::new();
    for (name, spec) in nodes {
        script.push_str(&format!(
            "mknod /tmp/{name} {spec} || echo mknod {name} failed; "
        ));
    }
    script.push_str("/attack/attack opendev");
    for (name, _) in nodes {
        script.push_str(&format!(" /tmp/{name}"));
    }
    script.push_str(" /dev/null /dev/zero /dev/urandom");
    let out = attack(&env, &[], &["sh", "-c", &script]);
    let text = stdout(&out);
    assert!(
        !text.contains("failed"),
        "mknod is allowed, as Docker: {text}"
    );
    for (name, _) in nodes {
        assert!(
            text.contains(&format!("open /tmp/{name} errno 1 ")),
            "{name} must be refused (EPERM): {text}{}",
            stderr(&out)
        );
    }
    for dev in ["null", "zero", "urandom"] {
        assert!(text.contains(&format!("open /dev/{dev} ok")), "{text}");
    }
    env.assert_clean();
}

#[test]
fn a_new_user_namespace_cannot_mount_cgroupfs_to_raise_the_containers_limits() {
    let env = Env::with_busybox();
    attacker(
        &env,
        "raiser",
        &["--mem", "64M"],
        &[
            "sh",
            "-c",
            "/attack/attack cgroup-raise; echo attempted; sleep 1000",
        ],
    );
    env.wait_for_log("raiser", "attempted");
    let logs = stdout(&env.poc(&["logs", "raiser"]));
    assert!(
        logs.contains("unshare-user-mnt-cgroup errno 1 "),
        "the new user namespace must be refused: {logs}"
    );
    let id = container_id(&env, "raiser");
    assert_eq!(
        read_trimmed(&env.memory_limit_file(&id)),
        (64u64 << 20).to_string()
    );
    assert!(env.poc(&["rm", "-f", "raiser"]).status.success());
    env.assert_clean();
}

#[test]
fn syscalls_docker_refuses_are_refused_with_eperm() {
    let env = Env::with_busybox();
    let out = attack(&env, &[], &["/attack/attack", "syscalls"]);
    let text = stdout(&out);
    for call in [
        "keyctl",
        "add_key",
        "unshare-user",
        "unshare-net",
        "io_uring_setup",
        "perf_event_open",
        "userfaultfd",
        "bpf",
        "mount",
        "umount",
        "setns",
        "personality",
        "clone-newuser",
        "open_by_handle_at",
        "kexec_load",
        "init_module",
    ] {
        assert!(
            text.contains(&format!("{call} errno 1 ")),
            "{call} must be refused with EPERM: {text}{}",
            stderr(&out)
        );
    }
    env.assert_clean();
}

#[test]
fn the_default_process_is_confined_like_dockers_and_tighter() {
    let env = Env::with_busybox();
    // sysrq h only prints help: were the trigger writable, b would reboot the host. A masked file
    // (/proc/keys: the host's keys) must be the null device bound over it; kcore, which the test
    // read before, is missing from kernels built without it, as here.
    let script = "grep -E '^(Seccomp|CapEff|CapBnd|NoNewPrivs):' /proc/self/status; \
        echo h > /proc/sysrq-trigger && echo sysrq-written; \
        echo 1 > /proc/sys/vm/drop_caches && echo sysctl-written; \
        echo keys=$(stat -c %t:%T /proc/keys); \
        mount -t tmpfs tmpfs /mnt && echo mounted; \
        unshare -U true && echo unshared; \
        echo procs=$(ls /proc | grep -c '^[0-9]')";
    let out = attack(&env, &[], &["sh", "-c", script]);
    let text = stdout(&out);
    for want in [
        "Seccomp:\t2",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "NoNewPrivs:\t1",
        "keys=1:3",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    for refused in ["sysrq-written", "sysctl-written", "mounted", "unshared"] {
        assert!(!text.contains(refused), "{refused}: {text}");
    }
    let procs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(procs <= 4, "host processes visible: {text}");
    env.assert_clean();
}

/// Runs `program args...` on the host as uid and gid 65534 (nobody), with no groups; what it
/// printed, or None if it could not even be started (exec refused).
fn as_nobody(program: &Path, arg0: Option<&str>, args: &[&str]) -> Option<std::process::Output> {
    let mut cmd = Command::new(program);
    if let Some(arg0) = arg0 {
        cmd.arg0(arg0);
    }
    let out = cmd.args(args).uid(65534).gid(65534).output().ok()?;
    out.status.success().then_some(out)
}

#[test]
fn host_users_cannot_read_a_containers_secrets_or_run_what_it_planted() {
    let env = Env::with_busybox();
    // Only poc's own modes may protect its files: open up the test's private directory.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.run_detached(&[
        "--name",
        "secrets",
        "--network",
        "none",
        "-e",
        "DB_PASSWORD=hunter2",
        "busybox",
        "sh",
        "-c",
        "cp /bin/busybox /planted && chmod 4755 /planted && echo the-log-secret && sleep 1000",
    ]);
    env.wait_for_log("secrets", "the-log-secret");
    let id = container_id(&env, "secrets");
    let config = env
        .state_root()
        .join("containers")
        .join(&id)
        .join("config.json");
    let layer = env.store().join("containers").join(&id);
    let planted = layer.join("upper/planted");
    assert!(
        planted.exists(),
        "the container's file is in its upper layer"
    );
    let cat = Path::new("/bin/cat");
    for file in [config.clone(), layer.join("container.log")] {
        if let Some(out) = as_nobody(cat, None, &[&file.to_string_lossy()]) {
            panic!("uid 65534 read {}: {}", file.display(), stdout(&out));
        }
    }
    if let Some(out) = as_nobody(&planted, Some("id"), &["-u"]) {
        panic!(
            "uid 65534 ran the planted setuid file: euid {}",
            stdout(&out)
        );
    }
    for private in [env.store(), env.state_root(), layer.clone()] {
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", private.display());
    }
    for file in [config, layer.join("container.log")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert!(env.poc(&["rm", "-f", "secrets"]).status.success());
    env.assert_clean();
}

#[test]
fn a_process_left_behind_by_exec_never_reads_the_callers_terminal() {
    let env = Env::with_busybox();
    attacker(&env, "lurker", &[], &["sleep", "1000"]);
    let mut cmd = env.command(&[
        "exec",
        "-i",
        "lurker",
        "/attack/attack",
        "linger",
        "3",
        "/stolen",
    ]);
    let mut pty = Pty::spawn(&mut cmd, 24, 80);
    let started = Instant::now();
    assert_eq!(wait_exit(&mut pty.child), 0);
    // The administrator types their next command once `poc exec` has returned.
    pty.send("secret-typed-after-exec\n");
    std::thread::sleep(
        Duration::from_secs(4).saturating_sub(started.elapsed()) + Duration::from_secs(1),
    );
    let out = env.poc(&["exec", "lurker", "cat", "/stolen"]);
    assert!(
        !stdout(&out).contains("secret-typed-after-exec"),
        "the lingering process read the caller's terminal: {}",
        stdout(&out)
    );
    assert!(env.poc(&["rm", "-f", "lurker"]).status.success());
    env.assert_clean();
}

#[test]
fn run_and_rmi_refuse_image_names_that_leave_the_store() {
    let env = Env::with_busybox();
    let outside = env.dir.path().join("outside");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(env.store().join("images/busybox"))
        .arg(&outside)
        .status()
        .unwrap();
    assert!(copied.success());
    let outside_name = outside.to_string_lossy().into_owned();
    for name in [
        outside_name.as_str(),
        "../../outside",
        "../images/busybox",
        "a/b",
    ] {
        let out = env.poc(&["run", "--rm", "--network", "none", name, "true"]);
        assert_error(&out, 125, "image name");
        let out = env.poc(&["rmi", name]);
        assert_error(&out, 125, "image name");
    }
    assert!(
        outside.join("image.json").exists(),
        "rmi removed a directory outside the store"
    );
    env.assert_clean();
}

#[test]
fn exec_user_lookup_never_opens_what_the_container_put_in_place_of_etc_passwd() {
    // poc reads a running container's /etc/passwd for `exec -u` from the host, outside the
    // container's device rules: a device node or FIFO planted there must never be opened. A writer
    // blocked on a FIFO tells whether anyone opened it for reading.
    let env = Env::with_busybox();
    env.run_detached(&[
        "--name",
        "fifo",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "rm /etc/passwd && mkfifo /etc/passwd && echo planted && \
         (echo x > /etc/passwd; echo WRITER-RELEASED) & sleep 1000",
    ]);
    env.wait_for_log("fifo", "planted");
    // `true` reads no file of its own (`id` would open /etc/passwd itself).
    let out = env.poc(&["exec", "-u", "0", "fifo", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    let logs = stdout(&env.poc(&["logs", "fifo"]));
    assert!(
        !logs.contains("WRITER-RELEASED"),
        "poc opened the FIFO: {logs}"
    );
    assert!(env.poc(&["rm", "-f", "fifo"]).status.success());
    env.assert_clean();
}

#[test]
fn a_containers_router_advertisement_reaches_neither_the_host_nor_another_container() {
    // Found by the red-team review: a container's forged IPv6 router advertisement gave the host
    // (and other containers) an address, routes and, with a router lifetime, a default route via
    // the container. This one advertises no default route, only a prefix, so that a failure here
    // leaves nothing on the host but an address on the test's own bridge.
    let env = Env::with_busybox();
    let volume = attack_volume();
    env.run_detached(&["--name", "victim", "busybox", "sleep", "1000"]);
    let pid = std::process::id();
    let groups = [
        0xfd5c,
        0xa000 | (pid & 0xfff),
        0xa000 | ((pid >> 12) & 0xfff),
        0xa000 | (env.cgroup_parent.len() as u32 & 0xfff),
    ];
    let hex: String = groups.iter().map(|g| format!("{g:04x}")).collect();
    let shown: String = groups
        .iter()
        .map(|g| format!("{g:x}"))
        .collect::<Vec<_>>()
        .join(":");
    let out = env.poc(&[
        "run",
        "--rm",
        "-v",
        &volume,
        "busybox",
        "/attack/attack",
        "ra",
        &hex,
    ]);
    assert!(
        stdout(&out).contains("ra ok"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    std::thread::sleep(Duration::from_secs(1));
    for what in ["addr", "route"] {
        let host = Command::new("ip")
            .args(["-6", what, "show", "dev", &env.bridge])
            .output()
            .unwrap();
        assert!(
            !stdout(&host).contains(&shown),
            "the host took the container's advertisement: {}",
            stdout(&host)
        );
    }
    let inside = env.poc(&["exec", "victim", "ip", "-6", "addr"]);
    assert!(!stdout(&inside).contains(&shown), "{}", stdout(&inside));
    assert!(env.poc(&["rm", "-f", "victim"]).status.success());
    env.assert_clean();
}

#[test]
fn volumes_over_proc_sys_or_dev_are_refused() {
    let env = Env::with_busybox();
    let host = env.dir.path().join("volume");
    std::fs::create_dir(&host).unwrap();
    for target in [
        "/proc",
        "/proc/sys",
        "/sys",
        "/sys/fs/cgroup",
        "/dev",
        "/dev/shm",
        "/proc/../proc",
    ] {
        let volume = format!("{}:{target}", host.display());
        let out = env.poc(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &volume,
            "busybox",
            "true",
        ]);
        assert_error(&out, 125, target.trim_end_matches("/../proc"));
    }
    let made: Vec<_> = std::fs::read_dir(&host).unwrap().collect();
    assert!(
        made.is_empty(),
        "poc made files in the host directory: {made:?}"
    );
    env.assert_clean();
}

/// (hierarchy, path) pairs from a /proc/PID/cgroup file.
fn cgroup_paths(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

#[test]
fn the_container_has_its_own_leaf_in_every_hierarchy_including_named_ones() {
    let env = Env::with_busybox();
    env.run_detached(&[
        "--name",
        "leafy",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let id = container_id(&env, "leafy");
    let pid = init_pid(&env, "leafy");
    let want = format!("{}/{id}", env.cgroup_parent);
    let paths = cgroup_paths(pid);
    assert!(!paths.is_empty());
    for (hierarchy, path) in &paths {
        assert_eq!(path, &want, "hierarchy {hierarchy:?} of the init");
    }
    // release_agent lives only at a hierarchy's root, which the container must not see.
    let out = env.poc(&[
        "exec",
        "leafy",
        "sh",
        "-c",
        "find /sys/fs/cgroup -name release_agent | wc -l",
    ]);
    assert_eq!(stdout(&out).trim(), "0", "{}", stderr(&out));
    assert!(env.poc(&["rm", "-f", "leafy"]).status.success());
    env.assert_clean();
}

#[test]
fn cgroup_files_inside_show_the_containers_limits_read_only() {
    let env = Env::with_busybox();
    let (file, value) = if is_cgroup_v1() {
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            (96u64 << 20).to_string(),
        )
    } else {
        ("/sys/fs/cgroup/memory.max", (96u64 << 20).to_string())
    };
    let script = format!("cat {file}; echo 1073741824 > {file} && echo raised; cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null");
    let out = attack(
        &env,
        &["--mem", "96M", "--pids", "77"],
        &["sh", "-c", &script],
    );
    let text = stdout(&out);
    assert!(
        text.lines().next() == Some(value.as_str()),
        "{text}{}",
        stderr(&out)
    );
    assert!(text.contains("77"), "pids.max is visible: {text}");
    assert!(!text.contains("raised"), "{text}");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    env.assert_clean();
}

/// A hostile image plants links to host paths in its writable layer, then its container is removed
/// (foreground `--rm`, and `rm -f` of a running one): removing the layer must unlink the links,
/// never what they name on the host.
#[test]
fn removing_a_container_never_follows_the_links_it_planted_in_its_layer() {
    let env = Env::with_busybox();
    let canary = env.dir.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "host data").unwrap();
    let target = canary.display().to_string();
    let plant = format!(
        "ln -s {target} /planted; mkdir -p /deep/er; ln -s {target} /deep/er/dir-link; \
         ln -s {target}/keep /deep/file-link; ln -s {target} /tmp/tmp-link; echo planted"
    );
    let out = env.poc(&["run", "--rm", "busybox", "sh", "-c", &plant]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "planted\n");
    let id = env.run_detached(&["busybox", "sh", "-c", &format!("{plant}; sleep 1000")]);
    env.wait_for_log(&id, "planted");
    let out = env.poc(&["rm", "-f", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(canary.join("keep")).unwrap(),
        "host data",
        "removal followed a planted link"
    );
    assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 1);
    env.assert_clean();
}
