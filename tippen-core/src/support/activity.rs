//! A user's activity read back (`GET /api/users/{id}/activity`): the raw events a
//! [`UserRecord`] keeps, as a timeline (newest first, paged), a journey with the time on each
//! page, the kept errors and why the user is flagged. Pure: the service passes `now`, the
//! record and whether the linked visitor is present.
//!
//! Every kept event has a sequence number: the `n`-th event the record received is `n`
//! (1-based). The record drops events only from the old end (its bound, its retention), so
//! the kept ones are numbered `event_count − kept + 1 ..= event_count`, and a page cursor is
//! the number of the last event a page returned: the next page holds the older ones.

use serde::Serialize;

use super::{StoredEvent, SupportConfig, UserRecord};
use crate::clock::Timestamp;
use crate::protocol::{ActivityEvent, Trigger, UserSummary};

/// Events per page: default and most.
pub const ACTIVITY_LIMIT: (usize, usize) = (50, 500);

/// A page of a user's timeline: events with a number below `before` (all when `None`),
/// newest first, at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivityPage {
    /// Only events numbered below this (a previous page's `nextCursor`).
    pub before: Option<u64>,
    /// At most this many events.
    pub limit: usize,
}

impl ActivityPage {
    /// Parses a cursor as it came back from `nextCursor` (a positive decimal number).
    pub fn parse_cursor(raw: &str) -> Option<u64> {
        if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        raw.parse::<u64>().ok().filter(|n| *n > 0)
    }
}

/// One event of the timeline: its number, when the server received it and the event as sent
/// (its `type`, the client's `timestamp`, route and details).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    /// The event's number (see the module docs).
    pub seq: u64,
    /// Server time of receipt, RFC 3339.
    pub received_at: String,
    /// The event as stored (`type`, `timestamp`, `route`, `element`, `message`, …).
    #[serde(flatten)]
    pub event: ActivityEvent,
}

/// One stay on a page, from a `route` event to the next route change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyStep {
    /// The route.
    pub route: String,
    /// When the user arrived, RFC 3339, on the server's clock.
    pub received_at: String,
    /// The client's time of the `route` event, epoch milliseconds.
    pub timestamp: i64,
    /// Time on the page, milliseconds (see [`journey`]).
    pub duration_ms: u64,
    /// The user's current page (its time runs until the user's last event).
    pub current: bool,
}

/// Total time on one route over the kept journey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageTime {
    /// The route.
    pub route: String,
    /// Time on it, milliseconds, summed over its stays.
    pub duration_ms: u64,
    /// How many stays.
    pub views: u64,
}

/// Why the user is flagged: one holding trigger and its sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagReason {
    /// The trigger.
    pub trigger: Trigger,
    /// The rule, with the configured thresholds ([`Trigger::describe`]).
    pub reason: String,
}

/// The live visitor the user is, when the in-app tracker named one (the visitor tracker ran
/// on the same page) and that visitor is present now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveVisitor {
    /// The visitor id (the one the live list's invite button sends to).
    pub visitor_id: String,
    /// The visitor is flagged a bot (by its user agent); the live list offers no invite then.
    pub is_bot: bool,
}

/// The answer of `GET /api/users/{id}/activity`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserActivity {
    /// The user's summary, as the support overview lists it.
    pub user: UserSummary,
    /// Why the user is flagged: the triggers of the summary, described. Empty when the user
    /// does not need support.
    pub flagged: Vec<FlagReason>,
    /// The user's live visitor, present now; `null` when there is none (or no link).
    pub live_visitor: Option<LiveVisitor>,
    /// Kept events (the timeline's length over every page).
    pub kept_events: u64,
    /// The page: kept events, newest first.
    pub events: Vec<TimelineEvent>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The pages visited, oldest first, with the time on each (over every kept event).
    pub journey: Vec<JourneyStep>,
    /// Time per route over the journey, longest first.
    pub time_per_page: Vec<PageTime>,
    /// The kept `error` events, newest first.
    pub errors: Vec<TimelineEvent>,
}

fn numbered(record: &UserRecord) -> impl DoubleEndedIterator<Item = (u64, &StoredEvent)> {
    let kept = record.raw_events.len() as u64;
    let first = record.event_count.saturating_sub(kept) + 1;
    record
        .raw_events
        .iter()
        .enumerate()
        .map(move |(i, e)| (first + i as u64, e))
}

fn timeline(seq: u64, stored: &StoredEvent) -> TimelineEvent {
    TimelineEvent {
        seq,
        received_at: stored.received_at.to_rfc3339(),
        event: stored.event.clone(),
    }
}

fn client_time(e: &ActivityEvent) -> i64 {
    match e {
        ActivityEvent::Route { timestamp, .. }
        | ActivityEvent::Click { timestamp, .. }
        | ActivityEvent::FormSubmit { timestamp, .. }
        | ActivityEvent::PageTime { timestamp, .. }
        | ActivityEvent::Error { timestamp, .. }
        | ActivityEvent::Custom { timestamp, .. } => *timestamp,
    }
}

/// The time between two events, milliseconds: on the client's clock (the tracker stamps
/// each event when it happens; the server receives them in batches, so its receipt times
/// are seconds apart at best), unless the client's clock says less than nothing or more
/// than the server saw pass plus one batch's delay — then on the server's.
fn gap(from: &StoredEvent, to: &StoredEvent) -> u64 {
    /// How much earlier than its receipt an event may have happened (a batch waits at most
    /// this long in the tracker before it is sent, retries aside).
    const SLACK_MS: i64 = 60_000;
    let server = to
        .received_at
        .as_millis()
        .saturating_sub(from.received_at.as_millis())
        .max(0);
    let client = client_time(&to.event).saturating_sub(client_time(&from.event));
    if (0..=server.saturating_add(SLACK_MS)).contains(&client) {
        client as u64
    } else {
        server as u64
    }
}

/// The pages of the kept events, oldest first: a `route` event naming another route than the
/// current stay's starts a stay; a stay lasts until the next one starts (the last, the
/// current page, until the user's last kept event). Each time is measured on the client's
/// clock unless it runs backwards or ahead of the server's receipt times by more than a minute;
/// then on the server's.
pub fn journey(record: &UserRecord) -> Vec<JourneyStep> {
    let mut steps: Vec<(JourneyStep, &StoredEvent)> = Vec::new();
    for stored in &record.raw_events {
        let ActivityEvent::Route { route, timestamp } = &stored.event else {
            continue;
        };
        if steps.last().is_some_and(|(s, _)| &s.route == route) {
            continue;
        }
        if let Some((prev, start)) = steps.last_mut() {
            prev.duration_ms = gap(start, stored);
        }
        steps.push((
            JourneyStep {
                route: route.clone(),
                received_at: stored.received_at.to_rfc3339(),
                timestamp: *timestamp,
                duration_ms: 0,
                current: false,
            },
            stored,
        ));
    }
    if let (Some((last, start)), Some(end)) = (steps.last_mut(), record.raw_events.back()) {
        last.duration_ms = gap(start, end);
        last.current = true;
    }
    steps.into_iter().map(|(s, _)| s).collect()
}

/// Time per route over `journey`, longest first (ties by route).
pub fn time_per_page(journey: &[JourneyStep]) -> Vec<PageTime> {
    let mut pages: Vec<PageTime> = Vec::new();
    for step in journey {
        match pages.iter_mut().find(|p| p.route == step.route) {
            Some(p) => {
                p.duration_ms = p.duration_ms.saturating_add(step.duration_ms);
                p.views += 1;
            }
            None => pages.push(PageTime {
                route: step.route.clone(),
                duration_ms: step.duration_ms,
                views: 1,
            }),
        }
    }
    pages.sort_by(|a, b| (b.duration_ms, &a.route).cmp(&(a.duration_ms, &b.route)));
    pages
}

impl UserRecord {
    /// The user's activity at `now`: one page of the timeline, the journey, the errors and
    /// why the user is flagged (the triggers of [`summary`](Self::summary), as the support
    /// overview shows them). `live_visitor` is the user's visitor when it is present now.
    pub fn activity(
        &self,
        now: Timestamp,
        cfg: &SupportConfig,
        page: ActivityPage,
        live_visitor: Option<LiveVisitor>,
    ) -> UserActivity {
        let user = self.summary(now, cfg);
        let flagged = user
            .triggers
            .iter()
            .map(|t| FlagReason {
                trigger: *t,
                reason: t.describe(cfg),
            })
            .collect();
        let mut events: Vec<TimelineEvent> = numbered(self)
            .rev()
            .filter(|(seq, _)| page.before.is_none_or(|b| *seq < b))
            .take(page.limit.saturating_add(1))
            .map(|(seq, e)| timeline(seq, e))
            .collect();
        let next_cursor = (events.len() > page.limit).then(|| {
            events.truncate(page.limit);
            events.last().map_or(0, |e| e.seq).to_string()
        });
        let errors = numbered(self)
            .rev()
            .filter(|(_, e)| matches!(e.event, ActivityEvent::Error { .. }))
            .map(|(seq, e)| timeline(seq, e))
            .collect();
        let journey = journey(self);
        UserActivity {
            flagged,
            live_visitor,
            kept_events: self.raw_events.len() as u64,
            events,
            next_cursor,
            time_per_page: time_per_page(&journey),
            journey,
            errors,
            user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SubscriptionTier;
    use crate::support::UserIdentity;

    const T0: i64 = 1_729_080_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(T0 + secs * 1000)
    }

    fn route(r: &str, secs: i64) -> ActivityEvent {
        ActivityEvent::Route {
            route: r.into(),
            timestamp: T0 + secs * 1000,
        }
    }

    fn error(secs: i64) -> ActivityEvent {
        ActivityEvent::Error {
            message: Some(format!("boom at {secs}")),
            route: Some("/billing".into()),
            timestamp: T0 + secs * 1000,
        }
    }

    fn paid() -> UserIdentity {
        UserIdentity {
            tier: Some(SubscriptionTier::Paid),
            ..UserIdentity::default()
        }
    }

    fn all() -> ActivityPage {
        ActivityPage {
            before: None,
            limit: 500,
        }
    }

    #[test]
    fn journey_times_each_page_on_the_clients_clock_within_a_batch() {
        let cfg = SupportConfig::default();
        let mut u = UserRecord::new("u", at(0), &cfg);
        // One batch, received at 20 s: the client's times order and time the pages.
        let batch = [
            route("/a", 0),
            route("/b", 3),
            route("/b", 4), // replaceState on the same route: the same stay
            route("/a", 10),
            error(12),
        ];
        u.apply_batch(&paid(), &batch, at(20), &cfg);
        let steps = journey(&u);
        let got: Vec<(&str, u64, bool)> = steps
            .iter()
            .map(|s| (s.route.as_str(), s.duration_ms, s.current))
            .collect();
        assert_eq!(
            got,
            vec![("/a", 3000, false), ("/b", 7000, false), ("/a", 2000, true)]
        );
        let pages = time_per_page(&steps);
        assert_eq!(
            pages,
            vec![
                PageTime {
                    route: "/b".into(),
                    duration_ms: 7000,
                    views: 1
                },
                PageTime {
                    route: "/a".into(),
                    duration_ms: 5000,
                    views: 2
                },
            ]
        );
    }

    #[test]
    fn a_clock_that_lies_falls_back_to_the_servers() {
        let cfg = SupportConfig::default();
        let mut u = UserRecord::new("u", at(0), &cfg);
        u.apply_batch(&paid(), &[route("/a", 0)], at(0), &cfg);
        // Client time runs backwards, then jumps far ahead: the server's gaps count.
        u.apply_batch(
            &paid(),
            &[ActivityEvent::Route {
                route: "/b".into(),
                timestamp: i64::MIN,
            }],
            at(30),
            &cfg,
        );
        u.apply_batch(
            &paid(),
            &[ActivityEvent::Route {
                route: "/c".into(),
                timestamp: i64::MAX,
            }],
            at(45),
            &cfg,
        );
        let got: Vec<u64> = journey(&u).iter().map(|s| s.duration_ms).collect();
        assert_eq!(got, vec![30_000, 15_000, 0]);
    }

    #[test]
    fn pages_are_newest_first_and_the_cursor_walks_every_event_once() {
        let cfg = SupportConfig {
            max_raw_events: 7,
            ..SupportConfig::default()
        };
        let mut u = UserRecord::new("u", at(0), &cfg);
        for i in 0..10 {
            u.apply_batch(&paid(), &[route(&format!("/p{i}"), i)], at(i), &cfg);
        }
        // Events 1..=3 fell off the bound; 4..=10 are kept.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let a = u.activity(at(10), &cfg, ActivityPage { before, limit: 3 }, None);
            assert_eq!(a.kept_events, 7);
            assert!(a.events.len() <= 3);
            seen.extend(a.events.iter().map(|e| e.seq));
            match a.next_cursor {
                Some(c) => before = Some(ActivityPage::parse_cursor(&c).expect("a cursor")),
                None => break,
            }
        }
        assert_eq!(seen, vec![10, 9, 8, 7, 6, 5, 4]);
        let first = u.activity(at(10), &cfg, all(), None);
        match &first.events[0].event {
            ActivityEvent::Route { route, .. } => assert_eq!(route, "/p9"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(first.next_cursor, None);
        // A page exactly as long as what is left has no next cursor.
        let exact = u.activity(
            at(10),
            &cfg,
            ActivityPage {
                before: Some(8),
                limit: 4,
            },
            None,
        );
        assert_eq!(
            exact.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![7, 6, 5, 4]
        );
        assert_eq!(exact.next_cursor, None);
    }

    #[test]
    fn flagged_reasons_are_the_summarys_triggers_described() {
        let cfg = SupportConfig::default();
        let mut u = UserRecord::new("u", at(0), &cfg);
        u.apply_batch(
            &paid(),
            &[error(0), error(1), error(2), error(3)],
            at(5),
            &cfg,
        );
        let a = u.activity(
            at(5),
            &cfg,
            all(),
            Some(LiveVisitor {
                visitor_id: "v1".into(),
                is_bot: false,
            }),
        );
        assert_eq!(a.user, u.summary(at(5), &cfg));
        assert_eq!(
            a.flagged,
            vec![FlagReason {
                trigger: Trigger::ErrorBurst,
                reason: Trigger::ErrorBurst.describe(&cfg),
            }]
        );
        assert_eq!(a.errors.len(), 4);
        assert_eq!(
            a.errors.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 3, 2, 1]
        );
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["liveVisitor"]["visitorId"], "v1");
        assert_eq!(json["events"][0]["type"], "error");
        assert_eq!(json["events"][0]["message"], "boom at 3");
        assert_eq!(json["events"][0]["seq"], 4);
        assert_eq!(json["flagged"][0]["trigger"], "error_burst");
    }

    #[test]
    fn bad_cursors_do_not_parse() {
        for bad in ["", "0", "-1", "1.5", "abc", " 1", "99999999999999999999999"] {
            assert_eq!(ActivityPage::parse_cursor(bad), None, "{bad:?}");
        }
        assert_eq!(ActivityPage::parse_cursor("42"), Some(42));
    }
}
