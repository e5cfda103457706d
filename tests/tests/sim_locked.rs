//! Under NFS-like semantics (lost link replies, non-atomic O_EXCL, no rename-noreplace)
//! `Exclusive` duplicates a message, while `Locked` (link-based dot-lock, trusting the link
//! count) holds every invariant exhaustively, with a crash (P2) at every state.

use mdeliver_core::fs::{Dir, Fs};
use mdeliver_core::machine::deliver::{
    deliver, Options, Outcome, Strategy, LOCK_BREAK_PREFIX, LOCK_NAME,
};
use mdeliver_core::Capabilities;
use mdeliver_tests::sim::env::SimEnv;
use mdeliver_tests::sim::explore::{explore, render};
use mdeliver_tests::sim::fs::{Persistence, Semantics, SimFs};
use mdeliver_tests::sim::scenarios::nfs;

/// Explores NFS-like `Exclusive` (`collide`: with colliding names) and snapshots, as `name`,
/// the shortest violation of `invariant`, checked to replay from its printed schedule.
fn exclusive_breaks(collide: bool, invariant: u8, name: &str) {
    let cfg = nfs(Strategy::Exclusive, collide);
    let r = explore(&cfg, 5_000_000);
    insta::assert_snapshot!(name, render(&cfg, r.replayed_failure(&cfg, invariant)));
}

#[test]
fn exclusive_duplicates_on_a_lost_link_reply() {
    exclusive_breaks(false, 2, "nfs_exclusive_lost_reply");
}

#[test]
fn exclusive_overwrites_with_colliding_names_when_o_excl_is_not_atomic() {
    exclusive_breaks(true, 3, "nfs_exclusive_collision");
}

#[test]
fn locked_holds_every_invariant() {
    let cfg = nfs(Strategy::Locked, false);
    explore(&cfg, 5_000_000).assert_clean(&cfg);
}

/// Delivers `hello\n` on `fs` with `opts` under the `Locked` strategy.
fn deliver_locked(fs: &mut SimFs, env: &mut SimEnv, opts: Options) -> Outcome {
    let opts = Options {
        strategy: Strategy::Locked,
        ..opts
    };
    deliver(fs, env, opts, &mut &b"hello\n"[..], &mut [0u8; 16])
}

#[test]
fn stale_lock_is_broken_by_age() {
    let mut fs = SimFs::new(Semantics::Posix, Capabilities::POSIX, Persistence::P0);
    fs.seed(Dir::Root, LOCK_NAME, b""); // mtime 0: abandoned long ago
    let mut env = SimEnv::unique(0, 1);
    let out = deliver_locked(&mut fs, &mut env, Options::default()).unwrap();
    assert_eq!(fs.contents(Dir::New, &out.name), Some(&b"hello\n"[..]));
    assert!(fs.stat(Dir::Root, LOCK_NAME).is_err(), "released");
    // Only the claim that let this deliverer alone break it.
    let left: Vec<&str> = fs.names(Dir::Root).map(|(n, _)| n).collect();
    assert_eq!(
        left,
        [format!("{LOCK_BREAK_PREFIX}0")],
        "no lock files left"
    );
}

#[test]
fn fresh_lock_held_by_another_makes_it_busy() {
    let mut fs = SimFs::new(Semantics::Posix, Capabilities::POSIX, Persistence::P0);
    let mut env = SimEnv::unique(0, 1);
    fs.now = env.secs();
    fs.create(Dir::Root, LOCK_NAME, true).unwrap();
    let opts = Options {
        lock_timeout_ms: 3_000,
        ..Options::default()
    };
    let err = deliver_locked(&mut fs, &mut env, opts).unwrap_err();
    assert_eq!(err.kind, mdeliver_core::ErrorKind::Busy);
    assert_eq!(fs.names(Dir::New).count(), 0);
    assert_eq!(
        fs.names(Dir::Root).count(),
        1,
        "only the other's lock remains"
    );
}
