//! The Linux [`Env`]: host name from `--host` or `uname`, pid from `getpid`, entropy from `getrandom`,
//! wall-clock time from libc's `clock_gettime(CLOCK_REALTIME)` (so libfaketime can steer it), and a process-wide counter.

use std::sync::atomic::{AtomicU64, Ordering};

use mdeliver_core::env::{Env, Timestamp};
use rustix::rand::{getrandom, GetRandomFlags};
use rustix::time::{clock_gettime, ClockId};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The environment of this process.
#[derive(Clone, Debug)]
pub struct LinuxEnv {
    host: String,
    pid: u32,
    /// Random bytes from one `getrandom`, handed out 8 at a time: an import names thousands
    /// of messages, and one system call then serves 32 of them.
    random: [u8; 256],
    /// How many of `random` are used (all of them at first).
    used: usize,
}

impl LinuxEnv {
    /// Reads the host name and pid once.
    pub fn new() -> LinuxEnv {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        LinuxEnv {
            host,
            pid,
            random: [0; 256],
            used: 256,
        }
    }

    /// Uses `host` (`--host`), when given, instead of the system's host name.
    pub fn with_host(self, host: Option<&str>) -> LinuxEnv {
        match host {
            Some(h) => LinuxEnv {
                host: h.to_owned(),
                ..self
            },
            None => self,
        }
    }
}

impl Env for LinuxEnv {
    fn now(&mut self) -> Timestamp {
        mdeliver_driver::now()
    }

    fn random_u64(&mut self) -> u64 {
        if self.used + 8 > self.random.len() {
            let mut filled = 0;
            while filled < self.random.len() {
                match getrandom(&mut self.random[filled..], GetRandomFlags::empty()) {
                    Ok(n) => filled += n,
                    Err(rustix::io::Errno::INTR) => {}
                    // getrandom(2) exists since Linux 3.17. Without it the name stays unique
                    // through pid, counter, time, device and inode; the random part is then
                    // only the clock's nanoseconds.
                    Err(_) => return clock_gettime(ClockId::Monotonic).tv_nsec as u64,
                }
            }
            self.used = 0;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.random[self.used..self.used + 8]);
        self.used += 8;
        u64::from_ne_bytes(b)
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn next_counter(&mut self) -> u64 {
        COUNTER.fetch_add(1, Ordering::Relaxed)
    }

    fn sleep(&mut self, millis: u32) {
        std::thread::sleep(std::time::Duration::from_millis(millis.into()));
    }
}
