//! Shared fixtures for tippen's benchmarks (`cargo bench -p tippen-benches`) and the memory
//! figure (`cargo run --release -p tippen-benches --bin memory`).

use std::sync::Arc;

use futures_util::FutureExt;
use tippen_core::presence::{Company, Ping, PingKind, Visibility, VisitorRecord};
use tippen_core::{Config, ManualClock, MemoryStore, SiteId, Store, Timestamp, Tippen};

/// Start of benchmark time.
pub const T0: i64 = 1_729_080_000_000;

/// Runs a future that never suspends (the memory store is synchronous underneath).
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    f.now_or_never()
        .expect("memory store futures complete at once")
}

/// A realistic visitor record: one visible tab, a browser user agent, a referrer.
pub fn record(i: usize, seen_ms: i64, cfg: &Config) -> VisitorRecord {
    let ping = Ping {
        kind: PingKind::PageView,
        tab_id: format!("tab_{T0}_{i:x}"),
        url: format!("https://shop.example.com/products/item-{i}"),
        visibility: Visibility::Visible,
        referrer: Some("https://www.google.com/".to_owned()),
        user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
                .to_owned(),
        ),
        website: "shop.example.com".to_owned(),
        client_timestamp: Some("2025-10-16T12:00:00.000Z".to_owned()),
        page_id: None,
    };
    VisitorRecord::start(
        &format!("visitor_{T0}_{i:09x}"),
        &ping,
        false,
        Company::unknown(),
        Timestamp::from_millis(seen_ms),
        &cfg.presence,
    )
}

/// A service over a memory store holding `n` live visitors of site `bench`; the first `due`
/// of them were last seen a full grace period before the others.
pub fn populated(n: usize, due: usize) -> (Tippen, Arc<MemoryStore>, Arc<ManualClock>, SiteId) {
    let cfg = Config::default();
    let store = Arc::new(MemoryStore::new());
    let site = SiteId::from("bench");
    let grace = cfg.presence.visible_grace.as_millis() as i64;
    for i in 0..n {
        let seen = if i < due { T0 } else { T0 + grace };
        block(store.save_visitor(&site, &record(i, seen, &cfg), None)).expect("insert");
    }
    // At T0 + grace the first `due` records are exactly due, the others live.
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0 + grace)));
    let tippen = Tippen::new(store.clone(), clock.clone(), cfg);
    (tippen, store, clock, site)
}
