//! `poc init [alpine|busybox|debian] | poc init --from ROOTFS.tar.gz NAME`: build an image.

use std::path::PathBuf;

use crate::config::Paths;
use crate::image::{AlpineOptions, DebianOptions, Installed, Source, Store};

#[derive(clap::Args)]
pub struct Args {
    /// alpine (default), busybox or debian; with --from, the new image's name.
    image: Option<String>,
    /// Build from a rootfs tarball (.tar or .tar.gz).
    #[arg(long, value_name = "TARBALL")]
    from: Option<PathBuf>,
    /// Store the image under another name.
    #[arg(long, value_parser = crate::names::parse_name)]
    name: Option<String>,
    /// Rebuild even if the image exists.
    #[arg(long)]
    force: bool,
    /// alpine: mirror base URL; debian: archive URL.
    #[arg(long)]
    mirror: Option<String>,
    /// alpine: release to download (e.g. 3.20.3).
    #[arg(long)]
    version: Option<String>,
    /// debian: suite.
    #[arg(long, default_value = "bookworm")]
    suite: String,
    /// debian: extra packages, comma separated.
    #[arg(long, value_delimiter = ',')]
    with: Vec<String>,
    /// Most bytes an archive may unpack to (a guard against tar and gzip bombs).
    #[arg(long, env = "POC_MAX_IMAGE_SIZE", default_value = "16G", value_parser = crate::units::parse_size)]
    max_size: u64,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let (name, source) = match (&args.from, args.image.as_deref()) {
        (Some(tarball), Some(name)) => (
            name.to_string(),
            Source::Tarball(tarball.clone(), args.max_size),
        ),
        (Some(_), None) => {
            return Err(anyhow::anyhow!(
                "--from needs the new image's name: poc init --from ROOTFS.tar.gz NAME"
            )
            .into())
        }
        (None, None | Some("alpine")) => (
            "alpine".to_string(),
            Source::Alpine(AlpineOptions {
                mirror: args.mirror.clone(),
                version: args.version.clone(),
                max_size: args.max_size,
            }),
        ),
        (None, Some("busybox")) => ("busybox".to_string(), Source::Busybox),
        (None, Some("debian")) => (
            "debian".to_string(),
            Source::Debian(DebianOptions {
                suite: args.suite.clone(),
                mirror: args.mirror.clone(),
                packages: args.with.clone(),
            }),
        ),
        (None, Some(other)) => {
            return Err(anyhow::anyhow!(
            "unknown image source {other:?}: use alpine, busybox, debian or --from TARBALL {other}"
        )
            .into())
        }
    };
    let name = args.name.clone().unwrap_or(name);
    crate::names::parse_name(&name).map_err(anyhow::Error::msg)?;
    let store = Store::new(paths.images_dir());
    match store.install(&name, &source, args.force)? {
        Installed::AlreadyPresent => {
            eprintln!("image {name} is already present (use --force to rebuild)")
        }
        Installed::Built => {
            let image = store.get(&name)?;
            eprintln!(
                "image {name} ready: {} {} {}",
                image.meta.source,
                image.meta.version,
                if image.meta.digest.is_empty() {
                    ""
                } else {
                    image.meta.digest.as_str()
                }
            );
        }
    }
    Ok(0)
}
