//! Every failure prints its RFC 3463 status line: a property over every exit path of the forms
//! an MTA runs (a delivery, `-M`), checked on a table of failures made for real, run as an MTA
//! runs mdeliver (no terminal). For each case: a non-zero exit writes exactly one status line,
//! as the first line of standard error, whose class agrees with the exit code (75 → `4.`,
//! anything else → `5.`), and the exit code is the one the README's table promises (a usage
//! error defers under an MTA: 75, `4.3.5`; at a terminal it is 64 with no status line). The
//! subcommands (`list`, `flag`, `check`) are tools for people, not for MTAs, and print none.

mod cli_support;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli_support::*;

/// Where a case's standard input comes from.
enum Stdin {
    Bytes(Vec<u8>),
    /// A file or directory opened for reading.
    Open(PathBuf),
}

/// One failure, set up in its own directory.
struct Case {
    args: Vec<OsString>,
    stdin: Stdin,
    env: Vec<(&'static str, &'static str)>,
    /// Run as `nobody` (skipped when that is impossible).
    nobody: bool,
    /// The exit code the README promises.
    code: i32,
    /// The status line's code (`D.S.N`), when the case pins it.
    status: Option<&'static str>,
}

const HELLO: &[u8] = b"From: a@example.org\nSubject: hi\n\nhello\n";

fn case(args: &[&dyn AsRef<std::ffi::OsStr>], code: i32, status: Option<&'static str>) -> Case {
    Case {
        args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
        stdin: Stdin::Bytes(HELLO.to_vec()),
        env: Vec::new(),
        nobody: false,
        code,
        status,
    }
}

fn with_stdin(mut c: Case, stdin: Stdin) -> Case {
    c.stdin = stdin;
    c
}

/// A fresh maildir at `dir/name`.
fn maildir(dir: &Path, name: &str) -> PathBuf {
    let md = dir.join(name);
    make_maildir(&md);
    md
}

/// Every case: its name and how to set it up in a fresh directory.
#[allow(clippy::type_complexity)]
fn cases() -> Vec<(&'static str, Box<dyn Fn(&Path) -> Case>)> {
    let big = b"Subject: big\n\n".iter().chain([b'x'; 4000].iter());
    let big: Vec<u8> = big.copied().collect();
    vec![
        (
            "missing maildir",
            Box::new(|d| case(&[&d.join("none")], 75, Some("4.2.0"))),
        ),
        (
            "missing maildir, strict",
            Box::new(|d| case(&[&"--strict-exit", &d.join("none")], 73, Some("5.2.0"))),
        ),
        (
            "maildir is a file",
            Box::new(|d| {
                std::fs::write(d.join("f"), b"").unwrap();
                case(&[&d.join("f")], 75, Some("4.2.0"))
            }),
        ),
        (
            "new/ is a symbolic link",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::fs::remove_dir(md.join("new")).unwrap();
                std::os::unix::fs::symlink(d, md.join("new")).unwrap();
                case(&[&md], 75, Some("4.2.0"))
            }),
        ),
        (
            "empty message",
            Box::new(|d| {
                with_stdin(
                    case(&[&maildir(d, "m")], 65, Some("5.6.0")),
                    Stdin::Bytes(vec![]),
                )
            }),
        ),
        (
            "only an envelope line",
            Box::new(|d| {
                let c = case(&[&maildir(d, "m")], 65, Some("5.6.0"));
                with_stdin(
                    c,
                    Stdin::Bytes(b"From a@b Mon Jan  1 00:00:00 2024\n".to_vec()),
                )
            }),
        ),
        (
            "only an envelope line, with a return path",
            Box::new(|d| {
                let c = case(
                    &[&"--return-path", &"a@b", &maildir(d, "m")],
                    65,
                    Some("5.6.0"),
                );
                with_stdin(
                    c,
                    Stdin::Bytes(b"From a@b Mon Jan  1 00:00:00 2024\n".to_vec()),
                )
            }),
        ),
        (
            "mail loop",
            Box::new(|d| {
                let c = case(
                    &[&"--delivered-to", &"bob@x", &maildir(d, "m")],
                    65,
                    Some("5.4.6"),
                );
                let m = b"Subject: x\nDelivered-To: bob@x\n\nbody\n".to_vec();
                with_stdin(c, Stdin::Bytes(m))
            }),
        ),
        (
            "bad option",
            Box::new(|d| case(&[&"--frobnicate", &maildir(d, "m")], 75, Some("4.3.5"))),
        ),
        (
            "--input missing",
            Box::new(|d| {
                case(
                    &[&"-i", &d.join("none"), &maildir(d, "m")],
                    66,
                    Some("5.3.0"),
                )
            }),
        ),
        (
            "--input a directory",
            Box::new(|d| case(&[&"-i", &d, &maildir(d, "m")], 66, Some("5.3.0"))),
        ),
        (
            "standard input a directory",
            Box::new(|d| {
                with_stdin(
                    case(&[&maildir(d, "m")], 66, Some("5.3.0")),
                    Stdin::Open(d.to_owned()),
                )
            }),
        ),
        (
            "standard input a directory, -M",
            Box::new(|d| {
                let c = case(&[&"-M", &maildir(d, "m")], 66, Some("5.3.0"));
                with_stdin(c, Stdin::Open(d.to_owned()))
            }),
        ),
        (
            "folder: a symbolic link in its place",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::os::unix::fs::symlink(d, md.join(".X")).unwrap();
                case(&[&"-c", &"--folder", &"X", &md], 75, Some("4.2.0"))
            }),
        ),
        (
            "folder: a file in its place",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::fs::write(md.join(".X"), b"").unwrap();
                case(&[&"-c", &"--folder", &"X", &md], 75, Some("4.2.0"))
            }),
        ),
        (
            "folder: a file in its place, -M",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::fs::write(md.join(".X"), b"").unwrap();
                let c = case(&[&"-M", &"-c", &"--folder", &"X", &md], 75, Some("4.2.0"));
                with_stdin(
                    c,
                    Stdin::Bytes(b"From a Mon Jan  1 00:00:00 2024\nS: x\n\nb\n".to_vec()),
                )
            }),
        ),
        (
            "folder: the maildir is not writable",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::fs::set_permissions(&md, std::fs::Permissions::from_mode(0o555)).unwrap();
                let mut c = case(&[&"-c", &"--folder", &"X", &md], 75, Some("4.2.0"));
                c.nobody = true;
                c
            }),
        ),
        (
            "folder: bad name",
            Box::new(|d| case(&[&"--folder", &"../x", &maildir(d, "m")], 75, Some("4.3.5"))),
        ),
        (
            "maildir not writable",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::fs::set_permissions(md.join("tmp"), std::fs::Permissions::from_mode(0o555))
                    .unwrap();
                let mut c = case(&[&md], 75, Some("4.2.0"));
                c.nobody = true;
                c
            }),
        ),
        (
            "over the Maildir++ quota",
            Box::new(move |d| {
                let c = case(&[&"--quota", &"100", &maildir(d, "m")], 75, Some("4.2.2"));
                with_stdin(c, Stdin::Bytes(big.clone()))
            }),
        ),
        (
            "maildirsize is a directory",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::fs::create_dir(md.join("maildirsize")).unwrap();
                case(&[&"--quota", &"1M", &md], 75, None)
            }),
        ),
        (
            "maildirsize is a symbolic link",
            Box::new(|d| {
                let md = maildir(d, "m");
                std::os::unix::fs::symlink("/etc/passwd", md.join("maildirsize")).unwrap();
                case(&[&"--quota", &"1M", &md], 75, None)
            }),
        ),
        (
            "two maildirs, one missing",
            Box::new(|d| case(&[&maildir(d, "m"), &d.join("none")], 75, Some("4.2.0"))),
        ),
        (
            "-M: not an mbox",
            Box::new(|d| case(&[&"-M", &maildir(d, "m")], 65, Some("5.6.0"))),
        ),
        (
            "-M: missing maildir",
            Box::new(|d| {
                let c = case(&[&"-M", &d.join("none")], 75, Some("4.2.0"));
                with_stdin(
                    c,
                    Stdin::Bytes(b"From a Mon Jan  1 00:00:00 2024\nS: x\n\nb\n".to_vec()),
                )
            }),
        ),
        (
            "-M: two maildirs",
            Box::new(|d| {
                case(
                    &[&"-M", &maildir(d, "m"), &maildir(d, "n")],
                    75,
                    Some("4.3.5"),
                )
            }),
        ),
        (
            "unknown MDELIVER_DISABLE word",
            Box::new(|d| {
                let mut c = case(&[&maildir(d, "m")], 75, Some("4.3.5"));
                c.env = vec![("MDELIVER_DISABLE", "xattrs")];
                c
            }),
        ),
    ]
}

/// Runs a case; `None` when it needs `nobody` and that is impossible here.
fn run_case(dir: &Path, c: &Case) -> Option<Run> {
    let mut cmd = if c.nobody {
        if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("skipped: running as nobody needs root and setpriv");
            return None;
        }
        // The binary where nobody can run it.
        let copy = dir.join("mdeliver");
        std::fs::copy(bin(), &copy).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(copy);
        cmd
    } else {
        Command::new(bin())
    };
    cmd.args(&c.args).env_remove("MDELIVER_DISABLE");
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = match &c.stdin {
        Stdin::Open(p) => {
            cmd.stdin(std::fs::File::open(p).unwrap());
            cmd.output().unwrap()
        }
        Stdin::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let mut pipe = child.stdin.take().unwrap();
            let data = b.clone();
            let writer = std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            out
        }
    };
    Some(Run {
        code: out.status.code().expect("exited by signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Whether `line` is an RFC 3463 status line: `D.S.N text`.
fn is_status_line(line: &str) -> bool {
    let Some((code, text)) = line.split_once(' ') else {
        return false;
    };
    let parts: Vec<&str> = code.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !text.is_empty()
}

#[test]
fn every_failure_prints_exactly_one_status_line_first() {
    let mut failures = Vec::new();
    for (name, setup) in cases() {
        let t = tempfile::tempdir().unwrap();
        let c = setup(t.path());
        let Some(r) = run_case(t.path(), &c) else {
            continue;
        };
        let status: Vec<&str> = r.stderr.lines().filter(|l| is_status_line(l)).collect();
        let first = r.stderr.lines().next().unwrap_or("");
        let problem = if r.code != c.code {
            Some(format!("exit {} (want {})", r.code, c.code))
        } else if r.code == 64 && !status.is_empty() {
            Some("a usage error printed a status line".to_owned())
        } else if r.code != 64 && status.len() != 1 {
            Some(format!("{} status lines", status.len()))
        } else if r.code != 64 && first != status[0] {
            Some("the status line is not the first line of standard error".to_owned())
        } else if r.code != 64 && !status[0].starts_with(if r.code == 75 { "4." } else { "5." }) {
            Some("the status class disagrees with the exit code".to_owned())
        } else if c
            .status
            .is_some_and(|s| !status[0].starts_with(&format!("{s} ")))
        {
            Some(format!("want status {}", c.status.unwrap()))
        } else if r.stderr.lines().filter(|l| !is_status_line(l)).count() == 0 {
            Some("no message says what happened".to_owned())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{name}: {p}\n{}", normalize(&r.stderr, t.path())));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
