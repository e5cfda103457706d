//! What a driver reads of a message for Sieve, in one pass over its chunks in bounded memory:
//! the header block (into the caller's buffer, up to its size) and the size in octets as
//! delivered (the size the maildir file gets, its `S=` and the quota's). RFC 5228 5.9 speaks of
//! the RFC 2822 representation (CRLF line ends, so a bare LF would count two); Pigeonhole
//! compares the octets as delivered too, and the differential test holds us to it.

/// Collects the header block and counts the size, fed chunk by chunk.
#[derive(Debug)]
pub struct MessageReader<'b> {
    header: &'b mut [u8],
    len: usize,
    header_done: bool,
    truncated: bool,
    size: u64,
    line_len: usize,
}

impl<'b> MessageReader<'b> {
    /// A reader that keeps the header block in `header`.
    pub fn new(header: &'b mut [u8]) -> Self {
        MessageReader {
            header,
            len: 0,
            header_done: false,
            truncated: false,
            size: 0,
            line_len: 0,
        }
    }

    /// Feeds the next chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        for &c in chunk {
            if self.header_done {
                continue;
            }
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
        }
        let mut buf = [0u8; 4];
        let mut r = MessageReader::new(&mut buf);
        r.push(msg);
        assert_eq!(r.header(), b"A: 1");
        assert!(r.truncated());
    }
}
