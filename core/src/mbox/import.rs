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
//! [`Durability::DeferDirSync`]: crate::machine::deliver::Durability::DeferDirSync

use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Dir, Fs};
use crate::machine::deliver::{deliver_with, Delivered, Options};
use crate::maildir::flags::Flags;
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
pub struct ImportOptions {
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
    settings: &ImportOptions,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Stat;
    use crate::machine::deliver::Durability;
    use crate::machine::quota::tests::{setup, MemFs, TestEnv};
    use crate::maildir::name::NameBuf;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::format;
    use std::rc::Rc;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// One log shared by the filesystem and the events, so their order can be checked.
    type Log = Rc<RefCell<Vec<String>>>;

    /// The quota tests' [`MemFs`] with modification times that can be set (and fail), one
    /// scripted failure (the `nth` call of an operation), and a log of the flushes.
    struct Probe {
        mem: MemFs,
        log: Log,
        mtimes: BTreeMap<u64, i64>,
        mtime_fails: bool,
        calls: BTreeMap<&'static str, u32>,
        fail: Option<(&'static str, u32, ErrorKind)>,
    }

    impl Probe {
        fn new(log: &Log) -> (Probe, TestEnv) {
            let (mem, env, _clock) = setup();
            let probe = Probe {
                mem,
                log: log.clone(),
                mtimes: BTreeMap::new(),
                mtime_fails: false,
                calls: BTreeMap::new(),
                fail: None,
            };
            (probe, env)
        }

        fn gate(&mut self, op: &'static str) -> Result<(), ErrorKind> {
            let n = self.calls.entry(op).or_insert(0);
            *n += 1;
            match self.fail {
                Some((o, nth, kind)) if o == op && nth == *n => Err(kind),
                _ => Ok(()),
            }
        }

        /// `(name, contents, mtime set)` of every file in `dir`.
        fn files(&self, dir: Dir) -> Vec<(String, Vec<u8>, Option<i64>)> {
            self.mem
                .names
                .iter()
                .filter(|((d, _), _)| *d == dir)
                .map(|((_, n), ino)| {
                    let data = self.mem.inodes[ino].data.clone();
                    (n.clone(), data, self.mtimes.get(ino).copied())
                })
                .collect()
        }
    }

    impl Fs for Probe {
        type File = u64;
        type DirStream = <MemFs as Fs>::DirStream;

        fn capabilities(&self) -> crate::Capabilities {
            self.mem.capabilities()
        }
        fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<u64, ErrorKind> {
            self.gate("create")?;
            self.mem.create(dir, name, exclusive)
        }
        fn create_anonymous(&mut self, dir: Dir) -> Result<u64, ErrorKind> {
            self.mem.create_anonymous(dir)
        }
        fn file_id(&self, file: &u64) -> Option<(u64, u64)> {
            self.mem.file_id(file)
        }
        fn write(&mut self, file: &mut u64, buf: &[u8]) -> Result<usize, ErrorKind> {
            self.gate("write")?;
            self.mem.write(file, buf)
        }
        fn sync_file(&mut self, file: &mut u64) -> Result<(), ErrorKind> {
            self.log.borrow_mut().push("sync_file".into());
            self.mem.sync_file(file)
        }
        fn close(&mut self, file: u64) -> Result<(), ErrorKind> {
            self.mem.close(file)
        }
        fn link_anonymous(&mut self, file: &u64, dir: Dir, name: &str) -> Result<(), ErrorKind> {
            self.mem.link_anonymous(file, dir, name)
        }
        fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
            self.mem.link(from, to)
        }
        fn rename(
            &mut self,
            from: (Dir, &str),
            to: (Dir, &str),
            nr: bool,
        ) -> Result<(), ErrorKind> {
            self.mem.rename(from, to, nr)
        }
        fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
            self.gate("unlink")?;
            self.mem.unlink(dir, name)
        }
        fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
            self.mem.stat(dir, name)
        }
        fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
            let r = self.gate("sync_dir");
            let shown = format!(
                "sync_dir {}{}",
                dir.as_str(),
                if r.is_err() { " failed" } else { "" }
            );
            self.log.borrow_mut().push(shown);
            r
        }
        fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
            self.mem.mkdir(dir)
        }
        fn open_dir(&mut self, dir: Dir) -> Result<Self::DirStream, ErrorKind> {
            self.mem.open_dir(dir)
        }
        fn read_dir(
            &mut self,
            s: &mut Self::DirStream,
            out: &mut NameBuf,
        ) -> Result<bool, ErrorKind> {
            self.mem.read_dir(s, out)
        }
        fn set_mtime(&mut self, file: &u64, secs: i64) -> Result<(), ErrorKind> {
            self.log.borrow_mut().push(format!("set_mtime {secs}"));
            if self.mtime_fails {
                return Err(ErrorKind::Permission);
            }
            self.mtimes.insert(*file, secs);
            Ok(())
        }
    }

    /// Records the events into the shared log (progress only when `progress`).
    struct Events {
        log: Log,
        progress: bool,
    }

    impl ImportEvents for Events {
        fn written(&mut self, number: u64, d: &Delivered) {
            // The name's unique part varies (time, random bits): `N` stands for it.
            let name = d.name.as_str();
            let info = name.find(':').map_or("", |i| &name[i..]);
            let at = format!("{}/N{info}", d.dir.as_str());
            let sync = if d.needs_dir_sync {
                " (dir sync due)"
            } else {
                ""
            };
            let line = format!("written {number}: {} bytes -> {at}{sync}", d.size);
            self.log.borrow_mut().push(line);
        }
        fn committed(&mut self, count: u64) {
            self.log.borrow_mut().push(format!("committed {count}"));
        }
        fn empty(&mut self, number: u64) {
            self.log.borrow_mut().push(format!("empty {number}"));
        }
        fn leftover_tmp(&mut self, number: u64) {
            self.log.borrow_mut().push(format!("leftover_tmp {number}"));
        }
        fn progress(&mut self, number: u64, position: u64) {
            if self.progress {
                let line = format!("progress {number} at {position}");
                self.log.borrow_mut().push(line);
            }
        }
        fn reading_done(&mut self) {
            self.log.borrow_mut().push("reading_done".into());
        }
    }

    fn settings(extra: Option<&str>) -> ImportOptions {
        ImportOptions {
            quoting: Quoting::Mboxrd,
            delivery: Options {
                durability: Durability::DeferDirSync,
                flags: extra.map(|f| Flags::parse(f).unwrap()),
                ..Options::default()
            },
        }
    }

    /// Imports `mbox` (read 7 bytes at a time) into `fs`; the summary and the log.
    fn run(
        fs: &mut Probe,
        env: &mut TestEnv,
        settings: &ImportOptions,
        mbox: &[u8],
        progress: bool,
    ) -> Summary<core::convert::Infallible> {
        let mut rbuf = [0u8; 64];
        let mut wbuf = [0u8; 32];
        let mut events = Events {
            log: fs.log.clone(),
            progress,
        };
        let input = crate::mbox::Trickle::new(mbox, 7);
        import(fs, env, settings, input, &mut rbuf, &mut wbuf, &mut events)
    }

    fn lines(log: &Log) -> Vec<String> {
        log.borrow().clone()
    }

    #[test]
    fn merge_adds_extra_flags_and_keeps_new_without_either() {
        let f = |s: &str| Some(Flags::parse(s).unwrap());
        assert_eq!(merge(None, None), None);
        assert_eq!(merge(f(""), None), f(""));
        assert_eq!(merge(None, f("T")), f("T"));
        assert_eq!(merge(f("SF"), f("TS")), f("FST"));
    }

    const SMALL: &[u8] = b"From a@example.org Wed Dec 31 23:59:00 1969\n\
Subject: one\n\nbody 1\n\n\
From b@example.org Sat Nov 28 18:03:09 2026\n\
Subject: two\nStatus: RO\n\nbody 2\n>From here\n\n\
From c@example.org Sat Nov 28 18:03:09 2026\n\
Date: Sun, 9 Sep 2001 01:46:40 +0000\nX-Status: F\n\tD\nSubject: three\n\n\
body 3\n>>From there\n";

    #[test]
    fn a_small_mbox_is_stored_exactly_with_its_flags_dates_and_one_flush_per_directory() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        let s = run(&mut fs, &mut env, &settings(None), SMALL, true);
        assert_eq!(
            (s.delivered, s.bytes, s.empty, s.unflushed),
            (3, 21 + 31 + 72, 0, 0)
        );
        assert!(s.stop.is_none() && s.flush.is_none());
        // Status: and X-Status: removed, mboxrd quoting undone, nothing else touched (Date:
        // stays).
        let new = fs.files(Dir::New);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].1, b"Subject: one\n\nbody 1\n");
        assert!(!new[0].0.contains(':'), "no info in new/: {}", new[0].0);
        assert_eq!(new[0].2, Some(-60), "the envelope's date, before 1970");
        let mut cur = fs.files(Dir::Cur);
        cur.sort_by_key(|(_, data, _)| data.len());
        assert_eq!(cur.len(), 2);
        assert_eq!(cur[0].1, b"Subject: two\n\nbody 2\nFrom here\n");
        assert!(cur[0].0.ends_with(":2,S"), "{}", cur[0].0);
        assert_eq!(cur[0].2, Some(1_795_888_989), "the envelope's date");
        assert_eq!(
            cur[1].1,
            b"Date: Sun, 9 Sep 2001 01:46:40 +0000\nSubject: three\n\nbody 3\n>From there\n"
        );
        assert!(cur[1].0.ends_with(":2,FT"), "{}", cur[1].0);
        assert_eq!(
            cur[1].2,
            Some(1_000_000_000),
            "Date: wins over the envelope"
        );
        assert!(fs.files(Dir::Tmp).is_empty());
        // Each message's data is flushed before it is named; the directories once, at the end,
        // and only then are the messages committed. Messages end at 66, 154 and 286; a message
        // is over once the next `From ` (5 bytes) has been read.
        assert_eq!(
            lines(&log),
            [
                "set_mtime -60",
                "sync_file",
                "written 1: 21 bytes -> new/N (dir sync due)",
                "progress 1 at 71",
                "set_mtime 1795888989",
                "sync_file",
                "written 2: 31 bytes -> cur/N:2,S (dir sync due)",
                "progress 2 at 159",
                "set_mtime 1000000000",
                "sync_file",
                "written 3: 72 bytes -> cur/N:2,FT (dir sync due)",
                "progress 3 at 286",
                "reading_done",
                "sync_dir new",
                "sync_dir cur",
                "committed 3",
            ]
        );
        assert_eq!(SMALL.len(), 286);
    }

    #[test]
    fn extra_flags_add_to_status_and_move_plain_messages_to_cur() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        fs.mtime_fails = true;
        let s = run(&mut fs, &mut env, &settings(Some("T")), SMALL, false);
        assert_eq!(
            (s.delivered, s.bytes),
            (3, 124),
            "a failed set_mtime loses nothing"
        );
        assert!(fs.files(Dir::New).is_empty());
        let mut infos: Vec<String> = fs
            .files(Dir::Cur)
            .iter()
            .map(|(n, _, m)| {
                assert_eq!(*m, None);
                n[n.find(':').unwrap()..].to_string()
            })
            .collect();
        infos.sort();
        assert_eq!(infos, [":2,FT", ":2,ST", ":2,T"]);
        assert_eq!(
            lines(&log)
                .iter()
                .filter(|l| l.starts_with("sync_dir"))
                .count(),
            1,
            "only cur/ got messages"
        );
    }

    #[test]
    fn without_set_mtime_the_import_still_delivers() {
        // The quota tests' MemFs keeps the default `set_mtime` (Unsupported).
        let (mut mem, mut env, _clock) = setup();
        let mut rbuf = [0u8; 64];
        let mut wbuf = [0u8; 64];
        let s = import(
            &mut mem,
            &mut env,
            &settings(None),
            SMALL,
            &mut rbuf,
            &mut wbuf,
            &mut (),
        );
        assert_eq!((s.delivered, s.bytes), (3, 124));
        assert_eq!(mem.list(Dir::New).len() + mem.list(Dir::Cur).len(), 3);
    }

    #[test]
    fn a_malformed_mbox_stops_at_its_offset_and_keeps_what_came_before() {
        let mut mbox = SMALL[..154].to_vec();
        mbox.extend_from_slice(b"From ");
        mbox.extend_from_slice(&[b'x'; 2000]);
        mbox.extend_from_slice(b"\nSubject: lost\n\nbody\n");
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        let s = run(&mut fs, &mut env, &settings(None), &mbox, false);
        assert_eq!((s.delivered, s.bytes), (2, 52));
        match s.stop {
            Some(Stop::Mbox(e)) => assert_eq!(e.offset(), 154),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs.files(Dir::New).len() + fs.files(Dir::Cur).len(), 2);
        assert!(fs.files(Dir::Tmp).is_empty());
        assert_eq!(lines(&log).last().unwrap(), "committed 2");
        // Not an mbox at all: nothing delivered, offset 0.
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        let s = run(
            &mut fs,
            &mut env,
            &settings(None),
            b"Subject: x\n\ny\n",
            false,
        );
        assert!(matches!(s.stop, Some(Stop::Mbox(e)) if e.offset() == 0));
        assert_eq!((s.delivered, s.bytes), (0, 0));
        assert_eq!(lines(&log), ["reading_done"]);
    }

    #[test]
    fn a_read_error_stops_the_import_mid_message() {
        /// The mbox's first `n` bytes, then an I/O error.
        struct Broken<'a>(&'a [u8]);
        impl embedded_io::ErrorType for Broken<'_> {
            type Error = embedded_io::ErrorKind;
        }
        impl embedded_io::Read for Broken<'_> {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
                if self.0.is_empty() {
                    return Err(embedded_io::ErrorKind::Other);
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        let (mut rbuf, mut wbuf) = ([0u8; 64], [0u8; 64]);
        let s = import(
            &mut fs,
            &mut env,
            &settings(None),
            Broken(&SMALL[..100]),
            &mut rbuf,
            &mut wbuf,
            &mut (),
        );
        assert!(matches!(
            s.stop,
            Some(Stop::Read(embedded_io::ErrorKind::Other))
        ));
        assert_eq!(s.delivered, 1);
        assert_eq!(fs.files(Dir::New).len(), 1);
        assert!(fs.files(Dir::Cur).is_empty() && fs.files(Dir::Tmp).is_empty());
    }

    #[test]
    fn an_empty_message_is_skipped_and_counted() {
        let mut mbox = b"From nobody Sat Nov 28 18:03:09 2026\n\n".to_vec();
        mbox.extend_from_slice(&SMALL[..66]);
        mbox.extend_from_slice(b"From nobody Sat Nov 28 18:03:09 2026\n");
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        let s = run(&mut fs, &mut env, &settings(None), &mbox, false);
        assert_eq!((s.delivered, s.bytes, s.empty), (1, 21, 2));
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(fs.files(Dir::New)[0].1, b"Subject: one\n\nbody 1\n");
        assert!(fs.files(Dir::Tmp).is_empty());
        assert_eq!(
            lines(&log),
            [
                "empty 1",
                "set_mtime -60",
                "sync_file",
                "written 2: 21 bytes -> new/N (dir sync due)",
                "empty 3",
                "reading_done",
                "sync_dir new",
                "committed 1",
            ]
        );
    }

    #[test]
    fn a_failed_delivery_stops_at_its_message_number() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        // Each message is created once in tmp/ (POSIX: no anonymous files).
        fs.fail = Some(("create", 3, ErrorKind::NoSpace));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        match s.stop {
            Some(Stop::Deliver { error, number }) => {
                assert_eq!(
                    (error.kind, error.phase, number),
                    (ErrorKind::NoSpace, Phase::Create, 3)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (s.delivered, s.bytes),
            (2, 52),
            "the two before it are delivered"
        );
        assert!(s.flush.is_none());
        assert_eq!(fs.files(Dir::New).len() + fs.files(Dir::Cur).len(), 2);
        assert!(
            fs.files(Dir::Tmp).is_empty(),
            "the failed message is cleaned up"
        );
        assert_eq!(
            lines(&log)[lines(&log).len() - 4..],
            [
                "reading_done",
                "sync_dir new",
                "sync_dir cur",
                "committed 2"
            ]
        );
    }

    #[test]
    fn a_second_name_left_in_tmp_is_reported_and_the_message_still_delivered() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        // POSIX publishes by link + unlink: the first message's tmp name stays.
        fs.fail = Some(("unlink", 1, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        assert!(s.stop.is_none() && s.flush.is_none());
        assert_eq!(s.delivered, 3);
        let tmp = fs.files(Dir::Tmp);
        assert_eq!(tmp.len(), 1);
        assert_eq!(tmp[0].1, fs.files(Dir::New)[0].1);
        let log = lines(&log);
        let at = log.iter().position(|l| l == "leftover_tmp 1").unwrap();
        assert!(log[at - 1].starts_with("written 1: "), "{log:?}");
        assert_eq!(log.iter().filter(|l| l.starts_with("leftover")).count(), 1);
    }

    #[test]
    fn a_failed_final_flush_delivers_nothing_and_counts_the_unflushed() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        fs.fail = Some(("sync_dir", 2, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), SMALL, false);
        assert!(s.stop.is_none());
        assert_eq!(s.flush, Some(Error::new(ErrorKind::Io, Phase::SyncDir)));
        assert_eq!((s.delivered, s.bytes, s.unflushed), (0, 124, 3));
        assert!(!lines(&log).iter().any(|l| l.starts_with("committed")));
        assert_eq!(lines(&log).last().unwrap(), "sync_dir cur failed");
    }

    /// An mbox of `n` one-line messages.
    fn many(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(format!("From x Sat Nov 28 18:03:09 2026\nS: {i}\n\n").as_bytes());
        }
        v
    }

    #[test]
    fn directories_are_flushed_once_per_batch() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        let s = run(&mut fs, &mut env, &settings(None), &many(BATCH + 3), false);
        assert_eq!(s.delivered, BATCH as u64 + 3);
        let flushes: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| {
                l.starts_with("sync_dir") || l.starts_with("committed") || l == "reading_done"
            })
            .collect();
        assert_eq!(
            flushes,
            [
                "sync_dir new",
                "committed 1024",
                "reading_done",
                "sync_dir new",
                "committed 3"
            ]
        );
        assert_eq!(fs.files(Dir::New).len(), BATCH + 3);
    }

    #[test]
    fn a_failed_batch_flush_stops_the_import_and_is_tried_again_at_the_end() {
        let log = Log::default();
        let (mut fs, mut env) = Probe::new(&log);
        fs.fail = Some(("sync_dir", 1, ErrorKind::Io));
        let s = run(&mut fs, &mut env, &settings(None), &many(BATCH + 3), false);
        match s.stop {
            Some(Stop::Deliver { error, number }) => {
                assert_eq!(error, Error::new(ErrorKind::Io, Phase::SyncDir));
                assert_eq!(number, BATCH as u64, "the message that filled the batch");
            }
            other => panic!("{other:?}"),
        }
        // The retry at the end succeeded: the batch is delivered, nothing after it was read.
        assert!(s.flush.is_none());
        assert_eq!(s.delivered, BATCH as u64);
        assert_eq!(fs.files(Dir::New).len(), BATCH);
        let flushes: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| !l.starts_with("written") && l != "sync_file" && !l.starts_with("set_"))
            .collect();
        assert_eq!(
            flushes,
            [
                "sync_dir new failed",
                "reading_done",
                "sync_dir new",
                "committed 1024"
            ]
        );
    }
}
