//! The binary's own start-up (`cli/src/start.rs`, which replaces std's): what it keeps of
//! std's must hold. Standard descriptors that the caller closed are opened on /dev/null, so a
//! maildir or message file never becomes descriptor 1 or 2 and no report can land in one; SIGPIPE
//! is ignored, so a report written to a reader that went away does not kill a delivery that
//! succeeded; the exit code reaches the caller; and the arguments arrive whole (including
//! bytes that are not UTF-8).

mod cli_support;

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use cli_support::*;

const MESSAGE: &[u8] = b"From: a@example.org\nSubject: start-up\n\nbody\n";

/// Runs `sh -c SCRIPT` with the binary as `$0` and `args` after it, `MESSAGE` on stdin; the
/// exit code.
fn sh(script: &str, args: &[&std::ffi::OsStr]) -> i32 {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin())
        .args(args)
        .env_remove("MDELIVER_DISABLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sh");
    use std::io::Write;
    // A run that fails before reading its message (a missing maildir) may exit before the
    // write: EPIPE is then its answer, not the test's failure.
    match child.stdin.take().unwrap().write_all(MESSAGE) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    child.wait().unwrap().code().expect("exited, not killed")
}

#[test]
fn closed_stdout_and_stderr_are_opened_on_dev_null_before_any_maildir() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    // With 1 and 2 closed, the maildir's directories (and, with more maildirs, message files)
    // would get them, and a report would be written into them. Watch the descriptors while
    // mdeliver waits for the rest of its message.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec >&- 2>&-; exec "$0" -vv "$@""#)
        .arg(bin())
        .arg(&md)
        .env_remove("MDELIVER_DISABLE")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sh");
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    stdin.write_all(&MESSAGE[..10]).unwrap();
    let fd = |n: u32| std::fs::read_link(format!("/proc/{}/fd/{n}", child.id())).ok();
    // The message file is open once its first bytes are being read.
    let mut waited = 0;
    while !(3..16).any(|n| fd(n).is_some_and(|p| p.to_string_lossy().contains("(deleted)")))
        && waited < 100
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    let (out, err) = (fd(1), fd(2));
    stdin.write_all(&MESSAGE[10..]).unwrap();
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(out.as_deref(), Some(std::path::Path::new("/dev/null")));
    assert_eq!(err.as_deref(), Some(std::path::Path::new("/dev/null")));
    assert_delivered_once(&md, MESSAGE);
    // A failure's report (a missing maildir) has nowhere to go and still exits 75.
    let missing = t.path().join("missing");
    let code = sh(r#"exec >&- 2>&-; exec "$0" "$@""#, &[missing.as_os_str()]);
    assert_eq!(code, 75);
}

#[test]
fn a_reader_that_went_away_does_not_kill_a_successful_delivery() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    // stdout is a pipe whose reader has exited before mdeliver writes its -v line: the write
    // fails with EPIPE instead of a SIGPIPE that would kill the process (status 141) after
    // the message was stored. (std's Command starts sh with SIGPIPE at its default.)
    let status = t.path().join("status");
    let code = sh(
        r#"s=$1; shift; { sleep 0.3; "$0" -v "$@"; echo $? > "$s"; } | true; exit "$(cat "$s")""#,
        &[status.as_os_str(), md.as_os_str()],
    );
    assert_eq!(code, 0, "141 is death by SIGPIPE");
    assert_delivered_once(&md, MESSAGE);
}

#[test]
fn arguments_arrive_whole_and_the_exit_code_comes_back() {
    let t = tempfile::tempdir().unwrap();
    // A maildir name that is not UTF-8, created by -c.
    let mut name = b"Mail\xff".to_vec();
    name.extend_from_slice(b" box");
    let md = t.path().join(std::ffi::OsStr::from_bytes(&name));
    let r = run(&[&"-c", &md], MESSAGE, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_delivered_once(&md, MESSAGE);
    // Codes other than 0 and 1 reach the caller: a usage error (deferred under an MTA, 64
    // with --strict-exit), and an empty message.
    assert_eq!(run(&[&"--bogus", &md], MESSAGE, &[]).code, 75);
    assert_eq!(
        run(&[&"--strict-exit", &"--bogus", &md], MESSAGE, &[]).code,
        64
    );
    assert_eq!(run(&[&md], b"", &[]).code, 65);
}
