//! Packaging (issue 13): `scripts/install.sh` puts the binary, the man page and the shell
//! completions where the system looks for them, and the man page reads well as `man` renders
//! it: value names in the synopsis, an EXIT STATUS section, no catch-all EXTRA section, and no
//! reference to a page that does not exist (clap's own output named mdeliver-list(1) and
//! friends, and the text cited sysexits(3), which Debian does not have). The license files the
//! declared `MIT OR Apache-2.0` needs are there.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cli_support::bin;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn install_script_puts_everything_in_place() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("usr/local");
    let out = Command::new("sh")
        .arg(Path::new(ROOT).join("scripts/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binary")
        .arg(bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (file, mode) in [
        ("bin/mdeliver", 0o755),
        ("share/man/man1/mdeliver.1", 0o644),
        ("share/bash-completion/completions/mdeliver", 0o644),
        ("share/zsh/site-functions/_mdeliver", 0o644),
        ("share/fish/vendor_completions.d/mdeliver.fish", 0o644),
    ] {
        let m = std::fs::metadata(prefix.join(file)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, mode, "{file}");
        assert!(m.len() > 100, "{file}");
    }
    // --bindir: beside mblaze's /usr/bin/mdeliver, off PATH.
    let out = Command::new("sh")
        .arg(Path::new(ROOT).join("scripts/install.sh"))
        .arg(format!("--prefix={}", prefix.display()))
        .arg(format!(
            "--bindir={}",
            prefix.join("lib/mdeliver").display()
        ))
        .arg(format!("--binary={}", bin().display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(prefix.join("lib/mdeliver/mdeliver").exists());
}

#[test]
fn man_page_as_man_renders_it() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped: man (man-db) is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let page = t.path().join("mdeliver.1");
    let roff = Command::new(bin()).arg("--generate-man").output().unwrap();
    assert!(roff.status.success());
    std::fs::write(&page, &roff.stdout).unwrap();
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with("mdeliver"))
        .collect();
    insta::assert_snapshot!("man_sections", headings.join("\n"));
    let synopsis: String = text
        .split("SYNOPSIS")
        .nth(1)
        .and_then(|s| s.split("DESCRIPTION").next())
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "[-i FILE]",
        "[--host NAME]",
        "[--quota SIZE[,COUNT]]",
        "[--dedup[=WINDOW]]",
        "[--user NAME]",
        "MAILDIR...",
        "mdeliver list [--json]",
    ] {
        assert!(synopsis.contains(want), "{want} in {synopsis}");
    }
    assert!(!text.contains("EXTRA"), "{text}");
    // A page cited as name(section) must exist here or be Postfix's (documented under an MTA).
    for cited in ["mdeliver-list(1)", "mdeliver-flag(1)", "sysexits(3)"] {
        assert!(!text.contains(cited), "{cited}");
    }
}

#[test]
fn license_files_match_the_declared_license() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"MIT OR Apache-2.0\""));
    let mit = std::fs::read_to_string(Path::new(ROOT).join("LICENSE-MIT")).unwrap();
    assert!(mit.starts_with("MIT License\n"));
    let apache = std::fs::read_to_string(Path::new(ROOT).join("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
}
