//! One message's way into one maildir when mdeliver runs under an MTA: look at the head (the
//! `From ` line and the trace fields the MTA wrote), let the core decide what to add and
//! whether the message loops ([`mdeliver_core::trace`]), then stream `head + rest` through the
//! core's `FromLine` and `Prelude` transforms into a delivery that also checks the Maildir++
//! quota and, with `--dedup`, the duplicate index ([`mdeliver_core::dedup::deliver_once`]);
//! with `--dry-run`, all of it through the core's [`DryRun`] wrapper. Only translation here.

use std::ffi::OsString;

use mdeliver_core::dedup::{self, DedupOptions, Once, OnceOptions};
use mdeliver_core::deliver::Delivered;
use mdeliver_core::dryrun::DryRun;
use mdeliver_core::message::{
    FromLine, FromLineMode, Prefixed, Prelude, PreludeFields, Transformed,
};
use mdeliver_core::name::NameBuf;
use mdeliver_core::quota::{self, CheckOptions};
use mdeliver_core::trace::{self, Head, LoopGuard, Wanted};
use mdeliver_core::{Dir, Error, ErrorKind, Fs, Options, Phase};

use crate::env::LinuxEnv;
use crate::input::Input;
use crate::linux::LinuxFs;
use crate::mta_args::{MtaArgs, QuotaFull};
use crate::report::Failure;

/// How much of the message is looked at before anything is written: the `From ` line, the
/// trace fields and, for the loop check, the whole header of any real message.
pub const HEAD_MAX: usize = 64 * 1024;

/// The MTA options, resolved once (environment read, addresses checked).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Keep a leading `From ` line.
    pub keep_from_line: bool,
    /// The envelope sender (`--return-path`, `SENDER`).
    pub return_path: Option<Vec<u8>>,
    /// The recipient (`--delivered-to`, `RECIPIENT`).
    pub delivered_to: Option<Vec<u8>>,
    /// The original recipient (`--original-to`, `ORIGINAL_RECIPIENT`).
    pub original_to: Option<Vec<u8>>,
    /// The quota check (always: a `maildirsize` is honoured without `--quota`).
    pub quota: CheckOptions,
    /// Duplicate suppression.
    pub dedup: Option<DedupOptions>,
    /// Publish nothing.
    pub dry_run: bool,
    /// Report in JSON.
    pub json: bool,
    /// What a message over quota gets.
    pub quota_full: QuotaFull,
}

impl Settings {
    /// Resolves the options; `var` reads the environment (only consulted with `--from-env`).
    /// The error names the offending option and why.
    pub fn new(a: &MtaArgs, var: impl Fn(&str) -> Option<OsString>) -> Result<Settings, String> {
        let pick = |given: &Option<String>, name: &str| -> Option<Vec<u8>> {
            match given {
                Some(v) => Some(v.clone().into_bytes()),
                None if a.from_env => {
                    use std::os::unix::ffi::OsStringExt;
                    var(name).map(OsStringExt::into_vec)
                }
                None => None,
            }
        };
        let s = Settings {
            keep_from_line: a.keep_from_line,
            return_path: pick(&a.return_path, "SENDER"),
            delivered_to: pick(&a.delivered_to, "RECIPIENT")
                .filter(|v| !(a.delivered_to.is_none() && v.is_empty())),
            original_to: pick(&a.original_to, "ORIGINAL_RECIPIENT")
                .filter(|v| !(a.original_to.is_none() && v.is_empty())),
            quota: CheckOptions {
                given: a.quota,
                ..CheckOptions::default()
            },
            dedup: a.dedup.map(|window_secs| {
                let d = DedupOptions {
                    window_secs,
                    ..DedupOptions::default()
                };
                match crate::testing::dedup_lease() {
                    Some(l) => DedupOptions {
                        lease_secs: l,
                        margin_secs: l,
                        ..d
                    },
                    None => d,
                }
            }),
            dry_run: a.dry_run,
            json: a.json,
            quota_full: a.quota_full,
        };
        let one = |what: &str, f: PreludeFields<'_>| {
            Prelude::new(f)
                .map(|_| ())
                .map_err(|e| format!("{what}: {e}"))
        };
        one(
            "return path",
            PreludeFields {
                return_path: s.return_path.as_deref(),
                ..PreludeFields::default()
            },
        )?;
        one(
            "delivered-to address",
            PreludeFields {
                delivered_to: s.delivered_to.as_deref(),
                ..PreludeFields::default()
            },
        )?;
        one(
            "original-to address",
            PreludeFields {
                original_to: s.original_to.as_deref(),
                ..PreludeFields::default()
            },
        )?;
        Ok(s)
    }

    /// Reads names in cur/ with `sep` (`--info-separator`) for the quota scan and the index.
    pub fn with_info_separator(mut self, sep: mdeliver_core::name::InfoSep) -> Settings {
        self.quota.sep = sep;
        if let Some(d) = self.dedup.as_mut() {
            d.sep = sep;
        }
        self
    }

    fn wanted<'a>(&'a self, from_sender: Option<&'a [u8]>) -> Wanted<'a> {
        Wanted {
            return_path: self.return_path.as_deref(),
            original_to: self.original_to.as_deref(),
            delivered_to: self.delivered_to.as_deref(),
            from_sender,
        }
    }
}

/// What happened in one maildir.
#[derive(Clone, Debug)]
pub enum Stored {
    /// Delivered (or, in a dry run, would have been).
    Delivered(Delivered),
    /// A duplicate within the window: not stored again.
    Duplicate {
        /// Where the earlier copy was recorded.
        dir: Option<Dir>,
        /// Its name then.
        name: NameBuf,
        /// Its size, if it is still there.
        size: Option<u64>,
    },
}

/// Reads up to [`HEAD_MAX`] bytes, stopping early at the end of the header block. Returns the
/// byte count and whether the input ended.
fn read_head(source: &mut Input, head: &mut [u8]) -> Result<(usize, bool), Failure> {
    use embedded_io::Read;
    let mut n = 0;
    while n < head.len() {
        let k = match source.read(&mut head[n..]) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Failure::Deliver(Error::new(ErrorKind::Io, Phase::Read))),
        };
        if k == 0 {
            return Ok((n, true));
        }
        let from = n.saturating_sub(3);
        n += k;
        let h = &head[..n];
        if h.starts_with(b"\n")
            || h.starts_with(b"\r\n")
            || h[from..].windows(2).any(|w| w == b"\n\n")
            || h[from..].windows(3).any(|w| w == b"\n\r\n")
        {
            return Ok((n, false));
        }
    }
    Ok((n, false))
}

/// Delivers `source` into `fs`. With `transform`, the message is the MTA's: its head is
/// looked at and the trace fields reconciled; without, it is a copy of an earlier delivery of
/// this run and is stored as it is. Gives the maildir back (for the kept copy).
pub fn deliver(
    fs: LinuxFs,
    env: &mut LinuxEnv,
    opts: Options,
    s: &Settings,
    source: &mut Input,
    transform: bool,
    buf: &mut [u8],
) -> (LinuxFs, Result<Stored, Failure>) {
    if s.dry_run {
        let mut dry = DryRun::new(fs);
        let r = deliver_on(&mut dry, env, opts, s, source, transform, buf);
        (dry.into_inner(), r)
    } else {
        let mut fs = fs;
        let r = deliver_on(&mut fs, env, opts, s, source, transform, buf);
        (fs, r)
    }
}

fn deliver_on<F: Fs>(
    fs: &mut F,
    env: &mut LinuxEnv,
    opts: Options,
    s: &Settings,
    source: &mut Input,
    transform: bool,
    buf: &mut [u8],
) -> Result<Stored, Failure> {
    if !transform {
        return run(fs, env, opts, s, source, buf);
    }
    let mut head = vec![0u8; HEAD_MAX];
    let (mut len, eof) = read_head(source, &mut head)?;
    let parsed = Head::parse(&head[..len]);
    let from_sender: Option<Vec<u8>> = if s.keep_from_line {
        None
    } else {
        parsed.from_sender(&head[..len]).map(<[u8]>::to_vec)
    };
    let mut plan = trace::plan(&head[..len], &parsed, s.wanted(from_sender.as_deref()))
        .map_err(|_| Failure::Deliver(Error::new(ErrorKind::Data, Phase::Check)))?;
    len = plan.apply_drop(&mut head, len);
    let check = plan.loop_check(&head[..len], eof);
    if check.as_ref().is_some_and(|c| c.found()) {
        // Decided before anything was written.
        return Err(Failure::Deliver(Error::new(ErrorKind::Loop, Phase::Check)));
    }
    let check = check.filter(|c| !c.header_done());
    let mut guard = LoopGuard::new(&mut *source, check);
    let prefixed = Prefixed::new(&head[..len], &mut guard);
    let mode = if s.keep_from_line {
        FromLineMode::Keep
    } else {
        FromLineMode::Strip
    };
    let from: Transformed<_, FromLine> = Transformed::new(prefixed, FromLine::new(mode));
    let prelude = Prelude::new(plan.prelude)
        .unwrap_or_else(|_| Prelude::new(PreludeFields::default()).expect("no fields cannot fail"));
    let mut reader: Transformed<_, Prelude> = Transformed::new(from, prelude);
    let r = run(fs, env, opts, s, &mut reader, buf);
    if r.is_err() && guard.looped() {
        // Found past the head, while streaming into tmp/: nothing was published.
        return Err(Failure::Deliver(Error::new(ErrorKind::Loop, Phase::Check)));
    }
    r
}

fn run<F: Fs, R: embedded_io::Read + ?Sized>(
    fs: &mut F,
    env: &mut LinuxEnv,
    opts: Options,
    s: &Settings,
    source: &mut R,
    buf: &mut [u8],
) -> Result<Stored, Failure> {
    match s.dedup {
        Some(d) => {
            let o = OnceOptions {
                delivery: opts,
                dedup: d,
                quota: Some(s.quota),
                key: None,
            };
            match dedup::deliver_once(fs, env, o, source, buf) {
                Ok(Once::Stored { delivered, .. }) => Ok(Stored::Delivered(delivered)),
                Ok(Once::Duplicate { dir, name }) => {
                    let size = dir.and_then(|d| fs.stat(d, &name).ok()).map(|st| st.size);
                    Ok(Stored::Duplicate { dir, name, size })
                }
                Err(e) => Err(Failure::Deliver(e)),
            }
        }
        None => quota::deliver_with_quota(fs, env, opts, s.quota, source, buf)
            .map(|(d, _)| Stored::Delivered(d))
            .map_err(Failure::Deliver),
    }
}
