//! A Sieve script's actions as one exactly-once unit hold invariant 11 (with 4, 9 and 10)
//! exhaustively under P2: 2–3 `fileinto`s plus keep, flags, a quota, a redirect, a missing
//! folder, and a retry whose script decides differently; a crash after every operation of the
//! unit, every crash image of every maildir, then the MTA's retry.

use mdeliver_tests::sim::assert_no_violations;
use mdeliver_tests::sim::sieve::{explore, scenarios};

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
