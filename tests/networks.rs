//! Named networks as users meet them: `poc network create|ls|inspect|rm`, containers that find each
//! other by name on one network, networks that cannot reach each other, and an unknown network that
//! leaves nothing behind. Each Env has its own store; named subnets come from `Env::named_subnet`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::net::address_of;
use common::{assert_error, stderr, stdout, Env};

fn create(env: &Env, args: &[&str]) -> String {
    let mut full = vec!["network", "create"];
    full.extend_from_slice(args);
    let out = env.poc(&full);
    assert!(out.status.success(), "{full:?}: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    id
}

fn inspect_network(env: &Env, name: &str) -> serde_json::Value {
    let out = env.poc(&["network", "inspect", name]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hosts_of(env: &Env, container: &str) -> String {
    let out = env.poc(&["exec", container, "cat", "/etc/hosts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// One ping from `container` to `target` (a name or an address), waiting at most 2 s for the reply.
fn pings(env: &Env, container: &str, target: &str) -> bool {
    env.poc(&["exec", container, "ping", "-c", "1", "-W", "2", target])
        .status
        .success()
}

fn nft_tables() -> String {
    stdout(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap(),
    )
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn a_named_network_is_created_listed_inspected_and_removed() {
    let env = Env::with_busybox();
    // The IPv6 network below switches IPv6 forwarding on.
    let _forwarding = common::Ipv6ForwardingRestored::hold();
    let subnet = env.named_subnet();
    let id = create(&env, &["web", "--subnet", &subnet]);

    let net = inspect_network(&env, "web");
    assert_eq!(net["Id"], id.as_str());
    assert_eq!(net["Subnet"], subnet.as_str());
    assert_eq!(net["Gateway"], subnet.replace(".0/24", ".1").as_str());
    assert_eq!(net["Exists"], true);
    let bridge = net["Bridge"].as_str().unwrap().to_string();
    assert_eq!(bridge, format!("pocb{}", &id[..10]));
    assert!(link_exists(&bridge));

    // The record is private, in a private directory of the store.
    let records = env.store().join("networks");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&records), 0o700);
    assert_eq!(mode(&records.join("web.json")), 0o600);

    let table = stdout(&env.poc(&["network", "ls"]));
    let row = table.lines().find(|l| l.contains(" web ")).expect(&table);
    assert!(
        row.starts_with(&id[..12]) && row.contains(&subnet),
        "{table}"
    );
    assert!(table.lines().any(|l| l.contains(" bridge ")), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&env.poc(&["network", "ls", "--format", "json"]).stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bridge", "web"]);

    // Refusals: one line, exit 125, nothing made.
    for bad in ["-x", "a b", "a/b", "bridge", "host", "none"] {
        let out = env.poc(&["network", "create", "--", bad]);
        assert_eq!(out.status.code(), Some(125), "{bad}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{bad}");
    }
    assert_error(
        &env.poc(&["network", "create", "web"]),
        125,
        "network with name web already exists",
    );
    assert_error(
        &env.poc(&[
            "network",
            "create",
            "wide",
            "--ipv6",
            "--subnet",
            "fd42:77::/48",
        ]),
        125,
        "the prefix must be from /64 to /120",
    );
    let inside = subnet.replace(".0/24", ".128/25");
    assert_error(
        &env.poc(&["network", "create", "other", "--subnet", &inside]),
        125,
        "overlaps network web",
    );
    assert_error(
        &env.poc(&["network", "create", "other", "--ipv6"]),
        125,
        "IPv6 --subnet",
    );
    assert_eq!(env.network_records().len(), 1);

    // An IPv6 subnet is kept and shown; without --subnet the IPv4 one is the first free /24 of
    // poc's range.
    create(&env, &["six", "--ipv6", "--subnet", "fd42:77:1::/64"]);
    let six = inspect_network(&env, "six");
    assert_eq!(six["Subnet6"], "fd42:77:1::/64");
    let auto: ipnetwork::Ipv4Network = six["Subnet"].as_str().unwrap().parse().unwrap();
    assert_eq!(auto.prefix(), 24);
    assert!("10.78.0.0/15"
        .parse::<ipnetwork::Ipv4Network>()
        .unwrap()
        .contains(auto.network()));
    let six_bridge = six["Bridge"].as_str().unwrap().to_string();
    // As docker network rm: one network that cannot go does not keep the others.
    let out = env.poc(&["network", "rm", "nowhere", "six"]);
    assert_error(&out, 125, "network nowhere not found");
    assert_eq!(stdout(&out).trim(), "six");
    assert!(!link_exists(&six_bridge));

    // Refused while a container uses it; then everything goes: bridge, both tables, leases, record.
    env.run_detached(&["--name", "c", "--network", "web", "busybox", "sleep", "60"]);
    assert_eq!(inspect_network(&env, "web")["Containers"][0]["Name"], "c");
    assert_error(&env.poc(&["network", "rm", "web"]), 125, "in use");
    assert!(env.poc(&["rm", "-f", "c"]).status.success());
    let tables_before = nft_tables();
    assert!(
        tables_before.contains(&format!("table ip poc-{bridge}")),
        "{tables_before}"
    );
    assert!(
        tables_before.contains(&format!("table bridge poc-{bridge}")),
        "{tables_before}"
    );
    let out = env.poc(&["network", "rm", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "web");
    assert!(!link_exists(&bridge));
    assert!(!nft_tables().contains(&format!("poc-{bridge}")));
    assert!(!env.state_root().join("networks").join(&bridge).exists());
    assert_error(
        &env.poc(&["network", "inspect", "web"]),
        125,
        "network web not found",
    );
    assert_error(
        &env.poc(&["network", "rm", "web"]),
        125,
        "network web not found",
    );
    env.assert_clean();
}

#[test]
fn containers_on_a_named_network_find_each_other_by_name() {
    let env = Env::with_busybox();
    let subnet = env.named_subnet();
    create(&env, &["app", "--subnet", &subnet]);
    let a = env.run_detached(&["--name", "a", "--network", "app", "busybox", "sleep", "120"]);
    let b = env.run_detached(&["--name", "b", "--network", "app", "busybox", "sleep", "120"]);
    let (a_ip, b_ip) = (address_of(&env, "a"), address_of(&env, "b"));
    assert!(pings(&env, "b", "a"), "b cannot ping a by name");
    assert!(pings(&env, "a", "b"), "a cannot ping b by name");
    let hosts = hosts_of(&env, "a");
    assert!(
        hosts.contains(&format!("{b_ip}\tb {}\n", &b[..12])),
        "{hosts}"
    );
    assert!(!hosts.contains("\ta "), "a is not its own peer: {hosts}");
    assert!(hosts_of(&env, "b").contains(&format!("{a_ip}\ta {}\n", &a[..12])));
    let inode = stdout(&env.poc(&["exec", "a", "stat", "-c", "%i", "/etc/hosts"]));

    // A third member with a hostname of its own: the others learn all its names.
    let c = env.run_detached(&[
        "--name",
        "c",
        "--hostname",
        "see",
        "--network",
        "app",
        "busybox",
        "sleep",
        "120",
    ]);
    let c_ip = address_of(&env, "c");
    let hosts = hosts_of(&env, "a");
    assert!(
        hosts.contains(&format!("{c_ip}\tc see {}\n", &c[..12])),
        "{hosts}"
    );
    assert!(pings(&env, "a", "see"), "a cannot ping c by its hostname");
    assert!(pings(&env, "c", "b"), "c cannot ping b by name");
    assert!(hosts_of(&env, "c").contains(&format!("{a_ip}\ta ")));

    // It stops: gone from the others' files, which are the same files (the bind mount holds).
    assert!(env.poc(&["stop", "-t", "1", "c"]).status.success());
    let hosts = hosts_of(&env, "a");
    assert!(!hosts.contains("see"), "{hosts}");
    assert!(hosts.contains(&format!("{b_ip}\tb ")), "{hosts}");
    assert!(!pings(&env, "a", "see"), "a still resolves the stopped c");
    assert_eq!(
        stdout(&env.poc(&["exec", "a", "stat", "-c", "%i", "/etc/hosts"])),
        inode
    );
    assert!(env.poc(&["rm", "c"]).status.success());
    // Removed while running: gone too.
    assert!(env.poc(&["rm", "-f", "b"]).status.success());
    let hosts = hosts_of(&env, "a");
    assert!(!hosts.contains(&b[..12]), "{hosts}");
    assert!(!hosts.contains("# other containers"), "{hosts}");

    assert!(env.poc(&["rm", "-f", "a"]).status.success());
    assert!(env.poc(&["network", "rm", "app"]).status.success());
    env.assert_clean();
}

#[test]
fn a_member_cannot_plant_names_in_the_others_hosts_files() {
    // Root in a member can write its /etc/hostname and /etc/hosts (bound from poc's state
    // directory): neither may reach the other members' files, nor stop them from being kept.
    let env = Env::with_busybox();
    let subnet = env.named_subnet();
    create(&env, &["lan", "--subnet", &subnet]);
    env.run_detached(&[
        "--name",
        "evil",
        "--network",
        "lan",
        "busybox",
        "sleep",
        "120",
    ]);
    let plant = "printf 'evil\\n10.99.99.99 victim-db\\n' >/etc/hostname; \
                 head -c 2000000 /dev/zero >>/etc/hosts; printf '\\377\\376' >>/etc/hosts";
    let out = env.poc(&["exec", "evil", "sh", "-c", plant]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.run_detached(&[
        "--name",
        "good",
        "--network",
        "lan",
        "busybox",
        "sleep",
        "120",
    ]);
    let third = env.run_detached(&[
        "--name",
        "third",
        "--network",
        "lan",
        "busybox",
        "sleep",
        "120",
    ]);
    let hosts = hosts_of(&env, "good");
    assert!(!hosts.contains("victim-db"), "{hosts}");
    assert!(
        hosts.contains("\tevil "),
        "evil is named as poc named it: {hosts}"
    );
    assert!(
        hosts.contains(&format!("\tthird {}", &third[..12])),
        "{hosts}"
    );
    assert!(pings(&env, "good", "third"));
    assert!(env
        .poc(&["rm", "-f", "evil", "good", "third"])
        .status
        .success());
    assert!(env.poc(&["network", "rm", "lan"]).status.success());
    env.assert_clean();
}

#[test]
fn a_port_published_on_a_named_network_answers_and_is_taken_for_every_network() {
    let env = Env::with_busybox();
    let subnet = env.named_subnet();
    create(&env, &["pub", "--subnet", &subnet]);
    let port = common::net::test_port(7);
    let published = format!("{port}:80");
    let script =
        "mkdir -p /www && echo named-page > /www/index.html && exec httpd -f -p 80 -h /www";
    let id = env.run_detached(&[
        "--network",
        "pub",
        "-p",
        &published,
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let page = common::net::http_get(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(page.contains("named-page"), "nothing on 127.0.0.1:{port}");
    assert_eq!(
        stdout(&env.poc(&["port", &id])),
        format!("80/tcp -> 0.0.0.0:{port}\n")
    );
    // The same host port on the default network: refused, nothing made.
    let out = env.poc(&["run", "-d", "-p", &published, "busybox", "true"]);
    assert_error(&out, 125, "already published");
    assert_eq!(env.container_ids().len(), 1);
    assert!(env.poc(&["rm", "-f", &id]).status.success());
    assert!(env.poc(&["network", "rm", "pub"]).status.success());
    env.assert_clean();
}

#[test]
fn the_default_network_names_no_other_containers() {
    let env = Env::with_busybox();
    env.run_detached(&["--name", "a", "busybox", "sleep", "60"]);
    env.run_detached(&["--name", "b", "busybox", "sleep", "60"]);
    let hosts = hosts_of(&env, "b");
    // (Word by word: b's own short id may begin with an "a".)
    let names_a = hosts
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|name| name == "a"));
    assert!(!names_a, "{hosts}");
    assert!(env.poc(&["rm", "-f", "a", "b"]).status.success());
    env.assert_clean();
}

#[test]
fn other_networks_cannot_reach_a_named_network() {
    let env = Env::with_busybox();
    let (one, two) = (env.named_subnet(), env.named_subnet());
    create(&env, &["one", "--subnet", &one]);
    create(&env, &["two", "--subnet", &two]);
    env.run_detached(&["--name", "a", "--network", "one", "busybox", "sleep", "120"]);
    env.run_detached(&["--name", "b", "--network", "one", "busybox", "sleep", "120"]);
    env.run_detached(&["--name", "x", "--network", "two", "busybox", "sleep", "120"]);
    env.run_detached(&["--name", "d", "busybox", "sleep", "120"]);
    let (a_ip, b_ip) = (address_of(&env, "a"), address_of(&env, "b"));
    let (x_ip, d_ip) = (address_of(&env, "x"), address_of(&env, "d"));
    // On one network, by address too: what the others' failures are measured against.
    assert!(
        pings(&env, "a", &b_ip),
        "a cannot reach b on its own network"
    );
    for (from, to) in [("x", &a_ip), ("a", &x_ip), ("d", &a_ip), ("a", &d_ip)] {
        assert!(
            !pings(&env, from, to),
            "{from} reaches {to} on another network"
        );
    }
    // Names of other networks' containers are unknown.
    assert!(!hosts_of(&env, "x").contains("\ta "));
    assert!(env.poc(&["rm", "-f", "a", "b", "x", "d"]).status.success());
    assert!(env.poc(&["network", "rm", "one", "two"]).status.success());
    env.assert_clean();
}

#[test]
fn running_on_an_unknown_network_leaves_nothing() {
    let env = Env::with_busybox();
    for detach in [false, true] {
        let mut args = vec!["run", "--rm", "--name", "n", "--network", "nosuch"];
        if detach {
            args = vec!["run", "-d", "--name", "n", "--network", "nosuch"];
        }
        args.extend_from_slice(&["busybox", "true"]);
        assert_error(&env.poc(&args), 125, "network nosuch not found");
    }
    assert_error(
        &env.poc(&["run", "--rm", "--network", "bad name", "busybox", "true"]),
        125,
        "not a network name",
    );
    assert_error(
        &env.poc(&["network", "inspect", "nosuch"]),
        125,
        "network nosuch not found",
    );
    assert!(!env.state_root().join("networks").exists());
    env.assert_clean();
}
