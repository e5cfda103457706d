//! Subscribing a folder `-c` created: the core decides the bytes
//! ([`mdeliver_core::maildir::subscription`]); this adds them to each subscription file the way Dovecot
//! changes it, so that concurrent subscribers (another mdeliver, Dovecot, Courier) never lose
//! an entry: take the dotlock `<file>.lock` (created exclusively), read the file, write the
//! whole new content into the lock file, flush it, and rename it over the file. A lock older
//! than `STALE` (30 s) is a crashed writer's and is removed (Dovecot's subscription lock goes stale
//! after 30 seconds too). Shared with the WASI module (std and mdeliver-core only).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use mdeliver_core::maildir::folder::FolderDir;
use mdeliver_core::maildir::subscription::{addition, SubscriptionFile};
use mdeliver_core::ErrorKind;

/// How old a lock file may be before it is taken for a crashed writer's.
const STALE: Duration = Duration::from_secs(30);
/// How long to wait for a live lock before giving up.
const WAIT: Duration = Duration::from_secs(10);

/// Subscribes the folder directory `dir` in every subscription file of `maildir` that should
/// list it; with `sync`, the new file is flushed before it replaces the old. On failure, the
/// file's name and what went wrong.
pub fn subscribe(maildir: &Path, dir: &FolderDir, sync: bool) -> Result<(), (String, ErrorKind)> {
    for file in SubscriptionFile::ALL {
        let path = maildir.join(file.file_name());
        let fail = |e: std::io::Error| (file.file_name().to_owned(), crate::io_kind(&e));
        if !file.create_if_missing() && !path.exists() {
            continue;
        }
        let lock = maildir.join(format!("{}.lock", file.file_name()));
        let mut out = take_lock(&lock).map_err(fail)?;
        share(maildir, &out);
        let result = (|| {
            let existing = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == IoKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let Some(add) = addition(file, dir, &existing) else {
                return Ok(false);
            };
            out.write_all(&existing)?;
            out.write_all(add.prefix)?;
            out.write_all(&add.line)?;
            out.write_all(b"\n")?;
            if sync {
                out.sync_all()?;
            }
            fs::rename(&lock, &path)?;
            Ok(true)
        })();
        if !matches!(result, Ok(true)) {
            let _ = fs::remove_file(&lock);
        }
        result.map_err(fail)?;
    }
    Ok(())
}

/// In a shared (group-writable) maildir, gives the new subscription file mode 0660 and the
/// maildir's group, as the message files get; best effort.
fn share(maildir: &Path, file: &File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if let Ok(m) = fs::metadata(maildir) {
            if m.mode() & 0o020 != 0 {
                let _ = std::os::unix::fs::fchown(file, None, Some(m.gid()));
                let _ = file.set_permissions(fs::Permissions::from_mode(0o660));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (maildir, file);
}

/// Creates the lock file exclusively, waiting (bounded) for a live one and removing a stale one.
fn take_lock(lock: &Path) -> std::io::Result<File> {
    let start = SystemTime::now();
    loop {
        let mut o = OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(lock) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == IoKind::AlreadyExists => {
                let age = fs::symlink_metadata(lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|a| a > STALE) {
                    let _ = fs::remove_file(lock);
                    continue;
                }
                if start.elapsed().unwrap_or_default() > WAIT {
                    return Err(IoKind::TimedOut.into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}
