//! A compact byte encoding of [`Op`], [`OpResult`] and delivery outcomes, so a delivery machine
//! compiled to another target (the WASI module) can be stepped by a driver on the other side of
//! a foreign-function boundary, exactly as a native machine is stepped. Encoding writes into a
//! caller's buffer; decoding borrows names from the input. Both sides use this one module.

use crate::deliver::{Delivered, Outcome, Publish};
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Dir, Op, OpResult, Stat};
use crate::name::NameBuf;

/// Why bytes could not be decoded (or an encoding did not fit).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WireError;

/// Every error kind, in wire order (also what a test or fuzz target draws kinds from).
pub const KINDS: [ErrorKind; 17] = [
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
];
const PHASES: [Phase; 9] = [
    Phase::Open,
    Phase::Create,
    Phase::Read,
    Phase::Write,
    Phase::SyncFile,
    Phase::Publish,
    Phase::SyncDir,
    Phase::Lock,
    Phase::Check,
];
/// Every directory, in wire order.
pub const DIRS: [Dir; 4] = [Dir::Root, Dir::Tmp, Dir::New, Dir::Cur];
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
    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = usize::from(self.u8()?);
        let s = self.buf.get(self.pos..self.pos + n).ok_or(WireError)?;
        self.pos += n;
        core::str::from_utf8(s).map_err(|_| WireError)
    }
    fn dir(&mut self) -> Result<Dir, WireError> {
        lookup(&DIRS, self.u8()?)
    }
    fn dir_name(&mut self) -> Result<(Dir, &'a str), WireError> {
        Ok((self.dir()?, self.str()?))
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
        13 => Op::Sleep {
            millis: u32::try_from(r.u64()?).map_err(|_| WireError)?,
        },
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
        OpResult::Written(n) => {
            w.u8(3)?;
            w.u64(n)?;
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
        3 => OpResult::Written(r.u64()?),
        4 => OpResult::Stat(Stat {
            nlink: r.u64()?,
            size: r.u64()?,
            mtime: r.u64()?,
            regular: r.u8()? != 0,
        }),
        5 => OpResult::Err(lookup(&KINDS, r.u8()?)?),
        6 => OpResult::SourceErr(lookup(&KINDS, r.u8()?)?),
        _ => return Err(WireError),
    })
}

/// Encodes a finished delivery's outcome.
pub fn encode_outcome(o: &Outcome, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = Writer { buf, len: 0 };
    match o {
        Ok(d) => {
            w.u8(1)?;
            w.u8(index(&DIRS, d.dir))?;
            w.str(&d.name)?;
            w.u64(d.size)?;
            w.u8(index(&PUBLISH, d.publish))?;
            w.u8(u8::from(d.needs_dir_sync))?;
            w.u8(u8::from(d.leftover_tmp))?;
        }
        Err(e) => {
            w.u8(2)?;
            w.u8(index(&KINDS, e.kind))?;
            w.u8(index(&PHASES, e.phase))?;
        }
    }
    Ok(w.len)
}

/// Decodes a finished delivery's outcome.
pub fn decode_outcome(buf: &[u8]) -> Result<Outcome, WireError> {
    let mut r = Reader { buf, pos: 0 };
    match r.u8()? {
        1 => {
            let dir = r.dir()?;
            let mut name = NameBuf::new();
            name.push_str(r.str()?).map_err(|_| WireError)?;
            Ok(Ok(Delivered {
                dir,
                name,
                size: r.u64()?,
                publish: lookup(&PUBLISH, r.u8()?)?,
                needs_dir_sync: r.u8()? != 0,
                leftover_tmp: r.u8()? != 0,
            }))
        }
        2 => Ok(Err(Error::new(
            lookup(&KINDS, r.u8()?)?,
            lookup(&PHASES, r.u8()?)?,
        ))),
        _ => Err(WireError),
    }
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
            OpResult::Written(12345),
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
}
