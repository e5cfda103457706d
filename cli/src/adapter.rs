//! The Linux binary's [`Adapter`]: maildirs opened through the rustix adapter (`linux.rs`),
//! folders found by `folder.rs`, the input read straight from its descriptor (`input.rs`), a
//! delivered message kept open to copy it into further maildirs, and a progress bar for `-M`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use mdeliver_core::maildir::folder::FolderFailure;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::{Dir, ErrorKind};
use mdeliver_driver::args::Args;
use mdeliver_driver::envelope::Stored;
use mdeliver_driver::run::Adapter;

use crate::env::LinuxEnv;
use crate::import_linux::TermProgress;
use crate::input::Input;
use crate::linux::{Disabled, LinuxFs, OpenOptions};

/// The Linux side of one run.
pub struct Linux {
    /// `--host`.
    host: Option<String>,
    /// Read at the first delivery.
    env: Option<LinuxEnv>,
    /// fsync what is created (not `--no-fsync`).
    sync: bool,
    /// `MDELIVER_DISABLE`.
    disabled: Disabled,
    /// `--info-separator`.
    sep: InfoSep,
}

impl Linux {
    /// The adapter for `args`, `sep` and `disabled`.
    pub fn new(args: &Args, sep: InfoSep, disabled: Disabled) -> Linux {
        Linux {
            host: args.host.clone(),
            env: None,
            sync: !args.no_fsync,
            disabled,
            sep,
        }
    }

    fn options(&self, create: bool, keep_readable: bool) -> OpenOptions {
        OpenOptions {
            create,
            sync: self.sync,
            disabled: self.disabled,
            keep_readable,
        }
    }
}

impl Adapter for Linux {
    type Fs = LinuxFs;
    type Env = LinuxEnv;
    type Message = Input;
    type Progress = TermProgress;

    fn env(&mut self) -> &mut LinuxEnv {
        let host = self.host.as_deref();
        self.env
            .get_or_insert_with(|| LinuxEnv::new().with_host(host))
    }

    fn stdin(&mut self) -> Input {
        Input::stdin()
    }

    fn input(&mut self, path: &Path) -> Result<Input, ErrorKind> {
        Input::open(path)
    }

    fn folder(
        &mut self,
        maildir: &Path,
        name: &OsStr,
        create: bool,
    ) -> Result<PathBuf, FolderFailure> {
        crate::folder::resolve(maildir, name, self.sep, create, self.options(create, false))
    }

    fn open(
        &mut self,
        maildir: &Path,
        create: bool,
        keep: bool,
    ) -> Result<LinuxFs, (ErrorKind, Dir)> {
        LinuxFs::open(maildir, self.options(create, keep))
    }

    fn kept(&mut self, fs: &mut LinuxFs, stored: &Stored) -> Option<Input> {
        let fd = match stored {
            Stored::Delivered(d) => fs.take_kept(Some((d.dir, &d.name)), Some(d.size)),
            Stored::Duplicate { .. } => fs.take_kept(None, None),
        };
        fd.map(Input::delivered)
    }

    fn progress(&mut self, args: &Args) -> TermProgress {
        TermProgress::new(crate::import_linux::input_size(args))
    }
}
