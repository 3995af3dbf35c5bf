//! Who a container's process runs as: `--user`/`-u` (name, uid, uid:gid, name:group) looked up in
//! the container's own /etc/passwd and /etc/group, read through a descriptor of its root (an image's
//! symlink cannot point the lookup at the host's files), with its supplementary groups, as Docker.

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::fcntl::{OFlag, ResolveFlag};

/// The ids a process is given: user, primary group, supplementary groups (primary first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user {0:?}: use a name or uid, optionally :group or :gid")]
    Invalid(String),
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user` (None: root) inside the container root `root`.
pub fn resolve(root: BorrowedFd, user: Option<&str>) -> Result<UserIds, UserError> {
    let passwd = parse_passwd(&read_in_root(root, "/etc/passwd"));
    let groups = parse_group(&read_in_root(root, "/etc/group"));
    resolve_in(&passwd, &groups, user.unwrap_or("0"))
}

fn resolve_in(passwd: &[Passwd], groups: &[Group], spec: &str) -> Result<UserIds, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => Some(
            passwd
                .iter()
                .find(|p| p.name == user)
                .ok_or_else(|| UserError::NoUser(user.to_string()))?,
        ),
    };
    let uid = match (user.parse::<u32>(), entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(p)) => p.uid,
        (Err(_), None) => return Err(UserError::NoUser(user.to_string())),
    };
    // Docker's rule: a uid without a passwd entry runs with gid 0.
    let gid = match group {
        None => entry.map_or(0, |p| p.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|gr| gr.name == g)
                    .ok_or_else(|| UserError::NoGroup(g.to_string()))?
                    .gid
            }
        },
    };
    let mut ids = vec![gid];
    if let Some(name) = entry.map(|p| p.name.as_str()) {
        for g in groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
        {
            if !ids.contains(&g.gid) {
                ids.push(g.gid);
            }
        }
    }
    Ok(UserIds {
        uid,
        gid,
        groups: ids,
    })
}

/// A small file of the container's; missing, unreadable or not a regular file reads as empty, as
/// for an image without one. poc reads it on the host, outside the container's device rules: a
/// device node or FIFO planted there is never opened (opening a device can act, e.g. a watchdog),
/// only looked at through an O_PATH descriptor.
fn read_in_root(root: BorrowedFd, path: &str) -> String {
    let Ok(found) =
        crate::rootfs::open_in(root, Path::new(path), OFlag::O_PATH, ResolveFlag::empty())
    else {
        return String::new();
    };
    let is_file = nix::sys::stat::fstat(&found).is_ok_and(|st| {
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFREG
    });
    if !is_file {
        return String::new();
    }
    let Ok(file) = std::fs::File::open(crate::rootfs::proc_path(&found)) else {
        return String::new();
    };
    let mut text = String::new();
    // An image's /etc/passwd is small; a huge one is not worth reading.
    let _ = file.take(1 << 20).read_to_string(&mut text);
    text
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:root\nwheel:x:10:root,app\nvideo:x:27:app\napp:x:1000:\nnogroup:x:65534:\n";

    fn ids(spec: &str) -> Result<UserIds, UserError> {
        resolve_in(&parse_passwd(PASSWD), &parse_group(GROUP), spec)
    }

    #[test]
    fn names_numbers_and_groups_resolve_as_docker_does() {
        assert_eq!(
            ids("0").unwrap(),
            UserIds {
                uid: 0,
                gid: 0,
                groups: vec![0, 10]
            }
        );
        assert_eq!(
            ids("app").unwrap(),
            UserIds {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 27]
            }
        );
        assert_eq!(ids("app:video").unwrap().gid, 27);
        assert_eq!(ids("1000:5").unwrap().groups, vec![5, 10, 27]);
        // A uid unknown to the image runs with gid 0 and no other group.
        assert_eq!(
            ids("4242").unwrap(),
            UserIds {
                uid: 4242,
                gid: 0,
                groups: vec![0]
            }
        );
        assert!(matches!(ids("ghost"), Err(UserError::NoUser(_))));
        assert!(matches!(ids("app:ghosts"), Err(UserError::NoGroup(_))));
        assert!(matches!(ids(":1"), Err(UserError::Invalid(_))));
        assert!(matches!(ids("1:"), Err(UserError::Invalid(_))));
    }

    #[test]
    fn a_fifo_or_a_symlink_out_in_place_of_etc_files_reads_as_empty() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        // Opening a FIFO would block poc; a link out of the root would read the host's file.
        nix::unistd::mkfifo(
            &etc.join("passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/group", etc.join("group")).unwrap();
        let fd = crate::rootfs::open_dir(root.path()).unwrap();
        use std::os::fd::AsFd;
        assert!(matches!(
            resolve(fd.as_fd(), Some("root")),
            Err(UserError::NoUser(_))
        ));
        assert_eq!(resolve(fd.as_fd(), None).unwrap().groups, vec![0]);
    }
}
