//! A controllable [`Env`]: the test sets clock, pid, host and entropy, so it can force two
//! deliverers onto the same name (same second, same pid, same host, entropy stuck).

use crate::sim::rng::Rng;
use mdeliver_core::env::{Env, Timestamp};

/// The simulated environment of one agent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimEnv {
    /// Clock: microseconds since the epoch.
    pub micros: u64,
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// Maildir `Q` counter (last value handed out).
    pub counter: u64,
    /// Entropy; `None` means stuck at zero.
    pub entropy: Option<Rng>,
}

impl SimEnv {
    /// An environment whose every uniqueness source differs per `agent`.
    pub fn unique(agent: u8, seed: u64) -> SimEnv {
        SimEnv {
            micros: 1_700_000_000_000_000 + u64::from(agent) * 1_000,
            pid: 100 + u32::from(agent),
            host: "sim".into(),
            counter: 0,
            entropy: Some(Rng::new(seed ^ (u64::from(agent) << 32))),
        }
    }

    /// An environment identical for every agent: same second and microsecond, same pid and
    /// host, counter starting alike, entropy stuck at zero.
    pub fn colliding() -> SimEnv {
        SimEnv {
            micros: 1_700_000_000_000_000,
            pid: 100,
            host: "sim".into(),
            counter: 0,
            entropy: None,
        }
    }

    /// The clock in whole seconds.
    pub fn secs(&self) -> u64 {
        self.micros / 1_000_000
    }
}

impl Env for SimEnv {
    fn now(&mut self) -> Timestamp {
        Timestamp {
            secs: self.micros / 1_000_000,
            micros: (self.micros % 1_000_000) as u32,
        }
    }
    fn random_u64(&mut self) -> u64 {
        self.entropy.as_mut().map_or(0, Rng::next_u64)
    }
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn sleep(&mut self, millis: u32) {
        self.micros += u64::from(millis) * 1_000;
    }
}
