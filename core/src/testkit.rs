//! The one test kit: an in-memory maildir ([`MemFs`]), an environment on a shared clock
//! ([`TestEnv`]), and [`Hooked`], the wrapper through which a test gives any `Fs` special
//! behaviour (scripted failures, a crash budget, a log of the calls) without writing another
//! filesystem. Compiled for the core's own tests and, behind the `testkit` feature, for the
//! other crates' tests; never in a shipped build (it needs `std`).

extern crate std;

use crate::env::Timestamp;
use crate::fs::{Capabilities, Dir, EntryName, Fs, Persist, Stat};
use crate::{Env, ErrorKind};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec::Vec;

/// A shared millisecond clock for [`MemFs`] and [`TestEnv`].
pub type Clock = Rc<Cell<u64>>;

/// A file's contents, modification time (seconds) and link count.
#[derive(Clone, Debug)]
pub struct Inode {
    /// The bytes.
    pub data: Vec<u8>,
    /// Seconds, from the clock at the last change (or as set).
    pub mtime: u64,
    /// Names pointing at it (0 for an unnamed tmp file).
    pub nlink: u64,
}

/// A small in-memory maildir: names map to inodes (hard links share them), directories have
/// mtimes, listings are snapshots. Unnamed tmp files, `rename` without replacing and hard
/// links follow [`MemFs::caps`].
#[derive(Clone, Debug)]
pub struct MemFs {
    /// `(dir, name)` to inode number.
    pub names: BTreeMap<(Dir, String), u64>,
    /// The inodes by number.
    pub inodes: BTreeMap<u64, Inode>,
    /// Each directory's mtime (seconds).
    pub dir_mtime: BTreeMap<Dir, u64>,
    /// The clock file times come from.
    pub clock: Clock,
    /// The clock's ticks in a second: 1000 (milliseconds, [`TestEnv`]'s) unless set.
    pub ticks_per_sec: u64,
    /// What the filesystem offers.
    pub caps: Capabilities,
    /// Listings of this directory leave out this name, while the count lasts: what a
    /// listing racing another process's rename of the entry may see.
    pub hide: Option<(Dir, String, u32)>,
    /// How many listings were started.
    pub listings: u32,
    /// Messages of the Maildir++ tree outside this maildir, by (maildir, folder, dir):
    /// `(Dir::Root, ".Sub", Dir::New)` is `.Sub/new/`, `(Dir::Top, "", Dir::Cur)` the top
    /// maildir's cur/ when this maildir is a folder. Names only (`,S=` gives sizes).
    pub folders: BTreeMap<(Dir, String, Dir), Vec<String>>,
    /// The sizes of the names in [`MemFs::folders`] that have one to `stat`.
    pub folder_sizes: BTreeMap<String, u64>,
    /// At most this many bytes per `write` (short writes on purpose when small).
    pub max_write: usize,
    /// `file_id` is `(ids.0, inode + ids.1)`.
    pub ids: (u64, u64),
    /// Listings are live, like a readdir cursor in name order (a name renamed behind the
    /// cursor is missed, one renamed ahead of it is seen), instead of snapshots.
    pub live_listings: bool,
    next_ino: u64,
}

impl MemFs {
    /// An empty maildir with plain POSIX capabilities.
    pub fn new(clock: Clock) -> MemFs {
        MemFs {
            names: BTreeMap::new(),
            inodes: BTreeMap::new(),
            dir_mtime: BTreeMap::new(),
            clock,
            ticks_per_sec: 1000,
            caps: Capabilities::POSIX,
            hide: None,
            listings: 0,
            folders: BTreeMap::new(),
            folder_sizes: BTreeMap::new(),
            max_write: usize::MAX,
            ids: (1, 0),
            live_listings: false,
            next_ino: 1,
        }
    }
    fn now(&self) -> u64 {
        self.clock.get() / self.ticks_per_sec
    }
    fn touch(&mut self, dir: Dir) {
        let now = self.now();
        self.dir_mtime.insert(dir, now);
    }
    fn inode(&mut self, data: &[u8], nlink: u64) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let mtime = self.now();
        let data = data.to_vec();
        self.inodes.insert(ino, Inode { data, mtime, nlink });
        ino
    }
    /// Creates (or replaces) `dir/name` holding `data`; returns its inode.
    pub fn put(&mut self, dir: Dir, name: &str, data: &[u8]) -> u64 {
        let _ = self.drop_name(dir, name);
        let ino = self.inode(data, 1);
        self.names.insert((dir, name.to_string()), ino);
        self.touch(dir);
        ino
    }
    /// The contents of `dir/name`.
    pub fn get(&self, dir: Dir, name: &str) -> Option<&[u8]> {
        let ino = self.names.get(&(dir, name.to_string()))?;
        Some(&self.inodes[ino].data)
    }
    /// The names in `dir`, sorted.
    pub fn list(&self, dir: Dir) -> Vec<String> {
        self.names
            .keys()
            .filter(|(d, _)| *d == dir)
            .map(|(_, n)| n.clone())
            .collect()
    }
    fn ino(&self, dir: Dir, name: &str) -> Result<u64, ErrorKind> {
        let key = (dir, name.to_string());
        self.names.get(&key).copied().ok_or(ErrorKind::NotFound)
    }
    fn drop_name(&mut self, dir: Dir, name: &str) -> Result<u64, ErrorKind> {
        let ino = self
            .names
            .remove(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        self.inodes.get_mut(&ino).unwrap().nlink -= 1;
        self.touch(dir);
        Ok(ino)
    }
    fn name(&mut self, ino: u64, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        if self.names.contains_key(&(dir, name.to_string())) {
            return Err(ErrorKind::Exists);
        }
        self.names.insert((dir, name.to_string()), ino);
        self.inodes.get_mut(&ino).unwrap().nlink += 1;
        self.touch(dir);
        Ok(())
    }
}

impl Fs for MemFs {
    type File = u64;
    /// The names, the position, and the directory when it is this maildir's (else a
    /// folder's: sizes from [`MemFs::folder_sizes`]).
    type DirStream = (Vec<String>, usize, Option<Dir>);

    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<u64, ErrorKind> {
        if let Ok(ino) = self.ino(dir, name) {
            if exclusive {
                return Err(ErrorKind::Exists);
            }
            self.inodes.get_mut(&ino).unwrap().data.clear();
            return Ok(ino);
        }
        Ok(self.put(dir, name, b""))
    }
    fn create_anonymous(&mut self, _: Dir) -> Result<u64, ErrorKind> {
        match self.caps.anonymous_tmp {
            true => Ok(self.inode(b"", 0)),
            false => Err(ErrorKind::Unsupported),
        }
    }
    fn file_id(&self, file: &u64) -> Option<(u64, u64)> {
        Some((self.ids.0, *file + self.ids.1))
    }
    fn write(&mut self, file: &mut u64, buf: &[u8]) -> Result<usize, ErrorKind> {
        let now = self.now();
        let n = buf.len().min(self.max_write);
        let node = self.inodes.get_mut(file).ok_or(ErrorKind::Io)?;
        node.data.extend_from_slice(&buf[..n]);
        node.mtime = now;
        Ok(n)
    }
    fn sync_file(&mut self, _: &mut u64) -> Result<(), ErrorKind> {
        Ok(())
    }
    fn write_back(&mut self, _: &mut u64) -> Result<(), ErrorKind> {
        Ok(())
    }
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
    fn close(&mut self, _: u64) -> Result<(), ErrorKind> {
        Ok(())
    }
    fn link_anonymous(&mut self, file: &u64, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        match self.caps.anonymous_tmp {
            true => self.name(*file, dir, name),
            false => Err(ErrorKind::Unsupported),
        }
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        if !self.caps.hard_links {
            return Err(ErrorKind::Unsupported);
        }
        let ino = self.ino(from.0, from.1)?;
        self.name(ino, to.0, to.1)
    }
    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        if noreplace && !self.caps.rename_noreplace {
            return Err(ErrorKind::Unsupported);
        }
        let ino = self.ino(from.0, from.1)?;
        if let Ok(old) = self.ino(to.0, to.1) {
            if noreplace {
                return Err(ErrorKind::Exists);
            }
            if old == ino {
                return Ok(());
            }
            self.drop_name(to.0, to.1)?;
        }
        self.drop_name(from.0, from.1)?;
        self.name(ino, to.0, to.1)
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.drop_name(dir, name).map(|_| ())
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        if dir == Dir::Root {
            if let Some(d) = Dir::SUBDIRS.into_iter().find(|d| d.as_str() == name) {
                return Ok(Stat {
                    nlink: 2,
                    size: 4096,
                    mtime: self.dir_mtime.get(&d).copied().unwrap_or(0),
                    regular: false,
                });
            }
        }
        let node = &self.inodes[&self.ino(dir, name)?];
        Ok(Stat {
            nlink: node.nlink,
            size: node.data.len() as u64,
            mtime: node.mtime,
            regular: true,
        })
    }
    fn sync_dir(&mut self, _: Dir) -> Result<(), ErrorKind> {
        // As wasmtime does, refuse when the capabilities say directories cannot be flushed.
        match self.caps.dir_sync {
            true => Ok(()),
            false => Err(ErrorKind::Io),
        }
    }
    fn mkdir(&mut self, _: Dir) -> Result<(), ErrorKind> {
        Ok(())
    }
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<Self::DirStream, ErrorKind> {
        let folder = String::from_utf8_lossy(folder).into_owned();
        if base == Dir::Root && folder.is_empty() {
            return self.open_dir(dir);
        }
        self.listings += 1;
        match self.folders.get(&(base, folder, dir)) {
            Some(names) => Ok((names.clone(), 0, None)),
            None => Err(ErrorKind::NotFound),
        }
    }
    fn open_dir(&mut self, dir: Dir) -> Result<Self::DirStream, ErrorKind> {
        self.listings += 1;
        if self.live_listings {
            return Ok((Vec::new(), 0, Some(dir)));
        }
        let mut names = self.list(dir);
        for (base, folder, _) in self.folders.keys() {
            if *base == dir && !folder.is_empty() && !names.contains(folder) {
                names.push(folder.clone());
            }
        }
        if let Some((d, name, left)) = self.hide.as_mut() {
            if *d == dir && *left > 0 {
                *left -= 1;
                names.retain(|n| n != name);
            }
        }
        Ok((names, 0, Some(dir)))
    }
    fn stat_listed(&mut self, s: &Self::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        match s.2 {
            Some(dir) => self.stat(dir, name),
            None => match self.folder_sizes.get(name) {
                Some(&size) => Ok(Stat {
                    nlink: 1,
                    size,
                    mtime: 0,
                    regular: true,
                }),
                None => Err(ErrorKind::NotFound),
            },
        }
    }
    fn read_dir(
        &mut self,
        s: &mut Self::DirStream,
        out: &mut EntryName,
    ) -> Result<bool, ErrorKind> {
        if let (true, Some(dir)) = (self.live_listings, s.2) {
            // The names after the last one read, as they are now.
            let last = s.1.checked_sub(1).map(|i| s.0[i].clone());
            let mut after = self
                .list(dir)
                .into_iter()
                .filter(|n| Some(n) > last.as_ref());
            s.0.truncate(s.1);
            s.0.extend(after.next());
        }
        match s.0.get(s.1) {
            Some(n) => {
                s.1 += 1;
                out.clear();
                out.extend_from_slice(n.as_bytes())
                    .map_err(|_| ErrorKind::NameTooLong)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], _: Persist) -> Result<(), ErrorKind> {
        let now = self.now();
        let ino = self.ino(dir, name)?;
        let node = self.inodes.get_mut(&ino).unwrap();
        node.data.extend_from_slice(data);
        node.mtime = now;
        Ok(())
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let data = self.get(dir, name).ok_or(ErrorKind::NotFound)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
    fn set_mtime(&mut self, file: &u64, secs: i64) -> Result<(), ErrorKind> {
        let node = self.inodes.get_mut(file).ok_or(ErrorKind::NotFound)?;
        node.mtime = secs.max(0) as u64;
        Ok(())
    }
}

/// An environment on the shared clock; `sleep` advances it.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// The clock (milliseconds).
    pub clock: Clock,
    /// The process id it reports.
    pub pid: u32,
    /// The host name it reports (`test.example` unless set).
    pub host: &'static str,
    /// Added to the microseconds of every timestamp (0 unless set).
    pub micros: u32,
    /// `None`: random numbers from a xorshift seeded by the pid; `Some(base)`: `base` plus the
    /// counter's last value, fixed values that a snapshot can show.
    pub counted_random: Option<u64>,
    counter: u64,
    rng: u64,
}

impl TestEnv {
    /// An environment for process `pid` (which also seeds its random numbers).
    pub fn new(clock: Clock, pid: u32) -> TestEnv {
        TestEnv {
            clock,
            pid,
            host: "test.example",
            micros: 0,
            counted_random: None,
            counter: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(pid),
        }
    }
}

impl Env for TestEnv {
    fn now(&mut self) -> Timestamp {
        let ms = self.clock.get();
        Timestamp {
            secs: ms / 1000,
            micros: (ms % 1000) as u32 * 1000 + self.micros,
        }
    }
    fn random_u64(&mut self) -> u64 {
        if let Some(base) = self.counted_random {
            return base + self.counter;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
    fn host(&self) -> &str {
        self.host
    }
    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn sleep(&mut self, millis: u32) {
        self.clock.set(self.clock.get() + u64::from(millis));
    }
}

/// An empty [`MemFs`] and a [`TestEnv`] (pid 100) sharing a clock set to 2023-11-14.
pub fn setup() -> (MemFs, TestEnv, Clock) {
    let clock: Clock = Rc::new(Cell::new(1_700_000_000_000));
    (
        MemFs::new(clock.clone()),
        TestEnv::new(clock.clone(), 100),
        clock,
    )
}

/// One call on an `Fs`, as a [`Hook`] sees it before it happens.
#[derive(Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Call<'a> {
    Create(Dir, &'a str, bool),
    CreateAnonymous(Dir),
    /// The length to write: a hook may shorten it (a short write).
    Write(usize),
    SyncFile,
    WriteBack,
    SyncAll,
    Close,
    LinkAnonymous(Dir, &'a str),
    Link((Dir, &'a str), (Dir, &'a str)),
    Rename((Dir, &'a str), (Dir, &'a str), bool),
    Unlink(Dir, &'a str),
    Stat(Dir, &'a str),
    SyncDir(Dir),
    Mkdir(Dir),
    OpenDir(Dir),
    OpenFolderDir(Dir, &'a [u8], Dir),
    StatListed(&'a str),
    ReadDir,
    Append(Dir, &'a str, &'a [u8], Persist),
    ReadFile(Dir, &'a str),
    /// The file's id and the time.
    SetMtime(Option<(u64, u64)>, i64),
}

impl Call<'_> {
    /// The `Fs` method's name.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Create(..) => "create",
            Call::CreateAnonymous(_) => "create_anonymous",
            Call::Write(_) => "write",
            Call::SyncFile => "sync_file",
            Call::WriteBack => "write_back",
            Call::SyncAll => "sync_all",
            Call::Close => "close",
            Call::LinkAnonymous(..) => "link_anonymous",
            Call::Link(..) => "link",
            Call::Rename(..) => "rename",
            Call::Unlink(..) => "unlink",
            Call::Stat(..) => "stat",
            Call::SyncDir(_) => "sync_dir",
            Call::Mkdir(_) => "mkdir",
            Call::OpenDir(_) => "open_dir",
            Call::OpenFolderDir(..) => "open_folder_dir",
            Call::StatListed(_) => "stat_listed",
            Call::ReadDir => "read_dir",
            Call::Append(..) => "append",
            Call::ReadFile(..) => "read_file",
            Call::SetMtime(..) => "set_mtime",
        }
    }
}

/// What a [`Hooked`] filesystem does before each call: an error fails the call without
/// effect (the hook may itself act on the filesystem first: a foreign file appearing, an
/// operation done whose reply is lost).
pub trait Hook<F> {
    /// Decides about `call` on `fs`; may shorten a [`Call::Write`].
    fn before(&mut self, fs: &mut F, call: &mut Call<'_>) -> Result<(), ErrorKind>;
}

/// Scripted failures: the next call whose name matches the front of the queue fails with its
/// kind (and is taken off it).
#[derive(Clone, Debug, Default)]
pub struct Script(pub VecDeque<(&'static str, ErrorKind)>);

impl<F> Hook<F> for Script {
    fn before(&mut self, _: &mut F, call: &mut Call<'_>) -> Result<(), ErrorKind> {
        match self.0.front() {
            Some(&(name, kind)) if name == call.name() => {
                self.0.pop_front();
                Err(kind)
            }
            _ => Ok(()),
        }
    }
}

/// Any `Fs` with a [`Hook`] asked before every call; everything else is the inner
/// filesystem's.
#[derive(Clone, Debug, Default)]
pub struct Hooked<F, H> {
    /// The filesystem.
    pub fs: F,
    /// The hook.
    pub hook: H,
}

impl<F: Fs, H: Hook<F>> Hooked<F, H> {
    fn ask(&mut self, mut call: Call<'_>) -> Result<(), ErrorKind> {
        self.hook.before(&mut self.fs, &mut call)
    }
}

impl<F: Fs, H: Hook<F>> Fs for Hooked<F, H> {
    type File = F::File;
    type DirStream = F::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.fs.capabilities()
    }
    fn create(&mut self, dir: Dir, name: &str, excl: bool) -> Result<F::File, ErrorKind> {
        self.ask(Call::Create(dir, name, excl))?;
        self.fs.create(dir, name, excl)
    }
    fn create_anonymous(&mut self, dir: Dir) -> Result<F::File, ErrorKind> {
        self.ask(Call::CreateAnonymous(dir))?;
        self.fs.create_anonymous(dir)
    }
    fn file_id(&self, file: &F::File) -> Option<(u64, u64)> {
        self.fs.file_id(file)
    }
    fn write(&mut self, file: &mut F::File, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut call = Call::Write(buf.len());
        self.hook.before(&mut self.fs, &mut call)?;
        let n = match call {
            Call::Write(n) => n.min(buf.len()),
            _ => buf.len(),
        };
        self.fs.write(file, &buf[..n])
    }
    fn sync_file(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        self.ask(Call::SyncFile)?;
        self.fs.sync_file(file)
    }
    fn write_back(&mut self, file: &mut F::File) -> Result<(), ErrorKind> {
        self.ask(Call::WriteBack)?;
        self.fs.write_back(file)
    }
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        self.ask(Call::SyncAll)?;
        self.fs.sync_all()
    }
    fn close(&mut self, file: F::File) -> Result<(), ErrorKind> {
        self.ask(Call::Close)?;
        self.fs.close(file)
    }
    fn link_anonymous(&mut self, file: &F::File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.ask(Call::LinkAnonymous(dir, name))?;
        self.fs.link_anonymous(file, dir, name)
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        self.ask(Call::Link(from, to))?;
        self.fs.link(from, to)
    }
    fn rename(&mut self, from: (Dir, &str), to: (Dir, &str), nr: bool) -> Result<(), ErrorKind> {
        self.ask(Call::Rename(from, to, nr))?;
        self.fs.rename(from, to, nr)
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.ask(Call::Unlink(dir, name))?;
        self.fs.unlink(dir, name)
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        self.ask(Call::Stat(dir, name))?;
        self.fs.stat(dir, name)
    }
    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.ask(Call::SyncDir(dir))?;
        self.fs.sync_dir(dir)
    }
    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.ask(Call::Mkdir(dir))?;
        self.fs.mkdir(dir)
    }
    fn open_dir(&mut self, dir: Dir) -> Result<F::DirStream, ErrorKind> {
        self.ask(Call::OpenDir(dir))?;
        self.fs.open_dir(dir)
    }
    fn stat_listed(&mut self, s: &F::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        self.ask(Call::StatListed(name))?;
        self.fs.stat_listed(s, name)
    }
    fn open_folder_dir(&mut self, b: Dir, f: &[u8], d: Dir) -> Result<F::DirStream, ErrorKind> {
        self.ask(Call::OpenFolderDir(b, f, d))?;
        self.fs.open_folder_dir(b, f, d)
    }
    fn read_dir(&mut self, s: &mut F::DirStream, out: &mut EntryName) -> Result<bool, ErrorKind> {
        self.ask(Call::ReadDir)?;
        self.fs.read_dir(s, out)
    }
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        self.ask(Call::Append(dir, name, data, p))?;
        self.fs.append(dir, name, data, p)
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.ask(Call::ReadFile(dir, name))?;
        self.fs.read_file(dir, name, buf)
    }
    fn set_mtime(&mut self, file: &F::File, secs: i64) -> Result<(), ErrorKind> {
        let id = self.fs.file_id(file);
        self.ask(Call::SetMtime(id, secs))?;
        self.fs.set_mtime(file, secs)
    }
}
