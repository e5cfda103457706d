//! Exit statuses: the one place where error kinds become sysexits(3) codes an MTA understands.
//! Shared with the WASI module (std and mdeliver-core only).

use mdeliver_core::ErrorKind;

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

/// The exit code for an error of `kind`. By default everything an administrator or time can
/// fix is [`TEMPFAIL`], so a misconfigured mailbox defers mail instead of bouncing it;
/// `strict` gives the precise sysexits codes for missing, unreadable and failing maildirs.
pub fn code(kind: ErrorKind, strict: bool) -> u8 {
    match kind {
        ErrorKind::Usage => USAGE,
        ErrorKind::Data | ErrorKind::Loop => DATAERR,
        ErrorKind::NotFound | ErrorKind::NotDirectory | ErrorKind::NameTooLong if strict => {
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
        | ErrorKind::OverQuota => TEMPFAIL,
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
    fn temporary_dominates_then_first_failure() {
        assert_eq!(worst(OK, OK), OK);
        assert_eq!(worst(OK, DATAERR), DATAERR);
        assert_eq!(worst(CANTCREAT, DATAERR), CANTCREAT);
        assert_eq!(worst(DATAERR, TEMPFAIL), TEMPFAIL);
        assert_eq!(worst(TEMPFAIL, NOPERM), TEMPFAIL);
    }
}
