//! `poc run -it`: a real terminal, driven through a pty this test opens (CI has no terminal).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Env;

struct Pty {
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Pty {
    /// Opens a pty of `rows` x `cols` and starts `cmd` on its slave as a session leader with it as the
    /// controlling terminal, the way a shell runs `poc run -it` in a real terminal.
    fn spawn(cmd: &mut std::process::Command, rows: u16, cols: u16) -> (Self, std::process::Child) {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave: OwnedFd = pty.slave;
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
        let master = std::fs::File::from(pty.master);
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
        (
            Pty {
                master,
                output,
                seen: String::new(),
            },
            child,
        )
    }

    fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `needle` appears (and returns everything seen so far).
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("{needle:?} never appeared; output so far: {:?}", self.seen),
            }
        }
        self.seen.clone()
    }
}

fn wait_exit(child: &mut std::process::Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "poc did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_it_gives_a_real_terminal_with_size_and_ctrl_c_reaches_the_container() {
    let env = Env::with_busybox();
    let mut cmd = env.command(&["run", "-it", "--rm", "busybox", "sh"]);
    let (mut pty, mut child) = Pty::spawn(&mut cmd, 33, 101);
    pty.send("tty; stty size; echo answer=$((6*7))\n");
    pty.expect("answer=42");
    let seen = pty.expect("33 101");
    assert!(seen.contains("/dev/pts/0"), "{seen}");

    // Ctrl-C goes through the raw terminal to the container's foreground job, not to poc.
    pty.send("sleep 30\n");
    std::thread::sleep(Duration::from_millis(500));
    let interrupted = Instant::now();
    pty.send("\x03");
    pty.send("echo after=$?\n");
    pty.expect("after=130");
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "sleep was interrupted, not waited for"
    );

    pty.send("exit 7\n");
    assert_eq!(wait_exit(&mut child), 7);
    env.assert_clean();
}

#[test]
fn the_window_size_follows_a_resize() {
    let env = Env::with_busybox();
    let mut cmd = env.command(&["run", "--rm", "-it", "busybox", "sh"]);
    let (mut pty, mut child) = Pty::spawn(&mut cmd, 24, 80);
    pty.send("stty size\n");
    pty.expect("24 80");
    let size = nix::pty::Winsize {
        ws_row: 50,
        ws_col: 132,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on our own pty master; the kernel sends SIGWINCH to poc, its foreground job.
    unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    std::thread::sleep(Duration::from_millis(300));
    pty.send("stty size\n");
    pty.expect("50 132");
    pty.send("exit\n");
    assert_eq!(wait_exit(&mut child), 0);
    env.assert_clean();
}

#[test]
fn exec_it_gives_a_terminal_inside_a_running_container() {
    let env = Env::with_busybox();
    let out = env.poc(&[
        "run",
        "-d",
        "-t",
        "--name",
        "ttybox",
        "busybox",
        "sh",
        "-c",
        "tty; exec sleep 60",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // A detached -t container's terminal output is in its log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::stdout(&env.poc(&["logs", "ttybox"])).contains("/dev/pts/0") {
        assert!(
            Instant::now() < deadline,
            "the detached terminal's output never reached the log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = env.command(&["exec", "-it", "ttybox", "sh"]);
    let (mut pty, mut child) = Pty::spawn(&mut cmd, 40, 120);
    pty.send("tty; stty size; echo pid1=$(cat /proc/1/comm)\n");
    pty.expect("pid1=sleep");
    let seen = pty.expect("40 120");
    assert!(seen.contains("/dev/pts/1"), "{seen}");
    pty.send("exit 3\n");
    assert_eq!(wait_exit(&mut child), 3);
    assert!(env.poc(&["rm", "-f", "ttybox"]).status.success());
    env.assert_clean();
}
