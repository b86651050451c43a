//! The host in-process on a real loopback socket, on a temporary SQLite file: the shared
//! conformance suite (every case, its stand-ins as the video provider, Slack and IPinfo), and
//! host-specific checks (no lost update under concurrency, client
//! addresses through trusted proxies, graceful shutdown).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::next_matching;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tippen_axum::{
    EnrichmentConfig, HostConfig, SqliteHistory, SqliteStore, TippenHost, TrustedProxies,
};
use tippen_conformance::{
    IDENTITY_SECRET, IPINFO_TOKEN, Outbound, RATE_LIMITED_SITE_PER_SECOND, StandIns, Target,
    run_all,
};
use tippen_core::enrichment::{ProviderConfig, ProviderKind};
use tippen_core::quota::QuotaOverrides;
use tippen_core::rate::RateLimit;
use tippen_core::slack::{SlackConfig, WebhookUrl};
use tippen_core::video::CustomerConnect;
use tippen_core::{Config, Site, SystemClock, Tippen};
use tokio_tungstenite::tungstenite::Message;

const VISIBLE_GRACE: Duration = Duration::from_secs(2);
const HIDDEN_GRACE: Duration = Duration::from_secs(5);
const LEAVE_LINGER: Duration = Duration::from_secs(1);

struct Server {
    base_url: String,
    addr: SocketAddr,
    host: TippenHost,
    served: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(host_config: HostConfig) -> Server {
    start_with(host_config, |t| t).await
}

async fn start_with(host_config: HostConfig, configure: impl FnOnce(Tippen) -> Tippen) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("tippen.db")).expect("open SQLite");
    // History in the same file, as the reference server keeps it.
    let history = Arc::new(SqliteHistory::open(dir.path().join("tippen.db")).expect("history"));
    let mut config = Config::default();
    config.presence.visible_grace = VISIBLE_GRACE;
    config.presence.hidden_grace = HIDDEN_GRACE;
    config.presence.leave_linger = LEAVE_LINGER;
    config.presence.heartbeat_interval = Duration::from_secs(1);
    // The alert case points the main site's destinations at the stand-ins on loopback.
    config.alerts.allow_private_destinations = true;
    config.operator_token = Some(tippen_core::KeyHash::of(tippen_conformance::OPERATOR_TOKEN));
    // Every socket of the suite comes from loopback unless a case names its own address.
    config.limits.max_sockets_per_address = 10_000;
    let tippen = Arc::new(configure(
        Tippen::new(Arc::new(store), Arc::new(SystemClock), config).with_history(history),
    ));
    for site in [
        Site::legacy("legacy", "Legacy", "legacy_key"),
        Site::new("a", "Site A", "pk_a", "sk_a").with_honor_dnt(true),
        Site::new("b", "Site B", "pk_b", "sk_b")
            .with_dashboard_origins(&[tippen_conformance::OTHER_SITE_DASHBOARD_ORIGIN]),
        Site::new("v", "Verified", "pk_v", "sk_v").with_identity_secret(IDENTITY_SECRET),
        Site::new("r", "Rated", "pk_r", "sk_r").with_rate_limit_per_key(
            RateLimit::per_second(RATE_LIMITED_SITE_PER_SECOND).expect("a limit"),
        ),
        Site::new("q", "Quotas", "pk_q", "sk_q").with_socket_quotas(QuotaOverrides {
            max_sockets: Some(tippen_conformance::QUOTA_SITE_MAX_SOCKETS as u32),
            max_sockets_per_address: Some(
                tippen_conformance::QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS as u32,
            ),
            snapshots_per_minute: Some(tippen_conformance::QUOTA_SITE_SNAPSHOTS_PER_MINUTE as u32),
        }),
        Site::new("al", "Alerts", "pk_al", "sk_al"),
    ] {
        tippen.put_site(&site).await.expect("put_site");
    }
    let host_config = HostConfig {
        // The whole suite comes from one address (loopback): the per-address limit of a
        // real deployment would refuse it. Per-address limits have their own tests
        // (hardening.rs, shared_limits.rs); the per-key limit stays as it is.
        rate_limits: tippen_core::rate::RateLimits {
            per_client: RateLimit::per_second(2000),
            ..host_config.rate_limits
        },
        ..host_config
    };
    let host = TippenHost::with_config(tippen, host_config);
    host.arm_stored_deadlines().await.expect("arm");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = host.router();
    let stopping = host.clone();
    let served = tokio::spawn(async move {
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
        addr,
        host,
        served,
        _dir: dir,
    }
}

fn target(base_url: &str, outbound: Outbound) -> Target {
    Target {
        dashboard_ws_url: None,
        visitor_ws_url: None,
        base_url: base_url.to_owned(),
        legacy_key: "legacy_key".into(),
        public_key: "pk_a".into(),
        secret_key: "sk_a".into(),
        other_site_public_key: "pk_b".into(),
        other_site_secret_key: "sk_b".into(),
        verified_site_public_key: Some("pk_v".into()),
        rate_limited_site_public_key: Some("pk_r".into()),
        quota_site_keys: Some(("pk_q".into(), "sk_q".into())),
        alert_site_keys: Some(("pk_al".into(), "sk_al".into())),
        operator_token: Some(tippen_conformance::OPERATOR_TOKEN.into()),
        visible_grace: VISIBLE_GRACE,
        hidden_grace: HIDDEN_GRACE,
        leave_linger: LEAVE_LINGER,
        outbound,
        history: true,
        revocation_delay: Duration::ZERO,
    }
}

fn pageview(visitor_id: &str, url: &str) -> Value {
    json!({
        "event": "pageview",
        "visitor": {
            "visitorId": visitor_id,
            "url": url,
            "timestamp": "2025-10-16T12:00:00Z",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        },
        "website": "example.com",
    })
}

async fn visitors(client: &reqwest::Client, base: &str, secret: &str) -> Vec<Value> {
    let answer: Value = client
        .get(format!("{base}/api/visitors"))
        .header("X-Tippen-API-Key", secret)
        .send()
        .await
        .expect("GET /api/visitors")
        .json()
        .await
        .expect("JSON");
    answer["visitors"].as_array().cloned().unwrap_or_default()
}

/// The whole suite, every capability: the suite's stand-ins serve as the video provider, the
/// Slack webhook and IPinfo; loopback is a trusted proxy, so `X-Forwarded-For` names the
/// client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes() {
    let stand_ins = StandIns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("stand-ins");
    let provider = ProviderConfig::new(ProviderKind::Ipinfo, IPINFO_TOKEN)
        .with_base_url(stand_ins.ipinfo_base_url());
    let host_config = HostConfig {
        trusted_proxies: TrustedProxies::parse(["127.0.0.1"]).expect("proxies"),
        enrichment: Some(EnrichmentConfig::from_provider_config(&provider).expect("provider")),
        slack: Some(SlackConfig::new(
            WebhookUrl::parse(&stand_ins.slack_webhook_url()).expect("webhook"),
        )),
        ..HostConfig::default()
    };
    let video = Arc::new(CustomerConnect::new(&stand_ins.video_provider_url()));
    let server = start_with(host_config, |t| t.with_video_provider(video)).await;
    let outbound = Outbound {
        stand_ins: Some(stand_ins),
        video_provider: true,
        slack: true,
        enrichment: true,
        client_ip_header: Some("X-Forwarded-For".into()),
    };
    let report = run_all(&target(&server.base_url, outbound)).await;
    println!("{report}");
    report.assert_all_ran_and_passed();
    server.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pageviews_of_one_visitor_lose_no_update() {
    let server = start(HostConfig::default()).await;
    let client = reqwest::Client::new();
    let n = 200;
    let body = pageview("visitor_racer", "https://example.com/race");
    let requests = (0..n).map(|_| {
        client
            .post(format!("{}/track/visitor", server.base_url))
            .header("X-Tippen-API-Key", "pk_a")
            .json(&body)
            .send()
    });
    let answers = futures_util::future::join_all(requests).await;
    for a in answers {
        let a = a.expect("POST /track/visitor");
        assert_eq!(a.status(), 200, "{:?}", a.text().await);
    }
    let listed = visitors(&client, &server.base_url, "sk_a").await;
    let racer = listed
        .iter()
        .find(|v| v["visitorId"] == "visitor_racer")
        .expect("the visitor is listed");
    assert_eq!(racer["pageViews"], json!(n), "every page view counted");
    server.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_comes_from_trusted_proxies_only() {
    // Loopback is a local address ("Direct Visitor"); 8.8.8.8 is not ("Unknown Company").
    let company = |server: &Server, id: &'static str, forwarded: &'static str| {
        let base = server.base_url.clone();
        async move {
            let client = reqwest::Client::new();
            let a = client
                .post(format!("{base}/track/visitor"))
                .header("X-Tippen-API-Key", "pk_a")
                .header("X-Forwarded-For", forwarded)
                .json(&pageview(id, "https://example.com/"))
                .send()
                .await
                .expect("track");
            assert_eq!(a.status(), 200);
            let listed = visitors(&client, &base, "sk_a").await;
            listed
                .iter()
                .find(|v| v["visitorId"] == id)
                .map(|v| v["company"].clone())
                .expect("listed")
        }
    };
    let direct = start(HostConfig::default()).await;
    assert_eq!(
        company(&direct, "visitor_untrusted", "8.8.8.8").await,
        "Direct Visitor",
        "without trusted proxies the socket peer (loopback) is the client"
    );
    direct.host.shutdown().await;

    let proxied = start(HostConfig {
        trusted_proxies: TrustedProxies::parse(["127.0.0.1", "::1"]).expect("parse"),
        ..HostConfig::default()
    })
    .await;
    assert_eq!(
        company(&proxied, "visitor_public", "8.8.8.8").await,
        "Unknown Company",
        "a trusted proxy's X-Forwarded-For names the client"
    );
    assert_eq!(
        company(&proxied, "visitor_private", "8.8.8.8, 10.0.0.7").await,
        "Direct Visitor",
        "the rightmost untrusted address is the client (10.0.0.7, not 8.8.8.8)"
    );
    proxied.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_dashboards_and_stops_timers() {
    let server = start(HostConfig::default()).await;
    // A tracked visitor arms site A's timer.
    let client = reqwest::Client::new();
    let a = client
        .post(format!("{}/track/visitor", server.base_url))
        .header("X-Tippen-API-Key", "pk_a")
        .json(&pageview("visitor_shutdown", "https://example.com/"))
        .send()
        .await
        .expect("track");
    assert_eq!(a.status(), 200);
    let url = format!("ws://{}/ws/dashboard?apiKey=sk_a", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let first = ws.next().await.expect("a message").expect("ok");
    assert!(
        first.to_text().expect("text").contains("INITIAL_VISITORS"),
        "{first:?}"
    );
    // WebSocket pings are answered.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("a pong")
        .expect("open")
        .expect("message");
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.host.shutdown())
        .await
        .expect("shutdown finishes with a dashboard connected and a timer armed");
    assert!(started.elapsed() < Duration::from_secs(3));
    let closing = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("the dashboard hears of the shutdown");
    match closing {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame with 1001, got {other:?}"),
    }
    let _ = ws.send(Message::Close(None)).await;
    tokio::time::timeout(Duration::from_secs(5), server.served)
        .await
        .expect("axum's graceful shutdown completes")
        .expect("server task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_deadline_wakes_a_sleeping_timer() {
    let server = start(HostConfig::default()).await;
    let client = reqwest::Client::new();
    let url = format!("ws://{}/ws/dashboard?apiKey=sk_a", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    next_matching(&mut ws, Duration::from_secs(2), |v| {
        v["type"] == "INITIAL_VISITORS"
    })
    .await;
    let track = |id: &'static str, visibility: &'static str| {
        let mut body = pageview(id, "https://example.com/");
        body["visitor"]["visibility"] = json!(visibility);
        client
            .post(format!("{}/track/visitor", server.base_url))
            .header("X-Tippen-API-Key", "pk_a")
            .json(&body)
            .send()
    };
    // The timer first sleeps toward the hidden tab's deadline (5 s) ...
    assert_eq!(
        track("visitor_hidden", "hidden")
            .await
            .expect("track")
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ... then a visible tab arms an earlier one (2 s), which must wake it.
    let started = Instant::now();
    assert_eq!(
        track("visitor_visible", "visible")
            .await
            .expect("track")
            .status(),
        200
    );
    let removed = next_matching(&mut ws, Duration::from_secs(4), |v| {
        v["type"] == "VISITOR_REMOVED"
    })
    .await;
    assert_eq!(removed["visitorId"], "visitor_visible", "{removed}");
    let after = started.elapsed();
    assert!(
        after >= VISIBLE_GRACE - Duration::from_millis(100) && after < HIDDEN_GRACE,
        "removed after {after:?}"
    );
    server.host.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_lagging_dashboard_is_resynced_with_a_snapshot() {
    use tippen_core::{ManualClock, MemoryStore, Timestamp};
    // A one-message buffer, a single-threaded runtime (the socket task cannot run between two
    // messages published together) and a manual clock (the timer does not sweep on its own).
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_729_080_000_000)));
    let tippen = Arc::new(Tippen::new(
        Arc::new(MemoryStore::new()),
        clock.clone(),
        Config::default(),
    ));
    tippen
        .put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))
        .await
        .expect("put_site");
    let host = TippenHost::with_config(
        tippen,
        HostConfig {
            broadcast_capacity: 1,
            ..HostConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = host.router();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/dashboard?apiKey=sk_a"))
            .await
            .expect("connect");
    let first = next_matching(&mut ws, Duration::from_secs(2), |v| {
        v["type"] == "INITIAL_VISITORS"
    })
    .await;
    assert_eq!(first["seq"], 0);
    let client = reqwest::Client::new();
    let track = || {
        client
            .post(format!("http://{addr}/track/visitor"))
            .header("X-Tippen-API-Key", "pk_a")
            .json(&pageview("visitor_lag", "https://example.com/"))
            .send()
    };
    assert_eq!(track().await.expect("track").status(), 200);
    let update = next_matching(&mut ws, Duration::from_secs(2), |v| {
        v["type"] == "VISITOR_UPDATE"
    })
    .await;
    assert_eq!(update["seq"], 1);
    // Past the grace but not swept: the next page view publishes VISITOR_REMOVED and a new
    // VISITOR_UPDATE at once; the one-message buffer drops the first.
    clock.advance(Duration::from_secs(61));
    assert_eq!(track().await.expect("track").status(), 200);
    let resync = next_matching(&mut ws, Duration::from_secs(2), |v| {
        v["type"] == "INITIAL_VISITORS" || v["type"] == "VISITOR_REMOVED"
    })
    .await;
    assert_eq!(
        resync["type"], "INITIAL_VISITORS",
        "a fresh snapshot, not a gap: {resync}"
    );
    assert_eq!(resync["seq"], 3);
    assert_eq!(resync["visitors"][0]["visitorId"], "visitor_lag");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_can_be_nested_and_merged() {
    use axum::routing::get;
    let tippen = Tippen::new(
        Arc::new(tippen_core::MemoryStore::new()),
        Arc::new(SystemClock),
        Config::default(),
    );
    tippen
        .put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))
        .await
        .expect("put_site");
    let host = TippenHost::new(tippen);
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/tippen", host.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let client = reqwest::Client::new();
    let get_text = |path: &'static str| {
        let client = client.clone();
        async move {
            let a = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("GET");
            (a.status().as_u16(), a.text().await.expect("body"))
        }
    };
    assert_eq!(get_text("/healthz").await, (200, "ok".to_owned()));
    // axum's nest maps `/tippen` (not `/tippen/`) to the nested router's `/`.
    assert_eq!(get_text("/tippen").await, (200, "Tippen API".to_owned()));
    let (status, body) = get_text("/tippen/nope").await;
    assert_eq!(status, 404);
    assert!(body.starts_with(r#"{"error":"#), "{body}");
    let a = client
        .post(format!("http://{addr}/tippen/track/visitor"))
        .header("X-Tippen-API-Key", "pk_a")
        .json(&pageview("visitor_nested", "https://example.com/"))
        .send()
        .await
        .expect("track");
    assert_eq!(a.status(), 200);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/tippen/ws/dashboard?apiKey=sk_a"))
            .await
            .expect("the nested dashboard socket upgrades");
    let hello = next_matching(&mut ws, Duration::from_secs(2), |v| {
        v["type"] == "INITIAL_VISITORS"
    })
    .await;
    assert_eq!(hello["visitors"][0]["visitorId"], "visitor_nested");
    host.shutdown().await;
}
