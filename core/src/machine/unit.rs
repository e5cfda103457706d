//! Several actions on one message as one exactly-once unit: every copy a Sieve script decides
//! (each `fileinto` with its flags and `:create`, the `keep` into INBOX), every `redirect`,
//! the `duplicate` ids to remember and the `vacation` reply,
//! performed so that after a crash at any step the MTA's retry completes exactly the set the
//! script decided, none lost, none doubled. It is one machine, [`Unit`]: the record, markers
//! and memory below are its operations on the root maildir; each copy and each message to
//! send is its output ([`Wants`]), which the driver performs and answers ([`perform`]).
//!
//! # How
//! - **The unit's key** ([`unit_key`]) is the sha256 of the message's bytes as the MTA handed
//!   them over (not its Message-ID: two different messages with one Message-ID are two units;
//!   an MTA's retry hands over the same bytes).
//! - **The record** ([`Plan`], written by [`begin`]): before anything is published, the plan
//!   (each copy's mailbox, flags and `:create`, each redirect's address) is written whole to
//!   `mdeliver-dedup.<key>` in the root maildir, flushed, and the root directory flushed. A
//!   retry that finds the record performs the recorded plan, not what the script decides now
//!   (a `duplicate` or `date` test, a vacation memory, an edited script may decide otherwise
//!   the second time). A record that does not verify (its checksum; a crash between its
//!   create and its flush) was torn before any copy began, so it is written again.
//! - **Each copy** is one composed MTA delivery ([`crate::machine::mta::Mta`]) with the
//!   duplicate index on, keyed by [`copy_key`] (the unit's key and the copy's index): the
//!   index's reserve → intent → publish → commit protocol makes each copy exactly-once across
//!   crashes and retries, exactly as `--dedup` does for a whole message. A copy that was
//!   stored before the crash is a suppressed duplicate on the retry; one that was not is
//!   stored.
//! - **A copy whose folder is missing** goes to INBOX (RFC 5228 2.10.6), all such copies
//!   under one key, so INBOX gets one copy however many folders were missing. Before it is
//!   stored there, its marker ([`fallback_key`], an empty `mdeliver-dedup.<key>` file in the
//!   root) is created and the root flushed; a retry looks for the marker before storing a
//!   folder copy, and finding it, sends the copy to INBOX again (a suppressed duplicate)
//!   even if the folder was created since. Without the marker, that folder would get a
//!   second copy.
//! - **Each redirect** is sent only when its marker ([`redirect_key`], an empty
//!   `mdeliver-dedup.<key>` file in the root) is absent, and the marker is created and
//!   flushed after the MTA accepted it. A crash between the MTA accepting and the marker
//!   being durable sends it again on the retry: a redirect is at least once, never lost.
//!   (Nothing can make an external `sendmail` call and a local file change atomic; losing a
//!   forward is worse than doubling it.)
//! - **`duplicate` ids and the vacation reply** ([`Entry::Track`], [`Entry::Vacation`]) come
//!   last and wait until every copy and redirect is done (RFC 7352 3: only a delivered
//!   message counts as seen): the reply is sent while its marker is absent (as a redirect),
//!   then each id, and the reply's sender and handle, is remembered in an
//!   `mdeliver-dedup.<key>` entry ([`seen_key`]) dated at the end of its period, which the
//!   interpreter's `Seen` store reads ([`seen_at`]). A crash before that leaves nothing
//!   remembered; the retry follows the recorded plan (a `duplicate` test run again would now
//!   see the message's own id) and remembers them.
//! - **The record stays** after the unit completes, so a retry after a lost success status
//!   replays the same plan (every copy a duplicate, every redirect marked); its name carries
//!   the index's prefix, so the index's collection pass removes it after the duplicate window
//!   like any other entry.
//! - **Two attempts at the same moment** (an MTA that retries before the first attempt
//!   ended): the record is written unnamed and then linked to its name ([`begin`]), which
//!   never replaces, so it appears whole and exactly once; the attempt that finds the name
//!   taken does nothing now and defers ([`ErrorKind::Busy`]), and its retry follows the
//!   record that won. A filesystem without unnamed files or hard links gets the record by
//!   an exclusive create instead; there an attempt that reads it while the other is still
//!   writing it takes it for torn and writes its own, so both plans may be performed.
//!
//! What it does not cover, stated: a message whose index cannot take a key (over
//! `max_entries`, [`crate::machine::dedup::Finished::Unindexed`]) is stored without
//! suppression, so a retry after a crash may store that copy twice (the index prefers
//! delivering to deferring when it is full; the unit follows it); with `--no-fsync`, a crash
//! can leave a torn record, and two retries that both find it torn may both write one;
//! and the filesystems without unnamed files or hard links, above.

use core::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::env::{Env, NoEnv};
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Capabilities, Dir, Fs, Op, OpResult, Persist};
use crate::machine::dedup::Key;
use crate::machine::{run, Machine, Step};
use crate::maildir::flags::Flags;
use crate::maildir::folder::same_folder;
use crate::message::same_mailbox;
use crate::sieve::{run_with, Context, Limits, Message, Outcome, Script, Seen};

/// The most bytes a plan holds (mailbox names and addresses with their framing).
pub const PLAN_MAX: usize = 8 * 1024;

/// The largest record: a plan in hex, with its framing.
pub const RECORD_MAX: usize = 2 * PLAN_MAX + 256;

/// The first line of a record.
const MAGIC: &[u8] = b"mdeliver-sieve-unit 1\n";

/// The key of the unit for a message whose bytes have this sha256.
pub fn unit_key(content_digest: [u8; 32]) -> Key {
    let mut h = Sha256::new();
    h.update(b"mdeliver-sieve unit\0");
    h.update(content_digest);
    Key(h.finalize().into())
}

/// Derives the unit's key ([`unit_key`]) from the message's bytes, fed in chunks.
#[derive(Clone, Debug, Default)]
pub struct UnitKeyer(Sha256);

impl UnitKeyer {
    /// Nothing fed yet.
    pub fn new() -> UnitKeyer {
        UnitKeyer(Sha256::new())
    }

    /// The next bytes of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// The unit's key for the bytes fed.
    pub fn key(&self) -> Key {
        unit_key(self.0.clone().finalize().into())
    }
}

/// The copy index whose key the copies that fall back to INBOX share when the plan has no
/// INBOX copy of its own: no plan has that many entries, and it is the same number on every
/// target (a 32-bit module and a 64-bit binary key a copy alike).
const INBOX_FALLBACK: usize = u32::MAX as usize;

/// The key of entry `index` of `unit` for one purpose, told apart by `tag`.
fn entry_key(tag: &[u8], unit: &Key, index: usize) -> Key {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(unit.0);
    h.update((index as u64).to_le_bytes());
    Key(h.finalize().into())
}

/// The duplicate-index key of copy `index` of `unit`.
pub fn copy_key(unit: &Key, index: usize) -> Key {
    entry_key(b"mdeliver-sieve copy\0", unit, index)
}

/// The marker key of redirect `index` of `unit`.
pub fn redirect_key(unit: &Key, index: usize) -> Key {
    entry_key(b"mdeliver-sieve redirect\0", unit, index)
}

/// The marker key of copy `index` of `unit` going to INBOX because its folder is missing:
/// made durable before that copy is stored, so that a retry sends the copy to INBOX again
/// even if the folder exists by then.
pub fn fallback_key(unit: &Key, index: usize) -> Key {
    entry_key(b"mdeliver-sieve fallback\0", unit, index)
}

/// One planned copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Copy<'a> {
    /// Its index in the plan (what its key is derived from).
    pub index: usize,
    /// The folder, as the script named it (UTF-8, `/` or `.` separated); None: INBOX.
    pub mailbox: Option<&'a [u8]>,
    /// The Maildir flags it is stored with (None: into new/ without flags).
    pub flags: Option<Flags>,
    /// `:create`: create the folder when it is missing.
    pub create: bool,
}

/// One planned action.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A copy into a mailbox.
    Copy(Copy<'a>),
    /// A redirect to this address.
    Redirect {
        /// Its index in the plan.
        index: usize,
        /// The address.
        address: &'a [u8],
    },
    /// A `duplicate` id to remember (RFC 7352) once the copies are stored.
    Track {
        /// Its index in the plan.
        index: usize,
        /// The interpreter's key ([`crate::sieve::Action::Track`]).
        key: &'a [u8],
        /// Remembered until then (seconds since 1970).
        until: u64,
    },
    /// A vacation reply (RFC 5230) to send once the copies are stored, then remember.
    Vacation {
        /// Its index in the plan.
        index: usize,
        /// The reply.
        reply: Reply<'a>,
    },
}

/// A vacation reply as the plan records it (the interpreter's
/// [`crate::sieve::Action::Vacation`], with its period made a date).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The reply's recipient (the message's envelope sender).
    pub to: &'a [u8],
    /// `:from`; empty: the user's address.
    pub from: &'a [u8],
    /// The Subject.
    pub subject: &'a [u8],
    /// The body (with `mime`, a MIME entity).
    pub reason: &'a [u8],
    /// `:mime`.
    pub mime: bool,
    /// The message's Message-ID (empty: none).
    pub in_reply_to: &'a [u8],
    /// The memory's key (`vacation` NUL handle NUL sender).
    pub key: &'a [u8],
    /// Remembered until then (seconds since 1970).
    pub until: u64,
}

impl<'a> Reply<'a> {
    const FIELDS: usize = 6;

    fn fields(&self) -> [&'a [u8]; Reply::FIELDS] {
        [
            self.to,
            self.from,
            self.subject,
            self.reason,
            self.in_reply_to,
            self.key,
        ]
    }

    /// Reads the internal form written by [`Plan::vacation`].
    fn parse(data: &'a [u8]) -> Option<Reply<'a>> {
        let until = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
        let mime = *data.get(8)? != 0;
        let mut rest = &data[9..];
        let mut f: [&[u8]; Reply::FIELDS] = [&[]; Reply::FIELDS];
        for x in f.iter_mut() {
            let n = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
            *x = rest.get(2..2 + n)?;
            rest = &rest[2 + n..];
        }
        rest.is_empty().then_some(Reply {
            to: f[0],
            from: f[1],
            subject: f[2],
            reason: f[3],
            mime,
            in_reply_to: f[4],
            key: f[5],
            until,
        })
    }
}

/// Why a plan could not be made.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// More than [`PLAN_MAX`] bytes of names and addresses.
    TooLarge,
}

const COPY: u8 = b'c';
const REDIRECT: u8 = b'r';
const TRACK: u8 = b't';
const VACATION: u8 = b'v';

/// The actions of one unit, in order: what the record holds. Internally a list of
/// `kind, create, flags, length, bytes` entries.
#[derive(Clone, PartialEq, Eq)]
pub struct Plan {
    bytes: heapless::Vec<u8, PLAN_MAX>,
    len: usize,
}

impl core::fmt::Debug for Plan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.entries()).finish()
    }
}

impl Default for Plan {
    fn default() -> Self {
        Plan::new()
    }
}

impl Plan {
    /// An empty plan (a `discard`: nothing stored, nothing sent).
    pub const fn new() -> Plan {
        Plan {
            bytes: heapless::Vec::new(),
            len: 0,
        }
    }

    /// How many actions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(
        &mut self,
        kind: u8,
        create: bool,
        flags: Option<Flags>,
        data: &[u8],
    ) -> Result<(), PlanError> {
        let mut letters = [0u8; 52];
        let mut n = 0;
        if let Some(f) = flags {
            for l in f.letters() {
                letters[n] = l;
                n += 1;
            }
        }
        let need = 4 + n + 2 + data.len();
        if data.len() > u16::MAX as usize || self.bytes.len() + need > PLAN_MAX {
            return Err(PlanError::TooLarge);
        }
        let has_flags = flags.is_some();
        let _ = self
            .bytes
            .extend_from_slice(&[kind, create as u8, has_flags as u8, n as u8]);
        let _ = self.bytes.extend_from_slice(&letters[..n]);
        let _ = self
            .bytes
            .extend_from_slice(&(data.len() as u16).to_le_bytes());
        let _ = self.bytes.extend_from_slice(data);
        self.len += 1;
        Ok(())
    }

    /// Adds a copy into `mailbox` (None: INBOX). Copies into the same mailbox, however its
    /// name is spelled ([`same_folder`]), are merged, as RFC 5228 4.1 asks for (the first
    /// spelling is kept, the flags of the last one win, `:create` of any).
    pub fn copy(
        &mut self,
        mailbox: Option<&[u8]>,
        flags: Option<Flags>,
        create: bool,
    ) -> Result<(), PlanError> {
        let same = self.entries().find_map(|e| match e {
            Entry::Copy(c) if same_folder(c.mailbox, mailbox) => Some(c),
            _ => None,
        });
        if let Some(c) = same {
            // Rebuild with that copy updated in place.
            let mut out = Plan::new();
            for e in self.entries() {
                match e {
                    Entry::Copy(o) if o.index == c.index => {
                        out.push(COPY, o.create || create, flags, o.mailbox.unwrap_or(b""))
                    }
                    Entry::Copy(o) => out.push(COPY, o.create, o.flags, o.mailbox.unwrap_or(b"")),
                    Entry::Redirect { address, .. } => out.push(REDIRECT, false, None, address),
                    Entry::Track { .. } | Entry::Vacation { .. } => out.push_raw(&e),
                }?;
            }
            // An empty name means INBOX in the internal form: keep that distinction.
            *self = out;
            return Ok(());
        }
        self.push(COPY, create, flags, mailbox.unwrap_or(b""))
    }

    /// Adds a redirect to `address`; a second redirect to the same address is merged
    /// ([`same_mailbox`]: the domain in any case).
    pub fn redirect(&mut self, address: &[u8]) -> Result<(), PlanError> {
        if self
            .entries()
            .any(|e| matches!(e, Entry::Redirect { address: a, .. } if same_mailbox(a, address)))
        {
            return Ok(());
        }
        self.push(REDIRECT, false, None, address)
    }

    /// Adds a `duplicate` id to remember until `until`; a second one with the same key
    /// replaces the first's date.
    pub fn track(&mut self, key: &[u8], until: u64) -> Result<(), PlanError> {
        let mut data = heapless::Vec::<u8, PLAN_MAX>::new();
        data.extend_from_slice(&until.to_le_bytes())
            .and_then(|()| data.extend_from_slice(key))
            .map_err(|_| PlanError::TooLarge)?;
        if self
            .entries()
            .any(|e| matches!(e, Entry::Track { key: k, .. } if k == key))
        {
            let mut out = Plan::new();
            for e in self.entries() {
                match e {
                    Entry::Track { key: k, .. } if k == key => out.push(TRACK, false, None, &data),
                    e => out.push_raw(&e),
                }?;
            }
            *self = out;
            return Ok(());
        }
        self.push(TRACK, false, None, &data)
    }

    /// Adds a vacation reply (`reply.until`: when its memory ends).
    pub fn vacation(&mut self, reply: &Reply<'_>) -> Result<(), PlanError> {
        let data = Plan::vacation_data(reply)?;
        self.push(VACATION, false, None, &data)
    }

    fn vacation_data(reply: &Reply<'_>) -> Result<heapless::Vec<u8, PLAN_MAX>, PlanError> {
        let mut data = heapless::Vec::<u8, PLAN_MAX>::new();
        let too = |_| PlanError::TooLarge;
        data.extend_from_slice(&reply.until.to_le_bytes())
            .map_err(too)?;
        data.push(reply.mime as u8)
            .map_err(|_| PlanError::TooLarge)?;
        for f in reply.fields() {
            let n = u16::try_from(f.len()).map_err(|_| PlanError::TooLarge)?;
            data.extend_from_slice(&n.to_le_bytes()).map_err(too)?;
            data.extend_from_slice(f).map_err(too)?;
        }
        Ok(data)
    }

    /// Appends an entry of another plan as it is.
    fn push_raw(&mut self, e: &Entry<'_>) -> Result<(), PlanError> {
        match *e {
            Entry::Copy(c) => self.push(COPY, c.create, c.flags, c.mailbox.unwrap_or(b"")),
            Entry::Redirect { address, .. } => self.push(REDIRECT, false, None, address),
            Entry::Track { key, until, .. } => {
                let mut data = heapless::Vec::<u8, PLAN_MAX>::new();
                data.extend_from_slice(&until.to_le_bytes())
                    .and_then(|()| data.extend_from_slice(key))
                    .map_err(|_| PlanError::TooLarge)?;
                self.push(TRACK, false, None, &data)
            }
            Entry::Vacation { reply, .. } => {
                let data = Plan::vacation_data(&reply)?;
                self.push(VACATION, false, None, &data)
            }
        }
    }

    /// The actions, in order.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            bytes: &self.bytes,
            index: 0,
        }
    }

    /// The copies, in order.
    pub fn copies(&self) -> impl Iterator<Item = Copy<'_>> {
        self.entries().filter_map(|e| match e {
            Entry::Copy(c) => Some(c),
            _ => None,
        })
    }

    /// The record's bytes: a magic line, one line per action with its names in hex, and a
    /// checksum line over everything before it.
    pub fn encode(&self, out: &mut heapless::Vec<u8, RECORD_MAX>) {
        out.clear();
        let _ = out.extend_from_slice(MAGIC);
        let mut line = heapless::String::<128>::new();
        let hex = |out: &mut heapless::Vec<u8, RECORD_MAX>, data: &[u8]| {
            const H: &[u8; 16] = b"0123456789abcdef";
            if data.is_empty() {
                let _ = out.push(b'-');
            }
            for b in data {
                let _ = out.extend_from_slice(&[H[(b >> 4) as usize], H[(b & 15) as usize]]);
            }
        };
        for e in self.entries() {
            line.clear();
            match e {
                Entry::Copy(c) => {
                    let _ = write!(line, "copy {} ", c.create as u8);
                    match c.flags {
                        Some(f) => {
                            let _ = write!(line, ":{f} ");
                        }
                        None => {
                            let _ = line.push_str("- ");
                        }
                    }
                    let _ = out.extend_from_slice(line.as_bytes());
                    hex(out, c.mailbox.unwrap_or(b""));
                }
                Entry::Redirect { address, .. } => {
                    let _ = out.extend_from_slice(b"redirect ");
                    hex(out, address);
                }
                Entry::Track { key, until, .. } => {
                    let _ = out.extend_from_slice(b"track ");
                    let mut data = heapless::Vec::<u8, PLAN_MAX>::new();
                    let _ = data.extend_from_slice(&until.to_le_bytes());
                    let _ = data.extend_from_slice(key);
                    hex(out, &data);
                }
                Entry::Vacation { reply, .. } => {
                    let _ = out.extend_from_slice(b"vacation ");
                    // Held in the plan, so it fits.
                    let data = Plan::vacation_data(&reply).unwrap_or_default();
                    hex(out, &data);
                }
            }
            let _ = out.push(b'\n');
        }
        let sum = checksum(out);
        line.clear();
        let _ = writeln!(line, "end *{sum:08x}");
        let _ = out.extend_from_slice(line.as_bytes());
    }

    /// Reads a record written by [`Plan::encode`]; None when it does not verify (torn).
    pub fn decode(record: &[u8]) -> Option<Plan> {
        let body_end = record
            .strip_suffix(b"\n")?
            .iter()
            .rposition(|&b| b == b'\n')?
            + 1;
        let (body, end) = record.split_at(body_end);
        let end = end.strip_prefix(b"end *")?.strip_suffix(b"\n")?;
        if end.len() != 8
            || u32::from_str_radix(core::str::from_utf8(end).ok()?, 16).ok()? != checksum(body)
        {
            return None;
        }
        let mut plan = Plan::new();
        let mut lines = body.strip_prefix(MAGIC)?.split(|&b| b == b'\n');
        let mut name = [0u8; PLAN_MAX];
        for line in &mut lines {
            if line.is_empty() {
                continue;
            }
            let mut f = line.split(|&b| b == b' ');
            match f.next()? {
                b"copy" => {
                    let create = match f.next()? {
                        b"0" => false,
                        b"1" => true,
                        _ => return None,
                    };
                    let flags = match f.next()? {
                        b"-" => None,
                        x => Some(
                            Flags::parse(core::str::from_utf8(x.strip_prefix(b":")?).ok()?).ok()?,
                        ),
                    };
                    let n = unhex(f.next()?, &mut name)?;
                    let mailbox = (n > 0).then_some(&name[..n]);
                    plan.push(COPY, create, flags, mailbox.unwrap_or(b""))
                        .ok()?;
                }
                b"redirect" => {
                    let n = unhex(f.next()?, &mut name)?;
                    plan.push(REDIRECT, false, None, &name[..n]).ok()?;
                }
                b"track" => {
                    let n = unhex(f.next()?, &mut name)?;
                    if n < 8 {
                        return None;
                    }
                    plan.push(TRACK, false, None, &name[..n]).ok()?;
                }
                b"vacation" => {
                    let n = unhex(f.next()?, &mut name)?;
                    Reply::parse(&name[..n])?;
                    plan.push(VACATION, false, None, &name[..n]).ok()?;
                }
                _ => return None,
            }
            if f.next().is_some() {
                return None;
            }
        }
        Some(plan)
    }
}

fn checksum(data: &[u8]) -> u32 {
    let d = Sha256::digest(data);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn unhex(s: &[u8], out: &mut [u8]) -> Option<usize> {
    if s == b"-" {
        return Some(0);
    }
    if !s.len().is_multiple_of(2) || s.len() / 2 > out.len() {
        return None;
    }
    let v = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, p) in s.chunks(2).enumerate() {
        out[i] = v(p[0])? << 4 | v(p[1])?;
    }
    Some(s.len() / 2)
}

/// The actions of a [`Plan`].
pub struct Entries<'a> {
    bytes: &'a [u8],
    index: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let b = self.bytes;
        if b.len() < 4 {
            return None;
        }
        let (kind, create, has_flags, n) = (b[0], b[1] != 0, b[2] != 0, b[3] as usize);
        let letters = &b[4..4 + n];
        let len = u16::from_le_bytes([b[4 + n], b[5 + n]]) as usize;
        let data = &b[6 + n..6 + n + len];
        self.bytes = &b[6 + n + len..];
        let index = self.index;
        self.index += 1;
        Some(match kind {
            COPY => {
                let mut flags = Flags::EMPTY;
                for &l in letters {
                    let _ = flags.insert(l);
                }
                Entry::Copy(Copy {
                    index,
                    mailbox: (!data.is_empty()).then_some(data),
                    flags: has_flags.then_some(flags),
                    create,
                })
            }
            TRACK => Entry::Track {
                index,
                until: u64::from_le_bytes(data.get(..8)?.try_into().ok()?),
                key: &data[8..],
            },
            VACATION => Entry::Vacation {
                index,
                reply: Reply::parse(data)?,
            },
            _ => Entry::Redirect {
                index,
                address: data,
            },
        })
    }
}

/// How [`begin`] found the unit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Begun {
    /// No record: the decided plan was recorded.
    Fresh,
    /// A record of an earlier attempt: its plan is the one to finish.
    Resumed,
}

/// Opening a unit ([`begin`]) as a machine: the record read, else written whole
/// ([`Op::WriteFile`], unnamed then linked where the filesystem can) and flushed with its
/// directory; a torn one removed first. Give it a buffer of more than [`RECORD_MAX`] bytes.
pub struct Begin {
    name: heapless::String<48>,
    /// The decided plan, then the one to perform.
    plan: Plan,
    record: heapless::Vec<u8, RECORD_MAX>,
    sync: bool,
    linked: bool,
    at: BeginAt,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum BeginAt {
    Read,
    Unlink,
    Place,
    SyncDir,
    Done(Result<Begun, Error>),
}

impl Begin {
    /// Opens unit `unit` whose script decided `decided`, on a filesystem with `caps`.
    pub fn new(unit: &Key, decided: Plan, sync: bool, caps: Capabilities) -> Begin {
        let mut record = heapless::Vec::new();
        decided.encode(&mut record);
        Begin {
            name: unit.entry_name(),
            plan: decided,
            record,
            sync,
            linked: caps.anonymous_tmp && caps.hard_links,
            at: BeginAt::Read,
        }
    }
}

impl Machine for Begin {
    type Output = Result<Begun, Error>;
    fn poll(&self) -> Step<'_, Self::Output> {
        let (dir, name) = (Dir::Root, self.name.as_str());
        Step::Op(match self.at {
            BeginAt::Read => Op::Read { dir, name },
            BeginAt::Unlink => Op::Unlink { dir, name },
            BeginAt::Place => Op::WriteFile {
                dir,
                name,
                data: &self.record,
                persist: Persist::flush_if(self.sync),
                anonymous: self.linked,
            },
            BeginAt::SyncDir => Op::SyncDir { dir },
            BeginAt::Done(r) => return Step::Done(r),
        })
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], _: &mut E) {
        use BeginAt as A;
        self.at = match (self.at, result.err()) {
            (A::Read, None) => match Plan::decode(data) {
                Some(plan) => {
                    self.plan = plan;
                    A::Done(Ok(Begun::Resumed))
                }
                // Torn before it was flushed (a crash, or a --no-fsync run): no copy began
                // after it; written anew.
                None => A::Unlink,
            },
            (A::Read | A::Unlink, None | Some(ErrorKind::NotFound)) => A::Place,
            (A::Place, None) if self.sync => A::SyncDir,
            (A::Place | A::SyncDir, None) => A::Done(Ok(Begun::Fresh)),
            // The filesystem refused the unnamed file after all: by name.
            (A::Place, Some(ErrorKind::Unsupported)) if self.linked => {
                self.linked = false;
                A::Place
            }
            // Another attempt of this unit at the same moment: its plan stands.
            (A::Place, Some(ErrorKind::Exists)) => {
                A::Done(Err(Error::new(ErrorKind::Busy, Phase::Dedup)))
            }
            (A::Done(r), _) => A::Done(r),
            (_, e) => A::Done(Err(Error::new(e.unwrap_or(ErrorKind::Io), Phase::Dedup))),
        };
    }
    fn observe(&mut self, _: &[u8]) {}
}

/// Opens the unit `unit` in the root maildir `fs` ([`Begin`], run to its end): gives the plan
/// to perform (the recorded one on a retry) and how it was found.
///
/// Two attempts of one unit at the same moment: where the filesystem has unnamed files and
/// hard links, the record is written unnamed and linked to its name, so it appears whole
/// and only once; the attempt whose link finds the name taken performs nothing now and is
/// answered [`ErrorKind::Busy`] (the MTA's retry then follows the record that won, after
/// that attempt has sent any redirect, so nothing is sent twice). Elsewhere the record is
/// created by name: an attempt reading it while the other writes it takes it for torn (see
/// the module documentation).
pub fn begin<F: Fs + ?Sized>(
    fs: &mut F,
    unit: &Key,
    decided: Plan,
    sync: bool,
) -> Result<(Plan, Begun), Error> {
    let mut m = Begin::new(unit, decided, sync, fs.capabilities());
    let mut buf = [0u8; RECORD_MAX + 1];
    let begun = run(&mut m, fs, &mut NoEnv, &mut &b""[..], &mut buf)?;
    Ok((m.plan, begun))
}

/// The index key of a remembered Sieve id (a `duplicate` id or a vacation reply's sender
/// and handle: the interpreter's key), apart from every message and unit key.
pub fn seen_key(key: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(b"mdeliver-sieve seen\0");
    h.update(key);
    Key(h.finalize().into())
}

/// The first bytes of a remembered id's entry.
const SEEN_MAGIC: &[u8] = b"mdeliver-sieve-seen ";

/// The most bytes a remembered id's entry holds.
pub const SEEN_MAX: usize = 64;

/// The entry of an id remembered until `until`: `mdeliver-sieve-seen <until> *<8 hex>\n`,
/// the checksum over what precedes it.
pub fn encode_seen(until: u64, out: &mut heapless::Vec<u8, SEEN_MAX>) {
    let mut line = heapless::String::<SEEN_MAX>::new();
    let _ = line.push_str(core::str::from_utf8(SEEN_MAGIC).unwrap_or(""));
    let _ = write!(line, "{until} ");
    let sum = checksum(line.as_bytes());
    let _ = writeln!(line, "*{sum:08x}");
    out.clear();
    let _ = out.extend_from_slice(line.as_bytes());
}

/// Whether an entry written by [`encode_seen`] still holds at `now` (a torn or altered
/// entry holds nothing: the id counts as not seen).
pub fn seen_at(entry: &[u8], now: u64) -> bool {
    let Some(rest) = entry.strip_suffix(b"\n") else {
        return false;
    };
    let Some(star) = rest.iter().rposition(|&b| b == b'*') else {
        return false;
    };
    let (body, sum) = (&rest[..star], &rest[star + 1..]);
    let sum_ok = core::str::from_utf8(sum)
        .ok()
        .filter(|s| s.len() == 8)
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        == Some(checksum(body));
    let until = body
        .strip_prefix(SEEN_MAGIC)
        .and_then(|b| b.strip_suffix(b" "))
        .and_then(|b| core::str::from_utf8(b).ok())
        .and_then(|b| b.parse::<u64>().ok());
    match until {
        Some(until) if sum_ok => now < until,
        _ => false,
    }
}

/// The most remembered entries one run of a script reads ([`Evaluate`]); a question past
/// them counts as not seen, as an unreadable entry does.
pub const RECALL_MAX: usize = 16;

/// The interpreter's run as a machine: `duplicate` and `vacation :days` ask what earlier
/// runs remembered, each answer one entry of the root maildir's index ([`seen_key`]). The
/// script runs with the answers known; the first entry a run asks about that is not known is
/// one [`Op::Read`], and the script runs again with its answer, until a run asks nothing
/// new. The interpreter is deterministic, so every run takes the same path up to its new
/// question, and a script that asks about `n` entries runs `n + 1` times. A missing,
/// unreadable, torn or over-long entry holds nothing (the id counts as not seen, so a
/// `duplicate` test is false and a vacation reply is sent): the store is an optimisation
/// for the user, and failing open never loses mail. Give it a buffer of more than
/// [`SEEN_MAX`] bytes.
pub struct Evaluate<'a, 's> {
    run: Interpreter<'a, 's>,
    now: u64,
    known: heapless::Vec<(Key, bool), RECALL_MAX>,
    /// The entry to read next; `None` once a run asked nothing new.
    asking: Option<(Key, heapless::String<48>)>,
}

/// What a run of the interpreter takes ([`run_with`]); its memory of earlier runs is
/// [`Evaluate`]'s, whatever `ctx` holds.
pub struct Interpreter<'a, 's> {
    /// The compiled script.
    pub script: &'a Script<'s>,
    /// The message.
    pub msg: &'a Message<'a>,
    /// Its body, the clock and the zone.
    pub ctx: Context<'a>,
    /// The interpreter's limits.
    pub limits: &'a Limits,
    /// The interpreter's working memory.
    pub scratch: &'a mut [u8],
    /// Where the last run's outcome is.
    pub outcome: &'a mut Outcome,
}

/// What one run asked: the answers known, and the first key that was not.
struct Recall<'r> {
    known: &'r [(Key, bool)],
    full: bool,
    missing: core::cell::Cell<Option<Key>>,
}

impl Seen for Recall<'_> {
    fn seen(&self, key: &[u8]) -> bool {
        let key = seen_key(key);
        match self.known.iter().find(|(k, _)| *k == key) {
            Some((_, seen)) => *seen,
            None => {
                if !self.full && self.missing.get().is_none() {
                    self.missing.set(Some(key));
                }
                false
            }
        }
    }
}

impl<'a, 's> Evaluate<'a, 's> {
    /// Runs the script at `now` (seconds since 1970), once with nothing known.
    pub fn new(run: Interpreter<'a, 's>, now: u64) -> Self {
        let mut e = Evaluate {
            run,
            now,
            known: heapless::Vec::new(),
            asking: None,
        };
        e.run();
        e
    }

    /// One run of the script with the answers known; notes the first entry it needs.
    fn run(&mut self) {
        let recall = Recall {
            known: &self.known,
            full: self.known.is_full(),
            missing: core::cell::Cell::new(None),
        };
        let r = &mut self.run;
        let ctx = Context {
            seen: Some(&recall),
            ..r.ctx
        };
        run_with(r.script, r.msg, &ctx, r.limits, r.scratch, r.outcome);
        self.asking = recall.missing.get().map(|k| (k, k.entry_name()));
    }
}

impl Machine for Evaluate<'_, '_> {
    type Output = ();
    fn poll(&self) -> Step<'_, ()> {
        match &self.asking {
            Some((_, name)) => Step::Op(Op::Read {
                dir: Dir::Root,
                name,
            }),
            None => Step::Done(()),
        }
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], _: &mut E) {
        let Some((key, _)) = self.asking.take() else {
            return;
        };
        let seen = match result {
            OpResult::Read(n) if n <= SEEN_MAX => seen_at(&data[..n.min(data.len())], self.now),
            _ => false,
        };
        let _ = self.known.push((key, seen));
        self.run();
    }
    fn observe(&mut self, _: &[u8]) {}
}

/// Runs the script as [`Evaluate`] does, reading the remembered entries from the root
/// maildir `fs`; the outcome is in `run.outcome`.
pub fn evaluate<F: Fs + ?Sized>(fs: &mut F, run: Interpreter<'_, '_>, now: u64) {
    let mut m = Evaluate::new(run, now);
    let mut buf = [0u8; SEEN_MAX + 1];
    super::run(&mut m, fs, &mut NoEnv, &mut &b""[..], &mut buf);
}

/// What performing one copy gave.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CopyDone {
    /// Stored now.
    Stored,
    /// Stored by an earlier attempt (a suppressed duplicate).
    Already,
}

/// What the driver does for a unit: the root maildir (where the record and the redirect
/// markers live), each copy (one composed MTA delivery with the duplicate index keyed by the
/// given key), and each redirect.
pub trait Performer {
    /// The root maildir.
    type Fs: Fs + ?Sized;
    /// The root maildir, for the record and the markers.
    fn root(&mut self) -> &mut Self::Fs;
    /// Stores `copy`, with the duplicate index keyed by `key`. A folder that is missing
    /// (and not `:create`) is `Err` with [`ErrorKind::NotFound`] in [`Phase::Open`].
    fn copy(&mut self, copy: &Copy<'_>, key: Key) -> Result<CopyDone, Error>;
    /// Sends the message to `address` (through the MTA).
    fn redirect(&mut self, index: usize, address: &[u8]) -> Result<(), Error>;
    /// Sends the vacation reply `reply` (through the MTA, with the null envelope sender).
    fn vacation(&mut self, index: usize, reply: &Reply<'_>) -> Result<(), Error>;
    /// Whether the record and markers are flushed (false in a no-fsync run).
    fn sync(&self) -> bool {
        true
    }
}

/// What a unit did, action by action (in plan order): `Ok` for done, the error otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Performed {
    /// How the unit was found.
    pub begun: Begun,
    /// The plan performed (the recorded one on a retry).
    pub plan: Plan,
    /// Per action: what happened.
    pub results: heapless::Vec<Result<Done, Error>, 64>,
}

/// One action's result.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// A copy stored now, or before.
    Copy(CopyDone),
    /// A copy whose folder was missing, stored into INBOX instead (the implicit keep that
    /// RFC 5228 2.10.6 falls back to after a failed action).
    IntoInbox(CopyDone),
    /// A redirect sent now.
    Sent,
    /// A redirect or vacation reply sent by an earlier attempt.
    AlreadySent,
    /// A `duplicate` id remembered.
    Remembered,
    /// A vacation reply sent now, and remembered.
    Replied,
    /// Left for the retry: an earlier action failed, so the message is not delivered yet
    /// (an id is remembered, and a reply sent, only once every copy is stored).
    Waiting,
}

impl Performed {
    /// The first failure, if any (the unit is then incomplete: the MTA's retry finishes it).
    pub fn first_error(&self) -> Option<Error> {
        self.results.iter().find_map(|r| r.err())
    }
}

/// What a [`Unit`] wants besides its operations on the root maildir: an action only its
/// driver can perform (a copy into some maildir, a message to send through the MTA), to be
/// answered before it is run again, or its end.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Wants {
    /// Store the copy that is entry `index` of the plan ([`Unit::entry`]), into INBOX instead
    /// of its mailbox when `inbox`, with the duplicate index keyed by `key`; answer with
    /// [`Unit::copied`]. (A copy whose folder is missing is asked for as the plan's INBOX
    /// copy, when it has one: `index` is then that copy's.)
    Copy {
        /// The entry.
        index: usize,
        /// The duplicate index's key.
        key: Key,
        /// Into INBOX (its folder is missing).
        inbox: bool,
    },
    /// Send redirect `index` to its address; answer with [`Unit::sent`].
    Redirect(usize),
    /// Send vacation reply `index`; answer with [`Unit::sent`].
    Vacation(usize),
    /// Every action was tried ([`Unit::performed`]).
    Finished,
    /// The unit could not begin ([`begin`]'s error): nothing was done.
    Failed(Error),
}

/// One action's progress.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Work {
    Begin,
    Asked(Wants),
    /// The marker of a redirect or reply looked at.
    Stat,
    /// The marker written, then its directory flushed; then `Done`.
    Mark(Done),
    /// On a retry, a folder copy's fallback marker looked at: there, the copy goes to INBOX.
    FallbackStat,
    /// A folder copy's fallback marker written (0), its directory flushed (1); then the copy
    /// is asked for in INBOX.
    Fallback(u8),
    MarkDir(Done),
    /// A remembered id's entry: created (replacing), written, dated, flushed, closed, its
    /// directory flushed (step 0 to 5); then `Done`.
    Remember(u8, Done),
    Finished,
}

/// A unit as one machine ([`perform`] drives it): [`Begin`], then every copy and redirect of
/// the plan, in order, then (once they all succeeded) every id to remember and the vacation
/// reply. The record, the markers and the remembered entries are its operations on the root
/// maildir; the copies and messages to send are asked of the driver ([`Wants`]) and answered
/// ([`Unit::copied`], [`Unit::sent`]). A failing action does not stop the others.
pub struct Unit {
    key: Key,
    begin: Begin,
    begun: Begun,
    results: heapless::Vec<Result<Done, Error>, 64>,
    /// The entry under way, in the first pass (copies, redirects) or the second (ids, reply).
    index: usize,
    second: bool,
    work: Work,
    /// The marker or entry being written, and an entry's contents and date.
    name: heapless::String<48>,
    seen: heapless::Vec<u8, SEEN_MAX>,
    until: u64,
    /// The first failure while an entry's file is open (it is still closed).
    failed: Option<ErrorKind>,
}

impl Unit {
    /// The unit `unit` whose script decided `decided`, on a root maildir with `caps`.
    pub fn new(unit: &Key, decided: Plan, sync: bool, caps: Capabilities) -> Unit {
        Unit {
            key: *unit,
            begin: Begin::new(unit, decided, sync, caps),
            begun: Begun::Fresh,
            results: heapless::Vec::new(),
            index: 0,
            second: false,
            work: Work::Begin,
            name: heapless::String::new(),
            seen: heapless::Vec::new(),
            until: 0,
            failed: None,
        }
    }

    /// Entry `index` of the plan being performed.
    pub fn entry(&self, index: usize) -> Option<Entry<'_>> {
        self.begin.plan.entries().nth(index)
    }

    /// The answer to [`Wants::Copy`].
    pub fn copied(&mut self, r: Result<CopyDone, Error>) {
        let Work::Asked(Wants::Copy { index, inbox, .. }) = self.work else {
            return;
        };
        let in_folder = matches!(self.entry(index), Some(Entry::Copy(c)) if c.mailbox.is_some());
        match r {
            // A copy whose folder is missing goes to INBOX, once its marker says so.
            Err(e) if !inbox && e.kind == ErrorKind::NotFound && e.phase == Phase::Open => {
                if in_folder {
                    self.name = fallback_key(&self.key, index).entry_name();
                    self.work = Work::Fallback(0);
                    return;
                }
                self.settle(Err(e));
            }
            r if inbox => self.settle(r.map(Done::IntoInbox)),
            r => self.settle(r.map(Done::Copy)),
        }
    }

    /// The answer to [`Wants::Redirect`] and [`Wants::Vacation`]: sent, or why not.
    pub fn sent(&mut self, r: Result<(), Error>) {
        let done = match self.work {
            Work::Asked(Wants::Redirect(_)) => Done::Sent,
            Work::Asked(Wants::Vacation(_)) => Done::Replied,
            _ => return,
        };
        match r {
            Ok(()) => self.work = Work::Mark(done),
            Err(e) => self.settle(Err(e)),
        }
    }

    /// What the unit did, once [`Wants::Finished`].
    pub fn performed(self) -> Performed {
        Performed {
            begun: self.begun,
            plan: self.begin.plan,
            results: self.results,
        }
    }

    /// Asks for the current copy in INBOX, its folder being missing: as the plan's INBOX copy
    /// (its key and its flags) when there is one, whichever comes first in the plan; else
    /// under the key every such fallback shares, so that INBOX gets one copy however many
    /// folders were missing (RFC 5228 2.10.3), the first one's.
    fn ask_inbox(&mut self) {
        if self.inbox_done() {
            return self.settle(Ok(Done::IntoInbox(CopyDone::Already)));
        }
        let plan = &self.begin.plan;
        let first = plan.copies().find(|c| c.mailbox.is_none()).map(|c| c.index);
        self.work = Work::Asked(Wants::Copy {
            index: first.unwrap_or(self.index),
            key: copy_key(&self.key, first.unwrap_or(INBOX_FALLBACK)),
            inbox: true,
        });
    }

    /// Whether a copy is in INBOX already in this attempt (stored now, or found stored by an
    /// earlier one): every copy bound for INBOX shares its key, so a later one is that copy.
    fn inbox_done(&self) -> bool {
        let entries = self.begin.plan.entries();
        let mut done = self.results.iter().zip(entries).take(self.index);
        done.any(|(r, e)| match r {
            Ok(Done::IntoInbox(_)) => true,
            Ok(Done::Copy(_)) => matches!(e, Entry::Copy(c) if c.mailbox.is_none()),
            _ => false,
        })
    }

    /// The current action ends with `r`: on to the next.
    fn settle(&mut self, r: Result<Done, Error>) {
        if let Some(slot) = self.results.get_mut(self.index) {
            *slot = r;
        }
        self.index += 1;
        self.advance();
    }

    /// Starts the next action that the current pass has, from entry `index` on.
    fn advance(&mut self) {
        loop {
            let Some(e) = self.entry(self.index) else {
                // Only a delivered message counts as seen (RFC 7352 3) and gets a reply: the
                // ids and the reply wait until every other action is done; the retry does
                // them otherwise.
                if !self.second && self.results.iter().all(|r| r.is_ok()) {
                    (self.second, self.index) = (true, 0);
                    continue;
                }
                self.work = Work::Finished;
                return;
            };
            let (marker, copy) = match (self.second, e) {
                (false, Entry::Copy(c)) => (None, Some(copy_key(&self.key, c.index))),
                (false, Entry::Redirect { index, .. }) | (true, Entry::Vacation { index, .. }) => {
                    (Some(redirect_key(&self.key, index).entry_name()), None)
                }
                (true, Entry::Track { .. }) => (None, None),
                _ => {
                    self.index += 1;
                    continue;
                }
            };
            // Every copy bound for INBOX shares one key: once one is in INBOX in this attempt,
            // a later INBOX copy is that one, and is not asked for again.
            let inbox_copy = copy.is_some() && matches!(e, Entry::Copy(c) if c.mailbox.is_none());
            if inbox_copy && self.inbox_done() {
                return self.settle(Ok(Done::Copy(CopyDone::Already)));
            }
            // On a retry, a copy into a folder first looks for its fallback marker: the
            // attempt that died may have sent it to INBOX already.
            let resumed_folder = self.begun == Begun::Resumed
                && copy.is_some()
                && matches!(e, Entry::Copy(c) if c.mailbox.is_some());
            self.work = match (marker, copy) {
                (_, Some(_)) if resumed_folder => {
                    self.name = fallback_key(&self.key, self.index).entry_name();
                    Work::FallbackStat
                }
                (_, Some(key)) => Work::Asked(Wants::Copy {
                    index: self.index,
                    key,
                    inbox: false,
                }),
                (Some(name), _) => {
                    self.name = name;
                    Work::Stat
                }
                (None, None) => {
                    self.remember();
                    Work::Remember(0, Done::Remembered)
                }
            };
            return;
        }
    }

    /// Prepares the entry that remembers the current entry's id (a `duplicate` id, or a
    /// vacation reply's sender and handle) until the end of its period.
    fn remember(&mut self) {
        let (name, until) = match self.entry(self.index) {
            Some(Entry::Track { key, until, .. }) => (seen_key(key).entry_name(), until),
            Some(Entry::Vacation { reply, .. }) => (seen_key(reply.key).entry_name(), reply.until),
            _ => return,
        };
        self.name = name;
        encode_seen(until, &mut self.seen);
        self.until = until;
    }

    /// A redirect's or reply's marker is in place (sent now or before): `done`, once a
    /// reply's sender is remembered.
    fn marked(&mut self, done: Done) {
        if self.second {
            self.remember();
            self.work = Work::Remember(0, done);
        } else {
            self.settle(Ok(done));
        }
    }
}

impl Machine for Unit {
    type Output = Wants;
    fn poll(&self) -> Step<'_, Wants> {
        let (dir, name) = (Dir::Root, self.name.as_str());
        Step::Op(match self.work {
            Work::Begin => match self.begin.poll() {
                Step::Op(op) => op,
                Step::Done(_) => return Step::Done(Wants::Finished),
            },
            Work::Asked(w) => return Step::Done(w),
            Work::Finished => return Step::Done(Wants::Finished),
            Work::Stat | Work::FallbackStat => Op::Stat { dir, name },
            // Empty, never flushed itself: its name is what counts.
            Work::Mark(_) | Work::Fallback(0) => Op::WriteFile {
                dir,
                name,
                data: b"",
                persist: Persist::Cache,
                anonymous: false,
            },
            Work::MarkDir(_) | Work::Fallback(_) | Work::Remember(5, _) => Op::SyncDir { dir },
            Work::Remember(0, _) => Op::CreateTruncate { dir, name },
            Work::Remember(1, _) => Op::Write { data: &self.seen },
            // Dated at the end of its period, so the index's collection pass (which removes
            // entries idle for its window) keeps it at least that long.
            Work::Remember(2, _) => Op::SetMtime {
                secs: i64::try_from(self.until).unwrap_or(i64::MAX),
            },
            Work::Remember(3, _) => Op::SyncFile,
            Work::Remember(_, _) => Op::CloseFile,
        })
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        let io = |e| Err(Error::new(e, Phase::Dedup));
        let sync = self.begin.sync;
        match (self.work, result.err()) {
            (Work::Begin, _) => {
                self.begin.feed(result, data, env);
                let done = match self.begin.poll() {
                    Step::Done(r) => Some(r),
                    Step::Op(_) => None,
                };
                match done {
                    Some(Ok(begun)) => {
                        self.begun = begun;
                        for _ in self.begin.plan.entries() {
                            let _ = self.results.push(Ok(Done::Waiting));
                        }
                        self.advance();
                    }
                    Some(Err(e)) => self.work = Work::Asked(Wants::Failed(e)),
                    None => {}
                }
            }
            (Work::Stat, None) => self.marked(Done::AlreadySent),
            (Work::Stat, Some(ErrorKind::NotFound)) => {
                self.work = Work::Asked(match self.second {
                    false => Wants::Redirect(self.index),
                    true => Wants::Vacation(self.index),
                })
            }
            (Work::FallbackStat, None) => self.ask_inbox(),
            // No marker: the copy goes to its folder (a copy's index is its entry's).
            (Work::FallbackStat, Some(ErrorKind::NotFound)) => {
                self.work = Work::Asked(Wants::Copy {
                    index: self.index,
                    key: copy_key(&self.key, self.index),
                    inbox: false,
                });
            }
            (Work::Fallback(0), None | Some(ErrorKind::Exists)) if sync => {
                self.work = Work::Fallback(1)
            }
            (Work::Fallback(_), None | Some(ErrorKind::Exists)) => self.ask_inbox(),
            (Work::Mark(d), None | Some(ErrorKind::Exists)) if sync => self.work = Work::MarkDir(d),
            (Work::Mark(d), None | Some(ErrorKind::Exists)) | (Work::MarkDir(d), None) => {
                self.marked(d)
            }
            (Work::Remember(0, _), Some(e)) => self.settle(io(e)),
            (Work::Remember(2, d), None) if !sync => self.work = Work::Remember(4, d),
            (Work::Remember(step @ 0..=3, d), e) => {
                self.failed = self.failed.or(e);
                self.work = Work::Remember(if e.is_some() { 4 } else { step + 1 }, d);
            }
            (Work::Remember(4, d), e) => match self.failed.take().or(e) {
                Some(e) => self.settle(io(e)),
                None if sync => self.work = Work::Remember(5, d),
                None => self.settle(Ok(d)),
            },
            (Work::Remember(_, d), None) => self.settle(Ok(d)),
            (_, e) => self.settle(io(e.unwrap_or(ErrorKind::Io))),
        }
    }
    fn observe(&mut self, _: &[u8]) {}
}

/// Performs the unit `unit` whose script decided `decided` ([`Unit`], run by [`run`] on the
/// root maildir): each copy and message to send it asks for is performed by `p` and
/// answered. The unit is complete when every action succeeded, else the MTA's retry finishes
/// it (see the module documentation). The error is [`begin`]'s: nothing was done.
pub fn perform<P: Performer + ?Sized>(
    p: &mut P,
    unit: &Key,
    decided: Plan,
) -> Result<Performed, Error> {
    let caps = p.root().capabilities();
    let mut m = Unit::new(unit, decided, p.sync(), caps);
    let mut buf = [0u8; RECORD_MAX + 1];
    loop {
        match run(&mut m, p.root(), &mut NoEnv, &mut &b""[..], &mut buf) {
            Wants::Copy { index, key, inbox } => {
                let r = match m.entry(index) {
                    Some(Entry::Copy(c)) if inbox => p.copy(&Copy { mailbox: None, ..c }, key),
                    Some(Entry::Copy(c)) => p.copy(&c, key),
                    _ => Err(Error::new(ErrorKind::Io, Phase::Dedup)),
                };
                m.copied(r);
            }
            Wants::Redirect(index) | Wants::Vacation(index) => {
                let r = match m.entry(index) {
                    Some(Entry::Redirect { address, .. }) => p.redirect(index, address),
                    Some(Entry::Vacation { reply, .. }) => p.vacation(index, &reply),
                    _ => Err(Error::new(ErrorKind::Io, Phase::Dedup)),
                };
                m.sent(r);
            }
            Wants::Finished => return Ok(m.performed()),
            Wants::Failed(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps a [`Unit`] by hand on `fs`, answering each copy with `copy` and each send with
    /// `send`; gives what it asked for and did, one line each, with names told by `label`.
    fn trace(
        fs: &mut crate::testkit::MemFs,
        env: &mut crate::testkit::TestEnv,
        decided: Plan,
        send: Result<(), Error>,
    ) -> (std::vec::Vec<std::string::String>, Performed) {
        use crate::fs::{perform as op, Slots};
        use std::format;
        let unit = Key([9; 32]);
        let names = [
            (unit.entry_name(), "record"),
            (redirect_key(&unit, 1).entry_name(), "marker 1"),
            (redirect_key(&unit, 3).entry_name(), "marker 3"),
            (seen_key(b"id").entry_name(), "seen id"),
            (seen_key(b"sender").entry_name(), "seen sender"),
            (fallback_key(&unit, 0).entry_name(), "fallback 0"),
            (fallback_key(&unit, 1).entry_name(), "fallback 1"),
        ];
        let label = |n: &str| names.iter().find(|(k, _)| k == n).map_or("?", |l| l.1);
        let mut m = Unit::new(&unit, decided, true, fs.capabilities());
        let (mut slots, mut buf) = (Slots::default(), [0u8; RECORD_MAX + 1]);
        let mut lines = std::vec::Vec::new();
        loop {
            let line = match m.poll() {
                Step::Op(o) => {
                    let line = match o {
                        Op::Read { name, .. } => format!("read {}", label(name)),
                        Op::WriteFile { name, .. } => format!("write_file {}", label(name)),
                        Op::Stat { name, .. } => format!("stat {}", label(name)),
                        Op::CreateTruncate { name, .. } => format!("create {}", label(name)),
                        Op::Write { data } => format!("write {}", data.len()),
                        Op::SetMtime { secs } => format!("set_mtime {secs}"),
                        o => format!("{o:?}"),
                    };
                    let (r, n) = op(fs, env, &mut slots, o, &mut &b""[..], &mut buf);
                    m.feed(r, &buf[..n], env);
                    line
                }
                Step::Done(w) => {
                    match w {
                        // The folder `Gone` is missing.
                        Wants::Copy { inbox, index, .. } => {
                            let gone = matches!(m.entry(index),
                                Some(Entry::Copy(c)) if c.mailbox.is_some_and(|b| b.starts_with(b"Gone")));
                            if gone && !inbox {
                                m.copied(Err(Error::new(ErrorKind::NotFound, Phase::Open)));
                            } else {
                                m.copied(Ok(CopyDone::Stored));
                            }
                            if inbox {
                                lines.push("copy inbox".into());
                                continue;
                            }
                        }
                        Wants::Redirect(_) | Wants::Vacation(_) => m.sent(send),
                        Wants::Finished | Wants::Failed(_) => {
                            lines.push(format!("{w:?}"));
                            return (lines, m.performed());
                        }
                    }
                    format!("{w:?}")
                        .split([' ', '('])
                        .next()
                        .unwrap()
                        .to_lowercase()
                }
            };
            lines.push(line);
        }
    }

    fn acts() -> Plan {
        let mut p = Plan::new();
        p.copy(None, None, false).unwrap();
        p.redirect(b"alice@example.org").unwrap();
        p.track(b"id", 500).unwrap();
        p.vacation(&Reply {
            to: b"bob@example.org",
            from: b"me@example.org",
            subject: b"away",
            reason: b"on leave",
            mime: false,
            in_reply_to: b"<1@x>",
            key: b"sender",
            until: 900,
        })
        .unwrap();
        p
    }

    /// The unit is one machine: its record, markers and memory are its operations on the
    /// root, in the order that makes it exactly-once; each copy and send is asked of its
    /// driver, a marker is written only after the send was answered, and the memory waits for
    /// every copy and redirect. The retry follows the record: the copy is asked again (the
    /// index makes it a duplicate), the sent redirect and reply are not, the memory is
    /// written again.
    #[test]
    fn a_unit_asks_its_driver_for_copies_and_sends_and_marks_them_after_the_answer() {
        let (mut fs, mut env, _) = crate::testkit::setup();
        let (lines, done) = trace(&mut fs, &mut env, acts(), Ok(()));
        let remember = |id: &str, until: u32| {
            [
                std::format!("create seen {id}"),
                "write 34".into(),
                std::format!("set_mtime {until}"),
                "SyncFile".into(),
                "CloseFile".into(),
                "SyncDir { dir: Root }".into(),
            ]
        };
        let mut want: std::vec::Vec<std::string::String> = FRESH.map(Into::into).to_vec();
        want.extend(["write_file marker 1", "SyncDir { dir: Root }"].map(Into::into));
        want.extend(remember("id", 500));
        want.extend(["stat marker 3", "vacation", "write_file marker 3"].map(Into::into));
        want.push("SyncDir { dir: Root }".into());
        want.extend(remember("sender", 900));
        want.push("Finished".into());
        assert_eq!(lines, want);
        assert_eq!(done.begun, Begun::Fresh);
        let sent = [Done::Copy(CopyDone::Stored), Done::Sent, Done::Remembered];
        let sent: std::vec::Vec<_> = sent.into_iter().chain([Done::Replied]).map(Ok).collect();
        assert_eq!(&done.results[..], &sent[..]);

        let (lines, done) = trace(&mut fs, &mut env, Plan::new(), Ok(()));
        let mut again: std::vec::Vec<std::string::String> =
            ["read record", "copy", "stat marker 1"]
                .map(Into::into)
                .to_vec();
        again.extend(remember("id", 500));
        again.push("stat marker 3".into());
        again.extend(remember("sender", 900));
        again.push("Finished".into());
        assert_eq!(lines, again);
        assert_eq!((done.begun, done.plan), (Begun::Resumed, acts()));
    }

    /// A fresh unit's steps up to its redirect (`acts()`): the record written and flushed, the
    /// copy, the redirect's marker looked for, the redirect sent.
    const FRESH: [&str; 6] = [
        "read record",
        "write_file record",
        "SyncDir { dir: Root }",
        "copy",
        "stat marker 1",
        "redirect",
    ];

    /// A send that fails leaves no marker, and nothing is remembered nor replied: the retry
    /// sends it again and then does the rest.
    #[test]
    fn a_failed_send_leaves_no_marker_and_the_memory_waits() {
        let (mut fs, mut env, _) = crate::testkit::setup();
        let failed = Error::new(ErrorKind::Io, Phase::Publish);
        let (lines, done) = trace(&mut fs, &mut env, acts(), Err(failed));
        assert_eq!(lines, [&FRESH[..], &["Finished"]].concat());
        let results = [Ok(Done::Copy(CopyDone::Stored)), Err(failed)];
        let waiting = [Ok(Done::Waiting), Ok(Done::Waiting)];
        assert_eq!(&done.results[..], &[results, waiting].concat()[..]);
        let (lines, _) = trace(&mut fs, &mut env, Plan::new(), Ok(()));
        assert_eq!(
            lines[..4],
            ["read record", "copy", "stat marker 1", "redirect"]
        );
        assert_eq!(lines[4], "write_file marker 1");
    }

    /// A copy whose folder is missing goes to INBOX after its marker is durable; a retry
    /// that finds the marker sends it to INBOX again without trying the folder (which may
    /// exist by then), and one that does not tries the folder first.
    #[test]
    fn a_missing_folder_s_copy_is_marked_before_it_goes_to_inbox() {
        let (mut fs, mut env, _) = crate::testkit::setup();
        let mut gone = Plan::new();
        gone.copy(Some(b"Gone"), None, false).unwrap();
        let (lines, done) = trace(&mut fs, &mut env, gone, Ok(()));
        let fresh = [
            "read record",
            "write_file record",
            "SyncDir { dir: Root }",
            "copy",
        ];
        let fallback = [
            "write_file fallback 0",
            "SyncDir { dir: Root }",
            "copy inbox",
        ];
        assert_eq!(lines, [&fresh[..], &fallback[..], &["Finished"]].concat());
        assert_eq!(
            &done.results[..],
            &[Ok(Done::IntoInbox(CopyDone::Stored))][..]
        );

        let (lines, _) = trace(&mut fs, &mut env, Plan::new(), Ok(()));
        let again = ["read record", "stat fallback 0", "copy inbox", "Finished"];
        assert_eq!(lines, again);

        let marker = fallback_key(&Key([9; 32]), 0).entry_name();
        fs.unlink(Dir::Root, &marker).unwrap();
        let (lines, _) = trace(&mut fs, &mut env, Plan::new(), Ok(()));
        let start = ["read record", "stat fallback 0", "copy"];
        assert_eq!(lines, [&start[..], &fallback[..], &["Finished"]].concat());
    }

    /// Copies bound for INBOX share one key: after the first is stored in an attempt, the
    /// later ones (another missing folder's, the keep) are not asked for again (a driver would
    /// report each as a suppressed duplicate).
    #[test]
    fn the_copies_bound_for_inbox_are_asked_for_once_per_attempt() {
        let (mut fs, mut env, _) = crate::testkit::setup();
        let mut p = Plan::new();
        p.copy(Some(b"Gone1"), None, false).unwrap();
        p.copy(Some(b"Gone2"), None, false).unwrap();
        p.copy(None, None, false).unwrap();
        let (lines, done) = trace(&mut fs, &mut env, p, Ok(()));
        let sync = "SyncDir { dir: Root }";
        let want = [
            "read record",
            "write_file record",
            sync,
            "copy",
            "write_file fallback 0",
            sync,
            "copy inbox",
            "copy",
            "write_file fallback 1",
            sync,
            "Finished",
        ];
        assert_eq!(lines, want);
        let results = [
            Ok(Done::IntoInbox(CopyDone::Stored)),
            Ok(Done::IntoInbox(CopyDone::Already)),
            Ok(Done::Copy(CopyDone::Already)),
        ];
        assert_eq!(&done.results[..], &results[..]);
    }

    fn plan() -> Plan {
        let mut p = Plan::new();
        p.copy(Some(b"Lists/rust"), Some(Flags::parse("FS").unwrap()), true)
            .unwrap();
        p.redirect(b"alice@example.org").unwrap();
        p.copy(None, None, false).unwrap();
        p.copy(Some("Caf\u{e9} & co".as_bytes()), Some(Flags::EMPTY), false)
            .unwrap();
        p
    }

    #[test]
    fn a_record_round_trips_and_reads_as_text() {
        let p = plan();
        let mut rec = heapless::Vec::new();
        p.encode(&mut rec);
        let text = core::str::from_utf8(&rec).unwrap();
        let lines: std::vec::Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "mdeliver-sieve-unit 1");
        assert_eq!(lines[1], "copy 1 :FS 4c697374732f72757374");
        assert_eq!(lines[2], "redirect 616c696365406578616d706c652e6f7267");
        assert_eq!(lines[3], "copy 0 - -");
        assert_eq!(lines[4], "copy 0 : 436166c3a9202620636f");
        assert!(lines[5].starts_with("end *") && lines.len() == 6);
        assert_eq!(Plan::decode(&rec), Some(p));
    }

    #[test]
    fn a_torn_or_altered_record_does_not_verify() {
        let mut rec = heapless::Vec::new();
        plan().encode(&mut rec);
        for cut in 0..rec.len() {
            assert_eq!(Plan::decode(&rec[..cut]), None, "cut at {cut}");
        }
        for i in 0..rec.len() - 1 {
            let mut bad = rec.clone();
            bad[i] ^= 1;
            assert_eq!(Plan::decode(&bad), None, "byte {i} flipped");
        }
    }

    #[test]
    fn copies_into_one_mailbox_merge_and_redirects_too() {
        let mut p = Plan::new();
        p.copy(Some(b"A"), None, false).unwrap();
        p.copy(None, None, false).unwrap();
        p.copy(Some(b"A"), Some(Flags::parse("S").unwrap()), true)
            .unwrap();
        p.redirect(b"x@y").unwrap();
        p.redirect(b"x@y").unwrap();
        let e: std::vec::Vec<Entry<'_>> = p.entries().collect();
        assert_eq!(
            e,
            [
                Entry::Copy(Copy {
                    index: 0,
                    mailbox: Some(b"A"),
                    flags: Some(Flags::parse("S").unwrap()),
                    create: true
                }),
                Entry::Copy(Copy {
                    index: 1,
                    mailbox: None,
                    flags: None,
                    create: false
                }),
                Entry::Redirect {
                    index: 2,
                    address: b"x@y"
                },
            ]
        );
    }

    #[test]
    fn a_plan_over_its_bound_is_refused() {
        let mut p = Plan::new();
        let name = [b'x'; 1000];
        let mut n = 0;
        let err = loop {
            let mut nm = name;
            nm[..4].copy_from_slice(&(n as u32).to_le_bytes().map(|b| b'a' + b % 26));
            match p.copy(Some(&nm), None, false) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, PlanError::TooLarge);
        assert!(n >= 7);
        let mut rec = heapless::Vec::new();
        p.encode(&mut rec);
        assert_eq!(
            Plan::decode(&rec),
            Some(p),
            "a full plan still fits its record"
        );
    }

    #[test]
    fn a_remembered_id_holds_until_its_date_and_not_when_torn() {
        let mut e = heapless::Vec::new();
        encode_seen(1_000, &mut e);
        assert_eq!(
            &e[..],
            b"mdeliver-sieve-seen 1000 *"
                .as_slice()
                .iter()
                .copied()
                .chain(std::format!("{:08x}\n", checksum(b"mdeliver-sieve-seen 1000 ")).bytes())
                .collect::<std::vec::Vec<u8>>()
                .as_slice()
        );
        assert!(seen_at(&e, 0));
        assert!(seen_at(&e, 999));
        assert!(!seen_at(&e, 1_000));
        for cut in 0..e.len() {
            assert!(!seen_at(&e[..cut], 0), "cut at {cut}");
        }
        for i in 0..e.len() - 1 {
            let mut bad = e.clone();
            bad[i] ^= 1;
            assert!(!seen_at(&bad, 0), "byte {i} flipped");
        }
    }

    #[test]
    fn ids_and_replies_round_trip_through_the_record() {
        let mut p = plan();
        p.track(b"duplicate\0\0<1@x>", 500).unwrap();
        p.vacation(&Reply {
            to: b"a@b",
            from: b"",
            subject: "Auto: caf\u{e9}".as_bytes(),
            reason: b"away\r\n",
            mime: true,
            in_reply_to: b"<1@x>",
            key: b"vacation\0h\0a@b",
            until: 9_999,
        })
        .unwrap();
        // A second track of one key replaces its date, in place.
        p.track(b"duplicate\0\0<1@x>", 700).unwrap();
        p.copy(Some(b"Lists/rust"), None, false).unwrap();
        let mut rec = heapless::Vec::new();
        p.encode(&mut rec);
        let text = core::str::from_utf8(&rec).unwrap();
        let kinds: std::vec::Vec<&str> =
            text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "mdeliver-sieve-unit",
                "copy",
                "redirect",
                "copy",
                "copy",
                "track",
                "vacation",
                "end"
            ]
        );
        let back = Plan::decode(&rec).unwrap();
        assert_eq!(back, p);
        let e: std::vec::Vec<Entry<'_>> = back.entries().collect();
        assert_eq!(
            e[4],
            Entry::Track {
                index: 4,
                key: b"duplicate\0\0<1@x>",
                until: 700
            }
        );
        let Entry::Vacation { index: 5, reply } = e[5] else {
            panic!("{:?}", e[5])
        };
        assert_eq!(reply.subject, "Auto: caf\u{e9}".as_bytes());
        assert_eq!(
            (reply.mime, reply.until, reply.key),
            (true, 9_999, &b"vacation\0h\0a@b"[..])
        );
        // The copy into Lists/rust merged into the first.
        assert_eq!(e.len(), 6);
    }

    #[test]
    fn keys_differ_per_copy_and_from_the_message_keys() {
        let u = unit_key([7; 32]);
        let all = [
            u,
            copy_key(&u, 0),
            copy_key(&u, 1),
            redirect_key(&u, 0),
            fallback_key(&u, 0),
            seen_key(b"duplicate\0\0<1@x>"),
            Key::from_content_digest([7; 32]),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i].entry_name(), all[j].entry_name());
            }
        }
    }

    /// The interpreter's questions about earlier runs are read one at a time through the
    /// machine, the script running again after each answer: a missing entry and a torn one
    /// count as not seen, a whole one that has not run out as seen, one run out as not.
    #[test]
    fn evaluate_reads_each_remembered_entry_the_script_asks_about_then_runs_again() {
        use crate::sieve::{compile, Action, Limits, Message, Node};
        let script = "require [\"duplicate\", \"fileinto\"];\n\
                      if duplicate :uniqueid \"a\" { fileinto \"A\"; }\n\
                      elsif duplicate :uniqueid \"b\" { fileinto \"B\"; }\n\
                      else { fileinto \"C\"; }\n";
        let limits = Limits::default();
        let mut nodes = std::vec![Node::FREE; Limits::nodes_for(script.len())];
        let mut strings = std::vec![0u8; Limits::strings_for(script.len())];
        let s = compile(script.as_bytes(), &limits, &mut nodes, &mut strings).unwrap();
        let msg = Message {
            header: b"Subject: hi\r\nMessage-ID: <m@x>\r\n\r\n",
            size: 30,
            envelope_from: b"a@b",
            envelope_to: b"c@d",
        };
        let now = 1_000_000;
        let mut valid = heapless::Vec::new();
        encode_seen(now + 60, &mut valid);
        let mut old = heapless::Vec::new();
        encode_seen(now, &mut old);
        let torn = &valid[..valid.len() - 2];
        // (the answer for "a", for "b") -> the reads made, and the folder filed into.
        type Answer<'x> = Option<&'x [u8]>;
        let cases: [(Answer<'_>, Answer<'_>, usize, &str); 5] = [
            (None, None, 2, "C"),
            (Some(&valid), None, 1, "A"),
            (Some(torn), Some(&valid), 2, "B"),
            (Some(&old), Some(&old), 2, "C"),
            (None, Some(&valid), 2, "B"),
        ];
        for (a, b, reads, folder) in cases {
            let mut out = std::boxed::Box::new(Outcome::new());
            let mut scratch = std::vec![0u8; 4096];
            let run = Interpreter {
                script: &s,
                msg: &msg,
                ctx: Context::NONE,
                limits: &limits,
                scratch: &mut scratch,
                outcome: &mut out,
            };
            let mut m = Evaluate::new(run, now);
            let mut names = std::vec::Vec::new();
            while let Step::Op(op) = m.poll() {
                let Op::Read {
                    dir: Dir::Root,
                    name,
                } = op
                else {
                    panic!("{op:?}")
                };
                assert!(!names.iter().any(|n: &std::string::String| n == name));
                names.push(std::string::String::from(name));
                let answer = [a, b][names.len() - 1];
                match answer {
                    Some(bytes) => m.feed(OpResult::Read(bytes.len()), bytes, &mut NoEnv),
                    None => m.feed(OpResult::Err(ErrorKind::NotFound), &[], &mut NoEnv),
                }
            }
            assert_eq!(names.len(), reads, "{a:?} {b:?}");
            drop(m);
            let stored: std::vec::Vec<&[u8]> = out
                .actions()
                .iter()
                .filter_map(|act| match act {
                    Action::Store {
                        mailbox: Some(t), ..
                    } => Some(out.text(*t)),
                    _ => None,
                })
                .collect();
            assert_eq!(stored, [folder.as_bytes()], "{a:?} {b:?}");
        }
    }
}
