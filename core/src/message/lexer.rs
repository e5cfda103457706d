//! The header lexer shared by the scanners and filters: what each byte is, seen from the header block.

/// What one byte of a message is, seen from the header block.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The first byte of a field name (a new logical line).
    NameStart,
    /// A further name byte.
    Name,
    /// Whitespace between the name and the colon (obsolete syntax).
    NameWsp,
    /// The colon that makes the line a field.
    Colon,
    /// A byte of a field's value, including its line endings and continuation lines.
    Value,
    /// A byte of a header-block line that is not a field (or turned out not to be one).
    Other,
    /// A byte of the empty line that ends the header block.
    Blank,
    /// A byte after the header block.
    Body,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum LexState {
    LineStart,
    LineStartCr,
    Name,
    NameWsp,
    Value,
    Other,
    Body,
}

/// Classifies message bytes one at a time; chunking cannot matter.
#[derive(Copy, Clone, Debug)]
pub(crate) struct HeaderLexer {
    pub(crate) state: LexState,
    pub(crate) in_field: bool,
}

pub(crate) const fn is_name_byte(b: u8) -> bool {
    b > b' ' && b < 0x7f && b != b':'
}

impl HeaderLexer {
    pub(crate) const fn new() -> Self {
        HeaderLexer {
            state: LexState::LineStart,
            in_field: false,
        }
    }

    pub(crate) fn in_body(&self) -> bool {
        self.state == LexState::Body
    }

    /// The byte's role, and whether it begins a new logical line (ending any previous field).
    pub(crate) fn step(&mut self, b: u8) -> (Role, bool) {
        use LexState as S;
        match self.state {
            S::LineStart => match b {
                b'\n' => {
                    self.state = S::Body;
                    (Role::Blank, true)
                }
                b'\r' => {
                    self.state = S::LineStartCr;
                    self.in_field = false;
                    (Role::Blank, true)
                }
                b' ' | b'\t' => {
                    if self.in_field {
                        self.state = S::Value;
                        (Role::Value, false)
                    } else {
                        self.state = S::Other;
                        (Role::Other, false)
                    }
                }
                _ if is_name_byte(b) => {
                    self.state = S::Name;
                    self.in_field = false;
                    (Role::NameStart, true)
                }
                _ => {
                    self.state = S::Other;
                    self.in_field = false;
                    (Role::Other, true)
                }
            },
            S::LineStartCr => {
                if b == b'\n' {
                    self.state = S::Body;
                    (Role::Blank, false)
                } else {
                    self.state = S::Other;
                    (Role::Other, false)
                }
            }
            S::Name | S::NameWsp => match b {
                b':' => {
                    self.state = S::Value;
                    self.in_field = true;
                    (Role::Colon, false)
                }
                b' ' | b'\t' => {
                    self.state = S::NameWsp;
                    (Role::NameWsp, false)
                }
                _ if is_name_byte(b) && self.state == S::Name => (Role::Name, false),
                b'\n' => {
                    self.state = S::LineStart;
                    (Role::Other, false)
                }
                _ => {
                    self.state = S::Other;
                    (Role::Other, false)
                }
            },
            S::Value => {
                if b == b'\n' {
                    self.state = S::LineStart;
                }
                (Role::Value, false)
            }
            S::Other => {
                if b == b'\n' {
                    self.state = S::LineStart;
                }
                (Role::Other, false)
            }
            S::Body => (Role::Body, false),
        }
    }
}

impl HeaderLexer {
    /// Inside a field's value or a line that is not a field, every byte up to the line's end
    /// has the same role as the last ([`Role::Value`] or [`Role::Other`], never a boundary):
    /// steps over that run of `bytes` at once (through the `\n` that ends it, if there) and
    /// returns its length, as many [`step`](HeaderLexer::step)s would. Elsewhere, `None`: step
    /// byte by byte.
    pub(crate) fn skip_line(&mut self, bytes: &[u8]) -> Option<usize> {
        if !matches!(self.state, LexState::Value | LexState::Other) {
            return None;
        }
        Some(match memchr::memchr(b'\n', bytes) {
            Some(p) => {
                self.state = LexState::LineStart;
                p + 1
            }
            None => bytes.len(),
        })
    }
}

/// Matches a field name case-insensitively, byte by byte.
#[derive(Copy, Clone, Debug)]
pub(crate) struct NameMatch {
    pub(crate) name: &'static [u8],
    pub(crate) pos: u8,
    pub(crate) ok: bool,
}

impl NameMatch {
    pub(crate) const fn new(name: &'static [u8]) -> Self {
        NameMatch {
            name,
            pos: 0,
            ok: true,
        }
    }
    pub(crate) fn reset(&mut self) {
        self.pos = 0;
        self.ok = true;
    }
    pub(crate) fn feed(&mut self, b: u8) {
        let p = self.pos as usize;
        if self.ok && p < self.name.len() && self.name[p].eq_ignore_ascii_case(&b) {
            self.pos += 1;
        } else {
            self.ok = false;
        }
    }
    pub(crate) fn viable(&self) -> bool {
        self.ok
    }
    pub(crate) fn complete(&self) -> bool {
        self.ok && self.pos as usize == self.name.len()
    }
}
