//! The mdeliver simulator and shared helpers for cross-crate tests.
pub mod fuzz_bodies;
pub mod fuzz_sieve;
pub mod sim;
pub mod wrap;
