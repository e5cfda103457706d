//! `--json`: one object per maildir a message went to (or, in a dry run, would go to), on one
//! line of standard output. Hand-written: a handful of fields does not earn a serialisation
//! framework. The schema (documented in the README, snapshot-tested):
//!
//! ```text
//! {"maildir": string, "path": string|null, "key": string|null, "size": number|null,
//!  "flags": string, "duplicate": bool, "dry_run": bool}
//! ```
//! `path` is the stored file (for a suppressed duplicate: the earlier copy as the index
//! recorded it, `null` if unknown); `key` is its unique name (the part before the info
//! separator); `size` the bytes stored (a duplicate's: the earlier copy's, `null` if it is
//! gone); `flags` the Maildir flags of the name (empty in new/). Paths that are not UTF-8 are
//! converted lossily (U+FFFD).

use std::fmt::Write as _;

/// One delivery report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The maildir as given.
    pub maildir: String,
    /// The message file.
    pub path: Option<String>,
    /// Its unique name.
    pub key: Option<String>,
    /// Its size.
    pub size: Option<u64>,
    /// Its flags.
    pub flags: String,
    /// A suppressed duplicate.
    pub duplicate: bool,
    /// Nothing was published (`--dry-run`).
    pub dry_run: bool,
}

/// Appends `s` to `out` as a JSON string, with the quotes (the one escaping of the binary,
/// shared with `mdeliver list --json`).
pub fn string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn opt_string(out: &mut String, s: &Option<String>) {
    match s {
        Some(s) => string(out, s),
        None => out.push_str("null"),
    }
}

impl Record {
    /// The object on one line.
    pub fn to_line(&self) -> String {
        let mut o = String::from("{\"maildir\":");
        string(&mut o, &self.maildir);
        o.push_str(",\"path\":");
        opt_string(&mut o, &self.path);
        o.push_str(",\"key\":");
        opt_string(&mut o, &self.key);
        o.push_str(",\"size\":");
        match self.size {
            Some(n) => {
                let _ = write!(o, "{n}");
            }
            None => o.push_str("null"),
        }
        o.push_str(",\"flags\":");
        string(&mut o, &self.flags);
        let _ = write!(
            o,
            ",\"duplicate\":{},\"dry_run\":{}}}",
            self.duplicate, self.dry_run
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        let mut out = String::from("x:");
        string(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(out, "x:\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn escapes_and_nulls() {
        let r = Record {
            maildir: "/m\"a\\i\nl\u{1}é".into(),
            path: None,
            key: Some("k".into()),
            size: None,
            flags: String::new(),
            duplicate: true,
            dry_run: false,
        };
        assert_eq!(
            r.to_line(),
            r#"{"maildir":"/m\"a\\i\nl\u0001é","path":null,"key":"k","size":null,"flags":"","duplicate":true,"dry_run":false}"#
        );
    }
}
