//! `-M/--mbox`: delivers every message of an mbox. The core splits the mbox
//! ([`MboxReader`], any read size), removes `Status:`/`X-Status:` while learning their flags
//! ([`StatusFilter`]) and captures `Date:` ([`DateCapture`]); right after each message is
//! written and before it is named, the hook picks new/ or cur/ + flags and sets the file's
//! modification time. Messages are flushed one by one and their directories once per batch
//! ([`Durability::DeferDirSync`]); a message counts as delivered (and is printed with `-v`)
//! only after its batch's directory flush.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use embedded_io::Read;
use mdeliver_core::deliver::{deliver_with, Durability, Options};
use mdeliver_core::mbox::{MboxError, MboxReader, ReadError};
use mdeliver_core::message::{DateCapture, Observe, StatusFilter, Transformed};
use mdeliver_core::{Dir, Error, ErrorKind, Flags, Fs, Phase};

use crate::args::Args;
use crate::env::LinuxEnv;
use crate::exit;
use crate::input::Input;
use crate::linux::LinuxFs;
use crate::mail_args::MailArgs;
use crate::report::Failure;

/// Messages delivered between two directory flushes.
pub const BATCH: usize = 1024;

/// The size of each streaming buffer (mbox reads; message writes).
const BUF_SIZE: usize = 64 * 1024;

/// Buffer of each transform layer (re-made for every message, so kept modest).
const LAYER: usize = 16 * 1024;

/// The flags a message gets: what its `Status:`/`X-Status:` said (`None`: new/), plus `-X`.
pub fn merge(status: Option<Flags>, extra: Option<Flags>) -> Option<Flags> {
    match (status, extra) {
        (None, None) => None,
        (s, x) => Some(s.unwrap_or_default().union(x.unwrap_or_default())),
    }
}

/// An `embedded_io::Read` that remembers the error its source failed with, so the driver can
/// tell a malformed mbox (with its byte offset) from an I/O error after the delivery failed.
struct Tap<'r, R: embedded_io::ErrorType> {
    inner: &'r mut R,
    failed: Option<R::Error>,
}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for Tap<'_, R> {
    type Error = embedded_io::ErrorKind;
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
        self.inner.read(buf).map_err(|e| {
            let kind = embedded_io::Error::kind(&e);
            self.failed = Some(e);
            kind
        })
    }
}

/// Why an import stopped early.
enum Stop {
    /// The mbox is malformed here.
    Mbox(MboxError),
    /// Reading the input failed.
    Read(std::io::Error),
    /// Delivering message number `.1` (1-based) failed.
    Deliver(Error, u64),
}

/// Delivered but not yet flushed: the batch.
#[derive(Default)]
struct Batch {
    paths: Vec<PathBuf>,
    sync_new: bool,
    sync_cur: bool,
}

/// Progress on a terminal (indicatif), nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
        } else {
            "{spinner} {msg} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn update(&self, messages: u64, bytes: u64, elapsed: std::time::Duration) {
        if let Some(bar) = &self.0 {
            bar.set_position(bytes);
            let rate = messages as f64 / elapsed.as_secs_f64().max(1e-3);
            bar.set_message(format!("{messages} messages ({rate:.0}/s)"));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// The bytes left in the input, for the progress bar's ETA (regular files only).
pub fn input_size(args: &Args) -> Option<u64> {
    let st = match &args.input {
        Some(p) => rustix::fs::stat(p).ok()?,
        None => rustix::fs::fstat(std::io::stdin().as_fd()).ok()?,
    };
    let regular = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file();
    let offset = match &args.input {
        Some(_) => 0,
        None => rustix::fs::seek(std::io::stdin().as_fd(), rustix::fs::SeekFrom::Current(0))
            .unwrap_or(0),
    };
    regular.then(|| (st.st_size as u64).saturating_sub(offset))
}

/// Imports the mbox `input` into the open maildir `fs` at `shown` (for messages). Returns
/// the exit status.
pub fn run(args: &Args, mail: &MailArgs, fs: &mut LinuxFs, shown: &Path, input: &mut Input) -> u8 {
    let who = shown.display();
    let mut env = LinuxEnv::new();
    let mut rbuf = vec![0u8; BUF_SIZE];
    let mut wbuf = vec![0u8; BUF_SIZE];
    let mut reader = MboxReader::new(input, &mut rbuf, mail.mbox_quoting.core());
    let opts = Options {
        durability: if args.no_fsync {
            Durability::None
        } else {
            Durability::DeferDirSync
        },
        flags: mail.flags,
        sep: mail.info_separator,
        ..Options::default()
    };
    let progress = Progress::new(input_size(args));
    let started = std::time::Instant::now();
    let mut batch = Batch::default();
    let (mut delivered, mut bytes, mut empty) = (0u64, 0u64, 0u64);
    let mut stop = None;
    loop {
        let from_date = match reader.next_message() {
            Ok(None) => break,
            Ok(Some(envelope)) => envelope.timestamp(),
            Err(ReadError::Mbox(e)) => {
                stop = Some(Stop::Mbox(e));
                break;
            }
            Err(ReadError::Source(e)) => {
                stop = Some(Stop::Read(e));
                break;
            }
        };
        let number = reader.messages();
        let mut tap = Tap {
            inner: &mut reader,
            failed: None,
        };
        let filtered = Transformed::<_, _, LAYER>::new(&mut tap, StatusFilter::new());
        let mut chain = Transformed::<_, _, LAYER>::new(filtered, Observe(DateCapture::date()));
        let extra = mail.flags;
        let outcome = deliver_with(fs, &mut env, opts, &mut chain, &mut wbuf, |w| {
            let status = w.source.source_mut().transform().status();
            w.machine.set_flags(merge(status.maildir_info(), extra));
            let date = w.source.transform().0.timestamp().or(from_date);
            if let (Some(file), Some(t)) = (w.file.as_ref(), date) {
                let t = rustix::fs::Timespec {
                    tv_sec: t,
                    tv_nsec: 0,
                };
                let times = rustix::fs::Timestamps {
                    last_access: t,
                    last_modification: t,
                };
                // Best effort, as in mblaze: a wrong mtime loses no mail.
                let _ = rustix::fs::futimens(file.as_fd(), &times);
            }
        });
        match outcome {
            Ok(d) => {
                bytes += d.size;
                batch.sync_new |= d.needs_dir_sync && d.dir == Dir::New;
                batch.sync_cur |= d.needs_dir_sync && d.dir == Dir::Cur;
                batch.paths.push(shown.join(d.dir.as_str()).join(&*d.name));
                if d.leftover_tmp {
                    eprintln!(
                        "mdeliver: {who}: warning: a second name of message {number} remains in \
                         tmp/; it is harmless and can be removed"
                    );
                }
            }
            Err(e) => match tap.failed.take() {
                Some(ReadError::Mbox(m)) => {
                    stop = Some(Stop::Mbox(m));
                    break;
                }
                Some(ReadError::Source(s)) => {
                    stop = Some(Stop::Read(s));
                    break;
                }
                None if e.kind == ErrorKind::Data && e.phase == Phase::Read => {
                    // `From ` line with nothing after it: no message to store.
                    empty += 1;
                    eprintln!(
                        "mdeliver: {who}: warning: message {number} of the mbox is empty; \
                         skipped"
                    );
                }
                None => {
                    stop = Some(Stop::Deliver(e, number));
                    break;
                }
            },
        }
        if batch.paths.len() >= BATCH {
            match commit(fs, &mut batch, args.verbose) {
                Ok(n) => delivered += n,
                Err(e) => {
                    stop = Some(Stop::Deliver(e, number));
                    break;
                }
            }
        }
        progress.update(number, reader.position(), started.elapsed());
    }
    progress.finish();
    let status = match commit(fs, &mut batch, args.verbose) {
        Ok(n) => {
            delivered += n;
            exit::OK
        }
        Err(e) => {
            let failure = Failure::Deliver(e);
            eprintln!(
                "mdeliver: {who}: {failure}; the last {} messages may not be durable",
                batch.paths.len()
            );
            failure.code(args.strict_exit)
        }
    };
    if args.verbose >= 1 {
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        eprintln!(
            "mdeliver: {who}: imported {delivered} messages ({bytes} bytes) in {secs:.2} s \
             ({:.0} messages/s, {:.1} MiB/s){}",
            delivered as f64 / secs,
            bytes as f64 / secs / (1024.0 * 1024.0),
            if empty > 0 {
                format!("; skipped {empty} empty")
            } else {
                String::new()
            }
        );
    }
    let stopped = match stop {
        None => return status,
        Some(s) => s,
    };
    let done = match delivered {
        0 => "nothing was delivered".to_owned(),
        1 => "the 1 message before it was delivered and stays delivered".to_owned(),
        n => format!("the {n} messages before it were delivered and stay delivered"),
    };
    let code = match stopped {
        Stop::Mbox(e) if delivered == 0 => {
            eprintln!("mdeliver: {who}: {e}; {done}");
            exit::DATAERR
        }
        Stop::Mbox(e) => {
            eprintln!(
                "mdeliver: {who}: {e}; {done}; the rest was not (after fixing the input, \
                 `tail -c +{}` of it continues at byte {})",
                e.offset() + 1,
                e.offset()
            );
            exit::DATAERR
        }
        Stop::Read(e) => {
            eprintln!("mdeliver: {who}: reading the mbox: {e}; {done}");
            exit::code(ErrorKind::Io, args.strict_exit)
        }
        Stop::Deliver(e, n) => {
            let failure = Failure::Deliver(e);
            eprintln!("mdeliver: {who}: message {n} of the mbox: {failure}; {done}");
            failure.code(args.strict_exit)
        }
    };
    exit::worst(status, code)
}

/// Flushes the batch's directories, then reports its messages as delivered.
fn commit(fs: &mut LinuxFs, batch: &mut Batch, verbose: u8) -> Result<u64, Error> {
    for (dir, needed) in [(Dir::New, batch.sync_new), (Dir::Cur, batch.sync_cur)] {
        if needed {
            fs.sync_dir(dir)
                .map_err(|k| Error::new(k, Phase::SyncDir))?;
        }
    }
    let n = batch.paths.len() as u64;
    if verbose >= 1 {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for p in &batch.paths {
            let _ = writeln!(out, "{}", p.display());
        }
    }
    *batch = Batch::default();
    Ok(n)
}

/// `mdeliver -M`: checks the arguments, opens the one maildir (or its folder) and imports.
pub fn main(
    args: &Args,
    mail: &MailArgs,
    disabled: crate::linux::Disabled,
    input: &mut Input,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    if args.maildirs.len() != 1 {
        eprintln!(
            "mdeliver: -M/--mbox imports into exactly one MAILDIR (got {}); run it once per \
             maildir",
            args.maildirs.len()
        );
        return ExitCode::from(exit::USAGE);
    }
    let maildir = &args.maildirs[0];
    let open = crate::linux::OpenOptions {
        create: args.create,
        sync: !args.no_fsync,
        disabled,
        keep_readable: false,
    };
    let target = match crate::folder::target(args, mail, maildir, open) {
        Ok(t) => t,
        Err((message, code)) => {
            eprintln!("mdeliver: {}: {message}", maildir.display());
            return ExitCode::from(code);
        }
    };
    let mut fs = match LinuxFs::open(&target, open) {
        Ok(fs) => fs,
        Err((kind, part)) => {
            let failure = Failure::Open {
                kind,
                part,
                create: args.create,
            };
            eprintln!("mdeliver: {}: {failure}", target.display());
            return ExitCode::from(failure.code(args.strict_exit));
        }
    };
    ExitCode::from(run(args, mail, &mut fs, &target, input))
}
