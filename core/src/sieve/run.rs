//! The interpreter: runs a compiled [`Script`] against one message and decides its actions
//! (RFC 5228 section 2.10 and the extensions' rules), within the [`Limits`]. It only reads: the
//! message's header block (held by the driver in a bounded buffer), its size, the envelope,
//! the script, and what the [`Context`] gives: the body (for `body`), the clock (for
//! `currentdate` and `date`'s local zone) and the memory of earlier runs (for `duplicate` and
//! `vacation`'s `:days`), which it never writes: what to remember is in the outcome
//! ([`Action::Track`], [`Action::Vacation`]) for the driver to record with the delivery. A runtime error
//! (a limit reached, conflicting actions) discards the decided actions and falls back to the
//! implicit keep, as RFC 5228 2.10.6 says; the error is in the [`Outcome`] for the log.

use super::body;
use super::compare;
use super::date;
use super::error::RuntimeError;
use super::header;
use super::mime;
use super::parse::Script;
use super::script::*;
use super::vars::{self, Expanded, Vars};
use super::Limits;
use crate::maildir::folder::same_folder;
use crate::message::{redirect_target, same_mailbox};

/// What the interpreter reads of one message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'m> {
    /// The header block (every line up to and including the empty line, or all of it).
    pub header: &'m [u8],
    /// The message's size in octets (what `size` compares).
    pub size: u64,
    /// The envelope sender (empty for the null sender `<>`).
    pub envelope_from: &'m [u8],
    /// The envelope recipient.
    pub envelope_to: &'m [u8],
}

/// What the caller remembers of earlier runs, for `duplicate` (RFC 7352) and `vacation`'s
/// `:days` (RFC 5230): its dedup store, read during the run, never written. The keys are the
/// ones earlier outcomes carried in [`Action::Track`] and [`Action::Vacation`].
pub trait Seen {
    /// Whether `key` was recorded and its period (the `seconds` it was recorded with) has not
    /// run out at the time of this run.
    fn seen(&self, key: &[u8]) -> bool;
}

/// What a run may need beyond the header block and the envelope. [`Context::NONE`] gives
/// none of it: `body` tests see an empty body, `currentdate` fails, `date` converts to UTC,
/// and `duplicate`/`vacation` remember nothing.
#[derive(Clone, Copy)]
pub struct Context<'c> {
    /// The message body (what follows the header block's empty line), or its start: the
    /// driver reads it ([`super::MessageReader::with_body`]) when the script requires
    /// `body` ([`super::Extensions::BODY`]).
    pub body: &'c [u8],
    /// Now, in seconds since the Unix epoch (`currentdate`); None: `currentdate` fails.
    pub now: Option<i64>,
    /// The local time zone, in minutes east of UTC: `date` and `currentdate` convert to it
    /// unless `:zone`/`:originalzone` say otherwise (RFC 5260 4.1).
    pub local_zone: i16,
    /// The memory of earlier runs; None: nothing was seen before.
    pub seen: Option<&'c dyn Seen>,
}

impl Context<'_> {
    /// No body, no clock, no memory.
    pub const NONE: Context<'static> = Context {
        body: &[],
        now: None,
        local_zone: 0,
        seen: None,
    };
}

/// `duplicate`'s period when `:seconds` is not given (Pigeonhole's default: 12 hours).
pub const DUPLICATE_SECONDS: u32 = 12 * 3600;
/// The longest `duplicate` period (Pigeonhole's default cap: 2 days).
pub const DUPLICATE_SECONDS_MAX: u32 = 2 * 86_400;
/// `vacation`'s period when `:days`/`:seconds` is not given (RFC 5230 4.1: 7 days).
pub const VACATION_SECONDS: u32 = 7 * 86_400;
/// The shortest and longest `vacation` periods (Pigeonhole's defaults: 1 day, and no
/// maximum; RFC 5230 4.1 lets an implementation set both).
pub const VACATION_SECONDS_RANGE: (u32, u32) = (86_400, u32::MAX);
/// The longest `vacation` reason (the reply's body), in bytes: the reply is recorded with the
/// delivery's plan ([`crate::machine::unit::PLAN_MAX`]) so that a retry sends the same one.
/// A longer literal reason is a compile error (`sieve check` names it); one made longer by
/// its variables is a runtime error (the implicit keep, no reply).
pub const VACATION_REASON_MAX: usize = 4096;
/// The longest key a [`Seen`] store is asked about; longer ids are cut.
const KEY_MAX: usize = 1024;

/// A span of the outcome's text buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Text {
    off: u32,
    len: u32,
}

/// One decided action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Store into a mailbox (`keep`, and `fileinto "INBOX"`, store into the user's inbox:
    /// `mailbox` is None).
    Store {
        /// The mailbox, or None for the user's inbox.
        mailbox: Option<Text>,
        /// The IMAP flags to set, space-separated.
        flags: Text,
        /// `:create`: create the mailbox if it does not exist.
        create: bool,
    },
    /// Resend to another address (the driver sends it through the MTA).
    Redirect {
        /// The address.
        address: Text,
    },
    /// Refuse the message (the driver answers the MTA with a 5.7.1 status).
    Reject {
        /// The reason.
        reason: Text,
        /// `ereject`: refuse in the SMTP/LMTP dialogue when possible.
        extended: bool,
    },
    /// `discard`: nothing is stored (recorded so it shows when nothing else happens).
    Discard,
    /// `duplicate` (RFC 7352): remember `key` for `seconds` from now, in the same store
    /// [`Seen`] reads, once the message is delivered: the driver records it in the same
    /// unit as the copies (RFC 7352 3: only a delivered message counts as seen), and a later
    /// record of the same key replaces the earlier one (`:last` refreshes it that way).
    /// Nothing is sent and no mailbox changes; it does not cancel the implicit keep.
    Track {
        /// The store's key (`duplicate` NUL handle NUL id, cut at 1 KiB).
        key: Text,
        /// How long the key is remembered.
        seconds: u32,
    },
    /// `vacation` (RFC 5230): send an auto-reply. The driver builds the message (To: `to`,
    /// From: `from` or the recipient's address, Subject: `subject`, In-Reply-To and
    /// References: `in_reply_to`, Auto-Submitted: auto-replied, the body `reason`: plain
    /// text, or with `mime` a MIME entity whose header starts `reason`) and sends it with
    /// the null envelope sender (`sendmail -f '<>'`), then records `key` for `seconds` in the
    /// [`Seen`] store so the same sender gets no second reply within the period. The core
    /// has already checked the RFC's "do not reply" rules: a null or list-like sender,
    /// Auto-Submitted, Precedence bulk/list/junk, List-* fields, a message not addressed to
    /// the user, and `key` seen. It does not cancel the implicit keep.
    Vacation {
        /// The reply's recipient: the message's envelope sender.
        to: Text,
        /// `:from`, or None: the driver writes the recipient's address.
        from: Option<Text>,
        /// `:subject`, or "Auto: " and the message's (decoded) subject.
        subject: Text,
        /// The reply's body (with `mime`, a MIME entity: its header fields, an empty line,
        /// its body).
        reason: Text,
        /// `:mime`.
        mime: bool,
        /// The message's Message-ID, for In-Reply-To and References (empty when it has none).
        in_reply_to: Text,
        /// `:handle`, or the default handle (reason, subject, from, mime marker).
        handle: Text,
        /// The store's key (`vacation` NUL handle NUL sender in lower case).
        key: Text,
        /// How long the reply is remembered (`:days`/`:seconds`, clamped to
        /// [`VACATION_SECONDS_RANGE`]).
        seconds: u32,
    },
}

/// The largest number of actions an outcome holds (the limit can be lower).
pub const ACTIONS_MAX: usize = 64;
/// The size of an outcome's text buffer (mailbox names, flags, addresses, reasons).
pub const TEXT_MAX: usize = 16 * 1024;
/// The size of the internal flag variable (imap4flags).
const FLAGS_MAX: usize = 1024;

/// The result of a run: the actions in the order decided, and whether the implicit keep
/// still applies. Large: the caller places it (on the heap if it likes) and reuses it.
#[derive(Debug)]
pub struct Outcome {
    actions: heapless::Vec<Action, ACTIONS_MAX>,
    text: heapless::Vec<u8, TEXT_MAX>,
    implicit_keep: bool,
    implicit_flags: Text,
    error: Option<RuntimeError>,
    steps: u32,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome::new()
    }
}

impl Outcome {
    /// An empty outcome.
    pub const fn new() -> Self {
        Outcome {
            actions: heapless::Vec::new(),
            text: heapless::Vec::new(),
            implicit_keep: true,
            implicit_flags: Text { off: 0, len: 0 },
            error: None,
            steps: 0,
        }
    }

    /// The decided actions, in order (empty after a runtime error).
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Whether the implicit keep applies (no action cancelled it, or a runtime error).
    pub fn implicit_keep(&self) -> bool {
        self.implicit_keep
    }

    /// The flags the implicit keep stores with.
    pub fn implicit_flags(&self) -> &[u8] {
        self.text(self.implicit_flags)
    }

    /// The runtime error the run stopped on, if any.
    pub fn error(&self) -> Option<RuntimeError> {
        self.error
    }

    /// How many steps the run took (against `Limits::max_steps`).
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The bytes of a [`Text`].
    pub fn text(&self, t: Text) -> &[u8] {
        &self.text[t.off as usize..(t.off + t.len) as usize]
    }

    fn store_text(&mut self, bytes: &[u8]) -> Result<Text, RuntimeError> {
        let off = self.text.len();
        self.text
            .extend_from_slice(bytes)
            .map_err(|_| RuntimeError::OutOfSpace)?;
        Ok(Text {
            off: off as u32,
            len: bytes.len() as u32,
        })
    }
}

enum Flow {
    Continue,
    Stop,
}

struct Run<'r, 's, 'm> {
    script: &'r Script<'s>,
    msg: &'r Message<'m>,
    ctx: &'r Context<'r>,
    vacation_done: bool,
    limits: &'r Limits,
    out: &'r mut Outcome,
    scratch: &'r mut [u8],
    flags: heapless::Vec<u8, FLAGS_MAX>,
    redirects: usize,
    /// Byte comparisons left: `max_steps` × [`WORK_PER_STEP`], each step spending one step's
    /// worth, each comparison its bytes.
    work: u64,
    vars: Vars,
    exp: Expanded,
    /// Where the header's fields are, found once for every test of the run.
    fields: header::Index<'m>,
}

/// Byte comparisons one step of the budget is worth.
const WORK_PER_STEP: u64 = 64;
/// Body bytes a `body` test walks and decodes per unit of work (a million steps let some 30
/// body tests run over a 16 MiB body).
const BODY_BYTES_PER_WORK: usize = 8;

/// Runs `script` on `msg` into `out` (cleared first), without body, clock or memory
/// ([`Context::NONE`]; see [`run_with`]). `scratch` holds one unfolded header value at a
/// time: values longer than it are compared truncated, so give it the header buffer's size.
pub fn run(
    script: &Script<'_>,
    msg: &Message<'_>,
    limits: &Limits,
    scratch: &mut [u8],
    out: &mut Outcome,
) {
    run_with(script, msg, &Context::NONE, limits, scratch, out)
}

/// Runs `script` on `msg` with what `ctx` gives (the body, the clock, the memory of earlier
/// runs) into `out` (cleared first). `scratch` holds one unfolded header value or one
/// decoded body part at a time: longer ones are compared cut at its size.
pub fn run_with(
    script: &Script<'_>,
    msg: &Message<'_>,
    ctx: &Context<'_>,
    limits: &Limits,
    scratch: &mut [u8],
    out: &mut Outcome,
) {
    *out = Outcome::new();
    let mut r = Run {
        script,
        msg,
        ctx,
        vacation_done: false,
        limits,
        out,
        scratch,
        flags: heapless::Vec::new(),
        redirects: 0,
        work: u64::from(limits.max_steps) * WORK_PER_STEP,
        vars: Vars::default(),
        exp: Expanded::default(),
        fields: header::Index::new(msg.header),
    };
    let result = r.block(script.first);
    let steps = r.out.steps;
    if let Err(e) = result.and_then(|_| r.finish()) {
        *r.out = Outcome::new();
        r.out.error = Some(e);
        r.out.steps = steps;
    }
}

impl Run<'_, '_, '_> {
    fn step(&mut self, n: u32) -> Result<(), RuntimeError> {
        self.out.steps = self.out.steps.saturating_add(n);
        let cost = u64::from(n) * WORK_PER_STEP;
        if self.out.steps > self.limits.max_steps || self.work <= cost {
            self.work = 0;
            return Err(RuntimeError::BudgetExhausted);
        }
        self.work -= cost;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RuntimeError> {
        let has_reject = self
            .out
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reject { .. }));
        let has_delivery = self.out.actions.iter().any(|a| {
            matches!(
                a,
                Action::Store { .. } | Action::Redirect { .. } | Action::Vacation { .. }
            )
        });
        if has_reject && has_delivery {
            return Err(RuntimeError::RejectConflict);
        }
        if self.out.implicit_keep {
            let flags = self.flags.clone();
            self.out.implicit_flags = self.out.store_text(&flags)?;
        }
        Ok(())
    }

    fn block(&mut self, first: u32) -> Result<Flow, RuntimeError> {
        let mut i = first;
        let mut chain_taken = false;
        while i != NONE {
            let node = *self.script.node(i);
            let Kind::Command {
                word,
                spec,
                test,
                block,
            } = node.kind
            else {
                i = node.next;
                continue;
            };
            self.step(1)?;
            let flow = match word {
                Word::If | Word::Elsif | Word::Else => {
                    if word == Word::If {
                        chain_taken = false;
                    }
                    if chain_taken {
                        Flow::Continue
                    } else if word == Word::Else || self.test(test)? {
                        chain_taken = true;
                        self.block(block)?
                    } else {
                        Flow::Continue
                    }
                }
                Word::Stop => Flow::Stop,
                Word::Require => Flow::Continue,
                _ => {
                    self.action(word, &spec)?;
                    Flow::Continue
                }
            };
            if let Flow::Stop = flow {
                return Ok(Flow::Stop);
            }
            i = node.next;
        }
        Ok(Flow::Continue)
    }

    fn push(&mut self, a: Action) -> Result<(), RuntimeError> {
        if self.out.actions.len() >= self.limits.max_actions {
            return Err(RuntimeError::TooManyActions);
        }
        self.out
            .actions
            .push(a)
            .map_err(|_| RuntimeError::TooManyActions)
    }

    /// The flags an action stores with: its `:flags` list, else the internal variable.
    fn action_flags(&mut self, spec: &Spec) -> Result<Text, RuntimeError> {
        if spec.flags == NONE {
            let flags = self.flags.clone();
            return self.out.store_text(&flags);
        }
        let mut set: heapless::Vec<u8, FLAGS_MAX> = heapless::Vec::new();
        for s in self.exp.list(self.script, spec.flags) {
            add_flags(&mut set, s)?;
        }
        self.out.store_text(&set)
    }

    /// Expands the strings with variables of the lists of a command or test.
    fn prepare(&mut self, lists: &[u32]) -> Result<(), RuntimeError> {
        self.exp.clear();
        if self.script.extensions.has(Extensions::VARIABLES) {
            for &l in lists {
                self.exp.prepare(self.script, &self.vars, l)?;
            }
        }
        Ok(())
    }

    fn action(&mut self, word: Word, spec: &Spec) -> Result<(), RuntimeError> {
        self.prepare(&[spec.a, spec.b, spec.flags])?;
        match word {
            Word::Keep | Word::Fileinto => {
                let flags = self.action_flags(spec)?;
                // `fileinto "INBOX"` (any case: RFC 3501 5.1; `INBOX/` too) is the keep's mailbox.
                let mailbox = if word == Word::Fileinto {
                    Some(self.exp.one(self.script, spec.a)).filter(|n| !same_folder(Some(n), None))
                } else {
                    None
                };
                if !spec.copy {
                    self.out.implicit_keep = false;
                }
                // A second store into the same mailbox is the same store (RFC 5228 2.10.3);
                // its flags are the last action's (as Pigeonhole does: RFC 5232 leaves it open).
                // However the mailbox is spelled: `A/B`, `A.B` and `INBOX.A.B` are one folder.
                let same = self.out.actions.iter().position(|a| match a {
                    Action::Store { mailbox: m, .. } => {
                        same_folder(m.map(|t| self.out.text(t)), mailbox)
                    }
                    _ => false,
                });
                if let Some(i) = same {
                    if let Action::Store {
                        flags: f,
                        create: c,
                        ..
                    } = &mut self.out.actions[i]
                    {
                        *f = flags;
                        *c |= spec.create;
                    }
                    return Ok(());
                }
                let mailbox = match mailbox {
                    Some(name) => Some(self.out.store_text(name)?),
                    None => None,
                };
                self.push(Action::Store {
                    mailbox,
                    flags,
                    create: spec.create,
                })
            }
            Word::Redirect => {
                let address = self.exp.one(self.script, spec.a);
                // Sent as the bare address (a sendmail argument); one address only.
                let address = redirect_target(address).ok_or(RuntimeError::BadRedirect)?;
                if !spec.copy {
                    self.out.implicit_keep = false;
                }
                let same = self.out.actions.iter().any(|a| match a {
                    Action::Redirect { address: t } => same_mailbox(self.out.text(*t), address),
                    _ => false,
                });
                if same {
                    return Ok(());
                }
                self.redirects += 1;
                if self.redirects > self.limits.max_redirects {
                    return Err(RuntimeError::TooManyRedirects);
                }
                let address = self.out.store_text(address)?;
                self.push(Action::Redirect { address })
            }
            Word::Discard => {
                self.out.implicit_keep = false;
                if !self.out.actions.contains(&Action::Discard) {
                    self.push(Action::Discard)?;
                }
                Ok(())
            }
            Word::Reject | Word::Ereject => {
                self.out.implicit_keep = false;
                if self
                    .out
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Reject { .. }))
                {
                    return Err(RuntimeError::RejectConflict);
                }
                let reason = self.out.store_text(self.exp.one(self.script, spec.a))?;
                self.push(Action::Reject {
                    reason,
                    extended: word == Word::Ereject,
                })
            }
            Word::Setflag | Word::Addflag | Word::Removeflag => {
                // The internal variable, or the variable named first (RFC 5232 3).
                let mut set: heapless::Vec<u8, FLAGS_MAX> = if spec.b == NONE {
                    self.flags.clone()
                } else {
                    let v = self.vars.get(self.script.string(spec.b));
                    heapless::Vec::from_slice(&v[..v.len().min(FLAGS_MAX)]).unwrap_or_default()
                };
                if word == Word::Setflag {
                    set.clear();
                }
                for s in self.exp.list(self.script, spec.a) {
                    if word == Word::Removeflag {
                        for f in flag_words(s) {
                            remove_flag(&mut set, f);
                        }
                    } else {
                        add_flags(&mut set, s)?;
                    }
                }
                if spec.b == NONE {
                    self.flags = set;
                    Ok(())
                } else {
                    self.vars.set(self.script.string(spec.b), &set)
                }
            }
            Word::Vacation => self.vacation(spec),
            Word::Set => {
                let mut value = heapless::Vec::new();
                vars::modify(
                    spec.modifiers,
                    self.exp.one(self.script, spec.b),
                    &mut value,
                );
                self.vars.set(self.script.string(spec.a), &value)
            }
            _ => Ok(()),
        }
    }

    fn test(&mut self, i: u32) -> Result<bool, RuntimeError> {
        let node = *self.script.node(i);
        let Kind::Test { word, spec, tests } = node.kind else {
            return Ok(false);
        };
        self.step(1)?;
        match word {
            Word::True => Ok(true),
            Word::False => Ok(false),
            Word::Not => Ok(!self.test(tests)?),
            Word::Allof | Word::Anyof => {
                let want = word == Word::Anyof;
                let mut t = tests;
                while t != NONE {
                    if self.test(t)? == want {
                        return Ok(want);
                    }
                    t = self.script.node(t).next;
                }
                Ok(!want)
            }
            Word::Size => {
                let limit = match self.script.node(spec.a).kind {
                    Kind::Number(n) => u64::from(n),
                    _ => 0,
                };
                Ok(if spec.over {
                    self.msg.size > limit
                } else {
                    self.msg.size < limit
                })
            }
            Word::Exists => {
                self.prepare(&[spec.a])?;
                let names = self.exp.list(self.script, spec.a).count() as u32;
                self.step(names)?;
                for name in self.exp.list(self.script, spec.a) {
                    if !self.fields.each(name, |_| true) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Word::Header
            | Word::Address
            | Word::Envelope
            | Word::Hasflag
            | Word::String
            | Word::Body
            | Word::Date
            | Word::Currentdate => {
                let zone = match spec.zone {
                    Zone::Named(l) => l,
                    _ => NONE,
                };
                self.prepare(&[spec.a, spec.b, spec.c, zone])?;
                if word == Word::Body {
                    // Walking and decoding the body is work too: one unit per
                    // BODY_BYTES_PER_WORK bytes, so many body tests on a large body stop.
                    let cost = (self.ctx.body.len() / BODY_BYTES_PER_WORK) as u64;
                    if self.work <= cost {
                        self.work = 0;
                        return Err(RuntimeError::BudgetExhausted);
                    }
                    self.work -= cost;
                }
                self.match_test(word, &spec)
            }
            Word::Duplicate => self.duplicate(&spec),
            _ => Ok(false),
        }
    }

    /// A test that compares values taken from the message with keys.
    fn match_test(&mut self, word: Word, spec: &Spec) -> Result<bool, RuntimeError> {
        let script = self.script;
        let keys = spec.b;
        // hasflag's values: the flags of the internal variable or of the variables named.
        let mut flag_values: heapless::Vec<u8, FLAGS_MAX> = heapless::Vec::new();
        if word == Word::Hasflag {
            if spec.a == NONE {
                flag_values = self.flags.clone();
            } else {
                for name in script.strings(spec.a) {
                    let v = self.vars.get(name);
                    let _ = flag_values.push(b' ');
                    let _ = flag_values.extend_from_slice(&v[..v.len().min(FLAGS_MAX)]);
                }
            }
        }
        let exp = &self.exp;
        let vars = &mut self.vars;
        let key_count = exp.list(script, keys).count() as u32;
        // A successful :matches sets the match variables (RFC 5229 3.2).
        let set_matches =
            spec.mt == MatchType::Matches && script.extensions.has(Extensions::VARIABLES);
        let mut count: u32 = 0;
        let mut steps: u32 = 0;
        let mut matched = false;
        let counting = matches!(spec.mt, MatchType::Count(_));
        let mut work = self.work;
        {
            // A value, or None for an address without the part asked for (no detail): that
            // matches nothing but still counts for :count, as in Pigeonhole.
            let mut visit = |value: Option<&[u8]>| -> bool {
                if value.is_none() && !counting {
                    return false;
                }
                count += 1;
                let Some(value) = value else {
                    return false;
                };
                if counting {
                    return false;
                }
                steps = steps.saturating_add(key_count.max(1));
                let found = exp
                    .list(script, keys)
                    .find(|k| compare::matches(spec.cmp, spec.mt, value, k, &mut work));
                matched = found.is_some();
                if let (Some(k), true) = (found, set_matches) {
                    let mut caps = compare::Captures::default();
                    compare::glob_captures(spec.cmp, value, k, &mut work, &mut caps);
                    vars.set_matches(value, &caps);
                }
                matched
            };
            match word {
                Word::Header => {
                    // Half the scratch for the unfolded value, half for its decoded form.
                    let half = self.scratch.len() / 2;
                    let (unfolded, decoded) = self.scratch.split_at_mut(half);
                    for name in exp.list(script, spec.a) {
                        if self.fields.each_at(name, spec.index, spec.last, |raw| {
                            let v = header::unfold(raw, unfolded);
                            if v.windows(2).any(|w| w == b"=?") {
                                visit(Some(mime::decode(v, decoded)))
                            } else {
                                visit(Some(v))
                            }
                        }) {
                            break;
                        }
                    }
                }
                Word::Address => {
                    let scratch = &mut *self.scratch;
                    'names: for name in exp.list(script, spec.a) {
                        let hit = self.fields.each_at(name, spec.index, spec.last, |raw| {
                            let v = header::unfold(raw, scratch);
                            header::each_address(v, |a| visit(address_part(a, spec.part)))
                        });
                        if hit {
                            break 'names;
                        }
                    }
                }
                Word::Envelope => {
                    for part in exp.list(script, spec.a) {
                        let value = if part.eq_ignore_ascii_case(b"from") {
                            self.msg.envelope_from
                        } else {
                            self.msg.envelope_to
                        };
                        let value = strip_angle(value);
                        let hit = if value.is_empty() {
                            // The null sender matches as the empty string whatever the part
                            // (RFC 5228 5.4).
                            visit(Some(b""))
                        } else {
                            visit(address_part(value, spec.part))
                        };
                        if hit {
                            break;
                        }
                    }
                }
                Word::Body => {
                    let body = self.ctx.body;
                    if spec.body == BodyTransform::Raw {
                        // An empty body is no value (as Pigeonhole; :text gives "").
                        if !body.is_empty() {
                            visit(Some(body));
                        }
                    } else {
                        let scratch = &mut *self.scratch;
                        let top = body::Entity {
                            header: self.msg.header,
                            body,
                        };
                        body::each_part(top, 0, &mut |ty, part| {
                            let wanted = if spec.body == BodyTransform::Text {
                                ty.starts_with(b"text/")
                            } else {
                                exp.list(script, spec.c).any(|t| body::type_matches(ty, t))
                            };
                            wanted && visit(Some(body::decode(part, scratch)))
                        });
                    }
                }
                Word::Date | Word::Currentdate => {
                    let local = i32::from(self.ctx.local_zone);
                    // None: the date's own zone (:originalzone).
                    let zone = match spec.zone {
                        Zone::Local => Some(local),
                        Zone::Original => None,
                        Zone::Fixed(z) => Some(i32::from(z)),
                        Zone::Named(l) => match date::parse_zone(exp.one(script, l)) {
                            Some(z) => Some(z),
                            // Not a zone: the test fails.
                            None => Some(i32::MAX),
                        },
                    };
                    let part = date::Part::parse(exp.one(script, spec.a));
                    match (part, zone) {
                        (_, Some(i32::MAX)) | (None, _) => {}
                        (Some(part), _) if word == Word::Currentdate => {
                            if let Some(now) = self.ctx.now {
                                let p = date::print(now, zone.unwrap_or(local), part);
                                visit(Some(p.as_bytes()));
                            }
                        }
                        (Some(part), _) => {
                            let name = exp.one(script, spec.c);
                            let received = name.eq_ignore_ascii_case(b"received");
                            let scratch = &mut *self.scratch;
                            // Without :index, the first field only (as Pigeonhole; RFC 5260
                            // does not say).
                            self.fields
                                .each_at(name, spec.index.max(1), spec.last, |raw| {
                                    let mut v = header::unfold(raw, scratch);
                                    // A Received field's date follows its last ';'.
                                    if received {
                                        if let Some(p) = v.iter().rposition(|c| *c == b';') {
                                            v = &v[p + 1..];
                                        }
                                    }
                                    match date::parse(v) {
                                        Some(m) => {
                                            let z = zone.unwrap_or(m.zone);
                                            visit(Some(date::print(m.unix, z, part).as_bytes()))
                                        }
                                        None => false,
                                    }
                                });
                        }
                    }
                }
                Word::String => {
                    for s in exp.list(script, spec.a) {
                        // :count counts the strings that are not empty (RFC 5229 5).
                        if s.is_empty() && counting {
                            continue;
                        }
                        if visit(Some(s)) {
                            break;
                        }
                    }
                }
                _ => {
                    // hasflag: each flag is a value.
                    for f in flag_words(&flag_values) {
                        count += 1;
                        if counting {
                            continue;
                        }
                        steps = steps.saturating_add(key_count.max(1));
                        // Each key is a list of flags. A key with none matches no flag under
                        // :is, :contains and :matches, and is the empty string under :value
                        // (as Pigeonhole: `:contains ""` fails, `:value "ne" ""` holds).
                        matched = exp.list(script, keys).any(|k| {
                            if flag_words(k).next().is_none() {
                                return matches!(spec.mt, MatchType::Value(_))
                                    && compare::matches(spec.cmp, spec.mt, f, b"", &mut work);
                            }
                            flag_words(k)
                                .any(|kf| compare::matches(spec.cmp, spec.mt, f, kf, &mut work))
                        });
                        if matched {
                            break;
                        }
                    }
                }
            }
        }
        if work == 0 {
            return Err(RuntimeError::BudgetExhausted);
        }
        self.work = work;
        self.step(steps.saturating_add(count))?;
        if let MatchType::Count(rel) = spec.mt {
            let mut buf = [0u8; 10];
            let n = decimal(count, &mut buf);
            return Ok(self
                .exp
                .list(script, keys)
                .any(|k| compare::matches(spec.cmp, MatchType::Value(rel), n, k, &mut self.work)));
        }
        Ok(matched)
    }
}

impl Run<'_, '_, '_> {
    /// The first `name` field's value, unfolded into the scratch buffer (None: no such field).
    fn field(&mut self, name: &[u8]) -> Option<&[u8]> {
        let mut found: Option<&[u8]> = None;
        self.fields.each(name, |raw| {
            found = Some(raw);
            true
        });
        let raw = found?;
        Some(header::unfold(raw, self.scratch))
    }

    fn seen(&self, key: &[u8]) -> bool {
        self.ctx.seen.is_some_and(|s| s.seen(key))
    }

    /// `duplicate` (RFC 7352): whether the id was seen in an earlier delivery; unless it was
    /// (or with `:last`), the outcome gets an [`Action::Track`] to remember it. A message
    /// without the id (no Message-ID, no `:header` field, an empty `:uniqueid`) is no
    /// duplicate and is not tracked.
    fn duplicate(&mut self, spec: &Spec) -> Result<bool, RuntimeError> {
        self.prepare(&[spec.c, spec.d, spec.e])?;
        let mut key: heapless::Vec<u8, KEY_MAX> = heapless::Vec::new();
        let _ = key.extend_from_slice(b"duplicate\0");
        let handle = if spec.c == NONE {
            &b""[..]
        } else {
            self.exp.one(self.script, spec.c)
        };
        put_cut(&mut key, handle);
        put_cut(&mut key, b"\0");
        if spec.e != NONE {
            let id = self.exp.one(self.script, spec.e);
            if id.is_empty() {
                return Ok(false);
            }
            put_cut(&mut key, id);
        } else {
            let name: heapless::Vec<u8, 256> = if spec.d == NONE {
                heapless::Vec::from_slice(b"message-id").unwrap_or_default()
            } else {
                let n = self.exp.one(self.script, spec.d);
                heapless::Vec::from_slice(&n[..n.len().min(256)]).unwrap_or_default()
            };
            match self.field(&name) {
                Some(id) if !id.is_empty() => put_cut(&mut key, id),
                _ => return Ok(false),
            }
        }
        let dup = self.seen(&key);
        if !dup || spec.last {
            let seconds = if spec.seconds == NONE {
                DUPLICATE_SECONDS
            } else {
                spec.seconds.min(DUPLICATE_SECONDS_MAX)
            };
            let known = self.out.actions.iter().position(|a| match a {
                Action::Track { key: k, .. } => self.out.text(*k) == &key[..],
                _ => false,
            });
            match known {
                Some(i) => {
                    if let Action::Track { seconds: s, .. } = &mut self.out.actions[i] {
                        *s = seconds;
                    }
                }
                None => {
                    let key = self.out.store_text(&key)?;
                    self.push(Action::Track { key, seconds })?;
                }
            }
        }
        Ok(dup)
    }

    /// `vacation` (RFC 5230): decides whether to reply, and the reply.
    fn vacation(&mut self, spec: &Spec) -> Result<(), RuntimeError> {
        if self.vacation_done {
            return Err(RuntimeError::TwoVacations);
        }
        self.vacation_done = true;
        if self
            .out
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reject { .. }))
        {
            return Err(RuntimeError::RejectConflict);
        }
        self.prepare(&[spec.a, spec.c, spec.d, spec.e, spec.f])?;
        let sender = strip_angle(self.msg.envelope_from);
        if self.no_reply(sender, spec) {
            return Ok(());
        }
        let script = self.script;
        let reason = self.exp.one(script, spec.a);
        if reason.len() > VACATION_REASON_MAX {
            return Err(RuntimeError::ReasonTooLong);
        }
        let given = |l: u32| (l != NONE).then(|| self.exp.one(script, l));
        let (subject_arg, from_arg, handle_arg) = (given(spec.d), given(spec.e), given(spec.c));
        // The default handle: the arguments that make a reply different (as Pigeonhole).
        let mut key: heapless::Vec<u8, KEY_MAX> = heapless::Vec::new();
        let _ = key.extend_from_slice(b"vacation\0");
        match handle_arg {
            Some(h) => put_cut(&mut key, h),
            None => {
                put_cut(&mut key, reason);
                put_cut(&mut key, subject_arg.unwrap_or(b"<default-subject>"));
                put_cut(&mut key, from_arg.unwrap_or(b"<default-from>"));
                put_cut(&mut key, if spec.mime { b"<MIME>" } else { b"<NO-MIME>" });
            }
        }
        let handle_len = key.len() - b"vacation\0".len();
        put_cut(&mut key, b"\0");
        for c in sender {
            put_cut(&mut key, &[c.to_ascii_lowercase()]);
        }
        if self.seen(&key) {
            return Ok(());
        }
        let seconds = if spec.seconds == NONE {
            VACATION_SECONDS
        } else {
            spec.seconds
                .clamp(VACATION_SECONDS_RANGE.0, VACATION_SECONDS_RANGE.1)
        };
        let reason_t = self.out.store_text(reason)?;
        let handle = self
            .out
            .store_text(&key[b"vacation\0".len()..][..handle_len])?;
        let key_t = self.out.store_text(&key)?;
        let to = self.out.store_text(sender)?;
        let from = match from_arg {
            Some(f) => Some(self.out.store_text(f)?),
            None => None,
        };
        let subject = match subject_arg {
            Some(s) => self.out.store_text(s)?,
            None => {
                let start = self.out.store_text(b"Auto: ")?;
                let half = self.scratch.len() / 2;
                let mut raw: Option<&[u8]> = None;
                self.fields.each(b"subject", |r| {
                    raw = Some(r);
                    true
                });
                let (unfolded, decoded) = self.scratch.split_at_mut(half);
                let v = header::unfold(raw.unwrap_or(b""), unfolded);
                let rest = self.out.store_text(mime::decode(v, decoded))?;
                Text {
                    off: start.off,
                    len: start.len + rest.len,
                }
            }
        };
        let id = self.field(b"message-id").unwrap_or(b"");
        let mut id_buf: heapless::Vec<u8, 998> = heapless::Vec::new();
        let _ = id_buf.extend_from_slice(&id[..id.len().min(998)]);
        let in_reply_to = self.out.store_text(&id_buf)?;
        self.push(Action::Vacation {
            to,
            from,
            subject,
            reason: reason_t,
            mime: spec.mime,
            in_reply_to,
            handle,
            key: key_t,
            seconds,
        })
    }

    /// RFC 5230 4.5 and 4.6: no reply to the null sender or a list-like one, to automatic
    /// or list mail, to oneself, nor to a message not addressed to the user (their addresses:
    /// the envelope recipient and `:addresses`).
    fn no_reply(&mut self, sender: &[u8], spec: &Spec) -> bool {
        if sender.is_empty() {
            return true;
        }
        let (local, _) = header::split_address(sender);
        let local_is = |n: &[u8]| local.eq_ignore_ascii_case(n);
        let lower_starts =
            |p: &[u8]| local.len() >= p.len() && local[..p.len()].eq_ignore_ascii_case(p);
        let lower_ends = |p: &[u8]| {
            local.len() >= p.len() && local[local.len() - p.len()..].eq_ignore_ascii_case(p)
        };
        if local_is(b"mailer-daemon")
            || local_is(b"listserv")
            || local_is(b"majordomo")
            || lower_starts(b"owner-")
            || lower_ends(b"-request")
        {
            return true;
        }
        for list in [
            &b"list-id"[..],
            b"list-help",
            b"list-subscribe",
            b"list-unsubscribe",
            b"list-post",
            b"list-owner",
            b"list-archive",
        ] {
            if self.fields.each(list, |_| true) {
                return true;
            }
        }
        let first_word = |v: &[u8]| -> bool {
            let w = v
                .split(|c| matches!(c, b' ' | b'\t' | b';' | b'(' | b'\r' | b'\n'))
                .find(|w| !w.is_empty())
                .unwrap_or(b"");
            w.eq_ignore_ascii_case(b"no")
        };
        if self.fields.each(b"auto-submitted", |v| !first_word(v)) {
            return true;
        }
        if self.fields.each(b"precedence", |v| {
            let v = header::trim(v);
            [&b"bulk"[..], b"list", b"junk"]
                .iter()
                .any(|p| v.eq_ignore_ascii_case(p))
        }) {
            return true;
        }
        // The user's addresses: the envelope recipient (also without its +detail) and
        // :addresses.
        let script = self.script;
        let exp = &self.exp;
        let me = strip_angle(self.msg.envelope_to);
        let mut mine = |a: &[u8]| -> bool {
            if !me.is_empty() && (a.eq_ignore_ascii_case(me) || same_user(a, me)) {
                return true;
            }
            spec.f != NONE
                && exp
                    .list(script, spec.f)
                    .any(|x| a.eq_ignore_ascii_case(strip_angle(x)))
        };
        if mine(sender) {
            return true;
        }
        if me.is_empty() && spec.f == NONE {
            // Nobody to look for (no recipient known): the check cannot be made.
            return false;
        }
        let mut addressed = false;
        for name in [
            &b"to"[..],
            b"cc",
            b"bcc",
            b"resent-to",
            b"resent-cc",
            b"resent-bcc",
        ] {
            let scratch = &mut *self.scratch;
            if self.fields.each(name, |raw| {
                let v = header::unfold(raw, scratch);
                header::each_address(v, &mut mine)
            }) {
                addressed = true;
                break;
            }
        }
        !addressed
    }
}

/// Whether `a` is `me` without its `+detail` (`bob@x` for `bob+tag@x`).
fn same_user(a: &[u8], me: &[u8]) -> bool {
    let (local, domain) = header::split_address(me);
    let Some(plus) = local.iter().position(|c| *c == b'+') else {
        return false;
    };
    let (al, ad) = header::split_address(a);
    al.eq_ignore_ascii_case(&local[..plus])
        && match (ad, domain) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            (None, None) => true,
            _ => false,
        }
}

/// Appends what fits of `s`.
fn put_cut<const N: usize>(v: &mut heapless::Vec<u8, N>, s: &[u8]) {
    let room = N - v.len();
    let _ = v.extend_from_slice(&s[..s.len().min(room)]);
}

fn strip_angle(v: &[u8]) -> &[u8] {
    let v = v.strip_prefix(b"<").unwrap_or(v);
    v.strip_suffix(b">").unwrap_or(v)
}

/// The part of `local@domain` a test looks at; None when it has no such part (no detail), and
/// for every part but `:all` when it is not an address (no domain: RFC 5228 2.7.4). A quoted
/// local part is its text without the quotes (`"john q"` is `john q`, RFC 5322 3.2.4; one
/// with a quoted-pair inside is compared as written).
fn address_part(a: &[u8], part: AddrPart) -> Option<&[u8]> {
    let (local, domain) = header::split_address(a);
    if domain.is_none() && !matches!(part, AddrPart::All) {
        return None;
    }
    let local = match local {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => inner,
        _ => local,
    };
    let sep = local.iter().position(|c| *c == b'+');
    match part {
        AddrPart::All => Some(a),
        AddrPart::Localpart => Some(local),
        AddrPart::Domain => domain,
        AddrPart::User => Some(sep.map_or(local, |p| &local[..p])),
        AddrPart::Detail => sep.map(|p| &local[p + 1..]),
    }
}

fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The flags in a space-separated flag list.
pub fn flag_words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|c| *c == b' ').filter(|w| !w.is_empty())
}

/// Adds the flags of `list` to the space-separated set (each once, compared
/// case-insensitively).
fn add_flags<const N: usize>(
    set: &mut heapless::Vec<u8, N>,
    list: &[u8],
) -> Result<(), RuntimeError> {
    for f in flag_words(list) {
        let present = flag_words(set).any(|g| g.eq_ignore_ascii_case(f));
        if present {
            continue;
        }
        if !set.is_empty() {
            set.push(b' ').map_err(|_| RuntimeError::OutOfSpace)?;
        }
        set.extend_from_slice(f)
            .map_err(|_| RuntimeError::OutOfSpace)?;
    }
    Ok(())
}

fn remove_flag<const N: usize>(set: &mut heapless::Vec<u8, N>, f: &[u8]) {
    let mut kept: heapless::Vec<u8, N> = heapless::Vec::new();
    for g in flag_words(set) {
        if g.eq_ignore_ascii_case(f) {
            continue;
        }
        if !kept.is_empty() {
            let _ = kept.push(b' ');
        }
        let _ = kept.extend_from_slice(g);
    }
    *set = kept;
}
