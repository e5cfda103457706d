//! The process's start-up, in place of std's. A delivery is one short process per message, so
//! what runs before the message is read is part of every delivery's cost. std's start-up
//! installs a stack-overflow handler (which on glibc reads `/proc/self/maps`, queries the
//! stack limit and the CPU affinity, and maps an alternate signal stack: about 15 system calls
//! before `main`); mdeliver enters through the C `main` instead and keeps only the two steps
//! of std's start-up it relies on (see [`init`]). A stack overflow is then an ordinary
//! SIGSEGV, without std's message: either way the process dies by a signal and the MTA defers.

use std::ffi::{c_char, c_int, CStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

/// The C runtime's entry point: the arguments, then [`crate::run`], then its exit code.
#[no_mangle]
pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    init();
    let argv: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes `argc` pointers to NUL-terminated strings that live
            // as long as the process (the same guarantee std's own start-up relies on).
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect();
    let code = crate::run(&argv);
    // std's start-up would flush standard output at exit; report() does it here.
    let _ = std::io::stdout().flush();
    report(code)
}

/// What std's start-up does that mdeliver needs:
/// - standard input, output and error that are closed are opened on /dev/null, so that a
///   message file or maildir never gets descriptor 0, 1 or 2 and an error message written to
///   standard error cannot land in a message;
/// - SIGPIPE is ignored, so that writing a report to an MTA that closed the pipe fails with
///   EPIPE (and the exit code stands) instead of killing the process after the delivery.
fn init() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the duration of the call.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if polled > 0 {
        for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
            // SAFETY: a C string literal; the descriptor returned is the lowest free one, the
            // closed standard descriptor, which stays open for the life of the process.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != p.fd {
                // Cannot make the standard descriptors safe: stop before touching any mail.
                // SAFETY: abort is always safe to call.
                unsafe { libc::abort() };
            }
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The number of an exit code (ExitCode does not expose it; it compares equal to the code it
/// was made from).
fn report(code: ExitCode) -> c_int {
    (0..=u8::MAX)
        .find(|&c| ExitCode::from(c) == code)
        .map_or(1, c_int::from)
}
