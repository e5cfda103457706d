//! kill -9 soak: real `mdeliver` processes, most of them killed with SIGKILL at a random moment
//! (before, during or after reading and writing their message). Afterwards: every delivery
//! that exited 0 is in new/ exactly once and byte-exact; every file in new/ is a complete
//! message that was sent (nothing partial, nothing twice); cur/ is empty; what the killed
//! deliveries left in tmp/ is counted: zero on the anonymous-tmp (`O_TMPFILE`) path, some
//! on the named-tmp paths (harmless, never visible as mail).
//!
//! Size: `MDELIVER_SOAK_KILL` deliveries (default 2000: 1500 on the default path, 500 with
//! `O_TMPFILE` disabled), 8 at a time, `--no-fsync` (durability against power loss is not the
//! point; process death is). `scripts/soak-big.sh` runs it bigger.

mod cli_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use cli_support::*;
use mdeliver_tests::sim::rng::XorShift;

fn deliveries() -> u64 {
    std::env::var("MDELIVER_SOAK_KILL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Message `id`: an identifying header and up to 96 KiB of body, so kills land mid-write.
fn message(id: u64) -> Vec<u8> {
    let mut r = XorShift(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let len = (r.next_u64() % (96 << 10)) as usize + 40;
    let mut m = format!("X-Soak-Id: {id}\nSubject: kill soak\n\n").into_bytes();
    while m.len() < len {
        m.push(b'a' + (r.next_u64() % 26) as u8);
        if r.next_u64().is_multiple_of(64) {
            m.push(b'\n');
        }
    }
    m
}

fn id_of(content: &[u8]) -> Option<u64> {
    let rest = content.strip_prefix(b"X-Soak-Id: ")?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[derive(Default, Debug)]
struct Tally {
    /// Ids whose process exited 0.
    delivered: Vec<u64>,
    /// Ids whose process was killed.
    killed: Vec<u64>,
    /// Ids whose process exited non-zero (must not happen).
    failed: Vec<(u64, i32, String)>,
}

/// Runs deliveries `ids` into `md`, `workers` at a time, killing about 60% of them after a
/// random delay of up to 4 ms.
fn soak(md: &Path, ids: std::ops::Range<u64>, workers: u64, disable: &str) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(Mutex::new(ids.start));
    let end = ids.end;
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (tally, next) = (tally.clone(), next.clone());
            let md = md.to_path_buf();
            let disable = disable.to_string();
            std::thread::spawn(move || {
                let mut r = XorShift(0x1234_5678 + w);
                loop {
                    let id = {
                        let mut n = next.lock().unwrap();
                        if *n >= end {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let mut child = Command::new(bin())
                        .arg("--no-fsync")
                        .arg(&md)
                        .env("MDELIVER_DISABLE", &disable)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut stdin = child.stdin.take().unwrap();
                    let msg = message(id);
                    let writer = std::thread::spawn(move || {
                        let _ = stdin.write_all(&msg);
                    });
                    let kill = r.next_u64() % 10 < 6;
                    if kill {
                        let delay = r.next_u64() % 4000;
                        std::thread::sleep(std::time::Duration::from_micros(delay));
                        let _ = child.kill();
                    }
                    let out = child.wait_with_output().unwrap();
                    writer.join().unwrap();
                    let mut t = tally.lock().unwrap();
                    match out.status.code() {
                        Some(0) => t.delivered.push(id),
                        Some(c) => {
                            t.failed
                                .push((id, c, String::from_utf8_lossy(&out.stderr).into()))
                        }
                        None => t.killed.push(id),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

/// Checks the maildir after a soak; returns (messages in new/, files left in tmp/).
fn check(md: &Path, t: &Tally, label: &str) -> (usize, usize) {
    assert!(
        t.failed.is_empty(),
        "{label}: deliveries failed: {:?}",
        &t.failed[..t.failed.len().min(3)]
    );
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    for name in names(&md.join("new")) {
        let content = std::fs::read(md.join("new").join(&name)).unwrap();
        let id = id_of(&content)
            .unwrap_or_else(|| panic!("{label}: new/{name} is not one of ours (partial?)"));
        assert!(
            content == message(id),
            "{label}: new/{name} (id {id}) is partial or altered"
        );
        if let Some(other) = seen.insert(id, name.clone()) {
            panic!("{label}: message {id} delivered twice: {other} and {name}");
        }
    }
    for id in &t.delivered {
        assert!(
            seen.contains_key(id),
            "{label}: message {id} exited 0 but is not in new/"
        );
    }
    assert_eq!(
        names(&md.join("cur")),
        Vec::<String>::new(),
        "{label}: cur/"
    );
    let tmp = names(&md.join("tmp")).len();
    let killed_but_delivered = t.killed.iter().filter(|id| seen.contains_key(id)).count();
    eprintln!(
        "{label}: {} exited 0, {} killed ({} of them had already published), {} in new/, {} left in tmp/",
        t.delivered.len(),
        t.killed.len(),
        killed_but_delivered,
        seen.len(),
        tmp
    );
    (seen.len(), tmp)
}

#[test]
fn kill_9_soak() {
    let total = deliveries();
    let named = total / 4;
    let t = tempfile::tempdir().unwrap();

    // The default path (O_TMPFILE + linkat where the filesystem has it).
    let md = t.path().join("anon");
    make_maildir(&md);
    let tally = soak(&md, 0..total - named, 8, "");
    let (_, tmp) = check(&md, &tally, "default path");
    assert!(
        tally.killed.len() as u64 > (total - named) / 3,
        "too few kills to mean anything"
    );
    // Which path the default is on this filesystem: with O_TMPFILE nothing is ever named in tmp/.
    let r = run(&[&"-vv", &"--no-fsync", &md], b"probe\n", &[]);
    let anonymous = r.stderr.contains("via anonymous-link");
    if anonymous {
        assert_eq!(
            tmp, 0,
            "killed deliveries left files in tmp/ on the O_TMPFILE path"
        );
    } else {
        eprintln!("note: this filesystem has no O_TMPFILE; tmp/ leftovers are expected");
    }

    // A named tmp file (O_TMPFILE disabled): killed deliveries may leave one each in tmp/.
    let md = t.path().join("named");
    make_maildir(&md);
    let tally = soak(&md, total - named..total, 8, "anonymous-tmp");
    let (_, tmp) = check(&md, &tally, "named tmp path");
    assert!(
        tmp <= tally.killed.len(),
        "more tmp/ leftovers than killed deliveries"
    );
}
