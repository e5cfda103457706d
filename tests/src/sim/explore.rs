//! Schedulers over a [`World`]: exhaustive depth-first search with sleep sets and state
//! caching, seeded random and PCT runs, and replay of a printed schedule string.
//!
//! A schedule string is the sequence of steps, each the agent's index, followed by `/k` for
//! every nondeterministic answer of the filesystem in that step (readdir adversary, NFS lost
//! reply), e.g. `0 0 2/1 1`; a trailing `!crash=S` checks crash image `S` of the final state
//! (P1: persisted prefix length, P2: bit mask over un-synced visible operations).

use crate::sim::fs::Chooser;
use crate::sim::rng::Rng;
use crate::sim::world::{Config, Footprint, Violation, World};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// A replayable schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// Steps: agent and the choices taken in that step.
    pub steps: Vec<(u8, Vec<u32>)>,
    /// The crash image checked at the end, if any.
    pub crash: Option<u64>,
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (a, cs) in &self.steps {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write_step(f, *a, cs)?;
        }
        if let Some(c) = self.crash {
            write!(f, "{}!crash={c}", if first { "" } else { " " })?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Schedule, String> {
        let mut out = Schedule::default();
        for tok in s.split_whitespace() {
            if let Some(c) = tok.strip_prefix("!crash=") {
                out.crash = Some(c.parse().map_err(|_| format!("bad crash spec {tok}"))?);
                continue;
            }
            out.steps.push(parse_step(tok)?);
        }
        Ok(out)
    }
}

/// One step's printed form: the agent, then `/` and each answer the filesystem was forced to
/// give in it (`2/0/1`).
pub fn write_step(f: &mut impl std::fmt::Write, a: u8, choices: &[u32]) -> std::fmt::Result {
    write!(f, "{a}")?;
    choices.iter().try_for_each(|c| write!(f, "/{c}"))
}

/// A step printed by [`write_step`].
pub fn parse_step(tok: &str) -> Result<(u8, Vec<u32>), String> {
    let mut parts = tok.split('/');
    let a = parts
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("bad step {tok}"))?;
    let cs = parts
        .map(|x| x.parse().map_err(|_| format!("bad choice in {tok}")))
        .collect::<Result<Vec<u32>, String>>()?;
    Ok((a, cs))
}

/// A violation found, with the schedule that reaches it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What broke.
    pub violation: Violation,
    /// How to get there.
    pub schedule: Schedule,
}

/// Counters of one exploration.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Distinct states visited.
    pub states: u64,
    /// Operations executed.
    pub transitions: u64,
    /// Executions: exhaustive search: paths that reached a final state; random: schedules run.
    pub executions: u64,
    /// Distinct crash images checked (by contents and reported outcomes).
    pub crash_images: u64,
    /// Crash states covered: (state, persisted subset) pairs, before de-duplication.
    pub crash_states: u64,
    /// Violations found (all, not only the kept shortest).
    pub violations: u64,
    /// The search stopped at its state limit.
    pub truncated: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// The result of an exploration: counters and, per invariant, the shortest failure found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Counters.
    pub stats: Stats,
    /// Shortest failure per invariant number.
    pub failures: BTreeMap<u8, Failure>,
}

impl Report {
    fn record(&mut self, violation: Violation, schedule: Schedule) {
        self.stats.violations += 1;
        let better = match self.failures.get(&violation.invariant) {
            Some(f) => schedule.steps.len() < f.schedule.steps.len(),
            None => true,
        };
        if better {
            self.failures.insert(
                violation.invariant,
                Failure {
                    violation,
                    schedule,
                },
            );
        }
    }

    /// Whether no invariant broke.
    pub fn clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Asserts that this run of `cfg` ended clean: no invariant broke (the panic renders every
    /// failure), the search was not cut at its state limit, some execution reached a final
    /// state and, where `cfg.crashes`, crash images were checked. Prints the counters.
    pub fn assert_clean(&self, cfg: &Config) {
        let failures: Vec<String> = self.failures.values().map(|f| render(cfg, f)).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(!self.stats.truncated, "{}: exploration truncated", cfg.name);
        assert!(
            self.stats.executions > 0 && (!cfg.crashes || self.stats.crash_images > 0),
            "{}: nothing reached a final state or no crash image was checked: {:?}",
            cfg.name,
            self.stats
        );
        eprintln!("{}: {:?}", cfg.name, self.stats);
    }

    /// The shortest failure of `invariant` found in `cfg`, after asserting that its printed
    /// schedule string replays to the same violation; panics with the counters if none.
    pub fn replayed_failure(&self, cfg: &Config, invariant: u8) -> &Failure {
        let f = self.failures.get(&invariant).unwrap_or_else(|| {
            panic!(
                "{}: no violation of invariant {invariant} found: {:?}",
                cfg.name, self.stats
            )
        });
        let printed = f.schedule.to_string().parse().expect("schedule parses");
        let again = replay(cfg, &printed);
        assert_eq!(again.violation.as_ref(), Some(&f.violation), "{}", cfg.name);
        f
    }
}

fn image_key(w: &World, img: &crate::sim::fs::Image) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    img.hash(&mut h);
    w.reported().hash(&mut h);
    h.finish()
}

struct Dfs<'a> {
    cfg: &'a Config,
    visited: HashMap<u64, u64>,
    crash_seen: HashSet<u64>,
    report: Report,
    path: Vec<(u8, Vec<u32>)>,
    max_states: u64,
    p1: bool,
}

impl Dfs<'_> {
    fn visit(&mut self, w: &World, sleep: u64) {
        if self.report.stats.truncated {
            return;
        }
        if let Some(v) = w.check_live() {
            let s = Schedule {
                steps: self.path.clone(),
                crash: None,
            };
            self.report.record(v, s);
            return;
        }
        let h = w.state_hash();
        let mut sleep = sleep;
        match self.visited.get_mut(&h) {
            Some(old) => {
                // Explored before with sleep set `old`: only what slept then and not now is new.
                if *old & !sleep == 0 {
                    return;
                }
                let todo = *old & !sleep;
                *old &= sleep;
                sleep = !todo;
            }
            None => {
                self.visited.insert(h, sleep);
                self.report.stats.states += 1;
                if self.report.stats.states >= self.max_states {
                    self.report.stats.truncated = true;
                }
                if self.cfg.crashes {
                    self.crashes(w);
                }
            }
        }
        let enabled = w.enabled();
        if enabled.is_empty() {
            self.report.stats.executions += 1;
            if let Some(f) = self.cfg.on_final {
                f(w);
            }
            return;
        }
        let feet: Vec<(usize, Footprint)> = enabled.iter().map(|&a| (a, w.footprint(a))).collect();
        let mut done: u64 = 0;
        for (a, fa) in &feet {
            let a = *a;
            if sleep & (1 << a) != 0 {
                continue;
            }
            let asleep = sleep | done;
            let mut next_sleep = 0u64;
            for (b, fb) in &feet {
                if asleep & (1 << b) != 0 && !fb.dependent(fa, self.p1) {
                    next_sleep |= 1 << b;
                }
            }
            let mut forced: Vec<u32> = Vec::new();
            loop {
                let mut w2 = w.clone();
                let made = w2.step(a, &forced);
                self.report.stats.transitions += 1;
                self.path
                    .push((a as u8, made.iter().map(|x| x.1).collect()));
                self.visit(&w2, next_sleep);
                self.path.pop();
                // Odometer over the step's nondeterministic answers.
                match Chooser::next_script(&made) {
                    Some(next) => forced = next,
                    None => break,
                }
            }
            done |= 1 << a;
        }
    }

    fn crashes(&mut self, w: &World) {
        for (spec, img) in w.sim().crash_images() {
            self.report.stats.crash_states += 1;
            if !self.crash_seen.insert(image_key(w, &img)) {
                continue;
            }
            self.report.stats.crash_images += 1;
            if let Some(v) = w.check_image(&img) {
                let s = Schedule {
                    steps: self.path.clone(),
                    crash: Some(spec),
                };
                self.report.record(v, s);
            }
        }
    }
}

/// Explores every interleaving and every filesystem answer of `cfg` (up to `max_states`
/// distinct states), checking invariants on every state and, with `cfg.crashes`, on every
/// crash image of every state.
pub fn explore(cfg: &Config, max_states: u64) -> Report {
    let start = Instant::now();
    let mut dfs = Dfs {
        cfg,
        visited: HashMap::new(),
        crash_seen: HashSet::new(),
        report: Report::default(),
        path: Vec::new(),
        max_states,
        p1: cfg.persistence == crate::sim::fs::Persistence::P1,
    };
    let w = cfg.build();
    assert!(w.agents.len() <= 64);
    dfs.visit(&w, 0);
    dfs.report.stats.elapsed = start.elapsed();
    dfs.report
}

/// A randomized scheduler.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sched {
    /// Uniformly random enabled agent at each step.
    Random,
    /// PCT (Burckhardt et al. 2010): random agent priorities, highest enabled runs, and
    /// `depth - 1` random points where the running agent drops to the lowest priority.
    Pct {
        /// Bug depth targeted.
        depth: u32,
    },
}

/// Runs one randomized schedule from `seed`; returns its schedule and the first violation.
/// With `cfg.crashes`, one random crash image of one random state is checked too.
pub fn run_one(
    cfg: &Config,
    sched: Sched,
    seed: u64,
    trace: bool,
) -> (Schedule, Option<Violation>, World) {
    let mut w = cfg.build();
    if trace {
        w.trace = Some(Vec::new());
    }
    let mut rng = Rng::new(seed);
    w.fs.inner.chooser.rng = Some(Rng::new(seed ^ 0x5eed_5eed));
    let n = w.agents.len();
    let est = 12 * n as u64 + 8;
    let crash_at = rng.below(est);
    let mut prio: Vec<u64> = (0..n as u64).map(|i| 1000 + i).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        prio.swap(i, j);
    }
    let changes: Vec<u64> = match sched {
        Sched::Pct { depth } => (1..depth).map(|_| rng.below(est)).collect(),
        Sched::Random => Vec::new(),
    };
    let mut s = Schedule::default();
    let mut stepno = 0u64;
    loop {
        if let Some(v) = w.check_live() {
            return (s, Some(v), w);
        }
        if cfg.crashes && stepno == crash_at {
            let specs = w.sim().crash_specs();
            let spec = specs.start + rng.below(specs.end - specs.start);
            if let Some(v) = w.check_image(&w.sim().crash_image(spec)) {
                s.crash = Some(spec);
                return (s, Some(v), w);
            }
        }
        let enabled = w.enabled();
        if enabled.is_empty() {
            return (s, None, w);
        }
        let a = match sched {
            Sched::Random => enabled[rng.below(enabled.len() as u64) as usize],
            Sched::Pct { .. } => *enabled.iter().max_by_key(|&&a| prio[a]).expect("enabled"),
        };
        for (k, &c) in changes.iter().enumerate() {
            if c == stepno {
                prio[a] = k as u64;
            }
        }
        let made = w.step(a, &[]);
        s.steps.push((a as u8, made.iter().map(|x| x.1).collect()));
        stepno += 1;
    }
}

/// Runs the schedules of `seeds`, keeping the shortest failure per invariant.
pub fn run_random(cfg: &Config, sched: Sched, seeds: std::ops::Range<u64>) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    for seed in seeds {
        let (s, v, w) = run_one(cfg, sched, seed, false);
        report.stats.executions += 1;
        report.stats.transitions += s.steps.len() as u64;
        if s.crash.is_some() || cfg.crashes {
            report.stats.crash_images += 1;
            report.stats.crash_states += 1;
        }
        drop(w);
        if let Some(v) = v {
            report.record(v, s);
        }
    }
    report.stats.elapsed = start.elapsed();
    report
}

/// The outcome of a replay.
#[derive(Debug)]
pub struct Replay {
    /// One line per step, plus the crash image if any.
    pub trace: Vec<String>,
    /// The violation reached, if any.
    pub violation: Option<Violation>,
    /// The world at the end.
    pub world: World,
}

/// Replays `schedule` on `cfg`, tracing every operation.
pub fn replay(cfg: &Config, schedule: &Schedule) -> Replay {
    let mut w = cfg.build();
    w.trace = Some(Vec::new());
    let mut violation = None;
    for (a, cs) in &schedule.steps {
        w.step(*a as usize, cs);
        violation = w.check_live();
        if violation.is_some() {
            break;
        }
    }
    let mut trace = w.trace.take().unwrap_or_default();
    if let (None, Some(spec)) = (&violation, schedule.crash) {
        let img = w.sim().crash_image(spec);
        trace.push(format!(
            "CRASH ({} image {spec}): new/ and cur/ hold {}",
            w.sim().persistence.as_str(),
            if img.is_empty() {
                "nothing".to_string()
            } else {
                img.iter()
                    .map(|((d, n), data)| format!("{}/{n} ({} bytes)", d.as_str(), data.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        violation = w.check_image(&img);
    }
    Replay {
        trace,
        violation,
        world: w,
    }
}

/// A failure as text: the schedule string, the op-by-op trace, and the violation.
pub fn render(cfg: &Config, f: &Failure) -> String {
    let r = replay(cfg, &f.schedule);
    let mut out = format!("scenario: {}\nschedule: {}\n", cfg.name, f.schedule);
    for l in &r.trace {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!(
        "violation: {}\n",
        r.violation
            .map_or("none on replay (BUG)".into(), |v| v.to_string())
    ));
    out
}

/// [`run_random`] split over `threads` threads (seed ranges interleaved by blocks); the report
/// is the same as a single-threaded run's except for wall time.
pub fn run_random_par(
    cfg: &Config,
    sched: Sched,
    seeds: std::ops::Range<u64>,
    threads: u64,
) -> Report {
    let start = Instant::now();
    let n = seeds.end - seeds.start;
    let parts: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = seeds.start + n * t / threads;
                let hi = seeds.start + n * (t + 1) / threads;
                s.spawn(move || run_random(cfg, sched, lo..hi))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut report = Report::default();
    for p in parts {
        report.stats.executions += p.stats.executions;
        report.stats.transitions += p.stats.transitions;
        report.stats.crash_images += p.stats.crash_images;
        report.stats.crash_states += p.stats.crash_states;
        report.stats.violations += p.stats.violations;
        for (_, f) in p.failures {
            let v = f.violation.clone();
            report.stats.violations -= 1;
            report.record(v, f.schedule);
        }
    }
    report.stats.elapsed = start.elapsed();
    report
}
