//! `mdeliver check`: lists tmp/, new/ and cur/ (and the maildir itself, for the lock's
//! leftovers), has the core classify each entry and find the duplicate keys
//! ([`mdeliver_core::report::check`]), confirms each duplicate by a second look (a message
//! renamed during the listing shows up under two names), and with `--repair` removes stale
//! tmp/ files and lock leftovers, and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use mdeliver_core::env::Env;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::report::check::{
    checked_in_root, classify, duplicates, EntryKind, Finding, Listed, Times, STALE_TMP_SECS,
};
use mdeliver_core::{Dir, ErrorKind, Fs};

use crate::env::LinuxEnv;
use crate::linux::LinuxFs;
use crate::mail_args::parse_info_sep;
use crate::reader;

const ABOUT: &str =
    "Report stale files and other anomalies in a maildir; --repair removes the stale files";

const LONG_ABOUT: &str = "\
Report stale files and other anomalies in a maildir; --repair removes the stale files.

Findings, one line each (TAB-separated: KIND, PATH, detail):
  stale-tmp      a file in tmp/ untouched for more than 36 hours (the Maildir \
specification's limit): neither modified nor changed in any other way (its ctime, which no \
writer can set back, unlike the mtime that mdeliver -M sets to each message's date); left by \
a crashed or killed delivery; safe to remove
  stale-lock     in the maildir itself, a leftover of the maildir lock (mdeliver.lock.*: a \
dead deliverer's unique lock name, or its claim to break a stale lock) untouched for more than \
36 hours; safe to remove (the lock itself, mdeliver.lock, is never reported: the next delivery \
breaks it once it is stale)
  duplicate-key  two files in new/ or cur/ with the same unique key (the part before the info \
separator); both are kept: compare them by hand
  unparsable     a name in new/ or cur/ that cannot be a message (a dot file, an empty key)
  symlink, directory, special
                 an entry in tmp/, new/ or cur/ that is not a regular file

--repair removes only stale-tmp and stale-lock files (nothing else can be removed without \
risking mail) and says so for each.";

const AFTER_LONG_HELP: &str = "\
EXIT STATUS
   0  no findings (or, with --repair, every finding was repaired)
   1  findings remain
  66  the maildir (or its tmp/, new/ or cur/) is missing or not a directory
  75  a temporary error while listing
  77  permission denied";

/// `mdeliver check` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    max_term_width = 100
)]
pub struct CheckArgs {
    /// The maildir to check
    #[arg(value_name = "MAILDIR")]
    pub maildir: PathBuf,

    /// Remove stale tmp/ files and lock leftovers (older than 36 hours); nothing else is ever
    /// removed
    #[arg(long)]
    pub repair: bool,

    /// The character between a message's unique name and its flags (":", ";" or "!")
    #[arg(long, value_name = "C", default_value = ":", value_parser = parse_info_sep)]
    pub info_separator: InfoSep,
}

fn kind_of(ft: std::fs::FileType) -> EntryKind {
    if ft.is_file() {
        EntryKind::Regular
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Directory
    } else {
        EntryKind::Other
    }
}

fn label(f: &Finding) -> &'static str {
    match f {
        Finding::StaleTmp(_) => "stale-tmp",
        Finding::StaleLock(_) => "stale-lock",
        Finding::Unparsable => "unparsable",
        Finding::NotRegular(EntryKind::Symlink) => "symlink",
        Finding::NotRegular(EntryKind::Directory) => "directory",
        Finding::NotRegular(_) => "special",
    }
}

fn detail(f: &Finding) -> String {
    match f {
        Finding::StaleTmp(age) | Finding::StaleLock(age) => format!(
            "untouched for {} hours (limit {})",
            age / 3600,
            STALE_TMP_SECS / 3600
        ),
        Finding::Unparsable => "not a message name".into(),
        Finding::NotRegular(_) => "not a regular file".into(),
    }
}

/// Lists `dir` completely.
fn names(fs: &mut LinuxFs, dir: Dir) -> Result<Vec<String>, ErrorKind> {
    let mut stream = fs.open_dir(dir)?;
    let mut name = mdeliver_core::fs::EntryName::new();
    let mut out = Vec::new();
    while fs.read_dir(&mut stream, &mut name)? {
        // A name that is not UTF-8 is checked too (shown with U+FFFD where its bytes are).
        out.push(String::from_utf8_lossy(&name).into_owned());
    }
    out.sort();
    Ok(out)
}

/// Runs `mdeliver check`.
pub fn run(a: &CheckArgs) -> ExitCode {
    let who = a.maildir.display();
    let mut fs = match reader::open(&a.maildir) {
        Ok(fs) => fs,
        Err(code) => return code,
    };
    let now = LinuxEnv::new().now().secs;
    let mut remaining = 0u32;
    // Names with nothing to report: the candidates for the duplicate-key search.
    let mut clean: Vec<(Dir, String)> = Vec::new();
    for dir in [Dir::Root, Dir::Tmp, Dir::New, Dir::Cur] {
        let list = match names(&mut fs, dir) {
            Ok(l) => l,
            Err(e) => {
                let what = match dir {
                    Dir::Root => "the maildir".to_string(),
                    _ => format!("{}/", dir.as_str()),
                };
                eprintln!("mdeliver: {who}: listing {what}: {e}");
                return ExitCode::from(reader::code(e));
            }
        };
        for name in list {
            if dir == Dir::Root && !checked_in_root(&name) {
                continue;
            }
            let path = a.maildir.join(dir.as_str()).join(&name);
            // Informational only (the kind and age of one entry): by path, never followed.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue; // gone meanwhile (a reader renamed it, a delivery finished)
            };
            let times = Times {
                mtime: std::os::unix::fs::MetadataExt::mtime(&meta).max(0) as u64,
                ctime: std::os::unix::fs::MetadataExt::ctime(&meta).max(0) as u64,
            };
            let kind = kind_of(meta.file_type());
            if let Some(f) = classify(dir, &name, kind, times, now, a.info_separator) {
                let mut repaired = false;
                if a.repair && f.repairable() {
                    match fs.unlink(dir, &name) {
                        Ok(()) | Err(ErrorKind::NotFound) => repaired = true,
                        Err(e) => eprintln!("mdeliver: {}: removing: {e}", path.display()),
                    }
                }
                let note = if repaired { " (removed)" } else { "" };
                println!("{}\t{}\t{}{note}", label(&f), path.display(), detail(&f));
                if !repaired {
                    remaining += 1;
                }
                continue;
            }
            clean.push((dir, name));
        }
    }
    let mut listed: Vec<Listed> = clean
        .iter()
        .filter_map(|(dir, name)| Listed::new(*dir, name, a.info_separator))
        .collect();
    // A message renamed between our listings of new/ and cur/ (or within cur/) appears twice
    // without being a duplicate: only pairs whose both names still exist count.
    for d in duplicates(&mut listed) {
        if fs.stat(d.first_dir, d.first_name).is_ok() && fs.stat(d.dir, d.name).is_ok() {
            println!(
                "duplicate-key\t{}\talso {}",
                a.maildir.join(d.dir.as_str()).join(d.name).display(),
                a.maildir
                    .join(d.first_dir.as_str())
                    .join(d.first_name)
                    .display()
            );
            remaining += 1;
        }
    }
    if remaining > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
