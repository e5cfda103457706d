//! `mdeliver --sieve FILE MAILDIR` through the real binary: every copy a script decides lands
//! once (folders created with `:create`, flags in the names), redirects go through the MTA's
//! sendmail with the exact arguments and bytes, a retry of a completed or half-done unit adds
//! nothing and follows the recorded plan, and the script's own mistakes and decisions give the
//! exit codes and RFC 3463 lines an MTA needs.

mod cli_support;

use std::path::PathBuf;

use cli_support::*;

const MESSAGE: &[u8] = b"From: Alice <alice@example.net>\nTo: bob@example.org\n\
Subject: about rust\nMessage-ID: <m1@example.net>\n\nhello\n";

/// What each copy holds: the message with the trace fields of `--return-path` and
/// `--delivered-to`.
fn stored_bytes() -> Vec<u8> {
    let mut v = b"Return-Path: <alice@example.net>\nDelivered-To: bob@example.org\n".to_vec();
    v.extend_from_slice(MESSAGE);
    v
}

struct Site {
    dir: tempfile::TempDir,
    maildir: PathBuf,
    script: PathBuf,
    sendmail: PathBuf,
}

/// A temporary directory with a maildir path, a script and a fake sendmail that records its
/// arguments (one per line) and its standard input in `sent.N.argv` / `sent.N.stdin`, and
/// fails (exit 75) while a file `sendmail-down` exists.
fn site(script: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let script_path = dir.path().join("filter.sieve");
    std::fs::write(&script_path, script).unwrap();
    let sendmail = dir.path().join("sendmail");
    let d = dir.path().display();
    std::fs::write(
        &sendmail,
        format!(
            "#!/bin/sh\n[ -e {d}/sendmail-down ] && exit 75\n\
             n=$(ls {d} | grep -c '^sent\\..*\\.argv$')\n\
             printf '%s\\n' \"$@\" > {d}/sent.$n.argv\ncat > {d}/sent.$n.stdin\n"
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&sendmail).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&sendmail, perm).unwrap();
    Site {
        dir,
        maildir,
        script: script_path,
        sendmail,
    }
}

impl Site {
    fn deliver(&self, extra: &[&str]) -> Run {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            if self.maildir.exists() { &"-v" } else { &"-c" },
            &"-v",
            &"--return-path=alice@example.net",
            &"--delivered-to=bob@example.org",
            &"--sieve",
            &self.script,
            &"--sendmail",
            &self.sendmail,
        ];
        for e in extra {
            args.push(e);
        }
        args.push(&self.maildir);
        // No test here waits for a lease to run out; a short one only made a delivery slowed
        // by other load outrun it and defer (75).
        run(&args, MESSAGE, &[("MDELIVER_TEST_DEDUP_LEASE", "30")])
    }

    /// Every message file of the maildir and its folders: (folder, dir, flags) → contents,
    /// the folder `""` for INBOX.
    fn stored(&self) -> Vec<(String, String, String, Vec<u8>)> {
        let mut v = Vec::new();
        let mut folders = vec![(String::new(), self.maildir.clone())];
        for n in names(&self.maildir) {
            if n.starts_with('.') && self.maildir.join(&n).is_dir() {
                folders.push((n.clone(), self.maildir.join(&n)));
            }
        }
        for (f, path) in folders {
            for d in ["new", "cur"] {
                for (name, bytes) in contents(&path.join(d)) {
                    let flags = name.split_once(":2,").map(|x| x.1).unwrap_or("-");
                    v.push((f.clone(), d.to_string(), flags.to_string(), bytes));
                }
            }
            assert_eq!(names(&path.join("tmp")), Vec::<String>::new(), "{f} tmp/");
        }
        v.sort();
        v
    }

    fn sent(&self) -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        for n in 0.. {
            let argv = self.dir.path().join(format!("sent.{n}.argv"));
            let Ok(a) = std::fs::read_to_string(&argv) else {
                break;
            };
            let stdin = std::fs::read(self.dir.path().join(format!("sent.{n}.stdin"))).unwrap();
            v.push((a, stdin));
        }
        v
    }
}

const SCRIPT: &str = "\
require [\"fileinto\", \"copy\", \"imap4flags\", \"mailbox\"];
if header :contains \"subject\" \"rust\" {
  fileinto :copy :create :flags [\"\\\\Seen\", \"\\\\Flagged\"] \"Lists/Rust\";
  fileinto :copy :create \"Archive\";
  redirect :copy \"phone@example.org\";
}
keep;
";

fn decided(stored: &[u8]) -> Vec<(String, String, String, Vec<u8>)> {
    vec![
        (String::new(), "new".into(), "-".into(), stored.to_vec()),
        (".Archive".into(), "new".into(), "-".into(), stored.to_vec()),
        (
            ".Lists.Rust".into(),
            "cur".into(),
            "FS".into(),
            stored.to_vec(),
        ),
    ]
}

#[test]
fn every_decided_copy_and_redirect_happens_once_and_a_retry_adds_nothing() {
    let s = site(SCRIPT);
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.stored(), decided(&stored_bytes()));
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].0,
        "-i\n-f\nalice@example.net\n--\nphone@example.org\n"
    );
    // The message as received, under the recipient's Delivered-To (loop control), as the
    // stored copies have it.
    assert_eq!(
        sent[0].1,
        [&b"Delivered-To: bob@example.org\n"[..], MESSAGE].concat(),
        "the redirect sends the message as received"
    );
    // The folders were created and subscribed.
    let subs = std::fs::read_to_string(s.maildir.join("subscriptions")).unwrap();
    assert!(
        subs.contains("Lists\tRust") && subs.contains("Archive"),
        "{subs:?}"
    );

    // The MTA did not hear of the success and delivers again: nothing more is stored or sent.
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.stored(), decided(&stored_bytes()));
    assert_eq!(s.sent().len(), 1);
    insta::assert_snapshot!(
        normalize(&r.stderr, s.dir.path()).lines().filter(|l| !l.contains("suppressed")).collect::<Vec<_>>().join("\n"),
        @"mdeliver: [TMP]/Maildir: finishing the actions an earlier attempt recorded"
    );
}

/// The MTA stamped the recipient's Delivered-To itself (Postfix's local delivery): the
/// redirect sends the message as it came, with no second stamp. A message that comes back
/// with the recipient's Delivered-To below the MTA's stamp loops: refused (65, 5.4.6) before
/// the script runs, so it is not redirected once more.
#[test]
fn a_redirect_keeps_the_mtas_stamp_and_a_message_that_came_back_is_not_redirected_again() {
    let s = site(SCRIPT);
    let stamped = [&b"Delivered-To: bob@example.org\n"[..], MESSAGE].concat();
    let args: [&dyn AsRef<std::ffi::OsStr>; 8] = [
        &"-c",
        &"--return-path=alice@example.net",
        &"--delivered-to=bob@example.org",
        &"--sieve",
        &s.script,
        &"--sendmail",
        &s.sendmail,
        &s.maildir,
    ];
    let r = run(&args, &stamped, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, stamped);
    let again = [&b"Delivered-To: bob@example.org\n"[..], &stamped].concat();
    let r = run(&args, &again, &[]);
    assert_eq!(r.code, 65, "{r:?}");
    assert!(
        r.stderr
            .starts_with("5.4.6 mail forwarding loop for bob@example.org\n"),
        "{r:?}"
    );
    assert_eq!(s.sent().len(), 1, "redirected again");
}

#[test]
fn a_redirect_whose_sendmail_cannot_run_is_the_mail_systems_error() {
    // Not "mailbox unavailable": the mailbox is fine, the MTA's program is missing.
    let s = site("require \"copy\";\nredirect :copy \"x@example.org\";\n");
    let missing = s.dir.path().join("no-sendmail");
    let args: [&dyn AsRef<std::ffi::OsStr>; 7] = [
        &"-c",
        &"--return-path=a@example.net",
        &"--sieve",
        &s.script,
        &"--sendmail",
        &missing,
        &s.maildir,
    ];
    let r = run(&args, MESSAGE, &[]);
    assert_eq!(r.code, 75, "{r:?}");
    let tmp = s.dir.path().display().to_string();
    let err = r.stderr.replace(&tmp, "[TMP]");
    let mut lines = err.lines();
    assert_eq!(
        lines.next(),
        Some("4.3.0 mail system error: input/output error")
    );
    assert_eq!(
        lines.next(),
        Some(
            "mdeliver: redirect to x@example.org: cannot run [TMP]/no-sendmail: No such file or \
             directory (os error 2)"
        )
    );
}

#[test]
fn a_half_done_unit_is_finished_by_the_retry_as_recorded_even_if_the_script_changed() {
    let s = site(SCRIPT);
    std::fs::write(s.dir.path().join("sendmail-down"), "").unwrap();
    let r = s.deliver(&[]);
    assert_eq!(r.code, 75, "a failed redirect defers: {r:?}");
    assert!(
        r.stderr.starts_with("4."),
        "the status line comes first: {r:?}"
    );
    assert_eq!(
        s.stored(),
        decided(&stored_bytes()),
        "the copies are stored"
    );
    assert!(s.sent().is_empty());

    // The script now decides something else; the retry still finishes the recorded unit.
    std::fs::write(&s.script, "discard;\n").unwrap();
    std::fs::remove_file(s.dir.path().join("sendmail-down")).unwrap();
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.stored(), decided(&stored_bytes()));
    assert_eq!(s.sent().len(), 1, "the redirect is sent by the retry, once");
    let r = s.deliver(&[]);
    assert_eq!((r.code, s.sent().len()), (0, 1));
}

#[test]
fn a_missing_folder_without_create_is_stored_once_into_inbox() {
    // (Without -c: with it, mdeliver creates missing folders as it does for --folder.)
    let s = site("require \"fileinto\";\nfileinto \"Nowhere\";\nkeep;\n");
    make_maildir(&s.maildir);
    let r = s.deliver(&["-v"]);
    assert_eq!(r.code, 0, "{r:?}");
    // The keep is that one copy, not a duplicate of it.
    assert!(
        !format!("{}{}", r.stdout, r.stderr).contains("duplicate"),
        "{r:?}"
    );
    let inbox_once = vec![(String::new(), "new".into(), "-".into(), stored_bytes())];
    assert_eq!(s.stored(), inbox_once, "merged with the keep");
    assert!(!s.maildir.join(".Nowhere").exists());
    assert!(r.stderr.contains("storing into INBOX instead"), "{r:?}");
}

#[test]
fn a_missing_folder_s_copy_takes_the_keep_s_flags_in_inbox() {
    // The fallback comes first in the script, the keep's flags count.
    let s = site(
        "require [\"fileinto\", \"imap4flags\"];\n\
         fileinto :flags \"\\\\Seen\" \"Gone\";\nkeep :flags \"\\\\Flagged\";\n",
    );
    make_maildir(&s.maildir);
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let once = vec![(String::new(), "cur".into(), "F".into(), stored_bytes())];
    assert_eq!(s.stored(), once);
}

#[test]
fn folders_that_cannot_be_stored_into_give_inbox_one_copy() {
    // No keep in the plan: two missing folders, and two names refused even with -c, with
    // different flags. Each falls back to INBOX, and INBOX gets one copy, the first's.
    let missing = "require [\"fileinto\", \"imap4flags\"];\n\
                   fileinto :flags \"\\\\Seen\" \"M1\";\n\
                   fileinto :flags \"\\\\Flagged\" \"M2\";\n";
    let refused = "require \"fileinto\";\nfileinto \"a..b\";\nfileinto \"c..d\";\n";
    for (script, flags, create) in [(missing, "S", false), (refused, "-", true)] {
        let s = site(script);
        make_maildir(&s.maildir);
        let extra: &[&str] = if create { &["-c"] } else { &[] };
        let r = s.deliver(extra);
        assert_eq!(r.code, 0, "{r:?}");
        if create {
            // Why, in words.
            let why = "fileinto \"a..b\": folder name must not contain \"..\"; storing into INBOX";
            assert!(r.stderr.contains(why), "{r:?}");
        }
        let dir = if flags == "-" { "new" } else { "cur" };
        let once = vec![(String::new(), dir.into(), flags.into(), stored_bytes())];
        assert_eq!(s.stored(), once, "{script}");
        // The retry finds the unit done and stores nothing more.
        assert_eq!(s.deliver(extra).code, 0);
        assert_eq!(s.stored(), once, "{script}: the retry");
    }
}

#[test]
fn one_folder_spelled_three_ways_gets_one_copy() {
    let s = site(
        "require \"fileinto\";\n\
         fileinto \"Lists/Rust\";\nfileinto \"Lists.Rust\";\nfileinto \"INBOX.Lists.Rust\";\n",
    );
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let once = vec![(
        ".Lists.Rust".into(),
        "new".into(),
        "-".into(),
        stored_bytes(),
    )];
    assert_eq!(s.stored(), once);
}

#[test]
fn without_a_given_sender_the_script_sees_the_one_the_mta_wrote() {
    // What Postfix's local(8) hands a mailbox_command: a `From ` line and a Return-Path, and
    // no --return-path. The `envelope` test, the redirect's sender and the vacation reply's
    // recipient are that sender; the message sent on has no `From ` line.
    let s = site(
        "require [\"envelope\", \"fileinto\", \"copy\"];\n\
         if envelope :is \"from\" \"carol@example.net\" { fileinto \"Carol\"; }\n\
         redirect :copy \"fwd@example.org\";\n",
    );
    let body = b"Return-Path: <carol@example.net>\nFrom: carol@example.net\nSubject: s\n\nhi\n";
    let mut message = b"From carol@example.net  Mon Jun  3 10:00:01 2024\n".to_vec();
    message.extend_from_slice(body);
    for (input, what) in [(&message[..], "From line"), (&body[..], "Return-Path")] {
        let _ = std::fs::remove_dir_all(&s.maildir);
        for n in 0..2 {
            let _ = std::fs::remove_file(s.dir.path().join(format!("sent.{n}.argv")));
        }
        let args: [&dyn AsRef<std::ffi::OsStr>; 6] = [
            &"-c",
            &"--sieve",
            &s.script,
            &"--sendmail",
            &s.sendmail,
            &s.maildir,
        ];
        let r = run(&args, input, &[]);
        assert_eq!(r.code, 0, "{what}: {r:?}");
        let folders: Vec<String> = s.stored().into_iter().map(|c| c.0).collect();
        assert_eq!(folders, [".Carol"], "{what}");
        let sent = s.sent();
        assert_eq!(sent.len(), 1, "{what}");
        assert_eq!(
            sent[0].0, "-i\n-f\ncarol@example.net\n--\nfwd@example.org\n",
            "{what}"
        );
        assert_eq!(sent[0].1, body, "{what}: sent on without the From line");
    }
}

#[test]
fn discard_stores_nothing_and_succeeds() {
    let s = site("discard;\n");
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.stored(), vec![]);
}

#[test]
fn a_broken_script_defers_with_its_line_and_column_and_stores_nothing() {
    let s = site("require \"fileinto\";\nif true {\n  filinto \"a\";\n}\n");
    let r = s.deliver(&[]);
    assert_eq!(r.code, 75, "{r:?}");
    insta::assert_snapshot!(normalize(&r.stderr, s.dir.path()), @r"
    4.3.5 the Sieve script [TMP]/filter.sieve:3:3: unknown command
    mdeliver: the Sieve script [TMP]/filter.sieve:3:3: unknown command (the mail is deferred until it is fixed)
    ");
    assert!(!s.maildir.exists(), "nothing was created");
    // A script that cannot be read defers; one that does not exist means no filtering (a
    // user who never wrote one, as Dovecot treats a missing personal script).
    make_maildir(&s.maildir);
    std::fs::remove_file(&s.script).unwrap();
    std::fs::create_dir(&s.script).unwrap();
    let r = s.deliver(&[]);
    assert_eq!(r.code, 75, "{r:?}");
    assert!(
        r.stderr.starts_with("4.3.5 cannot read the Sieve script"),
        "{r:?}"
    );
    std::fs::remove_dir(&s.script).unwrap();
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let inbox = vec![(String::new(), "new".into(), "-".into(), stored_bytes())];
    assert_eq!(s.stored(), inbox);
}

#[test]
fn reject_answers_5_7_1_with_the_reason_and_stores_nothing() {
    let s = site("require \"reject\";\nreject text:\nNot here.\nGo away.\n.\n;\n");
    let r = s.deliver(&[]);
    assert_eq!(r.code, 65, "{r:?}");
    insta::assert_snapshot!(normalize(&r.stderr, s.dir.path()), @r"
    5.7.1 Not here.  Go away.
    mdeliver: the Sieve script refused the message (reject): Not here.  Go away.
    ");
    let r = s.deliver(&["--strict-exit"]);
    assert_eq!(r.code, 77, "{r:?}");
    assert!(r.stderr.starts_with("5.7.1 Not here."));
    assert!(!s.maildir.exists(), "nothing was created");
}

#[test]
fn sieve_refuses_options_that_contradict_it() {
    let s = site("keep;\n");
    for extra in [&["--folder", "x"][..], &["-X", "S"], &["--dry-run"]] {
        let r = s.deliver(extra);
        assert_eq!(r.code, 75, "{extra:?}: {r:?}");
        assert!(
            r.stderr.contains("--sieve cannot be combined with"),
            "{r:?}"
        );
    }
}

#[test]
fn the_body_test_and_currentdate_see_the_message_and_the_clock() {
    let s = site(
        "require [\"body\", \"fileinto\", \"date\", \"relational\", \"mailbox\"];\n\
         if allof (body :contains \"hello\", currentdate :value \"ge\" \"year\" \"2024\") {\n\
         \x20 fileinto :create \"Seen\";\n}\n",
    );
    let r = s.deliver(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let only = vec![(".Seen".into(), "new".into(), "-".into(), stored_bytes())];
    assert_eq!(s.stored(), only);
}

#[test]
fn dates_are_in_the_local_time_zone() {
    // RFC 5260 4.1: without :zone, `currentdate` is the local time (TZ here: two hours east,
    // in POSIX's notation, which needs no time zone database).
    let s = site(
        "require [\"fileinto\", \"date\", \"variables\", \"mailbox\"];\n\
         if currentdate :matches \"zone\" \"*\" { fileinto :create \"zone-${1}\"; }\n",
    );
    for (tz, folder) in [("XYZ-2", ".zone-+0200"), ("UTC0", ".zone-+0000")] {
        let _ = std::fs::remove_dir_all(&s.maildir);
        let args: [&dyn AsRef<std::ffi::OsStr>; 5] = [
            &"-c",
            &"--return-path=a@example.net",
            &"--sieve",
            &s.script,
            &s.maildir,
        ];
        let r = run(&args, MESSAGE, &[("TZ", tz)]);
        assert_eq!(r.code, 0, "{tz}: {r:?}");
        let folders: Vec<String> = s.stored().into_iter().map(|c| c.0).collect();
        assert_eq!(folders, [folder], "{tz}");
    }
}

#[test]
fn folder_copies_count_in_the_top_maildirsize_and_make_none_of_their_own() {
    // Maildir++ keeps one quota for the whole tree: each fileinto copy is counted in the
    // top maildir's maildirsize, never in a folder's own (which Courier and Dovecot ignore).
    let s = site("require [\"fileinto\", \"mailbox\"];\nfileinto :create \"Lists\";\nkeep;\n");
    let r = s.deliver(&["--quota", "1M"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !s.maildir.join(".Lists/maildirsize").exists(),
        "a folder copy made its own maildirsize"
    );
    let size = stored_bytes().len();
    let quota = std::fs::read_to_string(s.maildir.join("maildirsize")).unwrap();
    let mut lines = quota.lines();
    assert_eq!(lines.next(), Some("1048576S"), "{quota}");
    let counted: (usize, usize) = lines.fold((0, 0), |(b, n), l| {
        let mut f = l.split_whitespace().map(|x| x.parse::<usize>().unwrap());
        (b + f.next().unwrap(), n + f.next().unwrap())
    });
    assert_eq!(counted, (2 * size, 2), "{quota}");
    // Over the quota, the folder's copy is refused as the top's would be.
    let t = site("require [\"fileinto\", \"mailbox\"];\nfileinto :create \"Lists\";\n");
    let r = t.deliver(&["--quota", "10"]);
    assert_eq!(r.code, 75, "{r:?}");
    assert!(r.stderr.starts_with("4.2.2 "), "{}", r.stderr);
    assert!(!t.maildir.join(".Lists/maildirsize").exists());
}

/// The same message with another body: another unit (another MTA queue entry), one
/// Message-ID.
fn resent(n: u32) -> Vec<u8> {
    let mut m = MESSAGE.to_vec();
    m.extend_from_slice(format!("sent again, {n}\n").as_bytes());
    m
}

impl Site {
    fn deliver_bytes(&self, message: &[u8]) -> Run {
        run(
            &[
                &"-c",
                &"--return-path=alice@example.net",
                &"--delivered-to=bob@example.org",
                &"--sieve",
                &self.script,
                &"--sendmail",
                &self.sendmail,
                &self.maildir,
            ],
            message,
            &[("MDELIVER_TEST_DEDUP_LEASE", "30")],
        )
    }

    /// The entries of remembered ids (`duplicate`, vacation) in the maildir's index.
    fn remembered(&self) -> Vec<PathBuf> {
        names(&self.maildir)
            .into_iter()
            .map(|n| self.maildir.join(n))
            .filter(|p| std::fs::read(p).is_ok_and(|b| b.starts_with(b"mdeliver-sieve-seen ")))
            .collect()
    }

    /// The number of messages in INBOX and in the folder `.F`.
    fn counts(&self, f: &str) -> (usize, usize) {
        let n = |p: PathBuf| names(&p.join("new")).len() + names(&p.join("cur")).len();
        let folder = self.maildir.join(f);
        (
            n(self.maildir.clone()),
            if folder.exists() { n(folder) } else { 0 },
        )
    }
}

const DUPLICATE: &str = "\
require [\"duplicate\", \"fileinto\", \"mailbox\"];
if duplicate { fileinto :create \"Dups\"; }
";

#[test]
fn duplicate_sees_the_message_id_of_an_earlier_delivery_in_the_index() {
    let s = site(DUPLICATE);
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".Dups"), (1, 0));
    assert_eq!(
        s.remembered().len(),
        1,
        "the id is remembered once delivered"
    );
    // The same Message-ID in another message: a duplicate.
    let r = s.deliver_bytes(&resent(1));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".Dups"), (1, 1));
    // The MTA's retry of the first message follows its recorded plan (INBOX), although its
    // own id is now remembered: the decision does not flip.
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".Dups"), (1, 1));
}

#[test]
fn a_retry_after_a_crash_before_the_id_was_remembered_remembers_it_and_stores_nothing_more() {
    let s = site(DUPLICATE);
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 0, "{r:?}");
    // The state of a kill after the copy was stored, before the id was recorded.
    let entries = s.remembered();
    assert_eq!(entries.len(), 1);
    std::fs::remove_file(&entries[0]).unwrap();
    // Until the retry, the id is not seen (the message did not count as delivered).
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".Dups"), (1, 0), "the retry stores nothing more");
    assert_eq!(s.remembered(), entries, "the retry remembered the id");
    let r = s.deliver_bytes(&resent(1));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".Dups"), (1, 1));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_duplicate_id_is_remembered_for_its_seconds_then_forgotten() {
    let s = site(
        "require [\"duplicate\", \"fileinto\", \"mailbox\"];\n\
         if duplicate :seconds 4 { fileinto :create \"Dups\"; }\n",
    );
    let before = unix_now();
    assert_eq!(s.deliver_bytes(MESSAGE).code, 0);
    let after = unix_now();
    // The entry is dated at the end of the period (the collection pass keeps it that long).
    let entries = s.remembered();
    assert_eq!(entries.len(), 1);
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    let until: u64 = text
        .strip_prefix("mdeliver-sieve-seen ")
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        before + 4 <= until && until <= after + 4,
        "{before} {until} {after}"
    );
    let mtime = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        until
    );
    assert_eq!(s.deliver_bytes(&resent(1)).code, 0);
    // Within the period (unless this machine took 4 s for one delivery: then unknowable).
    if unix_now() < until {
        assert_eq!(s.counts(".Dups"), (1, 1), "within the period: a duplicate");
    }
    // Past the period, by the clock the delivery reads.
    while unix_now() < until {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let dups = s.counts(".Dups").1;
    assert_eq!(s.deliver_bytes(&resent(2)).code, 0);
    assert_eq!(s.counts(".Dups").1, dups, "after it: not a duplicate");
    assert_eq!(s.counts(".Dups").0, 3 - dups);
}

const VACATION: &str = "\
require [\"vacation\"];
vacation :days 3 :subject \"Away\" \"I am away until Monday.\nBack then.\";
";

/// The reply the vacation script sends to alice for `MESSAGE` (Message-ID m1).
const REPLY: &str = "From: bob@example.org\nTo: alice@example.net\nSubject: Away\n\
In-Reply-To: <m1@example.net>\nReferences: <m1@example.net>\nAuto-Submitted: auto-replied\n\
MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\
\nI am away until Monday.\nBack then.\n";

#[test]
fn vacation_replies_once_per_period_with_the_null_sender() {
    let s = site(VACATION);
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".x"), (1, 0), "the message is kept");
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "-i\n-f\n<>\n--\nalice@example.net\n");
    assert_eq!(String::from_utf8_lossy(&sent[0].1), REPLY);
    // The MTA's retry of the same message: nothing more is sent.
    assert_eq!(s.deliver_bytes(MESSAGE).code, 0);
    // Another message from alice within the 3 days: no reply.
    assert_eq!(s.deliver_bytes(&resent(1)).code, 0);
    assert_eq!(s.sent().len(), 1);
    assert_eq!(s.counts(".x"), (2, 0));
    // The period over (its memory dated in the past, as 3 days later): a reply again.
    let entries = s.remembered();
    assert_eq!(entries.len(), 1);
    let mut past = Default::default();
    mdeliver_core::machine::unit::encode_seen(1, &mut past);
    std::fs::write(&entries[0], &past[..]).unwrap();
    assert_eq!(s.deliver_bytes(&resent(2)).code, 0);
    let sent = s.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].0, sent[0].0);
    assert_eq!(sent[1].1, sent[0].1);
}

#[test]
fn a_vacation_reply_that_fails_is_sent_by_the_retry_once() {
    let s = site(VACATION);
    std::fs::write(s.dir.path().join("sendmail-down"), "").unwrap();
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 75, "a reply that cannot be sent defers: {r:?}");
    assert_eq!(s.counts(".x"), (1, 0), "the copy is stored");
    assert!(
        s.remembered().is_empty(),
        "nothing remembered before the reply"
    );
    std::fs::remove_file(s.dir.path().join("sendmail-down")).unwrap();
    let r = s.deliver_bytes(MESSAGE);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.counts(".x"), (1, 0));
    assert_eq!(s.sent().len(), 1);
    assert_eq!(s.deliver_bytes(MESSAGE).code, 0);
    assert_eq!(s.sent().len(), 1);
}
