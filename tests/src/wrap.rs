//! `Fs` wrappers that compose around any filesystem, as smoltcp's `phy` wrappers compose around
//! any device: [`FaultFs`] injects errors (ENOSPC, EDQUOT, EIO, EINTR, short writes) by script
//! or at a seeded rate, [`TraceFs`] records every call and its result. Use them around the
//! simulator's `SimFs` or around the CLI's real adapter alike.

use crate::sim::rng::Rng;
use mdeliver_core::fs::EntryName;
use mdeliver_core::fs::{Capabilities, Dir, Fs, Persist, Stat};
use mdeliver_core::ErrorKind;
use std::fmt::Debug;

/// Which `Fs` method a fault applies to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `create`.
    Create,
    /// `create_anonymous`.
    CreateAnonymous,
    /// `write`.
    Write,
    /// `sync_file`.
    SyncFile,
    /// `close`.
    Close,
    /// `link_anonymous`.
    LinkAnonymous,
    /// `link`.
    Link,
    /// `rename`.
    Rename,
    /// `unlink`.
    Unlink,
    /// `stat`.
    Stat,
    /// `sync_dir`.
    SyncDir,
    /// `open_dir`.
    OpenDir,
    /// `append`.
    Append,
    /// `read_file`.
    ReadFile,
    /// `set_mtime`.
    SetMtime,
    /// `read_dir`.
    ReadDir,
}

/// What an injected fault does.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The call fails with this kind and has no effect.
    Fail(ErrorKind),
    /// A write writes only part of its buffer (at least one byte).
    ShortWrite,
}

/// When faults happen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultPlan {
    /// `(op, n, fault)`: the `n`-th call (from 0) of `op` gets `fault`.
    pub script: Vec<(OpKind, u32, Fault)>,
    /// Seeded random faults: each call fails with probability `per_mille`/1000, the fault
    /// drawn from `faults`.
    pub random: Option<(Rng, u32, Vec<Fault>)>,
}

/// Injects faults into any `Fs`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FaultFs<F> {
    /// The wrapped filesystem.
    pub inner: F,
    /// The plan.
    pub plan: FaultPlan,
    counts: Vec<(OpKind, u32)>,
    /// Faults injected so far.
    pub injected: u32,
}

impl<F> FaultFs<F> {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: F, plan: FaultPlan) -> Self {
        FaultFs {
            inner,
            plan,
            counts: Vec::new(),
            injected: 0,
        }
    }

    fn fault(&mut self, op: OpKind) -> Option<Fault> {
        let n = match self.counts.iter_mut().find(|(k, _)| *k == op) {
            Some((_, c)) => {
                *c += 1;
                *c - 1
            }
            None => {
                self.counts.push((op, 1));
                0
            }
        };
        let scripted = self
            .plan
            .script
            .iter()
            .find(|(k, i, _)| *k == op && *i == n)
            .map(|(_, _, f)| *f);
        let f = scripted.or_else(|| {
            let (rng, per_mille, faults) = self.plan.random.as_mut()?;
            if faults.is_empty() || rng.below(1000) >= u64::from(*per_mille) {
                return None;
            }
            let f = faults[rng.below(faults.len() as u64) as usize];
            // Short writes only make sense for writes; errors for anything.
            (matches!(op, OpKind::Write | OpKind::Append) || f != Fault::ShortWrite).then_some(f)
        });
        if f.is_some() {
            self.injected += 1;
        }
        f
    }

    fn check(&mut self, op: OpKind) -> Result<(), ErrorKind> {
        match self.fault(op) {
            Some(Fault::Fail(k)) => Err(k),
            _ => Ok(()),
        }
    }
}

impl<F: Fs> Fs for FaultFs<F> {
    type File = F::File;
    type DirStream = F::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<F::File, ErrorKind> {
        self.check(OpKind::Create)?;
        self.inner.create(dir, name, exclusive)
    }
    fn create_anonymous(&mut self, dir: Dir) -> Result<F::File, ErrorKind> {
        self.check(OpKind::CreateAnonymous)?;
        self.inner.create_anonymous(dir)
    }
    fn file_id(&self, file: &F::File) -> Option<(u64, u64)> {
        self.inner.file_id(file)
    }
    fn write(&mut self, file: &mut F::File, buf: &[u8]) -> Result<usize, ErrorKind> {
        match self.fault(OpKind::Write) {
            Some(Fault::Fail(k)) => Err(k),
            Some(Fault::ShortWrite) if buf.len() > 1 => {
                self.inner.write(file, &buf[..buf.len() / 2])
            }
            _ => self.inner.write(file, buf),
        }
    }
    fn sync_file(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        self.check(OpKind::SyncFile)?;
        self.inner.sync_file(file)
    }
    fn write_back(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        // A write-back fails the way a file's flush does (EIO from the device).
        self.check(OpKind::SyncFile)?;
        self.inner.write_back(file)
    }
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        // A whole-filesystem flush fails the way a file's flush does.
        self.check(OpKind::SyncFile)?;
        self.inner.sync_all()
    }
    fn close(&mut self, file: F::File) -> Result<(), ErrorKind> {
        // A failed close still closes.
        let r = self.check(OpKind::Close);
        self.inner.close(file)?;
        r
    }
    fn link_anonymous(&mut self, file: &F::File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.check(OpKind::LinkAnonymous)?;
        self.inner.link_anonymous(file, dir, name)
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        self.check(OpKind::Link)?;
        self.inner.link(from, to)
    }
    fn rename(&mut self, from: (Dir, &str), to: (Dir, &str), nr: bool) -> Result<(), ErrorKind> {
        self.check(OpKind::Rename)?;
        self.inner.rename(from, to, nr)
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.check(OpKind::Unlink)?;
        self.inner.unlink(dir, name)
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        self.check(OpKind::Stat)?;
        self.inner.stat(dir, name)
    }
    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.check(OpKind::SyncDir)?;
        self.inner.sync_dir(dir)
    }
    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.inner.mkdir(dir)
    }
    fn open_dir(&mut self, dir: Dir) -> Result<F::DirStream, ErrorKind> {
        self.check(OpKind::OpenDir)?;
        self.inner.open_dir(dir)
    }
    fn stat_listed(&mut self, s: &F::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        self.check(OpKind::Stat)?;
        self.inner.stat_listed(s, name)
    }
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<F::DirStream, ErrorKind> {
        self.check(OpKind::OpenDir)?;
        self.inner.open_folder_dir(base, folder, dir)
    }
    fn read_dir(&mut self, s: &mut F::DirStream, out: &mut EntryName) -> Result<bool, ErrorKind> {
        self.check(OpKind::ReadDir)?;
        self.inner.read_dir(s, out)
    }
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        match self.fault(OpKind::Append) {
            Some(Fault::Fail(k)) => Err(k),
            // A short append: the record's first half lands, the caller hears `Io`.
            Some(Fault::ShortWrite) if data.len() > 1 => {
                self.inner.append(dir, name, &data[..data.len() / 2], p)?;
                Err(ErrorKind::Io)
            }
            _ => self.inner.append(dir, name, data, p),
        }
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.check(OpKind::ReadFile)?;
        self.inner.read_file(dir, name, buf)
    }
    fn set_mtime(&mut self, file: &F::File, secs: i64) -> Result<(), ErrorKind> {
        self.check(OpKind::SetMtime)?;
        self.inner.set_mtime(file, secs)
    }
}

/// Records every call on any `Fs` and its result, one line each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceFs<F> {
    /// The wrapped filesystem.
    pub inner: F,
    /// One line per call.
    pub log: Vec<String>,
}

impl<F> TraceFs<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        TraceFs {
            inner,
            log: Vec::new(),
        }
    }

    fn rec<T: Debug>(&mut self, call: String, r: &Result<T, ErrorKind>) {
        self.log.push(match r {
            Ok(v) => format!("{call} -> {v:?}"),
            Err(e) => format!("{call} -> Err({e:?})"),
        });
    }
}

fn path(d: Dir, n: &str) -> String {
    if d == Dir::Root {
        n.to_string()
    } else {
        format!("{}/{n}", d.as_str())
    }
}

impl<F: Fs> Fs for TraceFs<F> {
    type File = F::File;
    type DirStream = F::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<F::File, ErrorKind> {
        let r = self.inner.create(dir, name, exclusive);
        let id = r.as_ref().ok().and_then(|f| self.inner.file_id(f));
        let call = format!("create({}, excl={exclusive})", path(dir, name));
        self.rec(call, &r.as_ref().map(|_| id).map_err(|e| *e));
        r
    }
    fn create_anonymous(&mut self, dir: Dir) -> Result<F::File, ErrorKind> {
        let r = self.inner.create_anonymous(dir);
        let id = r.as_ref().ok().and_then(|f| self.inner.file_id(f));
        let call = format!("create_anonymous({})", dir.as_str());
        self.rec(call, &r.as_ref().map(|_| id).map_err(|e| *e));
        r
    }
    fn file_id(&self, file: &F::File) -> Option<(u64, u64)> {
        self.inner.file_id(file)
    }
    fn write(&mut self, file: &mut F::File, buf: &[u8]) -> Result<usize, ErrorKind> {
        let r = self.inner.write(file, buf);
        self.rec(format!("write({} bytes)", buf.len()), &r);
        r
    }
    fn sync_file(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        let r = self.inner.sync_file(file);
        self.rec("sync_file".into(), &r);
        r
    }
    fn write_back(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        let r = self.inner.write_back(file);
        self.rec("write_back".into(), &r);
        r
    }
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        let r = self.inner.sync_all();
        self.rec("sync_all".into(), &r);
        r
    }
    fn close(&mut self, file: F::File) -> Result<(), ErrorKind> {
        let r = self.inner.close(file);
        self.rec("close".into(), &r);
        r
    }
    fn link_anonymous(&mut self, file: &F::File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        let r = self.inner.link_anonymous(file, dir, name);
        self.rec(format!("link_anonymous({})", path(dir, name)), &r);
        r
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        let r = self.inner.link(from, to);
        let call = format!("link({}, {})", path(from.0, from.1), path(to.0, to.1));
        self.rec(call, &r);
        r
    }
    fn rename(&mut self, from: (Dir, &str), to: (Dir, &str), nr: bool) -> Result<(), ErrorKind> {
        let r = self.inner.rename(from, to, nr);
        let call = format!(
            "rename({}, {}, noreplace={nr})",
            path(from.0, from.1),
            path(to.0, to.1)
        );
        self.rec(call, &r);
        r
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        let r = self.inner.unlink(dir, name);
        self.rec(format!("unlink({})", path(dir, name)), &r);
        r
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        let r = self.inner.stat(dir, name);
        let shown = r.map(|s| format!("nlink={} size={}", s.nlink, s.size));
        self.rec(format!("stat({})", path(dir, name)), &shown);
        r
    }
    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        let r = self.inner.sync_dir(dir);
        self.rec(format!("sync_dir({})", dir.as_str()), &r);
        r
    }
    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        let r = self.inner.mkdir(dir);
        self.rec(format!("mkdir({})", dir.as_str()), &r);
        r
    }
    fn open_dir(&mut self, dir: Dir) -> Result<F::DirStream, ErrorKind> {
        let r = self.inner.open_dir(dir);
        self.rec(
            format!("open_dir({})", dir.as_str()),
            &r.as_ref().map(|_| ()).map_err(|e| *e),
        );
        r
    }
    fn stat_listed(&mut self, s: &F::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        let r = self.inner.stat_listed(s, name);
        self.rec(
            format!("stat_listed({name})"),
            &r.as_ref().map(|_| ()).map_err(|e| *e),
        );
        r
    }
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<F::DirStream, ErrorKind> {
        let r = self.inner.open_folder_dir(base, folder, dir);
        self.rec(
            format!(
                "open_folder_dir({}/{}/{})",
                base.as_str(),
                String::from_utf8_lossy(folder),
                dir.as_str()
            ),
            &r.as_ref().map(|_| ()).map_err(|e| *e),
        );
        r
    }
    fn read_dir(&mut self, s: &mut F::DirStream, out: &mut EntryName) -> Result<bool, ErrorKind> {
        let r = self.inner.read_dir(s, out);
        let shown = r.map(|more| {
            if more {
                String::from_utf8_lossy(out).into_owned()
            } else {
                "<end>".into()
            }
        });
        self.rec("read_dir".into(), &shown);
        r
    }
    fn set_mtime(&mut self, file: &F::File, secs: i64) -> Result<(), ErrorKind> {
        let r = self.inner.set_mtime(file, secs);
        self.rec(format!("set_mtime({secs})"), &r);
        r
    }
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        let r = self.inner.append(dir, name, data, p);
        let how = match p {
            Persist::Cache => "",
            Persist::WriteBack => ", write-back",
            Persist::Flush => ", sync",
        };
        self.rec(
            format!("append({}, {} bytes{how})", path(dir, name), data.len()),
            &r,
        );
        r
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let r = self.inner.read_file(dir, name, buf);
        self.rec(format!("read_file({})", path(dir, name)), &r);
        r
    }
}
