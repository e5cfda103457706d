//! `--folder NAME`: finds (and with `-c` creates) the Maildir++ subfolder of a maildir. The
//! name is translated and checked by the core ([`mdeliver_core::maildir::folder::folder`]), and the
//! creation procedure (staging copy in tmp/, no-replace rename, cleanup, flush order) is the
//! core's [`create_folder`]; this module only carries out its steps with openat-family calls
//! on directory descriptors opened `O_DIRECTORY|O_NOFOLLOW`.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use mdeliver_core::maildir::folder::{
    create_folder, FolderFailure, FolderTree, NameEncoding, Part, TreeDir,
};
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::ErrorKind;
use mdeliver_driver::folder_report::Resolved;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use crate::env::LinuxEnv;
use crate::linux::{error_kind, Call, LinuxFs, OpenOptions};

const DIR: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

fn kind(e: Errno) -> ErrorKind {
    error_kind(e, Call::Other)
}

/// The parent maildir, with its tmp/ and the staging directory opened as they are needed.
struct LinuxTree {
    root: OwnedFd,
    tmp: Option<OwnedFd>,
    staging: Option<(String, OwnedFd)>,
    /// `MDELIVER_DISABLE=rename-noreplace`: go straight to the plain-rename fallback.
    no_noreplace: bool,
    /// In a shared (group-writable) maildir: its group, and whether its root is set-group-ID.
    /// The folder's directories then get mode 0770 (2770 under a set-group-ID root) and the
    /// marker 0660, all with that group, as Dovecot makes them, so every member can deliver.
    shared: Option<(u32, bool)>,
}

/// The parent's tmp/, opened into `slot` the first time.
fn open_tmp<'a>(root: &OwnedFd, slot: &'a mut Option<OwnedFd>) -> Result<&'a OwnedFd, ErrorKind> {
    if slot.is_none() {
        *slot = Some(rfs::openat(root, "tmp", DIR, Mode::empty()).map_err(kind)?);
    }
    Ok(slot.as_ref().expect("just opened"))
}

impl LinuxTree {
    /// Gives what was just made as `name` in `at` the shared maildir's mode and group (see
    /// [`LinuxTree::shared`]); best effort, as for message files: a group the user is not in
    /// cannot be given.
    fn share(&self, at: &OwnedFd, name: &str, dir: bool) {
        let Some((gid, setgid)) = self.shared else {
            return;
        };
        let mode = match (dir, setgid) {
            (true, true) => 0o2770,
            (true, false) => 0o770,
            (false, _) => 0o660,
        };
        let none = AtFlags::SYMLINK_NOFOLLOW;
        let _ = rfs::chownat(at, name, None, Some(rustix::fs::Gid::from_raw(gid)), none);
        // After the chown, which may clear the set-group-ID bit.
        let _ = rfs::chmodat(at, name, Mode::from_raw_mode(mode), AtFlags::empty());
    }

    fn tmp(&mut self) -> Result<&OwnedFd, ErrorKind> {
        open_tmp(&self.root, &mut self.tmp)
    }

    fn staging(&mut self, name: &str) -> Result<&OwnedFd, ErrorKind> {
        if self.staging.as_ref().is_none_or(|(n, _)| n != name) {
            let fd = rfs::openat(self.tmp()?, name, DIR, Mode::empty()).map_err(kind)?;
            self.staging = Some((name.to_owned(), fd));
        }
        Ok(&self.staging.as_ref().expect("just opened").1)
    }
}

impl FolderTree for LinuxTree {
    fn folder_exists(&mut self, folder: &[u8]) -> Result<bool, ErrorKind> {
        match rfs::openat(&self.root, OsStr::from_bytes(folder), DIR, Mode::empty()) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(kind(e)),
        }
    }

    fn make_staging(&mut self, staging: &str) -> Result<(), ErrorKind> {
        crate::signals::before_named_file();
        let tmp = open_tmp(&self.root, &mut self.tmp)?;
        rfs::mkdirat(tmp, staging, Mode::RWXU).map_err(kind)?;
        self.share(self.tmp.as_ref().expect("opened"), staging, true);
        Ok(())
    }

    fn make_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind> {
        self.staging(staging)?;
        let st = &self.staging.as_ref().expect("just opened").1;
        match part {
            Part::Sub(_) => rfs::mkdirat(st, part.name(), Mode::RWXU).map_err(kind)?,
            Part::Marker => {
                let flags = OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::WRONLY;
                rfs::openat(st, part.name(), flags, Mode::RUSR | Mode::WUSR)
                    .map(drop)
                    .map_err(kind)?
            }
        }
        self.share(st, part.name(), matches!(part, Part::Sub(_)));
        Ok(())
    }

    fn sync_dir(&mut self, dir: TreeDir<'_>) -> Result<(), ErrorKind> {
        let fd = match dir {
            TreeDir::Parent => &self.root,
            TreeDir::Tmp => self.tmp()?,
            TreeDir::Staging(s) => self.staging(s)?,
        };
        rfs::fsync(fd).map_err(kind)
    }

    fn place(&mut self, staging: &str, folder: &[u8]) -> Result<bool, ErrorKind> {
        let folder = OsStr::from_bytes(folder);
        let tmp = open_tmp(&self.root, &mut self.tmp)?;
        let noreplace = if self.no_noreplace {
            Err(Errno::NOSYS)
        } else {
            rfs::renameat_with(tmp, staging, &self.root, folder, RenameFlags::NOREPLACE)
        };
        match noreplace {
            Ok(()) => Ok(true),
            Err(Errno::EXIST | Errno::NOTEMPTY) => Ok(false),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                // No RENAME_NOREPLACE: a plain rename of a directory replaces only an *empty*
                // directory, and a folder made by anyone else is never empty (it holds tmp/,
                // new/ and cur/), so this cannot destroy one.
                match rfs::renameat(tmp, staging, &self.root, folder) {
                    Ok(()) => Ok(true),
                    Err(Errno::EXIST | Errno::NOTEMPTY) => Ok(false),
                    Err(e) => Err(kind(e)),
                }
            }
            Err(e) => Err(kind(e)),
        }
    }

    fn remove_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind> {
        let flags = match part {
            Part::Sub(_) => AtFlags::REMOVEDIR,
            Part::Marker => AtFlags::empty(),
        };
        rfs::unlinkat(self.staging(staging)?, part.name(), flags).map_err(kind)
    }

    fn remove_staging(&mut self, staging: &str) -> Result<(), ErrorKind> {
        self.staging = None;
        rfs::unlinkat(self.tmp()?, staging, AtFlags::REMOVEDIR).map_err(kind)
    }
}

/// [`mdeliver_driver::folder_report::resolve`] through rustix: with `create`, the parent
/// maildir and the folder are created where missing (and flushed when `opts.sync`).
pub fn resolve(
    maildir: &Path,
    name: &OsStr,
    naming: (InfoSep, NameEncoding),
    create: bool,
    opts: OpenOptions,
) -> Result<Resolved, FolderFailure> {
    mdeliver_driver::folder_report::resolve(maildir, name.as_bytes(), naming, create, |dir| {
        // The parent is a maildir in its own right (the INBOX): make it complete first.
        let parent_opts = OpenOptions {
            create: true,
            keep_readable: false,
            folder: false,
            ..opts
        };
        LinuxFs::open(maildir, parent_opts).map_err(|(k, d)| FolderFailure::Parent(k, d))?;
        // The maildir root may be a symbolic link (see `OpenOptions::folder`); the folder
        // inside it is never followed.
        let root = rfs::openat(
            CWD,
            maildir,
            DIR.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )
        .map_err(|e| FolderFailure::Create(kind(e)))?;
        let shared = rfs::fstat(&root)
            .ok()
            .filter(|s| s.st_mode & 0o020 != 0)
            .map(|s| (s.st_gid, s.st_mode & 0o2000 != 0));
        let mut tree = LinuxTree {
            root,
            tmp: None,
            staging: None,
            no_noreplace: opts.disabled.rename_noreplace,
            shared,
        };
        create_folder(&mut tree, &mut LinuxEnv::new(), dir, opts.sync)
            .map_err(FolderFailure::Create)
    })
}
