//! LMTP (RFC 2033) as a sans-io session: what a delivery server says to an MTA, decided here and
//! carried out by a driver that owns the socket, the spool and the maildirs.
//!
//! The layers, each a file:
//! - [`command`]: one command line parsed into a [`command::Command`] (a borrowed view).
//! - [`session`]: the [`session::Session`] state machine (LHLO, MAIL, RCPT, DATA, RSET, QUIT),
//!   which answers protocol errors itself and hands the driver the steps only it can take
//!   (accept a sender, resolve a recipient, receive the message).
//! - [`data`]: the DATA stream decoder: dot-unstuffing, CRLF (and bare LF) to LF, the end marker
//!   and the size limit, byte by byte, so the message is never held whole.
//! - [`address`]: a recipient address, lower-cased, its subaddress split off, checked safe to
//!   put into a path, and expanded into a maildir template (`{local}`, `{domain}`, `{rcpt}`).
//! - [`reply`]: the replies, with their RFC 3463 codes, and the basic reply code a delivery
//!   failure's [`crate::report::rfc3463::Status`] calls for.
//! - [`commit`]: the group commit: which flushes a batch of waiting deliveries needs (one
//!   whole-filesystem flush where it can), which flush answers which delivery, and when a
//!   reply may be sent.
//! - [`link`]: identical copies for several recipients stored as hard links to the first
//!   one's file, through an [`crate::Fs`] wrapper.
//! - [`reuse`]: when a maildir opened for an earlier delivery may serve the next one.
//!
//! What the session promises its driver: a reply for every line (pipelined commands are
//! answered in order), no state that can grow with the input, and after DATA one reply per
//! accepted recipient, in RCPT order (RFC 2033 section 4.2), which the driver builds from each
//! recipient's own delivery outcome as a [`reply::Reply::Delivery`].

pub mod address;
pub mod command;
pub mod commit;
pub mod data;
pub mod link;
pub mod reply;
pub mod reuse;
pub mod session;

/// The longest command line accepted, its line ending included (RFC 5321 allows 512; Postfix
/// sends longer ones with many parameters, so there is room).
pub const LINE_MAX: usize = 2048;

/// The most recipients one transaction takes (RFC 5321 asks servers to take at least 100);
/// further ones get `452 4.5.3`.
pub const RECIPIENTS_MAX: usize = 1000;
