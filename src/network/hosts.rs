//! The /etc/hosts of a named network's members: each lists the others' names on their addresses,
//! as Docker's embedded DNS answers them, without a resolver process. Owns the text and the in-place
//! rewrite of one file; who the members are is the caller's to say.

use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// One member of a network as others see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub address: Ipv4Addr,
    /// Container name, hostname and short id, as far as it has them; repeats are left out.
    pub names: Vec<String>,
}

impl Peer {
    pub fn new(address: Ipv4Addr, names: impl IntoIterator<Item = String>) -> Self {
        let mut unique: Vec<String> = Vec::new();
        for name in names {
            if !name.is_empty() && !unique.contains(&name) {
                unique.push(name);
            }
        }
        Peer {
            address,
            names: unique,
        }
    }
}

/// Where the peers' lines begin; what is above (localhost, the container's own name, anything
/// written there since) is kept.
const MARKER: &str = "# other containers on network ";

/// A member's hosts file `current` with its peers' lines replaced by `peers`.
pub fn with_peers(current: &str, network: &str, peers: &[Peer]) -> String {
    let own = current.find(MARKER).map_or(current, |at| &current[..at]);
    let mut text = own.trim_end_matches('\n').to_string();
    text.push('\n');
    if !peers.is_empty() {
        text.push_str(&format!("{MARKER}{network}\n"));
    }
    for peer in peers {
        text.push_str(&format!("{}\t{}\n", peer.address, peer.names.join(" ")));
    }
    text
}

/// The largest hosts file poc rewrites (a thousand members take about 60 KiB).
const MAX_HOSTS_FILE: u64 = 1 << 20;

/// Sets the peers of the hosts file at `path`, in place. The file is bind-mounted into the
/// container, and a rename would only replace the name in poc's state directory, never the inode
/// the container sees; so the new text is written over the old at offset 0 in one pwrite, then the
/// file is cut to its length. A reader sees the old or the new entries, never an empty file: when
/// the new text is shorter, the pwrite pads it with newlines to the old length, so what a reader
/// catches before the truncate ends in blank lines, not in the old text's tail. Opened without
/// following a symlink (it is poc's own file in poc's state directory, but no need to trust that)
/// and never created: a member whose file is not written yet writes its own. A file its container
/// grew past [`MAX_HOSTS_FILE`] or filled with what is not text is left as it is.
pub fn set_peers(path: &Path, network: &str, peers: &[Peer]) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // The container can write its /etc/hosts: a file grown past any real hosts file is its own
    // business, not something for poc to read into memory and copy under the network lock.
    // Nor is one that is not text.
    let mut bytes = Vec::new();
    (&file).take(MAX_HOSTS_FILE + 1).read_to_end(&mut bytes)?;
    let Some(current) = String::from_utf8(bytes)
        .ok()
        .filter(|text| text.len() as u64 <= MAX_HOSTS_FILE)
    else {
        return Ok(());
    };
    let text = with_peers(&current, network, peers);
    if text == current {
        return Ok(());
    }
    let mut bytes = text.as_bytes().to_vec();
    if bytes.len() < current.len() {
        bytes.resize(current.len(), b'\n');
    }
    file.write_all_at(&bytes, 0)?;
    file.set_len(text.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_follow_the_containers_own_lines_and_replace_the_old_ones() {
        let own =
            super::super::hosts_file("ab12", Some(Ipv4Addr::new(10, 1, 0, 2)), None, Some("web"));
        let peers = [Peer::new(
            Ipv4Addr::new(10, 1, 0, 3),
            [
                "db".to_string(),
                "cd34".into(),
                "cd34".into(),
                String::new(),
            ],
        )];
        let text = with_peers(&own, "app", &peers);
        assert!(text.starts_with(&own));
        assert!(
            text.ends_with("# other containers on network app\n10.1.0.3\tdb cd34\n"),
            "{text}"
        );
        assert_eq!(with_peers(&text, "app", &[]), own);
        assert_eq!(with_peers(&text, "app", &peers), text);
    }

    #[test]
    fn a_rewrite_keeps_the_inode_and_cuts_to_the_new_length() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1\tlocalhost\n").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        let peers = [
            Peer::new(Ipv4Addr::new(10, 1, 0, 3), ["a".to_string()]),
            Peer::new(Ipv4Addr::new(10, 1, 0, 4), ["b".to_string()]),
        ];
        set_peers(&path, "n", &peers).unwrap();
        let long = std::fs::read_to_string(&path).unwrap();
        assert!(long.ends_with("10.1.0.3\ta\n10.1.0.4\tb\n"), "{long}");
        set_peers(&path, "n", &peers[1..]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.0.0.1\tlocalhost\n# other containers on network n\n10.1.0.4\tb\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        // Never created, never followed.
        assert!(set_peers(&dir.path().join("missing"), "n", &[]).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(set_peers(&link, "n", &[]).is_err());
    }
}
