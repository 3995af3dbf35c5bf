//! `poc network inspect` and `poc network rm`: the bridge network poc manages.

use crate::config::Paths;
use crate::container::state;

#[derive(clap::Subcommand)]
pub enum Command {
    /// The bridge, its subnet and gateway, whether it exists, and the containers on it (JSON).
    Inspect,
    /// Remove the bridge, poc's nftables table and the leases, when no container uses them.
    #[command(visible_alias = "prune")]
    Rm,
}

pub fn run(paths: &Paths, command: Command) -> Result<i32, super::Exit> {
    let bridge = paths.bridge_config();
    match command {
        Command::Inspect => {
            let containers: Vec<serde_json::Value> = state::list(paths)
                .into_iter()
                .filter_map(|s| {
                    let a = s.network.as_ref().filter(|a| a.bridge == bridge.name)?;
                    Some(serde_json::json!({
                        "Id": s.id,
                        "Name": s.name,
                        "IPAddress": a.address,
                        "GlobalIPv6Address": a.ipv6.map(|v6| v6.address),
                        "HostVeth": a.host_veth,
                        "Ports": a.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    }))
                })
                .collect();
            let report = serde_json::json!({
                "Name": bridge.name,
                "Subnet": bridge.subnet.to_string(),
                "Gateway": bridge.gateway(),
                "EnableIPv6": bridge.subnet6.is_some(),
                "SubnetIPv6": bridge.subnet6.map(|net| net.to_string()),
                "GatewayIPv6": bridge.gateway6(),
                "Exists": crate::network::bridge_exists(&bridge)?,
                "NatTable": format!("ip {}", bridge.table()),
                "Containers": containers,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Rm => {
            crate::network::remove(&bridge)?;
            println!("{}", bridge.name);
        }
    }
    Ok(0)
}
