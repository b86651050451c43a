//! Visit history figures:
//!
//! 1. store calls per closed visit through the service (three page views, a beacon, the
//!    sweep), counted with a wrapper around the memory history;
//! 2. on SQLite (`SqliteHistory`, a temporary file): `N` visits spread over 30 days (default
//!    1,000,000; the first argument overrides), three pages on average, 30 % identified among
//!    2,000 companies, stored with `put_visit` and their rollups folded with the core's
//!    `Rollup::fold`; then stored bytes per visit, and p50/p99 of the service's
//!    `/api/companies?window=30d` and `/api/analytics?window=30d` answers (their JSON
//!    included).
//!
//! `cargo run --release -p tippen-benches --bin history [N]`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tippen_axum::{SqliteHistory, SqliteStore};
use tippen_benches::{T0, block};
use tippen_core::history::{
    Device, DeviceClass, Fold, HistoryStore, MemoryHistory, PageVisit, Place, PutVisit, Rollup,
    RollupKey, RollupQuery, Utm, Visit, VisitCompany, VisitQuery, Window,
};
use tippen_core::presence::{EnrichmentSource, Ping, PingKind, RemovalReason, Visibility};
use tippen_core::{
    Config, ManualClock, MemoryStore, SiteId, StoreError, Timestamp, Tippen, Version, Versioned,
};

#[derive(Default)]
struct Counts {
    put_visit: AtomicU64,
    visits: AtomicU64,
    rollup: AtomicU64,
    save_rollup: AtomicU64,
}

struct Counting {
    inner: MemoryHistory,
    n: Counts,
}

fn tick(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl HistoryStore for Counting {
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        tick(&self.n.put_visit);
        self.inner.put_visit(site, visit).await
    }
    async fn visit(&self, site: &SiteId, id: &str) -> Result<Option<Visit>, StoreError> {
        self.inner.visit(site, id).await
    }
    async fn visits(&self, site: &SiteId, q: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        tick(&self.n.visits);
        self.inner.visits(site, q).await
    }
    async fn erase_visitor(&self, site: &SiteId, v: &str) -> Result<Vec<Visit>, StoreError> {
        self.inner.erase_visitor(site, v).await
    }
    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        tick(&self.n.rollup);
        self.inner.rollup(site, key).await
    }
    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        tick(&self.n.save_rollup);
        self.inner.save_rollup(site, rollup, expected).await
    }
    async fn rollups(&self, site: &SiteId, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        self.inner.rollups(site, q).await
    }
    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge(site, before).await
    }
}

fn ping(kind: PingKind, path: &str) -> Ping {
    Ping {
        kind,
        tab_id: "t".into(),
        url: format!("https://shop.example.com{path}"),
        visibility: Visibility::Visible,
        referrer: None,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36".into()),
        website: "shop.example.com".into(),
        client_timestamp: None,
        page_id: None,
    }
}

/// Store calls per visit of three pages and 10 heartbeats, closed by a beacon and the sweep.
fn calls_per_visit() {
    let visits = 1000u64;
    let history = Arc::new(Counting {
        inner: MemoryHistory::new(),
        n: Counts::default(),
    });
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let config = Config::default();
    let linger = config.presence.leave_linger;
    let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock.clone(), config)
        .with_history(history.clone());
    let site = SiteId::from("bench");
    for i in 0..visits {
        let id = format!("visitor_{i}");
        for path in ["/", "/pricing", "/docs"] {
            block(tippen.track(&site, &id, &ping(PingKind::PageView, path), None)).expect("track");
            for _ in 0..10 / 3 + 1 {
                clock.advance(Duration::from_secs(3));
                block(tippen.track(&site, &id, &ping(PingKind::Heartbeat, path), None))
                    .expect("heartbeat");
            }
        }
        block(tippen.leave(&site, &id, Some("t"))).expect("leave");
    }
    clock.advance(linger + Duration::from_secs(1));
    while block(tippen.sweep(&site))
        .expect("sweep")
        .deadline
        .is_some_and(|d| d <= tippen.now())
    {}
    let n = &history.n;
    let per = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / visits as f64;
    println!("calls per closed visit (3 page views, 12 heartbeats, a beacon; anonymous visitor):");
    println!(
        "  writes: put_visit {:.2}, save_rollup {:.2}; reads: visits (numbering) {:.2}, rollup {:.2}",
        per(&n.put_visit),
        per(&n.save_rollup),
        per(&n.visits),
        per(&n.rollup)
    );
    println!("  (an identified visit adds one rollup read and write for its company's day)");
}

fn synthetic_visit(site: &SiteId, i: u64, now: i64) -> Visit {
    // A cheap deterministic spread (xorshift).
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let span = 30 * 24 * 3_600_000i64;
    let start = now - 1 - (next() % span as u64) as i64;
    let pages_n = 1 + (next() % 5) as usize;
    let pages: Vec<PageVisit> = (0..pages_n)
        .map(|p| PageVisit {
            path: format!("/products/item-{}", next() % 200).into(),
            at: Timestamp::from_millis(start + p as i64 * 20_000),
            duration_ms: 20_000,
        })
        .collect();
    let company = (next() % 10 < 3).then(|| {
        let c = next() % 2000;
        VisitCompany {
            name: format!("Company {c}"),
            domain: Some(format!("company{c}.example")),
            industry: Some("Software".into()),
            size: Some("51-200".into()),
            revenue: Some("$10M-$50M".into()),
            source: EnrichmentSource::Provider,
        }
    });
    let visitor = format!("visitor_{:x}", next() % 400_000);
    let end = start + pages_n as i64 * 20_000;
    Visit {
        site: site.clone(),
        visit_id: tippen_core::history::visit_id(&visitor, Timestamp::from_millis(start)),
        visitor_id: visitor,
        started_at: Timestamp::from_millis(start),
        ended_at: Timestamp::from_millis(end),
        duration_ms: (end - start) as u64,
        landing_page: pages[0].path.to_string(),
        exit_page: pages[pages_n - 1].path.to_string(),
        page_views: pages_n as u64,
        pages,
        more_pages: 0,
        referrer: (next() % 2 == 0).then(|| "https://www.google.com/".to_owned()),
        utm: Utm {
            source: (next() % 4 == 0).then(|| "newsletter".to_owned()),
            ..Utm::default()
        },
        device: Device {
            browser: "Chrome".into(),
            os: "Windows 10".into(),
            class: DeviceClass::Desktop,
        },
        place: Place::new(Some(["US", "DE", "FR", "GB"][(next() % 4) as usize]), None),
        company,
        is_bot: false,
        visit_number: 1 + (next() % 3) as u32,
        invites: Vec::new(),
        end_reason: RemovalReason::Inactive,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    calls_per_visit();

    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("tippen-history-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("tippen.db");
    // The live store makes the file as the reference server has it.
    drop(SqliteStore::open(&db).expect("live store"));
    let history = Arc::new(SqliteHistory::open(&db).expect("history"));
    let site = SiteId::from("bench");
    let now = T0 + 40 * 24 * 3_600_000;

    // One by one (the service's path: a transaction per closed visit), for the write rate.
    let single = 2_000.min(n);
    let t = Instant::now();
    let mut rollups: HashMap<RollupKey, Rollup> = HashMap::new();
    let mut fold = |visit: &Visit, put: PutVisit| {
        if put == PutVisit::Inserted {
            for key in RollupKey::of_visit(visit) {
                rollups
                    .entry(key.clone())
                    .or_insert_with(|| Rollup::new(key))
                    .fold(visit, Fold::Add);
            }
        }
    };
    for i in 0..single {
        let visit = synthetic_visit(&site, i, now);
        let put = block(history.put_visit(&site, &visit)).expect("put");
        fold(&visit, put);
    }
    let one_by_one = t.elapsed();
    // The rest in batches (a bulk load: what is measured below are the reads).
    let t = Instant::now();
    let mut i = single;
    while i < n {
        let batch: Vec<Visit> = (i..(i + 10_000).min(n))
            .map(|j| synthetic_visit(&site, j, now))
            .collect();
        let puts = history.put_visits(&site, &batch).expect("put batch");
        for (v, put) in batch.iter().zip(puts) {
            fold(v, put);
        }
        i += batch.len() as u64;
    }
    let bulk = t.elapsed();
    println!(
        "\nSQLite put_visit, one transaction each: {single} in {:.2} s ({:.0}/s); bulk load of the other {} in {:.1} s",
        one_by_one.as_secs_f64(),
        single as f64 / one_by_one.as_secs_f64(),
        n - single,
        bulk.as_secs_f64()
    );
    for r in rollups.values() {
        block(history.save_rollup(&site, r, None)).expect("save rollup");
    }
    println!("{n} visits over 30 days, {} rollups", rollups.len());
    let file = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum::<u64>();
    match history.stored_bytes() {
        Some(b) => println!(
            "stored bytes per visit: {} (visits table and its indexes, dbstat); file {} B/visit",
            b / n,
            file / n
        ),
        None => println!(
            "stored bytes per visit: file {} B/visit (no dbstat)",
            file / n
        ),
    }

    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(now)));
    let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock, Config::default())
        .with_history(history.clone());
    let window = Window::parse("30d").expect("window");
    for (what, f) in [
        (
            "GET /api/companies?window=30d",
            Box::new(|| {
                // The API's default page: the 100 companies with most visits.
                let c = block(tippen.history_companies(&site, &window, 100)).expect("companies");
                serde_json::to_vec(&c).expect("json").len()
            }) as Box<dyn Fn() -> usize>,
        ),
        (
            "GET /api/analytics?window=30d",
            Box::new(|| {
                let a = block(tippen.history_analytics(&site, &window)).expect("analytics");
                serde_json::to_vec(&a).expect("json").len()
            }),
        ),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..30 {
            let t = Instant::now();
            bytes = f();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{what}: p50 {:.1} ms, p99 {:.1} ms ({} runs, answer {bytes} B)",
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
            times.len()
        );
    }
    drop(tippen);
    drop(history);
    let _ = std::fs::remove_dir_all(&dir);
}
