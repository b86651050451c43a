//! Single flight and the provider rate limit, as a pure time-driven planner the host owns.
//!
//! [`LookupPlanner`] decides, for each address a visitor needs looked up, whether the host
//! starts a provider request now, joins the one already in flight for that address, or waits
//! in the queue. It never drops a request: queued addresses start, in arrival order, as soon
//! as the rate limit allows. When the provider says "later" (429, 202, a transient failure),
//! [`LookupPlanner::complete`] puts the address back in the queue with its waiters, up to
//! [`PlannerConfig::max_attempts`] attempts.
//!
//! The rate limit is a token bucket of [`RateLimit::max_starts`] tokens in which each spent
//! token comes back exactly [`RateLimit::per`] after it was spent. That is the strict form:
//! no window of `per` ever holds more than `max_starts` starts (a bucket refilled at a steady
//! rate would let a full burst follow another one window later).
//!
//! The drive loop, as for the rest of the core:
//!
//! ```
//! use std::{net::IpAddr, time::Duration};
//! use tippen_core::{enrichment::{Admission, Completion, LookupPlanner, PlannerConfig, RateLimit}, Timestamp};
//!
//! let config = PlannerConfig { rate_limit: RateLimit::new(1, Duration::from_secs(60)), ..Default::default() };
//! let mut planner: LookupPlanner<&str> = LookupPlanner::new(config);
//! let t0 = Timestamp::from_millis(0);
//! let (a, b): (IpAddr, IpAddr) = ("8.8.8.8".parse().unwrap(), "1.1.1.1".parse().unwrap());
//!
//! assert_eq!(planner.request(a, "visitor-1", t0), Admission::Start); // send the request
//! assert_eq!(planner.request(a, "visitor-2", t0), Admission::Joined); // same IP: no new credit
//! assert_eq!(planner.request(b, "visitor-3", t0), Admission::Queued); // over the rate limit
//!
//! // The host arms a timer at the deadline, then asks what may start.
//! let due = planner.next_deadline().unwrap();
//! assert_eq!(due, t0.plus(Duration::from_secs(60)));
//! assert_eq!(planner.handle_timeout(due), vec![b]);
//!
//! // Each finished lookup hands back its waiters, exactly once.
//! let ok: Result<(), tippen_core::enrichment::LookupFailure> = Ok(());
//! assert_eq!(planner.complete(a, &ok, due), Completion::Settled(vec!["visitor-1", "visitor-2"]));
//! assert_eq!(planner.complete(b, &ok, due), Completion::Settled(vec!["visitor-3"]));
//! assert_eq!(planner.next_deadline(), None);
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use super::provider::LookupFailure;
use crate::Timestamp;

/// At most `max_starts` provider requests in any window of `per`. Default 50 per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Most requests started in any window of [`per`](Self::per); at least 1.
    pub max_starts: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// `max_starts` per `per` (a `max_starts` of 0 is taken as 1).
    pub fn new(max_starts: u32, per: Duration) -> Self {
        RateLimit {
            max_starts: max_starts.max(1),
            per,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(50, Duration::from_secs(60))
    }
}

/// Configuration of a [`LookupPlanner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannerConfig {
    /// The provider's rate limit. Default 50 per minute.
    pub rate_limit: RateLimit,
    /// Most provider requests for one address before a retryable failure is final. Default 4.
    pub max_attempts: u32,
    /// The wait before retrying when the provider gave no `Retry-After`. Default 30 s.
    pub retry_delay: Duration,
    /// The longest wait honoured from a `Retry-After`. Default 10 minutes.
    pub max_retry_delay: Duration,
    /// Most distinct addresses waiting to start. Beyond it a new address is refused
    /// ([`Admission::Overflow`]) rather than queued: at 50 lookups a minute, 10,000 waiting
    /// addresses is over three hours of backlog, and memory must stay bounded when a flood of
    /// distinct addresses arrives. Default 10,000.
    pub max_queued: usize,
    /// How long a process's claim on an address's lookup holds
    /// ([`Store::claim_lookup`](crate::Store::claim_lookup)) when several processes share one
    /// store: past it, another process may look the address up (the claimer died). Default
    /// 30 s.
    pub claim_hold: Duration,
    /// How often a process checks the shared cache for an address another process is looking
    /// up (then its visitors get that result, and no request is sent here). Default 250 ms.
    pub claim_poll: Duration,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            rate_limit: RateLimit::default(),
            max_attempts: 4,
            retry_delay: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(600),
            max_queued: 10_000,
            claim_hold: Duration::from_secs(30),
            claim_poll: Duration::from_millis(250),
        }
    }
}

/// What to do about a requested lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send the provider request for this address now.
    Start,
    /// A request for this address is in flight; its answer will be handed to this waiter too.
    Joined,
    /// Over the rate limit (or waiting for a retry): the address starts later, from
    /// [`LookupPlanner::handle_timeout`].
    Queued,
    /// The queue is full ([`PlannerConfig::max_queued`]): no lookup for this address now; the
    /// waiter is not kept and keeps its fallback company.
    Overflow,
}

/// What a finished provider request means for its waiters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion<W> {
    /// The lookup is settled: give the result to these waiters (each exactly once).
    Settled(Vec<W>),
    /// The provider asked to try again: the address is queued until `at` with its waiters,
    /// who wait on.
    Retrying {
        /// When the address may start again.
        at: Timestamp,
    },
}

/// Earlier than any time a host passes in.
const ALWAYS: Timestamp = Timestamp::from_millis(i64::MIN);

#[derive(Debug)]
struct Flight<W> {
    waiters: Vec<W>,
    /// Provider requests sent so far.
    attempts: u32,
    /// Earliest start (for retries).
    not_before: Timestamp,
}

/// Single flight and rate limit for one provider. `W` identifies whoever waits for an
/// address's company (a site and visitor id, a channel — opaque here).
///
/// Methods in the core's usual kinds: commands [`request`](Self::request) and
/// [`complete`](Self::complete); input [`handle_timeout`](Self::handle_timeout) (spurious
/// calls are harmless); output [`next_deadline`](Self::next_deadline).
#[derive(Debug)]
pub struct LookupPlanner<W> {
    config: PlannerConfig,
    /// Times of the most recent starts, oldest first, at most `max_starts` of them.
    starts: VecDeque<Timestamp>,
    /// No start before this (the provider said 429 with a wait).
    paused_until: Option<Timestamp>,
    in_flight: HashMap<IpAddr, Flight<W>>,
    waiting: HashMap<IpAddr, Flight<W>>,
    /// Waiting addresses in arrival order.
    queue: VecDeque<IpAddr>,
}

impl<W> LookupPlanner<W> {
    /// An idle planner.
    pub fn new(config: PlannerConfig) -> Self {
        LookupPlanner {
            config: PlannerConfig {
                rate_limit: RateLimit::new(config.rate_limit.max_starts, config.rate_limit.per),
                max_attempts: config.max_attempts.max(1),
                ..config
            },
            starts: VecDeque::new(),
            paused_until: None,
            in_flight: HashMap::new(),
            waiting: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Addresses with a provider request in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Addresses waiting to start.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is in flight or queued.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.queue.is_empty()
    }

    /// `waiter` needs `ip` looked up (the host has already checked the cache). On
    /// [`Admission::Start`] the host sends the provider request and later calls
    /// [`complete`](Self::complete).
    pub fn request(&mut self, ip: IpAddr, waiter: W, now: Timestamp) -> Admission {
        if let Some(flight) = self.in_flight.get_mut(&ip) {
            flight.waiters.push(waiter);
            return Admission::Joined;
        }
        if let Some(flight) = self.waiting.get_mut(&ip) {
            flight.waiters.push(waiter);
            return Admission::Queued;
        }
        let start_now = self.may_start(now) && !self.queue_has_ready(now);
        if !start_now && self.waiting.len() >= self.config.max_queued {
            return Admission::Overflow;
        }
        let mut flight = Flight {
            waiters: vec![waiter],
            attempts: 0,
            not_before: now,
        };
        // First come, first served: start at once only if nobody ready is ahead.
        if start_now {
            self.start(&mut flight, now);
            self.in_flight.insert(ip, flight);
            Admission::Start
        } else {
            self.waiting.insert(ip, flight);
            self.queue.push_back(ip);
            Admission::Queued
        }
    }

    /// When queued addresses may next start, or `None` when nothing is queued. The host calls
    /// [`handle_timeout`](Self::handle_timeout) then (a past deadline means now).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let ready = self
            .queue
            .iter()
            .filter_map(|ip| self.waiting.get(ip))
            .map(|f| f.not_before)
            .min()?;
        let mut at = ready.max(self.token_at());
        if let Some(paused) = self.paused_until {
            at = at.max(paused);
        }
        Some(at)
    }

    /// The addresses whose provider requests start now, in queue order, as many as the rate
    /// limit allows. Calls before the deadline return nothing.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<IpAddr> {
        let mut started = Vec::new();
        while self.may_start(now) {
            let Some(pos) = self
                .queue
                .iter()
                .position(|ip| self.waiting.get(ip).is_some_and(|f| f.not_before <= now))
            else {
                break;
            };
            let Some(ip) = self.queue.remove(pos) else {
                break;
            };
            let Some(mut flight) = self.waiting.remove(&ip) else {
                continue;
            };
            self.start(&mut flight, now);
            self.in_flight.insert(ip, flight);
            started.push(ip);
        }
        started
    }

    /// The provider request for `ip` finished with `result` at `now`.
    ///
    /// A retryable failure ([`FailureKind::is_retryable`](super::FailureKind::is_retryable))
    /// with attempts left queues the address again — after the provider's `Retry-After`
    /// (capped at [`PlannerConfig::max_retry_delay`]) or [`PlannerConfig::retry_delay`] — and
    /// a 429 also holds back every other start until then. Anything else settles the lookup
    /// and hands back its waiters. A call for an address not in flight settles nobody.
    pub fn complete<T>(
        &mut self,
        ip: IpAddr,
        result: &Result<T, LookupFailure>,
        now: Timestamp,
    ) -> Completion<W> {
        let Some(mut flight) = self.in_flight.remove(&ip) else {
            return Completion::Settled(Vec::new());
        };
        let failure = match result {
            Err(f) if f.kind().is_retryable() && flight.attempts < self.config.max_attempts => f,
            _ => return Completion::Settled(flight.waiters),
        };
        let wait = failure
            .retry_after()
            .unwrap_or(self.config.retry_delay)
            .min(self.config.max_retry_delay);
        let at = now.plus(wait);
        if matches!(failure, LookupFailure::RateLimited { .. }) {
            self.paused_until = Some(self.paused_until.map_or(at, |p| p.max(at)));
        }
        flight.not_before = at;
        self.waiting.insert(ip, flight);
        // It has waited longest: first in line once its time comes.
        self.queue.push_front(ip);
        Completion::Retrying { at }
    }

    /// Whether a request may start at `now`: a token is back and no pause is running.
    fn may_start(&self, now: Timestamp) -> bool {
        self.paused_until.is_none_or(|p| now >= p) && now >= self.token_at()
    }

    /// When the next token is back ([`ALWAYS`] when one is available already).
    fn token_at(&self) -> Timestamp {
        match self.starts.front() {
            Some(oldest) if self.starts.len() >= self.config.rate_limit.max_starts as usize => {
                oldest.plus(self.config.rate_limit.per)
            }
            _ => ALWAYS,
        }
    }

    fn queue_has_ready(&self, now: Timestamp) -> bool {
        self.queue
            .iter()
            .any(|ip| self.waiting.get(ip).is_some_and(|f| f.not_before <= now))
    }

    fn start(&mut self, flight: &mut Flight<W>, now: Timestamp) {
        flight.attempts += 1;
        self.starts.push_back(now);
        while self.starts.len() > self.config.rate_limit.max_starts as usize {
            self.starts.pop_front();
        }
        if self.paused_until.is_some_and(|p| now >= p) {
            self.paused_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_729_080_000_000);
    const SEC: Duration = Duration::from_secs(1);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([203, 0, 114, n])
    }

    fn planner(max: u32) -> LookupPlanner<u32> {
        LookupPlanner::new(PlannerConfig {
            rate_limit: RateLimit::new(max, Duration::from_secs(60)),
            ..PlannerConfig::default()
        })
    }

    #[test]
    fn fifty_per_minute_then_queue() {
        let mut p = LookupPlanner::<u32>::new(PlannerConfig::default());
        for n in 0..50 {
            assert_eq!(p.request(ip(n), u32::from(n), T0), Admission::Start);
        }
        assert_eq!(p.request(ip(50), 50, T0), Admission::Queued);
        assert_eq!(p.next_deadline(), Some(T0.plus(60 * SEC)));
        assert!(p.handle_timeout(T0.plus(59 * SEC)).is_empty());
        assert_eq!(p.handle_timeout(T0.plus(60 * SEC)), vec![ip(50)]);
    }

    #[test]
    fn rate_limited_pauses_everything_and_retries_first() {
        let mut p = planner(10);
        assert_eq!(p.request(ip(1), 1, T0), Admission::Start);
        let err: Result<(), _> = Err(LookupFailure::RateLimited {
            retry_after: Some(30 * SEC),
        });
        assert_eq!(
            p.complete(ip(1), &err, T0),
            Completion::Retrying {
                at: T0.plus(30 * SEC)
            }
        );
        // Paused: a new address waits behind the retry.
        assert_eq!(p.request(ip(2), 2, T0.plus(SEC)), Admission::Queued);
        assert_eq!(p.request(ip(1), 11, T0.plus(SEC)), Admission::Queued);
        assert_eq!(p.next_deadline(), Some(T0.plus(30 * SEC)));
        assert_eq!(p.handle_timeout(T0.plus(30 * SEC)), vec![ip(1), ip(2)]);
        let ok: Result<(), LookupFailure> = Ok(());
        assert_eq!(
            p.complete(ip(1), &ok, T0.plus(31 * SEC)),
            Completion::Settled(vec![1, 11])
        );
    }

    #[test]
    fn queued_202_retries_only_that_address() {
        let mut p = planner(10);
        assert_eq!(p.request(ip(1), 1, T0), Admission::Start);
        let queued: Result<(), _> = Err(LookupFailure::Queued { retry_after: None });
        assert_eq!(
            p.complete(ip(1), &queued, T0),
            Completion::Retrying {
                at: T0.plus(30 * SEC)
            }
        );
        assert_eq!(p.request(ip(2), 2, T0), Admission::Start);
    }

    #[test]
    fn attempts_are_bounded() {
        let mut p = planner(100);
        p.request(ip(1), 1, T0);
        let err: Result<(), _> = Err(LookupFailure::Transient("HTTP 503".into()));
        let mut now = T0;
        for _ in 1..4 {
            let Completion::Retrying { at } = p.complete(ip(1), &err, now) else {
                panic!("expected a retry");
            };
            now = at;
            assert_eq!(p.handle_timeout(now), vec![ip(1)]);
        }
        assert_eq!(p.complete(ip(1), &err, now), Completion::Settled(vec![1]));
        assert!(p.is_idle());
    }

    #[test]
    fn retry_after_is_capped() {
        let mut p = planner(10);
        p.request(ip(1), 1, T0);
        let err: Result<(), _> = Err(LookupFailure::Queued {
            retry_after: Some(Duration::from_secs(86_400)),
        });
        assert_eq!(
            p.complete(ip(1), &err, T0),
            Completion::Retrying {
                at: T0.plus(600 * SEC)
            }
        );
    }

    #[test]
    fn spurious_calls_are_harmless() {
        let mut p = planner(1);
        let ok: Result<(), LookupFailure> = Ok(());
        assert_eq!(p.complete(ip(9), &ok, T0), Completion::Settled(vec![]));
        assert!(p.handle_timeout(T0).is_empty());
        assert_eq!(p.next_deadline(), None);
        assert_eq!(planner(0).config().rate_limit.max_starts, 1);
    }
}
