//! One message's bytes on their way into a maildir: the leading mbox `From ` envelope line, the
//! `Return-Path`/`X-Original-To`/`Delivered-To` prelude, `Delivered-To` loop detection, mbox
//! `Status:`/`X-Status:` flags, and `Date:` parsing.
//!
//! Everything here is sans-io and allocation-free. Transforms implement [`Transform`] (fed
//! chunks, emitting chunks; [`Transformed`] turns one into an `embedded_io::Read` over any
//! source), scanners are fed chunks and answer questions. Each works byte by byte on bounded
//! state (only a bounded prefix of any line is ever held), so the output and the answers are
//! the same for every way the input is cut into chunks, and a 1 MiB header line costs nothing.
//!
//! How a driver chains them (each layer a [`Transformed`], the outermost handed to
//! `fs::write_message` as the message source):
//! - single message: look at the head first (a [`Prefixed`] reader gives the looked-at bytes
//!   back): [`FromLine`] or [`Postmark::parse_line`] for the sender ([`Postmark::return_path`]),
//!   [`LoopCheck`] until `header_done()`; then stream `source → FromLine → Prelude`.
//! - mbox import (`mbox::MboxReader` per message): `message → StatusFilter → Observe<DateCapture>`;
//!   after the write, `StatusFilter::status().maildir_info()` gives new/ or cur/ + flags and the
//!   capture gives the mtime (else `Postmark::timestamp`).
//!
//! The header block is every line up to the first empty line (`\n` or `\r\n`) or the end of
//! the message, as mblaze does. A header field is a line `name[WSP]*:value` (name: printable
//! ASCII except `:`) plus its continuation lines (starting with space or tab); any other line in
//! the header block (a kept `From ` line, garbage) is passed over, never matched.

use crate::maildir::flags::Flags;

/// The longest `From ` envelope line kept, in bytes, including `From ` and the line ending.
pub const FROM_LINE_MAX: usize = 1024;

mod transform;
pub use transform::*;
mod lexer;
use lexer::*;
mod from_line;
pub use from_line::*;
mod prelude;
pub use prelude::*;
mod loop_check;
pub use loop_check::*;
mod mbox_status;
pub use mbox_status::*;
mod capture;
pub use capture::*;
mod date;
pub use date::*;

#[cfg(test)]
pub(crate) mod tests;
