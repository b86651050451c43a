//! The built server, killed with SIGKILL while visitors are live and started again on the same
//! SQLite file: the visitors are listed again, and the timers armed at startup remove them once
//! their grace has passed (no request arms anything after the restart).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tippen_core::Store;

/// Visible grace of both runs: long enough for a restart, short enough for a fast test.
const GRACE_MS: u64 = 4_000;

async fn listed(client: &reqwest::Client, base: &str) -> Vec<String> {
    let answer: Value = client
        .get(format!("{base}/api/visitors?apiKey=demo_api_key"))
        .send()
        .await
        .expect("GET /api/visitors")
        .json()
        .await
        .expect("JSON");
    let mut ids: Vec<String> = answer["visitors"]
        .as_array()
        .expect("visitors array")
        .iter()
        .filter_map(|v| v["visitorId"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

fn grace_env() -> Vec<(&'static str, String)> {
    vec![
        ("TIPPEN_VISIBLE_GRACE_MS", GRACE_MS.to_string()),
        ("TIPPEN_HIDDEN_GRACE_MS", (2 * GRACE_MS).to_string()),
    ]
}

/// Waits until the database file holds `n` visitors of the demo site.
async fn wait_until_stored(db: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reader = tippen_axum::SqliteStore::open(db).expect("open the file as a reader");
        let stored = reader
            .visitors(&tippen_core::SiteId::from("demo"))
            .await
            .expect("visitors")
            .len();
        drop(reader);
        if stored == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} of {n} visitors committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_survive_sigkill_and_expire_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("data").join("tippen.db");
    let client = reqwest::Client::new();
    let ids = [
        "visitor_restart_1",
        "visitor_restart_2",
        "visitor_restart_3",
    ];

    let first = Server::start(&db, &grace_env());
    for id in ids {
        let answer = client
            .post(format!("{}/track/visitor", first.base_url))
            .header("X-Tippen-API-Key", "demo_api_key")
            .json(&json!({
                "event": "pageview",
                "visitor": {"visitorId": id, "url": "https://test.com", "timestamp": "2025-10-16T12:00:00Z"},
                "website": "test.com",
            }))
            .send()
            .await
            .expect("track");
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(listed(&client, &first.base_url).await, ids);
    let tracked_at = Instant::now();
    // The store commits behind the requests (write-behind, within its 100 ms commit interval):
    // kill only once the file has the visitors, as a reader of the file sees them.
    wait_until_stored(&db, ids.len()).await;
    first.kill();

    let second = Server::start(&db, &grace_env());
    let relisted = listed(&client, &second.base_url).await;
    assert!(
        tracked_at.elapsed() < Duration::from_millis(GRACE_MS),
        "the restart took longer than the grace; the check below would be meaningless"
    );
    assert_eq!(
        relisted, ids,
        "visitors inside their grace are listed after the restart"
    );

    // Nothing but the startup arming can remove them now: watch a dashboard for the removals.
    let ws_url = format!(
        "{}/ws/dashboard?apiKey=demo_api_key",
        second.base_url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("dashboard connects");
    let mut removed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(GRACE_MS + 5_000);
    while removed.len() < ids.len() {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("removals seen before the timeout: {removed:?}"))
            .expect("socket open")
            .expect("message");
        let Ok(text) = msg.to_text() else { continue };
        let v: Value = serde_json::from_str(text).expect("JSON message");
        if v["type"] == "VISITOR_REMOVED" {
            assert_eq!(v["reason"], "inactive");
            removed.push(v["visitorId"].as_str().expect("id").to_owned());
        }
    }
    removed.sort();
    assert_eq!(
        removed, ids,
        "the restarted server's timers removed every visitor"
    );
    assert!(
        tracked_at.elapsed() >= Duration::from_millis(GRACE_MS - 300),
        "not removed before the grace passed"
    );
    assert!(listed(&client, &second.base_url).await.is_empty());
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_whose_grace_passed_while_down_are_swept_at_startup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tippen.db");
    let client = reqwest::Client::new();
    let first = Server::start(&db, &grace_env());
    let answer = client
        .post(format!("{}/track/visitor", first.base_url))
        .header("X-Tippen-API-Key", "demo_api_key")
        .json(&json!({
            "event": "heartbeat",
            "visitor": {"visitorId": "visitor_gone", "url": "https://test.com"},
            "website": "test.com",
        }))
        .send()
        .await
        .expect("track");
    assert_eq!(answer.status(), 200);
    wait_until_stored(&db, 1).await;
    first.kill();
    // Down for longer than the grace.
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 200)).await;
    let second = Server::start(&db, &grace_env());
    // Filtering alone would hide the expired visitor from the list; the sweep also removes it
    // and numbers a VISITOR_REMOVED, so the site's sequence moves from 1 to 2 with no request.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer: Value = client
            .get(format!(
                "{}/api/visitors?apiKey=demo_api_key",
                second.base_url
            ))
            .send()
            .await
            .expect("GET /api/visitors")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            answer["visitors"],
            json!([]),
            "an expired visitor is never listed"
        );
        if answer["seq"] == 2 {
            break;
        }
        assert_eq!(answer["seq"], 1, "only the new_visitor update so far");
        assert!(Instant::now() < deadline, "the startup sweep did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
