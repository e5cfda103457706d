//! Folder names as IMAP servers keep them on disk: modified UTF-7 (RFC 3501, 5.1.3).
//!
//! Dovecot (by default) and Courier store a Maildir++ folder named `Entwürfe` as the directory
//! `.Entw&APw-rfe`, and list a directory `.Entwürfe` under a different, garbled name, so a
//! message delivered there is never seen. So a folder name given in UTF-8 is encoded the way
//! the IMAP server reading the maildir does ([`NameEncoding::Utf7`], the default), or kept as
//! UTF-8 for Dovecot's `:UTF-8` layout option ([`NameEncoding::Utf8`]).
//!
//! The encoding, exactly as RFC 3501 says: printable US-ASCII (0x20–0x7e) stands for itself,
//! except `&`, which is written `&-`; every run of other characters is written as `&`, the
//! modified BASE64 (`,` instead of `/`, no `=` padding) of their UTF-16 code units, and `-`.
//! A name already written in modified UTF-7 (`Entw&APw-rfe`) is therefore a *different* name
//! (`Entw&-APw-rfe`): names are given as the user sees them, in UTF-8.

/// How a folder name's levels are written in the folder's directory name.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum NameEncoding {
    /// Modified UTF-7 (RFC 3501): what Dovecot's default layout and Courier read.
    #[default]
    Utf7,
    /// The UTF-8 bytes as given: Dovecot with `mail_location = maildir:...:UTF-8`.
    Utf8,
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// The output did not fit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Full;

/// Appends the modified UTF-7 form of `name` to `out`.
pub fn encode<const N: usize>(name: &str, out: &mut heapless::Vec<u8, N>) -> Result<(), Full> {
    let mut push = |b: u8| out.push(b).map_err(|_| Full);
    // Bits not yet written as BASE64 digits (at most 5 after each code unit) and their count;
    // `None` outside a BASE64 run.
    let mut run: Option<(u32, u32)> = None;
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            if let Some((bits, n)) = run.take() {
                if n > 0 {
                    push(BASE64[((bits << (6 - n)) & 63) as usize])?;
                }
                push(b'-')?;
            }
            push(c as u8)?;
            if c == '&' {
                push(b'-')?;
            }
            continue;
        }
        let (mut bits, mut n) = match run {
            Some(r) => r,
            None => {
                push(b'&')?;
                (0, 0)
            }
        };
        let mut units = [0u16; 2];
        for &u in c.encode_utf16(&mut units).iter() {
            bits = (bits << 16) | u32::from(u);
            n += 16;
            while n >= 6 {
                n -= 6;
                push(BASE64[((bits >> n) & 63) as usize])?;
            }
            bits &= (1 << n) - 1;
        }
        run = Some((bits, n));
    }
    if let Some((bits, n)) = run {
        if n > 0 {
            push(BASE64[((bits << (6 - n)) & 63) as usize])?;
        }
        push(b'-')?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> std::string::String {
        let mut out = heapless::Vec::<u8, 255>::new();
        encode(s, &mut out).unwrap();
        std::string::String::from_utf8(out.to_vec()).unwrap()
    }

    /// The examples of RFC 3501 5.1.3 and the names of issue 13, byte for byte.
    #[test]
    fn rfc_3501_examples() {
        assert_eq!(enc("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(
            enc("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(enc("&"), "&-");
        assert_eq!(enc("A&B"), "A&-B");
        assert_eq!(enc("Sent"), "Sent");
        assert_eq!(enc(""), "");
        assert_eq!(enc("Éléments envoyés"), "&AMk-l&AOk-ments envoy&AOk-s");
        assert_eq!(enc("Черновики"), "&BCcENQRABD0EPgQyBDgEOgQ4-");
        // A character outside the BMP: a UTF-16 surrogate pair in one run.
        assert_eq!(enc("📧"), "&2D3c5w-");
        assert_eq!(enc("a📧b"), "a&2D3c5w-b");
    }

    #[test]
    fn too_long_is_an_error() {
        let mut out = heapless::Vec::<u8, 4>::new();
        assert_eq!(encode("Entwürfe", &mut out), Err(Full));
        let mut out = heapless::Vec::<u8, 4>::new();
        assert_eq!(encode("Sent", &mut out), Ok(()));
    }
}
