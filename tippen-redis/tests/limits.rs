//! `RedisRateLimiter` on a real `redis-server`: a burst then a refusal with an honest wait,
//! refilling, two connections (two replicas) sharing every bucket, buckets independent of each
//! other, keys expiring once their bucket is full again, and an axum host that fails open when
//! Redis is gone.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::RedisServer;
use fred::prelude::{ClientLike, KeysInterface};
use tippen_axum::{HostConfig, LimitScope, RateLimit, RateLimits, SharedLimiter, TippenHost};
use tippen_core::{Config, KeyHash, MemoryStore, SystemClock, Timestamp, Tippen};
use tippen_redis::{RedisRateLimiter, RedisStore};

/// The limiter runs on Redis's clock: the `now` a host passes is not used.
const UNUSED_NOW: Timestamp = Timestamp::from_millis(0);

async fn limiter(server: &RedisServer) -> RedisRateLimiter {
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    RedisRateLimiter::new(&store).await.expect("limiter")
}

async fn check(
    limiter: &RedisRateLimiter,
    scope: LimitScope,
    limit: RateLimit,
) -> Result<(), Duration> {
    limiter
        .check(scope, limit, UNUSED_NOW)
        .await
        .expect("Redis answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_then_a_refusal_with_the_wait_until_the_next_token() {
    let server = RedisServer::start();
    let limiter = limiter(&server).await;
    let limit = RateLimit::new(1, 4);
    let hash = KeyHash::of("pk_some_key");
    let scope = LimitScope::Key(hash);
    for i in 0..4 {
        assert_eq!(check(&limiter, scope, limit).await, Ok(()), "request {i}");
    }
    let wait = check(&limiter, scope, limit)
        .await
        .expect_err("the fifth is over the burst");
    assert!(
        wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
        "one token a second: the next comes within a second, {wait:?}"
    );
    let again = check(&limiter, scope, limit)
        .await
        .expect_err("a refusal is not counted, and the bucket is still empty");
    assert!(again <= wait, "{again:?} after {wait:?}");

    // The bucket's key is named by the key's hash and expires when the bucket is full again
    // (four tokens at one a second: within 4 s).
    let raw = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&server.url()).expect("url"),
    )
    .build()
    .expect("client");
    raw.init().await.expect("raw connection");
    let pttl: i64 = raw
        .pttl(format!("tippen:rl:key:{}", hash.to_hex()))
        .await
        .expect("PTTL");
    assert!(
        (3_000..=4_001).contains(&pttl),
        "expires once the bucket is full again: PTTL {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_bucket_refills_at_the_sustained_rate() {
    let server = RedisServer::start();
    let limiter = limiter(&server).await;
    // A token every millisecond, bursts of 2.
    let limit = RateLimit::new(1000, 2);
    let scope = LimitScope::Key(KeyHash::of("pk_fast"));
    let mut refusals = 0;
    let started = Instant::now();
    // Over a burst again and again; each time, the wait given is enough.
    while refusals < 5 {
        match check(&limiter, scope, limit).await {
            Ok(()) => {}
            Err(wait) => {
                assert!(wait <= Duration::from_millis(1), "{wait:?}");
                refusals += 1;
                tokio::time::sleep(wait).await;
                assert_eq!(
                    check(&limiter, scope, limit).await,
                    Ok(()),
                    "answered once the wait has passed"
                );
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "refusals come");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_share_each_bucket() {
    let server = RedisServer::start();
    // Two connections, as two replicas have; each reads the one address secret.
    let (a, b) = (limiter(&server).await, limiter(&server).await);
    let limit = RateLimit::new(1, 4);
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    for scope in [
        LimitScope::Client(ip),
        LimitScope::Key(KeyHash::of("pk_shared")),
        LimitScope::SiteKey(KeyHash::of("pk_shared")),
    ] {
        for i in 0..4 {
            let replica = if i % 2 == 0 { &a } else { &b };
            assert_eq!(check(replica, scope, limit).await, Ok(()), "{scope:?} #{i}");
        }
        // Each replica has taken two: the fifth in all is refused, wherever it goes.
        assert!(check(&a, scope, limit).await.is_err(), "{scope:?} on A");
        assert!(check(&b, scope, limit).await.is_err(), "{scope:?} on B");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_independent() {
    let server = RedisServer::start();
    let limiter = limiter(&server).await;
    let limit = RateLimit::new(1, 2);
    let spent = LimitScope::Key(KeyHash::of("pk_spent"));
    for _ in 0..2 {
        assert_eq!(check(&limiter, spent, limit).await, Ok(()));
    }
    assert!(check(&limiter, spent, limit).await.is_err());
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let other_ip: IpAddr = "198.51.100.8".parse().expect("ip");
    for scope in [
        LimitScope::Key(KeyHash::of("pk_other")),
        LimitScope::SiteKey(KeyHash::of("pk_spent")),
        LimitScope::Client(ip),
    ] {
        assert_eq!(check(&limiter, scope, limit).await, Ok(()), "{scope:?}");
    }
    assert_eq!(check(&limiter, LimitScope::Client(ip), limit).await, Ok(()));
    assert!(
        check(&limiter, LimitScope::Client(ip), limit)
            .await
            .is_err()
    );
    assert_eq!(
        check(&limiter, LimitScope::Client(other_ip), limit).await,
        Ok(())
    );

    // A limiter with a secret of its own names an address's bucket apart.
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let apart = RedisRateLimiter::with_secret(&store, b"a secret of our own");
    assert_eq!(check(&apart, LimitScope::Client(ip), limit).await, Ok(()));

    // One round trip per check: the figure on this machine.
    let mut took = Vec::new();
    let generous = RateLimit::new(1_000_000, 1_000_000);
    for i in 0..500u32 {
        let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        let started = Instant::now();
        assert_eq!(
            check(&limiter, LimitScope::Client(ip), generous).await,
            Ok(())
        );
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "a check on a local redis-server: p50 {:?}, p99 {:?} (500 checks)",
        took[250], took[495]
    );
}

fn request_from(ip: [u8; 4]) -> axum::extract::Request {
    let mut req = axum::extract::Request::builder()
        .uri("/")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
    req
}

/// An axum host counting its limits in Redis: over the limit it answers the usual 429; with
/// Redis gone it lets requests through (fail open) within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_answers_429_through_redis_and_fails_open_without_it() {
    let server = RedisServer::start();
    let limiter = limiter(&server).await;
    let tippen = Tippen::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Config::default(),
    );
    let config = HostConfig {
        rate_limits: RateLimits {
            per_client: Some(RateLimit::new(1, 2)),
            per_key: None,
        },
        shared_limits_timeout: Duration::from_millis(200),
        ..HostConfig::default()
    };
    let host = TippenHost::with_config(tippen, config).with_shared_limits(Arc::new(limiter));
    let client = [203, 0, 113, 9];
    for _ in 0..2 {
        assert_eq!(host.handle(request_from(client)).await.status(), 200);
    }
    let refused = host.handle(request_from(client)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many requests from this address")),
        "{body}"
    );

    drop(server);
    let started = Instant::now();
    let answer = host.handle(request_from(client)).await;
    assert_eq!(
        answer.status(),
        200,
        "Redis is gone: the request goes through"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within the host's timeout: {:?}",
        started.elapsed()
    );
}
