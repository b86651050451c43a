//! [`RedisRateLimiter`]: the axum host's rate limits counted in Redis, shared by every replica.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::KeysInterface;
use fred::types::SetOptions;
use fred::types::scripts::Script;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tippen_axum::{LimitScope, RateLimit, SharedLimiter};
use tippen_core::{IdGenerator, SecureIds, StoreError, Timestamp};

use crate::RedisStore;

/// GCRA (the token bucket as a "theoretical arrival time") on Redis's clock, one key per
/// bucket: the same arithmetic as `tippen_core::rate::Buckets`, in microseconds.
///
/// `KEYS[1]`: the bucket. `ARGV[1]`: microseconds between two requests at the sustained rate,
/// `ARGV[2]`: the burst.
/// Returns `0` when the request is counted, else how many microseconds until it would be.
/// The key holds the theoretical arrival time (µs since the epoch on Redis's clock) and
/// expires when the bucket is full again, when it would allow a whole burst anyway.
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > capacity then return new_tat - now - capacity end
redis.call('SET', KEYS[1], string.format('%d', new_tat),
  'PX', string.format('%d', math.floor((new_tat - now) / 1000) + 1))
return 0
";

/// The axum host's [`SharedLimiter`] on Redis: every replica whose host counts its rate
/// limits here ([`TippenHost::with_shared_limits`](tippen_axum::TippenHost::with_shared_limits))
/// shares one bucket per client address, per key, and per key of a site with its own limit,
/// so N replicas allow a limit once, not N times.
///
/// - **One script per check**, one key per bucket: GCRA, the theoretical arrival time kept in
///   the bucket's key, which expires (`PX`) as soon as the bucket is full again. One round
///   trip per check; every key is its own Redis Cluster slot.
/// - **Redis's clock** (`TIME` in the script), not the replicas': replicas whose clocks
///   differ still agree on every bucket (with the host's `now`, a replica a second behind
///   would refuse what another allows, one a second ahead would allow a second's worth more).
///   The `now` a host passes is not used.
/// - **No address in plain text.** A client address's bucket is named by the first 16 bytes
///   of its HMAC-SHA-256 under a secret (hex), so Redis's keys, `MONITOR` and snapshots never
///   show an address. [`new`](Self::new) keeps the secret in Redis (`<namespace>:rl:secret`,
///   random, made by the first replica and read by the others), where whoever can read
///   Redis can also test guesses against it (the IPv4 space is small): what holds then is
///   that a bucket key lives only until its bucket is full again (`burst / per_second`
///   seconds at most). [`with_secret`](Self::with_secret) takes a secret that is never
///   written to Redis (give every replica the same). Keys are named by their SHA-256 (as
///   in the store's key index), never by the key.
/// - **Fails open**: a check that fails returns [`StoreError::Backend`], and the host lets the
///   request through (logging a warning); so does a check slower than
///   [`HostConfig::shared_limits_timeout`](tippen_axum::HostConfig::shared_limits_timeout).
///
/// ```no_run
/// # async fn run(tippen: tippen_core::Tippen, store: tippen_redis::RedisStore) -> Result<(), tippen_core::StoreError> {
/// use std::sync::Arc;
/// let limiter = tippen_redis::RedisRateLimiter::new(&store).await?;
/// let host = tippen_axum::TippenHost::with_config(tippen, Default::default())
///     .with_shared_limits(Arc::new(limiter));
/// # Ok(()) }
/// ```
///
/// It uses the store's connection (clone the store, or connect another one, for its own).
#[derive(Clone)]
pub struct RedisRateLimiter {
    store: RedisStore,
    script: Script,
    names: Names,
}

/// Names the buckets' keys.
#[derive(Clone)]
struct Names {
    namespace: String,
    /// HMAC-SHA-256 keyed with the secret, ready to hash an address.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("namespace", &self.store.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on `store`'s connection whose address secret is kept in Redis
    /// (`<namespace>:rl:secret`): the first replica writes a random one (`SET … NX`), every
    /// replica reads it, so all of them name an address's bucket alike. The key does not
    /// expire; should it be lost (`FLUSHALL`), replicas started after keep a new one and count
    /// addresses apart from the older ones until those restart.
    pub async fn new(store: &RedisStore) -> Result<Self, StoreError> {
        let key = format!("{}:rl:secret", store.namespace);
        let ids = SecureIds;
        let fresh: String = (0..4).map(|_| format!("{:016x}", ids.next_u64())).collect();
        let _: Option<String> = store
            .client
            .set(&key, fresh, None, Some(SetOptions::NX), false)
            .await
            .map_err(failed)?;
        let secret: Option<String> = store.client.get(&key).await.map_err(failed)?;
        let secret = secret.ok_or_else(|| {
            StoreError::Backend(format!("{key} vanished as soon as it was written"))
        })?;
        Ok(Self::with_secret(store, secret.as_bytes()))
    }

    /// A limiter on `store`'s connection that hashes addresses under `secret`, which is never
    /// written to Redis. Replicas given different secrets count an address apart.
    pub fn with_secret(store: &RedisStore, secret: &[u8]) -> Self {
        RedisRateLimiter {
            store: store.clone(),
            script: Script::from_lua(GCRA),
            names: Names::new(&store.namespace, secret),
        }
    }
}

impl Names {
    fn new(namespace: &str, secret: &[u8]) -> Self {
        Names {
            namespace: namespace.to_owned(),
            keyed: Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"),
        }
    }

    /// The bucket's key: `<namespace>:rl:ip:<keyed hash>`, `…:rl:key:<key hash>` or
    /// `…:rl:site_key:<key hash>`.
    fn bucket(&self, scope: LimitScope) -> String {
        let ns = &self.namespace;
        match scope {
            LimitScope::Client(ip) => format!("{ns}:rl:ip:{}", self.address_hash(ip)),
            LimitScope::Key(hash) => format!("{ns}:rl:key:{}", hash.to_hex()),
            LimitScope::SiteKey(hash) => format!("{ns}:rl:site_key:{}", hash.to_hex()),
        }
    }

    /// The first 16 bytes of the address's HMAC-SHA-256, in hex.
    fn address_hash(&self, ip: IpAddr) -> String {
        let mut mac = self.keyed.clone();
        // An IPv4-mapped IPv6 address is the IPv4 address.
        match ip.to_canonical() {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac.finalize().into_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[async_trait]
impl SharedLimiter for RedisRateLimiter {
    async fn check(
        &self,
        scope: LimitScope,
        limit: RateLimit,
        _now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        let per_second = u64::from(limit.per_second.max(1));
        let interval_us = (1_000_000 / per_second).max(1);
        let burst = limit.burst.max(1);
        let keys = vec![self.names.bucket(scope)];
        let wait_us: i64 = self
            .script
            .evalsha_with_reload(
                &self.store.client,
                keys,
                vec![interval_us.to_string(), burst.to_string()],
            )
            .await
            .map_err(failed)?;
        Ok(match u64::try_from(wait_us) {
            Ok(0) => Ok(()),
            Ok(us) => Err(Duration::from_micros(us)),
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "the rate-limit script answered {wait_us}"
                )));
            }
        })
    }
}

/// A failed command, without the store's own warning (the host warns, at most every 10 s).
fn failed(e: fred::error::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tippen_core::KeyHash;

    #[test]
    fn buckets_name_addresses_by_a_keyed_hash_and_keys_by_their_hash() {
        let limiter = Names::new("ns", b"secret");
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let name = limiter.bucket(LimitScope::Client(ip));
        assert!(name.starts_with("ns:rl:ip:"), "{name}");
        assert_eq!(name.len(), "ns:rl:ip:".len() + 32, "{name}");
        assert!(!name.contains("203.0.113.7") && !name.contains("cb007107"));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().expect("ip");
        assert_eq!(limiter.bucket(LimitScope::Client(mapped)), name);
        let other: IpAddr = "203.0.113.8".parse().expect("ip");
        assert_ne!(limiter.bucket(LimitScope::Client(other)), name);
        let elsewhere = Names::new("ns", b"another secret");
        assert_ne!(
            elsewhere.bucket(LimitScope::Client(ip)),
            name,
            "the hash is keyed"
        );

        let hash = KeyHash::of("pk_live_key");
        let key = limiter.bucket(LimitScope::Key(hash));
        assert_eq!(key, format!("ns:rl:key:{}", hash.to_hex()));
        assert!(!key.contains("pk_live_key"));
        assert_eq!(
            limiter.bucket(LimitScope::SiteKey(hash)),
            format!("ns:rl:site_key:{}", hash.to_hex())
        );
    }
}
