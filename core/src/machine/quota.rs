//! Maildir++ quota (`maildirsize`), sans-io.
//!
//! # The file (Courier's Maildir++ specification, `README.maildirquota`)
//! `maildirsize` in the maildir root holds a *quota definition* line, `NNNS,NNNC` (bytes and/or
//! messages; either part optional; `0` or absent means "no limit on that"), followed by lines of
//! two integers, `<bytes> <count>`, that are summed: a recalculation writes one line with the
//! totals, each delivery appends `<size> 1` with `O_APPEND`, each removal `-<size> -1`.
//!
//! # The decision ([`decide`])
//! - No `maildirsize` and no definition given by the caller: no quota.
//! - Recalculate when the file is missing but the caller gives a definition, when it is at
//!   least [`RECALC_SIZE`] (5120) bytes, unparseable (NUL bytes, a malformed or unterminated
//!   line: a torn append), sums to a negative total, or its definition differs from the
//!   caller's.
//! - A message of `S` bytes fits when `total + S <= limit` and `count + 1 <= limit` (Courier's
//!   `checkQuota`: over when `size > quota` *after adding the message*). The spec does not let
//!   a message cross the limit because the maildir is currently under it.
//! - When the sums say "over", they are trusted only if the file has exactly one size line (a
//!   fresh recalculation) and is younger than [`STALE_SECS`] (15 minutes); otherwise the
//!   maildir is recalculated and the fresh numbers decide. So an overcount never refuses mail
//!   for long, and a maildir cleaned up by a non-Maildir++ client reopens within 15 minutes.
//!
//! # One quota for the tree
//! Maildir++ keeps one `maildirsize` for a maildir and all its folders (Courier and Dovecot read
//! only the root's). A folder's check ([`CheckOptions::folder`]) reads, appends to and replaces
//! the file of its top maildir, [`Dir::Top`]; no folder ever gets a file of its own.
//!
//! # Recalculation ([`QuotaCheck`], states `Recalc*`)
//! First, once per check, remove what killed recalculations left: every `tmp/*.maildirsize`
//! older than [`LEFTOVER_SECS`] (best effort). Then stat `maildirsize`, the top's `new/` and
//! `cur/` (directory mtimes); list new/ then cur/, then every folder of the top (`.Name`,
//! except [`TRASH`]; [`Op::OpenFolderDir`], nested in the top's listing) with its new/ and
//! cur/, summing `,S=` sizes from names (`stat` for names without one, through the open
//! listing, [`Op::StatListed`]; a name that vanished is skipped; messages flagged `T` are not
//! counted, as Courier's default build does); write the fresh file, unnamed where the
//! filesystem can, and name it `tmp/<unique>.maildirsize` once flushed ([`Op::WriteFile`] with
//! `anonymous`); stat `maildirsize` again and, when it changed (someone appended during the
//! scan), start over; rename the fresh file over `maildirsize` (the one place where replacing
//! is intended: the file is a cache of what the directories hold); stat `new/` and `cur/`
//! again and start over when their mtimes moved (the top's only: a folder's change during
//! the scan is caught by its append, which every deliverer makes). After
//! [`CheckOptions::max_recalc`] attempts the fresh numbers decide anyway (`raced: true`).
//!
//! # Concurrency: what overshoot is possible
//! Every deliverer checks before publishing and appends its line after publishing (the driver
//! opens `maildirsize` for the append only then, so an append never lands in a file that a
//! recalculation replaced long before). Take the last deliverer `L` to pass its check. Every
//! message stored in the end was (a) appended before `L`'s check (counted in the sum `L` read),
//! (b) `L`'s own, or (c) in flight at `L`'s check: checked but not yet appended. With `N`
//! concurrent deliverers (one message each in flight) there are at most `N - 1` of (c), so
//! ```text
//! final bytes <= limit + (N - 1) * M      final count <= limit + (N - 1)
//! ```
//! where `M` is the largest of those messages ([`overshoot_bound`]; the arithmetic is tested
//! below with `N` machines interleaved on one in-memory maildir).
//!
//! A recalculation can lose an appended line only when the append lands in the old file after
//! the recalculator's last `stat` of it and before its `rename`, for a message that was
//! published after the scan listed its directory (two consecutive system calls of the
//! recalculator); and when that message's publish also falls in the same second as the
//! directory mtime check. Each such loss undercounts by one message (at most `N - 1` per
//! recalculation, as each is one in-flight delivery) until the next recalculation, which the
//! rules above force as soon as the sums say "over" with more than one line. So in the worst
//! case the overshoot is `2 (N - 1)` messages: the spec's "a few extra messages" made precise.
//!
//! # Drivers
//! [`check`] runs a [`QuotaCheck`] to completion; [`account_op`] is the append of the
//! delivery line. The composed MTA machine ([`crate::machine::mta`]) checks at the delivery's
//! first publish (when the size is known and nothing is visible yet) and accounts before it
//! publishes.
//!
//! # Partial
//! A folder that is a symbolic link is not counted (folders are opened without following
//! links). A recalculation's race check watches the top's new/ and cur/, not the folders'.

use core::fmt::Write as _;

use crate::env::Env;
use crate::error::{Error, ErrorKind, Phase};
use crate::fs::{Channel, Dir, Fs, Op, OpResult, Persist};
use crate::maildir::name::{InfoSep, NameBuf, ParsedName, Unique};

/// The quota file's name in the maildir root.
pub const MAILDIRSIZE: &str = "maildirsize";

/// A `maildirsize` of this many bytes or more is recalculated (and is never read further).
pub const RECALC_SIZE: usize = 5120;

/// An "over quota" answer from a file older than this (seconds) is re-checked by recalculating.
pub const STALE_SECS: u64 = 15 * 60;

/// The limits of a quota definition; `None` means unlimited.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Total size of all messages, bytes (`S`).
    pub bytes: Option<u64>,
    /// Number of messages (`C`).
    pub count: Option<u64>,
}

/// A quota definition that is not `NNNS`, `NNNC` or `NNNS,NNNC`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BadDefinition;

impl core::fmt::Display for BadDefinition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("quota definition must look like 1000000S, 500C or 1000000S,500C")
    }
}

/// A maildir's usage (or a change to it).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Bytes.
    pub bytes: u64,
    /// Messages.
    pub count: u64,
}

impl Usage {
    /// `self + other`, saturating.
    pub const fn plus(self, other: Usage) -> Usage {
        Usage {
            bytes: self.bytes.saturating_add(other.bytes),
            count: self.count.saturating_add(other.count),
        }
    }

    /// One message of `size` bytes.
    pub const fn message(size: u64) -> Usage {
        Usage {
            bytes: size,
            count: 1,
        }
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

impl Limits {
    /// No limits at all.
    pub const NONE: Limits = Limits {
        bytes: None,
        count: None,
    };

    /// Whether nothing is limited.
    pub const fn is_none(&self) -> bool {
        self.bytes.is_none() && self.count.is_none()
    }

    /// Parses a definition strictly (for definitions a person types): comma-separated
    /// `<digits>S` / `<digits>C`, each at most once, blanks around items allowed; `0` means
    /// unlimited; the empty string means no quota.
    pub fn parse(s: &str) -> Result<Limits, BadDefinition> {
        // Byte positions below must fall on character boundaries.
        if !s.is_ascii() {
            return Err(BadDefinition);
        }
        let s = s.trim();
        let mut l = Limits::NONE;
        if s.is_empty() {
            return Ok(l);
        }
        let (mut seen_s, mut seen_c) = (false, false);
        for item in s.split(',') {
            let item = item.trim();
            let (digits, kind) = item.split_at(item.len().saturating_sub(1));
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadDefinition);
            }
            let v: u64 = digits.parse().map_err(|_| BadDefinition)?;
            match kind {
                "S" if !seen_s => {
                    seen_s = true;
                    l.bytes = nonzero(v);
                }
                "C" if !seen_c => {
                    seen_c = true;
                    l.count = nonzero(v);
                }
                _ => return Err(BadDefinition),
            }
        }
        Ok(l)
    }

    /// Parses a definition as Courier reads the first line of `maildirsize`: every run of
    /// digits followed by `S` or `C` sets that limit; anything else is skipped.
    pub fn parse_lenient(s: &[u8]) -> Limits {
        let mut l = Limits::NONE;
        let mut i = 0;
        while i < s.len() {
            if !s[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let mut v: u64 = 0;
            while i < s.len() && s[i].is_ascii_digit() {
                v = v.saturating_mul(10).saturating_add(u64::from(s[i] - b'0'));
                i += 1;
            }
            match s.get(i) {
                Some(b'S') => l.bytes = nonzero(v),
                Some(b'C') => l.count = nonzero(v),
                _ => {}
            }
        }
        l
    }

    /// The definition line without its newline: `NNNS`, `NNNC`, `NNNS,NNNC`, or `0S` when
    /// nothing is limited.
    pub fn emit(&self) -> heapless::String<48> {
        let mut s = heapless::String::new();
        match (self.bytes, self.count) {
            (Some(b), Some(c)) => write!(s, "{b}S,{c}C"),
            (Some(b), None) => write!(s, "{b}S"),
            (None, Some(c)) => write!(s, "{c}C"),
            (None, None) => write!(s, "0S"),
        }
        .expect("48 bytes hold two u64 and three letters");
        s
    }

    /// Whether `usage` is over these limits (strictly greater, as Courier's `checkQuota`).
    pub fn exceeded_by(&self, usage: Usage) -> bool {
        self.bytes.is_some_and(|b| usage.bytes > b) || self.count.is_some_and(|c| usage.count > c)
    }
}

/// Why a `maildirsize` must be recalculated.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecalcReason {
    /// There is no file, but the caller gave a definition.
    Missing,
    /// The file is at least [`RECALC_SIZE`] bytes.
    TooBig,
    /// NUL bytes, a malformed line, or an unterminated last line (a torn or unfinished append).
    Unparseable,
    /// The sums are negative.
    Negative,
    /// The caller's definition differs from the file's.
    DefinitionChanged,
    /// The sums say "over", but the file has more than one size line or is 15 minutes old.
    OverAndStale,
}

/// What a `maildirsize` says.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SizeFile {
    /// The definition (first line, read leniently).
    pub limits: Limits,
    /// The sums of the size lines (zero when negative or unparseable).
    pub usage: Usage,
    /// Number of size lines after the definition.
    pub lines: u32,
    /// Why the sums cannot be used, if they cannot.
    pub problem: Option<RecalcReason>,
}

fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Every sum a recalculation can write (up to i64::MAX) must read back.
    let mut v: i64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

fn parse_size_line(line: &[u8]) -> Option<(i64, i64)> {
    let mut it = line
        .split(|b| *b == b' ' || *b == b'\t' || *b == b'\r')
        .filter(|f| !f.is_empty());
    let bytes = parse_int(it.next()?)?;
    let count = parse_int(it.next()?)?;
    it.next().is_none().then_some((bytes, count))
}

/// Reads the contents of a `maildirsize` (the first [`RECALC_SIZE`] bytes are enough: a longer
/// file is recalculated anyway, and only its first line is needed).
pub fn parse_maildirsize(data: &[u8]) -> SizeFile {
    let mut out = SizeFile::default();
    let first_end = data.iter().position(|&b| b == b'\n');
    out.limits = Limits::parse_lenient(&data[..first_end.unwrap_or(data.len())]);
    if data.len() >= RECALC_SIZE {
        out.problem = Some(RecalcReason::TooBig);
        return out;
    }
    let Some(first_end) = first_end else {
        out.problem = Some(RecalcReason::Unparseable);
        return out;
    };
    if data.contains(&0) {
        out.problem = Some(RecalcReason::Unparseable);
        return out;
    }
    let rest = &data[first_end + 1..];
    if !rest.is_empty() && rest.last() != Some(&b'\n') {
        out.problem = Some(RecalcReason::Unparseable);
        return out;
    }
    let (mut bytes, mut count): (i64, i64) = (0, 0);
    for line in rest.split(|&b| b == b'\n') {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let Some((b, c)) = parse_size_line(line) else {
            out.problem = Some(RecalcReason::Unparseable);
            return out;
        };
        match (bytes.checked_add(b), count.checked_add(c)) {
            (Some(nb), Some(nc)) => (bytes, count) = (nb, nc),
            _ => {
                out.problem = Some(RecalcReason::Unparseable);
                return out;
            }
        }
        out.lines += 1;
    }
    if bytes < 0 || count < 0 {
        out.problem = Some(RecalcReason::Negative);
        return out;
    }
    out.usage = Usage {
        bytes: bytes as u64,
        count: count as u64,
    };
    out
}

/// The outcome of a quota check for one message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The maildir has no quota; there is nothing to append after delivering.
    NoQuota,
    /// The message fits; append [`delivery_line`] after publishing it.
    Allow,
    /// The message does not fit: a temporary failure (`4.2.2 mailbox full`) by default.
    Over,
}

/// What [`decide`] concludes from a file.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A final answer.
    Final(Verdict),
    /// The sums cannot be trusted: recalculate, then [`decide_fresh`].
    Recalculate(RecalcReason),
}

/// Decides for a message of `message` bytes from the file's contents (`None`: no file), its
/// mtime, the time now, and the caller's definition, if it gives one (which wins over the
/// file's). The rules are in the module documentation.
pub fn decide(
    file: Option<&SizeFile>,
    file_mtime: u64,
    now: u64,
    given: Option<Limits>,
    message: u64,
) -> Decision {
    let Some(file) = file else {
        return match given {
            Some(l) if !l.is_none() => Decision::Recalculate(RecalcReason::Missing),
            _ => Decision::Final(Verdict::NoQuota),
        };
    };
    let limits = given.unwrap_or(file.limits);
    if limits.is_none() {
        return Decision::Final(Verdict::NoQuota);
    }
    if let Some(reason) = file.problem {
        return Decision::Recalculate(reason);
    }
    if limits != file.limits {
        return Decision::Recalculate(RecalcReason::DefinitionChanged);
    }
    if !limits.exceeded_by(file.usage.plus(Usage::message(message))) {
        return Decision::Final(Verdict::Allow);
    }
    if file.lines == 1 && now < file_mtime.saturating_add(STALE_SECS) {
        Decision::Final(Verdict::Over)
    } else {
        Decision::Recalculate(RecalcReason::OverAndStale)
    }
}

/// Decides from freshly recalculated sums.
pub fn decide_fresh(limits: Limits, usage: Usage, message: u64) -> Verdict {
    if limits.is_none() {
        Verdict::NoQuota
    } else if limits.exceeded_by(usage.plus(Usage::message(message))) {
        Verdict::Over
    } else {
        Verdict::Allow
    }
}

/// A size line, `<bytes> <count>\n` (negative for removals).
pub fn line(bytes: i64, count: i64) -> heapless::String<48> {
    let mut s = heapless::String::new();
    writeln!(s, "{bytes} {count}").expect("48 bytes hold two i64");
    s
}

/// The line a delivery of `size` bytes appends: `<size> 1\n`.
pub fn delivery_line(size: u64) -> heapless::String<48> {
    line(i64::try_from(size).unwrap_or(i64::MAX), 1)
}

/// The contents of a freshly calculated `maildirsize`: the definition and one size line.
pub fn fresh_contents(limits: Limits, usage: Usage) -> heapless::String<112> {
    let mut s = heapless::String::new();
    write!(
        s,
        "{}\n{} {}\n",
        limits.emit(),
        i64::try_from(usage.bytes).unwrap_or(i64::MAX),
        i64::try_from(usage.count).unwrap_or(i64::MAX)
    )
    .expect("112 bytes hold a definition and two i64");
    s
}

/// The most a maildir can end up over its limits when `concurrent` deliverers check and
/// deliver at once, each with a message of at most `max_message` bytes, and no recalculation
/// loses a line: `(N - 1) * M` bytes and `N - 1` messages (see the module documentation; a
/// lost line during a recalculation can add up to another `N - 1` messages).
pub const fn overshoot_bound(concurrent: u32, max_message: u64) -> Usage {
    let others = concurrent.saturating_sub(1) as u64;
    Usage {
        bytes: others.saturating_mul(max_message),
        count: others,
    }
}

/// The append that accounts for a delivered message ([`Fs::append`] on `maildirsize` in
/// `base`, [`CheckOptions::base`]; no create: a missing file means no quota), flushed. `line`
/// comes from [`delivery_line`].
pub fn account_op(base: Dir, line: &str) -> Op<'_> {
    Op::Append {
        dir: base,
        name: MAILDIRSIZE,
        data: line.as_bytes(),
        persist: Persist::Flush,
    }
}

/// Options of a [`QuotaCheck`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckOptions {
    /// A definition that overrides (and, on recalculation, replaces) the file's (`--quota`).
    pub given: Option<Limits>,
    /// Recalculation attempts when concurrent changes are detected.
    pub max_recalc: u32,
    /// Count messages flagged `T` (trashed); Courier's default build does not.
    pub count_trashed: bool,
    /// The info separator of names in cur/.
    pub sep: InfoSep,
    /// The maildir is a Maildir++ folder (`--folder`): the quota is its top maildir's
    /// ([`Dir::Top`]), one `maildirsize` for the whole tree.
    pub folder: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            given: None,
            max_recalc: 5,
            count_trashed: false,
            sep: InfoSep::COLON,
            folder: false,
        }
    }
}

impl CheckOptions {
    /// The maildir whose `maildirsize` applies: the top of the Maildir++ tree.
    pub const fn base(&self) -> Dir {
        if self.folder {
            Dir::Top
        } else {
            Dir::Root
        }
    }
}

/// A leftover `tmp/<unique>.maildirsize` (a recalculation killed between naming its fresh file
/// and renaming it over `maildirsize`) older than this many seconds is removed by the next
/// recalculation. A live recalculation holds that name for three system calls (link, stat,
/// rename; on a filesystem without unnamed files: write, flush, stat, rename), far less.
pub const LEFTOVER_SECS: u64 = 15 * 60;

/// The Maildir++ folder that a recalculation does not count: `.Trash` (with Courier's
/// default build; its messages are on their way out).
pub const TRASH: &[u8] = b".Trash";

/// Whether `name`, an entry of the top maildir, is a Maildir++ folder the quota counts.
fn counted_folder(name: &[u8]) -> bool {
    name.len() > 1 && name[0] == b'.' && name != b".." && name != TRASH
}

/// A finished check.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checked {
    /// The answer.
    pub verdict: Verdict,
    /// The limits that applied.
    pub limits: Limits,
    /// The usage before this message.
    pub usage: Usage,
    /// Whether `maildirsize` was recalculated (and replaced).
    pub recalculated: Option<RecalcReason>,
    /// Concurrent changes outlasted [`CheckOptions::max_recalc`]: the numbers are a fresh scan,
    /// but the file may not match them.
    pub raced: bool,
}

/// The result of a check.
pub type QuotaOutcome = Result<Checked, Error>;

/// What a [`QuotaCheck`] wants next.
pub type QuotaStep<'a> = crate::machine::Step<'a, QuotaOutcome>;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum State {
    StatFile,
    ReadFile,
    SweepOpen,
    SweepNext,
    SweepStat,
    SweepUnlink,
    SweepClose,
    RecalcStatOld,
    RecalcStatDir(Dir),
    ListOpen(Dir),
    ListNext(Dir),
    ListStat(Dir),
    ListClose(Dir),
    FoldersOpen,
    FoldersNext,
    FolderOpen(Dir),
    FolderNext(Dir),
    /// A name without `,S=` of the listing open (a folder's, or in a folder's delivery the
    /// top's), `stat`ed through it; then back to the listing.
    StatListed(Dir, bool),
    FolderClose(Dir),
    FoldersClose,
    CreateTmp,
    CheckOld,
    Rename,
    RecheckDir(Dir),
    FailUnlinkTmp,
    RaceUnlinkTmp,
    Finished,
}

/// Identity of `maildirsize` as seen by `stat` (absent, or size and mtime).
type FileSeen = Option<(u64, u64)>;

/// The quota check for one message, recalculating `maildirsize` when needed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuotaCheck {
    opts: CheckOptions,
    message: u64,
    state: State,
    file_seen: FileSeen,
    limits: Limits,
    reason: Option<RecalcReason>,
    attempts: u32,
    create_attempts: u32,
    dir_mtime: u64,
    dir_mtime_again: u64,
    sum: Usage,
    entry: NameBuf,
    /// The folder being counted (`.Name`), or a leftover in tmp/ being looked at.
    folder: crate::fs::EntryName,
    tmp: NameBuf,
    host: heapless::String<64>,
    contents: heapless::String<112>,
    tmp_exists: bool,
    raced: bool,
    result: Option<QuotaOutcome>,
}

/// The `,S=<size>` of a name given as bytes.
fn size_in_name(name: &[u8]) -> Option<u64> {
    let at = name.windows(3).position(|w| w == b",S=")? + 3;
    let digits = &name[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    core::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn err_of(r: OpResult) -> ErrorKind {
    match r {
        OpResult::Err(e) | OpResult::SourceErr(e) => e,
        _ => ErrorKind::Io,
    }
}

impl QuotaCheck {
    /// A check for a message of `message` bytes.
    pub fn new<E: Env + ?Sized>(opts: CheckOptions, message: u64, env: &mut E) -> QuotaCheck {
        let mut host = heapless::String::new();
        for c in env.host().chars() {
            if host.push(c).is_err() {
                break;
            }
        }
        QuotaCheck {
            opts,
            message,
            state: State::StatFile,
            file_seen: None,
            limits: Limits::NONE,
            reason: None,
            attempts: 0,
            create_attempts: 0,
            dir_mtime: 0,
            dir_mtime_again: 0,
            sum: Usage::default(),
            entry: NameBuf::new(),
            folder: crate::fs::EntryName::new(),
            tmp: NameBuf::new(),
            host,
            contents: heapless::String::new(),
            tmp_exists: false,
            raced: false,
            result: None,
        }
    }

    /// Whether the check has finished.
    pub fn is_done(&self) -> bool {
        self.state == State::Finished
    }

    /// The next step. Calling it again without feeding returns the same step.
    pub fn poll(&self) -> QuotaStep<'_> {
        let base = self.opts.base();
        let size_file = Op::Stat {
            dir: base,
            name: MAILDIRSIZE,
        };
        let leftover = || core::str::from_utf8(&self.folder).unwrap_or_default();
        match self.state {
            State::StatFile | State::RecalcStatOld | State::CheckOld => QuotaStep::Op(size_file),
            State::ReadFile => QuotaStep::Op(Op::Read {
                dir: base,
                name: MAILDIRSIZE,
            }),
            State::SweepOpen => QuotaStep::Op(Op::OpenDir { dir: Dir::Tmp }),
            State::SweepStat => QuotaStep::Op(Op::Stat {
                dir: Dir::Tmp,
                name: leftover(),
            }),
            State::SweepUnlink => QuotaStep::Op(Op::Unlink {
                dir: Dir::Tmp,
                name: leftover(),
            }),
            State::RecalcStatDir(d) | State::RecheckDir(d) => QuotaStep::Op(Op::Stat {
                dir: base,
                name: d.as_str(),
            }),
            State::ListOpen(dir) if self.opts.folder => QuotaStep::Op(Op::OpenFolderDir {
                base,
                folder: b"",
                dir,
            }),
            State::ListOpen(dir) => QuotaStep::Op(Op::OpenDir { dir }),
            State::FoldersOpen => QuotaStep::Op(Op::OpenDir { dir: base }),
            State::FolderOpen(dir) => QuotaStep::Op(Op::OpenFolderDir {
                base,
                folder: &self.folder,
                dir,
            }),
            State::ListNext(_) | State::SweepNext | State::FoldersNext | State::FolderNext(_) => {
                QuotaStep::Op(Op::NextEntry)
            }
            State::ListClose(_)
            | State::SweepClose
            | State::FolderClose(_)
            | State::FoldersClose => QuotaStep::Op(Op::CloseDir),
            State::ListStat(dir) => QuotaStep::Op(Op::Stat {
                dir,
                name: self.entry.as_str(),
            }),
            State::StatListed(..) => QuotaStep::Op(Op::StatListed {
                name: self.entry.as_str(),
            }),
            // Written unnamed where the filesystem can, and named only once complete: a crash
            // while it is written leaves nothing in tmp/.
            State::CreateTmp => QuotaStep::Op(Op::WriteFile {
                dir: Dir::Tmp,
                name: self.tmp.as_str(),
                data: self.contents.as_bytes(),
                persist: Persist::Flush,
                anonymous: true,
            }),
            State::Rename => QuotaStep::Op(Op::Rename {
                from: (Dir::Tmp, self.tmp.as_str()),
                to: (base, MAILDIRSIZE),
                noreplace: false,
            }),
            State::FailUnlinkTmp | State::RaceUnlinkTmp => QuotaStep::Op(Op::Unlink {
                dir: Dir::Tmp,
                name: self.tmp.as_str(),
            }),
            State::Finished => QuotaStep::Done(
                self.result
                    .unwrap_or(Err(Error::new(ErrorKind::Io, Phase::Check))),
            ),
        }
    }

    /// Reports the result of the [`Op`] last returned by [`poll`](Self::poll), with the bytes
    /// it read (a `Read`: the file's start; a `NextEntry`: the name).
    pub fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        let channel = match self.poll() {
            QuotaStep::Op(op) => op.channel(),
            QuotaStep::Done(_) => Channel::Plain,
        };
        match channel {
            Channel::Plain => self.on_op(result, env),
            Channel::File => self.on_file(result, data, env),
            Channel::List => self.on_list(result, data, env),
        }
    }

    fn on_op<E: Env + ?Sized>(&mut self, result: OpResult, env: &mut E) {
        match self.state {
            State::StatFile => match result {
                OpResult::Stat(s) if !s.regular => self.fail(ErrorKind::NotDirectory),
                OpResult::Stat(s) => {
                    self.file_seen = Some((s.size, s.mtime));
                    self.state = State::ReadFile;
                }
                OpResult::Err(ErrorKind::NotFound) => self.decide_missing(env),
                r => self.fail(err_of(r)),
            },
            State::SweepStat => {
                let now = env.now().secs;
                self.state = match result {
                    OpResult::Stat(s)
                        if s.regular && s.mtime.saturating_add(LEFTOVER_SECS) <= now =>
                    {
                        State::SweepUnlink
                    }
                    // Young (a live recalculation's), gone, or unreadable: left alone.
                    _ => State::SweepNext,
                };
            }
            // Best effort: a leftover that cannot be removed now is tried again next time.
            State::SweepUnlink => self.state = State::SweepNext,
            State::RecalcStatOld => match result {
                OpResult::Stat(s) => {
                    self.file_seen = Some((s.size, s.mtime));
                    self.state = State::RecalcStatDir(Dir::New);
                }
                OpResult::Err(ErrorKind::NotFound) => {
                    self.file_seen = None;
                    self.state = State::RecalcStatDir(Dir::New);
                }
                r => self.fail(err_of(r)),
            },
            State::RecalcStatDir(d) => match result {
                OpResult::Stat(s) => {
                    self.dir_mtime = self.dir_mtime.max(s.mtime);
                    self.state = if d == Dir::New {
                        State::RecalcStatDir(Dir::Cur)
                    } else {
                        State::ListOpen(Dir::New)
                    };
                }
                r => self.fail(err_of(r)),
            },
            State::StatListed(d, in_folder) => {
                let back = if in_folder {
                    State::FolderNext(d)
                } else {
                    State::ListNext(d)
                };
                match result {
                    OpResult::Stat(s) => {
                        if s.regular {
                            self.sum = self.sum.plus(Usage::message(s.size));
                        }
                        self.state = back;
                    }
                    OpResult::Err(ErrorKind::NotFound) => self.state = back,
                    // A listing that does not know its directory (WASI): size unknown.
                    OpResult::Err(ErrorKind::Unsupported) => {
                        self.sum = self.sum.plus(Usage::message(0));
                        self.state = back;
                    }
                    r => self.fail(err_of(r)),
                }
            }
            State::ListStat(d) => match result {
                OpResult::Stat(s) => {
                    if s.regular {
                        self.sum = self.sum.plus(Usage::message(s.size));
                    }
                    self.state = State::ListNext(d);
                }
                OpResult::Err(ErrorKind::NotFound) => self.state = State::ListNext(d),
                r => self.fail(err_of(r)),
            },
            State::CheckOld => {
                let now_seen = match result {
                    OpResult::Stat(s) => Some((s.size, s.mtime)),
                    OpResult::Err(ErrorKind::NotFound) => None,
                    r => return self.fail(err_of(r)),
                };
                if now_seen == self.file_seen {
                    self.state = State::Rename;
                } else {
                    self.state = State::RaceUnlinkTmp;
                }
            }
            State::Rename => match result {
                OpResult::Done => {
                    self.tmp_exists = false;
                    self.dir_mtime_again = 0;
                    self.state = State::RecheckDir(Dir::New);
                }
                r => self.fail(err_of(r)),
            },
            State::RecheckDir(d) => match result {
                OpResult::Stat(s) => {
                    self.dir_mtime_again = self.dir_mtime_again.max(s.mtime);
                    if d == Dir::New {
                        self.state = State::RecheckDir(Dir::Cur);
                    } else if self.dir_mtime_again == self.dir_mtime {
                        self.finish_fresh();
                    } else {
                        self.retry_recalc(env);
                    }
                }
                r => self.fail(err_of(r)),
            },
            State::RaceUnlinkTmp => {
                self.tmp_exists = false;
                match result {
                    OpResult::Done | OpResult::Err(ErrorKind::NotFound) => self.retry_recalc(env),
                    r => self.fail(err_of(r)),
                }
            }
            State::FailUnlinkTmp => {
                self.tmp_exists = false;
                self.cleanup();
            }
            _ => self.fail(ErrorKind::Io),
        }
    }

    fn on_file<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        match (self.state, result) {
            (State::ReadFile, OpResult::Read(n)) => {
                let data = &data[..n.min(data.len())];
                let mut file = parse_maildirsize(data);
                if let Some((size, _)) = self.file_seen {
                    if size >= RECALC_SIZE as u64 && file.problem.is_none() {
                        file.problem = Some(RecalcReason::TooBig);
                    }
                }
                let mtime = self.file_seen.map_or(0, |(_, m)| m);
                let now = env.now().secs;
                match decide(Some(&file), mtime, now, self.opts.given, self.message) {
                    Decision::Final(v) => {
                        self.sum = file.usage;
                        self.finish(v, self.opts.given.unwrap_or(file.limits))
                    }
                    Decision::Recalculate(reason) => {
                        self.begin_recalc(self.opts.given.unwrap_or(file.limits), reason, env)
                    }
                }
            }
            (State::ReadFile, OpResult::Err(ErrorKind::NotFound)) => self.decide_missing(env),
            (State::CreateTmp, OpResult::Done) => {
                self.tmp_exists = true;
                self.state = State::CheckOld;
            }
            (State::CreateTmp, OpResult::Err(ErrorKind::Exists)) if self.create_attempts < 16 => {
                self.create_attempts += 1;
                self.fresh_tmp(env);
            }
            (_, OpResult::Err(e)) => self.fail(e),
            _ => self.fail(ErrorKind::Io),
        }
    }

    fn on_list<E: Env + ?Sized>(&mut self, result: OpResult, entry: &[u8], env: &mut E) {
        match (self.state, result) {
            (State::ListOpen(d), OpResult::Done) => self.state = State::ListNext(d),
            (State::ListNext(d), OpResult::Entry) => self.count_entry(d, entry),
            (State::ListNext(d), OpResult::End) => self.state = State::ListClose(d),
            (State::ListClose(Dir::New), OpResult::Done) => self.state = State::ListOpen(Dir::Cur),
            (State::ListClose(_), OpResult::Done) => self.state = State::FoldersOpen,
            (State::FoldersOpen, OpResult::Done) => self.state = State::FoldersNext,
            (State::FoldersNext, OpResult::Entry) => {
                if counted_folder(entry) {
                    self.folder.clear();
                    let _ = self.folder.extend_from_slice(entry);
                    self.state = State::FolderOpen(Dir::New);
                }
            }
            (State::FoldersNext, OpResult::End) => self.state = State::FoldersClose,
            (State::FolderOpen(d), OpResult::Done) => self.state = State::FolderNext(d),
            // A dot file, a symbolic link, a folder without this subdirectory: nothing here.
            (
                State::FolderOpen(d),
                OpResult::Err(ErrorKind::NotFound | ErrorKind::NotDirectory),
            ) => self.next_folder_dir(d),
            (State::FolderNext(d), OpResult::Entry) => {
                self.count_name(entry, State::StatListed(d, true))
            }
            (State::FolderNext(d), OpResult::End) => self.state = State::FolderClose(d),
            (State::FolderClose(d), OpResult::Done) => self.next_folder_dir(d),
            (State::FoldersClose, OpResult::Done) => {
                self.contents = fresh_contents(self.limits, self.sum);
                self.create_attempts = 0;
                self.fresh_tmp(env);
            }
            (State::SweepOpen, OpResult::Done) => self.state = State::SweepNext,
            (State::SweepNext, OpResult::Entry) => {
                if entry.ends_with(b".maildirsize") && core::str::from_utf8(entry).is_ok() {
                    self.folder.clear();
                    let _ = self.folder.extend_from_slice(entry);
                    self.state = State::SweepStat;
                }
            }
            (State::SweepNext, OpResult::End) => self.state = State::SweepClose,
            (State::SweepClose, _) => self.state = State::RecalcStatOld,
            // The sweep is best effort: a tmp/ that cannot be listed is not the quota's concern.
            (State::SweepOpen | State::SweepNext, OpResult::Err(_)) => {
                self.state = if self.state == State::SweepOpen {
                    State::RecalcStatOld
                } else {
                    State::SweepClose
                }
            }
            (_, OpResult::Err(e)) => self.fail(e),
            _ => self.fail(ErrorKind::Io),
        }
    }

    /// After `d` of the folder being counted: its cur/, or the next folder.
    fn next_folder_dir(&mut self, d: Dir) {
        self.state = if d == Dir::New {
            State::FolderOpen(Dir::Cur)
        } else {
            State::FoldersNext
        };
    }

    /// A name of the top maildir's new/ or cur/: `stat`ed for its size when it has no `,S=`
    /// (by name in this maildir; in a folder's delivery, through the top's listing).
    fn count_entry(&mut self, d: Dir, entry: &[u8]) {
        let stat = if self.opts.folder {
            State::StatListed(d, false)
        } else {
            State::ListStat(d)
        };
        self.count_name(entry, stat)
    }

    /// Counts the message named `entry`: its size is its `,S=`, else the state `stat` finds
    /// it out.
    fn count_name(&mut self, entry: &[u8], stat: State) {
        let Ok(entry) = core::str::from_utf8(entry) else {
            // A name that is not UTF-8 (copied from an old system) is a message like any other:
            // counted, with the size its `,S=` says (it cannot be named in a `stat` here).
            if entry.first() != Some(&b'.') {
                self.sum = self
                    .sum
                    .plus(Usage::message(size_in_name(entry).unwrap_or(0)));
            }
            return;
        };
        let Ok(parsed) = ParsedName::parse(entry, self.opts.sep) else {
            return; // dot files and the like are not messages
        };
        if !self.opts.count_trashed && parsed.flags.contains(b'T') {
            return;
        }
        match parsed.size() {
            Some(size) => self.sum = self.sum.plus(Usage::message(size)),
            None => {
                self.entry.clear();
                let _ = self.entry.push_str(entry);
                self.state = stat;
            }
        }
    }

    fn decide_missing<E: Env + ?Sized>(&mut self, env: &mut E) {
        self.file_seen = None;
        match decide(None, 0, 0, self.opts.given, self.message) {
            Decision::Final(v) => self.finish(v, Limits::NONE),
            Decision::Recalculate(reason) => {
                let limits = self.opts.given.unwrap_or(Limits::NONE);
                self.begin_recalc(limits, reason, env)
            }
        }
    }

    fn begin_recalc<E: Env + ?Sized>(&mut self, limits: Limits, reason: RecalcReason, _: &mut E) {
        if limits.is_none() {
            return self.finish(Verdict::NoQuota, limits);
        }
        self.limits = limits;
        self.reason = Some(reason);
        self.start_attempt();
        // Once per check, before the first attempt: what killed recalculations left in tmp/.
        self.state = State::SweepOpen;
    }

    fn start_attempt(&mut self) {
        self.attempts += 1;
        self.sum = Usage::default();
        self.dir_mtime = 0;
        self.state = State::RecalcStatOld;
    }

    fn retry_recalc<E: Env + ?Sized>(&mut self, _: &mut E) {
        if self.attempts >= self.opts.max_recalc.max(1) {
            self.raced = true;
            self.finish_fresh();
        } else {
            self.start_attempt();
        }
    }

    fn fresh_tmp<E: Env + ?Sized>(&mut self, env: &mut E) {
        let u = Unique {
            time: env.now(),
            pid: env.pid(),
            counter: env.next_counter(),
            random: env.random_u64(),
            dev_ino: None,
        };
        self.tmp = u.emit_tmp(&self.host, self.opts.sep).unwrap_or_default();
        let _ = self.tmp.push_str(".maildirsize");
        self.state = State::CreateTmp;
    }

    fn finish_fresh(&mut self) {
        let v = decide_fresh(self.limits, self.sum, self.message);
        self.result = Some(Ok(Checked {
            verdict: v,
            limits: self.limits,
            usage: self.sum,
            recalculated: self.reason,
            raced: self.raced,
        }));
        self.state = State::Finished;
    }

    fn finish(&mut self, verdict: Verdict, limits: Limits) {
        self.result = Some(Ok(Checked {
            verdict,
            limits,
            usage: self.sum,
            recalculated: None,
            raced: false,
        }));
        self.state = State::Finished;
    }

    fn fail(&mut self, kind: ErrorKind) {
        if self.result.is_none() {
            // Listing new/ and cur/ is about the maildir; everything else is about the file.
            let phase = match self.state {
                State::RecalcStatDir(_)
                | State::RecheckDir(_)
                | State::ListOpen(_)
                | State::ListNext(_)
                | State::ListStat(_)
                | State::ListClose(_)
                | State::FoldersOpen
                | State::FoldersNext
                | State::FolderOpen(_)
                | State::FolderNext(_)
                | State::StatListed(..)
                | State::FolderClose(_)
                | State::FoldersClose => Phase::Check,
                _ => Phase::Quota,
            };
            self.result = Some(Err(Error::new(kind, phase)));
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        self.state = if self.tmp_exists {
            State::FailUnlinkTmp
        } else {
            State::Finished
        };
    }
}

/// Runs a [`QuotaCheck`] for a message of `message` bytes to completion on `fs`. `buf` holds
/// `maildirsize` while it is read: give it at least [`RECALC_SIZE`] bytes.
pub fn check<F, E>(
    fs: &mut F,
    env: &mut E,
    opts: CheckOptions,
    message: u64,
    buf: &mut [u8],
) -> QuotaOutcome
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
{
    let mut m = QuotaCheck::new(opts, message, env);
    crate::machine::run(&mut m, fs, env, &mut &b""[..], buf)
}

impl crate::machine::Machine for QuotaCheck {
    type Output = QuotaOutcome;
    fn poll(&self) -> QuotaStep<'_> {
        QuotaCheck::poll(self)
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E) {
        QuotaCheck::feed(self, result, data, env)
    }
    fn observe(&mut self, _chunk: &[u8]) {}
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::{setup, MemFs, TestEnv};
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Appends the delivery line of a `size`-byte message, as the composed machine does.
    pub(crate) fn account(fs: &mut MemFs, size: u64) -> OpResult {
        let l = delivery_line(size);
        let mut env = TestEnv::new(fs.clock.clone(), 1);
        let op = account_op(Dir::Root, &l);
        crate::fs::perform(
            fs,
            &mut env,
            &mut crate::fs::Slots::default(),
            op,
            &mut &b""[..],
            &mut [],
        )
        .0
    }

    /// A delivery under the quota through the composed machine: the delivery and the check.
    pub(crate) fn deliver_with_quota(
        fs: &mut MemFs,
        env: &mut TestEnv,
        opts: crate::machine::deliver::Options,
        qopts: CheckOptions,
        source: &mut &[u8],
        _buf: &mut [u8],
    ) -> Result<(crate::machine::deliver::Delivered, Checked), Error> {
        use crate::machine::mta::{Accepted, Mta, MtaOptions};
        let o = MtaOptions {
            delivery: opts,
            quota: Some(qopts),
            ..MtaOptions::default()
        };
        let mut m = Mta::new(o, fs.capabilities(), env);
        let mut buf = std::vec![0u8; RECALC_SIZE];
        match crate::machine::run(&mut m, fs, env, source, &mut buf)? {
            Accepted::Stored {
                delivered,
                quota: Some(c),
                ..
            } => Ok((delivered, c)),
            other => panic!("unexpected {other:?}"),
        }
    }

    const T0: u64 = 1_700_000_000;

    #[test]
    fn definitions_parse_exactly() {
        let l = |b, c| Limits { bytes: b, count: c };
        assert_eq!(
            Limits::parse("1000000S,500C"),
            Ok(l(Some(1_000_000), Some(500)))
        );
        assert_eq!(Limits::parse(" 500C , 20S "), Ok(l(Some(20), Some(500))));
        assert_eq!(Limits::parse("1000S"), Ok(l(Some(1000), None)));
        assert_eq!(Limits::parse("7C"), Ok(l(None, Some(7))));
        assert_eq!(Limits::parse(""), Ok(Limits::NONE));
        assert_eq!(Limits::parse("0S,5C"), Ok(l(None, Some(5))));
        for bad in [
            "10X",
            "S",
            "10S,20S",
            "abc",
            "10 S",
            "-5S",
            "1S,",
            "99999999999999999999S",
        ] {
            assert_eq!(Limits::parse(bad), Err(BadDefinition), "{bad}");
        }
        assert_eq!(Limits::parse_lenient(b"1000S,20C"), l(Some(1000), Some(20)));
        assert_eq!(
            Limits::parse_lenient(b"x1000S;3Q,20C"),
            l(Some(1000), Some(20))
        );
        assert_eq!(l(Some(1000), Some(20)).emit(), "1000S,20C");
        assert_eq!(l(None, Some(20)).emit(), "20C");
        assert_eq!(l(Some(5), None).emit(), "5S");
        assert_eq!(Limits::NONE.emit(), "0S");
    }

    #[test]
    fn size_file_sums_lines_including_removals_and_padding() {
        let f =
            parse_maildirsize(b"1000S,10C\n100 2\n-30 -1\n  50   1\n        1234            1\n");
        assert_eq!(
            f.limits,
            Limits {
                bytes: Some(1000),
                count: Some(10)
            }
        );
        assert_eq!(
            f.usage,
            Usage {
                bytes: 1354,
                count: 3
            }
        );
        assert_eq!(f.lines, 4);
        assert_eq!(f.problem, None);
        let only_def = parse_maildirsize(b"1000S\n");
        assert_eq!(
            (only_def.lines, only_def.usage, only_def.problem),
            (0, Usage::default(), None)
        );
    }

    #[test]
    fn damaged_files_need_recalculation() {
        let p = |d: &[u8]| parse_maildirsize(d).problem;
        assert_eq!(p(b"1000S\n100 1\n12"), Some(RecalcReason::Unparseable));
        assert_eq!(
            p(b"1000S\n100 1\n\0\0\0\0"),
            Some(RecalcReason::Unparseable)
        );
        assert_eq!(p(b"1000S\n100 x\n"), Some(RecalcReason::Unparseable));
        assert_eq!(p(b"1000S\n100 1 3\n"), Some(RecalcReason::Unparseable));
        assert_eq!(p(b"1000S\n100\n"), Some(RecalcReason::Unparseable));
        assert_eq!(p(b"1000S"), Some(RecalcReason::Unparseable));
        assert_eq!(p(b"1000S\n100 1\n-200 -1\n"), Some(RecalcReason::Negative));
        let mut big = b"1000S\n".to_vec();
        while big.len() < RECALC_SIZE {
            big.extend_from_slice(b"100 1\n");
        }
        let f = parse_maildirsize(&big);
        assert_eq!(f.problem, Some(RecalcReason::TooBig));
        assert_eq!(f.limits.bytes, Some(1000));
        assert_eq!(p(&big[..RECALC_SIZE - 1]), Some(RecalcReason::Unparseable));
    }

    fn file(limits: Limits, bytes: u64, count: u64, lines: u32) -> SizeFile {
        SizeFile {
            limits,
            usage: Usage { bytes, count },
            lines,
            problem: None,
        }
    }

    #[test]
    fn decision_boundaries_follow_courier() {
        let lim = Limits {
            bytes: Some(1000),
            count: Some(10),
        };
        let f = file(lim, 900, 5, 1);
        let fresh = T0 + STALE_SECS - 1;
        // Exactly reaching the limit is allowed; one byte more is over.
        assert_eq!(
            decide(Some(&f), T0, fresh, None, 100),
            Decision::Final(Verdict::Allow)
        );
        assert_eq!(
            decide(Some(&f), T0, fresh, None, 101),
            Decision::Final(Verdict::Over)
        );
        // Over, but stale or more than one line: recalculate.
        assert_eq!(
            decide(Some(&f), T0, T0 + STALE_SECS, None, 101),
            Decision::Recalculate(RecalcReason::OverAndStale)
        );
        let two = file(lim, 900, 5, 2);
        assert_eq!(
            decide(Some(&two), T0, T0, None, 101),
            Decision::Recalculate(RecalcReason::OverAndStale)
        );
        // The count: the tenth message fits, the eleventh does not.
        let nine = file(lim, 0, 9, 1);
        assert_eq!(
            decide(Some(&nine), T0, T0, None, 1),
            Decision::Final(Verdict::Allow)
        );
        let ten = file(lim, 0, 10, 1);
        assert_eq!(
            decide(Some(&ten), T0, T0, None, 1),
            Decision::Final(Verdict::Over)
        );
        // No file: no quota unless one is given; a given one differing from the file's wins.
        assert_eq!(
            decide(None, 0, T0, None, 1),
            Decision::Final(Verdict::NoQuota)
        );
        assert_eq!(
            decide(None, 0, T0, Some(lim), 1),
            Decision::Recalculate(RecalcReason::Missing)
        );
        let other = Limits {
            bytes: Some(5000),
            count: None,
        };
        assert_eq!(
            decide(Some(&f), T0, T0, Some(other), 1),
            Decision::Recalculate(RecalcReason::DefinitionChanged)
        );
        assert_eq!(
            decide(Some(&file(Limits::NONE, 5, 5, 1)), T0, T0, None, 1),
            Decision::Final(Verdict::NoQuota)
        );
        assert_eq!(
            decide_fresh(
                lim,
                Usage {
                    bytes: 999,
                    count: 1
                },
                1
            ),
            Verdict::Allow
        );
        assert_eq!(
            decide_fresh(
                lim,
                Usage {
                    bytes: 999,
                    count: 1
                },
                2
            ),
            Verdict::Over
        );
    }

    #[test]
    fn lines_are_exact() {
        assert_eq!(delivery_line(1234), "1234 1\n");
        assert_eq!(line(-1234, -1), "-1234 -1\n");
        let l = Limits {
            bytes: Some(1000),
            count: None,
        };
        assert_eq!(
            fresh_contents(
                l,
                Usage {
                    bytes: 42,
                    count: 2
                }
            ),
            "1000S\n42 2\n"
        );
    }

    fn maildir_with_messages(fs: &mut MemFs) {
        fs.put(Dir::New, "1.a.host,S=100", &[b'x'; 100]);
        fs.put(Dir::Cur, "2.b.host,S=200:2,S", &[b'x'; 200]);
        // No size in the name: stat'ed.
        fs.put(Dir::Cur, "3.c.host:2,", &[b'x'; 37]);
        // Trashed: not counted. Dot file: not a message.
        fs.put(Dir::Cur, "4.d.host,S=5000:2,ST", &[b'x'; 10]);
        fs.put(Dir::New, ".hidden", &[b'x'; 10]);
    }

    fn run_check(fs: &mut MemFs, env: &mut TestEnv, opts: CheckOptions, msg: u64) -> Checked {
        let mut buf = [0u8; RECALC_SIZE];
        check(fs, env, opts, msg, &mut buf).unwrap()
    }

    #[test]
    fn given_quota_on_maildir_without_file_recalculates_and_writes_it() {
        let (mut fs, mut env, _) = setup();
        maildir_with_messages(&mut fs);
        let given = Limits::parse("1000S,10C").unwrap();
        let opts = CheckOptions {
            given: Some(given),
            ..CheckOptions::default()
        };
        let c = run_check(&mut fs, &mut env, opts, 100);
        assert_eq!(c.verdict, Verdict::Allow);
        assert_eq!(
            c.usage,
            Usage {
                bytes: 337,
                count: 3
            }
        );
        assert_eq!(c.recalculated, Some(RecalcReason::Missing));
        assert!(!c.raced);
        assert_eq!(
            fs.get(Dir::Root, MAILDIRSIZE).unwrap(),
            b"1000S,10C\n337 3\n"
        );
        assert!(
            fs.list(Dir::Tmp).is_empty(),
            "the fresh file was renamed into place"
        );
        // A message that does not fit.
        assert_eq!(
            run_check(&mut fs, &mut env, opts, 664).verdict,
            Verdict::Over
        );
        assert_eq!(
            run_check(&mut fs, &mut env, opts, 663).verdict,
            Verdict::Allow
        );
    }

    /// Maildir++ keeps one quota for the tree: a recalculation at the top counts every folder
    /// (new/ and cur/) except `.Trash`; a dot file that is not a folder is passed over.
    #[test]
    fn recalculation_counts_every_folder_but_trash() {
        let (mut fs, mut env, _) = setup();
        maildir_with_messages(&mut fs);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        fs.folders.insert(
            (Dir::Root, ".Sub".into(), Dir::New),
            names(&["5.e.host,S=1000"]),
        );
        fs.folders.insert(
            (Dir::Root, ".Sub".into(), Dir::Cur),
            // No size in the name: stat'ed through the folder's listing.
            names(&["6.f.host,S=20:2,S", "7.g.host:2,S", "8.h.host,S=9:2,ST"]),
        );
        fs.folder_sizes.insert("7.g.host:2,S".into(), 70);
        fs.folders.insert(
            (Dir::Root, ".Sub.Deeper".into(), Dir::Cur),
            names(&["9.i.host,S=3:2,"]),
        );
        fs.folders.insert(
            (Dir::Root, TRASH.escape_ascii().to_string(), Dir::Cur),
            names(&["t,S=99999"]),
        );
        // A dot file at the top, not a folder: not listed (NotFound from the adapter).
        fs.put(Dir::Root, ".lock", b"");
        let opts = CheckOptions {
            given: Some(Limits::parse("2000S").unwrap()),
            ..CheckOptions::default()
        };
        let c = run_check(&mut fs, &mut env, opts, 0);
        let want = Usage {
            bytes: 337 + 1000 + 20 + 70 + 3,
            count: 3 + 3 + 1,
        };
        assert_eq!(c.usage, want);
        assert_eq!(fs.get(Dir::Root, MAILDIRSIZE).unwrap(), b"2000S\n1430 7\n");
        assert_eq!(
            run_check(&mut fs, &mut env, opts, 571).verdict,
            Verdict::Over
        );
    }

    /// A folder's delivery reads, recalculates and accounts the top maildir's `maildirsize`
    /// and never writes one of its own.
    #[test]
    fn a_folder_is_counted_in_the_top_maildirsize_and_gets_none_of_its_own() {
        let (mut fs, mut env, _) = setup();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // This maildir is `.Sub`; the top holds 325 bytes (25 in a name without `,S=`, stat'ed
        // through the top's listing), `.Sub` 50 (listed from the top).
        fs.put(Dir::New, "1.a.host,S=50", &[b'x'; 50]);
        fs.folders.insert(
            (Dir::Top, String::new(), Dir::New),
            names(&["2.b.host,S=300"]),
        );
        fs.folders.insert(
            (Dir::Top, String::new(), Dir::Cur),
            names(&["3.c.host:2,S"]),
        );
        fs.folder_sizes.insert("3.c.host:2,S".into(), 25);
        fs.folders.insert(
            (Dir::Top, ".Sub".into(), Dir::New),
            names(&["1.a.host,S=50"]),
        );
        fs.put(Dir::Top, "new", b"");
        fs.put(Dir::Top, "cur", b"");
        let opts = CheckOptions {
            given: Some(Limits::parse("425S").unwrap()),
            folder: true,
            ..CheckOptions::default()
        };
        let c = run_check(&mut fs, &mut env, opts, 50);
        assert_eq!(c.verdict, Verdict::Allow);
        assert_eq!(
            c.usage,
            Usage {
                bytes: 375,
                count: 3
            }
        );
        assert_eq!(fs.get(Dir::Top, MAILDIRSIZE).unwrap(), b"425S\n375 3\n");
        assert!(
            fs.get(Dir::Root, MAILDIRSIZE).is_none(),
            "no maildirsize in the folder"
        );
        // The accounting goes to the top's file, and the next message is over.
        let line = delivery_line(50);
        let op = account_op(opts.base(), &line);
        assert_eq!(
            op,
            Op::Append {
                dir: Dir::Top,
                name: MAILDIRSIZE,
                data: b"50 1\n",
                persist: Persist::Flush
            }
        );
        fs.append(Dir::Top, MAILDIRSIZE, line.as_bytes(), Persist::Flush)
            .unwrap();
        // (Two lines now: an "over" is re-checked by recalculating, which finds it too.)
        fs.folders
            .get_mut(&(Dir::Top, ".Sub".into(), Dir::New))
            .unwrap()
            .push("10.x.host,S=50".into());
        let without_given = CheckOptions {
            folder: true,
            ..CheckOptions::default()
        };
        assert_eq!(
            run_check(&mut fs, &mut env, without_given, 1).verdict,
            Verdict::Over
        );
        assert!(fs.get(Dir::Root, MAILDIRSIZE).is_none());
    }

    /// What a recalculation killed between naming its fresh file and the rename left in tmp/
    /// is removed by the next recalculation once older than [`LEFTOVER_SECS`]; a younger one
    /// (perhaps a live recalculation's) and other files are left alone.
    #[test]
    fn a_recalculation_removes_old_leftovers_of_killed_ones() {
        let (mut fs, mut env, clock) = setup();
        maildir_with_messages(&mut fs);
        fs.put(Dir::Tmp, "1.M1P1.host.maildirsize", b"1000S\n0 0\n");
        fs.put(Dir::Tmp, "2.M2P2.host", b"a message being written");
        clock.set(clock.get() + LEFTOVER_SECS * 1000);
        fs.put(Dir::Tmp, "3.M3P3.host.maildirsize", b"1000S\n0 0\n");
        let opts = CheckOptions {
            given: Some(Limits::parse("1000S").unwrap()),
            ..CheckOptions::default()
        };
        run_check(&mut fs, &mut env, opts, 0);
        assert_eq!(
            fs.list(Dir::Tmp),
            ["2.M2P2.host", "3.M3P3.host.maildirsize"],
            "only the leftover at least {LEFTOVER_SECS} s old is removed"
        );
        assert_eq!(fs.get(Dir::Root, MAILDIRSIZE).unwrap(), b"1000S\n337 3\n");
    }

    #[test]
    fn no_file_no_quota_and_nothing_written() {
        let (mut fs, mut env, _) = setup();
        maildir_with_messages(&mut fs);
        let before = fs.names.clone();
        let c = run_check(&mut fs, &mut env, CheckOptions::default(), 1 << 40);
        assert_eq!(c.verdict, Verdict::NoQuota);
        assert_eq!(fs.names, before);
        let l = delivery_line(10);
        let (r, _) = crate::fs::perform(
            &mut fs,
            &mut env,
            &mut crate::fs::Slots::default(),
            account_op(Dir::Root, &l),
            &mut &b""[..],
            &mut [],
        );
        assert_eq!(
            r,
            OpResult::Err(ErrorKind::NotFound),
            "no file, nothing accounted"
        );
    }

    #[test]
    fn big_or_torn_file_is_recalculated_keeping_its_definition() {
        let (mut fs, mut env, _) = setup();
        maildir_with_messages(&mut fs);
        let mut big = b"5000S\n".to_vec();
        while big.len() < RECALC_SIZE + 10 {
            big.extend_from_slice(b"100 1\n");
        }
        fs.put(Dir::Root, MAILDIRSIZE, &big);
        let c = run_check(&mut fs, &mut env, CheckOptions::default(), 10);
        assert_eq!(c.recalculated, Some(RecalcReason::TooBig));
        assert_eq!((c.verdict, c.usage.bytes), (Verdict::Allow, 337));
        assert_eq!(fs.get(Dir::Root, MAILDIRSIZE).unwrap(), b"5000S\n337 3\n");
        fs.put(Dir::Root, MAILDIRSIZE, b"5000S\n337 3\n12");
        let c = run_check(&mut fs, &mut env, CheckOptions::default(), 10);
        assert_eq!(c.recalculated, Some(RecalcReason::Unparseable));
        assert_eq!(fs.get(Dir::Root, MAILDIRSIZE).unwrap(), b"5000S\n337 3\n");
    }

    #[test]
    fn stale_over_answer_is_rechecked_and_reopens_the_maildir() {
        let (mut fs, mut env, clock) = setup();
        maildir_with_messages(&mut fs);
        // The file claims the maildir is full; a client removed mail without telling it.
        fs.put(Dir::Root, MAILDIRSIZE, b"1000S\n990 3\n");
        let c = run_check(&mut fs, &mut env, CheckOptions::default(), 20);
        assert_eq!(
            (c.verdict, c.recalculated),
            (Verdict::Over, None),
            "fresh one-line file"
        );
        clock.set(clock.get() + STALE_SECS * 1000);
        let c = run_check(&mut fs, &mut env, CheckOptions::default(), 20);
        assert_eq!(c.recalculated, Some(RecalcReason::OverAndStale));
        assert_eq!((c.verdict, c.usage.bytes), (Verdict::Allow, 337));
    }

    #[test]
    fn appends_during_the_scan_make_the_recalculation_start_over() {
        let (mut fs, mut env, _) = setup();
        maildir_with_messages(&mut fs);
        // A torn last line forces a recalculation.
        fs.put(Dir::Root, MAILDIRSIZE, b"1000S\n12");
        let mut m = QuotaCheck::new(CheckOptions::default(), 10, &mut env);
        let mut slots = crate::fs::Slots::default();
        let mut buf = [0u8; RECALC_SIZE];
        let mut injected = false;
        let outcome = loop {
            match m.poll() {
                QuotaStep::Done(o) => break o,
                QuotaStep::Op(op) => {
                    if !injected && op == (Op::OpenDir { dir: Dir::Cur }) {
                        // Another deliverer publishes into new/ (already listed) and appends
                        // while we scan cur/: only starting over can count it.
                        injected = true;
                        fs.put(Dir::New, "9.z.host,S=7", b"1234567");
                        fs.append(Dir::Root, MAILDIRSIZE, b"7 1\n", Persist::Cache)
                            .unwrap();
                    }
                    let (r, n) = crate::fs::perform(
                        &mut fs,
                        &mut env,
                        &mut slots,
                        op,
                        &mut &b""[..],
                        &mut buf,
                    );
                    m.feed(r, &buf[..n], &mut env);
                }
            }
        };
        let c = outcome.unwrap();
        assert!(!c.raced);
        assert_eq!(c.recalculated, Some(RecalcReason::Unparseable));
        assert_eq!(
            c.usage,
            Usage {
                bytes: 344,
                count: 4
            }
        );
        assert_eq!(fs.get(Dir::Root, MAILDIRSIZE).unwrap(), b"1000S\n344 4\n");
        assert!(fs.list(Dir::Tmp).is_empty());
    }

    #[test]
    fn delivery_under_quota_is_accounted_and_over_quota_leaves_nothing() {
        let (mut fs, mut env, _) = setup();
        fs.put(Dir::Root, MAILDIRSIZE, b"1000S\n0 0\n");
        let opts = crate::machine::deliver::Options::default();
        let msg = [b'a'; 600];
        let mut buf = [0u8; 64];
        let mut src = &msg[..];
        let (d, c) = deliver_with_quota(
            &mut fs,
            &mut env,
            opts,
            CheckOptions::default(),
            &mut src,
            &mut buf,
        )
        .unwrap();
        assert_eq!((c.verdict, d.size), (Verdict::Allow, 600));
        assert_eq!(
            fs.get(Dir::Root, MAILDIRSIZE).unwrap(),
            b"1000S\n0 0\n600 1\n"
        );
        let mut src = &msg[..];
        let e = deliver_with_quota(
            &mut fs,
            &mut env,
            opts,
            CheckOptions::default(),
            &mut src,
            &mut buf,
        )
        .unwrap_err();
        assert_eq!(e, Error::new(ErrorKind::OverQuota, Phase::Check));
        assert_eq!(fs.list(Dir::New).len(), 1);
        assert!(
            fs.list(Dir::Tmp).is_empty(),
            "the refused message's tmp file is removed"
        );
        assert!(fs
            .get(Dir::Root, MAILDIRSIZE)
            .unwrap()
            .ends_with(b"600 1\n"));
        // No maildirsize: no quota, nothing appended or created.
        let (mut fs, mut env, _) = setup();
        let mut src = &msg[..];
        let (_, c) = deliver_with_quota(
            &mut fs,
            &mut env,
            opts,
            CheckOptions::default(),
            &mut src,
            &mut buf,
        )
        .unwrap();
        assert_eq!(c.verdict, Verdict::NoQuota);
        assert!(fs.get(Dir::Root, MAILDIRSIZE).is_none());
    }

    /// Drives a recalculation and, right before its rename, lets another deliverer publish
    /// into new/ and append its line (after `delay` seconds). Returns the final file.
    fn append_just_before_rename(delay: u64) -> (Checked, Vec<u8>) {
        let (mut fs, mut env, clock) = setup();
        maildir_with_messages(&mut fs);
        fs.put(Dir::Root, MAILDIRSIZE, b"1000S\n12");
        let mut m = QuotaCheck::new(CheckOptions::default(), 10, &mut env);
        let mut slots = crate::fs::Slots::default();
        let mut buf = [0u8; RECALC_SIZE];
        let mut injected = false;
        let outcome = loop {
            match m.poll() {
                QuotaStep::Done(o) => break o,
                QuotaStep::Op(op) => {
                    if !injected && matches!(op, Op::Rename { .. }) {
                        injected = true;
                        clock.set(clock.get() + delay * 1000);
                        fs.put(Dir::New, "9.z.host,S=7", b"1234567");
                        fs.append(Dir::Root, MAILDIRSIZE, b"7 1\n", Persist::Cache)
                            .unwrap();
                    }
                    let (r, n) = crate::fs::perform(
                        &mut fs,
                        &mut env,
                        &mut slots,
                        op,
                        &mut &b""[..],
                        &mut buf,
                    );
                    m.feed(r, &buf[..n], &mut env);
                }
            }
        };
        (
            outcome.unwrap(),
            fs.get(Dir::Root, MAILDIRSIZE).unwrap().to_vec(),
        )
    }

    #[test]
    fn the_residual_race_loses_one_line_only_within_the_same_second() {
        // The documented residual: an append between the last stat and the rename, with the
        // publish in the second the directories were first stat'ed, is lost (one message).
        let (c, f) = append_just_before_rename(0);
        assert_eq!(
            c.usage,
            Usage {
                bytes: 337,
                count: 3
            }
        );
        assert_eq!(f, b"1000S\n337 3\n");
        // A second later the directory mtime check sees it and the recalculation repeats.
        let (c, f) = append_just_before_rename(1);
        assert_eq!(
            c.usage,
            Usage {
                bytes: 344,
                count: 4
            }
        );
        assert_eq!(f, b"1000S\n344 4\n");
    }

    /// `n` deliverers of `m`-byte messages check concurrently (every check before any
    /// publish), then publish and append: the overshoot is exactly the bound.
    fn concurrent_overshoot(n: u32, m: u64) -> (Usage, Limits) {
        let (mut fs, _, clock) = setup();
        let limits = Limits {
            bytes: Some(10_000),
            count: Some(100),
        };
        // Room for exactly one more message.
        let start = Usage {
            bytes: 10_000 - m,
            count: 1,
        };
        fs.put(
            Dir::Cur,
            "0.big.host:2,S",
            &std::vec![b'x'; (10_000 - m) as usize],
        );
        fs.put(
            Dir::Root,
            MAILDIRSIZE,
            fresh_contents(limits, start).as_bytes(),
        );
        let mut envs: Vec<TestEnv> = (0..n).map(|i| TestEnv::new(clock.clone(), i)).collect();
        let mut machines: Vec<QuotaCheck> = envs
            .iter_mut()
            .map(|e| QuotaCheck::new(CheckOptions::default(), m, e))
            .collect();
        let mut buf = [0u8; RECALC_SIZE];
        // Round-robin, one operation each.
        while machines.iter().any(|q| !q.is_done()) {
            for (q, env) in machines.iter_mut().zip(envs.iter_mut()) {
                match q.poll() {
                    QuotaStep::Done(_) => {}
                    QuotaStep::Op(op) => {
                        assert!(
                            !matches!(op, Op::OpenDir { .. }),
                            "no recalculation expected"
                        );
                        let (r, k) = crate::fs::perform(
                            &mut fs,
                            env,
                            &mut crate::fs::Slots::default(),
                            op,
                            &mut &b""[..],
                            &mut buf,
                        );
                        q.feed(r, &buf[..k], env);
                    }
                }
            }
        }
        for (i, q) in machines.iter().enumerate() {
            let QuotaStep::Done(Ok(c)) = q.poll() else {
                panic!("check failed")
            };
            assert_eq!(c.verdict, Verdict::Allow);
            fs.put(Dir::New, &std::format!("{i}.x.host,S={m}"), &[]);
            assert_eq!(account(&mut fs, m), OpResult::Done);
        }
        let f = parse_maildirsize(fs.get(Dir::Root, MAILDIRSIZE).unwrap());
        assert_eq!(f.lines, 1 + n);
        // The next deliverer is refused (after a recalculation, since the file has n+1 lines).
        let mut env = TestEnv::new(clock, 999);
        let c = run_check(&mut fs, &mut env, CheckOptions::default(), 1);
        assert_eq!(c.verdict, Verdict::Over);
        (f.usage, limits)
    }

    #[test]
    fn overshoot_with_concurrent_deliverers_is_exactly_the_bound() {
        for n in [1u32, 2, 3, 8] {
            let m = 700;
            let (usage, limits) = concurrent_overshoot(n, m);
            let bound = overshoot_bound(n, m);
            assert_eq!(usage.bytes, limits.bytes.unwrap() + bound.bytes, "n={n}");
            assert_eq!(usage.count, 1 + u64::from(n));
            assert_eq!(bound.count, u64::from(n - 1));
        }
        assert_eq!(overshoot_bound(0, 10), Usage { bytes: 0, count: 0 });
        assert_eq!(overshoot_bound(8, u64::MAX).bytes, u64::MAX);
    }
}
