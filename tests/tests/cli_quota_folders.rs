//! Maildir++ keeps one quota for the whole maildir, folders included: Courier and Dovecot read
//! only `ROOT/maildirsize`, and a folder's messages count toward it (issue 12, item 7). Before,
//! a `--folder` delivery ignored the root's `maildirsize`, `--quota --folder` wrote a
//! `.Sub/maildirsize` nobody reads, a recalculation counted the root's new/ and cur/ only, and
//! `-M` counted nothing it imported (and refused `--quota`).

mod cli_support;

use std::ffi::OsStr;
use std::path::Path;

use cli_support::*;

const MESSAGE: &[u8] = b"Subject: quota\n\nbody of the message\n";

/// The sums of `maildirsize`'s size lines (bytes, count) and its definition line.
fn maildirsize(md: &Path) -> (String, i64, i64) {
    let text = std::fs::read_to_string(md.join("maildirsize")).unwrap();
    let mut lines = text.lines();
    let definition = lines.next().unwrap().to_owned();
    let (mut bytes, mut count) = (0, 0);
    for l in lines {
        let mut it = l.split_whitespace().map(|n| n.parse::<i64>().unwrap());
        bytes += it.next().unwrap();
        count += it.next().unwrap();
    }
    (definition, bytes, count)
}

/// What is stored under `dir` (a maildir and its folders), as (bytes, count): the files in
/// every new/ and cur/, `.Trash` left out.
fn stored(md: &Path) -> (i64, i64) {
    let mut maildirs = vec![md.to_path_buf()];
    for e in std::fs::read_dir(md).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name != ".Trash" && e.file_type().unwrap().is_dir() {
            maildirs.push(e.path());
        }
    }
    let (mut bytes, mut count) = (0, 0);
    for m in maildirs {
        for d in ["new", "cur"] {
            for f in std::fs::read_dir(m.join(d)).unwrap() {
                bytes += f.unwrap().metadata().unwrap().len() as i64;
                count += 1;
            }
        }
    }
    (bytes, count)
}

fn deliver(args: &[&dyn AsRef<OsStr>]) -> Run {
    run(args, MESSAGE, &[])
}

#[test]
fn a_folder_delivery_is_counted_in_the_root_maildirsize_and_makes_none_of_its_own() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    std::fs::write(md.join("maildirsize"), "1000000S\n0 0\n").unwrap();
    // Without --quota (the root's file applies), with it, and into a second folder.
    let cases: [&[&str]; 3] = [
        &["-c", "--folder", "Sub"],
        &["--quota=1000000S", "--folder", "Sub"],
        &["-c", "--folder", "Other/Deeper"],
    ];
    for opts in cases {
        let mut args: Vec<&dyn AsRef<OsStr>> =
            opts.iter().map(|o| o as &dyn AsRef<OsStr>).collect();
        args.push(&md);
        let r = deliver(&args);
        assert_eq!(r.code, 0, "{opts:?}: {}", r.stderr);
    }
    assert_eq!(
        maildirsize(&md),
        ("1000000S".to_owned(), 3 * MESSAGE.len() as i64, 3)
    );
    assert_eq!(stored(&md), (3 * MESSAGE.len() as i64, 3));
    for folder in [".Sub", ".Other.Deeper"] {
        assert!(
            !md.join(folder).join("maildirsize").exists(),
            "{folder}/maildirsize, which no IMAP server reads, was created"
        );
    }
}

/// A maildir whose quota (the limit, returned) two messages fill: one in the root, one in its
/// folder `.Sub`.
fn full_with_a_folder() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let limit = format!("{}S", 2 * MESSAGE.len());
    assert_eq!(deliver(&[&"--quota", &limit, &md]).code, 0);
    assert_eq!(deliver(&[&"-c", &"--folder", &"Sub", &md]).code, 0);
    (t, md, limit)
}

#[test]
fn over_quota_a_folder_delivery_is_refused_as_one_into_the_root() {
    let (_t, md, limit) = full_with_a_folder();
    let root = deliver(&[&md]);
    let folder = deliver(&[&"--folder", &"Sub", &md]);
    let folder_given = deliver(&[&"--quota", &limit, &"--folder", &"Sub", &md]);
    assert_eq!(root.code, 75, "{}", root.stderr);
    let first = |r: &Run| r.stderr.lines().next().unwrap_or_default().to_owned();
    assert_eq!(first(&root), "4.2.2 mailbox full");
    for r in [&folder, &folder_given] {
        assert_eq!(
            (r.code, first(r)),
            (root.code, first(&root)),
            "{}",
            r.stderr
        );
    }
    assert_eq!(stored(&md), (2 * MESSAGE.len() as i64, 2));
    assert!(!md.join(".Sub/maildirsize").exists());
    assert!(names(&md.join(".Sub/tmp")).is_empty());
}

/// A folder given by its path (`mdeliver Maildir/.Sub`, as maildrop's `to "Maildir/.Sub"`)
/// is a folder: its `maildirfolder` marker says so, and the root's quota applies to it as to
/// `--folder Sub`.
#[test]
fn a_folder_given_by_its_path_counts_in_the_root_quota() {
    let (t, md, limit) = full_with_a_folder();
    let sub = md.join(".Sub");
    assert!(sub.join("maildirfolder").is_file());
    for given in [&[][..], &["--quota", &limit][..]] {
        let mut args: Vec<&dyn AsRef<OsStr>> =
            given.iter().map(|o| o as &dyn AsRef<OsStr>).collect();
        args.push(&sub);
        let r = deliver(&args);
        assert_eq!(r.code, 75, "{given:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().next(), Some("4.2.2 mailbox full"));
    }
    assert_eq!(stored(&md), (2 * MESSAGE.len() as i64, 2));
    assert!(!sub.join("maildirsize").exists());
    // Under the limit it is counted in the root's file (recalculated: the two stored, then
    // one into the root and one into the folder).
    std::fs::remove_file(md.join("maildirsize")).unwrap();
    assert_eq!(deliver(&[&"--quota", &"1000000S", &md]).code, 0);
    assert_eq!(deliver(&[&sub]).code, 0);
    let four = 4 * MESSAGE.len() as i64;
    assert_eq!(maildirsize(&md), ("1000000S".to_owned(), four, 4));
    assert_eq!(stored(&md), (four, 4));
    assert!(!sub.join("maildirsize").exists());
    // A maildir named like a folder but without the marker is a maildir of its own.
    let plain = t.path().join(".Plain");
    make_maildir(&plain);
    assert_eq!(deliver(&[&"--quota", &"1000000S", &plain]).code, 0);
    assert!(plain.join("maildirsize").exists());
}

#[test]
fn a_recalculation_counts_every_folder_but_the_trash() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    // Messages of another MUA (names without ,S=: stat'ed) in the root, two folders and the
    // trash.
    std::fs::write(md.join("cur/1.a.host:2,S"), vec![b'x'; 100]).unwrap();
    for (folder, name, size) in [
        (".Sub", "new/2.b.host", 200),
        (".Sub", "cur/3.c.host,S=300:2,S", 300),
        (".Sub.Deeper", "cur/4.d.host,S=400:2,", 400),
        (".Trash", "cur/5.e.host,S=5000:2,", 5000),
    ] {
        make_maildir(&md.join(folder));
        std::fs::write(md.join(folder).join(name), vec![b'x'; size]).unwrap();
    }
    // No maildirsize and --quota: recalculated, from the root and from a folder.
    for folder in [None, Some("Sub")] {
        let _ = std::fs::remove_file(md.join("maildirsize"));
        let before = stored(&md);
        assert_eq!(
            before.0,
            1000 + i64::from(folder.is_some()) * MESSAGE.len() as i64
        );
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"--quota=1000000S"];
        if let Some(f) = &folder {
            args.extend([&"--folder" as &dyn AsRef<OsStr>, f]);
        }
        args.push(&md);
        let r = deliver(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let text = std::fs::read_to_string(md.join("maildirsize")).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("1000000S"));
        assert_eq!(
            lines.next().unwrap(),
            format!("{} {}", before.0, before.1),
            "the recalculated line counts the root and every folder but .Trash ({folder:?})"
        );
        assert_eq!(maildirsize(&md).1, stored(&md).0);
    }
}

/// An mbox of `n` messages of growing size.
fn mbox(n: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        m.extend_from_slice(
            format!(
                "From a@example.org Mon Jan  1 00:00:00 2024\nSubject: {i}\n\n{}\n",
                "x".repeat(i * 7)
            )
            .as_bytes(),
        );
    }
    m
}

#[test]
fn an_import_counts_what_it_stores_and_stops_at_the_quota_with_an_offset() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    std::fs::write(md.join("maildirsize"), "10000000S\n0 0\n").unwrap();
    // 150 messages: more than two windows of 64, so several lines.
    let r = run(&[&"-M", &"--folder", &"Sub", &"-c", &md], &mbox(150), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, bytes, count) = maildirsize(&md);
    assert_eq!(
        (bytes, count),
        stored(&md),
        "what -M stored is counted exactly"
    );
    assert_eq!(count, 150);
    let lines = std::fs::read_to_string(md.join("maildirsize"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        lines,
        2 + 3,
        "one line per window of 64, not one per message"
    );
    assert!(!md.join(".Sub/maildirsize").exists());

    // With a limit: the first message that does not fit stops the import, nothing of it is
    // stored, and the offset resumes exactly there.
    let limit = bytes + 1000;
    let input = mbox(40);
    let r = run(
        &[
            &"-M",
            &"--quota",
            &format!("{limit}S"),
            &"--folder",
            &"Two",
            &"-c",
            &md,
        ],
        &input,
        &[],
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert_eq!(r.stderr.lines().next(), Some("4.2.2 mailbox full"));
    let (_, bytes, count) = maildirsize(&md);
    assert_eq!((bytes, count), stored(&md));
    assert!(bytes <= limit, "{bytes} > {limit}");
    let offset: usize = r
        .stderr
        .split("tail -c +")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {}", r.stderr));
    let next = &input[offset - 1..];
    assert!(
        next.starts_with(b"From "),
        "the offset is a message's start"
    );
    let imported = names(&md.join(".Two/new")).len();
    let rest = next.windows(6).filter(|w| w == b"\nFrom ").count() + 1;
    assert_eq!(imported + rest, 40, "nothing lost, nothing twice");
    // The next message would have crossed the limit.
    let body_start = next.iter().position(|&b| b == b'\n').unwrap() + 1;
    let end = next
        .windows(6)
        .position(|w| w == b"\nFrom ")
        .map_or(next.len(), |p| p + 1);
    assert!(bytes + (end - body_start) as i64 > limit);
}
