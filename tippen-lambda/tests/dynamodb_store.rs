//! The DynamoDB store against moto (a real DynamoDB API server on loopback): the core's
//! store conformance suite, and a concurrency test through the core (many tasks updating
//! one visitor with conditional writes; no update lost).
//!
//! Needs `TIPPEN_DYNAMODB_ENDPOINT` (for example `http://127.0.0.1:5100`, a running
//! `moto_server`); `scripts/test-lambda.sh` starts moto and runs these with
//! `--features moto-tests`.

use std::sync::Arc;

use futures_util::future::join_all;
use tippen_core::presence::{Ping, PingKind, Visibility};
use tippen_core::{Config, ManualClock, SiteId, Store, Timestamp, Tippen};
use tippen_lambda::DynamoStore;

async fn store(table: &str) -> DynamoStore {
    let endpoint = std::env::var("TIPPEN_DYNAMODB_ENDPOINT").expect(
        "TIPPEN_DYNAMODB_ENDPOINT must name a running moto_server (scripts/test-lambda.sh)",
    );
    let sdk = tippen_lambda::sdk_config().await;
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(endpoint)
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), table);
    store.create_table().await.expect("create table");
    store
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
