//! The `body` test's values (RFC 5173): the body as it is (`:raw`), or the MIME parts of
//! given content types, decoded (`:content`, `:text`).
//!
//! Memory: the interpreter sees the body as one slice the caller holds (the driver reads the
//! body of the message in tmp/ into a buffer of its choosing, only when the script requires
//! `body`: [`super::Context::body`]); a body longer than that buffer is tested on its start
//! only, and the caller says so (`sieve test` prints it). MIME parts are found in that slice
//! without copying; one part at a time is decoded (base64, quoted-printable) into the
//! interpreter's scratch buffer, and a part longer than the scratch is compared cut at its
//! size. Nesting is followed [`DEPTH_MAX`] levels deep.
//!
//! What is a text part: `:text` takes the parts of type `text/*`, as `:content "text"` does
//! (RFC 5173 5.3 leaves the choice to the implementation; Pigeonhole 2.3 does the same for
//! `text/plain` and converts `text/html` to text, which this one does not).

use super::header;
use super::mime;

/// How deeply multiparts nest before the walk stops looking deeper.
pub const DEPTH_MAX: u32 = 16;

/// One MIME entity: its header block (the fields, without the empty line) and its body.
#[derive(Clone, Copy)]
pub struct Entity<'m> {
    /// The header block.
    pub header: &'m [u8],
    /// The body.
    pub body: &'m [u8],
}

/// Splits a part into its header block and body at the first empty line. A part that starts
/// with an empty line has no fields.
pub fn split_part(part: &[u8]) -> Entity<'_> {
    let mut at = 0;
    while at < part.len() {
        let end = part[at..]
            .iter()
            .position(|c| *c == b'\n')
            .map_or(part.len(), |p| at + p + 1);
        let line = &part[at..end];
        if line == b"\n" || line == b"\r\n" {
            return Entity {
                header: &part[..at],
                body: &part[end..],
            };
        }
        at = end;
    }
    Entity {
        header: part,
        body: &[],
    }
}

/// The content type of an entity, in lower case into `out` (`type/subtype`), and the value of
/// its `boundary` parameter; `text/plain` when it has none (RFC 2045 5.2).
fn content_type<'h>(header: &'h [u8], out: &mut [u8; 128]) -> (usize, Option<&'h [u8]>) {
    let mut found: Option<&'h [u8]> = None;
    header::each_field(header, b"content-type", |raw| {
        found = Some(raw);
        true
    });
    let default = b"text/plain";
    let Some(raw) = found else {
        out[..default.len()].copy_from_slice(default);
        return (default.len(), None);
    };
    let raw = trim(raw);
    let end = raw
        .iter()
        .position(|c| matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(raw.len());
    let ty = &raw[..end];
    if !ty.contains(&b'/') || ty.len() > out.len() {
        out[..default.len()].copy_from_slice(default);
        return (default.len(), None);
    }
    for (o, c) in out.iter_mut().zip(ty) {
        *o = c.to_ascii_lowercase();
    }
    (ty.len(), param(&raw[end..], b"boundary"))
}

/// The value of the parameter `name` in `; name=value; ...` (quotes removed).
fn param<'v>(params: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    let mut rest = params;
    while let Some(semi) = rest.iter().position(|c| *c == b';') {
        rest = &rest[semi + 1..];
        let p = trim(rest);
        let eq = p.iter().position(|c| *c == b'=')?;
        let value = trim(&p[eq + 1..]);
        if trim(&p[..eq]).eq_ignore_ascii_case(name) {
            if let Some(q) = value.strip_prefix(b"\"") {
                let close = q.iter().position(|c| *c == b'"').unwrap_or(q.len());
                return Some(&q[..close]);
            }
            let end = value
                .iter()
                .position(|c| matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(value.len());
            return Some(&value[..end]);
        }
    }
    None
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    let s = &s[start..];
    let end = s
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |p| p + 1);
    &s[..end]
}

/// Whether a content type (`type/subtype`, lower case) is one `:content` asks for: a type
/// alone matches every subtype, `type/subtype` itself, and the empty string every part
/// (RFC 5173 5.2), compared case-insensitively.
pub fn type_matches(ty: &[u8], want: &[u8]) -> bool {
    if want.is_empty() {
        return true;
    }
    if want.contains(&b'/') {
        return ty.eq_ignore_ascii_case(want);
    }
    let main = ty.split(|c| *c == b'/').next().unwrap_or(ty);
    main.eq_ignore_ascii_case(want)
}

/// Walks the MIME structure of `entity` and calls `f(type, entity, kind)` for each leaf part
/// and, for a multipart, with its prologue and epilogue (as one value each: RFC 5173 5.2
/// says `:content "multipart"` tests them); stops when `f` returns true and returns whether
/// it did.
pub fn each_part(
    entity: Entity<'_>,
    depth: u32,
    f: &mut dyn FnMut(&[u8], Entity<'_>) -> bool,
) -> bool {
    let mut ty = [0u8; 128];
    let (n, boundary) = content_type(entity.header, &mut ty);
    let ty = &ty[..n];
    match boundary {
        Some(b) if ty.starts_with(b"multipart/") && !b.is_empty() && depth < DEPTH_MAX => {
            let (prologue, parts, epilogue) = split_multipart(entity.body, b);
            let mut hit = false;
            // The prologue even when empty, the epilogue when there is one (as Pigeonhole,
            // which `:count` shows).
            for (i, text) in [prologue, epilogue].into_iter().enumerate() {
                if !hit && (i == 0 || !text.is_empty()) {
                    hit = f(
                        ty,
                        Entity {
                            header: &[],
                            body: text,
                        },
                    );
                }
            }
            if hit {
                return true;
            }
            let mut rest = parts;
            while let Some((part, next)) = next_part(rest, b) {
                if each_part(split_part(part), depth + 1, f) {
                    return true;
                }
                rest = next;
            }
            false
        }
        _ if ty == b"message/rfc822" && depth < DEPTH_MAX => {
            // The enclosed message's own parts are tested (its header block is not a value).
            each_part(split_part(entity.body), depth + 1, f)
        }
        _ => f(ty, entity),
    }
}

/// Whether `line` (without its line end) is the delimiter `--boundary` or the close
/// `--boundary--` (trailing whitespace allowed, RFC 2046 5.1.1); Some(true) for the close.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|c| matches!(c, b' ' | b'\t' | b'\r'))
        .then_some(close)
}

/// The line ending right before `at` (CRLF or LF), which belongs to the delimiter after it.
fn before_line_end(body: &[u8], at: usize) -> usize {
    if at >= 2 && &body[at - 2..at] == b"\r\n" {
        at - 2
    } else if at >= 1 && body[at - 1] == b'\n' {
        at - 1
    } else {
        at
    }
}

/// Finds the next delimiter line from `from`: (its start, the end of its line, close).
fn find_delimiter(body: &[u8], from: usize, boundary: &[u8]) -> Option<(usize, usize, bool)> {
    let mut at = from;
    while at < body.len() {
        let end = body[at..]
            .iter()
            .position(|c| *c == b'\n')
            .map_or(body.len(), |p| at + p + 1);
        let line = &body[at..end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(close) = delimiter(line, boundary) {
            return Some((at, end, close));
        }
        at = end;
    }
    None
}

/// A multipart body: its prologue, the text from the first delimiter on (the parts), and its
/// epilogue (after the close delimiter).
fn split_multipart<'b>(body: &'b [u8], boundary: &[u8]) -> (&'b [u8], &'b [u8], &'b [u8]) {
    let Some((start, _, _)) = find_delimiter(body, 0, boundary) else {
        return (body, &[], &[]);
    };
    let prologue = &body[..before_line_end(body, start)];
    let mut at = start;
    loop {
        match find_delimiter(body, at, boundary) {
            Some((_, end, true)) => return (prologue, &body[start..end], &body[end..]),
            Some((_, end, false)) => at = end,
            None => return (prologue, &body[start..], &[]),
        }
    }
}

/// The part after the delimiter at the start of `parts`, and what follows it.
fn next_part<'b>(parts: &'b [u8], boundary: &[u8]) -> Option<(&'b [u8], &'b [u8])> {
    let (_, end, close) = find_delimiter(parts, 0, boundary)?;
    if close {
        return None;
    }
    match find_delimiter(parts, end, boundary) {
        Some((next, _, _)) => Some((&parts[end..before_line_end(parts, next)], &parts[next..])),
        None => Some((&parts[end..], &[])),
    }
}

/// Decodes a leaf part's body by its Content-Transfer-Encoding (base64, quoted-printable;
/// others as they are) and its charset (ISO-8859-1 to UTF-8) into `out`; returns the
/// decoded bytes, cut at `out`'s size.
pub fn decode<'o>(part: Entity<'_>, out: &'o mut [u8]) -> &'o [u8] {
    let mut cte: &[u8] = b"";
    header::each_field(part.header, b"content-transfer-encoding", |raw| {
        cte = trim(raw);
        true
    });
    let mut latin1 = false;
    header::each_field(part.header, b"content-type", |raw| {
        latin1 = param(raw, b"charset").is_some_and(|c| {
            c.eq_ignore_ascii_case(b"iso-8859-1") || c.eq_ignore_ascii_case(b"latin1")
        });
        true
    });
    let mut n = 0;
    let mut put = |c: u8| {
        let mut one = |b: u8| {
            if n < out.len() {
                out[n] = b;
                n += 1;
            }
        };
        if latin1 && c >= 0x80 {
            one(0xC0 | (c >> 6));
            one(0x80 | (c & 0x3F));
        } else {
            one(c);
        }
    };
    if cte.eq_ignore_ascii_case(b"base64") {
        mime::base64(part.body, &mut put);
    } else if cte.eq_ignore_ascii_case(b"quoted-printable") {
        quoted_printable(part.body, &mut put);
    } else {
        for &c in part.body {
            put(c);
        }
    }
    &out[..n]
}

/// RFC 2045 6.7: `=XX` is an octet, `=` at a line's end a soft break, trailing whitespace on
/// a line dropped.
fn quoted_printable(text: &[u8], put: &mut dyn FnMut(u8)) {
    for line in text.split_inclusive(|c| *c == b'\n') {
        let (content, eol): (&[u8], &[u8]) = if let Some(c) = line.strip_suffix(b"\r\n") {
            (c, b"\r\n")
        } else if let Some(c) = line.strip_suffix(b"\n") {
            (c, b"\n")
        } else {
            (line, b"")
        };
        let end = content
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let content = &content[..end];
        let (content, soft) = match content.strip_suffix(b"=") {
            Some(c) => (c, true),
            None => (content, false),
        };
        let mut i = 0;
        while i < content.len() {
            let c = content[i];
            if c == b'=' && i + 2 < content.len() + 1 {
                if let (Some(h), Some(l)) = (
                    content.get(i + 1).and_then(|c| mime::hex(*c)),
                    content.get(i + 2).and_then(|c| mime::hex(*c)),
                ) {
                    put(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            put(c);
            i += 1;
        }
        if !soft {
            for &c in eol {
                put(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    const MSG: &[u8] = b"Content-Type: multipart/mixed; boundary=\"BB\"\n\nprologue\n--BB\n\
Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
caf=C3=A9 wor=\nld\n--BB\nContent-Type: application/octet-stream\n\
Content-Transfer-Encoding: base64\n\naGVsbG8gc2VjcmV0Cg==\n--BB\n\
Content-Type: multipart/alternative; boundary=in\n\n--in\n\nplain\n--in\n\
Content-Type: text/html; charset=iso-8859-1\n\n<p>caf\xe9</p>\n--in--\n--BB--\nepilogue\n";

    fn parts() -> Vec<(String, String)> {
        let e = split_part(MSG);
        let mut v = Vec::new();
        each_part(e, 0, &mut |ty, part| {
            let mut buf = [0u8; 256];
            let d = decode(part, &mut buf);
            v.push((
                String::from_utf8_lossy(ty).into_owned(),
                String::from_utf8_lossy(d).into_owned(),
            ));
            false
        });
        v
    }

    #[test]
    fn parts_are_found_nested_and_decoded() {
        let p = parts();
        let want: Vec<(String, String)> = [
            ("multipart/mixed", "prologue"),
            ("multipart/mixed", "epilogue\n"),
            ("text/plain", "café world"),
            ("application/octet-stream", "hello secret\n"),
            ("multipart/alternative", ""),
            ("text/plain", "plain"),
            ("text/html", "<p>café</p>"),
        ]
        .iter()
        .map(|(a, b)| (String::from(*a), String::from(*b)))
        .collect();
        assert_eq!(p, want);
    }

    #[test]
    fn content_types_match_by_type_or_type_and_subtype() {
        assert!(type_matches(b"text/plain", b"text"));
        assert!(type_matches(b"text/plain", b"TEXT/Plain"));
        assert!(type_matches(b"text/plain", b""));
        assert!(!type_matches(b"text/plain", b"text/html"));
        assert!(!type_matches(b"texts/plain", b"text"));
    }

    #[test]
    fn a_body_without_mime_is_one_text_part() {
        let e = split_part(b"Subject: x\n\nhello\n");
        let mut seen = Vec::new();
        each_part(e, 0, &mut |ty, part| {
            seen.push((ty.to_vec(), part.body.to_vec()));
            false
        });
        assert_eq!(seen, [(b"text/plain".to_vec(), b"hello\n".to_vec())]);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut m = Vec::new();
        for _ in 0..100 {
            m.extend_from_slice(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n");
        }
        m.extend_from_slice(b"\ndeep\n");
        let mut n = 0;
        each_part(split_part(&m), 0, &mut |_, _| {
            n += 1;
            false
        });
        assert!((1..200).contains(&n));
    }
}
