//! Identical copies as hard links: when several recipients' copies of one message have the same
//! bytes (no per-recipient `Delivered-To:`) and their maildirs share a filesystem, the later
//! copies are stored as links to the first one's file, as Dovecot stores them.
//!
//! [`Linked`] wraps a delivery's [`Fs`]; every delivery runs the core's machine as usual
//! through it. [`Link::record`] follows the first copy: the sha256 and length of the bytes
//! written into the file that is published, which [`Link::stored`] gives once that delivery
//! succeeded (so the source's data is durable). [`Link::follow`] follows a later copy: its bytes
//! are still written into its own unnamed file, and when that file turns out to hold exactly
//! the source's bytes, its flush is skipped (the source's data is durable already) and it is
//! published as a link to the source's file instead. Where that link fails (the source is gone,
//! or has all the links it can take), the copy, written already, is flushed and published as
//! its own file; a name already taken is the machine's to handle, as for any file.
//!
//! Only a file created unnamed (`create_anonymous`) is ever published as a link: a named
//! temporary file is renamed or linked by its name, so its own flush is never skipped.

use sha2::{Digest, Sha256};

use crate::error::ErrorKind;
use crate::fs::{Capabilities, Dir, EntryName, Fs, Stat};

/// The first copy, stored: its length and sha256 (a later copy with both equal is identical).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest32 {
    /// Bytes.
    pub len: u64,
    /// sha256 of the bytes.
    pub sha: [u8; 32],
}

/// One delivery's view of the bytes it writes.
#[derive(Clone, Debug)]
pub struct Link {
    /// The copy this one may link to (`None`: the first copy, recorded).
    source: Option<Digest32>,
    /// The file being written (its [`Fs::file_id`]) and whether it was created unnamed.
    file: Option<((u64, u64), bool)>,
    hash: Sha256,
    len: u64,
    /// The last file flushed or published held these bytes.
    stored: Option<Digest32>,
    /// A link to the source was made.
    linked: bool,
}

impl Link {
    /// Follows the first copy, to give its [`Link::stored`].
    pub fn record() -> Link {
        Link {
            source: None,
            file: None,
            hash: Sha256::new(),
            len: 0,
            stored: None,
            linked: false,
        }
    }

    /// Follows a later copy that becomes a link to `source` if its bytes are identical.
    pub fn follow(source: Digest32) -> Link {
        Link {
            source: Some(source),
            ..Link::record()
        }
    }

    /// The bytes of the file this delivery published (once it succeeded: what a later copy
    /// may link to).
    pub fn stored(&self) -> Option<Digest32> {
        self.stored
    }

    /// Whether this copy was stored as a link to the source.
    pub fn linked(&self) -> bool {
        self.linked
    }

    /// The bytes written into the current file so far.
    pub fn digest(&self) -> Digest32 {
        Digest32 {
            len: self.len,
            sha: self.hash.clone().finalize().into(),
        }
    }

    /// Whether `id` is the unnamed file being written and holds exactly the source's bytes:
    /// its flush is skipped and it is published as a link to the source.
    pub fn identical(&self, id: Option<(u64, u64)>) -> bool {
        match (self.source, self.file) {
            (Some(s), Some((f, true))) => Some(f) == id && self.digest() == s,
            _ => false,
        }
    }

    fn wrote(&mut self, id: Option<(u64, u64)>, buf: &[u8]) {
        if self.file.map(|(f, _)| Some(f)) != Some(id) {
            self.file = id.map(|f| (f, false));
            self.hash = Sha256::new();
            self.len = 0;
        }
        self.hash.update(buf);
        self.len += buf.len() as u64;
    }

    fn created(&mut self, id: Option<(u64, u64)>, anonymous: bool) {
        self.file = id.map(|f| (f, anonymous));
        self.hash = Sha256::new();
        self.len = 0;
    }

    fn published(&mut self, id: Option<(u64, u64)>) {
        if self.file.map(|(f, _)| Some(f)) == Some(id) {
            self.stored = Some(self.digest());
        }
    }
}

/// A delivery's [`Fs`] that stores an identical copy as a link to the first one's file
/// (`source`, open; `None` for the first copy, or where there is none to link to).
pub struct Linked<'a, F: Fs> {
    /// The maildir.
    pub fs: &'a mut F,
    /// What it wrote.
    pub link: &'a mut Link,
    /// The first copy's file.
    pub source: Option<&'a F::File>,
}

impl PartialEq for Link {
    fn eq(&self, o: &Link) -> bool {
        let key = |l: &Link| (l.source, l.file, l.digest(), l.stored, l.linked);
        key(self) == key(o)
    }
}

impl Eq for Link {}

impl core::hash::Hash for Link {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        (
            self.source,
            self.file,
            self.digest(),
            self.stored,
            self.linked,
        )
            .hash(h);
    }
}

impl<F: Fs> Fs for Linked<'_, F> {
    type File = F::File;
    type DirStream = F::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.fs.capabilities()
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<F::File, ErrorKind> {
        let f = self.fs.create(dir, name, exclusive)?;
        self.link.created(self.fs.file_id(&f), false);
        Ok(f)
    }
    fn create_anonymous(&mut self, dir: Dir) -> Result<F::File, ErrorKind> {
        let f = self.fs.create_anonymous(dir)?;
        self.link.created(self.fs.file_id(&f), true);
        Ok(f)
    }
    fn file_id(&self, file: &F::File) -> Option<(u64, u64)> {
        self.fs.file_id(file)
    }
    fn write(&mut self, file: &mut F::File, buf: &[u8]) -> Result<usize, ErrorKind> {
        let n = self.fs.write(file, buf)?;
        self.link.wrote(self.fs.file_id(file), &buf[..n]);
        Ok(n)
    }
    fn sync_file(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        if self.source.is_some() && self.link.identical(self.fs.file_id(file)) {
            // The source's data was durable before its recipient's reply.
            return Ok(());
        }
        self.fs.sync_file(file)
    }
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        self.fs.sync_all()
    }
    fn close(&mut self, file: F::File) -> Result<(), ErrorKind> {
        self.fs.close(file)
    }
    fn link_anonymous(&mut self, file: &F::File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        let id = self.fs.file_id(file);
        if let Some(source) = self.source.filter(|_| self.link.identical(id)) {
            match self.fs.link_anonymous(source, dir, name) {
                Ok(()) => {
                    self.link.linked = true;
                    self.link.published(id);
                    return Ok(());
                }
                Err(ErrorKind::Exists) => return Err(ErrorKind::Exists),
                // The source cannot take the link: this copy is its own file after all,
                // flushed (its flush was skipped, and only `sync_all` takes no `&mut` file)
                // before it is named.
                Err(_) => {
                    self.link.source = None;
                    self.fs.sync_all()?;
                }
            }
        }
        self.fs.link_anonymous(file, dir, name)?;
        self.link.published(id);
        Ok(())
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        self.fs.link(from, to)
    }
    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        self.fs.rename(from, to, noreplace)
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.fs.unlink(dir, name)
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        self.fs.stat(dir, name)
    }
    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.fs.sync_dir(dir)
    }
    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.fs.mkdir(dir)
    }
    fn open_dir(&mut self, dir: Dir) -> Result<F::DirStream, ErrorKind> {
        self.fs.open_dir(dir)
    }
    fn stat_listed(&mut self, stream: &F::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        self.fs.stat_listed(stream, name)
    }
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<F::DirStream, ErrorKind> {
        self.fs.open_folder_dir(base, folder, dir)
    }
    fn read_dir(
        &mut self,
        stream: &mut F::DirStream,
        out: &mut EntryName,
    ) -> Result<bool, ErrorKind> {
        self.fs.read_dir(stream, out)
    }
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], sync: bool) -> Result<(), ErrorKind> {
        self.fs.append(dir, name, data, sync)
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.fs.read_file(dir, name, buf)
    }
    fn set_mtime(&mut self, file: &F::File, secs: i64) -> Result<(), ErrorKind> {
        self.fs.set_mtime(file, secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::deliver::{deliver, Options};
    use crate::testkit::{Call, Clock, Hook, Hooked, MemFs, TestEnv};
    use std::string::String;

    /// Refuses the first link of an unnamed file (`EMLINK`), counting those links and the
    /// `sync_all` calls.
    #[derive(Debug, Default, PartialEq)]
    struct Refuse {
        links: u32,
        syncs: u32,
    }

    impl Hook<MemFs> for Refuse {
        fn before(&mut self, _: &mut MemFs, call: &mut Call<'_>) -> Result<(), ErrorKind> {
            match call {
                Call::LinkAnonymous(..) => {
                    self.links += 1;
                    if self.links == 1 {
                        return Err(ErrorKind::Io);
                    }
                }
                Call::SyncAll => self.syncs += 1,
                _ => {}
            }
            Ok(())
        }
    }

    /// Delivers `msg` through a [`Linked`] of `fs` following `link` (linking to `source`).
    fn store(fs: &mut MemFs, link: &mut Link, source: Option<u64>, msg: &[u8]) -> (Dir, String) {
        let mut env = TestEnv::new(fs.clock.clone(), 7);
        let mut l = Linked {
            fs,
            link,
            source: source.as_ref(),
        };
        let mut buf = [0u8; 16];
        let d = deliver(
            &mut l,
            &mut env,
            Options::default(),
            &mut &msg[..],
            &mut buf,
        )
        .unwrap();
        (d.dir, d.name.as_str().into())
    }

    /// An identical copy becomes a link to the first copy's inode; a copy whose bytes differ
    /// (even by its length alone) is its own file; a link the source cannot take falls back
    /// to the copy's own file, flushed.
    #[test]
    fn identical_copies_are_links_to_the_first_and_others_their_own_files() {
        let mut fs = MemFs::new(Clock::default());
        fs.caps = Capabilities::LINUX_LOCAL;
        let msg: &[u8] = b"Subject: s\n\nbody\n";
        let mut first = Link::record();
        let (d, name) = store(&mut fs, &mut first, None, msg);
        let source = first.stored().unwrap();
        assert_eq!(source.len, msg.len() as u64);
        let ino = fs.names[&(d, name)];
        for (copy, linked) in [(msg, true), (&msg[..msg.len() - 1], false), (b"x\n", false)] {
            let mut later = Link::follow(source);
            let (d, name) = store(&mut fs, &mut later, Some(ino), copy);
            assert_eq!(later.linked(), linked);
            assert_eq!(fs.names[&(d, name.clone())] == ino, linked, "{name}");
            assert_eq!(fs.inodes[&fs.names[&(d, name)]].data, copy);
        }
        assert_eq!(fs.inodes[&ino].nlink, 2);
        // The source takes no more links: the copy is stored as its own, after `sync_all`.
        let mut hooked = Hooked {
            fs: fs.clone(),
            hook: Refuse::default(),
        };
        let mut later = Link::follow(source);
        let mut env = TestEnv::new(fs.clock.clone(), 7);
        let mut l = Linked {
            fs: &mut hooked,
            link: &mut later,
            source: Some(&ino),
        };
        let mut buf = [0u8; 16];
        let d = deliver(
            &mut l,
            &mut env,
            Options::default(),
            &mut &msg[..],
            &mut buf,
        )
        .unwrap();
        assert!(!later.linked());
        assert_eq!(hooked.hook, Refuse { links: 2, syncs: 1 });
        let own = hooked.fs.names[&(d.dir, d.name.as_str().into())];
        assert_ne!(own, ino);
        assert_eq!(hooked.fs.inodes[&own].data, msg);
    }
}
