//! The command line of `mdeliver`: one definition of the delivery form shared by the Linux
//! binary and the WASI module (both take this file, `mail_args.rs` and `mta_args.rs` from the
//! driver crate), so it uses only clap, std and mdeliver-core. [`Args`] holds the basic options;
//! [`MailArgs`] (mbox import, flags, folders, envelope, quota, duplicates, reporting) is added
//! to it by [`command`], so an option added there reaches both.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::exit;
use crate::mail_args::MailArgs;

const ABOUT: &str = "Deliver one mail message into one or more Maildirs, durably and race-free";

const LONG_ABOUT: &str = "\
Deliver one mail message into one or more Maildirs, durably and race-free.

mdeliver reads one message from standard input (or from --input FILE) and stores it in the \
new/ directory of every MAILDIR given, the way an MTA's local delivery agent does. A message \
is never overwritten, duplicated or visible half-written: it is written to a file in tmp/ \
(an unnamed O_TMPFILE where the filesystem supports it), flushed to disk, given a unique name \
in new/ without ever replacing an existing file, and reported delivered only after new/ itself \
has been flushed. Symbolic links are never followed inside a maildir: a maildir whose tmp/, \
new/ or cur/ (or --folder) is a symbolic link is refused; a MAILDIR that is one is followed.

A failed delivery removes what it wrote; if that removal fails too (a filesystem gone \
read-only), the error says what remains. Stopped by SIGTERM, SIGINT or SIGHUP (an MTA's timeout) while \
the message is read, the Linux binary leaves nothing either: an unnamed O_TMPFILE file goes with \
the killed process, a named tmp/ file is removed and the exit is 75. Limits: \
SIGKILL or a power cut cannot be cleaned up after. Without O_TMPFILE (NFS, MDELIVER_DISABLE) \
it can leave the partial message in tmp/, and in the last moment of a Maildir++ quota \
recalculation (between naming the new file and renaming it over maildirsize) a small \
tmp/NAME.maildirsize file; neither is ever delivered or read. The next recalculation removes \
such a file once it is 15 minutes old; `mdeliver check --repair` removes either after 36 \
hours.

With several MAILDIRs the message is read once and copied from the first delivered file into \
the others, so memory use stays small whatever the message size. A failure in one MAILDIR does \
not stop delivery to the others; the exit status is the worst of all of them.";

/// The manual's EXIT STATUS section, shared by the Linux binary and the WASI module (each adds
/// its own sections after the shared ones: see [`shared_help`]).
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS
  mdeliver uses the sysexits.h codes so that an MTA defers or bounces correctly.

  code  meaning                                    MTA (Postfix)
     0  delivered into every MAILDIR               done
    64  usage error (bad option or argument) at a  bounce
        terminal, with --strict-exit, or of a
        subcommand
    65  data error: the message is empty (or only  bounce
        its \"From \" line), or it loops
    66  --input FILE cannot be opened, or the      bounce
        input (file or standard input) is a
        directory
    73  (--strict-exit) maildir missing or not a   bounce
        directory
    74  (--strict-exit) I/O error                  bounce
    75  temporary failure: disk full, quota, I/O   defer and retry
        error, interrupted; by default also a
        missing maildir, permission denied, a
        read-only filesystem or a maildir that is
        not a directory
    77  (--strict-exit) permission denied or       bounce
        read-only filesystem

  By default every problem an administrator (or time) can fix exits 75, so a misconfigured \
mailbox defers mail instead of bouncing it. --strict-exit reports the precise codes 73, 74 and \
77 instead.

  With no terminal on standard input or error (an MTA runs mdeliver), a mistake in the command \
line (--crate, a bad value, -c on .../new) is the MTA configuration's: it exits 75 with \
\"4.3.5 mdeliver is misconfigured\" first, so mail waits until it is fixed. At a terminal, or \
with --strict-exit, it exits 64.

  With several MAILDIRs the worst status wins and a temporary failure (75) dominates, so the \
MTA retries. A retry delivers the message again to every MAILDIR, including those that already \
succeeded: deliver to one maildir per invocation if duplicates matter.";

/// The manual sections both adapters show after the options: exit status, mbox import, flags
/// and folders, running under an MTA. Each adapter appends its own (environment, examples).
pub fn shared_help() -> String {
    format!(
        "{EXIT_STATUS_HELP}\n\n{}\n\n{}",
        crate::mail_args::MAIL_HELP,
        crate::mta_args::MTA_HELP
    )
}

/// The parsed command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mdeliver",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = "Exit codes, environment and examples: see --help.",
    max_term_width = 100
)]
pub struct Args {
    /// Maildir(s) to deliver into (each must contain tmp/, new/ and cur/, unless -c)
    #[arg(value_name = "MAILDIR", required = true)]
    pub maildirs: Vec<PathBuf>,

    /// Create each MAILDIR and its tmp/, new/ and cur/ (mode 0700) if missing (not .../new)
    #[arg(short, long)]
    pub create: bool,

    /// With -c, also create the directories above MAILDIR (0700), following no symbolic link
    #[arg(short = 'p', long, requires = "create")]
    pub create_parents: bool,

    /// Print the path of each delivered message on standard output; twice (-vv) also how it
    /// was published, on standard error
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Read the message from FILE instead of standard input
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Skip every fsync: fast but NOT durable (a crash can lose mail); for tests and tmpfs
    #[arg(long)]
    pub no_fsync: bool,

    /// Exit with sysexits' precise codes (73, 74, 77) instead of 75 for problems an
    /// administrator can fix
    #[arg(long)]
    pub strict_exit: bool,

    /// The host name written into delivered file names (default: the system's; in the WASI
    /// module $MDELIVER_HOST, else "wasi")
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// The delivery form's clap definition: [`Args`] plus the [`MailArgs`], with the shared manual
/// sections followed by `sections` (the adapter's own). The Linux binary adds its subcommands
/// in `command.rs`.
pub fn command(sections: &str) -> clap::Command {
    use clap::{Args as _, CommandFactory};
    MailArgs::augment_args(Args::command())
        .after_long_help(format!("{}\n\n{sections}", shared_help()))
}

/// Parses the process's delivery form, with the adapter's own manual `sections`. Help and
/// version print and exit 0; a usage error prints clap's message and yields the code of
/// [`usage_failed`]. (The WASI module's entry; the Linux binary parses its subcommands too, in
/// `command.rs`.)
#[allow(dead_code)]
pub fn parse(sections: &str) -> Result<(Args, MailArgs), ExitCode> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let m = command(sections)
        .try_get_matches_from(&argv)
        .map_err(|e| usage_exit(e, &argv))?;
    from_matches(&m, &argv).map_err(|e| usage_exit(e.format(&mut command(sections)), &argv))
}

/// The delivery form's values from parsed matches of `argv`.
pub fn from_matches(
    m: &clap::ArgMatches,
    argv: &[OsString],
) -> Result<(Args, MailArgs), clap::Error> {
    use clap::FromArgMatches;
    let parsed = (Args::from_arg_matches(m)?, MailArgs::from_arg_matches(m)?);
    check_attached(argv)?;
    Ok(parsed)
}

/// Parses an option's value (only whether it is valid matters here).
type ValueCheck = fn(&str) -> Result<u64, String>;

/// The options whose value is optional, with the parser of that value. Such a value must be
/// attached (`--dedup=5d`): a detached word is the next argument (a MAILDIR).
const OPTIONAL_VALUE: [(&str, ValueCheck); 1] = [("--dedup", crate::mta_args::parse_window)];

/// Refuses an optional value given detached (`--dedup 5d ~/Maildir`): clap takes `5d` for a
/// MAILDIR, and delivering into `./5d` is never what was meant. A word that is not a valid
/// value (`--dedup ~/Maildir`) is a MAILDIR as usual; a maildir really named like a value is
/// written `./5d`.
pub fn check_attached(argv: &[OsString]) -> Result<(), clap::Error> {
    let words: Vec<&OsStr> = argv
        .iter()
        .skip(1)
        .map(OsString::as_os_str)
        .take_while(|a| *a != "--")
        .collect();
    for pair in words.windows(2) {
        for (option, value_ok) in OPTIONAL_VALUE {
            let next = pair[1].to_string_lossy();
            if pair[0] == option && !next.starts_with('-') && value_ok(&next).is_ok() {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ValueValidation,
                    format!(
                        "'{option} {next}': attach the value ('{option}={next}'); \"{next}\" \
                         would be a MAILDIR (write './{next}' for one)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// With `-c`, the first MAILDIR whose last component is `tmp`, `new` or `cur`, and the
/// message for it: creating a maildir there would nest it inside a maildir
/// ([`mdeliver_core::maildir::folder::nests_in_maildir`]). A usage error, before anything is done.
pub fn nested_create(args: &Args) -> Option<String> {
    if !args.create {
        return None;
    }
    args.maildirs.iter().find_map(|m| {
        let last = m.file_name()?;
        mdeliver_core::maildir::folder::nests_in_maildir(last.as_encoded_bytes()).then(|| {
            format!(
                "{}: -c refused: {}/ is a maildir's own subdirectory (a maildir there would \
                 nest in it); give the maildir itself",
                m.display(),
                last.to_string_lossy()
            )
        })
    })
}

/// The Linux binary's subcommand names (in the WASI module, which has none, they are maildirs).
const SUBCOMMANDS: [&str; 5] = ["list", "flag", "check", "sieve", "help"];

/// Whether a person typed the command: standard input or standard error is a terminal.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    use std::os::fd::BorrowedFd;
    // By descriptor: std's `stdin()` would set up its buffered reader (and link it into the
    // WASI module, which reads descriptor 0 itself) only to ask this.
    // SAFETY: descriptors 0 and 2 are the process's for its whole run; they are only borrowed.
    let (stdin, stderr) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(2)) };
    stdin.is_terminal() || stderr.is_terminal()
}

/// Decides how a usage error of the delivery form ends ([`exit::usage`]) and, when it defers,
/// prints the RFC 3463 status line first (`4.3.5 mdeliver is misconfigured`) so that Postfix
/// logs and honours it. Returns the exit code; the caller prints the error message after.
pub fn usage_failed(strict: bool, subcommand: bool) -> u8 {
    use mdeliver_core::report::rfc3463::{status, Class, Failed};
    let code = exit::usage(strict, interactive(), subcommand);
    if code == exit::TEMPFAIL {
        let line = status(
            Failed::Delivery(mdeliver_core::ErrorKind::Usage),
            Class::Transient,
            None,
        );
        eprintln!("{line}");
    }
    code
}

/// A usage error found after parsing (in a delivery, not a subcommand): prints the status
/// line [`usage_failed`] decides on, then `mdeliver: {message}`, and gives the exit code.
pub fn refuse(strict: bool, message: impl std::fmt::Display) -> u8 {
    let code = usage_failed(strict, false);
    eprintln!("mdeliver: {message}");
    code
}

/// Prints a clap error (or the help or version it carries) for the command line `argv` and
/// gives the exit code: 0 for help and version, else that of [`usage_failed`].
pub fn usage_exit(e: clap::Error, argv: &[OsString]) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(exit::OK);
    }
    let words = || argv.iter().skip(1).take_while(|a| *a != "--");
    let strict = words().any(|a| a == "--strict-exit");
    let subcommand = argv
        .get(1)
        .is_some_and(|a| SUBCOMMANDS.iter().any(|s| a == s));
    let code = usage_failed(strict, subcommand);
    let _ = e.print();
    ExitCode::from(code)
}
