//! Host tests of the WASI module under wasmtime: byte-exact delivery through a preopened
//! directory, exit codes, parallel instances, the sandbox's walls, and resource limits.
//!
//! The module is built by the test itself (installing the `wasm32-wasip1` target if missing)
//! in its own target directory, so a missing or stale module can never make a test skip.

use crate::wasi_support;

use std::fs;
use std::path::Path;
use wasi_support::{run, Limits};

const MSG: &[u8] =
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: wasm\r\n\r\nhello \xff\x00 bytes\r\n";

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn delivers_byte_identical_message() {
    let root = tempfile::tempdir().unwrap();
    let r = run(
        &["-c", "-v", "/mail/Maildir"],
        MSG,
        root.path(),
        &[("MDELIVER_HOST", "edge:1/a")],
        Limits::default(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let new = root.path().join("Maildir/new");
    let names = listing(&new);
    assert_eq!(names.len(), 1);
    assert_eq!(fs::read(new.join(&names[0])).unwrap(), MSG);
    // The host name is escaped, there is no pid field, and the size is in the name.
    assert!(names[0].contains(".edge\\0721\\057a,S="), "{}", names[0]);
    assert!(!names[0].contains('P'), "{}", names[0]);
    let mut crlf = mdeliver_core::fs::CrlfSize::default();
    crlf.feed(MSG);
    let sizes = format!(",S={},W={}", MSG.len(), crlf.size());
    assert!(names[0].ends_with(&sizes), "{}", names[0]);
    assert_eq!(r.stdout.trim(), format!("/mail/Maildir/new/{}", names[0]));
    assert!(listing(&root.path().join("Maildir/tmp")).is_empty());
    assert!(listing(&root.path().join("Maildir/cur")).is_empty());
}

#[test]
fn several_maildirs_get_one_copy_each() {
    let root = tempfile::tempdir().unwrap();
    let r = run(
        &["-c", "/mail/a", "/mail/b"],
        MSG,
        root.path(),
        &[],
        Limits::default(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    for m in ["a", "b"] {
        let new = root.path().join(m).join("new");
        let names = listing(&new);
        assert_eq!(names.len(), 1, "{m}");
        assert_eq!(fs::read(new.join(&names[0])).unwrap(), MSG);
    }
}

#[test]
fn exit_codes_match_the_native_cli() {
    let root = tempfile::tempdir().unwrap();
    let missing = run(&["/mail/nope"], MSG, root.path(), &[], Limits::default());
    assert_eq!(missing.code, 75, "{missing:?}");
    // As the native binary: the RFC 3463 status line first, then the explanation.
    let lines: Vec<&str> = missing.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "4.2.0 mailbox unavailable: no such file or directory"
    );
    assert!(lines[1].starts_with("mdeliver: /mail/nope: "), "{lines:?}");
    let strict = run(
        &["--strict-exit", "/mail/nope"],
        MSG,
        root.path(),
        &[],
        Limits::default(),
    );
    assert_eq!(strict.code, 73, "{strict:?}");
    assert!(!root.path().join("nope").exists());

    let empty = run(&["-c", "/mail/m"], b"", root.path(), &[], Limits::default());
    assert_eq!(empty.code, 65, "{empty:?}");
    assert_eq!(
        empty.stderr,
        "5.6.0 message is empty or unreadable\n\
         mdeliver: /mail/m: reading message: message is empty; nothing was delivered\n"
    );
    assert!(listing(&root.path().join("m/new")).is_empty());
    assert!(listing(&root.path().join("m/tmp")).is_empty());

    let usage = run(
        &["--no-such-option", "/mail/m"],
        MSG,
        root.path(),
        &[],
        Limits::default(),
    );
    // No terminal: a command-line mistake defers, as in the native binary (issue 13).
    assert_eq!(usage.code, 75, "{usage:?}");
}

#[test]
fn parallel_instances_deliver_distinct_exact_copies() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("M/tmp")).unwrap();
    fs::create_dir_all(root.path().join("M/new")).unwrap();
    fs::create_dir_all(root.path().join("M/cur")).unwrap();
    let per_thread = 10;
    std::thread::scope(|s| {
        for t in 0..8 {
            let dir = root.path();
            s.spawn(move || {
                for i in 0..per_thread {
                    let body = format!("Subject: {t}/{i}\n\nbody {t} {i}\n");
                    let r = run(&["/mail/M"], body.as_bytes(), dir, &[], Limits::default());
                    assert_eq!(r.code, 0, "{r:?}");
                }
            });
        }
    });
    let new = root.path().join("M/new");
    let names = listing(&new);
    assert_eq!(names.len(), 8 * per_thread);
    let mut bodies: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(new.join(n)).unwrap())
        .collect();
    bodies.sort();
    let mut expected: Vec<Vec<u8>> = (0..8)
        .flat_map(|t| {
            (0..per_thread).map(move |i| format!("Subject: {t}/{i}\n\nbody {t} {i}\n").into_bytes())
        })
        .collect();
    expected.sort();
    assert_eq!(bodies, expected);
    assert!(listing(&root.path().join("M/tmp")).is_empty());
}

#[test]
fn parallel_instances_creating_one_folder_make_it_once() {
    // Each round, 8 instances race to create the same new folder (and its maildir) with -c:
    // one staging copy is renamed into place, the others see it taken and use it.
    for round in 0..5 {
        let root = tempfile::tempdir().unwrap();
        let folder = format!("Lists/r{round}");
        std::thread::scope(|s| {
            for t in 0..8 {
                let (dir, folder) = (root.path(), folder.as_str());
                s.spawn(move || {
                    let body = format!("Subject: {t}\n\nbody {t}\n");
                    let args = ["-c", "--folder", folder, "/mail/M"];
                    let r = run(&args, body.as_bytes(), dir, &[], Limits::default());
                    assert_eq!(r.code, 0, "{r:?}");
                });
            }
        });
        let m = root.path().join("M");
        let dot = format!(".Lists.r{round}");
        let folders: Vec<String> = listing(&m)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert_eq!(folders, vec![dot.clone()]);
        let f = m.join(&dot);
        assert_eq!(listing(&f), ["cur", "maildirfolder", "new", "tmp"]);
        assert_eq!(listing(&f.join("new")).len(), 8);
        assert!(
            listing(&m.join("tmp")).is_empty(),
            "a staging copy was left"
        );
        assert!(listing(&f.join("tmp")).is_empty());
    }
}

#[test]
fn sandbox_walls_hold() {
    let top = tempfile::tempdir().unwrap();
    let sandbox = top.path().join("sandbox");
    let outside = top.path().join("outside");
    fs::create_dir_all(&sandbox).unwrap();
    for d in ["tmp", "new", "cur"] {
        fs::create_dir_all(outside.join(d)).unwrap();
    }
    let host_path = outside.to_str().unwrap().to_string();
    let cases: Vec<(&str, String)> = vec![
        ("outside every preopen", "/elsewhere/Maildir".to_string()),
        ("absolute host path", host_path.clone()),
        ("climbing with ..", "/mail/../outside".to_string()),
    ];
    for (what, path) in &cases {
        let r = run(&["-c", path], MSG, &sandbox, &[], Limits::default());
        assert_eq!(r.code, 75, "{what}: {r:?}");
        assert!(
            r.stderr
                .contains(&format!("\nmdeliver: {path}: opening maildir: ")),
            "{what}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("preopened"), "{what}: {}", r.stderr);
    }
    // A symlink inside the sandbox pointing outside: as the maildir, and as its new/.
    std::os::unix::fs::symlink(&outside, sandbox.join("link")).unwrap();
    let r = run(&["/mail/link"], MSG, &sandbox, &[], Limits::default());
    assert_eq!(r.code, 75, "{r:?}");
    fs::create_dir_all(sandbox.join("M/tmp")).unwrap();
    fs::create_dir_all(sandbox.join("M/cur")).unwrap();
    std::os::unix::fs::symlink(outside.join("new"), sandbox.join("M/new")).unwrap();
    let r = run(&["/mail/M"], MSG, &sandbox, &[], Limits::default());
    assert_eq!(r.code, 75, "{r:?}");
    assert!(r.stderr.contains("opening maildir"), "{}", r.stderr);
    // Nothing was created or touched outside the sandbox.
    assert_eq!(
        listing(top.path()),
        vec!["outside".to_string(), "sandbox".to_string()]
    );
    for d in ["tmp", "new", "cur"] {
        assert!(
            listing(&outside.join(d)).is_empty(),
            "outside/{d} was touched"
        );
    }
    assert!(listing(&sandbox.join("M/tmp")).is_empty());
}

#[test]
fn memory_limit_stops_a_greedy_instance() {
    let root = tempfile::tempdir().unwrap();
    let r = run(
        &["-c", "/mail/m"],
        MSG,
        root.path(),
        &[],
        Limits {
            memory: Some(64 * 1024),
            fuel: None,
        },
    );
    assert_eq!(r.code, -1, "{r:?}");
    assert!(r.trap.contains("memory"), "{}", r.trap);
    assert!(!root.path().join("m/new").exists() || listing(&root.path().join("m/new")).is_empty());
}

#[test]
fn fuel_limit_stops_a_long_run() {
    let root = tempfile::tempdir().unwrap();
    // A message large enough that streaming it cannot finish on this little fuel.
    let big = vec![b'x'; 4 << 20];
    let r = run(
        &["-c", "/mail/m"],
        &big,
        root.path(),
        &[],
        Limits {
            memory: None,
            fuel: Some(200_000),
        },
    );
    assert_eq!(r.code, -1, "{r:?}");
    assert!(r.trap.contains("fuel"), "{}", r.trap);
    // Interrupted mid-write: nothing may be visible in new/ or cur/.
    assert!(listing(&root.path().join("m/new")).is_empty());
    assert!(listing(&root.path().join("m/cur")).is_empty());
}

#[test]
fn error_messages() {
    let top = tempfile::tempdir().unwrap();
    let sandbox = top.path().join("sandbox");
    fs::create_dir_all(sandbox.join("M/tmp")).unwrap();
    fs::create_dir_all(sandbox.join("M/cur")).unwrap();
    std::os::unix::fs::symlink("/tmp", sandbox.join("M/new")).unwrap();
    let mut report = String::new();
    for args in [
        &["/elsewhere/Maildir"][..],
        &["-c", "/mail/../outside"],
        &["/mail/missing"],
        &["--strict-exit", "/mail/missing"],
        &["/mail/M"],
    ] {
        let r = run(args, MSG, &sandbox, &[], Limits::default());
        report.push_str(&format!(
            "$ mdeliver-wasi {}\n{}exit {}\n\n",
            args.join(" "),
            r.stderr,
            r.code
        ));
    }
    let r = run(&["-c", "/mail/E"], b"", &sandbox, &[], Limits::default());
    report.push_str(&format!(
        "$ mdeliver-wasi -c /mail/E < /dev/null\n{}exit {}\n",
        r.stderr, r.code
    ));
    insta::assert_snapshot!(report);
}

#[test]
fn help_is_the_shared_definition_with_the_module_s_own_sections() {
    let root = tempfile::tempdir().unwrap();
    let long = run(&["--help"], b"", root.path(), &[], Limits::default());
    assert_eq!(long.code, 0, "{long:?}");
    let short = run(&["-h"], b"", root.path(), &[], Limits::default());
    assert_eq!(short.code, 0, "{short:?}");
    // The options come from the shared definition: the mail and MTA options are there.
    for option in [
        "--mbox",
        "--folder",
        "--return-path",
        "--dedup",
        "--json",
        "--host",
    ] {
        assert!(
            short.stdout.contains(option),
            "{option} missing:\n{}",
            short.stdout
        );
    }
    insta::assert_snapshot!("module_help_short", short.stdout);
    insta::assert_snapshot!("module_help_long", long.stdout);
}
