//! Maildir++ folder names: what the user types (`Lists/rust`, `Lists.rust`) and the directory
//! that holds the folder (`.Lists.rust` inside the maildir, with a `maildirfolder` marker file).
//!
//! Decisions:
//! - `/` and `.` both separate levels, so `A/B`, `A.B` and `A/B.C` → `.A.B`, `.A.B.C`. A `/`
//!   therefore never survives translation: a folder is always one directory directly inside
//!   the maildir, never a path.
//! - `INBOX` (any case) and the empty name are the maildir itself, as in Courier and Dovecot's
//!   Maildir++ layout; a leading `INBOX/` or `INBOX.` is dropped (`INBOX.Sent` → `.Sent`),
//!   because that is how IMAP servers on Maildir++ show the folders.
//! - Refused, each with its own error: `..` anywhere, a leading `.` (that is the directory
//!   name, not the folder name), empty levels (`A//B`, `A.`, `/A`), control characters, the
//!   info separator (it would make the folder's files unparsable), and results longer than a
//!   file name can be.
//! - Each level is written the way the IMAP server reading the maildir expects it
//!   ([`NameEncoding`]): modified UTF-7 by default (`Entwürfe` → `.Entw&APw-rfe`, see
//!   [`crate::maildir::mutf7`]), which needs a UTF-8 name; or the bytes as given, for Dovecot's UTF-8
//!   layout.
//!
//! Creating a folder ([`create_folder`], over any [`FolderTree`]) is decided here too, so that
//! no one ever sees a folder half-made:
//! - It is built under a unique staging name inside the parent's tmp/ (`tmp/`, `new/`, `cur/`,
//!   then the empty `maildirfolder` marker, created exclusively), flushed, and renamed into
//!   place with a rename that cannot replace anything; the parent (and its tmp/) are flushed
//!   afterwards.
//! - If another process placed the folder first, ours is removed and theirs is used: creating
//!   a folder that exists is success, whoever made it.
//! - On any failure before the folder is in place, what was made is removed again, newest
//!   first (including what the failing step may have made before it reported the error), so
//!   nothing is left in tmp/; the first error is reported.

use crate::env::Env;
use crate::error::ErrorKind;
use crate::fs::Dir;
pub use crate::maildir::mutf7::NameEncoding;
use crate::maildir::name::{InfoSep, NAME_MAX};
use core::fmt;
use core::fmt::Write as _;

/// The marker file Maildir++ puts inside every folder directory.
pub const MAILDIRFOLDER: &str = "maildirfolder";

/// The directory name of a folder (`.A.B`), as bytes; no allocation.
pub type FolderDir = heapless::Vec<u8, NAME_MAX>;

/// Where a folder name points.
// The directory name is carried by value: there is no heap to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Folder {
    /// The maildir itself (`INBOX` or the empty name).
    Inbox,
    /// A Maildir++ subfolder: this directory inside the maildir.
    Sub(FolderDir),
}

impl Folder {
    /// The directory name for a subfolder (`None` for the inbox).
    pub fn dir(&self) -> Option<&[u8]> {
        match self {
            Folder::Inbox => None,
            Folder::Sub(d) => Some(d),
        }
    }

    /// The directory name as text, when it is UTF-8.
    pub fn dir_str(&self) -> Option<&str> {
        self.dir().and_then(|d| core::str::from_utf8(d).ok())
    }
}

/// Why a folder name was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FolderError {
    /// It contains `..`.
    DotDot,
    /// It starts with `.`.
    LeadingDot,
    /// A level is empty (`A//B`, `A.`, `/A`).
    EmptyLevel,
    /// It contains a control character (this byte).
    ControlChar(u8),
    /// It contains the maildir's info separator (this byte).
    InfoSeparator(u8),
    /// The directory name would be longer than a file name may be.
    TooLong,
    /// It is not UTF-8, so it cannot be written in modified UTF-7.
    NotUtf8,
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderError::DotDot => f.write_str("folder name must not contain \"..\""),
            FolderError::LeadingDot => f.write_str(
                "folder name must not start with \".\" (give the folder name, e.g. \"Sent\" for the directory \".Sent\")",
            ),
            FolderError::EmptyLevel => f.write_str(
                "folder name has an empty level (a leading, trailing or doubled \"/\" or \".\")",
            ),
            FolderError::ControlChar(b) => {
                write!(f, "folder name contains the control character 0x{b:02x}")
            }
            FolderError::InfoSeparator(b) => write!(
                f,
                "folder name contains the info separator \"{}\"",
                *b as char
            ),
            FolderError::TooLong => write!(
                f,
                "folder name is too long (the directory name may have at most {NAME_MAX} bytes)"
            ),
            FolderError::NotUtf8 => f.write_str(
                "folder name is not UTF-8 (IMAP servers store names in modified UTF-7; \
                 --folder-encoding=utf8 keeps the bytes as given)",
            ),
        }
    }
}

impl core::error::Error for FolderError {}

fn strip_inbox(name: &[u8]) -> Option<&[u8]> {
    let (head, rest) = name.split_at(name.len().min(5));
    if !head.eq_ignore_ascii_case(b"INBOX") {
        return None;
    }
    match rest.first() {
        None => Some(rest),
        Some(b'/' | b'.') => Some(&rest[1..]),
        Some(_) => None,
    }
}

/// Translates a folder name, writing its levels in `enc` (see the module docs).
pub fn folder(name: &[u8], sep: InfoSep, enc: NameEncoding) -> Result<Folder, FolderError> {
    let name = match strip_inbox(name) {
        Some([]) => return Ok(Folder::Inbox),
        Some(rest) => rest,
        None if name.is_empty() => return Ok(Folder::Inbox),
        None => name,
    };
    if name.windows(2).any(|w| w == b"..") {
        return Err(FolderError::DotDot);
    }
    if name.starts_with(b".") {
        return Err(FolderError::LeadingDot);
    }
    if let Some(&b) = name.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        return Err(FolderError::ControlChar(b));
    }
    if name.contains(&sep.byte()) {
        return Err(FolderError::InfoSeparator(sep.byte()));
    }
    let mut dir = FolderDir::new();
    for level in name.split(|&b| b == b'/' || b == b'.') {
        if level.is_empty() {
            return Err(FolderError::EmptyLevel);
        }
        dir.push(b'.').map_err(|_| FolderError::TooLong)?;
        let fits = match enc {
            NameEncoding::Utf8 => dir.extend_from_slice(level).is_ok(),
            NameEncoding::Utf7 => {
                let level = core::str::from_utf8(level).map_err(|_| FolderError::NotUtf8)?;
                crate::maildir::mutf7::encode(level, &mut dir).is_ok()
            }
        };
        if !fits {
            return Err(FolderError::TooLong);
        }
    }
    Ok(Folder::Sub(dir))
}

/// Whether a maildir path whose last component is `last` may be a Maildir++ folder given by
/// its path (`~/Maildir/.Lists`): a folder's directory name starts with a dot. One that also
/// holds the [`MAILDIRFOLDER`] marker is one, and its quota is the maildir's above it (one
/// `maildirsize` for the tree, as Courier's deliverquota and Dovecot count it).
pub fn may_be_folder(last: &[u8]) -> bool {
    last.len() > 1 && last[0] == b'.' && last != b".."
}

/// Whether two folder names (None: INBOX) name one folder however they are spelled: `A/B`,
/// `A.B` and `INBOX.A.B` are one folder, and `INBOX`, `inbox/` and the empty name are the
/// maildir itself (see the module docs). Names [`folder`] refuses compare by their bytes.
pub fn same_folder(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    fn levels(n: Option<&[u8]>) -> Option<&[u8]> {
        let n = n?;
        match strip_inbox(n) {
            Some(rest) if !rest.is_empty() => Some(rest),
            Some(_) => None,
            None if n.is_empty() => None,
            None => Some(n),
        }
    }
    let sep = |c: u8| if c == b'/' { b'.' } else { c };
    match (levels(a), levels(b)) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| sep(x) == sep(y))
        }
        _ => false,
    }
}

/// Whether a maildir path whose last component is `last` names a maildir's own subdirectory
/// (`tmp`, `new` or `cur`): creating a maildir there (`-c`) would nest a maildir inside a
/// maildir, where no reader looks, so it is refused, and never suggested.
pub fn nests_in_maildir(last: &[u8]) -> bool {
    Dir::SUBDIRS.iter().any(|d| d.as_str().as_bytes() == last)
}

/// Why `--folder` could not be used (the adapters' answer; the CLI words it).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FolderFailure {
    /// The name was refused (a usage error).
    Name(FolderError),
    /// Opening or creating the parent maildir failed, at this directory of it.
    Parent(ErrorKind, Dir),
    /// Creating the folder failed.
    Create(ErrorKind),
}

/// One entry of the folder being built, inside its staging directory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// One of the folder's own `tmp/`, `new/`, `cur/` directories.
    Sub(Dir),
    /// The empty [`MAILDIRFOLDER`] marker file.
    Marker,
}

impl Part {
    /// The entry's name inside the folder.
    pub const fn name(self) -> &'static str {
        match self {
            Part::Sub(d) => d.as_str(),
            Part::Marker => MAILDIRFOLDER,
        }
    }

    /// Every entry of a new folder, in the order they are made.
    pub const ALL: [Part; 4] = [
        Part::Sub(Dir::Tmp),
        Part::Sub(Dir::New),
        Part::Sub(Dir::Cur),
        Part::Marker,
    ];
}

/// A directory that [`create_folder`] flushes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TreeDir<'a> {
    /// The parent maildir (it gains the folder's entry).
    Parent,
    /// The parent's `tmp/` (it loses the staging entry).
    Tmp,
    /// The staging directory `tmp/<name>` (it holds the folder's entries).
    Staging(&'a str),
}

/// The operations [`create_folder`] needs on the parent maildir's tree; adapters implement
/// it (openat and renameat2 on Linux, std::fs in WASI, memory in tests). `staging` is always
/// a plain name inside the parent's `tmp/`, `folder` a directory name from [`folder`].
pub trait FolderTree {
    /// Whether the parent holds the directory `folder`. Anything else there (a file, a
    /// symbolic link) is an error, never followed.
    fn folder_exists(&mut self, folder: &[u8]) -> Result<bool, ErrorKind>;
    /// Makes the directory `tmp/<staging>`; `Exists` if the name is taken.
    fn make_staging(&mut self, staging: &str) -> Result<(), ErrorKind>;
    /// Makes `part` inside `tmp/<staging>`: a directory, or the marker as an empty file
    /// created exclusively.
    fn make_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind>;
    /// Flushes a directory's entries to stable storage.
    fn sync_dir(&mut self, dir: TreeDir<'_>) -> Result<(), ErrorKind>;
    /// Renames `tmp/<staging>` to `folder` in the parent without ever replacing anything:
    /// `true` when ours is in place, `false` when a `folder` was there already.
    fn place(&mut self, staging: &str, folder: &[u8]) -> Result<bool, ErrorKind>;
    /// Removes `part` from `tmp/<staging>`.
    fn remove_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind>;
    /// Removes the (empty) directory `tmp/<staging>`.
    fn remove_staging(&mut self, staging: &str) -> Result<(), ErrorKind>;
}

/// A staging directory's name: `folder.<secs>.P<pid>R<random>` (no `P` field without a pid).
pub type StagingName = heapless::String<64>;

/// The unique staging name for a folder built now, from `env`'s clock, pid and entropy.
pub fn staging_name<E: Env + ?Sized>(env: &mut E) -> StagingName {
    let mut s = StagingName::new();
    let secs = env.now().secs;
    let random = env.random_u64();
    // At most 7 + 20 + 1 + 11 + 1 + 16 = 56 bytes: it always fits.
    let _ = write!(s, "folder.{secs}.");
    if let Some(pid) = env.pid() {
        let _ = write!(s, "P{pid}");
    }
    let _ = write!(s, "R{random:016x}");
    s
}

/// Creates the folder directory `folder` (from [`folder`]) in the tree's parent maildir unless
/// it exists (see the module docs); with `sync`, flushes the folder before it is renamed into
/// place and the parent and its tmp/ after. `true` when this call made the folder (the caller
/// subscribes it: [`crate::maildir::subscription`]), `false` when it was there already or another
/// process placed it first.
pub fn create_folder<T, E>(
    tree: &mut T,
    env: &mut E,
    folder: &[u8],
    sync: bool,
) -> Result<bool, ErrorKind>
where
    T: FolderTree + ?Sized,
    E: Env + ?Sized,
{
    if tree.folder_exists(folder)? {
        return Ok(false);
    }
    let staging = staging_name(env);
    let staging = staging.as_str();
    if let Err(e) = tree.make_staging(staging) {
        // `Exists` is someone else's directory; any other failure may still have made ours.
        if e != ErrorKind::Exists {
            let _ = tree.remove_staging(staging);
        }
        return Err(e);
    }
    for (i, part) in Part::ALL.into_iter().enumerate() {
        if let Err(e) = tree.make_part(staging, part) {
            // The failing step may have made its entry before reporting: remove it too.
            remove(tree, staging, &Part::ALL[..=i]);
            return Err(e);
        }
    }
    let flushed = if sync {
        tree.sync_dir(TreeDir::Staging(staging))
    } else {
        Ok(())
    };
    let placed = flushed.and_then(|()| tree.place(staging, folder));
    match placed {
        Ok(true) => {}
        // Another process's folder is in place (or ours failed): ours goes.
        Ok(false) | Err(_) => remove(tree, staging, &Part::ALL),
    }
    let ours = placed?;
    if sync {
        tree.sync_dir(TreeDir::Parent)?;
        tree.sync_dir(TreeDir::Tmp)?;
    }
    Ok(ours)
}

/// Removes `made` (newest first) and then the staging directory. Best effort: the error that
/// made us remove them is the one worth reporting, and a removal that fails (the filesystem
/// just failed us) can only leave an unused directory in tmp/.
fn remove<T: FolderTree + ?Sized>(tree: &mut T, staging: &str, made: &[Part]) {
    for &part in made.iter().rev() {
        let _ = tree.remove_part(staging, part);
    }
    let _ = tree.remove_staging(staging);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &[u8]) -> Result<Folder, FolderError> {
        folder(name, InfoSep::COLON, NameEncoding::Utf8)
    }

    fn utf7(name: &[u8]) -> Result<Folder, FolderError> {
        folder(name, InfoSep::COLON, NameEncoding::Utf7)
    }

    /// Issue 13: `--folder Entwürfe` made `.Entwürfe`, which Dovecot and Courier list under
    /// another name; by default the levels are modified UTF-7 now.
    #[test]
    fn modified_utf7_by_default() {
        assert_eq!(NameEncoding::default(), NameEncoding::Utf7);
        assert_eq!(utf7("Entwürfe".as_bytes()), sub(b".Entw&APw-rfe"));
        assert_eq!(
            utf7("Entwürfe".as_bytes()).unwrap().dir_str(),
            Some(".Entw&APw-rfe")
        );
        assert_eq!(
            utf7("Archiv/2026/März".as_bytes()),
            sub(b".Archiv.2026.M&AOQ-rz")
        );
        assert_eq!(utf7(b"Q&A"), sub(b".Q&-A"));
        assert_eq!(utf7("INBOX.Entwürfe".as_bytes()), sub(b".Entw&APw-rfe"));
        assert_eq!(utf7(b"INBOX"), Ok(Folder::Inbox));
        assert_eq!(dir("Entwürfe".as_bytes()), sub(".Entwürfe".as_bytes()));
        assert_eq!(utf7(b"caf\xe9"), Err(FolderError::NotUtf8));
        assert_eq!(dir(b"caf\xe9"), sub(b".caf\xe9"));
        // The length limit applies to the encoded name: 127 "ü" are 2 bytes each in UTF-8
        // (254 + the dot fits) but 1 + ceil(127 * 16 / 6) + 1 = 341 bytes in UTF-7.
        let long = "ü".repeat(127);
        assert!(dir(long.as_bytes()).is_ok());
        assert_eq!(utf7(long.as_bytes()), Err(FolderError::TooLong));
    }

    fn sub(d: &[u8]) -> Result<Folder, FolderError> {
        Ok(Folder::Sub(FolderDir::from_slice(d).unwrap()))
    }

    #[test]
    fn translation() {
        assert_eq!(dir(b"Sent"), sub(b".Sent"));
        assert_eq!(dir(b"A/B"), sub(b".A.B"));
        assert_eq!(dir(b"A.B"), sub(b".A.B"));
        assert_eq!(dir(b"A/B.C"), sub(b".A.B.C"));
        assert_eq!(
            dir(b"with space/\xc3\xa9t\xc3\xa9"),
            sub(b".with space.\xc3\xa9t\xc3\xa9")
        );
        assert_eq!(dir(b"Entw&APw-rfe"), sub(b".Entw&APw-rfe"));
        assert_eq!(dir(b"INBOXES"), sub(b".INBOXES"));
        assert_eq!(dir(b"A/INBOX"), sub(b".A.INBOX"));
        assert_eq!(dir(b"A/B").unwrap().dir_str(), Some(".A.B"));
    }

    #[test]
    fn maildir_subdirectories_would_nest() {
        for n in [&b"new"[..], b"cur", b"tmp"] {
            assert!(nests_in_maildir(n), "{n:?}");
        }
        for n in [&b"Maildir"[..], b"news", b"NEW", b"", b".new"] {
            assert!(!nests_in_maildir(n), "{n:?}");
        }
    }

    #[test]
    fn a_folder_path_ends_in_a_dot_name() {
        assert!(may_be_folder(b".Lists") && may_be_folder(b".A.B"));
        assert!(!may_be_folder(b"Maildir") && !may_be_folder(b".") && !may_be_folder(b".."));
    }

    #[test]
    fn one_folder_however_spelled() {
        let same = |a: &str, b: &str| same_folder(Some(a.as_bytes()), Some(b.as_bytes()));
        assert!(same("Lists/Rust", "Lists.Rust"));
        assert!(same("Lists/Rust", "INBOX.Lists.Rust"));
        assert!(same("inbox/Work", "Work"));
        assert!(same("INBOX", "inbox/"));
        assert!(same_folder(Some(b"INBOX"), None));
        assert!(same_folder(Some(b""), None));
        assert!(!same("Work", "work"), "folder names are case-sensitive");
        assert!(!same("A.B", "A"));
        assert!(!same("INBOXES", "ES"));
        assert!(!same_folder(Some(b"Work"), None));
        // Refused names still compare by their bytes (both go to INBOX when stored).
        assert!(same("a..b", "a..b") && !same("a..b", "c..d"));
    }

    #[test]
    fn inbox() {
        for n in [&b""[..], b"INBOX", b"inbox", b"InBoX"] {
            assert_eq!(dir(n), Ok(Folder::Inbox), "{n:?}");
        }
        assert_eq!(dir(b"INBOX.Sent"), sub(b".Sent"));
        assert_eq!(dir(b"inbox/Sent/2026"), sub(b".Sent.2026"));
        assert_eq!(dir(b"INBOX/"), Ok(Folder::Inbox));
        assert_eq!(Folder::Inbox.dir(), None);
    }

    #[test]
    fn refusals() {
        assert_eq!(dir(b".."), Err(FolderError::DotDot));
        assert_eq!(dir(b"A/../B"), Err(FolderError::DotDot));
        assert_eq!(dir(b"A..B"), Err(FolderError::DotDot));
        assert_eq!(dir(b".Sent"), Err(FolderError::LeadingDot));
        assert_eq!(dir(b"INBOX..x"), Err(FolderError::LeadingDot));
        assert_eq!(dir(b"A//B"), Err(FolderError::EmptyLevel));
        assert_eq!(dir(b"/A"), Err(FolderError::EmptyLevel));
        assert_eq!(dir(b"A/"), Err(FolderError::EmptyLevel));
        assert_eq!(dir(b"A."), Err(FolderError::EmptyLevel));
        assert_eq!(dir(b"A/.B"), Err(FolderError::EmptyLevel));
        assert_eq!(dir(b"A\nB"), Err(FolderError::ControlChar(b'\n')));
        assert_eq!(dir(b"A\0"), Err(FolderError::ControlChar(0)));
        assert_eq!(dir(b"A\x7f"), Err(FolderError::ControlChar(0x7f)));
        assert_eq!(dir(b"A:B"), Err(FolderError::InfoSeparator(b':')));
        let semi = InfoSep::new(b';').unwrap();
        let utf8 = NameEncoding::Utf8;
        assert_eq!(
            folder(b"A;B", semi, utf8),
            Err(FolderError::InfoSeparator(b';'))
        );
        assert_eq!(folder(b"A:B", semi, utf8), sub(b".A:B"));
        let long = [b'x'; 254];
        assert_eq!(dir(&long), sub(&[b".".as_slice(), &long].concat()));
        assert_eq!(dir(&[b'x'; 255]), Err(FolderError::TooLong));
        assert_eq!(
            std::format!("{}", FolderError::InfoSeparator(b':')),
            "folder name contains the info separator \":\""
        );
    }
}
