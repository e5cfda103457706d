//! mbox `Status:`/`X-Status:` headers: the flags they carry ([`MboxStatus`]) and the filter that removes them ([`StatusFilter`]).

use super::*;

/// What mbox `Status:`/`X-Status:` headers said about a message.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct MboxStatus {
    /// Maildir flags: `R`→`S`, `A`→`R`, `F`→`F`, `D`→`T`.
    pub flags: Flags,
    /// `O`: the message was seen as "old" by a mail reader, so it belongs in cur/.
    pub old: bool,
}

impl MboxStatus {
    /// Where and how to store the message: `Some(flags)` → cur/ with `:2,<flags>` (when it is
    /// old or has any flag: a name in new/ cannot carry flags), `None` → new/.
    pub fn maildir_info(&self) -> Option<Flags> {
        (self.old || !self.flags.is_empty()).then_some(self.flags)
    }

    pub(crate) fn note(&mut self, b: u8) {
        let f = match b {
            b'R' => Flags::SEEN,
            b'A' => Flags::REPLIED,
            b'F' => Flags::FLAGGED,
            b'D' => Flags::TRASHED,
            b'O' => {
                self.old = true;
                return;
            }
            _ => return,
        };
        let _ = self.flags.insert(f);
    }
}

pub(crate) const STATUS_HOLD: usize = 24;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum StatusMode {
    Pass,
    Hold,
    Drop,
}

/// A [`Transform`] that removes `Status:` and `X-Status:` fields (with their continuation
/// lines) from the header block, collecting their letters into an [`MboxStatus`]. The body and
/// every other header byte pass unchanged. A name followed by more than a few bytes of
/// whitespace before its colon is left alone.
pub struct StatusFilter {
    lex: HeaderLexer,
    status: NameMatch,
    xstatus: NameMatch,
    mode: StatusMode,
    hold: [u8; STATUS_HOLD + 1],
    hold_len: usize,
    flush_pos: usize,
    flushing: bool,
    seen: MboxStatus,
}

impl Default for StatusFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusFilter {
    /// A fresh filter.
    pub const fn new() -> Self {
        StatusFilter {
            lex: HeaderLexer::new(),
            status: NameMatch::new(b"status"),
            xstatus: NameMatch::new(b"x-status"),
            mode: StatusMode::Pass,
            hold: [0; STATUS_HOLD + 1],
            hold_len: 0,
            flush_pos: 0,
            flushing: false,
            seen: MboxStatus {
                flags: Flags::EMPTY,
                old: false,
            },
        }
    }

    /// The flags seen so far (final once the header block has passed).
    pub fn status(&self) -> MboxStatus {
        self.seen
    }

    /// Whether the header block has been fully seen.
    pub fn header_done(&self) -> bool {
        self.lex.in_body()
    }

    fn start_flush(&mut self) {
        self.flushing = true;
        self.flush_pos = 0;
        self.mode = StatusMode::Pass;
    }
}

impl Transform for StatusFilter {
    fn push(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        let mut i = 0;
        let mut o = 0;
        loop {
            if self.flushing {
                o += drain(
                    &self.hold[..self.hold_len],
                    &mut self.flush_pos,
                    &mut out[o..],
                );
                if self.flush_pos < self.hold_len {
                    return (i, o);
                }
                self.flushing = false;
                self.hold_len = 0;
            }
            if i == input.len() || o == out.len() {
                return (i, o);
            }
            if self.lex.in_body() {
                let n = (input.len() - i).min(out.len() - o);
                out[o..o + n].copy_from_slice(&input[i..i + n]);
                return (i + n, o + n);
            }
            if self.mode == StatusMode::Pass {
                // The rest of a passed line goes out at once.
                let room = (input.len() - i).min(out.len() - o);
                if let Some(n) = self.lex.skip_line(&input[i..i + room]) {
                    out[o..o + n].copy_from_slice(&input[i..i + n]);
                    i += n;
                    o += n;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            let (role, boundary) = self.lex.step(b);
            if boundary {
                self.mode = StatusMode::Pass;
            }
            match (self.mode, role) {
                (_, Role::NameStart) => {
                    self.status.reset();
                    self.xstatus.reset();
                    self.status.feed(b);
                    self.xstatus.feed(b);
                    self.hold[0] = b;
                    self.hold_len = 1;
                    self.mode = StatusMode::Hold;
                    if !self.status.viable() && !self.xstatus.viable() {
                        self.start_flush();
                    }
                }
                (StatusMode::Hold, Role::Name | Role::NameWsp) => {
                    if role == Role::Name {
                        self.status.feed(b);
                        self.xstatus.feed(b);
                    } else if !self.status.complete() && !self.xstatus.complete() {
                        self.status.ok = false;
                        self.xstatus.ok = false;
                    }
                    self.hold[self.hold_len] = b;
                    self.hold_len += 1;
                    let viable = self.status.viable() || self.xstatus.viable();
                    if !viable || self.hold_len == STATUS_HOLD {
                        self.start_flush();
                    }
                }
                (StatusMode::Hold, Role::Colon)
                    if self.status.complete() || self.xstatus.complete() =>
                {
                    self.mode = StatusMode::Drop;
                    self.hold_len = 0;
                }
                (StatusMode::Hold, _) => {
                    self.hold[self.hold_len] = b;
                    self.hold_len += 1;
                    self.start_flush();
                }
                (StatusMode::Drop, Role::Value) => self.seen.note(b),
                (StatusMode::Drop, _) => {}
                (StatusMode::Pass, _) => {
                    out[o] = b;
                    o += 1;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut [u8]) -> usize {
        if self.mode == StatusMode::Hold {
            self.start_flush();
        }
        self.push(&[], out).1
    }
}
