//! The WASI module and the native binary share one delivery command line: for every mail and
//! MTA option (flags, folders, info separator, mbox import, envelope fields, loop detection,
//! quota, duplicates, dry run, JSON, several maildirs, input files, errors), the same command
//! run natively and under wasmtime gives the same exit code, the same standard output and
//! error, and the same maildir tree with the same bytes in every file.
//!
//! Normalised before comparing: the temporary directory (`/mail` in the sandbox), the unique
//! part of each message name (time, pid and random bits differ by construction), the import
//! summary's timing, the contents of duplicate-index entries (times and tokens), and the one
//! sentence the module adds when a maildir cannot be reached (where the sandbox's walls are).
//! The native binary is forced onto the module's publish path (link + unlink) so `-vv` agrees.
//! Usage errors compare their exit code and first line: clap's usage line names the program.

use crate::{cli_support, wasi_support};

use std::collections::BTreeMap;
use std::path::Path;

/// The host name both sides put into message names.
const HOST: &str = "parity";

const MSG: &[u8] = b"From: a@example.org\nTo: b@example.org\nSubject: parity\n\nhello\n";

const FROM_LINE_MSG: &[u8] = b"From sender@example.org Sat Nov 28 18:03:09 2026\n\
From: a@example.org\nSubject: enveloped\n\nbody\n";

/// Came back: our address in a `Delivered-To` below the top (at the very top it would be the
/// MTA's own stamp for this delivery).
const LOOPING: &[u8] = b"From: a@example.org\nDelivered-To: me@example.org\n\nagain\n";

const MBOX: &[u8] = b"From a@example.org Sat Nov 28 18:03:09 2026\n\
Subject: one\nStatus: RO\n\nfirst\n>From quoted\n\n\
From b@example.org Sat Nov 28 18:04:09 2026\n\
Subject: two\nDate: Fri, 27 Nov 2026 10:00:00 +0000\nX-Status: F\n\nsecond\n\n\
From c@example.org Sat Nov 28 18:05:09 2026\n\
Subject: three\n\nthird\n";

/// One command line run both ways.
struct Case {
    name: &'static str,
    /// `{D}` stands for the directory holding the maildirs.
    args: &'static [&'static str],
    stdin: &'static [u8],
    env: &'static [(&'static str, &'static str)],
    /// Prepares the directory before the runs.
    setup: fn(&Path),
    /// How many times the command runs (a second delivery meets the first).
    runs: usize,
    /// A usage error: compare the exit code and the first line only.
    usage: bool,
}

const fn case(name: &'static str, args: &'static [&'static str], stdin: &'static [u8]) -> Case {
    Case {
        name,
        args,
        stdin,
        env: &[],
        setup: |_| {},
        runs: 1,
        usage: false,
    }
}

fn maildir_m(d: &Path) {
    cli_support::make_maildir(&d.join("M"));
}

fn message_file(d: &Path) {
    std::fs::write(d.join("msg.eml"), MSG).unwrap();
}

fn cases() -> Vec<Case> {
    vec![
        case("plain", &["-c", "{D}/M"], MSG),
        case("verbose twice", &["-c", "-vv", "{D}/M"], MSG),
        case("flags", &["-c", "-X", "SFx", "{D}/M"], MSG),
        // The module does not subscribe folders (README, "The WASI module"): compared without.
        case(
            "folder",
            &[
                "-c",
                "-v",
                "--no-subscribe",
                "--folder",
                "Lists/rust",
                "{D}/M",
            ],
            MSG,
        ),
        case("inbox folder", &["-c", "--folder", "INBOX", "{D}/M"], MSG),
        Case {
            usage: true,
            ..case("folder name refused", &["--folder", "../x", "{D}/M"], MSG)
        },
        case(
            "info separator",
            &["-c", "-v", "--info-separator", ";", "-X", "S", "{D}/M"],
            MSG,
        ),
        case(
            "envelope",
            &[
                "-c",
                "--return-path",
                "rp@example.org",
                "--delivered-to",
                "me@example.org",
                "--original-to",
                "orig@example.org",
                "{D}/M",
            ],
            FROM_LINE_MSG,
        ),
        case(
            "from line kept",
            &["-c", "--keep-from-line", "{D}/M"],
            FROM_LINE_MSG,
        ),
        case("from line sender", &["-c", "{D}/M"], FROM_LINE_MSG),
        case(
            "loop",
            &["-c", "--delivered-to", "me@example.org", "{D}/M"],
            LOOPING,
        ),
        Case {
            env: &[
                ("SENDER", "env-sender@example.org"),
                ("RECIPIENT", "env-rcpt@example.org"),
                ("ORIGINAL_RECIPIENT", "env-orig@example.org"),
            ],
            ..case("from env", &["-c", "--from-env", "{D}/M"], MSG)
        },
        case("mbox import", &["-c", "-M", "-v", "{D}/M"], MBOX),
        case(
            "mbox import with flags",
            &["-c", "-M", "-X", "P", "{D}/M"],
            MBOX,
        ),
        case(
            "mbox into a folder",
            &[
                "-c",
                "-M",
                "--no-subscribe",
                "--folder",
                "Archive",
                "--mbox-quoting",
                "raw",
                "{D}/M",
            ],
            MBOX,
        ),
        case("mbox malformed", &["-c", "-M", "{D}/M"], b"not an mbox\n"),
        Case {
            usage: true,
            ..case("mbox refuses a dry run", &["-c", "-M", "-n", "{D}/M"], MBOX)
        },
        case("mbox two maildirs", &["-c", "-M", "{D}/A", "{D}/B"], MBOX),
        case("quota", &["-c", "--quota", "10", "{D}/M"], MSG),
        case(
            "quota bounce",
            &["-c", "--quota", "10", "--quota-full=bounce", "{D}/M"],
            MSG,
        ),
        case(
            "quota fits",
            &["-c", "-v", "--quota", "1M,10", "{D}/M"],
            MSG,
        ),
        case("json", &["-c", "--json", "{D}/M"], MSG),
        Case {
            runs: 2,
            ..case("dedup", &["-c", "-v", "--dedup", "--json", "{D}/M"], MSG)
        },
        Case {
            setup: maildir_m,
            ..case("dry run", &["--dry-run", "--json", "{D}/M"], MSG)
        },
        Case {
            setup: maildir_m,
            ..case(
                "dry run into a missing folder",
                &["-c", "--dry-run", "--folder", "New", "{D}/M"],
                MSG,
            )
        },
        case(
            "several maildirs",
            &["-c", "-v", "{D}/A", "{D}/B", "{D}/C"],
            MSG,
        ),
        Case {
            setup: |d| cli_support::make_maildir(&d.join("A")),
            ..case("several, one missing", &["-v", "{D}/A", "{D}/missing"], MSG)
        },
        Case {
            setup: message_file,
            ..case(
                "input file",
                &["-c", "-v", "--input", "{D}/msg.eml", "{D}/M", "{D}/N"],
                b"",
            )
        },
        case("input is a directory", &["--input", "{D}", "{D}/M"], MSG),
        case("missing maildir", &["{D}/nope"], MSG),
        case(
            "missing maildir, strict",
            &["--strict-exit", "{D}/nope"],
            MSG,
        ),
        case("empty message", &["-c", "{D}/M"], b""),
        // Nothing was read from standard input: the next maildir reads it again (and finds it
        // empty too) rather than reporting it lost.
        case(
            "empty message, two maildirs",
            &["-c", "{D}/A", "{D}/B"],
            b"",
        ),
        Case {
            usage: true,
            ..case("bad flags", &["-X", "S1", "{D}/M"], MSG)
        },
        Case {
            usage: true,
            ..case("bad quota", &["--quota", "lots", "{D}/M"], MSG)
        },
        Case {
            usage: true,
            ..case("bad separator", &["--info-separator", "::", "{D}/M"], MSG)
        },
    ]
}

/// What one side did, normalised.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    codes: Vec<i32>,
    stdout: String,
    stderr: String,
    tree: BTreeMap<String, Option<Vec<u8>>>,
}

/// Replaces each message name's unique part (everything before `.parity`) with `<KEY>`.
fn unkey(s: &str) -> String {
    let marker = format!(".{HOST}");
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(&marker) {
        let head = &rest[..i];
        let start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |p| p + 1);
        out.push_str(&head[..start]);
        out.push_str("<KEY>");
        out.push_str(&marker);
        rest = &rest[i + marker.len()..];
    }
    out.push_str(rest);
    out
}

/// The import summary's timing ("in 0.01 s (300 messages/s, 0.1 MiB/s)").
fn untime(s: &str) -> String {
    s.lines()
        .map(|l| match (l.find(" in "), l.rfind(" MiB/s)")) {
            (Some(a), Some(b)) if l.contains("imported") => {
                format!("{} in <TIME>{}", &l[..a], &l[b + " MiB/s)".len()..])
            }
            _ => l.to_owned(),
        })
        .fold(String::new(), |acc, l| acc + &l + "\n")
}

fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = unkey(&p.strip_prefix(root).unwrap().to_string_lossy());
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), None);
                walk(root, &p, out);
            } else if name.starts_with("mdeliver-dedup.") {
                // Times and tokens: its presence is what both sides must agree on.
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn finish(c: &Case, codes: Vec<i32>, stdout: String, stderr: String, root: &Path) -> Outcome {
    let (stdout, stderr) = if c.usage {
        (
            String::new(),
            // The status line (a usage error defers when no terminal is attached) and the
            // error itself.
            stderr.lines().take(2).collect::<Vec<_>>().join("\n"),
        )
    } else {
        (unkey(&stdout), untime(&unkey(&stderr)))
    };
    Outcome {
        codes,
        stdout,
        stderr,
        tree: tree(root),
    }
}

fn native(c: &Case) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    (c.setup)(root);
    let shown = root.to_str().unwrap();
    let mut args: Vec<String> = vec!["--host".into(), HOST.into()];
    args.extend(c.args.iter().map(|a| a.replace("{D}", shown)));
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
        .iter()
        .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    let mut env = vec![("MDELIVER_DISABLE", "anonymous-tmp,rename-noreplace")];
    env.extend_from_slice(c.env);
    let (mut codes, mut stdout, mut stderr) = (Vec::new(), String::new(), String::new());
    for _ in 0..c.runs {
        let r = cli_support::run(&args, c.stdin, &env);
        codes.push(r.code);
        stdout += &r.stdout.replace(shown, "/mail");
        stderr += &r.stderr.replace(shown, "/mail");
    }
    finish(c, codes, stdout, stderr, root)
}

fn module(c: &Case) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    (c.setup)(root);
    let mut args: Vec<String> = vec!["--host".into(), HOST.into()];
    args.extend(c.args.iter().map(|a| a.replace("{D}", "/mail")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sandbox = " (in the WASI sandbox, paths must stay inside the directories the host \
                   preopened)";
    let (mut codes, mut stdout, mut stderr) = (Vec::new(), String::new(), String::new());
    for _ in 0..c.runs {
        let r = wasi_support::run(&args, c.stdin, root, c.env, wasi_support::Limits::default());
        assert!(r.trap.is_empty(), "{}: trapped: {}", c.name, r.trap);
        codes.push(r.code);
        stdout += &r.stdout;
        stderr += &r.stderr.replace(sandbox, "");
    }
    finish(c, codes, stdout, stderr, root)
}

#[test]
fn the_module_and_the_binary_agree_on_every_option() {
    let mut failures = Vec::new();
    for c in cases() {
        let n = native(&c);
        let m = module(&c);
        if n != m {
            failures.push(format!("{}:\n native: {n:#?}\n module: {m:#?}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} command lines differ:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

/// The comparison above would pass if both sides did nothing: check that the cases really
/// deliver, import, refuse and suppress as intended (on the module's side).
#[test]
fn the_compared_cases_do_what_they_say() {
    let by_name = |name: &str| {
        let c = cases().into_iter().find(|c| c.name == name).unwrap();
        module(&c)
    };
    let files = |o: &Outcome, under: &str| {
        o.tree
            .iter()
            .filter(|(k, v)| k.starts_with(under) && v.is_some())
            .count()
    };
    let plain = by_name("plain");
    assert_eq!(plain.codes, [0]);
    assert_eq!(files(&plain, "M/new/"), 1);
    let flags = by_name("flags");
    let cur = |o: &Outcome, suffix: &str| {
        o.tree
            .keys()
            .any(|k| k.starts_with("M/cur/<KEY>.parity,S=") && k.ends_with(suffix))
    };
    assert!(cur(&flags, ":2,FSx"), "{flags:?}");
    let folder = by_name("folder");
    assert!(folder.tree.contains_key("M/.Lists.rust/maildirfolder"));
    assert_eq!(files(&folder, "M/.Lists.rust/new/"), 1);
    let sep = by_name("info separator");
    assert!(cur(&sep, ";2,S"), "{sep:?}");
    let env = by_name("envelope");
    let stored = env
        .tree
        .iter()
        .find(|(k, v)| k.starts_with("M/new/") && v.is_some())
        .unwrap();
    assert!(stored.1.as_ref().unwrap().starts_with(
        b"Return-Path: <rp@example.org>\nX-Original-To: orig@example.org\n\
          Delivered-To: me@example.org\nFrom: a@example.org\n"
    ));
    let looped = by_name("loop");
    assert_eq!(looped.codes, [65]);
    assert!(looped.stderr.starts_with("5.4.6 "), "{}", looped.stderr);
    let mbox = by_name("mbox import");
    assert_eq!(files(&mbox, "M/new/") + files(&mbox, "M/cur/"), 3);
    let mbox_flags = by_name("mbox import with flags");
    assert_eq!(
        files(&mbox_flags, "M/cur/"),
        3,
        "-X puts every message in cur/"
    );
    // Usage errors with no terminal defer (75, 4.3.5), on both sides (issue 13).
    let refused = by_name("mbox refuses a dry run");
    assert_eq!(refused.codes, [75]);
    assert!(refused.stderr.starts_with("4.3.5 "), "{}", refused.stderr);
    assert_eq!(
        refused.tree.len(),
        0,
        "'-M -n' must not import: {refused:?}"
    );
    assert_eq!(by_name("mbox malformed").codes, [65]);
    assert_eq!(by_name("mbox two maildirs").codes, [75]);
    assert_eq!(by_name("quota").codes, [75]);
    assert_eq!(by_name("quota bounce").codes, [77]);
    let dedup = by_name("dedup");
    assert_eq!(dedup.codes, [0, 0]);
    assert_eq!(files(&dedup, "M/new/"), 1);
    assert!(
        dedup.stdout.contains("\"duplicate\":true"),
        "{}",
        dedup.stdout
    );
    let dry = by_name("dry run");
    assert_eq!(dry.codes, [0]);
    assert_eq!(files(&dry, "M/"), 0);
    let dry_folder = by_name("dry run into a missing folder");
    assert!(!dry_folder.tree.contains_key("M/.New/"), "{dry_folder:?}");
    assert_eq!(dry_folder.tree.len(), 4, "M/ and its tmp/, new/, cur/ only");
    assert!(
        dry_folder.stderr.contains("a dry run creates nothing"),
        "{}",
        dry_folder.stderr
    );
    let several = by_name("several, one missing");
    assert_eq!(several.codes, [75]);
    assert_eq!(files(&several, "A/new/"), 1);
    assert!(!several.tree.contains_key("missing/"));
    let input = by_name("input file");
    assert_eq!(files(&input, "N/new/"), 1);
    assert_eq!(by_name("input is a directory").codes, [66]);
    assert_eq!(by_name("bad flags").codes, [75]);
}
