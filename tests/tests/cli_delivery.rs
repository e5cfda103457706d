//! End-to-end delivery through the real `mdeliver` binary on a real filesystem: exact bytes,
//! several maildirs, every publish path, concurrency, maildir creation.

mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use cli_support::*;
use mdeliver_core::maildir::name::{InfoSep, ParsedName};

/// A message with CRLF, NUL and high bytes, no final newline, larger than the 64 KiB buffer.
fn awkward_message(len: usize, seed: u8) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: test\r\n\r\n".to_vec();
    let mut x = seed as u32 | 1;
    while m.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        m.push((x >> 16) as u8);
    }
    m.truncate(len);
    m
}

#[test]
fn delivers_stdin_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    for (i, len) in [1usize, 19, 65_536, 65_537, 300_001]
        .into_iter()
        .enumerate()
    {
        let msg = awkward_message(len, i as u8);
        for d in ["new", "tmp", "cur"] {
            for n in names(&md.join(d)) {
                std::fs::remove_file(md.join(d).join(n)).unwrap();
            }
        }
        let r = run(&[&"-v", &md], &msg, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stderr, "");
        let name = assert_delivered_once(&md, &msg);
        assert_eq!(
            r.stdout,
            format!("{}\n", md.join("new").join(&name).display())
        );
        let parsed = ParsedName::parse(&name, InfoSep::COLON).unwrap();
        assert_eq!(parsed.size(), Some(len as u64));
    }
}

#[test]
fn delivers_from_input_file() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let msg = awkward_message(100_000, 7);
    let file = t.path().join("msg.eml");
    std::fs::write(&file, &msg).unwrap();
    let r = run(&[&"--input", &file, &md], b"not this", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_delivered_once(&md, &msg);
}

#[test]
fn every_publish_path_delivers() {
    for (disable, path) in PATHS {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("Maildir");
        make_maildir(&md);
        let msg = awkward_message(70_000, 3);
        let r = run(&[&"-vv", &md], &msg, &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 0, "{disable}: {}", r.stderr);
        let name = assert_delivered_once(&md, &msg);
        let line = format!(
            "mdeliver: {}: delivered 70000 bytes via ",
            md.join("new").join(&name).display()
        );
        let used = r.stderr.strip_prefix(&line).expect(&r.stderr).trim_end();
        if disable.is_empty() {
            // The best path this filesystem offers (no O_TMPFILE on some filesystems).
            assert!(
                ["anonymous-link", "rename-noreplace", "link-unlink"].contains(&used),
                "{used}"
            );
        } else {
            assert_eq!(used, path, "MDELIVER_DISABLE={disable}");
        }
    }
}

#[test]
fn several_maildirs_get_identical_copies() {
    // stdin is a pipe: read once, then copied from the first delivered file.
    for (disable, _) in PATHS {
        let t = tempfile::tempdir().unwrap();
        let mds: Vec<_> = (0..3).map(|i| t.path().join(format!("md{i}"))).collect();
        let msg = awkward_message(200_000, 9);
        let r = run(
            &[&"-c", &"-v", &mds[0], &mds[1], &mds[2]],
            &msg,
            &[("MDELIVER_DISABLE", disable)],
        );
        assert_eq!(r.code, 0, "{disable}: {}", r.stderr);
        let mut printed = Vec::new();
        for md in &mds {
            let name = assert_delivered_once(md, &msg);
            printed.push(format!("{}\n", md.join("new").join(name).display()));
        }
        assert_eq!(r.stdout, printed.concat());
    }
}

#[test]
fn a_failing_maildir_does_not_stop_the_others() {
    let t = tempfile::tempdir().unwrap();
    let good1 = t.path().join("good1");
    let good2 = t.path().join("good2");
    let missing = t.path().join("missing");
    make_maildir(&good1);
    make_maildir(&good2);
    let msg = awkward_message(90_000, 5);
    let r = run(&[&missing, &good1, &good2], &msg, &[]);
    assert_eq!(r.code, 75, "a temporary failure dominates");
    assert_delivered_once(&good1, &msg);
    assert_delivered_once(&good2, &msg);
    assert!(!missing.exists());
    // The RFC 3463 status line comes first (for Postfix), then the one error message.
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert_eq!(
        lines[0],
        "4.2.0 mailbox unavailable: no such file or directory"
    );
    assert!(lines[1].starts_with(&format!("mdeliver: {}: ", missing.display())));

    // A permanent failure (--strict-exit) after a success is reported too.
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good");
    make_maildir(&good);
    let r = run(
        &[&"--strict-exit", &good, &t.path().join("nope")],
        &msg,
        &[],
    );
    assert_eq!(r.code, 73);
    assert_delivered_once(&good, &msg);
}

#[test]
fn missing_maildir_defers_and_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let r = run(&[&md], b"hello\n", &[]);
    assert_eq!(r.code, 75);
    let r2 = run(&[&"--strict-exit", &md], b"hello\n", &[]);
    assert_eq!(r2.code, 73);
    assert!(!md.exists());
    // A maildir missing only cur/ is not completed behind the user's back either.
    make_maildir(&md);
    std::fs::remove_dir(md.join("cur")).unwrap();
    let r3 = run(&[&md], b"hello\n", &[]);
    assert_eq!(r3.code, 75);
    assert!(!md.join("cur").exists());
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
}

#[test]
fn create_makes_private_maildirs() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let r = run(&[&"-c", &md], b"hello\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for d in ["", "tmp", "new", "cur"] {
        let meta = std::fs::symlink_metadata(md.join(d)).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700, "mode of {d}/");
    }
    assert_delivered_once(&md, b"hello\n");

    // An existing maildir missing cur/ is completed; existing modes are left alone.
    let md2 = t.path().join("Partial");
    std::fs::create_dir_all(md2.join("new")).unwrap();
    std::fs::create_dir_all(md2.join("tmp")).unwrap();
    std::fs::set_permissions(&md2, std::fs::Permissions::from_mode(0o750)).unwrap();
    let r = run(&[&"--create", &md2], b"again\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::metadata(&md2).unwrap().mode() & 0o777, 0o750);
    assert_eq!(
        std::fs::metadata(md2.join("cur")).unwrap().mode() & 0o777,
        0o700
    );
    assert_delivered_once(&md2, b"again\n");

    // -c creates one level only: a missing parent is an error, not a surprise tree.
    let deep = t.path().join("a/b/Maildir");
    let r = run(&[&"-c", &deep], b"x\n", &[]);
    assert_eq!(r.code, 75);
    assert!(!t.path().join("a").exists());
}

#[test]
fn symlinked_subdirectory_is_refused() {
    for sub in ["tmp", "new", "cur"] {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("Maildir");
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        make_maildir(&md);
        std::fs::remove_dir(md.join(sub)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, md.join(sub)).unwrap();
        let r = run(&[&md], b"hello\n", &[]);
        assert_eq!(r.code, 75, "{sub}");
        assert!(
            r.stderr.contains(&format!("{sub}/: not a directory")),
            "{}",
            r.stderr
        );
        let r = run(&[&"-c", &"--strict-exit", &md], b"hello\n", &[]);
        assert_eq!(r.code, 73, "{sub}");
        assert_eq!(
            names(&elsewhere),
            Vec::<String>::new(),
            "{sub}: wrote through the link"
        );
        for d in ["tmp", "new", "cur"] {
            if d != sub {
                assert_eq!(names(&md.join(d)), Vec::<String>::new());
            }
        }
    }
}

/// Issue 13: a symbolic link at the maildir root is followed, with or without a trailing `/`
/// (before, `Maildir` deferred every message while `Maildir/` delivered), on every publish
/// path; the subcommands read through it too.
#[test]
fn symlinked_maildir_root_is_followed() {
    for (disable, _) in PATHS {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        make_maildir(&real);
        let link = t.path().join("Maildir");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let slash = format!("{}/", link.display());
        for spelling in [&link as &dyn AsRef<std::ffi::OsStr>, &slash] {
            let r = run(&[spelling], b"hello\n", &[("MDELIVER_DISABLE", disable)]);
            assert_eq!(r.code, 0, "{disable}: {}", r.stderr);
        }
        assert_eq!(names(&real.join("new")).len(), 2, "{disable}");
        let r = run(&[&"list", &link], b"", &[]);
        assert_eq!((r.code, r.stdout.lines().count()), (0, 2), "{}", r.stderr);
    }
}

#[test]
fn empty_input_is_a_data_error() {
    for (disable, _) in PATHS {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("Maildir");
        make_maildir(&md);
        let r = run(&[&md], b"", &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 65, "{disable}");
        for d in ["tmp", "new", "cur"] {
            assert_eq!(names(&md.join(d)), Vec::<String>::new(), "{disable}: {d}/");
        }
    }
}

/// 8 concurrent workers × 200 processes, each delivering a distinct message into one maildir
/// (two workers per publish path): every message arrives exactly once, byte-identical, under
/// a distinct unique name, and tmp/ ends empty.
#[test]
fn concurrent_deliveries_are_all_distinct_and_complete() {
    const WORKERS: usize = 8;
    const EACH: usize = 200;
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let md2 = md.clone();
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let md = md2.clone();
            std::thread::spawn(move || {
                let disable = PATHS[w % PATHS.len()].0;
                for i in 0..EACH {
                    let msg = format!("Subject: worker {w} message {i}\n\nbody {w}/{i}\n");
                    let r = run(
                        &[&"--no-fsync", &md],
                        msg.as_bytes(),
                        &[("MDELIVER_DISABLE", disable)],
                    );
                    assert_eq!(r.code, 0, "worker {w} message {i}: {}", r.stderr);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let new = contents(&md.join("new"));
    assert_eq!(new.len(), WORKERS * EACH);
    let keys: BTreeSet<&str> = new
        .keys()
        .map(|n| ParsedName::parse(n, InfoSep::COLON).unwrap().key)
        .collect();
    assert_eq!(keys.len(), WORKERS * EACH, "unique keys repeat");
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for bytes in new.values() {
        *seen.entry(bytes.clone()).or_default() += 1;
    }
    for w in 0..WORKERS {
        for i in 0..EACH {
            let msg = format!("Subject: worker {w} message {i}\n\nbody {w}/{i}\n");
            assert_eq!(seen.get(msg.as_bytes()), Some(&1), "worker {w} message {i}");
        }
    }
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
    assert_eq!(names(&md.join("cur")), Vec::<String>::new());
}
