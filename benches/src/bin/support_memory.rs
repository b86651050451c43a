//! Memory of the support triggers, measured with a counting global allocator: bytes per user
//! in the memory store (typical and worst case), that one user's memory stays bounded however
//! many events they send, and the time to ingest a batch of 50 events.
//!
//! `cargo run --release -p tippen-benches --bin support_memory`

use std::alloc::System;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap::Cap;
use tippen_benches::{T0, block};
use tippen_core::protocol::{ActivityEvent, SubscriptionTier};
use tippen_core::support::UserIdentity;
use tippen_core::{Config, ManualClock, MemoryStore, Site, SiteId, Timestamp, Tippen};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// A realistic batch: a route, clicks, a page time, an error, a custom event.
fn batch(n: usize, i: usize) -> Vec<ActivityEvent> {
    (0..n)
        .map(|k| match k % 5 {
            0 => ActivityEvent::Route {
                route: format!("/app/projects/{}", (i + k) % 7),
                timestamp: T0,
            },
            1 | 2 => ActivityEvent::Click {
                element: Some("button#save.primary".into()),
                route: Some(format!("/app/projects/{}", (i + k) % 7)),
                timestamp: T0,
            },
            3 => ActivityEvent::Error {
                message: Some("TypeError: cannot read properties of undefined".into()),
                route: None,
                timestamp: T0,
            },
            _ => ActivityEvent::Custom {
                name: "feature_used".into(),
                data: Some(serde_json::json!({"feature": "export"})),
                timestamp: T0,
            },
        })
        .collect()
}

fn service() -> (Tippen, Arc<ManualClock>, SiteId) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let tippen = Tippen::new(
        Arc::new(MemoryStore::new()),
        clock.clone(),
        Config::default(),
    );
    block(tippen.put_site(&Site::new("bench", "Bench", "pk", "sk"))).expect("site");
    (tippen, clock, SiteId::from("bench"))
}

fn main() {
    let identity = UserIdentity {
        email: Some("someone@acme.example".into()),
        tier: Some(SubscriptionTier::FreeTrial),
        visitor_id: None,
    };

    println!("users,events_per_user,bytes_total,bytes_per_user");
    for (n, batches) in [(10_000usize, 1usize), (10_000, 10)] {
        let (tippen, clock, site) = service();
        let before = ALLOCATOR.allocated();
        for round in 0..batches {
            for u in 0..n {
                let user = format!("user_{u:06}");
                let events = batch(10, round);
                block(tippen.record_activity(&site, &user, &identity, &events)).expect("record");
            }
            clock.advance(Duration::from_secs(1));
        }
        let used = ALLOCATOR.allocated() - before;
        println!("{n},{},{used},{}", batches * 10, used / n);
    }

    println!();
    println!("one_user_events,bytes_held");
    let (tippen, clock, site) = service();
    let before = ALLOCATOR.allocated();
    let mut sent = 0;
    for checkpoint in [100usize, 1_000, 10_000, 100_000] {
        while sent < checkpoint {
            block(tippen.record_activity(&site, "heavy", &identity, &batch(50, sent)))
                .expect("record");
            sent += 50;
            clock.advance(Duration::from_millis(100));
        }
        println!("{sent},{}", ALLOCATOR.allocated() - before);
    }

    println!();
    let (tippen, clock, site) = service();
    let rounds = 20_000;
    let batches: Vec<_> = (0..rounds).map(|i| batch(50, i)).collect();
    let t0 = Instant::now();
    for (i, b) in batches.iter().enumerate() {
        block(tippen.record_activity(&site, &format!("user_{:04}", i % 1000), &identity, b))
            .expect("record");
        clock.advance(Duration::from_millis(10));
    }
    let per = t0.elapsed() / rounds as u32;
    println!("batch_of_50_ingest_us,{:.1}", per.as_secs_f64() * 1e6);
}
