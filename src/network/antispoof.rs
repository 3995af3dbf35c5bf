//! Source checks on poc's bridge, in its `bridge poc-<bridge>` table: a frame that a container's veth
//! brings in carries its MAC and IPv4 address, or is dropped. Owns that table; touches no other.
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

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::nft::{
    Batch, Expr, NftError, Table, NFPROTO_BRIDGE, NFT_CMP_NEQ, NFT_META_IIFGROUP,
    NFT_MSG_NEWSETELEM, NFT_MSG_NEWTABLE, NFT_PAYLOAD_LL_HEADER, NFT_PAYLOAD_NETWORK_HEADER,
    NFT_REG32_00, NF_ACCEPT, NF_DROP, NLM_F_CREATE, NLM_F_EXCL,
};

/// The first two bytes of a container's MAC, followed by its IPv4 address (as Docker does): locally
/// administered and unicast, unique on the bridge because addresses are, and known without a lookup.
const MAC_PREFIX: [u8; 2] = [0x02, 0x42];

/// `devgroup . ether_addr . ipv4_addr`: the sources allowed on the veth of each group.
const SOURCES: &str = "sources";

/// nft's data type numbers (its datatype.h), so that `nft list` can show the elements; a
/// concatenation's type is its members' numbers, 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_ETHERADDR: u32 = 9;
const TYPE_DEVGROUP: u32 = 35;
const SOURCES_TYPE: u32 = (TYPE_DEVGROUP << 12) | (TYPE_ETHERADDR << 6) | TYPE_IPADDR;

/// Where the concatenated key is built: each member starts on a 4-byte register (a group takes 4
/// bytes, a MAC 6 padded to 8, an address 4).
const KEY_GROUP: u32 = NFT_REG32_00;
const KEY_MAC: u32 = NFT_REG32_00 + 1;
const KEY_ADDRESS: u32 = NFT_REG32_00 + 3;
const SOURCE_KEY_LEN: usize = 4 + 8 + 4;

const NF_BR_PRE_ROUTING: u32 = 0;
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

/// The MAC poc gives the container end of a veth: [`MAC_PREFIX`] and the container's address.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [MAC_PREFIX[0], MAC_PREFIX[1], a, b, c, d]
}

/// The interface group poc gives the host end of a container's veth: its address, as a number.
pub fn group_for(address: Ipv4Addr) -> u32 {
    u32::from(address)
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

/// Lets the veth of `address`'s group send as `address` (nothing changes if it could already);
/// creates the bridge's table first if it is missing (its first container, or a table removed by
/// hand).
pub fn allow(table: &str, subnet: Ipv4Network, address: Ipv4Addr) -> Result<(), NftError> {
    match add_source(table, address) {
        Err(e) if e.is_missing() => {
            create(table, subnet)?;
            add_source(table, address)
        }
        other => other,
    }
}

fn add_source(table: &str, address: Ipv4Addr) -> Result<(), NftError> {
    let t = bridge_table(table);
    let mut batch = Batch::new();
    batch.elements(NFT_MSG_NEWSETELEM, t, SOURCES, &[&source_key(address)]);
    batch.commit(&t.label())
}

/// Creates the table, its set and its chain, if no one has: an exclusive create, so that of two
/// racing creators one builds it and the other finds it.
fn create(table: &str, subnet: Ipv4Network) -> Result<(), NftError> {
    let t = bridge_table(table);
    let mut batch = Batch::new();
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE | NLM_F_EXCL);
    batch.set(t, SOURCES, SOURCES_TYPE, SOURCE_KEY_LEN as u32);
    batch.base_chain(
        t,
        "prerouting",
        "filter",
        NF_BR_PRE_ROUTING,
        PRIORITY_BRIDGE_FILTER,
    );
    for exprs in source_checks(subnet) {
        batch.rule(t, "prerouting", &exprs);
    }
    match batch.commit(&t.label()) {
        Err(e) if e.is_existing() => Ok(()),
        other => other,
    }
}

/// The chain's rules, for the bridge of `subnet`:
///
///     meta iifgroup & MASK != SUBNET accept         (not a port of this bridge)
///     ether type ip meta iifgroup . ether saddr . ip saddr @sources accept
///     ether type arp (ethernet, ipv4) meta iifgroup . ether saddr . arp saddr ip @sources
///                                     meta iifgroup . arp saddr ether . arp saddr ip @sources accept
///     drop
///
/// So from a container's veth only IPv4 and ARP pass, and only with its own MAC and address; IPv6,
/// VLAN tags and other protocols are dropped.
fn source_checks(subnet: Ipv4Network) -> Vec<Vec<Expr>> {
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
        Expr::Cmp {
            op: NFT_CMP_NEQ,
            data: u32::from(subnet.network()).to_ne_bytes().to_vec(),
        },
        Expr::Verdict(NF_ACCEPT),
    ];
    vec![
        not_this_bridge,
        vec![
            ether_type(),
            Expr::equals(&ETH_P_IP),
            group_into(KEY_GROUP),
            load(NFT_PAYLOAD_LL_HEADER, ETHER_SOURCE, 6, KEY_MAC),
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
            load(NFT_PAYLOAD_LL_HEADER, ETHER_SOURCE, 6, KEY_MAC),
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
        vec![Expr::Verdict(NF_DROP)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
