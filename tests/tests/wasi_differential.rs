//! Differential test: the delivery machine compiled into the WASI module makes exactly the
//! decisions the native one makes. The simulator's exhaustive search over two deliverers and a
//! reader (every publish path, unique and colliding names, and NFS-like semantics) hands every
//! final state's deliverer histories (start environment + every operation result fed) to this
//! test, which replays each history on a native machine and, through the module's exported
//! stepping interface, on the wasm machine: every operation, every environment value drawn and
//! the outcome must be identical. Identical operations on the same results mean identical
//! final maildir states.

// Shared with the other WASI tests; not every helper is used here.
#[allow(dead_code)]
mod wasi_support;

use mdeliver_core::deliver::{Delivery, Options, Step, Strategy};
use mdeliver_core::env::{Env, Timestamp};
use mdeliver_core::fs::{Capabilities, Op, OpResult};
use mdeliver_core::ErrorKind;
use mdeliver_core::{wire, Fs};
use mdeliver_tests::sim::env::SimEnv;
use mdeliver_tests::sim::explore::explore;
use mdeliver_tests::sim::scenarios::{nfs, path_caps, two_plus_reader};
use mdeliver_tests::sim::world::{Agent, ReaderMode, World};
use mdeliver_tests::wrap::{Fault, FaultPlan, OpKind};
use std::cell::RefCell;
use std::collections::HashSet;
use wasmtime::{Instance, Store, TypedFunc};

/// Records every value the machine draws from its environment, in order, as the module's
/// `mdeliver_step_env_push` expects them.
struct Recording<'a> {
    inner: &'a mut SimEnv,
    log: Vec<(u32, u64, u64)>,
}

impl Env for Recording<'_> {
    fn now(&mut self) -> Timestamp {
        let t = self.inner.now();
        self.log.push((0, t.secs, u64::from(t.micros)));
        t
    }
    fn random_u64(&mut self) -> u64 {
        let r = self.inner.random_u64();
        self.log.push((1, r, 0));
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
        self.log.push((2, c, 0));
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
    new: TypedFunc<(u32, u32, u32, u32, u32, u32), i32>,
    env_push: TypedFunc<(u32, u64, u64), ()>,
    poll: TypedFunc<u32, i32>,
    feed: TypedFunc<(u32, u32), i32>,
    drop: TypedFunc<u32, ()>,
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
            store,
            buf,
            instance,
        }
    }

    fn memory(&mut self) -> &mut [u8] {
        let mem = self.instance.get_memory(&mut self.store, "memory").unwrap();
        &mut mem.data_mut(&mut self.store)[self.buf..self.buf + 1024]
    }

    fn push(&mut self, log: &[(u32, u64, u64)]) {
        for &(k, a, b) in log {
            self.env_push.call(&mut self.store, (k, a, b)).unwrap();
        }
    }

    fn poll(&mut self, h: u32) -> Vec<u8> {
        let n = self.poll.call(&mut self.store, h).unwrap();
        assert!(n > 0, "wasm poll failed: {n}");
        self.memory()[..n as usize].to_vec()
    }
}

fn caps_bits(c: Capabilities) -> u32 {
    u32::from(c.anonymous_tmp)
        | u32::from(c.rename_noreplace) << 1
        | u32::from(c.hard_links) << 2
        | u32::from(c.dir_sync) << 3
        | u32::from(c.atomic_exclusive) << 4
}

fn encode_step(step: &Step<'_>) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    let n = match step {
        Step::Op(op) => {
            b[0] = 1;
            wire::encode_op(*op, &mut b[1..]).unwrap()
        }
        Step::Done(o) => {
            b[0] = 2;
            wire::encode_outcome(o, &mut b[1..]).unwrap()
        }
    };
    b.truncate(n + 1);
    b
}

#[derive(Default)]
struct Tally {
    histories: u64,
    steps: u64,
    seen: HashSet<String>,
}

thread_local! {
    static MODULE: RefCell<Option<Module>> = const { RefCell::new(None) };
    static TALLY: RefCell<Tally> = RefCell::new(Tally::default());
}

/// Replays one deliverer's history on both machines, asserting identical steps.
fn compare(caps: Capabilities, env0: &SimEnv, results: &[OpResult]) {
    let key = format!("{caps:?}{env0:?}{results:?}");
    if !TALLY.with(|t| t.borrow_mut().seen.insert(key)) {
        return;
    }
    MODULE.with(|m| {
        let mut m = m.borrow_mut();
        let m = m.get_or_insert_with(Module::load);
        let mut env = env0.clone();
        let opts = Options {
            strategy: Strategy::Exclusive,
            ..Options::default()
        };
        let mut rec = Recording {
            inner: &mut env,
            log: Vec::new(),
        };
        let mut native = Delivery::new(opts, caps, &mut rec);
        // Start the wasm machine from the same environment.
        m.push(&[(3, u64::from(env0.pid), 0)]);
        m.push(&std::mem::take(&mut rec.log));
        let host = env0.host.as_bytes().to_vec();
        m.memory()[..host.len()].copy_from_slice(&host);
        let h = m
            .new
            .call(
                &mut m.store,
                (
                    0,
                    caps_bits(caps),
                    0,
                    opts.max_attempts,
                    host.len() as u32,
                    u32::MAX,
                ),
            )
            .unwrap();
        assert!(h >= 0, "wasm machine refused its options");
        let h = h as u32;
        for (i, &r) in results.iter().enumerate() {
            let step = native.poll();
            let ours = encode_step(&step);
            let theirs = m.poll(h);
            assert_eq!(
                ours, theirs,
                "step {i} differs: native {step:?}; history {results:?}"
            );
            if let Step::Op(Op::Sleep { millis }) = step {
                rec.sleep(millis);
            }
            native.feed(r, &mut rec);
            m.push(&std::mem::take(&mut rec.log));
            let mut b = [0u8; 64];
            let n = wire::encode_result(r, &mut b).unwrap();
            m.memory()[..n].copy_from_slice(&b[..n]);
            let fed = m.feed.call(&mut m.store, (h, n as u32)).unwrap();
            assert_eq!(
                fed, 0,
                "wasm feed at step {i} returned {fed} (−2: environment diverged)"
            );
        }
        let done = native.poll();
        assert!(
            matches!(done, Step::Done(_)),
            "history ended before the machine: {done:?}"
        );
        assert_eq!(encode_step(&done), m.poll(h), "outcomes differ");
        m.drop.call(&mut m.store, h).unwrap();
        TALLY.with(|t| {
            let mut t = t.borrow_mut();
            t.histories += 1;
            t.steps += results.len() as u64 + 1;
        });
    });
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
        let before = TALLY.with(|t| t.borrow().histories);
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
        total_exec += report.stats.executions;
    }
    let (h, s) = TALLY.with(|t| (t.borrow().histories, t.borrow().steps));
    println!("total: {total_exec} executions; {h} distinct histories, {s} steps identical");
}
