//! Model-based property tests of the support triggers.
//!
//! Random sequences of activity batches (through `POST /api/track/user-activity`), clock
//! advances and host timer firings run against the real service (memory store, manual
//! clock) and a reference model that keeps every event (no windows, no caps). The host is
//! modelled like tippen-axum's: it keeps the earliest deadline it was handed and sweeps when
//! the clock reaches it (exactly, or late after a long advance). Checked after every step:
//!
//! - each trigger is shown on the dashboards (by `SUPPORT_ALERT` / `SUPPORT_RECOVERED`) iff
//!   its condition holds in the model, and the overview endpoint agrees;
//! - a `SUPPORT_ALERT` names as `raised` exactly the triggers that started to hold, and a
//!   `SUPPORT_RECOVERED` comes exactly when none holds any more;
//! - a Slack notification comes with an alert raising a trigger iff the user's last
//!   notification is at least the cooldown old, so two notifications for one user are never
//!   closer than the cooldown;
//! - sequence numbers are consecutive.
//!
//! The windows are bounded to 5 entries, so the bounding is exercised too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use tippen_core::support::{SupportConfig, Trigger};
use tippen_core::{Clock, Config, SiteId, Timestamp};

#[derive(Clone, Copy, Debug)]
enum Ev {
    Route(u8),
    Click,
    PageTime,
    Error,
    Custom,
}

#[derive(Clone, Debug)]
enum Op {
    Batch {
        user: u8,
        tier: Option<&'static str>,
        events: Vec<Ev>,
    },
    /// Advance the clock; the host sweeps if its armed deadline has come.
    Advance(u64),
    /// Set the clock to the armed deadline exactly and sweep.
    ToDeadline,
    /// Set the clock to the next moment the model's triggers change (if any) and let the host
    /// sweep if its deadline has come: a deadline later than that moment is caught here.
    ToModelChange,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u8..3).prop_map(Ev::Route),
        Just(Ev::Click),
        Just(Ev::PageTime),
        Just(Ev::Error),
        Just(Ev::Custom),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let tier = prop::option::weighted(
        0.5,
        prop::sample::select(vec!["free_trial", "paid", "enterprise"]),
    );
    let batch = (0u8..3, tier, prop::collection::vec(ev(), 0..7))
        .prop_map(|(user, tier, events)| Op::Batch { user, tier, events });
    let advance = prop_oneof![
        0u64..5_000,
        50_000u64..130_000,
        280_000u64..320_000,
        590_000u64..610_000,
        880_000u64..1_000_000,
        Just(25 * 3600 * 1000),
    ];
    prop_oneof![
        5 => batch,
        3 => advance.prop_map(Op::Advance),
        2 => Just(Op::ToDeadline),
        2 => Just(Op::ToModelChange),
    ]
}

fn config() -> Config {
    Config {
        support: SupportConfig {
            max_window_events: 5,
            ..SupportConfig::default()
        },
        ..Config::default()
    }
}

/// The reference model of one user: every event kept.
#[derive(Clone, Debug, Default)]
struct ModelUser {
    tier: Option<&'static str>,
    /// Receipt times of batches with at least one event.
    batches: Vec<i64>,
    interactions: Vec<i64>,
    errors: Vec<i64>,
    route: Option<u8>,
    route_since: i64,
    last_notified: Option<i64>,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl ModelUser {
    fn last(&self) -> i64 {
        *self.batches.last().expect("a model user has events")
    }

    fn present_since(&self, cfg: &SupportConfig) -> i64 {
        let mut since = self.batches[0];
        for w in self.batches.windows(2) {
            if w[1] - w[0] > ms(cfg.presence_window) {
                since = w[1];
            }
        }
        since
    }

    fn applies(&self, scope_free_trial_only: bool) -> bool {
        !scope_free_trial_only || self.tier == Some("free_trial")
    }

    fn holding(&self, now: i64, cfg: &SupportConfig) -> BTreeSet<Trigger> {
        let mut out = BTreeSet::new();
        let present = now - self.last() <= ms(cfg.presence_window);
        if present && self.route.is_some() && now - self.route_since > ms(cfg.stuck_after) {
            out.insert(Trigger::Stuck);
        }
        let low_start = now - ms(cfg.low_activity_window);
        let recent = self.interactions.iter().filter(|t| **t > low_start).count();
        if self.applies(true)
            && present
            && now - self.present_since(cfg) >= ms(cfg.low_activity_window)
            && recent < cfg.low_activity_min_events
        {
            out.insert(Trigger::LowActivity);
        }
        let err_start = now - ms(cfg.error_window);
        if self.errors.iter().filter(|t| **t > err_start).count() > cfg.error_burst_max {
            out.insert(Trigger::ErrorBurst);
        }
        if self.applies(true) && now - self.last() >= ms(cfg.inactivity_after) {
            out.insert(Trigger::Inactivity);
        }
        out
    }

    fn expired(&self, now: i64, cfg: &SupportConfig) -> bool {
        now - self.last() >= ms(cfg.retention)
    }

    fn judged(&self, now: i64, cfg: &SupportConfig) -> BTreeSet<Trigger> {
        if self.expired(now, cfg) {
            BTreeSet::new()
        } else {
            self.holding(now, cfg)
        }
    }

    /// The first moment after `now` at which the judged triggers differ from now's: every
    /// threshold crossing of the rules' terms is a candidate.
    fn next_change(&self, now: i64, cfg: &SupportConfig) -> Option<i64> {
        let last = self.last();
        let mut candidates = vec![
            self.route_since + ms(cfg.stuck_after) + 1,
            last + ms(cfg.presence_window) + 1,
            self.present_since(cfg) + ms(cfg.low_activity_window),
            last + ms(cfg.inactivity_after),
            last + ms(cfg.retention),
        ];
        candidates.extend(
            self.interactions
                .iter()
                .map(|t| t + ms(cfg.low_activity_window)),
        );
        candidates.extend(self.errors.iter().map(|t| t + ms(cfg.error_window)));
        candidates.retain(|c| *c > now);
        candidates.sort_unstable();
        let current = self.judged(now, cfg);
        candidates
            .into_iter()
            .find(|c| self.judged(*c, cfg) != current)
    }
}

fn trigger(name: &str) -> Trigger {
    serde_json::from_value(json!(name)).expect("a trigger name")
}

fn triggers(v: &Value) -> BTreeSet<Trigger> {
    v.as_array()
        .expect("an array of triggers")
        .iter()
        .map(|t| trigger(t.as_str().expect("a string")))
        .collect()
}

struct World {
    h: Harness,
    cfg: SupportConfig,
    model: BTreeMap<u8, ModelUser>,
    /// What the dashboards were told: the triggers holding per user.
    shown: BTreeMap<String, BTreeSet<Trigger>>,
    /// Slack notification times per user.
    notified: BTreeMap<String, Vec<i64>>,
    armed: Option<Timestamp>,
    seq: u64,
}

impl World {
    fn now(&self) -> i64 {
        self.h.clock.now().as_millis()
    }

    fn absorb(
        &mut self,
        broadcasts: &[tippen_core::Broadcast],
        notices: &[tippen_core::notify::Notice],
    ) {
        let now = self.now();
        let mut notified_now = BTreeSet::new();
        for n in notices {
            let tippen_core::notify::Notice::Support(n) = n else {
                panic!("a support alert was expected, got {n:?}");
            };
            notified_now.insert(n.user.user_id.clone());
        }
        for text in broadcasts {
            let m: Value = serde_json::from_str(text).expect("JSON");
            let seq = m["seq"].as_u64().expect("seq");
            assert_eq!(seq, self.seq + 1, "consecutive sequence numbers: {text}");
            self.seq = seq;
            match m["type"].as_str() {
                Some("SUPPORT_ALERT") => {
                    let user = m["user"]["userId"].as_str().expect("userId").to_owned();
                    let now_set = triggers(&m["user"]["triggers"]);
                    assert!(!now_set.is_empty(), "an alert has triggers: {text}");
                    let before = self.shown.get(&user).cloned().unwrap_or_default();
                    let raised = triggers(&m["raised"]);
                    let expect_raised: BTreeSet<Trigger> =
                        now_set.difference(&before).copied().collect();
                    assert_eq!(raised, expect_raised, "raised = started to hold: {text}");
                    assert_ne!(now_set, before, "an alert reports a change: {text}");
                    // The cooldown, against the model's own clock of notifications.
                    let idx: u8 = user.trim_start_matches('u').parse().expect("u<n>");
                    let mu = self.model.get_mut(&idx).expect("a model user");
                    let due = !raised.is_empty()
                        && mu
                            .last_notified
                            .is_none_or(|l| now - l >= ms(self.cfg.slack_cooldown));
                    assert_eq!(
                        notified_now.contains(&user),
                        due,
                        "Slack notification iff raised and cooldown over: {text}"
                    );
                    if due {
                        mu.last_notified = Some(now);
                    }
                    self.shown.insert(user, now_set);
                }
                Some("SUPPORT_RECOVERED") => {
                    let user = m["userId"].as_str().expect("userId").to_owned();
                    if m["resolution"] == "expired" {
                        // Forgotten after its retention: a later batch is a new user, whose
                        // cooldown starts afresh (the model's user was dropped likewise).
                        self.notified.remove(&user);
                    }
                    let before = self.shown.remove(&user).unwrap_or_default();
                    assert!(!before.is_empty(), "recovered only when shown: {text}");
                    assert_eq!(
                        triggers(&m["cleared"]),
                        before,
                        "cleared = what held: {text}"
                    );
                }
                other => panic!("unexpected message {other:?}: {text}"),
            }
        }
        // Recorded after the messages: an expiry reported in the same call comes first.
        for user in notified_now {
            self.notified.entry(user).or_default().push(now);
        }
        for (user, times) in &self.notified {
            for w in times.windows(2) {
                assert!(
                    w[1] - w[0] >= ms(self.cfg.slack_cooldown),
                    "cooldown violated for {user}: {times:?}"
                );
            }
        }
    }

    fn arm(&mut self, d: Option<tippen_core::Deadline>) {
        if let Some(d) = d {
            self.armed = d.merge(self.armed);
        }
    }

    fn sweep(&mut self) {
        let r = block(self.h.tippen.handle_timeout(&SiteId::from("demo"))).expect("sweep");
        self.arm(r.deadline);
        self.absorb(&r.broadcasts, &r.notifications);
    }

    /// The host's timer: sweep while the armed deadline has come.
    fn fire_due(&mut self) {
        let mut rounds = 0;
        while self.armed.is_some_and(|a| a.as_millis() <= self.now()) {
            self.sweep();
            rounds += 1;
            assert!(rounds < 10, "the deadline keeps being in the past");
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Batch { user, tier, events } => {
                let now = self.now();
                let cfg = self.cfg.clone();
                let mu = self.model.entry(*user).or_default();
                if !mu.batches.is_empty() && mu.expired(now, &cfg) {
                    *mu = ModelUser::default();
                }
                if let Some(t) = tier {
                    mu.tier = Some(t);
                }
                let route = |r: u8| format!("/page/{r}");
                let mut body_events = Vec::new();
                for e in events {
                    let named = match e {
                        Ev::Route(r) => {
                            body_events
                                .push(json!({"type":"route","route":route(*r),"timestamp":1}));
                            mu.interactions.push(now);
                            Some(*r)
                        }
                        Ev::Click => {
                            body_events.push(json!({"type":"click","element":"b","timestamp":1}));
                            mu.interactions.push(now);
                            None
                        }
                        Ev::Custom => {
                            body_events.push(
                                json!({"type":"custom","name":"x","data":{"a":1},"timestamp":1}),
                            );
                            mu.interactions.push(now);
                            None
                        }
                        Ev::PageTime => {
                            body_events
                                .push(json!({"type":"page_time","duration":1000,"timestamp":1}));
                            None
                        }
                        Ev::Error => {
                            body_events
                                .push(json!({"type":"error","message":"boom","timestamp":1}));
                            mu.errors.push(now);
                            None
                        }
                    };
                    if let Some(r) = named
                        && mu.route != Some(r)
                    {
                        mu.route = Some(r);
                        mu.route_since = now;
                    }
                }
                if !events.is_empty() {
                    mu.batches.push(now);
                }
                let mut body = json!({
                    "apiKey": "demo_api_key",
                    "userId": format!("u{user}"),
                    "userEmail": format!("u{user}@example.com"),
                    "events": body_events,
                });
                if let Some(t) = tier {
                    body["subscriptionTier"] = json!(t);
                }
                let h = self
                    .h
                    .send("POST", "/api/track/user-activity", &[], body.to_string());
                assert_eq!(h.response.as_ref().unwrap().status(), 200);
                assert_eq!(
                    h.response.as_ref().unwrap().body().as_ref(),
                    format!(
                        r#"{{"success":true,"stored":{},"analyzed":true}}"#,
                        events.len()
                    )
                    .as_bytes()
                );
                if mu.batches.is_empty() {
                    // No events yet: the model has nothing to judge; forget the empty user.
                    self.model.remove(user);
                }
                self.arm(h.deadline);
                self.absorb(&h.broadcasts, &h.notifications);
                self.fire_due();
            }
            Op::Advance(by) => {
                self.h.clock.advance(Duration::from_millis(*by));
                self.fire_due();
            }
            Op::ToModelChange => {
                let now = self.now();
                let next = self
                    .model
                    .values()
                    .filter_map(|m| m.next_change(now, &self.cfg))
                    .min();
                if let Some(t) = next {
                    self.h.clock.set(Timestamp::from_millis(t));
                }
                self.fire_due();
            }
            Op::ToDeadline => {
                if let Some(a) = self.armed
                    && a.as_millis() > self.now()
                {
                    self.h.clock.set(a);
                }
                self.fire_due();
            }
        }
    }

    fn check(&self) {
        let now = self.now();
        let overview = self
            .h
            .send("GET", "/api/support/users?apiKey=demo_api_key", &[], "");
        let overview: Value =
            serde_json::from_slice(overview.response.as_ref().unwrap().body()).expect("JSON");
        for (idx, mu) in &self.model {
            let id = format!("u{idx}");
            let expect = if mu.expired(now, &self.cfg) {
                BTreeSet::new()
            } else {
                mu.holding(now, &self.cfg)
            };
            let shown = self.shown.get(&id).cloned().unwrap_or_default();
            assert_eq!(
                shown,
                expect,
                "{id} at +{} ms: dashboards vs model",
                now - T0
            );
            let listed = overview["users"]
                .as_array()
                .expect("users")
                .iter()
                .find(|u| u["userId"] == id.as_str());
            match listed {
                Some(u) => assert_eq!(triggers(&u["triggers"]), expect, "{id}: overview"),
                None => assert!(mu.expired(now, &self.cfg), "{id} listed until it expires"),
            }
        }
        let alerts: BTreeSet<String> = overview["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|u| u["userId"].as_str().expect("userId").to_owned())
            .collect();
        let flagged: BTreeSet<String> = self
            .shown
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(u, _)| u.clone())
            .collect();
        assert_eq!(alerts, flagged, "open alerts");
    }
}

fn run(ops: Vec<Op>) {
    let h = harness_with(config());
    let mut w = World {
        cfg: h.tippen.config().support.clone(),
        h,
        model: BTreeMap::new(),
        shown: BTreeMap::new(),
        notified: BTreeMap::new(),
        armed: None,
        seq: 0,
    };
    for op in &ops {
        w.apply(op);
        w.check();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn support_triggers_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

fn batch(user: u8, tier: Option<&'static str>, events: Vec<Ev>) -> Op {
    Op::Batch { user, tier, events }
}

#[test]
fn a_recovered_user_fires_again_and_slack_waits_for_the_cooldown() {
    let four = vec![Ev::Error, Ev::Error, Ev::Error, Ev::Error];
    run(vec![
        batch(0, Some("paid"), four.clone()),
        // Recovers when the errors age out (5 min), by the deadline alone.
        Op::Advance(300_000),
        // Fires again 6 min after the first notification: shown, but no Slack message.
        Op::Advance(60_000),
        batch(0, None, four.clone()),
        // 10 min after the first: a new burst notifies again.
        Op::Advance(300_000),
        batch(0, None, four),
    ]);
}

#[test]
fn time_driven_triggers_fire_without_a_new_batch() {
    run(vec![
        batch(1, Some("free_trial"), vec![Ev::Route(0)]),
        Op::ToDeadline,
        Op::ToDeadline,
        Op::ToDeadline,
        Op::ToDeadline,
        Op::Advance(900_000),
    ]);
}

/// Found by CI: the user is alerted (inactivity) at the last instant of its retention and
/// forgotten 1 ms later; its next batch is a new user, notified at once. The cooldown holds
/// within a user's life, not across its expiry.
#[test]
fn a_user_forgotten_after_its_retention_starts_a_new_cooldown() {
    use Ev::*;
    run(vec![
        Op::Batch {
            user: 0,
            tier: None,
            events: vec![Route(0)],
        },
        Op::Advance(1),
        Op::Batch {
            user: 1,
            tier: None,
            events: vec![Route(0)],
        },
        Op::Advance(300001),
        Op::ToDeadline,
        Op::Batch {
            user: 1,
            tier: Some("free_trial"),
            events: vec![],
        },
        Op::ToDeadline,
        Op::Batch {
            user: 1,
            tier: None,
            events: vec![Error, Error],
        },
        Op::Batch {
            user: 1,
            tier: None,
            events: vec![Error, Error],
        },
    ]);
}
