//! poc's nf_tables batches: the `ip` table for one bridge (and its `ip6` twin on a network with an
//! IPv6 subnet) in `nat.rs`, the bridge family's source checks in `antispoof.rs`, each written
//! through the nf_tables netlink interface in a single batch, so the kernel swaps whole tables
//! atomically. Touches no other table.
//! The expressions are in `expr.rs`, the kernel's numbers in `nf_tables.rs`.

mod expr;
mod nat;
pub(super) mod nf_tables;

use std::time::Duration;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use expr::Attrs;
pub(super) use expr::Expr;
pub use nat::{apply, remove, NatTable};
use nf_tables::*;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("nftables refused the update of table {table}: {source}")]
    Kernel {
        table: String,
        source: std::io::Error,
    },
    #[error("nftables' answer to the update of table {table} is not a netlink message")]
    Reply { table: String },
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

/// One nfnetlink message: its `nfgenmsg` header (family, version, resource id) and attributes.
struct NfMessage {
    kind: u16,
    family: u8,
    /// The subsystem, on the batch markers; 0 otherwise.
    res_id: u16,
    attrs: Vec<u8>,
}

/// `struct nfgenmsg`: family, version (NFNETLINK_V0), resource id in network order.
const NFGENMSG_LEN: usize = 4;
const NFNETLINK_V0: u8 = 0;

impl NetlinkSerializable for NfMessage {
    fn message_type(&self) -> u16 {
        self.kind
    }

    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN + self.attrs.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        let (header, attrs) = buffer.split_at_mut(NFGENMSG_LEN);
        header[0] = self.family;
        header[1] = NFNETLINK_V0;
        header[2..].copy_from_slice(&self.res_id.to_be_bytes());
        attrs.copy_from_slice(&self.attrs);
    }
}

impl NetlinkDeserializable for NfMessage {
    type Error = std::io::Error;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, Self::Error> {
        if payload.len() < NFGENMSG_LEN {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        Ok(NfMessage {
            kind: header.message_type,
            family: payload[0],
            res_id: u16::from_be_bytes([payload[2], payload[3]]),
            attrs: payload[NFGENMSG_LEN..].to_vec(),
        })
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
        batch.marker(NFNL_MSG_BATCH_BEGIN);
        batch
    }

    /// The batch's begin or end: no acknowledgement, the subsystem as resource id.
    fn marker(&mut self, kind: u16) {
        let message = NfMessage {
            kind,
            family: 0,
            res_id: NFNL_SUBSYS_NFTABLES,
            attrs: Vec::new(),
        };
        self.push(message, NLM_F_REQUEST);
    }

    /// An nf_tables message, acknowledged by the kernel.
    fn message(&mut self, kind: u16, family: u8, flags: u16, attrs: Attrs) {
        self.deletes |= kind == NFT_MSG_DELTABLE || kind == NFT_MSG_DELSETELEM;
        self.acked += 1;
        let message = NfMessage {
            kind: (NFNL_SUBSYS_NFTABLES << 8) | kind,
            family,
            res_id: 0,
            attrs: attrs.0,
        };
        self.push(message, NLM_F_REQUEST | NLM_F_ACK | flags);
    }

    fn push(&mut self, message: NfMessage, flags: u16) {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let start = self.buf.len();
        self.buf.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut self.buf[start..]);
    }

    pub(super) fn table(&mut self, kind: u16, table: Table, flags: u16) {
        let mut a = Attrs::default();
        a.string(NFTA_TABLE_NAME, table.name);
        self.message(kind, table.family, flags, a);
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
        a.string(NFTA_CHAIN_TABLE, table.name);
        a.string(NFTA_CHAIN_NAME, chain);
        a.nested(NFTA_CHAIN_HOOK, |h| {
            h.be32(NFTA_HOOK_HOOKNUM, hook);
            h.be32(NFTA_HOOK_PRIORITY, priority as u32);
        });
        a.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
        a.string(NFTA_CHAIN_TYPE, kind);
        self.message(NFT_MSG_NEWCHAIN, table.family, NLM_F_CREATE, a);
    }

    pub(super) fn rule(&mut self, table: Table, chain: &str, exprs: &[Expr]) {
        let mut a = Attrs::default();
        a.string(NFTA_RULE_TABLE, table.name);
        a.string(NFTA_RULE_CHAIN, chain);
        a.nested(NFTA_RULE_EXPRESSIONS, |list| {
            exprs.iter().for_each(|e| e.encode(list))
        });
        let flags = NLM_F_CREATE | NLM_F_APPEND;
        self.message(NFT_MSG_NEWRULE, table.family, flags, a);
    }

    /// A hash set of `key_len`-byte keys; `key_type` (nft's data type number) is for `nft list`,
    /// which reads it to show the elements.
    pub(super) fn set(&mut self, table: Table, set: &str, key_type: u32, key_len: u32) {
        let mut a = Attrs::default();
        a.string(NFTA_SET_TABLE, table.name);
        a.string(NFTA_SET_NAME, set);
        a.be32(NFTA_SET_KEY_TYPE, key_type);
        a.be32(NFTA_SET_KEY_LEN, key_len);
        // Which the kernel requires: unique in the batch, as the message's sequence is.
        a.be32(NFTA_SET_ID, self.seq + 1);
        self.message(NFT_MSG_NEWSET, table.family, NLM_F_CREATE, a);
    }

    /// Adds (`NFT_MSG_NEWSETELEM`) or deletes (`NFT_MSG_DELSETELEM`) elements of a set.
    pub(super) fn elements(&mut self, kind: u16, table: Table, set: &str, keys: &[&[u8]]) {
        let mut a = Attrs::default();
        a.string(NFTA_SET_ELEM_LIST_TABLE, table.name);
        a.string(NFTA_SET_ELEM_LIST_SET, set);
        a.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            for key in keys {
                list.nested(NFTA_LIST_ELEM, |e| e.value(NFTA_SET_ELEM_KEY, key));
            }
        });
        let flags = if kind == NFT_MSG_NEWSETELEM {
            NLM_F_CREATE
        } else {
            0
        };
        self.message(kind, table.family, flags, a);
    }

    /// Sends the batch and waits for every message's acknowledgement; the first error wins (the
    /// kernel applies a batch whole or not at all). `table` names what it changes, for errors.
    pub(super) fn commit(mut self, table: &str) -> Result<(), NftError> {
        self.marker(NFNL_MSG_BATCH_END);
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
        let mut acknowledged = 0;
        while acknowledged < self.acked {
            let (data, _) = socket.recv_from_full().map_err(kernel)?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<NfMessage>::deserialize(&data[offset..])
                    .ok()
                    .filter(|reply| reply.header.length > 0)
                    .ok_or_else(|| NftError::Reply {
                        table: table.to_string(),
                    })?;
                offset += (reply.header.length as usize).next_multiple_of(4);
                if let NetlinkPayload::Error(e) = reply.payload {
                    acknowledged += 1;
                    if e.code.is_some() {
                        return Err(kernel(e.to_io()));
                    }
                }
            }
        }
        Ok(())
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

/// Golden batches: the bytes poc sends the kernel, kept in `src/network/testdata/` as hex, 16
/// bytes a line, so that a change to the encoder that changes what the kernel gets shows up here.
/// `POC_BLESS=1 cargo test` writes them anew after a change meant to alter them.
#[cfg(test)]
pub(super) fn assert_golden(case: &str, batch: Batch) {
    let mut batch = batch;
    batch.marker(NFNL_MSG_BATCH_END);
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

    #[test]
    fn a_batch_counts_the_messages_to_acknowledge() {
        let mut b = Batch::new();
        let t = Table {
            family: NFPROTO_IPV4,
            name: "t",
        };
        b.table(NFT_MSG_NEWTABLE, t, 0);
        b.base_chain(t, "c", "nat", NF_INET_POST_ROUTING, 100);
        assert_eq!(b.acked, 2);
        let first_len = u32::from_ne_bytes(b.buf[..4].try_into().unwrap()) as usize;
        assert_eq!(first_len, 20, "batch begin: header and nfgenmsg only");
        assert_eq!(&b.buf[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }
}
