//! What a new user meets first: poc run as someone other than root, a container run without a
//! name, the tables of `ps` and `images`, an image that is not there yet.

mod common;

use std::os::unix::process::CommandExt;

use common::{assert_error, stderr, stdout, Env};

#[test]
fn a_user_other_than_root_is_told_poc_needs_root_and_help_still_works() {
    let env = Env::new();
    let as_nobody = |args: &[&str], keep_env: bool| {
        let mut cmd = env.command(args);
        if !keep_env {
            // The default store and state root, where the raw permission error came from.
            cmd.env_remove("POC_STORE").env_remove("POC_STATE_ROOT");
        }
        cmd.uid(65534).gid(65534).output().unwrap()
    };
    for args in [
        &["ps"][..],
        &["images"],
        &["init", "busybox"],
        &["run", "--rm", "busybox", "true"],
        &["update", "--mem", "64M", "web"],
        &["logs", "web"],
        &["top"],
        &["network", "ls"],
        &["state", "web"],
        &["bench", "start"],
    ] {
        for keep_env in [false, true] {
            let out = as_nobody(args, keep_env);
            assert_error(&out, 125, "poc needs root");
            assert_eq!(
                stderr(&out),
                "poc: poc needs root: run it as root (or with sudo)\n",
                "{args:?}"
            );
        }
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["run", "--help"],
        &["update", "--help"],
        &["bench", "--help"],
    ] {
        let out = as_nobody(args, false);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).starts_with("poc") || stdout(&out).contains("Usage"));
    }
    // A usage error is still a usage error.
    assert_error(&as_nobody(&["ps", "--bogus"], false), 125, "--bogus");
    env.assert_clean();
}
