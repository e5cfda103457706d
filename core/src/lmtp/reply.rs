//! Every reply the LMTP server sends, with its basic code and RFC 3463 enhanced code. A
//! [`Reply`] writes itself in wire form ([`fmt::Display`], CRLF included, multi-line where
//! needed), so the driver never builds reply text.

use core::fmt;

use super::address::Refused;
use crate::report::exit;
use crate::report::rfc3463::{Class, Status};
use crate::ErrorKind;

/// A reply whose text never changes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fixed {
    /// After `MAIL`.
    SenderOk,
    /// After an accepted `RCPT`.
    RecipientOk,
    /// After `DATA`, before the message.
    SendData,
    /// One recipient's message is stored and durable.
    Delivered,
    /// `RSET`, `NOOP`, a repeated `LHLO`'s reset.
    Ok,
    /// `QUIT`.
    Bye,
    /// `VRFY`.
    CannotVerify,
    /// A command before `LHLO`.
    NeedLhlo,
    /// `RCPT` or `DATA` before `MAIL`.
    NeedMail,
    /// A second `MAIL` in one transaction.
    NestedMail,
    /// `DATA` without an accepted recipient.
    NoRecipients,
    /// `HELO`/`EHLO`.
    SmtpGreeting,
    /// An unknown verb.
    Unknown,
    /// A verb this server does not offer.
    NotImplemented,
    /// A command line over [`super::LINE_MAX`].
    LineTooLong,
    /// `LHLO` without a domain.
    LhloDomain,
    /// `MAIL FROM:` / `RCPT TO:` missing.
    PathSyntax,
    /// A path that is not `<address>`.
    Address,
    /// A path over the address limit.
    AddressTooLong,
    /// `RCPT TO:<>`.
    NullRecipient,
    /// An unknown parameter.
    Parameter,
    /// `SIZE=` that is not a number.
    Size,
    /// Arguments to a command that takes none.
    Arguments,
    /// The message (declared or received) is over `--max-size`.
    TooBig,
    /// More than [`super::RECIPIENTS_MAX`] recipients.
    TooManyRecipients,
    /// No mailbox for this address.
    UnknownUser,
    /// Too many bad commands: the server closes.
    TooManyErrors,
    /// The server is shutting down (SIGTERM): closes after this.
    ShuttingDown,
    /// The session was idle (or open) too long: closes after this.
    Timeout,
    /// The server is at its session limit: closes after this.
    TooManySessions,
    /// The input ended inside the message.
    Truncated,
}

/// `Fixed::ALL` and `Fixed::text` from one list: the `match` in `text` is exhaustive, so a
/// variant missing from the list does not compile, and `ALL` holds exactly the listed ones.
macro_rules! fixed_texts {
    ($($variant:ident => $text:literal,)*) => {
        impl Fixed {
            /// Every variant, in declaration order.
            pub const ALL: [Fixed; [$(stringify!($variant)),*].len()] = [$(Fixed::$variant),*];

            /// The reply line without its line ending.
            pub const fn text(self) -> &'static str {
                match self {
                    $(Fixed::$variant => $text,)*
                }
            }
        }
    };
}

fixed_texts! {
    SenderOk => "250 2.1.0 sender ok",
    RecipientOk => "250 2.1.5 recipient ok",
    SendData => "354 send the message; end it with a line holding only a dot",
    Delivered => "250 2.0.0 delivered",
    Ok => "250 2.0.0 ok",
    Bye => "221 2.0.0 bye",
    CannotVerify => "252 2.1.5 cannot verify; send the message and see",
    NeedLhlo => "503 5.5.1 send LHLO first",
    NeedMail => "503 5.5.1 send MAIL first",
    NestedMail => "503 5.5.1 sender already given; send RSET to start over",
    NoRecipients => "503 5.5.1 no valid recipients",
    SmtpGreeting => "500 5.5.1 this is an LMTP server: greet it with LHLO",
    Unknown => "500 5.5.1 command not recognized",
    NotImplemented => "502 5.5.1 command not implemented",
    LineTooLong => "500 5.5.2 line too long",
    LhloDomain => "501 5.5.4 LHLO needs a domain",
    PathSyntax => "501 5.5.2 syntax: MAIL FROM:<address> or RCPT TO:<address>",
    Address => "501 5.1.3 bad address syntax: write it as <local@domain>",
    AddressTooLong => "501 5.1.3 address too long",
    NullRecipient => "501 5.1.3 the null address cannot receive mail",
    Parameter => "555 5.5.4 parameter not supported",
    Size => "501 5.5.4 SIZE needs a number",
    Arguments => "501 5.5.4 this command takes no arguments",
    TooBig => "552 5.3.4 message size exceeds the limit",
    TooManyRecipients => "452 4.5.3 too many recipients",
    UnknownUser => "550 5.1.1 no such user",
    TooManyErrors => "421 4.7.0 too many errors; closing",
    ShuttingDown => "421 4.3.2 shutting down; try again later",
    Timeout => "421 4.4.2 timeout; closing",
    TooManySessions => "421 4.3.2 too many sessions; try again later",
    Truncated => "451 4.3.0 the message ended early; nothing stored",
}

/// A reply.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A fixed text.
    Fixed(Fixed),
    /// The greeting: `220 HOST LMTP ...`.
    Greeting(&'a str),
    /// The answer to `LHLO`: the host and the extensions (`SIZE` with the limit).
    Lhlo {
        /// The server's host name.
        host: &'a str,
        /// `--max-size`.
        max_size: Option<u64>,
    },
    /// An address that cannot name a mailbox (`553 5.1.3`).
    BadMailbox(Refused),
    /// One recipient's delivery failed (or a recipient's maildir failed at `RCPT`).
    Delivery(Status<'a>),
}

/// The basic reply code for a delivery failure's status: 450/452/451 for transient, 550/552/554
/// for permanent failures (RFC 5321 section 4.2.3, matched to the RFC 3463 subject).
pub const fn basic_code(s: &Status<'_>) -> u16 {
    basic(s.class, s.subject, s.detail)
}

/// [`basic_code`] for a status given as its three numbers (`class.subject.detail`).
pub const fn basic(class: Class, subject: u16, detail: u16) -> u16 {
    match (class, subject, detail) {
        (Class::Transient, 2, 2) | (Class::Transient, 3, 1) => 452,
        (Class::Transient, 2, _) => 450,
        (Class::Transient, _, _) => 451,
        (Class::Permanent, 2, 2) | (Class::Permanent, 3, 4) => 552,
        // Mailbox, address and policy (a Sieve `reject`: RFC 5429 2.1.2's 550 5.7.1).
        (Class::Permanent, 1 | 2 | 7, _) => 550,
        (Class::Permanent, _, _) => 554,
    }
}

/// The basic reply code for a status line that begins with its enhanced code (`4.2.2 mailbox
/// full`), as a one-shot delivery prints it; None when it does not begin with one.
pub fn basic_of_line(line: &str) -> Option<u16> {
    let code = line.split(' ').next()?;
    let mut n = code.split('.').map(|p| p.parse::<u16>().ok());
    let class = match n.next()?? {
        4 => Class::Transient,
        5 => Class::Permanent,
        _ => return None,
    };
    let (subject, detail) = (n.next()??, n.next()??);
    n.next().is_none().then_some(basic(class, subject, detail))
}

/// What changes how a recipient's failed delivery is answered: the one-shot path's options
/// that change its exit code (an LMTP client is an MTA, never a person at a terminal).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FailurePolicy {
    /// `--strict-exit`: a missing, unreadable or failing maildir is permanent (5xx).
    pub strict: bool,
    /// `--quota-full=bounce`: a message over the Maildir++ quota is permanent.
    pub quota_bounces: bool,
}

/// Whether a recipient's delivery that failed with `kind` is answered 4xx (the MTA retries)
/// or 5xx (it bounces): the class of the exit code the one-shot delivery would exit with
/// ([`exit::decide`]), where everything an administrator or time can fix defers. Permanent: a
/// message the maildir can never take (bad data, a loop), and with `--strict-exit` a missing,
/// unusable or failing maildir, and with `--quota-full=bounce` a full quota.
pub fn failure_class(kind: ErrorKind, policy: FailurePolicy) -> Class {
    let policy = exit::Policy {
        strict: policy.strict,
        quota_bounces: policy.quota_bounces,
        interactive: false,
    };
    exit::class(exit::decide(kind, exit::Context::Deliver, policy))
}

impl Reply<'_> {
    /// The basic reply code (the first three digits).
    pub fn code(&self) -> u16 {
        match self {
            Reply::Fixed(f) => {
                let t = f.text().as_bytes();
                (t[0] - b'0') as u16 * 100 + (t[1] - b'0') as u16 * 10 + (t[2] - b'0') as u16
            }
            Reply::Greeting(_) => 220,
            Reply::Lhlo { .. } => 250,
            Reply::BadMailbox(_) => 553,
            Reply::Delivery(s) => basic_code(s),
        }
    }

    /// The server closes the connection after this reply.
    pub fn closes(&self) -> bool {
        self.code() == 421 || *self == Reply::Fixed(Fixed::Bye)
    }
}

impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Fixed(x) => write!(f, "{}\r\n", x.text()),
            Reply::Greeting(host) => write!(f, "220 {host} LMTP mdeliver ready\r\n"),
            Reply::Lhlo { host, max_size } => {
                write!(
                    f,
                    "250-{host}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                )?;
                write!(f, "250-8BITMIME\r\n")?;
                match max_size {
                    Some(m) => write!(f, "250 SIZE {m}\r\n"),
                    None => write!(f, "250 SIZE\r\n"),
                }
            }
            Reply::BadMailbox(r) => write!(f, "553 5.1.3 {r}\r\n"),
            Reply::Delivery(s) => write!(f, "{} {s}\r\n", basic_code(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rfc3463::{status, Failed};
    use std::string::ToString;

    #[test]
    fn a_status_line_gets_the_basic_code_of_its_enhanced_code() {
        for (line, code) in [
            ("4.2.2 mailbox full", Some(452)),
            ("5.2.2 mailbox full", Some(552)),
            ("4.3.5 the Sieve script does not compile", Some(451)),
            ("5.7.1 rejected: no thanks", Some(550)),
            ("5.6.0 bad message", Some(554)),
            ("4.2", None),
            ("2.0.0 delivered", None),
            ("4.2.2.1 x", None),
            ("mailbox full", None),
        ] {
            assert_eq!(basic_of_line(line), code, "{line}");
        }
    }

    #[test]
    fn delivery_failures_get_the_basic_code_their_class_and_subject_call_for() {
        let line = |k, c| Reply::Delivery(status(Failed::Delivery(k), c, None)).to_string();
        assert_eq!(
            line(ErrorKind::OverQuota, Class::Transient),
            "452 4.2.2 mailbox full\r\n"
        );
        assert_eq!(
            line(ErrorKind::OverQuota, Class::Permanent),
            "552 5.2.2 mailbox full\r\n"
        );
        assert_eq!(
            line(ErrorKind::NotFound, Class::Transient),
            "450 4.2.0 mailbox unavailable: no such file or directory\r\n"
        );
        assert_eq!(
            line(ErrorKind::NoSpace, Class::Transient),
            "452 4.3.1 mail system full (no space left on device)\r\n"
        );
        assert_eq!(
            line(ErrorKind::Io, Class::Transient),
            "451 4.3.0 mail system error: input/output error\r\n"
        );
        assert_eq!(
            Reply::Delivery(status(
                Failed::Delivery(ErrorKind::Loop),
                Class::Permanent,
                Some("bob@x")
            ))
            .to_string(),
            "554 5.4.6 mail forwarding loop for bob@x\r\n"
        );
    }

    #[test]
    fn every_fixed_text_starts_with_its_code_and_an_enhanced_code_of_the_same_class() {
        use Fixed::*;
        for (i, f) in Fixed::ALL.into_iter().enumerate() {
            // Each variant once.
            assert!(!Fixed::ALL[..i].contains(&f), "{f:?}");
            let t = f.text().as_bytes();
            assert_eq!(t[3], b' ', "{f:?}");
            if f != SendData {
                // The enhanced code's class is the basic code's first digit.
                assert_eq!(t[4], t[0], "{f:?}");
                assert_eq!(&t[5..6], b".", "{f:?}");
            }
        }
        assert_eq!(Reply::Fixed(Bye).code(), 221);
        assert!(Reply::Fixed(ShuttingDown).closes() && !Reply::Fixed(Ok).closes());
    }

    #[test]
    fn an_admins_problem_defers_and_only_the_message_or_a_strict_policy_bounces() {
        use ErrorKind::*;
        let kinds = crate::wire::KINDS;
        let class = |k, strict, quota_bounces| {
            failure_class(
                k,
                FailurePolicy {
                    strict,
                    quota_bounces,
                },
            )
        };
        let permanent = |strict, quota_bounces| -> std::vec::Vec<ErrorKind> {
            kinds
                .into_iter()
                .filter(|&k| class(k, strict, quota_bounces) == Class::Permanent)
                .collect()
        };
        assert_eq!(permanent(false, false), [Data, Usage, Loop]);
        assert_eq!(permanent(false, true), [Data, Usage, Loop, OverQuota]);
        assert_eq!(
            permanent(true, false),
            [
                NotFound,
                Permission,
                ReadOnly,
                Io,
                NotDirectory,
                NameTooLong,
                Data,
                Usage,
                Loop,
                CrossDevice
            ]
        );
    }

    #[test]
    fn lhlo_lists_the_extensions() {
        let r = Reply::Lhlo {
            host: "mx",
            max_size: Some(1000),
        };
        assert_eq!(
            r.to_string(),
            "250-mx\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE 1000\r\n"
        );
    }
}
