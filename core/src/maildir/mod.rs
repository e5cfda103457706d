//! The Maildir format itself, as plain values: unique file names ([`name`]), the flags after
//! `:2,` ([`flags`]), Maildir++ folders ([`folder`]), their names in modified UTF-7 ([`mutf7`]) and the
//! IMAP servers' subscription files ([`subscription`]). Nothing here performs or asks for I/O
//! except [`folder::create_folder`], which works over its own small [`folder::FolderTree`].

pub mod flags;
pub mod folder;
pub mod mutf7;
pub mod name;
pub mod subscription;
