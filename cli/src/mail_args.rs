//! The delivery form's mail options (`-M`, `--mbox-quoting`, `-X`, `--folder`,
//! `--info-separator`, and the MTA options of `mta_args.rs`). Part of the one shared command
//! line: [`crate::args::command`] adds them to [`Args`](crate::args::Args), and the WASI module
//! includes this file too.

use std::ffi::OsString;

use mdeliver_core::mbox::Quoting;
use mdeliver_core::name::InfoSep;
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

    /// The character between a message's unique name and its flags: ":" (the default), or
    /// ";" or "!" for maildirs shared with FAT, Windows or Android
    #[arg(long, value_name = "C", default_value = ":", value_parser = parse_info_sep)]
    pub info_separator: InfoSep,

    // The MTA integration options (envelope, quota, duplicates, reporting).
    #[command(flatten)]
    pub mta: crate::mta_args::MtaArgs,
}

/// The options of one MTA delivery, which `-M` refuses (an mbox import stores the messages as
/// they are: no envelope fields, loop check, quota, duplicate index, dry run or JSON report).
const MTA_ONLY: [&str; 10] = [
    "keep_from_line",
    "return_path",
    "delivered_to",
    "original_to",
    "from_env",
    "quota",
    "quota_full",
    "dedup",
    "dry_run",
    "json",
];

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
