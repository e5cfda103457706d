//! The core's sans-io delivery machine, exported from the module with a small C-like ABI so a
//! host (the simulator) can step the *compiled* machine exactly as it steps the native one:
//! start a delivery, ask for the next operation, feed back its result.
//!
//! Data crosses in one shared buffer ([`mdeliver_step_buf`]) using `mdeliver_core::wire`.
//! The machine's environment (clock, entropy, counter, pid) is replayed from values the host
//! pushes with [`mdeliver_step_env_push`] before each call, so both machines see the same
//! inputs; a call that wants a value the host did not push, or of another kind, marks the
//! machine as diverged (reported by `feed` as -2).

use mdeliver_core::deliver::Durability;
use mdeliver_core::env::Timestamp;
use mdeliver_core::wire;
use mdeliver_core::{Capabilities, Delivery, Env, Flags, Options, Step, Strategy};
use std::cell::RefCell;
use std::collections::VecDeque;

const BUF_LEN: usize = 1024;

/// Values of the environment, in the order the machine asks for them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum EnvValue {
    Now(u64, u32),
    Random(u64),
    Counter(u64),
    Pid(Option<u32>),
}

struct Replay {
    host: String,
    pid: Option<u32>,
    tape: VecDeque<EnvValue>,
    diverged: bool,
}

impl Replay {
    fn take(&mut self, want: fn(&EnvValue) -> bool) -> Option<EnvValue> {
        match self.tape.front() {
            Some(v) if want(v) => self.tape.pop_front(),
            _ => {
                self.diverged = true;
                None
            }
        }
    }
}

impl Env for Replay {
    fn now(&mut self) -> Timestamp {
        match self.take(|v| matches!(v, EnvValue::Now(..))) {
            Some(EnvValue::Now(secs, micros)) => Timestamp { secs, micros },
            _ => Timestamp::default(),
        }
    }
    fn random_u64(&mut self) -> u64 {
        match self.take(|v| matches!(v, EnvValue::Random(_))) {
            Some(EnvValue::Random(r)) => r,
            _ => 0,
        }
    }
    fn pid(&self) -> Option<u32> {
        self.pid
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn next_counter(&mut self) -> u64 {
        match self.take(|v| matches!(v, EnvValue::Counter(_))) {
            Some(EnvValue::Counter(c)) => c,
            _ => 0,
        }
    }
    fn sleep(&mut self, _millis: u32) {}
}

struct Machine {
    delivery: Delivery,
    env: Replay,
}

struct State {
    buf: [u8; BUF_LEN],
    machines: Vec<Option<Machine>>,
    pending_env: VecDeque<EnvValue>,
}

thread_local! {
    static STATE: RefCell<State> = const {
        RefCell::new(State { buf: [0; BUF_LEN], machines: Vec::new(), pending_env: VecDeque::new() })
    };
}

/// The shared buffer's address (its length is 1024 bytes).
#[no_mangle]
pub extern "C" fn mdeliver_step_buf() -> *mut u8 {
    STATE.with(|s| s.borrow_mut().buf.as_mut_ptr())
}

/// Queues an environment value for the next `new` or `feed`: kind 0 = time (`a` seconds,
/// `b` microseconds), 1 = random `a`, 2 = counter `a`, 3 = pid (`a`, or none when `b` != 0;
/// taken by `new` only).
#[no_mangle]
pub extern "C" fn mdeliver_step_env_push(kind: u32, a: u64, b: u64) {
    let v = match kind {
        0 => EnvValue::Now(a, b as u32),
        1 => EnvValue::Random(a),
        2 => EnvValue::Counter(a),
        _ => EnvValue::Pid(if b != 0 { None } else { Some(a as u32) }),
    };
    STATE.with(|s| s.borrow_mut().pending_env.push_back(v));
}

/// Starts a delivery. The buffer holds the host name (`host_len` bytes) followed by the flag
/// letters (`flags_len` bytes, or none at all when `flags_len` is `u32::MAX`: deliver to new/).
/// `strategy`: 0 Exclusive, 1 Classic, 2 Classic with O_EXCL, 3 Locked. `caps` bits: 1
/// anonymous tmp, 2 rename-noreplace, 4 hard links, 8 dir sync, 16 atomic O_EXCL.
/// `durability`: 0 full, 1 deferred dir sync, 2 none. Returns a handle, or -1 on bad input.
#[no_mangle]
pub extern "C" fn mdeliver_step_new(
    strategy: u32,
    caps: u32,
    durability: u32,
    max_attempts: u32,
    host_len: u32,
    flags_len: u32,
) -> i32 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let host_len = host_len as usize;
        let Some(host) = s
            .buf
            .get(..host_len)
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            return -1;
        };
        let host = host.to_string();
        let flags = if flags_len == u32::MAX {
            None
        } else {
            let end = host_len + flags_len as usize;
            let Some(letters) = s
                .buf
                .get(host_len..end)
                .and_then(|b| std::str::from_utf8(b).ok())
            else {
                return -1;
            };
            match Flags::parse(letters) {
                Ok(f) => Some(f),
                Err(_) => return -1,
            }
        };
        let strategy = match strategy {
            0 => Strategy::Exclusive,
            1 => Strategy::Classic {
                exclusive_create: false,
            },
            2 => Strategy::Classic {
                exclusive_create: true,
            },
            3 => Strategy::Locked,
            _ => return -1,
        };
        let durability = match durability {
            0 => Durability::Full,
            1 => Durability::DeferDirSync,
            2 => Durability::None,
            _ => return -1,
        };
        let caps = Capabilities {
            anonymous_tmp: caps & 1 != 0,
            rename_noreplace: caps & 2 != 0,
            hard_links: caps & 4 != 0,
            dir_sync: caps & 8 != 0,
            atomic_exclusive: caps & 16 != 0,
        };
        let opts = Options {
            strategy,
            durability,
            flags,
            max_attempts,
            ..Options::default()
        };
        // The pid is a property of the machine's process, pushed once before `new`.
        let mut pid = None;
        let mut tape = VecDeque::new();
        for v in std::mem::take(&mut s.pending_env) {
            match v {
                EnvValue::Pid(p) => pid = p,
                other => tape.push_back(other),
            }
        }
        let mut env = Replay {
            host,
            pid,
            tape,
            diverged: false,
        };
        let delivery = Delivery::new(opts, caps, &mut env);
        let m = Some(Machine { delivery, env });
        // Reuse a dropped machine's slot, so a host stepping millions of machines stays small.
        match s.machines.iter().position(Option::is_none) {
            Some(i) => {
                s.machines[i] = m;
                i as i32
            }
            None => {
                s.machines.push(m);
                (s.machines.len() - 1) as i32
            }
        }
    })
}

/// Writes the machine's next step into the buffer: `1` + an encoded operation, or `2` + the
/// encoded outcome. Returns the length, or -1 for a bad handle.
#[no_mangle]
pub extern "C" fn mdeliver_step_poll(handle: u32) -> i32 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State { buf, machines, .. } = &mut *s;
        let Some(Some(m)) = machines.get(handle as usize) else {
            return -1;
        };
        let (tag, body) = buf.split_at_mut(1);
        let n = match m.delivery.poll() {
            Step::Op(op) => {
                tag[0] = 1;
                wire::encode_op(op, body)
            }
            Step::Done(outcome) => {
                tag[0] = 2;
                wire::encode_outcome(&outcome, body)
            }
        };
        n.map_or(-1, |n| n as i32 + 1)
    })
}

/// Feeds the encoded result (`len` bytes in the buffer) of the last polled operation. Returns
/// 0, -1 for a bad handle or encoding, -2 if the machine asked for an environment value the
/// host had not pushed (the runs diverged).
#[no_mangle]
pub extern "C" fn mdeliver_step_feed(handle: u32, len: u32) -> i32 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State {
            buf,
            machines,
            pending_env,
        } = &mut *s;
        let Some(Some(m)) = machines.get_mut(handle as usize) else {
            return -1;
        };
        let Ok(result) = buf
            .get(..len as usize)
            .ok_or(())
            .and_then(|b| wire::decode_result(b).map_err(|_| ()))
        else {
            return -1;
        };
        m.env.tape.extend(pending_env.drain(..));
        m.delivery.feed(result, &mut m.env);
        if m.env.diverged {
            -2
        } else {
            0
        }
    })
}

/// Releases a machine.
#[no_mangle]
pub extern "C" fn mdeliver_step_drop(handle: u32) {
    STATE.with(|s| {
        if let Some(slot) = s.borrow_mut().machines.get_mut(handle as usize) {
            *slot = None;
        }
    });
}
