//! The Alpine minirootfs: download from a mirror laid out like the official one, verify SHA-256, unpack.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{extract, progress, ImageError, Result};
use crate::error::io;

/// The pinned release, from rootfs/alpine.json.
#[derive(serde::Deserialize)]
struct Pin {
    mirror: String,
    version: String,
    sha256: BTreeMap<String, String>,
}

fn pin() -> Pin {
    serde_json::from_str(include_str!("../../rootfs/alpine.json"))
        .expect("rootfs/alpine.json is valid")
}

#[derive(Debug, Clone, Default)]
pub struct AlpineOptions {
    pub mirror: Option<String>,
    pub version: Option<String>,
    /// Most bytes the archive may unpack to.
    pub max_size: u64,
}

pub fn build(opts: &AlpineOptions, rootfs: &Path) -> Result<(String, String, String)> {
    let pin = pin();
    let mirror = opts.mirror.clone().unwrap_or(pin.mirror);
    let version = opts.version.clone().unwrap_or_else(|| pin.version.clone());
    let arch = super::host_arch();
    let url = tarball_url(&mirror, &version, arch)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();

    let published = fetch_checksum(&agent, &format!("{url}.sha256"))?;
    let pinned = (version == pin.version)
        .then(|| pin.sha256.get(arch).cloned())
        .flatten();
    if let Some(pinned) = &pinned {
        if *pinned != published {
            return Err(ImageError::Checksum {
                url: format!("{url}.sha256"),
                expected: pinned.clone(),
                actual: published,
            });
        }
    }

    let download = rootfs.with_file_name("download.tar.gz");
    let actual = fetch_to_file(&agent, &url, &download)?;
    if actual != published {
        return Err(ImageError::Checksum {
            url,
            expected: published,
            actual,
        });
    }
    extract::unpack_file(&download, rootfs, opts.max_size)?;
    std::fs::remove_file(&download).map_err(io("remove", &download))?;
    Ok(("alpine".into(), version, format!("sha256:{actual}")))
}

/// `<mirror>/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz`
fn tarball_url(mirror: &str, version: &str, arch: &str) -> Result<String> {
    let mut parts = version.split('.');
    let branch = match (parts.next(), parts.next()) {
        (Some(major), Some(minor))
            if major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok() =>
        {
            format!("v{major}.{minor}")
        }
        _ => {
            return Err(ImageError::Build(format!(
                "--version {version:?} is not an Alpine release like 3.20.3"
            )))
        }
    };
    let mirror = mirror.trim_end_matches('/');
    Ok(format!(
        "{mirror}/{branch}/releases/{arch}/alpine-minirootfs-{version}-{arch}.tar.gz"
    ))
}

fn get(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>> {
    agent.get(url).call().map_err(|e| ImageError::Download {
        url: url.to_string(),
        why: e.to_string(),
    })
}

/// The `.sha256` file holds `<hex>  <file name>`.
fn fetch_checksum(agent: &ureq::Agent, url: &str) -> Result<String> {
    let mut response = get(agent, url)?;
    let text = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .map_err(|e| ImageError::Download {
            url: url.to_string(),
            why: e.to_string(),
        })?;
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ImageError::Download {
            url: url.to_string(),
            why: format!("no SHA-256 in {text:?}"),
        });
    }
    Ok(hex)
}

/// Streams `url` into `path`, hashing on the way; returns the hex digest. A body shorter than its
/// Content-Length is an error (ureq checks), so a truncated download never reaches extraction.
fn fetch_to_file(agent: &ureq::Agent, url: &str, path: &Path) -> Result<String> {
    let response = get(agent, url)?;
    let len = response.body().content_length().unwrap_or(0);
    let bar = progress::bytes("downloading", len);
    let mut reader = bar.wrap_read(response.into_body().into_reader());
    let mut file = File::create(path).map_err(io("create", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| ImageError::Download {
            url: url.to_string(),
            why: format!("after {received} bytes: {e}"),
        })?;
        if n == 0 {
            break;
        }
        received += n as u64;
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io("write", path))?;
    }
    bar.finish_and_clear();
    if len != 0 && received != len {
        return Err(ImageError::Download {
            url: url.to_string(),
            why: format!("truncated: {received} of {len} bytes"),
        });
    }
    Ok(extract::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_mirror_layout() {
        assert_eq!(
            tarball_url("http://127.0.0.1:8080/alpine/", "3.20.3", "x86_64").unwrap(),
            "http://127.0.0.1:8080/alpine/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz"
        );
        assert!(tarball_url("http://m", "latest", "x86_64").is_err());
    }

    #[test]
    fn the_pin_covers_this_architecture() {
        let pin = pin();
        assert!(pin.sha256.contains_key(crate::image::host_arch()));
        assert!(pin.sha256.values().all(|h| h.len() == 64));
    }
}
