//! Listening: the sockets given with `--listen` or by systemd (`LISTEN_FDS`), one thread per
//! session up to `--max-sessions` (a thread whose session ended serves the next connection), and an orderly stop on SIGTERM or SIGINT: no new
//! connections, every session finishes its message in flight and gets `421 4.3.2`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mdeliver_core::lmtp::reply::{Fixed, Reply};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::conn::Conn;
use super::{session, Server};
use mdeliver_driver::exit;

enum Listener {
    /// With the path to remove at exit (`None`: systemd's socket).
    Unix(UnixListener, Option<PathBuf>),
    Tcp(TcpListener),
}

impl Listener {
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
        let path = PathBuf::from(path);
        // A socket left by an earlier run is replaced; anything else is not touched.
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.file_type().is_socket() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let l = UnixListener::bind(&path)
            .map_err(|e| format!("--listen {spec}: cannot listen: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("--listen {spec}: cannot set the mode: {e}"))?;
        return Ok(Listener::Unix(l, Some(path)));
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
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
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
    let active = Arc::new(AtomicUsize::new(0));
    let pool = Arc::new(Pool::default());
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let half = Timespec {
        tv_sec: 0,
        tv_nsec: 500_000_000,
    };
    while !srv.shutdown.load(Ordering::Relaxed) {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = listeners
                .iter()
                .map(|l| match l {
                    Listener::Unix(u, _) => PollFd::new(u, PollFlags::IN),
                    Listener::Tcp(t) => PollFd::from_borrowed_fd(t.as_fd(), PollFlags::IN),
                })
                .collect();
            match poll(&mut fds, Some(&half)) {
                Ok(0) | Err(_) => continue,
                Ok(_) => fds.iter().map(|f| !f.revents().is_empty()).collect(),
            }
        };
        for (l, _) in listeners.iter().zip(ready).filter(|(_, r)| *r) {
            let Ok(conn) = l.accept() else { continue };
            threads.retain(|t| !t.is_finished());
            if active.load(Ordering::Relaxed) >= srv.args.max_sessions {
                let _ = write!(conn.writer(), "{}", Reply::Fixed(Fixed::TooManySessions));
                continue;
            }
            // Counted from here; given back when its session ends, even if no thread could
            // be started for it or the session panics.
            let slot = Slot::take(&active);
            let Some(conn) = pool.hand_over(conn, slot) else {
                continue;
            };
            let (srv, pool) = (Arc::clone(&srv), Arc::clone(&pool));
            let spawned = std::thread::Builder::new()
                .name("lmtp-session".into())
                .spawn(move || {
                    let mut next = Some(conn);
                    while let Some((conn, slot)) = next {
                        session::serve(conn, &srv);
                        drop(slot);
                        next = pool.wait(&srv.shutdown);
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => log!("mdeliver lmtp: cannot start a session: {e}"),
            }
        }
    }
    // No new connections; the sessions see the flag between commands.
    for l in &listeners {
        if let Listener::Unix(_, Some(path)) = l {
            let _ = std::fs::remove_file(path);
        }
    }
    drop(listeners);
    for t in threads {
        let _ = t.join();
    }
    finish(&srv);
    ExitCode::from(exit::OK)
}

/// A session's place under `--max-sessions`, given back when the session ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(active))
    }
}

/// How long a session thread whose session ended waits for the next connection before it
/// ends too.
const IDLE_KEEP: Duration = Duration::from_secs(30);

/// Session threads kept for the next connection: a client that opens a connection for every
/// message (Postfix's `smtp-source -L`, an MTA under light load) then costs no thread start
/// and stop, about ten system calls, per message.
#[derive(Default)]
struct Pool {
    state: Mutex<Waiting>,
    ready: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// Connections handed over and not yet taken.
    conns: VecDeque<(Conn, Slot)>,
    /// Threads waiting in [`Pool::wait`].
    idle: usize,
}

impl Pool {
    /// Gives `conn` to a waiting thread; back (to start a thread for) when none is free.
    fn hand_over(&self, conn: Conn, slot: Slot) -> Option<(Conn, Slot)> {
        let Ok(mut w) = self.state.lock() else {
            return Some((conn, slot));
        };
        // More waiting threads than connections already handed over: one of them takes it
        // (a thread leaves only with the queue empty).
        if w.idle > w.conns.len() {
            w.conns.push_back((conn, slot));
            self.ready.notify_one();
            None
        } else {
            Some((conn, slot))
        }
    }

    /// The next connection for a thread whose session ended; `None` after [`IDLE_KEEP`]
    /// without one, or on shutdown.
    fn wait(&self, shutdown: &AtomicBool) -> Option<(Conn, Slot)> {
        let mut w = self.state.lock().ok()?;
        w.idle += 1;
        let until = Instant::now() + IDLE_KEEP;
        loop {
            if let Some(next) = w.conns.pop_front() {
                w.idle -= 1;
                return Some(next);
            }
            let now = Instant::now();
            if now >= until || shutdown.load(Ordering::Relaxed) {
                w.idle -= 1;
                return None;
            }
            let step = (until - now).min(Duration::from_millis(500));
            w = match self.ready.wait_timeout(w, step) {
                Ok((w, _)) => w,
                Err(_) => return None,
            };
        }
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
