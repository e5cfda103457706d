//! The filesystem as the core sees it: one maildir root, addressed as `(Dir, name)` with plain
//! names (never paths, so nothing can climb out), a capability report, and the single
//! operations ([`Op`]) that the state machines ask their driver to perform.
//!
//! Adapters implement [`Fs`]; wrappers (fault injection, tracing) compose around any `Fs`, the
//! way smoltcp's `phy` wrappers compose around any device.

use crate::env::Env;
use crate::error::ErrorKind;

pub mod dryrun;

pub use crate::dir::Dir;

/// What a filesystem can do, reported honestly by the adapter; the core picks its publish
/// path from this.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Unnamed files in tmp/ that can later be linked into place (Linux `O_TMPFILE`).
    pub anonymous_tmp: bool,
    /// Atomic rename that refuses to replace (`renameat2(RENAME_NOREPLACE)`).
    pub rename_noreplace: bool,
    /// Hard links (`linkat`).
    pub hard_links: bool,
    /// Whether fsync of a directory makes its entries durable.
    pub dir_sync: bool,
    /// Whether every flush of names is a journal commit that first makes durable the data of
    /// every file already written back ([`Fs::write_back`]), and no name can become durable
    /// without such a commit, and commits are made in order, each of every directory
    /// operation before it (ext4, whose one journal commits whole transactions one after
    /// another, and flushes the device's cache before each commit record). Then a message's
    /// file needs only its data written back before it is named: the directory flush after it
    /// makes both durable, one flush instead of two; and so do the records and names made
    /// before it.
    pub ordered_commit: bool,
    /// Whether exclusive creation and link are answered truthfully: `O_EXCL` is atomic and no
    /// reply is lost and answered again by a retransmit (false on network filesystems; the
    /// strategy follows from it, see [`crate::machine::trust`]).
    pub atomic_exclusive: bool,
}

impl Capabilities {
    /// Everything a modern local Linux filesystem offers.
    pub const LINUX_LOCAL: Capabilities = Capabilities {
        anonymous_tmp: true,
        rename_noreplace: true,
        hard_links: true,
        dir_sync: true,
        ordered_commit: false,
        atomic_exclusive: true,
    };
    /// Plain POSIX: exclusive create and hard links, nothing newer.
    pub const POSIX: Capabilities = Capabilities {
        anonymous_tmp: false,
        rename_noreplace: false,
        hard_links: true,
        dir_sync: true,
        ordered_commit: false,
        atomic_exclusive: true,
    };
}

/// How durable a small record ([`Op::WriteFile`], [`Op::Append`]) is when its operation
/// reports `Done`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Persist {
    /// Left to the system's cache: durable whenever it is written out.
    Cache,
    /// Written to the device and waited for, without a cache flush ([`Fs::write_back`]):
    /// durable with the next commit, which comes before any later name is durable
    /// ([`Capabilities::ordered_commit`]). Where the filesystem does not promise that, the
    /// record is flushed instead.
    WriteBack,
    /// Flushed to stable storage (`fdatasync`).
    Flush,
}

impl Persist {
    /// [`Persist::Flush`] when `flush`, else [`Persist::Cache`].
    pub fn flush_if(flush: bool) -> Persist {
        if flush {
            Persist::Flush
        } else {
            Persist::Cache
        }
    }
}

/// What `stat` reports about a name.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Number of hard links to the inode.
    pub nlink: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Whether it is a regular file (not a directory, symlink, FIFO, socket...).
    pub regular: bool,
}

/// One filesystem operation requested by a state machine. Names are borrowed from the machine.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op<'a> {
    /// Create `dir/name` exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600) and keep it open.
    CreateExclusive {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
    },
    /// Create or truncate `dir/name` without `O_EXCL` and keep it open (a Sieve unit's
    /// remembered id, replaced by each record of it; djb's recipe in the simulator).
    CreateTruncate {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
    },
    /// Create an unnamed file in `dir` (`O_TMPFILE`) and keep it open.
    CreateAnonymous {
        /// Directory.
        dir: Dir,
    },
    /// Stream the whole message into the open file; reports bytes written.
    WriteMessage,
    /// Flush the open file's data to stable storage.
    SyncFile,
    /// Write the open file's data to the device and wait, without flushing its cache
    /// ([`Fs::write_back`]; only where [`Capabilities::ordered_commit`]).
    WriteBack,
    /// Close the open file.
    CloseFile,
    /// Give the open unnamed file the name `dir/name`; fails with `Exists` if taken.
    LinkAnonymous {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
    },
    /// Hard-link `from` to `to`; fails with `Exists` if `to` is taken.
    Link {
        /// Source.
        from: (Dir, &'a str),
        /// Target.
        to: (Dir, &'a str),
    },
    /// Rename `from` to `to`. With `noreplace`, fails with `Exists` if `to` is taken (and with
    /// `Unsupported` where the filesystem cannot promise that); without, replaces `to`.
    Rename {
        /// Source.
        from: (Dir, &'a str),
        /// Target.
        to: (Dir, &'a str),
        /// Refuse to replace an existing target.
        noreplace: bool,
    },
    /// Remove `dir/name`.
    Unlink {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
    },
    /// Report on `dir/name` without following symlinks.
    Stat {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
    },
    /// Flush `dir`'s entries to stable storage.
    SyncDir {
        /// Directory.
        dir: Dir,
    },
    /// Flush every file and directory at once ([`Fs::sync_all`]: an import's window).
    SyncAll,
    /// Write all of `data` (a small record) into the open file, short writes repeated.
    Write {
        /// The bytes.
        data: &'a [u8],
    },
    /// Wait (djb's 2-second back-off; lock polling). Time passes; no filesystem effect.
    Sleep {
        /// Milliseconds.
        millis: u32,
    },
    /// Create the small bookkeeping file `dir/name` exclusively and write all of `data` into
    /// it; make it as durable as `persist` says; close it. Made of one `create`, `write`s,
    /// `sync_file` (or `write_back`) and `close`; when any step after the create fails, the
    /// driver removes the name again, so a record that could not be written whole (disk full)
    /// never stays behind. Reports `Done`, or `Exists` when the name is taken.
    WriteFile {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
        /// The whole contents.
        data: &'a [u8],
        /// How durable the file is before it is closed (and, unnamed, named).
        persist: Persist,
        /// Write the file unnamed (`O_TMPFILE`) and give it its name only once it is written
        /// and flushed, where the filesystem can ([`Capabilities::anonymous_tmp`]; otherwise it
        /// is created by name): a crash while it is written leaves nothing behind.
        anonymous: bool,
    },
    /// Append `data` to the existing regular file `dir/name` in one `O_APPEND` write
    /// ([`Fs::append`]), never creating it; as durable as `persist` says when it reports
    /// `Done`.
    Append {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
        /// The bytes (one record).
        data: &'a [u8],
        /// How durable the record is before the file is closed.
        persist: Persist,
    },
    /// Read `dir/name` from its start into the driver's buffer ([`Fs::read_file`]); reports
    /// [`OpResult::Read`] and feeds the bytes.
    Read {
        /// Directory.
        dir: Dir,
        /// File name.
        name: &'a str,
    },
    /// Open a listing of `dir` (the driver keeps the one open listing).
    OpenDir {
        /// Directory to list.
        dir: Dir,
    },
    /// Open a listing of `base/folder/dir` ([`Fs::open_folder_dir`]): `dir` (new/ or cur/) of
    /// the Maildir++ folder `folder` (one name, `.Name`; empty: `base` itself) of the maildir
    /// `base` ([`Dir::Root`] or [`Dir::Top`]). It may be opened while a listing of `base` is
    /// open: [`Op::NextEntry`] and [`Op::CloseDir`] then address this inner listing until it
    /// is closed.
    OpenFolderDir {
        /// The maildir: [`Dir::Root`] or [`Dir::Top`].
        base: Dir,
        /// The folder's directory name (`.Name`), or empty for `base` itself.
        folder: &'a [u8],
        /// [`Dir::New`] or [`Dir::Cur`].
        dir: Dir,
    },
    /// Report on `name` in the directory of the open listing (the inner one while it is open:
    /// a folder's new/ or cur/), without following symlinks ([`Fs::stat_listed`]).
    StatListed {
        /// A name the listing returned.
        name: &'a str,
    },
    /// The next name of the open listing: [`OpResult::Entry`] with the name's bytes fed, or
    /// [`OpResult::End`].
    NextEntry,
    /// Close the open listing.
    CloseDir,
    /// Set the open file's modification time ([`Fs::set_mtime`]).
    SetMtime {
        /// Seconds since the epoch (negative: before it).
        secs: i64,
    },
}

impl<'a> Op<'a> {
    /// The target of an operation that publishes into new/ or cur/ (what the duplicate index
    /// and the quota check intercept).
    pub fn publish_target(&self) -> Option<(Dir, &'a str)> {
        let t = match *self {
            Op::Link { to, .. } | Op::Rename { to, .. } => to,
            Op::LinkAnonymous { dir, name } => (dir, name),
            _ => return None,
        };
        matches!(t.0, Dir::New | Dir::Cur).then_some(t)
    }
}

/// Which kind of result an [`Op`] gets: plain, a small file's contents, or a listing's name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    Plain,
    File,
    List,
}

impl Op<'_> {
    pub(crate) fn channel(&self) -> Channel {
        match self {
            Op::WriteFile { .. } | Op::Append { .. } | Op::Read { .. } => Channel::File,
            Op::OpenDir { .. } | Op::OpenFolderDir { .. } | Op::NextEntry | Op::CloseDir => {
                Channel::List
            }
            _ => Channel::Plain,
        }
    }
}

/// The result of an [`Op`], fed back to the machine.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpResult {
    /// The operation succeeded and has nothing to report.
    Done,
    /// A file was created; its device and inode where known.
    Created {
        /// `(st_dev, st_ino)`.
        id: Option<(u64, u64)>,
    },
    /// The message was written.
    Written {
        /// Bytes written (the name's `,S=`).
        size: u64,
        /// The size with every line ending in CRLF, as IMAP serves it (the name's `,W=`,
        /// Dovecot's virtual size): `size` plus one byte per LF without a CR before it.
        crlf_size: u64,
    },
    /// What `Stat` found.
    Stat(Stat),
    /// The filesystem refused.
    Err(ErrorKind),
    /// The message source failed while being streamed (read error, malformed input).
    SourceErr(ErrorKind),
    /// [`Op::Read`] put this many bytes at the start of the driver's buffer (fed with it).
    Read(usize),
    /// [`Op::NextEntry`] found a name; its bytes are fed with it.
    Entry,
    /// [`Op::NextEntry`] found no more names.
    End,
}

impl OpResult {
    /// The error this result reports, if it is one.
    pub fn err(self) -> Option<ErrorKind> {
        match self {
            OpResult::Err(e) | OpResult::SourceErr(e) => Some(e),
            _ => None,
        }
    }
}

/// A maildir root on some filesystem. Every method is one system call's worth of work.
pub trait Fs {
    /// An open file.
    type File;
    /// An open directory listing.
    type DirStream;

    /// What this filesystem supports.
    fn capabilities(&self) -> Capabilities;
    /// Creates `dir/name`; with `exclusive`, fails with `Exists` if it exists.
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<Self::File, ErrorKind>;
    /// Creates an unnamed file in `dir`.
    fn create_anonymous(&mut self, dir: Dir) -> Result<Self::File, ErrorKind>;
    /// Device and inode of an open file, where the platform has them.
    fn file_id(&self, file: &Self::File) -> Option<(u64, u64)>;
    /// Writes some of `buf`, returning how much.
    fn write(&mut self, file: &mut Self::File, buf: &[u8]) -> Result<usize, ErrorKind>;
    /// Flushes the file's data to stable storage.
    fn sync_file(&mut self, file: &mut Self::File) -> Result<(), ErrorKind>;
    /// Writes the file's data to the device and waits for it, without a cache flush or a
    /// journal commit (Linux `sync_file_range`): durable only with the next commit, which
    /// [`Capabilities::ordered_commit`] promises comes before any name of it is durable.
    /// `Unsupported` where the filesystem does not promise that.
    fn write_back(&mut self, file: &mut Self::File) -> Result<(), ErrorKind>;
    /// Flushes every file and directory of the filesystem to stable storage at once (Linux
    /// `syncfs`), failing if any write-back since the maildir was opened failed: one flush for
    /// many files (an import's window) instead of one each. `Unsupported` where that cannot be
    /// done or would not report errors; the caller then flushes file by file. Like every
    /// operation it has no default: a wrapper that forgot to forward it would silently turn the
    /// window flush off.
    fn sync_all(&mut self) -> Result<(), ErrorKind>;
    /// Closes the file.
    fn close(&mut self, file: Self::File) -> Result<(), ErrorKind>;
    /// Names an unnamed file; `Exists` if the name is taken.
    fn link_anonymous(&mut self, file: &Self::File, dir: Dir, name: &str) -> Result<(), ErrorKind>;
    /// Hard link; `Exists` if the target is taken.
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind>;
    /// Rename, optionally refusing to replace.
    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind>;
    /// Removes a name.
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind>;
    /// Looks at a name without following symlinks.
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind>;
    /// Flushes a directory's entries.
    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind>;
    /// Creates a subdirectory; `Exists` if present.
    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind>;
    /// Starts listing a directory.
    fn open_dir(&mut self, dir: Dir) -> Result<Self::DirStream, ErrorKind>;
    /// Looks at `name` in the directory `stream` lists, without following symlinks
    /// ([`Op::StatListed`]). `Unsupported` where a listing does not know its directory.
    fn stat_listed(&mut self, stream: &Self::DirStream, name: &str) -> Result<Stat, ErrorKind>;
    /// Starts listing `base/folder/dir` ([`Op::OpenFolderDir`]): `dir` of the Maildir++
    /// folder `folder` (one name, opened without following a symbolic link; empty: `base`
    /// itself) of the maildir `base` ([`Dir::Root`] or [`Dir::Top`]). An adapter without
    /// folders answers `NotFound` for every non-empty `folder`.
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<Self::DirStream, ErrorKind>;
    /// The next entry's name into `out` (skipping `.` and `..`); `false` at the end. Names
    /// are bytes: a name that is not UTF-8 (a Latin-1 file copied from an old system) is an
    /// entry like any other, never an error.
    fn read_dir(
        &mut self,
        stream: &mut Self::DirStream,
        out: &mut EntryName,
    ) -> Result<bool, ErrorKind>;
    /// Appends `data` to the existing regular file `dir/name` (`O_WRONLY|O_APPEND|O_NOFOLLOW`,
    /// never creating it) in one `write`, then makes it as durable as `persist` says (a
    /// write-back where the filesystem has no [`Capabilities::ordered_commit`] is a flush),
    /// then closes it. A short write is reported as `Io` (readers of appended records
    /// tolerate a torn tail).
    fn append(
        &mut self,
        dir: Dir,
        name: &str,
        data: &[u8],
        persist: Persist,
    ) -> Result<(), ErrorKind>;
    /// Reads the regular file `dir/name` (`O_NOFOLLOW`) from its start into `buf` until the end
    /// of the file or of `buf`, returning the byte count (`buf.len()`: there may be more).
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind>;
    /// Sets the open file's modification (and access) time to `secs` seconds since the epoch
    /// (negative: before it), as mbox import does from each message's date.
    fn set_mtime(&mut self, file: &Self::File, secs: i64) -> Result<(), ErrorKind>;
}

/// A directory entry's name as a listing returns it: bytes, at most
/// [`NAME_MAX`](crate::dir::NAME_MAX) of them, not necessarily UTF-8.
pub type EntryName = heapless::Vec<u8, { crate::dir::NAME_MAX }>;

fn map_source_error(kind: embedded_io::ErrorKind) -> ErrorKind {
    use embedded_io::ErrorKind as K;
    match kind {
        K::Interrupted => ErrorKind::Interrupted,
        K::InvalidData | K::InvalidInput => ErrorKind::Data,
        K::PermissionDenied => ErrorKind::Permission,
        K::NotFound => ErrorKind::NotFound,
        K::OutOfMemory => ErrorKind::NoSpace,
        _ => ErrorKind::Io,
    }
}

/// Streams `source` into `file` through `buf`, handling short writes. Reports the byte count
/// and the size with CRLF line ends, a filesystem error (`Err`), or a source error
/// (`SourceErr`).
pub fn write_message<F: Fs + ?Sized, R: embedded_io::Read + ?Sized>(
    fs: &mut F,
    file: &mut F::File,
    source: &mut R,
    buf: &mut [u8],
) -> OpResult {
    let mut total: u64 = 0;
    let mut crlf = CrlfSize::default();
    loop {
        let n = match source.read(buf) {
            Ok(0) => {
                return OpResult::Written {
                    size: total,
                    crlf_size: crlf.size(),
                }
            }
            Ok(n) => n,
            Err(e) => {
                let kind = embedded_io::Error::kind(&e);
                if kind == embedded_io::ErrorKind::Interrupted {
                    continue;
                }
                return OpResult::SourceErr(map_source_error(kind));
            }
        };
        if let Err(e) = write_all(fs, file, &buf[..n]) {
            return OpResult::Err(e);
        }
        crlf.feed(&buf[..n]);
        total += n as u64;
    }
}

/// Counts a message's size with CRLF line ends (what IMAP serves, and Dovecot's `,W=`) over
/// chunks of any size: every byte, plus one for each LF that no CR precedes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CrlfSize {
    size: u64,
    last: u8,
}

impl CrlfSize {
    /// Counts the next bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        let Some((&first, _)) = chunk.split_first() else {
            return;
        };
        let mut bare = u64::from(first == b'\n' && self.last != b'\r');
        // Each byte against the one before it, without a carried dependency, so the compiler
        // vectorises it (a byte-at-a-time loop was a third of an mbox import's user time). The
        // counts are summed in `u8` lanes over blocks of at most 255 pairs.
        let (before, after) = (&chunk[..chunk.len() - 1], &chunk[1..]);
        for (b, a) in before.chunks(255).zip(after.chunks(255)) {
            let n: u8 = b
                .iter()
                .zip(a)
                .map(|(&p, &c)| u8::from(c == b'\n') & u8::from(p != b'\r'))
                .fold(0u8, u8::wrapping_add);
            bare += u64::from(n);
        }
        self.size += chunk.len() as u64 + bare;
        self.last = chunk[chunk.len() - 1];
    }

    /// The size so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A driver's [`Fs::read_file`] once the file is open: `read` (one read call) fills `buf` until
/// the end of the file or of `buf`, interrupted reads repeated; gives the byte count.
pub fn read_to_fill(
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8]) -> Result<usize, ErrorKind>,
) -> Result<usize, ErrorKind> {
    let mut n = 0;
    while n < buf.len() {
        match read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A driver's [`Fs::append`] once the file is open: the record in one `write` call, so that
/// `O_APPEND` places it whole after every other writer's (an interrupted call is repeated, a
/// short one is `Io`).
pub fn write_record(
    data: &[u8],
    mut write: impl FnMut(&[u8]) -> Result<usize, ErrorKind>,
) -> Result<(), ErrorKind> {
    loop {
        return match write(data) {
            Err(ErrorKind::Interrupted) => continue,
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(ErrorKind::Io),
            Err(e) => Err(e),
        };
    }
}

/// Writes all of `data`, repeating short and interrupted writes; a write of 0 bytes is `Io`.
fn write_all<F: Fs + ?Sized>(fs: &mut F, file: &mut F::File, data: &[u8]) -> Result<(), ErrorKind> {
    let mut off = 0;
    while off < data.len() {
        match fs.write(file, &data[off..]) {
            Ok(0) => return Err(ErrorKind::Io),
            Ok(w) => off += w,
            Err(ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`Op::WriteFile`]: create, write, flush, close; on a failure after the create the name is
/// removed again (best effort: the first error is reported either way). With `anonymous` (and
/// a filesystem that can), the file is created unnamed and named last, after its flush.
fn write_file<F: Fs + ?Sized>(
    fs: &mut F,
    dir: Dir,
    name: &str,
    data: &[u8],
    (persist, anonymous): (Persist, bool),
) -> Result<(), ErrorKind> {
    // A write-back where the filesystem does not order it before later names is a flush.
    let settle = |fs: &mut F, f: &mut F::File| match persist {
        Persist::Cache => Ok(()),
        Persist::Flush => fs.sync_file(f),
        Persist::WriteBack => match fs.write_back(f) {
            Err(ErrorKind::Unsupported) => fs.sync_file(f),
            r => r,
        },
    };
    if anonymous && fs.capabilities().anonymous_tmp {
        match fs.create_anonymous(dir) {
            Ok(mut f) => {
                let mut r = write_all(fs, &mut f, data);
                if r.is_ok() {
                    r = settle(fs, &mut f);
                }
                if r.is_ok() {
                    r = fs.link_anonymous(&f, dir, name);
                }
                // Named (or not at all): closing cannot lose what the flush made durable.
                let closed = fs.close(f);
                return match (r, closed) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Err(e)) => {
                        let _ = fs.unlink(dir, name);
                        Err(e)
                    }
                    (Ok(()), Ok(())) => Ok(()),
                };
            }
            // This directory cannot hold unnamed files: create it by name.
            Err(ErrorKind::Unsupported) => {}
            Err(e) => return Err(e),
        }
    }
    let mut f = fs.create(dir, name, true)?;
    let mut r = write_all(fs, &mut f, data);
    if r.is_ok() {
        r = settle(fs, &mut f);
    }
    let closed = fs.close(f);
    let r = r.and(closed);
    if r.is_err() {
        let _ = fs.unlink(dir, name);
    }
    r
}

/// The driver's slots for what a machine keeps open between operations: its one open file
/// and its one open listing.
pub struct Slots<F: Fs + ?Sized> {
    /// The open file.
    pub file: Option<F::File>,
    /// The open listing.
    pub stream: Option<F::DirStream>,
    /// The listing opened inside it ([`Op::OpenFolderDir`]), which `NextEntry` and
    /// `CloseDir` address while it is open.
    pub inner: Option<F::DirStream>,
}

impl<F: Fs + ?Sized> Default for Slots<F> {
    fn default() -> Self {
        Slots {
            file: None,
            stream: None,
            inner: None,
        }
    }
}

/// Performs one [`Op`] on `fs`. `slots` holds the machine's open file and listing;
/// `WriteMessage` streams from `source` through `buf`. Returns the result and how many bytes
/// at the start of `buf` are to be fed with it: what `Read` read, or the name `NextEntry`
/// found (give `buf` at least [`NAME_MAX`](crate::dir::NAME_MAX) bytes).
pub fn perform<F, E, R>(
    fs: &mut F,
    env: &mut E,
    slots: &mut Slots<F>,
    op: Op<'_>,
    source: &mut R,
    buf: &mut [u8],
) -> (OpResult, usize)
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
{
    fn opened<F: Fs + ?Sized>(
        fs: &F,
        file: &mut Option<F::File>,
        created: Result<F::File, ErrorKind>,
    ) -> OpResult {
        match created {
            Ok(f) => {
                let id = fs.file_id(&f);
                *file = Some(f);
                OpResult::Created { id }
            }
            Err(e) => OpResult::Err(e),
        }
    }
    fn unit(r: Result<(), ErrorKind>) -> OpResult {
        match r {
            Ok(()) => OpResult::Done,
            Err(e) => OpResult::Err(e),
        }
    }
    let file = &mut slots.file;
    let r = match op {
        Op::CreateExclusive { dir, name } | Op::CreateTruncate { dir, name } => {
            let exclusive = matches!(op, Op::CreateExclusive { .. });
            let created = fs.create(dir, name, exclusive);
            opened(fs, file, created)
        }
        Op::CreateAnonymous { dir } => {
            let created = fs.create_anonymous(dir);
            opened(fs, file, created)
        }
        Op::WriteMessage => match file.as_mut() {
            Some(f) => write_message(fs, f, source, buf),
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::SyncFile => match file.as_mut() {
            Some(f) => unit(fs.sync_file(f)),
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::WriteBack => match file.as_mut() {
            Some(f) => unit(fs.write_back(f)),
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::CloseFile => match file.take() {
            Some(f) => unit(fs.close(f)),
            None => OpResult::Done,
        },
        Op::LinkAnonymous { dir, name } => match file.as_ref() {
            Some(f) => unit(fs.link_anonymous(f, dir, name)),
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::Link { from, to } => unit(fs.link(from, to)),
        Op::Rename {
            from,
            to,
            noreplace,
        } => unit(fs.rename(from, to, noreplace)),
        Op::Unlink { dir, name } => unit(fs.unlink(dir, name)),
        Op::Stat { dir, name } => match fs.stat(dir, name) {
            Ok(s) => OpResult::Stat(s),
            Err(e) => OpResult::Err(e),
        },
        Op::SyncDir { dir } => unit(fs.sync_dir(dir)),
        Op::SyncAll => unit(fs.sync_all()),
        Op::Write { data } => match file.as_mut() {
            Some(f) => unit(write_all(fs, f, data)),
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::Sleep { millis } => {
            env.sleep(millis);
            OpResult::Done
        }
        Op::WriteFile {
            dir,
            name,
            data,
            persist,
            anonymous,
        } => unit(write_file(fs, dir, name, data, (persist, anonymous))),
        Op::Append {
            dir,
            name,
            data,
            persist,
        } => unit(fs.append(dir, name, data, persist)),
        Op::Read { dir, name } => match fs.read_file(dir, name, buf) {
            Ok(n) => return (OpResult::Read(n.min(buf.len())), n.min(buf.len())),
            Err(e) => OpResult::Err(e),
        },
        Op::OpenDir { dir } => match fs.open_dir(dir) {
            Ok(s) => {
                slots.stream = Some(s);
                OpResult::Done
            }
            Err(e) => OpResult::Err(e),
        },
        Op::StatListed { name } => match slots.inner.as_ref().or(slots.stream.as_ref()) {
            Some(s) => match fs.stat_listed(s, name) {
                Ok(s) => OpResult::Stat(s),
                Err(e) => OpResult::Err(e),
            },
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::NextEntry => match slots.inner.as_mut().or(slots.stream.as_mut()) {
            Some(s) => {
                let mut name = EntryName::new();
                match fs.read_dir(s, &mut name) {
                    Ok(true) => {
                        let n = name.len().min(buf.len());
                        buf[..n].copy_from_slice(&name[..n]);
                        return (OpResult::Entry, n);
                    }
                    Ok(false) => OpResult::End,
                    Err(e) => OpResult::Err(e),
                }
            }
            None => OpResult::Err(ErrorKind::Io),
        },
        Op::OpenFolderDir { base, folder, dir } => match fs.open_folder_dir(base, folder, dir) {
            Ok(s) => {
                slots.inner = Some(s);
                OpResult::Done
            }
            Err(e) => OpResult::Err(e),
        },
        Op::CloseDir => {
            if slots.inner.take().is_none() {
                slots.stream = None;
            }
            OpResult::Done
        }
        Op::SetMtime { secs } => match file.as_ref() {
            Some(f) => unit(fs.set_mtime(f, secs)),
            None => OpResult::Err(ErrorKind::Io),
        },
    };
    (r, 0)
}

#[cfg(test)]
mod crlf_tests {
    use super::CrlfSize;

    fn crlf(chunks: &[&[u8]]) -> u64 {
        let mut c = CrlfSize::default();
        for ch in chunks {
            c.feed(ch);
        }
        c.size()
    }

    /// The size IMAP serves: a bare LF counts two bytes, a CRLF two, in any chunking.
    #[test]
    fn crlf_size_in_any_chunking() {
        assert_eq!(crlf(&[b"a\nb\n"]), 6);
        assert_eq!(crlf(&[b"a\r\nb\r\n"]), 6);
        assert_eq!(crlf(&[b"a\r", b"\nb\n"]), 6);
        assert_eq!(crlf(&[b"\n\n", b"\n"]), 6);
        assert_eq!(crlf(&[b"no newline"]), 10);
        assert_eq!(crlf(&[b"\r\r\n"]), 3);
        assert_eq!(crlf(&[]), 0);
    }

    /// The block-wise count equals the byte-at-a-time definition, for inputs made of `\r`,
    /// `\n` and `x` (runs longer than a 255-pair block included) cut at random points.
    #[test]
    fn crlf_size_matches_the_byte_loop() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let len = (next() % 2000) as usize;
            let mut buf = [0u8; 2000];
            for b in &mut buf[..len] {
                *b = match next() % (3 + round % 5) {
                    0 => b'\r',
                    1 | 3 | 5 => b'\n',
                    _ => b'x',
                };
            }
            let data = &buf[..len];
            let mut want = 0u64;
            let mut prev = 0u8;
            for &b in data {
                want += 1 + u64::from(b == b'\n' && prev != b'\r');
                prev = b;
            }
            let mut c = CrlfSize::default();
            let mut rest = data;
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len().min(700));
                c.feed(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(c.size(), want, "round {round}");
        }
    }
}
