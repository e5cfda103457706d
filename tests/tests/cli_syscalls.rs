//! The system calls of one plain delivery, counted with strace (issue 14: at most 40 from
//! `execve` to `exit_group` for the statically linked binary, as `bench/peers.sh` counts them).
//! A count, not a timing: it does not depend on the machine's load.
//!
//! The test suite runs the dynamically linked debug build, whose C runtime and dynamic loader
//! make some 40 calls before `main`, and whose std checks each descriptor it closes
//! (`fcntl(F_GETFD)`, debug builds only). So what is counted is mdeliver's own part: from its
//! first call (the `poll` of `cli/src/start.rs`) to `exit_group`, without those checks; the
//! static musl build adds 4 before it (`execve`, `arch_prctl`, `set_tid_address` and the
//! thread-local block's `mmap`). With `MDELIVER_BIN` naming a statically linked build, its
//! whole count is checked too.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli_support::*;

/// The whole budget, `execve` to `exit_group`.
const BUDGET: usize = 40;
/// What the static musl build's C runtime does before `main`.
const STATIC_START: usize = 4;

/// A fresh maildir in a temporary directory, or `None` (the test is skipped, and says so)
/// where strace is not installed.
fn traced_maildir() -> Option<(tempfile::TempDir, PathBuf)> {
    if !strace_installed() {
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    Some((t, md))
}

/// The lines strace wrote for one run of mdeliver with `args` (only the calls `only` names,
/// when given), its standard input `input` written to a file first (as an MTA's queue file),
/// `MDELIVER_DISABLE` set to `disable`, the mail log sent to a socket in `dir`; without the
/// lines of calls resumed or of exits.
fn strace(
    dir: &Path,
    only: Option<&str>,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    input: &[u8],
    disable: &str,
) -> Vec<String> {
    let file = dir.join("input");
    std::fs::write(&file, input).unwrap();
    let out = dir.join("strace.txt");
    let mut cmd = Command::new("strace");
    cmd.arg("-qq");
    if let Some(calls) = only {
        cmd.arg("-e").arg(format!("trace={calls}"));
    }
    let st = cmd
        .arg("-o")
        .arg(&out)
        .arg(bin())
        .args(args.iter().map(|a| a.as_ref()))
        .env("MDELIVER_DISABLE", disable)
        .env("MDELIVER_TEST_SYSLOG", dir.join("log"))
        .stdin(std::fs::File::open(&file).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{st}");
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("resumed>") && !l.starts_with("+++"))
        .map(|l| l.to_owned())
        .collect()
}

fn name(line: &str) -> &str {
    line.split('(').next().unwrap_or("")
}

/// The flushes (and links between them) of one run of mdeliver with `args`, in order.
fn flushes(
    dir: &Path,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    input: &[u8],
    disable: &str,
) -> Vec<String> {
    let calls = "fsync,fdatasync,sync_file_range,linkat,syncfs";
    let lines = strace(dir, Some(calls), args, input, disable);
    lines.iter().map(|l| name(l).to_owned()).collect()
}

#[test]
fn a_plain_delivery_makes_at_most_40_system_calls() {
    let Some((t, md)) = traced_maildir() else {
        return;
    };
    let msg = b"From: a@example.org\nMessage-ID: <count@example.org>\nSubject: count\n\nbody\n";
    // A test-owned datagram socket stands for /dev/log (a daemon listening there or none
    // costs the same two calls; a stream socket would take the fallback's connection).
    let log = std::os::unix::net::UnixDatagram::bind(t.path().join("log")).unwrap();
    log.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let lines = strace(t.path(), None, &[&md], msg, "");
    let mut buf = [0u8; 4096];
    let n = log.recv(&mut buf).expect("the mail log's line");
    let line = String::from_utf8_lossy(&buf[..n]);
    assert!(
        line.contains("msgid=<count@example.org>: saved mail to "),
        "{line}"
    );
    assert_eq!(names(&md.join("new")).len(), 1, "delivered");

    let first = lines
        .iter()
        .position(|l| l.starts_with("poll("))
        .expect("start.rs's poll");
    let own: Vec<&str> = lines[first..]
        .iter()
        .filter(|l| !(l.starts_with("fcntl(") && l.contains("F_GETFD")))
        .map(|l| l.as_str())
        .collect();
    let report = own.join("\n");
    assert_eq!(own.last().map(|l| name(l)), Some("exit_group"), "{report}");
    assert!(
        own.len() + STATIC_START <= BUDGET,
        "{} system calls from start.rs's poll to exit_group (+{STATIC_START} before main in \
         the static build) > {BUDGET}:\n{report}",
        own.len()
    );
    // What keeps it there: no allocator calls (the start-up arena), no signal handlers on the
    // O_TMPFILE path, the mail log as one socket and one sendto (no connect, no close).
    let count = |call: &str| own.iter().filter(|l| name(l) == call).count();
    for call in [
        "brk",
        "mmap",
        "munmap",
        "geteuid",
        "getcwd",
        "connect",
        "rt_sigprocmask",
    ] {
        assert_eq!(count(call), 0, "{call}:\n{report}");
    }
    assert_eq!(count("rt_sigaction"), 1, "only SIGPIPE's:\n{report}");
    assert_eq!(count("socket"), 1, "{report}");
    assert_eq!(count("sendto"), 1, "{report}");

    // A statically linked build (MDELIVER_BIN): the whole count, execve to exit_group.
    let dynamic = lines[..first].iter().any(|l| l.contains(".so"));
    if !dynamic {
        assert!(
            lines.len() <= BUDGET,
            "{} system calls from execve to exit_group > {BUDGET}:\n{}",
            lines.len(),
            lines.join("\n")
        );
    }
}

/// `-M` flushes each window of 64 messages with one `syncfs` where the kernel reports
/// write-back errors through it (Linux 5.8 and later), so no message file gets an `fdatasync`
/// of its own; on an older kernel, each file is flushed by itself. 150 messages are three
/// windows (64, 64, 22).
#[test]
fn an_import_flushes_each_window_at_once() {
    let Some((t, md)) = traced_maildir() else {
        return;
    };
    let n = 150;
    let mut mbox = Vec::new();
    for i in 0..n {
        mbox.extend_from_slice(
            format!("From a@example.org Sat Nov 28 18:03:09 2026\nSubject: {i}\n\nbody {i}\n\n")
                .as_bytes(),
        );
    }
    let lines = strace(
        t.path(),
        Some("fdatasync,fsync,syncfs"),
        &[&"-M", &md],
        &mbox,
        "",
    );
    assert_eq!(names(&md.join("new")).len(), n, "delivered");
    let count = |call: &str| lines.iter().filter(|l| name(l) == call).count();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let report = lines.join("\n");
    if mdeliver_core::lmtp::commit::syncfs_reports_errors(release.trim()) {
        assert_eq!((count("syncfs"), count("fdatasync")), (3, 0), "{report}");
    } else {
        assert_eq!((count("syncfs"), count("fdatasync")), (0, n), "{report}");
    }
    // new/ is flushed once, at the end (150 messages are one batch of the directory flushes).
    assert_eq!(count("fsync"), 1, "{report}");
}

/// A loop-mounted ext4 filesystem of the test's own, unmounted when dropped.
struct Ext4 {
    dir: tempfile::TempDir,
}

impl Ext4 {
    /// A fresh one, or `None` (the test is skipped, and says so) without root, `mkfs.ext4` or
    /// loop devices.
    fn new() -> Option<Ext4> {
        Ext4::made_with(&[])
    }

    /// A fresh one made with these extra `mkfs.ext4` options.
    fn made_with(options: &[&str]) -> Option<Ext4> {
        if !is_root() {
            eprintln!("skipped: needs root to mount an ext4 image");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("ext4.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let ok = |c: &mut Command| c.stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !ok(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(options)
            .arg(&img))
            || !ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt))
        {
            eprintln!("skipped: cannot make and mount an ext4 image here");
            return None;
        }
        Some(Ext4 { dir })
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

/// A maildir on a fresh ext4 made with these extra `mkfs.ext4` options, or `None` (the test
/// is skipped, and says so) without strace, root or loop devices.
fn traced_ext4_maildir(options: &[&str]) -> Option<(Ext4, PathBuf)> {
    if !strace_installed() {
        return None;
    }
    let fs = Ext4::made_with(options)?;
    let md = fs.mnt().join("Maildir");
    make_maildir(&md);
    Some((fs, md))
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt()).status();
    }
}

/// On ext4, whose journal commit flushes the device's cache before its record, a delivery
/// writes its file back (`sync_file_range`) and then makes file and name durable with the one
/// flush of new/ after the link: one journal commit, not two. `MDELIVER_DISABLE=ordered-commit`
/// flushes the file on its own first, as on every other filesystem.
#[test]
fn on_ext4_the_file_is_written_back_and_one_flush_of_new_commits_both() {
    let Some((fs, md)) = traced_ext4_maildir(&[]) else {
        return;
    };
    let run = |disable: &str| flushes(fs.dir.path(), &[&md], b"Subject: x\n\nbody\n", disable);
    assert_eq!(run(""), ["sync_file_range", "linkat", "fsync"]);
    assert_eq!(run("ordered-commit"), ["fdatasync", "linkat", "fsync"]);
    assert_eq!(names(&md.join("new")).len(), 2);
}

/// With `--quota` and `--dedup` on ext4, what must be durable before the publish (the
/// message, the index's new entry with its reservation and intent, the `maildirsize` line) is
/// written back and committed by the flush of new/ after the name, whose journal commit
/// comes after theirs: that commit and the commit record's own flush, where every other
/// filesystem flushes each record and the root by itself (six flushes besides the message).
#[test]
fn on_ext4_the_records_before_the_publish_are_written_back_too() {
    let Some((fs, md)) = traced_ext4_maildir(&[]) else {
        return;
    };
    std::fs::write(md.join("maildirsize"), "100000S\n0 0\n").unwrap();
    let run = |disable: &str, id: &str| {
        let msg = format!("Message-ID: <{id}@test>\nSubject: x\n\nbody\n");
        let args: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"--dedup", &"--quota", &"100000", &md];
        flushes(fs.dir.path(), &args, msg.as_bytes(), disable)
    };
    let (back, flush, link) = ("sync_file_range", "fdatasync", "linkat");
    // The message; the reservation; the line; the intent; the name, then new/; the commit
    // record.
    assert_eq!(run("", "a"), [back, back, back, back, link, "fsync", flush]);
    assert_eq!(
        run("ordered-commit", "b"),
        [flush, flush, "fsync", flush, flush, link, "fsync", flush]
    );
    assert_eq!(names(&md.join("new")).len(), 2);
    let size = std::fs::read_to_string(md.join("maildirsize")).unwrap();
    assert_eq!(size.lines().count(), 4, "two lines accounted:\n{size}");
}

/// An ext4 filesystem made without a journal promises no ordered commit: its directory's
/// block can reach the disk before the data written back ahead of it. There the file is
/// flushed by itself before it is named, as on any other filesystem.
#[test]
fn on_ext4_without_a_journal_the_file_is_flushed_by_itself() {
    let Some((fs, md)) = traced_ext4_maildir(&["-O", "^has_journal"]) else {
        return;
    };
    let run = flushes(fs.dir.path(), &[&md], b"Subject: x\n\nbody\n", "");
    assert_eq!(run, ["fdatasync", "linkat", "fsync"]);
    assert_eq!(names(&md.join("new")).len(), 1);
}

/// A folder's delivery counts in its top maildir's `maildirsize`. Where the folder is on a
/// journaled ext4 but the top maildir is on another filesystem (here the folder is a bind
/// mount of one), the flush of the folder's new/ does not commit the top's file: its line is
/// flushed by itself, while the folder's message is still written back.
#[test]
fn a_folder_on_another_filesystem_than_its_top_flushes_the_quota_line_itself() {
    if !strace_installed() {
        return;
    }
    let Some(fs) = Ext4::new() else {
        return;
    };
    let top = tempfile::tempdir().unwrap();
    let md = top.path().join("Maildir");
    make_maildir(&md);
    std::fs::write(md.join("maildirsize"), "100000S\n0 0\n").unwrap();
    let inner = fs.mnt().join("Sub");
    make_maildir(&inner);
    let folder = md.join(".Sub");
    std::fs::create_dir(&folder).unwrap();
    let bound = Command::new("mount")
        .arg("--bind")
        .arg(&inner)
        .arg(&folder)
        .status()
        .unwrap();
    assert!(bound.success());
    let args: [&dyn AsRef<std::ffi::OsStr>; 5] = [
        &"--folder=Sub",
        &"--no-subscribe",
        &"--quota",
        &"100000",
        &md,
    ];
    let run = flushes(fs.dir.path(), &args, b"Subject: x\n\nbody\n", "");
    let _ = Command::new("umount").arg(&folder).status();
    // The message written back; the top's line flushed; the name, then the folder's new/.
    assert_eq!(run, ["sync_file_range", "fdatasync", "linkat", "fsync"]);
    assert_eq!(names(&inner.join("new")).len(), 1);
    let size = std::fs::read_to_string(md.join("maildirsize")).unwrap();
    assert_eq!(size.lines().count(), 3, "{size}");
}
