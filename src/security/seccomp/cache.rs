//! Compiled filters on disk, so that starting a container reads a small file instead of running
//! libseccomp. Owns the files in the cache directory it is given, nothing else.
//!
//! A file is `MAGIC`, the instruction count (u32, little-endian), four reserved bytes, a 128-bit
//! checksum of the program, then the program. Any mismatch means "not cached": the caller compiles
//! again. Keys and checksums are SipHash (std's), not SHA-256: on the start path the first SHA-256
//! costs a CPUID probe, which traps to the hypervisor in a VM (60-90 µs measured here); the
//! profile comes from root's own flags or bundle, and the files from a root-only directory.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::LinuxSeccomp;

use super::{Filter, SeccompError, BPF_MAXINSNS};
use crate::error::io;

const MAGIC: &[u8; 8] = b"POCBPF02";
const HEADER: usize = 8 + 4 + 4 + 16;
/// Changes whenever the way a profile becomes a program changes, so old files are not reused.
const COMPILER: &str = "poc-seccomp-3";

/// The file that holds `profile`'s filter, keyed by the profile, libseccomp's version, the native
/// architecture and whether the kernel runs x32 calls (the filter then has an x32 section).
/// Creates the directory (0700) if needed and refuses one others can write.
pub(super) fn path(
    cache_dir: &Path,
    profile: &LinuxSeccomp,
    kernel_runs_x32: bool,
) -> Result<PathBuf, SeccompError> {
    ensure_private_dir(cache_dir)?;
    let mut key = Vec::with_capacity(8 * 1024);
    key.extend_from_slice(COMPILER.as_bytes());
    key.extend_from_slice(libseccomp_version().as_bytes());
    key.extend_from_slice(std::env::consts::ARCH.as_bytes());
    key.push(kernel_runs_x32 as u8);
    serde_json::to_writer(&mut key, profile)
        .map_err(|e| io("hashing the profile for", cache_dir)(e.into()))?;
    Ok(cache_dir.join(format!("{}.bpf", hex(&digest(&key)))))
}

/// 128 bits of SipHash-1-3 (two seeds), as lowercase-hex-able bytes.
fn digest(data: &[u8]) -> [u8; 16] {
    use std::hash::Hasher;
    let mut out = [0u8; 16];
    for (seed, half) in out.chunks_exact_mut(8).enumerate() {
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write_u8(seed as u8);
        hasher.write(data);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    out
}

fn libseccomp_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        // Linked statically or dynamically, the version is always there; without it the key
        // still changes with poc's own build.
        Err(_) => String::from("unknown"),
    }
}

fn ensure_private_dir(dir: &Path) -> Result<(), SeccompError> {
    // Usually there: one stat, no mkdir, on the start path.
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("creating", dir)(e).into()),
            }
            std::fs::metadata(dir).map_err(io("reading", dir))?
        }
        Err(e) => return Err(io("reading", dir)(e).into()),
    };
    // Whoever can write here chooses the filter a container gets.
    if meta.mode() & 0o022 != 0 || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(SeccompError::UnsafeCache {
            path: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// The cached filter, or None when there is none or it is damaged.
pub(super) fn load(path: &Path, flags: libc::c_ulong) -> Result<Option<Filter>, SeccompError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // A symlink where a file should be: replaced like a damaged file.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(io("opening", path)(e).into()),
    };
    let mut bytes = Vec::with_capacity(HEADER + 4096);
    file.take((HEADER + BPF_MAXINSNS * 8 + 1) as u64)
        .read_to_end(&mut bytes)
        .map_err(io("reading", path))?;
    Ok(decode(&bytes, flags))
}

fn decode(bytes: &[u8], flags: libc::c_ulong) -> Option<Filter> {
    let (header, program) = bytes.split_at_checked(HEADER)?;
    let count = u32::from_le_bytes(header[8..12].try_into().ok()?) as usize;
    if &header[..8] != MAGIC || program.len() != count * 8 || header[16..] != digest(program)[..] {
        return None;
    }
    Filter::from_program(program, flags)
}

fn encode(filter: &Filter) -> Vec<u8> {
    let program = filter.program_bytes();
    let mut bytes = Vec::with_capacity(HEADER + program.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(filter.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&digest(&program));
    bytes.extend_from_slice(&program);
    bytes
}

/// Writes the file atomically (a private temporary file renamed over it). No fsync: a file cut
/// short by a crash fails its checksum and is compiled again.
pub(super) fn store(path: &Path, filter: &Filter) -> Result<(), SeccompError> {
    // Unique per process and call: two threads storing the same filter must not share one.
    static STORES: AtomicU64 = AtomicU64::new(0);
    let n = STORES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    // A leftover of a crashed poc that had the same pid.
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&encode(filter)))
        .map_err(io("writing", &tmp));
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path).map_err(io("replacing", path)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(renamed?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
