//! RFC 3463 enhanced status codes: which `CLASS.SUBJECT.DETAIL` and text a failed delivery
//! reports to the MTA.
//!
//! Postfix (and other MTAs that run a delivery command) take the status from the first line
//! of the command's output when it is a valid `D.S.N text`; the class (4: defer, 5: bounce) is
//! the caller's, because it must agree with the exit status the MTA reads as well
//! ([`super::exit::class`]). Everything else is decided here:
//!
//! | failure                                             | code    | text                                                |
//! |-----------------------------------------------------|---------|-----------------------------------------------------|
//! | [`OverQuota`](ErrorKind::OverQuota) (Maildir++)     | `c.2.2` | `mailbox full`                                      |
//! | [`Quota`](ErrorKind::Quota) (`EDQUOT`)              | `c.2.2` | `mailbox full (disk quota exceeded)`                |
//! | [`NoSpace`](ErrorKind::NoSpace)                     | `c.3.1` | `mail system full (no space left on device)`        |
//! | [`Loop`](ErrorKind::Loop)                           | `c.4.6` | `mail forwarding loop` (` for ADDRESS` when known)  |
//! | [`Data`](ErrorKind::Data)                           | `c.6.0` | `message is empty or unreadable`                    |
//! | [`Usage`](ErrorKind::Usage)                         | `c.3.5` | `mdeliver is misconfigured`                         |
//! | `NotFound`, `NotDirectory`, `NameTooLong`, `CrossDevice` | `c.2.0` | `mailbox unavailable: KIND`                    |
//! | `Permission`, `ReadOnly`                            | `c.2.0` | `mailbox not writable: KIND`                        |
//! | [`Busy`](ErrorKind::Busy)                           | `c.3.0` | `mail system busy: KIND`                            |
//! | [`Resources`](ErrorKind::Resources) (`EMFILE`...)   | `c.3.0` | `mail system overloaded: KIND`                      |
//! | `Exists`, `Io`, `Interrupted`, `Unsupported`, `Collisions` | `c.3.0` | `mail system error: KIND`                    |
//! | the input file cannot be opened                     | `c.3.0` | `cannot open the input file: KIND` (`it is a directory` for `Usage`) |
//! | the input was lost after a failed delivery          | `c.3.0` | `message input lost after a failed delivery`        |
//! | `maildirsize` or a duplicate index entry is not a regular file | `c.2.0` | `mailbox unavailable: a maildir file is not a regular file` |
//!
//! `KIND` is [`ErrorKind::describe`]. Where the failure happened ([`crate::Phase`]) does not
//! change the code: RFC 3463 says what is wrong (the mailbox, the mail system, the message),
//! not which step noticed it.

use core::fmt;

use crate::error::ErrorKind;

/// The first digit: whether the MTA should try again later or return the message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// `4`: a persistent transient failure; the MTA defers and retries.
    Transient,
    /// `5`: a permanent failure; the MTA bounces.
    Permanent,
}

impl Class {
    /// The class digit (4 or 5).
    pub const fn digit(self) -> u8 {
        match self {
            Class::Transient => 4,
            Class::Permanent => 5,
        }
    }
}

/// What failed, as far as the status line is concerned.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Failed {
    /// Delivering into the maildir (or opening it) failed with this kind.
    Delivery(ErrorKind),
    /// The file the message was to be read from could not be opened.
    InputOpen(ErrorKind),
    /// An earlier failed delivery consumed part of a non-rewindable input.
    InputLost,
    /// A file the maildir keeps beside its messages (`maildirsize`, a duplicate index entry)
    /// is not a regular file: a directory, a symbolic link or a special file.
    NotRegular,
}

/// What follows the fixed text of a status line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Tail<'a> {
    /// Nothing.
    Empty,
    /// `": "` and the kind's description ([`ErrorKind::describe`]).
    Kind(ErrorKind),
    /// `" for "` and the address whose `Delivered-To:` made the loop.
    Address(&'a str),
}

/// An enhanced status: code and text. [`fmt::Display`] writes the line an MTA parses
/// (`4.2.2 mailbox full`, without a newline).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Status<'a> {
    /// Retry or bounce.
    pub class: Class,
    /// The subject code (2: mailbox, 3: mail system, 4: routing, 6: message content).
    pub subject: u16,
    /// The detail code within the subject.
    pub detail: u16,
    /// The fixed part of the text.
    pub text: &'static str,
    /// What follows the fixed text.
    pub tail: Tail<'a>,
}

impl Status<'_> {
    /// The code alone: `(class digit, subject, detail)`.
    pub const fn code(&self) -> (u8, u16, u16) {
        (self.class.digit(), self.subject, self.detail)
    }
}

impl fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s, d) = self.code();
        write!(f, "{c}.{s}.{d} {}", self.text)?;
        match self.tail {
            Tail::Empty => Ok(()),
            Tail::Kind(k) => write!(f, ": {}", k.describe()),
            Tail::Address(a) => write!(f, " for {a}"),
        }
    }
}

/// The status for `failed` in `class` (see the table in the module docs). `loop_address` is the
/// address a [`ErrorKind::Loop`] was detected for, if known; other failures ignore it.
pub fn status(failed: Failed, class: Class, loop_address: Option<&str>) -> Status<'_> {
    let (subject, detail, text, tail) = match failed {
        Failed::InputOpen(ErrorKind::Usage) => (
            3,
            0,
            "cannot open the input file: it is a directory",
            Tail::Empty,
        ),
        Failed::InputOpen(k) => (3, 0, "cannot open the input file", Tail::Kind(k)),
        Failed::InputLost => (
            3,
            0,
            "message input lost after a failed delivery",
            Tail::Empty,
        ),
        Failed::NotRegular => (
            2,
            0,
            "mailbox unavailable: a maildir file is not a regular file",
            Tail::Empty,
        ),
        Failed::Delivery(kind) => match kind {
            ErrorKind::OverQuota => (2, 2, "mailbox full", Tail::Empty),
            ErrorKind::Quota => (2, 2, "mailbox full (disk quota exceeded)", Tail::Empty),
            ErrorKind::NoSpace => (
                3,
                1,
                "mail system full (no space left on device)",
                Tail::Empty,
            ),
            ErrorKind::Loop => (
                4,
                6,
                "mail forwarding loop",
                loop_address.map_or(Tail::Empty, Tail::Address),
            ),
            ErrorKind::Data => (6, 0, "message is empty or unreadable", Tail::Empty),
            ErrorKind::Usage => (3, 5, "mdeliver is misconfigured", Tail::Empty),
            ErrorKind::NotFound
            | ErrorKind::NotDirectory
            | ErrorKind::NameTooLong
            | ErrorKind::CrossDevice => (2, 0, "mailbox unavailable", Tail::Kind(kind)),
            ErrorKind::Permission | ErrorKind::ReadOnly => {
                (2, 0, "mailbox not writable", Tail::Kind(kind))
            }
            ErrorKind::Busy => (3, 0, "mail system busy", Tail::Kind(kind)),
            ErrorKind::Resources => (3, 0, "mail system overloaded", Tail::Kind(kind)),
            ErrorKind::Exists
            | ErrorKind::Io
            | ErrorKind::Interrupted
            | ErrorKind::Unsupported
            | ErrorKind::Collisions => (3, 0, "mail system error", Tail::Kind(kind)),
        },
    };
    Status {
        class,
        subject,
        detail,
        text,
        tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::{String, ToString};

    use ErrorKind as K;

    // Every kind once (the wire's table); `index`'s exhaustive match makes a new kind a compile
    // error here until it and the table below get a row for it.
    use crate::wire::KINDS as ALL;

    fn index(k: ErrorKind) -> usize {
        match k {
            K::Exists => 0,
            K::NotFound => 1,
            K::NoSpace => 2,
            K::Quota => 3,
            K::Permission => 4,
            K::ReadOnly => 5,
            K::Interrupted => 6,
            K::Io => 7,
            K::Unsupported => 8,
            K::NotDirectory => 9,
            K::NameTooLong => 10,
            K::Collisions => 11,
            K::Busy => 12,
            K::Data => 13,
            K::Usage => 14,
            K::Loop => 15,
            K::OverQuota => 16,
            K::Resources => 17,
            K::CrossDevice => 18,
        }
    }

    /// The module docs' table, as lines without the class digit.
    const TABLE: [(ErrorKind, &str); 19] = [
        (K::Exists, ".3.0 mail system error: file exists"),
        (
            K::NotFound,
            ".2.0 mailbox unavailable: no such file or directory",
        ),
        (
            K::NoSpace,
            ".3.1 mail system full (no space left on device)",
        ),
        (K::Quota, ".2.2 mailbox full (disk quota exceeded)"),
        (
            K::Permission,
            ".2.0 mailbox not writable: permission denied",
        ),
        (
            K::ReadOnly,
            ".2.0 mailbox not writable: read-only file system",
        ),
        (
            K::Interrupted,
            ".3.0 mail system error: interrupted system call",
        ),
        (K::Io, ".3.0 mail system error: input/output error"),
        (
            K::Unsupported,
            ".3.0 mail system error: operation not supported",
        ),
        (
            K::NotDirectory,
            ".2.0 mailbox unavailable: not a directory (or a symbolic link)",
        ),
        (
            K::NameTooLong,
            ".2.0 mailbox unavailable: file name too long",
        ),
        (
            K::Collisions,
            ".3.0 mail system error: could not find a free file name",
        ),
        (
            K::Busy,
            ".3.0 mail system busy: maildir is locked by another process",
        ),
        (K::Data, ".6.0 message is empty or unreadable"),
        (K::Usage, ".3.5 mdeliver is misconfigured"),
        (K::Loop, ".4.6 mail forwarding loop for bob@example.org"),
        (K::OverQuota, ".2.2 mailbox full"),
        (
            K::Resources,
            ".3.0 mail system overloaded: out of system resources (open files or memory)",
        ),
        (
            K::CrossDevice,
            ".2.0 mailbox unavailable: the maildir's directories are on different filesystems",
        ),
    ];

    #[test]
    fn every_kind_in_both_classes_gives_the_documented_line() {
        let mut seen = [false; 19];
        for (kind, rest) in TABLE {
            assert!(!seen[index(kind)], "{kind:?} twice in the table");
            seen[index(kind)] = true;
            for (class, digit) in [(Class::Transient, '4'), (Class::Permanent, '5')] {
                let s = status(Failed::Delivery(kind), class, Some("bob@example.org"));
                assert_eq!(
                    s.to_string(),
                    format!("{digit}{rest}"),
                    "{kind:?} {class:?}"
                );
                assert_eq!(s.class, class);
                assert_eq!(s.code().0, digit.to_digit(10).unwrap() as u8);
            }
        }
        assert!(seen.iter().all(|&s| s), "every kind has a row");
        let mut listed = [false; 19];
        for k in ALL {
            listed[index(k)] = true;
        }
        assert_eq!(listed, seen, "the wire's table lists every kind too");
    }

    #[test]
    fn codes_are_the_rfc_3463_ones() {
        let code = |k| status(Failed::Delivery(k), Class::Transient, None).code();
        assert_eq!(code(K::OverQuota), (4, 2, 2), "X.2.2 mailbox full");
        assert_eq!(code(K::Quota), (4, 2, 2));
        assert_eq!(code(K::NoSpace), (4, 3, 1), "X.3.1 mail system full");
        assert_eq!(code(K::Loop), (4, 4, 6), "X.4.6 routing loop detected");
        assert_eq!(code(K::Data), (4, 6, 0), "X.6.0 other media error");
        assert_eq!(
            code(K::Usage),
            (4, 3, 5),
            "X.3.5 system incorrectly configured"
        );
        for k in [K::NotFound, K::NotDirectory, K::NameTooLong] {
            assert_eq!(code(k), (4, 2, 0), "X.2.0 other mailbox status: {k:?}");
        }
    }

    #[test]
    fn the_text_is_a_fixed_part_and_a_tail() {
        for k in ALL {
            let s = status(Failed::Delivery(k), Class::Permanent, Some("a@b"));
            let want = match s.tail {
                Tail::Empty => String::new(),
                Tail::Kind(t) => {
                    assert_eq!(t, k, "the tail describes the failure's own kind");
                    format!(": {}", k.describe())
                }
                Tail::Address(a) => format!(" for {a}"),
            };
            assert_eq!(
                s.to_string(),
                format!("5.{}.{} {}{want}", s.subject, s.detail, s.text)
            );
            assert!(!s.text.is_empty() && !s.text.contains('\n'));
        }
    }

    #[test]
    fn the_loop_address_appears_only_for_loops() {
        let lp = status(Failed::Delivery(K::Loop), Class::Permanent, None);
        assert_eq!(lp.to_string(), "5.4.6 mail forwarding loop");
        assert_eq!(lp.tail, Tail::Empty);
        for k in ALL {
            if k != K::Loop {
                let with = status(Failed::Delivery(k), Class::Permanent, Some("a@b"));
                let without = status(Failed::Delivery(k), Class::Permanent, None);
                assert_eq!(with, without, "{k:?}");
                assert!(!with.to_string().contains("a@b"));
            }
        }
    }

    #[test]
    fn input_failures() {
        let s = |f| status(f, Class::Permanent, Some("a@b")).to_string();
        assert_eq!(
            s(Failed::InputOpen(K::NotFound)),
            "5.3.0 cannot open the input file: no such file or directory"
        );
        assert_eq!(
            s(Failed::InputOpen(K::Permission)),
            "5.3.0 cannot open the input file: permission denied"
        );
        assert_eq!(
            s(Failed::InputOpen(K::Usage)),
            "5.3.0 cannot open the input file: it is a directory"
        );
        assert_eq!(
            s(Failed::InputOpen(K::Loop)),
            "5.3.0 cannot open the input file: mail forwarding loop",
            "no address: the input file is not the loop"
        );
        assert_eq!(
            status(Failed::InputLost, Class::Transient, None).to_string(),
            "4.3.0 message input lost after a failed delivery"
        );
        assert_eq!(
            status(Failed::NotRegular, Class::Transient, None).to_string(),
            "4.2.0 mailbox unavailable: a maildir file is not a regular file"
        );
    }
}
