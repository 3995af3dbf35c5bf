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
    let rows: Vec<Vec<String>> = images
        .into_iter()
        .map(|image| {
            let digest = image
                .digest
                .strip_prefix("sha256:")
                .map_or("-".to_string(), |d| crate::id::short(d).to_string());
            vec![
                image.name,
                image.source,
                image.version,
                crate::units::human_size(image.size_bytes),
                crate::units::ago(image.created),
                digest,
            ]
        })
        .collect();
    super::table::print(
        &["NAME", "SOURCE", "VERSION", "SIZE", "CREATED", "DIGEST"],
        &rows,
    );
    Ok(0)
}
