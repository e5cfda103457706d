//! The mail log's lines (issue 13): one per maildir, the way dovecot-lda logs
//! `msgid=<…>: saved mail to INBOX`, so an administrator finds every delivery and every
//! failure where the MTA's own lines are:
//!
//! ```text
//! msgid=<a@example.org>: saved mail to /home/bob/Maildir: new/1796…,S=131; status=2.0.0
//! msgid=<a@example.org>: duplicate not saved again in /home/bob/Maildir: new/1796…,S=131; status=2.0.0
//! msgid=<a@example.org>: failed to save mail to /home/bob/Maildir: opening maildir: …; status=4.2.0, exit=75
//! ```
//!
//! `msgid=none` when the message has no Message-ID. [`crate::run`] collects them and hands them
//! to the adapter at the end (when the Message-ID has been read); the Linux binary sends them to
//! syslog, the WASI module has no log.

use std::path::Path;

/// How serious a line is (syslog's severity).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Stored, or a duplicate suppressed.
    Info,
    /// Deferred (exit 75).
    Warning,
    /// Refused for good.
    Error,
}

/// One line of the mail log, before the Message-ID is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Stored (or, `duplicate`, an earlier copy found) in the maildir as this file (`new/NAME`).
    Saved(std::path::PathBuf, String, bool),
    /// Failed in the maildir: what went wrong, the status line (if any), the exit code.
    Failed(std::path::PathBuf, String, Option<String>, u8),
}

impl Event {
    /// The line and its severity, for the message with Message-ID `id`.
    pub fn line(&self, id: Option<&[u8]>) -> (Severity, String) {
        match self {
            Event::Saved(md, file, dup) => (Severity::Info, saved_line(id, md, file, *dup)),
            Event::Failed(md, what, status, code) => {
                let severity = if *code == crate::exit::TEMPFAIL {
                    Severity::Warning
                } else {
                    Severity::Error
                };
                (
                    severity,
                    failed_line(id, md, what, status.as_deref(), *code),
                )
            }
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
