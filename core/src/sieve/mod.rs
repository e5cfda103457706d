//! Sieve mail filtering (RFC 5228) in the core: [`compile`] parses a script into
//! caller-provided arenas (errors name line and column) and [`run`] decides one message's
//! actions from its header block, size and envelope, within [`Limits`]. No allocation: the
//! compiled form, the outcome and the scratch buffer all belong to the caller.
//!
//! What is supported: the base language (RFC 5228: `require`, `if`/`elsif`/`else`, `stop`,
//! `keep`, `discard`, `redirect`, the `address`/`envelope`/`header`/`exists`/`size`/`allof`/
//! `anyof`/`not`/`true`/`false` tests, the `i;octet` and `i;ascii-casemap` comparators, the
//! `:is`/`:contains`/`:matches` match types) and the extensions in
//! [`Extensions::SUPPORTED`]: `fileinto`, `envelope`, `encoded-character`, `imap4flags`
//! (RFC 5232), `copy` (RFC 3894), `subaddress` (RFC 5233, `+`
//! separator), `mailbox` (RFC 5490, `:create` only), `relational` (RFC 5231) with
//! `comparator-i;ascii-numeric`, `reject`/`ereject` (RFC 5429), `variables` (RFC 5229,
//! without namespaces), `body` (RFC 5173), `date` and `index` (RFC 5260), `duplicate`
//! (RFC 7352) and `vacation` (RFC 5230, with RFC 6131's `vacation-seconds`). Requiring
//! anything else is a compile error. The `header` test decodes RFC 2047 encoded words in
//! UTF-8, US-ASCII and ISO-8859-1.
//!
//! The extensions that need more than the header block take it from a [`Context`] given to
//! [`run_with`]: the body (a slice the driver reads only when the script requires `body`;
//! see `body.rs` for how it is walked in bounded memory), the clock and local zone
//! (`currentdate`, `date`), and a read-only [`Seen`] store of earlier runs (`duplicate`,
//! `vacation :days`). What to remember is never written by the core: it is an
//! [`Action::Track`] or [`Action::Vacation`] in the outcome, for the delivery to record in the
//! same unit as the copies (so an id is seen only once its message was delivered).
//!
//! Memory: the compiled form is in the caller's arenas ([`Limits::nodes_for`],
//! [`Limits::strings_for`]), the outcome in the caller's [`Outcome`], header values in the
//! caller's scratch buffer; [`run`] itself keeps the variables and the expanded strings of one
//! command (some 45 KiB) on its stack.
//!
//! The driver performs the actions: stores (each folder copy and keep, with flags),
//! redirects (through the MTA), a reject (answered to the MTA as a 5.7.1 status), the
//! duplicate records and the vacation reply (sent with the null envelope sender).

mod body;
mod compare;
mod date;
mod error;
pub mod header;
mod input;
mod lex;
mod mime;
mod parse;
mod run;
mod script;
mod vars;

pub use error::{CompileError, ErrorKind, Pos, RuntimeError};
pub use input::MessageReader;
pub use parse::{compile, Script};
pub use run::{
    run, run_with, Action, Context, Message, Outcome, Seen, Text, ACTIONS_MAX, DUPLICATE_SECONDS,
    DUPLICATE_SECONDS_MAX, TEXT_MAX, VACATION_REASON_MAX, VACATION_SECONDS, VACATION_SECONDS_RANGE,
};
pub use script::{Extension, Extensions, Node};

/// The bounds every script and run is held to; each is refused with its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest script, in bytes (Pigeonhole's `sieve_max_script_size` default: 1 MiB).
    pub max_script_size: usize,
    /// How deeply blocks and tests may nest.
    pub max_nesting: u32,
    /// The longest string, in bytes after decoding.
    pub max_string_len: usize,
    /// The most actions one run may decide (Pigeonhole's `sieve_max_actions` default: 32).
    pub max_actions: usize,
    /// The most redirects one run may decide (Pigeonhole's `sieve_max_redirects` default: 4).
    pub max_redirects: usize,
    /// The instruction budget: commands, tests and value comparisons one run may do.
    pub max_steps: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_script_size: 1 << 20,
            max_nesting: 32,
            max_string_len: 64 * 1024,
            max_actions: 32,
            max_redirects: 4,
            max_steps: 1_000_000,
        }
    }
}

impl Limits {
    /// The node arena a script of `len` bytes can need at most (every node is at least one
    /// token of two bytes, plus the string-list heads).
    pub fn nodes_for(len: usize) -> usize {
        len + 8
    }

    /// The string arena a script of `len` bytes can need at most (multi-line strings' bare
    /// LF line ends become CRLF).
    pub fn strings_for(len: usize) -> usize {
        2 * len + 8
    }
}
