//! Named networks (`poc network create NAME`): their records in the image store, one private JSON
//! file each (`<store>/networks/NAME.json`), the choice of a free subnet, and creation all or nothing.
//! Owns those records; the bridge, tables and leases of a network stay with the rest of this module.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::{Ipv4Network, Ipv6Network};
use nix::fcntl::Flock;

use super::{BridgeConfig, NamedNetwork, NetworkError, DEFAULT_NETWORK};
use crate::error::io;

/// Names Docker keeps for its predefined networks; `bridge` is poc's default network.
const RESERVED: [&str; 3] = [DEFAULT_NETWORK, "none", "host"];

/// Where subnets are picked when none is given: /24s from 10.78.0.0 up, next to the default
/// network's 10.77.0.0/16 and apart from Docker's and podman's pools.
const POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 78, 0, 0), 15);
const POOL_PREFIX: u8 = 24;

/// A record file is named after its network; the store lock sits beside them.
const RECORD_SUFFIX: &str = ".json";
const STORE_LOCK: &str = "lock";

/// A network made by `poc network create`, as its record keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRecord {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// The bridge interface: `pocb` and 10 hex digits of the id.
    pub bridge: String,
    /// As text ("10.78.0.0/24"), as ipnetwork's serde support writes it.
    pub subnet: Ipv4Network,
    #[serde(default)]
    pub subnet6: Option<Ipv6Network>,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

impl NetworkRecord {
    /// The network's bridge, its leases and lock under `leases_root` (the state root's networks).
    pub fn bridge_config(&self, records: &Path, leases_root: &Path) -> BridgeConfig {
        BridgeConfig {
            name: self.bridge.clone(),
            subnet: self.subnet,
            subnet6: self.subnet6,
            state_dir: leases_root.join(&self.bridge),
            named: Some(NamedNetwork {
                name: self.name.clone(),
                record: record_path(records, &self.name),
            }),
        }
    }
}

/// What `poc network create` asks for.
pub struct CreateRequest {
    pub name: String,
    pub subnet: Option<Ipv4Network>,
    pub subnet6: Option<Ipv6Network>,
}

/// Network names follow poc's one rule for names (crate::names: Docker's), with their own message.
pub fn check_name(name: &str) -> Result<(), String> {
    crate::names::parse_name(name).map(drop).map_err(|_| {
        format!(
            "'{name}' is not a network name (a letter or digit, then letters, digits, '_', '.', '-'; at most 128)"
        )
    })
}

fn record_path(records: &Path, name: &str) -> PathBuf {
    records.join(format!("{name}{RECORD_SUFFIX}"))
}

fn not_found(name: &str) -> NetworkError {
    NetworkError::Refused(format!("network {name} not found"))
}

/// The record of network `name`.
pub fn get(records: &Path, name: &str) -> Result<NetworkRecord, NetworkError> {
    check_name(name).map_err(|_| not_found(name))?;
    let path = record_path(records, name);
    let text = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(name)),
        other => other.map_err(io("read", &path))?,
    };
    Ok(serde_json::from_slice(&text).map_err(|e| io("read", &path)(e.into()))?)
}

/// Every named network, by name.
pub fn list(records: &Path) -> Result<Vec<NetworkRecord>, NetworkError> {
    let entries = match std::fs::read_dir(records) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(io("list", records))?,
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list", records))?;
        let file = entry.file_name();
        if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(RECORD_SUFFIX)) {
            found.push(get(records, name)?);
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Creates network `req.name`: its record, then its bridge and tables (through `set_up`). All or
/// nothing: if the bridge cannot be set up, what was made is removed again. Creations take the
/// store's lock, so two of them never pick one name or one subnet.
pub fn create(
    records: &Path,
    leases_root: &Path,
    default_subnet: Ipv4Network,
    req: CreateRequest,
    set_up: &dyn Fn(&BridgeConfig) -> Result<(), NetworkError>,
) -> Result<NetworkRecord, NetworkError> {
    if RESERVED.contains(&req.name.as_str()) {
        return Err(NetworkError::Refused(format!(
            "{} is a predefined network; choose another name",
            req.name
        )));
    }
    check_name(&req.name).map_err(NetworkError::Refused)?;
    crate::private::ensure_dir(records).map_err(io("create", records))?;
    let _lock = lock_store(records)?;
    if record_path(records, &req.name).exists() {
        return Err(NetworkError::Refused(format!(
            "network with name {} already exists",
            req.name
        )));
    }
    let others = list(records)?;
    let subnet = match req.subnet {
        Some(subnet) => {
            check_overlap(subnet, default_subnet, &others)?;
            subnet
        }
        None => pick_subnet(
            default_subnet,
            &others,
            &super::rtnl::Rtnl::open()?.ipv4_networks()?,
        )?,
    };
    if let Some(subnet6) = req.subnet6 {
        check_overlap6(subnet6, &others)?;
    }
    let id = crate::id::new_hex_id();
    let record = NetworkRecord {
        bridge: format!("pocb{}", &id[..10]),
        id,
        name: req.name,
        subnet,
        subnet6: req.subnet6,
        created: crate::units::now_secs(),
    };
    write_record(records, &record)?;
    let bridge = record.bridge_config(records, leases_root);
    if let Err(e) = set_up(&bridge) {
        return Err(match super::remove(&bridge) {
            Ok(()) => e,
            Err(cleanup) => {
                NetworkError::Refused(format!("{e} (and cleaning up failed too: {cleanup})"))
            }
        });
    }
    Ok(record)
}

fn lock_store(records: &Path) -> Result<Flock<std::fs::File>, NetworkError> {
    super::ipam::lock_file(&records.join(STORE_LOCK))
}

/// Written beside its final name and renamed over it: a reader never sees half a record.
fn write_record(records: &Path, record: &NetworkRecord) -> Result<(), NetworkError> {
    let path = record_path(records, &record.name);
    let temporary = records.join(format!(".{}.tmp", record.name));
    let text = serde_json::to_vec_pretty(record).map_err(|e| io("write", &path)(e.into()))?;
    let written = crate::private::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()));
    written
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            io("write", &path)(e).into()
        })
}

/// Removes a record; one already gone is fine.
pub(super) fn remove_record(path: &Path) -> Result<(), NetworkError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e).into()),
        _ => Ok(()),
    }
}

fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

fn check_overlap(
    subnet: Ipv4Network,
    default_subnet: Ipv4Network,
    others: &[NetworkRecord],
) -> Result<(), NetworkError> {
    let taken = std::iter::once((DEFAULT_NETWORK, default_subnet))
        .chain(others.iter().map(|r| (r.name.as_str(), r.subnet)));
    for (name, other) in taken {
        if overlaps(subnet, other) {
            return Err(NetworkError::Refused(format!(
                "subnet {subnet} overlaps network {name}'s {other}"
            )));
        }
    }
    Ok(())
}

fn check_overlap6(subnet: Ipv6Network, others: &[NetworkRecord]) -> Result<(), NetworkError> {
    for other in others {
        if let Some(theirs) = other.subnet6 {
            if subnet.contains(theirs.network()) || theirs.contains(subnet.network()) {
                return Err(NetworkError::Refused(format!(
                    "subnet {subnet} overlaps network {}'s {theirs}",
                    other.name
                )));
            }
        }
    }
    Ok(())
}

/// The first /24 of the pool that overlaps no poc network and nothing the host has addresses or
/// routes for (`host` as address and prefix, as rtnetlink lists them).
fn pick_subnet(
    default_subnet: Ipv4Network,
    others: &[NetworkRecord],
    host: &[(Ipv4Addr, u8)],
) -> Result<Ipv4Network, NetworkError> {
    let pool =
        Ipv4Network::new(POOL.0, POOL.1).map_err(|e| NetworkError::Refused(e.to_string()))?;
    let host: Vec<Ipv4Network> = host
        .iter()
        .filter_map(|(ip, prefix)| Ipv4Network::new(*ip, *prefix).ok())
        .collect();
    let taken: Vec<Ipv4Network> = std::iter::once(default_subnet)
        .chain(others.iter().map(|r| r.subnet))
        .chain(host)
        .collect();
    let step = 1u32 << (32 - POOL_PREFIX);
    (0..pool.size() / step)
        .filter_map(|i| {
            Ipv4Network::new(Ipv4Addr::from(u32::from(POOL.0) + i * step), POOL_PREFIX).ok()
        })
        .find(|candidate| !taken.iter().any(|t| overlaps(*candidate, *t)))
        .ok_or_else(|| {
            NetworkError::Refused(format!(
                "no free /{POOL_PREFIX} left in {pool}; give one with --subnet"
            ))
        })
}

/// Subnets are kept as text in records ("10.78.0.0/24"), as users write them.
#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Network {
        text.parse().unwrap()
    }

    fn record(name: &str, subnet: &str) -> NetworkRecord {
        NetworkRecord {
            id: "ab".repeat(32),
            name: name.into(),
            bridge: "pocbabababab".into(),
            subnet: net(subnet),
            subnet6: Some("fd42:1::/64".parse().unwrap()),
            created: 1,
        }
    }

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["a", "web", "my_net.2-b", "9lives"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "_x",
            "a b",
            "a/b",
            "..",
            "é",
            &"a".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_free_24_skips_networks_and_the_hosts_routes() {
        let default = net("10.77.0.0/16");
        let others = [record("a", "10.78.0.0/24")];
        let host = [
            (Ipv4Addr::new(10, 78, 1, 7), 24),
            (Ipv4Addr::new(10, 78, 2, 0), 23),
        ];
        assert_eq!(
            pick_subnet(default, &others, &host).unwrap(),
            net("10.78.4.0/24")
        );
        // A host route covering the whole pool leaves nothing.
        let everything = [(Ipv4Addr::new(10, 0, 0, 0), 8)];
        assert!(pick_subnet(default, &[], &everything).is_err());
    }

    #[test]
    fn overlapping_subnets_are_refused() {
        let default = net("10.77.0.0/16");
        let others = [record("a", "10.200.1.0/24")];
        assert!(check_overlap(net("10.200.1.128/25"), default, &others).is_err());
        assert!(check_overlap(net("10.200.0.0/16"), default, &others).is_err());
        assert!(check_overlap(net("10.77.3.0/24"), default, &others).is_err());
        assert!(check_overlap(net("10.200.2.0/24"), default, &others).is_ok());
        assert!(check_overlap6("fd42:1::/48".parse().unwrap(), &others).is_err());
        assert!(check_overlap6("fd42:2::/64".parse().unwrap(), &others).is_ok());
    }

    #[test]
    fn records_round_trip_with_subnets_as_text() {
        let r = record("web", "10.78.0.0/24");
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"subnet\":\"10.78.0.0/24\""), "{text}");
        assert_eq!(serde_json::from_str::<NetworkRecord>(&text).unwrap(), r);
        let v4_only = text.replace("\"fd42:1::/64\"", "null");
        assert_eq!(
            serde_json::from_str::<NetworkRecord>(&v4_only)
                .unwrap()
                .subnet6,
            None
        );
    }
}
