//! A network's bridge and what the host needs for it: the bridge with its gateway addresses, IP
//! forwarding and the bridge's `route_localnet` sysctls, poc's NAT tables, the network lock, and
//! `poc network rm`. Containers' own links and leases are attach.rs's.

use std::path::{Path, PathBuf};

use super::{ipam, named, nft, rtnl, BridgeConfig, NetworkError, Published};
use crate::error::io;

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
            family: nft::nf_tables::NFPROTO_IPV4,
            name: &name,
        },
        nft::Table {
            family: nft::nf_tables::NFPROTO_IPV6,
            name: &name,
        },
        nft::Table {
            family: nft::nf_tables::NFPROTO_BRIDGE,
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
