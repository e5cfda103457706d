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
use crate::quick_args;
use crate::sieve::SieveArgs;

/// A parsed command line.
// Made once per process and matched at once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// Deliver (the default form): the shared options, the mail options, and the Linux
    /// binary's own.
    Deliver(Args, MailArgs, LinuxArgs),
    /// `mdeliver list`.
    List(ListArgs),
    /// `mdeliver flag`.
    Flag(FlagArgs),
    /// `mdeliver check`.
    Check(CheckArgs),
    /// `mdeliver sieve`.
    Sieve(SieveArgs),
    /// `mdeliver lmtp`.
    Lmtp(Box<LmtpArgs>),
}

/// The Linux binary's own delivery options (the WASI module has no system log and no users).
#[derive(Debug, Clone, Default)]
pub struct LinuxArgs {
    /// Write the mail log (`--syslog`, `--no-syslog`, else whether stdin is not a terminal;
    /// see `maillog.rs`).
    pub syslog: bool,
    /// `--user NAME` (see `privilege.rs`).
    pub user: Option<String>,
    /// `--sieve FILE` with `--sendmail PATH` (see `sieve.rs`).
    pub sieve: Option<crate::sieve::SieveOptions>,
}

/// The Linux binary's own manual sections (after the shared ones).
const LINUX_HELP: &str = "\
RUNNING AS ROOT
  mdeliver never leaves root-owned files in someone else's maildir. Run as root, it first \
becomes the owner of the MAILDIRs (of the nearest existing directory for one -c creates): its \
uid, primary group and supplementary groups, with no way back to root; a maildir owned by \
root is delivered as root. --user NAME names the user instead. Maildirs with different owners \
in one run are refused (run one mdeliver per owner). Without root, --user must name the user \
mdeliver runs as. A MAILDIR whose directory is group-writable is shared: every file mdeliver \
creates there gets mode 0660 and the maildir's group (when the user is a member), as Dovecot \
does; otherwise files are 0600.

FILTERING WITH SIEVE
  --sieve FILE runs the Sieve script FILE (RFC 5228) over the message and does what it \
decides: each fileinto stores a copy into that folder of MAILDIR (created with :create or -c), \
keep stores into MAILDIR, redirect sends through the MTA (--sendmail PATH -i -f SENDER -- \
ADDRESS), vacation replies through it with the null sender (-f '<>'), at most once per period \
and sender, duplicate remembers the ids it sees, reject exits 65 (77 with --strict-exit) with \
5.7.1 and its reason. All of it happens exactly once, even across a crash and the MTA's retry \
(a redirect or reply at least once: a crash just after the MTA took it sends it again); the \
ids and replies are remembered in MAILDIR's duplicate index once the copies are stored. A script that does not compile defers \
(75, 4.3.5 with its line:column); a script file that does not exist means no filtering. \
Limits, each refused with its own error: a script of at most 1 MiB, blocks and tests nested \
at most 32 deep, strings of at most 64 KiB, at most 32 actions and 4 redirects per message, \
a million steps per run, and a vacation reason (the reply's body) of at most 4096 bytes: a \
longer literal reason does not compile, and one made longer by its variables is a runtime \
error. A runtime error (a limit reached) stores the implicit keep and says why. \
mdeliver sieve test shows what a script does without delivering.

MAIL LOG
  Each MAILDIR's outcome is one line in the system log (facility mail, tag mdeliver), when \
standard input is not a terminal (an MTA runs mdeliver) or with --syslog; --no-syslog turns \
it off. A dry run, -M and the subcommands log nothing. The lines look like dovecot-lda's:
      msgid=<a@example.org>: saved mail to /home/bob/Maildir: new/NAME; status=2.0.0
      msgid=<a@example.org>: failed to save mail to /home/bob/Maildir: ...; status=4.2.0, exit=75
  (msgid=none without a Message-ID; \"duplicate not saved again in\" for --dedup.)

ENVIRONMENT
  MDELIVER_DISABLE=anonymous-tmp,rename-noreplace,hard-links,ordered-commit
      A testing and diagnostic knob: pretend the filesystem lacks these features, forcing the \
fallback publish paths (anonymous-tmp off: O_EXCL tmp file + renameat2 RENAME_NOREPLACE; \
rename-noreplace off too: link + unlink; all three off: stat + rename, which relies on name \
uniqueness alone; ordered-commit off: each file flushed on its own, as on filesystems other than \
a journalled ext4). Never needed in normal operation: missing features are detected at run time.
  MDELIVER_TEST_SYSLOG=PATH
      A testing knob: send the mail log to the unix socket PATH instead of /dev/log.

EXAMPLES
  Deliver a message, creating the maildir if needed:
      mdeliver -c -v ~/Maildir < message.eml

  Postfix, in main.cf (the command runs as the recipient, with HOME set; the shell
  expands $HOME; --from-env takes the envelope from Postfix's environment):
      mailbox_command = exec /usr/local/bin/mdeliver -c --from-env \"$HOME/Maildir\"
  (keep the exec: otherwise a killed mdeliver makes the shell exit 137, which Postfix
  bounces instead of deferring)

  Postfix, a pipe(8) transport for virtual mailboxes, creating each new user's maildir and
  the directories above it:
      mdeliver unix - n n - - pipe
        flags=DRO user=vmail argv=/usr/local/bin/mdeliver -c -p --delivered-to=${recipient}
        /var/vmail/${domain}/${user}/Maildir

  Man page and completions: mdeliver --generate-man > mdeliver.1;
  mdeliver --generate-completions bash|zsh|fish|elvish|powershell";

const SUBCOMMANDS_HELP: &str = "\
SUBCOMMANDS
  mdeliver list [--json] MAILDIR            list every message once, even during renames
  mdeliver flag MAILDIR KEY [+FLAGS] [-FLAGS]  change a message's flags (moves new/ to cur/)
  mdeliver check [--repair] MAILDIR         report (and with --repair remove) stale files \
and other anomalies
  mdeliver sieve check FILE                 compile a Sieve script, errors with line:column
  mdeliver sieve test FILE MESSAGE          print the actions a Sieve script takes for a message
  mdeliver lmtp --maildir TEMPLATE [--listen ADDR]...  an LMTP delivery server
  mdeliver help SUBCOMMAND                  the subcommand's manual

  A MAILDIR literally named list, flag, check, sieve, lmtp or help is taken as a subcommand: write it as \
./list (any path with a slash) to deliver into it.";

/// The clap definition of the whole command line.
pub fn definition() -> clap::Command {
    args::command(&format!("{LINUX_HELP}\n\n{SUBCOMMANDS_HELP}"))
        .override_usage(
            "mdeliver [OPTIONS] <MAILDIR>...\n       mdeliver <list|flag|check|sieve> [OPTIONS] <MAILDIR> ...\n       mdeliver lmtp [OPTIONS] --maildir <TEMPLATE>",
        )
        .args_conflicts_with_subcommands(true)
        .subcommand_negates_reqs(true)
        .subcommand_help_heading("Subcommands (a maildir named like one: write ./NAME)")
        .arg(
            clap::Arg::new("user")
                .long("user")
                .value_name("NAME")
                .help(
                    "As root, deliver as user NAME (its uid and groups); without it, root \
                     delivers as the owner of the maildirs (see RUNNING AS ROOT)",
                ),
        )
        .arg(
            clap::Arg::new("sieve")
                .long("sieve")
                .value_name("FILE")
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .help_heading("Sieve")
                .help(
                    "Filter through the Sieve script FILE (RFC 5228): every fileinto, keep \
                     and redirect it decides is done exactly once, even across a crash and \
                     the MTA's retry (see FILTERING WITH SIEVE)",
                ),
        )
        .arg(
            clap::Arg::new("sendmail")
                .long("sendmail")
                .value_name("PATH")
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .requires("sieve")
                .help_heading("Sieve")
                .help(
                    "The MTA's sendmail that redirects and vacation replies go through \
                     [default: /usr/sbin/sendmail]",
                ),
        )
        .arg(
            clap::Arg::new("syslog")
                .long("syslog")
                .action(clap::ArgAction::SetTrue)
                .help_heading("Reporting")
                .help(
                    "Log one line per maildir to the system log (facility mail): the \
                     Message-ID, the maildir, the file or the failure, and the status; the \
                     default when standard input is not a terminal",
                ),
        )
        .arg(
            clap::Arg::new("no_syslog")
                .long("no-syslog")
                .action(clap::ArgAction::SetTrue)
                .conflicts_with("syslog")
                .help_heading("Reporting")
                .help("Log nothing to the system log, even when standard input is not a terminal"),
        )
        .subcommand(ListArgs::command().name("list"))
        .subcommand(FlagArgs::command().name("flag"))
        .subcommand(CheckArgs::command().name("check"))
        .subcommand(SieveArgs::command().name("sieve"))
        .subcommand(LmtpArgs::command().name("lmtp"))
}

/// Parses the command line `argv` (the program name first): the common delivery forms
/// without building clap's definition ([`quick_args`]), anything else with clap. Help,
/// version and usage errors print and give the exit code (see [`args::usage_exit`]).
pub fn parse(argv: &[std::ffi::OsString]) -> Result<Parsed, ExitCode> {
    // A detached optional value (`--dedup 5d`) is clap's to refuse.
    let quick = argv.get(1..).filter(|_| args::check_attached(argv).is_ok());
    if let Some((a, mail, sieve)) = quick.and_then(quick_args::parse) {
        let linux = LinuxArgs {
            syslog: crate::maillog::wanted(false, false),
            user: None,
            sieve,
        };
        return Ok(Parsed::Deliver(a, mail, linux));
    }
    parse_from(argv)
}

/// Parses `argv` (the first is the program name); see [`parse`].
pub fn parse_from<I, T>(argv: I) -> Result<Parsed, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let m = definition()
        .try_get_matches_from(&argv)
        .map_err(|e| args::usage_exit(e, &argv))?;
    let parsed = match m.subcommand() {
        Some(("list", sub)) => ListArgs::from_arg_matches(sub).map(Parsed::List),
        Some(("flag", sub)) => FlagArgs::from_arg_matches(sub).map(Parsed::Flag),
        Some(("check", sub)) => CheckArgs::from_arg_matches(sub).map(Parsed::Check),
        Some(("sieve", sub)) => SieveArgs::from_arg_matches(sub).map(Parsed::Sieve),
        Some(("lmtp", sub)) => LmtpArgs::from_arg_matches(sub).map(|a| Parsed::Lmtp(Box::new(a))),
        _ => args::from_matches(&m, &argv).map(|(a, mail)| {
            let linux = LinuxArgs {
                syslog: crate::maillog::wanted(m.get_flag("syslog"), m.get_flag("no_syslog")),
                user: m.get_one::<String>("user").cloned(),
                sieve: m.get_one::<std::path::PathBuf>("sieve").map(|script| {
                    crate::sieve::SieveOptions {
                        script: script.clone(),
                        sendmail: m
                            .get_one::<std::path::PathBuf>("sendmail")
                            .cloned()
                            .unwrap_or_else(|| crate::sieve::SENDMAIL.into()),
                        sendmail_as: None,
                    }
                }),
            };
            Parsed::Deliver(a, mail, linux)
        }),
    };
    parsed.map_err(|e| args::usage_exit(e.format(&mut definition()), &argv))
}
