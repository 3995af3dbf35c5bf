//! `poc port CONTAINER [PRIVATE_PORT[/PROTO]]`: the host ports a container publishes, as Docker
//! prints them ("80/tcp -> 0.0.0.0:8080"). Reads the container's state; changes nothing.

use crate::config::Paths;
use crate::container::state;
use crate::network::{parse_port, PortMapping, Protocol};

#[derive(clap::Args)]
pub struct Args {
    container: String,
    /// Only this container port (tcp unless /udp is given).
    #[arg(value_parser = parse_private_port)]
    private_port: Option<(u16, Protocol)>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let id = state::resolve(paths, &args.container)?;
    let state = state::load(paths, &id)?;
    // A stopped container holds no host port (as under Docker): nothing to list.
    let ports = state.network.map(|a| a.ports).unwrap_or_default();
    match args.private_port {
        None => {
            for p in &ports {
                println!(
                    "{}/{} -> {}",
                    p.container_port,
                    p.protocol.name(),
                    p.host_side()
                );
            }
        }
        Some((port, protocol)) => {
            let matching: Vec<&PortMapping> = ports
                .iter()
                .filter(|p| p.container_port == port && p.protocol == protocol)
                .collect();
            if matching.is_empty() {
                return Err(anyhow::anyhow!(
                    "no public port '{port}/{}' published for {}",
                    protocol.name(),
                    args.container
                )
                .into());
            }
            matching.iter().for_each(|p| println!("{}", p.host_side()));
        }
    }
    Ok(0)
}

fn parse_private_port(text: &str) -> Result<(u16, Protocol), String> {
    let (port, protocol) = Protocol::split_from(text)?;
    Ok((parse_port(port)?, protocol))
}
