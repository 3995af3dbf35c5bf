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
            .map_or("-".to_string(), |d| d[..12].to_string());
        println!(
            "{:<20} {:<10} {:<12} {:<10} {:<20} {}",
            image.name,
            image.source,
            image.version,
            human_size(image.size_bytes),
            ago(image.created),
            digest
        );
    }
    Ok(0)
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

pub fn ago(then: u64) -> String {
    let secs = crate::image::now_secs().saturating_sub(then);
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        3600..=86_399 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}
