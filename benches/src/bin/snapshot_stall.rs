//! How much a big site's snapshots stall another site's writes on the SQLite store.
//!
//! `cargo run --release -p tippen-benches --bin snapshot_stall [visitors=10000] [seconds=3]`
//!
//! Site `big` holds `visitors` live visitors; site `small` takes heartbeat-like saves for `seconds`
//! (one visitor re-saved, as a heartbeat does) from one thread, first alone, then while another
//! thread reads `big`'s snapshot (`Store::visitors`, what a dashboard connect, `GET_VISITORS` and
//! `GET /api/visitors` cost) in a loop. Prints the small site's save latency (p50, p99, max) in
//! both phases and the ratios of their p99 and p99.99, measured in one run: the closer to 1, the less one
//! site's snapshots hold the store's lock against another's writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tippen_axum::SqliteStore;
use tippen_benches::{T0, block, record};
use tippen_core::{Config, SiteId, Store};

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// Saves of one visitor of `small` for `secs` seconds, each timed in nanoseconds.
fn saves(store: &SqliteStore, small: &SiteId, secs: f64, cfg: &Config) -> Vec<u64> {
    let mut rec = record(0, T0, cfg);
    let mut version = block(store.save_visitor(small, &rec, None)).expect("insert");
    let mut out = Vec::new();
    let start = Instant::now();
    for i in 0.. {
        if start.elapsed().as_secs_f64() >= secs {
            break;
        }
        rec.last_activity = tippen_core::Timestamp::from_millis(T0 + i as i64);
        let t = Instant::now();
        version = block(store.save_visitor(small, &rec, Some(version))).expect("save");
        out.push(t.elapsed().as_nanos() as u64);
    }
    block(store.remove_visitor(small, &rec.visitor_id, version)).expect("remove");
    out.sort_unstable();
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let visitors: usize = args.next().map_or(10_000, |a| a.parse().expect("visitors"));
    let secs: f64 = args.next().map_or(3.0, |a| a.parse().expect("seconds"));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("stall.db")).expect("open"));
    let cfg = Config::default();
    let (big, small) = (SiteId::from("big"), SiteId::from("small"));
    for i in 0..visitors {
        block(store.save_visitor(&big, &record(i + 1, T0, &cfg), None)).expect("insert");
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(store.flush())
        .expect("flush");

    let alone = saves(&store, &small, secs, &cfg);

    let stop = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(AtomicU64::new(0));
    let reader = {
        let (store, big, stop, snapshots) =
            (store.clone(), big.clone(), stop.clone(), snapshots.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let all = block(store.visitors(&big)).expect("snapshot");
                assert_eq!(all.len(), visitors);
                snapshots.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let contended = saves(&store, &small, secs, &cfg);
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");

    let us = |ns: u64| ns as f64 / 1000.0;
    println!("phase,saves,p50_us,p99_us,p99.99_us,max_us");
    for (name, v) in [("alone", &alone), ("with_snapshots", &contended)] {
        println!(
            "{name},{},{:.1},{:.1},{:.1},{:.1}",
            v.len(),
            us(percentile(v, 0.5)),
            us(percentile(v, 0.99)),
            us(percentile(v, 0.9999)),
            us(*v.last().expect("saves"))
        );
    }
    println!(
        "snapshots of {visitors} visitors taken meanwhile: {}",
        snapshots.load(Ordering::Relaxed)
    );
    for q in [0.99, 0.9999] {
        println!(
            "p{} ratio (with snapshots / alone): {:.1}",
            q * 100.0,
            percentile(&contended, q) as f64 / percentile(&alone, q).max(1) as f64
        );
    }
}
