//! A Sieve unit ([`Unit`]) on the wire: its start, its steps, the driver's answers to what it
//! asks for, and what it performed (the stepping ABI's `mdeliver_step_new_unit`,
//! `mdeliver_step_answer` and `mdeliver_step_performed`, documented in the parent module).

use super::{lookup, Reader, WireError, Writer, STEP_OP};
use crate::error::Error;
use crate::fs::Capabilities;
use crate::machine::dedup::Key;
use crate::machine::unit::{Begun, CopyDone, Done, Performed, Plan, Unit, Wants, RECORD_MAX};

/// Everything a unit is started with (`mdeliver_step_new_unit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitStart {
    /// The unit's key ([`crate::machine::unit::unit_key`]).
    pub key: Key,
    /// What the script decided.
    pub plan: Plan,
    /// Whether the record and markers are flushed.
    pub sync: bool,
    /// What the root maildir's filesystem offers.
    pub caps: Capabilities,
}

impl UnitStart {
    /// The machine it starts.
    pub fn machine(&self) -> Unit {
        Unit::new(&self.key, self.plan.clone(), self.sync, self.caps)
    }
}

/// The driver's answer to a [`Wants`] (`mdeliver_step_answer`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// To [`Wants::Copy`] ([`Unit::copied`]).
    Copied(Result<CopyDone, Error>),
    /// To [`Wants::Redirect`] and [`Wants::Vacation`] ([`Unit::sent`]).
    Sent(Result<(), Error>),
}

impl Answer {
    /// Gives the answer to `unit`.
    pub fn give(self, unit: &mut Unit) {
        match self {
            Answer::Copied(r) => unit.copied(r),
            Answer::Sent(r) => unit.sent(r),
        }
    }
}

/// Step kind: what a unit wants of its driver follows ([`encode_unit_step`]).
pub const STEP_UNIT_WANTS: u8 = 4;

/// A unit's step.
pub type UnitStep<'a> = crate::machine::Step<'a, Wants>;

const BEGUN: [Begun; 2] = [Begun::Fresh, Begun::Resumed];
const COPY_DONE: [CopyDone; 2] = [CopyDone::Stored, CopyDone::Already];

impl Writer<'_> {
    fn plan(&mut self, plan: &Plan) -> Result<(), WireError> {
        let mut record = heapless::Vec::<u8, RECORD_MAX>::new();
        plan.encode(&mut record);
        self.bytes(&record)
    }
    fn result<T>(
        &mut self,
        r: &Result<T, Error>,
        ok: impl FnOnce(&mut Self, &T) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        match r {
            Ok(v) => {
                self.u8(1)?;
                ok(self, v)
            }
            Err(e) => self.error(e),
        }
    }
    fn copy_done(&mut self, c: CopyDone) -> Result<(), WireError> {
        self.u8(super::index(&COPY_DONE, c))
    }
}

impl Reader<'_> {
    fn plan(&mut self) -> Result<Plan, WireError> {
        Plan::decode(self.bytes()?).ok_or(WireError)
    }
    fn result<T>(
        &mut self,
        ok: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Result<T, Error>, WireError> {
        match self.u8()? {
            1 => Ok(Ok(ok(self)?)),
            2 => Ok(Err(self.error()?)),
            _ => Err(WireError),
        }
    }
    fn copy_done(&mut self) -> Result<CopyDone, WireError> {
        lookup(&COPY_DONE, self.u8()?)
    }
    fn end(&self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(WireError)
        }
    }
}

/// Encodes a unit's start: the key's 32 bytes, the flush flag, the capability bits, then the
/// plan as the record [`Plan::encode`] writes (its length as a `u64`, then its bytes).
pub fn encode_unit_start(s: &UnitStart, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    w.key(&s.key)?;
    w.u8(u8::from(s.sync))?;
    w.u8(super::encode_caps(s.caps))?;
    w.plan(&s.plan)?;
    Ok(w.len)
}

/// Decodes a unit's start; a record that does not verify is refused.
pub fn decode_unit_start(buf: &[u8]) -> Result<UnitStart, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let key = r.key()?;
    let sync = r.flag()?;
    let caps = super::decode_caps(r.u8()?)?;
    let plan = r.plan()?;
    r.end()?;
    Ok(UnitStart {
        key,
        plan,
        sync,
        caps,
    })
}

/// Encodes a unit's step: [`STEP_OP`] and the operation, or [`STEP_UNIT_WANTS`] and what it
/// wants: 0 a copy (entry index as `u64`, the duplicate index's 32-byte key, 1 when into
/// INBOX), 1 a redirect and 2 a vacation reply (entry index), 3 finished, 4 failed (an error,
/// as in an outcome).
pub fn encode_unit_step(step: &UnitStep<'_>, buf: &mut [u8]) -> Result<usize, WireError> {
    let (tag, body) = buf.split_first_mut().ok_or(WireError)?;
    let wants = match step {
        UnitStep::Op(op) => {
            *tag = STEP_OP;
            return Ok(super::encode_op(*op, body)? + 1);
        }
        UnitStep::Done(w) => w,
    };
    *tag = STEP_UNIT_WANTS;
    let mut w = Writer { buf: body, len: 0 };
    match *wants {
        Wants::Copy { index, key, inbox } => {
            w.u8(0)?;
            w.u64(index as u64)?;
            w.key(&key)?;
            w.u8(u8::from(inbox))?;
        }
        Wants::Redirect(i) => {
            w.u8(1)?;
            w.u64(i as u64)?;
        }
        Wants::Vacation(i) => {
            w.u8(2)?;
            w.u64(i as u64)?;
        }
        Wants::Finished => w.u8(3)?,
        Wants::Failed(e) => {
            w.u8(4)?;
            w.error(&e)?;
        }
    }
    Ok(w.len + 1)
}

/// Decodes a unit's step, borrowing an operation's names from `buf`.
pub fn decode_unit_step(buf: &[u8]) -> Result<UnitStep<'_>, WireError> {
    let body = match buf.split_first() {
        Some((&STEP_OP, body)) => return Ok(UnitStep::Op(super::decode_op(body)?)),
        Some((&STEP_UNIT_WANTS, body)) => body,
        _ => return Err(WireError),
    };
    let mut r = Reader { buf: body, pos: 0 };
    let index = |r: &mut Reader<'_>| usize::try_from(r.u64()?).map_err(|_| WireError);
    let wants = match r.u8()? {
        0 => Wants::Copy {
            index: index(&mut r)?,
            key: r.key()?,
            inbox: r.flag()?,
        },
        1 => Wants::Redirect(index(&mut r)?),
        2 => Wants::Vacation(index(&mut r)?),
        3 => Wants::Finished,
        4 => match r.u8()? {
            2 => Wants::Failed(r.error()?),
            _ => return Err(WireError),
        },
        _ => return Err(WireError),
    };
    r.end()?;
    Ok(UnitStep::Done(wants))
}

/// Encodes the driver's answer: 0 and a copy's result (1 and [`CopyDone`]'s code, 0 stored
/// now, 1 stored before; or an error), or 1 and a message's (1, or an error).
pub fn encode_answer(a: &Answer, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    match a {
        Answer::Copied(r) => {
            w.u8(0)?;
            w.result(r, |w, c| w.copy_done(*c))?;
        }
        Answer::Sent(r) => {
            w.u8(1)?;
            w.result(r, |_, _| Ok(()))?;
        }
    }
    Ok(w.len)
}

/// Decodes the driver's answer.
pub fn decode_answer(buf: &[u8]) -> Result<Answer, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let a = match r.u8()? {
        0 => Answer::Copied(r.result(|r| r.copy_done())?),
        1 => Answer::Sent(r.result(|_| Ok(()))?),
        _ => return Err(WireError),
    };
    r.end()?;
    Ok(a)
}

/// Encodes what a unit performed: how it was begun (0 fresh, 1 resumed), the plan performed
/// (as in a start), the number of actions, then each one's result: 1 and what was done (0 a
/// copy and its [`CopyDone`] code, 1 a copy into INBOX and its code, 2 sent, 3 sent before,
/// 4 remembered, 5 replied, 6 waiting), or an error.
pub fn encode_performed(p: &Performed, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    w.u8(super::index(&BEGUN, p.begun))?;
    w.plan(&p.plan)?;
    w.u64(p.results.len() as u64)?;
    for r in &p.results {
        w.result(r, |w, d| match *d {
            Done::Copy(c) => {
                w.u8(0)?;
                w.copy_done(c)
            }
            Done::IntoInbox(c) => {
                w.u8(1)?;
                w.copy_done(c)
            }
            Done::Sent => w.u8(2),
            Done::AlreadySent => w.u8(3),
            Done::Remembered => w.u8(4),
            Done::Replied => w.u8(5),
            Done::Waiting => w.u8(6),
        })?;
    }
    Ok(w.len)
}

/// Decodes what a unit performed.
pub fn decode_performed(buf: &[u8]) -> Result<Performed, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let begun = lookup(&BEGUN, r.u8()?)?;
    let plan = r.plan()?;
    let n = r.u64()?;
    let mut results = heapless::Vec::new();
    for _ in 0..n {
        let done = r.result(|r| {
            Ok(match r.u8()? {
                0 => Done::Copy(r.copy_done()?),
                1 => Done::IntoInbox(r.copy_done()?),
                2 => Done::Sent,
                3 => Done::AlreadySent,
                4 => Done::Remembered,
                5 => Done::Replied,
                6 => Done::Waiting,
                _ => return Err(WireError),
            })
        })?;
        results.push(done).map_err(|_| WireError)?;
    }
    r.end()?;
    Ok(Performed {
        begun,
        plan,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Phase};
    use crate::fs::{Dir, Op};
    use crate::machine::unit::Reply;
    use crate::maildir::flags::Flags;

    fn plan() -> Plan {
        let mut p = Plan::new();
        p.copy(None, None, false).unwrap();
        p.copy(Some(b"Lists/rust"), Flags::parse("FS").ok(), true)
            .unwrap();
        p.redirect(b"bob@example.org").unwrap();
        p.track(b"id-1", 1_700_000_000).unwrap();
        p.vacation(&Reply {
            to: b"alice@example.org",
            from: b"",
            subject: b"Away",
            reason: b"Back soon.\n",
            mime: false,
            in_reply_to: b"<m@x>",
            key: b"vacation\0\0alice@example.org",
            until: 1_700_086_400,
        })
        .unwrap();
        p
    }

    #[test]
    fn a_unit_crosses_the_wire_whole() {
        let mut buf = [0u8; crate::wire::STEP_BUF_LEN];
        let start = UnitStart {
            key: Key([7; 32]),
            plan: plan(),
            sync: true,
            caps: Capabilities::LINUX_LOCAL,
        };
        let n = encode_unit_start(&start, &mut buf).unwrap();
        assert_eq!(decode_unit_start(&buf[..n]), Ok(start.clone()));
        // A torn record, and trailing bytes, are refused.
        assert_eq!(decode_unit_start(&buf[..n - 1]), Err(WireError));
        buf[n] = 0;
        assert_eq!(decode_unit_start(&buf[..n + 1]), Err(WireError));

        let e = Error::new(ErrorKind::NotFound, Phase::Open);
        let steps = [
            UnitStep::Op(Op::Stat {
                dir: Dir::Root,
                name: "mdeliver-dedup.x",
            }),
            UnitStep::Done(Wants::Copy {
                index: 1,
                key: Key([9; 32]),
                inbox: true,
            }),
            UnitStep::Done(Wants::Redirect(2)),
            UnitStep::Done(Wants::Vacation(4)),
            UnitStep::Done(Wants::Finished),
            UnitStep::Done(Wants::Failed(e.with_left(Dir::Root))),
        ];
        for step in steps {
            let n = encode_unit_step(&step, &mut buf).unwrap();
            assert_eq!(decode_unit_step(&buf[..n]), Ok(step));
        }
        let answers = [
            Answer::Copied(Ok(CopyDone::Stored)),
            Answer::Copied(Ok(CopyDone::Already)),
            Answer::Copied(Err(e)),
            Answer::Sent(Ok(())),
            Answer::Sent(Err(Error::new(ErrorKind::Io, Phase::Dedup))),
        ];
        for a in answers {
            let n = encode_answer(&a, &mut buf).unwrap();
            assert_eq!(decode_answer(&buf[..n]), Ok(a));
        }
        let mut results = heapless::Vec::new();
        for r in [
            Ok(Done::Copy(CopyDone::Stored)),
            Ok(Done::IntoInbox(CopyDone::Already)),
            Ok(Done::Sent),
            Ok(Done::AlreadySent),
            Ok(Done::Remembered),
            Ok(Done::Replied),
            Ok(Done::Waiting),
            Err(e),
        ] {
            results.push(r).unwrap();
        }
        let p = Performed {
            begun: Begun::Resumed,
            plan: plan(),
            results,
        };
        let n = encode_performed(&p, &mut buf).unwrap();
        assert_eq!(decode_performed(&buf[..n]), Ok(p));
    }
}
