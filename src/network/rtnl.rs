//! Links, addresses and routes through rtnetlink, synchronously: one socket, one request at a time,
//! each acknowledged. Built on rtnetlink's own message types; no async runtime on the start path.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{op}: {source}")]
    Kernel { op: String, source: std::io::Error },
    #[error("{op}: unexpected netlink reply")]
    Reply { op: String },
}

/// A veth pair to create: names, the host end's interface group and the peer's MAC, all fixed so
/// that the bridge's source checks can know them before the link exists.
pub struct Veth<'a> {
    pub host: &'a str,
    pub host_group: u32,
    pub peer: &'a str,
    pub peer_mac: [u8; 6],
}

pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the caller's current network namespace.
    pub fn open() -> Result<Self, RtnlError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(RtnlError::Socket)?;
        socket.bind_auto().map_err(RtnlError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(RtnlError::Socket)?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends one request and collects the replies until its ACK (or the end of a dump).
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|source| RtnlError::Kernel {
                op: op.into(),
                source,
            })?;

        let mut replies = Vec::new();
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .map_err(|source| RtnlError::Kernel {
                    op: op.into(),
                    source,
                })?;
            let mut offset = 0;
            while offset < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|_| RtnlError::Reply { op: op.into() })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(RtnlError::Reply { op: op.into() });
                }
                offset += len;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(RtnlError::Kernel {
                                op: op.into(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// The index of the link called `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, RtnlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("looking up link {name}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(RtnlError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge; `Ok(false)` if one of that name already exists.
    pub fn create_bridge(&mut self, name: &str) -> Result<bool, RtnlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.request(
            &format!("creating bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(true),
            Err(RtnlError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a veth pair: the host end here, attached to the bridge `master` and up; its peer
    /// created directly inside the network namespace of `pid`.
    pub fn create_veth(&mut self, veth: &Veth, pid: u32, master: u32) -> Result<(), RtnlError> {
        let host = veth.host;
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(veth.peer.to_string()));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(veth.peer_mac.to_vec()));
        peer_msg.attributes.push(LinkAttribute::NetNsPid(pid));
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::Group(veth.host_group));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            &format!("creating veth {host}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    pub fn set_up(&mut self, index: u32) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("bringing link {index} up"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
        .map(drop)
    }

    /// Deletes a link; a missing one is fine.
    pub fn delete_link(&mut self, name: &str) -> Result<(), RtnlError> {
        let Some(index) = self.link_index(name)? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            &format!("deleting link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        ) {
            Err(RtnlError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Adds `address/prefix` to the link; an address already there is fine. An IPv6 address skips
    /// duplicate address detection (poc's leases make it unique), so it is usable at once rather
    /// than tentative for a second.
    pub fn add_address(
        &mut self,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> Result<(), RtnlError> {
        let mut msg = AddressMessage::default();
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        match address {
            IpAddr::V4(_) => {
                msg.header.family = AddressFamily::Inet;
                msg.attributes.push(AddressAttribute::Local(address));
            }
            IpAddr::V6(_) => {
                msg.header.family = AddressFamily::Inet6;
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        msg.attributes.push(AddressAttribute::Address(address));
        match self.request(
            &format!("adding {address}/{prefix}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(RtnlError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// `default via gateway dev index`, for the gateway's family.
    pub fn add_default_route(&mut self, gateway: IpAddr, index: u32) -> Result<(), RtnlError> {
        let mut msg = RouteMessage::default();
        let (family, via) = match gateway {
            IpAddr::V4(ip) => (AddressFamily::Inet, RouteAddress::Inet(ip)),
            IpAddr::V6(ip) => (AddressFamily::Inet6, RouteAddress::Inet6(ip)),
        };
        msg.header.address_family = family;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(via));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("adding the default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Every IPv4 network the host uses: its interfaces' addresses (with their prefixes) and the
    /// destinations of its routes in every table, default routes aside.
    pub fn ipv4_networks(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, RtnlError> {
        let mut networks = Vec::new();
        let mut address = AddressMessage::default();
        address.header.family = AddressFamily::Inet;
        for reply in self.request(
            "listing the host's addresses",
            RouteNetlinkMessage::GetAddress(address),
            NLM_F_DUMP,
        )? {
            if let RouteNetlinkMessage::NewAddress(a) = reply {
                networks.extend(a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(std::net::IpAddr::V4(ip)) => {
                        Some((*ip, a.header.prefix_len))
                    }
                    _ => None,
                }));
            }
        }
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        for reply in self.request(
            "listing the host's routes",
            RouteNetlinkMessage::GetRoute(route),
            NLM_F_DUMP,
        )? {
            if let RouteNetlinkMessage::NewRoute(r) = reply {
                let prefix = r.header.destination_prefix_length;
                networks.extend(r.attributes.iter().find_map(|attr| match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) if prefix > 0 => {
                        Some((*ip, prefix))
                    }
                    _ => None,
                }));
            }
        }
        Ok(networks)
    }
}
