//! Ids (invite ids) behind the [`IdGenerator`] trait: [`SecureIds`] by default, [`SeededIds`]
//! for deterministic tests.
//!
//! This is the one place the core reads a random source, and only through the trait object a
//! [`Tippen`](crate::Tippen) holds: pure functions never see it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of unique, unpredictable ids.
pub trait IdGenerator: Send + Sync {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;

    /// A fresh id such as `inv_3f9c0a1b7d2e4c5a` (prefix, underscore, 16 hex digits).
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_{:016x}", self.next_u64())
    }
}

/// Ids from the platform's secure random source (`getrandom`): the operating system
/// natively, `crypto.getRandomValues` on `wasm32-unknown-unknown` (Workers, browsers,
/// Node.js). The default of [`Tippen::new`](crate::Tippen::new): two instances started at
/// the same moment never share an id stream.
///
/// # Panics
///
/// [`next_u64`](IdGenerator::next_u64) panics when the platform's source fails, which
/// `getrandom` reports only for a broken or missing source (no `crypto` object on wasm, an
/// unusable `/dev/urandom`): an id that might repeat is never handed out.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecureIds;

impl IdGenerator for SecureIds {
    fn next_u64(&self) -> u64 {
        match getrandom::u64() {
            Ok(bits) => bits,
            Err(e) => panic!("the platform's secure random source failed: {e}"),
        }
    }
}

/// SplitMix64 over an atomic counter: fast, lock-free, deterministic for a given seed — for
/// tests and replays (`Tippen::new(..).with_ids(Arc::new(SeededIds::new(7)))`).
///
/// Not a cryptographic generator, and predictable from its seed: production uses
/// [`SecureIds`].
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

    #[test]
    fn secure_ids_differ_between_generators_created_together() {
        // What clock-seeded ids got wrong: two instances started in the same millisecond
        // shared one stream.
        let (a, b) = (SecureIds, SecureIds);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
        let mut all: Vec<u64> = xs.into_iter().chain(ys).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200, "no repeats in 200 draws of 64 bits");
        let id = a.id("inv");
        assert!(id.starts_with("inv_") && id.len() == 4 + 16, "{id}");
    }
}
