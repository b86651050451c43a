//! Support triggers: notice when a logged-in product user is stuck, and say so.
//!
//! The in-app tracker (`tippen-app-tracker.js`) sends batches of [`ActivityEvent`]s to
//! `POST /api/track/user-activity`. Each user has one [`UserRecord`]: a pure state machine
//! with bounded memory (sliding windows of the most recent event times, a capped list of raw
//! events), driven like the rest of the core:
//!
//! - [`UserRecord::apply_batch`] takes a batch at `now` (the server's clock: the client's
//!   `timestamp` is recorded, never used for windows or ordering);
//! - [`UserRecord::handle_timeout`] re-evaluates the rules at `now` (spurious calls are
//!   harmless no-ops);
//! - [`UserRecord::deadline`] is the next moment a rule can change by time alone (or the
//!   record's retention ends); the service's sweep handles due users, so rules that fire
//!   because time passes (stuck, inactivity, an error burst ageing out) need no new event.
//!
//! # The rules
//!
//! With the defaults of [`SupportConfig`] (every threshold and the tiers a rule applies to are
//! configuration):
//!
//! | trigger | holds at `now` when | tiers |
//! |---|---|---|
//! | `stuck` | the current route is unchanged for more than 5 min **and** the user is present (an event within the last 2 min; the in-app tracker sends a `page_time` event every minute while its tab is visible) | all |
//! | `low_activity` | present, present for at least 10 min, and fewer than 3 interactions (`route`, `click`, `form_submit`, `custom`) in the last 10 min | free trial |
//! | `error_burst` | more than 3 `error` events in the last 5 min | all |
//! | `inactivity` | no event of any kind for 15 min or more | free trial |
//!
//! A window of length `w` at `now` holds the events received in `(now − w, now]`. A user
//! *needs support* while at least one trigger holds. Every change of the set of holding
//! triggers is reported ([`SupportChange`]): an alert when a trigger starts to hold (dashboards
//! hear `SUPPORT_ALERT`), a recovery when none holds any more (`SUPPORT_RECOVERED`). A trigger
//! fires again after it stopped holding. A Slack notification is asked for with an alert only
//! when the user's last one is at least [`SupportConfig::slack_cooldown`] old (default 10 min).
//!
//! Memory per user is bounded: each window keeps at most [`SupportConfig::max_window_events`]
//! times (the most recent, which is all a threshold needs), and the raw events at most
//! [`SupportConfig::max_raw_events`], none older than [`SupportConfig::retention`]. A user
//! without events for [`SupportConfig::retention`] is removed.

use std::collections::VecDeque;
use std::time::Duration;

pub mod activity;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::protocol::{ActivityEvent, SubscriptionTier};
pub use crate::protocol::{Resolution, Trigger, UserSummary};

/// One rule's switch and the tiers it applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleScope {
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// The tiers it applies to; empty means every user (a user without a tier too).
    pub tiers: Vec<SubscriptionTier>,
}

impl RuleScope {
    /// Enabled for every user.
    pub fn everyone() -> Self {
        RuleScope {
            enabled: true,
            tiers: Vec::new(),
        }
    }

    /// Enabled for users of `tiers` only.
    pub fn only(tiers: &[SubscriptionTier]) -> Self {
        RuleScope {
            enabled: true,
            tiers: tiers.to_vec(),
        }
    }

    /// Whether the rule applies to a user of `tier`.
    pub fn applies_to(&self, tier: Option<SubscriptionTier>) -> bool {
        self.enabled && (self.tiers.is_empty() || tier.is_some_and(|t| self.tiers.contains(&t)))
    }
}

/// Thresholds and tiers of the support rules, and the bounds of what is kept per user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportConfig {
    /// `stuck`: the route unchanged for more than this. Default 5 min.
    pub stuck_after: Duration,
    /// A user is present while their last event is at most this old (`stuck` and
    /// `low_activity` need presence). Default 2 min.
    pub presence_window: Duration,
    /// `low_activity`: the window. Default 10 min.
    pub low_activity_window: Duration,
    /// `low_activity`: fewer interactions than this in the window. Default 3.
    pub low_activity_min_events: usize,
    /// `error_burst`: the window. Default 5 min.
    pub error_window: Duration,
    /// `error_burst`: more errors than this in the window. Default 3.
    pub error_burst_max: usize,
    /// `inactivity`: no event for this long. Default 15 min.
    pub inactivity_after: Duration,
    /// Who `stuck` applies to. Default everyone.
    pub stuck: RuleScope,
    /// Who `low_activity` applies to. Default free trial.
    pub low_activity: RuleScope,
    /// Who `error_burst` applies to. Default everyone.
    pub error_burst: RuleScope,
    /// Who `inactivity` applies to. Default free trial.
    pub inactivity: RuleScope,
    /// At most one Slack notification per user per this long. Default 10 min.
    pub slack_cooldown: Duration,
    /// Most event times kept per window (the most recent; never fewer than a threshold
    /// needs). Bounds memory and the counts the summary reports. Default 200.
    pub max_window_events: usize,
    /// Most raw events kept per user (the most recent). Default 100.
    pub max_raw_events: usize,
    /// Raw events older than this are dropped, and a user without events for this long is
    /// removed. Default 24 h.
    pub retention: Duration,
    /// Text fields of a stored event (route, element, message, form id, name) are cut to this
    /// many bytes. Default 512.
    pub max_event_text_bytes: usize,
    /// A custom event's `data` larger than this (as JSON) is stored as
    /// `{"truncated":true,"bytes":n}`. Default 1024.
    pub max_event_data_bytes: usize,
}

impl Default for SupportConfig {
    fn default() -> Self {
        SupportConfig {
            stuck_after: Duration::from_secs(5 * 60),
            presence_window: Duration::from_secs(2 * 60),
            low_activity_window: Duration::from_secs(10 * 60),
            low_activity_min_events: 3,
            error_window: Duration::from_secs(5 * 60),
            error_burst_max: 3,
            inactivity_after: Duration::from_secs(15 * 60),
            stuck: RuleScope::everyone(),
            low_activity: RuleScope::only(&[SubscriptionTier::FreeTrial]),
            error_burst: RuleScope::everyone(),
            inactivity: RuleScope::only(&[SubscriptionTier::FreeTrial]),
            slack_cooldown: Duration::from_secs(10 * 60),
            max_window_events: 200,
            max_raw_events: 100,
            retention: Duration::from_secs(24 * 60 * 60),
            max_event_text_bytes: 512,
            max_event_data_bytes: 1024,
        }
    }
}

impl SupportConfig {
    fn interaction_cap(&self) -> usize {
        self.max_window_events
            .max(self.low_activity_min_events)
            .max(1)
    }

    fn error_cap(&self) -> usize {
        self.max_window_events.max(self.error_burst_max + 1)
    }
}

impl Trigger {
    /// A sentence for people, with the configured thresholds.
    pub fn describe(self, cfg: &SupportConfig) -> String {
        let min = |d: Duration| d.as_secs().div_ceil(60);
        match self {
            Trigger::Stuck => format!("Stuck on page > {} minutes", min(cfg.stuck_after)),
            Trigger::LowActivity => format!(
                "Low activity: < {} events in {} minutes",
                cfg.low_activity_min_events,
                min(cfg.low_activity_window)
            ),
            Trigger::ErrorBurst => format!(
                "Errors: > {} in {} minutes",
                cfg.error_burst_max,
                min(cfg.error_window)
            ),
            Trigger::Inactivity => {
                format!(
                    "Inactive: no events for {} minutes",
                    min(cfg.inactivity_after)
                )
            }
        }
    }
}

/// A raw event as stored: the client's event (with its own timestamp) and when the server
/// received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Server time of receipt.
    pub received_at: Timestamp,
    /// The event as sent.
    pub event: ActivityEvent,
}

/// Who the user is, as the batch says (absent fields keep what is known).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserIdentity {
    /// The user's email.
    pub email: Option<String>,
    /// The user's tier.
    pub tier: Option<SubscriptionTier>,
    /// The live visitor the in-app tracker found on its page (the visitor tracker's
    /// `window.tippen.visitorId`), if any.
    pub visitor_id: Option<String>,
}

/// One logged-in user's activity state: the record the [`Store`](crate::Store) keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    /// The product's user id.
    pub user_id: String,
    /// The user's email, if sent.
    pub email: Option<String>,
    /// The user's tier, if sent.
    pub tier: Option<SubscriptionTier>,
    /// The live visitor id the user's last batch naming one named (the visitor tracker ran
    /// on the same page): links the user to the live list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// The first event ever received (within retention).
    pub first_seen: Timestamp,
    /// The last event received.
    pub last_event: Timestamp,
    /// Start of the current presence span (an event after an absence starts one).
    pub present_since: Timestamp,
    /// The current route.
    pub route: Option<String>,
    /// When the current route started.
    pub route_since: Timestamp,
    /// Receipt times of the most recent interactions, oldest first (bounded).
    pub interactions: VecDeque<Timestamp>,
    /// Receipt times of the most recent errors, oldest first (bounded).
    pub errors: VecDeque<Timestamp>,
    /// Events received in total.
    pub event_count: u64,
    /// Errors received in total.
    pub error_count: u64,
    /// The last error's message.
    pub last_error: Option<String>,
    /// The triggers holding at the last evaluation, in [`Trigger::ALL`] order.
    pub triggers: Vec<Trigger>,
    /// Since when the user needs support (set while `triggers` is not empty).
    pub alert_since: Option<Timestamp>,
    /// When the last Slack notification was asked for.
    pub last_notified: Option<Timestamp>,
    /// The most recent raw events, oldest first (bounded, see the module docs).
    pub raw_events: VecDeque<StoredEvent>,
    /// When this record must be looked at again: the next moment a rule can change by time
    /// alone, or the end of its retention. Stores index it.
    pub deadline: Timestamp,
}

/// A change of the set of holding triggers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupportChange {
    /// The user needs support: `raised` started to hold (empty when a trigger only stopped
    /// while others still hold); `notify` asks for a Slack notification (cooldown allowing).
    Alert {
        /// Triggers that started to hold now.
        raised: Vec<Trigger>,
        /// Send a Slack notification.
        notify: bool,
    },
    /// No trigger holds any more.
    Recovered {
        /// The triggers that held until now.
        cleared: Vec<Trigger>,
    },
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    q.push_back(item);
    while q.len() > cap {
        q.pop_front();
    }
}

/// How many of `times` (oldest first) lie in `(now − window, now]`.
fn in_window(times: &VecDeque<Timestamp>, now: Timestamp, window: Duration) -> usize {
    let start = now.minus(window);
    times.iter().filter(|t| **t > start && **t <= now).count()
}

fn event_route(e: &ActivityEvent) -> Option<&str> {
    match e {
        ActivityEvent::Route { route, .. } => Some(route.as_str()),
        ActivityEvent::Click { route, .. }
        | ActivityEvent::FormSubmit { route, .. }
        | ActivityEvent::PageTime { route, .. }
        | ActivityEvent::Error { route, .. } => route.as_deref(),
        ActivityEvent::Custom { .. } => None,
    }
    .filter(|r| !r.is_empty())
}

const ONE_MS: Duration = Duration::from_millis(1);

fn cut_text(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The event as stored: every text field (routes, elements, messages, ids, names) cut to
/// [`SupportConfig::max_event_text_bytes`], a custom event's `data` over
/// [`SupportConfig::max_event_data_bytes`] replaced by `{"truncated":true,"bytes":n}`. With
/// the defaults one stored event is at most about 2.5 KB, so a record with 100 raw events
/// stays far below the item limits of key-value stores (DynamoDB: 400 KB).
pub(crate) fn bounded_event(mut event: ActivityEvent, cfg: &SupportConfig) -> ActivityEvent {
    let max = cfg.max_event_text_bytes;
    let cut_opt = |s: &mut Option<String>| {
        if let Some(s) = s.as_mut() {
            cut_text(s, max);
        }
    };
    match &mut event {
        ActivityEvent::Route { route, .. } => cut_text(route, max),
        ActivityEvent::Click { element, route, .. } => {
            cut_opt(element);
            cut_opt(route);
        }
        ActivityEvent::FormSubmit { form_id, route, .. } => {
            cut_opt(form_id);
            cut_opt(route);
        }
        ActivityEvent::PageTime { route, .. } => cut_opt(route),
        ActivityEvent::Error { message, route, .. } => {
            cut_opt(message);
            cut_opt(route);
        }
        ActivityEvent::Custom { name, data, .. } => {
            cut_text(name, max);
            if let Some(d) = data.as_ref() {
                let bytes = serde_json::to_vec(d).map_or(usize::MAX, |v| v.len());
                if bytes > cfg.max_event_data_bytes {
                    *data = Some(serde_json::json!({"truncated": true, "bytes": bytes}));
                }
            }
        }
    }
    event
}

impl UserRecord {
    /// A user first seen at `now`, with no events yet.
    pub fn new(user_id: &str, now: Timestamp, cfg: &SupportConfig) -> Self {
        UserRecord {
            user_id: user_id.to_owned(),
            email: None,
            tier: None,
            visitor_id: None,
            first_seen: now,
            last_event: now,
            present_since: now,
            route: None,
            route_since: now,
            interactions: VecDeque::new(),
            errors: VecDeque::new(),
            event_count: 0,
            error_count: 0,
            last_error: None,
            triggers: Vec::new(),
            alert_since: None,
            last_notified: None,
            raw_events: VecDeque::new(),
            deadline: now.plus(cfg.retention),
        }
    }

    /// Whether the user is present at `now` (an event within the presence window).
    pub(crate) fn present_at(&self, now: Timestamp, cfg: &SupportConfig) -> bool {
        now.since(self.last_event) <= cfg.presence_window && self.last_event <= now
    }

    /// Whether the user needs support (as of the last evaluation).
    pub(crate) fn needs_support(&self) -> bool {
        !self.triggers.is_empty()
    }

    /// Whether the record's retention has ended at `now` (remove it).
    pub(crate) fn expired_at(&self, now: Timestamp, cfg: &SupportConfig) -> bool {
        now >= self.last_event.plus(cfg.retention)
    }

    /// Interactions received in the low-activity window ending at `now` (saturates at the
    /// window's bound).
    pub(crate) fn interactions_in_window(&self, now: Timestamp, cfg: &SupportConfig) -> usize {
        in_window(&self.interactions, now, cfg.low_activity_window)
    }

    /// Errors received in the error window ending at `now` (saturates at the window's bound).
    pub(crate) fn errors_in_window(&self, now: Timestamp, cfg: &SupportConfig) -> usize {
        in_window(&self.errors, now, cfg.error_window)
    }

    /// The triggers holding at `now`, in [`Trigger::ALL`] order (pure; changes nothing).
    pub fn holding(&self, now: Timestamp, cfg: &SupportConfig) -> Vec<Trigger> {
        let present = self.present_at(now, cfg);
        let tier = self.tier;
        let mut out = Vec::new();
        if cfg.stuck.applies_to(tier)
            && present
            && self.route.is_some()
            && now.since(self.route_since) > cfg.stuck_after
        {
            out.push(Trigger::Stuck);
        }
        if cfg.low_activity.applies_to(tier)
            && present
            && now.since(self.present_since) >= cfg.low_activity_window
            && self.interactions_in_window(now, cfg) < cfg.low_activity_min_events
        {
            out.push(Trigger::LowActivity);
        }
        if cfg.error_burst.applies_to(tier) && self.errors_in_window(now, cfg) > cfg.error_burst_max
        {
            out.push(Trigger::ErrorBurst);
        }
        if cfg.inactivity.applies_to(tier) && now.since(self.last_event) >= cfg.inactivity_after {
            out.push(Trigger::Inactivity);
        }
        out
    }

    /// The next moment after `now` at which a rule can change by time alone, or the end of
    /// retention, whichever is first.
    pub fn next_deadline(&self, now: Timestamp, cfg: &SupportConfig) -> Timestamp {
        let tier = self.tier;
        let retention = self.last_event.plus(cfg.retention);
        let mut candidates = vec![retention];
        let presence_end = self.last_event.plus(cfg.presence_window).plus(ONE_MS);
        if cfg.stuck.applies_to(tier) && self.route.is_some() {
            candidates.push(self.route_since.plus(cfg.stuck_after).plus(ONE_MS));
            candidates.push(presence_end);
        }
        if cfg.low_activity.applies_to(tier) {
            candidates.push(self.present_since.plus(cfg.low_activity_window));
            candidates.push(presence_end);
            candidates.extend(
                self.interactions
                    .iter()
                    .map(|t| t.plus(cfg.low_activity_window)),
            );
        }
        if cfg.error_burst.applies_to(tier) {
            candidates.extend(self.errors.iter().map(|t| t.plus(cfg.error_window)));
        }
        if cfg.inactivity.applies_to(tier) {
            candidates.push(self.last_event.plus(cfg.inactivity_after));
        }
        candidates
            .into_iter()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(retention)
    }

    /// Applies a batch received at `now` (the server's clock) and re-evaluates the rules.
    ///
    /// Every event counts for presence and inactivity; `route`, `click`, `form_submit` and
    /// `custom` are interactions; `error` counts for the error burst. An event naming a route
    /// other than the current one moves the user there (`route_since = now`).
    pub fn apply_batch(
        &mut self,
        identity: &UserIdentity,
        events: &[ActivityEvent],
        now: Timestamp,
        cfg: &SupportConfig,
    ) -> Option<SupportChange> {
        if let Some(email) = &identity.email {
            self.email = Some(email.clone());
        }
        if identity.tier.is_some() {
            self.tier = identity.tier;
        }
        if let Some(visitor) = &identity.visitor_id {
            self.visitor_id = Some(visitor.clone());
        }
        if !events.is_empty() {
            if !self.present_at(now, cfg) || self.event_count == 0 {
                self.present_since = now;
            }
            self.last_event = self.last_event.max(now);
        }
        for event in events {
            self.event_count += 1;
            if let Some(route) = event_route(event)
                && self.route.as_deref() != Some(route)
            {
                self.route = Some(route.to_owned());
                self.route_since = now;
            }
            match event {
                ActivityEvent::Route { .. }
                | ActivityEvent::Click { .. }
                | ActivityEvent::FormSubmit { .. }
                | ActivityEvent::Custom { .. } => {
                    push_bounded(&mut self.interactions, now, cfg.interaction_cap());
                }
                ActivityEvent::Error { message, .. } => {
                    self.error_count += 1;
                    self.last_error = message.clone().or(self.last_error.take());
                    push_bounded(&mut self.errors, now, cfg.error_cap());
                }
                ActivityEvent::PageTime { .. } => {}
            }
            push_bounded(
                &mut self.raw_events,
                StoredEvent {
                    received_at: now,
                    event: event.clone(),
                },
                cfg.max_raw_events,
            );
        }
        self.handle_timeout(now, cfg)
    }

    /// Re-evaluates the rules at `now`: drops window entries and raw events that aged out,
    /// updates the holding triggers and the deadline, and reports the change, if any.
    /// Calling it again at the same `now` changes nothing.
    pub fn handle_timeout(&mut self, now: Timestamp, cfg: &SupportConfig) -> Option<SupportChange> {
        let low_start = now.minus(cfg.low_activity_window);
        while self.interactions.front().is_some_and(|t| *t <= low_start) {
            self.interactions.pop_front();
        }
        let err_start = now.minus(cfg.error_window);
        while self.errors.front().is_some_and(|t| *t <= err_start) {
            self.errors.pop_front();
        }
        let raw_start = now.minus(cfg.retention);
        while self
            .raw_events
            .front()
            .is_some_and(|e| e.received_at <= raw_start)
        {
            self.raw_events.pop_front();
        }
        let holding = self.holding(now, cfg);
        let before = std::mem::replace(&mut self.triggers, holding);
        self.deadline = self.next_deadline(now, cfg);
        if self.triggers == before {
            return None;
        }
        if self.triggers.is_empty() {
            self.alert_since = None;
            return Some(SupportChange::Recovered { cleared: before });
        }
        let raised: Vec<Trigger> = self
            .triggers
            .iter()
            .copied()
            .filter(|t| !before.contains(t))
            .collect();
        if before.is_empty() {
            self.alert_since = Some(now);
        }
        let notify = !raised.is_empty()
            && self
                .last_notified
                .is_none_or(|t| now.since(t) >= cfg.slack_cooldown);
        if notify {
            self.last_notified = Some(now);
        }
        Some(SupportChange::Alert { raised, notify })
    }

    /// The user's summary at `now`.
    pub fn summary(&self, now: Timestamp, cfg: &SupportConfig) -> UserSummary {
        UserSummary {
            user_id: self.user_id.clone(),
            user_email: self.email.clone(),
            subscription_tier: self.tier,
            route: self.route.clone(),
            on_route_since: self.route.as_ref().map(|_| self.route_since.to_rfc3339()),
            time_on_page_ms: self
                .route
                .as_ref()
                .map_or(0, |_| now.since(self.route_since).as_millis() as u64),
            first_seen: self.first_seen.to_rfc3339(),
            last_activity: self.last_event.to_rfc3339(),
            present: self.present_at(now, cfg),
            events_in_window: self.interactions_in_window(now, cfg) as u64,
            errors_in_window: self.errors_in_window(now, cfg) as u64,
            event_count: self.event_count,
            error_count: self.error_count,
            last_error: self.last_error.clone(),
            needs_support: self.needs_support(),
            triggers: self.triggers.clone(),
            alert_since: self.alert_since.map(Timestamp::to_rfc3339),
        }
    }
}

/// A support alert to notify people of outside the dashboards (a Slack message), asked for
/// when a trigger started to hold and the user's cooldown allowed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportNotice {
    /// The user's site.
    pub site: crate::site::SiteId,
    /// The user's summary at the alert.
    pub user: UserSummary,
    /// The triggers that started to hold.
    pub raised: Vec<Trigger>,
    /// When.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_729_080_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(T0 + secs * 1000)
    }

    fn error() -> ActivityEvent {
        ActivityEvent::Error {
            message: Some("boom".into()),
            route: Some("/app".into()),
            timestamp: 0,
        }
    }

    fn paid() -> UserIdentity {
        UserIdentity {
            email: Some("a@b.c".into()),
            tier: Some(SubscriptionTier::Paid),
            visitor_id: None,
        }
    }

    #[test]
    fn four_errors_fire_error_burst_and_it_recovers_by_time() {
        let cfg = SupportConfig::default();
        let mut u = UserRecord::new("u", at(0), &cfg);
        assert_eq!(
            u.apply_batch(&paid(), &[error(), error(), error()], at(0), &cfg),
            None
        );
        let change = u.apply_batch(&paid(), &[error()], at(10), &cfg);
        assert_eq!(
            change,
            Some(SupportChange::Alert {
                raised: vec![Trigger::ErrorBurst],
                notify: true
            })
        );
        // The first three age out at 300 s; the deadline comes no later.
        assert!(u.deadline <= at(300));
        assert_eq!(u.handle_timeout(at(299), &cfg), None);
        assert_eq!(
            u.handle_timeout(at(300), &cfg),
            Some(SupportChange::Recovered {
                cleared: vec![Trigger::ErrorBurst]
            })
        );
        assert!(!u.needs_support());
    }

    #[test]
    fn stuck_fires_on_the_deadline_and_needs_presence() {
        let cfg = SupportConfig::default();
        let mut u = UserRecord::new("u", at(0), &cfg);
        let route = ActivityEvent::Route {
            route: "/billing".into(),
            timestamp: 0,
        };
        let ping = ActivityEvent::PageTime {
            route: Some("/billing".into()),
            duration: 60_000,
            timestamp: 0,
        };
        u.apply_batch(&paid(), &[route], at(0), &cfg);
        for s in [60, 120, 180, 240, 300] {
            assert_eq!(
                u.apply_batch(&paid(), std::slice::from_ref(&ping), at(s), &cfg),
                None
            );
        }
        assert_eq!(u.deadline, Timestamp::from_millis(at(300).as_millis() + 1));
        assert_eq!(
            u.handle_timeout(u.deadline, &cfg),
            Some(SupportChange::Alert {
                raised: vec![Trigger::Stuck],
                notify: true
            })
        );
        // No more events: presence ends 120 s after the last one.
        let end = Timestamp::from_millis(at(420).as_millis() + 1);
        assert_eq!(u.deadline, end);
        assert_eq!(
            u.handle_timeout(end, &cfg),
            Some(SupportChange::Recovered {
                cleared: vec![Trigger::Stuck]
            })
        );
    }

    #[test]
    fn a_record_full_of_the_largest_events_stays_small() {
        let cfg = SupportConfig::default();
        let big = "x".repeat(10_000);
        let events: Vec<ActivityEvent> = [
            ActivityEvent::Click {
                element: Some(big.clone()),
                route: Some(big.clone()),
                timestamp: i64::MAX,
            },
            ActivityEvent::Error {
                message: Some(big.clone()),
                route: Some(big.clone()),
                timestamp: i64::MIN,
            },
            ActivityEvent::Custom {
                name: big.clone(),
                data: Some(serde_json::json!({ "blob": big })),
                timestamp: 0,
            },
        ]
        .into_iter()
        .cycle()
        .take(300)
        .map(|e| bounded_event(e, &cfg))
        .collect();
        let mut u = UserRecord::new("u", at(0), &cfg);
        for (i, chunk) in events.chunks(50).enumerate() {
            u.apply_batch(&paid(), chunk, at(i as i64), &cfg);
        }
        assert_eq!(u.raw_events.len(), cfg.max_raw_events);
        let bytes = serde_json::to_vec(&u).unwrap().len();
        assert!(bytes < 200_000, "a full record is {bytes} bytes");
        for stored in &u.raw_events {
            match &stored.event {
                ActivityEvent::Click {
                    element: Some(a),
                    route: Some(b),
                    ..
                }
                | ActivityEvent::Error {
                    message: Some(a),
                    route: Some(b),
                    ..
                } => assert_eq!((a.len(), b.len()), (512, 512)),
                ActivityEvent::Custom {
                    name,
                    data: Some(d),
                    ..
                } => {
                    assert_eq!(name.len(), 512);
                    assert_eq!(d["truncated"], true);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn windows_stay_bounded() {
        let cfg = SupportConfig {
            max_window_events: 5,
            max_raw_events: 7,
            ..SupportConfig::default()
        };
        let mut u = UserRecord::new("u", at(0), &cfg);
        let batch: Vec<ActivityEvent> = (0..50).map(|_| error()).collect();
        u.apply_batch(&paid(), &batch, at(0), &cfg);
        assert_eq!(u.errors.len(), 5);
        assert_eq!(u.raw_events.len(), 7);
        assert_eq!(u.error_count, 50);
        assert!(u.needs_support());
    }
}
