//! Published ports: `-p` as Docker reads it, the mappings a container records, and where a port
//! left to poc (`-p CONTAINER_PORT`) is looked for on the host. Owns no state: leases are in ipam.rs,
//! the DNAT rules in nft/nat.rs.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub(super) fn number(self) -> u8 {
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

    /// `SPEC[/tcp|udp]` (`-p`, `poc port`): the text before the protocol, and the protocol (tcp when
    /// none is given).
    pub fn split_from(text: &str) -> Result<(&str, Protocol), String> {
        match text.rsplit_once('/') {
            Some((spec, "tcp")) => Ok((spec, Protocol::Tcp)),
            Some((spec, "udp")) => Ok((spec, Protocol::Udp)),
            Some((_, other)) => Err(format!("unknown protocol '{other}' (tcp or udp)")),
            None => Ok((text, Protocol::Tcp)),
        }
    }
}

/// One published port. `host_port` 0 (from `-p CONTAINER_PORT`) asks for any free host port, which
/// [`super::prepare`] picks and records.
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
    let within = |e: String| format!("'{text}': {e}");
    let (spec, protocol) = Protocol::split_from(text).map_err(within)?;
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => {
            return Err(format!(
                "'{text}' is not [[IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp] (ports or ranges like 8000-8010)"
            ))
        }
    };
    let host_ip = match ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| within(format!("'{ip}' is not an IPv4 address")))?,
        ),
    };
    let (c_first, c_last) = parse_range(container).map_err(within)?;
    let count = usize::from(c_last - c_first) + 1;
    if count > MAX_PORTS_PER_PUBLISH {
        return Err(within(format!(
            "at most {MAX_PORTS_PER_PUBLISH} ports per -p"
        )));
    }
    let host_first = match host {
        None => None,
        Some(h) => {
            let (h_first, h_last) = parse_range(h).map_err(within)?;
            if usize::from(h_last - h_first) + 1 != count {
                return Err(within(format!(
                    "the host range {h} and the container range {container} differ in length"
                )));
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

/// `PORT` or `FIRST-LAST`.
fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => (parse_port(text)?, parse_port(text)?),
    };
    if first > last {
        return Err(format!("the range {text} runs backwards"));
    }
    Ok((first, last))
}

/// A port number, 1-65535 (`-p`, `poc port`).
pub fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("'{text}' is not a port (1-65535)"))
}

impl PortMapping {
    /// `IP:PORT` on the host (0.0.0.0 for all its addresses), as Docker prints it.
    pub fn host_side(&self) -> String {
        let ip = self
            .host_ip
            .map_or("0.0.0.0".to_string(), |ip| ip.to_string());
        format!("{ip}:{}", self.host_port)
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let (container_port, protocol) = (self.container_port, self.protocol.name());
        write!(f, "{}->{container_port}/{protocol}", self.host_side())
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

/// Where `-p CONTAINER_PORT` finds a host port: Docker's range, above the kernel's usual ephemeral
/// ports' start and below nothing a service usually listens on.
pub(super) fn free_port_range() -> std::ops::RangeInclusive<u16> {
    49153..=65535
}

/// Whether a socket of the host already has `port` (a DNAT rule would hide it from its clients).
pub(super) fn host_port_in_use(protocol: Protocol, port: u16) -> bool {
    let any = std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(any).is_err(),
        Protocol::Udp => std::net::UdpSocket::bind(any).is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            parse_ports("80:80/sctp").unwrap_err(),
            "'80:80/sctp': unknown protocol 'sctp' (tcp or udp)"
        );
        assert_eq!(
            parse_ports("8010-8000:90-80").unwrap_err(),
            "'8010-8000:90-80': the range 90-80 runs backwards"
        );
        assert_eq!(
            parse_ports("0:80").unwrap_err(),
            "'0:80': '0' is not a port (1-65535)"
        );
    }
}
