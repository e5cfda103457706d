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
