//! Concurrency soak with the real binary: 64 deliverers × 100 deliveries each (one `mdeliver`
//! process per delivery, 64 running at once) into one maildir, while 4 readers move messages
//! new/→cur/ and flip their flags continuously and `mdeliver list` runs in a loop.
//! Checked: every delivery exits 0; every listing contains every message whose delivery had
//! finished before the listing started, each key once; at the end every message is present
//! exactly once (new/ ∪ cur/), byte-exact, and tmp/ is empty.
//!
//! Size: `MDELIVER_SOAK_PROCS` × `MDELIVER_SOAK_PER` (default 64 × 100), `--no-fsync`.
//! `scripts/soak-big.sh` runs it bigger.

mod cli_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cli_support::*;

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message(d: u64, i: u64) -> Vec<u8> {
    let mut m = format!("X-Soak: {d}-{i}\nSubject: concurrency soak\n\n").into_bytes();
    for k in 0..(d * 7 + i * 13) % 300 {
        m.extend_from_slice(format!("line {k} of {d}-{i}\n").as_bytes());
    }
    m
}

/// The unique key of a file name (everything before the info separator).
fn key(name: &str) -> &str {
    name.split(':').next().unwrap()
}

/// Flips one flag letter in a cur/ name (`K:2,FLAGS`), keeping the letters sorted.
fn flip(name: &str, letter: char) -> String {
    let (k, flags) = name.split_once(":2,").unwrap_or((name, ""));
    let mut set: BTreeSet<char> = flags.chars().collect();
    if !set.remove(&letter) {
        set.insert(letter);
    }
    format!("{k}:2,{}", set.into_iter().collect::<String>())
}

#[derive(Default, Debug)]
struct ListStats {
    listings: u64,
    settled: u64,
    unsettled: u64,
    max_listed: usize,
}

fn reader(md: &Path, stop: &AtomicBool, seed: u64, moves: &AtomicU64) {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while !stop.load(Ordering::Relaxed) {
        let new: Vec<String> = std::fs::read_dir(md.join("new"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        for n in new.iter().take(20) {
            if std::fs::rename(
                md.join("new").join(n),
                md.join("cur").join(format!("{n}:2,")),
            )
            .is_ok()
            {
                moves.fetch_add(1, Ordering::Relaxed);
            }
        }
        let cur: Vec<String> = std::fs::read_dir(md.join("cur"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        for _ in 0..20 {
            if cur.is_empty() {
                break;
            }
            let n = &cur[(rnd() % cur.len() as u64) as usize];
            let letter = ['S', 'F', 'R', 'T'][(rnd() % 4) as usize];
            if std::fs::rename(md.join("cur").join(n), md.join("cur").join(flip(n, letter))).is_ok()
            {
                moves.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

#[test]
fn deliverers_readers_and_listings() {
    soak(
        env_num("MDELIVER_SOAK_PROCS", 64),
        env_num("MDELIVER_SOAK_PER", 100),
        false,
    );
}

/// Every listing during the soak also settles (exit 0) and is complete. While messages keep
/// arriving a pass rarely sees exactly the keys of the previous one; the scan settles when no
/// key of the previous pass is missing (arrivals allowed), which keeps the same guarantee.
/// (Before that rule, 3 of 20 listings at 64 x 100 ran out of passes and exited 75.)
#[test]
fn every_listing_settles_and_is_complete() {
    soak(64, 100, true);
}

fn soak(procs: u64, per: u64, strict: bool) {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU64::new(0));
    // key -> (deliverer, index), for deliveries that exited 0.
    let delivered: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();

    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (md, stop, moves) = (md.clone(), stop.clone(), moves.clone());
            std::thread::spawn(move || reader(&md, &stop, 0x9e37 + r, &moves))
        })
        .collect();
    let lister = {
        let (md, stop, delivered) = (md.clone(), stop.clone(), delivered.clone());
        std::thread::spawn(move || {
            let mut st = ListStats::default();
            while !stop.load(Ordering::Relaxed) {
                let known: Vec<String> = delivered.lock().unwrap().keys().cloned().collect();
                let out = Command::new(bin()).arg("list").arg(&md).output().unwrap();
                let settled = match out.status.code() {
                    Some(75) if strict => panic!(
                        "listing {} did not settle: {}",
                        st.listings,
                        String::from_utf8_lossy(&out.stderr)
                    ),
                    Some(0) => true,
                    // Documented: did not settle in 8 passes; the last pass is printed.
                    Some(75) if String::from_utf8_lossy(&out.stderr).contains("did not settle") => {
                        false
                    }
                    other => panic!(
                        "mdeliver list failed ({other:?}): {}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                };
                let text = String::from_utf8(out.stdout).unwrap();
                let mut listed = BTreeSet::new();
                for line in text.lines() {
                    let k = line.split('\t').next().unwrap();
                    assert!(
                        listed.insert(k.to_string()),
                        "listing {}: {k} twice",
                        st.listings
                    );
                }
                let missing = known.iter().filter(|k| !listed.contains(*k)).count();
                assert_eq!(
                    missing,
                    0,
                    "listing {} ({}) misses {missing} messages delivered before it began",
                    st.listings,
                    if settled { "settled" } else { "did not settle" }
                );
                if settled {
                    st.settled += 1;
                } else {
                    st.unsettled += 1;
                }
                st.listings += 1;
                st.max_listed = st.max_listed.max(listed.len());
            }
            st
        })
    };

    let deliverers: Vec<_> = (0..procs)
        .map(|d| {
            let (md, delivered, failures) = (md.clone(), delivered.clone(), failures.clone());
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut child = Command::new(bin())
                        .arg("-v")
                        .arg("--no-fsync")
                        .arg(&md)
                        .env_remove("MDELIVER_DISABLE")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(&message(d, i))
                        .unwrap();
                    let out = child.wait_with_output().unwrap();
                    if out.status.code() != Some(0) {
                        failures.lock().unwrap().push(format!(
                            "{d}-{i}: {:?} {}",
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                        continue;
                    }
                    let name = delivered_name(&out.stdout);
                    delivered
                        .lock()
                        .unwrap()
                        .insert(key(&name).to_string(), (d, i));
                }
            })
        })
        .collect();
    for d in deliverers {
        d.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let ls = lister.join().expect("a listing was incomplete");
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "deliveries failed: {:?}",
        &failures[..failures.len().min(3)]
    );

    // Final state: every message once, byte-exact.
    let delivered = delivered.lock().unwrap();
    assert_eq!(
        delivered.len() as u64,
        procs * per,
        "distinct keys reported"
    );
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for d in ["new", "cur"] {
        for n in names(&md.join(d)) {
            let k = key(&n).to_string();
            if let Some(prev) = found.insert(k.clone(), format!("{d}/{n}")) {
                panic!("{k} present twice: {prev} and {d}/{n}");
            }
            let (di, ii) = delivered
                .get(&k)
                .unwrap_or_else(|| panic!("unknown file {d}/{n}"));
            let content = std::fs::read(md.join(d).join(&n)).unwrap();
            assert!(
                content == message(*di, *ii),
                "{d}/{n} differs from message {di}-{ii}"
            );
        }
    }
    assert_eq!(found.len() as u64, procs * per, "messages present");
    assert_eq!(
        names(&md.join("tmp")),
        Vec::<String>::new(),
        "tmp/ not empty"
    );
    eprintln!(
        "concurrency soak: {} deliveries by {procs} concurrent deliverers, {} reader renames; \
         {} listings (largest {}), every one complete: {} settled, {} did not settle (exit 75)",
        procs * per,
        moves.load(Ordering::Relaxed),
        ls.listings,
        ls.max_listed,
        ls.settled,
        ls.unsettled
    );
    assert!(ls.listings > 0, "the lister never finished a listing");
}
