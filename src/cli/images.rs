//! `poc images`: the installed images as a table or JSON.

use crate::config::Paths;
use crate::image::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let images = Store::new(paths.images_dir()).list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(0);
    }
    println!(
        "{:<20} {:<10} {:<12} {:<10} {:<20} DIGEST",
        "NAME", "SOURCE", "VERSION", "SIZE", "CREATED"
    );
    for image in images {
        let digest = image
            .digest
            .strip_prefix("sha256:")
            .map_or("-", crate::id::short);
        println!(
            "{:<20} {:<10} {:<12} {:<10} {:<20} {}",
            image.name,
            image.source,
            image.version,
            crate::units::human_size(image.size_bytes),
            crate::units::ago(image.created),
            digest
        );
    }
    Ok(0)
}
