//! What the driver says about each maildir: `-v` lines, `--json` records, warnings, and the
//! failure lines with their RFC 3463 status, all into the [`Output`] that orders them.

use std::path::Path;

use mdeliver_core::maildir::name::{InfoSep, ParsedName};

use crate::args::Args;
use crate::envelope::{Settings, Stored};
use crate::json::Record;
use crate::report::Failure;
use crate::status::{self, Output};

fn key_and_flags(name: &str, sep: InfoSep) -> (Option<String>, String) {
    match ParsedName::parse(name, sep) {
        Ok(p) => (Some(p.key.to_owned()), p.flags.to_string()),
        Err(_) => (None, String::new()),
    }
}

/// Reports what happened in `maildir`.
pub fn stored(out: &mut Output, args: &Args, s: &Settings, maildir: &Path, stored: &Stored) {
    let dry = s.dry_run;
    // The stored file (a duplicate's: the earlier copy as the index recorded it).
    let (dir, name, size) = match stored {
        Stored::Delivered(d) => (Some(d.dir), &*d.name, Some(d.size)),
        Stored::Duplicate { dir, name, size } => (*dir, &**name, *size),
    };
    let path = match dir {
        Some(d) => maildir.join(d.as_str()).join(name),
        None => maildir.join(name),
    };
    if args.verbose >= 1 && !s.json {
        out.out(path.display().to_string());
    }
    match stored {
        Stored::Delivered(d) => {
            if args.verbose >= 2 || dry {
                let what = if dry { "would deliver" } else { "delivered" };
                out.err(format!(
                    "mdeliver: {}: {what} {} bytes via {}",
                    path.display(),
                    d.size,
                    d.publish.as_str()
                ));
            }
            if d.leftover_tmp {
                out.err(format!(
                    "mdeliver: {}: warning: delivered, but a second name of the message \
                     remains in tmp/; it is harmless and can be removed",
                    maildir.display()
                ));
            }
        }
        Stored::Duplicate { .. } => {
            if args.verbose >= 1 || dry {
                let what = if dry {
                    "would be suppressed"
                } else {
                    "suppressed"
                };
                out.err(format!(
                    "mdeliver: {}: duplicate {what}: already stored as {}",
                    maildir.display(),
                    path.display()
                ));
            }
        }
    }
    if s.json {
        let (key, flags) = key_and_flags(name, s.quota.sep);
        let record = Record {
            maildir: maildir.display().to_string(),
            path: dir.map(|_| path.display().to_string()),
            key,
            size,
            flags,
            duplicate: matches!(stored, Stored::Duplicate { .. }),
            dry_run: dry,
        };
        out.out(record.to_line());
    }
}

/// Reports, before any maildir, that `--input FILE` (`path`) cannot be opened (`kind`; `Usage`
/// for a directory); writes the output and returns the exit code.
pub fn input_failed(args: &Args, path: &Path, kind: mdeliver_core::ErrorKind) -> u8 {
    let mut out = Output::default();
    let code = failed(
        &mut out,
        args,
        &Settings::default(),
        path,
        &Failure::Input(kind),
        &[],
    );
    out.flush();
    code
}

/// Reports a failure in `maildir` (or of the input) and returns its exit code.
/// `broken`: the files of the maildir the failure is about, named in the message (the
/// duplicate index's entries that are not regular files, [`crate::report::broken_index_entries`]).
pub fn failed(
    out: &mut Output,
    args: &Args,
    s: &Settings,
    what: &Path,
    failure: &Failure,
    broken: &[String],
) -> u8 {
    let code = status::code(failure, args.strict_exit, s.quota_full);
    let addr = s
        .delivered_to
        .as_deref()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    out.failed(code, status::line(failure, code, addr.as_deref()));
    let mut line = format!("mdeliver: {}: {failure}", what.display());
    if !broken.is_empty() {
        let paths: Vec<String> = broken
            .iter()
            .map(|n| what.join(n).display().to_string())
            .collect();
        let which = if paths.len() == 1 {
            "the entry to remove is"
        } else {
            "the entries to remove are"
        };
        line.push_str(&format!("; {which} {}", paths.join(", ")));
    }
    if failure.kind() == mdeliver_core::ErrorKind::Loop {
        if let Some(a) = &addr {
            line.push_str(&format!(
                "; the header already carries Delivered-To: {a}, so the message came back \
                 (refused for good, nothing stored)"
            ));
        }
    }
    out.err(line);
    code
}
