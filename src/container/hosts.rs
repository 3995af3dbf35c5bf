//! Name resolution on a named network, without a daemon: whenever a member joins or leaves, every
//! running member's /etc/hosts is rewritten (under the network lock) to name all the others. Owns
//! only that rewrite; the text and the in-place write are network::hosts's, membership the leases'.

use std::path::PathBuf;

use super::state::{self, Observed, State, Status};
use super::ContainerError;
use crate::config::Paths;
use crate::network::{self, hosts::Peer, BridgeConfig};

/// Rewrites the hosts file of every member of `bridge`'s named network, so that each names all the
/// others (a container that left has given its lease back already, so it is no member). Nothing to do on the default network: as Docker's, it has no names.
pub fn refresh(paths: &Paths, bridge: &BridgeConfig) -> Result<(), ContainerError> {
    let Some(named) = &bridge.named else {
        return Ok(());
    };
    let _lock = network::lock(bridge)?;
    let members = members(paths, bridge)?;
    for (i, member) in members.iter().enumerate() {
        let others: Vec<Peer> = members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| m.peer.clone())
            .collect();
        match network::hosts::set_peers(&member.hosts, &named.name, &others) {
            // Not written yet (the member writes its own, then refreshes) or removed meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.map_err(crate::error::io("rewrite", &member.hosts))?,
        }
    }
    Ok(())
}

struct Member {
    /// Its hosts file, bound to the container's /etc/hosts.
    hosts: PathBuf,
    /// How the others name it.
    peer: Peer,
}

/// The live containers holding an address on `bridge`.
fn members(paths: &Paths, bridge: &BridgeConfig) -> Result<Vec<Member>, ContainerError> {
    let mut ids = network::holders(bridge)?;
    ids.sort();
    Ok(ids
        .iter()
        .filter_map(|id| state::load(paths, id).ok())
        .filter(|s| is_live_member(s, bridge))
        .filter_map(|s| member(paths, &s))
        .collect())
}

fn is_live_member(s: &State, bridge: &BridgeConfig) -> bool {
    s.network.as_ref().is_some_and(|a| a.bridge == bridge.name)
        && s.status != Status::Exited
        && s.observed() != Observed::Dead
}

fn member(paths: &Paths, s: &State) -> Option<Member> {
    let attachment = s.network.as_ref()?;
    let etc = s.container_dir.join("etc");
    // From the config poc wrote, never from etc/hostname: the container can write that file (it is
    // its /etc/hostname), and whatever it holds would become lines in the other members' hosts.
    let spec = super::load_config(paths, &s.id).ok()?;
    let hostname = spec.hostname().clone().unwrap_or_default();
    Some(Member {
        hosts: etc.join("hosts"),
        peer: Peer::new(
            attachment.address,
            [
                s.name.clone().unwrap_or_default(),
                hostname,
                s.id.short().to_string(),
            ],
        ),
    })
}
