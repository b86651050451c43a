//! Model-based property tests of the invite lifecycle ([`tippen_core::invite::Invites`]).
//!
//! Random sequences over several visitors of send (fresh or repeated invite ids), delivered,
//! seen, accepted, declined, cancelled, visitor leaves, clock advances and sweeps run against
//! the real book and a tiny reference model. Checked after every step:
//!
//! - the result (created, no-op, error kind) and the messages (invite, state, in order) are the
//!   model's, and every invite's state is the model's;
//! - no invite ever leaves a final state;
//! - never two open invites for one visitor, and `open_for` names the open one;
//! - every state change emits exactly one message, no-ops emit none;
//! - expiry happens at the deadline, never before (and a sweep expires everything due);
//! - `next_deadline()` is never later than the earliest open expiry, and after a sweep never
//!   in the past.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use tippen_core::Timestamp;
use tippen_core::invite::{
    InviteConfig, InviteError, InviteEvent, InviteState, Invites, NewInvite,
};

const T0: i64 = 1_729_080_000_000;
const TTL_MS: i64 = 60_000;

#[derive(Clone, Debug)]
enum Op {
    Send { visitor: u8, id: u8 },
    Event { id: u8, event: InviteEvent },
    Leave { visitor: u8 },
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let send = (0u8..3, 0u8..8).prop_map(|(visitor, id)| Op::Send { visitor, id });
    let event = (
        0u8..8,
        prop::sample::select(vec![
            InviteEvent::Delivered,
            InviteEvent::Seen,
            InviteEvent::Accepted,
            InviteEvent::Declined,
            InviteEvent::Cancelled,
            InviteEvent::VisitorLeft,
        ]),
    )
        .prop_map(|(id, event)| Op::Event { id, event });
    let leave = (0u8..3).prop_map(|visitor| Op::Leave { visitor });
    let advance = prop_oneof![
        0u64..3_000,
        Just(1),
        Just(TTL_MS as u64 - 1),
        Just(TTL_MS as u64),
        10_000u64..40_000,
        55_000u64..65_000,
    ]
    .prop_map(Op::Advance);
    prop_oneof![3 => send, 4 => event, 1 => leave, 2 => advance, 2 => Just(Op::Sweep)]
}

#[derive(Clone, Debug)]
struct MInvite {
    visitor: String,
    state: InviteState,
    expires: i64,
}

/// What the model expects of one call.
#[derive(Debug, PartialEq)]
enum Expect {
    Ok {
        created: bool,
        messages: Vec<(String, InviteState)>,
    },
    Err(&'static str),
}

fn error_kind(e: &InviteError) -> &'static str {
    match e {
        InviteError::AlreadyOpen { .. } => "already_open",
        InviteError::NotFound { .. } => "not_found",
        InviteError::IdReused { .. } => "id_reused",
        InviteError::Conflict { .. } => "conflict",
    }
}

fn open(s: InviteState) -> bool {
    use InviteState::*;
    matches!(s, Sent | Delivered | Seen)
}

/// The reference table, written out on its own: `Some(Some(s))` moves to `s`, `Some(None)` is
/// a no-op, `None` is a conflict.
fn step(from: InviteState, e: InviteEvent) -> Option<Option<InviteState>> {
    use InviteEvent as E;
    use InviteState as S;
    match (from, e) {
        (S::Sent, E::Delivered) => Some(Some(S::Delivered)),
        (S::Delivered | S::Seen | S::Accepted | S::Declined, E::Delivered) => Some(None),
        (S::Sent | S::Delivered, E::Seen) => Some(Some(S::Seen)),
        (S::Seen | S::Accepted | S::Declined, E::Seen) => Some(None),
        (S::Sent | S::Delivered | S::Seen, E::Accepted) => Some(Some(S::Accepted)),
        (S::Sent | S::Delivered | S::Seen, E::Declined) => Some(Some(S::Declined)),
        (S::Sent | S::Delivered | S::Seen, E::Cancelled) => Some(Some(S::Cancelled)),
        (S::Sent | S::Delivered | S::Seen, E::VisitorLeft) => Some(Some(S::VisitorLeft)),
        (S::Accepted, E::Accepted)
        | (S::Declined, E::Declined)
        | (S::Cancelled, E::Cancelled)
        | (S::VisitorLeft, E::VisitorLeft) => Some(None),
        _ => None,
    }
}

#[derive(Default)]
struct Model {
    invites: BTreeMap<String, MInvite>,
}

impl Model {
    fn open_of(&self, visitor: &str) -> Option<String> {
        self.invites
            .iter()
            .find(|(_, i)| i.visitor == visitor && open(i.state))
            .map(|(id, _)| id.clone())
    }

    fn expire_if_due(&mut self, id: &str, now: i64) -> Option<(String, InviteState)> {
        let i = self.invites.get_mut(id)?;
        if open(i.state) && now >= i.expires {
            i.state = InviteState::Expired;
            Some((id.to_owned(), InviteState::Expired))
        } else {
            None
        }
    }

    fn send(&mut self, id: &str, visitor: &str, now: i64) -> Expect {
        if let Some(i) = self.invites.get(id) {
            if i.visitor != visitor {
                return Expect::Err("id_reused");
            }
            return Expect::Ok {
                created: false,
                messages: self.expire_if_due(id, now).into_iter().collect(),
            };
        }
        let mut messages = Vec::new();
        if let Some(o) = self.open_of(visitor) {
            match self.expire_if_due(&o, now) {
                Some(m) => messages.push(m),
                None => return Expect::Err("already_open"),
            }
        }
        self.invites.insert(
            id.to_owned(),
            MInvite {
                visitor: visitor.to_owned(),
                state: InviteState::Sent,
                expires: now + TTL_MS,
            },
        );
        messages.push((id.to_owned(), InviteState::Sent));
        Expect::Ok {
            created: true,
            messages,
        }
    }

    fn event(&mut self, id: &str, e: InviteEvent, now: i64) -> Expect {
        if !self.invites.contains_key(id) {
            return Expect::Err("not_found");
        }
        if let Some(m) = self.expire_if_due(id, now) {
            return Expect::Ok {
                created: false,
                messages: vec![m],
            };
        }
        let i = self.invites.get_mut(id).unwrap();
        match step(i.state, e) {
            Some(Some(to)) => {
                i.state = to;
                Expect::Ok {
                    created: false,
                    messages: vec![(id.to_owned(), to)],
                }
            }
            Some(None) => Expect::Ok {
                created: false,
                messages: vec![],
            },
            None => Expect::Err("conflict"),
        }
    }

    fn sweep(&mut self, now: i64) -> Vec<(String, InviteState)> {
        let mut due: Vec<(i64, String)> = self
            .invites
            .iter()
            .filter(|(_, i)| open(i.state) && now >= i.expires)
            .map(|(id, i)| (i.expires, id.clone()))
            .collect();
        due.sort();
        due.into_iter()
            .filter_map(|(_, id)| self.expire_if_due(&id, now))
            .collect()
    }

    fn earliest_open_expiry(&self) -> Option<i64> {
        self.invites
            .values()
            .filter(|i| open(i.state))
            .map(|i| i.expires)
            .min()
    }
}

fn states(book: &Invites) -> BTreeMap<String, InviteState> {
    book.iter()
        .map(|i| (i.invite_id.clone(), i.state))
        .collect()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut book = Invites::new(InviteConfig {
        ttl: Duration::from_millis(TTL_MS as u64),
    });
    let mut model = Model::default();
    let mut now = T0;
    for op in ops {
        let t = Timestamp::from_millis(now);
        let before = states(&book);
        // (expected, actual) for the ops that return something.
        let (expect, actual): (Expect, Expect) = match &op {
            Op::Send { visitor, id } => {
                let (v, id) = (format!("v{visitor}"), format!("i{id}"));
                let expect = model.send(&id, &v, now);
                let r = book.send(NewInvite::new(&id, &v, &format!("https://g/{id}")), t);
                if let Ok(c) = &r {
                    prop_assert_eq!(Some(&c.invite), book.get(&id), "change carries the invite");
                }
                (expect, to_expect(r.map(|c| (c.created, c.messages))))
            }
            Op::Event { id, event } => {
                let id = format!("i{id}");
                let expect = model.event(&id, *event, now);
                let r = book.handle(&id, *event, t);
                if let Ok(c) = &r {
                    prop_assert_eq!(Some(&c.invite), book.get(&id), "change carries the invite");
                }
                (expect, to_expect(r.map(|c| (c.created, c.messages))))
            }
            Op::Leave { visitor } => {
                let v = format!("v{visitor}");
                let expect = match model.open_of(&v) {
                    Some(id) => model.event(&id, InviteEvent::VisitorLeft, now),
                    None => Expect::Ok {
                        created: false,
                        messages: vec![],
                    },
                };
                let actual = match book.visitor_left(&v, t) {
                    Some(c) => to_expect(Ok((c.created, c.messages))),
                    None => Expect::Ok {
                        created: false,
                        messages: vec![],
                    },
                };
                (expect, actual)
            }
            Op::Advance(ms) => {
                now += *ms as i64;
                continue;
            }
            Op::Sweep => {
                let expect = model.sweep(now);
                let changes = book.sweep(t);
                let mut messages = Vec::new();
                for c in changes {
                    prop_assert_eq!(c.messages.len(), 1, "one message per expiry");
                    messages.extend(c.messages);
                }
                let actual = to_expect(Ok((false, messages)));
                if let Some(d) = book.next_deadline() {
                    prop_assert!(
                        d.as_millis() > now,
                        "deadline {} in the past after a sweep at {}",
                        d.as_millis(),
                        now
                    );
                }
                (
                    Expect::Ok {
                        created: false,
                        messages: expect,
                    },
                    actual,
                )
            }
        };
        prop_assert_eq!(&actual, &expect, "{:?} at {}", op, now - T0);
        let after = states(&book);

        // Every invite's state is the model's.
        let modelled: BTreeMap<String, InviteState> = model
            .invites
            .iter()
            .map(|(id, i)| (id.clone(), i.state))
            .collect();
        prop_assert_eq!(&after, &modelled, "states after {:?}", op);

        // No invite leaves a final state; none disappears.
        for (id, s) in &before {
            let now_state = after.get(id).copied();
            prop_assert!(now_state.is_some(), "{} disappeared", id);
            if s.is_final() {
                prop_assert_eq!(now_state, Some(*s), "{} left final state {}", id, s);
            }
        }

        // Exactly one message per change, none for a no-op.
        let changed: BTreeSet<&String> = after
            .iter()
            .filter(|(id, s)| before.get(*id) != Some(*s))
            .map(|(id, _)| id)
            .collect();
        if let Expect::Ok { messages, .. } = &actual {
            let ids: Vec<&String> = messages.iter().map(|(id, _)| id).collect();
            let unique: BTreeSet<&String> = ids.iter().copied().collect();
            prop_assert_eq!(ids.len(), unique.len(), "one message per invite per call");
            prop_assert_eq!(&unique, &changed, "messages ⇔ changes after {:?}", op);
            for (id, s) in messages {
                prop_assert_eq!(after.get(id), Some(s), "a message reports the new state");
                if *s == InviteState::Expired {
                    let exp = book.get(id).unwrap().expires_at.as_millis();
                    prop_assert!(now >= exp, "expired at {} before its deadline {}", now, exp);
                }
            }
        } else {
            prop_assert!(changed.is_empty(), "an error changed {:?}", changed);
        }

        // At most one open invite per visitor, and open_for names it.
        let mut open_by_visitor: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for i in book.iter().filter(|i| i.is_open()) {
            open_by_visitor
                .entry(&i.visitor_id)
                .or_default()
                .push(&i.invite_id);
        }
        for v in ["v0", "v1", "v2"] {
            let open = open_by_visitor.get(v).cloned().unwrap_or_default();
            prop_assert!(open.len() <= 1, "two open invites for {}: {:?}", v, open);
            prop_assert_eq!(
                book.open_for(v).map(|i| i.invite_id.as_str()),
                open.first().copied(),
                "open_for({})",
                v
            );
        }

        // Deadlines.
        for i in book.iter() {
            prop_assert_eq!(i.deadline(), i.is_open().then_some(i.expires_at));
        }
        let next = book.next_deadline().map(Timestamp::as_millis);
        // The in-memory index is exact (stores may be early, never late).
        prop_assert_eq!(next, model.earliest_open_expiry(), "next_deadline is exact");
        if let Some(earliest) = model.earliest_open_expiry() {
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

fn to_expect(r: Result<(bool, Vec<tippen_core::invite::InviteMessage>), InviteError>) -> Expect {
    match r {
        Ok((created, messages)) => Expect::Ok {
            created,
            messages: messages
                .iter()
                .map(|m| (m.invite_id().to_owned(), m.state()))
                .collect(),
        },
        Err(e) => Expect::Err(error_kind(&e)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn invites_match_the_model(ops in prop::collection::vec(op(), 1..100)) {
        run(ops)?;
    }
}

#[test]
fn a_late_answer_finds_the_invite_expired() {
    run(vec![
        Op::Send { visitor: 0, id: 0 },
        Op::Event {
            id: 0,
            event: InviteEvent::Seen,
        },
        Op::Advance(TTL_MS as u64 - 1),
        Op::Event {
            id: 0,
            event: InviteEvent::Accepted,
        },
        Op::Send { visitor: 1, id: 1 },
        Op::Advance(1),
        Op::Event {
            id: 1,
            event: InviteEvent::Accepted,
        },
        Op::Sweep,
        Op::Advance(TTL_MS as u64),
        Op::Event {
            id: 1,
            event: InviteEvent::Accepted,
        },
        Op::Sweep,
    ])
    .unwrap();
}

#[test]
fn a_resend_after_expiry_expires_then_sends() {
    run(vec![
        Op::Send { visitor: 2, id: 3 },
        Op::Advance(TTL_MS as u64),
        Op::Send { visitor: 2, id: 4 },
        Op::Send { visitor: 2, id: 3 },
        Op::Leave { visitor: 2 },
        Op::Send { visitor: 2, id: 4 },
        Op::Send { visitor: 1, id: 4 },
    ])
    .unwrap();
}
