//! The Linux binary's [`Adapter`]: maildirs opened through the rustix adapter (`linux.rs`),
//! folders found by `folder.rs`, the input read straight from its descriptor (`input.rs`), a
//! delivered message kept open to copy it into further maildirs, and a progress bar for `-M`.

use std::ffi::OsStr;
use std::path::Path;

use mdeliver_core::maildir::folder::{FolderDir, FolderFailure, NameEncoding};
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::{Dir, ErrorKind, Options};
use mdeliver_driver::args::Args;
use mdeliver_driver::envelope::Stored;
use mdeliver_driver::folder_report::Resolved;
use mdeliver_driver::mail_args::MailArgs;
use mdeliver_driver::maillog::Severity;
use mdeliver_driver::run::Adapter;

use crate::env::LinuxEnv;
use crate::import_linux::TermProgress;
use crate::input::Input;
use crate::linux::{Disabled, LinuxFs, OpenOptions, StrategyKnobs};

/// The Linux side of one run.
pub struct Linux {
    /// `--host`.
    host: Option<String>,
    /// Read at the first delivery.
    env: Option<LinuxEnv>,
    /// `--no-fsync` and `MDELIVER_DISABLE` (`create` and `keep_readable` vary by call).
    open: OpenOptions,
    /// `--info-separator`.
    sep: InfoSep,
    /// `--folder-encoding`.
    enc: NameEncoding,
    /// Write the mail log (`maillog.rs`).
    log: bool,
    /// `MDELIVER_TEST_LOCK_STALE` (the forced strategy is in `open`).
    lock_stale_secs: Option<u64>,
}

impl Linux {
    /// The adapter for `args` and `mail`, with `disabled`, the mail log when `log`, and the
    /// strategy `knobs`.
    pub fn new(
        args: &Args,
        mail: &MailArgs,
        disabled: Disabled,
        log: bool,
        knobs: StrategyKnobs,
    ) -> Linux {
        Linux {
            host: args.host.clone(),
            env: None,
            open: OpenOptions {
                sync: !args.no_fsync,
                disabled,
                create_parents: args.create_parents,
                strategy: knobs.strategy,
                probe_rename: true,
                ..OpenOptions::default()
            },
            sep: mail.info_separator,
            enc: mail.folder_encoding.core(),
            log,
            lock_stale_secs: knobs.lock_stale_secs,
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

    fn stdin(&mut self) -> Result<Input, ErrorKind> {
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
    ) -> Result<Resolved, FolderFailure> {
        crate::folder::resolve(maildir, name, (self.sep, self.enc), create, self.open)
    }

    fn open(
        &mut self,
        maildir: &Path,
        create: bool,
        keep: bool,
        folder: bool,
    ) -> Result<LinuxFs, (ErrorKind, Dir)> {
        let keep_readable = keep;
        LinuxFs::open(
            maildir,
            OpenOptions {
                create,
                keep_readable,
                folder,
                ..self.open
            },
        )
    }

    fn strategy(&mut self, fs: &LinuxFs, base: Options) -> (Options, Option<String>) {
        let observed = fs.observed();
        let mut opts = observed.choice.options(base);
        if let Some(secs) = self.lock_stale_secs {
            opts.lock_stale_secs = secs;
        }
        let note = observed.worth_reporting().then(|| observed.describe());
        (opts, note)
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

    fn subscribe(
        &mut self,
        maildir: &Path,
        dir: &FolderDir,
        sync: bool,
    ) -> Result<(), (String, ErrorKind)> {
        crate::signals::before_named_file();
        mdeliver_driver::subscribe::subscribe(maildir, dir, sync)
    }

    const LOGS: bool = true;

    fn logging(&self) -> bool {
        self.log
    }

    fn log(&mut self, lines: &[(Severity, String)]) {
        let pid = self.env.as_ref().and_then(mdeliver_core::Env::pid);
        crate::maillog::send(lines, pid);
    }
}
