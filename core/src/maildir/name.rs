//! Maildir file names: generating unique ones, and reading anyone's.
//!
//! Like a wire format, parsing gives a borrowed view ([`ParsedName`]) and emitting writes a
//! plain description ([`Unique`], key + flags) into a fixed-capacity [`NameBuf`].
//!
//! Our names look like
//! `1732816800.M123456P4242Q7R0123456789abcdefV803I1a2b.mail.example.org,S=1234`
//! (`:2,FLAGS` appended in cur/): seconds, `M`icroseconds, `P`id, per-process counter `Q`,
//! 64 `R`andom bits, `V` device and `I` inode of the file once it exists, the escaped host,
//! and the size. Any one of pid+counter, random bits or device+inode suffices to tell two
//! deliveries apart; together they make a collision require every source failing at once.

use crate::env::Timestamp;
use crate::maildir::flags::Flags;
use core::fmt::Write;

pub use crate::dir::{NameBuf, NAME_MAX};

/// The separator between a message's unique key and its info, by default `:`.
/// FAT, Windows and Android-shared maildirs use `;` or `!`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct InfoSep(u8);

impl InfoSep {
    /// The standard `:`.
    pub const COLON: InfoSep = InfoSep(b':');

    /// A separator; only `:`, `;` and `!` are accepted.
    pub fn new(c: u8) -> Option<InfoSep> {
        matches!(c, b':' | b';' | b'!').then_some(InfoSep(c))
    }

    /// The separator byte.
    pub const fn byte(self) -> u8 {
        self.0
    }
}

impl Default for InfoSep {
    fn default() -> Self {
        InfoSep::COLON
    }
}

/// Why a name could not be built or read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    Empty,
    /// `.` or `..`, or any name starting with a dot (hidden files are not messages).
    Dot,
    /// Contains `/` or NUL: not a plain name.
    BadByte,
    /// Longer than [`NAME_MAX`].
    TooLong,
    /// The key contains the info separator or is empty.
    BadKey,
}

/// The sources of uniqueness of one of our names.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Unique {
    /// Time the name was made.
    pub time: Timestamp,
    /// Process id, when the platform has one.
    pub pid: Option<u32>,
    /// Per-process counter.
    pub counter: u64,
    /// Random bits.
    pub random: u64,
    /// Device and inode of the message file, once known.
    pub dev_ino: Option<(u64, u64)>,
}

impl Unique {
    /// Writes the unique part (everything before the host) into `out`.
    fn emit_base(&self, out: &mut NameBuf) -> Result<(), NameError> {
        let r = (|| -> core::fmt::Result {
            write!(out, "{}.M{:06}", self.time.secs, self.time.micros)?;
            if let Some(p) = self.pid {
                write!(out, "P{p}")?;
            }
            write!(out, "Q{}R{:016x}", self.counter, self.random)?;
            if let Some((dev, ino)) = self.dev_ino {
                write!(out, "V{dev:x}I{ino:x}")?;
            }
            Ok(())
        })();
        r.map_err(|_| NameError::TooLong)
    }

    /// Emits a tmp/ name: `<unique>.<host>`.
    pub fn emit_tmp(&self, host: &str, sep: InfoSep) -> Result<NameBuf, NameError> {
        let mut out = NameBuf::new();
        self.emit_base(&mut out)?;
        out.push('.').map_err(|_| NameError::TooLong)?;
        emit_host(host, sep, &mut out, NAME_MAX - 40);
        Ok(out)
    }

    /// Emits a published name: `<unique>.<host>,S=<size>,W=<crlf size>`, plus
    /// `<sep>2,<flags>` when `info` is given (cur/ only: a name in new/ never carries info).
    /// `(size, crlf_size)`: the bytes stored, and the size with CRLF line ends, which IMAP
    /// servers report (RFC822.SIZE); Dovecot reads both from the name instead of opening the
    /// file, as it writes them itself.
    pub fn emit_published(
        &self,
        host: &str,
        (size, crlf_size): (u64, u64),
        info: Option<Flags>,
        sep: InfoSep,
    ) -> Result<NameBuf, NameError> {
        let mut out = NameBuf::new();
        self.emit_base(&mut out)?;
        out.push('.').map_err(|_| NameError::TooLong)?;
        // Leave room for ",S=<20 digits>,W=<20 digits>" and ":2," + 52 flag letters.
        emit_host(host, sep, &mut out, NAME_MAX - 47 - 55);
        write!(out, ",S={size},W={crlf_size}").map_err(|_| NameError::TooLong)?;
        if let Some(flags) = info {
            push_info(&mut out, flags, sep)?;
        }
        Ok(out)
    }

    /// Reads the unique part back from one of our keys (the inverse of the emitters, for
    /// tests and diagnostics). Returns the parsed value and the escaped host.
    pub fn parse(key: &str) -> Option<(Unique, &str)> {
        // Our names are ASCII (the host is escaped); anything else is someone else's name,
        // and byte positions below must fall on character boundaries.
        if !key.is_ascii() {
            return None;
        }
        let base = key.split(',').next()?;
        let (secs, rest) = base.split_once('.')?;
        let secs: u64 = secs.parse().ok()?;
        let (uniq, host) = rest.split_once('.')?;
        let mut u = Unique {
            time: Timestamp { secs, micros: 0 },
            ..Unique::default()
        };
        let b = uniq.as_bytes();
        let mut i = 0;
        let mut dev = None;
        while i < b.len() {
            let tag = b[i];
            i += 1;
            let start = i;
            let hex = matches!(tag, b'R' | b'V' | b'I');
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || (hex && b[i].is_ascii_hexdigit() && b[i].is_ascii_lowercase()))
            {
                i += 1;
            }
            let field = &uniq[start..i];
            if field.is_empty() {
                return None;
            }
            match tag {
                b'M' => u.time.micros = field.parse().ok()?,
                b'P' => u.pid = Some(field.parse().ok()?),
                b'Q' => u.counter = field.parse().ok()?,
                b'R' => u.random = u64::from_str_radix(field, 16).ok()?,
                b'V' => dev = Some(u64::from_str_radix(field, 16).ok()?),
                b'I' => u.dev_ino = Some((dev?, u64::from_str_radix(field, 16).ok()?)),
                _ => return None,
            }
        }
        Some((u, host))
    }
}

/// Emits djb's classic name `<secs>.<pid>.<host>` (the `Classic` strategy; simulator only).
pub fn emit_classic(secs: u64, pid: u32, host: &str, sep: InfoSep) -> NameBuf {
    let mut out = NameBuf::new();
    let _ = write!(out, "{secs}.{pid}.");
    emit_host(host, sep, &mut out, NAME_MAX);
    out
}

/// Appends the host, escaped as the Maildir spec asks (`/`→`\057`, `:`→`\072`), and also
/// escaping the info separator, `,` (field separator), `\` and any byte that is not printable
/// ASCII, so that the name parses back unambiguously. Stops before `limit` bytes.
pub fn emit_host(host: &str, sep: InfoSep, out: &mut NameBuf, limit: usize) {
    for &b in host.as_bytes() {
        let plain = b.is_ascii_graphic() && !matches!(b, b'/' | b':' | b',' | b'\\') && b != sep.0;
        let need = if plain { 1 } else { 4 };
        if out.len() + need > limit {
            break;
        }
        if plain {
            let _ = out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:03o}");
        }
    }
    if host.is_empty() {
        let _ = out.push_str("localhost");
    }
}

fn push_info(out: &mut NameBuf, flags: Flags, sep: InfoSep) -> Result<(), NameError> {
    out.push(sep.0 as char).map_err(|_| NameError::TooLong)?;
    out.push_str("2,").map_err(|_| NameError::TooLong)?;
    for l in flags.letters() {
        out.push(l as char).map_err(|_| NameError::TooLong)?;
    }
    Ok(())
}

/// Builds the name for a message with unique `key` in the given place: in new/ the bare key,
/// in cur/ `key<sep>2,<flags>`. Used when flags change or a message moves new/→cur/.
pub fn emit_with_flags(
    key: &str,
    flags: Option<Flags>,
    sep: InfoSep,
) -> Result<NameBuf, NameError> {
    check_plain(key)?;
    if key.as_bytes().contains(&sep.0) {
        return Err(NameError::BadKey);
    }
    let mut out = NameBuf::new();
    out.push_str(key).map_err(|_| NameError::TooLong)?;
    if let Some(f) = flags {
        push_info(&mut out, f, sep)?;
    }
    Ok(out)
}

fn check_plain(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.starts_with('.') {
        return Err(NameError::Dot);
    }
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    if name.bytes().any(|b| b == b'/' || b == 0) {
        return Err(NameError::BadByte);
    }
    Ok(())
}

/// A borrowed view of any Maildir file name (ours, Dovecot's `,S=,W=`, mbsync's `,U=`,
/// offlineimap's `,FMD5=`, courier's, plain djb ones).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ParsedName<'a> {
    /// The unique key: everything before the info separator.
    pub key: &'a str,
    /// The part of the key before the first `,` (the name without its fields).
    pub base: &'a str,
    /// The info after the separator (`2,FLAGS`, or an experimental `1,...`), if any.
    pub info: Option<&'a str>,
    /// The flags, when info is `2,...`; empty otherwise.
    pub flags: Flags,
}

impl<'a> ParsedName<'a> {
    /// Reads a file name. Refuses what cannot be a message (dot files, empty, `/`, NUL).
    pub fn parse(name: &'a str, sep: InfoSep) -> Result<ParsedName<'a>, NameError> {
        check_plain(name)?;
        let (key, info) = match name.as_bytes().iter().position(|&b| b == sep.0) {
            Some(i) => (&name[..i], Some(&name[i + 1..])),
            None => (name, None),
        };
        if key.is_empty() {
            return Err(NameError::BadKey);
        }
        let flags = match info {
            Some(i) => i
                .strip_prefix("2,")
                .map(Flags::parse_lenient)
                .unwrap_or_default(),
            None => Flags::EMPTY,
        };
        let base = key.split(',').next().unwrap_or(key);
        Ok(ParsedName {
            key,
            base,
            info,
            flags,
        })
    }

    /// The `,K=V` fields after the base, in order (`S`, `W`, `U`, `FMD5`, ...).
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let key: &'a str = self.key;
        key.split(',').skip(1).filter_map(|f| f.split_once('='))
    }

    /// The value of field `k`, if present.
    pub fn field(&self, k: &str) -> Option<&'a str> {
        self.fields().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    /// The message size from `,S=`, if present and numeric.
    pub fn size(&self) -> Option<u64> {
        self.field("S")?.parse().ok()
    }

    /// Whether the name carries info (it must not, in new/).
    pub fn has_info(&self) -> bool {
        self.info.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn u() -> Unique {
        Unique {
            time: Timestamp {
                secs: 1732816800,
                micros: 42,
            },
            pid: Some(4242),
            counter: 7,
            random: 0x0123_4567_89ab_cdef,
            dev_ino: Some((0x803, 0x1a2b)),
        }
    }

    #[test]
    fn published_name_exact() {
        let n = u()
            .emit_published("mail.example.org", (1234, 1270), None, InfoSep::COLON)
            .unwrap();
        assert_eq!(
            n,
            "1732816800.M000042P4242Q7R0123456789abcdefV803I1a2b.mail.example.org,S=1234,W=1270"
        );
        let c = u()
            .emit_published(
                "h",
                (5, 6),
                Some(Flags::parse("SR").unwrap()),
                InfoSep::COLON,
            )
            .unwrap();
        assert_eq!(
            c,
            "1732816800.M000042P4242Q7R0123456789abcdefV803I1a2b.h,S=5,W=6:2,RS"
        );
    }

    #[test]
    fn round_trip() {
        for pid in [None, Some(1), Some(u32::MAX)] {
            for dev_ino in [None, Some((0, 0)), Some((u64::MAX, u64::MAX))] {
                let v = Unique {
                    pid,
                    dev_ino,
                    ..u()
                };
                let n = v
                    .emit_published(
                        "host",
                        (99, 101),
                        Some(Flags::parse("T").unwrap()),
                        InfoSep::COLON,
                    )
                    .unwrap();
                let p = ParsedName::parse(&n, InfoSep::COLON).unwrap();
                assert_eq!(p.size(), Some(99));
                assert_eq!(p.flags.to_string(), "T");
                let (back, host) = Unique::parse(p.key).unwrap();
                assert_eq!(back, v);
                assert_eq!(host, "host");
            }
        }
    }

    #[test]
    fn host_escaping() {
        let n = u().emit_tmp("a/b:c,d\\e", InfoSep::COLON).unwrap();
        assert!(n.ends_with(".a\\057b\\072c\\054d\\134e"), "{n}");
        let n = u().emit_tmp("x;y", InfoSep::new(b';').unwrap()).unwrap();
        assert!(n.ends_with(".x\\073y"), "{n}");
        let n = u().emit_tmp("", InfoSep::COLON).unwrap();
        assert!(n.ends_with(".localhost"));
        // A huge host name is cut, never overflowing NAME_MAX even with flags and size.
        let long = "h".repeat(400);
        let all = Flags::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz").unwrap();
        let n = u()
            .emit_published(&long, (u64::MAX, u64::MAX), Some(all), InfoSep::COLON)
            .unwrap();
        assert!(n.len() <= NAME_MAX);
        assert!(ParsedName::parse(&n, InfoSep::COLON).unwrap().flags == all);
    }

    #[test]
    fn new_never_gets_info() {
        let n = emit_with_flags("123.abc,S=4", None, InfoSep::COLON).unwrap();
        assert_eq!(n, "123.abc,S=4");
        let n = emit_with_flags("123.abc,S=4", Some(Flags::EMPTY), InfoSep::COLON).unwrap();
        assert_eq!(n, "123.abc,S=4:2,");
        assert_eq!(
            emit_with_flags("a:b", None, InfoSep::COLON),
            Err(NameError::BadKey)
        );
        assert_eq!(
            emit_with_flags("../x", None, InfoSep::COLON),
            Err(NameError::Dot)
        );
        assert_eq!(
            emit_with_flags("a/x", None, InfoSep::COLON),
            Err(NameError::BadByte)
        );
    }

    #[test]
    fn foreign_names() {
        let d = ParsedName::parse(
            "1035478339.27041_118.foo.org,S=1000,W=1030:2,S",
            InfoSep::COLON,
        )
        .unwrap();
        assert_eq!(d.key, "1035478339.27041_118.foo.org,S=1000,W=1030");
        assert_eq!(d.base, "1035478339.27041_118.foo.org");
        assert_eq!(d.size(), Some(1000));
        assert_eq!(d.field("W"), Some("1030"));
        assert_eq!(d.flags.to_string(), "S");

        let m = ParsedName::parse("1700000000.123_4.host,U=17:2,FRS", InfoSep::COLON).unwrap();
        assert_eq!(m.field("U"), Some("17"));
        assert_eq!(m.flags.to_string(), "FRS");

        let o = ParsedName::parse(
            "1700000000_0.9999.host,U=1,FMD5=0123456789abcdef0123456789abcdef:2,",
            InfoSep::COLON,
        )
        .unwrap();
        assert_eq!(o.field("FMD5"), Some("0123456789abcdef0123456789abcdef"));
        assert!(o.flags.is_empty() && o.has_info());

        let djb = ParsedName::parse("966289421.1234.host", InfoSep::COLON).unwrap();
        assert_eq!(djb.info, None);
        assert_eq!(djb.size(), None);

        // Experimental info: kept, no flags taken from it.
        let e = ParsedName::parse("1.2.h:1,xyz", InfoSep::COLON).unwrap();
        assert_eq!(e.info, Some("1,xyz"));
        assert!(e.flags.is_empty());

        // Windows-style separator.
        let w = ParsedName::parse("1.2.h;2,ST", InfoSep::new(b';').unwrap()).unwrap();
        assert_eq!(w.flags.to_string(), "ST");
    }

    #[test]
    fn refuses_non_messages() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\0b", ":2,S"] {
            assert!(ParsedName::parse(bad, InfoSep::COLON).is_err(), "{bad:?}");
        }
        let long = "a".repeat(256);
        assert_eq!(
            ParsedName::parse(&long, InfoSep::COLON),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn foreign_non_ascii_keys_are_not_ours() {
        assert_eq!(Unique::parse("1.M\u{e9}1.h"), None);
        assert_eq!(Unique::parse("1.Q1\u{1F600}.h"), None);
    }

    #[test]
    fn classic_name() {
        assert_eq!(emit_classic(100, 7, "h/x", InfoSep::COLON), "100.7.h\\057x");
    }
}
