//! Filters installed in forked children (64- and 32-bit syscalls), profiles per capability, the
//! cache on disk, and the start path's costs.

use super::*;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

/// Docker's default capability set (what `poc run` keeps without --cap-add).
fn docker_caps() -> Vec<Capability> {
    crate::spec::DEFAULT_CAPABILITIES.to_vec()
}

fn with_cap(cap: Capability) -> Vec<Capability> {
    let mut caps = docker_caps();
    caps.push(cap);
    caps
}

fn names_allowed(profile: &LinuxSeccomp) -> Vec<&str> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
        .flat_map(|s| s.names().iter().map(String::as_str))
        .collect()
}

/// A syscall's raw result: the return value, or -errno.
fn raw(ret: libc::c_long) -> i64 {
    if ret < 0 {
        // SAFETY: reading this thread's errno.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        ret
    }
}

type Probe = fn() -> i64;
/// Whether a probe's result is the one wanted.
type Expect = fn(i64) -> bool;

/// Forks, installs `filter` in the child (after no_new_privs, as the container's init does),
/// runs each probe there and returns what each got. The child only makes syscalls between fork
/// and _exit: the test harness is multi-threaded.
fn run_filtered(filter: &Filter, probes: &[Probe]) -> Vec<i64> {
    assert!(probes.len() <= 32);
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child calls only async-signal-safe functions and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut results = [i64::MIN; 33];
        // SAFETY: plain syscalls on this process; the buffer outlives the write.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            results[0] = match filter.install() {
                Ok(()) => 0,
                Err(e) => -(e as i64),
            };
            for (i, probe) in probes.iter().enumerate() {
                results[i + 1] = probe();
            }
            libc::write(
                write_end.as_raw_fd(),
                results.as_ptr().cast(),
                (probes.len() + 1) * 8,
            );
            libc::_exit(0);
        }
    }
    drop(write_end);
    let mut bytes = vec![0u8; (probes.len() + 1) * 8];
    std::fs::File::from(read_end)
        .read_exact(&mut bytes)
        .unwrap();
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    let results: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|b| i64::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(results[0], 0, "installing the filter");
    results[1..].to_vec()
}

const EPERM: i64 = -(libc::EPERM as i64);
const ENOSYS: i64 = -(libc::ENOSYS as i64);

fn unshare(flags: libc::c_int) -> i64 {
    // SAFETY: raw syscalls in the forked test child (here and in the probes below).
    raw(unsafe { libc::syscall(libc::SYS_unshare, flags) })
}

/// clone(2) with `flags`; a child that does get created leaves at once.
fn clone_raw(flags: libc::c_long) -> i64 {
    let ret = raw(unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) });
    if ret == 0 {
        unsafe { libc::_exit(0) }
    }
    if ret > 0 {
        unsafe { libc::waitpid(ret as libc::pid_t, std::ptr::null_mut(), 0) };
    }
    ret
}

fn socket(family: libc::c_int) -> i64 {
    let fd = raw(unsafe { libc::syscall(libc::SYS_socket, family, libc::SOCK_STREAM, 0) });
    if fd >= 0 {
        unsafe { libc::close(fd as libc::c_int) };
    }
    fd
}

fn personality(persona: libc::c_ulong) -> i64 {
    raw(unsafe { libc::syscall(libc::SYS_personality, persona) })
}

fn pipe_round_trip() -> i64 {
    let mut fds = [0; 2];
    let mut byte = [0u8; 1];
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0
            || libc::write(fds[1], b"x".as_ptr().cast(), 1) != 1
        {
            return raw(-1);
        }
        raw(libc::read(fds[0], byte.as_mut_ptr().cast(), 1) as libc::c_long)
    }
}

/// A 32-bit syscall from this 64-bit process (int 0x80 takes the i386 table, and seccomp sees
/// AUDIT_ARCH_I386). rbx belongs to LLVM, so the first argument is swapped in and out of it.
#[cfg(target_arch = "x86_64")]
fn i386_syscall(nr: u32, arg1: u32, arg2: u32, arg3: u32) -> i64 {
    let ret: u64;
    // SAFETY: int 0x80 reads eax/ebx/ecx/edx and clobbers r8-r11; rbx is restored.
    unsafe {
        std::arch::asm!(
            "xchg {b}, rbx",
            "int 0x80",
            "xchg {b}, rbx",
            b = inout(reg) u64::from(arg1) => _,
            inlateout("rax") u64::from(nr) => ret,
            in("rcx") u64::from(arg2),
            in("rdx") u64::from(arg3),
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        );
    }
    i64::from(ret as u32 as i32)
}

fn compiled(caps: &[Capability]) -> (tempfile::TempDir, Filter) {
    let dir = tempfile::tempdir().unwrap();
    let filter = compile(&default_profile(caps), &dir.path().join("seccomp")).unwrap();
    (dir, filter)
}

#[test]
fn seccomp_default_filter_refuses_what_docker_refuses() {
    let (_dir, filter) = compiled(&docker_caps());
    let probes: &[(&str, Probe, Expect)] = &[
        (
            "getpid",
            || raw(unsafe { libc::syscall(libc::SYS_getpid) }),
            |r| r > 0,
        ),
        ("pipe, write, read", pipe_round_trip, |r| r == 1),
        (
            "keyctl",
            || raw(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) }),
            |r| r == EPERM,
        ),
        (
            "add_key",
            || raw(unsafe { libc::syscall(libc::SYS_add_key, 0, 0, 0, 0, 0) }),
            |r| r == EPERM,
        ),
        (
            "unshare(CLONE_NEWUSER)",
            || unshare(libc::CLONE_NEWUSER),
            |r| r == EPERM,
        ),
        (
            "unshare(CLONE_NEWUTS)",
            || unshare(libc::CLONE_NEWUTS),
            |r| r == EPERM,
        ),
        (
            "clone(CLONE_NEWUSER)",
            || clone_raw((libc::CLONE_NEWUSER | libc::SIGCHLD) as _),
            |r| r == EPERM,
        ),
        (
            "clone(SIGCHLD)",
            || clone_raw(libc::SIGCHLD as _),
            |r| r > 0,
        ),
        (
            "clone3",
            || raw(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) }),
            |r| r == ENOSYS,
        ),
        (
            "personality(query)",
            || personality(0xffff_ffff),
            |r| r >= 0,
        ),
        (
            "personality(ADDR_NO_RANDOMIZE)",
            || personality(0x004_0000),
            |r| r == EPERM,
        ),
        (
            "socket(AF_VSOCK)",
            || socket(libc::AF_VSOCK),
            |r| r == EPERM,
        ),
        ("socket(AF_UNIX)", || socket(libc::AF_UNIX), |r| r >= 0),
        (
            "io_uring_setup",
            || raw(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, 0) }),
            |r| r == EPERM,
        ),
        (
            "perf_event_open",
            || raw(unsafe { libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0) }),
            |r| r == EPERM,
        ),
        (
            "userfaultfd",
            || raw(unsafe { libc::syscall(libc::SYS_userfaultfd, 0) }),
            |r| r == EPERM,
        ),
        (
            "mount",
            || raw(unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) }),
            |r| r == EPERM,
        ),
        // Newer than any syscall the profile names: ENOSYS, so that libc falls back.
        (
            "syscall 1000",
            || raw(unsafe { libc::syscall(1000) }),
            |r| r == ENOSYS,
        ),
    ];
    let results = run_filtered(&filter, &probes.iter().map(|p| p.1).collect::<Vec<_>>());
    let wrong: Vec<String> = probes
        .iter()
        .zip(&results)
        .filter(|((_, _, ok), r)| !ok(**r))
        .map(|((name, _, _), r)| format!("{name} returned {r}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn seccomp_sys_admin_lets_namespaces_through() {
    let (_dir, filter) = compiled(&with_cap(Capability::SysAdmin));
    let probes: &[Probe] = &[
        || unshare(libc::CLONE_NEWUTS),
        || clone_raw((libc::CLONE_NEWUTS | libc::SIGCHLD) as _),
        || raw(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) }),
    ];
    let results = run_filtered(&filter, probes);
    assert_eq!(results[0], 0, "unshare(CLONE_NEWUTS) as root");
    assert!(results[1] > 0, "clone(CLONE_NEWUTS): {}", results[1]);
    // The kernel's own answer to a NULL clone_args, not the filter's ENOSYS.
    assert_eq!(results[2], -(libc::EINVAL as i64), "clone3");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_covers_32_bit_syscalls() {
    const I386_GETPID: u32 = 20;
    const I386_KEYCTL: u32 = 288;
    const I386_UNSHARE: u32 = 310;
    let (_dir, filter) = compiled(&docker_caps());
    let probes: &[Probe] = &[
        || i386_syscall(I386_GETPID, 0, 0, 0),
        || raw(unsafe { libc::syscall(libc::SYS_getpid) }),
        || i386_syscall(I386_KEYCTL, 0, -3i32 as u32, 0),
        || i386_syscall(I386_UNSHARE, libc::CLONE_NEWUTS as u32, 0, 0),
        || i386_syscall(1000, 0, 0, 0),
    ];
    let results = run_filtered(&filter, probes);
    if results[0] == ENOSYS {
        eprintln!("this kernel runs no 32-bit syscalls (ia32 emulation off): nothing to filter");
        return;
    }
    assert_eq!(results[0], results[1], "i386 getpid is allowed");
    assert_eq!(results[2], EPERM, "i386 keyctl");
    assert_eq!(results[3], EPERM, "i386 unshare");
    assert_eq!(results[4], ENOSYS, "i386 syscall 1000");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_x32_calls_get_what_this_kernel_would_answer() {
    const X32: libc::c_long = 0x4000_0000;
    let (_dir, filter) = compiled(&docker_caps());
    let probes: &[Probe] = &[
        || raw(unsafe { libc::syscall(X32 | libc::SYS_getpid) }),
        || raw(unsafe { libc::syscall(libc::SYS_getpid) }),
        || raw(unsafe { libc::syscall(X32 | libc::SYS_keyctl, 0, -3, 0) }),
    ];
    let results = run_filtered(&filter, probes);
    if super::kernel_runs_x32() {
        assert_eq!(results[0], results[1], "x32 getpid is allowed");
        assert_eq!(results[2], EPERM, "x32 keyctl");
    } else {
        // The filter left out its x32 section: its prologue answers as the kernel would.
        assert_eq!(results[0], ENOSYS, "x32 getpid");
        assert_eq!(results[2], ENOSYS, "x32 keyctl");
        assert!(filter.len() < 1100, "{} instructions", filter.len());
    }
}

#[test]
fn seccomp_default_profile_follows_capabilities() {
    let plain = default_profile(&docker_caps());
    let allowed = names_allowed(&plain);
    for refused in [
        "mount",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
    ] {
        assert!(!allowed.contains(&refused), "{refused} allowed");
    }
    for refused in [
        "io_uring_setup",
        "io_uring_enter",
        "userfaultfd",
        "kcmp",
        "reboot",
    ] {
        assert!(!allowed.contains(&refused), "{refused} allowed");
    }
    assert!(allowed.contains(&"ptrace"), "ptrace is allowed since 4.8");
    let clone3 = plain
        .syscalls()
        .iter()
        .flatten()
        .find(|s| s.names() == &["clone3"]);
    assert_eq!(
        clone3.and_then(|s| s.errno_ret()),
        Some(libc::ENOSYS as u32)
    );

    let admin = default_profile(&with_cap(Capability::SysAdmin));
    let allowed = names_allowed(&admin);
    assert!(allowed.contains(&"unshare") && allowed.contains(&"mount"));
    let clones: Vec<_> = admin
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.names().iter().any(|n| n.starts_with("clone")))
        .collect();
    assert!(clones
        .iter()
        .all(|s| s.args().is_none() && s.errno_ret().is_none()));

    for (cap, name) in [
        (Capability::SysPtrace, "kcmp"),
        (Capability::SysTime, "clock_settime"),
        (Capability::SysNice, "mbind"),
        (Capability::Bpf, "bpf"),
        (Capability::Perfmon, "perf_event_open"),
        (Capability::SysChroot, "chroot"),
    ] {
        assert!(
            names_allowed(&default_profile(&with_cap(cap))).contains(&name),
            "{name}"
        );
    }
}

#[test]
fn seccomp_docker_json_profile_compiles() {
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                     {"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL"}]}"#;
    let profile = docker_profile(json, &docker_caps()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let filter = compile(&profile, dir.path()).unwrap();
    let results = run_filtered(
        &filter,
        &[|| raw(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) })],
    );
    assert_eq!(results[0], ENOSYS);
    let err = docker_profile("{\"defaultAction\": \"SCMP_ACT_SOMETIMES\"}", &[]).unwrap_err();
    assert!(err.to_string().contains("SCMP_ACT_SOMETIMES"), "{err}");
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn seccomp_cache_is_reused_and_damage_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let profile = default_profile(&docker_caps());
    let first = compile(&profile, &dir).unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files = cache_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Read, not rewritten: a rewrite is a rename, so a new inode.
    assert_eq!(compile(&profile, &dir).unwrap(), first);
    assert_eq!(std::fs::metadata(file).unwrap().ino(), meta.ino());

    let bytes = std::fs::read(file).unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    for damaged in [&bytes[..bytes.len() / 2], &flipped[..], b""] {
        std::fs::write(file, damaged).unwrap();
        assert_eq!(compile(&profile, &dir).unwrap(), first);
        assert_eq!(std::fs::read(file).unwrap(), bytes);
    }
    assert_eq!(cache_files(&dir).len(), 1, "no temporary files left");

    let other = compile(&default_profile(&with_cap(Capability::SysAdmin)), &dir).unwrap();
    assert_ne!(other, first);
    assert_eq!(cache_files(&dir).len(), 2);
}

#[test]
fn seccomp_cache_directory_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = compile(&default_profile(&[]), tmp.path()).unwrap_err();
    assert!(err.to_string().contains("writable by other users"), "{err}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Not a pass/fail test: prints what the start path pays (cargo test seccomp_timings -- --nocapture).
#[test]
fn seccomp_timings() {
    const RUNS: usize = 21;
    let tmp = tempfile::tempdir().unwrap();
    let caps = docker_caps();
    let profile = default_profile(&caps);
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    let build = median(
        (0..RUNS)
            .map(|_| time(&mut || drop(default_profile(&caps))))
            .collect(),
    );
    let cold = median(
        (0..RUNS)
            .map(|i| {
                let dir = tmp.path().join(format!("cold{i}"));
                time(&mut || drop(compile(&profile, &dir).unwrap()))
            })
            .collect(),
    );
    let dir = tmp.path().join("cold0");
    let cached = median(
        (0..RUNS)
            .map(|_| time(&mut || drop(compile(&profile, &dir).unwrap())))
            .collect(),
    );
    let file = cache::path(&dir, &profile, super::kernel_runs_x32()).unwrap();
    let read = median(
        (0..RUNS)
            .map(|_| time(&mut || drop(cache::load(&file, 0).unwrap())))
            .collect(),
    );
    let filter = compile(&profile, &dir).unwrap();
    let install = median(
        (0..RUNS)
            .map(|_| {
                let ns = run_filtered_timed(&filter);
                Duration::from_nanos(ns)
            })
            .collect(),
    );
    eprintln!(
        "seccomp ({} instructions): default_profile {build:?}, cold compile {cold:?}, \
         cached compile {cached:?} (of which reading the file {read:?}), install {install:?}",
        filter.len()
    );
    assert!(cached < cold);
}

/// Installs the filter in a forked child and returns how long seccomp(2) took there.
fn run_filtered_timed(filter: &Filter) -> u64 {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: as in run_filtered.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let mut start: libc::timespec = std::mem::zeroed();
            let mut end: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut start);
            let ok = filter.install().is_ok();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut end);
            let ns: u64 = if ok {
                ((end.tv_sec - start.tv_sec) * 1_000_000_000 + end.tv_nsec - start.tv_nsec) as u64
            } else {
                u64::MAX
            };
            libc::write(write_end.as_raw_fd(), (&ns as *const u64).cast(), 8);
            libc::_exit(0);
        }
    }
    drop(write_end);
    let mut bytes = [0u8; 8];
    std::fs::File::from(read_end)
        .read_exact(&mut bytes)
        .unwrap();
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    let ns = u64::from_ne_bytes(bytes);
    assert_ne!(ns, u64::MAX, "install failed");
    ns
}
