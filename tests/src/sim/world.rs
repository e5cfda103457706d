//! The simulated world: a maildir on a [`SimFs`] (behind a [`FaultFs`]), the agents acting on
//! it (deliverers running the core's `Delivery`, readers moving messages and changing flags,
//! listers), and the invariants ([`crate::sim::Invariant`], described in DESIGN.md) checked on
//! every state and every crash image.
//!
//! One [`World::step`] is one filesystem operation of one agent: the scheduling point.

use crate::sim::env::SimEnv;
use crate::sim::fs::{Image, Persistence, Semantics, SimDir, SimFile, SimFs};
use crate::wrap::{FaultFs, FaultPlan};
use mdeliver_core::fs::{perform, Capabilities, Dir, Fs, Op, OpResult, Persist, Slots};
use mdeliver_core::machine::deliver::{Delivery, Durability, Options, Outcome, Step, Strategy};
use mdeliver_core::machine::scan::{
    classify, KeySet, Mark, Move, MoveStep, Scan, ScanOptions, ScanStep,
};
use mdeliver_core::maildir::name::{InfoSep, ParsedName};
use mdeliver_core::{ErrorKind, Flags};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// How a reader renames.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReaderMode {
    /// A plain `rename` to the new name (replaces a target; gives up if the source is gone):
    /// what most mail readers do.
    Plain,
    /// The core's [`Move`]: rename-noreplace, found again by key if it moved.
    Core,
}

/// One agent of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AgentSpec {
    /// Delivers one fresh message with this strategy; `collide` gives it the environment every
    /// colliding deliverer shares (same time, pid, host, counter; entropy stuck).
    Deliver {
        /// Algorithm.
        strategy: Strategy,
        /// Force name collisions.
        collide: bool,
    },
    /// A reader: lists new/ once and moves what it sees to cur/ (flag `S`); with
    /// `flag_change`, then changes each moved message's flags again (adds `R`).
    Mover {
        /// How it renames.
        mode: ReaderMode,
        /// Also change flags after moving.
        flag_change: bool,
    },
    /// Changes the flags of every pre-existing message in cur/ once (adds `S`), by known name.
    Flagger {
        /// How it renames.
        mode: ReaderMode,
    },
    /// Lists new/ and cur/: with `naive`, one readdir pass each; otherwise the core's [`Scan`].
    Scanner {
        /// One pass only.
        naive: bool,
    },
}

/// A scenario.
#[derive(Clone, Debug)]
pub struct Config {
    /// Name for reports.
    pub name: String,
    /// Filesystem semantics.
    pub sem: Semantics,
    /// Capabilities of the local filesystem (selects the publish path).
    pub caps: Capabilities,
    /// Persistence model for crash images.
    pub persistence: Persistence,
    /// Agents.
    pub agents: Vec<AgentSpec>,
    /// Messages already in cur/ (durable) before the run.
    pub seeded: usize,
    /// Injected faults.
    pub faults: FaultPlan,
    /// Delivery sync policy.
    pub durability: Durability,
    /// Check crash images of every state.
    pub crashes: bool,
    /// Called with every final state an exhaustive search reaches (differential checks).
    pub on_final: Option<fn(&World)>,
    /// Seed for the agents' entropy.
    pub seed: u64,
}

impl Config {
    /// A scenario on local POSIX with everything Linux offers, P2, crashes checked.
    pub fn new(name: &str, agents: Vec<AgentSpec>) -> Config {
        Config {
            name: name.into(),
            sem: Semantics::Posix,
            caps: Capabilities::LINUX_LOCAL,
            persistence: Persistence::P2,
            agents,
            seeded: 0,
            faults: FaultPlan::default(),
            durability: Durability::Full,
            crashes: true,
            on_final: None,
            seed: 1,
        }
    }

    /// The initial world.
    pub fn build(&self) -> World {
        let mut fs = SimFs::new(self.sem, self.caps, self.persistence);
        let mut msgs = Vec::new();
        let mut seeded_names = Vec::new();
        for m in 0..self.seeded {
            let body = message_body(m);
            let name = format!("1600000000.M00000{m}P9Q{m}.seed,S={}:2,", body.len());
            fs.seed(Dir::Cur, &name, &body);
            seeded_names.push(name);
            msgs.push(Msg::new(body));
        }
        let caps = fs.capabilities();
        let mut agents = Vec::new();
        for (i, spec) in self.agents.iter().enumerate() {
            let id = i as u8;
            agents.push(match spec {
                AgentSpec::Deliver { strategy, collide } => {
                    let mut env = if *collide {
                        SimEnv::colliding()
                    } else {
                        SimEnv::unique(id, self.seed)
                    };
                    let opts = Options {
                        strategy: *strategy,
                        durability: self.durability,
                        lock_poll_ms: 1_000,
                        lock_timeout_ms: 3_000,
                        lock_stale_secs: 3_600,
                        ..Options::default()
                    };
                    let env0 = env.clone();
                    let machine = Delivery::new(opts, caps, &mut env);
                    let msg = msgs.len();
                    msgs.push(Msg::new(message_body(msg)));
                    Agent::Deliver(Deliverer {
                        msg,
                        machine,
                        env,
                        file: None,
                        lookup: None,
                        outcome: None,
                        history: (env0, Vec::new()),
                    })
                }
                AgentSpec::Mover { mode, flag_change } => Agent::Reader(Reader {
                    mode: *mode,
                    flag_change: *flag_change,
                    jobs: VecDeque::from([Job::List]),
                    active: None,
                }),
                AgentSpec::Flagger { mode } => Agent::Reader(Reader {
                    mode: *mode,
                    flag_change: false,
                    jobs: seeded_names
                        .iter()
                        .map(|n| Job::Move(Dir::Cur, n.clone(), "S"))
                        .collect(),
                    active: None,
                }),
                AgentSpec::Scanner { naive } => Agent::Scanner(Scanner {
                    naive: *naive,
                    scan: Scan::new(ScanOptions::default()),
                    keys: Keys::default(),
                    naive_dir: Some(Dir::New),
                    naive_seen: Vec::new(),
                    stream: None,
                    throughout: None,
                    finished: false,
                    verdict: None,
                }),
            });
        }
        World {
            fs: FaultFs::new(fs, self.faults.clone()),
            agents,
            msgs: Rc::new(msgs),
            trace: None,
        }
    }
}

/// The body of message number `m` (distinct for each, so sha256 identifies it).
pub fn message_body(m: usize) -> Vec<u8> {
    format!("From: sender{m}@example.org\nTo: user@example.org\nSubject: message {m}\n\nbody {m}\n")
        .into_bytes()
}

/// A message: contents and sha256.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Contents.
    pub body: Vec<u8>,
    /// sha256 of the contents.
    pub sha: [u8; 32],
}

impl Msg {
    fn new(body: Vec<u8>) -> Msg {
        let sha = Sha256::digest(&body).into();
        Msg { body, sha }
    }
}

/// A deliverer.
#[derive(Clone, Debug)]
pub struct Deliverer {
    /// The message it delivers.
    pub msg: usize,
    /// The core's machine.
    pub machine: Delivery,
    /// Its environment.
    pub env: SimEnv,
    file: Option<SimFile>,
    /// NFS exclusive create: the lookup's answer (absent?), between its two steps.
    lookup: Option<bool>,
    /// The outcome once finished.
    pub outcome: Option<Outcome>,
    /// The environment the machine started from and every result fed to it, in order: enough
    /// to replay this deliverer's machine elsewhere (the WASI module's, in the differential
    /// test). Not part of the state: two histories reaching the same machine are one state.
    pub history: (SimEnv, Vec<OpResult>),
}

/// What a deliverer's state is: everything but its history.
type DelivererState<'a> = (
    usize,
    &'a Delivery,
    &'a SimEnv,
    &'a Option<SimFile>,
    Option<bool>,
    &'a Option<Outcome>,
);

impl Deliverer {
    /// Its state, compared and hashed (the history is left out, see [`Deliverer::history`]).
    fn state(&self) -> DelivererState<'_> {
        (
            self.msg,
            &self.machine,
            &self.env,
            &self.file,
            self.lookup,
            &self.outcome,
        )
    }
}

impl PartialEq for Deliverer {
    fn eq(&self, o: &Self) -> bool {
        self.state() == o.state()
    }
}

impl Eq for Deliverer {}

impl Hash for Deliverer {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.state().hash(h);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Job {
    List,
    /// Move `dir/name` to cur/ adding these flags.
    Move(Dir, String, &'static str),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Active {
    List(SimDir),
    Core(Box<Move>, Option<SimDir>, &'static str),
}

/// A reader (mover or flag changer).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reader {
    mode: ReaderMode,
    flag_change: bool,
    jobs: VecDeque<Job>,
    active: Option<Active>,
}

/// The driver's key storage for the core scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Keys(BTreeMap<String, (Dir, String, u32)>);

impl KeySet for Keys {
    fn mark(&mut self, pass: u32, key: &str, dir: Dir, name: &str) -> Result<Mark, ErrorKind> {
        match self.0.get_mut(key) {
            Some(r) => {
                let m = classify(r.2, pass);
                if m != Mark::ThisPass {
                    *r = (dir, name.to_string(), pass);
                }
                Ok(m)
            }
            None => {
                self.0
                    .insert(key.to_string(), (dir, name.to_string(), pass));
                Ok(Mark::First)
            }
        }
    }
}

/// A lister.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scanner {
    naive: bool,
    scan: Scan,
    keys: Keys,
    naive_dir: Option<Dir>,
    naive_seen: Vec<String>,
    stream: Option<SimDir>,
    /// Keys present in new/ ∪ cur/ at every state since the scan started.
    throughout: Option<BTreeSet<String>>,
    finished: bool,
    /// The listing's failure of invariant 5, if any.
    verdict: Option<String>,
}

/// An agent.
// Worlds are cloned at every explored branch; boxing the deliverer would add an allocation
// per clone for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Agent {
    /// Deliverer.
    Deliver(Deliverer),
    /// Reader.
    Reader(Reader),
    /// Lister.
    Scanner(Scanner),
}

impl Agent {
    /// Whether it has nothing left to do.
    pub fn done(&self) -> bool {
        match self {
            Agent::Deliver(d) => d.outcome.is_some(),
            Agent::Reader(r) => r.jobs.is_empty() && r.active.is_none(),
            Agent::Scanner(s) => s.finished,
        }
    }

    fn tag(&self) -> char {
        match self {
            Agent::Deliver(_) => 'D',
            Agent::Reader(_) => 'R',
            Agent::Scanner(_) => 'L',
        }
    }
}

/// Messages with how their delivery was reported.
pub type Reported = Vec<(usize, String)>;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// Invariant number ([`crate::sim::Invariant`], 1–7 for bare deliveries and readers).
    pub invariant: u8,
    /// Which message and which file.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match crate::sim::Invariant::from_number(self.invariant) {
            Some(i) => write!(f, "{i}: {}", self.what),
            None => write!(f, "I{}: {}", self.invariant, self.what),
        }
    }
}

/// What an agent's next operation touches (for the explorer's independence relation).
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    dirs_r: u8,
    dirs_w: u8,
    ents_r: Vec<(Dir, String)>,
    ents_w: Vec<(Dir, String)>,
    inos: Vec<u64>,
}

fn bit(d: Dir) -> u8 {
    1 << (d as u8)
}

impl Footprint {
    fn read(&mut self, fs: &SimFs, d: Dir, n: &str) {
        self.ents_r.push((d, n.to_string()));
        self.inos.extend(fs.ino_of(d, n));
    }
    fn write(&mut self, fs: &SimFs, d: Dir, n: &str) {
        self.ents_w.push((d, n.to_string()));
        self.dirs_w |= bit(d);
        self.inos.extend(fs.ino_of(d, n));
    }

    /// Whether the two operations may not commute. Under P1 all directory operations are
    /// ordered by the journal, so any two of them are dependent.
    pub fn dependent(&self, o: &Footprint, p1: bool) -> bool {
        if self.dirs_w & (o.dirs_w | o.dirs_r) != 0 || self.dirs_r & o.dirs_w != 0 {
            return true;
        }
        if p1 && self.dirs_w != 0 && o.dirs_w != 0 {
            return true;
        }
        let hit = |a: &[(Dir, String)], b: &[(Dir, String)]| a.iter().any(|x| b.contains(x));
        hit(&self.ents_w, &o.ents_w)
            || hit(&self.ents_w, &o.ents_r)
            || hit(&self.ents_r, &o.ents_w)
            || self.inos.iter().any(|i| o.inos.contains(i))
    }
}

/// The world: filesystem, agents, messages.
#[derive(Clone, Debug)]
pub struct World {
    /// The filesystem (faults around the simulated fs).
    pub fs: FaultFs<SimFs>,
    /// The agents.
    pub agents: Vec<Agent>,
    /// Messages (index = message number).
    pub msgs: Rc<Vec<Msg>>,
    /// When set, every step appends a line.
    pub trace: Option<Vec<String>>,
}

impl Hash for World {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.fs.hash(h);
        self.agents.hash(h);
    }
}

fn op_result(r: Result<(), ErrorKind>) -> OpResult {
    match r {
        Ok(()) => OpResult::Done,
        Err(e) => OpResult::Err(e),
    }
}

fn path(d: Dir, n: &str) -> String {
    if d == Dir::Root {
        n.to_string()
    } else {
        format!("{}/{n}", d.as_str())
    }
}

fn show_op(op: &Op<'_>) -> String {
    match *op {
        Op::CreateExclusive { dir, name } => format!("create_excl({})", path(dir, name)),
        Op::CreateTruncate { dir, name } => format!("create_trunc({})", path(dir, name)),
        Op::CreateAnonymous { dir } => format!("create_anon({})", dir.as_str()),
        Op::WriteMessage => "write_message".into(),
        Op::SyncFile => "fsync(file)".into(),
        Op::WriteBack => "sync_file_range(file)".into(),
        Op::CloseFile => "close".into(),
        Op::LinkAnonymous { dir, name } => format!("linkat_anon({})", path(dir, name)),
        Op::Link { from, to } => format!("link({}, {})", path(from.0, from.1), path(to.0, to.1)),
        Op::Rename {
            from,
            to,
            noreplace,
        } => format!(
            "rename{}({}, {})",
            if noreplace { "_noreplace" } else { "" },
            path(from.0, from.1),
            path(to.0, to.1)
        ),
        Op::Unlink { dir, name } => format!("unlink({})", path(dir, name)),
        Op::Stat { dir, name } => format!("stat({})", path(dir, name)),
        Op::SyncDir { dir } => format!("fsync({}/)", dir.as_str()),
        Op::SyncAll => "syncfs".into(),
        Op::Write { data } => format!("write({:?})", String::from_utf8_lossy(data)),
        Op::Sleep { millis } => format!("sleep({millis}ms)"),
        Op::WriteFile {
            dir, name, data, ..
        } => format!("write_file({}, {} bytes)", path(dir, name), data.len()),
        Op::Append {
            dir,
            name,
            data,
            persist,
        } => format!(
            "append({}, {:?}{})",
            path(dir, name),
            String::from_utf8_lossy(data),
            match persist {
                Persist::Cache => "",
                Persist::WriteBack => ", sync_file_range",
                Persist::Flush => ", fsync",
            }
        ),
        Op::Read { dir, name } => format!("read({})", path(dir, name)),
        Op::OpenDir { dir } => format!("opendir({}/)", dir.as_str()),
        Op::StatListed { name } => format!("stat_listed({name})"),
        Op::OpenFolderDir { base, folder, dir } => format!(
            "opendir({}/{}/{}/)",
            base.as_str(),
            String::from_utf8_lossy(folder),
            dir.as_str()
        ),
        Op::NextEntry => "readdir".into(),
        Op::CloseDir => "closedir".into(),
        Op::SetMtime { secs } => format!("set_mtime({secs})"),
    }
}

fn flagged(key: &str, add: &str, old: Flags) -> String {
    let mut f = old;
    for b in add.bytes() {
        let _ = f.insert(b);
    }
    let letters: String = f.letters().map(char::from).collect();
    format!("{key}:2,{letters}")
}

impl World {
    /// Indices of agents with work left.
    pub fn enabled(&self) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|&i| !self.agents[i].done())
            .collect()
    }

    /// The simulated filesystem.
    pub fn sim(&self) -> &SimFs {
        &self.fs.inner
    }

    /// A hash of the whole state (filesystem, durable image, agents).
    pub fn state_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// What agent `a`'s next operation touches.
    pub fn footprint(&self, a: usize) -> Footprint {
        let fs = self.sim();
        let mut f = Footprint::default();
        match &self.agents[a] {
            Agent::Deliver(d) => {
                let Step::Op(op) = d.machine.poll() else {
                    return f;
                };
                let own = d.file.as_ref().map(|x| x.ino);
                match op {
                    Op::CreateExclusive { dir, name } | Op::CreateTruncate { dir, name } => {
                        f.write(fs, dir, name)
                    }
                    Op::CreateAnonymous { .. } | Op::Sleep { .. } => {}
                    Op::WriteMessage | Op::SyncFile | Op::WriteBack | Op::CloseFile => {
                        f.inos.extend(own)
                    }
                    Op::LinkAnonymous { dir, name } => {
                        f.write(fs, dir, name);
                        f.inos.extend(own);
                    }
                    Op::Link { from, to } => {
                        f.read(fs, from.0, from.1);
                        f.write(fs, to.0, to.1);
                    }
                    Op::Rename { from, to, .. } => {
                        f.write(fs, from.0, from.1);
                        f.write(fs, to.0, to.1);
                    }
                    Op::Unlink { dir, name } => f.write(fs, dir, name),
                    Op::Stat { dir, name } => f.read(fs, dir, name),
                    Op::SyncDir { dir } => f.dirs_w |= bit(dir),
                    // A bare delivery asks for none of these; should it, they conflict with
                    // everything (sound, if slow).
                    _ => f.dirs_w = 0xff,
                }
            }
            Agent::Reader(r) => match (&r.active, r.jobs.front()) {
                (Some(Active::List(_)), _) | (None, Some(Job::List)) => f.dirs_r |= bit(Dir::New),
                (Some(Active::Core(m, _, _)), _) => match m.poll() {
                    MoveStep::Op(Op::Rename { from, to, .. }) => {
                        f.write(fs, from.0, from.1);
                        f.write(fs, to.0, to.1);
                    }
                    MoveStep::Op(Op::Stat { dir, name }) => f.read(fs, dir, name),
                    _ => f.dirs_r |= bit(Dir::New) | bit(Dir::Cur),
                },
                (None, Some(Job::Move(d, n, add))) => {
                    f.write(fs, *d, n);
                    let key = ParsedName::parse(n, InfoSep::COLON)
                        .map(|p| p.key)
                        .unwrap_or(n);
                    let old = ParsedName::parse(n, InfoSep::COLON)
                        .map(|p| p.flags)
                        .unwrap_or_default();
                    f.write(fs, Dir::Cur, &flagged(key, add, old));
                }
                (None, None) => {}
            },
            Agent::Scanner(_) => f.dirs_r |= bit(Dir::New) | bit(Dir::Cur),
        }
        f
    }

    /// Runs one operation of agent `a`, with the filesystem's nondeterministic answers forced
    /// by `choices` (missing ones: 0, or random if the chooser has a generator). Returns the
    /// choices made as `(options, taken)`.
    pub fn step(&mut self, a: usize, choices: &[u32]) -> Vec<(u32, u32)> {
        self.fs.inner.chooser.reset(choices);
        self.fs.inner.agent = a as u8;
        let msgs = Rc::clone(&self.msgs);
        let line;
        match &mut self.agents[a] {
            Agent::Deliver(d) => {
                self.fs.inner.now = d.env.secs();
                line = Some(step_deliverer(&mut self.fs, d, &msgs));
            }
            Agent::Reader(r) => line = Some(step_reader(&mut self.fs, r)),
            Agent::Scanner(s) => {
                if s.throughout.is_none() {
                    s.throughout = Some(present_keys(&self.fs.inner));
                }
                line = Some(step_scanner(&mut self.fs, s));
            }
        }
        // Listers track which keys stayed present during their scan.
        let scanning = self
            .agents
            .iter()
            .any(|ag| matches!(ag, Agent::Scanner(s) if s.throughout.is_some() && !s.finished));
        let present = if scanning {
            present_keys(&self.fs.inner)
        } else {
            BTreeSet::new()
        };
        for ag in &mut self.agents {
            if let Agent::Scanner(s) = ag {
                if let (Some(t), false) = (s.throughout.as_mut(), s.finished) {
                    t.retain(|k| present.contains(k));
                }
            }
        }
        if let Agent::Scanner(s) = &mut self.agents[a] {
            if s.finished && s.verdict.is_none() {
                s.verdict = scanner_verdict(s);
            }
        }
        let made = self.fs.inner.chooser.made.clone();
        if let (Some(t), Some(l)) = (self.trace.as_mut(), line) {
            let tag = self.agents[a].tag();
            let ch = if made.is_empty() {
                String::new()
            } else {
                format!(
                    "  [choice {}]",
                    made.iter()
                        .map(|(n, c)| format!("{c}/{n}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            t.push(format!("{tag}{a}: {l}{ch}"));
        }
        made
    }

    /// The first broken invariant in the live state, if any.
    pub fn check_live(&self) -> Option<Violation> {
        let fs = self.sim();
        if let Some(e) = fs.events.first() {
            return Some(Violation {
                invariant: e.invariant,
                what: e.what.clone(),
            });
        }
        let files = [Dir::New, Dir::Cur].into_iter().flat_map(|d| {
            fs.names(d)
                .map(move |(n, ino)| (d, n, fs.inodes[&ino].data.as_slice()))
        });
        if let Some(v) = self.check_files(files) {
            return Some(v);
        }
        for ag in &self.agents {
            if let Agent::Scanner(s) = ag {
                if let Some(v) = &s.verdict {
                    return Some(Violation {
                        invariant: 5,
                        what: v.clone(),
                    });
                }
            }
        }
        None
    }

    /// Messages reported delivered (including those present from the start), and messages
    /// whose delivery reported failure.
    pub fn reported(&self) -> (Reported, Reported) {
        let seeded = self.msgs.len()
            - self
                .agents
                .iter()
                .filter(|a| matches!(a, Agent::Deliver(_)))
                .count();
        let mut ok: Vec<(usize, String)> =
            (0..seeded).map(|m| (m, "pre-existing".into())).collect();
        let mut failed = Vec::new();
        for (i, ag) in self.agents.iter().enumerate() {
            if let Agent::Deliver(d) = ag {
                match &d.outcome {
                    Some(Ok(del)) => ok.push((
                        d.msg,
                        format!("D{i} reported {}/{}", del.dir.as_str(), del.name),
                    )),
                    Some(Err(e)) => failed.push((d.msg, format!("D{i} reported failure \"{e}\""))),
                    None => {}
                }
            }
        }
        (ok, failed)
    }

    /// Checks invariants 1, 2, 4 and 6 on an image of new/ and cur/ (live or after a crash).
    pub fn check_image(&self, image: &Image) -> Option<Violation> {
        self.check_files(
            image
                .iter()
                .map(|((d, n), data)| (*d, n.as_str(), data.as_slice())),
        )
    }

    /// Checks invariants 1, 2, 4 and 6 on the files of new/ and cur/.
    fn check_files<'a>(
        &self,
        files: impl Iterator<Item = (Dir, &'a str, &'a [u8])>,
    ) -> Option<Violation> {
        let show = |v: &[(Dir, &str)]| {
            v.iter()
                .map(|(d, n)| path(*d, n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut by_msg: BTreeMap<usize, Vec<(Dir, &str)>> = BTreeMap::new();
        let mut by_key: BTreeMap<&str, Vec<(Dir, &str)>> = BTreeMap::new();
        for (d, n, data) in files {
            let sha: [u8; 32] = Sha256::digest(data).into();
            match self.msgs.iter().position(|m| m.sha == sha) {
                Some(m) => by_msg.entry(m).or_default().push((d, n)),
                None => {
                    return Some(Violation {
                        invariant: 4,
                        what: format!(
                            "{} holds {} bytes that are no complete message ({})",
                            path(d, n),
                            data.len(),
                            self.guess(data)
                        ),
                    })
                }
            }
            let key = ParsedName::parse(n, InfoSep::COLON)
                .map(|x| x.key)
                .unwrap_or(n);
            by_key.entry(key).or_default().push((d, n));
        }
        // Invariant 2: one name per unique key, and one name per message.
        let twice = |what: String, names: &[(Dir, &str)]| Violation {
            invariant: 2,
            what: format!("{what}: {}", show(names)),
        };
        if let Some((k, names)) = by_key.iter().find(|(_, names)| names.len() > 1) {
            let what = format!("unique key {k} appears {} times", names.len());
            return Some(twice(what, names));
        }
        if let Some((m, names)) = by_msg.iter().find(|(_, names)| names.len() > 1) {
            let what = format!("message m{m} stored under {} names", names.len());
            return Some(twice(what, names));
        }
        let deliverers = self
            .agents
            .iter()
            .filter(|a| matches!(a, Agent::Deliver(_)))
            .count();
        let seeded = self.msgs.len() - deliverers;
        if let Some(m) = (0..seeded).find(|m| !by_msg.contains_key(m)) {
            return Some(Violation {
                invariant: 1,
                what: format!("message m{m} (pre-existing) is not in new/ or cur/"),
            });
        }
        for (i, ag) in self.agents.iter().enumerate() {
            let Agent::Deliver(d) = ag else { continue };
            match (&d.outcome, by_msg.get(&d.msg)) {
                (Some(Ok(del)), None) => {
                    return Some(Violation {
                        invariant: 1,
                        what: format!(
                            "message m{} (D{i} reported {}/{}) is not in new/ or cur/",
                            d.msg,
                            del.dir.as_str(),
                            del.name
                        ),
                    })
                }
                (Some(Err(e)), Some(names)) => {
                    return Some(Violation {
                        invariant: 6,
                        what: format!(
                            "message m{} (D{i} reported failure \"{e}\") is visible as {}",
                            d.msg,
                            show(names)
                        ),
                    })
                }
                _ => {}
            }
        }
        None
    }

    fn guess(&self, data: &[u8]) -> String {
        match self.msgs.iter().position(|m| m.body.starts_with(data)) {
            Some(m) if data.is_empty() => {
                format!("empty; m{m} has {} bytes", self.msgs[m].body.len())
            }
            Some(m) => format!(
                "a prefix of m{m}, which has {} bytes",
                self.msgs[m].body.len()
            ),
            None => "garbled".into(),
        }
    }
}

fn present_keys(fs: &SimFs) -> BTreeSet<String> {
    [Dir::New, Dir::Cur]
        .iter()
        .flat_map(|&d| fs.names(d))
        .map(|(n, _)| {
            ParsedName::parse(n, InfoSep::COLON)
                .map(|p| p.key)
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}

fn step_deliverer(fs: &mut FaultFs<SimFs>, d: &mut Deliverer, msgs: &[Msg]) -> String {
    let Step::Op(op) = d.machine.poll() else {
        return "finished".into();
    };
    let shown = show_op(&op);
    // NFSv2 exclusive create: a lookup, then (another scheduling point) a create.
    if let (Semantics::Nfs, Op::CreateExclusive { dir, name }) = (fs.inner.sem, op) {
        match d.lookup.take() {
            None => {
                let absent = fs.stat(dir, name) == Err(ErrorKind::NotFound);
                d.lookup = Some(absent);
                return format!(
                    "{shown} part 1, LOOKUP -> {}",
                    if absent { "absent" } else { "exists" }
                );
            }
            Some(absent) => {
                let (dir, name) = (dir, name.to_string());
                let r = match fs.inner.create_after_lookup(dir, &name, absent) {
                    Ok(f) => {
                        let id = fs.file_id(&f);
                        d.file = Some(f);
                        OpResult::Created { id }
                    }
                    Err(e) => OpResult::Err(e),
                };
                d.machine.feed(r, &mut d.env);
                d.history.1.push(r);
                return finish_deliverer(d, format!("{shown} part 2, CREATE -> {r:?}"));
            }
        }
    }
    let mut src: &[u8] = &msgs[d.msg].body;
    let mut buf = [0u8; 32];
    let mut slots = Slots {
        file: d.file.take(),
        stream: None,
        inner: None,
    };
    let (r, _) = perform(fs, &mut d.env, &mut slots, op, &mut src, &mut buf);
    d.file = slots.file;
    // The machine may borrow from itself in `op`; the result is copied before feeding.
    d.machine.feed(r, &mut d.env);
    d.history.1.push(r);
    finish_deliverer(d, format!("{shown} -> {r:?}"))
}

fn finish_deliverer(d: &mut Deliverer, mut line: String) -> String {
    if let Step::Done(o) = d.machine.poll() {
        line.push_str(&match &o {
            Ok(del) => format!("  => delivered {}/{}", del.dir.as_str(), del.name),
            Err(e) => format!("  => failed: {e}"),
        });
        d.outcome = Some(o);
    }
    line
}

fn step_reader(fs: &mut FaultFs<SimFs>, r: &mut Reader) -> String {
    if r.active.is_none() {
        match r.jobs.pop_front() {
            Some(Job::List) => {
                return match fs.open_dir(Dir::New) {
                    Ok(s) => {
                        r.active = Some(Active::List(s));
                        "opendir(new/) -> ok".into()
                    }
                    Err(e) => format!("opendir(new/) -> {e:?}"),
                };
            }
            Some(Job::Move(dir, name, add)) => match r.mode {
                ReaderMode::Plain => {
                    let (key, old) = match ParsedName::parse(&name, InfoSep::COLON) {
                        Ok(p) => (p.key.to_string(), p.flags),
                        Err(_) => (name.clone(), Flags::EMPTY),
                    };
                    let to = flagged(&key, add, old);
                    let res = fs.rename((dir, &name), (Dir::Cur, &to), false);
                    if res.is_ok() && r.flag_change && dir == Dir::New {
                        r.jobs.push_back(Job::Move(Dir::Cur, to.clone(), "R"));
                    }
                    return format!("rename({}, cur/{to}) -> {res:?}", path(dir, &name));
                }
                ReaderMode::Core => {
                    let old = ParsedName::parse(&name, InfoSep::COLON)
                        .map(|p| p.flags)
                        .unwrap_or_default();
                    let mut f = old;
                    for b in add.bytes() {
                        let _ = f.insert(b);
                    }
                    let m = Move::new(dir, &name, f, InfoSep::COLON, true);
                    r.active = Some(Active::Core(
                        Box::new(m),
                        None,
                        if dir == Dir::New { "new" } else { "cur" },
                    ));
                }
            },
            None => return "idle".into(),
        }
    }
    let mut raw = mdeliver_core::fs::EntryName::new();
    match r.active.as_mut().expect("active") {
        Active::List(s) => {
            let res = fs.read_dir(s, &mut raw);
            let name = String::from_utf8_lossy(&raw);
            match res {
                Ok(true) => {
                    r.jobs.push_back(Job::Move(Dir::New, name.to_string(), "S"));
                    format!("readdir(new/) -> {name}")
                }
                other => {
                    r.active = None;
                    format!("readdir(new/) -> {other:?}")
                }
            }
        }
        Active::Core(m, stream, _) => {
            let line = match m.poll() {
                MoveStep::Op(op)
                    if !matches!(op, Op::OpenDir { .. } | Op::NextEntry | Op::CloseDir) =>
                {
                    let shown = show_op(&op);
                    let res = match op {
                        Op::Rename {
                            from,
                            to,
                            noreplace,
                        } => op_result(fs.rename(from, to, noreplace)),
                        Op::Stat { dir, name } => match fs.stat(dir, name) {
                            Ok(s) => OpResult::Stat(s),
                            Err(e) => OpResult::Err(e),
                        },
                        _ => OpResult::Err(ErrorKind::Unsupported),
                    };
                    m.feed(res, b"");
                    format!("{shown} -> {res:?}")
                }
                MoveStep::Op(op) => {
                    let mut listed = String::new();
                    let res = list_op(fs, stream, op, &mut listed);
                    let shown = format!("{op:?}");
                    m.feed(res, listed.as_bytes());
                    format!(
                        "{shown} -> {res:?} {}",
                        if res == OpResult::Entry {
                            listed.as_str()
                        } else {
                            ""
                        }
                    )
                }
                MoveStep::Done(_) => "move done".into(),
            };
            // Closing a listing is not a scheduling point.
            while let MoveStep::Op(Op::CloseDir) = m.poll() {
                let res = list_op(fs, stream, Op::CloseDir, &mut String::new());
                m.feed(res, b"");
            }
            if let MoveStep::Done(res) = m.poll() {
                if res.is_ok() && r.flag_change && m.target().ends_with(":2,S") {
                    r.jobs
                        .push_back(Job::Move(Dir::Cur, m.target().to_string(), "R"));
                }
                r.active = None;
                return format!("{line}  => moved: {res:?}");
            }
            line
        }
    }
}

/// Performs one listing operation with the agent's open listing `stream`; the name a
/// `NextEntry` found goes to `name`.
fn list_op(
    fs: &mut FaultFs<SimFs>,
    stream: &mut Option<SimDir>,
    op: Op<'_>,
    name: &mut String,
) -> OpResult {
    let mut slots = Slots {
        file: None,
        stream: stream.take(),
        inner: None,
    };
    let mut buf = [0u8; 256];
    let (r, n) = perform(fs, &mut NoSleep, &mut slots, op, &mut &b""[..], &mut buf);
    *stream = slots.stream;
    name.clear();
    name.push_str(&String::from_utf8_lossy(&buf[..n]));
    r
}

/// Listing never sleeps or draws time: the environment a lister's `perform` gets.
struct NoSleep;

impl mdeliver_core::Env for NoSleep {
    fn now(&mut self) -> mdeliver_core::env::Timestamp {
        mdeliver_core::env::Timestamp::default()
    }
    fn random_u64(&mut self) -> u64 {
        0
    }
    fn pid(&self) -> Option<u32> {
        None
    }
    fn host(&self) -> &str {
        ""
    }
    fn next_counter(&mut self) -> u64 {
        0
    }
    fn sleep(&mut self, _millis: u32) {}
}

fn step_scanner(fs: &mut FaultFs<SimFs>, s: &mut Scanner) -> String {
    let mut raw = mdeliver_core::fs::EntryName::new();
    if s.naive {
        let dir = s.naive_dir.expect("listing");
        return match s.stream.as_mut() {
            None => match fs.open_dir(dir) {
                Ok(st) => {
                    s.stream = Some(st);
                    format!("opendir({}/) -> ok", dir.as_str())
                }
                Err(e) => {
                    s.finished = true;
                    format!("opendir -> {e:?}")
                }
            },
            Some(st) => match fs.read_dir(st, &mut raw) {
                Ok(true) => {
                    let name = String::from_utf8_lossy(&raw);
                    s.naive_seen.push(name.to_string());
                    format!("readdir({}/) -> {name}", dir.as_str())
                }
                other => {
                    s.stream = None;
                    if dir == Dir::New {
                        s.naive_dir = Some(Dir::Cur);
                    } else {
                        s.naive_dir = None;
                        s.finished = true;
                    }
                    format!("readdir({}/) -> {other:?}", dir.as_str())
                }
            },
        };
    }
    let line = match s.scan.poll() {
        ScanStep::Op(op) => {
            let mut listed = String::new();
            let res = list_op(fs, &mut s.stream, op, &mut listed);
            s.scan.feed(res, listed.as_bytes(), &mut s.keys);
            format!(
                "scan pass {} {op:?} -> {res:?} {}",
                s.scan.pass(),
                if res == OpResult::Entry {
                    listed.as_str()
                } else {
                    ""
                }
            )
        }
        ScanStep::Done(_) => "scan done".into(),
    };
    while let ScanStep::Op(Op::CloseDir) = s.scan.poll() {
        let res = list_op(fs, &mut s.stream, Op::CloseDir, &mut String::new());
        s.scan.feed(res, b"", &mut s.keys);
    }
    if let ScanStep::Done(r) = s.scan.poll() {
        s.finished = true;
        return format!("{line}  => {r:?}");
    }
    line
}

/// The listing's result keys (with multiplicity).
fn scanner_result(s: &Scanner) -> Vec<String> {
    if s.naive {
        s.naive_seen
            .iter()
            .map(|n| {
                ParsedName::parse(n, InfoSep::COLON)
                    .map(|p| p.key)
                    .unwrap_or(n)
                    .to_string()
            })
            .collect()
    } else {
        match s.scan.poll() {
            ScanStep::Done(Ok(sum)) => s
                .keys
                .0
                .iter()
                .filter(|(_, r)| r.2 == sum.final_pass)
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn scanner_verdict(s: &Scanner) -> Option<String> {
    let result = scanner_result(s);
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &result {
        *count.entry(k).or_default() += 1;
    }
    if let Some(t) = &s.throughout {
        for k in t {
            if !count.contains_key(k.as_str()) {
                return Some(format!(
                    "the listing missed message {k}, present in new/ or cur/ throughout (listed: {})",
                    result.join(", ")
                ));
            }
        }
    }
    count
        .iter()
        .find(|(_, &c)| c > 1)
        .map(|(k, c)| format!("the listing returned message {k} {c} times"))
}
