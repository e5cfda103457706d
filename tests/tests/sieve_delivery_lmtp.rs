//! Per-recipient Sieve scripts in `mdeliver lmtp` (`--sieve TEMPLATE`, `--sieve-dovecot`): each
//! recipient's copy goes through its own script (or none), a reject is that recipient's 550
//! 5.7.1 and a broken script its 451 4.3.5, and the other recipients are not affected.

mod cli_support;

use std::path::Path;

use cli_support::{contents, names, run, Run};

const GREETING: &str = "220 testhost LMTP mdeliver ready\r\n";
const LHLO: &str = "250-testhost\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n";

const SESSION: &str = "LHLO mx.example\r\n\
MAIL FROM:<alice@example.net>\r\n\
RCPT TO:<bob@example.org>\r\n\
RCPT TO:<carol@example.org>\r\n\
RCPT TO:<dave@example.org>\r\n\
RCPT TO:<erin@example.org>\r\n\
DATA\r\n\
Subject: lists\r\n\
\r\n\
hello\r\n\
.\r\n\
QUIT\r\n";

/// The message files under `md` (INBOX and folders): (folder, dir) of each.
fn stored(md: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut dirs = vec![(String::new(), md.to_owned())];
    for n in names(md) {
        if n.starts_with('.') && md.join(&n).is_dir() {
            dirs.push((n.clone(), md.join(&n)));
        }
    }
    for (f, p) in dirs {
        for d in ["new", "cur"] {
            for _ in contents(&p.join(d)) {
                v.push((f.clone(), d.to_string()));
            }
        }
    }
    v.sort();
    v
}

fn replies() -> String {
    format!(
        "{GREETING}{LHLO}250 SIZE\r\n\
         250 2.1.0 sender ok\r\n\
         250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n\
         354 send the message; end it with a line holding only a dot\r\n\
         250 2.0.0 delivered\r\n\
         550 5.7.1 not wanted\r\n\
         451 4.3.5 the Sieve script {{SCRIPT}}:1:1: unknown command\r\n\
         250 2.0.0 delivered\r\n\
         221 2.0.0 bye\r\n"
    )
}

/// bob files into a folder, carol rejects, dave's script is broken, erin has none.
fn scripts(script_of: impl Fn(&str) -> std::path::PathBuf) {
    std::fs::write(
        script_of("bob"),
        "require [\"fileinto\", \"mailbox\"]; fileinto :create \"Lists\";",
    )
    .unwrap();
    std::fs::write(
        script_of("carol"),
        "require \"reject\"; reject \"not wanted\";",
    )
    .unwrap();
    std::fs::write(script_of("dave"), "filinto \"x\";").unwrap();
}

#[test]
fn a_script_template_filters_each_recipient_on_its_own() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::create_dir_all(root.join("example.org")).unwrap();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    scripts(|u| root.join("scripts").join(format!("{u}.sieve")));
    let maildirs = format!("{}/{{domain}}/{{local}}", root.display());
    let sieve = format!("{}/scripts/{{local}}.sieve", root.display());
    let r = server(&maildirs, &[&"--sieve", &sieve], SESSION);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dave = root.join("scripts/dave.sieve");
    let want = replies().replace("{SCRIPT}", &dave.display().to_string());
    assert_eq!(r.stdout, want, "{}", r.stderr);
    let md = |u: &str| root.join("example.org").join(u);
    assert_eq!(stored(&md("bob")), [(".Lists".into(), "new".into())]);
    assert_eq!(stored(&md("carol")), Vec::<(String, String)>::new());
    assert_eq!(stored(&md("dave")), Vec::<(String, String)>::new());
    assert_eq!(stored(&md("erin")), [(String::new(), "new".into())]);
}

#[test]
fn the_dovecot_convention_reads_the_script_beside_the_maildir() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for u in ["bob", "carol", "dave", "erin"] {
        std::fs::create_dir_all(root.join(u)).unwrap();
    }
    scripts(|u| root.join(u).join(".dovecot.sieve"));
    let r = dovecot_server(root, &[], SESSION);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dave = root.join("dave/.dovecot.sieve");
    let want = replies().replace("{SCRIPT}", &dave.display().to_string());
    assert_eq!(r.stdout, want, "{}", r.stderr);
    let md = |u: &str| root.join(u).join("Maildir");
    assert_eq!(stored(&md("bob")), [(".Lists".into(), "new".into())]);
    assert_eq!(stored(&md("erin")), [(String::new(), "new".into())]);
}

/// `mdeliver lmtp --host testhost -c --maildir MAILDIRS EXTRA...` serving `session` on
/// standard input and output.
fn server(maildirs: &str, extra: &[&dyn AsRef<std::ffi::OsStr>], session: &str) -> Run {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"lmtp",
        &"--host",
        &"testhost",
        &"-c",
        &"--maildir",
        &maildirs,
    ];
    args.extend_from_slice(extra);
    run(&args, session.as_bytes(), &[])
}

/// [`server`] for the maildirs `ROOT/{local}/Maildir`, with `--sieve-dovecot EXTRA...`.
fn dovecot_server(root: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>], session: &str) -> Run {
    let maildirs = format!("{}/{{local}}/Maildir", root.display());
    server(
        &maildirs,
        &[&[&"--sieve-dovecot" as _], extra].concat(),
        session,
    )
}

/// Writes `text` to `path` as a program anyone may run.
fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

/// The number after `label` in the server's `group commit:` summary line.
fn counter(stderr: &str, label: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("group commit:"))
        .unwrap_or_else(|| panic!("no group commit summary in {stderr}"));
    let at = line
        .find(label)
        .unwrap_or_else(|| panic!("{label}: {line}"));
    let number = line[..at].trim_end().rsplit(' ').next().unwrap();
    number.parse().unwrap_or_else(|_| panic!("{label}: {line}"))
}

/// Sieve recipients are delivered inside the server: it executes no program (no child
/// `mdeliver --sieve`, traced with `strace -f`), and their copies' flushes are requests to
/// the server's one group commit (two each: the file's data, then its name), where the
/// flushes of concurrent deliveries are shared.
#[test]
fn sieve_recipients_are_delivered_in_the_server_through_its_group_commit() {
    if !cli_support::strace_installed() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for u in ["bob", "carol"] {
        std::fs::create_dir_all(root.join(u)).unwrap();
    }
    std::fs::write(
        root.join("bob/.dovecot.sieve"),
        "require [\"fileinto\", \"mailbox\"]; fileinto :create \"Lists\";",
    )
    .unwrap();
    std::fs::write(root.join("carol/.dovecot.sieve"), "keep;").unwrap();
    let session = "LHLO mx.example\r\nMAIL FROM:<alice@example.net>\r\n\
        RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n\
        Subject: lists\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let trace = root.join("strace.txt");
    let maildirs = format!("{}/{{local}}/Maildir", root.display());
    let mut child = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve,execveat", "-o"])
        .arg(&trace)
        .arg(cli_support::bin())
        .args(["lmtp", "-v", "--host", "testhost", "-c", "--sieve-dovecot"])
        .args(["--maildir", &maildirs, "--spool"])
        .arg(root)
        .env_remove("MDELIVER_DISABLE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), session.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.ends_with("250 2.0.0 delivered\r\n250 2.0.0 delivered\r\n221 2.0.0 bye\r\n"),
        "{stdout}{stderr}"
    );
    let md = |u: &str| root.join(u).join("Maildir");
    assert_eq!(stored(&md("bob")), [(".Lists".into(), "new".into())]);
    assert_eq!(stored(&md("carol")), [(String::new(), "new".into())]);
    let traced = std::fs::read_to_string(&trace).unwrap();
    let execs: Vec<&str> = traced.lines().filter(|l| l.contains("execve")).collect();
    assert_eq!(
        execs.len(),
        1,
        "only strace's start of the server: {traced}"
    );
    assert!(counter(&stderr, "flush requests") >= 4, "{stderr}");
}

/// A redirect goes through `--sendmail` from inside the server, with the envelope sender and
/// the message as received; what sendmail prints on its standard output never reaches the
/// LMTP client (on standard output here); a sendmail that fails defers that recipient alone.
#[test]
fn a_redirect_goes_through_sendmail_and_its_output_stays_off_the_connection() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for (u, to) in [("bob", "dave"), ("carol", "down")] {
        std::fs::create_dir_all(root.join(u)).unwrap();
        let script = format!("require \"copy\"; redirect :copy \"{to}@example.net\";");
        std::fs::write(root.join(u).join(".dovecot.sieve"), script).unwrap();
    }
    let sendmail = root.join("sendmail");
    let d = root.display();
    executable(
        &sendmail,
        &format!(
            "#!/bin/sh\necho 'sendmail chatter'\n\
             [ \"$5\" = down@example.net ] && exit 75\n\
             printf '%s\\n' \"$@\" > {d}/sent.argv\ncat > {d}/sent.stdin\n"
        ),
    );
    let session = "LHLO mx.example\r\nMAIL FROM:<alice@example.net>\r\n\
        RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n\
        Subject: lists\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let r = dovecot_server(root, &[&"--sendmail", &sendmail], session);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = format!(
        "{GREETING}{LHLO}250 SIZE\r\n250 2.1.0 sender ok\r\n250 2.1.5 recipient ok\r\n\
         250 2.1.5 recipient ok\r\n354 send the message; end it with a line holding only a dot\r\n\
         250 2.0.0 delivered\r\n"
    );
    assert!(r.stdout.starts_with(&want), "{}{}", r.stdout, r.stderr);
    let carol = r.stdout[want.len()..]
        .strip_suffix("221 2.0.0 bye\r\n")
        .unwrap();
    assert_eq!(
        carol, "451 4.3.0 mail system error: input/output error\r\n",
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("<carol@example.org>: redirect to down@example.net: "));
    let argv = std::fs::read_to_string(root.join("sent.argv")).unwrap();
    assert_eq!(argv, "-i\n-f\nalice@example.net\n--\ndave@example.net\n");
    // The message as received, under bob's Delivered-To (loop control).
    let sent = std::fs::read_to_string(root.join("sent.stdin")).unwrap();
    assert_eq!(
        sent,
        "Delivered-To: bob@example.org\nSubject: lists\n\nhello\n"
    );
    assert_eq!(
        stored(&root.join("bob/Maildir")),
        [(String::new(), "new".into())]
    );
    // Redirected back to bob (by dave, say): a loop, refused rather than redirected again.
    let session = format!(
        "LHLO mx.example\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\n\
         DATA\r\n{}.\r\nQUIT\r\n",
        sent.replace('\n', "\r\n")
    );
    std::fs::remove_file(root.join("sent.stdin")).unwrap();
    let r = dovecot_server(root, &[&"--sendmail", &sendmail], &session);
    assert!(
        r.stdout
            .contains("554 5.4.6 mail forwarding loop for bob@example.org\r\n"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!root.join("sent.stdin").exists(), "redirected again");
}

/// Run as root, the server delivers a Sieve recipient as its maildir's owner, and the
/// sendmail it starts for a redirect runs as that owner too (a thread's filesystem ids do
/// not survive `exec`, so the child is given the owner's uid and gid itself).
#[test]
fn a_redirect_from_a_recipient_owned_by_a_user_runs_sendmail_as_that_user() {
    if !cli_support::is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let mode = |p: &Path, m: u32| {
        let mut perm = std::fs::metadata(p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, m);
        std::fs::set_permissions(p, perm).unwrap();
    };
    mode(root, 0o755);
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    mode(&out, 0o777);
    // A uid with no user entry: the server takes the maildir's group with it.
    let (uid, gid) = (4242, 4243);
    let bob = root.join("bob");
    std::fs::create_dir(&bob).unwrap();
    std::fs::write(bob.join(".dovecot.sieve"), "redirect \"dave@example.net\";").unwrap();
    std::os::unix::fs::chown(&bob, Some(uid), Some(gid)).unwrap();
    let sendmail = root.join("sendmail");
    let o = out.display();
    executable(
        &sendmail,
        &format!("#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G)\" > {o}/ids\ncat > /dev/null\n"),
    );
    let session = "LHLO mx.example\r\nMAIL FROM:<alice@example.net>\r\n\
        RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let r = dovecot_server(root, &[&"--sendmail", &sendmail], session);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .ends_with("250 2.0.0 delivered\r\n221 2.0.0 bye\r\n"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let ids = std::fs::read_to_string(out.join("ids")).unwrap();
    assert_eq!(ids, format!("{uid} {gid} {gid}\n"), "{}", r.stderr);
}

/// The sendmail a root server starts for a recipient owned by a user has that user's
/// supplementary groups too (a sendmail only a group may run works as in a one-shot run).
/// Makes the user `mdsieve`, in the group `mdsievegrp`, where missing.
#[test]
fn a_redirects_sendmail_has_the_owners_supplementary_groups() {
    use std::os::unix::fs::PermissionsExt;
    if !cli_support::is_root() {
        return;
    }
    let group = cli_support::user_in_group("mdsieve", "mdsievegrp");
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(root, 0o755).unwrap();
    let bob = root.join("bob");
    std::fs::create_dir(&bob).unwrap();
    std::fs::write(bob.join(".dovecot.sieve"), "redirect \"dave@example.net\";").unwrap();
    let (ok, out) = cli_support::sh(&format!("chown -R mdsieve {}", bob.display()));
    assert!(ok, "{out}");
    // Only the group may run it.
    let sendmail = root.join("sendmail");
    let o = root.display();
    executable(
        &sendmail,
        &format!("#!/bin/sh\nid -G > {o}/groups\ncat > /dev/null\n"),
    );
    std::os::unix::fs::chown(&sendmail, Some(0), Some(group)).unwrap();
    mode(&sendmail, 0o750).unwrap();
    std::fs::write(root.join("groups"), "").unwrap();
    mode(&root.join("groups"), 0o666).unwrap();
    let session = "LHLO mx.example\r\nMAIL FROM:<alice@example.net>\r\n\
        RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let r = dovecot_server(root, &[&"--sendmail", &sendmail], session);
    assert!(
        r.stdout
            .ends_with("250 2.0.0 delivered\r\n221 2.0.0 bye\r\n"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let groups = std::fs::read_to_string(root.join("groups")).unwrap();
    assert!(
        groups.split_whitespace().any(|g| g == group.to_string()),
        "{groups:?}"
    );
}

/// A Sieve recipient's failure is answered with the basic code every other recipient's
/// failure of that status gets: over its quota, `452 4.2.2` for both.
#[test]
fn a_sieve_recipient_over_its_quota_gets_the_reply_of_any_recipient_over_its_quota() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for u in ["bob", "carol"] {
        std::fs::create_dir_all(root.join(u)).unwrap();
    }
    std::fs::write(root.join("bob/.dovecot.sieve"), "keep;").unwrap();
    let session = "LHLO mx.example\r\nMAIL FROM:<alice@example.net>\r\n\
        RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n\
        Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let r = dovecot_server(root, &[&"--quota", &"10"], session);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.ends_with(
            "354 send the message; end it with a line holding only a dot\r\n\
             452 4.2.2 mailbox full\r\n452 4.2.2 mailbox full\r\n221 2.0.0 bye\r\n"
        ),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
