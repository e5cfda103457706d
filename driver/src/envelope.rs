//! The MTA options of the delivery form, resolved once ([`Settings`]: environment read,
//! addresses checked), and one message's delivery into one maildir through the core's
//! [`mdeliver_core::mda`] (trace fields, loop check, quota, duplicates), with `--dry-run`
//! through the core's [`DryRun`] wrapper. Only translation here; portable (no Linux calls), so
//! the WASI module includes this file too.

use std::ffi::OsString;

use mdeliver_core::fs::dryrun::DryRun;
use mdeliver_core::machine::dedup::DedupOptions;
use mdeliver_core::machine::quota::CheckOptions;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::mda::{self, Envelope, FromEnv, MdaOptions, HEAD_MAX};
use mdeliver_core::message::normalize_address;
use mdeliver_core::{Env, Fs, Options};

use crate::mta_args::{MtaArgs, QuotaFull};
use crate::report::Failure;

pub use mdeliver_core::mda::Stored;

/// `MDELIVER_TEST_DEDUP_LEASE=SECS`, a testing knob: the duplicate index's lease (and clock
/// margin) in seconds instead of 300 (and 60), so a test can retry a crashed delivery without
/// waiting five minutes. Never set it in production.
pub const LEASE_VAR: &str = "MDELIVER_TEST_DEDUP_LEASE";

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
    /// No MTA stamped `Delivered-To:` (the LMTP server): see [`Envelope::unstamped`].
    pub unstamped: bool,
    /// No mbox framing (the LMTP server): see [`Envelope::unframed`].
    pub unframed: bool,
    /// Which addresses came from the environment (`--from-env`): see [`FromEnv`].
    pub from_env: FromEnv,
}

impl Settings {
    /// Resolves the options, reading names in cur/ with `sep` (`--info-separator`) for the
    /// quota scan and the duplicate index; `var` reads the environment (consulted for the
    /// envelope only with `--from-env`, and for [`LEASE_VAR`]).
    /// The error names the offending option and why.
    pub fn new(
        a: &MtaArgs,
        sep: InfoSep,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Settings, String> {
        // An address from the environment that cannot go into a header (too long, a control
        // character) is the remote sender's doing, not the MTA's configuration: left out, so
        // the message is not deferred for it (an option given so is refused below).
        let from_env = |given: &Option<String>, name: &str| -> Option<Vec<u8>> {
            let v = var(name).filter(|_| given.is_none() && a.from_env)?;
            let v = v.into_encoded_bytes();
            normalize_address(&v).is_ok().then_some(v)
        };
        let pick = |given: &Option<String>, name: &str| -> Option<Vec<u8>> {
            match given {
                Some(v) => Some(v.clone().into_bytes()),
                None => from_env(given, name),
            }
        };
        let env = |given: &Option<String>| given.is_none() && a.from_env;
        let s = Settings {
            keep_from_line: a.keep_from_line,
            return_path: pick(&a.return_path, "SENDER"),
            delivered_to: pick(&a.delivered_to, "RECIPIENT")
                .filter(|v| !(a.delivered_to.is_none() && v.is_empty())),
            original_to: pick(&a.original_to, "ORIGINAL_RECIPIENT")
                .filter(|v| !(a.original_to.is_none() && v.is_empty())),
            from_env: FromEnv {
                return_path: env(&a.return_path),
                delivered_to: env(&a.delivered_to),
                original_to: env(&a.original_to),
            },
            quota: CheckOptions {
                given: a.quota,
                sep,
                ..CheckOptions::default()
            },
            dedup: a.dedup.map(|window_secs| {
                let d = DedupOptions {
                    window_secs,
                    sep,
                    ..DedupOptions::default()
                };
                match var(LEASE_VAR).and_then(|v| v.to_str()?.parse().ok()) {
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
            unstamped: false,
            unframed: false,
        };
        mda::check_envelope(&s.envelope()).map_err(|(what, e)| format!("{what}: {e}"))?;
        Ok(s)
    }

    /// The envelope, borrowed.
    pub fn envelope(&self) -> Envelope<'_> {
        Envelope {
            keep_from_line: self.keep_from_line,
            return_path: self.return_path.as_deref(),
            delivered_to: self.delivered_to.as_deref(),
            original_to: self.original_to.as_deref(),
            unstamped: self.unstamped,
            unframed: self.unframed,
            from_env: self.from_env,
        }
    }

    /// The settings for a delivery into a Maildir++ folder: its quota is the top maildir's.
    pub fn in_folder(&self) -> Settings {
        let mut s = self.clone();
        s.quota.folder = true;
        s
    }

    /// The core's options for one delivery with `delivery`.
    pub fn mda(&self, delivery: Options) -> MdaOptions<'_> {
        MdaOptions {
            delivery,
            envelope: self.envelope(),
            quota: self.quota,
            dedup: self.dedup,
            key: None,
        }
    }
}

/// Delivers `source` into `fs`. With `transform`, the message is the MTA's: its head is
/// looked at (read into `head`, grown to [`HEAD_MAX`] bytes the first time: a caller that
/// delivers many messages keeps it) and the trace fields reconciled; without, it is a copy of
/// an earlier delivery of this run and is stored as it is. Gives the maildir back (for the
/// kept copy).
pub fn deliver<F, E, R>(
    fs: F,
    env: &mut E,
    opts: Options,
    s: &Settings,
    source: &mut R,
    transform: bool,
    (head, buf): (&mut Vec<u8>, &mut [u8]),
) -> (F, Result<Stored, Failure>)
where
    F: Fs,
    E: Env,
    R: embedded_io::Read,
{
    // One filesystem type whether or not this is a dry run: the delivery code is compiled once.
    let mut fs = DryRun::with(fs, s.dry_run);
    // The machines are compiled once for every environment, the WASI module's stepping ABI
    // (`wasi/src/step.rs`) included.
    let env: &mut dyn Env = env;
    let o = s.mda(opts);
    let r = if transform {
        head.resize(HEAD_MAX, 0);
        mda::deliver_message(&mut fs, env, &o, source, head, buf)
    } else {
        mda::store(&mut fs, env, &o, source, buf)
    };
    (fs.into_inner(), r.map_err(Failure::Deliver))
}
