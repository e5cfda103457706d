//! Replay and determinism: the same seed gives the identical event log; a printed schedule
//! string replays exactly; random and PCT schedulers run larger configurations.

use mdeliver_core::machine::deliver::Strategy;
use mdeliver_tests::sim::explore::{render, replay, run_one, run_random, Sched, Schedule};
use mdeliver_tests::sim::scenarios::{classic_link_vs_reader, large};

#[test]
fn same_seed_same_event_log() {
    let cfg = large(Strategy::Exclusive, 3, true);
    for sched in [Sched::Random, Sched::Pct { depth: 3 }] {
        let (s1, v1, w1) = run_one(&cfg, sched, 42, true);
        let (s2, v2, w2) = run_one(&cfg, sched, 42, true);
        assert_eq!(w1.trace, w2.trace);
        assert_eq!((s1.to_string(), v1), (s2.to_string(), v2));
        assert!(w1.trace.as_ref().unwrap().len() > 20);
        let (s3, _, _) = run_one(&cfg, sched, 43, true);
        assert_ne!(s1, s3, "different seeds explore different schedules");
        // The schedule string replays the same log.
        let r = replay(&cfg, &s1.to_string().parse().unwrap());
        assert_eq!(Some(r.trace), w1.trace);
    }
}

#[test]
fn schedule_strings_round_trip() {
    let s: Schedule = "0 1/2 2/0/1 !crash=5".parse().unwrap();
    assert_eq!(s.steps, vec![(0, vec![]), (1, vec![2]), (2, vec![0, 1])]);
    assert_eq!(s.crash, Some(5));
    assert_eq!(s.to_string(), "0 1/2 2/0/1 !crash=5");
    assert!("x".parse::<Schedule>().is_err());
}

#[test]
fn random_and_pct_find_the_classic_duplicate_and_it_replays() {
    let cfg = classic_link_vs_reader();
    for sched in [Sched::Random, Sched::Pct { depth: 3 }] {
        let r = run_random(&cfg, sched, 0..3000);
        let f = r.failures.get(&2).expect("duplicate found");
        let text = render(&cfg, f);
        assert!(text.contains("I2 no-duplicate"), "{text}");
    }
}

#[test]
fn exclusive_clean_under_random_and_pct_larger_configs() {
    for n in [3, 4] {
        let cfg = large(Strategy::Exclusive, n, false);
        for sched in [
            Sched::Random,
            Sched::Pct { depth: 2 },
            Sched::Pct { depth: 3 },
        ] {
            run_random(&cfg, sched, 0..300).assert_clean(&cfg);
        }
    }
}

/// The big run (the races example does the same with figures): `cargo test --release -p
/// mdeliver-tests --test sim_replay -- --ignored`.
#[test]
#[ignore]
fn exclusive_clean_over_a_million_schedules() {
    let mut total = 0;
    for n in [3, 8] {
        let cfg = large(Strategy::Exclusive, n, false);
        for sched in [Sched::Random, Sched::Pct { depth: 3 }] {
            let r = run_random(&cfg, sched, 0..250_000);
            r.assert_clean(&cfg);
            total += r.stats.executions;
        }
    }
    assert!(total >= 1_000_000);
}
