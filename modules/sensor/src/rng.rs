//! A tiny deterministic PRNG: readings only need to look random and be reproducible per seed.

/// Marsaglia's xorshift64.
pub struct XorShift(u64);

impl XorShift {
    /// A generator seeded with `seed`. Zero is a fixed point of xorshift, so it is replaced.
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next value, uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        // The top 53 bits fill an f64 mantissa exactly.
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
