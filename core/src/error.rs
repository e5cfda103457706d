//! The one error type of mdeliver: a kind (what went wrong, and whether time can fix it) and the
//! phase of delivery it happened in. Adapters map kinds to exit codes in exactly one place.

use core::fmt;

/// What went wrong. Filesystem kinds mirror the errno classes that matter to mail delivery;
/// the rest are decisions the core makes itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The name is taken (`EEXIST`).
    Exists,
    /// A directory or file is missing (`ENOENT`).
    NotFound,
    /// The filesystem is full (`ENOSPC`).
    NoSpace,
    /// The user's filesystem quota is exhausted (`EDQUOT`).
    Quota,
    /// Access refused (`EACCES`, `EPERM`).
    Permission,
    /// The filesystem is mounted read-only (`EROFS`).
    ReadOnly,
    /// A system call was interrupted (`EINTR`).
    Interrupted,
    /// Any other input/output error (`EIO` and friends).
    Io,
    /// The filesystem does not support the operation (`EOPNOTSUPP`, `EINVAL`, `ENOSYS`).
    Unsupported,
    /// A path component is a symbolic link or not a directory (`ELOOP`, `ENOTDIR`).
    NotDirectory,
    /// A file name is too long (`ENAMETOOLONG`).
    NameTooLong,
    /// Fresh names kept colliding; bounded retries were exhausted.
    Collisions,
    /// The Maildir lock could not be taken in time.
    Busy,
    /// The message itself is unacceptable (empty, malformed).
    Data,
    /// The caller asked for something impossible (bad flag, bad folder name).
    Usage,
    /// The message already passed through this mailbox (`Delivered-To:` loop).
    Loop,
    /// The Maildir++ quota would be exceeded.
    OverQuota,
    /// The process or the system ran out of a resource: open files (`EMFILE`, `ENFILE`) or
    /// memory (`ENOMEM`).
    Resources,
    /// A link or rename crossed filesystems or mounts (`EXDEV`): the maildir's directories
    /// are not on one filesystem, e.g. something is mounted over tmp/ or new/.
    CrossDevice,
}

impl ErrorKind {
    /// Whether retrying later (or an administrator's fix) can make the operation succeed.
    ///
    /// Missing directories and permission problems count as temporary: a misconfigured
    /// mailbox should defer mail, not bounce it.
    pub const fn is_temporary(self) -> bool {
        !matches!(self, ErrorKind::Data | ErrorKind::Usage | ErrorKind::Loop)
    }

    /// A short lower-case description, used in error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            ErrorKind::Exists => "file exists",
            ErrorKind::NotFound => "no such file or directory",
            ErrorKind::NoSpace => "no space left on device",
            ErrorKind::Quota => "disk quota exceeded",
            ErrorKind::Permission => "permission denied",
            ErrorKind::ReadOnly => "read-only file system",
            ErrorKind::Interrupted => "interrupted system call",
            ErrorKind::Io => "input/output error",
            ErrorKind::Unsupported => "operation not supported",
            ErrorKind::NotDirectory => "not a directory (or a symbolic link)",
            ErrorKind::NameTooLong => "file name too long",
            ErrorKind::Collisions => "could not find a free file name",
            ErrorKind::Busy => "maildir is locked by another process",
            ErrorKind::Data => "unacceptable message",
            ErrorKind::Usage => "invalid request",
            ErrorKind::Loop => "mail forwarding loop",
            ErrorKind::OverQuota => "mailbox full",
            ErrorKind::Resources => "out of system resources (open files or memory)",
            ErrorKind::CrossDevice => "the maildir's directories are on different filesystems",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Where in the delivery an error happened, so a message can say what was being attempted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Opening or checking the maildir itself.
    Open,
    /// Creating the temporary file.
    Create,
    /// Reading the message from its source.
    Read,
    /// Writing the message into the temporary file.
    Write,
    /// Flushing the message file to stable storage.
    SyncFile,
    /// Giving the message its final name in new/ or cur/.
    Publish,
    /// Flushing the directory entry to stable storage.
    SyncDir,
    /// Taking or releasing the Maildir lock.
    Lock,
    /// Checking the message before anything is written.
    Check,
    /// Reading, appending to or recalculating the Maildir++ quota file `maildirsize`.
    Quota,
    /// Reading or writing the duplicate index (the `mdeliver-dedup.*` files of the maildir).
    Dedup,
}

impl Phase {
    /// A short description of the step, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Phase::Open => "opening maildir",
            Phase::Create => "creating file in tmp/",
            Phase::Read => "reading message",
            Phase::Write => "writing message",
            Phase::SyncFile => "syncing message file",
            Phase::Publish => "publishing message",
            Phase::SyncDir => "syncing directory",
            Phase::Lock => "locking maildir",
            Phase::Check => "checking message",
            Phase::Quota => "using the quota file maildirsize",
            Phase::Dedup => "using the duplicate index (the mdeliver-dedup.* files)",
        }
    }
}

/// An error: its kind and the phase it happened in, and what its cleanup could not remove.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// What was being attempted.
    pub phase: Phase,
    /// A file of the failed delivery that cleanup could not remove (its unlink failed too, for
    /// example on a filesystem that went read-only): in `Tmp`, a copy that is never delivered;
    /// in `New` or `Cur`, the message itself, published before the failure. `None`: nothing
    /// was left.
    pub left: Option<crate::dir::Dir>,
}

impl Error {
    /// An error of `kind` during `phase`.
    pub const fn new(kind: ErrorKind, phase: Phase) -> Self {
        Error {
            kind,
            phase,
            left: None,
        }
    }

    /// The same error, noting that a file of it remains in `dir`.
    pub const fn with_left(self, dir: crate::dir::Dir) -> Self {
        Error {
            left: Some(dir),
            ..self
        }
    }

    /// Whether a retry later can succeed (see [`ErrorKind::is_temporary`]).
    pub const fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.phase.describe(), self.kind.describe())
    }
}

impl core::error::Error for Error {}
