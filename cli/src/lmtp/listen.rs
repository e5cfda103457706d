//! Listening: the sockets given with `--listen` or by systemd (`LISTEN_FDS`), one thread per
//! session up to `--max-sessions`, each waiting for its next connection itself ([`Threads`]),
//! and an orderly stop on SIGTERM, SIGINT or SIGHUP: no new connections, every session finishes its
//! message in flight and gets `421 4.3.2`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdeliver_core::lmtp::reply::{Fixed, Reply};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::sockopt::Timeout;

use super::conn::Conn;
use super::{session, Server};
use mdeliver_driver::exit;

enum Listener {
    /// With the path to remove at exit (`None`: systemd's socket).
    Unix(UnixListener, Option<Bound>),
    Tcp(TcpListener),
}

/// A socket file this server made: removed at exit only while it is still that file (another
/// server may have replaced it since).
struct Bound {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Bound {
    fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == (self.dev, self.ino) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Listener {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Unix(u, _) => u.as_fd(),
            Listener::Tcp(t) => t.as_fd(),
        }
    }

    /// Accepts a connection (blocking, in its own mode: the accepted socket always blocks).
    fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
        }
    }
}

fn bind(spec: &str, mode: u32) -> Result<Listener, String> {
    if let Some(path) = spec.strip_prefix("unix:") {
        use std::os::unix::fs::MetadataExt;
        let path = PathBuf::from(path);
        // A socket left by an earlier run (nothing accepts on it) is replaced; one a running
        // server listens on, and anything that is not a socket, are not touched.
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.file_type().is_socket() {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(_) => {
                        return Err(format!(
                            "--listen {spec}: another server is listening on it (stop it first)"
                        ))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        let _ = std::fs::remove_file(&path);
                    }
                    Err(e) => return Err(format!("--listen {spec}: cannot listen: {e}")),
                }
            }
        }
        let l = UnixListener::bind(&path)
            .map_err(|e| format!("--listen {spec}: cannot listen: {e}"))?;
        let m = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("--listen {spec}: cannot listen: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("--listen {spec}: cannot set the mode: {e}"))?;
        let bound = Bound {
            path,
            dev: m.dev(),
            ino: m.ino(),
        };
        return Ok(Listener::Unix(l, Some(bound)));
    }
    let addrs: Vec<SocketAddr> = if spec.bytes().all(|b| b.is_ascii_digit()) {
        vec![SocketAddr::from((
            [127, 0, 0, 1],
            spec.parse::<u16>()
                .map_err(|e| format!("--listen {spec}: {e}"))?,
        ))]
    } else {
        spec.to_socket_addrs()
            .map_err(|e| format!("--listen {spec}: expected unix:PATH, HOST:PORT or PORT: {e}"))?
            .collect()
    };
    TcpListener::bind(&addrs[..])
        .map(Listener::Tcp)
        .map_err(|e| format!("--listen {spec}: cannot listen: {e}"))
}

fn activated() -> Result<Vec<Listener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        if let Ok(Some(l)) = fds.take_tcp_listener(i) {
            out.push(Listener::Tcp(l));
        } else if let Ok(Some(l)) = fds.take_unix_listener(i) {
            out.push(Listener::Unix(l, None));
        } else {
            return Err(format!(
                "LISTEN_FDS: descriptor {} is not a listening TCP or unix stream socket",
                i + 3
            ));
        }
    }
    Ok(out)
}

/// Serves until a signal (or, on standard input, until the session ends).
pub fn serve(srv: Server) -> ExitCode {
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(sig, srv.shutdown.clone()) {
            log!("mdeliver lmtp: cannot handle signal {sig}: {e}");
            return ExitCode::from(exit::TEMPFAIL);
        }
    }
    let mut listeners = match activated() {
        Ok(l) => l,
        Err(m) => {
            log!("mdeliver lmtp: {m}");
            return ExitCode::from(exit::TEMPFAIL);
        }
    };
    for spec in &srv.args.listen {
        match bind(spec, srv.args.socket_mode) {
            Ok(l) => listeners.push(l),
            Err(m) => {
                log!("mdeliver lmtp: {m}");
                return ExitCode::from(exit::TEMPFAIL);
            }
        }
    }
    // The sockets are bound (a privileged port or directory is fine); now the identity that
    // writes the mail. Without --user, a root server writes each recipient's files as its
    // maildir's owner (`owner`).
    if let Some(user) = &srv.args.user {
        if let Err(r) = crate::privilege::become_owner(Some(user), &[]) {
            log!("mdeliver lmtp: {}", r.message(&[]));
            return ExitCode::from(exit::TEMPFAIL);
        }
    }
    if listeners.is_empty() {
        session::serve(Conn::Stdio(std::io::stdin()), &srv);
        finish(&srv);
        return ExitCode::from(exit::OK);
    }
    let srv = Arc::new(srv);
    let single = listeners.len() == 1;
    for l in &listeners {
        // One socket: waiting threads block in `accept` (the kernel wakes one of them per
        // connection), with a timeout to notice a signal. Several: `poll`, then a
        // non-blocking `accept`, which another thread may have won.
        let fd = l.fd();
        let set = if single {
            rustix::net::sockopt::set_socket_timeout(fd, Timeout::Recv, Some(TICK))
        } else {
            rustix::io::ioctl_fionbio(fd, true)
        };
        if let Err(e) = set {
            log!("mdeliver lmtp: cannot set up a listening socket: {e}");
            return ExitCode::from(exit::TEMPFAIL);
        }
    }
    let threads = Arc::new(Threads {
        listeners,
        srv: Arc::clone(&srv),
        waiting: AtomicUsize::new(0),
        active: Arc::new(AtomicUsize::new(0)),
        handles: Mutex::new(Vec::new()),
    });
    Threads::start(&threads);
    while !srv.shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        // Nothing held open long for nothing: an administrator can unmount a filesystem
        // a few seconds after its last delivery.
        srv.kept.expire();
        srv.committer.release_idle();
    }
    // No new connections; the sessions see the flag between commands.
    for l in &threads.listeners {
        if let Listener::Unix(_, Some(bound)) = l {
            bound.remove();
        }
    }
    loop {
        let handles =
            std::mem::take(&mut *threads.handles.lock().unwrap_or_else(|e| e.into_inner()));
        if handles.is_empty() {
            break;
        }
        for t in handles {
            let _ = t.join();
        }
    }
    finish(&srv);
    ExitCode::from(exit::OK)
}

/// How often a waiting thread looks at the shutdown flag.
const TICK: Duration = Duration::from_millis(500);

/// How long a session thread whose session ended waits for the next connection before it
/// ends, unless it is the last one waiting.
const IDLE_KEEP: Duration = Duration::from_secs(30);

/// The session threads. Each waits for a connection itself, serves it, and waits again, so a
/// client that opens a connection for every message (Postfix's `smtp-source -L`, an MTA under
/// light load) is served with no thread started and no hand-over between threads. A thread
/// that takes the last waiting place starts another, so one always waits: at most
/// `--max-sessions` serve, and one more answers connections over the cap with 421.
struct Threads {
    listeners: Vec<Listener>,
    srv: Arc<Server>,
    /// Threads waiting for a connection.
    waiting: AtomicUsize,
    /// Sessions being served.
    active: Arc<AtomicUsize>,
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Threads {
    /// Starts a thread that waits for connections.
    fn start(this: &Arc<Threads>) {
        this.waiting.fetch_add(1, Ordering::AcqRel);
        let t = Arc::clone(this);
        match std::thread::Builder::new()
            .name("lmtp-session".into())
            .spawn(move || t.run())
        {
            Ok(h) => {
                let mut handles = this.handles.lock().unwrap_or_else(|e| e.into_inner());
                handles.retain(|h| !h.is_finished());
                handles.push(h);
            }
            Err(e) => {
                this.waiting.fetch_sub(1, Ordering::AcqRel);
                log!("mdeliver lmtp: cannot start a session: {e}");
            }
        }
    }

    /// Waits for connections and serves them, until a signal or [`IDLE_KEEP`] idle.
    fn run(self: Arc<Threads>) {
        let mut idle_since = Instant::now();
        loop {
            let shutdown = self.srv.shutdown.load(Ordering::Relaxed);
            // Leaves when idle for long, but never as the last one waiting.
            let leave = shutdown
                || (idle_since.elapsed() >= IDLE_KEEP
                    && self
                        .waiting
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                            (w > 1).then(|| w - 1)
                        })
                        .is_ok());
            if leave {
                if shutdown {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                }
                return;
            }
            let Some(conn) = self.accept() else { continue };
            // A connection that came as the server began to stop is not served.
            let refusal = if self.srv.shutdown.load(Ordering::Relaxed) {
                Some(Fixed::ShuttingDown)
            } else if self.active.load(Ordering::Relaxed) >= self.srv.args.max_sessions {
                Some(Fixed::TooManySessions)
            } else {
                None
            };
            if let Some(f) = refusal {
                let _ = write!(conn.writer(), "{}", Reply::Fixed(f));
                continue;
            }
            // Counted from here; given back when its session ends, even if it panics.
            let slot = Slot::take(&self.active);
            if self.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
                Threads::start(&self);
            }
            session::serve(conn, &self.srv);
            drop(slot);
            self.waiting.fetch_add(1, Ordering::AcqRel);
            idle_since = Instant::now();
        }
    }

    /// The next connection, or `None` after about [`TICK`] without one.
    fn accept(&self) -> Option<Conn> {
        if let [l] = &self.listeners[..] {
            return self.accepted(l.accept());
        }
        let mut fds: Vec<PollFd<'_>> = self
            .listeners
            .iter()
            .map(|l| PollFd::from_borrowed_fd(l.fd(), PollFlags::IN))
            .collect();
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as i64,
        };
        match poll(&mut fds, Some(&tick)) {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        let mut ready = self.listeners.iter().zip(ready).filter(|(_, r)| *r);
        // Another waiting thread may take it first: then there is nothing to accept.
        ready.find_map(|(l, _)| self.accepted(l.accept()))
    }

    /// The connection `r` accepted. Out of descriptors (the connection stays queued): the
    /// maildirs kept open are closed, and the thread waits a moment before it tries again
    /// rather than spinning.
    fn accepted(&self, r: std::io::Result<Conn>) -> Option<Conn> {
        let e = match r {
            Ok(c) => return Some(c),
            Err(e) => e,
        };
        if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            if self.srv.kept.close_all() {
                log!("mdeliver lmtp: out of file descriptors: closed the maildirs kept open");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// A session's place under `--max-sessions`, given back when the session ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn finish(srv: &Server) {
    if srv.args.verbose >= 1 {
        log!("mdeliver lmtp: {}", srv.committer.stats.summary());
    }
}
