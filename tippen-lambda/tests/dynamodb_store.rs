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
use tippen_lambda::{DynamoHistory, DynamoStore};

async fn client() -> aws_sdk_dynamodb::Client {
    let endpoint = std::env::var("TIPPEN_DYNAMODB_ENDPOINT").expect(
        "TIPPEN_DYNAMODB_ENDPOINT must name a running moto_server (scripts/test-lambda.sh)",
    );
    let sdk = tippen_lambda::sdk_config().await;
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
