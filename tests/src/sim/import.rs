//! `mdeliver -M` under the simulator: the core's mbox import ([`import`], the function the
//! Linux binary and the WASI module run) of a two-message mbox whose messages carry dates, so
//! that each delivery asks for [`Op::SetMtime`](mdeliver_core::fs::Op::SetMtime) between its
//! write and its flush. A renaming reader acts before any one of the import's operations, and
//! the import is interrupted at every operation:
//! - by a crash: the process dies there (every later operation fails without effect) and the
//!   maildir reboots into every image the persistence model allows; the rerun imports the mbox
//!   from the start of the first message the import had not reported committed (what the
//!   person running it was told);
//! - by a fault: that one operation fails, and the rerun imports from the offset the
//!   import's summary names ([`Summary::resume`](mdeliver_core::mbox::import::Summary)).
//!
//! After the rerun: every file in new/ and cur/ is a whole message (4), each message is stored
//! exactly once, except a message the import had not reported committed when it crashed (or
//! the unflushed batch after a failed flush, which is redone): at most twice (8); every stored
//! message carries its date as its modification time, and the time was set after the file's
//! last write and before its flush (12); a later import succeeds (10); the filesystem's own
//! checks (3, 7) hold throughout.
//!
//! The import's operations go through the test kit's [`Hooked`] over [`SimFs`]: the hook
//! counts them, runs the reader, crashes or fails the chosen one, and checks each `SetMtime`
//! against the file's state in the simulated filesystem.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use crate::sim::env::SimEnv;
use crate::sim::fs::{Persistence, Semantics, SimFs};
use crate::sim::Invariant;
use mdeliver_core::fs::{Capabilities, Dir, Fs};
use mdeliver_core::machine::deliver::{Durability, Options};
use mdeliver_core::mbox::import::{import, ImportEvents, ImportOptions};
use mdeliver_core::mbox::Quoting;
use mdeliver_core::testkit::{Call, Hook, Hooked};
use mdeliver_core::ErrorKind;

/// The messages of the mbox: (their text after the `From ` line, what is stored, the date).
const MESSAGES: [(&str, &str, i64); 2] = [
    (
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <i0@sim>\nSubject: 0\n\nbody 0\n",
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <i0@sim>\nSubject: 0\n\nbody 0\n",
        1_700_000_000,
    ),
    (
        "Date: Sat, 01 Jan 2000 00:00:00 +0000\nStatus: RO\nSubject: 1\n\nbody 1\n",
        "Date: Sat, 01 Jan 2000 00:00:00 +0000\nSubject: 1\n\nbody 1\n",
        946_684_800,
    ),
];

/// The filesystem's clock: what a file's modification time is unless it is set.
const FS_NOW: u64 = 1_800_000_000;

/// The mbox, and the byte offset where each message's `From ` line begins.
pub fn mbox() -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for (text, _, _) in MESSAGES {
        starts.push(out.len());
        out.extend_from_slice(b"From sender@example.org Sat Jan  1 00:00:00 2000\n");
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    (out, starts)
}

/// An import scenario.
#[derive(Clone, Debug)]
pub struct ImportScenario {
    /// Name for reports.
    pub name: String,
    /// What the filesystem offers.
    pub caps: Capabilities,
    /// A reader renames new/'s first message into cur/ before one of the import's operations
    /// (every position is tried).
    pub reader: bool,
    /// Interrupt by a fault of one operation instead of a crash.
    pub faults: bool,
    /// Persistence model of crash images.
    pub persistence: Persistence,
    /// A mutant for the checker's own test: each file is flushed just before its `SetMtime`
    /// (as a machine that flushed first would), which invariant 12 must catch.
    pub flush_before_mtime: bool,
    /// The filesystem refuses `sync_all` (as WASI does): each file of the window is flushed by
    /// itself instead of all at once.
    pub no_sync_all: bool,
}

/// Where a run is interrupted and the reader acts, as operation numbers (0-based).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The process dies at this operation.
    pub crash_at: Option<u64>,
    /// This operation fails (once).
    pub fault_at: Option<u64>,
    /// The reader acts just before this operation.
    pub reader_at: Option<u64>,
    /// [`ImportScenario::flush_before_mtime`].
    pub flush_before_mtime: bool,
    /// [`ImportScenario::no_sync_all`].
    pub no_sync_all: bool,
}

/// The hook: counts the import's operations and does what the [`Plan`] says at each.
struct Harness {
    plan: Plan,
    ops: u64,
    dead: bool,
    /// The dates whose `SetMtime` was failed on purpose (their message keeps the file's time).
    mtime_failed: Vec<i64>,
    /// The first `SetMtime` found out of place.
    misplaced: Option<String>,
}

impl Hook<SimFs> for Harness {
    fn before(&mut self, fs: &mut SimFs, call: &mut Call<'_>) -> Result<(), ErrorKind> {
        if self.dead {
            return Err(ErrorKind::Io);
        }
        // Without a whole-filesystem flush (as in the WASI module) the import flushes each
        // file by itself: the refusal is not an operation.
        if self.plan.no_sync_all && matches!(call, Call::SyncAll) {
            return Err(ErrorKind::Unsupported);
        }
        let n = self.ops;
        self.ops += 1;
        if self.plan.reader_at == Some(n) {
            reader_step(fs);
        }
        if self.plan.crash_at == Some(n) {
            self.dead = true;
            return Err(ErrorKind::Io);
        }
        if let Call::SetMtime(id, secs) = *call {
            if let (true, Some((_, ino))) = (self.plan.flush_before_mtime, id) {
                if let Some(inode) = fs.inodes.get_mut(&ino) {
                    inode.synced = inode.data.clone();
                }
            }
            self.check_set_mtime(fs, id, secs);
            if self.plan.fault_at == Some(n) {
                self.mtime_failed.push(secs);
            }
        }
        if self.plan.fault_at == Some(n) {
            return Err(ErrorKind::Io);
        }
        Ok(())
    }
}

impl Harness {
    fn new(plan: Plan) -> Harness {
        Harness {
            plan,
            ops: 0,
            dead: false,
            mtime_failed: Vec::new(),
            misplaced: None,
        }
    }

    /// `SetMtime` comes after the file's last write (it holds the whole message) and before
    /// its flush (nothing of it is durable yet).
    fn check_set_mtime(&mut self, fs: &SimFs, id: Option<(u64, u64)>, secs: i64) {
        let Some((_, ino)) = id else {
            self.misplaced
                .get_or_insert_with(|| format!("SetMtime {secs} on a file without an id"));
            return;
        };
        let Some(inode) = fs.inodes.get(&ino) else {
            return;
        };
        let whole = MESSAGES
            .iter()
            .any(|(_, stored, date)| *date == secs && inode.data == stored.as_bytes());
        if !whole || !inode.synced.is_empty() {
            self.misplaced.get_or_insert_with(|| {
                format!(
                    "SetMtime {secs} on a file holding {} bytes ({} flushed): not between its \
                     last write and its flush",
                    inode.data.len(),
                    inode.synced.len()
                )
            });
        }
    }
}

/// The reader renames the first message of new/ into cur/ with the seen flag.
fn reader_step(fs: &mut SimFs) {
    let agent = fs.agent;
    fs.agent = 200;
    let first = fs.names(Dir::New).next().map(|(n, _)| n.to_string());
    if let Some(name) = first {
        let _ = fs.rename((Dir::New, &name), (Dir::Cur, &format!("{name}:2,S")), false);
    }
    fs.agent = agent;
}

/// What the person running the import was told: messages committed.
#[derive(Default)]
struct Told {
    committed: u64,
}

impl ImportEvents for Told {
    fn committed(&mut self, count: u64) {
        self.committed += count;
    }
}

/// One import run's end.
struct Ran {
    fs: SimFs,
    harness: Harness,
    committed: u64,
    resume: Option<u64>,
    /// The last batch's directory flush failed (its messages are redone).
    flush_failed: bool,
    stopped: bool,
}

/// Imports `input` into `fs` as `-M` does (`DeferDirSync`), the operations hooked by `plan`.
fn run(fs: SimFs, input: &[u8], plan: Plan, agent: u8) -> Ran {
    let mut hooked = Hooked {
        fs,
        hook: Harness::new(plan),
    };
    hooked.fs.agent = agent;
    hooked.fs.now = FS_NOW;
    let mut env = SimEnv::unique(agent, 13);
    let settings = ImportOptions {
        quoting: Quoting::Mboxrd,
        delivery: Options {
            durability: Durability::DeferDirSync,
            ..Options::default()
        },
        quota: None,
    };
    let mut told = Told::default();
    let (mut rbuf, mut wbuf) = ([0u8; 4096], [0u8; 4096]);
    let s = import(
        &mut hooked,
        &mut env,
        &settings,
        input,
        &mut rbuf,
        &mut wbuf,
        &mut told,
    );
    Ran {
        fs: hooked.fs,
        harness: hooked.hook,
        committed: told.committed,
        resume: s.resume,
        flush_failed: s.flush.is_some(),
        stopped: s.stop.is_some(),
    }
}

/// A broken invariant; its schedule (`import1:crash=K|fault=K;reader=R|-;image=S|-`) replays
/// with [`replay`].
pub type ImportViolation = super::Violation;

/// What an exploration covered and found.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// Interrupted runs (plus the uninterrupted one of each reader position).
    pub executions: u64,
    /// Distinct states the interruptions left.
    pub states: u64,
    /// Crash images (or, with faults, interrupted states) recovered from and checked.
    pub crash_states: u64,
    /// Operations of an uninterrupted import.
    pub operations: u64,
    /// Messages an uninterrupted import left in new/ and in cur/.
    pub stored: (usize, usize),
    /// Violations, in the order found.
    pub violations: Vec<ImportViolation>,
}

/// The rerun from the offset `from` (none: nothing to redo), then every check. `may_repeat`
/// gives, per message, whether it may be stored twice; `kept_time`, the dates whose
/// `SetMtime` failed on purpose.
fn recover(
    cfg: &ImportScenario,
    mut fs: SimFs,
    from: Option<usize>,
    may_repeat: &dyn Fn(usize) -> bool,
    kept_time: &[i64],
) -> Option<(Invariant, String)> {
    let (input, _) = mbox();
    let plain = Plan {
        no_sync_all: cfg.no_sync_all,
        ..Plan::default()
    };
    if let Some(e) = fs.events.first() {
        return Some((
            Invariant::from_number(e.invariant).unwrap_or(Invariant::Confinement),
            e.what.clone(),
        ));
    }
    if let Some(from) = from {
        let r = run(fs, &input[from..], plain, 60);
        if r.stopped || r.flush_failed {
            return Some((
                Invariant::NoBlockingGarbage,
                format!("the rerun from byte {from} did not import the rest"),
            ));
        }
        if let Some(m) = r.harness.misplaced {
            return Some((Invariant::MtimeBeforeFlush, format!("in the rerun: {m}")));
        }
        fs = r.fs;
    }
    let mut copies = [0u32; MESSAGES.len()];
    for d in [Dir::New, Dir::Cur] {
        for (name, ino) in fs.names(d) {
            let inode = &fs.inodes[&ino];
            let Some(m) = MESSAGES
                .iter()
                .position(|(_, stored, _)| inode.data == stored.as_bytes())
            else {
                return Some((
                    Invariant::NoPartial,
                    format!(
                        "{}/{name} holds {} bytes that are no message",
                        d.as_str(),
                        inode.data.len()
                    ),
                ));
            };
            copies[m] += 1;
            let date = MESSAGES[m].2;
            if inode.mtime != date as u64 && !kept_time.contains(&date) {
                return Some((
                    Invariant::MtimeBeforeFlush,
                    format!(
                        "{}/{name} (message {m}) has the time {}, not its date {date}",
                        d.as_str(),
                        inode.mtime
                    ),
                ));
            }
        }
    }
    for (m, &n) in copies.iter().enumerate() {
        let most = if may_repeat(m) { 2 } else { 1 };
        if n == 0 || n > most {
            return Some((
                Invariant::ExactlyOnce,
                format!("message {m} is stored {n} times after the rerun"),
            ));
        }
    }
    // A later import is not blocked by anything left behind.
    let later = b"From x@example.org Sat Jan  1 00:00:00 2000\nSubject: later\n\nlater\n";
    let r = run(fs, later, plain, 61);
    if r.stopped || r.flush_failed {
        return Some((
            Invariant::NoBlockingGarbage,
            "a later import of another message failed".into(),
        ));
    }
    None
}

impl ImportScenario {
    fn initial(&self) -> SimFs {
        SimFs::new(Semantics::Posix, self.caps, self.persistence)
    }

    /// The reader positions tried for an import of `ops` operations.
    fn reader_positions(&self, ops: u64) -> Vec<Option<u64>> {
        let mut v = vec![None];
        if self.reader {
            v.extend((0..ops).map(Some));
        }
        v
    }

    /// The interruption at `k` (a crash, or a fault).
    fn interrupt(&self, k: u64, reader_at: Option<u64>) -> Plan {
        Plan {
            crash_at: (!self.faults).then_some(k),
            fault_at: self.faults.then_some(k),
            reader_at,
            flush_before_mtime: self.flush_before_mtime,
            no_sync_all: self.no_sync_all,
        }
    }
}

fn schedule(cfg: &ImportScenario, k: u64, plan: Plan, image: Option<u64>) -> String {
    let show = |x: Option<u64>| x.map_or("-".to_string(), |x| x.to_string());
    let kind = if cfg.faults { "fault" } else { "crash" };
    format!(
        "import1:{kind}={k};reader={};image={}",
        show(plan.reader_at),
        show(image)
    )
}

/// Checks one interrupted run: its crash images (or, with a fault, the state it left).
fn check_run(
    cfg: &ImportScenario,
    r: &Ran,
    k: u64,
    plan: Plan,
    report: &mut ImportReport,
) -> Vec<ImportViolation> {
    let (_, starts) = mbox();
    let mut found = Vec::new();
    if let Some(m) = &r.harness.misplaced {
        found.push(ImportViolation {
            invariant: Invariant::MtimeBeforeFlush,
            what: m.clone(),
            schedule: schedule(cfg, k, plan, None),
        });
    }
    if cfg.faults {
        report.crash_states += 1;
        let from = r.resume.map(|o| o as usize);
        let redo_from = from.unwrap_or(usize::MAX);
        let unflushed = r.flush_failed;
        let repeat = move |m: usize| unflushed && starts[m] >= redo_from;
        if let Some((invariant, what)) =
            recover(cfg, r.fs.clone(), from, &repeat, &r.harness.mtime_failed)
        {
            found.push(ImportViolation {
                invariant,
                what,
                schedule: schedule(cfg, k, plan, None),
            });
        }
        return found;
    }
    // What the person was told survives the crash: the rest begins at the first message not
    // reported committed.
    let committed = r.committed as usize;
    let from = starts.get(committed).copied();
    let repeat = move |m: usize| m >= committed;
    for spec in r.fs.reboot_specs() {
        report.crash_states += 1;
        if let Some((invariant, what)) = recover(cfg, r.fs.reboot(spec), from, &repeat, &[]) {
            found.push(ImportViolation {
                invariant,
                what: format!("after a crash: {what}"),
                schedule: schedule(cfg, k, plan, Some(spec)),
            });
        }
    }
    found
}

/// Explores `cfg`: for every reader position, the import interrupted at each of its
/// operations in turn until one run is not interrupted; each interrupted state (new ones
/// only) recovered and checked.
pub fn explore(cfg: &ImportScenario) -> ImportReport {
    let (input, _) = mbox();
    let mut report = ImportReport::default();
    let plain = Plan {
        reader_at: None,
        ..cfg.interrupt(u64::MAX, None)
    };
    let clean = run(cfg.initial(), &input, plain, 1);
    report.operations = clean.harness.ops;
    report.stored = (
        clean.fs.names(Dir::New).count(),
        clean.fs.names(Dir::Cur).count(),
    );
    let mut seen = HashSet::new();
    for reader_at in cfg.reader_positions(clean.harness.ops) {
        for k in 0.. {
            let plan = cfg.interrupt(k, reader_at);
            let r = run(cfg.initial(), &input, plan, 1);
            report.executions += 1;
            if r.harness.ops <= k {
                // Not interrupted: the import ran to its end.
                let repeat = |_: usize| false;
                let full = Ran { resume: None, ..r };
                if full.stopped || full.flush_failed {
                    report.violations.push(ImportViolation {
                        invariant: Invariant::NoBlockingGarbage,
                        what: "the import failed without an interruption".into(),
                        schedule: schedule(cfg, k, plan, None),
                    });
                } else if let Some((invariant, what)) = recover(cfg, full.fs, None, &repeat, &[]) {
                    report.violations.push(ImportViolation {
                        invariant,
                        what,
                        schedule: schedule(cfg, k, plan, None),
                    });
                }
                break;
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.fs.hash(&mut h);
            (r.committed, r.resume, r.flush_failed).hash(&mut h);
            r.harness.mtime_failed.hash(&mut h);
            if !seen.insert(h.finish()) {
                continue;
            }
            report.states += 1;
            let found = check_run(cfg, &r, k, plan, &mut report);
            report.violations.extend(found);
        }
    }
    report
}

/// Replays a printed schedule: the violation it shows, if any.
pub fn replay(cfg: &ImportScenario, schedule: &str) -> Option<(Invariant, String)> {
    let rest = schedule
        .strip_prefix("import1:")
        .expect("an import1 schedule");
    let mut parts = rest.split(';');
    let (_, k) = parts.next()?.split_once('=')?;
    let k: u64 = k.parse().ok()?;
    let num = |p: Option<&str>| -> Option<u64> { p?.split_once('=')?.1.parse().ok() };
    let reader_at = num(parts.next());
    let image = num(parts.next());
    let plan = cfg.interrupt(k, reader_at);
    let (input, _) = mbox();
    let r = run(cfg.initial(), &input, plan, 1);
    let mut report = ImportReport::default();
    let found = check_run(cfg, &r, k, plan, &mut report);
    let want = format!("image={}", image.map_or("-".into(), |i| i.to_string()));
    found
        .into_iter()
        .find(|v| v.schedule.ends_with(&want))
        .map(|v| (v.invariant, v.what))
}

/// The scenarios of the races table and the tests: unnamed tmp files linked into place, the
/// window flushed at once (`syncfs`), and as in the WASI module (named tmp files, each file
/// flushed by itself), with a crash at every operation (P2) under a renaming reader; and a
/// fault at every operation (a failed `syncfs` also makes the window flush file by file).
pub fn scenarios() -> Vec<ImportScenario> {
    // What the WASI module's filesystem offers: hard links, no unnamed tmp files, no
    // rename-noreplace, no whole-filesystem flush.
    let wasi = Capabilities {
        anonymous_tmp: false,
        rename_noreplace: false,
        ..Capabilities::LINUX_LOCAL
    };
    vec![
        ImportScenario {
            name: "mbox import -M, 2 dated messages, renaming reader, crash at every op, P2".into(),
            caps: Capabilities::LINUX_LOCAL,
            reader: true,
            faults: false,
            persistence: Persistence::P2,
            flush_before_mtime: false,
            no_sync_all: false,
        },
        ImportScenario {
            name: "mbox import -M, as in WASI (named tmp files, link publish, no syncfs), \
                   renaming reader, crash at every op, P2"
                .into(),
            caps: wasi,
            reader: true,
            faults: false,
            persistence: Persistence::P2,
            flush_before_mtime: false,
            no_sync_all: true,
        },
        ImportScenario {
            name: "mbox import -M, 2 dated messages, renaming reader, fault at every op".into(),
            caps: Capabilities::LINUX_LOCAL,
            reader: true,
            faults: true,
            persistence: Persistence::P2,
            flush_before_mtime: false,
            no_sync_all: false,
        },
    ]
}
