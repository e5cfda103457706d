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
            "{}: {} executions, {} states, {} crash states, {} committer batches (largest {}), {} copies linked, {} violations",
            cfg.name,
            r.executions,
            r.states,
            r.crash_states,
            r.batches,
            r.largest_batch,
            r.links,
            r.violations.len()
        );
        assert!(
            r.states > 50 && r.crash_states > r.states && r.executions >= 1,
            "{}: {r:?}",
            cfg.name
        );
        // Without the index (which keeps one copy of one message in the one maildir), the
        // later identical copies were stored as links.
        if cfg.links && !cfg.dedup {
            assert_eq!(r.links, 2, "{}: {r:?}", cfg.name);
        }
        // The committer batched more than one request at some point.
        assert!(r.largest_batch >= 2, "{}: {r:?}", cfg.name);
        assert_no_violations(&cfg.name, &r.violations);
    }
}

/// Also where commits are ordered (ext4), where the name's flush is what commits the
/// message's written-back data and the index's records.
#[test]
fn a_reply_sent_before_its_name_is_durable_is_caught() {
    for ordered_commit in [false, true] {
        let mut cfg = LmtpScenario::new(
            "broken: names unflushed",
            vec![vec![0], vec![1]],
            true,
            false,
        );
        cfg.broken_names = true;
        cfg.caps.ordered_commit = ordered_commit;
        let r = explore(&cfg);
        assert!(
            r.violations
                .iter()
                .any(|v| v.invariant == Invariant::NoLoss),
            "ordered commit {ordered_commit}: {r:?}"
        );
    }
}

/// A server that offers the first copy's file for links as soon as it asks for its data flush
/// (before that flush) is caught: a crash can leave a link, its name durable, to data that is
/// not.
#[test]
fn a_link_to_a_first_copy_whose_data_is_not_durable_is_caught() {
    let mut cfg = LmtpScenario::linking("broken: linked before the data is durable", false, false);
    cfg.broken_link = true;
    let r = explore(&cfg);
    println!(
        "{}",
        r.violations
            .first()
            .map(|v| v.to_string())
            .unwrap_or_default()
    );
    assert!(
        r.violations
            .iter()
            .any(|v| v.invariant == Invariant::NoPartial),
        "{r:?}"
    );
}
