//! The classic Maildir recipe fails exactly as the critique says, and the explorer finds each
//! failure on its own; the shortest replayable trace of each is kept as a snapshot.

use mdeliver_tests::sim::explore::{explore, render, replay, Report};
use mdeliver_tests::sim::fs::Persistence;
use mdeliver_tests::sim::scenarios::*;
use mdeliver_tests::sim::world::{Config, ReaderMode};

fn shortest(cfg: &Config, r: &Report, invariant: u8) -> String {
    let f = r.failures.get(&invariant).unwrap_or_else(|| {
        panic!(
            "{}: no violation of invariant {invariant} found: {:?}",
            cfg.name, r.stats
        )
    });
    // The printed schedule replays to the same violation.
    let again = replay(
        cfg,
        &f.schedule.to_string().parse().expect("schedule parses"),
    );
    assert_eq!(again.violation.as_ref(), Some(&f.violation));
    render(cfg, f)
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
    assert!(
        r.clean(),
        "{}",
        r.failures
            .values()
            .map(|f| render(&cfg, f))
            .collect::<String>()
    );
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
    assert!(
        r.clean(),
        "{}",
        r.failures
            .values()
            .map(|f| render(&cfg, f))
            .collect::<String>()
    );
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
    let r = explore(&cfg, 1_000_000);
    assert!(r.clean() && r.stats.crash_images > 0, "{:?}", r.stats);
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
    assert!(explore(&cfg, 5_000_000).clean());
}
