//! The environment a deliverer draws its unique name from: clock, entropy, process id, host
//! name and a per-process counter. Adapters implement it; the simulator implements it with
//! controllable values so it can force two deliverers onto the same name.

/// A point in time: seconds since the Unix epoch and microseconds within the second.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: u64,
    /// Microseconds, `0..1_000_000`.
    pub micros: u32,
}

/// Sources of uniqueness for Maildir names.
pub trait Env {
    /// The current wall-clock time.
    fn now(&mut self) -> Timestamp;
    /// 64 fresh random bits (from the kernel on real systems).
    fn random_u64(&mut self) -> u64;
    /// The process id, where the platform has one (WASI has none).
    fn pid(&self) -> Option<u32>;
    /// The host name, unescaped; the name module escapes it.
    fn host(&self) -> &str;
    /// A counter that never repeats within this process (Maildir's `Q`).
    fn next_counter(&mut self) -> u64;
    /// Lets `millis` milliseconds pass (a real sleep, or simulated time).
    fn sleep(&mut self, millis: u32);
}

impl<E: Env + ?Sized> Env for &mut E {
    fn now(&mut self) -> Timestamp {
        (**self).now()
    }
    fn random_u64(&mut self) -> u64 {
        (**self).random_u64()
    }
    fn pid(&self) -> Option<u32> {
        (**self).pid()
    }
    fn host(&self) -> &str {
        (**self).host()
    }
    fn next_counter(&mut self) -> u64 {
        (**self).next_counter()
    }
    fn sleep(&mut self, millis: u32) {
        (**self).sleep(millis)
    }
}

/// The environment of a machine that asks for no time, randomness or sleep (a listing, a
/// reader's rename): everything reads as zero.
pub(crate) struct NoEnv;

impl Env for NoEnv {
    fn now(&mut self) -> Timestamp {
        Timestamp { secs: 0, micros: 0 }
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
