//! A file whose name is not UTF-8 (a Latin-1 `caf\xe9` copied from an old system) in new/ or
//! cur/ is never a reason to refuse mail: deliveries that list the maildir (a quota
//! recalculation, a duplicate check) store the message, and the readers (`list`, `check`) do
//! not fail on it (issue 12, item 1: before, every such delivery exited 65 with `5.6.0` and
//! Postfix bounced the mail).

mod cli_support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cli_support::*;

const MESSAGE: &[u8] = b"Message-ID: <foreign-names@example.org>\nSubject: x\n\nbody\n";

/// A maildir holding two files with Latin-1 names, one in new/ and one in cur/.
fn maildir_with_foreign_names(md: &Path) {
    make_maildir(md);
    std::fs::write(
        md.join("new").join(OsStr::from_bytes(b"caf\xe9")),
        b"Subject: old\n\nold\n",
    )
    .unwrap();
    std::fs::write(
        md.join("cur").join(OsStr::from_bytes(b"th\xe9:2,S")),
        b"Subject: old\n\nold\n",
    )
    .unwrap();
}

/// How many entries `dir` holds (names compared as bytes).
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn deliveries_that_list_the_maildir_store_the_message() {
    let t = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        ("plain", &[]),
        ("quota recalculation", &["--quota=1000000"]),
        ("duplicate index", &["--dedup"]),
        ("quota and duplicate index", &["--quota=1000000", "--dedup"]),
    ];
    for (what, opts) in cases {
        let md = t.path().join(what.replace(' ', "-"));
        maildir_with_foreign_names(&md);
        let mut args: Vec<&dyn AsRef<OsStr>> =
            opts.iter().map(|o| o as &dyn AsRef<OsStr>).collect();
        args.push(&md);
        let r = run(&args, MESSAGE, &[]);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert_eq!(
            count(&md.join("new")),
            2,
            "{what}: the message is stored beside the old file"
        );
        assert_eq!(count(&md.join("cur")), 1, "{what}");
        assert_eq!(count(&md.join("tmp")), 0, "{what}: nothing left in tmp/");
        assert!(
            md.join("new").join(OsStr::from_bytes(b"caf\xe9")).exists(),
            "{what}"
        );
    }
}

#[test]
fn readers_do_not_fail_on_a_foreign_name() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    maildir_with_foreign_names(&md);
    let list = run(&[&"list", &md], b"", &[]);
    assert_eq!(list.code, 0, "list: {}", list.stderr);
    let check = run(&[&"check", &md], b"", &[]);
    assert_ne!(
        check.code, 65,
        "check must not call a foreign name bad data: {}",
        check.stderr
    );
    assert_ne!(check.code, 75, "check: {}", check.stderr);
    // Nothing was renamed or removed by the readers.
    assert!(md.join("new").join(OsStr::from_bytes(b"caf\xe9")).exists());
    assert!(md
        .join("cur")
        .join(OsStr::from_bytes(b"th\xe9:2,S"))
        .exists());
}

/// `list` prints a message whose name is not UTF-8 like any other, its KEY and PATH escaped
/// (`\xHH`), in key order; `--json` gives the same escaped text and says so (issue 12, item 1:
/// before, `list` silently left such files out and exited 0).
#[test]
fn list_prints_a_foreign_name_escaped() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    maildir_with_foreign_names(&md);
    std::fs::write(md.join("new/1.plain.host"), b"Subject: plain\n\nplain\n").unwrap();
    let list = run(&[&"list", &md], b"", &[]);
    assert_eq!(list.code, 0, "list: {}", list.stderr);
    let m = md.display();
    assert_eq!(
        list.stdout,
        format!(
            "1.plain.host\tnew\t-\t22\t{m}/new/1.plain.host\n\
             caf\\xe9\tnew\t-\t18\t{m}/new/caf\\xe9\n\
             th\\xe9\tcur\tS\t18\t{m}/cur/th\\xe9:2,S\n"
        )
    );
    let json = run(&[&"list", &"--json", &md], b"", &[]);
    assert_eq!(json.code, 0, "list --json: {}", json.stderr);
    assert_eq!(
        json.stdout.lines().nth(2).unwrap(),
        format!(
            "{{\"key\":\"th\\\\xe9\",\"subdir\":\"cur\",\"flags\":\"S\",\"size\":18,\
             \"path\":\"{m}/cur/th\\\\xe9:2,S\",\"escaped\":true}}"
        )
    );
}
