//! poc's nftables table for one bridge, written through the nf_tables netlink interface in a single
//! batch, so the kernel swaps the whole table atomically: masquerade for the bridge's subnet and the
//! DNAT rules of published ports. Touches no other table (Docker's, the host's).
//! Only the handful of expressions poc needs are encoded here (values from linux/netfilter/nf_tables.h).

use std::net::Ipv4Addr;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::PortMapping;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("nftables refused the update of table {table}: {source}")]
    Kernel {
        table: String,
        source: std::io::Error,
    },
}

const NLA_F_NESTED: u16 = 0x8000;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;
const NF_ACCEPT: u32 = 1;
const NLMSG_ERROR: u16 = 2;

// Hooks and priorities as `nft` names them.
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
const PRIORITY_DSTNAT: i32 = -100;
const PRIORITY_SRCNAT: i32 = 100;

const REG_1: u32 = 1;
const REG_2: u32 = 2;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_L4PROTO: u32 = 16;
const NFT_NAT_DNAT: u32 = 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;

/// Netlink attributes, appended in order.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    fn string(&mut self, kind: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.put(kind, &data);
    }

    fn be32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) {
        let mut inner = Attrs::default();
        fill(&mut inner);
        self.put(kind | NLA_F_NESTED, &inner.0);
    }
}

/// One nf_tables expression.
enum Expr {
    Payload { base: u32, offset: u32, len: u32 },
    Bitwise { mask: Vec<u8> },
    Cmp { op: u32, data: Vec<u8> },
    Meta { key: u32 },
    Fib,
    Immediate { reg: u32, data: Vec<u8> },
    Dnat,
    Masquerade,
}

impl Expr {
    fn encode(&self, list: &mut Attrs) {
        const NFTA_LIST_ELEM: u16 = 1;
        const NFTA_EXPR_NAME: u16 = 1;
        const NFTA_EXPR_DATA: u16 = 2;
        list.nested(NFTA_LIST_ELEM, |e| {
            let name = match self {
                Expr::Payload { .. } => "payload",
                Expr::Bitwise { .. } => "bitwise",
                Expr::Cmp { .. } => "cmp",
                Expr::Meta { .. } => "meta",
                Expr::Fib => "fib",
                Expr::Immediate { .. } => "immediate",
                Expr::Dnat => "nat",
                Expr::Masquerade => "masq",
            };
            e.string(NFTA_EXPR_NAME, name);
            e.nested(NFTA_EXPR_DATA, |d| match self {
                // NFTA_PAYLOAD_DREG, _BASE, _OFFSET, _LEN
                Expr::Payload { base, offset, len } => {
                    d.be32(1, REG_1);
                    d.be32(2, *base);
                    d.be32(3, *offset);
                    d.be32(4, *len);
                }
                // NFTA_BITWISE_SREG, _DREG, _LEN, _MASK, _XOR (values nested in NFTA_DATA_VALUE)
                Expr::Bitwise { mask } => {
                    d.be32(1, REG_1);
                    d.be32(2, REG_1);
                    d.be32(3, mask.len() as u32);
                    d.nested(4, |v| v.put(1, mask));
                    d.nested(5, |v| v.put(1, &vec![0; mask.len()]));
                }
                // NFTA_CMP_SREG, _OP, _DATA
                Expr::Cmp { op, data } => {
                    d.be32(1, REG_1);
                    d.be32(2, *op);
                    d.nested(3, |v| v.put(1, data));
                }
                // NFTA_META_DREG, _KEY
                Expr::Meta { key } => {
                    d.be32(1, REG_1);
                    d.be32(2, *key);
                }
                // NFTA_FIB_DREG, _RESULT, _FLAGS: the address type of the destination
                Expr::Fib => {
                    d.be32(1, REG_1);
                    d.be32(2, NFT_FIB_RESULT_ADDRTYPE);
                    d.be32(3, NFTA_FIB_F_DADDR);
                }
                // NFTA_IMMEDIATE_DREG, _DATA
                Expr::Immediate { reg, data } => {
                    d.be32(1, *reg);
                    d.nested(2, |v| v.put(1, data));
                }
                // NFTA_NAT_TYPE, _FAMILY, _REG_ADDR_MIN, _REG_PROTO_MIN
                Expr::Dnat => {
                    d.be32(1, NFT_NAT_DNAT);
                    d.be32(2, NFPROTO_IPV4 as u32);
                    d.be32(3, REG_1);
                    d.be32(5, REG_2);
                }
                Expr::Masquerade => {}
            });
        });
    }
}

/// What poc's table for a bridge holds.
pub struct NatTable {
    pub name: String,
    pub subnet: ipnetwork::Ipv4Network,
    /// Published ports and the container address each leads to.
    pub ports: Vec<(PortMapping, Ipv4Addr)>,
}

/// A batch of nf_tables messages for one table.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    acked: u32,
}

impl Batch {
    fn new() -> Self {
        let mut batch = Batch {
            buf: Vec::new(),
            seq: 0,
            acked: 0,
        };
        batch.message(NFNL_MSG_BATCH_BEGIN, 0, 0, &Attrs::default());
        batch
    }

    fn message(&mut self, kind: u16, family: u8, flags: u16, attrs: &Attrs) {
        const NLM_F_REQUEST: u16 = 1;
        const NLM_F_ACK: u16 = 4;
        let is_batch_marker = kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END;
        let (kind, flags, res_id) = if is_batch_marker {
            (kind, NLM_F_REQUEST, NFNL_SUBSYS_NFTABLES)
        } else {
            self.acked += 1;
            (
                (NFNL_SUBSYS_NFTABLES << 8) | kind,
                NLM_F_REQUEST | NLM_F_ACK | flags,
                0,
            )
        };
        self.seq += 1;
        let len = 16 + 4 + attrs.0.len();
        self.buf.extend_from_slice(&(len as u32).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(&attrs.0);
    }

    fn table(&mut self, kind: u16, name: &str, flags: u16) {
        let mut a = Attrs::default();
        a.string(1, name); // NFTA_TABLE_NAME
        self.message(kind, NFPROTO_IPV4, flags, &a);
    }

    fn base_chain(&mut self, table: &str, chain: &str, kind: &str, hook: u32, priority: i32) {
        const NLM_F_CREATE: u16 = 0x400;
        let mut a = Attrs::default();
        a.string(1, table); // NFTA_CHAIN_TABLE
        a.string(3, chain); // NFTA_CHAIN_NAME
        a.nested(4, |h| {
            h.be32(1, hook); // NFTA_HOOK_HOOKNUM
            h.be32(2, priority as u32); // NFTA_HOOK_PRIORITY
        });
        a.be32(5, NF_ACCEPT); // NFTA_CHAIN_POLICY
        a.string(7, kind); // NFTA_CHAIN_TYPE
        self.message(NFT_MSG_NEWCHAIN, NFPROTO_IPV4, NLM_F_CREATE, &a);
    }

    fn rule(&mut self, table: &str, chain: &str, exprs: &[Expr]) {
        const NLM_F_CREATE: u16 = 0x400;
        const NLM_F_APPEND: u16 = 0x800;
        let mut a = Attrs::default();
        a.string(1, table); // NFTA_RULE_TABLE
        a.string(2, chain); // NFTA_RULE_CHAIN
        a.nested(4, |list| exprs.iter().for_each(|e| e.encode(list))); // NFTA_RULE_EXPRESSIONS
        self.message(
            NFT_MSG_NEWRULE,
            NFPROTO_IPV4,
            NLM_F_CREATE | NLM_F_APPEND,
            &a,
        );
    }

    /// Sends the batch and waits for every message's acknowledgement; the first error wins (the
    /// kernel applies a batch whole or not at all).
    fn commit(mut self, table: &str) -> Result<(), NftError> {
        self.message(NFNL_MSG_BATCH_END, 0, 0, &Attrs::default());
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NftError::Socket)?;
        set_receive_timeout(&socket, Duration::from_secs(5));
        let kernel = |source| NftError::Kernel {
            table: table.to_string(),
            source,
        };
        socket.send(&self.buf, 0).map_err(kernel)?;
        let mut first_error = None;
        let mut replies = 0;
        while replies < self.acked {
            let (data, _) = socket.recv_from_full().map_err(kernel)?;
            let mut offset = 0;
            while offset + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes(data[offset..offset + 4].try_into().unwrap_or_default())
                        as usize;
                let kind = u16::from_ne_bytes([data[offset + 4], data[offset + 5]]);
                if kind == NLMSG_ERROR && offset + 20 <= data.len() {
                    replies += 1;
                    let code = i32::from_ne_bytes(
                        data[offset + 16..offset + 20]
                            .try_into()
                            .unwrap_or_default(),
                    );
                    if code != 0 && first_error.is_none() {
                        first_error = Some(std::io::Error::from_raw_os_error(-code));
                    }
                }
                if len < 16 {
                    break;
                }
                offset += len.next_multiple_of(4);
            }
            if first_error.is_some() {
                break;
            }
        }
        match first_error {
            Some(source) => Err(kernel(source)),
            None => Ok(()),
        }
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO with a timeval we own, on our socket.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

/// Replaces poc's table with exactly `table`: created if missing, emptied and refilled otherwise,
/// in one atomic batch.
pub fn apply(table: &NatTable) -> Result<(), NftError> {
    const NLM_F_CREATE: u16 = 0x400;
    let name = table.name.as_str();
    let mut batch = Batch::new();
    // Add-then-delete-then-add: idempotent whether or not the table exists.
    batch.table(NFT_MSG_NEWTABLE, name, NLM_F_CREATE);
    batch.table(NFT_MSG_DELTABLE, name, 0);
    batch.table(NFT_MSG_NEWTABLE, name, NLM_F_CREATE);
    batch.base_chain(
        name,
        "postrouting",
        "nat",
        NF_INET_POST_ROUTING,
        PRIORITY_SRCNAT,
    );
    batch.base_chain(
        name,
        "prerouting",
        "nat",
        NF_INET_PRE_ROUTING,
        PRIORITY_DSTNAT,
    );
    batch.base_chain(name, "output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT);

    // ip saddr SUBNET ip daddr != SUBNET masquerade
    let net = table.subnet.network().octets().to_vec();
    let mask = table.subnet.mask().octets().to_vec();
    batch.rule(
        name,
        "postrouting",
        &[
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 12,
                len: 4,
            },
            Expr::Bitwise { mask: mask.clone() },
            Expr::Cmp {
                op: NFT_CMP_EQ,
                data: net.clone(),
            },
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 16,
                len: 4,
            },
            Expr::Bitwise { mask },
            Expr::Cmp {
                op: NFT_CMP_NEQ,
                data: net,
            },
            Expr::Masquerade,
        ],
    );
    // fib daddr type local [ip daddr HOST_IP] PROTO dport HOST_PORT dnat to ADDRESS:PORT,
    // from outside (prerouting) and from the host itself (output).
    for (port, address) in &table.ports {
        let mut exprs = vec![
            Expr::Fib,
            Expr::Cmp {
                op: NFT_CMP_EQ,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
        ];
        if let Some(host_ip) = port.host_ip {
            exprs.push(Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 16,
                len: 4,
            });
            exprs.push(Expr::Cmp {
                op: NFT_CMP_EQ,
                data: host_ip.octets().to_vec(),
            });
        }
        exprs.extend([
            Expr::Meta {
                key: NFT_META_L4PROTO,
            },
            Expr::Cmp {
                op: NFT_CMP_EQ,
                data: vec![port.protocol.number()],
            },
            Expr::Payload {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: 2,
                len: 2,
            },
            Expr::Cmp {
                op: NFT_CMP_EQ,
                data: port.host_port.to_be_bytes().to_vec(),
            },
            Expr::Immediate {
                reg: REG_1,
                data: address.octets().to_vec(),
            },
            Expr::Immediate {
                reg: REG_2,
                data: port.container_port.to_be_bytes().to_vec(),
            },
            Expr::Dnat,
        ]);
        for chain in ["prerouting", "output"] {
            batch.rule(name, chain, &exprs);
        }
    }
    batch.commit(name)
}

/// Removes poc's table; a missing table is fine.
pub fn remove(name: &str) -> Result<(), NftError> {
    const NLM_F_CREATE: u16 = 0x400;
    let mut batch = Batch::new();
    batch.table(NFT_MSG_NEWTABLE, name, NLM_F_CREATE);
    batch.table(NFT_MSG_DELTABLE, name, 0);
    batch.commit(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nested_flagged() {
        let mut a = Attrs::default();
        a.string(1, "poc");
        assert_eq!(a.0, [8, 0, 1, 0, b'p', b'o', b'c', 0]);
        a.nested(4, |n| n.be32(1, 2));
        assert_eq!(&a.0[8..], &[12, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn a_batch_counts_the_messages_to_acknowledge() {
        let mut b = Batch::new();
        b.table(NFT_MSG_NEWTABLE, "t", 0);
        b.base_chain("t", "c", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT);
        assert_eq!(b.acked, 2);
        let first_len = u32::from_ne_bytes(b.buf[..4].try_into().unwrap()) as usize;
        assert_eq!(first_len, 20, "batch begin: header and nfgenmsg only");
        assert_eq!(&b.buf[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }
}
