//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`: each is an ordinary function of
//! arbitrary bytes that panics when a property is violated. cargo-fuzz calls them from
//! libFuzzer (nightly), and the stable test `tests/tests/fuzz_corpus.rs` calls the same
//! functions over the checked-in corpus and over seeded random inputs, so every crash found
//! by fuzzing becomes a deterministic regression test once its input is added to the corpus.
//!
//! Each body interprets its input with [`Bytes`], which yields zeros once the input is used up,
//! so every input (including the empty one) is valid and short inputs stay meaningful.
//!
//! The delivery targets drive the shipped sans-io [`Delivery`] machine over a small in-memory
//! filesystem model ([`MemFs`]) whose every call may fail as the input decides, or feed it
//! arbitrary operation results with no filesystem at all, and then check the invariants of
//! `DESIGN.md` (at the repository root): bounded steps, success present exactly once and
//! byte-exact, a failure leaving nothing in new/ or cur/, nothing pre-existing overwritten,
//! locks released.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use mdeliver_core::env::{Env, Timestamp};
use mdeliver_core::fs::{perform, Capabilities, Dir, Fs, Op, OpResult, Slots, Stat};
use mdeliver_core::machine::deliver::{
    Delivered, Durability, Options, Step, Strategy, LOCK_BREAK_PREFIX, LOCK_NAME,
};
use mdeliver_core::machine::quota::{self, Decision, Limits, RecalcReason, Usage, Verdict};
use mdeliver_core::machine::scan::{classify, KeySet, Mark, Scan, ScanOptions, ScanStep};
use mdeliver_core::maildir::flags::{BadFlag, Flags};
use mdeliver_core::maildir::name::{emit_with_flags, InfoSep, NameError, ParsedName, Unique};
use mdeliver_core::mbox::{self, Event, MboxError, MboxReader, Quoting};
use mdeliver_core::message::{
    has_delivered_to, normalize_address, run_chunked, FromLine, FromLineMode, LoopCheck, Postmark,
    Prelude, PreludeFields, StatusFilter, FROM_LINE_MAX, PRELUDE_PEEK,
};
use mdeliver_core::testkit::{self, Call, Hook, Hooked};
use mdeliver_core::wire;
use mdeliver_core::{Delivery, ErrorKind, Phase};

use crate::sim::rng::XorShift;

/// A fuzz target: its name and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target: its name (the file in `fuzz/fuzz_targets/` and the corpus directory)
/// and its body.
pub const TARGETS: &[Target] = &[
    ("name_parse", name_parse),
    ("flags", flags),
    ("wire", wire_codec),
    ("mbox_split", mbox_split),
    ("mbox_roundtrip", mbox_roundtrip),
    ("header", header),
    ("maildirsize", maildirsize),
    ("deliver_faults", deliver_faults),
    ("deliver_arbitrary", deliver_arbitrary),
    ("scan", scan_faults),
    ("sieve_parse", crate::fuzz_sieve::sieve_parse),
    ("sieve_run", crate::fuzz_sieve::sieve_run),
];

/// A reader of fuzz input that never fails: past the end it yields zeros and empty slices.
#[derive(Clone, Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = (self.pos + 1).min(self.data.len());
        b
    }
    /// The next 4 bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// The next 8 bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// A boolean from the next byte.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let end = (self.pos + n).min(self.data.len());
        let s = &self.data[self.pos..end];
        self.pos = end;
        s
    }
    /// A slice whose length is given by the next byte (at most `max`).
    pub fn short(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()) % (max + 1);
        self.take(n)
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.pos..];
        self.pos = self.data.len();
        s
    }
    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SEPS: [u8; 3] = [b':', b';', b'!'];

fn sep_from(b: u8) -> InfoSep {
    InfoSep::new(SEPS[usize::from(b) % 3]).expect("a valid separator")
}

fn flags_from(bits: u64) -> Flags {
    let mut f = Flags::EMPTY;
    for i in 0..52u8 {
        if bits & (1 << i) != 0 {
            let l = if i < 26 { b'A' + i } else { b'a' + i - 26 };
            f.insert(l).expect("a letter");
        }
    }
    f
}

// ---------------------------------------------------------------------------------------------
// Names and flags

/// Name parsing: any string parses or is refused for the right reason, never panics; a parsed
/// name reassembles exactly, re-emits from its parts (new/ form and cur/ form) and reparses to
/// the same key and flags. Generated names stay within `NAME_MAX` and parse back to the values
/// they were made from.
pub fn name_parse(data: &[u8]) {
    let mut b = Bytes::new(data);
    let sep = sep_from(b.u8());
    let generated = b.bool();
    if generated {
        return generated_name(&mut b, sep);
    }
    let s = lossy(b.rest());
    let s = s.as_str();
    match ParsedName::parse(s, sep) {
        Ok(p) => {
            assert!(!p.key.is_empty());
            assert!(!p.key.as_bytes().contains(&sep.byte()));
            let mut again = p.key.to_string();
            if let Some(info) = p.info {
                again.push(sep.byte() as char);
                again.push_str(info);
            }
            assert_eq!(again, s, "key and info reassemble the name");
            assert!(p.key.starts_with(p.base) && !p.base.contains(','));
            let want_flags = p
                .info
                .and_then(|i| i.strip_prefix("2,"))
                .map(Flags::parse_lenient)
                .unwrap_or_default();
            assert_eq!(p.flags, want_flags);
            assert_eq!(p.has_info(), p.info.is_some());
            for (k, v) in p.fields() {
                assert!(!k.contains(',') && !v.contains(','));
            }
            if let Some(size) = p.size() {
                assert_eq!(p.field("S").map(str::parse::<u64>), Some(Ok(size)));
            }
            let _ = Unique::parse(p.key);
            let bare = emit_with_flags(p.key, None, sep).expect("a parsed key emits");
            assert_eq!(bare, p.key, "the new/ form is the bare key");
            match emit_with_flags(p.key, Some(p.flags), sep) {
                Ok(cur) => {
                    let q = ParsedName::parse(&cur, sep).expect("an emitted name parses");
                    assert_eq!((q.key, q.flags), (p.key, p.flags));
                    assert_eq!(q.info.map(str::to_owned), Some(format!("2,{}", p.flags)));
                    if p.info == Some(format!("2,{}", p.flags).as_str()) {
                        assert_eq!(cur, s, "a canonical cur/ name re-emits identically");
                    }
                }
                Err(e) => {
                    assert_eq!(e, NameError::TooLong);
                    assert!(
                        p.key.len() + 3 + p.flags.len() > mdeliver_core::maildir::name::NAME_MAX
                    );
                }
            }
        }
        Err(e) => {
            let want = if s.is_empty() {
                NameError::Empty
            } else if s.starts_with('.') {
                NameError::Dot
            } else if s.len() > mdeliver_core::maildir::name::NAME_MAX {
                NameError::TooLong
            } else if s.bytes().any(|c| c == b'/' || c == 0) {
                NameError::BadByte
            } else {
                assert!(s.as_bytes()[0] == sep.byte(), "refused {s:?}: {e:?}");
                NameError::BadKey
            };
            assert_eq!(e, want, "{s:?}");
        }
    }
}

fn generated_name(b: &mut Bytes<'_>, sep: InfoSep) {
    let u = Unique {
        time: Timestamp {
            secs: b.u64(),
            micros: b.u32(),
        },
        pid: b.bool().then(|| b.u32()),
        counter: b.u64(),
        random: b.u64(),
        dev_ino: if b.bool() {
            Some((b.u64(), b.u64()))
        } else {
            None
        },
    };
    let size = b.u64();
    let info = b.bool().then(|| flags_from(b.u64()));
    let host = lossy(b.rest());
    let tmp = u.emit_tmp(&host, sep).expect("a tmp name always fits");
    let published = u
        // The largest size with CRLF line ends (every byte an LF): the longest `,W=`.
        .emit_published(&host, (size, size.saturating_mul(2)), info, sep)
        .expect("a published name always fits");
    for n in [&tmp, &published] {
        assert!(n.len() <= mdeliver_core::maildir::name::NAME_MAX);
        assert!(!n.contains('/') && !n.contains('\0') && !n.starts_with('.'));
    }
    let t = ParsedName::parse(&tmp, sep).expect("tmp name parses");
    assert!(t.info.is_none());
    let (back, thost) = Unique::parse(t.key).expect("our tmp key parses");
    assert_eq!(back, u, "{tmp}");
    let p = ParsedName::parse(&published, sep).expect("published name parses");
    assert_eq!(p.size(), Some(size), "{published}");
    assert_eq!(p.has_info(), info.is_some());
    assert_eq!(p.flags, info.unwrap_or_default());
    let (back, phost) = Unique::parse(p.key).expect("our published key parses");
    assert_eq!(back, u, "{published}");
    // The escaped host never carries a separator, `/` or `,`; the published one is a prefix
    // of the tmp one (it may be cut shorter to leave room for size and flags).
    for h in [thost, phost] {
        assert!(!h.contains(['/', ',', sep.byte() as char]), "{h:?}");
        assert!(!h.is_empty());
    }
    assert!(thost.starts_with(phost), "{thost:?} / {phost:?}");
}

/// Flag sets: strict parsing accepts exactly strings of letters; lenient parsing keeps exactly
/// the letters; the display is sorted and deduplicated and parses back; set operations agree
/// with a `BTreeSet` model.
pub fn flags(data: &[u8]) {
    let half = data.len() / 2;
    let (a, b) = data.split_at(half);
    let sa = lossy(a);
    let model = |s: &str| -> BTreeSet<u8> { s.bytes().filter(u8::is_ascii_alphabetic).collect() };
    let ma = model(&sa);
    let fa = Flags::parse_lenient(&sa);
    let shown = fa.to_string();
    assert_eq!(shown.as_bytes(), ma.iter().copied().collect::<Vec<u8>>());
    assert_eq!(fa.len(), ma.len());
    assert_eq!(fa.is_empty(), ma.is_empty());
    assert_eq!(Flags::parse(&shown), Ok(fa));
    match Flags::parse(&sa) {
        Ok(f) => {
            assert!(sa.bytes().all(|c| c.is_ascii_alphabetic()));
            assert_eq!(f, fa);
        }
        Err(BadFlag(c)) => {
            let first = sa.bytes().find(|c| !c.is_ascii_alphabetic());
            assert_eq!(Some(c), first);
        }
    }
    let sb = lossy(b);
    let mb = model(&sb);
    let fb = Flags::parse_lenient(&sb);
    let union = fa.union(fb);
    let diff = fa.difference(fb);
    for c in 0..=255u8 {
        assert_eq!(fa.contains(c), ma.contains(&c));
        assert_eq!(union.contains(c), ma.contains(&c) || mb.contains(&c));
        assert_eq!(diff.contains(c), ma.contains(&c) && !mb.contains(&c));
    }
    let mut g = fa;
    for c in b {
        g.remove(*c);
        let _ = g.insert(*c);
        assert!(!c.is_ascii_alphabetic() || g.contains(*c));
        g.remove(*c);
        assert!(!g.contains(*c));
    }
}

// ---------------------------------------------------------------------------------------------
// The wire codec

/// The `wire` codec: decoding arbitrary bytes never panics; whatever decodes re-encodes to a
/// canonical form that decodes to the same value (decode ∘ encode is the identity) and fails
/// cleanly in any smaller buffer; values built from the input round-trip through encode and
/// decode.
pub fn wire_codec(data: &[u8]) {
    let mut buf = [0u8; 600];
    let mut again = [0u8; 600];
    if let Ok(op) = wire::decode_op(data) {
        let n = wire::encode_op(op, &mut buf).expect("a decoded op encodes");
        assert!(
            n <= data.len(),
            "canonical form is no longer than the input"
        );
        assert_eq!(wire::decode_op(&buf[..n]), Ok(op));
        let m = wire::encode_op(op, &mut again).unwrap();
        assert_eq!(buf[..n], again[..m]);
        for k in 0..n {
            assert!(wire::encode_op(op, &mut again[..k]).is_err());
        }
    }
    if let Ok(r) = wire::decode_result(data) {
        let n = wire::encode_result(r, &mut buf).expect("a decoded result encodes");
        assert!(n <= data.len());
        assert_eq!(wire::decode_result(&buf[..n]), Ok(r));
        for k in 0..n {
            assert!(wire::encode_result(r, &mut again[..k]).is_err());
        }
    }
    if let Ok(o) = wire::decode_outcome(data) {
        let n = wire::encode_outcome(&o, &mut buf).expect("a decoded outcome encodes");
        assert!(n <= data.len());
        assert_eq!(wire::decode_outcome(&buf[..n]), Ok(o.clone()));
        for k in 0..n {
            assert!(wire::encode_outcome(&o, &mut again[..k]).is_err());
        }
    }
    // The other direction: ops and results made from the input.
    let mut b = Bytes::new(data);
    let n1 = lossy(b.short(300));
    let n2 = lossy(b.short(300));
    let d1 = DIRS[usize::from(b.u8()) % 4];
    let d2 = DIRS[usize::from(b.u8()) % 4];
    let op = match b.u8() % 13 {
        0 => Op::CreateExclusive { dir: d1, name: &n1 },
        1 => Op::CreateTruncate { dir: d1, name: &n1 },
        2 => Op::CreateAnonymous { dir: d1 },
        3 => Op::WriteMessage,
        4 => Op::SyncFile,
        5 => Op::CloseFile,
        6 => Op::LinkAnonymous { dir: d1, name: &n1 },
        7 => Op::Link {
            from: (d1, &n1),
            to: (d2, &n2),
        },
        8 => Op::Rename {
            from: (d1, &n1),
            to: (d2, &n2),
            noreplace: b.bool(),
        },
        9 => Op::Unlink { dir: d1, name: &n1 },
        10 => Op::Stat { dir: d1, name: &n1 },
        11 => Op::SyncDir { dir: d1 },
        _ => Op::Sleep { millis: b.u32() },
    };
    let too_long = match op {
        Op::CreateExclusive { name, .. }
        | Op::CreateTruncate { name, .. }
        | Op::LinkAnonymous { name, .. }
        | Op::Unlink { name, .. }
        | Op::Stat { name, .. } => name.len() > 255,
        Op::Link { from, to } | Op::Rename { from, to, .. } => {
            from.1.len() > 255 || to.1.len() > 255
        }
        _ => false,
    };
    match wire::encode_op(op, &mut buf) {
        Ok(n) => {
            assert!(!too_long);
            assert_eq!(wire::decode_op(&buf[..n]), Ok(op));
        }
        Err(_) => assert!(too_long, "{op:?} did not encode"),
    }
    let kind = KINDS[usize::from(b.u8()) % KINDS.len()];
    let res = match b.u8() % 6 {
        0 => OpResult::Done,
        1 => OpResult::Created {
            id: b.bool().then(|| (b.u64(), b.u64())),
        },
        2 => OpResult::Written {
            size: b.u64(),
            crlf_size: b.u64(),
        },
        3 => OpResult::Stat(Stat {
            nlink: b.u64(),
            size: b.u64(),
            mtime: b.u64(),
            regular: b.bool(),
        }),
        4 => OpResult::Err(kind),
        _ => OpResult::SourceErr(kind),
    };
    let n = wire::encode_result(res, &mut buf).expect("results always fit 600 bytes");
    assert_eq!(wire::decode_result(&buf[..n]), Ok(res));
}

use mdeliver_core::wire::{DIRS, KINDS};

// ---------------------------------------------------------------------------------------------
// mbox

/// One message as the splitter reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMsg {
    /// The envelope line's text after `From `.
    pub envelope: Vec<u8>,
    /// Offset of the `From ` line.
    pub offset: u64,
    /// The message bytes.
    pub body: Vec<u8>,
    /// Offset just past the message.
    pub end: u64,
}

/// Splits `input` feeding `chunk` bytes at a time, checking the event grammar.
pub fn split_msgs(input: &[u8], chunk: usize, q: Quoting) -> Result<Vec<SplitMsg>, MboxError> {
    let mut msgs: Vec<SplitMsg> = Vec::new();
    let mut open = false;
    mbox::split_all(input, chunk, q, |e| match e {
        Event::MessageStart { envelope, offset } => {
            assert!(!open, "MessageStart inside a message");
            open = true;
            msgs.push(SplitMsg {
                envelope: envelope.raw().to_vec(),
                offset,
                body: Vec::new(),
                end: 0,
            });
        }
        Event::Body(b) => {
            assert!(open, "Body outside a message");
            msgs.last_mut().unwrap().body.extend_from_slice(b);
        }
        Event::MessageEnd { end } => {
            assert!(open, "MessageEnd outside a message");
            open = false;
            msgs.last_mut().unwrap().end = end;
        }
    })?;
    assert!(!open, "a message was left open");
    Ok(msgs)
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn read_msgs(
    input: &[u8],
    bufsize: usize,
    trickle: usize,
    readsize: usize,
    q: Quoting,
) -> Result<Pairs, MboxError> {
    use embedded_io::Read;
    let mut buf = vec![0u8; bufsize];
    let src = mbox::Trickle::new(input, trickle);
    let mut r = MboxReader::new(src, &mut buf, q);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; readsize];
    loop {
        let env = match r.next_message() {
            Ok(Some(e)) => e.raw().to_vec(),
            Ok(None) => break,
            Err(mbox::ReadError::Mbox(e)) => return Err(e),
            Err(mbox::ReadError::Source(e)) => match e {},
        };
        let mut body = Vec::new();
        loop {
            let n = r.read(&mut chunk).map_err(|e| match e {
                mbox::ReadError::Mbox(e) => e,
                mbox::ReadError::Source(e) => match e {},
            })?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        out.push((env, body));
    }
    Ok(out)
}

/// An independent model of mbox framing: `From ` line offsets, errors, and each message's
/// bytes under each quoting convention.
pub fn model_mbox(input: &[u8], q: Quoting) -> Result<Vec<SplitMsg>, MboxError> {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    if !input.starts_with(b"From ") {
        let off = input
            .iter()
            .zip(b"From ")
            .position(|(a, b)| a != b)
            .unwrap_or(input.len());
        return Err(MboxError::NotMbox { offset: off as u64 });
    }
    // Line starts beginning with `From `.
    let mut starts = Vec::new();
    let mut at = 0;
    while at < input.len() {
        if input[at..].starts_with(b"From ") {
            starts.push(at);
        }
        at = match input[at..].iter().position(|&b| b == b'\n') {
            Some(p) => at + p + 1,
            None => input.len(),
        };
    }
    let mut msgs = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let line_end = input[s..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| s + p + 1);
        if line_end - s - 5 > FROM_LINE_MAX - 5 {
            return Err(MboxError::FromLineTooLong { offset: s as u64 });
        }
        let next = starts.get(i + 1).copied().unwrap_or(input.len());
        let region = &input[line_end..next];
        let blank = if region == b"\n" || region.ends_with(b"\n\n") {
            1
        } else if region == b"\r\n" || region.ends_with(b"\n\r\n") {
            2
        } else {
            0
        };
        let raw = &region[..region.len() - blank];
        let mut body = Vec::new();
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let gts = line.iter().take_while(|&&b| b == b'>').count();
            let quoted = line[gts..].starts_with(b"From ")
                && match q {
                    Quoting::Mboxrd => gts >= 1,
                    Quoting::Mboxo => gts == 1,
                    Quoting::Raw => false,
                };
            body.extend_from_slice(if quoted { &line[1..] } else { line });
        }
        let envelope = Postmark::from_rest(&input[s + 5..line_end]).raw().to_vec();
        msgs.push(SplitMsg {
            envelope,
            offset: s as u64,
            body,
            end: (line_end + raw.len()) as u64,
        });
    }
    Ok(msgs)
}

/// mbox splitting: any chunking of the input, and the streaming reader with any buffer and
/// read sizes, give the same messages, which are exactly what an independent line model says
/// (offsets, envelopes, bytes, quoting, errors with their offsets).
pub fn mbox_split(data: &[u8]) {
    let mut b = Bytes::new(data);
    let q = [Quoting::Mboxrd, Quoting::Mboxo, Quoting::Raw][usize::from(b.u8()) % 3];
    let chunk = usize::from(b.u8()) + 1;
    let input = b.rest();
    let reference = split_msgs(input, input.len().max(1), q);
    assert_eq!(
        reference,
        model_mbox(input, q),
        "model disagrees: {q:?} {:?}",
        lossy(input)
    );
    for c in [1, 2, 3, 7, chunk] {
        assert_eq!(split_msgs(input, c, q), reference, "chunk {c}");
    }
    for (bufsize, trickle, readsize) in [(1, 1, 1), (7, 5, 3), (64, 3, 64), (4096, 4096, chunk)] {
        let got = read_msgs(input, bufsize, trickle, readsize, q);
        match &reference {
            Ok(m) => {
                let want: Pairs = m
                    .iter()
                    .map(|m| (m.envelope.clone(), m.body.clone()))
                    .collect();
                assert_eq!(got, Ok(want), "reader {bufsize}/{trickle}/{readsize}");
            }
            Err(e) => assert_eq!(got, Err(*e), "reader {bufsize}/{trickle}/{readsize}"),
        }
    }
}

/// mboxrd round trip: messages written with `write_mboxrd` (any bytes in the bodies, `From `
/// lines at any quoting depth) split back into exactly their envelopes and bodies (a body
/// without a final newline gets one: the one thing mbox cannot represent), at any chunking.
pub fn mbox_roundtrip(data: &[u8]) {
    let mut b = Bytes::new(data);
    let count = usize::from(b.u8() % 6);
    let mut msgs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut out = Vec::new();
    for i in 0..count {
        let mut env: Vec<u8> = b
            .short(40)
            .iter()
            .map(|&c| if c == b'\n' || c == b'\r' { b'_' } else { c })
            .collect();
        if env.is_empty() {
            env = format!("sender{i}").into_bytes();
        }
        let body = if i + 1 == count {
            b.rest()
        } else {
            b.short(200)
        };
        mbox::write_mboxrd(&env, body, &mut |x: &[u8]| out.extend_from_slice(x));
        let mut want = body.to_vec();
        if !want.is_empty() && !want.ends_with(b"\n") {
            want.push(b'\n');
        }
        msgs.push((env, want));
    }
    for chunk in [1, 5, out.len().max(1)] {
        let got =
            split_msgs(&out, chunk, Quoting::Mboxrd).expect("what write_mboxrd writes splits");
        let pairs: Pairs = got.into_iter().map(|m| (m.envelope, m.body)).collect();
        assert_eq!(pairs, msgs, "chunk {chunk}");
    }
}

// ---------------------------------------------------------------------------------------------
// Header prelude, loop detection, From line, Status filter

fn run_transform<T: mdeliver_core::message::Transform>(
    mut t: T,
    input: &[u8],
    chunk: usize,
    out: usize,
) -> (Vec<u8>, T) {
    let mut buf = vec![0u8; out.max(1)];
    let mut got = Vec::new();
    run_chunked(&mut t, input, chunk, &mut buf, |x| got.extend_from_slice(x));
    (got, t)
}

/// What a [`Prelude`] must produce: a leading `From ` line first, then the prelude lines
/// (CRLF when the first header line, looked at within `PRELUDE_PEEK` bytes, ends in CRLF),
/// then everything else unchanged.
pub fn model_prelude(input: &[u8], fields: [Option<&[u8]>; 3]) -> Vec<u8> {
    let (head, rest) = if input.starts_with(b"From ") {
        let e = input
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| p + 1);
        input.split_at(e)
    } else {
        (&input[..0], input)
    };
    let peek_end = rest
        .iter()
        .position(|&b| b == b'\n')
        .map_or(rest.len(), |p| p + 1)
        .min(PRELUDE_PEEK);
    let eol: &[u8] = if rest[..peek_end].ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut out = head.to_vec();
    let names: [(&[u8], &[u8]); 3] = [
        (b"Return-Path: <", b">"),
        (b"X-Original-To: ", b""),
        (b"Delivered-To: ", b""),
    ];
    for (f, (name, close)) in fields.iter().zip(names) {
        if let Some(a) = f {
            out.extend_from_slice(name);
            out.extend_from_slice(a);
            out.extend_from_slice(close);
            out.extend_from_slice(eol);
        }
    }
    out.extend_from_slice(rest);
    out
}

fn is_name_byte(b: u8) -> bool {
    b > b' ' && b < 0x7f && b != b':'
}

/// A line model of `Delivered-To:` loop detection: unfold the header block (up to the first
/// empty line), find fields named `Delivered-To` (whitespace before the colon allowed), and
/// compare their values with the address ignoring case, whitespace and angle brackets.
pub fn model_loop(m: &[u8], addr: &[u8]) -> bool {
    let norm = |v: &[u8]| -> Vec<u8> {
        v.iter()
            .filter(|&&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'<' | b'>'))
            .map(u8::to_ascii_lowercase)
            .collect()
    };
    let want = norm(addr);
    if want.is_empty() {
        return false;
    }
    // (is a Delivered-To field, value) per logical line.
    let mut fields: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut in_field = false;
    for line in m.split_inclusive(|&b| b == b'\n') {
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if in_field {
                fields.last_mut().unwrap().1.extend_from_slice(line);
            }
            continue;
        }
        let n = line.iter().take_while(|&&b| is_name_byte(b)).count();
        let w = line[n..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        in_field = n > 0 && line.get(n + w) == Some(&b':');
        if in_field {
            let dt = line[..n].eq_ignore_ascii_case(b"delivered-to");
            fields.push((dt, line[n + w + 1..].to_vec()));
        }
    }
    fields.iter().any(|(dt, v)| *dt && norm(v) == want)
}

/// Header handling: the `Return-Path`/`X-Original-To`/`Delivered-To` prelude equals its
/// model for every chunking and output size; `Delivered-To` loop detection equals a line model
/// and does not depend on chunking; the `From ` line recogniser strips exactly the first line
/// (keep mode is the identity); the `Status:` filter does not depend on chunking and only
/// removes bytes.
pub fn header(data: &[u8]) {
    let mut b = Bytes::new(data);
    let chunk = usize::from(b.u8() % 16) + 1;
    let outsz = usize::from(b.u8() % 16) + 1;
    let mut raw: [Option<&[u8]>; 3] = [None; 3];
    for f in raw.iter_mut() {
        if b.bool() {
            *f = Some(b.short(20));
        }
    }
    let addr = b.short(16);
    let msg = b.rest();

    // Prelude.
    let fields = PreludeFields {
        return_path: raw[0],
        original_to: raw[1],
        delivered_to: raw[2],
    };
    match Prelude::new(fields) {
        Ok(p) => {
            let norm: Vec<Option<&[u8]>> = raw
                .iter()
                .map(|a| a.map(|a| normalize_address(a).expect("accepted address")))
                .collect();
            assert_eq!(p.is_empty(), norm.iter().all(Option::is_none));
            let want = model_prelude(msg, [norm[0], norm[1], norm[2]]);
            let (got, _) = run_transform(p, msg, chunk, outsz);
            assert_eq!(lossy(&got), lossy(&want));
            for (c, o) in [(1, 1), (msg.len().max(1), 4096)] {
                let p = Prelude::new(fields).unwrap();
                assert_eq!(run_transform(p, msg, c, o).0, want);
            }
        }
        Err(_) => {
            // Refused only when some address is unacceptable.
            let bad = raw.iter().enumerate().any(|(i, a)| {
                a.is_some_and(|a| match normalize_address(a) {
                    Err(_) => true,
                    Ok(n) => i > 0 && n.is_empty(),
                })
            });
            assert!(bad, "a prelude with acceptable addresses was refused");
        }
    }

    // Loop detection.
    let found = has_delivered_to(msg, addr);
    assert_eq!(found, model_loop(msg, addr), "loop check vs model");
    let mut l = LoopCheck::new(addr);
    for piece in msg.chunks(chunk) {
        l.push(piece);
    }
    l.finish();
    assert_eq!(l.found(), found);

    // From line.
    let (kept, k) = run_transform(FromLine::new(FromLineMode::Keep), msg, chunk, outsz);
    assert_eq!(kept, msg, "keep mode is the identity");
    let (stripped, s) = run_transform(FromLine::new(FromLineMode::Strip), msg, chunk, outsz);
    assert_eq!(k.found(), s.found());
    if msg.starts_with(b"From ") {
        assert!(s.found());
        let end = msg
            .iter()
            .position(|&c| c == b'\n')
            .map_or(msg.len(), |p| p + 1);
        assert_eq!(stripped, &msg[end..]);
        if end <= FROM_LINE_MAX {
            let env = s.envelope().expect("a short From line gives an envelope");
            assert_eq!(env.raw(), Postmark::from_rest(&msg[5..end]).raw());
            let _ = (env.sender(), env.return_path(), env.timestamp());
        } else {
            assert!(s.envelope().is_none());
        }
    } else {
        assert!(!s.found());
        assert_eq!(stripped, msg);
    }

    // Status filter.
    let (a, fa) = run_transform(StatusFilter::new(), msg, chunk, outsz);
    let (c, fc) = run_transform(StatusFilter::new(), msg, msg.len().max(1), 4096);
    assert_eq!(a, c, "status filter depends on chunking");
    assert_eq!(fa.status(), fc.status());
    assert!(a.len() <= msg.len());
    let _ = fa.status().maildir_info();
}

// ---------------------------------------------------------------------------------------------
// maildirsize

/// `maildirsize`: parsing never panics; the definition is the lenient parse of the first line;
/// a usable file's sums survive appending delivery and removal lines and rewriting as a fresh
/// file; strict definitions round-trip; `decide` answers consistently with the numbers.
pub fn maildirsize(data: &[u8]) {
    let mut b = Bytes::new(data);
    let msg_size = b.u64() >> (b.u8() % 64);
    let mtime = b.u64() >> 1;
    let now = b.u64() >> 1;
    let given_sel = b.u8();
    let file = b.rest();
    let f = quota::parse_maildirsize(file);
    let first = file
        .iter()
        .position(|&c| c == b'\n')
        .map_or(file.len(), |p| p);
    assert_eq!(f.limits, Limits::parse_lenient(&file[..first]));
    if file.len() >= quota::RECALC_SIZE {
        assert_eq!(f.problem, Some(RecalcReason::TooBig));
    } else if !file.contains(&b'\n') || file.contains(&0) {
        assert_eq!(f.problem, Some(RecalcReason::Unparseable));
    }
    if f.problem.is_none() {
        let fresh = quota::fresh_contents(f.limits, f.usage);
        let g = quota::parse_maildirsize(fresh.as_bytes());
        assert_eq!(
            (g.limits, g.usage, g.lines, g.problem),
            (f.limits, f.usage, 1, None),
            "{fresh:?}"
        );
        let small = f.usage.bytes < (1 << 50) && f.usage.count < (1 << 50);
        if small && msg_size < (1 << 50) && file.len() < 4000 {
            let mut grown = file.to_vec();
            grown.extend_from_slice(quota::delivery_line(msg_size).as_bytes());
            let g = quota::parse_maildirsize(&grown);
            assert_eq!(g.problem, None);
            assert_eq!(g.usage, f.usage.plus(Usage::message(msg_size)));
            assert_eq!(g.lines, f.lines + 1);
            grown.extend_from_slice(quota::line(-(msg_size as i64), -1).as_bytes());
            let g = quota::parse_maildirsize(&grown);
            assert_eq!((g.usage, g.problem), (f.usage, None));
        }
    }
    // Strict definitions.
    let text = lossy(&file[..first]);
    if let Ok(l) = Limits::parse(&text) {
        assert_eq!(Limits::parse(&l.emit()), Ok(l), "{text:?}");
        assert_eq!(Limits::parse_lenient(l.emit().as_bytes()), l);
    }
    // Decisions.
    let given = match given_sel % 3 {
        0 => None,
        1 => Some(f.limits),
        _ => Some(Limits {
            bytes: Some(u64::from(given_sel) * 1000),
            count: None,
        }),
    };
    let present = given_sel & 0x80 == 0;
    let d = quota::decide(present.then_some(&f), mtime, now, given, msg_size);
    let limits = given.unwrap_or(if present { f.limits } else { Limits::NONE });
    match d {
        Decision::Final(Verdict::NoQuota) => assert!(limits.is_none()),
        Decision::Final(Verdict::Allow) => {
            assert!(present && f.problem.is_none() && limits == f.limits);
            assert!(!limits.exceeded_by(f.usage.plus(Usage::message(msg_size))));
        }
        Decision::Final(Verdict::Over) => {
            assert!(present && f.problem.is_none() && f.lines == 1);
            assert!(limits.exceeded_by(f.usage.plus(Usage::message(msg_size))));
            assert!(now < mtime.saturating_add(quota::STALE_SECS));
        }
        Decision::Recalculate(_) => assert!(!limits.is_none()),
    }
    let v = quota::decide_fresh(limits, f.usage, msg_size);
    assert_eq!(
        v == Verdict::Over,
        !limits.is_none() && limits.exceeded_by(f.usage.plus(Usage::message(msg_size)))
    );
}

// ---------------------------------------------------------------------------------------------
// The delivery machine

/// An environment whose clock, pid, host and randomness come from the fuzz input; `colliding`
/// freezes everything but the counter (two "processes" would make the same names).
#[derive(Clone, Debug)]
pub struct FuzzEnv {
    /// Seconds.
    pub secs: u64,
    /// Microseconds.
    pub micros: u32,
    /// Process id.
    pub pid: Option<u32>,
    /// Host name.
    pub host: String,
    /// Counter.
    pub counter: u64,
    /// Random state; constant when `colliding`.
    pub random: u64,
    /// Freeze the clock and the random source.
    pub colliding: bool,
}

impl Env for FuzzEnv {
    fn now(&mut self) -> Timestamp {
        if !self.colliding {
            self.micros = (self.micros + 1) % 1_000_000;
        }
        Timestamp {
            secs: self.secs,
            micros: self.micros,
        }
    }
    fn random_u64(&mut self) -> u64 {
        if !self.colliding {
            self.random = XorShift(self.random).next_u64();
        }
        self.random
    }
    fn pid(&self) -> Option<u32> {
        self.pid
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn sleep(&mut self, millis: u32) {
        self.secs = self.secs.saturating_add(u64::from(millis.div_ceil(1000)));
    }
}

/// What the fault tape can make a call do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Fault {
    /// Fail with this kind, with no effect.
    Fail(ErrorKind),
    /// Write only part of the buffer.
    Short,
    /// Another deliverer creates the target name first (the call then sees it).
    Foreign,
    /// `link` happens but reports an I/O error (a lost NFS reply).
    LostReply,
}

const FAULTS: [Fault; 13] = [
    Fault::Fail(ErrorKind::NoSpace),
    Fault::Fail(ErrorKind::Quota),
    Fault::Fail(ErrorKind::Io),
    Fault::Fail(ErrorKind::Interrupted),
    Fault::Fail(ErrorKind::Interrupted),
    Fault::Fail(ErrorKind::Permission),
    Fault::Fail(ErrorKind::ReadOnly),
    Fault::Fail(ErrorKind::Unsupported),
    Fault::Fail(ErrorKind::NameTooLong),
    Fault::Short,
    Fault::Foreign,
    Fault::Foreign,
    Fault::LostReply,
];

/// What a simulated foreign deliverer writes.
const FOREIGN: &[u8] = b"foreign message\n";

/// The kit's in-memory maildir (inodes with link counts, anonymous files, exclusive creation,
/// no-replace rename, live listings) whose every call consults a fault tape taken from the
/// fuzz input ([`Tape`]).
pub type MemFs = Hooked<testkit::MemFs, Tape>;

/// The fault tape, and which calls it faulted, so the invariants can allow for them.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    tape: Vec<u8>,
    pos: usize,
    /// Faults injected.
    pub injected: u32,
    /// Names created by simulated foreign deliverers.
    pub foreign: BTreeSet<(Dir, String)>,
    /// Directories in which an `unlink` was made to fail.
    pub failed_unlinks: BTreeSet<Dir>,
    /// A `link` happened but reported an error.
    pub lost_reply: bool,
    /// How many `stat` calls were made to fail, per directory.
    pub failed_stats: BTreeMap<Dir, u32>,
}

fn memfs(caps: Capabilities, tape: &[u8]) -> MemFs {
    let mut fs = testkit::MemFs::new(Rc::new(Cell::new(0)));
    fs.caps = caps;
    // The clock counts seconds (the fuzzed environment's, any u64).
    fs.ticks_per_sec = 1;
    fs.ids = (7, 0);
    fs.live_listings = true;
    let tape = tape.to_vec();
    let hook = Tape {
        tape,
        ..Tape::default()
    };
    Hooked { fs, hook }
}

/// Every name and its bytes.
fn contents(fs: &MemFs) -> BTreeMap<(Dir, String), Vec<u8>> {
    let m = &fs.fs;
    m.names
        .iter()
        .map(|(k, ino)| (k.clone(), m.inodes[ino].data.clone()))
        .collect()
}

impl Tape {
    /// The next fault from the tape: bytes below 200 (and the end of the tape) mean none.
    fn fault(&mut self) -> Option<Fault> {
        let b = *self.tape.get(self.pos)?;
        self.pos += 1;
        (b >= 200).then(|| {
            self.injected += 1;
            FAULTS[usize::from(b - 200) % FAULTS.len()]
        })
    }
}

impl Hook<testkit::MemFs> for Tape {
    fn before(&mut self, fs: &mut testkit::MemFs, call: &mut Call<'_>) -> Result<(), ErrorKind> {
        // Where a foreign file can appear: only where the kernel checks atomically.
        let target = match *call {
            // Calls the delivery and the scan fuzzed here never make: no tape.
            Call::Mkdir(_) => return Err(ErrorKind::Exists),
            Call::OpenFolderDir(..) => return Err(ErrorKind::NotFound),
            Call::StatListed(_)
            | Call::Append(..)
            | Call::ReadFile(..)
            | Call::SetMtime(..)
            | Call::SyncAll => return Err(ErrorKind::Unsupported),
            Call::Create(d, n, true)
            | Call::LinkAnonymous(d, n)
            | Call::Link(_, (d, n))
            | Call::Rename(_, (d, n), true) => Some((d, n)),
            _ => None,
        };
        match (self.fault(), call) {
            (Some(Fault::Fail(k)), Call::Unlink(d, _)) => {
                self.failed_unlinks.insert(*d);
                Err(k)
            }
            (Some(Fault::Fail(k)), Call::Stat(d, _)) => {
                *self.failed_stats.entry(*d).or_default() += 1;
                Err(k)
            }
            (Some(Fault::Fail(k)), _) => Err(k),
            (Some(Fault::Short), Call::Write(n)) => {
                *n = n.div_ceil(2);
                Ok(())
            }
            (Some(Fault::Foreign), _) => {
                if let Some((d, n)) = target.filter(|&(d, n)| fs.get(d, n).is_none()) {
                    fs.put(d, n, FOREIGN);
                    self.foreign.insert((d, n.to_string()));
                }
                Ok(())
            }
            (Some(Fault::LostReply), Call::Link(from, to)) => {
                fs.link(*from, *to)?;
                self.lost_reply = true;
                Err(ErrorKind::Io)
            }
            _ => Ok(()),
        }
    }
}

/// A message source that yields at most `max` bytes per read and can fail after `fail_at`
/// bytes.
struct Source<'a> {
    data: &'a [u8],
    pos: usize,
    max: usize,
    fail_at: Option<usize>,
}

impl embedded_io::ErrorType for Source<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.fail_at.is_some_and(|f| self.pos >= f) {
            return Err(embedded_io::ErrorKind::Other);
        }
        let lim = self.fail_at.unwrap_or(usize::MAX).min(self.data.len());
        let n = (lim - self.pos).min(buf.len()).min(self.max);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The most steps any delivery may take: far above what the bounded retries allow.
pub const MAX_STEPS: usize = 20_000;

fn options_from(b: &mut Bytes<'_>) -> Options {
    let strategy = match b.u8() % 6 {
        0 => Strategy::Classic {
            exclusive_create: b.bool(),
        },
        1 => Strategy::Locked,
        _ => Strategy::Exclusive,
    };
    let durability =
        [Durability::Full, Durability::DeferDirSync, Durability::None][usize::from(b.u8()) % 3];
    let flags = b.bool().then(|| flags_from(b.u64()));
    Options {
        strategy,
        durability,
        flags,
        sep: sep_from(b.u8()),
        max_attempts: u32::from(b.u8() % 16) + 1,
        lock_stale_secs: u64::from(b.u8()),
        lock_timeout_ms: u32::from(b.u8() % 8) * 1000,
        lock_poll_ms: [250, 1000][usize::from(b.u8()) % 2],
    }
}

fn env_from(b: &mut Bytes<'_>) -> FuzzEnv {
    FuzzEnv {
        secs: b.u64() >> (b.u8() % 64),
        micros: b.u32() % 1_000_000,
        pid: b.bool().then(|| b.u32()),
        host: lossy(b.short(24)),
        counter: 0,
        random: b.u64() | 1,
        colliding: b.bool(),
    }
}

fn caps_from(bits: u8) -> Capabilities {
    Capabilities {
        anonymous_tmp: bits & 1 != 0,
        rename_noreplace: bits & 2 != 0,
        hard_links: bits & 4 != 0,
        dir_sync: bits & 8 != 0,
        atomic_exclusive: true,
        ordered_commit: bits & 16 != 0,
    }
}

/// Checks a successful delivery's name and numbers against the options.
fn check_delivered(d: &Delivered, opts: &Options, len: usize) {
    assert_eq!(d.size, len as u64, "reported size");
    let p = ParsedName::parse(&d.name, opts.sep).expect("delivered name parses");
    match d.dir {
        Dir::New => assert!(!p.has_info(), "info in a new/ name: {}", d.name),
        Dir::Cur => {
            assert_eq!(Some(p.flags), opts.flags, "flags of {}", d.name);
        }
        other => panic!("delivered into {other:?}"),
    }
    if !matches!(opts.strategy, Strategy::Classic { .. }) {
        assert_eq!(p.size(), Some(len as u64), "S= of {}", d.name);
        assert_eq!(d.dir == Dir::Cur, opts.flags.is_some());
    }
}

/// The delivery machine over a faulty filesystem model: pre-existing messages (and perhaps a
/// foreign lock), a message from the input read in pieces (perhaps failing), and a tape of
/// faults (errors of every kind, short writes, EINTR, another deliverer taking a name first,
/// a link whose reply is lost). Checks: the machine finishes within [`MAX_STEPS`]; a success
/// is present exactly once, byte-exact, under a well-formed name; a failure leaves nothing in
/// new/ or cur/ (unless the fault hit the very unlink that would remove it) and at most its own
/// tmp file; nothing pre-existing or foreign is ever overwritten or removed; locks are
/// released; without faults a non-empty message is always delivered.
pub fn deliver_faults(data: &[u8]) {
    let mut b = Bytes::new(data);
    let opts = options_from(&mut b);
    let mut env = env_from(&mut b);
    let caps = caps_from(b.u8());
    let seeds = b.u8() % 4;
    let foreign_lock = b.u8();
    let read_max = usize::from(b.u8() % 32) + 1;
    let fail_sel = b.u8();
    let bufsize = usize::from(b.u8() % 64) + 1;
    let msg = b.short(255).to_vec();
    let fail_at = (fail_sel >= 224).then(|| usize::from(fail_sel - 224) % (msg.len() + 1));
    let mut seeded = Vec::new();
    for i in 0..seeds {
        let d = [Dir::Tmp, Dir::New, Dir::Cur][usize::from(b.u8()) % 3];
        let mut n = lossy(b.short(30)).replace(['/', '\0'], "_");
        if n.is_empty() || n.starts_with('.') {
            n = format!("seed{i}");
        }
        seeded.push((d, n, format!("seeded message {i}\n").into_bytes()));
    }
    let mut fs = memfs(caps, b.rest());
    fs.fs.clock.set(env.secs);
    for (d, n, c) in &seeded {
        fs.fs.put(*d, n, c);
    }
    let lock_seeded = opts.strategy == Strategy::Locked && foreign_lock & 1 == 1;
    if lock_seeded {
        let then = env.secs.saturating_sub(u64::from(foreign_lock >> 1) * 8);
        fs.fs.clock.set(then);
        fs.fs.put(Dir::Root, LOCK_NAME, b"");
        fs.fs.clock.set(env.secs);
    }
    let before = contents(&fs);

    let mut src = Source {
        data: &msg,
        pos: 0,
        max: read_max,
        fail_at,
    };
    let mut buf = vec![0u8; bufsize];
    let mut m = Delivery::new(opts, fs.capabilities(), &mut env);
    let mut slots = Slots::default();
    let mut steps = 0;
    let mut trace: Vec<String> = Vec::new();
    let outcome = loop {
        let op = match m.poll() {
            Step::Op(op) => op,
            Step::Done(o) => break o,
        };
        steps += 1;
        assert!(
            steps <= MAX_STEPS,
            "no end after {MAX_STEPS} steps: {opts:?}"
        );
        fs.fs.clock.set(env.secs);
        let shown = format!("{op:?}");
        let tape = fs.hook.pos;
        let (r, _) = perform(&mut fs, &mut env, &mut slots, op, &mut src, &mut buf);
        trace.push(format!(
            "{shown} -> {r:?} (faults {:?})",
            &fs.hook.tape[tape..fs.hook.pos]
        ));
        m.feed(r, &mut env);
    };
    assert!(m.is_done());
    assert_eq!(m.poll(), Step::Done(outcome.clone()), "Done is stable");
    if let Some(f) = slots.file.take() {
        // An open file left behind is a leak of a descriptor in a real adapter.
        panic!("the machine finished with a file still open: {f:?}");
    }

    let after = contents(&fs);
    let trace = trace.join("\n");
    // Nothing pre-existing or foreign is overwritten or removed (a stale foreign lock may be
    // broken: that is what stale means).
    let mut untouchable = before.clone();
    for k in &fs.hook.foreign {
        untouchable.insert(k.clone(), FOREIGN.to_vec());
    }
    for (k, v) in &untouchable {
        if k == &(Dir::Root, LOCK_NAME.to_string()) {
            continue;
        }
        assert_eq!(
            after.get(k),
            Some(v),
            "{k:?} was overwritten or removed; trace:\n{trace}"
        );
    }
    let ours: Vec<(&(Dir, String), &Vec<u8>)> = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k) && !fs.hook.foreign.contains(*k))
        .collect();
    let in_dir = |d: Dir| ours.iter().filter(|(k, _)| k.0 == d).count();
    match &outcome {
        Ok(d) => {
            check_delivered(d, &opts, msg.len());
            assert!(!msg.is_empty(), "an empty message was delivered");
            let key = (d.dir, d.name.to_string());
            assert_eq!(
                after.get(&key),
                Some(&msg),
                "delivered bytes differ: {d:?}; trace:\n{trace}"
            );
            assert!(!before.contains_key(&key) && !fs.hook.foreign.contains(&key));
            assert_eq!(
                in_dir(Dir::New) + in_dir(Dir::Cur),
                1,
                "delivered more than once: {ours:?}"
            );
            assert_eq!(
                in_dir(Dir::Tmp),
                usize::from(d.leftover_tmp),
                "tmp/: {ours:?}"
            );
            assert_eq!(
                d.needs_dir_sync,
                opts.durability == Durability::DeferDirSync && caps.dir_sync
            );
        }
        Err(e) => {
            let allowed_published = usize::from(
                fs.hook.failed_unlinks.contains(&Dir::New)
                    || fs.hook.failed_unlinks.contains(&Dir::Cur)
                    // djb's recipe trusts link's answer (it is kept only to show its faults).
                    || (fs.hook.lost_reply && matches!(opts.strategy, Strategy::Classic { .. })),
            );
            assert!(
                in_dir(Dir::New) + in_dir(Dir::Cur) <= allowed_published,
                "failed ({e:?}) but left {ours:?}; trace:\n{trace}"
            );
            let tmp_allowed = usize::from(fs.hook.failed_unlinks.contains(&Dir::Tmp));
            assert!(
                in_dir(Dir::Tmp) <= tmp_allowed,
                "failed ({e:?}) but left {ours:?}; trace:\n{trace}"
            );
            // Whatever remains, the error says so (a file it does not know of is only djb's
            // recipe's, which trusts a link whose reply was lost).
            let unknowable =
                fs.hook.lost_reply && matches!(opts.strategy, Strategy::Classic { .. });
            if in_dir(Dir::New) + in_dir(Dir::Cur) > 0 && !unknowable {
                assert!(
                    matches!(e.left, Some(Dir::New | Dir::Cur)),
                    "the message remains published, the error does not say so ({e:?}): \
                     {ours:?}; trace:\n{trace}"
                );
            }
            if in_dir(Dir::Tmp) > 0 {
                assert!(
                    e.left.is_some(),
                    "a tmp/ file remains, the error does not say so ({e:?}): {ours:?}; \
                     trace:\n{trace}"
                );
            }
            // The link-based lock cannot work without hard links (it ends in `Busy`), nor can
            // djb's recipe (it publishes by `link` only).
            let lock_impossible = !caps.hard_links
                && matches!(opts.strategy, Strategy::Locked | Strategy::Classic { .. });
            let clean = fs.hook.injected == 0 && !lock_seeded && !lock_impossible;
            if clean && msg.is_empty() && fail_at.is_none() {
                assert_eq!((e.kind, e.phase), (ErrorKind::Data, Phase::Read));
            }
            if clean && fail_at.is_some() {
                assert_eq!(e.phase, Phase::Read, "{e:?}");
            }
            if clean && !msg.is_empty() && fail_at.is_none() {
                // Without faults only a name taken by a seeded file could stop it.
                assert!(
                    e.kind == ErrorKind::Collisions && !seeded.is_empty(),
                    "{e:?} without any fault: {opts:?} {caps:?}\n{trace}"
                );
            }
        }
    }
    // Lock files: ours are gone unless their unlink failed (a claim to break a stale lock
    // stays by design: it names that lock alone).
    let lock_left = ours
        .iter()
        .filter(|(k, _)| k.0 == Dir::Root && !k.1.starts_with(LOCK_BREAK_PREFIX))
        .count();
    // A claim to break a lock that could not be made (a fault, or its name taken).
    let claim = format!("WriteFile {{ dir: Root, name: \"{LOCK_BREAK_PREFIX}");
    let claim_refused = trace
        .lines()
        .any(|l| l.starts_with(&claim) && l.contains("-> Err("));
    assert!(
        lock_left == 0
            || fs.hook.failed_unlinks.contains(&Dir::Root)
            // A lock link whose reply was lost, when neither our name's link count nor (after
            // removing our name) the lock's can be read: its fate is unknowable; it turns
            // stale in time. One failed stat is handled (the core claims the orphan lock and
            // removes it), unless the claim cannot be made: then it is left to turn stale.
            || (fs.hook.lost_reply
                && (claim_refused
                    || fs.hook.failed_stats.get(&Dir::Root).is_some_and(|&n| n >= 2))),
        "lock files left: {ours:?} {outcome:?}; trace:\n{trace}"
    );
}

/// The delivery machine fed arbitrary results (any result for any operation, errors of every
/// kind, lies about link counts) with no filesystem at all. Checks: it never panics, finishes
/// within [`MAX_STEPS`], `Done` is stable, and a shadow of what the fed results claim exists
/// shows a clean end: after a failure, every name the machine made (as far as the results
/// said) had an unlink attempted; after a success, only the published name (and a tmp name
/// reported as `leftover_tmp`) remains.
pub fn deliver_arbitrary(data: &[u8]) {
    let mut b = Bytes::new(data);
    let opts = options_from(&mut b);
    let mut env = env_from(&mut b);
    let caps = caps_from(b.u8());
    let mut m = Delivery::new(opts, caps, &mut env);
    // Names that exist per the fed results, and names whose unlink was answered with an error.
    let mut exists: BTreeSet<(Dir, String)> = BTreeSet::new();
    let mut unlink_failed: BTreeSet<(Dir, String)> = BTreeSet::new();
    let mut anon_open = false;
    let mut ever: BTreeSet<(Dir, String)> = BTreeSet::new();
    let mut unconfirmed: Option<(Dir, String)> = None;
    let mut trace: Vec<String> = Vec::new();
    let mut steps = 0;
    let outcome = loop {
        let op = match m.poll() {
            Step::Op(op) => op,
            Step::Done(o) => break o,
        };
        steps += 1;
        assert!(steps <= MAX_STEPS, "no end after {MAX_STEPS} steps");
        let sel = b.u8();
        let kind = KINDS[usize::from(b.u8()) % KINDS.len()];
        // Mostly plausible answers; sometimes anything at all.
        let r = if sel < 160 || b.is_empty() {
            match op {
                Op::CreateExclusive { .. }
                | Op::CreateTruncate { .. }
                | Op::CreateAnonymous { .. } => OpResult::Created {
                    id: Some((1, u64::from(sel))),
                },
                Op::WriteMessage => OpResult::Written {
                    size: u64::from(sel) + 1,
                    crlf_size: u64::from(sel) + 1,
                },
                Op::Stat { .. } if sel < 60 => OpResult::Err(ErrorKind::NotFound),
                Op::Stat { .. } => OpResult::Stat(Stat {
                    nlink: u64::from(sel % 3),
                    size: 1,
                    mtime: env.secs,
                    regular: true,
                }),
                _ => OpResult::Done,
            }
        } else if sel < 230 {
            OpResult::Err(kind)
        } else {
            match sel % 6 {
                0 => OpResult::Done,
                1 => OpResult::Created { id: None },
                2 => OpResult::Written {
                    size: b.u64(),
                    crlf_size: b.u64(),
                },
                3 => OpResult::Stat(Stat {
                    nlink: u64::from(b.u8()),
                    size: b.u64(),
                    mtime: b.u64(),
                    regular: b.bool(),
                }),
                4 => OpResult::SourceErr(kind),
                _ => OpResult::Err(kind),
            }
        };
        // The machine takes any answer but an error as success; so does the shadow.
        let ok = !matches!(r, OpResult::Err(_));
        trace.push(format!("{op:?} -> {r:?}"));
        match op {
            Op::CreateExclusive { dir, name } | Op::CreateTruncate { dir, name } => {
                if matches!(r, OpResult::Created { .. }) {
                    exists.insert((dir, name.to_string()));
                }
            }
            Op::CreateAnonymous { .. } => anon_open = matches!(r, OpResult::Created { .. }),
            Op::LinkAnonymous { dir, name } if ok => {
                assert!(
                    anon_open,
                    "link of an anonymous file that was never created"
                );
                exists.insert((dir, name.to_string()));
                ever.insert((dir, name.to_string()));
            }
            Op::Link { to, .. } if ok => {
                exists.insert((to.0, to.1.to_string()));
                ever.insert((to.0, to.1.to_string()));
            }
            // A failed link is verified by the tmp file's link count, which the machine
            // trusts (NFS): the shadow does too.
            Op::Link { to, .. } => unconfirmed = Some((to.0, to.1.to_string())),
            Op::Stat { dir: Dir::Tmp, .. } => {
                if let OpResult::Stat(st) = r {
                    if let Some(t) = unconfirmed.take().filter(|_| st.nlink >= 2) {
                        exists.insert(t.clone());
                        ever.insert(t);
                    }
                }
            }
            Op::Rename { from, to, .. } if ok => {
                exists.remove(&(from.0, from.1.to_string()));
                exists.insert((to.0, to.1.to_string()));
                ever.insert((to.0, to.1.to_string()));
            }
            Op::Unlink { dir, name } => {
                let k = (dir, name.to_string());
                if ok || r == OpResult::Err(ErrorKind::NotFound) {
                    exists.remove(&k);
                    unlink_failed.remove(&k);
                } else {
                    // Any error, EINTR included (the machine retries EINTR a few times only).
                    unlink_failed.insert(k);
                }
            }
            _ => {}
        }
        m.feed(r, &mut env);
    };
    assert_eq!(m.poll(), Step::Done(outcome.clone()), "Done is stable");
    let left: Vec<_> = exists
        .iter()
        .filter(|k| !unlink_failed.contains(*k))
        .collect();
    match &outcome {
        Ok(d) => {
            let key = (d.dir, d.name.to_string());
            let p = ParsedName::parse(&d.name, opts.sep).expect("delivered name parses");
            assert!(d.dir == Dir::Cur || !p.has_info());
            assert!(
                ever.contains(&key),
                "success {d:?}, but that name was never published; trace:\n{}",
                trace.join("\n")
            );
            assert!(
                ever.contains(&key),
                "success {d:?}, but that name was never published; trace:\n{}",
                trace.join("\n")
            );
            let others: Vec<_> = left.iter().filter(|k| ***k != key).collect();
            assert!(
                others.iter().all(|k| k.0 == Dir::Tmp)
                    && others.len() <= usize::from(d.leftover_tmp),
                "success {d:?} left {others:?}; trace:\n{}",
                trace.join("\n")
            );
        }
        Err(e) => assert!(
            left.is_empty(),
            "failure {e:?} left {left:?}; trace:\n{}",
            trace.join("\n")
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The scan machine

/// The driver's key storage for a scan.
#[derive(Default, Debug)]
struct MapKeys(BTreeMap<String, (u32, Dir, String)>);

impl KeySet for MapKeys {
    fn mark(&mut self, pass: u32, key: &str, dir: Dir, name: &str) -> Result<Mark, ErrorKind> {
        let mark = match self.0.get(key) {
            Some((last, _, _)) => classify(*last, pass),
            None => Mark::First,
        };
        if mark != Mark::ThisPass {
            self.0
                .insert(key.to_string(), (pass, dir, name.to_string()));
        }
        Ok(mark)
    }
}

/// The scan (listing) machine over the filesystem model, whose directory cursors see renames
/// as a real readdir does, while a reader renames messages (new/→cur/, flag changes) between
/// the scan's steps and calls fail as the input decides. Checks: it finishes within a bound;
/// a failure only comes from an injected fault; every message that no one renamed is listed;
/// nothing that is not a message (dot files, names starting with the separator) is listed;
/// every listed key is a real message listed under a name it really had; and when no message
/// was renamed more than once and the scan says it settled, every message is listed.
pub fn scan_faults(data: &[u8]) {
    let mut b = Bytes::new(data);
    let sep = sep_from(b.u8());
    let max_passes = u32::from(b.u8() % 8) + 1;
    let n = usize::from(b.u8() % 24);
    let mut fs = memfs(Capabilities::LINUX_LOCAL, &[]);
    let mut current: BTreeMap<String, (Dir, String)> = BTreeMap::new();
    let mut ever: BTreeSet<(Dir, String)> = BTreeSet::new();
    let mut volatile: Vec<String> = Vec::new();
    for i in 0..n {
        let cfg = b.u8();
        let key = format!("{}.M{i}P1Q1.host,S=1", 1_700_000_000 + i);
        let (dir, name) = if cfg & 1 == 1 {
            let f = flags_from(u64::from(cfg >> 2));
            (
                Dir::Cur,
                emit_with_flags(&key, Some(f), sep).unwrap().to_string(),
            )
        } else {
            (Dir::New, key.clone())
        };
        fs.fs.put(dir, &name, b"m");
        ever.insert((dir, name.clone()));
        if cfg & 2 == 2 {
            volatile.push(key.clone());
        }
        current.insert(key, (dir, name));
    }
    for (i, junk) in [".hidden", ".", "x/"]
        .iter()
        .enumerate()
        .take(usize::from(b.u8() % 3))
    {
        let _ = junk;
        let d = if i % 2 == 0 { Dir::New } else { Dir::Cur };
        fs.fs.put(d, &format!(".junk{i}"), b"");
        fs.fs.put(d, &format!("{}2,S", sep.byte() as char), b"");
    }
    let rest = b.rest();
    let (tape, moves) = rest.split_at(rest.len() / 2);
    fs.hook.tape = tape.to_vec();
    let mut mv = Bytes::new(moves);
    let mut renamed: BTreeMap<String, u32> = BTreeMap::new();
    let mut keys = MapKeys::default();
    let mut m = Scan::new(ScanOptions { sep, max_passes });
    let mut slots = Slots::default();
    let mut name = [0u8; 256];
    let mut steps = 0;
    let result = loop {
        match m.poll() {
            ScanStep::Op(op) => {
                steps += 1;
                assert!(steps <= MAX_STEPS, "scan did not end");
                let mut env = crate::sim::env::SimEnv::colliding();
                let (r, n) = perform(&mut fs, &mut env, &mut slots, op, &mut &b""[..], &mut name);
                m.feed(r, &name[..n], &mut keys);
                // A reader renames one message now and then.
                let sel = mv.u8();
                if sel >= 160 && !volatile.is_empty() {
                    let key = volatile[usize::from(sel) % volatile.len()].clone();
                    let (dir, old) = current[&key].clone();
                    let flags = match dir {
                        Dir::New => Flags::EMPTY,
                        _ => ParsedName::parse(&old, sep).unwrap().flags,
                    };
                    let mut f = flags;
                    let letter = b"DFPRST"[usize::from(mv.u8()) % 6];
                    if f.contains(letter) {
                        f.remove(letter);
                    } else {
                        f.insert(letter).unwrap();
                    }
                    let new = emit_with_flags(&key, Some(f), sep).unwrap().to_string();
                    // The reader's rename is not subject to the scan's fault tape.
                    let moved = fs.fs.rename((dir, &old), (Dir::Cur, &new), true).is_ok();
                    if moved {
                        *renamed.entry(key.clone()).or_default() += 1;
                        ever.insert((Dir::Cur, new.clone()));
                        current.insert(key, (Dir::Cur, new));
                    }
                }
            }
            ScanStep::Done(r) => break r,
        }
    };
    assert_eq!(m.poll(), ScanStep::Done(result), "Done is stable");
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            assert!(
                fs.hook.injected > 0,
                "scan failed ({e:?}) without any fault"
            );
            return;
        }
    };
    let listed: BTreeMap<&String, &(u32, Dir, String)> = keys
        .0
        .iter()
        .filter(|(_, (pass, _, _))| *pass == summary.final_pass)
        .collect();
    assert_eq!(summary.messages as usize, listed.len());
    assert!(summary.passes <= max_passes && summary.final_pass + 1 == summary.passes);
    for (k, (_, d, name)) in &listed {
        assert!(
            current.contains_key(*k),
            "listed {k}, which is not a message"
        );
        assert!(
            ever.contains(&(*d, name.clone())),
            "listed {k} as {d:?}/{name}, never its name"
        );
    }
    for (k, _) in current.iter().filter(|(k, _)| !renamed.contains_key(*k)) {
        assert!(
            listed.contains_key(k),
            "{k} was never renamed but is not listed: {summary:?}"
        );
    }
    if summary.stable && renamed.values().all(|&c| c <= 1) {
        for k in current.keys() {
            assert!(
                listed.contains_key(k),
                "{k} missing from a settled listing: {summary:?}"
            );
        }
    }
}
