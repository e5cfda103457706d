//! The MTA's delivery as one machine ([`Mta`]): the message is written into tmp/ and synced
//! ([`Delivery`]), then, at its first publish, the duplicate index is consulted and a
//! reservation taken ([`Dedup`]), the Maildir++ quota checked ([`QuotaCheck`]), the message
//! accounted in `maildirsize`, an intent recorded, the message published, and the success
//! committed to the index. Every step is one [`Op`], so a crash between any two of them is a
//! state the simulator reaches, and the driver of the Linux binary, of the WASI module and of
//! the simulator is the one [`run`](crate::machine::run).
//!
//! # Why the accounting comes before the publish
//! `maildirsize` is a cache of what new/ and cur/ hold. The order decides which way it can be
//! wrong after a crash:
//! - accounted after publishing (what Maildir++ writers traditionally do, and mdeliver did):
//!   a crash between the publish and the append leaves a stored message uncounted; with the
//!   duplicate index the MTA's retry is then a suppressed duplicate, so nothing ever counts it
//!   until the next recalculation. The quota is under-enforced, silently.
//! - accounted before publishing ([`Order::AccountFirst`], the default): the append is flushed
//!   before the message becomes visible, so a stored message is always counted. A crash
//!   between the two counts a message that is not stored (the retry then counts it again):
//!   `maildirsize` over-states by at most one message per crashed attempt, the safe direction,
//!   and the next recalculation makes it exact. A failed publish is taken back with a
//!   `-<size> -1` line.
//! - an append that fails (the file is not writable, the disk is full) refuses the delivery
//!   before anything is published, with the append's error: a temporary failure the
//!   administrator can fix. Staying silent would leave the quota unenforced for good.
//!
//! [`Order::AccountLast`] keeps the old order (after the commit, unflushed, its failure
//! ignored) so that the simulator can show what it got wrong.

use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Dir, Op, OpResult, Persist};
use crate::machine::dedup::{Dedup, DedupOptions, DedupStep, Finished, Key, KeyDeriver};
use crate::machine::deliver::{Delivered, Delivery, Options};
use crate::machine::quota::{self, CheckOptions, Checked, QuotaCheck, Verdict, MAILDIRSIZE};
use crate::machine::{Machine, Step};
use crate::maildir::name::NameBuf;

/// When the delivery is counted in `maildirsize` (see the module documentation).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Before publishing, flushed; a failed append refuses the delivery.
    #[default]
    AccountFirst,
    /// After the duplicate commit, unflushed, failures ignored: the old composition, kept to
    /// replay the quota drift it allowed.
    AccountLast,
}

/// What an [`Mta`] delivery does.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MtaOptions {
    /// The delivery.
    pub delivery: Options,
    /// Check (and account) the Maildir++ quota.
    pub quota: Option<CheckOptions>,
    /// Suppress duplicates with the index.
    pub dedup: Option<DedupOptions>,
    /// The message's key when the caller knows it (else derived from the bytes written).
    pub key: Option<Key>,
    /// When the delivery is accounted.
    pub order: Order,
}

/// What an [`Mta`] delivery did.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Accepted {
    /// Stored.
    Stored {
        /// The delivery.
        delivered: Delivered,
        /// Whether the key is in the duplicate index (false without one, or when the index
        /// could not take it: [`Finished::Unindexed`]).
        indexed: bool,
        /// The quota check, when one was asked for.
        quota: Option<Checked>,
    },
    /// A duplicate within the window: nothing was stored this time.
    Duplicate {
        /// Where the earlier copy was recorded.
        dir: Option<Dir>,
        /// Its name then.
        name: NameBuf,
    },
}

/// The result of an [`Mta`] delivery.
pub type MtaOutcome = Result<Accepted, Error>;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Stage {
    /// The delivery runs up to its first publish.
    Write,
    /// The duplicate index: collection and reservation, or inspection.
    Reserve,
    /// The quota check.
    Quota,
    /// `<size> 1` appended to `maildirsize`, flushed.
    Account,
    /// The intent recorded before a publish.
    Intent,
    /// The delivery publishes and finishes.
    Publish,
    /// The publish failed after the accounting: `-<size> -1`.
    Unaccount,
    /// Under a deferred directory sync, the sync the commit must not precede.
    CommitSync,
    /// The success committed to the index.
    Commit,
    /// [`Order::AccountLast`]: appended after the commit.
    AccountLast,
    /// The reservation given up after a failure.
    Abandon,
    /// Done.
    Finished,
}

/// One message's delivery as an MTA asks for it (see the module documentation).
#[derive(Clone, Debug)]
pub struct Mta {
    opts: MtaOptions,
    stage: Stage,
    delivery: Delivery,
    /// The filesystem can flush a directory.
    dir_sync: bool,
    deriver: KeyDeriver,
    dedup: Option<Dedup>,
    quota: Option<QuotaCheck>,
    /// The message's size, once written.
    size: u64,
    checked: Option<Checked>,
    unindexed: bool,
    /// Counted in `maildirsize` by this delivery.
    accounted: bool,
    /// The intent for the publish the delivery polls now is recorded.
    intent_done: bool,
    /// Set when the delivery must not publish: the error it ends with.
    refusal: Option<Error>,
    duplicate: Option<(Option<Dir>, NameBuf)>,
    delivered: Option<Delivered>,
    line: heapless::String<48>,
    result: Option<MtaOutcome>,
}

// The key deriver's state is the message's bytes so far, which the delivery's own state
// (bytes written) and the driver's message determine: left out of comparisons.
impl PartialEq for Mta {
    fn eq(&self, o: &Self) -> bool {
        self.state() == o.state()
    }
}

impl Eq for Mta {}

impl core::hash::Hash for Mta {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.state().hash(h)
    }
}

type MtaState<'a> = (
    &'a MtaOptions,
    Stage,
    (&'a Delivery, bool),
    &'a Option<Dedup>,
    &'a Option<QuotaCheck>,
    (u64, &'a Option<Checked>, bool, bool, bool),
    &'a Option<Error>,
    &'a Option<(Option<Dir>, NameBuf)>,
    &'a Option<Delivered>,
    &'a Option<MtaOutcome>,
);

impl Mta {
    /// A delivery with these options.
    pub fn new<E: Env + ?Sized>(
        opts: MtaOptions,
        caps: crate::fs::Capabilities,
        env: &mut E,
    ) -> Mta {
        let mut m = Mta {
            opts,
            stage: Stage::Write,
            delivery: Delivery::new(opts.delivery, caps, env),
            dir_sync: caps.dir_sync,
            deriver: KeyDeriver::new(),
            dedup: None,
            quota: None,
            size: 0,
            checked: None,
            unindexed: false,
            accounted: false,
            intent_done: false,
            refusal: None,
            duplicate: None,
            delivered: None,
            line: heapless::String::new(),
            result: None,
        };
        m.settle(env);
        m
    }

    fn state(&self) -> MtaState<'_> {
        (
            &self.opts,
            self.stage,
            (&self.delivery, self.dir_sync),
            &self.dedup,
            &self.quota,
            (
                self.size,
                &self.checked,
                self.unindexed,
                self.accounted,
                self.intent_done,
            ),
            &self.refusal,
            &self.duplicate,
            &self.delivered,
            &self.result,
        )
    }

    /// The delivery machine inside (to set flags after the write, as mbox import does).
    pub fn delivery_mut(&mut self) -> &mut Delivery {
        &mut self.delivery
    }

    /// Whether this delivery has counted the message in `maildirsize`.
    pub fn accounted(&self) -> bool {
        self.accounted
    }

    /// Moves on from wherever the machine stands until it has an operation to ask for or is
    /// finished: the transitions that need no filesystem.
    fn settle<E: Env + ?Sized>(&mut self, env: &mut E) {
        loop {
            match self.stage {
                Stage::Write => match self.delivery.poll() {
                    Step::Op(op) if op.publish_target().is_some() => self.intercept(env),
                    Step::Op(_) => return,
                    Step::Done(outcome) => return self.delivery_done(outcome, env),
                },
                Stage::Reserve => {
                    let Some(d) = self.dedup.as_ref() else {
                        self.after_reserve(env);
                        continue;
                    };
                    match d.poll() {
                        DedupStep::Op(_) => return,
                        DedupStep::Go => self.after_reserve(env),
                        DedupStep::Done(r) => {
                            self.dedup = None;
                            match r {
                                Ok(Finished::Unindexed) => {
                                    self.unindexed = true;
                                    self.after_reserve(env);
                                }
                                Ok(Finished::Duplicate { dir, name }) => {
                                    self.duplicate = Some((dir, name));
                                    self.refuse(Error::new(ErrorKind::Exists, Phase::Check));
                                }
                                Ok(_) => self.refuse(Error::new(ErrorKind::Io, Phase::Check)),
                                Err(e) => self.refuse(e),
                            }
                        }
                    }
                }
                Stage::Quota => match self.quota.as_ref().map(|q| q.poll()) {
                    Some(Step::Op(_)) => return,
                    Some(Step::Done(Ok(c))) => {
                        self.quota = None;
                        self.checked = Some(c);
                        if c.verdict == Verdict::Over {
                            self.refuse(Error::new(ErrorKind::OverQuota, Phase::Check));
                        } else {
                            self.after_quota();
                        }
                    }
                    Some(Step::Done(Err(e))) => {
                        self.quota = None;
                        self.refuse(e);
                    }
                    None => self.after_quota(),
                },
                Stage::Intent | Stage::Commit | Stage::Abandon => {
                    let Some(d) = self.dedup.as_ref() else {
                        self.after_index();
                        continue;
                    };
                    match d.poll() {
                        DedupStep::Op(_) => return,
                        DedupStep::Go if self.stage == Stage::Intent => {
                            self.intent_done = true;
                            self.stage = Stage::Publish;
                        }
                        DedupStep::Go => self.after_index(),
                        DedupStep::Done(r) => {
                            if self.stage == Stage::Intent {
                                // The intent could not be recorded: do not publish.
                                self.dedup = None;
                                let e = match r {
                                    Err(e) => e,
                                    Ok(_) => Error::new(ErrorKind::Io, Phase::Check),
                                };
                                self.refuse(e);
                            } else {
                                if self.stage == Stage::Commit
                                    && matches!(r, Ok(Finished::Unindexed))
                                {
                                    self.unindexed = true;
                                }
                                self.dedup = None;
                                self.after_index();
                            }
                        }
                    }
                }
                Stage::Publish => match self.delivery.poll() {
                    Step::Op(op) if op.publish_target().is_some() && !self.intent_done => {
                        match self.dedup.as_mut() {
                            Some(d) => {
                                let (dir, name) = op.publish_target().unwrap_or((Dir::New, ""));
                                let mut n = NameBuf::new();
                                let _ = n.push_str(name);
                                d.intent(dir, &n, env);
                                self.stage = Stage::Intent;
                            }
                            None => {
                                self.intent_done = true;
                                return;
                            }
                        }
                    }
                    Step::Op(_) => return,
                    Step::Done(outcome) => self.delivery_done(outcome, env),
                },
                Stage::Account | Stage::Unaccount | Stage::CommitSync | Stage::AccountLast => {
                    return
                }
                Stage::Finished => return,
            }
        }
    }

    /// The delivery is about to publish for the first time.
    fn intercept<E: Env + ?Sized>(&mut self, env: &mut E) {
        match self.opts.dedup {
            Some(o) => {
                let key = self.opts.key.unwrap_or_else(|| self.deriver.key());
                let dedup = Dedup::new(key, o, env).with_dir_sync(self.dir_sync);
                self.dedup = Some(dedup.with_write_back(self.delivery.writes_back()));
                self.stage = Stage::Reserve;
            }
            None => self.after_reserve(env),
        }
    }

    fn after_reserve<E: Env + ?Sized>(&mut self, env: &mut E) {
        match self.opts.quota {
            // A retry of a message already stored succeeds even when the mailbox is full: the
            // quota is checked after the duplicate check.
            Some(q) => {
                self.quota = Some(QuotaCheck::new(q, self.size, env));
                self.stage = Stage::Quota;
            }
            None => self.after_quota(),
        }
    }

    fn after_quota(&mut self) {
        let allow = self.checked.is_some_and(|c| c.verdict == Verdict::Allow);
        if allow && self.opts.order == Order::AccountFirst {
            self.line = quota::delivery_line(self.size);
            self.stage = Stage::Account;
        } else {
            self.go_publish();
        }
    }

    fn go_publish(&mut self) {
        self.intent_done = false;
        self.stage = Stage::Publish;
    }

    /// The delivery must not publish: it removes its tmp file and ends with `e`.
    fn refuse(&mut self, e: Error) {
        if self.refusal.is_none() {
            self.refusal = Some(e);
        }
        self.delivery.refuse(e);
        self.stage = Stage::Publish;
        self.intent_done = true;
    }

    fn delivery_done<E: Env + ?Sized>(
        &mut self,
        outcome: crate::machine::deliver::Outcome,
        env: &mut E,
    ) {
        if let Some((dir, name)) = self.duplicate.take() {
            return self.finish(Ok(Accepted::Duplicate { dir, name }));
        }
        match (outcome, self.refusal) {
            (Ok(delivered), None) => {
                let needs_sync = delivered.needs_dir_sync;
                self.delivered = Some(delivered);
                if self.dedup.is_some() {
                    // A commit must never be more durable than the message it records.
                    self.stage = if needs_sync {
                        Stage::CommitSync
                    } else {
                        self.commit(env);
                        Stage::Commit
                    };
                } else {
                    self.after_index();
                }
            }
            (outcome, refusal) => {
                let e = refusal
                    .or(outcome.err())
                    .unwrap_or(Error::new(ErrorKind::Io, Phase::Publish));
                self.result = Some(Err(e));
                if self.accounted {
                    self.line = quota::line(-(self.size as i64), -1);
                    self.stage = Stage::Unaccount;
                } else {
                    self.abandon(env);
                }
            }
        }
    }

    fn commit<E: Env + ?Sized>(&mut self, env: &mut E) {
        if let (Some(d), Some(del)) = (self.dedup.as_mut(), self.delivered.as_ref()) {
            d.committed(del.dir, &del.name, env);
        }
    }

    /// Not stored (or, after an intent, perhaps stored and removed): the reservation is given
    /// up where that is safe.
    fn abandon<E: Env + ?Sized>(&mut self, env: &mut E) {
        match self.dedup.as_mut().filter(|d| !d.is_done()) {
            Some(d) => {
                d.abandoned(env);
                self.stage = Stage::Abandon;
            }
            None => {
                self.dedup = None;
                self.after_index();
            }
        }
    }

    /// The index is done with (committed, abandoned, or never used).
    fn after_index(&mut self) {
        if self.result.is_some() {
            self.stage = Stage::Finished;
            return;
        }
        let Some(delivered) = self.delivered.clone() else {
            self.stage = Stage::Finished;
            return;
        };
        let allow = self.checked.is_some_and(|c| c.verdict == Verdict::Allow);
        if allow && self.opts.order == Order::AccountLast && self.stage != Stage::AccountLast {
            self.line = quota::delivery_line(self.size);
            self.stage = Stage::AccountLast;
            return;
        }
        self.finish(Ok(Accepted::Stored {
            delivered,
            indexed: self.opts.dedup.is_some() && !self.unindexed,
            quota: self.checked,
        }));
    }

    fn finish(&mut self, r: MtaOutcome) {
        self.result = Some(r);
        self.stage = Stage::Finished;
    }

    fn append(&self, persist: Persist) -> Op<'_> {
        Op::Append {
            // A folder's delivery is counted in the top maildir's file.
            dir: self.opts.quota.map_or(Dir::Root, |q| q.base()),
            name: MAILDIRSIZE,
            data: self.line.as_bytes(),
            persist,
        }
    }

    /// How the accounting is made durable before the publish: written back where the
    /// publish's directory flush commits it too ([`Delivery::writes_back`]), else flushed.
    fn account_persist(&self) -> Persist {
        if self.delivery.writes_back() {
            Persist::WriteBack
        } else {
            Persist::Flush
        }
    }
}

impl Machine for Mta {
    type Output = MtaOutcome;

    fn poll(&self) -> Step<'_, MtaOutcome> {
        let dedup_op = || match self.dedup.as_ref().map(|d| d.poll()) {
            Some(DedupStep::Op(op)) => Step::Op(op),
            _ => Step::Done(Err(Error::new(ErrorKind::Io, Phase::Check))),
        };
        match self.stage {
            Stage::Write | Stage::Publish => match self.delivery.poll() {
                Step::Op(op) => Step::Op(op),
                // `settle` moves on from a finished delivery before anyone polls.
                Step::Done(_) => Step::Done(Err(Error::new(ErrorKind::Io, Phase::Publish))),
            },
            Stage::Reserve | Stage::Intent | Stage::Commit | Stage::Abandon => dedup_op(),
            Stage::Quota => match self.quota.as_ref().map(|q| q.poll()) {
                Some(Step::Op(op)) => Step::Op(op),
                _ => Step::Done(Err(Error::new(ErrorKind::Io, Phase::Check))),
            },
            Stage::Account | Stage::Unaccount => Step::Op(self.append(self.account_persist())),
            Stage::AccountLast => Step::Op(self.append(Persist::Cache)),
            Stage::CommitSync => match self.delivered.as_ref() {
                Some(d) => Step::Op(Op::SyncDir { dir: d.dir }),
                None => Step::Done(Err(Error::new(ErrorKind::Io, Phase::Publish))),
            },
            Stage::Finished => Step::Done(
                self.result
                    .clone()
                    .unwrap_or(Err(Error::new(ErrorKind::Io, Phase::Publish))),
            ),
        }
    }

    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        match self.stage {
            Stage::Write | Stage::Publish => {
                let publishing =
                    matches!(self.delivery.poll(), Step::Op(op) if op.publish_target().is_some());
                if let (Step::Op(Op::WriteMessage), OpResult::Written { size: n, .. }) =
                    (self.delivery.poll(), result)
                {
                    self.size = n;
                }
                self.delivery.feed(result, env);
                if publishing {
                    self.intent_done = false;
                }
            }
            Stage::Reserve | Stage::Intent | Stage::Commit | Stage::Abandon => {
                if let Some(d) = self.dedup.as_mut() {
                    d.feed(result, data, env);
                }
            }
            Stage::Quota => {
                if let Some(q) = self.quota.as_mut() {
                    q.feed(result, data, env);
                }
            }
            Stage::Account => match result {
                OpResult::Done => {
                    self.accounted = true;
                    self.go_publish();
                }
                // No `maildirsize` (removed since the check): nothing to keep up to date; the
                // next recalculation counts the message.
                OpResult::Err(ErrorKind::NotFound) => self.go_publish(),
                // The line could not be appended: the error is the quota file's.
                r => {
                    let kind = r.err().unwrap_or(ErrorKind::Io);
                    self.refuse(Error::new(kind, Phase::Quota));
                }
            },
            Stage::Unaccount => {
                // Best effort: a line that stays over-counts, which the next recalculation
                // corrects; the delivery's own failure is what is reported.
                self.accounted = !matches!(result, OpResult::Done);
                self.abandon(env);
            }
            Stage::CommitSync => match result {
                OpResult::Done => {
                    if let Some(d) = self.delivered.as_mut() {
                        d.needs_dir_sync = false;
                    }
                    self.commit(env);
                    self.stage = Stage::Commit;
                }
                // Leave the intent alone: recovery checks that the message is really there.
                _ => {
                    self.dedup = None;
                    self.after_index();
                }
            },
            Stage::AccountLast => {
                // The old composition ignored this append's result.
                self.accounted = matches!(result, OpResult::Done);
                self.stage = Stage::AccountLast;
                let delivered = self.delivered.clone();
                if let Some(delivered) = delivered {
                    self.finish(Ok(Accepted::Stored {
                        delivered,
                        indexed: self.opts.dedup.is_some() && !self.unindexed,
                        quota: self.checked,
                    }));
                }
            }
            Stage::Finished => {}
        }
        self.settle(env);
    }

    fn observe(&mut self, chunk: &[u8]) {
        if self.opts.dedup.is_some() && self.opts.key.is_none() {
            self.deriver.feed(chunk);
        }
    }
}
