//! OCI hooks: a program run at a point of the container's life with the container's state JSON on
//! its stdin. The runtime runs prestart, createRuntime, poststart and poststop in its own
//! namespaces; the container's init runs createContainer (before pivot_root) and startContainer
//! (just before the command) in the container's.

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Runs `hooks` one after the other; the first failure stops the rest. `stage` names them in the
/// error ("prestart hook /usr/bin/x: exit status 1: <its output>").
pub fn run_all(stage: &str, hooks: &[Hook], state: &[u8]) -> Result<(), String> {
    hooks
        .iter()
        .try_for_each(|hook| run(hook, state).map_err(|e| format!("{stage} hook {e}")))
}

/// One hook: its own argv (args[0] is its name) and environment only, the state on stdin, its
/// output kept in an unlinked file (no pipe to fill up while we wait), killed after its timeout.
pub fn run(hook: &Hook, state: &[u8]) -> Result<(), String> {
    let name = hook.path().display().to_string();
    let fail = |what: &dyn std::fmt::Display| format!("{name}: {what}");
    let mut command = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((first, rest)) = args.split_first() {
        command.arg0(first).args(rest);
    }
    command.env_clear();
    for pair in hook.env().iter().flatten() {
        if let Some((key, value)) = pair.split_once('=') {
            command.env(key, value);
        }
    }
    let output = tempfile().map_err(|e| fail(&e))?;
    command
        .stdin(Stdio::piped())
        .stdout(output.try_clone().map_err(|e| fail(&e))?)
        .stderr(output.try_clone().map_err(|e| fail(&e))?);
    let mut child = command.spawn().map_err(|e| fail(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state is not an error, and its closed pipe must not kill
        // poc (SIGPIPE has its default action outside `run` and `exec`).
        // SAFETY: swapping a signal disposition in a single-threaded process, restored below.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let _ = stdin.write_all(state);
        drop(stdin);
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGPIPE, previous) };
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let status = match wait_until_exit(&child, timeout) {
        Ok(true) => child.wait().map_err(|e| fail(&e))?,
        Ok(false) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(&format!(
                "timed out after {} s",
                timeout.unwrap_or_default().as_secs()
            )));
        }
        Err(e) => return Err(fail(&e)),
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let mut output = output;
    let _ = output.rewind();
    let _ = output.take(4096).read_to_string(&mut text);
    let text = text.trim();
    Err(if text.is_empty() {
        fail(&status)
    } else {
        fail(&format!("{status}: {text}"))
    })
}

/// Waits, without polling, until the hook exits (true) or `timeout` passes (false): its pidfd
/// becomes readable when it exits.
fn wait_until_exit(
    child: &std::process::Child,
    timeout: Option<Duration>,
) -> std::io::Result<bool> {
    // SAFETY: pidfd_open on our own child's pid, which stays ours (unreaped) until we wait.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let pidfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let wait = match deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) => {
                    nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX)
                }
                None => return Ok(false),
            },
            None => nix::poll::PollTimeout::NONE,
        };
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&pidfd),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, wait) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// An anonymous file in memory for a hook's output.
fn tempfile() -> std::io::Result<std::fs::File> {
    let fd =
        nix::sys::memfd::memfd_create(c"poc-hook-output", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["GREETING=hi".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn a_hook_reads_the_state_and_sees_only_its_own_environment() {
        let h = hook(
            &[
                "sh",
                "-c",
                r#"read s; [ "$s" = '{"id":"x"}' ] && [ "$GREETING" = hi ] && [ -z "$HOME" ]"#,
            ],
            None,
        );
        assert_eq!(run(&h, b"{\"id\":\"x\"}\n"), Ok(()));
    }

    #[test]
    fn a_failing_hook_reports_its_status_and_output() {
        let h = hook(&["sh", "-c", "echo broken >&2; exit 3"], None);
        let err = run_all("prestart", &[h], b"{}").unwrap_err();
        assert!(err.starts_with("prestart hook /bin/sh: "), "{err}");
        assert!(
            err.contains("exit status: 3") && err.contains("broken"),
            "{err}"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let h = hook(&["sh", "-c", "sleep 5"], Some(1));
        let started = Instant::now();
        let err = run(&h, b"{}").unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
