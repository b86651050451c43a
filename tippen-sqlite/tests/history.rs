//! The history store conformance suite on SQLite: a file shared with the live store (as the
//! reference server runs it), and a file reopened (history survives a restart).

use std::sync::Arc;

use tippen_core::history::{HistoryStore, VisitFilter, VisitQuery};
use tippen_core::testkit::{run_history_suite, sample_visit};
use tippen_core::{SiteId, Timestamp};
use tippen_sqlite::{SqliteHistory, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_suite_next_to_the_live_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    // The live store holds the same file open, as in the reference server.
    let _live = SqliteStore::open(&path).expect("open live store");
    let history = SqliteHistory::open(&path).expect("open history");
    run_history_suite(Arc::new(history), "sqlite").await;
}

#[tokio::test]
async fn history_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let site = SiteId::from("s");
    let visit = sample_visit(
        &site,
        "v",
        1_000,
        Some("acme.example"),
        Some("US"),
        &["/", "/a"],
    );
    {
        let history = SqliteHistory::open(&path).expect("open");
        history.put_visit(&site, &visit).await.expect("put");
    }
    let history = SqliteHistory::open(&path).expect("reopen");
    let all = history
        .visits(
            &site,
            &VisitQuery {
                from: Timestamp::EPOCH,
                to: Timestamp::from_millis(i64::MAX),
                filter: VisitFilter::default(),
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("visits");
    assert_eq!(all, [visit]);
}

/// A visitor's earlier visits are counted on its own rows (the visitor index), bounded by
/// `before` and `max`, whatever other visitors' visits the site holds.
#[tokio::test]
async fn count_visits_counts_the_visitors_earlier_visits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = SqliteHistory::open(dir.path().join("t.db")).expect("open");
    let site = SiteId::from("s");
    let other = SiteId::from("other");
    for (s, visitor, at) in [
        (&site, "v", 1_000),
        (&site, "v", 2_000),
        (&site, "v", 3_000),
        (&site, "w", 1_500),
        (&other, "v", 500),
    ] {
        let visit = sample_visit(s, visitor, at, None, None, &["/"]);
        history.put_visit(s, &visit).await.expect("put");
    }
    let count = |visitor: &'static str, before: i64, max: usize| {
        let (history, site) = (&history, &site);
        async move {
            history
                .count_visits(site, visitor, Timestamp::from_millis(before), max)
                .await
                .expect("count")
        }
    };
    assert_eq!(count("v", 2_500, 10).await, 2);
    assert_eq!(count("v", 3_000, 10).await, 2, "before is exclusive");
    assert_eq!(count("v", 10_000, 10).await, 3);
    assert_eq!(count("v", 10_000, 1).await, 1, "at most max");
    assert_eq!(count("v", 1_000, 10).await, 0);
    assert_eq!(count("w", 10_000, 10).await, 1);
    assert_eq!(count("x", 10_000, 10).await, 0);
}

/// The companies' ranking reads only the rollups of the companies that rank (the covering
/// index), and a file from before the `visits` column is ranked right once reopened.
#[tokio::test]
async fn only_the_ranked_companies_are_read_also_from_an_older_file() {
    use tippen_core::history::{
        Rollup, RollupKey, RollupQuery, RollupScope, RollupSelect, company_summaries,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let site = SiteId::from("s");
    {
        let history = SqliteHistory::open(&path).expect("open");
        for (i, visits) in [3u64, 9, 1, 7, 5].into_iter().enumerate() {
            let mut r = Rollup::new(RollupKey {
                scope: RollupScope::Company(format!("c{i}.example")),
                bucket: Timestamp::from_millis(0),
            });
            r.visits = visits;
            history.save_rollup(&site, &r, None).await.expect("save");
        }
    }
    // As an older file has it: no `visits` column (its index goes first).
    let conn = rusqlite::Connection::open(&path).expect("file");
    conn.execute_batch(
        "DROP INDEX history_rollups_by_bucket;
         ALTER TABLE history_rollups DROP COLUMN visits;",
    )
    .expect("older layout");
    drop(conn);
    let history = SqliteHistory::open(&path).expect("reopen");
    let query = RollupQuery {
        select: RollupSelect::Companies,
        from: Timestamp::from_millis(0),
        to: Timestamp::from_millis(1),
    };
    let top = history
        .top_company_rollups(&site, &query, 2)
        .await
        .expect("top");
    let keys: Vec<String> = company_summaries(&top).into_iter().map(|c| c.key).collect();
    assert_eq!(
        keys,
        ["c1.example", "c3.example"],
        "only the first two are read"
    );
}

/// A history file's WAL is checkpointed by the history's own thread, not by the commits (whose
/// checkpoints `fsync` on the caller's thread: the async runtime's). Twenty visits are far below
/// SQLite's automatic checkpoint (1,000 pages), so only that thread can copy them into the file
/// itself, read here past the WAL (`immutable=1`).
#[tokio::test]
async fn the_history_checkpoints_its_wal_on_a_thread_of_its_own() {
    use rusqlite::{Connection, OpenFlags};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let history = SqliteHistory::open(&path).expect("open");
    let site = SiteId::from("s");
    for i in 0..20 {
        let visit = sample_visit(
            &site,
            &format!("visitor-{i}"),
            1_000 + i,
            Some("acme.example"),
            Some("US"),
            &["/", "/pricing"],
        );
        history.put_visit(&site, &visit).await.expect("put");
    }
    // The visits in the file itself, the WAL ignored; an error (the table not copied yet, a
    // page read mid-checkpoint) counts as none.
    let in_file = || -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM history_visits", [], |r| r.get(0)))
        .unwrap_or(0)
    };
    let wait = 10 * tippen_sqlite::history::CHECKPOINT_EVERY;
    let deadline = Instant::now() + wait;
    loop {
        let n = in_file();
        if n == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of 20 visits in the file after {wait:?}: the WAL was not checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A history call that waits for the file's write lock (held by the live store's writer, here
/// by another connection) waits on the history's thread, not on the caller's: the async
/// runtime's only thread goes on running other tasks meanwhile, and the call completes once the
/// lock is released. On the caller's thread, SQLite's busy handler slept through the wait and
/// the runtime stood still with it.
#[tokio::test(flavor = "current_thread")]
async fn a_history_write_waiting_for_the_file_does_not_stall_the_runtime() {
    use rusqlite::Connection;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let history = Arc::new(SqliteHistory::open(&path).expect("open"));
    let site = SiteId::from("s");
    let visit = sample_visit(&site, "visitor-1", 1_000, None, None, &["/"]);
    let visit_id = visit.visit_id.clone();

    let writer = Connection::open(&path).expect("second connection");
    writer
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let put = tokio::spawn({
        let (history, site) = (history.clone(), site.clone());
        async move { history.put_visit(&site, &visit).await }
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slept = started.elapsed();
    assert!(
        !put.is_finished(),
        "the put ended while the file was locked: {:?}",
        put.await
    );
    assert!(
        slept < Duration::from_secs(1),
        "a 50 ms timer took {slept:?} while the put waited: the runtime's thread was blocked"
    );
    writer.execute_batch("COMMIT").expect("release the lock");
    put.await
        .expect("the put's task")
        .expect("the put once the lock is released");
    let stored = history.visit(&site, &visit_id).await.expect("read");
    assert!(stored.is_some(), "the visit was not stored");
}
