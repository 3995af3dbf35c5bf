//! The texts of a container's /etc/resolv.conf and /etc/hosts (its own names; a named network's
//! members' names are hosts.rs's). Pure functions: writing the files is the caller's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::NetworkMode;

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
}
