//! Where `--folder` sends a delivery ([`target`], around the adapter's own resolution), and
//! what a person is told when it cannot be used: one line after `mdeliver: <maildir>: `, and
//! the exit code. Shared with the WASI module (std, mdeliver-core and the shared driver files
//! `args`, `mail_args`, `report` and `exit` only).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use mdeliver_core::maildir::folder::{FolderDir, FolderFailure};
use mdeliver_core::ErrorKind;

/// An adapter's answer for `--folder`: the directory to deliver into, and the folder's
/// directory name when the adapter just created it (so it gets subscribed).
pub type Resolved = (PathBuf, Option<FolderDir>);

/// The message and exit code for `failure` on the folder `name`; `create` says whether
/// `-c/--create` was given, `strict` whether `--strict-exit` was.
pub fn explain(failure: FolderFailure, name: &OsStr, create: bool, strict: bool) -> (String, u8) {
    match failure {
        FolderFailure::Name(e) => (
            format!("--folder {:?}: {e}", name.to_string_lossy()),
            crate::exit::USAGE,
        ),
        FolderFailure::Parent(kind, part) => {
            let failure = crate::report::Failure::Open {
                kind,
                part,
                // Only a real run opens (and with -c creates) the parent.
                create: crate::report::Create::of(create, false),
            };
            (failure.to_string(), failure.code(strict))
        }
        FolderFailure::Create(kind) => (
            format!("creating folder {:?}: {kind}", name.to_string_lossy()),
            crate::exit::code(kind, strict),
        ),
    }
}

/// Where to deliver in `maildir`: the maildir itself, or its `--folder`, found by the adapter's
/// `resolve(name, create)`, which creates what is missing when `create` (`-c`, except in a dry
/// run: a dry run creates nothing, not even the folder), with the folder's directory name when
/// it was created and is to be subscribed (not `--no-subscribe`; the caller subscribes it: see
/// [`subscribe_warning`]). With `--folder-fallback`, a folder that does not exist while `-c` is
/// not given, or a refused name, means the maildir itself. On failure, the message (after
/// `mdeliver: <maildir>: `) and the exit code.
pub fn target(
    args: &crate::args::Args,
    mail: &crate::mail_args::MailArgs,
    maildir: &Path,
    resolve: impl FnOnce(&OsStr, bool) -> Result<Resolved, FolderFailure>,
) -> Result<Resolved, (String, u8)> {
    let Some(name) = &mail.folder else {
        return Ok((maildir.to_owned(), None));
    };
    let create = args.create && !mail.mta.dry_run;
    let (path, created) = match resolve(name, create) {
        Ok(r) => r,
        Err(FolderFailure::Name(_)) if mail.folder_fallback => {
            return Ok((maildir.to_owned(), None))
        }
        Err(f) => return Err(explain(f, name, args.create, args.strict_exit)),
    };
    if mail.folder_fallback && !args.create && !is_dir(&path) {
        return Ok((maildir.to_owned(), None));
    }
    Ok((path, created.filter(|_| !mail.no_subscribe)))
}

/// The warning when subscribing the new folder `name` of `maildir` failed in `file`: the
/// message is still delivered.
pub fn subscribe_warning(maildir: &Path, name: &OsStr, file: &str, kind: ErrorKind) -> String {
    format!(
        "mdeliver: {}: warning: subscribing folder {:?} in {file}: {kind}; the message is \
         delivered, subscribe the folder in your mail client",
        maildir.display(),
        name.to_string_lossy()
    )
}

/// Whether `path` is a directory, not following a symbolic link there (which delivery refuses).
fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}
