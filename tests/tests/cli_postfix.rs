//! End to end through a real Postfix (Debian's `postfix` package, installed here if missing):
//! a private Postfix instance (own config, queue and `maillog_file` in a temporary directory,
//! SMTP on a free loopback port only, everything else discarded) delivers to a local user
//! through `mailbox_command = mdeliver --from-env ...`, and to a virtual domain through a
//! pipe(8) transport (`flags=DRO ... argv=mdeliver --delivered-to=${recipient} ...`). Mail is sent over SMTP; the checks read
//! the stored messages and Postfix's own log (`dsn=`, `status=`).
//!
//! Checked: the stored message has no `From ` line and exactly one `Return-Path`,
//! `X-Original-To` and `Delivered-To`; every failure kind defers or bounces with the status
//! mdeliver printed (missing maildir 4.2.0, unwritable maildir 4.2.0, over quota 4.2.2 or
//! 5.2.2, our loop 5.4.6), Postfix's own loop check bounces before mdeliver runs; deferred
//! mail is stored exactly once after the cause is fixed and the queue flushed; with --dedup
//! a message sent twice is stored once, and a delivery SIGKILLed between publish and index
//! commit (testing knob) is deferred by Postfix and not stored again by the retry.
//!
//! Needs root (Postfix runs the command as the recipient). Skips, saying why, when Postfix
//! cannot be installed or started. Every wait is bounded.

mod cli_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli_support::{bin, ensure_postfix, is_root, names, sh};

const USER: &str = "mdeliver-e2e";
const DOMAIN: &str = "test.local";
const PIPE_DOMAIN: &str = "pipe.test";

/// A private Postfix instance; stopped when dropped.
struct Postfix {
    dir: PathBuf,
    port: u16,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "postfix -c {}/conf stop >/dev/null 2>&1",
            self.dir.display()
        ));
        // The master exits asynchronously; give it a moment before removing its queue.
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Postfix {
    fn conf(&self) -> String {
        format!("{}/conf", self.dir.display())
    }

    fn maildir(&self) -> PathBuf {
        self.dir.join("home/Maildir")
    }

    fn start() -> Result<Postfix, String> {
        ensure_postfix()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("mdeliver-postfix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["conf", "queue", "data", "home"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pf = Postfix { dir, port };
        let d = pf.dir.display().to_string();
        let (exists, _) = sh(&format!("id -u {USER}"));
        let (ok, out) = if exists {
            sh(&format!("usermod -d {d}/home {USER}"))
        } else {
            sh(&format!(
                "useradd -M -d {d}/home -s /bin/sh {USER} || adduser --system --no-create-home \
                 --home {d}/home --shell /bin/sh {USER}"
            ))
        };
        if !ok {
            return Err(format!("cannot create user {USER}: {out}"));
        }
        sh(&format!("chown {USER} {d}/home && chown postfix {d}/data"));
        std::fs::copy(bin(), pf.dir.join("mdeliver")).unwrap();
        pf.set_opts("");
        pf.set_envs("");
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .map_err(|e| format!("no /etc/postfix/master.cf: {e}"))?;
        // SMTP on our loopback port only; nothing chrooted (the queue is ours).
        let mut m = String::new();
        for line in master.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with('#') || line.starts_with(' ') || fields.len() < 8 {
                m.push_str(line);
            } else if fields[0] == "smtp" && fields[1] == "inet" {
                m.push_str(&format!("127.0.0.1:{port} inet n - n - - smtpd"));
            } else if fields[1] == "inet" {
                continue;
            } else {
                let mut f = fields.clone();
                f[4] = "n";
                m.push_str(&f.join(" "));
            }
            m.push('\n');
        }
        // A pipe(8) transport for the virtual domain (flags=DRO: Postfix prepends
        // Delivered-To, Return-Path and X-Original-To itself).
        m.push_str(&format!(
            "mdpipe unix - n n - - pipe\n  flags=DRO user={USER} argv={d}/mdeliver \
             --delivered-to=${{recipient}} {d}/home/PipeMaildir\n"
        ));
        std::fs::write(pf.dir.join("conf/master.cf"), m).unwrap();
        let main = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination = {DOMAIN}
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = /var, /tmp, {d}
maillog_file = {d}/maillog
alias_maps =
alias_database =
biff = no
default_transport = discard
relay_transport = discard
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
mailbox_command = exec env $(cat {d}/envs) {d}/mdeliver --from-env $(cat {d}/opts) {d}/home/Maildir
virtual_mailbox_domains = {PIPE_DOMAIN}
virtual_mailbox_maps = static:ok
virtual_transport = mdpipe
mdpipe_destination_recipient_limit = 1
"
        );
        std::fs::write(pf.dir.join("conf/main.cf"), main).unwrap();
        let (ok, out) = sh(&format!(
            "postfix -c {d}/conf check 2>&1; postfix -c {d}/conf start 2>&1"
        ));
        if !ok {
            let log = std::fs::read_to_string(pf.dir.join("maillog")).unwrap_or_default();
            return Err(format!("cannot start postfix: {out}{log}"));
        }
        // Ready when SMTP answers.
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                return Err("postfix did not open its SMTP port within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(pf)
    }

    fn set_opts(&self, opts: &str) {
        self.set("opts", opts);
    }

    /// Environment assignments for the command (the testing knobs).
    fn set_envs(&self, envs: &str) {
        self.set("envs", envs);
    }

    fn set(&self, file: &str, text: &str) {
        let p = self.dir.join(file);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Sends `body` (header and body, LF line ends) from `from` to the test user; returns the
    /// queue id.
    fn send(&self, from: &str, body: &str) -> String {
        self.send_to(from, &format!("{USER}@{DOMAIN}"), body)
    }

    /// [`Postfix::send`] to `to`.
    fn send_to(&self, from: &str, to: &str, body: &str) -> String {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        // The last line of a (possibly multi-line) reply.
        let mut reply = || loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            assert!(l.len() >= 4, "SMTP reply: {l:?}");
            if l.as_bytes()[3] == b' ' {
                break l;
            }
        };
        let mut cmd = |c: &str, want: &str, reply: &mut dyn FnMut() -> String| {
            if !c.is_empty() {
                w.write_all(c.as_bytes()).unwrap();
            }
            let l = reply();
            assert!(l.starts_with(want), "{c:?} → {l:?}");
            l
        };
        cmd("", "220", &mut reply);
        cmd("HELO client.test\r\n", "250", &mut reply);
        cmd(&format!("MAIL FROM:<{from}>\r\n"), "250", &mut reply);
        cmd(&format!("RCPT TO:<{to}>\r\n"), "250", &mut reply);
        cmd("DATA\r\n", "354", &mut reply);
        let data = body.replace('\n', "\r\n") + ".\r\n";
        let l = cmd(&data, "250", &mut reply);
        cmd("QUIT\r\n", "221", &mut reply);
        l.trim_end()
            .rsplit(' ')
            .next()
            .expect("queue id")
            .to_owned()
    }

    /// Waits (bounded) for the log line of `id`'s delivery with `status=<status>`; returns it.
    fn wait(&self, id: &str, status: &str, skip: usize) -> String {
        let t = Instant::now();
        loop {
            let log = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
            let hits: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&format!("{id}: to=<")) && l.contains(" status="))
                .collect();
            if let Some(l) = hits.get(skip) {
                assert!(
                    l.contains(&format!("status={status}")),
                    "{id}: wanted status={status}, got: {l}\nall: {hits:#?}"
                );
                return (*l).to_owned();
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{id}: no delivery attempt logged within 30 s\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn flush(&self) {
        let (ok, out) = sh(&format!("postqueue -c {} -f", self.conf()));
        assert!(ok, "postqueue -f: {out}");
    }

    fn stored(&self) -> Vec<String> {
        let new = self.maildir().join("new");
        if !new.exists() {
            return Vec::new();
        }
        names(&new)
            .into_iter()
            .map(|n| std::fs::read_to_string(new.join(n)).unwrap())
            .collect()
    }
}

fn make_user_maildir(md: &Path) {
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    let (ok, out) = sh(&format!("chown -R {USER} {}", md.display()));
    assert!(ok, "{out}");
}

fn count(msg: &str, field: &str) -> usize {
    let header = msg.split("\n\n").next().unwrap();
    header
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", field.to_ascii_lowercase()))
        })
        .count()
}

fn with_subject<'a>(stored: &'a [String], subject: &str) -> Vec<&'a String> {
    stored
        .iter()
        .filter(|m| m.contains(&format!("\nSubject: {subject}\n")))
        .collect()
}

#[test]
fn postfix_mailbox_command_end_to_end() {
    if !is_root() {
        eprintln!("skipped: the Postfix test needs root (Postfix runs the command as the user)");
        return;
    }
    let pf = match Postfix::start() {
        Ok(pf) => pf,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let md = pf.maildir();
    let msg = |subject: &str, extra: &str| {
        format!(
            "{extra}Subject: {subject}\nMessage-ID: <{subject}@client.test>\n\nbody of {subject}\n"
        )
    };

    // 1. No maildir yet (no -c): deferred with mdeliver's 4.2.0; after it is created and the
    // queue flushed, stored exactly once.
    let id = pf.send("alice@example.org", &msg("missing", ""));
    let l = pf.wait(&id, "deferred", 0);
    assert!(
        l.contains("dsn=4.2.0") && l.contains("mailbox unavailable"),
        "{l}"
    );
    make_user_maildir(&md);
    pf.flush();
    pf.wait(&id, "sent", 1);
    let stored = pf.stored();
    let m = with_subject(&stored, "missing");
    assert_eq!(m.len(), 1);
    // Postfix's From_ line is not stored; its trace fields are not duplicated.
    let m = m[0];
    assert!(!m.starts_with("From "), "{m}");
    assert!(m.starts_with("Return-Path: <alice@example.org>\n"), "{m}");
    for f in ["Return-Path", "X-Original-To", "Delivered-To"] {
        assert_eq!(count(m, f), 1, "{f} in {m}");
    }
    assert!(
        m.contains(&format!("\nDelivered-To: {USER}@{DOMAIN}\n")),
        "{m}"
    );

    // 2. Unwritable maildir: deferred (4.2.0), then delivered once when fixed.
    std::fs::set_permissions(md.join("tmp"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(md.join("new"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let id = pf.send("alice@example.org", &msg("perm", ""));
    let l = pf.wait(&id, "deferred", 0);
    assert!(l.contains("dsn=4.2.0") && l.contains("not writable"), "{l}");
    std::fs::set_permissions(md.join("tmp"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(md.join("new"), std::fs::Permissions::from_mode(0o755)).unwrap();
    pf.flush();
    pf.wait(&id, "sent", 1);
    assert_eq!(with_subject(&pf.stored(), "perm").len(), 1);

    // 3. Over quota, deferring (default): 4.2.2; raised quota + flush: stored once.
    pf.set_opts("--quota=100");
    let id = pf.send("alice@example.org", &msg("quota", ""));
    let l = pf.wait(&id, "deferred", 0);
    assert!(l.contains("dsn=4.2.2") && l.contains("mailbox full"), "{l}");
    pf.set_opts("--quota=10M");
    pf.flush();
    pf.wait(&id, "sent", 1);
    assert_eq!(with_subject(&pf.stored(), "quota").len(), 1);

    // 4. Over quota, bouncing: 5.2.2, nothing stored.
    pf.set_opts("--quota=100 --quota-full=bounce");
    let id = pf.send("alice@example.org", &msg("bounce", ""));
    let l = pf.wait(&id, "bounced", 0);
    assert!(l.contains("dsn=5.2.2") && l.contains("mailbox full"), "{l}");
    assert!(with_subject(&pf.stored(), "bounce").is_empty());
    // --quota replaced the definition in maildirsize; without it, the file's would apply.
    std::fs::remove_file(md.join("maildirsize")).unwrap();
    pf.set_opts("");

    // 5. A loop Postfix sees (Delivered-To: the recipient): Postfix bounces it itself, before
    // running mdeliver.
    let id = pf.send(
        "alice@example.org",
        &msg("pfloop", &format!("Delivered-To: {USER}@{DOMAIN}\n")),
    );
    let l = pf.wait(&id, "bounced", 0);
    assert!(l.contains("mail forwarding loop"), "{l}");
    assert!(with_subject(&pf.stored(), "pfloop").is_empty());

    // 6. A loop only mdeliver sees (its --delivered-to differs from Postfix's recipient):
    // mdeliver's 5.4.6 status line decides, and the message bounces.
    pf.set_opts("--delivered-to=archive@example.org");
    let id = pf.send(
        "alice@example.org",
        &msg("ourloop", "Delivered-To: archive@example.org\n"),
    );
    let l = pf.wait(&id, "bounced", 0);
    assert!(
        l.contains("dsn=5.4.6") && l.contains("mail forwarding loop for archive@example.org"),
        "{l}"
    );
    assert!(with_subject(&pf.stored(), "ourloop").is_empty());

    // 7. --dedup: the same message sent twice is stored once (the second exits 0: sent).
    pf.set_opts("--dedup");
    let a = pf.send("alice@example.org", &msg("twice", ""));
    pf.wait(&a, "sent", 0);
    let b = pf.send("alice@example.org", &msg("twice", ""));
    pf.wait(&b, "sent", 0);
    assert_eq!(with_subject(&pf.stored(), "twice").len(), 1);

    // 8. Exactly once across a crash between our publish and the index commit: mdeliver is
    // SIGKILLed there (testing knob), Postfix defers ("Command died with signal 9": that
    // needs the `exec` in mailbox_command; through a shell that waits, Postfix sees exit
    // status 137 and bounces), the
    // retry after the (shortened) lease finds the published file by its recorded intent and
    // exits 0 without storing it again.
    pf.set_envs("MDELIVER_TEST_KILL=before-commit MDELIVER_TEST_DEDUP_LEASE=1");
    let id = pf.send("alice@example.org", &msg("crash", ""));
    let l = pf.wait(&id, "deferred", 0);
    assert!(l.contains("signal 9"), "{l}");
    assert_eq!(
        with_subject(&pf.stored(), "crash").len(),
        1,
        "published before the kill"
    );
    pf.set_envs("MDELIVER_TEST_DEDUP_LEASE=1");
    std::thread::sleep(Duration::from_millis(2500));
    pf.flush();
    pf.wait(&id, "sent", 1);
    assert_eq!(
        with_subject(&pf.stored(), "crash").len(),
        1,
        "stored exactly once"
    );
    pf.set_envs("");

    // Nothing left behind in tmp/.
    assert!(names(&md.join("tmp")).is_empty());

    // 9. The pipe(8) transport (virtual domain, flags=DRO): missing maildir defers with our
    // 4.2.0; created and flushed, stored once, with Postfix's fields not duplicated.
    let pmd = pf.dir.join("home/PipeMaildir");
    let to = format!("carol@{PIPE_DOMAIN}");
    let id = pf.send_to("alice@example.org", &to, &msg("pipe", ""));
    let l = pf.wait(&id, "deferred", 0);
    assert!(
        l.contains("dsn=4.2.0") && l.contains("mailbox unavailable"),
        "{l}"
    );
    make_user_maildir(&pmd);
    pf.flush();
    pf.wait(&id, "sent", 1);
    let stored: Vec<String> = names(&pmd.join("new"))
        .into_iter()
        .map(|n| std::fs::read_to_string(pmd.join("new").join(n)).unwrap())
        .collect();
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert!(
        m.starts_with(
            "Return-Path: <alice@example.org>\nX-Original-To: carol@pipe.test\n\
             Delivered-To: carol@pipe.test\nReceived: "
        ),
        "{m}"
    );
    for f in ["Return-Path", "X-Original-To", "Delivered-To"] {
        assert_eq!(count(m, f), 1, "{f} in {m}");
    }

    // 10. A typo in the command line (issue 13): before, mdeliver exited 64 and Postfix
    // bounced every message; now it defers with mdeliver's 4.3.5 (clap's "did you mean" tip in
    // the log), and the message is stored once after the fix. With --strict-exit the precise
    // 64 still bounces (Postfix's 5.3.0), as every typo did before.
    pf.set_opts("--crate");
    let id = pf.send("alice@example.org", &msg("typo", ""));
    let l = pf.wait(&id, "deferred", 0);
    assert!(
        l.contains("dsn=4.3.5") && l.contains("mdeliver is misconfigured"),
        "{l}"
    );
    assert!(l.contains("--create"), "the hint reaches the log: {l}");
    pf.set_opts("");
    pf.flush();
    pf.wait(&id, "sent", 1);
    assert_eq!(with_subject(&pf.stored(), "typo").len(), 1);
    pf.set_opts("--strict-exit --crate");
    let id = pf.send("alice@example.org", &msg("stricttypo", ""));
    let l = pf.wait(&id, "bounced", 0);
    assert!(l.contains("dsn=5.3.0"), "{l}");
    pf.set_opts("");
}
