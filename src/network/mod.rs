//! Container networking: a bridge with the gateway address, a veth pair per container (its peer born
//! inside the container's namespace as eth0), address leases, NAT, published ports and forwarding in
//! poc's own `ip` nftables table (and `ip6`, on a network with an IPv6 subnet), source checks per
//! veth in its `bridge` table. Everything through netlink; never runs `ip`, `iptables` or `nft`.
//! Owns the bridge, the veths, the leases and the tables it names; touches nothing else on the host.
//! One file per concern: bridge.rs (the bridge, host sysctls, tables, `network rm`), attach.rs (a
//! container's leases and veth), ports.rs (`-p`), namespace.rs (inside the container), etc_files.rs
//! (its resolv.conf and hosts), nft/ and antispoof.rs (nf_tables), rtnl.rs (links, addresses,
//! routes), ipam.rs (leases), named.rs and hosts.rs (named networks).

mod antispoof;
mod attach;
mod bridge;
mod etc_files;
pub mod hosts;
mod ipam;
pub mod named;
mod namespace;
mod nft;
mod ports;
mod rtnl;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnetwork::{Ipv4Network, Ipv6Network};

pub use attach::{attach, prepare, release};
pub use bridge::{bridge_exists, ensure_bridge, holders, lock, remove, sync_ports};
pub use etc_files::{hosts_file, resolv_conf};
pub use namespace::{setup_in_namespace, NamespacePlan};
pub use ports::{parse_port, parse_ports, PortMapping, PortSpec, Protocol, Published};
pub use rtnl::RtnlError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("bringing up the loopback interface: {0}")]
    Loopback(nix::Error),
    #[error(transparent)]
    Rtnl(#[from] RtnlError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Io(#[from] crate::error::PathError),
}

/// `--network`: `bridge` (default) joins poc's default bridge with NAT; `none` gives a namespace
/// with loopback only; `host` shares the host's stack; any other name joins that network made by
/// `poc network create`. Stored as its name (the JSON of `bridge`, `none`, `host` is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", from = "String")]
pub enum NetworkMode {
    #[default]
    Bridge,
    None,
    Host,
    Named(String),
}

impl NetworkMode {
    /// Whether the container gets a veth on a bridge (the default one or a named network's).
    pub fn joins_bridge(&self) -> bool {
        matches!(self, NetworkMode::Bridge | NetworkMode::Named(_))
    }

    pub fn as_str(&self) -> &str {
        match self {
            NetworkMode::Bridge => DEFAULT_NETWORK,
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Named(name) => name,
        }
    }
}

impl From<String> for NetworkMode {
    fn from(name: String) -> Self {
        match name.as_str() {
            DEFAULT_NETWORK => NetworkMode::Bridge,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => NetworkMode::Named(name),
        }
    }
}

impl From<NetworkMode> for String {
    fn from(mode: NetworkMode) -> Self {
        mode.as_str().to_string()
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--network bridge|none|host|NAME`.
pub fn parse_network_mode(text: &str) -> Result<NetworkMode, String> {
    match NetworkMode::from(text.to_string()) {
        NetworkMode::Named(name) => named::check_name(&name).map(|()| NetworkMode::Named(name)),
        mode => Ok(mode),
    }
}

/// The bridge network poc manages: its name and IPv4 subnet (the gateway is the first address),
/// and for a network created with `--ipv6`, its IPv6 subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub name: String,
    pub subnet: Ipv4Network,
    pub subnet6: Option<Ipv6Network>,
    /// Where leases and the network lock live (under the state root).
    pub state_dir: PathBuf,
    /// Set for a network made by `poc network create`; none for the default network.
    pub named: Option<NamedNetwork>,
}

/// What a named network's bridge needs to know of it: the name its containers record, and its
/// record, without which the bridge is not set up (again) under the network lock.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedNetwork {
    pub name: String,
    pub record: PathBuf,
}

/// The name of the default network (`--network bridge`), reserved like `none` and `host`.
pub const DEFAULT_NETWORK: &str = "bridge";

impl BridgeConfig {
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The bridge's IPv6 address, on a network with an IPv6 subnet: its first address after the
    /// subnet-router anycast one, as Docker takes.
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.subnet6
            .map(|net| Ipv6Addr::from(u128::from(net.network()) + 1))
    }

    /// poc's nftables tables for this bridge, one in the `ip` family (NAT, forwarding), its `ip6`
    /// twin on a network with IPv6, and one in the `bridge` family (source checks), share this name.
    pub fn table(&self) -> String {
        format!("poc-{}", self.name)
    }
}

/// `--bridge`: a Linux interface name (at most 15 bytes).
pub fn parse_bridge_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 15
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(format!(
            "'{text}' is not an interface name (at most 15 letters, digits, '-', '_', '.')"
        ));
    }
    Ok(text.to_string())
}

/// `--subnet 10.77.0.0/16`: an IPv4 network with room for a gateway and containers.
pub fn parse_subnet(text: &str) -> Result<Ipv4Network, String> {
    let net: Ipv4Network = text
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv4 subnet like 10.77.0.0/16"))?;
    if net.prefix() > 29 || net.prefix() < 8 {
        return Err(format!("'{text}': the prefix must be from /8 to /29"));
    }
    // The source checks know containers' veths by an interface group equal to their address; other
    // interfaces are in group 0, which must stay outside the subnet.
    if net.network().octets()[0] == 0 {
        return Err(format!(
            "'{text}': 0.0.0.0/8 is not a network for containers"
        ));
    }
    Ipv4Network::new(net.network(), net.prefix()).map_err(|e| e.to_string())
}

/// `--subnet6 fd77:1::/64`: a unicast IPv6 network from /64 (SLAAC's size) to /120 (256 addresses).
pub fn parse_subnet6(text: &str) -> Result<Ipv6Network, String> {
    let net: Ipv6Network = text
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv6 subnet like fd77:1::/64"))?;
    if net.prefix() < 64 || net.prefix() > 120 {
        return Err(format!("'{text}': the prefix must be from /64 to /120"));
    }
    let first = net.network().segments()[0];
    // Multicast, link-local, loopback and the unspecified address are no networks for containers.
    if first >= 0xff00 || first & 0xffc0 == 0xfe80 || first == 0 {
        return Err(format!(
            "'{text}': not a unicast subnet (use a unique local one, fd00::/8, or a global one)"
        ));
    }
    Ipv6Network::new(net.network(), net.prefix()).map_err(|e| e.to_string())
}

/// A container's place on the bridge, recorded in its state so that removal can release it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub bridge: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The host end of the container's veth pair.
    pub host_veth: String,
    pub ports: Vec<PortMapping>,
    /// Its IPv6 lease, on a network with an IPv6 subnet (absent in state files from before IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Attachment>,
    /// The named network the bridge belongs to; none on the default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl Attachment {
    pub fn published(&self) -> impl Iterator<Item = Published> + '_ {
        self.ports.iter().map(|port| Published {
            port: *port,
            address: self.address,
            address6: self.ipv6.map(|v6| v6.address),
        })
    }
}

/// A container's global IPv6 address on the bridge, as Docker's GlobalIPv6Address,
/// GlobalIPv6PrefixLen and IPv6Gateway show it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ipv6Attachment {
    pub address: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Ipv6Addr,
}

impl Ipv6Attachment {
    /// The network the address belongs to.
    pub fn subnet(&self) -> Option<Ipv6Network> {
        let net = Ipv6Network::new(self.address, self.prefix).ok()?;
        Ipv6Network::new(net.network(), self.prefix).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_are_stored_as_their_names() {
        let json = |m: &NetworkMode| serde_json::to_string(m).unwrap();
        assert_eq!(json(&NetworkMode::Bridge), "\"bridge\"");
        assert_eq!(json(&NetworkMode::None), "\"none\"");
        assert_eq!(json(&NetworkMode::Named("web".into())), "\"web\"");
        for (text, mode) in [
            ("\"bridge\"", NetworkMode::Bridge),
            ("\"host\"", NetworkMode::Host),
            ("\"web\"", NetworkMode::Named("web".into())),
        ] {
            assert_eq!(serde_json::from_str::<NetworkMode>(text).unwrap(), mode);
        }
        assert_eq!(parse_network_mode("none"), Ok(NetworkMode::None));
        assert_eq!(
            parse_network_mode("my.net"),
            Ok(NetworkMode::Named("my.net".into()))
        );
        assert!(parse_network_mode("../x").is_err());
        assert!(NetworkMode::Named("x".into()).joins_bridge() && !NetworkMode::Host.joins_bridge());
    }

    #[test]
    fn bridge_names_and_subnets_are_checked() {
        assert!(parse_bridge_name("poc0").is_ok());
        assert!(parse_bridge_name("a-name-too-long-for-linux").is_err());
        assert!(parse_bridge_name("bad name").is_err());
        assert_eq!(
            parse_subnet("10.88.3.4/16").unwrap().to_string(),
            "10.88.0.0/16"
        );
        assert!(parse_subnet("10.0.0.0/30").is_err());
        assert!(parse_subnet("nope").is_err());
        let b = BridgeConfig {
            name: "poc0".into(),
            subnet: parse_subnet("10.88.0.0/16").unwrap(),
            subnet6: None,
            state_dir: "/x".into(),
            named: None,
        };
        assert_eq!(b.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(b.gateway6(), None);
        assert_eq!(b.table(), "poc-poc0");
    }

    #[test]
    fn ipv6_subnets_are_checked_and_give_the_gateway() {
        let net = parse_subnet6("fd77:1::5/64").unwrap();
        assert_eq!(net.to_string(), "fd77:1::/64");
        assert!(parse_subnet6("fd77:1::/120").is_ok());
        for bad in [
            "fd77:1::/48",
            "fd77:1::/121",
            "fe80::/64",
            "ff02::/64",
            "::/64",
            "10.0.0.0/24",
            "nope",
        ] {
            assert!(parse_subnet6(bad).is_err(), "{bad}");
        }
        let b = BridgeConfig {
            name: "poc0".into(),
            subnet: parse_subnet("10.88.0.0/16").unwrap(),
            subnet6: Some(net),
            state_dir: "/x".into(),
            named: None,
        };
        assert_eq!(b.gateway6(), Some("fd77:1::1".parse().unwrap()));
        let v6 = Ipv6Attachment {
            address: "fd77:1::2".parse().unwrap(),
            prefix: 64,
            gateway: b.gateway6().unwrap(),
        };
        assert_eq!(v6.subnet(), Some(net));
    }

    #[test]
    fn state_files_from_before_ipv6_load() {
        let old = r#"{"bridge":"poc0","address":"10.77.0.2","prefix":16,"gateway":"10.77.0.1","host_veth":"pocabc","ports":[]}"#;
        let a: Attachment = serde_json::from_str(old).unwrap();
        assert_eq!(a.ipv6, None);
        assert!(!serde_json::to_string(&a).unwrap().contains("ipv6"));
    }
}
