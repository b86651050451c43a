//! The lookup planner against a reference model, in virtual time: random requests, time
//! steps, timer firings and provider answers (including 429 and 202 retries).
//!
//! Checked after every step and at the end:
//! - never more than `max_starts` starts in any window of `per`;
//! - an address is never started while it is already in flight;
//! - every waiter is notified exactly once, and (after draining) nothing is dropped;
//! - admissions agree with the model (join when in flight, queue when waiting).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use tippen_core::Timestamp;
use tippen_core::enrichment::{
    Admission, Completion, LookupFailure, LookupPlanner, PlannerConfig, RateLimit,
};

const T0: Timestamp = Timestamp::from_millis(1_729_080_000_000);

#[derive(Clone, Debug)]
enum Answer {
    Found,
    NotFound,
    RateLimited(Option<u64>),
    Queued(Option<u64>),
    Transient,
}

impl Answer {
    fn result(&self) -> Result<(), LookupFailure> {
        match self {
            Answer::Found => Ok(()),
            Answer::NotFound => Err(LookupFailure::NotFound),
            Answer::RateLimited(s) => Err(LookupFailure::RateLimited {
                retry_after: s.map(Duration::from_secs),
            }),
            Answer::Queued(s) => Err(LookupFailure::Queued {
                retry_after: s.map(Duration::from_secs),
            }),
            Answer::Transient => Err(LookupFailure::Transient("timeout".into())),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// A visitor needs address `n` looked up.
    Request(u8),
    /// Time passes (ms).
    Advance(u64),
    /// The host's timer fires at `next_deadline()` (if any).
    FireTimer,
    /// The host calls `handle_timeout` now (possibly spuriously).
    Poll,
    /// The provider answers the `k`-th in-flight address (mod count).
    Answer(usize, Answer),
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => Just(Answer::Found),
        2 => Just(Answer::NotFound),
        1 => proptest::option::of(0u64..120).prop_map(Answer::RateLimited),
        1 => proptest::option::of(0u64..120).prop_map(Answer::Queued),
        1 => Just(Answer::Transient),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12).prop_map(Op::Request),
        2 => (0u64..90_000).prop_map(Op::Advance),
        2 => Just(Op::FireTimer),
        1 => Just(Op::Poll),
        5 => (any::<usize>(), answer()).prop_map(|(k, a)| Op::Answer(k, a)),
    ]
}

fn addr(n: u8) -> IpAddr {
    IpAddr::from([198, 51, 101, n])
}

/// The reference model: which addresses are in flight, which wait, who waits for what.
#[derive(Default)]
struct Model {
    in_flight: BTreeSet<IpAddr>,
    waiting: BTreeSet<IpAddr>,
    waiters: BTreeMap<IpAddr, Vec<u32>>,
    notified: BTreeSet<u32>,
    issued: u32,
    starts: Vec<Timestamp>,
}

struct Run {
    planner: LookupPlanner<u32>,
    model: Model,
    now: Timestamp,
    limit: RateLimit,
}

impl Run {
    fn new(max_starts: u32, per_secs: u64) -> Self {
        let limit = RateLimit::new(max_starts, Duration::from_secs(per_secs));
        Run {
            planner: LookupPlanner::new(PlannerConfig {
                rate_limit: limit,
                ..PlannerConfig::default()
            }),
            model: Model::default(),
            now: T0,
            limit,
        }
    }

    fn started(&mut self, ip: IpAddr) -> Result<(), TestCaseError> {
        prop_assert!(
            !self.model.in_flight.contains(&ip),
            "{ip} started while already in flight"
        );
        prop_assert!(self.model.waiting.remove(&ip) || self.model.waiters.contains_key(&ip));
        self.model.in_flight.insert(ip);
        self.model.starts.push(self.now);
        Ok(())
    }

    fn poll(&mut self) -> Result<(), TestCaseError> {
        for ip in self.planner.handle_timeout(self.now) {
            prop_assert!(
                self.model.waiting.contains(&ip),
                "{ip} started but not waiting"
            );
            self.started(ip)?;
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Request(n) => {
                let ip = addr(*n);
                let waiter = self.model.issued;
                self.model.issued += 1;
                let admission = self.planner.request(ip, waiter, self.now);
                let was_in_flight = self.model.in_flight.contains(&ip);
                let was_waiting = self.model.waiting.contains(&ip);
                self.model.waiters.entry(ip).or_default().push(waiter);
                match admission {
                    Admission::Joined => prop_assert!(was_in_flight),
                    Admission::Queued => {
                        prop_assert!(!was_in_flight);
                        self.model.waiting.insert(ip);
                    }
                    Admission::Overflow => {
                        prop_assert!(false, "overflow below the default queue bound");
                    }
                    Admission::Start => {
                        prop_assert!(!was_in_flight && !was_waiting);
                        self.started(ip)?;
                    }
                }
                if was_in_flight {
                    prop_assert_eq!(admission, Admission::Joined);
                }
                if was_waiting {
                    prop_assert_eq!(admission, Admission::Queued);
                }
            }
            Op::Advance(ms) => self.now = self.now.plus(Duration::from_millis(*ms)),
            Op::FireTimer => {
                if let Some(at) = self.planner.next_deadline() {
                    self.now = self.now.max(at);
                    let before = self.model.starts.len();
                    self.poll()?;
                    // A deadline is never empty: firing it starts something.
                    prop_assert!(
                        self.model.starts.len() > before,
                        "deadline {at:?} started nothing"
                    );
                }
            }
            Op::Poll => self.poll()?,
            Op::Answer(k, answer) => {
                if self.model.in_flight.is_empty() {
                    return Ok(());
                }
                let ip = *self
                    .model
                    .in_flight
                    .iter()
                    .nth(k % self.model.in_flight.len())
                    .unwrap();
                self.model.in_flight.remove(&ip);
                match self.planner.complete(ip, &answer.result(), self.now) {
                    Completion::Settled(waiters) => {
                        let mut expected = self.model.waiters.remove(&ip).unwrap_or_default();
                        let mut got = waiters.clone();
                        expected.sort_unstable();
                        got.sort_unstable();
                        prop_assert_eq!(got, expected, "waiters of {}", ip);
                        for w in waiters {
                            prop_assert!(
                                self.model.notified.insert(w),
                                "waiter {w} notified twice"
                            );
                        }
                    }
                    Completion::Retrying { at } => {
                        prop_assert!(answer.result().is_err());
                        prop_assert!(at >= self.now);
                        self.model.waiting.insert(ip);
                    }
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let n = self.limit.max_starts as usize;
        let starts = &self.model.starts;
        for i in n..starts.len() {
            prop_assert!(
                starts[i].since(starts[i - n]) >= self.limit.per,
                "{} starts within {:?}: {:?}",
                n + 1,
                self.limit.per,
                &starts[i - n..=i]
            );
        }
        prop_assert_eq!(self.planner.in_flight(), self.model.in_flight.len());
        prop_assert_eq!(self.planner.queued(), self.model.waiting.len());
        // Something waits ⇔ there is a deadline.
        prop_assert_eq!(
            self.planner.next_deadline().is_some(),
            !self.model.waiting.is_empty()
        );
        Ok(())
    }

    /// Answers everything with success and fires timers until idle: nothing may be left.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            if self.planner.is_idle() {
                break;
            }
            if !self.model.in_flight.is_empty() {
                self.step(&Op::Answer(0, Answer::Found))?;
            } else {
                self.step(&Op::FireTimer)?;
            }
        }
        prop_assert!(self.planner.is_idle(), "planner never drained");
        prop_assert!(
            self.model.waiters.is_empty(),
            "dropped: {:?}",
            self.model.waiters
        );
        prop_assert_eq!(self.model.notified.len() as u32, self.model.issued);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn planner_matches_the_model(
        max_starts in 1u32..6,
        per_secs in 1u64..120,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut run = Run::new(max_starts, per_secs);
        for op in &ops {
            run.step(op)?;
        }
        run.drain()?;
    }
}

#[test]
fn a_thousand_requests_from_a_hundred_addresses_cost_a_hundred_starts() {
    let mut run = Run::new(50, 60);
    for i in 0..1000u32 {
        run.step(&Op::Request((i % 100) as u8)).unwrap();
    }
    assert_eq!(run.model.starts.len(), 50);
    assert_eq!(run.planner.queued(), 50);
    run.drain().unwrap();
    assert_eq!(run.model.starts.len(), 100);
    assert_eq!(run.model.notified.len(), 1000);
}

/// A full queue refuses new addresses (bounded memory) but still lets waiters join addresses
/// already queued or in flight; once the queue drains, new addresses are queued again.
#[test]
fn a_full_queue_refuses_new_addresses_only() {
    use std::net::IpAddr;
    use std::time::Duration;
    use tippen_core::Timestamp;
    use tippen_core::enrichment::{Admission, LookupPlanner, PlannerConfig, RateLimit};

    let config = PlannerConfig {
        rate_limit: RateLimit::new(1, Duration::from_secs(60)),
        max_queued: 2,
        ..PlannerConfig::default()
    };
    let mut p: LookupPlanner<u32> = LookupPlanner::new(config);
    let t0 = Timestamp::from_millis(1_729_080_000_000);
    let ip = |n: u8| -> IpAddr { format!("8.8.8.{n}").parse().unwrap() };
    assert_eq!(p.request(ip(1), 1, t0), Admission::Start);
    assert_eq!(p.request(ip(2), 2, t0), Admission::Queued);
    assert_eq!(p.request(ip(3), 3, t0), Admission::Queued);
    assert_eq!(
        p.request(ip(4), 4, t0),
        Admission::Overflow,
        "a third distinct address"
    );
    assert_eq!(
        p.request(ip(2), 5, t0),
        Admission::Queued,
        "joining a queued address"
    );
    assert_eq!(
        p.request(ip(1), 6, t0),
        Admission::Joined,
        "joining the flight"
    );
    assert_eq!(p.queued(), 2);
    // A minute later one queued address starts; there is room again.
    let t1 = t0.plus(Duration::from_secs(60));
    assert_eq!(p.handle_timeout(t1), vec![ip(2)]);
    assert_eq!(p.request(ip(4), 7, t1), Admission::Queued);
}
