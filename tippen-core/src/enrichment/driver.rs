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
}

impl<W> LookupDriver<W> {
    /// A driver with these planner settings.
    pub fn new(config: PlannerConfig) -> Self {
        LookupDriver {
            planner: LookupPlanner::new(config),
            charged: HashMap::new(),
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

    /// When [`handle_timeout`](Self::handle_timeout) may start queued lookups.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.planner.next_deadline()
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
