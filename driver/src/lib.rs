//! `mdeliver-driver`: the std half shared by the Linux binary (`cli/`) and the WASI module
//! (`wasi/`): the delivery command line, the translation of the MTA options, `-M`'s loop, the
//! reports, status lines and exit codes. Every mail decision is the core's; what differs
//! between the two binaries is only their adapters (filesystem, environment).

pub mod args;
pub mod envelope;
pub mod folder_report;
pub mod import;
pub mod json;
pub mod mail_args;
pub mod maillog;
pub mod mta_args;
pub mod outcome;
pub mod report;
pub mod run;
pub mod signal;
pub mod status;
pub mod subscribe;

/// Exit statuses: decided by the core, one table for both binaries and the LMTP server.
pub use mdeliver_core::report::exit;

/// The system clock as the core's timestamp, for both binaries' `Env::now`. Read through std:
/// libc's `clock_gettime` on Linux (not rustix's direct vDSO call, so an administrator's or a
/// test's libfaketime can steer it, e.g. freeze it to prove names stay unique), WASI's
/// `clock_time_get` in the module.
pub fn now() -> mdeliver_core::env::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mdeliver_core::env::Timestamp {
        secs: d.as_secs(),
        micros: d.subsec_micros(),
    }
}

/// A std I/O error as the core's kind, by its portable kind (no errno: the WASI module has
/// none to read), for both binaries' std-based code.
pub fn io_kind(e: &std::io::Error) -> mdeliver_core::ErrorKind {
    use mdeliver_core::ErrorKind;
    use std::io::ErrorKind as K;
    match e.kind() {
        K::AlreadyExists => ErrorKind::Exists,
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::Permission,
        K::ReadOnlyFilesystem => ErrorKind::ReadOnly,
        K::StorageFull => ErrorKind::NoSpace,
        K::QuotaExceeded => ErrorKind::Quota,
        K::Interrupted => ErrorKind::Interrupted,
        K::Unsupported => ErrorKind::Unsupported,
        K::NotADirectory => ErrorKind::NotDirectory,
        K::InvalidFilename => ErrorKind::NameTooLong,
        K::TimedOut | K::WouldBlock => ErrorKind::Busy,
        K::OutOfMemory => ErrorKind::Resources,
        K::CrossesDevices => ErrorKind::CrossDevice,
        // Too many open files (Linux's EMFILE 24, ENFILE 23) has no kind of its own in std.
        _ if cfg!(target_os = "linux") && matches!(e.raw_os_error(), Some(24 | 23)) => {
            ErrorKind::Resources
        }
        _ => ErrorKind::Io,
    }
}
