//! The trace fields an MDA adds (`Return-Path:`, `X-Original-To:`, `Delivered-To:`), reconciled
//! with what the MTA already wrote, and the `Delivered-To` loop decision.
//!
//! # Why reconcile
//! Postfix's local(8) prepends a `From ` line, `Return-Path:`, `X-Original-To:` and
//! `Delivered-To:` before it runs a `mailbox_command` (`prepend_delivered_header` includes
//! `command` by default), and it has already checked that the message does not carry
//! `Delivered-To: <recipient>` (its own loop check, `local/recipient.c`). Blindly adding the
//! same fields again would duplicate them, and a naive loop check would see Postfix's fresh
//! `Delivered-To:` and refuse every message.
//!
//! # The rules ([`plan`])
//! The *leading block* is the run of `Return-Path:`, `X-Original-To:` and `Delivered-To:` fields
//! at the very top of the header (after a `From ` line): where MTAs put the trace of the
//! delivery in progress. Only fields wholly inside the looked-at head count.
//! - `Return-Path`: the sender given (`--return-path`, `SENDER`), else the sender of a stripped
//!   `From ` line when it can be an address (else none). A leading `Return-Path` with the same address is kept and nothing is added;
//!   one with a different address is replaced when a sender was given explicitly, and kept
//!   (ours not added) when ours only came from the `From ` line.
//! - `X-Original-To`: added unless the leading block already has the same address.
//! - `Delivered-To`: the *first* `Delivered-To` of the leading block, when it carries our
//!   address, is the MTA's stamp for this very delivery: it is kept, ours is not added, and the
//!   loop check skips it. Any other `Delivered-To: <our address>` anywhere in the header is a
//!   loop (permanent failure, RFC 3463 `5.4.6`).
//!
//! A genuine loop through Postfix is caught by Postfix itself before our command runs; a loop
//! through another forwarder leaves an older `Delivered-To: <us>` *below* the stamp, which we
//! catch. Addresses are compared as [`LoopCheck`] does: case-insensitively, ignoring
//! whitespace, folding and angle brackets.

use core::ops::Range;

use crate::message::{normalize_address, AddressError, LoopCheck, Postmark, PreludeFields};

/// The most leading trace fields looked at.
pub const MAX_LEADING: usize = 16;

/// Which trace field.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `Return-Path:`.
    ReturnPath,
    /// `X-Original-To:`.
    OriginalTo,
    /// `Delivered-To:`.
    DeliveredTo,
}

impl Field {
    fn of(name: &[u8]) -> Option<Field> {
        let name = name.trim_ascii_end();
        if name.eq_ignore_ascii_case(b"return-path") {
            Some(Field::ReturnPath)
        } else if name.eq_ignore_ascii_case(b"x-original-to") {
            Some(Field::OriginalTo)
        } else if name.eq_ignore_ascii_case(b"delivered-to") {
            Some(Field::DeliveredTo)
        } else {
            None
        }
    }
}

/// One field of the leading block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leading {
    /// Which field.
    pub field: Field,
    /// Its bytes in the head, continuation lines and line ending included.
    pub span: Range<usize>,
    /// Its value (after the colon), within `span`.
    pub value: Range<usize>,
}

/// What the start of a message says: its `From ` line and its leading trace fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The length of a complete leading `From ` line (with its `\n`), if there is one.
    pub from_line: Option<usize>,
    /// The leading block, in order.
    pub leading: heapless::Vec<Leading, MAX_LEADING>,
}

fn line_end(s: &[u8], from: usize) -> Option<usize> {
    s[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| from + p + 1)
}

impl Head {
    /// Parses the first bytes of a message (as much as the caller has looked at).
    pub fn parse(head: &[u8]) -> Head {
        Head::parse_framed(head, true)
    }

    /// [`Head::parse`]; unless `framed`, a first line `From ...` is the message's own text
    /// (LMTP has no mbox framing), not an envelope line.
    pub fn parse_framed(head: &[u8], framed: bool) -> Head {
        let mut h = Head::default();
        let mut pos = 0;
        if framed && head.starts_with(b"From ") {
            match line_end(head, 0) {
                Some(e) => {
                    h.from_line = Some(e);
                    pos = e;
                }
                None => return h,
            }
        }
        while h.leading.len() < MAX_LEADING {
            let Some(colon) = head[pos..].iter().position(|&b| b == b':' || b == b'\n') else {
                break;
            };
            let colon = pos + colon;
            if head[colon] != b':' {
                break;
            }
            // A field name: no leading blank (that is a continuation), blanks only before the
            // colon (obsolete syntax).
            let name = &head[pos..colon];
            let Some(field) = Field::of(name).filter(|_| !name[0].is_ascii_whitespace()) else {
                break;
            };
            // The field ends at the first line end not followed by a continuation line; it
            // counts only when that is visible inside the head.
            let mut end = match line_end(head, colon) {
                Some(e) => e,
                None => break,
            };
            let mut complete = true;
            loop {
                match head.get(end) {
                    Some(b' ' | b'\t') => match line_end(head, end) {
                        Some(e) => end = e,
                        None => {
                            complete = false;
                            break;
                        }
                    },
                    Some(_) => break,
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                break;
            }
            let _ = h.leading.push(Leading {
                field,
                span: pos..end,
                value: colon + 1..end,
            });
            pos = end;
        }
        h
    }

    /// The sender of the `From ` line, as a `Return-Path` address (see
    /// [`Postmark::return_path`]).
    pub fn from_sender<'h>(&self, head: &'h [u8]) -> Option<&'h [u8]> {
        let end = self.from_line?;
        Postmark::parse_line(&head[..end])?.return_path()
    }
}

/// The envelope sender of a message whose start is `head`, as a Sieve script's `envelope`
/// test, its redirects and its vacation reply see it: the one given (`--return-path`,
/// `SENDER`), else the message's leading `Return-Path` (what an MTA that hands over no sender
/// wrote), else its `From ` line's sender (what `trace::plan` would make the `Return-Path`);
/// without angle brackets, and `b""` for the null sender, for none known, and for one that
/// cannot be an address. One given through the environment (`given_from_env`) yields to a
/// leading `Return-Path`, as in the stored copy ([`super::FromEnv`]). Unless `framed`, a
/// leading `From ` line is the message's own text (LMTP), not a sender.
pub fn envelope_sender<'a>(
    head: &'a [u8],
    given: Option<&'a [u8]>,
    given_from_env: bool,
    framed: bool,
) -> &'a [u8] {
    let h = Head::parse_framed(head, framed);
    let leading = || {
        let rp = h.leading.iter().find(|l| l.field == Field::ReturnPath);
        rp.map(|l| &head[l.value.clone()])
    };
    let first = if given_from_env {
        leading().or(given)
    } else {
        given.or_else(leading)
    };
    first
        .or_else(|| h.from_sender(head))
        .and_then(|a| normalize_address(a).ok())
        .unwrap_or(b"")
}

/// Whether two addresses are the same for the loop check and for duplicate trace fields.
pub fn same_address(a: &[u8], b: &[u8]) -> bool {
    fn sig(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
        s.iter()
            .copied()
            .filter(|&c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'<' | b'>'))
            .map(|c| c.to_ascii_lowercase())
    }
    sig(a).eq(sig(b))
}

/// What the caller wants added.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// The envelope sender given explicitly (`--return-path`, `SENDER`); `b""` is `<>`.
    pub return_path: Option<&'a [u8]>,
    /// The original recipient (`--original-to`, `ORIGINAL_RECIPIENT`).
    pub original_to: Option<&'a [u8]>,
    /// The recipient (`--delivered-to`, `RECIPIENT`): also the loop-check address.
    pub delivered_to: Option<&'a [u8]>,
    /// The sender of a leading `From ` line that is being removed ([`Head::from_sender`],
    /// copied out of the head by the caller): the `Return-Path` when none is given or present,
    /// if it can be an address.
    pub from_sender: Option<&'a [u8]>,
    /// Which addresses came from the MTA's environment: each stands in for a field of its
    /// kind only where the leading block has none ([`super::FromEnv`]).
    pub from_env: super::FromEnv,
}

/// The decision for one message: what to add, what to remove from the head, and how to check
/// for a loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// The fields to prepend.
    pub prelude: PreludeFields<'a>,
    /// A leading field to remove from the head (a `Return-Path` being replaced).
    pub drop: Option<Range<usize>>,
    /// The MTA's own `Delivered-To` stamp: skipped by the loop check, kept in the message.
    pub stamp: Option<Range<usize>>,
    /// The address whose `Delivered-To` means a loop.
    pub loop_address: Option<&'a [u8]>,
}

/// Decides what to do with a message whose start is `head` (parsed as `h`); see the module
/// documentation for the rules. Fails on an address that cannot go into a header.
pub fn plan<'a>(head: &[u8], h: &Head, w: Wanted<'a>) -> Result<Plan<'a>, AddressError> {
    let mut p = Plan::default();
    let first = |f: Field| h.leading.iter().find(|l| l.field == f);
    let value = |l: &Leading| &head[l.value.clone()];
    match (w.return_path, first(Field::ReturnPath)) {
        // The MTA's own field stands: the environment's copy may be filtered.
        (Some(rp), Some(_)) if w.from_env.return_path => {
            normalize_address(rp)?;
        }
        (Some(rp), Some(l)) => {
            normalize_address(rp)?;
            if !same_address(rp, value(l)) {
                p.drop = Some(l.span.clone());
                p.prelude.return_path = Some(rp);
            }
        }
        (Some(rp), None) => p.prelude.return_path = Some(rp),
        (None, Some(_)) => {}
        (None, None) => {
            p.prelude.return_path = w.from_sender.filter(|a| normalize_address(a).is_ok())
        }
    }
    if let Some(ot) = w.original_to {
        let present = h.leading.iter().any(|l| {
            l.field == Field::OriginalTo && (w.from_env.original_to || same_address(ot, value(l)))
        });
        if !present {
            p.prelude.original_to = Some(ot);
        }
    }
    if let Some(dt) = w.delivered_to {
        if normalize_address(dt)?.is_empty() {
            return Err(AddressError::Empty);
        }
        p.loop_address = Some(dt);
        match first(Field::DeliveredTo) {
            Some(l) if same_address(dt, value(l)) => p.stamp = Some(l.span.clone()),
            // The MTA stamped another address (the alias the mail was sent to): its block
            // stands, with no second Delivered-To.
            Some(_) if w.from_env.delivered_to => {}
            _ => p.prelude.delivered_to = Some(dt),
        }
    }
    // Checks every address (an empty X-Original-To or Delivered-To, control characters).
    crate::message::Prelude::new(p.prelude)?;
    Ok(p)
}

impl<'a> Plan<'a> {
    /// Removes [`Plan::drop`] from `head[..len]` in place, returning the new length. Call once,
    /// before streaming; [`Plan::stamp`] is then shifted accordingly.
    pub fn apply_drop(&mut self, head: &mut [u8], len: usize) -> usize {
        let Some(d) = self.drop.take() else {
            return len;
        };
        head.copy_within(d.end..len, d.start);
        if let Some(s) = self.stamp.as_mut() {
            if s.start >= d.end {
                let n = d.end - d.start;
                *s = s.start - n..s.end - n;
            }
        }
        len - (d.end - d.start)
    }

    /// A loop check for this plan, fed with `head` (the whole looked-at head, after
    /// [`Plan::apply_drop`]) minus the MTA's stamp. `None` when no loop address was given.
    pub fn loop_check(&self, head: &[u8], at_eof: bool) -> Option<LoopCheck<'a>> {
        let mut c = LoopCheck::new(self.loop_address?);
        match &self.stamp {
            Some(s) => {
                c.push(&head[..s.start]);
                c.push(&head[s.end..]);
            }
            None => c.push(head),
        }
        if at_eof {
            c.finish();
        }
        Some(c)
    }
}

/// The error of a [`LoopGuard`]: the source's own, or "this message loops".
#[derive(Debug)]
pub enum GuardError<E> {
    /// The source failed.
    Source(E),
    /// A `Delivered-To:` with the loop address was found while streaming.
    Loop,
}

impl<E: embedded_io::Error> embedded_io::Error for GuardError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            GuardError::Source(e) => e.kind(),
            GuardError::Loop => embedded_io::ErrorKind::InvalidData,
        }
    }
}

/// A reader that keeps a [`LoopCheck`] running over the bytes after the looked-at head (for a
/// header longer than the head) and fails the read, so the delivery is abandoned before it is
/// published, when the check finds a loop.
pub struct LoopGuard<'a, R> {
    inner: R,
    check: Option<LoopCheck<'a>>,
    looped: bool,
}

impl<'a, R> LoopGuard<'a, R> {
    /// Guards `inner` with `check` (already fed the head); `None` guards nothing.
    pub fn new(inner: R, check: Option<LoopCheck<'a>>) -> Self {
        let looped = check.as_ref().is_some_and(|c| c.found());
        LoopGuard {
            inner,
            check,
            looped,
        }
    }

    /// Whether a loop was found.
    pub fn looped(&self) -> bool {
        self.looped
    }
}

impl<E: embedded_io::Error> core::fmt::Display for GuardError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GuardError::Source(e) => write!(f, "{e:?}"),
            GuardError::Loop => f.write_str("mail forwarding loop"),
        }
    }
}

impl<E: embedded_io::Error> core::error::Error for GuardError<E> {}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for LoopGuard<'_, R> {
    type Error = GuardError<R::Error>;
}

impl<R: embedded_io::Read> embedded_io::Read for LoopGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.looped {
            return Err(GuardError::Loop);
        }
        let n = self.inner.read(buf).map_err(GuardError::Source)?;
        if let Some(c) = self.check.as_mut() {
            if !c.header_done() {
                c.push(&buf[..n]);
                if n == 0 {
                    c.finish();
                }
            }
            if c.found() {
                self.looped = true;
                return Err(GuardError::Loop);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTFIX: &[u8] = b"From alice@example.org  Sat Nov 28 18:03:09 2026\n\
Return-Path: <alice@example.org>\n\
X-Original-To: bob@example.org\n\
Delivered-To: bob@example.org\n\
Received: from x\n\
Subject: hi\n\n\
body\n";

    fn run(head: &[u8], w: Wanted<'_>) -> (PreludeFields<'static>, bool, bool) {
        let h = Head::parse(head);
        let p = plan(head, &h, w).unwrap();
        let looped = p.loop_check(head, true).is_some_and(|c| c.found());
        let f = PreludeFields {
            return_path: p.prelude.return_path.map(|a| &*a.to_vec().leak()),
            original_to: p.prelude.original_to.map(|a| &*a.to_vec().leak()),
            delivered_to: p.prelude.delivered_to.map(|a| &*a.to_vec().leak()),
        };
        (f, p.drop.is_some(), looped)
    }

    #[test]
    fn postfix_mailbox_command_adds_nothing_and_is_no_loop() {
        let h = Head::parse(POSTFIX);
        assert_eq!(h.from_line, Some(49));
        assert_eq!(
            h.leading
                .iter()
                .map(|l| l.field)
                .collect::<std::vec::Vec<_>>(),
            [Field::ReturnPath, Field::OriginalTo, Field::DeliveredTo]
        );
        let w = Wanted {
            return_path: Some(b"alice@example.org"),
            original_to: Some(b"bob@example.org"),
            delivered_to: Some(b"BOB@example.org"),
            from_sender: Some(b"alice@example.org"),
            from_env: super::super::FromEnv::default(),
        };
        assert_eq!(run(POSTFIX, w), (PreludeFields::default(), false, false));
        // The same from the environment as Postfix filters it (a quote became `_`), and a
        // Delivered-To for the final user where Postfix stamped the alias: its block stands.
        let all = super::super::FromEnv {
            return_path: true,
            delivered_to: true,
            original_to: true,
        };
        let w = Wanted {
            return_path: Some(b"al_ice@example.org"),
            original_to: Some(b"postmaster@example.org"),
            delivered_to: Some(b"root@example.org"),
            from_sender: Some(b"alice@example.org"),
            from_env: all,
        };
        assert_eq!(run(POSTFIX, w), (PreludeFields::default(), false, false));
        // Given as options, they are what the caller wants written.
        let given = run(
            POSTFIX,
            Wanted {
                from_env: Default::default(),
                ..w
            },
        );
        assert_eq!(given.0.return_path, Some(&b"al_ice@example.org"[..]));
        assert_eq!(given.0.delivered_to, Some(&b"root@example.org"[..]));
        // Without the MTA's block, the environment's addresses are written.
        let bare = b"Subject: s\n\nb";
        let (f, _, _) = run(bare, w);
        assert_eq!(
            (f.return_path, f.original_to, f.delivered_to),
            (w.return_path, w.original_to, w.delivered_to)
        );
        // Without any option: the From_ sender is not re-added (Return-Path is there).
        assert_eq!(
            run(
                POSTFIX,
                Wanted {
                    from_sender: Some(b"alice@example.org"),
                    ..Wanted::default()
                }
            ),
            (PreludeFields::default(), false, false)
        );
    }

    #[test]
    fn a_second_delivered_to_is_a_loop() {
        let mut m = POSTFIX.to_vec();
        let at = m.windows(9).position(|w| w == b"Received:").unwrap();
        m.splice(at..at, b"Delivered-To: <bob@example.org>\n".iter().copied());
        let w = Wanted {
            delivered_to: Some(b"bob@example.org"),
            ..Wanted::default()
        };
        assert!(run(&m, w).2);
        // Deeper in the header, after other fields.
        let m2 = b"Delivered-To: other@x\nSubject: s\nDelivered-To: bob@example.org\n\nb";
        let (f, _, looped) = run(m2, w);
        assert!(looped);
        assert_eq!(f.delivered_to, Some(&b"bob@example.org"[..]));
        // Not a loop: only in the body, or another address.
        assert!(!run(b"Subject: s\n\nDelivered-To: bob@example.org\n", w).2);
        assert!(!run(b"Delivered-To: bob@example.org.evil\n\n", w).2);
    }

    #[test]
    fn from_line_sender_becomes_return_path() {
        let m = b"From alice@x Sat Nov 28 18:03:09 2026\nSubject: s\n\nb";
        let h = Head::parse(m);
        assert_eq!(h.from_sender(m), Some(&b"alice@x"[..]));
        let w = Wanted {
            from_sender: h.from_sender(m),
            ..Wanted::default()
        };
        assert_eq!(run(m, w).0.return_path, Some(&b"alice@x"[..]));
        let m = b"From MAILER-DAEMON Sat Nov 28 18:03:09 2026\nSubject: s\n\nb";
        assert_eq!(Head::parse(m).from_sender(m), Some(&b""[..]));
        // Kept From_ line (no sender passed): no implicit Return-Path.
        assert_eq!(run(m, Wanted::default()).0.return_path, None);
        // A sender that cannot be an address gives none (the message is not refused for it).
        for bad in [&b"<a@x>>"[..], b"<<>>", b"<a@x"] {
            let w = Wanted {
                from_sender: Some(bad),
                ..Wanted::default()
            };
            assert_eq!(run(m, w).0.return_path, None, "{bad:?}");
        }
    }

    #[test]
    fn the_envelope_sender_is_the_given_one_else_the_return_path_else_the_from_line() {
        assert_eq!(
            envelope_sender(POSTFIX, Some(b"<given@x>"), false, true),
            b"given@x"
        );
        assert_eq!(
            envelope_sender(POSTFIX, Some(b""), false, true),
            b"",
            "given: the null sender"
        );
        assert_eq!(
            envelope_sender(POSTFIX, None, false, true),
            b"alice@example.org"
        );
        // SENDER as Postfix filters it yields to Postfix's own Return-Path.
        let filtered = Some(&b"alice_x@example.org"[..]);
        assert_eq!(
            envelope_sender(POSTFIX, filtered, true, true),
            b"alice@example.org"
        );
        let m = b"Subject: s\n\nb";
        assert_eq!(
            envelope_sender(m, filtered, true, true),
            b"alice_x@example.org"
        );
        let m = b"From carol@x Sat Nov 28 18:03:09 2026\nSubject: s\n\nb";
        assert_eq!(envelope_sender(m, None, false, true), b"carol@x");
        assert_eq!(
            envelope_sender(m, None, false, false),
            b"",
            "unframed, it is text"
        );
        let m = b"From MAILER-DAEMON Sat Nov 28 18:03:09 2026\nSubject: s\n\nb";
        assert_eq!(envelope_sender(m, None, false, true), b"");
        let m = b"Return-Path: <>\nFrom: a@x\n\nb";
        assert_eq!(envelope_sender(m, None, false, true), b"");
        // A Return-Path below the first other field is not the MTA's: not used.
        let m = b"Subject: s\nReturn-Path: <late@x>\n\nb";
        assert_eq!(envelope_sender(m, None, false, true), b"");
        assert_eq!(
            envelope_sender(b"From <a@x>> Sat Nov 28 1:1:1 2026\n\n", None, false, true),
            b""
        );
    }

    #[test]
    fn explicit_return_path_replaces_a_different_one() {
        let m = b"Return-Path: <old@x>\nSubject: s\n\nb";
        let w = Wanted {
            return_path: Some(b"new@x"),
            ..Wanted::default()
        };
        let mut buf = m.to_vec();
        let h = Head::parse(&buf);
        let mut p = plan(m, &h, w).unwrap();
        assert!(p.drop.is_some());
        let n = p.apply_drop(&mut buf, m.len());
        assert_eq!(&buf[..n], b"Subject: s\n\nb");
        assert_eq!(p.prelude.return_path, Some(&b"new@x"[..]));
        // Same address: kept, nothing added.
        let w = Wanted {
            return_path: Some(b"OLD@x"),
            ..Wanted::default()
        };
        assert_eq!(run(m, w), (PreludeFields::default(), false, false));
    }

    #[test]
    fn incomplete_or_odd_leading_fields_do_not_count() {
        // The stamp's line is cut off by the head: not recognised, so ours is added.
        let h = Head::parse(b"Delivered-To: bob@example.org");
        assert!(h.leading.is_empty());
        // A continuation line is part of the field.
        let m = b"Delivered-To:\n bob@example.org\nSubject: s\n\n";
        let h = Head::parse(m);
        assert_eq!(h.leading[0].span, 0..31);
        let w = Wanted {
            delivered_to: Some(b"bob@example.org"),
            ..Wanted::default()
        };
        assert_eq!(run(m, w), (PreludeFields::default(), false, false));
        // Bad addresses are refused.
        let bad = Wanted {
            delivered_to: Some(b"a\nb"),
            ..Wanted::default()
        };
        assert!(plan(m, &h, bad).is_err());
        let empty = Wanted {
            delivered_to: Some(b"<>"),
            ..Wanted::default()
        };
        assert_eq!(plan(m, &h, empty), Err(AddressError::Empty));
    }

    #[test]
    fn guard_finds_a_loop_past_the_head() {
        use embedded_io::Read;
        let m: &[u8] = b"Subject: s\nX: y\nDelivered-To: bob@x\n\nbody";
        let head = &m[..12];
        let h = Head::parse(head);
        let w = Wanted {
            delivered_to: Some(b"bob@x"),
            ..Wanted::default()
        };
        let p = plan(head, &h, w).unwrap();
        let c = p.loop_check(head, false).unwrap();
        assert!(!c.found());
        let mut g = LoopGuard::new(&m[12..], Some(c));
        let mut buf = [0u8; 4];
        let mut err = false;
        for _ in 0..20 {
            match g.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(GuardError::Loop) => {
                    err = true;
                    break;
                }
                Err(GuardError::Source(_)) => unreachable!(),
            }
        }
        assert!(err && g.looped());
    }
}
