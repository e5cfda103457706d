//! A termination signal (`SIGTERM`, `SIGINT`, `SIGHUP`: what an MTA or a person sends to stop
//! a delivery) that the binary caught. The Linux binary's handler only records it here; the
//! message source then stops reading, the delivery fails and cleans up after itself like any
//! other failure, and the report says which signal stopped it. The WASI module has no signals
//! and never records one.

use std::sync::atomic::{AtomicI32, Ordering};

static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// Records signal `signo` (async-signal-safe: one atomic store).
pub fn note(signo: i32) {
    CAUGHT.store(signo, Ordering::Relaxed);
}

/// The signal caught, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// The name of a termination signal (Linux numbering).
pub fn name(signo: i32) -> &'static str {
    match signo {
        1 => "SIGHUP",
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}
