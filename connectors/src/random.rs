//! A seeded pseudo-random sequence for the tests that hold one
//! implementation to another over many generated inputs.

/// Xorshift64: the same numbers for the same `seed` (not zero), on every
/// run.
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
