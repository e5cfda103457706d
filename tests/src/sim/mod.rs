//! The deterministic race and crash simulator: a simulated maildir filesystem ([`fs`]), a
//! controllable environment ([`env`](mod@env)), agents and invariants ([`world`]) and schedulers
//! ([`explore`]). It drives the same core state machines that ship.

pub mod env;
pub mod explore;
pub mod fs;
pub mod import;
pub mod lmtp;
pub mod mta;
pub mod rng;
pub mod scenarios;
pub mod sieve;
pub mod world;

/// The invariants the simulator checks, numbered as its reports and DESIGN.md number them.
/// Every failure it prints names one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invariant {
    /// 1. A message reported delivered (or already present) is in new/ or cur/.
    NoLoss = 1,
    /// 2. No message is visible under two names, no unique key twice.
    NoDuplicate = 2,
    /// 3. Nothing replaces or truncates a file it did not create.
    NoOverwrite = 3,
    /// 4. Every file in new/ or cur/ is a complete message.
    NoPartial = 4,
    /// 5. A listing reports every message present throughout it, once.
    CompleteListing = 5,
    /// 6. A delivery reported failed is not visible.
    HonestStatus = 6,
    /// 7. Every name used is a plain name inside the maildir.
    Confinement = 7,
    /// 8. After a crash and the MTA's retry of every unacknowledged delivery, each message
    ///    is stored exactly once with the duplicate index (without it, at least once and at
    ///    most once per attempt the MTA did not hear of).
    ExactlyOnce = 8,
    /// 9. After recovery, `maildirsize` never counts less than is stored, and more only by
    ///    what crashed attempts accounted before they could publish.
    QuotaAgrees = 9,
    /// 10. After recovery, nothing left behind blocks a later delivery: every retry and a
    ///     fresh delivery succeed.
    NoBlockingGarbage = 10,
    /// 11. After a crash at any step of a multi-action unit (a Sieve script's copies and
    ///     redirects) and the MTA's retry, every maildir holds exactly the copies the unit's
    ///     plan put there, each once and with its flags, and each redirect was sent at least
    ///     once and at most once more per crash.
    UnitExactlyOnce = 11,
    /// 12. An imported message's modification time (its date) is set after the file's last
    ///     write and before its flush, so every stored message carries its date (`-M`).
    MtimeBeforeFlush = 12,
}

impl Invariant {
    /// Every invariant, in number order.
    pub const ALL: [Invariant; 12] = [
        Invariant::NoLoss,
        Invariant::NoDuplicate,
        Invariant::NoOverwrite,
        Invariant::NoPartial,
        Invariant::CompleteListing,
        Invariant::HonestStatus,
        Invariant::Confinement,
        Invariant::ExactlyOnce,
        Invariant::QuotaAgrees,
        Invariant::NoBlockingGarbage,
        Invariant::UnitExactlyOnce,
        Invariant::MtimeBeforeFlush,
    ];

    /// The invariant numbered `n` (reports of the bare-delivery explorer carry numbers).
    pub fn from_number(n: u8) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| *i as u8 == n)
    }

    /// Its short name, as failures print it.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoLoss => "no-loss",
            Invariant::NoDuplicate => "no-duplicate",
            Invariant::NoOverwrite => "no-overwrite",
            Invariant::NoPartial => "no-partial",
            Invariant::CompleteListing => "complete-listing",
            Invariant::HonestStatus => "honest-status",
            Invariant::Confinement => "confinement",
            Invariant::ExactlyOnce => "exactly-once",
            Invariant::QuotaAgrees => "quota-agrees",
            Invariant::NoBlockingGarbage => "no-blocking-garbage",
            Invariant::UnitExactlyOnce => "unit-exactly-once",
            Invariant::MtimeBeforeFlush => "mtime-before-flush",
        }
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I{} {}", *self as u8, self.name())
    }
}

/// A broken invariant, with the schedule that breaks it (each scenario's own form; its
/// `replay` runs it again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// What was found.
    pub what: String,
    /// The schedule that replays it.
    pub schedule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} [schedule {}]",
            self.invariant, self.what, self.schedule
        )
    }
}

/// Fails the test with a scenario's first violation, and how many it had, if it has any.
pub fn assert_no_violations<V: std::fmt::Display>(scenario: &str, violations: &[V]) {
    if let Some(first) = violations.first() {
        panic!(
            "{scenario}: {} violations, first: {first}",
            violations.len()
        );
    }
}
