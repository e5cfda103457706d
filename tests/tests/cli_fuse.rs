//! A FUSE filesystem for real: as root, bindfs mirrors a temporary directory. It answers the
//! way GlusterFS and MooseFS do (`renameat2(RENAME_NOREPLACE)` gives `EINVAL` on a missing
//! target and `EEXIST` on an existing one; `O_TMPFILE` is refused) and `statfs` says FUSE, so
//! mdeliver must treat it as a network filesystem: the `Locked` strategy with link + unlink,
//! said with `-vv`, and concurrent deliveries that lose, duplicate and leave nothing behind.
//! bindfs is installed with apt-get when missing; skipped, with the reason printed, when not
//! root or when it cannot be mounted. The multi-host runs on GlusterFS are
//! `scripts/test-multihost.sh`.

mod cli_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::*;
use rustix::fs::{self as rfs, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

/// A bindfs mount of `back` at `mnt`, unmounted on drop.
struct Bindfs {
    back: PathBuf,
    mnt: PathBuf,
}

impl Bindfs {
    fn mount(under: &Path) -> Option<Bindfs> {
        if !is_root() {
            eprintln!("skipped: mounting a FUSE filesystem needs root");
            return None;
        }
        if Command::new("bindfs").arg("--version").output().is_err() {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "timeout 300 sh -c 'apt-get install -y -qq bindfs || \
                     (apt-get update -qq && apt-get install -y -qq bindfs)' >/dev/null 2>&1",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        let (back, mnt) = (under.join("back"), under.join("mnt"));
        std::fs::create_dir(&back).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        match Command::new("bindfs").arg(&back).arg(&mnt).output() {
            Ok(o) if o.status.success() => Some(Bindfs { back, mnt }),
            Ok(o) => {
                eprintln!(
                    "skipped: bindfs failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: bindfs is not installed ({e}; apt-get install bindfs)");
                None
            }
        }
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        // Lazily when busy: a process forked by a concurrent test thread may briefly hold a
        // descriptor inherited from a delivery into the mount.
        let quiet = || std::process::Stdio::null();
        let unmounted = Command::new("umount")
            .arg(&self.mnt)
            .stderr(quiet())
            .status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// The premise: what a probe meets on such a filesystem.
#[test]
fn fuse_answers_rename_noreplace_like_glusterfs() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Bindfs::mount(t.path()) else {
        return;
    };
    let (a, b, c) = (fs.mnt.join("a"), fs.mnt.join("b"), fs.mnt.join("c"));
    std::fs::write(&a, b"a").unwrap();
    std::fs::write(&c, b"c").unwrap();
    let noreplace = |to: &Path| rfs::renameat_with(CWD, &a, CWD, to, RenameFlags::NOREPLACE);
    assert_eq!(noreplace(&b), Err(Errno::INVAL), "missing target");
    assert_eq!(noreplace(&c), Err(Errno::EXIST), "existing target");
    let tmpfile = rfs::openat(CWD, &fs.mnt, OFlags::TMPFILE | OFlags::WRONLY, Mode::RUSR);
    assert_eq!(tmpfile.err(), Some(Errno::OPNOTSUPP));
    assert_eq!(
        rfs::statfs(&fs.mnt).unwrap().f_type as u64,
        0x6573_5546,
        "FUSE_SUPER_MAGIC"
    );
}

/// Replaces the delivered message's name with `[NAME]`.
fn scrub(stderr: &str, tmp: &Path, name: &str) -> String {
    normalize(stderr, tmp).replace(name, "[NAME]")
}

#[test]
fn a_fuse_maildir_gets_the_lock_and_link_unlink_and_says_why() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Bindfs::mount(t.path()) else {
        return;
    };
    let md = fs.mnt.join("M");
    let msg = b"Subject: fuse\n\nlocked\n";
    let r = run(&[&"-c", &"-vv", &md], msg, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let name = assert_delivered_once(&fs.back.join("M"), msg);
    let mut said = scrub(&r.stderr, t.path(), &name);
    let root: BTreeSet<String> = names(&fs.back.join("M")).into_iter().collect();
    assert_eq!(
        root,
        ["cur", "new", "tmp"].map(String::from).into(),
        "lock released"
    );

    // The experiment's knob: the unsafe combination on purpose, and said so.
    let r = run(
        &[&"-vv", &md],
        msg,
        &[("MDELIVER_TEST_STRATEGY", "exclusive")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let new = names(&fs.back.join("M/new"));
    let second = new.iter().find(|n| **n != name).unwrap();
    said.push_str(&scrub(&r.stderr, t.path(), second));
    // Without -vv nothing is said.
    let r = run(&[&md], msg, &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    insta::assert_snapshot!("fuse_vv", said);
}

#[test]
fn concurrent_deliveries_into_a_fuse_maildir_lose_and_duplicate_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Bindfs::mount(t.path()) else {
        return;
    };
    let md = fs.mnt.join("M");
    let r = run(&[&"-c", &md], b"first\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (writers, each) = (4, 6);
    std::thread::scope(|s| {
        for w in 0..writers {
            let md = &md;
            s.spawn(move || {
                for i in 0..each {
                    let body = format!("Subject: {w}-{i}\n\nfrom writer {w}, message {i}\n");
                    let r = run(&[&md], body.as_bytes(), &[]);
                    assert_eq!(r.code, 0, "{w}-{i}: {}", r.stderr);
                }
            });
        }
    });
    let mut want: BTreeSet<Vec<u8>> = (0..writers)
        .flat_map(|w| {
            (0..each).map(move |i| {
                format!("Subject: {w}-{i}\n\nfrom writer {w}, message {i}\n").into_bytes()
            })
        })
        .collect();
    want.insert(b"first\n".to_vec());
    let got: Vec<Vec<u8>> = contents(&fs.back.join("M/new")).into_values().collect();
    assert_eq!(got.len(), want.len(), "a message lost or duplicated");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(names(&fs.back.join("M/tmp")), Vec::<String>::new());
    assert_eq!(names(&fs.back.join("M")).len(), 3, "a lock file was left");
    // A reader's listing sees them all and writes nothing (no probe file in tmp/).
    let r = run(&[&"list", &md], b"", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), want.len());
    assert_eq!(names(&fs.back.join("M/tmp")), Vec::<String>::new());
}

/// On a local filesystem rename-noreplace is not probed: the first publish finds out. A
/// kernel that answers `EINVAL` there (strace injects it) makes the delivery fall back to
/// link + unlink instead of failing.
#[test]
fn einval_from_rename_noreplace_falls_back_to_link_unlink() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (apt-get install strace)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("M");
    make_maildir(&md);
    std::fs::write(t.path().join("msg"), b"Subject: einval\n\nx\n").unwrap();
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=renameat2:error=EINVAL",
        ])
        .arg(bin())
        .args(["-vv", "-i"])
        .arg(t.path().join("msg"))
        .arg(&md)
        .env("MDELIVER_DISABLE", "anonymous-tmp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("bytes via link-unlink"), "{stderr}");
    assert_delivered_once(&md, b"Subject: einval\n\nx\n");
}

/// `-M` onto a FUSE maildir gets the strategy the probe chose, like a one-shot delivery: every
/// message takes the maildir lock (strace sees its link) and the lock is released; forcing
/// Exclusive (the control) takes none.
#[test]
fn an_mbox_import_onto_a_fuse_maildir_takes_the_lock_for_every_message() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (apt-get install strace)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Bindfs::mount(t.path()) else {
        return;
    };
    let mbox: String = (1..=3)
        .map(|i| {
            format!("From a@example.org Sat Jan  1 00:00:00 2000\nSubject: {i}\n\nbody {i}\n\n")
        })
        .collect();
    std::fs::write(t.path().join("mbox"), &mbox).unwrap();
    // The links strace saw whose target is the maildir's lock.
    let import = |md: &Path, strategy: Option<&str>| -> (String, usize) {
        let trace = t.path().join("trace");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=linkat", "-o"])
            .arg(&trace)
            .arg(bin())
            .args(["-M", "-c", "-vv"])
            .arg(md)
            .stdin(std::fs::File::open(t.path().join("mbox")).unwrap());
        if let Some(s) = strategy {
            cmd.env("MDELIVER_TEST_STRATEGY", s);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let locks = std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .filter(|l| l.contains(", \"mdeliver.lock\", 0) = 0"))
            .count();
        (stderr, locks)
    };
    let want: BTreeSet<Vec<u8>> = (1..=3)
        .map(|i| format!("Subject: {i}\n\nbody {i}\n").into_bytes())
        .collect();
    for (dir, strategy, locks_taken) in [("L", None, 3), ("X", Some("exclusive"), 0)] {
        let (stderr, locks) = import(&fs.mnt.join(dir), strategy);
        let back = fs.back.join(dir);
        assert_eq!(locks, locks_taken, "{dir}: {stderr}");
        let said = if strategy.is_none() {
            "strategy locked with link-unlink"
        } else {
            "strategy exclusive"
        };
        assert!(stderr.contains(said), "{stderr}");
        let got: Vec<Vec<u8>> = contents(&back.join("new")).into_values().collect();
        assert_eq!(got.len(), 3, "{dir}: a message lost or duplicated");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want, "{dir}");
        assert_eq!(
            names(&back),
            ["cur", "new", "tmp"],
            "{dir}: the lock was left"
        );
        assert_eq!(names(&back.join("tmp")), Vec::<String>::new(), "{dir}");
    }
}
