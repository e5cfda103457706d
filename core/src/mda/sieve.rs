//! What a Sieve run's [`Outcome`] means for the MTA's delivery: a [`Decision`] to store and
//! send (a [`Plan`], performed as one exactly-once unit by [`crate::machine::unit`]) or to
//! refuse the message.
//!
//! Decisions:
//! - The implicit keep (no action cancelled it, or a runtime error) is a copy into INBOX with
//!   the implicit flags, after the decided actions.
//! - `reject`/`ereject` is the script's decision to bounce: [`Decision::Reject`], answered to
//!   the MTA with 5.7.1 (the interpreter refuses `reject` together with a store or redirect,
//!   so a reject never comes with copies).
//! - IMAP system flags become Maildir letters (`\Seen` S, `\Answered` R, `\Flagged` F,
//!   `\Deleted` T, `\Draft` D, case-insensitively, RFC 3501); keywords have no letter in
//!   Maildir and are not stored. A copy with at least one letter is stored into cur/ with
//!   `:2,<letters>`, one without into new/.
//! - A `duplicate` id to remember and a vacation reply become the plan's last entries, their
//!   periods made dates from `now`: the unit remembers the ids and sends the reply once every
//!   copy is stored, and a retry performs the same ones (the recorded plan).
//! - The vacation reply's bytes ([`reply_message`]) are RFC 5230 section 5's: To the sender,
//!   `Auto-Submitted: auto-replied`, In-Reply-To and References the message's Message-ID.
//! - A redirected message carries the recipient's `Delivered-To` above it
//!   ([`crate::mda::redirect_fields`]).
//! - A plan over [`crate::machine::unit::PLAN_MAX`] bytes (32 actions with names near their
//!   longest) is a runtime error like the interpreter's own: the implicit keep only.

use crate::machine::unit::{Plan, PlanError, Reply};
use crate::maildir::flags::Flags;
use crate::sieve::{Action, Outcome};

/// What the script decided for the message.
// The plan is held inline: the core has no allocator, and one decision exists per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision<'o> {
    /// Store and send these, as one unit.
    Perform(Plan),
    /// Refuse the message with this reason (`ereject` when `extended`).
    Reject {
        /// The script's reason.
        reason: &'o [u8],
        /// `ereject`.
        extended: bool,
    },
}

/// The decision of `out` at `now` (seconds since 1970: when remembered ids expire), and
/// whether the plan had to fall back to the implicit keep (too large a plan).
pub fn decide(out: &Outcome, now: u64) -> (Decision<'_>, bool) {
    for a in out.actions() {
        if let Action::Reject { reason, extended } = *a {
            return (
                Decision::Reject {
                    reason: out.text(reason),
                    extended,
                },
                false,
            );
        }
    }
    match plan(out, now) {
        Ok(p) => (Decision::Perform(p), false),
        Err(PlanError::TooLarge) => {
            let mut p = Plan::new();
            // An empty plan cannot be too large.
            let _ = p.copy(None, maildir_flags(out.implicit_flags()), false);
            (Decision::Perform(p), true)
        }
    }
}

fn plan(out: &Outcome, now: u64) -> Result<Plan, PlanError> {
    let mut p = Plan::new();
    for a in out.actions() {
        match *a {
            Action::Store {
                mailbox,
                flags,
                create,
            } => {
                let mailbox = mailbox.map(|m| out.text(m)).filter(|m| !is_inbox(m));
                p.copy(mailbox, maildir_flags(out.text(flags)), create)?;
            }
            Action::Redirect { address } => p.redirect(out.text(address))?,
            Action::Reject { .. } | Action::Discard => {}
            Action::Track { .. } | Action::Vacation { .. } => {}
        }
    }
    if out.implicit_keep() {
        p.copy(None, maildir_flags(out.implicit_flags()), false)?;
    }
    for a in out.actions() {
        match *a {
            Action::Track { key, seconds } => {
                p.track(out.text(key), now.saturating_add(u64::from(seconds)))?
            }
            Action::Vacation {
                to,
                from,
                subject,
                reason,
                mime,
                in_reply_to,
                key,
                seconds,
                ..
            } => p.vacation(&Reply {
                to: out.text(to),
                from: from.map_or(&b""[..], |f| out.text(f)),
                subject: out.text(subject),
                reason: out.text(reason),
                mime,
                in_reply_to: out.text(in_reply_to),
                key: out.text(key),
                until: now.saturating_add(u64::from(seconds)),
            })?,
            _ => {}
        }
    }
    Ok(p)
}

/// Writes the vacation reply `reply` to `out`, in pieces, with LF line ends (for
/// `sendmail -i`): From (`:from`, else `user`, the recipient's address), To, Subject (RFC
/// 2047 encoded when not ASCII), In-Reply-To and References (when the message had a
/// Message-ID), `Auto-Submitted: auto-replied` (RFC 5230 5), then a plain UTF-8 text body
/// or, with `:mime`, the reason as the MIME entity it is. The sendmail program adds Date and
/// Message-ID. Line breaks inside a field's value become spaces (no field can be injected).
pub fn reply_message(reply: &Reply<'_>, user: &[u8], out: &mut dyn FnMut(&[u8])) {
    let field = |out: &mut dyn FnMut(&[u8]), name: &[u8], value: &[u8]| {
        out(name);
        out(b": ");
        for (i, part) in value.split(|&b| b == b'\r' || b == b'\n').enumerate() {
            if i > 0 {
                out(b" ");
            }
            out(part);
        }
        out(b"\n");
    };
    let from = if reply.from.is_empty() {
        user
    } else {
        reply.from
    };
    if !from.is_empty() {
        field(out, b"From", from);
    }
    field(out, b"To", reply.to);
    out(b"Subject: ");
    encode_word(reply.subject, out);
    out(b"\n");
    if !reply.in_reply_to.is_empty() {
        field(out, b"In-Reply-To", reply.in_reply_to);
        field(out, b"References", reply.in_reply_to);
    }
    out(b"Auto-Submitted: auto-replied\n");
    out(b"MIME-Version: 1.0\n");
    if !reply.mime {
        out(b"Content-Type: text/plain; charset=utf-8\n");
        out(b"Content-Transfer-Encoding: 8bit\n");
        out(b"\n");
    }
    // The body (with :mime, the entity's own header, its empty line and its body), LF ends.
    let mut rest = reply.reason;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..i];
        out(line.strip_suffix(b"\r").unwrap_or(line));
        out(b"\n");
        rest = &rest[i + 1..];
    }
    if !rest.is_empty() {
        out(rest);
        out(b"\n");
    }
}

/// A Subject's value: as it is when printable ASCII, else RFC 2047 encoded words (UTF-8,
/// base64, each at most 75 characters, split between characters), folded.
fn encode_word(value: &[u8], out: &mut dyn FnMut(&[u8])) {
    let plain = value.iter().all(|&b| (b' '..=b'~').contains(&b));
    if plain {
        out(value);
        return;
    }
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // 45 bytes make 60 base64 characters: with `=?UTF-8?B?` and `?=`, 72.
    let mut rest = value;
    let mut first = true;
    while !rest.is_empty() {
        let mut n = rest.len().min(45);
        // Do not split a UTF-8 sequence (RFC 2047 6.3): back up to a character's start.
        while n < rest.len() && n > 1 && rest[n] & 0xC0 == 0x80 {
            n -= 1;
        }
        let (chunk, tail) = rest.split_at(n);
        if !first {
            out(b"\n ");
        }
        first = false;
        out(b"=?UTF-8?B?");
        for g in chunk.chunks(3) {
            let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
            let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            let mut q = [b'='; 4];
            for (i, c) in q.iter_mut().enumerate().take(g.len() + 1) {
                *c = B64[(v >> (18 - 6 * i) & 63) as usize];
            }
            out(&q);
        }
        out(b"?=");
        rest = tail;
    }
}

/// `INBOX`, in any case, names the user's inbox (RFC 3501 5.1).
fn is_inbox(name: &[u8]) -> bool {
    crate::maildir::folder::same_folder(Some(name), None)
}

/// The Maildir letters of a space-separated list of IMAP flags; None when none has a letter.
pub fn maildir_flags(imap: &[u8]) -> Option<Flags> {
    let mut f = Flags::EMPTY;
    let mut any = false;
    for word in imap
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
    {
        let letter = [
            (&b"\\seen"[..], Flags::SEEN),
            (b"\\answered", Flags::REPLIED),
            (b"\\flagged", Flags::FLAGGED),
            (b"\\deleted", Flags::TRASHED),
            (b"\\draft", Flags::DRAFT),
        ]
        .into_iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|(_, l)| l);
        if let Some(l) = letter {
            let _ = f.insert(l);
            any = true;
        }
    }
    any.then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::unit::{Copy, Entry};
    use crate::sieve::{compile, run, Limits, Message, Node};
    use std::vec;
    use std::vec::Vec;

    fn outcome(script: &str) -> std::boxed::Box<Outcome> {
        let limits = Limits::default();
        let mut nodes = vec![Node::FREE; Limits::nodes_for(script.len())];
        let mut strings = vec![0u8; Limits::strings_for(script.len())];
        let s = compile(script.as_bytes(), &limits, &mut nodes, &mut strings).unwrap();
        let msg = Message {
            header: b"Subject: hi\r\nFrom: a@b\r\nTo: c@d\r\n\r\n",
            size: 30,
            envelope_from: b"a@b",
            envelope_to: b"c@d",
        };
        let mut out = std::boxed::Box::new(Outcome::new());
        let mut scratch = vec![0u8; 4096];
        run(&s, &msg, &limits, &mut scratch, &mut out);
        out
    }

    fn entries(script: &str) -> Vec<std::string::String> {
        let out = outcome(script);
        let (d, _) = decide(&out, 0);
        let Decision::Perform(p) = d else {
            panic!("not a plan")
        };
        p.entries()
            .map(|e| match e {
                Entry::Copy(Copy {
                    mailbox,
                    flags,
                    create,
                    ..
                }) => std::format!(
                    "copy {:?} {:?} {create}",
                    mailbox.map(|m| std::string::String::from_utf8_lossy(m).into_owned()),
                    flags.map(|f| std::format!("{f}"))
                ),
                Entry::Redirect { address, .. } => {
                    std::format!("redirect {}", std::string::String::from_utf8_lossy(address))
                }
                Entry::Track { key, until, .. } => std::format!(
                    "track {:?} until {until}",
                    std::string::String::from_utf8_lossy(key)
                ),
                Entry::Vacation { reply, .. } => std::format!(
                    "vacation to {} until {}",
                    std::string::String::from_utf8_lossy(reply.to),
                    reply.until
                ),
            })
            .collect()
    }

    #[test]
    fn ids_and_the_reply_come_after_the_copies_with_their_dates() {
        let out = outcome(
            "require [\"duplicate\", \"vacation\", \"fileinto\"];\n\
             if duplicate :seconds 60 { discard; stop; }\n\
             if duplicate :handle \"h\" :uniqueid \"u\" { discard; }\n\
             vacation :addresses \"c@d\" :days 2 \"away\";\n\
             fileinto \"A\";",
        );
        let Decision::Perform(p) = decide(&out, 1000).0 else {
            panic!("not a plan")
        };
        let e: Vec<std::string::String> = p
            .entries()
            .map(|e| match e {
                Entry::Copy(c) => std::format!("copy {:?}", c.mailbox),
                Entry::Redirect { .. } => "redirect".into(),
                Entry::Track { key, until, .. } => std::format!(
                    "track {:?} until {until}",
                    std::string::String::from_utf8_lossy(key)
                ),
                Entry::Vacation { reply, .. } => std::format!(
                    "vacation to {} key {:?} until {}",
                    std::string::String::from_utf8_lossy(reply.to),
                    std::string::String::from_utf8_lossy(reply.key),
                    reply.until
                ),
            })
            .collect();
        // No Message-ID: the first duplicate tracks nothing (RFC 7352 3).
        assert_eq!(
            e,
            [
                "copy Some([65])",
                "track \"duplicate\\0h\\0u\" until 44200",
                "vacation to a@b key \"vacation\\0away<default-subject><default-from><NO-MIME>\\0a@b\" until 173800",
            ]
        );
        // The record keeps them.
        let mut rec = heapless::Vec::new();
        p.encode(&mut rec);
        assert_eq!(Plan::decode(&rec), Some(p));
    }

    fn reply(subject: &[u8], reason: &[u8], mime: bool, id: &[u8]) -> std::string::String {
        let r = Reply {
            to: b"alice@example.org",
            from: b"",
            subject,
            reason,
            mime,
            in_reply_to: id,
            key: b"k",
            until: 1,
        };
        let mut v = Vec::new();
        reply_message(&r, b"bob@example.com", &mut |b| v.extend_from_slice(b));
        std::string::String::from_utf8(v).unwrap()
    }

    #[test]
    fn the_vacation_reply_has_the_fields_rfc_5230_asks_for() {
        assert_eq!(
            reply(
                b"Auto: hi",
                b"I am away.\r\nBack on Monday.",
                false,
                b"<1@x>"
            ),
            "From: bob@example.com\n\
             To: alice@example.org\n\
             Subject: Auto: hi\n\
             In-Reply-To: <1@x>\n\
             References: <1@x>\n\
             Auto-Submitted: auto-replied\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             I am away.\n\
             Back on Monday.\n"
        );
        // No Message-ID: no In-Reply-To; :mime: the reason is the entity.
        assert_eq!(
            reply(
                b"x\r\ny",
                b"Content-Type: text/plain\r\n\r\nbody\r\n",
                true,
                b""
            ),
            "From: bob@example.com\nTo: alice@example.org\nSubject: =?UTF-8?B?eA0KeQ==?=\n\
             Auto-Submitted: auto-replied\nMIME-Version: 1.0\n\
             Content-Type: text/plain\n\nbody\n"
        );
    }

    #[test]
    fn a_non_ascii_subject_is_encoded_in_words_split_between_characters() {
        let subject = "Auto: caf\u{e9} ".repeat(6);
        let r = reply(subject.as_bytes(), b"", false, b"");
        let line = r.lines().skip_while(|l| !l.starts_with("Subject:"));
        let words: Vec<&str> = line
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .map(|l| l.trim_start_matches("Subject:").trim())
            .collect();
        assert_eq!(words.len(), 2, "{r}");
        let mut decoded = Vec::new();
        for w in &words {
            assert!(w.len() <= 75, "{w}");
            let b64 = w
                .strip_prefix("=?UTF-8?B?")
                .unwrap()
                .strip_suffix("?=")
                .unwrap();
            let bytes = base64_decode(b64);
            // Each word is whole UTF-8 on its own.
            assert!(core::str::from_utf8(&bytes).is_ok(), "{w}");
            decoded.extend(bytes);
        }
        assert_eq!(decoded, subject.as_bytes());
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for q in s.as_bytes().chunks(4) {
            let mut v = 0u32;
            let mut n = 0;
            for &c in q {
                v <<= 6;
                if c != b'=' {
                    v |= B64.iter().position(|&x| x == c).unwrap() as u32;
                    n += 1;
                }
            }
            let bytes = v.to_be_bytes();
            out.extend_from_slice(&bytes[1..n]);
        }
        out
    }

    #[test]
    fn the_plan_lists_the_copies_then_the_implicit_keep() {
        assert_eq!(entries("keep;"), ["copy None None false"]);
        assert_eq!(entries(""), ["copy None None false"]);
        assert_eq!(entries("discard;"), Vec::<std::string::String>::new());
        assert_eq!(
            entries(
                "require [\"fileinto\", \"copy\", \"imap4flags\", \"mailbox\"];\n\
                 fileinto :copy :create :flags [\"\\\\Seen\", \"$Junk\"] \"A/B\";\n\
                 fileinto :copy \"inbox\";\n\
                 fileinto \"C\";\n\
                 redirect \"x@example.org\";"
            ),
            [
                "copy Some(\"A/B\") Some(\"S\") true",
                "copy None None false",
                "copy Some(\"C\") None false",
                "redirect x@example.org",
            ]
        );
        assert_eq!(
            entries("require [\"imap4flags\"]; addflag [\"\\\\Flagged\", \"\\\\answered\"];"),
            ["copy None Some(\"FR\") false"]
        );
    }

    #[test]
    fn a_reject_is_a_decision_of_its_own() {
        let out = outcome("require \"reject\"; reject \"no thanks\";");
        match decide(&out, 0).0 {
            Decision::Reject { reason, extended } => {
                assert_eq!(reason, b"no thanks");
                assert!(!extended);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn imap_flags_map_to_maildir_letters() {
        assert_eq!(maildir_flags(b""), None);
        assert_eq!(maildir_flags(b"$Junk NonJunk"), None);
        let f = maildir_flags(b"\\Seen \\DRAFT\t\\Deleted  $x").unwrap();
        assert_eq!(std::format!("{f}"), "DST");
    }

    /// A vacation reason up to [`crate::sieve::VACATION_REASON_MAX`] bytes is recorded
    /// whole with the plan (a retry sends the same reply); a longer literal one is refused
    /// when the script compiles (`sieve check` says where), and one made longer by its
    /// variables is a runtime error: the implicit keep, no reply.
    #[test]
    fn a_vacation_reason_up_to_its_limit_is_recorded_and_a_longer_one_refused() {
        use crate::sieve::{RuntimeError, VACATION_REASON_MAX};
        use std::string::ToString;
        let head = "require \"vacation\";\nvacation :addresses \"c@d\" \"";
        let at_limit = "x".repeat(VACATION_REASON_MAX);
        let out = outcome(&std::format!("{head}{at_limit}\";"));
        let (d, fell_back) = decide(&out, 0);
        assert!(!fell_back);
        let Decision::Perform(p) = d else {
            panic!("not a plan")
        };
        let mut rec = heapless::Vec::new();
        p.encode(&mut rec);
        let back = Plan::decode(&rec).unwrap();
        let reason = back.entries().find_map(|e| match e {
            Entry::Vacation { reply, .. } => Some(reply.reason.to_vec()),
            _ => None,
        });
        assert_eq!(reason.as_deref(), Some(at_limit.as_bytes()));
        let src = std::format!("{head}{at_limit}x\";");
        let limits = Limits::default();
        let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
        let mut strings = vec![0u8; Limits::strings_for(src.len())];
        let e = compile(src.as_bytes(), &limits, &mut nodes, &mut strings).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2:27: the vacation reason is longer than 4096 bytes"
        );
        let x = "x".repeat(4000);
        let out = outcome(&std::format!(
            "require [\"vacation\", \"variables\"];\nset \"a\" \"{x}\";\n\
             vacation :addresses \"c@d\" \"${{a}}${{a}}\";"
        ));
        assert_eq!(out.error(), Some(RuntimeError::ReasonTooLong));
        assert_eq!(
            out.error().unwrap().to_string(),
            std::format!(
                "the vacation reason is longer than {VACATION_REASON_MAX} bytes once its \
                 variables are expanded"
            )
        );
        assert!(out.implicit_keep() && out.actions().is_empty());
    }
}
