//! What a failed or stopped delivery leaves in the maildir on the named-tmp publish paths (no
//! `O_TMPFILE`: NFS, or `MDELIVER_DISABLE`), on a real filesystem (issue 12, item 10):
//! - a termination signal (SIGTERM on an MTA's timeout, SIGINT, SIGHUP) mid-message leaves
//!   nothing, and the run defers with its status line and names the signal (on the `O_TMPFILE`
//!   path, which installs no handler, the signal kills the process and leaves nothing either);
//! - a publish that fails (EROFS, injected with strace) removes the tmp/ file, and when that
//!   removal fails too, the error says what remains.

mod cli_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;

fn all_files(md: &Path) -> Vec<String> {
    ["tmp", "new", "cur"]
        .iter()
        .flat_map(|d| {
            names(&md.join(d))
                .into_iter()
                .map(move |n| format!("{d}/{n}"))
        })
        .collect()
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_termination_signal_mid_message_leaves_nothing_and_defers() {
    for (disable, path) in PATHS {
        for signal in ["TERM", "INT", "HUP"] {
            let t = tempfile::tempdir().unwrap();
            let md = t.path().join("m");
            make_maildir(&md);
            // With each signal's default action: a test run under `nohup` (or from a shell
            // that ignores SIGINT in background jobs) would otherwise hand down an ignored
            // signal, and the child would wait for the rest of its message for ever.
            let mut child = Command::new("env")
                .arg("--default-signal=HUP,INT,TERM")
                .arg(bin())
                .arg(&md)
                .env("MDELIVER_DISABLE", disable)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut pipe = child.stdin.take().unwrap();
            // More than one buffer, so that the first part is surely written to tmp/.
            pipe.write_all(b"Subject: partial\n\n").unwrap();
            pipe.write_all(&vec![b'x'; 200_000]).unwrap();
            if !disable.is_empty() {
                wait_for("the named tmp/ file", || !names(&md.join("tmp")).is_empty());
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
            let st = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(st.success());
            let out = child.wait_with_output().unwrap();
            drop(pipe);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{path}, SIG{signal}: {stderr}");
            if disable.is_empty() {
                // The O_TMPFILE path installs no handler (four system calls saved per
                // delivery): the signal kills the process, the kernel drops the unnamed file,
                // and the MTA defers a delivery killed by a signal.
                use std::os::unix::process::ExitStatusExt;
                let signo = match signal {
                    "TERM" => 15,
                    "INT" => 2,
                    _ => 1,
                };
                assert_eq!(out.status.signal(), Some(signo), "{what}");
                assert_eq!(all_files(&md), Vec::<String>::new(), "{what}");
                continue;
            }
            assert_eq!(out.status.code(), Some(75), "{what}");
            let mut lines = stderr.lines();
            assert_eq!(
                lines.next(),
                Some("4.3.0 mail system error: interrupted system call"),
                "{what}"
            );
            assert!(
                lines.next().is_some_and(|l| l.contains(&format!(
                    "reading message: stopped by SIG{signal} before the whole message was \
                     read; nothing was delivered"
                ))),
                "{what}"
            );
            assert_eq!(all_files(&md), Vec::<String>::new(), "{what}");
        }
    }
}

fn have_strace() -> bool {
    Command::new("strace").arg("-V").output().is_ok()
}

/// Delivers into `md` under strace, every call of `fail` failing with EROFS.
fn deliver_failing(md: &Path, disable: &str, fail: &[&str]) -> Run {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null"]);
    for call in fail {
        cmd.arg(format!("--inject={call}:error=EROFS"));
    }
    let out = cmd
        .arg(bin())
        .arg(md)
        .env("MDELIVER_DISABLE", disable)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"Subject: x\n\nbody\n")?;
            c.wait_with_output()
        })
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_failed_publish_removes_its_tmp_file_or_says_what_remains() {
    if !have_strace() {
        eprintln!("skipped: strace is not installed");
        return;
    }
    // The publishing call of each named-tmp path.
    for (disable, publish) in [
        ("anonymous-tmp", "renameat2"),
        ("anonymous-tmp,rename-noreplace", "linkat"),
    ] {
        // The publish fails, the cleanup succeeds: nothing is left and nothing said about it.
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("m");
        make_maildir(&md);
        let r = deliver_failing(&md, disable, &[publish]);
        let what = format!("{disable}: {}", r.stderr);
        assert_eq!(r.code, 75, "{what}");
        assert!(
            r.stderr
                .starts_with("4.2.0 mailbox not writable: read-only file system\n"),
            "{what}"
        );
        assert!(!r.stderr.contains("remains"), "{what}");
        assert_eq!(all_files(&md), Vec::<String>::new(), "{what}");
        // The cleanup fails too: the tmp/ file stays, and the error says so.
        let r = deliver_failing(&md, disable, &[publish, "unlinkat"]);
        let what = format!("{disable}, unlink failing too: {}", r.stderr);
        assert_eq!(r.code, 75, "{what}");
        assert!(
            r.stderr.contains(
                "; cleaning up failed too: a partial copy of the message remains in tmp/"
            ),
            "{what}"
        );
        let left = all_files(&md);
        assert!(
            left.len() == 1 && left[0].starts_with("tmp/"),
            "{what}: {left:?}"
        );
    }
}

/// The pid of the delivery `strace` (pid `tracer`) runs. strace forks short-lived children of
/// its own to probe the kernel's ptrace features before it starts the traced program, so the
/// tracee is the child whose command line is the delivery's.
fn tracee(tracer: u32) -> u32 {
    let read = || -> Option<u32> {
        let children =
            std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .find(|pid: &u32| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                    cmd.split(|&b| b == 0).next() == Some(bin().as_os_str().as_encoded_bytes())
                })
            })
    };
    wait_for("strace's tracee", || read().is_some());
    read().unwrap()
}

/// Starts `mdeliver --quota=1000000 md` under strace with `inject` (a delay), waits until
/// `entered(md, pid)` says the delayed call is reached, and SIGKILLs the delivery there.
fn kill_in_recalculation(md: &Path, inject: &str, entered: impl Fn(&Path, u32) -> bool) {
    let mut tracer = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        // strace injects only into the calls it traces.
        .arg(format!("trace={}", inject.split(':').next().unwrap()))
        .arg("-e")
        .arg(format!("inject={inject}"))
        .arg(bin())
        .arg("--quota=1000000")
        .arg(md)
        // The message's file flushed by `fdatasync` on every filesystem (on ext4 it would be
        // written back instead), so the calls counted below are the same everywhere.
        .env("MDELIVER_DISABLE", "ordered-commit")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tracer
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: x\n\nbody\n")
        .unwrap();
    let pid = tracee(tracer.id());
    wait_for("the delayed system call", || entered(md, pid));
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // A task stopped by its tracer dies once strace resumes it at the end of the delay,
    // without making the delayed call (a fatal signal is pending); strace then exits.
    let _ = tracer.wait();
}

/// Whether `pid` is inside the system call numbered `nr` (`/proc/PID/syscall`).
fn in_syscall(pid: u32, nr: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(nr))
}

/// A maildir of three messages (names without `,S=`, so the recalculation `stat`s them) and no
/// `maildirsize`: `--quota` recalculates.
fn maildir_to_recalculate(md: &Path) {
    make_maildir(md);
    for i in 0..3 {
        std::fs::write(
            md.join(format!("new/{i}.old.host")),
            b"Subject: old\n\nold\n",
        )
        .unwrap();
    }
}

/// SIGKILL during a Maildir++ quota recalculation (issue 12, item 10). Before, the new
/// `maildirsize` was written under its tmp/ name, so a kill while it was flushed (on every
/// path) left `tmp/NAME.maildirsize` for 36 hours. Now it is written unnamed (`O_TMPFILE`) and
/// named just before the rename; a kill in those two system calls still leaves it, and the next
/// recalculation removes it once it is old enough to belong to no live one (15 minutes).
#[test]
fn a_kill_during_a_quota_recalculation_leaves_nothing_the_next_one_keeps() {
    if !have_strace() || !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: needs strace on x86_64 (system call numbers)");
        return;
    }
    // Killed while the fresh file is flushed (the second fdatasync; the first is the
    // message's): nothing in tmp/ at all.
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    maildir_to_recalculate(&md);
    // The message's own fdatasync, not delayed, can be seen too while the disk works: the
    // delayed one is the one still there half a second later.
    kill_in_recalculation(&md, "fdatasync:delay_enter=5000000:when=2", |_, pid| {
        in_syscall(pid, "75") && {
            std::thread::sleep(Duration::from_millis(500));
            in_syscall(pid, "75")
        }
    });
    assert_eq!(
        names(&md.join("tmp")),
        Vec::<String>::new(),
        "a kill while the new maildirsize is written leaves nothing"
    );
    assert!(!md.join("maildirsize").exists());

    // Killed at the rename (the first renameat2: the message is published by linkat later):
    // the named file is left...
    kill_in_recalculation(&md, "renameat2:delay_enter=5000000:when=1", |md, _| {
        names(&md.join("tmp")).len() == 1
    });
    let left = names(&md.join("tmp"));
    assert!(
        left.len() == 1 && left[0].ends_with(".maildirsize"),
        "{left:?}"
    );
    // ...and the next recalculation removes it once it is 15 minutes old (backdated here),
    // while a young one (perhaps a live recalculation's) stays.
    let young = md.join("tmp/1.young.host.maildirsize");
    std::fs::write(&young, b"1000000S\n0 0\n").unwrap();
    let old = md.join("tmp").join(&left[0]);
    let backdated = Command::new("touch")
        .args(["-d", "16 minutes ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(backdated.success());
    let r = run(&[&"--quota=1000000", &md], b"Subject: y\n\nbody\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(names(&md.join("tmp")), ["1.young.host.maildirsize"]);
    assert!(md.join("maildirsize").exists());
}
