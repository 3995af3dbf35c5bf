//! `poc port CONTAINER [PRIVATE_PORT[/PROTO]]`: the host ports a container publishes, as Docker
//! prints them ("80/tcp -> 0.0.0.0:8080"). Reads the container's state; changes nothing.

use crate::config::Paths;
use crate::container::state;
use crate::network::{PortMapping, Protocol};

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
                    host_side(p)
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
            matching.iter().for_each(|p| println!("{}", host_side(p)));
        }
    }
    Ok(0)
}

fn host_side(p: &PortMapping) -> String {
    let ip = p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
    format!("{ip}:{}", p.host_port)
}

fn parse_private_port(text: &str) -> Result<(u16, Protocol), String> {
    let (port, protocol) = match text.split_once('/') {
        None => (text, Protocol::Tcp),
        Some((port, "tcp")) => (port, Protocol::Tcp),
        Some((port, "udp")) => (port, Protocol::Udp),
        Some((_, other)) => return Err(format!("unknown protocol '{other}' (tcp or udp)")),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("'{port}' is not a port (1-65535)"))?;
    Ok((port, protocol))
}
