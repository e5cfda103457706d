//! Subscribing a folder that `-c` created, so that IMAP clients (which by default show only
//! subscribed folders) show it: what goes into the IMAP servers' subscription files.
//!
//! Decisions:
//! - Dovecot keeps `subscriptions` in the maildir: one folder name per line. Dovecot 2.3 writes
//!   a new file with the header `V\t2\n\n` (version 2), which separates the levels of a name
//!   with a tab (`Lists\trust`), and so does mdeliver; an older file without the header
//!   (version 1) gets the name with `.` between the levels (`Lists.rust`). The name is the
//!   folder's directory without its leading `.`, in the encoding the directory uses (what
//!   `doveadm mailbox create -s` writes, checked by `tests/tests/cli_dovecot.rs`).
//! - Courier keeps `courierimapsubscribed`: one line per folder, the full IMAP name with its
//!   `INBOX.` prefix (`INBOX.Lists.rust`). It is written only where the file already exists
//!   (a Courier maildir); Dovecot's is always written.
//! - A name already listed is not added again; the rest of the file is kept byte for byte. The
//!   adapter replaces the file under the servers' own dotlock (`<file>.lock`, created
//!   exclusively, then renamed over the file), so a concurrent subscriber, ours or the
//!   server's, is never lost.

use crate::maildir::folder::FolderDir;

/// A subscription file.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionFile {
    /// Dovecot's `subscriptions`.
    Dovecot,
    /// Courier's `courierimapsubscribed`.
    Courier,
}

impl SubscriptionFile {
    /// Both, in the order they are written.
    pub const ALL: [SubscriptionFile; 2] = [SubscriptionFile::Dovecot, SubscriptionFile::Courier];

    /// The file's name inside the maildir.
    pub const fn file_name(self) -> &'static str {
        match self {
            SubscriptionFile::Dovecot => "subscriptions",
            SubscriptionFile::Courier => "courierimapsubscribed",
        }
    }

    /// Whether the file is made when the maildir has none.
    pub const fn create_if_missing(self) -> bool {
        matches!(self, SubscriptionFile::Dovecot)
    }
}

/// Dovecot's version 2 header.
const DOVECOT_V2: &[u8] = b"V\t2\n\n";

/// One line of a subscription file (without its newline).
pub type Line = heapless::Vec<u8, 300>;

/// What to append to a subscription file: `prefix`, then `line` and a newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addition {
    /// Dovecot's header for a new file, a newline when the file does not end with one, or
    /// nothing.
    pub prefix: &'static [u8],
    /// The folder's line.
    pub line: Line,
}

/// What to append to `file`, whose current content is `existing` (empty when there is no
/// file), to subscribe the folder directory `dir` (`.A.B`, from [`crate::maildir::folder::folder`]);
/// `None` when it is listed already.
pub fn addition(file: SubscriptionFile, dir: &FolderDir, existing: &[u8]) -> Option<Addition> {
    let name = dir.strip_prefix(b".").unwrap_or(dir);
    let v2 = file == SubscriptionFile::Dovecot
        && (existing.is_empty() || existing.starts_with(DOVECOT_V2));
    let mut line = Line::new();
    // A folder directory has at most 255 bytes, so this always fits.
    if file == SubscriptionFile::Courier {
        let _ = line.extend_from_slice(b"INBOX.");
    }
    for (i, level) in name.split(|&b| b == b'.').enumerate() {
        if i > 0 {
            let _ = line.push(if v2 { b'\t' } else { b'.' });
        }
        let _ = line.extend_from_slice(level);
    }
    let body = existing.strip_prefix(DOVECOT_V2).unwrap_or(existing);
    if body.split(|&b| b == b'\n').any(|l| l == &line[..]) {
        return None;
    }
    let prefix: &'static [u8] = if existing.is_empty() && v2 {
        DOVECOT_V2
    } else if !existing.is_empty() && !existing.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    };
    Some(Addition { prefix, line })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::folder::{folder, Folder, NameEncoding};
    use crate::maildir::name::InfoSep;

    fn dir(name: &str) -> FolderDir {
        match folder(name.as_bytes(), InfoSep::COLON, NameEncoding::Utf7).unwrap() {
            Folder::Sub(d) => d,
            Folder::Inbox => unreachable!(),
        }
    }

    fn add(file: SubscriptionFile, name: &str, existing: &[u8]) -> Option<std::vec::Vec<u8>> {
        addition(file, &dir(name), existing).map(|a| {
            let mut out = existing.to_vec();
            out.extend_from_slice(a.prefix);
            out.extend_from_slice(&a.line);
            out.push(b'\n');
            out
        })
    }

    /// The bytes `doveadm mailbox create -s` (Dovecot 2.3) writes, and Courier's format.
    #[test]
    fn files_after_subscribing() {
        use SubscriptionFile::{Courier, Dovecot};
        let new = add(Dovecot, "Entwürfe", b"").unwrap();
        assert_eq!(new, b"V\t2\n\nEntw&APw-rfe\n");
        assert_eq!(
            add(Dovecot, "Lists/rust", &new).unwrap(),
            b"V\t2\n\nEntw&APw-rfe\nLists\trust\n"
        );
        assert_eq!(add(Dovecot, "Entwürfe", &new), None);
        // Version 1 (no header): levels separated by '.'; a missing last newline is added.
        assert_eq!(
            add(Dovecot, "Lists/rust", b"Sent").unwrap(),
            b"Sent\nLists.rust\n"
        );
        assert_eq!(add(Dovecot, "Lists/rust", b"Lists.rust\n"), None);
        assert_eq!(add(Dovecot, "A", b"AB\n").unwrap(), b"AB\nA\n");
        assert_eq!(
            add(Courier, "Entwürfe", b"").unwrap(),
            b"INBOX.Entw&APw-rfe\n"
        );
        assert_eq!(
            add(Courier, "Lists/rust", b"INBOX.Sent\n").unwrap(),
            b"INBOX.Sent\nINBOX.Lists.rust\n"
        );
        assert_eq!(add(Courier, "Sent", b"INBOX.Sent\n"), None);
        assert_eq!(Dovecot.file_name(), "subscriptions");
        assert!(!Courier.create_if_missing());
    }
}
