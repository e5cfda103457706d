//! Shared helpers for the end-to-end tests of the `mdeliver` binary (`cli_*.rs`).
//!
//! Finding the binary: integration tests of `mdeliver-tests` cannot use
//! `CARGO_BIN_EXE_mdeliver` (that only exists for binaries of the same package), so the first
//! test of each test binary runs `cargo build -p mdeliver` into the same target directory and
//! profile as the running test (derived from the test executable's own path), once per
//! process. Under `cargo test` that build is a no-op when `mdeliver` is already fresh. Set
//! `MDELIVER_BIN=/path/to/mdeliver` to test a prebuilt binary instead.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The `mdeliver` binary under test, built on first use.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("MDELIVER_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current_exe");
        // <target>/<profile>/deps/<test binary>
        let profile_dir = exe.parent().and_then(Path::parent).expect("target layout");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "mdeliver", "--bin", "mdeliver"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("run cargo build -p mdeliver");
        assert!(status.success(), "cargo build -p mdeliver failed");
        let bin = profile_dir.join("mdeliver");
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `mdeliver args...` with `stdin` piped in and `env` set (and `MDELIVER_DISABLE`
/// cleared unless given).
pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8], env: &[(&str, &str)]) -> Run {
    run_via(&[], None, None, args, stdin, env)
}

/// Like [`run`], in the working directory `cwd`.
pub fn run_in(
    cwd: &Path,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Run {
    run_via(&[], None, Some(cwd), args, stdin, env)
}

/// Like [`run`], as the unprivileged user `nobody` (uid and gid 65534), through `setpriv`.
/// The binary is first copied into `dir` (which `nobody` must be able to enter), since the
/// target directory may not be reachable for `nobody`. `None` (with the reason printed) when
/// this is impossible: not root, or no `setpriv` (util-linux).
pub fn run_as_nobody(
    dir: &Path,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    stdin: &[u8],
) -> Option<Run> {
    if !is_root() {
        eprintln!("skipped: only root can run a command as nobody");
        return None;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return None;
    }
    let copy = dir.join("mdeliver");
    if !copy.exists() {
        std::fs::copy(bin(), &copy).unwrap();
    }
    let prefix = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    // Another test thread that forks while the copy's write descriptor is still open holds it
    // until that child execs, and executing the copy meanwhile fails with ETXTBSY ("Text file
    // busy", exit 126 from setpriv). That is a race of the test process, not of mdeliver: run
    // again after a pause.
    let mut attempts = 0;
    loop {
        let r = run_via(&prefix, Some(&copy), None, args, stdin, &[]);
        attempts += 1;
        if r.code == 126 && r.stderr.contains("Text file busy") && attempts < 20 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        return Some(r);
    }
}

/// Runs `prefix... mdeliver args...`.
fn run_via(
    prefix: &[&str],
    binary: Option<&Path>,
    cwd: Option<&Path>,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Run {
    let binary = binary.unwrap_or(bin());
    let mut cmd = match prefix.split_first() {
        None => Command::new(binary),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(binary);
            c
        }
    };
    for a in args {
        cmd.arg(a);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.env_remove("MDELIVER_DISABLE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mdeliver");
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Write from another thread: the child may exit (or block on output) before reading all.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait mdeliver");
    writer.join().unwrap();
    Run {
        code: out.status.code().expect("exited by signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Creates a maildir (tmp/, new/, cur/) at `path` with plain std calls.
pub fn make_maildir(path: &Path) {
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(path.join(d)).unwrap();
    }
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The files of `dir` by name with their contents.
pub fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    names(dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// The file name of the message path `mdeliver -v` printed (one delivery) on `stdout`.
pub fn delivered_name(stdout: &[u8]) -> String {
    let path = String::from_utf8_lossy(stdout);
    let name = Path::new(path.trim_end())
        .file_name()
        .expect("a delivered path");
    name.to_str().expect("an ASCII name").to_owned()
}

/// Asserts that tmp/, new/ and cur/ of `md` are empty (`what` names the case on failure).
pub fn assert_untouched(md: &Path, what: &str) {
    for d in ["tmp", "new", "cur"] {
        assert_eq!(
            names(&md.join(d)),
            Vec::<String>::new(),
            "{what}: {d}/ of {}",
            md.display()
        );
    }
}

/// Asserts that `maildir` holds exactly `message` once in new/, nothing in tmp/ or cur/, and
/// that the file is a private regular file whose name carries the right size. Returns its name.
pub fn assert_delivered_once(maildir: &Path, message: &[u8]) -> String {
    let new = contents(&maildir.join("new"));
    assert_eq!(
        new.len(),
        1,
        "new/ of {}: {:?}",
        maildir.display(),
        new.keys()
    );
    let (name, bytes) = new.into_iter().next().unwrap();
    assert!(bytes == message, "delivered bytes differ from the input");
    assert_eq!(
        names(&maildir.join("tmp")),
        Vec::<String>::new(),
        "tmp/ not empty"
    );
    assert_eq!(
        names(&maildir.join("cur")),
        Vec::<String>::new(),
        "cur/ not empty"
    );
    let meta = std::fs::symlink_metadata(maildir.join("new").join(&name)).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.mode() & 0o777, 0o600, "message file mode");
    assert_eq!(meta.nlink(), 1, "a second name of the message exists");
    let mut crlf = mdeliver_core::fs::CrlfSize::default();
    crlf.feed(message);
    let sizes = format!(",S={},W={}", message.len(), crlf.size());
    assert!(name.ends_with(&sizes), "{name}");
    assert!(!name.contains(":2,"), "info in a new/ name: {name}");
    name
}

/// Replaces the temporary directory in `s` with `[TMP]`, for snapshots.
pub fn normalize(s: &str, tmp: &Path) -> String {
    s.replace(tmp.to_str().unwrap(), "[TMP]")
}

/// Whether strace can be run; when not, says that the calling test is skipped.
pub fn strace_installed() -> bool {
    let found = Command::new("strace").arg("-V").output().is_ok();
    if !found {
        eprintln!("skipped: strace is not installed (scripts/test-all.sh installs it)");
    }
    found
}

/// Whether this process runs as root (the owner of /proc/self is the effective uid).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The capability sets that force each publish path, with the path's name as `-vv` reports it.
pub const PATHS: [(&str, &str); 4] = [
    ("", "anonymous-link"),
    ("anonymous-tmp", "rename-noreplace"),
    ("anonymous-tmp,rename-noreplace", "link-unlink"),
    (
        "anonymous-tmp,rename-noreplace,hard-links",
        "checked-rename",
    ),
];

/// A small tmpfs for real faults (full, read-only), unmounted on drop. Root only.
pub struct Tmpfs {
    /// Where it is mounted.
    pub mnt: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"256k"`) with root directory `mode` (e.g. `"0700"`) at
    /// `under/mnt`; `None`, with the reason printed, when not root or when mounting fails
    /// (e.g. an unprivileged container).
    pub fn mount(under: &Path, size: &str, mode: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let mnt = under.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode={mode}")])
            .arg("mdeliver-test")
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { mnt }),
            Ok(o) => {
                eprintln!(
                    "skipped: mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    /// Writes a file outside the maildir until the filesystem is full, to the last byte.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.mnt.join("filler")).unwrap();
        let block = vec![0x55u8; 4096];
        while f.write_all(&block).is_ok() {}
        // Also use up the last partial block.
        while f.write_all(&block[..1]).is_ok() {}
    }

    /// Frees what [`Tmpfs::fill`] took.
    pub fn unfill(&self) {
        std::fs::remove_file(self.mnt.join("filler")).unwrap();
    }

    /// Remounts with `opt` (`"ro"`, `"rw"`).
    pub fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.mnt)
            .status()
            .unwrap();
        assert!(st.success(), "remount {opt}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// Makes the system user `user` (no home, no login, primary group `users`) and the group
/// `group` where missing, and puts the user in the group; gives the group's id. Root only.
pub fn user_in_group(user: &str, group: &str) -> u32 {
    let (ok, out) = sh(&format!(
        "getent group {group} >/dev/null || groupadd {group}; \
         id -u {user} >/dev/null 2>&1 || useradd -M -N -s /usr/sbin/nologin {user}; \
         usermod -a -G {group} {user}"
    ));
    assert!(ok, "{out}");
    let (_, gid) = sh(&format!("getent group {group} | cut -d: -f3"));
    gid.trim().parse().unwrap()
}

/// Runs `cmd` with `sh -c`: whether it succeeded, and its standard output then standard error.
pub fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Postfix (with its `smtp-source`) installed from Debian's package if it is missing, for the
/// end-to-end tests that run a private Postfix instance.
pub fn ensure_postfix() -> Result<(), String> {
    let present =
        || Path::new("/usr/sbin/postfix").exists() && Path::new("/usr/sbin/smtp-source").exists();
    if present() {
        return Ok(());
    }
    let (ok, out) = sh(
        "timeout 300 sh -c 'apt-get update -qq && echo \"postfix postfix/main_mailer_type select No configuration\" \
         | debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix' 2>&1 | tail -5",
    );
    if ok && present() {
        Ok(())
    } else {
        Err(format!("cannot install postfix: {out}"))
    }
}
