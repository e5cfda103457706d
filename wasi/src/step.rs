//! The core's sans-io delivery machines (the bare delivery, the composed MTA delivery and a
//! Sieve script's unit of actions),
//! exported from the module with a small C-like ABI so a host (the simulator) can step the
//! *compiled* machine exactly as it steps the native one: start a delivery, ask for the next
//! operation, feed back its result.
//!
//! The ABI (each export, its arguments, the buffer layout and every code) is defined and
//! documented once, in `mdeliver_core::wire` ("The stepping ABI"); this file only translates
//! between those encodings and the core's [`Delivery`] and [`Mta`]. The machine's environment (clock,
//! entropy, counter, pid) is replayed from the values the host pushes, so both machines see
//! the same inputs; a call that wants a value the host did not push, or of another kind,
//! marks the machine as diverged.

use mdeliver_core::env::Timestamp;
use mdeliver_core::machine::mta::{Mta, MtaOptions};
use mdeliver_core::machine::unit::{Unit, Wants};
use mdeliver_core::machine::Machine as _;
use mdeliver_core::wire::{self, CallError, EnvValue, STEP_BUF_LEN};
use mdeliver_core::{Delivery, Env};
use std::cell::RefCell;

struct Replay {
    host: String,
    pid: Option<u32>,
    /// The values pushed so far, and how many of them the machine has drawn.
    tape: Vec<EnvValue>,
    drawn: usize,
    diverged: bool,
}

impl Replay {
    fn take(&mut self, want: fn(&EnvValue) -> bool) -> Option<EnvValue> {
        match self.tape.get(self.drawn) {
            Some(&v) if want(&v) => {
                self.drawn += 1;
                Some(v)
            }
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
            Some(EnvValue::Now(t)) => t,
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

/// The machine behind a handle. Held inline: a host steps a handful of them at a time.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Delivery(Delivery),
    Mta(Mta),
    Unit(Unit),
}

struct Machine {
    kind: Kind,
    env: Replay,
}

struct State {
    buf: [u8; STEP_BUF_LEN],
    machines: Vec<Option<Machine>>,
    pending_env: Vec<EnvValue>,
}

thread_local! {
    static STATE: RefCell<State> = const {
        RefCell::new(State {
            buf: [0; STEP_BUF_LEN],
            machines: Vec::new(),
            pending_env: Vec::new(),
        })
    };
}

/// The shared buffer's address (its length is [`STEP_BUF_LEN`]).
#[no_mangle]
pub extern "C" fn mdeliver_step_buf() -> *mut u8 {
    STATE.with(|s| s.borrow_mut().buf.as_mut_ptr())
}

/// Queues an environment value (`wire::EnvValue::encode`) for the next `new` or `feed`.
#[no_mangle]
pub extern "C" fn mdeliver_step_env_push(kind: u32, a: u64, b: u64) -> i32 {
    let r = EnvValue::decode(kind, a, b).map(|v| {
        STATE.with(|s| s.borrow_mut().pending_env.push(v));
        0
    });
    wire::encode_return(r.map_err(|_| CallError::BadInput))
}

/// Starts a delivery from the `wire::Start` in the buffer's first `len` bytes, with the
/// environment values pushed since the last call. Returns a handle.
#[no_mangle]
pub extern "C" fn mdeliver_step_new(len: u32) -> i32 {
    new(len, false)
}

/// Starts an MTA delivery from the `wire::MtaStart` in the buffer's first `len` bytes, with
/// the environment values pushed since the last call. Returns a handle.
#[no_mangle]
pub extern "C" fn mdeliver_step_new_mta(len: u32) -> i32 {
    new(len, true)
}

/// Starts a Sieve unit from the `wire::UnitStart` in the buffer's first `len` bytes, with the
/// environment values pushed since the last call. Returns a handle.
#[no_mangle]
pub extern "C" fn mdeliver_step_new_unit(len: u32) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let b = s.buf.get(..len as usize).ok_or(CallError::BadInput)?;
        let start = wire::decode_unit_start(b).map_err(|_| CallError::BadInput)?;
        let env = Replay {
            host: String::new(),
            pid: None,
            tape: std::mem::take(&mut s.pending_env),
            drawn: 0,
            diverged: false,
        };
        Ok(place(
            &mut s,
            Machine {
                kind: Kind::Unit(start.machine()),
                env,
            },
        ))
    }))
}

/// Keeps `m` in a dropped machine's slot, so a host stepping millions of machines stays
/// small, or a new one. Its handle.
fn place(s: &mut State, m: Machine) -> u32 {
    match s.machines.iter().position(Option::is_none) {
        Some(i) => {
            s.machines[i] = Some(m);
            i as u32
        }
        None => {
            s.machines.push(Some(m));
            (s.machines.len() - 1) as u32
        }
    }
}

fn new(len: u32, mta: bool) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let b = s.buf.get(..len as usize).ok_or(CallError::BadInput)?;
        let start = if mta {
            wire::decode_mta_start(b)
        } else {
            wire::decode_start(b).map(|st| wire::MtaStart {
                opts: MtaOptions {
                    delivery: st.opts,
                    ..MtaOptions::default()
                },
                caps: st.caps,
                host: st.host,
            })
        }
        .map_err(|_| CallError::BadInput)?;
        let (opts, caps, host) = (start.opts, start.caps, start.host.to_string());
        // The pid is a property of the machine's process, pushed once before `new`.
        let mut pid = None;
        let mut tape = std::mem::take(&mut s.pending_env);
        tape.retain(|v| match v {
            EnvValue::Pid(p) => {
                pid = *p;
                false
            }
            _ => true,
        });
        let mut env = Replay {
            host,
            pid,
            tape,
            drawn: 0,
            diverged: false,
        };
        // As `dyn Env`: the module's driver instantiates the machines for it, once.
        let e: &mut dyn Env = &mut env;
        let kind = if mta {
            Kind::Mta(Mta::new(opts, caps, e))
        } else {
            Kind::Delivery(Delivery::new(opts.delivery, caps, e))
        };
        Ok(place(&mut s, Machine { kind, env }))
    }))
}

/// Writes the machine's next step (`wire::encode_step`) into the buffer. Returns its length.
#[no_mangle]
pub extern "C" fn mdeliver_step_poll(handle: u32) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State { buf, machines, .. } = &mut *s;
        let Some(Some(m)) = machines.get(handle as usize) else {
            return Err(CallError::BadInput);
        };
        match &m.kind {
            Kind::Delivery(d) => wire::encode_step(&d.poll(), buf),
            Kind::Mta(t) => wire::encode_mta_step(&t.poll(), buf),
            Kind::Unit(u) => wire::encode_unit_step(&u.poll(), buf),
        }
        .map(|n| n as u32)
        .map_err(|_| CallError::BadInput)
    }))
}

/// Feeds the encoded result (`len` bytes in the buffer) of the last polled operation, with
/// the environment values pushed since the last call. Returns 0.
#[no_mangle]
pub extern "C" fn mdeliver_step_feed(handle: u32, len: u32) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State {
            buf,
            machines,
            pending_env,
        } = &mut *s;
        let Some(Some(m)) = machines.get_mut(handle as usize) else {
            return Err(CallError::BadInput);
        };
        let b = buf.get(..len as usize).ok_or(CallError::BadInput)?;
        let fed = match m.kind {
            Kind::Delivery(_) => wire::decode_result(b).map(|r| (r, &[][..])),
            Kind::Mta(_) | Kind::Unit(_) => wire::decode_feed(b),
        };
        let (result, data) = fed.map_err(|_| CallError::BadInput)?;
        m.env.tape.append(pending_env);
        let e: &mut dyn Env = &mut m.env;
        match &mut m.kind {
            Kind::Delivery(d) => d.feed(result, e),
            Kind::Mta(t) => t.feed(result, data, e),
            Kind::Unit(u) => u.feed(result, data, e),
        }
        if m.env.diverged {
            Err(CallError::Diverged)
        } else {
            Ok(0)
        }
    }))
}

/// Shows the machine the buffer's first `len` bytes as the message's next chunk. Returns 0.
#[no_mangle]
pub extern "C" fn mdeliver_step_observe(handle: u32, len: u32) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State { buf, machines, .. } = &mut *s;
        let (Some(Some(m)), Some(b)) = (machines.get_mut(handle as usize), buf.get(..len as usize))
        else {
            return Err(CallError::BadInput);
        };
        if let Kind::Mta(t) = &mut m.kind {
            t.observe(b);
        }
        Ok(0)
    }))
}

/// Gives the machine's message file the modification time `secs` (`-M`'s
/// `Delivery::set_mtime`). Returns 1 when it took effect, 0 when it is too late.
#[no_mangle]
pub extern "C" fn mdeliver_step_set_mtime(handle: u32, secs: i64) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let Some(Some(m)) = s.machines.get_mut(handle as usize) else {
            return Err(CallError::BadInput);
        };
        let d = match &mut m.kind {
            Kind::Delivery(d) => d,
            Kind::Mta(t) => t.delivery_mut(),
            Kind::Unit(_) => return Err(CallError::BadInput),
        };
        Ok(u32::from(d.set_mtime(secs)))
    }))
}

/// Gives a unit the driver's answer (`wire::Answer`, `len` bytes in the buffer) to what it
/// wants. Returns 0.
#[no_mangle]
pub extern "C" fn mdeliver_step_answer(handle: u32, len: u32) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State { buf, machines, .. } = &mut *s;
        let Some(Some(Machine {
            kind: Kind::Unit(u),
            ..
        })) = machines.get_mut(handle as usize)
        else {
            return Err(CallError::BadInput);
        };
        let b = buf.get(..len as usize).ok_or(CallError::BadInput)?;
        wire::decode_answer(b)
            .map_err(|_| CallError::BadInput)?
            .give(u);
        Ok(0)
    }))
}

/// Writes what a finished unit performed (`wire::encode_performed`) into the buffer and
/// releases it. Returns the length.
#[no_mangle]
pub extern "C" fn mdeliver_step_performed(handle: u32) -> i32 {
    wire::encode_return(STATE.with(|s| {
        let mut s = s.borrow_mut();
        let State { buf, machines, .. } = &mut *s;
        let slot = machines
            .get_mut(handle as usize)
            .ok_or(CallError::BadInput)?;
        match slot {
            Some(Machine {
                kind: Kind::Unit(u),
                ..
            }) if u.poll() == mdeliver_core::machine::Step::Done(Wants::Finished) => {}
            _ => return Err(CallError::BadInput),
        }
        let Some(Machine {
            kind: Kind::Unit(u),
            ..
        }) = slot.take()
        else {
            return Err(CallError::BadInput);
        };
        wire::encode_performed(&u.performed(), buf)
            .map(|n| n as u32)
            .map_err(|_| CallError::BadInput)
    }))
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
