//! What a driver reads of a message for Sieve, in one pass over its chunks in bounded memory:
//! the header block (into the caller's buffer, up to its size), the body when the script
//! tests it (into a second buffer, up to its size: [`MessageReader::with_body`]) and the size in octets as
//! delivered (the size the maildir file gets, its `S=` and the quota's). RFC 5228 5.9 speaks of
//! the RFC 2822 representation (CRLF line ends, so a bare LF would count two); Pigeonhole
//! compares the octets as delivered too, and the differential test holds us to it.

/// Collects the header block and counts the size, fed chunk by chunk.
#[derive(Debug)]
pub struct MessageReader<'b> {
    header: &'b mut [u8],
    len: usize,
    body: &'b mut [u8],
    body_len: usize,
    body_truncated: bool,
    header_done: bool,
    truncated: bool,
    size: u64,
    line_len: usize,
}

impl<'b> MessageReader<'b> {
    /// A reader that keeps the header block in `header`.
    pub fn new(header: &'b mut [u8]) -> Self {
        Self::with_body(header, &mut [])
    }

    /// A reader that also keeps the body (what follows the header block) in `body`, for
    /// the `body` test; a longer body is kept cut at `body`'s size ([`Self::body_truncated`]).
    pub fn with_body(header: &'b mut [u8], body: &'b mut [u8]) -> Self {
        MessageReader {
            header,
            len: 0,
            body,
            body_len: 0,
            body_truncated: false,
            header_done: false,
            truncated: false,
            size: 0,
            line_len: 0,
        }
    }

    /// Feeds the next chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        let mut at = 0;
        for &c in chunk {
            if self.header_done {
                break;
            }
            at += 1;
            if self.len < self.header.len() {
                self.header[self.len] = c;
                self.len += 1;
            } else {
                self.truncated = true;
            }
            if c == b'\n' {
                // A line holding nothing (or only CR) ends the header block.
                if self.line_len == 0 {
                    self.header_done = true;
                }
                self.line_len = 0;
            } else if c != b'\r' {
                self.line_len += 1;
            }
        }
        if self.header_done {
            let rest = &chunk[at..];
            let room = self.body.len() - self.body_len;
            let n = rest.len().min(room);
            self.body[self.body_len..self.body_len + n].copy_from_slice(&rest[..n]);
            self.body_len += n;
            self.body_truncated |= n < rest.len();
        }
    }

    /// The body kept so far (empty for a reader made with [`Self::new`]).
    pub fn body(&self) -> &[u8] {
        &self.body[..self.body_len]
    }

    /// Whether the body was longer than its buffer (the `body` test sees its start only).
    /// Always false for a reader made with [`Self::new`], which keeps no body.
    pub fn body_truncated(&self) -> bool {
        self.body_truncated && !self.body.is_empty()
    }

    /// The header block read so far.
    pub fn header(&self) -> &[u8] {
        &self.header[..self.len]
    }

    /// Whether the header block was longer than the buffer (fields past it are not seen).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The size in octets as delivered.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_and_size_are_the_same_for_every_chunking() {
        let msg = b"A: 1\nB: 2\r\n\nbody\nmore\n";
        for cut in 0..msg.len() {
            let mut buf = [0u8; 64];
            let mut r = MessageReader::new(&mut buf);
            r.push(&msg[..cut]);
            r.push(&msg[cut..]);
            assert_eq!(r.header(), b"A: 1\nB: 2\r\n\n");
            assert_eq!(r.size(), msg.len() as u64);
            assert!(!r.truncated());
            let (mut h, mut b) = ([0u8; 64], [0u8; 64]);
            let mut r = MessageReader::with_body(&mut h, &mut b);
            r.push(&msg[..cut]);
            r.push(&msg[cut..]);
            assert_eq!(r.header(), b"A: 1\nB: 2\r\n\n");
            assert_eq!(r.body(), b"body\nmore\n");
            assert!(!r.body_truncated());
        }
        let (mut h, mut b) = ([0u8; 64], [0u8; 3]);
        let mut r = MessageReader::with_body(&mut h, &mut b);
        r.push(msg);
        assert_eq!(r.body(), b"bod");
        assert!(r.body_truncated());
        let mut buf = [0u8; 4];
        let mut r = MessageReader::new(&mut buf);
        r.push(msg);
        assert_eq!(r.header(), b"A: 1");
        assert!(r.truncated());
    }
}
