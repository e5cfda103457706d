//! A compact byte encoding of [`Op`], [`OpResult`] and delivery outcomes, so a delivery machine
//! compiled to another target (the WASI module) can be stepped by a driver on the other side of
//! a foreign-function boundary, exactly as a native machine is stepped. Encoding writes into a
//! caller's buffer; decoding borrows names from the input. Both sides use this one module: every
//! code of the stepping ABI below is defined here and nowhere else.
//!
//! # The stepping ABI
//!
//! The WASI module (`wasi/src/step.rs`) exports three of the core's machines, the bare
//! [`Delivery`](crate::machine::deliver::Delivery), the composed MTA delivery
//! [`Mta`](crate::machine::mta::Mta) (duplicate index, quota, publish, accounting, commit) and
//! a Sieve script's exactly-once [`Unit`](crate::machine::unit::Unit) of actions, as twelve
//! C-like functions; a host (the simulator's differential test) drives them. All data
//! crosses in one buffer of [`STEP_BUF_LEN`] bytes inside the module's memory; integers are
//! little-endian. Calls that can fail return an `i32` made by [`encode_return`]: a
//! non-negative value, or [`CallError::BadInput`] (`-1`) or [`CallError::Diverged`] (`-2`).
//!
//! - `mdeliver_step_buf() -> *mut u8`: the buffer's address.
//! - `mdeliver_step_env_push(kind: u32, a: u64, b: u64) -> i32`: queues one [`EnvValue`]
//!   ([`EnvValue::encode`]) for the next `new` or `feed`. 0, or -1 (nothing queued) for an
//!   unknown kind or a field out of range.
//! - `mdeliver_step_new(len: u32) -> i32`: starts a delivery from the [`Start`] in the
//!   buffer's first `len` bytes ([`encode_start`]). A handle, or -1.
//! - `mdeliver_step_new_mta(len: u32) -> i32`: starts an MTA delivery from the [`MtaStart`] in
//!   the buffer's first `len` bytes ([`encode_mta_start`]). A handle, or -1.
//! - `mdeliver_step_new_unit(len: u32) -> i32`: starts a Sieve unit from the [`UnitStart`] in
//!   the buffer's first `len` bytes ([`encode_unit_start`]). A handle, or -1.
//! - `mdeliver_step_poll(handle: u32) -> i32`: writes the machine's next step to the buffer
//!   ([`encode_step`] for a delivery, [`encode_mta_step`] for an MTA delivery,
//!   [`encode_unit_step`] for a unit). Its length,
//!   or -1 for a bad handle (or a step that does not fit the buffer, which [`STEP_BUF_LEN`]
//!   makes impossible). A finished machine keeps answering its outcome.
//! - `mdeliver_step_feed(handle: u32, len: u32) -> i32`: feeds the last polled operation's
//!   result from the buffer's first `len` bytes: a delivery's [`OpResult`] ([`encode_result`]);
//!   an MTA delivery's or a unit's result with the bytes the operation read ([`encode_feed`]).
//!   0, -1 for a bad handle or encoding, -2 when the machine has diverged (for good).
//! - `mdeliver_step_answer(handle: u32, len: u32) -> i32`: gives a unit the driver's
//!   [`Answer`] ([`encode_answer`]) to what its last step wanted (a copy stored, a message
//!   sent, or why not). 0, or -1 for a bad handle (or not a unit) or encoding.
//! - `mdeliver_step_performed(handle: u32) -> i32`: writes what a finished unit performed
//!   ([`encode_performed`]) to the buffer and releases the unit. Its length, or -1 for a bad
//!   handle or a unit that has not finished.
//! - `mdeliver_step_observe(handle: u32, len: u32) -> i32`: shows the machine the buffer's
//!   first `len` bytes as the next chunk of the message that `WriteMessage` streams (the MTA
//!   delivery derives its duplicate key from them; a bare delivery and a unit ignore them). The host
//!   calls it, in chunks, before feeding `WriteMessage`'s result. 0, or -1 for a bad handle.
//! - `mdeliver_step_drop(handle: u32)`: releases the machine; a later `new` may reuse its
//!   handle.
//! - `mdeliver_step_set_mtime(handle: u32, secs: i64) -> i32`: gives the message file the
//!   modification time `secs` (seconds since the epoch), as `-M` does
//!   ([`Delivery::set_mtime`](crate::machine::deliver::Delivery::set_mtime)): the machine then
//!   asks for [`Op::SetMtime`] between the write and the file's flush. 1 when it took effect,
//!   0 when the write was already fed, -1 for a bad handle (or a unit). The time is an input like the
//!   options, not an environment value: the host calls it right after `new`.
//!
//! **Environment.** The module's machine has no clock or entropy of its own: it replays the
//! values the host pushes, in the order the native machine drew them. Before `new` the host
//! pushes the process id ([`EnvValue::Pid`], taken by `new` only) and whatever the native
//! machine drew while starting; before each `feed`, whatever it drew while consuming that
//! result. `(kind, a, b)`: [`ENV_NOW`] `(secs, micros)`, [`ENV_RANDOM`] `(value, 0)`,
//! [`ENV_COUNTER`] `(value, 0)`, [`ENV_PID`] `(pid, 0)` or `(0, 1)` for no pid. A machine that
//! asks for a value that was not pushed, or for another kind first, has diverged: `feed`
//! returns -2.
//!
//! **Start** ([`encode_start`]): strategy code ([`encode_strategy`]: 0 Exclusive, 1 Classic,
//! 2 Classic with `O_EXCL`, 3 Locked), durability code ([`encode_durability`]: 0 full,
//! 1 deferred directory sync, 2 none), flags (0 = deliver to new/; 1 + a string of flag
//! letters = deliver to cur/), the info separator byte, then `max_attempts`,
//! `lock_stale_secs`, `lock_timeout_ms`, `lock_poll_ms` as `u64`s, the capability bits
//! ([`encode_caps`]: [`CAP_ANONYMOUS_TMP`] 1, [`CAP_RENAME_NOREPLACE`] 2, [`CAP_HARD_LINKS`] 4,
//! [`CAP_DIR_SYNC`] 8, [`CAP_ATOMIC_EXCLUSIVE`] 16, [`CAP_ORDERED_COMMIT`] 32) and the host
//! name as a string. A string is a length byte followed by that many UTF-8 bytes.
//!
//! **MTA start** ([`encode_mta_start`]): a [`Start`], then the quota, duplicate-index, key and
//! order options.
//!
//! **Step** ([`encode_step`]): [`STEP_OP`] (1) followed by an encoded [`Op`] ([`encode_op`]),
//! or [`STEP_DONE`] (2) followed by an encoded [`Outcome`] ([`encode_outcome`]); an MTA
//! delivery's final step is [`STEP_MTA_DONE`] (3) and an [`MtaOutcome`]
//! ([`encode_mta_outcome`]); a unit's steps besides its operations are [`STEP_UNIT_WANTS`] (4)
//! and what it wants of its driver, the last of them "finished" ([`encode_unit_step`]).
//!
//! **Unit start** ([`encode_unit_start`]): the unit's key, whether it flushes, the capability
//! bits and the plan as its record ([`Plan::encode`](crate::machine::unit::Plan::encode)).

use crate::env::Timestamp;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Capabilities, Dir, Op, OpResult, Persist, Stat};
use crate::machine::dedup::{DedupOptions, Key};
use crate::machine::deliver::{Delivered, Durability, Options, Outcome, Publish, Step, Strategy};
use crate::machine::mta::{Accepted, MtaOptions, MtaOutcome, Order};
use crate::machine::quota::{CheckOptions, Checked, Limits, RecalcReason, Usage, Verdict};
use crate::maildir::flags::Flags;
use crate::maildir::name::{InfoSep, NameBuf};

mod unit;

pub use unit::{
    decode_answer, decode_performed, decode_unit_start, decode_unit_step, encode_answer,
    encode_performed, encode_unit_start, encode_unit_step, Answer, UnitStart, UnitStep,
    STEP_UNIT_WANTS,
};

/// Why bytes could not be decoded (or an encoding did not fit).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WireError;

/// Every error kind, in wire order (also what a test or fuzz target draws kinds from).
pub const KINDS: [ErrorKind; 19] = [
    ErrorKind::Exists,
    ErrorKind::NotFound,
    ErrorKind::NoSpace,
    ErrorKind::Quota,
    ErrorKind::Permission,
    ErrorKind::ReadOnly,
    ErrorKind::Interrupted,
    ErrorKind::Io,
    ErrorKind::Unsupported,
    ErrorKind::NotDirectory,
    ErrorKind::NameTooLong,
    ErrorKind::Collisions,
    ErrorKind::Busy,
    ErrorKind::Data,
    ErrorKind::Usage,
    ErrorKind::Loop,
    ErrorKind::OverQuota,
    ErrorKind::Resources,
    ErrorKind::CrossDevice,
];
const PHASES: [Phase; 11] = [
    Phase::Open,
    Phase::Create,
    Phase::Read,
    Phase::Write,
    Phase::SyncFile,
    Phase::Publish,
    Phase::SyncDir,
    Phase::Lock,
    Phase::Check,
    Phase::Quota,
    Phase::Dedup,
];
/// Every directory, in wire order.
pub const DIRS: [Dir; 5] = [Dir::Root, Dir::Tmp, Dir::New, Dir::Cur, Dir::Top];
const PUBLISH: [Publish; 4] = [
    Publish::AnonymousLink,
    Publish::RenameNoReplace,
    Publish::LinkUnlink,
    Publish::CheckedRename,
];

fn index<T: PartialEq>(table: &[T], v: T) -> u8 {
    table.iter().position(|x| *x == v).unwrap_or(0) as u8
}

fn lookup<T: Copy>(table: &[T], i: u8) -> Result<T, WireError> {
    table.get(usize::from(i)).copied().ok_or(WireError)
}

struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) -> Result<(), WireError> {
        *self.buf.get_mut(self.len).ok_or(WireError)? = v;
        self.len += 1;
        Ok(())
    }
    fn u64(&mut self, v: u64) -> Result<(), WireError> {
        for b in v.to_le_bytes() {
            self.u8(b)?;
        }
        Ok(())
    }
    fn str(&mut self, s: &str) -> Result<(), WireError> {
        let n = u8::try_from(s.len()).map_err(|_| WireError)?;
        self.u8(n)?;
        for &b in s.as_bytes() {
            self.u8(b)?;
        }
        Ok(())
    }
    fn dir_name(&mut self, (d, n): (Dir, &str)) -> Result<(), WireError> {
        self.u8(index(&DIRS, d))?;
        self.str(n)
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        self.u64(b.len() as u64)?;
        let end = self.len.checked_add(b.len()).ok_or(WireError)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(WireError)?
            .copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, WireError> {
        let v = *self.buf.get(self.pos).ok_or(WireError)?;
        self.pos += 1;
        Ok(v)
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8()?;
        }
        Ok(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        u32::try_from(self.u64()?).map_err(|_| WireError)
    }
    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = usize::from(self.u8()?);
        let s = self.buf.get(self.pos..self.pos + n).ok_or(WireError)?;
        self.pos += n;
        core::str::from_utf8(s).map_err(|_| WireError)
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(self.u64()?).map_err(|_| WireError)?;
        let end = self.pos.checked_add(n).ok_or(WireError)?;
        let b = self.buf.get(self.pos..end).ok_or(WireError)?;
        self.pos = end;
        Ok(b)
    }
    fn dir(&mut self) -> Result<Dir, WireError> {
        lookup(&DIRS, self.u8()?)
    }
    fn dir_name(&mut self) -> Result<(Dir, &'a str), WireError> {
        Ok((self.dir()?, self.str()?))
    }
}

/// [`Persist`] bit of `WriteFile`'s and `Append`'s flags byte: flushed (the old `sync`).
const PERSIST_FLUSH: u8 = 1;
/// [`Persist`] bit: written back (bit 1 of `WriteFile`'s byte is `anonymous`).
const PERSIST_WRITE_BACK: u8 = 4;

fn persist_bits(p: Persist) -> u8 {
    match p {
        Persist::Cache => 0,
        Persist::Flush => PERSIST_FLUSH,
        Persist::WriteBack => PERSIST_WRITE_BACK,
    }
}

/// Encodes an operation into `buf`, returning the length used.
pub fn encode_op(op: Op<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    match op {
        Op::CreateExclusive { dir, name } => {
            w.u8(1)?;
            w.dir_name((dir, name))?;
        }
        Op::CreateTruncate { dir, name } => {
            w.u8(2)?;
            w.dir_name((dir, name))?;
        }
        Op::CreateAnonymous { dir } => {
            w.u8(3)?;
            w.u8(index(&DIRS, dir))?;
        }
        Op::WriteMessage => w.u8(4)?,
        Op::SyncFile => w.u8(5)?,
        Op::CloseFile => w.u8(6)?,
        Op::LinkAnonymous { dir, name } => {
            w.u8(7)?;
            w.dir_name((dir, name))?;
        }
        Op::Link { from, to } => {
            w.u8(8)?;
            w.dir_name(from)?;
            w.dir_name(to)?;
        }
        Op::Rename {
            from,
            to,
            noreplace,
        } => {
            w.u8(9)?;
            w.dir_name(from)?;
            w.dir_name(to)?;
            w.u8(u8::from(noreplace))?;
        }
        Op::Unlink { dir, name } => {
            w.u8(10)?;
            w.dir_name((dir, name))?;
        }
        Op::Stat { dir, name } => {
            w.u8(11)?;
            w.dir_name((dir, name))?;
        }
        Op::SyncDir { dir } => {
            w.u8(12)?;
            w.u8(index(&DIRS, dir))?;
        }
        Op::Sleep { millis } => {
            w.u8(13)?;
            w.u64(u64::from(millis))?;
        }
        Op::WriteFile {
            dir,
            name,
            data,
            persist,
            anonymous,
        } => {
            w.u8(14)?;
            w.dir_name((dir, name))?;
            w.bytes(data)?;
            w.u8(persist_bits(persist) | (u8::from(anonymous) << 1))?;
        }
        Op::Append {
            dir,
            name,
            data,
            persist,
        } => {
            w.u8(15)?;
            w.dir_name((dir, name))?;
            w.bytes(data)?;
            w.u8(persist_bits(persist))?;
        }
        Op::Read { dir, name } => {
            w.u8(16)?;
            w.dir_name((dir, name))?;
        }
        Op::OpenDir { dir } => {
            w.u8(17)?;
            w.u8(index(&DIRS, dir))?;
        }
        Op::OpenFolderDir { base, folder, dir } => {
            w.u8(21)?;
            w.u8(index(&DIRS, base))?;
            w.bytes(folder)?;
            w.u8(index(&DIRS, dir))?;
        }
        Op::StatListed { name } => {
            w.u8(22)?;
            w.bytes(name.as_bytes())?;
        }
        Op::NextEntry => w.u8(18)?,
        Op::CloseDir => w.u8(19)?,
        Op::SetMtime { secs } => {
            w.u8(20)?;
            w.u64(secs as u64)?;
        }
        Op::SyncAll => w.u8(23)?,
        Op::WriteBack => w.u8(25)?,
        Op::Write { data } => {
            w.u8(24)?;
            w.bytes(data)?;
        }
    }
    Ok(w.len)
}

/// Decodes an operation, borrowing its names from `buf`.
pub fn decode_op(buf: &[u8]) -> Result<Op<'_>, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let op = match r.u8()? {
        1 => {
            let (dir, name) = r.dir_name()?;
            Op::CreateExclusive { dir, name }
        }
        2 => {
            let (dir, name) = r.dir_name()?;
            Op::CreateTruncate { dir, name }
        }
        3 => Op::CreateAnonymous { dir: r.dir()? },
        4 => Op::WriteMessage,
        5 => Op::SyncFile,
        6 => Op::CloseFile,
        7 => {
            let (dir, name) = r.dir_name()?;
            Op::LinkAnonymous { dir, name }
        }
        8 => Op::Link {
            from: r.dir_name()?,
            to: r.dir_name()?,
        },
        9 => {
            let from = r.dir_name()?;
            let to = r.dir_name()?;
            Op::Rename {
                from,
                to,
                noreplace: r.u8()? != 0,
            }
        }
        10 => {
            let (dir, name) = r.dir_name()?;
            Op::Unlink { dir, name }
        }
        11 => {
            let (dir, name) = r.dir_name()?;
            Op::Stat { dir, name }
        }
        12 => Op::SyncDir { dir: r.dir()? },
        13 => Op::Sleep { millis: r.u32()? },
        14 | 15 => {
            let code = buf[0];
            let (dir, name) = r.dir_name()?;
            let data = r.bytes()?;
            let flags = r.u8()?;
            let persist = if flags & PERSIST_WRITE_BACK != 0 {
                Persist::WriteBack
            } else {
                Persist::flush_if(flags & PERSIST_FLUSH != 0)
            };
            if code == 14 {
                Op::WriteFile {
                    dir,
                    name,
                    data,
                    persist,
                    anonymous: flags & 2 != 0,
                }
            } else {
                Op::Append {
                    dir,
                    name,
                    data,
                    persist,
                }
            }
        }
        16 => {
            let (dir, name) = r.dir_name()?;
            Op::Read { dir, name }
        }
        17 => Op::OpenDir { dir: r.dir()? },
        18 => Op::NextEntry,
        19 => Op::CloseDir,
        21 => Op::OpenFolderDir {
            base: r.dir()?,
            folder: r.bytes()?,
            dir: r.dir()?,
        },
        22 => Op::StatListed {
            name: core::str::from_utf8(r.bytes()?).map_err(|_| WireError)?,
        },
        20 => Op::SetMtime {
            secs: r.u64()? as i64,
        },
        23 => Op::SyncAll,
        25 => Op::WriteBack,
        24 => Op::Write { data: r.bytes()? },
        _ => return Err(WireError),
    };
    Ok(op)
}

/// Encodes an operation's result.
pub fn encode_result(res: OpResult, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    match res {
        OpResult::Done => w.u8(1)?,
        OpResult::Created { id } => {
            w.u8(2)?;
            match id {
                Some((d, i)) => {
                    w.u8(1)?;
                    w.u64(d)?;
                    w.u64(i)?;
                }
                None => w.u8(0)?,
            }
        }
        OpResult::Written { size, crlf_size } => {
            w.u8(3)?;
            w.u64(size)?;
            w.u64(crlf_size)?;
        }
        OpResult::Stat(s) => {
            w.u8(4)?;
            w.u64(s.nlink)?;
            w.u64(s.size)?;
            w.u64(s.mtime)?;
            w.u8(u8::from(s.regular))?;
        }
        OpResult::Err(k) => {
            w.u8(5)?;
            w.u8(index(&KINDS, k))?;
        }
        OpResult::SourceErr(k) => {
            w.u8(6)?;
            w.u8(index(&KINDS, k))?;
        }
        OpResult::Read(n) => {
            w.u8(7)?;
            w.u64(n as u64)?;
        }
        OpResult::Entry => w.u8(8)?,
        OpResult::End => w.u8(9)?,
    }
    Ok(w.len)
}

/// Decodes an operation's result.
pub fn decode_result(buf: &[u8]) -> Result<OpResult, WireError> {
    let mut r = Reader { buf, pos: 0 };
    Ok(match r.u8()? {
        1 => OpResult::Done,
        2 => OpResult::Created {
            id: match r.u8()? {
                0 => None,
                _ => Some((r.u64()?, r.u64()?)),
            },
        },
        3 => OpResult::Written {
            size: r.u64()?,
            crlf_size: r.u64()?,
        },
        4 => OpResult::Stat(Stat {
            nlink: r.u64()?,
            size: r.u64()?,
            mtime: r.u64()?,
            regular: r.u8()? != 0,
        }),
        5 => OpResult::Err(lookup(&KINDS, r.u8()?)?),
        6 => OpResult::SourceErr(lookup(&KINDS, r.u8()?)?),
        7 => OpResult::Read(usize::try_from(r.u64()?).map_err(|_| WireError)?),
        8 => OpResult::Entry,
        9 => OpResult::End,
        _ => return Err(WireError),
    })
}

/// Encodes a result together with the bytes fed with it (what a `Read` read, the name a
/// `NextEntry` found: [`Machine::feed`](crate::machine::Machine::feed)'s `data`).
pub fn encode_feed(res: OpResult, data: &[u8], buf: &mut [u8]) -> Result<usize, WireError> {
    let n = encode_result(res, buf)?;
    let mut w = Writer {
        buf: buf.get_mut(n..).ok_or(WireError)?,
        len: 0,
    };
    w.bytes(data)?;
    Ok(n + w.len)
}

/// Decodes what [`encode_feed`] wrote: the result and the bytes fed with it.
pub fn decode_feed(buf: &[u8]) -> Result<(OpResult, &[u8]), WireError> {
    let res = decode_result(buf)?;
    let n = encode_result(res, &mut [0u8; 32])?;
    let mut r = Reader {
        buf: buf.get(n..).ok_or(WireError)?,
        pos: 0,
    };
    Ok((res, r.bytes()?))
}

impl Writer<'_> {
    fn delivered(&mut self, d: &Delivered) -> Result<(), WireError> {
        self.u8(index(&DIRS, d.dir))?;
        self.str(&d.name)?;
        self.u64(d.size)?;
        self.u8(index(&PUBLISH, d.publish))?;
        self.u8(u8::from(d.needs_dir_sync))?;
        self.u8(u8::from(d.leftover_tmp))
    }
    fn error(&mut self, e: &Error) -> Result<(), WireError> {
        self.u8(2)?;
        self.u8(index(&KINDS, e.kind))?;
        self.u8(index(&PHASES, e.phase))?;
        self.u8(e.left.map_or(0, |d| 1 + index(&DIRS, d)))
    }
    fn opt_u64(&mut self, v: Option<u64>) -> Result<(), WireError> {
        self.u8(u8::from(v.is_some()))?;
        self.u64(v.unwrap_or(0))
    }
    /// A duplicate-index key: its 32 bytes.
    fn key(&mut self, k: &Key) -> Result<(), WireError> {
        k.0.iter().try_for_each(|&b| self.u8(b))
    }
}

impl Reader<'_> {
    fn delivered(&mut self) -> Result<Delivered, WireError> {
        let dir = self.dir()?;
        let mut name = NameBuf::new();
        name.push_str(self.str()?).map_err(|_| WireError)?;
        Ok(Delivered {
            dir,
            name,
            size: self.u64()?,
            publish: lookup(&PUBLISH, self.u8()?)?,
            needs_dir_sync: self.flag()?,
            leftover_tmp: self.flag()?,
        })
    }
    /// An error's fields (after its tag, 2).
    fn error(&mut self) -> Result<Error, WireError> {
        let e = Error::new(lookup(&KINDS, self.u8()?)?, lookup(&PHASES, self.u8()?)?);
        Ok(match self.u8()? {
            0 => e,
            d => e.with_left(lookup(&DIRS, d - 1)?),
        })
    }
    fn flag(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, WireError> {
        let some = self.flag()?;
        let v = self.u64()?;
        Ok(some.then_some(v))
    }
    fn key(&mut self) -> Result<Key, WireError> {
        let mut k = [0u8; 32];
        for b in &mut k {
            *b = self.u8()?;
        }
        Ok(Key(k))
    }
}

/// Encodes a finished delivery's outcome.
pub fn encode_outcome(o: &Outcome, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    match o {
        Ok(d) => {
            w.u8(1)?;
            w.delivered(d)?;
        }
        Err(e) => w.error(e)?,
    }
    Ok(w.len)
}

/// Decodes a finished delivery's outcome.
pub fn decode_outcome(buf: &[u8]) -> Result<Outcome, WireError> {
    let mut r = Reader { buf, pos: 0 };
    match r.u8()? {
        1 => Ok(Ok(r.delivered()?)),
        2 => Ok(Err(r.error()?)),
        _ => Err(WireError),
    }
}

/// The length of the module's shared stepping buffer: room for a Sieve unit's record, read or
/// written whole ([`RECORD_MAX`](crate::machine::unit::RECORD_MAX)), with its header (and so
/// for a `Read` of a whole `maildirsize` below
/// [`RECALC_SIZE`](crate::machine::quota::RECALC_SIZE)).
pub const STEP_BUF_LEN: usize = crate::machine::unit::RECORD_MAX + 1024;
const _: () = assert!(STEP_BUF_LEN >= crate::machine::quota::RECALC_SIZE + 64);

/// Every strategy, in wire order.
pub const STRATEGIES: [Strategy; 4] = [
    Strategy::Exclusive,
    Strategy::Classic {
        exclusive_create: false,
    },
    Strategy::Classic {
        exclusive_create: true,
    },
    Strategy::Locked,
];
/// Every durability, in wire order.
pub const DURABILITIES: [Durability; 3] =
    [Durability::Full, Durability::DeferDirSync, Durability::None];

/// A strategy's code.
pub fn encode_strategy(s: Strategy) -> u8 {
    index(&STRATEGIES, s)
}

/// The strategy of a code.
pub fn decode_strategy(code: u8) -> Result<Strategy, WireError> {
    lookup(&STRATEGIES, code)
}

/// A durability's code.
pub fn encode_durability(d: Durability) -> u8 {
    index(&DURABILITIES, d)
}

/// The durability of a code.
pub fn decode_durability(code: u8) -> Result<Durability, WireError> {
    lookup(&DURABILITIES, code)
}

/// Capability bit: [`Capabilities::anonymous_tmp`].
pub const CAP_ANONYMOUS_TMP: u8 = 1;
/// Capability bit: [`Capabilities::rename_noreplace`].
pub const CAP_RENAME_NOREPLACE: u8 = 2;
/// Capability bit: [`Capabilities::hard_links`].
pub const CAP_HARD_LINKS: u8 = 4;
/// Capability bit: [`Capabilities::dir_sync`].
pub const CAP_DIR_SYNC: u8 = 8;
/// Capability bit: [`Capabilities::atomic_exclusive`].
pub const CAP_ATOMIC_EXCLUSIVE: u8 = 16;
/// Capability bit: [`Capabilities::ordered_commit`].
pub const CAP_ORDERED_COMMIT: u8 = 32;
const CAP_ALL: u8 = CAP_ANONYMOUS_TMP
    | CAP_RENAME_NOREPLACE
    | CAP_HARD_LINKS
    | CAP_DIR_SYNC
    | CAP_ATOMIC_EXCLUSIVE
    | CAP_ORDERED_COMMIT;

/// Capabilities as bits.
pub fn encode_caps(c: Capabilities) -> u8 {
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    bit(c.anonymous_tmp, CAP_ANONYMOUS_TMP)
        | bit(c.rename_noreplace, CAP_RENAME_NOREPLACE)
        | bit(c.hard_links, CAP_HARD_LINKS)
        | bit(c.dir_sync, CAP_DIR_SYNC)
        | bit(c.atomic_exclusive, CAP_ATOMIC_EXCLUSIVE)
        | bit(c.ordered_commit, CAP_ORDERED_COMMIT)
}

/// Capabilities from bits; unknown bits are refused.
pub fn decode_caps(bits: u8) -> Result<Capabilities, WireError> {
    if bits & !CAP_ALL != 0 {
        return Err(WireError);
    }
    Ok(Capabilities {
        anonymous_tmp: bits & CAP_ANONYMOUS_TMP != 0,
        rename_noreplace: bits & CAP_RENAME_NOREPLACE != 0,
        hard_links: bits & CAP_HARD_LINKS != 0,
        dir_sync: bits & CAP_DIR_SYNC != 0,
        atomic_exclusive: bits & CAP_ATOMIC_EXCLUSIVE != 0,
        ordered_commit: bits & CAP_ORDERED_COMMIT != 0,
    })
}

/// Everything a delivery machine is started with (`mdeliver_step_new`), but its environment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Start<'a> {
    /// The delivery options, every field.
    pub opts: Options,
    /// What the filesystem offers.
    pub caps: Capabilities,
    /// The host name the machine's environment reports.
    pub host: &'a str,
}

/// Encodes a machine's start, returning the length used.
pub fn encode_start(s: &Start<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    w.start(s)?;
    Ok(w.len)
}

/// Decodes a machine's start, borrowing the host name from `buf`.
pub fn decode_start(buf: &[u8]) -> Result<Start<'_>, WireError> {
    Reader { buf, pos: 0 }.start()
}

impl Writer<'_> {
    fn start(&mut self, s: &Start<'_>) -> Result<(), WireError> {
        let o = &s.opts;
        self.u8(encode_strategy(o.strategy))?;
        self.u8(encode_durability(o.durability))?;
        match o.flags {
            Some(f) => {
                self.u8(1)?;
                // At most 52 letters: the length always fits.
                self.u8(f.len() as u8)?;
                for l in f.letters() {
                    self.u8(l)?;
                }
            }
            None => self.u8(0)?,
        }
        self.u8(o.sep.byte())?;
        self.u64(u64::from(o.max_attempts))?;
        self.u64(o.lock_stale_secs)?;
        self.u64(u64::from(o.lock_timeout_ms))?;
        self.u64(u64::from(o.lock_poll_ms))?;
        self.u8(encode_caps(s.caps))?;
        self.str(s.host)
    }
}

impl<'a> Reader<'a> {
    fn start(&mut self) -> Result<Start<'a>, WireError> {
        let strategy = decode_strategy(self.u8()?)?;
        let durability = decode_durability(self.u8()?)?;
        let flags = match self.u8()? {
            0 => None,
            1 => Some(Flags::parse(self.str()?).map_err(|_| WireError)?),
            _ => return Err(WireError),
        };
        let opts = Options {
            strategy,
            durability,
            flags,
            sep: self.sep()?,
            max_attempts: self.u32()?,
            lock_stale_secs: self.u64()?,
            lock_timeout_ms: self.u32()?,
            lock_poll_ms: self.u32()?,
        };
        Ok(Start {
            opts,
            caps: decode_caps(self.u8()?)?,
            host: self.str()?,
        })
    }
    fn sep(&mut self) -> Result<InfoSep, WireError> {
        InfoSep::new(self.u8()?).ok_or(WireError)
    }
}

/// Everything a composed MTA delivery is started with (`mdeliver_step_new_mta`), but its
/// environment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MtaStart<'a> {
    /// The options, every field.
    pub opts: MtaOptions,
    /// What the filesystem offers.
    pub caps: Capabilities,
    /// The host name the machine's environment reports.
    pub host: &'a str,
}

const VERDICTS: [Verdict; 3] = [Verdict::NoQuota, Verdict::Allow, Verdict::Over];
const RECALC_REASONS: [RecalcReason; 6] = [
    RecalcReason::Missing,
    RecalcReason::TooBig,
    RecalcReason::Unparseable,
    RecalcReason::Negative,
    RecalcReason::DefinitionChanged,
    RecalcReason::OverAndStale,
];
const ORDERS: [Order; 2] = [Order::AccountFirst, Order::AccountLast];

/// Encodes an MTA delivery's start: the delivery's [`Start`], then the quota (0, or 1 and the
/// limits' bytes and count, each 0 or 1 and a `u64`, `max_recalc`, `count_trashed` and the
/// separator), the duplicate index (0, or 1 and `window_secs`, `lease_secs`, `margin_secs`,
/// `poll_ms`, `wait_ms`, `max_entries`, `gc_every` as `u64`s and the separator), the key (0,
/// or 1 and its 32 bytes) and the order (0 account first, 1 account last).
pub fn encode_mta_start(s: &MtaStart<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    let o = &s.opts;
    w.start(&Start {
        opts: o.delivery,
        caps: s.caps,
        host: s.host,
    })?;
    match o.quota {
        Some(q) => {
            w.u8(1)?;
            let l = q.given.unwrap_or_default();
            w.u8(u8::from(q.given.is_some()))?;
            w.opt_u64(l.bytes)?;
            w.opt_u64(l.count)?;
            w.u64(u64::from(q.max_recalc))?;
            w.u8(u8::from(q.count_trashed))?;
            w.u8(q.sep.byte())?;
            w.u8(u8::from(q.folder))?;
        }
        None => w.u8(0)?,
    }
    match o.dedup {
        Some(d) => {
            w.u8(1)?;
            for v in [d.window_secs, d.lease_secs, d.margin_secs] {
                w.u64(v)?;
            }
            for v in [d.poll_ms, d.wait_ms, d.max_entries, d.gc_every] {
                w.u64(u64::from(v))?;
            }
            w.u8(d.sep.byte())?;
        }
        None => w.u8(0)?,
    }
    match o.key {
        Some(k) => {
            w.u8(1)?;
            w.key(&k)?;
        }
        None => w.u8(0)?,
    }
    w.u8(index(&ORDERS, o.order))?;
    Ok(w.len)
}

/// Decodes an MTA delivery's start, borrowing the host name from `buf`.
pub fn decode_mta_start(buf: &[u8]) -> Result<MtaStart<'_>, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let start = r.start()?;
    let quota = match r.flag()? {
        true => Some(CheckOptions {
            given: {
                let given = r.flag()?;
                let l = Limits {
                    bytes: r.opt_u64()?,
                    count: r.opt_u64()?,
                };
                given.then_some(l)
            },
            max_recalc: r.u32()?,
            count_trashed: r.flag()?,
            sep: r.sep()?,
            folder: r.flag()?,
        }),
        false => None,
    };
    let dedup = match r.flag()? {
        true => Some(DedupOptions {
            window_secs: r.u64()?,
            lease_secs: r.u64()?,
            margin_secs: r.u64()?,
            poll_ms: r.u32()?,
            wait_ms: r.u32()?,
            max_entries: r.u32()?,
            gc_every: r.u32()?,
            sep: r.sep()?,
        }),
        false => None,
    };
    let key = match r.flag()? {
        true => Some(r.key()?),
        false => None,
    };
    let order = lookup(&ORDERS, r.u8()?)?;
    Ok(MtaStart {
        opts: MtaOptions {
            delivery: start.opts,
            quota,
            dedup,
            key,
            order,
        },
        caps: start.caps,
        host: start.host,
    })
}

/// Encodes a finished MTA delivery's outcome: 1 stored (the delivery as in
/// [`encode_outcome`], whether indexed, then 0 or 1 and the quota check: verdict, limits,
/// usage, recalculation reason as 0 or 1 + its code, raced), 3 duplicate (the directory as 0
/// or 1 + its code, the name), or an error as in [`encode_outcome`].
pub fn encode_mta_outcome(o: &MtaOutcome, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    match o {
        Ok(Accepted::Stored {
            delivered,
            indexed,
            quota,
        }) => {
            w.u8(1)?;
            w.delivered(delivered)?;
            w.u8(u8::from(*indexed))?;
            match quota {
                Some(c) => {
                    w.u8(1)?;
                    w.u8(index(&VERDICTS, c.verdict))?;
                    w.opt_u64(c.limits.bytes)?;
                    w.opt_u64(c.limits.count)?;
                    w.u64(c.usage.bytes)?;
                    w.u64(c.usage.count)?;
                    w.u8(c.recalculated.map_or(0, |x| 1 + index(&RECALC_REASONS, x)))?;
                    w.u8(u8::from(c.raced))?;
                }
                None => w.u8(0)?,
            }
        }
        Ok(Accepted::Duplicate { dir, name }) => {
            w.u8(3)?;
            w.u8(dir.map_or(0, |d| 1 + index(&DIRS, d)))?;
            w.str(name)?;
        }
        Err(e) => w.error(e)?,
    }
    Ok(w.len)
}

/// Decodes a finished MTA delivery's outcome.
pub fn decode_mta_outcome(buf: &[u8]) -> Result<MtaOutcome, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let opt = |r: &mut Reader<'_>| match r.u8()? {
        0 => Ok(None),
        i => Ok(Some(i - 1)),
    };
    match r.u8()? {
        1 => {
            let delivered = r.delivered()?;
            let indexed = r.flag()?;
            let quota = match r.flag()? {
                true => Some(Checked {
                    verdict: lookup(&VERDICTS, r.u8()?)?,
                    limits: Limits {
                        bytes: r.opt_u64()?,
                        count: r.opt_u64()?,
                    },
                    usage: Usage {
                        bytes: r.u64()?,
                        count: r.u64()?,
                    },
                    recalculated: match opt(&mut r)? {
                        Some(i) => Some(lookup(&RECALC_REASONS, i)?),
                        None => None,
                    },
                    raced: r.flag()?,
                }),
                false => None,
            };
            Ok(Ok(Accepted::Stored {
                delivered,
                indexed,
                quota,
            }))
        }
        3 => {
            let dir = match opt(&mut r)? {
                Some(i) => Some(lookup(&DIRS, i)?),
                None => None,
            };
            let mut name = NameBuf::new();
            name.push_str(r.str()?).map_err(|_| WireError)?;
            Ok(Ok(Accepted::Duplicate { dir, name }))
        }
        2 => Ok(Err(r.error()?)),
        _ => Err(WireError),
    }
}

/// Environment value kind: the clock (`a` seconds, `b` microseconds).
pub const ENV_NOW: u32 = 0;
/// Environment value kind: entropy (`a`).
pub const ENV_RANDOM: u32 = 1;
/// Environment value kind: the name counter (`a`).
pub const ENV_COUNTER: u32 = 2;
/// Environment value kind: the process id (`a`, or none when `b` is 1).
pub const ENV_PID: u32 = 3;

/// One value a machine draws from its environment, as the host pushes it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    /// [`crate::Env::now`].
    Now(Timestamp),
    /// [`crate::Env::random_u64`].
    Random(u64),
    /// [`crate::Env::next_counter`].
    Counter(u64),
    /// [`crate::Env::pid`].
    Pid(Option<u32>),
}

impl EnvValue {
    /// The `(kind, a, b)` arguments of `mdeliver_step_env_push`.
    pub fn encode(self) -> (u32, u64, u64) {
        match self {
            EnvValue::Now(t) => (ENV_NOW, t.secs, u64::from(t.micros)),
            EnvValue::Random(r) => (ENV_RANDOM, r, 0),
            EnvValue::Counter(c) => (ENV_COUNTER, c, 0),
            EnvValue::Pid(Some(p)) => (ENV_PID, u64::from(p), 0),
            EnvValue::Pid(None) => (ENV_PID, 0, 1),
        }
    }

    /// The value of `(kind, a, b)`; unknown kinds and out-of-range or non-canonical fields are
    /// refused.
    pub fn decode(kind: u32, a: u64, b: u64) -> Result<EnvValue, WireError> {
        let narrow = |v: u64| u32::try_from(v).map_err(|_| WireError);
        Ok(match (kind, b) {
            (ENV_NOW, _) => EnvValue::Now(Timestamp {
                secs: a,
                micros: narrow(b)?,
            }),
            (ENV_RANDOM, 0) => EnvValue::Random(a),
            (ENV_COUNTER, 0) => EnvValue::Counter(a),
            (ENV_PID, 0) => EnvValue::Pid(Some(narrow(a)?)),
            (ENV_PID, 1) if a == 0 => EnvValue::Pid(None),
            _ => return Err(WireError),
        })
    }
}

/// Step kind: an operation follows.
pub const STEP_OP: u8 = 1;
/// Step kind: the outcome follows.
pub const STEP_DONE: u8 = 2;

/// Encodes a machine's step (what `mdeliver_step_poll` writes), returning the length used.
pub fn encode_step(step: &Step<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let (tag, body) = buf.split_first_mut().ok_or(WireError)?;
    let n = match step {
        Step::Op(op) => {
            *tag = STEP_OP;
            encode_op(*op, body)
        }
        Step::Done(o) => {
            *tag = STEP_DONE;
            encode_outcome(o, body)
        }
    }?;
    Ok(n + 1)
}

/// Decodes a machine's step, borrowing its names from `buf`.
pub fn decode_step(buf: &[u8]) -> Result<Step<'_>, WireError> {
    match buf.split_first() {
        Some((&STEP_OP, body)) => Ok(Step::Op(decode_op(body)?)),
        Some((&STEP_DONE, body)) => Ok(Step::Done(decode_outcome(body)?)),
        _ => Err(WireError),
    }
}

/// Step kind: an MTA delivery's outcome follows.
pub const STEP_MTA_DONE: u8 = 3;

/// Encodes an MTA delivery's step (what `mdeliver_step_poll` writes for it): [`STEP_OP`] and
/// the operation, or [`STEP_MTA_DONE`] and the outcome ([`encode_mta_outcome`]).
pub fn encode_mta_step(step: &MtaStep<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let (tag, body) = buf.split_first_mut().ok_or(WireError)?;
    let n = match step {
        MtaStep::Op(op) => {
            *tag = STEP_OP;
            encode_op(*op, body)
        }
        MtaStep::Done(o) => {
            *tag = STEP_MTA_DONE;
            encode_mta_outcome(o, body)
        }
    }?;
    Ok(n + 1)
}

/// Decodes an MTA delivery's step, borrowing its names from `buf`.
pub fn decode_mta_step(buf: &[u8]) -> Result<MtaStep<'_>, WireError> {
    match buf.split_first() {
        Some((&STEP_OP, body)) => Ok(MtaStep::Op(decode_op(body)?)),
        Some((&STEP_MTA_DONE, body)) => Ok(MtaStep::Done(decode_mta_outcome(body)?)),
        _ => Err(WireError),
    }
}

/// A composed MTA delivery's step.
pub type MtaStep<'a> = crate::machine::Step<'a, MtaOutcome>;

/// Why a stepping call failed: its negative return value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// -1: a bad handle, a bad encoding, or a value that does not fit.
    BadInput,
    /// -2: the machine asked for an environment value that had not been pushed.
    Diverged,
}

impl CallError {
    /// The negative return value.
    pub const fn code(self) -> i32 {
        match self {
            CallError::BadInput => -1,
            CallError::Diverged => -2,
        }
    }
}

/// A stepping call's `i32` return value: a non-negative value (a handle, a length, 0), or the
/// error's code. A value above `i32::MAX` cannot be returned: it is reported as
/// [`CallError::BadInput`].
pub fn encode_return(r: Result<u32, CallError>) -> i32 {
    match r {
        Ok(v) => i32::try_from(v).unwrap_or(CallError::BadInput.code()),
        Err(e) => e.code(),
    }
}

/// The meaning of a stepping call's return value; unknown negative codes are refused.
pub fn decode_return(code: i32) -> Result<Result<u32, CallError>, WireError> {
    for e in [CallError::BadInput, CallError::Diverged] {
        if code == e.code() {
            return Ok(Err(e));
        }
    }
    u32::try_from(code).map(Ok).map_err(|_| WireError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let ops = [
            Op::CreateExclusive {
                dir: Dir::Tmp,
                name: "a",
            },
            Op::CreateTruncate {
                dir: Dir::Tmp,
                name: "b",
            },
            Op::CreateAnonymous { dir: Dir::Tmp },
            Op::WriteMessage,
            Op::SyncFile,
            Op::CloseFile,
            Op::LinkAnonymous {
                dir: Dir::New,
                name: "c",
            },
            Op::Link {
                from: (Dir::Tmp, "a"),
                to: (Dir::Cur, "d:2,S"),
            },
            Op::Rename {
                from: (Dir::Tmp, "a"),
                to: (Dir::New, "e"),
                noreplace: true,
            },
            Op::Unlink {
                dir: Dir::Root,
                name: "mdeliver.lock",
            },
            Op::Stat {
                dir: Dir::New,
                name: "f",
            },
            Op::SyncDir { dir: Dir::Cur },
            Op::Sleep { millis: 2000 },
        ];
        let mut buf = [0u8; 600];
        for op in ops {
            let n = encode_op(op, &mut buf).unwrap();
            assert_eq!(decode_op(&buf[..n]).unwrap(), op);
        }
        let long = "x".repeat(255);
        let op = Op::Link {
            from: (Dir::Tmp, &long),
            to: (Dir::New, &long),
        };
        let n = encode_op(op, &mut buf).unwrap();
        assert_eq!(decode_op(&buf[..n]).unwrap(), op);
        assert_eq!(encode_op(op, &mut buf[..100]), Err(WireError));
    }

    #[test]
    fn results_and_outcomes_round_trip() {
        let mut buf = [0u8; 300];
        let results = [
            OpResult::Done,
            OpResult::Created { id: None },
            OpResult::Created {
                id: Some((1, u64::MAX)),
            },
            OpResult::Written {
                size: 12345,
                crlf_size: 12400,
            },
            OpResult::Stat(Stat {
                nlink: 2,
                size: 3,
                mtime: 4,
                regular: true,
            }),
            OpResult::Err(ErrorKind::OverQuota),
            OpResult::SourceErr(ErrorKind::Data),
        ];
        for r in results {
            let n = encode_result(r, &mut buf).unwrap();
            assert_eq!(decode_result(&buf[..n]).unwrap(), r);
        }
        for k in KINDS {
            let o: Outcome = Err(Error::new(k, Phase::Publish));
            let n = encode_outcome(&o, &mut buf).unwrap();
            assert_eq!(decode_outcome(&buf[..n]).unwrap(), o);
        }
        let mut name = NameBuf::new();
        name.push_str("1.M2Q3R4.h,S=5").unwrap();
        let o: Outcome = Ok(Delivered {
            dir: Dir::Cur,
            name,
            size: 5,
            publish: Publish::CheckedRename,
            needs_dir_sync: true,
            leftover_tmp: false,
        });
        let n = encode_outcome(&o, &mut buf).unwrap();
        assert_eq!(decode_outcome(&buf[..n]).unwrap(), o);
        assert!(decode_op(&[99]).is_err() && decode_result(&[]).is_err());
    }

    #[test]
    fn strategies_and_durabilities_round_trip() {
        for s in STRATEGIES {
            assert_eq!(decode_strategy(encode_strategy(s)), Ok(s));
        }
        for d in DURABILITIES {
            assert_eq!(decode_durability(encode_durability(d)), Ok(d));
        }
        // The documented codes.
        assert_eq!(encode_strategy(Strategy::Exclusive), 0);
        assert_eq!(
            encode_strategy(Strategy::Classic {
                exclusive_create: true
            }),
            2
        );
        assert_eq!(encode_strategy(Strategy::Locked), 3);
        assert_eq!(encode_durability(Durability::None), 2);
        for code in 4..=u8::MAX {
            assert_eq!(decode_strategy(code), Err(WireError));
        }
        for code in 3..=u8::MAX {
            assert_eq!(decode_durability(code), Err(WireError));
        }
    }

    #[test]
    fn capabilities_round_trip_and_unknown_bits_are_refused() {
        for bits in 0..=u8::MAX {
            match decode_caps(bits) {
                Ok(c) => {
                    assert!(bits < 64, "{bits:#x} accepted");
                    assert_eq!(encode_caps(c), bits);
                }
                Err(WireError) => assert!(bits >= 64, "{bits:#x} refused"),
            }
        }
        assert_eq!(encode_caps(Capabilities::LINUX_LOCAL), 31);
        assert_eq!(
            encode_caps(Capabilities::POSIX),
            CAP_HARD_LINKS | CAP_DIR_SYNC | CAP_ATOMIC_EXCLUSIVE
        );
        let only = |f: fn(&mut Capabilities)| {
            let mut c = decode_caps(0).unwrap();
            f(&mut c);
            encode_caps(c)
        };
        assert_eq!(only(|c| c.anonymous_tmp = true), CAP_ANONYMOUS_TMP);
        assert_eq!(only(|c| c.rename_noreplace = true), CAP_RENAME_NOREPLACE);
        assert_eq!(only(|c| c.hard_links = true), CAP_HARD_LINKS);
        assert_eq!(only(|c| c.dir_sync = true), CAP_DIR_SYNC);
        assert_eq!(only(|c| c.atomic_exclusive = true), CAP_ATOMIC_EXCLUSIVE);
    }

    #[test]
    fn starts_round_trip_every_option() {
        let mut buf = [0u8; STEP_BUF_LEN];
        let host = "h".repeat(255);
        let all_flags =
            Flags::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz").unwrap();
        for strategy in STRATEGIES {
            for durability in DURABILITIES {
                for flags in [
                    None,
                    Some(Flags::EMPTY),
                    Some(Flags::parse("FS").unwrap()),
                    Some(all_flags),
                ] {
                    for sep in [b':', b';', b'!'] {
                        for (caps, host) in [
                            (Capabilities::POSIX, "host"),
                            (Capabilities::LINUX_LOCAL, ""),
                            (decode_caps(0).unwrap(), &*host),
                        ] {
                            let s = Start {
                                opts: Options {
                                    strategy,
                                    durability,
                                    flags,
                                    sep: InfoSep::new(sep).unwrap(),
                                    max_attempts: u32::MAX,
                                    lock_stale_secs: u64::MAX - 1,
                                    lock_timeout_ms: 7,
                                    lock_poll_ms: 0,
                                },
                                caps,
                                host,
                            };
                            let n = encode_start(&s, &mut buf).unwrap();
                            assert_eq!(decode_start(&buf[..n]), Ok(s));
                            // Every prefix is refused, never misread.
                            for cut in 0..n {
                                assert_eq!(decode_start(&buf[..cut]), Err(WireError));
                            }
                        }
                    }
                }
            }
        }
        let s = Start {
            opts: Options::default(),
            caps: Capabilities::POSIX,
            host: "h",
        };
        let n = encode_start(&s, &mut buf).unwrap();
        let good = buf;
        // Byte positions: strategy 0, durability 1, flag tag 2, separator 3, then four u64s,
        // capabilities 36, host 37..
        let bad = [
            (0, 4),
            (1, 3),
            (2, 2),
            (3, b'.'),
            (36, 64),
            (4 + 4, 1),
            (38, 0xff),
        ];
        for (at, byte) in bad {
            let mut b = good;
            b[at] = byte;
            assert_eq!(decode_start(&b[..n]), Err(WireError), "byte {at} = {byte}");
        }
        // A flag letter that is not a letter.
        let mut flagged = s;
        flagged.opts.flags = Some(Flags::parse("S").unwrap());
        let n = encode_start(&flagged, &mut buf).unwrap();
        assert_eq!(&buf[2..5], &[1, 1, b'S']);
        buf[4] = b',';
        assert_eq!(decode_start(&buf[..n]), Err(WireError));
        let long = "h".repeat(256);
        let s = Start { host: &long, ..s };
        assert_eq!(encode_start(&s, &mut buf), Err(WireError));
    }

    #[test]
    fn environment_values_round_trip_and_odd_ones_are_refused() {
        let values = [
            EnvValue::Now(Timestamp {
                secs: u64::MAX,
                micros: 999_999,
            }),
            EnvValue::Now(Timestamp::default()),
            EnvValue::Random(0),
            EnvValue::Random(u64::MAX),
            EnvValue::Counter(42),
            EnvValue::Pid(Some(0)),
            EnvValue::Pid(Some(u32::MAX)),
            EnvValue::Pid(None),
        ];
        for v in values {
            let (k, a, b) = v.encode();
            assert_eq!(EnvValue::decode(k, a, b), Ok(v));
        }
        assert_eq!(EnvValue::Pid(None).encode(), (ENV_PID, 0, 1));
        assert_eq!(EnvValue::Counter(9).encode(), (ENV_COUNTER, 9, 0));
        let refused = [
            (4, 0, 0),
            (u32::MAX, 0, 0),
            (ENV_NOW, 0, 1 << 32),
            (ENV_RANDOM, 1, 1),
            (ENV_COUNTER, 1, 2),
            (ENV_PID, 1 << 32, 0),
            (ENV_PID, 5, 1),
            (ENV_PID, 0, 2),
        ];
        for (k, a, b) in refused {
            assert_eq!(EnvValue::decode(k, a, b), Err(WireError), "({k}, {a}, {b})");
        }
    }

    #[test]
    fn steps_round_trip() {
        let mut buf = [0u8; STEP_BUF_LEN];
        let mut name = NameBuf::new();
        name.push_str("1.M2Q3R4.h").unwrap();
        let steps = [
            Step::Op(Op::Rename {
                from: (Dir::Tmp, "a"),
                to: (Dir::New, "b"),
                noreplace: false,
            }),
            Step::Op(Op::SyncFile),
            Step::Done(Ok(Delivered {
                dir: Dir::New,
                name,
                size: 9,
                publish: Publish::LinkUnlink,
                needs_dir_sync: false,
                leftover_tmp: true,
            })),
            Step::Done(Err(Error::new(ErrorKind::Collisions, Phase::Create))),
        ];
        for s in steps {
            let n = encode_step(&s, &mut buf).unwrap();
            assert_eq!(decode_step(&buf[..n]), Ok(s.clone()));
            let tag = if matches!(s, Step::Op(_)) {
                STEP_OP
            } else {
                STEP_DONE
            };
            assert_eq!(buf[0], tag);
            let mut body = [0u8; STEP_BUF_LEN];
            let m = match &s {
                Step::Op(op) => encode_op(*op, &mut body),
                Step::Done(o) => encode_outcome(o, &mut body),
            }
            .unwrap();
            assert_eq!(&buf[1..n], &body[..m]);
        }
        assert_eq!(
            encode_step(&Step::Op(Op::SyncFile), &mut []),
            Err(WireError)
        );
        assert_eq!(decode_step(&[]), Err(WireError));
        assert_eq!(decode_step(&[0, 5]), Err(WireError));
        assert_eq!(decode_step(&[3, 5]), Err(WireError));
    }

    #[test]
    fn return_codes_round_trip() {
        for r in [
            Ok(0),
            Ok(1),
            Ok(i32::MAX as u32),
            Err(CallError::BadInput),
            Err(CallError::Diverged),
        ] {
            assert_eq!(decode_return(encode_return(r)), Ok(r));
        }
        assert_eq!(encode_return(Err(CallError::BadInput)), -1);
        assert_eq!(encode_return(Err(CallError::Diverged)), -2);
        assert_eq!(encode_return(Ok(u32::MAX)), -1);
        for code in [-3, -4, i32::MIN] {
            assert_eq!(decode_return(code), Err(WireError));
        }
    }

    #[test]
    fn the_added_ops_and_results_keep_their_codes_and_round_trip() {
        let ops = [
            (
                14,
                Op::WriteFile {
                    dir: Dir::Root,
                    name: "maildirsize",
                    data: b"100S\n0 0\n",
                    persist: Persist::Flush,
                    anonymous: true,
                },
            ),
            (
                15,
                Op::Append {
                    dir: Dir::Root,
                    name: "maildirsize",
                    data: b"49 1\n",
                    persist: Persist::WriteBack,
                },
            ),
            (
                16,
                Op::Read {
                    dir: Dir::Root,
                    name: "maildirsize",
                },
            ),
            (17, Op::OpenDir { dir: Dir::Cur }),
            (18, Op::NextEntry),
            (19, Op::CloseDir),
            (20, Op::SetMtime { secs: i64::MIN }),
            (23, Op::SyncAll),
            (24, Op::Write { data: b"seen" }),
            (25, Op::WriteBack),
        ];
        let mut buf = [0u8; 600];
        for (code, op) in ops {
            let n = encode_op(op, &mut buf).unwrap();
            assert_eq!(buf[0], code, "{op:?}");
            assert_eq!(decode_op(&buf[..n]), Ok(op));
            for cut in 0..n {
                assert_eq!(
                    decode_op(&buf[..cut]),
                    Err(WireError),
                    "{op:?} cut at {cut}"
                );
            }
        }
        for (code, r) in [
            (7, OpResult::Read(5120)),
            (8, OpResult::Entry),
            (9, OpResult::End),
        ] {
            let n = encode_feed(r, b"name:2,S", &mut buf).unwrap();
            assert_eq!(buf[0], code, "{r:?}");
            assert_eq!(decode_feed(&buf[..n]), Ok((r, &b"name:2,S"[..])));
        }
    }

    #[test]
    fn mta_starts_round_trip_every_option() {
        let mut buf = [0u8; STEP_BUF_LEN];
        let quotas = [
            None,
            Some(CheckOptions::default()),
            Some(CheckOptions {
                given: Some(Limits {
                    bytes: Some(u64::MAX),
                    count: None,
                }),
                max_recalc: 7,
                count_trashed: true,
                sep: InfoSep::new(b';').unwrap(),
                folder: true,
            }),
            Some(CheckOptions {
                given: Some(Limits {
                    bytes: None,
                    count: Some(3),
                }),
                ..CheckOptions::default()
            }),
        ];
        let dedups = [
            None,
            Some(DedupOptions::default()),
            Some(DedupOptions {
                window_secs: 1,
                lease_secs: 2,
                margin_secs: u64::MAX,
                poll_ms: 3,
                wait_ms: u32::MAX,
                max_entries: 5,
                gc_every: 0,
                sep: InfoSep::new(b'!').unwrap(),
            }),
        ];
        for quota in quotas {
            for dedup in dedups {
                for key in [None, Some(Key([7; 32]))] {
                    for order in ORDERS {
                        let s = MtaStart {
                            opts: MtaOptions {
                                delivery: Options {
                                    flags: Some(Flags::parse("S").unwrap()),
                                    ..Options::default()
                                },
                                quota,
                                dedup,
                                key,
                                order,
                            },
                            caps: Capabilities::LINUX_LOCAL,
                            host: "host",
                        };
                        let n = encode_mta_start(&s, &mut buf).unwrap();
                        assert_eq!(decode_mta_start(&buf[..n]), Ok(s));
                        for cut in 0..n {
                            assert_eq!(decode_mta_start(&buf[..cut]), Err(WireError));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn mta_outcomes_and_steps_round_trip() {
        let mut name = NameBuf::new();
        name.push_str("1.M2P3Q4.host,S=5:2,S").unwrap();
        let delivered = Delivered {
            dir: Dir::Cur,
            name: name.clone(),
            size: 5,
            publish: Publish::LinkUnlink,
            needs_dir_sync: true,
            leftover_tmp: false,
        };
        let mut outcomes = std::vec![
            Ok(Accepted::Duplicate {
                dir: None,
                name: name.clone(),
            }),
            Ok(Accepted::Duplicate {
                dir: Some(Dir::New),
                name: NameBuf::new(),
            }),
            Err(Error::new(ErrorKind::OverQuota, Phase::Check)),
            Err(Error::new(ErrorKind::Io, Phase::Dedup).with_left(Dir::New)),
        ];
        for verdict in VERDICTS {
            for recalculated in [
                None,
                Some(RecalcReason::Missing),
                Some(RecalcReason::OverAndStale),
            ] {
                for indexed in [false, true] {
                    outcomes.push(Ok(Accepted::Stored {
                        delivered: delivered.clone(),
                        indexed,
                        quota: Some(Checked {
                            verdict,
                            limits: Limits {
                                bytes: Some(9),
                                count: None,
                            },
                            usage: Usage { bytes: 1, count: 2 },
                            recalculated,
                            raced: indexed,
                        }),
                    }));
                }
            }
        }
        outcomes.push(Ok(Accepted::Stored {
            delivered,
            indexed: true,
            quota: None,
        }));
        let mut buf = [0u8; STEP_BUF_LEN];
        for o in outcomes {
            let n = encode_mta_outcome(&o, &mut buf).unwrap();
            assert_eq!(decode_mta_outcome(&buf[..n]), Ok(o.clone()));
            let step = MtaStep::Done(o);
            let n = encode_mta_step(&step, &mut buf).unwrap();
            assert_eq!(buf[0], STEP_MTA_DONE);
            assert_eq!(decode_mta_step(&buf[..n]), Ok(step));
            // A delivery's decoder does not take an MTA delivery's outcome for its own.
            assert_eq!(decode_step(&buf[..n]), Err(WireError));
        }
        let step = MtaStep::Op(Op::NextEntry);
        let n = encode_mta_step(&step, &mut buf).unwrap();
        assert_eq!(decode_mta_step(&buf[..n]), Ok(step));
        assert_eq!(decode_mta_step(&[STEP_DONE, 1]), Err(WireError));
    }
}
