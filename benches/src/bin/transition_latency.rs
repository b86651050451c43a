//! Transition → dashboard latency: page views of new visitors posted to one server (`HTTP`),
//! each timed until a dashboard connected to a server (`WS`, the same or another replica)
//! hears its `VISITOR_UPDATE`. Prints p50 / p99 / max in milliseconds.
//!
//! `transition_latency <http base> <ws base> <count> <label>`; used by
//! `scripts/bench-replicas.sh`, which starts the servers (one on SQLite, one on Redis, two on
//! Redis) and compares them in one run.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, http, ws, count, label] = &args[..] else {
        eprintln!("usage: transition_latency <http base> <ws base> <count> <label>");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("count");
    let url = format!(
        "{}/ws/dashboard?apiKey=demo_api_key",
        ws.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("dashboard connects");
    let client = reqwest::Client::new();
    let run = std::process::id();
    let mut took = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let id = format!("lat_{run}_{label}_{i}");
        let started = Instant::now();
        let answer = client
            .post(format!("{http}/track/visitor"))
            .header("X-Tippen-API-Key", "demo_api_key")
            .json(&json!({
                "event": "pageview",
                "visitor": {"visitorId": id, "tabId": "tab_1", "url": "https://test.com/",
                            "timestamp": "2025-10-16T12:00:00Z", "visibility": "visible"},
                "website": "test.com",
            }))
            .send()
            .await
            .expect("POST");
        assert_eq!(answer.status(), 200, "page view answered");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("the dashboard hears it within 10 s")
                .expect("open")
                .expect("message");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["type"] == "VISITOR_UPDATE" && v["visitor"]["visitorId"] == id.as_str() {
                break;
            }
        }
        // The first tenth warms up (connections, caches).
        if i >= count / 10 {
            took.push(started.elapsed());
        }
    }
    took.sort();
    let at = |q: f64| {
        let i = ((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1;
        took[i].as_secs_f64() * 1_000.0
    };
    println!(
        "{label}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        took.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}
