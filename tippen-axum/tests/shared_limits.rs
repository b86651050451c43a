//! A host with shared limits (`TippenHost::with_shared_limits`), on a real socket, with a
//! recording stand-in limiter: every check goes through it (per address, per key by its hash,
//! per key of a site with its own limit, each with its limit) and none through the host's own
//! buckets; its refusals are the usual 429; a failing or silent limiter lets requests through.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tippen_axum::{
    HostConfig, LimitScope, RateLimit, RateLimits, ServeConfig, SharedLimiter, TippenHost,
};
use tippen_core::{Config, KeyHash, MemoryStore, Site, StoreError, SystemClock, Timestamp, Tippen};

#[derive(Clone, Copy)]
enum Answer {
    Allow,
    Refuse,
    Fail,
    Hang,
}

struct Recording {
    answer: Answer,
    seen: Mutex<Vec<(LimitScope, RateLimit)>>,
}

#[async_trait]
impl SharedLimiter for Recording {
    async fn check(
        &self,
        scope: LimitScope,
        limit: RateLimit,
        _now: Timestamp,
    ) -> Result<Result<(), Duration>, StoreError> {
        self.seen.lock().unwrap().push((scope, limit));
        match self.answer {
            Answer::Allow => Ok(Ok(())),
            Answer::Refuse => Ok(Err(Duration::from_millis(1500))),
            Answer::Fail => Err(StoreError::Backend("connection refused".into())),
            Answer::Hang => std::future::pending().await,
        }
    }
}

const PER_CLIENT: RateLimit = RateLimit {
    per_second: 1,
    burst: 1,
};
const PER_KEY: RateLimit = RateLimit {
    per_second: 2,
    burst: 2,
};
const SITE_OWN: RateLimit = RateLimit {
    per_second: 3,
    burst: 3,
};

struct Running {
    base: String,
    host: TippenHost,
    limiter: Arc<Recording>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.host.begin_shutdown();
    }
}

async fn start(answer: Answer, rate_limits: RateLimits) -> Running {
    let tippen = Arc::new(Tippen::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Config::default(),
    ));
    tippen
        .put_site(&Site::new("a", "A", "pk_a", "sk_a"))
        .await
        .unwrap();
    tippen
        .put_site(&Site::new("r", "Rated", "pk_r", "sk_r").with_rate_limit_per_key(SITE_OWN))
        .await
        .unwrap();
    let limiter = Arc::new(Recording {
        answer,
        seen: Mutex::default(),
    });
    let config = HostConfig {
        rate_limits,
        shared_limits_timeout: Duration::from_millis(100),
        ..HostConfig::default()
    };
    let host = TippenHost::with_config(tippen, config).with_shared_limits(limiter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let stopping = host.clone();
    tokio::spawn(tippen_axum::serve(
        listener,
        host.router(),
        ServeConfig::default(),
        async move { stopping.shutdown_requested().await },
    ));
    Running {
        base: format!("http://{addr}"),
        host,
        limiter,
    }
}

fn both() -> RateLimits {
    RateLimits {
        per_client: Some(PER_CLIENT),
        per_key: Some(PER_KEY),
    }
}

async fn page_view(base: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/track/visitor"))
        .header("X-Tippen-API-Key", key)
        .json(&json!({
            "event": "pageview",
            "visitor": {"visitorId": "v1", "url": "https://test.com/", "timestamp": "2025-10-16T12:00:00Z"},
            "website": "test.com",
        }))
        .send()
        .await
        .unwrap()
}

async fn root(base: &str) -> reqwest::Response {
    reqwest::get(format!("{base}/")).await.unwrap()
}

#[tokio::test]
async fn every_check_goes_through_the_shared_limiter() {
    let running = start(Answer::Allow, both()).await;
    // The host's own bucket (bursts of 1) would refuse the second.
    for _ in 0..3 {
        assert_eq!(root(&running.base).await.status(), 200);
    }
    assert_eq!(page_view(&running.base, "pk_a").await.status(), 200);
    assert_eq!(page_view(&running.base, "pk_r").await.status(), 200);
    let client = LimitScope::Client(IpAddr::from([127, 0, 0, 1]));
    assert_eq!(
        *running.limiter.seen.lock().unwrap(),
        [
            (client, PER_CLIENT),
            (client, PER_CLIENT),
            (client, PER_CLIENT),
            (client, PER_CLIENT),
            (LimitScope::Key(KeyHash::of("pk_a")), PER_KEY),
            (client, PER_CLIENT),
            (LimitScope::SiteKey(KeyHash::of("pk_r")), SITE_OWN),
        ]
    );
}

#[tokio::test]
async fn a_refusal_is_the_usual_429() {
    let running = start(Answer::Refuse, both()).await;
    let refused = root(&running.base).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests from this address"),
        "{body}"
    );

    let keys_only = start(
        Answer::Refuse,
        RateLimits {
            per_client: None,
            per_key: Some(PER_KEY),
        },
    )
    .await;
    for key in ["pk_a", "pk_r"] {
        let refused = page_view(&keys_only.base, key).await;
        assert_eq!(refused.status(), 429, "{key}");
        assert_eq!(refused.headers()["retry-after"], "2");
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("too many requests with this key"),
            "{body}"
        );
    }

    // No limit configured, no site limit: nothing to check.
    let none = start(Answer::Refuse, RateLimits::none()).await;
    assert_eq!(page_view(&none.base, "pk_a").await.status(), 200);
    assert_eq!(root(&none.base).await.status(), 200);
    assert!(none.limiter.seen.lock().unwrap().is_empty());
    // ... but a site's own limit still is.
    assert_eq!(page_view(&none.base, "pk_r").await.status(), 429);
}

#[tokio::test]
async fn a_failing_or_silent_limiter_lets_requests_through() {
    for answer in [Answer::Fail, Answer::Hang] {
        let running = start(answer, both()).await;
        let started = Instant::now();
        for _ in 0..3 {
            assert_eq!(root(&running.base).await.status(), 200);
            assert_eq!(page_view(&running.base, "pk_a").await.status(), 200);
        }
        assert_eq!(running.limiter.seen.lock().unwrap().len(), 9);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "each check gives up within its timeout: {:?}",
            started.elapsed()
        );
    }
}
