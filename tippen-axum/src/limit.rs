//! Rate limits per client address and per presented key (token buckets, `governor`); a site
//! with its own per-key limit ([`Site::rate_limit_per_key`](tippen_core::Site)) gets the
//! core's buckets ([`tippen_core::rate::Gate`]) in its owner state instead.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tippen_core::KeyHash;

pub use tippen_core::rate::{RateLimit, RateLimits};

fn quota(limit: RateLimit) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(limit.per_second).unwrap_or(one))
        .allow_burst(NonZeroU32::new(limit.burst).unwrap_or(one))
}

/// The buckets. Entries of clients and keys not seen lately are dropped now and then, so the
/// maps stay small whatever addresses and keys are sent.
pub(crate) struct Limiters {
    clients: Option<DefaultKeyedRateLimiter<IpAddr>>,
    keys: Option<DefaultKeyedRateLimiter<KeyHash>>,
    checks: AtomicU64,
}

/// Clean the maps once per this many checks.
const CLEAN_EVERY: u64 = 8192;

impl Limiters {
    pub(crate) fn new(limits: &RateLimits) -> Self {
        Limiters {
            clients: limits
                .per_client
                .map(|l| DefaultKeyedRateLimiter::keyed(quota(l))),
            keys: limits
                .per_key
                .map(|l| DefaultKeyedRateLimiter::keyed(quota(l))),
            checks: AtomicU64::new(0),
        }
    }

    fn tick(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % CLEAN_EVERY == CLEAN_EVERY - 1 {
            for l in self.clients.iter() {
                l.retain_recent();
                l.shrink_to_fit();
            }
            for l in self.keys.iter() {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }

    /// `Err(wait)` when the client at `ip` is over its limit.
    pub(crate) fn check_client(&self, ip: IpAddr) -> Result<(), Duration> {
        self.tick();
        match &self.clients {
            Some(l) => l
                .check_key(&ip)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
            None => Ok(()),
        }
    }

    /// `Err(wait)` when `key` is over its limit.
    pub(crate) fn check_key(&self, key: &str) -> Result<(), Duration> {
        match &self.keys {
            Some(l) => l
                .check_key(&KeyHash::of(key))
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
            None => Ok(()),
        }
    }
}
