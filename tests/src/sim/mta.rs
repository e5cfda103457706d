//! The composed MTA delivery ([`Mta`]: duplicate index, quota, publish, accounting, commit)
//! under the simulator: deliverers of the same or of different messages and a renaming
//! reader, every interleaving of their operations and every answer the filesystem may give
//! (on NFS, a link whose reply is lost; an append that is two steps, the size seen and the
//! write there, so that another's append in between is overwritten), and at every state
//! reached a crash in
//! every way the persistence model allows, followed by what the MTA does next: it retries
//! every delivery it has no success for, and later delivers another message. Invariants 8–10
//! ([`Invariant`]) are checked after that recovery, 4 and the filesystem's own (3, 7) on the
//! way.
//!
//! The search is a depth-first walk over the agents' operations that skips states it has
//! seen (same filesystem, same machines). A failure carries its schedule: the agents stepped,
//! in order (each with the filesystem's answers in it, as the bare-delivery explorer writes
//! them), and the crash spec (`-` for none): [`replay`] runs it again.

use crate::sim::env::SimEnv;
use crate::sim::explore::{parse_step, write_step};
use crate::sim::fs::{Chooser, Persistence, Semantics, SimDir, SimFile, SimFs};
use crate::sim::Invariant;
use mdeliver_core::fs::{perform, Capabilities, Dir, Fs, Op, Slots};
use mdeliver_core::machine::dedup::{DedupOptions, Key};
use mdeliver_core::machine::deliver::{Durability, Options};
use mdeliver_core::machine::mta::{Mta, MtaOptions, MtaOutcome, Order};
use mdeliver_core::machine::quota::{parse_maildirsize, CheckOptions, MAILDIRSIZE};
use mdeliver_core::machine::trust;
use mdeliver_core::machine::{Machine, Step};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// A scenario of composed MTA deliveries.
#[derive(Clone, Debug)]
pub struct MtaScenario {
    /// Name for reports.
    pub name: String,
    /// Deliverers; deliverer `i` delivers message `messages[i]`.
    pub messages: Vec<usize>,
    /// With the duplicate index.
    pub dedup: bool,
    /// With a Maildir++ quota (a `maildirsize` with room for everything).
    pub quota: bool,
    /// A reader that renames new/ messages into cur/ meanwhile (up to two).
    pub reader: bool,
    /// When the delivery is accounted.
    pub order: Order,
    /// Persistence model of crash images.
    pub persistence: Persistence,
    /// What the filesystem offers: local Linux, or with ext4's ordered commits (the records
    /// needed before the publish, and the message, written back instead of flushed).
    pub caps: Capabilities,
    /// Local POSIX, NFS (lost link replies, the `Locked` delivery), or (for the checks' own
    /// test) a filesystem that reports ordered commits and does not keep them.
    pub sem: Semantics,
    /// Crash (then recover) at every state.
    pub crashes: bool,
    /// Each `O_APPEND` write is atomic. When not (NFS: the client writes at the size it last
    /// fetched), an append is two steps, the size seen and the write there, so another
    /// deliverer's append in between is overwritten.
    pub atomic_appends: bool,
    /// Before the deliverers start, another deliverer of message 0 reserved its index entry
    /// (holding the maildir's lock, if it takes one) and died; the deliverers start after its
    /// lease and its lock have run out, so both may take the entry over.
    pub stale_holder: bool,
    /// A mutant for the checks' own test ([`SimFs::unclaimed_breaks`]): stale locks broken
    /// without the claim that lets only one deliverer break each.
    pub unclaimed_breaks: bool,
}

impl MtaScenario {
    /// Two deliverers of `messages`, P2, crashes at every state, the fixed order.
    pub fn new(name: &str, messages: Vec<usize>, dedup: bool, quota: bool) -> MtaScenario {
        MtaScenario {
            name: name.into(),
            messages,
            dedup,
            quota,
            reader: false,
            order: Order::AccountFirst,
            persistence: Persistence::P2,
            caps: Capabilities::LINUX_LOCAL,
            sem: Semantics::Posix,
            crashes: true,
            atomic_appends: true,
            stale_holder: false,
            unclaimed_breaks: false,
        }
    }

    /// The scenario on the NFS model: lost link replies (so the `Locked` delivery), appends
    /// that are not atomic, crashes under P1.
    pub fn on_nfs(mut self) -> MtaScenario {
        self.sem = Semantics::Nfs;
        self.persistence = Persistence::P1;
        self.atomic_appends = false;
        self
    }

    /// The options and capabilities a delivery gets on a filesystem offering `caps`: the
    /// strategy is chosen as the drivers choose it ([`trust::choose`]), so the NFS rows run
    /// the `Locked` delivery with the capabilities it keeps.
    fn options(&self, caps: Capabilities) -> (MtaOptions, Capabilities) {
        let choice = trust::choose(caps, None);
        let base = Options {
            durability: Durability::Full,
            ..Options::default()
        };
        let chosen = choice.options(base);
        let opts = MtaOptions {
            // The lock polled as often as by default, not every 50 ms: the same steps, and
            // far fewer states of a holder's wait.
            delivery: Options {
                lock_poll_ms: base.lock_poll_ms,
                // After a dead holder, a deliverer may wait for the other's lock: a few polls
                // show it, and each is as many more states.
                lock_timeout_ms: if self.stale_holder {
                    3_000
                } else {
                    chosen.lock_timeout_ms
                },
                ..chosen
            },
            quota: self.quota.then(CheckOptions::default),
            dedup: self.dedup.then_some(DedupOptions {
                poll_ms: 1_000,
                wait_ms: 2_000,
                gc_every: 0,
                ..DedupOptions::default()
            }),
            key: None,
            order: self.order,
        };
        (opts, choice.caps)
    }

    fn initial(&self) -> World {
        let mut fs = SimFs::new(self.sem, self.caps, self.persistence);
        fs.unclaimed_breaks = self.unclaimed_breaks;
        if self.quota {
            fs.seed(Dir::Root, MAILDIRSIZE, b"1000000S\n0 0\n");
        }
        let (opts, caps) = self.options(fs.capabilities());
        // Seconds the deliverers start after the dead holder: past its lease, the clock
        // margin and the lock's staleness.
        let late = match opts.dedup {
            Some(d) if self.stale_holder => {
                die_after_reserving(&mut fs, opts, caps);
                d.lease_secs.max(opts.delivery.lock_stale_secs) + d.margin_secs + 40
            }
            _ if self.stale_holder => panic!("a dead holder needs the index (dedup)"),
            _ => 0,
        };
        let agents = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, &msg)| {
                let mut env = SimEnv::unique(i as u8, 7);
                env.micros += late * 1_000_000;
                let m = Mta::new(opts, caps, &mut env);
                Agent::new(msg, m, env)
            })
            .collect();
        World {
            fs,
            agents,
            reader_moves: if self.reader { 2 } else { 0 },
            atomic_appends: self.atomic_appends,
        }
    }
}

/// A deliverer of message 0 runs until its reservation is in the index entry, then dies
/// (everything it did is durable: its host lived on).
fn die_after_reserving(fs: &mut SimFs, opts: MtaOptions, caps: Capabilities) {
    let mut env = SimEnv::unique(9, 7);
    let m = Mta::new(opts, caps, &mut env);
    let mut dead = Agent::new(0, m, env);
    let entry = key_of(0).entry_name();
    for _ in 0..1_000 {
        fs.agent = 9;
        fs.now = dead.env.secs();
        step_agent(fs, &mut dead, true);
        let reserved = fs
            .contents(Dir::Root, &entry)
            .is_some_and(|d| d.windows(3).any(|w| w == b"\nR "));
        assert!(
            dead.outcome.is_none(),
            "the holder finished before reserving"
        );
        if reserved {
            fs.sync_all()
                .expect("the dead holder's writes made durable");
            return;
        }
    }
    panic!("the holder never reserved");
}

impl Agent {
    fn new(msg: usize, m: Mta, env: SimEnv) -> Agent {
        Agent {
            msg,
            m,
            env,
            file: None,
            stream: None,
            inner: None,
            outcome: None,
            append_at: None,
        }
    }
}

/// The body of message `m`: a Message-ID (the duplicate index's key) and distinct content.
pub fn body(m: usize) -> Vec<u8> {
    format!("Message-ID: <m{m}@sim>\nSubject: {m}\n\nbody {m}\n").into_bytes()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Agent {
    msg: usize,
    m: Mta,
    env: SimEnv,
    file: Option<SimFile>,
    stream: Option<SimDir>,
    inner: Option<SimDir>,
    outcome: Option<MtaOutcome>,
    /// Between the two steps of an append that is not atomic: the file's size it saw.
    append_at: Option<usize>,
}

#[derive(Clone, Debug)]
struct World {
    fs: SimFs,
    agents: Vec<Agent>,
    reader_moves: u8,
    atomic_appends: bool,
}

impl World {
    fn hash64(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.fs.hash(&mut h);
        self.agents.hash(&mut h);
        self.reader_moves.hash(&mut h);
        h.finish()
    }

    /// Agents that can take a step; the reader is the last index.
    fn enabled(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].outcome.is_none())
            .collect();
        if self.reader_moves > 0 && self.fs.names(Dir::New).next().is_some() {
            v.push(self.agents.len());
        }
        v
    }

    /// Steps agent `a` (the reader: the last index), the filesystem's nondeterministic
    /// answers (on NFS, whether a link's reply was lost) forced by `choices`, missing ones 0.
    /// Returns the choices made, as `(options, taken)`.
    fn step(&mut self, a: usize, choices: &[u32]) -> Vec<(u32, u32)> {
        self.fs.chooser.reset(choices);
        if a == self.agents.len() {
            self.reader_step();
        } else {
            let agent = &mut self.agents[a];
            self.fs.agent = a as u8;
            self.fs.now = agent.env.secs();
            step_agent(&mut self.fs, agent, self.atomic_appends);
        }
        let made = std::mem::take(&mut self.fs.chooser.made);
        self.fs.chooser.reset(&[]);
        made
    }

    /// The reader renames the first message of new/ into cur/ with the seen flag (a plain
    /// rename, as most mail readers do).
    fn reader_step(&mut self) {
        self.fs.agent = 200;
        let Some(name) = self.fs.names(Dir::New).next().map(|(n, _)| n.to_string()) else {
            return;
        };
        let _ = self
            .fs
            .rename((Dir::New, &name), (Dir::Cur, &format!("{name}:2,S")), false);
        self.reader_moves -= 1;
    }
}

/// One operation of an agent's machine. An append that is not `atomic` takes two calls: the
/// first sees the file's size, the second writes there.
fn step_agent(fs: &mut SimFs, agent: &mut Agent, atomic: bool) {
    if let (false, Step::Op(Op::Append { dir, name, .. })) = (atomic, agent.m.poll()) {
        match agent.append_at.take() {
            Some(at) => fs.append_at = Some(at),
            None => {
                if let Some(size) = fs.contents(dir, name).map(<[u8]>::len) {
                    agent.append_at = Some(size);
                    return;
                }
            }
        }
    }
    let body = body(agent.msg);
    let mut slots = Slots {
        file: agent.file.take(),
        stream: agent.stream.take(),
        inner: agent.inner.take(),
    };
    let mut buf = [0u8; 8192];
    let (r, n) = match agent.m.poll() {
        Step::Done(o) => {
            agent.outcome = Some(o);
            return;
        }
        Step::Op(Op::WriteMessage) => {
            // The machine sees the bytes as they stream (its duplicate key).
            agent.m.observe(&body);
            perform(
                fs,
                &mut agent.env,
                &mut slots,
                Op::WriteMessage,
                &mut &body[..],
                &mut buf,
            )
        }
        Step::Op(op) => perform(fs, &mut agent.env, &mut slots, op, &mut &b""[..], &mut buf),
    };
    agent.m.feed(r, &buf[..n], &mut agent.env);
    agent.file = slots.file;
    agent.stream = slots.stream;
    agent.inner = slots.inner;
    if let Step::Done(o) = agent.m.poll() {
        agent.outcome = Some(o);
    }
}

/// Runs a fresh delivery of `msg` to completion at time `secs`.
fn deliver_now(fs: &mut SimFs, cfg: &MtaScenario, msg: usize, id: u8, secs: u64) -> MtaOutcome {
    let mut env = SimEnv::unique(id, 11);
    env.micros = secs * 1_000_000;
    let (opts, caps) = cfg.options(fs.capabilities());
    let m = Mta::new(opts, caps, &mut env);
    let mut a = Agent::new(msg, m, env);
    for _ in 0..10_000 {
        fs.agent = id;
        fs.now = a.env.secs();
        step_agent(fs, &mut a, true);
        if let Some(o) = a.outcome.take() {
            return o;
        }
    }
    panic!("a delivery did not finish in 10000 steps");
}

/// A broken invariant; its schedule replays with [`replay`].
pub type MtaViolation = super::Violation;

/// What an exploration covered and found.
#[derive(Clone, Debug, Default)]
pub struct MtaReport {
    /// Maximal schedules completed (one cut at a state already explored is not counted).
    pub executions: u64,
    /// Distinct states.
    pub states: u64,
    /// Crash images recovered from and checked.
    pub crash_states: u64,
    /// Violations, the shortest schedule first.
    pub violations: Vec<MtaViolation>,
}

/// One step of a schedule: the agent, and the filesystem's answers in that step.
type Stepped = (u8, Vec<u32>);

/// The schedule's printed form: `mta1:<steps, comma-separated>;crash=<spec or ->`, each step
/// as [`write_step`] prints it.
fn schedule(path: &[Stepped], crash: Option<u64>) -> String {
    let steps: Vec<String> = path
        .iter()
        .map(|(a, c)| {
            let mut s = String::new();
            let _ = write_step(&mut s, *a, c);
            s
        })
        .collect();
    let c = crash.map_or("-".to_string(), |c| c.to_string());
    format!("mta1:{};crash={c}", steps.join(","))
}

/// Checks the recovery from `fs` (after a crash, or at the end): retries, then invariants.
fn recover(cfg: &MtaScenario, mut fs: SimFs, agents: &[Agent]) -> Option<(Invariant, String)> {
    if let Some(e) = fs.events.first() {
        return Some((
            Invariant::from_number(e.invariant).unwrap_or(Invariant::Confinement),
            e.what.clone(),
        ));
    }
    // Past every lease and clock margin of the attempts that died.
    let later = agents.iter().map(|a| a.env.secs()).max().unwrap_or(0) + 3_600;
    let mut unacked = 0;
    for (i, a) in agents.iter().enumerate() {
        if matches!(a.outcome, Some(Ok(_))) {
            continue;
        }
        unacked += 1;
        if let Err(e) = deliver_now(&mut fs, cfg, a.msg, 50 + i as u8, later) {
            return Some((
                Invariant::NoBlockingGarbage,
                format!("the MTA's retry of m{} (D{i}) failed: {e}", a.msg),
            ));
        }
    }
    // Exactly once, and complete.
    let mut stored_bytes = 0u64;
    let mut stored_count = 0u64;
    let mut copies = std::collections::BTreeMap::<usize, u32>::new();
    for d in [Dir::New, Dir::Cur] {
        let names: Vec<(String, u64)> = fs.names(d).map(|(n, i)| (n.to_string(), i)).collect();
        for (name, ino) in names {
            let data = &fs.inodes[&ino].data;
            let sha: [u8; 32] = Sha256::digest(data).into();
            let Some(m) = cfg
                .messages
                .iter()
                .copied()
                .find(|&m| <[u8; 32]>::from(Sha256::digest(body(m))) == sha)
            else {
                return Some((
                    Invariant::NoPartial,
                    format!(
                        "{}/{name} holds {} bytes that are no message",
                        d.as_str(),
                        data.len()
                    ),
                ));
            };
            *copies.entry(m).or_default() += 1;
            stored_bytes += data.len() as u64;
            stored_count += 1;
        }
    }
    for &m in &cfg.messages {
        let n = copies.get(&m).copied().unwrap_or(0);
        // Without the index a crash between the publish and the MTA hearing of it makes the
        // retry store a second copy (what `--dedup` is for): then at least once, and at most
        // once per attempt the MTA did not hear of.
        let attempts = agents
            .iter()
            .filter(|a| a.msg == m && !matches!(a.outcome, Some(Ok(_))))
            .count() as u32;
        let most = if cfg.dedup { 1 } else { 1 + attempts };
        if n == 0 || n > most {
            return Some((
                Invariant::ExactlyOnce,
                format!("m{m} is stored {n} times after recovery"),
            ));
        }
    }
    if cfg.quota {
        let Some(data) = fs.contents(Dir::Root, MAILDIRSIZE) else {
            return Some((Invariant::QuotaAgrees, "maildirsize is gone".into()));
        };
        let f = parse_maildirsize(data);
        let (bytes, count) = (f.usage.bytes, f.usage.count);
        let max = cfg
            .messages
            .iter()
            .map(|&m| body(m).len() as u64)
            .max()
            .unwrap_or(0);
        let slack = unacked as u64;
        let under = bytes < stored_bytes || count < stored_count;
        let over = count > stored_count + slack || bytes > stored_bytes + slack * max;
        if under || over {
            return Some((
                Invariant::QuotaAgrees,
                format!(
                    "maildirsize counts {bytes} bytes in {count} messages; {stored_bytes} bytes \
                     in {stored_count} are stored ({unacked} unacknowledged attempts)"
                ),
            ));
        }
    }
    // A later delivery is not blocked by anything left behind.
    let fresh = 1000;
    if let Err(e) = deliver_now(&mut fs, cfg, fresh, 99, later + 10) {
        return Some((
            Invariant::NoBlockingGarbage,
            format!("a later delivery of another message failed: {e}"),
        ));
    }
    None
}

/// Explores `cfg` exhaustively (see the module documentation).
pub fn explore(cfg: &MtaScenario) -> MtaReport {
    let mut report = MtaReport::default();
    let mut seen = HashSet::new();
    let mut stack = vec![(cfg.initial(), Vec::<Stepped>::new())];
    while let Some((w, path)) = stack.pop() {
        if !seen.insert(w.hash64()) {
            continue;
        }
        report.states += 1;
        if cfg.crashes {
            for spec in w.fs.reboot_specs() {
                report.crash_states += 1;
                // What the MTA heard before the crash stands; the rest is retried.
                if let Some((i, what)) = recover(cfg, w.fs.reboot(spec), &w.agents) {
                    report.violations.push(MtaViolation {
                        invariant: i,
                        what: format!("after a crash: {what}"),
                        schedule: schedule(&path, Some(spec)),
                    });
                }
            }
        }
        let enabled = w.enabled();
        if enabled.is_empty() {
            report.executions += 1;
            if let Some((i, what)) = recover(cfg, w.fs.clone(), &w.agents) {
                report.violations.push(MtaViolation {
                    invariant: i,
                    what,
                    schedule: schedule(&path, None),
                });
            }
            continue;
        }
        for a in enabled.into_iter().rev() {
            // Every answer the filesystem may give in this step: the choices made, then the
            // next alternative of the last one that has one.
            let mut forced = Vec::new();
            loop {
                let mut next = w.clone();
                let made = next.step(a, &forced);
                let mut p = path.clone();
                p.push((a as u8, made.iter().map(|m| m.1).collect()));
                stack.push((next, p));
                match Chooser::next_script(&made) {
                    Some(next) => forced = next,
                    None => break,
                }
            }
        }
    }
    report
        .violations
        .sort_by_key(|v| (v.schedule.len(), v.schedule.clone()));
    report
}

/// Replays a printed schedule: the agents stepped in order, then the crash (or the end) and
/// the recovery. The violation it shows, if any.
pub fn replay(cfg: &MtaScenario, schedule: &str) -> Option<(Invariant, String)> {
    let rest = schedule.strip_prefix("mta1:").expect("an mta1 schedule");
    let (steps, crash) = rest.split_once(";crash=").expect("a crash part");
    let mut w = cfg.initial();
    for s in steps.split(',').filter(|s| !s.is_empty()) {
        let (a, choices) = parse_step(s).expect("a step");
        let a = usize::from(a);
        assert!(w.enabled().contains(&a), "agent {a} cannot step here");
        let made = w.step(a, &choices);
        assert!(
            made.len() >= choices.len(),
            "step {s}: fewer choices than forced"
        );
    }
    match crash {
        "-" => recover(cfg, w.fs.clone(), &w.agents),
        spec => recover(
            cfg,
            w.fs.reboot(spec.parse().expect("a crash spec")),
            &w.agents,
        ),
    }
}

/// The key the duplicate index files message `m` under (its Message-ID).
pub fn key_of(m: usize) -> Key {
    Key::from_message_id(format!("<m{m}@sim>").as_bytes())
}

/// The scenarios of the races table and the tests: two deliverers of the same message and
/// of different ones, each with the index, the quota and both, then both with a renaming
/// reader.
pub fn scenarios() -> Vec<MtaScenario> {
    let mut v = Vec::new();
    for (dedup, quota, what) in [
        (true, false, "dedup"),
        (false, true, "quota"),
        (true, true, "dedup+quota"),
    ] {
        // Without the index, the same message delivered twice is stored twice, as asked.
        if dedup {
            v.push(MtaScenario::new(
                &format!("mta {what}, same message x2"),
                vec![0, 0],
                dedup,
                quota,
            ));
        }
        v.push(MtaScenario::new(
            &format!("mta {what}, two messages"),
            vec![0, 1],
            dedup,
            quota,
        ));
    }
    let mut r = MtaScenario::new(
        "mta dedup+quota, two messages, renaming reader",
        vec![0, 1],
        true,
        true,
    );
    r.reader = true;
    v.push(r);
    // ext4: the reservation, the intent and the accounting written back, not flushed, and
    // made durable by the publish's one directory flush.
    //
    // NFS: a link's reply lost (an error, or `EEXIST` from the retransmission) after the
    // server made it, every answer explored; no `O_TMPFILE` or rename-noreplace; so the
    // drivers' choice is the `Locked` delivery. Appends are not atomic (two hosts' appends can
    // overwrite each other), as on NFS. The exclusive create stays atomic, as NFSv3's
    // is (the duplicate index assumes it; the bare-delivery rows explore NFSv2's). P1: an NFS
    // server commits a directory operation before it replies and file data on `COMMIT` (the
    // flush), so every crash image it can leave is one of P1's.
    for (what, messages) in [
        ("same message x2", vec![0, 0]),
        ("two messages", vec![0, 1]),
    ] {
        let row = |on: &str| {
            MtaScenario::new(
                &format!("mta dedup+quota, {what}, {on}"),
                messages.clone(),
                true,
                true,
            )
        };
        let mut o = row("ordered commit (write-back)");
        o.caps = Capabilities {
            ordered_commit: true,
            ..Capabilities::LINUX_LOCAL
        };
        v.extend([o, row("NFS (Locked)").on_nfs()]);
    }
    v.push(two_retries_after_a_dead_holder());
    v.push(two_hosts_after_a_dead_holder_on_nfs());
    v
}

/// Two deliverers of one message start together after another deliverer of it died holding
/// its reservation (and, with the `Locked` delivery, the maildir's lock): both find the
/// entry's holder out of its lease, and both may take it over.
pub fn two_retries_after_a_dead_holder() -> MtaScenario {
    let mut c = MtaScenario::new(
        "mta dedup, same message x2 after a dead holder",
        vec![0, 0],
        true,
        false,
    );
    c.stale_holder = true;
    c
}

/// [`two_retries_after_a_dead_holder`] on the NFS model with the `Locked` delivery, and
/// appends that are not atomic, as NFS makes them (P1). Both deliverers find the dead
/// holder's lock stale; only the one that claims it first breaks it, so the takeover of the
/// index entry happens under the lock, one deliverer at a time.
pub fn two_hosts_after_a_dead_holder_on_nfs() -> MtaScenario {
    let mut c = two_retries_after_a_dead_holder().on_nfs();
    c.name = "mta dedup, same message x2 after a dead holder, NFS (Locked), torn appends".into();
    c
}
