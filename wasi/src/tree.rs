//! `--folder NAME` inside the sandbox: the core's folder-creation procedure
//! ([`create_folder`]) carried out with std::fs on a maildir inside the preopened directory.
//!
//! WASI preview 1 has `path_create_directory`, exclusive `path_open` and `path_rename`, but no
//! rename that refuses to replace: a plain rename of a directory replaces only an *empty*
//! directory (onto a non-empty one it fails with `ENOTEMPTY`/`EEXIST`), and a folder made by
//! anyone else is never empty (it holds tmp/, new/ and cur/), so it cannot destroy one. As
//! everywhere in the module, the runtime resolves every path inside the preopen.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(target_os = "wasi")]
use std::os::wasi::ffi::OsStrExt;

use mdeliver_core::maildir::folder::{
    create_folder, FolderDir, FolderFailure, FolderTree, NameEncoding, Part, TreeDir,
};
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::{Env, ErrorKind, Fs};

use crate::fs::{kind_of, WasiFs};

/// The parent maildir of a folder, by its path inside the sandbox.
pub struct WasiTree {
    root: PathBuf,
}

impl WasiTree {
    /// The tree of the maildir at `root`.
    pub fn new(root: &Path) -> WasiTree {
        WasiTree {
            root: root.to_path_buf(),
        }
    }

    fn staging(&self, staging: &str) -> PathBuf {
        self.root.join("tmp").join(staging)
    }
}

/// Whether a rename failed because the target is a directory that is not empty (or exists).
fn taken(e: &io::Error) -> bool {
    // std on wasm32-wasip1 leaves WASI's ENOTEMPTY (55) uncategorized (seen under wasmtime).
    #[cfg(target_os = "wasi")]
    if e.raw_os_error() == Some(55) {
        return true;
    }
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
    )
}

fn unit(r: io::Result<()>) -> Result<(), ErrorKind> {
    r.map_err(|e| kind_of(&e))
}

impl FolderTree for WasiTree {
    fn folder_exists(&mut self, folder: &[u8]) -> Result<bool, ErrorKind> {
        match fs::symlink_metadata(self.root.join(OsStr::from_bytes(folder))) {
            Ok(m) if m.is_dir() => Ok(true),
            // A file or a symbolic link where the folder should be: never followed.
            Ok(_) => Err(ErrorKind::NotDirectory),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(kind_of(&e)),
        }
    }

    fn make_staging(&mut self, staging: &str) -> Result<(), ErrorKind> {
        unit(fs::create_dir(self.staging(staging)))
    }

    fn make_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind> {
        let path = self.staging(staging).join(part.name());
        match part {
            Part::Sub(_) => unit(fs::create_dir(path)),
            Part::Marker => unit(File::create_new(path).map(drop)),
        }
    }

    fn sync_dir(&mut self, dir: TreeDir<'_>) -> Result<(), ErrorKind> {
        let path = match dir {
            TreeDir::Parent => self.root.clone(),
            TreeDir::Tmp => self.root.join("tmp"),
            TreeDir::Staging(s) => self.staging(s),
        };
        unit(File::open(path).and_then(|f| f.sync_all()))
    }

    fn place(&mut self, staging: &str, folder: &[u8]) -> Result<bool, ErrorKind> {
        let to = self.root.join(OsStr::from_bytes(folder));
        match fs::rename(self.staging(staging), to) {
            Ok(()) => Ok(true),
            Err(e) if taken(&e) => Ok(false),
            Err(e) => Err(kind_of(&e)),
        }
    }

    fn remove_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind> {
        let path = self.staging(staging).join(part.name());
        match part {
            Part::Sub(_) => unit(fs::remove_dir(path)),
            Part::Marker => unit(fs::remove_file(path)),
        }
    }

    fn remove_staging(&mut self, staging: &str) -> Result<(), ErrorKind> {
        unit(fs::remove_dir(self.staging(staging)))
    }
}

/// [`mdeliver_driver::folder_report::resolve`] in the sandbox: with `create`, the parent
/// maildir and the folder are created where missing, and with `sync` flushed where the runtime
/// can flush directories (the same probe as [`WasiFs::open`]'s: wasmtime refuses `fd_sync` on
/// directories).
pub fn resolve_folder<E: Env + ?Sized>(
    maildir: &Path,
    name: &[u8],
    naming: (InfoSep, NameEncoding),
    create: bool,
    sync: bool,
    env: &mut E,
) -> Result<(PathBuf, Option<FolderDir>), FolderFailure> {
    mdeliver_driver::folder_report::resolve(maildir, name, naming, create, |dir| {
        // The parent is a maildir in its own right (the INBOX): make it complete first.
        let parent = WasiFs::open(maildir, true).map_err(|(k, d)| FolderFailure::Parent(k, d))?;
        let sync = sync && parent.capabilities().dir_sync;
        create_folder(&mut WasiTree::new(maildir), env, dir, sync).map_err(FolderFailure::Create)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdeliver_core::env::Timestamp;
    use mdeliver_core::maildir::folder::FolderError;

    struct TestEnv(u64);

    impl Env for TestEnv {
        fn now(&mut self) -> Timestamp {
            Timestamp {
                secs: 1_700_000_000,
                micros: 0,
            }
        }
        fn random_u64(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
        fn pid(&self) -> Option<u32> {
            None
        }
        fn host(&self) -> &str {
            "wasi"
        }
        fn next_counter(&mut self) -> u64 {
            self.0
        }
        fn sleep(&mut self, _millis: u32) {}
    }

    /// A fresh directory under the temporary directory (in WASI, which has no pid and no
    /// `temp_dir`, the host preopens one at `/tmp`; the clock tells runs apart).
    fn scratch(tag: &str) -> PathBuf {
        let tmp = if cfg!(target_os = "wasi") {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = tmp.join(format!("mdeliver-wasi-tree-{tag}-{nanos}"));
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn resolve(md: &Path, name: &[u8], create: bool) -> Result<PathBuf, FolderFailure> {
        resolve_folder(
            md,
            name,
            (InfoSep::COLON, NameEncoding::Utf8),
            create,
            true,
            &mut TestEnv(0),
        )
        .map(|(p, _)| p)
    }

    #[test]
    fn creates_the_parent_and_the_folder() {
        let base = scratch("create");
        let md = base.join("Maildir");
        assert_eq!(
            resolve(&md, b"Lists/rust", true),
            Ok(md.join(".Lists.rust"))
        );
        assert_eq!(names(&md), [".Lists.rust", "cur", "new", "tmp"]);
        let f = md.join(".Lists.rust");
        assert_eq!(names(&f), ["cur", "maildirfolder", "new", "tmp"]);
        assert_eq!(fs::metadata(f.join("maildirfolder")).unwrap().len(), 0);
        assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
        // Again: the folder is used as it is.
        fs::write(f.join("new").join("kept"), b"x").unwrap();
        assert_eq!(resolve(&md, b"Lists.rust", true), Ok(f.clone()));
        assert_eq!(fs::read(f.join("new").join("kept")).unwrap(), b"x");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_foreign_folder_is_never_replaced() {
        let base = scratch("race");
        let md = base.join("Maildir");
        WasiFs::open(&md, true).unwrap();
        let mut tree = WasiTree::new(&md);
        // Ours is built; theirs appears before the rename.
        tree.make_staging("s").unwrap();
        for part in Part::ALL {
            tree.make_part("s", part).unwrap();
        }
        fs::create_dir_all(md.join(".Sent").join("new")).unwrap();
        fs::write(md.join(".Sent").join("new").join("theirs"), b"t").unwrap();
        assert_eq!(tree.place("s", b".Sent"), Ok(false));
        assert_eq!(names(&md.join(".Sent").join("new")), ["theirs"]);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn refusals() {
        let base = scratch("refuse");
        let md = base.join("Maildir");
        assert_eq!(
            resolve(&md, b"../x", true),
            Err(FolderFailure::Name(FolderError::DotDot))
        );
        assert!(!md.exists(), "nothing is created for a refused name");
        assert_eq!(resolve(&md, b"INBOX", true), Ok(md.clone()));
        assert_eq!(resolve(&md, b"A", false), Ok(md.join(".A")));
        assert!(!md.exists(), "nothing is created without create");
        WasiFs::open(&md, true).unwrap();
        fs::write(md.join(".A"), b"").unwrap();
        assert_eq!(
            resolve(&md, b"A", true),
            Err(FolderFailure::Create(ErrorKind::NotDirectory))
        );
        assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
        fs::remove_dir_all(&base).unwrap();
    }
}
