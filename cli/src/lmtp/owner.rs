//! A root server without `--user` writes each recipient's files as that maildir's owner, as
//! the one-shot path does (issue 13; the decision is the core's
//! [`mdeliver_core::mda::owner::deliver_as`], asked per maildir): the owner's uid, primary
//! group and supplementary groups (or, for a uid with no user entry, the maildir's group); a
//! maildir owned by root is delivered as root.
//!
//! Without forking: on Linux the identity that file operations are checked and created with
//! is per thread. The thread that opens (at `RCPT`, creating with `-c`) and delivers a
//! recipient's files sets its own supplementary groups (the raw `setgroups` system call,
//! which, unlike the C library's, changes only the calling thread) and its filesystem uid and
//! gid (`setfsgid`, `setfsuid`) before them. A filesystem uid other than 0 drops the
//! capabilities that override file permissions (`CAP_DAC_OVERRIDE`, `CAP_FOWNER`,
//! `CAP_CHOWN`...) for that thread, so the owner's permissions are what is checked: a maildir
//! its owner cannot write fails for its recipient alone. The process keeps its real,
//! effective and saved uid 0, so the next recipient can be someone else.
//!
//! A thread stays the identity it last took ([`Owners::enter`]) until it needs another: the
//! server's own before anything of the server's (finding an owner, a spool file:
//! [`Owners::leave`]), another owner for another owner's maildir. A site whose maildirs share
//! an owner (virtual mailboxes of one `vmail` user) thus switches once per thread, not twice
//! per recipient (ten system calls each time). What a thread is now is kept in a thread-local;
//! a new thread starts with its creator's identity, which it cannot know, so its first
//! [`Owners::enter`] or [`Owners::leave`] always switches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdeliver_core::mda::owner::{deliver_as, DeliverAs, Refusal};
use mdeliver_core::ErrorKind;
use rustix::process::Gid;

use crate::privilege::{self, Identity};

/// Who writes a maildir: `None` for the server's own identity.
pub type Owner = Option<Arc<Identity>>;

/// The per-recipient switch, and the users looked up so far.
#[derive(Debug)]
pub struct Owners {
    /// Whether to switch at all: started as root, without `--user`.
    switch: bool,
    /// The server's own groups and group, set back after each delivery.
    groups: Vec<Gid>,
    gid: u32,
    /// (uid, maildir gid) → the identity and when it was looked up (one user-database
    /// look-up per owner and [`LOOKUP_TTL`]).
    known: Mutex<HashMap<(u32, u32), LookedUp>>,
    /// How long a look-up stands ([`LOOKUP_TTL`], or the testing knob's).
    ttl: Duration,
}

/// An owner's identity and when the user database gave it.
type LookedUp = (Arc<Identity>, Instant);

/// How long an owner's groups, as the user database gave them, are used before they are
/// looked up again: a user taken out of a group (or given another primary group) loses what
/// it granted within this time, without a restart.
pub const LOOKUP_TTL: Duration = Duration::from_secs(60);

/// The testing knob that shortens [`LOOKUP_TTL`] (seconds), so a test need not wait a minute.
pub const TTL_VAR: &str = "MDELIVER_TEST_OWNER_TTL";

impl Owners {
    /// `switch`: whether the server runs as root with no `--user`.
    pub fn new(switch: bool) -> Owners {
        let groups = match switch {
            true => rustix::process::getgroups().unwrap_or_default(),
            false => Vec::new(),
        };
        let ttl = std::env::var(TTL_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(LOOKUP_TTL, Duration::from_secs);
        Owners {
            switch,
            groups,
            gid: rustix::process::getegid().as_raw(),
            known: Mutex::default(),
            ttl,
        }
    }

    /// Who writes `maildir` (or, for one `-c` is to create, the nearest directory above it
    /// that exists), unless its owner and group are `known` already. An owner that cannot
    /// be found fails the recipient (`Err`, with the message to log).
    pub fn of(
        &self,
        maildir: &Path,
        known: Option<(u32, u32)>,
    ) -> Result<Owner, (ErrorKind, String)> {
        if !self.switch {
            return Ok(None);
        }
        let found = std::iter::once(known.map_or_else(|| privilege::owner(maildir), Ok));
        match deliver_as(None, true, found) {
            Ok(DeliverAs::Owner { uid, gid }) => {
                if let Some(id) = self.known_owner(uid, gid) {
                    return Ok(Some(id));
                }
                let id = Arc::new(
                    privilege::by_uid(uid, gid)
                        .map_err(|m| (ErrorKind::Io, format!("finding its owner: {m}")))?,
                );
                let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                known.insert((uid, gid), (id.clone(), Instant::now()));
                Ok(Some(id))
            }
            Ok(DeliverAs::Unchanged | DeliverAs::Named) => Ok(None),
            Err(Refusal::Owner { error, .. }) => {
                let kind = crate::linux::io_error_kind(&error);
                Err((kind, format!("finding its owner: {error}")))
            }
            // One maildir at a time: neither can happen.
            Err(Refusal::NotRoot | Refusal::DifferentOwners { .. }) => Ok(None),
        }
    }

    /// The identity already known for a maildir owned by `uid` and `gid`, without a look-up
    /// (`None`: not looked up in the last [`LOOKUP_TTL`], or one delivered as the server
    /// itself). A look-up made again gives a new identity, which a thread that was the old
    /// one switches to.
    pub fn known_owner(&self, uid: u32, gid: u32) -> Option<Arc<Identity>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (id, at) = known.get(&(uid, gid))?;
        (at.elapsed() < self.ttl).then(|| id.clone())
    }

    /// The maildir owner this thread's file operations are those of now, if any.
    pub fn current(&self) -> Option<Arc<Identity>> {
        CURRENT.with_borrow(|c| c.clone().flatten())
    }

    /// Makes this thread's file operations those of `owner` (`None`: the server's own) from
    /// now on, switching only if they are not already. A switch that fails half-way sets the
    /// server's own back.
    pub fn enter(&self, owner: &Owner) -> Result<(), String> {
        if !self.switch || CURRENT.with_borrow(|c| c.as_ref().is_some_and(|c| same(c, owner))) {
            return Ok(());
        }
        // Unknown until the switch is done.
        CURRENT.set(None);
        let Some(id) = owner else {
            self.back();
            return Ok(());
        };
        let groups: Vec<Gid> = id
            .groups
            .iter()
            .map(|g| Gid::from_raw(g.as_raw()))
            .collect();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("switching to {} ({what}): {e}", id.name)
        };
        let switched = rustix::thread::set_thread_groups(&groups)
            .map_err(|e| fail("groups", &e))
            .and_then(|()| set_fs(Id::Gid, id.gid.as_raw()).map_err(|e| fail("gid", &e)))
            .and_then(|()| set_fs(Id::Uid, id.uid.as_raw()).map_err(|e| fail("uid", &e)));
        match switched {
            Ok(()) => {
                CURRENT.set(Some(owner.clone()));
                Ok(())
            }
            Err(why) => {
                self.back();
                Err(why)
            }
        }
    }

    /// Makes this thread's file operations the server's own again (before a look-up or a
    /// file of the server's).
    pub fn leave(&self) {
        // Cannot fail: the server's own identity is set back by `back` or not at all.
        let _ = self.enter(&None);
    }

    /// Sets the server's own filesystem ids and groups for this thread. That cannot fail while
    /// the thread keeps uid 0 (real, effective and saved): a failure would leave the thread
    /// unable to deliver for anyone else, so it is fatal rather than silently wrong.
    fn back(&self) {
        let back = set_fs(Id::Uid, 0)
            .and_then(|()| set_fs(Id::Gid, self.gid))
            .and_then(|()| rustix::thread::set_thread_groups(&self.groups).map_err(Into::into));
        if let Err(e) = back {
            log!("mdeliver lmtp: cannot switch a delivery thread back to root: {e}");
            std::process::abort();
        }
        CURRENT.set(Some(None));
    }
}

thread_local! {
    /// Whose this thread's file operations are: `None` until this thread sets them (a new
    /// thread has its creator's), then `Some(None)` for the server's own or the owner's.
    static CURRENT: RefCell<Option<Owner>> = const { RefCell::new(None) };
}

/// Whether `a` and `b` are one identity (identities are made once per owner: [`Owners::of`]).
fn same(a: &Owner, b: &Owner) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[derive(Copy, Clone)]
enum Id {
    Uid,
    Gid,
}

/// `setfsuid`/`setfsgid` for this thread, checked: the call returns the previous value, never
/// an error, so the new one is read back (a call with the invalid id -1 changes nothing and
/// returns the current one).
fn set_fs(which: Id, id: u32) -> std::io::Result<()> {
    // SAFETY: setfsuid/setfsgid take a plain integer and change only this thread's
    // credentials; no memory is involved.
    let now = unsafe {
        match which {
            Id::Uid => {
                libc::setfsuid(id);
                libc::setfsuid(u32::MAX)
            }
            Id::Gid => {
                libc::setfsgid(id);
                libc::setfsgid(u32::MAX)
            }
        }
    };
    match u32::try_from(now) == Ok(id) {
        true => Ok(()),
        false => Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
    }
}
