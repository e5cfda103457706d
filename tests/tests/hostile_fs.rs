//! Real faults under the real binary: a full disk (before and in the middle of a large message,
//! through every publish path), a read-only mount, a maildir the user cannot write (run as
//! `nobody` via setpriv), a missing cur/. Each case checks the exit code (default and
//! `--strict-exit`), the status line, and that tmp/, new/ and cur/ hold exactly what they held
//! before, and prints one row of the fault table (`--nocapture` shows them).
//!
//! The disk also fills up in the middle of an mbox import (`-M`): the messages before stay,
//! whole, the count is reported, nothing partial is visible.
//!
//! Root only (mount, setpriv): skipped with the reason printed otherwise.

mod cli_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cli_support::*;

/// A 1 MiB tmpfs under `under` holding an empty maildir, and the maildir's path; `None`
/// (with the reason printed) where no tmpfs can be mounted.
fn tmpfs_with_maildir(under: &Path) -> Option<(Tmpfs, PathBuf)> {
    let fs = Tmpfs::mount(under, "1m", "0755")?;
    let md = fs.mnt.join("Maildir");
    make_maildir(&md);
    Some((fs, md))
}

type Snapshot = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

fn snapshot(md: &Path) -> Snapshot {
    ["tmp", "new", "cur"]
        .iter()
        .map(|d| (d.to_string(), contents(&md.join(d))))
        .collect()
}

fn leftovers(before: &Snapshot, after: &Snapshot) -> String {
    if before == after {
        "tmp/ new/ cur/ unchanged".into()
    } else {
        format!("CHANGED: {after:?}")
    }
}

/// Standard error on one line: the status line and the `mdeliver: ...` line.
fn first_line(s: &str) -> String {
    s.lines().take(2).collect::<Vec<_>>().join(" / ")
}

/// Prints a row of the fault table.
fn row(case: &str, r: &Run, tmp: &Path, state: &str) {
    eprintln!(
        "| {case} | {} | `{}` | {state} |",
        r.code,
        normalize(&first_line(&r.stderr), tmp)
    );
}

fn message(len: usize) -> Vec<u8> {
    let mut m = b"Subject: fault test\n\n".to_vec();
    let mut i = 0u32;
    while m.len() < len {
        m.extend_from_slice(format!("{i:08}\n").as_bytes());
        i += 1;
    }
    m.truncate(len);
    m
}

/// Delivers a message of `len` bytes into `md` with `--no-fsync` and `env` (the publish path)
/// while the disk is too full for it, prints the fault-table row `case`, and asserts the honest
/// outcome: exit 75 with "no space left on device", and tmp/, new/ and cur/ exactly as before.
fn assert_no_space(case: &str, md: &Path, len: usize, env: &[(&str, &str)], tmp: &Path) {
    let before = snapshot(md);
    let r = run(&[&"--no-fsync", &md], &message(len), env);
    let after = snapshot(md);
    row(case, &r, tmp, &leftovers(&before, &after));
    assert_eq!(r.code, 75, "{case}: {}", r.stderr);
    assert!(r.stderr.contains("no space left on device"), "{}", r.stderr);
    assert_eq!(before, after, "{case}: maildir changed");
}

#[test]
fn full_disk_before_and_during_a_message() {
    let t = tempfile::tempdir().unwrap();
    let Some((fs, md)) = tmpfs_with_maildir(t.path()) else {
        return;
    };
    std::fs::write(md.join("cur").join("1.old.host:2,S"), b"old message\n").unwrap();
    for (disable, path) in PATHS {
        let env = [("MDELIVER_DISABLE", disable)];
        // Full before the delivery starts.
        fs.fill();
        let case = format!("disk full, {path}");
        assert_no_space(&case, &md, 10_000, &env, t.path());
        let r = run(
            &[&"--strict-exit", &"--no-fsync", &md],
            &message(10_000),
            &env,
        );
        assert_eq!(r.code, 75, "ENOSPC stays temporary with --strict-exit");
        fs.unfill();

        // Fills up in the middle: a 4 MiB message into 1 MiB.
        let case = format!("disk fills mid-message (4 MiB into 1 MiB), {path}");
        assert_no_space(&case, &md, 4 << 20, &env, t.path());
        // The space came back: a message of most of the filesystem fits again.
        let m = message(700 << 10);
        let r = run(&[&"--no-fsync", &md], &m, &env);
        assert_eq!(r.code, 0, "{path}: space was not given back: {}", r.stderr);
        for n in names(&md.join("new")) {
            std::fs::remove_file(md.join("new").join(n)).unwrap();
        }
    }
}

#[test]
fn read_only_mount() {
    let t = tempfile::tempdir().unwrap();
    let Some((fs, md)) = tmpfs_with_maildir(t.path()) else {
        return;
    };
    fs.remount("ro");
    let before = snapshot(&md);
    for (disable, path) in PATHS {
        let env = [("MDELIVER_DISABLE", disable)];
        let r = run(&[&md], &message(1000), &env);
        row(
            &format!("read-only mount, {path}"),
            &r,
            t.path(),
            &leftovers(&before, &snapshot(&md)),
        );
        assert_eq!(r.code, 75, "{path}: {}", r.stderr);
        assert!(r.stderr.contains("read-only file system"), "{}", r.stderr);
        let r = run(&[&"--strict-exit", &md], &message(1000), &env);
        assert_eq!(r.code, 77, "{path} --strict-exit: {}", r.stderr);
    }
    assert_eq!(before, snapshot(&md));
    fs.remount("rw");
}

/// An administrator's mount over new/ (a filesystem of its own there): every publish path
/// fails on `EXDEV`, which is said in words (not as an I/O error to look for in the system
/// log), defers (73 with `--strict-exit`, as a broken maildir), and leaves nothing behind.
#[test]
fn a_filesystem_mounted_over_new() {
    let t = tempfile::tempdir().unwrap();
    let Some((_fs, md)) = tmpfs_with_maildir(t.path()) else {
        return;
    };
    let over = md.join("new");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "mdeliver-over"])
        .arg(&over)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mount over new/");
    struct Over(PathBuf);
    impl Drop for Over {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _over = Over(over);
    let before = snapshot(&md);
    for (disable, path) in PATHS {
        let env = [("MDELIVER_DISABLE", disable)];
        let r = run(&[&md], &message(1000), &env);
        row(
            &format!("tmpfs mounted over new/, {path}"),
            &r,
            t.path(),
            &leftovers(&before, &snapshot(&md)),
        );
        assert_eq!(r.code, 75, "{path}: {}", r.stderr);
        assert!(
            r.stderr.contains(
                "4.2.0 mailbox unavailable: the maildir's directories are on different filesystems"
            ) && r.stderr.contains("is something mounted over one of them?"),
            "{path}: {}",
            r.stderr
        );
        let r = run(&[&"--strict-exit", &md], &message(1000), &env);
        assert_eq!(r.code, 73, "{path} --strict-exit: {}", r.stderr);
    }
    assert_eq!(before, snapshot(&md));
}

#[test]
fn maildir_the_user_cannot_write() {
    let t = tempfile::tempdir().unwrap();
    // The temporary directory itself must be traversable by nobody (the binary is copied
    // there by `run_as_nobody`).
    let mut p = std::fs::metadata(t.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(t.path(), p).unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let before = snapshot(&md);
    let Some(r) = run_as_nobody(t.path(), &[&md], &message(1000)) else {
        return;
    };
    row(
        "maildir owned by root, run as nobody",
        &r,
        t.path(),
        &leftovers(&before, &snapshot(&md)),
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    let r = run_as_nobody(t.path(), &[&"--strict-exit", &md], &message(1000)).unwrap();
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert_eq!(before, snapshot(&md));
}

#[test]
fn missing_cur() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    std::fs::remove_dir(md.join("cur")).unwrap();
    let r = run(&[&md], &message(1000), &[]);
    row(
        "missing cur/",
        &r,
        t.path(),
        &format!(
            "tmp/ {:?} new/ {:?}",
            names(&md.join("tmp")),
            names(&md.join("new"))
        ),
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("cur/"), "{}", r.stderr);
    let r = run(&[&"--strict-exit", &md], &message(1000), &[]);
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(names(&md.join("new")).is_empty() && names(&md.join("tmp")).is_empty());
    assert!(!md.join("cur").exists(), "cur/ created without -c");
    // -c repairs it.
    let r = run(&[&"-c", &md], &message(1000), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_delivered_once(&md, &message(1000));
}

#[test]
fn disk_fills_during_an_mbox_import() {
    let t = tempfile::tempdir().unwrap();
    let Some((_fs, md)) = tmpfs_with_maildir(t.path()) else {
        return;
    };
    // 20 messages of 100 KiB: about 9 fit.
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let mut m = format!("X-Import: {i}\n\n").into_bytes();
            m.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 100 << 10));
            m.push(b'\n');
            m
        })
        .collect();
    let mut mbox = Vec::new();
    for b in &bodies {
        mbox.extend_from_slice(b"From sender@example.org Sat Nov 28 18:03:09 2026\n");
        mbox.extend_from_slice(b);
        mbox.push(b'\n');
    }
    let r = run(&[&"-M", &"-v", &"--no-fsync", &md], &mbox, &[]);
    let new = contents(&md.join("new"));
    let cur = contents(&md.join("cur"));
    let tmp = names(&md.join("tmp"));
    row(
        "disk fills during an mbox import (20 x 100 KiB into 1 MiB)",
        &r,
        t.path(),
        &format!(
            "{} whole messages in new/, cur/ {}, tmp/ {}",
            new.len(),
            cur.len(),
            tmp.len()
        ),
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("no space left on device"), "{}", r.stderr);
    assert!(!new.is_empty() && new.len() < 20, "{} delivered", new.len());
    assert!(
        cur.is_empty() && tmp.is_empty(),
        "cur/ {cur:?} tmp/ {tmp:?}"
    );
    // Every stored message is one of the first ones, whole; together exactly a prefix.
    let mut got: Vec<usize> = new
        .values()
        .map(|c| {
            bodies
                .iter()
                .position(|b| b == c)
                .expect("a stored message is partial")
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        (0..new.len()).collect::<Vec<_>>(),
        "not a prefix of the mbox"
    );
    // -v printed each, and the count is reported.
    assert_eq!(r.stdout.lines().count(), new.len(), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!("{} message", new.len())),
        "count not reported: {}",
        r.stderr
    );
}
