//! poc's `ip` nftables table for one bridge (and its `ip6` twin on a network with an IPv6 subnet),
//! written through the nf_tables netlink interface in a single batch, so the kernel swaps the whole
//! tables atomically: masquerade for the bridge's subnet, the DNAT rules of published ports and what
//! may be forwarded into the bridge. Touches no other table.
//! Only the handful of expressions poc needs are encoded here (values from linux/netfilter/nf_tables.h),
//! for this table and for the bridge family's source checks (`antispoof.rs`).

use std::time::Duration;

use ipnetwork::{Ipv4Network, Ipv6Network};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::{PortMapping, Published};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("nftables refused the update of table {table}: {source}")]
    Kernel {
        table: String,
        source: std::io::Error,
    },
    #[error("table {table} was set up without IPv6 source checks; remove the network's containers and run `poc network rm` so that it is set up again")]
    WithoutIpv6 { table: String },
}

impl NftError {
    /// The kernel answered that a table, set or element named in the batch does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, NftError::Kernel { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
    }

    /// The kernel answered that something created with `NLM_F_EXCL` exists already.
    pub fn is_existing(&self) -> bool {
        matches!(self, NftError::Kernel { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
    }
}

const NLA_F_NESTED: u16 = 0x8000;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
pub(super) const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
pub(super) const NFPROTO_IPV4: u8 = 2;
pub(super) const NFPROTO_IPV6: u8 = 10;
pub(super) const NFPROTO_BRIDGE: u8 = 7;
pub(super) const NF_DROP: u32 = 0;
pub(super) const NF_ACCEPT: u32 = 1;
const NLMSG_ERROR: u16 = 2;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_EXCL: u16 = 0x200;

// Hooks and priorities as `nft` names them.
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
const PRIORITY_RAW: i32 = -300;
const PRIORITY_DSTNAT: i32 = -100;
const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;

/// Registers: 0 holds the verdict; 1-4 are 16 bytes each, overlaid by the 4-byte registers 8-23
/// (so `REG_1` is `REG32_00`..`REG32_03`), which concatenations for set lookups are laid out in.
const NFT_REG_VERDICT: u32 = 0;
pub(super) const REG_1: u32 = 1;
const REG_2: u32 = 2;
pub(super) const NFT_REG32_00: u32 = 8;
pub(super) const NFT_PAYLOAD_LL_HEADER: u32 = 0;
pub(super) const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub(super) const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
pub(super) const NFT_CMP_NEQ: u32 = 1;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
pub(super) const NFT_META_L4PROTO: u32 = 16;
pub(super) const NFT_META_IIFGROUP: u32 = 21;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
/// `ct state established,related`: the kernel's bits for IP_CT_ESTABLISHED and IP_CT_RELATED.
const CT_STATE_ESTABLISHED_RELATED: u32 = (1 << 1) | (1 << 2);
/// `ct status dnat`: IPS_DST_NAT.
const CT_STATUS_DNAT: u32 = 1 << 5;
const NFT_LOOKUP_F_INV: u32 = 1;
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

/// One nf_tables expression. Loads go to `dreg`; comparisons and masks work on `REG_1`.
pub(super) enum Expr {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Bitwise {
        mask: Vec<u8>,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Meta {
        key: u32,
        dreg: u32,
    },
    Ct {
        key: u32,
    },
    /// Whether the key that starts at `sreg` is in the set (or, with `invert`, is not).
    Lookup {
        set: &'static str,
        sreg: u32,
        invert: bool,
    },
    Fib,
    Immediate {
        reg: u32,
        data: Vec<u8>,
    },
    Verdict(u32),
    /// DNAT to the address in `REG_1` and the port in `REG_2`, of `family`.
    Dnat {
        family: u8,
    },
    Masquerade,
}

impl Expr {
    /// `len` bytes at `offset` of a header, into `REG_1`.
    pub(super) fn load(base: u32, offset: u32, len: u32) -> Expr {
        Expr::Payload {
            base,
            offset,
            len,
            dreg: REG_1,
        }
    }

    pub(super) fn equals(data: &[u8]) -> Expr {
        Expr::Cmp {
            op: NFT_CMP_EQ,
            data: data.to_vec(),
        }
    }

    /// An interface name as the kernel's meta expressions load it: NUL-padded to IFNAMSIZ.
    pub(super) fn ifname(name: &str) -> Vec<u8> {
        let mut bytes = name.as_bytes().to_vec();
        bytes.resize(libc::IFNAMSIZ, 0);
        bytes
    }

    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Meta { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Lookup { .. } => "lookup",
            Expr::Fib => "fib",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
        }
    }

    fn encode(&self, list: &mut Attrs) {
        const NFTA_LIST_ELEM: u16 = 1;
        const NFTA_EXPR_NAME: u16 = 1;
        const NFTA_EXPR_DATA: u16 = 2;
        list.nested(NFTA_LIST_ELEM, |e| {
            e.string(NFTA_EXPR_NAME, self.name());
            e.nested(NFTA_EXPR_DATA, |d| self.encode_data(d));
        });
    }

    fn encode_data(&self, d: &mut Attrs) {
        match self {
            // NFTA_PAYLOAD_DREG, _BASE, _OFFSET, _LEN
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                d.be32(1, *dreg);
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
            Expr::Meta { key, dreg } => {
                d.be32(1, *dreg);
                d.be32(2, *key);
            }
            // NFTA_CT_DREG, _KEY
            Expr::Ct { key } => {
                d.be32(1, REG_1);
                d.be32(2, *key);
            }
            // NFTA_LOOKUP_SET, _SREG, _FLAGS
            Expr::Lookup { set, sreg, invert } => {
                d.string(1, set);
                d.be32(2, *sreg);
                if *invert {
                    d.be32(5, NFT_LOOKUP_F_INV);
                }
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
            // The verdict register, NFTA_DATA_VERDICT { NFTA_VERDICT_CODE }
            Expr::Verdict(code) => {
                d.be32(1, NFT_REG_VERDICT);
                d.nested(2, |v| v.nested(2, |c| c.be32(1, *code)));
            }
            // NFTA_NAT_TYPE, _FAMILY, _REG_ADDR_MIN, _REG_PROTO_MIN
            Expr::Dnat { family } => {
                d.be32(1, NFT_NAT_DNAT);
                d.be32(2, *family as u32);
                d.be32(3, REG_1);
                d.be32(5, REG_2);
            }
            Expr::Masquerade => {}
        }
    }
}

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

/// A table as nf_tables names it: its family and name.
#[derive(Clone, Copy)]
pub(super) struct Table<'a> {
    pub family: u8,
    pub name: &'a str,
}

impl Table<'_> {
    /// As `nft` writes it, for messages: "ip poc-poc0".
    pub(super) fn label(&self) -> String {
        match self.family {
            NFPROTO_IPV4 => format!("ip {}", self.name),
            NFPROTO_IPV6 => format!("ip6 {}", self.name),
            NFPROTO_BRIDGE => format!("bridge {}", self.name),
            other => format!("family {other} {}", self.name),
        }
    }
}

/// A batch of nf_tables messages, applied by the kernel whole or not at all.
pub(super) struct Batch {
    buf: Vec<u8>,
    seq: u32,
    acked: u32,
    /// Whether the batch deletes anything (whose memory the kernel frees after an RCU grace period).
    deletes: bool,
}

impl Batch {
    pub(super) fn new() -> Self {
        let mut batch = Batch {
            buf: Vec::new(),
            seq: 0,
            acked: 0,
            deletes: false,
        };
        batch.message(NFNL_MSG_BATCH_BEGIN, 0, 0, &Attrs::default());
        batch
    }

    fn message(&mut self, kind: u16, family: u8, flags: u16, attrs: &Attrs) {
        const NLM_F_REQUEST: u16 = 1;
        const NLM_F_ACK: u16 = 4;
        self.deletes |= kind == NFT_MSG_DELTABLE || kind == NFT_MSG_DELSETELEM;
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

    pub(super) fn table(&mut self, kind: u16, table: Table, flags: u16) {
        let mut a = Attrs::default();
        a.string(1, table.name); // NFTA_TABLE_NAME
        self.message(kind, table.family, flags, &a);
    }

    /// A chain on `hook` with policy accept: poc's rules decide only about what they match.
    pub(super) fn base_chain(
        &mut self,
        table: Table,
        chain: &str,
        kind: &str,
        hook: u32,
        priority: i32,
    ) {
        let mut a = Attrs::default();
        a.string(1, table.name); // NFTA_CHAIN_TABLE
        a.string(3, chain); // NFTA_CHAIN_NAME
        a.nested(4, |h| {
            h.be32(1, hook); // NFTA_HOOK_HOOKNUM
            h.be32(2, priority as u32); // NFTA_HOOK_PRIORITY
        });
        a.be32(5, NF_ACCEPT); // NFTA_CHAIN_POLICY
        a.string(7, kind); // NFTA_CHAIN_TYPE
        self.message(NFT_MSG_NEWCHAIN, table.family, NLM_F_CREATE, &a);
    }

    pub(super) fn rule(&mut self, table: Table, chain: &str, exprs: &[Expr]) {
        const NLM_F_APPEND: u16 = 0x800;
        let mut a = Attrs::default();
        a.string(1, table.name); // NFTA_RULE_TABLE
        a.string(2, chain); // NFTA_RULE_CHAIN
        a.nested(4, |list| exprs.iter().for_each(|e| e.encode(list))); // NFTA_RULE_EXPRESSIONS
        self.message(
            NFT_MSG_NEWRULE,
            table.family,
            NLM_F_CREATE | NLM_F_APPEND,
            &a,
        );
    }

    /// A hash set of `key_len`-byte keys; `key_type` (nft's data type number) is for `nft list`,
    /// which reads it to show the elements.
    pub(super) fn set(&mut self, table: Table, set: &str, key_type: u32, key_len: u32) {
        let mut a = Attrs::default();
        a.string(1, table.name); // NFTA_SET_TABLE
        a.string(2, set); // NFTA_SET_NAME
        a.be32(4, key_type); // NFTA_SET_KEY_TYPE
        a.be32(5, key_len); // NFTA_SET_KEY_LEN
                            // NFTA_SET_ID, which the kernel requires: unique in the batch, as the message's sequence is.
        a.be32(10, self.seq + 1);
        self.message(NFT_MSG_NEWSET, table.family, NLM_F_CREATE, &a);
    }

    /// Adds (`NFT_MSG_NEWSETELEM`) or deletes (`NFT_MSG_DELSETELEM`) elements of a set.
    pub(super) fn elements(&mut self, kind: u16, table: Table, set: &str, keys: &[&[u8]]) {
        const NFTA_LIST_ELEM: u16 = 1;
        let mut a = Attrs::default();
        a.string(1, table.name); // NFTA_SET_ELEM_LIST_TABLE
        a.string(2, set); // NFTA_SET_ELEM_LIST_SET
        a.nested(3, |list| {
            // NFTA_SET_ELEM_LIST_ELEMENTS
            for key in keys {
                // NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }
                list.nested(NFTA_LIST_ELEM, |e| e.nested(1, |k| k.put(1, key)));
            }
        });
        let flags = if kind == NFT_MSG_NEWSETELEM {
            NLM_F_CREATE
        } else {
            0
        };
        self.message(kind, table.family, flags, &a);
    }

    /// Sends the batch and waits for every message's acknowledgement; the first error wins (the
    /// kernel applies a batch whole or not at all). `table` names what it changes, for errors.
    pub(super) fn commit(mut self, table: &str) -> Result<(), NftError> {
        self.message(NFNL_MSG_BATCH_END, 0, 0, &Attrs::default());
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NftError::Socket)?;
        set_receive_timeout(&socket, Duration::from_secs(5));
        let result = self.exchange(&mut socket, table);
        if self.deletes {
            close_without_waiting(socket);
        }
        result
    }

    fn exchange(&self, socket: &mut Socket, table: &str) -> Result<(), NftError> {
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

/// Closes the socket without waiting for nf_tables' deferred frees. Closing an nf_tables socket
/// waits for the kernel's pending destroy work (nft_rcv_nl_event), which after a batch that deleted
/// something includes an RCU grace period: 8-13 ms measured here whenever the `ip` table is replaced
/// (a start or removal with published ports) or removed. A forked child that holds the last
/// reference to the socket pays it instead; it only closes, reads and exits (async-signal-safe, so
/// forking a threaded process is fine), and outlives this process by a grace period at most (reaped
/// by init then). The kernel holds nf_tables' commit mutex while it waits, so a batch from another
/// poc in that window still waits for it (why antispoof.rs deletes nothing per container).
fn close_without_waiting(socket: Socket) {
    use std::os::fd::AsRawFd;
    let Ok((child_end, parent_end)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    // SAFETY: the child calls only close_range, read and _exit (see `hold_until_parent_lets_go`).
    if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
        hold_until_parent_lets_go(socket.as_raw_fd(), child_end.as_raw_fd());
    }
    // The socket before the pipe: once the child sees the pipe close, its copy is the last.
    drop(socket);
    drop(parent_end);
}

/// In the child: keeps only the socket and the pipe (so that no reader of the parent's stdout waits
/// for it), waits until the parent has closed its copies, and exits, closing the socket last.
fn hold_until_parent_lets_go(socket: i32, pipe: i32) -> ! {
    let (low, high) = (socket.min(pipe) as u32, socket.max(pipe) as u32);
    // SAFETY: closing descriptors of this child, reading into a local byte, exiting.
    unsafe {
        if low > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, low - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, low + 1, high - 1, 0u32);
        libc::syscall(libc::SYS_close_range, high + 1, u32::MAX, 0u32);
        let mut byte = 0u8;
        while libc::read(pipe, (&mut byte as *mut u8).cast(), 1) > 0 {}
        libc::_exit(0)
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
    let published: Vec<Vec<Expr>> = table
        .ports
        .iter()
        .map(|p| {
            let host_ip = p.port.host_ip.map(|ip| ip.octets().to_vec());
            publish(&IPV4, &p.port, host_ip, &p.address.octets())
        })
        .collect();
    let masquerade4 = masquerade(
        &IPV4,
        &table.subnet.network().octets(),
        &table.subnet.mask().octets(),
    );
    fill(&mut batch, v4, &table.bridge, masquerade4, published);
    localhost(&mut batch, v4, &table.bridge);
    let mut labels = vec![v4.label()];
    if let Some(subnet6) = table.subnet6 {
        let v6 = Table {
            family: NFPROTO_IPV6,
            name: &table.name,
        };
        // A port published on an IPv4 host address stays IPv4-only; one on all addresses is
        // reachable over IPv6 too, as with Docker.
        let published: Vec<Vec<Expr>> = table
            .ports
            .iter()
            .filter(|p| p.port.host_ip.is_none())
            .filter_map(|p| Some(publish(&IPV6, &p.port, None, &p.address6?.octets())))
            .collect();
        let masquerade6 = masquerade(&IPV6, &subnet6.network().octets(), &subnet6.mask().octets());
        fill(&mut batch, v6, &table.bridge, masquerade6, published);
        labels.push(v6.label());
    }
    (batch, labels.join(", "))
}

/// What makes published ports answer on the host's 127.0.0.1 (IPv4 only: the kernel never routes
/// ::1 out of the host): loopback sources leaving on the bridge masqueraded, and the guard against
/// containers' packets to 127.0.0.0/8.
fn localhost(batch: &mut Batch, t: Table, bridge: &str) {
    batch.base_chain(t, "guard", "filter", NF_INET_PRE_ROUTING, PRIORITY_RAW);
    batch.rule(t, "postrouting", &masquerade_localhost(bridge));
    batch.rule(t, "guard", &no_loopback_from(bridge));
}

/// One family's table, replaced whole: its chains, the masquerade rule, the published ports'
/// DNAT rules and the forward chain's rules.
fn fill(
    batch: &mut Batch,
    t: Table,
    bridge: &str,
    masquerade: Vec<Expr>,
    published: Vec<Vec<Expr>>,
) {
    // Add-then-delete-then-add: idempotent whether or not the table exists.
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE);
    batch.table(NFT_MSG_DELTABLE, t, 0);
    batch.table(NFT_MSG_NEWTABLE, t, NLM_F_CREATE);
    batch.base_chain(
        t,
        "postrouting",
        "nat",
        NF_INET_POST_ROUTING,
        PRIORITY_SRCNAT,
    );
    batch.base_chain(t, "prerouting", "nat", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT);
    batch.base_chain(t, "output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT);
    batch.base_chain(t, "forward", "filter", NF_INET_FORWARD, PRIORITY_FILTER);
    batch.rule(t, "postrouting", &masquerade);
    for exprs in &published {
        for chain in ["prerouting", "output"] {
            batch.rule(t, chain, exprs);
        }
    }
    for exprs in forward_into(bridge) {
        batch.rule(t, "forward", &exprs);
    }
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
        Expr::Cmp {
            op: NFT_CMP_NEQ,
            data: net.to_vec(),
        },
        Expr::Masquerade,
    ]
}

/// The loopback network, 127.0.0.0/8: its first byte.
const LOOPBACK_NET: [u8; 4] = [127, 0, 0, 0];
const LOOPBACK_MASK: [u8; 4] = [255, 0, 0, 0];

/// `oifname BRIDGE ip saddr 127.0.0.0/8 masquerade`: a connection from the host to
/// 127.0.0.1:PUBLISHED, sent to a container by the output chain's DNAT, leaves from the gateway's
/// address (a container would answer 127.0.0.1 on its own loopback). The kernel lets a loopback
/// source out on the bridge because poc sets the bridge's `route_localnet`.
fn masquerade_localhost(bridge: &str) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: NFT_META_OIFNAME,
            dreg: REG_1,
        },
        Expr::equals(&Expr::ifname(bridge)),
        Expr::load(NFT_PAYLOAD_NETWORK_HEADER, 12, 4),
        Expr::Bitwise {
            mask: LOOPBACK_MASK.to_vec(),
        },
        Expr::equals(&LOOPBACK_NET),
        Expr::Masquerade,
    ]
}

/// `iifname BRIDGE ip daddr 127.0.0.0/8 drop`, before conntrack and NAT: `route_localnet` on the
/// bridge would otherwise deliver a container's packet to 127.0.0.1 to the host's loopback-only
/// services (kube-proxy's CVE-2020-8558). Replies to the host's localhost connections carry the
/// gateway's address here; NAT turns it back into 127.0.0.1 after this hook.
fn no_loopback_from(bridge: &str) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: NFT_META_IIFNAME,
            dreg: REG_1,
        },
        Expr::equals(&Expr::ifname(bridge)),
        Expr::load(NFT_PAYLOAD_NETWORK_HEADER, 16, 4),
        Expr::Bitwise {
            mask: LOOPBACK_MASK.to_vec(),
        },
        Expr::equals(&LOOPBACK_NET),
        Expr::Verdict(NF_DROP),
    ]
}

/// `fib daddr type local [ip daddr HOST_IP] PROTO dport HOST_PORT dnat to ADDRESS:PORT`, for
/// packets from outside (prerouting) and from the host itself (output).
fn publish(
    layout: &Layout,
    port: &PortMapping,
    host_ip: Option<Vec<u8>>,
    address: &[u8],
) -> Vec<Expr> {
    let mut exprs = vec![Expr::Fib, Expr::equals(&RTN_LOCAL.to_ne_bytes())];
    if let Some(host_ip) = host_ip {
        exprs.push(Expr::load(
            NFT_PAYLOAD_NETWORK_HEADER,
            layout.destination,
            host_ip.len() as u32,
        ));
        exprs.push(Expr::equals(&host_ip));
    }
    exprs.extend([
        Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: REG_1,
        },
        Expr::equals(&[port.protocol.number()]),
        Expr::load(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
        Expr::equals(&port.host_port.to_be_bytes()),
        Expr::Immediate {
            reg: REG_1,
            data: address.to_vec(),
        },
        Expr::Immediate {
            reg: REG_2,
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
fn forward_into(bridge: &str) -> Vec<Vec<Expr>> {
    let name = Expr::ifname(bridge);
    let interface = |key| Expr::Meta { key, dreg: REG_1 };
    let any_bit = |mask: u32| {
        [
            Expr::Bitwise {
                mask: mask.to_ne_bytes().to_vec(),
            },
            Expr::Cmp {
                op: NFT_CMP_NEQ,
                data: vec![0; 4],
            },
        ]
    };
    let [state_mask, state_set] = any_bit(CT_STATE_ESTABLISHED_RELATED);
    let [status_mask, status_set] = any_bit(CT_STATUS_DNAT);
    vec![
        vec![
            interface(NFT_META_OIFNAME),
            Expr::Cmp {
                op: NFT_CMP_NEQ,
                data: name.clone(),
            },
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![
            interface(NFT_META_IIFNAME),
            Expr::equals(&name),
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![
            Expr::Ct { key: NFT_CT_STATE },
            state_mask,
            state_set,
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![
            Expr::Ct { key: NFT_CT_STATUS },
            status_mask,
            status_set,
            Expr::Verdict(NF_ACCEPT),
        ],
        vec![Expr::Verdict(NF_DROP)],
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

/// Golden batches: the bytes poc sends the kernel, kept in `src/network/testdata/` as hex, 16
/// bytes a line, so that a change to the encoder that changes what the kernel gets shows up here.
/// `POC_BLESS=1 cargo test` writes them anew after a change meant to alter them.
#[cfg(test)]
pub(super) fn assert_golden(case: &str, batch: Batch) {
    let mut batch = batch;
    batch.message(NFNL_MSG_BATCH_END, 0, 0, &Attrs::default());
    let hex: String = batch
        .buf
        .chunks(16)
        .map(|line| {
            let bytes: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            bytes.join(" ") + "\n"
        })
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/network/testdata")
        .join(format!("{case}.hex"));
    if std::env::var_os("POC_BLESS").is_some() {
        std::fs::write(&path, &hex).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == hex,
        "{case}: the batch differs from {}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{PortMapping, Published};

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
    fn the_default_networks_table_is_sent_as_before() {
        let (batch, labels) = nat_batch(&nat_table("poc-poc0", "poc0", "10.77.0.0/16", None));
        assert_eq!(labels, "ip poc-poc0");
        assert_golden("default", batch);
    }

    #[test]
    fn a_named_networks_table_with_published_ports_is_sent_as_before() {
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
    fn an_ipv6_networks_tables_are_sent_as_before() {
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
    fn a_networks_removal_is_sent_as_before() {
        let tables = [NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_BRIDGE].map(|family| Table {
            family,
            name: "poc-poc0",
        });
        assert_golden("remove", removal_batch(&tables));
    }

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
        let t = Table {
            family: NFPROTO_IPV4,
            name: "t",
        };
        b.table(NFT_MSG_NEWTABLE, t, 0);
        b.base_chain(t, "c", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT);
        assert_eq!(b.acked, 2);
        let first_len = u32::from_ne_bytes(b.buf[..4].try_into().unwrap()) as usize;
        assert_eq!(first_len, 20, "batch begin: header and nfgenmsg only");
        assert_eq!(&b.buf[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }
}
