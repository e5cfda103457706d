//! The mail log: one line per maildir in the system log (facility `mail`, tag `mdeliver`,
//! RFC 3164 over the local socket, through the `syslog` crate), the way dovecot-lda logs
//! `msgid=<…>: saved mail to INBOX`, so that an administrator finds every delivery and every
//! failure where the MTA's own lines are:
//!
//! ```text
//! msgid=<a@example.org>: saved mail to /home/bob/Maildir: new/1796…,S=131; status=2.0.0
//! msgid=<a@example.org>: duplicate not saved again in /home/bob/Maildir: new/1796…,S=131; status=2.0.0
//! msgid=<a@example.org>: failed to save mail to /home/bob/Maildir: opening maildir: …; status=4.2.0, exit=75
//! ```
//!
//! `msgid=none` when the message has no Message-ID. Logged by default when standard input is
//! not a terminal (an MTA runs mdeliver), with `--syslog` always, with `--no-syslog` never;
//! a dry run, an mbox import and the subcommands log nothing. Nothing is done (no socket, no
//! Message-ID scan) when not logging. A log that cannot be reached never changes the delivery
//! or its exit status.

use std::path::Path;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// Where the lines go instead of `/dev/log`: a testing knob (a test-owned socket).
pub const SOCKET_VAR: &str = "MDELIVER_TEST_SYSLOG";

/// Whether to log: `--syslog` (`on`), `--no-syslog` (`off`), else when standard input is not a
/// terminal.
pub fn wanted(on: bool, off: bool) -> bool {
    use std::io::IsTerminal;
    !off && (on || !std::io::stdin().is_terminal())
}

/// An open connection to the system log (`None` inside when it cannot be reached).
pub struct MailLog(Option<Logger<LoggerBackend, Formatter3164>>);

impl MailLog {
    /// Connects to `$MDELIVER_TEST_SYSLOG`, else the system's socket (`/dev/log`).
    pub fn open() -> MailLog {
        let formatter = Formatter3164 {
            facility: Facility::LOG_MAIL,
            hostname: None,
            process: "mdeliver".into(),
            pid: std::process::id(),
        };
        let logger = match std::env::var_os(SOCKET_VAR) {
            Some(path) => syslog::unix_custom(formatter, path),
            None => syslog::unix(formatter),
        };
        MailLog(logger.ok())
    }

    /// Logs a stored message (or a suppressed duplicate).
    pub fn saved(&mut self, line: &str) {
        if let Some(l) = &mut self.0 {
            let _ = l.info(line);
        }
    }

    /// Logs a failure: a warning when it defers (4.x.x), an error when it bounces.
    pub fn failed(&mut self, line: &str, deferred: bool) {
        if let Some(l) = &mut self.0 {
            let _ = if deferred {
                l.warning(line)
            } else {
                l.err(line)
            };
        }
    }
}

/// `msgid=<…>` (or `msgid=none`).
fn msgid(id: Option<&[u8]>) -> String {
    match id {
        Some(id) => format!("msgid={}", String::from_utf8_lossy(id)),
        None => "msgid=none".to_owned(),
    }
}

/// The line for a message stored in `maildir` as `file` (`new/NAME`), or, when `duplicate`, an
/// earlier copy found there.
pub fn saved_line(id: Option<&[u8]>, maildir: &Path, file: &str, duplicate: bool) -> String {
    let what = if duplicate {
        "duplicate not saved again in"
    } else {
        "saved mail to"
    };
    format!(
        "{}: {what} {}: {file}; status=2.0.0",
        msgid(id),
        maildir.display()
    )
}

/// The line for a failure in `maildir`: what went wrong, its status line (if it has one) and
/// exit code.
pub fn failed_line(
    id: Option<&[u8]>,
    maildir: &Path,
    failure: &str,
    status: Option<&str>,
    code: u8,
) -> String {
    let dsn = match status.and_then(|s| s.split(' ').next()) {
        Some(d) => format!("status={d}, "),
        None => String::new(),
    };
    format!(
        "{}: failed to save mail to {}: {failure}; {dsn}exit={code}",
        msgid(id),
        maildir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let md = Path::new("/home/bob/Maildir");
        assert_eq!(
            saved_line(Some(b"<a@b>"), md, "new/1.M2P3.h,S=4", false),
            "msgid=<a@b>: saved mail to /home/bob/Maildir: new/1.M2P3.h,S=4; status=2.0.0"
        );
        assert_eq!(
            saved_line(None, md, "cur/1.M2P3.h,S=4:2,S", true),
            "msgid=none: duplicate not saved again in /home/bob/Maildir: cur/1.M2P3.h,S=4:2,S; \
             status=2.0.0"
        );
        assert_eq!(
            failed_line(
                Some(b"<a@b>"),
                md,
                "checking quota: over quota",
                Some("4.2.2 mailbox full"),
                75
            ),
            "msgid=<a@b>: failed to save mail to /home/bob/Maildir: checking quota: over quota; \
             status=4.2.2, exit=75"
        );
        assert_eq!(
            failed_line(None, md, "--folder \"..\": refused", None, 64),
            "msgid=none: failed to save mail to /home/bob/Maildir: --folder \"..\": refused; \
             exit=64"
        );
    }
}
