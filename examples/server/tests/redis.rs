//! Two reference servers on one real `redis-server` (started on a free port, killed by pid):
//! what is tracked through one replica is listed by the other, both number messages from one
//! sequence, and the visitors of a replica killed with SIGKILL are removed by the survivor's
//! timers; and that the rate limits hold for all replicas together.

mod common;
// The redis-server guard of tippen-redis's tests (fails, never skips, without redis-server).
#[path = "../../../tippen-redis/tests/common/mod.rs"]
mod redis_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use common::Server;
use redis_server::RedisServer;
use serde_json::{Value, json};

async fn visitors(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/api/visitors?apiKey=demo_api_key"))
        .send()
        .await
        .expect("GET /api/visitors")
        .json()
        .await
        .expect("JSON")
}

fn ids(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["visitors"]
        .as_array()
        .expect("visitors array")
        .iter()
        .filter_map(|v| v["visitorId"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn track(client: &reqwest::Client, base: &str, visitor: &str) {
    let answer = client
        .post(format!("{base}/track/visitor"))
        .header("X-Tippen-API-Key", "demo_api_key")
        .json(&json!({
            "event": "pageview",
            "visitor": {"visitorId": visitor, "url": "https://test.com/", "timestamp": "2025-10-16T12:00:00Z"},
            "website": "test.com",
        }))
        .send()
        .await
        .expect("track");
    assert_eq!(answer.status(), 200, "track {visitor} through {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_share_visitors_and_sequence() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = redis.url();
    // Each replica keeps its visit history in its own file; the live state is in Redis.
    let a = Server::start_with(&dir.path().join("a.db"), &[], &["--redis", &url]);
    let b = Server::start(
        &dir.path().join("b.db"),
        &[("TIPPEN_REDIS_URL", url.clone())],
    );
    let client = reqwest::Client::new();

    track(&client, &a.base_url, "visitor_via_a").await;
    let on_b = visitors(&client, &b.base_url).await;
    assert_eq!(
        ids(&on_b),
        ["visitor_via_a"],
        "a visitor tracked through A is listed by B"
    );

    track(&client, &b.base_url, "visitor_via_b").await;
    // A page view of A's visitor through B updates the one shared record.
    track(&client, &b.base_url, "visitor_via_a").await;
    let on_a = visitors(&client, &a.base_url).await;
    assert_eq!(ids(&on_a), ["visitor_via_a", "visitor_via_b"]);
    let on_b = visitors(&client, &b.base_url).await;
    assert_eq!(
        ids(&on_b),
        ids(&on_a),
        "both replicas list the same visitors"
    );
    let pages = |answer: &Value| {
        answer["visitors"]
            .as_array()
            .expect("visitors")
            .iter()
            .find(|v| v["visitorId"] == "visitor_via_a")
            .map(|v| v["pageViews"].clone())
    };
    assert_eq!(
        pages(&on_a),
        Some(json!(2)),
        "both page views counted: {on_a}"
    );
    assert_eq!(pages(&on_b), pages(&on_a));
    let seq = on_a["seq"].as_u64().expect("seq");
    assert!(seq >= 3, "three changes were numbered: {on_a}");
    assert_eq!(on_b["seq"], on_a["seq"], "one sequence for both replicas");

    // Replica A dies: its writes are in Redis, not in its process.
    a.kill();
    let on_b = visitors(&client, &b.base_url).await;
    assert_eq!(
        ids(&on_b),
        ["visitor_via_a", "visitor_via_b"],
        "nothing lost with A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_stops_the_server_with_a_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_tippen-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("t.db"))
        .args(["--redis", &format!("redis://127.0.0.1:{port}")])
        .env("RUST_LOG", "error")
        .env_remove("TIPPEN_CONFIG")
        .env_remove("TIPPEN_REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run tippen-server");
    assert!(!out.status.success(), "the server refused to start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to Redis at 127.0.0.1:{port}")),
        "says why: {stderr}"
    );
}

/// Replica A tracks a visitor and is killed at once; replica B never saw a write for it, yet
/// its dashboard sees the removal once the grace has passed: B's timers follow the deadlines
/// stored in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_visitors_are_removed_by_the_survivor() {
    const GRACE_MS: u64 = 2_000;
    const POLL_MS: u64 = 200;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![
        ("TIPPEN_REDIS_URL", redis.url()),
        ("TIPPEN_REDIS_DEADLINE_POLL_MS", POLL_MS.to_string()),
        ("TIPPEN_VISIBLE_GRACE_MS", GRACE_MS.to_string()),
        ("TIPPEN_HIDDEN_GRACE_MS", (2 * GRACE_MS).to_string()),
    ];
    let a = Server::start(&dir.path().join("a.db"), &env);
    let b = Server::start(&dir.path().join("b.db"), &env);
    let ws_url = format!(
        "{}/ws/dashboard?apiKey=demo_api_key",
        b.base_url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("dashboard on B connects");
    let client = reqwest::Client::new();
    track(&client, &a.base_url, "visitor_of_a").await;
    let tracked_at = Instant::now();
    a.kill();
    assert_eq!(
        ids(&visitors(&client, &b.base_url).await),
        ["visitor_of_a"],
        "listed by the survivor"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_millis(GRACE_MS + 5_000);
    let mut removals = 0;
    let mut removed_at = None;
    // Watch until a while after the first removal, to see that there is only one.
    while removed_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(4 * POLL_MS)) {
        let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        let msg = next.expect("socket open").expect("message");
        let Ok(text) = msg.to_text() else { continue };
        let v: Value = serde_json::from_str(text).expect("JSON message");
        if v["type"] == "VISITOR_REMOVED" {
            assert_eq!(v["visitorId"], "visitor_of_a");
            assert_eq!(v["reason"], "inactive");
            removals += 1;
            removed_at.get_or_insert_with(Instant::now);
        }
    }
    let removed_at = removed_at.expect("the survivor removed the killed replica's visitor");
    let after = removed_at.duration_since(tracked_at);
    assert!(
        after >= Duration::from_millis(GRACE_MS - 300),
        "not before the grace: {after:?}"
    );
    assert_eq!(removals, 1, "removed exactly once");
    assert!(ids(&visitors(&client, &b.base_url).await).is_empty());
    eprintln!(
        "the killed replica's visitor was removed by the survivor {after:?} after its last \
         page view (grace {GRACE_MS} ms, poll {POLL_MS} ms)"
    );
}

/// What one dashboard heard: the `seq` rule of the contract checked on every message.
#[derive(Default)]
struct Heard {
    /// The last number applied (the baseline after an `INITIAL_VISITORS`).
    last: Option<u64>,
    /// `VISITOR_UPDATE` `new_visitor` per visitor.
    new: std::collections::HashMap<String, usize>,
    /// `VISITOR_REMOVED` per visitor.
    removed: std::collections::HashMap<String, usize>,
    resyncs: usize,
    broadcasts: usize,
}

impl Heard {
    /// Applies one message; panics on a broadcast out of order or after a gap (the bus
    /// delivers every replica's messages in `seq` order, or resyncs with a snapshot).
    fn take(&mut self, v: &Value) {
        let seq = v["seq"].as_u64().expect("every message has a seq");
        match v["type"].as_str().expect("type") {
            "INITIAL_VISITORS" => {
                if self.last.is_some() {
                    self.resyncs += 1;
                }
                self.last = Some(seq);
            }
            "PONG" | "ERROR" => {}
            kind => {
                let last = self.last.expect("a snapshot first");
                assert_eq!(seq, last + 1, "gapless, in order: {v} after {last}");
                self.last = Some(seq);
                self.broadcasts += 1;
                let id = v["visitorId"]
                    .as_str()
                    .or_else(|| v["visitor"]["visitorId"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                if kind == "VISITOR_REMOVED" {
                    *self.removed.entry(id).or_default() += 1;
                } else if v["event"] == "new_visitor" {
                    *self.new.entry(id).or_default() += 1;
                }
            }
        }
    }
}

/// Two real replicas on one Redis; visitors are tracked through both at once and replica A is
/// killed with SIGKILL in the middle of the run. A dashboard on the survivor B hears every
/// change (A's included, through the bus) gapless and in order, every acknowledged visitor
/// is listed by B, and every visitor is removed exactly once — A's too, by B's timers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_replica_mid_run_loses_nothing_and_removes_each_visitor_once() {
    const GRACE_MS: u64 = 2_000;
    const POLL_MS: u64 = 200;
    const PER_REPLICA: usize = 20;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = vec![
        ("TIPPEN_REDIS_URL", redis.url()),
        ("TIPPEN_REDIS_DEADLINE_POLL_MS", POLL_MS.to_string()),
        ("TIPPEN_VISIBLE_GRACE_MS", GRACE_MS.to_string()),
        ("TIPPEN_HIDDEN_GRACE_MS", (2 * GRACE_MS).to_string()),
    ];
    let a = Server::start(&dir.path().join("a.db"), &env);
    let b = Server::start(&dir.path().join("b.db"), &env);
    let ws_url = format!(
        "{}/ws/dashboard?apiKey=demo_api_key",
        b.base_url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("dashboard on B connects");
    let mut heard = Heard::default();
    let first = ws.next().await.expect("open").expect("snapshot");
    heard.take(&serde_json::from_str(first.to_text().expect("text")).expect("JSON"));

    // Both replicas take page views at once; A is killed after half of its visitors.
    let client = reqwest::Client::new();
    let half = tokio::sync::Notify::new();
    let half = std::sync::Arc::new(half);
    let through = |base: String,
                   prefix: &'static str,
                   half: Option<std::sync::Arc<tokio::sync::Notify>>| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..PER_REPLICA {
                let id = format!("{prefix}_{i}");
                let answer = client
                    .post(format!("{base}/track/visitor"))
                    .header("X-Tippen-API-Key", "demo_api_key")
                    .json(&json!({
                        "event": "pageview",
                        "visitor": {"visitorId": id, "url": "https://test.com/", "timestamp": "2025-10-16T12:00:00Z"},
                        "website": "test.com",
                    }))
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => acknowledged.push(id),
                    // A is gone: the rest of its page views are never acknowledged.
                    _ => break,
                }
                if i + 1 == PER_REPLICA / 2
                    && let Some(half) = &half
                {
                    half.notify_one();
                }
            }
            acknowledged
        })
    };
    let via_a = through(a.base_url.clone(), "via_a", Some(half.clone()));
    let via_b = through(b.base_url.clone(), "via_b", None);
    half.notified().await;
    a.kill();
    let via_a = via_a.await.expect("A's task");
    let via_b = via_b.await.expect("B's task");
    assert!(via_a.len() >= PER_REPLICA / 2, "A took half before dying");
    assert_eq!(via_b.len(), PER_REPLICA, "B took all of its page views");
    let acknowledged: Vec<String> = via_a.iter().chain(&via_b).cloned().collect();

    let listed = ids(&visitors(&client, &b.base_url).await);
    for id in &acknowledged {
        assert!(
            listed.contains(id),
            "acknowledged {id} is listed by B: {listed:?}"
        );
    }

    // Every visitor B's dashboard heard of is removed once its grace has passed; A's by
    // B's timers, since A is dead.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3 * GRACE_MS + 10_000);
    let mut all_removed_at: Option<Instant> = None;
    while all_removed_at.is_none_or(|t| t.elapsed() < Duration::from_millis(4 * POLL_MS)) {
        let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        let msg = next.expect("socket open").expect("message");
        let Ok(text) = msg.to_text() else { continue };
        if text.is_empty() {
            continue;
        }
        heard.take(&serde_json::from_str(text).expect("JSON message"));
        if all_removed_at.is_none()
            && acknowledged.iter().all(|id| heard.removed.contains_key(id))
            && heard.new.keys().all(|id| heard.removed.contains_key(id))
        {
            all_removed_at = Some(Instant::now());
        }
    }
    assert!(
        all_removed_at.is_some(),
        "every visitor removed in time: heard {} broadcasts, removed {:?}",
        heard.broadcasts,
        heard.removed
    );
    for id in &acknowledged {
        assert_eq!(
            heard.new.get(id),
            Some(&1),
            "B's dashboard heard {id} arrive once"
        );
    }
    for (id, n) in &heard.removed {
        assert_eq!(*n, 1, "{id} removed exactly once");
    }
    assert!(ids(&visitors(&client, &b.base_url).await).is_empty());
    eprintln!(
        "{} visitors through A (killed mid-run) and {} through B: {} broadcasts on B's \
         dashboard, gapless, {} resyncs; every visitor removed once",
        via_a.len(),
        via_b.len(),
        heard.broadcasts,
        heard.resyncs
    );
}

/// Sends requests alternately to the two replicas until one is refused: how many were
/// allowed, the refusal, and how long it took.
async fn send_alternating(
    client: &reqwest::Client,
    replicas: [&str; 2],
    request: impl Fn(&reqwest::Client, &str, usize) -> reqwest::RequestBuilder,
) -> (usize, reqwest::Response, Duration) {
    let started = Instant::now();
    for i in 0..12 {
        let base = replicas[i % 2];
        let answer = request(client, base, i).send().await.expect("request");
        match answer.status().as_u16() {
            200 => {}
            429 => return (i, answer, started.elapsed()),
            s => panic!("request {i} through {base}: HTTP {s}"),
        }
    }
    panic!("no 429 in 12 requests alternated between two replicas")
}

/// Requests alternated between two replicas, each bucket allowing bursts of 4 at 1 a second:
/// the fifth in all is refused (`429 {"error":…}` with `Retry-After`), whichever replica it
/// reaches — a replica counting alone would have allowed 4 of its own. Unless the machine is
/// so slow that a second passed within the run, which refills one token (and is allowed for).
async fn the_fifth_in_all(
    what: &str,
    client: &reqwest::Client,
    replicas: [&str; 2],
    error: &str,
    request: impl Fn(&reqwest::Client, &str, usize) -> reqwest::RequestBuilder,
) {
    let (allowed, refused, took) = send_alternating(client, replicas, request).await;
    let refills = usize::try_from(took.as_secs()).expect("seconds");
    assert!(
        (4..=4 + refills).contains(&allowed),
        "{what}: a burst of 4 for both replicas together, then 429; {allowed} allowed in {took:?}"
    );
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "{what}: {retry_after}");
    let body: Value = refused.json().await.expect("JSON body");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(error)),
        "{what}: {body}"
    );
    eprintln!("{what}: {allowed} allowed across two replicas, then 429 ({took:?})");
}

/// Two real replicas on one Redis, with bursts of 4 at 1 a second per address, per key, and
/// for the keys of a site with its own `rate_limit_per_key`: each limit holds for both
/// replicas together, not for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_rate_limits() {
    const RATED_KEY: &str = "pk_rated_site_0123456789abcdef";
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tippen.toml");
    std::fs::write(
        &config,
        format!(
            "trusted_proxies = [\"127.0.0.1\"]\n\n[[sites]]\nid = \"rated\"\n\
             public_key = \"{RATED_KEY}\"\nsecret_key = \"sk_rated_site_0123456789abcdef\"\n\
             rate_limit_per_key = 1\n"
        ),
    )
    .expect("config file");
    let env = vec![
        ("TIPPEN_REDIS_URL", redis.url()),
        ("TIPPEN_CONFIG", config.display().to_string()),
        ("TIPPEN_RATE_LIMIT_PER_IP", "1".to_owned()),
        ("TIPPEN_RATE_LIMIT_PER_KEY", "1".to_owned()),
    ];
    let a = Server::start(&dir.path().join("a.db"), &env);
    let b = Server::start(&dir.path().join("b.db"), &env);
    let replicas = [a.base_url.as_str(), b.base_url.as_str()];
    let client = reqwest::Client::new();
    let page_view = |key: &'static str, first_address: usize| {
        move |client: &reqwest::Client, base: &str, i: usize| {
            client
                .post(format!("{base}/track/visitor"))
                .header("X-Tippen-API-Key", key)
                // A new address each time: only the key's limit applies.
                .header("X-Forwarded-For", format!("198.51.100.{}", first_address + i))
                .json(&json!({
                    "event": "pageview",
                    "visitor": {"visitorId": format!("v{first_address}_{i}"), "url": "https://test.com/", "timestamp": "2025-10-16T12:00:00Z"},
                    "website": "test.com",
                }))
        }
    };
    the_fifth_in_all(
        "the host's per-key limit",
        &client,
        replicas,
        "too many requests with this key",
        page_view("demo_api_key", 1),
    )
    .await;
    the_fifth_in_all(
        "the site's own rate_limit_per_key",
        &client,
        replicas,
        "too many requests with this key",
        page_view(RATED_KEY, 101),
    )
    .await;
    the_fifth_in_all(
        "the per-address limit",
        &client,
        replicas,
        "too many requests from this address",
        |client, base, _| {
            client
                .get(format!("{base}/"))
                .header("X-Forwarded-For", "203.0.113.50")
        },
    )
    .await;
}
