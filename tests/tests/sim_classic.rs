//! The classic Maildir recipe fails exactly as the critique says, and the explorer finds each
//! failure on its own; the shortest replayable trace of each is kept as a snapshot.

use mdeliver_tests::sim::explore::{explore, render};
use mdeliver_tests::sim::fs::Persistence;
use mdeliver_tests::sim::scenarios::*;
use mdeliver_tests::sim::world::{Config, ReaderMode};

/// Explores `cfg` exhaustively and renders the shortest violation of `invariant` found,
/// checked to replay from its printed schedule.
fn shortest(cfg: &Config, invariant: u8) -> String {
    let r = explore(cfg, 1_000_000);
    render(cfg, r.replayed_failure(cfg, invariant))
}

/// Asserts that `cfg` breaks `invariant` and snapshots the shortest trace as `name`.
fn counterexample(cfg: Config, invariant: u8, name: &str) {
    insta::assert_snapshot!(name, shortest(&cfg, invariant));
}

#[test]
fn a_colliding_names_truncate_the_same_tmp_file() {
    counterexample(classic_collision(), 3, "classic_a_stat_then_create");
}

#[test]
fn a_with_o_excl_no_overwrite_but_no_delivery_either_is_lost() {
    // qmail 1.03's O_EXCL stops the truncation: nothing is overwritten (one of the two fails
    // honestly, or waits and takes a new second).
    let mut cfg = classic_collision();
    cfg.agents = vec![deliverer(QMAIL, true), deliverer(QMAIL, true)];
    explore(&cfg, 1_000_000).assert_clean(&cfg);
}

#[test]
fn b_link_races_reader_rename_and_duplicates() {
    let cfg = classic_link_vs_reader();
    let r = explore(&cfg, 1_000_000);
    assert!(
        !r.failures.contains_key(&3),
        "O_EXCL must prevent overwrites"
    );
    let f = r.replayed_failure(&cfg, 2);
    insta::assert_snapshot!("classic_b_link_vs_rename", render(&cfg, f));
}

#[test]
fn b_needs_the_collision() {
    let mut cfg = classic_link_vs_reader();
    cfg.agents[0] = deliverer(QMAIL, false);
    cfg.agents[1] = deliverer(QMAIL, false);
    explore(&cfg, 1_000_000).assert_clean(&cfg);
}

#[test]
fn c_single_pass_listing_misses_a_renamed_message() {
    counterexample(naive_listing(), 5, "classic_c_naive_listing");
}

#[test]
fn without_directory_fsync_a_crash_loses_a_reported_delivery() {
    counterexample(classic_crash(Persistence::P2), 1, "classic_crash_p2");
    // The journaled model loses it too (the link is not committed yet) ...
    let cfg = classic_crash(Persistence::P1);
    shortest(&cfg, 1);
    // ... and only a synchronous mount saves it.
    let cfg = classic_crash(Persistence::P0);
    explore(&cfg, 1_000_000).assert_clean(&cfg);
}

#[test]
fn exclusive_survives_the_same_reader_race() {
    let cfg = two_plus_reader(
        "exclusive vs reader",
        mdeliver_core::machine::deliver::Strategy::Exclusive,
        path_caps("link-unlink"),
        true,
        ReaderMode::Plain,
    );
    explore(&cfg, 5_000_000).assert_clean(&cfg);
}
