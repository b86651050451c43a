//! The shop with tippen nested under `/tippen`, on a real loopback socket: the shop's own
//! routes, state and fallback still answer; a visitor tracked under `/tippen/track/visitor`
//! reaches a dashboard on `/tippen/ws/dashboard`; and the whole conformance suite passes
//! against `http://…/tippen` (every route, status, CORS answer and socket under the prefix).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tippen_axum::{EnrichmentConfig, HostConfig, TippenHost, TrustedProxies};
use tippen_conformance::{IDENTITY_SECRET, IPINFO_TOKEN, Outbound, StandIns, Target, run_all};
use tippen_core::enrichment::{ProviderConfig, ProviderKind};
use tippen_core::quota::QuotaOverrides;
use tippen_core::slack::{SlackConfig, WebhookUrl};
use tippen_core::video::CustomerConnect;
use tippen_core::{Config, KeyRole, MemoryStore, Site, SystemClock, Tippen};
use tippen_embed_axum::{Shop, app};
use tokio_tungstenite::tungstenite::Message;

const VISIBLE_GRACE: Duration = Duration::from_secs(2);
const HIDDEN_GRACE: Duration = Duration::from_secs(5);
/// How long a tab that sent its exit beacon is held before it is removed.
const LEAVE_LINGER: Duration = Duration::from_secs(1);

struct Embedded {
    /// `http://127.0.0.1:<port>`: the shop.
    base: String,
    addr: SocketAddr,
    host: TippenHost,
}

/// The shop (tracker key `pk_a`) and tippen with the conformance suite's sites, served on a
/// fresh loopback port.
async fn start(host_config: HostConfig, configure: impl FnOnce(Tippen) -> Tippen) -> Embedded {
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
    let tippen = configure(Tippen::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        config,
    ));
    for site in [
        Site::legacy("legacy", "Legacy", "legacy_key"),
        Site::new("a", "Site A", "pk_a", "sk_a").with_honor_dnt(true),
        Site::new("b", "Site B", "pk_b", "sk_b")
            .with_dashboard_origins(&[tippen_conformance::OTHER_SITE_DASHBOARD_ORIGIN]),
        Site::new("v", "Verified", "pk_v", "sk_v").with_identity_secret(IDENTITY_SECRET),
        Site::new("r", "Rated", "pk_r", "sk_r").with_rate_limit_per_key(
            tippen_core::rate::RateLimit::per_second(
                tippen_conformance::RATE_LIMITED_SITE_PER_SECOND,
            )
            .expect("a limit"),
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
    let host = TippenHost::with_config(tippen, host_config);
    host.arm_stored_deadlines().await.expect("arm");
    let shop = Shop::new("Fernhill Coffee", "pk_a").with_staff(
        "a",
        &[
            ("Ada", "ada-password", KeyRole::Agent),
            ("Vera", "vera-password", KeyRole::Viewer),
        ],
    );
    let app = app(shop, &host);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
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
    Embedded {
        base: format!("http://{addr}"),
        addr,
        host,
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_keeps_its_routes_state_and_fallback() {
    let shop = start(HostConfig::default(), |t| t).await;
    let client = reqwest::Client::new();
    let base = &shop.base;

    // The shop's page carries the tracker from under the prefix.
    let (status, content_type, page) = get(&client, &format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("<h1>Fernhill Coffee</h1>"), "{page}");
    assert!(
        page.contains(r#"<script src="/tippen/tippen-tracker.js" data-tippen-api-key="pk_a""#),
        "{page}"
    );

    // The shop's own state: an order taken is listed.
    let taken = client
        .post(format!("{base}/orders"))
        .json(&json!({"item": "Espresso beans 1 kg", "quantity": 2}))
        .send()
        .await
        .expect("POST /orders");
    assert_eq!(taken.status(), 201);
    let (status, _, listed) = get(&client, &format!("{base}/orders")).await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(
        listed,
        json!([{"item": "Espresso beans 1 kg", "quantity": 2}])
    );

    // Outside the prefix the shop's fallback answers, tippen's paths included; under it,
    // tippen answers every path, unknown ones with its JSON 404.
    for path in [
        "/nope",
        "/tippen-tracker.js",
        "/track/visitor",
        "/dashboard",
    ] {
        let (status, _, body) = get(&client, &format!("{base}{path}")).await;
        assert_eq!(
            (status, body.as_str()),
            (404, "Not on the menu.\n"),
            "{path}"
        );
    }
    for root in ["/tippen", "/tippen/", "/tippen/?from=shop"] {
        let (status, _, body) = get(&client, &format!("{base}{root}")).await;
        assert_eq!((status, body.as_str()), (200, "Tippen API"), "{root}");
    }
    let (status, content_type, body) = get(&client, &format!("{base}/tippen/nope")).await;
    assert_eq!(status, 404);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"error": "no route for GET /nope"})
    );

    // tippen's assets under the prefix: the tracker and the pages, which build their
    // endpoints from the path they are served at.
    let (status, content_type, _) = get(&client, &format!("{base}/tippen/tippen-tracker.js")).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/javascript"),
        "{content_type}"
    );
    for page in ["/tippen/dashboard", "/tippen/demo"] {
        let (status, content_type, _) = get(&client, &format!("{base}{page}")).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            content_type.starts_with("text/html"),
            "{page}: {content_type}"
        );
    }
    shop.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_visitor_reaches_a_dashboard_under_the_prefix() {
    let shop = start(HostConfig::default(), |t| t).await;
    let client = reqwest::Client::new();

    let (mut dashboard, answer) = tokio_tungstenite::connect_async(format!(
        "ws://{}/tippen/ws/dashboard?apiKey=sk_a",
        shop.addr
    ))
    .await
    .expect("dashboard socket");
    assert_eq!(answer.status().as_u16(), 101);
    let initial = next_message(&mut dashboard).await;
    assert_eq!(initial["type"], "INITIAL_VISITORS", "{initial}");
    assert_eq!(initial["visitors"], json!([]), "{initial}");

    let tracked = client
        .post(format!("{}/tippen/track/visitor", shop.base))
        .header("X-Tippen-API-Key", "pk_a")
        .json(&json!({
            "event": "pageview",
            "visitor": {
                "visitorId": "visitor_embedded",
                "url": "https://shop.example/orders",
                "timestamp": "2025-10-16T12:00:00Z",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            },
            "website": "shop.example",
        }))
        .send()
        .await
        .expect("POST /tippen/track/visitor");
    assert_eq!(tracked.status(), 200);
    let tracked: Value = tracked.json().await.expect("JSON");
    assert_eq!(
        tracked,
        json!({"success": true, "sessionId": "visitor_embedded"})
    );

    let update = next_message(&mut dashboard).await;
    assert_eq!(update["type"], "VISITOR_UPDATE", "{update}");
    assert_eq!(
        update["visitor"]["visitorId"], "visitor_embedded",
        "{update}"
    );
    assert_eq!(
        update["visitor"]["url"], "https://shop.example/orders",
        "{update}"
    );

    // The visitor channel upgrades under the prefix as well.
    let (_visitor, answer) = tokio_tungstenite::connect_async(format!(
        "ws://{}/tippen/ws/visitor?apiKey=pk_a&visitorId=visitor_embedded",
        shop.addr
    ))
    .await
    .expect("visitor socket");
    assert_eq!(answer.status().as_u16(), 101);
    shop.host.shutdown().await;
}

/// Signs in with the shop's own login; the session cookie.
async fn sign_in(client: &reqwest::Client, base: &str, name: &str, password: &str) -> String {
    let answer = client
        .post(format!("{base}/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .expect("POST /login");
    assert_eq!(answer.status(), 204, "sign-in of {name}");
    let cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shops_staff_use_tippen_in_their_role_without_keys() {
    let shop = start(HostConfig::default(), |t| t).await;
    let client = reqwest::Client::new();
    let base = &shop.base;
    let status = |r: reqwest::Response| r.status().as_u16();

    // Not signed in: a key is needed, as always; a wrong password signs no one in.
    let r = client
        .get(format!("{base}/tippen/api/visitors"))
        .send()
        .await
        .expect("GET");
    assert_eq!(status(r), 401);
    let r = client
        .post(format!("{base}/login"))
        .json(&json!({"name": "Ada", "password": "guess"}))
        .send()
        .await
        .expect("POST /login");
    assert_eq!(status(r), 401);
    // A cookie a client makes up is no session.
    let r = client
        .get(format!("{base}/tippen/api/visitors"))
        .header("cookie", "shop_session=0123456789abcdef0123456789abcdef")
        .send()
        .await
        .expect("GET");
    assert_eq!(status(r), 401);

    let tracked = client
        .post(format!("{base}/tippen/track/visitor"))
        .header("X-Tippen-API-Key", "pk_a")
        .json(&json!({"event": "pageview", "visitor": {"visitorId": "visitor_staff", "url": "https://shop.example/"}}))
        .send()
        .await
        .expect("track");
    assert_eq!(status(tracked), 200);
    let invite = |cookie: &str, invite_id: &str| {
        client
            .post(format!("{base}/tippen/api/send-video-invite"))
            .header("cookie", cookie)
            .json(&json!({
                "visitorId": "visitor_staff",
                "inviteId": invite_id,
                "guestUrl": format!("https://video.example/{invite_id}"),
            }))
            .send()
    };

    // Vera, a viewer: reads the live view; may not invite.
    let vera = sign_in(&client, base, "Vera", "vera-password").await;
    let r = client
        .get(format!("{base}/tippen/api/visitors"))
        .header("cookie", &vera)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.expect("JSON");
    assert_eq!(
        listed["visitors"][0]["visitorId"], "visitor_staff",
        "{listed}"
    );
    assert_eq!(
        status(invite(&vera, "inv_vera").await.expect("invite")),
        403
    );

    // Ada, an agent: invites, recorded as hers though the body names no one; may not delete.
    let ada = sign_in(&client, base, "Ada", "ada-password").await;
    assert_eq!(status(invite(&ada, "inv_ada").await.expect("invite")), 200);
    let r = client
        .get(format!("{base}/tippen/api/visitors"))
        .header("X-Tippen-API-Key", "sk_a")
        .send()
        .await
        .expect("GET");
    let listed: Value = r.json().await.expect("JSON");
    assert_eq!(
        listed["visitors"][0]["invite"]["invitedBy"], "Ada",
        "{listed}"
    );
    let r = client
        .delete(format!("{base}/tippen/api/visitors/visitor_staff"))
        .header("cookie", &ada)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(status(r), 403);
    // A request presenting a key is the key's, cookie or not.
    let r = client
        .get(format!("{base}/tippen/api/visitors"))
        .header("cookie", &ada)
        .header("X-Tippen-API-Key", "pk_a")
        .send()
        .await
        .expect("GET");
    assert_eq!(status(r), 403);

    // The audit log names them.
    let r = client
        .get(format!("{base}/tippen/api/audit"))
        .header("X-Tippen-API-Key", "sk_a")
        .send()
        .await
        .expect("GET /api/audit");
    let audit: Value = r.json().await.expect("JSON");
    let has = |action: &str, outcome: &str, name: &str| {
        audit["entries"].as_array().is_some_and(|entries| {
            entries.iter().any(|e| {
                e["action"] == action
                    && e["outcome"] == outcome
                    && e["actor"]["kind"] == "session"
                    && e["actor"]["name"] == name
            })
        })
    };
    assert!(has("invite.send", "done", "Ada"), "{audit}");
    assert!(has("invite.send", "denied", "Vera"), "{audit}");
    assert!(has("visitor.delete", "denied", "Ada"), "{audit}");
    shop.host.shutdown().await;
}

/// The shared suite against `http://…/tippen`, every case (its stand-ins as the video
/// provider, Slack and IPinfo; loopback is a trusted proxy so `X-Forwarded-For` names the
/// client), exactly as tippen-axum runs it at the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_under_the_prefix() {
    let stand_ins = StandIns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("stand-ins");
    let provider = ProviderConfig::new(ProviderKind::Ipinfo, IPINFO_TOKEN)
        .with_base_url(stand_ins.ipinfo_base_url());
    let host_config = HostConfig {
        // The whole suite comes from one address (loopback): the per-address limit of a
        // real deployment would refuse it. Per-address limits have their own tests
        // (tippen-axum's hardening and shared-limit tests); the per-key limit stays as it is.
        rate_limits: tippen_core::rate::RateLimits {
            per_client: tippen_core::rate::RateLimit::per_second(2000),
            ..Default::default()
        },
        trusted_proxies: TrustedProxies::parse(["127.0.0.1"]).expect("proxies"),
        enrichment: Some(EnrichmentConfig::from_provider_config(&provider).expect("provider")),
        slack: Some(SlackConfig::new(
            WebhookUrl::parse(&stand_ins.slack_webhook_url()).expect("webhook"),
        )),
        ..HostConfig::default()
    };
    let video = Arc::new(CustomerConnect::new(&stand_ins.video_provider_url()));
    let shop = start(host_config, |t| t.with_video_provider(video)).await;
    let target = Target {
        base_url: format!("{}/tippen", shop.base),
        dashboard_ws_url: None,
        visitor_ws_url: None,
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
        outbound: Outbound {
            stand_ins: Some(stand_ins),
            video_provider: true,
            slack: true,
            enrichment: true,
            client_ip_header: Some("X-Forwarded-For".into()),
        },
        history: false,
        revocation_delay: Duration::ZERO,
    };
    let report = run_all(&target).await;
    println!("{report}");
    report.assert_all_ran_and_passed();
    shop.host.shutdown().await;
}

/// The next JSON text message on `ws` (within 5 s).
async fn next_message<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON message");
        }
    }
}
