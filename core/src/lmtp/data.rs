//! The DATA stream, decoded byte by byte into the message as a Maildir stores it.
//!
//! Decisions (RFC 5321 section 4.5.2 and 4.1.1.4):
//! - A line that starts with a dot loses that dot (dot-unstuffing); a line that is only a dot
//!   ends the message.
//! - CRLF becomes LF: the wire's line ending belongs to the transport, and every Maildir reader
//!   expects LF. A bare LF is taken as a line ending too (so `.` LF also ends the message); a
//!   CR not followed by LF is part of the line and kept.
//! - Past the size limit nothing more is produced, but the input is still consumed up to the
//!   end marker, so the session stays in step and can answer `552 5.3.4` per recipient.
//!
//! The decoder holds four bytes of state, whatever the message's size or line lengths: the
//! driver streams it to disk through a fixed buffer.

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    Inside,
    /// After a CR inside a line.
    Cr,
    /// After a dot at the start of a line.
    Dot,
    /// After a dot and a CR at the start of a line.
    DotCr,
    /// The end marker was seen.
    Done,
}

/// Decodes one message's DATA stream; see the module docs.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    max: Option<u64>,
}

/// What one [`Decoder::decode`] call did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes used (the end marker included; nothing after it).
    pub consumed: usize,
    /// Bytes written to the output.
    pub produced: usize,
    /// The end marker was reached: the message is complete.
    pub end: bool,
}

impl Decoder {
    /// A decoder that produces at most `max` bytes (`None`: no limit).
    pub fn new(max: Option<u64>) -> Decoder {
        Decoder {
            state: State::LineStart,
            size: 0,
            max,
        }
    }

    /// The decoded message's size so far (counting what went past the limit).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The message is larger than the limit: what was produced is incomplete.
    pub fn too_big(&self) -> bool {
        self.max.is_some_and(|m| self.size > m)
    }

    /// The end marker was reached.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` into `out` until the input is used up, the message ends, or `out`
    /// has less than two bytes of room (give it at least two).
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Decoded {
        let mut i = 0;
        let mut o = 0;
        while i < input.len() && self.state != State::Done && out.len() - o >= 2 {
            let b = input[i];
            i += 1;
            let mut emit = |bytes: &[u8]| {
                for &x in bytes {
                    self.size += 1;
                    if self.max.is_none_or(|m| self.size <= m) {
                        out[o] = x;
                        o += 1;
                    }
                }
            };
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::Dot, b'\r') => State::DotCr,
                (State::Dot | State::DotCr, b'\n') => State::Done,
                (State::DotCr, _) => {
                    // A lone CR after the dot: part of the line (as after any other byte).
                    emit(b"\r");
                    Self::inside(b, &mut emit)
                }
                (State::Cr, b'\n') => {
                    emit(b"\n");
                    State::LineStart
                }
                (State::Cr, _) => {
                    emit(b"\r");
                    Self::inside(b, &mut emit)
                }
                (State::LineStart | State::Inside | State::Dot, _) => Self::inside(b, &mut emit),
                (State::Done, _) => State::Done,
            };
        }
        Decoded {
            consumed: i,
            produced: o,
            end: self.state == State::Done,
        }
    }

    /// The state after byte `b` inside a line (or at its start, once a dot was dealt with).
    fn inside(b: u8, emit: &mut impl FnMut(&[u8])) -> State {
        match b {
            b'\r' => State::Cr,
            b'\n' => {
                emit(b"\n");
                State::LineStart
            }
            _ => {
                emit(&[b]);
                State::Inside
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Decodes `input` fed in pieces of `chunk` bytes into an output of `room` bytes at a time.
    fn run(input: &[u8], chunk: usize, room: usize, max: Option<u64>) -> (Vec<u8>, usize, bool) {
        let mut d = Decoder::new(max);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut buf = std::vec![0u8; room];
        while pos < input.len() && !d.is_done() {
            let end = (pos + chunk).min(input.len());
            let r = d.decode(&input[pos..end], &mut buf);
            out.extend_from_slice(&buf[..r.produced]);
            pos += r.consumed;
        }
        (out, pos, d.is_done())
    }

    #[test]
    fn crlf_becomes_lf_and_dots_are_unstuffed() {
        let wire = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nafter";
        let (out, used, done) = run(wire, 1000, 64, None);
        assert_eq!(out, b"Subject: x\n\n.leading dot\n");
        assert!(done);
        assert_eq!(&wire[used..], b"after");
    }

    #[test]
    fn bare_lf_and_lone_cr() {
        let (out, _, done) = run(b"a\nb\rc\r\r\n.x\n.\rz\n.\n", 1000, 64, None);
        assert_eq!(out, b"a\nb\rc\r\nx\n\rz\n");
        assert!(done);
    }

    #[test]
    fn an_empty_message_and_a_message_without_end() {
        assert_eq!(run(b".\r\n", 10, 8, None), (Vec::new(), 3, true));
        let (out, _, done) = run(b"abc\r\n.", 10, 8, None);
        assert_eq!((out.as_slice(), done), (&b"abc\n"[..], false));
    }

    #[test]
    fn any_split_of_input_and_output_gives_the_same_bytes() {
        let wire = b"From: a\r\n..\r\n...\r\n.a\r\nx\ry\r\n\r\n.\r\n";
        let whole = run(wire, wire.len(), 256, None);
        for chunk in 1..wire.len() {
            for room in 2..8 {
                assert_eq!(
                    run(wire, chunk, room, None),
                    whole,
                    "chunk {chunk} room {room}"
                );
            }
        }
        assert_eq!(whole.0, b"From: a\n.\n..\na\nx\ry\n\n");
    }

    #[test]
    fn past_the_limit_nothing_is_produced_but_the_end_is_found() {
        let mut d = Decoder::new(Some(4));
        let mut out = [0u8; 64];
        let r = d.decode(b"abcdefgh\r\n.\r\nrest", &mut out);
        assert_eq!(&out[..r.produced], b"abcd");
        assert!(r.end && d.too_big());
        assert_eq!(d.size(), 9);
        assert_eq!(r.consumed, 13);
        let mut exact = Decoder::new(Some(4));
        let r = exact.decode(b"abc\r\n.\r\n", &mut out);
        assert_eq!((r.produced, exact.too_big()), (4, false));
    }
}
