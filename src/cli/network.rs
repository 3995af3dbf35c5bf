//! `poc network create|ls|inspect|rm`: the default bridge network (`bridge`) and named networks.

use anyhow::anyhow;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::config::Paths;
use crate::container::state;
use crate::network::named::{self, CreateRequest, NetworkRecord};
use crate::network::{BridgeConfig, DEFAULT_NETWORK};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a named network: a bridge of its own, its subnet, NAT; its containers know each
    /// other by name.
    Create(CreateArgs),
    /// List the networks: the default one (bridge) and the named ones.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// A network's bridge, subnet, gateway, whether the bridge exists, and its containers (JSON);
    /// the default network without a name.
    Inspect { name: Option<String> },
    /// Remove networks (the default one without a name): bridge, nftables tables, leases and
    /// record; refused while containers use them.
    #[command(visible_alias = "prune")]
    Rm { names: Vec<String> },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The network's name: a letter or digit, then letters, digits, '_', '.', '-'.
    name: String,
    /// Its IPv4 subnet (default: the first free /24 from 10.78.0.0); once more with --ipv6 for
    /// its IPv6 subnet.
    #[arg(long, value_name = "CIDR")]
    subnet: Vec<IpNetwork>,
    /// Give the network an IPv6 subnet too (which --subnet names).
    #[arg(long)]
    ipv6: bool,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(paths: &Paths, command: Command) -> Result<i32, super::Exit> {
    match command {
        Command::Create(args) => create(paths, args)?,
        Command::Ls(args) => list(paths, args.format)?,
        Command::Inspect { name } => inspect(paths, name.as_deref())?,
        Command::Rm { names } if names.is_empty() => {
            remove(paths, DEFAULT_NETWORK)?;
            println!("{DEFAULT_NETWORK}");
        }
        // As `docker network rm A B`: each network is tried, each failure said; 125 if any failed.
        Command::Rm { names } => {
            return Ok(super::manage::each(&names, |name| {
                remove(paths, name).map_err(|e| super::one_line(&e))
            }))
        }
    }
    Ok(0)
}

/// A network as a name resolves: the default one, or a named one with its record.
enum Network {
    Default(BridgeConfig),
    Named(NetworkRecord, BridgeConfig),
}

impl Network {
    fn find(paths: &Paths, name: &str) -> anyhow::Result<Network> {
        if name == DEFAULT_NETWORK {
            return Ok(Network::Default(paths.bridge_config()));
        }
        let record = paths.network_record(name)?;
        let bridge = paths.bridge_of_record(&record);
        Ok(Network::Named(record, bridge))
    }

    fn bridge(&self) -> &BridgeConfig {
        match self {
            Network::Default(bridge) | Network::Named(_, bridge) => bridge,
        }
    }
}

fn create(paths: &Paths, args: CreateArgs) -> anyhow::Result<()> {
    let (subnet, subnet6) = subnets(&args.subnet, args.ipv6)?;
    let request = CreateRequest {
        name: args.name,
        subnet,
        subnet6,
    };
    let record = named::create(
        &paths.networks_dir(),
        &paths.network_leases_root(),
        paths.subnet,
        request,
        &|bridge| crate::network::ensure_bridge(bridge, &[]),
    )?;
    println!("{}", record.id);
    Ok(())
}

/// Docker's syntax: `--subnet` at most once per family; an IPv6 one only with `--ipv6`, which
/// needs one (poc picks no IPv6 subnets).
fn subnets(
    given: &[IpNetwork],
    ipv6: bool,
) -> anyhow::Result<(Option<Ipv4Network>, Option<Ipv6Network>)> {
    let mut v4 = None;
    let mut v6 = None;
    for subnet in given {
        match subnet {
            IpNetwork::V4(net) if v4.is_none() => {
                let text = net.to_string();
                v4 = Some(crate::network::parse_subnet(&text).map_err(|e| anyhow!(e))?);
            }
            IpNetwork::V6(net) if v6.is_none() => {
                let text = net.to_string();
                v6 = Some(crate::network::parse_subnet6(&text).map_err(|e| anyhow!(e))?);
            }
            _ => return Err(anyhow!("--subnet is given twice for one address family")),
        }
    }
    match (ipv6, v6) {
        (true, None) => Err(anyhow!("--ipv6 needs an IPv6 --subnet (like fd42:1::/64)")),
        (false, Some(net)) => Err(anyhow!("--subnet {net} is IPv6: add --ipv6")),
        _ => Ok((v4, v6)),
    }
}

fn list(paths: &Paths, format: Format) -> anyhow::Result<()> {
    let default = paths.bridge_config();
    let records = named::list(&paths.networks_dir())?;
    let mut rows = vec![serde_json::json!({
        "Id": null,
        "Name": DEFAULT_NETWORK,
        "Driver": "bridge",
        "Bridge": default.name,
        "Subnet": default.subnet.to_string(),
        "Subnet6": default.subnet6.map(|s| s.to_string()),
        "Created": null,
    })];
    rows.extend(records.iter().map(|r| {
        serde_json::json!({
            "Id": r.id,
            "Name": r.name,
            "Driver": "bridge",
            "Bridge": r.bridge,
            "Subnet": r.subnet.to_string(),
            "Subnet6": r.subnet6.map(|s| s.to_string()),
            "Created": r.created,
        })
    }));
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            println!(
                "{:<12}   {:<20} {:<8} SUBNET",
                "NETWORK ID", "NAME", "DRIVER"
            );
            for row in &rows {
                let id = row["Id"].as_str().map_or("-", crate::id::short);
                let subnets: Vec<&str> = [&row["Subnet"], &row["Subnet6"]]
                    .into_iter()
                    .filter_map(|s| s.as_str())
                    .collect();
                println!(
                    "{id:<12}   {:<20} {:<8} {}",
                    row["Name"].as_str().unwrap_or_default(),
                    "bridge",
                    subnets.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn inspect(paths: &Paths, name: Option<&str>) -> anyhow::Result<()> {
    let network = Network::find(paths, name.unwrap_or(DEFAULT_NETWORK))?;
    let bridge = network.bridge();
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
    let (id, name, created) = match &network {
        Network::Default(_) => (None, DEFAULT_NETWORK, None),
        Network::Named(r, _) => (Some(r.id.as_str()), r.name.as_str(), Some(r.created)),
    };
    let report = serde_json::json!({
        "Id": id,
        "Name": name,
        "Driver": "bridge",
        "Created": created.map(|c| crate::units::rfc3339(c * 1_000_000_000)),
        "Bridge": bridge.name,
        "Subnet": bridge.subnet.to_string(),
        "Gateway": bridge.gateway(),
        "EnableIPv6": bridge.subnet6.is_some(),
        "Subnet6": bridge.subnet6.map(|s| s.to_string()),
        "GatewayIPv6": bridge.gateway6(),
        "Exists": crate::network::bridge_exists(bridge)?,
        "NatTable": format!("ip {}", bridge.table()),
        "Containers": containers,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn remove(paths: &Paths, name: &str) -> anyhow::Result<()> {
    let network = Network::find(paths, name)?;
    crate::network::remove(network.bridge())?;
    Ok(())
}
