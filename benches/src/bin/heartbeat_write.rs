//! What a heartbeat costs a Redis store, written as a save and as a touch
//! ([`Store::touch_visitor`]), in one run: each operation is what a heartbeat does (read the
//! visitor, move its tab's `last_seen` and deadline, write conditionally on the version read),
//! on a record the size of a real one (an identified company, a user agent, a long URL, an
//! open visit). Batches of saves and touches alternate, so both meet the same machine.
//! Prints p50 / p99 per operation in microseconds and the bytes Redis received per
//! operation (`INFO stats`' `total_net_input_bytes`, read and write together).
//!
//! `heartbeat_write <redis url> <count>` (a `redis-server` must be running there; it uses the
//! namespace `bench_<pid>` and deletes nothing else).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, Config as RedisConfig};

use tippen_core::presence::{Company, EnrichmentSource, Ping, PingKind, Visibility};
use tippen_core::{Config, ManualClock, SiteId, Store, Timestamp, Tippen};
use tippen_redis::{RedisOptions, RedisStore};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, count] = &args[..] else {
        eprintln!("usage: heartbeat_write <redis url> <count>");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("count");
    let namespace = format!("bench_{}", std::process::id());
    let store = Arc::new(
        RedisStore::connect_with(url, RedisOptions::default().with_namespace(namespace))
            .await
            .expect("connect to Redis"),
    );
    let site = SiteId::from("bench");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_729_080_000_000)));
    let tippen = Tippen::new(store.clone(), clock.clone(), Config::default());
    let ping = Ping {
        kind: PingKind::PageView,
        tab_id: "tab_1".to_owned(),
        url: "https://www.example.com/pricing/enterprise?utm_source=newsletter&utm_medium=email"
            .to_owned(),
        visibility: Visibility::Visible,
        referrer: Some("https://www.google.com/".to_owned()),
        user_agent: Some(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
                .to_owned(),
        ),
        website: "www.example.com".to_owned(),
        client_timestamp: Some("2024-10-16T12:00:00.000Z".to_owned()),
        page_id: Some("page_1729080000000_k3j4h5".to_owned()),
    };
    tippen
        .track(&site, "visitor_bench", &ping, None)
        .await
        .expect("page view");
    let mut read = store
        .visitor(&site, "visitor_bench")
        .await
        .expect("read")
        .expect("stored");
    read.value.company = Company {
        name: "Acme Corporation".to_owned(),
        location: "Zurich, Zurich, CH".to_owned(),
        domain: Some("acme.example".to_owned()),
        industry: Some("Computer Software".to_owned()),
        revenue: Some("$10M-$50M".to_owned()),
        employees: Some("201-500".to_owned()),
        enriched_location: Some("Zurich, Switzerland".to_owned()),
        source: EnrichmentSource::Provider,
        is_cached: false,
        enriched_at: Some(clock_now(&tippen)),
    }
    .shared();
    store
        .save_visitor(&site, &read.value, Some(read.version))
        .await
        .expect("save the identified visitor");
    let record_bytes = serde_json::to_string(&read.value).expect("json").len();
    let stats = fred::prelude::Builder::from_config(RedisConfig::from_url(url).expect("url"))
        .build()
        .expect("stats client");
    stats.init().await.expect("stats connection");
    let (mut save_in, mut touch_in) = (0u64, 0u64);

    let mut saves = Vec::with_capacity(count);
    let mut touches = Vec::with_capacity(count);
    let batch = 100;
    let mut n = 0;
    while saves.len() < count {
        for touch in [false, true] {
            let before = input_bytes(&stats).await;
            for _ in 0..batch {
                n += 1;
                let started = Instant::now();
                let current = store
                    .visitor(&site, "visitor_bench")
                    .await
                    .expect("read")
                    .expect("stored");
                let mut next = current.value.clone();
                let at = Timestamp::from_millis(1_729_080_000_000 + n * 1_000);
                next.last_activity = at;
                next.tabs[0].last_seen = at;
                next.deadline = at.plus(Duration::from_secs(90));
                if touch {
                    store
                        .touch_visitor(&site, &next, current.version)
                        .await
                        .expect("touch");
                    touches.push(started.elapsed());
                } else {
                    store
                        .save_visitor(&site, &next, Some(current.version))
                        .await
                        .expect("save");
                    saves.push(started.elapsed());
                }
            }
            // Less the INFO command itself, the same for both.
            let sent = input_bytes(&stats).await - before;
            if touch {
                touch_in += sent;
            } else {
                save_in += sent;
            }
        }
    }
    let save_bytes = save_in as f64 / saves.len() as f64;
    let touch_bytes = touch_in as f64 / touches.len() as f64;
    let (save_p50, save_p99) = percentiles(&mut saves);
    let (touch_p50, touch_p99) = percentiles(&mut touches);
    println!(
        "heartbeat write on Redis, read + conditional write, {count} each, one connection:\n\
         record: {record_bytes} bytes of JSON\n\
         save : p50 {save_p50:.0} us, p99 {save_p99:.0} us, {save_bytes:.0} bytes to Redis per heartbeat\n\
         touch: p50 {touch_p50:.0} us, p99 {touch_p99:.0} us, {touch_bytes:.0} bytes to Redis per heartbeat\n\
         touch/save: p50 {:.2}, p99 {:.2}, bytes {:.2}",
        touch_p50 / save_p50,
        touch_p99 / save_p99,
        touch_bytes / save_bytes
    );
    store.remove_site(&site).await.expect("clean up");
}

/// Redis's `total_net_input_bytes`.
async fn input_bytes(client: &fred::clients::Client) -> u64 {
    let info: String = client
        .info(Some(fred::types::InfoKind::Stats))
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_net_input_bytes in INFO stats")
}

fn clock_now(tippen: &Tippen) -> Timestamp {
    tippen.now()
}

/// p50 and p99 in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}
