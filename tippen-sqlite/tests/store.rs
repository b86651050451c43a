//! The core's store conformance suite on [`SqliteStore`], on real files, in both durability
//! modes; and data surviving a reopen, through the file itself.

use std::sync::Arc;

use tippen_core::enrichment::{CachePolicy, CompanyProfile, EnrichmentEvent};
use tippen_core::testkit::{run_store_suite, sample_record, sample_user};
use tippen_core::{KeyHash, Site, SiteId, Store, Timestamp, Version};
use tippen_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_write_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStore::open_with(dir.path().join("t.db"), SqliteOptions::default()).expect("open");
    run_store_suite(Arc::new(store), "behind").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_write_behind_without_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_with(
        dir.path().join("t.db"),
        SqliteOptions::write_behind(std::time::Duration::ZERO),
    )
    .expect("open");
    run_store_suite(Arc::new(store), "eager").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_immediate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStore::open_with(dir.path().join("t.db"), SqliteOptions::immediate()).expect("open");
    run_store_suite(Arc::new(store), "immediate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_twice_on_one_file() {
    // The suite's checks are scoped by prefix, so a file that already holds data passes too.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    run_store_suite(Arc::new(SqliteStore::open(&path).expect("open")), "first").await;
    run_store_suite(
        Arc::new(SqliteStore::open(&path).expect("reopen")),
        "second",
    )
    .await;
}

/// The audit log is read back from the file after a reopen, without the rows a later write's
/// retention boundary dropped (from the file, not only from memory), and with a credential's
/// key still finding its site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_and_credentials_survive_reopening_and_retention_reaches_the_file() {
    use tippen_core::audit::{Actor, AuditEntry, Outcome};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.db");
    let id = SiteId::from("acme");
    let entry = |at: i64| AuditEntry {
        at: Timestamp::from_millis(at),
        site: id.clone(),
        actor: Actor::operator(),
        action: "site.update".to_owned(),
        target: None,
        address: None,
        outcome: Outcome::Done,
    };
    let mut site = Site::new("acme", "Acme", "pk_acme", "sk_acme");
    site.credentials.push(tippen_core::site::Credential {
        id: "mem_1".to_owned(),
        hash: KeyHash::of("member_acme"),
        role: tippen_core::KeyRole::Viewer,
        name: Some("Vera".to_owned()),
        created_at: Timestamp::from_millis(1_000),
        expires_at: None,
    });
    let zero = Timestamp::from_millis(0);
    {
        let store = SqliteStore::open(&path).expect("open");
        store.put_site(&site).await.expect("put_site");
        for at in [1_000, 2_000, 3_000] {
            store.log_audit(&entry(at), zero).await.expect("log_audit");
        }
        store
            .log_audit(&entry(4_000), Timestamp::from_millis(2_500))
            .await
            .expect("log_audit");
        store.sync().await.expect("sync");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.audit_log(&id, zero, 10).await.expect("audit_log"),
        vec![entry(4_000), entry(3_000)],
        "what retention dropped is gone from the file"
    );
    assert_eq!(
        store
            .site_by_key(&KeyHash::of("member_acme"))
            .await
            .expect("by key"),
        Some(site),
        "a member token finds its site after a reopen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested.db");
    let site = Site::new("acme", "Acme", "pk_acme", "sk_acme");
    let id = SiteId::from("acme");
    let mut record = sample_record("visitor_1", 1_000, 61_000);
    record.page_views = 7;
    let mut user = sample_user("user_1", 1_000, 90_000);
    let ip: std::net::IpAddr = "8.8.8.8".parse().unwrap();
    let entry = CachePolicy::default()
        .entry_for(
            &Ok(CompanyProfile {
                name: "Google LLC".into(),
                domain: Some("google.com".into()),
                ..CompanyProfile::default()
            }),
            Timestamp::from_millis(1_000),
        )
        .expect("cached");
    {
        let store = SqliteStore::open(&path).expect("open");
        store.put_site(&site).await.expect("put_site");
        let v1 = store
            .save_visitor(&id, &record, None)
            .await
            .expect("insert");
        record.page_views = 8;
        store
            .save_visitor(&id, &record, Some(v1))
            .await
            .expect("update");
        assert_eq!(store.advance_sequence(&id, 5).await.expect("seq"), 5);
        let u1 = store
            .save_user(&id, &user, None)
            .await
            .expect("insert user");
        user.event_count = 9;
        store
            .save_user(&id, &user, Some(u1))
            .await
            .expect("update user");
        let gone = store
            .save_user(&id, &sample_user("gone", 1_000, 5_000), None)
            .await
            .expect("insert user");
        store
            .remove_user(&id, "gone", gone)
            .await
            .expect("remove user");
        store
            .put_cached_lookup(ip, &entry)
            .await
            .expect("put_cached_lookup");
        store
            .record_enrichment(
                &id,
                &[EnrichmentEvent::CacheHit, EnrichmentEvent::LookupStarted],
            )
            .await
            .expect("record_enrichment");
    } // dropped: thread joined, file closed

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.cached_lookup(ip).await.expect("cached_lookup"),
        Some(entry),
        "the enrichment cache survived"
    );
    let stats = store.enrichment_stats(&id).await.expect("stats");
    assert_eq!(
        (stats.cache_hits, stats.credits_used),
        (1, 1),
        "stats survived"
    );
    assert_eq!(store.sites().await.expect("sites"), vec![site.clone()]);
    assert_eq!(
        store
            .site_by_key(&KeyHash::of("sk_acme"))
            .await
            .expect("by key"),
        Some(site)
    );
    let back = store
        .visitor(&id, "visitor_1")
        .await
        .expect("visitor")
        .expect("record survived");
    assert_eq!(back.version, Version(2), "version survived");
    assert_eq!(back.value, record, "record survived");
    assert_eq!(
        store.next_deadline(&id).await.expect("next"),
        Some(Timestamp::from_millis(61_000)),
        "deadline index survived"
    );
    assert_eq!(
        store.sequence(&id).await.expect("seq"),
        5,
        "sequence survived"
    );
    let back = store
        .user(&id, "user_1")
        .await
        .expect("user")
        .expect("user survived");
    assert_eq!(
        (back.version, &back.value),
        (Version(2), &user),
        "user survived"
    );
    assert_eq!(
        store.user(&id, "gone").await.expect("user"),
        None,
        "a removed user stays removed"
    );
    assert_eq!(
        store.next_user_deadline(&id).await.expect("next"),
        Some(Timestamp::from_millis(90_000)),
        "user deadline index survived"
    );
    // A stale version still conflicts after the reopen.
    assert!(
        store
            .save_visitor(&id, &record, Some(Version(1)))
            .await
            .is_err()
    );

    assert!(store.remove_site(&id).await.expect("remove"));
    assert!(store.sites().await.expect("sites").is_empty());
    assert!(store.visitors(&id).await.expect("visitors").is_empty());
    assert!(store.users(&id).await.expect("users").is_empty());
    assert!(!store.remove_site(&id).await.expect("remove again"));
}

#[test]
fn a_missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = SqliteStore::open(dir.path().join("no/such/dir/t.db")).expect_err("must fail");
    assert!(
        err.to_string().contains("cannot open SQLite database"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_immediate_writes_reach_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = SiteId::from("s");
    // Write-behind: after flush() another reader of the file sees the write.
    let behind_path = dir.path().join("behind.db");
    let behind = SqliteStore::open(&behind_path).expect("open");
    behind
        .save_visitor(&site, &sample_record("v", 1_000, 2_000), None)
        .await
        .expect("insert");
    behind.advance_sequence(&site, 3).await.expect("seq");
    behind.flush().await.expect("flush");
    let reader = SqliteStore::open(&behind_path).expect("second reader");
    assert_eq!(reader.visitors(&site).await.expect("visitors").len(), 1);
    assert_eq!(reader.sequence(&site).await.expect("seq"), 3);
    drop(reader);
    // Immediate: the write is in the file when the call returns.
    let immediate_path = dir.path().join("immediate.db");
    let immediate =
        SqliteStore::open_with(&immediate_path, SqliteOptions::immediate()).expect("open");
    let v1 = immediate
        .save_visitor(&site, &sample_record("v", 1_000, 2_000), None)
        .await
        .expect("insert");
    let reader = SqliteStore::open(&immediate_path).expect("second reader");
    assert_eq!(
        reader
            .visitor(&site, "v")
            .await
            .expect("visitor")
            .map(|v| v.version),
        Some(v1)
    );
    drop(reader);
    immediate
        .remove_visitor(&site, "v", v1)
        .await
        .expect("delete");
    let reader = SqliteStore::open(&immediate_path).expect("third reader");
    assert_eq!(reader.visitor(&site, "v").await.expect("visitor"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_updates_of_one_visitor_are_coalesced_and_the_last_one_persists() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let site = SiteId::from("s");
    let mut record = sample_record("v", 1_000, 2_000);
    {
        let store = SqliteStore::open(&path).expect("open");
        let mut version = None;
        for i in 1..=500 {
            record.page_views = i;
            record.deadline = Timestamp::from_millis(2_000 + i as i64);
            version = Some(
                store
                    .save_visitor(&site, &record, version)
                    .await
                    .expect("update"),
            );
        }
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let back = store
        .visitor(&site, "v")
        .await
        .expect("visitor")
        .expect("record");
    assert_eq!(back.version, Version(500));
    assert_eq!(back.value, record);
    assert_eq!(
        store.next_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(2_500))
    );
}

/// The open visits in the file: (visitor id, visit JSON).
fn open_visit_rows(path: &std::path::Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).expect("read the file");
    let mut stmt = conn
        .prepare("SELECT visitor_id, visit FROM open_visits ORDER BY visitor_id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_visit_is_written_only_when_it_changes_and_survives_reopening() {
    use tippen_core::history::OpenVisit;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let site = SiteId::from("s");
    let mut record = sample_record("v", 1_000, 2_000);
    let mut visit = OpenVisit::start("v", Timestamp::from_millis(1_000));
    visit.on_event(
        "t",
        &"https://example.com/a".into(),
        true,
        Timestamp::from_millis(1_000),
    );
    record.visit = Some(Arc::new(visit));
    let store = SqliteStore::open(&path).expect("open");
    let v1 = store
        .save_visitor(&site, &record, None)
        .await
        .expect("insert");
    store.flush().await.expect("flush");
    let rows = open_visit_rows(&path);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let conn = rusqlite::Connection::open(&path).expect("second connection");
    let row: String = conn
        .query_row("SELECT record FROM visitors", [], |r| r.get(0))
        .expect("visitor row");
    assert!(!row.contains("\"visit\""), "the row holds no visit: {row}");
    // Mark the stored visit behind the store's back: a write of the same visit (a heartbeat,
    // sharing the Arc) leaves the row alone, a changed visit replaces it.
    let marked = rows[0].1.replace("\"/a\"", "\"/marked\"");
    conn.execute("UPDATE open_visits SET visit = ?1", [&marked])
        .expect("mark");
    record.page_views = 2;
    let v2 = store
        .save_visitor(&site, &record, Some(v1))
        .await
        .expect("heartbeat");
    store.flush().await.expect("flush");
    assert_eq!(
        open_visit_rows(&path)[0].1,
        marked,
        "an unchanged visit is not rewritten"
    );
    Arc::make_mut(record.visit.as_mut().expect("visit")).on_event(
        "t",
        &"https://example.com/b".into(),
        true,
        Timestamp::from_millis(1_500),
    );
    let v3 = store
        .save_visitor(&site, &record, Some(v2))
        .await
        .expect("page view");
    store.flush().await.expect("flush");
    let rows = open_visit_rows(&path);
    assert!(
        rows[0].1.contains("\"/b\"") && !rows[0].1.contains("marked"),
        "{rows:?}"
    );
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen");
    let back = store
        .visitor(&site, "v")
        .await
        .expect("visitor")
        .expect("record");
    assert_eq!(
        (back.version, &back.value),
        (v3, &record),
        "the visit came back"
    );
    // A visit closed (taken out of the record) and a visitor removed take their rows along.
    let mut closed = record.clone();
    closed.visit = None;
    let v4 = store
        .save_visitor(&site, &closed, Some(v3))
        .await
        .expect("closed");
    store.flush().await.expect("flush");
    assert!(open_visit_rows(&path).is_empty());
    let v5 = store
        .save_visitor(&site, &record, Some(v4))
        .await
        .expect("reopened visit");
    store.flush().await.expect("flush");
    assert_eq!(open_visit_rows(&path).len(), 1);
    store.remove_visitor(&site, "v", v5).await.expect("remove");
    store.flush().await.expect("flush");
    assert!(open_visit_rows(&path).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_file_keeps_the_visit_stored_inside_its_record() {
    use tippen_core::history::OpenVisit;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v3.db");
    let site = SiteId::from("s");
    let mut record = sample_record("v", 1_000, 2_000);
    let mut visit = OpenVisit::start("v", Timestamp::from_millis(1_000));
    visit.on_event(
        "t",
        &"https://example.com/a".into(),
        true,
        Timestamp::from_millis(1_000),
    );
    record.visit = Some(Arc::new(visit));
    {
        // The layout of version 3: the visit inside the record's JSON, no open_visits table.
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE visitors (site_id TEXT NOT NULL, visitor_id TEXT NOT NULL,
                version INTEGER NOT NULL, deadline INTEGER NOT NULL, record TEXT NOT NULL,
                PRIMARY KEY (site_id, visitor_id)) WITHOUT ROWID;
             CREATE INDEX visitors_by_deadline ON visitors (site_id, deadline);
             PRAGMA user_version = 3;",
        )
        .expect("schema 3");
        conn.execute(
            "INSERT INTO visitors VALUES ('s', 'v', 4, 2000, ?1)",
            [serde_json::to_string(&record).expect("json")],
        )
        .expect("row");
    }
    let store = SqliteStore::open(&path).expect("open");
    let back = store
        .visitor(&site, "v")
        .await
        .expect("visitor")
        .expect("record");
    assert_eq!(back.value, record, "the visit is read from the record");
    // The deadline index of the older layouts is dropped (the deadlines are indexed in memory).
    let indexes: Vec<String> = rusqlite::Connection::open(&path)
        .expect("second connection")
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%deadline%'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("indexes");
    assert!(indexes.is_empty(), "deadline indexes left: {indexes:?}");
    // Its next write moves the visit to its own row, even though it did not change.
    store
        .save_visitor(&site, &back.value.clone(), Some(back.version))
        .await
        .expect("heartbeat");
    store.flush().await.expect("flush");
    assert_eq!(open_visit_rows(&path).len(), 1);
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen");
    let back = store
        .visitor(&site, "v")
        .await
        .expect("visitor")
        .expect("record");
    assert!(back.value.visit.is_some(), "the visit survived the move");
}
