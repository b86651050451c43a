//! The HTTP contract's error table, keys and roles, CORS and limits, driven through
//! `Tippen::handle` with the memory store.

mod common;

use common::*;
use serde_json::Value;
use tippen_core::{Config, SiteId};

fn error_of(h: &tippen_core::Effects) -> String {
    let v = body_json(h);
    let obj = v.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 1, "error body has exactly one field: {v}");
    obj["error"].as_str().expect("error is a string").to_owned()
}

/// method, uri, headers, body, status, a part of the message
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    String,
    u16,
    &'a str,
);

#[test]
fn error_table() {
    let h = harness();
    let pv = pageview("v1", "t", "https://example.com/");
    let cases: Vec<Case> = vec![
        ("POST", "/track/visitor", vec![], pv.clone(), 401, "API key required"),
        ("POST", "/track/visitor", vec![("X-Tippen-API-Key", "nope")], pv.clone(), 403, "invalid API key"),
        ("POST", "/track/visitor", vec![("X-Tippen-API-Key", "")], pv.clone(), 401, "API key required"),
        ("POST", "/track/visitor", vec![("X-Tippen-API-Key", "pk_a")], "{not json".into(), 400, "malformed JSON"),
        ("POST", "/track/visitor", vec![("X-Tippen-API-Key", "pk_a")], "".into(), 400, "empty"),
        ("POST", "/track/visitor", vec![("X-Tippen-API-Key", "pk_a")], "null".into(), 400, "invalid request body"),
        ("POST", "/track/visitor", vec![("X-Tippen-API-Key", "pk_a")], "[]".into(), 400, "invalid request body"),
        (
            "POST",
            "/track/visitor",
            vec![("X-Tippen-API-Key", "pk_a")],
            r#"{"event":"pageview","visitor":{"url":"x"}}"#.into(),
            400,
            "missing field `visitorId` at visitor",
        ),
        (
            "POST",
            "/track/visitor",
            vec![("X-Tippen-API-Key", "pk_a")],
            r#"{"event":"pageview","visitor":{"visitorId":5}}"#.into(),
            400,
            "visitor.visitorId",
        ),
        (
            "POST",
            "/track/visitor",
            vec![("X-Tippen-API-Key", "pk_a")],
            r#"{"visitor":{"visitorId":"x"}}"#.into(),
            400,
            "missing field `event`",
        ),
        (
            "POST",
            "/track/visitor",
            vec![("X-Tippen-API-Key", "pk_a")],
            r#"{"event":"dance","visitor":{"visitorId":"x"}}"#.into(),
            400,
            "unknown event 'dance'",
        ),
        (
            "POST",
            "/track/visitor",
            vec![("X-Tippen-API-Key", "pk_a")],
            r#"{"event":"pageview","visitor":{"visitorId":""}}"#.into(),
            400,
            "visitor.visitorId must be 1 to 128 bytes",
        ),
        (
            "POST",
            "/track/visitor",
            vec![("X-Tippen-API-Key", "pk_a")],
            r#"{"event":"pageview","visitor":{"visitorId":"x","visibility":"sideways"}}"#.into(),
            400,
            "visitor.visibility",
        ),
        ("GET", "/track/visitor", vec![], String::new(), 405, "method GET not allowed on /track/visitor"),
        ("DELETE", "/", vec![], String::new(), 405, "method DELETE not allowed"),
        ("GET", "/nope", vec![], String::new(), 404, "no route for GET /nope"),
        ("GET", "/api/visitors", vec![], String::new(), 401, "API key required"),
        ("GET", "/api/visitors?apiKey=pk_a", vec![], String::new(), 403, "requires the site's secret key"),
        ("GET", "/ws/dashboard?apiKey=pk_a", vec![], String::new(), 403, "requires the site's secret key"),
        ("GET", "/ws/dashboard?apiKey=sk_a", vec![], String::new(), 426, "WebSocket"),
        (
            "POST",
            "/api/send-video-invite",
            vec![],
            r#"{"apiKey":"pk_a","visitorId":"v","guestUrl":"https://g.example/"}"#.into(),
            403,
            "secret key",
        ),
        (
            "POST",
            "/api/send-video-invite",
            vec![],
            r#"{"apiKey":"sk_a","visitorId":"v","guestUrl":"javascript:alert(1)"}"#.into(),
            400,
            "guestUrl",
        ),
        (
            "POST",
            "/api/send-video-invite",
            vec![],
            r#"{"apiKey":"sk_a","visitorId":"v"}"#.into(),
            400,
            "missing field `guestUrl`",
        ),
        (
            "POST",
            "/api/track/user-activity",
            vec![],
            r#"{"apiKey":"pk_a","userId":"u","events":[{"type":"route","route":"/","timestamp":1e400}]}"#.into(),
            400,
            "",
        ),
        (
            "POST",
            "/api/track/user-activity",
            vec![],
            r#"{"apiKey":"pk_a","userId":"u","events":[{"type":"teleport","timestamp":1}]}"#.into(),
            400,
            "events[0]",
        ),
        (
            "POST",
            "/track/leave",
            vec![],
            r#"{"visitorId":"v"}"#.into(),
            401,
            "API key required",
        ),
    ];
    for (method, uri, headers, body, status, needle) in cases {
        let r = h.send(method, uri, &headers, body.clone());
        assert_eq!(
            r.response.as_ref().unwrap().status().as_u16(),
            status,
            "{method} {uri} {body}: {:?}",
            r.response.as_ref().unwrap().body()
        );
        let msg = error_of(&r);
        assert!(
            msg.contains(needle),
            "{method} {uri} {body}: message {msg:?} lacks {needle:?}"
        );
        assert_eq!(
            r.response.as_ref().unwrap().headers()["access-control-allow-origin"],
            "*"
        );
        assert!(r.broadcasts.is_empty(), "an error broadcasts nothing");
    }
}

#[test]
fn method_not_allowed_names_the_allowed_methods() {
    let h = harness();
    let r = h.send("GET", "/track/visitor", &[], "");
    assert_eq!(
        r.response.as_ref().unwrap().headers()["allow"],
        "POST, OPTIONS"
    );
}

#[test]
fn invalid_utf8_and_huge_bodies_are_client_errors() {
    let h = harness();
    let r = h.send(
        "POST",
        "/track/visitor",
        &[("X-Tippen-API-Key", "pk_a")],
        vec![0xff, 0xfe, b'{'],
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 400);
    let big = format!(
        r#"{{"event":"pageview","visitor":{{"visitorId":"x","url":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    let r = h.send(
        "POST",
        "/track/visitor",
        &[("X-Tippen-API-Key", "pk_a")],
        big,
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 413);
    assert_eq!(error_of(&r), "request body too large (limit 65536 bytes)");
}

#[test]
fn activity_batches_over_the_limit_are_413_not_truncated() {
    let h = harness();
    let batch = |n: usize| {
        let events: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"type":"click","element":"b","timestamp":{i}}}"#))
            .collect();
        format!(
            r#"{{"apiKey":"pk_a","userId":"u1","events":[{}]}}"#,
            events.join(",")
        )
    };
    let r = h.send("POST", "/api/track/user-activity", &[], batch(50));
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true,"stored":50,"analyzed":true}"#
    );
    let r = h.send("POST", "/api/track/user-activity", &[], batch(51));
    assert_eq!(r.response.as_ref().unwrap().status(), 413);
    assert!(error_of(&r).contains("51 events exceeds the limit of 50"));
}

#[test]
fn cors_preflight() {
    let h = harness();
    for path in ["/track/visitor", "/anything"] {
        let r = h.send(
            "OPTIONS",
            path,
            &[
                ("Origin", "https://shop.example"),
                ("Access-Control-Request-Method", "POST"),
            ],
            "",
        );
        assert_eq!(r.response.as_ref().unwrap().status(), 204);
        let hd = r.response.as_ref().unwrap().headers();
        assert_eq!(hd["access-control-allow-origin"], "*");
        assert!(
            hd["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("X-Tippen-API-Key")
        );
        assert!(
            hd["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
    }
}

#[test]
fn key_roles_and_key_locations() {
    let h = harness();
    let pv = pageview("v1", "t", "https://example.com/");
    // Public key tracks (header, query or body).
    assert_eq!(
        h.track("pk_a", &pv).response.as_ref().unwrap().status(),
        200
    );
    let r = h.send("POST", "/track/visitor?apiKey=pk_a", &[], pv.clone());
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    let with_body_key = pv.replacen('{', r#"{"apiKey":"pk_a","#, 1);
    assert_eq!(
        h.send("POST", "/track/visitor", &[], with_body_key)
            .response
            .as_ref()
            .unwrap()
            .status(),
        200
    );
    // Secret key tracks too; legacy key does everything.
    assert_eq!(
        h.track("sk_a", &pv).response.as_ref().unwrap().status(),
        200
    );
    assert_eq!(
        h.send("GET", "/api/visitors?apiKey=sk_a", &[], "")
            .response
            .as_ref()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        h.send("GET", "/api/visitors?apiKey=demo_api_key", &[], "")
            .response
            .as_ref()
            .unwrap()
            .status(),
        200
    );
    // A bad header key is rejected even when the body carries a good one.
    let with_body_key = pv.replacen('{', r#"{"apiKey":"pk_a","#, 1);
    let r = h.send(
        "POST",
        "/track/visitor",
        &[("X-Tippen-API-Key", "wrong")],
        with_body_key,
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 403);
    // Unknown keys never create a site.
    h.track("pk_new", &pv);
    assert!(
        block(h.tippen.store().sites())
            .unwrap()
            .iter()
            .all(|s| s.id.as_str() != "pk_new")
    );
    assert_eq!(block(h.tippen.store().sites()).unwrap().len(), 3);
}

#[test]
fn sites_are_isolated() {
    let h = harness();
    h.track("pk_a", &pageview("shared-id", "t", "https://a.example/"));
    let list = |key: &str| {
        let r = h.send("GET", &format!("/api/visitors?apiKey={key}"), &[], "");
        body_json(&r)["visitors"].as_array().unwrap().len()
    };
    assert_eq!(list("sk_a"), 1);
    assert_eq!(list("sk_b"), 0);
    let r = h.send(
        "POST",
        "/api/send-video-invite",
        &[],
        r#"{"apiKey":"sk_b","visitorId":"shared-id","guestUrl":"https://g.example/"}"#,
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 404);
}

#[test]
fn tabs_leave_and_sequence() {
    let h = harness();
    let site = SiteId::from("a");
    let seqs = |r: &tippen_core::Effects| -> Vec<(String, u64)> {
        r.broadcasts
            .iter()
            .map(|b| {
                let v: Value = serde_json::from_str(b).unwrap();
                (
                    format!(
                        "{}:{}",
                        v["type"].as_str().unwrap(),
                        v["event"].as_str().or(v["reason"].as_str()).unwrap_or("")
                    ),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let r = h.track("pk_a", &pageview("v", "t1", "https://a.example/"));
    assert_eq!(seqs(&r), [("VISITOR_UPDATE:new_visitor".into(), 1)]);
    let r = h.track("pk_a", &pageview("v", "t2", "https://a.example/pricing"));
    assert_eq!(seqs(&r), [("VISITOR_UPDATE:tab_opened".into(), 2)]);
    let hb = r#"{"event":"heartbeat","visitor":{"visitorId":"v","tabId":"t1"}}"#;
    let r = h.track("pk_a", hb);
    assert!(
        r.broadcasts.is_empty(),
        "a heartbeat that changes nothing is silent"
    );
    let vis =
        r#"{"event":"visibility","visitor":{"visitorId":"v","tabId":"t1","visibility":"hidden"}}"#;
    assert_eq!(
        seqs(&h.track("pk_a", vis)),
        [("VISITOR_UPDATE:visibility".into(), 3)]
    );
    let list = body_json(&h.send("GET", "/api/visitors?apiKey=sk_a", &[], ""));
    assert_eq!(list["seq"], 3);
    let v = &list["visitors"][0];
    assert_eq!(v["tabs"].as_array().unwrap().len(), 2);
    assert_eq!(v["pageViews"], 2);
    assert_eq!(
        v["url"], "https://a.example/",
        "the most recently active tab's page"
    );
    // Exit beacon as sendBeacon sends it: key in the query, JSON as text/plain.
    let r = h.send(
        "POST",
        "/track/leave?apiKey=pk_a",
        &[("Content-Type", "text/plain;charset=UTF-8")],
        r#"{"visitorId":"v","tabId":"t2"}"#,
    );
    assert_eq!(body_json(&r), serde_json::json!({"success": true}));
    // The tab is held for the leave linger (a reload would report again meanwhile): nothing
    // is broadcast yet, and the host is asked to wake up when the linger ends.
    let linger = tippen_core::PresenceConfig::default().leave_linger;
    assert!(r.broadcasts.is_empty(), "{:?}", r.broadcast_texts());
    let linger_end = h.tippen.now().plus(linger);
    assert_eq!(r.deadline, Some(tippen_core::Deadline::AtMost(linger_end)));
    h.clock.advance(linger);
    let swept = block(h.tippen.sweep(&site)).unwrap();
    let texts: Vec<_> = swept.messages.iter().map(|m| m.to_json()).collect();
    assert_eq!(swept.messages.len(), 1, "{texts:?}");
    assert!(texts[0].contains(r#""event":"tab_closed""#) && swept.messages[0].seq == 4);
    let r = h.send(
        "POST",
        "/track/leave?apiKey=pk_a",
        &[],
        r#"{"visitorId":"v","tabId":"t1"}"#,
    );
    assert!(r.broadcasts.is_empty());
    h.clock.advance(linger);
    let swept = block(h.tippen.sweep(&site)).unwrap();
    let texts: Vec<_> = swept.messages.iter().map(|m| m.to_json()).collect();
    assert_eq!(swept.messages.len(), 1, "{texts:?}");
    assert!(texts[0].contains(r#""type":"VISITOR_REMOVED","visitorId":"v","reason":"left""#));
    assert_eq!(swept.messages[0].seq, 5);
    // A beacon for someone unknown is fine and silent.
    let r = h.send(
        "POST",
        "/track/leave?apiKey=pk_a",
        &[],
        r#"{"visitorId":"ghost"}"#,
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert!(r.broadcasts.is_empty());
    // The departed visitor is remembered for the departure quiet period: a heartbeat that was
    // in flight when the tab closed does not bring it back.
    let quiet = tippen_core::PresenceConfig::default().departure_quiet;
    let left_at = h.tippen.now().minus(linger);
    assert_eq!(
        block(h.tippen.next_deadline(&site)).unwrap(),
        Some(left_at.plus(quiet))
    );
    let late = r#"{"event":"heartbeat","visitor":{"visitorId":"v","tabId":"t1"}}"#;
    let r = h.track("pk_a", late);
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert!(
        r.broadcasts.is_empty(),
        "a late heartbeat of a closed tab is ignored"
    );
    let list = body_json(&h.send("GET", "/api/visitors?apiKey=sk_a", &[], ""));
    assert!(list["visitors"].as_array().unwrap().is_empty());
    // A page view from that tab is a new visit.
    let r = h.track("pk_a", &pageview("v", "t1", "https://a.example/back"));
    assert_eq!(seqs(&r), [("VISITOR_UPDATE:new_visitor".into(), 6)]);
    let r = h.send(
        "POST",
        "/track/leave?apiKey=pk_a",
        &[],
        r#"{"visitorId":"v"}"#,
    );
    assert!(r.broadcasts.is_empty());
    h.clock.advance(linger);
    let swept = block(h.tippen.sweep(&site)).unwrap();
    assert_eq!(swept.messages.len(), 1);
    assert!(swept.messages[0].to_json().contains(r#""reason":"left""#));
    assert_eq!(swept.messages[0].seq, 7);
    // After the quiet period the sweep forgets it silently.
    h.clock.advance(quiet);
    let out = block(h.tippen.sweep(&site)).unwrap();
    assert!(out.messages.is_empty());
    assert_eq!(out.deadline, None);
    assert!(
        block(h.tippen.store().visitor(&site, "v"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn expired_but_unswept_visitor_is_hidden_and_restarts_cleanly() {
    let h = harness_with(Config::default());
    h.track("pk_a", &pageview("v", "t1", "https://a.example/"));
    h.clock.advance(std::time::Duration::from_secs(61));
    let list = body_json(&h.send("GET", "/api/visitors?apiKey=sk_a", &[], ""));
    assert_eq!(
        list["visitors"].as_array().unwrap().len(),
        0,
        "reads never show an expired visitor"
    );
    // The next ping reports the removal, then a new visit.
    let r = h.track("pk_a", &pageview("v", "t1", "https://a.example/"));
    let kinds: Vec<Value> = r
        .broadcasts
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(kinds[0]["type"], "VISITOR_REMOVED");
    assert_eq!(kinds[0]["reason"], "inactive");
    assert_eq!(kinds[1]["event"], "new_visitor");
    assert_eq!(kinds[1]["visitor"]["pageViews"], 1);
}

#[test]
fn private_addresses_are_direct_visitors_and_bots_are_flagged() {
    let h = harness();
    let req = http::Request::post("/track/visitor")
        .header("X-Tippen-API-Key", "pk_a")
        .body(bytes::Bytes::from(
            r#"{"event":"pageview","visitor":{"visitorId":"bot","url":"/","userAgent":"Googlebot/2.1 (+http://www.google.com/bot.html)"}}"#,
        ))
        .unwrap();
    let ctx = tippen_core::api::RequestContext {
        client_ip: Some("192.168.1.20".parse().unwrap()),
        ..Default::default()
    };
    let r = block(h.tippen.handle(req, &ctx));
    let m: Value = serde_json::from_str(&r.broadcasts[0]).unwrap();
    assert_eq!(m["visitor"]["company"], "Direct Visitor");
    assert_eq!(m["visitor"]["isBot"], true);
}

#[test]
fn assets_are_served() {
    let h = harness();
    for (path, ct) in [
        (
            "/tippen-tracker.js",
            "application/javascript; charset=utf-8",
        ),
        ("/dashboard", "text/html; charset=utf-8"),
        ("/demo", "text/html; charset=utf-8"),
    ] {
        let r = h.send("GET", path, &[], "");
        assert_eq!(r.response.as_ref().unwrap().status(), 200, "{path}");
        assert_eq!(r.response.as_ref().unwrap().headers()["content-type"], ct);
        assert!(!r.response.as_ref().unwrap().body().is_empty());
    }
}

#[test]
fn served_pages_are_told_where_the_sockets_are() {
    let body = |h: &Harness, path: &str| {
        let r = h.send("GET", path, &[], "");
        String::from_utf8(r.response.unwrap().body().to_vec()).unwrap()
    };
    // By default the pages find their sockets beside them.
    let h = harness();
    assert!(body(&h, "/dashboard").contains(tippen_core::assets::DASHBOARD_WS_MARKER));
    assert!(body(&h, "/tippen-tracker.js").contains(tippen_core::assets::TRACKER_WS_MARKER));
    // A host whose sockets are elsewhere (AWS Lambda's WebSocket API) says so.
    let mut config = Config::default();
    config.sockets.dashboard = Some("wss://ws.example/prod?role=dashboard&x=\"1\"".into());
    config.sockets.visitor = Some("wss://ws.example/prod?role=visitor</script>".into());
    let h = harness_with(config);
    let dashboard = body(&h, "/dashboard");
    assert!(
        dashboard.contains(
            r#"<meta name="tippen-dashboard-ws-url" content="wss://ws.example/prod?role=dashboard&amp;x=&quot;1&quot;">"#
        ),
        "the URL in an escaped attribute"
    );
    let tracker = body(&h, "/tippen-tracker.js");
    assert!(
        tracker.contains(
            r#"var SERVED_VISITOR_WS_URL = "wss://ws.example/prod?role=visitor\u003c/script>";"#
        ),
        "the URL as a string literal"
    );
    assert!(!tracker.contains(tippen_core::assets::TRACKER_WS_MARKER));
}

#[test]
fn visitors_can_be_deleted_by_the_secret_key() {
    let h = harness();
    h.track("pk_a", &pageview("visitor_1+2", "t", "https://a.example/"));
    let r = h.send("DELETE", "/api/visitors/visitor_1+2?apiKey=pk_a", &[], "");
    assert_eq!(
        r.response.as_ref().unwrap().status(),
        403,
        "the public key cannot delete"
    );
    let r = h.send(
        "DELETE",
        "/api/visitors/visitor_1%2B2",
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    );
    assert_eq!(
        body_json(&r),
        serde_json::json!({"success": true, "deleted": true}),
        "percent-decoded id"
    );
    let m: Value = serde_json::from_str(&r.broadcasts[0]).unwrap();
    assert_eq!(m["type"], "VISITOR_REMOVED");
    assert_eq!(m["reason"], "deleted");
    let list = body_json(&h.send("GET", "/api/visitors?apiKey=sk_a", &[], ""));
    assert!(list["visitors"].as_array().unwrap().is_empty());
    let r = h.send(
        "DELETE",
        "/api/visitors/visitor_1+2",
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    );
    assert_eq!(
        body_json(&r),
        serde_json::json!({"success": true, "deleted": false}),
        "nothing left"
    );
    assert!(r.broadcasts.is_empty());
    let r = h.send("GET", "/api/visitors/x?apiKey=sk_a", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 405);
    assert_eq!(
        r.response.as_ref().unwrap().headers()["allow"],
        "DELETE, OPTIONS"
    );
}
