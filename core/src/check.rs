//! What a maildir health check reports about one directory entry (`mdeliver check`): stale
//! files in tmp/, names that cannot be messages, info on names in new/, and anything that is
//! not a regular file. Duplicate keys need the whole listing, so the driver finds those (with
//! [`crate::scan::KeySet`]-like storage of its own) and confirms them with a second `stat`,
//! because a message renamed during the listing is seen under two names without being a
//! duplicate.

use crate::fs::Dir;
use crate::name::{InfoSep, ParsedName};

/// A tmp/ file untouched this long is abandoned: the Maildir specification's 36 hours.
pub const STALE_TMP_SECS: u64 = 36 * 3600;

/// What kind of directory entry a name is (as `lstat` says: links are not followed).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    Regular,
    /// A symbolic link.
    Symlink,
    /// A directory.
    Directory,
    /// A FIFO, socket or device.
    Other,
}

/// One problem with one entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Finding {
    /// A tmp/ file older than [`STALE_TMP_SECS`] (a crashed or killed delivery); safe to
    /// remove. Carries its age in seconds.
    StaleTmp(u64),
    /// A name in new/ or cur/ that cannot be a message name (a dot file, an empty key).
    Unparsable,
    /// A name in new/ that carries info (`:2,...`): new/ names must not, and readers that move
    /// new/→cur/ may append a second info part.
    InfoInNew,
    /// Not a regular file: readers would fail on it or follow it out of the maildir.
    NotRegular(EntryKind),
}

impl Finding {
    /// Whether `check --repair` removes the entry (only stale regular tmp/ files: nothing else
    /// can be removed without risking mail).
    pub const fn repairable(&self) -> bool {
        matches!(self, Finding::StaleTmp(_))
    }
}

/// Classifies `dir/name` of kind `kind`, last modified at `mtime` (seconds), at time `now`.
/// `None`: nothing to report.
pub fn classify(
    dir: Dir,
    name: &str,
    kind: EntryKind,
    mtime: u64,
    now: u64,
    sep: InfoSep,
) -> Option<Finding> {
    if kind != EntryKind::Regular {
        return Some(Finding::NotRegular(kind));
    }
    match dir {
        Dir::Tmp => {
            let age = now.saturating_sub(mtime);
            (age > STALE_TMP_SECS).then_some(Finding::StaleTmp(age))
        }
        Dir::New | Dir::Cur => match ParsedName::parse(name, sep) {
            Err(_) => Some(Finding::Unparsable),
            Ok(p) if dir == Dir::New && p.has_info() => Some(Finding::InfoInNew),
            Ok(_) => None,
        },
        Dir::Root => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 2_000_000_000;

    fn c(dir: Dir, name: &str, kind: EntryKind, age: u64) -> Option<Finding> {
        classify(dir, name, kind, NOW - age, NOW, InfoSep::COLON)
    }

    #[test]
    fn tmp_is_stale_after_36_hours_only() {
        assert_eq!(c(Dir::Tmp, "x", EntryKind::Regular, STALE_TMP_SECS), None);
        assert_eq!(
            c(Dir::Tmp, "x", EntryKind::Regular, STALE_TMP_SECS + 1),
            Some(Finding::StaleTmp(STALE_TMP_SECS + 1))
        );
        // A clock step backwards makes nothing stale.
        assert_eq!(
            classify(
                Dir::Tmp,
                "x",
                EntryKind::Regular,
                NOW + 5,
                NOW,
                InfoSep::COLON
            ),
            None
        );
        assert!(Finding::StaleTmp(1).repairable());
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(c(Dir::New, "1.M2P3.h", EntryKind::Regular, 0), None);
        assert_eq!(c(Dir::Cur, "1.M2P3.h:2,S", EntryKind::Regular, 0), None);
        assert_eq!(
            c(Dir::New, "1.M2P3.h:2,", EntryKind::Regular, 0),
            Some(Finding::InfoInNew)
        );
        assert_eq!(
            c(Dir::Cur, ".hidden", EntryKind::Regular, 0),
            Some(Finding::Unparsable)
        );
        assert_eq!(
            c(Dir::Cur, ":2,S", EntryKind::Regular, 0),
            Some(Finding::Unparsable)
        );
        let semi = InfoSep::new(b';').unwrap();
        assert_eq!(
            classify(Dir::New, "a:2,S", EntryKind::Regular, 0, 0, semi),
            None
        );
        assert_eq!(
            classify(Dir::New, "a;2,S", EntryKind::Regular, 0, 0, semi),
            Some(Finding::InfoInNew)
        );
        for k in [EntryKind::Symlink, EntryKind::Directory, EntryKind::Other] {
            let f = c(Dir::Cur, "1.M2P3.h:2,S", k, 0);
            assert_eq!(f, Some(Finding::NotRegular(k)));
            assert!(!f.unwrap().repairable());
            assert_eq!(
                c(Dir::Tmp, "x", k, STALE_TMP_SECS * 2),
                Some(Finding::NotRegular(k))
            );
        }
    }
}
