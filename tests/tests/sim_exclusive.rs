//! `Exclusive` holds every invariant, exhaustively: two deliverers and a reader, every
//! interleaving and readdir answer, a crash (P2) at every state, on every publish path, with
//! unique and with forced-colliding names, against a plain-rename and a no-replace reader.

use mdeliver_core::machine::deliver::Strategy;
use mdeliver_tests::sim::explore::explore;
use mdeliver_tests::sim::scenarios::{path_caps, two_plus_reader};
use mdeliver_tests::sim::world::ReaderMode;

/// Explores `Exclusive` on publish path `path` (unique or colliding names) against a plain-rename
/// and then a no-replace reader, and asserts each exploration clean (crashes included).
fn run(path: &str, collide: bool) {
    for mode in [ReaderMode::Plain, ReaderMode::Core] {
        let name = format!("exclusive {path} collide={collide} reader={mode:?}");
        let cfg = two_plus_reader(&name, Strategy::Exclusive, path_caps(path), collide, mode);
        explore(&cfg, 5_000_000).assert_clean(&cfg);
    }
}

#[test]
fn anonymous_link_unique_names() {
    run("anonymous-link", false);
}

#[test]
fn anonymous_link_colliding_names() {
    run("anonymous-link", true);
}

#[test]
fn rename_noreplace_unique_names() {
    run("rename-noreplace", false);
}

#[test]
fn rename_noreplace_colliding_names() {
    run("rename-noreplace", true);
}

#[test]
fn link_unlink_unique_names() {
    run("link-unlink", false);
}

#[test]
fn link_unlink_colliding_names() {
    run("link-unlink", true);
}

/// On an ordered-commit filesystem (ext4) the file's data is written back, not flushed,
/// before it is named, and the one directory flush after the publish makes both durable:
/// every invariant holds on the paths that filesystem takes, crashes included.
#[test]
fn ordered_commit_anonymous_link() {
    run("anonymous-link+ordered", false);
}

#[test]
fn ordered_commit_link_unlink_colliding_names() {
    run("link-unlink+ordered", true);
}

/// The same under P1 (names persist as a prefix, as in a journal).
#[test]
fn ordered_commit_under_p1() {
    let mut cfg = two_plus_reader(
        "exclusive anonymous-link+ordered P1",
        Strategy::Exclusive,
        path_caps("anonymous-link+ordered"),
        false,
        ReaderMode::Plain,
    );
    cfg.persistence = mdeliver_tests::sim::fs::Persistence::P1;
    explore(&cfg, 5_000_000).assert_clean(&cfg);
}

/// The checks catch trusting the promise where it does not hold: a filesystem that reports
/// ordered commits but whose flush of names leaves the written-back data volatile shows, after
/// a crash, a named message without its bytes.
#[test]
fn a_filesystem_that_breaks_the_ordered_commit_promise_is_caught() {
    let mut cfg = two_plus_reader(
        "exclusive anonymous-link, broken ordered commit",
        Strategy::Exclusive,
        path_caps("anonymous-link+ordered"),
        false,
        ReaderMode::Plain,
    );
    cfg.sem = mdeliver_tests::sim::fs::Semantics::BrokenOrder;
    let r = explore(&cfg, 5_000_000);
    let partial = mdeliver_tests::sim::Invariant::NoPartial as u8;
    assert!(r.failures.contains_key(&partial), "{:?}", r.failures.keys());
    // Nothing else breaks: the names and the reader are as on any filesystem.
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures.keys());
}
