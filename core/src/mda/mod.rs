//! One message's way into one maildir when mdeliver runs as an MTA's delivery agent: look at
//! the head (the `From ` line and the trace fields the MTA wrote), decide what to add and
//! whether the message loops ([`crate::mda::trace`]), then stream `head + rest` through the
//! [`FromLine`] and [`Prelude`] transforms into a delivery that also checks the Maildir++
//! quota and, when asked, the duplicate index: the composed [`crate::machine::mta::Mta`].
//!
//! Decisions:
//! - The head is read up to the end of the header block or [`HEAD_MAX`] bytes, whichever comes
//!   first, and **before anything is written**; a loop found there fails the delivery with
//!   [`ErrorKind::Loop`] and nothing is created.
//! - A loop found past the head (a header longer than the head buffer) is found while the
//!   message streams into tmp/; the [`LoopGuard`] makes the write fail, so nothing is
//!   published, and the result is still [`ErrorKind::Loop`].
//! - A `From ` line's sender becomes the `Return-Path` only when none is given or present, and
//!   only when it can be one (see [`crate::message::normalize_address`]; at most
//!   [`SENDER_MAX`] bytes): the line is the mbox's framing, not the message, so a sender that
//!   cannot be an address is left out rather than the message refused. (An invalid address
//!   given explicitly is the MTA's configuration: the delivery defers.)
//! - A message that is empty or nothing but a `From ` line (unless unframed) is refused
//!   ([`ErrorKind::Data`] in [`Phase::Read`]), not stored as a lone `Return-Path:` or other
//!   trace fields.
//! - A copy of a message already delivered in this run ([`store`]) is stored as it is.
//!
//! Dry runs are the caller's choice of filesystem ([`crate::fs::dryrun::DryRun`]).

pub mod owner;
pub mod sieve;
pub mod trace;

use embedded_io::Read;

use crate::machine::dedup::{DedupOptions, Key};
use crate::machine::deliver::{Delivered, Options};
use crate::machine::mta::{Accepted, Mta, MtaOptions, Order};
use crate::machine::quota::CheckOptions;
use crate::machine::quota::RECALC_SIZE;
use crate::machine::run;
use crate::maildir::name::NameBuf;
use crate::message::{FromLine, FromLineMode, Prefixed, Prelude, PreludeFields, Transformed};
use crate::{Dir, Env, Error, ErrorKind, Fs, Phase};
use trace::{Head, LoopGuard, Wanted};

/// How much of the message is looked at before anything is written: the `From ` line, the
/// trace fields and, for the loop check, the whole header of any real message. The size of
/// the head buffer callers pass to [`deliver_message`].
pub const HEAD_MAX: usize = 64 * 1024;

/// The longest `From ` line sender kept for the `Return-Path` (longer cannot be an address:
/// [`crate::message::ADDRESS_MAX`] plus brackets and spaces).
pub const SENDER_MAX: usize = crate::message::ADDRESS_MAX + 8;

/// The envelope the MTA gave: what goes into the trace fields.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Store a leading `From ` line as it is (else it is removed and its sender may become
    /// the `Return-Path`).
    pub keep_from_line: bool,
    /// The envelope sender (`b""` is the null sender `<>`).
    pub return_path: Option<&'a [u8]>,
    /// The recipient: `Delivered-To:` and the loop-check address.
    pub delivered_to: Option<&'a [u8]>,
    /// The recipient before alias expansion: `X-Original-To:`.
    pub original_to: Option<&'a [u8]>,
    /// The MTA never stamps `Delivered-To:` before handing the message over (LMTP): a
    /// `Delivered-To:` with our address at the top of the header is then a loop like any
    /// other, not the MTA's stamp for this delivery.
    pub unstamped: bool,
    /// The message comes without mbox framing (LMTP): a first line `From ...` is the
    /// message's own text, stored where it is below the trace fields, and never a sender.
    pub unframed: bool,
    /// Which addresses were read from the MTA's environment (`--from-env`) rather than given.
    pub from_env: FromEnv,
}

/// Which of an [`Envelope`]'s addresses came from the MTA's environment (`SENDER`,
/// `RECIPIENT`, `ORIGINAL_RECIPIENT`). Such an address stands in for a trace field the MTA did
/// not write, and never replaces or adds to one it did: Postfix writes its own (exact) block
/// above the message, while the variables it sets are filtered (`command_expansion_filter`
/// turns a quote or a space into `_`), and its `Delivered-To` names the alias the mail was
/// sent to where `RECIPIENT` names the final user.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FromEnv {
    /// The return path came from `SENDER`.
    pub return_path: bool,
    /// The recipient came from `RECIPIENT`.
    pub delivered_to: bool,
    /// The original recipient came from `ORIGINAL_RECIPIENT`.
    pub original_to: bool,
}

/// Everything one delivery under an MTA needs besides the filesystem, clock and message.
#[derive(Copy, Clone, Debug, Default)]
pub struct MdaOptions<'a> {
    /// The delivery itself (durability, flags, info separator, strategy).
    pub delivery: Options,
    /// The envelope.
    pub envelope: Envelope<'a>,
    /// The Maildir++ quota check (a `maildirsize` file is honoured without a given limit).
    pub quota: CheckOptions,
    /// Duplicate suppression, when asked for.
    pub dedup: Option<DedupOptions>,
    /// The duplicate index's key when the caller knows it (one copy of a Sieve unit:
    /// [`crate::machine::unit::copy_key`]); else derived from the message.
    pub key: Option<Key>,
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

/// Checks the envelope's addresses once, before any maildir is touched; the error names the
/// field (`"return path"`, `"delivered-to address"`, `"original-to address"`).
pub fn check_envelope(
    e: &Envelope<'_>,
) -> Result<(), (&'static str, crate::message::AddressError)> {
    let one = |what: &'static str, f: PreludeFields<'_>| {
        Prelude::new(f).map(|_| ()).map_err(|x| (what, x))
    };
    one(
        "return path",
        PreludeFields {
            return_path: e.return_path,
            ..PreludeFields::default()
        },
    )?;
    one(
        "delivered-to address",
        PreludeFields {
            delivered_to: e.delivered_to,
            ..PreludeFields::default()
        },
    )?;
    one(
        "original-to address",
        PreludeFields {
            original_to: e.original_to,
            ..PreludeFields::default()
        },
    )
}

/// Reads up to `head.len()` bytes, stopping early at the end of the header block (an empty
/// line). Returns the byte count and whether the input ended.
pub fn read_head<R: Read + ?Sized>(
    source: &mut R,
    head: &mut [u8],
) -> Result<(usize, bool), Error> {
    let mut n = 0;
    while n < head.len() {
        let k = match source.read(&mut head[n..]) {
            Ok(k) => k,
            Err(e) if embedded_io::Error::kind(&e) == embedded_io::ErrorKind::Interrupted => {
                continue
            }
            Err(_) => return Err(Error::new(ErrorKind::Io, Phase::Read)),
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

fn wanted<'a>(e: &Envelope<'a>, from_sender: Option<&'a [u8]>) -> Wanted<'a> {
    Wanted {
        return_path: e.return_path,
        original_to: e.original_to,
        delivered_to: e.delivered_to,
        from_sender,
        from_env: e.from_env,
    }
}

/// Whether the message whose start is `head` came back to this delivery: the `Delivered-To`
/// check [`deliver_message`] makes before it writes anything (here on `head` alone), for a
/// caller that acts on the message before it stores it. A Sieve
/// delivery asks first, so a message that loops is refused before its script can redirect it
/// once more.
pub fn loops(head: &[u8], envelope: &Envelope<'_>) -> bool {
    // An address that cannot go into a header: the delivery refuses it as it is.
    trace_of(head, envelope).is_some_and(|(looped, _)| looped)
}

/// The trace fields a redirect of the message whose start is `head` writes above it: the
/// `Delivered-To` its copy stored here gets (none where the MTA stamped that field already:
/// the message carries it), as Postfix's local delivery does when it forwards. A message
/// redirected back to this recipient, directly or through other recipients' redirects, is
/// then refused as a loop here ([`loops`]) instead of going round until the MTA's hop limit:
/// RFC 5228 4.2 asks an implementation to control redirect loops.
pub fn redirect_fields<'e>(head: &[u8], envelope: &Envelope<'e>) -> PreludeFields<'e> {
    let stamps = trace_of(head, envelope).is_some_and(|(_, stamps)| stamps);
    PreludeFields {
        delivered_to: envelope.delivered_to.filter(|_| stamps),
        ..PreludeFields::default()
    }
}

/// For the message whose start is `head`: whether it loops ([`loops`]) and whether its
/// stored copy gets a `Delivered-To` ([`redirect_fields`]); `None` for an address that
/// cannot go into a header.
fn trace_of(head: &[u8], envelope: &Envelope<'_>) -> Option<(bool, bool)> {
    let parsed = Head::parse_framed(head, !envelope.unframed);
    let from_sender = parsed
        .from_sender(head)
        .filter(|s| !envelope.keep_from_line && s.len() <= SENDER_MAX);
    let plan = trace::plan(head, &parsed, wanted(envelope, from_sender)).ok()?;
    let stamps = plan.prelude.delivered_to.is_some();
    let looped = (plan.stamp.is_some() && envelope.unstamped)
        || plan.loop_check(head, false).is_some_and(|c| c.found());
    Some((looped, stamps))
}

/// Delivers the MTA's message `source` into `fs`: reads the head into `head` (give it
/// [`HEAD_MAX`] bytes), reconciles the trace fields, checks for a loop, and streams the
/// result through `buf` into a quota-checked (and, with [`MdaOptions::dedup`],
/// duplicate-suppressed) delivery.
pub fn deliver_message<F, E, R>(
    fs: &mut F,
    env: &mut E,
    o: &MdaOptions<'_>,
    source: &mut R,
    head: &mut [u8],
    buf: &mut [u8],
) -> Result<Stored, Error>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: Read + ?Sized,
{
    let data = || Error::new(ErrorKind::Data, Phase::Check);
    let (mut len, eof) = read_head(source, head)?;
    let parsed = Head::parse_framed(&head[..len], !o.envelope.unframed);
    if eof && parsed.from_line.unwrap_or(0) == len {
        // Nothing, or only the envelope line (one that is framing, not the message's text):
        // the message itself is empty, refused as an empty input is (and as `-M` skips such
        // a message), whatever trace fields would have been added.
        return Err(Error::new(ErrorKind::Data, Phase::Read));
    }
    // The sender is copied out: the head is edited below while the plan refers to it.
    let mut sender = heapless::Vec::<u8, SENDER_MAX>::new();
    // A sender too long to be an address is not one: no `Return-Path` from it.
    let from_sender = match parsed.from_sender(&head[..len]) {
        Some(s) if !o.envelope.keep_from_line && sender.extend_from_slice(s).is_ok() => {
            Some(&sender[..])
        }
        _ => None,
    };
    let mut plan =
        trace::plan(&head[..len], &parsed, wanted(&o.envelope, from_sender)).map_err(|_| data())?;
    if plan.stamp.is_some() && o.envelope.unstamped {
        // No MTA stamped this delivery: our address at the top came back with the message.
        return Err(Error::new(ErrorKind::Loop, Phase::Check));
    }
    len = plan.apply_drop(head, len);
    let check = plan.loop_check(&head[..len], eof);
    if check.as_ref().is_some_and(|c| c.found()) {
        // Decided before anything was written.
        return Err(Error::new(ErrorKind::Loop, Phase::Check));
    }
    let check = check.filter(|c| !c.header_done());
    let mut guard = LoopGuard::new(&mut *source, check);
    let prefixed = Prefixed::new(&head[..len], &mut guard);
    let mode = if o.envelope.keep_from_line || o.envelope.unframed {
        FromLineMode::Keep
    } else {
        FromLineMode::Strip
    };
    let from: Transformed<_, FromLine> = Transformed::new(prefixed, FromLine::new(mode));
    // `trace::plan` built these fields with this same check, so it cannot fail here.
    let prelude = Prelude::new(plan.prelude).map_err(|_| data())?;
    let prelude = if o.envelope.unframed {
        prelude.above_any_from_line()
    } else {
        prelude
    };
    let mut reader: Transformed<_, Prelude> = Transformed::new(from, prelude);
    let r = store(fs, env, o, &mut reader, buf);
    if r.is_err() && guard.looped() {
        // Found past the head, while streaming into tmp/: nothing was published.
        return Err(Error::new(ErrorKind::Loop, Phase::Check));
    }
    r
}

/// A message source behind a `dyn` pointer, its errors reduced to their kind: whatever the
/// source's type, the delivery code ([`store`]) is compiled once, which matters where code
/// size does (the WASI module).
pub struct DynSource<'a>(&'a mut dyn ReadKind);

/// A reader whose errors are reduced to their kind (implemented for every reader).
pub trait ReadKind {
    /// Reads as [`Read::read`] does.
    fn read_kind(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind>;
}

impl<R: Read> ReadKind for R {
    fn read_kind(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
        self.read(buf).map_err(|e| embedded_io::Error::kind(&e))
    }
}

impl<'a> DynSource<'a> {
    /// Erases `source`'s type.
    pub fn new(source: &'a mut dyn ReadKind) -> DynSource<'a> {
        DynSource(source)
    }
}

impl embedded_io::ErrorType for DynSource<'_> {
    type Error = embedded_io::ErrorKind;
}

impl Read for DynSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
        self.0.read_kind(buf)
    }
}

/// Stores `source` as it is (a copy of a message already delivered in this run), with the
/// quota check and, with [`MdaOptions::dedup`], duplicate suppression: the composed [`Mta`]
/// machine, run to completion. `buf` streams the message and holds `maildirsize` or an index
/// entry while they are read (a smaller one than [`RECALC_SIZE`] is replaced by one on the
/// stack).
pub fn store<F, E, R>(
    fs: &mut F,
    env: &mut E,
    o: &MdaOptions<'_>,
    source: &mut R,
    buf: &mut [u8],
) -> Result<Stored, Error>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: Read + ?Sized,
{
    let mut inner = source;
    let source = &mut DynSource::new(&mut inner);
    let opts = MtaOptions {
        delivery: o.delivery,
        quota: Some(o.quota),
        dedup: o.dedup,
        key: o.key,
        order: Order::AccountFirst,
    };
    let mut m = Mta::new(opts, fs.capabilities(), env);
    let mut small = [0u8; RECALC_SIZE];
    let buf = if buf.len() < RECALC_SIZE {
        &mut small[..]
    } else {
        buf
    };
    match run(&mut m, fs, env, source, buf)? {
        Accepted::Stored { delivered, .. } => Ok(Stored::Delivered(delivered)),
        Accepted::Duplicate { dir, name } => {
            let size = dir.and_then(|d| fs.stat(d, &name).ok()).map(|st| st.size);
            Ok(Stored::Duplicate { dir, name, size })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::setup;
    use std::vec;
    use std::vec::Vec;

    /// A message with the recipient's `Delivered-To` loops (unless it is the MTA's own stamp
    /// at the top, for an MTA that stamps); a redirect carries the `Delivered-To` the stored
    /// copy gets, none where the MTA stamped it.
    #[test]
    fn loops_and_the_redirects_field_follow_the_stored_copys_trace() {
        let bob = Envelope {
            delivered_to: Some(b"bob@example.org"),
            ..Envelope::default()
        };
        let plain: &[u8] = b"Subject: s\n\nbody\n";
        let stamped: &[u8] = b"Delivered-To: bob@example.org\nSubject: s\n\nbody\n";
        let twice: &[u8] =
            b"Delivered-To: bob@example.org\nDelivered-To: bob@example.org\nSubject: s\n\n";
        assert!(!loops(plain, &bob));
        assert!(!loops(stamped, &bob));
        assert!(loops(twice, &bob));
        let unstamped = Envelope {
            unstamped: true,
            ..bob
        };
        assert!(loops(stamped, &unstamped));
        let field = |head, e| redirect_fields(head, e).delivered_to;
        assert_eq!(field(plain, &bob), Some(&b"bob@example.org"[..]));
        assert_eq!(field(stamped, &bob), None);
        assert_eq!(field(plain, &Envelope::default()), None);
    }

    /// Delivers `message` (read 5 bytes at a time) with `envelope`; the result and the names
    /// left in tmp/, new/ and cur/.
    fn deliver(message: &[u8], envelope: Envelope<'_>) -> (Result<Stored, Error>, usize) {
        let (mut fs, mut env, _clock) = setup();
        let o = MdaOptions {
            envelope,
            ..MdaOptions::default()
        };
        let mut source = crate::mbox::Trickle::new(message, 5);
        let (mut head, mut buf) = (vec![0u8; HEAD_MAX], vec![0u8; 64]);
        let r = deliver_message(&mut fs, &mut env, &o, &mut source, &mut head, &mut buf);
        let left: Vec<_> = [Dir::Tmp, Dir::New, Dir::Cur]
            .into_iter()
            .flat_map(|d| fs.list(d))
            .collect();
        (r, left.len())
    }

    #[test]
    fn a_message_that_is_only_its_envelope_line_is_refused_as_empty() {
        let empty = Err(Error::new(ErrorKind::Data, Phase::Read));
        let sender = Envelope {
            return_path: Some(b"x@y".as_slice()),
            delivered_to: Some(b"bob@example.org".as_slice()),
            ..Envelope::default()
        };
        let keep = Envelope {
            keep_from_line: true,
            ..Envelope::default()
        };
        for envelope in [Envelope::default(), sender, keep] {
            for message in [
                &b""[..],
                b"From a@b Mon Jan  1 00:00:00 2024\n",
                b"From a@b Mon Jan  1 00:00:00 2024\r\n",
                b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n",
            ] {
                let (r, left) = deliver(message, envelope);
                assert_eq!(r.map(|_| ()), empty, "{message:?} {envelope:?}");
                assert_eq!(left, 0, "nothing is left anywhere");
            }
        }
        // One byte after the envelope is a message.
        let (r, left) = deliver(b"From a@b Mon Jan  1 00:00:00 2024\nx", Envelope::default());
        assert!(r.is_ok() && left == 1);
    }
}
