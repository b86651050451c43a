//! The shared black-box conformance suite (every case, its stand-ins as the video provider,
//! Slack and IPinfo) on the axum host in-process, whose store is a [`RedisStore`] on a real
//! `redis-server`: the whole HTTP + WebSocket contract holds on Redis, on one replica and split
//! across two replicas (requests to one, dashboards on the other; the replicas count their rate
//! limits together in Redis).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use tippen_axum::{EnrichmentConfig, HostConfig, TippenHost, TrustedProxies};
use tippen_conformance::{
    IDENTITY_SECRET, IPINFO_TOKEN, Outbound, RATE_LIMITED_SITE_PER_SECOND, StandIns, Target,
    run_all,
};
use tippen_core::enrichment::{ProviderConfig, ProviderKind};
use tippen_core::history::MemoryHistory;
use tippen_core::quota::QuotaOverrides;
use tippen_core::rate::RateLimit;
use tippen_core::slack::{SlackConfig, WebhookUrl};
use tippen_core::video::CustomerConnect;
use tippen_core::{Config, Site, SystemClock, Tippen};
use tippen_redis::{RedisBus, RedisRateLimiter, RedisStore};

const VISIBLE_GRACE: Duration = Duration::from_secs(2);
const HIDDEN_GRACE: Duration = Duration::from_secs(5);
const LEAVE_LINGER: Duration = Duration::from_secs(1);

/// The hosts' logs in the test's output (shown when it fails): warnings and errors, or what
/// `RUST_LOG` asks for.
fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes_on_redis() {
    log_to_test_output();
    let redis = RedisServer::start();
    let stand_ins = StandIns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("stand-ins");
    let listener = bind().await;
    let addr = listener.local_addr().expect("local addr");
    let (host, served) = start_host(&redis.url(), &stand_ins, listener, None).await;
    let target = target(format!("http://{addr}"), None, stand_ins);
    let report = run_all(&target).await;
    println!("{report}");
    report.assert_all_ran_and_passed();
    host.shutdown().await;
    served.await.expect("served");
}

/// Two replicas on one Redis, each with its own store connection and bus: every request goes
/// to replica A, every dashboard connects to replica B, so every dashboard message a case
/// waits for crossed from A to B through Redis (numbered, logged and published by A's write,
/// forwarded by B's bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes_split_across_two_replicas() {
    log_to_test_output();
    let redis = RedisServer::start();
    let stand_ins = StandIns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("stand-ins");
    let (a_listener, b_listener) = (bind().await, bind().await);
    let a_addr = a_listener.local_addr().expect("local addr");
    let b_addr = b_listener.local_addr().expect("local addr");
    // A's served dashboard page is told its socket is on B.
    let dashboards = format!("ws://{b_addr}/ws/dashboard");
    let (a, a_served) = start_host(&redis.url(), &stand_ins, a_listener, Some(&dashboards)).await;
    let (b, b_served) = start_host(&redis.url(), &stand_ins, b_listener, Some(&dashboards)).await;
    let target = target(format!("http://{a_addr}"), Some(dashboards), stand_ins);
    // Socket quotas are counted per replica (documented): their cases run on one replica.
    let cases = tippen_conformance::cases()
        .into_iter()
        .filter(|c| c.needs != Some(tippen_conformance::Capability::QuotaSite))
        .collect();
    let report = tippen_conformance::run_cases(&target, cases).await;
    println!("{report}");
    report.assert_all_ran_and_passed();
    a.shutdown().await;
    b.shutdown().await;
    a_served.await.expect("served");
    b_served.await.expect("served");
}

/// Two replicas on one Redis, each with its own enricher: visitors from one address arrive
/// at both at once, and the provider is asked once between them. The replica that lost the
/// claim gives its visitor the result from the shared cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_lookup_per_address() {
    let redis = RedisServer::start();
    let stand_ins = StandIns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("stand-ins");
    let (a_listener, b_listener) = (bind().await, bind().await);
    let urls = [a_listener.local_addr(), b_listener.local_addr()]
        .map(|a| format!("http://{}", a.expect("local addr")));
    let (a, a_served) = start_host(&redis.url(), &stand_ins, a_listener, None).await;
    let (b, b_served) = start_host(&redis.url(), &stand_ins, b_listener, None).await;
    let http = reqwest::Client::new();
    for round in 0..3 {
        let ip = format!("9.77.{round}.9");
        // Two visitors per replica, all four page views sent at once.
        let sends = (0..4).map(|n| {
            let (http, url, ip) = (http.clone(), urls[n % 2].clone(), ip.clone());
            async move {
                let body = serde_json::json!({
                    "event": "pageview",
                    "website": "shared.test",
                    "visitor": {
                        "visitorId": format!("visitor_{round}_{n}"),
                        "url": "https://shared.test/",
                        "tabId": "tab_1",
                        "visibility": "visible",
                    },
                });
                let answer = http
                    .post(format!("{url}/track/visitor"))
                    .header("X-Tippen-API-Key", "pk_a")
                    .header("X-Forwarded-For", ip)
                    .json(&body)
                    .send()
                    .await
                    .expect("track");
                assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
            }
        });
        futures_util::future::join_all(sends).await;
        // Every visitor gets the company, on whichever replica is asked.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listed: serde_json::Value = http
                .get(format!("{}/api/visitors", urls[round % 2]))
                .header("X-Tippen-API-Key", "sk_a")
                .send()
                .await
                .expect("visitors")
                .json()
                .await
                .expect("json");
            let enriched = listed["visitors"]
                .as_array()
                .expect("visitors")
                .iter()
                .filter(|v| {
                    v["visitorId"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(&format!("visitor_{round}_")))
                        && v["company"] == "Stand-in Corp"
                })
                .count();
            if enriched == 4 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: {enriched} of 4 visitors enriched: {listed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            stand_ins.ipinfo_lookups(&ip),
            1,
            "round {round}: one provider request for {ip} from two replicas"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    a_served.await.expect("served");
    b_served.await.expect("served");
}

async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

/// A host on its own connection to the Redis at `url`, serving on `listener`. A replica
/// (`dashboards`: where the dashboards' socket is, told to the served dashboard page) has a
/// [`RedisBus`]; the single host (`None`) has none.
async fn start_host(
    url: &str,
    stand_ins: &StandIns,
    listener: tokio::net::TcpListener,
    dashboards: Option<&str>,
) -> (TippenHost, tokio::task::JoinHandle<()>) {
    let store = RedisStore::connect(url).await.expect("connect");
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
    config.sockets.dashboard = dashboards.map(str::to_owned);
    let video = Arc::new(CustomerConnect::new(&stand_ins.video_provider_url()));
    let replica = if dashboards.is_some() {
        Some((
            Arc::new(RedisBus::connect(&store).await.expect("bus")),
            Arc::new(RedisRateLimiter::new(&store).await.expect("limiter")),
        ))
    } else {
        None
    };
    let tippen = Arc::new(
        Tippen::new(Arc::new(store), Arc::new(SystemClock), config)
            .with_history(Arc::new(MemoryHistory::new()))
            .with_video_provider(video),
    );
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
    let provider = ProviderConfig::new(ProviderKind::Ipinfo, IPINFO_TOKEN)
        .with_base_url(stand_ins.ipinfo_base_url());
    let host_config = HostConfig {
        // The whole suite comes from one address (loopback): the per-address limit of a
        // real deployment would refuse it. Per-address limits have their own tests
        // (tippen-axum's hardening and shared-limit tests); the per-key limit stays as it is.
        rate_limits: tippen_core::rate::RateLimits {
            per_client: RateLimit::per_second(2000),
            ..Default::default()
        },
        trusted_proxies: TrustedProxies::parse(["127.0.0.1"]).expect("proxies"),
        enrichment: Some(EnrichmentConfig::from_provider_config(&provider).expect("provider")),
        slack: Some(SlackConfig::new(
            WebhookUrl::parse(&stand_ins.slack_webhook_url()).expect("webhook"),
        )),
        ..HostConfig::default()
    };
    let host = match replica {
        // A replica also counts its rate limits in Redis, with the other replica.
        Some((bus, limits)) => {
            TippenHost::with_bus(tippen, host_config, bus).with_shared_limits(limits)
        }
        None => TippenHost::with_config(tippen, host_config),
    };
    host.arm_stored_deadlines().await.expect("arm");
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
    (host, served)
}

fn target(base_url: String, dashboard_ws_url: Option<String>, stand_ins: StandIns) -> Target {
    // Socket counts are per replica: the quota cases run on one replica only.
    let quota_site_keys = dashboard_ws_url
        .is_none()
        .then(|| ("pk_q".into(), "sk_q".into()));
    Target {
        quota_site_keys,
        alert_site_keys: Some(("pk_al".into(), "sk_al".into())),
        operator_token: Some(tippen_conformance::OPERATOR_TOKEN.into()),
        dashboard_ws_url,
        visitor_ws_url: None,
        base_url,
        legacy_key: "legacy_key".into(),
        public_key: "pk_a".into(),
        secret_key: "sk_a".into(),
        other_site_public_key: "pk_b".into(),
        other_site_secret_key: "sk_b".into(),
        verified_site_public_key: Some("pk_v".into()),
        rate_limited_site_public_key: Some("pk_r".into()),
        visible_grace: VISIBLE_GRACE,
        hidden_grace: HIDDEN_GRACE,
        leave_linger: LEAVE_LINGER,
        outbound: Outbound {
            stand_ins: Some(stand_ins),
            video_provider: true,
            slack: true,
            enrichment: true,
            client_ip_header: Some("X-Forwarded-For".into()),
        },
        history: true,
        revocation_delay: Duration::ZERO,
    }
}
