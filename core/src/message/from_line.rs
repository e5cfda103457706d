//! The leading mbox `From ` line: its sender and date ([`Postmark`]) and the [`FromLine`] transform that strips or keeps it.

use super::*;

/// Who sent a message, according to an mbox `From ` line.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sender<'a> {
    /// An address (angle brackets removed).
    Address(&'a [u8]),
    /// The null sender of bounces: `<>` or `MAILER-DAEMON` (what Postfix writes for `<>`).
    Null,
    /// No usable sender: empty, or `-` (Thunderbird's placeholder).
    Unknown,
}

/// A borrowed view of an mbox `From ` line (the "postmark"; not the MTA's envelope, which is
/// [`crate::mda::Envelope`]): `From <sender> <date...>`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Postmark<'a> {
    rest: &'a [u8],
}

impl<'a> Postmark<'a> {
    /// Views a whole line (`From ...`, with or without its `\n`/`\r\n`); `None` if it does not
    /// start with `From `.
    pub fn parse_line(line: &'a [u8]) -> Option<Postmark<'a>> {
        line.strip_prefix(b"From ").map(Postmark::from_rest)
    }

    /// Views the text after `From ` (a trailing line ending is ignored).
    pub fn from_rest(rest: &'a [u8]) -> Postmark<'a> {
        let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
        let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
        Postmark { rest }
    }

    /// The text after `From `, without the line ending.
    pub fn raw(&self) -> &'a [u8] {
        self.rest
    }

    fn split(&self) -> (&'a [u8], &'a [u8]) {
        let s = self.rest;
        let mut i = 0;
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        let start = i;
        let mut quoted = false;
        while i < s.len() {
            match s[i] {
                b'"' => quoted = !quoted,
                b'\\' if quoted => i += 1,
                b' ' | b'\t' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        let i = i.min(s.len());
        (&s[start..i], trim(&s[i..]))
    }

    /// The sender token as written (first word, a quoted local part may contain spaces).
    pub fn sender_token(&self) -> &'a [u8] {
        self.split().0
    }

    /// The envelope sender: see [`Sender`].
    pub fn sender(&self) -> Sender<'a> {
        let t = self.sender_token();
        let t = match t.strip_prefix(b"<").and_then(|t| t.strip_suffix(b">")) {
            Some([]) => return Sender::Null,
            Some(inner) => inner,
            None => t,
        };
        if t.is_empty() || t == b"-" {
            Sender::Unknown
        } else if t.eq_ignore_ascii_case(b"MAILER-DAEMON") {
            Sender::Null
        } else {
            Sender::Address(t)
        }
    }

    /// The sender as a `Return-Path` address for [`PreludeFields::return_path`]: the address,
    /// `b""` for the null sender (giving `Return-Path: <>`), `None` when unknown.
    pub fn return_path(&self) -> Option<&'a [u8]> {
        match self.sender() {
            Sender::Address(a) => Some(a),
            Sender::Null => Some(b""),
            Sender::Unknown => None,
        }
    }

    /// The date text after the sender (trimmed).
    pub fn date_text(&self) -> &'a [u8] {
        self.split().1
    }

    /// The date as a Unix timestamp: asctime (`Sat Nov 28 18:03:09 2026`, optionally with a
    /// zone or trailing fields), else RFC 5322 form. A date without a zone is taken as UTC.
    pub fn timestamp(&self) -> Option<i64> {
        let d = self.date_text();
        parse_asctime(d).or_else(|| parse_rfc5322_date(d))
    }
}

/// Whether a leading `From ` line is removed or kept.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FromLineMode {
    /// Remove it (the default: the sender goes into `Return-Path:` instead).
    Strip,
    /// Keep it in the stored message (`--keep-from-line`).
    Keep,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum FromState {
    /// Matching `From ` at the start; `n` bytes matched so far.
    Start(u8),
    /// Inside the envelope line.
    Line,
    /// Past it (or there was none): pass through.
    Pass,
}

/// A [`Transform`] that recognises a leading mbox `From ` line on a single message, records it,
/// and strips it (or keeps it). A line longer than [`FROM_LINE_MAX`] is still recognised and
/// stripped, but yields no envelope.
pub struct FromLine {
    mode: FromLineMode,
    state: FromState,
    line: [u8; FROM_LINE_MAX],
    len: usize,
    truncated: bool,
    found: bool,
    pending: usize,
    pending_pos: usize,
}

impl FromLine {
    /// A fresh recogniser.
    pub const fn new(mode: FromLineMode) -> Self {
        FromLine {
            mode,
            state: FromState::Start(0),
            line: [0; FROM_LINE_MAX],
            len: 0,
            truncated: false,
            found: false,
            pending: 0,
            pending_pos: 0,
        }
    }

    /// Whether the first line has been seen completely (so [`FromLine::envelope`] is final).
    pub fn decided(&self) -> bool {
        self.state == FromState::Pass
    }

    /// Whether the message began with a `From ` line.
    pub fn found(&self) -> bool {
        self.found
    }

    /// The envelope line, once complete and if it fitted in [`FROM_LINE_MAX`].
    pub fn envelope(&self) -> Option<Postmark<'_>> {
        (self.found && self.decided() && !self.truncated)
            .then(|| Postmark::from_rest(&self.line[5..self.len]))
    }

    fn record(&mut self, b: u8) {
        if self.len < FROM_LINE_MAX {
            self.line[self.len] = b;
            self.len += 1;
        } else {
            self.truncated = true;
        }
    }
}

impl Transform for FromLine {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut i = 0;
        let mut o = 0;
        loop {
            // Held bytes first (the unmatched prefix, or a kept `From `).
            if self.pending_pos < self.pending {
                o += drain(
                    &self.line[..self.pending],
                    &mut self.pending_pos,
                    &mut out[o..],
                );
                if self.pending_pos < self.pending {
                    return (i, o);
                }
            }
            if i == input.len() || o == out.len() {
                return (i, o);
            }
            match self.state {
                FromState::Start(n) => {
                    let b = input[i];
                    if b == b"From "[n as usize] {
                        self.record(b);
                        i += 1;
                        if n == 4 {
                            self.found = true;
                            self.state = FromState::Line;
                            if self.mode == FromLineMode::Keep {
                                self.pending = 5;
                                self.pending_pos = 0;
                            }
                        } else {
                            self.state = FromState::Start(n + 1);
                        }
                    } else {
                        self.pending = self.len;
                        self.pending_pos = 0;
                        self.state = FromState::Pass;
                    }
                }
                FromState::Line => {
                    let rest = &input[i..];
                    let end = rest.iter().position(|&b| b == b'\n');
                    let take = end.map_or(rest.len(), |p| p + 1);
                    let take = if self.mode == FromLineMode::Keep {
                        take.min(out.len() - o)
                    } else {
                        take
                    };
                    for &b in &rest[..take] {
                        self.record(b);
                    }
                    if self.mode == FromLineMode::Keep {
                        out[o..o + take].copy_from_slice(&rest[..take]);
                        o += take;
                    }
                    i += take;
                    if take > 0 && rest[take - 1] == b'\n' {
                        self.state = FromState::Pass;
                    }
                }
                FromState::Pass => {
                    let n = (input.len() - i).min(out.len() - o);
                    out[o..o + n].copy_from_slice(&input[i..i + n]);
                    return (i + n, o + n);
                }
            }
        }
    }

    fn finish(&mut self, out: &mut [u8]) -> usize {
        if let FromState::Start(_) = self.state {
            self.pending = self.len;
            self.pending_pos = 0;
        }
        self.state = FromState::Pass;
        drain(&self.line[..self.pending], &mut self.pending_pos, out)
    }
}
