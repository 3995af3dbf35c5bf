//! Networking as users meet it: container to container and to the gateway over the bridge, NAT to a
//! simulated upstream host (a network namespace this test creates), published ports, addresses under
//! concurrency, forged sources and unasked-for inbound traffic stopped at the bridge, and nothing left
//! after a failure or a removal. Traffic stays on this machine.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::net::{
    address_of, attacker, bridge_mac, heard_in, http_get, inspect, mac_of, spoof, test_port,
    Upstream,
};
use common::{assert_error, stderr, stdout, Env};

fn gateway_of(env: &Env) -> String {
    env.subnet.replace(".0/24", ".1").replace(".0/29", ".1")
}

/// An HTTP server in a container: busybox httpd serving one page.
fn web_server(env: &Env, extra: &[&str], page: &str) -> String {
    let script =
        format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["busybox", "sh", "-c", &script]);
    let id = env.run_detached(&args);
    std::thread::sleep(Duration::from_millis(300));
    id
}

#[test]
fn containers_reach_each_other_and_the_gateway_over_the_bridge() {
    let env = Env::with_busybox();
    let a = env.run_detached(&["--name", "a", "busybox", "sleep", "60"]);
    let a_ip = address_of(&env, &a);
    let gw = gateway_of(&env);
    let out = env.poc(&["run", "--rm", "busybox", "sh", "-c", &format!("ping -c1 -W2 {a_ip} && ping -c1 -W2 {gw} && ip route && grep -c nameserver /etc/resolv.conf")]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(
        text.contains(&format!("default via {gw} dev eth0")),
        "{text}"
    );
    assert!(!text.contains("127.0.0.53"));
    let hosts = stdout(&env.poc(&["exec", "a", "cat", "/etc/hosts"]));
    assert!(
        hosts.contains(&format!("{a_ip}\t{} a", &a[..12])),
        "{hosts}"
    );
    let net: serde_json::Value =
        serde_json::from_slice(&env.poc(&["network", "inspect"]).stdout).unwrap();
    assert_eq!(net["Name"], "bridge");
    assert_eq!(net["Bridge"], env.bridge.as_str());
    assert_eq!(net["Exists"], true);
    assert_eq!(net["Containers"][0]["IPAddress"], a_ip.as_str());
    assert_error(&env.poc(&["network", "rm"]), 125, "in use");
    assert!(env.poc(&["rm", "-f", "a"]).status.success());
    env.assert_clean();
}

#[test]
fn nat_hides_the_container_behind_the_hosts_address() {
    let env = Env::with_busybox();
    let upstream = Upstream::v4();
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = upstream.within(move || {
        let listener = TcpListener::bind("0.0.0.0:9000").unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, peer) = listener.accept().unwrap();
        let mut text = String::new();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = conn.read_to_string(&mut text);
        (peer.ip(), text)
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let out = env.poc(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("echo through-nat | nc -w 5 {} 9000", upstream.ip),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (peer, text) = server.join().unwrap();
    assert_eq!(text.trim(), "through-nat");
    assert_eq!(
        peer, upstream.host_ip,
        "the upstream sees the host's address, not the container's"
    );
    env.assert_clean();
}

#[test]
fn published_ports_are_reached_from_the_host_and_from_another_netns() {
    let env = Env::with_busybox();
    let upstream = Upstream::v4();
    let port = test_port(1);
    let id = web_server(&env, &["-p", &format!("{port}:80")], "published-page");
    let gw: Ipv4Addr = gateway_of(&env).parse().unwrap();
    assert!(
        http_get(SocketAddr::from((gw, port))).contains("published-page"),
        "from the host itself"
    );
    let host_ip = upstream.host_ip;
    let from_outside = upstream
        .within(move || http_get(SocketAddr::from((host_ip, port))))
        .join()
        .unwrap();
    assert!(
        from_outside.contains("published-page"),
        "from another namespace: {from_outside}"
    );
    assert_eq!(
        inspect(&env, &id)["NetworkSettings"]["Ports"][0],
        format!("0.0.0.0:{port}->80/tcp")
    );

    // The same host port cannot be published twice; the refused container leaves nothing.
    let out = env.poc(&["run", "-d", "-p", &format!("{port}:81"), "busybox", "true"]);
    assert_error(&out, 125, "already published");
    assert_eq!(env.container_ids().len(), 1);

    assert!(env.poc(&["rm", "-f", &id]).status.success());
    let rules = Command::new("nft")
        .args(["list", "table", "ip", &format!("poc-{}", env.bridge)])
        .output()
        .unwrap();
    assert!(
        !stdout(&rules).contains("dnat to"),
        "the port's rules left with the container: {}",
        stdout(&rules)
    );
    env.assert_clean();
}

#[test]
fn published_ports_answer_on_localhost_and_poc_port_lists_them() {
    let env = Env::with_busybox();
    let port = test_port(3);
    let udp = test_port(4);
    let id = web_server(
        &env,
        &[
            "-p",
            &format!("{port}:80"),
            "-p",
            "127.0.0.1::80",
            "-p",
            &format!("{udp}-{}:90-91/udp", udp + 1),
        ],
        "localhost-page",
    );
    assert!(
        http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).contains("localhost-page"),
        "curl http://127.0.0.1:{port}/ from the host"
    );
    let listed = stdout(&env.poc(&["port", &id]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 4, "{listed}");
    assert_eq!(lines[0], format!("80/tcp -> 0.0.0.0:{port}"));
    assert_eq!(lines[2], format!("90/udp -> 0.0.0.0:{udp}"));
    assert_eq!(lines[3], format!("91/udp -> 0.0.0.0:{}", udp + 1));
    // The port poc picked for `127.0.0.1::80`, on localhost only.
    let picked: u16 = lines[1]
        .strip_prefix("80/tcp -> 127.0.0.1:")
        .unwrap_or_else(|| panic!("{listed}"))
        .parse()
        .unwrap();
    assert!(picked >= 49153, "{listed}");
    assert!(http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, picked))).contains("localhost-page"));
    let both = stdout(&env.poc(&["port", &id, "80"]));
    assert_eq!(
        both,
        format!("0.0.0.0:{port}\n127.0.0.1:{picked}\n"),
        "port CONTAINER 80"
    );
    assert_error(
        &env.poc(&["port", &id, "81/udp"]),
        125,
        "no public port '81/udp'",
    );
    assert_error(&env.poc(&["port", "nosuch"]), 125, "no such container");
    // ps shows them as Docker's does, in its table and its JSON.
    let table = stdout(&env.poc(&["ps"]));
    let row = table
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(&format!(
            "0.0.0.0:{port}->80/tcp, 127.0.0.1:{picked}->80/tcp, 0.0.0.0:{udp}->90/udp"
        )),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&env.poc(&["ps", "--format", "json"]).stdout).unwrap();
    let listed_ports = json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .map(|c| c["ports"].clone())
        .unwrap();
    assert_eq!(listed_ports[0], format!("0.0.0.0:{port}->80/tcp"), "{json}");

    // What Docker accepts and poc does not: one line each, nothing made.
    for (args, needle) in [
        (vec!["-p", "8000-8001:80"], "differ in length"),
        (vec!["-p", "70000:80"], "is not a port"),
        (vec!["-P"], "publish-all"),
    ] {
        let mut full = vec!["run", "-d"];
        full.extend(args);
        full.extend(["busybox", "true"]);
        assert_error(&env.poc(&full), 125, needle);
    }
    // A range that collides with a published port is refused whole.
    let out = env.poc(&[
        "run",
        "-d",
        "-p",
        &format!("{}-{port}:79-80", port - 1),
        "busybox",
        "true",
    ]);
    assert_error(&out, 125, "already published");
    assert_eq!(env.container_ids().len(), 1);

    assert!(env.poc(&["rm", "-f", &id]).status.success());
    assert_eq!(stdout(&env.poc(&["port", &id])), "", "a removed container");
    env.assert_clean();
}

#[test]
fn a_container_cannot_reach_the_hosts_loopback_through_the_bridge() {
    // route_localnet on the bridge lets the host's localhost connections out to a container; the
    // same setting would let a container's packets to 127.0.0.1 in, to services the host keeps on
    // its loopback. A container with CAP_NET_RAW sends them with its own, valid, sources.
    let env = Env::with_busybox();
    let id = attacker(&env);
    assert_eq!(
        common::read_trimmed(std::path::Path::new(&format!(
            "/proc/sys/net/ipv4/conf/{}/route_localnet",
            env.bridge
        ))),
        "1",
        "the bridge lets loopback sources out (what makes localhost publishing work)"
    );
    let port = test_port(5);
    let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = address_of(&env, &id);
    let gateway = gateway_of(&env);
    let bridge = bridge_mac(&env);
    let port_text = port.to_string();
    spoof(
        &env,
        &id,
        &[
            "udp",
            "self",
            &bridge,
            &me,
            "127.0.0.1",
            &port_text,
            "to-loopback",
        ],
    );
    // The same frame to the gateway's address arrives: the path works, only 127.0.0.0/8 is stopped.
    spoof(
        &env,
        &id,
        &[
            "udp",
            "self",
            &bridge,
            &me,
            &gateway,
            &port_text,
            "to-gateway",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heard = Vec::new();
    while Instant::now() < deadline && !heard.iter().any(|h| h == "to-gateway") {
        let mut buf = [0u8; 256];
        if let Ok(n) = socket.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(heard.iter().any(|h| h == "to-gateway"), "{heard:?}");
    assert!(!heard.iter().any(|h| h == "to-loopback"), "{heard:?}");
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}

#[test]
fn fifty_concurrent_runs_get_distinct_addresses_and_leave_nothing() {
    let env = Env::with_busybox();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| s.spawn(|| env.run_detached(&["busybox", "sleep", "3600"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = ids.iter().map(|id| address_of(&env, id)).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 50, "every container has its own address");
    let attached = std::fs::read_dir(format!("/sys/class/net/{}/brif", env.bridge))
        .unwrap()
        .count();
    assert_eq!(attached, 50);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    assert!(env.poc(&rm).status.success());
    env.assert_clean();
}

#[test]
fn an_exhausted_address_pool_is_refused_and_leaves_nothing_half_made() {
    let mut env = Env::with_busybox();
    env.subnet = env.subnet.replace(".0/24", ".0/29");
    // A /29 has five addresses for containers besides the network, gateway and broadcast ones.
    let ids: Vec<String> = (0..5)
        .map(|_| env.run_detached(&["busybox", "sleep", "60"]))
        .collect();
    let out = env.poc(&["run", "-d", "busybox", "sleep", "60"]);
    assert_error(&out, 125, "exhausted");
    assert_eq!(
        env.container_ids().len(),
        5,
        "the refused container left no state"
    );
    assert_eq!(
        std::fs::read_dir(format!("/sys/class/net/{}/brif", env.bridge))
            .unwrap()
            .count(),
        5
    );
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    assert!(env.poc(&rm).status.success());
    env.assert_clean();
    // Addresses come back: the pool serves again.
    let id = env.run_detached(&["busybox", "true"]);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
}

#[test]
fn none_and_host_networks_and_dns() {
    let env = Env::with_busybox();
    let out = env.poc(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net",
    ]);
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), ["lo"]);
    // Other tests of this file create and remove veths in the host's
    // namespace meanwhile: only the links there both before and after the
    // run must have been seen.
    let host_links = || -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = host_links();
    let out = env.poc(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net",
    ]);
    let after = host_links();
    let listing = stdout(&out);
    let seen: Vec<&str> = listing.split_whitespace().collect();
    let stable: Vec<&String> = before.iter().filter(|l| after.contains(l)).collect();
    assert!(stable.iter().any(|l| *l != "lo"), "{before:?}");
    assert!(
        stable.iter().all(|l| seen.contains(&l.as_str())),
        "{seen:?}"
    );
    let out = env.poc(&[
        "run",
        "--rm",
        "--dns",
        "198.18.0.53",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(stdout(&out).contains("nameserver 198.18.0.53"));
    assert_error(
        &env.poc(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-p",
            "80:80",
            "busybox",
            "true",
        ]),
        125,
        "--publish needs a bridge network",
    );
    assert_error(
        &env.poc(&["run", "--rm", "-p", "99999:80", "busybox", "true"]),
        125,
        "--publish",
    );
    env.assert_clean();
}

/// The MAC poc gives a container: 02:42 and its address.
/// The source checks in poc's bridge-family table: its `sources` set.
fn source_checks(env: &Env) -> String {
    let out = Command::new("nft")
        .args([
            "list",
            "set",
            "bridge",
            &format!("poc-{}", env.bridge),
            "sources",
        ])
        .output()
        .unwrap();
    stdout(&out)
}

#[test]
fn a_container_cannot_send_with_another_containers_address() {
    let env = Env::with_busybox();
    let upstream = Upstream::v4();
    let a = attacker(&env);
    let b = env.run_detached(&["busybox", "sleep", "60"]);
    let (a_ip, b_ip) = (address_of(&env, &a), address_of(&env, &b));
    let (gateway_mac, up) = (bridge_mac(&env), upstream.ip.to_string());
    let b_mac = mac_of(&b_ip);
    // b's address with a's MAC, then b's address and MAC both (all a container could steal).
    let forged = [
        ("self", "forged-address"),
        (b_mac.as_str(), "forged-address-and-mac"),
    ];
    let heard = heard_in(
        upstream.path(),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9000)),
        "own-address",
        || {
            for (mac, text) in forged {
                spoof(
                    &env,
                    &a,
                    &["udp", mac, &gateway_mac, &b_ip, &up, "9000", text],
                );
            }
            spoof(
                &env,
                &a,
                &[
                    "udp",
                    "self",
                    &gateway_mac,
                    &a_ip,
                    &up,
                    "9000",
                    "own-address",
                ],
            );
        },
    );
    assert!(heard.contains(&"own-address".to_string()), "{heard:?}");
    for (_, text) in forged {
        assert!(
            !heard.contains(&text.to_string()),
            "a datagram from a with {b_ip}'s address as source left the bridge: {heard:?}"
        );
    }
    assert!(env.poc(&["rm", "-f", &a, &b]).status.success());
    env.assert_clean();
}

#[test]
fn a_frame_with_a_forged_source_mac_is_dropped() {
    let env = Env::with_busybox();
    let upstream = Upstream::v4();
    let a = attacker(&env);
    let a_ip = address_of(&env, &a);
    let (gateway_mac, up) = (bridge_mac(&env), upstream.ip.to_string());
    let forged_mac = "02:42:de:ad:be:ef";
    let heard = heard_in(
        upstream.path(),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9000)),
        "own-mac",
        || {
            spoof(
                &env,
                &a,
                &[
                    "udp",
                    forged_mac,
                    &gateway_mac,
                    &a_ip,
                    &up,
                    "9000",
                    "forged-mac",
                ],
            );
            spoof(
                &env,
                &a,
                &["udp", "self", &gateway_mac, &a_ip, &up, "9000", "own-mac"],
            );
        },
    );
    assert!(heard.contains(&"own-mac".to_string()), "{heard:?}");
    assert!(
        !heard.contains(&"forged-mac".to_string()),
        "a frame from {forged_mac} left the bridge: {heard:?}"
    );
    assert!(env.poc(&["rm", "-f", &a]).status.success());
    env.assert_clean();
}

#[test]
fn a_forged_arp_reply_does_not_change_the_gateways_neighbour_entry() {
    let env = Env::with_busybox();
    let a = attacker(&env);
    let b = env.run_detached(&["busybox", "sleep", "60"]);
    let b_ip = address_of(&env, &b);
    // b talks to the gateway, so the host has a neighbour entry for it.
    let out = env.poc(&["exec", &b, "ping", "-c1", "-W2", &gateway_of(&env)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let neighbour = || {
        let out = Command::new("ip")
            .args(["neigh", "show", &b_ip, "dev", &env.bridge])
            .output()
            .unwrap();
        stdout(&out)
    };
    assert!(neighbour().contains(&mac_of(&b_ip)), "{}", neighbour());
    // "b's address is at a's MAC", gratuitous: Linux takes such a reply at once, without waiting.
    spoof(&env, &a, &["garp", "self", &b_ip]);
    std::thread::sleep(Duration::from_millis(300));
    let entry = neighbour();
    assert!(
        entry.contains(&mac_of(&b_ip)),
        "the gateway now sends {b_ip}'s traffic elsewhere: {entry}"
    );
    assert!(env.poc(&["rm", "-f", &a, &b]).status.success());
    env.assert_clean();
}

/// The interface group of a link, as `ip` shows it.
fn group_of(link: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", link])
        .output()
        .unwrap();
    let text = stdout(&out);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "group");
    words.next().unwrap_or_default().to_string()
}

fn wait_gone(link: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new("/sys/class/net").join(link).exists() {
        assert!(Instant::now() < deadline, "{link} is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_containers_source_checks_are_its_veth_and_go_with_it() {
    let env = Env::with_busybox();
    let veth = |id: &str| format!("poc{}", &id[..12]);
    let a = env.run_detached(&["busybox", "sleep", "60"]);
    let a_ip = address_of(&env, &a);
    let group = u32::from(a_ip.parse::<Ipv4Addr>().unwrap()).to_string();
    // The veth is in the group of its address, which the table lets send as that address only.
    assert_eq!(group_of(&veth(&a)), group);
    let element = format!("{group} . {} . {a_ip}", mac_of(&a_ip));
    let checks = source_checks(&env);
    assert!(checks.contains(&element), "{element} not in {checks}");
    let out = env.poc(&["exec", &a, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(stdout(&out).trim(), mac_of(&a_ip));

    // Crashed (its monitor and init SIGKILLed): the veth goes with the namespace, and `rm -f`
    // leaves nothing either.
    let state_path = env
        .state_root()
        .join("containers")
        .join(&a)
        .join("state.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_path).unwrap()).unwrap();
    for who in ["monitor", "init"] {
        let pid = nix::unistd::Pid::from_raw(state[who]["pid"].as_i64().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    wait_gone(&veth(&a));
    assert!(env.poc(&["rm", "-f", &a]).status.success());
    env.assert_clean();

    // The next holder of the address gets the same element: the table does not grow.
    let b = env.run_detached(&["busybox", "sleep", "60"]);
    assert_eq!(address_of(&env, &b), a_ip);
    assert_eq!(group_of(&veth(&b)), group);
    assert_eq!(source_checks(&env), checks);
    assert!(env.poc(&["stop", "-t", "1", &b]).status.success());
    wait_gone(&veth(&b));
    assert!(env.poc(&["rm", &b]).status.success());
    env.assert_clean();

    // `poc network rm` takes the bridge's table with it.
    assert!(env.poc(&["network", "rm"]).status.success());
    let tables = stdout(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap(),
    );
    assert!(!tables.contains(&format!("poc-{}", env.bridge)), "{tables}");
}

#[test]
fn only_replies_and_published_ports_are_forwarded_into_the_bridge() {
    let env = Env::with_busybox();
    let upstream = Upstream::v4();
    upstream.route_to(&env.subnet);
    let port = test_port(2);
    // httpd on 81, not published, and on 80, published on the host's `port`.
    let script = "mkdir -p /www && echo forwarded-page > /www/index.html && httpd -p 81 -h /www \
                  && exec httpd -f -p 80 -h /www";
    let id = env.run_detached(&["-p", &format!("{port}:80"), "busybox", "sh", "-c", script]);
    let address: Ipv4Addr = address_of(&env, &id).parse().unwrap();
    let host_ip = upstream.host_ip;
    let published = upstream
        .within(move || http_get(SocketAddr::from((host_ip, port))))
        .join()
        .unwrap();
    assert!(published.contains("forwarded-page"), "{published}");
    upstream.cannot_connect(address.into(), &[81, 80]);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    env.assert_clean();
}
