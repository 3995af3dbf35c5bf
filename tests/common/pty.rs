//! A pty the tests open and drive, since CI has no terminal: spawn a command on its slave as a
//! session leader with it as the controlling terminal, type into the master, read what appears.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Owns the command it runs: a test that fails half-way kills it on drop rather than leaving a
/// process blocked on a terminal nobody reads.
pub struct Pty {
    pub master: std::fs::File,
    pub child: std::process::Child,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
    raw: Vec<u8>,
    size: (u16, u16),
}

impl Pty {
    /// Opens a pty of `rows` x `cols` and starts `cmd` on its slave as a session leader with it as the
    /// controlling terminal, the way a shell runs `poc run -it` in a real terminal.
    pub fn spawn(cmd: &mut std::process::Command, rows: u16, cols: u16) -> Self {
        // Both ends close-on-exec from the start: tests run in parallel threads, and a process
        // another test starts must not inherit this master (holding it, the command here would
        // never see its terminal hang up).
        use nix::fcntl::OFlag;
        let master =
            nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let slave_path = nix::pty::ptsname_r(&master).unwrap();
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&slave_path)
            .unwrap()
            .into();
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass.
        assert_eq!(
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
        let slave_fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // SAFETY: the fd is the master we opened and own from here on.
        let master = unsafe { std::fs::File::from_raw_fd(master.into_raw_fd()) };
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Pty {
            master,
            child,
            output,
            seen: String::new(),
            raw: Vec::new(),
            size: (rows, cols),
        }
    }

    pub fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `needle` appears (and returns everything seen so far).
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.take(bytes),
                Err(_) => panic!("{needle:?} never appeared; output so far: {:?}", self.seen),
            }
        }
        self.seen.clone()
    }

    fn take(&mut self, bytes: Vec<u8>) {
        self.seen.push_str(&String::from_utf8_lossy(&bytes));
        self.raw.extend_from_slice(&bytes);
    }

    /// The screen now, after whatever output has arrived.
    pub fn screen(&mut self) -> Vec<String> {
        while let Ok(bytes) = self.output.try_recv() {
            self.take(bytes);
        }
        render(&String::from_utf8_lossy(&self.raw), self.size)
    }

    /// Waits until `needle` is on the screen a full-screen program drew (cursor moves and all) and
    /// returns the screen's lines.
    pub fn expect_on_screen(&mut self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = render(&String::from_utf8_lossy(&self.raw), self.size);
            if screen.iter().any(|l| l.contains(needle)) {
                return screen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.take(bytes),
                Err(_) => panic!(
                    "{needle:?} never appeared on the screen:\n{}",
                    screen.join("\n")
                ),
            }
        }
    }
}

/// The screen after `output`: text at the cursor, `ESC[row;colH` moves, `ESC[2J` clears; other
/// escape sequences (colours, modes) change nothing visible here.
fn render(output: &str, (rows, cols): (u16, u16)) -> Vec<String> {
    let mut grid = vec![vec![' '; cols as usize]; rows as usize];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut params = String::new();
                let mut end = ' ';
                for p in chars.by_ref() {
                    if ('@'..='~').contains(&p) {
                        end = p;
                        break;
                    }
                    params.push(p);
                }
                match end {
                    'H' => {
                        let mut it = params.split(';').map(|n| n.parse::<usize>().unwrap_or(1));
                        row = it.next().unwrap_or(1).saturating_sub(1);
                        col = it.next().unwrap_or(1).saturating_sub(1);
                    }
                    'J' if params == "2" => grid.iter_mut().for_each(|l| l.fill(' ')),
                    _ => {}
                }
            }
            '\x1b' => {
                chars.next();
            }
            '\r' => col = 0,
            '\n' => row += 1,
            c if !c.is_control() => {
                if let Some(cell) = grid.get_mut(row).and_then(|l| l.get_mut(col)) {
                    *cell = c;
                }
                col += 1;
            }
            _ => {}
        }
    }
    grid.into_iter().map(|l| l.into_iter().collect()).collect()
}

impl Drop for Pty {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_exit(child: &mut std::process::Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "poc did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
