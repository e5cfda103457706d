//! `-M/--mbox`: delivers every message of an mbox into one maildir. The loop is the core's
//! ([`mdeliver_core::mbox::import`]: framing, `Status:`/`Date:`, flags, modification times, one
//! directory flush per batch); this file says what happened to a person (the paths with `-v`,
//! once their batch is flushed; warnings; the summary; why it stopped) and picks the exit
//! status, for any `Fs`, `Env` and input; its entry is `run.rs`'s.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mdeliver_core::machine::deliver::{Delivered, Durability, Options};
use mdeliver_core::machine::quota::CheckOptions;
use mdeliver_core::mbox::import::{import, ImportEvents, ImportOptions, Stop};
use mdeliver_core::{Dir, Env, Error, ErrorKind, Fs, Phase};

use crate::args::Args;
use crate::exit;
use crate::mail_args::MailArgs;
use crate::report::Failure;
use crate::status::Output;

/// The size of each streaming buffer (mbox reads; message writes).
const BUF_SIZE: usize = 64 * 1024;

/// A progress display for a long import (a terminal bar, or nothing).
pub trait Progress {
    /// `messages` messages read so far, `bytes` bytes of the mbox consumed.
    fn update(&mut self, messages: u64, bytes: u64);
    /// Reading is over: clear the display before the final report.
    fn finish(&mut self);
}

/// No progress display.
impl Progress for () {
    fn update(&mut self, _messages: u64, _bytes: u64) {}
    fn finish(&mut self) {}
}

/// The import's events, told to a person.
struct Report<'a> {
    shown: &'a Path,
    verbose: bool,
    /// Written, not yet flushed (kept only with `-v`, to print once flushed).
    paths: Vec<PathBuf>,
    progress: &'a mut dyn Progress,
}

impl ImportEvents for Report<'_> {
    fn written(&mut self, _number: u64, d: &Delivered) {
        if self.verbose {
            self.paths
                .push(self.shown.join(d.dir.as_str()).join(&*d.name));
        }
    }

    fn committed(&mut self, _count: u64) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for p in self.paths.drain(..) {
            let _ = writeln!(out, "{}", p.display());
        }
    }

    fn empty(&mut self, number: u64) {
        eprintln!(
            "mdeliver: {}: warning: message {number} of the mbox is empty; skipped",
            self.shown.display()
        );
    }

    fn leftover_tmp(&mut self, number: u64) {
        eprintln!(
            "mdeliver: {}: warning: a second name of message {number} remains in tmp/; it is \
             harmless and can be removed",
            self.shown.display()
        );
    }

    fn progress(&mut self, number: u64, position: u64) {
        self.progress.update(number, position);
    }

    fn reading_done(&mut self) {
        self.progress.finish();
    }
}

/// The one maildir `-M` imports into; with none or several, says so and gives the exit status.
pub fn one_maildir(args: &Args) -> Result<&Path, u8> {
    match args.maildirs.as_slice() {
        [one] => Ok(one),
        all => Err(crate::args::refuse(
            args.strict_exit,
            format_args!(
                "-M/--mbox imports into exactly one MAILDIR (got {}); run it once per maildir",
                all.len()
            ),
        )),
    }
}

/// Reports that the maildir `target` (its `part`) could not be opened; the exit status.
pub fn cannot_open(args: &Args, target: &Path, kind: ErrorKind, part: Dir) -> u8 {
    let failure = Failure::Open {
        kind,
        part,
        // -M refuses --dry-run.
        create: crate::report::Create::of(args.create, false).at(target),
    };
    let code = failure.code(args.strict_exit);
    let mut out = Output::default();
    out.failed(code, crate::status::line(&failure, code, None));
    out.err(format!("mdeliver: {}: {failure}", target.display()));
    out.flush();
    code
}

/// `n / d` rounded to the nearest integer, a half up (`d > 0`; no intermediate overflows).
fn div_round(n: u64, d: u64) -> u64 {
    let r = n % d;
    n / d + u64::from(r >= d - r)
}

/// `imported ... in S s (R messages/s, M MiB/s)`, from integers (no float formatting: it is
/// large in a WebAssembly module). Two decimals of seconds, one of MiB/s. In 64 bits (128-bit
/// division would link compiler-builtins' into the module): MiB/s in tenths is
/// `bytes * 10^7 / (micros * 2^20)`, the same fraction as `bytes * 78125 / (micros * 8192)`,
/// which stays in range up to 236 TB in 71 years.
fn rates(delivered: u64, bytes: u64, micros: u64) -> String {
    let micros = micros.max(1);
    let centis = div_round(micros, 10_000);
    let per_sec = div_round(delivered.saturating_mul(1_000_000), micros);
    let mib_tenths = div_round(bytes.saturating_mul(78_125), micros.saturating_mul(8_192));
    format!(
        "{}.{:02} s ({per_sec} messages/s, {}.{} MiB/s)",
        centis / 100,
        centis % 100,
        mib_tenths / 10,
        mib_tenths % 10
    )
}

/// The options of each message's delivery in an import, before the adapter applies the
/// strategy the maildir's filesystem gets (the `delivery` of [`run`]).
pub fn delivery(args: &Args, mail: &MailArgs) -> Options {
    mail.delivery(args.no_fsync, Durability::DeferDirSync)
}

/// Imports the mbox `input` into the open maildir `fs` at `shown` (for messages; `folder`:
/// a Maildir++ folder, whose quota is its top maildir's), delivering each message with
/// `delivery` (from [`delivery`], with the filesystem's strategy), telling `progress` how far
/// it got. Returns the exit status.
#[allow(clippy::too_many_arguments)]
pub fn run<F, E, R>(
    args: &Args,
    mail: &MailArgs,
    folder: bool,
    delivery: Options,
    fs: &mut F,
    env: &mut E,
    shown: &Path,
    input: &mut R,
    progress: &mut dyn Progress,
) -> u8
where
    F: Fs,
    E: Env + ?Sized,
    R: embedded_io::Read,
    R::Error: Display,
{
    let who = shown.display();
    let mut rbuf = vec![0u8; BUF_SIZE];
    let mut wbuf = vec![0u8; BUF_SIZE];
    let settings = ImportOptions {
        quoting: mail.mbox_quoting.core(),
        delivery,
        // A `maildirsize` is honoured without `--quota`, as by a delivery.
        quota: Some(CheckOptions {
            given: mail.mta.quota,
            sep: mail.info_separator,
            folder,
            ..CheckOptions::default()
        }),
    };
    let mut report = Report {
        shown,
        verbose: args.verbose >= 1,
        paths: Vec::new(),
        progress,
    };
    let started = Instant::now();
    let summary = import(fs, env, &settings, input, &mut rbuf, &mut wbuf, &mut report);
    let delivered = summary.delivered;
    if args.verbose >= 1 {
        let empty = summary.empty;
        eprintln!(
            "mdeliver: {who}: imported {delivered} messages ({} bytes) in {}{}",
            summary.bytes,
            rates(delivered, summary.bytes, micros(started.elapsed())),
            if empty > 0 {
                format!("; skipped {empty} empty")
            } else {
                String::new()
            }
        );
    }
    let Some(resume) = summary.resume else {
        return exit::OK;
    };
    // Every way the import can end early, as a failure of a delivery: one status line (the
    // worst failure's, first), then each failure's message.
    let mut out = Output::default();
    let mut status = exit::OK;
    let mut fail = |out: &mut Output, failure: Failure, code: u8, message: String| {
        out.failed(code, crate::status::line(&failure, code, None));
        out.err(format!("mdeliver: {who}: {message}"));
        status = exit::worst(status, code);
    };
    if let Some(e) = summary.flush {
        let failure = Failure::Deliver(e);
        let message = format!(
            "{failure}; the last {} messages may not be durable",
            summary.unflushed
        );
        fail(&mut out, failure, failure.code(args.strict_exit), message);
    }
    let done = match delivered {
        0 => "nothing was delivered".to_owned(),
        1 => "the 1 message before it was delivered and stays delivered".to_owned(),
        n => format!("the {n} messages before it were delivered and stay delivered"),
    };
    // A malformed mbox fails the same way every time: a data error.
    let data = Failure::Deliver(Error::new(ErrorKind::Data, Phase::Read));
    match summary.stop {
        None => {}
        Some(Stop::Mbox(e)) => {
            let code = exit::DATAERR;
            fail(&mut out, data, code, format!("{e}; {done}"));
        }
        Some(Stop::Read(e)) => {
            let failure = Failure::Deliver(Error::new(ErrorKind::Io, Phase::Read));
            let code = failure.code(args.strict_exit);
            fail(
                &mut out,
                failure,
                code,
                format!("reading the mbox: {e}; {done}"),
            );
        }
        Some(Stop::Deliver { error, number }) => {
            let failure = Failure::Deliver(error);
            let code = failure.code(args.strict_exit);
            let message = format!("message {number} of the mbox: {failure}; {done}");
            fail(&mut out, failure, code, message);
        }
    }
    out.err(format!("mdeliver: {who}: {}", resume_hint(resume)));
    out.flush();
    status
}

/// `d` in microseconds (`Duration::as_micros` is 128-bit).
fn micros(d: std::time::Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}

/// How to import the rest of the mbox, which begins at byte `resume` of the input.
fn resume_hint(resume: u64) -> String {
    if resume == 0 {
        "once the cause is fixed, import the whole input again (the rest begins at byte 0)"
            .to_owned()
    } else {
        format!(
            "the rest of the input begins at byte {resume}: once the cause is fixed, import \
             it with `tail -c +{} MBOX | mdeliver -M ...` (not the whole mbox again, which \
             would store the delivered messages twice)",
            resume + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::rates;

    #[test]
    fn rates_round_like_the_float_formatting_they_replace() {
        // 3 messages, 3 MiB in 1.5 s.
        assert_eq!(
            rates(3, 3 * 1024 * 1024, 1_500_000),
            "1.50 s (2 messages/s, 2.0 MiB/s)"
        );
        // 1000 messages, 2.5 MiB in 0.123456 s.
        assert_eq!(
            rates(1000, 5 * 512 * 1024, 123_456),
            "0.12 s (8100 messages/s, 20.3 MiB/s)"
        );
        // No time measured: as fast as one microsecond.
        assert_eq!(rates(1, 0, 0), "0.00 s (1000000 messages/s, 0.0 MiB/s)");
        for (d, b, us) in [
            (7u64, 12_345u64, 987_654u64),
            (1, 1 << 40, 3),
            (0, 0, 10),
            // 200 TiB in two hours: still exact in 64 bits.
            (5_000_000, 200 << 40, 7_200_000_000),
        ] {
            let secs = us.max(1) as f64 / 1e6;
            let float = format!(
                "{secs:.2} s ({:.0} messages/s, {:.1} MiB/s)",
                d as f64 / secs,
                b as f64 / secs / (1024.0 * 1024.0)
            );
            assert_eq!(rates(d, b, us), float);
        }
    }
}
