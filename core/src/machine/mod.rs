//! The state machines: each decides one job over the [`Fs`](crate::fs::Fs) vocabulary and never
//! performs I/O itself. Its driver asks it for the next operation, performs it, and feeds the
//! result back, so the same machine runs under the Linux binary, the WASI module and the
//! simulator, which interleaves many of them and crashes them at every step.
//!
//! - [`deliver`]: one message written into tmp/ and published into new/ (or cur/).
//! - [`scan`]: a complete listing of new/ and cur/ under concurrent renames, and a reader's
//!   never-clobbering rename ([`scan::Move`]).
//! - [`quota`]: the Maildir++ `maildirsize` check and recalculation.
//! - [`dedup`]: the duplicate-suppression index that makes an MTA's retries exactly-once.
//! - [`flagchange`]: a reader's flag change on one message.
//! - [`trust`]: the strategy a filesystem gets: `Locked` where exclusive create and link
//!   replies cannot be trusted.

pub mod dedup;
pub mod deliver;
pub mod flagchange;
pub mod quota;
pub mod scan;
pub mod trust;
