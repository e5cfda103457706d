//! Where `--folder` sends a delivery ([`target`], around the adapter's own resolution), and
//! what a person is told when it cannot be used: one line after `mdeliver: <maildir>: `, and
//! the exit code. Shared with the WASI module (std, mdeliver-core and the shared driver files
//! `args`, `mail_args`, `report` and `exit` only).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(target_os = "wasi")]
use std::os::wasi::ffi::OsStrExt;

use mdeliver_core::maildir::folder::{folder, Folder, FolderDir, FolderFailure, NameEncoding};
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::{Dir, ErrorKind};

use crate::report::{Create, Failure};
use crate::status::Output;

/// An adapter's answer for `--folder`: the directory to deliver into, and the folder's
/// directory name when the adapter just created it (so it gets subscribed).
pub type Resolved = (PathBuf, Option<FolderDir>);

/// An adapter's [`Resolved`] for `--folder name` under `maildir`: the maildir itself for
/// `INBOX`, else `maildir/.A.B` (levels in `enc`). With `create`, `make` creates the parent
/// maildir and the folder where missing and says whether it created the folder.
pub fn resolve(
    maildir: &Path,
    name: &[u8],
    (sep, enc): (InfoSep, NameEncoding),
    create: bool,
    make: impl FnOnce(&FolderDir) -> Result<bool, FolderFailure>,
) -> Result<Resolved, FolderFailure> {
    let dir = match folder(name, sep, enc).map_err(FolderFailure::Name)? {
        Folder::Inbox => return Ok((maildir.to_owned(), None)),
        Folder::Sub(d) => d,
    };
    let path = maildir.join(OsStr::from_bytes(&dir));
    let created = create && make(&dir)?;
    Ok((path, created.then_some(dir)))
}

/// Why the `--folder` of a maildir cannot be used, as a person and an MTA are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The message, after `mdeliver: <maildir>: `.
    pub message: String,
    /// The exit code.
    pub code: u8,
    /// What failed, for the RFC 3463 status line (`None` for a usage error, which has none).
    kind: Option<ErrorKind>,
}

impl Refused {
    /// Notes the failure in `out`: its status line (which `out` prints first) and its message.
    pub fn report(&self, out: &mut Output, maildir: &Path) {
        if let Some(kind) = self.kind {
            let failure = Failure::Open {
                kind,
                part: Dir::Root,
                create: Create::No,
            };
            out.failed(self.code, crate::status::line(&failure, self.code, None));
        }
        out.err(format!("mdeliver: {}: {}", maildir.display(), self.message));
    }
}

/// What to do when creating a folder failed with `kind`.
fn create_advice(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotDirectory => {
            "a file or a symbolic link is where the folder's directory belongs (mdeliver never \
             follows symbolic links inside a maildir); remove or rename it, or deliver into \
             another folder"
        }
        ErrorKind::Permission => {
            "creating a folder needs write access to the maildir and its tmp/; check their \
             owner and mode"
        }
        kind => crate::report::hint(kind),
    }
}

/// The message, exit code and status for `failure` on the folder `name`; `create` says whether
/// `-c/--create` was given, `strict` whether `--strict-exit` was.
pub fn explain(failure: FolderFailure, name: &OsStr, create: bool, strict: bool) -> Refused {
    match failure {
        FolderFailure::Name(e) => {
            // A usage error: refused at a terminal (64), deferred under an MTA (75).
            let code = crate::exit::usage(strict, crate::args::interactive(), false);
            Refused {
                message: format!("--folder {:?}: {e}", name.to_string_lossy()),
                code,
                kind: (code == crate::exit::TEMPFAIL).then_some(ErrorKind::Usage),
            }
        }
        FolderFailure::Parent(kind, part) => {
            let failure = Failure::Open {
                kind,
                part,
                // Only a real run opens (and with -c creates) the parent.
                create: Create::of(create, false),
            };
            Refused {
                message: failure.to_string(),
                code: failure.code(strict),
                kind: Some(kind),
            }
        }
        FolderFailure::Create(kind) => {
            let mut message = format!("creating folder {:?}: {kind}", name.to_string_lossy());
            let advice = create_advice(kind);
            if !advice.is_empty() {
                message.push_str("; ");
                message.push_str(advice);
            }
            Refused {
                message,
                code: crate::exit::code(kind, strict),
                kind: Some(kind),
            }
        }
    }
}

/// Where to deliver in `maildir`: the maildir itself, or its `--folder`, found by the adapter's
/// `resolve(name, create)`, which creates what is missing when `create` (`-c`, except in a dry
/// run: a dry run creates nothing, not even the folder), with the folder's directory name when
/// it was created and is to be subscribed (not `--no-subscribe`; the caller subscribes it: see
/// [`subscribe_warning`]). With `--folder-fallback`, a folder that does not exist while `-c` is
/// not given, or a refused name, means the maildir itself. On failure, what to report.
pub fn target(
    args: &crate::args::Args,
    mail: &crate::mail_args::MailArgs,
    maildir: &Path,
    resolve: impl FnOnce(&OsStr, bool) -> Result<Resolved, FolderFailure>,
) -> Result<Resolved, Refused> {
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
