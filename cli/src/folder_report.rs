//! What a person is told when `--folder` cannot be used: one line after
//! `mdeliver: <maildir>: `, and the exit code. Shared with the WASI module (std,
//! mdeliver-core, `crate::report` and `crate::exit` only).

use std::ffi::OsStr;

use mdeliver_core::folder::FolderFailure;

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
