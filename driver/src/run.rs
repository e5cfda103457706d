//! The delivery command as both binaries run it, written once: the input, `-M`'s entry, the
//! MTA options, and the per-maildir loop (folder, open, deliver, report, and the copy that
//! further maildirs read the message from). What differs between the Linux binary and the
//! WASI module is only their [`Adapter`]: how a maildir is opened, a folder found, the input
//! read and a delivered message kept.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use mdeliver_core::machine::deliver::Durability;
use mdeliver_core::maildir::folder::{FolderDir, FolderFailure};
use mdeliver_core::{Dir, Env, ErrorKind, Fs, Options};

use crate::args::Args;
use crate::envelope::{Settings, Stored};
use crate::exit;
use crate::folder_report::{Refused, Resolved};
use crate::import::{self, Progress};
use crate::mail_args::MailArgs;
use crate::maillog::{Event, Severity};
use crate::outcome;
use crate::report::{Create, Failure};
use crate::status::Output;

/// How error messages name standard input.
pub const STDIN: &str = "standard input";

/// The one streaming buffer: its size is the write size, and memory use does not grow with
/// the message.
const BUF_SIZE: usize = 64 * 1024;

/// Where a message is read from: standard input, `--input FILE`, or a message delivered into
/// an earlier maildir of this run.
pub trait Message: embedded_io::Read<Error = std::io::Error> {
    /// Whether the whole message can be read again at any time (so no copy is kept for
    /// further maildirs).
    fn is_rewindable(&self) -> bool;

    /// Prepares to read the whole message again; [`Failure::InputLost`] when part of it was
    /// consumed from a source that cannot be read again (a pipe).
    fn rewind(&mut self) -> Result<(), Failure>;

    /// Looks for the message's Message-ID in what is read from now on, for the mail log
    /// (only called when logging; a source that cannot, never finds one).
    fn scan_message_id(&mut self) {}

    /// The Message-ID read so far (after [`Message::scan_message_id`]).
    fn message_id(&self) -> Option<&[u8]> {
        None
    }
}

/// What a binary brings to the delivery: its filesystem, environment and input.
pub trait Adapter {
    /// An open maildir.
    type Fs: Fs;
    /// Names, clock, randomness.
    type Env: Env;
    /// A message source.
    type Message: Message;
    /// `-M`'s progress display.
    type Progress: Progress;

    /// The environment.
    fn env(&mut self) -> &mut Self::Env;
    /// Standard input (`Usage` when it is a directory, as for `--input`).
    fn stdin(&mut self) -> Result<Self::Message, ErrorKind>;
    /// `--input FILE` (`Usage` for a directory).
    fn input(&mut self, path: &Path) -> Result<Self::Message, ErrorKind>;
    /// The directory of `--folder name` under `maildir`, created where missing with `create`
    /// (with the folder's directory name when this call created it).
    fn folder(
        &mut self,
        maildir: &Path,
        name: &OsStr,
        create: bool,
    ) -> Result<Resolved, FolderFailure>;
    /// Opens (with `create`, creates) the maildir; with `keep`, the delivered message can be
    /// taken back afterwards ([`Adapter::kept`]). `folder`: the path is a `--folder` inside a
    /// maildir, which must not be a symbolic link (a maildir root may be one).
    fn open(
        &mut self,
        maildir: &Path,
        create: bool,
        keep: bool,
        folder: bool,
    ) -> Result<Self::Fs, (ErrorKind, Dir)>;
    /// The delivery options for the opened maildir `fs`, from `base`: the strategy its
    /// filesystem gets (the core's `machine::trust`), and what `-vv` says about that choice.
    /// By default `base` unchanged and nothing to say.
    fn strategy(&mut self, fs: &Self::Fs, base: Options) -> (Options, Option<String>) {
        let _ = fs;
        (base, None)
    }
    /// After a delivery opened with `keep`: the stored message, for further maildirs.
    fn kept(&mut self, fs: &mut Self::Fs, stored: &Stored) -> Option<Self::Message>;
    /// `-M`'s progress display for `input`.
    fn progress(&mut self, args: &Args) -> Self::Progress;

    /// Subscribes the folder directory `dir` that `-c` just created in `maildir` (with `sync`,
    /// flushed); on failure, the subscription file's name and what went wrong. By default
    /// nothing: the WASI module does not subscribe (its size; see the README).
    fn subscribe(
        &mut self,
        maildir: &Path,
        dir: &FolderDir,
        sync: bool,
    ) -> Result<(), (String, ErrorKind)> {
        let _ = (maildir, dir, sync);
        Ok(())
    }

    /// Whether this adapter can write a mail log at all: when not, the code that collects
    /// its lines is not compiled in (the WASI module's size).
    const LOGS: bool = false;

    /// Whether this run writes the mail log ([`crate::maillog`] lines); by default not.
    fn logging(&self) -> bool {
        false
    }

    /// Writes the mail log's lines, at the end of the run.
    fn log(&mut self, _lines: &[(Severity, String)]) {}
}

/// Runs the delivery form of the command line (`-M` included) and gives the exit status.
pub fn run<A: Adapter>(a: &mut A, args: &Args, mail: &MailArgs) -> u8 {
    let mut input = match &args.input {
        None => match a.stdin() {
            Ok(i) => i,
            Err(kind) => return outcome::input_failed(args, Path::new(STDIN), kind),
        },
        Some(path) => match a.input(path) {
            Ok(i) => i,
            Err(kind) => return outcome::input_failed(args, path, kind),
        },
    };
    if mail.mbox {
        return import_mbox(a, args, mail, &mut input);
    }
    let settings = match Settings::new(&mail.mta, mail.info_separator, |n| std::env::var_os(n)) {
        Ok(s) => s,
        Err(message) => return crate::args::refuse(args.strict_exit, message),
    };
    deliver_all(a, args, mail, &settings, input)
}

/// Whether `maildir` is itself a Maildir++ folder (named `.Name`, holding the `maildirfolder`
/// marker: [`mdeliver_core::maildir::folder::may_be_folder`]): then its quota is the maildir's
/// above it, as for `--folder`. One status call, only for a path named like a folder.
fn marked_folder(maildir: &Path) -> bool {
    use mdeliver_core::maildir::folder::{may_be_folder, MAILDIRFOLDER};
    maildir
        .file_name()
        .is_some_and(|n| may_be_folder(n.as_encoded_bytes()))
        && std::fs::symlink_metadata(maildir.join(MAILDIRFOLDER)).is_ok_and(|m| m.is_file())
}

/// Where to deliver in `maildir`: the maildir itself, or its `--folder` (see
/// [`crate::folder_report::target`]). On failure, what to report.
fn target<A: Adapter>(
    a: &mut A,
    args: &Args,
    mail: &MailArgs,
    maildir: &Path,
) -> Result<PathBuf, Refused> {
    let (path, created) = crate::folder_report::target(args, mail, maildir, |name, create| {
        a.folder(maildir, name, create)
    })?;
    if let (Some(dir), Some(name)) = (created, &mail.folder) {
        if let Err((file, kind)) = a.subscribe(maildir, &dir, !args.no_fsync) {
            let warning = crate::folder_report::subscribe_warning(maildir, name, &file, kind);
            eprintln!("{warning}");
        }
    }
    Ok(path)
}

/// Delivers `input` into every maildir given, in order; a failure in one does not stop the
/// others. Further maildirs read the message back from the first delivered file, unless the
/// input itself can be read again.
fn deliver_all<A: Adapter>(
    a: &mut A,
    args: &Args,
    mail: &MailArgs,
    settings: &Settings,
    mut input: A::Message,
) -> u8 {
    let opts = mail.delivery(args.no_fsync, Durability::Full);
    let mut buf = vec![0u8; BUF_SIZE];
    // The message's head, made when the first delivery looks at it.
    let mut head = Vec::new();
    let mut status = exit::OK;
    let mut out = Output::default();
    // The mail log's lines, written at the end (when the Message-ID has been read).
    let log = A::LOGS && a.logging() && !settings.dry_run;
    let mut events: Vec<Event> = Vec::new();
    if log {
        input.scan_message_id();
    }
    let mut copy: Option<A::Message> = None;
    let last = args.maildirs.len() - 1;
    for (i, given) in args.maildirs.iter().enumerate() {
        let maildir = &match target(a, args, mail, given) {
            Ok(target) => target,
            Err(refused) => {
                refused.report(&mut out, given);
                status = exit::worst(status, refused.code);
                if log {
                    let (message, code) = (refused.message, refused.code);
                    events.push(Event::Failed(given.clone(), message, None, code));
                }
                continue;
            }
        };
        // `target` gives `given` itself or a folder inside it: comparing the bytes is enough
        // (no component-wise path comparison linked in for it). A folder given by its path
        // is one too.
        let in_folder = maildir.as_os_str() != given.as_os_str() || marked_folder(maildir);
        // A folder is counted in its top maildir's `maildirsize` (Maildir++: one quota for the
        // tree); only then is the settings copied.
        let folder_settings;
        let settings = if in_folder {
            folder_settings = settings.in_folder();
            &folder_settings
        } else {
            settings
        };
        let keep = copy.is_none() && i < last && !input.is_rewindable();
        // The MTA's message is transformed (trace fields); a copy is stored as it is.
        let transform = copy.is_none();
        let source = copy.as_mut().unwrap_or(&mut input);
        // A dry run creates nothing.
        let create = args.create && !settings.dry_run;
        // The duplicate index's entries that broke the delivery, found afterwards to name them.
        let mut broken = Vec::new();
        let delivered = match a.open(maildir, create, keep, in_folder) {
            Err((kind, part)) => Err(Failure::Open {
                kind,
                part,
                create: Create::of(args.create, settings.dry_run).at(maildir),
            }),
            Ok(fs) => source.rewind().and_then(|()| {
                let (opts, note) = a.strategy(&fs, opts);
                if let (Some(note), true) = (note, args.verbose >= 2) {
                    out.err(format!("mdeliver: {}: {note}", maildir.display()));
                }
                let env = a.env();
                let (mut fs, stored) = crate::envelope::deliver(
                    fs,
                    env,
                    opts,
                    settings,
                    source,
                    transform,
                    (&mut head, &mut buf),
                );
                if let Err(f) = &stored {
                    broken = crate::report::broken_index_entries(&mut fs, f);
                }
                let stored = stored?;
                let kept = if keep { a.kept(&mut fs, &stored) } else { None };
                Ok((stored, kept))
            }),
        };
        match delivered {
            Ok((stored, kept)) => {
                outcome::stored(&mut out, args, settings, maildir, &stored);
                if log {
                    events.push(saved(maildir, &stored));
                }
                if kept.is_some() {
                    copy = kept;
                }
            }
            Err(failure) => {
                let code = outcome::failed(&mut out, args, settings, maildir, &failure, &broken);
                status = exit::worst(status, code);
                if log {
                    events.push(failed(maildir, settings, &failure, code));
                }
            }
        }
    }
    out.flush();
    if log {
        // Every maildir failed before reading the message (none could be opened): its head
        // is read now, for the Message-ID the log names (at most HEAD_MAX bytes more).
        if input.message_id().is_none() {
            let mut seen = 0;
            while seen < mdeliver_core::mda::HEAD_MAX {
                match embedded_io::Read::read(&mut input, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
            }
        }
        let id = input.message_id();
        let lines: Vec<_> = events.iter().map(|e| e.line(id)).collect();
        a.log(&lines);
    }
    status
}

/// The mail log's event for a message stored in `maildir` (or a duplicate found there).
pub fn saved(maildir: &Path, stored: &Stored) -> Event {
    let (dir, name, dup) = match stored {
        Stored::Delivered(d) => (Some(d.dir), &*d.name, false),
        Stored::Duplicate { dir, name, .. } => (*dir, &**name, true),
    };
    let file = match dir {
        Some(d) => format!("{}/{name}", d.as_str()),
        None => name.to_owned(),
    };
    Event::Saved(maildir.to_owned(), file, dup)
}

/// The mail log's event for `failure` in `maildir`, which exited with `code`: what went
/// wrong and its status line.
pub fn failed(maildir: &Path, settings: &Settings, failure: &Failure, code: u8) -> Event {
    let addr = settings.delivered_to.as_deref();
    let addr = addr.map(|a| String::from_utf8_lossy(a).into_owned());
    let line = crate::status::line(failure, code, addr.as_deref());
    Event::Failed(maildir.to_owned(), failure.to_string(), Some(line), code)
}

/// `-M`: imports the mbox `input` into the one maildir (or its folder).
fn import_mbox<A: Adapter>(a: &mut A, args: &Args, mail: &MailArgs, input: &mut A::Message) -> u8 {
    let maildir = match import::one_maildir(args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let target = match target(a, args, mail, maildir) {
        Ok(t) => t,
        Err(refused) => {
            let mut out = Output::default();
            refused.report(&mut out, maildir);
            out.flush();
            return refused.code;
        }
    };
    let in_folder = target != maildir || marked_folder(&target);
    let fs = match a.open(&target, args.create, false, in_folder) {
        Ok(fs) => fs,
        Err((kind, part)) => return import::cannot_open(args, &target, kind, part),
    };
    // The strategy the filesystem gets, as for one delivery: Locked on a network filesystem.
    let (delivery, note) = a.strategy(&fs, import::delivery(args, mail));
    if let (Some(note), true) = (note, args.verbose >= 2) {
        eprintln!("mdeliver: {}: {note}", target.display());
    }
    let mut progress = a.progress(args);
    // A delivery's filesystem type (never a dry run here) and, as `dyn Env`, its environment
    // type (`envelope::deliver`): the machines are compiled once.
    let mut fs = mdeliver_core::fs::dryrun::DryRun::with(fs, false);
    let env: &mut dyn mdeliver_core::Env = a.env();
    import::run(
        args,
        mail,
        in_folder,
        delivery,
        &mut fs,
        env,
        &target,
        input,
        &mut progress,
    )
}
