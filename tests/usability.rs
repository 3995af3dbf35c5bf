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

#[test]
fn a_container_run_without_a_name_gets_one_to_be_called_by() {
    let env = Env::with_busybox();
    let mut names = Vec::new();
    for _ in 0..3 {
        let id = env.run_detached(&[
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo hi; sleep 60",
        ]);
        let ps: Vec<serde_json::Value> =
            serde_json::from_slice(&env.poc(&["ps", "--format", "json"]).stdout).unwrap();
        let row = ps.iter().find(|r| r["id"] == id.as_str()).unwrap();
        let name = row["name"].as_str().unwrap_or_default().to_string();
        let (adjective, surname) = name.split_once('_').unwrap_or_else(|| panic!("{row}"));
        assert!(!adjective.is_empty() && !surname.is_empty(), "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        // The name works wherever an id does.
        let out = env.poc(&["inspect", &name]);
        assert!(stdout(&out).contains(&id), "{}", stderr(&out));
        assert!(stdout(&env.poc(&["ps"])).contains(&name));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stdout(&env.poc(&["logs", &name])) != "hi\n" {
            assert!(std::time::Instant::now() < deadline, "no logs by {name}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        names.push((name, id));
    }
    let distinct: std::collections::HashSet<&String> = names.iter().map(|(n, _)| n).collect();
    assert_eq!(distinct.len(), 3, "{names:?}");
    for (name, _) in &names {
        let out = env.poc(&["rm", "-f", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    env.assert_clean();
}

/// Asserts that every row's cells start where the header's names do (Docker's tabwriter layout); a
/// cell may be empty (PORTS of a container that publishes none, LIMITS of one without limits).
fn assert_aligned(table: &str, columns: &[&str]) {
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let starts: Vec<usize> = columns
        .iter()
        .map(|c| {
            header
                .find(c)
                .unwrap_or_else(|| panic!("no {c} in {header}"))
        })
        .collect();
    for line in lines {
        let chars: Vec<char> = line.chars().collect();
        for (i, (column, &start)) in columns.iter().zip(&starts).enumerate().skip(1) {
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(chars.len())
                .min(chars.len());
            let empty = chars
                .get(start..end)
                .is_some_and(|c| c.iter().all(|c| *c == ' '));
            // Empty cells at the end of a row leave no trailing spaces.
            let ended = start >= chars.len();
            assert!(
                ended
                    || chars.get(start - 1) == Some(&' ')
                        && chars.get(start - 2) == Some(&' ')
                        && (empty || chars.get(start).is_some_and(|c| *c != ' ')),
                "{column} is not where its header is:\n{table}"
            );
        }
    }
}

#[test]
fn ps_and_images_columns_are_as_wide_as_their_content() {
    let env = Env::with_busybox();
    // A NAME cell far wider than any fixed column, whatever CREATED says by then.
    let long_name = "a-name-wider-than-any-fixed-width-column-would-be";
    let long = env.run_detached(&[
        "--name",
        long_name,
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    // Created a second earlier, so that it is listed after the container below (ps sorts by
    // creation time, in seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let id = env.run_detached(&[
        "--network",
        "none",
        "--mem",
        "64M",
        "busybox",
        "sleep",
        "60",
    ]);
    let table = stdout(&env.poc(&["ps"]));
    assert!(
        table.contains("Less than a second ago") || table.contains("second"),
        "{table}"
    );
    assert_aligned(
        &table,
        &[
            "CONTAINER ID",
            "NAME",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "PID",
            "LIMITS",
        ],
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with(&id[..12]),
        "{table}"
    );
    assert!(table.contains(long_name), "{table}");
    let table = stdout(&env.poc(&["images"]));
    assert_aligned(
        &table,
        &["NAME", "SOURCE", "VERSION", "SIZE", "CREATED", "DIGEST"],
    );
    assert!(env.poc(&["rm", "-f", &id, &long]).status.success());
    env.assert_clean();
}

#[test]
fn running_an_image_not_built_yet_says_what_to_type() {
    let env = Env::new();
    let out = env.poc(&["run", "alpine", "true"]);
    assert_error(&out, 125, "create it with `poc init` (downloads Alpine)");
    assert!(
        stderr(&out).contains("`poc init busybox`"),
        "{}",
        stderr(&out)
    );
    let out = env.poc(&["run", "busybox", "true"]);
    assert_error(&out, 125, "create it with `poc init busybox`");
    let out = env.poc(&["run", "mine", "true"]);
    assert_error(&out, 125, "`poc init --from ROOTFS.tar.gz mine`");
    env.assert_clean();
}
