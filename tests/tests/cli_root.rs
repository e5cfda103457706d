//! Running as root (issue 13). Before, root delivered root-owned 0600 files into a user's
//! maildir and said nothing (the user could then not even flag them). Now root becomes the
//! maildir's owner (or `--user NAME`) before touching anything, refuses when it cannot tell
//! whose maildir it is, and a group-writable (shared) maildir gets files with its group and
//! mode 0660, as Dovecot does. Real uids: the tests need root (they skip otherwise).

mod cli_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cli_support::*;

const NOBODY: u32 = 65534;

fn chown(p: &Path, spec: &str) {
    let ok = std::process::Command::new("chown")
        .args(["-R", spec])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {spec} {}", p.display());
}

/// (uid, gid, mode) of the one file in `dir`.
fn the_file(dir: &Path) -> (u32, u32, u32) {
    let names = names(dir);
    assert_eq!(names.len(), 1, "{names:?}");
    let m = std::fs::metadata(dir.join(&names[0])).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn scratch() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

#[test]
fn root_delivers_as_the_maildir_owner() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = scratch();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    chown(&md, "65534:65534");
    let r = run(&[&md], b"x\n", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(the_file(&md.join("new")), (NOBODY, NOBODY, 0o600));

    // What every run as root did before: `--user root` says so explicitly.
    let other = t.path().join("Other");
    make_maildir(&other);
    chown(&other, "65534:65534");
    let r = run(&[&"--user", &"root", &other], b"x\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(the_file(&other.join("new")), (0, 0, 0o600));
}

#[test]
fn user_option_creates_as_that_user() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = scratch();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    chown(&home, "65534:65534");
    let md = home.join("vmail/Maildir");
    let r = run(&[&"--user", &"nobody", &"-c", &"-p", &md], b"x\n", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    for d in [home.join("vmail"), md.clone(), md.join("new")] {
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(
            (m.uid(), m.mode() & 0o777),
            (NOBODY, 0o700),
            "{}",
            d.display()
        );
    }
    assert_eq!(the_file(&md.join("new")).0, NOBODY);
    // A maildir created in a directory of root's is root's own.
    let new = t.path().join("New");
    let r = run(&[&"-c", &new], b"x\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(the_file(&new.join("new")).0, 0);
    // Two owners in one run.
    let mine = t.path().join("Mine");
    make_maildir(&mine);
    let r = run(&[&md, &mine], b"x\n", &[]);
    insta::assert_snapshot!(
        "root_refuses_two_owners",
        format!("exit {}\n{}", r.code, normalize(&r.stderr, t.path()))
    );
    assert_eq!(names(&mine.join("new")), Vec::<String>::new());
    // Not root: --user must be the user we are.
    let Some(r) = run_as_nobody(t.path(), &[&"--user", &"root", &md], b"x\n") else {
        return;
    };
    assert_eq!(r.code, 75);
    assert!(
        r.stderr.contains("only root can deliver as another user"),
        "{}",
        r.stderr
    );
}

/// `T/Shared`, a maildir of group "mail" (gid 8 on Debian) with `mode` (group-writable: a
/// shared maildir).
fn shared_maildir(t: &tempfile::TempDir, mode: u32) -> std::path::PathBuf {
    let md = t.path().join("Shared");
    make_maildir(&md);
    chown(&md, "0:8");
    std::fs::set_permissions(&md, std::fs::Permissions::from_mode(mode)).unwrap();
    md
}

#[test]
fn shared_maildir_files_take_its_group_and_0660() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = scratch();
    let md = shared_maildir(&t, 0o770);
    let r = run(&[&"--dedup", &md], b"Message-ID: <s@x>\n\nx\n", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(the_file(&md.join("new")), (0, 8, 0o660));
    // The duplicate index is the maildir's too.
    for n in names(&md) {
        if n.starts_with("mdeliver-dedup") {
            let m = std::fs::metadata(md.join(&n)).unwrap();
            assert_eq!((m.gid(), m.mode() & 0o777), (8, 0o660), "{n}");
        }
    }
    // Not group-writable: private as before.
    let private = t.path().join("Private");
    make_maildir(&private);
    chown(&private, "0:8");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o750)).unwrap();
    let r = run(&[&private], b"x\n", &[]);
    assert_eq!(r.code, 0);
    assert_eq!(the_file(&private.join("new")), (0, 0, 0o600));
}

/// A folder `-c` creates in a shared maildir is shared too: its directories 2770 (under a
/// set-group-ID root) and its marker and the subscription file 0660, all with the maildir's
/// group, as Dovecot makes them; so another member of the group can deliver into it.
#[test]
fn a_folder_created_in_a_shared_maildir_is_shared() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = scratch();
    let md = shared_maildir(&t, 0o2770);
    let r = run(&[&"-c", &"--folder", &"Team", &md], b"x\n", &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let mode = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.gid(), m.mode() & 0o7777)
    };
    let folder = md.join(".Team");
    for d in [
        &folder,
        &folder.join("tmp"),
        &folder.join("new"),
        &folder.join("cur"),
    ] {
        assert_eq!(mode(d), (8, 0o2770), "{}", d.display());
    }
    assert_eq!(mode(&folder.join("maildirfolder")), (8, 0o660));
    assert_eq!(mode(&md.join("subscriptions")), (8, 0o660));
    assert_eq!(the_file(&folder.join("new")), (0, 8, 0o660));
    // Not group-writable: private as before.
    let private = t.path().join("Private");
    make_maildir(&private);
    let r = run(&[&"-c", &"--folder", &"Mine", &private], b"x\n", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mode(&private.join(".Mine")).1, 0o700);
    assert_eq!(mode(&private.join(".Mine/maildirfolder")).1, 0o600);
    assert_eq!(mode(&private.join("subscriptions")).1, 0o600);
}

/// A `maildirsize` its deliverer cannot write (root's, mode 0444) defers the delivery with an
/// error that names the quota file, not the message or the maildir's directories.
#[test]
fn an_unwritable_maildirsize_is_named_in_the_error() {
    let t = scratch();
    let md = t.path().join("md");
    make_maildir(&md);
    chown(&md, "65534:65534");
    for d in ["tmp", "new", "cur"] {
        chown(&md.join(d), "65534:65534");
    }
    std::fs::write(md.join("maildirsize"), "1000000S\n0 0\n").unwrap();
    std::fs::set_permissions(
        md.join("maildirsize"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let Some(r) = run_as_nobody(t.path(), &[&md], b"Subject: q\n\nx\n") else {
        return;
    };
    assert_eq!(r.code, 75, "{}", r.stderr);
    let md = md.display();
    assert_eq!(
        r.stderr,
        format!(
            "4.2.0 mailbox not writable: permission denied\n\
             mdeliver: {md}: using the quota file maildirsize: permission denied; check the \
             owner and mode of the maildir's maildirsize: the deliverer must be able to read \
             and write it\n"
        )
    );
    assert!(names(&t.path().join("md/new")).is_empty());
}

/// A maildir whose owner cannot even be looked up (its path runs through a regular file, or
/// through a loop of symbolic links) fails as root exactly as it fails without root: the
/// maildir is unavailable (4.2.0, 75; 73 with `--strict-exit`), not "mdeliver is
/// misconfigured" (4.3.5), which would send the administrator looking at the command line.
#[test]
fn a_maildir_root_cannot_examine_fails_as_it_does_without_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = scratch();
    let file = t.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let (a, b) = (t.path().join("loop-a"), t.path().join("loop-b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    for md in [file.join("Maildir"), a.join("Maildir")] {
        for strict in [&[][..], &["--strict-exit"][..]] {
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = strict
                .iter()
                .map(|s| s as &dyn AsRef<std::ffi::OsStr>)
                .collect();
            args.push(&md);
            let root = run(&args, b"x\n", &[]);
            let Some(nobody) = run_as_nobody(t.path(), &args, b"x\n") else {
                return;
            };
            assert_eq!(
                (root.code, root.stderr.as_str()),
                (nobody.code, nobody.stderr.as_str()),
                "{}",
                md.display()
            );
            let class = if strict.is_empty() { '4' } else { '5' };
            assert_eq!(
                root.stderr.lines().next(),
                Some(
                    format!(
                        "{class}.2.0 mailbox unavailable: not a directory (or a symbolic link)"
                    )
                    .as_str()
                )
            );
            assert_eq!(root.code, if strict.is_empty() { 75 } else { 73 });
        }
    }
}
