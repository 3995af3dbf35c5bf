//! Address and port leases of one bridge network, one file each, claimed with an exclusive create:
//! two containers never get the same address or host port, however many start at once, and no lock
//! is held while claiming. A lease names its container; one whose container no longer exists (a crash)
//! is reclaimed. IPv6 leases of a network with an IPv6 subnet live in a directory of their own.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use nix::fcntl::{Flock, FlockArg};

use super::{NetworkError, PortMapping};
use crate::error::io;

/// The host ports' leases, beside the networks' directories: longer than any interface name, so no
/// bridge's directory can be called that.
pub const HOST_PORTS: &str = "published-host-ports";

pub struct Leases {
    addresses: PathBuf,
    ports: PathBuf,
}

/// The network lock: held while the bridge and the NAT table are changed.
pub fn lock(dir: &Path) -> Result<Flock<File>, NetworkError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    lock_file(&dir.join("lock"))
}

/// An exclusive lock on the file at `path` (root's alone, made if missing), held until dropped.
pub fn lock_file(path: &Path) -> Result<Flock<File>, NetworkError> {
    let file = crate::private::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    Ok(Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io("lock", path)(e.into()))?)
}

impl Leases {
    /// The leases of the network whose directory is `dir`; host ports are shared by every network
    /// beside it (a host port is published once, whatever network its container is on).
    pub fn new(dir: &Path) -> Self {
        let networks = dir.parent().unwrap_or(dir);
        Leases {
            addresses: dir.join("addresses"),
            ports: networks.join(HOST_PORTS),
        }
    }

    /// The lowest free address of the subnet (not the network, gateway or broadcast address).
    pub fn claim_address(
        &self,
        subnet: Ipv4Network,
        gateway: Ipv4Addr,
        id: &str,
        is_live: &dyn Fn(&str) -> bool,
    ) -> Result<Ipv4Addr, NetworkError> {
        std::fs::create_dir_all(&self.addresses).map_err(io("create", &self.addresses))?;
        let candidates = subnet
            .iter()
            .filter(|ip| *ip != subnet.network() && *ip != subnet.broadcast() && *ip != gateway);
        for ip in candidates {
            if claim(&self.addresses.join(ip.to_string()), id, is_live)? {
                return Ok(ip);
            }
        }
        Err(NetworkError::Refused(format!(
            "the address pool {subnet} is exhausted; remove containers or use a larger --subnet"
        )))
    }

    pub fn claim_port(
        &self,
        port: &PortMapping,
        id: &str,
        is_live: &dyn Fn(&str) -> bool,
    ) -> Result<(), NetworkError> {
        std::fs::create_dir_all(&self.ports).map_err(io("create", &self.ports))?;
        if claim(&self.ports.join(port_key(port)), id, is_live)? {
            return Ok(());
        }
        Err(NetworkError::Refused(format!(
            "host port {}/{} is already published by another container",
            port.host_port,
            port.protocol.name()
        )))
    }

    /// The lowest host port of `candidates` that no container holds and no host socket uses (for
    /// `-p CONTAINER_PORT`); `port.host_port` is ignored.
    pub fn claim_free_port(
        &self,
        port: &PortMapping,
        candidates: std::ops::RangeInclusive<u16>,
        id: &str,
        is_live: &dyn Fn(&str) -> bool,
        in_use_on_host: &dyn Fn(u16) -> bool,
    ) -> Result<u16, NetworkError> {
        std::fs::create_dir_all(&self.ports).map_err(io("create", &self.ports))?;
        for host_port in candidates.clone() {
            let candidate = PortMapping { host_port, ..*port };
            let path = self.ports.join(port_key(&candidate));
            if !claim(&path, id, is_live)? {
                continue;
            }
            if !in_use_on_host(host_port) {
                return Ok(host_port);
            }
            release(&path, id)?;
        }
        Err(NetworkError::Refused(format!(
            "no free host port for {}/{} in {}-{}",
            port.container_port,
            port.protocol.name(),
            candidates.start(),
            candidates.end()
        )))
    }

    pub fn release_address(&self, ip: Ipv4Addr, id: &str) -> Result<(), NetworkError> {
        release(&self.addresses.join(ip.to_string()), id)
    }

    pub fn release_port(&self, port: &PortMapping, id: &str) -> Result<(), NetworkError> {
        release(&self.ports.join(port_key(port)), id)
    }

    /// The containers holding addresses.
    pub fn holders(&self) -> Result<Vec<String>, NetworkError> {
        let entries = match std::fs::read_dir(&self.addresses) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.addresses)(e).into()),
        };
        Ok(entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect())
    }
}

/// Host ports conflict whatever host address they are bound to.
fn port_key(port: &PortMapping) -> String {
    format!("{}-{}", port.protocol.name(), port.host_port)
}

/// Creates the lease file for `id`; a lease of a container that no longer exists is taken over.
fn claim(path: &Path, id: &str, is_live: &dyn Fn(&str) -> bool) -> Result<bool, NetworkError> {
    for _ in 0..2 {
        match File::options().write(true).create_new(true).open(path) {
            Ok(mut file) => {
                file.write_all(id.as_bytes()).map_err(io("write", path))?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                // An empty lease is being written right now by its claimer.
                if holder.is_empty() || is_live(&holder) {
                    return Ok(false);
                }
                release(path, &holder)?;
            }
            Err(e) => return Err(io("create", path)(e).into()),
        }
    }
    Ok(false)
}

/// Removes the lease if `id` holds it.
fn release(path: &Path, id: &str) -> Result<(), NetworkError> {
    if std::fs::read_to_string(path).is_ok_and(|holder| holder == id) {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", path)(e).into())
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Protocol;

    #[test]
    fn addresses_are_unique_reclaimed_when_stale_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::new(&dir.path().join("bridge0"));
        let net: Ipv4Network = "10.9.0.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 9, 0, 1);
        let live = |_: &str| true;
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| {
                leases
                    .claim_address(net, gw, &format!("c{i}"), &live)
                    .unwrap()
            })
            .collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 9, 0, 6));
        assert!(leases
            .claim_address(net, gw, "c5", &live)
            .unwrap_err()
            .to_string()
            .contains("exhausted"));
        // c2's container vanished: its address is reclaimed.
        let only_c2_dead = |id: &str| id != "c2";
        assert_eq!(
            leases.claim_address(net, gw, "c6", &only_c2_dead).unwrap(),
            Ipv4Addr::new(10, 9, 0, 4)
        );
        leases
            .release_address(Ipv4Addr::new(10, 9, 0, 2), "not-the-holder")
            .unwrap();
        assert!(leases.holders().unwrap().contains(&"c0".to_string()));
        leases
            .release_address(Ipv4Addr::new(10, 9, 0, 2), "c0")
            .unwrap();
        assert!(!leases.holders().unwrap().contains(&"c0".to_string()));
    }

    #[test]
    fn a_host_port_is_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::new(&dir.path().join("bridge0"));
        let p = PortMapping {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let live = |_: &str| true;
        leases.claim_port(&p, "a", &live).unwrap();
        assert!(leases
            .claim_port(
                &PortMapping {
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    ..p
                },
                "b",
                &live
            )
            .is_err());
        leases
            .claim_port(
                &PortMapping {
                    protocol: Protocol::Udp,
                    ..p
                },
                "b",
                &live,
            )
            .unwrap();
        leases.release_port(&p, "a").unwrap();
        leases.claim_port(&p, "b", &live).unwrap();
    }

    #[test]
    fn a_free_host_port_skips_leased_ones_and_the_hosts_own() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::new(&dir.path().join("bridge0"));
        let p = PortMapping {
            host_ip: None,
            host_port: 0,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let live = |_: &str| true;
        let nothing_on_host = |_: u16| false;
        let got = leases
            .claim_free_port(&p, 40000..=40002, "a", &live, &nothing_on_host)
            .unwrap();
        assert_eq!(got, 40000);
        let host_has_40001 = |port: u16| port == 40001;
        let got = leases
            .claim_free_port(&p, 40000..=40002, "b", &live, &host_has_40001)
            .unwrap();
        assert_eq!(got, 40002);
        let err = leases
            .claim_free_port(&p, 40000..=40002, "c", &live, &host_has_40001)
            .unwrap_err();
        assert!(err.to_string().contains("no free host port"), "{err}");
        // The refused host port was not kept.
        leases
            .claim_port(
                &PortMapping {
                    host_port: 40001,
                    ..p
                },
                "d",
                &live,
            )
            .unwrap();
    }
}
