//! `mdeliver -M` end to end, and what other programs make of what mdeliver writes: an mbox
//! written by Python's `mailbox.mbox` with tricky content imports byte-exact; Python's
//! `mailbox.Maildir` reads every message, its subdir, flags and folders back; mblaze's own
//! `mdeliver -M` on the same file differs only as documented (README, "mblaze"). Malformed
//! input, folder names and concurrent folder creation; error messages as insta snapshots.

mod cli_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::*;

/// The messages handed to Python's `mailbox.mbox.add` (each with its own `From ` line), and
/// what mdeliver must store for each: (input, stored, subdir, flags, mtime).
#[allow(clippy::type_complexity)]
fn corpus() -> Vec<(
    &'static [u8],
    Vec<u8>,
    &'static str,
    &'static str,
    Option<i64>,
)> {
    vec![
        (
            b"From alice@example.org Tue Jan  1 10:00:00 2019\nFrom: a@example.org\nSubject: plain\nDate: Tue, 02 Jan 2018 10:00:00 +0000\n\nFrom the start\n>>From twice quoted by hand\nbody\n",
            // Python quotes "From " (mboxo); mboxrd unquoting removes one '>' from each
            // ">+From " line, so the hand-written ">>From" comes back as ">From" (documented).
            b"From: a@example.org\nSubject: plain\nDate: Tue, 02 Jan 2018 10:00:00 +0000\n\nFrom the start\n>From twice quoted by hand\nbody\n".to_vec(),
            "new",
            "",
            Some(1514887200), // Date:
        ),
        (
            b"From bob@example.org Wed Jan  2 10:00:00 2019\nFrom: b@example.org\r\nSubject: crlf\r\nStatus: RO\r\nX-Status: AF\r\n\r\nline1\r\nFrom here\r\n",
            b"From: b@example.org\r\nSubject: crlf\r\n\r\nline1\r\nFrom here\r\n".to_vec(),
            "cur",
            "FRS",
            Some(1546423200), // no Date: the From line's date
        ),
        (
            b"From carol@example.org Thu Jan  3 10:00:00 2019\nSubject: 8bit\nStatus: O\n\n\xe9t\xe9 \xff\x00 bytes\n",
            b"Subject: 8bit\n\n\xe9t\xe9 \xff\x00 bytes\n".to_vec(),
            "cur",
            "",
            Some(1546509600),
        ),
        (
            b"From dave@example.org Fri Jan  4 10:00:00 2019\nSubject: empty body\nX-Status: D\n\n",
            b"Subject: empty body\n\n".to_vec(),
            "cur",
            "T",
            Some(1546596000),
        ),
        (
            b"From erin@example.org Sat Jan  5 10:00:00 2019\nSubject: only headers\n",
            b"Subject: only headers\n".to_vec(),
            "new",
            "",
            Some(1546682400),
        ),
        (
            b"From frank@example.org Sun Jan  6 10:00:00 2019\nSubject: no trailing newline\n\nlast line",
            // mbox cannot store a message without a final newline unless it is last, and
            // Python's writer adds one to every message.
            b"Subject: no trailing newline\n\nlast line\n".to_vec(),
            "new",
            "",
            Some(1546768800),
        ),
    ]
}

fn python() -> bool {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import mailbox")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: python3 with the mailbox module is not available");
    }
    ok
}

/// Runs a Python script with arguments; its standard output.
fn py(script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script);
    for a in args {
        c.arg(a);
    }
    let out = c.output().expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes the corpus into `mbox` through Python's `mailbox.mbox`.
fn python_mbox(dir: &Path) -> PathBuf {
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    for (i, (input, ..)) in corpus().iter().enumerate() {
        std::fs::write(inputs.join(format!("{i:02}")), input).unwrap();
    }
    let mbox = dir.join("python.mbox");
    py(
        "import mailbox, os, sys\n\
         mb = mailbox.mbox(sys.argv[1], create=True)\n\
         for n in sorted(os.listdir(sys.argv[2])):\n    \
             mb.add(open(os.path.join(sys.argv[2], n), 'rb').read())\n\
         mb.flush(); mb.close()\n",
        &[&mbox, &inputs],
    );
    mbox
}

/// Every message file under `maildir`'s new/ and cur/: (subdir, name) → bytes.
fn files(maildir: &Path) -> BTreeMap<(String, String), Vec<u8>> {
    let mut m = BTreeMap::new();
    for d in ["new", "cur"] {
        for (n, b) in contents(&maildir.join(d)) {
            m.insert((d.to_owned(), n), b);
        }
    }
    m
}

#[test]
fn python_mbox_imports_exactly_and_python_maildir_reads_it() {
    if !python() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mbox = python_mbox(t.path());
    let md = t.path().join("Maildir");
    let r = run(&[&"-M", &"-c", &"-i", &mbox, &md], b"", &[]);
    assert_eq!((r.code, r.stderr.as_str(), r.stdout.as_str()), (0, "", ""));
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
    let stored = files(&md);
    let want = corpus();
    assert_eq!(stored.len(), want.len());
    // Names carry the delivery order (the counter Q), so sort by it.
    let mut got: Vec<_> = stored.iter().collect();
    got.sort_by_key(|((_, n), _)| {
        let q = n.split('Q').nth(1).unwrap();
        q[..q.find('R').unwrap()].parse::<u64>().unwrap()
    });
    for (((dir, name), bytes), (_, stored_bytes, subdir, flags, mtime)) in got.iter().zip(&want) {
        assert_eq!(
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(stored_bytes),
            "{name}"
        );
        assert_eq!(bytes, &stored_bytes, "{name}");
        assert_eq!(dir, subdir, "{name}");
        if dir == "new" {
            assert!(!name.contains(':'), "{name}");
        } else {
            assert!(name.ends_with(&format!(":2,{flags}")), "{name}");
        }
        let meta = std::fs::metadata(md.join(dir).join(name)).unwrap();
        assert_eq!(Some(meta.mtime()), *mtime, "{name}");
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    // Python's Maildir reader: every message, its subdir and flags, byte for byte.
    let out = py(
        "import mailbox, sys\n\
         md = mailbox.Maildir(sys.argv[1], factory=None, create=False)\n\
         for k in sorted(md.keys()):\n    \
             m = md.get_message(k)\n    \
             print(k, m.get_subdir(), m.get_flags() or '-', md.get_bytes(k).hex())\n",
        &[&md],
    );
    let mut from_python = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let bytes: Vec<u8> = (0..f[3].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&f[3][i..i + 2], 16).unwrap())
            .collect();
        from_python.insert(f[0].to_owned(), (f[1].to_owned(), f[2].to_owned(), bytes));
    }
    assert_eq!(from_python.len(), want.len());
    for ((dir, name), bytes) in &stored {
        let key = name.split(':').next().unwrap();
        let (sub, flags, pbytes) = &from_python[key];
        assert_eq!(sub, dir);
        let ours = name.split_once(":2,").map_or("", |(_, f)| f);
        assert_eq!(flags, if ours.is_empty() { "-" } else { ours });
        // Python's get_bytes turns CRLF into LF on reading; compare what it can see.
        let lf = |b: &[u8]| {
            b.iter()
                .copied()
                .filter(|&c| c != b'\r')
                .collect::<Vec<u8>>()
        };
        assert_eq!(lf(pbytes), lf(bytes), "{name}");
    }
}

#[test]
fn python_maildir_sees_flags_and_folders() {
    if !python() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let msg = b"Subject: x\n\nbody\n";
    for (extra, folder) in [
        (&[][..], None),
        (&["-X", "SFS"][..], None),
        (&["-X", "R"][..], Some("Lists/rust")),
        (&[][..], Some("Sent")),
        (&[][..], Some("INBOX.Archive.2026")),
    ] {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-c"];
        for e in extra {
            a.push(e);
        }
        if let Some(f) = &folder {
            a.push(&"--folder");
            a.push(f);
        }
        a.push(&md);
        let r = run(&a, msg, &[]);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    }
    let out = py(
        "import mailbox, sys\n\
         md = mailbox.Maildir(sys.argv[1], factory=None, create=False)\n\
         def show(box, name):\n    \
             for k in sorted(box.keys(), key=lambda k: box.get_message(k).get_flags()):\n        \
                 m = box.get_message(k)\n        \
                 print(name, m.get_subdir(), m.get_flags() or '-', box.get_bytes(k) == b'Subject: x\\n\\nbody\\n')\n\
         show(md, 'INBOX')\n\
         for f in sorted(md.list_folders()):\n    \
             show(md.get_folder(f), f)\n",
        &[&md],
    );
    assert_eq!(
        out,
        "INBOX new - True\nINBOX cur FS True\nArchive.2026 new - True\n\
         Lists.rust cur R True\nSent new - True\n"
    );
    for f in [".Lists.rust", ".Sent", ".Archive.2026"] {
        let marker = std::fs::metadata(md.join(f).join("maildirfolder")).unwrap();
        assert!(marker.is_file() && marker.len() == 0, "{f}");
    }
    // No staging directory left behind.
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
}

#[test]
fn info_separator_and_flags() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    let r = run(
        &[&"-c", &"-v", &"-X", &"TSa", &"--info-separator", &";", &md],
        b"S: x\n\n",
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names = names(&md.join("cur"));
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with(";2,STa"), "{}", names[0]);
    assert!(!names[0].contains(':'));
    let r = run(&[&"list", &"--info-separator", &";", &md], b"", &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.split('\t').nth(2), Some("STa"));
    let r = run(&[&"-X", &"S1", &md], b"S: x\n\n", &[]);
    let r2 = run(&[&"--info-separator", &"::", &md], b"S: x\n\n", &[]);
    insta::assert_snapshot!(
        "flag_and_separator_usage",
        format!(
            "exit {}\n{}exit {}\n{}",
            r.code,
            normalize(&r.stderr, t.path()),
            r2.code,
            normalize(&r2.stderr, t.path())
        )
    );
}

/// An mbox of `n` small messages, mboxrd-quoted.
fn mbox_of(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.extend_from_slice(
            format!("From x@example.org Sat Nov 28 18:03:09 2026\nSubject: {i}\n\nbody {i}\n\n")
                .as_bytes(),
        );
    }
    v
}

#[test]
fn malformed_mbox_keeps_what_came_before_and_names_the_offset() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    let mut mbox = mbox_of(3);
    let bad_at = mbox.len();
    mbox.extend_from_slice(b"From ");
    mbox.extend_from_slice(&[b'x'; 2000]);
    mbox.extend_from_slice(b"\nSubject: lost\n\n");
    let r = run(&[&"-M", &"-c", &"-v", &md], &mbox, &[]);
    assert_eq!(r.code, 65);
    assert!(
        r.stderr.contains(&format!("at byte {bad_at} ")),
        "{}",
        r.stderr
    );
    assert_eq!(names(&md.join("new")).len(), 3);
    assert_eq!(
        r.stdout.lines().count(),
        3,
        "the delivered paths are printed"
    );
    let not_mbox = run(&[&"-M", &"-c", &md], b"Subject: plain message\n\nx\n", &[]);
    assert_eq!(names(&md.join("new")).len(), 3);
    let with_empty = mbox_of(1)
        .into_iter()
        .chain(b"From nobody Sat Nov 28 18:03:09 2026\n".iter().copied())
        .collect::<Vec<u8>>();
    let empty = run(&[&"-M", &md], &with_empty, &[]);
    assert_eq!(names(&md.join("new")).len(), 4);
    let two = run(&[&"-M", &md, &md], &with_empty, &[]);
    let summary = |r: &Run| {
        // The summary's timing varies: keep its count.
        normalize(&r.stderr, t.path())
            .lines()
            .map(|l| l.split(" in ").next().unwrap().to_owned() + "\n")
            .collect::<String>()
    };
    insta::assert_snapshot!(
        "malformed_mbox",
        format!(
            "exit {}\n{}exit {}\n{}exit {}\n{}exit {}\n{}",
            r.code,
            summary(&r),
            not_mbox.code,
            summary(&not_mbox),
            empty.code,
            summary(&empty),
            two.code,
            summary(&two)
        )
    );
}

#[test]
fn an_import_refuses_the_options_of_an_mta_delivery() {
    // Ignoring them would be worse: `-M --dry-run` would import for real, `-M --dedup` would
    // store duplicates, `-M --return-path` would silently add nothing.
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    for option in [
        &["--dry-run"][..],
        &["--json"],
        &["--dedup"],
        // `--quota` is kept (cli_quota_folders), but an import over quota stops: it does not
        // bounce.
        &["--quota-full=bounce"],
        &["--return-path", "a@example.org"],
        &["--delivered-to", "a@example.org"],
        &["--original-to", "a@example.org"],
        &["--from-env"],
        &["--keep-from-line"],
    ] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-M", &"-c"];
        args.extend(option.iter().map(|o| o as &dyn AsRef<std::ffi::OsStr>));
        args.push(&md);
        let r = run(&args, &mbox_of(2), &[]);
        // Not at a terminal: a command-line mistake defers (issue 13).
        assert_eq!(r.code, 75, "{option:?}: {r:?}");
        assert!(
            r.stderr.starts_with(
                "4.3.5 mdeliver is misconfigured\nerror: the argument '--mbox' cannot be used with '--"
            ),
            "{option:?}: {}",
            r.stderr
        );
        assert!(!md.exists(), "{option:?}: something was created");
    }
}

#[test]
fn folder_names_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    make_maildir(&md);
    let mut out = String::new();
    for name in ["../x", ".Sent", "A//B", "A:B", "A\tB", "Nope"] {
        let r = run(&[&"--folder", &name, &md], b"S: x\n\n", &[]);
        out.push_str(&format!(
            "{name:?}: exit {}\n{}",
            r.code,
            normalize(&r.stderr, t.path())
        ));
    }
    insta::assert_snapshot!("folder_refusals", out);
    assert_eq!(names(&md), ["cur", "new", "tmp"]);
}

#[test]
fn concurrent_folder_creation_makes_one_folder() {
    // With renameat2(RENAME_NOREPLACE), and with the plain-rename fallback (which cannot
    // replace another creator's folder: it is never empty).
    for disable in ["", "rename-noreplace"] {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("m");
        make_maildir(&md);
        for round in 0..5 {
            let folder = format!("F{round}/sub");
            let children: Vec<_> = (0..8)
                .map(|i| {
                    let mut c = Command::new(bin());
                    c.args(["-c", "--folder", &folder])
                        .arg(&md)
                        .env("MDELIVER_DISABLE", disable)
                        .stdin(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped());
                    let mut child = c.spawn().unwrap();
                    use std::io::Write;
                    let mut stdin = child.stdin.take().unwrap();
                    stdin.write_all(format!("S: {i}\n\n").as_bytes()).unwrap();
                    drop(stdin);
                    child
                })
                .collect();
            for c in children {
                let out = c.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{disable}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let dir = md.join(format!(".F{round}.sub"));
            assert_eq!(names(&dir), ["cur", "maildirfolder", "new", "tmp"]);
            assert_eq!(names(&dir.join("new")).len(), 8);
        }
        assert_eq!(names(&md.join("tmp")), Vec::<String>::new(), "{disable}");
    }
}

/// mblaze's tools, installed with apt-get when missing and we are root; `None` (reason
/// printed) otherwise.
fn mblaze() -> Option<PathBuf> {
    let have = || Path::new("/usr/bin/mlist").exists() && Path::new("/usr/bin/mdeliver").exists();
    if !have() && is_root() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "mblaze"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
    if have() {
        Some(PathBuf::from("/usr/bin/mdeliver"))
    } else {
        eprintln!("skipped: mblaze is not installed (apt-get install mblaze, as root)");
        None
    }
}

#[test]
fn side_by_side_with_mblaze_mdeliver() {
    if !python() {
        return;
    }
    let Some(theirs) = mblaze() else { return };
    let t = tempfile::tempdir().unwrap();
    let mbox = python_mbox(t.path());
    let ours_md = t.path().join("ours");
    let theirs_md = t.path().join("theirs");
    make_maildir(&theirs_md);
    let r = run(&[&"-M", &"-c", &"-i", &mbox, &ours_md], b"", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = Command::new(&theirs)
        .arg("-M")
        .arg(&theirs_md)
        .stdin(std::fs::File::open(&mbox).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let order = |m: BTreeMap<(String, String), Vec<u8>>| {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|((_, n), _)| {
            let q = n.split('Q').nth(1).unwrap();
            let end = q.find(|c: char| !c.is_ascii_digit()).unwrap();
            q[..end].parse::<u64>().unwrap()
        });
        v
    };
    let ours = order(files(&ours_md));
    let theirs = order(files(&theirs_md));
    assert_eq!(ours.len(), theirs.len());
    for (((od, on), ob), ((td, tn), tb)) in ours.iter().zip(&theirs) {
        // Documented differences: mblaze keeps the separating empty line (one more "\n" at
        // the end of every message) and gives new/ names an empty info ":2,".
        let mut expected = ob.clone();
        expected.push(b'\n');
        assert_eq!(tb, &expected, "{tn}");
        // mblaze gives every name an info part, ":2," in new/ too, and puts a message with
        // flags but without Status: O into new/ (a name there cannot carry flags: we use cur/).
        let our_flags = on.split_once(":2,").map_or("", |x| x.1);
        let their_flags = tn.split_once(":2,").map(|x| x.1);
        assert_eq!(their_flags, Some(our_flags), "{tn}");
        if od == "new" {
            assert!(!on.contains(':'), "{on}");
        }
        assert!(
            od == td || (od == "cur" && td == "new" && !our_flags.is_empty()),
            "{on} {tn}"
        );
        // Both take the mtime from Date:; only we fall back to the From line's date.
        let om = std::fs::metadata(ours_md.join(od).join(on))
            .unwrap()
            .mtime();
        let tm = std::fs::metadata(theirs_md.join(td).join(tn))
            .unwrap()
            .mtime();
        if ob.windows(6).any(|w| w == b"\nDate:") {
            assert_eq!(om, tm, "{on}");
        }
    }
}

#[test]
fn mblaze_reads_and_flags_what_we_write() {
    let Some(_) = mblaze() else { return };
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    for (i, flags) in [None, Some("S"), Some("FS"), None].iter().enumerate() {
        let msg = format!("From: sender{i}@example.org\nSubject: message {i}\n\nbody\n");
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-c"];
        if let Some(f) = flags {
            a.push(&"-X");
            a.push(f);
        }
        a.push(&md);
        assert_eq!(run(&a, msg.as_bytes(), &[]).code, 0);
    }
    let mblaze = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new(args[0]);
        for a in &args[1..] {
            c.arg(a);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let all = mblaze(&[&"mlist", &md]);
    let mut listed: Vec<&str> = all.lines().collect();
    listed.sort();
    let mut ours: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|d| {
            let dir = md.join(d);
            names(&dir).into_iter().map(move |n| dir.join(n))
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    ours.sort();
    assert_eq!(listed, ours);
    assert_eq!(mblaze(&[&"mlist", &"-s", &md]).lines().count(), 2, "unseen");
    assert_eq!(
        mblaze(&[&"mlist", &"-F", &md]).lines().count(),
        1,
        "flagged"
    );
    let scan = mblaze(&[&"mscan", &"-f", &"%f %s", &all.lines().next().unwrap()]);
    assert!(
        scan.starts_with("sender") && scan.contains("message"),
        "{scan}"
    );
    // mblaze flags a message we delivered; our list sees the change.
    let first_cur = ours.iter().find(|p| p.contains("/cur/")).unwrap();
    mblaze(&[&"mflag", &"-F", first_cur]);
    let r = run(&[&"list", &md], b"", &[]);
    let flags: Vec<&str> = r.lines_field(2);
    assert_eq!(
        flags.iter().filter(|f| f.contains('F')).count(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().count(), 4);
}

trait Fields {
    fn lines_field(&self, i: usize) -> Vec<&str>;
}

impl Fields for Run {
    fn lines_field(&self, i: usize) -> Vec<&str> {
        self.stdout
            .lines()
            .map(|l| l.split('\t').nth(i).unwrap())
            .collect()
    }
}

#[test]
fn x_flags_add_to_status_flags() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("m");
    let mbox = b"From a Sat Nov 28 18:03:09 2026\nSubject: 0\nStatus: RO\n\nx\n\n\
                 From b Sat Nov 28 18:03:09 2026\nSubject: 1\n\ny\n";
    let r = run(&[&"-M", &"-c", &"-X", &"F", &md], mbox, &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let cur = names(&md.join("cur"));
    let flags: BTreeMap<Vec<u8>, String> = cur
        .iter()
        .map(|n| {
            let body = std::fs::read(md.join("cur").join(n)).unwrap();
            (body, n.split_once(":2,").unwrap().1.to_owned())
        })
        .collect();
    assert_eq!(flags[&b"Subject: 0\n\nx\n"[..]], "FS");
    assert_eq!(flags[&b"Subject: 1\n\ny\n"[..]], "F");
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
}

#[test]
fn disk_full_mid_import_keeps_and_counts_what_was_delivered() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(t.path(), "256k", "0700") else {
        return;
    };
    let md = fs.mnt.join("m");
    let body = "y".repeat(4000);
    let message = |i: usize| format!("Subject: {i}\n\n{body}\n");
    let mut mbox = Vec::new();
    for i in 0..200 {
        mbox.extend_from_slice(b"From a Sat Nov 28 18:03:09 2026\n");
        mbox.extend_from_slice(message(i).as_bytes());
        mbox.push(b'\n');
    }
    let r = run(&[&"-M", &"-c", &md], &mbox, &[]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    let stored = files(&md);
    let n = stored.len();
    assert!(n > 10 && n < 200, "{n} stored");
    assert!(
        r.stderr.contains(&format!("message {} of the mbox", n + 1))
            && r.stderr
                .contains(&format!("the {n} messages before it were delivered")),
        "{}",
        r.stderr
    );
    // Exactly the first n messages, each complete; nothing half-written anywhere.
    let mut bodies: Vec<Vec<u8>> = stored.into_values().collect();
    bodies.sort_by_key(|b| {
        let s = String::from_utf8_lossy(b);
        s[9..s.find('\n').unwrap()].parse::<usize>().unwrap()
    });
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(b, message(i).as_bytes());
    }
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
    // The stop names where the rest begins (issue 12, item 3), with one status line; after
    // freeing space, importing from there stores the other messages, none twice.
    let at = resume_offset(&r.stderr);
    assert_eq!(&mbox[at..at + 5], b"From ", "{}", r.stderr);
    assert_eq!(
        status_lines(&r.stderr),
        ["4.3.1 mail system full (no space left on device)"]
    );
    fs.remount("size=4m");
    let rest = run(&[&"-M", &md], &mbox[at..], &[]);
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    let mut all: Vec<Vec<u8>> = files(&md).into_values().collect();
    all.sort();
    let mut want: Vec<Vec<u8>> = (0..200).map(|i| message(i).into_bytes()).collect();
    want.sort();
    assert!(all == want, "every message of the mbox, each once");
}

/// The byte offset a stopped import says the rest of its input begins at.
fn resume_offset(stderr: &str) -> usize {
    let tail = stderr
        .split("the rest of the input begins at byte ")
        .nth(1)
        .unwrap_or_else(|| panic!("no resume offset in: {stderr}"));
    let n: usize = tail.split(':').next().unwrap().parse().unwrap();
    assert!(
        tail.contains(&format!("`tail -c +{} MBOX", n + 1)),
        "{stderr}"
    );
    n
}

/// The lines of `stderr` that are RFC 3463 status lines (`D.S.N text`).
fn status_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let code = l.split(' ').next().unwrap_or("");
            let parts: Vec<&str> = code.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}
