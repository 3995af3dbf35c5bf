//! IPv6 on a bridge network, as users of `--ipv6` meet it: containers ping6 each other and the
//! gateway, reach a simulated upstream host (a network namespace this test creates) behind the host's
//! address (NAT66), are reached only through published ports, and cannot forge IPv6 sources, router
//! advertisements or neighbour advertisements. Nothing is left behind. Traffic stays on this machine.
//!
//! NAT66 needs `net.ipv6.conf.all.forwarding`, which poc switches on and never off: these tests
//! put back the value they found once the last of them is done.

mod common;

use std::io::Read;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::net::{
    address_of, attacker, bridge_mac, heard_in, http_get, inspect, ip, mac_of, spoof, test_port,
    within, Upstream,
};
use common::{stderr, stdout, Env};

fn address6_of(env: &Env, id: &str) -> Ipv6Addr {
    inspect(env, id)["NetworkSettings"]["GlobalIPv6Address"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} has no IPv6 address"))
        .parse()
        .unwrap()
}

fn subnet6(env: &Env) -> String {
    env.subnet6.clone().unwrap()
}

/// The bridge's address: the subnet's first after the network's own.
fn gateway6(env: &Env) -> Ipv6Addr {
    let subnet = subnet6(env);
    let network: Ipv6Addr = subnet.trim_end_matches("/64").parse().unwrap();
    Ipv6Addr::from(u128::from(network) + 1)
}

/// The MAC poc gives a container: 02:42 and its IPv4 address.
/// The EUI-64 link-local address of a MAC.
fn link_local_of(mac: &str) -> Ipv6Addr {
    let m: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let id = [m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
    let mut octets = [0u8; 16];
    octets[..2].copy_from_slice(&[0xfe, 0x80]);
    octets[8..].copy_from_slice(&id);
    Ipv6Addr::from(octets)
}

/// The network namespace of a running container, by its init.
fn netns_of(env: &Env, id: &str) -> String {
    let pid = inspect(env, id)["State"]["Pid"].as_i64().unwrap();
    format!("/proc/{pid}/ns/net")
}

#[test]
fn containers_ping6_each_other_and_the_gateway() {
    let _forwarding = common::Ipv6ForwardingRestored::hold();
    let env = Env::with_ipv6();
    let a = env.run_detached(&["--name", "a", "busybox", "sleep", "60"]);
    let a6 = address6_of(&env, &a);
    let gw6 = gateway6(&env);
    let settings = &inspect(&env, &a)["NetworkSettings"];
    assert_eq!(settings["GlobalIPv6PrefixLen"], 64);
    assert_eq!(settings["IPv6Gateway"], gw6.to_string());
    assert_eq!(a6, Ipv6Addr::from(u128::from(gw6) + 1), "the lowest free");
    let script = format!(
        "ping -6 -c1 -W2 {a6} && ping -6 -c1 -W2 {gw6} && ip -6 route && ip -6 addr show dev eth0"
    );
    let out = env.poc(&["run", "--rm", "busybox", "sh", "-c", &script]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(
        text.contains(&format!("default via {gw6} dev eth0")),
        "{text}"
    );
    let hosts = stdout(&env.poc(&["exec", "a", "cat", "/etc/hosts"]));
    assert!(hosts.contains(&format!("{a6}\t{} a", &a[..12])), "{hosts}");
    // eth0's link-local address is the one the source checks expect: the EUI-64 of its MAC.
    let addresses = stdout(&env.poc(&["exec", "a", "ip", "-6", "addr", "show", "dev", "eth0"]));
    let link_local = link_local_of(&mac_of(&address_of(&env, &a)));
    assert!(
        addresses.contains(&format!("{link_local}/64")),
        "{addresses}"
    );
    let net: serde_json::Value =
        serde_json::from_slice(&env.poc(&["network", "inspect"]).stdout).unwrap();
    assert_eq!(net["EnableIPv6"], true);
    assert_eq!(net["GatewayIPv6"], gw6.to_string());
    assert_eq!(net["Containers"][0]["GlobalIPv6Address"], a6.to_string());
    assert_eq!(
        common::read_trimmed(std::path::Path::new(common::IPV6_FORWARDING)),
        "1"
    );
    assert!(env.poc(&["rm", "-f", "a"]).status.success());
    env.assert_clean();

    // `poc network rm` takes the gateway address, its route and the ip6 table with it.
    assert!(env.poc(&["network", "rm"]).status.success());
    let routes = ip(&["-6", "route", "show", &subnet6(&env)]);
    assert!(routes.trim().is_empty(), "{routes}");
    let tables = stdout(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap(),
    );
    assert!(!tables.contains(&format!("poc-{}", env.bridge)), "{tables}");
    let leases = env.state_root().join("networks").join(&env.bridge);
    assert!(!leases.exists(), "{} is left", leases.display());
}

#[test]
fn nat66_hides_the_container_behind_the_hosts_address() {
    let _forwarding = common::Ipv6ForwardingRestored::hold();
    let env = Env::with_ipv6();
    let upstream = Upstream::v6();
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = within(upstream.path(), move || {
        let listener = TcpListener::bind("[::]:9000").unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, peer) = listener.accept().unwrap();
        let mut text = String::new();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = conn.read_to_string(&mut text);
        (peer.ip(), text)
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let script = format!("echo through-nat66 | nc -w 5 {} 9000", upstream.ip);
    let out = env.poc(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (peer, text) = server.join().unwrap();
    assert_eq!(text.trim(), "through-nat66");
    assert_eq!(
        peer, upstream.host_ip,
        "the upstream sees the host's address, not the container's"
    );
    env.assert_clean();
}

#[test]
fn only_replies_and_published_ports_are_forwarded_into_the_bridge_over_ipv6() {
    let _forwarding = common::Ipv6ForwardingRestored::hold();
    let env = Env::with_ipv6();
    let upstream = Upstream::v6();
    upstream.route_to(&subnet6(&env));
    let port = test_port(1);
    // httpd on 81, not published, and on 80, published on the host's `port`.
    let script = "mkdir -p /www && echo forwarded-page > /www/index.html && httpd -p 81 -h /www \
                  && exec httpd -f -p 80 -h /www";
    let id = env.run_detached(&["-p", &format!("{port}:80"), "busybox", "sh", "-c", script]);
    let address = address6_of(&env, &id);
    let host_ip = upstream.host_ip;
    let published = within(upstream.path(), move || {
        http_get(SocketAddr::from((host_ip, port)))
    })
    .join()
    .unwrap();
    assert!(published.contains("forwarded-page"), "{published}");
    let from_host = http_get(SocketAddr::from((gateway6(&env), port)));
    assert!(from_host.contains("forwarded-page"), "{from_host}");
    upstream.cannot_connect(address.into(), &[81, 80]);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn a_container_cannot_send_with_a_forged_ipv6_source() {
    let _forwarding = common::Ipv6ForwardingRestored::hold();
    let env = Env::with_ipv6();
    let upstream = Upstream::v6();
    let a = attacker(&env);
    let b = env.run_detached(&["busybox", "sleep", "60"]);
    let (a6, b6) = (address6_of(&env, &a), address6_of(&env, &b));
    let b_mac = mac_of(&address_of(&env, &b));
    let unused = Ipv6Addr::from(u128::from(b6) + 100).to_string();
    let (a6, b6) = (a6.to_string(), b6.to_string());
    let b_link_local = link_local_of(&b_mac).to_string();
    let up = upstream.ip.to_string();
    // b's address, b's link-local one, a free one of the subnet, and the upstream's own: each with
    // a's MAC, and b's address with b's MAC too.
    let forged = [
        ("self", b6.as_str(), "forged-address"),
        ("self", b_link_local.as_str(), "forged-link-local"),
        ("self", unused.as_str(), "forged-free-address"),
        ("self", up.as_str(), "forged-outside-address"),
        (b_mac.as_str(), b6.as_str(), "forged-address-and-mac"),
    ];

    let gateway_mac = bridge_mac(&env);
    let heard = heard_in(
        upstream.path(),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9000)),
        "own-address",
        || {
            for (mac, source, text) in forged {
                spoof(
                    &env,
                    &a,
                    &["udp6", mac, &gateway_mac, source, &up, "9000", text],
                );
            }
            spoof(
                &env,
                &a,
                &[
                    "udp6",
                    "self",
                    &gateway_mac,
                    &a6,
                    &up,
                    "9000",
                    "own-address",
                ],
            );
        },
    );
    assert!(heard.contains(&"own-address".to_string()), "{heard:?}");
    for (_, source, text) in forged {
        assert!(
            !heard.contains(&text.to_string()),
            "a datagram from a with source {source} reached the upstream host: {heard:?}"
        );
    }

    // The same towards b, straight over the bridge.
    let heard = heard_in(
        netns_of(&env, &b),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9001)),
        "own-address",
        || {
            for (mac, source, text) in forged.iter().filter(|f| f.1 != b6) {
                spoof(&env, &a, &["udp6", mac, &b_mac, source, &b6, "9001", text]);
            }
            spoof(
                &env,
                &a,
                &["udp6", "self", &b_mac, &a6, &b6, "9001", "own-address"],
            );
        },
    );
    assert!(heard.contains(&"own-address".to_string()), "{heard:?}");
    for (_, source, text) in forged {
        assert!(
            !heard.contains(&text.to_string()),
            "a datagram from a with source {source} reached b: {heard:?}"
        );
    }
    assert!(env.poc(&["rm", "-f", &a, &b]).status.success());
    env.assert_clean();
}

#[test]
fn forged_neighbour_and_router_advertisements_are_dropped() {
    let _forwarding = common::Ipv6ForwardingRestored::hold();
    let env = Env::with_ipv6();
    let a = attacker(&env);
    let b = env.run_detached(&["busybox", "sleep", "60"]);
    let b6 = address6_of(&env, &b).to_string();
    let b_mac = mac_of(&address_of(&env, &b));
    let a_link_local = link_local_of(&mac_of(&address_of(&env, &a))).to_string();
    // b talks to the gateway, so the host has a neighbour entry for it.
    let gw6 = gateway6(&env).to_string();
    let out = env.poc(&["exec", &b, "ping", "-6", "-c1", "-W2", &gw6]);
    assert!(out.status.success(), "{}", stderr(&out));
    let neighbour = || ip(&["-6", "neigh", "show", &b6, "dev", &env.bridge]);
    assert!(neighbour().contains(&b_mac), "{}", neighbour());

    // "b's address is at a's MAC", overriding, from a's own link-local address.
    spoof(&env, &a, &["na", "self", &a_link_local, &b6]);
    // "I am a default router", which b (not forwarding, so taking advertisements) would follow.
    spoof(&env, &a, &["ra", "self", &a_link_local]);
    std::thread::sleep(Duration::from_millis(300));
    let entry = neighbour();
    assert!(
        entry.contains(&b_mac),
        "the gateway now sends {b6}'s traffic elsewhere: {entry}"
    );
    let routes = stdout(&env.poc(&["exec", &b, "ip", "-6", "route"]));
    assert!(
        !routes.contains(&a_link_local),
        "b took a as its router: {routes}"
    );
    assert!(env.poc(&["rm", "-f", &a, &b]).status.success());
    env.assert_clean();
}
