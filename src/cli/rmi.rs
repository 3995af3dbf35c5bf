//! `poc rmi NAME...`: remove images no container uses.

use crate::config::Paths;
use crate::container::state;
use crate::image::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Images to remove.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let store = Store::new(paths.images_dir());
    let containers = state::list(paths);
    for name in &args.names {
        store.get(name)?;
        if let Some(user) = containers.iter().find(|c| &c.image == name) {
            return Err(anyhow::anyhow!(
                "image {name:?} is used by container {}; remove the container first",
                user.id.short()
            )
            .into());
        }
        store.remove(name)?;
        println!("{name}");
    }
    Ok(0)
}
