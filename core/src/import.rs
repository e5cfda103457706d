//! Importing an mbox into one maildir (`mdeliver -M`), allocation-free over any [`Fs`].
//!
//! [`MboxReader`] splits the mbox (any read size); each message is streamed through
//! [`StatusFilter`] (removes `Status:`/`X-Status:`, learning their flags) and [`DateCapture`]
//! (its `Date:`) into [`deliver_with`]. Right after a message is written and before it is
//! named, the hook picks new/ or cur/ and the flags ([`merge`]) and sets the file's
//! modification time to its date ([`Fs::set_mtime`], best effort). With
//! [`Durability::DeferDirSync`] messages are flushed one by one and their directories once per
//! batch of [`BATCH`]; a message counts as delivered only after its batch's directory flush
//! ([`ImportEvents::committed`]).
//!
//! The import stops at the first malformed spot of the mbox (naming its byte offset), the
//! first read error of the input, or the first message that cannot be delivered; what came
//! before stays delivered. A message with no bytes (a `From ` line followed by nothing) is
//! skipped, not stopped at. The driver sees what happens through [`ImportEvents`] and gets a
//! [`Summary`] at the end.
//!
//! [`Durability::DeferDirSync`]: crate::deliver::Durability::DeferDirSync

use crate::deliver::{deliver_with, Delivered, Options};
use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::flags::Flags;
use crate::fs::{Dir, Fs};
use crate::mbox::{MboxError, MboxReader, Quoting, ReadError};
use crate::message::{DateCapture, Observe, StatusFilter, Transformed};

/// Messages delivered between two directory flushes.
pub const BATCH: usize = 1024;

/// Buffer of each of the two transform layers (on the stack, re-made for every message).
pub const LAYER: usize = 16 * 1024;

/// The flags a message gets: what its `Status:`/`X-Status:` said (`None`: new/), plus `-X`.
pub fn merge(status: Option<Flags>, extra: Option<Flags>) -> Option<Flags> {
    match (status, extra) {
        (None, None) => None,
        (s, x) => Some(s.unwrap_or_default().union(x.unwrap_or_default())),
    }
}

/// How to import.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How quoted `From ` lines in bodies are read back.
    pub quoting: Quoting,
    /// Each message's delivery; its `flags` (`-X`) are added to what the message's `Status:`
    /// says, and `Durability::DeferDirSync` makes the directory flushes batched.
    pub delivery: Options,
}

/// What the driver is told while an import runs (each method does nothing by default).
pub trait ImportEvents {
    /// Message `number` (1-based) was written and named; it is delivered once its batch is
    /// [`committed`](ImportEvents::committed).
    fn written(&mut self, number: u64, delivered: &Delivered) {
        let _ = (number, delivered);
    }
    /// The last `count` messages [`written`](ImportEvents::written) (all not yet committed)
    /// are durable: their directories were flushed.
    fn committed(&mut self, count: u64) {
        let _ = count;
    }
    /// Message `number` had no bytes at all and was skipped.
    fn empty(&mut self, number: u64) {
        let _ = number;
    }
    /// Message `number` was delivered, but a second name of it remains in tmp/ (harmless).
    fn leftover_tmp(&mut self, number: u64) {
        let _ = number;
    }
    /// After message `number`: `position` bytes of the mbox have been consumed.
    fn progress(&mut self, number: u64, position: u64) {
        let _ = (number, position);
    }
    /// No more messages will be read (the end of the mbox, or a stop); the last batch's flush
    /// follows.
    fn reading_done(&mut self) {}
}

/// The driver that wants none of the events.
impl ImportEvents for () {}

/// Why an import stopped before the end of the mbox.
#[derive(Debug)]
pub enum Stop<E> {
    /// The mbox is malformed here (the error names the byte offset).
    Mbox(MboxError),
    /// Reading the input failed.
    Read(E),
    /// Delivering message `number` (1-based) failed, or flushing its batch did.
    Deliver {
        /// What failed.
        error: Error,
        /// The message.
        number: u64,
    },
}

/// The result of an import.
#[derive(Debug)]
pub struct Summary<E> {
    /// Messages delivered and flushed (committed).
    pub delivered: u64,
    /// Bytes written, over every message written (flushed or not).
    pub bytes: u64,
    /// Empty messages skipped.
    pub empty: u64,
    /// Why the import stopped early, if it did.
    pub stop: Option<Stop<E>>,
    /// The last batch's directory flush failed with this error...
    pub flush: Option<Error>,
    /// ...leaving this many written messages not known to be durable (0 when it succeeded).
    pub unflushed: u64,
}

/// An `embedded_io::Read` that remembers the error its source failed with, so that after a
/// failed delivery a malformed mbox (with its byte offset) can be told from a read error.
struct Tap<'r, R: embedded_io::ErrorType> {
    inner: &'r mut R,
    failed: Option<R::Error>,
}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for Tap<'_, R> {
    type Error = embedded_io::ErrorKind;
}

impl<R: embedded_io::Read> embedded_io::Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
        self.inner.read(buf).map_err(|e| {
            let kind = embedded_io::Error::kind(&e);
            self.failed = Some(e);
            kind
        })
    }
}

/// Written but not yet flushed: the batch.
#[derive(Default)]
struct Batch {
    count: u64,
    sync_new: bool,
    sync_cur: bool,
}

impl Batch {
    /// Flushes the batch's directories, then reports its messages as committed. On failure
    /// the batch stays as it was (a later commit tries again).
    fn commit<F: Fs + ?Sized, V: ImportEvents + ?Sized>(
        &mut self,
        fs: &mut F,
        events: &mut V,
    ) -> Result<u64, Error> {
        for (dir, needed) in [(Dir::New, self.sync_new), (Dir::Cur, self.sync_cur)] {
            if needed {
                fs.sync_dir(dir)
                    .map_err(|k| Error::new(k, Phase::SyncDir))?;
            }
        }
        let n = self.count;
        if n > 0 {
            events.committed(n);
        }
        *self = Batch::default();
        Ok(n)
    }
}

/// Imports the mbox read from `input` into `fs`. `rbuf` is the mbox read buffer and `wbuf`
/// the message write buffer (their sizes are the read and write sizes; 64 KiB each is a good
/// choice); memory use does not grow with the mbox or its messages.
pub fn import<F, E, R, V>(
    fs: &mut F,
    env: &mut E,
    settings: &Settings,
    input: R,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
    events: &mut V,
) -> Summary<R::Error>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read,
    V: ImportEvents + ?Sized,
{
    let mut reader = MboxReader::new(input, rbuf, settings.quoting);
    let opts = settings.delivery;
    let extra = opts.flags;
    let mut batch = Batch::default();
    let (mut delivered, mut bytes, mut empty) = (0u64, 0u64, 0u64);
    let mut stop = None;
    loop {
        let from_date = match reader.next_message() {
            Ok(None) => break,
            Ok(Some(envelope)) => envelope.timestamp(),
            Err(ReadError::Mbox(e)) => {
                stop = Some(Stop::Mbox(e));
                break;
            }
            Err(ReadError::Source(e)) => {
                stop = Some(Stop::Read(e));
                break;
            }
        };
        let number = reader.messages();
        let mut tap = Tap {
            inner: &mut reader,
            failed: None,
        };
        let filtered = Transformed::<_, _, LAYER>::new(&mut tap, StatusFilter::new());
        let mut chain = Transformed::<_, _, LAYER>::new(filtered, Observe(DateCapture::date()));
        let outcome = deliver_with(fs, env, opts, &mut chain, wbuf, |w| {
            let status = w.source.source_mut().transform().status();
            w.machine.set_flags(merge(status.maildir_info(), extra));
            let date = w.source.transform().0.timestamp().or(from_date);
            if let (Some(file), Some(t)) = (w.file.as_deref(), date) {
                // Best effort, as in mblaze: a wrong mtime loses no mail.
                let _ = w.fs.set_mtime(file, t);
            }
        });
        match outcome {
            Ok(d) => {
                bytes += d.size;
                batch.count += 1;
                batch.sync_new |= d.needs_dir_sync && d.dir == Dir::New;
                batch.sync_cur |= d.needs_dir_sync && d.dir == Dir::Cur;
                events.written(number, &d);
                if d.leftover_tmp {
                    events.leftover_tmp(number);
                }
            }
            Err(e) => match tap.failed.take() {
                Some(ReadError::Mbox(m)) => {
                    stop = Some(Stop::Mbox(m));
                    break;
                }
                Some(ReadError::Source(s)) => {
                    stop = Some(Stop::Read(s));
                    break;
                }
                None if e.kind == ErrorKind::Data && e.phase == Phase::Read => {
                    // A `From ` line with nothing after it: no message to store.
                    empty += 1;
                    events.empty(number);
                }
                None => {
                    stop = Some(Stop::Deliver { error: e, number });
                    break;
                }
            },
        }
        if batch.count >= BATCH as u64 {
            match batch.commit(fs, events) {
                Ok(n) => delivered += n,
                Err(error) => {
                    stop = Some(Stop::Deliver { error, number });
                    break;
                }
            }
        }
        events.progress(number, reader.position());
    }
    events.reading_done();
    // After a failed batch flush above this tries once more: what it flushes is delivered.
    let unflushed = batch.count;
    let flush = match batch.commit(fs, events) {
        Ok(n) => {
            delivered += n;
            None
        }
        Err(e) => Some(e),
    };
    Summary {
        delivered,
        bytes,
        empty,
        stop,
        unflushed: if flush.is_some() { unflushed } else { 0 },
        flush,
    }
}
