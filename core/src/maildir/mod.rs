//! The Maildir format itself, as plain values: unique file names ([`name`]), the flags after
//! `:2,` ([`flags`]) and Maildir++ folders ([`folder`]). Nothing here performs or asks for I/O
//! except [`folder::create_folder`], which works over its own small [`folder::FolderTree`].

pub mod flags;
pub mod folder;
pub mod name;
