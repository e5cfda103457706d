//! Differential test: the delivery machine compiled into the WASI module makes exactly the
//! decisions the native one makes. The simulator's exhaustive search over two deliverers and a
//! reader (every publish path, unique and colliding names, and NFS-like semantics) hands every
//! final state's deliverer histories (start environment + every operation result fed) to this
//! test, which replays each history on a native machine and, through the module's exported
//! stepping interface, on the wasm machine: every operation, every environment value drawn and
//! the outcome must be identical. Identical operations on the same results mean identical
//! final maildir states.
//!
//! The composed MTA machine and a Sieve script's unit are stepped side by side the same way
//! (`wasm_mta_machine_...`, `wasm_unit_machine_...`), on the simulator's filesystem with
//! faults.
//!
//! The search uses the default options; two smaller tests cover the rest of the ABI
//! (`mdeliver_core::wire`): every strategy, durability, flag set, separator and capability
//! set crossing it with byte-identical steps, and its error codes (bad handles, encodings and
//! environment kinds; divergence).

use crate::wasi_support;

use mdeliver_core::env::{Env, Timestamp};
use mdeliver_core::fs::{perform, Dir, Slots};
use mdeliver_core::fs::{Capabilities, Op, OpResult};
use mdeliver_core::machine::dedup::DedupOptions;
use mdeliver_core::machine::dedup::Key;
use mdeliver_core::machine::deliver::Durability;
use mdeliver_core::machine::deliver::{Delivery, Options, Step, Strategy};
use mdeliver_core::machine::mta::{Accepted, Mta, MtaOptions, MtaOutcome, Order};
use mdeliver_core::machine::quota::{CheckOptions, MAILDIRSIZE, RECALC_SIZE};
use mdeliver_core::machine::unit::{CopyDone, Performed, Plan, Reply, Wants, RECORD_MAX};
use mdeliver_core::machine::Machine;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::wire::{
    self, Answer, CallError, EnvValue, MtaStart, MtaStep, Start, UnitStart, UnitStep, STEP_BUF_LEN,
};
use mdeliver_core::Fs;
use mdeliver_core::{Error, ErrorKind, Flags};
use mdeliver_tests::sim::env::SimEnv;
use mdeliver_tests::sim::explore::explore;
use mdeliver_tests::sim::fs::{Persistence, Semantics, SimFs};
use mdeliver_tests::sim::rng::Rng;
use mdeliver_tests::sim::scenarios::{nfs, path_caps, two_plus_reader};
use mdeliver_tests::sim::world::{Agent, ReaderMode, World};
use mdeliver_tests::wrap::{Fault, FaultFs, FaultPlan, OpKind};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use wasmtime::{Instance, Store, TypedFunc};

/// Records every value the machine draws from its environment, in order, for the module's
/// `mdeliver_step_env_push`.
struct Recording {
    inner: SimEnv,
    log: Vec<EnvValue>,
}

impl Env for Recording {
    fn now(&mut self) -> Timestamp {
        let t = self.inner.now();
        self.log.push(EnvValue::Now(t));
        t
    }
    fn random_u64(&mut self) -> u64 {
        let r = self.inner.random_u64();
        self.log.push(EnvValue::Random(r));
        r
    }
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }
    fn host(&self) -> &str {
        self.inner.host()
    }
    fn next_counter(&mut self) -> u64 {
        let c = self.inner.next_counter();
        self.log.push(EnvValue::Counter(c));
        c
    }
    fn sleep(&mut self, millis: u32) {
        self.inner.sleep(millis)
    }
}

struct Module {
    store: Store<wasi_support::Host>,
    buf: usize,
    instance: Instance,
    new: TypedFunc<u32, i32>,
    new_mta: TypedFunc<u32, i32>,
    observe: TypedFunc<(u32, u32), i32>,
    env_push: TypedFunc<(u32, u64, u64), i32>,
    poll: TypedFunc<u32, i32>,
    feed: TypedFunc<(u32, u32), i32>,
    drop: TypedFunc<u32, ()>,
    set_mtime: TypedFunc<(u32, i64), i32>,
    new_unit: TypedFunc<u32, i32>,
    answer: TypedFunc<(u32, u32), i32>,
    performed: TypedFunc<u32, i32>,
}

impl Module {
    fn load() -> Module {
        let (mut store, instance) = wasi_support::instantiate();
        let buf_fn = instance
            .get_typed_func::<(), i32>(&mut store, "mdeliver_step_buf")
            .unwrap();
        let buf = buf_fn.call(&mut store, ()).unwrap() as usize;
        Module {
            new: instance
                .get_typed_func(&mut store, "mdeliver_step_new")
                .unwrap(),
            new_mta: instance
                .get_typed_func(&mut store, "mdeliver_step_new_mta")
                .unwrap(),
            observe: instance
                .get_typed_func(&mut store, "mdeliver_step_observe")
                .unwrap(),
            env_push: instance
                .get_typed_func(&mut store, "mdeliver_step_env_push")
                .unwrap(),
            poll: instance
                .get_typed_func(&mut store, "mdeliver_step_poll")
                .unwrap(),
            feed: instance
                .get_typed_func(&mut store, "mdeliver_step_feed")
                .unwrap(),
            drop: instance
                .get_typed_func(&mut store, "mdeliver_step_drop")
                .unwrap(),
            set_mtime: instance
                .get_typed_func(&mut store, "mdeliver_step_set_mtime")
                .unwrap(),
            new_unit: instance
                .get_typed_func(&mut store, "mdeliver_step_new_unit")
                .unwrap(),
            answer: instance
                .get_typed_func(&mut store, "mdeliver_step_answer")
                .unwrap(),
            performed: instance
                .get_typed_func(&mut store, "mdeliver_step_performed")
                .unwrap(),
            store,
            buf,
            instance,
        }
    }

    fn memory(&mut self) -> &mut [u8] {
        let mem = self.instance.get_memory(&mut self.store, "memory").unwrap();
        &mut mem.data_mut(&mut self.store)[self.buf..self.buf + STEP_BUF_LEN]
    }

    fn push(&mut self, log: &[EnvValue]) {
        for &v in log {
            let r = self.env_push.call(&mut self.store, v.encode()).unwrap();
            assert_eq!(wire::decode_return(r), Ok(Ok(0)), "env_push {v:?}");
        }
    }

    /// Starts a machine from the bytes of `start`, returning its handle.
    fn start(&mut self, start: &Start<'_>) -> u32 {
        let n = wire::encode_start(start, self.memory()).unwrap();
        let h = self.new.call(&mut self.store, n as u32).unwrap();
        match wire::decode_return(h) {
            Ok(Ok(h)) => h,
            other => panic!("wasm machine refused {start:?}: {other:?}"),
        }
    }

    /// Starts an MTA delivery from the bytes of `start`, returning its handle.
    fn start_mta(&mut self, start: &MtaStart<'_>) -> u32 {
        let n = wire::encode_mta_start(start, self.memory()).unwrap();
        let h = self.new_mta.call(&mut self.store, n as u32).unwrap();
        match wire::decode_return(h) {
            Ok(Ok(h)) => h,
            other => panic!("wasm machine refused {start:?}: {other:?}"),
        }
    }

    /// Shows the machine `h` the message's bytes, in chunks that fit the buffer.
    fn show(&mut self, h: u32, message: &[u8]) {
        for chunk in message.chunks(STEP_BUF_LEN) {
            self.memory()[..chunk.len()].copy_from_slice(chunk);
            let r = self
                .observe
                .call(&mut self.store, (h, chunk.len() as u32))
                .unwrap();
            assert_eq!(wire::decode_return(r), Ok(Ok(0)), "observe");
        }
    }

    fn poll(&mut self, h: u32) -> Vec<u8> {
        let n = self.poll.call(&mut self.store, h).unwrap();
        match wire::decode_return(n) {
            Ok(Ok(n)) => self.memory()[..n as usize].to_vec(),
            other => panic!("wasm poll failed: {other:?}"),
        }
    }
}

fn encode_step(step: &Step<'_>) -> Vec<u8> {
    let mut b = vec![0u8; STEP_BUF_LEN];
    let n = wire::encode_step(step, &mut b).unwrap();
    b.truncate(n);
    b
}

#[derive(Default)]
struct Tally {
    /// Deliverer histories handed over by the search (before removing repeats).
    handed: u64,
    histories: u64,
    steps: u64,
    seen: HashSet<String>,
}

thread_local! {
    static MODULE: RefCell<Option<Module>> = const { RefCell::new(None) };
    static TALLY: RefCell<Tally> = RefCell::new(Tally::default());
}

/// Steps a native and a wasm machine started from `start` and `env0` side by side, answering
/// each operation with `answer` (fed to both), and asserts that every step is byte-identical.
/// Returns the number of operations and the final step.
fn lockstep(
    m: &mut Module,
    start: Start<'_>,
    env0: &SimEnv,
    answer: impl FnMut(usize, &Op<'_>) -> Option<OpResult>,
) -> (usize, Vec<u8>) {
    lockstep_mtime(m, start, None, env0, answer)
}

/// A native [`Delivery`] and the module's, started from the same environment: the native
/// machine's start-up reads are handed to the module before it starts. Gives the native
/// machine, its recording environment and the module's handle.
fn start_both(m: &mut Module, start: &Start<'_>, env0: &SimEnv) -> (Delivery, Recording, u32) {
    let mut rec = Recording {
        inner: env0.clone(),
        log: Vec::new(),
    };
    let native = Delivery::new(start.opts, start.caps, &mut rec);
    m.push(&[EnvValue::Pid(Some(env0.pid))]);
    m.push(&std::mem::take(&mut rec.log));
    let h = m.start(start);
    (native, rec, h)
}

/// [`lockstep`], both machines given the modification time `mtime` (`-M`) right after start.
fn lockstep_mtime(
    m: &mut Module,
    start: Start<'_>,
    mtime: Option<i64>,
    env0: &SimEnv,
    mut answer: impl FnMut(usize, &Op<'_>) -> Option<OpResult>,
) -> (usize, Vec<u8>) {
    let (mut native, mut rec, h) = start_both(m, &start, env0);
    if let Some(secs) = mtime {
        assert!(native.set_mtime(secs));
        let r = m.set_mtime.call(&mut m.store, (h, secs)).unwrap();
        assert_eq!(wire::decode_return(r), Ok(Ok(1)), "set_mtime");
    }
    let mut i = 0;
    loop {
        let step = native.poll();
        let ours = encode_step(&step);
        let theirs = m.poll(h);
        assert_eq!(ours, theirs, "step {i} differs: native {step:?}");
        let Step::Op(op) = step else {
            m.drop.call(&mut m.store, h).unwrap();
            return (i, ours);
        };
        let r = answer(i, &op).unwrap_or_else(|| panic!("no result for step {i}: {op:?}"));
        if let Op::Sleep { millis } = op {
            rec.sleep(millis);
        }
        native.feed(r, &mut rec);
        m.push(&std::mem::take(&mut rec.log));
        let n = wire::encode_result(r, m.memory()).unwrap();
        let fed = m.feed.call(&mut m.store, (h, n as u32)).unwrap();
        assert_eq!(wire::decode_return(fed), Ok(Ok(0)), "wasm feed at step {i}");
        i += 1;
    }
}

/// Replays one deliverer's history on both machines, asserting identical steps.
fn compare(caps: Capabilities, env0: &SimEnv, results: &[OpResult]) {
    let key = format!("{caps:?}{env0:?}{results:?}");
    let new = TALLY.with(|t| {
        let mut t = t.borrow_mut();
        t.handed += 1;
        t.seen.insert(key)
    });
    if !new {
        return;
    }
    MODULE.with(|m| {
        let mut m = m.borrow_mut();
        let m = m.get_or_insert_with(Module::load);
        let start = Start {
            opts: Options {
                strategy: Strategy::Exclusive,
                ..Options::default()
            },
            caps,
            host: &env0.host,
        };
        let (ops, _) = lockstep(m, start, env0, |i, _| results.get(i).copied());
        assert_eq!(
            ops,
            results.len(),
            "the machines finished before the history: {results:?}"
        );
        TALLY.with(|t| {
            let mut t = t.borrow_mut();
            t.histories += 1;
            t.steps += results.len() as u64 + 1;
        });
    });
}

/// A filesystem on which everything works and nothing exists yet.
fn all_well(_: usize, op: &Op<'_>) -> Option<OpResult> {
    Some(match op {
        Op::CreateExclusive { .. } | Op::CreateTruncate { .. } | Op::CreateAnonymous { .. } => {
            OpResult::Created { id: None }
        }
        Op::WriteMessage => OpResult::Written {
            size: 5,
            crlf_size: 6,
        },
        Op::Stat { .. } => OpResult::Err(ErrorKind::NotFound),
        _ => OpResult::Done,
    })
}

#[test]
fn every_option_crosses_the_abi() {
    let mut m = Module::load();
    let env0 = SimEnv::unique(1, 7);
    let mut no_links = Capabilities::POSIX;
    no_links.hard_links = false;
    let mut delivered = HashSet::new();
    for strategy in wire::STRATEGIES {
        for durability in wire::DURABILITIES {
            for flags in [None, Some(Flags::parse("SF").unwrap())] {
                for sep in [b':', b';'] {
                    for caps in [Capabilities::LINUX_LOCAL, Capabilities::POSIX, no_links] {
                        let opts = Options {
                            strategy,
                            durability,
                            flags,
                            sep: InfoSep::new(sep).unwrap(),
                            max_attempts: 3,
                            lock_stale_secs: 60,
                            lock_timeout_ms: 3_000,
                            lock_poll_ms: 500,
                        };
                        let start = Start {
                            opts,
                            caps,
                            host: &env0.host,
                        };
                        let (_, done) = lockstep(&mut m, start, &env0, all_well);
                        if let Ok(Step::Done(Ok(d))) = wire::decode_step(&done) {
                            delivered.insert(d.name.as_str().to_string());
                        }
                    }
                }
            }
        }
    }
    // The flags and the separator reached the module's machine: its names carry them.
    for suffix in [":2,FS", ";2,FS"] {
        assert!(
            delivered.iter().any(|n| n.ends_with(suffix)),
            "no delivery named *{suffix}: {delivered:?}"
        );
    }
}

/// `-M`'s modification time crosses the ABI: with every strategy the module's machine asks
/// for `SetMtime` with the time given, after the write and before the file's flush, step for
/// step as the native one; given after the write, it is refused on both sides.
#[test]
fn a_set_mtime_crosses_the_abi() {
    let mut m = Module::load();
    let env0 = SimEnv::unique(1, 7);
    for strategy in wire::STRATEGIES {
        let start = Start {
            opts: Options {
                strategy,
                ..Options::default()
            },
            caps: Capabilities::LINUX_LOCAL,
            host: &env0.host,
        };
        let mut ops = Vec::new();
        let (_, done) = lockstep_mtime(&mut m, start, Some(1_234_567_890), &env0, |i, op| {
            ops.push(format!("{op:?}"));
            all_well(i, op)
        });
        assert!(
            matches!(wire::decode_step(&done), Ok(Step::Done(Ok(_)))),
            "{strategy:?}: {ops:?}"
        );
        let at = ops
            .iter()
            .position(|o| o == "SetMtime { secs: 1234567890 }")
            .unwrap_or_else(|| panic!("{strategy:?}: no SetMtime in {ops:?}"));
        assert_eq!(
            (ops[at - 1].as_str(), ops[at + 1].as_str()),
            ("WriteMessage", "SyncFile"),
            "{strategy:?}"
        );
    }
    // Too late: once the write is fed, neither machine takes a time.
    let start = Start {
        opts: Options::default(),
        caps: Capabilities::LINUX_LOCAL,
        host: &env0.host,
    };
    let (mut native, mut rec, h) = start_both(&mut m, &start, &env0);
    for i in 0.. {
        let Step::Op(op) = native.poll() else {
            panic!("finished before writing")
        };
        let r = all_well(i, &op).unwrap();
        let wrote = matches!(op, Op::WriteMessage);
        native.feed(r, &mut rec);
        m.push(&std::mem::take(&mut rec.log));
        let n = wire::encode_result(r, m.memory()).unwrap();
        let fed = m.feed.call(&mut m.store, (h, n as u32)).unwrap();
        assert_eq!(wire::decode_return(fed), Ok(Ok(0)));
        if wrote {
            break;
        }
    }
    assert!(!native.set_mtime(1));
    let r = m.set_mtime.call(&mut m.store, (h, 1)).unwrap();
    assert_eq!(
        wire::decode_return(r),
        Ok(Ok(0)),
        "set_mtime after the write"
    );
    m.drop.call(&mut m.store, h).unwrap();
}

#[test]
fn the_abi_reports_bad_input_and_divergence() {
    let mut m = Module::load();
    let bad = Ok(Err(CallError::BadInput));
    let r = m.poll.call(&mut m.store, u32::MAX).unwrap();
    assert_eq!(wire::decode_return(r), bad, "poll of an unknown handle");
    let r = m.feed.call(&mut m.store, (u32::MAX, 1)).unwrap();
    assert_eq!(wire::decode_return(r), bad, "feed of an unknown handle");
    let r = m.env_push.call(&mut m.store, (u32::MAX, 0, 0)).unwrap();
    assert_eq!(wire::decode_return(r), bad, "an unknown environment kind");
    let env0 = SimEnv::unique(2, 9);
    let start = Start {
        opts: Options::default(),
        caps: Capabilities::POSIX,
        host: &env0.host,
    };
    let n = wire::encode_start(&start, m.memory()).unwrap();
    m.memory()[0] = u8::MAX; // the strategy's byte: no such strategy
    let r = m.new.call(&mut m.store, n as u32).unwrap();
    assert_eq!(
        wire::decode_return(r),
        bad,
        "a start with an unknown strategy"
    );
    // A machine whose environment is never pushed diverges on its first feed.
    let h = m.start(&start);
    assert!(matches!(wire::decode_step(&m.poll(h)), Ok(Step::Op(_))));
    m.memory()[0] = u8::MAX; // no such result
    let r = m.feed.call(&mut m.store, (h, 1)).unwrap();
    assert_eq!(wire::decode_return(r), bad, "an unknown result");
    let n = wire::encode_result(OpResult::Created { id: None }, m.memory()).unwrap();
    let r = m.feed.call(&mut m.store, (h, n as u32)).unwrap();
    assert_eq!(wire::decode_return(r), Ok(Err(CallError::Diverged)));
    // A unit's calls, on a delivery: refused.
    let k = wire::encode_answer(&Answer::Sent(Ok(())), m.memory()).unwrap();
    let r = m.answer.call(&mut m.store, (h, k as u32)).unwrap();
    assert_eq!(wire::decode_return(r), bad, "an answer to a delivery");
    let r = m.performed.call(&mut m.store, h).unwrap();
    assert_eq!(wire::decode_return(r), bad, "what a delivery performed");
    m.drop.call(&mut m.store, h).unwrap();
    // A unit whose record does not verify is not started; one that has not finished has
    // performed nothing yet, and stays.
    let start = UnitStart {
        key: Key([1; 32]),
        plan: unit_plan("ir"),
        sync: true,
        caps: Capabilities::POSIX,
    };
    let n = wire::encode_unit_start(&start, m.memory()).unwrap();
    m.memory()[n - 2] ^= 1; // a byte of the record's checksum
    let r = m.new_unit.call(&mut m.store, n as u32).unwrap();
    assert_eq!(wire::decode_return(r), bad, "a unit with a torn record");
    let n = wire::encode_unit_start(&start, m.memory()).unwrap();
    let h = m.new_unit.call(&mut m.store, n as u32).unwrap();
    let h = wire::decode_return(h).unwrap().unwrap();
    let r = m.performed.call(&mut m.store, h).unwrap();
    assert_eq!(
        wire::decode_return(r),
        bad,
        "what an unfinished unit performed"
    );
    assert!(matches!(
        wire::decode_unit_step(&m.poll(h)),
        Ok(UnitStep::Op(Op::Read { .. }))
    ));
    let r = m.set_mtime.call(&mut m.store, (h, 0)).unwrap();
    assert_eq!(wire::decode_return(r), bad, "a unit's message time");
    m.drop.call(&mut m.store, h).unwrap();
}

fn on_final(w: &World) {
    let caps = w.sim().capabilities();
    for a in &w.agents {
        if let Agent::Deliver(d) = a {
            compare(caps, &d.history.0, &d.history.1);
        }
    }
}

#[test]
fn wasm_machine_decides_exactly_like_the_native_one() {
    let mut scenarios = Vec::new();
    for path in ["anonymous-link", "rename-noreplace", "link-unlink"] {
        for collide in [false, true] {
            scenarios.push(two_plus_reader(
                path,
                Strategy::Exclusive,
                path_caps(path),
                collide,
                ReaderMode::Core,
            ));
        }
    }
    let mut no_links = Capabilities::POSIX;
    no_links.hard_links = false;
    scenarios.push(two_plus_reader(
        "checked-rename",
        Strategy::Exclusive,
        no_links,
        true,
        ReaderMode::Plain,
    ));
    scenarios.push(nfs(Strategy::Exclusive, true));
    // Every single fault on every operation kind, on every path: the failure, clean-up,
    // fresh-name and downgrade branches.
    let kinds = [
        OpKind::Create,
        OpKind::CreateAnonymous,
        OpKind::Write,
        OpKind::SyncFile,
        OpKind::Close,
        OpKind::LinkAnonymous,
        OpKind::Link,
        OpKind::Rename,
        OpKind::Unlink,
        OpKind::Stat,
        OpKind::SyncDir,
    ];
    for path in ["anonymous-link", "rename-noreplace", "link-unlink"] {
        for op in kinds {
            for kind in [
                ErrorKind::Io,
                ErrorKind::Exists,
                ErrorKind::Unsupported,
                ErrorKind::NotFound,
            ] {
                let mut cfg = two_plus_reader(
                    path,
                    Strategy::Exclusive,
                    path_caps(path),
                    false,
                    ReaderMode::Plain,
                );
                cfg.name = format!("{path} with {kind:?} on the first {op:?}");
                cfg.faults = FaultPlan {
                    script: vec![(op, 0, Fault::Fail(kind))],
                    random: None,
                };
                scenarios.push(cfg);
            }
        }
    }
    let mut total_exec = 0;
    for mut cfg in scenarios {
        cfg.crashes = false; // crash images do not change what the machines are fed
        cfg.on_final = Some(on_final);
        let (handed, before) = TALLY.with(|t| (t.borrow().handed, t.borrow().histories));
        let report = explore(&cfg, 5_000_000);
        assert!(!report.stats.truncated, "{}: search truncated", cfg.name);
        let after = TALLY.with(|t| t.borrow().histories);
        println!(
            "{}: {} executions, {} states, {} new distinct deliverer histories compared",
            cfg.name,
            report.stats.executions,
            report.stats.states,
            after - before
        );
        assert!(
            report.stats.executions > 0,
            "{}: nothing explored",
            cfg.name
        );
        // Without this the test would pass if no final state reached `on_final`, or held no
        // deliverer: nothing would have been compared.
        assert!(
            TALLY.with(|t| t.borrow().handed) > handed,
            "{}: no deliverer history was compared",
            cfg.name
        );
        total_exec += report.stats.executions;
    }
    let (h, s) = TALLY.with(|t| (t.borrow().histories, t.borrow().steps));
    println!("total: {total_exec} executions; {h} distinct histories, {s} steps identical");
}

/// One MTA deliverer replayed in lockstep: the native [`Mta`] performs its operations on the
/// shared filesystem, the module's machine is fed the same results, bytes and environment.
struct Pair {
    native: Mta,
    rec: Recording,
    handle: u32,
    message: Vec<u8>,
    slots: Slots<FaultFs<SimFs>>,
    /// The final step's encoding, once finished.
    done: Option<Vec<u8>>,
}

/// What the lockstep replays of the composed machine covered.
#[derive(Default, Debug)]
struct MtaTally {
    steps: u64,
    ops: BTreeSet<&'static str>,
    outcomes: BTreeSet<String>,
    faults: u32,
}

fn op_name(op: &Op<'_>) -> &'static str {
    match op {
        Op::WriteFile { .. } => "WriteFile",
        Op::Append { .. } => "Append",
        Op::Read { .. } => "Read",
        Op::OpenDir { .. } => "OpenDir",
        Op::NextEntry => "NextEntry",
        Op::CloseDir => "CloseDir",
        Op::SetMtime { .. } => "SetMtime",
        Op::Sleep { .. } => "Sleep",
        Op::WriteMessage => "WriteMessage",
        _ => "other",
    }
}

fn outcome_name(o: &MtaOutcome) -> String {
    match o {
        Ok(Accepted::Stored { quota, .. }) => {
            format!("stored{}", if quota.is_some() { "+quota" } else { "" })
        }
        Ok(Accepted::Duplicate { .. }) => "duplicate".into(),
        Err(e) => format!("{:?} in {:?}", e.kind, e.phase),
    }
}

impl Pair {
    fn start(m: &mut Module, opts: MtaOptions, caps: Capabilities, agent: u8, msg: usize) -> Pair {
        let env0 = SimEnv::unique(agent, 7);
        let mut rec = Recording {
            inner: env0.clone(),
            log: Vec::new(),
        };
        let native = Mta::new(opts, caps, &mut rec);
        m.push(&[EnvValue::Pid(Some(env0.pid))]);
        m.push(&std::mem::take(&mut rec.log));
        let handle = m.start_mta(&MtaStart {
            opts,
            caps,
            host: &env0.host,
        });
        Pair {
            native,
            rec,
            handle,
            message: mta_body(msg),
            slots: Slots::default(),
            done: None,
        }
    }

    /// One step of both machines; asserts that they ask for the same thing.
    fn step(&mut self, m: &mut Module, fs: &mut FaultFs<SimFs>, agent: u8, t: &mut MtaTally) {
        let step = self.native.poll();
        let mut ours = vec![0u8; STEP_BUF_LEN];
        let n = wire::encode_mta_step(&step, &mut ours).unwrap();
        ours.truncate(n);
        let theirs = m.poll(self.handle);
        assert_eq!(
            ours, theirs,
            "MTA step {} differs: native {step:?}",
            t.steps
        );
        t.steps += 1;
        let op = match step {
            MtaStep::Done(o) => {
                t.outcomes.insert(outcome_name(&o));
                m.drop.call(&mut m.store, self.handle).unwrap();
                self.done = Some(ours);
                return;
            }
            MtaStep::Op(op) => op,
        };
        t.ops.insert(op_name(&op));
        fs.inner.agent = agent;
        fs.inner.now = self.rec.inner.secs();
        let mut buf = vec![0u8; RECALC_SIZE];
        let (r, n) = if matches!(op, Op::WriteMessage) {
            // Both machines see the bytes as they stream (the duplicate key).
            self.native.observe(&self.message);
            m.show(self.handle, &self.message);
            let source = &mut &self.message[..];
            perform(
                fs,
                &mut self.rec,
                &mut self.slots,
                Op::WriteMessage,
                source,
                &mut buf,
            )
        } else {
            // The operation borrows the native machine: perform a copy of its encoding.
            let op = wire::decode_op(&theirs[1..]).unwrap();
            perform(
                fs,
                &mut self.rec,
                &mut self.slots,
                op,
                &mut &b""[..],
                &mut buf,
            )
        };
        self.native.feed(r, &buf[..n], &mut self.rec);
        m.push(&std::mem::take(&mut self.rec.log));
        let k = wire::encode_feed(r, &buf[..n], m.memory()).unwrap();
        let fed = m.feed.call(&mut m.store, (self.handle, k as u32)).unwrap();
        assert_eq!(wire::decode_return(fed), Ok(Ok(0)), "wasm feed of {r:?}");
    }
}

/// The message deliverer `m` hands over: its Message-ID is the duplicate key.
fn mta_body(m: usize) -> Vec<u8> {
    format!("Message-ID: <m{m}@differential>\nSubject: {m}\n\nbody {m}\n").into_bytes()
}

/// Deliverers of `messages` on one filesystem (with `faults`), interleaved by `seed` (0: one
/// after the other, each to its end), both machines of each in lockstep.
fn mta_lockstep(
    m: &mut Module,
    opts: MtaOptions,
    maildirsize: Option<&[u8]>,
    messages: &[usize],
    faults: FaultPlan,
    seed: u64,
    t: &mut MtaTally,
) {
    let mut sim = SimFs::new(Semantics::Posix, Capabilities::LINUX_LOCAL, Persistence::P2);
    if let Some(data) = maildirsize {
        sim.seed(Dir::Root, MAILDIRSIZE, data);
    }
    let caps = sim.capabilities();
    let mut fs = FaultFs::new(sim, faults);
    let mut pairs: Vec<Pair> = messages
        .iter()
        .enumerate()
        .map(|(i, &msg)| Pair::start(m, opts, caps, i as u8, msg))
        .collect();
    let mut rng = Rng::new(seed);
    for _ in 0..100_000 {
        let live: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].done.is_none())
            .collect();
        let Some(&first) = live.first() else {
            t.faults += fs.injected;
            return;
        };
        let i = if seed == 0 {
            first
        } else {
            live[rng.below(live.len() as u64) as usize]
        };
        pairs[i].step(m, &mut fs, i as u8, t);
    }
    panic!("the deliveries did not finish in 100000 steps");
}

#[test]
fn wasm_mta_machine_decides_exactly_like_the_native_one() {
    let mut m = Module::load();
    let mut t = MtaTally::default();
    let dedup = DedupOptions {
        poll_ms: 1_000,
        wait_ms: 2_000,
        ..DedupOptions::default()
    };
    let plenty: &[u8] = b"1000000S\n0 0\n";
    // Room for one message: the one after the one that crosses the limit is over quota.
    let one = format!("{}S\n0 0\n", mta_body(0).len() + 10);
    // An unfinished last line: recalculated (listing new/ and cur/, rewriting the file).
    let torn: &[u8] = b"1000000S\n0 0\n12";
    let mut cases: Vec<(MtaOptions, Option<&[u8]>)> = Vec::new();
    for order in [Order::AccountFirst, Order::AccountLast] {
        for (q, d) in [(true, false), (false, true), (true, true)] {
            for file in [plenty, one.as_bytes(), torn] {
                if !q && file != plenty {
                    continue;
                }
                let opts = MtaOptions {
                    delivery: Options {
                        durability: Durability::Full,
                        ..Options::default()
                    },
                    quota: q.then(CheckOptions::default),
                    dedup: d.then_some(dedup),
                    key: None,
                    order,
                };
                cases.push((opts, q.then_some(file)));
            }
        }
    }
    // Faults on the operations the composition adds (and some of the delivery's).
    let kinds = [
        OpKind::Append,
        OpKind::ReadFile,
        OpKind::OpenDir,
        OpKind::ReadDir,
        OpKind::Create,
        OpKind::Write,
        OpKind::Rename,
        OpKind::Link,
        OpKind::Unlink,
        OpKind::SyncDir,
    ];
    let mut runs = 0;
    for (opts, file) in &cases {
        // The same message three times (an MTA's retries), and three messages; one after the
        // other and interleaved.
        for messages in [&[0, 0, 0][..], &[0, 1, 2][..]] {
            for seed in [0, 1, 2] {
                let plan = FaultPlan::default();
                mta_lockstep(&mut m, *opts, *file, messages, plan, seed, &mut t);
                runs += 1;
            }
            for op in kinds {
                for (n, kind) in [(0, ErrorKind::Io), (1, ErrorKind::NoSpace)] {
                    let plan = FaultPlan {
                        script: vec![(op, n, Fault::Fail(kind))],
                        random: None,
                    };
                    mta_lockstep(&mut m, *opts, *file, messages, plan, 5, &mut t);
                    runs += 1;
                }
            }
        }
    }
    println!("{runs} runs, {t:?}");
    // The composition's operations all crossed the ABI, and its outcomes did.
    for op in [
        "WriteFile",
        "Append",
        "Read",
        "OpenDir",
        "NextEntry",
        "CloseDir",
        "Sleep",
    ] {
        assert!(t.ops.contains(op), "no {op} crossed: {t:?}");
    }
    for o in ["stored+quota", "stored", "duplicate", "OverQuota in Check"] {
        assert!(t.outcomes.contains(o), "no outcome {o}: {t:?}");
    }
    assert!(
        t.outcomes.len() > 4,
        "no failed delivery was compared: {t:?}"
    );
    assert!(t.faults > 100, "faults were not injected: {t:?}");
}

/// What the unit differential saw.
#[derive(Debug, Default)]
struct UnitTally {
    steps: usize,
    ops: BTreeSet<&'static str>,
    wants: BTreeSet<&'static str>,
    done: BTreeSet<String>,
    begun: BTreeSet<String>,
    failed_to_begin: usize,
}

/// Runs the unit `start` natively and in the module side by side on `fs`, each operation
/// performed once and its result fed to both, each want answered alike by `answer`; asserts
/// every step and what each performed are identical. The native unit's result.
fn unit_lockstep(
    m: &mut Module,
    start: &UnitStart,
    fs: &mut FaultFs<SimFs>,
    answer: &mut dyn FnMut(&Wants) -> Answer,
    t: &mut UnitTally,
) -> Option<Performed> {
    let mut native = start.machine();
    let n = wire::encode_unit_start(start, m.memory()).unwrap();
    let h = m.new_unit.call(&mut m.store, n as u32).unwrap();
    let h = match wire::decode_return(h) {
        Ok(Ok(h)) => h,
        other => panic!("wasm unit refused {start:?}: {other:?}"),
    };
    let mut rec = Recording {
        inner: SimEnv::unique(0, 7),
        log: Vec::new(),
    };
    let mut slots = Slots::default();
    for _ in 0..10_000 {
        let step = native.poll();
        let mut ours = vec![0u8; STEP_BUF_LEN];
        let k = wire::encode_unit_step(&step, &mut ours).unwrap();
        ours.truncate(k);
        let theirs = m.poll(h);
        assert_eq!(
            ours, theirs,
            "unit step {} differs: native {step:?}",
            t.steps
        );
        t.steps += 1;
        let op = match step {
            UnitStep::Op(op) => op,
            UnitStep::Done(Wants::Finished) => {
                let mine = native.performed();
                let k = m.performed.call(&mut m.store, h).unwrap();
                let k = wire::decode_return(k).unwrap().unwrap() as usize;
                let theirs = wire::decode_performed(&m.memory()[..k]).unwrap();
                assert_eq!(mine, theirs, "what the units performed differs");
                t.begun.insert(format!("{:?}", mine.begun));
                for r in &mine.results {
                    t.done.insert(match r {
                        Ok(d) => format!("{d:?}"),
                        Err(e) => format!("{:?} in {:?}", e.kind, e.phase),
                    });
                }
                return Some(mine);
            }
            UnitStep::Done(Wants::Failed(_)) => {
                t.failed_to_begin += 1;
                m.drop.call(&mut m.store, h).unwrap();
                return None;
            }
            UnitStep::Done(w) => {
                t.wants.insert(match w {
                    Wants::Copy { inbox: false, .. } => "copy",
                    Wants::Copy { inbox: true, .. } => "copy into INBOX",
                    Wants::Redirect(_) => "redirect",
                    _ => "vacation",
                });
                let a = answer(&w);
                let k = wire::encode_answer(&a, m.memory()).unwrap();
                let r = m.answer.call(&mut m.store, (h, k as u32)).unwrap();
                assert_eq!(wire::decode_return(r), Ok(Ok(0)), "wasm answer {a:?}");
                a.give(&mut native);
                continue;
            }
        };
        t.ops.insert(op_name(&op));
        let mut buf = vec![0u8; RECORD_MAX + 1];
        // The operation borrows the native machine: perform a copy of its encoding.
        let op = wire::decode_op(&theirs[1..]).unwrap();
        let (r, n) = perform(fs, &mut rec, &mut slots, op, &mut &b""[..], &mut buf);
        native.feed(r, &buf[..n], &mut rec);
        m.push(&std::mem::take(&mut rec.log));
        let k = wire::encode_feed(r, &buf[..n], m.memory()).unwrap();
        let fed = m.feed.call(&mut m.store, (h, k as u32)).unwrap();
        assert_eq!(wire::decode_return(fed), Ok(Ok(0)), "wasm feed of {r:?}");
    }
    panic!("the unit did not finish in 10000 steps");
}

/// A plan of copies (INBOX, and folders with flags), redirects, `duplicate` ids and a
/// vacation reply, as `what` asks.
fn unit_plan(what: &str) -> Plan {
    let mut p = Plan::new();
    if what.contains('i') {
        p.copy(None, None, false).unwrap();
    }
    if what.contains('f') {
        p.copy(Some(b"Lists"), Some(Flags::parse("S").unwrap()), true)
            .unwrap();
        p.copy(Some(b"Archive/2026"), None, false).unwrap();
    }
    if what.contains('r') {
        p.redirect(b"bob@example.org").unwrap();
    }
    if what.contains('t') {
        p.track(b"id-1", 1_800_000_000).unwrap();
    }
    if what.contains('v') {
        p.vacation(&Reply {
            to: b"alice@example.org",
            from: b"",
            subject: b"Away",
            reason: b"Back on Monday.\n",
            mime: false,
            in_reply_to: b"<m@example.org>",
            key: b"vacation\0\0alice@example.org",
            until: 1_800_000_000,
        })
        .unwrap();
    }
    p
}

/// How a driver answers what a unit wants, given the errors to answer with.
type Script = fn(&Wants, Error, Error) -> Answer;

#[test]
fn wasm_unit_machine_decides_exactly_like_the_native_one() {
    let mut m = Module::load();
    let mut t = UnitTally::default();
    let key = Key([0x5a; 32]);
    let folderless = Error::new(ErrorKind::NotFound, mdeliver_core::Phase::Open);
    let io = Error::new(ErrorKind::Io, mdeliver_core::Phase::Write);
    // How the driver answers: every copy stored and every message sent; a folder missing
    // (its copy goes to INBOX); copies failing; sends failing.
    let scripts: [Script; 4] = [
        |w, _, _| match w {
            Wants::Copy { .. } => Answer::Copied(Ok(CopyDone::Stored)),
            _ => Answer::Sent(Ok(())),
        },
        |w, missing, _| match w {
            Wants::Copy {
                inbox: false,
                index,
                ..
            } if *index > 0 => Answer::Copied(Err(missing)),
            Wants::Copy { .. } => Answer::Copied(Ok(CopyDone::Already)),
            _ => Answer::Sent(Ok(())),
        },
        |w, _, io| match w {
            Wants::Copy { .. } => Answer::Copied(Err(io)),
            _ => Answer::Sent(Ok(())),
        },
        |w, _, io| match w {
            Wants::Copy { .. } => Answer::Copied(Ok(CopyDone::Stored)),
            _ => Answer::Sent(Err(io)),
        },
    ];
    let no_links = Capabilities {
        anonymous_tmp: false,
        hard_links: false,
        ..Capabilities::POSIX
    };
    let kinds = [
        OpKind::ReadFile,
        OpKind::Create,
        OpKind::CreateAnonymous,
        OpKind::Write,
        OpKind::SyncFile,
        OpKind::LinkAnonymous,
        OpKind::Link,
        OpKind::Unlink,
        OpKind::Stat,
        OpKind::SyncDir,
        OpKind::SetMtime,
    ];
    let mut runs = 0;
    for caps in [Capabilities::LINUX_LOCAL, Capabilities::POSIX, no_links] {
        for what in ["i", "ift", "frv", "iftrv"] {
            for script in &scripts {
                let mut faults = vec![FaultPlan::default()];
                for op in kinds {
                    for n in [0, 1] {
                        faults.push(FaultPlan {
                            script: vec![(op, n, Fault::Fail(ErrorKind::NoSpace))],
                            random: None,
                        });
                    }
                }
                for plan in faults {
                    let sim = SimFs::new(Semantics::Posix, caps, Persistence::P2);
                    let mut fs = FaultFs::new(sim, plan);
                    let start = UnitStart {
                        key,
                        plan: unit_plan(what),
                        sync: true,
                        caps: fs.capabilities(),
                    };
                    let mut answer = |w: &Wants| script(w, folderless, io);
                    unit_lockstep(&mut m, &start, &mut fs, &mut answer, &mut t);
                    // The MTA's retry, whose script now decides otherwise: the record decides.
                    let retry = UnitStart {
                        plan: unit_plan("i"),
                        ..start
                    };
                    let mut well = |w: &Wants| scripts[0](w, folderless, io);
                    unit_lockstep(&mut m, &retry, &mut fs, &mut well, &mut t);
                    runs += 2;
                }
            }
        }
    }
    println!("{runs} runs, {t:?}");
    for op in ["WriteFile", "Read", "SetMtime", "other"] {
        assert!(t.ops.contains(op), "no {op} crossed: {t:?}");
    }
    for w in ["copy", "copy into INBOX", "redirect", "vacation"] {
        assert!(t.wants.contains(w), "no {w} was wanted: {t:?}");
    }
    for d in [
        "Copy(Stored)",
        "Copy(Already)",
        "IntoInbox(Already)",
        "Sent",
        "AlreadySent",
        "Remembered",
        "Replied",
        "Waiting",
        "Io in Write",
    ] {
        assert!(t.done.contains(d), "no {d} was performed: {t:?}");
    }
    assert_eq!(t.begun.len(), 2, "fresh and resumed units: {t:?}");
    assert!(t.failed_to_begin > 0, "no unit failed to begin: {t:?}");
}
