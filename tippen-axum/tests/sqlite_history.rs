//! The history store conformance suite on SQLite: a file shared with the live store (as the
//! reference server runs it), and a file reopened (history survives a restart).

use std::sync::Arc;

use tippen_axum::{SqliteHistory, SqliteStore};
use tippen_core::history::{HistoryStore, VisitFilter, VisitQuery};
use tippen_core::testkit::{run_history_suite, sample_visit};
use tippen_core::{SiteId, Timestamp};

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
