//! `mdeliver lmtp` over standard input and output: every reply checked byte for byte, and what
//! each recipient's maildir holds afterwards. Pipelining is the normal case here: the whole
//! client script is written at once.

mod cli_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{bin, contents, make_maildir, names, run, Run};

const GREETING: &str = "220 testhost LMTP mdeliver ready\r\n";
const LHLO: &str = "250-testhost\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n";

fn lmtp(extra: &[&str], script: &str, root: &Path) -> Run {
    let template = format!("{}/{{domain}}/{{local}}", root.display());
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"lmtp", &"--host", &"testhost", &"--maildir", &template];
    for e in extra {
        args.push(e);
    }
    run(&args, script.as_bytes(), &[])
}

/// The only message in `md`'s new/.
fn only(md: &Path) -> Vec<u8> {
    let all = contents(&md.join("new"));
    assert_eq!(all.len(), 1, "{}: {:?}", md.display(), all.keys());
    all.into_values().next().unwrap()
}

#[test]
fn a_transaction_gets_one_reply_per_recipient_and_stores_lf_unstuffed_mail() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir(root.join("example.org")).unwrap();
    let r = lmtp(
        &["-c"],
        "LHLO mx.example\r\n\
         MAIL FROM:<alice@example.net> BODY=8BITMIME\r\n\
         RCPT TO:<Bob+Lists@Example.ORG>\r\n\
         RCPT TO:<carol@example.org>\r\n\
         RCPT TO:<../etc@example.org>\r\n\
         RCPT TO:<dave@elsewhere.example>\r\n\
         DATA\r\n\
         Subject: hi\r\n\
         \r\n\
         ..a stuffed dot\r\n\
         bare\rCR\r\n\
         .\r\n\
         QUIT\r\n",
        root,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "{GREETING}{LHLO}250 SIZE\r\n\
             250 2.1.0 sender ok\r\n\
             250 2.1.5 recipient ok\r\n\
             250 2.1.5 recipient ok\r\n\
             553 5.1.3 a part of the address starts with a dot\r\n\
             450 4.2.0 mailbox unavailable: no such file or directory\r\n\
             354 send the message; end it with a line holding only a dot\r\n\
             250 2.0.0 delivered\r\n\
             250 2.0.0 delivered\r\n\
             221 2.0.0 bye\r\n"
        )
    );
    // The unroutable domain's directory does not exist, and -c does not create parents.
    assert!(!root.join("elsewhere.example").exists());
    let body = "Subject: hi\n\n.a stuffed dot\nbare\rCR\n";
    assert_eq!(
        String::from_utf8(only(&root.join("example.org/bob"))).unwrap(),
        format!("Return-Path: <alice@example.net>\nDelivered-To: Bob+Lists@Example.ORG\n{body}")
    );
    assert_eq!(
        String::from_utf8(only(&root.join("example.org/carol"))).unwrap(),
        format!("Return-Path: <alice@example.net>\nDelivered-To: carol@example.org\n{body}")
    );
    assert!(
        r.stderr.contains("<dave@elsewhere.example>: ") && r.stderr.contains("450 4.2.0"),
        "{}",
        r.stderr
    );
}

#[test]
fn sequence_errors_garbage_and_long_lines_get_clear_replies() {
    let t = tempfile::tempdir().unwrap();
    let long = "X".repeat(5000);
    let r = lmtp(
        &[],
        &format!(
            "EHLO x\r\nMAIL FROM:<a@b>\r\nLHLO x\nRCPT TO:<a@b>\r\nDATA\r\n{long}\r\n\
             MAIL FROM:<a@b> SIZE=big\r\nMAIL FROM:a@b\r\nMAIL FROM:<a@b> AUTH=<>\r\n\
             MAIL FROM:<>\r\nMAIL FROM:<a@b>\r\nDATA\r\nRCPT TO:<>\r\nRSET\r\nNOOP\r\n\
             VRFY root\r\nBDAT 1 LAST\r\n"
        ),
        t.path(),
    );
    assert_eq!(
        r.stdout,
        format!(
            "{GREETING}\
             500 5.5.1 this is an LMTP server: greet it with LHLO\r\n\
             503 5.5.1 send LHLO first\r\n\
             {LHLO}250 SIZE\r\n\
             503 5.5.1 send MAIL first\r\n\
             503 5.5.1 send MAIL first\r\n\
             500 5.5.2 line too long\r\n\
             501 5.5.4 SIZE needs a number\r\n\
             501 5.1.3 bad address syntax: write it as <local@domain>\r\n\
             555 5.5.4 parameter not supported\r\n\
             250 2.1.0 sender ok\r\n\
             503 5.5.1 sender already given; send RSET to start over\r\n\
             421 4.7.0 too many errors; closing\r\n"
        )
    );
    assert_eq!(r.code, 0);
}

#[test]
fn oversized_messages_get_552_per_recipient_and_nothing_is_stored() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    make_maildir(&root.join("x.example/b"));
    let big = "0123456789".repeat(20);
    let r = lmtp(
        &["--max-size", "100"],
        &format!(
            "LHLO x\r\nMAIL FROM:<s@x.example> SIZE=101\r\nMAIL FROM:<s@x.example> SIZE=100\r\n\
             RCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n{big}\r\n.\r\n\
             MAIL FROM:<s@x.example>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nsmall\r\n.\r\nQUIT\r\n"
        ),
        root,
    );
    assert_eq!(
        r.stdout,
        format!(
            "{GREETING}{LHLO}250 SIZE 100\r\n\
             552 5.3.4 message size exceeds the limit\r\n\
             250 2.1.0 sender ok\r\n250 2.1.5 recipient ok\r\n250 2.1.5 recipient ok\r\n\
             354 send the message; end it with a line holding only a dot\r\n\
             552 5.3.4 message size exceeds the limit\r\n\
             552 5.3.4 message size exceeds the limit\r\n\
             250 2.1.0 sender ok\r\n250 2.1.5 recipient ok\r\n\
             354 send the message; end it with a line holding only a dot\r\n\
             250 2.0.0 delivered\r\n221 2.0.0 bye\r\n"
        )
    );
    assert_eq!(names(&root.join("x.example/b/new")), Vec::<String>::new());
    assert!(only(&root.join("x.example/a")).ends_with(b"\nsmall\n"));
    for md in ["a", "b"] {
        assert_eq!(
            names(&root.join("x.example").join(md).join("tmp")),
            Vec::<String>::new()
        );
    }
}

/// The loop: a `Delivered-To:` of the recipient anywhere in the header (an LMTP client stamps
/// none, so one at the very top is a loop too, unlike under Postfix's local(8)).
#[test]
fn a_loop_or_a_broken_maildir_fails_only_its_own_recipient() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/ok"));
    make_maildir(&root.join("x.example/loop"));
    // A maildir whose new/ is a file: opening it fails at RCPT.
    std::fs::create_dir_all(root.join("x.example/broken/tmp")).unwrap();
    std::fs::create_dir_all(root.join("x.example/broken/cur")).unwrap();
    std::fs::write(root.join("x.example/broken/new"), "").unwrap();
    let script = "LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<ok@x.example>\r\nRCPT TO:<loop@x.example>\r\n\
                  RCPT TO:<broken@x.example>\r\nDATA\r\nReceived: from a forwarder\r\n\
                  Delivered-To: loop@x.example\r\n\
                  Subject: bounced around\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let r = lmtp(&[], script, root);
    assert_eq!(
        r.stdout,
        format!(
            "{GREETING}{LHLO}250 SIZE\r\n250 2.1.0 sender ok\r\n\
             250 2.1.5 recipient ok\r\n250 2.1.5 recipient ok\r\n\
             450 4.2.0 mailbox unavailable: not a directory (or a symbolic link)\r\n\
             354 send the message; end it with a line holding only a dot\r\n\
             250 2.0.0 delivered\r\n\
             554 5.4.6 mail forwarding loop for loop@x.example\r\n\
             221 2.0.0 bye\r\n"
        )
    );
    assert_eq!(
        String::from_utf8(only(&root.join("x.example/ok"))).unwrap(),
        "Return-Path: <>\nDelivered-To: ok@x.example\nReceived: from a forwarder\n\
         Delivered-To: loop@x.example\n\
         Subject: bounced around\n\nbody\n"
    );
    assert_eq!(
        names(&root.join("x.example/loop/new")),
        Vec::<String>::new()
    );
    // At the very top of the header: still a loop over LMTP.
    let top = script.replace("Received: from a forwarder\r\n", "");
    assert!(top.contains("DATA\r\nDelivered-To: loop@x.example\r\n"));
    let r = lmtp(&[], &top, root);
    assert!(
        r.stdout.contains(
            "250 2.0.0 delivered\r\n554 5.4.6 mail forwarding loop for loop@x.example\r\n"
        ),
        "{}",
        r.stdout
    );
    assert_eq!(
        names(&root.join("x.example/loop/new")),
        Vec::<String>::new()
    );
    // --strict-exit makes the broken maildir permanent, as the one-shot path's 73.
    let r = lmtp(&["--strict-exit"], script, root);
    assert!(
        r.stdout
            .contains("550 5.2.0 mailbox unavailable: not a directory (or a symbolic link)\r\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_map_file_decides_who_exists() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/bob"));
    make_maildir(&root.join("special"));
    let map = root.join("map");
    std::fs::write(
        &map,
        format!(
            "# users\nBob@X.example\nboss@x.example {}\n@catch.example {}\n",
            root.join("special").display(),
            root.join("special").display()
        ),
    )
    .unwrap();
    let map_arg = map.to_str().unwrap();
    let r = lmtp(
        &["--map", map_arg],
        "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<bob+tag@x.example>\r\nRCPT TO:<eve@x.example>\r\n\
         RCPT TO:<BOSS@x.example>\r\nRCPT TO:<anyone@catch.example>\r\nDATA\r\nhi\r\n.\r\n",
        root,
    );
    assert_eq!(
        r.stdout,
        format!(
            "{GREETING}{LHLO}250 SIZE\r\n250 2.1.0 sender ok\r\n250 2.1.5 recipient ok\r\n\
             550 5.1.1 no such user\r\n250 2.1.5 recipient ok\r\n250 2.1.5 recipient ok\r\n\
             354 send the message; end it with a line holding only a dot\r\n\
             250 2.0.0 delivered\r\n250 2.0.0 delivered\r\n250 2.0.0 delivered\r\n"
        )
    );
    assert_eq!(names(&root.join("special/new")).len(), 2);
    assert_eq!(names(&root.join("x.example/bob/new")).len(), 1);
    // A key with a subaddress could never match (recipients are looked up without theirs):
    // refused when the map is read, which defers, rather than bouncing its mail later.
    std::fs::write(&map, "bob@x.example\nalice+lists@x.example\n").unwrap();
    let r = lmtp(&["--map", map_arg], "", root);
    assert_eq!(r.code, 75);
    assert_eq!(
        r.stderr,
        format!(
            "mdeliver lmtp: {map_arg}:2: recipients are looked up without their +subaddress: \
             write the address without it\n"
        )
    );
}

#[test]
fn input_ending_inside_a_message_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let r = lmtp(
        &[],
        "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nSubject: cut\r\n\r\nhalf",
        root,
    );
    assert!(
        r.stdout.ends_with(
            "354 send the message; end it with a line holding only a dot\r\n\
             451 4.3.0 the message ended early; nothing stored\r\n"
        ),
        "{}",
        r.stdout
    );
    for d in ["tmp", "new", "cur"] {
        assert_eq!(
            names(&root.join("x.example/a").join(d)),
            Vec::<String>::new()
        );
    }
}

#[test]
fn usage_errors_are_refused_before_serving() {
    let t = tempfile::tempdir().unwrap();
    let r = run(&[&"lmtp"], b"", &[]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("give --maildir TEMPLATE"), "{}", r.stderr);
    let r = run(&[&"lmtp", &"--maildir", &"/v/{user}"], b"", &[]);
    assert_eq!(r.code, 64);
    assert_eq!(
        r.stderr,
        "mdeliver lmtp: --maildir \"/v/{user}\": unknown placeholder (known: {local}, {domain}, {rcpt})\n"
    );
    let missing = t.path().join("nomap");
    let r = run(&[&"lmtp", &"--map", &missing], b"", &[]);
    assert_eq!(r.code, 75, "{}", r.stderr);
}

/// A server with `--max-sessions 1` on the unix socket `ROOT/lmtp.sock`, for the maildirs
/// `ROOT/DOMAIN/LOCAL`, once its socket exists; and the socket's path.
fn one_session_server(root: &Path) -> (std::process::Child, std::path::PathBuf) {
    server(root, &["--max-sessions", "1"])
}

/// A connection to the server's socket. The socket's file appears when it is bound, a moment
/// before the server listens on it: a refused connection is tried again (it takes no session).
fn connect(sock: &Path) -> UnixStream {
    let t0 = Instant::now();
    loop {
        match UnixStream::connect(sock) {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && t0.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.unwrap(),
        }
    }
}

/// A server on a unix socket; SIGTERM makes an idle session get 421 and the server exit 0
/// with its socket removed; sessions over --max-sessions get 421 at once.
#[test]
fn sigterm_stops_a_listening_server_in_order() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let (mut child, sock) = one_session_server(root);
    let s = connect(&sock);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, GREETING);
    w.write_all(b"LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nhello\r\n.\r\n")
        .unwrap();
    let mut replies = String::new();
    while !replies.ends_with("250 2.0.0 delivered\r\n") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "{replies}");
        replies.push_str(&line);
    }
    // A second session is over the limit.
    let mut second = String::new();
    BufReader::new(UnixStream::connect(&sock).unwrap())
        .read_line(&mut second)
        .unwrap();
    assert_eq!(second, "421 4.3.2 too many sessions; try again later\r\n");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "421 4.3.2 shutting down; try again later\r\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists(), "the socket was not removed");
    assert_eq!(names(&root.join("x.example/a/new")).len(), 1);
}

/// The ids of the server's session threads alive now (their name is `lmtp-session`).
fn session_threads(pid: u32) -> std::collections::BTreeSet<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim_end() == "lmtp-session")
                .then(|| t.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// A client that opens a connection for every message (as `smtp-source -L` does) is served by
/// the same session thread again and again, not by a new thread each time: ten sessions one
/// after the other, each storing its message, see at most three distinct session threads
/// (one, unless a connection arrives before the thread that served the last one is waiting).
/// With `--max-sessions 1` each one is accepted, so a finished session gives its place back.
#[test]
fn a_session_thread_serves_the_next_connection() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let (mut child, sock) = one_session_server(root);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..10 {
        let mut replies = String::new();
        for line in message_session(&sock, i) {
            replies.push_str(&line);
            replies.push('\n');
        }
        assert!(replies.starts_with(GREETING.trim_end()), "{replies}");
        assert!(
            replies.ends_with("250 2.0.0 delivered\n221 2.0.0 bye\n"),
            "session {i}: {replies}"
        );
        // The thread that served it goes back to wait for the next connection.
        std::thread::sleep(Duration::from_millis(200));
        seen.extend(session_threads(child.id()));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(names(&root.join("x.example/a/new")).len(), 10);
    assert!(
        (1..=3).contains(&seen.len()),
        "10 sessions one after the other ran on {} session threads: {seen:?}",
        seen.len()
    );
}

/// A session on `sock` that stores `message {i}` for `a@x.example` and quits: its replies.
fn message_session(sock: &Path, i: u32) -> Vec<String> {
    let s = connect(sock);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    write!(
        w,
        "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nmessage {i}\r\n.\r\nQUIT\r\n"
    )
    .unwrap();
    BufReader::new(s).lines().map(Result::unwrap).collect()
}

/// The paths the descriptors of process `pid` point to.
fn open_paths(pid: u32) -> Vec<std::path::PathBuf> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect()
}

/// A server keeps a maildir open between deliveries (its root unchanged for two seconds), and
/// never delivers through one the administrator changed since: a filesystem mounted over new/
/// (where the test may mount), new/ renamed aside and made again, the whole maildir moved
/// away and made again.
#[test]
fn a_maildir_kept_open_follows_what_an_administrator_does_to_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let md = root.join("x.example/a");
    make_maildir(&md);
    // Settled: a root changed in the last two seconds is not kept.
    std::thread::sleep(Duration::from_millis(2_100));
    let (child, sock) = server(root, &[]);
    let mut child = Running(child);
    let send = |i: u32| {
        let replies = message_session(&sock, i);
        assert_eq!(
            replies[replies.len() - 2],
            "250 2.0.0 delivered",
            "{replies:?}"
        );
    };
    let pid = child.0.id();
    // cur/ is held only by a maildir kept open (the group commit keeps a descriptor of one
    // new/ per filesystem for its flushes).
    let holds = |dir: &Path| open_paths(pid).iter().any(|p| p == dir);
    send(1);
    assert!(holds(&md.join("cur")), "{:?}", open_paths(pid));
    send(2);
    // A filesystem mounted over new/ (it changes nothing the root's stat shows): the kept
    // maildir is not used, and the message is not stored under the mount, unseen. (As for a
    // server that opens the maildir afresh, the link across filesystems fails: 4xx.)
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(md.join("new"))
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let replies = message_session(&sock, 5);
        let _ = Command::new("umount")
            .arg("-l")
            .arg(md.join("new"))
            .status();
        assert!(replies[replies.len() - 2].starts_with('4'), "{replies:?}");
        assert_eq!(names(&md.join("new")).len(), 2);
    }
    std::fs::rename(md.join("new"), md.join("new.off")).unwrap();
    std::fs::create_dir(md.join("new")).unwrap();
    send(3);
    // The one kept is closed, and the one opened instead not kept (its root just changed).
    assert!(!holds(&md.join("cur")), "{:?}", open_paths(pid));
    let old = root.join("x.example/a.old");
    std::fs::rename(&md, &old).unwrap();
    make_maildir(&md);
    send(4);
    stop(&mut child.0);
    let count = |d: &Path| names(d).len();
    assert_eq!(count(&old.join("new.off")), 2);
    assert_eq!(count(&old.join("new")), 1);
    assert_eq!(count(&md.join("new")), 1);
}

/// A server that has gone idle holds nothing open on a filesystem of maildirs (neither a
/// maildir kept open nor the group commit's descriptor for flushing the filesystem), so an
/// administrator can unmount it a few seconds after the last delivery without stopping the
/// server; and the server goes on delivering once it is back.
#[test]
fn an_idle_server_lets_the_maildirs_filesystem_be_unmounted() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let domain = root.join("x.example");
    std::fs::create_dir(&domain).unwrap();
    let mount = || {
        Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&domain)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mount() {
        eprintln!("skipped: cannot mount a tmpfs");
        return;
    }
    // Unmounted whatever happens.
    struct Mounted<'a>(&'a Path);
    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _mounted = Mounted(&domain);
    let md = domain.join("a");
    make_maildir(&md);
    // Settled, so that the maildir is kept open after the delivery.
    std::thread::sleep(Duration::from_millis(2_100));
    let (child, sock) = server(root, &[]);
    let mut child = Running(child);
    let umount = || {
        Command::new("umount")
            .arg(&domain)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let first = message_session(&sock, 1);
    assert_eq!(first[first.len() - 2], "250 2.0.0 delivered", "{first:?}");
    let pid = child.0.id();
    assert!(
        open_paths(pid).iter().any(|p| p.starts_with(&domain)),
        "{:?}",
        open_paths(pid)
    );
    // Busy at first; free within the idle time (5 s) and the server's tick.
    let t0 = Instant::now();
    while !umount() {
        assert!(
            t0.elapsed() < Duration::from_secs(9),
            "still busy: {:?}",
            open_paths(pid)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(t0.elapsed() > Duration::from_secs(1), "never busy");
    // Unmounted: the recipient's maildir is missing, a temporary failure.
    let gone = message_session(&sock, 2);
    assert!(gone.iter().any(|l| l.starts_with("450 4.")), "{gone:?}");
    // Back (a fresh filesystem): delivered there.
    assert!(mount());
    make_maildir(&md);
    let back = message_session(&sock, 3);
    assert_eq!(back[back.len() - 2], "250 2.0.0 delivered", "{back:?}");
    stop(&mut child.0);
    assert_eq!(names(&md.join("new")).len(), 1);
}

/// A root server writing as the maildir's owner: a maildir kept open is checked as that owner,
/// so a directory above it that the owner can no longer pass stops delivery, as it does for a
/// server that opens the maildir afresh.
#[test]
fn a_kept_maildir_is_checked_as_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let Some(t) = root_only_dir() else { return };
    let root = t.path();
    let x = root.join("x.example");
    make_maildir(&x.join("a"));
    chown("nobody:nogroup", &x.join("a"));
    let mode = |m| std::fs::set_permissions(&x, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o755);
    std::thread::sleep(Duration::from_millis(2_100));
    let (mut child, sock) = server(root, &[]);
    let first = message_session(&sock, 1);
    mode(0o700);
    let second = message_session(&sock, 2);
    mode(0o755);
    stop(&mut child);
    assert_eq!(first[first.len() - 2], "250 2.0.0 delivered", "{first:?}");
    assert!(
        second.iter().any(|l| l.starts_with("450 4.2.0")),
        "{second:?}"
    );
    assert_eq!(names(&x.join("a/new")).len(), 1);
}

/// `--quota` and `--dedup` go through the same core delivery as the one-shot path: over quota
/// is 452 4.2.2 (552 5.2.2 with `--quota-full=bounce`) for that recipient only; a message sent
/// again is acknowledged but stored once.
#[test]
fn quota_and_dedup_apply_per_recipient() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/small"));
    make_maildir(&root.join("x.example/roomy"));
    // A maildirsize in one maildir only: 10 bytes.
    std::fs::write(root.join("x.example/small/maildirsize"), "10S\n").unwrap();
    let msg = "Message-ID: <once@x.example>\r\n\r\na body longer than ten bytes\r\n.\r\n";
    let script = format!(
        "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<small@x.example>\r\nRCPT TO:<roomy@x.example>\r\n\
         DATA\r\n{msg}MAIL FROM:<s@y>\r\nRCPT TO:<roomy@x.example>\r\nDATA\r\n{msg}QUIT\r\n"
    );
    let tail = "354 send the message; end it with a line holding only a dot\r\n";
    let r = lmtp(&["--dedup"], &script, root);
    assert_eq!(
        r.stdout,
        format!(
            "{GREETING}{LHLO}250 SIZE\r\n250 2.1.0 sender ok\r\n250 2.1.5 recipient ok\r\n\
             250 2.1.5 recipient ok\r\n{tail}452 4.2.2 mailbox full\r\n250 2.0.0 delivered\r\n\
             250 2.1.0 sender ok\r\n250 2.1.5 recipient ok\r\n{tail}250 2.0.0 delivered\r\n\
             221 2.0.0 bye\r\n"
        )
    );
    assert_eq!(
        names(&root.join("x.example/roomy/new")).len(),
        1,
        "stored twice"
    );
    assert_eq!(
        names(&root.join("x.example/small/new")),
        Vec::<String>::new()
    );
    let r = lmtp(&["--quota-full", "bounce"], &script, root);
    assert!(
        r.stdout
            .contains(&format!("{tail}552 5.2.2 mailbox full\r\n")),
        "{}",
        r.stdout
    );
}

/// systemd socket activation: the listening socket comes as descriptor 3 (`LISTEN_FDS=1`),
/// here from `systemd-socket-activate`, which then runs the server in its own process.
#[test]
fn a_socket_passed_by_systemd_is_served() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-socket-activate is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let sock = root.join("activated.sock");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .arg(bin())
        .args(["lmtp", "--host", "testhost", "--maildir"])
        .arg(format!("{}/{{domain}}/{{local}}", root.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let s = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(
        b"LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
    )
    .unwrap();
    let mut all = String::new();
    let mut r = BufReader::new(s);
    while !all.ends_with("221 2.0.0 bye\r\n") {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "{all}");
        all.push_str(&line);
    }
    assert!(all.starts_with(GREETING), "{all}");
    assert!(all.contains("\r\n250 2.0.0 delivered\r\n"), "{all}");
    assert_eq!(names(&root.join("x.example/a/new")).len(), 1);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // The socket is systemd's: the server leaves it in place.
    assert!(sock.exists());
}

/// The manual of the subcommand, as a person reads it.
#[test]
fn help() {
    let r = run(&[&"lmtp", &"--help"], b"", &[]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!("lmtp_help", r.stdout);
}

/// `-c -p` creates a new domain's directory above the maildir; `-c` alone does not.
#[test]
fn create_parents_makes_a_new_domains_directory() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let script = "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<zed@new.example>\r\nDATA\r\nhi\r\n.\r\n";
    let r = lmtp(&["-c"], script, root);
    assert!(
        r.stdout.contains("450 4.2.0 mailbox unavailable"),
        "{}",
        r.stdout
    );
    let r = lmtp(&["-c", "-p"], script, root);
    assert!(
        r.stdout.ends_with("250 2.0.0 delivered\r\n"),
        "{}",
        r.stdout
    );
    assert_eq!(names(&root.join("new.example/zed/new")).len(), 1);
}

/// `chown -R SPEC PATH`, which must succeed.
fn chown(spec: &str, p: &Path) {
    let st = Command::new("chown").args(["-R", spec]).arg(p).status();
    assert!(st.unwrap().success(), "chown {spec} {}", p.display());
}

/// A fresh directory every user may enter (the owner tests' root), or `None` (the test says
/// why it is skipped) when not running as root.
fn root_only_dir() -> Option<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    if !cli_support::is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(t)
}

/// A root server's session thread stays the last maildir owner it wrote as (it switches only
/// when the owner changes), and takes the server's own identity back whenever it needs it:
/// a large message spooled into a directory only root may write, after a delivery as an
/// owner; root's own maildir after an owner's; the owner's maildir again, then one the owner
/// can no longer reach (root could), all in one session.
#[test]
fn a_session_thread_switches_identity_only_when_it_must() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(t) = root_only_dir() else { return };
    let root = t.path();
    let x = root.join("x.example");
    make_maildir(&x.join("a"));
    make_maildir(&x.join("r"));
    std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown("nobody:nogroup", &x.join("a"));
    // Behind a directory only root may pass.
    let z = root.join("z.example");
    make_maildir(&z.join("a"));
    chown("nobody:nogroup", &z.join("a"));
    std::fs::set_permissions(&z, std::fs::Permissions::from_mode(0o700)).unwrap();
    let spool = root.join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Past what a session holds in memory: spooled.
    let big = format!("{}\r\n", "x".repeat(98)).repeat(1_000);
    let tx = |to: &str, body: &str| {
        format!("MAIL FROM:<s@y>\r\nRCPT TO:<{to}>\r\nDATA\r\n{body}\r\n.\r\n")
    };
    let script = format!(
        "LHLO x\r\n{}{}{}{}{}QUIT\r\n",
        tx("a@x.example", "one"),
        tx("r@x.example", &big),
        tx("a@x.example", &big),
        tx("a@x.example", "two"),
        tx("a@z.example", "three"),
    );
    let r = lmtp(&["--spool", spool.to_str().unwrap()], &script, root);
    let delivered = r.stdout.matches("250 2.0.0 delivered\r\n").count();
    assert_eq!(delivered, 4, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "250 2.1.0 sender ok\r\n450 4.2.0 mailbox not writable: permission denied\r\n"
        ),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let owners = |md: &Path| -> Vec<u32> {
        names(&md.join("new"))
            .iter()
            .map(|n| std::fs::metadata(md.join("new").join(n)).unwrap().uid())
            .collect()
    };
    assert_eq!(owners(&x.join("a")), [65534, 65534, 65534]);
    assert_eq!(owners(&x.join("r")), [0]);
}

/// A root server looks an owner's groups up again after a while (a minute; here the testing
/// knob's second): a user taken out of the group that let it reach its maildir is refused
/// from then on, without a restart. Makes the user `mdowner`, in the group `mdownergrp`,
/// where missing.
#[test]
fn a_root_server_sees_an_owner_leave_a_group() {
    use std::os::unix::fs::PermissionsExt;
    let Some(t) = root_only_dir() else { return };
    cli_support::user_in_group("mdowner", "mdownergrp");
    let root = t.path();
    let x = root.join("x.example");
    make_maildir(&x.join("a"));
    chown("root:mdownergrp", &x);
    chown("mdowner", &x.join("a"));
    std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (child, sock) = server_env(root, &[], &[("MDELIVER_TEST_OWNER_TTL", "1")]);
    let mut child = Running(child);
    let first = message_session(&sock, 1);
    assert_eq!(first[first.len() - 2], "250 2.0.0 delivered", "{first:?}");
    let (ok, out) = cli_support::sh("gpasswd -d mdowner mdownergrp");
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(1_500));
    let second = message_session(&sock, 2);
    cli_support::sh("usermod -a -G mdownergrp mdowner");
    stop(&mut child.0);
    assert!(
        second.iter().any(|l| l.starts_with("450 4.2.0")),
        "{second:?}"
    );
    assert_eq!(names(&x.join("a/new")).len(), 1);
}

/// `--user NAME`: a root server writes the mail as that user.
#[test]
fn user_makes_root_deliver_as_that_user() {
    use std::os::unix::fs::MetadataExt;
    let Some(t) = root_only_dir() else { return };
    let root = t.path();
    let md = root.join("x.example/n");
    make_maildir(&md);
    chown("nobody", &root.join("x.example"));
    let script = "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<n@x.example>\r\nDATA\r\nhi\r\n.\r\n";
    let r = lmtp(
        &[
            "--user",
            "nobody",
            "--spool",
            md.join("tmp").to_str().unwrap(),
        ],
        script,
        root,
    );
    assert!(
        r.stdout.ends_with("250 2.0.0 delivered\r\n"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let name = names(&md.join("new")).pop().unwrap();
    let meta = std::fs::metadata(md.join("new").join(name)).unwrap();
    assert_eq!(meta.uid(), 65534);
}

/// A root server without `--user` writes each recipient's files as its maildir's owner (the
/// one-shot path's rule, per recipient, in one process): two owners in one transaction (a
/// user, and a uid with no user entry, which gets the maildir's group), root's own maildir,
/// one `-c` creates under a directory of the second owner, and a maildir whose owner cannot
/// write it (root could), which defers that recipient alone (4.2.0, after `DATA`). With identical copies
/// (`--delivered-to none`) only copies of one owner become links to one file.
#[test]
fn a_root_server_writes_each_recipients_files_as_its_maildirs_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(t) = root_only_dir() else { return };
    let root = t.path();
    let x = root.join("x.example");
    for name in ["a", "a2", "b", "r", "c"] {
        make_maildir(&x.join(name));
    }
    std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown("nobody:nogroup", &x.join("a"));
    chown("nobody:nogroup", &x.join("a2"));
    // No user has uid 64123: its maildir's group is used.
    chown("64123:64124", &x.join("b"));
    chown("nobody:nogroup", &x.join("c"));
    for d in ["tmp", "new"] {
        std::fs::set_permissions(x.join("c").join(d), std::fs::Permissions::from_mode(0o500))
            .unwrap();
    }
    let y = root.join("y.example");
    std::fs::create_dir(&y).unwrap();
    chown("64123:64124", &y);
    let owner = |md: &Path| {
        let f = only_path(md);
        let m = std::fs::metadata(&f).unwrap();
        (m.uid(), m.gid(), m.nlink())
    };

    let script = "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\n\
                  RCPT TO:<b@x.example>\r\nRCPT TO:<r@x.example>\r\nRCPT TO:<c@x.example>\r\n\
                  RCPT TO:<d@y.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let r = lmtp(&["-c"], script, root);
    let ok = "250 2.1.5 recipient ok\r\n";
    let expected = format!(
        "{GREETING}{LHLO}250 SIZE\r\n250 2.1.0 sender ok\r\n{ok}{ok}{ok}{ok}{ok}\
         354 send the message; end it with a line holding only a dot\r\n\
         250 2.0.0 delivered\r\n250 2.0.0 delivered\r\n250 2.0.0 delivered\r\n\
         450 4.2.0 mailbox not writable: permission denied\r\n250 2.0.0 delivered\r\n\
         221 2.0.0 bye\r\n"
    );
    assert_eq!(r.stdout, expected, "{}", r.stderr);
    assert!(
        r.stderr.contains("<c@x.example>: ")
            && r.stderr
                .contains("x.example/c: creating file in tmp/: permission denied"),
        "{}",
        r.stderr
    );
    assert_eq!(owner(&x.join("a")), (65534, 65534, 1));
    assert_eq!(owner(&x.join("b")), (64123, 64124, 1));
    assert_eq!(owner(&x.join("r")), (0, 0, 1));
    let d = y.join("d");
    for dir in [d.clone(), d.join("tmp"), d.join("new"), d.join("cur")] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().uid(),
            64123,
            "{}",
            dir.display()
        );
    }
    assert_eq!(owner(&d), (64123, 64124, 1));
    assert!(names(&x.join("c/new")).is_empty());
    assert!(names(&x.join("c/tmp")).is_empty());

    // Identical copies: a and a2 (one owner) share an inode; b's copy is its own.
    for md in ["a", "a2", "b"] {
        for e in std::fs::read_dir(x.join(md).join("new")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    let script = "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\n\
                  RCPT TO:<b@x.example>\r\nRCPT TO:<a2@x.example>\r\nDATA\r\nhi\r\n.\r\n";
    let r = lmtp(&["--delivered-to", "none"], script, root);
    assert!(
        r.stdout
            .ends_with("250 2.0.0 delivered\r\n".repeat(3).as_str()),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(owner(&x.join("a")), (65534, 65534, 2));
    assert_eq!(owner(&x.join("a2")), (65534, 65534, 2));
    assert_eq!(owner(&x.join("b")), (64123, 64124, 1));
    assert_eq!(
        std::fs::metadata(only_path(&x.join("a"))).unwrap().ino(),
        std::fs::metadata(only_path(&x.join("a2"))).unwrap().ino()
    );
}

/// The one file in `md`'s new/: its path.
fn only_path(md: &Path) -> std::path::PathBuf {
    let mut all: Vec<_> = std::fs::read_dir(md.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(all.len(), 1, "{}: {all:?}", md.display());
    all.pop().unwrap()
}

/// With `--delivered-to none` the recipients' copies are identical: those whose maildirs
/// share a filesystem are one inode with a link each (as Dovecot stores them), the one on
/// another filesystem (a tmpfs mounted here) its own file; every copy holds the exact bytes.
/// By default each copy carries its own Delivered-To: and is its own file.
#[test]
fn identical_copies_are_hard_links_to_one_file_per_filesystem() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir(root.join("example.org")).unwrap();
    let other = root.join("other.org");
    std::fs::create_dir(&other).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "lmtp-test"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs (the tests run as root)");
    let script = "LHLO mx.example\r\n\
         MAIL FROM:<alice@example.net>\r\n\
         RCPT TO:<bob@example.org>\r\n\
         RCPT TO:<carol@example.org>\r\n\
         RCPT TO:<erin@other.org>\r\n\
         RCPT TO:<dave@example.org>\r\n\
         DATA\r\n\
         Subject: hi\r\n\
         \r\n\
         body\r\n\
         .\r\n\
         QUIT\r\n";
    let r = lmtp(&["-c", "-v", "--delivered-to", "none"], script, root);
    let replies = format!(
        "{GREETING}{LHLO}250 SIZE\r\n\
         250 2.1.0 sender ok\r\n\
         250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n\
         354 send the message; end it with a line holding only a dot\r\n\
         250 2.0.0 delivered\r\n\
         250 2.0.0 delivered\r\n\
         250 2.0.0 delivered\r\n\
         250 2.0.0 delivered\r\n\
         221 2.0.0 bye\r\n"
    );
    let stored = |who: &str| only_path(&root.join(who));
    let bytes = "Return-Path: <alice@example.net>\nSubject: hi\n\nbody\n";
    let outcome = || {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, replies);
        let meta = |who| std::fs::metadata(stored(who)).unwrap();
        let (bob, carol, dave, erin) = (
            meta("example.org/bob"),
            meta("example.org/carol"),
            meta("example.org/dave"),
            meta("other.org/erin"),
        );
        assert_eq!((bob.ino(), bob.dev()), (carol.ino(), carol.dev()));
        assert_eq!((bob.ino(), bob.dev()), (dave.ino(), dave.dev()));
        assert_eq!(bob.nlink(), 3);
        assert_ne!(erin.dev(), bob.dev());
        assert_eq!(erin.nlink(), 1);
        for who in [
            "example.org/bob",
            "example.org/carol",
            "example.org/dave",
            "other.org/erin",
        ] {
            assert_eq!(
                std::fs::read_to_string(stored(who)).unwrap(),
                bytes,
                "{who}"
            );
        }
        assert!(
            r.stderr.contains(", 2 copies stored as hard links,"),
            "{}",
            r.stderr
        );
    };
    let caught = std::panic::catch_unwind(outcome);
    Command::new("umount").arg(&other).status().unwrap();
    if let Err(e) = caught {
        std::panic::resume_unwind(e);
    }
    // By default: each copy its own Delivered-To: and its own file.
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir(root.join("example.org")).unwrap();
    let script = script.replace("RCPT TO:<erin@other.org>\r\n", "");
    let r = lmtp(&["-c"], &script, root);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut inodes = Vec::new();
    for who in ["bob", "carol", "dave"] {
        let p = only_path(&root.join("example.org").join(who));
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.nlink(), 1);
        inodes.push(m.ino());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!(
                "Return-Path: <alice@example.net>\nDelivered-To: {who}@example.org\nSubject: hi\n\nbody\n"
            )
        );
    }
    inodes.dedup();
    assert_eq!(inodes.len(), 3);
}

/// A message is held in memory up to 64 KiB and spooled to a file beyond: both are stored
/// byte for byte, with the dot-stuffing undone across the server's buffers, and a spool
/// directory that cannot be written defers only the messages that need it.
#[test]
fn small_messages_stay_in_memory_and_large_ones_go_through_the_spool() {
    // Lines of 99 bytes and a CRLF, every seventh one dot-stuffed on the wire.
    let message = |size: usize| -> (String, Vec<u8>) {
        let (mut wire, mut stored) = (String::new(), Vec::new());
        let mut i = 0;
        while stored.len() < size {
            let line = format!("{:098}", i);
            if i % 7 == 0 {
                wire.push_str(&format!("..{line}\r\n"));
                stored.extend_from_slice(format!(".{line}\n").as_bytes());
            } else {
                wire.push_str(&format!("{line}x\r\n"));
                stored.extend_from_slice(format!("{line}x\n").as_bytes());
            }
            i += 1;
        }
        (wire, stored)
    };
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let sizes = [65_400, 65_536, 65_600, 300_000];
    for (n, _) in sizes.iter().enumerate() {
        make_maildir(&root.join(format!("x.example/m{n}")));
    }
    let missing = root.join("no-such-spool");
    for spool in [None, Some(&missing)] {
        let mut script = String::from("LHLO x\r\n");
        let mut expected = vec![];
        for (n, size) in sizes.iter().enumerate() {
            let (wire, stored) = message(*size);
            script.push_str(&format!(
                "MAIL FROM:<s@y>\r\nRCPT TO:<m{n}@x.example>\r\nDATA\r\n{wire}.\r\n"
            ));
            expected.push(stored);
        }
        script.push_str("QUIT\r\n");
        let mut extra = vec![];
        if let Some(s) = spool {
            extra = vec!["--spool", s.to_str().unwrap()];
        }
        let r = lmtp(&extra, &script, root);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The reply after each 354.
        let lines: Vec<&str> = r.stdout.lines().collect();
        let replies: Vec<&str> = (1..lines.len())
            .filter(|&i| lines[i - 1].starts_with("354 "))
            .map(|i| lines[i])
            .collect();
        assert_eq!(replies.len(), sizes.len(), "{}", r.stdout);
        for (n, stored) in expected.iter().enumerate() {
            let md = root.join(format!("x.example/m{n}"));
            let spooled = stored.len() > 65_536;
            if spool.is_some() && spooled {
                assert!(replies[n].starts_with("450 4."), "{}", r.stdout);
                assert!(r.stderr.contains("spooling the message"), "{}", r.stderr);
                assert_eq!(names(&md.join("new")).len(), 1, "only the first run's copy");
                continue;
            }
            assert_eq!(replies[n], "250 2.0.0 delivered", "{}", r.stdout);
            let mut all: Vec<Vec<u8>> = contents(&md.join("new")).into_values().collect();
            all.retain(|m| m.len() > stored.len());
            assert!(!all.is_empty());
            for m in all {
                let head = b"Return-Path: <s@y>\nDelivered-To: m";
                assert!(m.starts_with(head));
                assert!(m.ends_with(stored), "{}: {} bytes", md.display(), m.len());
                assert_eq!(m.len(), stored.len() + head.len() + "0@x.example\n".len());
            }
        }
    }
}

/// With several listening sockets, every one is served, sessions on them at the same time
/// included; SIGTERM removes both sockets and the server exits 0.
#[test]
fn every_listening_socket_is_served() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let socks = [root.join("one.sock"), root.join("two.sock")];
    let mut child = Command::new(bin())
        .args(["lmtp", "--host", "testhost", "--maildir"])
        .arg(format!("{}/{{domain}}/{{local}}", root.display()))
        .arg("--listen")
        .arg(format!("unix:{}", socks[0].display()))
        .arg("--listen")
        .arg(format!("unix:{}", socks[1].display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !socks.iter().all(|s| s.exists()) {
        assert!(t0.elapsed() < Duration::from_secs(10), "no sockets");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both sessions open at once, each on its own socket, then each sends its message.
    let conns: Vec<UnixStream> = socks.iter().map(|s| connect(s)).collect();
    let mut lines: Vec<_> = conns
        .iter()
        .map(|c| {
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            BufReader::new(c.try_clone().unwrap()).lines()
        })
        .collect();
    for l in &mut lines {
        assert_eq!(l.next().unwrap().unwrap(), GREETING.trim_end());
    }
    for (i, mut c) in conns.iter().enumerate() {
        write!(
            c,
            "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nmessage {i}\r\n.\r\nQUIT\r\n"
        )
        .unwrap();
    }
    for l in lines {
        let rest: Vec<String> = l.map(|l| l.unwrap()).collect();
        assert_eq!(
            rest[rest.len() - 2..],
            ["250 2.0.0 delivered", "221 2.0.0 bye"],
            "{rest:?}"
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(socks.iter().all(|s| !s.exists()));
    assert_eq!(names(&root.join("x.example/a/new")).len(), 2);
}

/// LMTP carries no mbox framing: a message whose first line starts with `From ` is stored
/// whole, and one that is only that line is not refused as empty.
#[test]
fn a_first_line_starting_with_from_is_the_messages_own() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let r = lmtp(
        &[],
        "LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\n\
         From here on, the body:\r\nSubject: s\r\n\r\nbody\r\n.\r\n\
         MAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nFrom the desk of Bob\r\n.\r\nQUIT\r\n",
        root,
    );
    assert_eq!(
        r.stdout.matches("250 2.0.0 delivered\r\n").count(),
        2,
        "{}",
        r.stdout
    );
    let mut stored: Vec<Vec<u8>> = contents(&root.join("x.example/a/new"))
        .into_values()
        .collect();
    stored.sort();
    let head = "Return-Path: <s@y>\nDelivered-To: a@x.example\n";
    assert_eq!(
        stored,
        [
            format!("{head}From here on, the body:\nSubject: s\n\nbody\n").into_bytes(),
            format!("{head}From the desk of Bob\n").into_bytes(),
        ]
    );
}

/// A client silent for the idle timeout inside DATA gets `421 4.4.2`, as between commands,
/// and nothing is stored.
#[test]
fn silence_inside_a_message_is_a_timeout() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_maildir(&root.join("x.example/a"));
    let (mut child, sock) = server(root, &["--idle-timeout", "1"]);
    let s = connect(&sock);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(b"LHLO x\r\nMAIL FROM:<s@y>\r\nRCPT TO:<a@x.example>\r\nDATA\r\nSubject: half\r\n")
        .unwrap();
    let mut replies = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(s), &mut replies).unwrap();
    assert!(
        replies.ends_with(
            "354 send the message; end it with a line holding only a dot\r\n\
                           421 4.4.2 timeout; closing\r\n"
        ),
        "{replies}"
    );
    assert_eq!(names(&root.join("x.example/a/new")), Vec::<String>::new());
    stop(&mut child);
}

/// A client that sends commands but never reads the replies cannot hold its session (nor a
/// shutdown) beyond the idle timeout: writing a reply times out too.
#[test]
fn a_client_that_stops_reading_does_not_hold_the_server() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (mut child, sock) = server(root, &["--idle-timeout", "1"]);
    let mut s = connect(&sock);
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Far more replies than the socket buffers hold, none of them read.
    let noops = b"NOOP\r\n".repeat(4096);
    let _ = s.write_all(b"LHLO x\r\n");
    for _ in 0..64 {
        if s.write_all(&noops).is_err() {
            break;
        }
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(0));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the server is still waiting for a client that does not read"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
}

/// A second server on the socket a running server listens on is refused and leaves it alone;
/// the first one's exit removes only its own socket file; a socket left by a killed server is
/// replaced.
#[test]
fn a_second_server_never_takes_a_live_socket() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (mut first, sock) = server(root, &[]);
    drop(connect(&sock));
    let r = run(
        &[
            &"lmtp",
            &"--maildir",
            &"/nonexistent/{local}",
            &"--listen",
            &format!("unix:{}", sock.display()),
        ],
        b"",
        &[],
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "mdeliver lmtp: --listen unix:{}: another server is listening on it (stop it first)\n",
            sock.display()
        )
    );
    // The first server still answers on it.
    let mut greeting = String::new();
    BufReader::new(connect(&sock))
        .read_line(&mut greeting)
        .unwrap();
    assert_eq!(greeting, GREETING);
    // Its file removed by hand, a second server binds a new one there: the first one's exit
    // leaves that file alone.
    std::fs::remove_file(&sock).unwrap();
    let (mut second, _) = server(root, &[]);
    stop(&mut first);
    greeting.clear();
    BufReader::new(connect(&sock))
        .read_line(&mut greeting)
        .unwrap();
    assert_eq!(
        greeting, GREETING,
        "the second server's socket is still there"
    );
    // Killed, a server leaves its socket; the next one replaces it, and removes it at exit.
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(sock.exists());
    let (mut third, _) = server(root, &[]);
    drop(connect(&sock));
    // A hangup stops it in order too (nothing to reload).
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&third),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    assert_eq!(third.wait().unwrap().code(), Some(0));
    assert!(!sock.exists(), "the third server removes its own socket");
}

/// With a low soft limit on open files, a message to many recipients (each holds its maildir
/// open until its reply) is still delivered to all: the server raises the soft limit to the
/// hard one.
#[test]
fn many_recipients_fit_under_a_low_soft_limit_on_open_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let mut script = String::from("LHLO x\r\nMAIL FROM:<s@y>\r\n");
    for i in 0..40 {
        make_maildir(&root.join(format!("x.example/u{i}")));
        script.push_str(&format!("RCPT TO:<u{i}@x.example>\r\n"));
    }
    script.push_str("DATA\r\nSubject: many\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    let template = format!("{}/{{domain}}/{{local}}", root.display());
    let out = Command::new("prlimit")
        .args(["--nofile=64:4096", "--"])
        .arg(bin())
        .args(["lmtp", "--host", "testhost", "--maildir", &template])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("250 2.0.0 delivered\r\n").count(),
        40,
        "{stdout}"
    );
    for i in 0..40 {
        assert_eq!(names(&root.join(format!("x.example/u{i}/new"))).len(), 1);
    }
}

/// A server on the unix socket `ROOT/lmtp.sock` with `extra`, once its socket exists.
fn server(root: &Path, extra: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    server_env(root, extra, &[])
}

/// [`server`] with these environment variables.
fn server_env(
    root: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, std::path::PathBuf) {
    let sock = root.join("lmtp.sock");
    let child = Command::new(bin())
        .args(["lmtp", "--host", "testhost", "--maildir"])
        .arg(format!("{}/{{domain}}/{{local}}", root.display()))
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, sock)
}

/// A server, killed if an assertion fails (it would hold the test's output open).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM, and the exit status 0.
fn stop(child: &mut std::process::Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
