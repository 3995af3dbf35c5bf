//! `poc run -it`: a real terminal, driven through a pty this test opens (CI has no terminal).

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::pty::{wait_exit, Pty};
use common::Env;

#[test]
fn run_it_gives_a_real_terminal_with_size_and_ctrl_c_reaches_the_container() {
    let env = Env::with_busybox();
    let mut cmd = env.command(&["run", "-it", "--rm", "busybox", "sh"]);
    let mut pty = Pty::spawn(&mut cmd, 33, 101);
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
    assert_eq!(wait_exit(&mut pty.child), 7);
    env.assert_clean();
}

#[test]
fn the_window_size_follows_a_resize() {
    let env = Env::with_busybox();
    let mut cmd = env.command(&["run", "--rm", "-it", "busybox", "sh"]);
    let mut pty = Pty::spawn(&mut cmd, 24, 80);
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
    assert_eq!(wait_exit(&mut pty.child), 0);
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
    let mut pty = Pty::spawn(&mut cmd, 40, 120);
    pty.send("tty; stty size; echo pid1=$(cat /proc/1/comm)\n");
    pty.expect("pid1=sleep");
    let seen = pty.expect("40 120");
    assert!(seen.contains("/dev/pts/1"), "{seen}");
    pty.send("exit 3\n");
    assert_eq!(wait_exit(&mut pty.child), 3);
    assert!(env.poc(&["rm", "-f", "ttybox"]).status.success());
    env.assert_clean();
}
