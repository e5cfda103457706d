//! What the CLI tells a person when something fails: one [`Failure`] per maildir (or for the
//! input), rendered as `<what was attempted>: <what happened>; <what to do>`. Shared with the
//! WASI module (std and mdeliver-core only).

use std::fmt;

use mdeliver_core::machine::dedup::ENTRY_PREFIX;
use mdeliver_core::{Dir, Error, ErrorKind, Fs, Phase};

use crate::exit::{self, Context, Policy};

/// What `-c/--create` did for a maildir that could not be opened.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Create {
    /// Not given.
    No,
    /// Given: what was missing was created (where its parent existed).
    Yes,
    /// Given, but a dry run creates nothing.
    DryRun,
    /// Not given, and not to be suggested: the path ends in `tmp`, `new` or `cur`
    /// ([`mdeliver_core::maildir::folder::nests_in_maildir`]).
    Nested,
    /// Given or not: the path is a symbolic link to nothing (`-c` does not create the
    /// directory a link points to).
    DanglingLink,
}

impl Create {
    /// From the `-c` and `--dry-run` options.
    pub fn of(create: bool, dry_run: bool) -> Create {
        match (create, dry_run) {
            (false, _) => Create::No,
            (true, false) => Create::Yes,
            (true, true) => Create::DryRun,
        }
    }

    /// This, for the maildir at `path`: [`Create::Nested`] instead of [`Create::No`] when
    /// `path` ends in a maildir's own subdirectory, [`Create::DanglingLink`] when it is a
    /// symbolic link to nothing (looked at only once opening it failed).
    pub fn at(self, path: &std::path::Path) -> Create {
        let nested = path.file_name().is_some_and(|l| {
            mdeliver_core::maildir::folder::nests_in_maildir(l.as_encoded_bytes())
        });
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if link && std::fs::metadata(path).is_err() {
            Create::DanglingLink
        } else if self == Create::No && nested {
            Create::Nested
        } else {
            self
        }
    }
}

/// Why a maildir (or the input) did not get the message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The maildir itself (`Dir::Root`) or one of its subdirectories could not be opened or
    /// created.
    Open {
        /// What went wrong.
        kind: ErrorKind,
        /// Which directory.
        part: Dir,
        /// Whether `-c/--create` was given (and took effect).
        create: Create,
    },
    /// The delivery failed; the core's error says in which phase.
    Deliver(Error),
    /// An earlier failed delivery consumed part of a non-rewindable input, and no delivered
    /// copy exists to read the message from.
    InputLost,
    /// `--input FILE` could not be opened.
    Input(ErrorKind),
}

impl Failure {
    /// The error kind behind this failure.
    pub fn kind(&self) -> ErrorKind {
        match *self {
            Failure::Open { kind, .. } | Failure::Input(kind) => kind,
            // A termination signal stopped the reading: interrupted, whatever the read said.
            Failure::Deliver(e) if e.phase == Phase::Read && crate::signal::caught().is_some() => {
                ErrorKind::Interrupted
            }
            Failure::Deliver(e) => e.kind,
            Failure::InputLost => ErrorKind::Io,
        }
    }

    /// Where this failure was met, as far as its exit code cares.
    pub fn context(&self) -> Context {
        match self {
            Failure::Input(_) => Context::Input,
            _ => Context::Deliver,
        }
    }

    /// The exit code this failure calls for (see [`exit::decide`]).
    pub fn code(&self, strict: bool) -> u8 {
        let policy = Policy {
            strict,
            ..Policy::default()
        };
        exit::decide(self.kind(), self.context(), policy)
    }
}

/// What the WASI module adds when a maildir cannot be reached: the runtime refuses (or does not
/// find) any path outside the directories the host preopened.
const SANDBOX: &str = if cfg!(target_os = "wasi") {
    " (in the WASI sandbox, paths must stay inside the directories the host preopened)"
} else {
    ""
};

/// What to do about an error of `kind` (empty when there is nothing to say).
pub fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NoSpace => "free space on the maildir's filesystem",
        ErrorKind::Quota => "the mailbox owner's disk quota is exhausted",
        ErrorKind::Permission => {
            "check the owner and mode of the maildir and of its tmp/, new/ and cur/"
        }
        ErrorKind::ReadOnly => "remount the maildir's filesystem read-write",
        ErrorKind::Io => "the kernel reported an I/O error; check the system log",
        ErrorKind::Interrupted => "interrupted by a signal; try again",
        ErrorKind::NotFound => "the maildir changed during delivery (was a directory removed?)",
        ErrorKind::NotDirectory => {
            "mdeliver never follows symbolic links inside a maildir; use real directories"
        }
        ErrorKind::NameTooLong => "the maildir path or the host name is too long",
        ErrorKind::Collisions => {
            "every fresh file name was taken; is the clock or the random source broken?"
        }
        ErrorKind::Unsupported => {
            "the filesystem refused an operation; MDELIVER_DISABLE can force a fallback (see --help)"
        }
        ErrorKind::Busy => "another process held the maildir lock too long",
        ErrorKind::Resources => {
            "too many open files or too little memory; raise the limit (ulimit -n, LimitNOFILE=) or lower the load"
        }
        ErrorKind::OverQuota => "the mailbox is over its Maildir++ quota",
        ErrorKind::CrossDevice => {
            "tmp/, new/ and cur/ must be on the maildir's own filesystem; is something mounted over one of them?"
        }
        ErrorKind::Exists | ErrorKind::Data | ErrorKind::Usage | ErrorKind::Loop => "",
    }
}

/// What happened to the quota file or the duplicate index (`phase`), and what to do: these
/// are single files of the maildir (not its tmp/, new/, cur/), and mdeliver rebuilds the
/// quota file from the maildir's contents, so removing a broken one loses nothing.
fn index_file(f: &mut fmt::Formatter<'_>, phase: Phase, kind: ErrorKind) -> fmt::Result {
    let quota = phase == Phase::Quota;
    match kind {
        ErrorKind::NotDirectory if quota => f.write_str(
            "it is not a regular file (a directory, a symbolic link or a special file, which \
             mdeliver never follows or opens); remove the maildir's maildirsize: mdeliver \
             recreates it from the maildir's contents",
        ),
        ErrorKind::NotDirectory => f.write_str(
            "an entry is not a regular file (a directory, a symbolic link or a special file, \
             which mdeliver never follows or opens); remove the mdeliver-dedup.* entries of \
             the maildir that are not regular files (find MAILDIR -maxdepth 1 -name \
             'mdeliver-dedup.*' ! -type f)",
        ),
        ErrorKind::Permission if quota => write!(
            f,
            "{kind}; check the owner and mode of the maildir's maildirsize: the deliverer must \
             be able to read and write it"
        ),
        ErrorKind::Permission => write!(
            f,
            "{kind}; check the owner and mode of the maildir and of its mdeliver-dedup.* \
             files: the deliverer must be able to create, read and write them"
        ),
        kind => {
            write!(f, "{kind}")?;
            match hint(kind) {
                "" => Ok(()),
                advice => write!(f, "; {advice}"),
            }
        }
    }
}

/// What happened to a delivery that failed with `e` (without what its cleanup left).
fn deliver_failure(f: &mut fmt::Formatter<'_>, e: Error) -> fmt::Result {
    let what = e.phase.describe();
    if e.phase == Phase::Read {
        if let Some(sig) = crate::signal::caught() {
            return write!(
                f,
                "{what}: stopped by {} before the whole message was read; nothing was \
                 delivered",
                crate::signal::name(sig)
            );
        }
    }
    match e.phase {
        Phase::Read if e.kind == ErrorKind::Data => {
            write!(f, "{what}: message is empty; nothing was delivered")
        }
        Phase::Quota | Phase::Dedup => {
            write!(f, "{what}: ")?;
            index_file(f, e.phase, e.kind)
        }
        _ => {
            write!(f, "{what}: {}", e.kind)?;
            match hint(e.kind) {
                "" => Ok(()),
                advice => write!(f, "; {advice}"),
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::Open { kind, part, create } => {
                let what = Phase::Open.describe();
                let at = match part {
                    Dir::Root => String::new(),
                    d => format!("{}/: ", d.as_str()),
                };
                let advice = match (kind, part) {
                    (ErrorKind::NotFound, Dir::Root) if create == Create::DanglingLink => {
                        "it is a symbolic link to a directory that does not exist; create that \
                         directory (-c does not follow a link to make it) or correct the link"
                    }
                    (ErrorKind::NotFound, _) if create == Create::DryRun => {
                        "a dry run creates nothing: without --dry-run, -c would create it"
                    }
                    (ErrorKind::NotFound, Dir::Root) if create == Create::No => {
                        "check the path, or pass -c/--create to create the maildir"
                    }
                    (ErrorKind::NotFound, Dir::Root) if create == Create::Nested => {
                        "check the path: it ends in a maildir's own tmp/, new/ or cur/; give \
                         the maildir itself"
                    }
                    (ErrorKind::NotFound, Dir::Root) => {
                        "the directory that should contain the maildir does not exist; \
                         -p/--create-parents creates it too"
                    }
                    (ErrorKind::NotFound, _) if create == Create::No => {
                        "not a complete maildir; pass -c/--create to add tmp/, new/ and cur/"
                    }
                    (ErrorKind::NotDirectory, Dir::Root) => {
                        "a maildir must be a directory (a symbolic link to one is fine; a \
                         --folder that is a symbolic link is refused, and so is any symbolic \
                         link above the maildir with -p/--create-parents)"
                    }
                    (ErrorKind::NotDirectory, _) => {
                        "refusing it: mdeliver never follows symbolic links inside a maildir; \
                         replace it with a real directory"
                    }
                    _ => hint(kind),
                };
                write!(f, "{what}: {at}{kind}")?;
                if !advice.is_empty() {
                    write!(f, "; {advice}")?;
                }
                if part == Dir::Root && matches!(kind, ErrorKind::NotFound | ErrorKind::Permission)
                {
                    f.write_str(SANDBOX)?;
                }
                Ok(())
            }
            Failure::Deliver(e) => {
                deliver_failure(f, e)?;
                match e.left {
                    None => Ok(()),
                    Some(Dir::Tmp) => f.write_str(
                        "; cleaning up failed too: a partial copy of the message remains in \
                         tmp/ (it is never delivered; remove it, or `mdeliver check --repair` \
                         does after 36 hours)",
                    ),
                    Some(d) => write!(
                        f,
                        "; cleaning up failed too: the message remains in {}/ although this \
                         delivery failed, so the MTA's retry may store it a second time",
                        d.as_str()
                    ),
                }
            }
            Failure::InputLost => f.write_str(
                "not delivered: a failed delivery above consumed part of the message, and its \
                 input (a pipe) cannot be read again; retry the whole delivery",
            ),
            Failure::Input(ErrorKind::Usage) => {
                f.write_str("cannot open input: it is a directory, not a message file")
            }
            Failure::Input(kind) => write!(f, "cannot open input: {kind}"),
        }
    }
}

/// The duplicate index's entries in the root of `fs` that are not regular files, when
/// `failure` is the index's refusal of one ([`ErrorKind::NotDirectory`] in [`Phase::Dedup`]):
/// the files to name in the message (at most 8), since the core's error names only the kind.
/// Empty for any other failure, or when the root cannot be listed.
pub fn broken_index_entries<F: Fs + ?Sized>(fs: &mut F, failure: &Failure) -> Vec<String> {
    let mut found = Vec::new();
    let Failure::Deliver(e) = failure else {
        return found;
    };
    if e.phase != Phase::Dedup || e.kind != ErrorKind::NotDirectory {
        return found;
    }
    let Ok(mut listing) = fs.open_dir(Dir::Root) else {
        return found;
    };
    let mut name = mdeliver_core::fs::EntryName::new();
    while found.len() < 8 && fs.read_dir(&mut listing, &mut name).unwrap_or(false) {
        let Ok(n) = core::str::from_utf8(&name) else {
            continue;
        };
        if n.starts_with(ENTRY_PREFIX) && fs.stat(Dir::Root, n).is_ok_and(|s| !s.regular) {
            // Kept in order as they come (at most 8): no sort's code in the WASI module.
            let at = found.partition_point(|f| f.as_str() < n);
            found.insert(at, n.to_owned());
        }
    }
    found
}
