//! poc's `ip` table for one bridge, and its `ip6` twin on a network with an IPv6 subnet: masquerade
//! for the bridge's subnet, the DNAT rules of published ports, what may be forwarded into the bridge,
//! and (IPv4 only) what makes published ports answer on 127.0.0.1. Replaced whole in one batch.

use ipnetwork::{Ipv4Network, Ipv6Network};
use netlink_packet_core::NLM_F_CREATE;

use super::nf_tables::*;
use super::{Batch, Expr, NftError, Table};
use crate::network::{PortMapping, Published};

/// What poc's `ip` table for a bridge holds, and its `ip6` table when the network has `subnet6`.
pub struct NatTable {
    pub name: String,
    /// The bridge, whose forwarded traffic the tables' forward chains limit.
    pub bridge: String,
    pub subnet: Ipv4Network,
    pub subnet6: Option<Ipv6Network>,
    /// Published ports and the container addresses each leads to.
    pub ports: Vec<Published>,
}

// Priorities as `nft` names them.
const PRIORITY_RAW: i32 = -300;
const PRIORITY_DSTNAT: i32 = -100;
const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;

/// Where a family's header keeps what the rules look at.
struct Layout {
    family: u8,
    source: u32,
    destination: u32,
}

const IPV4: Layout = Layout {
    family: NFPROTO_IPV4,
    source: 12,
    destination: 16,
};
const IPV6: Layout = Layout {
    family: NFPROTO_IPV6,
    source: 8,
    destination: 24,
};

/// Where TCP and UDP headers keep the destination port.
const DESTINATION_PORT: u32 = 2;

/// Replaces poc's tables with exactly `table`: created if missing, emptied and refilled otherwise,
/// in one atomic batch (both families at once on a network with IPv6).
pub fn apply(table: &NatTable) -> Result<(), NftError> {
    let (batch, labels) = nat_batch(table);
    batch.commit(&labels)
}

/// The batch that [`apply`] commits, and the tables it names.
fn nat_batch(table: &NatTable) -> (Batch, String) {
    let mut batch = Batch::new();
    let v4 = Table {
        family: NFPROTO_IPV4,
        name: &table.name,
    };
    ip_table(&mut batch, v4, table);
    let mut labels = vec![v4.label()];
    if let Some(subnet6) = table.subnet6 {
        let v6 = Table {
            family: NFPROTO_IPV6,
            name: &table.name,
        };
        ip6_table(&mut batch, v6, table, subnet6);
        labels.push(v6.label());
    }
    (batch, labels.join(", "))
}

/// The `ip` table: masquerade, every published port, the forward chain and localhost's rules.
fn ip_table(batch: &mut Batch, t: Table, table: &NatTable) {
    replace_with_chains(batch, t);
    let (net, mask) = (
        table.subnet.network().octets(),
        table.subnet.mask().octets(),
    );
    batch.rule(t, "postrouting", &masquerade(&IPV4, &net, &mask));
    for p in &table.ports {
        let host_ip = p.port.host_ip.map(|ip| ip.octets().to_vec());
        publish(
            batch,
            t,
            &dnat(&IPV4, &p.port, host_ip, &p.address.octets()),
        );
    }
    forward_into(batch, t, &table.bridge);
    localhost(batch, t, &table.bridge);
}

/// The `ip6` table: as the `ip` one, without localhost. A port published on an IPv4 host address
/// stays IPv4-only; one on all addresses is reachable over IPv6 too, as with Docker.
fn ip6_table(batch: &mut Batch, t: Table, table: &NatTable, subnet6: Ipv6Network) {
    replace_with_chains(batch, t);
    let (net, mask) = (subnet6.network().octets(), subnet6.mask().octets());
    batch.rule(t, "postrouting", &masquerade(&IPV6, &net, &mask));
    for p in table.ports.iter().filter(|p| p.port.host_ip.is_none()) {
        if let Some(address6) = p.address6 {
            publish(batch, t, &dnat(&IPV6, &p.port, None, &address6.octets()));
        }
    }
    forward_into(batch, t, &table.bridge);
}

/// One family's table, emptied (created first if missing: add-then-delete-then-add is idempotent
/// whether or not it exists) and given its chains.
fn replace_with_chains(batch: &mut Batch, t: Table) {
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE);
    batch.table(NFT_MSG_DELTABLE, t, 0);
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE);
    let post = (NF_INET_POST_ROUTING, PRIORITY_SRCNAT);
    batch.base_chain(t, "postrouting", "nat", post.0, post.1);
    batch.base_chain(t, "prerouting", "nat", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT);
    batch.base_chain(t, "output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT);
    batch.base_chain(t, "forward", "filter", NF_INET_FORWARD, PRIORITY_FILTER);
}

/// `ip saddr SUBNET ip daddr != SUBNET masquerade` (or `ip6 ...`).
fn masquerade(layout: &Layout, net: &[u8], mask: &[u8]) -> Vec<Expr> {
    let len = net.len() as u32;
    vec![
        Expr::load(NFT_PAYLOAD_NETWORK_HEADER, layout.source, len),
        Expr::Bitwise {
            mask: mask.to_vec(),
        },
        Expr::equals(net),
        Expr::load(NFT_PAYLOAD_NETWORK_HEADER, layout.destination, len),
        Expr::Bitwise {
            mask: mask.to_vec(),
        },
        Expr::differs(net),
        Expr::Masquerade,
    ]
}

/// A published port's DNAT, for packets from outside (prerouting) and from the host itself (output).
fn publish(batch: &mut Batch, t: Table, dnat: &[Expr]) {
    for chain in ["prerouting", "output"] {
        batch.rule(t, chain, dnat);
    }
}

/// `fib daddr type local [ip daddr HOST_IP] PROTO dport HOST_PORT dnat to ADDRESS:PORT`.
fn dnat(
    layout: &Layout,
    port: &PortMapping,
    host_ip: Option<Vec<u8>>,
    address: &[u8],
) -> Vec<Expr> {
    let mut exprs = vec![Expr::Fib, Expr::equals(&RTN_LOCAL.to_ne_bytes())];
    if let Some(host_ip) = host_ip {
        let len = host_ip.len() as u32;
        exprs.push(Expr::load(
            NFT_PAYLOAD_NETWORK_HEADER,
            layout.destination,
            len,
        ));
        exprs.push(Expr::equals(&host_ip));
    }
    exprs.extend([
        Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: NFT_REG_1,
        },
        Expr::equals(&[port.protocol.number()]),
        Expr::load(NFT_PAYLOAD_TRANSPORT_HEADER, DESTINATION_PORT, 2),
        Expr::equals(&port.host_port.to_be_bytes()),
        Expr::Immediate {
            reg: NFT_REG_1,
            data: address.to_vec(),
        },
        Expr::Immediate {
            reg: NFT_REG_2,
            data: port.container_port.to_be_bytes().to_vec(),
        },
        Expr::Dnat {
            family: layout.family,
        },
    ]);
    exprs
}

/// The forward chain: what the host routes into the bridge from elsewhere is only replies to the
/// containers' own connections and published ports (DNAT'd in prerouting); the rest is dropped.
/// Traffic between containers passes: routed through the gateway, or bridged and sent through this
/// hook by br_netfilter, it comes in and goes out on the bridge itself.
///
///     oifname != BRIDGE accept
///     iifname BRIDGE accept
///     ct state established,related accept
///     ct status dnat accept
///     drop
fn forward_into(batch: &mut Batch, t: Table, bridge: &str) {
    let name = Expr::ifname(bridge);
    let interface = |key| Expr::Meta {
        key,
        dreg: NFT_REG_1,
    };
    let any_bit = |mask: u32| {
        [
            Expr::Bitwise {
                mask: mask.to_ne_bytes().to_vec(),
            },
            Expr::differs(&[0; 4]),
        ]
    };
    let [state_mask, state_set] = any_bit(CT_STATE_ESTABLISHED_RELATED);
    let [status_mask, status_set] = any_bit(IPS_DST_NAT);
    let accept = || Expr::Verdict(NF_ACCEPT);
    let rules = [
        vec![interface(NFT_META_OIFNAME), Expr::differs(&name), accept()],
        vec![interface(NFT_META_IIFNAME), Expr::equals(&name), accept()],
        vec![
            Expr::Ct { key: NFT_CT_STATE },
            state_mask,
            state_set,
            accept(),
        ],
        vec![
            Expr::Ct { key: NFT_CT_STATUS },
            status_mask,
            status_set,
            accept(),
        ],
        vec![Expr::Verdict(NF_DROP)],
    ];
    for exprs in rules {
        batch.rule(t, "forward", &exprs);
    }
}

/// What makes published ports answer on the host's 127.0.0.1 (IPv4 only: the kernel never routes
/// ::1 out of the host): loopback sources leaving on the bridge masqueraded, and the guard against
/// containers' packets to 127.0.0.0/8.
fn localhost(batch: &mut Batch, t: Table, bridge: &str) {
    batch.base_chain(t, "guard", "filter", NF_INET_PRE_ROUTING, PRIORITY_RAW);
    batch.rule(t, "postrouting", &masquerade_localhost(bridge));
    batch.rule(t, "guard", &no_loopback_from(bridge));
}

/// The loopback network, 127.0.0.0/8: its first byte.
const LOOPBACK_NET: [u8; 4] = [127, 0, 0, 0];
const LOOPBACK_MASK: [u8; 4] = [255, 0, 0, 0];

/// `oifname BRIDGE ip saddr 127.0.0.0/8 masquerade`: a connection from the host to
/// 127.0.0.1:PUBLISHED, sent to a container by the output chain's DNAT, leaves from the gateway's
/// address (a container would answer 127.0.0.1 on its own loopback). The kernel lets a loopback
/// source out on the bridge because poc sets the bridge's `route_localnet`.
fn masquerade_localhost(bridge: &str) -> Vec<Expr> {
    let on_bridge = (NFT_META_OIFNAME, bridge);
    on_loopback_net(on_bridge, IPV4.source, Expr::Masquerade)
}

/// `iifname BRIDGE ip daddr 127.0.0.0/8 drop`, before conntrack and NAT: `route_localnet` on the
/// bridge would otherwise deliver a container's packet to 127.0.0.1 to the host's loopback-only
/// services (kube-proxy's CVE-2020-8558). Replies to the host's localhost connections carry the
/// gateway's address here; NAT turns it back into 127.0.0.1 after this hook.
fn no_loopback_from(bridge: &str) -> Vec<Expr> {
    let on_bridge = (NFT_META_IIFNAME, bridge);
    on_loopback_net(on_bridge, IPV4.destination, Expr::Verdict(NF_DROP))
}

/// `[io]ifname BRIDGE ip [sd]addr 127.0.0.0/8 VERDICT`.
fn on_loopback_net((key, bridge): (u32, &str), address: u32, then: Expr) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key,
            dreg: NFT_REG_1,
        },
        Expr::equals(&Expr::ifname(bridge)),
        Expr::load(NFT_PAYLOAD_NETWORK_HEADER, address, 4),
        Expr::Bitwise {
            mask: LOOPBACK_MASK.to_vec(),
        },
        Expr::equals(&LOOPBACK_NET),
        then,
    ]
}

/// Removes the tables in one batch; missing ones are fine.
pub fn remove(tables: &[Table]) -> Result<(), NftError> {
    let labels: Vec<String> = tables.iter().map(Table::label).collect();
    removal_batch(tables).commit(&labels.join(", "))
}

fn removal_batch(tables: &[Table]) -> Batch {
    let mut batch = Batch::new();
    for t in tables {
        batch.table(NFT_MSG_NEWTABLE, *t, NLM_F_CREATE);
        batch.table(NFT_MSG_DELTABLE, *t, 0);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::nft::assert_golden;

    /// The mappings of one `-p`, leading to `address`; a port left to poc gets one from 49153 up,
    /// as `prepare` would pick on an idle host.
    fn published(text: &str, address: &str, address6: Option<&str>) -> Vec<Published> {
        let spec = crate::network::parse_ports(text).unwrap();
        spec.0
            .into_iter()
            .enumerate()
            .map(|(i, port): (usize, PortMapping)| Published {
                port: PortMapping {
                    host_port: if port.host_port == 0 {
                        49153 + i as u16
                    } else {
                        port.host_port
                    },
                    ..port
                },
                address: address.parse().unwrap(),
                address6: address6.map(|a| a.parse().unwrap()),
            })
            .collect()
    }

    fn nat_table(name: &str, bridge: &str, subnet: &str, subnet6: Option<&str>) -> NatTable {
        NatTable {
            name: name.into(),
            bridge: bridge.into(),
            subnet: subnet.parse().unwrap(),
            subnet6: subnet6.map(|s| s.parse().unwrap()),
            ports: Vec::new(),
        }
    }

    #[test]
    fn the_default_networks_table_matches_its_golden_batch() {
        let (batch, labels) = nat_batch(&nat_table("poc-poc0", "poc0", "10.77.0.0/16", None));
        assert_eq!(labels, "ip poc-poc0");
        assert_golden("default", batch);
    }

    #[test]
    fn a_named_networks_table_with_published_ports_matches_its_golden_batch() {
        let mut t = nat_table("poc-pocb0123456789", "pocb0123456789", "10.78.3.0/24", None);
        t.ports.extend(published("8080:80", "10.78.3.2", None));
        t.ports
            .extend(published("127.0.0.1:5353:53/udp", "10.78.3.2", None));
        t.ports
            .extend(published("8000-8002:90-92", "10.78.3.3", None));
        t.ports.extend(published("7000/udp", "10.78.3.4", None));
        assert_golden("named-ports", nat_batch(&t).0);
    }

    #[test]
    fn an_ipv6_networks_tables_match_their_golden_batch() {
        let mut t = nat_table("poc-pocb6", "pocb6", "10.79.0.0/16", Some("fd77:1::/64"));
        t.ports
            .extend(published("8080:80", "10.79.0.2", Some("fd77:1::2")));
        t.ports.extend(published(
            "127.0.0.1:9000-9001:90-91/udp",
            "10.79.0.2",
            Some("fd77:1::2"),
        ));
        t.ports
            .extend(published("53/udp", "10.79.0.5", Some("fd77:1::5")));
        let (batch, labels) = nat_batch(&t);
        assert_eq!(labels, "ip poc-pocb6, ip6 poc-pocb6");
        assert_golden("ipv6-ports", batch);
    }

    #[test]
    fn a_networks_removal_matches_its_golden_batch() {
        let tables = [NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_BRIDGE].map(|family| Table {
            family,
            name: "poc-poc0",
        });
        assert_golden("remove", removal_batch(&tables));
    }
}
