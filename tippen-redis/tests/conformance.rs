//! The shared black-box conformance suite (every case, its stand-ins as the video provider,
//! Slack and IPinfo) on the axum host in-process, whose store is a [`RedisStore`] on a real
//! `redis-server`: the whole HTTP + WebSocket contract holds on Redis.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use tippen_axum::{EnrichmentConfig, HostConfig, TippenHost, TrustedProxies};
use tippen_conformance::{IDENTITY_SECRET, IPINFO_TOKEN, Outbound, StandIns, Target, run_all};
use tippen_core::enrichment::{ProviderConfig, ProviderKind};
use tippen_core::history::MemoryHistory;
use tippen_core::slack::{SlackConfig, WebhookUrl};
use tippen_core::video::CustomerConnect;
use tippen_core::{Config, Site, SystemClock, Tippen};
use tippen_redis::RedisStore;

const VISIBLE_GRACE: Duration = Duration::from_secs(2);
const HIDDEN_GRACE: Duration = Duration::from_secs(5);
const LEAVE_LINGER: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes_on_redis() {
    let redis = RedisServer::start();
    let stand_ins = StandIns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("stand-ins");
    let store = RedisStore::connect(&redis.url()).await.expect("connect");
    let mut config = Config::default();
    config.presence.visible_grace = VISIBLE_GRACE;
    config.presence.hidden_grace = HIDDEN_GRACE;
    config.presence.leave_linger = LEAVE_LINGER;
    config.presence.heartbeat_interval = Duration::from_secs(1);
    let video = Arc::new(CustomerConnect::new(&stand_ins.video_provider_url()));
    let tippen = Arc::new(
        Tippen::new(Arc::new(store), Arc::new(SystemClock), config)
            .with_history(Arc::new(MemoryHistory::new()))
            .with_video_provider(video),
    );
    for site in [
        Site::legacy("legacy", "Legacy", "legacy_key"),
        Site::new("a", "Site A", "pk_a", "sk_a"),
        Site::new("b", "Site B", "pk_b", "sk_b"),
        Site::new("v", "Verified", "pk_v", "sk_v").with_identity_secret(IDENTITY_SECRET),
    ] {
        tippen.put_site(&site).await.expect("put_site");
    }
    let provider = ProviderConfig::new(ProviderKind::Ipinfo, IPINFO_TOKEN)
        .with_base_url(stand_ins.ipinfo_base_url());
    let host = TippenHost::with_config(
        tippen,
        HostConfig {
            trusted_proxies: TrustedProxies::parse(["127.0.0.1"]).expect("proxies"),
            enrichment: Some(EnrichmentConfig::from_provider_config(&provider).expect("provider")),
            slack: Some(SlackConfig::new(
                WebhookUrl::parse(&stand_ins.slack_webhook_url()).expect("webhook"),
            )),
            ..HostConfig::default()
        },
    );
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
    let target = Target {
        dashboard_ws_url: None,
        visitor_ws_url: None,
        base_url: format!("http://{addr}"),
        legacy_key: "legacy_key".into(),
        public_key: "pk_a".into(),
        secret_key: "sk_a".into(),
        other_site_public_key: "pk_b".into(),
        other_site_secret_key: "sk_b".into(),
        verified_site_public_key: Some("pk_v".into()),
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
    };
    let report = run_all(&target).await;
    println!("{report}");
    report.assert_all_ran_and_passed();
    host.shutdown().await;
    served.await.expect("served");
}
