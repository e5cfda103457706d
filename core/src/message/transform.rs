//! The streaming transform framework: [`Transform`], [`Transformed`] (a transform as a reader), [`Prefixed`] and the [`Scanner`] adapter [`Observe`].

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

/// An `embedded_io::Read` that reads `source` through a [`Transform`], using a buffer `B`:
/// its own array (`[u8; N]`, [`new`](Transformed::new)) or one lent to it (`&mut [u8]`,
/// [`with_buffer`](Transformed::with_buffer): a loop that makes one per message need not zero
/// a fresh array each time). Nest them to chain transforms.
pub struct Transformed<R, T, B = [u8; 4096]> {
    source: R,
    transform: T,
    buf: B,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R, T, const N: usize> Transformed<R, T, [u8; N]> {
    /// Reads `source` through `transform`, with a buffer of its own of `N` bytes.
    pub fn new(source: R, transform: T) -> Self {
        Transformed::with_buffer(source, transform, [0; N])
    }
}

impl<R, T, B> Transformed<R, T, B> {
    /// Reads `source` through `transform`, with `buf` as its buffer (its contents do not
    /// matter; it must not be empty).
    pub fn with_buffer(source: R, transform: T, buf: B) -> Self {
        Transformed {
            source,
            transform,
            buf,
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

impl<R: embedded_io::ErrorType, T, B> embedded_io::ErrorType for Transformed<R, T, B> {
    type Error = R::Error;
}

impl<R: embedded_io::Read, T: Transform, B: AsMut<[u8]>> embedded_io::Read
    for Transformed<R, T, B>
{
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.start < self.end {
                let (c, p) = self
                    .transform
                    .push(&self.buf.as_mut()[self.start..self.end], out);
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
            let n = self.source.read(self.buf.as_mut())?;
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
/// the chunking): [`LoopCheck`](super::loop_check::LoopCheck),
/// [`FieldCapture`](super::capture::FieldCapture).
pub trait Scanner {
    /// Looks at the next bytes.
    fn scan(&mut self, bytes: &[u8]);
    /// The message ended.
    fn end(&mut self);
}

/// A [`Transform`] that passes bytes through unchanged while a [`Scanner`] watches them, so a
/// scanner can sit in a [`Transformed`] chain (e.g. capturing `Date:` during the write).
pub struct Observe<S>(pub S);

impl<S: Scanner> Transform for Observe<S> {
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

/// An `embedded_io::Read` that shows a [`Scanner`] every chunk read from `source`, where it
/// was read (the scanning counterpart of [`Observe`], without a buffer or a copy). The end of
/// the source (a read of `0` into a non-empty buffer) is the scanner's [`end`](Scanner::end).
pub struct Scanned<R, S> {
    source: R,
    scanner: S,
}

impl<R, S> Scanned<R, S> {
    /// Reads `source`, showing what it reads to `scanner`.
    pub fn new(source: R, scanner: S) -> Self {
        Scanned { source, scanner }
    }

    /// The scanner (to ask it what it saw).
    pub fn scanner(&self) -> &S {
        &self.scanner
    }

    /// The source.
    pub fn source_mut(&mut self) -> &mut R {
        &mut self.source
    }
}

impl<R: embedded_io::ErrorType, S> embedded_io::ErrorType for Scanned<R, S> {
    type Error = R::Error;
}

impl<R: embedded_io::Read, S: Scanner> embedded_io::Read for Scanned<R, S> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.source.read(out)?;
        if n > 0 {
            self.scanner.scan(&out[..n]);
        } else if !out.is_empty() {
            self.scanner.end();
        }
        Ok(n)
    }
}

/// Copies `src[*pos..]` into `out` as far as it fits; returns the bytes written.
pub(crate) fn drain(src: &[u8], pos: &mut usize, out: &mut [u8]) -> usize {
    let n = (src.len() - *pos).min(out.len());
    out[..n].copy_from_slice(&src[*pos..*pos + n]);
    *pos += n;
    n
}
