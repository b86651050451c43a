//! Enrichment end to end against a local stand-in provider speaking IPinfo's wire format:
//! credits under concurrency (single flight, shared cache), retries of 429 and 202, a provider
//! that never answers, an invalid key, and the SQLite cache across a restart. (The company
//! reaching a dashboard, the shared cache across sites and exact stats are cases of the shared
//! conformance suite, run in `conformance.rs`.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tippen_axum::{
    EnrichmentConfig, HostConfig, SqliteOptions, SqliteStore, TippenHost, TrustedProxies,
};
use tippen_core::enrichment::{PlannerConfig, ProviderConfig, ProviderKind, RateLimit};
use tippen_core::{Config, Site, SystemClock, Tippen};

const TOKEN: &str = "test-token-7f3a";

/// How the stand-in answers.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// 200 with a company, after a delay.
    Found { delay: Duration },
    /// First call per address: 429 with `Retry-After: 1` for addresses ending in `.1`, 202
    /// with `Retry-After: 1` for the others; then 200.
    LaterThenFound,
    /// Never answers (sleeps a minute).
    Silent,
}

struct StandInState {
    mode: Mode,
    calls: AtomicUsize,
    per_ip: Mutex<HashMap<String, u32>>,
}

struct StandIn {
    base_url: String,
    state: Arc<StandInState>,
}

impl StandIn {
    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn max_calls_per_ip(&self) -> u32 {
        let per_ip = self.state.per_ip.lock().unwrap();
        per_ip.values().copied().max().unwrap_or(0)
    }
}

fn company_name(ip: &str) -> String {
    format!("Company {ip}")
}

async fn answer(
    State(state): State<Arc<StandInState>>,
    UrlPath(ip): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let attempt = {
        let mut per_ip = state.per_ip.lock().unwrap();
        let n = per_ip.entry(ip.clone()).or_default();
        *n += 1;
        *n
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if !authorized {
        // IPinfo's answer to an unknown token.
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"title": "Unknown token", "message": "Please ensure you've entered your token correctly."})),
        )
            .into_response();
    }
    let found = || {
        axum::Json(json!({
            "ip": ip,
            "city": "Springfield",
            "region": "Oregon",
            "country": "US",
            "org": "AS64500 Example Networks",
            "company": {"name": company_name(&ip), "domain": "company.example", "type": "business"},
        }))
        .into_response()
    };
    match state.mode {
        Mode::Found { delay } => {
            tokio::time::sleep(delay).await;
            found()
        }
        Mode::LaterThenFound if attempt == 1 => {
            let status = if ip.ends_with(".1") {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::ACCEPTED
            };
            (status, [("retry-after", "1")], axum::Json(json!({}))).into_response()
        }
        Mode::LaterThenFound => found(),
        Mode::Silent => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            found()
        }
    }
}

async fn stand_in(mode: Mode) -> StandIn {
    let state = Arc::new(StandInState {
        mode,
        calls: AtomicUsize::new(0),
        per_ip: Mutex::new(HashMap::new()),
    });
    let app = axum::Router::new()
        .route("/{ip}", axum::routing::get(answer))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve stand-in");
    });
    StandIn {
        base_url: format!("http://{addr}"),
        state,
    }
}

struct Server {
    base_url: String,
    host: TippenHost,
    http: reqwest::Client,
}

fn enrichment(provider: &StandIn, key: &str, planner: PlannerConfig) -> EnrichmentConfig {
    let config =
        ProviderConfig::new(ProviderKind::Ipinfo, key).with_base_url(provider.base_url.clone());
    let mut e = EnrichmentConfig::from_provider_config(&config).expect("provider config");
    e.planner = planner;
    e
}

fn fast_planner() -> PlannerConfig {
    PlannerConfig {
        rate_limit: RateLimit::new(1000, Duration::from_secs(60)),
        retry_delay: Duration::from_millis(200),
        ..PlannerConfig::default()
    }
}

async fn start(db: &Path, enrichment: EnrichmentConfig) -> Server {
    let store = SqliteStore::open_with(db, SqliteOptions::immediate()).expect("open SQLite");
    let tippen = Arc::new(Tippen::new(
        Arc::new(store),
        Arc::new(SystemClock),
        Config::default(),
    ));
    tippen
        .put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))
        .await
        .expect("put_site");
    let host = TippenHost::with_config(
        tippen,
        HostConfig {
            trusted_proxies: TrustedProxies::parse(["127.0.0.1"]).expect("proxies"),
            enrichment: Some(enrichment),
            ..HostConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = host.router();
    let stopping = host.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stopping.shutdown_requested().await })
        .await
        .expect("serve");
    });
    Server {
        base_url: format!("http://{addr}"),
        host,
        http: reqwest::Client::new(),
    }
}

impl Server {
    /// A page view of a new visitor from `ip` (through the trusted proxy); the status.
    async fn ping(&self, visitor: &str, ip: &str) -> u16 {
        let body = json!({
            "event": "pageview",
            "visitor": {"visitorId": visitor, "url": "https://e.example/", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"},
            "website": "e.example",
        });
        self.http
            .post(format!("{}/track/visitor", self.base_url))
            .header("X-Tippen-API-Key", "pk_a")
            .header("X-Forwarded-For", ip)
            .json(&body)
            .send()
            .await
            .expect("track")
            .status()
            .as_u16()
    }

    async fn stats(&self) -> Value {
        self.get("/api/stats?apiKey=sk_a").await
    }

    async fn visitors(&self) -> Vec<Value> {
        self.get("/api/visitors?apiKey=sk_a").await["visitors"]
            .as_array()
            .expect("visitors")
            .clone()
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }
}

/// Polls `check` every 50 ms until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn public_ip(i: usize) -> String {
    format!("23.{}.5.7", i + 1)
}

fn private_ip(i: usize) -> String {
    format!("10.0.{i}.1")
}

/// 1,000 concurrent first visits: `per_public` visitors from each of 100 public addresses,
/// the rest spread over 20 private ones.
async fn round(server: &Server, tag: &str) {
    let mut pings = Vec::new();
    for i in 0..100 {
        for j in 0..8 {
            pings.push((format!("{tag}-pub-{i}-{j}"), public_ip(i)));
        }
    }
    for i in 0..20 {
        for j in 0..10 {
            pings.push((format!("{tag}-priv-{i}-{j}"), private_ip(i)));
        }
    }
    assert_eq!(pings.len(), 1000);
    let statuses = join_all(pings.iter().map(|(v, ip)| server.ping(v, ip))).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every ping answered 200"
    );
}

async fn all_public_enriched(server: &Server) -> bool {
    let visitors = server.visitors().await;
    visitors.len() >= 800
        && visitors
            .iter()
            .filter(|v| {
                v["visitorId"]
                    .as_str()
                    .is_some_and(|id| id.contains("-pub-"))
            })
            .all(|v| v["enrichmentSource"] != "fallback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_pings_cost_one_lookup_per_public_address() {
    let provider = stand_in(Mode::Found {
        delay: Duration::from_millis(150),
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        &dir.path().join("t.db"),
        enrichment(&provider, TOKEN, fast_planner()),
    )
    .await;

    round(&server, "r1").await;
    eventually(
        Duration::from_secs(20),
        "every public visitor enriched",
        || all_public_enriched(&server),
    )
    .await;
    assert_eq!(
        provider.calls(),
        100,
        "one provider call per public address"
    );
    assert_eq!(provider.max_calls_per_ip(), 1);
    let s = server.stats().await;
    assert_eq!(s["creditsUsed"], 100, "{s}");
    assert_eq!(s["skipsByReason"]["private"], 200, "{s}");
    let saved_first = s["creditsSaved"].as_u64().unwrap();
    assert_eq!(
        saved_first, 700,
        "the other 700 public visitors cost nothing: {s}"
    );
    let visitors = server.visitors().await;
    let v = visitors
        .iter()
        .find(|v| v["visitorId"] == "r1-pub-3-0")
        .expect("visitor");
    assert_eq!(v["company"], company_name(&public_ip(3)));
    assert_eq!(v["companyDomain"], "company.example");
    let private = visitors
        .iter()
        .find(|v| v["visitorId"] == "r1-priv-0-0")
        .expect("visitor");
    assert_eq!(private["company"], "Direct Visitor");

    // Second round: everything from the cache.
    round(&server, "r2").await;
    eventually(Duration::from_secs(20), "second round listed", || async {
        server.visitors().await.len() >= 2000
    })
    .await;
    assert_eq!(provider.calls(), 100, "the second round costs no call");
    let s = server.stats().await;
    assert_eq!(s["creditsUsed"], 100, "{s}");
    let saved_by_cache = s["creditsSavedByCache"].as_u64().unwrap();
    assert!(saved_by_cache >= 100, "{s}");
    let v = server
        .visitors()
        .await
        .into_iter()
        .find(|v| v["visitorId"] == "r2-pub-3-0")
        .expect("visitor");
    assert_eq!(v["enrichmentSource"], "cache");
    assert_eq!(v["isCached"], true);
    eprintln!(
        "FIGURES: provider calls {} after 2000 pings (1600 public from 100 addresses, 400 private from 20); \
         round 1 saved {saved_first} by single flight; creditsSavedByCache {saved_by_cache}; total saved {}; hitRatio {}",
        provider.calls(),
        s["creditsSaved"],
        s["hitRatio"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_and_queued_answers_are_retried_into_a_company() {
    let provider = stand_in(Mode::LaterThenFound).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(
        &dir.path().join("t.db"),
        enrichment(&provider, TOKEN, fast_planner()),
    )
    .await;
    assert_eq!(server.ping("limited", "23.9.9.1").await, 200);
    assert_eq!(server.ping("queued", "23.9.9.2").await, 200);
    eventually(Duration::from_secs(10), "both enriched", || async {
        let v = server.visitors().await;
        v.len() == 2 && v.iter().all(|v| v["enrichmentSource"] == "provider")
    })
    .await;
    assert_eq!(provider.calls(), 4, "one retry each");
    let s = server.stats().await;
    assert_eq!(s["creditsUsed"], 4, "{s}");
    assert_eq!(s["failures"]["rateLimited"], 1, "{s}");
    assert_eq!(s["failures"]["queued"], 1, "{s}");
    let v = server.visitors().await;
    let limited = v.iter().find(|v| v["visitorId"] == "limited").unwrap();
    assert_eq!(limited["company"], company_name("23.9.9.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_delays_no_tracking_request() {
    let provider = stand_in(Mode::Silent).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = enrichment(
        &provider,
        TOKEN,
        PlannerConfig {
            max_attempts: 2,
            ..fast_planner()
        },
    );
    // A host that waited for the provider would take at least this long to answer.
    config.request_timeout = Duration::from_secs(3);
    let server = start(&dir.path().join("t.db"), config).await;
    let timed = (0..20).map(|i| {
        let server = &server;
        async move {
            let t = Instant::now();
            let status = server.ping(&format!("v{i}"), &public_ip(i)).await;
            (status, t.elapsed())
        }
    });
    for (status, took) in join_all(timed).await {
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(1),
            "a tracking request took {took:?}"
        );
    }
    // Two attempts per address time out, then the lookup settles as a failure.
    eventually(
        Duration::from_secs(20),
        "every attempt timed out",
        || async { server.stats().await["failures"]["transient"] == 40 },
    )
    .await;
    let visitors = server.visitors().await;
    assert_eq!(visitors.len(), 20);
    assert!(
        visitors
            .iter()
            .all(|v| v["company"] == "Unknown Company" && v["enrichmentSource"] == "fallback")
    );
    // A later page view is still answered at once.
    let t = Instant::now();
    assert_eq!(server.ping("late", &public_ip(50)).await, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the thread-local log subscriber sees the enrichment task too.
#[tokio::test(flavor = "current_thread")]
async fn an_invalid_key_shows_in_stats_and_logs_not_as_a_crash() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let provider = stand_in(Mode::Found {
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong_key = "wrong-key-99c1";
    let server = start(
        &dir.path().join("t.db"),
        enrichment(&provider, wrong_key, fast_planner()),
    )
    .await;
    assert_eq!(server.ping("v1", "23.1.1.1").await, 200);
    assert_eq!(server.ping("v2", "23.1.1.2").await, 200);
    eventually(Duration::from_secs(10), "the failures counted", || async {
        server.stats().await["failures"]["invalidKey"] == 2
    })
    .await;
    let s = server.stats().await;
    assert_eq!(s["creditsUsed"], 2, "an invalid key is not retried: {s}");
    assert_eq!(server.ping("v3", "23.1.1.3").await, 200, "still serving");
    let visitors = server.visitors().await;
    assert!(visitors.iter().all(|v| v["enrichmentSource"] == "fallback"));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("rejected the API key"),
        "the log names the problem: {text}"
    );
    assert!(!text.contains(wrong_key), "the key is never logged: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_cache_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("t.db");
    let provider = stand_in(Mode::Found {
        delay: Duration::ZERO,
    })
    .await;
    {
        let server = start(&db, enrichment(&provider, TOKEN, fast_planner())).await;
        assert_eq!(server.ping("before", "23.4.4.4").await, 200);
        eventually(Duration::from_secs(10), "enriched", || async {
            server.visitors().await[0]["enrichmentSource"] == "provider"
        })
        .await;
        server.host.shutdown().await;
    }
    assert_eq!(provider.calls(), 1);
    // Give the first store's tasks a moment to let go of it.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = start(&db, enrichment(&provider, TOKEN, fast_planner())).await;
    assert_eq!(server.ping("after", "23.4.4.4").await, 200);
    let v = server
        .visitors()
        .await
        .into_iter()
        .find(|v| v["visitorId"] == "after")
        .expect("listed");
    assert_eq!(v["company"], company_name("23.4.4.4"));
    assert_eq!(v["enrichmentSource"], "cache");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.calls(), 1, "no second call after the restart");
}
