//! The error every module's I/O turns into: the operation and the path it was about, with the
//! kernel's reason ("read /run/poc/containers/ab12/state.json: No such file or directory").
//! Below every other module; each module's error wraps it (`Io(#[from] PathError)`).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct PathError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `map_err(io("read", &path))?`: an I/O error on `path`, naming `op`; `?` turns it into the
/// caller's error.
pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PathError + 'a {
    move |source| PathError {
        op,
        path: path.to_path_buf(),
        source,
    }
}
