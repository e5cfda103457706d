//! The WASI module under wasmtime, in one test binary (wasmtime's code is compiled into one
//! test program instead of three):
//! - `host`: byte-exact delivery through a preopened directory, exit codes, parallel
//!   instances, the sandbox's walls and resource limits;
//! - `parity`: the module and the native binary give the same results for the same command
//!   lines;
//! - `differential`: the machines compiled into the module decide exactly as the native ones,
//!   stepped side by side through the stepping ABI.

#[path = "../cli_support/mod.rs"]
mod cli_support;
// Not every helper is used by every part.
#[allow(dead_code)]
mod wasi_support;

mod differential;
mod host;
mod parity;
