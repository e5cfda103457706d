//! Exactly-once delivery across MTA retries: the duplicate-suppression index, sans-io.
//!
//! # What it is for
//! An MTA that hands us a message and then crashes (or loses our exit status) before it
//! records the success will hand us the same message again. With `--dedup`, a message whose
//! key (its Message-ID, else the sha256 of its content: [`Key`]) was stored within the window
//! is not stored again: the delivery succeeds as a suppressed duplicate.
//!
//! # The index
//! One small file per key in the maildir root, `mdeliver-dedup.<32 hex digits of the key>`
//! ([`Key::entry_name`]), holding append-only records, one per line:
//! ```text
//! R <secs> <token> <prev>       a reservation (holder `token`, superseding holder `prev` or -)
//! I <token> <new|cur> <name>    an intent: the holder is about to publish this name
//! C <secs> <token> <new|cur> <name>   committed: stored under this name at `secs`
//! ```
//! Every record is written as `\n<body> *<8 hex>\n` in one `O_APPEND` write: the checksum
//! (the first four bytes of the body's sha256) rejects a record torn by a crash or power loss,
//! and the leading newline keeps a later record off a torn line. A record that matters is
//! fsynced before anything depends on it; on a filesystem that commits in order (ext4,
//! [`Dedup::with_write_back`]) the records before the publish and the entry's name are made
//! durable by the publish's directory flush instead, which commits them first.
//!
//! # The protocol (reserve → intent → publish → commit)
//! The message is first written to tmp/ and synced (the [`Delivery`] machine), so its content
//! and key are known and the reservation is held only for the last few system calls. Then:
//! 1. **Reserve**: create the entry with `O_EXCL` and write an `R` record (fsync the file and
//!    the root). Exactly one of any number of concurrent deliverers of the key creates it; the
//!    others *inspect* it.
//! 2. **Intent**: just before each publish (link/rename into new/ or cur/), append
//!    `I <name>` and fsync; then check the lease: a holder never publishes later than
//!    `reserved + lease` by its clock. If the entry is gone (expired and collected) or the
//!    lease ran out, the publish is not attempted (the message is not stored; temporary
//!    failure).
//! 3. **Publish** (the delivery machine), including its directory fsync.
//! 4. **Commit**: append `C <name>` and fsync. A delivery that failed before any intent removes
//!    the entry; one that failed after an intent leaves it to recovery (it may have published).
//!
//! *Inspecting* an existing entry:
//! - committed within the window: **duplicate** (nothing written, success reported);
//! - committed longer ago than the window: taken over (below), so the message is stored anew;
//! - reserved and the holder's lease (plus a margin for clock skew and the gap between the
//!   lease check and the publish call) has not run out: another deliverer is at work. Poll
//!   until it commits (duplicate) or gives up (removed: reserve again); after
//!   [`DedupOptions::wait_ms`] fail temporarily (`Busy`): the MTA's retry finds it committed;
//! - reserved and the lease has run out: the holder is dead or will never publish. Every
//!   intent it recorded is checked: the name in its directory, else any name in cur/ with the
//!   same base (the name before its first `,`: a reader may have moved it, flagged it, or
//!   added fields such as mbsync's `,U=`). Present: **duplicate**. Absent:
//!   the holder never published, so **take over**.
//!
//! *Taking over* appends `R <secs> <mine> <prev>` naming the holder it supersedes, fsyncs, and
//! re-reads: records are ordered by `O_APPEND`, and an `R` is valid only if `prev` is the
//! holder at that point in the file, so of several concurrent recoverers exactly the first
//! becomes holder; the others see a live holder and wait. The file is never replaced or
//! renamed, so no deliverer can act on an entry that was swapped under it.
//!
//! # Why this gives "stored exactly once"
//! - *Our crash before publishing*: the entry is reserved (maybe with intents), nothing is in
//!   new/ or cur/. A retry waits out the lease, finds no intent present, takes over, stores.
//! - *Our crash after publishing, before commit*: the intent was synced before the publish, so
//!   a retry (after the lease) finds the message by its recorded name: duplicate.
//! - *The MTA's crash after our success*: the entry is committed: duplicate within the window.
//! - *Concurrent deliverers of one message*: one `O_EXCL` create (or one valid takeover) wins;
//!   the rest wait for its commit. Only a holder publishes, and only inside its lease, and a
//!   takeover happens only after the lease, so no two holders ever publish.
//! - *Power loss*: the `R` record and the entry's directory entry are synced before the
//!   holder writes anything else, the intent before the publish, the publish before the commit
//!   (the delivery machine's directory fsync). A record lost with the crash belongs to a step
//!   whose successors never happened.
//!
//! Assumptions, stated: `O_EXCL` is atomic (local filesystems and NFSv3, not NFSv2), and so is
//! `O_APPEND` where deliverers append at the same time. NFS does not make `O_APPEND` atomic
//! between hosts (each client writes at the size it last fetched); there the drivers choose
//! the `Locked` delivery, whose maildir lock is held while the index is reserved, taken over
//! and given its intent, so those appends come one at a time (the composed explorer's NFS rows
//! model appends that overwrite each other). Also: clocks of deliverers agree within
//! [`DedupOptions::margin_secs`], and a holder that passed
//! its lease check issues the publish call within that margin. A message a user deletes
//! before a recovery looks "absent" to that recovery, so a crashed delivery's retry may
//! store it again; a committed entry suppresses regardless.
//!
//! # Bounded size
//! Before reserving, a collection pass (on one delivery in [`DedupOptions::gc_every`], 32 by
//! default, chosen from the environment's entropy) lists the root and removes entries
//! untouched for `window + lease + margin` (their keys are free anyway). The pass stats every
//! entry, so it is not run on every delivery: a maildir that receives a thousand messages a day
//! keeps some five thousand entries in a five-day window, and on a network filesystem each
//! stat is a round trip. Expired entries therefore stay a little longer; exactly-once does not
//! depend on collection. When a pass counts more than [`DedupOptions::max_entries`] live
//! entries, that delivery's new key is not indexed: the message is delivered without
//! suppression ([`Finished::Unindexed`]) rather than deferred. Only a collecting delivery
//! counts, so the bound is checked one delivery in `gc_every`. Entry files
//! stay small (a few records); one larger than [`MAX_ENTRY`] bytes is likewise treated as
//! unindexable. Residual race, stated: collection's `stat` and `unlink` are two system calls;
//! an entry revived in between (taken over after expiry) is removed, and its holder then fails
//! its intent (entry gone) and defers, unless it already published, in which case it recreates
//! the entry at commit.
//!
//! # Drivers
//! [`Dedup`] is polled like the delivery machine, until it says [`DedupStep::Go`] or finishes;
//! the composed MTA machine ([`crate::machine::mta::Mta`]) runs it beside a [`Delivery`]: it
//! intercepts the delivery's publish operations ([`Op::publish_target`]), reserves at the
//! first, records an intent before each, and commits after success.
//!
//! [`Delivery`]: crate::machine::deliver::Delivery

use core::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Channel, Dir, Op, OpResult, Persist};
use crate::maildir::name::{InfoSep, NameBuf, ParsedName};

/// Prefix of every index entry's name in the maildir root.
pub const ENTRY_PREFIX: &str = "mdeliver-dedup.";

/// An entry file larger than this is not interpreted (see "Bounded size").
pub const MAX_ENTRY: usize = 4096;

/// A duplicate-suppression key: sha256 over a tagged Message-ID or content digest.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key of a message with this Message-ID (as [`normalize_message_id`] returns it).
    pub fn from_message_id(id: &[u8]) -> Key {
        let mut h = Sha256::new();
        h.update(b"mdeliver-dedup message-id\0");
        h.update(id);
        Key(h.finalize().into())
    }

    /// The key of a message without a Message-ID, from the sha256 of its bytes.
    pub fn from_content_digest(digest: [u8; 32]) -> Key {
        let mut h = Sha256::new();
        h.update(b"mdeliver-dedup content\0");
        h.update(digest);
        Key(h.finalize().into())
    }

    /// The entry's file name in the maildir root: the prefix and 128 bits of the key in hex.
    pub fn entry_name(&self) -> heapless::String<48> {
        let mut s = heapless::String::new();
        let _ = s.push_str(ENTRY_PREFIX);
        for b in &self.0[..16] {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// The longest Message-ID kept by [`MessageIdScanner`]; a longer one is ignored (the content
/// hash is used instead).
pub const MAX_MESSAGE_ID: usize = 256;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum MidState {
    LineStart,
    Name { idx: u8, matching: bool },
    Value,
    Skip,
    Done,
}

/// Finds the first `Message-ID:` field in a message header fed in chunks of any size: field
/// names case-insensitively, folded values unfolded, CRLF or LF, bounded state. Stops at the
/// end of the header.
#[derive(Clone, Debug)]
pub struct MessageIdScanner {
    state: MidState,
    capturing: bool,
    found: bool,
    overflow: bool,
    value: heapless::Vec<u8, MAX_MESSAGE_ID>,
}

impl Default for MessageIdScanner {
    fn default() -> Self {
        MessageIdScanner::new()
    }
}

const MID: &[u8; 10] = b"message-id";

impl MessageIdScanner {
    /// A scanner at the start of a message.
    pub fn new() -> MessageIdScanner {
        MessageIdScanner {
            state: MidState::LineStart,
            capturing: false,
            found: false,
            overflow: false,
            value: heapless::Vec::new(),
        }
    }

    /// Whether the scan is over (the field was read whole, or the header ended).
    pub fn is_done(&self) -> bool {
        self.state == MidState::Done
    }

    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.state == MidState::Done {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        self.state = match self.state {
            MidState::LineStart => match b {
                b'\n' => MidState::Done,
                b'\r' => MidState::LineStart,
                b' ' | b'\t' if self.capturing => {
                    self.push(b' ');
                    MidState::Value
                }
                b' ' | b'\t' => MidState::Skip,
                _ => {
                    if self.capturing {
                        self.capturing = false;
                        self.found = true;
                        self.state = MidState::Done;
                        return;
                    }
                    MidState::Name {
                        idx: 1,
                        matching: b.to_ascii_lowercase() == MID[0],
                    }
                }
            },
            MidState::Name { idx, matching } => match b {
                b':' if matching && usize::from(idx) == MID.len() && !self.found => {
                    self.capturing = true;
                    MidState::Value
                }
                b':' => MidState::Skip,
                b'\n' => MidState::LineStart,
                _ => MidState::Name {
                    idx: idx.saturating_add(1),
                    matching: matching
                        && usize::from(idx) < MID.len()
                        && b.to_ascii_lowercase() == MID[usize::from(idx)],
                },
            },
            MidState::Value => match b {
                b'\n' => MidState::LineStart,
                b'\r' => MidState::Value,
                _ => {
                    self.push(b);
                    MidState::Value
                }
            },
            MidState::Skip => match b {
                b'\n' => MidState::LineStart,
                _ => MidState::Skip,
            },
            MidState::Done => MidState::Done,
        };
        if self.state == MidState::Done && self.capturing {
            self.capturing = false;
            self.found = true;
        }
    }

    fn push(&mut self, b: u8) {
        if self.value.push(b).is_err() {
            self.overflow = true;
        }
    }

    /// The Message-ID found so far, normalized ([`normalize_message_id`]); `None` when there
    /// is none, it is empty, or it was too long.
    pub fn message_id(&self) -> Option<&[u8]> {
        if self.overflow || !(self.found || self.capturing) {
            return None;
        }
        normalize_message_id(&self.value)
    }
}

/// The `<...>` part of a Message-ID field value (the first one), or the value without blanks
/// when it has no angle brackets; `None` when that is empty.
pub fn normalize_message_id(value: &[u8]) -> Option<&[u8]> {
    if let Some(start) = value.iter().position(|&b| b == b'<') {
        if let Some(len) = value[start..].iter().position(|&b| b == b'>') {
            let id = &value[start..start + len + 1];
            return (id.len() > 2).then_some(id);
        }
    }
    let trimmed = value.trim_ascii();
    (!trimmed.is_empty() && !trimmed.contains(&b' ')).then_some(trimmed)
}

/// Derives a message's key while it streams past: its Message-ID if the header has one, else
/// the sha256 of all its bytes.
#[derive(Clone, Debug, Default)]
pub struct KeyDeriver {
    mid: MessageIdScanner,
    hash: Sha256,
}

impl KeyDeriver {
    /// A deriver at the start of a message.
    pub fn new() -> KeyDeriver {
        KeyDeriver::default()
    }

    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.mid.feed(chunk);
        self.hash.update(chunk);
    }

    /// The key, once the whole message was fed.
    pub fn key(&self) -> Key {
        match self.mid.message_id() {
            Some(id) => Key::from_message_id(id),
            None => Key::from_content_digest(self.hash.clone().finalize().into()),
        }
    }
}

/// A reader that derives the key of what is read through it.
pub struct KeyingReader<'a, R: ?Sized> {
    /// The message source.
    pub inner: &'a mut R,
    /// The key being derived.
    pub deriver: KeyDeriver,
}

impl<R: embedded_io::ErrorType + ?Sized> embedded_io::ErrorType for KeyingReader<'_, R> {
    type Error = R::Error;
}

impl<R: embedded_io::Read + ?Sized> embedded_io::Read for KeyingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.inner.read(buf)?;
        self.deriver.feed(&buf[..n]);
        Ok(n)
    }
}

/// Protocol parameters.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupOptions {
    /// How long a stored message suppresses its duplicates, seconds.
    pub window_secs: u64,
    /// How long after reserving a holder may still publish, seconds.
    pub lease_secs: u64,
    /// Allowance for clock differences and the lease-check-to-publish gap, seconds.
    pub margin_secs: u64,
    /// Interval between looks at an entry another deliverer holds.
    pub poll_ms: u32,
    /// How long to wait for another deliverer before failing temporarily.
    pub wait_ms: u32,
    /// Live entries beyond which new keys are not indexed.
    pub max_entries: u32,
    /// Run the collection pass on one delivery in this many (1: always; 0: never).
    pub gc_every: u32,
    /// The info separator of names in cur/.
    pub sep: InfoSep,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            // Postfix's default maximal_queue_lifetime: no MTA retry comes later than this.
            window_secs: 5 * 24 * 3600,
            lease_secs: 300,
            margin_secs: 60,
            poll_ms: 200,
            wait_ms: 10_000,
            max_entries: 50_000,
            // The pass stats every entry of the window (a busy maildir keeps thousands): on
            // every delivery it made each one cost as much as the mail of the last five days.
            gc_every: 32,
            sep: InfoSep::COLON,
        }
    }
}

/// How a dedup run ended.
// Names travel by value: there is no heap to box them in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Finished {
    /// The message was already stored within the window: do not store it (exit 0, say so).
    Duplicate {
        /// Where the earlier copy was recorded (`None` if the committing record lacks it).
        dir: Option<Dir>,
        /// Its name then.
        name: NameBuf,
    },
    /// Committed: the message is stored and indexed.
    Stored {
        /// The commit found the entry gone and recreated it.
        recreated: bool,
    },
    /// The delivery failed before publishing; the reservation was given up.
    Released,
    /// The index is full or the entry unreadable: deliver without suppression.
    Unindexed,
}

/// The result of a dedup run.
pub type DedupOutcome = Result<Finished, Error>;

/// What a [`Dedup`] machine wants next.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DedupStep<'a> {
    /// Perform this and [`Dedup::feed`] the result.
    Op(Op<'a>),
    /// The reservation is held (after [`Dedup::new`]) or the intent is recorded (after
    /// [`Dedup::intent`]): go ahead with the delivery, or with the publish.
    Go,
    /// Finished.
    Done(DedupOutcome),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum State {
    GcOpen,
    GcNext,
    GcStat,
    GcUnlink,
    GcClose,
    Reserve,
    ReserveProbe,
    ReserveSyncDir,
    InspectStat,
    InspectRead,
    Wait,
    IntentRead(u32),
    IntentStat(u32),
    IntentListOpen(u32),
    IntentListNext(u32),
    IntentListClose(u32, bool),
    TakeoverAppend,
    TakeoverRead,
    Holding,
    IntentAppend,
    Publishing,
    CommitAppend,
    RecreateCreate,
    ReleaseUnlink,
    Finished,
}

/// One record, parsed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Record<'a> {
    Reserve {
        secs: u64,
        token: u64,
        prev: Option<u64>,
    },
    Intent {
        dir: Dir,
        name: &'a str,
    },
    Commit {
        secs: u64,
        dir: Dir,
        name: &'a str,
    },
}

fn checksum(body: &[u8]) -> [u8; 4] {
    let d = Sha256::digest(body);
    [d[0], d[1], d[2], d[3]]
}

fn parse_hex_u64(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
}

fn parse_dir(s: &str) -> Option<Dir> {
    match s {
        "new" => Some(Dir::New),
        "cur" => Some(Dir::Cur),
        _ => None,
    }
}

fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let line = core::str::from_utf8(line).ok()?;
    let (body, sum) = line.rsplit_once(" *")?;
    let want = checksum(body.as_bytes());
    if sum.len() != 8 || u32::from_str_radix(sum, 16).ok()? != u32::from_be_bytes(want) {
        return None;
    }
    let mut f = body.split(' ');
    let rec = match f.next()? {
        "R" => Record::Reserve {
            secs: f.next()?.parse().ok()?,
            token: parse_hex_u64(f.next()?)?,
            prev: match f.next()? {
                "-" => None,
                t => Some(parse_hex_u64(t)?),
            },
        },
        "I" => {
            let _token = parse_hex_u64(f.next()?)?;
            Record::Intent {
                dir: parse_dir(f.next()?)?,
                name: f.next()?,
            }
        }
        "C" => {
            let secs = f.next()?.parse().ok()?;
            let _token = parse_hex_u64(f.next()?)?;
            Record::Commit {
                secs,
                dir: parse_dir(f.next()?)?,
                name: f.next()?,
            }
        }
        _ => return None,
    };
    f.next().is_none().then_some(rec)
}

fn records(data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    data.split(|&b| b == b'\n').filter_map(parse_record)
}

/// What an entry says, folded over its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct EntryView {
    holder: Option<(u64, u64)>,
    committed: Option<(u64, Option<Dir>, NameBuf)>,
    intents: u32,
}

fn view(data: &[u8]) -> EntryView {
    let mut v = EntryView::default();
    for r in records(data) {
        match r {
            Record::Reserve { secs, token, prev } => {
                if prev == v.holder.map(|(_, t)| t) {
                    v.holder = Some((secs, token));
                    // A takeover starts a new life of the key: earlier commits are expired.
                    v.committed = None;
                    v.intents = 0;
                }
            }
            Record::Intent { .. } => v.intents += 1,
            Record::Commit { secs, dir, name } => {
                let mut n = NameBuf::new();
                let _ = n.push_str(name);
                v.committed = Some((secs, Some(dir), n));
            }
        }
    }
    v
}

/// The `i`th intent after the holder's reservation.
fn nth_intent(data: &[u8], i: u32) -> Option<(Dir, &str)> {
    let mut holder: Option<u64> = None;
    let mut seen = 0;
    let mut found = None;
    for r in records(data) {
        match r {
            Record::Reserve { token, prev, .. } if prev == holder => {
                holder = Some(token);
                seen = 0;
                found = None;
            }
            Record::Intent { dir, name } => {
                if seen == i {
                    found = Some((dir, name));
                }
                seen += 1;
            }
            _ => {}
        }
    }
    found
}

/// A record line, ready to append.
type RecordBuf = heapless::String<400>;

fn emit_record(body: core::fmt::Arguments<'_>) -> RecordBuf {
    let mut b: heapless::String<300> = heapless::String::new();
    let _ = b.write_fmt(body);
    let sum = checksum(b.as_bytes());
    let mut out = RecordBuf::new();
    let _ = write!(out, "\n{} *{:08x}\n", b, u32::from_be_bytes(sum));
    out
}

/// The duplicate-suppression protocol for one message (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dedup {
    opts: DedupOptions,
    entry: heapless::String<48>,
    state: State,
    token: u64,
    reserved_secs: u64,
    holder_seen: Option<u64>,
    entry_mtime: u64,
    waited_ms: u32,
    reserve_attempts: u32,
    live: u32,
    full: bool,
    intents_made: u32,
    name: NameBuf,
    target: Option<(Dir, NameBuf)>,
    record: RecordBuf,
    result: Option<DedupOutcome>,
    dir_sync: bool,
    write_back: bool,
}

/// Whether `dir/name` fits a record and reads back unchanged (one field, at most
/// [`NAME_MAX`](crate::maildir::name::NAME_MAX) bytes).
fn recordable(dir: Dir, name: &str) -> bool {
    matches!(dir, Dir::New | Dir::Cur)
        && !name.is_empty()
        && name.len() <= crate::maildir::name::NAME_MAX
        && !name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

fn dir_str(d: Dir) -> &'static str {
    d.as_str()
}

impl Dedup {
    /// A machine for a message with this key; starts with collection (when due) and the
    /// reservation. Poll it until [`DedupStep::Go`] (deliver) or [`DedupStep::Done`].
    pub fn new<E: Env + ?Sized>(key: Key, opts: DedupOptions, env: &mut E) -> Dedup {
        let gc = opts.gc_every != 0 && env.random_u64() % u64::from(opts.gc_every) < 1;
        let mut d = Dedup {
            opts,
            entry: key.entry_name(),
            state: State::GcOpen,
            token: env.random_u64(),
            reserved_secs: 0,
            holder_seen: None,
            entry_mtime: 0,
            waited_ms: 0,
            reserve_attempts: 0,
            live: 0,
            full: false,
            intents_made: 0,
            name: NameBuf::new(),
            target: None,
            record: RecordBuf::new(),
            result: None,
            dir_sync: true,
            write_back: false,
        };
        if !gc {
            d.enter_reserve(env.now().secs);
        }
        d
    }

    /// Makes the reservation record for `now` and tries to create the entry with it.
    fn enter_reserve(&mut self, now: u64) {
        self.reserved_secs = now;
        self.record = emit_record(format_args!("R {} {:016x} -", now, self.token));
        self.state = State::Reserve;
    }

    /// Tells the machine whether the filesystem can flush a directory
    /// ([`crate::Capabilities::dir_sync`]); without, the new entry's directory is not flushed
    /// (the host's filesystem decides when it is durable, as for the message itself).
    pub fn with_dir_sync(mut self, dir_sync: bool) -> Dedup {
        self.dir_sync = dir_sync;
        self
    }

    /// Tells the machine that the filesystem commits in order
    /// ([`crate::Capabilities::ordered_commit`]) and that the publish is followed by a flush
    /// of its directory: then the records that must be durable before the publish (the
    /// reservation, a takeover, the intent) are written back instead of flushed, and that
    /// flush makes them durable with the name, the new entry's name in the root included
    /// (one journal commits every operation before the publish with it). The commit record,
    /// which follows the publish, is flushed.
    pub fn with_write_back(mut self, write_back: bool) -> Dedup {
        self.write_back = write_back;
        self
    }

    /// Whether the machine has finished.
    pub fn is_done(&self) -> bool {
        self.state == State::Finished
    }

    /// The entry's file name.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The next step. Calling it again without feeding returns the same step.
    pub fn poll(&self) -> DedupStep<'_> {
        let entry = self.entry.as_str();
        let root_entry = |name| Op::Stat {
            dir: Dir::Root,
            name,
        };
        // What must be durable before the publish: the publish's own commit makes it so
        // where the filesystem orders commits.
        let before_publish = if self.write_back {
            Persist::WriteBack
        } else {
            Persist::Flush
        };
        let append = |persist| {
            DedupStep::Op(Op::Append {
                dir: Dir::Root,
                name: entry,
                data: self.record.as_bytes(),
                persist,
            })
        };
        match self.state {
            State::GcOpen => DedupStep::Op(Op::OpenDir { dir: Dir::Root }),
            State::GcNext | State::IntentListNext(_) => DedupStep::Op(Op::NextEntry),
            State::GcClose | State::IntentListClose(..) => DedupStep::Op(Op::CloseDir),
            State::GcStat => DedupStep::Op(root_entry(self.name.as_str())),
            State::GcUnlink => DedupStep::Op(Op::Unlink {
                dir: Dir::Root,
                name: self.name.as_str(),
            }),
            State::Reserve | State::RecreateCreate => DedupStep::Op(Op::WriteFile {
                dir: Dir::Root,
                name: entry,
                data: self.record.as_bytes(),
                // Recreated after the publish, with its commit: no later flush commits it.
                persist: if self.state == State::Reserve {
                    before_publish
                } else {
                    Persist::Flush
                },
                anonymous: false,
            }),
            State::ReserveProbe | State::InspectStat => DedupStep::Op(root_entry(entry)),
            State::ReserveSyncDir => DedupStep::Op(Op::SyncDir { dir: Dir::Root }),
            State::InspectRead | State::IntentRead(_) | State::TakeoverRead => {
                DedupStep::Op(Op::Read {
                    dir: Dir::Root,
                    name: entry,
                })
            }
            State::Wait => DedupStep::Op(Op::Sleep {
                millis: self.opts.poll_ms,
            }),
            State::IntentStat(_) => match &self.target {
                Some((d, n)) => DedupStep::Op(Op::Stat {
                    dir: *d,
                    name: n.as_str(),
                }),
                None => DedupStep::Done(Err(Error::new(ErrorKind::Io, Phase::Check))),
            },
            State::IntentListOpen(_) => DedupStep::Op(Op::OpenDir { dir: Dir::Cur }),
            State::TakeoverAppend | State::IntentAppend => append(before_publish),
            State::CommitAppend => append(Persist::Flush),
            State::Holding | State::Publishing => DedupStep::Go,
            State::ReleaseUnlink => DedupStep::Op(Op::Unlink {
                dir: Dir::Root,
                name: entry,
            }),
            State::Finished => DedupStep::Done(
                self.result
                    .clone()
                    .unwrap_or(Err(Error::new(ErrorKind::Io, Phase::Check))),
            ),
        }
    }

    /// Records that the holder is about to publish `dir/name`; poll until [`DedupStep::Go`]
    /// (publish) or [`DedupStep::Done`] with an error (do not publish: abandon the delivery).
    pub fn intent<E: Env + ?Sized>(&mut self, dir: Dir, name: &str, _env: &mut E) {
        if !matches!(self.state, State::Holding | State::Publishing) {
            return self.fail(ErrorKind::Io);
        }
        if !recordable(dir, name) {
            // An intent that could not be read back must not be followed by a publish.
            return self.fail(ErrorKind::NameTooLong);
        }
        self.record = emit_record(format_args!(
            "I {:016x} {} {}",
            self.token,
            dir_str(dir),
            name
        ));
        self.state = State::IntentAppend;
    }

    /// Records that the delivery succeeded as `dir/name` (after its directory sync).
    pub fn committed<E: Env + ?Sized>(&mut self, dir: Dir, name: &str, env: &mut E) {
        if !matches!(self.state, State::Holding | State::Publishing) {
            return self.fail(ErrorKind::Io);
        }
        let now = env.now().secs;
        self.record = emit_record(format_args!(
            "C {} {:016x} {} {}",
            now,
            self.token,
            dir_str(dir),
            name
        ));
        self.name.clear();
        let _ = self.name.push_str(name);
        self.target = Some((dir, self.name.clone()));
        self.state = State::CommitAppend;
    }

    /// Records that the delivery failed. Without any intent the reservation is removed; after
    /// one it stays for recovery, since the publish may have happened.
    pub fn abandoned<E: Env + ?Sized>(&mut self, _env: &mut E) {
        if self.intents_made == 0 && matches!(self.state, State::Holding | State::Publishing) {
            self.state = State::ReleaseUnlink;
        } else {
            self.finish(Finished::Released);
        }
    }

    /// Reports the result of the [`Op`] last returned by [`poll`](Self::poll), with the bytes
    /// it read (a `Read`: the entry's start; a `NextEntry`: the name).
    pub fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        let channel = match self.poll() {
            DedupStep::Op(op) => op.channel(),
            _ => Channel::Plain,
        };
        match channel {
            Channel::Plain => self.on_op(result, env),
            Channel::File => self.on_file(result, data, env),
            Channel::List => self.on_list(result, data, env),
        }
    }

    fn on_op<E: Env + ?Sized>(&mut self, result: OpResult, env: &mut E) {
        let now = env.now().secs;
        match self.state {
            State::GcStat => match result {
                OpResult::Stat(s) if s.regular && self.expired_idle(s.mtime, now) => {
                    self.state = State::GcUnlink
                }
                OpResult::Stat(_) => {
                    self.live += 1;
                    self.state = State::GcNext;
                }
                _ => self.state = State::GcNext,
            },
            State::GcUnlink => self.state = State::GcNext,
            State::ReserveProbe => match result {
                OpResult::Stat(_) => self.state = State::InspectStat,
                OpResult::Err(ErrorKind::NotFound) => self.finish(Finished::Unindexed),
                r => self.fail(err_of(r)),
            },
            State::ReserveSyncDir => match result {
                OpResult::Done => self.state = State::Holding,
                r => self.fail(err_of(r)),
            },
            State::InspectStat => match result {
                OpResult::Stat(s) if s.regular => {
                    self.entry_mtime = s.mtime;
                    self.state = State::InspectRead;
                }
                OpResult::Stat(_) => self.fail(ErrorKind::NotDirectory),
                OpResult::Err(ErrorKind::NotFound) => self.reserve_again(now),
                r => self.fail(err_of(r)),
            },
            State::Wait => {
                self.waited_ms = self.waited_ms.saturating_add(self.opts.poll_ms);
                if self.waited_ms > self.opts.wait_ms {
                    self.fail(ErrorKind::Busy);
                } else {
                    self.state = State::InspectStat;
                }
            }
            State::IntentStat(i) => match result {
                OpResult::Stat(_) => self.duplicate_of_intent(),
                OpResult::Err(ErrorKind::NotFound) => self.state = State::IntentListOpen(i),
                r => self.fail(err_of(r)),
            },
            State::ReleaseUnlink => self.finish(Finished::Released),
            _ => self.fail(ErrorKind::Io),
        }
    }

    fn on_file<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        let now = env.now().secs;
        let data = match result {
            OpResult::Read(n) => &data[..n.min(data.len())],
            _ => &[][..],
        };
        match (self.state, result) {
            // Where commits are ordered, the publish's own directory flush commits the entry's
            // name too: nothing is published before it, and nothing after it is durable
            // without it.
            (State::Reserve, OpResult::Done) if self.dir_sync && !self.write_back => {
                self.state = State::ReserveSyncDir
            }
            (State::Reserve, OpResult::Done) => self.state = State::Holding,
            (State::Reserve, OpResult::Err(ErrorKind::Exists)) => self.state = State::InspectStat,
            (State::RecreateCreate, OpResult::Done) => {
                self.finish(Finished::Stored { recreated: true })
            }
            (State::RecreateCreate, _) => self.finish(Finished::Stored { recreated: false }),
            (State::InspectRead, OpResult::Read(_)) => self.inspect(data, now),
            (State::IntentRead(i), OpResult::Read(_)) => match nth_intent(data, i) {
                Some((d, n)) => {
                    self.name.clear();
                    let _ = self.name.push_str(n);
                    self.target = Some((d, self.name.clone()));
                    self.state = State::IntentStat(i);
                }
                None => self.take_over_from(self.holder_seen, now),
            },
            (State::TakeoverRead, OpResult::Read(_)) => {
                let v = view(data);
                if v.holder.map(|(_, t)| t) == Some(self.token) {
                    self.reserved_secs = v.holder.map_or(now, |(s, _)| s);
                    self.state = State::Holding;
                } else {
                    self.state = State::InspectStat;
                }
            }
            (State::TakeoverAppend, OpResult::Done) => self.state = State::TakeoverRead,
            (State::IntentAppend, OpResult::Done) => {
                self.intents_made += 1;
                if now < self.reserved_secs.saturating_add(self.opts.lease_secs) {
                    self.state = State::Publishing;
                } else {
                    self.fail(ErrorKind::Busy);
                }
            }
            (State::IntentAppend, OpResult::Err(ErrorKind::NotFound)) => self.fail(ErrorKind::Busy),
            (State::CommitAppend, OpResult::Done) => {
                self.finish(Finished::Stored { recreated: false })
            }
            (State::CommitAppend, OpResult::Err(ErrorKind::NotFound)) => {
                // The entry was collected meanwhile: make it again, reservation and commit.
                if let Some((d, n)) = self.target.clone() {
                    let r = emit_record(format_args!(
                        "R {} {:016x} -",
                        self.reserved_secs, self.token
                    ));
                    let c = emit_record(format_args!(
                        "C {} {:016x} {} {}",
                        now,
                        self.token,
                        dir_str(d),
                        n
                    ));
                    self.record.clear();
                    let _ = self.record.push_str(&r);
                    let _ = self.record.push_str(&c);
                }
                self.state = State::RecreateCreate
            }
            (State::CommitAppend, OpResult::Err(_)) => {
                // The intent already covers the stored message; the commit only saves a
                // recovery from checking it.
                self.finish(Finished::Stored { recreated: false })
            }
            (
                State::InspectRead | State::IntentRead(_) | State::TakeoverRead,
                OpResult::Err(ErrorKind::NotFound),
            )
            | (State::TakeoverAppend, OpResult::Err(ErrorKind::NotFound)) => {
                self.reserve_again(now)
            }
            (_, OpResult::Err(e)) => self.fail(e),
            _ => self.fail(ErrorKind::Io),
        }
    }

    fn on_list<E: Env + ?Sized>(&mut self, result: OpResult, entry: &[u8], env: &mut E) {
        // Our entries and our message names are ASCII: a name that is not UTF-8 is someone
        // else's file, passed over.
        let entry = core::str::from_utf8(entry).unwrap_or("");
        match (self.state, result) {
            (State::GcOpen, OpResult::Done) => self.state = State::GcNext,
            (State::GcOpen, OpResult::Err(_)) => self.enter_reserve(env.now().secs),
            (State::GcNext, OpResult::Entry) => {
                if entry.starts_with(ENTRY_PREFIX) && entry.len() < NameBuf::new().capacity() {
                    self.name.clear();
                    let _ = self.name.push_str(entry);
                    self.state = State::GcStat;
                }
            }
            (State::GcNext, OpResult::End) => self.state = State::GcClose,
            (State::GcNext, OpResult::Err(_)) => self.state = State::GcClose,
            (State::GcClose, _) => {
                self.full = self.live >= self.opts.max_entries;
                if self.full {
                    self.state = State::ReserveProbe;
                } else {
                    self.enter_reserve(env.now().secs);
                }
            }
            (State::IntentListOpen(i), OpResult::Done) => self.state = State::IntentListNext(i),
            (State::IntentListNext(i), OpResult::Entry) => {
                let want = self
                    .target
                    .as_ref()
                    .and_then(|(_, n)| ParsedName::parse(n, self.opts.sep).ok())
                    .map(|p| p.base);
                let have = ParsedName::parse(entry, self.opts.sep).ok().map(|p| p.base);
                if want.is_some() && want == have {
                    self.state = State::IntentListClose(i, true);
                }
            }
            (State::IntentListNext(i), OpResult::End) => {
                self.state = State::IntentListClose(i, false)
            }
            (State::IntentListClose(i, found), OpResult::Done) => {
                if found {
                    self.duplicate_of_intent();
                } else {
                    self.state = State::IntentRead(i + 1);
                }
            }
            (_, OpResult::Err(e)) => self.fail(e),
            _ => self.fail(ErrorKind::Io),
        }
    }

    fn expired_idle(&self, mtime: u64, now: u64) -> bool {
        let idle = self
            .opts
            .window_secs
            .saturating_add(self.opts.lease_secs)
            .saturating_add(self.opts.margin_secs);
        mtime.saturating_add(idle) < now
    }

    fn inspect(&mut self, data: &[u8], now: u64) {
        if data.len() >= MAX_ENTRY {
            return self.finish(Finished::Unindexed);
        }
        let v = view(data);
        let dead_after = self.opts.lease_secs.saturating_add(self.opts.margin_secs);
        if let Some((secs, dir, name)) = v.committed {
            if now < secs.saturating_add(self.opts.window_secs) {
                return self.finish(Finished::Duplicate { dir, name });
            }
            return self.take_over_from(v.holder.map(|(_, t)| t), now);
        }
        self.holder_seen = v.holder.map(|(_, t)| t);
        let (since, dead_after) = match v.holder {
            // A reservation stamped further ahead than any clock we trust (a crash while the
            // clock ran ahead) says nothing about when its holder stops: it is stale, or
            // every retry would wait for a time that may be days away.
            Some((s, _)) if s > now.saturating_add(self.opts.margin_secs) => (0, 0),
            Some((s, _)) => (s, dead_after),
            // No complete record: the creator died between creating the entry and writing
            // it (an interrupted write is removed by the driver). Its reservation would have
            // been written microseconds after the create, so waiting out the clock margin
            // after the entry's creation is enough.
            None => (self.entry_mtime, self.opts.margin_secs),
        };
        if now < since.saturating_add(dead_after) {
            self.state = State::Wait;
        } else if v.intents > 0 {
            self.state = State::IntentRead(0);
        } else {
            self.take_over_from(self.holder_seen, now);
        }
    }

    fn take_over_from(&mut self, prev: Option<u64>, now: u64) {
        let mut prev_s: heapless::String<16> = heapless::String::new();
        match prev {
            Some(t) => {
                let _ = write!(prev_s, "{t:016x}");
            }
            None => {
                let _ = prev_s.push('-');
            }
        }
        self.holder_seen = prev;
        self.reserved_secs = now;
        self.record = emit_record(format_args!("R {} {:016x} {}", now, self.token, prev_s));
        self.state = State::TakeoverAppend;
    }

    fn duplicate_of_intent(&mut self) {
        let (dir, name) = match self.target.take() {
            Some((d, n)) => (Some(d), n),
            None => (None, NameBuf::new()),
        };
        self.finish(Finished::Duplicate { dir, name });
    }

    fn reserve_again(&mut self, now: u64) {
        self.reserve_attempts += 1;
        if self.reserve_attempts > 8 {
            self.fail(ErrorKind::Busy);
        } else if self.full {
            self.state = State::ReserveProbe;
        } else {
            self.enter_reserve(now);
        }
    }

    fn finish(&mut self, f: Finished) {
        self.result = Some(Ok(f));
        self.state = State::Finished;
    }

    fn fail(&mut self, kind: ErrorKind) {
        if self.result.is_none() {
            // Waiting for another delivery and looking for the message in new/ and cur/ are
            // about the maildir; everything else is about the index's files.
            let phase = match self.state {
                State::Wait
                | State::IntentListOpen(_)
                | State::IntentListNext(_)
                | State::IntentListClose(..) => Phase::Check,
                _ => Phase::Dedup,
            };
            self.result = Some(Err(Error::new(kind, phase)));
        }
        self.state = State::Finished;
    }
}

fn err_of(r: OpResult) -> ErrorKind {
    match r {
        OpResult::Err(e) | OpResult::SourceErr(e) => e,
        _ => ErrorKind::Io,
    }
}

/// As a [`Machine`](crate::machine::Machine), a [`Dedup`] runs until it stops asking for
/// operations: `None` when the holder may go ahead ([`DedupStep::Go`]: deliver, or publish;
/// then [`Dedup::intent`], [`Dedup::committed`] or [`Dedup::abandoned`] and run it again),
/// `Some` once finished.
impl crate::machine::Machine for Dedup {
    type Output = Option<DedupOutcome>;
    fn poll(&self) -> crate::machine::Step<'_, Option<DedupOutcome>> {
        match Dedup::poll(self) {
            DedupStep::Op(op) => crate::machine::Step::Op(op),
            DedupStep::Go => crate::machine::Step::Done(None),
            DedupStep::Done(o) => crate::machine::Step::Done(Some(o)),
        }
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        Dedup::feed(self, result, data, env)
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{perform, Fs, Slots};
    use crate::machine::deliver::{Delivered, Options};
    use crate::machine::mta::{Accepted, Mta, MtaOptions};
    use crate::machine::quota::{self, CheckOptions, Checked, Verdict};
    use crate::testkit::{setup, Clock, MemFs, TestEnv};
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    /// What these tests ask of the composed [`Mta`] machine.
    #[derive(Copy, Clone, Debug, Default)]
    struct OnceOptions {
        delivery: Options,
        dedup: DedupOptions,
        quota: Option<CheckOptions>,
        key: Option<Key>,
    }

    /// What it did, as these tests look at it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    #[allow(clippy::large_enum_variant)]
    enum Once {
        Stored {
            delivered: Delivered,
            indexed: bool,
            quota: Option<Checked>,
        },
        Duplicate {
            dir: Option<Dir>,
            name: NameBuf,
        },
    }

    /// One duplicate-suppressed delivery through the composed machine and [`crate::machine::run`].
    fn deliver_once<F: Fs + ?Sized, E: Env + ?Sized>(
        fs: &mut F,
        env: &mut E,
        o: OnceOptions,
        source: &mut &[u8],
        buf: &mut [u8],
    ) -> Result<Once, Error> {
        let opts = MtaOptions {
            delivery: o.delivery,
            quota: o.quota,
            dedup: Some(o.dedup),
            key: o.key,
            ..MtaOptions::default()
        };
        let mut m = Mta::new(opts, fs.capabilities(), env);
        let mut big = std::vec![0u8; buf.len().max(quota::RECALC_SIZE)];
        match crate::machine::run(&mut m, fs, env, source, &mut big)? {
            Accepted::Stored {
                delivered,
                indexed,
                quota,
            } => Ok(Once::Stored {
                delivered,
                indexed,
                quota,
            }),
            Accepted::Duplicate { dir, name } => Ok(Once::Duplicate { dir, name }),
        }
    }

    fn mid_of(chunks: &[&[u8]]) -> Option<Vec<u8>> {
        let mut s = MessageIdScanner::new();
        for c in chunks {
            s.feed(c);
        }
        s.message_id().map(|m| m.to_vec())
    }

    fn bytewise(msg: &[u8]) -> Option<Vec<u8>> {
        let chunks: Vec<&[u8]> = msg.chunks(1).collect();
        mid_of(&chunks)
    }

    #[test]
    fn message_id_is_found_in_any_chunking_with_folding_and_case() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (
                b"From: a\nMessage-ID: <abc@x.org>\n\nbody",
                Some(b"<abc@x.org>"),
            ),
            (
                b"message-id:<abc@x.org>\r\nSubject: s\r\n\r\n",
                Some(b"<abc@x.org>"),
            ),
            (
                b"MESSAGE-ID:\r\n   <folded@x.org>\r\nTo: b\r\n\r\n",
                Some(b"<folded@x.org>"),
            ),
            (b"Message-Id: (comment) <c@d>\n\n", Some(b"<c@d>")),
            (
                b"Message-ID: <first@x>\nMessage-ID: <second@x>\n\n",
                Some(b"<first@x>"),
            ),
            (b"X-Message-ID: <no@x>\nMessage-IDs: <no@x>\n\n", None),
            (b"Subject: x\n\nMessage-ID: <in-body@x>\n", None),
            (b"Message-ID: <>\n\n", None),
            (b"Message-ID:   bare@id  \n\n", Some(b"bare@id")),
            (
                b"From sender@x Mon Jan  1 12:34:56 2024\nMessage-ID: <e@x>\n\n",
                Some(b"<e@x>"),
            ),
            (b"Subject: no id at all\n\nbody", None),
        ];
        for (msg, want) in cases {
            let want = want.map(|w| w.to_vec());
            assert_eq!(mid_of(&[msg]), want, "{}", String::from_utf8_lossy(msg));
            assert_eq!(
                bytewise(msg),
                want,
                "bytewise {}",
                String::from_utf8_lossy(msg)
            );
        }
        // The header may end without the body, mid-field, in the last chunk.
        assert_eq!(mid_of(&[b"Message-ID: <t@x>"]), Some(b"<t@x>".to_vec()));
        let mut long = b"Message-ID: <".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_MESSAGE_ID));
        long.extend_from_slice(b">\n\n");
        assert_eq!(mid_of(&[&long]), None, "too long: the content hash is used");
    }

    #[test]
    fn keys_and_entry_names() {
        let a = Key::from_message_id(b"<a@x>");
        assert_eq!(a, Key::from_message_id(b"<a@x>"));
        assert_ne!(a, Key::from_message_id(b"<A@x>"));
        assert_ne!(a, Key::from_content_digest([0; 32]));
        let name = a.entry_name();
        assert_eq!(name.len(), ENTRY_PREFIX.len() + 32);
        assert!(name.starts_with(ENTRY_PREFIX));
        assert!(name[ENTRY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));
        // Derivation while streaming: the Message-ID wins; without one, the content.
        let mut d = KeyDeriver::new();
        d.feed(b"Message-ID: <a@x>\n\nbody one");
        assert_eq!(d.key(), a);
        let digest: [u8; 32] = Sha256::digest(b"Subject: s\n\nbody").into();
        let mut d = KeyDeriver::new();
        d.feed(b"Subject: s\n\n");
        d.feed(b"body");
        assert_eq!(d.key(), Key::from_content_digest(digest));
    }

    #[test]
    fn the_longest_records_fit_and_unreadable_names_are_refused() {
        let long = "n".repeat(crate::maildir::name::NAME_MAX);
        let c = emit_record(format_args!(
            "C {} {:016x} cur {}",
            u64::MAX,
            u64::MAX,
            long
        ));
        assert_eq!(
            parse_record(c.trim().as_bytes()),
            Some(Record::Commit {
                secs: u64::MAX,
                dir: Dir::Cur,
                name: &long
            })
        );
        assert!(recordable(Dir::New, &long));
        assert!(!recordable(Dir::New, &format!("{long}n")));
        assert!(!recordable(Dir::New, "a b"));
        assert!(!recordable(Dir::New, "a\nb"));
        assert!(!recordable(Dir::Root, "a"));
    }

    #[test]
    fn records_are_checksummed_and_reservations_chain() {
        let r = emit_record(format_args!("R 100 {:016x} -", 7u64));
        assert!(r.starts_with('\n') && r.ends_with('\n'));
        assert_eq!(
            parse_record(r.trim().as_bytes()),
            Some(Record::Reserve {
                secs: 100,
                token: 7,
                prev: None
            })
        );
        // A torn record (any prefix) or a flipped byte is rejected.
        let body = r.trim().as_bytes();
        for cut in 0..body.len() {
            assert_eq!(parse_record(&body[..cut]), None, "cut at {cut}");
        }
        let mut flipped = body.to_vec();
        flipped[2] = b'9';
        assert_eq!(parse_record(&flipped), None);
        // Two takeovers of the same holder: only the first is valid.
        let mut f = String::new();
        f.push_str(&emit_record(format_args!("R 100 {:016x} -", 1u64)));
        f.push_str("R 1"); // torn by a crash
        f.push_str(&emit_record(format_args!("I {:016x} new n1", 1u64)));
        f.push_str(&emit_record(format_args!(
            "R 900 {:016x} {:016x}",
            2u64, 1u64
        )));
        f.push_str(&emit_record(format_args!(
            "R 901 {:016x} {:016x}",
            3u64, 1u64
        )));
        f.push_str(&emit_record(format_args!("I {:016x} new n2", 2u64)));
        let v = view(f.as_bytes());
        assert_eq!(v.holder, Some((900, 2)));
        assert_eq!(v.intents, 1);
        assert_eq!(nth_intent(f.as_bytes(), 0), Some((Dir::New, "n2")));
        assert_eq!(nth_intent(f.as_bytes(), 1), None);
        f.push_str(&emit_record(format_args!("C 905 {:016x} cur n2:2,S", 2u64)));
        let v = view(f.as_bytes());
        let mut n = NameBuf::new();
        n.push_str("n2:2,S").unwrap();
        assert_eq!(v.committed, Some((905, Some(Dir::Cur), n)));
    }

    fn once(fs: &mut MemFs, env: &mut TestEnv, msg: &[u8]) -> Result<Once, Error> {
        let mut src = msg;
        let mut buf = [0u8; 64];
        deliver_once(fs, env, OnceOptions::default(), &mut src, &mut buf)
    }

    fn stored(fs: &MemFs) -> Vec<String> {
        let mut v = fs.list(Dir::New);
        v.extend(fs.list(Dir::Cur));
        v
    }

    fn entries(fs: &MemFs) -> Vec<String> {
        fs.list(Dir::Root)
            .into_iter()
            .filter(|n| n.starts_with(ENTRY_PREFIX))
            .collect()
    }

    const MSG: &[u8] = b"Message-ID: <m1@x>\nSubject: hi\n\nbody\n";

    #[test]
    fn without_directory_flushes_the_index_works_and_asks_for_none() {
        // A filesystem that cannot flush directories (the WASI module under wasmtime) fails
        // every directory flush: the index must not ask for one.
        let (mut fs, mut env, _) = setup();
        fs.caps.dir_sync = false;
        fs.caps.anonymous_tmp = false;
        fs.caps.rename_noreplace = false;
        let first = once(&mut fs, &mut env, MSG).unwrap();
        assert!(
            matches!(first, Once::Stored { indexed: true, .. }),
            "{first:?}"
        );
        let dup = once(&mut fs, &mut env, MSG).unwrap();
        assert!(matches!(dup, Once::Duplicate { .. }), "{dup:?}");
        assert_eq!(stored(&fs).len(), 1);
    }

    /// Where commits are ordered, what must be durable before the publish (the reservation,
    /// the intent) is written back and the root is not flushed after the new entry: the
    /// publish's own flush commits them. What comes after the publish is flushed: the commit
    /// record, and an entry recreated with it when a collection removed it meanwhile.
    #[test]
    fn with_ordered_commits_only_what_follows_the_publish_is_flushed() {
        let (_, mut env, _) = setup();
        let opts = DedupOptions {
            gc_every: 0,
            ..DedupOptions::default()
        };
        let key = Key::from_message_id(b"<m1@x>");
        let mut d = Dedup::new(key, opts, &mut env).with_write_back(true);
        let persist = |d: &Dedup| match d.poll() {
            DedupStep::Op(Op::WriteFile { persist, .. } | Op::Append { persist, .. }) => persist,
            other => panic!("{other:?}"),
        };
        assert_eq!(persist(&d), Persist::WriteBack, "the reservation");
        d.feed(OpResult::Done, &[], &mut env);
        assert!(matches!(d.poll(), DedupStep::Go), "no flush of the root");
        d.intent(Dir::New, "m1", &mut env);
        assert_eq!(persist(&d), Persist::WriteBack, "the intent");
        d.feed(OpResult::Done, &[], &mut env);
        assert!(matches!(d.poll(), DedupStep::Go));
        d.committed(Dir::New, "m1", &mut env);
        assert_eq!(persist(&d), Persist::Flush, "the commit");
        d.feed(OpResult::Err(ErrorKind::NotFound), &[], &mut env);
        assert_eq!(persist(&d), Persist::Flush, "the recreated entry");
        d.feed(OpResult::Done, &[], &mut env);
        assert!(d.is_done());
    }

    #[test]
    fn second_delivery_is_a_duplicate() {
        let (mut fs, mut env, _) = setup();
        let first = once(&mut fs, &mut env, MSG).unwrap();
        let Once::Stored {
            delivered, indexed, ..
        } = first
        else {
            panic!("{first:?}")
        };
        assert!(indexed);
        assert_eq!(fs.get(Dir::New, &delivered.name).unwrap(), MSG);
        let dup = once(&mut fs, &mut env, MSG).unwrap();
        assert_eq!(
            dup,
            Once::Duplicate {
                dir: Some(Dir::New),
                name: delivered.name.clone()
            }
        );
        assert_eq!(stored(&fs), [delivered.name.as_str()]);
        assert!(
            fs.list(Dir::Tmp).is_empty(),
            "the duplicate's tmp file is gone"
        );
        // The entry: a reservation, an intent, a commit.
        let e = entries(&fs);
        assert_eq!(e.len(), 1);
        let data = fs.get(Dir::Root, &e[0]).unwrap();
        let kinds: Vec<char> = records(data)
            .map(|r| match r {
                Record::Reserve { .. } => 'R',
                Record::Intent { .. } => 'I',
                Record::Commit { .. } => 'C',
            })
            .collect();
        assert_eq!(kinds, ['R', 'I', 'C']);
        // A different message is stored.
        let other = b"Message-ID: <m2@x>\n\nbody\n";
        assert!(matches!(
            once(&mut fs, &mut env, other),
            Ok(Once::Stored { .. })
        ));
        assert_eq!(stored(&fs).len(), 2);
    }

    #[test]
    fn deferred_directory_sync_is_done_before_the_commit() {
        let (mut fs, mut env, _) = setup();
        let o = Options {
            durability: crate::machine::deliver::Durability::DeferDirSync,
            ..Options::default()
        };
        let mut src = MSG;
        let mut buf = [0u8; 64];
        let o = OnceOptions {
            delivery: o,
            ..OnceOptions::default()
        };
        let r = deliver_once(&mut fs, &mut env, o, &mut src, &mut buf);
        let Ok(Once::Stored {
            delivered, indexed, ..
        }) = r
        else {
            panic!("{r:?}")
        };
        assert!(indexed && !delivered.needs_dir_sync);
        let data = fs.get(Dir::Root, &entry_for(MSG)).unwrap();
        assert!(view(data).committed.is_some());
    }

    #[test]
    fn with_a_quota_duplicates_succeed_when_full_and_refusals_release_the_key() {
        let (mut fs, mut env, _) = setup();
        fs.put(Dir::Root, quota::MAILDIRSIZE, b"1000S\n0 0\n");
        let q = Some(CheckOptions::default());
        let mut buf = [0u8; 64];
        let mut go = |fs: &mut MemFs, env: &mut TestEnv, msg: &[u8]| {
            let mut src = msg;
            let o = OnceOptions {
                quota: q,
                ..OnceOptions::default()
            };
            deliver_once(fs, env, o, &mut src, &mut buf)
        };
        let r = go(&mut fs, &mut env, MSG).unwrap();
        let Once::Stored { quota: Some(c), .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(c.verdict, Verdict::Allow);
        let size = MSG.len();
        let accounted = format!("1000S\n0 0\n{size} 1\n");
        assert_eq!(
            fs.get(Dir::Root, quota::MAILDIRSIZE).unwrap(),
            accounted.as_bytes()
        );
        // The mailbox fills up (a fresh one-line file says so).
        fs.put(Dir::Root, quota::MAILDIRSIZE, b"1000S\n1000 1\n");
        // The MTA's retry of the stored message still succeeds, as a duplicate.
        assert!(matches!(
            go(&mut fs, &mut env, MSG),
            Ok(Once::Duplicate { .. })
        ));
        // A new message is refused, leaves nothing, and does not keep its key reserved.
        let other = b"Message-ID: <full@x>\n\nbody\n";
        let e = go(&mut fs, &mut env, other).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OverQuota);
        assert_eq!(stored(&fs).len(), 1);
        assert!(fs.list(Dir::Tmp).is_empty());
        assert_eq!(entries(&fs), [entry_for(MSG)]);
        // Once there is room again, it is stored.
        fs.put(Dir::Root, quota::MAILDIRSIZE, b"1000S\n0 0\n");
        assert!(matches!(
            go(&mut fs, &mut env, other),
            Ok(Once::Stored { .. })
        ));
    }

    #[test]
    fn without_message_id_the_content_decides() {
        let (mut fs, mut env, _) = setup();
        let a = b"Subject: no id\n\nsame body\n";
        let b = b"Subject: no id\n\nother body\n";
        assert!(matches!(
            once(&mut fs, &mut env, a),
            Ok(Once::Stored { .. })
        ));
        assert!(matches!(
            once(&mut fs, &mut env, a),
            Ok(Once::Duplicate { .. })
        ));
        assert!(matches!(
            once(&mut fs, &mut env, b),
            Ok(Once::Stored { .. })
        ));
        assert_eq!(stored(&fs).len(), 2);
    }

    fn entry_for(msg: &[u8]) -> String {
        let mut d = KeyDeriver::new();
        d.feed(msg);
        String::from(d.key().entry_name().as_str())
    }

    fn now_secs(clock: &Clock) -> u64 {
        clock.get() / 1000
    }

    fn advance(clock: &Clock, secs: u64) {
        clock.set(clock.get() + secs * 1000);
    }

    /// The state a deliverer leaves when killed after publishing, before committing.
    fn crashed_after_publish(fs: &mut MemFs, clock: &Clock, published: Option<(Dir, &str)>) {
        let t = now_secs(clock);
        let mut f = String::new();
        f.push_str(&emit_record(format_args!("R {t} {:016x} -", 0xdeadu64)));
        f.push_str(&emit_record(format_args!(
            "I {:016x} new 1.crashed.host,S=37",
            0xdeadu64
        )));
        fs.put(Dir::Root, &entry_for(MSG), f.as_bytes());
        if let Some((dir, name)) = published {
            fs.put(dir, name, MSG);
        }
    }

    #[test]
    fn retry_after_crash_between_publish_and_commit_is_suppressed() {
        let (mut fs, mut env, clock) = setup();
        crashed_after_publish(&mut fs, &clock, Some((Dir::New, "1.crashed.host,S=37")));
        // Within the lease, the holder might be alive: wait, then defer.
        let e = once(&mut fs, &mut env, MSG).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert_eq!(stored(&fs), ["1.crashed.host,S=37"]);
        assert!(fs.list(Dir::Tmp).is_empty());
        advance(&clock, 400);
        let dup = once(&mut fs, &mut env, MSG).unwrap();
        assert!(
            matches!(
                dup,
                Once::Duplicate {
                    dir: Some(Dir::New),
                    ..
                }
            ),
            "{dup:?}"
        );
        assert_eq!(stored(&fs).len(), 1);
    }

    #[test]
    fn recovery_finds_the_message_after_a_reader_moved_and_flagged_it() {
        let (mut fs, mut env, clock) = setup();
        crashed_after_publish(&mut fs, &clock, Some((Dir::Cur, "1.crashed.host,S=37:2,S")));
        advance(&clock, 400);
        let dup = once(&mut fs, &mut env, MSG).unwrap();
        assert!(
            matches!(
                dup,
                Once::Duplicate {
                    dir: Some(Dir::New),
                    ..
                }
            ),
            "{dup:?}"
        );
        assert_eq!(stored(&fs), ["1.crashed.host,S=37:2,S"]);
    }

    #[test]
    fn retry_after_crash_before_publish_takes_over_and_stores_once() {
        let (mut fs, mut env, clock) = setup();
        crashed_after_publish(&mut fs, &clock, None);
        advance(&clock, 400);
        let Once::Stored { delivered, .. } = once(&mut fs, &mut env, MSG).unwrap() else {
            panic!("not stored")
        };
        assert_eq!(stored(&fs), [delivered.name.as_str()]);
        let data = fs.get(Dir::Root, &entry_for(MSG)).unwrap();
        let v = view(data);
        assert_ne!(v.holder.map(|h| h.1), Some(0xdead), "taken over");
        assert!(v.committed.is_some());
        assert!(matches!(
            once(&mut fs, &mut env, MSG),
            Ok(Once::Duplicate { .. })
        ));
        assert_eq!(stored(&fs).len(), 1);
    }

    #[test]
    fn an_empty_entry_left_by_a_crash_right_after_create_expires() {
        let (mut fs, mut env, clock) = setup();
        fs.put(Dir::Root, &entry_for(MSG), b"\nR 17");
        assert_eq!(
            once(&mut fs, &mut env, MSG).unwrap_err().kind,
            ErrorKind::Busy
        );
        advance(&clock, 400);
        assert!(matches!(
            once(&mut fs, &mut env, MSG),
            Ok(Once::Stored { .. })
        ));
        assert_eq!(stored(&fs).len(), 1);
    }

    #[test]
    fn after_the_window_the_message_is_stored_again() {
        let (mut fs, mut env, clock) = setup();
        assert!(matches!(
            once(&mut fs, &mut env, MSG),
            Ok(Once::Stored { .. })
        ));
        advance(&clock, DedupOptions::default().window_secs + 1);
        assert!(matches!(
            once(&mut fs, &mut env, MSG),
            Ok(Once::Stored { .. })
        ));
        assert!(matches!(
            once(&mut fs, &mut env, MSG),
            Ok(Once::Duplicate { .. })
        ));
        assert_eq!(stored(&fs).len(), 2);
    }

    /// One deliverer of the protocol, stepped one operation at a time.
    struct Agent {
        m: Dedup,
        env: TestEnv,
        slots: Slots<MemFs>,
        publish_as: String,
        phase: u8,
        done: Option<DedupOutcome>,
    }

    impl Agent {
        fn new(clock: &Clock, i: u32, key: Key, o: DedupOptions) -> Agent {
            let mut env = TestEnv::new(clock.clone(), 1000 + i);
            let m = Dedup::new(key, o, &mut env);
            Agent {
                m,
                env,
                slots: Slots::default(),
                publish_as: format!("{i}.agent.host,S=3"),
                phase: 0,
                done: None,
            }
        }

        /// One step; `false` once finished.
        fn step(&mut self, fs: &mut MemFs) -> bool {
            let mut buf = [0u8; MAX_ENTRY];
            let next = match self.m.poll() {
                DedupStep::Go => None,
                DedupStep::Done(o) => {
                    self.done = Some(o);
                    return false;
                }
                DedupStep::Op(op) => Some(op),
            };
            match next {
                None if self.phase == 0 => {
                    self.phase = 1;
                    self.m.intent(Dir::New, &self.publish_as, &mut self.env);
                }
                None => {
                    // The publish, then the commit.
                    fs.put(Dir::New, &self.publish_as, b"msg");
                    self.m.committed(Dir::New, &self.publish_as, &mut self.env);
                }
                Some(op) => {
                    let (r, n) = perform(
                        fs,
                        &mut self.env,
                        &mut self.slots,
                        op,
                        &mut &b""[..],
                        &mut buf,
                    );
                    self.m.feed(r, &buf[..n], &mut self.env);
                }
            }
            true
        }
    }

    /// Runs agents round-robin (rotating who goes first by `seed`) until all finish.
    fn interleave(fs: &mut MemFs, agents: &mut [Agent], seed: usize) {
        let n = agents.len();
        let mut rng = seed as u64 ^ 0x2545_f491_4f6c_dd1d;
        while agents.iter().any(|a| a.done.is_none()) {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let mut i = (rng >> 33) as usize % n;
            while agents[i].done.is_some() {
                i = (i + 1) % n;
            }
            agents[i].step(fs);
        }
    }

    fn tally(agents: &[Agent]) -> (usize, usize, usize) {
        let mut t = (0, 0, 0);
        for a in agents {
            match a.done.as_ref().unwrap() {
                Ok(Finished::Stored { .. }) => t.0 += 1,
                Ok(Finished::Duplicate { .. }) => t.1 += 1,
                other => {
                    assert!(
                        matches!(other, Err(e) if e.kind == ErrorKind::Busy),
                        "{other:?}"
                    );
                    t.2 += 1
                }
            }
        }
        t
    }

    #[test]
    fn eight_concurrent_deliverers_store_exactly_once() {
        for seed in 0..50 {
            let (mut fs, _, clock) = setup();
            let key = Key::from_message_id(b"<same@x>");
            let mut agents: Vec<Agent> = (0..8)
                .map(|i| Agent::new(&clock, i, key, DedupOptions::default()))
                .collect();
            interleave(&mut fs, &mut agents, seed);
            let (s, d, busy) = tally(&agents);
            assert_eq!((s, d + busy), (1, 7), "seed {seed}");
            assert_eq!(busy, 0, "the holder commits within the wait");
            assert_eq!(stored(&fs).len(), 1, "seed {seed}");
        }
    }

    #[test]
    fn concurrent_recoverers_of_a_stale_entry_store_exactly_once() {
        for seed in 0..50 {
            let (mut fs, _, clock) = setup();
            crashed_after_publish(&mut fs, &clock, None);
            advance(&clock, 400);
            let mut d = KeyDeriver::new();
            d.feed(MSG);
            let mut agents: Vec<Agent> = (0..4)
                .map(|i| Agent::new(&clock, i, d.key(), DedupOptions::default()))
                .collect();
            interleave(&mut fs, &mut agents, seed);
            let (s, d, busy) = tally(&agents);
            assert_eq!((s, d, busy), (1, 3, 0), "seed {seed}");
            assert_eq!(stored(&fs).len(), 1, "seed {seed}");
        }
    }

    /// Kills a deliverer after each of its steps in turn (the filesystem keeps what it did,
    /// as after `kill -9`), then lets retries run concurrently after the lease: the message
    /// is stored exactly once every time, and a retry reports a duplicate only when the dead
    /// deliverer had published.
    #[test]
    fn a_kill_at_any_step_then_concurrent_retries_store_exactly_once() {
        let key = Key::from_message_id(b"<killed@x>");
        // Collecting on every delivery, so that a kill also falls inside the pass.
        let o = DedupOptions {
            gc_every: 1,
            ..DedupOptions::default()
        };
        let mut k = 0;
        loop {
            let (mut fs, _, clock) = setup();
            let mut dead = Agent::new(&clock, 0, key, o);
            let mut finished = false;
            for _ in 0..k {
                if !dead.step(&mut fs) {
                    finished = true;
                    break;
                }
            }
            let published = !fs.list(Dir::New).is_empty();
            advance(&clock, o.lease_secs + o.margin_secs + 1);
            for seed in 0..8 {
                let mut fs = fs.clone();
                let mut retries: Vec<Agent> =
                    (1..4).map(|i| Agent::new(&clock, i, key, o)).collect();
                interleave(&mut fs, &mut retries, seed);
                let (s, d, busy) = tally(&retries);
                assert_eq!(stored(&fs).len(), 1, "killed after {k} steps, seed {seed}");
                assert_eq!(busy, 0, "killed after {k} steps, seed {seed}");
                assert_eq!(
                    (s, d),
                    (usize::from(!published), 3 - usize::from(!published))
                );
            }
            if finished {
                break;
            }
            k += 1;
        }
        // Reserve (one WriteFile), sync, intent, publish, commit, with the reads between.
        assert!(k >= 10, "the sweep covered the whole protocol ({k} steps)");
    }

    #[test]
    fn a_holder_past_its_lease_does_not_publish() {
        let (mut fs, _, clock) = setup();
        let mut a = Agent::new(
            &clock,
            0,
            Key::from_message_id(b"<l@x>"),
            DedupOptions::default(),
        );
        let mut buf = [0u8; MAX_ENTRY];
        let go = crate::machine::run_in(
            &mut a.m,
            &mut fs,
            &mut a.env,
            &mut a.slots,
            &mut &b""[..],
            &mut buf,
        );
        assert_eq!(go, None, "the reservation is held");
        advance(&clock, DedupOptions::default().lease_secs);
        while a.step(&mut fs) {
            assert_eq!(a.phase, 1, "never reaches the publish");
        }
        assert_eq!(a.done.unwrap().unwrap_err().kind, ErrorKind::Busy);
        assert!(stored(&fs).is_empty());
    }

    #[test]
    fn collection_removes_idle_entries_and_a_full_index_stops_indexing() {
        let (mut fs, mut env, clock) = setup();
        let o = DedupOptions {
            gc_every: 1,
            ..DedupOptions::default()
        };
        fs.put(
            Dir::Root,
            "mdeliver-dedup.00000000000000000000000000000001",
            b"",
        );
        fs.put(Dir::Root, MAILDIRSIZE_FOR_TEST, b"1000S\n");
        advance(&clock, o.window_secs + o.lease_secs + o.margin_secs + 1);
        fs.put(
            Dir::Root,
            "mdeliver-dedup.00000000000000000000000000000002",
            b"",
        );
        let collecting = OnceOptions {
            dedup: o,
            ..OnceOptions::default()
        };
        let (mut src, mut buf) = (MSG, [0u8; 64]);
        assert!(matches!(
            deliver_once(&mut fs, &mut env, collecting, &mut src, &mut buf),
            Ok(Once::Stored { indexed: true, .. })
        ));
        let mut e = entries(&fs);
        e.sort();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0], "mdeliver-dedup.00000000000000000000000000000002");
        assert!(
            fs.get(Dir::Root, MAILDIRSIZE_FOR_TEST).is_some(),
            "only entries collected"
        );
        // A full index: new keys are delivered without an entry.
        let full = OnceOptions {
            dedup: DedupOptions {
                max_entries: 2,
                ..o
            },
            ..OnceOptions::default()
        };
        let mut src = &b"Message-ID: <new@x>\n\nb\n"[..];
        let mut buf = [0u8; 64];
        let r = deliver_once(&mut fs, &mut env, full, &mut src, &mut buf);
        assert!(
            matches!(r, Ok(Once::Stored { indexed: false, .. })),
            "{r:?}"
        );
        assert_eq!(entries(&fs).len(), 2);
        // Keys already indexed still suppress.
        let mut src = MSG;
        let r = deliver_once(&mut fs, &mut env, full, &mut src, &mut buf);
        assert!(matches!(r, Ok(Once::Duplicate { .. })), "{r:?}");
    }

    const MAILDIRSIZE_FOR_TEST: &str = "maildirsize";
}
