//! `--folder NAME`: finds (and with `-c` creates) the Maildir++ subfolder of a maildir. The
//! name is translated and checked by the core ([`mdeliver_core::folder`]); this module only
//! makes the directory, so that no one ever sees it half-made: the folder is built under a
//! unique name inside the parent's tmp/ (with tmp/, new/, cur/ and the `maildirfolder`
//! marker), flushed, and renamed into place with a rename that cannot replace; if another
//! process created the folder first, ours is removed and theirs used. The parent directory is
//! flushed afterwards.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mdeliver_core::env::Env;
use mdeliver_core::folder::{folder, Folder, FolderError, MAILDIRFOLDER};
use mdeliver_core::name::InfoSep;
use mdeliver_core::{Dir, ErrorKind};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use crate::env::LinuxEnv;
use crate::linux::{error_kind, Call, LinuxFs, OpenOptions};

/// Why the folder could not be used.
#[derive(Debug)]
pub enum FolderFailure {
    /// The name was refused (a usage error).
    Name(FolderError),
    /// Opening or creating the parent maildir failed.
    Parent(ErrorKind, Dir),
    /// Creating the folder failed.
    Create(ErrorKind),
}

const DIR: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

fn kind(e: Errno) -> ErrorKind {
    error_kind(e, Call::Other)
}

/// The directory to deliver into for `--folder name` under `maildir`: the maildir itself for
/// `INBOX`, else `maildir/.A.B`. With `create`, the parent maildir and the folder are created
/// where missing (and flushed when `sync`).
pub fn resolve(
    maildir: &Path,
    name: &OsStr,
    sep: InfoSep,
    create: bool,
    opts: OpenOptions,
) -> Result<PathBuf, FolderFailure> {
    let dir = match folder(name.as_bytes(), sep).map_err(FolderFailure::Name)? {
        Folder::Inbox => return Ok(maildir.to_owned()),
        Folder::Sub(d) => d,
    };
    let dir = OsStr::from_bytes(&dir);
    let path = maildir.join(dir);
    if create {
        // The parent is a maildir in its own right (the INBOX): make it complete first.
        let parent_opts = OpenOptions {
            create: true,
            keep_readable: false,
            ..opts
        };
        LinuxFs::open(maildir, parent_opts).map_err(|(k, d)| FolderFailure::Parent(k, d))?;
        make(maildir, dir, opts.sync).map_err(FolderFailure::Create)?;
    }
    Ok(path)
}

fn make(maildir: &Path, dir: &OsStr, sync: bool) -> Result<(), ErrorKind> {
    let root = rfs::openat(CWD, maildir, DIR, Mode::empty()).map_err(kind)?;
    match rfs::openat(&root, dir, DIR, Mode::empty()) {
        Ok(_) => return Ok(()),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(kind(e)),
    }
    let tmp = rfs::openat(&root, "tmp", DIR, Mode::empty()).map_err(kind)?;
    let mut env = LinuxEnv::new();
    let staging = format!(
        "folder.{}.P{}R{:016x}",
        env.now().secs,
        env.pid().unwrap_or(0),
        env.random_u64()
    );
    rfs::mkdirat(&tmp, staging.as_str(), Mode::RWXU).map_err(kind)?;
    let built = build(&tmp, &staging, sync);
    let placed = built.and_then(|()| place(&tmp, &staging, &root, dir));
    match placed {
        Ok(true) => {}
        // Someone else's folder is in place (or ours failed): remove our staging copy.
        Ok(false) | Err(_) => remove_staging(&tmp, &staging),
    }
    placed?;
    if sync {
        rfs::fsync(&root).map_err(kind)?;
        rfs::fsync(&tmp).map_err(kind)?;
    }
    Ok(())
}

/// Fills the staging directory: tmp/, new/, cur/ and the marker.
fn build(tmp: &OwnedFd, staging: &str, sync: bool) -> Result<(), ErrorKind> {
    let st = rfs::openat(tmp, staging, DIR, Mode::empty()).map_err(kind)?;
    for d in Dir::SUBDIRS {
        rfs::mkdirat(&st, d.as_str(), Mode::RWXU).map_err(kind)?;
    }
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::WRONLY;
    let marker = rfs::openat(&st, MAILDIRFOLDER, flags, Mode::RUSR | Mode::WUSR).map_err(kind)?;
    drop(marker);
    if sync {
        rfs::fsync(st.as_fd()).map_err(kind)?;
    }
    Ok(())
}

/// Renames the staging directory to the folder's name without replacing anything. `false`:
/// the folder appeared meanwhile (created by another process).
fn place(tmp: &OwnedFd, staging: &str, root: &OwnedFd, dir: &OsStr) -> Result<bool, ErrorKind> {
    match rfs::renameat_with(tmp, staging, root, dir, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST | Errno::NOTEMPTY) => Ok(false),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            // No RENAME_NOREPLACE: a plain rename of a directory replaces only an *empty*
            // directory, and a folder made by anyone else is never empty (it holds tmp/,
            // new/ and cur/), so this cannot destroy one.
            match rfs::renameat(tmp, staging, root, dir) {
                Ok(()) => Ok(true),
                Err(Errno::EXIST | Errno::NOTEMPTY) => Ok(false),
                Err(e) => Err(kind(e)),
            }
        }
        Err(e) => Err(kind(e)),
    }
}

fn remove_staging(tmp: &OwnedFd, staging: &str) {
    if let Ok(st) = rfs::openat(tmp, staging, DIR, Mode::empty()) {
        let _ = rfs::unlinkat(&st, MAILDIRFOLDER, AtFlags::empty());
        for d in Dir::SUBDIRS {
            let _ = rfs::unlinkat(&st, d.as_str(), AtFlags::REMOVEDIR);
        }
    }
    let _ = rfs::unlinkat(tmp, staging, AtFlags::REMOVEDIR);
}

/// Where to deliver for `args` in `maildir`: the maildir itself, or its `--folder` (created
/// with `-c`). On failure, the message (after `mdeliver: <maildir>: `) and the exit code.
pub fn target(
    args: &crate::args::Args,
    mail: &crate::mail_args::MailArgs,
    maildir: &Path,
    opts: OpenOptions,
) -> Result<PathBuf, (String, u8)> {
    let Some(name) = &mail.folder else {
        return Ok(maildir.to_owned());
    };
    resolve(maildir, name, mail.info_separator, args.create, opts).map_err(|f| match f {
        FolderFailure::Name(e) => (
            format!("--folder {:?}: {e}", name.to_string_lossy()),
            crate::exit::USAGE,
        ),
        FolderFailure::Parent(kind, part) => {
            let failure = crate::report::Failure::Open {
                kind,
                part,
                create: args.create,
            };
            (failure.to_string(), failure.code(args.strict_exit))
        }
        FolderFailure::Create(kind) => (
            format!("creating folder {:?}: {kind}", name.to_string_lossy()),
            crate::exit::code(kind, args.strict_exit),
        ),
    })
}
