//! The delivery form's mail options (`-M`, `--mbox-quoting`, `-X`, `--folder`,
//! `--info-separator`, and the MTA options of `mta_args.rs`). Part of the one shared command
//! line: [`crate::args::command`] adds them to [`Args`](crate::args::Args), and the WASI module
//! uses this file too.

use std::ffi::OsString;

use mdeliver_core::machine::deliver::{Durability, Options};
use mdeliver_core::maildir::folder::NameEncoding;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::mbox::Quoting;
use mdeliver_core::Flags;

// The mail options of the delivery form. (A plain comment: a doc comment would become the
// whole command's description when these are added to it.)
#[derive(Debug, Clone, clap::Args)]
pub struct MailArgs {
    /// The input is an mbox: deliver every message in it into the one MAILDIR (see MBOX
    /// IMPORT in --help)
    // An import is not an MTA's delivery: refuse the MTA options rather than ignore them.
    #[arg(short = 'M', long, conflicts_with_all = MTA_ONLY)]
    pub mbox: bool,

    /// How quoted "From " lines in mbox bodies are read back (with -M; see MBOX IMPORT)
    #[arg(long, value_name = "STYLE", value_enum, default_value_t = MboxQuoting::Mboxrd)]
    pub mbox_quoting: MboxQuoting,

    /// Deliver into cur/ with these flags (letters, e.g. "SF"; stored sorted, once each);
    /// without -X messages go to new/ with no info. With -M, added to each message's Status:
    #[arg(short = 'X', long, value_name = "FLAGS", value_parser = parse_flags)]
    pub flags: Option<Flags>,

    /// Deliver into the Maildir++ subfolder NAME of each MAILDIR ("A/B" or "A.B" is the
    /// directory .A.B, with a maildirfolder marker); -c creates it (see FOLDERS)
    #[arg(long, value_name = "NAME")]
    pub folder: Option<OsString>,

    /// Folder names in modified UTF-7, as Dovecot and Courier store them ("Entwürfe" is
    /// .Entw&APw-rfe), or in UTF-8 (Dovecot's :UTF-8 layout)
    #[arg(long, value_name = "ENC", value_enum, default_value_t = FolderEncoding::Utf7)]
    pub folder_encoding: FolderEncoding,

    /// Deliver into MAILDIR itself when the --folder is missing (without -c) or refused
    #[arg(long)]
    pub folder_fallback: bool,

    /// Do not subscribe the folders -c creates (see FLAGS AND FOLDERS)
    #[arg(long)]
    pub no_subscribe: bool,

    /// The character between a message's unique name and its flags: ":" (the default), or
    /// ";" or "!" for maildirs shared with FAT, Windows or Android
    #[arg(long, value_name = "C", default_value = ":", value_parser = parse_info_sep)]
    pub info_separator: InfoSep,

    // The MTA integration options (envelope, quota, duplicates, reporting).
    #[command(flatten)]
    pub mta: crate::mta_args::MtaArgs,
}

/// The manual's MBOX IMPORT and FLAGS AND FOLDERS sections (shared: [`crate::args::shared_help`]).
pub const MAIL_HELP: &str = "\
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
  Messages are flushed 64 at a time (one syncfs of the filesystem on Linux 5.8 and later, \
where it reports write errors; else one by one), each before it is named; new/ and cur/ are \
flushed once per 1024 messages, and a message is reported delivered (printed with -v) only \
after that. If a message fails, the import stops there and the later ones of its 64 are \
removed unnamed. -v also prints a summary \
(count, bytes, rate) on standard error. On a terminal, a progress bar shows on standard error.
  An import is not an MTA's delivery: -M refuses the envelope, duplicate, dry-run, JSON and \
--quota-full options (exit 64). It keeps the Maildir++ quota as a delivery does (the top \
maildir's maildirsize, with or without --quota, which sets the limit): each window of \
messages is counted with one flushed line before its messages are named, and the first \
message that does not fit stops the import (exit 75, 4.2.2, with its offset), with nothing \
of it stored. With --no-fsync messages are counted after they are named, so the last one \
may go over.
  A message consisting of nothing but its \"From \" line is skipped with a warning. A \
malformed mbox (not starting with \"From \", an envelope line over 1024 bytes) stops the \
import with an error naming the byte offset: every message before it stays delivered, the \
count is reported, and the exit status is 65 (EX_DATAERR: running it again cannot succeed; \
fix the input, then import the rest, from that offset on). Every other stop (disk full, a \
read error, a failed flush) ends the same way, with an RFC 3463 status line, the delivery \
form's exit code (75: disk full and the like) and the byte offset where the rest of the \
input begins: once the cause is fixed, `tail -c +OFFSET+1 MBOX | mdeliver -M ...` imports \
the rest without storing a message twice (after a failed directory flush the unflushed \
messages are redone).

FLAGS AND FOLDERS
  -X FLAGS delivers into cur/ as NAME:2,FLAGS (letters sorted, each once); without -X a message \
goes to new/ with no info part, as the Maildir specification says. --info-separator C uses C \
instead of \":\" (\";\" or \"!\" on FAT, Windows or Android-shared maildirs), also for the \
subcommands.
  --folder NAME delivers into the Maildir++ subfolder: \"A/B\", \"A.B\" and \"INBOX.A.B\" \
all mean the directory .A.B inside MAILDIR (\"INBOX\" or \"\" is MAILDIR itself). Names \
containing \"..\", starting with \".\", with an empty level, a control character or the \
info separator are refused as usage errors. Levels are written in modified UTF-7 (RFC 3501) \
unless --folder-encoding=utf8. With -c a missing folder is created together with its tmp/, new/, cur/ and the \
empty maildirfolder marker: built inside MAILDIR/tmp/, flushed, and renamed into place without \
ever replacing anything, so no reader sees it half-made and concurrent creators agree; MAILDIR \
is flushed afterwards. The Linux binary subscribes a folder -c creates (unless \
--no-subscribe) in Dovecot's MAILDIR/subscriptions and Courier's courierimapsubscribed (where \
it exists), under their lock file NAME.lock. --folder-fallback delivers into MAILDIR itself \
when the folder is missing and -c is not given, or its name is refused.";

/// Every option at its command-line default: a plain delivery into the MAILDIRs.
impl Default for MailArgs {
    fn default() -> MailArgs {
        MailArgs {
            mbox: false,
            mbox_quoting: MboxQuoting::Mboxrd,
            flags: None,
            folder: None,
            folder_encoding: FolderEncoding::Utf7,
            folder_fallback: false,
            no_subscribe: false,
            info_separator: InfoSep::COLON,
            mta: crate::mta_args::MtaArgs::default(),
        }
    }
}

impl MailArgs {
    /// The core's delivery options for this command line: `durable` unless `--no-fsync`
    /// (`no_fsync`), with the `-X` flags and the info separator.
    pub fn delivery(&self, no_fsync: bool, durable: Durability) -> Options {
        Options {
            durability: if no_fsync { Durability::None } else { durable },
            flags: self.flags,
            sep: self.info_separator,
            ..Options::default()
        }
    }
}

/// The options of one MTA delivery, which `-M` refuses (an mbox import stores the messages as
/// they are: no envelope fields, loop check, duplicate index, dry run or JSON report; the
/// Maildir++ quota is kept, `--quota` included, but over quota an import stops: no
/// `--quota-full`).
const MTA_ONLY: [&str; 9] = [
    "keep_from_line",
    "return_path",
    "delivered_to",
    "original_to",
    "from_env",
    "quota_full",
    "dedup",
    "dry_run",
    "json",
];

/// How folder names are written (the core's [`NameEncoding`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FolderEncoding {
    /// Modified UTF-7 (RFC 3501)
    Utf7,
    /// UTF-8 as given
    Utf8,
}

impl FolderEncoding {
    /// The core's encoding.
    pub fn core(self) -> NameEncoding {
        match self {
            FolderEncoding::Utf7 => NameEncoding::Utf7,
            FolderEncoding::Utf8 => NameEncoding::Utf8,
        }
    }
}

/// How `>From ` quoting in mbox bodies is undone (the core's [`Quoting`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MboxQuoting {
    /// Remove one ">" from every line matching ">+From " (mboxrd; the default)
    Mboxrd,
    /// Remove the ">" from lines starting with exactly ">From " (mboxo)
    Mboxo,
    /// Keep every line as stored
    Raw,
}

impl MboxQuoting {
    /// The core's quoting convention.
    pub fn core(self) -> Quoting {
        match self {
            MboxQuoting::Mboxrd => Quoting::Mboxrd,
            MboxQuoting::Mboxo => Quoting::Mboxo,
            MboxQuoting::Raw => Quoting::Raw,
        }
    }
}

/// Parses `-X FLAGS`: ASCII letters only.
pub fn parse_flags(s: &str) -> Result<Flags, String> {
    Flags::parse(s).map_err(|b| {
        format!(
            "flags are ASCII letters (D F P R S T, or lowercase keywords); found {:?}",
            b.0 as char
        )
    })
}

/// Parses `--info-separator C`: one of `:`, `;`, `!`.
pub fn parse_info_sep(s: &str) -> Result<InfoSep, String> {
    match s.as_bytes() {
        [c] => InfoSep::new(*c),
        _ => None,
    }
    .ok_or_else(|| "the info separator is one character: \":\", \";\" or \"!\"".to_owned())
}
