//! `poc run`: user stories about isolation, limits, exit codes and leaving nothing behind.

mod common;

use std::time::Duration;

use common::{assert_error, hierarchy_of, is_cgroup_v1, read_trimmed, stderr, stdout, Env};

fn run_sh(env: &Env, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    env.poc(&args)
}

#[test]
fn run_prints_and_returns_the_commands_exit_status() {
    let env = Env::with_busybox();
    let out = run_sh(&env, &["--mem", "64M"], "echo hi; exit 3");
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn the_command_is_pid_1_and_sees_no_host_process() {
    let env = Env::with_busybox();
    let out = run_sh(&env, &[], "echo $$; ls /proc | grep -c '^[0-9]'");
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines[0], "1", "{}", stderr(&out));
    let visible: usize = lines[1].parse().unwrap();
    assert!(
        visible <= 3,
        "only the container's processes are visible, saw {visible}"
    );
    env.assert_clean();
}

#[test]
fn every_namespace_differs_from_the_hosts() {
    let env = Env::with_busybox();
    let kinds = ["pid", "ipc", "uts", "mnt", "net", "cgroup"];
    let script: String = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}; "))
        .collect();
    let out = run_sh(&env, &[], &script);
    let inside: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(inside.len(), kinds.len(), "{}", stderr(&out));
    for (kind, seen) in kinds.iter().zip(&inside) {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert_ne!(
            host.to_string_lossy(),
            *seen,
            "{kind} namespace is shared with the host"
        );
    }
}

#[test]
fn hostname_and_etc_files_are_the_containers() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--hostname", "box"],
        "hostname; cat /etc/hostname; grep box /etc/hosts; cat /proc/self/cgroup",
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["box", "box"], "{}", stderr(&out));
    // The address's names: the hostname, then the container's name (generated here).
    assert!(lines[2].split_whitespace().nth(1) == Some("box"), "{text}");
    // The cgroup namespace is rooted at the container's own leaf.
    assert!(lines[3..].iter().all(|l| l.ends_with(":/")), "{text}");
    env.assert_clean();
}

#[test]
fn root_is_an_overlay_with_proc_sys_and_dev_mounted_and_host_paths_masked() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--network", "none"],
        "cat /proc/mounts; echo ---; ls /dev; echo ---; wc -c < /proc/keys; ls /sys/firmware | wc -l; \
         echo x > /proc/sys/kernel/domainname 2>/dev/null && echo writable || echo refused; \
         cat /proc/net/dev | tail -n +3 | cut -d: -f1",
    );
    let text = stdout(&out);
    let sections: Vec<&str> = text.split("---\n").collect();
    let mounts = sections[0];
    assert!(mounts.starts_with("overlay / overlay"), "{mounts}");
    for expected in [
        "proc /proc proc rw",
        "sysfs /sys sysfs ro",
        "tmpfs /dev tmpfs",
        "devpts /dev/pts devpts",
        "/dev/shm tmpfs",
        "mqueue /dev/mqueue",
        "proc /proc/sys proc ro",
    ] {
        assert!(mounts.contains(expected), "{expected} missing in {mounts}");
    }
    let dev: Vec<&str> = sections[1].lines().collect();
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd",
    ] {
        assert!(dev.contains(&node), "/dev/{node} missing: {dev:?}");
    }
    let rest: Vec<&str> = sections[2].lines().map(str::trim).collect();
    assert_eq!(rest[0], "0", "/proc/keys is masked");
    assert_eq!(rest[1], "0", "/sys/firmware is masked");
    assert_eq!(rest[2], "refused", "/proc/sys is read-only");
    assert_eq!(rest[3..], ["lo"], "network: loopback only");
    env.assert_clean();
}

#[test]
fn capabilities_are_dockers_default_set_and_no_new_privs_is_set() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &[],
        "grep -E '^(CapBnd|CapEff|CapPrm|CapInh|CapAmb|NoNewPrivs)' /proc/self/status",
    );
    let text = stdout(&out);
    // chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service net_raw sys_chroot
    // mknod audit_write setfcap
    for line in [
        "CapBnd:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapPrm:\t00000000a80425fb",
        "CapInh:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
}

#[test]
fn the_image_is_never_written() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &[],
        "echo x > /etc/newfile && rm /bin/ls && echo changed",
    );
    assert_eq!(stdout(&out), "changed\n", "{}", stderr(&out));
    let rootfs = env.store().join("images/busybox/rootfs");
    assert!(!rootfs.join("etc/newfile").exists());
    assert!(rootfs.join("bin/ls").exists());
    let out = run_sh(
        &env,
        &[],
        "test -e /etc/newfile && echo seen || echo fresh; test -e /bin/ls && echo ls",
    );
    assert_eq!(stdout(&out), "fresh\nls\n");
    env.assert_clean();
}

#[test]
fn env_workdir_volumes_and_nice_are_applied() {
    let env = Env::with_busybox();
    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in.txt"), "from host").unwrap();
    let rw = format!("{}:/data", shared.display());
    let ro = format!("{}:/ro:ro", shared.display());
    let out = run_sh(
        &env,
        &["-e", "FOO=bar", "-w", "/work/dir", "-v", &rw, "-v", &ro, "--nice", "7"],
        "echo $FOO; pwd; cat /data/in.txt; echo; echo out > /data/out.txt; \
         (echo no > /ro/x) 2>/dev/null && echo ro-writable || echo ro-refused; cut -d' ' -f19 /proc/self/stat",
    );
    assert_eq!(
        stdout(&out),
        "bar\n/work/dir\nfrom host\nro-refused\n7\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(read_trimmed(&shared.join("out.txt")), "out");
    env.assert_clean();
}

#[test]
fn stdin_is_piped_with_i_and_empty_without() {
    use std::io::Write;
    let env = Env::with_busybox();
    let mut child = env
        .command(&["run", "--rm", "-i", "busybox", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "hello through stdin\n");
    let mut child = env
        .command(&["run", "--rm", "busybox", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"not for the container\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "", "without -i the container reads /dev/null");
    assert_eq!(out.status.code(), Some(0));
    env.assert_clean();
}

#[test]
fn missing_and_unexecutable_commands_exit_127_and_126() {
    let env = Env::with_busybox();
    let out = env.poc(&["run", "busybox", "no-such-command"]);
    assert_error(&out, 127, "not found");
    env.assert_clean();
    let out = env.poc(&["run", "busybox", "/etc/passwd"]);
    assert_error(&out, 126, "permission denied");
    env.assert_clean();
    let out = env.poc(&["run", "busybox", "/no/such/file"]);
    assert_error(&out, 127, "no such file");
    env.assert_clean();
}

#[test]
fn a_container_killed_by_a_signal_exits_128_plus_n_and_is_cleaned_up() {
    let env = Env::with_busybox();
    let child = env
        .command(&["run", "--rm", "--name", "victim", "busybox", "sleep", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state = env.wait_running();
    assert_eq!(state["name"], "victim");
    let pid = state["init"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn signals_sent_to_poc_reach_the_container() {
    let env = Env::with_busybox();
    let child = env
        .command(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_running();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(stdout(&out), "ready\ngot TERM\n");
    env.assert_clean();
}

#[test]
fn duplicate_names_are_refused() {
    let env = Env::with_busybox();
    let child = env
        .command(&["run", "--rm", "--name", "web", "busybox", "sleep", "60"])
        .spawn()
        .unwrap();
    let state = env.wait_running();
    let out = env.poc(&["run", "--name", "web", "busybox", "true"]);
    assert_error(&out, 125, "already in use");
    let pid = state["init"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait_with_output();
    env.assert_clean();
}

#[test]
fn limits_are_visible_in_the_cgroup_files_while_the_container_runs() {
    let env = Env::with_busybox();
    let child = env
        .command(&[
            "run",
            "--rm",
            "--mem",
            "64M",
            "--mem-soft",
            "32M",
            "--cpus",
            "0.5",
            "--pids",
            "20",
            "--cpuset",
            "0",
            "-c",
            "512",
            "busybox",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    let state = env.wait_running();
    let id = state["id"].as_str().unwrap();
    let pid = state["init"]["pid"].as_i64().unwrap().to_string();
    let leaf = |controller: &str| {
        hierarchy_of(controller)
            .join(env.cgroup_parent.trim_start_matches('/'))
            .join(id)
    };
    let expected: Vec<(&str, &str, &str)> = if is_cgroup_v1() {
        vec![
            ("memory", "memory.limit_in_bytes", "67108864"),
            ("memory", "memory.soft_limit_in_bytes", "33554432"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpu", "cpu.shares", "512"),
            ("pids", "pids.max", "20"),
            ("cpuset", "cpuset.cpus", "0"),
        ]
    } else {
        vec![
            ("memory", "memory.max", "67108864"),
            ("memory", "memory.high", "33554432"),
            ("cpu", "cpu.max", "50000 100000"),
            ("cpu", "cpu.weight", "20"),
            ("pids", "pids.max", "20"),
            ("cpuset", "cpuset.cpus", "0"),
        ]
    };
    for (controller, file, value) in expected {
        assert_eq!(
            read_trimmed(&leaf(controller).join(file)),
            value,
            "{controller}/{file}"
        );
        assert!(
            read_trimmed(&leaf(controller).join("cgroup.procs"))
                .lines()
                .any(|p| p == pid),
            "init not in {controller} leaf"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait_with_output();
    env.assert_clean();
}

#[test]
fn pids_limit_refuses_forks_inside_the_container() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--pids", "3"],
        "for i in 1 2 3 4 5; do sleep 5 & done 2>&1; echo done",
    );
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains("can't fork") || text.contains("Resource temporarily unavailable"),
        "{text}"
    );
    env.assert_clean();
}

#[test]
fn bad_flag_values_give_one_line_naming_the_flag_and_create_nothing() {
    let env = Env::with_busybox();
    for (flag, value) in [
        ("--mem", "64X"),
        ("--mem", "-1"),
        ("--mem", "0"),
        ("--cpus", "0"),
        ("--cpus", "abc"),
        ("--pids", "0"),
        ("--cpuset", "4095"),
        ("--nice", "99"),
        ("--hostname", "bad_name"),
        ("-v", "relative:/x"),
    ] {
        let out = env.poc(&["run", flag, value, "busybox", "true"]);
        assert_error(&out, 125, flag);
        env.assert_clean();
    }
    let out = env.poc(&[
        "run",
        "--mem",
        "32M",
        "--mem-soft",
        "64M",
        "busybox",
        "true",
    ]);
    assert_error(&out, 125, "--mem-soft");
    env.assert_clean();
    // A size past the kernel's signed limits is refused, not wrapped to a negative limit.
    let out = env.poc(&["run", "--mem", "9000000t", "busybox", "true"]);
    assert_error(&out, 125, "too large");
    assert!(stderr(&out).contains("--mem"), "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn an_unknown_image_says_how_to_create_it() {
    let env = Env::new();
    let out = env.poc(&["run", "alpine", "true"]);
    assert_error(&out, 125, "poc init");
    let out = env.poc(&["run", "myimage", "true"]);
    assert_error(&out, 125, "poc init --from ROOTFS.tar.gz myimage");
    env.assert_clean();
}

#[test]
fn a_refused_cgroup_write_is_reported_and_leaves_nothing() {
    let env = Env::with_busybox();
    let parent = hierarchy_of("cpuset").join(env.cgroup_parent.trim_start_matches('/'));
    if is_cgroup_v1() {
        if spec_cpus() < 2 {
            eprintln!("needs two CPUs to restrict the parent cpuset to one");
            return;
        }
        // A parent restricted to CPU 0: a container asking for CPU 1 passes validation (it is
        // online) and v1 refuses the write.
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::write(parent.join("cpuset.mems"), "0").unwrap();
        std::fs::write(parent.join("cpuset.cpus"), "0").unwrap();
        let out = env.poc(&["run", "--cpuset", "1", "busybox", "true"]);
        assert_error(&out, 125, "cpuset.cpus");
    } else {
        // v2 narrows a child's cpuset instead of refusing it, but refuses to delegate controllers
        // from a cgroup that holds a process ("no internal processes").
        std::fs::create_dir_all(&parent).unwrap();
        let mut squatter = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(parent.join("cgroup.procs"), squatter.id().to_string()).unwrap();
        let out = env.poc(&["run", "--mem", "64M", "busybox", "true"]);
        let _ = squatter.kill();
        let _ = squatter.wait();
        assert_error(&out, 125, "cgroup.subtree_control");
    }
    env.assert_clean();
}

fn spec_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
