//! Rate limits, sans-IO: a keyed GCRA token bucket ([`Buckets`], time passed in) for hosts
//! that keep the buckets in memory (the Worker's site object), and fixed windows
//! ([`RateLimit::window`]) for hosts that keep a counter per window in their store (Lambda,
//! DynamoDB). Over a limit the answer is [`too_many`]: `429 {"error":…}` with `Retry-After`.
//!
//! The axum host keeps its buckets with `governor` and the same [`RateLimit`] numbers.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::clock::Timestamp;
use crate::site::KeyHash;

/// A token bucket: `per_second` requests a second on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained requests per second (at least 1).
    pub per_second: u32,
    /// Requests allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

/// How many times `per_second` a configured limit allows at once (`TIPPEN_RATE_LIMIT_PER_IP`,
/// `TIPPEN_RATE_LIMIT_PER_KEY` and a site's `rateLimitPerKey` are `N` requests a second with
/// bursts of `BURST_FACTOR × N`).
pub const BURST_FACTOR: u32 = 4;

impl RateLimit {
    /// `per_second` sustained with bursts of `burst` (each at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: per_second.max(1),
            burst: burst.max(1),
        }
    }

    /// The limit a configured number means: `n` a second with bursts of
    /// [`BURST_FACTOR`]` × n`; `0` is no limit (`None`).
    pub fn per_second(n: u32) -> Option<Self> {
        (n > 0).then(|| RateLimit::new(n, n.saturating_mul(BURST_FACTOR)))
    }

    /// Microseconds between two requests at the sustained rate.
    fn interval_us(self) -> u64 {
        (1_000_000 / u64::from(self.per_second.max(1))).max(1)
    }

    /// The fixed window `now` falls in, for a counter kept per window in a store: windows
    /// last `burst / per_second` seconds (at least one) and allow as many requests as the
    /// bucket refills in that time (at least `burst`). A counter allows at most twice a
    /// window's requests across a window boundary, never more on average.
    pub fn window(self, now: Timestamp) -> Window {
        let per_second = u64::from(self.per_second.max(1));
        let burst = u64::from(self.burst.max(1));
        let length_ms = (burst * 1000 / per_second).max(1000);
        let max = (per_second * length_ms / 1000).max(burst);
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(0);
        let index = now_ms / length_ms;
        let ends_ms = (index + 1) * length_ms;
        Window {
            index,
            max: u32::try_from(max).unwrap_or(u32::MAX),
            ends_at: Timestamp::from_millis(i64::try_from(ends_ms).unwrap_or(i64::MAX)),
        }
    }
}

/// The rate limits a host applies to every request: per client address and per presented
/// key. The defaults are generous for real traffic (many visitors behind one company's
/// address; every visitor of a busy site on one key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Per client address. Default 100/s, bursts of 400. `None`: no limit.
    pub per_client: Option<RateLimit>,
    /// Per presented key (header, query or body). Default 1000/s, bursts of 4000. `None`: no
    /// limit. A site's own [`Site::rate_limit_per_key`](crate::Site::rate_limit_per_key)
    /// replaces it for that site's keys.
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

/// One fixed window of a [`RateLimit`] (see [`RateLimit::window`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The window's number (time since the epoch divided by the window's length): the key
    /// of its counter.
    pub index: u64,
    /// Requests allowed in the window.
    pub max: u32,
    /// When the window ends (its counter may be dropped after).
    pub ends_at: Timestamp,
}

impl Window {
    /// How long a refused client waits from `now`: until the window ends.
    pub fn retry_after(&self, now: Timestamp) -> Duration {
        self.ends_at.since(now)
    }
}

/// Keyed GCRA buckets (the token bucket as a "theoretical arrival time" per key), in memory,
/// time passed in. Bounded: past [`Buckets::MAX_KEYS`] keys, the keys whose buckets are full
/// again are forgotten (they would allow a whole burst anyway), and if that is not enough
/// every key is (an attacker with that many addresses is then not limited per address for a
/// moment, and nothing grows).
#[derive(Debug)]
pub struct Buckets<K> {
    limit: RateLimit,
    /// Theoretical arrival time per key, in microseconds since the epoch.
    tats: HashMap<K, u64>,
}

impl<K: Hash + Eq> Buckets<K> {
    /// Most keys held.
    pub const MAX_KEYS: usize = 100_000;

    /// Empty buckets of `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Buckets {
            limit,
            tats: HashMap::new(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts one request of `key` at `now`: `Ok` when it is within the limit, else `Err`
    /// with how long until it would be (the request is not counted then).
    pub fn check(&mut self, key: K, now: Timestamp) -> Result<(), Duration> {
        let now_us = u64::try_from(now.as_millis()).unwrap_or(0) * 1000;
        let interval = self.limit.interval_us();
        let capacity = interval * u64::from(self.limit.burst.max(1));
        if self.tats.len() >= Self::MAX_KEYS && !self.tats.contains_key(&key) {
            self.tats.retain(|_, tat| *tat > now_us);
            if self.tats.len() >= Self::MAX_KEYS / 2 {
                self.tats.clear();
            }
            self.tats.shrink_to_fit();
        }
        let tat = self.tats.get(&key).copied().unwrap_or(now_us).max(now_us);
        let next = tat + interval;
        if next - now_us > capacity {
            return Err(Duration::from_micros(next - now_us - capacity));
        }
        self.tats.insert(key, next);
        Ok(())
    }

    /// Keys held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}

/// The buckets of a host that owns its sites' requests in memory (the Worker's site object):
/// one per client address and one per presented key, each optional.
#[derive(Debug)]
pub struct Gate {
    clients: Option<Buckets<IpAddr>>,
    keys: Option<Buckets<KeyHash>>,
}

impl Gate {
    /// Buckets of these limits (`None`: that one is not limited).
    pub fn new(per_client: Option<RateLimit>, per_key: Option<RateLimit>) -> Self {
        Gate {
            clients: per_client.map(Buckets::new),
            keys: per_key.map(Buckets::new),
        }
    }

    /// A gate for `site`'s requests: the host's limit per address, and the site's own limit
    /// per key or else the host's ([`Site::key_rate_limit`](crate::Site::key_rate_limit)).
    pub fn for_site(limits: &RateLimits, site: &crate::Site) -> Self {
        Gate::new(limits.per_client, site.key_rate_limit(limits.per_key))
    }

    /// Counts a request from `client` presenting `key` at `now`; over a limit, the `429` to
    /// answer (`None`: go on). A key longer than `max_key_bytes` is not counted (the core
    /// refuses it unhashed).
    pub fn check(
        &mut self,
        client: Option<IpAddr>,
        key: Option<&str>,
        max_key_bytes: usize,
        now: Timestamp,
    ) -> Option<Response<Bytes>> {
        if let (Some(buckets), Some(ip)) = (&mut self.clients, client)
            && let Err(wait) = buckets.check(ip, now)
        {
            return Some(too_many_from_address(wait));
        }
        if let (Some(buckets), Some(key)) = (&mut self.keys, key)
            && key.len() <= max_key_bytes
            && let Err(wait) = buckets.check(KeyHash::of(key), now)
        {
            return Some(too_many_with_key(wait));
        }
        None
    }
}

/// `429 {"error":"<what>; retry in N s"}` with `Retry-After: N` (whole seconds, at least 1).
pub fn too_many(what: &str, wait: Duration) -> Response<Bytes> {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{what}; retry in {secs} s"),
    )
    .with_retry_after(secs)
    .into_response()
}

/// The refusal of a client over its per-address limit.
pub fn too_many_from_address(wait: Duration) -> Response<Bytes> {
    too_many("too many requests from this address", wait)
}

/// The refusal of a key over its limit.
pub fn too_many_with_key(wait: Duration) -> Response<Bytes> {
    too_many("too many requests with this key", wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut b = Buckets::new(RateLimit::new(2, 3));
        for _ in 0..3 {
            assert!(b.check("k", at(1_000)).is_ok());
        }
        let wait = b.check("k", at(1_000)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another key has its own bucket.
        assert!(b.check("other", at(1_000)).is_ok());
        // Half a second later one more token.
        assert!(b.check("k", at(1_500)).is_ok());
        assert!(b.check("k", at(1_500)).is_err());
        // After a quiet period the whole burst again.
        for _ in 0..3 {
            assert!(b.check("k", at(10_000)).is_ok());
        }
        assert!(b.check("k", at(10_000)).is_err());
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let mut b = Buckets::new(RateLimit::new(1, 1));
        assert!(b.check(1u8, at(0)).is_ok());
        for _ in 0..100 {
            assert!(b.check(1u8, at(10)).is_err());
        }
        assert!(b.check(1u8, at(1_000)).is_ok());
    }

    #[test]
    fn keys_are_bounded() {
        let mut b = Buckets::new(RateLimit::new(1, 2));
        for i in 0..(Buckets::<u32>::MAX_KEYS as u32 + 10) {
            assert!(b.check(i, at(0)).is_ok());
        }
        assert!(b.len() <= Buckets::<u32>::MAX_KEYS);
        // Later, full buckets are forgotten first.
        let mut b = Buckets::new(RateLimit::new(1000, 1));
        for i in 0..Buckets::<u32>::MAX_KEYS as u32 {
            assert!(b.check(i, at(0)).is_ok());
        }
        assert!(b.check(u32::MAX, at(5_000)).is_ok());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn windows() {
        let w = RateLimit::new(1, 4).window(at(9_500));
        assert_eq!((w.index, w.max, w.ends_at), (2, 4, at(12_000)));
        assert_eq!(w.retry_after(at(9_500)), Duration::from_millis(2_500));
        // Never shorter than a second; as many as a second refills.
        let w = RateLimit::new(100, 10).window(at(1_999));
        assert_eq!((w.index, w.max, w.ends_at), (1, 100, at(2_000)));
        assert_eq!(RateLimit::per_second(0), None);
        assert_eq!(RateLimit::per_second(5), Some(RateLimit::new(5, 20)));
    }

    #[test]
    fn a_gate_limits_addresses_and_keys_apart() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        let mut g = Gate::new(Some(RateLimit::new(1, 2)), Some(RateLimit::new(1, 3)));
        assert!(g.check(Some(ip), None, 256, at(0)).is_none());
        assert!(g.check(Some(ip), None, 256, at(0)).is_none());
        let r = g.check(Some(ip), None, 256, at(0)).unwrap();
        assert!(String::from_utf8_lossy(r.body()).contains("this address"));
        // Another address has its own bucket.
        assert!(g.check(Some(other), None, 256, at(0)).is_none());
        let mut g = Gate::new(None, Some(RateLimit::new(1, 3)));
        for _ in 0..3 {
            assert!(g.check(Some(other), Some("pk"), 256, at(0)).is_none());
        }
        let r = g.check(Some(ip), Some("pk"), 256, at(0)).unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(String::from_utf8_lossy(r.body()).contains("this key"));
        assert!(g.check(Some(ip), Some("pk_other"), 256, at(0)).is_none());
        // An overlong key is not hashed nor counted.
        let long = "k".repeat(300);
        for _ in 0..10 {
            assert!(g.check(None, Some(&long), 256, at(0)).is_none());
        }
    }

    #[test]
    fn the_refusal_is_a_429_with_retry_after() {
        let r = too_many_with_key(Duration::from_millis(1_200));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "2");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body["error"],
            "too many requests with this key; retry in 2 s"
        );
        let r = too_many_from_address(Duration::ZERO);
        assert_eq!(r.headers()["retry-after"], "1");
    }
}
