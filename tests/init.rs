//! `poc init`, `poc images`, `poc rmi`: images from busybox, tarballs and an Alpine mirror served on
//! 127.0.0.1 by this test (no internet here), and nothing half-made after a failure.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{assert_error, closed_port, stderr, stdout, Env};
use sha2::{Digest, Sha256};

/// A file the mirror serves; `short_by` bytes fewer than it announces simulate a cut connection.
#[derive(Clone)]
struct Served {
    body: Vec<u8>,
    short_by: usize,
}

/// A tiny HTTP/1.1 server for the test's mirror. It stops when the test process ends.
fn serve(files: HashMap<String, Served>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            seen.lock().unwrap().push(path.clone());
            match files.get(&path) {
                Some(file) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        file.body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&file.body[..file.body.len() - file.short_by]);
                }
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    (format!("http://{addr}/alpine"), log)
}

/// A minirootfs-like tarball: busybox with a few applets, built by the test.
fn rootfs_tarball(marker: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/alpine-release"), marker).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut tar = tar::Builder::new(&mut gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", root).unwrap();
        tar.finish().unwrap();
    }
    gz.finish().unwrap()
}

fn mirror_files(
    version: &str,
    tarball: &[u8],
    published_sha: &str,
    short_by: usize,
) -> HashMap<String, Served> {
    let arch = std::env::consts::ARCH;
    let branch: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    let path =
        format!("/alpine/v{branch}/releases/{arch}/alpine-minirootfs-{version}-{arch}.tar.gz");
    let sha = format!("{published_sha}  alpine-minirootfs-{version}-{arch}.tar.gz\n");
    HashMap::from([
        (
            path.clone(),
            Served {
                body: tarball.to_vec(),
                short_by,
            },
        ),
        (
            format!("{path}.sha256"),
            Served {
                body: sha.into_bytes(),
                short_by: 0,
            },
        ),
    ])
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// After a failed init: no image, no hidden build directory.
fn assert_no_image(env: &Env, name: &str) {
    let images = env.store().join("images");
    assert!(!images.join(name).exists(), "half image left");
    let hidden: Vec<_> = std::fs::read_dir(&images)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with(".b"))
                .collect()
        })
        .unwrap_or_default();
    assert!(hidden.is_empty(), "build directories left: {hidden:?}");
}

#[test]
fn init_alpine_downloads_verifies_and_unpacks_from_a_mirror() {
    let env = Env::new();
    let tarball = rootfs_tarball("3.20.99");
    let (mirror, log) = serve(mirror_files("3.20.99", &tarball, &sha256_hex(&tarball), 0));
    let out = env.poc(&["init", "--mirror", &mirror, "--version", "3.20.99"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        log.lock().unwrap().iter().any(|p| p.ends_with(".sha256")),
        "the checksum was fetched"
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.store().join("images/alpine/image.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["source"], "alpine");
    assert_eq!(meta["version"], "3.20.99");
    assert_eq!(meta["digest"], format!("sha256:{}", sha256_hex(&tarball)));
    let out = env.poc(&["run", "--rm", "alpine", "cat", "/etc/alpine-release"]);
    assert_eq!(stdout(&out), "3.20.99", "{}", stderr(&out));

    // Idempotent: a second init does not download again.
    let before = log.lock().unwrap().len();
    let out = env.poc(&["init", "--mirror", &mirror, "--version", "3.20.99"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("already present"));
    assert_eq!(log.lock().unwrap().len(), before);
    // --force rebuilds.
    let out = env.poc(&[
        "init",
        "--force",
        "--mirror",
        &mirror,
        "--version",
        "3.20.99",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(log.lock().unwrap().len() > before);
    env.assert_clean();
}

#[test]
fn a_checksum_mismatch_is_refused_and_leaves_no_image() {
    let env = Env::new();
    let tarball = rootfs_tarball("bad");
    let (mirror, _) = serve(mirror_files("3.20.98", &tarball, &"0".repeat(64), 0));
    let out = env.poc(&["init", "--mirror", &mirror, "--version", "3.20.98"]);
    assert_error(&out, 125, "checksum mismatch");
    assert_no_image(&env, "alpine");
}

#[test]
fn the_pinned_release_must_match_the_pinned_digest() {
    let env = Env::new();
    let tarball = rootfs_tarball("fake 3.20.3");
    // The mirror publishes a checksum that matches its (fake) tarball but not the one pinned in rootfs/.
    let (mirror, _) = serve(mirror_files("3.20.3", &tarball, &sha256_hex(&tarball), 0));
    let out = env.poc(&["init", "--mirror", &mirror]);
    assert_error(&out, 125, "checksum mismatch");
    assert_no_image(&env, "alpine");
}

#[test]
fn a_truncated_download_is_an_error_and_leaves_no_image() {
    let env = Env::new();
    let tarball = rootfs_tarball("short");
    let (mirror, _) = serve(mirror_files(
        "3.20.97",
        &tarball,
        &sha256_hex(&tarball),
        100,
    ));
    let out = env.poc(&["init", "--mirror", &mirror, "--version", "3.20.97"]);
    assert_error(&out, 125, "download of");
    assert_no_image(&env, "alpine");
}

#[test]
fn an_unreachable_mirror_names_the_offline_alternatives() {
    let env = Env::new();
    let port = closed_port();
    let out = env.poc(&[
        "init",
        "--mirror",
        &format!("http://127.0.0.1:{port}/alpine"),
    ]);
    assert_error(&out, 125, "poc init busybox");
    assert_no_image(&env, "alpine");
}

#[test]
fn init_busybox_images_and_rmi() {
    let env = Env::with_busybox();
    let out = env.poc(&["images"]);
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("busybox ") && l.contains("busybox")),
        "{table}"
    );
    let out = env.poc(&["images", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["name"], "busybox");
    assert!(json[0]["size_bytes"].as_u64().unwrap() > 500_000);
    let out = env.poc(&["rmi", "busybox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.store().join("images/busybox").exists());
    let out = env.poc(&["rmi", "busybox"]);
    assert_error(&out, 125, "not found");
}

fn write_gz(path: &Path, tar: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(tar).unwrap();
    gz.finish().unwrap();
}

#[test]
fn init_from_a_tarball_makes_a_runnable_image() {
    let env = Env::new();
    let path = env.dir.path().join("rootfs.tar.gz");
    std::fs::write(&path, rootfs_tarball("from-file")).unwrap();
    let out = env.poc(&["init", "--from", path.to_str().unwrap(), "myimage"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.poc(&["run", "--rm", "myimage", "cat", "/etc/alpine-release"]);
    assert_eq!(stdout(&out), "from-file");
    let out = env.poc(&["init", "--from", path.to_str().unwrap()]);
    assert_error(&out, 125, "needs the new image's name");
    env.assert_clean();
}

#[test]
fn a_hostile_tarball_is_refused_and_nothing_lands_outside() {
    let env = Env::new();
    let outside = env.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", raw_tar(&[("../../escaped", b'0', "x")])),
        (
            "symlink",
            raw_tar(&[
                ("esc", b'2', outside.to_str().unwrap()),
                ("esc/escaped", b'0', "x"),
            ]),
        ),
    ];
    for (name, tar) in cases {
        let path = env.dir.path().join(format!("{name}.tar.gz"));
        write_gz(&path, &tar);
        let out = env.poc(&["init", "--from", path.to_str().unwrap(), name]);
        assert_error(&out, 125, "unsafe archive entry");
        assert_no_image(&env, name);
        assert!(
            !outside.join("escaped").exists(),
            "{name}: an entry landed outside the image"
        );
        assert!(!env.dir.path().join("escaped").exists());
    }
}

/// A tar written byte by byte, as a hostile tool would (tar::Builder refuses '..').
fn raw_tar(entries: &[(&str, u8, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, data) in entries {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        let (size, link) = if *kind == b'2' {
            (0, *data)
        } else {
            (data.len(), "")
        };
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        if *kind != b'2' {
            let mut body = data.as_bytes().to_vec();
            body.resize(data.len().div_ceil(512) * 512, 0);
            out.extend_from_slice(&body);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn a_gzip_bomb_is_stopped_at_the_size_cap_and_leaves_no_image() {
    let env = Env::new();
    // 32 MiB of zeros in one entry: about 32 KiB gzipped.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(32 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(
            &mut header,
            "zeros",
            std::io::Read::take(std::io::repeat(0), 32 << 20),
        )
        .unwrap();
    let path = env.dir.path().join("bomb.tar.gz");
    write_gz(&path, &builder.into_inner().unwrap());
    let out = env.poc(&[
        "init",
        "--from",
        &path.to_string_lossy(),
        "bomb",
        "--max-size",
        "8M",
    ]);
    assert_error(&out, 125, "unpacks to more than 8388608 bytes");
    assert_no_image(&env, "bomb");
}
