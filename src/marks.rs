//! TEMPORARY start-path instrumentation: with POC_MARKS set, writes "pid name ns" lines to fd 200.
use std::sync::atomic::{AtomicU8, Ordering};
static ON: AtomicU8 = AtomicU8::new(0);
pub const FD: i32 = 200;
pub fn on() -> bool {
    match ON.load(Ordering::Relaxed) {
        0 => {
            let v = std::env::var_os("POC_MARKS").is_some();
            ON.store(if v { 1 } else { 2 }, Ordering::Relaxed);
            v
        }
        x => x == 1,
    }
}
pub fn mark(what: &str) {
    if !on() {
        return;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let line = format!("{} {} {}\n", unsafe { libc::getpid() }, what, ns);
    unsafe { libc::write(FD, line.as_ptr().cast(), line.len()) };
}
