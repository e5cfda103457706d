//! RFC 3463 status lines for MTAs (code and text are the core's,
//! [`mdeliver_core::report::rfc3463`]; the class follows the exit code: [`exit::class`]), and
//! the order in which output leaves.
//!
//! Postfix's local(8) (`mailbox_command`) and pipe(8) run a command with its standard output
//! and standard error on *one* pipe, read it after the command exits, and, when the exit status
//! is not zero and the output begins with a valid `D.S.N text`, take that status (class 4:
//! defer, class 5: bounce) instead of the generic one it derives from the sysexits code
//! (`global/pipe_command.c`). So on failure the status line must be the first byte of all
//! output: [`Output`] holds every line until the end and then writes the status line first
//! (on standard error), followed by the rest in order. The class always agrees with the exit
//! code (75 → 4, anything else → 5), so an MTA that reads only one of them decides the same.

use std::io::Write;

use mdeliver_core::report::rfc3463::{self as rfc3463, Failed};
use mdeliver_core::{ErrorKind, Phase};

use crate::exit;
use crate::mta_args::QuotaFull;
use crate::report::Failure;

/// The exit code for `f` with `--strict-exit` (`strict`) and `--quota-full` (see
/// [`exit::decide`]).
pub fn code(f: &Failure, strict: bool, quota_full: QuotaFull) -> u8 {
    let policy = exit::Policy {
        strict,
        quota_bounces: quota_full == QuotaFull::Bounce,
        ..exit::Policy::default()
    };
    exit::decide(f.kind(), f.context(), policy)
}

/// What failed, in the core's terms (the maildir's part and `-c` do not change the status).
fn failed(f: &Failure) -> Failed {
    match *f {
        Failure::Open { kind, .. } => Failed::Delivery(kind),
        Failure::Deliver(e)
            if e.kind == ErrorKind::NotDirectory
                && matches!(e.phase, Phase::Quota | Phase::Dedup) =>
        {
            Failed::NotRegular
        }
        Failure::Deliver(_) => Failed::Delivery(f.kind()),
        Failure::InputLost => Failed::InputLost,
        Failure::Input(kind) => Failed::InputOpen(kind),
    }
}

/// The status line (without newline) for failure `f` that made mdeliver exit with `code`: the
/// core's RFC 3463 status ([`rfc3463::status`]) in the class the exit code calls for.
pub fn line(f: &Failure, code: u8, loop_address: Option<&str>) -> String {
    rfc3463::status(failed(f), exit::class(code), loop_address).to_string()
}

/// Everything mdeliver prints during a delivery, held until the end (see the module docs).
#[derive(Debug, Default)]
pub struct Output {
    lines: Vec<(bool, String)>,
    status: Option<(u8, String)>,
}

impl Output {
    /// A line for standard output.
    pub fn out(&mut self, line: String) {
        self.lines.push((false, line));
    }

    /// A line for standard error.
    pub fn err(&mut self, line: String) {
        self.lines.push((true, line));
    }

    /// Notes a failure that gave `code`; the status line of the one that decides the final
    /// exit code (the first temporary failure, else the first failure) is printed first.
    pub fn failed(&mut self, code: u8, status_line: String) {
        let replace = match &self.status {
            None => true,
            Some((c, _)) => *c != exit::TEMPFAIL && code == exit::TEMPFAIL,
        };
        if replace {
            self.status = Some((code, status_line));
        }
    }

    /// The status line and the lines (each: whether it is for standard error), for a caller
    /// that reports them itself (the LMTP server answers with the status line).
    pub fn into_parts(self) -> (Option<String>, Vec<(bool, String)>) {
        (self.status.map(|(_, s)| s), self.lines)
    }

    /// Writes everything: the status line first (standard error), then the lines in order.
    pub fn flush(self) {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        if let Some((_, s)) = &self.status {
            let _ = writeln!(err, "{s}");
            let _ = err.flush();
        }
        for (to_err, l) in self.lines {
            if to_err {
                let _ = writeln!(err, "{l}");
                let _ = err.flush();
            } else {
                let _ = writeln!(out, "{l}");
                let _ = out.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdeliver_core::{Dir, Error, ErrorKind, Phase};

    #[test]
    fn class_follows_the_exit_code() {
        let over = Failure::Deliver(Error::new(ErrorKind::OverQuota, Phase::Check));
        assert_eq!(code(&over, false, QuotaFull::Defer), exit::TEMPFAIL);
        assert_eq!(line(&over, 75, None), "4.2.2 mailbox full");
        assert_eq!(code(&over, false, QuotaFull::Bounce), exit::NOPERM);
        assert_eq!(line(&over, 77, None), "5.2.2 mailbox full");
        let open = Failure::Open {
            kind: ErrorKind::NotFound,
            part: Dir::Root,
            create: crate::report::Create::No,
        };
        assert_eq!(
            line(&open, code(&open, true, QuotaFull::Defer), None),
            "5.2.0 mailbox unavailable: no such file or directory"
        );
        let lp = Failure::Deliver(Error::new(ErrorKind::Loop, Phase::Check));
        assert_eq!(
            line(&lp, code(&lp, false, QuotaFull::Defer), Some("bob@x")),
            "5.4.6 mail forwarding loop for bob@x"
        );
    }

    #[test]
    fn every_kind_has_its_line_in_both_modes() {
        use ErrorKind as K;
        let table = [
            (K::Exists, "4.3.0 mail system error: file exists", "same"),
            (
                K::NotFound,
                "4.2.0 mailbox unavailable: no such file or directory",
                "5.2.0",
            ),
            (
                K::NoSpace,
                "4.3.1 mail system full (no space left on device)",
                "same",
            ),
            (K::Quota, "4.2.2 mailbox full (disk quota exceeded)", "same"),
            (
                K::Permission,
                "4.2.0 mailbox not writable: permission denied",
                "5.2.0",
            ),
            (
                K::ReadOnly,
                "4.2.0 mailbox not writable: read-only file system",
                "5.2.0",
            ),
            (
                K::Interrupted,
                "4.3.0 mail system error: interrupted system call",
                "same",
            ),
            (
                K::Io,
                "4.3.0 mail system error: input/output error",
                "5.3.0",
            ),
            (
                K::Unsupported,
                "4.3.0 mail system error: operation not supported",
                "same",
            ),
            (
                K::NotDirectory,
                "4.2.0 mailbox unavailable: not a directory (or a symbolic link)",
                "5.2.0",
            ),
            (
                K::NameTooLong,
                "4.2.0 mailbox unavailable: file name too long",
                "5.2.0",
            ),
            (
                K::Collisions,
                "4.3.0 mail system error: could not find a free file name",
                "same",
            ),
            (
                K::Busy,
                "4.3.0 mail system busy: maildir is locked by another process",
                "same",
            ),
            (K::Data, "5.6.0 message is empty or unreadable", "same"),
            (K::Usage, "5.3.5 mdeliver is misconfigured", "same"),
            (K::Loop, "5.4.6 mail forwarding loop for a@b", "same"),
            (K::OverQuota, "4.2.2 mailbox full", "same"),
        ];
        for (kind, default, strict) in table {
            let f = Failure::Deliver(Error::new(kind, Phase::Write));
            let c = code(&f, false, QuotaFull::Defer);
            assert_eq!(line(&f, c, Some("a@b")), default, "{kind:?}");
            let c = code(&f, true, QuotaFull::Defer);
            let want = match strict {
                "same" => default.to_owned(),
                class => format!("{class}{}", &default[5..]),
            };
            assert_eq!(line(&f, c, Some("a@b")), want, "{kind:?} strict");
        }
        assert_eq!(
            line(&Failure::InputLost, 75, None),
            "4.3.0 message input lost after a failed delivery"
        );
    }

    #[test]
    fn a_temporary_failure_decides_the_status_line() {
        let mut o = Output::default();
        o.failed(65, "5.4.6 a".into());
        o.failed(75, "4.3.0 b".into());
        o.failed(75, "4.3.0 c".into());
        assert_eq!(o.status.as_ref().unwrap().1, "4.3.0 b");
    }
}
