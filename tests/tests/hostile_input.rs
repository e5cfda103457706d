//! Hostile input through the real `mdeliver` binary: huge messages and lines streamed from a
//! generator process through a pipe (peak memory measured from `/proc/<pid>/status` VmHWM),
//! awkward bytes, and inputs that are not messages at all (stdin closed, a directory or
//! `/dev/zero` as `--input`).
//!
//! Sizes: the full 2 GiB message and 1 GiB line (a few seconds each: the binary streams at
//! pipe speed); `MDELIVER_HOSTILE_SMALL=1` reduces them to 256 MiB and 128 MiB for a machine
//! short of disk space (the files are written to the temporary directory).

mod cli_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cli_support::*;

/// Peak resident memory allowed for a delivery, whatever the message size.
const RSS_LIMIT_KB: u64 = 16 * 1024;

fn full() -> bool {
    std::env::var_os("MDELIVER_HOSTILE_SMALL").is_none_or(|v| v != "1")
}

/// `VmHWM` (peak resident set) of a process, in KiB, while it runs.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a streamed delivery did.
struct Streamed {
    code: i32,
    stdout: String,
    stderr: String,
    peak_kb: u64,
}

/// Runs `mdeliver -v --no-fsync <md>` with `total` bytes of repeated `chunk` written into its
/// stdin by a generator thread (nothing is staged on disk), polling its VmHWM meanwhile.
fn stream_into(md: &Path, total: u64, chunk: &[u8]) -> Streamed {
    let mut child = Command::new(bin())
        .arg("-v")
        .arg("--no-fsync")
        .arg(md)
        .env_remove("MDELIVER_DISABLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mdeliver");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let data = chunk.to_vec();
    let writer = std::thread::spawn(move || {
        let mut left = total;
        while left > 0 {
            let n = left.min(data.len() as u64) as usize;
            if stdin.write_all(&data[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
    });
    let done = Arc::new(AtomicBool::new(false));
    let poll_done = done.clone();
    let poller = std::thread::spawn(move || {
        let mut peak = 0;
        while !poll_done.load(Ordering::Relaxed) {
            if let Some(kb) = vm_hwm_kb(pid) {
                peak = peak.max(kb);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let peak_kb = poller.join().unwrap();
    Streamed {
        code: out.status.code().expect("exited by signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_kb,
    }
}

/// Checks that `path` holds `total` bytes of repeated `chunk`, reading it back in chunk-sized
/// pieces (no hashing: plain comparisons stay fast in a debug build).
fn assert_repeated(path: &Path, total: u64, chunk: &[u8]) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.len(), total, "delivered size");
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; chunk.len()];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).unwrap();
        assert!(
            buf[..n] == chunk[..n],
            "content differs near offset {}",
            total - left
        );
        left -= n as u64;
    }
}

fn big_case(name: &str, total: u64, chunk: &[u8]) {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let r = stream_into(&md, total, chunk);
    assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    let path = std::path::PathBuf::from(r.stdout.trim_end());
    assert!(path.starts_with(md.join("new")), "{}", r.stdout);
    assert_repeated(&path, total, chunk);
    assert_eq!(names(&md.join("tmp")), Vec::<String>::new());
    eprintln!(
        "{name}: {} MiB delivered, peak RSS (VmHWM) {} KiB",
        total >> 20,
        r.peak_kb
    );
    assert!(r.peak_kb > 0, "{name}: VmHWM was never read");
    assert!(
        r.peak_kb < RSS_LIMIT_KB,
        "{name}: peak RSS {} KiB >= {RSS_LIMIT_KB} KiB",
        r.peak_kb
    );
}

#[test]
fn huge_message_streams_in_bounded_memory() {
    let total: u64 = if full() { 2 << 30 } else { 256 << 20 };
    let mut chunk = Vec::with_capacity(1 << 20);
    chunk.extend_from_slice(b"Subject: a very large message\n\n");
    let mut i = 0u32;
    while chunk.len() < 1 << 20 {
        chunk.extend_from_slice(format!("line {i} of a very large message body\n").as_bytes());
        i += 1;
    }
    chunk.truncate(1 << 20);
    big_case("huge message", total, &chunk);
}

#[test]
fn huge_line_without_newline_streams_in_bounded_memory() {
    let total: u64 = if full() { 1 << 30 } else { 128 << 20 };
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    big_case("huge line", total, &chunk);
}

/// Awkward but valid messages are stored byte for byte.
#[test]
fn awkward_bytes_are_stored_exactly() {
    let mut one_mib_header = b"X-Long: ".to_vec();
    one_mib_header.extend(std::iter::repeat_n(b'h', 1 << 20));
    one_mib_header.extend_from_slice(b"\n\nbody\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "NUL bytes",
            b"Subject: nul\n\n\0\0body\0with\0nuls\0".to_vec(),
        ),
        (
            "bare CR",
            b"Subject: cr\r\rX: y\r\rbody\ronly\rcarriage\rreturns\r".to_vec(),
        ),
        (
            "no header/body separator",
            b"Subject: no separator\nX-Other: header\nstill header".to_vec(),
        ),
        ("1 MiB header line", one_mib_header),
        ("one byte", b"x".to_vec()),
        (
            "only From lines (kept)",
            b"From a@b Sat Nov 28 18:03:09 2026\nFrom c@d Sat Nov 28 18:03:10 2026\nFrom ".to_vec(),
        ),
        (
            "8-bit and invalid UTF-8",
            b"Subject: \xe9t\xe9\n\n\xff\xfe\xc3\x28\n".to_vec(),
        ),
        ("CRLF only", b"\r\n\r\n\r\n".to_vec()),
    ];
    for (name, msg) in cases {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("Maildir");
        make_maildir(&md);
        // --keep-from-line: store a leading "From " line too (the "only From lines" case).
        let r = run(&[&"--no-fsync", &"--keep-from-line", &md], &msg, &[]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{name}");
        assert_delivered_once(&md, &msg);
        eprintln!("{name}: exit 0, stored byte-exact");
    }
}

/// Runs `mdeliver args...` with its standard input closed (not empty: no fd 0 at all).
fn run_stdin_closed(args: &[&Path]) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" <&-")
        .arg(bin())
        .args(args)
        .env_remove("MDELIVER_DISABLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    Run {
        code: out.status.code().expect("exited by signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether standard error carries an `mdeliver: <maildir>: ...` line (after the status line).
fn has_error_line(stderr: &str) -> bool {
    stderr.lines().any(|l| l.starts_with("mdeliver: "))
}

/// With fd 0 closed, the first descriptor mdeliver opens becomes fd 0: it must not read its
/// own maildir directory or message file as the message. Nothing may be delivered.
#[test]
fn stdin_closed_delivers_nothing() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let r = run_stdin_closed(&[&md]);
    eprintln!("stdin closed: exit {}: {:?}", r.code, r.stderr.trim_end());
    // Rust's runtime reopens a closed fd 0 on /dev/null, so this is an empty message (65).
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        has_error_line(&r.stderr),
        "no error message: {:?}",
        r.stderr
    );
    assert_untouched(&md, "stdin closed");
}

/// A directory as `--input`: an input error (66, like a missing file), nothing delivered.
/// Today `read` fails with EISDIR, mapped to an I/O error: 75, so an MTA defers the message
/// and retries a command that can never work, and the hint blames the kernel.
#[test]
fn directory_as_input_is_an_input_error() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let r = run(&[&"--input", &t.path(), &md], b"", &[]);
    eprintln!("--input DIR: exit {}: {:?}", r.code, r.stderr.trim_end());
    assert_untouched(&md, "--input DIR");
    assert!(has_error_line(&r.stderr), "{:?}", r.stderr);
    assert_eq!(r.code, 66, "{}", r.stderr);
}

/// An mbox of nothing but `From ` lines (`-M`): every message is empty, skipped with a warning;
/// nothing is delivered and the import still succeeds.
#[test]
fn mbox_of_only_from_lines() {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let mbox = b"From a@b Sat Nov 28 18:03:09 2026\nFrom c@d Sat Nov 28 18:03:10 2026\nFrom ";
    let r = run(&[&"-M", &"--no-fsync", &md], mbox, &[]);
    eprintln!(
        "mbox of only From lines: exit {}: {:?}",
        r.code,
        r.stderr.trim_end()
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("is empty; skipped").count(),
        3,
        "{}",
        r.stderr
    );
    assert_untouched(&md, "mbox of only From lines");
}

/// `/dev/zero` as `--input` never ends; on a small filesystem the delivery must stop at
/// ENOSPC (75, temporary) and remove what it wrote. Root only (it mounts a 1 MiB tmpfs).
#[test]
fn dev_zero_as_input_stops_at_enospc() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(t.path(), "1m", "0755") else {
        return;
    };
    let md = fs.mnt.join("Maildir");
    make_maildir(&md);
    let r = run(&[&"--input", &"/dev/zero", &"--no-fsync", &md], b"", &[]);
    let left: Vec<Vec<String>> = ["tmp", "new", "cur"]
        .iter()
        .map(|d| names(&md.join(d)))
        .collect();
    drop(fs);
    eprintln!(
        "--input /dev/zero: exit {}: {:?}",
        r.code,
        r.stderr.trim_end()
    );
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("no space left on device"), "{}", r.stderr);
    assert_eq!(
        left,
        vec![Vec::<String>::new(); 3],
        "leftovers in tmp/new/cur"
    );
}
