//! `mdeliver-wasi`: mdeliver's delivery as a WASI command module. The host preopens one
//! directory; every path given is resolved inside it by the runtime, so delivery is sandboxed
//! to that maildir. The command line is the native CLI's delivery form (the same driver crate,
//! `mdeliver-driver`: `args.rs`, `mail_args.rs`, `mta_args.rs`), and so are the driver's translation of the MTA
//! options (`envelope.rs`), the reports, status lines and exit codes; every decision is the
//! same core's. What differs is only the adapter: the filesystem (`fs.rs`), the environment
//! (`env.rs`: no pid; the host name from `--host`, else `MDELIVER_HOST`, else `wasi`).

mod env;
mod fs;
pub mod step;
mod tree;

use mdeliver_driver::{
    args, envelope, exit, folder_report, import, mail_args, outcome, report, status,
};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mdeliver_core::deliver::{Durability, Options};
use mdeliver_core::ErrorKind;

use crate::envelope::{Settings, Stored};
use crate::report::{Create, Failure};

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

/// The one streaming buffer's size.
const BUF_SIZE: usize = 64 * 1024;

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

/// Where the message comes from for the next maildir.
enum Input {
    /// Standard input, not yet read from.
    Stdin,
    /// Standard input, partly read by a failed delivery: it cannot be read again.
    Lost,
    /// A file that can be opened again: `--input FILE`, or a copy delivered in this run.
    File(PathBuf),
}

/// Checks `--input FILE` before any delivery: it must exist, and a directory is refused as the
/// Linux binary does (`Usage`).
fn check_input(path: &Path) -> Result<(), ErrorKind> {
    let m = std::fs::metadata(path).map_err(|e| fs::kind_of(&e))?;
    if m.is_dir() {
        return Err(ErrorKind::Usage);
    }
    Ok(())
}

/// The state kept across the maildirs of one run.
struct Driver<'a> {
    args: &'a args::Args,
    settings: Settings,
    env: env::WasiEnv,
    opts: Options,
    buf: Vec<u8>,
}

impl Driver<'_> {
    /// Delivers from `input` into `maildir`: the MTA's message is transformed (trace fields),
    /// a copy read back from an earlier maildir is stored as it is. Also gives the stored
    /// file's path, for further maildirs to copy from.
    fn deliver(
        &mut self,
        maildir: &Path,
        input: &Input,
    ) -> Result<(Stored, Option<PathBuf>), Failure> {
        let create = self.args.create && !self.settings.dry_run;
        let fs = fs::WasiFs::open(maildir, create).map_err(|(kind, part)| Failure::Open {
            kind,
            part,
            create: Create::of(self.args.create, self.settings.dry_run),
        })?;
        let read_err = |e: std::io::Error| {
            Failure::Deliver(mdeliver_core::Error::new(
                fs::kind_of(&e),
                mdeliver_core::Phase::Read,
            ))
        };
        let (mut src, transform) = match input {
            Input::Lost => return Err(Failure::InputLost),
            // One source type, so the delivery code is instantiated once.
            Input::Stdin => (
                Source(Box::new(std::io::stdin().lock()) as Box<dyn Read>),
                true,
            ),
            Input::File(path) => {
                let f = std::fs::File::open(path).map_err(read_err)?;
                let transform = self.args.input.as_deref() == Some(path.as_path());
                (Source(Box::new(f) as Box<dyn Read>), transform)
            }
        };
        let (s, o) = (&self.settings, self.opts);
        let (fs, stored) =
            envelope::deliver(fs, &mut self.env, o, s, &mut src, transform, &mut self.buf);
        let stored = stored?;
        // The file a further maildir copies from (none in a dry run: nothing was stored).
        let copy = match &stored {
            _ if self.settings.dry_run => None,
            Stored::Delivered(d) => fs.path(d.dir, &d.name).ok(),
            Stored::Duplicate { dir, name, .. } => dir.and_then(|d| fs.path(d, name).ok()),
        };
        Ok((stored, copy))
    }
}

/// Where to deliver in `maildir`: the maildir itself, or its `--folder` (created with `-c`;
/// see [`folder_report::target`]). On failure, the message (after `mdeliver: <maildir>: `)
/// and the exit code.
fn target(
    a: &args::Args,
    mail: &mail_args::MailArgs,
    env: &mut env::WasiEnv,
    maildir: &Path,
) -> Result<PathBuf, (String, u8)> {
    folder_report::target(a, mail, maildir, |name, create| {
        let sync = !a.no_fsync;
        let sep = mail.info_separator;
        tree::resolve_folder(maildir, name.as_encoded_bytes(), sep, create, sync, env)
    })
}

/// `-M`: imports the mbox on standard input (or `--input`) into the one maildir.
fn import_mbox(
    a: &args::Args,
    mail: &mail_args::MailArgs,
    mut env: env::WasiEnv,
    input: &Input,
) -> u8 {
    let maildir = match import::one_maildir(a) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let target = match target(a, mail, &mut env, maildir) {
        Ok(t) => t,
        Err((message, code)) => {
            eprintln!("mdeliver: {}: {message}", maildir.display());
            return code;
        }
    };
    let mut fs = match fs::WasiFs::open(&target, a.create) {
        Ok(fs) => fs,
        Err((kind, part)) => return import::cannot_open(a, &target, kind, part),
    };
    let source: Box<dyn Read> = match input {
        Input::File(path) => match std::fs::File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                let failure = Failure::Input(fs::kind_of(&e));
                eprintln!("mdeliver: {}: {failure}", path.display());
                return failure.code(a.strict_exit);
            }
        },
        _ => Box::new(std::io::stdin().lock()),
    };
    import::run(
        a,
        mail,
        &mut fs,
        &mut env,
        &target,
        &mut Source(source),
        &mut (),
    )
}

fn main() -> ExitCode {
    let (a, mail) = match args::parse(WASI_HELP) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let host = a
        .host
        .clone()
        .or_else(|| std::env::var("MDELIVER_HOST").ok())
        .unwrap_or_else(|| "wasi".to_owned());
    let env = env::WasiEnv::new(host);
    let mut input = match &a.input {
        None => Input::Stdin,
        Some(path) => match check_input(path) {
            Ok(()) => Input::File(path.clone()),
            Err(kind) => return ExitCode::from(outcome::input_failed(&a, path, kind)),
        },
    };
    if mail.mbox {
        return ExitCode::from(import_mbox(&a, &mail, env, &input));
    }
    let settings = match Settings::new(&mail.mta, mail.info_separator, |n| std::env::var_os(n)) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("mdeliver: {message}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let opts = mail.delivery(a.no_fsync, Durability::Full);
    let mut d = Driver {
        args: &a,
        settings,
        env,
        opts,
        buf: vec![0u8; BUF_SIZE],
    };
    let mut out = status::Output::default();
    let mut status = exit::OK;
    let mut copied = false;
    for given in &a.maildirs {
        let maildir = &match target(&a, &mail, &mut d.env, given) {
            Ok(t) => t,
            Err((message, code)) => {
                eprintln!("mdeliver: {}: {message}", given.display());
                status = exit::worst(status, code);
                continue;
            }
        };
        match d.deliver(maildir, &input) {
            Ok((stored, copy)) => {
                outcome::stored(&mut out, &a, &d.settings, maildir, &stored);
                match copy {
                    // Further maildirs read the message back from the first stored file.
                    Some(p) if !copied => {
                        input = Input::File(p);
                        copied = true;
                    }
                    // A dry run stores nothing: standard input, once read, is gone.
                    None if matches!(input, Input::Stdin) => input = Input::Lost,
                    _ => {}
                }
            }
            Err(failure) => {
                let code = outcome::failed(&mut out, &a, &d.settings, maildir, &failure);
                status = exit::worst(status, code);
                if matches!(input, Input::Stdin) && !matches!(failure, Failure::Open { .. }) {
                    // The failed delivery may have read part of standard input.
                    input = Input::Lost;
                }
            }
        }
    }
    out.flush();
    ExitCode::from(status)
}
