//! Importing an mbox into one maildir (`mdeliver -M`), allocation-free over any [`Fs`].
//!
//! [`MboxReader`] splits the mbox (any read size); each message is streamed through
//! [`StatusFilter`] (removes `Status:`/`X-Status:`, learning their flags) and [`DateCapture`]
//! (its `Date:`) into [`deliver_until_sync`]. Right after a message is written and before it is
//! named, the hook picks new/ or cur/ and the flags ([`merge`]) and asks the machine to set the
//! file's modification time to its date ([`Delivery::set_mtime`]: an
//! [`Op::SetMtime`], best effort). Written messages wait in a window of
//! [`WINDOW`]; then the window is flushed at once ([`Op::SyncAll`], else file by
//! file) and each message named, in order. Every filesystem operation is a machine's, through
//! [`run`](crate::machine::run): each message's delivery, the quota check, and the window's
//! and a batch's flushes and `maildirsize` lines ([`run_op`]).
//! With [`Durability::DeferDirSync`] their directories are flushed once per batch of
//! [`BATCH`]; a message counts as delivered only after its batch's directory flush
//! ([`ImportEvents::committed`]). If a message of a window fails, the import stops there and
//! the window's later messages are removed unnamed, so that what is delivered is always a
//! prefix of the mbox.
//!
//! The import stops at the first malformed spot of the mbox (naming its byte offset), the
//! first read error of the input, or the first message that cannot be delivered; what came
//! before stays delivered. A message with no bytes (a `From ` line followed by nothing) is
//! skipped, not stopped at. The driver sees what happens through [`ImportEvents`] and gets a
//! [`Summary`] at the end. Every stop, and a last directory flush that fails, comes with the
//! byte offset to resume from ([`Summary::resume`]): the start of the first message not known
//! to be stored, so that importing the rest from there neither loses nor repeats a message
//! (except the unflushed batch after a failed flush, which is redone: a duplicate is better
//! than a loss).
//!
//! [`Durability::DeferDirSync`]: crate::machine::deliver::Durability::DeferDirSync
//! [`Delivery::set_mtime`]: crate::machine::deliver::Delivery::set_mtime

use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Dir, Fs, Op, Persist};
use crate::machine::deliver::{
    deliver_until_sync, Delivered, Options, Outcome, Strategy, Unsynced, UntilSync,
};
use crate::machine::quota::{self, CheckOptions, Limits, Usage, Verdict, MAILDIRSIZE};
use crate::machine::run_op;
use crate::maildir::flags::Flags;
use crate::mbox::{MboxError, MboxReader, Quoting, ReadError};
use crate::message::{DateCapture, Scanned, StatusFilter, Transformed};

/// Messages delivered between two directory flushes.
pub const BATCH: usize = 1024;

/// Messages written before their files are flushed, together: one [`Op::SyncAll`] for the
/// window instead of one flush per message (on a journaling filesystem each flush is a journal
/// commit or a disk cache flush). Each message is still flushed before it is named. A
/// divisor of [`BATCH`].
pub const WINDOW: usize = 64;

/// The buffer of the `Status:` filter's layer (on the stack, made once per import and lent to
/// every message's reader; the `Date:` capture scans the write buffer in place).
pub const LAYER: usize = 16 * 1024;

/// The flags a message gets: what its `Status:`/`X-Status:` said (`None`: new/), plus `-X`.
pub fn merge(status: Option<Flags>, extra: Option<Flags>) -> Option<Flags> {
    match (status, extra) {
        (None, None) => None,
        (s, x) => Some(s.unwrap_or_default().union(x.unwrap_or_default())),
    }
}

/// How to import.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// How quoted `From ` lines in bodies are read back.
    pub quoting: Quoting,
    /// Each message's delivery; its `flags` (`-X`) are added to what the message's `Status:`
    /// says, and `Durability::DeferDirSync` makes the directory flushes batched.
    pub delivery: Options,
    /// The Maildir++ quota (see the module documentation), `None`: not checked nor counted.
    pub quota: Option<CheckOptions>,
}

/// The Maildir++ quota as an import keeps it: checked once at the start (recalculating
/// `maildirsize` where needed), then counted here and in the file one window at a time.
#[derive(Copy, Clone, Debug)]
struct Quota {
    limits: Limits,
    usage: Usage,
    /// Where `maildirsize` is ([`CheckOptions::base`]).
    base: Dir,
}

impl Quota {
    /// Appends `bytes count`, flushed ([`Op::Append`]). `Ok(false)`: `maildirsize` is gone
    /// (removed since the check), so there is nothing to keep up to date any more.
    fn append<F, E>(&self, fs: &mut F, env: &mut E, bytes: i64, count: i64) -> Result<bool, Error>
    where
        F: Fs + ?Sized,
        E: Env + ?Sized,
    {
        let (dir, line) = (self.base, quota::line(bytes, count));
        let data = line.as_bytes();
        let op = Op::Append {
            dir,
            name: MAILDIRSIZE,
            data,
            persist: Persist::Flush,
        };
        match run_op(fs, env, op) {
            Ok(()) => Ok(true),
            Err(ErrorKind::NotFound) => Ok(false),
            Err(k) => Err(Error::new(k, Phase::Check)),
        }
    }
}

/// What the driver is told while an import runs (each method does nothing by default).
pub trait ImportEvents {
    /// Message `number` (1-based) was written and named; it is delivered once its batch is
    /// [`committed`](ImportEvents::committed).
    fn written(&mut self, number: u64, delivered: &Delivered) {
        let _ = (number, delivered);
    }
    /// The last `count` messages [`written`](ImportEvents::written) (all not yet committed)
    /// are durable: their directories were flushed.
    fn committed(&mut self, count: u64) {
        let _ = count;
    }
    /// Message `number` had no bytes at all and was skipped.
    fn empty(&mut self, number: u64) {
        let _ = number;
    }
    /// Message `number` was delivered, but a second name of it remains in tmp/ (harmless).
    fn leftover_tmp(&mut self, number: u64) {
        let _ = number;
    }
    /// After message `number`: `position` bytes of the mbox have been consumed.
    fn progress(&mut self, number: u64, position: u64) {
        let _ = (number, position);
    }
    /// No more messages will be read (the end of the mbox, or a stop); the last batch's flush
    /// follows.
    fn reading_done(&mut self) {}
}

/// The driver that wants none of the events.
impl ImportEvents for () {}

/// Why an import stopped before the end of the mbox.
#[derive(Debug)]
pub enum Stop<E> {
    /// The mbox is malformed here (the error names the byte offset).
    Mbox(MboxError),
    /// Reading the input failed.
    Read(E),
    /// Delivering message `number` (1-based) failed, or flushing its batch did.
    Deliver {
        /// What failed.
        error: Error,
        /// The message.
        number: u64,
    },
}

/// The result of an import.
#[derive(Debug)]
pub struct Summary<E> {
    /// Messages delivered and flushed (committed).
    pub delivered: u64,
    /// Bytes written, over every message written (flushed or not).
    pub bytes: u64,
    /// Empty messages skipped.
    pub empty: u64,
    /// Why the import stopped early, if it did.
    pub stop: Option<Stop<E>>,
    /// The last batch's directory flush failed with this error...
    pub flush: Option<Error>,
    /// ...leaving this many written messages not known to be durable (0 when it succeeded).
    pub unflushed: u64,
    /// When the import did not store the whole mbox (a stop, or a failed last flush): the byte
    /// offset of the input where the rest begins, the `From ` line of the first message not
    /// known to be stored (or, for a malformed mbox, the malformed spot).
    pub resume: Option<u64>,
}

/// An `embedded_io::Read` that remembers the error its source failed with, so that after a
/// failed delivery a malformed mbox (with its byte offset) can be told from a read error.
struct Tap<'r, R: embedded_io::ErrorType> {
    inner: &'r mut R,
    failed: Option<R::Error>,
}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for Tap<'_, R> {
    type Error = embedded_io::ErrorKind;
}

impl<R: embedded_io::Read> embedded_io::Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
        self.inner.read(buf).map_err(|e| {
            let kind = embedded_io::Error::kind(&e);
            self.failed = Some(e);
            kind
        })
    }
}

/// Written but not yet flushed: the batch.
#[derive(Default)]
struct Batch {
    count: u64,
    /// The byte offset of the first message of the batch.
    start: Option<u64>,
    sync_new: bool,
    sync_cur: bool,
}

impl Batch {
    /// Message `number`, at byte `offset` of the mbox, was delivered as `d`: it waits for the
    /// batch's directory flush.
    fn add<V: ImportEvents + ?Sized>(
        &mut self,
        (number, offset): (u64, u64),
        d: &Delivered,
        bytes: &mut u64,
        events: &mut V,
    ) {
        *bytes += d.size;
        self.start.get_or_insert(offset);
        self.count += 1;
        self.sync_new |= d.needs_dir_sync && d.dir == Dir::New;
        self.sync_cur |= d.needs_dir_sync && d.dir == Dir::Cur;
        events.written(number, d);
        if d.leftover_tmp {
            events.leftover_tmp(number);
        }
    }

    /// Flushes the batch's directories, then reports its messages as committed. On failure
    /// the batch stays as it was (a later commit tries again).
    fn commit<F: Fs + ?Sized, E: Env + ?Sized, V: ImportEvents + ?Sized>(
        &mut self,
        fs: &mut F,
        env: &mut E,
        events: &mut V,
    ) -> Result<u64, Error> {
        for (dir, needed) in [(Dir::New, self.sync_new), (Dir::Cur, self.sync_cur)] {
            if needed {
                run_op(fs, env, Op::SyncDir { dir }).map_err(|k| Error::new(k, Phase::SyncDir))?;
            }
        }
        let n = self.count;
        if n > 0 {
            events.committed(n);
        }
        *self = Batch::default();
        Ok(n)
    }
}

/// Written messages not yet flushed or named ([`WINDOW`] of them at most), in mbox order, each
/// with its number and byte offset.
struct Window<F: Fs + ?Sized> {
    waiting: heapless::Deque<((u64, u64), Unsynced<F>), WINDOW>,
    /// Whether messages may wait at all: only the `Exclusive` strategy, whose deliveries hold
    /// nothing but their own file until they are named (a `Locked` delivery holds the
    /// maildir's lock).
    enabled: bool,
}

impl<F: Fs + ?Sized> Window<F> {
    fn new(opts: Options) -> Self {
        Window {
            waiting: heapless::Deque::new(),
            enabled: opts.strategy == Strategy::Exclusive,
        }
    }

    fn push(&mut self, message: (u64, u64), unsynced: Unsynced<F>) {
        if self.waiting.push_back((message, unsynced)).is_err() {
            unreachable!("the window is finished whenever it is full");
        }
    }

    fn is_full(&self) -> bool {
        !self.enabled || self.waiting.is_full()
    }

    /// The byte offset of the first waiting message.
    fn first_offset(&self) -> Option<u64> {
        self.waiting.front().map(|((_, offset), _)| *offset)
    }

    /// Flushes and names every waiting message in order, calling `delivered` for each. On the
    /// first failure the later ones are abandoned, and the error and message (number, offset)
    /// returned.
    fn finish<E: Env + ?Sized>(
        &mut self,
        fs: &mut F,
        env: &mut E,
        quota: &mut Option<Quota>,
        mut delivered: impl FnMut((u64, u64), &Delivered),
    ) -> Result<(), (Error, (u64, u64))> {
        // The quota: the messages that fit, in order, are counted in `maildirsize` with one
        // flushed line before any is named (a stored message is always counted); the first
        // that does not fit stops the import.
        let mut fits = self.waiting.len();
        let mut window = Usage::default();
        if let Some(q) = quota.as_ref() {
            fits = 0;
            for (_, unsynced) in self.waiting.iter() {
                let with = window.plus(Usage::message(unsynced.size()));
                if q.limits.exceeded_by(q.usage.plus(with)) {
                    break;
                }
                window = with;
                fits += 1;
            }
            if fits > 0 {
                match q.append(fs, env, window.bytes as i64, window.count as i64) {
                    Ok(true) => {}
                    Ok(false) => *quota = None,
                    Err(e) => {
                        let first = self.waiting.front().map(|(m, _)| *m).unwrap_or_default();
                        self.abandon(fs, env);
                        return Err((e, first));
                    }
                }
            }
        }
        // One flush for all, where the filesystem can; if it cannot (or fails: then each
        // file's own flush tells which messages are safe), each file is flushed by itself.
        let flushed = fits > 1 && run_op(fs, env, Op::SyncAll).is_ok();
        let mut named = Usage::default();
        for _ in 0..fits {
            let Some((message, unsynced)) = self.waiting.pop_front() else {
                break;
            };
            let outcome: Outcome = if flushed {
                unsynced.finish_flushed(fs, env)
            } else {
                unsynced.finish(fs, env)
            };
            match outcome {
                Ok(d) => {
                    named = named.plus(Usage::message(d.size));
                    delivered(message, &d)
                }
                Err(e) => {
                    if let Some(q) = quota.as_mut() {
                        // Best effort: what stays over-counts until the next recalculation.
                        let (b, c) = (window.bytes - named.bytes, window.count - named.count);
                        let _ = q.append(fs, env, -(b as i64), -(c as i64));
                        q.usage = q.usage.plus(named);
                    }
                    self.abandon(fs, env);
                    return Err((e, message));
                }
            }
        }
        if let Some(q) = quota.as_mut() {
            q.usage = q.usage.plus(named);
        }
        match self.waiting.front().map(|(m, _)| *m) {
            Some(over) => {
                self.abandon(fs, env);
                Err((Error::new(ErrorKind::OverQuota, Phase::Check), over))
            }
            None => Ok(()),
        }
    }

    /// Removes every waiting message unnamed.
    fn abandon<E: Env + ?Sized>(&mut self, fs: &mut F, env: &mut E) {
        while let Some((_, unsynced)) = self.waiting.pop_front() {
            unsynced.abandon(fs, env);
        }
    }
}

/// Imports the mbox read from `input` into `fs`. `rbuf` is the mbox read buffer and `wbuf`
/// the message write buffer (their sizes are the read and write sizes; 64 KiB each is a good
/// choice); memory use does not grow with the mbox or its messages.
pub fn import<F, E, R, V>(
    fs: &mut F,
    env: &mut E,
    settings: &ImportOptions,
    input: R,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
    events: &mut V,
) -> Summary<R::Error>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read,
    V: ImportEvents + ?Sized,
{
    // The quota, checked once (a recalculation if `maildirsize` needs one).
    let mut quota = match settings.quota {
        None => None,
        Some(q) => match quota::check(fs, env, q, 0, wbuf) {
            Ok(c) if c.verdict == Verdict::NoQuota => None,
            Ok(c) => Some(Quota {
                limits: c.limits,
                usage: c.usage,
                base: q.base(),
            }),
            Err(error) => {
                return Summary {
                    delivered: 0,
                    bytes: 0,
                    empty: 0,
                    stop: Some(Stop::Deliver { error, number: 1 }),
                    flush: None,
                    unflushed: 0,
                    resume: Some(0),
                }
            }
        },
    };
    let mut reader = MboxReader::new(input, rbuf, settings.quoting);
    let opts = settings.delivery;
    let extra = opts.flags;
    let mut batch = Batch::default();
    let mut window = Window::<F>::new(opts);
    let (mut delivered, mut bytes, mut empty) = (0u64, 0u64, 0u64);
    let mut stop = None;
    // Where the rest of the mbox begins if the import stops now: the current message.
    let mut resume = 0u64;
    // Without file flushes: the quota stops the import at the next message.
    let mut full: Option<Error> = None;
    let mut layer = [0u8; LAYER];
    loop {
        let from_date = match reader.next_message() {
            Ok(None) => break,
            Ok(Some(envelope)) => envelope.timestamp(),
            Err(ReadError::Mbox(e)) => {
                resume = e.offset();
                stop = Some(Stop::Mbox(e));
                break;
            }
            Err(ReadError::Source(e)) => {
                // Between two messages: the previous one ended where the next `From ` line
                // began (a message ends only there, or at the end of the input).
                resume = reader.splitter().message_offset().max(resume);
                stop = Some(Stop::Read(e));
                break;
            }
        };
        let number = reader.messages();
        resume = reader.splitter().message_offset();
        if let Some(error) = full.take() {
            stop = Some(Stop::Deliver { error, number });
            break;
        }
        let message = (number, resume);
        let mut tap = Tap {
            inner: &mut reader,
            failed: None,
        };
        let filtered = Transformed::with_buffer(&mut tap, StatusFilter::new(), &mut layer[..]);
        let mut chain = Scanned::new(filtered, DateCapture::date());
        let outcome = deliver_until_sync(fs, env, opts, &mut chain, wbuf, |w| {
            let status = w.source.source_mut().transform().status();
            w.machine.set_flags(merge(status.maildir_info(), extra));
            let date = w.source.scanner().timestamp().or(from_date);
            if let Some(t) = date {
                w.machine.set_mtime(t);
            }
        });
        let outcome = match outcome {
            UntilSync::Unsynced(unsynced) => {
                window.push(message, unsynced);
                None
            }
            UntilSync::Done(outcome) => Some(outcome),
        };
        if window.is_full() || outcome.is_some() {
            // Finish the window first: messages are named in the order of the mbox.
            let finished = window.finish(fs, env, &mut quota, |message, d| {
                batch.add(message, d, &mut bytes, events);
            });
            if let Err((error, (number, offset))) = finished {
                resume = offset;
                stop = Some(Stop::Deliver { error, number });
                break;
            }
        }
        match outcome {
            None => {}
            Some(Ok(d)) => {
                batch.add(message, &d, &mut bytes, events);
                // Named without waiting (no file flush, `--no-fsync`): counted after the fact,
                // and the import stops after the message that reached the limit (or whose
                // line could not be written).
                if let Some(q) = quota.as_mut() {
                    q.usage = q.usage.plus(Usage::message(d.size));
                    let stopped = match q.append(fs, env, d.size as i64, 1) {
                        Ok(true) if q.limits.exceeded_by(q.usage.plus(Usage::message(1))) => {
                            Some(Error::new(ErrorKind::OverQuota, Phase::Check))
                        }
                        Ok(true) => None,
                        Ok(false) => {
                            quota = None;
                            None
                        }
                        Err(e) => Some(e),
                    };
                    full = stopped;
                }
            }
            Some(Err(e)) => match tap.failed.take() {
                Some(ReadError::Mbox(m)) => {
                    resume = m.offset();
                    stop = Some(Stop::Mbox(m));
                    break;
                }
                Some(ReadError::Source(s)) => {
                    stop = Some(Stop::Read(s));
                    break;
                }
                None if e.kind == ErrorKind::Data && e.phase == Phase::Read => {
                    // A `From ` line with nothing after it: no message to store.
                    empty += 1;
                    events.empty(number);
                }
                None => {
                    stop = Some(Stop::Deliver { error: e, number });
                    break;
                }
            },
        }
        if batch.count >= BATCH as u64 {
            match batch.commit(fs, env, events) {
                Ok(n) => delivered += n,
                Err(error) => {
                    // If the flush below succeeds after all, the rest begins at the first
                    // message not named: the window's first, else the one after this one
                    // (the next `From ` line, or the end of the input).
                    let next = reader.splitter().message_offset();
                    let after = if next > resume {
                        next
                    } else {
                        reader.position()
                    };
                    resume = window.first_offset().unwrap_or(after);
                    stop = Some(Stop::Deliver { error, number });
                    break;
                }
            }
        }
        events.progress(number, reader.position());
    }
    // What the window still holds was read completely: it is delivered, unless an earlier
    // message stopped the import (then it is removed).
    if stop
        .as_ref()
        .is_some_and(|s| matches!(s, Stop::Deliver { .. }))
    {
        window.abandon(fs, env);
    } else {
        let finished = window.finish(fs, env, &mut quota, |message, d| {
            batch.add(message, d, &mut bytes, events);
        });
        if let Err((error, (number, offset))) = finished {
            // Every message of the window comes before a stop that is not a delivery's.
            resume = offset;
            stop = Some(Stop::Deliver { error, number });
        }
    }
    events.reading_done();
    // After a failed batch flush above this tries once more: what it flushes is delivered.
    let unflushed = batch.count;
    let batch_start = batch.start;
    let flush = match batch.commit(fs, env, events) {
        Ok(n) => {
            delivered += n;
            None
        }
        Err(e) => Some(e),
    };
    let resume = match (flush.is_some(), batch_start, stop.is_some()) {
        // The unflushed batch is redone.
        (true, Some(start), _) => Some(start.min(resume)),
        (true, None, _) | (false, _, true) => Some(resume),
        (false, _, false) => None,
    };
    Summary {
        delivered,
        bytes,
        empty,
        stop,
        unflushed: if flush.is_some() { unflushed } else { 0 },
        flush,
        resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::deliver::Durability;
    use crate::testkit::{setup, Call, Hook, Hooked, MemFs, TestEnv};
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::format;
    use std::rc::Rc;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// One log shared by the filesystem and the events, so their order can be checked.
    type Log = Rc<RefCell<Vec<String>>>;

    /// The kit's [`MemFs`] with modification times that can be set (and fail), one scripted
    /// failure (the `nth` call of an operation), and a log of the flushes.
    type Probe = Hooked<MemFs, Watch>;

    struct Watch {
        log: Log,
        mtimes: BTreeMap<u64, i64>,
        mtime_fails: bool,
        /// Whether `sync_all` is supported.
        sync_all: bool,
        calls: BTreeMap<&'static str, u32>,
        fail: Option<(&'static str, u32, ErrorKind)>,
        /// A second scripted failure.
        also: Option<(&'static str, u32, ErrorKind)>,
    }

    impl Hook<MemFs> for Watch {
        fn before(&mut self, _: &mut MemFs, call: &mut Call<'_>) -> Result<(), ErrorKind> {
            let op = call.name();
            if let Call::SetMtime(id, secs) = *call {
                self.log.borrow_mut().push(format!("set_mtime {secs}"));
                if self.mtime_fails {
                    return Err(ErrorKind::Permission);
                }
                self.mtimes.insert(id.unwrap().1, secs);
                return Ok(());
            }
            if op == "sync_all" && !self.sync_all {
                return Err(ErrorKind::Unsupported);
            }
            let n = self.calls.entry(op).or_insert(0);
            *n += 1;
            let r = match (self.fail, self.also) {
                (Some((o, nth, kind)), _) | (_, Some((o, nth, kind))) if o == op && nth == *n => {
                    Err(kind)
                }
                _ => Ok(()),
            };
            let failed = if r.is_err() { " failed" } else { "" };
            match call {
                Call::SyncFile | Call::SyncAll => {
                    self.log.borrow_mut().push(format!("{op}{failed}"))
                }
                Call::SyncDir(d) => {
                    (self.log.borrow_mut()).push(format!("{op} {}{failed}", d.as_str()))
                }
                _ => {}
            }
            r
        }
    }

    fn probe(log: &Log) -> (Probe, TestEnv) {
        let (fs, env, _clock) = setup();
        let hook = Watch {
            log: log.clone(),
            mtimes: BTreeMap::new(),
            mtime_fails: false,
            sync_all: true,
            calls: BTreeMap::new(),
            fail: None,
            also: None,
        };
        (Hooked { fs, hook }, env)
    }

    /// `(name, contents, mtime set)` of every file in `dir`.
    fn files(p: &Probe, dir: Dir) -> Vec<(String, Vec<u8>, Option<i64>)> {
        p.fs.names
            .iter()
            .filter(|((d, _), _)| *d == dir)
            .map(|((_, n), ino)| {
                let data = p.fs.inodes[ino].data.clone();
                (n.clone(), data, p.hook.mtimes.get(ino).copied())
            })
            .collect()
    }

    /// Records the events into the shared log (progress only when `progress`).
    struct Events {
        log: Log,
        progress: bool,
    }

    impl ImportEvents for Events {
        fn written(&mut self, number: u64, d: &Delivered) {
            // The name's unique part varies (time, random bits): `N` stands for it.
            let name = d.name.as_str();
            let info = name.find(':').map_or("", |i| &name[i..]);
            let at = format!("{}/N{info}", d.dir.as_str());
            let sync = if d.needs_dir_sync {
                " (dir sync due)"
            } else {
                ""
            };
            let line = format!("written {number}: {} bytes -> {at}{sync}", d.size);
            self.log.borrow_mut().push(line);
        }
        fn committed(&mut self, count: u64) {
            self.log.borrow_mut().push(format!("committed {count}"));
        }
        fn empty(&mut self, number: u64) {
            self.log.borrow_mut().push(format!("empty {number}"));
        }
        fn leftover_tmp(&mut self, number: u64) {
            self.log.borrow_mut().push(format!("leftover_tmp {number}"));
        }
        fn progress(&mut self, number: u64, position: u64) {
            if self.progress {
                let line = format!("progress {number} at {position}");
                self.log.borrow_mut().push(line);
            }
        }
        fn reading_done(&mut self) {
            self.log.borrow_mut().push("reading_done".into());
        }
    }

    fn settings(extra: Option<&str>) -> ImportOptions {
        ImportOptions {
            quoting: Quoting::Mboxrd,
            delivery: Options {
                durability: Durability::DeferDirSync,
                flags: extra.map(|f| Flags::parse(f).unwrap()),
                ..Options::default()
            },
            quota: None,
        }
    }

    /// Imports `mbox` (read 7 bytes at a time) into `fs`; the summary and the log.
    fn run(
        fs: &mut Probe,
        env: &mut TestEnv,
        settings: &ImportOptions,
        mbox: &[u8],
        progress: bool,
    ) -> Summary<core::convert::Infallible> {
        let mut rbuf = [0u8; 64];
        let mut wbuf = [0u8; 32];
        let mut events = Events {
            log: fs.hook.log.clone(),
            progress,
        };
        let input = crate::mbox::Trickle::new(mbox, 7);
        import(fs, env, settings, input, &mut rbuf, &mut wbuf, &mut events)
    }

    fn lines(log: &Log) -> Vec<String> {
        log.borrow().clone()
    }

    #[test]
    fn merge_adds_extra_flags_and_keeps_new_without_either() {
        let f = |s: &str| Some(Flags::parse(s).unwrap());
        assert_eq!(merge(None, None), None);
        assert_eq!(merge(f(""), None), f(""));
        assert_eq!(merge(None, f("T")), f("T"));
        assert_eq!(merge(f("SF"), f("TS")), f("FST"));
    }

    const SMALL: &[u8] = b"From a@example.org Wed Dec 31 23:59:00 1969\n\
Subject: one\n\nbody 1\n\n\
From b@example.org Sat Nov 28 18:03:09 2026\n\
Subject: two\nStatus: RO\n\nbody 2\n>From here\n\n\
From c@example.org Sat Nov 28 18:03:09 2026\n\
Date: Sun, 9 Sep 2001 01:46:40 +0000\nX-Status: F\n\tD\nSubject: three\n\n\
body 3\n>>From there\n";

    /// Item 7 of issue 12: an import counts what it stores in `maildirsize`, one flushed line
    /// per window written before the window's messages are named, and stops at the first
    /// message that does not fit, naming its offset.
    #[test]
    fn an_import_counts_what_it_stores_and_stops_at_the_quota() {
        let quota = |limit: &[u8]| {
            let log = Log::default();
            let (mut fs, mut env) = probe(&log);
            let mut file = limit.to_vec();
            file.extend_from_slice(b"\n0 0\n");
            fs.fs.put(Dir::Root, MAILDIRSIZE, &file);
            let settings = ImportOptions {
                quota: Some(CheckOptions::default()),
                ..settings(None)
            };
            let (mut rbuf, mut wbuf) = ([0u8; 64], [0u8; 512]);
            let input = crate::mbox::Trickle::new(SMALL, 7);
            let s = import(
                &mut fs,
                &mut env,
                &settings,
                input,
                &mut rbuf,
                &mut wbuf,
                &mut (),
            );
            let file = fs.fs.get(Dir::Root, MAILDIRSIZE).unwrap().to_vec();
            let stored = files(&fs, Dir::New).len() + files(&fs, Dir::Cur).len();
            (s, String::from_utf8(file).unwrap(), stored)
        };
        // Everything fits: one line for the window of three (21 + 31 + 72 bytes).
        let (s, file, stored) = quota(b"1000S");
        assert!(s.stop.is_none(), "{:?}", s.stop);
        assert_eq!((s.delivered, stored), (3, 3));
        assert_eq!(file, "1000S\n0 0\n124 3\n");
        // 100 bytes: the first two fit (52), the third does not: nothing of it is stored,
        // and the rerun starts at its `From ` line (byte 154).
        let (s, file, stored) = quota(b"100S");
        match s.stop {
            Some(Stop::Deliver { error, number: 3 }) => {
                assert_eq!(error.kind, ErrorKind::OverQuota)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((s.delivered, stored, s.resume), (2, 2, Some(154)));
        assert_eq!(file, "100S\n0 0\n52 2\n");
        // A count limit too.
        let (s, file, _) = quota(b"1C");
        assert_eq!((s.delivered, s.resume), (1, Some(66)));
        assert_eq!(file, "1C\n0 0\n21 1\n");
    }

    #[test]
    fn a_small_mbox_is_stored_exactly_with_its_flags_dates_and_one_flush_per_directory() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let s = run(&mut fs, &mut env, &settings(None), SMALL, true);
        assert_eq!(
            (s.delivered, s.bytes, s.empty, s.unflushed),
            (3, 21 + 31 + 72, 0, 0)
        );
        assert!(s.stop.is_none() && s.flush.is_none());
        // Status: and X-Status: removed, mboxrd quoting undone, nothing else touched (Date:
        // stays).
        let new = files(&fs, Dir::New);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].1, b"Subject: one\n\nbody 1\n");
        assert!(!new[0].0.contains(':'), "no info in new/: {}", new[0].0);
        assert_eq!(new[0].2, Some(-60), "the envelope's date, before 1970");
        let mut cur = files(&fs, Dir::Cur);
        cur.sort_by_key(|(_, data, _)| data.len());
        assert_eq!(cur.len(), 2);
        assert_eq!(cur[0].1, b"Subject: two\n\nbody 2\nFrom here\n");
        assert!(cur[0].0.ends_with(":2,S"), "{}", cur[0].0);
        assert_eq!(cur[0].2, Some(1_795_888_989), "the envelope's date");
        assert_eq!(
            cur[1].1,
            b"Date: Sun, 9 Sep 2001 01:46:40 +0000\nSubject: three\n\nbody 3\n>From there\n"
        );
        assert!(cur[1].0.ends_with(":2,FT"), "{}", cur[1].0);
        assert_eq!(
            cur[1].2,
            Some(1_000_000_000),
            "Date: wins over the envelope"
        );
        assert!(files(&fs, Dir::Tmp).is_empty());
        // The window (all three) is flushed at once at the end, then named in order: each
        // message's data is flushed before it is named; the directories once, and only then
        // are the messages committed. Messages end at 66, 154 and 286; a message is over once
        // the next `From ` (5 bytes) has been read.
        assert_eq!(
            lines(&log),
            [
                "set_mtime -60",
                "progress 1 at 71",
                "set_mtime 1795888989",
                "progress 2 at 159",
                "set_mtime 1000000000",
                "progress 3 at 286",
                "sync_all",
                "written 1: 21 bytes -> new/N (dir sync due)",
                "written 2: 31 bytes -> cur/N:2,S (dir sync due)",
                "written 3: 72 bytes -> cur/N:2,FT (dir sync due)",
                "reading_done",
                "sync_dir new",
                "sync_dir cur",
                "committed 3",
            ]
        );
        assert_eq!(SMALL.len(), 286);
    }

    #[test]
    fn extra_flags_add_to_status_and_move_plain_messages_to_cur() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        fs.hook.mtime_fails = true;
        let s = run(&mut fs, &mut env, &settings(Some("T")), SMALL, false);
        assert_eq!(
            (s.delivered, s.bytes),
            (3, 124),
            "a failed set_mtime loses nothing"
        );
        assert!(files(&fs, Dir::New).is_empty());
        let mut infos: Vec<String> = files(&fs, Dir::Cur)
            .iter()
            .map(|(n, _, m)| {
                assert_eq!(*m, None);
                n[n.find(':').unwrap()..].to_string()
            })
            .collect();
        infos.sort();
        assert_eq!(infos, [":2,FT", ":2,ST", ":2,T"]);
        assert_eq!(
            lines(&log)
                .iter()
                .filter(|l| l.starts_with("sync_dir"))
                .count(),
            1,
            "only cur/ got messages"
        );
    }

    #[test]
    fn without_set_mtime_the_import_still_delivers() {
        let (mut mem, mut env, _clock) = setup();
        let mut rbuf = [0u8; 64];
        let mut wbuf = [0u8; 64];
        let s = import(
            &mut mem,
            &mut env,
            &settings(None),
            SMALL,
            &mut rbuf,
            &mut wbuf,
            &mut (),
        );
        assert_eq!((s.delivered, s.bytes), (3, 124));
        assert_eq!(mem.list(Dir::New).len() + mem.list(Dir::Cur).len(), 3);
    }

    #[test]
    fn a_malformed_mbox_stops_at_its_offset_and_keeps_what_came_before() {
        let mut mbox = SMALL[..154].to_vec();
        mbox.extend_from_slice(b"From ");
        mbox.extend_from_slice(&[b'x'; 2000]);
        mbox.extend_from_slice(b"\nSubject: lost\n\nbody\n");
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let s = run(&mut fs, &mut env, &settings(None), &mbox, false);
        assert_eq!((s.delivered, s.bytes), (2, 52));
        match s.stop {
            Some(Stop::Mbox(e)) => assert_eq!(e.offset(), 154),
            other => panic!("{other:?}"),
        }
        assert_eq!(files(&fs, Dir::New).len() + files(&fs, Dir::Cur).len(), 2);
        assert!(files(&fs, Dir::Tmp).is_empty());
        assert_eq!(lines(&log).last().unwrap(), "committed 2");
        // Not an mbox at all: nothing delivered, offset 0.
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let s = run(
            &mut fs,
            &mut env,
            &settings(None),
            b"Subject: x\n\ny\n",
            false,
        );
        assert!(matches!(s.stop, Some(Stop::Mbox(e)) if e.offset() == 0));
        assert_eq!((s.delivered, s.bytes), (0, 0));
        assert_eq!(lines(&log), ["reading_done"]);
    }

    #[test]
    fn a_read_error_stops_the_import_mid_message() {
        /// The mbox's first `n` bytes, then an I/O error.
        struct Broken<'a>(&'a [u8]);
        impl embedded_io::ErrorType for Broken<'_> {
            type Error = embedded_io::ErrorKind;
        }
        impl embedded_io::Read for Broken<'_> {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
                if self.0.is_empty() {
                    return Err(embedded_io::ErrorKind::Other);
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let (mut rbuf, mut wbuf) = ([0u8; 64], [0u8; 64]);
        let s = import(
            &mut fs,
            &mut env,
            &settings(None),
            Broken(&SMALL[..100]),
            &mut rbuf,
            &mut wbuf,
            &mut (),
        );
        assert!(matches!(
            s.stop,
            Some(Stop::Read(embedded_io::ErrorKind::Other))
        ));
        assert_eq!(s.delivered, 1);
        assert_eq!(files(&fs, Dir::New).len(), 1);
        assert!(files(&fs, Dir::Cur).is_empty() && files(&fs, Dir::Tmp).is_empty());
    }

    /// The stored messages' contents, sorted.
    fn stored(fs: &Probe) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = [Dir::New, Dir::Cur]
            .into_iter()
            .flat_map(|d| files(fs, d).into_iter().map(|(_, data, _)| data))
            .collect();
        all.sort();
        all
    }

    /// The mbox's first `n` bytes, then an I/O error.
    struct Cut<'a>(&'a [u8]);
    impl embedded_io::ErrorType for Cut<'_> {
        type Error = embedded_io::ErrorKind;
    }
    impl embedded_io::Read for Cut<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
            if self.0.is_empty() {
                return Err(embedded_io::ErrorKind::Other);
            }
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn every_stop_names_the_offset_from_which_a_rerun_stores_each_message_exactly_once() {
        let log = Log::default();
        let (mut clean, mut env) = probe(&log);
        assert_eq!(
            run(&mut clean, &mut env, &settings(None), SMALL, false).resume,
            None
        );
        let want = stored(&clean);
        // Then the rest, `SMALL[resume..]`, imported into the same maildir once the fault is
        // gone; `redo` when the failed flush leaves its batch to be done again.
        let check = |mut fs: Probe, mut env: TestEnv, resume: Option<u64>, redo: bool, what| {
            let at = resume.unwrap_or_else(|| panic!("{what}: a stop names no offset")) as usize;
            assert!(
                SMALL[at..].is_empty() || SMALL[at..].starts_with(b"From "),
                "{what}: {at}"
            );
            fs.hook.fail = None;
            let rest = run(&mut fs, &mut env, &settings(None), &SMALL[at..], false);
            assert!(rest.stop.is_none() && rest.flush.is_none(), "{what}");
            let mut got = stored(&fs);
            if redo {
                got.dedup();
            }
            assert_eq!(got, want, "{what}: resuming at byte {at}");
        };
        for (op, nth, kind) in [
            ("create", 1, ErrorKind::NoSpace),
            ("create", 2, ErrorKind::Quota),
            ("create", 3, ErrorKind::NoSpace),
            ("write", 1, ErrorKind::NoSpace),
            ("write", 4, ErrorKind::Io),
            ("write", 5, ErrorKind::NoSpace),
            ("sync_dir", 1, ErrorKind::Io),
            ("sync_dir", 2, ErrorKind::Io),
        ] {
            let log = Log::default();
            let (mut fs, mut env) = probe(&log);
            fs.hook.fail = Some((op, nth, kind));
            let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
            let what = format!("{op} #{nth} failing");
            assert!(
                s.stop.is_some() || s.flush.is_some(),
                "{what}: did not fail"
            );
            check(fs, env, s.resume, s.flush.is_some(), what);
        }
        for n in 0..SMALL.len() {
            let log = Log::default();
            let (mut fs, mut env) = probe(&log);
            let (mut rbuf, mut wbuf) = ([0u8; 64], [0u8; 32]);
            let input = Cut(&SMALL[..n]);
            let s = import(
                &mut fs,
                &mut env,
                &settings(None),
                input,
                &mut rbuf,
                &mut wbuf,
                &mut (),
            );
            assert!(matches!(s.stop, Some(Stop::Read(_))), "cut at {n}");
            check(fs, env, s.resume, false, format!("input cut at {n}"));
        }
    }

    #[test]
    fn a_tmp_file_that_cleanup_cannot_remove_is_named_in_the_error() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        // The filesystem goes read-only under the first message: its write fails, and so does
        // the unlink of its tmp/ file (POSIX: a named tmp/ file).
        fs.hook.fail = Some(("write", 1, ErrorKind::ReadOnly));
        fs.hook.also = Some(("unlink", 1, ErrorKind::ReadOnly));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        match s.stop {
            Some(Stop::Deliver { error, number: 1 }) => assert_eq!(
                error,
                Error::new(ErrorKind::ReadOnly, Phase::Write).with_left(Dir::Tmp)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            files(&fs, Dir::Tmp).len(),
            1,
            "what the error says is there"
        );
        // An unlink that finds nothing left nothing.
        let (mut fs, mut env) = probe(&log);
        fs.hook.fail = Some(("write", 1, ErrorKind::NoSpace));
        fs.hook.also = Some(("unlink", 1, ErrorKind::NotFound));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        match s.stop {
            Some(Stop::Deliver { error, .. }) => assert_eq!(error.left, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_message_is_skipped_and_counted() {
        let mut mbox = b"From nobody Sat Nov 28 18:03:09 2026\n\n".to_vec();
        mbox.extend_from_slice(&SMALL[..66]);
        mbox.extend_from_slice(b"From nobody Sat Nov 28 18:03:09 2026\n");
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let s = run(&mut fs, &mut env, &settings(None), &mbox, false);
        assert_eq!((s.delivered, s.bytes, s.empty), (1, 21, 2));
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(files(&fs, Dir::New)[0].1, b"Subject: one\n\nbody 1\n");
        assert!(files(&fs, Dir::Tmp).is_empty());
        assert_eq!(
            lines(&log),
            [
                "empty 1",
                "set_mtime -60",
                "sync_file",
                "written 2: 21 bytes -> new/N (dir sync due)",
                "empty 3",
                "reading_done",
                "sync_dir new",
                "committed 1",
            ]
        );
    }

    #[test]
    fn a_failed_delivery_stops_at_its_message_number() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        // Each message is created once in tmp/ (POSIX: no anonymous files).
        fs.hook.fail = Some(("create", 3, ErrorKind::NoSpace));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        match s.stop {
            Some(Stop::Deliver { error, number }) => {
                assert_eq!(
                    (error.kind, error.phase, number),
                    (ErrorKind::NoSpace, Phase::Create, 3)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (s.delivered, s.bytes),
            (2, 52),
            "the two before it are delivered"
        );
        assert!(s.flush.is_none());
        assert_eq!(files(&fs, Dir::New).len() + files(&fs, Dir::Cur).len(), 2);
        assert!(
            files(&fs, Dir::Tmp).is_empty(),
            "the failed message is cleaned up"
        );
        assert_eq!(
            lines(&log)[lines(&log).len() - 4..],
            [
                "reading_done",
                "sync_dir new",
                "sync_dir cur",
                "committed 2"
            ]
        );
    }

    /// An mbox of `n` one-line messages.
    fn numbered(n: usize) -> Vec<u8> {
        let mut mbox = Vec::new();
        for i in 1..=n {
            mbox.extend_from_slice(b"From a@example.org Sat Nov 28 18:03:09 2026\n");
            mbox.extend_from_slice(format!("Subject: {i}\n\nbody {i}\n\n").as_bytes());
        }
        mbox
    }

    /// The drivers import through an inactive `DryRun` (one filesystem type for every
    /// delivery): the window's one flush reaches the filesystem through it, and no file is
    /// flushed by itself.
    #[test]
    fn a_window_is_flushed_at_once_through_an_inactive_dry_run() {
        let log = Log::default();
        let (probe, mut env) = probe(&log);
        let mut fs = crate::fs::dryrun::DryRun::with(probe, false);
        let (mut rbuf, mut wbuf) = ([0u8; 64], [0u8; 32]);
        let input = crate::mbox::Trickle::new(SMALL, 7);
        let s = import(
            &mut fs,
            &mut env,
            &settings(None),
            input,
            &mut rbuf,
            &mut wbuf,
            &mut (),
        );
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(s.delivered, 3);
        let flushes: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| l.starts_with("sync"))
            .collect();
        assert_eq!(flushes, ["sync_all", "sync_dir new", "sync_dir cur"]);
    }

    #[test]
    fn a_window_is_flushed_together_once_it_is_full_and_named_in_mbox_order() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let n = WINDOW + 2;
        let s = run(&mut fs, &mut env, &settings(None), &numbered(n), false);
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(s.delivered, n as u64);
        let log = lines(&log);
        // One flush for each window (the second holds 2), after all of its messages were
        // written, none file by file.
        let flushes: Vec<usize> = (0..log.len()).filter(|&i| log[i] == "sync_all").collect();
        assert_eq!(flushes.len(), 2);
        let mtimes_before = |i: usize| {
            log[..i]
                .iter()
                .filter(|l| l.starts_with("set_mtime"))
                .count()
        };
        assert_eq!(
            (mtimes_before(flushes[0]), mtimes_before(flushes[1])),
            (WINDOW, n)
        );
        assert!(!log.iter().any(|l| l == "sync_file"));
        // Named in order, the window's first before the last window's messages were written.
        let written: Vec<usize> = log
            .iter()
            .filter_map(|l| l.strip_prefix("written "))
            .map(|l| l.split(':').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(written, (1..=n).collect::<Vec<_>>());
        let named = |number: usize| {
            let prefix = format!("written {number}:");
            log.iter().position(|l| l.starts_with(&prefix)).unwrap()
        };
        assert!(flushes[0] < named(1) && named(WINDOW) < flushes[1] && flushes[1] < named(n));
        let mut bodies: Vec<Vec<u8>> = files(&fs, Dir::New).into_iter().map(|f| f.1).collect();
        bodies.sort();
        let mut expected: Vec<Vec<u8>> = (1..=n)
            .map(|i| format!("Subject: {i}\n\nbody {i}\n").into_bytes())
            .collect();
        expected.sort();
        assert_eq!(bodies, expected);
    }

    #[test]
    fn a_failed_window_flush_falls_back_to_flushing_each_file() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        fs.hook.fail = Some(("sync_all", 1, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), &numbered(3), false);
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(s.delivered, 3);
        let flushes: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| l.starts_with("sync_"))
            .collect();
        assert_eq!(
            flushes,
            [
                "sync_all failed",
                "sync_file",
                "sync_file",
                "sync_file",
                "sync_dir new"
            ]
        );
    }

    #[test]
    fn a_failed_flush_in_a_window_delivers_exactly_the_messages_before_it() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        // File by file (no sync_all): the third message's flush fails.
        fs.hook.sync_all = false;
        fs.hook.fail = Some(("sync_file", 3, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), &numbered(5), false);
        match s.stop {
            Some(Stop::Deliver { error, number }) => {
                assert_eq!(
                    (error.kind, error.phase, number),
                    (ErrorKind::Io, Phase::SyncFile, 3)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.delivered, 2, "messages 1 and 2");
        // Messages 4 and 5 were written and waiting: they are removed, never named, so what is
        // delivered is a prefix of the mbox and a rerun from message 3's offset duplicates
        // nothing.
        let mut bodies: Vec<Vec<u8>> = files(&fs, Dir::New).into_iter().map(|f| f.1).collect();
        bodies.sort();
        assert_eq!(
            bodies,
            [&b"Subject: 1\n\nbody 1\n"[..], b"Subject: 2\n\nbody 2\n"]
        );
        assert!(files(&fs, Dir::Tmp).is_empty(), "nothing left in tmp/");
        assert_eq!(
            lines(&log)
                .iter()
                .filter(|l| l.starts_with("sync_file"))
                .count(),
            3,
            "4 and 5 are not flushed"
        );
    }

    #[test]
    fn a_second_name_left_in_tmp_is_reported_and_the_message_still_delivered() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        // POSIX publishes by link + unlink: the first message's tmp name stays.
        fs.hook.fail = Some(("unlink", 1, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(s.delivered, 3);
        let tmp = files(&fs, Dir::Tmp);
        assert_eq!(tmp.len(), 1);
        assert_eq!(tmp[0].1, files(&fs, Dir::New)[0].1);
        let log = lines(&log);
        let at = log.iter().position(|l| l == "leftover_tmp 1").unwrap();
        assert!(log[at - 1].starts_with("written 1: "), "{log:?}");
        assert_eq!(log.iter().filter(|l| l.starts_with("leftover")).count(), 1);
    }

    #[test]
    fn a_failed_final_flush_delivers_nothing_and_counts_the_unflushed() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        fs.hook.fail = Some(("sync_dir", 2, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        assert!(s.stop.is_none());
        assert_eq!(s.flush, Some(Error::new(ErrorKind::Io, Phase::SyncDir)));
        assert_eq!((s.delivered, s.bytes, s.unflushed), (0, 124, 3));
        assert!(!lines(&log).iter().any(|l| l.starts_with("committed")));
        assert_eq!(lines(&log).last().unwrap(), "sync_dir cur failed");
    }

    /// An mbox of `n` one-line messages.
    fn many(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(format!("From x Sat Nov 28 18:03:09 2026\nS: {i}\n\n").as_bytes());
        }
        v
    }

    #[test]
    fn directories_are_flushed_once_per_batch() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        let s = run(&mut fs, &mut env, &settings(None), &many(BATCH + 3), false);
        assert_eq!(s.delivered, BATCH as u64 + 3);
        let flushes: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| {
                l.starts_with("sync_dir") || l.starts_with("committed") || l == "reading_done"
            })
            .collect();
        assert_eq!(
            flushes,
            [
                "sync_dir new",
                "committed 1024",
                "reading_done",
                "sync_dir new",
                "committed 3"
            ]
        );
        assert_eq!(files(&fs, Dir::New).len(), BATCH + 3);
    }

    #[test]
    fn a_failed_batch_flush_stops_the_import_and_is_tried_again_at_the_end() {
        let log = Log::default();
        let (mut fs, mut env) = probe(&log);
        fs.hook.fail = Some(("sync_dir", 1, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), &many(BATCH + 3), false);
        match s.stop {
            Some(Stop::Deliver { error, number }) => {
                assert_eq!(error, Error::new(ErrorKind::Io, Phase::SyncDir));
                assert_eq!(number, BATCH as u64, "the message that filled the batch");
            }
            other => panic!("{other:?}"),
        }
        // The retry at the end succeeded: the batch is delivered, nothing after it was read.
        assert!(s.flush.is_none());
        assert_eq!(s.delivered, BATCH as u64);
        assert_eq!(files(&fs, Dir::New).len(), BATCH);
        let flushes: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| {
                !l.starts_with("written")
                    && !l.starts_with("set_")
                    && !matches!(l.as_str(), "sync_file" | "sync_all")
            })
            .collect();
        assert_eq!(
            flushes,
            [
                "sync_dir new failed",
                "reading_done",
                "sync_dir new",
                "committed 1024"
            ]
        );
    }
}
