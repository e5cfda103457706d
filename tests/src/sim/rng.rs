//! Small deterministic generators: SplitMix64, from which every random decision of the
//! simulator comes (one seed replays exactly), and xorshift64, which the soak and fuzz tests
//! use to derive messages and timings from a seed.

/// SplitMix64.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Marsaglia's xorshift64 (shifts 13, 7, 17). The state must not be zero (it would stay zero).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits (the new state).
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
