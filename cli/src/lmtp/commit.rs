//! Group commit: many deliveries share their flushes.
//!
//! Every delivery runs the core's machine exactly as the one-shot path does (the file is
//! flushed before it is published, its directory after), through a [`GroupFs`] that hands
//! each flush to the one [`Committer`] and waits for it. The committer takes every flush that
//! is waiting, runs the file flushes of the batch side by side (the filesystem's journal
//! commits them together), then flushes each distinct directory once, and only then lets the
//! waiting deliveries go on. So a recipient's 250 is sent only when its file and directory
//! entry are as durable as the one-shot path makes them, and a batch of N deliveries costs
//! about one journal commit for the files and one per directory instead of 2N.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use mdeliver_core::fs::Stat;
use mdeliver_core::{Capabilities, Dir, ErrorKind, Fs};

use crate::linux::{error_kind, Call, File, LinuxFs};

/// The most flushes one batch takes; the rest wait for the next.
const BATCH_MAX: usize = 1024;

/// What to flush.
enum Target {
    /// A message (or index) file: `fdatasync`, as the one-shot path does.
    File(Arc<OwnedFd>),
    /// A directory: `fsync`; the key names it so a batch flushes it once.
    Dir(Arc<OwnedFd>, (PathBuf, Dir)),
}

struct Request {
    target: Target,
    done: mpsc::SyncSender<Result<(), ErrorKind>>,
}

/// Counters, for the log and the bench.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches run.
    pub batches: AtomicU64,
    /// Flush requests (files and directories) served.
    pub requests: AtomicU64,
    /// `fdatasync`/`fsync` calls made on files.
    pub file_syncs: AtomicU64,
    /// `fsync` calls made on directories (after merging a batch's requests).
    pub dir_syncs: AtomicU64,
    /// The largest batch.
    pub max_batch: AtomicU64,
    /// Batches by size: 1, 2-3, 4-7, 8-15, 16-31, 32 and more.
    pub sizes: [AtomicU64; 6],
}

impl Stats {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let b = self.batches.load(Ordering::Relaxed);
        let r = self.requests.load(Ordering::Relaxed);
        let f = self.file_syncs.load(Ordering::Relaxed);
        let d = self.dir_syncs.load(Ordering::Relaxed);
        let s: Vec<String> = self
            .sizes
            .iter()
            .map(|x| x.load(Ordering::Relaxed).to_string())
            .collect();
        format!(
            "group commit: {b} batches, {r} flush requests, {f} file syncs, {d} directory syncs, \
             {:.2} requests per batch (largest {}); batches by size 1/2-3/4-7/8-15/16-31/32+: {}",
            if b == 0 { 0.0 } else { r as f64 / b as f64 },
            self.max_batch.load(Ordering::Relaxed),
            s.join("/")
        )
    }
}

/// The flusher shared by every session.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
    /// The counters.
    pub stats: Arc<Stats>,
}

fn sync_one(fd: &OwnedFd, data_only: bool) -> Result<(), ErrorKind> {
    let r = if data_only {
        rustix::fs::fdatasync(fd)
    } else {
        rustix::fs::fsync(fd)
    };
    r.map_err(|e| error_kind(e, Call::Other))
}

/// One flush for a worker of the [`Pool`].
struct Job {
    fd: Arc<OwnedFd>,
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
                    let _ = j.done.send((j.index, sync_one(&j.fd, j.data_only)));
                });
        }
        Pool { tx }
    }

    /// Flushes every descriptor in `fds`; the results in the same order.
    fn sync_all(&self, fds: &[Arc<OwnedFd>], data_only: bool) -> Vec<Result<(), ErrorKind>> {
        if fds.len() <= 1 {
            return fds.iter().map(|fd| sync_one(fd, data_only)).collect();
        }
        let (done, results) = mpsc::channel();
        let mut out = vec![Err(ErrorKind::Io); fds.len()];
        let mut sent = 0;
        for (index, fd) in fds.iter().enumerate() {
            let job = Job {
                fd: Arc::clone(fd),
                data_only,
                index,
                done: done.clone(),
            };
            match self.tx.send(job) {
                Ok(()) => sent += 1,
                Err(_) => out[index] = sync_one(fd, data_only),
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

fn run_batch(batch: Vec<Request>, stats: &Stats, pool: &Pool) {
    let n = batch.len() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.requests.fetch_add(n, Ordering::Relaxed);
    stats.max_batch.fetch_max(n, Ordering::Relaxed);
    let bucket = (63 - n.leading_zeros() as usize).min(5);
    stats.sizes[bucket].fetch_add(1, Ordering::Relaxed);
    // Files first: a directory flush in this batch belongs to a delivery whose file was
    // flushed in an earlier batch, but keeping the order costs nothing.
    let files: Vec<Arc<OwnedFd>> = batch
        .iter()
        .filter_map(|r| match &r.target {
            Target::File(fd) => Some(Arc::clone(fd)),
            Target::Dir(..) => None,
        })
        .collect();
    let mut file_results = pool.sync_all(&files, true).into_iter();
    stats
        .file_syncs
        .fetch_add(files.len() as u64, Ordering::Relaxed);
    let mut keys: Vec<&(PathBuf, Dir)> = Vec::new();
    let mut dirs: Vec<Arc<OwnedFd>> = Vec::new();
    for r in &batch {
        if let Target::Dir(fd, key) = &r.target {
            if !keys.contains(&key) {
                keys.push(key);
                dirs.push(Arc::clone(fd));
            }
        }
    }
    let dir_results = pool.sync_all(&dirs, false);
    stats
        .dir_syncs
        .fetch_add(dirs.len() as u64, Ordering::Relaxed);
    for r in &batch {
        let result = match &r.target {
            Target::File(_) => file_results.next().unwrap_or(Err(ErrorKind::Io)),
            Target::Dir(_, key) => {
                let i = keys.iter().position(|k| *k == key).unwrap_or(0);
                dir_results.get(i).copied().unwrap_or(Err(ErrorKind::Io))
            }
        };
        let _ = r.done.send(result);
    }
}

impl Committer {
    /// Starts the flusher thread; it ends when the last clone is dropped.
    pub fn start() -> Committer {
        let (tx, rx) = mpsc::channel::<Request>();
        let stats = Arc::new(Stats::default());
        let s = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let pool = Pool::start(WORKERS);
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH_MAX {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    run_batch(batch, &s, &pool);
                }
            })
            .expect("cannot start the group-commit thread");
        Committer { tx, stats }
    }

    fn flush(&self, target: Target) -> Result<(), ErrorKind> {
        let (done, wait) = mpsc::sync_channel(1);
        self.tx
            .send(Request { target, done })
            .map_err(|_| ErrorKind::Io)?;
        wait.recv().unwrap_or(Err(ErrorKind::Io))
    }
}

/// A maildir whose flushes go through the [`Committer`]; everything else is the
/// [`LinuxFs`]'s own.
pub struct GroupFs {
    inner: LinuxFs,
    committer: Committer,
    path: PathBuf,
}

impl GroupFs {
    /// Wraps the maildir opened at `path`.
    pub fn new(inner: LinuxFs, committer: Committer, path: PathBuf) -> GroupFs {
        GroupFs {
            inner,
            committer,
            path,
        }
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
        self.committer.flush(Target::File(Arc::new(dup(&*file)?)))
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
        let fd = dup(self.inner.dirfd(dir))?;
        self.committer
            .flush(Target::Dir(Arc::new(fd), (self.path.clone(), dir)))
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
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], sync: bool) -> Result<(), ErrorKind> {
        self.inner.append(dir, name, data, sync)
    }
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.inner.read_file(dir, name, buf)
    }
    fn set_mtime(&mut self, file: &File, secs: i64) -> Result<(), ErrorKind> {
        self.inner.set_mtime(file, secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::LinuxEnv;
    use crate::linux::OpenOptions;
    use mdeliver_core::{deliver, Options};

    /// Deliveries from many threads into one maildir through one committer: every one is
    /// stored, every flush it asked for was answered, and the directory flushes of one batch
    /// were merged (never more directory syncs than directory requests).
    #[test]
    fn concurrent_deliveries_share_their_flushes() {
        let dir = std::env::temp_dir().join(format!("mdeliver-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let open = OpenOptions {
            create: true,
            sync: true,
            ..OpenOptions::default()
        };
        drop(LinuxFs::open(&dir, open).unwrap());
        let committer = Committer::start();
        let threads = 16;
        std::thread::scope(|s| {
            for i in 0..threads {
                let (committer, dir) = (committer.clone(), dir.clone());
                s.spawn(move || {
                    let fs = LinuxFs::open(&dir, open).unwrap();
                    let mut fs = GroupFs::new(fs, committer, dir.clone());
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
        assert_eq!(std::fs::read_dir(dir.join("new")).unwrap().count(), threads);
        let st = &committer.stats;
        let requests = st.requests.load(Ordering::Relaxed);
        let files = st.file_syncs.load(Ordering::Relaxed);
        let dirs = st.dir_syncs.load(Ordering::Relaxed);
        // One file flush and one directory flush asked for per delivery.
        assert_eq!(requests, 2 * threads as u64);
        assert_eq!(files, threads as u64);
        assert!(dirs <= threads as u64 && dirs >= 1, "{}", st.summary());
        let batches = st.batches.load(Ordering::Relaxed);
        let sized: u64 = st.sizes.iter().map(|x| x.load(Ordering::Relaxed)).sum();
        assert_eq!(sized, batches);
        assert!(batches <= requests);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
