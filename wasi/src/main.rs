//! `mdeliver-wasi`: mdeliver's delivery as a WASI command module. The host preopens one
//! directory; every path given is resolved inside it by the runtime, so delivery is sandboxed
//! to that maildir. The command line, the loop over the maildirs, `-M`, the reports, status
//! lines and exit codes are the Linux binary's (the driver crate, [`mdeliver_driver::run`]);
//! every decision is the same core's. What differs is only the adapter (`adapter.rs`): the
//! filesystem (`fs.rs`, `tree.rs`), the environment (`env.rs`: no pid; the host name from
//! `--host`, else `MDELIVER_HOST`, else `wasi`). With the `step` feature the module also exports
//! the core's stepping ABI (`step.rs`), for the differential test; the shipped module has none.

mod adapter;
mod env;
mod fs;
#[cfg(feature = "step")]
pub mod step;
mod tree;

use std::process::ExitCode;

use mdeliver_driver::args;

/// The module's own manual sections (after the shared ones).
const WASI_HELP: &str = "\
THE WASI MODULE
  Every path is resolved by the runtime inside the directories the host preopened; a maildir \
outside them, \"..\" climbing out or a symbolic link pointing out cannot be reached. Messages \
are published by link + unlink (WASI has no O_TMPFILE and no rename that refuses to replace), \
and directory entries are made durable by the host's filesystem (wasmtime cannot flush a \
directory). Names carry no process id: the instance's counter, the clock, 64 random bits and \
the host name keep them unique. -M shows no progress bar.

ENVIRONMENT
  MDELIVER_HOST=NAME   the host name in file names when --host is not given (default \"wasi\")

EXAMPLE
  wasmtime run --dir ./Maildir::/maildir mdeliver-wasi.wasm --host \"$(hostname)\" -c -v \\
      /maildir < message.eml";

fn main() -> ExitCode {
    let (a, mail) = match args::parse(WASI_HELP) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if let Some(message) = args::nested_create(&a) {
        return ExitCode::from(args::refuse(a.strict_exit, message));
    }
    let host = a
        .host
        .clone()
        .or_else(|| std::env::var("MDELIVER_HOST").ok())
        .unwrap_or_else(|| "wasi".to_owned());
    let mut wasi = adapter::Wasi {
        env: env::WasiEnv::new(host),
        sync: !a.no_fsync,
        sep: mail.info_separator,
        dry_run: mail.mta.dry_run,
        enc: mail.folder_encoding.core(),
    };
    ExitCode::from(mdeliver_driver::run::run(&mut wasi, &a, &mail))
}
