//! The parent's side while a foreground container runs: forwards signals to it, relays its terminal
//! (raw mode, window size, resize), reaps it and turns its end into an exit code.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{ProcessError, Running};

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
];

/// Docker's convention: the status itself, or 128 + N when killed by signal N.
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
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
        Ok(Supervisor { signals, old_mask })
    }

    /// Runs until the container's init exits; returns its exit code.
    pub fn wait(&mut self, running: Running, interactive: bool) -> Result<i32, ProcessError> {
        let pid = running.pid;
        let stdin = std::io::stdin();
        let mut terminal = running
            .pty_master
            .map(|master| Terminal::attach(master, stdin.as_fd(), interactive));
        loop {
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            if let Some(t) = &terminal {
                fds.extend(t.poll_fds(stdin.as_fd()));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(source) => return Err(ProcessError::Terminal { op: "poll", source }),
                Ok(_) => {}
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            if let Some(t) = terminal.as_mut() {
                t.pump(&ready[1..], stdin.as_fd());
            }
            if ready[0] {
                if let Some(code) = self.handle_signals(pid, terminal.as_ref())? {
                    if let Some(t) = terminal.as_mut() {
                        t.drain_output();
                    }
                    return Ok(code);
                }
            }
        }
    }

    fn handle_signals(
        &mut self,
        pid: Pid,
        terminal: Option<&Terminal>,
    ) -> Result<Option<i32>, ProcessError> {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match signal {
                Signal::SIGCHLD => {
                    if let Some(code) = reap(pid)? {
                        return Ok(Some(code));
                    }
                }
                Signal::SIGWINCH => {
                    if let Some(t) = terminal {
                        t.copy_window_size();
                    }
                }
                other => {
                    let _ = nix::sys::signal::kill(pid, other);
                }
            }
        }
        Ok(None)
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
        Err(nix::Error::ECHILD) => Ok(Some(125)),
        Err(source) => Err(ProcessError::Terminal {
            op: "waitpid",
            source,
        }),
    }
}

/// The user's terminal joined to the container's pty. Raw mode lasts as long as this value.
struct Terminal {
    master: Option<OwnedFd>,
    stdin_open: bool,
    saved: Option<Termios>,
}

impl Terminal {
    fn attach(master: OwnedFd, stdin: BorrowedFd, interactive: bool) -> Self {
        let mut saved = None;
        if interactive {
            if let Ok(original) = tcgetattr(stdin) {
                let mut raw = original.clone();
                cfmakeraw(&mut raw);
                if tcsetattr(stdin, SetArg::TCSANOW, &raw).is_ok() {
                    saved = Some(original);
                }
            }
        }
        let terminal = Terminal {
            master: Some(master),
            stdin_open: interactive,
            saved,
        };
        terminal.copy_window_size();
        terminal
    }

    fn poll_fds<'a>(&'a self, stdin: BorrowedFd<'a>) -> Vec<PollFd<'a>> {
        let mut fds = Vec::new();
        if let Some(m) = &self.master {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if self.stdin_open {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            }
        }
        fds
    }

    /// Moves what is ready: container output to stdout, user input to the container.
    fn pump(&mut self, ready: &[bool], stdin: BorrowedFd) {
        let Some(master) = &self.master else { return };
        let mut buf = [0u8; 16 * 1024];
        if ready.first() == Some(&true) {
            match nix::unistd::read(master, &mut buf) {
                Ok(n) if n > 0 => write_all(std::io::stdout().as_fd(), &buf[..n]),
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                // EIO: every process holding the slave has gone.
                _ => self.master = None,
            }
        }
        if let (Some(master), Some(&true)) = (&self.master, ready.get(1)) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(n) if n > 0 => write_all(master.as_fd(), &buf[..n]),
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                _ => self.stdin_open = false,
            }
        }
    }

    /// After the init exits, whatever it wrote last is still in the pty: copy it out.
    fn drain_output(&mut self) {
        let Some(master) = self.master.take() else {
            return;
        };
        let _ = nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = nix::unistd::read(&master, &mut buf) {
            if n == 0 {
                break;
            }
            write_all(std::io::stdout().as_fd(), &buf[..n]);
        }
    }

    fn copy_window_size(&self) {
        let Some(master) = &self.master else { return };
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        for fd in [0, 1, 2] {
            // SAFETY: TIOCGWINSZ fills the winsize we own; TIOCSWINSZ reads it.
            if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0 {
                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                return;
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}
