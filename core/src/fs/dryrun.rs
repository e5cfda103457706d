//! A dry run as a filesystem wrapper: [`DryRun`] wraps any [`Fs`] so that a delivery (with its
//! quota check and duplicate index) runs exactly as it would, reading the real maildir and
//! writing the message into a real file in tmp/, while every change a reader could see is only
//! pretended: publishing into new/ or cur/, creating, appending to, renaming over or removing
//! anything outside what this run itself made in tmp/. What the run made in tmp/ is really
//! removed (by the delivery machine's own clean-up, or here when a pretended rename would have
//! moved it). So the maildir is left byte-for-byte as it was, and the machine's outcome names
//! the file it *would* have published.
//!
//! [`DryRun::with`] can also be inactive, forwarding everything: a driver that may or may not
//! dry-run then has one filesystem type, so the delivery code is compiled once (what a size
//! budget such as the WASI module's needs).
//!
//! Pretended creations answer later operations consistently: a pretended entry exists for
//! `stat`, accepts appends and can be removed; an exclusive creation or a no-replace publish
//! onto a name that really exists still fails with `Exists`, so name collisions and duplicate
//! index entries are found as in a real run.

use crate::dir::NameBuf;
use crate::error::ErrorKind;
use crate::fs::{Capabilities, Dir, Fs, Persist, Stat};

/// How many names a dry run keeps track of (a delivery touches a handful).
pub const TRACKED: usize = 8;

/// A file opened through a [`DryRun`].
#[derive(Debug)]
pub enum DryFile<T> {
    /// A real file in tmp/ (the message).
    Real(T),
    /// A pretended file elsewhere: writes are counted and dropped.
    Null,
}

/// A dry-run wrapper around a filesystem (see the module documentation).
#[derive(Debug)]
pub struct DryRun<F> {
    inner: F,
    active: bool,
    own_tmp: heapless::Vec<NameBuf, TRACKED>,
    pretend: heapless::Vec<(Dir, NameBuf), TRACKED>,
}

fn buf(name: &str) -> Result<NameBuf, ErrorKind> {
    let mut b = NameBuf::new();
    b.push_str(name).map_err(|_| ErrorKind::NameTooLong)?;
    Ok(b)
}

impl<F: Fs> DryRun<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> DryRun<F> {
        DryRun::with(inner, true)
    }

    /// Wraps `inner`; when not `active`, every operation is simply forwarded.
    pub fn with(inner: F, active: bool) -> DryRun<F> {
        DryRun {
            inner,
            active,
            own_tmp: heapless::Vec::new(),
            pretend: heapless::Vec::new(),
        }
    }

    /// The wrapped filesystem.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    /// Gives back the wrapped filesystem.
    pub fn into_inner(self) -> F {
        self.inner
    }

    fn is_own_tmp(&self, dir: Dir, name: &str) -> bool {
        dir == Dir::Tmp && self.own_tmp.iter().any(|n| n.as_str() == name)
    }

    fn pretended(&self, dir: Dir, name: &str) -> Option<usize> {
        self.pretend
            .iter()
            .position(|(d, n)| *d == dir && n.as_str() == name)
    }

    fn exists(&mut self, dir: Dir, name: &str) -> bool {
        self.pretended(dir, name).is_some() || self.inner.stat(dir, name).is_ok()
    }

    fn pretend_create(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        if self.pretended(dir, name).is_none() {
            self.pretend
                .push((dir, buf(name)?))
                .map_err(|_| ErrorKind::Io)?;
        }
        Ok(())
    }

    fn forget(&mut self, dir: Dir, name: &str) {
        if let Some(i) = self.pretended(dir, name) {
            self.pretend.swap_remove(i);
        }
        if dir == Dir::Tmp {
            if let Some(i) = self.own_tmp.iter().position(|n| n.as_str() == name) {
                self.own_tmp.swap_remove(i);
            }
        }
    }

    /// A publish or link onto `to`: refused if taken (when `noreplace`), else pretended.
    fn pretend_target(&mut self, to: (Dir, &str), noreplace: bool) -> Result<(), ErrorKind> {
        if noreplace && self.exists(to.0, to.1) {
            return Err(ErrorKind::Exists);
        }
        self.pretend_create(to.0, to.1)
    }
}

impl<F: Fs> Fs for DryRun<F> {
    type File = DryFile<F::File>;
    type DirStream = F::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<Self::File, ErrorKind> {
        if !self.active {
            return self.inner.create(dir, name, exclusive).map(DryFile::Real);
        }
        if dir == Dir::Tmp {
            let f = self.inner.create(dir, name, exclusive)?;
            if self.own_tmp.push(buf(name)?).is_err() {
                // Untracked, it could not be cleaned up: give it back and refuse.
                let _ = self.inner.close(f);
                let _ = self.inner.unlink(dir, name);
                return Err(ErrorKind::Io);
            }
            return Ok(DryFile::Real(f));
        }
        if exclusive && self.exists(dir, name) {
            return Err(ErrorKind::Exists);
        }
        self.pretend_create(dir, name)?;
        Ok(DryFile::Null)
    }

    fn create_anonymous(&mut self, dir: Dir) -> Result<Self::File, ErrorKind> {
        // An unnamed file leaves nothing behind when closed.
        self.inner.create_anonymous(dir).map(DryFile::Real)
    }

    fn file_id(&self, file: &Self::File) -> Option<(u64, u64)> {
        match file {
            DryFile::Real(f) => self.inner.file_id(f),
            DryFile::Null => None,
        }
    }

    fn write(&mut self, file: &mut Self::File, data: &[u8]) -> Result<usize, ErrorKind> {
        match file {
            DryFile::Real(f) => self.inner.write(f, data),
            DryFile::Null => Ok(data.len()),
        }
    }

    fn sync_file(&mut self, file: &mut Self::File) -> Result<(), ErrorKind> {
        match file {
            DryFile::Real(f) => self.inner.sync_file(f),
            DryFile::Null => Ok(()),
        }
    }

    fn write_back(&mut self, file: &mut Self::File) -> Result<(), ErrorKind> {
        match file {
            DryFile::Real(f) => self.inner.write_back(f),
            DryFile::Null => Ok(()),
        }
    }

    fn close(&mut self, file: Self::File) -> Result<(), ErrorKind> {
        match file {
            DryFile::Real(f) => self.inner.close(f),
            DryFile::Null => Ok(()),
        }
    }

    fn link_anonymous(&mut self, file: &Self::File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        match file {
            DryFile::Real(f) if !self.active => self.inner.link_anonymous(f, dir, name),
            _ => self.pretend_target((dir, name), true),
        }
    }

    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        if !self.active {
            return self.inner.link(from, to);
        }
        self.pretend_target(to, true)
    }

    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        if !self.active {
            return self.inner.rename(from, to, noreplace);
        }
        self.pretend_target(to, noreplace)?;
        // The source would be gone: really remove it if this run made it.
        if self.is_own_tmp(from.0, from.1) {
            self.inner.unlink(from.0, from.1)?;
        }
        self.forget(from.0, from.1);
        Ok(())
    }

    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        if !self.active || self.is_own_tmp(dir, name) {
            self.inner.unlink(dir, name)?;
        } else if self.pretended(dir, name).is_none() {
            // Someone else's file (an expired index entry, a stale lock): pretend.
            self.inner.stat(dir, name)?;
        }
        self.forget(dir, name);
        Ok(())
    }

    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        if self.pretended(dir, name).is_some() {
            return Ok(Stat {
                nlink: 1,
                size: 0,
                mtime: 0,
                regular: true,
            });
        }
        self.inner.stat(dir, name)
    }

    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        match self.active {
            true => Ok(()),
            false => self.inner.sync_dir(dir),
        }
    }

    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        match self.active {
            true => Err(ErrorKind::Exists),
            false => self.inner.mkdir(dir),
        }
    }

    fn open_dir(&mut self, dir: Dir) -> Result<Self::DirStream, ErrorKind> {
        self.inner.open_dir(dir)
    }

    fn stat_listed(&mut self, stream: &Self::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        self.inner.stat_listed(stream, name)
    }

    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<Self::DirStream, ErrorKind> {
        self.inner.open_folder_dir(base, folder, dir)
    }

    fn read_dir(
        &mut self,
        stream: &mut Self::DirStream,
        out: &mut crate::fs::EntryName,
    ) -> Result<bool, ErrorKind> {
        self.inner.read_dir(stream, out)
    }

    fn append(
        &mut self,
        dir: Dir,
        name: &str,
        data: &[u8],
        persist: Persist,
    ) -> Result<(), ErrorKind> {
        if !self.active || self.is_own_tmp(dir, name) {
            return self.inner.append(dir, name, data, persist);
        }
        if self.pretended(dir, name).is_some() {
            return Ok(());
        }
        // Appending never creates: a missing file stays an error, an existing one is pretended.
        self.inner.stat(dir, name).map(|_| ())
    }

    fn read_file(&mut self, dir: Dir, name: &str, out: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.pretended(dir, name).is_some() {
            return Ok(0);
        }
        self.inner.read_file(dir, name, out)
    }

    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        // Dry, only this run's own tmp/ files are written: flushing them is harmless.
        self.inner.sync_all()
    }

    fn set_mtime(&mut self, file: &Self::File, secs: i64) -> Result<(), ErrorKind> {
        // Dry, the real file is this run's own, in tmp/: touching it changes nothing a reader
        // sees. Inactive, it is simply forwarded.
        match file {
            DryFile::Real(f) => self.inner.set_mtime(f, secs),
            DryFile::Null => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{setup, MemFs};
    use crate::{deliver, Options};
    use std::string::String;
    use std::vec::Vec;

    fn contents(m: &MemFs) -> Vec<(Dir, String, Vec<u8>)> {
        m.names
            .iter()
            .map(|((d, n), ino)| (*d, n.clone(), m.inodes[ino].data.clone()))
            .collect()
    }

    #[test]
    fn an_inactive_dry_run_delivers_for_real() {
        let mut with_rename = Capabilities::POSIX;
        with_rename.rename_noreplace = true;
        for caps in [Capabilities::POSIX, with_rename] {
            let (mut mem, mut env, _clock) = setup();
            mem.caps = caps;
            let mut fs = DryRun::with(mem, false);
            let mut buf = [0u8; 16];
            let mut src: &[u8] = b"Subject: s\n\nbody\n";
            let d = deliver(&mut fs, &mut env, Options::default(), &mut src, &mut buf).unwrap();
            let mem = fs.into_inner();
            let stored: Vec<_> = contents(&mem)
                .into_iter()
                .filter(|(dir, _, _)| *dir != Dir::Root)
                .collect();
            assert_eq!(
                stored,
                [(
                    Dir::New,
                    String::from(d.name.as_str()),
                    b"Subject: s\n\nbody\n".to_vec()
                )]
            );
        }
    }

    #[test]
    fn a_dry_delivery_names_its_file_and_changes_nothing() {
        let mut with_rename = Capabilities::POSIX;
        with_rename.rename_noreplace = true;
        let mut no_links = Capabilities::POSIX;
        no_links.hard_links = false;
        for caps in [Capabilities::POSIX, with_rename, no_links] {
            let (mut mem, mut env, _clock) = setup();
            mem.caps = caps;
            mem.put(Dir::Root, "maildirsize", b"1000S\n10 1\n");
            mem.put(Dir::New, "existing", b"x");
            let before = contents(&mem);
            let mut fs = DryRun::new(mem);
            let mut buf = [0u8; 16];
            let mut src: &[u8] = b"Subject: s\n\nbody\n";
            let d = deliver(&mut fs, &mut env, Options::default(), &mut src, &mut buf).unwrap();
            assert_eq!(d.dir, Dir::New);
            assert_eq!(d.size, 17);
            // Pretended: appends to existing files, creations elsewhere, renames over them.
            assert_eq!(
                fs.append(Dir::Root, "maildirsize", b"17 1\n", Persist::Flush),
                Ok(())
            );
            assert_eq!(
                fs.append(Dir::Root, "nope", b"x", Persist::Flush),
                Err(ErrorKind::NotFound)
            );
            assert_eq!(
                fs.create(Dir::Root, "maildirsize", true).err(),
                Some(ErrorKind::Exists)
            );
            assert!(fs.create(Dir::Root, "entry", true).is_ok());
            assert_eq!(fs.append(Dir::Root, "entry", b"x", Persist::Flush), Ok(()));
            assert_eq!(fs.unlink(Dir::New, "existing"), Ok(()));
            let f = fs.create(Dir::Tmp, "fresh", true).unwrap();
            fs.close(f).unwrap();
            fs.rename((Dir::Tmp, "fresh"), (Dir::Root, "maildirsize"), false)
                .unwrap();
            let mem = fs.into_inner();
            assert_eq!(contents(&mem), before, "{caps:?}");
        }
    }
}
