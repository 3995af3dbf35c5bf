//! A container's place on its network: the leases it claims before it starts (`prepare`), the veth
//! pair and source checks once its init exists (`attach`), and the leases given back (`release`).
//! The bridge and its tables are bridge.rs's.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::ports::{free_port_range, host_port_in_use};
use super::{
    antispoof, ipam, rtnl, Attachment, BridgeConfig, Ipv6Attachment, NetworkError, PortMapping,
};

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
        host_veth: format!("poc{}", crate::id::short(id)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
