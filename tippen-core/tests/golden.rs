//! Golden tests: every JSON example of `protocol.md` Part A parses, and what tippen sends has
//! the documented shapes (names, casing, `type` values) byte for byte where Part A fixes them.

mod common;

use common::*;
use serde_json::{Value, json};
use tippen_core::protocol::*;

const VISITOR: &str = r#"{
  "visitorId": "visitor_123",
  "company": "Acme Corporation",
  "location": "San Francisco, CA",
  "lastRole": "Unknown",
  "pageViews": 5,
  "timestamp": "2025-10-16T12:00:00Z",
  "lastActivity": "2025-10-16T12:05:00Z",
  "status": "active",
  "website": "example.com",
  "companyDomain": "acme.com",
  "industry": "Software",
  "revenue": "$10M-$50M",
  "employees": "51-200",
  "enrichedLocation": "San Francisco, CA, US",
  "enrichmentSource": "provider",
  "isCached": false,
  "enrichedAt": "2025-10-16T12:00:01Z"
}"#;

const TRACK: &str = r#"{
  "event": "pageview",
  "visitor": {
    "visitorId": "visitor_1729080000000_abc123",
    "url": "https://example.com/products",
    "timestamp": "2025-10-16T12:00:00Z",
    "userAgent": "Mozilla/5.0 ...",
    "referrer": "https://google.com/search?q=best+products"
  },
  "website": "example.com"
}"#;

const USER_ACTIVITY: &str = r#"{
  "apiKey": "<key>",
  "userId": "user_123",
  "userEmail": "john@acme.com",
  "subscriptionTier": "free_trial",
  "events": [
    {"type":"route","route":"/dashboard","timestamp":1729080000000},
    {"type":"click","element":"button.save","route":"/dashboard","timestamp":1729080001000},
    {"type":"form_submit","formId":"signup","route":"/onboarding","timestamp":1729080002000},
    {"type":"page_time","route":"/dashboard","duration":120000,"timestamp":1729080003000},
    {"type":"error","message":"Failed to load","route":"/dashboard","timestamp":1729080004000},
    {"type":"custom","name":"feature_used","data":{"feature":"export"},"timestamp":1729080005000}
  ]
}"#;

#[test]
fn track_visitor_example_parses() {
    let r: TrackVisitorRequest = serde_json::from_str(TRACK).unwrap();
    assert_eq!(r.event, "pageview");
    assert_eq!(r.visitor.visitor_id, "visitor_1729080000000_abc123");
    assert_eq!(
        r.visitor.url.as_deref(),
        Some("https://example.com/products")
    );
    assert_eq!(r.visitor.timestamp.as_deref(), Some("2025-10-16T12:00:00Z"));
    assert_eq!(r.visitor.user_agent.as_deref(), Some("Mozilla/5.0 ..."));
    assert_eq!(
        r.visitor.referrer.as_deref(),
        Some("https://google.com/search?q=best+products")
    );
    assert_eq!(r.website.as_deref(), Some("example.com"));
}

#[test]
fn visitor_example_round_trips_with_every_field() {
    let v: VisitorView = serde_json::from_str(VISITOR).unwrap();
    assert_eq!(
        v.enrichment_source,
        tippen_core::presence::EnrichmentSource::Provider
    );
    let back = serde_json::to_value(&v).unwrap();
    let orig: Value = serde_json::from_str(VISITOR).unwrap();
    for (k, val) in orig.as_object().unwrap() {
        assert_eq!(back.get(k), Some(val), "field {k} survives");
    }
    // Additions only: every extra field is one of tippen's documented additions.
    for k in back.as_object().unwrap().keys() {
        assert!(
            orig.get(k).is_some()
                || ["url", "referrer", "userAgent", "isBot", "tabs"].contains(&k.as_str()),
            "unexpected field {k}"
        );
    }
}

#[test]
fn dashboard_message_examples_parse() {
    let lines = [
        format!(r#"{{"type":"INITIAL_VISITORS","visitors":[{VISITOR}]}}"#),
        format!(r#"{{"type":"VISITOR_UPDATE","visitor":{VISITOR},"event":"new_visitor"}}"#),
        r#"{"type":"VISITOR_REMOVED","visitorId":"visitor_789","reason":"inactive"}"#.to_owned(),
        r#"{"type":"VIDEO_INVITE_SENT","visitorId":"visitor_123","guestUrl":"https://..."}"#
            .to_owned(),
        r#"{"type":"PONG","timestamp":1729080000000}"#.to_owned(),
    ];
    for line in &lines {
        let m: ServerMessage = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        // Serializing gives back the same JSON (plus tippen's additive visitor fields).
        let back = serde_json::to_value(&m).unwrap();
        let orig: Value = serde_json::from_str(line).unwrap();
        assert_eq!(back["type"], orig["type"]);
        for (k, val) in orig.as_object().unwrap() {
            if k != "visitor" && k != "visitors" {
                assert_eq!(&back[k], val, "{line}: field {k}");
            }
        }
    }
    let seq: Sequenced = serde_json::from_str(r#"{"type":"PONG","timestamp":5,"seq":3}"#).unwrap();
    assert_eq!(seq.seq, 3);
    assert_eq!(seq.to_json(), r#"{"type":"PONG","timestamp":5,"seq":3}"#);
}

#[test]
fn dashboard_client_messages_parse() {
    assert_eq!(
        serde_json::from_str::<ClientMessage>(r#"{"type":"PING"}"#).unwrap(),
        ClientMessage::Ping
    );
    assert_eq!(
        serde_json::from_str::<ClientMessage>(r#"{"type":"GET_VISITORS"}"#).unwrap(),
        ClientMessage::GetVisitors
    );
}

#[test]
fn invite_and_activity_examples_parse() {
    let r: SendVideoInviteRequest = serde_json::from_str(
        r#"{"apiKey":"<key>","visitorId":"visitor_123","guestUrl":"https://app.example/guest/abc123"}"#,
    )
    .unwrap();
    assert_eq!(r.visitor_id, "visitor_123");
    let a: UserActivityRequest = serde_json::from_str(USER_ACTIVITY).unwrap();
    assert_eq!(a.events.len(), 6);
    assert_eq!(a.subscription_tier, Some(SubscriptionTier::FreeTrial));
    assert!(
        matches!(&a.events[2], ActivityEvent::FormSubmit { form_id: Some(f), .. } if f == "signup")
    );
    assert!(matches!(
        &a.events[3],
        ActivityEvent::PageTime {
            duration: 120_000,
            ..
        }
    ));
}

#[test]
fn responses_have_the_documented_shapes() {
    let h = harness();
    // The predecessor's documented curl, verbatim.
    let r = h.track(
        "demo_api_key",
        r#"{"event":"pageview","visitor":{"visitorId":"test","url":"https://test.com","timestamp":"2025-10-16T12:00:00Z"},"website":"test.com"}"#,
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true,"sessionId":"test"}"#
    );
    assert_eq!(
        r.response.as_ref().unwrap().headers()["content-type"],
        "application/json"
    );
    // The full Part A example.
    let r = h.track("demo_api_key", TRACK);
    assert_eq!(
        body_json(&r),
        json!({"success": true, "sessionId": "visitor_1729080000000_abc123"})
    );

    // VISITOR_UPDATE carries the nine Part A fields with their names and the documented values.
    let m: Value = serde_json::from_str(&r.broadcasts[0]).unwrap();
    assert_eq!(m["type"], "VISITOR_UPDATE");
    assert_eq!(m["event"], "new_visitor");
    assert!(m["seq"].is_u64());
    let v = &m["visitor"];
    for k in [
        "visitorId",
        "company",
        "location",
        "lastRole",
        "pageViews",
        "timestamp",
        "lastActivity",
        "status",
        "website",
    ] {
        assert!(v.get(k).is_some(), "visitor has {k}");
    }
    assert_eq!(v["company"], "Unknown Company");
    assert_eq!(v["lastRole"], "Unknown");
    assert_eq!(v["status"], "active");
    assert_eq!(v["pageViews"], 1);
    assert_eq!(v["website"], "example.com");
    assert_eq!(v["enrichmentSource"], "fallback");
    assert_eq!(
        v["timestamp"], "2024-10-16T12:00:00.000Z",
        "server clock, not the client's"
    );

    // No key: exactly Part A's body.
    let r = h.send("POST", "/track/visitor", &[], TRACK);
    assert_eq!(r.response.as_ref().unwrap().status(), 401);
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"error":"API key required"}"#
    );

    // Send video invite.
    let r = h.send(
        "POST",
        "/api/send-video-invite",
        &[],
        r#"{"apiKey":"demo_api_key","visitorId":"test","guestUrl":"https://app.example/guest/abc123"}"#,
    );
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true}"#
    );
    let m: Value = serde_json::from_str(&r.broadcasts[0]).unwrap();
    assert_eq!(m["type"], "VIDEO_INVITE_SENT");
    assert_eq!(m["visitorId"], "test");
    assert_eq!(m["guestUrl"], "https://app.example/guest/abc123");
    let r = h.send(
        "POST",
        "/api/send-video-invite",
        &[],
        r#"{"apiKey":"demo_api_key","visitorId":"gone","guestUrl":"https://x.example/"}"#,
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 404);
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"error":"Visitor not found"}"#
    );

    // User activity.
    let r = h.send(
        "POST",
        "/api/track/user-activity",
        &[],
        USER_ACTIVITY.replace("<key>", "demo_api_key"),
    );
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true,"stored":6,"analyzed":true}"#
    );

    // GET / health check.
    let r = h.send("GET", "/", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(r.response.as_ref().unwrap().body().as_ref(), b"Tippen API");
}

#[test]
fn dashboard_socket_messages() {
    let h = harness();
    h.track(
        "demo_api_key",
        &pageview("v1", "t1", "https://example.com/"),
    );
    let site = tippen_core::api::SocketRole::Dashboard {
        site: tippen_core::SiteId::from("demo"),
    };
    let hello: Value =
        serde_json::from_str(&block(h.tippen.socket_open(&site)).unwrap().reply.unwrap()).unwrap();
    assert_eq!(hello["type"], "INITIAL_VISITORS");
    assert_eq!(hello["seq"], 1);
    assert_eq!(hello["visitors"][0]["visitorId"], "v1");
    let pong: Value = serde_json::from_str(
        &block(h.tippen.socket_frame(&site, r#"{"type":"PING"}"#))
            .unwrap()
            .reply
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pong, json!({"type": "PONG", "timestamp": T0, "seq": 1}));
    let again: Value = serde_json::from_str(
        &block(h.tippen.socket_frame(&site, r#"{"type":"GET_VISITORS"}"#))
            .unwrap()
            .reply
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again, hello);
    let err: Value = serde_json::from_str(
        &block(h.tippen.socket_frame(&site, r#"{"type":"FOO"}"#))
            .unwrap()
            .reply
            .unwrap(),
    )
    .unwrap();
    assert_eq!(err["type"], "ERROR");
    assert!(err["error"].as_str().unwrap().contains("FOO"));
    let err: Value = serde_json::from_str(
        &block(h.tippen.socket_frame(&site, "not json"))
            .unwrap()
            .reply
            .unwrap(),
    )
    .unwrap();
    assert_eq!(err["type"], "ERROR");
}
