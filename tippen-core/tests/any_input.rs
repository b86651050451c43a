//! Whatever a client sends — random bytes, valid requests with bytes flipped, JSON of the
//! wrong shape, on every route, with any key — the core answers it without panicking, with a
//! status below 500 and, for an error, the contract's `{"error": "..."}` body; socket frames
//! likewise get a reply, never a failure. And nothing is lost: a visitor of another site
//! stays listed, unchanged, after every random input.

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use serde_json::Value;
use tippen_core::api::{RequestContext, SocketRole};

const ROUTES: &[&str] = &[
    "/",
    "/track/visitor",
    "/track/leave",
    "/track/invite",
    "/api/visitors",
    "/api/visitors/v1",
    "/api/stats",
    "/api/send-video-invite",
    "/api/video-call",
    "/api/invites/cancel",
    "/api/track/user-activity",
    "/api/support/users",
    "/api/users/u1",
    "/ws/dashboard",
    "/ws/visitor",
    "/tippen-tracker.js",
    "/nowhere",
];

const METHODS: &[&str] = &["GET", "POST", "DELETE", "PUT", "OPTIONS", "HEAD", "PATCH"];

/// Keys of site `a` (and the demo site), wrong keys, none. Never site `b`'s, whose visitor
/// is the one that must survive.
const KEYS: &[Option<&str>] = &[
    None,
    Some("pk_a"),
    Some("sk_a"),
    Some("demo_api_key"),
    Some(""),
    Some("nope"),
];

/// Valid bodies of the routes, for the mutations to start from.
fn valid_bodies() -> Vec<String> {
    vec![
        pageview("v1", "t1", "https://example.com/a?x=1#frag"),
        r#"{"event":"heartbeat","visitor":{"visitorId":"v1","tabId":"t1","visibility":"hidden"}}"#.into(),
        r#"{"visitorId":"v1","tabId":"t1","pageId":"p1"}"#.into(),
        r#"{"visitorId":"v1","inviteId":"i1","action":"accepted"}"#.into(),
        r#"{"visitorId":"v1","guestUrl":"https://meet.example.com/r/1","invitedBy":"Ann"}"#.into(),
        r#"{"visitorId":"v1","inviteId":"i1"}"#.into(),
        r#"{"userId":"u1","userEmail":"u@x.test","subscriptionTier":"free_trial","userHash":"00","events":[{"type":"error","message":"boom","route":"/x","timestamp":1},{"type":"custom","name":"n","data":{"a":[1,2,{"b":null}]},"timestamp":2}]}"#.into(),
    ]
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// A valid body with `edits` applied: (position fraction, byte, 0 = replace / 1 = insert / 2 = delete).
    Mutated(usize, Vec<(u16, u8, u8)>),
    /// A valid body whose JSON values are swapped for `replacement` at a depth-first index.
    Reshaped(usize, usize, Value),
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(5000))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Body> {
    let n = valid_bodies().len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        (
            0..n,
            prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..6)
        )
            .prop_map(|(i, e)| Body::Mutated(i, e)),
        (0..n, 0usize..40, json_value()).prop_map(|(i, at, v)| Body::Reshaped(i, at, v)),
    ]
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        let bodies = valid_bodies();
        match self {
            Body::Bytes(b) => b.clone(),
            Body::Mutated(i, edits) => {
                let mut b = bodies[*i].clone().into_bytes();
                for (at, byte, kind) in edits {
                    let pos = usize::from(*at) % (b.len() + 1);
                    match kind {
                        0 if pos < b.len() => b[pos] = *byte,
                        2 if pos < b.len() => {
                            b.remove(pos);
                        }
                        _ => b.insert(pos, *byte),
                    }
                }
                b
            }
            Body::Reshaped(i, at, replacement) => {
                let mut v: Value = serde_json::from_str(&bodies[*i]).expect("valid body");
                let mut index = 0;
                replace_nth(&mut v, *at, &mut index, replacement);
                serde_json::to_vec(&v).expect("serializes")
            }
        }
    }
}

/// Replaces the `at`-th value (depth first, the root being 0) with `with`.
fn replace_nth(v: &mut Value, at: usize, index: &mut usize, with: &Value) -> bool {
    if *index == at {
        *v = with.clone();
        return true;
    }
    *index += 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|x| replace_nth(x, at, index, with)),
        Value::Object(map) => map.values_mut().any(|x| replace_nth(x, at, index, with)),
        _ => false,
    }
}

#[derive(Debug, Clone)]
struct Input {
    method: &'static str,
    route: &'static str,
    query: Option<String>,
    key: Option<&'static str>,
    content_type: Option<&'static str>,
    body: Body,
}

fn input() -> impl Strategy<Value = Input> {
    (
        prop::sample::select(METHODS),
        prop::sample::select(ROUTES),
        prop::option::of("[a-zA-Z0-9=&%._-]{0,40}"),
        prop::sample::select(KEYS),
        prop::option::of(prop::sample::select(
            &[
                "application/json",
                "text/plain;charset=UTF-8",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ][..],
        )),
        body(),
    )
        .prop_map(|(method, route, query, key, content_type, body)| Input {
            method,
            route,
            query,
            key,
            content_type,
            body,
        })
}

fn request(input: &Input) -> http::Request<Bytes> {
    let uri = match &input.query {
        Some(q) => format!("{}?{q}", input.route),
        None => input.route.to_owned(),
    };
    let mut b = http::Request::builder().method(input.method).uri(uri);
    if let Some(key) = input.key {
        b = b.header("X-Tippen-API-Key", key);
    }
    if let Some(ct) = input.content_type {
        b = b.header("Content-Type", ct);
    }
    b.body(Bytes::from(input.body.bytes()))
        .expect("a valid request")
}

/// Site `b`'s one visitor, as `GET /api/visitors` lists it.
fn keeper(h: &Harness) -> Value {
    let listed = h.send("GET", "/api/visitors", &[("X-Tippen-API-Key", "sk_b")], "");
    let status = listed.response.as_ref().expect("a response").status();
    assert_eq!(status, 200);
    body_json(&listed)["visitors"].clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_request_is_answered_below_500_and_loses_nothing(inputs in prop::collection::vec(input(), 1..12)) {
        let h = harness();
        let kept = h.track("pk_b", &pageview("keeper", "t1", "https://b.test/"));
        prop_assert_eq!(kept.response.as_ref().map(|r| r.status().as_u16()), Some(200));
        let before = keeper(&h);
        for input in &inputs {
            let effects = block(h.tippen.handle(request(input), &RequestContext::default()));
            let Some(response) = effects.response.as_ref() else {
                // A WebSocket upgrade the host completes: only the socket paths may do this.
                prop_assert!(input.route.starts_with("/ws/"), "no response for {:?}", input);
                continue;
            };
            let status = response.status().as_u16();
            // The one 5xx of the contract: 501 from /api/video-call on a server without a video
            // provider (the server's configuration, not the client's input).
            let no_provider = status == 501 && input.route == "/api/video-call";
            prop_assert!(status < 500 || no_provider, "{} for {:?}: {:?}", status, input, String::from_utf8_lossy(response.body()));
            if status >= 400 && input.method != "HEAD" {
                let body: Value = serde_json::from_slice(response.body())
                    .map_err(|e| TestCaseError::fail(format!("{status} body is not JSON ({e}) for {input:?}")))?;
                let error = body.as_object().filter(|o| o.len() == 1).and_then(|o| o["error"].as_str());
                prop_assert!(error.is_some_and(|e| !e.is_empty()), "{} body {} for {:?}", status, body, input);
            }
        }
        prop_assert_eq!(keeper(&h), before);
    }

    #[test]
    fn any_socket_frame_gets_a_reply(frames in prop::collection::vec(prop_oneof![
        ".{0,200}",
        json_value().prop_map(|v| v.to_string()),
        json_value().prop_map(|v| serde_json::json!({"type": "PING", "x": v}).to_string()),
        json_value().prop_map(|v| serde_json::json!({"type": "INVITE_RESPONSE", "inviteId": v, "action": "accepted"}).to_string()),
        Just("x".repeat(100_000)),
    ], 1..8)) {
        let h = harness();
        for role in [
            SocketRole::Dashboard { site: "a".into() },
            SocketRole::Visitor { site: "a".into(), visitor_id: "v1".into() },
        ] {
            block(h.tippen.socket_open(&role)).expect("opens");
            for frame in &frames {
                let effects = block(h.tippen.socket_frame(&role, frame))
                    .map_err(|e| TestCaseError::fail(format!("{role:?} {frame:?}: {e}")))?;
                if let Some(reply) = &effects.reply {
                    let v: Value = serde_json::from_str(reply)
                        .map_err(|e| TestCaseError::fail(format!("reply is not JSON ({e}): {reply}")))?;
                    prop_assert!(v["type"].is_string(), "reply without a type: {}", reply);
                }
                if matches!(role, SocketRole::Dashboard { .. }) {
                    prop_assert!(effects.reply.is_some(), "a dashboard frame {:?} got no reply", frame);
                }
            }
        }
    }
}
