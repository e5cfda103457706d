//! Every reply the LMTP server sends, with its basic code and RFC 3463 enhanced code. A
//! [`Reply`] writes itself in wire form ([`fmt::Display`], CRLF included, multi-line where
//! needed), so the driver never builds reply text.

use core::fmt;

use super::address::Refused;
use crate::report::rfc3463::{Class, Status};

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

impl Fixed {
    /// The reply line without its line ending.
    pub const fn text(self) -> &'static str {
        match self {
            Fixed::SenderOk => "250 2.1.0 sender ok",
            Fixed::RecipientOk => "250 2.1.5 recipient ok",
            Fixed::SendData => "354 send the message; end it with a line holding only a dot",
            Fixed::Delivered => "250 2.0.0 delivered",
            Fixed::Ok => "250 2.0.0 ok",
            Fixed::Bye => "221 2.0.0 bye",
            Fixed::CannotVerify => "252 2.1.5 cannot verify; send the message and see",
            Fixed::NeedLhlo => "503 5.5.1 send LHLO first",
            Fixed::NeedMail => "503 5.5.1 send MAIL first",
            Fixed::NestedMail => "503 5.5.1 sender already given; send RSET to start over",
            Fixed::NoRecipients => "503 5.5.1 no valid recipients",
            Fixed::SmtpGreeting => "500 5.5.1 this is an LMTP server: greet it with LHLO",
            Fixed::Unknown => "500 5.5.1 command not recognized",
            Fixed::NotImplemented => "502 5.5.1 command not implemented",
            Fixed::LineTooLong => "500 5.5.2 line too long",
            Fixed::LhloDomain => "501 5.5.4 LHLO needs a domain",
            Fixed::PathSyntax => "501 5.5.2 syntax: MAIL FROM:<address> or RCPT TO:<address>",
            Fixed::Address => "501 5.1.3 bad address syntax: write it as <local@domain>",
            Fixed::AddressTooLong => "501 5.1.3 address too long",
            Fixed::NullRecipient => "501 5.1.3 the null address cannot receive mail",
            Fixed::Parameter => "555 5.5.4 parameter not supported",
            Fixed::Size => "501 5.5.4 SIZE needs a number",
            Fixed::Arguments => "501 5.5.4 this command takes no arguments",
            Fixed::TooBig => "552 5.3.4 message size exceeds the limit",
            Fixed::TooManyRecipients => "452 4.5.3 too many recipients",
            Fixed::UnknownUser => "550 5.1.1 no such user",
            Fixed::TooManyErrors => "421 4.7.0 too many errors; closing",
            Fixed::ShuttingDown => "421 4.3.2 shutting down; try again later",
            Fixed::Timeout => "421 4.4.2 timeout; closing",
            Fixed::TooManySessions => "421 4.3.2 too many sessions; try again later",
            Fixed::Truncated => "451 4.3.0 the message ended early; nothing stored",
        }
    }
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
    match (s.class, s.subject, s.detail) {
        (Class::Transient, 2, 2) | (Class::Transient, 3, 1) => 452,
        (Class::Transient, 2, _) => 450,
        (Class::Transient, _, _) => 451,
        (Class::Permanent, 2, 2) | (Class::Permanent, 3, 4) => 552,
        (Class::Permanent, 1 | 2, _) => 550,
        (Class::Permanent, _, _) => 554,
    }
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
    use crate::ErrorKind;
    use std::string::ToString;

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
        for f in [
            SenderOk,
            RecipientOk,
            SendData,
            Delivered,
            Ok,
            Bye,
            CannotVerify,
            NeedLhlo,
            NeedMail,
            NestedMail,
            NoRecipients,
            SmtpGreeting,
            Unknown,
            NotImplemented,
            LineTooLong,
            LhloDomain,
            PathSyntax,
            Address,
            AddressTooLong,
            NullRecipient,
            Parameter,
            Size,
            Arguments,
            TooBig,
            TooManyRecipients,
            UnknownUser,
            TooManyErrors,
            ShuttingDown,
            Timeout,
            TooManySessions,
            Truncated,
        ] {
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
