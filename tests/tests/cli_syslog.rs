//! The mail log (issue 13): one line per maildir in the system log, facility mail, like
//! dovecot-lda's `msgid=<…>: saved mail to INBOX`. The lines go to a unix datagram socket the
//! test owns (the `MDELIVER_TEST_SYSLOG` knob stands for `/dev/log`) and are compared exactly
//! (the timestamp and pid normalized). Before issue 13 nothing was logged.

mod cli_support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use cli_support::*;

/// A test-owned syslog socket.
struct Socket(UnixDatagram, String);

impl Socket {
    fn bind(dir: &Path) -> Socket {
        let path = dir.join("log");
        let s = UnixDatagram::bind(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Socket(s, path.display().to_string())
    }

    /// The datagrams received, `<PRI>` kept, `Mon dd hh:mm:ss` and the pid replaced.
    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = self.0.recv(&mut buf) {
            let l = String::from_utf8_lossy(&buf[..n]).into_owned();
            let end = l.find('>').unwrap() + 1;
            let rest = &l[end + "Dec 06 12:00:00 ".len()..];
            let rest = rest.strip_prefix("mdeliver[").unwrap();
            let pid_end = rest.find(']').unwrap();
            out.push(format!(
                "{}TIME mdeliver[PID]{}",
                &l[..end],
                &rest[pid_end + 1..]
            ));
        }
        out
    }
}

#[test]
fn one_line_per_delivery_and_failure() {
    let t = tempfile::tempdir().unwrap();
    let sock = Socket::bind(t.path());
    let env = [("MDELIVER_TEST_SYSLOG", sock.1.as_str())];
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let msg = b"Message-ID: <a1@example.org>\nSubject: hi\n\nbody\n";
    let missing = t.path().join("nope/Maildir");
    // Standard input is a pipe: logged by default.
    let r = run(&[&"-v", &md, &missing], msg, &env);
    assert_eq!(r.code, 75);
    let name = delivered_name(r.stdout.as_bytes());
    let tmp = t.path().display().to_string();
    let lines: Vec<String> = sock
        .lines()
        .iter()
        .map(|l| l.replace(&tmp, "[TMP]"))
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "<22>TIME mdeliver[PID]: msgid=<a1@example.org>: saved mail to [TMP]/Maildir: \
                 new/{name}; status=2.0.0"
            ),
            "<20>TIME mdeliver[PID]: msgid=<a1@example.org>: failed to save mail to \
             [TMP]/nope/Maildir: opening maildir: no such file or directory; check the path, \
             or pass -c/--create to create the maildir; status=4.2.0, exit=75"
                .to_owned(),
        ]
    );

    // A duplicate, a message without Message-ID, a bounce (over quota with
    // --quota-full=bounce: mail.err).
    let r = run(&[&"--dedup", &md], msg, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[&md], b"Subject: no id\n\nx\n", &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let full = t.path().join("Full");
    make_maildir(&full);
    let r = run(&[&"--quota=10", &"--quota-full=bounce", &full], msg, &env);
    assert_eq!(r.code, 77, "{}", r.stderr);
    let lines = sock.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("<22>TIME mdeliver[PID]: msgid=<a1@example.org>: saved mail to "),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("<22>TIME mdeliver[PID]: msgid=none: saved mail to "));
    assert!(
        lines[2].starts_with("<19>TIME mdeliver[PID]: msgid=<a1@example.org>: failed to save")
            && lines[2].ends_with("; status=5.2.2, exit=77"),
        "{}",
        lines[2]
    );
    let r = run(&[&"--dedup", &md], msg, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = sock.lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("msgid=<a1@example.org>: duplicate not saved again in "),
        "{}",
        lines[0]
    );

    // Only a maildir that cannot be opened: nothing read the message, yet its Message-ID
    // is named.
    let r = run(&[&missing], msg, &env);
    assert_eq!(r.code, 75, "{}", r.stderr);
    let lines = sock.lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("<20>TIME mdeliver[PID]: msgid=<a1@example.org>: failed to save"),
        "{}",
        lines[0]
    );

    // --no-syslog, a dry run: nothing.
    let r = run(&[&"--no-syslog", &md], msg, &env);
    assert_eq!(r.code, 0);
    let r = run(&[&"-n", &md], msg, &env);
    assert_eq!(r.code, 0);
    assert_eq!(sock.lines(), Vec::<String>::new());
}

/// A syslog daemon that listens on a stream socket (rsyslog can): the datagram `sendto` is
/// refused with EPROTOTYPE, and the line goes over a connection, ended by a NUL.
#[test]
fn a_stream_socket_gets_the_line_over_a_connection() {
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("log");
    let listener = UnixListener::bind(&path).unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got
    });
    let env = [("MDELIVER_TEST_SYSLOG", path.to_str().unwrap())];
    let r = run(&[&md], b"Message-ID: <s1@example.org>\n\nbody\n", &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(got.starts_with("<22>"), "{got:?}");
    assert!(
        got.ends_with("\0") && got.matches('\0').count() == 1,
        "one NUL-ended line: {got:?}"
    );
    assert!(
        got.contains("mdeliver[") && got.contains("]: msgid=<s1@example.org>: saved mail to "),
        "{got:?}"
    );
}

/// A `--sieve` delivery logs one line per copy the script stored (the folder's path for a
/// `fileinto`), and a script that does not compile logs its deferral.
#[test]
fn a_sieve_delivery_logs_each_copy_and_a_broken_script() {
    let t = tempfile::tempdir().unwrap();
    let sock = Socket::bind(t.path());
    let env = [("MDELIVER_TEST_SYSLOG", sock.1.as_str())];
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let script = t.path().join("filter.sieve");
    std::fs::write(
        &script,
        "require [\"fileinto\", \"mailbox\"];\nfileinto :create \"Lists\";\nkeep;\n",
    )
    .unwrap();
    let msg = b"Message-ID: <s1@example.org>\nSubject: hi\n\nbody\n";
    let r = run(&[&"--sieve", &script, &md], msg, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tmp = t.path().display().to_string();
    let mut lines: Vec<String> = sock
        .lines()
        .iter()
        .map(|l| {
            let l = l.replace(&tmp, "[TMP]");
            // The file name is unique per delivery: keep what comes before it.
            l[..l.find(": new/").expect("a saved line")].to_owned()
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "<22>TIME mdeliver[PID]: msgid=<s1@example.org>: saved mail to [TMP]/Maildir",
            "<22>TIME mdeliver[PID]: msgid=<s1@example.org>: saved mail to [TMP]/Maildir/.Lists",
        ]
    );

    std::fs::write(&script, "fileinto \"Lists\";\n").unwrap();
    let r = run(&[&"--sieve", &script, &md], msg, &env);
    assert_eq!(r.code, 75, "{}", r.stderr);
    let lines = sock.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("<20>TIME mdeliver[PID]: msgid=none: failed to save mail to ")
            && lines[0].contains("the Sieve script ")
            && lines[0].ends_with("; status=4.3.5, exit=75"),
        "{}",
        lines[0]
    );
}
