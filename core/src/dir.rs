//! [`Dir`], the directories of a maildir, and the longest name one holds: below both
//! [`crate::fs`] and [`crate::error`] (an error notes the directory a file of it was left in)
//! and the Maildir format ([`crate::maildir`]), which use them; re-exported where they are
//! named (`fs::Dir`, `maildir::name::{NAME_MAX, NameBuf}`).

/// A directory of the maildir.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// The maildir itself (lock files, `maildirsize`, the dedup index).
    Root,
    /// `tmp/`: files being written.
    Tmp,
    /// `new/`: delivered, not yet seen by a reader.
    New,
    /// `cur/`: seen by a reader; names carry info.
    Cur,
    /// The top maildir of the Maildir++ tree when this maildir is one of its folders
    /// (`--folder`, a `.Name/` directory inside it): where the one `maildirsize` of the whole
    /// tree lives. The folder's parent directory (`..`); only a folder's delivery uses it.
    Top,
}

impl Dir {
    /// The directory's name inside the maildir (`""` for the root).
    pub const fn as_str(self) -> &'static str {
        match self {
            Dir::Root => "",
            Dir::Tmp => "tmp",
            Dir::New => "new",
            Dir::Cur => "cur",
            Dir::Top => "..",
        }
    }

    /// The three Maildir subdirectories, in creation order.
    pub const SUBDIRS: [Dir; 3] = [Dir::Tmp, Dir::New, Dir::Cur];
}

/// The longest file name Maildir names may have (`NAME_MAX` on Linux).
pub const NAME_MAX: usize = 255;

/// A file name buffer; no allocation.
pub type NameBuf = heapless::String<NAME_MAX>;
