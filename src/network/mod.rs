//! Container networking: which network a container joins, and the setup inside its namespace.
//! Owns nothing on the host yet; the bridge, veth and NAT of the networking issue plug in at `attach`.

use std::os::fd::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("bringing up the loopback interface: {0}")]
    Loopback(nix::Error),
}

/// `--network`: `none` gives a namespace with loopback only; `host` shares the host's stack.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    None,
    Host,
}

/// Runs in the parent after the child exists in its network namespace and before it is released:
/// the place where a veth peer is moved into `pid`'s namespace. Loopback-only needs nothing here.
pub fn attach(mode: NetworkMode, _pid: i32) -> Result<(), NetworkError> {
    match mode {
        NetworkMode::None | NetworkMode::Host => Ok(()),
    }
}

/// Runs in the child, inside its new network namespace: brings `lo` up (it starts down).
pub fn setup_in_namespace(mode: NetworkMode) -> Result<(), NetworkError> {
    if mode == NetworkMode::Host {
        return Ok(());
    }
    loopback_up().map_err(NetworkError::Loopback)
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

/// The container's /etc/resolv.conf from the host's: loopback resolvers (systemd-resolved's 127.0.0.53,
/// a local dnsmasq) cannot be reached from another network namespace, so they are dropped.
pub fn resolv_conf(host: &str, mode: NetworkMode) -> String {
    if mode == NetworkMode::Host {
        return host.to_string();
    }
    host.lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            !(words.next() == Some("nameserver") && words.next().is_some_and(is_loopback))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

fn is_loopback(address: &str) -> bool {
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The container's /etc/hosts: localhost and its own name.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{hostname}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_dropped() {
        let host =
            "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch lan\n";
        assert_eq!(
            resolv_conf(host, NetworkMode::None),
            "# generated\nnameserver 10.0.0.2\nsearch lan\n"
        );
        assert_eq!(resolv_conf(host, NetworkMode::Host), host);
    }

    #[test]
    fn hosts_name_the_container() {
        assert!(hosts_file("box").contains("127.0.0.1\tbox\n"));
    }
}
