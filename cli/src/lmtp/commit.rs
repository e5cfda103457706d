//! Group commit: many deliveries share their flushes.
//!
//! Every delivery runs the core's machine exactly as the one-shot path does (the file is
//! flushed before it is published, its directory after), through a [`GroupFs`] that hands
//! each flush to the one [`Committer`] and waits for it. The delivery that asks while no batch
//! runs leads the next one, in its own thread: it takes every flush that is waiting and asks
//! the core ([`mdeliver_core::lmtp::commit::plan`]) what to run for the batch: one `syncfs`
//! when the batch is on one filesystem and the kernel reports writeback errors through it
//! (Linux 5.8 and later), otherwise the file flushes side by side and then one flush per
//! distinct directory. Only then does it let the waiting deliveries go on, each told the
//! result of the flushes that answer it, and it hands the lead to the first delivery that
//! asked meanwhile. A delivery alone thus flushes with no thread switch, and a batch wakes
//! only its other deliveries. So a recipient's 250 is sent only when its file and directory
//! entry are as durable as the one-shot path makes them, and a batch of deliveries costs two
//! device flushes (one for the files' data, one for their names) instead of two per delivery.
//!
//! `syncfs` reports the writeback errors recorded since the descriptor it is called on was
//! opened, so the committer calls it on a descriptor of each filesystem taken (when a
//! delivery first starts on it) from the maildir opened at `RCPT`, before any file of theirs
//! was written. A failed `syncfs` fails every request of its batch: those recipients get a
//! 4xx and the MTA retries them.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

use mdeliver_core::fs::{Persist, Stat};
use mdeliver_core::lmtp::commit::{self as plan, Flush, Need, Platform};
use mdeliver_core::lmtp::link::Digest32;
use mdeliver_core::lmtp::reuse::IDLE_SECS;
use mdeliver_core::{Capabilities, Dir, ErrorKind, Fs};

use crate::linux::{error_kind, Call, File, LinuxFs};

/// The most flushes one batch takes; the rest wait for the next.
const BATCH_MAX: usize = 1024;

/// What to flush.
struct Request {
    /// The core's view: what, on which filesystem, in which directory.
    what: plan::Request,
    /// The file (for [`Need::Data`]) or the directory (for [`Need::Names`]): the requesting
    /// thread's own descriptor, open for the request's whole life (see [`Committer::flush`]).
    fd: Held,
    answer: Arc<Answer>,
}

/// Where a waiting delivery learns its request's fate: its thread parks until the state is
/// no longer [`Answer::WAIT`].
struct Answer {
    state: AtomicU8,
    thread: Thread,
}

impl Answer {
    const WAIT: u8 = 0;
    const DONE: u8 = 1;
    const FAILED: u8 = 2;
    /// Its delivery runs the next batch.
    const LEAD: u8 = 3;

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.thread.unpark();
    }
}

/// Counters, for the log and the bench.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches run.
    pub batches: AtomicU64,
    /// Flush requests (files and directories) served.
    pub requests: AtomicU64,
    /// `syncfs` calls (one answers a whole batch).
    pub fs_syncs: AtomicU64,
    /// `fdatasync` calls made on files (batches that could not use `syncfs`).
    pub file_syncs: AtomicU64,
    /// `fsync` calls made on directories (after merging a batch's requests).
    pub dir_syncs: AtomicU64,
    /// The largest batch.
    pub max_batch: AtomicU64,
    /// Recipients stored as a hard link to an identical copy (`--delivered-to none`).
    pub links: AtomicU64,
    /// Batches by size: 1, 2-3, 4-7, 8-15, 16-31, 32 and more.
    pub sizes: [AtomicU64; 6],
    /// Microseconds from the end of each message's DATA to its last reply (the first
    /// [`LATENCIES_MAX`]).
    pub latencies: Mutex<Vec<u32>>,
}

/// The most latencies kept for the summary.
const LATENCIES_MAX: usize = 1 << 20;

impl Stats {
    /// Notes one transaction's time from the end of DATA to its last reply.
    pub fn replied(&self, took: std::time::Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            if l.len() < LATENCIES_MAX {
                l.push(took.as_micros().min(u32::MAX as u128) as u32);
            }
        }
    }

    /// The 50th and 99th percentiles of [`Stats::latencies`], in milliseconds.
    fn percentiles(&self) -> Option<(f64, f64)> {
        let mut l = self.latencies.lock().ok()?.clone();
        if l.is_empty() {
            return None;
        }
        l.sort_unstable();
        let at = |p: usize| l[((l.len() * p).div_ceil(100)).clamp(1, l.len()) - 1] as f64 / 1000.0;
        Some((at(50), at(99)))
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let b = self.batches.load(Ordering::Relaxed);
        let r = self.requests.load(Ordering::Relaxed);
        let fs = self.fs_syncs.load(Ordering::Relaxed);
        let f = self.file_syncs.load(Ordering::Relaxed);
        let d = self.dir_syncs.load(Ordering::Relaxed);
        let links = self.links.load(Ordering::Relaxed);
        let s: Vec<String> = self
            .sizes
            .iter()
            .map(|x| x.load(Ordering::Relaxed).to_string())
            .collect();
        let latency = match self.percentiles() {
            Some((p50, p99)) => format!(
                "; end of DATA to last reply over {} transactions: p50 {p50:.2} ms, p99 {p99:.2} ms",
                self.latencies.lock().map(|l| l.len()).unwrap_or(0)
            ),
            None => String::new(),
        };
        format!(
            "group commit: {b} batches, {r} flush requests, {fs} filesystem syncs, {f} file syncs, \
             {d} directory syncs, {links} copies stored as hard links, {:.2} requests per batch (largest {}); batches by size \
             1/2-3/4-7/8-15/16-31/32+: {}{latency}",
            if b == 0 { 0.0 } else { r as f64 / b as f64 },
            self.max_batch.load(Ordering::Relaxed),
            s.join("/")
        )
    }
}

/// The flushes waiting for a batch.
#[derive(Default)]
struct Queue {
    waiting: Vec<Request>,
    /// A delivery leads a batch: the waiting requests are its next.
    leading: bool,
    /// Its leader waits for requests to arrive (see [`gather`]).
    gathering: bool,
    /// The names requests the last batch made certain ([`plan::followers`]).
    expect: usize,
    /// Deliveries under way that have not asked for a flush yet ([`GroupFs`]).
    underway: usize,
}

/// The queue, locked. A poisoned lock is taken as it is: the updates made under it are a few
/// field writes, so the other sessions go on.
fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// A filesystem's descriptor for `syncfs`: it reports the write-back errors that happened
/// since it was opened, so it is opened before the first delivery there writes anything, and
/// kept while deliveries there are under way. It keeps the filesystem busy (`umount` fails),
/// so it is closed once none has been for [`IDLE_SECS`] ([`Committer::release_idle`]).
struct Watched {
    fd: Arc<OwnedFd>,
    /// Deliveries there now.
    users: usize,
    /// When the last one ended.
    since: Instant,
}

/// The group commit shared by every session.
#[derive(Clone)]
pub struct Committer {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    pool: Arc<Pool>,
    platform: Platform,
    /// A descriptor per filesystem for `syncfs`, opened before any delivery wrote there.
    filesystems: Arc<Mutex<HashMap<u64, Watched>>>,
    /// The counters.
    pub stats: Arc<Stats>,
}

/// A descriptor a waiting delivery holds open until its request is answered.
#[derive(Copy, Clone)]
struct Held(RawFd);

impl Held {
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the thread that made the request owns this descriptor and waits in
        // `Committer::flush` until the request is answered, which happens only after every
        // flush of its batch returned (`run_batch`), so the descriptor is open while used.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

fn sync_one(fd: Held, data_only: bool) -> Result<(), ErrorKind> {
    let fd = fd.fd();
    let r = if data_only {
        rustix::fs::fdatasync(fd)
    } else {
        rustix::fs::fsync(fd)
    };
    r.map_err(|e| error_kind(e, Call::Other))
}

/// One flush for a worker of the [`Pool`].
struct Job {
    fd: Held,
    data_only: bool,
    index: usize,
    done: mpsc::Sender<(usize, Result<(), ErrorKind>)>,
}

/// Threads that run a batch's flushes side by side (the journal commits concurrent flushes
/// together), started once rather than per batch.
struct Pool {
    tx: mpsc::Sender<Job>,
}

impl Pool {
    fn start(workers: usize) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..workers {
            let rx = Arc::clone(&rx);
            let _ = std::thread::Builder::new()
                .name("flush".into())
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(j) = job else { return };
                    let _ = j.done.send((j.index, sync_one(j.fd, j.data_only)));
                });
        }
        Pool { tx }
    }

    /// Flushes every descriptor in `fds`; the results in the same order.
    fn sync_all(&self, fds: &[Held], data_only: bool) -> Vec<Result<(), ErrorKind>> {
        if fds.len() <= 1 {
            return fds.iter().map(|fd| sync_one(*fd, data_only)).collect();
        }
        let (done, results) = mpsc::channel();
        let mut out = vec![Err(ErrorKind::Io); fds.len()];
        let mut sent = 0;
        for (index, fd) in fds.iter().enumerate() {
            let job = Job {
                fd: *fd,
                data_only,
                index,
                done: done.clone(),
            };
            match self.tx.send(job) {
                Ok(()) => sent += 1,
                Err(_) => out[index] = sync_one(*fd, data_only),
            }
        }
        drop(done);
        for _ in 0..sent {
            match results.recv() {
                Ok((i, r)) => out[i] = r,
                Err(_) => break,
            }
        }
        out
    }
}

/// Flush workers: enough for a batch of every session's flushes at the default session cap.
const WORKERS: usize = 32;

/// The longest the next batch waits for the names requests the last batch makes
/// certain ([`plan::followers`]): they come a link away, and without the wait each would
/// find a batch just started without it and wait for that one to end first.
const FOLLOW_WAIT: Duration = Duration::from_millis(1);

/// The longest the next batch waits for deliveries under way (their message received, their
/// flush not asked yet): about one file's write-back. Each that makes it shares this batch's
/// flush instead of waiting for the whole of the next one (measured at 8 sessions: 300 µs did
/// better than no wait in every round, and about as well as 700 µs).
const UNDERWAY_WAIT: Duration = Duration::from_micros(300);

/// Takes the next batch: every request waiting, those still on their way of the `expect`
/// names requests the last batch makes certain (for at most [`FOLLOW_WAIT`]), and those of
/// the deliveries under way (for at most [`UNDERWAY_WAIT`]).
fn gather(queue: &(Mutex<Queue>, Condvar)) -> Vec<Request> {
    let mut q = lock(&queue.0);
    let start = Instant::now();
    let (follow, underway) = (start + FOLLOW_WAIT, start + UNDERWAY_WAIT);
    loop {
        let names = q
            .waiting
            .iter()
            .filter(|r| r.what.need == Need::Names)
            .count();
        let now = Instant::now();
        let until = match (
            names < q.expect && now < follow,
            q.underway > 0 && now < underway,
        ) {
            _ if q.waiting.len() >= BATCH_MAX => break,
            (true, true) => follow.max(underway),
            (true, false) => follow,
            (false, true) => underway,
            (false, false) => break,
        };
        q.gathering = true;
        q = match queue.1.wait_timeout(q, until - now) {
            Ok((q, _)) => q,
            Err(e) => e.into_inner().0,
        };
        q.gathering = false;
    }
    let n = q.waiting.len().min(BATCH_MAX);
    q.waiting.drain(..n).collect()
}

/// Runs one batch and answers its requests; gives how many names requests it makes certain.
fn run_batch(
    batch: Vec<Request>,
    stats: &Stats,
    pool: &Pool,
    platform: Platform,
    filesystems: &Mutex<HashMap<u64, Watched>>,
) -> usize {
    let n = batch.len() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.requests.fetch_add(n, Ordering::Relaxed);
    stats.max_batch.fetch_max(n, Ordering::Relaxed);
    let bucket = (63 - n.leading_zeros() as usize).min(5);
    stats.sizes[bucket].fetch_add(1, Ordering::Relaxed);
    let what: Vec<plan::Request> = batch.iter().map(|r| r.what).collect();
    let mut flushes = vec![Flush::Data(0); what.len()];
    let planned = plan::plan(&what, platform, &mut flushes);
    flushes.truncate(planned);
    let mut ok = vec![false; flushes.len()];
    // The plan lists the data flushes before the name flushes: run each group side by side.
    let mut k = 0;
    while k < flushes.len() {
        match flushes[k] {
            Flush::Filesystem(dev) => {
                let fd = filesystems
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&dev).map(|w| Arc::clone(&w.fd)));
                ok[k] = fd.is_some_and(|fd| rustix::fs::syncfs(&*fd).is_ok());
                stats.fs_syncs.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            Flush::Data(_) | Flush::Names(_) => {
                let names = matches!(flushes[k], Flush::Names(_));
                let group: Vec<usize> = (k..flushes.len())
                    .take_while(|&j| matches!(flushes[j], Flush::Names(_)) == names)
                    .collect();
                let fds: Vec<Held> = group
                    .iter()
                    .map(|&j| match flushes[j] {
                        Flush::Data(i) | Flush::Names(i) => batch[i].fd,
                        Flush::Filesystem(_) => unreachable!("taken above"),
                    })
                    .collect();
                for (j, r) in group.iter().zip(pool.sync_all(&fds, !names)) {
                    ok[*j] = r.is_ok();
                }
                let counter = if names {
                    &stats.dir_syncs
                } else {
                    &stats.file_syncs
                };
                counter.fetch_add(group.len() as u64, Ordering::Relaxed);
                k += group.len();
            }
        }
    }
    for (i, r) in batch.iter().enumerate() {
        let result = if plan::answered(&what, &flushes, &ok, i) {
            Ok(())
        } else {
            Err(ErrorKind::Io)
        };
        r.answer.set(match result {
            Ok(()) => Answer::DONE,
            Err(_) => Answer::FAILED,
        });
    }
    plan::followers(&what, &flushes, &ok)
}

impl Committer {
    /// Starts the flush workers. `platform` says whether `syncfs` may answer a batch
    /// ([`Committer::platform`] reads it off the kernel).
    pub fn start(platform: Platform) -> Committer {
        Committer {
            queue: Arc::default(),
            pool: Arc::new(Pool::start(WORKERS)),
            platform,
            filesystems: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Runs the next batch, then gives the lead to the first request that arrived meanwhile,
    /// or gives it up.
    fn lead(&self) {
        let batch = gather(&self.queue);
        let expect = run_batch(
            batch,
            &self.stats,
            &self.pool,
            self.platform,
            &self.filesystems,
        );
        let mut q = lock(&self.queue.0);
        q.expect = expect;
        match q.waiting.first() {
            Some(next) => next.answer.set(Answer::LEAD),
            None => q.leading = false,
        }
    }

    /// This kernel's platform: `syncfs` answers batches from Linux 5.8 on, unless
    /// `MDELIVER_LMTP_GROUP_COMMIT=per-file` (for measurements) asks for the per-file way.
    pub fn platform() -> Platform {
        let release = rustix::system::uname();
        let per_file =
            std::env::var_os("MDELIVER_LMTP_GROUP_COMMIT").is_some_and(|v| v == "per-file");
        Platform {
            filesystem_flush_reports_errors: !per_file
                && plan::syncfs_reports_errors(&release.release().to_string_lossy()),
        }
    }

    /// Asks for `what` on `fd` and waits for the answer, leading the batch that runs it
    /// when no other batch runs (`fd` stays open meanwhile: it is borrowed for the whole call).
    fn flush(
        &self,
        what: plan::Request,
        fd: BorrowedFd<'_>,
        counted: &mut bool,
    ) -> Result<(), ErrorKind> {
        let answer = Arc::new(Answer {
            state: AtomicU8::new(Answer::WAIT),
            thread: std::thread::current(),
        });
        {
            let mut q = lock(&self.queue.0);
            q.waiting.push(Request {
                what,
                fd: Held(fd.as_raw_fd()),
                answer: Arc::clone(&answer),
            });
            if std::mem::take(counted) {
                q.underway -= 1;
            }
            if !q.leading {
                q.leading = true;
                answer.state.store(Answer::LEAD, Ordering::Relaxed);
            } else if q.gathering {
                self.queue.1.notify_one();
            }
        }
        loop {
            match answer.state.swap(Answer::WAIT, Ordering::Acquire) {
                Answer::LEAD => self.lead(),
                Answer::DONE => return Ok(()),
                Answer::FAILED => return Err(ErrorKind::Io),
                _ => std::thread::park(),
            }
        }
    }

    /// Counts a delivery on filesystem `dev` (through `fd`, a directory there) until
    /// [`unwatch`](Committer::unwatch), keeping a descriptor of the filesystem for `syncfs`
    /// (opened now unless one is kept already); whether it is counted.
    fn watch(&self, dev: u64, fd: impl AsFd) -> bool {
        let Ok(mut m) = self.filesystems.lock() else {
            return false;
        };
        match m.entry(dev) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().users += 1;
                true
            }
            std::collections::hash_map::Entry::Vacant(e) => match dup(fd) {
                Ok(fd) => {
                    e.insert(Watched {
                        fd: Arc::new(fd),
                        users: 1,
                        since: Instant::now(),
                    });
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// A delivery counted by [`watch`](Committer::watch) ended.
    fn unwatch(&self, dev: u64) {
        if let Ok(mut m) = self.filesystems.lock() {
            if let Some(w) = m.get_mut(&dev) {
                w.users -= 1;
                w.since = Instant::now();
            }
        }
    }

    /// Closes the descriptors of the filesystems where no delivery has been under way for
    /// [`IDLE_SECS`] (called every so often, so that an idle server does not keep them busy).
    pub fn release_idle(&self) {
        let idle = Duration::from_secs(IDLE_SECS);
        if let Ok(mut m) = self.filesystems.lock() {
            m.retain(|_, w| w.users > 0 || w.since.elapsed() < idle);
        }
    }
}

/// Filesystem ids for maildirs that could not be examined: each its own, so a batch holding
/// one is never answered by `syncfs`.
static UNKNOWN_FS: AtomicU64 = AtomicU64::new(UNKNOWN_FIRST);
const UNKNOWN_FIRST: u64 = 1 << 63;

/// A maildir whose flushes go through the [`Committer`]; everything else is the
/// [`LinuxFs`]'s own.
pub struct GroupFs {
    inner: LinuxFs,
    underway: Underway,
    known: Known,
}

/// What a [`GroupFs`] learned about its maildir's directories, kept with the maildir when the
/// server keeps it open for the next delivery ([`GroupFs::into_parts`], [`GroupFs::resume`]).
#[derive(Copy, Clone, Debug)]
pub struct Known {
    /// The filesystem holding the maildir (`new/`'s device).
    dev: u64,
    /// Each directory's inode, looked up when first flushed (root, tmp, new, cur, top).
    dirs: [Option<u64>; 5],
}

/// A delivery counted among those under way until its first flush request or its end (the
/// batch being gathered waits for it a little), and among its filesystem's until its end
/// ([`Committer::watch`]).
struct Underway {
    committer: Committer,
    counted: bool,
    /// The filesystem it is counted on.
    watched: Option<u64>,
}

impl Underway {
    /// Before the delivery writes anything: `new` is its maildir's new/, on filesystem `dev`
    /// (`None`: it could not be examined).
    fn start(committer: Committer, dev: Option<u64>, new: impl AsFd) -> Underway {
        let watched = dev.filter(|&d| committer.watch(d, &new));
        lock(&committer.queue.0).underway += 1;
        Underway {
            committer,
            counted: true,
            watched,
        }
    }
}

impl Drop for Underway {
    fn drop(&mut self) {
        if let Some(dev) = self.watched {
            self.committer.unwatch(dev);
        }
        if self.counted {
            let (queue, arrived) = &*self.committer.queue;
            let mut q = lock(queue);
            q.underway -= 1;
            if q.gathering {
                arrived.notify_one();
            }
        }
    }
}

/// A stored message whose identical copies for other recipients can be hard links to it, as
/// Dovecot stores them ([`mdeliver_core::lmtp::link`]): taken once its delivery succeeded, so
/// its data is durable.
pub struct Source {
    /// The file.
    pub file: File,
    /// Its filesystem: only a maildir there can link to it.
    pub dev: u64,
    /// Its bytes.
    pub digest: Digest32,
}

impl Source {
    /// The file `dir/name` (holding `digest`) just delivered into the maildir of `fs`.
    pub fn open(fs: &GroupFs, dir: Dir, name: &str, digest: Digest32) -> Option<Source> {
        let flags =
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(fs.inner.dirfd(dir), name, flags, rustix::fs::Mode::empty()).ok()?;
        Some(Source {
            file: File(fd),
            dev: fs.known.dev,
            digest,
        })
    }
}

impl GroupFs {
    /// Wraps a maildir opened (at `RCPT`) before any of this delivery's files was written.
    pub fn new(inner: LinuxFs, committer: Committer) -> GroupFs {
        let mut dirs = [None; 5];
        let dev = match rustix::fs::fstat(inner.dirfd(Dir::New)) {
            Ok(st) => {
                dirs[2] = Some(st.st_ino);
                st.st_dev
            }
            Err(_) => UNKNOWN_FS.fetch_add(1, Ordering::Relaxed),
        };
        GroupFs::resume(inner, committer, Known { dev, dirs })
    }

    /// Wraps a maildir kept open since an earlier delivery, with what that one learned.
    pub fn resume(inner: LinuxFs, committer: Committer, known: Known) -> GroupFs {
        let dev = (known.dev < UNKNOWN_FIRST).then_some(known.dev);
        GroupFs {
            underway: Underway::start(committer, dev, inner.dirfd(Dir::New)),
            inner,
            known,
        }
    }

    /// The maildir and what was learned about it, to keep for a later delivery.
    pub fn into_parts(self) -> (LinuxFs, Known) {
        (self.inner, self.known)
    }

    /// The filesystem holding the maildir.
    pub fn dev(&self) -> u64 {
        self.known.dev
    }

    fn dir_ino(&mut self, dir: Dir) -> Result<u64, ErrorKind> {
        let i = match dir {
            Dir::Root => 0,
            Dir::Tmp => 1,
            Dir::New => 2,
            Dir::Cur => 3,
            Dir::Top => 4,
        };
        if let Some(ino) = self.known.dirs[i] {
            return Ok(ino);
        }
        let st =
            rustix::fs::fstat(self.inner.dirfd(dir)).map_err(|e| error_kind(e, Call::Other))?;
        if st.st_dev != self.known.dev {
            // Another filesystem inside the maildir: its own flush, never this one's syncfs.
            self.known.dev = UNKNOWN_FS.fetch_add(1, Ordering::Relaxed);
        }
        self.known.dirs[i] = Some(st.st_ino);
        Ok(st.st_ino)
    }
}

impl crate::sieve::OverLinux for GroupFs {
    fn linux(&self) -> &LinuxFs {
        &self.inner
    }
}

fn dup(fd: impl AsFd) -> Result<OwnedFd, ErrorKind> {
    fd.as_fd().try_clone_to_owned().map_err(|_| ErrorKind::Io)
}

impl Fs for GroupFs {
    type File = File;
    type DirStream = <LinuxFs as Fs>::DirStream;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<File, ErrorKind> {
        self.inner.create(dir, name, exclusive)
    }
    fn create_anonymous(&mut self, dir: Dir) -> Result<File, ErrorKind> {
        self.inner.create_anonymous(dir)
    }
    fn file_id(&self, file: &File) -> Option<(u64, u64)> {
        self.inner.file_id(file)
    }
    fn write(&mut self, file: &mut File, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.inner.write(file, buf)
    }
    fn sync_file(&mut self, file: &mut File) -> Result<(), ErrorKind> {
        let what = plan::Request {
            need: Need::Data,
            fs: self.known.dev,
            dir: 0,
        };
        let u = &mut self.underway;
        u.committer.flush(what, file.as_fd(), &mut u.counted)
    }
    fn write_back(&mut self, file: &mut File) -> Result<(), ErrorKind> {
        // No flush to share: the file's own write-back, then its name's flush in a batch.
        self.inner.write_back(file)
    }
    fn close(&mut self, file: File) -> Result<(), ErrorKind> {
        self.inner.close(file)
    }
    fn link_anonymous(&mut self, file: &File, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.inner.link_anonymous(file, dir, name)
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        self.inner.link(from, to)
    }
    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        self.inner.rename(from, to, noreplace)
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.inner.unlink(dir, name)
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        self.inner.stat(dir, name)
    }
    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        let ino = self.dir_ino(dir)?;
        let what = plan::Request {
            need: Need::Names,
            fs: self.known.dev,
            dir: ino,
        };
        let u = &mut self.underway;
        u.committer
            .flush(what, self.inner.dirfd(dir).as_fd(), &mut u.counted)
    }
    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.inner.mkdir(dir)
    }
    fn open_dir(&mut self, dir: Dir) -> Result<Self::DirStream, ErrorKind> {
        self.inner.open_dir(dir)
    }
    fn stat_listed(
        &mut self,
        stream: &Self::DirStream,
        name: &str,
    ) -> Result<mdeliver_core::fs::Stat, ErrorKind> {
        self.inner.stat_listed(stream, name)
    }
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<Self::DirStream, ErrorKind> {
        self.inner.open_folder_dir(base, folder, dir)
    }
    fn read_dir(
        &mut self,
        stream: &mut Self::DirStream,
        out: &mut mdeliver_core::fs::EntryName,
    ) -> Result<bool, ErrorKind> {
        self.inner.read_dir(stream, out)
    }
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        self.inner.append(dir, name, data, p)
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.inner.read_file(dir, name, buf)
    }
    fn set_mtime(&mut self, file: &File, secs: i64) -> Result<(), ErrorKind> {
        self.inner.set_mtime(file, secs)
    }
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        self.inner.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::LinuxEnv;
    use crate::linux::OpenOptions;
    use mdeliver_core::lmtp::link::{Link, Linked};
    use mdeliver_core::{deliver, Options};

    /// Deliveries from many threads into one maildir through one committer, on both
    /// platforms: every one is stored, every flush it asked for was answered, the directory
    /// flushes of one batch were merged, and with `syncfs` no batch of two or more requests
    /// cost more than one flush.
    fn concurrent_deliveries(platform: Platform) -> Arc<Stats> {
        let dir = std::env::temp_dir().join(format!(
            "mdeliver-commit-{}-{}",
            std::process::id(),
            platform.filesystem_flush_reports_errors
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // Each file flushed on its own request (not written back before one commit, as on
        // ext4), so that the files' flushes are what is shared.
        let open = OpenOptions {
            create: true,
            sync: true,
            disabled: crate::linux::Disabled {
                ordered_commit: true,
                ..Default::default()
            },
            ..OpenOptions::default()
        };
        drop(LinuxFs::open(&dir, open).unwrap());
        let committer = Committer::start(platform);
        let threads = 16;
        std::thread::scope(|s| {
            for i in 0..threads {
                let (committer, dir) = (committer.clone(), dir.clone());
                s.spawn(move || {
                    let fs = LinuxFs::open(&dir, open).unwrap();
                    let mut fs = GroupFs::new(fs, committer);
                    let mut env = LinuxEnv::new();
                    let msg = format!("Subject: {i}\n\nbody {i}\n");
                    let mut buf = [0u8; 4096];
                    let mut src = msg.as_bytes();
                    let d =
                        deliver(&mut fs, &mut env, Options::default(), &mut src, &mut buf).unwrap();
                    assert_eq!(d.size, msg.len() as u64);
                });
            }
        });
        let stored: Vec<String> = std::fs::read_dir(dir.join("new"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(stored.len(), threads);
        for i in 0..threads {
            assert!(
                stored.contains(&format!("Subject: {i}\n\nbody {i}\n")),
                "{i}"
            );
        }
        // Every delivery counted itself out of those under way (by its flush or its end).
        let q = committer.queue.0.lock().unwrap();
        assert_eq!((q.underway, q.waiting.len(), q.leading), (0, 0, false));
        drop(q);
        let st = Arc::clone(&committer.stats);
        let requests = st.requests.load(Ordering::Relaxed);
        let dirs = st.dir_syncs.load(Ordering::Relaxed);
        // One file flush and one directory flush asked for per delivery.
        assert_eq!(requests, 2 * threads as u64);
        assert!(dirs <= threads as u64, "{}", st.summary());
        let batches = st.batches.load(Ordering::Relaxed);
        let sized: u64 = st.sizes.iter().map(|x| x.load(Ordering::Relaxed)).sum();
        assert_eq!(sized, batches);
        assert!(batches <= requests);
        std::fs::remove_dir_all(&dir).unwrap();
        st
    }

    /// A copy with the source's bytes is a link to it; one that differs anywhere (here at its
    /// last byte, or longer) and one whose source was deleted meanwhile are files of their
    /// own; all hold exactly their bytes.
    #[test]
    fn identical_copies_link_to_the_source_and_others_are_written() {
        use std::os::unix::fs::MetadataExt;
        let top = std::env::temp_dir().join(format!("mdeliver-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let open = OpenOptions {
            create: true,
            sync: true,
            ..OpenOptions::default()
        };
        let committer = Committer::start(Committer::platform());
        let msg = "Subject: same\n\nbody\n";
        let links = std::cell::Cell::new(0);
        let store = |name: &str, bytes: &str, source: Option<&Source>| {
            let dir = top.join(name);
            let fs = LinuxFs::open(&dir, open).unwrap();
            let mut fs = GroupFs::new(fs, committer.clone());
            let mut link = source.map_or_else(Link::record, |s| Link::follow(s.digest));
            let mut linked = Linked {
                fs: &mut fs,
                link: &mut link,
                source: source.map(|s| &s.file),
            };
            let mut env = LinuxEnv::new();
            let mut buf = [0u8; 4096];
            let d = deliver(
                &mut linked,
                &mut env,
                Options::default(),
                &mut bytes.as_bytes(),
                &mut buf,
            )
            .unwrap();
            links.set(links.get() + u32::from(link.linked()));
            let path = dir.join(d.dir.as_str()).join(&*d.name);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bytes, "{name}");
            let source = link
                .stored()
                .and_then(|l| Source::open(&fs, d.dir, &d.name, l));
            (source, path)
        };
        std::fs::create_dir_all(&top).unwrap();
        let (source, first) = store("a", msg, None);
        let source = source.unwrap();
        let (_, same) = store("b", msg, Some(&source));
        let (_, last_byte) = store("c", "Subject: same\n\nbodY\n", Some(&source));
        let (_, longer) = store("d", "Subject: same\n\nbody\nmore\n", Some(&source));
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&first), ino(&same));
        assert_eq!(std::fs::metadata(&first).unwrap().nlink(), 2);
        for other in [&last_byte, &longer] {
            assert_ne!(ino(&first), ino(other));
            assert_eq!(std::fs::metadata(other).unwrap().nlink(), 1);
        }
        // The source deleted by a reader (both its names): the next copy is its own file.
        std::fs::remove_file(&first).unwrap();
        std::fs::remove_file(&same).unwrap();
        let (_, after) = store("e", msg, Some(&source));
        assert_eq!(std::fs::metadata(&after).unwrap().nlink(), 1);
        assert_eq!(links.get(), 1);
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn concurrent_deliveries_share_their_flushes_per_file() {
        let st = concurrent_deliveries(Platform {
            filesystem_flush_reports_errors: false,
        });
        assert_eq!(st.fs_syncs.load(Ordering::Relaxed), 0);
        assert_eq!(st.file_syncs.load(Ordering::Relaxed), 16);
        assert!(st.dir_syncs.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn concurrent_deliveries_cost_one_flush_per_batch() {
        let st = concurrent_deliveries(Platform {
            filesystem_flush_reports_errors: true,
        });
        let batches = st.batches.load(Ordering::Relaxed);
        let lone = st.sizes[0].load(Ordering::Relaxed);
        let fs = st.fs_syncs.load(Ordering::Relaxed);
        let f = st.file_syncs.load(Ordering::Relaxed);
        let d = st.dir_syncs.load(Ordering::Relaxed);
        // One directory: every batch is one flush. A syncfs for two or more requests with a
        // file's data among them; the directory's own flush for names alone; a lone request's
        // own flush.
        assert_eq!(fs + f + d, batches, "{}", st.summary());
        assert!(fs <= batches - lone, "{}", st.summary());
    }
}
