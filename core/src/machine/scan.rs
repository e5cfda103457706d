//! The reader's side of a maildir, sans-io: a listing that stays complete while other readers
//! rename messages ([`Scan`]), and the rename a reader does to move a message new/→cur/ or
//! change its flags without ever clobbering ([`Move`]).
//!
//! # Why listings need more than one pass
//! POSIX leaves it unspecified whether `readdir` returns an entry added or removed after
//! `opendir`, and a rename is an add plus a remove: a message whose flags another reader
//! changes during our listing can appear under its old name, its new name, both, or neither
//! (ext4 hash order; btrfs never returns names created after `opendir`). So [`Scan`] lists
//! new/ and then cur/ (a new/→cur/ move during the pass is then always seen at least once),
//! keys every entry by its unique key (so a message seen under two names counts once), and
//! repeats the pass until one pass sees again every key the previous one saw (keys it sees for
//! the first time, such as new arrivals, do not make it repeat).
//!
//! Guarantee (checked exhaustively by the simulator): every message present throughout the
//! scan is reported exactly once, provided no single message is renamed inside cur/ during two
//! consecutive passes (a message being renamed forever cannot be listed without a lock).
//! When [`ScanOptions::max_passes`] runs out first, the summary says `stable: false`.
//!
//! # Why the driver holds the keys
//! The core has no allocator, and a maildir can hold any number of messages, so the machine
//! cannot keep the set of keys it has seen. The driver lends it a [`KeySet`] on every
//! [`Scan::feed`]: a `HashMap` in the CLI, a fixed array ([`FixedKeySet`]) on a
//! microcontroller, a `BTreeMap` in the simulator. The machine itself stays a few counters,
//! so it can be cloned, compared and interleaved with other machines.

use crate::env::{Env, NoEnv};
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Dir, Fs, Op, OpResult};
use crate::machine::{run, Machine};
use crate::maildir::flags::Flags;
use crate::maildir::name::{emit_with_flags, InfoSep, NameBuf, ParsedName, NAME_MAX};

/// How a [`KeySet`] had seen a key before the current pass.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mark {
    /// Never seen before.
    First,
    /// Seen in the previous pass, not yet in this one.
    LastPass,
    /// Seen in some pass before the previous one, not in the previous one, not yet in this one.
    Earlier,
    /// Already seen in this pass (under another name, or the same name returned twice).
    ThisPass,
}

/// The driver's storage for the keys a [`Scan`] has seen: one record per unique key, holding
/// the last pass that saw it and the name it was seen under then.
pub trait KeySet {
    /// Records that pass `pass` found message `key` as `dir/name`, and says how the key had
    /// been seen before. On [`Mark::First`], [`Mark::LastPass`] and [`Mark::Earlier`] the
    /// record's pass, dir and name are updated; on [`Mark::ThisPass`] the first sighting stays.
    /// Fails (e.g. with [`ErrorKind::NoSpace`]) when the storage is full.
    fn mark(&mut self, pass: u32, key: &str, dir: Dir, name: &str) -> Result<Mark, ErrorKind>;
}

/// A [`KeySet`] in a fixed array of `N` records, for drivers without an allocator (linear
/// search: meant for small maildirs).
#[derive(Clone, Debug, Default)]
pub struct FixedKeySet<const N: usize> {
    records: heapless::Vec<KeyRecord, N>,
}

/// One record of a [`FixedKeySet`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRecord {
    /// The unique key.
    pub key: NameBuf,
    /// Where it was last seen.
    pub dir: Dir,
    /// Under which name.
    pub name: NameBuf,
    /// In which pass.
    pub pass: u32,
}

impl<const N: usize> FixedKeySet<N> {
    /// An empty set.
    pub const fn new() -> Self {
        FixedKeySet {
            records: heapless::Vec::new(),
        }
    }

    /// The messages the final pass (`summary.final_pass`) saw: the scan's result.
    pub fn current(&self, final_pass: u32) -> impl Iterator<Item = &KeyRecord> {
        self.records.iter().filter(move |r| r.pass == final_pass)
    }
}

impl<const N: usize> KeySet for FixedKeySet<N> {
    fn mark(&mut self, pass: u32, key: &str, dir: Dir, name: &str) -> Result<Mark, ErrorKind> {
        let fill = |r: &mut KeyRecord| -> Result<(), ErrorKind> {
            r.dir = dir;
            r.name.clear();
            r.name.push_str(name).map_err(|_| ErrorKind::NameTooLong)?;
            r.pass = pass;
            Ok(())
        };
        if let Some(r) = self.records.iter_mut().find(|r| r.key == key) {
            let mark = classify(r.pass, pass);
            if mark != Mark::ThisPass {
                fill(r)?;
            }
            return Ok(mark);
        }
        let mut r = KeyRecord {
            key: NameBuf::new(),
            dir,
            name: NameBuf::new(),
            pass,
        };
        r.key.push_str(key).map_err(|_| ErrorKind::NameTooLong)?;
        fill(&mut r)?;
        self.records.push(r).map_err(|_| ErrorKind::NoSpace)?;
        Ok(Mark::First)
    }
}

/// How a key last seen in pass `last` relates to the current pass `pass` (a helper for
/// [`KeySet`] implementations).
pub const fn classify(last: u32, pass: u32) -> Mark {
    if last == pass {
        Mark::ThisPass
    } else if last.wrapping_add(1) == pass {
        Mark::LastPass
    } else {
        Mark::Earlier
    }
}

/// Scan options.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScanOptions {
    /// The info separator used to find each name's unique key.
    pub sep: InfoSep,
    /// Passes tried before giving up on stability (the summary then says `stable: false`).
    pub max_passes: u32,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            sep: InfoSep::COLON,
            max_passes: 8,
        }
    }
}

/// What a finished scan found. The messages themselves are the [`KeySet`] records whose pass
/// is `final_pass`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScanSummary {
    /// Passes made.
    pub passes: u32,
    /// The pass whose keys are the result.
    pub final_pass: u32,
    /// Distinct messages the final pass saw.
    pub messages: u32,
    /// Whether the final pass saw again every key of the pass before it (it may have seen
    /// more).
    pub stable: bool,
    /// Names the final pass saw that are not UTF-8 (a file copied from an old system): not
    /// keyed, so not in `messages` nor in the driver's key set, but counted here so that no
    /// file goes unreported.
    pub foreign: u32,
}

/// What a [`Scan`] wants next: a listing operation ([`Op::OpenDir`], [`Op::NextEntry`],
/// [`Op::CloseDir`]) to perform and [`Scan::feed`], or its summary.
pub type ScanStep = crate::machine::Step<'static, Result<ScanSummary, Error>>;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum ScanState {
    Open(Dir),
    Next(Dir),
    Close(Dir),
    Finished,
}

/// A complete, duplicate-free listing of new/ and cur/ (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scan {
    opts: ScanOptions,
    state: ScanState,
    pass: u32,
    /// Distinct keys the previous pass saw.
    prev_count: u32,
    /// Distinct keys this pass saw so far.
    count: u32,
    /// Keys of the previous pass this pass has seen again.
    carried: u32,
    /// Names this pass saw that are not UTF-8.
    foreign: u32,
    error: Option<Error>,
    result: Option<Result<ScanSummary, Error>>,
}

impl Scan {
    /// A scan with these options.
    pub fn new(opts: ScanOptions) -> Scan {
        Scan {
            opts,
            state: ScanState::Open(Dir::New),
            pass: 0,
            prev_count: 0,
            count: 0,
            carried: 0,
            foreign: 0,
            error: None,
            result: None,
        }
    }

    /// The pass in progress (0-based).
    pub fn pass(&self) -> u32 {
        self.pass
    }

    /// The next step. Calling it again without feeding returns the same step.
    pub fn poll(&self) -> ScanStep {
        match self.state {
            ScanState::Open(dir) => ScanStep::Op(Op::OpenDir { dir }),
            ScanState::Next(_) => ScanStep::Op(Op::NextEntry),
            ScanState::Close(_) => ScanStep::Op(Op::CloseDir),
            ScanState::Finished => ScanStep::Done(
                self.result
                    .unwrap_or(Err(Error::new(ErrorKind::Io, Phase::Open))),
            ),
        }
    }

    /// Reports the result of the step last returned by [`poll`](Self::poll). After
    /// [`OpResult::Entry`], `entry` is the name read; `keys` is the driver's key storage.
    pub fn feed<K: KeySet + ?Sized>(&mut self, result: OpResult, entry: &[u8], keys: &mut K) {
        match self.state {
            ScanState::Open(dir) => match result {
                OpResult::Err(e) => self.finish(Err(Error::new(e, Phase::Open))),
                _ => self.state = ScanState::Next(dir),
            },
            ScanState::Next(dir) => match result {
                OpResult::Entry => {
                    let Ok(entry) = core::str::from_utf8(entry) else {
                        if entry.first() != Some(&b'.') {
                            self.foreign += 1;
                        }
                        return;
                    };
                    let Ok(parsed) = ParsedName::parse(entry, self.opts.sep) else {
                        return; // dot files and the like are not messages
                    };
                    match keys.mark(self.pass, parsed.key, dir, entry) {
                        Ok(Mark::ThisPass) => {}
                        Ok(Mark::LastPass) => {
                            self.count += 1;
                            self.carried += 1;
                        }
                        Ok(Mark::First | Mark::Earlier) => self.count += 1,
                        Err(e) => {
                            self.error = Some(Error::new(e, Phase::Read));
                            self.state = ScanState::Close(dir);
                        }
                    }
                }
                OpResult::Err(ErrorKind::Interrupted) => {}
                OpResult::Err(e) => {
                    self.error = Some(Error::new(e, Phase::Read));
                    self.state = ScanState::Close(dir);
                }
                _ => self.state = ScanState::Close(dir),
            },
            ScanState::Close(dir) => {
                if let Some(e) = self.error {
                    self.finish(Err(e));
                } else if dir == Dir::New {
                    self.state = ScanState::Open(Dir::Cur);
                } else {
                    self.end_pass();
                }
            }
            ScanState::Finished => {}
        }
    }

    fn end_pass(&mut self) {
        // Settled when this pass saw again every key the previous pass saw. Keys it saw for
        // the first time do not unsettle it: they are new arrivals, or messages the previous
        // pass missed and this one has now listed; either way they are in the listing. (With
        // deliveries arriving all the time, "no new key" would never hold.) What no pair of
        // passes can rule out is a message missed by both; see the module docs.
        let stable = self.pass > 0 && self.carried == self.prev_count;
        let summary = ScanSummary {
            passes: self.pass + 1,
            final_pass: self.pass,
            messages: self.count,
            stable,
            foreign: self.foreign,
        };
        if stable || self.pass + 1 >= self.opts.max_passes {
            self.finish(Ok(summary));
        } else {
            self.pass += 1;
            self.prev_count = self.count;
            self.count = 0;
            self.carried = 0;
            self.foreign = 0;
            self.state = ScanState::Open(Dir::New);
        }
    }

    fn finish(&mut self, r: Result<ScanSummary, Error>) {
        self.result = Some(r);
        self.state = ScanState::Finished;
    }
}

/// A [`Scan`] with the driver's key storage: the [`Machine`] that [`run`] drives.
pub struct Keyed<'k, K: ?Sized> {
    /// The scan.
    pub scan: Scan,
    /// Where it records the messages it sees.
    pub keys: &'k mut K,
}

impl<K: KeySet + ?Sized> Machine for Keyed<'_, K> {
    type Output = Result<ScanSummary, Error>;
    fn poll(&self) -> ScanStep {
        self.scan.poll()
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], _env: &mut E) {
        self.scan.feed(result, data, self.keys)
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

/// Runs a [`Scan`] to completion on `fs`, recording messages in `keys`.
pub fn scan<F, K>(fs: &mut F, keys: &mut K, opts: ScanOptions) -> Result<ScanSummary, Error>
where
    F: Fs + ?Sized,
    K: KeySet + ?Sized,
{
    let scan = Scan::new(opts);
    let mut name = [0u8; NAME_MAX];
    run(
        &mut Keyed { scan, keys },
        fs,
        &mut NoEnv,
        &mut &b""[..],
        &mut name,
    )
}

/// What a [`Move`] wants next: an operation to perform and [`Move::feed`], or where the
/// message now is.
pub type MoveStep<'a> = crate::machine::Step<'a, Result<Dir, Error>>;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum MoveState {
    Rename,
    CheckTarget,
    PlainRename,
    Open(Dir),
    Next(Dir),
    Close(Dir),
    Finished,
}

/// A reader's move of one message to cur/ with given flags (new/→cur/, or a flag change inside
/// cur/), never clobbering: `rename` with no-replace; if the message is gone from the name we
/// knew (another reader moved it), it is found again by its unique key in new/ and cur/ and
/// the rename retried. Where no-replace rename is unsupported, the target is checked with
/// `stat` and a plain rename used (safe while keys are unique: the only file that can have the
/// target name is this message).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Move {
    sep: InfoSep,
    key: NameBuf,
    from_dir: Dir,
    from: NameBuf,
    to: NameBuf,
    noreplace: bool,
    state: MoveState,
    attempts: u32,
    found: bool,
    result: Option<Result<Dir, Error>>,
}

/// How many times a [`Move`] looks for a message that keeps moving.
pub const MOVE_ATTEMPTS: u32 = 8;

impl Move {
    /// Moves `dir/name` to `cur/` with `flags`. With `noreplace` false the machine uses the
    /// stat-checked plain rename from the start (filesystems without no-replace rename).
    pub fn new(dir: Dir, name: &str, flags: Flags, sep: InfoSep, noreplace: bool) -> Move {
        let mut m = Move {
            sep,
            key: NameBuf::new(),
            from_dir: dir,
            from: NameBuf::new(),
            to: NameBuf::new(),
            noreplace,
            state: MoveState::Rename,
            attempts: 0,
            found: false,
            result: None,
        };
        let _ = m.from.push_str(name);
        match ParsedName::parse(name, sep) {
            Ok(p) => {
                let _ = m.key.push_str(p.key);
                match emit_with_flags(p.key, Some(flags), sep) {
                    Ok(to) => m.to = to,
                    Err(_) => m.finish(Err(Error::new(ErrorKind::NameTooLong, Phase::Publish))),
                }
            }
            Err(_) => m.finish(Err(Error::new(ErrorKind::Usage, Phase::Check))),
        }
        if !noreplace && m.result.is_none() {
            m.state = MoveState::CheckTarget;
        }
        if m.from_dir == Dir::Cur && m.from == m.to && m.result.is_none() {
            m.finish(Ok(Dir::Cur));
        }
        m
    }

    /// The message's name in cur/ once moved.
    pub fn target(&self) -> &str {
        &self.to
    }

    /// The next step. Calling it again without feeding returns the same step.
    pub fn poll(&self) -> MoveStep<'_> {
        let from = (self.from_dir, self.from.as_str());
        let to = (Dir::Cur, self.to.as_str());
        match self.state {
            MoveState::Rename => MoveStep::Op(Op::Rename {
                from,
                to,
                noreplace: true,
            }),
            MoveState::CheckTarget => MoveStep::Op(Op::Stat {
                dir: Dir::Cur,
                name: &self.to,
            }),
            MoveState::PlainRename => MoveStep::Op(Op::Rename {
                from,
                to,
                noreplace: false,
            }),
            MoveState::Open(dir) => MoveStep::Op(Op::OpenDir { dir }),
            MoveState::Next(_) => MoveStep::Op(Op::NextEntry),
            MoveState::Close(_) => MoveStep::Op(Op::CloseDir),
            MoveState::Finished => MoveStep::Done(
                self.result
                    .unwrap_or(Err(Error::new(ErrorKind::Io, Phase::Publish))),
            ),
        }
    }

    /// Reports the result of the operation last polled, with the name a `NextEntry` read.
    pub fn feed(&mut self, result: OpResult, entry: &[u8]) {
        match self.state {
            MoveState::Open(_) | MoveState::Next(_) | MoveState::Close(_) => {
                self.on_list(result, entry)
            }
            _ => self.on_op(result),
        }
    }

    fn on_op(&mut self, result: OpResult) {
        let err = match result {
            OpResult::Err(e) => Some(e),
            _ => None,
        };
        match self.state {
            MoveState::Rename | MoveState::PlainRename => match err {
                None => self.finish(Ok(Dir::Cur)),
                Some(ErrorKind::Interrupted) => {}
                // The target name exists: it carries our key, so it is this very message,
                // already moved there by someone else.
                Some(ErrorKind::Exists) => self.finish(Ok(Dir::Cur)),
                Some(ErrorKind::Unsupported) if self.state == MoveState::Rename => {
                    self.noreplace = false;
                    self.state = MoveState::CheckTarget;
                }
                Some(ErrorKind::NotFound) => self.search(),
                Some(e) => self.finish(Err(Error::new(e, Phase::Publish))),
            },
            MoveState::CheckTarget => match result {
                OpResult::Err(ErrorKind::NotFound) => self.state = MoveState::PlainRename,
                OpResult::Stat(_) => self.finish(Ok(Dir::Cur)),
                _ => self.finish(Err(Error::new(
                    err.unwrap_or(ErrorKind::Io),
                    Phase::Publish,
                ))),
            },
            _ => {}
        }
    }

    fn on_list(&mut self, result: OpResult, entry: &[u8]) {
        match self.state {
            MoveState::Open(dir) => match result {
                OpResult::Err(e) => self.finish(Err(Error::new(e, Phase::Read))),
                _ => self.state = MoveState::Next(dir),
            },
            MoveState::Next(dir) => match result {
                OpResult::Entry => {
                    // Our key is a name's start: a name that is not UTF-8 is not this message.
                    let entry = core::str::from_utf8(entry).unwrap_or("");
                    if let Ok(p) = ParsedName::parse(entry, self.sep) {
                        if p.key == self.key.as_str() && !self.found {
                            self.found = true;
                            self.from_dir = dir;
                            self.from.clear();
                            let _ = self.from.push_str(entry);
                            self.state = MoveState::Close(dir);
                        }
                    }
                }
                OpResult::Err(ErrorKind::Interrupted) => {}
                _ => self.state = MoveState::Close(dir),
            },
            MoveState::Close(dir) => {
                if self.found {
                    if self.from_dir == Dir::Cur && self.from == self.to {
                        self.finish(Ok(Dir::Cur));
                    } else if self.noreplace {
                        self.state = MoveState::Rename;
                    } else {
                        self.state = MoveState::CheckTarget;
                    }
                } else if dir == Dir::New {
                    self.state = MoveState::Open(Dir::Cur);
                } else {
                    // Listed both directories without finding it: it was expunged, or it
                    // moved again while we listed; try again a bounded number of times.
                    self.search();
                }
            }
            _ => {}
        }
    }

    fn search(&mut self) {
        self.attempts += 1;
        if self.attempts > MOVE_ATTEMPTS {
            self.finish(Err(Error::new(ErrorKind::NotFound, Phase::Publish)));
        } else {
            self.found = false;
            self.state = MoveState::Open(Dir::New);
        }
    }

    fn finish(&mut self, r: Result<Dir, Error>) {
        self.result = Some(r);
        self.state = MoveState::Finished;
    }
}

impl Machine for Move {
    type Output = Result<Dir, Error>;
    fn poll(&self) -> MoveStep<'_> {
        Move::poll(self)
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], _env: &mut E) {
        Move::feed(self, result, data)
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

/// Runs a [`Move`] to completion on `fs`.
pub fn move_message<F: Fs + ?Sized>(fs: &mut F, mut machine: Move) -> Result<Dir, Error> {
    let mut name = [0u8; NAME_MAX];
    run(&mut machine, fs, &mut NoEnv, &mut &b""[..], &mut name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one pass: `new` then `cur` listings.
    fn pass(s: &mut Scan, keys: &mut FixedKeySet<8>, new: &[&str], cur: &[&str]) {
        for (dir, names) in [(Dir::New, new), (Dir::Cur, cur)] {
            assert_eq!(s.poll(), ScanStep::Op(Op::OpenDir { dir }));
            s.feed(OpResult::Done, b"", keys);
            for n in names {
                assert_eq!(s.poll(), ScanStep::Op(Op::NextEntry));
                s.feed(OpResult::Entry, n.as_bytes(), keys);
            }
            assert_eq!(s.poll(), ScanStep::Op(Op::NextEntry));
            s.feed(OpResult::End, b"", keys);
            assert_eq!(s.poll(), ScanStep::Op(Op::CloseDir));
            s.feed(OpResult::Done, b"", keys);
        }
    }

    #[test]
    fn repeats_until_a_pass_sees_the_same_keys() {
        let mut keys = FixedKeySet::<8>::new();
        let mut s = Scan::new(ScanOptions::default());
        // Pass 0 misses b (renamed mid-listing); sees a twice (new/ and cur/, mid-move).
        pass(&mut s, &mut keys, &["a"], &["a:2,S", "c:2,"]);
        // Pass 1 sees again every key of pass 0 (a, c) and finds b: settled, b included.
        pass(&mut s, &mut keys, &[], &["a:2,S", "b:2,F", "c:2,"]);
        let ScanStep::Done(Ok(sum)) = s.poll() else {
            panic!("{:?}", s.poll())
        };
        assert_eq!(
            sum,
            ScanSummary {
                passes: 2,
                final_pass: 1,
                messages: 3,
                stable: true,
                foreign: 0
            }
        );
        let names: std::vec::Vec<&str> = keys.current(1).map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a:2,S", "c:2,", "b:2,F"]);
    }

    #[test]
    fn same_count_but_different_keys_is_not_stable() {
        let mut keys = FixedKeySet::<8>::new();
        let mut s = Scan::new(ScanOptions {
            max_passes: 3,
            ..ScanOptions::default()
        });
        pass(&mut s, &mut keys, &[], &["a:2,"]);
        pass(&mut s, &mut keys, &[], &["b:2,"]);
        pass(&mut s, &mut keys, &[], &["a:2,"]);
        // a was last seen two passes ago: "Earlier", a change; max_passes ends it unstable.
        let ScanStep::Done(Ok(sum)) = s.poll() else {
            panic!()
        };
        assert!(!sum.stable);
        assert_eq!(classify(0, 2), Mark::Earlier);
        assert_eq!(classify(1, 2), Mark::LastPass);
        assert_eq!(classify(2, 2), Mark::ThisPass);
    }

    #[test]
    fn move_finds_the_message_again_when_it_moved() {
        let f = Flags::parse("S").unwrap();
        let mut m = Move::new(Dir::New, "k,S=3", f, InfoSep::COLON, true);
        assert_eq!(m.target(), "k,S=3:2,S");
        m.feed(OpResult::Err(ErrorKind::NotFound), b"");
        assert_eq!(m.poll(), MoveStep::Op(Op::OpenDir { dir: Dir::New }));
        m.feed(OpResult::Done, b"");
        m.feed(OpResult::End, b"");
        m.feed(OpResult::Done, b"");
        assert_eq!(m.poll(), MoveStep::Op(Op::OpenDir { dir: Dir::Cur }));
        m.feed(OpResult::Done, b"");
        m.feed(OpResult::Entry, b"other:2,");
        m.feed(OpResult::Entry, b"k,S=3:2,F");
        assert_eq!(m.poll(), MoveStep::Op(Op::CloseDir));
        m.feed(OpResult::Done, b"");
        let MoveStep::Op(Op::Rename { from, .. }) = m.poll() else {
            panic!()
        };
        assert_eq!(from, (Dir::Cur, "k,S=3:2,F"));
        m.feed(OpResult::Done, b"");
        assert_eq!(m.poll(), MoveStep::Done(Ok(Dir::Cur)));
    }
}
