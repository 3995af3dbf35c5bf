//! A Debian image by debootstrap (minbase variant) with extra packages; works wherever Debian's archive
//! or a configured mirror is reachable.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{progress, ImageError, Result};
use crate::error::io;

#[derive(Debug, Clone)]
pub struct DebianOptions {
    pub suite: String,
    pub mirror: Option<String>,
    pub packages: Vec<String>,
}

pub fn build(opts: &DebianOptions, rootfs: &Path) -> Result<(String, String, String)> {
    if let Some(bad) = opts.packages.iter().find(|p| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.:".contains(c))
    }) {
        return Err(ImageError::Build(format!(
            "--with: {bad:?} is not a Debian package name"
        )));
    }
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase");
    if !opts.packages.is_empty() {
        cmd.arg(format!("--include={}", opts.packages.join(",")));
    }
    cmd.arg(&opts.suite).arg(rootfs);
    if let Some(mirror) = &opts.mirror {
        cmd.arg(mirror);
    }
    let bar = progress::spinner("debootstrap");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ImageError::Build(format!(
                "cannot run debootstrap ({e}): install the debootstrap package"
            ))
        })?;
    let stderr = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(err), &mut text);
            text
        })
    });
    let mut last = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            bar.set_message(format!("debootstrap: {}", line.trim()));
            last = line;
        }
    }
    let status = child
        .wait()
        .map_err(io("wait for", Path::new("debootstrap")))?;
    bar.finish_and_clear();
    let errors = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        let detail = errors
            .lines()
            .chain(std::iter::once(last.as_str()))
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(ImageError::Build(format!(
            "debootstrap {} failed ({status}): {}",
            opts.suite,
            detail.trim()
        )));
    }
    // debootstrap leaves its package cache behind; an image does not need it.
    let cache = rootfs.join("var/cache/apt/archives");
    if let Ok(entries) = std::fs::read_dir(&cache) {
        for entry in entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "deb"))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(("debian".into(), opts.suite.clone(), String::new()))
}
