//! Maildirs kept open between deliveries, each under the stamp its root had (by path, as the
//! identity that delivers) before it was opened: a recipient whose root's stamp is unchanged,
//! with no mount or unmount since, is delivered through one of them instead of opening the
//! maildir again. When a maildir may be kept, and why an equal stamp is enough, is the
//! core's ([`mdeliver_core::lmtp::reuse`]).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};

use mdeliver_core::lmtp::reuse::{may_keep, RootStamp, IDLE_SECS};

use super::commit::Known;
use crate::linux::LinuxFs;

/// The most maildirs kept open at once (four descriptors each; fewer where the limit on open
/// files is low: at most a quarter of it), and of one maildir (one per delivery under way
/// there at once).
const KEPT_MAX: usize = 256;
const KEPT_PER_MAILDIR: usize = 32;

/// How many maildirs may be kept under this process's limit on open files.
fn kept_max() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    KEPT_MAX.min(limit / 16)
}

/// A maildir kept open, with what its deliveries learned about it.
pub struct Open {
    pub fs: LinuxFs,
    pub known: Known,
}

/// The maildirs kept open, by path.
pub struct Kept {
    state: Mutex<State>,
    /// `/proc/self/mountinfo`, which `poll` reports changed after any mount or unmount in
    /// this namespace: then every kept maildir is closed (a mount over new/ does not change
    /// the root's stamp). Without it, nothing is kept.
    mounts: Option<OwnedFd>,
    /// The most maildirs kept ([`kept_max`]).
    max: usize,
}

#[derive(Default)]
struct State {
    /// By path: the root's stamp, the maildir, and when it was put back.
    idle: HashMap<PathBuf, Vec<(RootStamp, Open, Instant)>>,
    /// Mount changes seen so far: a maildir opened before one is not kept.
    mounts_seen: u64,
}

/// Which mount table a maildir was opened under ([`Kept::take`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Generation(u64);

impl Default for Kept {
    fn default() -> Kept {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let mounts = rustix::fs::open("/proc/self/mountinfo", flags, Mode::empty()).ok();
        Kept {
            state: Mutex::default(),
            mounts,
            max: kept_max(),
        }
    }
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
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a mount or unmount happened since the last call (or the table cannot be
    /// watched); each change is reported once.
    fn mounts_changed(&self) -> bool {
        let Some(fd) = &self.mounts else {
            return true;
        };
        let mut fds = [PollFd::new(fd, PollFlags::PRI)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !matches!(poll(&mut fds, Some(&now)), Ok(0))
    }

    /// After a mount or unmount, closes every kept maildir and counts the change; whether
    /// there was one.
    fn forget_after_mount_change(&self, state: &mut State) -> bool {
        let changed = self.mounts_changed();
        if changed {
            state.idle.clear();
            state.mounts_seen += 1;
        }
        changed
    }

    /// A maildir kept open at `path` whose root had `now` (`None`: no stamp, nothing to
    /// take), if there is one: it is the caller's until it is [`put`](Kept::put) back. Kept
    /// ones with another stamp are closed (the maildir changed since), and after a mount
    /// change every one is. Call it before opening a maildir: the generation it gives is the
    /// one to put it back with.
    pub fn take(&self, path: &Path, now: Option<&RootStamp>) -> (Option<Open>, Generation) {
        let mut state = self.lock();
        self.forget_after_mount_change(&mut state);
        let generation = Generation(state.mounts_seen);
        let Some((now, list)) = now.zip(state.idle.get_mut(path)) else {
            return (None, generation);
        };
        list.retain(|(s, _, _)| s == now);
        let open = list.pop().map(|(_, o, _)| o);
        if list.is_empty() {
            state.idle.remove(path);
        }
        (open, generation)
    }

    /// Closes the kept maildirs unused for [`IDLE_SECS`], and every one after a mount change
    /// (called every so often, so that neither holds a filesystem busy for long).
    pub fn expire(&self) {
        let mut state = self.lock();
        if state.idle.is_empty() || self.forget_after_mount_change(&mut state) {
            return;
        }
        let idle = Duration::from_secs(IDLE_SECS);
        state.idle.retain(|_, list| {
            list.retain(|(_, _, put)| put.elapsed() < idle);
            !list.is_empty()
        });
    }

    /// Closes every kept maildir (the process is out of descriptors); whether there was one.
    pub fn close_all(&self) -> bool {
        let mut state = self.lock();
        let any = !state.idle.is_empty();
        state.idle.clear();
        any
    }

    /// Keeps the maildir at `path`, opened after its root was stamped `stamp` and after
    /// [`take`](Kept::take) gave `generation`, for a later delivery, where the core allows it,
    /// no mount changed since, and there is room (else it is closed).
    pub fn put(&self, path: PathBuf, (stamp, generation): (RootStamp, Generation), open: Open) {
        let now = i64::try_from(mdeliver_driver::now().secs).unwrap_or(i64::MAX);
        let network = open.fs.observed().fs.network;
        if self.mounts.is_none() || self.max == 0 || !may_keep(&stamp, now, network) {
            return;
        }
        let mut state = self.lock();
        if Generation(state.mounts_seen) != generation {
            return;
        }
        let total: usize = state.idle.values().map(Vec::len).sum();
        if total >= self.max {
            // Room for this one: some other maildir's are closed.
            let other = state.idle.keys().find(|p| **p != path).cloned();
            match other {
                Some(p) => {
                    state.idle.remove(&p);
                }
                None => return,
            }
        }
        let list = state.idle.entry(path).or_default();
        if list.len() < KEPT_PER_MAILDIR {
            list.push((stamp, open, Instant::now()));
        }
    }
}
