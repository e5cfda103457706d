//! A Sieve script's actions as one exactly-once unit ([`mdeliver_core::machine::unit`]) under
//! the simulator: a plan of copies into INBOX and folders (each its own simulated maildir, as
//! Maildir++ folders are) with flags, and redirects; a crash after every operation of the
//! unit, in every way the persistence model (P2) allows in every maildir at once; then the
//! MTA's retry, whose script may decide something else than the first attempt's (a
//! `duplicate` test, an edited script). Invariant 11 ([`Invariant::UnitExactlyOnce`]) is
//! checked after the retry, with 4, 9 and 10 and the filesystems' own (3, 7) on the way.
//!
//! The unit is driven by the same [`perform`](mdeliver_core::machine::unit::perform) the
//! Linux binary runs, over the composed [`Mta`] machine; the crash is a budget of operations
//! shared by every maildir: when it runs out the process is dead (every later operation fails
//! and changes nothing), and each maildir is then rebooted from its durable state and any
//! subset of its pending directory operations. One deliverer: concurrency between deliverers
//! of one key is the composed machine's (`sim_mta`).
//!
//! On the NFS model ([`UnitScenario::nfs`]) the copies run as the drivers run them there (the
//! `Locked` delivery), and the first attempt is explored once with every link's reply
//! delivered and once for each link whose reply is lost after the server made it (an error,
//! or `EEXIST` from the retransmission), each with a crash after every operation; the run
//! without a crash is then retried too (a lost reply may fail an action), and the retry's own
//! replies arrive.

use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use crate::sim::env::SimEnv;
use crate::sim::fs::{Persistence, Semantics, SimFs};
use crate::sim::Invariant;
use mdeliver_core::fs::{Capabilities, Dir, Fs};
use mdeliver_core::machine::dedup::{DedupOptions, Key};
use mdeliver_core::machine::deliver::{Durability, Options, Strategy};
use mdeliver_core::machine::mta::{Accepted, Mta, MtaOptions, Order};
use mdeliver_core::machine::quota::{parse_maildirsize, CheckOptions, MAILDIRSIZE};
use mdeliver_core::machine::run;
use mdeliver_core::machine::unit::{self, Copy, CopyDone, Entry, Performer, Plan, Reply};
use mdeliver_core::testkit::{Call, Hook, Hooked};
use mdeliver_core::{Error, ErrorKind, Flags, Phase};

/// A unit scenario.
#[derive(Clone, Debug)]
pub struct UnitScenario {
    /// Name for reports.
    pub name: String,
    /// The folders that exist (maildir `i + 1` is folder `folders[i]`; maildir 0 is INBOX).
    pub folders: Vec<&'static str>,
    /// What the script decides on the first attempt: (folder or None for INBOX, flags).
    pub copies: Vec<(Option<&'static str>, Option<&'static str>)>,
    /// Folders missing on the first attempt and created before the retry (an IMAP client
    /// between the crash and the MTA's retry).
    pub appears: Vec<&'static str>,
    /// Redirect addresses.
    pub redirects: Vec<&'static str>,
    /// What the script decides on the retry, when it differs (None: the same).
    pub retry_copies: Option<Vec<(Option<&'static str>, Option<&'static str>)>>,
    /// `duplicate` ids the script tracks (remembered once the copies are stored).
    pub tracks: Vec<&'static str>,
    /// A vacation reply the script sends (to the message's sender), remembered likewise.
    pub vacation: bool,
    /// With a Maildir++ quota in every maildir.
    pub quota: bool,
    /// What the filesystems offer (without unnamed tmp files, a named one is renamed).
    pub caps: Capabilities,
    /// On the NFS model: lost link replies, the `Locked` delivery.
    pub nfs: bool,
    /// The copies' strategy instead of the drivers' choice (for the check of the model
    /// itself: `Exclusive` on NFS duplicates).
    pub strategy: Option<Strategy>,
    /// Which crashes: P2 (any subset of each directory's pending operations), or P1 (a
    /// journal's prefix) where P2's images are too many to explore.
    pub persistence: Persistence,
}

impl UnitScenario {
    fn plan(
        &self,
        copies: &[(Option<&'static str>, Option<&'static str>)],
        redirects: bool,
    ) -> Plan {
        let mut p = Plan::new();
        for (folder, flags) in copies {
            let flags = flags.map(|f| Flags::parse(f).expect("flags"));
            p.copy(folder.map(str::as_bytes), flags, false)
                .expect("a small plan");
        }
        if redirects {
            for r in &self.redirects {
                p.redirect(r.as_bytes()).expect("a small plan");
            }
            for t in &self.tracks {
                p.track(t.as_bytes(), UNTIL).expect("a small plan");
            }
            if self.vacation {
                p.vacation(&Reply {
                    to: b"alice@example.org",
                    from: b"",
                    subject: b"Auto: sieve",
                    reason: b"away",
                    mime: false,
                    in_reply_to: b"<unit@sim>",
                    key: b"vacation\0h\0alice@example.org",
                    until: UNTIL,
                })
                .expect("a small plan");
            }
        }
        p
    }

    fn first(&self) -> Plan {
        self.plan(&self.copies, true)
    }

    fn retry(&self) -> Plan {
        match &self.retry_copies {
            Some(c) => self.plan(c, false),
            None => self.first(),
        }
    }

    /// An empty maildir of the scenario (with its `maildirsize` under a quota).
    fn maildir(&self) -> SimFs {
        let sem = if self.nfs {
            Semantics::Nfs
        } else {
            Semantics::Posix
        };
        let mut fs = SimFs::new(sem, self.caps, self.persistence);
        if self.quota {
            fs.seed(Dir::Root, MAILDIRSIZE, b"1000000S\n0 0\n");
        }
        fs
    }

    /// The maildirs before the first attempt; `lose` as in [`Budget::lose`].
    fn world(&self, lose: Option<(u64, u32)>) -> World {
        let left = Rc::new(Cell::new(u64::MAX));
        let links = Rc::new(Cell::new(0));
        let fss = (0..=self.folders.len())
            .map(|_| Hooked {
                fs: self.maildir(),
                hook: Budget {
                    left: left.clone(),
                    links: links.clone(),
                    lose,
                },
            })
            .collect();
        World {
            fss,
            left,
            links,
            strategy: self.strategy.unwrap_or(if self.nfs {
                Strategy::Locked
            } else {
                Strategy::Exclusive
            }),
            sent: Vec::new(),
            env: SimEnv::unique(1, 5),
            quota: self.quota,
            folders: self.folders.clone(),
        }
    }
}

/// When the scenarios' remembered ids expire (long after every simulated clock).
const UNTIL: u64 = 10_000_000_000;

/// The body of the unit's message.
pub fn body() -> Vec<u8> {
    b"Message-ID: <unit@sim>\nSubject: sieve\n\nbody\n".to_vec()
}

/// A simulated maildir whose operations draw on a budget shared by the unit: when it is
/// spent, the process is dead and every operation fails without effect.
type Crashy = Hooked<SimFs, Budget>;

/// The operations left before the crash (`u64::MAX`: no crash planned), shared by every
/// maildir, and on the NFS model which link's reply is lost.
struct Budget {
    left: Rc<Cell<u64>>,
    /// The links made so far, in every maildir.
    links: Rc<Cell<u64>>,
    /// `(n, answer)`: link `n` (from 0) is made and its reply lost, `answer` as the NFS
    /// model's chooser takes it (1 an error, 2 `EEXIST`); every other reply arrives.
    lose: Option<(u64, u32)>,
}

impl Budget {
    fn spend(&self) -> Result<(), ErrorKind> {
        match self.left.get() {
            0 => Err(ErrorKind::Io),
            u64::MAX => Ok(()),
            n => {
                self.left.set(n - 1);
                Ok(())
            }
        }
    }
}

impl Hook<SimFs> for Budget {
    fn before(&mut self, fs: &mut SimFs, call: &mut Call<'_>) -> Result<(), ErrorKind> {
        match call {
            // `sync_all` is not an operation of the unit (`SimFs`: unsupported).
            Call::SyncAll => Ok(()),
            Call::Link(..) => {
                self.spend()?;
                let n = self.links.get();
                self.links.set(n + 1);
                match self.lose {
                    Some((k, answer)) if k == n => fs.chooser.reset(&[answer]),
                    _ => fs.chooser.reset(&[]),
                }
                Ok(())
            }
            _ => self.spend(),
        }
    }
}

/// Every maildir of the unit, what was sent, and the deliverer's clock.
struct World {
    fss: Vec<Crashy>,
    left: Rc<Cell<u64>>,
    /// The links made (see [`Budget::links`]).
    links: Rc<Cell<u64>>,
    /// The copies' delivery strategy (on NFS the drivers take the maildir lock:
    /// `trust::choose`).
    strategy: Strategy,
    /// Redirects the MTA accepted (outside the maildirs: a crash does not undo them).
    sent: Vec<Vec<u8>>,
    env: SimEnv,
    quota: bool,
    folders: Vec<&'static str>,
}

impl World {
    fn hash64(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in &self.fss {
            f.fs.hash(&mut h);
        }
        self.sent.hash(&mut h);
        h.finish()
    }

    fn maildir_of(&self, mailbox: Option<&[u8]>) -> Option<usize> {
        match mailbox {
            None => Some(0),
            Some(m) => self
                .folders
                .iter()
                .position(|f| f.as_bytes() == m)
                .map(|i| i + 1),
        }
    }

    /// Reboots every maildir: `specs[i]` picks maildir `i`'s surviving pending operations.
    /// Every maildir after a crash (`specs[i]` picks maildir `i`'s surviving pending
    /// operations), for the retry: its links' replies arrive.
    fn reboot(&self, specs: &[u64]) -> World {
        let left = Rc::new(Cell::new(u64::MAX));
        let links = Rc::new(Cell::new(0));
        World {
            fss: self
                .fss
                .iter()
                .zip(specs)
                .map(|(f, &s)| Hooked {
                    fs: f.fs.reboot(s),
                    hook: Budget {
                        left: left.clone(),
                        links: links.clone(),
                        lose: None,
                    },
                })
                .collect(),
            left,
            links,
            strategy: self.strategy,
            sent: self.sent.clone(),
            env: self.env.clone(),
            quota: self.quota,
            folders: self.folders.clone(),
        }
    }
}

impl Performer for World {
    type Fs = Crashy;

    fn root(&mut self) -> &mut Crashy {
        &mut self.fss[0]
    }

    fn copy(&mut self, copy: &Copy<'_>, key: Key) -> Result<CopyDone, Error> {
        let Some(i) = self.maildir_of(copy.mailbox) else {
            // A folder that does not exist (and no `:create` in these scenarios).
            return Err(Error::new(ErrorKind::NotFound, Phase::Open));
        };
        let strategy = self.strategy;
        let opts = MtaOptions {
            delivery: Options {
                durability: Durability::Full,
                flags: copy.flags,
                strategy,
                ..Options::default()
            },
            quota: self.quota.then(CheckOptions::default),
            dedup: Some(DedupOptions {
                poll_ms: 1_000,
                wait_ms: 2_000,
                gc_every: 0,
                ..DedupOptions::default()
            }),
            key: Some(key),
            order: Order::AccountFirst,
        };
        let fs = &mut self.fss[i];
        fs.fs.now = self.env.secs();
        let mut m = Mta::new(opts, fs.capabilities(), &mut self.env);
        let body = body();
        let mut buf = [0u8; 8192];
        match run(&mut m, fs, &mut self.env, &mut &body[..], &mut buf)? {
            Accepted::Stored { .. } => Ok(CopyDone::Stored),
            Accepted::Duplicate { .. } => Ok(CopyDone::Already),
        }
    }

    fn redirect(&mut self, _index: usize, address: &[u8]) -> Result<(), Error> {
        // Handing the message to sendmail is one step of the unit too.
        let r = self.fss[0].hook.spend();
        r.map_err(|k| Error::new(k, Phase::Publish))?;
        self.sent.push(address.to_vec());
        Ok(())
    }

    fn vacation(&mut self, _index: usize, reply: &Reply<'_>) -> Result<(), Error> {
        // Handing the reply to sendmail: one step, as a redirect.
        let r = self.fss[0].hook.spend();
        r.map_err(|k| Error::new(k, Phase::Publish))?;
        let mut to = b"vacation:".to_vec();
        to.extend_from_slice(reply.to);
        self.sent.push(to);
        Ok(())
    }
}

/// A broken invariant and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitViolation {
    /// Which.
    pub invariant: Invariant,
    /// What was found.
    pub what: String,
    /// `unit1:crash-after=<ops>;images=<spec per maildir>` (or `-` for no crash).
    pub schedule: String,
}

impl std::fmt::Display for UnitViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} [{}]", self.invariant, self.what, self.schedule)
    }
}

/// What an exploration covered and found.
#[derive(Clone, Debug, Default)]
pub struct UnitReport {
    /// Runs: one per crash point, and the run without a crash.
    pub executions: u64,
    /// Distinct states the crash points left.
    pub states: u64,
    /// Crash images recovered from and checked.
    pub crash_states: u64,
    /// Violations.
    pub violations: Vec<UnitViolation>,
}

/// The stored copies of the world: per maildir, (dir, flags after `:2,` or None) for every
/// message file; `Err` for a file that is not the message.
/// Each maildir's stored messages: where each is, and its flags.
type Stored = Vec<Vec<(Dir, Option<String>)>>;

fn stored(w: &World) -> Result<Stored, (Invariant, String)> {
    let body = body();
    let mut v = Vec::new();
    for (i, f) in w.fss.iter().enumerate() {
        let mut here = Vec::new();
        for d in [Dir::New, Dir::Cur] {
            for (name, ino) in f.fs.names(d) {
                if f.fs.inodes[&ino].data != body {
                    return Err((
                        Invariant::NoPartial,
                        format!(
                            "maildir {i} {}/{name} is not the complete message",
                            d.as_str()
                        ),
                    ));
                }
                here.push((d, name.split_once(":2,").map(|x| x.1.to_string())));
            }
        }
        v.push(here);
    }
    Ok(v)
}

/// Runs the retry on `w` (rebooted after a crash) and checks the invariants.
fn recover(cfg: &UnitScenario, mut w: World) -> Option<(Invariant, String)> {
    for (i, f) in w.fss.iter().enumerate() {
        if let Some(e) = f.fs.events.first() {
            let inv = Invariant::from_number(e.invariant).unwrap_or(Invariant::Confinement);
            return Some((inv, format!("maildir {i}: {}", e.what)));
        }
    }
    // What the retry must finish: the recorded plan if the record survived, else what its
    // script decides now.
    let key = unit_key();
    let record = w.fss[0]
        .fs
        .contents(Dir::Root, &key.entry_name())
        .map(<[u8]>::to_vec);
    let expected = record
        .as_deref()
        .and_then(Plan::decode)
        .unwrap_or_else(|| cfg.retry());
    let sent_before = w.sent.len();
    // An id or a reply is remembered only once every copy is stored (RFC 7352 3): in any
    // crash image that kept a memory entry, every planned copy is there.
    // Judged as the interpreter's `duplicate` and `vacation` find it (`unit::Evaluate`): the
    // entry of the key in the root maildir, whole and not run out.
    let remembered = |w: &mut World, key: &[u8]| {
        let now = w.env.secs();
        w.fss[0]
            .fs
            .contents(Dir::Root, &unit::seen_key(key).entry_name())
            .is_some_and(|e| e.len() <= unit::SEEN_MAX && unit::seen_at(e, now))
    };
    let memory_keys: Vec<Vec<u8>> = expected
        .entries()
        .filter_map(|e| match e {
            Entry::Track { key, .. } => Some(key.to_vec()),
            Entry::Vacation { reply, .. } => Some(reply.key.to_vec()),
            _ => None,
        })
        .collect();
    let early = memory_keys.iter().any(|k| remembered(&mut w, k));
    // How many copies the crash image holds.
    let held_before: usize = match stored(&w) {
        Ok(s) => s.iter().map(Vec::len).sum(),
        Err(v) => return Some(v),
    };
    // Past every lease and clock margin of the attempt that died.
    w.env.micros += 3_600 * 1_000_000;
    // The folders created meanwhile.
    for f in &cfg.appears {
        let hook = Budget {
            left: w.left.clone(),
            links: w.links.clone(),
            lose: None,
        };
        w.fss.push(Hooked {
            fs: cfg.maildir(),
            hook,
        });
        w.folders.push(*f);
    }
    match unit::perform(&mut w, &key, cfg.retry()) {
        Err(e) => {
            return Some((
                Invariant::NoBlockingGarbage,
                format!("the retry failed: {e}"),
            ))
        }
        Ok(p) => {
            if let Some(e) = p.first_error() {
                return Some((
                    Invariant::NoBlockingGarbage,
                    format!("a retried action failed: {e}"),
                ));
            }
        }
    }
    let stored = match stored(&w) {
        Ok(s) => s,
        Err(v) => return Some(v),
    };
    // Each maildir holds exactly the copies planned for it, each once, with its flags.
    let mut want: Stored = vec![Vec::new(); w.fss.len()];
    // Every copy that ends in INBOX (the keep, a missing folder's) is stored under one key,
    // with the flags of the plan's own INBOX copy if it has one, else of the first.
    let inbox_flags = expected
        .copies()
        .find(|c| c.mailbox.is_none())
        .map(|c| c.flags);
    for e in expected.entries() {
        if let Entry::Copy(c) = e {
            let mut i = w.maildir_of(c.mailbox).unwrap_or(0);
            // A folder created since the crash holds its copy, or INBOX does (the attempt
            // that died had sent it there): one of them, never both.
            let appeared = cfg.appears.iter().any(|f| Some(f.as_bytes()) == c.mailbox);
            if appeared && stored[i].is_empty() {
                i = 0;
            }
            let flags = match inbox_flags {
                Some(f) if i == 0 => f,
                _ => c.flags,
            };
            let slot = match flags {
                Some(f) => (Dir::Cur, Some(f.to_string())),
                None => (Dir::New, None),
            };
            if i != 0 || want[0].is_empty() {
                want[i].push(slot);
            }
        }
    }
    for (i, (have, want)) in stored.iter().zip(&want).enumerate() {
        let (mut h, mut wa) = (have.clone(), want.clone());
        h.sort();
        wa.sort();
        if h != wa {
            return Some((
                Invariant::UnitExactlyOnce,
                format!("maildir {i} holds {h:?}, the plan says {wa:?}"),
            ));
        }
    }
    if early {
        // (Merged INBOX copies are one file: `want` counts them once.)
        let planned: usize = want.iter().map(Vec::len).sum();
        if held_before < planned {
            return Some((
                Invariant::UnitExactlyOnce,
                "an id was remembered before every copy was stored".into(),
            ));
        }
    }
    // Every id and reply is remembered after the retry.
    for k in &memory_keys {
        if !remembered(&mut w, k) {
            return Some((
                Invariant::UnitExactlyOnce,
                format!(
                    "{:?} is not remembered after the retry",
                    String::from_utf8_lossy(k)
                ),
            ));
        }
    }
    // The vacation reply: at least once, twice only if the crash fell between the MTA
    // accepting it and its marker.
    if expected
        .entries()
        .any(|e| matches!(e, Entry::Vacation { .. }))
    {
        let n = w
            .sent
            .iter()
            .filter(|s| s.starts_with(b"vacation:"))
            .count();
        if n == 0 || n > 2 {
            return Some((
                Invariant::UnitExactlyOnce,
                format!("the vacation reply was sent {n} times"),
            ));
        }
    }
    // Each redirect sent at least once, and more often only if the crash fell between the
    // MTA accepting it and its marker.
    for e in expected.entries() {
        if let Entry::Redirect { address, .. } = e {
            let n = w.sent.iter().filter(|s| *s == address).count();
            if n == 0 || n > 2 {
                return Some((
                    Invariant::UnitExactlyOnce,
                    format!("a redirect was sent {n} times ({sent_before} before the crash)"),
                ));
            }
        }
    }
    if cfg.quota {
        for (i, f) in w.fss.iter().enumerate() {
            let Some(data) = f.fs.contents(Dir::Root, MAILDIRSIZE) else {
                return Some((
                    Invariant::QuotaAgrees,
                    format!("maildir {i}: maildirsize is gone"),
                ));
            };
            let u = parse_maildirsize(data).usage;
            let n = stored[i].len() as u64;
            // Under-counting never; over-counting by the one copy a crash may have accounted.
            if u.count < n || u.count > n + 1 || u.bytes < n * body().len() as u64 {
                return Some((
                    Invariant::QuotaAgrees,
                    format!(
                        "maildir {i}: maildirsize counts {} messages, {n} are stored",
                        u.count
                    ),
                ));
            }
        }
    }
    None
}

/// The unit's key (the sha256 of the message's bytes).
pub fn unit_key() -> Key {
    let mut k = unit::UnitKeyer::new();
    k.feed(&body());
    k.key()
}

/// Every maildir's reboot specs, crossed.
fn combos(w: &World) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new()];
    for f in &w.fss {
        let specs: Vec<u64> = f.fs.reboot_specs().collect();
        out = out
            .into_iter()
            .flat_map(|p| {
                specs.iter().map(move |&s| {
                    let mut q = p.clone();
                    q.push(s);
                    q
                })
            })
            .collect();
        assert!(out.len() <= 1 << 16, "too many crash images");
    }
    out
}

/// Explores `cfg`: the unit without a crash, then crashed after each of its operations,
/// every crash image recovered by the MTA's retry and checked.
pub fn explore(cfg: &UnitScenario) -> UnitReport {
    let mut report = UnitReport::default();
    let mut seen = HashSet::new();
    let key = unit_key();
    // The links of an uncrashed unit whose replies all arrive: on NFS, each one's reply is
    // lost in turn, in both ways.
    let mut w = cfg.world(None);
    let _ = unit::perform(&mut w, &key, cfg.first());
    let mut losses = vec![None];
    if cfg.nfs {
        for n in 0..w.links.get() {
            losses.extend([Some((n, 1)), Some((n, 2))]);
        }
    }
    for lose in losses {
        let lost = match lose {
            Some((n, a)) => format!("lost-reply={n}/{a};"),
            None => String::new(),
        };
        let mut total = 0u64;
        loop {
            let mut w = cfg.world(lose);
            w.left.set(total);
            let _ = unit::perform(&mut w, &key, cfg.first());
            report.executions += 1;
            let ran_out = w.left.get() == 0;
            if seen.insert(w.hash64()) {
                report.states += 1;
                for specs in combos(&w) {
                    report.crash_states += 1;
                    if let Some((invariant, what)) = recover(cfg, w.reboot(&specs)) {
                        report.violations.push(UnitViolation {
                            invariant,
                            what,
                            schedule: format!("unit1:{lost}crash-after={total};images={specs:?}"),
                        });
                    }
                }
            }
            if !ran_out {
                // The budget was not spent: the unit finished; that was the run without a
                // crash. With every reply delivered it must have done everything; after a
                // lost reply, the MTA's retry must finish it.
                let mut done = cfg.world(lose);
                let failed = match unit::perform(&mut done, &key, cfg.first()) {
                    _ if lose.is_some() => recover(cfg, done),
                    Ok(p) if p.first_error().is_none() => None,
                    r => {
                        let what = format!("the unit failed without a crash: {r:?}");
                        Some((Invariant::NoBlockingGarbage, what))
                    }
                };
                if let Some((invariant, what)) = failed {
                    report.violations.push(UnitViolation {
                        invariant,
                        what,
                        schedule: format!("unit1:{lost}crash-after=-"),
                    });
                }
                break;
            }
            total += 1;
        }
    }
    report
}

/// The scenarios of the races table and the tests.
pub fn scenarios() -> Vec<UnitScenario> {
    let base = UnitScenario {
        name: "sieve unit: fileinto A, fileinto B :flags S, keep".into(),
        folders: vec!["A", "B"],
        copies: vec![(Some("A"), None), (Some("B"), Some("S")), (None, None)],
        appears: vec![],
        redirects: vec![],
        retry_copies: None,
        tracks: vec![],
        vacation: false,
        quota: false,
        caps: Capabilities::LINUX_LOCAL,
        nfs: false,
        strategy: None,
        persistence: Persistence::P2,
    };
    let three = UnitScenario {
        name: "sieve unit: 3 fileinto (one flagged), keep, quota".into(),
        folders: vec!["A", "B", "C"],
        copies: vec![
            (Some("A"), None),
            (Some("B"), Some("FS")),
            (Some("C"), None),
            (None, None),
        ],
        quota: true,
        ..base.clone()
    };
    let redirect = UnitScenario {
        name: "sieve unit: fileinto A, keep, redirect; the retry's script decides only keep".into(),
        copies: vec![(Some("A"), None), (None, Some("S"))],
        redirects: vec!["x@example.org"],
        retry_copies: Some(vec![(None, None)]),
        ..base.clone()
    };
    let missing = UnitScenario {
        name: "sieve unit: fileinto a missing folder (to INBOX), fileinto A, keep".into(),
        folders: vec!["A"],
        copies: vec![(Some("Gone"), None), (Some("A"), None), (None, None)],
        ..base.clone()
    };
    // No keep: each missing folder's copy falls back to INBOX, and INBOX holds one.
    let two_missing = UnitScenario {
        name: "sieve unit: fileinto two missing folders :flags S and F (to INBOX once)".into(),
        folders: vec![],
        copies: vec![(Some("Gone"), Some("S")), (Some("Lost"), Some("F"))],
        ..base.clone()
    };
    // The keep's flags, not the missing folder's that comes first.
    let flagged_keep = UnitScenario {
        name: "sieve unit: fileinto a missing folder :flags S, keep :flags F (INBOX: F)".into(),
        folders: vec![],
        copies: vec![(Some("Gone"), Some("S")), (None, Some("F"))],
        ..base.clone()
    };
    // The missing folder is created before the retry: the copy the attempt that died sent
    // to INBOX stays the only one.
    let appears = UnitScenario {
        name: "sieve unit: fileinto a missing folder (to INBOX), created before the retry".into(),
        folders: vec![],
        copies: vec![(Some("Late"), Some("S"))],
        appears: vec!["Late"],
        ..base.clone()
    };
    let renamed = UnitScenario {
        name: "sieve unit: fileinto A, fileinto B :flags S, keep; named tmp files, quota".into(),
        quota: true,
        caps: Capabilities {
            anonymous_tmp: false,
            ..Capabilities::LINUX_LOCAL
        },
        ..base.clone()
    };
    let remember = UnitScenario {
        name: "sieve unit: fileinto A, keep, duplicate id, vacation reply".into(),
        folders: vec!["A"],
        copies: vec![(Some("A"), None), (None, None)],
        tracks: vec!["duplicate\0\0<unit@sim>"],
        vacation: true,
        ..base.clone()
    };
    // On the NFS model (no unnamed tmp files, no rename-noreplace; the drivers' `Locked`
    // delivery), with each link's reply lost in turn.
    let on_nfs = |s: &UnitScenario, quota: bool| UnitScenario {
        name: format!("{}; NFS, each link's reply lost in turn", s.name),
        quota,
        caps: Capabilities::POSIX,
        nfs: true,
        ..s.clone()
    };
    // Three folders and a quota: P2's crash images of four maildirs are too many (611,668
    // crash states, 50 s in release); a journal's prefix (P1) instead.
    let three_p1 = UnitScenario {
        name: format!("{}; P1", three.name),
        persistence: Persistence::P1,
        ..three.clone()
    };
    let nfs = [
        on_nfs(&three_p1, true),
        on_nfs(&redirect, false),
        on_nfs(&missing, false),
        on_nfs(&appears, false),
        on_nfs(&remember, true),
    ];
    let mut all = vec![
        base,
        three,
        redirect,
        missing,
        two_missing,
        flagged_keep,
        appears.clone(),
        renamed,
        remember,
    ];
    all.extend(nfs);
    all
}
