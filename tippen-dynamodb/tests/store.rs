//! The DynamoDB store against moto (a real DynamoDB API server on loopback): the core's
//! store conformance suite, and a concurrency test through the core (many tasks updating
//! one visitor with conditional writes; no update lost); the history store's suite in the
//! same table, and the history items' TTL, pointers and purge.
//!
//! Needs `TIPPEN_DYNAMODB_ENDPOINT` (for example `http://127.0.0.1:5100`, a running
//! `moto_server`); `scripts/test-lambda.sh` starts moto and runs these with
//! `--features moto-tests`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use futures_util::future::join_all;
use tippen_core::history::{HistoryStore, PutVisit, VisitFilter, VisitQuery};
use tippen_core::presence::{Ping, PingKind, Visibility};
use tippen_core::testkit::sample_visit;
use tippen_core::{Config, ManualClock, SiteId, Store, Timestamp, Tippen};
use tippen_dynamodb::{DynamoHistory, DynamoStore, SweepClaim, SweepEnd};

async fn client() -> aws_sdk_dynamodb::Client {
    let endpoint = std::env::var("TIPPEN_DYNAMODB_ENDPOINT").expect(
        "TIPPEN_DYNAMODB_ENDPOINT must name a running moto_server (scripts/test-lambda.sh)",
    );
    let sdk = tippen_dynamodb::sdk_config().await;
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

async fn store(table: &str) -> DynamoStore {
    let store = DynamoStore::new(client().await, table);
    store.create_table().await.expect("create table");
    store
}

/// A history store in `table` (created when missing, as the live store's).
async fn history(table: &str) -> DynamoHistory {
    let history = DynamoHistory::new(client().await, table);
    history.create_table().await.expect("create table");
    history
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_passes_the_store_suite() {
    let store = Arc::new(store("tippen-suite").await);
    tippen_core::testkit::run_store_suite(store, &unique("suite")).await;
}

/// With the site cache on (as the functions run), a key a put dropped (a revoked member
/// token, a rotated-out key) finds no site in the process that put it, and a kept one finds
/// the new site.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_with_a_site_cache_forgets_dropped_keys_at_once() {
    let store = store("tippen-suite")
        .await
        .with_site_cache(Duration::from_secs(600));
    tippen_core::testkit::credentials_find_their_site(&store, &unique("cache")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_history_passes_the_history_suite() {
    // The live store suite's table: history shares it (single-table design).
    let history = Arc::new(history("tippen-suite").await);
    tippen_core::testkit::run_history_suite(history, &unique("hist")).await;
}

/// The raw items of partition `pk`: (sort key, ttl).
async fn partition(table: &str, pk: &str) -> Vec<(String, Option<i64>)> {
    let out = client()
        .await
        .query()
        .table_name(table)
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
        .send()
        .await
        .expect("query");
    out.items()
        .iter()
        .map(|item| {
            let sk = item["sk"].as_s().expect("sk").clone();
            let ttl = item
                .get("ttl")
                .map(|t| t.as_n().expect("ttl").parse().expect("n"));
            (sk, ttl)
        })
        .collect()
}

/// An audit entry is one item sorted by its time, expiring (TTL) as long after it as the
/// write's retention boundary lies before it; two entries of one millisecond are two items.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_items_sort_by_time_and_expire_after_the_retention() {
    use tippen_core::audit::{Actor, AuditEntry, Outcome};
    let table = "tippen-suite";
    let store = store(table).await;
    let site = SiteId(unique("audit"));
    let at = 1_729_080_000_000_i64;
    let retention_ms = 365 * 86_400_000_i64;
    let entry = AuditEntry {
        at: Timestamp::from_millis(at),
        site: site.clone(),
        actor: Actor::operator(),
        action: "site.update".to_owned(),
        target: None,
        address: None,
        outcome: Outcome::Done,
    };
    for _ in 0..2 {
        store
            .log_audit(&entry, Timestamp::from_millis(at - retention_ms))
            .await
            .expect("log_audit");
    }
    let items = partition(table, &format!("AUDIT#{site}")).await;
    assert_eq!(items.len(), 2, "two entries of one millisecond: {items:?}");
    for (sk, ttl) in items {
        assert!(sk.starts_with(&format!("{at:015}#")), "{sk}");
        assert_eq!(ttl, Some((at + retention_ms) / 1000), "{sk}");
    }
    assert_eq!(
        store
            .audit_log(&site, Timestamp::from_millis(at), 10)
            .await
            .expect("audit_log"),
        vec![entry.clone(), entry]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_items_expire_with_the_retention_and_leave_no_stale_pointer() {
    let table = "tippen-history-items";
    let retention = Duration::from_secs(3600);
    let site = SiteId(unique("items"));
    let store = history(table).await.with_retention(&site, retention);
    let start = 1_729_080_000_000;
    let mut visit = sample_visit(&site, "v", start, Some("Acme.example"), Some("DE"), &["/"]);
    assert_eq!(
        store.put_visit(&site, &visit).await.unwrap(),
        PutVisit::Inserted
    );
    // Every item of the visit expires when the retention purge would delete it.
    let ttl = start / 1000 + 3600 + 1;
    for pk in [
        format!("HV#{site}"),
        format!("HI#{site}#{}", visit.visit_id),
        format!("HU#{site}#v"),
        format!("HC#{site}#acme.example"),
    ] {
        let items = partition(table, &pk).await;
        assert_eq!(items.len(), 1, "{pk}: {items:?}");
        assert_eq!(items[0].1, Some(ttl), "{pk}: ttl = start + retention");
    }
    // The same visit with another company (over 400 bytes): the old company's pointer goes.
    let long = format!("{}.example", "x".repeat(500));
    visit.company.as_mut().unwrap().domain = Some(long.clone());
    assert_eq!(
        store.put_visit(&site, &visit).await.unwrap(),
        PutVisit::Replaced
    );
    assert!(
        partition(table, &format!("HC#{site}#acme.example"))
            .await
            .is_empty()
    );
    let by = |company: &str| VisitQuery {
        from: Timestamp::EPOCH,
        to: Timestamp::from_millis(i64::MAX),
        filter: VisitFilter {
            company: Some(company.to_owned()),
            ..VisitFilter::default()
        },
        after: None,
        limit: 10,
    };
    let found = store
        .visits(&site, &by(&long.to_uppercase()))
        .await
        .unwrap();
    assert_eq!(
        found,
        [visit.clone()],
        "a long company key is found (hashed in the key)"
    );
    assert!(
        store
            .visits(&site, &by("acme.example"))
            .await
            .unwrap()
            .is_empty()
    );
    // Purging removes the visit with every pointer.
    assert_eq!(
        store
            .purge(&site, Timestamp::from_millis(start + 1))
            .await
            .unwrap(),
        1
    );
    for pk in [
        format!("HV#{site}"),
        format!("HI#{site}#{}", visit.visit_id),
        format!("HU#{site}#v"),
    ] {
        assert!(partition(table, &pk).await.is_empty(), "{pk} purged");
    }
    assert_eq!(store.visit(&site, &visit.visit_id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_updating_one_visitor_lose_no_update() {
    let store: Arc<dyn Store> = Arc::new(store("tippen-race").await);
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_729_080_000_000)));
    let mut config = Config::default();
    config.limits.max_write_attempts = 10_000;
    let tippen = Arc::new(Tippen::new(store.clone(), clock, config));
    let site = SiteId(unique("race"));
    const TASKS: usize = 16;
    const EACH: usize = 5;
    let tasks = (0..TASKS).map(|t| {
        let tippen = tippen.clone();
        let site = site.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                let ping = Ping {
                    kind: PingKind::PageView,
                    tab_id: format!("tab{}", t % 4),
                    url: format!("https://example.com/{t}/{i}"),
                    visibility: Visibility::Visible,
                    referrer: None,
                    user_agent: None,
                    website: "example.com".to_owned(),
                    client_timestamp: None,
                    page_id: None,
                };
                tippen
                    .track(&site, "hot", &ping, None)
                    .await
                    .expect("track under contention");
            }
        })
    });
    for t in join_all(tasks).await {
        t.expect("task");
    }
    let record = store
        .visitor(&site, "hot")
        .await
        .expect("read")
        .expect("the visitor exists");
    assert_eq!(
        record.value.page_views as usize,
        TASKS * EACH,
        "every page view of every task counted"
    );
    assert_eq!(record.value.tabs.len(), 4);
    assert_eq!(
        record.version.0 as usize,
        TASKS * EACH,
        "one stored version per successful write"
    );
    println!(
        "{} concurrent page views by {TASKS} tasks: all counted (version {})",
        TASKS * EACH,
        record.version.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wakes_and_the_poller_lease() {
    // A table of its own: the wakes and the lease are one partition per table.
    let store = store(&unique("tippen-wakes")).await;
    let (a, b) = (SiteId(unique("a")), SiteId(unique("b")));
    let t = |ms: i64| Timestamp::from_millis(1_729_080_000_000 + ms);
    assert_eq!(store.wakes().await.expect("wakes"), (Vec::new(), None));

    store.put_wake(&a, t(2000)).await.expect("put");
    store.put_wake(&b, t(1000)).await.expect("put");
    // The same deadline again (a retry, or two writers): still one wake.
    store.put_wake(&a, t(2000)).await.expect("put");
    store.put_wake(&a, t(3000)).await.expect("put");
    let (wakes, _) = store.wakes().await.expect("wakes");
    let seen: Vec<(&SiteId, Timestamp)> = wakes.iter().map(|w| (&w.site, w.at)).collect();
    assert_eq!(
        seen,
        [(&b, t(1000)), (&a, t(2000)), (&a, t(3000))],
        "earliest first"
    );
    // Deleting the met ones leaves the others (also one written meanwhile).
    store.put_wake(&b, t(2500)).await.expect("put");
    store.delete_wakes(&wakes[..2]).await.expect("delete");
    store
        .delete_wakes(&wakes[..1])
        .await
        .expect("deleting again is no error");
    let left: Vec<(SiteId, Timestamp)> = store
        .wakes()
        .await
        .expect("wakes")
        .0
        .into_iter()
        .map(|w| (w.site, w.at))
        .collect();
    assert_eq!(left, [(b.clone(), t(2500)), (a.clone(), t(3000))]);

    assert_eq!(store.poller_until().await.expect("lease"), None);
    assert!(store.claim_poller(t(5000)).await.expect("claim"));
    assert_eq!(store.poller_until().await.expect("lease"), Some(t(5000)));
    let (wakes, lease) = store.wakes().await.expect("wakes");
    assert_eq!(
        (wakes.len(), lease),
        (2, Some(t(5000))),
        "the lease comes with the wakes, not as one"
    );
    assert!(
        !store.claim_poller(t(4000)).await.expect("claim"),
        "a shorter window does not take a longer one's lease"
    );
    assert!(!store.claim_poller(t(5000)).await.expect("claim"));
    assert!(
        store.claim_poller(t(6000)).await.expect("claim"),
        "a longer window takes it over"
    );
    assert!(
        !store.release_poller(t(5000)).await.expect("release"),
        "the one taken over does not give back the new holder's lease"
    );
    assert_eq!(store.poller_until().await.expect("lease"), Some(t(6000)));
    assert!(store.release_poller(t(6000)).await.expect("release"));
    assert_eq!(store.poller_until().await.expect("lease"), None);
    assert!(
        store.claim_poller(t(1000)).await.expect("claim"),
        "a given-back lease is free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_lease_lets_one_invocation_sweep_a_site_and_loses_no_request() {
    let store = store("tippen-suite").await;
    let (a, b) = (SiteId(unique("a")), SiteId(unique("b")));
    let t = |ms: i64| Timestamp::from_millis(1_729_080_000_000 + ms);

    // Free: taken; another invocation then finds it held and asks for another round.
    assert_eq!(
        store
            .claim_sweep(&a, "h1", t(0), t(5000))
            .await
            .expect("claim"),
        SweepClaim::Taken
    );
    assert_eq!(
        store
            .claim_sweep(&b, "h2", t(0), t(5000))
            .await
            .expect("claim"),
        SweepClaim::Taken,
        "one lease per site"
    );
    assert_eq!(
        store
            .claim_sweep(&a, "h2", t(100), t(5100))
            .await
            .expect("claim"),
        SweepClaim::Held
    );
    // The holder's end sees the request: it keeps the lease (renewed) and sweeps again...
    assert_eq!(
        store.end_sweep(&a, "h1", t(6000)).await.expect("end"),
        SweepEnd::Again
    );
    assert_eq!(
        store
            .claim_sweep(&a, "h3", t(5500), t(10_000))
            .await
            .expect("claim"),
        SweepClaim::Held,
        "renewed to t(6000): still held at t(5500)"
    );
    assert_eq!(
        store.end_sweep(&a, "h1", t(7000)).await.expect("end"),
        SweepEnd::Again,
        "a request after the first round's end asks for one more round"
    );
    // ...and gives it back once nobody asked.
    assert_eq!(
        store.end_sweep(&a, "h1", t(7000)).await.expect("end"),
        SweepEnd::Released
    );
    assert_eq!(
        store
            .claim_sweep(&a, "h2", t(200), t(5200))
            .await
            .expect("claim"),
        SweepClaim::Taken,
        "a given-back lease is free"
    );

    // A holder that crashed: its lease runs out and is taken over, its request cleared.
    assert_eq!(
        store
            .claim_sweep(&a, "h3", t(300), t(5300))
            .await
            .expect("claim"),
        SweepClaim::Held
    );
    assert_eq!(
        store
            .claim_sweep(&a, "h4", t(5201), t(10_201))
            .await
            .expect("claim"),
        SweepClaim::Taken,
        "past its end the lease is free"
    );
    assert!(
        !store.renew_sweep(&a, "h2", t(20_000)).await.expect("renew"),
        "the old holder cannot renew a lease taken over"
    );
    assert_eq!(
        store.end_sweep(&a, "h2", t(20_000)).await.expect("end"),
        SweepEnd::Lost,
        "nor end it"
    );
    store.abandon_sweep(&a, "h2").await.expect("abandon");
    assert_eq!(
        store
            .claim_sweep(&a, "h5", t(6000), t(11_000))
            .await
            .expect("claim"),
        SweepClaim::Held,
        "abandoning a lease taken over leaves it to its holder"
    );
    assert!(store.renew_sweep(&a, "h4", t(20_000)).await.expect("renew"));
    assert_eq!(
        store
            .claim_sweep(&a, "h5", t(15_000), t(20_000))
            .await
            .expect("claim"),
        SweepClaim::Held,
        "renewed"
    );
    // A failed sweep gives the lease back whatever was asked.
    store.abandon_sweep(&a, "h4").await.expect("abandon");
    assert_eq!(
        store
            .claim_sweep(&a, "h6", t(15_000), t(20_000))
            .await
            .expect("claim"),
        SweepClaim::Taken
    );

    // Racing invocations: each of them either takes the lease, or is turned away with a
    // request that a holder's end answers with another round after it. Events are numbered
    // in order: a turned-away one's number is taken before its claim, a round's after the
    // end that answered `Again` returned, so every request must precede some round.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let c = SiteId(unique("c"));
    let store = Arc::new(store);
    let clock = Arc::new(AtomicUsize::new(0));
    let results = join_all((0..8).map(|i| {
        let (store, c, clock) = (store.clone(), c.clone(), clock.clone());
        async move {
            let holder = format!("r{i}");
            let asked = clock.fetch_add(1, Ordering::SeqCst);
            match store
                .claim_sweep(&c, &holder, t(0), t(60_000))
                .await
                .expect("claim")
            {
                SweepClaim::Held => (Some(asked), Vec::new()),
                SweepClaim::Taken => {
                    let mut rounds = Vec::new();
                    while store.end_sweep(&c, &holder, t(60_000)).await.expect("end")
                        == SweepEnd::Again
                    {
                        rounds.push(clock.fetch_add(1, Ordering::SeqCst));
                    }
                    (None, rounds)
                }
            }
        }
    }))
    .await;
    let requests: Vec<usize> = results.iter().filter_map(|(asked, _)| *asked).collect();
    let last_round = results.iter().flat_map(|(_, rounds)| rounds).max();
    assert!(requests.len() < 8, "someone took the lease: {results:?}");
    for asked in &requests {
        assert!(
            last_round.is_some_and(|r| r > asked),
            "a turned-away invocation's request got no round after it: {results:?}"
        );
    }
    assert_eq!(
        store
            .claim_sweep(&c, "last", t(1000), t(2000))
            .await
            .expect("claim"),
        SweepClaim::Taken,
        "given back at the end"
    );
}

/// Client addresses are counted per window up to the limit, under one secret that every store
/// on the table shares (two stores made at once agree on it), and never stored as such: the
/// counter's partition holds an HMAC, not the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_addresses_are_counted_under_one_secret_and_never_stored() {
    let table = unique("tippen-addr");
    let first = store(&table).await;
    let second = DynamoStore::new(client().await, table.as_str());
    let (a, b) = tokio::join!(first.address_secret(), second.address_secret());
    let (a, b) = (a.expect("secret"), b.expect("secret"));
    assert_eq!(a, b, "two stores made at once share one secret");

    let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let other: std::net::IpAddr = "2001:db8::7".parse().unwrap();
    let window = tippen_core::rate::RateLimit::new(1, 3).window(Timestamp::from_millis(1_000));
    let mut allowed = 0u32;
    for i in 0..5 {
        // Alternate the stores: the counter is the table's, not the process's.
        let store = if i % 2 == 0 { &first } else { &second };
        if store.count_address(ip, window).await.expect("count") {
            allowed += 1;
        }
    }
    assert_eq!(allowed, window.max, "the window allows exactly its max");
    assert!(
        first.count_address(other, window).await.expect("count"),
        "another address has its own counter"
    );
    let pk = format!("RATE#IP#{}", a.sign(&ip.to_string()));
    assert_eq!(partition(&table, &pk).await.len(), 1, "one counter item");
    let scan = client()
        .await
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan");
    for item in scan.items() {
        let text = format!("{item:?}");
        assert!(
            !text.contains("198.51.100.7") && !text.contains("2001:db8"),
            "an item holds the raw address: {text}"
        );
    }
}
