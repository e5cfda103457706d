//! The mdeliver simulator and shared helpers for cross-crate tests.
