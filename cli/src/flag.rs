//! `mdeliver flag`: changes a message's flags with the core's [`Move`] (rename-noreplace, never
//! clobbering; found again by key if it moved). When the message turns out to have been
//! renamed by someone else meanwhile, the new flags are recomputed from its current name before
//! the rename, so a concurrent reader's flag change is kept rather than overwritten.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mdeliver_core::name::{InfoSep, NameBuf, ParsedName};
use mdeliver_core::scan::{perform_list, Move, MoveStep, MOVE_ATTEMPTS};
use mdeliver_core::{Dir, ErrorKind, Flags, Fs, Op, OpResult};

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

/// One `+LETTERS` or `-LETTERS` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Whether the letters are added (else removed).
    pub add: bool,
    /// The letters.
    pub flags: Flags,
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

/// The flags `current` becomes after `changes`, in order.
pub fn apply(current: Flags, changes: &[Change]) -> Flags {
    changes.iter().fold(current, |f, c| {
        if c.add {
            f.union(c.flags)
        } else {
            f.difference(c.flags)
        }
    })
}

/// Finds the message with `key` in new/ then cur/; its place and current name.
fn find(fs: &mut LinuxFs, key: &str, sep: InfoSep) -> Result<Option<(Dir, String)>, ErrorKind> {
    for dir in [Dir::New, Dir::Cur] {
        let mut stream = fs.open_dir(dir)?;
        let mut name = NameBuf::new();
        while fs.read_dir(&mut stream, &mut name)? {
            if ParsedName::parse(&name, sep).is_ok_and(|p| p.key == key) {
                return Ok(Some((dir, name.to_string())));
            }
        }
    }
    Ok(None)
}

/// Why a flag change failed.
enum Failed {
    NotFound,
    Kind(ErrorKind),
}

/// Renames the message with `key` to its changed flags; returns its new name in cur/.
fn change(fs: &mut LinuxFs, key: &str, changes: &[Change], sep: InfoSep) -> Result<String, Failed> {
    let noreplace = fs.capabilities().rename_noreplace;
    let mut at = find(fs, key, sep)
        .map_err(Failed::Kind)?
        .ok_or(Failed::NotFound)?;
    for _ in 0..MOVE_ATTEMPTS {
        let current = ParsedName::parse(&at.1, sep)
            .map(|p| p.flags)
            .unwrap_or_default();
        let mut machine = Move::new(at.0, &at.1, apply(current, changes), sep, noreplace);
        let mut stream = None;
        let mut name = NameBuf::new();
        let mut moved_meanwhile = None;
        let done = loop {
            match machine.poll() {
                MoveStep::Op(op) => {
                    let r = match op {
                        Op::Rename { from, .. } if from != (at.0, at.1.as_str()) => {
                            // Someone renamed it: recompute the flags from its current name.
                            moved_meanwhile = Some((from.0, from.1.to_owned()));
                            break None;
                        }
                        Op::Rename {
                            from,
                            to,
                            noreplace,
                        } => fs.rename(from, to, noreplace).err(),
                        Op::Stat { dir, name } => match fs.stat(dir, name) {
                            Ok(s) => {
                                machine.feed(OpResult::Stat(s));
                                continue;
                            }
                            Err(e) => Some(e),
                        },
                        _ => Some(ErrorKind::Unsupported),
                    };
                    machine.feed(r.map_or(OpResult::Done, OpResult::Err));
                }
                MoveStep::List(op) => {
                    let r = perform_list(fs, &mut stream, op, &mut name);
                    machine.feed_list(r, &name);
                }
                MoveStep::Done(r) => break Some(r),
            }
        };
        match done {
            Some(Ok(_)) => return Ok(machine.target().to_owned()),
            Some(Err(e)) if e.kind == ErrorKind::NotFound => return Err(Failed::NotFound),
            Some(Err(e)) => return Err(Failed::Kind(e.kind)),
            None => at = moved_meanwhile.expect("set before breaking"),
        }
    }
    Err(Failed::Kind(ErrorKind::Busy))
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
        Err(f) => {
            eprintln!("mdeliver: {who}: {}", f.message);
            return ExitCode::from(f.code);
        }
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
            println!("{}", a.maildir.join("cur").join(name).display());
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
