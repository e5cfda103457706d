//! What `mdeliver` says: `--help` and every error message, as insta snapshots (temporary paths
//! replaced by `[TMP]`), each with its exit code.

mod cli_support;

use std::path::Path;

use cli_support::*;

/// `exit <code>` and the standard error of a run, for a snapshot.
fn outcome(r: &Run, tmp: &Path) -> String {
    format!("exit {}\n{}", r.code, normalize(&r.stderr, tmp))
}

#[test]
fn help() {
    let r = run(&[&"--help"], b"", &[("COLUMNS", "100")]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "");
    insta::assert_snapshot!("help", r.stdout);
    let r = run(&[&"-h"], b"", &[]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!("help_short", r.stdout);
}

/// Issue 13: a mistake in the command line is a mistake in the MTA's configuration. Run the
/// way an MTA runs it (pipes, no terminal), it defers: exit 75 and a `4.3.5` status line
/// before clap's message (which keeps its "did you mean" tip). Before, it exited 64, which
/// Postfix bounces. `--strict-exit` gives the precise 64 without a status line.
#[test]
fn usage_errors_defer_under_an_mta() {
    let t = tempfile::tempdir().unwrap();
    let r = run(&[], b"x\n", &[]);
    insta::assert_snapshot!("usage_no_maildir", outcome(&r, t.path()));
    let r = run(&[&"--frobnicate", &t.path()], b"x\n", &[]);
    insta::assert_snapshot!("usage_unknown_option", outcome(&r, t.path()));
    let md = t.path().join("Maildir");
    let r = run(&[&"--crate", &md], b"x\n", &[]);
    assert_eq!(r.code, 75);
    assert!(
        r.stderr.starts_with("4.3.5 mdeliver is misconfigured\n"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("tip: a similar argument exists: '--create'"));
    assert!(!md.exists());
    let r = run(&[&"--strict-exit", &"--crate", &md], b"x\n", &[]);
    insta::assert_snapshot!("usage_typo_strict", outcome(&r, t.path()));
    let r = run(
        &[&t.path()],
        b"x\n",
        &[("MDELIVER_DISABLE", "hard-links,xattrs")],
    );
    insta::assert_snapshot!("usage_unknown_disable", outcome(&r, t.path()));
    // The subcommands are run by people and scripts, never by an MTA: 64 as before.
    let r = run(&[&"list", &"--bogus"], b"", &[]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.starts_with("error: unexpected argument '--bogus'"));
}

/// A mistake typed at a terminal exits 64 with no status line, as before issue 13
/// (`script` gives the command a pseudo-terminal for stdin, stdout and stderr).
#[test]
fn usage_error_at_a_terminal_exits_64() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: script (util-linux) is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let cmd = format!("{} --crate {}", bin().display(), md.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.starts_with("error: unexpected argument '--crate' found"),
        "{text}"
    );
    assert!(text.contains("tip: a similar argument exists: '--create'"));
    assert!(!md.exists());
}

/// Issue 13: `--dedup 5d ~/Maildir` used to exit 0 after delivering into `./5d` as a second
/// maildir. A detached value that parses as a window is refused now; the attached form and a
/// bare `--dedup` followed by a maildir work.
#[test]
fn detached_optional_value_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let cwd = t.path();
    let r = run_in(cwd, &[&"-c", &"--dedup", &"5d", &md], b"x\n", &[]);
    insta::assert_snapshot!("dedup_detached", outcome(&r, t.path()));
    assert!(!cwd.join("5d").exists());
    assert!(!md.exists());
    for args in [
        vec![&"-c" as &dyn AsRef<std::ffi::OsStr>, &"--dedup=5d", &md],
        vec![&"-c", &"--dedup", &md],
    ] {
        let r = run_in(cwd, &args, b"Message-ID: <a@b>\n\nx\n", &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(names(&md.join("new")).len(), 1);
    assert!(!cwd.join("5d").exists());
}

#[test]
fn missing_maildir() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let r = run(&[&md], b"x\n", &[]);
    insta::assert_snapshot!("missing_maildir", outcome(&r, t.path()));
    let r = run(&[&"--strict-exit", &md], b"x\n", &[]);
    insta::assert_snapshot!("missing_maildir_strict", outcome(&r, t.path()));
    let r = run(&[&"-c", &t.path().join("no/Maildir")], b"x\n", &[]);
    insta::assert_snapshot!("missing_parent_with_create", outcome(&r, t.path()));
}

#[test]
fn incomplete_maildir() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    std::fs::remove_dir(md.join("new")).unwrap();
    let r = run(&[&md], b"x\n", &[]);
    insta::assert_snapshot!("missing_new", outcome(&r, t.path()));
}

#[test]
fn symlinks_and_files_where_directories_belong() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    std::fs::remove_dir(md.join("new")).unwrap();
    std::os::unix::fs::symlink("/tmp", md.join("new")).unwrap();
    let r = run(&[&md], b"x\n", &[]);
    insta::assert_snapshot!("symlinked_new", outcome(&r, t.path()));
    let r = run(&[&"--strict-exit", &md], b"x\n", &[]);
    insta::assert_snapshot!("symlinked_new_strict", outcome(&r, t.path()));

    // Issue 13: one rule for every spelling. A symbolic link at the maildir root is followed
    // (before, `Link` was refused and `Link/` accepted); a folder that is a symbolic link is
    // refused, like tmp/, new/ and cur/.
    let real = t.path().join("real");
    make_maildir(&real);
    let link = t.path().join("Link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let slash = format!("{}/", link.display());
    for spelling in [&link as &dyn AsRef<std::ffi::OsStr>, &slash] {
        let r = run(&[spelling], b"x\n", &[]);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    }
    assert_eq!(names(&real.join("new")).len(), 2);
    let r = run(&[&"-c", &"--folder", &"Sent", &link], b"x\n", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(names(&real.join(".Sent/new")).len(), 1);
    let other = t.path().join("other");
    make_maildir(&other);
    std::os::unix::fs::symlink(&other, real.join(".Linked")).unwrap();
    let r = run(&[&"--folder", &"Linked", &real], b"x\n", &[]);
    insta::assert_snapshot!("symlinked_folder", outcome(&r, t.path()));
    let r = run(&[&"-c", &"--folder", &"Linked", &real], b"x\n", &[]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert_eq!(names(&other.join("new")), Vec::<String>::new());

    let file = t.path().join("file");
    std::fs::write(&file, b"not a maildir").unwrap();
    let r = run(&[&file], b"x\n", &[]);
    insta::assert_snapshot!("maildir_is_a_file", outcome(&r, t.path()));
}

#[test]
fn empty_message() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let r = run(&[&md], b"", &[]);
    insta::assert_snapshot!("empty_message", outcome(&r, t.path()));
}

#[test]
fn unreadable_input_file() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let r = run(&[&"--input", &t.path().join("nope.eml"), &md], b"", &[]);
    insta::assert_snapshot!("input_missing", outcome(&r, t.path()));
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
}

/// As root, the binary runs as `nobody` against a root-owned maildir; otherwise as the
/// current user against a maildir whose tmp/ is read-only (root bypasses modes).
#[test]
fn permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let r = if is_root() {
        // nobody may traverse into the maildir but not write in it.
        for p in [
            t.path(),
            &md,
            &md.join("tmp"),
            &md.join("new"),
            &md.join("cur"),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (Some(a), Some(b)) = (
            run_as_nobody(t.path(), &[&md], b"x\n"),
            run_as_nobody(t.path(), &[&"--strict-exit", &md], b"x\n"),
        ) else {
            return;
        };
        [a, b]
    } else {
        std::fs::set_permissions(md.join("tmp"), std::fs::Permissions::from_mode(0o500)).unwrap();
        [
            run(&[&md], b"x\n", &[]),
            run(&[&"--strict-exit", &md], b"x\n", &[]),
        ]
    };
    insta::assert_snapshot!("permission_denied", outcome(&r[0], t.path()));
    insta::assert_snapshot!("permission_denied_strict", outcome(&r[1], t.path()));
    for d in ["tmp", "new", "cur"] {
        assert_eq!(names(&md.join(d)), Vec::<String>::new());
    }
}

/// Issue 13: `-c` made only the last directory, so the README's pipe(8) example
/// (`/var/vmail/${domain}/${user}/Maildir`) deferred every new user's mail. `-p` creates the
/// parents too (mode 0700), one by one without following a symbolic link; `-c` on a path
/// ending in tmp, new or cur is refused, and the hint for such a missing maildir does not
/// suggest `-c`.
#[test]
fn create_parents_and_nested_maildirs() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("vmail/example.org/bob/Maildir");
    let r = run(&[&"-c", &md], b"x\n", &[]);
    assert_eq!(r.code, 75);
    assert!(!t.path().join("vmail").exists());
    let r = run(&[&"-c", &"-p", &md], b"x\n", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(names(&md.join("new")).len(), 1);
    for d in ["vmail", "vmail/example.org", "vmail/example.org/bob"] {
        let mode = std::fs::metadata(t.path().join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
    // A symbolic link on the way is not followed, and nothing is made behind it.
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.path().join("vmail/evil.org")).unwrap();
    let r = run(
        &[&"-c", &"-p", &t.path().join("vmail/evil.org/eve/Maildir")],
        b"x\n",
        &[],
    );
    insta::assert_snapshot!("create_parents_symlink", outcome(&r, t.path()));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    // -c on .../new is refused before anything is made; without -c, no -c is suggested.
    let r = run(&[&"-c", &md.join("new")], b"x\n", &[]);
    insta::assert_snapshot!("create_nested", outcome(&r, t.path()));
    assert_eq!(names(&md.join("new")).len(), 1);
    let r = run(&[&t.path().join("Other/new")], b"x\n", &[]);
    insta::assert_snapshot!("missing_nested", outcome(&r, t.path()));
}

/// A MAILDIR that is a symbolic link to nothing (`~/Maildir` pointing at a directory not made
/// yet): `-c` does not create what a link points to, and the error says that, not that the
/// directory above is missing.
#[test]
fn a_maildir_linked_to_nothing_is_named_as_such() {
    let t = tempfile::tempdir().unwrap();
    let link = t.path().join("Maildir");
    std::os::unix::fs::symlink(t.path().join("not-made-yet"), &link).unwrap();
    for create in [&[][..], &["-c"][..], &["-c", "-p"][..]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = create
            .iter()
            .map(|o| o as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        args.push(&link);
        let r = run(&args, b"Subject: x\n\nb\n", &[]);
        assert_eq!(
            outcome(&r, t.path()),
            "exit 75\n4.2.0 mailbox unavailable: no such file or directory\n\
             mdeliver: [TMP]/Maildir: opening maildir: no such file or directory; it is a \
             symbolic link to a directory that does not exist; create that directory (-c does \
             not follow a link to make it) or correct the link\n",
            "{create:?}"
        );
    }
    assert!(!t.path().join("not-made-yet").exists());
}
