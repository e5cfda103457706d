//! Where `--folder` sends a delivery ([`target`], around the adapter's own resolution), and
//! what a person is told when it cannot be used: one line after `mdeliver: <maildir>: `, and
//! the exit code. Shared with the WASI module (std, mdeliver-core and the shared driver files
//! `args`, `mail_args`, `report` and `exit` only).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use mdeliver_core::maildir::folder::FolderFailure;
use mdeliver_core::ErrorKind;

use crate::exit::{self, Context, Policy};

/// The message and exit code for `failure` on the folder `name`; `create` says whether
/// `-c/--create` was given.
pub fn explain(failure: FolderFailure, name: &OsStr, create: bool, policy: Policy) -> (String, u8) {
    match failure {
        FolderFailure::Name(e) => (
            format!("--folder {:?}: {e}", name.to_string_lossy()),
            exit::decide(ErrorKind::Usage, Context::Deliver, policy),
        ),
        FolderFailure::Parent(kind, part) => {
            let failure = crate::report::Failure::Open {
                kind,
                part,
                // Only a real run opens (and with -c creates) the parent.
                create: crate::report::Create::of(create, false),
            };
            (failure.to_string(), failure.code(policy))
        }
        FolderFailure::Create(kind) => (
            format!("creating folder {:?}: {kind}", name.to_string_lossy()),
            exit::decide(kind, Context::Deliver, policy),
        ),
    }
}

/// Where to deliver in `maildir`: the maildir itself, or its `--folder`, found by the adapter's
/// `resolve(name, create)`, which creates what is missing when `create` (`-c`, except in a dry
/// run: a dry run creates nothing, not even the folder). On failure, the message (after
/// `mdeliver: <maildir>: `) and the exit code.
pub fn target(
    args: &crate::args::Args,
    mail: &crate::mail_args::MailArgs,
    maildir: &Path,
    resolve: impl FnOnce(&OsStr, bool) -> Result<PathBuf, FolderFailure>,
) -> Result<PathBuf, (String, u8)> {
    let Some(name) = &mail.folder else {
        return Ok(maildir.to_owned());
    };
    let create = args.create && !mail.mta.dry_run;
    let policy = Policy::of(args, mail);
    resolve(name, create).map_err(|f| explain(f, name, args.create, policy))
}
