//! A reader's flag change on one message, found by its unique key: `+LETTERS`/`-LETTERS`
//! changes applied in order, the message moved into cur/ with a [`Move`] (never clobbering),
//! and, when another process renamed the message meanwhile, the changes re-applied to the
//! flags of its current name, so a concurrent reader's flag change is kept, not overwritten.

use crate::env::{Env, NoEnv};
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Dir, EntryName, Fs, Op, OpResult};
use crate::machine::scan::{Move, MOVE_ATTEMPTS};
use crate::machine::{run, Machine, Step};
use crate::maildir::flags::Flags;
use crate::maildir::name::{InfoSep, NameBuf, ParsedName, NAME_MAX};

/// One `+LETTERS` (add) or `-LETTERS` (remove) change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Change {
    /// Whether the letters are added (else removed).
    pub add: bool,
    /// The letters.
    pub flags: Flags,
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

/// How many passes over new/ and cur/ must all miss a key before [`find`] says it is absent.
pub const FIND_PASSES: u32 = MOVE_ATTEMPTS;

/// Finds the message with `key` in new/ then cur/: its place and its current name. A message
/// that another reader renames meanwhile (new/ to cur/, or within cur/ to change its flags)
/// can be missing from one listing (readdir promises nothing about entries renamed while it
/// runs), so a pass that misses is repeated, up to [`FIND_PASSES`] passes.
pub fn find<F: Fs + ?Sized>(
    fs: &mut F,
    key: &str,
    sep: InfoSep,
) -> Result<Option<(Dir, NameBuf)>, ErrorKind> {
    for _ in 0..FIND_PASSES {
        for dir in [Dir::New, Dir::Cur] {
            let mut stream = fs.open_dir(dir)?;
            let mut name = EntryName::new();
            while fs.read_dir(&mut stream, &mut name)? {
                let Ok(name) = core::str::from_utf8(&name) else {
                    continue; // not UTF-8: not a name we can be looking for
                };
                if ParsedName::parse(name, sep).is_ok_and(|p| p.key == key) {
                    let mut found = NameBuf::new();
                    let _ = found.push_str(name);
                    return Ok(Some((dir, found)));
                }
            }
        }
    }
    Ok(None)
}

/// Applies `changes` to the message found at `dir/name` (by [`find`]) and moves it into cur/;
/// returns its new name there. `NotFound` when it vanished for good, `Busy` when others
/// renamed it more than [`MOVE_ATTEMPTS`] times.
pub fn change_flags<F: Fs + ?Sized>(
    fs: &mut F,
    dir: Dir,
    name: &str,
    changes: &[Change],
    sep: InfoSep,
) -> Result<NameBuf, Error> {
    let noreplace = fs.capabilities().rename_noreplace;
    let (mut at_dir, mut at_name) = (dir, NameBuf::new());
    let _ = at_name.push_str(name);
    for _ in 0..MOVE_ATTEMPTS {
        let current = ParsedName::parse(&at_name, sep)
            .map(|p| p.flags)
            .unwrap_or_default();
        let mut watched = Watched {
            machine: Move::new(at_dir, &at_name, apply(current, changes), sep, noreplace),
            at: (at_dir, &at_name),
        };
        let mut buf = [0u8; NAME_MAX];
        match run(&mut watched, fs, &mut NoEnv, &mut &b""[..], &mut buf) {
            Ended::Moved(Ok(_)) => {
                let mut out = NameBuf::new();
                let _ = out.push_str(watched.machine.target());
                return Ok(out);
            }
            Ended::Moved(Err(e)) => return Err(e),
            // Someone renamed it: recompute the flags from its current name.
            Ended::RenamedMeanwhile(d, n) => (at_dir, at_name) = (d, n),
        }
    }
    Err(Error::new(ErrorKind::Busy, Phase::Publish))
}

/// How a [`Watched`] move ended.
// The name is held inline: the core has no allocator, and one value exists per move.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ended {
    /// The move's own result.
    Moved(Result<Dir, Error>),
    /// The message was found under another name: stopped before renaming it.
    RenamedMeanwhile(Dir, NameBuf),
}

/// A [`Move`] that stops, rather than rename the message from a name other than the one its
/// flags were computed from.
struct Watched<'a> {
    machine: Move,
    at: (Dir, &'a str),
}

impl Machine for Watched<'_> {
    type Output = Ended;
    fn poll(&self) -> Step<'_, Ended> {
        match self.machine.poll() {
            Step::Op(Op::Rename { from, .. }) if from != self.at => {
                let mut n = NameBuf::new();
                let _ = n.push_str(from.1);
                Step::Done(Ended::RenamedMeanwhile(from.0, n))
            }
            Step::Op(op) => Step::Op(op),
            Step::Done(r) => Step::Done(Ended::Moved(r)),
        }
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        Machine::feed(&mut self.machine, result, data, env)
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{setup, MemFs};
    use std::string::String;

    const NAME: &str = "1700000000.M1P1Q1.h,S=6:2,S";

    /// A maildir holding one message in cur/ that the first `misses` listings of cur/ miss,
    /// as listings do when other readers rename the entry while they run.
    fn racing(misses: u32) -> MemFs {
        let (mut fs, _env, _clock) = setup();
        fs.put(Dir::Cur, NAME, b"m\n\nb\n");
        fs.hide = Some((Dir::Cur, String::from(NAME), misses));
        fs
    }

    #[test]
    fn a_message_renamed_during_a_listing_is_found_on_a_later_pass() {
        let key = "1700000000.M1P1Q1.h,S=6";
        // Hidden from the first two listings of cur/ (two renames by concurrent readers).
        let mut fs = racing(2);
        let found = find(&mut fs, key, InfoSep::default()).unwrap();
        assert_eq!(
            found.map(|(d, n)| (d, String::from(n.as_str()))),
            Some((Dir::Cur, String::from(NAME)))
        );
        assert_eq!(fs.listings, 6, "three passes over new/ and cur/");
        // Missing from every pass: absent, after exactly FIND_PASSES passes.
        let mut fs = racing(u32::MAX);
        assert_eq!(find(&mut fs, key, InfoSep::default()), Ok(None));
        assert_eq!(fs.listings, 2 * FIND_PASSES);
    }

    #[test]
    fn changes_apply_in_order() {
        let c = |add, s| Change {
            add,
            flags: Flags::parse(s).unwrap(),
        };
        let f = apply(
            Flags::parse("FS").unwrap(),
            &[c(true, "RS"), c(false, "F"), c(true, "a")],
        );
        assert_eq!(f, Flags::parse("RSa").unwrap());
        assert_eq!(
            apply(f, &[c(false, "S"), c(true, "S")]),
            Flags::parse("RSa").unwrap()
        );
    }
}
