//! Exit statuses: the one place where error kinds become sysexits(3) codes an MTA understands
//! ([`decide`]) and where the exit code picks the class of the RFC 3463 status line
//! ([`class`]). Every driver that exits with a delivery's status asks here, and the LMTP
//! server's reply class derives from the same decision
//! ([`failure_class`](crate::lmtp::reply::failure_class)), so a recipient defers over LMTP
//! exactly when the one-shot delivery would exit 75.

use super::rfc3463::Class;
use crate::error::ErrorKind;

/// Delivered everywhere.
pub const OK: u8 = 0;
/// `EX_USAGE`: bad options or arguments.
pub const USAGE: u8 = 64;
/// `EX_DATAERR`: the message is unacceptable (empty, loop).
pub const DATAERR: u8 = 65;
/// `EX_NOINPUT`: `--input FILE` cannot be opened.
pub const NOINPUT: u8 = 66;
/// `EX_CANTCREAT` (`--strict-exit` only): the maildir is missing or not a directory.
pub const CANTCREAT: u8 = 73;
/// `EX_IOERR` (`--strict-exit` only): an I/O error.
pub const IOERR: u8 = 74;
/// `EX_TEMPFAIL`: try again later; MTAs defer.
pub const TEMPFAIL: u8 = 75;
/// `EX_NOPERM` (`--strict-exit` only): permission denied or read-only filesystem.
pub const NOPERM: u8 = 77;

/// Where an error was met, as far as the exit code cares.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Context {
    /// Delivering: opening or creating a maildir or folder, storing a message, importing an
    /// mbox.
    Deliver,
    /// Opening `--input FILE`.
    Input,
    /// A reader subcommand (`list`, `flag`, `check`) using an existing maildir, or a mistake
    /// in its command line.
    Read,
    /// A mistake in the delivery form's command line or environment, found before delivering.
    Command,
    /// The Sieve script cannot be read or compiled: the administrator's mistake.
    Script,
    /// The Sieve script refused the message (`reject`, `ereject`).
    Rejected,
}

/// The options that change an exit code.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--strict-exit`: the precise sysexits codes instead of [`TEMPFAIL`].
    pub strict: bool,
    /// `--quota-full=bounce`: a message over the Maildir++ quota bounces (77) instead of
    /// deferring.
    pub quota_bounces: bool,
    /// A person runs mdeliver (standard input or standard error is a terminal).
    pub interactive: bool,
}

/// The exit code for an error of `kind` met in `context`: the one place where error kinds
/// become sysexits(3) codes. By default everything an administrator or time can fix is
/// [`TEMPFAIL`], so a misconfigured mailbox defers mail instead of bouncing it; `--strict-exit`
/// gives the precise codes for missing, unreadable and failing maildirs; a message over the
/// Maildir++ quota bounces (77, `EX_NOPERM`, as Courier's deliverquota) with
/// `--quota-full=bounce`. An `--input FILE` that cannot be opened is [`NOINPUT`]; a reader
/// subcommand reports a missing maildir as [`NOINPUT`] and everything else precisely.
///
/// A mistake in the delivery form's command line is in the MTA's configuration, which an
/// administrator fixes: like every such problem it defers ([`TEMPFAIL`], with a `4.3.5` status
/// line), so no mail bounces while the typo is there (maildrop does the same). A person gets the
/// precise [`USAGE`] (64): when interactive, with `--strict-exit`, and for the reader-side
/// subcommands, which no MTA runs.
///
/// A Sieve script that cannot be read or compiled defers whatever the error ([`TEMPFAIL`],
/// with `4.3.5`). A script's `reject` is the recipient's decision, so it bounces: [`DATAERR`],
/// which every MTA bounces, or [`NOPERM`] with `--strict-exit`.
pub fn decide(kind: ErrorKind, context: Context, policy: Policy) -> u8 {
    let strict = policy.strict || context == Context::Read;
    match kind {
        _ if context == Context::Input => NOINPUT,
        _ if context == Context::Script => TEMPFAIL,
        _ if context == Context::Rejected && strict => NOPERM,
        _ if context == Context::Rejected => DATAERR,
        _ if context == Context::Command && !(strict || policy.interactive) => TEMPFAIL,
        _ if context == Context::Command => USAGE,
        ErrorKind::NotFound | ErrorKind::NotDirectory if context == Context::Read => NOINPUT,
        ErrorKind::OverQuota if policy.quota_bounces => NOPERM,
        ErrorKind::Usage => USAGE,
        ErrorKind::Data | ErrorKind::Loop => DATAERR,
        ErrorKind::NotFound
        | ErrorKind::NotDirectory
        | ErrorKind::NameTooLong
        | ErrorKind::CrossDevice
            if strict =>
        {
            CANTCREAT
        }
        ErrorKind::Io if strict => IOERR,
        ErrorKind::Permission | ErrorKind::ReadOnly if strict => NOPERM,
        ErrorKind::Exists
        | ErrorKind::NotFound
        | ErrorKind::NoSpace
        | ErrorKind::Quota
        | ErrorKind::Permission
        | ErrorKind::ReadOnly
        | ErrorKind::Interrupted
        | ErrorKind::Io
        | ErrorKind::Unsupported
        | ErrorKind::NotDirectory
        | ErrorKind::NameTooLong
        | ErrorKind::Collisions
        | ErrorKind::Busy
        | ErrorKind::OverQuota
        | ErrorKind::Resources
        | ErrorKind::CrossDevice => TEMPFAIL,
    }
}

/// [`decide`] for a usage error (a mistake in the command line or in `MDELIVER_DISABLE`) of
/// the delivery form or, with `subcommand`, of a reader subcommand.
pub fn usage(strict: bool, interactive: bool, subcommand: bool) -> u8 {
    let context = if subcommand {
        Context::Read
    } else {
        Context::Command
    };
    let policy = Policy {
        strict,
        interactive,
        ..Policy::default()
    };
    decide(ErrorKind::Usage, context, policy)
}

/// [`decide`] for a delivery, with `--strict-exit` (`strict`) or not.
pub fn code(kind: ErrorKind, strict: bool) -> u8 {
    let policy = Policy {
        strict,
        ..Policy::default()
    };
    decide(kind, Context::Deliver, policy)
}

/// The class of the RFC 3463 status line that goes with exit code `code`: transient (4.x.x)
/// for [`TEMPFAIL`], permanent (5.x.x) for anything else, so an MTA that reads only one of
/// them decides the same.
pub fn class(code: u8) -> Class {
    if code == TEMPFAIL {
        Class::Transient
    } else {
        Class::Permanent
    }
}

/// Combines the statuses of several deliveries: a temporary failure dominates (so the MTA
/// retries), then the first permanent failure, then success.
pub fn worst(a: u8, b: u8) -> u8 {
    if a == TEMPFAIL || b == TEMPFAIL {
        TEMPFAIL
    } else if a != OK {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_defers_what_an_admin_can_fix() {
        for k in [
            ErrorKind::NotFound,
            ErrorKind::Permission,
            ErrorKind::ReadOnly,
            ErrorKind::NotDirectory,
            ErrorKind::Io,
            ErrorKind::NoSpace,
            ErrorKind::Quota,
        ] {
            assert_eq!(code(k, false), TEMPFAIL, "{k:?}");
        }
        assert_eq!(code(ErrorKind::Data, false), DATAERR);
        assert_eq!(code(ErrorKind::Loop, true), DATAERR);
    }

    #[test]
    fn strict_gives_precise_codes() {
        assert_eq!(code(ErrorKind::NotFound, true), CANTCREAT);
        assert_eq!(code(ErrorKind::NotDirectory, true), CANTCREAT);
        assert_eq!(code(ErrorKind::Io, true), IOERR);
        assert_eq!(code(ErrorKind::Permission, true), NOPERM);
        assert_eq!(code(ErrorKind::ReadOnly, true), NOPERM);
        assert_eq!(code(ErrorKind::NoSpace, true), TEMPFAIL);
        assert_eq!(code(ErrorKind::Quota, true), TEMPFAIL);
    }

    #[test]
    fn usage_errors_defer_unless_a_person_or_strict_asks() {
        assert_eq!(usage(false, false, false), TEMPFAIL);
        assert_eq!(usage(true, false, false), USAGE);
        assert_eq!(usage(false, true, false), USAGE);
        assert_eq!(usage(false, false, true), USAGE);
    }

    #[test]
    fn context_and_quota_full_change_the_code() {
        let bounce = Policy {
            strict: false,
            quota_bounces: true,
            ..Policy::default()
        };
        let all = [ErrorKind::NotFound, ErrorKind::Usage, ErrorKind::Io];
        for k in all {
            assert_eq!(
                decide(k, Context::Input, Policy::default()),
                NOINPUT,
                "{k:?}"
            );
        }
        assert_eq!(
            decide(ErrorKind::OverQuota, Context::Deliver, bounce),
            NOPERM
        );
        assert_eq!(code(ErrorKind::OverQuota, true), TEMPFAIL);
        assert_eq!(decide(ErrorKind::Quota, Context::Deliver, bounce), TEMPFAIL);
        // A reader subcommand: a missing maildir is "no input", the rest precise.
        let read = |k| decide(k, Context::Read, Policy::default());
        assert_eq!(read(ErrorKind::NotFound), NOINPUT);
        assert_eq!(read(ErrorKind::NotDirectory), NOINPUT);
        assert_eq!(read(ErrorKind::Permission), NOPERM);
        assert_eq!(read(ErrorKind::Io), IOERR);
        assert_eq!(read(ErrorKind::NoSpace), TEMPFAIL);
        // A command-line mistake defers under an MTA, whatever the kind, unless a person or
        // --strict-exit asks; a reader subcommand's is always a usage error.
        let person = Policy {
            interactive: true,
            ..Policy::default()
        };
        assert_eq!(
            decide(ErrorKind::Io, Context::Command, Policy::default()),
            TEMPFAIL
        );
        assert_eq!(decide(ErrorKind::Usage, Context::Command, person), USAGE);
        assert_eq!(read(ErrorKind::Usage), USAGE);
        // A Sieve script that cannot be used defers, whoever asks; its reject bounces.
        let strict = Policy {
            strict: true,
            ..person
        };
        for k in [ErrorKind::NotFound, ErrorKind::Permission, ErrorKind::Data] {
            for p in [Policy::default(), person, strict] {
                assert_eq!(decide(k, Context::Script, p), TEMPFAIL, "{k:?} {p:?}");
            }
            assert_eq!(decide(k, Context::Rejected, Policy::default()), DATAERR);
            assert_eq!(decide(k, Context::Rejected, strict), NOPERM);
        }
    }

    #[test]
    fn the_class_follows_the_code() {
        assert_eq!(class(TEMPFAIL), Class::Transient);
        for c in [USAGE, DATAERR, NOINPUT, CANTCREAT, IOERR, NOPERM] {
            assert_eq!(class(c), Class::Permanent, "{c}");
        }
    }

    #[test]
    fn temporary_dominates_then_first_failure() {
        assert_eq!(worst(OK, OK), OK);
        assert_eq!(worst(OK, DATAERR), DATAERR);
        assert_eq!(worst(CANTCREAT, DATAERR), CANTCREAT);
        assert_eq!(worst(DATAERR, TEMPFAIL), TEMPFAIL);
        assert_eq!(worst(TEMPFAIL, NOPERM), TEMPFAIL);
    }
}
