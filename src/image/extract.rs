//! Safe extraction of rootfs archives: no entry may land outside the destination, whether by an
//! absolute path, a `..` component, or a symlink that points out and is then written through.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{progress, ImageError, Result};
use crate::error::io;

/// Most entries an archive may hold: far more than any distribution's rootfs, far fewer than an
/// inode bomb needs.
const MAX_ENTRIES: u64 = 4_000_000;

/// Unpacks a tar stream (already decompressed) into `dest`, which must exist. Every byte read from
/// the stream counts against `max_size`, headers and GNU/PAX long names included (the tar crate
/// buffers those in memory).
pub fn unpack(reader: impl Read, dest: &Path, max_size: u64) -> Result<u64> {
    let mut archive = tar::Archive::new(Capped {
        inner: reader,
        left: max_size,
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut count = 0;
    let entries = archive.entries().map_err(|source| ImageError::Extract {
        entry: String::new(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| too_large(source, max_size, String::new()))?;
        if count >= MAX_ENTRIES {
            return Err(ImageError::Build(format!(
                "the archive holds more than {MAX_ENTRIES} entries; nothing was installed"
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        check_path(&name, &raw)?;
        if entry.header().entry_type().is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                check_path(&name, &target).map_err(|_| ImageError::UnsafeEntry {
                    entry: name.clone(),
                    why: "hard link to a path outside the image",
                })?;
            }
        }
        // unpack_in refuses to write through a symlink whose target resolves outside `dest`.
        let inside = entry.unpack_in(dest).map_err(|source| {
            if source.to_string().contains("outside of") {
                ImageError::UnsafeEntry {
                    entry: name.clone(),
                    why: "written through a symlink that points outside the image",
                }
            } else {
                too_large(source, max_size, name.clone())
            }
        })?;
        if !inside {
            return Err(ImageError::UnsafeEntry {
                entry: name,
                why: "path outside the image",
            });
        }
        count += 1;
    }
    Ok(count)
}

/// A reader that fails once more than its budget has been read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::FileTooLarge, "size cap reached")
        })?;
        Ok(n)
    }
}

/// The size cap's error as such, anything else as an extraction error of `entry`.
fn too_large(source: std::io::Error, max_size: u64, entry: String) -> ImageError {
    if source.kind() == std::io::ErrorKind::FileTooLarge {
        ImageError::TooLarge(max_size)
    } else {
        ImageError::Extract { entry, source }
    }
}

/// Rejects `..` components anywhere; leading `/` is stripped by extraction, as GNU tar does.
fn check_path(name: &str, raw: &[u8]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ImageError::UnsafeEntry {
            entry: name.to_string(),
            why: "path with '..' outside the image",
        });
    }
    Ok(())
}

/// Unpacks a `.tar`, `.tar.gz` file into `dest` with a progress bar over the file's bytes,
/// returning the archive's `sha256:` digest.
pub fn unpack_file(path: &Path, dest: &Path, max_size: u64) -> Result<String> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let digest = sha256_of(&mut file, path)?;
    let len = file.metadata().map_err(io("stat", path))?.len();
    file.rewind().map_err(io("read", path))?;
    let bar = progress::bytes("extracting", len);
    let mut reader = BufReader::new(bar.wrap_read(file));
    let gzip = {
        use std::io::BufRead;
        let head = reader.fill_buf().map_err(io("read", path))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    if gzip {
        unpack(flate2::read::GzDecoder::new(reader), dest, max_size)?;
    } else {
        unpack(reader, dest, max_size)?;
    }
    bar.finish_and_clear();
    Ok(digest)
}

pub fn sha256_of(file: &mut File, path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(file, &mut hasher).map_err(io("read", path))?;
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `poc init --from ROOTFS.tar.gz NAME`.
pub fn build_from_file(
    path: &Path,
    rootfs: &Path,
    max_size: u64,
) -> Result<(String, String, String)> {
    if !path.is_file() {
        return Err(ImageError::Build(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let digest = unpack_file(path, rootfs, max_size)?;
    let version = PathBuf::from(path.file_name().unwrap_or_default())
        .display()
        .to_string();
    Ok(("tarball".into(), version, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // set_path refuses '..', so write the raw name like a hostile archive would.
        let name = &mut h.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                let mut h = header(path, *kind, 0);
                h.set_link_name(data).unwrap();
                h.set_cksum();
                builder.append(&h, std::io::empty()).unwrap();
            } else {
                let h = header(path, *kind, data.len() as u64);
                builder.append(&h, data.as_bytes()).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn plain_entries_and_absolute_paths_land_inside() {
        let dest = tempfile::tempdir().unwrap();
        let tar = archive(&[
            ("etc/", tar::EntryType::Directory, ""),
            ("etc/motd", tar::EntryType::Regular, "hello"),
            ("/abs.txt", tar::EntryType::Regular, "abs"),
            ("link", tar::EntryType::Symlink, "/etc/motd"),
        ]);
        assert_eq!(unpack(&tar[..], dest.path(), u64::MAX).unwrap(), 4);
        assert_eq!(
            std::fs::read_to_string(dest.path().join("etc/motd")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("abs.txt")).unwrap(),
            "abs"
        );
        assert_eq!(
            std::fs::read_link(dest.path().join("link")).unwrap(),
            PathBuf::from("/etc/motd")
        );
    }

    #[test]
    fn dot_dot_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("d");
        std::fs::create_dir(&dest).unwrap();
        let tar = archive(&[("../evil", tar::EntryType::Regular, "x")]);
        let err = unpack(&tar[..], &dest, u64::MAX).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
        assert!(!outer.path().join("evil").exists());
    }

    #[test]
    fn writing_through_an_outward_symlink_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("d");
        let target = outer.path().join("target");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        for link in [target.to_str().unwrap(), "../target"] {
            let tar = archive(&[
                ("esc", tar::EntryType::Symlink, link),
                ("esc/evil", tar::EntryType::Regular, "x"),
            ]);
            let err = unpack(&tar[..], &dest, u64::MAX).unwrap_err();
            assert!(
                matches!(err, ImageError::UnsafeEntry { .. }),
                "{link}: {err}"
            );
            assert!(!target.join("evil").exists());
            std::fs::remove_file(dest.join("esc")).unwrap();
        }
    }

    #[test]
    fn hard_links_out_are_refused() {
        let dest = tempfile::tempdir().unwrap();
        let tar = archive(&[("h", tar::EntryType::Link, "../../etc/passwd")]);
        assert!(matches!(
            unpack(&tar[..], dest.path(), u64::MAX),
            Err(ImageError::UnsafeEntry { .. })
        ));
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_size_cap() {
        use std::io::{Read, Write};
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = header("zeros", tar::EntryType::Regular, 64 << 20);
        header.set_cksum();
        builder
            .append(&header, std::io::repeat(0).take(64 << 20))
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&tar).unwrap();
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 1 << 20, "a bomb: {} compressed bytes", gz.len());
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(flate2::read::GzDecoder::new(&gz[..]), dest.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge(_)), "{err}");
        let dest = tempfile::tempdir().unwrap();
        assert_eq!(
            unpack(flate2::read::GzDecoder::new(&gz[..]), dest.path(), 65 << 20).unwrap(),
            1
        );
    }

    #[test]
    fn gzip_and_plain_files_unpack_with_digest() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let tar = archive(&[("a", tar::EntryType::Regular, "1")]);
        let plain = dir.path().join("r.tar");
        std::fs::write(&plain, &tar).unwrap();
        let gz = dir.path().join("r.tar.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&tar).unwrap();
        enc.finish().unwrap();
        for file in [&plain, &gz] {
            let out = dir.path().join(format!(
                "out-{}",
                file.file_name().unwrap().to_string_lossy()
            ));
            std::fs::create_dir(&out).unwrap();
            let digest = unpack_file(file, &out, u64::MAX).unwrap();
            assert!(digest.starts_with("sha256:") && digest.len() == 71);
            assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "1");
        }
    }
}
