//! When a resident server may deliver through a maildir it opened for an earlier delivery.
//!
//! Opening a maildir costs its root, tmp/, new/ and cur/ (an `openat` and a `close` each) and
//! a look at its filesystem. A server that keeps them open between deliveries pays instead
//! one `stat` of the root's path per recipient, which it makes anyway to find the owner. The
//! descriptors must not outlive what an administrator does to the maildir to stop or move
//! delivery: renaming new/ or tmp/ aside, replacing the maildir, changing its mode or owner.
//! Each of those changes the root's inode, mode, owner, link count, modification time or
//! change time, so the kept descriptors serve a delivery only when the root's [`RootStamp`],
//! taken by path before the maildir was opened, is equal to the one taken now.
//!
//! The `stat` is the driver's to take as the identity that delivers (a maildir's owner, for a
//! root server), so that a directory above the maildir that it can no longer pass stops
//! delivery as it would stop an open; and a mount over a subdirectory changes nothing the
//! root's `stat` shows, so the driver closes every kept maildir after any mount change.
//!
//! Two limits keep the comparison sound:
//! - **Coarse timestamps.** A filesystem may stamp two changes within one clock tick alike,
//!   so a change just after the stamp could leave it equal. A maildir is kept only when its
//!   root has not changed for [`SETTLED_SECS`] ([`may_keep`]); any later change then stamps
//!   a later time.
//! - **Network filesystems** answer `stat` from an attribute cache that lags other hosts'
//!   changes: a maildir there is never kept.
//!
//! A kept maildir holds its filesystem busy: `umount` fails while it is open. One left
//! unused for [`IDLE_SECS`] is closed, so an administrator can unmount a filesystem of
//! maildirs a few seconds after its last delivery without stopping the server (a server
//! flushing whole filesystems lets its descriptor for that go after as long without a
//! delivery there).

/// A maildir root's identity and times, as `stat` of its path gives them. Equal stamps mean
/// that nothing an administrator does to stop delivery happened in between.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RootStamp {
    /// The filesystem.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// The owner.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    /// Links: one per subdirectory, plus two.
    pub nlink: u64,
    /// Last change of its entries (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Last change of its entries or its inode (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

/// How long a root must have been unchanged before its maildir is kept open: well over the
/// tick of any filesystem's timestamps.
pub const SETTLED_SECS: i64 = 2;

/// How long a maildir kept open may go unused before it is closed.
pub const IDLE_SECS: u64 = 5;

/// Whether a maildir opened after its root was stamped `stamp`, at `now` (seconds since the
/// epoch), may be kept open for later deliveries: on a local filesystem, with a root
/// unchanged for [`SETTLED_SECS`] (a root stamped in the future is not).
pub fn may_keep(stamp: &RootStamp, now: i64, network: bool) -> bool {
    let settled = |(secs, _): (i64, i64)| secs.saturating_add(SETTLED_SECS) <= now;
    !network && settled(stamp.mtime) && settled(stamp.ctime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> RootStamp {
        RootStamp {
            dev: 1,
            ino: 2,
            mode: 0o40700,
            uid: 1000,
            gid: 1000,
            nlink: 5,
            mtime: (1_000, 5),
            ctime: (1_000, 7),
        }
    }

    #[test]
    fn a_maildir_is_kept_only_once_its_root_has_settled_and_never_over_the_network() {
        let s = stamp();
        assert!(!may_keep(&s, 1_001, false));
        assert!(may_keep(&s, 1_002, false));
        assert!(!may_keep(&s, 5_000, true));
        let recent = RootStamp {
            ctime: (1_001, 0),
            ..s
        };
        assert!(!may_keep(&recent, 1_002, false));
        let future = RootStamp {
            mtime: (i64::MAX, 0),
            ..s
        };
        assert!(!may_keep(&future, 1_002, false));
    }

    #[test]
    fn every_change_that_stops_or_moves_delivery_changes_the_stamp() {
        let s = stamp();
        let renamed_subdir = RootStamp {
            mtime: (1_003, 0),
            ctime: (1_003, 0),
            ..s
        };
        let moved_out = RootStamp { nlink: 4, ..s };
        let replaced = RootStamp { ino: 3, ..s };
        let chmod = RootStamp {
            mode: 0o40000,
            ctime: (1_003, 0),
            ..s
        };
        let chown = RootStamp { uid: 0, ..s };
        for changed in [renamed_subdir, moved_out, replaced, chmod, chown] {
            assert_ne!(changed, s);
        }
    }
}
