//! The mail log's transport: the lines of [`mdeliver_driver::maillog`] go to the system log
//! (facility `mail`, tag `mdeliver`, RFC 3164 over the local socket, through the `syslog`
//! crate). Logged by default when standard input is not a terminal (an MTA runs mdeliver),
//! with `--syslog` always, with `--no-syslog` never; a dry run, an mbox import and the
//! subcommands log nothing. Nothing is done (no socket, no Message-ID scan) when not logging,
//! and a log that cannot be reached never changes the delivery or its exit status.

use mdeliver_driver::maillog::Severity;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// Where the lines go instead of `/dev/log`: a testing knob (a test-owned socket).
pub const SOCKET_VAR: &str = "MDELIVER_TEST_SYSLOG";

/// Whether to log: `--syslog` (`on`), `--no-syslog` (`off`), else when standard input is not a
/// terminal.
pub fn wanted(on: bool, off: bool) -> bool {
    !off && (on || !crate::input::stdin_is_terminal())
}

/// Sends `lines` to `$MDELIVER_TEST_SYSLOG`, else the system's socket (`/dev/log`); silently
/// nothing when it cannot be reached.
pub fn send(lines: &[(Severity, String)]) {
    let formatter = Formatter3164 {
        facility: Facility::LOG_MAIL,
        hostname: None,
        process: "mdeliver".into(),
        pid: std::process::id(),
    };
    let logger: Result<Logger<LoggerBackend, Formatter3164>, _> = match std::env::var_os(SOCKET_VAR)
    {
        Some(path) => syslog::unix_custom(formatter, path),
        None => syslog::unix(formatter),
    };
    let Ok(mut logger) = logger else {
        return;
    };
    for (severity, line) in lines {
        let _ = match severity {
            Severity::Info => logger.info(line),
            Severity::Warning => logger.warning(line),
            Severity::Error => logger.err(line),
        };
    }
}
