//! The deciding core of mdeliver: Maildir names and flags, the filesystem and environment traits,
//! and the sans-io delivery state machine. `no_std` and allocation-free, so the same code runs in
//! the Linux CLI, the WASI module, on a microcontroller, and under the deterministic simulator.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod check;
pub mod dedup;
pub mod deliver;
pub mod dryrun;
pub mod env;
pub mod error;
pub mod flagchange;
pub mod flags;
pub mod folder;
pub mod fs;
pub mod import;
pub mod lmtp;
pub mod mbox;
pub mod mda;
pub mod message;
pub mod name;
pub mod quota;
pub mod scan;
pub mod status;
pub mod trace;
pub mod wire;

pub use deliver::{deliver, Delivery, Options, Outcome, Step, Strategy};
pub use env::Env;
pub use error::{Error, ErrorKind, Phase};
pub use flags::Flags;
pub use fs::{Capabilities, Dir, Fs, Op, OpResult};
