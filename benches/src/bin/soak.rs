//! The soak: real traffic mixed with abuse against the reference server, for minutes, measuring
//! what the legitimate visitors and the dashboard feel and what the server holds.
//!
//! ```text
//! scripts/soak.sh [seconds=600]          # builds the release server, runs this against it
//! cargo run --release -p tippen-benches --bin soak -- --server target/release/tippen-server --secs 600
//! ```
//!
//! The server runs with its default limits on a fresh SQLite file, one site (`soak`), and
//! `127.0.0.1` as a trusted proxy, so every simulated client carries its own address in
//! `X-Forwarded-For` (legitimate visitors `10.1.x.y`, each abuser `10.66.0.k`) and the
//! per-address limits apply as they would behind a load balancer.
//!
//! **Legitimate traffic**: `--visitors` live visitors (default 1,000), each on its own address;
//! a page view, then a heartbeat every `--heartbeat-ms` (default 5,000) and a new page view every
//! sixth beat; after a drawn lifetime (30–180 s) an exit beacon, and a new visitor takes the
//! place. One dashboard on the WebSocket matches every page view to the `VISITOR_UPDATE` that
//! announces it (the transition→dashboard latency), and sends `GET_VISITORS` every 10 s.
//!
//! **Abuse** (issue 17's findings) starts after a baseline of `--baseline-secs` (default 120)
//! of legitimate traffic alone, so the latencies are reported for both phases and as the ratio of
//! their p99s, measured in one run. Each kind comes from its own address, at most `--abuse-rps` requests per
//! second per kind (default 50) with up to 4 in flight:
//! - `leave_flood`: `POST /track/leave` with 60 KB random tab ids;
//! - `huge_body`: 1 MB bodies to `/track/visitor`;
//! - `random_bytes`: random bytes to every route, random methods;
//! - `user_flood`: activity batches, each with a new user id;
//! - `visitor_flood`: page views, each from a new visitor id;
//! - `long_key`: 10 KB keys;
//! - `burst`: heartbeats of one visitor as fast as the limit answers;
//! - `snapshot`: `GET /api/visitors` with the secret key (a full snapshot each);
//! - `slowloris`: 100 connections that send a request header one byte per second;
//! - `dashboard_flood`: 4 dashboard sockets (secret key) each sending `GET_VISITORS` again as
//!   soon as the last snapshot arrived (a socket frame is no request: the HTTP rate limits do
//!   not see it).
//!
//! It prints, and writes as JSON to `--out`: per kind the answers by status; legitimate request
//! latency and transition→dashboard latency (p50, p99, p99.9, max) before and during the abuse;
//! the server's RSS (at start, at the end of the baseline, peak, at the end) and the SQLite file's size. It exits with 1 when the
//! server answered any 5xx, a legitimate request failed (not 200), or the server died.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const SITE_KEY: &str = "pk_soak_public_key";
const SECRET_KEY: &str = "sk_soak_secret_key_0123456789abcdef";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

/// Command-line options.
struct Opts {
    server: PathBuf,
    secs: u64,
    baseline_secs: u64,
    visitors: usize,
    heartbeat_ms: u64,
    abuse_rps: u64,
    /// Only these kinds of abuse (all when empty).
    kinds: Vec<String>,
    out: Option<PathBuf>,
}

fn opts() -> Opts {
    let mut o = Opts {
        server: PathBuf::new(),
        secs: 600,
        baseline_secs: 120,
        visitors: 1000,
        heartbeat_ms: 5000,
        abuse_rps: 50,
        kinds: Vec::new(),
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--server" => o.server = val().into(),
            "--secs" => o.secs = val().parse().unwrap_or_else(|_| usage("--secs: a number")),
            "--baseline-secs" => {
                o.baseline_secs = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--baseline-secs: a number"))
            }
            "--visitors" => {
                o.visitors = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--visitors: a number"))
            }
            "--heartbeat-ms" => {
                o.heartbeat_ms = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--heartbeat-ms: a number"))
            }
            "--abuse-rps" => {
                o.abuse_rps = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--abuse-rps: a number"))
            }
            "--kinds" => o.kinds = val().split(',').map(str::to_owned).collect(),
            "--out" => o.out = Some(val().into()),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if o.server.as_os_str().is_empty() {
        usage("--server PATH is required");
    }
    o
}

fn usage(why: &str) -> ! {
    eprintln!(
        "soak: {why}\nusage: soak --server PATH [--secs 600] [--baseline-secs 120] [--visitors 1000] [--heartbeat-ms 5000] [--abuse-rps 50] [--kinds leave_flood,huge_body,...,slowloris] [--out FILE]"
    );
    std::process::exit(2)
}

/// A small deterministic PRNG (xorshift64*): the soak needs variety, not cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

/// What the run counts, shared by every task.
#[derive(Default)]
struct Tally {
    /// Answers per kind of traffic, by status (0: the request failed without an answer).
    statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    /// Whether the abuse has started (the phase the latencies below are recorded in).
    abused: bool,
    /// Legitimate requests' latency, microseconds: `[before the abuse, during it]`.
    legit: [Option<Histogram<u64>>; 2],
    /// Page view sent → `VISITOR_UPDATE` received on the dashboard, microseconds, by phase.
    transition: [Option<Histogram<u64>>; 2],
    /// Legitimate requests that got no 200, with the first few reasons.
    legit_failures: Vec<String>,
}

impl Tally {
    fn phase(&self) -> usize {
        usize::from(self.abused)
    }

    fn count(&mut self, kind: &'static str, status: u16) {
        *self
            .statuses
            .entry(kind)
            .or_default()
            .entry(status)
            .or_default() += 1;
    }
}

type Shared = Arc<Mutex<Tally>>;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

struct Server {
    child: Child,
    base: String,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_server(path: &PathBuf) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        format!(
            "trusted_proxies = [\"127.0.0.1\"]\n\n[[sites]]\nid = \"soak\"\npublic_key = \"{SITE_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n"
        ),
    )
    .expect("write config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let db = dir.path().join("soak.db");
    let child = Command::new(path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-demo"])
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        db,
        _dir: dir,
    }
}

fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn visitor_body(id: &str, event: &str, url: &str, page: u64) -> String {
    serde_json::json!({
        "event": event,
        "visitor": {
            "visitorId": id, "tabId": "tab_1", "url": url, "pageId": format!("p{page}"),
            "timestamp": "2026-12-03T12:00:00.000Z", "userAgent": UA, "visibility": "visible",
            "referrer": "https://www.google.com/"
        },
        "website": "shop.example.com"
    })
    .to_string()
}

/// Sends one request; returns the status (0 when no answer came).
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    addr: &str,
    key: &str,
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let mut req = client
        .request(method, url)
        .header("X-Forwarded-For", addr)
        .header("X-Tippen-API-Key", key)
        .header("Content-Type", "application/json");
    if let Some(b) = body {
        req = req.body(b);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (status, text)
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Pending page views the dashboard should announce: visitor → (url, sent at).
type Pending = Arc<Mutex<HashMap<String, (String, Instant)>>>;

async fn legit_visitor(
    slot: usize,
    base: String,
    client: reqwest::Client,
    tally: Shared,
    pending: Pending,
    stop: Arc<AtomicBool>,
    heartbeat: Duration,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (slot as u64 + 1).wrapping_mul(0x1000_0001));
    let addr = format!("10.1.{}.{}", slot / 250, slot % 250 + 1);
    let url = format!("{base}/track/visitor");
    // Stagger the first beats over one heartbeat period.
    tokio::time::sleep(Duration::from_millis(
        rng.below(heartbeat.as_millis() as u64),
    ))
    .await;
    let mut generation = 0u64;
    while !stop.load(Ordering::Relaxed) {
        generation += 1;
        let id = format!("visitor_soak_{slot}_{generation}_{}", rng.hex(6));
        let lifetime = Duration::from_secs(30 + rng.below(150));
        let born = Instant::now();
        let mut beat = 0u64;
        let mut page = 0u64;
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) && born.elapsed() < lifetime {
            tick.tick().await;
            let pageview = beat.is_multiple_of(6);
            beat += 1;
            let event = if pageview { "pageview" } else { "heartbeat" };
            if pageview {
                page += 1;
            }
            let page_url = format!("https://shop.example.com/p/{slot}/{page}");
            let body = visitor_body(&id, event, &page_url, page);
            if pageview {
                pending
                    .lock()
                    .expect("pending")
                    .insert(id.clone(), (page_url.clone(), Instant::now()));
            }
            let t = Instant::now();
            let (status, text) = send(
                &client,
                reqwest::Method::POST,
                &url,
                &addr,
                SITE_KEY,
                Some(body.into_bytes()),
            )
            .await;
            let us = t.elapsed().as_micros() as u64;
            let mut tl = tally.lock().expect("tally");
            tl.count("legit", status);
            let phase = tl.phase();
            tl.legit[phase]
                .get_or_insert_with(histogram)
                .saturating_record(us.max(1));
            if status != 200 && tl.legit_failures.len() < 10 {
                tl.legit_failures
                    .push(format!("{event} {id}: {status} {text}"));
            }
        }
        // Leave: the exit beacon, as sendBeacon sends it (key in the body, text/plain).
        let beacon = serde_json::json!({"apiKey": SITE_KEY, "visitorId": id, "tabId": "tab_1", "pageId": format!("p{page}")});
        let (status, _) = send(
            &client,
            reqwest::Method::POST,
            &format!("{base}/track/leave"),
            &addr,
            SITE_KEY,
            Some(beacon.to_string().into_bytes()),
        )
        .await;
        tally.lock().expect("tally").count("legit", status);
        pending.lock().expect("pending").remove(&id);
    }
}

async fn dashboard(base: String, tally: Shared, pending: Pending, stop: Arc<AtomicBool>) {
    let ws_url = format!(
        "{}/ws/dashboard?apiKey={SECRET_KEY}",
        base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("dashboard connects");
    let mut resync = tokio::time::interval(Duration::from_secs(10));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = resync.tick() => {
                if ws.send(Message::text(r#"{"type":"GET_VISITORS"}"#)).await.is_err() {
                    tally.lock().expect("tally").legit_failures.push("dashboard socket closed".into());
                    return;
                }
            }
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else {
                    tally.lock().expect("tally").legit_failures.push(format!("dashboard socket ended: {msg:?}"));
                    return;
                };
                let Message::Text(text) = msg else { continue };
                let v: serde_json::Value = match serde_json::from_str(text.as_str()) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                let kind = v["type"].as_str().unwrap_or("");
                tally.lock().expect("tally").count(match kind {
                    "VISITOR_UPDATE" => "dashboard:VISITOR_UPDATE",
                    "VISITOR_REMOVED" => "dashboard:VISITOR_REMOVED",
                    "INITIAL_VISITORS" => "dashboard:INITIAL_VISITORS",
                    "SUPPORT_ALERT" => "dashboard:SUPPORT_ALERT",
                    "SUPPORT_RECOVERED" => "dashboard:SUPPORT_RECOVERED",
                    "ERROR" => "dashboard:ERROR",
                    _ => "dashboard:other",
                }, 200);
                if kind == "VISITOR_UPDATE" {
                    let id = v["visitor"]["visitorId"].as_str().unwrap_or("");
                    let url = v["visitor"]["url"].as_str().unwrap_or("");
                    let mut p = pending.lock().expect("pending");
                    if p.get(id).is_some_and(|(u, _)| u == url) {
                        let (_, sent) = p.remove(id).expect("present");
                        drop(p);
                        let us = sent.elapsed().as_micros() as u64;
                        let mut tl = tally.lock().expect("tally");
                        let phase = tl.phase();
                        tl.transition[phase].get_or_insert_with(histogram).saturating_record(us.max(1));
                    }
                }
            }
        }
    }
}

/// Builds an abuse request: (method, path, key, body) from the PRNG and the request's number.
type Make =
    Arc<dyn Fn(&mut Rng, u64) -> (reqwest::Method, String, String, Option<Vec<u8>>) + Send + Sync>;

/// One kind of abuse, from address `10.66.0.k`: `make` builds each request.
async fn abuser(
    (kind, make): (&'static str, Make),
    k: u8,
    base: String,
    client: reqwest::Client,
    tally: Shared,
    stop: Arc<AtomicBool>,
    rps: u64,
) {
    let addr = format!("10.66.0.{k}");
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = Rng(0xA5A5_5A5A_0F0F_F0F0 ^ u64::from(k));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        n += 1;
        let (method, path, key, body) = make(&mut rng, n);
        let (client, tally, addr, url, stop) = (
            client.clone(),
            tally.clone(),
            addr.clone(),
            format!("{base}{path}"),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (status, _) = send(&client, method, &url, &addr, &key, body).await;
            // Requests cut off by the end of the run (the server is stopped) are not counted.
            if !stop.load(Ordering::Relaxed) {
                tally.lock().expect("tally").count(kind, status);
            }
            drop(permit);
        });
    }
}

/// Connections that dribble a request header, one byte a second, reconnecting when closed.
async fn slowloris(base: String, tally: Shared, stop: Arc<AtomicBool>) {
    let host = base.trim_start_matches("http://").to_owned();
    let header = format!(
        "POST /track/visitor HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 10.66.0.99\r\nContent-Type: application/json\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(4000)
    );
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = tokio::net::TcpStream::connect(&host).await else {
            tally.lock().expect("tally").count("slowloris", 0);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opened = Instant::now();
        for b in header.bytes() {
            if stop.load(Ordering::Relaxed) || conn.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Closed by the server (the header timeout) or finished: count how long it was held,
        // in whole seconds, as the "status".
        let held = opened.elapsed().as_secs().min(999) as u16;
        tally
            .lock()
            .expect("tally")
            .count("slowloris (held s)", held);
    }
}

/// A dashboard asking for a snapshot again as soon as the last one arrived, until `stop`.
/// Each snapshot received counts as status 200; a socket that could not open or closed, as 0.
async fn dashboard_flood(base: String, tally: Shared, stop: Arc<AtomicBool>) {
    let url = format!(
        "{}/ws/dashboard?apiKey={SECRET_KEY}",
        base.replacen("http://", "ws://", 1)
    );
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            tally.lock().expect("tally").count("dashboard_flood", 0);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let mut got = false;
            if ws
                .send(Message::text(r#"{"type":"GET_VISITORS"}"#))
                .await
                .is_ok()
            {
                // Skip broadcasts until the snapshot arrives.
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.contains("\"INITIAL_VISITORS\"") => {
                            got = true;
                            break;
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
            tally
                .lock()
                .expect("tally")
                .count("dashboard_flood", if got { 200 } else { 0 });
            if !got {
                break;
            }
        }
    }
}

/// p99 during the abuse over p99 before it.
fn ratio(h: &[Option<Histogram<u64>>; 2]) -> Option<f64> {
    match h {
        [Some(a), Some(b)] => {
            Some(b.value_at_quantile(0.99) as f64 / a.value_at_quantile(0.99).max(1) as f64)
        }
        _ => None,
    }
}

fn percentiles(h: &Option<Histogram<u64>>) -> serde_json::Value {
    match h {
        Some(h) => serde_json::json!({
            "count": h.len(),
            "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
            "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
            "p999_ms": h.value_at_quantile(0.999) as f64 / 1000.0,
            "max_ms": h.max() as f64 / 1000.0,
        }),
        None => serde_json::Value::Null,
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let mut server = start_server(&o.server);
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    // Wait for the server to answer.
    let ready = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{}/", server.base)).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rss_start, _) = rss_kib(pid).expect("server's /proc status");
    let tally: Shared = Arc::default();
    let pending: Pending = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(dashboard(
        server.base.clone(),
        tally.clone(),
        pending.clone(),
        stop.clone(),
    )));
    for slot in 0..o.visitors {
        tasks.push(tokio::spawn(legit_visitor(
            slot,
            server.base.clone(),
            client.clone(),
            tally.clone(),
            pending.clone(),
            stop.clone(),
            Duration::from_millis(o.heartbeat_ms),
        )));
    }
    let post = reqwest::Method::POST;
    let kinds: Vec<(&'static str, Make)> = vec![
        ("leave_flood", {
            let post = post.clone();
            Arc::new(move |rng, _| {
                let body = serde_json::json!({"apiKey": SITE_KEY, "visitorId": "visitor_victim", "tabId": rng.hex(60_000)});
                (
                    post.clone(),
                    "/track/leave".into(),
                    SITE_KEY.into(),
                    Some(body.to_string().into_bytes()),
                )
            })
        }),
        ("huge_body", {
            let post = post.clone();
            Arc::new(move |rng, _| {
                (
                    post.clone(),
                    "/track/visitor".into(),
                    SITE_KEY.into(),
                    Some(rng.bytes(1 << 20)),
                )
            })
        }),
        ("random_bytes", {
            Arc::new(move |rng, _| {
                const ROUTES: [&str; 9] = [
                    "/track/visitor",
                    "/track/leave",
                    "/track/invite",
                    "/api/track/user-activity",
                    "/api/visitors",
                    "/api/send-video-invite",
                    "/api/invites/cancel",
                    "/api/visitors/x",
                    "/api/stats",
                ];
                const METHODS: [reqwest::Method; 3] = [
                    reqwest::Method::POST,
                    reqwest::Method::GET,
                    reqwest::Method::DELETE,
                ];
                let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
                let method = METHODS[rng.below(3) as usize].clone();
                let key = if rng.below(2) == 0 {
                    SITE_KEY
                } else {
                    SECRET_KEY
                };
                let len = rng.below(4096) as usize;
                (method, route.into(), key.into(), Some(rng.bytes(len)))
            })
        }),
        ("user_flood", {
            let post = post.clone();
            Arc::new(move |rng, n| {
                let body = serde_json::json!({"userId": format!("user_{n}_{}", rng.hex(8)), "userEmail": "x@example.com", "subscriptionTier": "free_trial",
                    "events": (0..50).map(|i| serde_json::json!({"type":"error","message":"x".repeat(512),"route":"/r","timestamp":i})).collect::<Vec<_>>()});
                (
                    post.clone(),
                    "/api/track/user-activity".into(),
                    SITE_KEY.into(),
                    Some(body.to_string().into_bytes()),
                )
            })
        }),
        ("visitor_flood", {
            let post = post.clone();
            Arc::new(move |rng, n| {
                let body = visitor_body(
                    &format!("visitor_flood_{n}_{}", rng.hex(8)),
                    "pageview",
                    "https://shop.example.com/",
                    1,
                );
                (
                    post.clone(),
                    "/track/visitor".into(),
                    SITE_KEY.into(),
                    Some(body.into_bytes()),
                )
            })
        }),
        ("long_key", {
            let post = post.clone();
            Arc::new(move |rng, _| {
                (
                    post.clone(),
                    "/track/visitor".into(),
                    rng.hex(10_000),
                    Some(
                        visitor_body("visitor_k", "heartbeat", "https://shop.example.com/", 1)
                            .into_bytes(),
                    ),
                )
            })
        }),
        ("burst", {
            let post = post.clone();
            Arc::new(move |_, _| {
                (
                    post.clone(),
                    "/track/visitor".into(),
                    SITE_KEY.into(),
                    Some(
                        visitor_body("visitor_burst", "heartbeat", "https://shop.example.com/", 1)
                            .into_bytes(),
                    ),
                )
            })
        }),
        ("snapshot", {
            Arc::new(move |_, _| {
                (
                    reqwest::Method::GET,
                    "/api/visitors".into(),
                    SECRET_KEY.into(),
                    None,
                )
            })
        }),
    ];
    // Sample the server's memory once a second until the end; the abuse starts after the
    // baseline phase.
    let started = Instant::now();
    let mut kinds = Some(kinds);
    let mut rss_baseline = None;
    let mut rss_peak = rss_start;
    let mut died = None;
    while started.elapsed() < Duration::from_secs(o.secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(Some(status)) = server.child.try_wait() {
            died = Some(status.to_string());
            break;
        }
        let rss = rss_kib(pid).map(|r| r.0).unwrap_or(0);
        rss_peak = rss_peak.max(rss);
        if started.elapsed() >= Duration::from_secs(o.baseline_secs)
            && let Some(kinds) = kinds.take()
        {
            rss_baseline = Some(rss);
            tally.lock().expect("tally").abused = true;
            eprintln!("soak: abuse starts ({} s)", started.elapsed().as_secs());
            let wanted = |kind: &str| o.kinds.is_empty() || o.kinds.iter().any(|k| k == kind);
            for (k, (kind, make)) in kinds.into_iter().enumerate() {
                if !wanted(kind) {
                    continue;
                }
                // The burst kind tries far more than its address's limit; the others stay near it.
                let rps = if kind == "burst" {
                    o.abuse_rps * 10
                } else {
                    o.abuse_rps
                };
                tasks.push(tokio::spawn(abuser(
                    (kind, make),
                    k as u8 + 1,
                    server.base.clone(),
                    client.clone(),
                    tally.clone(),
                    stop.clone(),
                    rps,
                )));
            }
            for _ in 0..if wanted("dashboard_flood") { 4 } else { 0 } {
                tasks.push(tokio::spawn(dashboard_flood(
                    server.base.clone(),
                    tally.clone(),
                    stop.clone(),
                )));
            }
            for _ in 0..if wanted("slowloris") { 100 } else { 0 } {
                tasks.push(tokio::spawn(slowloris(
                    server.base.clone(),
                    tally.clone(),
                    stop.clone(),
                )));
            }
        }
        let secs = started.elapsed().as_secs();
        if secs.is_multiple_of(60) {
            let tl = tally.lock().expect("tally");
            let phase = tl.phase();
            eprintln!(
                "soak: {secs} s, rss {rss} kB, legit p99 so far in this phase {} ms",
                percentiles(&tl.legit[phase])["p99_ms"]
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (rss_end, hwm) = rss_kib(pid).unwrap_or((0, 0));
    let db_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| {
            std::fs::metadata(format!("{}{s}", server.db.display()))
                .ok()
                .map(|m| m.len())
        })
        .sum();
    for t in &tasks {
        t.abort();
    }
    let _ = server.child.kill();
    let _ = server.child.wait();

    let tl = tally.lock().expect("tally");
    let five_xx: u64 = tl
        .statuses
        .iter()
        .filter(|(k, _)| !k.starts_with("slowloris") && !k.starts_with("dashboard"))
        .flat_map(|(_, m)| m.iter())
        .filter(|(s, _)| (500..600).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let report = serde_json::json!({
        "seconds": started.elapsed().as_secs(),
        "visitors": o.visitors,
        "heartbeat_ms": o.heartbeat_ms,
        "abuse_rps_per_kind": o.abuse_rps,
        "statuses": tl.statuses.iter().map(|(k, m)| (k.to_string(), m.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>())).collect::<BTreeMap<_, _>>(),
        "baseline_seconds": o.baseline_secs,
        "legit_latency": {"baseline": percentiles(&tl.legit[0]), "abused": percentiles(&tl.legit[1])},
        "legit_p99_ratio_abused_to_baseline": ratio(&tl.legit),
        "transition_latency": {"baseline": percentiles(&tl.transition[0]), "abused": percentiles(&tl.transition[1])},
        "transition_p99_ratio_abused_to_baseline": ratio(&tl.transition),
        "legit_failures": tl.legit_failures,
        "server_5xx": five_xx,
        "rss_kib": {"start": rss_start, "end_of_baseline": rss_baseline, "peak_sampled": rss_peak, "peak_hwm": hwm, "end": rss_end},
        "sqlite_bytes_end": db_bytes,
        "server_died": died,
    });
    let text = serde_json::to_string_pretty(&report).expect("json");
    println!("{text}");
    if let Some(out) = &o.out {
        std::fs::write(out, &text).expect("write --out");
    }
    let legit_ok = tl
        .statuses
        .get("legit")
        .map(|m| m.iter().all(|(s, _)| *s == 200))
        .unwrap_or(false);
    if five_xx > 0 || !legit_ok || died.is_some() {
        eprintln!(
            "soak: FAILED (5xx: {five_xx}, legitimate failures: {:?}, server died: {died:?})",
            tl.legit_failures
        );
        std::process::exit(1);
    }
}
