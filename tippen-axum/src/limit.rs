//! Rate limits per client address and per presented key (token buckets, `governor`); a site
//! with its own per-key limit ([`Site::rate_limit_per_key`](tippen_core::Site)) gets the
//! core's buckets ([`tippen_core::rate::Gate`]) in its owner state instead. A host given a
//! [`SharedLimiter`] counts all three there instead, shared with the other replicas.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tippen_core::{KeyHash, StoreError, Timestamp};

pub use tippen_core::rate::{RateLimit, RateLimits};

/// The bucket a request is counted in by a [`SharedLimiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// Requests from one client address, under [`RateLimits::per_client`]. The address is
    /// personal data: a limiter that keeps buckets outside the process should not keep it
    /// in plain text (`tippen_redis::RedisRateLimiter` keys it by a keyed hash).
    Client(IpAddr),
    /// Requests presenting one key (by its hash; the key itself is never handed over), under
    /// [`RateLimits::per_key`].
    Key(KeyHash),
    /// Requests presenting one key of a site that has its own per-key limit
    /// ([`Site::rate_limit_per_key`](tippen_core::Site::rate_limit_per_key)), under that
    /// limit (its requests and its WebSocket upgrades alike). Apart from [`Key`](Self::Key),
    /// since the two limits differ.
    SiteKey(KeyHash),
}

/// Rate-limit buckets shared by several replicas
/// ([`TippenHost::with_shared_limits`](crate::TippenHost::with_shared_limits)), so that N
/// replicas together allow a limit once, not N times. `tippen_redis::RedisRateLimiter` is the
/// implementation on Redis.
///
/// The host fails open: when [`check`](Self::check) returns an error, or does not answer
/// within [`HostConfig::shared_limits_timeout`](crate::HostConfig::shared_limits_timeout),
/// the request is let through and a warning is logged (at most one every 10 s).
#[async_trait]
pub trait SharedLimiter: Send + Sync + 'static {
    /// Counts one request in `scope`'s bucket of `limit` (a token bucket:
    /// `limit.per_second` requests a second on average, bursts of `limit.burst`).
    /// `Ok(Ok(()))`: within the limit; `Ok(Err(wait))`: over it (the request is not
    /// counted), with how long until it would be within. `now` is the host's clock; an
    /// implementation shared by replicas whose clocks may differ can use one clock of its
    /// own instead (`RedisRateLimiter` uses Redis's `TIME`).
    async fn check(
        &self,
        scope: LimitScope,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError>;
}

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
