//! The busybox image the client tests import: a root filesystem tarball built from the host's
//! static busybox, and an OCI image layout archive around it; nothing else.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::require;

/// A root filesystem tarball from the host's static busybox: /bin/busybox, a link per applet, and
/// /etc/passwd and /etc/group.
pub fn busybox_rootfs_tar(dest: &Path) {
    require("/bin/busybox", "busybox-static");
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .expect("busybox runs");
    let mut tar = tar::Builder::new(std::fs::File::create(dest).unwrap());
    let dirs = [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ];
    for (dir, mode) in dirs {
        let mut header = tar_header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut header, dir, std::io::empty()).unwrap();
    }
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut header = tar_header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    tar.append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "bin/busybox")
    {
        let depth = Path::new(applet).components().count() - 1;
        let target = format!("{}bin/busybox", "../".repeat(depth));
        let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut header, applet, target).unwrap();
    }
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\ntty:x:5:\n"),
    ];
    for (path, text) in files {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, text.len() as u64);
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    tar.finish().unwrap();
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header
}

/// An OCI image layout archive (oci-layout, index.json, blobs) holding one image named `reference`
/// whose single layer is the tarball `layer`, as `ctr image import` takes it.
pub fn oci_archive(layer: &Path, reference: &str, dest: &Path) {
    let layer_bytes = std::fs::read(layer).unwrap();
    let layer_digest = sha256(&layer_bytes);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_bytes.len(),
        }],
    }))
    .unwrap();
    let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .unwrap();
    let mut tar = tar::Builder::new(std::fs::File::create(dest).unwrap());
    let mut add = |path: String, bytes: &[u8]| {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        tar.append_data(&mut header, path, bytes).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&manifest, &config, &layer_bytes] {
        let digest = sha256(blob);
        add(
            format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            blob,
        );
    }
    tar.finish().unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
