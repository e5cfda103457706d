//! The message transforms and scanners, each checked identical for every chunking.

use super::*;
use std::string::String;
use std::vec::Vec;

/// Runs a transform over `input` cut into `chunk`-byte pieces, reading into `out_size`
/// buffers.
fn run<T: Transform>(t: &mut T, input: &[u8], chunk: usize, out_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = std::vec![0u8; out_size];
    run_chunked(t, input, chunk, &mut buf, |b| out.extend_from_slice(b));
    out
}

/// Output of a transform built by `make`, checked identical for every chunking.
fn all_chunkings<T: Transform>(make: impl Fn() -> T, input: &[u8]) -> (Vec<u8>, T) {
    let mut t0 = make();
    let reference = run(&mut t0, input, input.len().max(1), 65536);
    for chunk in [1, 2, 3, 7, 64, 65536] {
        for out in [1, 2, 5, 64, 4096] {
            let mut t = make();
            assert_eq!(
                run(&mut t, input, chunk, out),
                reference,
                "chunk {chunk} out {out}"
            );
        }
    }
    (reference, t0)
}

#[test]
fn envelope_parts() {
    let e = Postmark::parse_line(b"From alice@example.org Sat Nov 28 18:03:09 2026\r\n").unwrap();
    assert_eq!(e.sender(), Sender::Address(b"alice@example.org"));
    assert_eq!(e.date_text(), b"Sat Nov 28 18:03:09 2026");
    assert_eq!(e.timestamp(), Some(1795888989));
    let e = Postmark::parse_line(b"From MAILER-DAEMON Sat Nov 28 18:03:09 2026").unwrap();
    assert_eq!(e.sender(), Sender::Null);
    assert_eq!(e.return_path(), Some(&b""[..]));
    let e = Postmark::parse_line(b"From <> Sat Nov 28 18:03:09 2026").unwrap();
    assert_eq!(e.sender(), Sender::Null);
    let e = Postmark::parse_line(b"From - Sat Nov 28 18:03:09 2026").unwrap();
    assert_eq!(e.sender(), Sender::Unknown);
    assert_eq!(e.return_path(), None);
    let e = Postmark::parse_line(b"From \"john doe\"@x.org  Sat Nov 28 18:03:09 2026").unwrap();
    assert_eq!(e.sender(), Sender::Address(b"\"john doe\"@x.org"));
    assert_eq!(e.timestamp(), Some(1795888989));
    let e = Postmark::parse_line(b"From <bob@x.org> Sat Nov 28 18:03:09 2026").unwrap();
    assert_eq!(e.sender(), Sender::Address(b"bob@x.org"));
    assert!(Postmark::parse_line(b">From a b").is_none());
    assert!(Postmark::parse_line(b"From: a").is_none());
}

#[test]
fn asctime_variants() {
    let base = 1795888989; // 2026-11-28T18:03:09Z
    assert_eq!(parse_asctime(b"Sat Nov 28 18:03:09 2026"), Some(base));
    assert_eq!(parse_asctime(b"Nov 28 18:03:09 2026"), Some(base));
    assert_eq!(
        parse_asctime(b"Sat Nov 28 18:03:09 2026 +0100"),
        Some(base - 3600)
    );
    assert_eq!(
        parse_asctime(b"Sat Nov 28 18:03:09 EST 2026"),
        Some(base + 5 * 3600)
    );
    assert_eq!(parse_asctime(b"Sat Nov 28 18:03 2026"), Some(base - 9));
    assert_eq!(
        parse_asctime(b"Sat Nov 28 18:03:09 2026 remote from uucp"),
        Some(base)
    );
    assert_eq!(
        parse_asctime(b"Sat Nov  8 18:03:09 2026"),
        Some(base - 20 * 86400)
    );
    assert_eq!(parse_asctime(b"Sat Nov 31 18:03:09 2026"), None);
    assert_eq!(parse_asctime(b"Sat Nov 28 18:03:09"), None);
    assert_eq!(parse_asctime(b"garbage"), None);
    // The From line's fallback to RFC 5322 form.
    let e = Postmark::from_rest(b"a@b Sat, 28 Nov 2026 18:03:09 +0000");
    assert_eq!(e.timestamp(), Some(base));
}

#[test]
fn rfc5322_dates() {
    let base = 1795888989;
    let ok: &[(&[u8], i64)] = &[
        (b"Sat, 28 Nov 2026 18:03:09 +0000", base),
        (b"28 Nov 2026 18:03:09 +0000", base),
        (b"Sat, 28 Nov 2026 19:03:09 +0100", base),
        (b"Sat, 28 Nov 2026 13:03:09 -0500", base),
        (b"Sat, 28 Nov 2026 18:03:09 GMT", base),
        (b"Sat, 28 Nov 2026 18:03:09 UT", base),
        (b"Sat, 28 Nov 2026 13:03:09 EST", base),
        (b"Sat, 28 Nov 2026 14:03:09 EDT", base),
        (b"Sat, 28 Nov 2026 10:03:09 PST", base),
        (b"Sat, 28 Nov 2026 18:03:09 Z", base),
        (b"Sat, 28 Nov 2026 18:03:09 XYZT", base),
        (b"Sat, 28 Nov 2026 18:03:09", base),
        (b"Sat, 28 Nov 2026 18:03 +0000", base - 9),
        (b"  Sat ,28 nov 2026 18 : 03 : 09 +0000 (UTC)", base),
        (b"(comment (nested)) Sat, 28 Nov 2026 18:03:09 +0000", base),
        (b"Sat, 28 November 2026 18:03:09 +0000", base),
        (b"Sat, 28 Nov\r\n 2026 18:03:09 +0000", base),
        (b"Fri, 1 Jan 99 00:00:00 +0000", 915148800),
        (b"Sat, 1 Jan 00 00:00:00 +0000", 946684800),
        (b"Thu, 1 Jan 49 00:00:00 +0000", 2493072000),
        (b"Fri, 1 Jan 50 00:00:00 +0000", -631152000),
        (b"Fri, 1 Jan 099 00:00:00 +0000", 915148800),
        (b"Thu, 29 Feb 2024 12:00:00 +0000", 1709208000),
        (b"Thu, 01 Jan 1970 00:00:00 +0000", 0),
    ];
    for (s, want) in ok {
        assert_eq!(
            parse_rfc5322_date(s),
            Some(*want),
            "{}",
            std::string::String::from_utf8_lossy(s)
        );
    }
    let bad: &[&[u8]] = &[
        b"",
        b"yesterday",
        b"Sat, 29 Feb 2026 12:00:00 +0000",
        b"Sat, 28 Foo 2026 18:03:09 +0000",
        b"Sat, 28 Nov 2026 24:03:09 +0000",
        b"Sat, 28 Nov 2026 18:60:09 +0000",
        b"Sat, 28 Nov 2026 18:03:09 +01",
        b"Sat, 28 Nov 2026 18:03:09 +0160",
        b"Sat, 128 Nov 2026 18:03:09 +0000",
    ];
    for s in bad {
        assert_eq!(
            parse_rfc5322_date(s),
            None,
            "{}",
            std::string::String::from_utf8_lossy(s)
        );
    }
}

#[test]
fn from_line_strip_and_keep() {
    let msg = b"From alice@example.org Sat Nov 28 18:03:09 2026\nSubject: x\n\nFrom body\n";
    let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), msg);
    assert_eq!(out, b"Subject: x\n\nFrom body\n");
    assert_eq!(
        t.envelope().unwrap().sender(),
        Sender::Address(b"alice@example.org")
    );
    let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Keep), msg);
    assert_eq!(out, msg);
    assert!(t.found());
    // No From line: untouched, including a near miss.
    for m in [&b"Subject: x\n\nbody"[..], b"Fro", b"From:x\n", b"", b"F"] {
        let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), m);
        assert_eq!(out, m);
        assert!(!t.found() && t.envelope().is_none());
    }
    // A From line only, without newline.
    let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), b"From a b");
    assert_eq!(out, b"");
    assert_eq!(t.envelope().unwrap().sender(), Sender::Address(b"a"));
    // Too long: stripped, but no envelope.
    let mut long = b"From ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 5000));
    long.extend_from_slice(b"\nS: y\n");
    let (out, t) = all_chunkings(|| FromLine::new(FromLineMode::Strip), &long);
    assert_eq!(out, b"S: y\n");
    assert!(t.found() && t.envelope().is_none());
}

#[test]
fn prelude_lines() {
    let f = PreludeFields {
        return_path: Some(b" <alice@example.org> "),
        original_to: Some(b"Bob@Example.org"),
        delivered_to: Some(b"bob@example.org"),
    };
    let (out, _) = all_chunkings(|| Prelude::new(f).unwrap(), b"Subject: x\n\nbody\n");
    assert_eq!(
        out,
        &b"Return-Path: <alice@example.org>\nX-Original-To: Bob@Example.org\n\
           Delivered-To: bob@example.org\nSubject: x\n\nbody\n"[..]
    );
    let (out, _) = all_chunkings(|| Prelude::new(f).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
    assert_eq!(
        out,
        &b"Return-Path: <alice@example.org>\r\nX-Original-To: Bob@Example.org\r\n\
           Delivered-To: bob@example.org\r\nSubject: x\r\n\r\nbody\r\n"[..]
    );
    // A kept From line stays first; the null sender; only some fields.
    let g = PreludeFields {
        return_path: Some(b"<>"),
        delivered_to: Some(b"bob@x"),
        ..Default::default()
    };
    let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"From a b\nS: x\r\n");
    assert_eq!(
        out,
        b"From a b\nReturn-Path: <>\r\nDelivered-To: bob@x\r\nS: x\r\n"
    );
    // Empty message, message without newline, near-miss From.
    let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"");
    assert_eq!(out, b"Return-Path: <>\nDelivered-To: bob@x\n");
    let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"Fro");
    assert_eq!(out, b"Return-Path: <>\nDelivered-To: bob@x\nFro");
    let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), b"From:x\r\n");
    assert_eq!(out, b"Return-Path: <>\r\nDelivered-To: bob@x\r\nFrom:x\r\n");
    // A first line longer than the peek window: LF.
    let mut long = std::vec![b'a'; 3000];
    long.extend_from_slice(b"\r\n");
    let (out, _) = all_chunkings(|| Prelude::new(g).unwrap(), &long);
    assert!(out.starts_with(b"Return-Path: <>\nDelivered-To: bob@x\naaa"));
    assert!(out.ends_with(&long[2900..]));
    // Nothing to add: identity.
    let (out, _) = all_chunkings(
        || Prelude::new(PreludeFields::default()).unwrap(),
        b"A: b\n",
    );
    assert_eq!(out, b"A: b\n");
    // Header injection refused.
    let bad = PreludeFields {
        delivered_to: Some(b"a@b\r\nBcc: x"),
        ..Default::default()
    };
    assert_eq!(
        Prelude::new(bad).err(),
        Some(AddressError::ControlChar(b'\r'))
    );
    let empty = PreludeFields {
        delivered_to: Some(b"<>"),
        ..Default::default()
    };
    assert_eq!(Prelude::new(empty).err(), Some(AddressError::Empty));
}

#[test]
fn an_address_keeps_no_angle_bracket_but_inside_quotes() {
    for bad in [
        &b"<<>>"[..],
        b"<a@b>>",
        b"<<a@b>",
        b"<a@b",
        b"a@b>",
        b"a<b@c",
    ] {
        assert_eq!(
            normalize_address(bad),
            Err(AddressError::Bracket),
            "{bad:?}"
        );
    }
    assert_eq!(normalize_address(b" <a@b> "), Ok(&b"a@b"[..]));
    assert_eq!(normalize_address(b"<>"), Ok(&b""[..]));
    assert_eq!(
        normalize_address(br#"<"a>b\"<"@c>"#),
        Ok(&br#""a>b\"<"@c"#[..])
    );
    assert_eq!(normalize_address(br#""a\"<"@c"#), Ok(&br#""a\"<"@c"#[..]));
    assert_eq!(normalize_address(br#""a\">"@c"#), Ok(&br#""a\">"@c"#[..]));
    // An escaped backslash does not escape the quote after it.
    assert_eq!(
        normalize_address(br#""a\\"<@c"#),
        Err(AddressError::Bracket)
    );
}

fn loop_all(msg: &[u8], addr: &[u8]) -> bool {
    let want = has_delivered_to(msg, addr);
    for chunk in [1, 2, 3, 7, 64] {
        let mut c = LoopCheck::new(addr);
        for p in msg.chunks(chunk) {
            c.push(p);
        }
        c.finish();
        assert_eq!(c.found(), want, "chunk {chunk}");
    }
    want
}

#[test]
fn loop_detection() {
    let a = b"bob@example.org";
    assert!(loop_all(b"Delivered-To: bob@example.org\n\n", a));
    assert!(loop_all(
        b"Subject: x\ndelivered-to:  <BOB@Example.ORG> \r\n\r\nbody",
        a
    ));
    assert!(loop_all(b"DELIVERED-TO : bob@example.org\n\n", a));
    assert!(loop_all(
        b"X: y\nDelivered-To:\n  bob@exa\n\tmple.org\nZ: w\n\n",
        a
    ));
    assert!(loop_all(
        b"Delivered-To: other@x\nDelivered-To: bob@example.org",
        a
    ));
    assert!(loop_all(
        b"Delivered-To: bob@example.org\n\n",
        b" <BOB@example.org> "
    ));
    // No match.
    assert!(!loop_all(b"Delivered-To: bob@example.org.evil\n\n", a));
    assert!(!loop_all(b"Delivered-To: bob@example.or\n\n", a));
    assert!(!loop_all(b"X-Delivered-To: bob@example.org\n\n", a));
    assert!(!loop_all(b"Delivered-Tox: bob@example.org\n\n", a));
    assert!(!loop_all(
        b"Subject: x\n\nDelivered-To: bob@example.org\n",
        a
    ));
    assert!(!loop_all(
        b"Subject: x\r\n\r\nDelivered-To: bob@example.org\n",
        a
    ));
    assert!(!loop_all(
        b"Subject: x\n Delivered-To: bob@example.org\n",
        a
    ));
    assert!(!loop_all(b"Delivered-To:\n\n", b""));
    assert!(!loop_all(b"Delivered-To: bob@example.org\n\n", b"<>"));
    // A kept From line does not end the header.
    assert!(loop_all(
        b"From a Sat Nov 28 18:03:09 2026\nDelivered-To: bob@example.org\n",
        a
    ));
    // A 1 MiB header line before it changes nothing.
    let mut big = b"X-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'z', 1 << 20));
    big.extend_from_slice(b"\nDelivered-To: bob@example.org\n\nbody");
    assert!(has_delivered_to(&big, a));
    let mut c = LoopCheck::new(a);
    for p in big.chunks(4096) {
        c.push(p);
    }
    assert!(c.header_done() && c.found());
}

#[test]
fn status_filter() {
    let msg = b"From: a\nStatus: RO\nSubject: s\nX-Status: AF\n\tD\nX-Statusx: keep\n\
                status : R\n\nStatus: body stays\n";
    let (out, t) = all_chunkings(StatusFilter::new, msg);
    assert_eq!(
        out,
        &b"From: a\nSubject: s\nX-Statusx: keep\n\nStatus: body stays\n"[..]
    );
    let st = t.status();
    assert_eq!(std::format!("{}", st.flags), "FRST");
    assert!(st.old);
    assert_eq!(
        st.maildir_info().map(|f| std::format!("{f}")).as_deref(),
        Some("FRST")
    );
    // CRLF, last header without newline, only headers.
    let (out, t) = all_chunkings(StatusFilter::new, b"A: b\r\nStatus: O\r\n");
    assert_eq!(out, b"A: b\r\n");
    assert_eq!(t.status().maildir_info(), Some(Flags::EMPTY));
    let (out, t) = all_chunkings(StatusFilter::new, b"A: b\r\nX-Status: F");
    assert_eq!(out, b"A: b\r\n");
    assert_eq!(std::format!("{}", t.status().flags), "F");
    // No status: new/.
    let (out, t) = all_chunkings(StatusFilter::new, b"Stat: x\nS\nStatus\n\nbody");
    assert_eq!(out, b"Stat: x\nS\nStatus\n\nbody");
    assert_eq!(t.status().maildir_info(), None);
    // Whitespace before the colon beyond the hold bound is left alone.
    let mut odd = b"Status".to_vec();
    odd.extend_from_slice(&[b' '; 30]);
    odd.extend_from_slice(b": R\n\n");
    let (out, t) = all_chunkings(StatusFilter::new, &odd);
    assert_eq!(out, odd);
    assert_eq!(t.status(), MboxStatus::default());
    // A 1 MiB header line passes intact.
    let mut big = b"X-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'z', 1 << 20));
    big.extend_from_slice(b"\nStatus: R\n\nb");
    let mut t = StatusFilter::new();
    let out = run(&mut t, &big, 4093, 1000);
    assert_eq!(out.len(), big.len() - 10);
    assert_eq!(std::format!("{}", t.status().flags), "S");
}

#[test]
fn date_capture() {
    let msg = b"Subject: x\nDATE: Sat, 28 Nov 2026\r\n 18:03:09 +0000 (UTC)\nDate: Mon, 1 Jan 2001 00:00:00 +0000\n\n";
    for chunk in [1, 2, 7, 64] {
        let mut d = DateCapture::date();
        for p in msg.chunks(chunk) {
            d.push(p);
        }
        d.finish();
        assert_eq!(
            d.value(),
            Some(&b"Sat, 28 Nov 2026 18:03:09 +0000 (UTC)"[..])
        );
        assert_eq!(d.timestamp(), Some(1795888989));
    }
    let mut d = DateCapture::date();
    d.push(b"Subject: x\n\nDate: Sat, 28 Nov 2026 18:03:09 +0000\n");
    d.finish();
    assert_eq!(d.value(), None);
    let mut m = FieldCapture::<8>::new(b"message-id");
    m.push(b"Message-ID: <0123456789@x>");
    m.finish();
    assert_eq!(m.value(), Some(&b"<0123456"[..]));
    assert!(m.truncated());
}

/// Messages built from tokens that exercise every state (deterministic xorshift).
pub(crate) fn generated(seed: u64, tokens: &[&[u8]], max: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::new();
    let n = (x % max as u64) as usize;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(tokens[(x % tokens.len() as u64) as usize]);
    }
    out
}

const TOKENS: &[&[u8]] = &[
    b"From ",
    b"From",
    b">",
    b"\n",
    b"\r\n",
    b"\r",
    b"Status",
    b"X-Status",
    b": ",
    b":",
    b"RO",
    b"AFD",
    b"Delivered-To",
    b"\nDelivered-To: <a@B>",
    b"\nStatus: R",
    b"a@B",
    b"<",
    b">",
    b" ",
    b"\t",
    b"x",
    b"\xff",
    b"Date",
    b"Sat, 28 Nov 2026 18:03:09 +0000",
    b"\n\n",
];

#[test]
fn generated_inputs_are_chunking_independent() {
    for seed in 0..300 {
        let m = generated(seed, TOKENS, 60);
        let (_, st) = all_chunkings(StatusFilter::new, &m);
        let (_, fl) = all_chunkings(|| FromLine::new(FromLineMode::Strip), &m);
        let _ = all_chunkings(|| FromLine::new(FromLineMode::Keep), &m);
        let f = PreludeFields {
            return_path: Some(b"r@x"),
            delivered_to: Some(b"d@x"),
            ..Default::default()
        };
        let _ = all_chunkings(|| Prelude::new(f).unwrap(), &m);
        let found = loop_all(&m, b"a@b");
        for chunk in [1, 3, 64] {
            let mut s = StatusFilter::new();
            let mut d = DateCapture::date();
            let mut l = LoopCheck::new(b"a@b");
            let mut buf = [0u8; 7];
            run_chunked(&mut s, &m, chunk, &mut buf, |_| {});
            for p in m.chunks(chunk) {
                d.push(p);
                l.push(p);
            }
            d.finish();
            l.finish();
            assert_eq!(s.status(), st.status(), "seed {seed}");
            assert_eq!(l.found(), found);
            let mut d1 = DateCapture::date();
            d1.push(&m);
            d1.finish();
            assert_eq!(d.value(), d1.value());
        }
        // Keep mode is the identity; Strip removes exactly the first line when it is one.
        if m.starts_with(b"From ") {
            assert!(fl.found());
        } else {
            assert!(!fl.found());
        }
    }
}

/// `skip_line` is many `step`s at once: from every position of generated messages, the bytes
/// it skips each have the role of the state it skips in and no boundary, and the lexer ends
/// in the same state as stepping them one at a time.
#[test]
fn skipping_a_line_is_stepping_its_bytes() {
    let mut skipped = 0;
    for seed in 0..300 {
        let m = generated(seed, TOKENS, 60);
        let mut lex = HeaderLexer::new();
        for i in 0..m.len() {
            let mut fast = lex;
            if let Some(n) = fast.skip_line(&m[i..]) {
                assert!(n > 0, "seed {seed} at {i}");
                let role = if lex.state == LexState::Value {
                    Role::Value
                } else {
                    Role::Other
                };
                let mut slow = lex;
                for &b in &m[i..i + n] {
                    assert_eq!(slow.step(b), (role, false), "seed {seed} at {i}");
                }
                assert_eq!(slow.state, fast.state, "seed {seed} at {i}");
                assert_eq!(slow.in_field, fast.in_field, "seed {seed} at {i}");
                // It stops at the line's end: the next byte, if any, is stepped by itself.
                assert!(i + n == m.len() || m[i + n - 1] == b'\n');
                skipped += 1;
            }
            lex.step(m[i]);
        }
    }
    assert!(
        skipped > 1000,
        "the generated messages reach the skipping states"
    );
}

/// A naive line-based model of the header block: `(name_with_wsp, value_bytes, all_bytes)`
/// per field or other line, and the body.
struct ModelLine {
    /// Name and whitespace before the colon, for fields.
    name: Option<Vec<u8>>,
    /// Bytes after the colon (fields) through the end of the last continuation line.
    value: Vec<u8>,
    /// Every byte of the logical line.
    all: Vec<u8>,
}

fn model(m: &[u8]) -> (Vec<ModelLine>, Vec<u8>) {
    let mut lines: Vec<ModelLine> = Vec::new();
    let mut rest = m;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let line = &rest[..end];
        if line == b"\n" || line == b"\r\n" {
            return (lines, rest[end..].to_vec());
        }
        rest = &rest[end..];
        let cont = matches!(line[0], b' ' | b'\t');
        if cont && !lines.is_empty() {
            let l = lines.last_mut().unwrap();
            l.all.extend_from_slice(line);
            l.value.extend_from_slice(line);
            continue;
        }
        let n = line.iter().take_while(|&&b| is_name_byte(b)).count();
        let w = line[n..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let field = !cont && n > 0 && line.get(n + w) == Some(&b':');
        lines.push(ModelLine {
            name: field.then(|| line[..n + w].to_vec()),
            value: if field {
                line[n + w + 1..].to_vec()
            } else {
                Vec::new()
            },
            all: line.to_vec(),
        });
    }
    (lines, Vec::new())
}

fn model_status(m: &[u8]) -> (Vec<u8>, MboxStatus) {
    let (lines, body) = model(m);
    let mut out = Vec::new();
    let mut st = MboxStatus::default();
    let mut header_len = 0;
    for l in &lines {
        header_len += l.all.len();
        let drop = l.name.as_ref().is_some_and(|n| {
            let bare: Vec<u8> = n
                .iter()
                .copied()
                .filter(|b| !matches!(b, b' ' | b'\t'))
                .collect();
            n.len() < STATUS_HOLD
                && (bare.eq_ignore_ascii_case(b"status") || bare.eq_ignore_ascii_case(b"x-status"))
        });
        if drop {
            l.value.iter().for_each(|&b| st.note(b));
        } else {
            out.extend_from_slice(&l.all);
        }
    }
    out.extend_from_slice(&m[header_len..m.len() - body.len()]);
    out.extend_from_slice(&body);
    (out, st)
}

fn model_loop(m: &[u8], addr: &[u8]) -> bool {
    let norm = |v: &[u8]| -> Vec<u8> {
        v.iter()
            .filter(|&&b| !insignificant(b))
            .map(u8::to_ascii_lowercase)
            .collect()
    };
    let want = norm(addr);
    !want.is_empty()
        && model(m).0.iter().any(|l| {
            l.name.as_ref().is_some_and(|n| {
                let bare: Vec<u8> = n
                    .iter()
                    .copied()
                    .filter(|b| !matches!(b, b' ' | b'\t'))
                    .collect();
                bare.eq_ignore_ascii_case(b"delivered-to")
            }) && norm(&l.value) == want
        })
}

#[test]
fn generated_inputs_match_a_line_model() {
    let (mut dropped, mut loops) = (0, 0);
    for seed in 0..2000 {
        let m = generated(seed, TOKENS, 60);
        let mut t = StatusFilter::new();
        let out = run(&mut t, &m, 3, 5);
        let (want, st) = model_status(&m);
        assert_eq!(
            (String::from_utf8_lossy(&out), t.status()),
            (String::from_utf8_lossy(&want), st),
            "seed {seed}: {:?}",
            String::from_utf8_lossy(&m)
        );
        let found = has_delivered_to(&m, b"a@b");
        assert_eq!(found, model_loop(&m, b"a@b"), "seed {seed}");
        dropped += usize::from(out.len() < m.len());
        loops += usize::from(found);
    }
    // The generator must reach the interesting cases, or this test proves nothing.
    assert!(dropped > 20 && loops > 5, "dropped {dropped} loops {loops}");
}

#[test]
fn prefixed_reader() {
    use embedded_io::Read;
    let mut r = Prefixed::new(b"Delivered-To: a\n", &b"\nbody"[..]);
    let mut out = Vec::new();
    let mut buf = [0u8; 3];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, b"Delivered-To: a\n\nbody");
}

#[test]
fn transformed_reader_chains() {
    use embedded_io::Read;
    let msg: &[u8] = b"From a@b Sat Nov 28 18:03:09 2026\nStatus: RO\nSubject: x\n\nbody\n";
    let f = PreludeFields {
        delivered_to: Some(b"me@x"),
        ..Default::default()
    };
    let inner: Transformed<&[u8], FromLine, [u8; 7]> =
        Transformed::new(msg, FromLine::new(FromLineMode::Strip));
    let mid: Transformed<_, StatusFilter, [u8; 3]> = Transformed::new(inner, StatusFilter::new());
    let mut outer: Transformed<_, Prelude, [u8; 5]> =
        Transformed::new(mid, Prelude::new(f).unwrap());
    let mut out = Vec::new();
    let mut buf = [0u8; 2];
    loop {
        let n = outer.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, b"Delivered-To: me@x\nSubject: x\n\nbody\n");
    let (mid, _) = outer.into_parts();
    assert!(mid.transform().status().old);
    // A scanner inside a chain sees the bytes and passes them on.
    let src: &[u8] = b"Subject: x\nDate: Thu, 01 Jan 1970 00:01:00 +0000\n\nb";
    let mut r: Transformed<_, Observe<DateCapture>, [u8; 4]> =
        Transformed::new(src, Observe(DateCapture::date()));
    let mut all = Vec::new();
    let mut one = [0u8; 1];
    while r.read(&mut one).unwrap() == 1 {
        all.push(one[0]);
    }
    assert_eq!(all, src);
    assert_eq!(r.transform().0.timestamp(), Some(60));
    let (inner, _) = mid.into_parts();
    assert_eq!(
        inner.transform().envelope().unwrap().sender(),
        Sender::Address(b"a@b")
    );
}

/// A lent buffer gives the same bytes as an owned one whatever its size and earlier contents
/// (it is reused, not cleared), and a `Scanned` reader sees every byte in place and the end.
#[test]
fn lent_buffers_and_scanned_readers_give_the_same_bytes() {
    use embedded_io::Read;
    let msg: &[u8] = b"Status: RO\nDate: Thu, 01 Jan 1970 00:01:00 +0000\nSubject: x\n\nbody\n";
    let want = b"Date: Thu, 01 Jan 1970 00:01:00 +0000\nSubject: x\n\nbody\n";
    let mut lent = [0xA5u8; 64];
    for size in [1, 2, 3, 7, 64] {
        for out_size in [1, 3, 4096] {
            // Twice over the same buffer: what the first message left in it changes nothing.
            for _ in 0..2 {
                let filtered =
                    Transformed::with_buffer(msg, StatusFilter::new(), &mut lent[..size]);
                let mut r = Scanned::new(filtered, DateCapture::date());
                let mut out = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = r.read(&mut buf[..out_size]).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                assert_eq!(out, want, "layer {size}, reads of {out_size}");
                assert_eq!(r.scanner().timestamp(), Some(60));
                assert!(r.source_mut().transform().status().old);
            }
        }
    }
    // The end of the source ends the scan (an empty read into an empty buffer does not).
    let mut r = Scanned::new(
        &b"Date: Thu, 01 Jan 1970 00:01:00 +0000"[..],
        DateCapture::date(),
    );
    let mut buf = [0u8; 64];
    assert_eq!(r.read(&mut buf).unwrap(), 37);
    assert_eq!(r.read(&mut []).unwrap(), 0);
    assert!(!r.scanner().done());
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    assert!(r.scanner().done());
    assert_eq!(r.scanner().timestamp(), Some(60));
}

#[test]
fn a_redirect_goes_to_one_address() {
    let ok: &[(&[u8], &[u8])] = &[
        (b"a@example.org", b"a@example.org"),
        (b" <a.b+c@x.example> ", b"a.b+c@x.example"),
        (b"Bob <bob@x>", b"bob@x"),
        (b"\"Bob, Jr\" <bob@x>", b"bob@x"),
        (br#""john q"@x"#, br#""john q"@x"#),
        (br#""a@b\"c"@x"#, br#""a@b\"c"@x"#),
        (b"a@[192.0.2.1]", b"a@[192.0.2.1]"),
        // Obsolete or commented forms are the MTA's to parse, as Pigeonhole lets them by.
        (b"a.@x", b"a.@x"),
        (b"a(comment)@x", b"a(comment)@x"),
        (
            "j\u{f6}rg@b\u{fc}cher.example".as_bytes(),
            "j\u{f6}rg@b\u{fc}cher.example".as_bytes(),
        ),
    ];
    for &(a, want) in ok {
        assert_eq!(redirect_target(a), Some(want), "{a:?}");
    }
    for bad in [
        &b""[..],
        b"<>",
        b"bob",
        b"@x",
        b"a@",
        b"a@b, c@d",
        b"a@b; c@d",
        b"a@b c@d",
        b"Bob a@b",
        br#""open@x"#,
        b"a\n@x",
        b"<<a@b>>",
    ] {
        assert_eq!(redirect_target(bad), None, "{bad:?}");
    }
    assert!(same_mailbox(b"x@Example.NET", b"Bob <x@example.net>"));
    assert!(
        !same_mailbox(b"X@example.net", b"x@example.net"),
        "local parts keep case"
    );
}
