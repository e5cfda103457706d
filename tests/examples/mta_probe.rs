fn main() {
    use mdeliver_tests::sim::mta::*;
    let mut all = scenarios();
    let mut old = MtaScenario::new("old order, one deliverer", vec![0], true, true);
    old.order = mdeliver_core::machine::mta::Order::AccountLast;
    all.push(old);
    for cfg in all {
        let t = std::time::Instant::now();
        let r = explore(&cfg);
        println!("{}: exec {} states {} crash {} viol {} {:?}", cfg.name, r.executions, r.states, r.crash_states, r.violations.len(), t.elapsed());
        for v in r.violations.iter().take(3) { println!("   {v}"); }
    }
}
