//! The `Return-Path`/`X-Original-To`/`Delivered-To` prelude an MDA writes above the message ([`Prelude`]), and address normalisation.

use super::*;

/// The longest address accepted in a prelude header.
pub const ADDRESS_MAX: usize = 512;

/// Why an address cannot go into a header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// It contains a control character (CR, LF, NUL, ...): it would inject header lines.
    ControlChar(u8),
    /// It is longer than [`ADDRESS_MAX`].
    TooLong,
    /// It is empty (only `Return-Path` may be, as `<>`).
    Empty,
    /// An angle bracket is left inside it, outside a quoted local part, once the one pair
    /// around it is removed (`<<>>`, `<a@b>>`): not one address.
    Bracket,
}

impl core::fmt::Display for AddressError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddressError::ControlChar(b) => {
                write!(f, "address contains the control character 0x{b:02x}")
            }
            AddressError::TooLong => write!(f, "address longer than {ADDRESS_MAX} bytes"),
            AddressError::Empty => f.write_str("address is empty"),
            AddressError::Bracket => {
                f.write_str("address has an angle bracket inside it (more than one pair of <>?)")
            }
        }
    }
}

impl core::error::Error for AddressError {}

/// Trims whitespace and one pair of surrounding angle brackets, and checks the result.
pub fn normalize_address(a: &[u8]) -> Result<&[u8], AddressError> {
    let a = trim(a);
    let a = a
        .strip_prefix(b"<")
        .and_then(|x| x.strip_suffix(b">"))
        .map(trim)
        .unwrap_or(a);
    if let Some(&b) = a.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        return Err(AddressError::ControlChar(b));
    }
    if a.len() > ADDRESS_MAX {
        return Err(AddressError::TooLong);
    }
    if unquoted(a).any(|(_, b)| b == b'<' || b == b'>') {
        return Err(AddressError::Bracket);
    }
    Ok(a)
}

/// The bytes of `a` outside a quoted string, with their positions: a quoted local part
/// (`"a>b"@x`) may hold anything, `\` escaping inside the quotes.
fn unquoted(a: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    a.iter().enumerate().filter_map(move |(i, &b)| {
        let inside = quoted || b == b'"';
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
        (!inside).then_some((i, b))
    })
}

/// The one address a Sieve `redirect` names, as it is handed to the MTA: an `addr-spec`, or
/// the address inside a `name-addr`'s angle brackets (`Bob <bob@example.org>`), after
/// [`normalize_address`]. `None` for what cannot be one address: empty, no `@` with text on
/// both sides, or a comma, semicolon or whitespace outside quotes (a list, a name without
/// brackets). The MTA checks the rest of its syntax, as it does for any recipient.
pub fn redirect_target(a: &[u8]) -> Option<&[u8]> {
    let a = crate::message::date::trim(a);
    let a = match (a.last(), a.iter().rposition(|&b| b == b'<')) {
        (Some(b'>'), Some(open)) => &a[open..],
        _ => a,
    };
    let a = normalize_address(a).ok()?;
    if unquoted(a).any(|(_, b)| matches!(b, b',' | b';' | b' ' | b'\t')) {
        return None;
    }
    let (local, domain) = split_at_domain(a)?;
    (!local.is_empty() && !domain.is_empty()).then_some(a)
}

/// An address split at its last `@` outside quotes: (local part, domain).
fn split_at_domain(a: &[u8]) -> Option<(&[u8], &[u8])> {
    let (at, _) = unquoted(a).filter(|&(_, b)| b == b'@').last()?;
    Some((&a[..at], &a[at + 1..]))
}

/// Whether two redirect addresses ([`redirect_target`]) are one mailbox: the local parts byte
/// for byte (RFC 5321 2.4: they may be case-sensitive), the domains in any case.
pub fn same_mailbox(a: &[u8], b: &[u8]) -> bool {
    let split = |x| redirect_target(x).and_then(split_at_domain);
    match (split(a), split(b)) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

/// The header lines to prepend. Addresses may carry angle brackets and surrounding whitespace;
/// both are normalised away (`Return-Path` gets exactly one pair back).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PreludeFields<'a> {
    /// `Return-Path: <addr>`; an empty address gives `Return-Path: <>` (the null sender).
    pub return_path: Option<&'a [u8]>,
    /// `X-Original-To: addr`.
    pub original_to: Option<&'a [u8]>,
    /// `Delivered-To: addr`.
    pub delivered_to: Option<&'a [u8]>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum PreludeState {
    /// Matching a leading `From ` line (passed through, the prelude goes after it).
    Start(u8),
    /// Passing through a leading `From ` line.
    FromLine,
    /// Collecting the first header line to see its line ending.
    Peek,
    /// Emitting the prelude lines, then the peeked bytes.
    Emit { seg: u8, pos: usize },
    /// Passing through.
    Pass,
}

/// How many bytes of the first header line are looked at to choose CRLF or LF.
pub const PRELUDE_PEEK: usize = 1000;

/// A [`Transform`] that inserts `Return-Path:`, `X-Original-To:` and `Delivered-To:` (in that
/// order, as Postfix's local delivery writes them) before the first header line. A leading
/// `From ` line stays first. The lines end in CRLF if the first header line does (looked at
/// within [`PRELUDE_PEEK`] bytes), else LF.
pub struct Prelude<'a> {
    fields: [Option<&'a [u8]>; 3],
    state: PreludeState,
    peek: [u8; PRELUDE_PEEK],
    peek_len: usize,
    held: usize,
    held_pos: usize,
    crlf: bool,
}

impl<'a> Prelude<'a> {
    /// Checks the addresses and builds the transform.
    pub fn new(f: PreludeFields<'a>) -> Result<Prelude<'a>, AddressError> {
        let rp = f.return_path.map(normalize_address).transpose()?;
        let check = |a: Option<&'a [u8]>| -> Result<Option<&'a [u8]>, AddressError> {
            match a.map(normalize_address).transpose()? {
                Some([]) => Err(AddressError::Empty),
                x => Ok(x),
            }
        };
        Ok(Prelude {
            fields: [rp, check(f.original_to)?, check(f.delivered_to)?],
            state: PreludeState::Start(0),
            peek: [0; PRELUDE_PEEK],
            peek_len: 0,
            held: 0,
            held_pos: 0,
            crlf: false,
        })
    }

    /// The fields go above everything, a first line `From ...` too: that line is the
    /// message's own text (LMTP), not mbox framing to keep first.
    pub fn above_any_from_line(mut self) -> Self {
        self.state = PreludeState::Peek;
        self
    }

    /// Whether there is anything to insert.
    pub fn is_empty(&self) -> bool {
        self.fields.iter().all(Option::is_none)
    }

    /// Segment `i` of the output before the peeked bytes; `None` past the end.
    fn segment(&self, i: u8) -> Option<&[u8]> {
        const NAMES: [&[u8]; 3] = [b"Return-Path: <", b"X-Original-To: ", b"Delivered-To: "];
        let field = (i / 4) as usize;
        if field >= 3 {
            return Some(&self.peek[..self.peek_len]).filter(|_| i == 12);
        }
        let Some(addr) = self.fields[field] else {
            return Some(b"");
        };
        Some(match i % 4 {
            0 => NAMES[field],
            1 => addr,
            2 if field == 0 => b">",
            2 => b"",
            _ if self.crlf => b"\r\n",
            _ => b"\n",
        })
    }
}

impl Transform for Prelude<'_> {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut i = 0;
        let mut o = 0;
        loop {
            if self.held_pos < self.held {
                // The `From ` of a kept leading From line comes before anything else.
                o += drain(&b"From "[..self.held], &mut self.held_pos, &mut out[o..]);
                if self.held_pos < self.held {
                    return (i, o);
                }
            }
            if let PreludeState::Emit { seg, pos } = self.state {
                let Some(s) = self.segment(seg) else {
                    self.state = PreludeState::Pass;
                    continue;
                };
                let mut p = pos;
                o += drain(s, &mut p, &mut out[o..]);
                if p < s.len() {
                    self.state = PreludeState::Emit { seg, pos: p };
                    return (i, o);
                }
                self.state = PreludeState::Emit {
                    seg: seg + 1,
                    pos: 0,
                };
                continue;
            }
            if i == input.len() || o == out.len() {
                return (i, o);
            }
            match self.state {
                PreludeState::Start(n) => {
                    let b = input[i];
                    if b == b"From "[n as usize] {
                        i += 1;
                        if n == 4 {
                            self.held = 5;
                            self.state = PreludeState::FromLine;
                        } else {
                            self.state = PreludeState::Start(n + 1);
                        }
                    } else {
                        // Not a From line: the held bytes are the first header line's start.
                        self.peek[..n as usize].copy_from_slice(&b"From "[..n as usize]);
                        self.peek_len = n as usize;
                        self.state = PreludeState::Peek;
                    }
                }
                PreludeState::FromLine => {
                    let rest = &input[i..];
                    let room = out.len() - o;
                    let take = match rest.iter().take(room).position(|&b| b == b'\n') {
                        Some(p) => {
                            self.state = PreludeState::Peek;
                            p + 1
                        }
                        None => rest.len().min(room),
                    };
                    out[o..o + take].copy_from_slice(&rest[..take]);
                    i += take;
                    o += take;
                }
                PreludeState::Peek => {
                    let b = input[i];
                    self.peek[self.peek_len] = b;
                    self.peek_len += 1;
                    i += 1;
                    if b == b'\n' || self.peek_len == PRELUDE_PEEK {
                        self.crlf = self.peek_len >= 2
                            && b == b'\n'
                            && self.peek[self.peek_len - 2] == b'\r';
                        self.state = PreludeState::Emit { seg: 0, pos: 0 };
                    }
                }
                PreludeState::Pass => {
                    let n = (input.len() - i).min(out.len() - o);
                    out[o..o + n].copy_from_slice(&input[i..i + n]);
                    return (i + n, o + n);
                }
                PreludeState::Emit { .. } => {}
            }
        }
    }

    fn finish(&mut self, out: &mut [u8]) -> usize {
        match self.state {
            PreludeState::Start(n) => {
                self.peek[..n as usize].copy_from_slice(&b"From "[..n as usize]);
                self.peek_len = n as usize;
                self.state = PreludeState::Emit { seg: 0, pos: 0 };
            }
            PreludeState::FromLine | PreludeState::Peek => {
                self.state = PreludeState::Emit { seg: 0, pos: 0 };
            }
            _ => {}
        }
        self.push(&[], out).1
    }
}
