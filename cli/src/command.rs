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
use crate::lmtp::LmtpArgs;
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
    /// `mdeliver lmtp`.
    Lmtp(Box<LmtpArgs>),
}

/// The Linux binary's own manual sections (after the shared ones).
const LINUX_HELP: &str = "\
ENVIRONMENT
  MDELIVER_DISABLE=anonymous-tmp,rename-noreplace,hard-links
      A testing and diagnostic knob: pretend the filesystem lacks these features, forcing the \
fallback publish paths (anonymous-tmp off: O_EXCL tmp file + renameat2 RENAME_NOREPLACE; \
rename-noreplace off too: link + unlink; all three off: stat + rename, which relies on name \
uniqueness alone). Never needed in normal operation: missing features are detected at run time.

EXAMPLES
  Deliver a message, creating the maildir if needed:
      mdeliver -c -v ~/Maildir < message.eml

  Postfix, in main.cf (the command runs as the recipient, with HOME set; the shell
  expands $HOME; --from-env takes the envelope from Postfix's environment):
      mailbox_command = exec /usr/local/bin/mdeliver -c --from-env \"$HOME/Maildir\"
  (keep the exec: otherwise a killed mdeliver makes the shell exit 137, which Postfix
  bounces instead of deferring)

  Man page and completions: mdeliver --generate-man > mdeliver.1;
  mdeliver --generate-completions bash|zsh|fish|elvish|powershell";

const SUBCOMMANDS_HELP: &str = "\
SUBCOMMANDS
  mdeliver list [--json] MAILDIR            list every message once, even during renames
  mdeliver flag MAILDIR KEY [+FLAGS] [-FLAGS]  change a message's flags (moves new/ to cur/)
  mdeliver check [--repair] MAILDIR         report (and with --repair remove) stale tmp files \
and other anomalies
  mdeliver lmtp --maildir TEMPLATE [--listen ADDR]...  an LMTP delivery server
  mdeliver help SUBCOMMAND                  the subcommand's manual

  A MAILDIR literally named list, flag, check, lmtp or help is taken as a subcommand: write it as \
./list (any path with a slash) to deliver into it.";

/// The clap definition of the whole command line.
pub fn definition() -> clap::Command {
    args::command(&format!("{LINUX_HELP}\n\n{SUBCOMMANDS_HELP}"))
        .override_usage(
            "mdeliver [OPTIONS] <MAILDIR>...\n       mdeliver <list|flag|check> [OPTIONS] <MAILDIR> ...\n       mdeliver lmtp [OPTIONS] --maildir <TEMPLATE>",
        )
        .args_conflicts_with_subcommands(true)
        .subcommand_negates_reqs(true)
        .subcommand_help_heading("Subcommands (a maildir named like one: write ./NAME)")
        .subcommand(ListArgs::command().name("list"))
        .subcommand(FlagArgs::command().name("flag"))
        .subcommand(CheckArgs::command().name("check"))
        .subcommand(LmtpArgs::command().name("lmtp"))
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
        Some(("lmtp", sub)) => LmtpArgs::from_arg_matches(sub).map(|a| Parsed::Lmtp(Box::new(a))),
        _ => args::from_matches(&m).map(|(a, mail)| Parsed::Deliver(a, mail)),
    };
    parsed.map_err(|e| args::usage_exit(e.format(&mut definition())))
}
