//! The message as the tests see it: header fields found in the header block (names compared
//! case-insensitively, values unfolded and trimmed) and the addresses in a header value
//! (RFC 5322 address lists: display names, angle addresses, groups and comments).

/// Calls `f` with the raw value (after the colon, folding kept) of every field named `name`
/// in `header` (the header block, up to the empty line), in order; stops early when `f`
/// returns true, and returns whether it did.
pub fn each_field<'h>(header: &'h [u8], name: &[u8], mut f: impl FnMut(&'h [u8]) -> bool) -> bool {
    let mut at = 0;
    while at < header.len() {
        let line_end = next_line(header, at);
        let line = &header[at..line_end];
        if line == b"\n" || line == b"\r\n" {
            return false;
        }
        // A field is its first line plus the continuation lines after it.
        let mut end = line_end;
        while end < header.len() && matches!(header[end], b' ' | b'\t') {
            end = next_line(header, end);
        }
        if let Some(colon) = line.iter().position(|c| *c == b':') {
            let fname = trim_end(&line[..colon]);
            if fname.eq_ignore_ascii_case(name)
                && fname.iter().all(|c| c.is_ascii_graphic())
                && f(&header[at + colon + 1..end])
            {
                return true;
            }
        }
        at = end;
    }
    false
}

/// [`each_field`] restricted by `:index` (RFC 5260 6): with `index` 0 every field named
/// `name`, else only the `index`-th (from 1), counted from the last one when `last`.
pub fn each_field_at<'h>(
    header: &'h [u8],
    name: &[u8],
    index: u32,
    last: bool,
    mut f: impl FnMut(&'h [u8]) -> bool,
) -> bool {
    if index == 0 {
        return each_field(header, name, f);
    }
    let want = if last {
        let mut count = 0u32;
        each_field(header, name, |_| {
            count += 1;
            false
        });
        if index > count {
            return false;
        }
        count - index + 1
    } else {
        index
    };
    let mut n = 0u32;
    let mut hit = false;
    each_field(header, name, |raw| {
        n += 1;
        if n == want {
            hit = f(raw);
            return true;
        }
        false
    });
    hit
}

fn next_line(s: &[u8], at: usize) -> usize {
    s[at..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(s.len(), |p| at + p + 1)
}

/// `s` without the whitespace (and line ends) around it.
pub fn trim(s: &[u8]) -> &[u8] {
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

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    &s[..s.len() - n]
}

/// Unfolds a raw value into `out` (line breaks removed; the whitespace after the colon and
/// at the end trimmed, the whitespace that starts a continuation line kept, as Pigeonhole
/// does: `Subject:` + a line ` sale` is " sale"); returns the unfolded bytes (truncated to
/// `out`'s size).
pub fn unfold<'o>(raw: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let mut n = 0;
    let mut first_line = true;
    for &c in raw {
        if c == b'\r' || c == b'\n' {
            first_line = false;
            continue;
        }
        if n == out.len() {
            break;
        }
        if n == 0 && first_line && matches!(c, b' ' | b'\t') {
            continue;
        }
        out[n] = c;
        n += 1;
    }
    let t = out[..n]
        .iter()
        .rev()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    &out[..n - t]
}

/// The longest address kept; a longer one is cut (and then matches nothing it should not).
const ADDR_MAX: usize = 512;

/// Calls `f` with each address (`local@domain`, comments and whitespace removed) in a header
/// value; stops when `f` returns true, and returns whether it did.
pub fn each_address(value: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> bool {
    let mut cur: heapless::Vec<u8, ADDR_MAX> = heapless::Vec::new();
    let mut angle: heapless::Vec<u8, ADDR_MAX> = heapless::Vec::new();
    let (mut in_angle, mut has_angle, mut in_quote) = (false, false, false);
    let mut comment = 0u32;
    let mut i = 0;
    let mut flush = |cur: &mut heapless::Vec<u8, ADDR_MAX>,
                     angle: &mut heapless::Vec<u8, ADDR_MAX>,
                     has_angle: &mut bool|
     -> bool {
        let hit = {
            let a: &[u8] = if *has_angle { angle } else { cur };
            !a.is_empty() && f(a)
        };
        cur.clear();
        angle.clear();
        *has_angle = false;
        hit
    };
    while i < value.len() {
        let c = value[i];
        i += 1;
        let buf = if in_angle { &mut angle } else { &mut cur };
        if comment > 0 {
            match c {
                b'\\' => i += 1,
                b'(' => comment += 1,
                b')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if in_quote {
            let _ = buf.push(c);
            match c {
                b'\\' if i < value.len() => {
                    let _ = buf.push(value[i]);
                    i += 1;
                }
                b'"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => {
                in_quote = true;
                let _ = buf.push(c);
            }
            b'(' => comment = 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'<' if !in_angle => {
                in_angle = true;
                angle.clear();
            }
            b'>' if in_angle => {
                in_angle = false;
                has_angle = true;
            }
            b':' if !in_angle => cur.clear(),
            b',' | b';' if !in_angle => {
                if flush(&mut cur, &mut angle, &mut has_angle) {
                    return true;
                }
            }
            _ => {
                let _ = buf.push(c);
            }
        }
    }
    flush(&mut cur, &mut angle, &mut has_angle)
}

/// Splits an address at its last `@` outside quotes: (local part, domain); no `@` gives the
/// whole as local part and no domain.
pub fn split_address(a: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut in_quote = false;
    let mut at = None;
    let mut i = 0;
    while i < a.len() {
        match a[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'@' if !in_quote => at = Some(i),
            _ => {}
        }
        i += 1;
    }
    match at {
        Some(p) => (&a[..p], Some(&a[p + 1..])),
        None => (a, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn addrs(v: &str) -> Vec<std::string::String> {
        let mut out = Vec::new();
        each_address(v.as_bytes(), |a| {
            out.push(std::string::String::from_utf8_lossy(a).into_owned());
            false
        });
        out
    }

    #[test]
    fn address_lists() {
        assert_eq!(addrs("a@b.c"), ["a@b.c"]);
        assert_eq!(
            addrs("\"Doe, J\" <j@x.org>, k@y.org (Kay)"),
            ["j@x.org", "k@y.org"]
        );
        assert_eq!(addrs("friends: a@x, b@y; c@z"), ["a@x", "b@y", "c@z"]);
        assert_eq!(addrs("Name <a (c) @b>"), ["a@b"]);
        assert_eq!(addrs("undisclosed-recipients:;"), Vec::<&str>::new());
    }

    #[test]
    fn fields_unfold_and_stop_at_body() {
        let h = b"Subject: one\n two\nX: 1\nsubject:three \nSubject:\n\tfolded\n\nSubject: body\n";
        let mut seen = Vec::new();
        each_field(h, b"SUBJECT", |v| {
            let mut buf = [0u8; 64];
            seen.push(unfold(v, &mut buf).to_vec());
            false
        });
        assert_eq!(
            seen,
            [b"one two".to_vec(), b"three".to_vec(), b"\tfolded".to_vec()]
        );
    }
}
