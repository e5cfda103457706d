//! Hostile maildirs under the real binary: new/ or tmp/ swapped for a symbolic link while a
//! delivery runs (mdeliver holds its directories open `O_DIRECTORY|O_NOFOLLOW`, so nothing
//! outside the maildir may be touched: checked on the host), FIFOs, sockets and directories
//! with message-like names, names of 255 bytes, a host name full of separators, and a
//! maildir of 100 000 files.

mod cli_support;

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;

/// Whether process `pid` has a file open under `dir` (from /proc/<pid>/fd).
fn has_open_file_in(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|target| target.starts_with(dir) && target != dir)
}

fn message(len: usize) -> Vec<u8> {
    let mut m = b"Subject: symlink race\n\n".to_vec();
    while m.len() < len {
        m.extend_from_slice(b"0123456789abcdef\n");
    }
    m.truncate(len);
    m
}

/// Starts a delivery, waits until it has its message file open in tmp/, then replaces `which`
/// (`new` or `tmp`) with a symbolic link to a directory outside the maildir, then lets it
/// finish. Nothing may appear outside; a success must be in the real directory, whole.
fn swap_mid_delivery(which: &str, disable: &str, path: &str) {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let msg = message(256 << 10);
    let mut child = Command::new(bin())
        .arg("-v")
        .arg("--no-fsync")
        .arg(&md)
        .env("MDELIVER_DISABLE", disable)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&msg[..100 << 10]).unwrap();
    let start = Instant::now();
    while !has_open_file_in(child.id(), &md.join("tmp")) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "mdeliver never opened a file in tmp/"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let moved = md.join(format!("{which}.real"));
    std::fs::rename(md.join(which), &moved).unwrap();
    std::os::unix::fs::symlink(&outside, md.join(which)).unwrap();
    stdin.write_all(&msg[100 << 10..]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().expect("exited by signal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        names(&outside),
        Vec::<String>::new(),
        "{which} swapped ({path}): something was created outside the maildir"
    );
    let real_new = if which == "new" {
        moved.clone()
    } else {
        md.join("new")
    };
    let real_tmp = if which == "tmp" {
        moved.clone()
    } else {
        md.join("tmp")
    };
    let delivered = names(&real_new);
    eprintln!(
        "| {which}/ swapped for a symlink mid-delivery, {path} | {code} | {} | outside: empty; {}/: {} file(s); tmp: {:?} |",
        normalize(stderr.lines().last().unwrap_or(""), t.path()),
        if which == "new" { "new.real" } else { "new" },
        delivered.len(),
        names(&real_tmp)
    );
    if code == 0 {
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        let got = std::fs::read(real_new.join(&delivered[0])).unwrap();
        assert!(got == msg, "delivered bytes differ");
        // -v names where it was delivered: the path as given, now through the symlink.
        assert!(stdout.contains(&delivered[0]), "{stdout}");
    } else {
        assert!(delivered.is_empty(), "failed but delivered {delivered:?}");
    }
    // A named tmp file (fallback paths) may stay in the real tmp/ only on failure.
    if code == 0 {
        assert_eq!(names(&real_tmp), Vec::<String>::new(), "tmp/ not cleaned");
    }
}

#[test]
fn new_swapped_for_a_symlink_mid_delivery() {
    for (disable, path) in PATHS {
        swap_mid_delivery("new", disable, path);
    }
}

#[test]
fn tmp_swapped_for_a_symlink_mid_delivery() {
    for (disable, path) in PATHS {
        swap_mid_delivery("tmp", disable, path);
    }
}

/// FIFOs, sockets and directories named like messages in tmp/, new/ and cur/: delivery does
/// not open, block on, remove or replace them; `mdeliver list` does not hang on them either.
#[test]
fn special_files_with_message_names() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let mut specials = Vec::new();
    for d in ["tmp", "new", "cur"] {
        let info = if d == "cur" { ":2,S" } else { "" };
        let fifo = md
            .join(d)
            .join(format!("1700000000.M1P1Q1R0.fifo,S=10{info}"));
        let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(st.success());
        let sock = md
            .join(d)
            .join(format!("1700000000.M2P1Q1R0.sock,S=10{info}"));
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::mem::forget(listener);
        let dir = md
            .join(d)
            .join(format!("1700000000.M3P1Q1R0.dir,S=10{info}"));
        std::fs::create_dir(&dir).unwrap();
        specials.extend([fifo, sock, dir]);
    }
    let msg = message(5000);
    let r = run(&[&"--no-fsync", &md], &msg, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for s in &specials {
        let ft = std::fs::symlink_metadata(s).unwrap().file_type();
        assert!(
            ft.is_fifo() || ft.is_socket() || ft.is_dir(),
            "{} changed",
            s.display()
        );
    }
    let new: Vec<String> = names(&md.join("new"))
        .into_iter()
        .filter(|n| !n.starts_with("1700000000."))
        .collect();
    assert_eq!(new.len(), 1);
    assert!(std::fs::read(md.join("new").join(&new[0])).unwrap() == msg);
    // The listing must finish (not block on a FIFO) and list our message.
    let out = Command::new("timeout")
        .arg("30")
        .arg(bin())
        .arg("list")
        .arg(&md)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "| FIFOs, sockets, directories named like messages | deliver 0, list {} | {} | untouched; listing has {} lines |",
        out.status.code().unwrap_or(-1),
        normalize(String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or(""), t.path()),
        listing.lines().count()
    );
    assert_ne!(out.status.code(), Some(124), "mdeliver list hung");
    assert!(listing.contains(&new[0]), "{listing}");
}

/// A FIFO, a socket or a directory is not a message: `list` should not report one (a mail
/// reader that opens a listed FIFO blocks forever).
#[test]
fn list_skips_special_files() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let st = Command::new("mkfifo")
        .arg(md.join("new").join("1700000000.M1P1Q1R0.fifo,S=10"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir(md.join("cur").join("1700000000.M3P1Q1R0.dir,S=10:2,S")).unwrap();
    let out = Command::new(bin()).arg("list").arg(&md).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing, "", "special files listed as messages");
}

/// Existing names of the maximum length (255 bytes) in new/ and cur/ do not disturb delivery
/// or listing; names we make stay within 255 bytes even for a host name of 64 bytes full of
/// characters that must be escaped (`/`, `:`, `,`, `\`, 8-bit), which takes a UTS namespace
/// (root) to set.
#[test]
fn long_names_and_a_hostile_host_name() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let long_new = format!("1700000000.{}", "n".repeat(244));
    let long_cur = format!("1700000000.{}:2,S", "c".repeat(240));
    assert_eq!((long_new.len(), long_cur.len()), (255, 255));
    std::fs::write(md.join("new").join(&long_new), b"long\n").unwrap();
    std::fs::write(md.join("cur").join(&long_cur), b"long\n").unwrap();
    let msg = message(1000);
    let r = run(&[&"-v", &"--no-fsync", &md], &msg, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listing = Command::new(bin()).arg("list").arg(&md).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&long_new) && listing.contains(&long_cur),
        "{listing}"
    );
    assert_eq!(listing.lines().count(), 3, "{listing}");

    if !is_root() {
        eprintln!("skipped (hostile host name): unshare --uts needs root");
        return;
    }
    let host = "a/b:c,d\\e;f!g.h\u{e9}i-0123456789012345678901234567890123456789xyzw";
    let host: String = host.chars().take(60).collect();
    let out = Command::new("unshare")
        .args([
            "--uts",
            "sh",
            "-c",
            // `hostname` refuses such names; the kernel takes any bytes.
            "printf %s \"$1\" > /proc/sys/kernel/hostname && exec \"$2\" -v --no-fsync \"$3\"",
        ])
        .arg("sh")
        .arg(&host)
        .arg(bin())
        .arg(&md)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&msg)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = delivered_name(&out.stdout);
    eprintln!("host {host:?} gives {name}");
    assert!(name.len() <= 255);
    assert!(name.contains("a\\057b\\072c\\054d\\134e"), "{name}");
    assert!(!name[..name.find(",S=").unwrap()].contains(':'), "{name}");
    assert!(std::fs::read(md.join("new").join(&name)).unwrap() == msg);
}

/// A maildir of 100 000 messages: delivery does not look at them (same cost), and `list`
/// lists every one exactly once.
#[test]
fn maildir_with_100_000_files() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let n = 100_000;
    for i in 0..n {
        let d = if i % 2 == 0 { "new" } else { "cur" };
        let info = if d == "cur" { ":2,S" } else { "" };
        std::fs::File::create(
            md.join(d)
                .join(format!("1700000000.M{i}P1Q1.host,S=0{info}")),
        )
        .unwrap();
    }
    let msg = message(2000);
    let start = Instant::now();
    let r = run(&[&"-v", &"--no-fsync", &md], &msg, &[]);
    let took = start.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = Command::new(bin()).arg("list").arg(&md).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    let keys: std::collections::BTreeSet<&str> = listing
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(listing.lines().count(), n + 1, "listing length");
    assert_eq!(keys.len(), n + 1, "duplicate keys in the listing");
    eprintln!(
        "| maildir of 100 000 files | 0 | (none) | delivered in {took:?}; list shows {} messages, each once |",
        keys.len()
    );
}
