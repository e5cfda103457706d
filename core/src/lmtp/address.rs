//! A recipient address as a path component: lower-cased, its subaddress (`user+tag`) split off,
//! checked safe to put into a file name, and expanded into a maildir template.
//!
//! Decisions:
//! - Addresses are compared and expanded lower-cased (ASCII): `Bob@Example.ORG` and
//!   `bob@example.org` are one mailbox.
//! - The subaddress delimiter is `+`; the tag never reaches the path (`bob+lists@x` is `bob@x`).
//! - A quoted local part is its text (`"bob"@x` is `bob@x`); the subaddress is not looked at.
//! - An address whose local part (without its subaddress) or domain could name something
//!   outside the template's place is refused: empty, starting with a dot, holding a slash, a
//!   backslash, a quote or anything outside printable ASCII. Such an address cannot be a
//!   mailbox here, so the refusal is permanent (`553 5.1.3`).
//! - A template is checked once, at start-up: only `{local}`, `{domain}` and `{rcpt}`, and at
//!   least one of them.

use core::fmt;

use crate::message::ADDRESS_MAX;

/// The subaddress delimiter.
pub const DELIMITER: u8 = b'+';

/// A recipient, lower-cased, as the parts a template uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// `local@domain`, lower-cased, without the subaddress.
    key: heapless::String<ADDRESS_MAX>,
    /// Where `@` is in `key`.
    at: usize,
}

/// Why an address cannot name a mailbox.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No `@domain`, or nothing before it.
    NoDomain,
    /// A character that cannot go into a path (or is not printable ASCII).
    Character(u8),
    /// A local part or domain that starts with a dot.
    LeadingDot,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NoDomain => f.write_str("the address needs a local part and a domain"),
            Refused::Character(b) => write!(f, "the address contains the character 0x{b:02x}"),
            Refused::LeadingDot => f.write_str("a part of the address starts with a dot"),
        }
    }
}

fn part_ok(p: &str) -> Result<(), Refused> {
    if p.is_empty() {
        return Err(Refused::NoDomain);
    }
    if p.starts_with('.') {
        return Err(Refused::LeadingDot);
    }
    match p
        .bytes()
        .find(|&b| !b.is_ascii_graphic() || matches!(b, b'/' | b'\\' | b'"' | b'@'))
    {
        Some(b) => Err(Refused::Character(b)),
        None => Ok(()),
    }
}

impl Recipient {
    /// Parses an address (as [`super::command::Command::Rcpt`] gives it). A quoted local part
    /// is its text (`"bob"@x` is `bob@x`, RFC 5321 4.1.2); only what reaches the path (the
    /// local part without its subaddress, and the domain) is checked.
    pub fn parse(addr: &[u8]) -> Result<Recipient, Refused> {
        let at = addr
            .iter()
            .rposition(|&b| b == b'@')
            .ok_or(Refused::NoDomain)?;
        let (local, domain) = (&addr[..at], &addr[at + 1..]);
        // The local part's text: a quoted string's, without the quotes and escapes.
        let mut text = heapless::Vec::<u8, ADDRESS_MAX>::new();
        match local {
            [b'"', inner @ .., b'"'] => {
                let mut escaped = false;
                for &b in inner {
                    if b == b'\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    escaped = false;
                    text.push(b).map_err(|_| Refused::NoDomain)?;
                }
            }
            _ => text
                .extend_from_slice(local)
                .map_err(|_| Refused::NoDomain)?,
        }
        let local = match text.iter().position(|&b| b == DELIMITER) {
            Some(i) => &text[..i],
            None => &text[..],
        };
        if let Some(&b) = local.iter().chain(domain).find(|b| !b.is_ascii_graphic()) {
            return Err(Refused::Character(b));
        }
        let mut key = heapless::String::new();
        for &b in local.iter().chain(b"@").chain(domain) {
            // Printable ASCII was checked above, and the input fits ADDRESS_MAX.
            key.push(char::from(b.to_ascii_lowercase()))
                .map_err(|_| Refused::NoDomain)?;
        }
        let r = Recipient {
            at: local.len(),
            key,
        };
        part_ok(r.local())?;
        part_ok(r.domain())?;
        Ok(r)
    }

    /// The local part without the subaddress.
    pub fn local(&self) -> &str {
        &self.key[..self.at]
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.key[self.at + 1..]
    }

    /// `local@domain` (the map file's key and `{rcpt}`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `@domain` (the map file's catch-all key for the domain).
    pub fn domain_key(&self) -> &str {
        &self.key[self.at..]
    }
}

/// What is wrong with a maildir template.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{` without its `}`.
    Unclosed,
    /// A placeholder other than `{local}`, `{domain}`, `{rcpt}`.
    Unknown,
    /// No placeholder at all: every recipient would share one maildir.
    NoPlaceholder,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplateError::Unclosed => "a '{' without its '}'",
            TemplateError::Unknown => "unknown placeholder (known: {local}, {domain}, {rcpt})",
            TemplateError::NoPlaceholder => {
                "no placeholder: give {local}, {domain} or {rcpt} (or a map file)"
            }
        })
    }
}

fn pieces<'t>(
    template: &'t str,
    mut piece: impl FnMut(Result<&'t str, &'t str>) -> fmt::Result,
) -> Result<bool, TemplateError> {
    let mut rest = template;
    let mut any = false;
    while let Some(open) = rest.find('{') {
        piece(Ok(&rest[..open])).map_err(|_| TemplateError::Unknown)?;
        let close = rest[open..].find('}').ok_or(TemplateError::Unclosed)? + open;
        let name = &rest[open + 1..close];
        if !matches!(name, "local" | "domain" | "rcpt") {
            return Err(TemplateError::Unknown);
        }
        piece(Err(name)).map_err(|_| TemplateError::Unknown)?;
        any = true;
        rest = &rest[close + 1..];
    }
    piece(Ok(rest)).map_err(|_| TemplateError::Unknown)?;
    Ok(any)
}

/// Checks a template (see the module docs).
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    match pieces(template, |_| Ok(()))? {
        true => Ok(()),
        false => Err(TemplateError::NoPlaceholder),
    }
}

/// Writes `template` with `r`'s parts in place of the placeholders.
pub fn expand<W: fmt::Write>(template: &str, r: &Recipient, out: &mut W) -> fmt::Result {
    pieces(template, |p| match p {
        Ok(text) => out.write_str(text),
        Err("local") => out.write_str(r.local()),
        Err("domain") => out.write_str(r.domain()),
        Err(_) => out.write_str(r.key()),
    })
    .map(|_| ())
    .map_err(|_| fmt::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn expanded(t: &str, a: &[u8]) -> String {
        let mut s = String::new();
        expand(t, &Recipient::parse(a).unwrap(), &mut s).unwrap();
        s
    }

    #[test]
    fn lower_cased_and_the_subaddress_dropped() {
        let r = Recipient::parse(b"Bob+Lists@Example.ORG").unwrap();
        assert_eq!((r.local(), r.domain()), ("bob", "example.org"));
        assert_eq!(
            (r.key(), r.domain_key()),
            ("bob@example.org", "@example.org")
        );
        assert_eq!(
            expanded("/var/vmail/{domain}/{local}/Maildir", b"Bob+x@Example.org"),
            "/var/vmail/example.org/bob/Maildir"
        );
        assert_eq!(expanded("/m/{rcpt}", b"a@b"), "/m/a@b");
        assert_eq!(expanded("/m/{local}{local}", b"a+@b"), "/m/aa");
    }

    #[test]
    fn a_quoted_local_part_is_its_text_and_the_subaddress_is_not_checked() {
        assert_eq!(expanded("/m/{local}", b"\"Bob\"@x"), "/m/bob");
        assert_eq!(expanded("/m/{rcpt}", b"\"bob+a b\"@X"), "/m/bob@x");
        assert_eq!(expanded("/m/{local}", b"bob+a\xc3\xa9@x"), "/m/bob");
        assert_eq!(expanded("/m/{local}", b"\"b\\ob\"@x"), "/m/bob");
    }

    #[test]
    fn nothing_that_could_leave_the_template_is_accepted() {
        for (a, why) in [
            (&b"../etc@x"[..], Refused::LeadingDot),
            (b"a@.", Refused::LeadingDot),
            (b"a/b@x", Refused::Character(b'/')),
            (b"a@x/..", Refused::Character(b'/')),
            (b"a\\b@x", Refused::Character(b'\\')),
            (b"\"a b\"@x", Refused::Character(b' ')),
            (b"\"a/b\"@x", Refused::Character(b'/')),
            (b"\"a\\\"b\"@x", Refused::Character(b'"')),
            (b"\"../x\"@x", Refused::LeadingDot),
            (b"\xc3\xa9@x", Refused::Character(0xc3)),
            (b"a@", Refused::NoDomain),
            (b"@x", Refused::NoDomain),
            (b"+tag@x", Refused::NoDomain),
            (b"bob", Refused::NoDomain),
        ] {
            assert_eq!(
                Recipient::parse(a),
                Err(why),
                "{:?}",
                String::from_utf8_lossy(a)
            );
        }
    }

    #[test]
    fn templates_are_checked() {
        assert_eq!(check_template("/v/{domain}/{local}"), Ok(()));
        assert_eq!(check_template("/v/{user}"), Err(TemplateError::Unknown));
        assert_eq!(check_template("/v/{local"), Err(TemplateError::Unclosed));
        assert_eq!(
            check_template("/v/Maildir"),
            Err(TemplateError::NoPlaceholder)
        );
    }
}
