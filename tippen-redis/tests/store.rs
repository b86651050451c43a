//! [`RedisStore`] against a real `redis-server` (started by the test on a free port, killed
//! by pid): the core's store conformance suite, two replicas' connections updating one
//! visitor concurrently, and how failures surface.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::RedisServer;
use fred::prelude::{ClientLike, HashesInterface, SortedSetsInterface};
use tippen_core::presence::{Ping, PingKind, Visibility};
use tippen_core::testkit::{run_store_suite, sample_record};
use tippen_core::{Config, ManualClock, SiteId, Store, StoreError, Timestamp, Tippen, Version};
use tippen_redis::{RedisError, RedisOptions, RedisStore};

const T0: i64 = 1_729_080_000_000;

async fn connect(server: &RedisServer, namespace: &str) -> RedisStore {
    RedisStore::connect_with(
        &server.url(),
        RedisOptions::default().with_namespace(namespace),
    )
    .await
    .expect("connect to the test redis-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite() {
    let server = RedisServer::start();
    run_store_suite(Arc::new(connect(&server, "tippen").await), "suite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_twice_on_one_server_namespaces_isolate() {
    // The same prefix twice: the second run passes only if nothing of the first leaks into
    // another namespace (the suite starts by checking that its records do not exist yet).
    let server = RedisServer::start();
    run_store_suite(Arc::new(connect(&server, "first").await), "same").await;
    run_store_suite(Arc::new(connect(&server, "second").await), "same").await;
}

fn ping(kind: PingKind, tab: &str, url: String) -> Ping {
    Ping {
        kind,
        tab_id: tab.to_owned(),
        url,
        visibility: Visibility::Visible,
        referrer: None,
        user_agent: None,
        website: "example.com".to_owned(),
        client_timestamp: None,
        page_id: None,
    }
}

fn page_view(n: usize) -> Ping {
    let tab = format!("tab{}", n % 3);
    ping(PingKind::PageView, &tab, format!("https://example.com/{n}"))
}

/// Two replicas (two connections, two services) track 1,000 page views of one visitor, eight
/// requests in flight on each: every page view is counted, every message numbered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_count_every_update() {
    const UPDATES: usize = 1_000;
    const REPLICAS: usize = 2;
    const IN_FLIGHT: usize = 8;
    let server = RedisServer::start();
    let site = SiteId::from("race");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let mut config = Config::default();
    config.limits.max_write_attempts = 10_000;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        let store: Arc<dyn Store> = Arc::new(connect(&server, "tippen").await);
        replicas.push(Arc::new(Tippen::new(store, clock.clone(), config.clone())));
    }
    let messages = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..REPLICAS * IN_FLIGHT {
        let tippen = replicas[worker % REPLICAS].clone();
        let (site, messages) = (site.clone(), messages.clone());
        tasks.push(tokio::spawn(async move {
            for n in (worker..UPDATES).step_by(REPLICAS * IN_FLIGHT) {
                let outcome = tippen
                    .track(&site, "racer", &page_view(n), None)
                    .await
                    .expect("track under contention");
                messages.fetch_add(outcome.messages.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let check = connect(&server, "tippen").await;
    let record = check
        .visitor(&site, "racer")
        .await
        .expect("read")
        .expect("the visitor exists");
    assert_eq!(
        record.value.page_views as usize, UPDATES,
        "every concurrent page view counted"
    );
    assert_eq!(record.value.tabs.len(), 3, "three tabs");
    assert_eq!(
        check.sequence(&site).await.expect("sequence"),
        messages.load(Ordering::Relaxed),
        "one sequence number per message, none shared"
    );
    eprintln!(
        "{UPDATES} page views of one visitor from {REPLICAS} replicas x {IN_FLIGHT} in flight: \
         {elapsed:?}, final version {}",
        record.version.0
    );
}

fn heartbeat(tab: &str) -> Ping {
    ping(
        PingKind::Heartbeat,
        tab,
        format!("https://example.com/{tab}"),
    )
}

/// A heartbeat that changes nothing a dashboard sees is a touch: the stored record is not
/// rewritten, the deadline moves later, no sequence number is taken, every read sees the
/// heartbeat, a sweep at the old deadline leaves the visitor, and the next page view writes
/// the whole record again. Two replicas heartbeating two tabs at once lose neither tab's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_only_moves_the_deadline() {
    let server = RedisServer::start();
    let site = SiteId::from("touch");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let mut config = Config::default();
    config.limits.max_write_attempts = 10_000;
    let store = Arc::new(connect(&server, "tippen").await);
    let tippen = Tippen::new(store.clone(), clock.clone(), config.clone());
    let raw = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&server.url()).expect("url"),
    )
    .build()
    .expect("client");
    raw.init().await.expect("raw connection");
    let record_key = "{tippen:touch}:visitors";
    let deadline_key = "{tippen:touch}:visitor_deadlines";
    let touch_key = "{tippen:touch}:visitor_touches";

    let mut first = heartbeat("a");
    first.kind = PingKind::PageView;
    tippen
        .track(&site, "hb", &first, None)
        .await
        .expect("page view");
    let stored: String = raw.hget(record_key, "hb").await.expect("HGET");
    let read = store.visitor(&site, "hb").await.unwrap().expect("stored");
    let deadline: f64 = raw.zscore(deadline_key, "hb").await.expect("ZSCORE");
    assert_eq!(deadline, read.value.deadline.as_millis() as f64);
    let sequence = store.sequence(&site).await.unwrap();

    clock.advance(Duration::from_secs(10));
    let outcome = tippen
        .track(&site, "hb", &heartbeat("a"), None)
        .await
        .expect("heartbeat");
    assert!(
        outcome.messages.is_empty(),
        "a heartbeat tells no dashboard"
    );
    let after: String = raw.hget(record_key, "hb").await.expect("HGET");
    assert_eq!(after, stored, "the record itself is not rewritten");
    let touch: Option<String> = raw.hget(touch_key, "hb").await.expect("HGET");
    assert!(touch.is_some(), "the heartbeat is kept beside the record");
    let moved: f64 = raw.zscore(deadline_key, "hb").await.expect("ZSCORE");
    assert_eq!(
        moved,
        deadline + 10_000.0,
        "the deadline moved by the heartbeat's delay"
    );
    assert_eq!(
        store.sequence(&site).await.unwrap(),
        sequence,
        "no sequence number taken"
    );
    let touched = store.visitor(&site, "hb").await.unwrap().expect("stored");
    assert_eq!(
        touched.version.0,
        read.version.0 + 1,
        "a touch is a version"
    );
    assert_eq!(
        touched.value.tabs[0].last_seen,
        Timestamp::from_millis(T0 + 10_000)
    );
    assert_eq!(touched.value.deadline.as_millis() as f64, moved);
    assert_eq!(
        store.visitors(&site).await.unwrap(),
        vec![touched.value.clone()],
        "the snapshot sees the touch"
    );
    // A write at the version before the touch conflicts, touch or save.
    assert!(matches!(
        store.touch_visitor(&site, &read.value, read.version).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store
            .save_visitor(&site, &read.value, Some(read.version))
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.remove_visitor(&site, "hb", read.version).await,
        Err(StoreError::Conflict)
    ));

    // At the old deadline the sweep finds nothing due.
    clock.set(Timestamp::from_millis(deadline as i64));
    let swept = tippen.sweep(&site).await.expect("sweep");
    assert!(swept.messages.is_empty(), "{:?}", swept.messages);
    assert!(store.visitor(&site, "hb").await.unwrap().is_some());

    // Two replicas heartbeat two tabs at once: every touch is on the latest version, so
    // neither tab's heartbeat is lost.
    let mut second = heartbeat("b");
    second.kind = PingKind::PageView;
    tippen
        .track(&site, "hb", &second, None)
        .await
        .expect("tab b");
    let beat = tippen.now().plus(Duration::from_secs(5));
    clock.set(beat);
    let other = Arc::new(Tippen::new(
        Arc::new(connect(&server, "tippen").await),
        clock.clone(),
        config,
    ));
    let tippen = Arc::new(tippen);
    let mut tasks = Vec::new();
    for (replica, tab) in [(tippen.clone(), "a"), (other, "b")] {
        let site = site.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let outcome = replica
                    .track(&site, "hb", &heartbeat(tab), None)
                    .await
                    .expect("concurrent heartbeat");
                assert!(outcome.messages.is_empty());
            }
        }));
    }
    for task in tasks {
        task.await.expect("replica");
    }
    let both = store.visitor(&site, "hb").await.unwrap().expect("stored");
    for tab in &both.value.tabs {
        assert_eq!(tab.last_seen, beat, "tab {} kept its heartbeat", tab.tab_id);
    }
    assert_eq!(both.value.tabs.len(), 2);

    // A page view writes the whole record, with what the touches moved, and drops the touch.
    let mut view = heartbeat("a");
    view.kind = PingKind::PageView;
    tippen
        .track(&site, "hb", &view, None)
        .await
        .expect("page view");
    let touch: Option<String> = raw.hget(touch_key, "hb").await.expect("HGET");
    assert_eq!(touch, None, "a save drops the touch");
    let saved = store.visitor(&site, "hb").await.unwrap().expect("stored");
    let b = saved.value.tabs.iter().find(|t| t.tab_id == "b").unwrap();
    assert_eq!(b.last_seen, beat, "the save kept what the touch moved");
}

/// The store's own conditional writes from two connections, with retry: 1,000 increments,
/// none lost, and the conflicts that forced the retries counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_with_retry_from_two_connections() {
    const UPDATES: usize = 1_000;
    const WORKERS: usize = 16;
    let server = RedisServer::start();
    let site = SiteId::from("cas");
    let stores = [
        Arc::new(connect(&server, "tippen").await),
        Arc::new(connect(&server, "tippen").await),
    ];
    let mut first = sample_record("v", T0, T0 + 60_000);
    first.page_views = 0;
    stores[0]
        .save_visitor(&site, &first, None)
        .await
        .expect("insert");
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let store = stores[worker % 2].clone();
        let (site, conflicts) = (site.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            for _ in (worker..UPDATES).step_by(WORKERS) {
                loop {
                    let read = store.visitor(&site, "v").await.expect("read").expect("v");
                    let mut next = read.value.clone();
                    next.page_views += 1;
                    next.deadline = Timestamp::from_millis(T0 + 60_000 + next.page_views as i64);
                    match store.save_visitor(&site, &next, Some(read.version)).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("write failed: {e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let last = stores[1]
        .visitor(&site, "v")
        .await
        .expect("read")
        .expect("v");
    assert_eq!(last.value.page_views as usize, UPDATES, "no increment lost");
    assert_eq!(
        last.version,
        Version(UPDATES as u64 + 1),
        "one version per write"
    );
    assert_eq!(
        stores[1].next_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(T0 + 60_000 + UPDATES as i64)),
        "the index holds the last write's deadline"
    );
    eprintln!(
        "{UPDATES} conditional increments from {WORKERS} workers on 2 connections: {} conflicts \
         retried",
        conflicts.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_at_one_version_exactly_one_wins() {
    let server = RedisServer::start();
    let (a, b) = (
        connect(&server, "tippen").await,
        connect(&server, "tippen").await,
    );
    let site = SiteId::from("pair");
    let v1 = a
        .save_visitor(&site, &sample_record("v", T0, T0 + 1_000), None)
        .await
        .expect("insert");
    let (for_a, for_b) = (
        sample_record("v", T0, T0 + 2_000),
        sample_record("v", T0, T0 + 3_000),
    );
    let (ra, rb) = tokio::join!(
        a.save_visitor(&site, &for_a, Some(v1)),
        b.save_visitor(&site, &for_b, Some(v1)),
    );
    let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    let conflicts = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict)))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{ra:?} {rb:?}");
    let winner_deadline = if ra.is_ok() { T0 + 2_000 } else { T0 + 3_000 };
    assert_eq!(
        b.next_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(winner_deadline)),
        "the loser left no index entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_site_loses_its_keys_and_data_and_no_other_site_does() {
    use tippen_core::{KeyHash, Site};
    let server = RedisServer::start();
    let store = connect(&server, "tippen").await;
    let (gone, kept) = (SiteId::from("gone"), SiteId::from("kept"));
    store
        .put_site(&Site::new("gone", "Gone", "pk_gone", "sk_gone"))
        .await
        .expect("put");
    store
        .put_site(&Site::new("kept", "Kept", "pk_kept", "sk_kept"))
        .await
        .expect("put");
    for site in [&gone, &kept] {
        store
            .save_visitor(site, &sample_record("v", T0, T0 + 1_000), None)
            .await
            .expect("visitor");
        store
            .save_user(
                site,
                &tippen_core::testkit::sample_user("u", T0, T0 + 1_000),
                None,
            )
            .await
            .expect("user");
        store.advance_sequence(site, 3).await.expect("sequence");
    }
    assert!(store.remove_site(&gone).await.expect("remove"));
    assert!(
        !store.remove_site(&gone).await.expect("remove again"),
        "a second removal finds nothing"
    );
    assert_eq!(
        store
            .site_by_key(&KeyHash::of("sk_gone"))
            .await
            .expect("by key"),
        None
    );
    assert_eq!(
        store
            .site_by_key(&KeyHash::of("pk_gone"))
            .await
            .expect("by key"),
        None
    );
    assert!(store.visitors(&gone).await.expect("visitors").is_empty());
    assert!(store.users(&gone).await.expect("users").is_empty());
    assert_eq!(store.next_deadline(&gone).await.expect("next"), None);
    assert_eq!(store.next_user_deadline(&gone).await.expect("next"), None);
    assert_eq!(store.sequence(&gone).await.expect("sequence"), 0);
    let sites = store.sites().await.expect("sites");
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0].id, kept);
    assert!(
        store
            .site_by_key(&KeyHash::of("sk_kept"))
            .await
            .expect("by key")
            .is_some()
    );
    assert_eq!(store.visitors(&kept).await.expect("visitors").len(), 1);
    assert_eq!(store.users(&kept).await.expect("users").len(), 1);
    assert_eq!(store.sequence(&kept).await.expect("sequence"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_values_are_reported_not_panicked_on() {
    let server = RedisServer::start();
    let store = connect(&server, "tippen").await;
    let raw = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&server.url()).expect("url"),
    )
    .build()
    .expect("client");
    raw.init().await.expect("raw connection");
    let site = SiteId::from("bad");
    let _: () = raw
        .hset("{tippen:bad}:visitors", ("noversion", "{}"))
        .await
        .expect("hset");
    let _: () = raw
        .hset("{tippen:bad}:visitors", ("badjson", "3:{nope"))
        .await
        .expect("hset");
    let _: () = raw
        .hset("{tippen:bad}:meta", ("sequence", "many"))
        .await
        .expect("hset");
    assert!(matches!(
        store.visitor(&site, "noversion").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.visitor(&site, "badjson").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.visitors(&site).await,
        Err(StoreError::Corrupt(_))
    ));
    let mut r = sample_record("noversion", T0, T0 + 1);
    assert!(
        matches!(
            store.save_visitor(&site, &r, Some(Version(1))).await,
            Err(StoreError::Corrupt(_))
        ),
        "a write over a value without a version reports it"
    );
    r.visitor_id = "badjson".to_owned();
    assert!(
        matches!(
            store.save_visitor(&site, &r, Some(Version(2))).await,
            Err(StoreError::Conflict)
        ),
        "a stale version still conflicts"
    );
    store
        .save_visitor(&site, &r, Some(Version(3)))
        .await
        .expect("the right version replaces a corrupt record");
    assert!(matches!(
        store.sequence(&site).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(
        matches!(
            store.advance_sequence(&site, 1).await,
            Err(StoreError::Backend(_))
        ),
        "HINCRBY on a non-number is Redis's error"
    );
    assert!(matches!(
        store.advance_sequence(&site, u64::MAX).await,
        Err(StoreError::Backend(_))
    ));
    raw.quit().await.expect("quit");
}

/// Values at the edges of their types are stored or refused with an error, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_values_round_trip() {
    use tippen_core::enrichment::{CachedLookup, CachedOutcome, FailureKind};
    let server = RedisServer::start();
    let store = connect(&server, "tippen").await;
    let site = SiteId::from("edges");
    for (id, deadline) in [("max", i64::MAX), ("min", i64::MIN), ("zero", 0)] {
        store
            .save_visitor(&site, &sample_record(id, T0, deadline), None)
            .await
            .expect("saved");
    }
    assert_eq!(
        store.next_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(i64::MIN))
    );
    let due = store
        .due_visitors(&site, Timestamp::from_millis(i64::MAX), usize::MAX)
        .await
        .expect("due");
    let ids: Vec<&str> = due.iter().map(|v| v.value.visitor_id.as_str()).collect();
    assert_eq!(
        ids,
        ["min", "zero", "max"],
        "every deadline is due at the end of time"
    );
    assert!(
        store
            .due_visitors(&site, Timestamp::from_millis(0), 0)
            .await
            .expect("due")
            .is_empty(),
        "limit 0"
    );
    let ip: std::net::IpAddr = "2001:db8::1".parse().expect("ip");
    let forever = CachedLookup {
        outcome: CachedOutcome::Failed {
            kind: FailureKind::NotFound,
        },
        looked_up_at: Timestamp::from_millis(i64::MIN),
        expires_at: Timestamp::from_millis(i64::MAX),
    };
    store
        .put_cached_lookup(ip, &forever)
        .await
        .expect("an entry that never expires is kept (for at most a year)");
    assert_eq!(store.cached_lookup(ip).await.expect("read"), Some(forever));
    assert_eq!(
        store
            .advance_sequence(&site, i64::MAX as u64)
            .await
            .expect("advance"),
        i64::MAX as u64
    );
    assert!(
        matches!(
            store.advance_sequence(&site, 1).await,
            Err(StoreError::Backend(_))
        ),
        "an overflowing sequence is Redis's error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_a_backend_error() {
    let server = RedisServer::start();
    let store = RedisStore::connect_with(
        &server.url(),
        RedisOptions::default().with_command_timeout(Duration::from_millis(500)),
    )
    .await
    .expect("connect");
    let site = SiteId::from("gone");
    store.advance_sequence(&site, 1).await.expect("works first");
    drop(server);
    let started = Instant::now();
    let result = store.advance_sequence(&site, 1).await;
    assert!(
        matches!(result, Err(StoreError::Backend(_))),
        "a dead server fails the call: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the command timeout, not hanging: {:?}",
        started.elapsed()
    );
}

/// Redis restarts (empty: no persistence in the test, and no scripts loaded): the store
/// reconnects by itself, loads its scripts again, and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reconnects_to_a_restarted_server() {
    let server = RedisServer::start();
    let port = server.port();
    let store = RedisStore::connect_with(
        &server.url(),
        RedisOptions::default().with_command_timeout(Duration::from_millis(500)),
    )
    .await
    .expect("connect");
    let site = SiteId::from("restart");
    store
        .save_visitor(&site, &sample_record("before", T0, T0 + 1), None)
        .await
        .expect("works first");
    drop(server);
    let _server = RedisServer::start_on(port);
    let started = Instant::now();
    let version = loop {
        match store
            .save_visitor(&site, &sample_record("after", T0, T0 + 2), None)
            .await
        {
            Ok(v) => break v,
            Err(StoreError::Backend(e)) => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "not reconnected within 15 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    };
    assert_eq!(version, Version(1), "a script run on the new server");
    assert_eq!(
        store.next_deadline(&site).await.expect("next"),
        Some(Timestamp::from_millis(T0 + 2)),
        "the new server holds only what was written to it"
    );
    eprintln!("reconnected {:?} after the restart", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_fails_with_what_went_wrong() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, RedisError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let err = RedisStore::connect("not a url").await.expect_err("bad url");
    assert!(matches!(err, RedisError::Url(_)), "{err}");
    let err = RedisStore::connect("rediss://127.0.0.1:1")
        .await
        .expect_err("TLS is refused, never downgraded to plain text");
    assert!(matches!(err, RedisError::Url(_)), "{err}");
    let err = RedisStore::connect_with(
        "redis://127.0.0.1:1",
        RedisOptions::default().with_namespace("a{b"),
    )
    .await
    .expect_err("bad namespace");
    assert!(matches!(err, RedisError::Options(_)), "{err}");
    let err = RedisStore::connect("redis://user:hunter2@127.0.0.1:1")
        .await
        .expect_err("nothing listens");
    assert!(
        !err.to_string().contains("hunter2"),
        "no password in errors: {err}"
    );
}

/// Two identical audit entries (same time, same content) are two entries, and entries of one
/// millisecond read back newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_audit_entries_both_stay() {
    use tippen_core::audit::{Actor, AuditEntry, Outcome};
    let server = RedisServer::start();
    let store = connect(&server, "tippen").await;
    let site = SiteId::from("audited");
    let entry = |target: &str| AuditEntry {
        at: Timestamp::from_millis(T0),
        site: site.clone(),
        actor: Actor::operator(),
        action: "key.revoke".to_owned(),
        target: Some(target.to_owned()),
        address: None,
        outcome: Outcome::Done,
    };
    let keep_after = Timestamp::from_millis(T0 - 1);
    for target in ["a", "a", "b"] {
        store
            .log_audit(&entry(target), keep_after)
            .await
            .expect("log_audit");
    }
    assert_eq!(
        store
            .audit_log(&site, Timestamp::from_millis(T0), 10)
            .await
            .expect("audit_log"),
        vec![entry("b"), entry("a"), entry("a")]
    );
}
