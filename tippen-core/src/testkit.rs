//! The store conformance suite (feature `testkit`): the behaviour every [`Store`]
//! implementation must show, so the memory, SQLite, Durable Object and DynamoDB stores run the
//! very same checks.
//!
//! ```
//! # futures_util::FutureExt::now_or_never(async {
//! let store = std::sync::Arc::new(tippen_core::MemoryStore::new());
//! tippen_core::testkit::run_store_suite(store, "doc").await;
//! # }).unwrap();
//! ```
//!
//! Every check uses site ids starting with `prefix`, so a suite can run against a store that
//! holds other data (a shared DynamoDB table, a persisted SQLite file). Failures panic with a
//! message naming the check.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

mod history;
pub use history::*;

use crate::clock::{ManualClock, Timestamp};
use crate::config::{Config, PresenceConfig};
use crate::presence::{Company, EnrichmentSource, Ping, PingKind, Tab, Visibility, VisitorRecord};
use crate::service::Tippen;
use crate::site::{KeyHash, Site, SiteId};
use crate::store::{Store, StoreError, Version};
use crate::support::UserRecord;

/// Runs every check against `store`.
pub async fn run_store_suite(store: Arc<dyn Store>, prefix: &str) {
    sites_are_found_by_either_key(&*store, prefix).await;
    conditional_writes(&*store, prefix).await;
    deadline_index(&*store, prefix).await;
    sequence_numbers(&*store, prefix).await;
    sites_are_isolated(&*store, prefix).await;
    records_round_trip(&*store, prefix).await;
    concurrent_writers_lose_nothing(store.clone(), prefix).await;
    enrichment_cache(&*store, prefix).await;
    enrichment_stats(&*store, prefix).await;
    user_records(&*store, prefix).await;
    user_deadline_index(&*store, prefix).await;
    tickets_are_spent_once(store.clone(), prefix).await;
    alert_logs_keep_the_newest(store.clone(), prefix).await;
    credentials_find_their_site(&*store, prefix).await;
    audit_logs_keep_what_retention_allows(&*store, prefix).await;
}

/// Credentials issued at runtime (member tokens, rotated keys) find their site; once a put
/// drops one (revoked), it finds nothing; a replaced primary key neither.
pub async fn credentials_find_their_site(store: &dyn Store, prefix: &str) {
    let id = site_id(prefix, "creds");
    let (pk, sk, sk2, member) = (
        format!("{prefix}_cpk"),
        format!("{prefix}_csk"),
        format!("{prefix}_csk2"),
        format!("{prefix}_cmember"),
    );
    let mut site = Site::new(id.as_str(), "Credentials", &pk, &sk);
    site.credentials.push(crate::site::Credential {
        id: "mem_1".to_owned(),
        hash: KeyHash::of(&member),
        role: crate::KeyRole::Viewer,
        name: Some("Vera Viewer".to_owned()),
        created_at: Timestamp::from_millis(T0),
        expires_at: None,
    });
    store.put_site(&site).await.expect("put_site");
    let by_member = store
        .site_by_key(&KeyHash::of(&member))
        .await
        .expect("site_by_key");
    assert_eq!(by_member.as_ref(), Some(&site), "site by a member token");
    // Rotation: a new secret key, the old one kept as a credential; then the member revoked.
    let mut rotated = site.clone();
    rotated.secret_key_hash = KeyHash::of(&sk2);
    rotated.credentials = vec![crate::site::Credential {
        id: "key_1".to_owned(),
        hash: KeyHash::of(&sk),
        role: crate::KeyRole::Secret,
        name: None,
        created_at: Timestamp::from_millis(T0 + 1),
        expires_at: Some(Timestamp::from_millis(T0 + 60_000)),
    }];
    store.put_site(&rotated).await.expect("put_site");
    for key in [&sk2, &sk, &pk] {
        assert_eq!(
            store
                .site_by_key(&KeyHash::of(key))
                .await
                .expect("site_by_key")
                .as_ref(),
            Some(&rotated),
            "the rotated site by each of its keys"
        );
    }
    assert_eq!(
        store
            .site_by_key(&KeyHash::of(&member))
            .await
            .expect("site_by_key"),
        None,
        "a revoked member token finds no site"
    );
    let mut done = rotated.clone();
    done.credentials.clear();
    store.put_site(&done).await.expect("put_site");
    assert_eq!(
        store
            .site_by_key(&KeyHash::of(&sk))
            .await
            .expect("site_by_key"),
        None,
        "a dropped rotated key finds no site"
    );
    assert_eq!(
        store
            .site_by_key(&KeyHash::of(&sk2))
            .await
            .expect("site_by_key")
            .as_ref(),
        Some(&done)
    );
}

/// Audit logs: entries newest first, read from a time on, older ones than the retention
/// dropped, one site's apart from another's.
pub async fn audit_logs_keep_what_retention_allows(store: &dyn Store, prefix: &str) {
    use crate::audit::{Actor, ActorKind, AuditEntry, Outcome};
    let (a, b) = (site_id(prefix, "audit-a"), site_id(prefix, "audit-b"));
    let entry = |site: &SiteId, n: i64| AuditEntry {
        at: Timestamp::from_millis(T0 + n * 1_000),
        site: site.clone(),
        actor: Actor {
            kind: ActorKind::Member,
            name: Some(format!("Member {n}")),
            key_id: Some(format!("mem_{n}")),
        },
        action: "visitor.delete".to_owned(),
        target: Some(format!("v{n}")),
        address: Some("203.0.113.9".to_owned()),
        outcome: if n % 2 == 0 {
            Outcome::Done
        } else {
            Outcome::Denied
        },
    };
    let t = |n: i64| Timestamp::from_millis(T0 + n * 1_000);
    for n in 0..5 {
        store
            .log_audit(&entry(&a, n), t(0))
            .await
            .expect("log_audit");
    }
    store
        .log_audit(&entry(&b, 7), t(0))
        .await
        .expect("log_audit");
    assert_eq!(
        store.audit_log(&a, t(0), 10).await.expect("audit_log"),
        (0..5).rev().map(|n| entry(&a, n)).collect::<Vec<_>>(),
        "every entry, newest first"
    );
    assert_eq!(
        store.audit_log(&a, t(0), 2).await.expect("audit_log"),
        vec![entry(&a, 4), entry(&a, 3)],
        "the newest 2"
    );
    assert_eq!(
        store.audit_log(&a, t(3), 10).await.expect("audit_log"),
        vec![entry(&a, 4), entry(&a, 3)],
        "from a time on"
    );
    // A write with a later retention boundary: what is older is never answered again.
    store
        .log_audit(&entry(&a, 10), t(3))
        .await
        .expect("log_audit");
    let all = store.audit_log(&a, t(0), 10).await.expect("audit_log");
    assert_eq!(
        all[..3],
        [entry(&a, 10), entry(&a, 4), entry(&a, 3)],
        "newest first after the retention moved"
    );
    assert_eq!(
        store.audit_log(&b, t(0), 10).await.expect("audit_log"),
        vec![entry(&b, 7)],
        "sites apart"
    );
    assert!(
        store
            .audit_log(&site_id(prefix, "audit-none"), t(0), 10)
            .await
            .expect("audit_log")
            .is_empty()
    );
}

/// Alert logs: at least the newest `keep` entries per site kept, newest first, one site's
/// apart from another's.
pub async fn alert_logs_keep_the_newest(store: Arc<dyn Store>, prefix: &str) {
    let (a, b) = (site_id(prefix, "alertlog-a"), site_id(prefix, "alertlog-b"));
    let entry = |n: i64| crate::alerts::AlertLogEntry {
        at: T0 + n,
        event: if n % 2 == 0 { "raised" } else { "failed" }.to_owned(),
        kind: "alert".to_owned(),
        id: format!("alt_{n:016x}"),
        rule_id: Some("r".to_owned()),
        rule_name: None,
        visitor_id: None,
        company: Some(format!("Company {n}")),
        domain: None,
        lead_score: Some(7),
        channel: (n % 2 == 1).then(|| "webhook".to_owned()),
        destination: None,
        attempts: Some(4),
        reason: (n % 2 == 1).then(|| "the receiver answered 500 4 times".to_owned()),
    };
    for n in 0..5 {
        store.log_alert(&a, &entry(n), 3).await.expect("log_alert");
    }
    store.log_alert(&b, &entry(9), 3).await.expect("log_alert");
    let got = store.alert_log(&a, 3).await.expect("alert_log");
    assert_eq!(
        got,
        vec![entry(4), entry(3), entry(2)],
        "the newest 3, newest first"
    );
    let all = store.alert_log(&a, 10).await.expect("alert_log");
    assert!(
        (3..=5).contains(&all.len()) && all[..3] == got[..],
        "at least the newest 3 kept, newest first: {all:?}"
    );
    assert_eq!(
        store.alert_log(&a, 1).await.expect("alert_log"),
        vec![entry(4)]
    );
    assert_eq!(
        store.alert_log(&b, 10).await.expect("alert_log"),
        vec![entry(9)]
    );
    assert!(
        store
            .alert_log(&site_id(prefix, "alertlog-none"), 10)
            .await
            .expect("alert_log")
            .is_empty()
    );
}

/// Dashboard socket tickets: spent once per site, atomically (of 8 concurrent spends of one
/// token exactly one wins), one site's token never spends another's.
pub async fn tickets_are_spent_once(store: Arc<dyn Store>, prefix: &str) {
    let (a, b) = (site_id(prefix, "tickets-a"), site_id(prefix, "tickets-b"));
    let now = Timestamp::from_millis(T0);
    let until = now.plus(std::time::Duration::from_secs(30));
    let token = format!("{prefix}-0123456789abcdef.0123456789abcdef0123456789abcdef");
    assert!(
        store
            .spend_ticket(&a, &token, now, until)
            .await
            .expect("spend_ticket"),
        "a fresh ticket is spent"
    );
    assert!(
        !store
            .spend_ticket(&a, &token, now, until)
            .await
            .expect("spend_ticket"),
        "a spent ticket is not spent again"
    );
    assert!(
        store
            .spend_ticket(&b, &token, now, until)
            .await
            .expect("spend_ticket"),
        "another site's token is its own"
    );
    let racing = format!("{prefix}-race");
    let spends = (0..8).map(|_| {
        let (store, a, racing) = (store.clone(), a.clone(), racing.clone());
        async move { store.spend_ticket(&a, &racing, now, until).await }
    });
    let won = futures_util::future::join_all(spends)
        .await
        .into_iter()
        .map(|r| r.expect("spend_ticket"))
        .filter(|won| *won)
        .count();
    assert_eq!(won, 1, "of concurrent spends of one ticket, one wins");
    // Once its `until` has passed, a token is spent again (an alert rule's cooldown ends).
    let later = until.plus(std::time::Duration::from_secs(1));
    assert!(
        !store
            .spend_ticket(
                &a,
                &token,
                until.minus(std::time::Duration::from_millis(1)),
                later
            )
            .await
            .expect("spend_ticket"),
        "a token is held until its until"
    );
    assert!(
        store
            .spend_ticket(&a, &token, until, later)
            .await
            .expect("spend_ticket"),
        "a token whose until has passed is spent again"
    );
    assert!(
        !store
            .spend_ticket(&a, &token, until, later)
            .await
            .expect("spend_ticket"),
        "and then held until its new until"
    );
}

/// An address in 2001:db8::/32 (documentation) derived from `prefix` and `n`, so suites with
/// different prefixes use different cache keys.
fn cache_ip(prefix: &str, n: u16) -> std::net::IpAddr {
    let h = KeyHash::of(prefix).0;
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(
        0x2001,
        0xdb8,
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
        u16::from_be_bytes([h[4], h[5]]),
        u16::from_be_bytes([h[6], h[7]]),
        0,
        n,
    ))
}

/// The enrichment cache: shared by all sites, keyed by address, a put replaces.
pub async fn enrichment_cache(store: &dyn Store, prefix: &str) {
    use crate::enrichment::{CachePolicy, CompanyProfile, LookupFailure};
    let (a, b) = (cache_ip(prefix, 1), cache_ip(prefix, 2));
    assert_eq!(store.cached_lookup(a).await.expect("cached_lookup"), None);
    let t0 = Timestamp::from_millis(T0);
    let profile = CompanyProfile {
        name: "Acme".into(),
        domain: Some("acme.example".into()),
        industry: Some("Anvils".into()),
        revenue_range: Some("$1m-$10m".into()),
        employee_range: Some("11-50".into()),
        location: Some("Springfield, US".into()),
    };
    let hit = CachePolicy::default()
        .entry_for(&Ok(profile), t0)
        .expect("a hit is cached");
    let miss = CachePolicy::default()
        .entry_for(&Err(LookupFailure::NotFound), t0)
        .expect("not found is cached");
    store.put_cached_lookup(a, &hit).await.expect("put");
    store.put_cached_lookup(b, &miss).await.expect("put");
    assert_eq!(
        store.cached_lookup(a).await.expect("cached_lookup"),
        Some(hit.clone()),
        "a profile round-trips"
    );
    assert_eq!(
        store.cached_lookup(b).await.expect("cached_lookup"),
        Some(miss.clone()),
        "a negative entry round-trips"
    );
    store.put_cached_lookup(a, &miss).await.expect("replace");
    assert_eq!(
        store.cached_lookup(a).await.expect("cached_lookup"),
        Some(miss),
        "a put replaces"
    );
    assert_eq!(
        store
            .cached_lookup(cache_ip(prefix, 3))
            .await
            .expect("cached_lookup"),
        None
    );
}

/// Enrichment counters are per site and batches add up, concurrent ones too.
pub async fn enrichment_stats(store: &dyn Store, prefix: &str) {
    use crate::enrichment::{EnrichmentEvent, EnrichmentStats, FailureKind, SkipCause};
    let a = site_id(prefix, "stats-a");
    let b = site_id(prefix, "stats-b");
    assert_eq!(
        store.enrichment_stats(&a).await.expect("stats"),
        EnrichmentStats::default()
    );
    let batch = [
        EnrichmentEvent::CacheMiss,
        EnrichmentEvent::LookupStarted,
        EnrichmentEvent::Skipped(SkipCause::Bot),
        EnrichmentEvent::LookupFailed(FailureKind::InvalidKey),
    ];
    store.record_enrichment(&a, &batch).await.expect("record");
    store.record_enrichment(&a, &[]).await.expect("record none");
    let all =
        join_all((0..10).map(|_| store.record_enrichment(&a, &[EnrichmentEvent::CacheHit]))).await;
    for r in all {
        r.expect("record");
    }
    let mut want = EnrichmentStats::default();
    for e in batch {
        want.record(e);
    }
    for _ in 0..10 {
        want.record(EnrichmentEvent::CacheHit);
    }
    assert_eq!(
        store.enrichment_stats(&a).await.expect("stats"),
        want,
        "every event counted once"
    );
    assert_eq!(
        store.enrichment_stats(&b).await.expect("stats"),
        EnrichmentStats::default(),
        "per site"
    );
}

const T0: i64 = 1_729_080_000_000;

/// A record with one visible tab seen at `seen_ms` and the given deadline.
pub fn sample_record(visitor_id: &str, seen_ms: i64, deadline_ms: i64) -> VisitorRecord {
    VisitorRecord {
        visitor_id: visitor_id.to_owned(),
        website: "example.com".into(),
        first_seen: Timestamp::from_millis(seen_ms),
        last_activity: Timestamp::from_millis(seen_ms),
        page_views: 1,
        referrer: None,
        user_agent: None,
        is_bot: false,
        client_timestamp: None,
        company: Company::unknown().shared(),
        tabs: vec![Tab {
            tab_id: "t".to_owned(),
            url: "https://example.com/".into(),
            visibility: Visibility::Visible,
            last_seen: Timestamp::from_millis(seen_ms),
            left_at: None,
            page_id: None,
        }],
        left_tabs: Vec::new(),
        invite: None,
        deadline: Timestamp::from_millis(deadline_ms),
        opted_out_until: None,
        visit: None,
    }
}

fn site_id(prefix: &str, name: &str) -> SiteId {
    SiteId(format!("{prefix}-{name}"))
}

/// Sites are found by the hash of their public or secret key; unknown keys find nothing;
/// replacing a site retires its old keys.
pub async fn sites_are_found_by_either_key(store: &dyn Store, prefix: &str) {
    let id = site_id(prefix, "keys");
    let pk = format!("{prefix}_pk");
    let sk = format!("{prefix}_sk");
    let site = Site::new(id.as_str(), "Keys", &pk, &sk);
    store.put_site(&site).await.expect("put_site");
    let by_pk = store
        .site_by_key(&KeyHash::of(&pk))
        .await
        .expect("site_by_key");
    assert_eq!(by_pk.as_ref(), Some(&site), "site by public key");
    let by_sk = store
        .site_by_key(&KeyHash::of(&sk))
        .await
        .expect("site_by_key");
    assert_eq!(by_sk.as_ref(), Some(&site), "site by secret key");
    assert_eq!(
        store
            .site_by_key(&KeyHash::of(&format!("{prefix}_unknown")))
            .await
            .expect("site_by_key"),
        None,
        "an unknown key finds no site"
    );
    assert!(
        store
            .sites()
            .await
            .expect("sites")
            .iter()
            .any(|s| s == &site),
        "sites() lists the site"
    );
    assert_eq!(
        store.site(&site.id).await.expect("site"),
        Some(site.clone()),
        "site() by id"
    );
    assert_eq!(
        store
            .site(&site_id(prefix, "no-such-site"))
            .await
            .expect("site"),
        None,
        "site() of an unknown id"
    );
    let sk2 = format!("{prefix}_sk2");
    let rotated = Site::new(id.as_str(), "Keys", &pk, &sk2);
    store.put_site(&rotated).await.expect("put_site (rotate)");
    assert_eq!(
        store
            .site_by_key(&KeyHash::of(&sk))
            .await
            .expect("site_by_key"),
        None,
        "a rotated-out secret key no longer finds the site"
    );
    assert_eq!(
        store
            .site_by_key(&KeyHash::of(&sk2))
            .await
            .expect("site_by_key"),
        Some(rotated),
        "the new secret key finds the site"
    );
}

/// Inserts, updates and deletes are conditional on the version read.
pub async fn conditional_writes(store: &dyn Store, prefix: &str) {
    let site = site_id(prefix, "cas");
    let r = sample_record("v1", T0, T0 + 60_000);
    assert_eq!(
        store.visitor(&site, "v1").await.expect("visitor"),
        None,
        "no record yet"
    );
    let v1 = store.save_visitor(&site, &r, None).await.expect("insert");
    assert!(
        matches!(
            store.save_visitor(&site, &r, None).await,
            Err(StoreError::Conflict)
        ),
        "a second insert of the same visitor conflicts"
    );
    let mut r2 = r.clone();
    r2.page_views = 2;
    let v2 = store
        .save_visitor(&site, &r2, Some(v1))
        .await
        .expect("update at the read version");
    assert_ne!(v1, v2, "an update changes the version");
    let mut stale = r.clone();
    stale.page_views = 99;
    assert!(
        matches!(
            store.save_visitor(&site, &stale, Some(v1)).await,
            Err(StoreError::Conflict)
        ),
        "an update at a stale version conflicts"
    );
    let read = store
        .visitor(&site, "v1")
        .await
        .expect("visitor")
        .expect("record exists");
    assert_eq!(read.version, v2, "read returns the latest version");
    assert_eq!(
        read.value.page_views, 2,
        "a conflicting write changed nothing"
    );
    assert!(
        matches!(
            store.remove_visitor(&site, "v1", v1).await,
            Err(StoreError::Conflict)
        ),
        "a delete at a stale version conflicts"
    );
    assert!(
        matches!(
            store.remove_visitor(&site, "nobody", Version(1)).await,
            Err(StoreError::Conflict)
        ),
        "deleting a missing record conflicts"
    );
    store
        .remove_visitor(&site, "v1", v2)
        .await
        .expect("delete at the read version");
    assert_eq!(
        store.visitor(&site, "v1").await.expect("visitor"),
        None,
        "deleted"
    );
    let again = store
        .save_visitor(&site, &r, None)
        .await
        .expect("insert after delete");
    assert_eq!(
        store
            .visitor(&site, "v1")
            .await
            .expect("visitor")
            .map(|v| v.version),
        Some(again),
        "re-inserted"
    );
}

/// `due_visitors` returns exactly the records due, earliest first, bounded by `limit`, and
/// follows updates and deletes; `next_deadline` is the minimum.
pub async fn deadline_index(store: &dyn Store, prefix: &str) {
    let site = site_id(prefix, "due");
    assert_eq!(
        store.next_deadline(&site).await.expect("next_deadline"),
        None,
        "empty site"
    );
    let mut versions = Vec::new();
    for (i, d) in [(3, 30_000), (1, 10_000), (2, 20_000), (4, 40_000)] {
        let v = store
            .save_visitor(&site, &sample_record(&format!("v{i}"), T0, T0 + d), None)
            .await
            .expect("insert");
        versions.push((i, v));
    }
    assert_eq!(
        store.next_deadline(&site).await.expect("next_deadline"),
        Some(Timestamp::from_millis(T0 + 10_000))
    );
    let ids = |v: Vec<crate::store::Versioned<VisitorRecord>>| {
        v.into_iter()
            .map(|r| r.value.visitor_id)
            .collect::<Vec<_>>()
    };
    let due = store
        .due_visitors(&site, Timestamp::from_millis(T0 + 20_000), 100)
        .await
        .expect("due");
    assert_eq!(
        ids(due),
        ["v1", "v2"],
        "due at T0+20s, inclusive, earliest first"
    );
    let due = store
        .due_visitors(&site, Timestamp::from_millis(T0 + 40_000), 2)
        .await
        .expect("due");
    assert_eq!(ids(due), ["v1", "v2"], "limit respected");
    assert!(
        store
            .due_visitors(&site, Timestamp::from_millis(T0 + 9_999), 100)
            .await
            .expect("due")
            .is_empty(),
        "nothing due before the first deadline"
    );
    // Moving v1's deadline later removes its old index entry.
    let v1 = store
        .visitor(&site, "v1")
        .await
        .expect("visitor")
        .expect("v1");
    store
        .save_visitor(
            &site,
            &sample_record("v1", T0, T0 + 50_000),
            Some(v1.version),
        )
        .await
        .expect("update");
    let due = store
        .due_visitors(&site, Timestamp::from_millis(T0 + 20_000), 100)
        .await
        .expect("due");
    assert_eq!(ids(due), ["v2"], "an updated deadline moves in the index");
    let v2 = store
        .visitor(&site, "v2")
        .await
        .expect("visitor")
        .expect("v2");
    store
        .remove_visitor(&site, "v2", v2.version)
        .await
        .expect("delete");
    assert_eq!(
        store.next_deadline(&site).await.expect("next_deadline"),
        Some(Timestamp::from_millis(T0 + 30_000)),
        "a deleted record leaves the index"
    );
    let due = store
        .due_visitors(&site, Timestamp::from_millis(T0 + 60_000), 100)
        .await
        .expect("due");
    assert_eq!(ids(due), ["v3", "v4", "v1"]);
    assert_eq!(store.visitors(&site).await.expect("visitors").len(), 3);
}

/// Sequence numbers advance atomically per site.
pub async fn sequence_numbers(store: &dyn Store, prefix: &str) {
    let a = site_id(prefix, "seq-a");
    let b = site_id(prefix, "seq-b");
    assert_eq!(
        store.sequence(&a).await.expect("sequence"),
        0,
        "starts at 0"
    );
    assert_eq!(store.advance_sequence(&a, 1).await.expect("advance"), 1);
    assert_eq!(store.advance_sequence(&a, 3).await.expect("advance"), 4);
    assert_eq!(store.sequence(&a).await.expect("sequence"), 4);
    assert_eq!(store.sequence(&b).await.expect("sequence"), 0, "per site");
    let all = join_all((0..10).map(|_| store.advance_sequence(&b, 1))).await;
    let mut got: Vec<u64> = all.into_iter().map(|r| r.expect("advance")).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=10).collect::<Vec<_>>(),
        "concurrent advances never overlap"
    );
    let unnumbered = [
        "{\"type\":\"X\",\"seq\":".to_owned(),
        "{\"seq\":".to_owned(),
    ];
    assert_eq!(
        store
            .advance_sequence_publishing(&a, &unnumbered)
            .await
            .expect("advance publishing"),
        6,
        "numbering messages advances by their count, whether or not the store publishes them"
    );
    assert_eq!(store.sequence(&a).await.expect("sequence"), 6);
}

/// One site's records are invisible to another.
pub async fn sites_are_isolated(store: &dyn Store, prefix: &str) {
    let a = site_id(prefix, "iso-a");
    let b = site_id(prefix, "iso-b");
    store
        .save_visitor(&a, &sample_record("same", T0, T0 + 1_000), None)
        .await
        .expect("insert a");
    assert_eq!(store.visitor(&b, "same").await.expect("visitor"), None);
    assert!(store.visitors(&b).await.expect("visitors").is_empty());
    assert!(
        store
            .due_visitors(&b, Timestamp::from_millis(T0 + 5_000), 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(store.next_deadline(&b).await.expect("next_deadline"), None);
    store
        .save_visitor(&b, &sample_record("same", T0, T0 + 2_000), None)
        .await
        .expect("the same id in another site is a new record");
    assert_eq!(store.visitors(&a).await.expect("visitors").len(), 1);
}

/// Every field of a record survives storage.
pub async fn records_round_trip(store: &dyn Store, prefix: &str) {
    let site = site_id(prefix, "rt");
    let mut r = sample_record("full", T0, T0 + 300_000);
    r.referrer = Some("https://google.com/?q=ü \"quoted\"".into());
    r.user_agent = Some("Mozilla/5.0 (compatible; Googlebot/2.1)".into());
    r.is_bot = true;
    r.client_timestamp = Some("2025-10-16T12:00:00Z".into());
    let company = Arc::make_mut(&mut r.company);
    company.name = "Acme Corporation".to_owned();
    company.domain = Some("acme.com".to_owned());
    company.source = EnrichmentSource::Cache;
    company.is_cached = true;
    company.enriched_at = Some(Timestamp::from_millis(T0 - 5));
    r.tabs.push(Tab {
        tab_id: "hidden-tab".to_owned(),
        url: "https://example.com/über".into(),
        visibility: Visibility::Hidden,
        last_seen: Timestamp::from_millis(T0 + 7),
        // A tab held after its exit beacon: the store keeps when it left.
        left_at: Some(Timestamp::from_millis(T0 + 8)),
        page_id: Some("page_1".into()),
    });
    store.save_visitor(&site, &r, None).await.expect("insert");
    let back = store
        .visitor(&site, "full")
        .await
        .expect("visitor")
        .expect("record");
    assert_eq!(back.value, r, "round trip");
    assert_eq!(store.visitors(&site).await.expect("visitors"), vec![r]);
}

/// Many concurrent page views of one visitor through [`Tippen::track`]: none is lost.
pub async fn concurrent_writers_lose_nothing(store: Arc<dyn Store>, prefix: &str) {
    let site = site_id(prefix, "race");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let mut config = Config::default();
    config.limits.max_write_attempts = 10_000;
    let tippen = Tippen::new(store.clone(), clock.clone(), config);
    let ping = |tab: usize| Ping {
        kind: PingKind::PageView,
        tab_id: format!("tab{}", tab % 3),
        url: format!("https://example.com/{tab}"),
        visibility: Visibility::Visible,
        referrer: None,
        user_agent: None,
        website: "example.com".to_owned(),
        client_timestamp: None,
        page_id: None,
    };
    let pings: Vec<Ping> = (0..24).map(ping).collect();
    let results = join_all(pings.iter().map(|p| tippen.track(&site, "racer", p, None))).await;
    let mut messages = 0;
    for r in results {
        messages += r.expect("track under contention").messages.len();
    }
    let record = store
        .visitor(&site, "racer")
        .await
        .expect("visitor")
        .expect("record");
    assert_eq!(
        record.value.page_views, 24,
        "every concurrent page view counted"
    );
    assert_eq!(record.value.tabs.len(), 3, "three tabs");
    assert_eq!(
        store.sequence(&site).await.expect("sequence"),
        messages as u64,
        "one sequence number per message"
    );
    // Two racing sweeps of an expired visitor: exactly one removal.
    clock.advance(PresenceConfig::default().visible_grace + Duration::from_millis(1));
    let sweeps = join_all([tippen.sweep(&site), tippen.sweep(&site)]).await;
    let removals: usize = sweeps
        .into_iter()
        .map(|s| {
            s.expect("sweep")
                .messages
                .iter()
                .filter(|m| m.to_json().contains("VISITOR_REMOVED"))
                .count()
        })
        .sum();
    assert_eq!(removals, 1, "racing sweeps remove a visitor exactly once");
}

/// A support user record seen at `seen_ms` with the given deadline, carrying one raw event
/// of every kind (so a round trip covers them all).
pub fn sample_user(user_id: &str, seen_ms: i64, deadline_ms: i64) -> UserRecord {
    use crate::protocol::{ActivityEvent, SubscriptionTier};
    use crate::support::{StoredEvent, SupportConfig, Trigger};
    let seen = Timestamp::from_millis(seen_ms);
    let mut r = UserRecord::new(user_id, seen, &SupportConfig::default());
    r.email = Some("jöhn@acme.example".to_owned());
    r.tier = Some(SubscriptionTier::FreeTrial);
    r.route = Some("/dashboard".to_owned());
    r.interactions.push_back(seen);
    r.errors.push_back(seen);
    r.event_count = 6;
    r.error_count = 1;
    r.last_error = Some("Failed to load \"x\"".to_owned());
    r.triggers = vec![Trigger::ErrorBurst];
    r.alert_since = Some(seen);
    r.last_notified = Some(seen);
    let events = [
        ActivityEvent::Route {
            route: "/dashboard".into(),
            timestamp: 1,
        },
        ActivityEvent::Click {
            element: Some("button.save".into()),
            route: Some("/dashboard".into()),
            timestamp: 2,
        },
        ActivityEvent::FormSubmit {
            form_id: Some("signup".into()),
            route: None,
            timestamp: 3,
        },
        ActivityEvent::PageTime {
            route: Some("/dashboard".into()),
            duration: 120_000,
            timestamp: 4,
        },
        ActivityEvent::Error {
            message: Some("Failed".into()),
            route: None,
            timestamp: 5,
        },
        ActivityEvent::Custom {
            name: "feature_used".into(),
            data: Some(serde_json::json!({"feature": "export", "n": [1, 2.5, null]})),
            timestamp: 6,
        },
    ];
    r.raw_events = events
        .into_iter()
        .map(|event| StoredEvent {
            received_at: seen,
            event,
        })
        .collect();
    r.deadline = Timestamp::from_millis(deadline_ms);
    r
}

/// User records: conditional writes and deletes, round trip of every field, isolation.
pub async fn user_records(store: &dyn Store, prefix: &str) {
    let site = site_id(prefix, "users");
    let other = site_id(prefix, "users-other");
    assert_eq!(store.user(&site, "u1").await.expect("user"), None);
    let r = sample_user("u1", T0, T0 + 60_000);
    let v1 = store.save_user(&site, &r, None).await.expect("insert");
    assert_eq!(v1, Version(1), "versions start at 1");
    assert!(
        matches!(
            store.save_user(&site, &r, None).await,
            Err(StoreError::Conflict)
        ),
        "insert over an existing user conflicts"
    );
    let back = store
        .user(&site, "u1")
        .await
        .expect("user")
        .expect("record");
    assert_eq!(back.version, v1);
    assert_eq!(back.value, r, "every field round-trips");
    let mut r2 = r.clone();
    r2.event_count = 7;
    let v2 = store.save_user(&site, &r2, Some(v1)).await.expect("update");
    assert_eq!(v2, Version(2));
    assert!(
        matches!(
            store.save_user(&site, &r2, Some(v1)).await,
            Err(StoreError::Conflict)
        ),
        "a stale version conflicts"
    );
    assert!(
        matches!(
            store.remove_user(&site, "u1", v1).await,
            Err(StoreError::Conflict)
        ),
        "a stale delete conflicts"
    );
    assert_eq!(
        store.user(&other, "u1").await.expect("user"),
        None,
        "sites are isolated"
    );
    assert!(store.users(&other).await.expect("users").is_empty());
    assert_eq!(store.users(&site).await.expect("users"), vec![r2]);
    store.remove_user(&site, "u1", v2).await.expect("delete");
    assert_eq!(store.user(&site, "u1").await.expect("user"), None);
    assert_eq!(
        store.next_user_deadline(&site).await.expect("next"),
        None,
        "index emptied"
    );
    assert!(
        matches!(
            store.remove_user(&site, "u1", v2).await,
            Err(StoreError::Conflict)
        ),
        "deleting a missing user conflicts"
    );
    let again = store
        .save_user(&site, &r, None)
        .await
        .expect("insert after delete");
    assert_eq!(again, Version(1));
}

/// `due_users` returns exactly the users due, earliest first, bounded by `limit`, and follows
/// updates and deletes; `next_user_deadline` is the minimum; visitor deadlines are separate.
pub async fn user_deadline_index(store: &dyn Store, prefix: &str) {
    let site = site_id(prefix, "users-due");
    assert_eq!(store.next_user_deadline(&site).await.expect("next"), None);
    for (i, d) in [(3, 30_000), (1, 10_000), (2, 20_000), (4, 40_000)] {
        store
            .save_user(&site, &sample_user(&format!("u{i}"), T0, T0 + d), None)
            .await
            .expect("insert");
    }
    store
        .save_visitor(&site, &sample_record("v", T0, T0 + 1_000), None)
        .await
        .expect("a visitor");
    assert_eq!(
        store.next_user_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(T0 + 10_000)),
        "the users' minimum, not the visitor's"
    );
    let ids = |v: Vec<crate::store::Versioned<UserRecord>>| {
        v.into_iter().map(|r| r.value.user_id).collect::<Vec<_>>()
    };
    let due = store
        .due_users(&site, Timestamp::from_millis(T0 + 20_000), 100)
        .await
        .expect("due");
    assert_eq!(
        ids(due),
        ["u1", "u2"],
        "due at T0+20s, inclusive, earliest first"
    );
    let due = store
        .due_users(&site, Timestamp::from_millis(T0 + 40_000), 2)
        .await
        .expect("due");
    assert_eq!(ids(due), ["u1", "u2"], "limit respected");
    assert!(
        store
            .due_users(&site, Timestamp::from_millis(T0 + 9_999), 100)
            .await
            .expect("due")
            .is_empty(),
        "nothing due before the first deadline"
    );
    let u1 = store.user(&site, "u1").await.expect("user").expect("u1");
    store
        .save_user(&site, &sample_user("u1", T0, T0 + 50_000), Some(u1.version))
        .await
        .expect("update");
    let due = store
        .due_users(&site, Timestamp::from_millis(T0 + 20_000), 100)
        .await
        .expect("due");
    assert_eq!(ids(due), ["u2"], "an updated deadline moves in the index");
    let u2 = store.user(&site, "u2").await.expect("user").expect("u2");
    store
        .remove_user(&site, "u2", u2.version)
        .await
        .expect("delete");
    assert_eq!(
        store.next_user_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(T0 + 30_000)),
        "a deleted record leaves the index"
    );
    let due = store
        .due_users(&site, Timestamp::from_millis(T0 + 60_000), 100)
        .await
        .expect("due");
    assert_eq!(ids(due), ["u3", "u4", "u1"]);
    assert_eq!(store.users(&site).await.expect("users").len(), 3);
    assert!(
        store
            .due_users(
                &site_id(prefix, "users-none"),
                Timestamp::from_millis(T0 + 60_000),
                10
            )
            .await
            .expect("due")
            .is_empty(),
        "another site has none"
    );
}
