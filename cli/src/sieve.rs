//! `mdeliver sieve check FILE` and `mdeliver sieve test FILE MESSAGE`: compile a Sieve script
//! and report its errors with line and column, or print the actions it decides for a message.
//! The language lives in `mdeliver_core::sieve`; this file reads files and prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mdeliver_core::sieve::{
    compile, run_with, Action, Context, Extensions, Limits, Message, MessageReader, Node, Outcome,
    Script,
};

use crate::exit;
use mdeliver_driver::maillog::Event;

const ABOUT: &str =
    "Compile a Sieve script (check) or show the actions it takes for a message (test)";

const AFTER_LONG_HELP: &str = "\
EXIT STATUS
   0  the script compiles (test: and the actions were printed)
   1  the script does not compile (the error, with line:column, is on stderr)
  66  the script or the message cannot be read

EXAMPLES
  mdeliver sieve check ~/.dovecot.sieve
  mdeliver sieve test --envelope-from alice@example.org --envelope-to bob@example.com \\
      filter.sieve message.eml";

/// `mdeliver sieve` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(about = ABOUT, after_long_help = AFTER_LONG_HELP, max_term_width = 100)]
pub struct SieveArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SieveCommand,
}

/// The `sieve` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SieveCommand {
    /// Compile the script and report the first error with its line and column
    Check {
        /// The Sieve script
        #[arg(value_name = "FILE")]
        script: PathBuf,
    },
    /// Print the actions the script takes for a message (nothing is delivered or sent)
    Test {
        /// The Sieve script
        #[arg(value_name = "FILE")]
        script: PathBuf,
        /// The message (RFC 5322)
        #[arg(value_name = "MESSAGE")]
        message: PathBuf,
        /// The envelope sender the `envelope` test sees (empty: the null sender)
        #[arg(long, value_name = "ADDRESS", default_value = "")]
        envelope_from: String,
        /// The envelope recipient the `envelope` test sees
        #[arg(long, value_name = "ADDRESS", default_value = "")]
        envelope_to: String,
        /// The time `currentdate` sees, in seconds since 1970 UTC (default: now); dates
        /// are shown in UTC
        #[arg(long, value_name = "SECONDS")]
        now: Option<i64>,
    },
}

/// The largest header block kept for the tests (fields past it are not seen, and `sieve
/// test` says so).
const HEADER_MAX: usize = 1 << 20;

/// The largest body kept for the `body` test (read only when the script requires `body`;
/// past it, the test sees the start of the body, and `sieve test` says so).
const BODY_MAX: usize = 16 << 20;

/// The arenas a script compiles into ([`compile`]). [`Limits::nodes_for`] is the most
/// nodes a script can need (one per two bytes, as if every token were one character), far
/// more than real scripts use (some one per 6 bytes: bench/sieve.sh's 50 rules, 648 nodes
/// for 3,954 bytes); filling that many (80 bytes each) before each delivery costs more than
/// compiling. So a first, smaller node arena (one node per 4 bytes) is tried, and the
/// largest only for a script that fills it.
#[derive(Default)]
struct Arenas {
    nodes: Vec<Node>,
    strings: Vec<u8>,
    more_nodes: Vec<Node>,
    more_strings: Vec<u8>,
}

impl Arenas {
    /// The first node arena for a script of `len` bytes.
    fn first_nodes(len: usize) -> usize {
        (len / 4 + 64).min(Limits::nodes_for(len))
    }

    fn compile<'a>(
        &'a mut self,
        src: &[u8],
        limits: &Limits,
    ) -> Result<Script<'a>, mdeliver_core::sieve::CompileError> {
        let Arenas {
            nodes,
            strings,
            more_nodes,
            more_strings,
        } = self;
        let first = Self::first_nodes(src.len());
        *nodes = vec![Node::FREE; first];
        *strings = vec![0u8; Limits::strings_for(src.len())];
        match compile(src, limits, nodes, strings) {
            Err(e)
                if e.kind == mdeliver_core::sieve::ErrorKind::TooManyNodes
                    && first < Limits::nodes_for(src.len()) =>
            {
                *more_nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
                *more_strings = vec![0u8; Limits::strings_for(src.len())];
                compile(src, limits, more_nodes, more_strings)
            }
            r => r,
        }
    }
}

/// Runs `mdeliver sieve`.
pub fn run_command(a: &SieveArgs) -> ExitCode {
    let script_path = match &a.action {
        SieveCommand::Check { script } | SieveCommand::Test { script, .. } => script,
    };
    let src = match std::fs::read(script_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mdeliver: cannot read {}: {e}", script_path.display());
            return ExitCode::from(exit::NOINPUT);
        }
    };
    let limits = Limits::default();
    let mut arenas = Arenas::default();
    let script = match arenas.compile(&src, &limits) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}:{e}", script_path.display());
            return ExitCode::from(1);
        }
    };
    match &a.action {
        SieveCommand::Check { .. } => {
            println!("{}: ok", script_path.display());
            ExitCode::SUCCESS
        }
        SieveCommand::Test {
            message,
            envelope_from,
            envelope_to,
            now,
            ..
        } => test(
            &script,
            &limits,
            message,
            (envelope_from.as_bytes(), envelope_to.as_bytes()),
            *now,
        ),
    }
}

fn test(
    script: &Script<'_>,
    limits: &Limits,
    path: &Path,
    (from, to): (&[u8], &[u8]),
    now: Option<i64>,
) -> ExitCode {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mdeliver: cannot read {}: {e}", path.display());
            return ExitCode::from(exit::NOINPUT);
        }
    };
    let mut header = vec![0u8; HEADER_MAX];
    let body_max = if script.extensions.has(Extensions::BODY) {
        BODY_MAX
    } else {
        0
    };
    let mut body = vec![0u8; body_max];
    let mut reader = MessageReader::with_body(&mut header, &mut body);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reader.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("mdeliver: cannot read {}: {e}", path.display());
                return ExitCode::from(exit::NOINPUT);
            }
        }
    }
    if reader.truncated() {
        eprintln!(
            "mdeliver: the header block is longer than {HEADER_MAX} bytes: fields past it are \
             not seen"
        );
    }
    if reader.body_truncated() {
        eprintln!(
            "mdeliver: the body is longer than {BODY_MAX} bytes: the body test sees its start"
        );
    }
    let now = now.or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
    });
    let ctx = Context {
        body: reader.body(),
        now,
        local_zone: 0,
        seen: None,
    };
    let msg = Message {
        header: reader.header(),
        size: reader.size(),
        envelope_from: from,
        envelope_to: to,
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; HEADER_MAX];
    run_with(script, &msg, &ctx, limits, &mut scratch, &mut out);
    print!("{}", render(&out));
    ExitCode::SUCCESS
}

/// The actions of an outcome, one line each, as `sieve test` prints them.
pub fn render(out: &Outcome) -> String {
    use std::fmt::Write;
    let s = |t| String::from_utf8_lossy(out.text(t)).into_owned();
    let flags = |f: String| {
        if f.is_empty() {
            String::new()
        } else {
            format!(" flags \"{f}\"")
        }
    };
    let mut o = String::new();
    if let Some(e) = out.error() {
        let _ = writeln!(o, "runtime error: {e}; the implicit keep applies");
    }
    for a in out.actions() {
        let _ = match *a {
            Action::Store {
                mailbox: None,
                flags: f,
                ..
            } => writeln!(o, "keep{}", flags(s(f))),
            Action::Store {
                mailbox: Some(m),
                flags: f,
                create,
            } => writeln!(
                o,
                "fileinto{} \"{}\"{}",
                if create { " :create" } else { "" },
                s(m).escape_debug(),
                flags(s(f))
            ),
            Action::Redirect { address } => writeln!(o, "redirect \"{}\"", s(address)),
            Action::Reject { reason, extended } => writeln!(
                o,
                "{} \"{}\"",
                if extended { "ereject" } else { "reject" },
                s(reason).escape_debug()
            ),
            Action::Discard => writeln!(o, "discard"),
            Action::Track { key, seconds } => writeln!(
                o,
                "duplicate: remember \"{}\" for {seconds} s",
                s(key).escape_debug()
            ),
            Action::Vacation {
                to,
                from,
                subject,
                reason,
                mime,
                handle,
                seconds,
                ..
            } => writeln!(
                o,
                "vacation to \"{}\"{} subject \"{}\"{} handle \"{}\" for {seconds} s: \"{}\"",
                s(to).escape_debug(),
                from.map_or(String::new(), |f| format!(
                    " from \"{}\"",
                    s(f).escape_debug()
                )),
                s(subject).escape_debug(),
                if mime { " :mime" } else { "" },
                s(handle).escape_debug(),
                s(reason).escape_debug()
            ),
        };
    }
    if out.implicit_keep() {
        let _ = writeln!(
            o,
            "implicit keep{}",
            flags(String::from_utf8_lossy(out.implicit_flags()).into_owned())
        );
    }
    o
}

/// `--sieve FILE` and `--sendmail PATH`: the Linux binary's own delivery options.
#[derive(Debug, Clone, Default)]
pub struct SieveOptions {
    /// The script.
    pub script: PathBuf,
    /// The MTA's sendmail, for redirects.
    pub sendmail: PathBuf,
    /// The uid, gid and supplementary groups sendmail runs as (the LMTP server's recipient
    /// owner: a thread's filesystem ids do not survive `exec`); None: this process's own.
    pub sendmail_as: Option<(u32, u32, Vec<u32>)>,
}

/// The sendmail redirects go through when `--sendmail` is not given.
pub const SENDMAIL: &str = "/usr/sbin/sendmail";

/// `mdeliver --sieve FILE MAILDIR`: runs the script over the message and performs every
/// action it decides (each copy, the keep, each redirect) as one exactly-once unit (the core's
/// `machine::unit`), or answers a `reject` with 5.7.1. Gives the exit code.
pub fn deliver(
    a: &mut crate::adapter::Linux,
    args: &mdeliver_driver::args::Args,
    mail: &mdeliver_driver::mail_args::MailArgs,
    sieve: &SieveOptions,
) -> u8 {
    use mdeliver_driver::envelope::Settings;

    let usage = |message: &str| {
        let code = mdeliver_driver::args::usage_failed(args.strict_exit, false);
        eprintln!("mdeliver: {message}");
        code
    };
    if args.maildirs.len() != 1 {
        return usage("--sieve delivers into one MAILDIR (the script's folders are inside it)");
    }
    let refused = [
        (mail.mbox, "-M"),
        (
            mail.folder.is_some(),
            "--folder (the script chooses the folders)",
        ),
        (mail.flags.is_some(), "-X (the script sets the flags)"),
        (
            mail.mta.dry_run,
            "--dry-run (mdeliver sieve test shows what a script does)",
        ),
    ];
    if let Some((_, what)) = refused.iter().find(|(on, _)| *on) {
        return usage(&format!("--sieve cannot be combined with {what}"));
    }
    let settings = match Settings::new(&mail.mta, mail.info_separator, |n| std::env::var_os(n)) {
        Ok(s) => s,
        Err(message) => return usage(&message),
    };
    let input = || {
        let input = match &args.input {
            None => crate::input::Input::stdin(),
            Some(p) => crate::input::Input::open(p),
        };
        input.map_err(|kind| {
            let path = args.input.as_deref();
            let path = path.unwrap_or(Path::new(mdeliver_driver::run::STDIN));
            mdeliver_driver::outcome::input_failed(args, path, kind)
        })
    };
    let mut out = mdeliver_driver::status::Output::default();
    let code = filter(a, args, mail, &settings, sieve, input, &|fs| fs, &mut out);
    out.flush();
    // No script (a user who has not written one, as Dovecot treats a missing personal
    // script): the message is delivered unfiltered.
    code.unwrap_or_else(|| mdeliver_driver::run::run(a, args, mail))
}

/// The local time zone at `now`, in minutes east of UTC, as the C library has it (`TZ`, else
/// /etc/localtime): the zone `date` and `currentdate` use without `:zone` (RFC 5260 4.1).
fn local_zone(now: Option<i64>) -> i16 {
    let Some(t) = now.and_then(|t| libc::time_t::try_from(t).ok()) else {
        return 0;
    };
    // SAFETY: `tm` is plain data that `localtime_r` fills; both pointers are valid for the
    // call, and `localtime_r` is thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    i16::try_from(tm.tm_gmtoff / 60).unwrap_or(0)
}

/// A maildir the unit's copies and record are written through: the Linux binary's own, or
/// the LMTP server's, whose flushes join its group commit.
pub trait OverLinux: mdeliver_core::Fs {
    /// The maildir underneath (its strategy is chosen from it).
    fn linux(&self) -> &crate::linux::LinuxFs;
}

impl OverLinux for crate::linux::LinuxFs {
    fn linux(&self) -> &crate::linux::LinuxFs {
        self
    }
}

/// The delivery of one message through a Sieve script into `args.maildirs[0]`, for
/// `mdeliver --sieve` and for a Sieve recipient of `mdeliver lmtp` alike: the script compiled,
/// the message read from `input` (its `Err` is the exit code of a message that cannot be
/// read), the script run, and its decision performed as one exactly-once unit through maildirs
/// made by `wrap`. Everything it reports goes into `out`; gives the exit code, or `None` when
/// the script does not exist (the caller delivers without it).
#[allow(clippy::too_many_arguments)]
pub fn filter<F: OverLinux>(
    a: &mut crate::adapter::Linux,
    args: &mdeliver_driver::args::Args,
    mail: &mdeliver_driver::mail_args::MailArgs,
    settings: &mdeliver_driver::envelope::Settings,
    sieve: &SieveOptions,
    input: impl FnOnce() -> Result<crate::input::Input, u8>,
    wrap: &dyn Fn(crate::linux::LinuxFs) -> F,
    out: &mut mdeliver_driver::status::Output,
) -> Option<u8> {
    // The script: an administrator's file; any problem with it defers the mail.
    let src = match std::fs::read(&sieve.script) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if args.verbose >= 2 {
                out.err(format!(
                    "mdeliver: {}: no such Sieve script; delivering without one",
                    sieve.script.display()
                ));
            }
            return None;
        }
        Err(e) => {
            let what = format!(
                "cannot read the Sieve script {}: {e}",
                sieve.script.display()
            );
            return Some(script_failed(a, out, &args.maildirs[0], &what));
        }
    };
    let limits = Limits::default();
    let mut arenas = Arenas::default();
    let script = match arenas.compile(&src, &limits) {
        Ok(s) => s,
        Err(e) => {
            let what = format!("the Sieve script {}:{e}", sieve.script.display());
            return Some(script_failed(a, out, &args.maildirs[0], &what));
        }
    };
    let input = match input() {
        Ok(i) => i,
        Err(code) => return Some(code),
    };
    let body_max = if script.extensions.has(Extensions::BODY) {
        BODY_MAX
    } else {
        0
    };
    let (mut header, mut body) = (vec![0u8; HEADER_MAX], vec![0u8; body_max]);
    let mut message = match Spooled::new(input, &mut header, &mut body) {
        Ok(m) => m,
        Err(e) => {
            let failure = mdeliver_driver::report::Failure::Deliver(mdeliver_core::Error::new(
                e,
                mdeliver_core::Phase::Read,
            ));
            let maildir = &args.maildirs[0];
            return Some(mdeliver_driver::outcome::failed(
                out,
                args,
                settings,
                maildir,
                &failure,
                &[],
            ));
        }
    };
    // A message that came back (our Delivered-To on it) is refused before its script runs,
    // which could otherwise redirect it once more (the redirect carries that field: loop
    // control).
    if mdeliver_core::mda::loops(message.reader.header(), &settings.envelope()) {
        let failure = mdeliver_driver::report::Failure::Deliver(mdeliver_core::Error::new(
            mdeliver_core::ErrorKind::Loop,
            mdeliver_core::Phase::Check,
        ));
        return Some(mdeliver_driver::outcome::failed(
            out,
            args,
            settings,
            &args.maildirs[0],
            &failure,
            &[],
        ));
    }
    let msg = Message {
        header: message.reader.header(),
        size: message.reader.size(),
        envelope_from: mdeliver_core::mda::trace::envelope_sender(
            message.reader.header(),
            settings.return_path.as_deref(),
            settings.from_env.return_path,
            !settings.unframed,
        ),
        envelope_to: settings
            .delivered_to
            .as_deref()
            .or(settings.original_to.as_deref())
            .unwrap_or(b""),
    };
    let mut outcome = Box::new(Outcome::new());
    let mut scratch = vec![0u8; HEADER_MAX.min(message.reader.header().len() + 4096)];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The memory of earlier runs (`duplicate`, `vacation :days`) is the root maildir's index,
    // read by the core's machine (`unit::Evaluate`) like the unit's own files: the root is
    // opened before the run for a script that asks, and the unit then uses it.
    let remembers =
        script.extensions.has(Extensions::DUPLICATE) || script.extensions.has(Extensions::VACATION);
    let mut root = remembers.then(|| open_root(a, args).map(wrap));
    let ctx = Context {
        body: message.reader.body(),
        now: i64::try_from(now).ok(),
        // `date` and `currentdate` without `:zone` are in the system's local time zone.
        local_zone: if script.extensions.has(Extensions::DATE) {
            local_zone(i64::try_from(now).ok())
        } else {
            0
        },
        seen: None,
    };
    match root.as_mut().and_then(|r| r.as_mut().ok()) {
        Some(fs) => {
            let run = mdeliver_core::machine::unit::Interpreter {
                script: &script,
                msg: &msg,
                ctx,
                limits: &limits,
                scratch: &mut scratch,
                outcome: &mut outcome,
            };
            mdeliver_core::machine::unit::evaluate(fs, run, now);
        }
        None => run_with(&script, &msg, &ctx, &limits, &mut scratch, &mut outcome),
    }
    if let Some(e) = outcome.error() {
        out.err(format!(
            "mdeliver: the Sieve script {}: {e}; the implicit keep applies",
            sieve.script.display()
        ));
    }
    let (decision, fell_back) = mdeliver_core::mda::sieve::decide(&outcome, now);
    if fell_back {
        out.err(format!(
            "mdeliver: the Sieve script {}: its actions need more than {} bytes of names; the \
             implicit keep applies",
            sieve.script.display(),
            mdeliver_core::machine::unit::PLAN_MAX
        ));
    }
    let plan = match decision {
        mdeliver_core::mda::sieve::Decision::Reject { reason, extended } => {
            return Some(rejected(out, args, reason, extended));
        }
        mdeliver_core::mda::sieve::Decision::Perform(p) => p,
    };
    let unit = message.unit;
    let root = root.unwrap_or_else(|| open_root(a, args).map(wrap));
    let mut p = Performer::new(a, args, mail, settings, sieve, &mut message, out, wrap);
    let code = match p.root_fs(root) {
        Err(code) => code,
        Ok(()) => match mdeliver_core::machine::unit::perform(&mut p, &unit, plan) {
            Ok(done) => p.finish(&done),
            Err(e) => {
                let maildir = args.maildirs[0].clone();
                p.fail(&maildir, e);
                p.code
            }
        },
    };
    let events = std::mem::take(&mut p.events);
    log(a, Some(message.reader.header()), &events);
    Some(code)
}

/// Writes the mail log's lines of a `--sieve` delivery (one per copy stored or failed, as a
/// plain delivery logs one per maildir), when this run logs.
fn log(a: &mut crate::adapter::Linux, header: Option<&[u8]>, events: &[Event]) {
    use mdeliver_driver::run::Adapter as _;
    if events.is_empty() || !a.logging() {
        return;
    }
    let mut id = None;
    if let Some(h) = header {
        mdeliver_core::sieve::header::each_field(h, b"Message-ID", |v| {
            id = mdeliver_core::machine::dedup::normalize_message_id(v);
            true
        });
    }
    let lines: Vec<_> = events.iter().map(|e| e.line(id)).collect();
    a.log(&lines);
}

/// A script that cannot be read or compiled: the administrator's mistake, deferred (75) with
/// a 4.3.5 status line naming it, and logged (before the message is read: `msgid=none`).
fn script_failed(
    a: &mut crate::adapter::Linux,
    out: &mut mdeliver_driver::status::Output,
    maildir: &Path,
    what: &str,
) -> u8 {
    let code = exit::decide(
        mdeliver_core::ErrorKind::Data,
        exit::Context::Script,
        exit::Policy::default(),
    );
    let line = format!("4.3.5 {what}");
    out.failed(code, line.clone());
    out.err(format!(
        "mdeliver: {what} (the mail is deferred until it is fixed)"
    ));
    let event = Event::Failed(maildir.to_owned(), what.to_owned(), Some(line), code);
    log(a, None, &[event]);
    code
}

/// A `reject`: the script's decision to refuse the message, answered with 5.7.1 and its
/// reason; 77 (`EX_NOPERM`) with `--strict-exit`, else 65 (`EX_DATAERR`), which MTAs bounce.
fn rejected(
    out: &mut mdeliver_driver::status::Output,
    args: &mdeliver_driver::args::Args,
    reason: &[u8],
    extended: bool,
) -> u8 {
    let policy = exit::Policy {
        strict: args.strict_exit,
        ..exit::Policy::default()
    };
    let code = exit::decide(
        mdeliver_core::ErrorKind::Permission,
        exit::Context::Rejected,
        policy,
    );
    // One line: the reason's line ends become spaces.
    let reason: String = String::from_utf8_lossy(reason)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let reason = reason.trim();
    out.failed(code, format!("5.7.1 {reason}"));
    let what = if extended { "ereject" } else { "reject" };
    out.err(format!(
        "mdeliver: the Sieve script refused the message ({what}): {reason}"
    ));
    code
}

/// Opens the root maildir (with `-c`, creates it): where the unit's record, its markers and
/// the remembered ids live.
fn open_root(
    a: &mut crate::adapter::Linux,
    args: &mdeliver_driver::args::Args,
) -> Result<crate::linux::LinuxFs, (mdeliver_core::ErrorKind, mdeliver_core::fs::Dir)> {
    use mdeliver_driver::run::Adapter;
    a.open(&args.maildirs[0], args.create, false, false)
}

/// The message, readable again from its start as often as needed (a pipe is copied into an
/// anonymous memory file first), with its header block, size and sha256.
struct Spooled<'m> {
    input: crate::input::Input,
    reader: MessageReader<'m>,
    unit: mdeliver_core::machine::dedup::Key,
}

impl<'m> Spooled<'m> {
    /// Reads `input` whole, keeping its header block in `header` and the start of its body
    /// in `body`.
    fn new(
        mut input: crate::input::Input,
        header: &'m mut [u8],
        body: &'m mut [u8],
    ) -> Result<Spooled<'m>, mdeliver_core::ErrorKind> {
        use mdeliver_driver::run::Message as _;
        use std::io::Write;
        let mut reader = MessageReader::with_body(header, body);
        let mut hash = mdeliver_core::machine::unit::UnitKeyer::new();
        let mut buf = vec![0u8; 64 * 1024];
        let spool = if input.is_rewindable() {
            None
        } else {
            let fd = rustix::fs::memfd_create("mdeliver-sieve", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|_| mdeliver_core::ErrorKind::Io)?;
            Some(std::fs::File::from(fd))
        };
        let mut spool = spool;
        loop {
            let n = embedded_io::Read::read(&mut input, &mut buf)
                .map_err(|_| mdeliver_core::ErrorKind::Io)?;
            if n == 0 {
                break;
            }
            reader.push(&buf[..n]);
            hash.feed(&buf[..n]);
            if let Some(f) = spool.as_mut() {
                f.write_all(&buf[..n])
                    .map_err(|_| mdeliver_core::ErrorKind::NoSpace)?;
            }
        }
        let input = match spool {
            Some(f) => crate::input::Input::delivered(f.into()),
            None => input,
        };
        Ok(Spooled {
            input,
            reader,
            unit: hash.key(),
        })
    }
}

/// The unit's driver on Linux: the root maildir for the record, each copy through the
/// adapter (folder resolved, created with `:create` or `-c`, subscribed), each redirect
/// through sendmail.
struct Performer<'a, 'm, F> {
    a: &'a mut crate::adapter::Linux,
    args: &'a mdeliver_driver::args::Args,
    mail: &'a mdeliver_driver::mail_args::MailArgs,
    settings: &'a mdeliver_driver::envelope::Settings,
    sieve: &'a SieveOptions,
    message: &'a mut Spooled<'m>,
    out: &'a mut mdeliver_driver::status::Output,
    root: Option<F>,
    /// Makes the maildir each copy is written through.
    wrap: &'a dyn Fn(crate::linux::LinuxFs) -> F,
    buf: Vec<u8>,
    code: u8,
    /// The mail log's events, one per copy stored or failed.
    events: Vec<Event>,
}

impl<'a, 'm, F: OverLinux> Performer<'a, 'm, F> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        a: &'a mut crate::adapter::Linux,
        args: &'a mdeliver_driver::args::Args,
        mail: &'a mdeliver_driver::mail_args::MailArgs,
        settings: &'a mdeliver_driver::envelope::Settings,
        sieve: &'a SieveOptions,
        message: &'a mut Spooled<'m>,
        out: &'a mut mdeliver_driver::status::Output,
        wrap: &'a dyn Fn(crate::linux::LinuxFs) -> F,
    ) -> Performer<'a, 'm, F> {
        Performer {
            a,
            args,
            mail,
            settings,
            sieve,
            message,
            out,
            root: None,
            wrap,
            buf: vec![0u8; 64 * 1024],
            code: exit::OK,
            events: Vec::new(),
        }
    }

    fn maildir(&self) -> &'a Path {
        &self.args.maildirs[0]
    }

    /// Takes the root maildir [`open_root`] opened; on failure, reports and gives the code.
    fn root_fs(
        &mut self,
        opened: Result<F, (mdeliver_core::ErrorKind, mdeliver_core::fs::Dir)>,
    ) -> Result<(), u8> {
        let maildir = self.maildir();
        match opened {
            Ok(fs) => {
                self.root = Some(fs);
                Ok(())
            }
            Err((kind, part)) => {
                let failure = mdeliver_driver::report::Failure::Open {
                    kind,
                    part,
                    create: mdeliver_driver::report::Create::of(self.args.create, false)
                        .at(maildir),
                };
                Err(mdeliver_driver::outcome::failed(
                    self.out,
                    self.args,
                    self.settings,
                    maildir,
                    &failure,
                    &[],
                ))
            }
        }
    }

    /// The exit code once the unit ran: 0 when every action is done, else the worst failure's.
    fn finish(&mut self, done: &mdeliver_core::machine::unit::Performed) -> u8 {
        use mdeliver_core::machine::unit::Begun;
        if done.begun == Begun::Resumed && self.args.verbose >= 1 {
            self.out.err(format!(
                "mdeliver: {}: finishing the actions an earlier attempt recorded",
                self.maildir().display()
            ));
        }
        self.code
    }

    fn fail(&mut self, what: &Path, e: mdeliver_core::Error) -> mdeliver_core::Error {
        let failure = mdeliver_driver::report::Failure::Deliver(e);
        let code = mdeliver_driver::outcome::failed(
            self.out,
            self.args,
            self.settings,
            what,
            &failure,
            &[],
        );
        self.code = exit::worst(self.code, code);
        self.events.push(mdeliver_driver::run::failed(
            what,
            self.settings,
            &failure,
            code,
        ));
        e
    }

    fn dedup(&self) -> mdeliver_core::machine::dedup::DedupOptions {
        use mdeliver_core::machine::dedup::DedupOptions;
        let d = self.settings.dedup.unwrap_or(DedupOptions {
            sep: self.mail.info_separator,
            ..DedupOptions::default()
        });
        let lease = std::env::var(mdeliver_driver::envelope::LEASE_VAR).ok();
        match lease.and_then(|v| v.parse().ok()) {
            Some(l) => DedupOptions {
                lease_secs: l,
                margin_secs: l,
                ..d
            },
            None => d,
        }
    }
}

impl<F: OverLinux> mdeliver_core::machine::unit::Performer for Performer<'_, '_, F> {
    type Fs = F;

    fn root(&mut self) -> &mut F {
        self.root
            .as_mut()
            .expect("the root maildir is opened before the unit")
    }

    fn sync(&self) -> bool {
        !self.args.no_fsync
    }

    fn copy(
        &mut self,
        copy: &mdeliver_core::machine::unit::Copy<'_>,
        key: mdeliver_core::machine::dedup::Key,
    ) -> Result<mdeliver_core::machine::unit::CopyDone, mdeliver_core::Error> {
        use mdeliver_core::machine::unit::CopyDone;
        use mdeliver_core::mda::{self, HEAD_MAX};
        use mdeliver_core::{Error, ErrorKind, Phase};
        use mdeliver_driver::run::{Adapter, Message as _};
        let maildir = self.maildir();
        let missing = Error::new(ErrorKind::NotFound, Phase::Open);
        let path = match copy.mailbox {
            None => maildir.to_owned(),
            Some(name) => {
                let name = String::from_utf8_lossy(name).into_owned();
                let create = copy.create || self.args.create;
                match self.a.folder(maildir, std::ffi::OsStr::new(&name), create) {
                    Ok((path, created)) => {
                        if let (Some(dir), false) = (created, self.mail.no_subscribe) {
                            let sync = !self.args.no_fsync;
                            if let Err((file, kind)) = self.a.subscribe(maildir, &dir, sync) {
                                self.out
                                    .err(mdeliver_driver::folder_report::subscribe_warning(
                                        maildir,
                                        std::ffi::OsStr::new(&name),
                                        &file,
                                        kind,
                                    ));
                            }
                        }
                        path
                    }
                    Err(f) => {
                        use mdeliver_core::maildir::folder::FolderFailure;
                        let why = match f {
                            FolderFailure::Name(e) => e.to_string(),
                            f => {
                                let strict = self.args.strict_exit;
                                let os = std::ffi::OsStr::new(&name);
                                mdeliver_driver::folder_report::explain(f, os, create, strict)
                                    .message
                            }
                        };
                        self.out.err(format!(
                            "mdeliver: {}: fileinto \"{name}\": {why}; storing into INBOX \
                             instead",
                            maildir.display()
                        ));
                        return Err(missing);
                    }
                }
            }
        };
        let in_folder = copy.mailbox.is_some();
        // INBOX is the root maildir, already open (the record's): opened as the root is, so
        // the copy reuses it rather than opening it a second time.
        let opened = match self.root.take() {
            Some(root) if !in_folder => Ok(root),
            root => {
                self.root = root;
                let open = self
                    .a
                    .open(&path, self.args.create && !in_folder, false, in_folder);
                open.map(self.wrap)
            }
        };
        let fs = match opened {
            Ok(fs) => fs,
            Err((ErrorKind::NotFound, _)) if in_folder => {
                self.out.err(format!(
                    "mdeliver: {}: the folder does not exist (fileinto without :create); \
                     storing into INBOX instead",
                    path.display()
                ));
                return Err(missing);
            }
            Err((kind, _)) => return Err(self.fail(&path, Error::new(kind, Phase::Open))),
        };
        let (mut opts, _) = self.a.strategy(
            fs.linux(),
            self.mail.delivery(
                self.args.no_fsync,
                mdeliver_core::machine::deliver::Durability::Full,
            ),
        );
        opts.flags = copy.flags;
        let mut fs = fs;
        // A folder's copy counts in the top maildir's quota (Maildir++: one for the tree).
        let folder_settings;
        let settings = if in_folder {
            folder_settings = self.settings.in_folder();
            &folder_settings
        } else {
            self.settings
        };
        let mut o = settings.mda(opts);
        o.dedup = Some(self.dedup());
        o.key = Some(key);
        let rewound = self.message.input.rewind();
        let r = match rewound {
            Err(f) => Err(Error::new(f.kind(), Phase::Read)),
            Ok(()) => {
                let env = self.a.env();
                let mut head = vec![0u8; HEAD_MAX];
                mda::deliver_message(
                    &mut fs,
                    env,
                    &o,
                    &mut self.message.input,
                    &mut head,
                    &mut self.buf,
                )
            }
        };
        if !in_folder {
            self.root = Some(fs);
        }
        match r {
            Ok(stored) => {
                mdeliver_driver::outcome::stored(
                    self.out,
                    self.args,
                    self.settings,
                    &path,
                    &stored,
                );
                self.events
                    .push(mdeliver_driver::run::saved(&path, &stored));
                Ok(match stored {
                    mda::Stored::Delivered(_) => CopyDone::Stored,
                    mda::Stored::Duplicate { .. } => CopyDone::Already,
                })
            }
            Err(e) => Err(self.fail(&path, e)),
        }
    }

    fn redirect(&mut self, _index: usize, address: &[u8]) -> Result<(), mdeliver_core::Error> {
        use std::os::unix::ffi::OsStrExt;
        let from = mdeliver_core::mda::trace::envelope_sender(
            self.message.reader.header(),
            self.settings.return_path.as_deref(),
            self.settings.from_env.return_path,
            !self.settings.unframed,
        );
        let from = std::ffi::OsStr::from_bytes(if from.is_empty() { b"<>" } else { from });
        let from = from.to_owned();
        let address = std::ffi::OsStr::from_bytes(address);
        let what = format!("redirect to {}", address.to_string_lossy());
        self.send(&what, &from, address, None)
    }

    fn vacation(
        &mut self,
        _index: usize,
        reply: &mdeliver_core::machine::unit::Reply<'_>,
    ) -> Result<(), mdeliver_core::Error> {
        use std::os::unix::ffi::OsStrExt;
        let user = self
            .settings
            .delivered_to
            .as_deref()
            .or(self.settings.original_to.as_deref())
            .unwrap_or(b"");
        let mut bytes = Vec::new();
        mdeliver_core::mda::sieve::reply_message(reply, user, &mut |b| bytes.extend_from_slice(b));
        let to = std::ffi::OsStr::from_bytes(reply.to);
        let what = format!("vacation reply to {}", to.to_string_lossy());
        self.send(&what, std::ffi::OsStr::new("<>"), to, Some(&bytes))
    }
}

impl<F: OverLinux> Performer<'_, '_, F> {
    /// Runs `sendmail -i -f FROM -- TO` with `body` (None: the message as received) on its
    /// standard input; an error when it cannot run, stops reading or fails.
    fn send(
        &mut self,
        what: &str,
        from: &std::ffi::OsStr,
        to: &std::ffi::OsStr,
        body: Option<&[u8]>,
    ) -> Result<(), mdeliver_core::Error> {
        use mdeliver_core::{Error, ErrorKind, Phase};
        use mdeliver_driver::run::Message as _;
        use std::io::Write;
        let sendmail = &self.sieve.sendmail;
        let fail = |p: &mut Self, kind: ErrorKind, why: String| {
            p.out.err(format!("mdeliver: {what}: {why}"));
            let e = Error::new(kind, Phase::Publish);
            let failure = mdeliver_driver::report::Failure::Deliver(e);
            let code =
                mdeliver_driver::status::code(&failure, p.args.strict_exit, p.settings.quota_full);
            p.out
                .failed(code, mdeliver_driver::status::line(&failure, code, None));
            p.code = exit::worst(p.code, code);
            e
        };
        if body.is_none() {
            if let Err(f) = self.message.input.rewind() {
                return Err(fail(
                    self,
                    f.kind(),
                    "the message cannot be read again".into(),
                ));
            }
        }
        let mut cmd = std::process::Command::new(sendmail);
        if let Some((uid, gid, groups)) = self.sieve.sendmail_as.clone() {
            use std::os::unix::process::CommandExt;
            // The owner's whole identity, as the one-shot run has it (std's `uid` would drop
            // the supplementary groups). Raw system calls: they change the calling thread
            // alone, the child's only one, and are safe between fork and exec.
            let set = move || -> std::io::Result<()> {
                let ok = |r: libc::c_long| match r {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                };
                // SAFETY: plain integers and a pointer to `groups`, alive for the call.
                unsafe {
                    ok(libc::syscall(
                        libc::SYS_setgroups,
                        groups.len(),
                        groups.as_ptr(),
                    ))?;
                    ok(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
                    ok(libc::syscall(libc::SYS_setresuid, uid, uid, uid))
                }
            };
            // SAFETY: `set` makes only the three system calls above.
            unsafe {
                cmd.pre_exec(set);
            }
        }
        let child = cmd
            .arg("-i")
            .arg("-f")
            .arg(from)
            .arg("--")
            .arg(to)
            .stdin(std::process::Stdio::piped())
            // Its output is a diagnostic (and standard output may be an LMTP connection).
            .stdout(std::io::stderr())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot run {}: {e}", sendmail.display());
                return Err(fail(self, ErrorKind::Io, why));
            }
        };
        let mut stdin = child.stdin.take().expect("piped");
        let stopped = |e: std::io::Error| format!("{} stopped reading: {e}", sendmail.display());
        use mdeliver_core::message::{FromLine, FromLineMode, Prelude, PreludeFields, Transformed};
        let sent = match body {
            Some(b) => stdin.write_all(b).map_err(stopped),
            // The message as received: a leading `From ` line is mbox framing (unless the
            // message came unframed, by LMTP), not part of the message sent on; the
            // recipient's Delivered-To goes on top (loop control).
            None => {
                let strip = FromLine::new(if self.settings.unframed {
                    FromLineMode::Keep
                } else {
                    FromLineMode::Strip
                });
                let envelope = self.settings.envelope();
                let fields =
                    mdeliver_core::mda::redirect_fields(self.message.reader.header(), &envelope);
                // The fields are the trace plan's, which took the address: no fallback needed
                // beyond none at all.
                let prelude = Prelude::new(fields)
                    .or_else(|_| Prelude::new(PreludeFields::default()))
                    .expect("an empty prelude");
                let unframed: Transformed<_, FromLine> =
                    Transformed::new(&mut self.message.input, strip);
                let mut message: Transformed<_, Prelude<'_>> =
                    Transformed::new(unframed, prelude.above_any_from_line());
                loop {
                    match embedded_io::Read::read(&mut message, &mut self.buf) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            if let Err(e) = stdin.write_all(&self.buf[..n]) {
                                break Err(stopped(e));
                            }
                        }
                        Err(e) => break Err(format!("the message cannot be read again: {e}")),
                    }
                }
            }
        };
        drop(stdin);
        let status = child.wait();
        match (sent, status) {
            (Ok(()), Ok(s)) if s.success() => {
                if self.args.verbose >= 1 {
                    self.out.err(format!("mdeliver: {what}: sent"));
                }
                Ok(())
            }
            (Err(why), _) => Err(fail(self, ErrorKind::Io, why)),
            (Ok(()), Ok(s)) => {
                let why = format!("{} failed ({s})", sendmail.display());
                Err(fail(self, ErrorKind::Io, why))
            }
            (Ok(()), Err(e)) => Err(fail(self, ErrorKind::Io, format!("{e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::{Disabled, LinuxFs, OpenOptions};
    use mdeliver_core::machine::dedup::Key;
    use mdeliver_core::machine::unit::{begin, Begun, Plan};
    use mdeliver_core::testkit::{Call, Hook, Hooked};
    use mdeliver_core::{Dir, ErrorKind, Fs};

    use crate::linux::tests::Scratch;

    /// Runs `other` (a second attempt of the unit, on its own open of the same maildir) just
    /// before this attempt's record gets its name: by its link, or by its exclusive create
    /// where the filesystem has no unnamed files.
    struct Race(Option<Box<dyn FnOnce()>>);

    impl Hook<LinuxFs> for Race {
        fn before(&mut self, _: &mut LinuxFs, call: &mut Call<'_>) -> Result<(), ErrorKind> {
            if matches!(
                call,
                Call::Create(Dir::Root, _, true) | Call::LinkAnonymous(..)
            ) {
                if let Some(other) = self.0.take() {
                    other();
                }
            }
            Ok(())
        }
    }

    fn plan(folder: Option<&[u8]>) -> Plan {
        let mut p = Plan::new();
        p.copy(folder, None, false).unwrap();
        p
    }

    /// The files in the maildir's root (the record among them).
    fn root_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Two attempts of one unit at the same moment, on a real filesystem: the second one
    /// records its plan while the first is between reading (no record) and naming its own.
    /// Exactly one record is ever written, whole; the first attempt performs nothing now
    /// (Busy: the MTA retries) and its retry follows the record that won, not its own plan.
    fn two_attempts_write_one_record(disabled: Disabled, tag: &str) {
        let s = Scratch::new(tag);
        let opts = OpenOptions {
            disabled,
            ..OpenOptions::default()
        };
        let unit = Key([7; 32]);
        let name = unit.entry_name().as_str().to_owned();
        let root = s.0.clone();
        let seen_before_link = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen = seen_before_link.clone();
        let other = Box::new(move || {
            // Whatever the first attempt wrote so far is not visible under the record's name.
            seen.set(Some(std::fs::metadata(root.join(&name)).is_ok()));
            let mut fs = LinuxFs::open(&root, opts).unwrap();
            let (p, begun) = begin(&mut fs, &unit, plan(None), true).unwrap();
            assert_eq!((p, begun), (plan(None), Begun::Fresh));
        });
        let mut a = Hooked {
            fs: LinuxFs::open(&s.0, opts).unwrap(),
            hook: Race(Some(other)),
        };
        let linked = a.capabilities().anonymous_tmp && a.capabilities().hard_links;
        assert_eq!(linked, disabled == Disabled::default());
        let e = begin(&mut a, &unit, plan(Some(b"Lists")), true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert_eq!(seen_before_link.get(), Some(false));
        assert_eq!(root_files(&s.0), [unit.entry_name().as_str()]);
        // The retry follows the winner's record (INBOX), whatever it decides now.
        let mut fs = LinuxFs::open(&s.0, opts).unwrap();
        let (p, begun) = begin(&mut fs, &unit, plan(Some(b"Other")), true).unwrap();
        assert_eq!((p, begun), (plan(None), Begun::Resumed));
        assert_eq!(root_files(&s.0), [unit.entry_name().as_str()]);
    }

    #[test]
    fn two_attempts_of_a_unit_write_one_record_by_link() {
        two_attempts_write_one_record(Disabled::default(), "race-link");
    }

    #[test]
    fn two_attempts_of_a_unit_write_one_record_by_exclusive_create() {
        let by_name = Disabled {
            anonymous_tmp: true,
            ..Disabled::default()
        };
        two_attempts_write_one_record(by_name, "race-create");
    }

    /// A script denser than the first node arena allows (an empty string takes 3 bytes and a
    /// node) still compiles, into the full arena, to what a compile into the full arena
    /// gives at once; a sparse one fits the first.
    #[test]
    fn a_script_that_fills_the_first_node_arena_compiles_into_the_full_one() {
        let limits = Limits::default();
        let keys = vec!["\"\""; 1000].join(",");
        let dense = format!("if header \"subject\" [{keys}] {{ discard; }}\n");
        let mut nodes = vec![Node::FREE; Arenas::first_nodes(dense.len())];
        let mut strings = vec![0u8; Limits::strings_for(dense.len())];
        let e = compile(dense.as_bytes(), &limits, &mut nodes, &mut strings).unwrap_err();
        assert_eq!(e.kind, mdeliver_core::sieve::ErrorKind::TooManyNodes);
        let mut full = vec![Node::FREE; Limits::nodes_for(dense.len())];
        let mut full_strings = vec![0u8; Limits::strings_for(dense.len())];
        let once = compile(dense.as_bytes(), &limits, &mut full, &mut full_strings).unwrap();
        let mut arenas = Arenas::default();
        let script = arenas.compile(dense.as_bytes(), &limits).unwrap();
        assert_eq!(script.nodes, once.nodes);
        assert_eq!(script.strings, once.strings);
        assert!(arenas.more_nodes.len() > arenas.nodes.len());
        let mut arenas = Arenas::default();
        let sparse = "# a comment\nif header :contains \"subject\" \"x\" { discard; }\n";
        arenas.compile(sparse.as_bytes(), &limits).unwrap();
        assert!(arenas.more_nodes.is_empty());
    }

    /// A record torn by a crash (or written by an older version and cut) is written anew;
    /// a long record (over the first read's 512 bytes) is read whole.
    #[test]
    fn a_torn_record_is_rewritten_and_a_long_one_read_whole() {
        let s = Scratch::new("torn");
        let unit = Key([9; 32]);
        let record = s.0.join(unit.entry_name().as_str());
        std::fs::write(&record, b"mdeliver-sieve-unit 1\ncopy 0 - -\n").unwrap();
        let mut fs = LinuxFs::open(&s.0, OpenOptions::default()).unwrap();
        let mut long = Plan::new();
        for i in 0..40u8 {
            long.copy(
                Some(&[b'a' + i % 26, b'0' + i / 26, b'x', b'y', b'z']),
                None,
                false,
            )
            .unwrap();
        }
        let (p, begun) = begin(&mut fs, &unit, long.clone(), false).unwrap();
        assert_eq!((&p, begun), (&long, Begun::Fresh));
        assert!(std::fs::metadata(&record).unwrap().len() > 512);
        let (p, begun) = begin(&mut fs, &unit, plan(None), false).unwrap();
        assert_eq!((p, begun), (long, Begun::Resumed));
    }
}
