//! `mdeliver list`: the core's race-free [`Scan`] of new/ and cur/, with the keys held in a
//! `HashMap`; prints every message once, by key.
//!
//! The listing itself reads each directory with `getdents64` into one 4 MiB buffer: the kernel
//! fills a call under the directory's lock, which a rename also takes, so a directory of up to
//! some 40 000 entries is read as one consistent snapshot and renames inside cur/ cannot make
//! the scan miss a message; larger directories take several calls, and the scan's repeated
//! passes handle the renames between them.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use mdeliver_core::machine::scan::{
    classify, KeySet, Mark, Scan, ScanOptions, ScanStep, ScanSummary,
};
use mdeliver_core::maildir::flags::Flags;
use mdeliver_core::maildir::name::{InfoSep, ParsedName};
use mdeliver_core::{Dir, ErrorKind, Fs, Op, OpResult};

use crate::exit;
use crate::mail_args::parse_info_sep;
use crate::reader;

/// `s` as a JSON string (with the quotes), escaped as the delivery reports are.
fn json_string(s: &str) -> String {
    let mut out = String::new();
    crate::json::string(&mut out, s);
    out
}

const ABOUT: &str = "List every message of a maildir exactly once, even while others rename them";

const LONG_ABOUT: &str = "\
List every message of a maildir exactly once, even while others rename them.

A plain directory listing can miss a message, or show it twice, when a mail reader renames it \
(new/ to cur/, or a flag change) during the listing. mdeliver list reads new/ and then cur/, \
keys every file by its unique name (the part before the info separator), and repeats the pass \
until one pass sees exactly the messages of the previous one (at most 8 passes). Each message \
is printed once, under the name the final pass saw. Each directory is read with 4 MiB \
getdents64 calls, each of which the kernel serves as one snapshot that no rename can cut \
through: up to some 40 000 messages per directory, renames inside cur/ cannot hide a message.

Output, one line per message, sorted by key:
  KEY <TAB> SUBDIR <TAB> FLAGS <TAB> SIZE <TAB> PATH
SUBDIR is new or cur, FLAGS the letters after \":2,\" (\"-\" for none), SIZE the file size in \
bytes (\"-\" if the file was renamed again before it could be measured). In KEY and PATH a \
backslash is written \\\\, a tab \\t, a line feed \\n, a carriage return \\r, and any other \
control byte, DEL or byte that is not UTF-8 \\xHH (two hex digits), so a file name can \
never break a line or a field: every line has exactly five fields. Names are bytes: a file \
whose name is not UTF-8 (a Latin-1 name copied from an old system) is listed like any other, \
escaped.";

const AFTER_LONG_HELP: &str = "\
JSON
  With --json, one object per line:
      {\"key\":\"...\",\"subdir\":\"cur\",\"flags\":\"RS\",\"size\":1234,\"path\":\"...\"}
  (size is null when unknown). JSON text is UTF-8: for a file whose name is not, key and \
path are escaped as in the tab-separated form and the object ends with \"escaped\":true.

EXIT STATUS
   0  listed
  66  the maildir (or its new/ or cur/) is missing or not a directory
  75  the listing did not settle within 8 passes (messages kept being renamed); what the \
last pass saw is printed anyway; or a temporary error
  77  permission denied";

/// `mdeliver list` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    max_term_width = 100
)]
pub struct ListArgs {
    /// The maildir to list
    #[arg(value_name = "MAILDIR")]
    pub maildir: PathBuf,

    /// Print one JSON object per message instead of tab-separated lines
    #[arg(long)]
    pub json: bool,

    /// The character between a message's unique name and its flags (":", ";" or "!")
    #[arg(long, value_name = "C", default_value = ":", value_parser = parse_info_sep)]
    pub info_separator: InfoSep,
}

/// One message as the scan last saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// new/ or cur/.
    pub dir: Dir,
    /// Its file name.
    pub name: String,
    /// The pass that last saw it.
    pub pass: u32,
}

/// The scan's key storage: unique key → last sighting.
#[derive(Debug, Default)]
pub struct Keys(pub HashMap<String, Seen>);

impl KeySet for Keys {
    fn mark(&mut self, pass: u32, key: &str, dir: Dir, name: &str) -> Result<Mark, ErrorKind> {
        let fresh = || Seen {
            dir,
            name: name.to_owned(),
            pass,
        };
        match self.0.get_mut(key) {
            None => {
                self.0.insert(key.to_owned(), fresh());
                Ok(Mark::First)
            }
            Some(seen) => {
                let mark = classify(seen.pass, pass);
                if mark != Mark::ThisPass {
                    *seen = fresh();
                }
                Ok(mark)
            }
        }
    }
}

/// Size of the `getdents64` buffer (see the module docs).
const GETDENTS_BUF: usize = 4 << 20;

/// Reads new/ and cur/ in large `getdents64` calls, for a [`Scan`].
struct Lister {
    root: std::os::fd::OwnedFd,
    buf: Vec<std::mem::MaybeUninit<u8>>,
    names: Vec<Vec<u8>>,
    next: usize,
    /// Messages whose names are not UTF-8 (a Latin-1 name copied from an old system): the
    /// scan counts them ([`ScanSummary::foreign`]) but keys only UTF-8 names, so they are
    /// kept here by key (the bytes before the info separator), with the pass that saw them.
    foreign: HashMap<Vec<u8>, Foreign>,
}

/// A message whose name is not UTF-8, as a pass of the scan saw it.
struct Foreign {
    dir: Dir,
    name: Vec<u8>,
    pass: u32,
}

impl Lister {
    fn new(maildir: &std::path::Path) -> Result<Lister, mdeliver_core::Error> {
        use rustix::fs::{openat, Mode, OFlags, CWD};
        let flags = OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY;
        let root = openat(CWD, maildir, flags, Mode::empty()).map_err(|e| {
            let kind = crate::linux::error_kind(e, crate::linux::Call::Other);
            mdeliver_core::Error::new(kind, mdeliver_core::Phase::Open)
        })?;
        Ok(Lister {
            root,
            buf: vec![std::mem::MaybeUninit::uninit(); GETDENTS_BUF],
            names: Vec::new(),
            next: 0,
            foreign: HashMap::new(),
        })
    }

    /// Reads all of `dir`'s names (never following a symbolic link at `dir`).
    fn open(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        use rustix::fs::{openat, Mode, OFlags, RawDir};
        let other = |e| crate::linux::error_kind(e, crate::linux::Call::Other);
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
        let fd = openat(&self.root, dir.as_str(), flags, Mode::empty()).map_err(other)?;
        self.names.clear();
        self.next = 0;
        let dirfd = rustix::io::dup(&fd).map_err(other)?;
        let mut raw = RawDir::new(fd, &mut self.buf);
        while let Some(entry) = raw.next() {
            let entry = entry.map_err(other)?;
            // Only regular files are messages: a FIFO, socket, device, directory or symbolic
            // link with a message-like name is not listed (a reader opening a FIFO would
            // hang; a symlink may lead out of the maildir). `mdeliver check` reports them.
            let regular = match entry.file_type() {
                rustix::fs::FileType::RegularFile => true,
                rustix::fs::FileType::Unknown => rustix::fs::statat(
                    &dirfd,
                    entry.file_name(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .is_ok_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::RegularFile
                }),
                _ => false,
            };
            let name = entry.file_name().to_bytes();
            // "." and ".." are not messages; a name that is not UTF-8 is handed to the scan
            // like any other (it counts it in `ScanSummary::foreign`).
            if regular && name != b"." && name != b".." {
                self.names.push(name.to_owned());
            }
        }
        Ok(())
    }

    fn scan(
        &mut self,
        keys: &mut Keys,
        opts: ScanOptions,
    ) -> Result<ScanSummary, mdeliver_core::Error> {
        let mut machine = Scan::new(opts);
        // The scan's pass (it starts each with new/) and directory, for the foreign names.
        let (mut pass, mut started, mut current) = (0u32, false, Dir::New);
        loop {
            match machine.poll() {
                ScanStep::Op(Op::OpenDir { dir }) => {
                    if dir == Dir::New {
                        pass += u32::from(started);
                        started = true;
                    }
                    current = dir;
                    let r = match self.open(dir) {
                        Ok(()) => OpResult::Done,
                        Err(e) => OpResult::Err(e),
                    };
                    machine.feed(r, b"", keys);
                }
                ScanStep::Op(Op::NextEntry) => match self.names.get(self.next) {
                    Some(name) => {
                        if std::str::from_utf8(name).is_err() && name.first() != Some(&b'.') {
                            let key = name.split(|&b| b == opts.sep.byte()).next().unwrap_or(name);
                            let seen = Foreign {
                                dir: current,
                                name: name.clone(),
                                pass,
                            };
                            self.foreign.insert(key.to_vec(), seen);
                        }
                        machine.feed(OpResult::Entry, name, keys);
                        self.next += 1;
                    }
                    None => machine.feed(OpResult::End, b"", keys),
                },
                ScanStep::Op(_) => machine.feed(OpResult::Done, b"", keys),
                ScanStep::Done(r) => return r,
            }
        }
    }
}

/// `field` for the tab-separated listing: UTF-8 text as it is, except a backslash (`\\`), tab
/// (`\t`), line feed (`\n`), carriage return (`\r`), and every other control byte, DEL or byte
/// that is not UTF-8 (`\xHH`), so that no file name can forge a field or a record.
fn tsv_field(field: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(field.len());
    for chunk in field.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Runs `mdeliver list`.
pub fn run(a: &ListArgs) -> ExitCode {
    let who = a.maildir.display();
    let mut fs = match reader::open(&a.maildir) {
        Ok(fs) => fs,
        Err(code) => return code,
    };
    let mut keys = Keys::default();
    let opts = ScanOptions {
        sep: a.info_separator,
        ..ScanOptions::default()
    };
    let mut lister = match Lister::new(&a.maildir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mdeliver: {who}: listing: {}", e.kind);
            return ExitCode::from(reader::code(e.kind));
        }
    };
    let summary = match lister.scan(&mut keys, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mdeliver: {who}: listing: {}", e.kind);
            return ExitCode::from(reader::code(e.kind));
        }
    };
    // (key, subdir, name) of what the final pass saw; names are bytes: one that is not UTF-8
    // is listed too, escaped.
    let mut found: Vec<(&[u8], Dir, &[u8])> = keys
        .0
        .iter()
        .filter(|(_, s)| s.pass == summary.final_pass)
        .map(|(k, s)| (k.as_bytes(), s.dir, s.name.as_bytes()))
        .chain(
            lister
                .foreign
                .iter()
                .filter(|(_, f)| f.pass == summary.final_pass)
                .map(|(k, f)| (&k[..], f.dir, &f.name[..])),
        )
        .collect();
    found.sort_by(|x, y| x.0.cmp(y.0));
    let mut out = String::new();
    for (key, dir, name) in found {
        let text = std::str::from_utf8(name).ok();
        let flags = match text {
            Some(n) => ParsedName::parse(n, a.info_separator)
                .map(|p| p.flags)
                .unwrap_or_default(),
            None => {
                let info = name.splitn(2, |&b| b == a.info_separator.byte()).nth(1);
                info.and_then(|i| i.strip_prefix(b"2,"))
                    .map(|f| Flags::parse_lenient(&String::from_utf8_lossy(f)))
                    .unwrap_or_default()
            }
        };
        let path = a
            .maildir
            .join(dir.as_str())
            .join(std::ffi::OsStr::from_bytes(name));
        let size = match text {
            Some(n) => fs.stat(dir, n).ok().map(|s| s.size),
            None => std::fs::symlink_metadata(&path).ok().map(|m| m.len()),
        };
        if a.json {
            // JSON text is UTF-8: a name that is not is given escaped as in the tab-separated
            // form, and the object says so.
            let (key, path, escaped) = match text {
                Some(_) => (
                    String::from_utf8_lossy(key).into_owned(),
                    path.to_string_lossy().into_owned(),
                    "",
                ),
                None => (
                    tsv_field(key),
                    tsv_field(path.as_os_str().as_bytes()),
                    ",\"escaped\":true",
                ),
            };
            out.push_str(&format!(
                "{{\"key\":{},\"subdir\":\"{}\",\"flags\":\"{flags}\",\"size\":{},\"path\":{}{escaped}}}\n",
                json_string(&key),
                dir.as_str(),
                size.map_or("null".to_owned(), |s| s.to_string()),
                json_string(&path),
            ));
        } else {
            let flags = if flags.is_empty() {
                "-".to_owned()
            } else {
                flags.to_string()
            };
            let size = size.map_or("-".to_owned(), |s| s.to_string());
            out.push_str(&format!(
                "{}\t{}\t{flags}\t{size}\t{}\n",
                tsv_field(key),
                dir.as_str(),
                tsv_field(path.as_os_str().as_bytes())
            ));
        }
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(exit::IOERR);
    }
    if !summary.stable {
        eprintln!(
            "mdeliver: {who}: warning: the listing did not settle in {} passes (messages kept \
             being renamed); try again",
            summary.passes
        );
        return ExitCode::from(exit::TEMPFAIL);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::tsv_field;

    /// Undoes [`tsv_field`].
    fn unescape(s: &str) -> Vec<u8> {
        let (mut out, b) = (Vec::new(), s.as_bytes());
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            match b[i + 1] {
                b'\\' => out.push(b'\\'),
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 2;
                }
                other => panic!("unknown escape {other}"),
            }
            i += 2;
        }
        out
    }

    #[test]
    fn a_field_has_no_tab_or_control_byte_and_decodes_to_the_name() {
        let names: [&[u8]; 7] = [
            b"1795892125.M1P2.host:2,S",
            b"forged\nFAKEKEY\tnew\t-\t0\tvictim:2,S",
            b"back\\slash\\t and \r\x1b[2J\x7f\x00",
            b"caf\xe9 latin-1",
            "caf\u{e9} \u{2028} utf-8".as_bytes(),
            b"\xff\xfe\\x41",
            b"",
        ];
        for name in names {
            let f = tsv_field(name);
            assert!(!f.chars().any(|c| c.is_ascii_control()), "{f:?}");
            assert_eq!(unescape(&f), name, "{f:?}");
        }
        assert_eq!(tsv_field(b"a\tb\nc\\d\x01\xe9"), "a\\tb\\nc\\\\d\\x01\\xe9");
        assert_eq!(tsv_field("ok caf\u{e9}".as_bytes()), "ok caf\u{e9}");
    }
}
