//! Memory events of one container's cgroup, notified by the kernel rather than polled: on v2 an
//! inotify watch on `memory.events`; on v1 an eventfd registered in `cgroup.event_control` for OOM
//! and for usage crossing the soft and hard limits. Reads only; owns nothing in the cgroup tree.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{counter, fs, Manager};

/// What the kernel counted so far. v2: `memory.events` (high, max, oom_kill). v1: `failcnt`
/// for max, `oom_kill` from `memory.oom_control`, and for high the upward crossings of the soft
/// limit this watch saw (v1 keeps no such counter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryCounters {
    pub high: u64,
    pub max: u64,
    pub oom_kill: u64,
}

/// A counter that grew since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEvent {
    /// `memory-high`, `memory-max` or `oom-kill`.
    pub kind: &'static str,
    /// How many times since the last report, and in all.
    pub count: u64,
    pub total: u64,
}

/// Breaches of memory.high and memory.max come in storms (every failed charge of a thrashing
/// container counts): they are reported at most once per this interval, with their count.
const COALESCE: Duration = Duration::from_secs(1);

pub struct MemoryWatch {
    kind: WatchKind,
    /// What has been reported so far, and when breaches were last reported.
    reported: MemoryCounters,
    last_report: Option<Instant>,
    /// Breaches counted but held back.
    pending: bool,
}

enum WatchKind {
    V2 {
        inotify: Inotify,
        leaf: PathBuf,
    },
    V1 {
        dir: PathBuf,
        /// Readable when either eventfd is.
        epoll: Epoll,
        notify: V1Notify,
        /// (soft, hard) limits the thresholds were registered for.
        limits: (Option<u64>, Option<u64>),
        above_soft: bool,
        soft_crossings: u64,
    },
}

impl MemoryWatch {
    /// None without a memory controller (or if the kernel refuses the watch).
    pub fn new(manager: &Manager) -> Option<Self> {
        let kind = match manager {
            Manager::V2(m) => {
                let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
                inotify
                    .add_watch(&m.leaf().join("memory.events"), AddWatchFlags::IN_MODIFY)
                    .ok()?;
                WatchKind::V2 {
                    inotify,
                    leaf: m.leaf().to_path_buf(),
                }
            }
            Manager::V1(m) => {
                let dir = m.dir_of("memory")?;
                let limits = v1_limits(&dir);
                let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()?;
                let notify = V1Notify::register(&dir, limits, &epoll).ok()?;
                WatchKind::V1 {
                    above_soft: limits.0.is_some_and(|soft| v1_usage(&dir) > soft),
                    dir,
                    epoll,
                    notify,
                    limits,
                    soft_crossings: 0,
                }
            }
        };
        let mut watch = MemoryWatch {
            kind,
            reported: MemoryCounters::default(),
            last_report: None,
            pending: false,
        };
        watch.reported = watch.counters();
        Some(watch)
    }

    /// The fd that becomes readable when something may have changed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            WatchKind::V2 { inotify, .. } => inotify.as_fd(),
            WatchKind::V1 { epoll, .. } => epoll.0.as_fd(),
        }
    }

    /// When breaches held back by the coalescing interval are due, if any are.
    pub fn deadline(&self) -> Option<Instant> {
        Some(self.last_report? + COALESCE).filter(|_| self.pending)
    }

    /// Consumes the notification and returns the counters that grew: OOM kills at once, breaches
    /// at most once per [`COALESCE`]. `last` (the process exited) reports everything counted.
    pub fn check(&mut self, last: bool) -> Vec<MemoryEvent> {
        match &mut self.kind {
            WatchKind::V2 { inotify, .. } => {
                let _ = inotify.read_events();
            }
            WatchKind::V1 {
                dir,
                epoll,
                notify,
                limits,
                above_soft,
                soft_crossings,
            } => {
                // Reading the eventfds is what makes the (level-triggered) epoll quiet again.
                let _ = notify.any.read();
                // The kernel signals every crossing of the soft limit, up and down, in order: from
                // where usage was, the count says how many went up and where it is now.
                if let Some(crossings) = notify.soft.as_ref().and_then(|s| s.read().ok()) {
                    let ups = if *above_soft {
                        crossings / 2
                    } else {
                        crossings.div_ceil(2)
                    };
                    *soft_crossings += ups;
                    *above_soft ^= crossings % 2 == 1;
                }
                let now = v1_limits(dir);
                if now != *limits {
                    // `poc update` (or anyone) changed a limit: register thresholds at the new
                    // values (dropping the old eventfds unregisters the old ones).
                    if let Ok(fresh) = V1Notify::register(dir, now, epoll) {
                        *notify = fresh;
                        *limits = now;
                        *above_soft = now.0.is_some_and(|soft| v1_usage(dir) > soft);
                    }
                }
            }
        }
        let now = self.counters();
        let breaches_due = last || self.last_report.is_none_or(|t| t.elapsed() >= COALESCE);
        let r = &mut self.reported;
        let breaches: Vec<MemoryEvent> = [
            grown("memory-high", &mut r.high, now.high, breaches_due),
            grown("memory-max", &mut r.max, now.max, breaches_due),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !breaches.is_empty() {
            self.last_report = Some(Instant::now());
        }
        self.pending = now.high > r.high || now.max > r.max;
        breaches
            .into_iter()
            .chain(grown("oom-kill", &mut r.oom_kill, now.oom_kill, true))
            .collect()
    }

    pub fn counters(&self) -> MemoryCounters {
        match &self.kind {
            WatchKind::V2 { leaf, .. } => {
                let text = fs::read(leaf, "memory.events").unwrap_or_default();
                MemoryCounters {
                    high: counter(&text, "high "),
                    max: counter(&text, "max "),
                    oom_kill: counter(&text, "oom_kill "),
                }
            }
            WatchKind::V1 {
                dir,
                soft_crossings,
                ..
            } => {
                let oom = fs::read(dir, "memory.oom_control").unwrap_or_default();
                MemoryCounters {
                    high: *soft_crossings,
                    max: fs::read(dir, "memory.failcnt")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    oom_kill: counter(&oom, "oom_kill "),
                }
            }
        }
    }
}

/// An event for a counter that grew past what was reported, if it is due; marks it reported.
fn grown(kind: &'static str, reported: &mut u64, now: u64, due: bool) -> Option<MemoryEvent> {
    if !due || now <= *reported {
        return None;
    }
    let count = now - *reported;
    *reported = now;
    Some(MemoryEvent {
        kind,
        count,
        total: now,
    })
}

fn v1_usage(dir: &Path) -> u64 {
    fs::read(dir, "memory.usage_in_bytes")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (soft, hard) limits, None when unlimited.
fn v1_limits(dir: &Path) -> (Option<u64>, Option<u64>) {
    let limit = |file| {
        fs::read(dir, file)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v < (1 << 62))
    };
    (
        limit("memory.soft_limit_in_bytes"),
        limit("memory.limit_in_bytes"),
    )
}

/// v1 notifications: `any` for OOM and for usage crossing 7/8 of the hard limit, `soft` for
/// usage crossing the soft limit. The kernel checks thresholds every 128 page charges; usage never
/// passes the hard limit itself (charges fail and reclaim instead), hence the 7/8: the wake-up then
/// reads `failcnt` to see whether the limit was hit.
struct V1Notify {
    any: EventFd,
    soft: Option<EventFd>,
}

impl V1Notify {
    fn register(
        dir: &Path,
        (soft, hard): (Option<u64>, Option<u64>),
        epoll: &Epoll,
    ) -> std::io::Result<Self> {
        let eventfd = || EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK);
        let control = dir.join("cgroup.event_control");
        let register = |notify: &EventFd, file: &str, args: &str| -> std::io::Result<()> {
            // The kernel takes its own reference to the target file; ours may close.
            let target = std::fs::File::open(dir.join(file))?;
            std::fs::write(
                &control,
                format!("{} {}{args}", notify.as_raw_fd(), target.as_raw_fd()),
            )
        };
        let any = eventfd()?;
        register(&any, "memory.oom_control", "")?;
        if let Some(hard) = hard {
            register(
                &any,
                "memory.usage_in_bytes",
                &format!(" {}", hard - hard / 8),
            )?;
        }
        let soft = match soft {
            Some(soft) => {
                let fd = eventfd()?;
                register(&fd, "memory.usage_in_bytes", &format!(" {soft}"))?;
                Some(fd)
            }
            None => None,
        };
        for fd in std::iter::once(&any).chain(soft.as_ref()) {
            epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        }
        Ok(V1Notify { any, soft })
    }
}
