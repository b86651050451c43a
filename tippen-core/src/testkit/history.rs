//! The history store conformance suite: what every [`HistoryStore`] must do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::clock::{ManualClock, Timestamp};
use crate::config::Config;
use crate::history::{
    Device, DeviceClass, HistoryStore, PageVisit, Place, PutVisit, Rollup, RollupKey, RollupQuery,
    RollupScope, RollupSelect, Utm, Visit, VisitCompany, VisitCursor, VisitFilter, VisitQuery,
};
use crate::memory::MemoryStore;
use crate::presence::{EnrichmentSource, Ping, PingKind, RemovalReason, Visibility};
use crate::service::Tippen;
use crate::site::SiteId;
use crate::store::{StoreError, Version};

use super::{T0, site_id};

/// Runs every history check against `store`. Site ids start with `prefix`.
pub async fn run_history_suite(store: Arc<dyn HistoryStore>, prefix: &str) {
    visits_round_trip(&*store, prefix).await;
    visit_queries(&*store, prefix).await;
    visit_pages_with_cursors(&*store, prefix).await;
    erasure(&*store, prefix).await;
    rollups_are_conditional(&*store, prefix).await;
    rollup_ranges(&*store, prefix).await;
    top_companies_rank_like_all_of_them(&*store, prefix).await;
    purge_by_retention(&*store, prefix).await;
    concurrent_folds_lose_nothing(store.clone(), prefix).await;
    visits_close_through_the_service(store, prefix).await;
}

/// A closed visit of `visitor_id` starting `start_ms`, lasting a minute over `pages` (a
/// minute each, from the start), of `company` (a domain) in `country`.
pub fn sample_visit(
    site: &SiteId,
    visitor_id: &str,
    start_ms: i64,
    company: Option<&str>,
    country: Option<&str>,
    pages: &[&str],
) -> Visit {
    let start = Timestamp::from_millis(start_ms);
    let pages: Vec<PageVisit> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| PageVisit {
            path: (*p).into(),
            at: Timestamp::from_millis(start_ms + i as i64 * 60_000),
            duration_ms: 60_000,
        })
        .collect();
    let end = Timestamp::from_millis(start_ms + pages.len() as i64 * 60_000);
    Visit {
        site: site.clone(),
        visit_id: crate::history::visit_id(visitor_id, start),
        visitor_id: visitor_id.to_owned(),
        started_at: start,
        ended_at: end,
        duration_ms: (end.as_millis() - start_ms) as u64,
        landing_page: pages
            .first()
            .map(|p| p.path.to_string())
            .unwrap_or_default(),
        exit_page: pages.last().map(|p| p.path.to_string()).unwrap_or_default(),
        page_views: pages.len() as u64,
        pages,
        more_pages: 0,
        referrer: Some("https://www.google.com/search?q=tippen".to_owned()),
        utm: Utm {
            source: Some("newsletter".to_owned()),
            ..Utm::default()
        },
        device: Device {
            browser: "Chrome".to_owned(),
            os: "Linux".to_owned(),
            class: DeviceClass::Desktop,
        },
        place: Place::new(country, Some("Springfield")),
        company: company.map(|domain| VisitCompany {
            name: format!("Company {domain}"),
            domain: Some(domain.to_owned()),
            industry: Some("Software".to_owned()),
            size: Some("51-200".to_owned()),
            revenue: Some("$10M-$50M".to_owned()),
            source: EnrichmentSource::Provider,
        }),
        is_bot: false,
        visit_number: 1,
        invites: Vec::new(),
        end_reason: RemovalReason::Left,
    }
}

fn query(from_ms: i64, to_ms: i64, filter: VisitFilter, limit: usize) -> VisitQuery {
    VisitQuery {
        from: Timestamp::from_millis(from_ms),
        to: Timestamp::from_millis(to_ms),
        filter,
        after: None,
        limit,
    }
}

fn ids(visits: &[Visit]) -> Vec<String> {
    visits.iter().map(|v| v.visit_id.clone()).collect()
}

/// A visit is stored by id: a put of a new id inserts, of a known id replaces; a get finds
/// it; sites are isolated.
pub async fn visits_round_trip(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-rt");
    let other = site_id(prefix, "hist-rt-other");
    let mut v = sample_visit(
        &site,
        "v1",
        T0,
        Some("acme.example"),
        Some("US"),
        &["/", "/a"],
    );
    v.invites.push(crate::history::VisitInvite {
        invite_id: "inv_1".to_owned(),
        state: crate::protocol::InviteState::Accepted,
        sent_at: Timestamp::from_millis(T0 + 1000),
        updated_at: Timestamp::from_millis(T0 + 2000),
    });
    assert_eq!(store.visit(&site, &v.visit_id).await.expect("visit"), None);
    assert_eq!(
        store.put_visit(&site, &v).await.expect("put_visit"),
        PutVisit::Inserted,
        "a new visit id inserts"
    );
    assert_eq!(
        store.visit(&site, &v.visit_id).await.expect("visit"),
        Some(v.clone()),
        "round trip"
    );
    v.pages.push(PageVisit {
        path: "/b".into(),
        at: Timestamp::from_millis(T0 + 120_000),
        duration_ms: 5,
    });
    assert_eq!(
        store.put_visit(&site, &v).await.expect("put_visit"),
        PutVisit::Replaced,
        "a known visit id replaces"
    );
    assert_eq!(
        store.visit(&site, &v.visit_id).await.expect("visit"),
        Some(v.clone()),
        "the replacement is stored"
    );
    assert_eq!(
        store
            .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 10))
            .await
            .expect("visits")
            .len(),
        1,
        "a replaced visit is not doubled"
    );
    assert_eq!(
        store.visit(&other, &v.visit_id).await.expect("visit"),
        None,
        "sites are isolated"
    );
}

/// Range and filters, newest first.
pub async fn visit_queries(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-q");
    let m = 60_000;
    let visits = [
        sample_visit(
            &site,
            "a",
            T0,
            Some("acme.example"),
            Some("US"),
            &["/", "/pricing"],
        ),
        sample_visit(
            &site,
            "b",
            T0 + 10 * m,
            Some("globex.example"),
            Some("DE"),
            &["/"],
        ),
        sample_visit(
            &site,
            "a",
            T0 + 20 * m,
            Some("acme.example"),
            Some("US"),
            &["/docs"],
        ),
        sample_visit(&site, "c", T0 + 30 * m, None, None, &["/pricing", "/"]),
        sample_visit(
            &site,
            "d",
            T0 + 40 * m,
            Some("ACME.example"),
            Some("fr"),
            &["/x"],
        ),
    ];
    for v in &visits {
        store.put_visit(&site, v).await.expect("put_visit");
    }
    let all = store
        .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 100))
        .await
        .expect("visits");
    let newest_first: Vec<String> = visits.iter().rev().map(|v| v.visit_id.clone()).collect();
    assert_eq!(ids(&all), newest_first, "newest first");
    let range = store
        .visits(
            &site,
            &query(T0 + 10 * m, T0 + 30 * m, VisitFilter::default(), 100),
        )
        .await
        .expect("visits");
    assert_eq!(
        ids(&range),
        [visits[2].visit_id.clone(), visits[1].visit_id.clone()],
        "from <= started_at < to"
    );
    let cases: [(VisitFilter, Vec<usize>, &str); 5] = [
        (
            VisitFilter {
                company: Some("acme.example".to_owned()),
                ..VisitFilter::default()
            },
            vec![4, 2, 0],
            "company (case-insensitive)",
        ),
        (
            VisitFilter {
                page: Some("/pricing".to_owned()),
                ..VisitFilter::default()
            },
            vec![3, 0],
            "page",
        ),
        (
            VisitFilter {
                country: Some("us".to_owned()),
                ..VisitFilter::default()
            },
            vec![2, 0],
            "country",
        ),
        (
            VisitFilter {
                visitor: Some("a".to_owned()),
                ..VisitFilter::default()
            },
            vec![2, 0],
            "visitor",
        ),
        (
            VisitFilter {
                company: Some("acme.example".to_owned()),
                page: Some("/docs".to_owned()),
                ..VisitFilter::default()
            },
            vec![2],
            "company and page",
        ),
    ];
    for (filter, want, what) in cases {
        let got = store
            .visits(&site, &query(0, i64::MAX, filter, 100))
            .await
            .expect("visits");
        let want: Vec<String> = want.iter().map(|&i| visits[i].visit_id.clone()).collect();
        assert_eq!(ids(&got), want, "filter by {what}");
    }
    let limited = store
        .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 2))
        .await
        .expect("visits");
    assert_eq!(ids(&limited), newest_first[..2], "limit");
}

/// Paging with cursors returns every matching visit exactly once, in order, also when
/// visits share a start time.
pub async fn visit_pages_with_cursors(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-page");
    let mut all = Vec::new();
    for i in 0..23 {
        // Pairs share a start: the id breaks the tie.
        let start = T0 + (i / 2) * 1000;
        let country = if i % 3 == 0 { "NL" } else { "BE" };
        let v = sample_visit(&site, &format!("p{i}"), start, None, Some(country), &["/"]);
        store.put_visit(&site, &v).await.expect("put_visit");
        all.push(v);
    }
    all.sort_by(|a, b| (b.started_at, &b.visit_id).cmp(&(a.started_at, &a.visit_id)));
    for (filter, want) in [
        (VisitFilter::default(), all.clone()),
        (
            VisitFilter {
                country: Some("NL".to_owned()),
                ..VisitFilter::default()
            },
            all.iter()
                .filter(|v| v.place.country.as_deref() == Some("NL"))
                .cloned()
                .collect(),
        ),
    ] {
        let mut q = query(0, i64::MAX, filter, 5);
        let mut got = Vec::new();
        loop {
            let page = store.visits(&site, &q).await.expect("visits");
            assert!(page.len() <= 5, "a page holds at most the limit");
            let Some(last) = page.last() else { break };
            q.after = Some(VisitCursor::after(last));
            let done = page.len() < 5;
            got.extend(page);
            if done {
                break;
            }
        }
        assert_eq!(
            ids(&got),
            ids(&want),
            "pages cover every visit once, in order"
        );
    }
}

/// Erasing a visitor deletes (and returns) its visits, and only its.
pub async fn erasure(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-erase");
    let other = site_id(prefix, "hist-erase-other");
    let gone = [
        sample_visit(&site, "gone", T0, None, None, &["/"]),
        sample_visit(&site, "gone", T0 + 5000, None, None, &["/a"]),
    ];
    let kept = sample_visit(&site, "kept", T0 + 1000, None, None, &["/"]);
    let elsewhere = sample_visit(&other, "gone", T0, None, None, &["/"]);
    for v in gone.iter().chain([&kept]) {
        store.put_visit(&site, v).await.expect("put_visit");
    }
    store
        .put_visit(&other, &elsewhere)
        .await
        .expect("put_visit");
    let mut erased = store.erase_visitor(&site, "gone").await.expect("erase");
    erased.sort_by_key(|v| v.started_at);
    assert_eq!(erased, gone, "erase returns the erased visits");
    let left = store
        .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 10))
        .await
        .expect("visits");
    assert_eq!(left, [kept], "only the visitor's visits go");
    assert_eq!(
        store.visit(&site, &gone[0].visit_id).await.expect("visit"),
        None,
        "an erased visit is not found by id"
    );
    assert_eq!(
        store
            .visit(&other, &elsewhere.visit_id)
            .await
            .expect("visit"),
        Some(elsewhere),
        "another site's visitor of the same id stays"
    );
    assert!(
        store
            .erase_visitor(&site, "gone")
            .await
            .expect("erase again")
            .is_empty(),
        "erasing again finds nothing"
    );
}

fn rollup_at(scope: RollupScope, bucket_ms: i64, visits: u64) -> Rollup {
    let mut r = Rollup::new(RollupKey {
        scope,
        bucket: Timestamp::from_millis(bucket_ms),
    });
    r.visits = visits;
    r
}

/// Rollup writes are conditional on the version read, like visitor records.
pub async fn rollups_are_conditional(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-roll");
    let r = rollup_at(RollupScope::Site, 0, 1);
    assert_eq!(store.rollup(&site, &r.key).await.expect("rollup"), None);
    let v1 = store.save_rollup(&site, &r, None).await.expect("insert");
    assert!(
        matches!(
            store.save_rollup(&site, &r, None).await,
            Err(StoreError::Conflict)
        ),
        "an insert over an existing rollup conflicts"
    );
    let mut r2 = r.clone();
    r2.visits = 2;
    r2.visitors.insert("someone");
    r2.pages.add("/p", 3);
    let v2 = store
        .save_rollup(&site, &r2, Some(v1))
        .await
        .expect("update");
    assert_ne!(v1, v2, "a write makes a new version");
    assert!(
        matches!(
            store.save_rollup(&site, &r, Some(v1)).await,
            Err(StoreError::Conflict)
        ),
        "a write on a stale version conflicts"
    );
    assert!(
        matches!(
            store
                .save_rollup(
                    &site,
                    &rollup_at(RollupScope::Site, 3_600_000, 1),
                    Some(Version(1))
                )
                .await,
            Err(StoreError::Conflict)
        ),
        "an update of a missing rollup conflicts"
    );
    let back = store
        .rollup(&site, &r.key)
        .await
        .expect("rollup")
        .expect("stored");
    assert_eq!((back.version, back.value), (v2, r2), "round trip");
    assert_eq!(
        store
            .rollup(&site_id(prefix, "hist-roll-other"), &r.key)
            .await
            .expect("rollup"),
        None,
        "sites are isolated"
    );
}

/// A range query returns the selected scope's buckets in `[from, to)`.
pub async fn rollup_ranges(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-range");
    let h = 3_600_000;
    let d = 24 * h;
    let acme = || RollupScope::Company("acme.example".to_owned());
    let globex = || RollupScope::Company("globex.example".to_owned());
    let stored = [
        rollup_at(RollupScope::Site, 0, 1),
        rollup_at(RollupScope::Site, h, 2),
        rollup_at(RollupScope::Site, 2 * h, 3),
        rollup_at(acme(), 0, 4),
        rollup_at(acme(), d, 5),
        rollup_at(globex(), 0, 6),
    ];
    for r in &stored {
        store.save_rollup(&site, r, None).await.expect("insert");
    }
    let get = async |select, from, to| {
        let mut got: Vec<u64> = store
            .rollups(
                &site,
                &RollupQuery {
                    select,
                    from: Timestamp::from_millis(from),
                    to: Timestamp::from_millis(to),
                },
            )
            .await
            .expect("rollups")
            .iter()
            .map(|r| r.visits)
            .collect();
        got.sort();
        got
    };
    assert_eq!(get(RollupSelect::Site, h, 2 * h).await, [2], "[from, to)");
    assert_eq!(get(RollupSelect::Site, 0, 3 * h).await, [1, 2, 3], "site");
    assert_eq!(
        get(RollupSelect::Companies, 0, 2 * d).await,
        [4, 5, 6],
        "companies"
    );
    assert_eq!(
        get(RollupSelect::Company("acme.example".to_owned()), 0, 2 * d).await,
        [4, 5],
        "one company"
    );
    assert_eq!(
        get(RollupSelect::Companies, d, 2 * d).await,
        [5],
        "companies in range"
    );
}

/// [`HistoryStore::top_company_rollups`] gives the same first companies as all the rollups
/// would, ties and updated counts included.
pub async fn top_companies_rank_like_all_of_them(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-top");
    let d = 24 * 3_600_000;
    let company = |name: &str| RollupScope::Company(format!("{name}.example"));
    // (company, day, visits): totals a 9, b 7 (after an update), c 7 (seen later than b), d 3,
    // e 0, f 1 outside the range.
    for (name, day, visits) in [
        ("a", 0, 4),
        ("a", 1, 5),
        ("b", 0, 2),
        ("c", 1, 7),
        ("d", 0, 1),
        ("d", 1, 2),
        ("e", 0, 0),
        ("f", 3, 1),
    ] {
        let mut r = rollup_at(company(name), day * d, visits);
        r.last_at = Some(Timestamp::from_millis(day * d + 1_000));
        store.save_rollup(&site, &r, None).await.expect("insert");
    }
    let key = RollupKey {
        scope: company("b"),
        bucket: Timestamp::from_millis(0),
    };
    let stored = store.rollup(&site, &key).await.expect("rollup").expect("b");
    let mut b = stored.value;
    b.visits = 7;
    store
        .save_rollup(&site, &b, Some(stored.version))
        .await
        .expect("update");
    let query = RollupQuery {
        select: RollupSelect::Companies,
        from: Timestamp::from_millis(0),
        to: Timestamp::from_millis(2 * d),
    };
    let all = crate::history::company_summaries(&store.rollups(&site, &query).await.expect("all"));
    assert_eq!(
        all.iter()
            .map(|c| (c.key.as_str(), c.visits))
            .collect::<Vec<_>>(),
        // Ties go to the company seen last.
        [
            ("a.example", 9),
            ("c.example", 7),
            ("b.example", 7),
            ("d.example", 3)
        ]
    );
    for top in 0..=6 {
        let some = store
            .top_company_rollups(&site, &query, top)
            .await
            .expect("top");
        let mut ranked = crate::history::company_summaries(&some);
        ranked.truncate(top);
        assert_eq!(ranked, all[..top.min(all.len())], "the first {top}");
    }
}

/// Purging deletes visits started before the cutoff and rollups whose bucket starts before
/// it, and nothing else.
pub async fn purge_by_retention(store: &dyn HistoryStore, prefix: &str) {
    let site = site_id(prefix, "hist-purge");
    let other = site_id(prefix, "hist-purge-other");
    let h = 3_600_000;
    let old = sample_visit(&site, "old", T0, None, None, &["/"]);
    let new = sample_visit(&site, "new", T0 + 2 * h, None, None, &["/"]);
    let elsewhere = sample_visit(&other, "old", T0, None, None, &["/"]);
    for v in [&old, &new] {
        store.put_visit(&site, v).await.expect("put_visit");
    }
    store
        .put_visit(&other, &elsewhere)
        .await
        .expect("put_visit");
    let bucket = |ms| {
        RollupScope::Site
            .bucket_of(Timestamp::from_millis(ms))
            .as_millis()
    };
    store
        .save_rollup(&site, &rollup_at(RollupScope::Site, bucket(T0), 1), None)
        .await
        .expect("insert");
    store
        .save_rollup(
            &site,
            &rollup_at(RollupScope::Site, bucket(T0 + 2 * h), 1),
            None,
        )
        .await
        .expect("insert");
    let purged = store
        .purge(&site, Timestamp::from_millis(T0 + h))
        .await
        .expect("purge");
    assert_eq!(purged, 1, "one visit purged");
    let left = store
        .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 10))
        .await
        .expect("visits");
    assert_eq!(left, [new], "the newer visit stays");
    let rollups = store
        .rollups(
            &site,
            &RollupQuery {
                select: RollupSelect::Site,
                from: Timestamp::EPOCH,
                to: Timestamp::from_millis(i64::MAX),
            },
        )
        .await
        .expect("rollups");
    assert_eq!(rollups.len(), 1, "the older rollup went");
    assert_eq!(
        store
            .visit(&other, &elsewhere.visit_id)
            .await
            .expect("visit"),
        Some(elsewhere),
        "other sites are not purged"
    );
}

/// Many visits closing at once into the same rollup through the service: every one counts
/// (conditional writes, retried).
pub async fn concurrent_folds_lose_nothing(store: Arc<dyn HistoryStore>, prefix: &str) {
    let site = site_id(prefix, "hist-race");
    let live = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let mut config = Config::default();
    config.limits.max_write_attempts = 10_000;
    // An exit beacon removes at once: the closes run concurrently.
    config.presence.leave_linger = Duration::ZERO;
    let tippen = Tippen::new(live, clock.clone(), config).with_history(store.clone());
    let ping = page_view("t", "https://example.com/");
    for i in 0..12 {
        tippen
            .track(&site, &format!("racer{i}"), &ping, None)
            .await
            .expect("track");
    }
    let closes = (0..12).map(|i| {
        let tippen = &tippen;
        let site = &site;
        async move { tippen.leave(site, &format!("racer{i}"), Some("t")).await }
    });
    for r in join_all(closes).await {
        r.expect("close");
    }
    let key = RollupKey {
        scope: RollupScope::Site,
        bucket: RollupScope::Site.bucket_of(Timestamp::from_millis(T0)),
    };
    let rollup = store
        .rollup(&site, &key)
        .await
        .expect("rollup")
        .expect("stored");
    assert_eq!(
        rollup.value.visits, 12,
        "every concurrent close counted once"
    );
}

fn page_view(tab: &str, url: &str) -> Ping {
    Ping {
        kind: PingKind::PageView,
        tab_id: tab.to_owned(),
        url: url.to_owned(),
        visibility: Visibility::Visible,
        referrer: None,
        user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
                .to_owned(),
        ),
        website: "example.com".to_owned(),
        client_timestamp: None,
        page_id: None,
    }
}

/// End to end through [`Tippen`]: three pages and an exit beacon make one visit with those
/// pages and durations; a second visit is numbered 2; the rollup counts both; erasing the
/// visitor removes them.
pub async fn visits_close_through_the_service(store: Arc<dyn HistoryStore>, prefix: &str) {
    let site = site_id(prefix, "hist-e2e");
    let live = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let config = Config::default();
    let linger = config.presence.leave_linger;
    let quiet = config.presence.departure_quiet;
    let tippen = Tippen::new(live, clock.clone(), config).with_history(store.clone());
    let s = Duration::from_secs(1);
    let mut first = page_view("t", "https://example.com/?utm_source=mail");
    first.referrer = Some("https://news.example/item".to_owned());
    tippen.track(&site, "v", &first, None).await.expect("track");
    clock.advance(10 * s);
    let pricing = page_view("t", "https://example.com/pricing");
    tippen
        .track(&site, "v", &pricing, None)
        .await
        .expect("track");
    clock.advance(20 * s);
    let docs = page_view("t", "https://example.com/docs");
    tippen.track(&site, "v", &docs, None).await.expect("track");
    clock.advance(5 * s);
    tippen.leave(&site, "v", Some("t")).await.expect("leave");
    clock.advance(linger + s);
    tippen.sweep(&site).await.expect("sweep");
    let visits = store
        .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 10))
        .await
        .expect("visits");
    assert_eq!(visits.len(), 1, "one visit closed");
    let v = &visits[0];
    let pages: Vec<(&str, u64)> = v.pages.iter().map(|p| (&*p.path, p.duration_ms)).collect();
    assert_eq!(
        pages,
        [("/", 10_000), ("/pricing", 20_000), ("/docs", 5_000)],
        "pages in order with their durations"
    );
    assert_eq!(
        v.duration_ms, 35_000,
        "the visit lasts until the exit beacon"
    );
    assert_eq!(v.end_reason, RemovalReason::Left);
    assert_eq!(v.utm.source.as_deref(), Some("mail"));
    assert_eq!(v.referrer.as_deref(), Some("https://news.example/item"));
    assert_eq!(v.device.browser, "Chrome");
    assert_eq!(v.visit_number, 1);
    // A second visit after the departure's quiet period.
    clock.advance(quiet + s);
    tippen.sweep(&site).await.expect("sweep");
    tippen.track(&site, "v", &first, None).await.expect("track");
    clock.advance(Config::default().presence.visible_grace + s);
    tippen.sweep(&site).await.expect("sweep");
    let visits = store
        .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 10))
        .await
        .expect("visits");
    assert_eq!(visits.len(), 2, "a second visit");
    assert_eq!(
        visits[0].visit_number, 2,
        "a returning visitor's visit is numbered"
    );
    assert_eq!(visits[0].end_reason, RemovalReason::Inactive);
    let rollups = store
        .rollups(
            &site,
            &RollupQuery {
                select: RollupSelect::Site,
                from: Timestamp::EPOCH,
                to: Timestamp::from_millis(i64::MAX),
            },
        )
        .await
        .expect("rollups");
    let visits_counted: u64 = rollups.iter().map(|r| r.visits).sum();
    assert_eq!(visits_counted, 2, "the rollups count both visits");
    tippen.delete_visitor(&site, "v").await.expect("delete");
    assert!(
        store
            .visits(&site, &query(0, i64::MAX, VisitFilter::default(), 10))
            .await
            .expect("visits")
            .is_empty(),
        "deleting the visitor erases its history"
    );
}
