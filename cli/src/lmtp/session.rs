//! One LMTP session: lines in, the core's [`Session`] decides, replies out; after `DATA` the
//! message is decoded (into memory up to [`IN_MEMORY`] bytes, beyond that into an unnamed spool
//! file) and delivered to every recipient side by side, each through the core's MTA delivery
//! with its own envelope.
//!
//! Replies are written into a buffer that is sent whenever no further input is waiting, so a
//! pipelining client gets its replies in one write and in order.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::LocalKey;
use std::time::Instant;

use mdeliver_core::lmtp::commit;
use mdeliver_core::lmtp::data::Decoder;
use mdeliver_core::lmtp::link::{Link, Linked};
use mdeliver_core::lmtp::reply::{self, failure_class, FailurePolicy, Fixed, Reply};
use mdeliver_core::lmtp::reuse::RootStamp;
use mdeliver_core::lmtp::session::{Action, Session};
use mdeliver_core::lmtp::LINE_MAX;
use mdeliver_core::mda::HEAD_MAX;
use mdeliver_core::report::rfc3463::{self as rfc3463, Class, Failed};
use mdeliver_core::ErrorKind;
use rustix::fs::{self as rfs, Mode, OFlags, CWD};

use super::commit::{GroupFs, Known, Source};
use super::conn::{stop_of, Conn, Reader, Stop};
use super::kept;
use super::owner::Owner;
use super::{DeliveredTo, Server};
use crate::env::LinuxEnv;
use crate::input::Input;
use crate::linux::{LinuxFs, OpenOptions};
use crate::sieve::{SieveOptions, SENDMAIL};
use mdeliver_driver::args::Args;
use mdeliver_driver::envelope::Settings;
use mdeliver_driver::envelope::{self, Stored};
use mdeliver_driver::exit;
use mdeliver_driver::mail_args::MailArgs;
use mdeliver_driver::mta_args::QuotaFull;
use mdeliver_driver::report::{Create, Failure};
use mdeliver_driver::status::Output;

/// The read buffer and the decode buffer: per-session memory does not grow with the message.
const BUF: usize = 64 * 1024;

/// A message up to this size is held in memory, not spooled to a file; a larger one is
/// spooled, so what a session holds of a message is bounded whatever its size.
const IN_MEMORY: usize = 64 * 1024;

thread_local! {
    /// The decode buffer of this thread's sessions.
    static DECODE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The delivery buffer of this thread's deliveries.
    static DELIVER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// This thread's deliveries' environment (its random bytes serve many deliveries).
    static ENV: Cell<Option<LinuxEnv>> = const { Cell::new(None) };
    /// The buffer this thread's deliveries read a message's head into.
    static HEAD: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer of this thread's, kept across its messages and sessions: allocating and freeing
/// 64 KiB buffers for each message had the allocator give the memory back to the kernel and
/// fault it in again every time.
struct Scratch {
    key: &'static LocalKey<Cell<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Scratch {
    fn take(key: &'static LocalKey<Cell<Vec<u8>>>, len: usize) -> Scratch {
        let mut buf = key.take();
        buf.resize(len, 0);
        Scratch { key, buf }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.key.set(std::mem::take(&mut self.buf));
    }
}

/// Recipients delivered side by side within one message.
const PARALLEL: usize = 8;

/// An accepted recipient.
struct Rcpt {
    /// The address as the client wrote it (`Delivered-To:`).
    address: String,
    maildir: PathBuf,
    /// Opened at `RCPT` (or kept open since an earlier delivery), so a missing maildir is
    /// refused there.
    fs: LinuxFs,
    /// What an earlier delivery learned about it, when it was kept open.
    known: Option<Known>,
    /// Its root's stamp before it was opened, and the mount table's generation, under which it
    /// may be kept for the next one.
    stamp: Option<(RootStamp, kept::Generation)>,
    /// Who writes its files (a root server: the maildir's owner).
    owner: Owner,
    /// Its Sieve script (`--sieve`, `--sieve-dovecot`), when it has one.
    script: Option<std::path::PathBuf>,
}

enum Line {
    Full,
    TooLong,
    Eof,
}

/// Reads one line (up to LF) into `line`; a line over [`LINE_MAX`] is consumed and dropped.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if !too_long && line.len() + n <= LINE_MAX {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        r.consume(n);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Full });
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Serves one connection to its end.
pub fn serve(conn: Conn, srv: &Server) {
    let end = Instant::now() + std::time::Duration::from_secs(srv.args.session_timeout);
    let mut out = BufWriter::with_capacity(16 * 1024, conn.writer());
    let reader = Reader::new(&conn, srv.idle(), end, srv.shutdown.clone());
    let mut input = BufReader::with_capacity(BUF, reader);
    let mut session = Session::new(srv.args.max_size);
    let mut line = Vec::with_capacity(LINE_MAX);
    let mut sender: Vec<u8> = Vec::new();
    let mut rcpts: Vec<Rcpt> = Vec::new();
    let mut decoded = Scratch::take(&DECODE, BUF);
    let _ = write!(out, "{}", Reply::Greeting(&srv.host));
    loop {
        if input.buffer().is_empty() && out.flush().is_err() {
            return abandon(out);
        }
        let action = match read_line(&mut input, &mut line) {
            Ok(Line::Full) => session.command(trim_eol(&line)),
            Ok(Line::TooLong) => session.line_too_long(),
            Ok(Line::Eof) => break,
            Err(e) => {
                let f = match stop_of(&e) {
                    Some(Stop::Shutdown) => Fixed::ShuttingDown,
                    Some(Stop::Timeout) => Fixed::Timeout,
                    None => break,
                };
                let _ = write!(out, "{}", Reply::Fixed(f));
                break;
            }
        };
        let reply = match action {
            Action::Reply(r) => r,
            Action::Lhlo => Reply::Lhlo {
                host: &srv.host,
                max_size: srv.args.max_size,
            },
            Action::Mail(from) => {
                sender = from.to_vec();
                Reply::Fixed(Fixed::SenderOk)
            }
            Action::Rcpt { address, recipient } => {
                let address = String::from_utf8_lossy(address).into_owned();
                match srv.routes.maildir(&recipient) {
                    None => Reply::Fixed(Fixed::UnknownUser),
                    Some(maildir) => match srv.open_as(&address, &maildir) {
                        Ok(opened) => {
                            let script = super::Routes::script(&srv.args, &recipient, &maildir);
                            rcpts.push(Rcpt {
                                address,
                                maildir,
                                script,
                                ..opened
                            });
                            session.accepted();
                            Reply::Fixed(Fixed::RecipientOk)
                        }
                        Err(f) => {
                            if write!(out, "{}", srv.failed(&address, &maildir, &f)).is_err() {
                                return abandon(out);
                            }
                            continue;
                        }
                    },
                }
            }
            Action::Data => {
                let _ = write!(out, "{}", Reply::Fixed(Fixed::SendData));
                if out.flush().is_err() {
                    return abandon(out);
                }
                input.get_mut().watch_shutdown = false;
                let received = receive(&mut input, srv, &mut decoded.buf);
                input.get_mut().watch_shutdown = true;
                let all = std::mem::take(&mut rcpts);
                let ended = Instant::now();
                match received {
                    Received::Spooled(spool) => {
                        if deliver_all(srv, &sender, all, &spool, &mut out).is_err() {
                            return abandon(out);
                        }
                    }
                    Received::Refused(reply) => {
                        for _ in &all {
                            let _ = write!(out, "{reply}");
                        }
                        if out.flush().is_err() {
                            return abandon(out);
                        }
                    }
                    // A client silent for the idle timeout inside the message is told so (421),
                    // like one silent between commands.
                    Received::Ended(Some(Stop::Timeout)) => {
                        let _ = write!(out, "{}", Reply::Fixed(Fixed::Timeout));
                        break;
                    }
                    Received::Ended(_) => {
                        let _ = write!(out, "{}", Reply::Fixed(Fixed::Truncated));
                        break;
                    }
                }
                srv.committer.stats.replied(ended.elapsed());
                continue;
            }
        };
        // A reply that cannot be written (the client stopped reading for the idle timeout:
        // the socket's send timeout) ends the session.
        if write!(out, "{reply}").is_err() {
            return abandon(out);
        }
        if !session.in_transaction() {
            rcpts.clear();
        }
        if reply.closes() {
            break;
        }
    }
    let _ = out.flush();
}

/// Ends a session whose replies cannot be written (the client stopped reading: the socket's
/// send timeout ran out): what is buffered is dropped, not written again (which would wait
/// another timeout).
fn abandon<W: Write>(out: BufWriter<W>) {
    let _ = out.into_parts();
}

/// A received message, decoded.
enum Spool {
    Memory(Arc<[u8]>),
    /// In an unnamed file.
    File(OwnedFd),
}

impl Spool {
    /// A reader of the message from its start.
    fn input(&self) -> Result<Input, ErrorKind> {
        match self {
            Spool::Memory(bytes) => Ok(Input::bytes(Arc::clone(bytes))),
            Spool::File(fd) => fd
                .try_clone()
                .map(Input::delivered)
                .map_err(|_| ErrorKind::Io),
        }
    }
}

enum Received {
    /// The whole message.
    Spooled(Spool),
    /// Every recipient gets this reply (too big, spool failure).
    Refused(Reply<'static>),
    /// The connection ended (or timed out: the [`Stop`]) inside the message.
    Ended(Option<Stop>),
}

static SPOOL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An unnamed file in the spool directory (a named one, removed at once, where the filesystem
/// has no `O_TMPFILE`).
fn spool_file(dir: &std::path::Path) -> Result<OwnedFd, ErrorKind> {
    let kind = |e| crate::linux::error_kind(e, crate::linux::Call::Other);
    let mode = Mode::RUSR | Mode::WUSR;
    match rfs::openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        mode,
    ) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
        }
        Err(e) => return Err(kind(e)),
    }
    let name = dir.join(format!(
        ".mdeliver-lmtp.{}.{}",
        std::process::id(),
        SPOOL_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(CWD, &name, flags, mode).map_err(kind)?;
    rfs::unlinkat(CWD, &name, rfs::AtFlags::empty()).map_err(kind)?;
    Ok(fd)
}

/// Decodes the message from `input` (through `buf`) into memory, or past [`IN_MEMORY`] bytes
/// into a spool file.
fn receive(input: &mut impl BufRead, srv: &Server, buf: &mut [u8]) -> Received {
    let mut dec = Decoder::new(srv.args.max_size);
    let mut memory = Vec::new();
    let mut spool: Option<Result<File, ErrorKind>> = None;
    loop {
        let data = match input.fill_buf() {
            Ok([]) => return Received::Ended(None),
            Err(e) => return Received::Ended(stop_of(&e)),
            Ok(d) => d,
        };
        let d = dec.decode(data, buf);
        input.consume(d.consumed);
        let produced = &buf[..d.produced];
        if spool.is_none() && memory.len() + produced.len() > IN_MEMORY && !dec.too_big() {
            // The spool is the server's.
            srv.owners.leave();
            spool = Some(spool_file(&srv.spool).map(File::from));
        }
        match &mut spool {
            None => memory.extend_from_slice(produced),
            Some(Ok(f)) => {
                let written = f.write_all(&memory).and_then(|()| f.write_all(produced));
                memory = Vec::new();
                if let Err(e) = written {
                    spool = Some(Err(crate::linux::io_error_kind(&e)));
                }
            }
            Some(Err(_)) => {}
        }
        if d.end {
            break;
        }
    }
    if dec.too_big() {
        return Received::Refused(Reply::Fixed(Fixed::TooBig));
    }
    match spool {
        None => Received::Spooled(Spool::Memory(memory.into())),
        Some(Ok(f)) => Received::Spooled(Spool::File(f.into())),
        Some(Err(kind)) => {
            log!(
                "mdeliver lmtp: {}: spooling the message: {}; the MTA will retry",
                srv.spool.display(),
                kind.describe()
            );
            Received::Refused(Reply::Delivery(rfc3463::status(
                Failed::Delivery(kind),
                Class::Transient,
                None,
            )))
        }
    }
}

/// Delivers to every recipient (up to [`PARALLEL`] side by side) and sends each reply as soon
/// as it and every earlier one is known ([`commit::sendable`]): in `RCPT` order, streamed.
/// An error is the connection's.
fn deliver_all(
    srv: &Server,
    sender: &[u8],
    rcpts: Vec<Rcpt>,
    spool: &Spool,
    out: &mut impl Write,
) -> io::Result<()> {
    let n = rcpts.len();
    let mut rcpts = rcpts.into_iter();
    let mut sent = 0;
    let mut source = None;
    // Whose the first copy is: only their copies may become links to it.
    let first_owner = rcpts.as_slice().first().map(|r| owner_uid(&r.owner));
    if n == 1 || srv.args.delivered_to == DeliveredTo::None {
        // One recipient (the common case): no thread to start. Identical copies: the first
        // one alone, then the others as hard links to it.
        if let Some(r) = rcpts.next() {
            let (reply, stored) = srv.deliver(sender, r, spool, None, n > 1);
            out.write_all(reply.as_bytes())?;
            out.flush()?;
            source = stored.map(Arc::new);
            sent = 1;
        }
    }
    let work: Vec<Mutex<Option<Rcpt>>> = rcpts.map(|r| Mutex::new(Some(r))).collect();
    let (n, first) = (work.len(), sent);
    let source = source.as_ref();
    let next = AtomicUsize::new(0);
    let mut replies: Vec<Option<String>> = vec![None; n];
    let mut done = vec![false; n];
    let mut sent = 0;
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    std::thread::scope(|s| -> io::Result<()> {
        for _ in 0..n.min(PARALLEL) {
            let (tx, work, next) = (tx.clone(), &work, &next);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = work.get(i).and_then(|w| w.lock().ok()?.take()) else {
                    return;
                };
                let link = source.filter(|_| first_owner == Some(owner_uid(&r.owner)));
                let (reply, _) = srv.deliver(sender, r, spool, link.cloned(), false);
                if tx.send((i, reply)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        while sent < n {
            let (i, reply) = match rx.recv() {
                Ok(x) => x,
                // A delivery thread panicked (a bug): the MTA retries the recipients left.
                Err(_) => break,
            };
            replies[i] = Some(reply);
            done[i] = true;
            let ready = commit::sendable(&done, sent);
            for r in &mut replies[sent..sent + ready] {
                out.write_all(r.take().unwrap_or_default().as_bytes())?;
            }
            sent += ready;
            if ready > 0 {
                out.flush()?;
            }
        }
        Ok(())
    })?;
    let transient = || {
        Reply::Delivery(rfc3463::status(
            Failed::Delivery(ErrorKind::Io),
            Class::Transient,
            None,
        ))
        .to_string()
    };
    for _ in first + sent..first + n {
        out.write_all(transient().as_bytes())?;
    }
    out.flush()
}

/// The uid a recipient's files are written as (`None`: the server's own).
fn owner_uid(owner: &Owner) -> Option<u32> {
    owner.as_ref().map(|id| id.uid.as_raw())
}

impl Server {
    /// Finds who writes `maildir` and opens (with `-c`, creates) it as them, or takes it
    /// kept open since an earlier delivery when its root is unchanged; the failure is logged
    /// with its cause. Its address, path and script are left for the caller.
    fn open_as(&self, address: &str, maildir: &Path) -> Result<Rcpt, Failure> {
        let fail = |kind, why: String| {
            log!("mdeliver lmtp: <{address}>: {}: {why}", maildir.display());
            Failure::Open {
                kind,
                part: mdeliver_core::Dir::Root,
                create: Create::of(self.args.create, false),
            }
        };
        // A thread that writes as some maildir's owner already (it stays so after a
        // delivery), for a maildir of that same owner (a site whose maildirs share one): the
        // root's stat as that owner finds the owner and is the stamp, and nothing switches.
        let same_owner = self.owners.current().and_then(|id| {
            let st = rustix::fs::stat(maildir).ok()?;
            let owner = self.owners.known_owner(st.st_uid, st.st_gid)?;
            Arc::ptr_eq(&owner, &id).then_some((Some(owner), Some(st)))
        });
        let (owner, st) = match same_owner {
            Some(found) => found,
            None => {
                // The root by path as the server, before anything is opened: its owner (a
                // failure is the owner look-up's to report, or the open's).
                self.owners.leave();
                let st = rustix::fs::stat(maildir).ok();
                let ids = st.as_ref().map(|s| (s.st_uid, s.st_gid));
                let owner = self
                    .owners
                    .of(maildir, ids)
                    .map_err(|(k, why)| fail(k, why))?;
                self.owners
                    .enter(&owner)
                    .map_err(|why| fail(ErrorKind::Io, why))?;
                // The stamp a kept maildir must match, taken as the identity that delivers:
                // a directory above the maildir that it can no longer pass stops delivery,
                // as it stops an open.
                let st = match owner {
                    Some(_) => rustix::fs::stat(maildir).ok(),
                    None => st,
                };
                (owner, st)
            }
        };
        let stamp = st.as_ref().map(kept::stamp);
        let (taken, generation) = self.kept.take(maildir, stamp.as_ref());
        let rcpt = |fs, known| Rcpt {
            address: String::new(),
            maildir: PathBuf::new(),
            fs,
            known,
            stamp: stamp.map(|s| (s, generation)),
            owner: owner.clone(),
            script: None,
        };
        match taken {
            Some(open) => Ok(rcpt(open.fs, Some(open.known))),
            // Out of descriptors: the maildirs kept open give theirs back, and it is tried
            // once more.
            None => match self.open(maildir) {
                Err(f) if f.kind() == ErrorKind::Resources && self.kept.close_all() => {
                    Ok(rcpt(self.open(maildir)?, None))
                }
                r => Ok(rcpt(r?, None)),
            },
        }
    }

    /// Opens (with `-c`, creates) a recipient's maildir.
    fn open(&self, maildir: &std::path::Path) -> Result<LinuxFs, Failure> {
        let open = OpenOptions {
            create: self.args.create,
            sync: !self.args.no_fsync,
            disabled: self.disabled,
            keep_readable: false,
            folder: false,
            create_parents: self.args.create_parents,
            strategy: self.knobs.strategy,
            probe_rename: true,
        };
        LinuxFs::open(maildir, open).map_err(|(kind, part)| Failure::Open {
            kind,
            part,
            create: Create::of(self.args.create, false),
        })
    }

    /// The reply for a recipient whose delivery failed, and its log line.
    fn failed(&self, address: &str, maildir: &std::path::Path, f: &Failure) -> String {
        let policy = FailurePolicy {
            strict: self.args.strict_exit,
            quota_bounces: self.args.quota_full == QuotaFull::Bounce,
        };
        let class = failure_class(f.kind(), policy);
        let reply = Reply::Delivery(rfc3463::status(
            Failed::Delivery(f.kind()),
            class,
            Some(address),
        ));
        log!(
            "mdeliver lmtp: <{address}>: {}: {f} ({})",
            maildir.display(),
            trim_eol(reply.to_string().as_bytes()).escape_ascii()
        );
        reply.to_string()
    }

    /// Delivers the spooled message to one recipient through its Sieve script, in this
    /// process: the one-shot `mdeliver --sieve` delivery ([`crate::sieve::filter`]: the same
    /// exactly-once unit, redirects and vacation through sendmail, reject) on the spool, its
    /// flushes in the group commit; its status line becomes the reply. `None`: the script is
    /// gone since `RCPT`, and the message is delivered without it.
    fn deliver_sieve(
        &self,
        settings: &Settings,
        r: &Rcpt,
        script: &Path,
        spool: &Spool,
    ) -> Option<String> {
        let args = Args {
            maildirs: vec![r.maildir.clone()],
            create: self.args.create,
            create_parents: self.args.create_parents,
            verbose: self.args.verbose,
            input: None,
            no_fsync: self.args.no_fsync,
            strict_exit: self.args.strict_exit,
            host: Some(self.host.clone()),
        };
        let mail = MailArgs::default();
        let sieve = SieveOptions {
            script: script.to_owned(),
            sendmail: self
                .args
                .sendmail
                .clone()
                .unwrap_or_else(|| SENDMAIL.into()),
            sendmail_as: r.owner.as_ref().map(|id| {
                let groups = id.groups.iter().map(|g| g.as_raw()).collect();
                (id.uid.as_raw(), id.gid.as_raw(), groups)
            }),
        };
        let mut a = crate::adapter::Linux::new(&args, &mail, self.disabled, false, self.knobs);
        let wrap = |fs| GroupFs::new(fs, self.committer.clone());
        let input = || spool.input().map_err(|_| exit::TEMPFAIL);
        let mut out = Output::default();
        let code = crate::sieve::filter(
            &mut a, &args, &mail, settings, &sieve, input, &wrap, &mut out,
        )?;
        let (status, lines) = out.into_parts();
        // Its notes and warnings (standard output is a one-shot run's own: left out).
        for (_, line) in lines.iter().filter(|(to_err, _)| *to_err) {
            let line = line.strip_prefix("mdeliver: ").unwrap_or(line);
            log!("mdeliver lmtp: <{}>: {line}", r.address);
        }
        Some(match status {
            None if code == exit::OK => {
                if self.args.verbose >= 1 {
                    log!(
                        "mdeliver lmtp: <{}>: delivered through {}",
                        r.address,
                        script.display()
                    );
                }
                Reply::Fixed(Fixed::Delivered).to_string()
            }
            // Its RFC 3463 status (5.x.x only when it bounces), with the basic code the other
            // recipients' failures get.
            Some(s) => format!("{} {s}\r\n", reply::basic_of_line(&s).unwrap_or(451)),
            None => format!("451 4.3.0 <{}> the Sieve delivery failed\r\n", r.address),
        })
    }

    /// Delivers the spooled message to one recipient (with `link`, as a hard link to that
    /// identical copy where it can); gives its reply and, with `keep`, the stored copy.
    fn deliver(
        &self,
        sender: &[u8],
        r: Rcpt,
        spool: &Spool,
        link: Option<Arc<Source>>,
        keep: bool,
    ) -> (String, Option<Source>) {
        // Its files are its maildir's owner's (the thread stays so: see `owner`).
        if let Err(why) = self.owners.enter(&r.owner) {
            log!("mdeliver lmtp: <{}>: {why}", r.address);
            let f = Failure::Deliver(mdeliver_core::Error::new(
                ErrorKind::Io,
                mdeliver_core::Phase::Open,
            ));
            return (self.failed(&r.address, &r.maildir, &f), None);
        }
        let mut settings = self.settings.clone();
        settings.return_path = Some(sender.to_vec());
        settings.delivered_to = match self.args.delivered_to {
            DeliveredTo::Rcpt => Some(r.address.clone().into_bytes()),
            DeliveredTo::None => None,
        };
        // Postfix's LMTP client adds no Delivered-To: one of ours on top is a loop.
        settings.unstamped = true;
        if let Some(script) = &r.script {
            if let Some(reply) = self.deliver_sieve(&settings, &r, script, spool) {
                return (reply, None);
            }
        }
        let source = match spool.input() {
            Ok(input) => input,
            Err(_) => {
                let f = Failure::Deliver(mdeliver_core::Error::new(
                    ErrorKind::Io,
                    mdeliver_core::Phase::Read,
                ));
                return (self.failed(&r.address, &r.maildir, &f), None);
            }
        };
        let mut source_fd = source;
        // The strategy this filesystem calls for (the locked one on NFS), as the one-shot
        // path chooses it.
        let mut opts = r.fs.observed().choice.options(self.opts);
        if let Some(secs) = self.knobs.lock_stale_secs {
            opts.lock_stale_secs = secs;
        }
        let mut fs = match r.known {
            Some(known) => GroupFs::resume(r.fs, self.committer.clone(), known),
            None => GroupFs::new(r.fs, self.committer.clone()),
        };
        let mut env = ENV.take().unwrap_or_else(|| self.env.clone());
        let mut scratch = Scratch::take(&DELIVER, BUF.max(HEAD_MAX));
        let mut head = Scratch::take(&HEAD, HEAD_MAX);
        let bufs = (&mut head.buf, &mut scratch.buf[..]);
        // Identical copies (the core's `lmtp::link`): the first one's bytes followed, the
        // later ones linked to it where they are identical and on its filesystem.
        let link = link.filter(|s| s.dev == fs.dev());
        let mut follow = link
            .as_ref()
            .map_or_else(Link::record, |s| Link::follow(s.digest));
        let stored = if keep || link.is_some() {
            let source = link.as_ref().map(|s| &s.file);
            let (fs, source_fd) = (&mut fs, &mut source_fd);
            let linked = Linked {
                fs,
                link: &mut follow,
                source,
            };
            envelope::deliver(linked, &mut env, opts, &settings, source_fd, true, bufs).1
        } else {
            let (back, stored) =
                envelope::deliver(fs, &mut env, opts, &settings, &mut source_fd, true, bufs);
            fs = back;
            stored
        };
        ENV.set(Some(env));
        if follow.linked() {
            self.committer.stats.links.fetch_add(1, Ordering::Relaxed);
        }
        match stored {
            Ok(s) => {
                if self.args.verbose >= 1 {
                    let what = match &s {
                        Stored::Delivered(d) => {
                            format!(
                                "delivered {}/{}/{}",
                                r.maildir.display(),
                                d.dir.as_str(),
                                &*d.name
                            )
                        }
                        Stored::Duplicate { name, .. } => {
                            format!("duplicate suppressed (stored earlier as {})", &**name)
                        }
                    };
                    log!("mdeliver lmtp: <{}>: {what}", r.address);
                }
                let source = match &s {
                    Stored::Delivered(d) if keep => follow
                        .stored()
                        .and_then(|digest| Source::open(&fs, d.dir, &d.name, digest)),
                    _ => None,
                };
                // Kept open for the next delivery there, where it may be.
                if let Some(stamp) = r.stamp {
                    let (fs, known) = fs.into_parts();
                    self.kept.put(r.maildir, stamp, kept::Open { fs, known });
                }
                (Reply::Fixed(Fixed::Delivered).to_string(), source)
            }
            Err(f) => (self.failed(&r.address, &r.maildir, &f), None),
        }
    }
}
