//! `mdeliver`: reads one message and delivers it into each maildir given. A thin driver: it
//! parses arguments, opens maildirs through the Linux adapter, runs the core's delivery, and
//! reports; every mail decision is made in `mdeliver-core`.

mod check;
mod command;
mod env;
mod flag;
mod folder;
mod gen;
mod import_linux;
mod input;
mod linux;
mod list;
mod maillog;
mod reader;
mod testing;

use mdeliver_driver::{args, envelope, exit, import, json, mail_args, outcome, report, status};

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitCode;

use mdeliver_core::deliver::Durability;
use mdeliver_core::Options;

use crate::args::Args;
use crate::env::LinuxEnv;
use crate::envelope::{Settings, Stored};
use crate::input::Input;
use crate::linux::{Disabled, LinuxFs, OpenOptions};
use crate::report::{Create, Failure};

/// The one streaming buffer: its size is the write size, and memory use does not grow with
/// the message.
const BUF_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    if let Some(code) = gen::intercept() {
        return code;
    }
    let (args, mail, log) = match command::parse() {
        Ok(command::Parsed::Deliver(a, m, log)) => (a, m, log),
        Ok(command::Parsed::List(a)) => return list::run(&a),
        Ok(command::Parsed::Flag(a)) => return flag::run(&a),
        Ok(command::Parsed::Check(a)) => return check::run(&a),
        Err(code) => return code,
    };
    if let Some(message) = args::nested_create(&args) {
        let code = args::usage_failed(args.strict_exit, false);
        eprintln!("mdeliver: {message}");
        return ExitCode::from(code);
    }
    let disabled = match std::env::var_os(Disabled::VAR) {
        None => Disabled::default(),
        Some(v) => match Disabled::parse(&v.to_string_lossy()) {
            Ok(d) => d,
            Err(word) => {
                let code = args::usage_failed(args.strict_exit, false);
                eprintln!(
                    "mdeliver: {}: unknown feature '{word}' (known: anonymous-tmp, \
                     rename-noreplace, hard-links)",
                    Disabled::VAR
                );
                return ExitCode::from(code);
            }
        },
    };
    let mut input = match &args.input {
        None => Input::stdin(),
        Some(path) => match Input::open(path) {
            Ok(i) => i,
            Err(kind) => return ExitCode::from(outcome::input_failed(&args, path, kind)),
        },
    };
    if mail.mbox {
        return import_linux::main(&args, &mail, disabled, &mut input);
    }
    let settings = match Settings::new(&mail.mta, mail.info_separator, |n| std::env::var_os(n)) {
        Ok(s) => s,
        Err(message) => {
            let code = args::usage_failed(args.strict_exit, false);
            eprintln!("mdeliver: {message}");
            return ExitCode::from(code);
        }
    };
    let mut driver = Driver {
        args: &args,
        settings,
        disabled,
        env: LinuxEnv::new().with_host(args.host.as_deref()),
        buf: vec![0u8; BUF_SIZE],
        opts: mail.delivery(args.no_fsync, Durability::Full),
    };
    let mut status = exit::OK;
    let mut out = status::Output::default();
    // The mail log's lines, written at the end (when the Message-ID has been read).
    let log = log && !driver.settings.dry_run;
    let mut log_lines: Vec<LogLine> = Vec::new();
    if log {
        input.scan_message_id();
    }
    let mut copy: Option<Input> = None;
    let last = args.maildirs.len() - 1;
    let folder_open = OpenOptions {
        create: args.create,
        sync: !args.no_fsync,
        disabled,
        keep_readable: false,
        folder: false,
        create_parents: args.create_parents,
    };
    for (i, given) in args.maildirs.iter().enumerate() {
        let maildir = &match folder::target(&args, &mail, given, folder_open) {
            Ok(target) => target,
            Err((message, code)) => {
                eprintln!("mdeliver: {}: {message}", given.display());
                status = exit::worst(status, code);
                if log {
                    log_lines.push(LogLine::Failed(given.clone(), message, None, code));
                }
                continue;
            }
        };
        // Further maildirs read the message back from the first delivered file, unless the
        // input itself can be read again.
        let keep = copy.is_none() && i < last && !input.is_rewindable();
        let transform = copy.is_none();
        let source = copy.as_mut().unwrap_or(&mut input);
        let in_folder = maildir != given;
        match driver.deliver(maildir, in_folder, source, keep, transform) {
            Ok((stored, kept)) => {
                outcome::stored(&mut out, &args, &driver.settings, maildir, &stored);
                if log {
                    log_lines.push(LogLine::saved(maildir, &stored));
                }
                if let Some(fd) = kept {
                    copy = Some(Input::delivered(fd));
                }
            }
            Err(failure) => {
                let code = outcome::failed(&mut out, &args, &driver.settings, maildir, &failure);
                status = exit::worst(status, code);
                if log {
                    let addr = driver.settings.delivered_to.as_deref();
                    let addr = addr.map(|a| String::from_utf8_lossy(a).into_owned());
                    let line = status::line(&failure, code, addr.as_deref());
                    let what = failure.to_string();
                    log_lines.push(LogLine::Failed(maildir.clone(), what, Some(line), code));
                }
            }
        }
    }
    out.flush();
    if log {
        let mut syslog = maillog::MailLog::open();
        let id = input.message_id();
        for l in log_lines {
            match l {
                LogLine::Saved(md, file, dup) => {
                    syslog.saved(&maillog::saved_line(id, &md, &file, dup));
                }
                LogLine::Failed(md, what, line, code) => {
                    let text = maillog::failed_line(id, &md, &what, line.as_deref(), code);
                    syslog.failed(&text, code == exit::TEMPFAIL);
                }
            }
        }
    }
    ExitCode::from(status)
}

/// One line of the mail log, before the Message-ID is known.
enum LogLine {
    /// Stored (or a duplicate found) in the maildir as this file (`new/NAME`).
    Saved(std::path::PathBuf, String, bool),
    /// Failed in the maildir: what went wrong, the status line, the exit code.
    Failed(std::path::PathBuf, String, Option<String>, u8),
}

impl LogLine {
    fn saved(maildir: &Path, stored: &Stored) -> LogLine {
        let (dir, name, dup) = match stored {
            Stored::Delivered(d) => (Some(d.dir), &*d.name, false),
            Stored::Duplicate { dir, name, .. } => (*dir, &**name, true),
        };
        let file = match dir {
            Some(d) => format!("{}/{name}", d.as_str()),
            None => name.to_owned(),
        };
        LogLine::Saved(maildir.to_owned(), file, dup)
    }
}

/// What stays the same across the maildirs of one run.
struct Driver<'a> {
    args: &'a Args,
    settings: Settings,
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
        in_folder: bool,
        source: &mut Input,
        keep: bool,
        transform: bool,
    ) -> Result<(Stored, Option<OwnedFd>), Failure> {
        let open = OpenOptions {
            // A dry run creates nothing.
            create: self.args.create && !self.settings.dry_run,
            sync: !self.args.no_fsync,
            disabled: self.disabled,
            keep_readable: keep,
            folder: in_folder,
            create_parents: self.args.create_parents,
        };
        let fs = LinuxFs::open(maildir, open).map_err(|(kind, part)| Failure::Open {
            kind,
            part,
            create: Create::of(self.args.create, self.settings.dry_run).at(maildir),
        })?;
        if !source.rewind() {
            return Err(Failure::InputLost);
        }
        let (mut fs, stored) = envelope::deliver(
            fs,
            &mut self.env,
            self.opts,
            &self.settings,
            source,
            transform,
            &mut self.buf,
        );
        let stored = stored?;
        let kept = match (&stored, keep) {
            (_, false) => None,
            (Stored::Delivered(d), true) => fs.take_kept(Some((d.dir, &d.name)), Some(d.size)),
            (Stored::Duplicate { .. }, true) => fs.take_kept(None, None),
        };
        Ok((stored, kept))
    }
}
