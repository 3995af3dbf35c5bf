//! Source checks on poc's bridge, in its `bridge poc-<bridge>` table: a frame that a container's veth
//! brings in carries its MAC and IPv4 address, or is dropped. Owns that table; touches no other.
//!
//! One table per bridge, filled with set elements, rather than a table per container: a base chain
//! per container would put every bridged frame on the host (any bridge's) through N hooks, while two
//! hash lookups in one chain cost the same for 1 or 500 containers. A container's elements go in and
//! out in one atomic batch each; the kernel serialises batches, so concurrent starts cannot race.
//! (`meta ibrname`, which would let the chain pick poc's bridge, is missing from kernels built
//! without NFT_BRIDGE_META, as on these machines: the chain knows poc's ports by their veth names.)

use std::net::Ipv4Addr;

use super::nft::{
    Batch, Expr, NftError, Table, NFPROTO_BRIDGE, NFT_META_IIFNAME, NFT_MSG_DELSETELEM,
    NFT_MSG_NEWSETELEM, NFT_MSG_NEWTABLE, NFT_PAYLOAD_LL_HEADER, NFT_PAYLOAD_NETWORK_HEADER,
    NFT_REG32_00, NF_ACCEPT, NF_DROP, NLM_F_CREATE, NLM_F_EXCL,
};

/// The first two bytes of a container's MAC, followed by its IPv4 address (as Docker does): locally
/// administered and unicast, unique on the bridge because addresses are, and known without a lookup.
const MAC_PREFIX: [u8; 2] = [0x02, 0x42];

/// The veth names whose frames this table checks (frames from any other port pass untouched).
const PORTS: &str = "ports";
/// `ifname . ether_addr . ipv4_addr`: the MAC and address allowed as sources on each veth.
const SOURCES: &str = "sources";

/// nft's data type numbers (its datatype.h), so that `nft list` can show the elements; a
/// concatenation's type is its members' numbers, 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_ETHERADDR: u32 = 9;
const TYPE_IFNAME: u32 = 41;
const SOURCES_TYPE: u32 = (TYPE_IFNAME << 12) | (TYPE_ETHERADDR << 6) | TYPE_IPADDR;

/// Where a concatenated key is built: each member starts on a 4-byte register (a name takes 16
/// bytes, a MAC 6 padded to 8, an address 4).
const KEY_NAME: u32 = NFT_REG32_00;
const KEY_MAC: u32 = NFT_REG32_00 + 4;
const KEY_ADDRESS: u32 = NFT_REG32_00 + 6;
const NAME_LEN: usize = libc::IFNAMSIZ;
const SOURCE_KEY_LEN: usize = NAME_LEN + 8 + 4;

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

/// A container's port on the bridge: the host end of its veth and the sources it may use.
pub struct Port<'a> {
    pub veth: &'a str,
    pub address: Ipv4Addr,
}

impl Port<'_> {
    fn name_key(&self) -> Vec<u8> {
        Expr::ifname(self.veth)
    }

    fn source_key(&self) -> Vec<u8> {
        let mut key = self.name_key();
        key.extend_from_slice(&mac_for(self.address));
        key.extend_from_slice(&[0, 0]);
        key.extend_from_slice(&self.address.octets());
        key
    }
}

fn bridge_table(name: &str) -> Table<'_> {
    Table {
        family: NFPROTO_BRIDGE,
        name,
    }
}

/// Puts the port under the checks; creates the bridge's table first if it is missing (its first
/// container, or a table removed by hand).
pub fn allow(table: &str, port: &Port) -> Result<(), NftError> {
    match change(NFT_MSG_NEWSETELEM, table, port) {
        Err(e) if e.is_missing() => {
            create(table)?;
            change(NFT_MSG_NEWSETELEM, table, port)
        }
        other => other,
    }
}

/// Takes the port's elements out; elements or a table already gone are fine.
pub fn forget(table: &str, port: &Port) -> Result<(), NftError> {
    match change(NFT_MSG_DELSETELEM, table, port) {
        Err(e) if e.is_missing() => Ok(()),
        other => other,
    }
}

/// Both of a port's elements in one batch, so a port is never named without its sources.
fn change(kind: u16, table: &str, port: &Port) -> Result<(), NftError> {
    let t = bridge_table(table);
    let mut batch = Batch::new();
    batch.elements(kind, t, PORTS, &[&port.name_key()]);
    batch.elements(kind, t, SOURCES, &[&port.source_key()]);
    batch.commit(&t.label())
}

/// Creates the table, its sets and its chain, if no one has: an exclusive create, so that of two
/// racing creators one builds it and the other finds it.
fn create(table: &str) -> Result<(), NftError> {
    let t = bridge_table(table);
    let mut batch = Batch::new();
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE | NLM_F_EXCL);
    batch.set(t, PORTS, TYPE_IFNAME, NAME_LEN as u32, true);
    batch.set(t, SOURCES, SOURCES_TYPE, SOURCE_KEY_LEN as u32, false);
    batch.base_chain(
        t,
        "prerouting",
        "filter",
        NF_BR_PRE_ROUTING,
        PRIORITY_BRIDGE_FILTER,
    );
    for exprs in source_checks() {
        batch.rule(t, "prerouting", &exprs);
    }
    match batch.commit(&t.label()) {
        Err(e) if e.is_existing() => Ok(()),
        other => other,
    }
}

/// The chain's rules:
///
///     iifname != @ports accept
///     ether type ip iifname . ether saddr . ip saddr @sources accept
///     ether type arp (ethernet, ipv4) iifname . ether saddr . arp saddr ip @sources
///                                     iifname . arp saddr ether . arp saddr ip @sources accept
///     drop
///
/// So from a container's veth only IPv4 and ARP pass, and only with its own MAC and address; IPv6,
/// VLAN tags and other protocols are dropped.
fn source_checks() -> Vec<Vec<Expr>> {
    let load = |base, offset, len, dreg| Expr::Payload {
        base,
        offset,
        len,
        dreg,
    };
    let name_into = |dreg| Expr::Meta {
        key: NFT_META_IIFNAME,
        dreg,
    };
    let lookup = |set, invert| Expr::Lookup {
        set,
        sreg: KEY_NAME,
        invert,
    };
    let ether_type = || Expr::load(NFT_PAYLOAD_LL_HEADER, ETHER_TYPE, 2);
    vec![
        vec![
            name_into(KEY_NAME),
            lookup(PORTS, true),
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![
            ether_type(),
            Expr::equals(&ETH_P_IP),
            name_into(KEY_NAME),
            load(NFT_PAYLOAD_LL_HEADER, ETHER_SOURCE, 6, KEY_MAC),
            load(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SOURCE, 4, KEY_ADDRESS),
            lookup(SOURCES, false),
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![
            ether_type(),
            Expr::equals(&ETH_P_ARP),
            Expr::load(NFT_PAYLOAD_NETWORK_HEADER, 0, 6),
            Expr::equals(&ARP_ETHERNET_IPV4),
            name_into(KEY_NAME),
            load(NFT_PAYLOAD_LL_HEADER, ETHER_SOURCE, 6, KEY_MAC),
            load(
                NFT_PAYLOAD_NETWORK_HEADER,
                ARP_SENDER_ADDRESS,
                4,
                KEY_ADDRESS,
            ),
            lookup(SOURCES, false),
            load(NFT_PAYLOAD_NETWORK_HEADER, ARP_SENDER_MAC, 6, KEY_MAC),
            lookup(SOURCES, false),
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![Expr::Verdict(NF_DROP)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_the_prefix_and_the_address() {
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 77, 0, 2)),
            [0x02, 0x42, 10, 77, 0, 2]
        );
    }

    #[test]
    fn a_source_key_is_laid_out_as_the_registers_are() {
        let port = Port {
            veth: "poc0123456789ab",
            address: Ipv4Addr::new(10, 77, 1, 9),
        };
        let key = port.source_key();
        assert_eq!(key.len(), SOURCE_KEY_LEN);
        assert_eq!(&key[..15], b"poc0123456789ab");
        assert_eq!(key[15], 0);
        assert_eq!(&key[16..24], &[2, 0x42, 10, 77, 1, 9, 0, 0]);
        assert_eq!(&key[24..], &[10, 77, 1, 9]);
        assert_eq!(
            SOURCES_TYPE, 0x29247,
            "what nft 1.0 sends for this concatenation"
        );
    }
}
