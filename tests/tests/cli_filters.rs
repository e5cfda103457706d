//! procmail and maildrop keep the rules, mdeliver stores (issue 13): the README's recipes, run
//! with Debian's procmail and maildrop (installed here if missing; skipped, saying why, when
//! that is impossible). A failing mdeliver (a maildir that does not exist) hands its 75 back
//! up through the filter, which neither falls back to another mailbox nor reports success;
//! once the maildir exists, the message is stored where the rule says.

mod cli_support;

use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::{bin, names};

fn ensure(tool: &str, package: &str) -> bool {
    let path = format!("/usr/bin/{tool}");
    if Path::new(&path).exists() {
        return true;
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 300 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq {package}' >/dev/null 2>&1"
        ))
        .status();
    let ok = Path::new(&path).exists();
    if !ok {
        eprintln!("skipped: cannot install {package}");
    }
    ok
}

/// Runs `cmd` with `message` on stdin and HOME=`home`; its exit code.
fn filter(cmd: &mut Command, home: &Path, message: &[u8]) -> i32 {
    use std::io::Write;
    let mut child = cmd
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait().unwrap().code().unwrap()
}

const RUST: &[u8] = b"Subject: about rust\nMessage-ID: <r@x>\n\nbody\n";
const OTHER: &[u8] = b"Subject: other\nMessage-ID: <o@x>\n\nbody\n";

#[test]
fn procmail_passes_75_up() {
    if !ensure("procmail", "procmail") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let rc = t.path().join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "SHELL=/bin/sh\nMD={}\nDEFAULT={}/fallback/\n\n\
             :0 w\n* ^Subject:.*rust\n| $MD --no-syslog --folder=Lists/rust -c \"{md}\"\n\n\
             :0 e\n{{\n  EXITCODE=$?\n  HOST\n}}\n\n\
             :0 w\n| $MD --no-syslog \"{md}\"\n\n\
             :0 e\n{{\n  EXITCODE=$?\n  HOST\n}}\n",
            bin().display(),
            t.path().display(),
            md = md.display()
        ),
    )
    .unwrap();
    let procmail = || {
        let mut c = Command::new("procmail");
        c.arg("-m").arg(&rc);
        c
    };
    // No maildir (and -c cannot make the folder's parent's parent): 75, nothing anywhere.
    assert_eq!(filter(&mut procmail(), t.path(), OTHER), 75);
    assert!(!t.path().join("fallback").exists());
    std::fs::create_dir(&md).unwrap();
    // The maildir exists but is incomplete for the second rule (no -c there): still 75.
    assert_eq!(filter(&mut procmail(), t.path(), OTHER), 75);
    assert!(!t.path().join("fallback").exists());
    // The first rule creates its folder; the second then finds a complete maildir.
    assert_eq!(filter(&mut procmail(), t.path(), RUST), 0);
    assert_eq!(names(&md.join(".Lists.rust/new")).len(), 1);
    assert_eq!(filter(&mut procmail(), t.path(), OTHER), 0);
    assert_eq!(names(&md.join("new")).len(), 1);
}

#[test]
fn maildrop_passes_75_up() {
    if !ensure("maildrop", "maildrop") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    let rc = t.path().join("mailfilter");
    std::fs::write(
        &rc,
        format!(
            "if (/^Subject:.*rust/)\n    to \"| {b} --no-syslog --folder=Lists/rust {md}\"\n\
             to \"| {b} --no-syslog {md}\"\n",
            b = bin().display(),
            md = md.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let maildrop = || {
        let mut c = Command::new("maildrop");
        c.arg(&rc);
        c
    };
    assert_eq!(filter(&mut maildrop(), t.path(), RUST), 75);
    assert_eq!(filter(&mut maildrop(), t.path(), OTHER), 75);
    cli_support::make_maildir(&md);
    // The folder does not exist (no -c in the rule): 75 again, nothing stored.
    assert_eq!(filter(&mut maildrop(), t.path(), RUST), 75);
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
    assert_eq!(filter(&mut maildrop(), t.path(), OTHER), 0);
    assert_eq!(names(&md.join("new")).len(), 1);
}
