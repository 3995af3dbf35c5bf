//! Resolving a path inside a root directory the way the container will see it: symlinks are followed
//! relative to the root, and `..` never climbs above it.

use std::path::{Component, Path, PathBuf};

const MAX_SYMLINKS: usize = 40;

/// `root` joined with `path`, following symlinks inside `root` as if `root` were `/`.
pub fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = components_reversed(path);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() && links < MAX_SYMLINKS => {
                links += 1;
                let Ok(target) = std::fs::read_link(&full) else {
                    resolved = candidate;
                    continue;
                };
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(components_reversed(&target));
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

fn components_reversed(path: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(PathBuf::from(name)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real", r.join("climb")).unwrap();
        symlink("/etc", r.join("hostetc")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/abs/dir")),
            r.join("real/dir")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/climb/dir")),
            r.join("real/dir")
        );
        assert_eq!(resolve_in_root(r, Path::new("/../../x")), r.join("x"));
        assert_eq!(
            resolve_in_root(r, Path::new("/hostetc/passwd")),
            r.join("etc/passwd")
        );
        assert!(resolve_in_root(r, Path::new("/loop/x")).starts_with(r));
    }
}
