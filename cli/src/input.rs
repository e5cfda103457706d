//! Where the message comes from: standard input, `--input FILE`, or a message file already
//! delivered into an earlier maildir. Each is read straight from its descriptor through the
//! driver's one buffer (no extra buffering), as an `embedded_io::Read` for the core.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use mdeliver_core::machine::dedup::MessageIdScanner;
use mdeliver_core::ErrorKind;
use mdeliver_driver::report::Failure;
use mdeliver_driver::run::Message;
use rustix::fs::{self as rfs, FileType, Mode, OFlags, SeekFrom, CWD};
use rustix::io::Errno;

use crate::linux::error_kind;
use crate::linux::Call;

#[derive(Debug)]
enum Handle {
    Stdin(std::io::Stdin),
    File(OwnedFd),
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Handle::Stdin(s) => s.as_fd(),
            Handle::File(f) => f.as_fd(),
        }
    }
}

/// A message source over a file descriptor. Regular files are read with `pread` from a
/// remembered start, so they can be read again from the beginning; pipes are read once.
#[derive(Debug)]
pub struct Input {
    handle: Handle,
    /// `Some(start)` for a regular file: reads are positional and can restart.
    start: Option<u64>,
    pos: u64,
    consumed: u64,
    /// Looks for the Message-ID in what is read, for the system log; only when logging.
    scan: Option<Box<MessageIdScanner>>,
}

/// Whether `fd` is a directory (which opens, but can never be read as a message).
fn is_directory(fd: BorrowedFd<'_>) -> bool {
    rfs::fstat(fd).is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
}

fn to_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

impl Input {
    /// Standard input, from its current offset. A directory there (`mdeliver < DIR` in a
    /// shell, or a misconfigured pipe) is refused as `--input DIR` is: `Usage`, an input that
    /// can never work, not the I/O error its first read would give (which would defer the mail
    /// and make the MTA retry for days).
    pub fn stdin() -> Result<Input, ErrorKind> {
        let stdin = std::io::stdin();
        if is_directory(stdin.as_fd()) {
            return Err(ErrorKind::Usage);
        }
        Ok(Input::new(Handle::Stdin(stdin)))
    }

    /// The file at `path` (`O_RDONLY|O_CLOEXEC`; the caller named it, so links are followed).
    pub fn open(path: &Path) -> Result<Input, ErrorKind> {
        let fd = rfs::openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| error_kind(e, Call::Other))?;
        // A directory opens fine and only fails at the first read, which would look like an
        // I/O error (temporary); it is an input that can never work. `Usage` marks it.
        if is_directory(fd.as_fd()) {
            return Err(ErrorKind::Usage);
        }
        Ok(Input::new(Handle::File(fd)))
    }

    /// A message file delivered earlier (opened readable by the adapter), from its start.
    pub fn delivered(fd: OwnedFd) -> Input {
        let mut input = Input::new(Handle::File(fd));
        input.start = Some(0);
        input.pos = 0;
        input
    }

    fn new(handle: Handle) -> Input {
        let regular = rfs::fstat(handle.as_fd())
            .map(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile)
            .unwrap_or(false);
        let start = if regular {
            rfs::seek(handle.as_fd(), SeekFrom::Current(0)).ok()
        } else {
            None
        };
        Input {
            handle,
            start,
            pos: start.unwrap_or(0),
            consumed: 0,
            scan: None,
        }
    }
}

impl Message for Input {
    fn scan_message_id(&mut self) {
        self.scan = Some(Box::default());
    }

    fn message_id(&self) -> Option<&[u8]> {
        self.scan.as_ref().and_then(|s| s.message_id())
    }

    /// A regular file can be read again at any time.
    fn is_rewindable(&self) -> bool {
        self.start.is_some()
    }

    fn rewind(&mut self) -> Result<(), Failure> {
        match self.start {
            Some(start) => {
                self.pos = start;
                self.consumed = 0;
                Ok(())
            }
            None if self.consumed == 0 => Ok(()),
            None => Err(Failure::InputLost),
        }
    }
}

impl embedded_io::ErrorType for Input {
    type Error = std::io::Error;
}

impl embedded_io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let n = loop {
            // A termination signal stops the reading (see `signals.rs`): the delivery then
            // fails and removes what it wrote.
            if let Some(signo) = mdeliver_driver::signal::caught() {
                let name = mdeliver_driver::signal::name(signo);
                return Err(std::io::Error::other(format!("stopped by {name}")));
            }
            let r = match self.start {
                Some(_) => rustix::io::pread(self.handle.as_fd(), &mut *buf, self.pos),
                None => rustix::io::read(self.handle.as_fd(), &mut *buf),
            };
            match r {
                Err(Errno::INTR) => continue,
                r => break r.map_err(to_io)?,
            }
        };
        self.pos += n as u64;
        self.consumed += n as u64;
        if let Some(scan) = self.scan.as_mut().filter(|s| !s.is_done()) {
            scan.feed(&buf[..n]);
        }
        Ok(n)
    }
}
