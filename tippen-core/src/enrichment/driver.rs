//! [`LookupDriver`]: the host-independent bookkeeping of an enrichment drive loop — the
//! [`LookupPlanner`] plus which site is charged for each address — so every host counts the
//! same [`EnrichmentEvent`]s for the same steps.
//!
//! Accounting: the site of the first visitor waiting for an address is charged the provider
//! requests for it (retries too, and their failures); every later visitor waiting for the same
//! address counts as [`EnrichmentEvent::JoinedInFlight`] (a credit saved by single flight).
//!
//! The host still does the IO: it checks the cache ([`LookupDriver::is_pending`] says when a
//! fresh check is worth it), sends the provider requests the driver says to start, records the
//! events it returns, and wakes up at [`LookupDriver::next_deadline`].

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Admission, Completion, EnrichmentEvent, LookupFailure, LookupPlanner, PlannerConfig};
use crate::{SiteId, Timestamp};

/// A counter to add to a site's enrichment stats.
pub type SiteEvent = (SiteId, EnrichmentEvent);

/// What a lookup request led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    /// Send the provider request for the address now (then record
    /// [`LookupDriver::started`]'s event).
    pub start: bool,
    /// Counters to record.
    pub events: Vec<SiteEvent>,
}

/// The planner and the per-address charge of one provider. `W` identifies a waiting visitor
/// (opaque here); each waiter is handed back with its site.
#[derive(Debug)]
pub struct LookupDriver<W> {
    planner: LookupPlanner<(SiteId, W)>,
    charged: HashMap<IpAddr, SiteId>,
    /// Addresses another process sharing the store is looking up (its claim held when this
    /// one would have started), with when to check the cache for its result next. They stay
    /// in flight in the planner, so later requests join them.
    elsewhere: HashMap<IpAddr, Timestamp>,
}

impl<W> LookupDriver<W> {
    /// A driver with these planner settings.
    pub fn new(config: PlannerConfig) -> Self {
        LookupDriver {
            planner: LookupPlanner::new(config),
            charged: HashMap::new(),
            elsewhere: HashMap::new(),
        }
    }

    /// Whether a lookup of `ip` is in flight or queued (then a cache check is pointless: the
    /// request joins it).
    pub fn is_pending(&self, ip: IpAddr) -> bool {
        self.charged.contains_key(&ip)
    }

    /// A visitor of `site` needs `ip` looked up (the cache had nothing fresh).
    pub fn request(&mut self, site: SiteId, waiter: W, ip: IpAddr, now: Timestamp) -> Requested {
        let joined = self.charged.contains_key(&ip);
        match self.planner.request(ip, (site.clone(), waiter), now) {
            Admission::Start => {
                self.charged.insert(ip, site);
                Requested {
                    start: true,
                    events: Vec::new(),
                }
            }
            Admission::Joined => Requested {
                start: false,
                events: vec![(site, EnrichmentEvent::JoinedInFlight)],
            },
            Admission::Queued if joined => Requested {
                start: false,
                events: vec![(site, EnrichmentEvent::JoinedInFlight)],
            },
            Admission::Queued => {
                self.charged.insert(ip, site);
                Requested {
                    start: false,
                    events: Vec::new(),
                }
            }
            Admission::Overflow => Requested {
                start: false,
                events: vec![(site, EnrichmentEvent::QueueFull)],
            },
        }
    }

    /// The counter for sending the provider request for `ip` (a credit charged to its site).
    pub fn started(&self, ip: IpAddr) -> Option<SiteEvent> {
        self.charged
            .get(&ip)
            .map(|site| (site.clone(), EnrichmentEvent::LookupStarted))
    }

    /// The planner's settings.
    pub fn config(&self) -> &PlannerConfig {
        self.planner.config()
    }

    /// When [`handle_timeout`](Self::handle_timeout) may start queued lookups, or
    /// [`due_elsewhere`](Self::due_elsewhere) has an address to check.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let check = self.elsewhere.values().min().copied();
        match (self.planner.next_deadline(), check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `ip` was to start, but another process holds the claim on its lookup: it stays in
    /// flight (requests join it) and is due for a cache check at `check_at`.
    pub fn elsewhere(&mut self, ip: IpAddr, check_at: Timestamp) {
        self.elsewhere.insert(ip, check_at);
    }

    /// The addresses looked up elsewhere whose cache check is due at `now` (each returned
    /// once per [`elsewhere`](Self::elsewhere)).
    pub fn due_elsewhere(&mut self, now: Timestamp) -> Vec<IpAddr> {
        let due: Vec<IpAddr> = self
            .elsewhere
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &due {
            self.elsewhere.remove(ip);
        }
        due
    }

    /// The lookup of `ip` was settled by another process (its result is in the cache): the
    /// waiters to give it to, and the counter of the credit saved for the site that would
    /// have been charged (later waiters counted theirs when they joined).
    pub fn settled_elsewhere(
        &mut self,
        ip: IpAddr,
        now: Timestamp,
    ) -> (Vec<SiteEvent>, Vec<(SiteId, W)>) {
        self.elsewhere.remove(&ip);
        let events = self
            .charged
            .remove(&ip)
            .map(|site| vec![(site, EnrichmentEvent::JoinedInFlight)])
            .unwrap_or_default();
        let settled: Result<(), LookupFailure> = Ok(());
        match self.planner.complete(ip, &settled, now) {
            Completion::Settled(waiters) => (events, waiters),
            Completion::Retrying { .. } => (events, Vec::new()),
        }
    }

    /// The addresses whose provider requests may start now (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<IpAddr> {
        self.planner.handle_timeout(now)
    }

    /// The provider answered for `ip`: the counters to record (a failure is charged to the
    /// address's site) and whether the lookup is settled (give the result to the cache, then
    /// to each waiter) or retried.
    pub fn complete<T>(
        &mut self,
        ip: IpAddr,
        result: &Result<T, LookupFailure>,
        now: Timestamp,
    ) -> (Vec<SiteEvent>, Completion<(SiteId, W)>) {
        let mut events = Vec::new();
        if let Err(failure) = result
            && let Some(site) = self.charged.get(&ip)
        {
            events.push((site.clone(), EnrichmentEvent::LookupFailed(failure.kind())));
        }
        let completion = self.planner.complete(ip, result, now);
        if matches!(completion, Completion::Settled(_)) {
            self.charged.remove(&ip);
        }
        (events, completion)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::enrichment::{FailureKind, RateLimit};

    fn site(s: &str) -> SiteId {
        SiteId::from(s)
    }

    #[test]
    fn a_lookup_made_elsewhere_keeps_its_waiters_until_its_result_is_cached() {
        let mut driver: LookupDriver<&str> = LookupDriver::new(PlannerConfig::default());
        let t0 = Timestamp::from_millis(0);
        let ip: IpAddr = "8.8.8.8".parse().unwrap();
        assert!(driver.request(site("a"), "v1", ip, t0).start);
        // Another process held the claim: the address waits, in flight, for a cache check.
        let check = t0.plus(Duration::from_millis(250));
        driver.elsewhere(ip, check);
        assert_eq!(driver.next_deadline(), Some(check));
        assert!(driver.due_elsewhere(t0).is_empty(), "not before its time");
        let joined = driver.request(site("b"), "v2", ip, t0);
        assert!(!joined.start, "a later request joins");
        assert_eq!(driver.due_elsewhere(check), vec![ip]);
        assert!(driver.due_elsewhere(check).is_empty(), "returned once");
        assert_eq!(driver.next_deadline(), None);
        let (events, waiters) = driver.settled_elsewhere(ip, check);
        assert_eq!(
            events,
            vec![(site("a"), EnrichmentEvent::JoinedInFlight)],
            "the first site saved its credit"
        );
        assert_eq!(waiters, vec![(site("a"), "v1"), (site("b"), "v2")]);
        assert!(!driver.is_pending(ip));
    }

    #[test]
    fn charges_the_first_site_and_counts_joins_and_failures() {
        let config = PlannerConfig {
            rate_limit: RateLimit::new(1, Duration::from_secs(60)),
            max_attempts: 1,
            ..PlannerConfig::default()
        };
        let mut driver: LookupDriver<&str> = LookupDriver::new(config);
        let t0 = Timestamp::from_millis(0);
        let ip: IpAddr = "8.8.8.8".parse().unwrap();
        let other: IpAddr = "1.1.1.1".parse().unwrap();

        let first = driver.request(site("a"), "v1", ip, t0);
        assert!(first.start);
        assert!(first.events.is_empty());
        assert!(driver.is_pending(ip));
        assert_eq!(
            driver.started(ip),
            Some((site("a"), EnrichmentEvent::LookupStarted))
        );
        let joined = driver.request(site("b"), "v2", ip, t0);
        assert!(!joined.start);
        assert_eq!(
            joined.events,
            vec![(site("b"), EnrichmentEvent::JoinedInFlight)]
        );
        // Over the rate limit: queued, charged to its own site, started later.
        let queued = driver.request(site("b"), "v3", other, t0);
        assert!(!queued.start && queued.events.is_empty());
        assert_eq!(
            driver.started(other),
            Some((site("b"), EnrichmentEvent::LookupStarted))
        );

        let failed: Result<(), LookupFailure> = Err(LookupFailure::NotFound);
        let (events, completion) = driver.complete(ip, &failed, t0);
        assert_eq!(
            events,
            vec![(
                site("a"),
                EnrichmentEvent::LookupFailed(FailureKind::NotFound)
            )]
        );
        assert_eq!(
            completion,
            Completion::Settled(vec![(site("a"), "v1"), (site("b"), "v2")])
        );
        assert!(!driver.is_pending(ip));
        assert_eq!(driver.started(ip), None);

        let due = driver
            .next_deadline()
            .expect("the queued address has a deadline");
        assert_eq!(driver.handle_timeout(due), vec![other]);
    }
}
