//! Container networking: a bridge with the gateway address, a veth pair per container (its peer born
//! inside the container's namespace as eth0), address leases, NAT, published ports and forwarding in
//! poc's own `ip` nftables table (and `ip6`, on a network with an IPv6 subnet), source checks per
//! veth in its `bridge` table. Everything through netlink; never runs `ip`, `iptables` or `nft`.
//! Owns the bridge, the veths, the leases and the tables it names; touches nothing else on the host.

mod antispoof;
pub mod hosts;
mod ipam;
pub mod named;
mod nft;
mod rtnl;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnetwork::{Ipv4Network, Ipv6Network};

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

pub(crate) use crate::error::io;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port. `host_port` 0 (from `-p CONTAINER_PORT`) asks for any free host port, which
/// [`prepare`] picks and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// What one `-p` asks for: `[[IP:]HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp]`, as Docker reads
/// it: a range on both sides maps port to port (the ranges must have the same length); without a host
/// port each container port gets a free host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec(pub Vec<PortMapping>);

/// A range of published ports that no one needs: Docker's limit on one `-p` is the port space, but
/// a thousand DNAT rules is already more than a container should ask for by accident.
const MAX_PORTS_PER_PUBLISH: usize = 1000;

pub fn parse_ports(text: &str) -> Result<PortSpec, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => {
            return Err(format!("'{text}': unknown protocol '{other}' (tcp or udp)"))
        }
        None => (text, Protocol::Tcp),
    };
    let syntax = || {
        format!(
            "'{text}' is not [[IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp] (ports or ranges like 8000-8010)"
        )
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => return Err(syntax()),
    };
    let host_ip = match ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| format!("'{text}': '{ip}' is not an IPv4 address"))?,
        ),
    };
    let range = |p: &str| -> Result<(u16, u16), String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{text}': '{p}' is not a port (1-65535)"))
        };
        let (first, last) = match p.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(p)?, port(p)?),
        };
        if first > last {
            return Err(format!("'{text}': the range {p} runs backwards"));
        }
        Ok((first, last))
    };
    let (c_first, c_last) = range(container)?;
    let count = usize::from(c_last - c_first) + 1;
    if count > MAX_PORTS_PER_PUBLISH {
        return Err(format!(
            "'{text}': at most {MAX_PORTS_PER_PUBLISH} ports per -p"
        ));
    }
    let host_first = match host {
        None => None,
        Some(h) => {
            let (h_first, h_last) = range(h)?;
            if usize::from(h_last - h_first) + 1 != count {
                return Err(format!(
                    "'{text}': the host range {h} and the container range {container} differ in length"
                ));
            }
            Some(h_first)
        }
    };
    Ok(PortSpec(
        (0..count as u16)
            .map(|i| PortMapping {
                host_ip,
                host_port: host_first.map_or(0, |h| h + i),
                container_port: c_first + i,
                protocol,
            })
            .collect(),
    ))
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let ip = self
            .host_ip
            .map_or("0.0.0.0".to_string(), |ip| ip.to_string());
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.name()
        )
    }
}

/// A published port and the container's addresses it leads to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub port: PortMapping,
    pub address: Ipv4Addr,
    /// Where the port leads over IPv6, for a container on a network with IPv6.
    pub address6: Option<Ipv6Addr>,
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

/// What the container's init sets up inside its network namespace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NamespacePlan {
    Host,
    Loopback,
    Bridge {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        ipv6: Option<Ipv6Attachment>,
    },
}

impl NamespacePlan {
    pub fn for_container(mode: &NetworkMode, attachment: Option<&Attachment>) -> Self {
        match (mode, attachment) {
            (NetworkMode::Host, _) => NamespacePlan::Host,
            (_, Some(a)) => NamespacePlan::Bridge {
                address: a.address,
                prefix: a.prefix,
                gateway: a.gateway,
                ipv6: a.ipv6,
            },
            _ => NamespacePlan::Loopback,
        }
    }
}

/// Claims an address (an IPv6 one too on a network with IPv6, and the published ports) for
/// container `id`. `is_live` tells whether a lease's holder still exists, so leases of containers
/// that vanished in a crash are reclaimed.
pub fn prepare(
    bridge: &BridgeConfig,
    id: &str,
    ports: &[PortMapping],
    is_live: &dyn Fn(&str) -> bool,
) -> Result<Attachment, NetworkError> {
    let leases = ipam::Leases::new(&bridge.state_dir);
    let address = leases.claim_address(bridge.subnet, bridge.gateway(), id, is_live)?;
    let mut attachment = Attachment {
        bridge: bridge.name.clone(),
        address,
        prefix: bridge.subnet.prefix(),
        gateway: bridge.gateway(),
        host_veth: format!("poc{}", &id[..12]),
        ports: Vec::with_capacity(ports.len()),
        ipv6: None,
        network: bridge.named.as_ref().map(|n| n.name.clone()),
    };
    if let (Some(subnet6), Some(gateway6)) = (bridge.subnet6, bridge.gateway6()) {
        // Derived from the IPv4 lease, never leased apart: the source checks' elements pair a
        // group and MAC (both from the IPv4 address) with the IPv6 address and outlive their
        // holders, so two leases paired differently by two holders would let a later holder of one
        // send as the holder of the other.
        let Some(address6) = address6_for(bridge.subnet, address, subnet6) else {
            release(bridge, id, &attachment)?;
            return Err(NetworkError::Refused(format!(
                "{address} has no counterpart in the IPv6 subnet {subnet6}: it must hold as many addresses as {}",
                bridge.subnet
            )));
        };
        attachment.ipv6 = Some(Ipv6Attachment {
            address: address6,
            prefix: subnet6.prefix(),
            gateway: gateway6,
        });
    }
    for port in ports {
        let claimed = if port.host_port == 0 {
            leases
                .claim_free_port(port, free_port_range(), id, is_live, &|p| {
                    host_port_in_use(port.protocol, p)
                })
                .map(|host_port| PortMapping { host_port, ..*port })
        } else {
            leases.claim_port(port, id, is_live).map(|()| *port)
        };
        match claimed {
            Ok(port) => attachment.ports.push(port),
            Err(e) => {
                release(bridge, id, &attachment)?;
                return Err(e);
            }
        }
    }
    Ok(attachment)
}

/// A container's IPv6 address: the IPv6 subnet's network plus the IPv4 address's offset in its
/// subnet (10.77.0.5 in 10.77.0.0/16 is fd77:1::5 in fd77:1::/64); none when the IPv6 subnet is
/// too small for that offset.
pub fn address6_for(
    subnet: Ipv4Network,
    address: Ipv4Addr,
    subnet6: Ipv6Network,
) -> Option<Ipv6Addr> {
    let offset = u32::from(address).checked_sub(u32::from(subnet.network()))?;
    let host_bits = 128 - u32::from(subnet6.prefix());
    if host_bits < 32 && offset >= 1 << host_bits {
        return None;
    }
    Some(Ipv6Addr::from(
        u128::from(subnet6.network()) + u128::from(offset),
    ))
}

/// Where `-p CONTAINER_PORT` finds a host port: Docker's range, above the kernel's usual ephemeral
/// ports' start and below nothing a service usually listens on.
fn free_port_range() -> std::ops::RangeInclusive<u16> {
    49153..=65535
}

/// Whether a socket of the host already has `port` (a DNAT rule would hide it from its clients).
fn host_port_in_use(protocol: Protocol, port: u16) -> bool {
    let any = std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(any).is_err(),
        Protocol::Udp => std::net::UdpSocket::bind(any).is_err(),
    }
}

/// Makes sure the bridge exists with its gateway addresses and is up, IP forwarding is on, and poc's
/// NAT tables are in place. Serialised by the network lock; cheap when all is there already.
pub fn ensure_bridge(bridge: &BridgeConfig, published: &[Published]) -> Result<(), NetworkError> {
    let _lock = ipam::lock(&bridge.state_dir)?;
    // `poc network rm` removes the record under this lock: a container that got this far after it
    // must not bring the bridge back.
    if let Some(named) = bridge.named.as_ref().filter(|n| !n.record.exists()) {
        return Err(NetworkError::Refused(format!(
            "network {} not found",
            named.name
        )));
    }
    let mut rtnl = rtnl::Rtnl::open()?;
    // Usually the bridge is there: one lookup. Under the lock no other poc creates it meanwhile.
    let (index, created) = match rtnl.link_index(&bridge.name)? {
        Some(index) => (index, false),
        None => {
            let created = rtnl.create_bridge(&bridge.name)?;
            let index = rtnl.link_index(&bridge.name)?.ok_or_else(|| {
                NetworkError::Refused(format!(
                    "bridge {} vanished while being set up",
                    bridge.name
                ))
            })?;
            (index, created)
        }
    };
    if created {
        rtnl.add_address(index, bridge.gateway().into(), bridge.subnet.prefix())?;
        rtnl.set_up(index)?;
    }
    enable_ip_forwarding()?;
    let marker = bridge.state_dir.join(nat_marker(bridge));
    let set_up_before = !created && marker.exists();
    if let (Some(subnet6), Some(gateway6)) = (bridge.subnet6, bridge.gateway6()) {
        if !set_up_before {
            rtnl.add_address(index, gateway6.into(), subnet6.prefix())?;
        }
        enable_ipv6_forwarding()?;
    }
    if !set_up_before || !published.is_empty() {
        apply_nat(bridge, published)?;
    }
    if !set_up_before {
        // Only with the guard against containers' packets to 127.0.0.0/8 in place.
        allow_loopback_sources_out(&bridge.name)?;
        std::fs::write(&marker, b"").map_err(io("write", &marker))?;
    }
    Ok(())
}

/// Says that the bridge's addresses and NAT tables are in place; named after the tables' layout, so
/// that a bridge set up by a poc whose table lacked the localhost rules (or that had no IPv6) gets
/// the new tables on its next container.
fn nat_marker(bridge: &BridgeConfig) -> &'static str {
    match bridge.subnet6 {
        Some(_) => "nat66-localhost-ready",
        None => "nat-localhost-ready",
    }
}

/// `route_localnet` on the bridge: the host's connections to 127.0.0.1:PUBLISHED, DNAT'd to a
/// container, may leave through it (the masquerade rule then gives them the gateway's address), as
/// Docker does for its bridges. Only this bridge's setting; the host's loopback is untouched.
fn allow_loopback_sources_out(bridge: &str) -> Result<(), NetworkError> {
    let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"));
    Ok(std::fs::write(&path, b"1").map_err(io("write", &path))?)
}

fn apply_nat(bridge: &BridgeConfig, published: &[Published]) -> Result<(), NetworkError> {
    Ok(nft::apply(&nft::NatTable {
        name: bridge.table(),
        bridge: bridge.name.clone(),
        subnet: bridge.subnet,
        subnet6: bridge.subnet6,
        ports: published.to_vec(),
    })?)
}

/// Rewrites the published-port rules after a container with ports has gone.
pub fn sync_ports(bridge: &BridgeConfig, published: &[Published]) -> Result<(), NetworkError> {
    let _lock = ipam::lock(&bridge.state_dir)?;
    apply_nat(bridge, published)
}

/// NAT needs the kernel to forward between the bridge and the host's other interfaces.
fn enable_ip_forwarding() -> Result<(), NetworkError> {
    switch_on(Path::new("/proc/sys/net/ipv4/ip_forward"))
}

/// NAT66 needs IPv6 forwarding, which Docker switches on too. It is never switched off again (other
/// networks may need it); with it on, the host's interfaces stop taking router advertisements.
fn enable_ipv6_forwarding() -> Result<(), NetworkError> {
    switch_on(Path::new("/proc/sys/net/ipv6/conf/all/forwarding"))
}

fn switch_on(sysctl: &Path) -> Result<(), NetworkError> {
    if std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    Ok(std::fs::write(sysctl, b"1").map_err(io("write", sysctl))?)
}

/// Runs in the parent once the init exists: the source checks for its address, then the veth
/// pair: the host end on the bridge, in the interface group its address gives (which the checks
/// know it by), the peer created inside the init's network namespace as eth0 with the MAC its
/// address gives.
pub fn attach(
    bridge: &BridgeConfig,
    attachment: &Attachment,
    pid: i32,
) -> Result<(), NetworkError> {
    antispoof::allow(
        &bridge.table(),
        bridge.subnet,
        attachment.address,
        attachment.ipv6.map(|v6| v6.address),
    )?;
    let mut rtnl = rtnl::Rtnl::open()?;
    let index = rtnl
        .link_index(&bridge.name)?
        .ok_or_else(|| NetworkError::Refused(format!("bridge {} does not exist", bridge.name)))?;
    let veth = rtnl::Veth {
        host: &attachment.host_veth,
        host_group: antispoof::group_for(attachment.address),
        peer: "eth0",
        peer_mac: antispoof::mac_for(attachment.address),
    };
    rtnl.create_veth(&veth, pid as u32, index)?;
    Ok(())
}

/// Gives back what `prepare` took: the address and the ports. Safe to repeat.
///
/// The veth pair is not deleted here: it goes with the container's network namespace, which the
/// kernel tears down (in the background) once the init is gone. Deleting it ourselves waits for the
/// unregistration's RCU grace periods, 0.3 to 35 ms measured here on every container's exit. The
/// source checks of its veth go with it; the element for its address stays for the next holder.
pub fn release(
    bridge: &BridgeConfig,
    id: &str,
    attachment: &Attachment,
) -> Result<(), NetworkError> {
    let leases = ipam::Leases::new(&bridge.state_dir);
    leases.release_address(attachment.address, id)?;
    for port in &attachment.ports {
        leases.release_port(port, id)?;
    }
    Ok(())
}

/// The network lock of `bridge`: held while its bridge, its tables or its members' /etc/hosts
/// change. Not reentrant: a holder must not call [`ensure_bridge`], [`sync_ports`] or [`remove`].
pub fn lock(bridge: &BridgeConfig) -> Result<impl Drop, NetworkError> {
    ipam::lock(&bridge.state_dir)
}

/// The containers holding addresses on `bridge`: its members, and leases of ones that crashed.
pub fn holders(bridge: &BridgeConfig) -> Result<Vec<String>, NetworkError> {
    ipam::Leases::new(&bridge.state_dir).holders()
}

/// `poc network rm`: the bridge, poc's tables, a named network's record and the lease directory,
/// when no container uses them. The record goes last, so that a failure leaves it to retry with.
pub fn remove(bridge: &BridgeConfig) -> Result<(), NetworkError> {
    let lock = ipam::lock(&bridge.state_dir)?;
    if let Some(holder) = ipam::Leases::new(&bridge.state_dir).holders()?.first() {
        let name = bridge.named.as_ref().map_or(&bridge.name, |n| &n.name);
        return Err(NetworkError::Refused(format!(
            "network {name} is in use by container {}; remove its containers first",
            &holder[..12.min(holder.len())]
        )));
    }
    rtnl::Rtnl::open()?.delete_link(&bridge.name)?;
    let name = bridge.table();
    nft::remove(&[
        nft::Table {
            family: nft::NFPROTO_IPV4,
            name: &name,
        },
        nft::Table {
            family: nft::NFPROTO_IPV6,
            name: &name,
        },
        nft::Table {
            family: nft::NFPROTO_BRIDGE,
            name: &name,
        },
    ])?;
    if let Some(named) = &bridge.named {
        named::remove_record(&named.record)?;
    }
    drop(lock);
    match std::fs::remove_dir_all(&bridge.state_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io("remove", &bridge.state_dir)(e).into())
        }
        _ => Ok(()),
    }
}

/// Whether the bridge exists now.
pub fn bridge_exists(bridge: &BridgeConfig) -> Result<bool, NetworkError> {
    Ok(rtnl::Rtnl::open()?.link_index(&bridge.name)?.is_some())
}

/// Runs in the child, inside its new network namespace: loopback up, and for the bridge eth0 with
/// its addresses and the default routes via the gateway.
pub fn setup_in_namespace(plan: NamespacePlan) -> Result<(), NetworkError> {
    if plan == NamespacePlan::Host {
        return Ok(());
    }
    loopback_up().map_err(NetworkError::Loopback)?;
    if let NamespacePlan::Bridge {
        address,
        prefix,
        gateway,
        ipv6,
    } = plan
    {
        let mut rtnl = rtnl::Rtnl::open()?;
        let index = rtnl
            .link_index("eth0")?
            .ok_or_else(|| NetworkError::Refused("eth0 is missing in the container".into()))?;
        rtnl.add_address(index, address.into(), prefix)?;
        match ipv6 {
            Some(v6) => add_ipv6_addresses(&mut rtnl, index, address, v6)?,
            None => disable_ipv6("eth0")?,
        }
        rtnl.set_up(index)?;
        rtnl.add_default_route(gateway.into(), index)?;
        if let Some(v6) = ipv6 {
            rtnl.add_default_route(v6.gateway.into(), index)?;
        }
    }
    Ok(())
}

/// eth0's IPv6 addresses, before it is up: the global one, and the link-local one the bridge's
/// source checks expect (the EUI-64 of its MAC) added by poc rather than left to the kernel, whose
/// choice depends on sysctls the container could inherit from the host (`addr_gen_mode`). Both
/// without duplicate address detection, so they work at once.
fn add_ipv6_addresses(
    rtnl: &mut rtnl::Rtnl,
    index: u32,
    address: Ipv4Addr,
    v6: Ipv6Attachment,
) -> Result<(), NetworkError> {
    let path = Path::new("/proc/sys/net/ipv6/conf/eth0/addr_gen_mode");
    // 1: no link-local address of the kernel's own making.
    std::fs::write(path, b"1").map_err(io("write", path))?;
    rtnl.add_address(index, antispoof::link_local_for(address).into(), 64)?;
    rtnl.add_address(index, v6.address.into(), v6.prefix)?;
    Ok(())
}

/// On a network without IPv6, as Docker does there, the container's interface takes no part
/// in IPv6 (no addresses, no router advertisements from other containers). The bridge drops the
/// containers' IPv6 frames too. A kernel without IPv6 has nothing to disable.
fn disable_ipv6(interface: &str) -> Result<(), NetworkError> {
    // net sysctls act on the network namespace of whoever opens them: the container's, here.
    let path = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"));
    match std::fs::write(&path, b"1") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("write", &path)(e).into()),
        _ => Ok(()),
    }
}

fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; the name is NUL-terminated within IFNAMSIZ.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(nix::Error::last());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(nix::Error::last());
        }
    }
    Ok(())
}

/// Resolvers used when the host has only loopback ones (which cannot work from another network
/// namespace) and no `--dns` was given: Docker's fallback.
pub const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The container's /etc/resolv.conf: `--dns` servers if given; otherwise the host's without
/// loopback resolvers (systemd-resolved's 127.0.0.53, a local dnsmasq), falling back to
/// [`FALLBACK_DNS`] on a bridge when none is left.
pub fn resolv_conf(host: &str, mode: &NetworkMode, dns: &[IpAddr]) -> String {
    if *mode == NetworkMode::Host && dns.is_empty() {
        return host.to_string();
    }
    let mut lines: Vec<String> = host
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => !dns.is_empty() || !words.next().is_some_and(is_loopback),
                _ => true,
            }
        })
        .map(String::from)
        .collect();
    if !dns.is_empty() {
        lines.retain(|l| !l.starts_with("nameserver"));
        lines.extend(dns.iter().map(|ip| format!("nameserver {ip}")));
    } else if mode.joins_bridge() && !lines.iter().any(|l| l.starts_with("nameserver")) {
        lines.extend(FALLBACK_DNS.iter().map(|ip| format!("nameserver {ip}")));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn is_loopback(address: &str) -> bool {
    address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The container's /etc/hosts: localhost, and its own name on its addresses.
pub fn hosts_file(
    hostname: &str,
    address: Option<Ipv4Addr>,
    address6: Option<Ipv6Addr>,
    name: Option<&str>,
) -> String {
    let mut text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
    let names = match name {
        Some(n) if n != hostname => format!("{hostname} {n}"),
        _ => hostname.to_string(),
    };
    match address {
        Some(ip) => text.push_str(&format!("{ip}\t{names}\n")),
        None => text.push_str(&format!("127.0.0.1\t{names}\n")),
    }
    if let Some(ip) = address6 {
        text.push_str(&format!("{ip}\t{names}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_dropped_with_a_fallback_on_the_bridge() {
        let host =
            "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch lan\n";
        assert_eq!(
            resolv_conf(host, &NetworkMode::None, &[]),
            "# generated\nnameserver 10.0.0.2\nsearch lan\n"
        );
        assert_eq!(resolv_conf(host, &NetworkMode::Host, &[]), host);
        let only_local = "nameserver 127.0.0.53\noptions edns0\n";
        assert_eq!(
            resolv_conf(only_local, &NetworkMode::Bridge, &[]),
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let dns = ["192.0.2.53".parse().unwrap()];
        assert_eq!(
            resolv_conf(host, &NetworkMode::Bridge, &dns),
            "# generated\nsearch lan\nnameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn hosts_name_the_container_on_its_address() {
        assert!(hosts_file("box", None, None, None).contains("127.0.0.1\tbox\n"));
        let t = hosts_file(
            "ab12",
            Some("10.88.0.5".parse().unwrap()),
            Some("fd77:1::2".parse().unwrap()),
            Some("web"),
        );
        assert!(t.contains("10.88.0.5\tab12 web\n"), "{t}");
        assert!(t.contains("fd77:1::2\tab12 web\n"), "{t}");
    }

    #[test]
    fn an_ipv6_address_follows_from_the_ipv4_lease() {
        let v4: Ipv4Network = "10.77.0.0/16".parse().unwrap();
        let at = |ip: &str, v6: &str| address6_for(v4, ip.parse().unwrap(), v6.parse().unwrap());
        assert_eq!(
            at("10.77.0.5", "fd77:1::/64"),
            Some("fd77:1::5".parse().unwrap())
        );
        assert_eq!(
            at("10.77.1.2", "fd77:1::/64"),
            Some("fd77:1::102".parse().unwrap())
        );
        assert_eq!(
            at("10.77.1.2", "fd77:1::/112"),
            Some("fd77:1::102".parse().unwrap())
        );
        // A /120 holds 256 addresses; a /16's offsets go to 65535.
        assert_eq!(
            at("10.77.0.200", "fd77:1::/120"),
            Some("fd77:1::c8".parse().unwrap())
        );
        assert_eq!(at("10.77.1.0", "fd77:1::/120"), None);
    }

    fn one_port(text: &str) -> PortMapping {
        let spec = parse_ports(text).unwrap();
        assert_eq!(spec.0.len(), 1, "{text}");
        spec.0[0]
    }

    #[test]
    fn ports_parse_like_dockers() {
        let p = one_port("8080:80");
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol),
            (None, 8080, 80, Protocol::Tcp)
        );
        let p = one_port("127.0.0.1:5353:53/udp");
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.to_string(), "127.0.0.1:5353->53/udp");
        // No host port: any free one, picked when the container starts.
        assert_eq!(one_port("80").host_port, 0);
        assert_eq!(one_port("127.0.0.1::80").host_ip, Some(Ipv4Addr::LOCALHOST));
        let range = parse_ports("8000-8002:80-82/udp").unwrap().0;
        let pairs: Vec<_> = range
            .iter()
            .map(|p| (p.host_port, p.container_port))
            .collect();
        assert_eq!(pairs, [(8000, 80), (8001, 81), (8002, 82)]);
        assert_eq!(parse_ports("9000-9001").unwrap().0.len(), 2);
        for bad in [
            "0:80",
            "8080:70000",
            "a:80",
            "1.2.3:80:80",
            "80:80/sctp",
            "8000-8010:80-85",
            "8010-8000:90-80",
            "8000-8001:80",
            "1-2000",
            "1:2:3:4",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

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
