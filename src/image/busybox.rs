//! An offline image from the host's static busybox: one binary, a link per applet, a minimal /etc.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::{ImageError, Result};
use crate::error::io;

const CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

pub fn build(rootfs: &Path) -> Result<(String, String, String)> {
    let busybox = CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file() && is_static(p))
        .ok_or_else(|| {
            ImageError::Build(
                "no static busybox found in /bin or /usr/bin: install the busybox-static package"
                    .into(),
            )
        })?;
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev",
        "var/tmp", "home",
    ] {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path).map_err(io("create", &path))?;
    }
    for dir in ["tmp", "var/tmp"] {
        let path = rootfs.join(dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777))
            .map_err(io("chmod", &path))?;
    }
    let target = rootfs.join("bin/busybox");
    std::fs::copy(busybox, &target).map_err(io("copy", busybox))?;

    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io("run", busybox))?;
    let listing = String::from_utf8_lossy(&output.stdout);
    for applet in listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
    {
        let link = rootfs.join(applet);
        if link.exists() {
            continue;
        }
        let depth = Path::new(applet).components().count() - 1;
        let relative = format!("{}bin/busybox", "../".repeat(depth));
        symlink(&relative, &link).map_err(io("link", &link))?;
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
        ("etc/hostname", "busybox\n"),
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("etc/resolv.conf", ""),
    ];
    for (path, text) in files {
        let path = rootfs.join(path);
        std::fs::write(&path, text).map_err(io("write", &path))?;
    }
    let version = String::from_utf8_lossy(
        &Command::new(busybox)
            .output()
            .map_err(io("run", busybox))?
            .stdout,
    )
    .lines()
    .next()
    .and_then(|l| l.split_whitespace().nth(1))
    .unwrap_or("unknown")
    .to_string();
    Ok(("busybox".into(), version, String::new()))
}

/// A dynamically linked busybox would need the host's libraries inside the image: a static ELF has
/// no PT_INTERP program header.
fn is_static(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|elf| elf64_has_no_interpreter(&elf))
}

fn elf64_has_no_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    };
    // 64-bit little-endian ELF only: what busybox-static is on the architectures poc supports.
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| u32_at(phoff + i * phentsize).is_some_and(|t| t != PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_elves_are_told_apart() {
        let dynamic = std::fs::read("/proc/self/exe").unwrap();
        assert!(
            !elf64_has_no_interpreter(&dynamic),
            "the test binary is dynamically linked"
        );
        assert!(!elf64_has_no_interpreter(b"#!/bin/sh\n"));
    }
}
