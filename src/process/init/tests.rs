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
