//! The parent's side while a container process runs: moves its output to a sink (the log, the user's
//! terminal), the user's input to it, forwards signals when attached, reaps it, and drains its output
//! to the end before reporting how it exited. One poll loop, no threads, no async runtime.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{ParentIo, ProcessError, Running, Stream};

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
];

/// How long output may keep arriving after the process exited (something else holding its pipes).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Docker's convention: the status itself, or 128 + N when killed by signal N.
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// A user's terminal and signals joined to the process (foreground `run`, `exec`).
#[derive(Debug, Clone, Copy)]
pub struct Attach {
    /// Relay poc's stdin to the process (`-i`).
    pub stdin: bool,
}

/// Something more the loop waits on (the container's memory events): a notification fd, and
/// what to do when it becomes readable.
pub trait Watch {
    fn fd(&self) -> BorrowedFd<'_>;
    /// When `ready` must run even if the fd stays quiet.
    fn deadline(&self) -> Option<Instant>;
    fn ready(&mut self);
}

/// Owns the signals poc handles for its container. Create it before cloning, so nothing sent in
/// between is lost: blocked signals wait in the queue until the loop reads them.
pub struct Supervisor {
    signals: SignalFd,
    old_mask: SigSet,
}

impl Supervisor {
    pub fn new() -> Result<Self, ProcessError> {
        let mut mask = SigSet::empty();
        for s in FORWARDED.iter().chain(&[Signal::SIGCHLD, Signal::SIGWINCH]) {
            mask.add(*s);
        }
        let mut old_mask = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
            .map_err(|source| ProcessError::Terminal {
                op: "block signals",
                source,
            })?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|source| ProcessError::Terminal {
            op: "signalfd",
            source,
        })?;
        // (SIGCHLD is at its default: poc's main puts it back when a caller handed it ignored,
        // which would make the kernel reap the process without a signal.)
        Ok(Supervisor { signals, old_mask })
    }

    /// Runs until the process has exited and its output is drained; returns its exit code.
    /// Output goes to `sink`; with `attach`, signals are forwarded and the terminal is relayed.
    pub fn wait(
        &mut self,
        running: Running,
        io: ParentIo,
        attach: Option<Attach>,
        sink: &mut dyn FnMut(Stream, &[u8]),
        mut watch: Option<&mut dyn Watch>,
    ) -> Result<i32, ProcessError> {
        let pid = running.pid;
        let mut relay = Relay::new(running.pty_master, io, attach);
        let mut exit: Option<(i32, Instant)> = None;
        loop {
            if let Some((code, at)) = exit {
                if relay.outputs_closed() || at.elapsed() > DRAIN_LIMIT {
                    return Ok(code);
                }
            }
            let mut wake = exit.map(|(_, at)| at + DRAIN_LIMIT);
            if let Some(due) = watch.as_deref().and_then(|w| w.deadline()) {
                wake = Some(wake.map_or(due, |w| w.min(due)));
            }
            let timeout = match wake {
                Some(at) => PollTimeout::try_from(at.saturating_duration_since(Instant::now()))
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let stdin = std::io::stdin();
            let (ready, signals_ready, watch_ready) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                let slots = relay.poll_fds(stdin.as_fd(), &mut fds);
                let relayed = fds.len();
                if let Some(w) = watch.as_deref() {
                    fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Err(nix::Error::EINTR) => continue,
                    Err(source) => return Err(ProcessError::Terminal { op: "poll", source }),
                    Ok(_) => {}
                }
                let ready: Vec<(Slot, PollFlags)> = slots
                    .into_iter()
                    .zip(
                        fds[1..relayed]
                            .iter()
                            .map(|f| f.revents().unwrap_or(PollFlags::empty())),
                    )
                    .collect();
                let watch_ready = fds[relayed..].iter().any(|f| f.any().unwrap_or(false))
                    || watch
                        .as_deref()
                        .and_then(|w| w.deadline())
                        .is_some_and(|due| due <= Instant::now());
                (ready, fds[0].any().unwrap_or(false), watch_ready)
            };
            relay.pump(&ready, stdin.as_fd(), sink);
            if watch_ready {
                if let Some(w) = watch.as_deref_mut() {
                    w.ready();
                }
            }
            if signals_ready {
                self.handle_signals(pid, &relay, &mut exit)?;
            }
        }
    }

    /// Handles the signals waiting; records the process's exit code and time in `exit` when it is
    /// reaped. Once reaped, it is neither asked for again nor signalled: a SIGCHLD read after (the
    /// first may have been another child's, an exec's intermediate, and found the process already
    /// gone) would find it reaped (ECHILD), and its pid may be someone else's by then.
    fn handle_signals(
        &mut self,
        pid: Pid,
        relay: &Relay,
        exit: &mut Option<(i32, Instant)>,
    ) -> Result<(), ProcessError> {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match signal {
                Signal::SIGCHLD if exit.is_none() => {
                    if let Some(code) = reap(pid)? {
                        *exit = Some((code, Instant::now()));
                    }
                }
                Signal::SIGCHLD => {}
                Signal::SIGWINCH => relay.copy_window_size(),
                other if relay.attached && exit.is_none() => {
                    let _ = nix::sys::signal::kill(pid, other);
                }
                // A detached monitor ignores signals: the container is stopped with `poc stop`/`kill`.
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}

fn reap(pid: Pid) -> Result<Option<i32>, ProcessError> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => Ok(exit_code(status)),
        // Not (or no longer) our child: its status went to whoever reaped it. It has ended, how is
        // unknown: poc's own 125, said rather than passed off as the process's code.
        Err(nix::Error::ECHILD) => {
            eprintln!(
                "poc: process {pid} is not poc's child or was reaped by another process: its exit \
                 status is lost, reporting 125"
            );
            Ok(Some(125))
        }
        Err(source) => Err(ProcessError::Terminal {
            op: "waitpid",
            source,
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Stdout,
    Stderr,
    Pty,
    UserStdin,
    ContainerStdin,
}

/// The descriptors between the user, poc and the process.
struct Relay {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    /// The write end of the container's stdin pipe.
    container_stdin: Option<OwnedFd>,
    /// Input read from the user, not yet accepted by the container.
    pending: Vec<u8>,
    user_stdin_open: bool,
    attached: bool,
    saved_termios: Option<Termios>,
}

impl Relay {
    fn new(pty: Option<OwnedFd>, io: ParentIo, attach: Option<Attach>) -> Self {
        let relay_stdin = attach.is_some_and(|a| a.stdin);
        let mut saved_termios = None;
        if pty.is_some() && relay_stdin {
            let stdin = std::io::stdin();
            if let Ok(original) = tcgetattr(stdin.as_fd()) {
                let mut raw = original.clone();
                cfmakeraw(&mut raw);
                if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_ok() {
                    saved_termios = Some(original);
                }
            }
        }
        if let Some(fd) = &io.stdin {
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
        }
        let relay = Relay {
            stdout: io.stdout,
            stderr: io.stderr,
            pty,
            container_stdin: io.stdin,
            pending: Vec::new(),
            user_stdin_open: relay_stdin,
            attached: attach.is_some(),
            saved_termios,
        };
        relay.copy_window_size();
        relay
    }

    fn outputs_closed(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none() && self.pty.is_none()
    }

    fn poll_fds<'a>(&'a self, user_stdin: BorrowedFd<'a>, fds: &mut Vec<PollFd<'a>>) -> Vec<Slot> {
        let mut slots = Vec::new();
        for (fd, slot) in [
            (&self.stdout, Slot::Stdout),
            (&self.stderr, Slot::Stderr),
            (&self.pty, Slot::Pty),
        ] {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                slots.push(slot);
            }
        }
        let input_open = self.pty.is_some() || self.container_stdin.is_some();
        if self.pending.is_empty() && self.user_stdin_open && input_open {
            fds.push(PollFd::new(user_stdin, PollFlags::POLLIN));
            slots.push(Slot::UserStdin);
        }
        if !self.pending.is_empty() {
            if let Some(fd) = &self.container_stdin {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                slots.push(Slot::ContainerStdin);
            }
        }
        slots
    }

    fn pump(
        &mut self,
        ready: &[(Slot, PollFlags)],
        user_stdin: BorrowedFd,
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        for &(slot, flags) in ready {
            if flags.is_empty() {
                continue;
            }
            match slot {
                Slot::Stdout => read_into(&mut self.stdout, &mut buf, Stream::Stdout, sink),
                Slot::Stderr => read_into(&mut self.stderr, &mut buf, Stream::Stderr, sink),
                Slot::Pty => read_into(&mut self.pty, &mut buf, Stream::Stdout, sink),
                Slot::UserStdin => match nix::unistd::read(user_stdin, &mut buf) {
                    Ok(n) if n > 0 => {
                        self.pending.extend_from_slice(&buf[..n]);
                        self.flush_input();
                    }
                    Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                    _ => {
                        self.user_stdin_open = false;
                        // End of input: the container's stdin pipe closes too, as with `docker run -i`.
                        self.container_stdin = None;
                    }
                },
                Slot::ContainerStdin => self.flush_input(),
            }
        }
    }

    /// Writes pending input to the container without blocking the loop.
    fn flush_input(&mut self) {
        let target = match (&self.pty, &self.container_stdin) {
            (Some(pty), _) => pty.as_fd(),
            (None, Some(pipe)) => pipe.as_fd(),
            (None, None) => return self.pending.clear(),
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(target, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::EAGAIN) => return,
                Err(_) => {
                    self.pending.clear();
                    self.container_stdin = None;
                    return;
                }
            }
        }
        if !self.user_stdin_open {
            self.container_stdin = None;
        }
    }

    fn copy_window_size(&self) {
        let Some(pty) = self.pty.as_ref().filter(|_| self.attached) else {
            return;
        };
        // SAFETY: TIOCGWINSZ fills the winsize we own; TIOCSWINSZ reads it.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        for fd in [0, 1, 2] {
            if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0 {
                unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                return;
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved_termios {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// One read from an output; end of file (or EIO from a pty whose last holder has gone) closes it.
fn read_into(
    fd: &mut Option<OwnedFd>,
    buf: &mut [u8],
    stream: Stream,
    sink: &mut dyn FnMut(Stream, &[u8]),
) {
    let Some(open) = fd else { return };
    match nix::unistd::read(&*open, buf) {
        Ok(n) if n > 0 => sink(stream, &buf[..n]),
        Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
        _ => *fd = None,
    }
}

/// Writes all of `data` to `fd`, retrying short writes (poc's own stdout and stderr).
pub fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}
