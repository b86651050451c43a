//! Model-based property tests of presence and its timeouts.
//!
//! Random sequences of page views, heartbeats, visibility changes, exit beacons, clock advances
//! and sweeps across several visitors and tabs run against the real service (memory store,
//! manual clock) and a tiny reference model. Checked after every step:
//!
//! - a visitor is listed iff some tab is within its grace (model);
//! - dashboard messages are consistent: `new_visitor` only for a visitor not shown, other
//!   updates and removals only for a shown one, removal reasons right (`left` for a beacon that
//!   closed the last live tab, `inactive` otherwise), sequence numbers consecutive;
//! - after a sweep, exactly the live visitors are shown (each removal fired, and only once);
//! - `next_deadline()` is never later than the earliest real expiry, and after a sweep never
//!   in the past;
//! - a heartbeat or visibility event from a tab that sent its exit beacon less than the
//!   departure quiet period ago changes nothing (it was in flight when the tab closed).

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
    ]
    .prop_map(Op::Advance);
    prop_oneof![4 => ping, 1 => leave, 3 => advance, 2 => Just(Op::Sweep)]
}

const VISIBLE_MS: u64 = 60_000;
const QUIET_MS: i64 = 10_000;
const HIDDEN_MS: u64 = 300_000;

#[derive(Default)]
struct Model {
    /// visitor → tab → (last seen ms, hidden)
    tabs: BTreeMap<String, BTreeMap<String, (i64, bool)>>,
    /// (visitor, tab) → when its exit beacon arrived.
    departed: BTreeMap<(String, String), i64>,
    /// Visitors the dashboard currently shows.
    shown: BTreeSet<String>,
    seq: u64,
}

impl Model {
    fn tab_alive(now: i64, (seen, hidden): (i64, bool)) -> bool {
        let grace = if hidden { HIDDEN_MS } else { VISIBLE_MS } as i64;
        now < seen + grace
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
            .map(|(seen, hidden)| seen + if *hidden { HIDDEN_MS } else { VISIBLE_MS } as i64)
            .min()
    }

    /// Applies the messages of one step; `expected_left` is the visitor whose removal must say
    /// `left`.
    fn observe(
        &mut self,
        broadcasts: &[tippen_core::Broadcast],
        now: i64,
        expected_left: Option<&str>,
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
                }
                "VISITOR_REMOVED" => {
                    let v = m["visitorId"].as_str().unwrap().to_owned();
                    prop_assert!(
                        self.shown.remove(&v),
                        "removal of a visitor not shown: {}",
                        b
                    );
                    let reason = if expected_left == Some(v.as_str()) {
                        "left"
                    } else {
                        "inactive"
                    };
                    prop_assert_eq!(m["reason"].as_str(), Some(reason), "{}", b);
                    if reason == "inactive" {
                        prop_assert!(
                            self.alive_tabs(&v, now).is_empty(),
                            "inactive removal of a live visitor"
                        );
                    }
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
                model.observe(&r.broadcasts[..removals], now, None)?;
                if restarts {
                    model.tabs.remove(&v);
                }
                model
                    .tabs
                    .entry(v.clone())
                    .or_default()
                    .insert(t, (now, hidden));
                model.observe(&r.broadcasts[removals..], now, None)?;
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
                let closes_last = match tab {
                    Some(t) => alive == [format!("t{t}")],
                    None => !alive.is_empty(),
                };
                let departed: Vec<String> = match tab {
                    Some(t) if !alive.is_empty() => vec![format!("t{t}")],
                    None => alive.clone(),
                    _ => Vec::new(),
                };
                for t in departed {
                    model.departed.insert((v.clone(), t), now);
                }
                if let Some(tabs) = model.tabs.get_mut(&v) {
                    match tab {
                        Some(t) => {
                            tabs.remove(&format!("t{t}"));
                        }
                        None => tabs.clear(),
                    }
                }
                model.observe(&r.broadcasts, now, closes_last.then_some(v.as_str()))?;
            }
            Op::Advance(ms) => h.clock.advance(Duration::from_millis(ms)),
            Op::Sweep => {
                let out = block(h.tippen.sweep(&site)).unwrap();
                let texts: Vec<_> = out
                    .messages
                    .iter()
                    .map(tippen_core::Broadcast::new)
                    .collect();
                model.observe(&texts, now, None)?;
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
