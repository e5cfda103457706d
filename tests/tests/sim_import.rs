//! `mdeliver -M` under the simulator (`tests/src/sim/import.rs`): the core's mbox import of two
//! dated messages, a renaming reader before any one of its operations, and a crash (every P2
//! image) or a fault at every operation, then the rerun from where the import said the rest
//! begins. Invariants 4, 8, 10 and 12 hold; a mutant that flushes a file before setting its
//! time is caught by 12, and its counterexample replays.

use mdeliver_tests::sim::assert_no_violations;
use mdeliver_tests::sim::import::{explore, replay, scenarios};
use mdeliver_tests::sim::Invariant;

#[test]
fn an_import_with_set_mtime_holds_after_a_crash_or_fault_at_every_step_and_the_rerun() {
    for cfg in scenarios() {
        let r = explore(&cfg);
        eprintln!(
            "| {} | {} ops | {} | {} | {} | {} |",
            cfg.name,
            r.operations,
            r.executions,
            r.states,
            r.crash_states,
            r.violations.len()
        );
        // Two messages, each created, written, timed, flushed, named; then the batch flush.
        // The one with `Status: RO` is filed in cur/.
        assert!(r.operations >= 10, "{}: {r:?}", cfg.name);
        assert_eq!(r.stored, (1, 1), "{}", cfg.name);
        assert!(
            r.executions > r.operations && r.crash_states >= r.states && r.states > 10,
            "{}: {r:?}",
            cfg.name
        );
        assert_no_violations(&cfg.name, &r.violations);
    }
}

#[test]
fn a_file_flushed_before_its_time_is_set_is_caught_and_replays() {
    let mut cfg = scenarios().remove(0);
    cfg.reader = false;
    cfg.flush_before_mtime = true;
    let r = explore(&cfg);
    let v = r
        .violations
        .iter()
        .find(|v| v.invariant == Invariant::MtimeBeforeFlush)
        .unwrap_or_else(|| panic!("the mutant is not caught: {r:?}"));
    assert!(
        v.what.contains("not between its last write and its flush"),
        "{v}"
    );
    let (invariant, what) = replay(&cfg, &v.schedule).expect("the schedule replays");
    assert_eq!((invariant, what), (v.invariant, v.what.clone()));
}
