//! Device rules on the real kernel, at the cgroup level: a process put in a leaf with poc's
//! default rules can make any device node but open only the standard devices through it.
//! Each story runs once per backend the host has: the v1 devices controller (this project's
//! hybrid hosts) and the cgroup v2 device program (pure v2 hosts such as scripts/vm-test.sh's
//! guest, and the unified hierarchy of hybrid hosts, where the kernel runs it too).
//!
//! poc is a binary crate, so an integration test cannot call into it; src/cgroups/devices.rs
//! imports nothing of poc's and is compiled in here as it is (its unit tests come along, and so
//! also run in the v2 guest). Rules reaching a container through its spec and `Manager::apply`
//! are the container tests' business.

// Only part of the module is driven from here.
#[path = "../src/cgroups/devices.rs"]
#[allow(dead_code)]
mod devices;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use devices::rule;
use nix::errno::Errno;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    /// Lines written to devices.allow / devices.deny of a v1 devices leaf.
    V1,
    /// The device program compiled from the rules, attached to a cgroup2 leaf.
    V2,
}

/// The backends this host has, with the mount point of each.
fn backends() -> Vec<(Backend, PathBuf)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.get(3) != Some(&"/") || right.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(left[4]);
        if right[0] == "cgroup2" {
            found.push((Backend::V2, mount));
        } else if right[0] == "cgroup" && right[2].split(',').any(|o| o == "devices") {
            found.push((Backend::V1, mount));
        }
    }
    assert!(
        !found.is_empty(),
        "no devices controller and no cgroup2 mount"
    );
    found
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `<mount>/poc-devtest-<pid>-<n>/leaf`, with rules applied; removed (both levels) on drop.
struct Leaf {
    parent: PathBuf,
    dir: PathBuf,
}

impl Leaf {
    fn new(mount: &Path) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests make cgroups: run them as root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let parent = mount.join(format!("poc-devtest-{}-{n}", std::process::id()));
        let dir = parent.join("leaf");
        std::fs::create_dir_all(&dir).unwrap();
        Leaf { parent, dir }
    }

    fn with_rules(backend: Backend, mount: &Path, rules: &[LinuxDeviceCgroup]) -> Self {
        let leaf = Leaf::new(mount);
        leaf.apply(backend, rules).unwrap();
        leaf
    }

    fn apply(&self, backend: Backend, rules: &[LinuxDeviceCgroup]) -> Result<(), String> {
        match backend {
            Backend::V1 => devices::write_v1(&self.dir, rules),
            Backend::V2 => devices::attach_program(&self.dir, rules),
        }
        .map_err(|e| e.to_string())
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        // The tests' children have exited by now; a leaf is empty and goes at once.
        for dir in [&self.dir, &self.parent] {
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("removing {}: {e}", dir.display());
            }
        }
    }
}

/// What a process in the leaf got: mknod's result (if it made a node), then open's.
#[derive(Debug, PartialEq)]
struct Tried {
    mknod: Option<Errno>,
    open: Option<Errno>,
}

/// A device node to make in a temp dir (`Some(kind, major, minor)`), or an existing path.
enum Node<'a> {
    Make(&'a str, libc::mode_t, u32, u32),
    Existing(&'a str),
}

/// Forks a child that joins `leaf`, makes the node (if asked), opens it read-write and reports
/// both errnos.
fn try_in(leaf: &Leaf, node: Node) -> Tried {
    try_opening(leaf, node, libc::O_RDWR)
}

/// Forks a child that joins `leaf`, makes the node (if asked), opens it with `mode` and reports
/// both errnos through a pipe. The child makes only raw system calls: the test harness has
/// threads, and a forked copy of a threaded process must not allocate or take locks.
fn try_opening(leaf: &Leaf, node: Node, mode: libc::c_int) -> Tried {
    let scratch = tempfile::tempdir_in("/var/tmp").unwrap();
    let (path, make) = match node {
        Node::Make(name, kind, major, minor) => (
            scratch.path().join(name),
            Some((kind, libc::makedev(major, minor))),
        ),
        Node::Existing(path) => (PathBuf::from(path), None),
    };
    let procs = CString::new(leaf.dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    let node = CString::new(path.as_os_str().as_bytes()).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child calls only async-signal-safe functions on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", Errno::last());
    if pid == 0 {
        // SAFETY: raw system calls on valid C strings and a pipe this process owns; _exit ends it.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(3);
            }
            libc::close(fd);
            let mut report: [i32; 2] = [-1, 0];
            if let Some((kind, dev)) = make {
                report[0] = if libc::mknod(node.as_ptr(), kind | 0o600, dev) == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
            }
            let fd = libc::open(node.as_ptr(), mode | libc::O_NONBLOCK | libc::O_NOCTTY);
            report[1] = if fd >= 0 {
                0
            } else {
                *libc::__errno_location()
            };
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&write_end),
                report.as_ptr().cast(),
                8,
            );
            libc::_exit(0);
        }
    }
    drop(write_end);
    let mut report = [0u8; 8];
    let got = nix::unistd::read(&read_end, &mut report).unwrap();
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0),
        "the child could not join {}",
        leaf.dir.display()
    );
    assert_eq!(got, 8);
    let errno = |bytes: &[u8]| {
        let n = i32::from_ne_bytes(bytes.try_into().unwrap());
        (n != 0).then(|| Errno::from_raw(n))
    };
    Tried {
        mknod: if make.is_some() {
            errno(&report[..4])
        } else {
            None
        },
        open: errno(&report[4..]),
    }
}

const CHAR: libc::mode_t = libc::S_IFCHR;
const BLOCK: libc::mode_t = libc::S_IFBLK;

#[test]
fn default_rules_let_a_process_make_any_node_but_open_only_the_standard_devices() {
    for (backend, mount) in backends() {
        let leaf = Leaf::with_rules(backend, &mount, &devices::default_rules());
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
        ] {
            let tried = try_in(&leaf, Node::Make(name, CHAR, major, minor));
            assert_eq!(
                tried,
                Tried {
                    mknod: None,
                    open: None
                },
                "{backend:?} {name}"
            );
        }
        // A pseudo-terminal slave that does not exist, and the controlling terminal this child
        // lacks: allowed, so the driver answers, not the cgroup.
        for (name, major, minor) in [("tty", 5, 0), ("pts-9999", 136, 9999)] {
            let tried = try_in(&leaf, Node::Make(name, CHAR, major, minor));
            assert_eq!(tried.mknod, None, "{backend:?} {name}");
            assert_ne!(tried.open, Some(Errno::EPERM), "{backend:?} {name}");
        }
        for (name, kind, major, minor) in [
            ("kvm", CHAR, 10, 232),
            ("fuse", CHAR, 10, 229),
            ("loop-control", CHAR, 10, 237),
            ("tty1", CHAR, 4, 1),
            ("mem", CHAR, 1, 1),
            ("loop0", BLOCK, 7, 0),
        ] {
            let tried = try_in(&leaf, Node::Make(name, kind, major, minor));
            assert_eq!(
                tried,
                Tried {
                    mknod: None,
                    open: Some(Errno::EPERM)
                },
                "{backend:?} {name}"
            );
        }
        assert_eq!(
            try_in(&leaf, Node::Existing("/dev/null")).open,
            None,
            "{backend:?}"
        );
    }
}

#[test]
fn rules_without_mknod_refuse_making_nodes() {
    use LinuxDeviceType::C;
    for (backend, mount) in backends() {
        let leaf = Leaf::with_rules(backend, &mount, &[rule(true, C, Some(1), Some(3), "rw")]);
        let tried = try_in(&leaf, Node::Make("null", CHAR, 1, 3));
        assert_eq!(tried.mknod, Some(Errno::EPERM), "{backend:?}");
        assert_eq!(try_in(&leaf, Node::Existing("/dev/null")).open, None);
        assert_eq!(
            try_in(&leaf, Node::Existing("/dev/zero")).open,
            Some(Errno::EPERM),
            "{backend:?}"
        );
    }
}

#[test]
fn an_empty_rule_list_denies_every_device() {
    for (backend, mount) in backends() {
        let leaf = Leaf::with_rules(backend, &mount, &[]);
        for path in ["/dev/null", "/dev/zero"] {
            assert_eq!(
                try_in(&leaf, Node::Existing(path)).open,
                Some(Errno::EPERM),
                "{backend:?} {path}"
            );
        }
    }
}

#[test]
fn a_later_deny_takes_back_what_an_earlier_allow_gave() {
    use LinuxDeviceType::{A, C};
    for (backend, mount) in backends() {
        let leaf = Leaf::with_rules(
            backend,
            &mount,
            &[
                rule(true, C, Some(1), Some(3), "rwm"),
                rule(true, C, Some(1), Some(5), "rwm"),
                rule(false, C, Some(1), Some(5), "w"),
            ],
        );
        assert_eq!(try_in(&leaf, Node::Existing("/dev/null")).open, None);
        assert_eq!(
            try_in(&leaf, Node::Existing("/dev/zero")).open,
            Some(Errno::EPERM),
            "{backend:?}: zero is read-only now, and O_RDWR asks for write"
        );
        drop(leaf);
        // Allow-all with one exception (docker run --privileged with a deny rule).
        let leaf = Leaf::with_rules(
            backend,
            &mount,
            &[
                rule(true, A, None, None, "rwm"),
                rule(false, C, Some(1), Some(5), "rwm"),
            ],
        );
        assert_eq!(try_in(&leaf, Node::Existing("/dev/null")).open, None);
        assert_eq!(
            try_in(&leaf, Node::Existing("/dev/zero")).open,
            Some(Errno::EPERM),
            "{backend:?}"
        );
    }
}

#[test]
fn a_deny_inside_a_wildcard_allow_is_refused_with_the_cgroup_and_the_rule() {
    use LinuxDeviceType::C;
    for (backend, mount) in backends() {
        let leaf = Leaf::new(&mount);
        let mut rules = devices::default_rules();
        rules.push(rule(false, C, Some(136), Some(3), "rw"));
        let err = leaf.apply(backend, &rules).unwrap_err();
        assert!(
            err.contains(&leaf.dir.display().to_string())
                && err.contains("deny c 136:3 rw")
                && err.contains("allow c 136:* rwm")
                && !err.contains('\n'),
            "{backend:?}: {err}"
        );
        // Nothing was applied: the leaf still lets everything through.
        assert_eq!(try_in(&leaf, Node::Existing("/dev/zero")).open, None);
    }
}

#[test]
fn the_same_rules_mean_the_same_with_the_v1_controller_and_the_v2_program() {
    use LinuxDeviceType::{A, B, C};
    let hosts = backends();
    let v1 = hosts.iter().find(|(b, _)| *b == Backend::V1);
    let v2 = hosts.iter().find(|(b, _)| *b == Backend::V2);
    let (Some((_, v1)), Some((_, v2))) = (v1, v2) else {
        eprintln!("this host has only one backend: nothing to compare");
        return;
    };
    let lists = [
        devices::default_rules(),
        vec![],
        vec![rule(true, C, Some(1), Some(3), "rw")],
        vec![
            rule(true, C, Some(1), None, "rwm"),
            rule(true, C, None, Some(5), "r"),
            rule(true, B, None, None, "m"),
        ],
        vec![
            rule(true, A, None, None, "rwm"),
            rule(false, C, Some(1), Some(5), "rwm"),
            rule(false, C, None, None, "m"),
            rule(false, B, Some(7), None, "r"),
        ],
        vec![
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(true, C, Some(1), Some(5), "rwm"),
            rule(false, C, Some(1), Some(5), "w"),
            rule(true, C, Some(1), Some(5), "m"),
        ],
        vec![
            rule(true, A, None, None, "rwm"),
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(9), "r"),
        ],
    ];
    let nodes = [
        ("null", CHAR, 1, 3),
        ("zero", CHAR, 1, 5),
        ("urandom", CHAR, 1, 9),
        ("kvm", CHAR, 10, 232),
        ("loop0", BLOCK, 7, 0),
    ];
    for rules in &lists {
        let seen = |mount: &Path, backend| {
            let leaf = Leaf::with_rules(backend, mount, rules);
            let mut outcomes = Vec::new();
            for (name, kind, major, minor) in nodes {
                for mode in [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR] {
                    let tried = try_opening(&leaf, Node::Make(name, kind, major, minor), mode);
                    outcomes.push((name, mode, tried));
                }
            }
            outcomes
        };
        let rules_text: Vec<String> = rules.iter().map(devices::describe).collect();
        assert_eq!(
            seen(v1, Backend::V1),
            seen(v2, Backend::V2),
            "{rules_text:?}"
        );
    }
}

/// Device programs attached directly to `cgroup` (BPF_PROG_QUERY, attach type BPF_CGROUP_DEVICE).
fn attached_programs(cgroup: &Path) -> Vec<u32> {
    #[repr(C)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
    }
    let dir = std::fs::File::open(cgroup).unwrap();
    let mut ids = [0u32; 16];
    let mut attr = QueryAttr {
        target_fd: std::os::fd::AsRawFd::as_raw_fd(&dir) as u32,
        attach_type: 6,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
    };
    // SAFETY: attr points at ids, which outlives the call; the size is attr's own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            16, // BPF_PROG_QUERY
            &mut attr as *mut QueryAttr,
            std::mem::size_of::<QueryAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_QUERY {}: {}",
        cgroup.display(),
        Errno::last()
    );
    ids[..attr.prog_cnt as usize].to_vec()
}

/// Whether the kernel still has program `id` (BPF_PROG_GET_FD_BY_ID).
fn program_exists(id: u32) -> bool {
    let attr = [id, 0, 0, 0];
    // SAFETY: a bpf_attr prefix holding prog_id; the fd it returns is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 13, attr.as_ptr(), 16usize) };
    if fd >= 0 {
        // SAFETY: closing the fd the kernel just gave this process.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    Errno::last() != Errno::ENOENT
}

#[test]
fn the_v2_program_outlives_its_loader_and_goes_away_with_the_cgroup() {
    for (backend, mount) in backends() {
        if backend != Backend::V2 {
            continue;
        }
        let leaf = Leaf::with_rules(backend, &mount, &devices::default_rules());
        // attach_program has returned and closed every descriptor of the program:
        // only the cgroup holds it now, as after poc exits.
        let ids = attached_programs(&leaf.dir);
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(
            try_in(&leaf, Node::Existing("/dev/zero")).open,
            None,
            "zero is allowed"
        );
        assert_eq!(
            try_in(&leaf, Node::Make("kvm", CHAR, 10, 232)).open,
            Some(Errno::EPERM)
        );
        drop(leaf);
        // The cgroup releases its programs from a workqueue after an RCU grace period.
        let deadline = Instant::now() + Duration::from_secs(60);
        while program_exists(ids[0]) {
            assert!(
                Instant::now() < deadline,
                "program {} still loaded after its cgroup went",
                ids[0]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn programs_on_the_cgroups_above_still_run() {
    use LinuxDeviceType::{A, C};
    for (backend, mount) in backends() {
        if backend != Backend::V2 {
            continue;
        }
        let leaf = Leaf::new(&mount);
        // The parent, like systemd's slices, refuses one device of those the container allows.
        devices::attach_program(
            &leaf.parent,
            &[
                rule(true, A, None, None, "rwm"),
                rule(false, C, Some(1), Some(5), "rwm"),
            ],
        )
        .unwrap();
        leaf.apply(backend, &devices::default_rules()).unwrap();
        assert_eq!(try_in(&leaf, Node::Existing("/dev/null")).open, None);
        assert_eq!(
            try_in(&leaf, Node::Existing("/dev/zero")).open,
            Some(Errno::EPERM)
        );
    }
}

/// Medians of applying the default rules to a fresh leaf: `cargo test --release --test devices
/// -- --ignored --nocapture`. The leaves are made and removed outside the timed part.
#[test]
#[ignore]
fn measure_applying_the_default_rules() {
    let rules = devices::default_rules();
    for (backend, mount) in backends() {
        let mut micros = Vec::new();
        for _ in 0..50 {
            let leaf = Leaf::new(&mount);
            let started = Instant::now();
            leaf.apply(backend, &rules).unwrap();
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let first = micros[0];
        micros.sort_by(f64::total_cmp);
        println!(
            "{backend:?}: median {:.0} us, min {:.0}, max {:.0}, first {:.0} (50 runs)",
            micros[25], micros[0], micros[49], first
        );
    }
}
