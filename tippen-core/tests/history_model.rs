//! Model-based property test of visit history.
//!
//! Random sequences of page views, heartbeats, exit beacons, clock advances, sweeps,
//! restarts (a new service over the same stores) and injected history failures (the next
//! rollup write fails, so the operation that closes a visit fails after its visit was
//! stored and is retried later) run against the real service and a small reference model of
//! presence and pages. At the end every visit is closed (time runs out, a sweep) and the
//! stored visits must be exactly the model's: one per visit (none lost, none doubled), each
//! with the model's pages in order and their durations, start and end, and visit number. The
//! rollups count every visit once when no failure was injected.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use proptest::prelude::*;
use tippen_core::history::{
    HistoryStore, MemoryHistory, PutVisit, Rollup, RollupKey, RollupQuery, RollupSelect, Visit,
    VisitFilter, VisitQuery,
};
use tippen_core::presence::{Ping, PingKind, Visibility};
use tippen_core::{
    Config, ManualClock, MemoryStore, SiteId, StoreError, Timestamp, Tippen, Version, Versioned,
};

const VISIBLE_MS: i64 = 60_000;
const LINGER_MS: i64 = 2_000;
const QUIET_MS: i64 = 10_000;
const PATHS: [&str; 3] = ["/a", "/b", "/c"];

#[derive(Clone, Debug)]
enum Op {
    Ping {
        visitor: u8,
        tab: u8,
        page_view: bool,
        path: u8,
    },
    Leave {
        visitor: u8,
        tab: Option<u8>,
    },
    Advance(i64),
    Sweep,
    Restart,
    FailNextRollupWrite,
}

fn op() -> impl Strategy<Value = Op> {
    let ping =
        (0u8..2, 0u8..2, any::<bool>(), 0u8..3).prop_map(|(visitor, tab, page_view, path)| {
            Op::Ping {
                visitor,
                tab,
                page_view,
                path,
            }
        });
    let leave = (0u8..2, prop::option::weighted(0.8, 0u8..2))
        .prop_map(|(visitor, tab)| Op::Leave { visitor, tab });
    let advance = prop_oneof![
        0i64..5_000,
        Just(LINGER_MS),
        Just(LINGER_MS - 1),
        25_000i64..35_000,
        Just(VISIBLE_MS),
        Just(VISIBLE_MS - 1),
        55_000i64..65_000,
    ]
    .prop_map(Op::Advance);
    prop_oneof![
        5 => ping,
        1 => leave,
        3 => advance,
        2 => Just(Op::Sweep),
        1 => Just(Op::Restart),
        1 => Just(Op::FailNextRollupWrite),
    ]
}

/// A history store whose next rollup write fails when asked to.
struct Flaky {
    inner: MemoryHistory,
    fail_next: AtomicBool,
}

#[async_trait]
impl HistoryStore for Flaky {
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        self.inner.put_visit(site, visit).await
    }
    async fn visit(&self, site: &SiteId, id: &str) -> Result<Option<Visit>, StoreError> {
        self.inner.visit(site, id).await
    }
    async fn visits(&self, site: &SiteId, q: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        self.inner.visits(site, q).await
    }
    async fn erase_visitor(&self, site: &SiteId, v: &str) -> Result<Vec<Visit>, StoreError> {
        self.inner.erase_visitor(site, v).await
    }
    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        self.inner.rollup(site, key).await
    }
    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Backend("injected failure".into()));
        }
        self.inner.save_rollup(site, rollup, expected).await
    }
    async fn rollups(&self, site: &SiteId, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        self.inner.rollups(site, q).await
    }
    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge(site, before).await
    }
}

/// A tab as the model sees it.
#[derive(Clone, Copy, Debug)]
struct TabM {
    seen: i64,
    left: Option<i64>,
}

impl TabM {
    fn expiry(self) -> i64 {
        let e = self.seen + VISIBLE_MS;
        self.left.map_or(e, |at| e.min(at + LINGER_MS))
    }
}

/// A page of the model's open visit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PageM {
    path: String,
    at: i64,
    ms: i64,
}

#[derive(Clone, Debug, Default)]
struct VisitM {
    start: i64,
    last: i64,
    pages: Vec<PageM>,
    /// tab → (its current path, its page's index)
    tabs: BTreeMap<u8, (String, Option<usize>)>,
}

impl VisitM {
    fn extend(&mut self, tab: u8, now: i64) {
        if let Some((_, Some(i))) = self.tabs.get(&tab) {
            let p = &mut self.pages[*i];
            p.ms = p.ms.max(now - p.at);
        }
    }
}

#[derive(Default)]
struct VisitorM {
    tabs: BTreeMap<u8, TabM>,
    open: Option<VisitM>,
    /// Beacons per tab since its last ping (for the driver: a heartbeat in flight when its tab
    /// left is ignored by the service, so such a tab sends page views instead).
    left_at: BTreeMap<u8, i64>,
}

impl VisitorM {
    fn live(&self, now: i64) -> bool {
        self.tabs.values().any(|t| now < t.expiry())
    }
}

#[derive(Default)]
struct Model {
    visitors: BTreeMap<u8, VisitorM>,
    closed: Vec<(u8, VisitM)>,
}

impl Model {
    /// Closes the visitor's visit if it is over (the service may close it at a different
    /// moment, never with different content).
    fn settle(&mut self, v: u8, now: i64) {
        let vm = self.visitors.entry(v).or_default();
        if !vm.live(now) {
            if let Some(open) = vm.open.take() {
                self.closed.push((v, open));
            }
            vm.tabs.clear();
        }
    }

    fn ping(&mut self, v: u8, tab: u8, page_view: bool, path: &str, now: i64) {
        self.settle(v, now);
        let vm = self.visitors.entry(v).or_default();
        let open = vm.open.get_or_insert_with(|| VisitM {
            start: now,
            last: now,
            ..VisitM::default()
        });
        // Tabs expired by now are dropped; their pages keep their time.
        vm.tabs.retain(|_, t| now < t.expiry());
        let live: Vec<u8> = vm.tabs.keys().copied().collect();
        open.tabs.retain(|t, _| *t == tab || live.contains(t));
        open.last = open.last.max(now);
        open.extend(tab, now);
        let current = open.tabs.get(&tab).cloned();
        let opens = page_view
            || current
                .as_ref()
                .is_none_or(|(p, i)| i.is_none() || p != path);
        if opens {
            open.pages.push(PageM {
                path: path.to_owned(),
                at: now,
                ms: 0,
            });
            let i = open.pages.len() - 1;
            open.tabs.insert(tab, (path.to_owned(), Some(i)));
        } else if current.is_none() {
            open.tabs.insert(tab, (String::new(), None));
        }
        vm.tabs.insert(
            tab,
            TabM {
                seen: now,
                left: None,
            },
        );
        vm.left_at.remove(&tab);
    }

    fn leave(&mut self, v: u8, tab: Option<u8>, now: i64) {
        let vm = self.visitors.entry(v).or_default();
        let targets: Vec<u8> = match tab {
            Some(t) => vec![t],
            None => vm.tabs.keys().copied().collect(),
        };
        for t in &targets {
            vm.left_at.insert(*t, now);
        }
        if !vm.live(now) {
            return;
        }
        for t in targets {
            let Some(state) = vm.tabs.get_mut(&t) else {
                continue;
            };
            if now < state.expiry() && state.left.is_none() {
                state.left = Some(now);
                if let Some(open) = vm.open.as_mut() {
                    open.last = open.last.max(now);
                    open.extend(t, now);
                }
            }
        }
    }
}

struct Rig {
    live: Arc<MemoryStore>,
    history: Arc<Flaky>,
    clock: Arc<ManualClock>,
    tippen: Tippen,
}

fn config() -> Config {
    let mut c = Config::default();
    c.presence.visible_grace = Duration::from_millis(VISIBLE_MS as u64);
    c.presence.hidden_grace = Duration::from_millis(VISIBLE_MS as u64 * 5);
    c.presence.leave_linger = Duration::from_millis(LINGER_MS as u64);
    c.presence.departure_quiet = Duration::from_millis(QUIET_MS as u64);
    c
}

impl Rig {
    fn new() -> Rig {
        let live = Arc::new(MemoryStore::new());
        let history = Arc::new(Flaky {
            inner: MemoryHistory::new(),
            fail_next: AtomicBool::new(false),
        });
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
        let tippen = Self::service(&live, &history, &clock);
        Rig {
            live,
            history,
            clock,
            tippen,
        }
    }

    fn service(live: &Arc<MemoryStore>, history: &Arc<Flaky>, clock: &Arc<ManualClock>) -> Tippen {
        Tippen::new(live.clone(), clock.clone(), config()).with_history(history.clone())
    }

    fn restart(&mut self) {
        self.tippen = Self::service(&self.live, &self.history, &self.clock);
    }
}

/// A closed visit as compared: visitor, start and end (ms after T0), pages (path, at,
/// duration), visit number.
type Summary = (String, i64, i64, Vec<(String, i64, i64)>, u32);

fn site() -> SiteId {
    SiteId::from("s")
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut rig = Rig::new();
    let mut model = Model::default();
    let mut now = T0;
    let mut injected = false;
    for op in ops {
        match op {
            Op::Ping {
                visitor,
                tab,
                page_view,
                path,
            } => {
                let vm = model.visitors.entry(*visitor).or_default();
                // A heartbeat from a tab that sent a beacon within the quiet period is
                // ignored by the service (in flight when the tab closed): send a page view.
                let quiet = vm.left_at.get(tab).is_some_and(|at| now < at + QUIET_MS);
                let page_view = *page_view || quiet;
                let path = PATHS[*path as usize];
                let ping = Ping {
                    kind: if page_view {
                        PingKind::PageView
                    } else {
                        PingKind::Heartbeat
                    },
                    tab_id: format!("t{tab}"),
                    url: format!("https://x.test{path}"),
                    visibility: Visibility::Visible,
                    referrer: None,
                    user_agent: None,
                    website: "x.test".into(),
                    client_timestamp: None,
                    page_id: None,
                };
                let r = block(
                    rig.tippen
                        .track(&site(), &format!("v{visitor}"), &ping, None),
                );
                if r.is_ok() {
                    model.ping(*visitor, *tab, page_view, path, now);
                }
            }
            Op::Leave { visitor, tab } => {
                let tab_id = tab.map(|t| format!("t{t}"));
                let r = block(
                    rig.tippen
                        .leave(&site(), &format!("v{visitor}"), tab_id.as_deref()),
                );
                if r.is_ok() {
                    model.leave(*visitor, *tab, now);
                }
            }
            Op::Advance(ms) => {
                now += ms;
                rig.clock.set(Timestamp::from_millis(now));
            }
            Op::Sweep => {
                // A failed sweep leaves what it had not closed for the next one.
                let _ = block(rig.tippen.sweep(&site()));
            }
            Op::Restart => rig.restart(),
            Op::FailNextRollupWrite => {
                injected = true;
                rig.history.fail_next.store(true, Ordering::SeqCst);
            }
        }
    }
    // The end: no failure left armed, every visit over, swept.
    rig.history.fail_next.store(false, Ordering::SeqCst);
    now += VISIBLE_MS * 10;
    rig.clock.set(Timestamp::from_millis(now));
    block(rig.tippen.sweep(&site())).expect("final sweep");
    for v in 0..2u8 {
        model.settle(v, now);
    }

    let mut stored = block(rig.history.visits(
        &site(),
        &VisitQuery {
            from: Timestamp::EPOCH,
            to: Timestamp::from_millis(i64::MAX),
            filter: VisitFilter::default(),
            after: None,
            limit: 10_000,
        },
    ))
    .expect("visits");
    stored.sort_by_key(|v| (v.visitor_id.clone(), v.started_at));
    let mut want = model.closed.clone();
    want.sort_by_key(|(v, m)| (*v, m.start));
    let got: Vec<Summary> = stored
        .iter()
        .map(|v| {
            (
                v.visitor_id.clone(),
                v.started_at.as_millis() - T0,
                v.ended_at.as_millis() - T0,
                v.pages
                    .iter()
                    .map(|p| {
                        (
                            p.path.to_string(),
                            p.at.as_millis() - T0,
                            p.duration_ms as i64,
                        )
                    })
                    .collect(),
                v.visit_number,
            )
        })
        .collect();
    let mut numbers: BTreeMap<u8, u32> = BTreeMap::new();
    let expected: Vec<Summary> = want
        .iter()
        .map(|(v, m)| {
            let n = numbers.entry(*v).or_insert(0);
            *n += 1;
            (
                format!("v{v}"),
                m.start - T0,
                m.last - T0,
                m.pages
                    .iter()
                    .map(|p| (p.path.clone(), p.at - T0, p.ms))
                    .collect(),
                *n,
            )
        })
        .collect();
    prop_assert_eq!(got, expected, "stored visits vs the model's");
    if !injected {
        let rollups = block(rig.history.rollups(
            &site(),
            &RollupQuery {
                select: RollupSelect::Site,
                from: Timestamp::EPOCH,
                to: Timestamp::from_millis(i64::MAX),
            },
        ))
        .expect("rollups");
        let counted: u64 = rollups.iter().map(|r| r.visits).sum();
        prop_assert_eq!(
            counted,
            stored.len() as u64,
            "the rollups count each visit once"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn closed_visits_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}

/// Three pages in one tab, a beacon, a restart before the sweep: one visit, exact pages.
#[test]
fn a_restart_before_the_close_loses_nothing() {
    use Op::*;
    let ops = [
        Ping {
            visitor: 0,
            tab: 0,
            page_view: true,
            path: 0,
        },
        Advance(10_000),
        Ping {
            visitor: 0,
            tab: 0,
            page_view: true,
            path: 1,
        },
        Advance(20_000),
        Ping {
            visitor: 0,
            tab: 0,
            page_view: false,
            path: 1,
        },
        Advance(5_000),
        Leave {
            visitor: 0,
            tab: Some(0),
        },
        Restart,
        Advance(LINGER_MS),
        FailNextRollupWrite,
        Sweep,
        Restart,
        Sweep,
    ];
    run(&ops).expect("model agrees");
}
