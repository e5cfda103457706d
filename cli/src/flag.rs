//! `mdeliver flag`: parses the `+LETTERS`/`-LETTERS` changes and has the core's
//! `flagchange` (`mdeliver_core::machine::flagchange`) find the message by key and move it
//! into cur/ with the changed flags (rename-noreplace, never clobbering; when someone else
//! renamed it meanwhile, the changes are re-applied to its current flags). Only translation
//! here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mdeliver_core::machine::flagchange::{self, Change};
use mdeliver_core::maildir::name::{InfoSep, NameBuf, ParsedName};
use mdeliver_core::{Dir, ErrorKind, Fs};

use crate::exit;
use crate::linux::LinuxFs;
use crate::mail_args::parse_info_sep;
use crate::reader;

const ABOUT: &str = "Change a message's flags (moving it from new/ to cur/), never clobbering";

const LONG_ABOUT: &str = "\
Change a message's flags (moving it from new/ to cur/), never clobbering.

KEY is the message's unique name: its file name without the info part (\":2,...\"); a whole \
file name or a path to the file is accepted too. Each change is +LETTERS (add) or -LETTERS \
(remove); flags are ASCII letters (D draft, F flagged, P passed, R replied, S seen, T trashed, \
lowercase letters are keywords). With no change the message is just moved to cur/ (\"seen by a \
reader\", flags kept).

The message is renamed into cur/ as KEY:2,FLAGS (letters sorted, once each) with a rename that \
refuses to replace an existing file (renameat2 RENAME_NOREPLACE; where the filesystem lacks it, \
the target is checked first). If another process renamed the message meanwhile, it is found \
again by KEY in new/ and cur/ and the change is applied to its current flags, so neither \
change is lost and the message never is. The new path is printed on standard output.";

const AFTER_LONG_HELP: &str = "\
EXIT STATUS
   0  done (also when the flags already were as asked)
  64  usage error: a change that is not +LETTERS or -LETTERS, an unparsable KEY
  66  no message with this KEY in new/ or cur/, or the maildir is missing
  75  the message kept moving; or a temporary error
  77  permission denied

EXAMPLES
  Mark a message seen and unflag it:
      mdeliver flag ~/Maildir 1764352989.M123P42Q0R0123456789abcdef.host,S=1234 +S -F";

/// `mdeliver flag` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    max_term_width = 100
)]
pub struct FlagArgs {
    /// The character between a message's unique name and its flags (":", ";" or "!")
    #[arg(long, value_name = "C", default_value = ":", value_parser = parse_info_sep)]
    pub info_separator: InfoSep,

    /// Do not fsync cur/ (and new/) after the rename
    #[arg(long)]
    pub no_fsync: bool,

    /// The maildir
    #[arg(value_name = "MAILDIR")]
    pub maildir: PathBuf,

    /// The message's unique key (or its file name, or a path to it)
    #[arg(value_name = "KEY")]
    pub key: String,

    /// Changes: +LETTERS to add, -LETTERS to remove (after KEY, "-S" is a change, not an
    /// option)
    #[arg(
        value_name = "CHANGE",
        allow_hyphen_values = true,
        trailing_var_arg = true,
        value_parser = parse_change
    )]
    pub changes: Vec<Change>,
}

fn parse_change(s: &str) -> Result<Change, String> {
    let (add, rest) = match s.as_bytes().first() {
        Some(b'+') => (true, &s[1..]),
        Some(b'-') => (false, &s[1..]),
        _ => return Err("a change is +LETTERS (add) or -LETTERS (remove), e.g. +S -F".into()),
    };
    if rest.is_empty() {
        return Err("no flag letters after the sign".into());
    }
    let flags = crate::mail_args::parse_flags(rest)?;
    Ok(Change { add, flags })
}

/// Why a flag change failed.
enum Failed {
    NotFound,
    Kind(ErrorKind),
}

/// Finds the message with `key` and has the core change its flags; its new name in cur/.
fn change(
    fs: &mut LinuxFs,
    key: &str,
    changes: &[Change],
    sep: InfoSep,
) -> Result<NameBuf, Failed> {
    let (dir, name) = flagchange::find(fs, key, sep)
        .map_err(Failed::Kind)?
        .ok_or(Failed::NotFound)?;
    match flagchange::change_flags(fs, dir, &name, changes, sep) {
        Ok(name) => Ok(name),
        Err(e) if e.kind == ErrorKind::NotFound => Err(Failed::NotFound),
        Err(e) => Err(Failed::Kind(e.kind)),
    }
}

/// The key of `arg`: a key, a file name or a path.
fn key_of(arg: &str, sep: InfoSep) -> Option<&str> {
    let base = Path::new(arg).file_name()?.to_str()?;
    ParsedName::parse(base, sep).ok().map(|p| p.key)
}

/// Runs `mdeliver flag`.
pub fn run(a: &FlagArgs) -> ExitCode {
    let who = a.maildir.display();
    let Some(key) = key_of(&a.key, a.info_separator) else {
        eprintln!(
            "mdeliver: {who}: \"{}\" is not a message key (a file name in new/ or cur/ \
             without its info part)",
            a.key
        );
        return ExitCode::from(exit::USAGE);
    };
    let mut fs = match reader::open(&a.maildir) {
        Ok(fs) => fs,
        Err(code) => return code,
    };
    match change(&mut fs, key, &a.changes, a.info_separator) {
        Ok(name) => {
            if !a.no_fsync {
                for dir in [Dir::Cur, Dir::New] {
                    if let Err(e) = fs.sync_dir(dir) {
                        eprintln!("mdeliver: {who}: flushing {}/: {e}", dir.as_str());
                        return ExitCode::from(reader::code(e));
                    }
                }
            }
            println!("{}", a.maildir.join("cur").join(name.as_str()).display());
            ExitCode::SUCCESS
        }
        Err(Failed::NotFound) => {
            eprintln!("mdeliver: {who}: no message with key {key} in new/ or cur/");
            ExitCode::from(exit::NOINPUT)
        }
        Err(Failed::Kind(ErrorKind::Busy)) => {
            eprintln!(
                "mdeliver: {who}: message {key} kept being renamed by another process; try again"
            );
            ExitCode::from(exit::TEMPFAIL)
        }
        Err(Failed::Kind(kind)) => {
            eprintln!("mdeliver: {who}: renaming message {key}: {kind}");
            ExitCode::from(reader::code(kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdeliver_core::machine::flagchange::apply;
    use mdeliver_core::Flags;

    #[test]
    fn changes_apply_in_order() {
        let c = |s| parse_change(s).unwrap();
        let f = apply(Flags::parse("FS").unwrap(), &[c("+RS"), c("-F"), c("+a")]);
        assert_eq!(f.to_string(), "RSa");
        assert_eq!(apply(f, &[c("-S"), c("+S")]).to_string(), "RSa");
        assert!(parse_change("S").is_err());
        assert!(parse_change("+").is_err());
        assert!(parse_change("+1").is_err());
    }

    #[test]
    fn keys_from_names_and_paths() {
        let s = InfoSep::COLON;
        assert_eq!(key_of("1.M2.h,S=3", s), Some("1.M2.h,S=3"));
        assert_eq!(key_of("1.M2.h,S=3:2,FS", s), Some("1.M2.h,S=3"));
        assert_eq!(key_of("/m/cur/1.M2.h:2,S", s), Some("1.M2.h"));
        assert_eq!(key_of(".hidden", s), None);
    }
}
