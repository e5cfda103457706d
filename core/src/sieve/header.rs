//! The message as the tests see it: header fields found in the header block (names compared
//! case-insensitively, values unfolded and trimmed) and the addresses in a header value
//! (RFC 5322 address lists: display names, angle addresses, groups and comments).

/// The fields of a header block, one at a time: each field's start, the offset of its colon
/// (None for a line without one, which is no field) and its end (after its continuation
/// lines); stops at the empty line that ends the block.
struct Fields<'h> {
    header: &'h [u8],
    at: usize,
}

impl Iterator for Fields<'_> {
    type Item = (usize, Option<usize>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.header;
        let at = self.at;
        if at >= header.len() {
            return None;
        }
        let line_end = next_line(header, at);
        let line = &header[at..line_end];
        if line == b"\n" || line == b"\r\n" {
            self.at = header.len();
            return None;
        }
        // A field is its first line plus the continuation lines after it.
        let mut end = line_end;
        while end < header.len() && matches!(header[end], b' ' | b'\t') {
            end = next_line(header, end);
        }
        self.at = end;
        Some((
            at,
            line.iter().position(|c| *c == b':').map(|c| at + c),
            end,
        ))
    }
}

/// The name of the field starting at `start` whose colon is at `colon`, when it can be one
/// (printable ASCII, the blanks before the colon trimmed).
fn field_name(header: &[u8], start: usize, colon: usize) -> Option<&[u8]> {
    let fname = trim_end(&header[start..colon]);
    fname.iter().all(|c| c.is_ascii_graphic()).then_some(fname)
}

/// Calls `f` with the raw value (after the colon, folding kept) of every field named `name`
/// in `header` (the header block, up to the empty line), in order; stops early when `f`
/// returns true, and returns whether it did.
pub fn each_field<'h>(header: &'h [u8], name: &[u8], mut f: impl FnMut(&'h [u8]) -> bool) -> bool {
    for (start, colon, end) in (Fields { header, at: 0 }) {
        let Some(colon) = colon else { continue };
        if field_name(header, start, colon).is_some_and(|n| n.eq_ignore_ascii_case(name))
            && f(&header[colon + 1..end])
        {
            return true;
        }
    }
    false
}

/// The most fields an [`Index`] holds; a header block with more is searched field by field
/// past them.
pub const INDEX_MAX: usize = 256;

/// Where each field of a header block is, found in one pass when a run starts, so that every
/// test looks fields up by name instead of scanning the block again (a 50-rule script made
/// some 50 scans). Bounded: [`INDEX_MAX`] fields (3 KiB on the stack); the fields past them are
/// scanned for each lookup, as before. Lookups see exactly what [`each_field`] sees.
pub struct Index<'h> {
    header: &'h [u8],
    fields: heapless::Vec<Field, INDEX_MAX>,
    /// Where the fields the index could not take start (the block's length when it took all).
    rest: usize,
}

/// One indexed field: its name is `header[start..start + name_len]`, its raw value
/// `header[colon + 1..end]`.
#[derive(Clone, Copy)]
struct Field {
    start: u32,
    name_len: u32,
    colon: u32,
    end: u32,
}

impl<'h> Index<'h> {
    /// Indexes the fields of `header` (the header block).
    pub fn new(header: &'h [u8]) -> Index<'h> {
        let mut ix = Index {
            header,
            fields: heapless::Vec::new(),
            rest: header.len(),
        };
        // Offsets are u32: a block larger than that (never, with the drivers' 1 MiB) is
        // left to the scan.
        if u32::try_from(header.len()).is_err() {
            ix.rest = 0;
            return ix;
        }
        for (start, colon, end) in (Fields { header, at: 0 }) {
            let Some(colon) = colon else { continue };
            let Some(name) = field_name(header, start, colon) else {
                continue;
            };
            let field = Field {
                start: start as u32,
                name_len: name.len() as u32,
                colon: colon as u32,
                end: end as u32,
            };
            if ix.fields.push(field).is_err() {
                ix.rest = start;
                break;
            }
        }
        ix
    }

    /// The header block.
    pub fn header(&self) -> &'h [u8] {
        self.header
    }

    /// [`each_field`] over the indexed block.
    pub fn each(&self, name: &[u8], mut f: impl FnMut(&'h [u8]) -> bool) -> bool {
        let header = self.header;
        for fl in &self.fields {
            let (start, len) = (fl.start as usize, fl.name_len as usize);
            if len == name.len()
                && header[start..start + len].eq_ignore_ascii_case(name)
                && f(&header[fl.colon as usize + 1..fl.end as usize])
            {
                return true;
            }
        }
        self.rest < header.len() && each_field(&header[self.rest..], name, f)
    }

    /// [`each_field_at`] over the indexed block.
    pub fn each_at(
        &self,
        name: &[u8],
        index: u32,
        last: bool,
        f: impl FnMut(&'h [u8]) -> bool,
    ) -> bool {
        at_index(|g| self.each(name, g), index, last, f)
    }
}

/// [`each_field`] restricted by `:index` (RFC 5260 6): with `index` 0 every field named
/// `name`, else only the `index`-th (from 1), counted from the last one when `last`.
pub fn each_field_at<'h>(
    header: &'h [u8],
    name: &[u8],
    index: u32,
    last: bool,
    f: impl FnMut(&'h [u8]) -> bool,
) -> bool {
    at_index(|g| each_field(header, name, g), index, last, f)
}

/// `:index` over `each` (which calls its argument with every field of one name in order).
fn at_index<'h>(
    mut each: impl FnMut(&mut dyn FnMut(&'h [u8]) -> bool) -> bool,
    index: u32,
    last: bool,
    mut f: impl FnMut(&'h [u8]) -> bool,
) -> bool {
    if index == 0 {
        return each(&mut f);
    }
    let want = if last {
        let mut count = 0u32;
        each(&mut |_| {
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
    each(&mut |raw| {
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

    /// The index sees exactly what a scan of the block sees, for every name, `:index` and
    /// `:last`, whether the block's fields fit in the index or not: generated blocks of
    /// folded fields, lines without a colon, blanks before the colon, names in any case,
    /// CRLF and LF, a body after the empty line, and more fields than [`INDEX_MAX`].
    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names: [&[u8]; 6] = [b"Subject", b"to", b"X-A", b"received", b"", b"From "];
        for round in 0..200 {
            let mut h = Vec::new();
            let fields = if round % 10 == 0 { INDEX_MAX + 40 } else { 30 };
            for i in 0..fields {
                let eol: &[u8] = if next(2) == 0 { b"\r\n" } else { b"\n" };
                match next(8) {
                    0 => h.extend_from_slice(b"no colon here"),
                    1 => h.extend_from_slice(b"X-A :spaced"),
                    2 => h.extend_from_slice(b": empty name"),
                    _ => {
                        let name = names[next(names.len() as u64) as usize];
                        h.extend_from_slice(if next(2) == 0 { name } else { b"SUBJECT" });
                        h.extend_from_slice(std::format!(": v{i}").as_bytes());
                    }
                }
                h.extend_from_slice(eol);
                if next(4) == 0 {
                    h.extend_from_slice(b"\tfolded");
                    h.extend_from_slice(eol);
                }
            }
            h.extend_from_slice(b"\nSubject: in the body\n");
            let ix = Index::new(&h);
            for name in names.iter().chain([&&b"subject"[..], &&b"nowhere"[..]]) {
                for (index, last) in [(0, false), (1, false), (2, true), (3, false), (1, true)] {
                    let mut a = Vec::new();
                    let mut b = Vec::new();
                    each_field_at(&h, name, index, last, |v| {
                        a.push(v.to_vec());
                        false
                    });
                    ix.each_at(name, index, last, |v| {
                        b.push(v.to_vec());
                        false
                    });
                    assert_eq!(a, b, "round {round}, {name:?} {index} {last}");
                    // Stopping early stops both at the same field.
                    let stop_a = each_field(&h, name, |v| v.ends_with(b"7"));
                    let stop_b = ix.each(name, |v| v.ends_with(b"7"));
                    assert_eq!(stop_a, stop_b);
                }
            }
        }
    }
}
