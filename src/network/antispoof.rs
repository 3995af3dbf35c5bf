//! Source checks on poc's bridge, in its `bridge poc-<bridge>` table: a frame that a container's veth
//! brings in carries its MAC and IPv4 address (on a network with IPv6, or one of its IPv6 addresses),
//! or is dropped. Owns that table; touches no other.
//!
//! A container's port is known by its host veth's interface group, which poc sets to the container's
//! address when it creates the veth; the chain allows a source only as `group . MAC . address` with
//! all three from one address. So the per-container part lives on the veth and goes with it on every
//! path (the kernel removes it), and the table's elements are per address, the same for every
//! container that holds it: added when an address is first used, kept until `poc network rm`.
//! Deleting anything from nf_tables would cost an RCU grace period on the next close of any nf_tables
//! socket, under nf_tables' commit mutex (8-13 ms here): paid by every container's removal, and by the
//! next start. (`meta ibrname` would name poc's bridge, but kernels built without NFT_BRIDGE_META, as
//! on these machines, lack it: the subnet in the group tells this bridge's ports from others'.)
//!
//! IPv6 works the same way, with a second set: `group . MAC . IPv6 address` for the container's global
//! address and its link-local one (EUI-64 from its MAC). Neighbour advertisements must name one of
//! its own addresses (and, when they carry one, its own MAC) as their target, router advertisements
//! and redirects never pass, and the unspecified source `::` only on solicitations that have no other
//! (duplicate address detection, router solicitation, MLD reports). A fixed number of rules and set
//! lookups per frame, as for IPv4.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::Ipv4Network;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};

use super::nft::nf_tables::*;
use super::nft::{Batch, Expr, NftError, Table};

/// The first two bytes of a container's MAC, followed by its IPv4 address (as Docker does): locally
/// administered and unicast, unique on the bridge because addresses are, and known without a lookup.
const MAC_PREFIX: [u8; 2] = [0x02, 0x42];

/// `devgroup . ether_addr . ipv4_addr`: the sources allowed on the veth of each group.
const SOURCES: &str = "sources";

/// `devgroup . ether_addr . ipv6_addr`: the IPv6 sources allowed on the veth of each group.
const SOURCES6: &str = "sources6";

/// nft's data type numbers (its datatype.h), so that `nft list` can show the elements; a
/// concatenation's type is its members' numbers, 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_ETHERADDR: u32 = 9;
const TYPE_DEVGROUP: u32 = 35;
const SOURCES_TYPE: u32 = (TYPE_DEVGROUP << 12) | (TYPE_ETHERADDR << 6) | TYPE_IPADDR;
const SOURCES6_TYPE: u32 = (TYPE_DEVGROUP << 12) | (TYPE_ETHERADDR << 6) | TYPE_IP6ADDR;

/// Where the concatenated key is built: each member starts on a 4-byte register (a group takes 4
/// bytes, a MAC 6 padded to 8, an address 4).
const KEY_GROUP: u32 = NFT_REG32_00;
const KEY_MAC: u32 = NFT_REG32_00 + 1;
const KEY_ADDRESS: u32 = NFT_REG32_00 + 3;
const SOURCE_KEY_LEN: usize = 4 + 8 + 4;
/// The IPv6 key: the same group and MAC, and 16 bytes of address (registers 11-14).
const SOURCE6_KEY_LEN: usize = 4 + 8 + 16;

/// The bridge family's filter priority. Any prerouting priority would do: the bridge learns a source
/// MAC only after prerouting, so a dropped frame teaches it nothing.
const PRIORITY_BRIDGE_FILTER: i32 = -200;

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
/// An ARP header for Ethernet and IPv4: hardware type 1, protocol 0x0800, lengths 6 and 4. The
/// sender fields are only where the checks look for them in such a header.
const ARP_ETHERNET_IPV4: [u8; 6] = [0x00, 0x01, 0x08, 0x00, 6, 4];
const ARP_SENDER_MAC: u32 = 8;
const ARP_SENDER_ADDRESS: u32 = 14;
const ETHER_SOURCE: u32 = 6;
const ETHER_TYPE: u32 = 12;
const IPV4_SOURCE: u32 = 12;

const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const IPV6_SOURCE: u32 = 8;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;
const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
const ICMPV6_REDIRECT: u8 = 137;
const ICMPV6_MLD2_REPORT: u8 = 143;
/// Where a neighbour solicitation or advertisement names its target address, and where the target
/// link-layer address option (type 2, length 1 = 8 bytes) sits when it comes first.
const ND_TARGET: u32 = 8;
const ND_FIRST_OPTION: u32 = 24;
const ND_TARGET_MAC_OPTION: [u8; 2] = [2, 1];
const ND_OPTION_MAC: u32 = 26;

/// The MAC poc gives the container end of a veth: [`MAC_PREFIX`] and the container's address.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [MAC_PREFIX[0], MAC_PREFIX[1], a, b, c, d]
}

/// The interface group poc gives the host end of a container's veth: its address, as a number.
pub fn group_for(address: Ipv4Addr) -> u32 {
    u32::from(address)
}

/// The link-local address the kernel would derive from the container's MAC (EUI-64), which poc
/// gives its eth0 on a network with IPv6.
pub fn link_local_for(address: Ipv4Addr) -> Ipv6Addr {
    let m = mac_for(address);
    let id = [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
    let mut octets = [0u8; 16];
    octets[..2].copy_from_slice(&[0xfe, 0x80]);
    octets[8..].copy_from_slice(&id);
    Ipv6Addr::from(octets)
}

/// The element that lets the veth of `address`'s group send as `address6`.
fn source6_key(address: Ipv4Addr, address6: Ipv6Addr) -> Vec<u8> {
    let mut key = source_key(address)[..12].to_vec();
    key.extend_from_slice(&address6.octets());
    key
}

/// The element that lets the veth of `address`'s group send as `address`; the group is in host
/// order, as the kernel loads it.
fn source_key(address: Ipv4Addr) -> Vec<u8> {
    let mut key = group_for(address).to_ne_bytes().to_vec();
    key.extend_from_slice(&mac_for(address));
    key.extend_from_slice(&[0, 0]);
    key.extend_from_slice(&address.octets());
    key
}

fn bridge_table(name: &str) -> Table<'_> {
    Table {
        family: NFPROTO_BRIDGE,
        name,
    }
}

/// Lets the veth of `address`'s group send as `address` and, on a network with IPv6, as `address6`
/// and its link-local address (nothing changes if it could already); creates the bridge's table
/// first if it is missing (its first container, or a table removed by hand).
pub fn allow(
    table: &str,
    subnet: Ipv4Network,
    address: Ipv4Addr,
    address6: Option<Ipv6Addr>,
) -> Result<(), NftError> {
    match add_sources(table, address, address6) {
        Err(e) if e.is_missing() => {
            create(table, subnet, address6.is_some())?;
            add_sources(table, address, address6).map_err(|e| match (e.is_missing(), address6) {
                (true, Some(_)) => NftError::WithoutIpv6 {
                    table: bridge_table(table).label(),
                },
                _ => e,
            })
        }
        other => other,
    }
}

fn add_sources(table: &str, address: Ipv4Addr, address6: Option<Ipv6Addr>) -> Result<(), NftError> {
    sources_batch(table, address, address6).commit(&bridge_table(table).label())
}

fn sources_batch(table: &str, address: Ipv4Addr, address6: Option<Ipv6Addr>) -> Batch {
    let t = bridge_table(table);
    let mut batch = Batch::new();
    batch.elements(NFT_MSG_NEWSETELEM, t, SOURCES, &[&source_key(address)]);
    if let Some(address6) = address6 {
        let global = source6_key(address, address6);
        let link_local = source6_key(address, link_local_for(address));
        batch.elements(NFT_MSG_NEWSETELEM, t, SOURCES6, &[&global, &link_local]);
    }
    batch
}

/// Creates the table, its sets and its chain, if no one has: an exclusive create, so that of two
/// racing creators one builds it and the other finds it.
fn create(table: &str, subnet: Ipv4Network, with_ipv6: bool) -> Result<(), NftError> {
    match create_batch(table, subnet, with_ipv6).commit(&bridge_table(table).label()) {
        Err(e) if e.is_existing() => Ok(()),
        other => other,
    }
}

fn create_batch(table: &str, subnet: Ipv4Network, with_ipv6: bool) -> Batch {
    let t = bridge_table(table);
    let mut batch = Batch::new();
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE | NLM_F_EXCL);
    batch.set(t, SOURCES, SOURCES_TYPE, SOURCE_KEY_LEN as u32);
    if with_ipv6 {
        batch.set(t, SOURCES6, SOURCES6_TYPE, SOURCE6_KEY_LEN as u32);
    }
    batch.base_chain(
        t,
        "prerouting",
        "filter",
        NF_BR_PRE_ROUTING,
        PRIORITY_BRIDGE_FILTER,
    );
    for exprs in source_checks(subnet, with_ipv6) {
        batch.rule(t, "prerouting", &exprs);
    }
    batch
}

/// The chain's rules, for the bridge of `subnet`:
///
///     meta iifgroup & MASK != SUBNET accept         (not a port of this bridge)
///     ether type ip meta iifgroup . ether saddr . ip saddr @sources accept
///     ether type arp (ethernet, ipv4) meta iifgroup . ether saddr . arp saddr ip @sources
///                                     meta iifgroup . arp saddr ether . arp saddr ip @sources accept
///     drop
///
/// So from a container's veth only IPv4 and ARP pass, and only with its own MAC and address; IPv6
/// (unless the network has it: [`ipv6_checks`] come before the drop), VLAN tags and other protocols
/// are dropped.
fn source_checks(subnet: Ipv4Network, with_ipv6: bool) -> Vec<Vec<Expr>> {
    let load = |base, offset, len, dreg| Expr::Payload {
        base,
        offset,
        len,
        dreg,
    };
    let group_into = |dreg| Expr::Meta {
        key: NFT_META_IIFGROUP,
        dreg,
    };
    let lookup = || Expr::Lookup {
        set: SOURCES,
        sreg: KEY_GROUP,
        invert: false,
    };
    let ether_type = || Expr::load(NFT_PAYLOAD_LL_HEADER, ETHER_TYPE, 2);
    let not_this_bridge = vec![
        group_into(KEY_GROUP),
        Expr::Bitwise {
            mask: u32::from(subnet.mask()).to_ne_bytes().to_vec(),
        },
        Expr::differs(&u32::from(subnet.network()).to_ne_bytes()),
        Expr::Verdict(NF_ACCEPT),
    ];
    vec![
        not_this_bridge,
        vec![
            ether_type(),
            Expr::equals(&ETH_P_IP),
            group_into(KEY_GROUP),
            ether_source(),
            load(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SOURCE, 4, KEY_ADDRESS),
            lookup(),
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![
            ether_type(),
            Expr::equals(&ETH_P_ARP),
            Expr::load(NFT_PAYLOAD_NETWORK_HEADER, 0, 6),
            Expr::equals(&ARP_ETHERNET_IPV4),
            group_into(KEY_GROUP),
            ether_source(),
            load(
                NFT_PAYLOAD_NETWORK_HEADER,
                ARP_SENDER_ADDRESS,
                4,
                KEY_ADDRESS,
            ),
            lookup(),
            load(NFT_PAYLOAD_NETWORK_HEADER, ARP_SENDER_MAC, 6, KEY_MAC),
            lookup(),
            Expr::Verdict(NF_ACCEPT),
        ],
    ]
    .into_iter()
    .chain(if with_ipv6 { ipv6_checks() } else { Vec::new() })
    .chain([vec![Expr::Verdict(NF_DROP)]])
    .collect()
}

/// The IPv6 rules, for a network with an IPv6 subnet (`icmpv6` below means `meta l4proto icmpv6`,
/// which finds ICMPv6 behind extension headers too): in this order,
/// [`no_router_messages`], [`no_forged_neighbour_advertisements`], [`own_ipv6_sources`] and
/// [`unspecified_source_solicitations`].
fn ipv6_checks() -> Vec<Vec<Expr>> {
    let mut rules = no_router_messages();
    rules.extend(no_forged_neighbour_advertisements());
    rules.push(own_ipv6_sources());
    rules.extend(unspecified_source_solicitations());
    rules
}

///     ether type ip6 icmpv6 type { nd-router-advert, nd-redirect } drop   (two rules)
fn no_router_messages() -> Vec<Vec<Expr>> {
    [ICMPV6_ROUTER_ADVERTISEMENT, ICMPV6_REDIRECT]
        .into_iter()
        .map(|kind| rule([ipv6(), icmpv6_type(kind), drop()]))
        .collect()
}

///     ether type ip6 icmpv6 type nd-neighbor-advert
///         meta iifgroup . ether saddr . icmpv6 target != @sources6 drop
///     ether type ip6 icmpv6 type nd-neighbor-advert (first option: target MAC)
///         meta iifgroup . OPTION MAC . icmpv6 target != @sources6 drop
fn no_forged_neighbour_advertisements() -> Vec<Vec<Expr>> {
    let advertisement = || rule([ipv6(), icmpv6_type(ICMPV6_NEIGHBOUR_ADVERTISEMENT)]);
    let option_mac = Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: ND_OPTION_MAC,
        len: 6,
        dreg: KEY_MAC,
    };
    let with_mac_option = vec![
        Expr::load(NFT_PAYLOAD_TRANSPORT_HEADER, ND_FIRST_OPTION, 2),
        Expr::equals(&ND_TARGET_MAC_OPTION),
    ];
    vec![
        rule([
            advertisement(),
            key6(ether_source(), nd_target()),
            vec![lookup6(true)],
            drop(),
        ]),
        rule([
            advertisement(),
            with_mac_option,
            key6(option_mac, nd_target()),
            vec![lookup6(true)],
            drop(),
        ]),
    ]
}

///     ether type ip6 meta iifgroup . ether saddr . ip6 saddr @sources6 accept
fn own_ipv6_sources() -> Vec<Expr> {
    let ip6_source = Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset: IPV6_SOURCE,
        len: 16,
        dreg: KEY_ADDRESS6,
    };
    rule([
        ipv6(),
        key6(ether_source(), ip6_source),
        vec![lookup6(false)],
        accept(),
    ])
}

///     ether type ip6 ip6 saddr :: icmpv6 type nd-neighbor-solicit
///         meta iifgroup . ether saddr . icmpv6 target @sources6 accept
///     ether type ip6 ip6 saddr :: icmpv6 type { nd-router-solicit, mld2-listener-report } accept
fn unspecified_source_solicitations() -> Vec<Vec<Expr>> {
    let from_unspecified = || {
        vec![
            Expr::load(NFT_PAYLOAD_NETWORK_HEADER, IPV6_SOURCE, 16),
            Expr::equals(&[0; 16]),
        ]
    };
    let mut rules = vec![rule([
        ipv6(),
        from_unspecified(),
        icmpv6_type(ICMPV6_NEIGHBOUR_SOLICITATION),
        key6(ether_source(), nd_target()),
        vec![lookup6(false)],
        accept(),
    ])];
    for kind in [ICMPV6_ROUTER_SOLICITATION, ICMPV6_MLD2_REPORT] {
        rules.push(rule([
            ipv6(),
            from_unspecified(),
            icmpv6_type(kind),
            accept(),
        ]));
    }
    rules
}

/// Where the IPv6 key's address goes: after the group and the MAC, as in the IPv4 key.
const KEY_ADDRESS6: u32 = KEY_ADDRESS;

/// A rule from its parts, in order.
fn rule<const N: usize>(parts: [Vec<Expr>; N]) -> Vec<Expr> {
    parts.into_iter().flatten().collect()
}

fn drop() -> Vec<Expr> {
    vec![Expr::Verdict(NF_DROP)]
}

fn accept() -> Vec<Expr> {
    vec![Expr::Verdict(NF_ACCEPT)]
}

/// `ether type ip6`.
fn ipv6() -> Vec<Expr> {
    vec![
        Expr::load(NFT_PAYLOAD_LL_HEADER, ETHER_TYPE, 2),
        Expr::equals(&ETH_P_IPV6),
    ]
}

/// `meta l4proto icmpv6 icmpv6 type KIND`.
fn icmpv6_type(kind: u8) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: NFT_REG_1,
        },
        Expr::equals(&[IPPROTO_ICMPV6]),
        Expr::load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1),
        Expr::equals(&[kind]),
    ]
}

/// `meta iifgroup . MAC . ADDRESS`, built in the key registers.
fn key6(mac: Expr, address: Expr) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: NFT_META_IIFGROUP,
            dreg: KEY_GROUP,
        },
        mac,
        address,
    ]
}

/// `[!=] @sources6`, on the key.
fn lookup6(invert: bool) -> Expr {
    Expr::Lookup {
        set: SOURCES6,
        sreg: KEY_GROUP,
        invert,
    }
}

/// `ether saddr`, into the key's MAC (the IPv4 key's and the IPv6 key's alike).
fn ether_source() -> Expr {
    Expr::Payload {
        base: NFT_PAYLOAD_LL_HEADER,
        offset: ETHER_SOURCE,
        len: 6,
        dreg: KEY_MAC,
    }
}

/// `icmpv6 target` of a neighbour solicitation or advertisement, into the key's address.
fn nd_target() -> Expr {
    Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: ND_TARGET,
        len: 16,
        dreg: KEY_ADDRESS6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::nft::assert_golden;

    #[test]
    fn the_source_checks_match_their_golden_batches() {
        let subnet = "10.77.0.0/16".parse().unwrap();
        assert_golden("antispoof-create", create_batch("poc-poc0", subnet, false));
        assert_golden(
            "antispoof-create-ipv6",
            create_batch("poc-poc0", subnet, true),
        );
        let address = Ipv4Addr::new(10, 77, 0, 2);
        assert_golden("antispoof-allow", sources_batch("poc-poc0", address, None));
        let address6 = "fd77:1::2".parse().ok();
        assert_golden(
            "antispoof-allow-ipv6",
            sources_batch("poc-poc0", address, address6),
        );
    }

    #[test]
    fn the_mac_and_group_follow_the_address() {
        let address = Ipv4Addr::new(10, 77, 0, 2);
        assert_eq!(mac_for(address), [0x02, 0x42, 10, 77, 0, 2]);
        assert_eq!(group_for(address), 0x0a4d_0002);
    }

    #[test]
    fn a_source_key_is_laid_out_as_the_registers_are() {
        let key = source_key(Ipv4Addr::new(10, 77, 1, 9));
        assert_eq!(key.len(), SOURCE_KEY_LEN);
        assert_eq!(&key[..4], &0x0a4d_0109u32.to_ne_bytes());
        assert_eq!(&key[4..12], &[2, 0x42, 10, 77, 1, 9, 0, 0]);
        assert_eq!(&key[12..], &[10, 77, 1, 9]);
        assert_eq!(
            SOURCES_TYPE, 0x23247,
            "what nft 1.0 sends for this concatenation"
        );
    }

    #[test]
    fn the_link_local_address_is_the_eui64_of_the_mac() {
        // 02:42:0a:4d:00:02, as the kernel derives it (addr_gen_mode eui64).
        assert_eq!(
            link_local_for(Ipv4Addr::new(10, 77, 0, 2)),
            "fe80::42:aff:fe4d:2".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn an_ipv6_source_key_shares_the_group_and_mac_of_the_ipv4_one() {
        let address = Ipv4Addr::new(10, 77, 1, 9);
        let address6: Ipv6Addr = "fd77:1::3".parse().unwrap();
        let key = source6_key(address, address6);
        assert_eq!(key.len(), SOURCE6_KEY_LEN);
        assert_eq!(&key[..12], &source_key(address)[..12]);
        assert_eq!(&key[12..], &address6.octets());
    }
}
