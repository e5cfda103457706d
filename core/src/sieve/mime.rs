//! MIME encoded words in header values (RFC 2047), decoded before the `header` test compares
//! them (RFC 5228 5.7). Charsets UTF-8, US-ASCII and ISO-8859-1 (converted to UTF-8) are
//! decoded; a word in another charset, or one that is not well-formed, stays as it is.
//! Whitespace between two adjacent encoded words is dropped (RFC 2047 6.2).

/// Decodes the encoded words of `value` into `out`; returns the decoded bytes (cut at `out`'s
/// size).
pub fn decode<'o>(value: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let mut w = Writer { out, n: 0 };
    let mut i = 0;
    // Where pending whitespace after an encoded word starts (dropped if another follows).
    let mut after_word: Option<usize> = None;
    while i < value.len() {
        // After a decoded word, whitespace before anything shaped like an encoded word is
        // dropped even when that one does not decode (it then stays as it is), as Pigeonhole.
        if after_word.is_some() && word_shaped(&value[i..]) {
            after_word = None;
        }
        if value[i] == b'=' && value.get(i + 1) == Some(&b'?') {
            if let Some((len, charset, enc, text)) = parse_word(&value[i..]) {
                if decodable(charset) {
                    after_word = None;
                    let latin1 = charset.eq_ignore_ascii_case(b"ISO-8859-1");
                    if enc == b'B' {
                        base64(text, &mut |b| w.put_char(b, latin1));
                    } else {
                        q(text, &mut |b| w.put_char(b, latin1));
                    }
                    i += len;
                    // Whitespace up to the next encoded word is dropped; other text keeps it.
                    let ws = value[i..]
                        .iter()
                        .take_while(|c| matches!(c, b' ' | b'\t'))
                        .count();
                    if ws > 0 {
                        after_word = Some(i);
                        i += ws;
                    }
                    continue;
                }
            }
        }
        if let Some(start) = after_word.take() {
            for &c in &value[start..i] {
                w.put(c);
            }
        }
        w.put(value[i]);
        i += 1;
    }
    if let Some(start) = after_word {
        for &c in &value[start..] {
            w.put(c);
        }
    }
    // A last word that decodes to nothing leaves no trailing whitespace (as Pigeonhole).
    let mut n = w.n;
    while n > 0 && matches!(w.out[n - 1], b' ' | b'\t') {
        n -= 1;
    }
    &w.out[..n]
}

/// Whether `s` starts with `=?`, then no whitespace up to a `?=`.
fn word_shaped(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"=?") else {
        return false;
    };
    let end = rest
        .iter()
        .position(|c| matches!(c, b' ' | b'\t'))
        .unwrap_or(rest.len());
    rest[..end].windows(2).any(|w| w == b"?=")
}

struct Writer<'o> {
    out: &'o mut [u8],
    n: usize,
}

impl Writer<'_> {
    fn put(&mut self, c: u8) {
        if self.n < self.out.len() {
            self.out[self.n] = c;
            self.n += 1;
        }
    }

    /// One decoded octet: as it is, or an ISO-8859-1 character converted to UTF-8.
    fn put_char(&mut self, c: u8, latin1: bool) {
        if latin1 && c >= 0x80 {
            self.put(0xC0 | (c >> 6));
            self.put(0x80 | (c & 0x3F));
        } else {
            self.put(c);
        }
    }
}

fn decodable(charset: &[u8]) -> bool {
    // RFC 2231's language suffix (`UTF-8*en`) is allowed and ignored.
    let name = charset.split(|c| *c == b'*').next().unwrap_or(charset);
    [&b"UTF-8"[..], b"US-ASCII", b"ISO-8859-1"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// `=?charset?enc?text?=` at the start of `s`: its length, charset, encoding (upper case) and
/// text.
fn parse_word(s: &[u8]) -> Option<(usize, &[u8], u8, &[u8])> {
    let rest = s.strip_prefix(b"=?")?;
    let q1 = rest.iter().position(|c| *c == b'?')?;
    let charset = &rest[..q1];
    let enc = rest.get(q1 + 1)?.to_ascii_uppercase();
    if !matches!(enc, b'B' | b'Q') || rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let end = rest[text_start..].windows(2).position(|w| w == b"?=")?;
    let text = &rest[text_start..text_start + end];
    if charset.is_empty() || text.iter().any(|c| matches!(c, b' ' | b'\t' | b'?')) {
        return None;
    }
    Some((2 + text_start + end + 2, charset, enc, text))
}

pub(super) fn base64(text: &[u8], put: &mut dyn FnMut(u8)) {
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            put((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
}

fn q(text: &[u8], put: &mut dyn FnMut(u8)) {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => put(b' '),
            b'=' if i + 2 < text.len() && hex(text[i + 1]).zip(hex(text[i + 2])).is_some() => {
                let (h, l) = hex(text[i + 1]).zip(hex(text[i + 2])).unwrap_or((0, 0));
                put(h << 4 | l);
                i += 2;
            }
            c => put(c),
        }
        i += 1;
    }
}

pub(super) fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> std::string::String {
        let mut buf = [0u8; 256];
        std::string::String::from_utf8_lossy(decode(s.as_bytes(), &mut buf)).into_owned()
    }

    #[test]
    fn encoded_words() {
        assert_eq!(d("=?UTF-8?B?aGVsbG8=?= world"), "hello world");
        assert_eq!(d("=?utf-8?q?caf=C3=A9_au_lait?="), "café au lait");
        assert_eq!(d("=?ISO-8859-1?Q?caf=E9?="), "café");
        assert_eq!(d("a =?UTF-8?B?Yg==?= =?UTF-8?B?Yw==?= d"), "a bc d");
        assert_eq!(d("=?KOI8-R?B?aGVsbG8=?="), "=?KOI8-R?B?aGVsbG8=?=");
        assert_eq!(d("=?UTF-8?X?abc?="), "=?UTF-8?X?abc?=");
        assert_eq!(d("plain =? text"), "plain =? text");
        assert_eq!(d("=?UTF-8?Q?a?=  "), "a");
        assert_eq!(d("World =?ISO-8859-1?B??="), "World");
        assert_eq!(
            d("=?UTF-8?B?Y2Fmw6k=?= =?iso-8859-1?Q?q??="),
            "café=?iso-8859-1?Q?q??="
        );
        assert_eq!(d("a =?iso-8859-1?Q?q??= b"), "a =?iso-8859-1?Q?q??= b");
        assert_eq!(d("=?utf-8?q?q??= =?utf-8?q?x?="), "=?utf-8?q?q??= x");
    }
}
