//! `mdeliver-wasi`: mdeliver's delivery as a WASI command module. The host preopens one
//! directory; every path given is resolved inside it by the runtime, so delivery is sandboxed
//! to that maildir. The command line is the native CLI's (the same source file), the exit
//! codes are the same, and the delivery decisions are the same core's.

#[path = "../../cli/src/args.rs"]
mod args;
mod env;
#[path = "../../cli/src/exit.rs"]
mod exit;
mod fs;
pub mod step;

use mdeliver_core::deliver::{deliver, Durability, Options};
use mdeliver_core::{Error, ErrorKind, Phase};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Adapts a `std::io::Read` to the core's `embedded_io::Read`.
struct Source<R>(R);

impl<R: Read> embedded_io::ErrorType for Source<R> {
    type Error = std::io::Error;
}

impl<R: Read> embedded_io::Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf)
    }
}

fn complain(maildir: &Path, what: &dyn std::fmt::Display) {
    eprintln!("mdeliver: {}: {what}", maildir.display());
}

/// Delivers `source` into `maildir`, returning the delivered file's path.
fn deliver_one<R: Read>(
    a: &args::Args,
    env: &mut env::WasiEnv,
    maildir: &Path,
    source: R,
) -> Result<PathBuf, Error> {
    let mut fs = fs::WasiFs::open(maildir, a.create).map_err(|k| Error::new(k, Phase::Open))?;
    let opts = Options {
        durability: if a.no_fsync {
            Durability::None
        } else {
            Durability::Full
        },
        ..Options::default()
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut src = Source(source);
    let d = deliver(&mut fs, env, opts, &mut src, &mut buf)?;
    Ok(fs.path(d.dir, &d.name).unwrap_or_default())
}

fn main() -> ExitCode {
    let a = match args::parse() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let host = std::env::var("MDELIVER_HOST").unwrap_or_else(|_| "wasi".to_string());
    let mut env = env::WasiEnv::new(host);
    let mut status = exit::OK;
    let mut first: Option<PathBuf> = None;
    for maildir in &a.maildirs {
        let result = match (&first, &a.input) {
            (Some(copy_from), _) => match std::fs::File::open(copy_from) {
                Ok(f) => deliver_one(&a, &mut env, maildir, f),
                Err(e) => Err(Error::new(fs::kind_of(&e), Phase::Read)),
            },
            (None, Some(input)) => match std::fs::File::open(input) {
                Ok(f) => deliver_one(&a, &mut env, maildir, f),
                Err(e) => {
                    eprintln!("mdeliver: {}: cannot open input: {e}", input.display());
                    return ExitCode::from(exit::NOINPUT);
                }
            },
            (None, None) => deliver_one(&a, &mut env, maildir, std::io::stdin().lock()),
        };
        match result {
            Ok(path) => {
                if a.verbose > 0 {
                    println!("{}", path.display());
                }
                first.get_or_insert(path);
            }
            Err(e) => {
                if e.kind == ErrorKind::Data && e.phase == Phase::Read {
                    complain(maildir, &"message is empty");
                } else if e.kind == ErrorKind::Permission && e.phase == Phase::Open {
                    // The usual cause inside a sandbox: the path leaves the preopened directory.
                    complain(
                        maildir,
                        &format_args!("{e} (outside the directories the host preopened?)"),
                    );
                } else {
                    complain(maildir, &e);
                }
                status = exit::worst(status, exit::code(e.kind, a.strict_exit));
                if first.is_none() && e.phase == Phase::Read {
                    // The input is gone or unusable: no later maildir can get a copy.
                    return ExitCode::from(status);
                }
            }
        }
    }
    ExitCode::from(status)
}
