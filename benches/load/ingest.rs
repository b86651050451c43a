//! The heartbeat ingest figure: closed loop, keep-alive connections, a raw HTTP/1.1 client
//! (requests formatted once, answers parsed only as far as status and length) so the client
//! costs little next to the server.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Visitors whose heartbeats are sent (as `scripts/load.sh`'s wrk script).
const VISITORS: usize = 2000;

/// The ingest figure.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IngestResult {
    /// Heartbeats answered 200 per second.
    pub rps: f64,
    /// Answers other than 200.
    pub errors: u64,
    /// Connections used.
    pub connections: usize,
    /// Seconds measured.
    pub secs: f64,
}

/// One tracking request of visitor `i`, formatted once: `event` is `pageview` or `heartbeat`.
pub(crate) fn request(host: &str, key: &str, event: &str, i: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"event":"{event}","visitor":{{"visitorId":"visitor_1729080000000_{i:07}","tabId":"tab_1","url":"https://shop.example.com/products/item-{i}","timestamp":"2025-10-16T12:00:00Z","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","visibility":"visible"}},"website":"shop.example.com"}}"#
    );
    format!(
        "POST /track/visitor HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Tippen-API-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one answer off `conn` (into `buf`, keeping what follows it); its status code.
pub(crate) async fn answer(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or("no status")?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or("no content-length")?;
            let total = end + 4 + len;
            while buf.len() < total {
                read_more(conn, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        read_more(conn, buf).await?;
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// What the connections share: how many have sent their page views, the counters, whether
/// they count now and whether to stop.
#[derive(Default)]
struct Phase {
    warmed: Cell<usize>,
    changed: tokio::sync::Notify,
    ok: Cell<u64>,
    errors: Cell<u64>,
    measuring: Cell<bool>,
    stop: Cell<bool>,
}

/// One connection: its share of the visitors gets a page view each (once: `warmed`), then
/// heartbeats go until `phase.stop` (counted while `phase.measuring`).
async fn heartbeat_loop(
    host: &str,
    c: usize,
    conns: usize,
    pageviews: &[Vec<u8>],
    heartbeats: &[Vec<u8>],
    warmed: &mut bool,
    phase: &Phase,
) -> Result<(), String> {
    let mut conn = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(8192);
    if !*warmed {
        for i in (c..VISITORS).step_by(conns) {
            conn.write_all(&pageviews[i])
                .await
                .map_err(|e| e.to_string())?;
            answer(&mut conn, &mut buf).await?;
        }
        *warmed = true;
        phase.warmed.set(phase.warmed.get() + 1);
        phase.changed.notify_one();
    }
    let (ok, errors, measuring) = (&phase.ok, &phase.errors, &phase.measuring);
    let mut i = c;
    while !phase.stop.get() {
        conn.write_all(&heartbeats[i])
            .await
            .map_err(|e| e.to_string())?;
        let status = answer(&mut conn, &mut buf).await?;
        if measuring.get() {
            let counter = if status == 200 { ok } else { errors };
            counter.set(counter.get() + 1);
        }
        i = (i + conns) % VISITORS;
    }
    Ok(())
}

/// Creates the visitors with a page view each, then sends their heartbeats for `secs`.
pub async fn ingest(
    http: &str,
    key: &str,
    conns: usize,
    secs: u64,
) -> Result<IngestResult, String> {
    let host = http
        .strip_prefix("http://")
        .ok_or("the ingest figure needs an http:// URL")?
        .trim_end_matches('/')
        .to_owned();
    let pageviews: Rc<Vec<Vec<u8>>> = Rc::new(
        (0..VISITORS)
            .map(|i| request(&host, key, "pageview", i))
            .collect(),
    );
    let heartbeats: Rc<Vec<Vec<u8>>> = Rc::new(
        (0..VISITORS)
            .map(|i| request(&host, key, "heartbeat", i))
            .collect(),
    );
    let phase = Rc::new(Phase::default());
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (host, pageviews, heartbeats) = (host.clone(), pageviews.clone(), heartbeats.clone());
        let phase = phase.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut warmed = false;
            // A connection the server dropped is counted as an error and opened again.
            while !phase.stop.get() {
                let run = heartbeat_loop(
                    &host,
                    c,
                    conns,
                    &pageviews,
                    &heartbeats,
                    &mut warmed,
                    &phase,
                );
                if run.await.is_err() {
                    if phase.measuring.get() {
                        phase.errors.set(phase.errors.get() + 1);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    // Every visitor exists (page views sent by every connection, however long a slow server
    // takes), then one second of heartbeats before counting.
    while phase.warmed.get() < conns {
        phase.changed.notified().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    phase.measuring.set(true);
    let counted_from = Instant::now();
    let (ok0, err0) = (phase.ok.get(), phase.errors.get());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    phase.measuring.set(false);
    let secs_measured = counted_from.elapsed().as_secs_f64();
    let (ok1, err1) = (phase.ok.get(), phase.errors.get());
    phase.stop.set(true);
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    Ok(IngestResult {
        rps: (ok1 - ok0) as f64 / secs_measured,
        errors: err1 - err0,
        connections: conns,
        secs: secs_measured,
    })
}
