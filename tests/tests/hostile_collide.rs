//! Colliding names for real: deliverers started at once (released together by a file appearing),
//! each in its own PID namespace (so every one is pid 1) and UTS namespace with the same host
//! name, under libfaketime with the clock frozen (Debian's `faketime`). Every name source the
//! classic recipe relies on collides; the names must still be unique, nothing overwritten,
//! every message delivered byte-exact.
//!
//! Root only (namespaces). `faketime` is installed by the test script (Debian package
//! `faketime`); without it the deliverers run unfrozen and the test says so.
//!
//! mdeliver reads the clock through libc's `clock_gettime` (std's `SystemTime`), so
//! libfaketime (an LD_PRELOAD of libc symbols) freezes it; the test asserts that whenever
//! libfaketime is installed.

mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::*;
use mdeliver_core::maildir::name::{InfoSep, ParsedName, Unique};

const DELIVERERS: usize = 32;
/// 2026-01-01T00:00:00Z, the frozen time.
const FROZEN_EPOCH: u64 = 1_767_225_600;

fn message(i: usize) -> Vec<u8> {
    format!("X-Collide: {i}\nSubject: same pid, same host, same second\n\nbody {i}\n").into_bytes()
}

/// libfaketime's library (Debian package `libfaketime`, pulled in by `faketime`). The
/// `faketime` wrapper itself cannot be used: it names a semaphore after its pid, and every
/// deliverer here is pid 1 with a shared /dev/shm.
fn libfaketime() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn namespaced_deliverers_with_one_pid_host_and_clock() {
    if !is_root() {
        eprintln!("skipped: PID and UTS namespaces (unshare) need root");
        return;
    }
    if !have("unshare") {
        eprintln!("skipped: unshare (util-linux) is not installed");
        return;
    }
    let faketime = libfaketime();
    if faketime.is_none() {
        eprintln!(
            "note: libfaketime is not installed (apt-get install faketime); clock not frozen"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let go = t.path().join("go");
    // The preload is set only for the final exec, so unshare and sh keep the real clock.
    let script = "printf collide > /proc/sys/kernel/hostname || exit 99; \
                  n=0; while [ ! -e \"$1\" ]; do n=$((n+1)); [ $n -gt 3000 ] && exit 98; sleep 0.01; done; \
                  shift; \
                  if [ -n \"$PRELOAD\" ]; then export LD_PRELOAD=\"$PRELOAD\"; fi; exec \"$@\"";
    let children: Vec<_> = (0..DELIVERERS)
        .map(|_| {
            let mut cmd = Command::new("unshare");
            cmd.args(["--pid", "--fork", "--uts", "sh", "-c", script, "sh"])
                .arg(&go);
            if let Some(lib) = faketime {
                // An absolute time without '@': the clock stands still.
                cmd.env("PRELOAD", lib)
                    .env("FAKETIME", "2026-01-01 00:00:00");
            }
            cmd.arg(bin())
                .args(["-v", "--no-fsync"])
                .arg(&md)
                .env_remove("MDELIVER_DISABLE")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut children: Vec<_> = children
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.stdin.take().unwrap().write_all(&message(i)).unwrap();
            c
        })
        .collect();
    // Release them all at once (each polls for the file every 10 ms, for at most 30 s).
    std::fs::write(&go, b"").unwrap();
    let mut paths = Vec::new();
    for (i, c) in children.drain(..).enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "deliverer {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        paths.push(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end()
                .to_string(),
        );
    }

    let new = contents(&md.join("new"));
    assert_eq!(new.len(), DELIVERERS, "files in new/: {:?}", new.keys());
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
    let got: BTreeSet<&Vec<u8>> = new.values().collect();
    let want: Vec<Vec<u8>> = (0..DELIVERERS).map(message).collect();
    assert_eq!(
        got,
        want.iter().collect(),
        "messages lost, altered or duplicated"
    );
    for p in &paths {
        let name = Path::new(p).file_name().unwrap().to_str().unwrap();
        assert!(new.contains_key(name), "-v printed {p}, not in new/");
    }
    // What collided: pid and host always; the second and microsecond when frozen.
    let mut secs = BTreeSet::new();
    let mut stamps: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    for name in new.keys() {
        let p = ParsedName::parse(name, InfoSep::COLON).unwrap();
        let (u, host) = Unique::parse(p.key).expect("our name");
        assert_eq!(u.pid, Some(1), "{name}: not pid 1");
        assert_eq!(host, "collide", "{name}");
        secs.insert(u.time.secs);
        *stamps.entry((u.time.secs, u.time.micros)).or_default() += 1;
    }
    let frozen = secs.len() == 1 && secs.contains(&FROZEN_EPOCH);
    eprintln!(
        "{DELIVERERS} deliverers, all pid 1 on host 'collide': {} distinct seconds, {} distinct (second, microsecond) stamps; clock frozen by libfaketime: {frozen}{}",
        secs.len(),
        stamps.len(),
        if frozen {
            ""
        } else {
            " (libfaketime missing)"
        }
    );
    // mdeliver reads the clock through libc, so a present libfaketime must freeze it: every
    // deliverer then shares second, microsecond, pid and host, and the names still differ.
    if faketime.is_some() {
        assert!(
            frozen,
            "libfaketime is installed but the clock was not frozen"
        );
        assert_eq!(
            stamps.len(),
            1,
            "not every deliverer saw the same microsecond"
        );
    }
}
