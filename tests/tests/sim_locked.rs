//! Under NFS-like semantics (lost link replies, non-atomic O_EXCL, no rename-noreplace)
//! `Exclusive` duplicates a message, while `Locked` (link-based dot-lock, trusting the link
//! count) holds every invariant exhaustively, with a crash (P2) at every state.

use mdeliver_core::deliver::{deliver, Options, Strategy, LOCK_NAME};
use mdeliver_core::fs::{Dir, Fs};
use mdeliver_core::Capabilities;
use mdeliver_tests::sim::env::SimEnv;
use mdeliver_tests::sim::explore::{explore, render, replay};
use mdeliver_tests::sim::fs::{Persistence, Semantics, SimFs};
use mdeliver_tests::sim::scenarios::nfs;

#[test]
fn exclusive_duplicates_on_a_lost_link_reply() {
    let cfg = nfs(Strategy::Exclusive, false);
    let r = explore(&cfg, 5_000_000);
    let f = r.failures.get(&2).expect("a duplicate");
    assert_eq!(
        replay(&cfg, &f.schedule).violation.as_ref(),
        Some(&f.violation)
    );
    insta::assert_snapshot!("nfs_exclusive_lost_reply", render(&cfg, f));
}

#[test]
fn exclusive_overwrites_with_colliding_names_when_o_excl_is_not_atomic() {
    let cfg = nfs(Strategy::Exclusive, true);
    let r = explore(&cfg, 5_000_000);
    let f = r.failures.get(&3).expect("an overwrite");
    insta::assert_snapshot!("nfs_exclusive_collision", render(&cfg, f));
}

#[test]
fn locked_holds_every_invariant() {
    let cfg = nfs(Strategy::Locked, false);
    let r = explore(&cfg, 5_000_000);
    let f: Vec<String> = r.failures.values().map(|f| render(&cfg, f)).collect();
    assert!(f.is_empty(), "{}", f.join("\n"));
    assert!(!r.stats.truncated && r.stats.crash_images > 0);
    eprintln!("{}: {:?}", cfg.name, r.stats);
}

#[test]
fn stale_lock_is_broken_by_age() {
    let mut fs = SimFs::new(Semantics::Posix, Capabilities::POSIX, Persistence::P0);
    fs.seed(Dir::Root, LOCK_NAME, b""); // mtime 0: abandoned long ago
    let mut env = SimEnv::unique(0, 1);
    let opts = Options {
        strategy: Strategy::Locked,
        ..Options::default()
    };
    let out = deliver(
        &mut fs,
        &mut env,
        opts,
        &mut &b"hello\n"[..],
        &mut [0u8; 16],
    )
    .unwrap();
    assert_eq!(fs.contents(Dir::New, &out.name), Some(&b"hello\n"[..]));
    assert!(fs.stat(Dir::Root, LOCK_NAME).is_err(), "released");
    assert_eq!(fs.names(Dir::Root).count(), 0, "no lock files left");
}

#[test]
fn fresh_lock_held_by_another_makes_it_busy() {
    let mut fs = SimFs::new(Semantics::Posix, Capabilities::POSIX, Persistence::P0);
    let mut env = SimEnv::unique(0, 1);
    fs.now = env.secs();
    fs.create(Dir::Root, LOCK_NAME, true).unwrap();
    let opts = Options {
        strategy: Strategy::Locked,
        lock_timeout_ms: 3_000,
        ..Options::default()
    };
    let err = deliver(
        &mut fs,
        &mut env,
        opts,
        &mut &b"hello\n"[..],
        &mut [0u8; 16],
    )
    .unwrap_err();
    assert_eq!(err.kind, mdeliver_core::ErrorKind::Busy);
    assert_eq!(fs.names(Dir::New).count(), 0);
    assert_eq!(
        fs.names(Dir::Root).count(),
        1,
        "only the other's lock remains"
    );
}
