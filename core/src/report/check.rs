//! What a maildir health check reports (`mdeliver check`): about one directory entry (stale
//! files in tmp/, a dead deliverer's leftovers of the maildir lock in the maildir itself,
//! names that cannot be messages, info on names in new/, anything that is not a regular file:
//! [`classify`]), and about the whole listing: names in new/ and cur/ that share
//! a unique key ([`duplicates`]). The core has no allocator, so the driver holds the listing
//! (a slice of [`Listed`] names) and lends it; it also confirms each duplicate with a second
//! `stat` of both names, because a message renamed during the listing is seen under two names
//! without being a duplicate.

use crate::fs::Dir;
use crate::machine::deliver::LOCK_NAME;
use crate::maildir::name::{InfoSep, ParsedName};

/// A tmp/ file untouched this long is abandoned: the Maildir specification's 36 hours.
pub const STALE_TMP_SECS: u64 = 36 * 3600;

/// When an entry last changed, as `lstat` says (seconds since the epoch).
///
/// A tmp/ file is judged by the later of the two. The modification time alone is not enough:
/// a writer may set it to any date, and `mdeliver -M` sets each message's to its `Date:`
/// before publishing it, so a message being imported can look years old while it is being
/// written. The status-change time cannot be set by any process (setting the modification
/// time moves it to now), so it keeps an in-flight file young.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Times {
    /// The modification time (`st_mtime`).
    pub mtime: u64,
    /// The status-change time (`st_ctime`).
    pub ctime: u64,
}

impl Times {
    /// The last time anything changed the entry.
    pub const fn touched(&self) -> u64 {
        if self.mtime > self.ctime {
            self.mtime
        } else {
            self.ctime
        }
    }
}

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
    /// A leftover of the `Locked` strategy's maildir lock in the maildir itself, as old: a
    /// dead deliverer's unique lock name, or a claim to break a stale lock
    /// ([`LOCK_BREAK_PREFIX`](crate::machine::deliver::LOCK_BREAK_PREFIX)). No live deliverer
    /// keeps either that long (a lock is stale after minutes), so it is safe to remove. The
    /// lock itself is never one: only a deliverer's claim may break it. Carries its age.
    StaleLock(u64),
    /// A name in new/ or cur/ that cannot be a message name (a dot file, an empty key).
    Unparsable,
    /// Not a regular file: readers would fail on it or follow it out of the maildir.
    NotRegular(EntryKind),
}

impl Finding {
    /// Whether `check --repair` removes the entry (only stale regular tmp/ files and lock
    /// leftovers: nothing else can be removed without risking mail).
    pub const fn repairable(&self) -> bool {
        matches!(self, Finding::StaleTmp(_) | Finding::StaleLock(_))
    }
}

/// Whether [`classify`] looks at `name` in the maildir itself (its root holds folders,
/// `maildirsize`, the duplicate index and readers' files, none of them checked): the lock's
/// leftovers, `mdeliver.lock.*`.
pub fn checked_in_root(name: &str) -> bool {
    name.strip_prefix(LOCK_NAME)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
}

/// Classifies `dir/name` of kind `kind`, last changed at `times`, at time `now` (seconds).
/// `None`: nothing to report.
pub fn classify(
    dir: Dir,
    name: &str,
    kind: EntryKind,
    times: Times,
    now: u64,
    sep: InfoSep,
) -> Option<Finding> {
    let age = now.saturating_sub(times.touched());
    if dir == Dir::Root {
        let stale = checked_in_root(name) && kind == EntryKind::Regular && age > STALE_TMP_SECS;
        return stale.then_some(Finding::StaleLock(age));
    }
    if kind != EntryKind::Regular {
        return Some(Finding::NotRegular(kind));
    }
    match dir {
        Dir::Tmp => (age > STALE_TMP_SECS).then_some(Finding::StaleTmp(age)),
        Dir::New | Dir::Cur => match ParsedName::parse(name, sep) {
            Err(_) => Some(Finding::Unparsable),
            // A name in new/ may carry info: Dovecot gives a message flags there without
            // moving it (`doveadm flags add`), and readers handle it.
            Ok(_) => None,
        },
        Dir::Root | Dir::Top => None,
    }
}

/// A name that new/ or cur/ listed and [`classify`] found nothing wrong with: one candidate for
/// the duplicate-key search.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Listed<'a> {
    dir: Dir,
    name: &'a str,
    key: &'a str,
    /// The earliest listed name with the same key, once [`duplicates`] has looked.
    first: Option<(Dir, &'a str)>,
}

impl<'a> Listed<'a> {
    /// `dir/name` as a candidate; `None` outside new/ and cur/ (tmp/ files are not messages
    /// yet) and for a name that cannot be a message (it has no key).
    pub fn new(dir: Dir, name: &'a str, sep: InfoSep) -> Option<Listed<'a>> {
        if !matches!(dir, Dir::New | Dir::Cur) {
            return None;
        }
        let key = ParsedName::parse(name, sep).ok()?.key;
        Some(Listed {
            dir,
            name,
            key,
            first: None,
        })
    }

    /// The directory the name was listed in.
    pub const fn dir(&self) -> Dir {
        self.dir
    }

    /// The file name.
    pub const fn name(&self) -> &'a str {
        self.name
    }
}

/// A name whose unique key an earlier name of the listing already has: two files for one
/// message, or two messages claiming one key. Both are kept; a person compares them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Duplicate<'a> {
    /// Where the later name is.
    pub dir: Dir,
    /// The later name.
    pub name: &'a str,
    /// Where the earliest name with the same key is.
    pub first_dir: Dir,
    /// The earliest name with the same key.
    pub first_name: &'a str,
}

/// The listing order: new/ before cur/ (a reader moves messages that way, so a move during the
/// listing is seen at least once), by name within each.
fn listing_order(a: &Listed<'_>, b: &Listed<'_>) -> core::cmp::Ordering {
    (a.dir, a.name).cmp(&(b.dir, b.name))
}

/// Finds the names in `listed` whose unique key an earlier name (in listing order: new/, then
/// cur/, by name) already has, each paired with the earliest name of its key; a key listed
/// three times gives two pairs, both naming the same first. Puts `listed` in listing order
/// (in place, no allocation, O(n log n)) and yields the pairs in that order.
pub fn duplicates<'s, 'a>(
    listed: &'s mut [Listed<'a>],
) -> impl Iterator<Item = Duplicate<'a>> + 's {
    listed.sort_unstable_by(|a, b| a.key.cmp(b.key).then_with(|| listing_order(a, b)));
    let mut group: Option<(&'a str, Dir, &'a str)> = None;
    for l in listed.iter_mut() {
        l.first = match group {
            Some((key, dir, name)) if key == l.key => Some((dir, name)),
            _ => {
                group = Some((l.key, l.dir, l.name));
                None
            }
        };
    }
    listed.sort_unstable_by(listing_order);
    listed.iter().filter_map(|l| {
        l.first.map(|(first_dir, first_name)| Duplicate {
            dir: l.dir,
            name: l.name,
            first_dir,
            first_name,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 2_000_000_000;

    fn c(dir: Dir, name: &str, kind: EntryKind, age: u64) -> Option<Finding> {
        let t = NOW - age;
        classify(
            dir,
            name,
            kind,
            Times { mtime: t, ctime: t },
            NOW,
            InfoSep::COLON,
        )
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
                Times {
                    mtime: NOW + 5,
                    ctime: NOW + 5
                },
                NOW,
                InfoSep::COLON
            ),
            None
        );
        assert!(Finding::StaleTmp(1).repairable());
    }

    #[test]
    fn in_the_maildir_only_old_lock_leftovers_are_found_never_the_lock() {
        let old = STALE_TMP_SECS + 1;
        let unique = "mdeliver.lock.1700000000.M5P77Q1R00abcd.box";
        let claim = "mdeliver.lock.break.1700000000.1700000400";
        for name in [unique, claim] {
            assert_eq!(
                c(Dir::Root, name, EntryKind::Regular, old),
                Some(Finding::StaleLock(old))
            );
            assert_eq!(c(Dir::Root, name, EntryKind::Regular, STALE_TMP_SECS), None);
            assert_eq!(c(Dir::Root, name, EntryKind::Directory, old), None);
        }
        // The lock, folders, the quota file, the index and anything else: not looked at.
        for name in [
            "mdeliver.lock",
            "mdeliver.lock.",
            ".Sent",
            "maildirsize",
            "x",
        ] {
            assert!(!checked_in_root(name), "{name}");
            assert_eq!(c(Dir::Root, name, EntryKind::Regular, old), None);
            assert_eq!(c(Dir::Root, name, EntryKind::Directory, old), None);
        }
        assert!(Finding::StaleLock(old).repairable());
    }

    #[test]
    fn a_backdated_file_is_young_while_its_status_change_is() {
        // `-M` sets a message's mtime to its Date: (years ago) before publishing it; the
        // kernel moved its ctime to now when it did.
        let importing = Times {
            mtime: NOW - 10 * 365 * 86400,
            ctime: NOW - 2,
        };
        let tmp = |t| classify(Dir::Tmp, "x", EntryKind::Regular, t, NOW, InfoSep::COLON);
        assert_eq!(tmp(importing), None);
        // Abandoned only when both are old: the later one decides the age.
        let old = NOW - STALE_TMP_SECS - 60;
        let abandoned = Times {
            mtime: old - 86400,
            ctime: old,
        };
        assert_eq!(tmp(abandoned), Some(Finding::StaleTmp(STALE_TMP_SECS + 60)));
        let written_later = Times {
            mtime: NOW - 60,
            ctime: old,
        };
        assert_eq!(tmp(written_later), None);
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(c(Dir::New, "1.M2P3.h", EntryKind::Regular, 0), None);
        assert_eq!(c(Dir::Cur, "1.M2P3.h:2,S", EntryKind::Regular, 0), None);
        assert_eq!(c(Dir::New, "1.M2P3.h:2,S", EntryKind::Regular, 0), None);
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
            classify(
                Dir::New,
                "a:2,S",
                EntryKind::Regular,
                Times { mtime: 0, ctime: 0 },
                0,
                semi
            ),
            None
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

    fn listed<'a>(names: &[(Dir, &'a str)], sep: InfoSep) -> std::vec::Vec<Listed<'a>> {
        names
            .iter()
            .filter_map(|&(d, n)| Listed::new(d, n, sep))
            .collect()
    }

    fn pairs(names: &[(Dir, &str)], sep: InfoSep) -> std::vec::Vec<std::string::String> {
        let mut l = listed(names, sep);
        duplicates(&mut l)
            .map(|d| {
                std::format!(
                    "{}/{} also {}/{}",
                    d.dir.as_str(),
                    d.name,
                    d.first_dir.as_str(),
                    d.first_name
                )
            })
            .collect()
    }

    #[test]
    fn candidates_are_message_names_in_new_and_cur() {
        let sep = InfoSep::COLON;
        assert!(Listed::new(Dir::Tmp, "1.M2P3.h", sep).is_none());
        assert!(Listed::new(Dir::Root, "1.M2P3.h", sep).is_none());
        assert!(Listed::new(Dir::Cur, ".hidden", sep).is_none());
        assert!(Listed::new(Dir::Cur, ":2,S", sep).is_none());
        let l = Listed::new(Dir::Cur, "1.M2P3.h:2,S", sep).unwrap();
        assert_eq!((l.dir(), l.name()), (Dir::Cur, "1.M2P3.h:2,S"));
    }

    #[test]
    fn no_duplicates_in_distinct_keys() {
        let sep = InfoSep::COLON;
        assert!(pairs(&[], sep).is_empty());
        let names = [
            (Dir::New, "1.M1P1.h"),
            (Dir::New, "2.M1P1.h"),
            (Dir::Cur, "3.M1P1.h:2,S"),
            (Dir::Cur, "1.M1P1.h,S=3:2,S"), // a longer key, not the same one
        ];
        assert!(pairs(&names, sep).is_empty());
    }

    #[test]
    fn a_key_in_new_and_cur_is_a_duplicate_of_the_new_name() {
        let names = [
            (Dir::Cur, "1.M1P1Q1.h,S=3:2,S"),
            (Dir::New, "1.M1P1Q1.h,S=3"),
        ];
        assert_eq!(
            pairs(&names, InfoSep::COLON),
            ["cur/1.M1P1Q1.h,S=3:2,S also new/1.M1P1Q1.h,S=3"]
        );
    }

    #[test]
    fn later_names_pair_with_the_earliest_in_listing_order() {
        // Given in no particular order; new/ lists before cur/, names sort within a directory.
        let names = [
            (Dir::Cur, "b:2,S"),
            (Dir::Cur, "a:2,RS"),
            (Dir::Cur, "a:2,"),
            (Dir::New, "b"),
            (Dir::Cur, "c:2,S"),
            (Dir::New, "a"),
            (Dir::Cur, "b:2,"),
        ];
        assert_eq!(
            pairs(&names, InfoSep::COLON),
            [
                "cur/a:2, also new/a",
                "cur/a:2,RS also new/a",
                "cur/b:2, also new/b",
                "cur/b:2,S also new/b",
            ]
        );
        // Within cur/ alone, the first name by byte order is the one the others repeat.
        let names = [
            (Dir::Cur, "k:2,S"),
            (Dir::Cur, "k:2,"),
            (Dir::Cur, "k:2,RS"),
        ];
        assert_eq!(
            pairs(&names, InfoSep::COLON),
            ["cur/k:2,RS also cur/k:2,", "cur/k:2,S also cur/k:2,"]
        );
    }

    #[test]
    fn the_listing_ends_in_listing_order_whatever_the_input_order() {
        let names = [
            (Dir::Cur, "z:2,"),
            (Dir::New, "y"),
            (Dir::Cur, "a:2,"),
            (Dir::New, "b"),
        ];
        let mut l = listed(&names, InfoSep::COLON);
        assert_eq!(duplicates(&mut l).count(), 0);
        let order: std::vec::Vec<_> = l.iter().map(|l| (l.dir(), l.name())).collect();
        assert_eq!(
            order,
            [
                (Dir::New, "b"),
                (Dir::New, "y"),
                (Dir::Cur, "a:2,"),
                (Dir::Cur, "z:2,")
            ]
        );
        // Asking twice gives the same answer.
        let names = [(Dir::Cur, "k:2,S"), (Dir::New, "k")];
        let mut l = listed(&names, InfoSep::COLON);
        let once: std::vec::Vec<_> = duplicates(&mut l).collect();
        let twice: std::vec::Vec<_> = duplicates(&mut l).collect();
        assert_eq!(once, twice);
        assert_eq!(once.len(), 1);
    }

    #[test]
    fn the_key_ends_at_the_configured_separator() {
        let semi = InfoSep::new(b';').unwrap();
        // With ';', "a:2,S" is a whole key (no info), distinct from "a".
        let names = [(Dir::New, "a"), (Dir::Cur, "a:2,S"), (Dir::Cur, "a;2,S")];
        assert_eq!(pairs(&names, semi), ["cur/a;2,S also new/a"]);
        assert_eq!(
            pairs(&names, InfoSep::COLON),
            ["cur/a:2,S also new/a"],
            "with ':', \"a;2,S\" is a key of its own"
        );
    }
}
