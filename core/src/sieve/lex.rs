//! The Sieve lexer (RFC 5228 section 8.1): turns script bytes into tokens, each with the line
//! and column where it starts, so every error names its place. Strings are not decoded here:
//! a string token is its source span and its kind, and the parser decodes it into its arena.

use super::error::{CompileError, ErrorKind, Pos};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// An identifier (`if`, `fileinto`, ...): its span.
    Ident,
    /// A tag (`:is`): its span without the colon.
    Tag,
    /// A number, with its K/M/G quantifier applied.
    Number(u64),
    /// A quoted string: the span between the quotes.
    Quoted,
    /// A multi-line string (`text:`): the span of its lines, after the `text:` line and up to
    /// (not including) the terminating `.` line.
    MultiLine,
    /// One of `; , ( ) [ ] { }`.
    Punct(u8),
    /// The end of the script.
    End,
}

/// A token with its span in the source and where it starts.
#[derive(Debug, Clone, Copy)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Start offset of its payload.
    pub start: usize,
    /// End offset (exclusive) of its payload.
    pub end: usize,
    /// Where it starts (line and column, 1-based).
    pub pos: Pos,
}

/// Walks the source one token at a time.
pub struct Lexer<'s> {
    src: &'s [u8],
    at: usize,
    line: u32,
    line_start: usize,
    /// The column of the byte at `col_at` (on the current line): each position is counted
    /// on from the last one, so a long line is not counted again for every token on it.
    col_at: usize,
    col: u32,
}

impl<'s> Lexer<'s> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'s [u8]) -> Self {
        Lexer {
            src,
            at: 0,
            line: 1,
            line_start: 0,
            col_at: 0,
            col: 1,
        }
    }

    fn pos(&mut self) -> Pos {
        if self.col_at < self.line_start {
            self.col_at = self.line_start;
            self.col = 1;
        }
        let more = column(&self.src[self.col_at..self.at]) - 1;
        self.col = self.col.saturating_add(more);
        self.col_at = self.at;
        Pos {
            line: self.line,
            column: self.col,
        }
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.at;
    }

    fn err(&mut self, kind: ErrorKind) -> CompileError {
        CompileError {
            pos: self.pos(),
            kind,
        }
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) -> Result<(), CompileError> {
        loop {
            match self.src.get(self.at) {
                Some(b' ' | b'\t' | b'\r') => self.at += 1,
                Some(b'\n') => {
                    self.at += 1;
                    self.newline();
                }
                Some(b'#') => {
                    while let Some(&c) = self.src.get(self.at) {
                        if c == b'\n' {
                            break;
                        }
                        self.at += 1;
                    }
                }
                Some(b'/') if self.src.get(self.at + 1) == Some(&b'*') => {
                    let start = self.pos();
                    self.at += 2;
                    loop {
                        match self.src.get(self.at) {
                            None => {
                                return Err(CompileError {
                                    pos: start,
                                    kind: ErrorKind::UnterminatedComment,
                                })
                            }
                            Some(b'*') if self.src.get(self.at + 1) == Some(&b'/') => {
                                self.at += 2;
                                break;
                            }
                            Some(b'\n') => {
                                self.at += 1;
                                self.newline();
                            }
                            Some(_) => self.at += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token.
    pub fn next_token(&mut self) -> Result<Token, CompileError> {
        self.skip()?;
        let pos = self.pos();
        let start = self.at;
        let Some(&c) = self.src.get(self.at) else {
            return Ok(Token {
                tok: Tok::End,
                start,
                end: start,
                pos,
            });
        };
        let tok = |tok, start, end| Token {
            tok,
            start,
            end,
            pos,
        };
        match c {
            b';' | b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' => {
                self.at += 1;
                Ok(tok(Tok::Punct(c), start, self.at))
            }
            b':' => {
                self.at += 1;
                let s = self.at;
                if !self.src.get(s).is_some_and(|c| is_ident_start(*c)) {
                    return Err(self.err(ErrorKind::BadTag));
                }
                while self.src.get(self.at).is_some_and(|c| is_ident(*c)) {
                    self.at += 1;
                }
                Ok(tok(Tok::Tag, s, self.at))
            }
            b'0'..=b'9' => {
                let mut v: u64 = 0;
                while let Some(&d) = self.src.get(self.at).filter(|c| c.is_ascii_digit()) {
                    v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(d - b'0')))
                        .ok_or(CompileError {
                            pos,
                            kind: ErrorKind::NumberTooLarge,
                        })?;
                    self.at += 1;
                }
                let shift = match self.src.get(self.at) {
                    Some(b'K' | b'k') => 10,
                    Some(b'M' | b'm') => 20,
                    Some(b'G' | b'g') => 30,
                    _ => 0,
                };
                if shift > 0 {
                    self.at += 1;
                    v = v.checked_mul(1 << shift).ok_or(CompileError {
                        pos,
                        kind: ErrorKind::NumberTooLarge,
                    })?;
                }
                // Numbers are unsigned 32-bit in Sieve implementations' practice; larger ones
                // are refused rather than wrapped.
                if v > u64::from(u32::MAX) {
                    return Err(CompileError {
                        pos,
                        kind: ErrorKind::NumberTooLarge,
                    });
                }
                if self.src.get(self.at).is_some_and(|c| is_ident(*c)) {
                    return Err(self.err(ErrorKind::BadNumber));
                }
                Ok(tok(Tok::Number(v), start, self.at))
            }
            b'"' => {
                self.at += 1;
                let s = self.at;
                loop {
                    match self.src.get(self.at) {
                        None => {
                            return Err(CompileError {
                                pos,
                                kind: ErrorKind::UnterminatedString,
                            })
                        }
                        Some(b'"') => break,
                        Some(b'\\') => {
                            if self.src.get(self.at + 1) == Some(&b'\n') {
                                self.at += 2;
                                self.newline();
                            } else {
                                self.at += 2;
                            }
                        }
                        Some(b'\n') => {
                            self.at += 1;
                            self.newline();
                        }
                        Some(_) => self.at += 1,
                    }
                }
                let e = self.at;
                self.at += 1;
                Ok(tok(Tok::Quoted, s, e))
            }
            c if is_ident_start(c) => {
                while self.src.get(self.at).is_some_and(|c| is_ident(*c)) {
                    self.at += 1;
                }
                let ident = &self.src[start..self.at];
                if ident.eq_ignore_ascii_case(b"text") && self.src.get(self.at) == Some(&b':') {
                    self.at += 1;
                    return self.multiline(pos);
                }
                Ok(tok(Tok::Ident, start, self.at))
            }
            _ => Err(self.err(ErrorKind::UnexpectedChar(c))),
        }
    }

    /// After `text:`: optional whitespace and a hash comment, the line end, then lines up to
    /// a line holding only `.`.
    fn multiline(&mut self, pos: Pos) -> Result<Token, CompileError> {
        while matches!(self.src.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        if self.src.get(self.at) == Some(&b'#') {
            while self.src.get(self.at).is_some_and(|c| *c != b'\n') {
                self.at += 1;
            }
        }
        if self.src.get(self.at) == Some(&b'\r') {
            self.at += 1;
        }
        if self.src.get(self.at) != Some(&b'\n') {
            return Err(self.err(ErrorKind::BadMultiLine));
        }
        self.at += 1;
        self.newline();
        let s = self.at;
        loop {
            let line_start = self.at;
            let Some(nl) = self.src[self.at..].iter().position(|c| *c == b'\n') else {
                return Err(CompileError {
                    pos,
                    kind: ErrorKind::UnterminatedString,
                });
            };
            let line = &self.src[line_start..line_start + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.at = line_start + nl + 1;
            self.newline();
            if line == b"." {
                return Ok(Token {
                    tok: Tok::MultiLine,
                    start: s,
                    end: line_start,
                    pos,
                });
            }
        }
    }
}

/// The 1-based column of the byte after `line_prefix`, counting UTF-8 characters.
fn column(line_prefix: &[u8]) -> u32 {
    let chars = line_prefix.iter().filter(|c| (**c & 0xC0) != 0x80).count();
    u32::try_from(chars).unwrap_or(u32::MAX).saturating_add(1)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}
