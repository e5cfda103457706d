//! Folder names and subscriptions as Dovecot's own tools see them (issue 13): `doveadm` from
//! Debian's `dovecot-core` (installed here if missing), run against a test maildir with a
//! private configuration (no Dovecot service runs; doveadm opens the maildir itself as the
//! unprivileged `nobody`).
//!
//! Checked: `--folder Entwürfe -c` makes a folder doveadm lists as `Entwürfe`, lists as
//! subscribed, and finds the message in; `Lists/rust` likewise as `Lists.rust`. The behaviour
//! before issue 13 (names written as UTF-8 bytes, `--folder-encoding=utf8`) is reproduced: under
//! Dovecot's default layout doveadm cannot open `Entwürfe` ("Mailbox doesn't exist"); under its
//! `:UTF-8` layout the UTF-8 name is right.
//!
//! Needs root (to run doveadm as nobody). Skips, saying why, when Dovecot cannot be installed.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cli_support::{is_root, run};

fn ensure_doveadm() -> Result<(), String> {
    if Path::new("/usr/bin/doveadm").exists() {
        return Ok(());
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "timeout 300 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq dovecot-core' 2>&1 | tail -5",
        )
        .output()
        .map_err(|e| e.to_string())?;
    if Path::new("/usr/bin/doveadm").exists() {
        Ok(())
    } else {
        Err(format!(
            "cannot install dovecot-core: {}",
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Runs `doveadm ARGS` on the maildir `md` (layout options `layout`, e.g. `:UTF-8`) as nobody;
/// its standard output, which must succeed.
fn doveadm(dir: &Path, md: &Path, layout: &str, args: &[&str]) -> String {
    let (ok, out, err) = doveadm_run(dir, md, layout, args);
    assert!(ok, "doveadm {args:?}: {err}");
    out
}

/// [`doveadm`] that may fail: success, standard output, standard error.
fn doveadm_run(dir: &Path, md: &Path, layout: &str, args: &[&str]) -> (bool, String, String) {
    let conf = dir.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "ssl = no\nlog_path = /dev/stderr\nmail_uid = 65534\nmail_gid = 65534\n\
             mail_location = maildir:{}{layout}\n",
            md.display()
        ),
    )
    .unwrap();
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(args)
        .env("USER", "nobody")
        .env("HOME", dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chown_nobody(p: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

#[test]
fn doveadm_sees_folders_and_subscriptions() {
    if !is_root() {
        eprintln!("skipped: the Dovecot test runs doveadm as nobody, which needs root");
        return;
    }
    if let Err(why) = ensure_doveadm() {
        eprintln!("skipped: {why}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let md = t.path().join("Maildir");
    let msg = |s: &str| format!("Subject: {s}\nMessage-ID: <{s}@test>\n\nbody\n");
    for (folder, subject) in [("Entwürfe", "draft"), ("Lists/rust", "list")] {
        let r = run(
            &[&"-c", &"--folder", &folder, &md],
            msg(subject).as_bytes(),
            &[],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert!(md.join(".Entw&APw-rfe/new").is_dir());
    assert_eq!(
        std::fs::read(md.join("subscriptions")).unwrap(),
        b"V\t2\n\nEntw&APw-rfe\nLists\trust\n"
    );
    chown_nobody(&md);
    let d = |args: &[&str]| doveadm(t.path(), &md, "", args);
    assert_eq!(
        lines(&d(&["mailbox", "list"])),
        ["Entwürfe", "INBOX", "Lists", "Lists.rust"]
    );
    assert_eq!(
        lines(&d(&["mailbox", "list", "-s"])),
        ["Entwürfe", "Lists.rust"]
    );
    let hits = d(&["search", "mailbox", "Entwürfe", "subject", "draft"]);
    assert_eq!(hits.lines().count(), 1, "{hits}");
    let hits = d(&["search", "mailbox", "Lists.rust", "subject", "list"]);
    assert_eq!(hits.lines().count(), 1, "{hits}");

    // Before issue 13 the name was written as UTF-8 bytes: Dovecot's default layout lists the
    // directory, but the mailbox "Entwürfe" is .Entw&APw-rfe to it, so the message cannot be
    // reached ("Mailbox doesn't exist").
    let old = t.path().join("Old");
    let r = run(
        &[
            &"-c",
            &"--folder-encoding=utf8",
            &"--folder",
            &"Entwürfe",
            &old,
        ],
        msg("old").as_bytes(),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(old.join(".Entwürfe/new").is_dir());
    chown_nobody(&old);
    let (ok, _, err) = doveadm_run(
        t.path(),
        &old,
        "",
        &["search", "mailbox", "Entwürfe", "subject", "old"],
    );
    assert!(!ok && err.contains("Mailbox doesn't exist"), "{err}");
    // With Dovecot's :UTF-8 layout the UTF-8 name is the right one.
    let listed = doveadm(t.path(), &old, ":UTF-8", &["mailbox", "list"]);
    assert!(listed.lines().any(|l| l == "Entwürfe"), "{listed}");
    let hits = doveadm(
        t.path(),
        &old,
        ":UTF-8",
        &["search", "mailbox", "Entwürfe", "subject", "old"],
    );
    assert_eq!(hits.lines().count(), 1, "{hits}");
}

/// `--folder-fallback` (issue 13): a folder nobody made (plus-address rules) or a refused name
/// means the maildir itself, instead of deferring; with `-c` the folder is made as usual. And
/// a Courier maildir (it has `courierimapsubscribed`) gets the new folder listed there too,
/// beside Dovecot's `subscriptions`; `--no-subscribe` writes neither.
#[test]
fn folder_fallback_and_courier_subscriptions() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    cli_support::make_maildir(&md);
    let r = run(&[&"--folder", &"Nobody/Made", &md], b"x\n", &[]);
    assert_eq!(r.code, 75, "before: the delivery defers");
    for folder in ["Nobody/Made", "../escape"] {
        let r = run(
            &[&"--folder-fallback", &"--folder", &folder, &md],
            b"x\n",
            &[],
        );
        assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{folder}");
    }
    assert_eq!(cli_support::names(&md.join("new")).len(), 2);
    assert!(!md.join(".Nobody.Made").exists());

    std::fs::write(md.join("courierimapsubscribed"), b"INBOX.Sent\n").unwrap();
    let r = run(&[&"-c", &"--folder", &"Entwürfe", &md], b"x\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read(md.join("courierimapsubscribed")).unwrap(),
        b"INBOX.Sent\nINBOX.Entw&APw-rfe\n"
    );
    assert_eq!(
        std::fs::read(md.join("subscriptions")).unwrap(),
        b"V\t2\n\nEntw&APw-rfe\n"
    );
    // An existing folder is not subscribed again; --no-subscribe writes nothing.
    let r = run(&[&"-c", &"--folder", &"Entwürfe", &md], b"x\n", &[]);
    assert_eq!(r.code, 0);
    let r = run(
        &[&"-c", &"--no-subscribe", &"--folder", &"Other", &md],
        b"x\n",
        &[],
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        std::fs::read(md.join("subscriptions")).unwrap(),
        b"V\t2\n\nEntw&APw-rfe\n"
    );
    assert!(!md.join("subscriptions.lock").exists());
}
