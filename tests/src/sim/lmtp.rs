//! The LMTP server's group commit under the simulator: two sessions whose recipients are
//! delivered into one shared maildir by the composed MTA machine ([`Mta`], as the server runs
//! it), every flush a delivery asks for handed to a committer that runs what the core's
//! [`plan`] decides for the batch waiting at that moment (one whole-filesystem flush, or the
//! per-file flushes), and each session's replies sent in `RCPT` order as soon as
//! [`sendable`] allows. Every interleaving of the deliveries and the committer is explored,
//! and at every state reached a crash in every way the persistence model allows, followed by
//! what the MTA does next: it retries every recipient it got no `250` for, then delivers
//! another message.
//!
//! Checked after the recovery: every recipient acknowledged before the crash is stored
//! ([`Invariant::NoLoss`]) exactly once, and with the duplicate index the retries keep every
//! recipient at exactly once ([`Invariant::ExactlyOnce`]; without it a retried recipient may
//! be stored twice, never zero times); nothing stored is a partial message
//! ([`Invariant::NoPartial`]); nothing left behind blocks the retries or a later delivery
//! ([`Invariant::NoBlockingGarbage`]).
//!
//! Each recipient's copy is its own message ([`body`] of its delivery number): in the server
//! the per-recipient `Delivered-To:` makes the bytes differ, and the duplicate index of one
//! maildir shared by two addresses would rightly keep one copy of one message; sharing the
//! maildir here is about sharing the flushes.

use crate::sim::env::SimEnv;
use crate::sim::fs::{Persistence, Semantics, SimDir, SimFile, SimFs};
use crate::sim::mta::body;
use crate::sim::Invariant;
use mdeliver_core::fs::{perform, Capabilities, Dir, Fs, Op, OpResult, Slots};
use mdeliver_core::lmtp::commit::{answered, plan, sendable, Flush, Need, Platform, Request};
use mdeliver_core::lmtp::link::{Digest32, Link, Linked};
use mdeliver_core::machine::dedup::DedupOptions;
use mdeliver_core::machine::deliver::{Durability, Options};
use mdeliver_core::machine::mta::{Accepted, Mta, MtaOptions, MtaOutcome, Order};
use mdeliver_core::machine::{Machine, Step};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// A scenario of LMTP sessions sharing one maildir and one committer.
#[derive(Clone, Debug)]
pub struct LmtpScenario {
    /// Name for reports.
    pub name: String,
    /// Each session's recipients in `RCPT` order, as delivery numbers (distinct, but with
    /// [`LmtpScenario::links`] one number: identical copies).
    pub sessions: Vec<Vec<usize>>,
    /// With the duplicate index (`--dedup`).
    pub dedup: bool,
    /// What the committer may use: with `filesystem_flush_reports_errors`, one whole-
    /// filesystem flush per batch of two or more.
    pub platform: Platform,
    /// Persistence model of crash images.
    pub persistence: Persistence,
    /// What the filesystem offers: local Linux, or with ext4's ordered commits (files and
    /// the index's records written back, only names flushed).
    pub caps: Capabilities,
    /// A deliberately broken committer that answers directory flushes without flushing, to
    /// show that the checks catch a reply sent before its name is durable.
    pub broken_names: bool,
    /// Identical copies (`--delivered-to none`): each session's first recipient is delivered
    /// alone, then the others side by side through the core's [`Linked`], as links to its
    /// file where their bytes are identical. (Give the recipients one delivery number.)
    pub links: bool,
    /// A deliberately broken server that offers the first copy's file for links as soon as
    /// it asks for its data flush, before that flush: the checks must catch a link visible
    /// before the data it names is durable.
    pub broken_link: bool,
}

impl LmtpScenario {
    /// Sessions of `sessions`, P2.
    pub fn new(name: &str, sessions: Vec<Vec<usize>>, dedup: bool, syncfs: bool) -> Self {
        LmtpScenario {
            name: name.into(),
            sessions,
            dedup,
            platform: Platform {
                filesystem_flush_reports_errors: syncfs,
            },
            persistence: Persistence::P2,
            caps: Capabilities::LINUX_LOCAL,
            broken_names: false,
            links: false,
            broken_link: false,
        }
    }

    /// One session of three recipients of one message whose copies are identical
    /// (`--delivered-to none`): the later two linked to the first one's file.
    pub fn linking(name: &str, dedup: bool, syncfs: bool) -> Self {
        LmtpScenario {
            links: true,
            ..LmtpScenario::new(name, vec![vec![0, 0, 0]], dedup, syncfs)
        }
    }

    fn options(&self) -> MtaOptions {
        MtaOptions {
            delivery: Options {
                durability: Durability::Full,
                ..Options::default()
            },
            quota: None,
            dedup: self.dedup.then_some(DedupOptions {
                poll_ms: 1_000,
                wait_ms: 2_000,
                gc_every: 0,
                ..DedupOptions::default()
            }),
            key: None,
            order: Order::AccountFirst,
        }
    }

    fn deliveries(&self) -> Vec<usize> {
        self.sessions.iter().flatten().copied().collect()
    }

    /// The index of each session's first delivery.
    fn firsts(&self) -> Vec<usize> {
        let mut at = 0;
        self.sessions
            .iter()
            .map(|s| {
                at += s.len();
                at - s.len()
            })
            .collect()
    }

    fn initial(&self) -> World {
        let fs = SimFs::new(Semantics::Posix, self.caps, self.persistence);
        let opts = self.options();
        let agents = self
            .deliveries()
            .into_iter()
            .enumerate()
            .map(|(i, msg)| {
                let mut env = SimEnv::unique(i as u8, 7);
                let m = Mta::new(opts, fs.capabilities(), &mut env);
                Agent {
                    msg,
                    m,
                    env,
                    file: None,
                    stream: None,
                    inner: None,
                    waiting: None,
                    outcome: None,
                    link: Link::record(),
                }
            })
            .collect();
        let firsts = self.firsts();
        World {
            fs,
            agents,
            sources: vec![None; firsts.len()],
            firsts,
        }
    }
}

/// What a delivery waits for from the committer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Wait {
    /// Its file's data (`SyncFile`).
    Data,
    /// A directory's entries (`SyncDir`).
    Names(Dir),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Agent {
    msg: usize,
    m: Mta,
    env: SimEnv,
    file: Option<SimFile>,
    stream: Option<SimDir>,
    /// The folder listing opened inside `stream`, if any.
    inner: Option<SimDir>,
    waiting: Option<Wait>,
    outcome: Option<MtaOutcome>,
    /// The bytes it writes (the first copy's), or whether it is identical to its source.
    link: Link,
}

#[derive(Clone, Debug)]
struct World {
    fs: SimFs,
    agents: Vec<Agent>,
    /// Each session's first delivery.
    firsts: Vec<usize>,
    /// Each session's first copy once offered for links: its file and bytes.
    sources: Vec<Option<(SimFile, Digest32)>>,
}

/// The one filesystem of the scenario.
const FS: u64 = 1;

fn dir_number(d: Dir) -> u64 {
    match d {
        Dir::Root => 0,
        Dir::Tmp => 1,
        Dir::New => 2,
        Dir::Cur => 3,
        Dir::Top => 4,
    }
}

/// `syncfs`: every file's data and every directory operation made durable.
fn sync_filesystem(fs: &mut SimFs) {
    for inode in fs.inodes.values_mut() {
        inode.synced = inode.data.clone();
    }
    for d in [Dir::Root, Dir::Tmp, Dir::New, Dir::Cur, Dir::Top] {
        let _ = fs.sync_dir(d);
    }
}

impl World {
    fn hash64(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.fs.hash(&mut h);
        self.agents.hash(&mut h);
        self.sources.hash(&mut h);
        h.finish()
    }

    /// The session of delivery `i`.
    fn session(&self, i: usize) -> usize {
        self.firsts.iter().rposition(|&f| f <= i).unwrap_or(0)
    }

    /// Whether delivery `i` may start: with links, a session's later recipients wait for its
    /// first one to end (or, broken, to offer its file early).
    fn may_run(&self, i: usize, cfg: &LmtpScenario) -> bool {
        let s = self.session(i);
        let first = self.firsts[s];
        !cfg.links
            || i == first
            || self.agents[first].outcome.is_some()
            || self.sources[s].is_some()
    }

    /// The first copy of each session, offered for links once its delivery stored it (or,
    /// broken, once it asks for its data flush).
    fn offer(&mut self, cfg: &LmtpScenario) {
        for (s, &first) in self.firsts.iter().enumerate() {
            let a = &self.agents[first];
            if !cfg.links || self.sources[s].is_some() {
                continue;
            }
            self.sources[s] = match (&a.outcome, a.waiting, &a.file) {
                (Some(Ok(Accepted::Stored { delivered: d, .. })), _, _) => {
                    let ino = self.fs.entries.get(&(d.dir, d.name.as_str().to_string()));
                    ino.zip(a.link.stored())
                        .map(|(&ino, digest)| (SimFile { ino }, digest))
                }
                (None, Some(Wait::Data), Some(f)) if cfg.broken_link => {
                    Some((f.clone(), a.link.digest()))
                }
                _ => None,
            };
        }
    }

    /// Deliveries that can step; the committer is the last index.
    fn enabled(&self, cfg: &LmtpScenario) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].outcome.is_none() && self.agents[i].waiting.is_none())
            .filter(|&i| self.may_run(i, cfg))
            .collect();
        if self.agents.iter().any(|a| a.waiting.is_some()) {
            v.push(self.agents.len());
        }
        v
    }

    fn step(&mut self, a: usize, cfg: &LmtpScenario) {
        if a == self.agents.len() {
            return self.commit(cfg);
        }
        let source = match self.sources[self.session(a)].clone() {
            Some(src)
                if self.agents[a].link == Link::record() && self.firsts[self.session(a)] != a =>
            {
                self.agents[a].link = Link::follow(src.1);
                Some(src.0)
            }
            Some(src) if self.firsts[self.session(a)] != a => Some(src.0),
            _ => None,
        };
        let agent = &mut self.agents[a];
        self.fs.agent = a as u8;
        self.fs.now = agent.env.secs();
        step_agent(&mut self.fs, agent, true, source.as_ref());
        self.offer(cfg);
    }

    /// The committer: every flush waiting now is one batch, run as the core plans it; then
    /// each waiting delivery is told its result.
    fn commit(&mut self, cfg: &LmtpScenario) {
        self.fs.agent = 100;
        let waiting: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].waiting.is_some())
            .collect();
        let batch: Vec<Request> = waiting
            .iter()
            .map(|&i| match self.agents[i].waiting {
                Some(Wait::Names(d)) => Request {
                    need: Need::Names,
                    fs: FS,
                    dir: dir_number(d),
                },
                _ => Request {
                    need: Need::Data,
                    fs: FS,
                    dir: 0,
                },
            })
            .collect();
        let mut flushes = vec![Flush::Data(0); batch.len()];
        let n = plan(&batch, cfg.platform, &mut flushes);
        flushes.truncate(n);
        let mut ok = Vec::new();
        for f in &flushes {
            let r = match *f {
                Flush::Filesystem(_) => {
                    sync_filesystem(&mut self.fs);
                    Ok(())
                }
                Flush::Data(i) => {
                    let agent = &mut self.agents[waiting[i]];
                    match agent.file.as_mut() {
                        Some(file) => self.fs.sync_file(file),
                        None => Err(mdeliver_core::ErrorKind::Io),
                    }
                }
                Flush::Names(_) if cfg.broken_names => Ok(()),
                Flush::Names(i) => self.fs.sync_dir(match self.agents[waiting[i]].waiting {
                    Some(Wait::Names(d)) => d,
                    _ => Dir::New,
                }),
            };
            ok.push(r.is_ok());
        }
        for (k, &i) in waiting.iter().enumerate() {
            let result = if answered(&batch, &flushes, &ok, k) {
                OpResult::Done
            } else {
                OpResult::Err(mdeliver_core::ErrorKind::Io)
            };
            let agent = &mut self.agents[i];
            agent.waiting = None;
            agent.m.feed(result, &[], &mut agent.env);
            if let Step::Done(o) = agent.m.poll() {
                agent.outcome = Some(o);
            }
        }
        self.offer(cfg);
    }

    /// The deliveries whose `250` the sessions have sent: each session's replies go in
    /// `RCPT` order, each once it and all before it are known.
    fn acknowledged(&self, cfg: &LmtpScenario) -> Vec<bool> {
        let mut acked = vec![false; self.agents.len()];
        let mut first = 0;
        for s in &cfg.sessions {
            let done: Vec<bool> = (first..first + s.len())
                .map(|i| self.agents[i].outcome.is_some())
                .collect();
            let sent = sendable(&done, 0);
            for (a, k) in self.agents[first..first + sent]
                .iter()
                .zip(&mut acked[first..first + sent])
            {
                *k = matches!(a.outcome, Some(Ok(_)));
            }
            first += s.len();
        }
        acked
    }
}

/// One operation of a delivery's machine, through the core's [`Linked`] (linking to `source`,
/// where it has one); with `group`, a flush it asks for waits for the committer instead of
/// running, unless the copy is identical to its source (whose data is durable).
fn step_agent(fs: &mut SimFs, agent: &mut Agent, group: bool, source: Option<&SimFile>) {
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
            agent.file = slots.file;
            agent.stream = slots.stream;
            agent.inner = slots.inner;
            return;
        }
        Step::Op(Op::SyncFile)
            if group
                && !(source.is_some()
                    && agent
                        .link
                        .identical(slots.file.as_ref().and_then(|f| fs.file_id(f)))) =>
        {
            agent.waiting = Some(Wait::Data);
            agent.file = slots.file;
            agent.stream = slots.stream;
            agent.inner = slots.inner;
            return;
        }
        Step::Op(Op::SyncDir { dir }) if group => {
            agent.waiting = Some(Wait::Names(dir));
            agent.file = slots.file;
            agent.stream = slots.stream;
            agent.inner = slots.inner;
            return;
        }
        Step::Op(Op::WriteMessage) => {
            agent.m.observe(&body);
            let link = &mut agent.link;
            let mut fs = Linked { fs, link, source };
            let op = Op::WriteMessage;
            perform(
                &mut fs,
                &mut agent.env,
                &mut slots,
                op,
                &mut &body[..],
                &mut buf,
            )
        }
        Step::Op(op) => {
            let link = &mut agent.link;
            let mut fs = Linked { fs, link, source };
            perform(
                &mut fs,
                &mut agent.env,
                &mut slots,
                op,
                &mut &b""[..],
                &mut buf,
            )
        }
    };
    agent.m.feed(r, &buf[..n], &mut agent.env);
    agent.file = slots.file;
    agent.stream = slots.stream;
    agent.inner = slots.inner;
    if let Step::Done(o) = agent.m.poll() {
        agent.outcome = Some(o);
    }
}

/// The MTA's retry (or a later delivery) of `msg`, alone, to completion at time `secs`.
fn deliver_now(fs: &mut SimFs, opts: MtaOptions, msg: usize, id: u8, secs: u64) -> MtaOutcome {
    let mut env = SimEnv::unique(id, 11);
    env.micros = secs * 1_000_000;
    let m = Mta::new(opts, fs.capabilities(), &mut env);
    let mut a = Agent {
        msg,
        m,
        env,
        file: None,
        stream: None,
        inner: None,
        waiting: None,
        outcome: None,
        link: Link::record(),
    };
    for _ in 0..10_000 {
        fs.agent = id;
        fs.now = a.env.secs();
        step_agent(fs, &mut a, false, None);
        if let Some(o) = a.outcome.take() {
            return o;
        }
    }
    panic!("a delivery did not finish in 10000 steps");
}

/// A broken invariant; its schedule is the agents stepped (the committer is the number after
/// the last delivery) and the crash spec (`-` for none).
pub type LmtpViolation = super::Violation;

/// What an exploration covered and found.
#[derive(Clone, Debug, Default)]
pub struct LmtpReport {
    /// Maximal schedules completed (one cut at a state already explored is not counted).
    pub executions: u64,
    /// Distinct states.
    pub states: u64,
    /// Crash images recovered from and checked.
    pub crash_states: u64,
    /// Committer batches run over the whole search.
    pub batches: u64,
    /// The largest batch seen (flush requests).
    pub largest_batch: usize,
    /// The most copies stored as links to a first copy in one execution.
    pub links: usize,
    /// Violations, the shortest schedule first.
    pub violations: Vec<LmtpViolation>,
}

fn schedule(path: &[usize], crash: Option<u64>) -> String {
    let steps: Vec<String> = path.iter().map(|a| a.to_string()).collect();
    let c = crash.map_or("-".to_string(), |c| c.to_string());
    format!("lmtp1:{};crash={c}", steps.join(","))
}

/// Checks the recovery from `fs` (after a crash, or at the end) given what the MTA was told.
fn recover(
    cfg: &LmtpScenario,
    mut fs: SimFs,
    agents: &[Agent],
    acked: &[bool],
) -> Option<(Invariant, String)> {
    if let Some(e) = fs.events.first() {
        return Some((
            Invariant::from_number(e.invariant).unwrap_or(Invariant::Confinement),
            e.what.clone(),
        ));
    }
    let opts = cfg.options();
    let later = agents.iter().map(|a| a.env.secs()).max().unwrap_or(0) + 3_600;
    let count = |fs: &SimFs| -> Result<std::collections::BTreeMap<usize, u32>, String> {
        let mut copies = std::collections::BTreeMap::new();
        for d in [Dir::New, Dir::Cur] {
            for (name, ino) in fs.names(d) {
                let data = &fs.inodes[&ino].data;
                let sha: [u8; 32] = Sha256::digest(data).into();
                let m = (0..=1000)
                    .find(|&m| <[u8; 32]>::from(Sha256::digest(body(m))) == sha)
                    .ok_or_else(|| {
                        format!(
                            "{}/{name} holds {} bytes that are no message",
                            d.as_str(),
                            data.len()
                        )
                    })?;
                *copies.entry(m).or_insert(0) += 1;
            }
        }
        Ok(copies)
    };
    // Per message: its recipients acknowledged, its recipients, and the most copies the
    // retries may leave (without the index, a crash between the publish and the 250 makes
    // the retry store a second copy: what `--dedup` is for). With the index, the one maildir
    // keeps one copy of one message, however many recipients it has.
    let mut per = std::collections::BTreeMap::<usize, (u32, u32, u32)>::new();
    for (a, &k) in agents.iter().zip(acked) {
        let e = per.entry(a.msg).or_default();
        *e = (
            e.0 + u32::from(k),
            e.1 + 1,
            e.2 + if cfg.dedup || k { 1 } else { 2 },
        );
    }
    // What the crash left: every acknowledged recipient is there, once.
    let before = match count(&fs) {
        Ok(c) => c,
        Err(what) => return Some((Invariant::NoPartial, what)),
    };
    for (m, &(k, r, _)) in &per {
        let n = before.get(m).copied().unwrap_or(0);
        let (least, most) = if cfg.dedup { (k.min(1), 1) } else { (k, r) };
        if n < least || n > most {
            return Some((
                if n < least {
                    Invariant::NoLoss
                } else {
                    Invariant::ExactlyOnce
                },
                format!("d{m}: {k} of its {r} recipients acknowledged with 250, stored {n} times"),
            ));
        }
    }
    // The MTA retries every recipient it has no 250 for.
    for (i, (a, _)) in agents
        .iter()
        .zip(acked)
        .enumerate()
        .filter(|(_, (_, k))| !**k)
    {
        if let Err(e) = deliver_now(&mut fs, opts, a.msg, 50 + i as u8, later) {
            return Some((
                Invariant::NoBlockingGarbage,
                format!("the MTA's retry of d{} failed: {e}", a.msg),
            ));
        }
    }
    let after = match count(&fs) {
        Ok(c) => c,
        Err(what) => return Some((Invariant::NoPartial, what)),
    };
    for (m, &(_, r, most)) in &per {
        let n = after.get(m).copied().unwrap_or(0);
        let (least, most) = if cfg.dedup { (1, 1) } else { (r, most) };
        if n < least || n > most {
            return Some((
                Invariant::ExactlyOnce,
                format!("d{m} ({r} recipients) is stored {n} times after the MTA's retries"),
            ));
        }
    }
    let fresh = 1000;
    if let Err(e) = deliver_now(&mut fs, opts, fresh, 99, later + 10) {
        return Some((
            Invariant::NoBlockingGarbage,
            format!("a later delivery of another message failed: {e}"),
        ));
    }
    None
}

/// Explores `cfg` exhaustively: every interleaving of the deliveries and the committer, a
/// crash in every way at every distinct state.
pub fn explore(cfg: &LmtpScenario) -> LmtpReport {
    let mut report = LmtpReport::default();
    let mut seen = HashSet::new();
    let mut stack = vec![(cfg.initial(), Vec::<usize>::new())];
    while let Some((w, path)) = stack.pop() {
        if !seen.insert(w.hash64()) {
            continue;
        }
        report.states += 1;
        let acked = w.acknowledged(cfg);
        for spec in w.fs.reboot_specs() {
            report.crash_states += 1;
            if let Some((i, what)) = recover(cfg, w.fs.reboot(spec), &w.agents, &acked) {
                report.violations.push(LmtpViolation {
                    invariant: i,
                    what: format!("after a crash: {what}"),
                    schedule: schedule(&path, Some(spec)),
                });
            }
        }
        let enabled = w.enabled(cfg);
        if enabled.is_empty() {
            report.executions += 1;
            let links = w.agents.iter().filter(|a| a.link.linked()).count();
            report.links = report.links.max(links);
            if let Some((i, what)) = recover(cfg, w.fs.clone(), &w.agents, &acked) {
                report.violations.push(LmtpViolation {
                    invariant: i,
                    what,
                    schedule: schedule(&path, None),
                });
            }
            continue;
        }
        let waiting = w.agents.iter().filter(|a| a.waiting.is_some()).count();
        for a in enabled.into_iter().rev() {
            let mut next = w.clone();
            next.step(a, cfg);
            if a == w.agents.len() {
                report.batches += 1;
                report.largest_batch = report.largest_batch.max(waiting);
            }
            let mut p = path.clone();
            p.push(a);
            stack.push((next, p));
        }
    }
    report
        .violations
        .sort_by_key(|v| (v.schedule.len(), v.schedule.clone()));
    report
}

/// The scenarios of the races table and the test: two sessions (two recipients and one)
/// into one maildir, with and without the duplicate index, with the whole-filesystem flush
/// and with the per-file flushes.
pub fn scenarios() -> Vec<LmtpScenario> {
    let mut v = Vec::new();
    for (syncfs, how) in [(true, "syncfs"), (false, "per-file")] {
        for (dedup, what) in [(true, "dedup"), (false, "no dedup")] {
            v.push(LmtpScenario::new(
                &format!("lmtp 2 sessions (2+1 rcpts), {how}, {what}"),
                vec![vec![0, 1], vec![2]],
                dedup,
                syncfs,
            ));
            v.push(LmtpScenario::linking(
                &format!("lmtp 3 rcpts of one message, identical copies linked, {how}, {what}"),
                dedup,
                syncfs,
            ));
        }
    }
    // ext4: every delivery asks the committer for its names alone.
    let ordered = Capabilities {
        ordered_commit: true,
        ..Capabilities::LINUX_LOCAL
    };
    for mut o in [
        LmtpScenario::new(
            "lmtp 2 sessions (1+1 rcpts), per-file, dedup, ordered commit (write-back)",
            vec![vec![0], vec![1]],
            true,
            false,
        ),
        LmtpScenario::new(
            "lmtp 2 sessions (2+1 rcpts), per-file, no dedup, ordered commit (write-back)",
            vec![vec![0, 1], vec![2]],
            false,
            false,
        ),
        LmtpScenario::linking(
            "lmtp 3 rcpts of one message, identical copies linked, per-file, no dedup, \
             ordered commit (write-back)",
            false,
            false,
        ),
    ] {
        o.caps = ordered;
        v.push(o);
    }
    v
}
