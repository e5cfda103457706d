//! The command line of `mdeliver`: one definition of the delivery form shared by the Linux
//! binary and the WASI module (both take this file, `mail_args.rs` and `mta_args.rs` from the
//! driver crate), so it uses only clap, std and mdeliver-core. [`Args`] holds the basic options;
//! [`MailArgs`] (mbox import, flags, folders, envelope, quota, duplicates, reporting) is added
//! to it by [`command`], so an option added there reaches both.

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
new/ or cur/ is a symbolic link is refused.

With several MAILDIRs the message is read once and copied from the first delivered file into \
the others, so memory use stays small whatever the message size. A failure in one MAILDIR does \
not stop delivery to the others; the exit status is the worst of all of them.";

/// The manual's EXIT STATUS section, shared by the Linux binary and the WASI module (each adds
/// its own sections after the shared ones: see [`shared_help`]).
pub const EXIT_STATUS_HELP: &str = "\
EXIT STATUS
  mdeliver uses sysexits(3) codes so that an MTA defers or bounces correctly.

  code  meaning                                    MTA (Postfix)
     0  delivered into every MAILDIR               done
    64  usage error (bad option or argument)       bounce
    65  data error: the message is empty           bounce
    66  --input FILE cannot be opened              bounce
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

    /// Create each MAILDIR and its tmp/, new/ and cur/ (mode 0700) if missing
    #[arg(short, long)]
    pub create: bool,

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
/// version print and exit 0; a usage error prints clap's message and yields [`exit::USAGE`].
/// (The WASI module's entry; the Linux binary parses its subcommands too, in `command.rs`.)
#[allow(dead_code)]
pub fn parse(sections: &str) -> Result<(Args, MailArgs), ExitCode> {
    let m = command(sections)
        .try_get_matches_from(std::env::args_os())
        .map_err(usage_exit)?;
    from_matches(&m).map_err(|e| usage_exit(e.format(&mut command(sections))))
}

/// The delivery form's values from parsed matches.
pub fn from_matches(m: &clap::ArgMatches) -> Result<(Args, MailArgs), clap::Error> {
    use clap::FromArgMatches;
    Ok((Args::from_arg_matches(m)?, MailArgs::from_arg_matches(m)?))
}

/// Prints a clap error (or the help or version it carries) and gives the exit code: 0 for
/// help and version, [`exit::USAGE`] otherwise.
pub fn usage_exit(e: clap::Error) -> ExitCode {
    let code = if e.use_stderr() {
        exit::USAGE
    } else {
        exit::OK
    };
    let _ = e.print();
    ExitCode::from(code)
}
