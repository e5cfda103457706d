//! One message's bytes on their way into a maildir: the leading mbox `From ` envelope line, the
//! `Return-Path`/`X-Original-To`/`Delivered-To` prelude, `Delivered-To` loop detection, mbox
//! `Status:`/`X-Status:` flags, and `Date:` parsing.
//!
//! Everything here is sans-io and allocation-free. Transforms implement [`Transform`] (fed
//! chunks, emitting chunks; [`Transformed`] turns one into an `embedded_io::Read` over any
//! source), scanners are fed chunks and answer questions. Each works byte by byte on bounded
//! state (only a bounded prefix of any line is ever held), so the output and the answers are
//! the same for every way the input is cut into chunks, and a 1 MiB header line costs nothing.
//!
//! How a driver chains them (each layer a [`Transformed`], the outermost handed to
//! `fs::write_message` as the message source):
//! - single message: look at the head first (a [`Prefixed`] reader gives the looked-at bytes
//!   back): [`FromLine`] or [`Envelope::parse_line`] for the sender ([`Envelope::return_path`]),
//!   [`LoopCheck`] until `header_done()`; then stream `source → FromLine → Prelude`.
//! - mbox import (`mbox::MboxReader` per message): `message → StatusFilter → Observe<DateCapture>`;
//!   after the write, `StatusFilter::status().maildir_info()` gives new/ or cur/ + flags and the
//!   capture gives the mtime (else `Envelope::timestamp`).
//!
//! The header block is every line up to the first empty line (`\n` or `\r\n`) or the end of
//! the message, as mblaze does. A header field is a line `name[WSP]*:value` (name: printable
//! ASCII except `:`) plus its continuation lines (starting with space or tab); any other line in
//! the header block (a kept `From ` line, garbage) is passed over, never matched.

use crate::flags::Flags;

/// The longest `From ` envelope line kept, in bytes, including `From ` and the line ending.
pub const FROM_LINE_MAX: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Transforms

/// A streaming byte transform: fed the input in chunks of any size, it emits its output in
/// chunks of any size, and the concatenated output never depends on the chunking.
pub trait Transform {
    /// Transforms a prefix of `input` into a prefix of `out`, returning `(consumed, produced)`.
    /// Makes progress (`consumed + produced > 0`) whenever `input` and `out` are non-empty;
    /// with an empty `input` it writes output it already holds, if any.
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize);
    /// The input has ended: writes what is still held into `out`. Returns the bytes written;
    /// `0` (with a non-empty `out`) means the transform is drained.
    fn finish(&mut self, out: &mut [u8]) -> usize;
}

impl<T: Transform + ?Sized> Transform for &mut T {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        (**self).push(input, out)
    }
    fn finish(&mut self, out: &mut [u8]) -> usize {
        (**self).finish(out)
    }
}

/// An `embedded_io::Read` that reads `source` through a [`Transform`], using an internal
/// buffer of `N` bytes. Nest them to chain transforms.
pub struct Transformed<R, T, const N: usize = 4096> {
    source: R,
    transform: T,
    buf: [u8; N],
    start: usize,
    end: usize,
    eof: bool,
}

impl<R, T, const N: usize> Transformed<R, T, N> {
    /// Reads `source` through `transform`.
    pub fn new(source: R, transform: T) -> Self {
        Transformed {
            source,
            transform,
            buf: [0; N],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The transform (to ask it what it saw).
    pub fn transform(&self) -> &T {
        &self.transform
    }

    /// The source.
    pub fn source_mut(&mut self) -> &mut R {
        &mut self.source
    }

    /// Gives back the source and the transform.
    pub fn into_parts(self) -> (R, T) {
        (self.source, self.transform)
    }
}

impl<R: embedded_io::ErrorType, T, const N: usize> embedded_io::ErrorType for Transformed<R, T, N> {
    type Error = R::Error;
}

impl<R: embedded_io::Read, T: Transform, const N: usize> embedded_io::Read
    for Transformed<R, T, N>
{
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.start < self.end {
                let (c, p) = self.transform.push(&self.buf[self.start..self.end], out);
                self.start += c;
                if p > 0 {
                    return Ok(p);
                }
                if c > 0 {
                    continue;
                }
                debug_assert!(false, "a Transform made no progress");
            }
            if self.eof {
                return Ok(self.transform.finish(out));
            }
            // Output the transform still holds goes out before the source is asked (and
            // possibly blocks) for more.
            let (_, p) = self.transform.push(&[], out);
            if p > 0 {
                return Ok(p);
            }
            self.start = 0;
            self.end = 0;
            let n = self.source.read(&mut self.buf)?;
            if n == 0 {
                self.eof = true;
            }
            self.end = n;
        }
    }
}

/// An `embedded_io::Read` that yields `head` first, then `rest`: lets a driver look at the
/// start of a message (the envelope line, the header for loop detection) before streaming it.
pub struct Prefixed<'h, R> {
    head: &'h [u8],
    rest: R,
}

impl<'h, R> Prefixed<'h, R> {
    /// `head`, then `rest`.
    pub fn new(head: &'h [u8], rest: R) -> Self {
        Prefixed { head, rest }
    }
}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for Prefixed<'_, R> {
    type Error = R::Error;
}

impl<R: embedded_io::Read> embedded_io::Read for Prefixed<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        if self.head.is_empty() {
            return self.rest.read(out);
        }
        let n = self.head.len().min(out.len());
        out[..n].copy_from_slice(&self.head[..n]);
        self.head = &self.head[n..];
        Ok(n)
    }
}

/// Runs `t` over `input` fed in `chunk`-byte pieces, emitting through `out` (whose size sets
/// the output chunking) into `sink`, then finishes it. For fuzz targets and tests: the
/// concatenated output must not depend on `chunk` or `out.len()`.
pub fn run_chunked<T: Transform + ?Sized>(
    t: &mut T,
    input: &[u8],
    chunk: usize,
    out: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) {
    assert!(
        !out.is_empty(),
        "run_chunked needs a non-empty output buffer"
    );
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (c, p) = t.push(rest, out);
            assert!(c + p > 0, "a Transform made no progress");
            sink(&out[..p]);
            rest = &rest[c..];
        }
    }
    loop {
        let p = t.finish(out);
        if p == 0 {
            break;
        }
        sink(&out[..p]);
    }
}

/// A streaming observer of message bytes (fed chunks of any size; answers never depend on
/// the chunking): [`LoopCheck`], [`FieldCapture`].
pub trait Scan {
    /// Looks at the next bytes.
    fn scan(&mut self, bytes: &[u8]);
    /// The message ended.
    fn end(&mut self);
}

/// A [`Transform`] that passes bytes through unchanged while a [`Scan`] watches them, so a
/// scanner can sit in a [`Transformed`] chain (e.g. capturing `Date:` during the write).
pub struct Observe<S>(pub S);

impl<S: Scan> Transform for Observe<S> {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let n = input.len().min(out.len());
        out[..n].copy_from_slice(&input[..n]);
        self.0.scan(&input[..n]);
        (n, n)
    }
    fn finish(&mut self, _out: &mut [u8]) -> usize {
        self.0.end();
        0
    }
}

/// Copies `src[*pos..]` into `out` as far as it fits; returns the bytes written.
fn drain(src: &[u8], pos: &mut usize, out: &mut [u8]) -> usize {
    let n = (src.len() - *pos).min(out.len());
    out[..n].copy_from_slice(&src[*pos..*pos + n]);
    *pos += n;
    n
}

// ---------------------------------------------------------------------------------------------
// The header lexer shared by the scanners and filters

/// What one byte of a message is, seen from the header block.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Role {
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
enum LexState {
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
struct HeaderLexer {
    state: LexState,
    in_field: bool,
}

const fn is_name_byte(b: u8) -> bool {
    b > b' ' && b < 0x7f && b != b':'
}

impl HeaderLexer {
    const fn new() -> Self {
        HeaderLexer {
            state: LexState::LineStart,
            in_field: false,
        }
    }

    fn in_body(&self) -> bool {
        self.state == LexState::Body
    }

    /// The byte's role, and whether it begins a new logical line (ending any previous field).
    fn step(&mut self, b: u8) -> (Role, bool) {
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

/// Matches a field name case-insensitively, byte by byte.
#[derive(Copy, Clone, Debug)]
struct NameMatch {
    name: &'static [u8],
    pos: u8,
    ok: bool,
}

impl NameMatch {
    const fn new(name: &'static [u8]) -> Self {
        NameMatch {
            name,
            pos: 0,
            ok: true,
        }
    }
    fn reset(&mut self) {
        self.pos = 0;
        self.ok = true;
    }
    fn feed(&mut self, b: u8) {
        let p = self.pos as usize;
        if self.ok && p < self.name.len() && self.name[p].eq_ignore_ascii_case(&b) {
            self.pos += 1;
        } else {
            self.ok = false;
        }
    }
    fn viable(&self) -> bool {
        self.ok
    }
    fn complete(&self) -> bool {
        self.ok && self.pos as usize == self.name.len()
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The leading `From ` envelope line

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

/// A borrowed view of an mbox `From ` envelope line: `From <sender> <date...>`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    rest: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Views a whole line (`From ...`, with or without its `\n`/`\r\n`); `None` if it does not
    /// start with `From `.
    pub fn parse_line(line: &'a [u8]) -> Option<Envelope<'a>> {
        line.strip_prefix(b"From ").map(Envelope::from_rest)
    }

    /// Views the text after `From ` (a trailing line ending is ignored).
    pub fn from_rest(rest: &'a [u8]) -> Envelope<'a> {
        let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
        let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
        Envelope { rest }
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
enum FromState {
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
    pub fn envelope(&self) -> Option<Envelope<'_>> {
        (self.found && self.decided() && !self.truncated)
            .then(|| Envelope::from_rest(&self.line[5..self.len]))
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

// ---------------------------------------------------------------------------------------------
// (b) The envelope header prelude

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
}

impl core::fmt::Display for AddressError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddressError::ControlChar(b) => {
                write!(f, "address contains the control character 0x{b:02x}")
            }
            AddressError::TooLong => write!(f, "address longer than {ADDRESS_MAX} bytes"),
            AddressError::Empty => f.write_str("address is empty"),
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
    Ok(a)
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
enum PreludeState {
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

// ---------------------------------------------------------------------------------------------
// (c) Loop detection

fn insignificant(b: u8) -> bool {
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

impl Scan for LoopCheck<'_> {
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

// ---------------------------------------------------------------------------------------------
// (d) Status / X-Status

/// What mbox `Status:`/`X-Status:` headers said about a message.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct MboxStatus {
    /// Maildir flags: `R`→`S`, `A`→`R`, `F`→`F`, `D`→`T`.
    pub flags: Flags,
    /// `O`: the message was seen as "old" by a mail reader, so it belongs in cur/.
    pub old: bool,
}

impl MboxStatus {
    /// Where and how to store the message: `Some(flags)` → cur/ with `:2,<flags>` (when it is
    /// old or has any flag: a name in new/ cannot carry flags), `None` → new/.
    pub fn maildir_info(&self) -> Option<Flags> {
        (self.old || !self.flags.is_empty()).then_some(self.flags)
    }

    fn note(&mut self, b: u8) {
        let f = match b {
            b'R' => Flags::SEEN,
            b'A' => Flags::REPLIED,
            b'F' => Flags::FLAGGED,
            b'D' => Flags::TRASHED,
            b'O' => {
                self.old = true;
                return;
            }
            _ => return,
        };
        let _ = self.flags.insert(f);
    }
}

const STATUS_HOLD: usize = 24;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum StatusMode {
    Pass,
    Hold,
    Drop,
}

/// A [`Transform`] that removes `Status:` and `X-Status:` fields (with their continuation
/// lines) from the header block, collecting their letters into an [`MboxStatus`]. The body and
/// every other header byte pass unchanged. A name followed by more than a few bytes of
/// whitespace before its colon is left alone.
pub struct StatusFilter {
    lex: HeaderLexer,
    status: NameMatch,
    xstatus: NameMatch,
    mode: StatusMode,
    hold: [u8; STATUS_HOLD + 1],
    hold_len: usize,
    flush_pos: usize,
    flushing: bool,
    seen: MboxStatus,
}

impl Default for StatusFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusFilter {
    /// A fresh filter.
    pub const fn new() -> Self {
        StatusFilter {
            lex: HeaderLexer::new(),
            status: NameMatch::new(b"status"),
            xstatus: NameMatch::new(b"x-status"),
            mode: StatusMode::Pass,
            hold: [0; STATUS_HOLD + 1],
            hold_len: 0,
            flush_pos: 0,
            flushing: false,
            seen: MboxStatus {
                flags: Flags::EMPTY,
                old: false,
            },
        }
    }

    /// The flags seen so far (final once the header block has passed).
    pub fn status(&self) -> MboxStatus {
        self.seen
    }

    /// Whether the header block has been fully seen.
    pub fn header_done(&self) -> bool {
        self.lex.in_body()
    }

    fn start_flush(&mut self) {
        self.flushing = true;
        self.flush_pos = 0;
        self.mode = StatusMode::Pass;
    }
}

impl Transform for StatusFilter {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut i = 0;
        let mut o = 0;
        loop {
            if self.flushing {
                o += drain(
                    &self.hold[..self.hold_len],
                    &mut self.flush_pos,
                    &mut out[o..],
                );
                if self.flush_pos < self.hold_len {
                    return (i, o);
                }
                self.flushing = false;
                self.hold_len = 0;
            }
            if i == input.len() || o == out.len() {
                return (i, o);
            }
            if self.lex.in_body() {
                let n = (input.len() - i).min(out.len() - o);
                out[o..o + n].copy_from_slice(&input[i..i + n]);
                return (i + n, o + n);
            }
            let b = input[i];
            i += 1;
            let (role, boundary) = self.lex.step(b);
            if boundary {
                self.mode = StatusMode::Pass;
            }
            match (self.mode, role) {
                (_, Role::NameStart) => {
                    self.status.reset();
                    self.xstatus.reset();
                    self.status.feed(b);
                    self.xstatus.feed(b);
                    self.hold[0] = b;
                    self.hold_len = 1;
                    self.mode = StatusMode::Hold;
                    if !self.status.viable() && !self.xstatus.viable() {
                        self.start_flush();
                    }
                }
                (StatusMode::Hold, Role::Name | Role::NameWsp) => {
                    if role == Role::Name {
                        self.status.feed(b);
                        self.xstatus.feed(b);
                    } else if !self.status.complete() && !self.xstatus.complete() {
                        self.status.ok = false;
                        self.xstatus.ok = false;
                    }
                    self.hold[self.hold_len] = b;
                    self.hold_len += 1;
                    let viable = self.status.viable() || self.xstatus.viable();
                    if !viable || self.hold_len == STATUS_HOLD {
                        self.start_flush();
                    }
                }
                (StatusMode::Hold, Role::Colon)
                    if self.status.complete() || self.xstatus.complete() =>
                {
                    self.mode = StatusMode::Drop;
                    self.hold_len = 0;
                }
                (StatusMode::Hold, _) => {
                    self.hold[self.hold_len] = b;
                    self.hold_len += 1;
                    self.start_flush();
                }
                (StatusMode::Drop, Role::Value) => self.seen.note(b),
                (StatusMode::Drop, _) => {}
                (StatusMode::Pass, _) => {
                    out[o] = b;
                    o += 1;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut [u8]) -> usize {
        if self.mode == StatusMode::Hold {
            self.start_flush();
        }
        self.push(&[], out).1
    }
}

// ---------------------------------------------------------------------------------------------
// Field capture (Date:, Message-ID:)

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
enum CaptureState {
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
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.lex.in_body() || self.state == CaptureState::Done {
                return;
            }
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

impl<const N: usize> Scan for FieldCapture<N> {
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

// ---------------------------------------------------------------------------------------------
// (e) Dates

fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Num(u32, u8),
    Word(&'a [u8]),
    Punct(u8),
}

/// Splits a date into numbers, words and punctuation, skipping whitespace and comments.
struct DateLexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Iterator for DateLexer<'a> {
    type Item = Tok<'a>;
    fn next(&mut self) -> Option<Tok<'a>> {
        let s = self.s;
        loop {
            let b = *s.get(self.i)?;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    let mut depth = 0u32;
                    while let Some(&c) = s.get(self.i) {
                        self.i += 1;
                        match c {
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            b'\\' => self.i += 1,
                            _ => {}
                        }
                    }
                }
                b'0'..=b'9' => {
                    let start = self.i;
                    let mut v: u32 = 0;
                    while let Some(&c @ b'0'..=b'9') = s.get(self.i) {
                        v = v.saturating_mul(10).saturating_add((c - b'0') as u32);
                        self.i += 1;
                    }
                    let digits = (self.i - start).min(255) as u8;
                    return Some(Tok::Num(v, digits));
                }
                _ if b.is_ascii_alphabetic() => {
                    let start = self.i;
                    while s.get(self.i).is_some_and(u8::is_ascii_alphabetic) {
                        self.i += 1;
                    }
                    return Some(Tok::Word(&s[start..self.i]));
                }
                _ => {
                    self.i += 1;
                    return Some(Tok::Punct(b));
                }
            }
        }
    }
}

fn month(w: &[u8]) -> Option<u32> {
    const M: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    if w.len() < 3 {
        return None;
    }
    M.iter()
        .position(|m| m.eq_ignore_ascii_case(&w[..3]))
        .map(|i| i as u32 + 1)
}

fn is_weekday(w: &[u8]) -> bool {
    const D: [&[u8; 3]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
    w.len() >= 3 && D.iter().any(|d| d.eq_ignore_ascii_case(&w[..3]))
}

/// Offset in seconds east of UTC for an alphabetic zone; RFC 5322 §4.3: unknown ones (and
/// military letters) count as `-0000`, i.e. UTC.
fn named_zone(w: &[u8]) -> i64 {
    const Z: [(&[u8], i64); 10] = [
        (b"ut", 0),
        (b"gmt", 0),
        (b"est", -5),
        (b"edt", -4),
        (b"cst", -6),
        (b"cdt", -5),
        (b"mst", -7),
        (b"mdt", -6),
        (b"pst", -8),
        (b"pdt", -7),
    ];
    Z.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(w))
        .map_or(0, |(_, h)| h * 3600)
}

fn full_year(y: u32, digits: u8) -> i64 {
    // RFC 5322 §4.3: two digits: 00-49 → 20xx, 50-99 → 19xx; three digits: + 1900.
    match digits {
        0..=2 if y < 50 => 2000 + y as i64,
        0..=2 => 1900 + y as i64,
        3 => 1900 + y as i64,
        _ => y as i64,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[allow(clippy::too_many_arguments)]
fn to_unix(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, off: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 || !(0..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(days * 86400 + (h * 3600 + mi * 60 + s) as i64 - off)
}

/// Parses `hh:mm[:ss]` from the token stream; the first number is given.
fn time_of_day(h: u32, toks: &mut core::iter::Peekable<DateLexer<'_>>) -> Option<(u32, u32, u32)> {
    if toks.next()? != Tok::Punct(b':') {
        return None;
    }
    let Tok::Num(mi, _) = toks.next()? else {
        return None;
    };
    let mut s = 0;
    if toks.peek() == Some(&Tok::Punct(b':')) {
        toks.next();
        let Tok::Num(v, _) = toks.next()? else {
            return None;
        };
        s = v;
    }
    Some((h, mi, s))
}

/// A numeric zone after its sign: `hhmm`.
fn numeric_zone(sign: u8, v: u32, digits: u8) -> Option<i64> {
    if digits != 4 || v % 100 > 59 {
        return None;
    }
    let secs = ((v / 100) * 3600 + (v % 100) * 60) as i64;
    Some(if sign == b'-' { -secs } else { secs })
}

/// Parses an RFC 5322 `Date:` value (`[Sat,] 28 Nov 2026 18:03:09 +0100`) to a Unix timestamp.
/// Accepts the obsolete forms: comments and folding anywhere, a missing weekday, missing
/// seconds, 2- and 3-digit years, and alphabetic zones (`UT`, `GMT`, `EST`, ...; unknown ones
/// and a missing zone count as UTC). Trailing text is ignored.
pub fn parse_rfc5322_date(v: &[u8]) -> Option<i64> {
    let mut t = DateLexer { s: v, i: 0 }.peekable();
    let mut tok = t.next()?;
    if let Tok::Word(w) = tok {
        if !is_weekday(w) {
            return None;
        }
        tok = t.next()?;
        if tok == Tok::Punct(b',') {
            tok = t.next()?;
        }
    }
    let Tok::Num(day, 1..=2) = tok else {
        return None;
    };
    let Tok::Word(mw) = t.next()? else {
        return None;
    };
    let mo = month(mw)?;
    let Tok::Num(y, yd) = t.next()? else {
        return None;
    };
    let Tok::Num(h, _) = t.next()? else {
        return None;
    };
    let (h, mi, s) = time_of_day(h, &mut t)?;
    let off = match t.next() {
        Some(Tok::Punct(sign @ (b'+' | b'-'))) => match t.next() {
            Some(Tok::Num(z, zd)) => numeric_zone(sign, z, zd)?,
            _ => return None,
        },
        Some(Tok::Word(w)) => named_zone(w),
        _ => 0,
    };
    to_unix(full_year(y, yd), mo, day, h, mi, s, off)
}

/// Parses the asctime date of an mbox `From ` line (`Sat Nov 28 18:03:09 2026`) to a Unix
/// timestamp. After the time, the first number is the year and a `+hhmm`/`-hhmm` or known
/// alphabetic zone is applied (placed before or after the year); other fields (`remote from
/// host`) are ignored. Without a zone the date is taken as UTC.
pub fn parse_asctime(v: &[u8]) -> Option<i64> {
    let mut t = DateLexer { s: v, i: 0 }.peekable();
    let mut tok = t.next()?;
    if let Tok::Word(w) = tok {
        if is_weekday(w) && month(w).is_none() {
            tok = t.next()?;
        }
    }
    let Tok::Word(mw) = tok else {
        return None;
    };
    let mo = month(mw)?;
    let Tok::Num(day, 1..=2) = t.next()? else {
        return None;
    };
    let Tok::Num(h, _) = t.next()? else {
        return None;
    };
    let (h, mi, s) = time_of_day(h, &mut t)?;
    let mut year = None;
    let mut off = None;
    while let Some(tok) = t.next() {
        match tok {
            Tok::Num(y, d) if year.is_none() && d >= 2 => year = Some(full_year(y, d)),
            Tok::Punct(sign @ (b'+' | b'-')) if off.is_none() => {
                if let Some(Tok::Num(z, zd)) = t.peek().copied() {
                    t.next();
                    off = numeric_zone(sign, z, zd);
                }
            }
            Tok::Word(w) if off.is_none() && year.is_none() && w.len() <= 5 => {
                off = Some(named_zone(w));
            }
            _ => {}
        }
        if year.is_some() && off.is_some() {
            break;
        }
    }
    to_unix(year?, mo, day, h, mi, s, off.unwrap_or(0))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    /// Runs a transform over `input` cut into `chunk`-byte pieces, reading into `out_size`
    /// buffers.
    fn run<T: Transform>(t: &mut T, input: &[u8], chunk: usize, out_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = std::vec![0u8; out_size];
        run_chunked(t, input, chunk, &mut buf, |b| out.extend_from_slice(b));
        out
    }

    /// Output of a transform built by `make`, checked identical for every chunking.
    fn all_chunkings<T: Transform>(make: impl Fn() -> T, input: &[u8]) -> (Vec<u8>, T) {
        let mut t0 = make();
        let reference = run(&mut t0, input, input.len().max(1), 65536);
        for chunk in [1, 2, 3, 7, 64, 65536] {
            for out in [1, 2, 5, 64, 4096] {
                let mut t = make();
                assert_eq!(
                    run(&mut t, input, chunk, out),
                    reference,
                    "chunk {chunk} out {out}"
                );
            }
        }
        (reference, t0)
    }

    #[test]
    fn envelope_parts() {
        let e =
            Envelope::parse_line(b"From alice@example.org Sat Nov 28 18:03:09 2026\r\n").unwrap();
        assert_eq!(e.sender(), Sender::Address(b"alice@example.org"));
        assert_eq!(e.date_text(), b"Sat Nov 28 18:03:09 2026");
        assert_eq!(e.timestamp(), Some(1795888989));
        let e = Envelope::parse_line(b"From MAILER-DAEMON Sat Nov 28 18:03:09 2026").unwrap();
        assert_eq!(e.sender(), Sender::Null);
        assert_eq!(e.return_path(), Some(&b""[..]));
        let e = Envelope::parse_line(b"From <> Sat Nov 28 18:03:09 2026").unwrap();
        assert_eq!(e.sender(), Sender::Null);
        let e = Envelope::parse_line(b"From - Sat Nov 28 18:03:09 2026").unwrap();
        assert_eq!(e.sender(), Sender::Unknown);
        assert_eq!(e.return_path(), None);
        let e = Envelope::parse_line(b"From \"john doe\"@x.org  Sat Nov 28 18:03:09 2026").unwrap();
        assert_eq!(e.sender(), Sender::Address(b"\"john doe\"@x.org"));
        assert_eq!(e.timestamp(), Some(1795888989));
        let e = Envelope::parse_line(b"From <bob@x.org> Sat Nov 28 18:03:09 2026").unwrap();
        assert_eq!(e.sender(), Sender::Address(b"bob@x.org"));
        assert!(Envelope::parse_line(b">From a b").is_none());
        assert!(Envelope::parse_line(b"From: a").is_none());
    }

    #[test]
    fn asctime_variants() {
        let base = 1795888989; // 2026-11-28T18:03:09Z
        assert_eq!(parse_asctime(b"Sat Nov 28 18:03:09 2026"), Some(base));
        assert_eq!(parse_asctime(b"Nov 28 18:03:09 2026"), Some(base));
        assert_eq!(
            parse_asctime(b"Sat Nov 28 18:03:09 2026 +0100"),
            Some(base - 3600)
        );
        assert_eq!(
            parse_asctime(b"Sat Nov 28 18:03:09 EST 2026"),
            Some(base + 5 * 3600)
        );
        assert_eq!(parse_asctime(b"Sat Nov 28 18:03 2026"), Some(base - 9));
        assert_eq!(
            parse_asctime(b"Sat Nov 28 18:03:09 2026 remote from uucp"),
            Some(base)
        );
        assert_eq!(
            parse_asctime(b"Sat Nov  8 18:03:09 2026"),
            Some(base - 20 * 86400)
        );
        assert_eq!(parse_asctime(b"Sat Nov 31 18:03:09 2026"), None);
        assert_eq!(parse_asctime(b"Sat Nov 28 18:03:09"), None);
        assert_eq!(parse_asctime(b"garbage"), None);
        // The From line's fallback to RFC 5322 form.
        let e = Envelope::from_rest(b"a@b Sat, 28 Nov 2026 18:03:09 +0000");
        assert_eq!(e.timestamp(), Some(base));
    }

    #[test]
    fn rfc5322_dates() {
        let base = 1795888989;
        let ok: &[(&[u8], i64)] = &[
            (b"Sat, 28 Nov 2026 18:03:09 +0000", base),
            (b"28 Nov 2026 18:03:09 +0000", base),
            (b"Sat, 28 Nov 2026 19:03:09 +0100", base),
            (b"Sat, 28 Nov 2026 13:03:09 -0500", base),
            (b"Sat, 28 Nov 2026 18:03:09 GMT", base),
            (b"Sat, 28 Nov 2026 18:03:09 UT", base),
            (b"Sat, 28 Nov 2026 13:03:09 EST", base),
            (b"Sat, 28 Nov 2026 14:03:09 EDT", base),
            (b"Sat, 28 Nov 2026 10:03:09 PST", base),
            (b"Sat, 28 Nov 2026 18:03:09 Z", base),
            (b"Sat, 28 Nov 2026 18:03:09 XYZT", base),
            (b"Sat, 28 Nov 2026 18:03:09", base),
            (b"Sat, 28 Nov 2026 18:03 +0000", base - 9),
            (b"  Sat ,28 nov 2026 18 : 03 : 09 +0000 (UTC)", base),
            (b"(comment (nested)) Sat, 28 Nov 2026 18:03:09 +0000", base),
            (b"Sat, 28 November 2026 18:03:09 +0000", base),
            (b"Sat, 28 Nov\r\n 2026 18:03:09 +0000", base),
            (b"Fri, 1 Jan 99 00:00:00 +0000", 915148800),
            (b"Sat, 1 Jan 00 00:00:00 +0000", 946684800),
            (b"Thu, 1 Jan 49 00:00:00 +0000", 2493072000),
            (b"Fri, 1 Jan 50 00:00:00 +0000", -631152000),
            (b"Fri, 1 Jan 099 00:00:00 +0000", 915148800),
            (b"Thu, 29 Feb 2024 12:00:00 +0000", 1709208000),
            (b"Thu, 01 Jan 1970 00:00:00 +0000", 0),
        ];
        for (s, want) in ok {
            assert_eq!(
                parse_rfc5322_date(s),
                Some(*want),
                "{}",
                std::string::String::from_utf8_lossy(s)
            );
        }
        let bad: &[&[u8]] = &[
            b"",
            b"yesterday",
            b"Sat, 29 Feb 2026 12:00:00 +0000",
            b"Sat, 28 Foo 2026 18:03:09 +0000",
            b"Sat, 28 Nov 2026 24:03:09 +0000",
            b"Sat, 28 Nov 2026 18:60:09 +0000",
            b"Sat, 28 Nov 2026 18:03:09 +01",
            b"Sat, 28 Nov 2026 18:03:09 +0160",
            b"Sat, 128 Nov 2026 18:03:09 +0000",
        ];
        for s in bad {
            assert_eq!(
                parse_rfc5322_date(s),
                None,
                "{}",
                std::string::String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn from_line_strip_and_keep() {
        let msg = b"From alice@example.org Sat Nov 28 18:03:09 2026\nSubject: x\n\nFrom body\n";
        let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), msg);
        assert_eq!(out, b"Subject: x\n\nFrom body\n");
        assert_eq!(
            t.envelope().unwrap().sender(),
            Sender::Address(b"alice@example.org")
        );
        let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Keep), msg);
        assert_eq!(out, msg);
        assert!(t.found());
        // No From line: untouched, including a near miss.
        for m in [&b"Subject: x\n\nbody"[..], b"Fro", b"From:x\n", b"", b"F"] {
            let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), m);
            assert_eq!(out, m);
            assert!(!t.found() && t.envelope().is_none());
        }
        // A From line only, without newline.
        let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), b"From a b");
        assert_eq!(out, b"");
        assert_eq!(t.envelope().unwrap().sender(), Sender::Address(b"a"));
        // Too long: stripped, but no envelope.
        let mut long = b"From ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 5000));
        long.extend_from_slice(b"\nS: y\n");
        let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), &long);
        assert_eq!(out, b"S: y\n");
        assert!(t.found() && t.envelope().is_none());
    }

    #[test]
    fn prelude_lines() {
        let f = PreludeFields {
            return_path: Some(b" <alice@example.org> "),
            original_to: Some(b"Bob@Example.org"),
            delivered_to: Some(b"bob@example.org"),
        };
        let (out, _) = all_chunkings(|| Prelude::new(f).unwrap(), b"Subject: x\n\nbody\n");
        assert_eq!(
            out,
            &b"Return-Path: <alice@example.org>\nX-Original-To: Bob@Example.org\n\
               Delivered-To: bob@example.org\nSubject: x\n\nbody\n"[..]
        );
        let (out, _) = all_chunkings(|| Prelude::new(f).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(
            out,
            &b"Return-Path: <alice@example.org>\r\nX-Original-To: Bob@Example.org\r\n\
               Delivered-To: bob@example.org\r\nSubject: x\r\n\r\nbody\r\n"[..]
        );
        // A kept From line stays first; the null sender; only some fields.
        let g = PreludeFields {
            return_path: Some(b"<>"),
            delivered_to: Some(b"bob@x"),
            ..Default::default()
        };
        let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"From a b\nS: x\r\n");
        assert_eq!(
            out,
            b"From a b\nReturn-Path: <>\r\nDelivered-To: bob@x\r\nS: x\r\n"
        );
        // Empty message, message without newline, near-miss From.
        let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"");
        assert_eq!(out, b"Return-Path: <>\nDelivered-To: bob@x\n");
        let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"Fro");
        assert_eq!(out, b"Return-Path: <>\nDelivered-To: bob@x\nFro");
        let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"From:x\r\n");
        assert_eq!(out, b"Return-Path: <>\r\nDelivered-To: bob@x\r\nFrom:x\r\n");
        // A first line longer than the peek window: LF.
        let mut long = std::vec![b'a'; 3000];
        long.extend_from_slice(b"\r\n");
        let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), &long);
        assert!(out.starts_with(b"Return-Path: <>\nDelivered-To: bob@x\naaa"));
        assert!(out.ends_with(&long[2900..]));
        // Nothing to add: identity.
        let (out, _) = all_chunkings(
            || Prelude::new(PreludeFields::default()).unwrap(),
            b"A: b\n",
        );
        assert_eq!(out, b"A: b\n");
        // Header injection refused.
        let bad = PreludeFields {
            delivered_to: Some(b"a@b\r\nBcc: x"),
            ..Default::default()
        };
        assert_eq!(
            Prelude::new(bad).err(),
            Some(AddressError::ControlChar(b'\r'))
        );
        let empty = PreludeFields {
            delivered_to: Some(b"<>"),
            ..Default::default()
        };
        assert_eq!(Prelude::new(empty).err(), Some(AddressError::Empty));
    }

    fn loop_all(msg: &[u8], addr: &[u8]) -> bool {
        let want = has_delivered_to(msg, addr);
        for chunk in [1, 2, 3, 7, 64] {
            let mut c = LoopCheck::new(addr);
            for p in msg.chunks(chunk) {
                c.push(p);
            }
            c.finish();
            assert_eq!(c.found(), want, "chunk {chunk}");
        }
        want
    }

    #[test]
    fn loop_detection() {
        let a = b"bob@example.org";
        assert!(loop_all(b"Delivered-To: bob@example.org\n\n", a));
        assert!(loop_all(
            b"Subject: x\ndelivered-to:  <BOB@Example.ORG> \r\n\r\nbody",
            a
        ));
        assert!(loop_all(b"DELIVERED-TO : bob@example.org\n\n", a));
        assert!(loop_all(
            b"X: y\nDelivered-To:\n  bob@exa\n\tmple.org\nZ: w\n\n",
            a
        ));
        assert!(loop_all(
            b"Delivered-To: other@x\nDelivered-To: bob@example.org",
            a
        ));
        assert!(loop_all(
            b"Delivered-To: bob@example.org\n\n",
            b" <BOB@example.org> "
        ));
        // No match.
        assert!(!loop_all(b"Delivered-To: bob@example.org.evil\n\n", a));
        assert!(!loop_all(b"Delivered-To: bob@example.or\n\n", a));
        assert!(!loop_all(b"X-Delivered-To: bob@example.org\n\n", a));
        assert!(!loop_all(b"Delivered-Tox: bob@example.org\n\n", a));
        assert!(!loop_all(
            b"Subject: x\n\nDelivered-To: bob@example.org\n",
            a
        ));
        assert!(!loop_all(
            b"Subject: x\r\n\r\nDelivered-To: bob@example.org\n",
            a
        ));
        assert!(!loop_all(
            b"Subject: x\n Delivered-To: bob@example.org\n",
            a
        ));
        assert!(!loop_all(b"Delivered-To:\n\n", b""));
        assert!(!loop_all(b"Delivered-To: bob@example.org\n\n", b"<>"));
        // A kept From line does not end the header.
        assert!(loop_all(
            b"From a Sat Nov 28 18:03:09 2026\nDelivered-To: bob@example.org\n",
            a
        ));
        // A 1 MiB header line before it changes nothing.
        let mut big = b"X-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'z', 1 << 20));
        big.extend_from_slice(b"\nDelivered-To: bob@example.org\n\nbody");
        assert!(has_delivered_to(&big, a));
        let mut c = LoopCheck::new(a);
        for p in big.chunks(4096) {
            c.push(p);
        }
        assert!(c.header_done() && c.found());
    }

    #[test]
    fn status_filter() {
        let msg = b"From: a\nStatus: RO\nSubject: s\nX-Status: AF\n\tD\nX-Statusx: keep\n\
                    status : R\n\nStatus: body stays\n";
        let (out, t) = all_chunkings(StatusFilter::new, msg);
        assert_eq!(
            out,
            &b"From: a\nSubject: s\nX-Statusx: keep\n\nStatus: body stays\n"[..]
        );
        let st = t.status();
        assert_eq!(std::format!("{}", st.flags), "FRST");
        assert!(st.old);
        assert_eq!(
            st.maildir_info().map(|f| std::format!("{f}")).as_deref(),
            Some("FRST")
        );
        // CRLF, last header without newline, only headers.
        let (out, t) = all_chunkings(StatusFilter::new, b"A: b\r\nStatus: O\r\n");
        assert_eq!(out, b"A: b\r\n");
        assert_eq!(t.status().maildir_info(), Some(Flags::EMPTY));
        let (out, t) = all_chunkings(StatusFilter::new, b"A: b\r\nX-Status: F");
        assert_eq!(out, b"A: b\r\n");
        assert_eq!(std::format!("{}", t.status().flags), "F");
        // No status: new/.
        let (out, t) = all_chunkings(StatusFilter::new, b"Stat: x\nS\nStatus\n\nbody");
        assert_eq!(out, b"Stat: x\nS\nStatus\n\nbody");
        assert_eq!(t.status().maildir_info(), None);
        // Whitespace before the colon beyond the hold bound is left alone.
        let mut odd = b"Status".to_vec();
        odd.extend_from_slice(&[b' '; 30]);
        odd.extend_from_slice(b": R\n\n");
        let (out, t) = all_chunkings(StatusFilter::new, &odd);
        assert_eq!(out, odd);
        assert_eq!(t.status(), MboxStatus::default());
        // A 1 MiB header line passes intact.
        let mut big = b"X-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'z', 1 << 20));
        big.extend_from_slice(b"\nStatus: R\n\nb");
        let mut t = StatusFilter::new();
        let out = run(&mut t, &big, 4093, 1000);
        assert_eq!(out.len(), big.len() - 10);
        assert_eq!(std::format!("{}", t.status().flags), "S");
    }

    #[test]
    fn date_capture() {
        let msg = b"Subject: x\nDATE: Sat, 28 Nov 2026\r\n 18:03:09 +0000 (UTC)\nDate: Mon, 1 Jan 2001 00:00:00 +0000\n\n";
        for chunk in [1, 2, 7, 64] {
            let mut d = DateCapture::date();
            for p in msg.chunks(chunk) {
                d.push(p);
            }
            d.finish();
            assert_eq!(
                d.value(),
                Some(&b"Sat, 28 Nov 2026 18:03:09 +0000 (UTC)"[..])
            );
            assert_eq!(d.timestamp(), Some(1795888989));
        }
        let mut d = DateCapture::date();
        d.push(b"Subject: x\n\nDate: Sat, 28 Nov 2026 18:03:09 +0000\n");
        d.finish();
        assert_eq!(d.value(), None);
        let mut m = FieldCapture::<8>::new(b"message-id");
        m.push(b"Message-ID: <0123456789@x>");
        m.finish();
        assert_eq!(m.value(), Some(&b"<0123456"[..]));
        assert!(m.truncated());
    }

    /// Messages built from tokens that exercise every state (deterministic xorshift).
    pub(crate) fn generated(seed: u64, tokens: &[&[u8]], max: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut out = Vec::new();
        let n = (x % max as u64) as usize;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(tokens[(x % tokens.len() as u64) as usize]);
        }
        out
    }

    const TOKENS: &[&[u8]] = &[
        b"From ",
        b"From",
        b">",
        b"\n",
        b"\r\n",
        b"\r",
        b"Status",
        b"X-Status",
        b": ",
        b":",
        b"RO",
        b"AFD",
        b"Delivered-To",
        b"\nDelivered-To: <a@B>",
        b"\nStatus: R",
        b"a@B",
        b"<",
        b">",
        b" ",
        b"\t",
        b"x",
        b"\xff",
        b"Date",
        b"Sat, 28 Nov 2026 18:03:09 +0000",
        b"\n\n",
    ];

    #[test]
    fn generated_inputs_are_chunking_independent() {
        for seed in 0..300 {
            let m = generated(seed, TOKENS, 60);
            let (_, st) = all_chunkings(StatusFilter::new, &m);
            let (_, fl) = all_chunkings(|| FromLine::new(FromLineMode::Strip), &m);
            let _ = all_chunkings(|| FromLine::new(FromLineMode::Keep), &m);
            let f = PreludeFields {
                return_path: Some(b"r@x"),
                delivered_to: Some(b"d@x"),
                ..Default::default()
            };
            let _ = all_chunkings(|| Prelude::new(f).unwrap(), &m);
            let found = loop_all(&m, b"a@b");
            for chunk in [1, 3, 64] {
                let mut s = StatusFilter::new();
                let mut d = DateCapture::date();
                let mut l = LoopCheck::new(b"a@b");
                let mut buf = [0u8; 7];
                run_chunked(&mut s, &m, chunk, &mut buf, |_| {});
                for p in m.chunks(chunk) {
                    d.push(p);
                    l.push(p);
                }
                d.finish();
                l.finish();
                assert_eq!(s.status(), st.status(), "seed {seed}");
                assert_eq!(l.found(), found);
                let mut d1 = DateCapture::date();
                d1.push(&m);
                d1.finish();
                assert_eq!(d.value(), d1.value());
            }
            // Keep mode is the identity; Strip removes exactly the first line when it is one.
            if m.starts_with(b"From ") {
                assert!(fl.found());
            } else {
                assert!(!fl.found());
            }
        }
    }

    /// A naive line-based model of the header block: `(name_with_wsp, value_bytes, all_bytes)`
    /// per field or other line, and the body.
    struct ModelLine {
        /// Name and whitespace before the colon, for fields.
        name: Option<Vec<u8>>,
        /// Bytes after the colon (fields) through the end of the last continuation line.
        value: Vec<u8>,
        /// Every byte of the logical line.
        all: Vec<u8>,
    }

    fn model(m: &[u8]) -> (Vec<ModelLine>, Vec<u8>) {
        let mut lines: Vec<ModelLine> = Vec::new();
        let mut rest = m;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| p + 1);
            let line = &rest[..end];
            if line == b"\n" || line == b"\r\n" {
                return (lines, rest[end..].to_vec());
            }
            rest = &rest[end..];
            let cont = matches!(line[0], b' ' | b'\t');
            if cont && !lines.is_empty() {
                let l = lines.last_mut().unwrap();
                l.all.extend_from_slice(line);
                l.value.extend_from_slice(line);
                continue;
            }
            let n = line.iter().take_while(|&&b| is_name_byte(b)).count();
            let w = line[n..]
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            let field = !cont && n > 0 && line.get(n + w) == Some(&b':');
            lines.push(ModelLine {
                name: field.then(|| line[..n + w].to_vec()),
                value: if field {
                    line[n + w + 1..].to_vec()
                } else {
                    Vec::new()
                },
                all: line.to_vec(),
            });
        }
        (lines, Vec::new())
    }

    fn model_status(m: &[u8]) -> (Vec<u8>, MboxStatus) {
        let (lines, body) = model(m);
        let mut out = Vec::new();
        let mut st = MboxStatus::default();
        let mut header_len = 0;
        for l in &lines {
            header_len += l.all.len();
            let drop = l.name.as_ref().is_some_and(|n| {
                let bare: Vec<u8> = n
                    .iter()
                    .copied()
                    .filter(|b| !matches!(b, b' ' | b'\t'))
                    .collect();
                n.len() < STATUS_HOLD
                    && (bare.eq_ignore_ascii_case(b"status")
                        || bare.eq_ignore_ascii_case(b"x-status"))
            });
            if drop {
                l.value.iter().for_each(|&b| st.note(b));
            } else {
                out.extend_from_slice(&l.all);
            }
        }
        out.extend_from_slice(&m[header_len..m.len() - body.len()]);
        out.extend_from_slice(&body);
        (out, st)
    }

    fn model_loop(m: &[u8], addr: &[u8]) -> bool {
        let norm = |v: &[u8]| -> Vec<u8> {
            v.iter()
                .filter(|&&b| !insignificant(b))
                .map(u8::to_ascii_lowercase)
                .collect()
        };
        let want = norm(addr);
        !want.is_empty()
            && model(m).0.iter().any(|l| {
                l.name.as_ref().is_some_and(|n| {
                    let bare: Vec<u8> = n
                        .iter()
                        .copied()
                        .filter(|b| !matches!(b, b' ' | b'\t'))
                        .collect();
                    bare.eq_ignore_ascii_case(b"delivered-to")
                }) && norm(&l.value) == want
            })
    }

    #[test]
    fn generated_inputs_match_a_line_model() {
        let (mut dropped, mut loops) = (0, 0);
        for seed in 0..2000 {
            let m = generated(seed, TOKENS, 60);
            let mut t = StatusFilter::new();
            let out = run(&mut t, &m, 3, 5);
            let (want, st) = model_status(&m);
            assert_eq!(
                (String::from_utf8_lossy(&out), t.status()),
                (String::from_utf8_lossy(&want), st),
                "seed {seed}: {:?}",
                String::from_utf8_lossy(&m)
            );
            let found = has_delivered_to(&m, b"a@b");
            assert_eq!(found, model_loop(&m, b"a@b"), "seed {seed}");
            dropped += usize::from(out.len() < m.len());
            loops += usize::from(found);
        }
        // The generator must reach the interesting cases, or this test proves nothing.
        assert!(dropped > 20 && loops > 5, "dropped {dropped} loops {loops}");
    }

    #[test]
    fn prefixed_reader() {
        use embedded_io::Read;
        let mut r = Prefixed::new(b"Delivered-To: a\n", &b"\nbody"[..]);
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"Delivered-To: a\n\nbody");
    }

    #[test]
    fn transformed_reader_chains() {
        use embedded_io::Read;
        let msg: &[u8] = b"From a@b Sat Nov 28 18:03:09 2026\nStatus: RO\nSubject: x\n\nbody\n";
        let f = PreludeFields {
            delivered_to: Some(b"me@x"),
            ..Default::default()
        };
        let inner: Transformed<&[u8], FromLine, 7> =
            Transformed::new(msg, FromLine::new(FromLineMode::Strip));
        let mid: Transformed<_, StatusFilter, 3> = Transformed::new(inner, StatusFilter::new());
        let mut outer: Transformed<_, Prelude, 5> = Transformed::new(mid, Prelude::new(f).unwrap());
        let mut out = Vec::new();
        let mut buf = [0u8; 2];
        loop {
            let n = outer.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"Delivered-To: me@x\nSubject: x\n\nbody\n");
        let (mid, _) = outer.into_parts();
        assert!(mid.transform().status().old);
        // A scanner inside a chain sees the bytes and passes them on.
        let src: &[u8] = b"Subject: x\nDate: Thu, 01 Jan 1970 00:01:00 +0000\n\nb";
        let mut r: Transformed<_, Observe<DateCapture>, 4> =
            Transformed::new(src, Observe(DateCapture::date()));
        let mut all = Vec::new();
        let mut one = [0u8; 1];
        while r.read(&mut one).unwrap() == 1 {
            all.push(one[0]);
        }
        assert_eq!(all, src);
        assert_eq!(r.transform().0.timestamp(), Some(60));
        let (inner, _) = mid.into_parts();
        assert_eq!(
            inner.transform().envelope().unwrap().sender(),
            Sender::Address(b"a@b")
        );
    }
}
