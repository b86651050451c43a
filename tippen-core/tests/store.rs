//! The store conformance suite on the memory store, and the service's handling of store
//! failures with a mocked store.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use mockall::mock;
use tippen_core::api::RequestContext;
use tippen_core::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use tippen_core::presence::VisitorRecord;
use tippen_core::support::UserRecord;
use tippen_core::{
    Config, KeyHash, ManualClock, MemoryStore, Site, SiteId, Store, StoreError, Timestamp, Tippen,
    Version, Versioned,
};

#[test]
fn memory_history_passes_the_history_suite() {
    block(tippen_core::testkit::run_history_suite(
        Arc::new(tippen_core::history::MemoryHistory::new()),
        "mem",
    ));
}

#[test]
fn memory_store_passes_the_conformance_suite() {
    block(tippen_core::testkit::run_store_suite(
        Arc::new(MemoryStore::new()),
        "mem",
    ));
}

mock! {
    pub Storage {}
    #[async_trait]
    impl Store for Storage {
        async fn put_site(&self, site: &Site) -> Result<(), StoreError>;
        async fn sites(&self) -> Result<Vec<Site>, StoreError>;
        async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError>;
        async fn spend_ticket(&self, site: &SiteId, token: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError>;
        async fn log_alert(&self, site: &SiteId, entry: &tippen_core::alerts::AlertLogEntry, keep: usize) -> Result<(), StoreError>;
        async fn alert_log(&self, site: &SiteId, limit: usize) -> Result<Vec<tippen_core::alerts::AlertLogEntry>, StoreError>;
        async fn log_audit(&self, entry: &tippen_core::audit::AuditEntry, keep_after: Timestamp) -> Result<(), StoreError>;
        async fn audit_log(&self, site: &SiteId, since: Timestamp, limit: usize) -> Result<Vec<tippen_core::audit::AuditEntry>, StoreError>;
        async fn visitor(&self, site: &SiteId, visitor_id: &str) -> Result<Option<Versioned<VisitorRecord>>, StoreError>;
        async fn save_visitor(&self, site: &SiteId, record: &VisitorRecord, expected: Option<Version>) -> Result<Version, StoreError>;
        async fn remove_visitor(&self, site: &SiteId, visitor_id: &str, expected: Version) -> Result<(), StoreError>;
        async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError>;
        async fn due_visitors(&self, site: &SiteId, now: Timestamp, limit: usize) -> Result<Vec<Versioned<VisitorRecord>>, StoreError>;
        async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError>;
        async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError>;
        async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError>;
        async fn cached_lookup(&self, ip: std::net::IpAddr) -> Result<Option<CachedLookup>, StoreError>;
        async fn put_cached_lookup(&self, ip: std::net::IpAddr, entry: &CachedLookup) -> Result<(), StoreError>;
        async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError>;
        async fn record_enrichment(&self, site: &SiteId, events: &[EnrichmentEvent]) -> Result<(), StoreError>;
        async fn user(&self, site: &SiteId, user_id: &str) -> Result<Option<Versioned<UserRecord>>, StoreError>;
        async fn save_user(&self, site: &SiteId, record: &UserRecord, expected: Option<Version>) -> Result<Version, StoreError>;
        async fn remove_user(&self, site: &SiteId, user_id: &str, expected: Version) -> Result<(), StoreError>;
        async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError>;
        async fn due_users(&self, site: &SiteId, now: Timestamp, limit: usize) -> Result<Vec<Versioned<UserRecord>>, StoreError>;
        async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError>;
        async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError>;
        async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError>;
        async fn sync(&self) -> Result<(), StoreError>;
        fn numbers_before_writes(&self) -> bool;
    }
}

fn service(store: MockStorage) -> Tippen {
    let mut config = Config::default();
    config.limits.max_write_attempts = 3;
    Tippen::new(
        Arc::new(store),
        Arc::new(ManualClock::new(Timestamp::from_millis(T0))),
        config,
    )
}

fn track(t: &Tippen) -> tippen_core::Effects {
    let req = http::Request::post("/track/visitor")
        .header("X-Tippen-API-Key", "pk")
        .body(bytes::Bytes::from(pageview("v", "t", "https://e.example/")))
        .unwrap();
    block(t.handle(req, &RequestContext::default()))
}

fn with_site(store: &mut MockStorage) {
    store
        .expect_site_by_key()
        .returning(|_| Ok(Some(Site::new("s", "S", "pk", "sk"))));
    store.expect_count_visitors().returning(|_| Ok(0));
    store.expect_count_users().returning(|_| Ok(0));
    store.expect_sync().returning(|| Ok(()));
}

#[test]
fn endless_conflicts_give_up_after_the_configured_attempts_with_503() {
    let mut store = MockStorage::new();
    with_site(&mut store);
    store.expect_numbers_before_writes().return_const(false);
    store.expect_visitor().times(3).returning(|_, _| Ok(None));
    store
        .expect_save_visitor()
        .times(3)
        .returning(|_, _, _| Err(StoreError::Conflict));
    store.expect_advance_sequence().never();
    let r = track(&service(store));
    assert_eq!(r.response.as_ref().unwrap().status(), 503);
    assert_eq!(r.response.as_ref().unwrap().headers()["retry-after"], "1");
    assert!(
        body_json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("contention")
    );
    assert!(
        r.broadcasts.is_empty(),
        "nothing happened, nothing is announced"
    );
}

#[test]
fn a_failing_backend_is_a_500_without_details() {
    let mut store = MockStorage::new();
    with_site(&mut store);
    store.expect_numbers_before_writes().return_const(false);
    store.expect_visitor().returning(|_, _| {
        Err(StoreError::Backend(
            "disk on fire at /var/lib/secret".into(),
        ))
    });
    let r = track(&service(store));
    assert_eq!(r.response.as_ref().unwrap().status(), 500);
    assert_eq!(body_json(&r)["error"], "internal storage error");
}

#[test]
fn a_conflict_is_retried_with_a_fresh_read() {
    let mut store = MockStorage::new();
    with_site(&mut store);
    store.expect_numbers_before_writes().return_const(false);
    let mut seq = mockall::Sequence::new();
    store
        .expect_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(None));
    store
        .expect_save_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(StoreError::Conflict));
    store
        .expect_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(None));
    store
        .expect_save_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|_, _, expected| expected.is_none())
        .returning(|_, _, _| Ok(Version(1)));
    store
        .expect_advance_sequence()
        .times(1)
        .returning(|_, by| Ok(by));
    let r = track(&service(store));
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(r.broadcasts.len(), 1);
}

/// On a store that wants messages numbered before the write (Lambda's DynamoDB: an
/// invocation may be cut off between the two), a page view's broadcast takes its number first,
/// then the visitor is written; a conflict's retry reuses the number taken.
#[test]
fn a_store_numbering_before_writes_gets_the_numbers_first_and_a_retry_reuses_them() {
    let mut store = MockStorage::new();
    with_site(&mut store);
    store.expect_numbers_before_writes().return_const(true);
    let mut seq = mockall::Sequence::new();
    store
        .expect_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(None));
    store
        .expect_advance_sequence()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|_, by| *by == 1)
        .returning(|_, by| Ok(40 + by));
    store
        .expect_save_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(StoreError::Conflict));
    store
        .expect_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(None));
    store
        .expect_save_visitor()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(Version(1)));
    let r = track(&service(store));
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        r.broadcasts.iter().map(|b| b.seq).collect::<Vec<_>>(),
        vec![41],
        "the broadcast carries the number taken before its write"
    );
    assert!(r.broadcasts[0].text.contains("\"seq\":41"));
}

/// A flood of `GET_VISITORS` (or of dashboard connects) reads the store's visitors once per
/// site and `Limits::snapshot_reuse`, while the site's sequence number stays; a new number or
/// the period's end builds the snapshot again, and every reply is the current snapshot text.
#[test]
fn a_flood_of_snapshot_requests_builds_one_snapshot_per_period() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tippen_core::api::SocketRole;
    let seq = Arc::new(AtomicU64::new(5));
    let mut store = MockStorage::new();
    let current = seq.clone();
    store
        .expect_sequence()
        .returning(move |_| Ok(current.load(Ordering::SeqCst)));
    store
        .expect_visitors()
        .times(3)
        .returning(|_| Ok(Vec::new()));
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let tippen = Tippen::new(Arc::new(store), clock.clone(), Config::default());
    let role = SocketRole::Dashboard {
        site: SiteId::from("s"),
    };
    let ask = |expected_seq: u64| {
        let effects =
            block(tippen.socket_frame(&role, r#"{"type":"GET_VISITORS"}"#)).expect("answered");
        let reply: serde_json::Value =
            serde_json::from_str(&effects.reply.expect("a reply")).expect("JSON");
        assert_eq!(reply["type"], "INITIAL_VISITORS");
        assert_eq!(reply["seq"], expected_seq);
    };
    let opened = block(tippen.socket_open(&role)).expect("opened");
    assert!(opened.reply.is_some_and(|r| r.contains("INITIAL_VISITORS")));
    for _ in 0..50 {
        ask(5);
    }
    // The period is over: built again (the second read).
    clock.advance(std::time::Duration::from_secs(1));
    ask(5);
    ask(5);
    // A numbered change: built again at once (the third read).
    seq.store(6, Ordering::SeqCst);
    ask(6);
    ask(6);
}
