//! Where the message comes from: standard input, `--input FILE`, a message file already
//! delivered into an earlier maildir, or (the LMTP server's) a small message held in memory.
//! Each is read straight from its descriptor or bytes through the driver's one buffer (no
//! extra buffering), as an `embedded_io::Read` for the core.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

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
    Bytes(Arc<[u8]>),
}

impl Handle {
    /// Its descriptor (none for bytes in memory).
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Handle::Stdin(s) => Some(s.as_fd()),
            Handle::File(f) => Some(f.as_fd()),
            Handle::Bytes(_) => None,
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

/// The type of the file open at `fd`; `None` when it cannot be examined.
fn file_type(fd: BorrowedFd<'_>) -> Option<FileType> {
    rfs::fstat(fd)
        .ok()
        .map(|s| FileType::from_raw_mode(s.st_mode))
}

/// The type of standard input's file, examined once for the run: the mail log's terminal check
/// and the message source both ask, and it does not change while mdeliver runs.
fn stdin_type() -> Option<FileType> {
    static TYPE: OnceLock<Option<FileType>> = OnceLock::new();
    *TYPE.get_or_init(|| file_type(std::io::stdin().as_fd()))
}

/// Whether standard input is a terminal. Only a character device can be one, so the terminal
/// `ioctl` is made only for those (an MTA's pipe or a file needs no second system call).
pub fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    stdin_type() == Some(FileType::CharacterDevice) && std::io::stdin().is_terminal()
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
        let kind = stdin_type();
        if kind == Some(FileType::Directory) {
            return Err(ErrorKind::Usage);
        }
        Ok(Input::new(Handle::Stdin(std::io::stdin()), kind))
    }

    /// The file at `path` (`O_RDONLY|O_CLOEXEC`; the caller named it, so links are followed).
    pub fn open(path: &Path) -> Result<Input, ErrorKind> {
        let fd = rfs::openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| error_kind(e, Call::Other))?;
        // A directory opens fine and only fails at the first read, which would look like an
        // I/O error (temporary); it is an input that can never work. `Usage` marks it.
        let kind = file_type(fd.as_fd());
        if kind == Some(FileType::Directory) {
            return Err(ErrorKind::Usage);
        }
        Ok(Input::new(Handle::File(fd), kind))
    }

    /// A message file delivered earlier (opened readable by the adapter), from its start.
    pub fn delivered(fd: OwnedFd) -> Input {
        Input {
            handle: Handle::File(fd),
            start: Some(0),
            pos: 0,
            consumed: 0,
            scan: None,
        }
    }

    /// A message held in memory, from its start.
    pub fn bytes(bytes: Arc<[u8]>) -> Input {
        Input {
            handle: Handle::Bytes(bytes),
            start: Some(0),
            pos: 0,
            consumed: 0,
            scan: None,
        }
    }

    /// A source over `handle`, whose file is of type `kind` (a regular file is read from its
    /// current offset, and can be read again from there).
    fn new(handle: Handle, kind: Option<FileType>) -> Input {
        let start = (handle.fd())
            .filter(|_| kind == Some(FileType::RegularFile))
            .and_then(|fd| rfs::seek(fd, SeekFrom::Current(0)).ok());
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

/// Reads from `fd` at `at` (`pread`), or from its offset (`read`).
fn read_at(fd: BorrowedFd<'_>, at: Option<u64>, buf: &mut [u8]) -> rustix::io::Result<usize> {
    match at {
        Some(at) => rustix::io::pread(fd, buf, at),
        None => rustix::io::read(fd, buf),
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
            let at = self.start.map(|_| self.pos);
            let r = match &self.handle {
                Handle::Bytes(b) => {
                    let rest = b.get(self.pos as usize..).unwrap_or_default();
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    Ok(n)
                }
                Handle::Stdin(s) => read_at(s.as_fd(), at, buf),
                Handle::File(f) => read_at(f.as_fd(), at, buf),
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
