//! Rate limits per client address and per presented key (token buckets, `governor`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tippen_core::KeyHash;

/// A token bucket: `per_second` requests a second on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second (at least 1).
    pub per_second: u32,
    /// Requests allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sustained with bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit { per_second, burst }
    }

    fn quota(self) -> Quota {
        let one = NonZeroU32::MIN;
        Quota::per_second(NonZeroU32::new(self.per_second).unwrap_or(one))
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(one))
    }
}

/// The rate limits of a [`TippenHost`](crate::TippenHost). Over a limit the answer is
/// `429 {"error":…}` with `Retry-After`. The defaults are generous for real traffic (many
/// visitors behind one company's address; every visitor of a busy site on one key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Per client address (as the trusted proxies make it out). Default 100/s, bursts of 400.
    /// `None`: no limit.
    pub per_client: Option<RateLimit>,
    /// Per presented key (header, query or body). Default 1000/s, bursts of 4000. `None`: no
    /// limit.
    pub per_key: Option<RateLimit>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_client: Some(RateLimit::new(100, 400)),
            per_key: Some(RateLimit::new(1000, 4000)),
        }
    }
}

impl RateLimits {
    /// No limits.
    pub fn none() -> Self {
        RateLimits {
            per_client: None,
            per_key: None,
        }
    }
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
                .map(|l| DefaultKeyedRateLimiter::keyed(l.quota())),
            keys: limits
                .per_key
                .map(|l| DefaultKeyedRateLimiter::keyed(l.quota())),
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
