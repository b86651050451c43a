//! The open-loop load harness (issue 18): simulated visitors and dashboards against one server
//! at a time — tippen's reference server, bare axum, or the socket.io peer (`benches/peers/`) —
//! and the report that puts their runs side by side.
//!
//! ```text
//! load run --name tippen --kind tippen --http http://127.0.0.1:18901 --pid <server pid> \
//!          --levels 1000,2000,5000 --out results/tippen.json
//! load report --out-dir results results/tippen.json results/bare.json results/socketio.json
//! ```
//!
//! **Visitors** arrive as a Poisson process (rate = level / mean stay, so the level is the mean
//! number of concurrent visitors, Little's law) and stay an exponentially drawn time. Each sends
//! a page view, heartbeats every heartbeat interval, further page views (exponential gaps), and
//! at the end an exit beacon (half of them) or nothing (they vanish). Requests are sent when
//! due whatever the earlier ones became (open loop): a slow server does not slow the offered
//! load, it queues it. Real timings are divided by `--compress` (30 s heartbeats become 3 s at
//! 10) so a run fits in minutes; the servers get the same compressed heartbeat, expiry and
//! linger.
//!
//! **Dashboards** (`--dashboards`) stay connected the whole run. Every page view carries its
//! send time in its URL (`?lt=<µs>`), so the first `new_visitor` / `pageview` broadcast of it
//! a dashboard hears, while it is still the visitor's current page, gives a transition →
//! dashboard latency (a heartbeat overtaken by the next page view repeats the old URL; its
//! rebroadcast is not a late delivery); every removal heard gives a deadline → removal lag (the
//! deadline: last request sent + expiry for a visitor that vanished, exit beacon sent + linger
//! for one that left). A removal of a visitor still live is counted as premature (its
//! heartbeats came too late: the server fell behind).
//!
//! **The server** is sampled from `/proc/<pid>` (RSS, CPU); bytes per live visitor is the RSS
//! growth over the run's start divided by the visitors live. First comes **ingest**: heartbeats
//! of 2,000 known visitors as fast as 32 keep-alive connections carry them (closed loop, a raw
//! HTTP/1.1 client so the client costs little), the figure compared with bare axum; its
//! visitors expire before the first level.
//!
//! Pinning (`taskset`) is the caller's: `scripts/load-bench.sh` puts each server on one core
//! and the harness on the other.

mod hold;
mod ingest;
mod report;
mod sim;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// What the target speaks: the dashboards' transport, and whether it has any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// tippen: `/ws/dashboard?apiKey=` (plain WebSocket, JSON messages).
    Tippen,
    /// The socket.io peer: Engine.IO 4 over WebSocket, events in the `dashboard` room.
    Socketio,
    /// Bare axum: no dashboards, no presence; ingest only.
    Bare,
}

/// The server a run measures (`load run` and `load hold` alike).
#[derive(clap::Args, Debug, Clone)]
pub struct Server {
    /// The server's label in the results.
    #[arg(long)]
    pub name: String,
    /// The server's base URL (`http://127.0.0.1:18901`).
    #[arg(long)]
    pub http: String,
    /// The server's process id, sampled from `/proc` (RSS, CPU).
    #[arg(long)]
    pub pid: u32,
    /// The key every request and dashboard presents (a legacy key: it tracks and opens
    /// dashboards). The reference server's demo key by default.
    #[arg(long, default_value = "demo_api_key")]
    pub key: String,
}

#[derive(Parser)]
#[command(about = "Open-loop load harness: tippen, bare axum and a socket.io peer")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the load levels and the ingest figure against one server; writes its JSON.
    Run(sim::RunArgs),
    /// Holds many live visitors on one server and reads what they cost in RSS; writes its JSON.
    Hold(hold::HoldArgs),
    /// Reads runs' JSON files; writes the SVG plot and the Markdown table into `--out-dir`.
    Report {
        /// Where `load.svg` and `table.md` go.
        #[arg(long)]
        out_dir: PathBuf,
        /// `load hold` results (JSON) for the table of bytes per live visitor.
        #[arg(long = "hold")]
        holds: Vec<PathBuf>,
        /// The runs' JSON files (one per server).
        files: Vec<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(args) => on_one_thread("run", sim::run(args)),
        Cmd::Hold(args) => on_one_thread("hold", hold::hold(args)),
        Cmd::Report {
            out_dir,
            files,
            holds,
        } => {
            if let Err(e) = report::report(&out_dir, &files, &holds) {
                eprintln!("load report failed: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Runs `work` on a single-threaded runtime (the harness's tasks are local); exits 1 with
/// its error.
fn on_one_thread(what: &str, work: impl std::future::Future<Output = Result<(), String>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = tokio::task::LocalSet::new().block_on(&rt, work) {
        eprintln!("load {what} failed: {e}");
        std::process::exit(1);
    }
}
