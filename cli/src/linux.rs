//! The Linux filesystem adapter: [`LinuxFs`] implements the core's [`Fs`] with the openat
//! family through rustix. The maildir and its tmp/, new/ and cur/ are opened once,
//! `O_DIRECTORY|O_NOFOLLOW`, and every later operation is relative to those held descriptors,
//! so replacing a subdirectory with a symbolic link mid-delivery cannot redirect anything.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use mdeliver_core::fs::{read_to_fill, write_record, EntryName, Persist, Stat};
use mdeliver_core::machine::trust::{self, Choice};
use mdeliver_core::{Capabilities, Dir, ErrorKind, Fs, Strategy};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

/// Which system call an errno came from: the same errno means different things per call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `linkat`: `EPERM` means the filesystem has no hard links.
    Link,
    /// `renameat2(RENAME_NOREPLACE)`: `EINVAL`/`ENOSYS` mean the flag is unsupported.
    RenameNoReplace,
    /// `openat(O_TMPFILE)`: `EISDIR`/`EINVAL` mean the kernel or filesystem lacks it.
    TmpFile,
    /// Anything else.
    Other,
}

/// The kind of a std I/O error (one that carries no errno is [`ErrorKind::Io`]).
pub fn io_error_kind(e: &std::io::Error) -> ErrorKind {
    e.raw_os_error().map_or(ErrorKind::Io, |n| {
        error_kind(Errno::from_raw_os_error(n), Call::Other)
    })
}

/// Names the open file `fd` as `name` in the directory `to` (`linkat` with `AT_EMPTY_PATH`;
/// it needs `CAP_DAC_READ_SEARCH` on kernels before 6.10, so a refusal retries through the
/// `/proc` magic link, which does the same without it). Never replaces: a taken name is
/// `EEXIST`.
pub fn link_fd(fd: BorrowedFd<'_>, to: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    match rfs::linkat(fd, "", to, name, AtFlags::EMPTY_PATH) {
        Err(Errno::NOENT | Errno::PERM) => {
            let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rfs::linkat(CWD, proc.as_str(), to, name, AtFlags::SYMLINK_FOLLOW)
        }
        r => r,
    }
}

/// The one errno → [`ErrorKind`] mapping of the Linux adapter.
pub fn error_kind(e: Errno, call: Call) -> ErrorKind {
    let unsupported_call = matches!(call, Call::RenameNoReplace | Call::TmpFile);
    match e {
        Errno::EXIST => ErrorKind::Exists,
        Errno::NOENT => ErrorKind::NotFound,
        Errno::NOSPC => ErrorKind::NoSpace,
        Errno::DQUOT => ErrorKind::Quota,
        Errno::ACCESS => ErrorKind::Permission,
        Errno::PERM if call == Call::Link => ErrorKind::Unsupported,
        Errno::PERM => ErrorKind::Permission,
        Errno::ROFS => ErrorKind::ReadOnly,
        Errno::INTR => ErrorKind::Interrupted,
        Errno::OPNOTSUPP => ErrorKind::Unsupported,
        Errno::INVAL | Errno::NOSYS if unsupported_call => ErrorKind::Unsupported,
        Errno::ISDIR if call == Call::TmpFile => ErrorKind::Unsupported,
        Errno::LOOP | Errno::NOTDIR => ErrorKind::NotDirectory,
        Errno::NAMETOOLONG => ErrorKind::NameTooLong,
        Errno::MFILE | Errno::NFILE | Errno::NOMEM => ErrorKind::Resources,
        Errno::XDEV => ErrorKind::CrossDevice,
        _ => ErrorKind::Io,
    }
}

fn other(e: Errno) -> ErrorKind {
    error_kind(e, Call::Other)
}

/// Writes the file's dirty pages to the device and waits for them (`sync_file_range`), with no
/// cache flush or journal commit: on ext4 the next commit makes them durable.
fn write_back_fd(fd: &impl AsFd) -> Result<(), ErrorKind> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a system call on a descriptor the caller owns, with no pointers.
    if unsafe { libc::sync_file_range(fd.as_fd().as_raw_fd(), 0, 0, flags) } == 0 {
        Ok(())
    } else {
        Err(other(
            Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO),
        ))
    }
}

/// What the core asks of a `stat`.
fn stat_of(s: rfs::Stat) -> Stat {
    Stat {
        nlink: s.st_nlink,
        size: s.st_size as u64,
        mtime: s.st_mtime.max(0) as u64,
        regular: FileType::from_raw_mode(s.st_mode) == FileType::RegularFile,
    }
}

/// Capabilities switched off by hand (`MDELIVER_DISABLE`), to force fallback publish paths in
/// tests and diagnostics. The adapter then refuses those operations as unsupported.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Disabled {
    /// No `O_TMPFILE`.
    pub anonymous_tmp: bool,
    /// No `renameat2(RENAME_NOREPLACE)`.
    pub rename_noreplace: bool,
    /// No `linkat`.
    pub hard_links: bool,
    /// No write-back before one commit on ext4 (`sync_file_range`): the file is flushed on
    /// its own before it is named, as everywhere else.
    pub ordered_commit: bool,
}

impl Disabled {
    /// The environment variable holding the comma-separated list.
    pub const VAR: &'static str = "MDELIVER_DISABLE";

    /// Every word [`Disabled::parse`] knows, as an error lists them.
    pub const KNOWN: &'static str = "anonymous-tmp, rename-noreplace, hard-links, ordered-commit";

    /// Parses `anonymous-tmp,rename-noreplace,hard-links,ordered-commit` (any subset, any
    /// order; empty is fine). Returns the unknown word on error.
    pub fn parse(list: &str) -> Result<Disabled, String> {
        let mut d = Disabled::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "anonymous-tmp" => d.anonymous_tmp = true,
                "rename-noreplace" => d.rename_noreplace = true,
                "hard-links" => d.hard_links = true,
                "ordered-commit" => d.ordered_commit = true,
                other => return Err(other.to_owned()),
            }
        }
        Ok(d)
    }

    /// Reads [`Disabled::VAR`] (unset: nothing disabled); the error is said to a person.
    pub fn from_env() -> Result<Disabled, String> {
        let list = std::env::var_os(Disabled::VAR).unwrap_or_default();
        Disabled::parse(&list.to_string_lossy()).map_err(|word| {
            format!(
                "{}: unknown feature '{word}' (known: {})",
                Disabled::VAR,
                Disabled::KNOWN
            )
        })
    }
}

/// `MDELIVER_TEST_STRATEGY=exclusive|locked`, a testing and diagnostic knob: the strategy to
/// use whatever the filesystem (the multi-host harness runs both on the same filesystem).
/// Never set it in production.
pub const STRATEGY_VAR: &str = "MDELIVER_TEST_STRATEGY";

/// `MDELIVER_TEST_LOCK_STALE=SECS`, a testing knob: the age after which the `Locked`
/// strategy's maildir lock counts as abandoned, instead of 300 s, so a test can kill a holder
/// with SIGKILL and go on. Never set it in production.
pub const LOCK_STALE_VAR: &str = "MDELIVER_TEST_LOCK_STALE";

/// The strategy knobs as the environment sets them: [`STRATEGY_VAR`] and [`LOCK_STALE_VAR`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StrategyKnobs {
    /// The strategy forced whatever the filesystem.
    pub strategy: Option<Strategy>,
    /// The lock's age limit in seconds, instead of the core's.
    pub lock_stale_secs: Option<u64>,
}

impl StrategyKnobs {
    /// Reads both variables; the error says which one is wrong and what it takes.
    pub fn from_env() -> Result<StrategyKnobs, String> {
        let strategy = match std::env::var_os(STRATEGY_VAR) {
            None => None,
            Some(v) => Some(parse_strategy(&v.to_string_lossy()).map_err(|word| {
                format!("{STRATEGY_VAR}: unknown strategy '{word}' (known: exclusive, locked)")
            })?),
        };
        let lock_stale_secs = match std::env::var_os(LOCK_STALE_VAR) {
            None => None,
            Some(v) => Some(v.to_string_lossy().trim().parse().map_err(|_| {
                format!(
                    "{LOCK_STALE_VAR}: '{}' is not a number of seconds",
                    v.to_string_lossy()
                )
            })?),
        };
        Ok(StrategyKnobs {
            strategy,
            lock_stale_secs,
        })
    }
}

/// Parses the value of [`STRATEGY_VAR`]; the error is the unknown word.
pub fn parse_strategy(word: &str) -> Result<Strategy, String> {
    match word.trim() {
        "exclusive" => Ok(Strategy::Exclusive),
        "locked" => Ok(Strategy::Locked),
        other => Err(other.to_owned()),
    }
}

/// A filesystem type as `statfs` reports it (`f_type`), and whether it is reached over a
/// network (or through a FUSE daemon, which may be): there exclusive create and link replies
/// cannot be trusted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FsType {
    /// `f_type`.
    pub magic: u64,
    /// A short name for reports (`unknown` when not in the table).
    pub name: &'static str,
    /// Remote, clustered behind a daemon, or unknown.
    pub network: bool,
}

/// ext4's `f_type` (also ext2 and ext3 mounted by the ext4 driver).
const EXT4_MAGIC: u64 = 0xEF53;

/// Whether the ext4 filesystem on device `dev` has a journal. Without one (`mkfs.ext4 -O
/// ^has_journal`, an ext2 filesystem) no commit orders a name after the data written back
/// before it: the directory's block can reach the disk first. The kernel lists a journal as
/// `/proc/fs/jbd2/<device>-8` (8: the journal's inode), and the device's name is the last
/// part of the target of `/sys/dev/block/<major>:<minor>`. Anything unreadable counts as no
/// journal, the safe answer (each file is then flushed by itself). Remembered for the LMTP
/// server, which opens a maildir for every message, per device and filesystem id (`f_fsid`,
/// from ext4's UUID), so that another filesystem mounted later on the same device is probed
/// again.
fn ext4_journaled(dev: u64, fsid: [i32; 2]) -> bool {
    type Seen = Vec<((u64, [i32; 2]), bool)>;
    static SEEN: std::sync::Mutex<Seen> = std::sync::Mutex::new(Vec::new());
    let key = (dev, fsid);
    let seen = |s: &Seen| s.iter().find(|(k, _)| *k == key).map(|(_, j)| *j);
    if let Some(j) = SEEN.lock().ok().and_then(|s| seen(&s)) {
        return j;
    }
    let (major, minor) = (rfs::major(dev), rfs::minor(dev));
    let journaled = rfs::readlinkat(CWD, format!("/sys/dev/block/{major}:{minor}"), Vec::new())
        .is_ok_and(|target| {
            let name = target
                .to_bytes()
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or_default();
            let jbd2 = format!("/proc/fs/jbd2/{}-8", String::from_utf8_lossy(name));
            !name.is_empty()
                && rfs::accessat(CWD, jbd2, rfs::Access::EXISTS, AtFlags::empty()).is_ok()
        });
    if let Ok(mut s) = SEEN.lock() {
        s.push((key, journaled));
    }
    journaled
}

/// Known `f_type` values (linux/magic.h and the filesystems' own headers).
const FS_TYPES: [(u64, &str, bool); 28] = [
    (0xEF53, "ext4", false),
    (0x5846_5342, "xfs", false),
    (0x9123_683E, "btrfs", false),
    (0x0102_1994, "tmpfs", false),
    (0x8584_58F6, "ramfs", false),
    (0x2FC1_2FC1, "zfs", false),
    (0xF2F5_2010, "f2fs", false),
    (0x794C_7630, "overlayfs", false),
    (0xCA45_1A4E, "bcachefs", false),
    (0x3434, "nilfs2", false),
    (0x3153_464A, "jfs", false),
    (0x5265_4973, "reiserfs", false),
    (0x4D44, "vfat", false),
    (0x2011_BAB0, "exfat", false),
    (0x5346_544E, "ntfs", false),
    (0xF15F, "ecryptfs", false),
    (0x0116_1970, "gfs2", false),
    (0x7461_636F, "ocfs2", false),
    (0x6969, "nfs", true),
    (0x6573_5546, "fuse", true),
    (0xFF53_4D42, "cifs", true),
    (0xFE53_4D42, "smb2", true),
    (0x517B, "smb", true),
    (0x00C3_6400, "ceph", true),
    (0x5346_414F, "afs", true),
    (0x6B41_4653, "afs", true),
    (0x0102_1997, "9p", true),
    (0x0BD0_0BD0, "lustre", true),
];

impl FsType {
    /// The type of `magic`. An unknown type counts as a network one: taking the lock costs a
    /// few system calls, trusting a reply that lies costs mail.
    pub fn of(magic: u64) -> FsType {
        let (name, network) = FS_TYPES
            .iter()
            .find(|t| t.0 == magic)
            .map_or(("unknown", true), |t| (t.1, t.2));
        FsType {
            magic,
            name,
            network,
        }
    }
}

/// What probing a feature found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It worked.
    Works,
    /// Refused with this errno.
    Refused(Errno),
    /// Switched off by `MDELIVER_DISABLE`.
    Disabled,
    /// Not probed (not needed to choose), or the probe met an unrelated error.
    Untried,
}

/// Reads the answer of `renameat2(RENAME_NOREPLACE)` onto a name that does not exist: only a
/// success means support. GlusterFS, MooseFS and libfuse daemons that ignore the flag answer
/// `EINVAL` here but `EEXIST` when the target exists, so a probe onto an existing name would
/// wrongly see support. An `EEXIST` for a missing name is a lie too.
pub fn rename_probe(r: Result<(), Errno>) -> Probe {
    match r {
        Ok(()) => Probe::Works,
        Err(e) => Probe::Refused(e),
    }
}

/// What the adapter learned about the filesystem of a maildir, and what was chosen from it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The filesystem type.
    pub fs: FsType,
    /// `O_TMPFILE` in tmp/.
    pub tmpfile: Probe,
    /// `renameat2(RENAME_NOREPLACE)` onto a missing name in tmp/.
    pub rename_noreplace: Probe,
    /// The core's choice.
    pub choice: Choice,
}

impl Observed {
    /// Whether `-vv` should mention the choice: anything but the default strategy on a
    /// filesystem known to be local.
    pub fn worth_reporting(&self) -> bool {
        self.fs.network || self.choice.strategy != Strategy::Exclusive
    }

    /// One line for `-vv`: the filesystem, the probes, the strategy and why.
    pub fn describe(&self) -> String {
        let fs = if self.fs.name == "unknown" {
            format!("unknown filesystem type {:#x}", self.fs.magic)
        } else {
            format!(
                "{} filesystem{}",
                self.fs.name,
                if self.fs.network { " (network)" } else { "" }
            )
        };
        let probe = |what: &str, p: Probe, how: &str| match p {
            Probe::Works => Some(format!("{what} works")),
            Probe::Refused(e) => Some(format!("{what} refused ({}{how})", errno_name(e))),
            Probe::Disabled => Some(format!("{what} disabled")),
            Probe::Untried => None,
        };
        let mut parts = vec![fs];
        parts.extend(probe("O_TMPFILE", self.tmpfile, ""));
        parts.extend(probe(
            "rename-noreplace",
            self.rename_noreplace,
            " on a missing name",
        ));
        let strategy = match self.choice.strategy {
            Strategy::Locked => "locked",
            _ => "exclusive",
        };
        format!(
            "{}; strategy {strategy} with {}: {}",
            parts.join(", "),
            self.choice.publish().as_str(),
            self.choice.reason.as_str()
        )
    }
}

/// The symbolic name of the errnos a probe meets.
fn errno_name(e: Errno) -> String {
    let known = [
        (Errno::INVAL, "EINVAL"),
        (Errno::OPNOTSUPP, "EOPNOTSUPP"),
        (Errno::NOSYS, "ENOSYS"),
        (Errno::ISDIR, "EISDIR"),
        (Errno::EXIST, "EEXIST"),
        (Errno::PERM, "EPERM"),
        (Errno::IO, "EIO"),
    ];
    known
        .iter()
        .find(|k| k.0 == e)
        .map_or_else(|| format!("errno {}", e.raw_os_error()), |k| k.1.to_owned())
}

/// How to open a maildir.
#[derive(Copy, Clone, Debug, Default)]
pub struct OpenOptions {
    /// Create the maildir and its subdirectories (mode 0700) where missing.
    pub create: bool,
    /// fsync the parent directories of anything created.
    pub sync: bool,
    /// Capabilities to pretend are missing.
    pub disabled: Disabled,
    /// Open message files readable and keep the last one open after `close`, so the driver
    /// can copy the delivered message into further maildirs without going by name.
    pub keep_readable: bool,
    /// The path is a Maildir++ folder inside a maildir: a symbolic link there is refused like
    /// one at tmp/, new/ or cur/. Otherwise the path is a maildir root, which may be a symbolic
    /// link (common for `~/Maildir`, and harmless: everything inside is opened relative to the
    /// directory it resolves to, never following another link).
    pub folder: bool,
    /// With `create`, also create the missing directories above the maildir
    /// ([`make_parents`]).
    pub create_parents: bool,
    /// The strategy to use whatever the filesystem ([`STRATEGY_VAR`]).
    pub strategy: Option<Strategy>,
    /// Probe rename-noreplace on a network filesystem (deliveries, for `-vv`; the readers'
    /// subcommands fall back at their first rename instead of writing a probe into tmp/).
    pub probe_rename: bool,
}

/// An open maildir on a Linux filesystem.
#[derive(Debug)]
pub struct LinuxFs {
    root: OwnedFd,
    /// The top maildir (`..`) when this maildir is a Maildir++ folder: [`Dir::Top`], where the
    /// tree's one `maildirsize` lives.
    top: Option<OwnedFd>,
    /// The top maildir is on the maildir's own filesystem, so the journal that commits a
    /// folder's new/ commits its `maildirsize` too (an append there may be written back).
    top_same_fs: bool,
    subdirs: [OwnedFd; 3],
    caps: Capabilities,
    observed: Observed,
    disabled: Disabled,
    keep_readable: bool,
    /// The `O_TMPFILE` opened by the capability probe, handed out by the first
    /// `create_anonymous` so the probe costs no extra system call.
    spare_tmpfile: Option<OwnedFd>,
    /// The maildir's group when the maildir is group-writable (a shared maildir): every file
    /// created in it gets mode 0660 and this group, as Dovecot does.
    shared_gid: Option<u32>,
    /// The last message file closed, when `keep_readable`.
    kept: Vec<OwnedFd>,
    /// The errno of the last refused `O_TMPFILE` (for the report).
    last_tmpfile_errno: Errno,
    /// Whether `syncfs` reports write-back errors here (for [`Fs::sync_all`]), once known.
    syncfs_reports_errors: Option<bool>,
}

/// An open message file.
#[derive(Debug)]
pub struct File(pub(crate) OwnedFd);

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether this kernel's `syncfs` reports write-back errors: the core decides from the release
/// ([`syncfs_reports_errors`](mdeliver_core::lmtp::commit::syncfs_reports_errors)).
fn syncfs_reports_errors() -> bool {
    let uname = rustix::system::uname();
    mdeliver_core::lmtp::commit::syncfs_reports_errors(&uname.release().to_string_lossy())
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);
const MODE_DIR: Mode = Mode::RWXU;
const MODE_FILE: Mode = Mode::RUSR.union(Mode::WUSR);
const MODE_SHARED: Mode = MODE_FILE.union(Mode::RGRP).union(Mode::WGRP);

/// The group of a maildir whose root (`stat`) is group-writable.
fn shared_gid(stat: &Option<rfs::Stat>) -> Option<u32> {
    stat.as_ref()
        .filter(|s| s.st_mode & 0o020 != 0)
        .map(|s| s.st_gid)
}

fn open_dir_at(dirfd: BorrowedFd<'_>, name: &Path, follow: bool) -> Result<OwnedFd, ErrorKind> {
    let flags = if follow {
        DIR_FLAGS.difference(OFlags::NOFOLLOW)
    } else {
        DIR_FLAGS
    };
    rfs::openat(dirfd, name, flags, Mode::empty()).map_err(other)
}

/// Opens the directory `name`; with `create`, makes it (mode 0700) if missing and notes that in
/// `created`. Opening first keeps the common case (it exists) at one system call; a racing
/// creator's `EEXIST` is fine.
fn open_dir(
    dirfd: BorrowedFd<'_>,
    name: &Path,
    (create, follow): (bool, bool),
    created: &mut bool,
) -> Result<OwnedFd, ErrorKind> {
    match open_dir_at(dirfd, name, follow) {
        Err(ErrorKind::NotFound) if create => {
            match rfs::mkdirat(dirfd, name, MODE_DIR) {
                Ok(()) => *created = true,
                Err(Errno::EXIST) => {}
                Err(e) => return Err(other(e)),
            }
            open_dir_at(dirfd, name, follow)
        }
        r => r,
    }
}

/// Creates the missing directories above `path` (mode 0700), walking from `/` (or the working
/// directory) one component at a time with `openat(O_DIRECTORY|O_NOFOLLOW)` and `mkdirat`, so
/// a symbolic link anywhere on the way is refused ([`ErrorKind::NotDirectory`]) rather than
/// followed, even one swapped in while we walk. With `sync`, each directory that gained an
/// entry is flushed.
fn make_parents(path: &Path, sync: bool) -> Result<(), ErrorKind> {
    use std::path::Component;
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let start = if path.is_absolute() { "/" } else { "." };
    let mut dir = rfs::openat(
        CWD,
        start,
        DIR_FLAGS.difference(OFlags::NOFOLLOW),
        Mode::empty(),
    )
    .map_err(other)?;
    for comp in parent.components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::ParentDir => comp.as_os_str(),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        let mut created = false;
        let next = open_dir(dir.as_fd(), Path::new(name), (true, false), &mut created)?;
        if created && sync {
            rfs::fsync(&dir).map_err(other)?;
        }
        dir = next;
    }
    Ok(())
}

impl LinuxFs {
    /// Opens (and with `create`, first creates) the maildir at `path`. The error names the
    /// directory that failed (`Dir::Root` for the maildir itself).
    pub fn open(path: &Path, opts: OpenOptions) -> Result<LinuxFs, (ErrorKind, Dir)> {
        let root_err = |k| (k, Dir::Root);
        let mut created_root = false;
        if opts.create && opts.create_parents {
            make_parents(path, opts.sync).map_err(root_err)?;
        }
        let follow_root = !opts.folder;
        let root =
            open_dir(CWD, path, (opts.create, follow_root), &mut created_root).map_err(root_err)?;
        if created_root && opts.sync {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let pfd = rfs::openat(
                CWD,
                parent,
                OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| root_err(other(e)))?;
            rfs::fsync(&pfd).map_err(|e| root_err(other(e)))?;
        }
        let mut created = false;
        let mut open_sub = |d: Dir| {
            open_dir(
                root.as_fd(),
                Path::new(d.as_str()),
                (opts.create, false),
                &mut created,
            )
            .map_err(|k| (k, d))
        };
        let subdirs = [
            open_sub(Dir::Tmp)?,
            open_sub(Dir::New)?,
            open_sub(Dir::Cur)?,
        ];
        if created && opts.sync {
            rfs::fsync(&root).map_err(|e| root_err(other(e)))?;
        }
        let d = opts.disabled;
        let root_stat = rfs::fstat(&root).ok();
        let statfs = rfs::fstatfs(&root).ok();
        let fs_type = FsType::of(statfs.map_or(0, |s| s.f_type as u64));
        // SAFETY: `Fsid` is `fsid_t`, two C ints (`repr(C)`), whose field rustix keeps private.
        let fsid = statfs.map(|s| unsafe { std::mem::transmute::<rfs::Fsid, [i32; 2]>(s.f_fsid) });
        let observed_caps = Capabilities {
            anonymous_tmp: false,
            rename_noreplace: !d.rename_noreplace,
            hard_links: !d.hard_links,
            dir_sync: true,
            atomic_exclusive: !fs_type.network,
            // ext4's journal flushes the device's cache before each commit record, commits in
            // order, and no name is durable without a commit (see
            // `Capabilities::ordered_commit`); an ext4 without a journal promises none of it.
            ordered_commit: fs_type.magic == EXT4_MAGIC
                && !d.ordered_commit
                && root_stat
                    .zip(fsid)
                    .is_some_and(|(st, fsid)| ext4_journaled(st.st_dev, fsid)),
        };
        // A folder's quota is its top maildir's: held open as `..` of the folder itself, so it
        // is the directory the folder is in, whatever path led here.
        let top = if opts.folder {
            Some(open_dir_at(root.as_fd(), Path::new(".."), false).map_err(root_err)?)
        } else {
            None
        };
        let mut fs = LinuxFs {
            root,
            top_same_fs: match (&top, &root_stat) {
                (Some(t), Some(r)) => rfs::fstat(t).is_ok_and(|t| t.st_dev == r.st_dev),
                _ => false,
            },
            top,
            subdirs,
            caps: observed_caps,
            observed: Observed {
                fs: fs_type,
                tmpfile: Probe::Disabled,
                rename_noreplace: Probe::Disabled,
                choice: trust::choose(observed_caps, opts.strategy),
            },
            disabled: d,
            keep_readable: opts.keep_readable,
            spare_tmpfile: None,
            kept: Vec::new(),
            shared_gid: shared_gid(&root_stat),
            last_tmpfile_errno: Errno::OPNOTSUPP,
            syncfs_reports_errors: None,
        };
        // An anonymous file is only useful if it can be linked into place. Any answer but
        // "unsupported" (permission, read-only, no space) says nothing about the feature: the
        // delivery's own create will meet the same error and report it in its phase.
        if !d.anonymous_tmp && !d.hard_links {
            fs.observed.tmpfile = match fs.open_tmpfile(Dir::Tmp) {
                Ok(fd) => {
                    fs.spare_tmpfile = Some(fd);
                    fs.caps.anonymous_tmp = true;
                    Probe::Works
                }
                Err(ErrorKind::Unsupported) => Probe::Refused(fs.last_tmpfile_errno),
                Err(_) => {
                    fs.caps.anonymous_tmp = true;
                    Probe::Untried
                }
            };
        }
        // On a filesystem whose replies are not trusted, rename-noreplace is not used (see
        // mdeliver_core::trust), but it is probed all the same so `-vv` says what the
        // filesystem does. Locally the first publish finds out for free.
        if !d.rename_noreplace {
            fs.observed.rename_noreplace = if fs_type.network && opts.probe_rename {
                fs.probe_rename_noreplace()
            } else {
                Probe::Untried
            };
            if let Probe::Refused(_) = fs.observed.rename_noreplace {
                fs.caps.rename_noreplace = false;
            }
        }
        fs.observed.choice = trust::choose(fs.caps, opts.strategy);
        fs.caps = fs.observed.choice.caps;
        if !fs.caps.anonymous_tmp {
            fs.spare_tmpfile = None;
        }
        Ok(fs)
    }

    /// What was learned about the filesystem, and the strategy chosen from it.
    pub fn observed(&self) -> Observed {
        self.observed
    }

    /// Renames a fresh file in tmp/ onto a fresh missing name there with `RENAME_NOREPLACE`
    /// (see [`rename_probe`]) and removes what is left. A failure to make the probe's file
    /// leaves the feature untried (the delivery meets the same error).
    fn probe_rename_noreplace(&self) -> Probe {
        let mut random = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty());
        let base = format!(
            "mdeliver-probe.{}.{:016x}",
            rustix::process::getpid().as_raw_nonzero(),
            u64::from_ne_bytes(random)
        );
        let target = format!("{base}.renamed");
        let tmp = self.dirfd(Dir::Tmp);
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        crate::signals::before_named_file();
        if rfs::openat(tmp, base.as_str(), flags | OFlags::WRONLY, MODE_FILE).is_err() {
            return Probe::Untried;
        }
        let r = rfs::renameat_with(
            tmp,
            base.as_str(),
            tmp,
            target.as_str(),
            RenameFlags::NOREPLACE,
        );
        let probe = rename_probe(r);
        let left = if probe == Probe::Works {
            &target
        } else {
            &base
        };
        let _ = rfs::unlinkat(tmp, left.as_str(), AtFlags::empty());
        probe
    }

    /// The delivered message's file (only with `keep_readable`), for copying it elsewhere.
    /// Other small files are written and closed during a delivery too (a recalculated
    /// `maildirsize` in tmp/, a duplicate-index entry), so the file is picked by identity with
    /// the `published` name, else (nothing published: a dry run, a suppressed duplicate) by
    /// `size`, else the last one closed.
    pub fn take_kept(
        &mut self,
        published: Option<(Dir, &str)>,
        size: Option<u64>,
    ) -> Option<OwnedFd> {
        let kept = std::mem::take(&mut self.kept);
        let id = |fd: &OwnedFd| rfs::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino, s.st_size));
        if let Some((dir, name)) = published {
            if let Ok(s) = rfs::statat(self.dirfd(dir), name, AtFlags::SYMLINK_NOFOLLOW) {
                if let Some(i) = kept
                    .iter()
                    .position(|fd| id(fd).is_some_and(|k| (k.0, k.1) == (s.st_dev, s.st_ino)))
                {
                    return kept.into_iter().nth(i);
                }
            }
        }
        if let Some(size) = size {
            if let Some(i) = kept
                .iter()
                .rposition(|fd| id(fd).is_some_and(|k| k.2 as u64 == size))
            {
                return kept.into_iter().nth(i);
            }
        }
        kept.into_iter().next_back()
    }

    /// The held descriptor of `dir` (the LMTP server flushes it through its group commit).
    pub fn dirfd(&self, dir: Dir) -> BorrowedFd<'_> {
        match dir {
            Dir::Root => self.root.as_fd(),
            Dir::Tmp => self.subdirs[0].as_fd(),
            Dir::New => self.subdirs[1].as_fd(),
            Dir::Cur => self.subdirs[2].as_fd(),
            Dir::Top => self.top.as_ref().unwrap_or(&self.root).as_fd(),
        }
    }

    fn access_mode(&self) -> OFlags {
        if self.keep_readable {
            OFlags::RDWR
        } else {
            OFlags::WRONLY
        }
    }

    fn open_tmpfile(&mut self, dir: Dir) -> Result<OwnedFd, ErrorKind> {
        let flags = OFlags::TMPFILE | self.access_mode() | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dirfd(dir), ".", flags, MODE_FILE).map_err(|e| {
            self.last_tmpfile_errno = e;
            error_kind(e, Call::TmpFile)
        })?;
        self.share(&fd);
        Ok(fd)
    }

    /// In a shared maildir, gives a new file mode 0660 (whatever the umask) and the maildir's
    /// group. Best effort: a group the user is not a member of cannot be given (the file keeps
    /// the user's group, as with Dovecot).
    fn share(&self, fd: &OwnedFd) {
        if let Some(gid) = self.shared_gid {
            let _ = rfs::fchmod(fd, MODE_SHARED);
            if rustix::process::getegid().as_raw() != gid {
                let _ = rfs::fchown(fd, None, Some(rustix::fs::Gid::from_raw(gid)));
            }
        }
    }
}

impl Fs for LinuxFs {
    type File = File;
    type DirStream = rfs::Dir;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<File, ErrorKind> {
        let mut flags = OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | self.access_mode();
        flags |= if exclusive {
            OFlags::EXCL
        } else {
            OFlags::TRUNC
        };
        crate::signals::before_named_file();
        let fd = rfs::openat(self.dirfd(dir), name, flags, MODE_FILE).map_err(other)?;
        self.share(&fd);
        Ok(File(fd))
    }

    fn create_anonymous(&mut self, dir: Dir) -> Result<File, ErrorKind> {
        if self.disabled.anonymous_tmp {
            return Err(ErrorKind::Unsupported);
        }
        if dir == Dir::Tmp {
            if let Some(fd) = self.spare_tmpfile.take() {
                return Ok(File(fd));
            }
        }
        self.open_tmpfile(dir).map(File)
    }

    fn file_id(&self, file: &File) -> Option<(u64, u64)> {
        rfs::fstat(&file.0).ok().map(|s| (s.st_dev, s.st_ino))
    }

    fn write(&mut self, file: &mut File, buf: &[u8]) -> Result<usize, ErrorKind> {
        rustix::io::write(&file.0, buf).map_err(other)
    }

    fn sync_file(&mut self, file: &mut File) -> Result<(), ErrorKind> {
        // fdatasync also writes the metadata needed to read the data back (the size of this
        // new file); timestamps can wait.
        rfs::fdatasync(&file.0).map_err(other)
    }

    fn write_back(&mut self, file: &mut File) -> Result<(), ErrorKind> {
        if !self.caps.ordered_commit {
            return Err(ErrorKind::Unsupported);
        }
        write_back_fd(&file.0)
    }

    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        // Only an import's window calls this (a one-shot delivery flushes its one file: syncfs
        // would flush whatever else the filesystem holds).
        if !*self
            .syncfs_reports_errors
            .get_or_insert_with(syncfs_reports_errors)
        {
            return Err(ErrorKind::Unsupported);
        }
        // The tmp/ descriptor was opened before any message was written, so the error check
        // covers every write-back of this run.
        rfs::syncfs(&self.subdirs[0]).map_err(other)
    }

    fn close(&mut self, file: File) -> Result<(), ErrorKind> {
        if self.keep_readable {
            // A delivery closes a handful of files; keep them bounded all the same.
            if self.kept.len() == 8 {
                self.kept.remove(0);
            }
            self.kept.push(file.0);
        }
        Ok(())
    }

    fn link_anonymous(&mut self, file: &File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        if self.disabled.hard_links || self.disabled.anonymous_tmp {
            return Err(ErrorKind::Unsupported);
        }
        match link_fd(file.0.as_fd(), self.dirfd(dir), name) {
            // No /proc: this filesystem's anonymous files cannot be named here.
            Err(Errno::NOENT) => Err(ErrorKind::Unsupported),
            r => r.map_err(|e| error_kind(e, Call::Link)),
        }
    }

    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        if self.disabled.hard_links {
            return Err(ErrorKind::Unsupported);
        }
        rfs::linkat(
            self.dirfd(from.0),
            from.1,
            self.dirfd(to.0),
            to.1,
            AtFlags::empty(),
        )
        .map_err(|e| error_kind(e, Call::Link))
    }

    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        let (flags, call) = if noreplace {
            if self.disabled.rename_noreplace {
                return Err(ErrorKind::Unsupported);
            }
            (RenameFlags::NOREPLACE, Call::RenameNoReplace)
        } else {
            (RenameFlags::empty(), Call::Other)
        };
        rfs::renameat_with(self.dirfd(from.0), from.1, self.dirfd(to.0), to.1, flags)
            .map_err(|e| error_kind(e, call))
    }

    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        rfs::unlinkat(self.dirfd(dir), name, AtFlags::empty()).map_err(other)
    }

    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        // The subdirectories as held open (their mtimes drive quota recalculation), never
        // whatever the name points to now.
        let held = match (dir, name) {
            (Dir::Root, "tmp") => Some(Dir::Tmp),
            (Dir::Root, "new") => Some(Dir::New),
            (Dir::Root, "cur") => Some(Dir::Cur),
            _ => None,
        };
        match held {
            Some(d) => rfs::fstat(self.dirfd(d)),
            None => rfs::statat(self.dirfd(dir), name, AtFlags::SYMLINK_NOFOLLOW),
        }
        .map(stat_of)
        .map_err(other)
    }

    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        rfs::fsync(self.dirfd(dir)).map_err(other)
    }

    fn mkdir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        // The maildir and its subdirectories exist: `LinuxFs::open` created (with `create`)
        // and opened them all.
        Err(ErrorKind::Exists)
    }

    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        crate::testing::before_append(name, data);
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dirfd(dir), name, flags, Mode::empty()).map_err(other)?;
        write_record(data, |d| rustix::io::write(&fd, d).map_err(other))?;
        match p {
            Persist::Cache => Ok(()),
            // Written back only where the publish's directory flush commits it too: not in
            // a top maildir on another filesystem than this folder.
            Persist::WriteBack
                if self.caps.ordered_commit && (dir != Dir::Top || self.top_same_fs) =>
            {
                write_back_fd(&fd)
            }
            Persist::WriteBack | Persist::Flush => rfs::fdatasync(&fd).map_err(other),
        }
    }

    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dirfd(dir), name, flags, Mode::empty()).map_err(other)?;
        read_to_fill(buf, |b| rustix::io::read(&fd, b).map_err(other))
    }

    fn open_dir(&mut self, dir: Dir) -> Result<rfs::Dir, ErrorKind> {
        rfs::Dir::read_from(self.dirfd(dir)).map_err(other)
    }

    fn stat_listed(&mut self, stream: &rfs::Dir, name: &str) -> Result<Stat, ErrorKind> {
        let fd = stream.fd().map_err(other)?;
        rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(stat_of)
            .map_err(other)
    }

    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<rfs::Dir, ErrorKind> {
        let sub = Path::new(dir.as_str());
        let fd = if folder.is_empty() {
            if base == Dir::Root || self.top.is_none() {
                return self.open_dir(dir);
            }
            open_dir_at(self.dirfd(base), sub, false)?
        } else {
            let f = open_dir_at(
                self.dirfd(base),
                Path::new(OsStr::from_bytes(folder)),
                false,
            )?;
            open_dir_at(f.as_fd(), sub, false)?
        };
        rfs::Dir::new(fd).map_err(other)
    }

    fn set_mtime(&mut self, file: &File, secs: i64) -> Result<(), ErrorKind> {
        let t = rfs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = rfs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rfs::futimens(&file.0, &times).map_err(other)
    }

    fn read_dir(&mut self, stream: &mut rfs::Dir, out: &mut EntryName) -> Result<bool, ErrorKind> {
        loop {
            let entry = match stream.read() {
                None => return Ok(false),
                Some(Err(e)) => return Err(other(e)),
                Some(Ok(entry)) => entry,
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // Names are bytes: one that is not UTF-8 is listed like any other.
            out.clear();
            out.extend_from_slice(name)
                .map_err(|_| ErrorKind::NameTooLong)?;
            return Ok(true);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn errno_meaning_depends_on_the_call() {
        let cases = [
            (Errno::PERM, Call::Link, ErrorKind::Unsupported),
            (Errno::PERM, Call::Other, ErrorKind::Permission),
            (Errno::INVAL, Call::RenameNoReplace, ErrorKind::Unsupported),
            (Errno::NOSYS, Call::RenameNoReplace, ErrorKind::Unsupported),
            (Errno::INVAL, Call::TmpFile, ErrorKind::Unsupported),
            (Errno::ISDIR, Call::TmpFile, ErrorKind::Unsupported),
            (Errno::INVAL, Call::Other, ErrorKind::Io),
            (Errno::ISDIR, Call::Other, ErrorKind::Io),
            (Errno::OPNOTSUPP, Call::Other, ErrorKind::Unsupported),
        ];
        for (errno, call, kind) in cases {
            assert_eq!(error_kind(errno, call), kind, "{errno:?} from {call:?}");
        }
    }

    #[test]
    fn errno_classes() {
        let table = [
            (Errno::EXIST, ErrorKind::Exists),
            (Errno::NOENT, ErrorKind::NotFound),
            (Errno::NOSPC, ErrorKind::NoSpace),
            (Errno::DQUOT, ErrorKind::Quota),
            (Errno::ACCESS, ErrorKind::Permission),
            (Errno::ROFS, ErrorKind::ReadOnly),
            (Errno::INTR, ErrorKind::Interrupted),
            (Errno::LOOP, ErrorKind::NotDirectory),
            (Errno::NOTDIR, ErrorKind::NotDirectory),
            (Errno::NAMETOOLONG, ErrorKind::NameTooLong),
            (Errno::IO, ErrorKind::Io),
            (Errno::STALE, ErrorKind::Io),
            (Errno::MFILE, ErrorKind::Resources),
            (Errno::NFILE, ErrorKind::Resources),
            (Errno::NOMEM, ErrorKind::Resources),
            (Errno::XDEV, ErrorKind::CrossDevice),
        ];
        for (errno, kind) in table {
            for call in [
                Call::Link,
                Call::RenameNoReplace,
                Call::TmpFile,
                Call::Other,
            ] {
                assert_eq!(error_kind(errno, call), kind, "{errno:?} from {call:?}");
            }
        }
    }

    #[test]
    fn filesystem_types() {
        let cases = [
            (0xEF53, "ext4", false),
            (0x0102_1994, "tmpfs", false),
            (0x5846_5342, "xfs", false),
            (0x6969, "nfs", true),
            // GlusterFS, MooseFS, JuiceFS, sshfs, bindfs: every FUSE filesystem.
            (0x6573_5546, "fuse", true),
            (0xFF53_4D42, "cifs", true),
            (0x00C3_6400, "ceph", true),
            (0x1234_5678, "unknown", true),
        ];
        for (magic, name, network) in cases {
            let t = FsType::of(magic);
            assert_eq!((t.name, t.network), (name, network), "{magic:#x}");
        }
        let magics: Vec<u64> = FS_TYPES.iter().map(|t| t.0).collect();
        let mut unique = magics.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), magics.len(), "a magic listed twice");
    }

    #[test]
    fn only_a_rename_onto_a_missing_name_that_succeeds_is_support() {
        assert_eq!(rename_probe(Ok(())), Probe::Works);
        // GlusterFS/MooseFS/libfuse on a missing target; EEXIST there would be a lie too.
        for e in [
            Errno::INVAL,
            Errno::NOSYS,
            Errno::OPNOTSUPP,
            Errno::EXIST,
            Errno::IO,
        ] {
            assert_eq!(rename_probe(Err(e)), Probe::Refused(e));
        }
    }

    #[test]
    fn tmpfile_refusals_are_unsupported() {
        for e in [Errno::OPNOTSUPP, Errno::INVAL, Errno::ISDIR, Errno::NOSYS] {
            assert_eq!(
                error_kind(e, Call::TmpFile),
                ErrorKind::Unsupported,
                "{e:?}"
            );
        }
        // Not a refusal of the feature: the delivery's own create meets them and says so.
        for e in [Errno::NOSPC, Errno::ACCESS, Errno::ROFS, Errno::IO] {
            assert_ne!(
                error_kind(e, Call::TmpFile),
                ErrorKind::Unsupported,
                "{e:?}"
            );
        }
    }

    #[test]
    fn strategy_knob() {
        assert_eq!(parse_strategy("locked"), Ok(Strategy::Locked));
        assert_eq!(parse_strategy(" exclusive"), Ok(Strategy::Exclusive));
        assert_eq!(parse_strategy("classic"), Err("classic".to_owned()));
    }

    #[test]
    fn the_report_names_filesystem_probes_strategy_and_reason() {
        let caps = Capabilities {
            anonymous_tmp: false,
            rename_noreplace: false,
            atomic_exclusive: false,
            ..Capabilities::LINUX_LOCAL
        };
        let gluster = Observed {
            fs: FsType::of(0x6573_5546),
            tmpfile: Probe::Refused(Errno::OPNOTSUPP),
            rename_noreplace: Probe::Refused(Errno::INVAL),
            choice: trust::choose(caps, None),
        };
        assert!(gluster.worth_reporting());
        assert_eq!(
            gluster.describe(),
            "fuse filesystem (network), O_TMPFILE refused (EOPNOTSUPP), rename-noreplace \
             refused (EINVAL on a missing name); strategy locked with link-unlink: exclusive \
             create and link replies cannot be trusted, so deliveries take the maildir lock and \
             verify a link by its link count"
        );
        let local = Observed {
            fs: FsType::of(0xEF53),
            tmpfile: Probe::Works,
            rename_noreplace: Probe::Untried,
            choice: trust::choose(Capabilities::LINUX_LOCAL, None),
        };
        assert!(!local.worth_reporting());
        assert_eq!(
            local.describe(),
            "ext4 filesystem, O_TMPFILE works; strategy exclusive with anonymous-link: \
             exclusive create and link replies can be trusted"
        );
        let odd = Observed {
            fs: FsType::of(0xABCD),
            ..local
        };
        assert!(odd
            .describe()
            .starts_with("unknown filesystem type 0xabcd, "));
    }

    #[test]
    fn a_local_maildir_keeps_exclusive_and_probes_nothing_more() {
        let s = Scratch::new("local-choice");
        let fs = LinuxFs::open(&s.0, OpenOptions::default()).unwrap();
        let o = fs.observed();
        assert!(
            !o.fs.network,
            "{:?} (the unit tests need a local temp dir)",
            o.fs
        );
        assert_eq!(o.choice.strategy, Strategy::Exclusive);
        assert_eq!(o.rename_noreplace, Probe::Untried);
        assert_eq!(fs.capabilities(), o.choice.caps);
        assert!(fs.capabilities().atomic_exclusive);
        // Forced: the lock, and link + unlink.
        let forced = OpenOptions {
            strategy: Some(Strategy::Locked),
            ..OpenOptions::default()
        };
        let fs = LinuxFs::open(&s.0, forced).unwrap();
        assert_eq!(fs.observed().choice.strategy, Strategy::Locked);
        let caps = fs.capabilities();
        assert!(!caps.anonymous_tmp && !caps.rename_noreplace && caps.hard_links);
        assert_eq!(std::fs::read_dir(s.0.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn disable_list() {
        assert_eq!(Disabled::parse(""), Ok(Disabled::default()));
        assert_eq!(
            Disabled::parse(" hard-links, anonymous-tmp ,"),
            Ok(Disabled {
                anonymous_tmp: true,
                rename_noreplace: false,
                hard_links: true,
                ordered_commit: false,
            })
        );
        assert_eq!(
            Disabled::parse("rename-noreplace,fsync"),
            Err("fsync".to_owned())
        );
    }

    /// A fresh maildir under the system temp directory, removed on drop.
    pub(crate) struct Scratch(pub(crate) std::path::PathBuf);

    impl Scratch {
        pub(crate) fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "mdeliver-unit-{tag}-{}",
                rustix::process::getpid().as_raw_nonzero()
            ));
            let _ = std::fs::remove_dir_all(&p);
            for d in ["tmp", "new", "cur"] {
                std::fs::create_dir_all(p.join(d)).unwrap();
            }
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn operations_are_relative_to_the_held_directories() {
        let s = Scratch::new("ops");
        let mut fs = LinuxFs::open(&s.0, OpenOptions::default()).unwrap();
        let mut f = fs.create(Dir::Tmp, "a", true).unwrap();
        assert_eq!(fs.write(&mut f, b"hello").unwrap(), 5);
        assert!(fs.file_id(&f).is_some());
        fs.close(f).unwrap();
        assert_eq!(
            fs.create(Dir::Tmp, "a", true).unwrap_err(),
            ErrorKind::Exists
        );
        fs.link((Dir::Tmp, "a"), (Dir::New, "b")).unwrap();
        assert_eq!(
            fs.link((Dir::Tmp, "a"), (Dir::New, "b")),
            Err(ErrorKind::Exists)
        );
        let st = fs.stat(Dir::New, "b").unwrap();
        assert_eq!((st.nlink, st.size, st.regular), (2, 5, true));
        assert_eq!(
            fs.rename((Dir::Tmp, "a"), (Dir::New, "b"), true),
            Err(ErrorKind::Exists)
        );
        fs.unlink(Dir::Tmp, "a").unwrap();
        assert_eq!(fs.stat(Dir::Tmp, "a"), Err(ErrorKind::NotFound));
        fs.rename((Dir::New, "b"), (Dir::Cur, "b:2,S"), true)
            .unwrap();

        // The subdirectory is replaced by a symlink after opening: we keep using the original.
        let elsewhere = s.0.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::rename(s.0.join("cur"), s.0.join("cur.old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.0.join("cur")).unwrap();
        let mut listing = fs.open_dir(Dir::Cur).unwrap();
        let mut name = EntryName::new();
        let mut names = Vec::new();
        while fs.read_dir(&mut listing, &mut name).unwrap() {
            names.push(String::from_utf8_lossy(&name).into_owned());
        }
        assert_eq!(names, ["b:2,S"]);
        let f = fs.create(Dir::Cur, "c", true).unwrap();
        fs.close(f).unwrap();
        assert!(s.0.join("cur.old/c").exists());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(fs.mkdir(Dir::Cur), Err(ErrorKind::Exists));
    }

    #[test]
    fn files_are_never_created_through_a_symlink() {
        let s = Scratch::new("nofollow");
        let target = s.0.join("target");
        std::os::unix::fs::symlink(&target, s.0.join("tmp/x")).unwrap();
        let mut fs = LinuxFs::open(&s.0, OpenOptions::default()).unwrap();
        assert_eq!(
            fs.create(Dir::Tmp, "x", true).unwrap_err(),
            ErrorKind::Exists
        );
        assert_eq!(
            fs.create(Dir::Tmp, "x", false).unwrap_err(),
            ErrorKind::NotDirectory
        );
        assert!(!target.exists());
    }

    #[test]
    fn disabled_features_are_refused_and_not_reported() {
        let s = Scratch::new("disabled");
        let disabled = Disabled {
            anonymous_tmp: true,
            rename_noreplace: true,
            hard_links: true,
            ordered_commit: true,
        };
        let opts = OpenOptions {
            disabled,
            ..OpenOptions::default()
        };
        let mut fs = LinuxFs::open(&s.0, opts).unwrap();
        let caps = fs.capabilities();
        assert!(!caps.anonymous_tmp && !caps.rename_noreplace && !caps.hard_links);
        assert_eq!(
            fs.create_anonymous(Dir::Tmp).unwrap_err(),
            ErrorKind::Unsupported
        );
        let f = fs.create(Dir::Tmp, "a", true).unwrap();
        fs.close(f).unwrap();
        assert_eq!(
            fs.link((Dir::Tmp, "a"), (Dir::New, "a")),
            Err(ErrorKind::Unsupported)
        );
        assert_eq!(
            fs.rename((Dir::Tmp, "a"), (Dir::New, "a"), true),
            Err(ErrorKind::Unsupported)
        );
        fs.rename((Dir::Tmp, "a"), (Dir::New, "a"), false).unwrap();
    }
}
