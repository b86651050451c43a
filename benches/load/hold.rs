//! Bytes per live visitor at scale (`load hold`): one server is made to hold many live
//! visitors at once — a page view each, then a heartbeat each, over keep-alive connections with
//! the raw client of the ingest figure — and its RSS is read from `/proc` before and after.
//! Unlike the levels of `load run`, whose RSS also grows with the visits that closed during the
//! run (history, caches that fill with time), this is what live visitors themselves cost: the
//! figure behind "one box holds 1M live visitors in ≤ 1 GiB".
//!
//! The server must keep a visitor longer than the run takes (its real 60 s expiry is enough
//! for 100,000 visitors at a few thousand requests per second) and must not limit visitors or
//! request rates.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::Server;
use crate::ingest::{answer, request};
use crate::sim::{loadavg, proc_sample};

/// `load hold`'s arguments.
#[derive(clap::Args, Debug)]
pub struct HoldArgs {
    /// The server measured.
    #[command(flatten)]
    pub server: Server,
    /// Live visitors to hold.
    #[arg(long, default_value_t = 100_000)]
    pub visitors: usize,
    /// Keep-alive connections the requests share.
    #[arg(long, default_value_t = 32)]
    pub conns: usize,
    /// Visitor sockets to open once the visitors are held: tippen's `/ws/visitor`, one for
    /// each of the first `sockets` visitors, as the tracker keeps one open per tab (0: none;
    /// the socket.io peer has no visitor channel).
    #[arg(long, default_value_t = 0)]
    pub sockets: usize,
    /// Where the JSON goes.
    #[arg(long)]
    pub out: PathBuf,
}

/// What `load hold` measured.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HoldResult {
    /// The server's name.
    pub name: String,
    /// Visitors asked for.
    pub visitors: usize,
    /// Page views answered 200: the visitors held.
    pub held: u64,
    /// Answers other than 200 (page views and heartbeats).
    pub errors: u64,
    /// RSS before the first visitor (bytes).
    pub rss_before: u64,
    /// RSS once every visitor had its page view (bytes).
    pub rss_created: u64,
    /// RSS once every visitor had a heartbeat too, the larger of right after and a second
    /// later (a write-behind store has written them by then) (bytes).
    pub rss_held: u64,
    /// (`rss_held` − `rss_before`) / `held`.
    pub bytes_per_visitor: f64,
    /// RSS once the first half of the visitors were live (page view and heartbeat each), the
    /// larger of right after and a second later (bytes); 0 in results of older harnesses.
    #[serde(default)]
    pub rss_half: u64,
    /// Page views answered 200 in the first half.
    #[serde(default)]
    pub held_half: u64,
    /// (`rss_held` − `rss_half`) / the visitors of the second half: what one more live
    /// visitor costs once the process's fixed memory (a full page cache, buffers) is spent.
    /// 0 in results of older harnesses.
    #[serde(default)]
    pub marginal_bytes_per_visitor: f64,
    /// Visitor sockets opened (`--sockets`); 0 when none were asked for.
    #[serde(default)]
    pub sockets: usize,
    /// (RSS with the sockets open − RSS before opening them) / `sockets`: what the tracker's
    /// open visitor socket adds to a live visitor. 0 when none were opened.
    #[serde(default)]
    pub bytes_per_socket: f64,
    /// Page views answered per second while creating.
    pub create_rps: f64,
    /// Heartbeats answered per second.
    pub heartbeat_rps: f64,
    /// `/proc/loadavg` at the start and at the end.
    pub loadavg: [String; 2],
}

/// Sends `requests[i]` for every `i` in `c, c + conns, …` on one connection; counts answers.
async fn send_share(
    host: &str,
    c: usize,
    conns: usize,
    requests: &[Vec<u8>],
    ok: &Cell<u64>,
    errors: &Cell<u64>,
) -> Result<(), String> {
    let mut conn = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(8192);
    for request in requests.iter().skip(c).step_by(conns) {
        conn.write_all(request).await.map_err(|e| e.to_string())?;
        let counter = if answer(&mut conn, &mut buf).await? == 200 {
            ok
        } else {
            errors
        };
        counter.set(counter.get() + 1);
    }
    Ok(())
}

/// Every request once, over `conns` connections; (answered 200, others, seconds).
async fn send_all(
    host: &str,
    conns: usize,
    requests: Rc<Vec<Vec<u8>>>,
) -> Result<(u64, u64, f64), String> {
    let ok = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (host, requests) = (host.to_owned(), requests.clone());
        let (ok, errors) = (ok.clone(), errors.clone());
        tasks.push(tokio::task::spawn_local(async move {
            send_share(&host, c, conns, &requests, &ok, &errors).await
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((ok.get(), errors.get(), start.elapsed().as_secs_f64()))
}

/// How long [`open_sockets`] lets the server settle before reading its RSS.
const SETTLE: Duration = Duration::from_secs(12);

/// Opens a visitor socket for each of visitors `0..n` (over `conns` concurrent openers), reads
/// the RSS before and once they are open, each time [`SETTLE`] after the last request (an
/// allocator keeps pages freed by the requests a while: jemalloc's decay is 10 s);
/// (sockets open, bytes per socket). The sockets close when it returns.
async fn open_sockets(
    ws_base: &str,
    key: &str,
    pid: &str,
    n: usize,
    conns: usize,
) -> Result<(usize, f64), String> {
    tokio::time::sleep(SETTLE).await;
    let (_, before) = proc_sample(pid);
    let open = Rc::new(RefCell::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (open, ws_base, key) = (open.clone(), ws_base.to_owned(), key.to_owned());
        tasks.push(tokio::task::spawn_local(async move {
            for i in (c..n).step_by(conns) {
                let url = format!(
                    "{ws_base}/ws/visitor?apiKey={key}&visitorId=visitor_1729080000000_{i:07}"
                );
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .map_err(|e| format!("visitor socket {i}: {e}"))?;
                open.borrow_mut().push(ws);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    tokio::time::sleep(SETTLE).await;
    let (_, after) = proc_sample(pid);
    let opened = open.borrow().len();
    let bytes = after.saturating_sub(before) as f64 / opened.max(1) as f64;
    Ok((opened, bytes))
}

/// Runs `load hold`: writes the JSON and prints a line.
pub async fn hold(args: HoldArgs) -> Result<(), String> {
    let host = args
        .server
        .http
        .strip_prefix("http://")
        .ok_or("load hold needs an http:// URL")?
        .trim_end_matches('/')
        .to_owned();
    let pid = args.server.pid.to_string();
    let load_start = loadavg();
    let (_, rss_before) = proc_sample(&pid);
    if rss_before == 0 {
        return Err(format!("no process {pid} to sample"));
    }
    let build = |event: &str, visitors: std::ops::Range<usize>| -> Rc<Vec<Vec<u8>>> {
        Rc::new(
            visitors
                .map(|i| request(&host, &args.server.key, event, i))
                .collect(),
        )
    };
    // In two halves, each a page view per visitor then a heartbeat per visitor, the RSS read
    // after each: the second half's growth is what one more visitor costs. (With real
    // timings the first half stays live: its heartbeats are seconds old when the second half
    // ends.)
    let half = args.visitors / 2;
    let mut totals = [0u64; 4];
    let mut secs = [0f64; 2];
    let mut rss_created = 0;
    let mut settled = Vec::new();
    for part in [0..half, half..args.visitors] {
        let (ok, errors, s) = send_all(&host, args.conns, build("pageview", part.clone())).await?;
        (totals[0], totals[1], secs[0]) = (totals[0] + ok, totals[1] + errors, secs[0] + s);
        rss_created = proc_sample(&pid).1;
        let (ok, errors, s) = send_all(&host, args.conns, build("heartbeat", part)).await?;
        (totals[2], totals[3], secs[1]) = (totals[2] + ok, totals[3] + errors, secs[1] + s);
        let (_, right_after) = proc_sample(&pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, later) = proc_sample(&pid);
        settled.push((totals[0], right_after.max(later)));
    }
    let [held, create_errors, beats, beat_errors] = totals;
    let (sockets, bytes_per_socket) = if args.sockets > 0 {
        let ws_base = format!("ws://{host}");
        open_sockets(
            &ws_base,
            &args.server.key,
            &pid,
            args.sockets.min(held as usize),
            args.conns,
        )
        .await?
    } else {
        (0, 0.0)
    };
    let [create_secs, beat_secs] = secs;
    let (held_half, rss_half) = settled[0];
    let rss_held = settled[1].1;
    let result = HoldResult {
        name: args.server.name,
        visitors: args.visitors,
        held,
        errors: create_errors + beat_errors,
        rss_before,
        rss_created,
        rss_held,
        bytes_per_visitor: rss_held.saturating_sub(rss_before) as f64 / held.max(1) as f64,
        rss_half,
        held_half,
        marginal_bytes_per_visitor: rss_held.saturating_sub(rss_half) as f64
            / held.saturating_sub(held_half).max(1) as f64,
        sockets,
        bytes_per_socket,
        create_rps: held as f64 / create_secs,
        heartbeat_rps: beats as f64 / beat_secs,
        loadavg: [load_start, loadavg()],
    };
    eprintln!(
        "{}: {} of {} visitors held ({} errors); RSS {:.1} → {:.1} (half) → {:.1} (created) → {:.1} MB (held): {:.0} B per live visitor, {:.0} B each over the second half; {:.0} page views/s, {:.0} heartbeats/s",
        result.name,
        result.held,
        result.visitors,
        result.errors,
        rss_before as f64 / 1e6,
        result.rss_half as f64 / 1e6,
        rss_created as f64 / 1e6,
        rss_held as f64 / 1e6,
        result.bytes_per_visitor,
        result.marginal_bytes_per_visitor,
        result.create_rps,
        result.heartbeat_rps
    );
    if sockets > 0 {
        eprintln!(
            "{}: {sockets} visitor sockets open: {bytes_per_socket:.0} B each",
            result.name
        );
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(())
}
