//! Which form of the command line this is: the delivery form `mdeliver [OPTIONS] <MAILDIR>...`
//! (the shared [`Args`]) or one of the reader-side subcommands `list`, `flag`, `check`. The
//! subcommands are added to the delivery form's clap definition here, in the Linux binary
//! only, so the WASI module (which shares `args.rs`) carries none of their code or text.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{self, Args};
use crate::check::CheckArgs;
use crate::flag::FlagArgs;
use crate::list::ListArgs;
use crate::mail_args::MailArgs;

/// A parsed command line.
#[derive(Debug)]
pub enum Parsed {
    /// Deliver (the default form): the shared options and the mail options.
    Deliver(Args, MailArgs),
    /// `mdeliver list`.
    List(ListArgs),
    /// `mdeliver flag`.
    Flag(FlagArgs),
    /// `mdeliver check`.
    Check(CheckArgs),
}

const MAIL_HELP: &str = "\
MBOX IMPORT (-M)
  mdeliver -M [-c] [-v] [-X FLAGS] [--folder NAME] MAILDIR < mail.mbox
  Every message of the mbox is delivered into the one MAILDIR, streaming (memory use does not \
grow with the mbox). Framing: each line starting with \"From \" starts a message (the writer \
must have quoted such lines in bodies); that envelope line is not stored. The empty line before \
the next \"From \" line (and one at the end of the file) is the separator, not part of the \
message; everything else is stored byte for byte (CRLF, 8-bit bytes, a last line without \
newline). The input must start with \"From \".
  Quoting (--mbox-quoting): mboxrd (the default, as mblaze's mdeliver -M) removes one \">\" \
from every \">From \", \">>From \", ... line: exact for mboxrd files (mblaze mexport, \
getmail, Dovecot), and for mboxo files (Python's mailbox.mbox, mutt) it restores every quoted \
\"From \" line, wrongly changing only lines that began with \">From \" before the mboxo \
writer stored them (mboxo cannot represent those). mboxo removes the \">\" only from lines \
starting with exactly \">From \"; raw keeps every line as stored (what Python's \
mailbox.mbox gives back).
  Status: and X-Status: header fields are removed and mapped to Maildir flags: R (read) -> S, \
A (answered) -> R, F -> F, D (deleted) -> T; O (old) or any flag puts the message in cur/, \
otherwise it goes to new/. -X FLAGS are added to those of every message. Each file's \
modification time is set from its Date: field, else from the date on its \"From \" line. The \
envelope sender on the \"From \" line is not written into the message (headers stay exact).
  Messages are flushed one by one; new/ and cur/ are flushed once per 1024 messages, and a \
message is reported delivered (printed with -v) only after that. -v also prints a summary \
(count, bytes, rate) on standard error. On a terminal, a progress bar shows on standard error.
  An import is not an MTA's delivery: -M refuses the envelope, quota, duplicate, dry-run and \
JSON options (exit 64), and the Maildir++ quota of the maildir is not checked.
  A message consisting of nothing but its \"From \" line is skipped with a warning. A \
malformed mbox (not starting with \"From \", an envelope line over 1024 bytes) stops the \
import with an error naming the byte offset: every message before it stays delivered, the \
count is reported, and the exit status is 65 (EX_DATAERR: running it again cannot succeed; \
fix the input, then import the rest, from that offset on). Other failures stop the import the \
same way, with the delivery form's exit codes (75: disk full and the like).

FLAGS AND FOLDERS
  -X FLAGS delivers into cur/ as NAME:2,FLAGS (letters sorted, each once); without -X a message \
goes to new/ with no info part, as the Maildir specification says. --info-separator C uses C \
instead of \":\" (\";\" or \"!\" on FAT, Windows or Android-shared maildirs), also for the \
subcommands.
  --folder NAME delivers into the Maildir++ subfolder: \"A/B\", \"A.B\" and \"INBOX.A.B\" \
all mean the directory .A.B inside MAILDIR (\"INBOX\" or \"\" is MAILDIR itself). Names \
containing \"..\", starting with \".\", with an empty level, a control character or the \
info separator are refused (exit 64). Names are taken as given bytes (modified UTF-7 is the \
IMAP server's business). With -c a missing folder is created together with its tmp/, new/, \
cur/ and the empty maildirfolder marker: built inside MAILDIR/tmp/, flushed, and renamed into \
place without ever replacing anything, so no reader sees it half-made and concurrent creators \
agree; MAILDIR is flushed afterwards.";

const SUBCOMMANDS_HELP: &str = "\
SUBCOMMANDS
  mdeliver list [--json] MAILDIR            list every message once, even during renames
  mdeliver flag MAILDIR KEY [+FLAGS] [-FLAGS]  change a message's flags (moves new/ to cur/)
  mdeliver check [--repair] MAILDIR         report (and with --repair remove) stale tmp files \
and other anomalies
  mdeliver help SUBCOMMAND                  the subcommand's manual

  A MAILDIR literally named list, flag, check or help is taken as a subcommand: write it as \
./list (any path with a slash) to deliver into it.";

/// The clap definition of the whole command line.
pub fn definition() -> clap::Command {
    let after = format!(
        "{}\n\n{MAIL_HELP}\n\n{}\n\n{SUBCOMMANDS_HELP}",
        args::AFTER_LONG_HELP,
        crate::mta_args::MTA_HELP
    );
    args::command()
        .override_usage(
            "mdeliver [OPTIONS] <MAILDIR>...\n       mdeliver <list|flag|check> [OPTIONS] <MAILDIR> ...",
        )
        .after_long_help(after)
        .args_conflicts_with_subcommands(true)
        .subcommand_negates_reqs(true)
        .subcommand_help_heading("Subcommands (a maildir named like one: write ./NAME)")
        .subcommand(ListArgs::command().name("list"))
        .subcommand(FlagArgs::command().name("flag"))
        .subcommand(CheckArgs::command().name("check"))
}

/// Parses the process's arguments; help, version and usage errors print and give the exit
/// code (see [`args::usage_exit`]).
pub fn parse() -> Result<Parsed, ExitCode> {
    parse_from(std::env::args_os())
}

/// Parses `argv` (the first is the program name); see [`parse`].
pub fn parse_from<I, T>(argv: I) -> Result<Parsed, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let m = definition()
        .try_get_matches_from(argv)
        .map_err(args::usage_exit)?;
    let parsed = match m.subcommand() {
        Some(("list", sub)) => ListArgs::from_arg_matches(sub).map(Parsed::List),
        Some(("flag", sub)) => FlagArgs::from_arg_matches(sub).map(Parsed::Flag),
        Some(("check", sub)) => CheckArgs::from_arg_matches(sub).map(Parsed::Check),
        _ => args::from_matches(&m).map(|(a, mail)| Parsed::Deliver(a, mail)),
    };
    parsed.map_err(|e| args::usage_exit(e.format(&mut definition())))
}
