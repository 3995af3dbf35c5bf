//! A `poc run` container's place on its bridge network: address and published ports taken and
//! given back, and the /etc files (hostname, hosts, resolv.conf) that name them inside it.

use oci_spec::runtime::Spec;

use super::state::{self, Observed, State, Status};
use super::{hosts, ContainerError};
use crate::config::Paths;
use crate::error::io;
use crate::network::{self, Attachment, BridgeConfig, PortMapping};
use crate::spec::RunRequest;

/// hostname, hosts and resolv.conf, bound read-write into the container from its directory in the
/// store.
pub(super) fn write_etc_files(
    paths: &Paths,
    spec: &Spec,
    state: &State,
    req: &RunRequest,
) -> Result<(), ContainerError> {
    let dir = paths.container_etc_dir(&state.id);
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let hostname = spec.hostname().clone().unwrap_or_default();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let address = state.network.as_ref().map(|a| a.address);
    let address6 = state
        .network
        .as_ref()
        .and_then(|a| a.ipv6.map(|v6| v6.address));
    for (file, text) in [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            network::hosts_file(&hostname, address, address6, state.name.as_deref()),
        ),
        (
            "resolv.conf",
            network::resolv_conf(&host_resolv, &req.network, &req.dns),
        ),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io("write", &path))?;
    }
    Ok(())
}

/// Takes an address (and host ports) on the bridge, records them, and makes sure the bridge and its
/// NAT are there, with this container's ports among the published ones.
pub(super) fn join_bridge(
    paths: &Paths,
    state: &mut State,
    bridge: &BridgeConfig,
    ports: &[PortMapping],
) -> Result<(), ContainerError> {
    let is_live = |holder: &str| {
        state::load(paths, holder)
            .is_ok_and(|s| s.status != Status::Exited && s.observed() != Observed::Dead)
    };
    state.network = Some(network::prepare(bridge, &state.id, ports, &is_live)?);
    state::save(paths, state)?;
    let published = if ports.is_empty() {
        Vec::new()
    } else {
        published_ports(paths, &bridge.name, None)
    };
    network::ensure_bridge(bridge, &published)?;
    Ok(())
}

/// The bridge a container is attached to: a named network's from its record, the default one's
/// from the attachment (its subnets follow from its addresses).
pub(super) fn bridge_of(paths: &Paths, attachment: &Attachment) -> BridgeConfig {
    if let Some(record) = attachment
        .network
        .as_ref()
        .and_then(|name| paths.network_record(name).ok())
        .filter(|r| r.bridge == attachment.bridge)
    {
        return paths.bridge_of_record(&record);
    }
    let subnet = ipnetwork::Ipv4Network::new(attachment.address, attachment.prefix)
        .and_then(|n| ipnetwork::Ipv4Network::new(n.network(), attachment.prefix))
        .unwrap_or(paths.subnet);
    BridgeConfig {
        subnet6: attachment.ipv6.and_then(|v6| v6.subnet()),
        ..paths.bridge_named(&attachment.bridge, subnet)
    }
}

/// The ports published on `bridge` by containers that hold them, but `except`.
fn published_ports(paths: &Paths, bridge: &str, except: Option<&str>) -> Vec<network::Published> {
    state::list(paths)
        .into_iter()
        .filter(|s| Some(s.id.as_str()) != except)
        .filter_map(|s| s.network)
        .filter(|a| a.bridge == bridge)
        .flat_map(|a| a.published().collect::<Vec<_>>())
        .collect()
}

/// Gives the container's place on the bridge back: veth, address, ports (and their NAT rules).
pub(super) fn leave_bridge(paths: &Paths, state: &State) -> Result<(), ContainerError> {
    let Some(attachment) = &state.network else {
        return Ok(());
    };
    let bridge = bridge_of(paths, attachment);
    network::release(&bridge, &state.id, attachment)?;
    hosts::refresh(paths, &bridge)?;
    if !attachment.ports.is_empty() {
        network::sync_ports(
            &bridge,
            &published_ports(paths, &bridge.name, Some(&state.id)),
        )?;
    }
    Ok(())
}
