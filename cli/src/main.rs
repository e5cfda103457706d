//! `mdeliver`: reads one message and delivers it into each maildir given. A thin driver: it
//! parses arguments, opens maildirs through the Linux adapter, runs the core's delivery, and
//! reports; every mail decision is made in `mdeliver-core`.

mod args;
mod check;
mod command;
mod env;
mod exit;
mod flag;
mod folder;
mod import;
mod input;
mod linux;
mod list;
mod mail_args;
mod reader;
mod report;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitCode;

use mdeliver_core::deliver::{Delivered, Durability};
use mdeliver_core::Options;

use crate::args::Args;
use crate::env::LinuxEnv;
use crate::input::Input;
use crate::linux::{Disabled, LinuxFs, OpenOptions};
use crate::report::Failure;

/// The one streaming buffer: its size is the write size, and memory use does not grow with
/// the message.
const BUF_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    let (args, mail) = match command::parse() {
        Ok(command::Parsed::Deliver(a, m)) => (a, m),
        Ok(command::Parsed::List(a)) => return list::run(&a),
        Ok(command::Parsed::Flag(a)) => return flag::run(&a),
        Ok(command::Parsed::Check(a)) => return check::run(&a),
        Err(code) => return code,
    };
    let disabled = match std::env::var_os(Disabled::VAR) {
        None => Disabled::default(),
        Some(v) => match Disabled::parse(&v.to_string_lossy()) {
            Ok(d) => d,
            Err(word) => {
                eprintln!(
                    "mdeliver: {}: unknown feature '{word}' (known: anonymous-tmp, \
                     rename-noreplace, hard-links)",
                    Disabled::VAR
                );
                return ExitCode::from(exit::USAGE);
            }
        },
    };
    let mut input = match &args.input {
        None => Input::stdin(),
        Some(path) => match Input::open(path) {
            Ok(i) => i,
            Err(kind) => {
                let failure = Failure::Input(kind);
                eprintln!("mdeliver: {}: {failure}", path.display());
                return ExitCode::from(failure.code(args.strict_exit));
            }
        },
    };
    if mail.mbox {
        return import::main(&args, &mail, disabled, &mut input);
    }
    let mut driver = Driver {
        args: &args,
        disabled,
        env: LinuxEnv::new(),
        buf: vec![0u8; BUF_SIZE],
        opts: Options {
            durability: if args.no_fsync {
                Durability::None
            } else {
                Durability::Full
            },
            flags: mail.flags,
            sep: mail.info_separator,
            ..Options::default()
        },
    };
    let mut status = exit::OK;
    let mut copy: Option<Input> = None;
    let last = args.maildirs.len() - 1;
    for (i, maildir) in args.maildirs.iter().enumerate() {
        let folder_open = OpenOptions {
            create: args.create,
            sync: !args.no_fsync,
            disabled,
            keep_readable: false,
        };
        let maildir = &match folder::target(&args, &mail, maildir, folder_open) {
            Ok(target) => target,
            Err((message, code)) => {
                eprintln!("mdeliver: {}: {message}", maildir.display());
                status = exit::worst(status, code);
                continue;
            }
        };
        // Further maildirs read the message back from the first delivered file, unless the
        // input itself can be read again.
        let keep = copy.is_none() && i < last && !input.is_rewindable();
        let source = copy.as_mut().unwrap_or(&mut input);
        match driver.deliver(maildir, source, keep) {
            Ok((delivered, kept)) => {
                let path = maildir.join(delivered.dir.as_str()).join(&*delivered.name);
                if args.verbose >= 1 {
                    println!("{}", path.display());
                }
                if args.verbose >= 2 {
                    eprintln!(
                        "mdeliver: {}: delivered {} bytes via {}",
                        path.display(),
                        delivered.size,
                        delivered.publish.as_str()
                    );
                }
                if delivered.leftover_tmp {
                    eprintln!(
                        "mdeliver: {}: warning: delivered, but a second name of the message \
                         remains in tmp/; it is harmless and can be removed",
                        maildir.display()
                    );
                }
                if let Some(fd) = kept {
                    copy = Some(Input::delivered(fd));
                }
            }
            Err(failure) => {
                eprintln!("mdeliver: {}: {failure}", maildir.display());
                status = exit::worst(status, failure.code(args.strict_exit));
            }
        }
    }
    ExitCode::from(status)
}

/// What stays the same across the maildirs of one run.
struct Driver<'a> {
    args: &'a Args,
    disabled: Disabled,
    env: LinuxEnv,
    buf: Vec<u8>,
    opts: Options,
}

impl Driver<'_> {
    /// Delivers `source` into `maildir`; with `keep`, also returns the delivered file, open
    /// for reading.
    fn deliver(
        &mut self,
        maildir: &Path,
        source: &mut Input,
        keep: bool,
    ) -> Result<(Delivered, Option<OwnedFd>), Failure> {
        let open = OpenOptions {
            create: self.args.create,
            sync: !self.args.no_fsync,
            disabled: self.disabled,
            keep_readable: keep,
        };
        let mut fs = LinuxFs::open(maildir, open).map_err(|(kind, part)| Failure::Open {
            kind,
            part,
            create: self.args.create,
        })?;
        if !source.rewind() {
            return Err(Failure::InputLost);
        }
        let delivered =
            mdeliver_core::deliver(&mut fs, &mut self.env, self.opts, source, &mut self.buf)
                .map_err(Failure::Deliver)?;
        let kept = if keep { fs.take_kept() } else { None };
        Ok((delivered, kept))
    }
}
