//! The run: visitors (open loop), dashboards, `/proc` sampling, one JSON result.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::Message;

use crate::ingest;
use crate::{Kind, Server};

/// `load run`'s options. Times are real ones (a 30 s heartbeat), divided by `--compress`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The server measured.
    #[command(flatten)]
    pub server: Server,
    /// What the server speaks.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The load levels: mean concurrent visitors, one step each, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,5000,10000,20000"
    )]
    pub levels: Vec<u64>,
    /// Seconds measured at each level (after a ramp of one heartbeat interval and one second).
    #[arg(long, default_value_t = 20)]
    pub step_secs: u64,
    /// Time compression: every visitor and server timing is divided by it.
    #[arg(long, default_value_t = 10)]
    pub compress: u64,
    /// Dashboards connected for the whole run.
    #[arg(long, default_value_t = 4)]
    pub dashboards: usize,
    /// The server's exit-beacon linger in real milliseconds (tippen 2000; the peer 0).
    #[arg(long, default_value_t = 2000)]
    pub linger_ms: u64,
    /// Seconds of closed-loop heartbeat ingest at the end (0: none).
    #[arg(long, default_value_t = 10)]
    pub ingest_secs: u64,
    /// Connections of the ingest figure.
    #[arg(long, default_value_t = 32)]
    pub ingest_conns: usize,
    /// Where the JSON result goes.
    #[arg(long)]
    pub out: PathBuf,
}

/// Real (uncompressed) visitor timings.
const HEARTBEAT_MS: u64 = 30_000;
const GRACE_MS: u64 = 60_000;
const MEAN_STAY_MS: u64 = 300_000;
const MEAN_PAGE_GAP_MS: u64 = 90_000;
/// The dashboard latency a level must hold (p99).
pub const P99_GOAL_MS: f64 = 50.0;

/// One run's result (the JSON file).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RunResult {
    /// The server's label.
    pub name: String,
    /// What it speaks.
    pub kind: Kind,
    /// The time compression factor.
    pub compress: u64,
    /// Dashboards connected.
    pub dashboards: usize,
    /// Compressed heartbeat interval, expiry and linger (ms) the servers were given.
    pub heartbeat_ms: u64,
    /// Compressed expiry of a silent visitor (ms).
    pub grace_ms: u64,
    /// Compressed exit-beacon linger (ms).
    pub linger_ms: u64,
    /// Compressed mean stay (ms).
    pub mean_stay_ms: u64,
    /// `/proc/loadavg` when the run started and when it ended.
    pub loadavg: [String; 2],
    /// The server's RSS before any visitor (bytes).
    pub rss_baseline: u64,
    /// One entry per level measured.
    pub levels: Vec<LevelResult>,
    /// The closed-loop heartbeat figure.
    pub ingest: Option<ingest::IngestResult>,
}

/// One load level's figures.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct LevelResult {
    /// Mean concurrent visitors offered.
    pub visitors: u64,
    /// Visitors live at the end of the step (the harness's count).
    pub live_end: u64,
    /// Requests sent per second (offered) and answered 200 per second.
    pub offered_rps: f64,
    /// Requests answered 200 per second.
    pub answered_rps: f64,
    /// Requests not answered 200 (status or connection).
    pub http_errors: u64,
    /// Request latency (ms).
    pub http_p50_ms: f64,
    /// Request latency p99 (ms).
    pub http_p99_ms: f64,
    /// Request latency max (ms): a request the server (or a proxy before it) held far longer
    /// than the rest shows here, where p99 hides it.
    #[serde(default)]
    pub http_max_ms: f64,
    /// Broadcasts timed by the dashboards.
    pub dash_samples: u64,
    /// Transition → dashboard latency (ms).
    pub dash_p50_ms: f64,
    /// Transition → dashboard latency p99 (ms).
    pub dash_p99_ms: f64,
    /// Transition → dashboard latency max (ms).
    pub dash_max_ms: f64,
    /// Removals heard by the dashboards (each dashboard counts).
    pub removal_samples: u64,
    /// Deadline → removal lag (ms).
    pub removal_p50_ms: f64,
    /// Deadline → removal lag p99 (ms).
    pub removal_p99_ms: f64,
    /// Deadline → removal lag max (ms).
    pub removal_max_ms: f64,
    /// Removals of visitors that were still live (the server fell behind their heartbeats).
    pub premature_removals: u64,
    /// Ended visitors whose removal no dashboard had heard 2 s past the deadline, at step end.
    pub overdue_removals: u64,
    /// The server's CPU over the step (% of one core).
    pub server_cpu_pct: f64,
    /// The harness's own CPU over the step (% of one core): near 100 it limits the figures.
    pub harness_cpu_pct: f64,
    /// The server's RSS at the end of the step (bytes).
    pub server_rss: u64,
    /// (RSS at step end − RSS baseline) / live visitors.
    pub bytes_per_visitor: f64,
    /// Held: dashboard p99 ≤ 50 ms, no request failed, no premature or overdue removal.
    pub held: bool,
}

/// The visitors' state, as the dashboards' removals are checked against it.
enum VState {
    /// Live on the page sent at `page_lt` (µs); `heard`: the dashboards (bits) that timed it.
    Live {
        page_lt: u64,
        heard: u32,
    },
    Ended {
        deadline_us: u64,
        heard: usize,
    },
}

/// One step's counters (replaced at the start of each measured step).
struct Stats {
    sent: u64,
    ok: u64,
    errors: u64,
    http: Histogram<u64>,
    dash: Histogram<u64>,
    removal: Histogram<u64>,
    premature: u64,
}

impl Stats {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
        Stats {
            sent: 0,
            ok: 0,
            errors: 0,
            http: h(),
            dash: h(),
            removal: h(),
            premature: 0,
        }
    }
}

/// Shared by every task of the run (one thread).
struct Ctx {
    t0: Instant,
    kind: Kind,
    http: String,
    key: String,
    client: reqwest::Client,
    run: u32,
    heartbeat: Duration,
    grace_us: u64,
    linger_us: u64,
    mean_stay: Duration,
    mean_page_gap: Duration,
    dashboards: usize,
    next_id: Cell<u64>,
    /// Requests sent and not answered yet.
    in_flight: Cell<u64>,
    live: Cell<u64>,
    /// Mean concurrent visitors wanted now (the arrival rate is this / mean stay).
    level: Cell<u64>,
    stop: Cell<bool>,
    visitors: RefCell<HashMap<u64, VState>>,
    stats: RefCell<Stats>,
}

impl Ctx {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

/// An exponential draw with the given mean.
fn exp(mean: Duration) -> Duration {
    let u = 1.0 - fastrand::f64(); // (0, 1]
    mean.mul_f64(-u.ln())
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

fn track_body(event: &str, id: &str, page: u32, sent_us: u64) -> String {
    format!(
        r#"{{"event":"{event}","visitor":{{"visitorId":"{id}","tabId":"tab_1","pageId":"p{page}","url":"https://shop.example.com/products/item-{page}?lt={sent_us}","referrer":"https://www.google.com/","timestamp":"2025-10-16T12:00:00Z","userAgent":"{UA}","visibility":"visible"}},"website":"shop.example.com"}}"#
    )
}

/// Sends one request without waiting for it (open loop); its answer is counted when it comes.
fn send(ctx: &Rc<Ctx>, path: &'static str, body: String, json: bool) {
    ctx.stats.borrow_mut().sent += 1;
    ctx.in_flight.set(ctx.in_flight.get() + 1);
    let ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        let started = Instant::now();
        let answer = ctx
            .client
            .post(format!("{}{path}", ctx.http))
            .header("X-Tippen-API-Key", ctx.key.as_str())
            .header(
                "Content-Type",
                if json {
                    "application/json"
                } else {
                    "text/plain"
                },
            )
            .body(body)
            .send()
            .await;
        let ok = match answer {
            Ok(r) => {
                let ok = r.status() == 200;
                // Read the body so the connection goes back to the pool.
                let _ = r.bytes().await;
                ok
            }
            Err(_) => false,
        };
        ctx.in_flight.set(ctx.in_flight.get() - 1);
        let mut s = ctx.stats.borrow_mut();
        if ok {
            s.ok += 1;
            s.http
                .saturating_record(started.elapsed().as_micros().max(1) as u64);
        } else {
            s.errors += 1;
        }
    });
}

/// One visitor's life, starting `delay` from now.
async fn visitor(ctx: Rc<Ctx>, delay: Duration) {
    sleep(delay).await;
    if ctx.stop.get() {
        return;
    }
    let n = ctx.next_id.get();
    ctx.next_id.set(n + 1);
    let id = format!("v{}_{n}", ctx.run);
    ctx.live.set(ctx.live.get() + 1);
    let start = Instant::now();
    let end = start + exp(ctx.mean_stay);
    let mut page = 1u32;
    let mut last_sent = ctx.now_us();
    // The current page's send time: its URL carries it, so heartbeats repeat the same URL.
    let mut page_sent = last_sent;
    ctx.visitors.borrow_mut().insert(
        n,
        VState::Live {
            page_lt: page_sent,
            heard: 0,
        },
    );
    send(
        &ctx,
        "/track/visitor",
        track_body("pageview", &id, page, page_sent),
        true,
    );
    let mut next_hb = start + ctx.heartbeat;
    let mut next_pv = start + exp(ctx.mean_page_gap);
    loop {
        let at = next_hb.min(next_pv).min(end);
        tokio::time::sleep_until(at.into()).await;
        if ctx.stop.get() {
            return;
        }
        if at == end {
            break;
        }
        let now_us = ctx.now_us();
        if at == next_pv {
            page += 1;
            page_sent = now_us;
            ctx.visitors.borrow_mut().insert(
                n,
                VState::Live {
                    page_lt: page_sent,
                    heard: 0,
                },
            );
            send(
                &ctx,
                "/track/visitor",
                track_body("pageview", &id, page, page_sent),
                true,
            );
            next_pv = at + exp(ctx.mean_page_gap);
            // The tracker keeps its heartbeat period from the page load.
            next_hb = at + ctx.heartbeat;
        } else {
            send(
                &ctx,
                "/track/visitor",
                track_body("heartbeat", &id, page, page_sent),
                true,
            );
            next_hb = at + ctx.heartbeat;
        }
        last_sent = now_us;
    }
    let deadline_us = if fastrand::bool() {
        let now_us = ctx.now_us();
        let body = format!(
            r#"{{"apiKey":"{key}","visitorId":"{id}","tabId":"tab_1","pageId":"p{page}"}}"#,
            key = ctx.key
        );
        send(&ctx, "/track/leave", body, false);
        now_us + ctx.linger_us
    } else {
        last_sent + ctx.grace_us
    };
    ctx.visitors.borrow_mut().insert(
        n,
        VState::Ended {
            deadline_us,
            heard: 0,
        },
    );
    ctx.live.set(ctx.live.get() - 1);
}

/// The Poisson arrivals: rate = level / mean stay.
async fn arrivals(ctx: Rc<Ctx>) {
    while !ctx.stop.get() {
        let level = ctx.level.get();
        if level == 0 {
            sleep(Duration::from_millis(50)).await;
            continue;
        }
        sleep(exp(ctx.mean_stay / level as u32)).await;
        tokio::task::spawn_local(visitor(ctx.clone(), Duration::ZERO));
    }
}

/// What the dashboards read of a server message (tippen's, or the peer's event payload).
#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    visitor: Option<MsgVisitor<'a>>,
    #[serde(default, rename = "visitorId", borrow)]
    visitor_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MsgVisitor<'a> {
    #[serde(default, borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(default, rename = "visitorId", borrow)]
    visitor_id: Option<Cow<'a, str>>,
}

/// The visitor number in an id `v<run>_<n>` of this run.
fn number_of(ctx: &Ctx, id: &str) -> Option<u64> {
    let rest = id.strip_prefix('v')?;
    let (run, n) = rest.split_once('_')?;
    (run.parse::<u32>().ok()? == ctx.run).then_some(())?;
    n.parse().ok()
}

/// Handles one server message heard by dashboard number `dash`.
fn on_message(ctx: &Ctx, dash: usize, text: &str) {
    let Ok(m) = serde_json::from_str::<Msg>(text) else {
        return;
    };
    let now = ctx.now_us();
    match &*m.ty {
        "VISITOR_UPDATE" => {
            if !matches!(m.event.as_deref(), Some("new_visitor" | "pageview")) {
                return;
            }
            let Some(v) = m.visitor else { return };
            let (Some(url), Some(n)) = (v.url, v.visitor_id.and_then(|id| number_of(ctx, &id)))
            else {
                return;
            };
            let Some(sent) = url
                .rsplit_once("lt=")
                .and_then(|(_, t)| t.parse::<u64>().ok())
            else {
                return;
            };
            // Each page view is timed once per dashboard, when its page is still the current
            // one: a heartbeat overtaken by the next page view repeats the old page's URL, and
            // a server that rebroadcasts it has not delivered the page view late.
            let bit = 1u32 << (dash % 32);
            if let Some(VState::Live { page_lt, heard }) = ctx.visitors.borrow_mut().get_mut(&n)
                && *page_lt == sent
                && *heard & bit == 0
            {
                *heard |= bit;
                ctx.stats
                    .borrow_mut()
                    .dash
                    .saturating_record(now.saturating_sub(sent).max(1));
            }
        }
        "VISITOR_REMOVED" => {
            let Some(n) = m.visitor_id.as_deref().and_then(|id| number_of(ctx, id)) else {
                return;
            };
            let mut visitors = ctx.visitors.borrow_mut();
            match visitors.get_mut(&n) {
                Some(VState::Live { .. }) => ctx.stats.borrow_mut().premature += 1,
                Some(VState::Ended { deadline_us, heard }) => {
                    ctx.stats
                        .borrow_mut()
                        .removal
                        .saturating_record(now.saturating_sub(*deadline_us).max(1));
                    *heard += 1;
                    if *heard >= ctx.dashboards {
                        visitors.remove(&n);
                    }
                }
                None => {}
            }
        }
        _ => {}
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens one dashboard; for the socket.io peer, completes the Engine.IO and namespace handshake.
async fn connect_dashboard(ctx: &Ctx) -> Result<Ws, String> {
    let ws_base = ctx.http.replacen("http://", "ws://", 1);
    let url = match ctx.kind {
        Kind::Tippen => format!("{ws_base}/ws/dashboard?apiKey={}", ctx.key),
        Kind::Socketio => {
            format!(
                "{ws_base}/socket.io/?EIO=4&transport=websocket&apiKey={}",
                ctx.key
            )
        }
        Kind::Bare => return Err("bare axum has no dashboards".into()),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("dashboard connect: {e}"))?;
    if ctx.kind == Kind::Socketio {
        // "0{sid,…}" (Engine.IO open), then "40" joins the main namespace, answered "40{sid}".
        let open = ws
            .next()
            .await
            .ok_or("closed")?
            .map_err(|e| e.to_string())?;
        if !open.to_text().unwrap_or("").starts_with('0') {
            return Err(format!("unexpected Engine.IO open: {open}"));
        }
        ws.send(Message::text("40"))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let m = ws
                .next()
                .await
                .ok_or("closed")?
                .map_err(|e| e.to_string())?;
            let t = m.to_text().unwrap_or("");
            if t.starts_with("40") {
                break;
            }
            if t.starts_with("44") {
                return Err(format!("socket.io refused the dashboard: {t}"));
            }
        }
    }
    Ok(ws)
}

/// Reads one dashboard until the run ends.
async fn dashboard(ctx: Rc<Ctx>, dash: usize, mut ws: Ws) {
    while let Some(Ok(m)) = ws.next().await {
        if ctx.stop.get() {
            break;
        }
        let Message::Text(t) = m else { continue };
        match ctx.kind {
            Kind::Socketio => {
                if &*t == "2" {
                    // Engine.IO ping.
                    let _ = ws.send(Message::text("3")).await;
                } else if let Some(event) = t.strip_prefix("42") {
                    // 42["name",{payload}]: the payload carries tippen's shape.
                    if let Ok((_, payload)) =
                        serde_json::from_str::<(Cow<str>, &serde_json::value::RawValue)>(event)
                    {
                        on_message(&ctx, dash, payload.get());
                    }
                }
            }
            _ => on_message(&ctx, dash, &t),
        }
    }
}

/// CPU ticks (user + system) and RSS of a process, from `/proc`.
pub(crate) fn proc_sample(pid: &str) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based); `after` starts at field 3.
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    (ticks, rss_kb * 1024)
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs every level, then the ingest figure, and writes the result.
pub async fn run(args: RunArgs) -> Result<(), String> {
    let c = args.compress.max(1);
    // Opened first: past a collapse, thousands of requests are still open at the end, each on
    // a connection (a file descriptor) of its own, and no descriptor may be left to open it.
    let mut out =
        std::fs::File::create(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let ctx = Rc::new(Ctx {
        t0: Instant::now(),
        kind: args.kind,
        http: args.server.http.trim_end_matches('/').to_owned(),
        key: args.server.key.clone(),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            // Below every server's keep-alive timeout, so no request meets a closing connection.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| e.to_string())?,
        run: std::process::id(),
        heartbeat: Duration::from_millis(HEARTBEAT_MS / c),
        grace_us: GRACE_MS * 1000 / c,
        linger_us: args.linger_ms * 1000 / c,
        mean_stay: Duration::from_millis(MEAN_STAY_MS / c),
        mean_page_gap: Duration::from_millis(MEAN_PAGE_GAP_MS / c),
        dashboards: if args.kind == Kind::Bare {
            0
        } else {
            args.dashboards
        },
        next_id: Cell::new(0),
        in_flight: Cell::new(0),
        live: Cell::new(0),
        level: Cell::new(0),
        stop: Cell::new(false),
        visitors: RefCell::new(HashMap::new()),
        stats: RefCell::new(Stats::new()),
    });
    let pid = args.server.pid.to_string();
    let load_start = loadavg();
    let (_, rss_baseline) = proc_sample(&pid);
    let mut result = RunResult {
        name: args.server.name.clone(),
        kind: args.kind,
        compress: c,
        dashboards: ctx.dashboards,
        heartbeat_ms: HEARTBEAT_MS / c,
        grace_ms: GRACE_MS / c,
        linger_ms: args.linger_ms / c,
        mean_stay_ms: MEAN_STAY_MS / c,
        loadavg: [load_start, String::new()],
        rss_baseline,
        levels: Vec::new(),
        ingest: None,
    };
    // Ingest first, on the fresh server (a server that collapsed at the last level may still be
    // working off its queue); its visitors expire before the levels start.
    if args.ingest_secs > 0 {
        let r = ingest::ingest(&ctx.http, &ctx.key, args.ingest_conns, args.ingest_secs).await?;
        eprintln!(
            "{}: ingest {:.0} heartbeats/s ({} errors)",
            args.server.name, r.rps, r.errors
        );
        result.ingest = Some(r);
        if args.kind != Kind::Bare {
            sleep(Duration::from_micros(ctx.grace_us) + Duration::from_secs(2)).await;
        }
        let (_, rss) = proc_sample(&pid);
        result.rss_baseline = rss;
    }
    if args.kind != Kind::Bare {
        for dash in 0..args.dashboards {
            let ws = connect_dashboard(&ctx).await?;
            tokio::task::spawn_local(dashboard(ctx.clone(), dash, ws));
        }
        tokio::task::spawn_local(arrivals(ctx.clone()));
        for &level in &args.levels {
            ctx.level.set(level);
            // Bring the population to the level at once, spread over one heartbeat interval
            // (stays are memoryless, so this is the steady state), then let it settle.
            let deficit = level.saturating_sub(ctx.live.get());
            for _ in 0..deficit {
                let delay = ctx.heartbeat.mul_f64(fastrand::f64());
                tokio::task::spawn_local(visitor(ctx.clone(), delay));
            }
            sleep(ctx.heartbeat + Duration::from_secs(1)).await;
            *ctx.stats.borrow_mut() = Stats::new();
            let (ticks0, _) = proc_sample(&pid);
            let (self0, _) = proc_sample("self");
            let started = Instant::now();
            sleep(Duration::from_secs(args.step_secs)).await;
            let secs = started.elapsed().as_secs_f64();
            let (ticks1, rss) = proc_sample(&pid);
            let (self1, _) = proc_sample("self");
            let now = ctx.now_us();
            let overdue = ctx
                .visitors
                .borrow()
                .values()
                .filter(|v| matches!(v, VState::Ended { deadline_us, .. } if deadline_us + 2_000_000 < now))
                .count() as u64;
            let s = ctx.stats.borrow();
            let live = ctx.live.get();
            let mut l = LevelResult {
                visitors: level,
                live_end: live,
                offered_rps: s.sent as f64 / secs,
                answered_rps: s.ok as f64 / secs,
                http_errors: s.errors,
                http_p50_ms: ms(&s.http, 0.5),
                http_p99_ms: ms(&s.http, 0.99),
                http_max_ms: ms(&s.http, 1.0),
                dash_samples: s.dash.len(),
                dash_p50_ms: ms(&s.dash, 0.5),
                dash_p99_ms: ms(&s.dash, 0.99),
                dash_max_ms: ms(&s.dash, 1.0),
                removal_samples: s.removal.len(),
                removal_p50_ms: ms(&s.removal, 0.5),
                removal_p99_ms: ms(&s.removal, 0.99),
                removal_max_ms: ms(&s.removal, 1.0),
                premature_removals: s.premature,
                overdue_removals: overdue,
                server_cpu_pct: ticks1.saturating_sub(ticks0) as f64 / secs,
                harness_cpu_pct: self1.saturating_sub(self0) as f64 / secs,
                server_rss: rss,
                bytes_per_visitor: rss.saturating_sub(result.rss_baseline) as f64
                    / live.max(1) as f64,
                held: false,
            };
            drop(s);
            l.held = l.dash_samples > 0
                && l.dash_p99_ms <= P99_GOAL_MS
                && l.http_errors == 0
                && l.premature_removals == 0
                && l.overdue_removals == 0;
            eprintln!(
                "{} {:>6} visitors: {:>7.0} req/s offered, {:>7.0} answered, {} errors, request p99 {:.1} max {:.1} ms; dashboard p50 {:.2} p99 {:.2} max {:.1} ms ({} samples); removal lag p99 {:.1} ms, {} premature, {} overdue; server cpu {:.0} %, rss {:.1} MB, {:.0} B/visitor; harness cpu {:.0} %{}",
                args.server.name,
                level,
                l.offered_rps,
                l.answered_rps,
                l.http_errors,
                l.http_p99_ms,
                l.http_max_ms,
                l.dash_p50_ms,
                l.dash_p99_ms,
                l.dash_max_ms,
                l.dash_samples,
                l.removal_p99_ms,
                l.premature_removals,
                l.overdue_removals,
                l.server_cpu_pct,
                rss as f64 / 1e6,
                l.bytes_per_visitor,
                l.harness_cpu_pct,
                if l.held { "" } else { "  (not held)" }
            );
            let collapsed = l.dash_p99_ms > 2_000.0
                || l.http_errors as f64 > 0.05 * (l.offered_rps * secs)
                || l.answered_rps < 0.5 * l.offered_rps;
            result.levels.push(l);
            if collapsed {
                eprintln!(
                    "{}: collapsed at {level} visitors; no higher level",
                    args.server.name
                );
                break;
            }
        }
        ctx.stop.set(true);
        ctx.level.set(0);
    }
    result.loadavg[1] = loadavg();
    let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut out, (json + "\n").as_bytes())
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(())
}
