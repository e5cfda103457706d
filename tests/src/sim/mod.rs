//! The deterministic race and crash simulator: a simulated maildir filesystem ([`fs`]), a
//! controllable environment ([`env`]), agents and invariants ([`world`]) and schedulers
//! ([`explore`]). It drives the same core state machines that ship.

pub mod env;
pub mod explore;
pub mod fs;
pub mod rng;
pub mod scenarios;
pub mod world;
