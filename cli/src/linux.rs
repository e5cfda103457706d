//! The Linux filesystem adapter: [`LinuxFs`] implements the core's [`Fs`] with the openat
//! family through rustix. The maildir and its tmp/, new/ and cur/ are opened once,
//! `O_DIRECTORY|O_NOFOLLOW`, and every later operation is relative to those held descriptors,
//! so replacing a subdirectory with a symbolic link mid-delivery cannot redirect anything.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use mdeliver_core::fs::Stat;
use mdeliver_core::maildir::name::NameBuf;
use mdeliver_core::{Capabilities, Dir, ErrorKind, Fs};
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
        _ => ErrorKind::Io,
    }
}

fn other(e: Errno) -> ErrorKind {
    error_kind(e, Call::Other)
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
}

impl Disabled {
    /// The environment variable holding the comma-separated list.
    pub const VAR: &'static str = "MDELIVER_DISABLE";

    /// Parses `anonymous-tmp,rename-noreplace,hard-links` (any subset, any order; empty is
    /// fine). Returns the unknown word on error.
    pub fn parse(list: &str) -> Result<Disabled, String> {
        let mut d = Disabled::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "anonymous-tmp" => d.anonymous_tmp = true,
                "rename-noreplace" => d.rename_noreplace = true,
                "hard-links" => d.hard_links = true,
                other => return Err(other.to_owned()),
            }
        }
        Ok(d)
    }

    /// Reads [`Disabled::VAR`] (unset: nothing disabled); the error is said to a person.
    pub fn from_env() -> Result<Disabled, String> {
        let list = std::env::var_os(Disabled::VAR).unwrap_or_default();
        Disabled::parse(&list.to_string_lossy()).map_err(|word| {
            let known = "anonymous-tmp, rename-noreplace, hard-links";
            format!(
                "{}: unknown feature '{word}' (known: {known})",
                Disabled::VAR
            )
        })
    }
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
}

/// An open maildir on a Linux filesystem.
#[derive(Debug)]
pub struct LinuxFs {
    root: OwnedFd,
    subdirs: [OwnedFd; 3],
    caps: Capabilities,
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
    /// Whether `syncfs` reports write-back errors here (for [`Fs::sync_all`]), once known.
    syncfs_reports_errors: Option<bool>,
}

/// An open message file.
#[derive(Debug)]
pub struct File(OwnedFd);

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether this kernel's `syncfs` reports write-back errors (Linux 5.8 and later; before, it
/// answered 0 even when writing failed).
fn syncfs_reports_errors() -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (major, minor) = (next(), next());
    (major, minor) >= (5, 8)
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
        let mut fs = LinuxFs {
            root,
            subdirs,
            caps: Capabilities {
                anonymous_tmp: false,
                rename_noreplace: !d.rename_noreplace,
                hard_links: !d.hard_links,
                dir_sync: true,
                atomic_exclusive: true,
            },
            disabled: d,
            keep_readable: opts.keep_readable,
            spare_tmpfile: None,
            kept: Vec::new(),
            shared_gid: shared_gid(&root_stat),
            syncfs_reports_errors: None,
        };
        // An anonymous file is only useful if it can be linked into place. Any answer but
        // "unsupported" (permission, read-only, no space) says nothing about the feature: the
        // delivery's own create will meet the same error and report it in its phase.
        if !d.anonymous_tmp && !d.hard_links {
            match fs.open_tmpfile(Dir::Tmp) {
                Ok(fd) => {
                    fs.spare_tmpfile = Some(fd);
                    fs.caps.anonymous_tmp = true;
                }
                Err(ErrorKind::Unsupported) => {}
                Err(_) => fs.caps.anonymous_tmp = true,
            }
        }
        Ok(fs)
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
        }
    }

    fn access_mode(&self) -> OFlags {
        if self.keep_readable {
            OFlags::RDWR
        } else {
            OFlags::WRONLY
        }
    }

    fn open_tmpfile(&self, dir: Dir) -> Result<OwnedFd, ErrorKind> {
        let flags = OFlags::TMPFILE | self.access_mode() | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dirfd(dir), ".", flags, MODE_FILE)
            .map_err(|e| error_kind(e, Call::TmpFile))?;
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
        let to = self.dirfd(dir);
        match rfs::linkat(&file.0, "", to, name, AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH on kernels before 6.10; the /proc
            // magic link does the same without it.
            Err(Errno::NOENT | Errno::PERM) => {
                let proc = format!("/proc/self/fd/{}", file.0.as_raw_fd());
                match rfs::linkat(CWD, proc.as_str(), to, name, AtFlags::SYMLINK_FOLLOW) {
                    Ok(()) => Ok(()),
                    // No /proc: this filesystem's anonymous files cannot be named here.
                    Err(Errno::NOENT) => Err(ErrorKind::Unsupported),
                    Err(e) => Err(error_kind(e, Call::Link)),
                }
            }
            Err(e) => Err(error_kind(e, Call::Link)),
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
        let s = match held {
            Some(d) => rfs::fstat(self.dirfd(d)).map_err(other)?,
            None => rfs::statat(self.dirfd(dir), name, AtFlags::SYMLINK_NOFOLLOW).map_err(other)?,
        };
        Ok(Stat {
            nlink: s.st_nlink,
            size: s.st_size as u64,
            mtime: s.st_mtime.max(0) as u64,
            regular: FileType::from_raw_mode(s.st_mode) == FileType::RegularFile,
        })
    }

    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        rfs::fsync(self.dirfd(dir)).map_err(other)
    }

    fn mkdir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        // The maildir and its subdirectories exist: `LinuxFs::open` created (with `create`)
        // and opened them all.
        Err(ErrorKind::Exists)
    }

    fn append(&mut self, dir: Dir, name: &str, data: &[u8], sync: bool) -> Result<(), ErrorKind> {
        crate::testing::before_append(name, data);
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dirfd(dir), name, flags, Mode::empty()).map_err(other)?;
        // One write: O_APPEND places it atomically after every other writer's record.
        let n = loop {
            match rustix::io::write(&fd, data) {
                Err(Errno::INTR) => continue,
                r => break r.map_err(other)?,
            }
        };
        if n != data.len() {
            return Err(ErrorKind::Io);
        }
        if sync {
            rfs::fdatasync(&fd).map_err(other)?;
        }
        Ok(())
    }

    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dirfd(dir), name, flags, Mode::empty()).map_err(other)?;
        let mut n = 0;
        while n < buf.len() {
            match rustix::io::read(&fd, &mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(Errno::INTR) => {}
                Err(e) => return Err(other(e)),
            }
        }
        Ok(n)
    }

    fn open_dir(&mut self, dir: Dir) -> Result<rfs::Dir, ErrorKind> {
        rfs::Dir::read_from(self.dirfd(dir)).map_err(other)
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

    fn read_dir(&mut self, stream: &mut rfs::Dir, out: &mut NameBuf) -> Result<bool, ErrorKind> {
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
            let name = core::str::from_utf8(name).map_err(|_| ErrorKind::Data)?;
            out.clear();
            out.push_str(name).map_err(|_| ErrorKind::NameTooLong)?;
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn disable_list() {
        assert_eq!(Disabled::parse(""), Ok(Disabled::default()));
        assert_eq!(
            Disabled::parse(" hard-links, anonymous-tmp ,"),
            Ok(Disabled {
                anonymous_tmp: true,
                rename_noreplace: false,
                hard_links: true,
            })
        );
        assert_eq!(
            Disabled::parse("rename-noreplace,fsync"),
            Err("fsync".to_owned())
        );
    }

    /// A fresh maildir under the system temp directory, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
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
        let mut name = NameBuf::new();
        let mut names = Vec::new();
        while fs.read_dir(&mut listing, &mut name).unwrap() {
            names.push(name.as_str().to_owned());
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
