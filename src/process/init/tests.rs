//! The init's sequence, checked on a recording double; descriptor closing on the real kernel.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::stdio::close_all_but;
use super::LinuxSyscall;

#[test]
fn close_all_but_keeps_stdio_and_the_descriptors_asked_for() {
    let open = || {
        nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    };
    let fds: Vec<OwnedFd> = (0..6).map(|_| open()).collect();
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let (keep, gone) = ([raw[1], raw[4]], [raw[0], raw[2], raw[3], raw[5]]);
    // In a child, as the container's process does it: the test's other threads keep theirs.
    // SAFETY: the child only makes system calls and exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let open_now = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
            let ok = close_all_but(&LinuxSyscall, &keep).is_ok()
                && [0, 1, 2].into_iter().chain(keep).all(open_now)
                && !gone.into_iter().any(open_now);
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
}

mod sequence {
    //! The init's steps on a recording double: no root needed, nothing reaches the kernel. Paths
    //! are resolved for real (in a temporary root); after the double's pivot_root, "/" is the host's.

    use std::convert::Infallible;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::{Path, PathBuf};

    use nix::mount::MsFlags;
    use nix::sched::CloneFlags;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use oci_spec::runtime::{MountBuilder, RootBuilder, Spec};

    use super::super::{isolate_descriptors, setup_and_exec, InitError};
    use crate::cgroups::Hierarchies;
    use crate::network::NamespacePlan;
    use crate::process::syscall::recording::{Call, Recorder};
    use crate::process::{ChildConfig, ChildStdio, Role, MSG_GO};
    use crate::rootfs::RootSource;
    use crate::security::seccomp::Filter;

    /// A container's root and a volume to bind into it, both temporary directories.
    struct Bundle {
        root: tempfile::TempDir,
        volume: tempfile::TempDir,
        seccomp: tempfile::TempDir,
    }

    impl Bundle {
        fn new() -> Bundle {
            let dir = || tempfile::tempdir().unwrap();
            Bundle {
                root: dir(),
                volume: dir(),
                seccomp: dir(),
            }
        }

        fn root(&self) -> PathBuf {
            self.root.path().canonicalize().unwrap()
        }

        /// oci-spec's default Spec (Docker-like mounts, masked and read-only paths, all
        /// namespaces), with a volume at /data, a hostname and a non-root user.
        fn spec(&self, no_new_privs: bool) -> Spec {
            let mut spec = Spec::default();
            let root = RootBuilder::default().path(self.root()).readonly(true);
            spec.set_root(Some(root.build().unwrap()));
            spec.set_hostname(Some("web".into()));
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            let volume = MountBuilder::default()
                .destination("/data")
                .typ("bind")
                .source(self.volume.path())
                .options(vec!["rbind".to_string(), "rw".to_string()]);
            mounts.push(volume.build().unwrap());
            spec.set_mounts(Some(mounts));
            let process = spec.process_mut().as_mut().unwrap();
            process.set_no_new_privileges(Some(no_new_privs));
            process.user_mut().set_uid(1000);
            process.user_mut().set_gid(1000);
            process.user_mut().set_additional_gids(Some(vec![10]));
            spec
        }

        fn filter(&self) -> Filter {
            let profile = crate::security::seccomp::default_profile(&[]);
            crate::security::seccomp::compile(&profile, &self.seccomp.path().join("cache")).unwrap()
        }
    }

    fn init_role() -> Role {
        Role::Init {
            root: RootSource::Bundle,
            network: NamespacePlan::Host,
            cgroups: Hierarchies {
                v1: vec![],
                unified: Some(PathBuf::from("/sys/fs/cgroup")),
            },
            join: vec![],
            new_keyring: false,
        }
    }

    /// What the init did up to its exec, which the double fails.
    struct Started {
        calls: Vec<Call>,
        result: Result<Infallible, InitError>,
        /// The descriptors the init was given: its sync channel and the exec stub.
        sock: i32,
        stub: i32,
    }

    fn start(spec: &Spec, role: Role, seccomp: Option<&Filter>) -> Started {
        let (parent, child) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        // The parent's go, with the state JSON the hooks would read.
        nix::unistd::write(&parent, &[MSG_GO, b'{', b'}']).unwrap();
        let stub: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let cfg = ChildConfig {
            spec,
            role,
            stdio: ChildStdio::Inherit,
            join_cgroups: vec![],
            seccomp,
            preserve_fds: 0,
            gate: None,
            hooks: None,
        };
        let recorder = Recorder::default();
        let result = isolate_descriptors(&recorder, &cfg, &child, &stub, &[])
            .and_then(|()| setup_and_exec(&recorder, &cfg, &child, &stub));
        Started {
            calls: recorder.calls(),
            result,
            sock: child.as_raw_fd(),
            stub: stub.as_raw_fd(),
        }
    }

    fn start_init(no_new_privs: bool) -> (Bundle, Started) {
        let bundle = Bundle::new();
        let filter = bundle.filter();
        let started = start(&bundle.spec(no_new_privs), init_role(), Some(&filter));
        (bundle, started)
    }

    fn first(calls: &[Call], what: impl Fn(&Call) -> bool) -> usize {
        calls.iter().position(what).expect("the call was made")
    }

    fn last(calls: &[Call], what: impl Fn(&Call) -> bool) -> usize {
        calls.iter().rposition(what).expect("the call was made")
    }

    #[test]
    fn the_init_runs_to_the_exec_of_its_command_through_the_stub() {
        let (_bundle, started) = start_init(true);
        match started.result {
            Err(InitError::Setup(message)) => assert!(
                message.starts_with("executing poc's exec stub"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        let Some(Call::Exec(argv)) = started.calls.last() else {
            panic!("{:?}", started.calls);
        };
        assert_eq!(argv[0], "poc-exec");
        assert_eq!(argv[1], started.sock.to_string());
        assert!(argv[2].ends_with("/sh"), "{argv:?}");
        assert_eq!(argv[3..], ["sh"]);
    }

    #[test]
    fn the_init_closes_every_inherited_descriptor_before_anything_else() {
        let (_bundle, started) = start_init(true);
        let closing = first(&started.calls, |c| !matches!(c, Call::CloseRange(..)));
        assert!(closing > 0, "{:?}", started.calls);
        let closed: Vec<(u32, u32)> = started.calls[..closing]
            .iter()
            .map(|c| match c {
                Call::CloseRange(first, last) => (*first, *last),
                _ => unreachable!(),
            })
            .collect();
        let closes = |fd: u32| closed.iter().any(|(a, b)| (*a..=*b).contains(&fd));
        // From 3 to the last possible descriptor, but for the two the init still needs.
        let mut kept = [started.sock as u32, started.stub as u32];
        kept.sort();
        let open: Vec<u32> = (0..=kept[1] + 1).filter(|&fd| !closes(fd)).collect();
        assert_eq!(open, [0, 1, 2, kept[0], kept[1]], "{closed:?}");
        assert!(closed.contains(&(kept[1] + 1, u32::MAX)), "{closed:?}");
    }

    #[test]
    fn only_the_sync_channel_is_kept_open_across_the_exec() {
        let (_bundle, started) = start_init(true);
        let kept: Vec<&Call> = started
            .calls
            .iter()
            .filter(|c| matches!(c, Call::KeepOpenAcrossExec(_)))
            .collect();
        assert_eq!(kept, [&Call::KeepOpenAcrossExec(started.sock)]);
    }

    #[test]
    fn mounts_are_made_private_before_anything_is_mounted() {
        let (bundle, started) = start_init(true);
        let mounts: Vec<&Call> = started.calls.iter().filter(|c| c.is_mount()).collect();
        let Call::Mount { target, flags, .. } = mounts[0] else {
            panic!("{mounts:?}");
        };
        assert_eq!(target, Path::new("/"));
        assert_eq!(*flags, MsFlags::MS_REC | MsFlags::MS_PRIVATE);
        // Then the root, bound onto itself: pivot_root needs a mount point.
        let Call::Mount { source, target, .. } = mounts[1] else {
            panic!("{mounts:?}");
        };
        assert_eq!(
            (source.as_deref(), target),
            (Some(&*bundle.root()), &bundle.root())
        );
    }

    #[test]
    fn the_spec_mounts_land_inside_the_root_by_descriptor_before_pivot_root() {
        let (bundle, started) = start_init(true);
        let root = bundle.root();
        let calls = &started.calls;
        let pivot = first(calls, |c| matches!(c, Call::PivotRoot(_)));
        assert_eq!(calls[pivot], Call::PivotRoot(root.clone()));
        let spec_mounts: Vec<&Call> = calls[..pivot]
            .iter()
            .filter(|c| c.is_mount())
            .skip(2)
            .collect();
        // proc, /dev, devpts, shm, mqueue, sysfs, cgroup2 and the volume.
        assert_eq!(spec_mounts.len(), 8, "{spec_mounts:?}");
        for call in spec_mounts {
            match call {
                Call::Mount {
                    target, lands_on, ..
                } => {
                    assert!(target.starts_with("/proc/self/fd"), "{call:?}");
                    assert!(lands_on.starts_with(&root), "{call:?}");
                }
                Call::Bind { source, target, .. } => {
                    assert_eq!(source, &bundle.volume.path().canonicalize().unwrap());
                    assert_eq!(target, &root.join("data"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_cgroup_namespace_and_hostname_come_before_the_root_filesystem() {
        let (_bundle, started) = start_init(true);
        let calls = &started.calls;
        let unshare = first(calls, |c| *c == Call::Unshare(CloneFlags::CLONE_NEWCGROUP));
        let hostname = first(calls, |c| *c == Call::SetHostname("web".into()));
        let cgroupfs = first(
            calls,
            |c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "cgroup2"),
        );
        let first_mount = first(calls, Call::is_mount);
        // The container's /sys/fs/cgroup shows its own cgroup as the root only from inside.
        assert!(unshare < hostname && hostname < first_mount && first_mount < cgroupfs);
    }

    #[test]
    fn masked_and_read_only_paths_follow_pivot_root_and_the_root_goes_read_only_last() {
        let (_bundle, started) = start_init(true);
        let calls = &started.calls;
        let pivot = first(calls, |c| matches!(c, Call::PivotRoot(_)));
        let after: Vec<&Call> = calls[pivot + 1..].iter().filter(|c| c.is_mount()).collect();
        let lands = |call: &Call| match call {
            Call::Mount { lands_on, .. } => lands_on.clone(),
            Call::Bind { target, .. } => target.clone(),
            other => panic!("{other:?}"),
        };
        let (masks, rest) = after.split_at(after.len() - 1);
        // A masked file gets /dev/null bound over it; a read-only path, itself read-only.
        let null_over_keys = Call::Bind {
            source: PathBuf::from("/dev/null"),
            target: PathBuf::from("/proc/keys"),
            flags: MsFlags::empty(),
        };
        assert!(masks.contains(&&null_over_keys), "{masks:?}");
        assert!(masks.iter().any(|c| lands(c) == Path::new("/proc/sys")));
        assert_eq!(rest, [&Call::SetReadOnly(PathBuf::from("/"))]);
    }

    #[test]
    fn capabilities_are_dropped_after_every_mount_and_rlimits_set_before() {
        let (_bundle, started) = start_init(true);
        let calls = &started.calls;
        let last_mount = last(calls, Call::is_mount);
        let rlimit = first(calls, |c| {
            *c == Call::SetRlimit(libc::RLIMIT_NOFILE, 1024, 1024)
        });
        let bounding = first(calls, |c| *c == Call::SetBounding);
        assert!(last_mount < rlimit && rlimit < bounding);
    }

    #[test]
    fn the_user_changes_between_the_bounding_set_and_the_capability_sets() {
        let (_bundle, started) = start_init(true);
        let calls = &started.calls;
        let from = first(calls, |c| *c == Call::SetBounding);
        let to = first(calls, |c| *c == Call::SetCapabilities);
        assert_eq!(
            calls[from..=to],
            [
                Call::SetBounding,
                Call::SetGroups(vec![1000, 10]),
                Call::SetGid(1000),
                Call::SetKeepCaps(true),
                Call::SetUid(1000),
                Call::SetKeepCaps(false),
                Call::SetUmask(0o022),
                // The working directory: the container's "/", which the double left the host's.
                Call::EnterDirectory(PathBuf::from("/")),
                Call::SetCapabilities,
            ]
        );
    }

    #[test]
    fn with_no_new_privs_seccomp_is_the_last_step_before_exec() {
        let (_bundle, started) = start_init(true);
        let calls = &started.calls;
        let no_new_privs = first(calls, |c| *c == Call::SetNoNewPrivs);
        let seccomp = first(calls, |c| *c == Call::InstallSeccomp);
        assert!(no_new_privs < first(calls, |c| *c == Call::SetBounding));
        assert_eq!(
            calls[seccomp - 1..],
            [
                Call::LowerEffectiveForExec,
                Call::InstallSeccomp,
                Call::ResetSignals,
                Call::KeepOpenAcrossExec(started.sock),
                calls.last().unwrap().clone(),
            ]
        );
        assert!(matches!(calls.last(), Some(Call::Exec(_))));
    }

    #[test]
    fn without_no_new_privs_seccomp_is_loaded_while_the_init_still_holds_its_capabilities() {
        let (_bundle, started) = start_init(false);
        let calls = &started.calls;
        assert!(!calls.contains(&Call::SetNoNewPrivs));
        let seccomp: Vec<usize> = (0..calls.len())
            .filter(|&i| calls[i] == Call::InstallSeccomp)
            .collect();
        assert_eq!(seccomp.len(), 1);
        assert!(seccomp[0] < first(calls, |c| *c == Call::SetBounding));
        assert!(seccomp[0] > last(calls, Call::is_mount));
    }

    #[test]
    fn an_exec_joins_the_init_namespaces_in_order_and_builds_no_root() {
        let bundle = Bundle::new();
        let open = |ns: &str| -> OwnedFd {
            std::fs::File::open(format!("/proc/self/ns/{ns}"))
                .unwrap()
                .into()
        };
        let (uts, mnt) = (open("uts"), open("mnt"));
        let (uts_fd, mnt_fd) = (uts.as_raw_fd() as u32, mnt.as_raw_fd() as u32);
        let role = Role::Exec {
            namespaces: vec![
                (uts, CloneFlags::CLONE_NEWUTS),
                (mnt, CloneFlags::CLONE_NEWNS),
            ],
            pid: None,
            new_keyring: false,
            pids_tasks: None,
        };
        let started = start(&bundle.spec(true), role, None);
        let calls = &started.calls;
        // The namespaces' descriptors stay open until they are joined.
        for fd in [uts_fd, mnt_fd] {
            let closes = |c: &Call| matches!(c, Call::CloseRange(a, b) if (*a..=*b).contains(&fd));
            assert!(!calls.iter().any(closes), "{fd}: {calls:?}");
        }
        let joined: Vec<&Call> = calls
            .iter()
            .filter(|c| matches!(c, Call::SetNamespace(_)))
            .collect();
        assert_eq!(
            joined,
            [
                &Call::SetNamespace(CloneFlags::CLONE_NEWUTS),
                &Call::SetNamespace(CloneFlags::CLONE_NEWNS)
            ]
        );
        assert!(!calls
            .iter()
            .any(|c| c.is_mount() || matches!(c, Call::SetHostname(_) | Call::Unshare(_))));
        assert!(!calls.contains(&Call::InstallSeccomp));
        assert!(matches!(calls.last(), Some(Call::Exec(_))));
    }
}
