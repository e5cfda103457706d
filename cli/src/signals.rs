//! The termination signals an MTA or a person sends to stop a delivery (`SIGTERM`: Postfix and
//! others on a timeout; `SIGINT`; `SIGHUP`). Killed by one of them mid-message, mdeliver would
//! leave its named tmp/ file behind (the fallback publish paths, without `O_TMPFILE`). So the
//! handler only records the signal ([`mdeliver_driver::signal`]), without `SA_RESTART` so that
//! a read blocked on the MTA's pipe returns; the message source ([`crate::input`]) then fails
//! its next read, and the delivery cleans up and reports like any failed read (75, `4.3.0`).
//! A signal that comes once the message is read lets the delivery finish: it is published or
//! it fails on its own.
//!
//! The handlers cost four system calls, so a one-shot delivery installs them only when it is
//! about to create a named file ([`before_named_file`], called by the filesystem adapter):
//! on the `O_TMPFILE` path a signal kills the process and the kernel drops the unnamed file,
//! so nothing is left either way (the MTA sees a delivery killed by a signal and defers). An
//! mbox import installs them at once ([`catch`]): it stops between messages and says how far
//! it got.

use std::sync::atomic::{AtomicU8, Ordering};

/// 0: no handlers wanted (the LMTP server, the subcommands: they have their own or none);
/// 1: wanted before the first named file; 2: installed.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Asks for the handlers before the first named file this process creates.
pub fn arm() {
    let _ = STATE.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
}

/// Installs the handlers if [`arm`] asked for them and they are not there yet. Called before
/// a named file is created in a maildir.
pub fn before_named_file() {
    if STATE.load(Ordering::Relaxed) == 1 {
        catch();
    }
}

/// Catches the termination signals for the rest of the run.
pub fn catch() {
    if STATE.swap(2, Ordering::Relaxed) == 2 {
        return;
    }
    for signo in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: `sigaction` is given a zeroed, then initialised, struct that outlives the
        // call; the handler only does an atomic store, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = 0;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signo, &action, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_signal(signo: libc::c_int) {
    mdeliver_driver::signal::note(signo);
}
