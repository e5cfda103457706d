//! End-to-end tests of the MTA drop-in features of the real `mdeliver` binary: the envelope
//! (From_ line, Return-Path/X-Original-To/Delivered-To, --from-env), loop detection, the
//! Maildir++ quota under concurrent deliverers, duplicate suppression (concurrent, and after a
//! SIGKILL between publish and index commit), dry run, JSON reports, status lines, and the
//! generated man page and completions.

mod cli_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::{bin, make_maildir, names, normalize, run, Run};

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn only_message(md: &Path) -> Vec<u8> {
    let new = names(&md.join("new"));
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(names(&md.join("tmp")).is_empty(), "tmp/ not empty");
    std::fs::read(md.join("new").join(&new[0])).unwrap()
}

/// Every file below `dir` (relative path → contents; directories as `<dir>`).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

const POSTFIX_MSG: &[u8] = b"From alice@example.org  Sat Nov 28 18:03:09 2026\n\
Return-Path: <alice@example.org>\n\
X-Original-To: bob@example.org\n\
Delivered-To: bob@example.org\n\
Received: by mx.example.org\n\
Message-ID: <m1@example.org>\n\
Subject: hello\n\
\n\
body\n";

const POSTFIX_ENV: [(&str, &str); 3] = [
    ("SENDER", "alice@example.org"),
    ("RECIPIENT", "bob@example.org"),
    ("ORIGINAL_RECIPIENT", "bob@example.org"),
];

#[test]
fn postfix_input_is_stored_without_from_line_and_without_duplicate_fields() {
    let t = scratch();
    let md = t.path().join("m");
    let without_from = &POSTFIX_MSG[POSTFIX_MSG.iter().position(|&b| b == b'\n').unwrap() + 1..];
    // With the envelope from the environment, and without: the same bytes.
    for args in [vec!["--from-env"], vec![]] {
        let _ = std::fs::remove_dir_all(&md);
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-c"];
        for x in &args {
            a.push(x);
        }
        a.push(&md);
        let r = run(&a, POSTFIX_MSG, &POSTFIX_ENV);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""));
        assert_eq!(only_message(&md), without_from);
    }
}

/// Postfix's own block is exact, while the variables it sets for `mailbox_command` are
/// filtered (a quote or a space becomes `_`) and `RECIPIENT` names the final user where its
/// `Delivered-To` names the alias the mail was sent to: with `--from-env` the block stands and
/// nothing is added. An address in the environment that cannot go into a header (over 512
/// bytes: a remote sender's) is left out instead of deferring the message.
#[test]
fn postfix_block_stands_over_its_filtered_environment() {
    let t = scratch();
    let md = t.path().join("m");
    let msg = b"From o'brien@example.org  Sat Nov 28 18:03:09 2026\n\
Return-Path: <o'brien@example.org>\n\
X-Original-To: postmaster@example.org\n\
Delivered-To: postmaster@example.org\n\
Subject: hello\n\
\n\
body\n";
    let without_from = &msg[msg.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let env = [
        ("SENDER", "o_brien@example.org"),
        ("RECIPIENT", "bob@example.org"),
        ("ORIGINAL_RECIPIENT", "postmaster@example.org"),
    ];
    let r = run(&[&"-c", &"--from-env", &md], msg, &env);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(only_message(&md), without_from);
    std::fs::remove_dir_all(&md).unwrap();
    let long = format!("{}@example.org", "x".repeat(600));
    let env = [("SENDER", long.as_str()), ("RECIPIENT", "bob@example.org")];
    let r = run(&[&"-c", &"--from-env", &md], b"Subject: s\n\nbody\n", &env);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        only_message(&md),
        b"Delivered-To: bob@example.org\nSubject: s\n\nbody\n"
    );
}

#[test]
fn envelope_fields_are_prepended_and_from_env_is_never_implicit() {
    let t = scratch();
    let md = t.path().join("m");
    let msg = b"From alice@x Sat Nov 28 18:03:09 2026\nSubject: s\n\nbody\n";
    let r = run(&[&"-c", &md], msg, &POSTFIX_ENV);
    assert_eq!(r.code, 0, "{r:?}");
    // The From_ sender became the Return-Path; SENDER etc. were not used without --from-env.
    assert_eq!(
        only_message(&md),
        b"Return-Path: <alice@x>\nSubject: s\n\nbody\n"
    );
    std::fs::remove_dir_all(&md).unwrap();
    let r = run(&[&"-c", &"--from-env", &md], msg, &POSTFIX_ENV);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        String::from_utf8(only_message(&md)).unwrap(),
        "Return-Path: <alice@example.org>\nX-Original-To: bob@example.org\n\
         Delivered-To: bob@example.org\nSubject: s\n\nbody\n"
    );
    std::fs::remove_dir_all(&md).unwrap();
    let r = run(
        &[
            &"-c",
            &"--keep-from-line",
            &"--return-path=<>",
            &"--delivered-to",
            &"me@x",
            &md,
        ],
        b"From a@b Sat Nov 28 18:03:09 2026\r\nSubject: s\r\n\r\nb\r\n",
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        String::from_utf8(only_message(&md)).unwrap(),
        "From a@b Sat Nov 28 18:03:09 2026\r\nReturn-Path: <>\r\nDelivered-To: me@x\r\n\
         Subject: s\r\n\r\nb\r\n"
    );
}

#[test]
fn an_address_with_a_stray_angle_bracket_is_never_written_into_a_header() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    let msg = b"Subject: s\n\nbody\n";
    // Given by the MTA's command line: its configuration is wrong, so the delivery defers.
    for bad in ["<<>>", "<a@x>>", "<a@x"] {
        let r = run(&[&format!("--return-path={bad}"), &md], msg, &[]);
        assert_eq!(r.code, 75, "{bad}: {r:?}");
        assert_eq!(
            r.stderr,
            "4.3.5 mdeliver is misconfigured\n\
             mdeliver: return path: address has an angle bracket inside it \
             (more than one pair of <>?)\n",
            "{bad}"
        );
        assert!(names(&md.join("new")).is_empty(), "{bad}");
    }
    // From the mbox's `From ` line (framing, not the message): the message is stored, without
    // a Return-Path from it. So is one whose sender is too long to be an address.
    let long = format!("{}@x", "a".repeat(600));
    for sender in ["<a@x>>", long.as_str()] {
        let m = format!("From {sender} Sat Nov 28 18:03:09 2026\nSubject: s\n\nbody\n");
        let r = run(&[&md], m.as_bytes(), &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(only_message(&md), b"Subject: s\n\nbody\n");
        std::fs::remove_file(md.join("new").join(&names(&md.join("new"))[0])).unwrap();
    }
}

#[test]
fn loops_are_refused_before_anything_is_written() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    // Postfix's stamp at the top, and an older Delivered-To for us below it: a loop.
    let mut looped = POSTFIX_MSG.to_vec();
    let at = looped.windows(9).position(|w| w == b"Received:").unwrap();
    looped.splice(
        at..at,
        b"Delivered-To: other@example.org\nDelivered-To: <BOB@example.org>\n"
            .iter()
            .copied(),
    );
    let r = run(&[&"--from-env", &md], &looped, &POSTFIX_ENV);
    assert_eq!(r.code, 65);
    assert!(
        normalize(&r.stderr, t.path()).starts_with(
            "5.4.6 mail forwarding loop for bob@example.org\n\
             mdeliver: [TMP]/m: checking message: mail forwarding loop; "
        ),
        "{r:?}"
    );
    assert_eq!(tree(&md).len(), 3, "{:?}", tree(&md).keys());
    // A header longer than the looked-at head: found while streaming, nothing published.
    let mut long = b"Subject: s\nX-Big: ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 100_000));
    long.extend_from_slice(b"\nDelivered-To: bob@example.org\n\nbody\n");
    let r = run(&[&"--delivered-to=bob@example.org", &md], &long, &[]);
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r
        .stderr
        .starts_with("5.4.6 mail forwarding loop for bob@example.org\n"));
    assert_eq!(tree(&md).len(), 3, "{:?}", tree(&md).keys());
    // Only in the body: not a loop.
    let body = b"Subject: s\n\nDelivered-To: bob@example.org\n";
    let r = run(&[&"--delivered-to=bob@example.org", &md], body, &[]);
    assert_eq!(r.code, 0, "{r:?}");
}

fn msg_of(size: usize, id: usize) -> Vec<u8> {
    let mut m = format!("Subject: {id}\n\n").into_bytes();
    m.resize(size - 1, b'x');
    m.push(b'\n');
    m
}

#[test]
fn quota_defers_or_bounces_with_the_right_status() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    for i in 0..3 {
        let r = run(&[&"--quota=1000", &md], &msg_of(300, i), &[]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    assert_eq!(
        std::fs::read_to_string(md.join("maildirsize")).unwrap(),
        "1000S\n0 0\n300 1\n300 1\n300 1\n"
    );
    let r = run(&[&"--quota=1000", &md], &msg_of(300, 9), &[]);
    assert_eq!(r.code, 75);
    assert_eq!(
        normalize(&r.stderr, t.path()),
        "4.2.2 mailbox full\nmdeliver: [TMP]/m: checking message: mailbox full; the mailbox \
         is over its Maildir++ quota\n"
    );
    // The definition in maildirsize is honoured without --quota.
    let r = run(&[&"--quota-full=bounce", &md], &msg_of(300, 9), &[]);
    assert_eq!(r.code, 77);
    assert!(r.stderr.starts_with("5.2.2 mailbox full\n"), "{r:?}");
    assert_eq!(names(&md.join("new")).len(), 3);
    assert!(names(&md.join("tmp")).is_empty());
}

fn spawn(args: &[&dyn AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(bin());
    for a in args {
        c.arg(a);
    }
    c.env_remove("MDELIVER_DISABLE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn finish(mut child: std::process::Child, stdin: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn quota_under_eight_concurrent_deliverers_overshoots_at_most_as_the_spec_allows() {
    const N: usize = 8;
    const LIMIT: usize = 5;
    const EACH: usize = 4;
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    let quota = format!("--quota=0,{LIMIT}");
    let workers: Vec<_> = (0..N)
        .map(|w| {
            let md = md.clone();
            let quota = quota.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let c = spawn(&[&quota, &md], &[]);
                        finish(c, &msg_of(200, w * 100 + i)).0.unwrap()
                    })
                    .collect::<Vec<i32>>()
            })
        })
        .collect();
    let codes: Vec<i32> = workers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let stored = names(&md.join("new")).len();
    assert!(codes.iter().all(|&c| c == 0 || c == 75), "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), stored);
    // core/src/machine/quota.rs: at most 2 (N - 1) messages over the count limit; and the mailbox
    // was filled, not refused early.
    assert!(
        stored <= LIMIT + 2 * (N - 1),
        "{stored} stored with a limit of {LIMIT}"
    );
    assert!(stored >= LIMIT, "only {stored} stored");
    assert!(names(&md.join("tmp")).is_empty());
}

#[test]
fn dedup_under_eight_concurrent_deliverers_stores_once() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    let msg = b"Message-ID: <same@example.org>\nSubject: s\n\nbody\n";
    let children: Vec<_> = (0..8)
        .map(|_| spawn(&[&"--dedup", &"--json", &md], &[]))
        .collect();
    let results: Vec<_> = children.into_iter().map(|c| finish(c, msg)).collect();
    let mut dups = 0;
    for (code, stdout, stderr) in &results {
        assert_eq!(*code, Some(0), "{stderr}");
        assert!(stdout.contains("\"duplicate\":true") || stdout.contains("\"duplicate\":false"));
        dups += usize::from(stdout.contains("\"duplicate\":true"));
    }
    assert_eq!(dups, 7, "{results:?}");
    assert_eq!(only_message(&md), msg);
}

#[test]
fn dedup_after_a_kill_between_publish_and_commit_stores_once() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    let msg = b"Message-ID: <crash@example.org>\nSubject: s\n\nbody\n";
    let env = [
        ("MDELIVER_TEST_KILL", "before-commit"),
        ("MDELIVER_TEST_DEDUP_LEASE", "1"),
    ];
    let (code, _, _) = finish(spawn(&[&"--dedup", &md], &env), msg);
    assert_eq!(code, None, "killed by SIGKILL");
    // Published (the crash point is after the publish), not committed.
    assert_eq!(only_message(&md), msg);
    let entry = names(&md)
        .into_iter()
        .find(|n| n.starts_with("mdeliver-dedup."))
        .unwrap();
    let records = std::fs::read_to_string(md.join(&entry)).unwrap();
    assert!(
        records.contains("\nI ") && !records.contains("\nC "),
        "{records}"
    );
    // The MTA retries: within the lease the holder may still be alive, so the retry waits;
    // once the lease (1 s + 1 s margin) has passed, recovery finds the intent's file in new/.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let r = run(
        &[&"--dedup", &"--json", &md],
        msg,
        &[("MDELIVER_TEST_DEDUP_LEASE", "1")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\"duplicate\":true"), "{r:?}");
    assert_eq!(only_message(&md), msg);
    // And a later retry is suppressed by the entry as well.
    let r = run(
        &[&"--dedup", &md],
        msg,
        &[("MDELIVER_TEST_DEDUP_LEASE", "1")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(only_message(&md), msg);
}

#[test]
fn dry_run_leaves_the_maildir_byte_for_byte_unchanged() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    for i in 0..3 {
        let m = msg_of(100, i);
        let r = run(&[&"--dedup", &"--quota=10000,100", &md], &m, &[]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let before = tree(&md);
    let all = ["--dedup", "--quota=10000,100", "--json", "-n"];
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = all.iter().map(|a| a as _).collect();
    args.push(&md);
    // A new message: reported with the name it would get.
    let r = run(&args, &msg_of(100, 7), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("\"duplicate\":false,\"dry_run\":true"),
        "{r:?}"
    );
    assert!(r.stderr.contains("would deliver 100 bytes"), "{r:?}");
    // A duplicate: reported as such.
    let r = run(&args, &msg_of(100, 1), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("\"duplicate\":true,\"dry_run\":true"),
        "{r:?}"
    );
    // Over quota: the failure it would be.
    let r = run(&[&"-n", &"--quota=300", &md], &msg_of(100, 8), &[]);
    assert_eq!(r.code, 75, "{r:?}");
    assert!(r.stderr.starts_with("4.2.2 mailbox full\n"), "{r:?}");
    // On every publish path.
    for (disable, _) in cli_support::PATHS {
        let r = run(&args, &msg_of(100, 9), &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 0, "{disable}: {r:?}");
    }
    assert_eq!(tree(&md), before);
}

#[test]
fn json_schema() {
    let t = scratch();
    let md = t.path().join("m");
    let md2 = t.path().join("m2");
    let r = run(
        &[&"-c", &"--json", &"--dedup", &md, &md2],
        b"Message-ID: <j@x>\n\nb\n",
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let mut s = normalize(&r.stdout, t.path());
    for n in names(&md.join("new"))
        .iter()
        .chain(&names(&md2.join("new")))
    {
        s = s.replace(n, "[NAME]");
    }
    insta::assert_snapshot!("json_records", s);
    let r = run(
        &[&"--json", &"--dedup", &md],
        b"Message-ID: <j@x>\n\nb\n",
        &[],
    );
    let mut s = normalize(&r.stdout, t.path());
    for n in names(&md.join("new")) {
        s = s.replace(&n, "[NAME]");
    }
    insta::assert_snapshot!("json_duplicate", s);
}

fn case(out: &mut String, title: &str, r: &Run, tmp: &Path) {
    out.push_str(&format!(
        "== {title}: exit {}\n{}",
        r.code,
        normalize(&r.stderr, tmp)
    ));
}

#[test]
fn status_lines_and_messages() {
    let t = scratch();
    let md = t.path().join("m");
    make_maildir(&md);
    let missing = t.path().join("missing");
    let msg: &[u8] = b"Subject: s\n\nb\n";
    let mut s = String::new();
    case(
        &mut s,
        "missing maildir",
        &run(&[&missing], msg, &[]),
        t.path(),
    );
    case(
        &mut s,
        "missing maildir, --strict-exit",
        &run(&[&"--strict-exit", &missing], msg, &[]),
        t.path(),
    );
    case(&mut s, "empty message", &run(&[&md], b"", &[]), t.path());
    let nofile = t.path().join("nofile");
    case(
        &mut s,
        "input missing",
        &run(&[&"-i", &nofile, &md], b"", &[]),
        t.path(),
    );
    case(
        &mut s,
        "loop",
        &run(
            &[&"--delivered-to=me@x", &md],
            b"Subject: s\nDelivered-To: me@x\n\nb\n",
            &[],
        ),
        t.path(),
    );
    std::fs::write(md.join("maildirsize"), "10S\n0 0\n").unwrap();
    case(&mut s, "over quota", &run(&[&md], msg, &[]), t.path());
    case(
        &mut s,
        "over quota, --quota-full=bounce",
        &run(&[&"--quota-full=bounce", &md], msg, &[]),
        t.path(),
    );
    std::fs::remove_file(md.join("maildirsize")).unwrap();
    case(
        &mut s,
        "bad address",
        &run(&[&"--return-path=a\tb", &md], msg, &[]),
        t.path(),
    );
    case(
        &mut s,
        "two maildirs, one missing (temporary failure wins)",
        &run(&[&"-v", &md, &missing], msg, &[]),
        t.path(),
    );
    insta::assert_snapshot!("status_lines", s);

    // What successful runs say on stderr: -vv, a suppressed duplicate with -v, a dry run.
    let mut s = String::new();
    let dmsg: &[u8] = b"Message-ID: <said@x>\n\nb\n";
    let runs = [
        ("delivered, -vv", run(&[&"-vv", &"--dedup", &md], dmsg, &[])),
        ("duplicate, -v", run(&[&"-v", &"--dedup", &md], dmsg, &[])),
        (
            "dry run, duplicate",
            run(&[&"-n", &"--dedup", &md], dmsg, &[]),
        ),
        ("dry run, new message", run(&[&"-n", &md], msg, &[])),
    ];
    for (title, r) in &runs {
        let mut text = format!("{}{}", r.stdout, r.stderr);
        for n in names(&md.join("new")) {
            text = text.replace(&n, "[NAME]");
        }
        // A dry run's name was never stored: mask whatever follows new/.
        let text: String = text
            .lines()
            .map(|l| match l.find("/new/") {
                Some(i) if !l.contains("[NAME]") => {
                    let rest = &l[i + 5..];
                    let end = rest.find(": ").unwrap_or(rest.len());
                    format!("{}/new/[DRY]{}\n", &l[..i], &rest[end..])
                }
                _ => format!("{l}\n"),
            })
            .collect();
        s.push_str(&format!(
            "== {title}: exit {}\n{}",
            r.code,
            normalize(&text, t.path())
        ));
    }
    insta::assert_snapshot!("success_messages", s);
}

#[test]
fn man_page_and_completions_are_generated() {
    let out = Command::new(bin()).arg("--generate-man").output().unwrap();
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{}", &man[..80]);
    assert!(man.contains(".TH mdeliver 1"));
    for opt in ["\\-\\-dedup", "\\-\\-from\\-env", "\\-\\-quota"] {
        assert!(man.contains(opt), "{opt} missing from the man page");
    }
    for (shell, marker) in [
        ("bash", "_mdeliver()"),
        ("zsh", "#compdef mdeliver"),
        ("fish", "complete -c mdeliver"),
    ] {
        let out = Command::new(bin())
            .args(["--generate-completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}");
        assert!(text.contains("dry-run"), "{shell}");
    }
    let out = Command::new(bin())
        .args(["--generate-completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn copies_into_further_maildirs_are_the_message_not_the_bookkeeping_files() {
    // From a pipe, further maildirs are read back from the first delivered file. A quota
    // recalculation and a dedup entry also write and close files on the way: the copy must
    // still be the message, on every publish path.
    for (disable, _) in cli_support::PATHS {
        let t = scratch();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        make_maildir(&a);
        make_maildir(&b);
        let msg = b"Message-ID: <copy@x>\nSubject: s\n\nbody\n";
        let r = run(
            &[&"--quota=1M", &"--dedup", &a, &b],
            msg,
            &[("MDELIVER_DISABLE", disable)],
        );
        assert_eq!(r.code, 0, "{disable}: {r:?}");
        assert_eq!(only_message(&a), msg, "{disable}");
        assert_eq!(only_message(&b), msg, "{disable}");
        // A duplicate in the first maildir still feeds the second.
        let c = t.path().join("c");
        make_maildir(&c);
        let r = run(&[&"--dedup", &a, &c], msg, &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 0, "{disable}: {r:?}");
        assert_eq!(only_message(&c), msg, "{disable}");
    }
}

#[test]
fn json_follows_the_info_separator_and_flags() {
    let t = scratch();
    let md = t.path().join("m");
    let r = run(
        &[
            &"-c",
            &"--json",
            &"-X",
            &"SF",
            &"--info-separator",
            &";",
            &md,
        ],
        b"Subject: s\n\nb\n",
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let cur = names(&md.join("cur"));
    assert_eq!(cur.len(), 1);
    let (key, info) = cur[0].split_once(';').unwrap();
    assert_eq!(info, "2,FS");
    assert!(
        r.stdout
            .contains(&format!("\"key\":\"{key}\",\"size\":14,\"flags\":\"FS\"")),
        "{r:?}"
    );
}
