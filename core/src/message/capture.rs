//! A scanner that captures the first field with a given name ([`FieldCapture`]: `Date:`, `Message-ID:`).

use super::*;

/// A scanner that captures a bounded prefix of the first field with a given name (folding
/// line breaks removed, surrounding whitespace trimmed): `Date:` for the mtime, `Message-ID:`
/// for duplicate suppression.
#[derive(Clone, Debug)]
pub struct FieldCapture<const N: usize> {
    lex: HeaderLexer,
    name: &'static [u8],
    pos: usize,
    ok: bool,
    state: CaptureState,
    value: [u8; N],
    len: usize,
    truncated: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum CaptureState {
    Looking,
    Capturing,
    Done,
}

impl<const N: usize> FieldCapture<N> {
    /// Captures the first field called `name` (case-insensitive, without the colon).
    pub const fn new(name: &'static [u8]) -> Self {
        FieldCapture {
            lex: HeaderLexer::new(),
            name,
            pos: 0,
            ok: false,
            state: CaptureState::Looking,
            value: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// Feeds the next bytes of the message.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            if self.lex.in_body() || self.state == CaptureState::Done {
                return;
            }
            // Away from the value being captured, the rest of a line is skipped at once.
            if self.state == CaptureState::Looking {
                if let Some(n) = self.lex.skip_line(bytes) {
                    bytes = &bytes[n..];
                    continue;
                }
            }
            bytes = rest;
            let (role, boundary) = self.lex.step(b);
            if boundary && self.state == CaptureState::Capturing {
                self.state = CaptureState::Done;
                return;
            }
            match role {
                Role::NameStart => {
                    self.pos = 0;
                    self.ok = true;
                    self.feed_name(b);
                }
                Role::Name => self.feed_name(b),
                Role::Colon if self.ok && self.pos == self.name.len() => {
                    self.state = CaptureState::Capturing;
                }
                Role::Value if self.state == CaptureState::Capturing => {
                    if b == b'\r' || b == b'\n' || (self.len == 0 && (b == b' ' || b == b'\t')) {
                        continue;
                    }
                    if self.len < N {
                        self.value[self.len] = b;
                        self.len += 1;
                    } else {
                        self.truncated = true;
                    }
                }
                _ => {}
            }
        }
    }

    fn feed_name(&mut self, b: u8) {
        if self.ok && self.pos < self.name.len() && self.name[self.pos].eq_ignore_ascii_case(&b) {
            self.pos += 1;
        } else {
            self.ok = false;
        }
    }

    /// The message ended.
    pub fn finish(&mut self) {
        if self.state == CaptureState::Capturing {
            self.state = CaptureState::Done;
        }
    }

    /// Whether more input cannot change the answer.
    pub fn done(&self) -> bool {
        self.state == CaptureState::Done || self.lex.in_body()
    }

    /// The captured value (trimmed), once the field has been seen.
    pub fn value(&self) -> Option<&[u8]> {
        (self.state != CaptureState::Looking).then(|| trim(&self.value[..self.len]))
    }

    /// Whether the value was longer than `N` bytes and was cut.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> Scanner for FieldCapture<N> {
    fn scan(&mut self, bytes: &[u8]) {
        self.push(bytes)
    }
    fn end(&mut self) {
        self.finish()
    }
}

/// Captures `Date:` values (long enough for any sane date with comments).
pub type DateCapture = FieldCapture<256>;

impl DateCapture {
    /// A capture of the `Date:` field.
    pub const fn date() -> Self {
        FieldCapture::new(b"date")
    }

    /// The `Date:` field as a Unix timestamp, if present and parsable.
    pub fn timestamp(&self) -> Option<i64> {
        self.value().and_then(parse_rfc5322_date)
    }
}
