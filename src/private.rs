//! poc's own files are root's alone: the directories that hold images, containers' layers and their
//! state 0700, configuration, state and logs 0600 (they hold environment secrets; a container's upper
//! layer holds whatever it planted, setuid files included). Never what a container sees (its rootfs,
//! /etc files). A root poc makes is 0700 too; an existing one (`--store /srv/x`) keeps its mode.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes `dir` (and missing parents) 0700; when it exists with wider modes (made by an older poc),
/// it is narrowed. Only for directories that are poc's alone, never a root a user chose.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    // Usually there already: one stat on the start path.
    let meta = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dir_all(dir)?;
            std::fs::metadata(dir)?
        }
        other => other?,
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `dir` and any missing parents, each 0700.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `dir`, 0700; fails if it exists (a claim).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Writes `data` to a new or truncated file that only root can read.
pub fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(data)
}

/// Open options for a private file (0600 when created).
pub fn options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_made_or_narrowed_to_0700_and_files_are_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tmp.path().join("a/b");
        ensure_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        write(&root.join("f"), b"secret").unwrap();
        assert_eq!(mode(&root.join("f")), 0o600);
    }
}
