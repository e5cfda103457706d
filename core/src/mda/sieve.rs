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
//! - A plan over [`crate::machine::unit::PLAN_MAX`] bytes (32 actions with names near their
//!   longest) is a runtime error like the interpreter's own: the implicit keep only.

use crate::machine::unit::{Plan, PlanError};
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

/// The decision of `out`, and whether the plan had to fall back to the implicit keep (too
/// large a plan).
pub fn decide(out: &Outcome) -> (Decision<'_>, bool) {
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
    match plan(out) {
        Ok(p) => (Decision::Perform(p), false),
        Err(PlanError::TooLarge) => {
            let mut p = Plan::new();
            // An empty plan cannot be too large.
            let _ = p.copy(None, maildir_flags(out.implicit_flags()), false);
            (Decision::Perform(p), true)
        }
    }
}

fn plan(out: &Outcome) -> Result<Plan, PlanError> {
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
            // Not performed by the unit yet: recording a duplicate's key with the copies
            // and sending the vacation reply (null sender) are the delivery's to add; until
            // then the message is delivered as decided, without them.
            Action::Track { .. } | Action::Vacation { .. } => {}
        }
    }
    if out.implicit_keep() {
        p.copy(None, maildir_flags(out.implicit_flags()), false)?;
    }
    Ok(p)
}

/// `INBOX`, in any case, names the user's inbox (RFC 3501 5.1).
fn is_inbox(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"INBOX")
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
            header: b"Subject: hi\r\nFrom: a@b\r\n\r\n",
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
        let (d, _) = decide(&out);
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
            })
            .collect()
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
        match decide(&out).0 {
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
}
