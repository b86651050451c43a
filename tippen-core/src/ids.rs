//! Injected randomness: the core never seeds or reads a random source by itself.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of unique, unpredictable ids. Hosts seed it from their platform's secure random
/// source (`getrandom` natively, `crypto.getRandomValues` on Workers).
pub trait IdGenerator: Send + Sync {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;

    /// A fresh id such as `inv_3f9c0a1b7d2e4c5a` (prefix, underscore, 16 hex digits).
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_{:016x}", self.next_u64())
    }
}

/// SplitMix64 over an atomic counter: fast, lock-free, deterministic for a given seed.
///
/// Not a cryptographic generator: ids identify, they do not authenticate.
#[derive(Debug)]
pub struct SeededIds(AtomicU64);

impl SeededIds {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededIds(AtomicU64::new(seed))
    }
}

impl IdGenerator for SeededIds {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_are_deterministic_and_distinct() {
        let a = SeededIds::new(7);
        let b = SeededIds::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut sorted = xs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        assert!(a.id("inv").starts_with("inv_"));
        assert_eq!(a.id("inv").len(), 4 + 16);
    }
}
