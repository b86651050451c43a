//! Core benchmarks: heartbeat ingest and sweep cost.
//!
//! `cargo bench -p tippen-benches --bench core`
//!
//! - `heartbeat/*`: one heartbeat for a random one of 10k live visitors, through the whole HTTP
//!   contract (`Tippen::handle`: routing, key check, JSON parse, store) and through
//!   `Tippen::track` alone.
//! - `sweep/n=…/k=…`: one sweep removing k expired visitors among n live ones. The claim: the
//!   cost tracks k, not n (the store's deadline index), so `sweep/…/k=100` is flat in n.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tippen_benches::{T0, block, populated, record};
use tippen_core::api::RequestContext;
use tippen_core::presence::{Ping, PingKind, Visibility};
use tippen_core::{Config, Site, Store};

fn heartbeat(c: &mut Criterion) {
    let (tippen, _store, _clock, site) = populated(10_000, 0);
    block(tippen.put_site(&Site::legacy("bench", "Bench", "bench_key"))).unwrap();
    let mut g = c.benchmark_group("heartbeat");
    let bodies: Vec<Bytes> = (0..10_000)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"event":"heartbeat","visitor":{{"visitorId":"visitor_{T0}_{i:09x}","tabId":"tab_{T0}_{i:x}","url":"https://shop.example.com/products/item-{i}","timestamp":"2025-10-16T12:00:00Z","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","visibility":"visible"}},"website":"shop.example.com"}}"#
            ))
        })
        .collect();
    let ctx = RequestContext::default();
    let mut i = 0usize;
    g.bench_function("http_contract", |b| {
        b.iter(|| {
            i = (i + 7919) % bodies.len();
            let req = http::Request::post("/track/visitor")
                .header("X-Tippen-API-Key", "bench_key")
                .body(bodies[i].clone())
                .unwrap();
            black_box(block(tippen.handle(req, &ctx)))
        })
    });
    let pings: Vec<(String, Ping)> = (0..10_000)
        .map(|i| {
            (
                format!("visitor_{T0}_{i:09x}"),
                Ping {
                    kind: PingKind::Heartbeat,
                    tab_id: format!("tab_{T0}_{i:x}"),
                    url: format!("https://shop.example.com/products/item-{i}"),
                    visibility: Visibility::Visible,
                    referrer: None,
                    user_agent: None,
                    website: "shop.example.com".to_owned(),
                    client_timestamp: None,
                    page_id: None,
                },
            )
        })
        .collect();
    g.bench_function("track", |b| {
        b.iter(|| {
            i = (i + 7919) % pings.len();
            let (id, ping) = &pings[i];
            black_box(block(tippen.track(&site, id, ping, None)).unwrap())
        })
    });
    g.finish();
}

fn sweep(c: &mut Criterion) {
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    let cfg = Config::default();
    let mut cases: Vec<(usize, usize)> = Vec::new();
    for n in [10_000usize, 100_000, 1_000_000] {
        cases.push((n, 100));
        cases.push((n, n / 100));
        cases.push((n, n / 10));
    }
    cases.sort_unstable();
    cases.dedup();
    for (n, k) in cases {
        let (mut tippen, store, _clock, site) = populated(n, k);
        let mut config = tippen.config().clone();
        config.limits.sweep_batch = usize::MAX;
        tippen = tippen_core::Tippen::new(store.clone(), _clock.clone(), config);
        g.bench_with_input(
            BenchmarkId::new(format!("n={n}"), format!("k={k}")),
            &k,
            |b, &k| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let out = block(tippen.sweep(&site)).unwrap();
                        total += start.elapsed();
                        assert_eq!(out.messages.len(), k, "swept exactly the due visitors");
                        // Put the k visitors back (not timed).
                        for i in 0..k {
                            block(store.save_visitor(&site, &record(i, T0, &cfg), None)).unwrap();
                        }
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, heartbeat, sweep);
}
criterion_main!(group::benches);
