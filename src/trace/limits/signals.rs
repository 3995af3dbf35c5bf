//! Ctrl-C during `--experiment`: SIGINT, SIGTERM and SIGHUP ask it to stop at its next step, so
//! that it can write the container's limits back before poc exits.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The signal that asked the experiment to stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

/// While it lives, SIGINT, SIGTERM and SIGHUP ask the experiment to stop at its next step rather
/// than kill poc with the container's limits lowered. A signal that was ignored (a background
/// job's SIGINT, nohup's SIGHUP) stays ignored. The earlier dispositions come back on drop.
pub struct StopOnSignals {
    previous: Vec<(Signal, SigAction)>,
}

impl StopOnSignals {
    pub fn install() -> Self {
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut previous = Vec::new();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only stores an atomic.
            let Ok(old) = (unsafe { sigaction(signal, &action) }) else {
                continue;
            };
            if matches!(old.handler(), SigHandler::SigIgn) {
                // SAFETY: puts back the disposition the kernel just gave us.
                let _ = unsafe { sigaction(signal, &old) };
            }
            previous.push((signal, old));
        }
        StopOnSignals { previous }
    }

    pub fn caught(&self) -> Option<Signal> {
        Signal::try_from(STOP_SIGNAL.load(Ordering::SeqCst)).ok()
    }
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores a disposition sigaction returned.
            let _ = unsafe { sigaction(*signal, old) };
        }
    }
}
