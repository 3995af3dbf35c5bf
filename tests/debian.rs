//! `poc init debian`: a debootstrap image with extra packages (Debian's archive is reachable here).

mod common;

use common::{assert_error, closed_port, stderr, stdout, Env};

#[test]
fn init_debian_with_packages_makes_a_runnable_image() {
    let env = Env::new();
    let out = env.poc(&["init", "debian", "--with", "iproute2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.poc(&[
        "run",
        "--rm",
        "debian",
        "sh",
        "-c",
        "cat /etc/debian_version; ip -V",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("12."), "{text} {}", stderr(&out));
    assert!(text.contains("ip utility"), "{text}");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.store().join("images/debian/image.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["source"], "debian");
    assert_eq!(meta["version"], "bookworm");
    env.assert_clean();
}

#[test]
fn a_failed_debootstrap_leaves_no_image() {
    let env = Env::new();
    let port = closed_port();
    let out = env.poc(&[
        "init",
        "debian",
        "--mirror",
        &format!("http://127.0.0.1:{port}/debian"),
    ]);
    assert_error(&out, 125, "debootstrap bookworm failed");
    assert!(!env.store().join("images/debian").exists());
    let out = env.poc(&["init", "debian", "--with", "bad;pkg"]);
    assert_error(&out, 125, "not a Debian package name");
}
