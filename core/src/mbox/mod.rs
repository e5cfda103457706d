//! Splitting an mbox into messages, streaming and allocation-free, with the same result for any
//! way the input is cut into chunks.
//!
//! # Framing (what bytes a message gets)
//! - A message starts at a line beginning with `From ` (the envelope line, which is not part of
//!   the message: it becomes [`Postmark`]). Every line beginning with `From ` starts a new
//!   message, as in Python's `mailbox.mbox` and mblaze: writers quote such lines in bodies.
//! - The empty line (`\n` or `\r\n`) directly before a `From ` line, and one empty line at the
//!   end of the input, belong to the separator, not to the message. Everything else is the
//!   message's, byte for byte: a message whose last line has no newline (at the end of the
//!   input) keeps it that way, CRLF line endings and 8-bit bytes pass unchanged, a message
//!   without the separating empty line loses nothing.
//! - So `From a\nX: 1\n\nbody\n\nFrom b\n...` gives `X: 1\n\nbody\n`, and an mbox of only
//!   `From ` lines gives empty messages.
//! - Input must begin with `From `: anything else (a leading empty line, a plain message) is
//!   [`MboxError::NotMbox`]. An empty input is an empty mbox. An envelope line longer than
//!   [`FROM_LINE_MAX`] is [`MboxError::FromLineTooLong`]. Both name the byte offset.
//!
//! Compared with mblaze's `mdeliver -M` (1.1, same input): mblaze keeps the separating empty
//! line at the end of every message (each stored message gains a trailing `\n`) and silently
//! skips data before the first `From ` line; both split on every `From ` line and undo mboxrd
//! quoting the same way.
//!
//! # Quoting
//! Body lines that began with `From ` were quoted by the writer. Conventions differ:
//! - mboxrd (mblaze `mexport`, getmail, Dovecot's exporters) quotes `>*From ` by adding one `>`,
//!   and is lossless: [`Quoting::Mboxrd`] removes one `>` from every `>+From ` line.
//! - mboxo (Python's `mailbox.mbox`, mutt, classic UNIX mailers) quotes only `From `, so an
//!   original `>From ` line cannot be told from a quoted `From `. [`Quoting::Mboxo`] removes the
//!   `>` from lines starting with exactly one `>` and `From `, leaving `>>From ` alone.
//! - [`Quoting::Raw`] removes nothing: the bytes Python's `mailbox.mbox` and mutt give back.
//!
//! The default is mboxrd, as in mblaze's `mdeliver -M`: it is exact for mboxrd files and for
//! mboxo files it restores every quoted `From ` line; the only lines it changes wrongly are ones
//! that began with `>From ` before an mboxo writer stored them (mboxo cannot represent those).
//!
//! # Interfaces
//! [`Splitter`] is the sans-io machine (fed chunks, yields [`Event`]s); [`MboxReader`] drives it
//! over an `embedded_io::Read` and reads each message as an `embedded_io::Read` itself, so the
//! delivery driver can stream it through `message` transforms into `fs::write_message`.
//! [`split_all`] and [`write_mboxrd`] are plain functions for fuzz targets and tests;
//! [`MboxrdQuote`] is the streaming quoter (the reverse of [`Quoting::Mboxrd`]).

use crate::message::{Postmark, FROM_LINE_MAX};
use core::fmt;

pub mod import;

/// How quoted `From ` lines in bodies are read back (see the module docs).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Quoting {
    /// Remove one `>` from every `>+From ` line (the default).
    #[default]
    Mboxrd,
    /// Remove the `>` from `>From ` lines only.
    Mboxo,
    /// Remove nothing.
    Raw,
}

/// Why an input is not a well-formed mbox.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum MboxError {
    /// The input does not begin with a `From ` line; `offset` is the first byte that differs.
    NotMbox {
        /// Byte offset in the input.
        offset: u64,
    },
    /// An envelope (`From `) line is longer than [`FROM_LINE_MAX`] bytes.
    FromLineTooLong {
        /// Byte offset of the start of that line.
        offset: u64,
    },
}

impl MboxError {
    /// The byte offset the error names.
    pub const fn offset(&self) -> u64 {
        match *self {
            MboxError::NotMbox { offset } | MboxError::FromLineTooLong { offset } => offset,
        }
    }
}

impl fmt::Display for MboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MboxError::NotMbox { offset } => write!(
                f,
                "not an mbox: expected a \"From \" line at the start, found other data at byte {offset}"
            ),
            MboxError::FromLineTooLong { offset } => write!(
                f,
                "malformed mbox: the \"From \" line at byte {offset} is longer than {FROM_LINE_MAX} bytes"
            ),
        }
    }
}

impl core::error::Error for MboxError {}

/// What the splitter found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message begins: its envelope line and the byte offset of that line.
    MessageStart {
        /// The `From ` line.
        envelope: Postmark<'a>,
        /// Offset of the `From ` line in the input.
        offset: u64,
    },
    /// The next bytes of the current message.
    Body(&'a [u8]),
    /// The current message is complete.
    MessageEnd {
        /// Offset just past the message's last byte in the input (before its separator).
        end: u64,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Blank {
    None,
    Lf,
    CrLf,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// Matching the first `From `.
    Begin(u8),
    /// Inside an envelope line.
    FromLine,
    /// At the start of a body line.
    Start,
    /// Held a `\r` at the start of a line.
    Cr,
    /// Matching `From ` at a line start, possibly after one held `>`.
    Prefix { quoted: bool, matched: u8 },
    /// Passing a line through up to its `\n`.
    Middle,
    /// End of input handled.
    Done,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Out {
    Blank(Blank),
    Quote,
    FromPrefix(u8),
    Cr,
    Start,
    End(u64),
}

const QUEUE: usize = 4;

/// The sans-io mbox splitter: bounded state (one envelope line), never allocates; only the
/// first few bytes of each line are held back to recognise `From ` and `>From `.
#[derive(Clone, Debug)]
pub struct Splitter {
    quoting: Quoting,
    state: State,
    pos: u64,
    line: [u8; FROM_LINE_MAX],
    line_len: usize,
    from_offset: u64,
    line_offset: u64,
    pending: Blank,
    blank_offset: u64,
    queue: [Out; QUEUE],
    qh: usize,
    qt: usize,
    failed: Option<MboxError>,
    messages: u64,
}

fn blank_bytes(b: Blank) -> &'static [u8] {
    match b {
        Blank::None => b"",
        Blank::Lf => b"\n",
        Blank::CrLf => b"\r\n",
    }
}

impl Splitter {
    /// A splitter at the start of an mbox.
    pub const fn new(quoting: Quoting) -> Self {
        Splitter {
            quoting,
            state: State::Begin(0),
            pos: 0,
            line: [0; FROM_LINE_MAX],
            line_len: 0,
            from_offset: 0,
            line_offset: 0,
            pending: Blank::None,
            blank_offset: 0,
            queue: [Out::Quote; QUEUE],
            qh: 0,
            qt: 0,
            failed: None,
            messages: 0,
        }
    }

    /// Bytes of input consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Messages started so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The byte offset of the `From ` line of the current (or last) message: where an
    /// interrupted import resumes to redo that message.
    pub fn message_offset(&self) -> u64 {
        self.from_offset
    }

    /// The envelope of the current (or last) message.
    pub fn envelope(&self) -> Postmark<'_> {
        Postmark::from_rest(&self.line[..self.line_len])
    }

    fn push_out(&mut self, o: Out) {
        debug_assert!(self.qt - self.qh < QUEUE);
        self.queue[self.qt % QUEUE] = o;
        self.qt += 1;
    }

    fn pop_out(&mut self) -> Option<Out> {
        (self.qh < self.qt).then(|| {
            let o = self.queue[self.qh % QUEUE];
            self.qh += 1;
            if self.qh == self.qt {
                self.qh = 0;
                self.qt = 0;
            }
            o
        })
    }

    fn flush_blank(&mut self) {
        if self.pending != Blank::None {
            self.push_out(Out::Blank(self.pending));
            self.pending = Blank::None;
        }
    }

    fn event(&self, o: Out) -> Event<'_> {
        match o {
            Out::Blank(b) => Event::Body(blank_bytes(b)),
            Out::Quote => Event::Body(b">"),
            Out::FromPrefix(n) => Event::Body(&b"From "[..n as usize]),
            Out::Cr => Event::Body(b"\r"),
            Out::Start => Event::MessageStart {
                envelope: self.envelope(),
                offset: self.from_offset,
            },
            Out::End(end) => Event::MessageEnd { end },
        }
    }

    /// Feeds input. Returns how many bytes of `input` were consumed and the next event, if
    /// any; with `None`, all of `input` was consumed and more is needed. Call again with the
    /// rest of the input until it is consumed and no event comes.
    pub fn feed<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), MboxError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut i = 0;
        loop {
            if let Some(o) = self.pop_out() {
                self.pos += i as u64;
                return Ok((i, Some(self.event(o))));
            }
            if i == input.len() {
                self.pos += i as u64;
                return Ok((i, None));
            }
            let at = self.pos + i as u64;
            let b = input[i];
            match self.state {
                State::Begin(n) => {
                    if b != b"From "[n as usize] {
                        let e = MboxError::NotMbox { offset: at };
                        self.failed = Some(e);
                        return Err(e);
                    }
                    i += 1;
                    if n == 4 {
                        self.start_from_line(0);
                    } else {
                        self.state = State::Begin(n + 1);
                    }
                }
                State::FromLine => {
                    let rest = &input[i..];
                    let (take, done) = match memchr::memchr(b'\n', rest) {
                        Some(p) => (p + 1, true),
                        None => (rest.len(), false),
                    };
                    if self.line_len + take > FROM_LINE_MAX - 5 {
                        let e = MboxError::FromLineTooLong {
                            offset: self.from_offset,
                        };
                        self.failed = Some(e);
                        return Err(e);
                    }
                    self.line[self.line_len..self.line_len + take].copy_from_slice(&rest[..take]);
                    self.line_len += take;
                    i += take;
                    if done {
                        self.messages += 1;
                        self.push_out(Out::Start);
                        self.state = State::Start;
                    }
                }
                State::Start => match b {
                    b'\n' => {
                        self.flush_blank();
                        self.pending = Blank::Lf;
                        self.blank_offset = at;
                        i += 1;
                    }
                    b'\r' => {
                        self.line_offset = at;
                        self.state = State::Cr;
                        i += 1;
                    }
                    b'F' => {
                        self.line_offset = at;
                        self.state = State::Prefix {
                            quoted: false,
                            matched: 1,
                        };
                        i += 1;
                    }
                    b'>' if self.quoting != Quoting::Raw => {
                        self.flush_blank();
                        self.state = State::Prefix {
                            quoted: true,
                            matched: 0,
                        };
                        i += 1;
                    }
                    _ => {
                        self.flush_blank();
                        self.state = State::Middle;
                    }
                },
                State::Cr => {
                    if b == b'\n' {
                        self.flush_blank();
                        self.pending = Blank::CrLf;
                        self.blank_offset = self.line_offset;
                        self.state = State::Start;
                        i += 1;
                    } else {
                        self.flush_blank();
                        self.push_out(Out::Cr);
                        self.state = State::Middle;
                    }
                }
                State::Prefix { quoted, matched } => {
                    if quoted && matched == 0 && b == b'>' {
                        self.push_out(Out::Quote);
                        if self.quoting == Quoting::Mboxrd {
                            // One `>` stays held; every further one passes.
                            i += 1;
                        } else {
                            // `>>`: mboxo leaves the line alone.
                            self.state = State::Middle;
                        }
                    } else if b == b"From "[matched as usize] {
                        i += 1;
                        if matched + 1 < 5 {
                            self.state = State::Prefix {
                                quoted,
                                matched: matched + 1,
                            };
                        } else if quoted {
                            // Unquote: the held `>` is dropped.
                            self.push_out(Out::FromPrefix(5));
                            self.state = State::Middle;
                        } else {
                            let end = if self.pending != Blank::None {
                                self.blank_offset
                            } else {
                                self.line_offset
                            };
                            self.pending = Blank::None;
                            self.push_out(Out::End(end));
                            self.start_from_line(self.line_offset);
                        }
                    } else {
                        if quoted {
                            self.push_out(Out::Quote);
                        } else {
                            self.flush_blank();
                        }
                        if matched > 0 {
                            self.push_out(Out::FromPrefix(matched));
                        }
                        self.state = State::Middle;
                    }
                }
                State::Middle => {
                    // Pass whole lines at once while the next line cannot need a look.
                    let start = i;
                    i = input.len();
                    for p in memchr::memchr_iter(b'\n', &input[start..]) {
                        let next = start + p + 1;
                        if next == input.len() || !self.plain_line_start(input[next]) {
                            self.state = State::Start;
                            i = next;
                            break;
                        }
                    }
                    self.pos += i as u64;
                    return Ok((i, Some(Event::Body(&input[start..i]))));
                }
                State::Done => {
                    // Input after `finish`: ignored (a driver bug, not a malformed mbox).
                    self.pos += input.len() as u64;
                    return Ok((input.len(), None));
                }
            }
        }
    }

    /// Whether a line starting with `b` is passed without a look (what `Start` would do).
    fn plain_line_start(&self, b: u8) -> bool {
        match b {
            b'F' | b'\r' | b'\n' => false,
            b'>' => self.quoting == Quoting::Raw,
            _ => true,
        }
    }

    fn start_from_line(&mut self, offset: u64) {
        self.from_offset = offset;
        self.line_len = 0;
        self.state = State::FromLine;
    }

    /// The input has ended. Returns the remaining events one per call, then `None`.
    pub fn finish(&mut self) -> Result<Option<Event<'_>>, MboxError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.qh == self.qt {
            match self.state {
                State::Begin(0) | State::Done => self.state = State::Done,
                State::Begin(_) => {
                    let e = MboxError::NotMbox { offset: self.pos };
                    self.failed = Some(e);
                    return Err(e);
                }
                State::FromLine => {
                    self.messages += 1;
                    self.push_out(Out::Start);
                    self.state = State::Start;
                }
                State::Start => {
                    let end = if self.pending != Blank::None {
                        self.blank_offset
                    } else {
                        self.pos
                    };
                    self.pending = Blank::None;
                    self.push_out(Out::End(end));
                    self.state = State::Done;
                }
                State::Cr => {
                    self.flush_blank();
                    self.push_out(Out::Cr);
                    self.state = State::Middle;
                }
                State::Prefix { quoted, matched } => {
                    if quoted {
                        self.push_out(Out::Quote);
                    } else {
                        self.flush_blank();
                    }
                    if matched > 0 {
                        self.push_out(Out::FromPrefix(matched));
                    }
                    self.state = State::Middle;
                }
                State::Middle => {
                    self.push_out(Out::End(self.pos));
                    self.state = State::Done;
                }
            }
        }
        Ok(self.pop_out().map(|o| self.event(o)))
    }
}

/// Splits a whole mbox held in memory, feeding the splitter `chunk` bytes at a time (for fuzz
/// targets and tests: the events must not depend on `chunk`).
pub fn split_all(
    input: &[u8],
    chunk: usize,
    quoting: Quoting,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<(), MboxError> {
    let mut s = Splitter::new(quoting);
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        loop {
            let (used, ev) = s.feed(rest)?;
            rest = &rest[used..];
            match ev {
                Some(e) => on_event(e),
                None => break,
            }
        }
    }
    while let Some(e) = s.finish()? {
        on_event(e);
    }
    Ok(())
}

/// Writes one message in mboxrd form to `sink`: `From <envelope>\n`, the body with one more
/// `>` on every line matching `>*From `, a `\n` if the body does not end with one (the one
/// thing mbox cannot represent for a message that is not last), and the separating empty line.
pub fn write_mboxrd(envelope: &[u8], body: &[u8], sink: &mut impl FnMut(&[u8])) {
    sink(b"From ");
    sink(envelope);
    sink(b"\n");
    for line in body.split_inclusive(|&b| b == b'\n') {
        let unquoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[unquoted..].starts_with(b"From ") {
            sink(b">");
        }
        sink(line);
    }
    if !body.is_empty() && !body.ends_with(b"\n") {
        sink(b"\n");
    }
    sink(b"\n");
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum QuoteState {
    /// At a line start: `gt` `>` seen (not yet written), `matched` bytes of `From `.
    Start { gt: u64, matched: u8 },
    /// Writing the held prefix: `extra` (the added `>`), then `gt` `>`, then `matched` bytes
    /// of `From ` (`done` of them written).
    Emit {
        extra: bool,
        gt: u64,
        matched: u8,
        done: u8,
    },
    /// Passing a line through up to its `\n`.
    Middle,
}

/// A streaming mboxrd body quoter (a `message::Transform`): one more `>` on every line that
/// matches `>*From `; any run of `>` is counted, not buffered. [`write_mboxrd`] in streaming
/// form, for exporters and for fuzzing the quote → split round trip under any chunking.
#[derive(Copy, Clone, Debug)]
pub struct MboxrdQuote {
    state: QuoteState,
}

impl Default for MboxrdQuote {
    fn default() -> Self {
        Self::new()
    }
}

impl MboxrdQuote {
    /// A quoter at the start of a body.
    pub const fn new() -> Self {
        MboxrdQuote {
            state: QuoteState::Start { gt: 0, matched: 0 },
        }
    }

    fn emit(&mut self, out: &mut [u8]) -> usize {
        const GT: [u8; 64] = [b'>'; 64];
        let mut o = 0;
        while let QuoteState::Emit {
            extra,
            gt,
            matched,
            done,
        } = self.state
        {
            if o == out.len() {
                break;
            }
            let room = out.len() - o;
            self.state = if extra {
                out[o] = b'>';
                o += 1;
                QuoteState::Emit {
                    extra: false,
                    gt,
                    matched,
                    done,
                }
            } else if gt > 0 {
                let n = (gt.min(64) as usize).min(room);
                out[o..o + n].copy_from_slice(&GT[..n]);
                o += n;
                QuoteState::Emit {
                    extra,
                    gt: gt - n as u64,
                    matched,
                    done,
                }
            } else if done < matched {
                let n = ((matched - done) as usize).min(room);
                out[o..o + n].copy_from_slice(&b"From "[done as usize..done as usize + n]);
                o += n;
                QuoteState::Emit {
                    extra,
                    gt,
                    matched,
                    done: done + n as u8,
                }
            } else {
                QuoteState::Middle
            };
        }
        o
    }
}

impl crate::message::Transform for MboxrdQuote {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut i = 0;
        let mut o = 0;
        loop {
            if let QuoteState::Emit { .. } = self.state {
                let n = self.emit(&mut out[o..]);
                o += n;
                if let QuoteState::Emit { .. } = self.state {
                    return (i, o);
                }
            }
            if i == input.len() || o == out.len() {
                return (i, o);
            }
            match self.state {
                QuoteState::Start { gt, matched } => {
                    let b = input[i];
                    if matched == 0 && b == b'>' {
                        self.state = QuoteState::Start {
                            gt: gt + 1,
                            matched,
                        };
                        i += 1;
                    } else if b == b"From "[matched as usize] {
                        i += 1;
                        self.state = if matched == 4 {
                            QuoteState::Emit {
                                extra: true,
                                gt,
                                matched: 5,
                                done: 0,
                            }
                        } else {
                            QuoteState::Start {
                                gt,
                                matched: matched + 1,
                            }
                        };
                    } else {
                        self.state = QuoteState::Emit {
                            extra: false,
                            gt,
                            matched,
                            done: 0,
                        };
                    }
                }
                QuoteState::Middle => {
                    let rest = &input[i..];
                    let room = out.len() - o;
                    let take = match rest.iter().take(room).position(|&c| c == b'\n') {
                        Some(p) => {
                            self.state = QuoteState::Start { gt: 0, matched: 0 };
                            p + 1
                        }
                        None => rest.len().min(room),
                    };
                    out[o..o + take].copy_from_slice(&rest[..take]);
                    i += take;
                    o += take;
                }
                QuoteState::Emit { .. } => {}
            }
        }
    }

    fn finish(&mut self, out: &mut [u8]) -> usize {
        if let QuoteState::Start { gt, matched } = self.state {
            self.state = QuoteState::Emit {
                extra: false,
                gt,
                matched,
                done: 0,
            };
        }
        self.push(&[], out).1
    }
}

/// A read failure of [`MboxReader`]: the source's, or a malformed mbox.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The underlying source failed.
    Source(E),
    /// The input is not a well-formed mbox.
    Mbox(MboxError),
}

impl<E: fmt::Display> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Source(e) => write!(f, "reading the mbox: {e}"),
            ReadError::Mbox(e) => e.fmt(f),
        }
    }
}

impl<E: core::error::Error> core::error::Error for ReadError<E> {}

impl<E: embedded_io::Error> embedded_io::Error for ReadError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            ReadError::Source(e) => e.kind(),
            ReadError::Mbox(_) => embedded_io::ErrorKind::InvalidData,
        }
    }
}

impl<E> From<MboxError> for ReadError<E> {
    fn from(e: MboxError) -> Self {
        ReadError::Mbox(e)
    }
}

enum Pumped {
    Body(usize),
    Start,
    End,
    NeedInput,
    Finished,
}

/// Drives a [`Splitter`] over an `embedded_io::Read`, through a caller-provided buffer.
/// [`MboxReader::next_message`] moves to the next message; the reader itself then reads that
/// message's bytes (`Ok(0)` at its end), so it can be handed to `fs::write_message` directly or
/// through `message::Transformed` layers.
pub struct MboxReader<'b, R> {
    source: R,
    buf: &'b mut [u8],
    start: usize,
    end: usize,
    eof: bool,
    split: Splitter,
    in_message: bool,
    spill: [u8; 8],
    spill_start: usize,
    spill_end: usize,
}

impl<'b, R: embedded_io::Read> MboxReader<'b, R> {
    /// Reads an mbox from `source`, `buf.len()` bytes at a time (a few KiB to 64 KiB).
    pub fn new(source: R, buf: &'b mut [u8], quoting: Quoting) -> Self {
        assert!(!buf.is_empty(), "MboxReader needs a non-empty buffer");
        MboxReader {
            source,
            buf,
            start: 0,
            end: 0,
            eof: false,
            split: Splitter::new(quoting),
            in_message: false,
            spill: [0; 8],
            spill_start: 0,
            spill_end: 0,
        }
    }

    /// Bytes of the mbox consumed so far (for progress and error reports).
    pub fn position(&self) -> u64 {
        self.split.position()
    }

    /// Messages started so far.
    pub fn messages(&self) -> u64 {
        self.split.messages()
    }

    /// The splitter (offsets, counts).
    pub fn splitter(&self) -> &Splitter {
        &self.split
    }

    fn pump(&mut self, out: &mut [u8]) -> Result<Pumped, ReadError<R::Error>> {
        let discard = out.is_empty();
        let ev = if self.start < self.end {
            let lim = if discard {
                self.end
            } else {
                self.end.min(self.start + out.len())
            };
            let (used, ev) = self.split.feed(&self.buf[self.start..lim])?;
            self.start += used;
            ev
        } else if self.eof {
            match self.split.finish()? {
                None => return Ok(Pumped::Finished),
                ev => ev,
            }
        } else {
            let n = self.source.read(self.buf).map_err(ReadError::Source)?;
            self.start = 0;
            self.end = n;
            self.eof = n == 0;
            return Ok(Pumped::NeedInput);
        };
        Ok(match ev {
            None => Pumped::NeedInput,
            Some(Event::MessageStart { .. }) => Pumped::Start,
            Some(Event::MessageEnd { .. }) => Pumped::End,
            Some(Event::Body(b)) => {
                if discard {
                    Pumped::Body(0)
                } else {
                    let n = b.len().min(out.len());
                    out[..n].copy_from_slice(&b[..n]);
                    // Only the splitter's own short slices can exceed `out` (input is limited).
                    let extra = &b[n..];
                    self.spill[..extra.len()].copy_from_slice(extra);
                    self.spill_start = 0;
                    self.spill_end = extra.len();
                    Pumped::Body(n)
                }
            }
        })
    }

    /// Skips what is left of the current message and moves to the next one. Returns its
    /// envelope, or `None` at the end of the mbox.
    pub fn next_message(&mut self) -> Result<Option<Postmark<'_>>, ReadError<R::Error>> {
        self.spill_start = self.spill_end;
        loop {
            match self.pump(&mut [])? {
                Pumped::Start => {
                    self.in_message = true;
                    break;
                }
                Pumped::End => self.in_message = false,
                Pumped::Finished => return Ok(None),
                Pumped::Body(_) | Pumped::NeedInput => {}
            }
        }
        Ok(Some(self.split.envelope()))
    }
}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for MboxReader<'_, R> {
    type Error = ReadError<R::Error>;
}

impl<R: embedded_io::Read> embedded_io::Read for MboxReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.spill_start < self.spill_end {
            let n = (self.spill_end - self.spill_start).min(out.len());
            out[..n].copy_from_slice(&self.spill[self.spill_start..self.spill_start + n]);
            self.spill_start += n;
            return Ok(n);
        }
        let mut n = 0;
        while self.in_message && n < out.len() {
            match self.pump(&mut out[n..])? {
                Pumped::Body(k) => {
                    n += k;
                    if self.spill_start < self.spill_end {
                        break;
                    }
                }
                Pumped::End | Pumped::Finished => self.in_message = false,
                Pumped::Start => unreachable!("a message starts only after the previous ended"),
                // Return what is here rather than wait for the source.
                Pumped::NeedInput if n > 0 && self.start == self.end => break,
                Pumped::NeedInput => {}
            }
        }
        Ok(n)
    }
}

/// An in-memory source that returns at most `max` bytes per read (at least one while data
/// remains), for tests and fuzzing that check [`MboxReader`] gives the same result whatever the
/// chunking of its input.
pub struct Trickle<'a> {
    data: &'a [u8],
    max: usize,
}

impl<'a> Trickle<'a> {
    /// Reads `data` at most `max` bytes at a time; `max` is raised to 1 so a read never
    /// reports a false end of input.
    pub fn new(data: &'a [u8], max: usize) -> Self {
        Trickle {
            data,
            max: max.max(1),
        }
    }
}

impl embedded_io::ErrorType for Trickle<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.data.len().min(buf.len()).min(self.max);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[derive(Debug, PartialEq, Eq)]
    struct Msg {
        envelope: Vec<u8>,
        offset: u64,
        body: Vec<u8>,
        end: u64,
    }

    fn split(input: &[u8], chunk: usize, q: Quoting) -> Result<Vec<Msg>, MboxError> {
        let mut msgs: Vec<Msg> = Vec::new();
        let mut open = false;
        split_all(input, chunk, q, |e| match e {
            Event::MessageStart { envelope, offset } => {
                assert!(!open);
                open = true;
                msgs.push(Msg {
                    envelope: envelope.raw().to_vec(),
                    offset,
                    body: Vec::new(),
                    end: 0,
                });
            }
            Event::Body(b) => {
                assert!(open);
                msgs.last_mut().unwrap().body.extend_from_slice(b)
            }
            Event::MessageEnd { end } => {
                assert!(open);
                open = false;
                msgs.last_mut().unwrap().end = end;
            }
        })?;
        assert!(!open);
        Ok(msgs)
    }

    /// Splits with every chunking (1, 2, 3, 7 bytes, 64 KiB) and through the reader with
    /// several buffer and read sizes; all must agree.
    fn split_every_way(input: &[u8], q: Quoting) -> Result<Vec<Msg>, MboxError> {
        let reference = split(input, 65536, q);
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(split(input, chunk, q), reference, "chunk {chunk}");
        }
        for (bufsize, readsize) in [(1, 1), (7, 3), (7, 64), (65536, 2), (65536, 65536)] {
            let got = read_all(input, bufsize, readsize, q);
            match &reference {
                Ok(msgs) => {
                    let want: Vec<(Vec<u8>, Vec<u8>)> = msgs
                        .iter()
                        .map(|m| (m.envelope.clone(), m.body.clone()))
                        .collect();
                    assert_eq!(got, Ok(want), "reader buf {bufsize} read {readsize}");
                }
                Err(e) => assert_eq!(got, Err(*e)),
            }
        }
        reference
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn read_all(
        input: &[u8],
        bufsize: usize,
        readsize: usize,
        q: Quoting,
    ) -> Result<Pairs, MboxError> {
        use embedded_io::Read;
        let mut buf = std::vec![0u8; bufsize];
        let src = Trickle::new(input, 5);
        let mut r = MboxReader::new(src, &mut buf, q);
        let mut out = Vec::new();
        loop {
            let env = match r.next_message() {
                Ok(Some(e)) => e.raw().to_vec(),
                Ok(None) => break,
                Err(ReadError::Mbox(e)) => return Err(e),
                Err(ReadError::Source(e)) => match e {},
            };
            let mut body = Vec::new();
            let mut chunk = std::vec![0u8; readsize];
            loop {
                let n = r.read(&mut chunk).map_err(|e| match e {
                    ReadError::Mbox(e) => e,
                    ReadError::Source(e) => match e {},
                })?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            out.push((env, body));
        }
        Ok(out)
    }

    fn bodies(input: &[u8], q: Quoting) -> Vec<Vec<u8>> {
        split_every_way(input, q)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect()
    }

    /// An mbox written by CPython 3.11's `mailbox.mbox` (mboxo: it quotes `From ` only, appends
    /// a newline to a message without one, and writes an empty line after each message).
    const PYTHON_MBOX: &[u8] = b"From MAILER-DAEMON Sat Nov 28 18:22:46 2026\nFrom: a@example.org\nSubject: tricky\nStatus: RO\nX-Status: AF\n\n>From here\n>From there\n>>From x\nline\n\nFrom MAILER-DAEMON Sat Nov 28 18:22:46 2026\nFrom: b@example.org\nSubject: no newline\n\nlast line without newline\n\nFrom MAILER-DAEMON Sat Nov 28 18:22:46 2026\nFrom: c@example.org\r\nSubject: crlf\r\n\r\nbody\r\n>From crlf\r\n\nFrom MAILER-DAEMON Sat Nov 28 18:22:46 2026\nFrom: d@example.org\nSubject: 8bit\n\n\xe9t\xe9 \xff\n\nFrom MAILER-DAEMON Sat Nov 28 18:22:46 2026\nFrom: e@example.org\nSubject: empty body\n\n\nFrom MAILER-DAEMON Sat Nov 28 18:22:46 2026\nFrom: f@example.org\nSubject: only headers\n\nFrom MAILER-DAEMON Sat Nov 28 18:22:46 2026\n\n\n";

    #[test]
    fn python_mailbox_framing() {
        // What Python's own reader (`mbox.get_bytes`) returns for each message: Raw must agree.
        let python: [&[u8]; 7] = [
            b"From: a@example.org\nSubject: tricky\nStatus: RO\nX-Status: AF\n\n>From here\n>From there\n>>From x\nline\n",
            b"From: b@example.org\nSubject: no newline\n\nlast line without newline\n",
            b"From: c@example.org\r\nSubject: crlf\r\n\r\nbody\r\n>From crlf\r\n",
            b"From: d@example.org\nSubject: 8bit\n\n\xe9t\xe9 \xff\n",
            b"From: e@example.org\nSubject: empty body\n\n",
            b"From: f@example.org\nSubject: only headers\n",
            b"\n",
        ];
        assert_eq!(bodies(PYTHON_MBOX, Quoting::Raw), python);
        let m = split_every_way(PYTHON_MBOX, Quoting::Mboxrd).unwrap();
        assert!(m
            .iter()
            .all(|m| m.envelope == b"MAILER-DAEMON Sat Nov 28 18:22:46 2026"));
        // The originals were `From here`, `>From there`, `>>From x`: mboxo cannot keep all
        // three; mboxrd restores the first, mboxo the first and the third.
        assert_eq!(
            m[0].body,
            b"From: a@example.org\nSubject: tricky\nStatus: RO\nX-Status: AF\n\nFrom here\nFrom there\n>From x\nline\n"
        );
        assert_eq!(
            bodies(PYTHON_MBOX, Quoting::Mboxo)[0],
            b"From: a@example.org\nSubject: tricky\nStatus: RO\nX-Status: AF\n\nFrom here\nFrom there\n>>From x\nline\n"
        );
        assert_eq!(
            m[2].body,
            b"From: c@example.org\r\nSubject: crlf\r\n\r\nbody\r\nFrom crlf\r\n"
        );
    }

    #[test]
    fn generated_mboxes_round_trip_and_are_chunking_independent() {
        let tokens: &[&[u8]] = &[
            b"From ", b">", b">>", b"From", b"\n", b"\r\n", b"\r", b"x", b" ", b"\xe9", b"\n\n",
        ];
        for seed in 0..300 {
            // Any bytes: every way of splitting agrees (or fails the same way).
            let raw = crate::message::tests::generated(seed, tokens, 80);
            for q in [Quoting::Mboxrd, Quoting::Mboxo, Quoting::Raw] {
                let _ = split_every_way(&raw, q);
                let mut with_from = b"From x\n".to_vec();
                with_from.extend_from_slice(&raw);
                let m = split_every_way(&with_from, q).unwrap();
                assert!(!m.is_empty());
            }
            // Bodies ending in a newline survive mboxrd encoding and decoding exactly.
            let mut bodies_in: Vec<Vec<u8>> = Vec::new();
            let mut mbox = Vec::new();
            for k in 0..3 {
                let mut b = crate::message::tests::generated(seed * 3 + k, tokens, 40);
                if !b.is_empty() && !b.ends_with(b"\n") {
                    b.push(b'\n');
                }
                write_mboxrd(b"s d", &b, &mut |x: &[u8]| mbox.extend_from_slice(x));
                bodies_in.push(b);
            }
            assert_eq!(bodies(&mbox, Quoting::Mboxrd), bodies_in, "seed {seed}");
        }
    }

    fn quote_stream(body: &[u8], chunk: usize, out: usize) -> Vec<u8> {
        let mut q = MboxrdQuote::new();
        let mut buf = std::vec![0u8; out];
        let mut v = Vec::new();
        crate::message::run_chunked(&mut q, body, chunk, &mut buf, |b| v.extend_from_slice(b));
        v
    }

    #[test]
    fn streaming_quoter() {
        let body = b"From a\n>From b\n>>>From c\n>Fro\n>\nFrom\nx From \n>>>>";
        let want = b">From a\n>>From b\n>>>>From c\n>Fro\n>\nFrom\nx From \n>>>>";
        let mut gt = std::vec![b'>'; 200];
        gt.extend_from_slice(b"From z\n");
        let mut gt_want = std::vec![b'>'];
        gt_want.extend_from_slice(&gt);
        for chunk in [1, 2, 7, 4096] {
            for out in [1, 2, 3, 64] {
                assert_eq!(
                    quote_stream(body, chunk, out),
                    want,
                    "chunk {chunk} out {out}"
                );
                assert_eq!(quote_stream(&gt, chunk, out), gt_want);
            }
        }
        let tokens: &[&[u8]] = &[
            b"From ", b">", b">>", b"From", b"\n", b"\r\n", b"x", b"\n\n",
        ];
        for seed in 0..300 {
            let b = crate::message::tests::generated(seed, tokens, 60);
            let mut slice = Vec::new();
            write_mboxrd(b"e", &b, &mut |x: &[u8]| slice.extend_from_slice(x));
            let streamed = quote_stream(&b, 3, 5);
            // write_mboxrd = From line + quoted body + (newline) + separator.
            assert_eq!(&slice[7..7 + streamed.len()], &streamed[..], "seed {seed}");
            let mut mbox = b"From e\n".to_vec();
            mbox.extend_from_slice(&streamed);
            if b.ends_with(b"\n") {
                // The separator: a final empty line at EOF is not the message's.
                mbox.push(b'\n');
            }
            assert_eq!(bodies(&mbox, Quoting::Mboxrd), [b], "seed {seed}");
        }
    }

    #[test]
    fn reader_skips_and_reports_errors_after_good_messages() {
        use embedded_io::Read;
        let mut mbox = b"From a\nA: 1\n\nFrom b\nB: 2\n\nFrom ".to_vec();
        mbox.extend(std::iter::repeat_n(b'x', 3000));
        mbox.extend_from_slice(b"\nC: 3\n");
        let mut buf = [0u8; 16];
        let mut r = MboxReader::new(&mbox[..], &mut buf, Quoting::Mboxrd);
        // Skip the first message unread, read two bytes of the second, then move on.
        assert_eq!(r.next_message().unwrap().unwrap().raw(), b"a");
        assert_eq!(r.next_message().unwrap().unwrap().raw(), b"b");
        let mut two = [0u8; 2];
        assert_eq!(r.read(&mut two).unwrap(), 2);
        assert_eq!(&two, b"B:");
        assert_eq!(r.messages(), 2);
        let e = r.next_message().unwrap_err();
        assert_eq!(
            e,
            ReadError::Mbox(MboxError::FromLineTooLong { offset: 26 })
        );
        assert_eq!(&mbox[26..31], b"From ");
        assert_eq!(
            embedded_io::Error::kind(&e),
            embedded_io::ErrorKind::InvalidData
        );
        // The error sticks.
        assert!(r.next_message().is_err());
        // Not an mbox at all.
        let mut buf = [0u8; 16];
        let mut r = MboxReader::new(&b"Subject: hi\n\nbody"[..], &mut buf, Quoting::Mboxrd);
        assert_eq!(
            r.next_message().unwrap_err(),
            ReadError::Mbox(MboxError::NotMbox { offset: 0 })
        );
        // Empty input: no messages, and reading gives nothing.
        let mut buf = [0u8; 16];
        let mut r = MboxReader::new(&b""[..], &mut buf, Quoting::Mboxrd);
        assert_eq!(r.next_message().unwrap(), None);
        assert_eq!(r.read(&mut two).unwrap(), 0);
    }

    #[test]
    fn framing_and_offsets() {
        let mbox = b"From a@b Sat Nov 28 18:03:09 2026\nX: 1\n\nbody\n\nFrom c@d Sat Nov 28 18:03:10 2026\nY: 2\n\nlast\n";
        let m = split_every_way(mbox, Quoting::Mboxrd).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].envelope, b"a@b Sat Nov 28 18:03:09 2026");
        assert_eq!(m[0].body, b"X: 1\n\nbody\n");
        assert_eq!((m[0].offset, m[0].end), (0, 45));
        assert_eq!(&mbox[45..47], b"\nF");
        assert_eq!(m[1].offset, 46);
        assert_eq!(m[1].body, b"Y: 2\n\nlast\n");
        assert_eq!(m[1].end, mbox.len() as u64);
    }

    #[test]
    fn tricky_bodies() {
        let q = Quoting::Mboxrd;
        // No separator line: nothing is lost.
        assert_eq!(bodies(b"From a\nx\nFrom b\ny\n", q), [&b"x\n"[..], b"y\n"]);
        // Trailing empty line at EOF is the separator; a second one is the message's.
        assert_eq!(bodies(b"From a\nx\n\n", q), [b"x\n"]);
        assert_eq!(bodies(b"From a\nx\n\n\n", q), [b"x\n\n"]);
        // No trailing newline at all.
        assert_eq!(
            bodies(b"From a\nx\n\nFrom b\nno newline", q),
            [&b"x\n"[..], b"no newline"]
        );
        // Empty bodies, a message of only headers, only From lines.
        assert_eq!(
            bodies(b"From a\n\nFrom b\nS: x\n\nFrom c\n", q),
            [&b""[..], b"S: x\n", b""]
        );
        assert_eq!(bodies(b"From a\nFrom b\nFrom c", q), [b"", b"", b""]);
        // CRLF mbox and CRLF messages in an LF mbox (Python writes those).
        assert_eq!(
            bodies(b"From a\r\nS: x\r\n\r\nb\r\n\r\nFrom b\r\nT: y\r\n\r\n", q),
            [&b"S: x\r\n\r\nb\r\n"[..], b"T: y\r\n"]
        );
        assert_eq!(
            bodies(b"From a\nS: x\r\n\r\nb\r\n\nFrom b\n", q),
            [&b"S: x\r\n\r\nb\r\n"[..], b""]
        );
        // A lone CR, CR inside lines, 8-bit bytes, NUL.
        assert_eq!(
            bodies(b"From a\n\r\n\rx\n\xff\xfe\0From \n\r", q),
            [&b"\r\n\rx\n\xff\xfe\0From \n\r"[..]]
        );
        // Near misses of From at line start stay.
        assert_eq!(
            bodies(b"From a\nFrom\nFro\nFrom:\nfrom x\n F\n", q),
            [b"From\nFro\nFrom:\nfrom x\n F\n"]
        );
        assert_eq!(bodies(b"From a\n\nFro", q), [b"\nFro"]);
    }

    #[test]
    fn quoting_modes() {
        let mbox = b"From a\n>From x\n>>From y\n>>>From z\n>Frob\n>\n>>\nab>From \n>From";
        assert_eq!(
            bodies(mbox, Quoting::Mboxrd),
            [&b"From x\n>From y\n>>From z\n>Frob\n>\n>>\nab>From \n>From"[..]]
        );
        assert_eq!(
            bodies(mbox, Quoting::Mboxo),
            [&b"From x\n>>From y\n>>>From z\n>Frob\n>\n>>\nab>From \n>From"[..]]
        );
        assert_eq!(bodies(mbox, Quoting::Raw), [&mbox[7..]]);
        // Quoted lines never end a message, and the empty line before one is kept.
        assert_eq!(
            bodies(b"From a\nx\n\n>From y\n", Quoting::Mboxrd),
            [b"x\n\nFrom y\n"]
        );
        assert_eq!(
            bodies(b"From a\nx\n\n>From ", Quoting::Mboxrd),
            [b"x\n\nFrom "]
        );
    }

    #[test]
    fn errors_name_offsets() {
        assert_eq!(split_every_way(b"", Quoting::Mboxrd), Ok(Vec::new()));
        for bad in [
            &b"Subject: x\n\nbody\n"[..],
            b"\nFrom a\n",
            b"Fro",
            b"From\n",
        ] {
            let e = split_every_way(bad, Quoting::Mboxrd).unwrap_err();
            assert!(matches!(e, MboxError::NotMbox { .. }), "{e:?}");
        }
        assert_eq!(
            split(b"Frm", 1, Quoting::Mboxrd),
            Err(MboxError::NotMbox { offset: 2 })
        );
        assert_eq!(
            split(b"From", 1, Quoting::Mboxrd),
            Err(MboxError::NotMbox { offset: 4 })
        );
        let mut long = b"From a\nx\n\n".to_vec();
        long.extend_from_slice(b"From ");
        long.extend(std::iter::repeat_n(b'x', 2000));
        long.extend_from_slice(b"\nbody\n");
        assert_eq!(
            split_every_way(&long, Quoting::Mboxrd).unwrap_err(),
            MboxError::FromLineTooLong { offset: 10 }
        );
        // Just fitting.
        let mut fits = b"From ".to_vec();
        fits.extend(std::iter::repeat_n(b'x', FROM_LINE_MAX - 6));
        fits.extend_from_slice(b"\nb");
        assert_eq!(bodies(&fits, Quoting::Mboxrd), [b"b"]);
        assert_eq!(
            std::format!("{}", MboxError::FromLineTooLong { offset: 10 }),
            "malformed mbox: the \"From \" line at byte 10 is longer than 1024 bytes"
        );
        // A body line of 1 MiB passes without being buffered.
        let mut big = b"From a\n".to_vec();
        big.extend(std::iter::repeat_n(b'y', 1 << 20));
        let m = split(&big, 4096, Quoting::Mboxrd).unwrap();
        assert_eq!(m[0].body.len(), 1 << 20);
    }

    #[test]
    fn mboxrd_round_trip() {
        let msgs: &[(&[u8], &[u8])] = &[
            (
                b"a@b Sat Nov 28 18:03:09 2026",
                b"S: x\n\nFrom here\n>From there\n>>From x\n\n",
            ),
            (b"MAILER-DAEMON Sat Nov 28 18:03:09 2026", b""),
            (
                b"c Sat Nov 28 18:03:09 2026",
                b"T: y\r\n\r\nFrom crlf\r\n\r\n",
            ),
            (b"d", b"\n\n\n"),
            (b"e", b"8-bit \xe9\xff\n>From\n>>\nFrom \n"),
        ];
        let mut mbox = Vec::new();
        for (env, body) in msgs {
            write_mboxrd(env, body, &mut |b: &[u8]| mbox.extend_from_slice(b));
        }
        let got = split_every_way(&mbox, Quoting::Mboxrd).unwrap();
        assert_eq!(got.len(), msgs.len());
        for (g, (env, body)) in got.iter().zip(msgs) {
            assert_eq!((&g.envelope[..], &g.body[..]), (*env, *body));
        }
        // A final message without newline survives when nothing follows it.
        let mut last = Vec::new();
        write_mboxrd(b"x", b"no newline", &mut |b: &[u8]| {
            last.extend_from_slice(b)
        });
        assert_eq!(last, b"From x\nno newline\n\n");
        assert_eq!(
            bodies(b"From x\nno newline", Quoting::Mboxrd),
            [b"no newline"]
        );
    }
}
