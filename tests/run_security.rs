//! `poc run`'s security flags, as a Docker user types them: --cap-add/--cap-drop, --user with its
//! groups, --read-only with --tmpfs, --ulimit, --privileged, --device, --security-opt.

mod common;

use common::{assert_error, stderr, stdout, Env};

fn run_sh(env: &Env, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    env.poc(&args)
}

fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .to_string()
}

#[test]
fn cap_add_and_cap_drop_change_what_root_in_the_container_may_do() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--cap-drop", "ALL", "--cap-add", "net_bind_service"],
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status",
    );
    let text = stdout(&out);
    assert_eq!(
        status_field(&text, "CapEff"),
        "0000000000000400",
        "{}",
        stderr(&out)
    );
    assert_eq!(status_field(&text, "CapBnd"), "0000000000000400");
    let out = run_sh(
        &env,
        &["--cap-drop", "CHOWN"],
        "touch /f; chown 1:1 /f && echo chowned",
    );
    assert!(!stdout(&out).contains("chowned"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    env.assert_clean();
}

/// The busybox image with a user `app` (1000) in groups `app` and `video` (27).
fn image_with_app_user(env: &Env) {
    let rootfs = env.store().join("images/busybox/rootfs");
    let tarball = env.dir.path().join("app-user.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &rootfs).unwrap();
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\napp:x:1000:\nvideo:x:27:app\n"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    tar.finish().unwrap();
    let out = env.poc(&["init", "--from", &tarball.to_string_lossy(), "appuser"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn user_runs_with_its_groups_from_the_image_and_without_capabilities() {
    let env = Env::with_busybox();
    image_with_app_user(&env);
    let run_as = |user: &str| {
        env.poc(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            user,
            "appuser",
            "sh",
            "-c",
            "id -u; id -g; id -G; grep CapEff /proc/self/status",
        ])
    };
    let out = run_as("app");
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines[..3], ["1000", "1000", "1000 27"], "{}", stderr(&out));
    assert_eq!(lines[3], "CapEff:\t0000000000000000");
    let out = run_as("app:video");
    assert_eq!(stdout(&out).lines().nth(1), Some("27"));
    // A uid the image does not know runs with gid 0, as Docker.
    let out = run_as("4242");
    assert_eq!(
        stdout(&out).lines().take(2).collect::<Vec<_>>(),
        ["4242", "0"]
    );
    let out = env.poc(&["run", "--rm", "-u", "ghost", "appuser", "true"]);
    assert_error(&out, 125, "unable to find user ghost");
    // exec resolves in the running container's files.
    env.run_detached(&[
        "--name",
        "box",
        "--network",
        "none",
        "appuser",
        "sleep",
        "1000",
    ]);
    let out = env.poc(&["exec", "-u", "app", "box", "id", "-G"]);
    assert_eq!(stdout(&out).trim(), "1000 27", "{}", stderr(&out));
    assert!(env.poc(&["rm", "-f", "box"]).status.success());
    env.assert_clean();
}

#[test]
fn a_read_only_root_keeps_tmpfs_volumes_and_dev_writable() {
    let env = Env::with_busybox();
    let volume = env.dir.path().join("vol");
    std::fs::create_dir(&volume).unwrap();
    let v = format!("{}:/data", volume.display());
    let out = run_sh(
        &env,
        &["--read-only", "--tmpfs", "/scratch:size=1m", "-v", &v],
        "touch /f || echo root-refused; touch /scratch/f && echo scratch-ok; \
         touch /data/f && echo data-ok; touch /dev/shm/f && echo shm-ok; \
         grep ' /scratch ' /proc/mounts",
    );
    let text = stdout(&out);
    for want in [
        "root-refused",
        "scratch-ok",
        "data-ok",
        "shm-ok",
        "nosuid,nodev,noexec",
    ] {
        assert!(text.contains(want), "{want}: {text}{}", stderr(&out));
    }
    assert!(stderr(&out).contains("Read-only file system"));
    env.assert_clean();
}

#[test]
fn ulimits_apply_and_a_hard_limit_this_host_cannot_raise_is_refused_up_front() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--ulimit", "nofile=100:200"],
        "ulimit -n; ulimit -Hn",
    );
    assert_eq!(stdout(&out), "100\n200\n", "{}", stderr(&out));
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if !can_raise && hard.rlim_max != libc::RLIM_INFINITY {
        let above = format!("nofile=1024:{}", hard.rlim_max + 1);
        let out = run_sh(&env, &["--ulimit", &above], "true");
        assert_error(&out, 125, "CAP_SYS_RESOURCE");
    }
    env.assert_clean();
}

#[test]
fn privileged_containers_get_every_capability_poc_holds_and_writable_sys() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--privileged"],
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev",
    );
    let text = stdout(&out);
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(
        status_field(&text, "CapEff"),
        status_field(&own, "CapPrm"),
        "{}",
        stderr(&out)
    );
    assert_eq!(status_field(&text, "Seccomp"), "0");
    assert!(text.contains("sysfs rw,"), "{text}");
    assert!(
        text.contains("\nloop-control\n") || !std::path::Path::new("/dev/loop-control").exists()
    );
    env.assert_clean();
}

#[test]
fn a_device_is_given_with_the_access_asked_for() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let env = Env::with_busybox();
    // A device Docker's default rules do not allow, so that the flag's access is what decides.
    let Some((host, rdev)) = [
        "/dev/loop-control",
        "/dev/fuse",
        "/dev/net/tun",
        "/dev/cpu_dma_latency",
    ]
    .iter()
    .filter_map(|d| std::fs::metadata(d).ok().map(|m| (*d, m)))
    .find(|(_, m)| m.file_type().is_char_device())
    .map(|(d, m)| (d, m.rdev())) else {
        eprintln!("no suitable character device on this host; skipped");
        return;
    };
    let flag = format!("{host}:/dev/given:r");
    let out = run_sh(
        &env,
        &["--device", &flag],
        "ls -l /dev/given; true < /dev/given && echo read-ok; echo 1 > /dev/given && echo write-ok",
    );
    let text = stdout(&out);
    assert!(text.contains("read-ok"), "{text}{}", stderr(&out));
    assert!(
        !text.contains("write-ok"),
        "the device was given read-only: {text}"
    );
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let numbers = format!("{}, {:>3}", libc::major(rdev), libc::minor(rdev));
    assert!(
        text.contains(&numbers) && text.contains("crw"),
        "{numbers:?} in {text}"
    );
    env.assert_clean();
}

#[test]
fn seccomp_can_be_turned_off_or_replaced_by_a_docker_profile() {
    let env = Env::with_busybox();
    let out = run_sh(
        &env,
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status",
    );
    assert_eq!(stdout(&out).trim(), "Seccomp:\t0", "{}", stderr(&out));
    let profile = env.dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = run_sh(
        &env,
        &["--security-opt", &opt],
        "grep Seccomp: /proc/self/status; mkdir /x",
    );
    assert_eq!(stdout(&out).trim(), "Seccomp:\t2", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = run_sh(
        &env,
        &["--security-opt", "no-new-privileges=false"],
        "grep NoNewPrivs /proc/self/status",
    );
    assert_eq!(stdout(&out).trim(), "NoNewPrivs:\t0", "{}", stderr(&out));
    env.assert_clean();
}

#[test]
fn bad_security_flags_give_one_line_and_create_nothing() {
    let env = Env::with_busybox();
    for (flag, value) in [
        ("--cap-add", "FLY"),
        ("--cap-drop", "cap_nothing"),
        ("--ulimit", "nofile=10:5"),
        ("--ulimit", "files=1"),
        ("--device", "/etc/passwd"),
        ("--device", "/dev/null:relative"),
        ("--tmpfs", "relative"),
        ("--tmpfs", "/proc/x"),
        ("--security-opt", "apparmor=unconfined"),
        ("--security-opt", "seccomp=/no/such/profile.json"),
        ("-u", "1:"),
    ] {
        let out = env.poc(&["run", "--rm", flag, value, "busybox", "true"]);
        assert_error(&out, 125, "");
        assert!(
            stderr(&out).contains(flag) || stderr(&out).contains(value.trim_start_matches("cap_")),
            "{flag} {value}: {}",
            stderr(&out)
        );
        env.assert_clean();
    }
    let bad = env.dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let opt = format!("seccomp={}", bad.display());
    let out = env.poc(&["run", "--rm", "--security-opt", &opt, "busybox", "true"]);
    assert_error(&out, 125, "seccomp");
    env.assert_clean();
}
