//! The core's `Env` inside WASI: no process id exists, so names carry no `P` field; the
//! per-instance counter `Q`, the microsecond clock and 64 bits from `random_get` keep them
//! unique (and the host name, from `--host` or `MDELIVER_HOST`, tells hosts apart).

use mdeliver_core::env::Timestamp;
use mdeliver_core::Env;
use std::time::Duration;

/// Clock, entropy and host for a WASI instance.
pub struct WasiEnv {
    host: String,
    counter: u64,
}

impl WasiEnv {
    /// An environment with this host name.
    pub fn new(host: String) -> WasiEnv {
        WasiEnv { host, counter: 0 }
    }
}

impl Env for WasiEnv {
    fn now(&mut self) -> Timestamp {
        mdeliver_driver::now()
    }

    fn random_u64(&mut self) -> u64 {
        // random_get cannot fail in a conforming runtime; if it did, the clock and counter
        // still separate this instance's names, and O_EXCL catches any collision.
        getrandom::u64().unwrap_or(0)
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn sleep(&mut self, millis: u32) {
        std::thread::sleep(Duration::from_millis(u64::from(millis)));
    }
}
