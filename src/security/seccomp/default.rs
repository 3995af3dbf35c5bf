//! Docker's default seccomp profile (moby, 2024-2025: Docker 25 and later) written as our own tables:
//! syscalls every container may use, grouped by what they are for, then the argument rules and the
//! syscalls a capability unlocks. Data only; `docker::resolve` picks what applies to a container.

use oci_spec::runtime::{Arch, Capability, LinuxSeccompAction, LinuxSeccompOperator};

use super::docker::{oci_arg as arg, Condition, KernelVersion, Profile, Rule};

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// The namespace flags of clone(2) (0x7E020000, as Docker writes it).
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;
const AF_VSOCK: u64 = 40;

/// Files, directories, descriptors and their metadata.
#[rustfmt::skip]
const FILES: &[&str] = &[
    "access", "cachestat", "chdir", "chmod", "chown", "chown32", "close", "close_range",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32",
    "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "ioctl", "lchown", "lchown32", "link", "linkat", "listmount", "_llseek", "lseek",
    "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at", "newfstatat",
    "open", "openat", "openat2", "pipe", "pipe2", "pread64", "preadv", "preadv2", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "rename",
    "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "splice", "stat", "stat64",
    "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vmsplice", "write", "writev",
];

/// Extended attributes.
#[rustfmt::skip]
const XATTRS: &[&str] = &[
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat", "lgetxattr",
    "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr", "removexattr",
    "removexattrat", "setxattr", "setxattrat",
];

/// Waiting for events: poll, epoll, select, inotify, fanotify marks, eventfd, signalfd, timerfd;
/// and the old asynchronous I/O (io_uring is not here: Docker 25 took it out).
#[rustfmt::skip]
const EVENTS: &[&str] = &[
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "io_setup", "io_submit",
];

/// Processes and threads: life cycle, limits, priorities, self-restriction, per-thread state.
#[rustfmt::skip]
const PROCESSES: &[&str] = &[
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "get_robust_list",
    "get_thread_area", "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getrlimit", "getrusage", "getsid", "gettid", "ioprio_get", "ioprio_set",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "pidfd_open",
    "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall",
    "riscv_hwprobe", "rseq", "seccomp", "set_robust_list", "set_thread_area", "set_tid_address",
    "setpgid", "setpriority", "setrlimit", "setsid", "sysinfo", "times", "ugetrlimit", "uname",
    "uretprobe", "vfork", "wait4", "waitid", "waitpid",
];

/// The scheduler's view of a process.
#[rustfmt::skip]
const SCHEDULING: &[&str] = &[
    "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield",
];

/// User and group ids (capabilities decide which changes succeed).
#[rustfmt::skip]
const IDENTITY: &[&str] = &[
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
];

/// The process's own memory, and futexes.
#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "brk", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal", "msync",
    "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "remap_file_pages",
];

#[rustfmt::skip]
const SIGNALS: &[&str] = &[
    "kill", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn", "tgkill", "tkill",
];

/// Reading clocks, sleeping and timers (setting the clock needs CAP_SYS_TIME, below).
#[rustfmt::skip]
const TIME: &[&str] = &[
    "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
    "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
];

/// System V IPC and POSIX message queues (both namespaced by the IPC namespace).
#[rustfmt::skip]
const IPC: &[&str] = &[
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
];

/// Sockets once created (socket(2) itself has an argument rule below). socketcall is the 32-bit
/// multiplexer: its arguments are behind a pointer seccomp cannot read, as in Docker.
#[rustfmt::skip]
const SOCKETS: &[&str] = &[
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
    "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
];

/// Safe for everyone since 4.8, when the kernel stopped letting a tracer skip seccomp checks.
#[rustfmt::skip]
const TRACING_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26 (alone and with
/// PER_LINUX32), and the query 0xffffffff. Other flags (ADDR_NO_RANDOMIZE...) weaken the process.
#[rustfmt::skip]
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Syscalls only one architecture has, keyed by Docker's names of the native architecture.
#[rustfmt::skip]
const ARCH_SPECIFIC: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["swapcontext", "sync_file_range2"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
            "sync_file_range2",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (&["s390", "s390x"], &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// What a capability in the bounding set adds (the kernel checks the capability too; this only
/// keeps seccomp from refusing what the capability is meant to allow).
#[rustfmt::skip]
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "finit_module", "init_module"]),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// Native architecture → compat architectures whose binaries it runs. Every one must be in the
/// filter: a syscall made through an architecture the filter does not list would otherwise use
/// another numbering; libseccomp's bad-arch action kills it instead.
#[rustfmt::skip]
const ARCH_MAP: &[(Arch, &[Arch])] = &[
    (Arch::ScmpArchX86_64, &[Arch::ScmpArchX86, Arch::ScmpArchX32]),
    (Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
    (Arch::ScmpArchMips64, &[Arch::ScmpArchMips, Arch::ScmpArchMips64n32]),
    (Arch::ScmpArchMips64n32, &[Arch::ScmpArchMips, Arch::ScmpArchMips64]),
    (Arch::ScmpArchMipsel64, &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64n32]),
    (Arch::ScmpArchMipsel64n32, &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64]),
    (Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
    (Arch::ScmpArchRiscv64, &[]),
    (Arch::ScmpArchLoongarch64, &[]),
];

/// Docker's default profile, before it is resolved for a container's capabilities.
pub(super) fn profile() -> Profile {
    let mut rules = vec![allow(
        [
            FILES, XATTRS, EVENTS, PROCESSES, SCHEDULING, IDENTITY, MEMORY, SIGNALS, TIME, IPC,
            SOCKETS,
        ]
        .concat(),
    )];
    rules.push(Rule {
        includes: Condition {
            min_kernel: Some(KernelVersion { major: 4, minor: 8 }),
            ..Condition::default()
        },
        ..allow(TRACING_SINCE_4_8.to_vec())
    });
    rules.push(Rule {
        args: vec![arg(0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, None)],
        ..allow(vec!["socket"])
    });
    rules.extend(PERSONALITIES.iter().map(|&persona| Rule {
        args: vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, persona, None)],
        ..allow(vec!["personality"])
    }));
    rules.extend(ARCH_SPECIFIC.iter().map(|(arches, names)| Rule {
        includes: Condition {
            arches: strings(arches),
            ..Condition::default()
        },
        ..allow(names.to_vec())
    }));
    rules.extend(namespace_rules());
    rules.extend(BY_CAPABILITY.iter().map(|(cap, names)| Rule {
        includes: needs(*cap),
        ..allow(names.to_vec())
    }));
    Profile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(EPERM),
        arch_map: ARCH_MAP
            .iter()
            .map(|(native, compat)| (*native, compat.to_vec()))
            .collect(),
        rules,
        ..Profile::default()
    }
}

/// Without CAP_SYS_ADMIN: clone only without namespace flags (s390 swaps clone's first two
/// arguments), and clone3, whose flags sit in memory seccomp cannot read, fails with ENOSYS so
/// that libc falls back to clone.
fn namespace_rules() -> Vec<Rule> {
    let masked = LinuxSeccompOperator::ScmpCmpMaskedEq;
    let with_admin = || Condition {
        caps: vec![cap_name(Capability::SysAdmin)],
        ..Condition::default()
    };
    vec![
        Rule {
            args: vec![arg(0, masked, CLONE_NAMESPACE_FLAGS, Some(0))],
            excludes: Condition {
                arches: strings(&["s390", "s390x"]),
                ..with_admin()
            },
            ..allow(vec!["clone"])
        },
        Rule {
            args: vec![arg(1, masked, CLONE_NAMESPACE_FLAGS, Some(0))],
            includes: Condition {
                arches: strings(&["s390", "s390x"]),
                ..Condition::default()
            },
            excludes: with_admin(),
            ..allow(vec!["clone"])
        },
        Rule {
            names: strings(&["clone3"]),
            action: LinuxSeccompAction::ScmpActErrno,
            errno_ret: Some(ENOSYS),
            excludes: with_admin(),
            ..Rule::default()
        },
    ]
}

fn allow(names: Vec<&str>) -> Rule {
    Rule {
        names: strings(&names),
        action: LinuxSeccompAction::ScmpActAllow,
        ..Rule::default()
    }
}

fn needs(cap: Capability) -> Condition {
    Condition {
        caps: vec![cap_name(cap)],
        ..Condition::default()
    }
}

fn cap_name(cap: Capability) -> String {
    format!("CAP_{cap}")
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names libseccomp 2.5.4 (Debian 12) does not know yet; every other name must resolve, which
    /// catches a misspelt name that would silently never be allowed.
    const NEWER_THAN_LIBSECCOMP: &[&str] = &[
        "getxattrat",
        "listmount",
        "listxattrat",
        "lsm_get_self_attr",
        "lsm_list_modules",
        "lsm_set_self_attr",
        "mseal",
        "removexattrat",
        "riscv_hwprobe",
        "setxattrat",
        "statmount",
        "uretprobe",
    ];

    #[test]
    fn every_name_is_a_syscall_and_listed_once_per_rule() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
        let profile = profile();
        for rule in &profile.rules {
            let mut names = rule.names.clone();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                rule.names.len(),
                "duplicates in {:?}",
                rule.names
            );
            for name in &rule.names {
                assert!(
                    libseccomp::ScmpSyscall::from_name(name).is_ok()
                        || NEWER_THAN_LIBSECCOMP.contains(&name.as_str()),
                    "{name} is not a syscall libseccomp knows"
                );
            }
        }
        assert_eq!(
            profile.rules[0].names.len(),
            361,
            "Docker's allowlist has 361 names"
        );
    }
}
