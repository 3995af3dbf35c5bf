//! The image store: one directory per image with its rootfs and a metadata file, built atomically.
//! Owns `<store>/images`; never writes an installed image's rootfs (containers get an overlay on top).

mod alpine;
mod busybox;
mod debian;
mod extract;
mod progress;

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

pub use alpine::AlpineOptions;
pub use debian::DebianOptions;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name:?} not found in {store}; create it with {hint}")]
    NotFound {
        name: String,
        store: PathBuf,
        hint: String,
    },
    #[error(transparent)]
    Io(#[from] crate::error::PathError),
    #[error("metadata of image {name:?} is unreadable ({path}): {source}")]
    Metadata {
        name: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("unsafe archive entry {entry:?}: {why}; nothing was installed")]
    UnsafeEntry { entry: String, why: &'static str },
    #[error("extracting {entry:?}: {source}")]
    Extract {
        entry: String,
        source: std::io::Error,
    },
    #[error("download of {url} failed: {why}. Without internet, use `poc init busybox` or `poc init --from ROOTFS.tar.gz NAME`")]
    Download { url: String, why: String },
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}; the download was discarded")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{0:?} is not a valid image name: use letters, digits, '_', '.', '-', starting with a letter or digit")]
    BadName(String),
    #[error("the archive unpacks to more than {0} bytes (poc init --max-size, POC_MAX_IMAGE_SIZE); nothing was installed")]
    TooLarge(u64),
    #[error("{0}")]
    Build(String),
}

pub type Result<T> = std::result::Result<T, ImageError>;

use crate::error::io;

/// What `image.json` records about an image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageMeta {
    pub name: String,
    /// alpine, busybox, debian or tarball
    pub source: String,
    pub version: String,
    /// `sha256:<hex>` of the downloaded or given archive; empty for images built locally.
    pub digest: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub size_bytes: u64,
    pub defaults: ImageDefaults,
}

/// An installed image.
#[derive(Debug, Clone)]
pub struct Image {
    pub meta: ImageMeta,
    pub rootfs: PathBuf,
}

/// The sources `poc init` can build from.
pub enum Source {
    Alpine(AlpineOptions),
    Busybox,
    Debian(DebianOptions),
    /// A rootfs tarball and the most bytes it may unpack to.
    Tarball(PathBuf, u64),
}

impl Source {
    fn build(&self, rootfs: &Path) -> Result<(String, String, String)> {
        match self {
            Source::Alpine(opts) => alpine::build(opts, rootfs),
            Source::Busybox => busybox::build(rootfs),
            Source::Debian(opts) => debian::build(opts, rootfs),
            Source::Tarball(path, max_size) => extract::build_from_file(path, rootfs, *max_size),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    Built,
    AlreadyPresent,
}

/// What to type to build a missing image: each source `poc init` offers, and for Alpine, which
/// needs the internet, the offline image too.
fn init_hint(name: &str) -> String {
    match name {
        "alpine" => {
            "`poc init` (downloads Alpine), or offline `poc init busybox` (from the host's \
                     busybox) and run busybox instead"
                .to_string()
        }
        "busybox" => "`poc init busybox` (offline, from the host's busybox)".to_string(),
        "debian" => "`poc init debian` (debootstrap from Debian's archive)".to_string(),
        _ => format!("`poc init --from ROOTFS.tar.gz {name}`"),
    }
}

pub struct Store {
    images: PathBuf,
}

const META_FILE: &str = "image.json";

impl Store {
    pub fn new(images_dir: PathBuf) -> Self {
        Store { images: images_dir }
    }

    pub fn get(&self, name: &str) -> Result<Image> {
        // A name is one directory of the store, never a path out of it.
        crate::names::parse_name(name).map_err(|_| ImageError::BadName(name.to_string()))?;
        let dir = self.images.join(name);
        let meta_path = dir.join(META_FILE);
        let text = match std::fs::read_to_string(&meta_path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(ImageError::NotFound {
                    name: name.to_string(),
                    store: self.images.clone(),
                    hint: init_hint(name),
                });
            }
            Err(e) => return Err(io("read", &meta_path)(e).into()),
        };
        let meta = serde_json::from_str(&text).map_err(|source| ImageError::Metadata {
            name: name.to_string(),
            path: meta_path,
            source,
        })?;
        Ok(Image {
            meta,
            rootfs: dir.join("rootfs"),
        })
    }

    pub fn list(&self) -> Result<Vec<ImageMeta>> {
        let entries = match std::fs::read_dir(&self.images) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.images)(e).into()),
        };
        let mut images = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                images.push(self.get(&name)?.meta);
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let _lock = self.lock()?;
        let dir = self.images.join(name);
        let doomed = self
            .images
            .join(format!(".rm-{name}-{}", std::process::id()));
        // Rename first: a half-deleted image is never visible under its name.
        std::fs::rename(&dir, &doomed).map_err(io("remove", &dir))?;
        Ok(crate::private::remove_tree(&doomed).map_err(io("remove", &doomed))?)
    }

    /// Builds `name` from `source` unless it is already installed (or `force`). The image appears
    /// under its name only when complete: it is built in a hidden directory and renamed into place.
    pub fn install(&self, name: &str, source: &Source, force: bool) -> Result<Installed> {
        // Root's alone: images may hold setuid files.
        crate::private::ensure_dir(&self.images).map_err(io("create", &self.images))?;
        let _lock = self.lock()?;
        self.remove_stale_builds()?;
        let dir = self.images.join(name);
        if !force && dir.join(META_FILE).exists() {
            return Ok(Installed::AlreadyPresent);
        }
        let build = self
            .images
            .join(format!(".build-{name}-{}", std::process::id()));
        let result = self.build_into(name, source, &build);
        if let Err(e) = result {
            let _ = crate::private::remove_tree(&build);
            return Err(e);
        }
        if dir.exists() {
            let old = self
                .images
                .join(format!(".old-{name}-{}", std::process::id()));
            std::fs::rename(&dir, &old).map_err(io("replace", &dir))?;
            std::fs::rename(&build, &dir).map_err(io("install", &dir))?;
            crate::private::remove_tree(&old).map_err(io("remove", &old))?;
        } else {
            std::fs::rename(&build, &dir).map_err(io("install", &dir))?;
        }
        Ok(Installed::Built)
    }

    fn build_into(&self, name: &str, source: &Source, build: &Path) -> Result<()> {
        let rootfs = build.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io("create", &rootfs))?;
        let (source_name, version, digest) = source.build(&rootfs)?;
        let meta = ImageMeta {
            name: name.to_string(),
            source: source_name,
            version,
            digest,
            created: crate::units::now_secs(),
            size_bytes: disk_usage(&rootfs),
            defaults: ImageDefaults::default(),
        };
        let meta_path = build.join(META_FILE);
        let text = serde_json::to_string_pretty(&meta).map_err(|source| ImageError::Metadata {
            name: name.to_string(),
            path: meta_path.clone(),
            source,
        })?;
        Ok(std::fs::write(&meta_path, text).map_err(io("write", &meta_path))?)
    }

    /// Builds interrupted by a crash leave hidden directories; under the lock nobody else is building.
    fn remove_stale_builds(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.images)
            .map_err(io("list", &self.images))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".build-") || name.starts_with(".old-") || name.starts_with(".rm-")
            {
                let path = entry.path();
                crate::private::remove_tree(&path).map_err(io("remove", &path))?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<Flock<File>> {
        let path = self.images.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        Ok(Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io("lock", &path)(std::io::Error::from(e)))?)
    }
}

/// Bytes used by the files under `dir` (hard links counted once is not worth the bookkeeping here).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// What an image contributes to a container's process.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
}

impl Default for ImageDefaults {
    fn default() -> Self {
        ImageDefaults {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["/bin/sh".into()],
        }
    }
}

/// The name of this machine's architecture as Alpine and Debian spell it.
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}
