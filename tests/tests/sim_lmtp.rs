//! The LMTP server's group commit holds its promises exhaustively under P2: two sessions
//! (two recipients and one) into one maildir, each flush run as the core plans the batch
//! waiting at that moment, replies in RCPT order; a crash at every state, then the MTA's
//! retry of every recipient without a 250 and a later delivery. Every acknowledged recipient
//! is stored exactly once; with `--dedup` the retries keep every recipient at exactly once.
//! A committer that answers directory flushes without flushing is caught.

use mdeliver_tests::sim::assert_no_violations;
use mdeliver_tests::sim::lmtp::{explore, scenarios, LmtpScenario};
use mdeliver_tests::sim::Invariant;

#[test]
fn every_group_commit_scenario_holds_every_invariant() {
    for cfg in scenarios() {
        let r = explore(&cfg);
        println!(
            "{}: {} executions, {} states, {} crash states, {} committer batches (largest {}), {} violations",
            cfg.name,
            r.executions,
            r.states,
            r.crash_states,
            r.batches,
            r.largest_batch,
            r.violations.len()
        );
        assert!(
            r.states > 100 && r.crash_states > r.states && r.executions >= 1,
            "{}: {r:?}",
            cfg.name
        );
        // The committer batched more than one request at some point.
        assert!(r.largest_batch >= 2, "{}: {r:?}", cfg.name);
        assert_no_violations(&cfg.name, &r.violations);
    }
}

#[test]
fn a_reply_sent_before_its_name_is_durable_is_caught() {
    let mut cfg = LmtpScenario::new(
        "broken: names unflushed",
        vec![vec![0], vec![1]],
        true,
        false,
    );
    cfg.broken_names = true;
    let r = explore(&cfg);
    assert!(
        r.violations
            .iter()
            .any(|v| v.invariant == Invariant::NoLoss),
        "{r:?}"
    );
}
