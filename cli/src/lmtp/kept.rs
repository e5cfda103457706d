//! Maildirs kept open between deliveries, each under the stamp its root had (by path) before
//! it was opened: a recipient whose root's stamp is unchanged is delivered through one of
//! them instead of opening the maildir again. When a maildir may be kept, and why an equal
//! stamp is enough, is the core's ([`mdeliver_core::lmtp::reuse`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mdeliver_core::lmtp::reuse::{may_keep, RootStamp};

use super::commit::Known;
use crate::linux::LinuxFs;

/// The most maildirs kept open at once (four descriptors each), and of one maildir (one per
/// delivery under way there at once).
const KEPT_MAX: usize = 256;
const KEPT_PER_MAILDIR: usize = 32;

/// A maildir kept open, with what its deliveries learned about it.
pub struct Open {
    pub fs: LinuxFs,
    pub known: Known,
}

/// The maildirs kept open, by path.
#[derive(Default)]
pub struct Kept {
    idle: Mutex<HashMap<PathBuf, Vec<(RootStamp, Open)>>>,
}

/// The stamp of `st`, a `stat` of a maildir's root.
pub fn stamp(st: &rustix::fs::Stat) -> RootStamp {
    RootStamp {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        nlink: st.st_nlink,
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
    }
}

impl Kept {
    /// A maildir kept open at `path` whose root had `now`, if there is one (it is the caller's
    /// until it is [`put`](Kept::put) back). Kept ones with another stamp are closed: the
    /// maildir changed since.
    pub fn take(&self, path: &Path, now: &RootStamp) -> Option<Open> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(path)?;
        list.retain(|(s, _)| s == now);
        let open = list.pop().map(|(_, o)| o);
        if list.is_empty() {
            idle.remove(path);
        }
        open
    }

    /// Keeps the maildir at `path`, opened after its root was stamped `stamp`, for a later
    /// delivery, where the core allows it and there is room (else it is closed).
    pub fn put(&self, path: PathBuf, stamp: RootStamp, open: Open) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if !may_keep(&stamp, now, open.fs.observed().fs.network) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= KEPT_MAX {
            // Room for this one: some other maildir's are closed.
            let other = idle.keys().find(|p| **p != path).cloned();
            match other {
                Some(p) => {
                    idle.remove(&p);
                }
                None => return,
            }
        }
        let list = idle.entry(path).or_default();
        if list.len() < KEPT_PER_MAILDIR {
            list.push((stamp, open));
        }
    }
}
