//! The options that make mdeliver a drop-in MDA for MTAs: envelope trace fields, loop
//! detection, Maildir++ quota, duplicate suppression, dry run and JSON reports. Flattened into
//! [`MailArgs`](crate::mail_args::MailArgs), part of the command line the Linux binary and the
//! WASI module share.

use mdeliver_core::machine::quota::Limits;

/// What to do when a message would exceed the Maildir++ quota.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QuotaFull {
    /// Temporary failure (exit 75, "4.2.2 mailbox full"): the MTA retries until its queue
    /// lifetime runs out
    #[default]
    Defer,
    /// Permanent failure (exit 77, "5.2.2 mailbox full", as Courier's deliverquota): the MTA
    /// bounces
    Bounce,
}

// The MTA integration options. (A plain comment: a doc comment would become the command's
// description when flattened.)
#[derive(Clone, Debug, Default, clap::Args)]
pub struct MtaArgs {
    /// Store a leading mbox "From " envelope line as it is (by default it is removed and its
    /// sender becomes the Return-Path when none is given or present)
    #[arg(long, help_heading = "Envelope")]
    pub keep_from_line: bool,

    /// Prepend "Return-Path: <ADDR>" (the envelope sender; "" or "<>" for the null sender),
    /// replacing a different Return-Path the MTA put at the top
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    pub return_path: Option<String>,

    /// Prepend "Delivered-To: ADDR", and refuse a message that already carries it (a mail
    /// loop: permanent failure, 5.4.6) before anything is written
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    pub delivered_to: Option<String>,

    /// Prepend "X-Original-To: ADDR" (the recipient before alias expansion)
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    pub original_to: Option<String>,

    /// Take the envelope from the environment the MTA sets for commands (Postfix local and
    /// pipe, OpenSMTPD): SENDER → --return-path, RECIPIENT → --delivered-to,
    /// ORIGINAL_RECIPIENT → --original-to; explicit options win. Never done without this flag
    #[arg(long, help_heading = "Envelope")]
    pub from_env: bool,

    /// Maildir++ quota: SIZE bytes (suffix k, M or G) and optionally COUNT messages, e.g.
    /// "100M" or "100M,5000", or the maildirsize form "104857600S,5000C"; overrides and
    /// replaces the definition in MAILDIR/maildirsize, which is honoured without this option.
    /// One quota covers the maildir and its folders (Maildir++): --folder deliveries and -M
    /// count in the root's maildirsize
    #[arg(long, value_name = "SIZE[,COUNT]", value_parser = parse_quota, help_heading = "Quota and duplicates")]
    pub quota: Option<Limits>,

    /// What a message over quota gets: "defer" (4.2.2, exit 75) or "bounce" (5.2.2)
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = QuotaFull::Defer, help_heading = "Quota and duplicates")]
    pub quota_full: QuotaFull,

    /// Store a message at most once per WINDOW (default 5d; units s, m, h, d), keyed by its
    /// Message-ID or else its content: an MTA retrying after a lost success does not
    /// duplicate it. A suppressed duplicate exits 0 (reported with -v and --json). The
    /// index lives in the maildir delivered to, the --folder if one is given
    /// (mdeliver-dedup.* files)
    #[arg(long, value_name = "WINDOW", num_args = 0..=1, require_equals = true,
          default_missing_value = "5d", value_parser = parse_window, help_heading = "Quota and duplicates")]
    pub dedup: Option<u64>,

    /// Do everything (read, check, write the message to tmp/, decide quota and duplicates)
    /// except publishing; remove what was made and report what would have been done. The
    /// maildir is left unchanged
    #[arg(short = 'n', long, help_heading = "Reporting")]
    pub dry_run: bool,

    /// Print one JSON object per maildir the message went to (or would go to) on standard
    /// output: {"maildir","path","key","size","flags","duplicate","dry_run"}; see README
    #[arg(long, help_heading = "Reporting")]
    pub json: bool,
}

/// The manual's UNDER AN MTA section (shared: [`crate::args::shared_help`]).
pub const MTA_HELP: &str = "\
UNDER AN MTA
  On failure the output begins with an RFC 3463 status line (on standard error, before \
anything else), which Postfix's local(8) and pipe(8) use instead of the exit code's generic \
status; its class follows the exit code (75: 4.x.x, others: 5.x.x):
    4.2.2 mailbox full                     over the Maildir++ quota (75)
    5.2.2 mailbox full                     over quota with --quota-full=bounce (77)
    5.4.6 mail forwarding loop for ADDR    Delivered-To: ADDR already present (65)
    4.2.0 mailbox unavailable: ...         maildir missing (75; 5.2.0 with --strict-exit)
    4.2.0 mailbox not writable: ...        permission, read-only (75; 5.2.0 strict)
    4.3.1 mail system full (...)           disk full (75)
    4.3.0 mail system error: ...           I/O and other temporary errors (75)
    5.6.0 message is empty or unreadable   (65)
    4.3.5 mdeliver is misconfigured        a command-line mistake (75; see EXIT STATUS)

  A leading \"From \" line is removed (its sender becomes Return-Path); Return-Path, \
X-Original-To and Delivered-To that the MTA already put at the top of the header are not \
added twice, and the MTA's own Delivered-To stamp there is not taken for a loop.";

/// Parses `--quota`: `SIZE[,COUNT]` with optional `k`/`M`/`G` and `S`/`C` suffixes, or the
/// `maildirsize` definition form.
pub fn parse_quota(s: &str) -> Result<Limits, String> {
    const HINT: &str = "expected SIZE[,COUNT], e.g. 100M, 100M,5000 or 104857600S,5000C";
    if let Ok(l) = Limits::parse(s) {
        if s.contains(['S', 'C']) {
            return Ok(l);
        }
    }
    let mut parts = s.split(',');
    let size = parts.next().unwrap_or("").trim();
    let count = parts.next().map(str::trim);
    if parts.next().is_some() || size.is_empty() {
        return Err(HINT.to_owned());
    }
    let size = size.strip_suffix('S').unwrap_or(size);
    let (digits, mult) = match size.as_bytes().last() {
        Some(b'k' | b'K') => (&size[..size.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&size[..size.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&size[..size.len() - 1], 1 << 30),
        _ => (size, 1),
    };
    let bytes: u64 = digits.parse().map_err(|_| HINT.to_owned())?;
    let count: Option<u64> = match count {
        None => None,
        Some(c) => Some(
            c.strip_suffix('C')
                .unwrap_or(c)
                .parse()
                .map_err(|_| HINT.to_owned())?,
        ),
    };
    let bytes = bytes.checked_mul(mult).ok_or_else(|| HINT.to_owned())?;
    Ok(Limits {
        bytes: (bytes != 0).then_some(bytes),
        count: count.filter(|&c| c != 0),
    })
}

/// Parses a `--dedup` window: a number with an optional unit `s`, `m`, `h` or `d`; seconds.
pub fn parse_window(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.as_bytes().last() {
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 3600),
        Some(b'd') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(unit))
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("expected a window such as 5d, 12h, 30m or 3600s; got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_forms() {
        let l = |b: Option<u64>, c: Option<u64>| Limits { bytes: b, count: c };
        assert_eq!(parse_quota("100M"), Ok(l(Some(100 << 20), None)));
        assert_eq!(parse_quota("100M,5000"), Ok(l(Some(100 << 20), Some(5000))));
        assert_eq!(parse_quota("1000S,5C"), Ok(l(Some(1000), Some(5))));
        assert_eq!(parse_quota("5C"), Ok(l(None, Some(5))));
        assert_eq!(parse_quota("2048"), Ok(l(Some(2048), None)));
        assert_eq!(parse_quota("0,3"), Ok(l(None, Some(3))));
        assert!(parse_quota("x").is_err());
        assert!(parse_quota("1,2,3").is_err());
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("5d"), Ok(432_000));
        assert_eq!(parse_window("90"), Ok(90));
        assert_eq!(parse_window("2h"), Ok(7200));
        assert!(parse_window("0").is_err());
        assert!(parse_window("d").is_err());
    }
}
