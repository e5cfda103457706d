//! What the reader-side subcommands (`list`, `flag`, `check`) share: opening an existing
//! maildir through the Linux adapter (never creating anything) and reporting why that failed,
//! with exit codes for a person at a shell rather than an MTA.

use std::path::Path;
use std::process::ExitCode;

use mdeliver_core::{Dir, ErrorKind};

use crate::exit;
use crate::linux::{Disabled, LinuxFs, OpenOptions};

/// The exit code of a subcommand that could not use a maildir: 66 when it is missing or not
/// a directory, 77 without permission, else the delivery form's precise (`--strict-exit`) code.
pub fn code(kind: ErrorKind) -> u8 {
    exit::decide(kind, exit::Context::Read, exit::Policy::default())
}

/// Opens the maildir at `path` (its tmp/, new/ and cur/ must exist; nothing is created and no
/// probe file is made). `MDELIVER_DISABLE` is honoured, as for delivery. On failure, says why
/// on stderr (`mdeliver: <maildir>: …`) and gives the exit code.
pub fn open(path: &Path) -> Result<LinuxFs, ExitCode> {
    let failed = |message: String, code: u8| {
        eprintln!("mdeliver: {}: {message}", path.display());
        ExitCode::from(code)
    };
    let mut disabled = Disabled::from_env().map_err(|message| failed(message, exit::USAGE))?;
    // Readers never create message files: skip the O_TMPFILE probe.
    disabled.anonymous_tmp = true;
    let opts = OpenOptions {
        create: false,
        sync: false,
        disabled,
        keep_readable: false,
        folder: false,
        create_parents: false,
        strategy: None,
        probe_rename: false,
    };
    LinuxFs::open(path, opts).map_err(|(kind, part)| {
        let at = match part {
            Dir::Root => String::new(),
            d => format!("{}/: ", d.as_str()),
        };
        let hint = match (kind, part) {
            (ErrorKind::NotFound, Dir::Root) => "check the path",
            (ErrorKind::NotFound, _) => "not a complete maildir (it needs tmp/, new/ and cur/)",
            (ErrorKind::NotDirectory, Dir::Root) => {
                "a maildir must be a directory (a symbolic link to one is fine)"
            }
            (ErrorKind::NotDirectory, _) => {
                "mdeliver never follows symbolic links inside a maildir"
            }
            (ErrorKind::Permission, _) => "check the owner and mode of the maildir",
            _ => "",
        };
        let mut message = format!("opening maildir: {at}{kind}");
        if !hint.is_empty() {
            message.push_str("; ");
            message.push_str(hint);
        }
        failed(message, code(kind))
    })
}
