//! Identical copies as hard links: when several recipients' copies of one message have the same
//! bytes (no per-recipient `Delivered-To:`) and their maildirs share a filesystem, the later
//! copies are links to the first one's file, as Dovecot stores them.
//!
//! Every delivery runs the core's machine as usual, through [`Linked`]. [`Link::record`]
//! follows the first copy: the length and sha256 of the unnamed file it publishes, which
//! [`Link::stored`] gives once that delivery succeeded (so its data is durable).
//! [`Link::follow`] follows a later copy: written into its own unnamed file as usual, and when
//! that file holds exactly the first copy's bytes, its flush is skipped and the first copy's
//! file is linked under its name instead. Where that link fails (the source is gone, or takes
//! no more links), the copy is flushed (`sync_all`: the flush that takes no file) and named
//! itself; a name already taken is the machine's to handle, as for any file. A named
//! temporary file is published by its own name: its flush is never skipped.

use sha2::{Digest, Sha256};

use crate::error::ErrorKind;
use crate::fs::{Capabilities, Dir, EntryName, Fs, Persist, Stat};

/// A stored copy's bytes: their length and sha256.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest32 {
    /// Bytes.
    pub len: u64,
    /// sha256 of the bytes.
    pub sha: [u8; 32],
}

/// What one delivery wrote, and whether it is a link to its source.
#[derive(Clone, Debug)]
pub struct Link {
    /// The first copy's bytes (`None`: this is the first copy).
    source: Option<Digest32>,
    /// The file being written ([`Fs::file_id`]) and whether it was created unnamed.
    file: Option<((u64, u64), bool)>,
    hash: Sha256,
    len: u64,
    /// The bytes of the file published.
    stored: Option<Digest32>,
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

    /// Follows a later copy, a link to `source` if its bytes are identical.
    pub fn follow(source: Digest32) -> Link {
        Link {
            source: Some(source),
            ..Link::record()
        }
    }

    /// The bytes of the file this delivery published: what a later copy may link to.
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

    /// Whether `id` is the unnamed file written and holds exactly the source's bytes: its
    /// flush is skipped and it is published as a link to the source.
    pub fn identical(&self, id: Option<(u64, u64)>) -> bool {
        matches!((self.source, self.file), (Some(s), Some((f, true))) if Some(f) == id && self.digest() == s)
    }

    fn start(&mut self, id: Option<(u64, u64)>, anonymous: bool) {
        (self.file, self.hash, self.len) = (id.map(|f| (f, anonymous)), Sha256::new(), 0);
    }

    fn is(&self, id: Option<(u64, u64)>) -> bool {
        id.is_some() && self.file.map(|(f, _)| f) == id
    }

    /// What compares and hashes a `Link` (its running hash as the digest it gives).
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        Option<Digest32>,
        Option<((u64, u64), bool)>,
        Digest32,
        Option<Digest32>,
        bool,
    ) {
        (
            self.source,
            self.file,
            self.digest(),
            self.stored,
            self.linked,
        )
    }
}

impl PartialEq for Link {
    fn eq(&self, o: &Link) -> bool {
        self.key() == o.key()
    }
}

impl Eq for Link {}

impl core::hash::Hash for Link {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}

/// A delivery's [`Fs`] that stores an identical copy as a link to the first copy's `source`
/// file (`None`: nothing to link to).
pub struct Linked<'a, F: Fs> {
    /// The maildir.
    pub fs: &'a mut F,
    /// What it wrote.
    pub link: &'a mut Link,
    /// The first copy's file.
    pub source: Option<&'a F::File>,
}

/// The operations [`Linked`] passes through as they are.
macro_rules! forward {
    ($($name:ident($($a:ident: $t:ty),*) -> $r:ty;)*) => {
        $(fn $name(&mut self, $($a: $t),*) -> Result<$r, ErrorKind> { self.fs.$name($($a),*) })*
    };
}

impl<F: Fs> Linked<'_, F> {
    /// Whether `file` will be published as a link to the source: its own flush (or
    /// write-back) is skipped, since the source's data was durable before its recipient's
    /// reply.
    fn becomes_a_link(&self, file: &F::File) -> bool {
        self.source.is_some() && self.link.identical(self.fs.file_id(file))
    }
}

impl<F: Fs> Fs for Linked<'_, F> {
    type File = F::File;
    type DirStream = F::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.fs.capabilities()
    }
    fn file_id(&self, file: &F::File) -> Option<(u64, u64)> {
        self.fs.file_id(file)
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<F::File, ErrorKind> {
        let f = self.fs.create(dir, name, exclusive)?;
        self.link.start(self.fs.file_id(&f), false);
        Ok(f)
    }
    fn create_anonymous(&mut self, dir: Dir) -> Result<F::File, ErrorKind> {
        let f = self.fs.create_anonymous(dir)?;
        self.link.start(self.fs.file_id(&f), true);
        Ok(f)
    }
    fn write(&mut self, file: &mut F::File, buf: &[u8]) -> Result<usize, ErrorKind> {
        let n = self.fs.write(file, buf)?;
        let id = self.fs.file_id(file);
        if !self.link.is(id) {
            self.link.start(id, false);
        }
        self.link.hash.update(&buf[..n]);
        self.link.len += n as u64;
        Ok(n)
    }
    fn sync_file(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        if self.becomes_a_link(file) {
            return Ok(());
        }
        self.fs.sync_file(file)
    }
    fn write_back(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        if self.becomes_a_link(file) {
            return Ok(());
        }
        self.fs.write_back(file)
    }
    fn link_anonymous(&mut self, file: &F::File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        let id = self.fs.file_id(file);
        let source = self.source.filter(|_| self.link.identical(id));
        let linked = match source.map(|s| self.fs.link_anonymous(s, dir, name)) {
            Some(Err(ErrorKind::Exists)) => return Err(ErrorKind::Exists),
            Some(Err(_)) => {
                self.link.source = None;
                self.fs.sync_all()?;
                false
            }
            Some(Ok(())) => true,
            None => false,
        };
        if !linked {
            self.fs.link_anonymous(file, dir, name)?;
        }
        self.link.linked = linked;
        if self.link.is(id) {
            self.link.stored = Some(self.link.digest());
        }
        Ok(())
    }
    fn stat_listed(&mut self, stream: &F::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        self.fs.stat_listed(stream, name)
    }
    fn set_mtime(&mut self, file: &F::File, secs: i64) -> Result<(), ErrorKind> {
        self.fs.set_mtime(file, secs)
    }
    forward! {
        sync_all() -> ();
        close(file: F::File) -> ();
        link(from: (Dir, &str), to: (Dir, &str)) -> ();
        rename(from: (Dir, &str), to: (Dir, &str), noreplace: bool) -> ();
        unlink(dir: Dir, name: &str) -> ();
        stat(dir: Dir, name: &str) -> Stat;
        sync_dir(dir: Dir) -> ();
        mkdir(dir: Dir) -> ();
        open_dir(dir: Dir) -> F::DirStream;
        open_folder_dir(base: Dir, folder: &[u8], dir: Dir) -> F::DirStream;
        read_dir(stream: &mut F::DirStream, out: &mut EntryName) -> bool;
        append(dir: Dir, name: &str, data: &[u8], persist: Persist) -> ();
        read_file(dir: Dir, name: &str, buf: &mut [u8]) -> usize;
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

    /// Delivers `msg` through a [`Linked`] of `fs` following `link` (linking to `source`), at
    /// `clock`'s time.
    fn store<F: Fs<File = u64>>(
        fs: &mut F,
        clock: &Clock,
        link: &mut Link,
        source: Option<u64>,
        msg: &[u8],
    ) -> (Dir, String) {
        let mut env = TestEnv::new(clock.clone(), 7);
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
        let clock = fs.clock.clone();
        let (d, name) = store(&mut fs, &clock, &mut first, None, msg);
        let source = first.stored().unwrap();
        assert_eq!(source.len, msg.len() as u64);
        let ino = fs.names[&(d, name)];
        for (copy, linked) in [(msg, true), (&msg[..msg.len() - 1], false), (b"x\n", false)] {
            let mut later = Link::follow(source);
            let (d, name) = store(&mut fs, &clock, &mut later, Some(ino), copy);
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
        let (d, name) = store(&mut hooked, &clock, &mut later, Some(ino), msg);
        assert!(!later.linked());
        assert_eq!(hooked.hook, Refuse { links: 2, syncs: 1 });
        let own = hooked.fs.names[&(d, name)];
        assert_ne!(own, ino);
        assert_eq!(hooked.fs.inodes[&own].data, msg);
    }
}
