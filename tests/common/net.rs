//! What the network tests share: simulated upstream hosts (network namespaces joined to the host by
//! a veth pair, made and removed by the test), running code inside a namespace, UDP listeners that
//! say what they heard, HTTP from the host, and the forged frames of tests/attack/spoof.c.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{attack_dir, read_trimmed, stderr, stdout, Env};

/// `ip ARGS...`, which must succeed; its output.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is installed by scripts/setup.sh --deps");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// `poc inspect ID`'s one object.
pub fn inspect(env: &Env, id: &str) -> serde_json::Value {
    let out = env.poc(&["inspect", id]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

/// A container's IPv4 address on its bridge, from `poc inspect`.
pub fn address_of(env: &Env, id: &str) -> String {
    inspect(env, id)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The MAC poc gives the container with IPv4 `address` (02:42 and the address, as Docker).
pub fn mac_of(address: &str) -> String {
    let ip: Ipv4Addr = address.parse().unwrap();
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// A port for a test's listener: apart from other test processes' (tests of one file add offsets).
pub fn test_port(offset: u16) -> u16 {
    20_000 + (std::process::id() % 20_000) as u16 + offset
}

/// How many upstreams one test process may make (each takes a /24 of 198.18.0.0/15).
const UPSTREAMS_PER_PROCESS: u32 = 8;

/// A host of its own: a network namespace joined to the host by a veth pair, with a /24 of the
/// benchmarking range (198.18.0.0/15) or a /64 of fd77:2::/32 (unique local), neither used by any
/// real network here, its own among this process's upstreams (tests run in parallel). Removed on
/// drop.
pub struct Upstream {
    pub netns: String,
    pub host_veth: String,
    /// The host's end: the upstream's gateway back to the host.
    pub host_ip: IpAddr,
    pub ip: IpAddr,
}

impl Upstream {
    pub fn v4() -> Self {
        let (n, net) = Self::number();
        let (second, third) = (18 + (net / 256) as u8, (net % 256) as u8);
        Self::make(
            n,
            Ipv4Addr::new(198, second, third, 1).into(),
            Ipv4Addr::new(198, second, third, 2).into(),
            24,
        )
    }

    pub fn v6() -> Self {
        let (n, net) = Self::number();
        let prefix = format!("fd77:2:{:x}:{n:x}", net / UPSTREAMS_PER_PROCESS);
        let host: Ipv6Addr = format!("{prefix}::1").parse().unwrap();
        let ip: Ipv6Addr = format!("{prefix}::2").parse().unwrap();
        Self::make(n, host.into(), ip.into(), 64)
    }

    /// This upstream's number in the process, and among every process's.
    fn number() -> (u32, u32) {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        assert!(
            n < UPSTREAMS_PER_PROCESS,
            "raise UPSTREAMS_PER_PROCESS: more upstreams than /24s set aside"
        );
        (n, (std::process::id() % 64) * UPSTREAMS_PER_PROCESS + n)
    }

    fn make(n: u32, host_ip: IpAddr, own_ip: IpAddr, prefix: u8) -> Self {
        let pid = std::process::id() % 100_000;
        let up = Upstream {
            netns: format!("ptup{pid}u{n}"),
            host_veth: format!("ptuh{pid}u{n}"),
            host_ip,
            ip: own_ip,
        };
        let peer = format!("ptun{pid}u{n}");
        ip(&["netns", "add", &up.netns]);
        ip(&[
            "link",
            "add",
            &up.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &up.netns]);
        // Without duplicate address detection (IPv6), so the addresses work at once.
        let host_cidr = format!("{host_ip}/{prefix}");
        let cidr = format!("{own_ip}/{prefix}");
        let nodad: &[&str] = if own_ip.is_ipv6() { &["nodad"] } else { &[] };
        ip(&[&["addr", "add", &host_cidr, "dev", &up.host_veth], nodad].concat());
        ip(&["link", "set", &up.host_veth, "up"]);
        ip(&[
            &["-n", &up.netns, "addr", "add", &cidr, "dev", &peer],
            nodad,
        ]
        .concat());
        ip(&["-n", &up.netns, "link", "set", &peer, "up"]);
        ip(&["-n", &up.netns, "link", "set", "lo", "up"]);
        up
    }

    /// Routes `subnet` (a bridge's) through the host, as a neighbour on the host's network would.
    pub fn route_to(&self, subnet: &str) {
        let via = self.host_ip.to_string();
        ip(&["-n", &self.netns, "route", "add", subnet, "via", &via]);
    }

    /// Its namespace, for [`within`] and `nsenter`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.netns)
    }

    /// Asserts that no TCP connection from this upstream reaches `address` on any of `ports`.
    pub fn cannot_connect(&self, address: IpAddr, ports: &[u16]) {
        for &port in ports {
            let direct = self
                .within(move || {
                    let to = SocketAddr::from((address, port));
                    TcpStream::connect_timeout(&to, Duration::from_secs(2)).map(drop)
                })
                .join()
                .unwrap();
            assert!(
                direct.is_err(),
                "{} was reached from a host routed to the bridge",
                SocketAddr::from((address, port))
            );
        }
    }

    /// Runs `work` on a thread inside the upstream namespace.
    pub fn within<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        within(self.path(), work)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// Runs `work` on a thread inside the network namespace at `path`.
pub fn within<T: Send + 'static>(
    path: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        work()
    })
}

/// What a UDP listener on `listen` in the network namespace at `netns` hears while `send` runs.
/// `send` ends with a datagram carrying `last`, on the same path as the others: once it is heard,
/// so would they be.
pub fn heard_in(netns: String, listen: SocketAddr, last: &str, send: impl FnOnce()) -> Vec<String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let last = last.to_string();
    let listener = within(netns, move || {
        let socket = UdpSocket::bind(listen).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut heard = Vec::<String>::new();
        while Instant::now() < deadline && !heard.contains(&last) {
            let mut buf = [0u8; 2048];
            if let Ok(n) = socket.recv(&mut buf) {
                heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        heard
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    send();
    listener.join().unwrap()
}

/// `GET /` from `addr`, retried for 10 s while nothing listens yet.
pub fn http_get(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                return body;
            }
            Err(e) if Instant::now() > deadline => panic!("connecting to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The MAC of the Env's bridge.
pub fn bridge_mac(env: &Env) -> String {
    read_trimmed(std::path::Path::new(&format!(
        "/sys/class/net/{}/address",
        env.bridge
    )))
}

/// A container that can send forged frames: tests/attack/spoof.c mounted at /attack.
pub fn attacker(env: &Env) -> String {
    let volume = format!("{}:/attack:ro", attack_dir().display());
    env.run_detached(&["-v", &volume, "busybox", "sleep", "60"])
}

/// `spoof ARGS...` inside the container; asserts that the frames went out.
pub fn spoof(env: &Env, id: &str, args: &[&str]) {
    let mut full = vec!["exec", id, "/attack/spoof"];
    full.extend_from_slice(args);
    let out = env.poc(&full);
    assert!(
        stdout(&out).starts_with("sent"),
        "spoof {args:?}: {} {}",
        stdout(&out),
        stderr(&out)
    );
}
