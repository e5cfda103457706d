//! The simulator's results table: strategy × scenario → executions explored, states, crash
//! images, violations (by invariant) and time, then the randomized runs over larger
//! configurations. `cargo run --release -p mdeliver-tests --example races [-- SCHEDULES]`
//! (default 1,000,000 random + PCT schedules in total).

use mdeliver_core::machine::deliver::Strategy;
use mdeliver_tests::sim::explore::{explore, render, run_random_par, Report, Sched};
use mdeliver_tests::sim::fs::{Persistence, Semantics};
use mdeliver_tests::sim::scenarios::*;
use mdeliver_tests::sim::world::{Config, ReaderMode};

fn row(strategy: &str, cfg: &Config, kind: &str, r: &Report) {
    let v: Vec<String> = r.failures.keys().map(|i| format!("I{i}")).collect();
    println!(
        "| {strategy} | {} | {kind} | {} | {} | {} | {} | {} | {} | {:.2?} |",
        cfg.name,
        r.stats.executions,
        r.stats.states,
        r.stats.crash_states,
        r.stats.crash_images,
        r.stats.violations,
        if v.is_empty() {
            "none".into()
        } else {
            v.join(" ")
        },
        r.stats.elapsed
    );
}

/// One row of an explorer of composed machines (its report has `executions`, `states`,
/// `crash_states` and `violations`, each naming its `invariant`); the first violation is kept
/// in `$out` as a counterexample.
macro_rules! composed_row {
    ($out:expr, $label:expr, $name:expr, $search:expr, $r:expr, $t:expr) => {{
        let r = &$r;
        let mut broken: Vec<String> = r
            .violations
            .iter()
            .map(|v| format!("I{}", v.invariant as u8))
            .collect();
        broken.dedup();
        let broken = if broken.is_empty() {
            "none".into()
        } else {
            broken.join(" ")
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | - | {} | {broken} | {:.2?} |",
            $label,
            $name,
            $search,
            r.executions,
            r.states,
            r.crash_states,
            r.violations.len(),
            $t.elapsed()
        );
        if let Some(v) = r.violations.first() {
            $out.push(v.to_string());
        }
    }};
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "| strategy | scenario | search | executions | states | crash states | distinct crash \
         images | violations | broken | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut counterexamples = Vec::new();
    let mut exh = |strategy: &str, cfg: Config| {
        let r = explore(&cfg, 20_000_000);
        row(
            strategy,
            &cfg,
            if r.stats.truncated {
                "DFS (truncated)"
            } else {
                "DFS"
            },
            &r,
        );
        if let Some(f) = r.failures.values().next() {
            counterexamples.push(render(&cfg, f));
        }
    };
    exh("Classic", classic_collision());
    exh("Classic+O_EXCL", classic_link_vs_reader());
    for p in [Persistence::P2, Persistence::P1, Persistence::P0] {
        exh("Classic+O_EXCL", classic_crash(p));
    }
    exh("naive listing", naive_listing());
    exh("core scan", core_scan(2, ReaderMode::Plain));
    exh("core scan", core_scan(3, ReaderMode::Plain));
    for path in ["anonymous-link", "rename-noreplace", "link-unlink"] {
        for collide in [false, true] {
            for mode in [ReaderMode::Plain, ReaderMode::Core] {
                let name = format!(
                    "{path}, {} names, {mode:?} reader, P2",
                    if collide { "colliding" } else { "unique" }
                );
                exh(
                    "Exclusive",
                    two_plus_reader(&name, Strategy::Exclusive, path_caps(path), collide, mode),
                );
            }
        }
    }
    // ext4's ordered commits: the file written back, not flushed, before it is named.
    for (path, collide) in [
        ("anonymous-link+ordered", false),
        ("link-unlink+ordered", true),
    ] {
        let name = format!(
            "{path} (write-back, one journal), {} names, Plain reader, P2",
            if collide { "colliding" } else { "unique" }
        );
        exh(
            "Exclusive",
            two_plus_reader(
                &name,
                Strategy::Exclusive,
                path_caps(path),
                collide,
                ReaderMode::Plain,
            ),
        );
    }
    let mut p1 = two_plus_reader(
        "link-unlink, colliding names, Plain reader, P1",
        Strategy::Exclusive,
        path_caps("link-unlink"),
        true,
        ReaderMode::Plain,
    );
    p1.persistence = Persistence::P1;
    exh("Exclusive", p1);
    exh("Exclusive", nfs(Strategy::Exclusive, false));
    exh("Exclusive", nfs(Strategy::Exclusive, true));
    exh("Locked", nfs(Strategy::Locked, false));
    let mut nl = two_plus_reader(
        "no hard links (checked-rename), colliding names, Plain reader, P2",
        Strategy::Exclusive,
        mdeliver_core::Capabilities::POSIX,
        true,
        ReaderMode::Plain,
    );
    nl.sem = Semantics::NoHardLinks;
    exh("Exclusive", nl);

    let mut done = 0u64;
    let configs = [(3usize, 4u64), (5, 3), (8, 3)];
    let weight: u64 = configs.iter().map(|c| c.1).sum();
    for (n, w) in configs {
        let cfg = large(Strategy::Exclusive, n, false);
        for sched in [Sched::Random, Sched::Pct { depth: 3 }] {
            let k = total * w / weight / 2;
            let r = run_random_par(&cfg, sched, 0..k, 2);
            done += r.stats.executions;
            row("Exclusive", &cfg, &format!("{sched:?}"), &r);
            if let Some(f) = r.failures.values().next() {
                counterexamples.push(render(&cfg, f));
            }
        }
    }
    // The scan's guarantee needs each message renamed in cur/ at most once per two passes;
    // two readers each moving and re-flagging the same messages break that premise.
    let cfg = large(Strategy::Exclusive, 8, true);
    let r = run_random_par(&cfg, Sched::Random, 0..total * 3 / 20, 2);
    row("core scan", &cfg, "Random", &r);
    if let Some(f) = r.failures.values().next() {
        counterexamples.push(render(&cfg, f));
    }
    // The composed MTA delivery (duplicate index, quota, publish, accounting, commit): every
    // interleaving, a crash at every state (P2), then the MTA's retries and a later delivery.
    let mut mta = mdeliver_tests::sim::mta::scenarios();
    let mut old = mdeliver_tests::sim::mta::MtaScenario::new(
        "mta dedup+quota, one message, OLD order (account last)",
        vec![0],
        true,
        true,
    );
    old.order = mdeliver_core::machine::mta::Order::AccountLast;
    mta.push(old);
    for cfg in mta {
        let t = std::time::Instant::now();
        let r = mdeliver_tests::sim::mta::explore(&cfg);
        let (label, search) = (format!("Mta ({:?})", cfg.order), "Exhaustive+crash+retry");
        let search = format!("{search} {}", cfg.persistence.as_str());
        composed_row!(counterexamples, label, cfg.name, search, r, t);
    }
    // The LMTP server's group commit: two sessions into one maildir, the core's batch plan,
    // replies in RCPT order; every interleaving, a crash at every state (P2), the MTA's
    // retries and a later delivery.
    for cfg in mdeliver_tests::sim::lmtp::scenarios() {
        let t = std::time::Instant::now();
        let r = mdeliver_tests::sim::lmtp::explore(&cfg);
        let label = format!("Lmtp group commit (batches up to {})", r.largest_batch);
        let search = format!("Exhaustive+crash+retry {}", cfg.persistence.as_str());
        composed_row!(counterexamples, label, cfg.name, search, r, t);
    }
    // A Sieve script's copies and redirects as one unit: a crash after every operation, every
    // crash image of every maildir (P2), then the MTA's retry.
    for cfg in mdeliver_tests::sim::sieve::scenarios() {
        let t = std::time::Instant::now();
        let r = mdeliver_tests::sim::sieve::explore(&cfg);
        let search = "Every crash point+retry P2";
        composed_row!(counterexamples, "Sieve unit", cfg.name, search, r, t);
    }
    // `-M`: the core's mbox import of dated messages (each file's time set between its write
    // and its flush), a renaming reader before any operation, a crash (every P2 image) or a
    // fault at every operation, then the rerun from where the import said the rest begins.
    for cfg in mdeliver_tests::sim::import::scenarios() {
        let t = std::time::Instant::now();
        let r = mdeliver_tests::sim::import::explore(&cfg);
        let label = format!("Import ({} ops)", r.operations);
        let search = "Every interruption x reader position+rerun";
        composed_row!(counterexamples, label, cfg.name, search, r, t);
    }
    println!("\nrandomized schedules in total (Exclusive rows): {done}");
    for c in counterexamples {
        println!("\n{c}");
    }
}
