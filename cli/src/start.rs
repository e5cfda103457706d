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

/// The first allocations of the process come from a static arena (zeroed memory the kernel
/// maps on first touch, like any page of the program), later ones from the C library's
/// allocator. A one-shot delivery allocates a few hundred KiB at most, all at start-up and
/// mostly never freed before exit; musl's allocator serves that with about a dozen `brk`,
/// `mmap` and `munmap` calls, the arena with none. A block of the arena is never reused:
/// freeing it does nothing, so a long run (the LMTP server, an mbox import) leaves at most the
/// arena's size unused and then allocates from the C library as usual.
mod arena {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The arena's size: a one-shot delivery's allocations (two 64 KiB buffers and small
    /// ones) fit with room to spare.
    const SIZE: usize = 512 * 1024;

    #[repr(C, align(4096))]
    struct Arena(UnsafeCell<[u8; SIZE]>);

    // SAFETY: the bytes are only reached through blocks handed out once each (the bump offset
    // is advanced atomically), so no two threads share a block.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena(UnsafeCell::new([0; SIZE]));
    /// The offset of the first free byte.
    static USED: AtomicUsize = AtomicUsize::new(0);

    pub struct FirstArena;

    fn base() -> *mut u8 {
        ARENA.0.get().cast()
    }

    fn in_arena(ptr: *mut u8) -> bool {
        let start = base() as usize;
        (start..start + SIZE).contains(&(ptr as usize))
    }

    /// A block of the arena for `layout`, if it still has room.
    fn bump(layout: Layout) -> Option<*mut u8> {
        let mut used = USED.load(Ordering::Relaxed);
        loop {
            // The arena's base is page-aligned, so aligning the offset aligns the address.
            let start = used.checked_add(layout.align() - 1)? & !(layout.align() - 1);
            let end = start.checked_add(layout.size())?;
            if end > SIZE {
                return None;
            }
            match USED.compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed) {
                // SAFETY: start + size <= SIZE: the block lies inside the arena.
                Ok(_) => return Some(unsafe { base().add(start) }),
                Err(now) => used = now,
            }
        }
    }

    // SAFETY: every block is either a fresh, suitably aligned, unshared part of the arena or
    // comes from (and goes back to) `System`; zeroed blocks of the arena are zero because it
    // is never reused.
    unsafe impl GlobalAlloc for FirstArena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= 4096 {
                if let Some(p) = bump(layout) {
                    return p;
                }
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= 4096 {
                if let Some(p) = bump(layout) {
                    return p;
                }
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if !in_arena(ptr) {
                // SAFETY: `ptr` came from `System` with this layout.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if !in_arena(ptr) {
                // SAFETY: `ptr` came from `System` with this layout.
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // SAFETY: the caller guarantees the new layout is valid for the old alignment.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: a valid layout, as above.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct and at least this long.
                unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: arena::FirstArena = arena::FirstArena;
