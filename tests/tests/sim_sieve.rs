//! A Sieve script's actions as one exactly-once unit hold invariant 11 (with 4, 9 and 10)
//! exhaustively under P2: 2–3 `fileinto`s plus keep, flags, a quota, a redirect, a missing
//! folder, and a retry whose script decides differently; a crash after every operation of the
//! unit, every crash image of every maildir, then the MTA's retry. On the NFS model too, with
//! each link's reply lost in turn.

use mdeliver_core::machine::deliver::Strategy;
use mdeliver_tests::sim::sieve::{explore, scenarios};
use mdeliver_tests::sim::{assert_no_violations, Invariant};

#[test]
fn every_unit_scenario_holds_after_a_crash_at_every_step_and_the_retry() {
    for cfg in scenarios() {
        let r = explore(&cfg);
        eprintln!(
            "| {} | {} | {} | {} | {} |",
            cfg.name,
            r.executions,
            r.states,
            r.crash_states,
            r.violations.len()
        );
        assert!(
            r.executions > 20 && r.crash_states >= r.states,
            "{}: {r:?}",
            cfg.name
        );
        assert_no_violations(&cfg.name, &r.violations);
    }
}

#[test]
fn on_nfs_the_exclusive_delivery_would_store_a_copy_twice() {
    // The check of the NFS rows themselves: the copies delivered without the maildir lock
    // trust a link whose reply was lost, and a unit's retry stores that copy again.
    let mut cfg = scenarios()
        .into_iter()
        .find(|c| c.nfs && c.redirects.len() == 1)
        .expect("an NFS row with a redirect");
    cfg.strategy = Some(Strategy::Exclusive);
    let r = explore(&cfg);
    let twice = r
        .violations
        .iter()
        .find(|v| v.invariant == Invariant::UnitExactlyOnce && v.schedule.contains("lost-reply"));
    assert!(twice.is_some(), "{r:?}");
}
