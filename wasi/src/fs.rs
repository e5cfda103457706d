//! The core's `Fs` over `std::fs` inside a WASI sandbox.
//!
//! WASI preview 1 has exclusive creation (`path_open` with `O_EXCL`), hard links
//! (`path_link`), plain rename (`path_rename`) and `fd_sync`, but no unnamed tmp files and no
//! rename-noreplace: the capabilities say so and the core publishes by link + unlink. The
//! runtime resolves every path inside the preopened directory, so nothing outside the sandbox
//! can be reached, whatever symlinks the maildir holds.

use mdeliver_core::fs::{read_to_fill, write_record, EntryName, Persist, Stat};
use mdeliver_core::{Capabilities, Dir, ErrorKind, Fs};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Maps an I/O error to the core's kinds: the driver's mapping, and wasi-libc's
/// `ENOTCAPABLE` (76, the path leaves the sandbox) as a permission refusal.
pub fn kind_of(e: &io::Error) -> ErrorKind {
    #[cfg(target_os = "wasi")]
    if e.raw_os_error() == Some(76) {
        return ErrorKind::Permission;
    }
    mdeliver_driver::io_kind(e)
}

/// A maildir inside the sandbox.
pub struct WasiFs {
    root: PathBuf,
    caps: Capabilities,
}

impl WasiFs {
    /// Opens the maildir at `root` (a path inside a preopened directory), creating it and
    /// its tmp/new/cur first with `create`. Refuses a maildir whose subdirectories are
    /// symlinks or missing.
    pub fn open(root: &Path, create: bool) -> Result<WasiFs, (ErrorKind, Dir)> {
        let at = |part: Dir| move |e: io::Error| (kind_of(&e), part);
        if create {
            match fs::create_dir_all(root) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at(Dir::Root)(e)),
            }
        }
        if !fs::symlink_metadata(root).map_err(at(Dir::Root))?.is_dir() {
            return Err((ErrorKind::NotDirectory, Dir::Root));
        }
        for d in Dir::SUBDIRS {
            if create {
                match fs::create_dir(root.join(d.as_str())) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(at(d)(e)),
                }
            }
            let m = fs::symlink_metadata(root.join(d.as_str())).map_err(at(d))?;
            if !m.is_dir() {
                return Err((ErrorKind::NotDirectory, d));
            }
        }
        // WASI preview 1's fd_sync takes file descriptors only (wasmtime answers EBADF for a
        // directory): probe, and where it fails say so, so the core does not pretend that a
        // directory entry was made durable. The host's filesystem then decides when the
        // entry in new/ reaches the disk.
        let dir_sync = File::open(root.join(Dir::New.as_str()))
            .and_then(|f| f.sync_all())
            .is_ok();
        let caps = Capabilities {
            anonymous_tmp: false,
            rename_noreplace: false,
            hard_links: true,
            dir_sync,
            atomic_exclusive: true,
            // WASI has no write-back without a flush.
            ordered_commit: false,
        };
        Ok(WasiFs {
            root: root.to_path_buf(),
            caps,
        })
    }

    /// The path of a name in a directory.
    pub fn path(&self, dir: Dir, name: &str) -> Result<PathBuf, ErrorKind> {
        // Plain names only: the core never makes anything else, and we never follow one.
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(ErrorKind::Usage);
        }
        Ok(self.root.join(dir.as_str()).join(name))
    }
}

fn unit(r: io::Result<()>) -> Result<(), ErrorKind> {
    r.map_err(|e| kind_of(&e))
}

impl Fs for WasiFs {
    type File = File;
    type DirStream = fs::ReadDir;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<File, ErrorKind> {
        let p = self.path(dir, name)?;
        let mut o = OpenOptions::new();
        o.write(true);
        if exclusive {
            o.create_new(true);
        } else {
            o.create(true).truncate(true);
        }
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(p).map_err(|e| kind_of(&e))
    }

    fn create_anonymous(&mut self, _dir: Dir) -> Result<File, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn file_id(&self, _file: &File) -> Option<(u64, u64)> {
        // Device and inode are not exposed by stable std on WASI; the name's other sources of
        // uniqueness (time, counter, 64 random bits) carry it.
        None
    }

    fn write(&mut self, file: &mut File, buf: &[u8]) -> Result<usize, ErrorKind> {
        file.write(buf).map_err(|e| kind_of(&e))
    }

    fn sync_file(&mut self, file: &mut File) -> Result<(), ErrorKind> {
        unit(file.sync_all())
    }

    fn write_back(&mut self, _: &mut File) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn close(&mut self, file: File) -> Result<(), ErrorKind> {
        drop(file);
        Ok(())
    }

    fn link_anonymous(&mut self, _file: &File, _dir: Dir, _name: &str) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        let a = self.path(from.0, from.1)?;
        let b = self.path(to.0, to.1)?;
        unit(fs::hard_link(a, b))
    }

    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        if noreplace {
            return Err(ErrorKind::Unsupported);
        }
        let a = self.path(from.0, from.1)?;
        let b = self.path(to.0, to.1)?;
        unit(fs::rename(a, b))
    }

    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        let p = self.path(dir, name)?;
        unit(fs::remove_file(p))
    }

    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        let p = self.path(dir, name)?;
        let m = fs::symlink_metadata(p).map_err(|e| kind_of(&e))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        #[cfg(unix)]
        let nlink = std::os::unix::fs::MetadataExt::nlink(&m);
        // Stable std has no link count on WASI; 1 means "a failed link is believed".
        #[cfg(not(unix))]
        let nlink = 1;
        Ok(Stat {
            nlink,
            size: m.len(),
            mtime,
            regular: m.is_file(),
        })
    }

    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        let p = self.root.join(dir.as_str());
        let f = File::open(p).map_err(|e| kind_of(&e))?;
        unit(f.sync_all())
    }

    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        unit(fs::create_dir(self.root.join(dir.as_str())))
    }

    // The Maildir++ quota file and the duplicate index live in the maildir itself. (std
    // cannot ask WASI for O_NOFOLLOW; the runtime keeps any symlink inside the sandbox.)
    // No ordered commits here: a write-back is a flush.
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.path(dir, name)?)
            .map_err(|e| kind_of(&e))?;
        write_record(data, |d| f.write(d).map_err(|e| kind_of(&e)))?;
        if p != Persist::Cache {
            unit(f.sync_all())?;
        }
        Ok(())
    }

    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut f = File::open(self.path(dir, name)?).map_err(|e| kind_of(&e))?;
        read_to_fill(buf, |b| io::Read::read(&mut f, b).map_err(|e| kind_of(&e)))
    }

    /// WASI preview 1 has no whole-filesystem flush: an import flushes file by file.
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn set_mtime(&mut self, file: &File, secs: i64) -> Result<(), ErrorKind> {
        let since = std::time::Duration::from_secs(secs.unsigned_abs());
        let t = if secs >= 0 {
            std::time::UNIX_EPOCH.checked_add(since)
        } else {
            std::time::UNIX_EPOCH.checked_sub(since)
        }
        .ok_or(ErrorKind::Unsupported)?;
        let times = fs::FileTimes::new().set_accessed(t).set_modified(t);
        unit(file.set_times(times))
    }

    fn open_dir(&mut self, dir: Dir) -> Result<fs::ReadDir, ErrorKind> {
        fs::read_dir(self.root.join(dir.as_str())).map_err(|e| kind_of(&e))
    }

    /// A `ReadDir` does not know its directory: sizes come from the names' `,S=`.
    fn stat_listed(&mut self, _: &fs::ReadDir, _: &str) -> Result<Stat, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<fs::ReadDir, ErrorKind> {
        let folder = core::str::from_utf8(folder).map_err(|_| ErrorKind::NotFound)?;
        let at = self.root.join(base.as_str()).join(folder);
        if !folder.is_empty() && !fs::symlink_metadata(&at).map_err(|e| kind_of(&e))?.is_dir() {
            return Err(ErrorKind::NotDirectory);
        }
        fs::read_dir(at.join(dir.as_str())).map_err(|e| kind_of(&e))
    }

    fn read_dir(
        &mut self,
        stream: &mut fs::ReadDir,
        out: &mut EntryName,
    ) -> Result<bool, ErrorKind> {
        for entry in stream.by_ref() {
            let entry = entry.map_err(|e| kind_of(&e))?;
            let name = entry.file_name();
            out.clear();
            if out.extend_from_slice(name.as_encoded_bytes()).is_err() {
                continue;
            }
            return Ok(true);
        }
        Ok(false)
    }
}
