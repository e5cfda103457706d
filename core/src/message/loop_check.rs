//! `Delivered-To` loop detection ([`LoopCheck`]).

use super::*;

pub(crate) fn insignificant(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'<' | b'>')
}

/// A scanner of the header block that reports whether a `Delivered-To:` field carries a given
/// address (names and addresses compared case-insensitively; whitespace, folding and angle
/// brackets ignored). Stops looking at the end of the header block.
#[derive(Clone, Debug)]
pub struct LoopCheck<'a> {
    target: &'a [u8],
    lex: HeaderLexer,
    name: NameMatch,
    comparing: bool,
    mismatch: bool,
    tpos: usize,
    found: bool,
}

impl<'a> LoopCheck<'a> {
    /// Looks for `Delivered-To: <address>`.
    pub fn new(address: &'a [u8]) -> Self {
        LoopCheck {
            target: address,
            lex: HeaderLexer::new(),
            name: NameMatch::new(b"delivered-to"),
            comparing: false,
            mismatch: false,
            tpos: 0,
            found: false,
        }
    }

    fn skip_target(&mut self) {
        while self.tpos < self.target.len() && insignificant(self.target[self.tpos]) {
            self.tpos += 1;
        }
    }

    fn end_field(&mut self) {
        if self.comparing && !self.mismatch {
            self.skip_target();
            // An empty target never matches (nor does an empty field).
            let nonempty = self.target.iter().any(|&b| !insignificant(b));
            if self.tpos == self.target.len() && nonempty {
                self.found = true;
            }
        }
        self.comparing = false;
    }

    /// Feeds the next bytes of the message.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.lex.in_body() {
                return;
            }
            let (role, boundary) = self.lex.step(b);
            if boundary {
                self.end_field();
            }
            match role {
                Role::NameStart => {
                    self.name.reset();
                    self.name.feed(b);
                }
                Role::Name => self.name.feed(b),
                Role::Colon => {
                    self.comparing = self.name.complete();
                    self.mismatch = false;
                    self.tpos = 0;
                }
                Role::Value if self.comparing && !self.mismatch && !insignificant(b) => {
                    self.skip_target();
                    if self.tpos < self.target.len()
                        && self.target[self.tpos].eq_ignore_ascii_case(&b)
                    {
                        self.tpos += 1;
                    } else {
                        self.mismatch = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// The message ended.
    pub fn finish(&mut self) {
        self.end_field();
    }

    /// Whether the header block has been fully seen (more input cannot change the answer).
    pub fn header_done(&self) -> bool {
        self.lex.in_body()
    }

    /// Whether a matching `Delivered-To:` was seen (final after `header_done` or `finish`).
    pub fn found(&self) -> bool {
        self.found
    }
}

impl Scanner for LoopCheck<'_> {
    fn scan(&mut self, bytes: &[u8]) {
        self.push(bytes)
    }
    fn end(&mut self) {
        self.finish()
    }
}

/// Whether `message`'s header carries `Delivered-To: <address>` (see [`LoopCheck`]).
pub fn has_delivered_to(message: &[u8], address: &[u8]) -> bool {
    let mut c = LoopCheck::new(address);
    c.push(message);
    c.finish();
    c.found()
}
