//! The mdeliver simulator and shared helpers for cross-crate tests.
pub mod fuzz_bodies;
pub mod sim;
pub mod wrap;
