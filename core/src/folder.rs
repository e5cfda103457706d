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
//! - Names are taken as given bytes (modified UTF-7 or UTF-8 alike); only the bytes above are
//!   special.

use crate::name::{InfoSep, NAME_MAX};
use core::fmt;

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

/// Translates a folder name (see the module docs).
pub fn folder(name: &[u8], sep: InfoSep) -> Result<Folder, FolderError> {
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
        dir.extend_from_slice(level)
            .map_err(|_| FolderError::TooLong)?;
    }
    Ok(Folder::Sub(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &[u8]) -> Result<Folder, FolderError> {
        folder(name, InfoSep::COLON)
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
        assert_eq!(folder(b"A;B", semi), Err(FolderError::InfoSeparator(b';')));
        assert_eq!(folder(b"A:B", semi), sub(b".A:B"));
        let long = [b'x'; 254];
        assert_eq!(dir(&long), sub(&[b".".as_slice(), &long].concat()));
        assert_eq!(dir(&[b'x'; 255]), Err(FolderError::TooLong));
        assert_eq!(
            std::format!("{}", FolderError::InfoSeparator(b':')),
            "folder name contains the info separator \":\""
        );
    }
}
