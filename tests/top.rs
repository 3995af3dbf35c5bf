//! `poc top`: the full-screen view, driven through a pty this test opens (CI has no terminal).

mod common;

use common::pty::{wait_exit, Pty};
use common::{assert_error, Env};

#[test]
fn top_shows_each_running_container_with_sparklines_and_quits_on_q() {
    let env = Env::with_busybox();
    let spinner = env.run_detached(&[
        "--name",
        "spinner",
        "--network",
        "none",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    let sleeper = env.run_detached(&[
        "--name",
        "sleeper",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    let mut cmd = env.command(&["top", "--interval", "200ms"]);
    let mut pty = Pty::spawn(&mut cmd, 40, 120);
    // The alternate screen, the table with both containers, then a chart per measure.
    pty.expect("\x1b[?1049h");
    let screen = pty.expect_on_screen("ms/s");
    let text = screen.join("\n");
    assert!(screen[0].contains(" poc top "), "{text}");
    let line = |name: &str| {
        screen
            .iter()
            .find(|l| l.contains(name))
            .cloned()
            .unwrap_or_default()
    };
    assert!(line("spinner").contains("running"), "{text}");
    assert!(line("sleeper").contains("running"), "{text}");
    for title in [
        "CPU",
        "Memory",
        "Page faults",
        "Throttled",
        "Processes",
        "CPU pressure",
    ] {
        assert!(
            text.contains(&format!(" {title} ")),
            "no {title} chart:\n{text}"
        );
    }
    // The charts are the selected container's: select the spinner, throttled by --cpus 0.5.
    let spinner_row = screen.iter().position(|l| l.contains("spinner")).unwrap();
    let first_row = screen
        .iter()
        .position(|l| l.contains("sleeper"))
        .unwrap()
        .min(spinner_row);
    for _ in first_row..spinner_row {
        pty.send("j");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let screen = pty.screen();
        let title = screen.iter().find(|l| l.contains(" Throttled ")).unwrap();
        let ms: f64 = title
            .split(" Throttled ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{title}"));
        // Any throttling at all: on a loaded machine the spinner may not even get its half CPU.
        if ms > 0.0
            && screen
                .iter()
                .any(|l| l.contains(" CPU ") && !l.contains(" CPU 0.0%"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spinner's charts never showed its throttling:\n{}",
            screen.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A container that goes away is shown as exited; top keeps going.
    assert!(env.poc(&["rm", "-f", &sleeper]).status.success());
    pty.expect_on_screen("exited");
    pty.send("j");
    pty.send("q");
    assert_eq!(wait_exit(&mut pty.child), 0);
    // The terminal is given back: alternate screen left.
    pty.expect("\x1b[?1049l");
    assert!(env.poc(&["rm", "-f", &spinner]).status.success());
    env.assert_clean();
}

#[test]
fn top_without_a_terminal_says_so() {
    let env = Env::with_busybox();
    assert_error(&env.poc(&["top"]), 125, "needs a terminal");
    assert_error(&env.poc(&["top", "nobody"]), 125, "needs a terminal");
}

#[test]
fn top_on_a_terminal_too_small_says_so_and_draws_nothing() {
    let env = Env::with_busybox();
    for (rows, cols) in [(0, 0), (10, 120), (40, 20)] {
        let mut cmd = env.command(&["top"]);
        let mut pty = Pty::spawn(&mut cmd, rows, cols);
        let seen = pty.expect("needs a terminal of at least 40x17");
        assert_eq!(wait_exit(&mut pty.child), 125, "{seen:?}");
        let seen = pty.expect(&format!("this one is {cols}x{rows}"));
        assert!(!seen.contains("\x1b[?1049h"), "{seen:?}");
    }
}

#[test]
fn top_gives_the_terminal_back_when_terminated_hung_up_or_interrupted() {
    use nix::sys::signal::{kill, Signal};
    let env = Env::with_busybox();
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        let mut cmd = env.command(&["top", "--interval", "100ms"]);
        let mut pty = Pty::spawn(&mut cmd, 30, 100);
        pty.expect("\x1b[?1049h");
        pty.expect_on_screen("no running containers");
        let pid = nix::unistd::Pid::from_raw(pty.child.id() as i32);
        kill(pid, signal).unwrap();
        assert_eq!(wait_exit(&mut pty.child), 128 + signal as i32, "{signal}");
        // The main screen again, and the cursor shown, after the last time it was hidden.
        let seen = pty.expect("\x1b[?1049l\x1b[?25h");
        assert!(
            seen.rfind("\x1b[?1049l") > seen.rfind("\x1b[?1049h"),
            "{signal}: {seen:?}"
        );
        assert!(
            seen.rfind("\x1b[?25h") > seen.rfind("\x1b[?25l"),
            "{signal}: the cursor is left hidden: {seen:?}"
        );
    }
    env.assert_clean();
}
