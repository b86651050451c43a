//! Model-based property tests of presence and its timeouts.
//!
//! Random sequences of page views, heartbeats, visibility changes, exit beacons, clock advances
//! and sweeps across several visitors and tabs run against the real service (memory store,
//! manual clock) and a tiny reference model. Checked after every step:
//!
//! - a visitor is listed iff some tab is within its grace and, after an exit beacon, within
//!   the leave linger (model);
//! - dashboard messages are consistent: `new_visitor` only for a visitor not shown, other
//!   updates and removals only for a shown one whose tabs have all expired (an exit beacon
//!   removes nothing at once), removal reasons right (`left` when the last tab to expire had
//!   sent its beacon, `inactive` otherwise), sequence numbers consecutive, `pageViews` the
//!   visit's page views (a reload within the linger keeps counting);
//! - after a sweep, exactly the live visitors are shown (each removal fired, and only once);
//! - `next_deadline()` is never later than the earliest real expiry, and after a sweep never
//!   in the past;
//! - a heartbeat or visibility event from a tab that sent its exit beacon less than the
//!   departure quiet period ago changes nothing (it was in flight when the tab closed);
//! - a reload (beacon, then the same tab's page view after a gap) within the linger neither
//!   removes the visitor nor restarts its visit.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use serde_json::Value;
use tippen_core::{Clock, Config, SiteId, Timestamp};

#[derive(Clone, Debug)]
enum Op {
    Ping {
        visitor: u8,
        tab: u8,
        kind: &'static str,
        hidden: bool,
    },
    Leave {
        visitor: u8,
        tab: Option<u8>,
    },
    Advance(u64),
    Sweep,
    /// A reload, back/forward or bfcache restore: the tab's beacon, `gap` ms, then its page
    /// view (run as those three steps).
    Reload {
        visitor: u8,
        tab: u8,
        gap: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let ping = (
        0u8..3,
        0u8..3,
        prop::sample::select(vec!["pageview", "heartbeat", "visibility"]),
        any::<bool>(),
    )
        .prop_map(|(visitor, tab, kind, hidden)| Op::Ping {
            visitor,
            tab,
            kind,
            hidden,
        });
    let leave = (0u8..3, prop::option::weighted(0.8, 0u8..3))
        .prop_map(|(visitor, tab)| Op::Leave { visitor, tab });
    let advance = prop_oneof![
        0u64..3_000,
        25_000u64..35_000,
        Just(VISIBLE_MS),
        Just(VISIBLE_MS - 1),
        55_000u64..65_000,
        Just(HIDDEN_MS),
        Just(QUIET_MS as u64),
        5_000u64..15_000,
        280_000u64..320_000,
        Just(LINGER_MS),
        Just(LINGER_MS - 1),
    ]
    .prop_map(Op::Advance);
    let reload = (
        0u8..3,
        0u8..3,
        prop_oneof![0u64..LINGER_MS, Just(LINGER_MS - 1), Just(LINGER_MS)],
    )
        .prop_map(|(visitor, tab, gap)| Op::Reload { visitor, tab, gap });
    prop_oneof![4 => ping, 1 => leave, 3 => advance, 2 => Just(Op::Sweep), 1 => reload]
}

const VISIBLE_MS: u64 = 60_000;
const QUIET_MS: i64 = 10_000;
const HIDDEN_MS: u64 = 300_000;
const LINGER_MS: u64 = 2_000;

/// One tab as the model sees it.
#[derive(Clone, Copy, Debug)]
struct TabM {
    /// Last event (ms).
    seen: i64,
    hidden: bool,
    /// When its exit beacon arrived, since its last event.
    left: Option<i64>,
}

impl TabM {
    fn expiry(self) -> i64 {
        let grace = if self.hidden { HIDDEN_MS } else { VISIBLE_MS } as i64;
        let expiry = self.seen + grace;
        self.left
            .map_or(expiry, |at| expiry.min(at + LINGER_MS as i64))
    }
}

#[derive(Default)]
struct Model {
    /// visitor → tab → its state (every tab of the current visit, expired ones too)
    tabs: BTreeMap<String, BTreeMap<String, TabM>>,
    /// visitor → page views of its current visit
    page_views: BTreeMap<String, u64>,
    /// (visitor, tab) → when its exit beacon arrived.
    departed: BTreeMap<(String, String), i64>,
    /// Visitors the dashboard currently shows.
    shown: BTreeSet<String>,
    seq: u64,
}

impl Model {
    fn tab_alive(now: i64, tab: TabM) -> bool {
        now < tab.expiry()
    }

    /// Why `v` is gone once all its tabs have expired: `left` when the last to expire had sent
    /// its beacon.
    fn removal_reason(&self, v: &str) -> &'static str {
        let tabs: Vec<TabM> = self
            .tabs
            .get(v)
            .map(|t| t.values().copied().collect())
            .unwrap_or_default();
        let last = tabs.iter().map(|t| t.expiry()).max();
        if tabs
            .iter()
            .any(|t| t.left.is_some() && Some(t.expiry()) == last)
        {
            "left"
        } else {
            "inactive"
        }
    }

    fn alive_tabs(&self, v: &str, now: i64) -> Vec<String> {
        self.tabs
            .get(v)
            .map(|t| {
                t.iter()
                    .filter(|(_, s)| Self::tab_alive(now, **s))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn listed(&self, now: i64) -> BTreeSet<String> {
        self.tabs
            .keys()
            .filter(|v| !self.alive_tabs(v, now).is_empty())
            .cloned()
            .collect()
    }

    fn earliest_expiry(&self, now: i64) -> Option<i64> {
        self.tabs
            .values()
            .flat_map(|t| t.values())
            .filter(|s| Self::tab_alive(now, **s))
            .map(|t| t.expiry())
            .min()
    }

    /// Applies the messages of one step.
    fn observe(
        &mut self,
        broadcasts: &[tippen_core::Broadcast],
        now: i64,
    ) -> Result<(), TestCaseError> {
        for b in broadcasts {
            let m: Value = serde_json::from_str(b).unwrap();
            self.seq += 1;
            prop_assert_eq!(m["seq"].as_u64(), Some(self.seq), "consecutive seq: {}", b);
            match m["type"].as_str().unwrap() {
                "VISITOR_UPDATE" => {
                    let v = m["visitor"]["visitorId"].as_str().unwrap().to_owned();
                    if m["event"] == "new_visitor" {
                        prop_assert!(
                            self.shown.insert(v.clone()),
                            "new_visitor for a shown visitor {}",
                            v
                        );
                    } else {
                        prop_assert!(
                            self.shown.contains(&v),
                            "update for a visitor not shown: {}",
                            b
                        );
                    }
                    prop_assert!(
                        !self.alive_tabs(&v, now).is_empty(),
                        "update for a dead visitor: {}",
                        b
                    );
                    let tabs = m["visitor"]["tabs"].as_array().unwrap().len();
                    prop_assert_eq!(tabs, self.alive_tabs(&v, now).len(), "tabs shown: {}", b);
                    prop_assert_eq!(
                        m["visitor"]["pageViews"].as_u64(),
                        self.page_views.get(&v).copied(),
                        "page views of the visit: {}",
                        b
                    );
                }
                "VISITOR_REMOVED" => {
                    let v = m["visitorId"].as_str().unwrap().to_owned();
                    prop_assert!(
                        self.shown.remove(&v),
                        "removal of a visitor not shown: {}",
                        b
                    );
                    prop_assert_eq!(m["reason"].as_str(), Some(self.removal_reason(&v)), "{}", b);
                    prop_assert!(
                        self.alive_tabs(&v, now).is_empty(),
                        "removal of a live visitor (a tab within its grace or its linger): {}",
                        b
                    );
                }
                other => prop_assert!(false, "unexpected message {}", other),
            }
        }
        Ok(())
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let h = harness_with(Config::default());
    let site = SiteId::from("a");
    let mut model = Model::default();
    let ops = ops.into_iter().flat_map(|op| match op {
        Op::Reload { visitor, tab, gap } => vec![
            Op::Leave {
                visitor,
                tab: Some(tab),
            },
            Op::Advance(gap),
            Op::Ping {
                visitor,
                tab,
                kind: "pageview",
                hidden: false,
            },
        ],
        op => vec![op],
    });
    for op in ops {
        let now = h.clock.now().as_millis();
        match op {
            Op::Ping {
                visitor,
                tab,
                kind,
                hidden,
            } => {
                let (v, t) = (format!("v{visitor}"), format!("t{tab}"));
                let vis = if hidden { "hidden" } else { "visible" };
                let body = format!(
                    r#"{{"event":"{kind}","visitor":{{"visitorId":"{v}","tabId":"{t}","url":"https://e.example/{tab}","visibility":"{vis}"}}}}"#
                );
                let r = h.track("pk_a", &body);
                prop_assert_eq!(r.response.as_ref().unwrap().status(), 200);
                let key = (v.clone(), t.clone());
                if kind != "pageview"
                    && model
                        .departed
                        .get(&key)
                        .is_some_and(|at| now < at + QUIET_MS)
                {
                    prop_assert!(
                        r.broadcasts.is_empty(),
                        "a closed tab's late {} changes nothing",
                        kind
                    );
                    continue;
                }
                model.departed.remove(&key);
                // A ping to a visitor with no live tab starts a new visit; a removal of the
                // old visit not yet swept comes first and is checked against the old state.
                let restarts = model.alive_tabs(&v, now).is_empty();
                let removals = r
                    .broadcasts
                    .iter()
                    .take_while(|b| b.contains("VISITOR_REMOVED"))
                    .count();
                prop_assert!(
                    removals == 0 || restarts,
                    "a removal before a ping to a live visitor"
                );
                model.observe(&r.broadcasts[..removals], now)?;
                if restarts {
                    model.tabs.remove(&v);
                    model.page_views.insert(v.clone(), 0);
                }
                if kind == "pageview" {
                    *model.page_views.entry(v.clone()).or_default() += 1;
                }
                let tab = TabM {
                    seen: now,
                    hidden,
                    left: None,
                };
                model.tabs.entry(v.clone()).or_default().insert(t, tab);
                model.observe(&r.broadcasts[removals..], now)?;
                prop_assert!(model.shown.contains(&v));
            }
            Op::Leave { visitor, tab } => {
                let v = format!("v{visitor}");
                let body = match tab {
                    Some(t) => format!(r#"{{"visitorId":"{v}","tabId":"t{t}"}}"#),
                    None => format!(r#"{{"visitorId":"{v}"}}"#),
                };
                let alive = model.alive_tabs(&v, now);
                let r = h.send("POST", "/track/leave?apiKey=pk_a", &[], body);
                prop_assert_eq!(r.response.as_ref().unwrap().status(), 200);
                let departed: Vec<String> = match tab {
                    Some(t) if !alive.is_empty() => vec![format!("t{t}")],
                    None => alive.clone(),
                    _ => Vec::new(),
                };
                if let Some(tabs) = model.tabs.get_mut(&v) {
                    // Held for the linger (a second beacon does not extend it).
                    for t in &departed {
                        if let Some(tab) = tabs.get_mut(t).filter(|t| Model::tab_alive(now, **t)) {
                            tab.left.get_or_insert(now);
                        }
                    }
                }
                for t in departed {
                    model.departed.insert((v.clone(), t), now);
                }
                model.observe(&r.broadcasts, now)?;
            }
            Op::Advance(ms) => h.clock.advance(Duration::from_millis(ms)),
            Op::Reload { .. } => unreachable!("expanded above"),
            Op::Sweep => {
                let out = block(h.tippen.sweep(&site)).unwrap();
                let texts: Vec<_> = out
                    .messages
                    .iter()
                    .map(tippen_core::Broadcast::new)
                    .collect();
                model.observe(&texts, now)?;
                prop_assert_eq!(
                    &model.shown,
                    &model.listed(now),
                    "after a sweep exactly the live visitors are shown"
                );
                if let Some(d) = out.deadline {
                    prop_assert!(
                        d.as_millis() > now,
                        "deadline {} in the past after a sweep at {}",
                        d.as_millis(),
                        now
                    );
                }
            }
        }
        let now = h.clock.now().as_millis();
        // Listed iff some tab within its grace.
        let listed: BTreeSet<String> = block(h.tippen.live_visitors(&site))
            .unwrap()
            .into_iter()
            .map(|v| v.visitor_id)
            .collect();
        prop_assert_eq!(&listed, &model.listed(now), "listed visitors at {}", now);
        prop_assert!(
            model.shown.is_superset(&listed),
            "every live visitor is shown"
        );
        // next_deadline never later than the earliest real expiry.
        let next = block(h.tippen.next_deadline(&site))
            .unwrap()
            .map(Timestamp::as_millis);
        if let Some(earliest) = model.earliest_expiry(now) {
            prop_assert!(
                next.is_some_and(|d| d <= earliest),
                "next_deadline {:?} later than expiry {}",
                next,
                earliest
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn presence_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}

/// Named regressions (shrunk failures found while building the model test).
#[test]
fn regression_leave_last_live_tab_while_an_expired_tab_is_unswept() {
    run(vec![
        Op::Ping {
            visitor: 0,
            tab: 0,
            kind: "pageview",
            hidden: false,
        },
        Op::Advance(30_000),
        Op::Ping {
            visitor: 0,
            tab: 1,
            kind: "pageview",
            hidden: false,
        },
        Op::Advance(VISIBLE_MS - 20_000),
        Op::Leave {
            visitor: 0,
            tab: Some(1),
        },
        Op::Sweep,
    ])
    .unwrap();
}

#[test]
fn regression_expiry_exactly_at_the_grace_boundary() {
    run(vec![
        Op::Ping {
            visitor: 1,
            tab: 0,
            kind: "heartbeat",
            hidden: false,
        },
        Op::Advance(VISIBLE_MS - 1),
        Op::Sweep,
        Op::Advance(1),
        Op::Sweep,
        Op::Ping {
            visitor: 1,
            tab: 0,
            kind: "visibility",
            hidden: true,
        },
        Op::Advance(HIDDEN_MS),
        Op::Sweep,
    ])
    .unwrap();
}

#[test]
fn regression_ping_exactly_at_expiry_reports_removal_then_a_new_visit() {
    run(vec![
        Op::Ping {
            visitor: 1,
            tab: 0,
            kind: "pageview",
            hidden: false,
        },
        Op::Advance(VISIBLE_MS),
        Op::Ping {
            visitor: 1,
            tab: 0,
            kind: "pageview",
            hidden: false,
        },
        Op::Sweep,
    ])
    .unwrap();
}

#[test]
fn regression_a_beacon_for_a_tab_the_record_lacks_is_remembered() {
    run(vec![
        Op::Ping {
            visitor: 2,
            tab: 1,
            kind: "pageview",
            hidden: false,
        },
        Op::Leave {
            visitor: 2,
            tab: Some(0),
        },
        Op::Ping {
            visitor: 2,
            tab: 0,
            kind: "heartbeat",
            hidden: false,
        },
    ])
    .unwrap();
}

#[test]
fn regression_a_second_departure_after_the_first_quiet_period_is_remembered() {
    run(vec![
        Op::Ping {
            visitor: 2,
            tab: 2,
            kind: "pageview",
            hidden: false,
        },
        Op::Leave {
            visitor: 2,
            tab: Some(0),
        },
        Op::Advance(QUIET_MS as u64),
        Op::Leave {
            visitor: 2,
            tab: Some(1),
        },
        Op::Ping {
            visitor: 2,
            tab: 1,
            kind: "heartbeat",
            hidden: false,
        },
    ])
    .unwrap();
}

#[test]
fn regression_a_late_heartbeat_after_the_last_tab_left_does_not_resurrect() {
    run(vec![
        Op::Ping {
            visitor: 0,
            tab: 0,
            kind: "pageview",
            hidden: false,
        },
        Op::Leave {
            visitor: 0,
            tab: None,
        },
        Op::Ping {
            visitor: 0,
            tab: 0,
            kind: "heartbeat",
            hidden: false,
        },
        Op::Sweep,
    ])
    .unwrap();
}

#[test]
fn a_reload_within_the_linger_keeps_the_visit_and_its_page_views() {
    let h = harness_with(Config::default());
    let body = |kind: &str| {
        format!(
            r#"{{"event":"{kind}","visitor":{{"visitorId":"v","tabId":"t","url":"https://e.example/"}}}}"#
        )
    };
    assert_eq!(h.track("pk_a", &body("pageview")).broadcasts.len(), 1);
    let left = h.send(
        "POST",
        "/track/leave?apiKey=pk_a",
        &[],
        r#"{"visitorId":"v","tabId":"t"}"#.to_owned(),
    );
    assert!(
        left.broadcasts.is_empty(),
        "the beacon removes nothing at once"
    );
    h.clock.advance(Duration::from_millis(LINGER_MS - 1));
    let reloaded = h.track("pk_a", &body("pageview"));
    let texts: Vec<&str> = reloaded.broadcasts.iter().map(|b| &*b.text).collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains(r#""event":"pageview""#) && texts[0].contains(r#""pageViews":2"#),
        "{}",
        texts[0]
    );
    h.clock.advance(Duration::from_millis(LINGER_MS));
    let swept = block(h.tippen.sweep(&SiteId::from("a"))).unwrap();
    assert!(swept.messages.is_empty(), "{:?}", swept.messages);
}

#[test]
fn a_close_removes_the_visitor_with_reason_left_when_the_linger_ends() {
    run(vec![
        Op::Ping {
            visitor: 0,
            tab: 0,
            kind: "pageview",
            hidden: false,
        },
        Op::Leave {
            visitor: 0,
            tab: Some(0),
        },
        Op::Advance(LINGER_MS - 1),
        Op::Sweep,
        Op::Advance(1),
        Op::Sweep,
        Op::Reload {
            visitor: 1,
            tab: 0,
            gap: LINGER_MS,
        },
    ])
    .unwrap();
    let h = harness_with(Config::default());
    h.track(
        "pk_a",
        r#"{"event":"pageview","visitor":{"visitorId":"v","tabId":"t"}}"#,
    );
    h.send(
        "POST",
        "/track/leave?apiKey=pk_a",
        &[],
        r#"{"visitorId":"v","tabId":"t"}"#.to_owned(),
    );
    let site = SiteId::from("a");
    let linger_end = h.clock.now().as_millis() + LINGER_MS as i64;
    assert_eq!(
        block(h.tippen.next_deadline(&site))
            .unwrap()
            .map(Timestamp::as_millis),
        Some(linger_end),
        "the beacon arms the linger's end"
    );
    h.clock.advance(Duration::from_millis(LINGER_MS));
    let swept = block(h.tippen.sweep(&site)).unwrap();
    assert_eq!(swept.messages.len(), 1);
    assert!(
        swept.messages[0]
            .to_json()
            .contains(r#""type":"VISITOR_REMOVED","visitorId":"v","reason":"left""#),
        "{}",
        swept.messages[0].to_json()
    );
}
