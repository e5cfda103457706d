//! One client connection: standard input and output, a unix socket or a TCP socket. Reads
//! wait a second at a time (a socket's receive timeout, else `poll`), so an idle session
//! notices the timeouts and (between commands) a shutdown without a signal having to
//! interrupt it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// The longest one wait for input lasts before the timeouts and the shutdown are looked at.
const TICK: Duration = Duration::from_secs(1);

/// A client connection.
#[derive(Debug)]
pub enum Conn {
    /// Standard input and output (one session, inetd style).
    Stdio(io::Stdin),
    /// An accepted unix socket.
    Unix(UnixStream),
    /// An accepted TCP socket.
    Tcp(TcpStream),
}

impl Conn {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Stdio(s) => s.as_fd(),
            Conn::Unix(s) => s.as_fd(),
            Conn::Tcp(s) => s.as_fd(),
        }
    }

    /// The writing half (the same socket: no second descriptor).
    pub fn writer(&self) -> Box<dyn Write + '_> {
        match self {
            Conn::Stdio(_) => Box::new(io::stdout()),
            Conn::Unix(s) => Box::new(s),
            Conn::Tcp(s) => Box::new(s),
        }
    }
}

/// Why a read gave up (the [`io::Error`]'s inner error).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Nothing arrived for the idle timeout, or the session is over its total time.
    Timeout,
    /// The server is shutting down and the session is between commands.
    Shutdown,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Timeout => "timeout",
            Stop::Shutdown => "shutting down",
        })
    }
}

impl std::error::Error for Stop {}

/// What stopped a read, if it was a [`Stop`].
pub fn stop_of(e: &io::Error) -> Option<Stop> {
    e.get_ref().and_then(|x| x.downcast_ref::<Stop>()).copied()
}

/// The reading half, with the timeouts and the shutdown flag.
pub struct Reader<'a> {
    conn: &'a Conn,
    idle: Duration,
    end: Instant,
    shutdown: Arc<AtomicBool>,
    /// Stop for a shutdown (between commands, not inside a message).
    pub watch_shutdown: bool,
}

impl<'a> Reader<'a> {
    /// Reads `conn`, giving up after `idle` without input or at `end`.
    pub fn new(conn: &'a Conn, idle: Duration, end: Instant, shutdown: Arc<AtomicBool>) -> Self {
        // A socket's reads wait at most a second by themselves: no `poll` before each. A
        // reply that cannot be written for the idle timeout (a client that stopped reading)
        // fails, so the session ends and frees its place, and a shutdown is not held up.
        let _ = match conn {
            Conn::Unix(s) => s
                .set_read_timeout(Some(TICK))
                .and_then(|()| s.set_write_timeout(Some(idle))),
            Conn::Tcp(s) => s
                .set_read_timeout(Some(TICK))
                .and_then(|()| s.set_write_timeout(Some(idle))),
            Conn::Stdio(_) => Ok(()),
        };
        Reader {
            conn,
            idle,
            end,
            shutdown,
            watch_shutdown: true,
        }
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        let fail = |s: Stop| Err(io::Error::new(io::ErrorKind::TimedOut, s));
        loop {
            if self.watch_shutdown && self.shutdown.load(Ordering::Relaxed) {
                return fail(Stop::Shutdown);
            }
            let now = Instant::now();
            if now.duration_since(start) >= self.idle || (self.watch_shutdown && now >= self.end) {
                return fail(Stop::Timeout);
            }
            if let Conn::Stdio(_) = self.conn {
                let fd = self.conn.fd();
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                let second = Timespec {
                    tv_sec: TICK.as_secs() as i64,
                    tv_nsec: 0,
                };
                match poll(&mut fds, Some(&second)) {
                    Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                    Ok(_) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            match rustix::io::read(self.conn.fd(), &mut *buf) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
