//! The delivery state machine (sans-io).
//!
//! [`Delivery`] decides; it never touches a filesystem. Its driver asks [`Delivery::poll`] for
//! the next single operation, performs it on whatever [`Fs`] it holds, and hands the result to
//! [`Delivery::feed`]. The blocking [`deliver`] runs one machine to completion for adapters;
//! the simulator instead interleaves the steps of many machines.
//!
//! Publish paths, best first (chosen from [`Capabilities`], downgraded at run time when the
//! filesystem answers `Unsupported`):
//! 1. [`Publish::AnonymousLink`]: an unnamed file in tmp/ is linked into new/. No tmp name ever
//!    exists, so a crash leaves nothing behind.
//! 2. [`Publish::RenameNoReplace`]: `O_EXCL` tmp file, then a rename that refuses to replace.
//! 3. [`Publish::LinkUnlink`]: `O_EXCL` tmp file, link into new/ (refuses to replace), unlink tmp.
//! 4. [`Publish::CheckedRename`]: where hard links are refused (Android, encfs, VM shared
//!    folders): `stat` the target, then a plain rename. The check and the rename are not
//!    atomic, so this path relies on the name's uniqueness alone (pid, counter, time, 64 random
//!    bits, device and inode) rather than on the kernel to never replace.
//!
//! Every name collision (`Exists`) makes a fresh name, at most [`Options::max_attempts`] times.
//! Success is reported only after the file and (by default) the target directory are synced.
//! A failure after publishing unlinks what was published (if a reader already moved it to cur/,
//! it has been seen: cur/ is synced and success reported, so an MTA retry cannot duplicate it);
//! every failure path removes its tmp file.

use core::fmt::Write as _;

use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Capabilities, Dir, Fs, Op, OpResult, Persist, Stat};
use crate::maildir::flags::Flags;
use crate::maildir::name::{emit_classic, InfoSep, NameBuf, Unique};

/// How to deliver.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Unique names, exclusive creation, no-replace publishing, honest syncs (the default).
    Exclusive,
    /// djb's 1995 recipe: `time.pid.host`, stat, sleep 2 s while taken, create, write, fsync,
    /// link into new/, unlink. Kept so the simulator can show its failures; never offered by
    /// the CLI. With `exclusive_create`, the create uses `O_EXCL` as qmail 1.03 does.
    Classic {
        /// Create the tmp file with `O_EXCL`.
        exclusive_create: bool,
    },
    /// For NFS: take a link-based dot-lock on the maildir, deliver as `Exclusive`, release.
    Locked,
}

/// When the machine syncs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Sync the file, then the target directory, before reporting success.
    Full,
    /// Sync the file; leave the directory sync to the driver, which may batch many messages
    /// behind one sync (bulk import). The outcome says `needs_dir_sync`.
    DeferDirSync,
    /// No syncs at all: explicitly non-durable (tests, tmpfs).
    None,
}

/// Delivery options.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Options {
    /// The algorithm.
    pub strategy: Strategy,
    /// Sync policy.
    pub durability: Durability,
    /// `Some(flags)`: deliver into cur/ with `:2,<flags>`; `None`: into new/ without info.
    pub flags: Option<Flags>,
    /// The info separator.
    pub sep: InfoSep,
    /// Names tried before giving up with [`ErrorKind::Collisions`].
    pub max_attempts: u32,
    /// A lock older than this many seconds is considered abandoned and broken.
    pub lock_stale_secs: u64,
    /// How long to wait for the lock before giving up with [`ErrorKind::Busy`].
    pub lock_timeout_ms: u32,
    /// Interval between lock attempts.
    pub lock_poll_ms: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            strategy: Strategy::Exclusive,
            durability: Durability::Full,
            flags: None,
            sep: InfoSep::COLON,
            max_attempts: 16,
            lock_stale_secs: 300,
            lock_timeout_ms: 60_000,
            lock_poll_ms: 1_000,
        }
    }
}

/// The name of the maildir lock file of the `Locked` strategy, in the maildir root.
pub const LOCK_NAME: &str = "mdeliver.lock";

/// A lock older than [`Options::lock_stale_secs`] is broken only by the deliverer that first
/// creates (exclusively) this prefix followed by the lock's modification time, so that of
/// several deliverers that find the same stale lock exactly one removes it. Without the claim,
/// a second breaker could remove the lock the first had just taken, and both would hold it.
/// The modification time names the stale lock: a lock that replaced it is fresh. A claim as
/// old as a stale lock was left by a deliverer that died before breaking the lock; it is
/// claimed in turn (the prefix, the lock's time, `.` and the claim's time). A claim (an empty
/// file) stays behind, for `mdeliver check --repair` to remove once stale
/// ([`crate::report::check::Finding::StaleLock`]).
pub const LOCK_BREAK_PREFIX: &str = "mdeliver.lock.break.";

/// How a message gets its final name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Publish {
    /// `O_TMPFILE` + `linkat`.
    AnonymousLink,
    /// `O_EXCL` tmp file + `renameat2(RENAME_NOREPLACE)`.
    RenameNoReplace,
    /// `O_EXCL` tmp file + `link` + `unlink`.
    LinkUnlink,
    /// `O_EXCL` tmp file + `stat` + `rename` (no hard links; see the module docs).
    CheckedRename,
}

impl Publish {
    /// The best path the capabilities allow.
    pub fn choose(caps: Capabilities) -> Publish {
        if caps.anonymous_tmp && caps.hard_links {
            Publish::AnonymousLink
        } else if caps.rename_noreplace {
            Publish::RenameNoReplace
        } else if caps.hard_links {
            Publish::LinkUnlink
        } else {
            Publish::CheckedRename
        }
    }

    /// A short name for reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Publish::AnonymousLink => "anonymous-link",
            Publish::RenameNoReplace => "rename-noreplace",
            Publish::LinkUnlink => "link-unlink",
            Publish::CheckedRename => "checked-rename",
        }
    }
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delivered {
    /// new/ or cur/.
    pub dir: Dir,
    /// The message's file name there.
    pub name: NameBuf,
    /// Bytes stored.
    pub size: u64,
    /// How it was published.
    pub publish: Publish,
    /// The driver still has to sync `dir` before the delivery is durable
    /// ([`Durability::DeferDirSync`]).
    pub needs_dir_sync: bool,
    /// Removing the tmp name after linking failed; the file is harmless (same inode) and is
    /// reported so a maintenance run can remove it.
    pub leftover_tmp: bool,
}

/// The final result of a delivery.
pub type Outcome = Result<Delivered, Error>;

/// What the delivery machine wants next.
pub type Step<'a> = crate::machine::Step<'a, Outcome>;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum State {
    LockCreate,
    LockClose,
    LockLink,
    LockCheckOwn,
    LockCheckHeld,
    /// Claims the right to break the stale lock just seen: an exclusive create of
    /// [`LOCK_BREAK_PREFIX`] and the lock's modification time.
    LockBreakClaim,
    /// The claim was taken: whether its claimer died (its claim is stale, too).
    LockClaimStat,
    LockBreak,
    LockWait,
    LockOrphanUnique,
    LockOrphanStat,
    /// The orphaned lock just seen is claimed like a stale one (the same claim's name), so
    /// that of everyone who may remove it, exactly one does.
    LockOrphanClaim,
    LockOrphanBreak,
    ClassicStat,
    ClassicWait,
    Create,
    Write,
    /// The file's modification time, `secs` ([`Delivery::set_mtime`]).
    SetMtime(i64),
    SyncFile,
    Close,
    Publish,
    PublishCheckTarget,
    PublishVerifyLink,
    CloseAfterLink,
    UnlinkTmp,
    SyncDir,
    FailClose,
    FailUnlinkPublished,
    AdoptSyncCur,
    FailSyncDir,
    FailUnlinkTmp,
    ReleaseLock,
    ReleaseUnique,
    Finished,
}

/// One message's delivery into one maildir.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delivery {
    opts: Options,
    caps: Capabilities,
    path: Publish,
    target: Dir,
    state: State,
    unique: Unique,
    tmp: NameBuf,
    published: NameBuf,
    lock_unique: NameBuf,
    /// The claim to break a stale lock ([`State::LockBreakClaim`]).
    lock_break: heapless::String<64>,
    /// The stale lock's modification time, which names the claims on it.
    lock_break_of: u64,
    host: heapless::String<64>,
    size: u64,
    /// The size with CRLF line ends (the name's `,W=`).
    crlf_size: u64,
    attempts: u32,
    eintr: u8,
    lock_waited_ms: u32,
    file_open: bool,
    tmp_exists: bool,
    is_published: bool,
    lock_unique_exists: bool,
    leftover_tmp: bool,
    /// The publish link's fate is unknown (lost reply, then a failed check).
    publish_unverified: bool,
    pending: Option<Error>,
    result: Option<Outcome>,
    /// The modification time the written file gets ([`Delivery::set_mtime`]).
    mtime: Option<i64>,
}

/// Whether a cleanup unlink left its file where it was (it failed, and not because the file
/// was already gone).
fn left_behind(result: OpResult) -> bool {
    matches!(result, OpResult::Err(e) if e != ErrorKind::NotFound)
}

impl Delivery {
    /// A machine for one delivery with these options on a filesystem with these capabilities.
    pub fn new<E: Env + ?Sized>(opts: Options, caps: Capabilities, env: &mut E) -> Delivery {
        let mut host = heapless::String::new();
        for c in env.host().chars() {
            if host.push(c).is_err() {
                break;
            }
        }
        let target = match (opts.strategy, opts.flags) {
            (Strategy::Classic { .. }, _) | (_, None) => Dir::New,
            (_, Some(_)) => Dir::Cur,
        };
        let mut d = Delivery {
            opts,
            caps,
            path: Publish::choose(caps),
            target,
            state: State::Create,
            unique: Unique::default(),
            tmp: NameBuf::new(),
            published: NameBuf::new(),
            lock_unique: NameBuf::new(),
            lock_break: heapless::String::new(),
            lock_break_of: 0,
            host,
            size: 0,
            crlf_size: 0,
            attempts: 0,
            eintr: 0,
            lock_waited_ms: 0,
            file_open: false,
            tmp_exists: false,
            is_published: false,
            lock_unique_exists: false,
            leftover_tmp: false,
            publish_unverified: false,
            pending: None,
            result: None,
            mtime: None,
        };
        match opts.strategy {
            Strategy::Classic { .. } => {
                d.classic_name(env);
                d.state = State::ClassicStat;
            }
            Strategy::Locked => {
                d.fresh_lock_name(env);
                d.state = State::LockCreate;
            }
            Strategy::Exclusive => d.begin_exclusive(env),
        }
        d
    }

    /// The publish path currently in use.
    pub fn publish_path(&self) -> Publish {
        self.path
    }

    /// The message's size in bytes, once written (0 before).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Changes where the message goes once its contents are known (an mbox `Status:` header
    /// read while streaming): `Some(flags)` to cur/ with `:2,<flags>`, `None` to new/. Only
    /// until the published name is made (that is, right after `WriteMessage`); returns whether
    /// it took effect. Ignored by the `Classic` strategy, which always publishes into new/.
    pub fn set_flags(&mut self, flags: Option<Flags>) -> bool {
        let before_publish = self.taking_lock()
            || matches!(
                self.state,
                State::Create | State::Write | State::SetMtime(_) | State::SyncFile | State::Close
            );
        if !before_publish || self.is_classic() {
            return false;
        }
        self.opts.flags = flags;
        self.target = if flags.is_some() { Dir::Cur } else { Dir::New };
        true
    }

    /// Gives the message file the modification time `secs` (seconds since the epoch) right
    /// after it is written, before it is flushed: [`Op::SetMtime`], best effort (a failure is
    /// ignored: a wrong time loses no mail, as in mblaze). Only until the write's result is
    /// fed; returns whether it took effect.
    pub fn set_mtime(&mut self, secs: i64) -> bool {
        let before_written = self.taking_lock()
            || matches!(
                self.state,
                State::ClassicStat | State::ClassicWait | State::Create | State::Write
            );
        if before_written {
            self.mtime = Some(secs);
        }
        before_written
    }

    /// Whether the machine has finished.
    pub fn is_done(&self) -> bool {
        self.state == State::Finished
    }

    /// The next step. Calling it again without feeding returns the same step.
    pub fn poll(&self) -> Step<'_> {
        let tmp = self.tmp.as_str();
        let publ = self.published.as_str();
        let lock = self.lock_unique.as_str();
        let op = match self.state {
            State::LockCreate => Op::CreateExclusive {
                dir: Dir::Root,
                name: lock,
            },
            State::LockClose | State::Close | State::CloseAfterLink | State::FailClose => {
                Op::CloseFile
            }
            State::LockLink => Op::Link {
                from: (Dir::Root, lock),
                to: (Dir::Root, LOCK_NAME),
            },
            State::LockCheckOwn => Op::Stat {
                dir: Dir::Root,
                name: lock,
            },
            State::LockCheckHeld | State::LockOrphanStat => Op::Stat {
                dir: Dir::Root,
                name: LOCK_NAME,
            },
            State::LockClaimStat => Op::Stat {
                dir: Dir::Root,
                name: self.lock_break.as_str(),
            },
            State::LockBreakClaim | State::LockOrphanClaim => Op::WriteFile {
                dir: Dir::Root,
                name: self.lock_break.as_str(),
                data: b"",
                persist: Persist::Cache,
                anonymous: false,
            },
            State::LockOrphanUnique => Op::Unlink {
                dir: Dir::Root,
                name: lock,
            },
            State::LockBreak | State::LockOrphanBreak | State::ReleaseLock => Op::Unlink {
                dir: Dir::Root,
                name: LOCK_NAME,
            },
            State::LockWait => Op::Sleep {
                millis: self.opts.lock_poll_ms,
            },
            State::ClassicStat => Op::Stat {
                dir: Dir::Tmp,
                name: tmp,
            },
            State::ClassicWait => Op::Sleep { millis: 2000 },
            State::Create => match (self.opts.strategy, self.path) {
                (
                    Strategy::Classic {
                        exclusive_create: false,
                    },
                    _,
                ) => Op::CreateTruncate {
                    dir: Dir::Tmp,
                    name: tmp,
                },
                (Strategy::Classic { .. }, _) => Op::CreateExclusive {
                    dir: Dir::Tmp,
                    name: tmp,
                },
                (_, Publish::AnonymousLink) => Op::CreateAnonymous { dir: Dir::Tmp },
                _ => Op::CreateExclusive {
                    dir: Dir::Tmp,
                    name: tmp,
                },
            },
            State::Write => Op::WriteMessage,
            State::SetMtime(secs) => Op::SetMtime { secs },
            State::SyncFile if self.writes_back() => Op::WriteBack,
            State::SyncFile => Op::SyncFile,
            State::Publish => match (self.opts.strategy, self.path) {
                (Strategy::Classic { .. }, _) | (_, Publish::LinkUnlink) => Op::Link {
                    from: (Dir::Tmp, tmp),
                    to: (self.target, publ),
                },
                (_, Publish::AnonymousLink) => Op::LinkAnonymous {
                    dir: self.target,
                    name: publ,
                },
                (_, Publish::RenameNoReplace) => Op::Rename {
                    from: (Dir::Tmp, tmp),
                    to: (self.target, publ),
                    noreplace: true,
                },
                (_, Publish::CheckedRename) => Op::Rename {
                    from: (Dir::Tmp, tmp),
                    to: (self.target, publ),
                    noreplace: false,
                },
            },
            State::PublishCheckTarget => Op::Stat {
                dir: self.target,
                name: publ,
            },
            State::PublishVerifyLink => Op::Stat {
                dir: Dir::Tmp,
                name: tmp,
            },
            State::UnlinkTmp | State::FailUnlinkTmp => Op::Unlink {
                dir: Dir::Tmp,
                name: tmp,
            },
            State::SyncDir | State::FailSyncDir => Op::SyncDir { dir: self.target },
            State::AdoptSyncCur => Op::SyncDir { dir: Dir::Cur },
            State::FailUnlinkPublished => Op::Unlink {
                dir: self.target,
                name: publ,
            },
            State::ReleaseUnique => Op::Unlink {
                dir: Dir::Root,
                name: lock,
            },
            State::Finished => {
                return Step::Done(
                    self.result
                        .clone()
                        .unwrap_or(Err(Error::new(ErrorKind::Io, Phase::Open))),
                )
            }
        };
        Step::Op(op)
    }

    /// Reports the result of the operation last returned by [`poll`](Self::poll).
    pub fn feed<E: Env + ?Sized>(&mut self, result: OpResult, env: &mut E) {
        // EINTR: repeat the same operation a few times (never a message write: the source
        // cannot be rewound, so the driver retries inside the write itself).
        if result == OpResult::Err(ErrorKind::Interrupted)
            && self.state != State::Write
            && self.eintr < 3
        {
            self.eintr += 1;
            return;
        }
        self.eintr = 0;
        let err = match result {
            OpResult::Err(e) => Some(e),
            _ => None,
        };
        match self.state {
            State::LockCreate => match result {
                OpResult::Created { .. } => {
                    self.file_open = true;
                    self.lock_unique_exists = true;
                    self.state = State::LockClose;
                }
                OpResult::Err(ErrorKind::Exists) => {
                    self.retry(env, Phase::Lock, |d, env| d.fresh_lock_name(env))
                }
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Lock),
            },
            State::LockClose => {
                self.file_open = false;
                match err {
                    None => self.state = State::LockLink,
                    Some(e) => self.fail(e, Phase::Lock),
                }
            }
            State::LockLink => match err {
                None => self.begin_exclusive(env),
                // NFS may report failure (even `Exists`, when a lost reply is retransmitted)
                // for a link that happened: whatever link said, trust our file's link count.
                Some(_) => self.state = State::LockCheckOwn,
            },
            State::LockCheckOwn => match result {
                OpResult::Stat(s) if s.nlink == 2 => self.begin_exclusive(env),
                OpResult::Stat(_) => self.state = State::LockCheckHeld,
                _ => {
                    // Neither the link's reply nor our file's link count can be read: the lock
                    // may be ours. Remove our unique name; a lock whose link count then is 1
                    // has lost its creator's name, which a holder never does while holding
                    // (release unlinks the lock first), so it is ours (or another failed
                    // attempt's) and no one delivers under it: claim it and remove it rather
                    // than leave every delivery waiting until it turns stale.
                    self.pending = Some(Error::new(err.unwrap_or(ErrorKind::Io), Phase::Lock));
                    self.state = State::LockOrphanUnique;
                }
            },
            State::LockOrphanUnique => {
                self.lock_unique_exists = false;
                self.state = State::LockOrphanStat;
            }
            // Removing it by name on what the stat saw would race: another deliverer cleaning
            // up the same orphan (or breaking it as stale) may remove it first, and a fresh
            // lock taken in between would then be removed by the second. The claim lets one.
            State::LockOrphanStat => match result {
                OpResult::Stat(s) if s.nlink == 1 => {
                    self.claim(s.mtime, None, State::LockOrphanClaim)
                }
                _ => self.fail_lock_pending(),
            },
            State::LockOrphanClaim => match err {
                None => self.state = State::LockOrphanBreak,
                // Claimed by another: it is theirs to remove (or, if they died, a stale lock's
                // claim to take over later).
                Some(_) => self.fail_lock_pending(),
            },
            State::LockOrphanBreak => self.fail_lock_pending(),
            State::LockCheckHeld => match result {
                OpResult::Stat(s) => {
                    if self.is_stale(s, env) {
                        self.claim(s.mtime, None, State::LockBreakClaim);
                    } else {
                        self.state = State::LockWait;
                    }
                }
                OpResult::Err(ErrorKind::NotFound) => self.lock_retry(),
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Lock),
            },
            // Another deliverer claimed this stale lock first: it breaks it and takes the
            // lock; wait for it as for any holder.
            State::LockBreakClaim => match err {
                None => self.state = State::LockBreak,
                Some(ErrorKind::Exists) => self.state = State::LockClaimStat,
                Some(e) => self.fail(e, Phase::Lock),
            },
            // A claim as old as a stale lock belongs to a deliverer that died between its
            // claim and its break: claim the claim (one more exclusive create, named after it),
            // so that again exactly one deliverer breaks the lock.
            State::LockClaimStat => match result {
                OpResult::Stat(s) => {
                    if self.is_stale(s, env) {
                        self.claim(self.lock_break_of, Some(s.mtime), State::LockBreakClaim);
                    } else {
                        self.state = State::LockWait;
                    }
                }
                OpResult::Err(ErrorKind::NotFound) => self.lock_retry(),
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Lock),
            },
            State::LockBreak => match err {
                None | Some(ErrorKind::NotFound) => self.lock_retry(),
                Some(e) => self.fail(e, Phase::Lock),
            },
            State::LockWait => {
                self.lock_waited_ms = self.lock_waited_ms.saturating_add(self.opts.lock_poll_ms);
                if self.lock_waited_ms > self.opts.lock_timeout_ms {
                    self.fail(ErrorKind::Busy, Phase::Lock);
                } else {
                    self.state = State::LockLink;
                }
            }
            State::ClassicStat => match result {
                OpResult::Err(ErrorKind::NotFound) => self.state = State::Create,
                OpResult::Stat(_) => {
                    self.attempts += 1;
                    if self.attempts >= self.opts.max_attempts {
                        self.fail(ErrorKind::Collisions, Phase::Create);
                    } else {
                        self.state = State::ClassicWait;
                    }
                }
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Create),
            },
            State::ClassicWait => {
                self.classic_name(env);
                self.state = State::ClassicStat;
            }
            State::Create => match result {
                OpResult::Created { id } => {
                    self.file_open = true;
                    self.tmp_exists = self.path != Publish::AnonymousLink || self.is_classic();
                    self.unique.dev_ino = id;
                    self.state = State::Write;
                }
                OpResult::Err(ErrorKind::Exists) if !self.is_classic() => {
                    self.retry(env, Phase::Create, |d, env| d.fresh_tmp_name(env))
                }
                OpResult::Err(ErrorKind::Unsupported)
                    if self.path == Publish::AnonymousLink && !self.is_classic() =>
                {
                    self.caps.anonymous_tmp = false;
                    self.path = Publish::choose(self.caps);
                    self.fresh_tmp_name(env);
                }
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Create),
            },
            State::Write => match result {
                OpResult::Written { size: 0, .. } => self.fail(ErrorKind::Data, Phase::Read),
                OpResult::Written { size, crlf_size } => {
                    self.size = size;
                    self.crlf_size = crlf_size;
                    self.state = match self.mtime {
                        Some(secs) => State::SetMtime(secs),
                        None => self.after_write(),
                    };
                }
                OpResult::SourceErr(e) => self.fail(e, Phase::Read),
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Write),
            },
            // Best effort: whatever the result, the delivery goes on.
            State::SetMtime(_) => self.state = self.after_write(),
            State::SyncFile => match err {
                None => self.state = self.after_sync_file(),
                Some(e) => self.fail(e, Phase::SyncFile),
            },
            State::Close => {
                self.file_open = false;
                match err {
                    None => self.enter_publish(),
                    Some(e) => self.fail(e, Phase::Write),
                }
            }
            State::Publish => self.feed_publish(err, env),
            State::PublishCheckTarget => match result {
                OpResult::Err(ErrorKind::NotFound) => self.state = State::Publish,
                OpResult::Stat(_) => {
                    self.retry(env, Phase::Publish, |d, env| d.fresh_published_name(env))
                }
                _ => self.fail(err.unwrap_or(ErrorKind::Io), Phase::Publish),
            },
            State::PublishVerifyLink => {
                let original = self.pending.take().map(|e| e.kind).unwrap_or(ErrorKind::Io);
                // Only the Locked path verifies an `Exists` (maybe our own lost-reply link).
                let exists = original == ErrorKind::Exists;
                match result {
                    OpResult::Stat(s) if s.nlink >= 2 => {
                        self.is_published = true;
                        self.state = State::UnlinkTmp;
                    }
                    OpResult::Stat(_) if exists => {
                        self.retry(env, Phase::Publish, |d, env| d.fresh_published_name(env))
                    }
                    OpResult::Stat(_) => self.fail(original, Phase::Publish),
                    // `Exists` from link and our tmp file cannot be inspected: the name may
                    // be another deliverer's message, so it is left alone. (If it was our own
                    // link with a lost reply, the failure leaves it visible; removing a
                    // foreign message would be worse.)
                    OpResult::Err(e) if exists => self.fail(e, Phase::Publish),
                    _ => {
                        // Neither the link's reply nor the link count can be trusted: the
                        // name may exist. It is ours (unique by construction), so removing it
                        // keeps the failure honest; `NotFound` then is fine.
                        self.is_published = true;
                        self.publish_unverified = true;
                        self.fail(original, Phase::Publish)
                    }
                }
            }
            State::CloseAfterLink => {
                self.file_open = false;
                match err {
                    None => self.after_publish(),
                    Some(e) => self.fail(e, Phase::Write),
                }
            }
            State::UnlinkTmp => {
                self.tmp_exists = false;
                if !matches!(err, None | Some(ErrorKind::NotFound)) {
                    self.leftover_tmp = true;
                }
                if self.is_classic() {
                    self.succeed();
                } else {
                    self.after_publish();
                }
            }
            State::SyncDir => match err {
                None => self.succeed(),
                Some(e) => self.fail(e, Phase::SyncDir),
            },
            State::FailClose => {
                self.file_open = false;
                self.next_cleanup();
            }
            // A reader moved the message new/→cur/ before we could take it back: it has been
            // seen, so reporting failure would make the MTA's retry a duplicate. Make the move
            // durable instead and report success (found by the simulator).
            // Not when the link itself was never confirmed: then ENOENT more likely means it
            // did not happen, and reporting success would lose the message.
            State::FailUnlinkPublished
                if result == OpResult::Err(ErrorKind::NotFound)
                    && self.target == Dir::New
                    && !self.publish_unverified =>
            {
                self.is_published = false;
                if self.opts.durability == Durability::None || !self.caps.dir_sync {
                    self.result = None;
                    self.succeed();
                } else {
                    self.state = State::AdoptSyncCur;
                }
            }
            State::AdoptSyncCur => match err {
                None => {
                    self.result = None;
                    self.succeed();
                }
                Some(_) => self.next_cleanup(),
            },
            State::FailUnlinkPublished => {
                self.is_published = false;
                if left_behind(result) {
                    self.note_left(self.target);
                }
                self.state = if self.opts.durability == Durability::None || !self.caps.dir_sync {
                    State::FailUnlinkTmp
                } else {
                    State::FailSyncDir
                };
                if self.state == State::FailUnlinkTmp && !self.tmp_exists {
                    self.next_cleanup();
                }
            }
            State::FailSyncDir => self.next_cleanup(),
            State::FailUnlinkTmp => {
                self.tmp_exists = false;
                if left_behind(result) {
                    self.note_left(Dir::Tmp);
                }
                self.next_cleanup();
            }
            State::ReleaseLock => {
                self.state = if self.lock_unique_exists {
                    State::ReleaseUnique
                } else {
                    State::Finished
                };
            }
            State::ReleaseUnique => {
                self.lock_unique_exists = false;
                self.state = State::Finished;
            }
            State::Finished => {}
        }
    }

    fn feed_publish<E: Env + ?Sized>(&mut self, err: Option<ErrorKind>, env: &mut E) {
        match err {
            None => {
                self.is_published = true;
                match (self.is_classic(), self.path) {
                    (true, _) | (false, Publish::LinkUnlink) => self.state = State::UnlinkTmp,
                    (false, Publish::AnonymousLink) => self.state = State::CloseAfterLink,
                    (false, Publish::RenameNoReplace | Publish::CheckedRename) => {
                        self.tmp_exists = false;
                        self.after_publish();
                    }
                }
            }
            // Under the lock nobody else publishes, so `Exists` from link may be our own link
            // whose reply was lost (NFS): our tmp file's link count tells.
            Some(ErrorKind::Exists)
                if self.opts.strategy == Strategy::Locked && self.path == Publish::LinkUnlink =>
            {
                self.pending = Some(Error::new(ErrorKind::Exists, Phase::Publish));
                self.state = State::PublishVerifyLink;
            }
            Some(ErrorKind::Exists) if !self.is_classic() => {
                self.retry(env, Phase::Publish, |d, env| d.fresh_published_name(env))
            }
            Some(ErrorKind::Unsupported)
                if !self.is_classic() && self.path == Publish::RenameNoReplace =>
            {
                self.caps.rename_noreplace = false;
                self.path = if self.caps.hard_links {
                    Publish::LinkUnlink
                } else {
                    Publish::CheckedRename
                };
                self.state = self.publish_entry_state();
            }
            Some(ErrorKind::Unsupported)
                if !self.is_classic() && self.path == Publish::LinkUnlink =>
            {
                self.caps.hard_links = false;
                self.path = Publish::CheckedRename;
                self.state = self.publish_entry_state();
            }
            Some(e) if !self.is_classic() && self.path == Publish::LinkUnlink => {
                // NFS may report failure for a link that was made: check the link count.
                self.pending = Some(Error::new(e, Phase::Publish));
                self.state = State::PublishVerifyLink;
            }
            Some(e) => self.fail(e, Phase::Publish),
        }
    }

    fn is_classic(&self) -> bool {
        matches!(self.opts.strategy, Strategy::Classic { .. })
    }

    fn begin_exclusive<E: Env + ?Sized>(&mut self, env: &mut E) {
        if self.path == Publish::AnonymousLink {
            self.fresh_unique(env);
        } else {
            self.fresh_tmp_name(env);
        }
        self.state = State::Create;
    }

    /// Whether the machine is still taking the `Locked` strategy's lock.
    fn taking_lock(&self) -> bool {
        matches!(
            self.state,
            State::LockCreate
                | State::LockClose
                | State::LockLink
                | State::LockCheckOwn
                | State::LockCheckHeld
                | State::LockBreakClaim
                | State::LockClaimStat
                | State::LockBreak
                | State::LockWait
                | State::LockOrphanUnique
                | State::LockOrphanStat
                | State::LockOrphanClaim
                | State::LockOrphanBreak
        )
    }

    /// Claims, in state `claiming` (a stale lock's break or an orphan's removal), the lock of
    /// modification time `lock` ([`LOCK_BREAK_PREFIX`]), or with `dead`, the claim of that
    /// modification time its dead claimer left on it.
    fn claim(&mut self, lock: u64, dead: Option<u64>, claiming: State) {
        self.lock_break_of = lock;
        self.lock_break.clear();
        let _ = write!(self.lock_break, "{LOCK_BREAK_PREFIX}{lock}");
        if let Some(c) = dead {
            let _ = write!(self.lock_break, ".{c}");
        }
        self.state = claiming;
    }

    /// Whether a lock (or a claim to break one) this old was left by a dead deliverer.
    fn is_stale<E: Env + ?Sized>(&self, s: Stat, env: &mut E) -> bool {
        env.now().secs > s.mtime.saturating_add(self.opts.lock_stale_secs)
    }

    fn lock_retry(&mut self) {
        self.attempts += 1;
        if self.attempts >= self.opts.max_attempts.saturating_mul(4) {
            self.fail(ErrorKind::Busy, Phase::Lock);
        } else {
            self.state = State::LockLink;
        }
    }

    /// The state after the message is written (and its time set): its flush, unless the
    /// options ask for none.
    fn after_write(&mut self) -> State {
        if self.opts.durability == Durability::None {
            self.after_sync_file()
        } else {
            State::SyncFile
        }
    }

    /// Whether the file's data is only written back before it is named, not flushed: on a
    /// filesystem whose flush of names commits the data written back before it
    /// ([`Capabilities::ordered_commit`]), when the directory flush follows the publish
    /// ([`Durability::Full`]): that one flush makes data and name durable together, and no
    /// name is durable before it or another commit, which makes the data durable first.
    pub(crate) fn writes_back(&self) -> bool {
        self.caps.ordered_commit && self.caps.dir_sync && self.opts.durability == Durability::Full
    }

    fn after_sync_file(&mut self) -> State {
        if self.path == Publish::AnonymousLink && !self.is_classic() {
            self.make_published_name();
            State::Publish
        } else {
            State::Close
        }
    }

    fn enter_publish(&mut self) {
        if self.is_classic() {
            self.published = self.tmp.clone();
        } else {
            self.make_published_name();
        }
        self.state = self.publish_entry_state();
    }

    fn publish_entry_state(&self) -> State {
        if !self.is_classic() && self.path == Publish::CheckedRename {
            State::PublishCheckTarget
        } else {
            State::Publish
        }
    }

    fn after_publish(&mut self) {
        if self.opts.durability == Durability::Full && self.caps.dir_sync {
            self.state = State::SyncDir;
        } else {
            self.succeed();
        }
    }

    fn retry<E: Env + ?Sized>(
        &mut self,
        env: &mut E,
        phase: Phase,
        fresh: fn(&mut Delivery, &mut E),
    ) {
        self.attempts += 1;
        if self.attempts >= self.opts.max_attempts {
            self.fail(ErrorKind::Collisions, phase);
        } else {
            fresh(self, env);
        }
    }

    fn fresh_unique<E: Env + ?Sized>(&mut self, env: &mut E) {
        self.unique = Unique {
            time: env.now(),
            pid: env.pid(),
            counter: env.next_counter(),
            random: env.random_u64(),
            dev_ino: None,
        };
    }

    fn fresh_tmp_name<E: Env + ?Sized>(&mut self, env: &mut E) {
        self.fresh_unique(env);
        self.tmp = self
            .unique
            .emit_tmp(&self.host, self.opts.sep)
            .unwrap_or_default();
        self.state = State::Create;
    }

    fn fresh_lock_name<E: Env + ?Sized>(&mut self, env: &mut E) {
        self.fresh_unique(env);
        let mut n = NameBuf::new();
        let _ = n.push_str(LOCK_NAME);
        let _ = n.push('.');
        let t = self
            .unique
            .emit_tmp(&self.host, self.opts.sep)
            .unwrap_or_default();
        for c in t.chars() {
            if n.push(c).is_err() {
                break;
            }
        }
        self.lock_unique = n;
        self.state = State::LockCreate;
    }

    fn fresh_published_name<E: Env + ?Sized>(&mut self, env: &mut E) {
        let dev_ino = self.unique.dev_ino;
        self.fresh_unique(env);
        self.unique.dev_ino = dev_ino;
        self.make_published_name();
        self.state = self.publish_entry_state();
    }

    fn make_published_name(&mut self) {
        let info = if self.target == Dir::Cur {
            self.opts.flags
        } else {
            None
        };
        self.published = self
            .unique
            .emit_published(&self.host, (self.size, self.crlf_size), info, self.opts.sep)
            .unwrap_or_default();
    }

    fn classic_name<E: Env + ?Sized>(&mut self, env: &mut E) {
        let secs = env.now().secs;
        let pid = env.pid().unwrap_or(0);
        self.tmp = emit_classic(secs, pid, &self.host, self.opts.sep);
    }

    fn succeed(&mut self) {
        let needs_dir_sync = self.opts.durability == Durability::DeferDirSync && self.caps.dir_sync;
        self.result = Some(Ok(Delivered {
            dir: self.target,
            name: self.published.clone(),
            size: self.size,
            publish: self.path,
            needs_dir_sync,
            leftover_tmp: self.leftover_tmp,
        }));
        self.finish_or_release();
    }

    /// Fails with the lock error kept while an orphaned lock was cleaned up.
    fn fail_lock_pending(&mut self) {
        let e = self
            .pending
            .take()
            .unwrap_or(Error::new(ErrorKind::Io, Phase::Lock));
        self.fail(e.kind, e.phase);
    }

    /// Refuses the publish the machine asks for (the duplicate index found the message
    /// stored, the quota is full, the index could not record the intent): the machine removes
    /// its tmp file and ends with `error`. Only meaningful while it asks to publish.
    pub fn refuse(&mut self, error: Error) {
        if self.state != State::Publish || self.result.is_some() {
            return;
        }
        self.result = Some(Err(error));
        self.next_cleanup();
    }

    /// Notes in the failure that cleanup could not remove a file of it from `dir`.
    fn note_left(&mut self, dir: Dir) {
        if let Some(Err(e)) = &mut self.result {
            // The published message matters more than a tmp/ copy.
            if e.left.is_none() || dir != Dir::Tmp {
                *e = e.with_left(dir);
            }
        }
    }

    fn fail(&mut self, kind: ErrorKind, phase: Phase) {
        if self.result.is_none() {
            self.result = Some(Err(Error::new(kind, phase)));
        }
        self.next_cleanup();
    }

    fn next_cleanup(&mut self) {
        self.state = if self.file_open {
            State::FailClose
        } else if self.is_published {
            State::FailUnlinkPublished
        } else if self.tmp_exists {
            State::FailUnlinkTmp
        } else {
            self.finish_or_release();
            return;
        };
    }

    /// Ends the delivery, first releasing the lock if it holds one. Never called once the
    /// release has begun (`ReleaseLock` and `ReleaseUnique` move on by themselves), so outside
    /// the lock states a `Locked` machine holds the lock.
    fn finish_or_release(&mut self) {
        let holds_lock = self.opts.strategy == Strategy::Locked && !self.taking_lock();
        self.state = if holds_lock {
            State::ReleaseLock
        } else if self.lock_unique_exists {
            State::ReleaseUnique
        } else {
            State::Finished
        };
    }
}

impl crate::machine::Machine for Delivery {
    type Output = Outcome;
    fn poll(&self) -> Step<'_> {
        Delivery::poll(self)
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, _data: &[u8], env: &mut E) {
        Delivery::feed(self, result, env)
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

/// Runs a delivery to completion on `fs`, streaming the message from `source` through `buf`
/// (its size is the write size; memory use does not grow with the message).
pub fn deliver<F, E, R>(
    fs: &mut F,
    env: &mut E,
    opts: Options,
    source: &mut R,
    buf: &mut [u8],
) -> Outcome
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
{
    deliver_with(fs, env, opts, source, buf, |_: &mut Written<'_, R>| {})
}

/// What a [`deliver_with`] hook sees right after the message was written, before it is
/// published: the source (which may have learnt things while streaming, such as an mbox
/// `Status:` header or a `Date:`) and the machine (to [`Delivery::set_flags`] and
/// [`Delivery::set_mtime`]). The hook performs nothing itself: what it decides, the machine
/// asks for as operations, so a simulator or a stepping host sees them.
pub struct Written<'a, R: ?Sized> {
    /// The message source, fully read.
    pub source: &'a mut R,
    /// The delivery machine.
    pub machine: &'a mut Delivery,
}

/// [`deliver`], calling `after_write` once when the message has been written successfully.
pub fn deliver_with<F, E, R, H>(
    fs: &mut F,
    env: &mut E,
    opts: Options,
    source: &mut R,
    buf: &mut [u8],
    mut after_write: H,
) -> Outcome
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
    H: FnMut(&mut Written<'_, R>),
{
    let (mut machine, mut file) = (Delivery::new(opts, fs.capabilities(), env), None);
    let hook = &mut after_write;
    drive(fs, env, &mut machine, &mut file, source, buf, hook, false)
        .unwrap_or_else(|| unreachable!("drive stops early only when asked to"))
}

/// [`deliver_with`] up to the file flush: the message is written (and `after_write` has run)
/// but not yet flushed or named ([`UntilSync::Unsynced`]), or the delivery ended before that
/// point ([`UntilSync::Done`]: a failure, or any delivery without a file flush,
/// [`Durability::None`]).
///
/// An import keeps a window of these and flushes them together ([`Fs::sync_all`]: one flush
/// of the filesystem for many files instead of one each). Each file is still flushed before
/// it is named, as [`deliver`] does.
pub fn deliver_until_sync<F, E, R, H>(
    fs: &mut F,
    env: &mut E,
    opts: Options,
    source: &mut R,
    buf: &mut [u8],
    mut after_write: H,
) -> UntilSync<F>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
    H: FnMut(&mut Written<'_, R>),
{
    let (mut machine, mut file) = (Delivery::new(opts, fs.capabilities(), env), None);
    match drive(
        fs,
        env,
        &mut machine,
        &mut file,
        source,
        buf,
        &mut after_write,
        true,
    ) {
        Some(outcome) => UntilSync::Done(outcome),
        None => UntilSync::Unsynced(Unsynced { machine, file }),
    }
}

/// Where [`deliver_until_sync`] stopped.
// The machine is carried by value: there is no heap to box it in (and the caller moves it
// straight into its window).
#[allow(clippy::large_enum_variant)]
pub enum UntilSync<F: Fs + ?Sized> {
    /// The message is written, waiting for its flush.
    Unsynced(Unsynced<F>),
    /// The delivery ended before the flush.
    Done(Outcome),
}

/// A delivery stopped at its file flush by [`deliver_until_sync`]: the message is written into
/// tmp/ (its file still open), not yet flushed or named.
pub struct Unsynced<F: Fs + ?Sized> {
    machine: Delivery,
    file: Option<F::File>,
}

impl<F: Fs + ?Sized> Unsynced<F> {
    /// The message's size in bytes.
    pub fn size(&self) -> u64 {
        self.machine.size()
    }

    /// The rest of the delivery: flush the file, name it, and sync as the options say.
    pub fn finish<E: Env + ?Sized>(mut self, fs: &mut F, env: &mut E) -> Outcome {
        self.run(fs, env)
    }

    /// [`finish`](Unsynced::finish) for a file that a successful [`Fs::sync_all`] after its
    /// write has flushed: its own flush is done.
    pub fn finish_flushed<E: Env + ?Sized>(mut self, fs: &mut F, env: &mut E) -> Outcome {
        if self.machine.poll() == Step::Op(Op::SyncFile) {
            self.machine.feed(OpResult::Done, env);
        }
        self.run(fs, env)
    }

    /// Gives the message up (an earlier message of the window failed, and the import stops
    /// before this one): it is never named; its file is closed and its tmp name removed.
    pub fn abandon<E: Env + ?Sized>(mut self, fs: &mut F, env: &mut E) {
        self.machine.fail(ErrorKind::Interrupted, Phase::SyncFile);
        let _ = self.run(fs, env);
    }

    fn run<E: Env + ?Sized>(&mut self, fs: &mut F, env: &mut E) -> Outcome {
        // The message is written: nothing is read any more.
        let mut nothing: &[u8] = &[];
        let mut hook = |_: &mut Written<'_, &[u8]>| {};
        let done = drive(
            fs,
            env,
            &mut self.machine,
            &mut self.file,
            &mut nothing,
            &mut [],
            &mut hook,
            false,
        );
        done.unwrap_or_else(|| unreachable!("drive stops early only when asked to"))
    }
}

/// A [`Delivery`] as [`run_in`](crate::machine::run_in) steps it for [`drive`]: it pauses
/// once its message is written (the write's result held back, so the hook can still set the
/// flags and time before the machine learns it) and, with `stop_at_sync`, at its file flush.
struct Leg<'m> {
    machine: &'m mut Delivery,
    stop_at_sync: bool,
    written: Option<OpResult>,
}

/// Where a [`Leg`] paused.
#[allow(clippy::large_enum_variant)] // Carried by value: there is no heap to box it in.
enum Pause {
    Wrote(OpResult),
    AtSync,
    Done(Outcome),
}

impl crate::machine::Machine for Leg<'_> {
    type Output = Pause;
    fn poll(&self) -> crate::machine::Step<'_, Pause> {
        use crate::machine::Step as S;
        match (self.written, self.machine.poll()) {
            (Some(r), _) => S::Done(Pause::Wrote(r)),
            (None, S::Op(Op::SyncFile)) if self.stop_at_sync => S::Done(Pause::AtSync),
            (None, S::Op(op)) => S::Op(op),
            (None, S::Done(outcome)) => S::Done(Pause::Done(outcome)),
        }
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, _data: &[u8], env: &mut E) {
        let wrote = self.machine.poll() == Step::Op(Op::WriteMessage);
        match result {
            OpResult::Written { size, .. } if wrote && size > 0 => self.written = Some(result),
            _ => self.machine.feed(result, env),
        }
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

/// Steps `machine` on `fs` through [`run_in`](crate::machine::run_in) until it is done
/// (`Some(outcome)`), or, with `stop_at_sync`, until it asks for the file flush (`None`).
#[allow(clippy::too_many_arguments)]
fn drive<F, E, R, H>(
    fs: &mut F,
    env: &mut E,
    machine: &mut Delivery,
    file: &mut Option<F::File>,
    source: &mut R,
    buf: &mut [u8],
    after_write: &mut H,
    stop_at_sync: bool,
) -> Option<Outcome>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
    H: FnMut(&mut Written<'_, R>),
{
    let mut slots = crate::fs::Slots {
        file: file.take(),
        stream: None,
        inner: None,
    };
    let out = loop {
        let mut leg = Leg {
            machine: &mut *machine,
            stop_at_sync,
            written: None,
        };
        match crate::machine::run_in(&mut leg, fs, env, &mut slots, source, buf) {
            // Before feeding: the machine names the message as soon as it learns the write
            // succeeded (at once without syncs), and the hook may still change that name's
            // flags.
            Pause::Wrote(result) => {
                after_write(&mut Written {
                    source: &mut *source,
                    machine: &mut *machine,
                });
                machine.feed(result, env);
            }
            Pause::AtSync => break None,
            Pause::Done(outcome) => break Some(outcome),
        }
    };
    *file = slots.file;
    out
}
