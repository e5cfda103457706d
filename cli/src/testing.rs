//! `MDELIVER_TEST_KILL`: a **testing knob**, documented like `MDELIVER_DISABLE`, that makes the
//! process kill itself with SIGKILL at a chosen point, so the end-to-end tests can put a crash
//! exactly where the duplicate index's crash argument needs one instead of hoping a timed
//! signal lands there. Never set it in production.
//!
//! Points:
//! - `before-commit`: after the message is published and its directory synced, just before
//!   the dedup index's commit record is appended (the "MTA retries after our crash between
//!   publish and index update" case).
//!
//! `MDELIVER_TEST_DEDUP_LEASE=SECS`, the other testing knob, is read with the MTA options
//! (`envelope.rs`, [`mdeliver_driver::envelope::LEASE_VAR`]).

use std::sync::OnceLock;

use mdeliver_core::machine::dedup::ENTRY_PREFIX;

/// The environment variable.
pub const VAR: &str = "MDELIVER_TEST_KILL";

fn point() -> &'static str {
    static POINT: OnceLock<String> = OnceLock::new();
    POINT.get_or_init(|| std::env::var(VAR).unwrap_or_default())
}

/// Called by the Linux adapter before an append: dies here when asked to die before a dedup
/// commit record (records are `\n<body> *<sum>\n`; a commit's body starts with `C `).
pub fn before_append(name: &str, data: &[u8]) {
    if point() == "before-commit" && name.starts_with(ENTRY_PREFIX) && data.starts_with(b"\nC ") {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; should it somehow return, do not go on either.
        std::process::abort();
    }
}
