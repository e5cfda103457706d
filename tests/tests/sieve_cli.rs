//! `mdeliver sieve check` and `mdeliver sieve test` through the real binary: what an
//! administrator sees (snapshots), and the exit codes.

mod cli_support;

use cli_support::*;

const SCRIPT: &str = "\
require [\"fileinto\", \"imap4flags\", \"copy\", \"envelope\", \"reject\"];
# Lists go to their folder, flagged; a copy of anything urgent goes to the phone.
if header :contains \"list-id\" \"announce\" {
  fileinto :flags \"\\\\Seen\" \"lists\";
} elsif envelope :domain \"from\" \"example.net\" {
  redirect :copy \"phone@example.org\";
}
";

const MESSAGE: &str = "From: Alice <alice@example.net>\nTo: bob@example.org\nSubject: hi\n\nbody\n";

fn files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("filter.sieve");
    let message = dir.path().join("message.eml");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::write(&message, MESSAGE).unwrap();
    (dir, script, message)
}

#[test]
fn check_accepts_a_good_script_and_names_the_place_of_an_error() {
    let (dir, script, _) = files();
    let r = run(&[&"sieve", &"check", &script], b"", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(normalize(&r.stdout, dir.path()), "[TMP]/filter.sieve: ok\n");

    let bad = dir.path().join("bad.sieve");
    std::fs::write(
        &bad,
        "require \"fileinto\";\nif header :is \"x\" \"y\" {\n  filinto \"a\";\n}\n",
    )
    .unwrap();
    let r = run(&[&"sieve", &"check", &bad], b"", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    insta::assert_snapshot!(normalize(&r.stderr, dir.path()), @"[TMP]/bad.sieve:3:3: unknown command");

    std::fs::write(&bad, "fileinto \"a\";\n").unwrap();
    let r = run(&[&"sieve", &"check", &bad], b"", &[]);
    assert_eq!(r.code, 1);
    insta::assert_snapshot!(normalize(&r.stderr, dir.path()), @r#"[TMP]/bad.sieve:1:1: needs 'require "fileinto";'"#);

    let r = run(
        &[&"sieve", &"check", &dir.path().join("missing.sieve")],
        b"",
        &[],
    );
    assert_eq!(r.code, 66);
    assert!(r.stderr.contains("cannot read"), "{r:?}");
}

#[test]
fn test_prints_the_actions() {
    let (_dir, script, message) = files();
    let r = run(
        &[
            &"sieve",
            &"test",
            &"--envelope-from",
            &"alice@example.net",
            &"--envelope-to",
            &"bob@example.org",
            &script,
            &message,
        ],
        b"",
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!(r.stdout, @r#"
    redirect "phone@example.org"
    implicit keep
    "#);

    let (_dir, script, message) = files();
    std::fs::write(
        &message,
        "List-Id: <announce.example.com>\nSubject: news\n\nbody\n",
    )
    .unwrap();
    let r = run(&[&"sieve", &"test", &script, &message], b"", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!(r.stdout, @r#"fileinto "lists" flags "\Seen""#);
}

#[test]
fn test_reports_a_runtime_error_and_the_implicit_keep() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("storm.sieve");
    let redirects: String = (0..6)
        .map(|i| format!("redirect \"r{i}@example.org\";\n"))
        .collect();
    std::fs::write(&script, redirects).unwrap();
    let message = dir.path().join("m.eml");
    std::fs::write(&message, MESSAGE).unwrap();
    let r = run(&[&"sieve", &"test", &script, &message], b"", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!(r.stdout, @r"
    runtime error: the script redirects more often than the limit; the implicit keep applies
    implicit keep
    ");
}

/// The extensions' actions and tests: body, date, currentdate (at `--now`), duplicate and
/// vacation, and `sieve check` accepting their `require`s.
#[test]
fn test_prints_the_extensions_actions() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ext.sieve");
    std::fs::write(
        &script,
        "require [\"body\", \"date\", \"index\", \"duplicate\", \"vacation\", \"fileinto\", \
         \"copy\", \"variables\"];\n\
         if body :content \"text\" :contains \"café\" { fileinto :copy \"body\"; }\n\
         if date :zone \"+0100\" :matches \"date\" \"iso8601\" \"*\" { fileinto :copy \"d-${1}\"; }\n\
         if currentdate :matches \"date\" \"*\" { fileinto :copy \"today-${1}\"; }\n\
         if header :index 1 :last \"received\" :contains \"relay\" { fileinto :copy \"relay\"; }\n\
         if not duplicate :seconds 3600 { fileinto :copy \"first\"; }\n\
         vacation :days 2 :subject \"Away\" \"I am away until Monday.\";\n",
    )
    .unwrap();
    let r = run(&[&"sieve", &"check", &script], b"", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "Received: from mx\nReceived: from relay\nFrom: Alice <alice@example.net>\n\
         To: bob@example.org\nSubject: hi\nDate: Tue, 1 Dec 2026 23:30:00 +0000\n\
         Message-ID: <m1@example.net>\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9\n",
    )
    .unwrap();
    let r = run(
        &[
            &"sieve",
            &"test",
            &"--envelope-from",
            &"alice@example.net",
            &"--envelope-to",
            &"bob@example.org",
            &"--now",
            &"1796212800",
            &script,
            &message,
        ],
        b"",
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!(r.stdout, @r#"
    fileinto "body"
    fileinto "d-2026-12-02T00:30:00+01:00"
    fileinto "today-2026-12-02"
    fileinto "relay"
    duplicate: remember "duplicate\0\0<m1@example.net>" for 3600 s
    fileinto "first"
    vacation to "alice@example.net" subject "Away" handle "I am away until Monday.Away<default-from><NO-MIME>" for 172800 s: "I am away until Monday."
    implicit keep
    "#);
}
