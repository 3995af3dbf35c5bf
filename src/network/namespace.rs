//! Inside the container's network namespace, run by its init: loopback up and, on a bridge, eth0
//! with its addresses and default routes. Touches only that namespace's interfaces and sysctls.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{antispoof, rtnl, Attachment, Ipv6Attachment, NetworkError, NetworkMode};
use crate::error::io;

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
