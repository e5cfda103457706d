//! The deciding core of mdeliver, a Maildir delivery agent. `no_std` and allocation-free, so the
//! same code runs in the Linux binary, the WASI module, on a microcontroller and under the
//! deterministic simulator. The core never performs I/O: it asks for single filesystem
//! operations and is fed their results (sans-io), the way smoltcp's protocol layers sit on a
//! `phy::Device`.
//!
//! # Layers, from the outside world inwards
//!
//! - **Vocabulary** ([`error`], [`env`](mod@env), [`fs`]): what can go wrong ([`Error`]: a
//!   kind and a phase), where unique names come from ([`Env`]: clock, entropy, pid, host),
//!   and the one filesystem trait the drivers implement ([`Fs`]): a maildir root addressed as
//!   `(Dir, name)`, never as paths, and the operations ([`Op`]) a machine asks for. Wrappers
//!   that compose around any `Fs` live beside it ([`fs::dryrun`]).
//! - **The Maildir format** ([`maildir`]): unique names, flags, Maildir++ folders, as values.
//! - **Message bytes** ([`message`], [`mbox`]): streaming, chunking-independent transforms and
//!   scanners over a message's bytes (the `From ` line, the trace prelude, loop detection,
//!   `Status:` flags, dates), and the mbox splitter with its importer ([`mbox::import`]).
//! - **Machines** ([`machine`]): the sans-io state machines that decide a delivery
//!   ([`machine::deliver`]), a listing ([`machine::scan`]), the Maildir++ quota
//!   ([`machine::quota`]), the duplicate index ([`machine::dedup`]) and a flag change, and
//!   which delivery strategy a filesystem gets from its observed capabilities
//!   ([`machine::trust`]); and [`machine::mta`], the MTA's delivery composed of them as one
//!   machine (duplicate check, quota, accounting, publish, commit).
//! - **The MTA's delivery** ([`mda`]): one message from an MTA into one maildir: the head
//!   looked at, trace fields reconciled ([`mda::trace`]), then quota, duplicate index and
//!   delivery composed.
//! - **LMTP** ([`lmtp`]): the sans-io session of an LMTP delivery server: commands, session
//!   states, the DATA decoder (dot-unstuffing, CRLF to LF, size limit), recipient addresses
//!   expanded into maildir templates, and the replies with their RFC 3463 codes.
//! - **Filtering** ([`sieve`]): the Sieve language (RFC 5228 and extensions): a script compiled
//!   into caller-provided arenas, run on a message's header block, size and envelope, deciding
//!   its actions.
//! - **Reports** ([`report`]): the exit code of a delivery or a command (the one sysexits
//!   table, which the LMTP reply class derives from), the RFC 3463 status line of a failure and
//!   the findings of a health check.
//! - **Wire** ([`wire`]): the byte encoding of operations, results and outcomes, so a machine
//!   compiled into the WASI module can be stepped from the other side of an FFI boundary.
//!
//! # Entry points for a driver
//!
//! A driver implements [`Fs`] and [`Env`] for its platform, then calls:
//! - [`mda::store`] for an MTA's delivery (the `mdeliver` command's default mode);
//! - [`mbox::import::import`] for `mdeliver -M`;
//! - [`deliver()`] for a bare delivery with no MTA semantics;
//! - [`machine::scan::scan`], [`machine::flagchange::change_flags`] and
//!   [`report::check`] for the reader's subcommands.
//!
//! Every machine implements [`machine::Machine`]: it is polled for an [`Op`], the driver
//! performs it ([`fs::perform`]) and feeds back the [`OpResult`] until the machine is done.
//! [`machine::run`] is that loop; the simulator and the WASI stepping ABI make the same calls
//! one at a time.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod dir;
pub mod env;
pub mod error;
pub mod fs;
pub mod lmtp;
pub mod machine;
pub mod maildir;
pub mod mbox;
pub mod mda;
pub mod message;
pub mod report;
pub mod sieve;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod wire;

pub use env::Env;
pub use error::{Error, ErrorKind, Phase};
pub use fs::{Capabilities, Dir, Fs, Op, OpResult};
pub use machine::deliver::{deliver, Delivery, Options, Outcome, Step, Strategy};
pub use maildir::flags::Flags;
