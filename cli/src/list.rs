//! `mdeliver list`: the core's race-free [`scan`](mdeliver_core::scan) of new/ and cur/, with
//! the keys held in a `HashMap`; prints every message once, by key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use mdeliver_core::name::{InfoSep, ParsedName};
use mdeliver_core::scan::{classify, scan, KeySet, Mark, ScanOptions};
use mdeliver_core::{Dir, ErrorKind, Fs};

use crate::exit;
use crate::mail_args::parse_info_sep;
use crate::reader::{self, json_string};

const ABOUT: &str = "List every message of a maildir exactly once, even while others rename them";

const LONG_ABOUT: &str = "\
List every message of a maildir exactly once, even while others rename them.

A plain directory listing can miss a message, or show it twice, when a mail reader renames it \
(new/ to cur/, or a flag change) during the listing. mdeliver list reads new/ and then cur/, \
keys every file by its unique name (the part before the info separator), and repeats the pass \
until one pass sees exactly the messages of the previous one (at most 8 passes). Each message \
is printed once, under the name the final pass saw.

Output, one line per message, sorted by key:
  KEY <TAB> SUBDIR <TAB> FLAGS <TAB> SIZE <TAB> PATH
SUBDIR is new or cur, FLAGS the letters after \":2,\" (\"-\" for none), SIZE the file size in \
bytes (\"-\" if the file was renamed again before it could be measured).";

const AFTER_LONG_HELP: &str = "\
JSON
  With --json, one object per line:
      {\"key\":\"...\",\"subdir\":\"cur\",\"flags\":\"RS\",\"size\":1234,\"path\":\"...\"}
  (size is null when unknown).

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

/// Runs `mdeliver list`.
pub fn run(a: &ListArgs) -> ExitCode {
    let who = a.maildir.display();
    let mut fs = match reader::open(&a.maildir) {
        Ok(fs) => fs,
        Err(f) => {
            eprintln!("mdeliver: {who}: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let mut keys = Keys::default();
    let opts = ScanOptions {
        sep: a.info_separator,
        ..ScanOptions::default()
    };
    let summary = match scan(&mut fs, &mut keys, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mdeliver: {who}: listing: {}", e.kind);
            return ExitCode::from(reader::code(e.kind));
        }
    };
    let mut found: Vec<(&String, &Seen)> = keys
        .0
        .iter()
        .filter(|(_, s)| s.pass == summary.final_pass)
        .collect();
    found.sort_by(|x, y| x.0.cmp(y.0));
    let mut out = String::new();
    for (key, seen) in found {
        let flags = ParsedName::parse(&seen.name, a.info_separator)
            .map(|p| p.flags)
            .unwrap_or_default();
        let size = fs.stat(seen.dir, &seen.name).ok().map(|s| s.size);
        let path = a.maildir.join(seen.dir.as_str()).join(&seen.name);
        let path = path.to_string_lossy();
        if a.json {
            out.push_str(&format!(
                "{{\"key\":{},\"subdir\":\"{}\",\"flags\":\"{flags}\",\"size\":{},\"path\":{}}}\n",
                json_string(key),
                seen.dir.as_str(),
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
                "{key}\t{}\t{flags}\t{size}\t{path}\n",
                seen.dir.as_str()
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
