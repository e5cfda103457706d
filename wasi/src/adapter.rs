//! The module's [`Adapter`]: maildirs and folders inside the sandbox (`fs.rs`, `tree.rs`), the
//! input read through std, and a delivered message read back by its path.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::Path;

use mdeliver_core::maildir::folder::{FolderFailure, NameEncoding};
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::{Dir, ErrorKind, Phase};
use mdeliver_driver::args::Args;
use mdeliver_driver::envelope::Stored;
use mdeliver_driver::folder_report::Resolved;
use mdeliver_driver::report::Failure;
use mdeliver_driver::run::{Adapter, Message};

use crate::{env, fs, tree};

/// Where the message comes from: standard input, `--input FILE`, or a message stored earlier
/// in this run. Standard input is read once; a file can be read again from its start.
pub struct Input {
    /// `None`: standard input.
    file: Option<File>,
    /// Bytes read so far (standard input).
    consumed: u64,
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

/// Standard input as a file, read straight from descriptor 0: the driver reads through its own
/// buffer, and std's `Stdin` (a lock, an 8 KiB buffer and their code) would only add to the
/// module. Nothing else in the module reads standard input, so no bytes wait in another buffer.
fn stdin() -> ManuallyDrop<File> {
    // SAFETY: descriptor 0 is the process's standard input, open for its whole run; the file
    // is never dropped, so it is never closed.
    ManuallyDrop::new(unsafe { File::from_raw_fd(0) })
}

impl embedded_io::ErrorType for Input {
    type Error = std::io::Error;
}

impl embedded_io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let n = match &mut self.file {
            Some(f) => f.read(buf)?,
            None => stdin().read(buf)?,
        };
        self.consumed += n as u64;
        Ok(n)
    }
}

/// The module's side of one run.
pub struct Wasi {
    pub env: env::WasiEnv,
    /// fsync what is created (not `--no-fsync`).
    pub sync: bool,
    /// `--info-separator`.
    pub sep: InfoSep,
    /// `--dry-run`: nothing is stored, so nothing can be read back.
    pub dry_run: bool,
    /// `--folder-encoding`.
    pub enc: NameEncoding,
}

impl Adapter for Wasi {
    type Fs = fs::WasiFs;
    type Env = env::WasiEnv;
    type Message = Input;
    type Progress = ();

    fn env(&mut self) -> &mut env::WasiEnv {
        &mut self.env
    }

    fn stdin(&mut self) -> Result<Input, ErrorKind> {
        Ok(Input {
            file: None,
            consumed: 0,
        })
    }

    /// Refuses a directory (`Usage`) as the Linux binary does.
    fn input(&mut self, path: &Path) -> Result<Input, ErrorKind> {
        let m = std::fs::metadata(path).map_err(|e| fs::kind_of(&e))?;
        if m.is_dir() {
            return Err(ErrorKind::Usage);
        }
        let f = File::open(path).map_err(|e| fs::kind_of(&e))?;
        Ok(Input {
            file: Some(f),
            consumed: 0,
        })
    }

    fn folder(
        &mut self,
        maildir: &Path,
        name: &OsStr,
        create: bool,
    ) -> Result<Resolved, FolderFailure> {
        let name = name.as_encoded_bytes();
        let naming = (self.sep, self.enc);
        tree::resolve_folder(maildir, name, naming, create, self.sync, &mut self.env)
    }

    fn open(
        &mut self,
        maildir: &Path,
        create: bool,
        _keep: bool,
        _folder: bool,
    ) -> Result<fs::WasiFs, (ErrorKind, Dir)> {
        fs::WasiFs::open(maildir, create)
    }

    /// The stored file, opened again by its path.
    fn kept(&mut self, fs: &mut fs::WasiFs, stored: &Stored) -> Option<Input> {
        if self.dry_run {
            return None;
        }
        let path = match stored {
            Stored::Delivered(d) => fs.path(d.dir, &d.name).ok(),
            Stored::Duplicate { dir, name, .. } => dir.and_then(|d| fs.path(d, name).ok()),
        }?;
        let file = Some(File::open(path).ok()?);
        Some(Input { file, consumed: 0 })
    }

    fn progress(&mut self, _args: &Args) {}
}
