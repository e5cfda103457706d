//! Which delivery strategy a maildir gets, from what its adapter observed of the filesystem.
//!
//! On a local filesystem the kernel answers exclusive create, link and rename-noreplace
//! truthfully, and [`Strategy::Exclusive`] with the best publish path the capabilities allow is
//! safe. On a network filesystem (NFS, SMB/CIFS, Ceph, AFS, and every FUSE filesystem, among
//! them GlusterFS, MooseFS and JuiceFS) neither answer can be trusted: a reply can be lost and
//! the retransmitted request answered again (`EEXIST` for our own link), and `O_EXCL` need not
//! be atomic. The adapter says so by clearing [`Capabilities::atomic_exclusive`]. The
//! simulator's NFS model (`tests/tests/sim_locked.rs`) shows `Exclusive` duplicating a message
//! on a lost link reply and overwriting one when `O_EXCL` is not atomic, while
//! [`Strategy::Locked`] publishing with link + unlink holds every invariant: under the lock a
//! link that answers `EEXIST` can only be our own, and the tmp file's link count tells. So an
//! untrusted filesystem gets exactly that proven configuration: the lock, and neither
//! `O_TMPFILE` nor rename-noreplace (their lost replies cannot be checked the same way).

use crate::machine::deliver::{Options, Publish, Strategy};

/// How often a `Locked` delivery retries a held lock, in milliseconds. A holder keeps the lock
/// for the few round trips of one delivery, so the default one-second poll of
/// [`Options::lock_poll_ms`] would make concurrent hosts wait far longer than the lock is
/// held; each retry costs a link and a stat.
pub const LOCK_POLL_MS: u32 = 50;
use crate::fs::Capabilities;

/// Why a strategy was chosen.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The filesystem answers exclusive create and link truthfully.
    Trusted,
    /// Exclusive create and link replies cannot be trusted (a network filesystem).
    Untrusted,
    /// The strategy was forced by the caller (a testing and diagnostic knob).
    Forced,
}

impl Reason {
    /// Why, in a few words for `-vv`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Trusted => "exclusive create and link replies can be trusted",
            Reason::Untrusted => {
                "exclusive create and link replies cannot be trusted, so deliveries take the \
                 maildir lock and verify a link by its link count"
            }
            Reason::Forced => "forced by MDELIVER_TEST_STRATEGY",
        }
    }
}

/// The strategy for a maildir and the capabilities to deliver with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Choice {
    /// The strategy.
    pub strategy: Strategy,
    /// The capabilities the delivery may use (a subset of those observed).
    pub caps: Capabilities,
    /// Why.
    pub reason: Reason,
}

impl Choice {
    /// The publish path a delivery starts with.
    pub fn publish(&self) -> Publish {
        Publish::choose(self.caps)
    }

    /// `base` with this strategy (and, for `Locked`, the [`LOCK_POLL_MS`] poll).
    pub fn options(&self, base: Options) -> Options {
        match self.strategy {
            Strategy::Locked => Options {
                strategy: Strategy::Locked,
                lock_poll_ms: LOCK_POLL_MS,
                ..base
            },
            s => Options {
                strategy: s,
                ..base
            },
        }
    }
}

/// Chooses for a filesystem with the `observed` capabilities; `forced` overrides the strategy
/// (the capabilities then stay as observed for `Exclusive`, so an experiment can run the
/// unsafe combination on purpose). `Classic` is never chosen and is treated like `Exclusive`
/// when forced.
pub fn choose(observed: Capabilities, forced: Option<Strategy>) -> Choice {
    let (strategy, reason) = match forced {
        Some(Strategy::Locked) => (Strategy::Locked, Reason::Forced),
        Some(_) => (Strategy::Exclusive, Reason::Forced),
        None if observed.atomic_exclusive => (Strategy::Exclusive, Reason::Trusted),
        None => (Strategy::Locked, Reason::Untrusted),
    };
    let caps = match strategy {
        Strategy::Locked => Capabilities {
            anonymous_tmp: false,
            rename_noreplace: false,
            ordered_commit: false,
            ..observed
        },
        _ => observed,
    };
    Choice {
        strategy,
        caps,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETWORK: Capabilities = Capabilities {
        atomic_exclusive: false,
        ..Capabilities::LINUX_LOCAL
    };

    #[test]
    fn a_local_filesystem_keeps_exclusive_and_every_capability() {
        let c = choose(Capabilities::LINUX_LOCAL, None);
        assert_eq!(c.strategy, Strategy::Exclusive);
        assert_eq!(c.caps, Capabilities::LINUX_LOCAL);
        assert_eq!(c.reason, Reason::Trusted);
        assert_eq!(c.publish(), Publish::AnonymousLink);
    }

    #[test]
    fn untrusted_replies_get_the_lock_and_link_unlink_whatever_else_is_offered() {
        // Every combination of the other capabilities: the lock, and the one publish path whose
        // lost reply the lock can verify (or checked rename where there are no hard links).
        for bits in 0..16u8 {
            let observed = Capabilities {
                anonymous_tmp: bits & 1 != 0,
                rename_noreplace: bits & 2 != 0,
                hard_links: bits & 4 != 0,
                dir_sync: bits & 8 != 0,
                atomic_exclusive: false,
                ordered_commit: false,
            };
            let c = choose(observed, None);
            assert_eq!(c.strategy, Strategy::Locked, "{observed:?}");
            assert_eq!(c.reason, Reason::Untrusted);
            assert!(!c.caps.anonymous_tmp && !c.caps.rename_noreplace);
            assert_eq!(c.caps.hard_links, observed.hard_links);
            assert_eq!(c.caps.dir_sync, observed.dir_sync);
            let want = if observed.hard_links {
                Publish::LinkUnlink
            } else {
                Publish::CheckedRename
            };
            assert_eq!(c.publish(), want);
        }
    }

    #[test]
    fn forcing_overrides_the_observation() {
        let c = choose(NETWORK, Some(Strategy::Exclusive));
        assert_eq!(
            (c.strategy, c.reason),
            (Strategy::Exclusive, Reason::Forced)
        );
        assert_eq!(
            c.caps, NETWORK,
            "the experiment runs with what was observed"
        );
        let c = choose(Capabilities::LINUX_LOCAL, Some(Strategy::Locked));
        assert_eq!((c.strategy, c.reason), (Strategy::Locked, Reason::Forced));
        assert_eq!(c.publish(), Publish::LinkUnlink);
        let classic = Strategy::Classic {
            exclusive_create: true,
        };
        assert_eq!(choose(NETWORK, Some(classic)).strategy, Strategy::Exclusive);
    }

    #[test]
    fn options_carry_the_strategy_and_the_lock_poll() {
        let base = Options::default();
        let locked = choose(NETWORK, None).options(base);
        assert_eq!(locked.strategy, Strategy::Locked);
        assert_eq!(locked.lock_poll_ms, LOCK_POLL_MS);
        assert_eq!(locked.lock_timeout_ms, base.lock_timeout_ms);
        let exclusive = choose(Capabilities::LINUX_LOCAL, None).options(base);
        assert_eq!(exclusive, base);
    }
}
