//! The classic Maildir recipe fails exactly as the critique says, and the explorer finds each
//! failure on its own; the shortest replayable trace of each is kept as a snapshot.

use mdeliver_tests::sim::explore::{explore, render, Report};
use mdeliver_tests::sim::fs::Persistence;
use mdeliver_tests::sim::scenarios::*;
use mdeliver_tests::sim::world::{Config, ReaderMode};

/// The shortest failure of `invariant`, checked to replay from its printed schedule, as text.
fn shortest(cfg: &Config, r: &Report, invariant: u8) -> String {
    render(cfg, r.replayed_failure(cfg, invariant))
}

#[test]
fn a_colliding_names_truncate_the_same_tmp_file() {
    let cfg = classic_collision();
    let r = explore(&cfg, 1_000_000);
    insta::assert_snapshot!("classic_a_stat_then_create", shortest(&cfg, &r, 3));
}

#[test]
fn a_with_o_excl_no_overwrite_but_no_delivery_either_is_lost() {
    // qmail 1.03's O_EXCL stops the truncation: nothing is overwritten (one of the two fails
    // honestly, or waits and takes a new second).
    let mut cfg = classic_collision();
    cfg.agents = vec![deliverer(QMAIL, true), deliverer(QMAIL, true)];
    let r = explore(&cfg, 1_000_000);
    r.assert_clean(&cfg);
}

#[test]
fn b_link_races_reader_rename_and_duplicates() {
    let cfg = classic_link_vs_reader();
    let r = explore(&cfg, 1_000_000);
    assert!(
        !r.failures.contains_key(&3),
        "O_EXCL must prevent overwrites"
    );
    insta::assert_snapshot!("classic_b_link_vs_rename", shortest(&cfg, &r, 2));
}

#[test]
fn b_needs_the_collision() {
    let mut cfg = classic_link_vs_reader();
    cfg.agents[0] = deliverer(QMAIL, false);
    cfg.agents[1] = deliverer(QMAIL, false);
    let r = explore(&cfg, 1_000_000);
    r.assert_clean(&cfg);
}

#[test]
fn c_single_pass_listing_misses_a_renamed_message() {
    let cfg = naive_listing();
    let r = explore(&cfg, 1_000_000);
    insta::assert_snapshot!("classic_c_naive_listing", shortest(&cfg, &r, 5));
}

#[test]
fn without_directory_fsync_a_crash_loses_a_reported_delivery() {
    let cfg = classic_crash(Persistence::P2);
    let r = explore(&cfg, 1_000_000);
    insta::assert_snapshot!("classic_crash_p2", shortest(&cfg, &r, 1));
    // The journaled model loses it too (the link is not committed yet) ...
    let cfg = classic_crash(Persistence::P1);
    let r = explore(&cfg, 1_000_000);
    shortest(&cfg, &r, 1);
    // ... and only a synchronous mount saves it.
    let cfg = classic_crash(Persistence::P0);
    explore(&cfg, 1_000_000).assert_clean(&cfg);
}

#[test]
fn exclusive_survives_the_same_reader_race() {
    let cfg = two_plus_reader(
        "exclusive vs reader",
        mdeliver_core::deliver::Strategy::Exclusive,
        path_caps("link-unlink"),
        true,
        ReaderMode::Plain,
    );
    explore(&cfg, 5_000_000).assert_clean(&cfg);
}
