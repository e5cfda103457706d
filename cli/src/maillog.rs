//! The mail log's transport: the lines of [`mdeliver_driver::maillog`] go to the system log
//! (facility `mail`, tag `mdeliver`, RFC 3164 as the `syslog` crate formats it, over the local
//! socket). Logged by default when standard input is not a terminal (an MTA runs mdeliver),
//! with `--syslog` always, with `--no-syslog` never; a dry run, an mbox import and the
//! subcommands log nothing. Nothing is done (no socket, no Message-ID scan) when not logging,
//! and a log that cannot be reached never changes the delivery or its exit status.
//!
//! Every delivery pays for the log, so it costs two system calls: one unbound datagram socket
//! and one `sendto` per line, without `connect` and without closing the socket (the process
//! exits right after). Only `/dev/log` is tried, as glibc's and musl's `syslog(3)` do (the
//! other paths the `syslog` crate tries, `/var/run/syslog` and `/var/run/log`, are macOS's and
//! FreeBSD's); a daemon that listens on a stream socket there (`EPROTOTYPE`) gets the lines
//! over a connection, each ended by a NUL.

use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

use mdeliver_driver::maillog::Severity;
use syslog::{Facility, Formatter3164, LogFormat};

/// Where the lines go instead of `/dev/log`: a testing knob (a test-owned socket).
pub const SOCKET_VAR: &str = "MDELIVER_TEST_SYSLOG";

/// The socket a syslog daemon listens on.
const SOCKET: &str = "/dev/log";

/// Whether to log: `--syslog` (`on`), `--no-syslog` (`off`), else when standard input is not a
/// terminal.
pub fn wanted(on: bool, off: bool) -> bool {
    !off && (on || !crate::input::stdin_is_terminal())
}

/// The datagrams for `lines`, as process `pid`.
fn datagrams(lines: &[(Severity, String)], pid: u32) -> Vec<Vec<u8>> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_MAIL,
        hostname: None,
        process: "mdeliver".into(),
        pid,
    };
    lines
        .iter()
        .filter_map(|(severity, line)| {
            let severity = match severity {
                Severity::Info => syslog::Severity::LOG_INFO,
                Severity::Warning => syslog::Severity::LOG_WARNING,
                Severity::Error => syslog::Severity::LOG_ERR,
            };
            let mut d = Vec::new();
            formatter
                .format(&mut d, severity, line.as_str())
                .ok()
                .map(|()| d)
        })
        .collect()
}

/// Sends `lines` (as process `pid`, when known) to `$MDELIVER_TEST_SYSLOG`, else the system's
/// socket; silently nothing when it cannot be reached.
pub fn send(lines: &[(Severity, String)], pid: Option<u32>) {
    let path = std::env::var_os(SOCKET_VAR).map_or_else(|| PathBuf::from(SOCKET), PathBuf::from);
    let datagrams = datagrams(lines, pid.unwrap_or_else(std::process::id));
    let Some(first) = datagrams.first() else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    match socket.send_to(first, &path) {
        Ok(_) => {
            for d in &datagrams[1..] {
                let _ = socket.send_to(d, &path);
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => by_stream(&path, &datagrams),
        // Nothing listens (ENOENT, ECONNREFUSED): the log is lost, the delivery stands.
        Err(_) => {}
    }
    // The process exits right after the log: closing would be one more system call.
    let _ = socket.into_raw_fd();
}

/// The lines over a stream connection to `path`, each ended by a NUL (what syslog daemons
/// listening on a stream socket read).
fn by_stream(path: &Path, datagrams: &[Vec<u8>]) {
    let Ok(mut stream) = UnixStream::connect(path) else {
        return;
    };
    let mut all = Vec::new();
    for d in datagrams {
        all.extend_from_slice(d);
        all.push(0);
    }
    let _ = stream.write_all(&all);
}
