//! The files a maildir keeps beside its messages, `maildirsize` (Maildir++ quota) and the
//! duplicate index entries `mdeliver-dedup.*`, when they are not what they should be: a
//! directory, a FIFO, a symbolic link, or unreadable. Each case defers (75) with one status
//! line, names the file, gives advice about that file (not about tmp/, new/ and cur/, and not
//! "use real directories"), delivers nothing and leaves nothing in tmp/ (issue 12, item 12).

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cli_support::*;

const MESSAGE: &[u8] = b"Message-ID: <index-files@example.org>\nSubject: x\n\nbody\n";

/// What to put where the file belongs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Bad {
    Directory,
    Fifo,
    Symlink,
    /// A regular file mode 000, owned by root, the deliverer being nobody.
    Unreadable,
}

fn make(path: &Path, bad: Bad) {
    match bad {
        Bad::Directory => std::fs::create_dir(path).unwrap(),
        Bad::Fifo => {
            let st = Command::new("mkfifo").arg(path).status().unwrap();
            assert!(st.success());
        }
        Bad::Symlink => std::os::unix::fs::symlink("/etc/passwd", path).unwrap(),
        Bad::Unreadable => {
            std::fs::write(path, b"1000000S\n0 0\n").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
}

/// Runs `mdeliver args... maildir` (as nobody for [`Bad::Unreadable`], after giving nobody the
/// maildir); `None` when that is impossible here.
fn deliver(dir: &Path, md: &Path, args: &[&str], bad: Bad) -> Option<Run> {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
    all.push(&md);
    match bad {
        Bad::Unreadable => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let st = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(md)
                .status()
                .unwrap();
            assert!(st.success());
            // Only the broken file stays root's.
            run_as_nobody(dir, &all, MESSAGE)
        }
        _ => Some(run(&all, MESSAGE, &[])),
    }
}

fn messages(md: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| names(&md.join(d)).len())
        .sum()
}

#[test]
fn a_broken_maildirsize_or_dedup_entry_is_named_with_the_right_advice() {
    for bad in [Bad::Directory, Bad::Fifo, Bad::Symlink, Bad::Unreadable] {
        // maildirsize: read by every --quota delivery.
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("m");
        make_maildir(&md);
        make(&md.join("maildirsize"), bad);
        let Some(r) = deliver(t.path(), &md, &["--quota", "1M"], bad) else {
            continue;
        };
        check(&r, bad, "maildirsize", &md);
        // A dedup entry: made by a first delivery, then replaced.
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("m");
        make_maildir(&md);
        let first = run(&[&"--dedup", &md], MESSAGE, &[]);
        assert_eq!(first.code, 0, "{}", first.stderr);
        let entry = names(&md)
            .into_iter()
            .find(|n| n.starts_with("mdeliver-dedup."))
            .expect("an index entry");
        for d in ["new", "cur"] {
            for n in names(&md.join(d)) {
                std::fs::remove_file(md.join(d).join(n)).unwrap();
            }
        }
        std::fs::remove_file(md.join(&entry)).unwrap();
        make(&md.join(&entry), bad);
        let Some(r) = deliver(t.path(), &md, &["--dedup"], bad) else {
            continue;
        };
        check(&r, bad, "mdeliver-dedup.", &md);
        // The message names the very entry to remove, not only its pattern.
        if bad != Bad::Unreadable {
            let path = md.join(&entry);
            assert!(
                r.stderr
                    .contains(&format!("; the entry to remove is {}", path.display())),
                "{bad:?}: {}",
                r.stderr
            );
        }
    }
}

fn check(r: &Run, bad: Bad, file: &str, md: &Path) {
    let what = format!("{file} as {bad:?}:\n{}", r.stderr);
    assert_eq!(r.code, 75, "{what}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{what}");
    let want = match bad {
        Bad::Unreadable => "4.2.0 mailbox not writable: permission denied",
        _ => "4.2.0 mailbox unavailable: a maildir file is not a regular file",
    };
    assert_eq!(lines[0], want, "{what}");
    let message = lines[1];
    assert!(
        message.contains(&format!(
            ": using the {}",
            if file == "maildirsize" {
                "quota file maildirsize: "
            } else {
                "duplicate index (the mdeliver-dedup.* files): "
            }
        )),
        "{what}"
    );
    assert!(
        message.matches(file).count() >= 2,
        "names the file in its advice too: {what}"
    );
    for wrong in [
        "tmp/, new/ and cur/",
        "use real directories",
        "not a directory",
    ] {
        assert!(!message.contains(wrong), "{wrong:?}: {what}");
    }
    assert_eq!(messages(md), 0, "nothing delivered: {what}");
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new(), "{what}");
}
