//! The reader-side subcommands end to end: `list` stays complete and duplicate-free while two
//! other processes rename tens of thousands of messages,
//! `flag` racing `flag` on one message never loses it nor a flag, `check` finds and repairs,
//! and every --help and error message as an insta snapshot.

mod cli_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::*;

fn outcome(r: &Run, tmp: &Path) -> String {
    format!(
        "exit {}\n{}{}",
        r.code,
        normalize(&r.stdout, tmp),
        normalize(&r.stderr, tmp)
    )
}

#[test]
fn help_of_each_subcommand() {
    for sub in ["list", "flag", "check"] {
        let r = run(&[&sub, &"--help"], b"", &[("COLUMNS", "100")]);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""));
        insta::assert_snapshot!(format!("help_{sub}"), r.stdout);
    }
}

#[test]
fn a_maildir_named_like_a_subcommand_is_reachable() {
    let t = tempfile::tempdir().unwrap();
    let r = run(&[&"list"], b"", &[]);
    assert_eq!(r.code, 64, "`list` alone is the subcommand: {}", r.stderr);
    let mut c = Command::new(bin());
    c.current_dir(t.path())
        .args(["-c", "./list"])
        .stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"S: x\n\n").unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(names(&t.path().join("list/new")).len(), 1);
}

#[test]
fn subcommand_errors() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    std::fs::write(t.path().join("file"), b"").unwrap();
    std::fs::write(md.join("new/1.M1P1Q1.h,S=3"), b"x\n\n").unwrap();
    let nope = t.path().join("nope");
    let file = t.path().join("file");
    let cases: Vec<(&str, Vec<&dyn AsRef<std::ffi::OsStr>>)> = vec![
        ("list missing", vec![&"list", &nope]),
        ("list file", vec![&"list", &file]),
        ("check missing", vec![&"check", &nope]),
        (
            "flag missing maildir",
            vec![&"flag", &nope, &"1.M1P1Q1.h", &"+S"],
        ),
        ("flag unknown key", vec![&"flag", &md, &"2.M1P1Q1.h", &"+S"]),
        ("flag not a key", vec![&"flag", &md, &".hidden", &"+S"]),
        (
            "flag bad change",
            vec![&"flag", &md, &"1.M1P1Q1.h,S=3", &"S"],
        ),
        (
            "flag bad letter",
            vec![&"flag", &md, &"1.M1P1Q1.h,S=3", &"+S-"],
        ),
        (
            "bad separator",
            vec![&"list", &"--info-separator", &"/", &md],
        ),
    ];
    let mut out = String::new();
    for (what, args) in cases {
        let r = run(&args, b"", &[]);
        out.push_str(&format!("## {what}\n{}\n", outcome(&r, t.path())));
    }
    insta::assert_snapshot!("errors", out);
}

#[test]
fn flag_moves_to_cur_and_changes_flags() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    let key = "1.M1P1Q1.h,S=3";
    std::fs::write(md.join("new").join(key), b"x\n\n").unwrap();
    let r = run(&[&"flag", &md, &key], b"", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(names(&md.join("cur")), [format!("{key}:2,")]);
    let r = run(&[&"flag", &md, &key, &"+SF", &"-F", &"+T"], b"", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = md.join("cur").join(format!("{key}:2,ST"));
    assert_eq!(r.stdout, format!("{}\n", want.display()));
    assert_eq!(std::fs::read(&want).unwrap(), b"x\n\n");
    // By file name and by path, and with the stat + rename fallback.
    let r = run(
        &[&"flag", &md, &want, &"-T"],
        b"",
        &[("MDELIVER_DISABLE", "rename-noreplace")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(names(&md.join("cur")), [format!("{key}:2,S")]);
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
}

/// Starts `mdeliver args...` with no input, output captured.
fn spawn(args: &[&dyn AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(bin());
    for a in args {
        c.arg(a);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn flag_racing_flag_loses_neither_message_nor_flag() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    for (round, env) in (0..24).zip(
        [&[][..], &[("MDELIVER_DISABLE", "rename-noreplace")][..]]
            .iter()
            .cycle(),
    ) {
        let key = format!("{round}.M1P1Q1.h,S=6");
        let body = format!("r{round}\n\n");
        std::fs::write(md.join("new").join(&key), &body).unwrap();
        let children: Vec<_> = ["+D", "+F", "+R", "+S", "+a"]
            .iter()
            .map(|c| spawn(&[&"flag", &"--no-fsync", &md, &key, c], env))
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cur = names(&md.join("cur"));
        let mine: Vec<&String> = cur.iter().filter(|n| n.starts_with(&key)).collect();
        assert_eq!(mine, [&format!("{key}:2,DFRSa")], "round {round} {env:?}");
        assert_eq!(
            std::fs::read(md.join("cur").join(mine[0])).unwrap(),
            body.as_bytes()
        );
        assert_eq!(names(&md.join("new")), Vec::<String>::new());
    }
}

/// A Python process that renames its share of the messages as fast as it can for `secs`
/// seconds: new/ → cur/ once, then flips the flags S ↔ FS. Prints its rename count.
const FLIPPER: &str = r#"
import os, sys, time
md, part, parts, secs, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
keys = ['1700000000.M%06dP1Q%d.test,S=3' % (i, i) for i in range(part, n, parts)]
where = {k: ('new', k) for k in keys}
n = 0
end = time.time() + secs
while time.time() < end:
    for k in keys:
        d, name = where[k]
        to = ('cur', k + (':2,' if d == 'new' else ':2,FS' if name.endswith(':2,S') else ':2,S'))
        os.rename(md + '/' + d + '/' + name, md + '/' + to[0] + '/' + to[1])
        where[k] = to
        n += 1
print(n)
"#;

#[test]
fn list_is_complete_and_duplicate_free_under_renames() {
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: python3 is not available");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    // Enough messages that a listing takes many getdents calls (one call over a small
    // directory is atomic against renames).
    let n = 3000;
    let mut all = BTreeSet::new();
    for i in 0..n {
        let key = format!("1700000000.M{i:06}P1Q{i}.test,S=3");
        std::fs::write(md.join("new").join(&key), b"x\n\n").unwrap();
        all.insert(key);
    }
    let flippers: Vec<_> = (0..2)
        .map(|part| {
            Command::new("python3")
                .arg("-c")
                .arg(FLIPPER)
                .arg(&md)
                .arg(part.to_string())
                .arg("2")
                .arg("2.5")
                .arg(n.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut settled, mut unsettled, mut runs) = (0, 0, 0);
    let check = |r: &Run, settled: &mut u32, unsettled: &mut u32| {
        let keys: Vec<&str> = r
            .stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        let unique: BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "a message was listed twice");
        for k in &unique {
            assert!(all.contains(*k), "unknown key {k}");
        }
        match r.code {
            0 => {
                assert_eq!(unique.len(), all.len(), "settled but incomplete");
                *settled += 1;
            }
            75 => {
                assert!(r.stderr.contains("did not settle"), "{}", r.stderr);
                *unsettled += 1;
            }
            c => panic!("exit {c}: {}", r.stderr),
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2300);
    while std::time::Instant::now() < deadline || runs < 3 {
        let r = run(&[&"list", &md], b"", &[]);
        check(&r, &mut settled, &mut unsettled);
        runs += 1;
    }
    let renames: u64 = flippers
        .into_iter()
        .map(|f| {
            let out = f.wait_with_output().unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    eprintln!(
        "{runs} listings during {renames} renames: {settled} settled (complete), {unsettled} \
         reported that they could not settle"
    );
    assert!(renames > 1000, "the flippers barely ran: {renames}");
    // Each directory is read in one getdents64 call, atomic against renames: every listing
    // settles, and so is complete.
    assert_eq!((settled, unsettled), (runs, 0));
    // Quiet again: the listing settles and is complete.
    let r = run(&[&"list", &"--json", &md], b"", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), n);
    assert!(r.stdout.lines().all(|l| l.contains("\"subdir\":\"cur\"")));
}

#[test]
fn check_reports_and_repairs_only_stale_tmp_and_lock_files() {
    // A file is stale when both its mtime and its ctime are old, and no process can set a
    // ctime back: `check` runs with its clock 40 hours ahead (libfaketime) instead.
    let Some(lib) = libfaketime() else {
        eprintln!("skipped: libfaketime (Debian package faketime) is not installed");
        return;
    };
    let ahead = [
        ("LD_PRELOAD", lib),
        ("FAKETIME", "+40h"),
        ("NO_FAKE_STAT", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    let now = std::time::SystemTime::now();
    let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
    std::fs::File::create(md.join("tmp/stale"))
        .unwrap()
        .set_modified(now - hours(40))
        .unwrap();
    // Modified "now" on the clock check runs with.
    std::fs::File::create(md.join("tmp/fresh"))
        .unwrap()
        .set_modified(now + hours(40))
        .unwrap();
    // The lock's leftovers in the maildir itself: a dead deliverer's unique name and claim are
    // stale; a live claim, the lock itself and everything else there are never reported.
    for (name, stale) in [
        ("mdeliver.lock.1.M1P1Q1R1.h", true),
        ("mdeliver.lock.break.1", true),
        ("mdeliver.lock.break.2", false),
        ("mdeliver.lock", true),
        ("maildirsize", true),
        ("mdeliver-dedup.0a", true),
    ] {
        let at = if stale {
            now - hours(40)
        } else {
            now + hours(40)
        };
        std::fs::File::create(md.join(name))
            .unwrap()
            .set_modified(at)
            .unwrap();
    }
    std::fs::create_dir(md.join(".Sent")).unwrap();
    std::fs::write(md.join("new/1.M1P1Q1.h,S=3"), b"x\n\n").unwrap();
    std::fs::write(md.join("cur/1.M1P1Q1.h,S=3:2,S"), b"x\n\n").unwrap();
    // Flags on a message still in new/, as Dovecot gives them (`doveadm flags add`): no
    // finding.
    std::fs::write(md.join("new/2.M1P1Q1.h:2,S"), b"x\n\n").unwrap();
    std::fs::write(md.join("cur/.hidden"), b"").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", md.join("cur/3.M1P1Q1.h:2,")).unwrap();
    std::fs::create_dir(md.join("new/4.M1P1Q1.h")).unwrap();
    let r = run(&[&"check", &md], b"", &ahead);
    let first = outcome(&r, t.path());
    let r = run(&[&"check", &"--repair", &md], b"", &ahead);
    let repaired = outcome(&r, t.path());
    assert!(!md.join("tmp/stale").exists());
    assert!(md.join("tmp/fresh").exists());
    assert_eq!(
        names(&md),
        [
            ".Sent",
            "cur",
            "maildirsize",
            "mdeliver-dedup.0a",
            "mdeliver.lock",
            "mdeliver.lock.break.2",
            "new",
            "tmp"
        ],
        "only the stale lock leftovers removed"
    );
    assert_eq!(names(&md.join("cur")).len(), 3, "nothing else removed");
    for p in [
        "cur/1.M1P1Q1.h,S=3:2,S",
        "new/2.M1P1Q1.h:2,S",
        "cur/.hidden",
        "cur/3.M1P1Q1.h:2,",
    ] {
        std::fs::remove_file(md.join(p)).unwrap();
    }
    std::fs::remove_dir(md.join("new/4.M1P1Q1.h")).unwrap();
    let r = run(&[&"check", &md], b"", &ahead);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    insta::assert_snapshot!("check", format!("{first}\n--repair:\n{repaired}"));
}

#[test]
fn list_escapes_names_so_none_can_forge_a_record() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    // The name from issue 12: unescaped, it printed a second, well-formed record.
    let forged = "forged\nFAKEKEY\tnew\t-\t0\tvictim:2,S";
    std::fs::write(md.join("cur").join(forged), b"x\n\n").unwrap();
    std::fs::write(md.join("new/1.M1P1Q1.h"), b"y\n\n").unwrap();
    std::fs::write(md.join("cur/2.M1P1Q1.h\\t\r:2,S"), b"z\n\n").unwrap();
    let r = run(&[&"list", &md], b"", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one record per message: {:?}", r.stdout);
    for l in &lines {
        assert_eq!(l.split('\t').count(), 5, "five fields: {l:?}");
        assert!(!l.contains('\r'), "{l:?}");
    }
    let md_shown = md.display().to_string();
    assert_eq!(
        lines,
        [
            format!("1.M1P1Q1.h\tnew\t-\t3\t{md_shown}/new/1.M1P1Q1.h"),
            format!("2.M1P1Q1.h\\\\t\\r\tcur\tS\t3\t{md_shown}/cur/2.M1P1Q1.h\\\\t\\r:2,S"),
            format!(
                "forged\\nFAKEKEY\\tnew\\t-\\t0\\tvictim\tcur\tS\t3\t\
                 {md_shown}/cur/forged\\nFAKEKEY\\tnew\\t-\\t0\\tvictim:2,S"
            ),
        ]
    );
}

/// libfaketime's library (Debian package `libfaketime`, pulled in by `faketime`).
fn libfaketime() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

#[test]
fn check_repair_spares_a_file_backdated_while_it_is_written() {
    // `-M` sets each message's mtime to its Date: before publishing it; on the named-tmp
    // paths the file sits in tmp/ meanwhile, looking years old (issue 12, item 4). Its ctime
    // is now, so it is not stale, and --repair must leave it alone.
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    let years = std::time::Duration::from_secs(10 * 365 * 86400);
    let f = std::fs::File::create(md.join("tmp/importing")).unwrap();
    f.set_modified(std::time::SystemTime::now() - years)
        .unwrap();
    let r = run(&[&"check", &"--repair", &md], b"", &[]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    assert!(
        md.join("tmp/importing").exists(),
        "the in-flight file is kept"
    );
    // And while a real import runs on a named-tmp path, a repair loop removes nothing of it.
    let mut mbox = Vec::new();
    for i in 0..300 {
        mbox.extend_from_slice(
            format!(
                "From a Sat Nov 28 18:03:09 2026\nDate: Mon, 1 Jan 2001 00:00:00 +0000\n\
                 Subject: {i}\n\n{}\n\n",
                "x".repeat(20_000)
            )
            .as_bytes(),
        );
    }
    let into = t.path().join("imported");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let repairer = {
        let (stop, into) = (stop.clone(), into.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if into.join("tmp").exists() {
                    let r = run(&[&"check", &"--repair", &into], b"", &[]);
                    removed += r.stdout.matches("(removed)").count();
                }
            }
            removed
        })
    };
    let env = [("MDELIVER_DISABLE", "anonymous-tmp")];
    let r = run(&[&"-M", &"-c", &"--no-fsync", &into], &mbox, &env);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let removed = repairer.join().unwrap();
    assert_eq!((r.code, removed), (0, 0), "{}", r.stderr);
    assert_eq!(names(&into.join("new")).len(), 300);
}
