//! The events journal: what happened to containers (start, exit, kill, update, OOM kill, memory
//! limit breaches, removal), one JSON line per event in `<state root>/events.jsonl`, appended by
//! whichever poc process saw it happen. No daemon: `poc events` reads the file and follows it with
//! inotify. Owns the journal files only.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::state::State;
use crate::config::Paths;
use crate::id::{ContainerId, SHORT_LEN};
use crate::units::now_ns;

const JOURNAL: &str = "events.jsonl";
const ROTATED: &str = "events.1.jsonl";
/// The journal is moved aside (one generation kept) once it is this big.
const ROTATE_AT: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub time: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: ContainerId,
    pub name: Option<String>,
    pub image: String,
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    pub fn new(st: &State, kind: &str, attributes: &[(&str, String)]) -> Self {
        Event {
            time: now_ns(),
            kind: kind.to_string(),
            id: st.id.clone(),
            name: st.name.clone(),
            image: st.image.clone(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    /// Is this about the container the user named: by name, or by an id prefix at least as long
    /// as the short id `ps` shows? (The container may be gone or not yet made, so a shorter prefix
    /// could not be told from a name: "a" would also match every id starting with a.)
    pub fn is_about(&self, query: &str) -> bool {
        self.name.as_deref() == Some(query)
            || (query.len() >= SHORT_LEN && self.id.starts_with(query))
    }
}

pub fn journal(paths: &Paths) -> PathBuf {
    paths.state_root.join(JOURNAL)
}

/// Appends an event. Never fails the operation that caused it: the journal is a record of what
/// happened, and a full disk must not stop a container from being stopped or removed.
pub fn record(paths: &Paths, st: &State, kind: &str, attributes: &[(&str, String)]) {
    let _ = append(paths, &Event::new(st, kind, attributes));
}

pub fn append(paths: &Paths, event: &Event) -> std::io::Result<()> {
    let path = journal(paths);
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    let mut file = crate::private::options()
        .append(true)
        .create(true)
        .open(&path)?;
    // One write with O_APPEND: lines from concurrent writers never interleave.
    file.write_all(&line)?;
    let meta = file.metadata()?;
    if meta.len() > ROTATE_AT {
        let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        // Only the writer that still finds this file at the journal's path moves it aside.
        if std::fs::metadata(&path).is_ok_and(|m| m.ino() == meta.ino()) {
            std::fs::rename(&path, paths.state_root.join(ROTATED))?;
        }
        drop(locked);
    }
    Ok(())
}

/// Every recorded event from `since` (ns) on, oldest first, and where the live journal ends.
pub fn read_since(paths: &Paths, since: u64) -> (Vec<Event>, Option<Position>) {
    let mut events = Vec::new();
    let _ = read_lines(&paths.state_root.join(ROTATED), 0, &mut events);
    let position = read_lines(&journal(paths), 0, &mut events);
    events.retain(|e| e.time >= since);
    events.sort_by_key(|e| e.time);
    (events, position)
}

/// The end of the live journal, for a reader that wants only what comes next. Writers append whole
/// lines in one write each, so the end is always a line's end.
pub fn end(paths: &Paths) -> Option<Position> {
    let meta = std::fs::metadata(journal(paths)).ok()?;
    Some(Position {
        ino: meta.ino(),
        offset: meta.len(),
    })
}

/// Where a reader stopped in the live journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    ino: u64,
    offset: u64,
}

/// Parses whole lines from `offset`; returns the position after the last whole line.
fn read_lines(path: &Path, offset: u64, out: &mut Vec<Event>) -> Option<Position> {
    let mut file = std::fs::File::open(path).ok()?;
    let ino = file.metadata().ok()?.ino();
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut reader = std::io::BufReader::new(file);
    let mut offset = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).ok()?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        offset += n as u64;
        if let Ok(event) = serde_json::from_slice(&line) {
            out.push(event);
        }
    }
    Some(Position { ino, offset })
}

/// Calls `each` for every event appended after `position` (None: the journal does not exist
/// yet), as it is appended, until `until` (ns) passes or `each` returns false. Woken by inotify on
/// the state root, which also sees the journal created or rotated.
pub fn follow(
    paths: &Paths,
    mut position: Option<Position>,
    until: Option<u64>,
    each: &mut dyn FnMut(&Event) -> bool,
) -> std::io::Result<()> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    crate::private::create_dir_all(&paths.state_root)?;
    inotify.add_watch(
        &paths.state_root,
        AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
    )?;
    let path = journal(paths);
    loop {
        let mut fresh = Vec::new();
        let current = std::fs::metadata(&path).ok().map(|m| m.ino());
        match position {
            // Rotated: finish the old file (now the rotated one), then start the new one.
            Some(p) if Some(p.ino) != current => {
                let rotated = paths.state_root.join(ROTATED);
                if std::fs::metadata(&rotated).is_ok_and(|m| m.ino() == p.ino) {
                    read_lines(&rotated, p.offset, &mut fresh);
                }
                position = read_lines(&path, 0, &mut fresh);
            }
            Some(p) => position = read_lines(&path, p.offset, &mut fresh).or(Some(p)),
            None => position = read_lines(&path, 0, &mut fresh),
        }
        for event in &fresh {
            if until.is_some_and(|u| event.time > u) || !each(event) {
                return Ok(());
            }
        }
        let timeout = match until {
            Some(u) => {
                let now = now_ns();
                if now >= u {
                    return Ok(());
                }
                PollTimeout::try_from(std::time::Duration::from_nanos(u - now))
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&inotify),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = inotify.read_events();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(root: &Path) -> Paths {
        Paths {
            state_root: root.to_path_buf(),
            store_root: root.join("store"),
            cgroup_parent: "/poc-unit".into(),
            bridge: "pocunit0".into(),
            subnet: "10.99.0.0/24".parse().unwrap(),
            subnet6: None,
        }
    }

    fn event(n: u64) -> Event {
        Event {
            time: n,
            kind: "start".into(),
            id: ContainerId::parse(&format!("{n:064}")).unwrap(),
            name: Some(format!("c{n}")),
            image: "busybox".into(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn appended_events_are_read_back_in_order_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let big = "x".repeat(64 << 10);
        let mut n = 0;
        while std::fs::metadata(dir.path().join(ROTATED)).is_err() {
            n += 1;
            let mut e = event(n);
            e.attributes.insert("pad".into(), big.clone());
            append(&p, &e).unwrap();
        }
        append(&p, &event(n + 1)).unwrap();
        let (events, _) = read_since(&p, 0);
        let times: Vec<u64> = events.iter().map(|e| e.time).collect();
        assert_eq!(times, (1..=n + 1).collect::<Vec<_>>());
        let (events, _) = read_since(&p, n);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn follow_sees_what_is_appended_after_it_started_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        append(&p, &event(1)).unwrap();
        let (_, position) = read_since(&p, 0);
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(journal(&p))
                    .unwrap();
                let line = serde_json::to_string(&event(2)).unwrap();
                let (a, b) = line.split_at(10);
                f.write_all(a.as_bytes()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
                f.write_all(format!("{b}\n").as_bytes()).unwrap();
                append(&p, &event(3)).unwrap();
            })
        };
        let mut seen = Vec::new();
        follow(&p, position, None, &mut |e| {
            seen.push(e.time);
            seen.len() < 2
        })
        .unwrap();
        writer.join().unwrap();
        assert_eq!(seen, vec![2, 3]);
    }

    #[test]
    fn is_about_matches_names_and_id_prefixes_as_long_as_a_short_id() {
        let e = event(7);
        assert!(e.is_about("c7"));
        assert!(e.is_about("000000000000"));
        assert!(e.is_about(&e.id.clone()));
        assert!(!e.is_about("0000"), "a short prefix could be a name");
        assert!(!e.is_about("c8"));
        assert!(!e.is_about(""));
    }
}
