//! The LMTP session state machine: which command is allowed when, and what the server answers
//! on its own. The driver feeds it one command line at a time ([`Session::command`]) and does
//! what the returned [`Action`] asks; it never decides a reply itself, except the delivery
//! replies after `DATA`, which come from each recipient's outcome.
//!
//! States: before `LHLO` (`Start`), between transactions (`Ready`), after `MAIL`
//! (`Mail`), after at least one accepted `RCPT` (`Rcpt`). `RSET` and a new `LHLO` go back to
//! `Ready`; `DATA` ends the transaction whatever the delivery outcomes are. Ten bad commands
//! close the session (`421 4.7.0`), so garbage cannot keep a session slot forever.

use super::address::Recipient;
use super::command::{self, Command};
use super::reply::{Fixed, Reply};
use super::RECIPIENTS_MAX;

/// Bad commands tolerated before the session is closed.
pub const ERRORS_MAX: u8 = 10;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Start,
    Ready,
    Mail,
    Rcpt(usize),
}

/// What the driver does for a command.
// The recipient is carried by value: there is no heap to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send this reply; close the connection after it when [`Reply::closes`].
    Reply(Reply<'static>),
    /// Send [`Reply::Lhlo`] (the driver knows the host name) and forget any transaction.
    Lhlo,
    /// A new transaction from this sender (`b""`: the null sender): remember it, forget any
    /// recipients, and send [`Fixed::SenderOk`].
    Mail(&'a [u8]),
    /// Resolve this recipient (its address as given, and parsed). If it has a mailbox, keep it,
    /// call [`Session::accepted`] and send [`Fixed::RecipientOk`]; otherwise send the refusal
    /// ([`Fixed::UnknownUser`], or a [`Reply::Delivery`] for a maildir that cannot be
    /// opened).
    Rcpt {
        /// The address as the client wrote it (for `Delivered-To:`).
        address: &'a [u8],
        /// The address as a mailbox key.
        recipient: Recipient,
    },
    /// Send [`Fixed::SendData`], receive the message through a [`super::data::Decoder`], and
    /// send one reply per accepted recipient, in order.
    Data,
}

/// One LMTP session's protocol state.
#[derive(Clone, Debug)]
pub struct Session {
    state: State,
    errors: u8,
    max_size: Option<u64>,
}

impl Session {
    /// A new session (the driver sends [`Reply::Greeting`] first), refusing messages over
    /// `max_size` bytes.
    pub fn new(max_size: Option<u64>) -> Session {
        Session {
            state: State::Start,
            errors: 0,
            max_size,
        }
    }

    /// The number of recipients accepted in the current transaction.
    pub fn recipients(&self) -> usize {
        match self.state {
            State::Rcpt(n) => n,
            _ => 0,
        }
    }

    /// A transaction is open (`MAIL` given and not ended).
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Mail | State::Rcpt(_))
    }

    /// The driver accepted the recipient of the last [`Action::Rcpt`].
    pub fn accepted(&mut self) {
        self.state = State::Rcpt(self.recipients() + 1);
    }

    /// A command line over [`super::LINE_MAX`] was discarded.
    pub fn line_too_long(&mut self) -> Action<'static> {
        self.error(Fixed::LineTooLong)
    }

    fn error(&mut self, f: Fixed) -> Action<'static> {
        self.errors += 1;
        if self.errors >= ERRORS_MAX {
            Action::Reply(Reply::Fixed(Fixed::TooManyErrors))
        } else {
            Action::Reply(Reply::Fixed(f))
        }
    }

    /// Handles one command line (without its line ending).
    pub fn command<'a>(&mut self, line: &'a [u8]) -> Action<'a> {
        let ok = |f| Action::Reply(Reply::Fixed(f));
        let cmd = command::parse(line);
        match (cmd, self.state) {
            (Command::Quit, _) => ok(Fixed::Bye),
            (Command::Noop, _) => ok(Fixed::Ok),
            (Command::Lhlo(_), _) => {
                self.state = State::Ready;
                Action::Lhlo
            }
            (Command::SmtpGreeting, _) => self.error(Fixed::SmtpGreeting),
            (Command::Unknown, _) => self.error(Fixed::Unknown),
            (Command::NotImplemented, _) => self.error(Fixed::NotImplemented),
            (Command::Invalid(f), _) => self.error(f),
            // RSET is allowed at any time (RFC 5321 4.1.1.5); before LHLO it resets nothing.
            (Command::Rset, State::Start) => ok(Fixed::Ok),
            (_, State::Start) => self.error(Fixed::NeedLhlo),
            (Command::Rset, _) => {
                self.state = State::Ready;
                ok(Fixed::Ok)
            }
            (Command::Vrfy, _) => ok(Fixed::CannotVerify),
            (Command::Mail { .. }, State::Mail | State::Rcpt(_)) => self.error(Fixed::NestedMail),
            (Command::Mail { size, .. }, _)
                if size.zip(self.max_size).is_some_and(|(s, m)| s > m) =>
            {
                ok(Fixed::TooBig)
            }
            (Command::Mail { from, .. }, _) => {
                self.state = State::Mail;
                Action::Mail(from)
            }
            (Command::Rcpt { .. } | Command::Data, State::Ready) => self.error(Fixed::NeedMail),
            (Command::Rcpt { .. }, State::Rcpt(n)) if n >= RECIPIENTS_MAX => {
                ok(Fixed::TooManyRecipients)
            }
            (Command::Rcpt { to }, _) => match Recipient::parse(to) {
                Ok(recipient) => Action::Rcpt {
                    address: to,
                    recipient,
                },
                Err(why) => Action::Reply(Reply::BadMailbox(why)),
            },
            (Command::Data, State::Mail) => self.error(Fixed::NoRecipients),
            (Command::Data, _) => {
                self.state = State::Ready;
                Action::Data
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lmtp::address::Refused;

    fn reply(a: Action<'_>) -> Option<Fixed> {
        match a {
            Action::Reply(Reply::Fixed(f)) => Some(f),
            _ => None,
        }
    }

    #[test]
    fn a_transaction_in_order() {
        let mut s = Session::new(Some(100));
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b>")), Some(Fixed::NeedLhlo));
        // RSET at any time; before LHLO it does not stand in for it.
        assert_eq!(reply(s.command(b"RSET")), Some(Fixed::Ok));
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b>")), Some(Fixed::NeedLhlo));
        assert_eq!(s.command(b"LHLO mx"), Action::Lhlo);
        assert_eq!(reply(s.command(b"RCPT TO:<a@b>")), Some(Fixed::NeedMail));
        assert_eq!(reply(s.command(b"DATA")), Some(Fixed::NeedMail));
        assert_eq!(
            reply(s.command(b"MAIL FROM:<a@b> SIZE=101")),
            Some(Fixed::TooBig)
        );
        assert_eq!(s.command(b"MAIL FROM:<a@b> SIZE=100"), Action::Mail(b"a@b"));
        assert_eq!(
            reply(s.command(b"MAIL FROM:<c@d>")),
            Some(Fixed::NestedMail)
        );
        assert_eq!(reply(s.command(b"DATA")), Some(Fixed::NoRecipients));
        match s.command(b"RCPT TO:<Bob+x@B>") {
            Action::Rcpt { address, recipient } => {
                assert_eq!(address, b"Bob+x@B");
                assert_eq!(recipient.key(), "bob@b");
            }
            other => panic!("{other:?}"),
        }
        // The driver refused it: still no recipient.
        assert_eq!(reply(s.command(b"DATA")), Some(Fixed::NoRecipients));
        assert!(matches!(s.command(b"RCPT TO:<c@d>"), Action::Rcpt { .. }));
        s.accepted();
        assert_eq!(s.recipients(), 1);
        assert_eq!(
            s.command(b"RCPT TO:<../x@d>"),
            Action::Reply(Reply::BadMailbox(Refused::LeadingDot))
        );
        assert_eq!(s.command(b"DATA"), Action::Data);
        assert!(!s.in_transaction());
        assert_eq!(reply(s.command(b"RCPT TO:<a@b>")), Some(Fixed::NeedMail));
        assert_eq!(reply(s.command(b"QUIT")), Some(Fixed::Bye));
    }

    #[test]
    fn rset_and_lhlo_end_a_transaction() {
        let mut s = Session::new(None);
        s.command(b"LHLO mx");
        s.command(b"MAIL FROM:<>");
        assert!(s.in_transaction());
        assert_eq!(reply(s.command(b"RSET")), Some(Fixed::Ok));
        assert!(!s.in_transaction());
        s.command(b"MAIL FROM:<>");
        assert_eq!(s.command(b"LHLO again"), Action::Lhlo);
        assert!(!s.in_transaction());
    }

    #[test]
    fn too_many_recipients_is_a_transient_refusal() {
        let mut s = Session::new(None);
        s.command(b"LHLO mx");
        s.command(b"MAIL FROM:<>");
        for _ in 0..RECIPIENTS_MAX {
            assert!(matches!(s.command(b"RCPT TO:<a@b>"), Action::Rcpt { .. }));
            s.accepted();
        }
        assert_eq!(
            reply(s.command(b"RCPT TO:<a@b>")),
            Some(Fixed::TooManyRecipients)
        );
    }

    #[test]
    fn garbage_closes_the_session_after_ten_errors() {
        let mut s = Session::new(None);
        for _ in 1..ERRORS_MAX {
            assert_eq!(
                reply(s.command(b"\x16\x03\x01garbage")),
                Some(Fixed::Unknown)
            );
        }
        assert_eq!(
            reply(s.command(b"GET / HTTP/1.0")),
            Some(Fixed::TooManyErrors)
        );
        assert!(Reply::Fixed(Fixed::TooManyErrors).closes());
    }
}
