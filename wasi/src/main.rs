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

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mdeliver_core::maildir::folder::FolderFailure;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::{Dir, ErrorKind, Phase};
use mdeliver_driver::args::{self, Args};
use mdeliver_driver::envelope::Stored;
use mdeliver_driver::report::Failure;
use mdeliver_driver::run::{Adapter, Message};

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

/// Where the message comes from: standard input, `--input FILE`, or a message stored earlier
/// in this run. Standard input is read once; a file can be read again from its start.
struct Input {
    /// `None`: standard input.
    file: Option<File>,
    /// Bytes read so far (standard input).
    consumed: u64,
}

impl Input {
    fn new(file: Option<File>) -> Input {
        Input { file, consumed: 0 }
    }
}

impl Message for Input {
    fn is_rewindable(&self) -> bool {
        self.file.is_some()
    }

    fn rewind(&mut self) -> Result<(), Failure> {
        match &mut self.file {
            Some(f) => f.seek(SeekFrom::Start(0)).map(|_| ()).map_err(|e| {
                Failure::Deliver(mdeliver_core::Error::new(fs::kind_of(&e), Phase::Read))
            }),
            None if self.consumed == 0 => Ok(()),
            None => Err(Failure::InputLost),
        }
    }
}

impl embedded_io::ErrorType for Input {
    type Error = std::io::Error;
}

impl embedded_io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let n = match &mut self.file {
            Some(f) => f.read(buf)?,
            None => std::io::stdin().read(buf)?,
        };
        self.consumed += n as u64;
        Ok(n)
    }
}

/// The module's side of one run.
struct Wasi {
    env: env::WasiEnv,
    /// fsync what is created (not `--no-fsync`).
    sync: bool,
    /// `--info-separator`.
    sep: InfoSep,
}

impl Adapter for Wasi {
    type Fs = fs::WasiFs;
    type Env = env::WasiEnv;
    type Message = Input;
    type Progress = ();

    fn env(&mut self) -> &mut env::WasiEnv {
        &mut self.env
    }

    fn stdin(&mut self) -> Input {
        Input::new(None)
    }

    /// Refuses a directory (`Usage`) as the Linux binary does.
    fn input(&mut self, path: &Path) -> Result<Input, ErrorKind> {
        let m = std::fs::metadata(path).map_err(|e| fs::kind_of(&e))?;
        if m.is_dir() {
            return Err(ErrorKind::Usage);
        }
        let f = File::open(path).map_err(|e| fs::kind_of(&e))?;
        Ok(Input::new(Some(f)))
    }

    fn folder(
        &mut self,
        maildir: &Path,
        name: &OsStr,
        create: bool,
    ) -> Result<PathBuf, FolderFailure> {
        let name = name.as_encoded_bytes();
        tree::resolve_folder(maildir, name, self.sep, create, self.sync, &mut self.env)
    }

    fn open(
        &mut self,
        maildir: &Path,
        create: bool,
        _keep: bool,
    ) -> Result<fs::WasiFs, (ErrorKind, Dir)> {
        fs::WasiFs::open(maildir, create)
    }

    /// The stored file, opened again by its path.
    fn kept(&mut self, fs: &mut fs::WasiFs, stored: &Stored) -> Option<Input> {
        let path = match stored {
            Stored::Delivered(d) => fs.path(d.dir, &d.name).ok(),
            Stored::Duplicate { dir, name, .. } => dir.and_then(|d| fs.path(d, name).ok()),
        }?;
        File::open(path).ok().map(|f| Input::new(Some(f)))
    }

    fn progress(&mut self, _args: &Args) {}
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
    let mut wasi = Wasi {
        env: env::WasiEnv::new(host),
        sync: !a.no_fsync,
        sep: mail.info_separator,
    };
    ExitCode::from(mdeliver_driver::run::run(&mut wasi, &a, &mail))
}
