//! The termination signals an MTA or a person sends to stop a delivery (`SIGTERM`: Postfix and
//! others on a timeout; `SIGINT`; `SIGHUP`). Killed by one of them mid-message, mdeliver would
//! leave its named tmp/ file behind (the fallback publish paths, without `O_TMPFILE`). So the
//! handler only records the signal ([`mdeliver_driver::signal`]), without `SA_RESTART` so that
//! a read blocked on the MTA's pipe returns; the message source ([`crate::input`]) then fails
//! its next read, and the delivery cleans up and reports like any failed read (75, `4.3.0`).
//! A signal that comes once the message is read lets the delivery finish: it is published or
//! it fails on its own.

/// Catches the termination signals for the rest of the run.
pub fn catch() {
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
