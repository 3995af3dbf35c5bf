//! The net suite's baseline and its listener: a network namespace joined to the host by a veth
//! pair and nothing else (no bridge, no nftables), and `iperf3 -s` on the host. Owns the
//! namespace, the veth pair and the servers it starts; `Bench::drop` removes the first two.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::measure;
use super::{check_interrupted, fail, Bench, Result};

/// How /proc/net/tcp writes a local IPv4 address and port.
fn proc_net_tcp_address(addr: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_ne_bytes(addr.octets()))
}

/// Whether a TCP socket of this network namespace listens on `addr:port`.
fn listening(addr: Ipv4Addr, port: u16) -> bool {
    let wanted = proc_net_tcp_address(addr, port);
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
}

/// Whether `path` is a mount point (in this process's mount namespace).
fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p) == path)
}

/// `ip ARGS`, an error (with ip's message) unless it succeeds.
fn ip(args: &[&str]) -> Result<()> {
    measure::output(Command::new("ip").args(args)).map(|_| ())
}

/// The baseline's network: a namespace and a veth pair to the host, addresses on both ends,
/// nothing else (no bridge, no nftables). Its removal is registered with the bench first.
pub struct PlainNet {
    pub netns: String,
    pub host_addr: Ipv4Addr,
}

impl PlainNet {
    pub fn make(bench: &mut Bench) -> Result<Self> {
        let pid = std::process::id();
        let netns = format!("pbns{pid}");
        let host_if = format!("pbh{}", pid % 100_000);
        let peer_if = format!("pbp{}", pid % 100_000);
        // The /24 after the bench's bridge subnet.
        let base = u32::from(bench.subnet.network()) + 256;
        let host_addr = Ipv4Addr::from(base + 1);
        let peer_addr = Ipv4Addr::from(base + 2);
        // Names of the bench's own: a namespace or link already there is someone else's (its
        // removal is registered before it is made, so that an interrupted `ip` leaves nothing).
        if Path::new("/run/netns").join(&netns).exists()
            || Path::new("/sys/class/net").join(&host_if).exists()
        {
            return Err(fail(format!(
                "the network namespace {netns} or the link {host_if} exists already: left by an earlier bench? (ip netns del {netns}; ip link del {host_if})"
            )));
        }
        // `ip netns add` makes /run/netns a mount point (a bind mount of itself) and leaves it:
        // undone at the end when it was not one before and no namespace is left in it.
        let run_dir = PathBuf::from("/run/netns");
        let (dir_existed, was_mount) = (run_dir.exists(), is_mount_point(&run_dir));
        {
            let netns = netns.clone();
            bench.on_cleanup(move || {
                let _ = measure::quiet(Command::new("ip").args(["netns", "del", &netns]));
                let empty = std::fs::read_dir(&run_dir).is_ok_and(|mut d| d.next().is_none());
                if !was_mount && empty && is_mount_point(&run_dir) {
                    let _ = nix::mount::umount2(&run_dir, nix::mount::MntFlags::MNT_DETACH);
                }
                if !dir_existed && empty {
                    let _ = std::fs::remove_dir(&run_dir);
                }
            });
        }
        ip(&["netns", "add", &netns])?;
        {
            let host_if = host_if.clone();
            bench.on_cleanup(move || {
                let _ = measure::quiet(Command::new("ip").args(["link", "del", &host_if]));
            });
        }
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &netns,
        ])?;
        ip(&["addr", "add", &format!("{host_addr}/24"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{peer_addr}/24"),
            "dev",
            &peer_if,
        ])?;
        ip(&["-n", &netns, "link", "set", &peer_if, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(PlainNet { netns, host_addr })
    }

    /// `ARGV` run in the namespace.
    pub fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).args(argv);
        cmd
    }
}

/// `iperf3 -s -1` on the host, bound to `addr:port`, killed (by its PID) if still running when
/// dropped.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn start(addr: Ipv4Addr, port: u16) -> Result<Self> {
        check_interrupted()?;
        let child = Command::new("iperf3")
            .args(["-s", "-1", "-B", &addr.to_string(), "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot run iperf3: {e}")))?;
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !listening(addr, port) {
            check_interrupted()?;
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(fail(format!(
                    "iperf3 -s -B {addr} -p {port} ended ({status}) before listening"
                )));
            }
            if Instant::now() > deadline {
                return Err(fail(format!("iperf3 -s did not listen on {addr}:{port}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// Waits for the server to end after its one client (a few seconds at most).
    pub fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses() {
        // Little-endian hosts print the address's bytes reversed; the port is big-endian hex.
        let expected = if cfg!(target_endian = "little") {
            "0100960A:1451"
        } else {
            "0A960001:1451"
        };
        assert_eq!(
            proc_net_tcp_address(Ipv4Addr::new(10, 150, 0, 1), 5201),
            expected
        );
    }
}
