//! The support endpoints over the HTTP contract: ingest (Part A byte for byte), the
//! overview, deletion, the in-app tracker asset, and their errors.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn error_of(h: &tippen_core::Effects) -> String {
    body_json(h)["error"]
        .as_str()
        .expect("an error message")
        .to_owned()
}

fn activity(h: &Harness, body: Value) -> tippen_core::Effects {
    h.send("POST", "/api/track/user-activity", &[], body.to_string())
}

fn part_a_batch() -> Value {
    // protocol.md Part A, verbatim.
    serde_json::from_str(
        r#"{
      "apiKey": "pk_a",
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
    }"#,
    )
    .unwrap()
}

#[test]
fn part_a_batch_is_stored_analyzed_and_summarized() {
    let h = harness();
    let r = activity(&h, part_a_batch());
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true,"stored":6,"analyzed":true}"#
    );
    assert!(r.broadcasts.is_empty(), "nothing holds yet");
    assert!(r.deadline.is_some(), "time-driven rules armed");
    let o = h.send(
        "GET",
        "/api/support/users",
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    );
    assert_eq!(o.response.as_ref().unwrap().status(), 200);
    let o = body_json(&o);
    let u = &o["users"][0];
    assert_eq!(u["userId"], "user_123");
    assert_eq!(u["userEmail"], "john@acme.com");
    assert_eq!(u["subscriptionTier"], "free_trial");
    assert_eq!(u["route"], "/dashboard", "the last route named");
    assert_eq!(u["eventCount"], 6);
    assert_eq!(u["errorCount"], 1);
    assert_eq!(u["eventsInWindow"], 4, "route, click, form_submit, custom");
    assert_eq!(u["errorsInWindow"], 1);
    assert_eq!(u["needsSupport"], false);
    assert_eq!(u["lastError"], "Failed to load");
    assert_eq!(o["alerts"], json!([]));
    // Client timestamps are recorded, not used: the server's clock is.
    assert_eq!(u["lastActivity"], "2024-10-16T12:00:00.000Z");
}

#[test]
fn four_errors_alert_the_dashboards_once_and_the_overview_lists_it() {
    let h = harness();
    let err = json!({"type":"error","message":"x","route":"/app","timestamp":1});
    let r = activity(
        &h,
        json!({"apiKey":"pk_a","userId":"u1","events":[err, err, err, err]}),
    );
    assert_eq!(r.broadcasts.len(), 1);
    let m: Value = serde_json::from_str(&r.broadcasts[0]).unwrap();
    assert_eq!(m["type"], "SUPPORT_ALERT");
    assert_eq!(m["raised"], json!(["error_burst"]));
    assert_eq!(m["user"]["triggers"], json!(["error_burst"]));
    assert_eq!(m["seq"], 1);
    assert_eq!(r.notifications.len(), 1, "one Slack notification");
    // A fifth error changes nothing.
    let r = activity(&h, json!({"apiKey":"pk_a","userId":"u1","events":[err]}));
    assert!(r.broadcasts.is_empty() && r.notifications.is_empty());
    let o = body_json(&h.send("GET", "/api/support/users?apiKey=sk_a", &[], ""));
    assert_eq!(o["alerts"][0]["userId"], "u1");
    assert_eq!(o["seq"], 1);
    // Recovery by the deadline alone: the errors age out after 5 min.
    h.clock.advance(Duration::from_secs(300));
    let swept =
        futures_util::FutureExt::now_or_never(h.tippen.sweep(&tippen_core::SiteId::from("a")))
            .unwrap()
            .unwrap();
    let m: Value = serde_json::from_str(&swept.messages[0].to_json()).unwrap();
    assert_eq!(m["type"], "SUPPORT_RECOVERED");
    assert_eq!(m["userId"], "u1");
    assert_eq!(m["cleared"], json!(["error_burst"]));
    assert_eq!(m["resolution"], "recovered");
}

#[test]
fn bad_batches_are_named_4xx() {
    let h = harness();
    let cases = [
        (json!({"apiKey":"pk_a","events":[]}), 400, "userId"),
        (json!({"apiKey":"pk_a","userId":"u"}), 400, "events"),
        (
            json!({"apiKey":"pk_a","userId":"u","events":[{"type":"teleport","timestamp":1}]}),
            400,
            "events[0]",
        ),
        (
            json!({"apiKey":"pk_a","userId":"u","events":[{"type":"route","timestamp":1}]}),
            400,
            "route",
        ),
        (
            json!({"apiKey":"pk_a","userId":"u","events":[{"type":"click"}]}),
            400,
            "timestamp",
        ),
        (
            json!({"apiKey":"pk_a","userId":"u","subscriptionTier":"gold","events":[]}),
            400,
            "subscriptionTier",
        ),
        (
            json!({"apiKey":"pk_a","userId":"","events":[]}),
            400,
            "userId",
        ),
        (json!({"userId":"u","events":[]}), 401, "API key required"),
        (
            json!({"apiKey":"nope","userId":"u","events":[]}),
            403,
            "invalid API key",
        ),
    ];
    for (body, status, names) in cases {
        let r = activity(&h, body.clone());
        assert_eq!(r.response.as_ref().unwrap().status(), status, "{body}");
        assert!(
            error_of(&r).contains(names),
            "{body}: {} should name {names}",
            error_of(&r)
        );
    }
    let r = h.send("POST", "/api/track/user-activity", &[], "{not json");
    assert_eq!(r.response.as_ref().unwrap().status(), 400);
}

#[test]
fn overview_and_deletion_need_the_secret_key() {
    let h = harness();
    activity(&h, part_a_batch());
    for (method, path) in [
        ("GET", "/api/support/users"),
        ("DELETE", "/api/users/user_123"),
    ] {
        let r = h.send(method, path, &[("X-Tippen-API-Key", "pk_a")], "");
        assert_eq!(
            r.response.as_ref().unwrap().status(),
            403,
            "{method} {path} with the public key"
        );
        let r = h.send(method, path, &[], "");
        assert_eq!(r.response.as_ref().unwrap().status(), 401);
    }
    let r = h.send(
        "POST",
        "/api/support/users",
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 405);
    // Other sites see nothing.
    let o = body_json(&h.send("GET", "/api/support/users?apiKey=sk_b", &[], ""));
    assert_eq!(o["users"], json!([]));
    let r = h.send("DELETE", "/api/users/user_123?apiKey=sk_a", &[], "");
    assert_eq!(body_json(&r), json!({"success":true,"deleted":true}));
    let r = h.send("DELETE", "/api/users/user_123?apiKey=sk_a", &[], "");
    assert_eq!(body_json(&r), json!({"success":true,"deleted":false}));
    let o = body_json(&h.send("GET", "/api/support/users?apiKey=sk_a", &[], ""));
    assert_eq!(o["users"], json!([]));
}

#[test]
fn deleting_a_flagged_user_tells_the_dashboards() {
    let h = harness();
    let err = json!({"type":"error","timestamp":1});
    activity(
        &h,
        json!({"apiKey":"pk_a","userId":"u 2","events":[err, err, err, err]}),
    );
    let r = h.send("DELETE", "/api/users/u%202?apiKey=sk_a", &[], "");
    let m: Value = serde_json::from_str(&r.broadcasts[0]).unwrap();
    assert_eq!(m["type"], "SUPPORT_RECOVERED");
    assert_eq!(m["userId"], "u 2");
    assert_eq!(m["resolution"], "deleted");
}

#[test]
fn the_in_app_tracker_is_served() {
    let h = harness();
    let r = h.send("GET", "/tippen-app-tracker.js", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        r.response.as_ref().unwrap().headers()["content-type"],
        "application/javascript; charset=utf-8"
    );
    let js = String::from_utf8_lossy(r.response.as_ref().unwrap().body());
    for part in [
        "data-tippen-api-key",
        "sendBeacon",
        "pagehide",
        "/api/track/user-activity",
    ] {
        assert!(js.contains(part), "{part}");
    }
}

fn activity_of(h: &Harness, path_and_query: &str) -> tippen_core::Effects {
    h.send("GET", path_and_query, &[("X-Tippen-API-Key", "sk_a")], "")
}

#[test]
fn user_activity_reads_back_the_kept_events_newest_first_in_pages() {
    let h = harness();
    activity(&h, part_a_batch());
    let r = activity_of(&h, "/api/users/user_123/activity");
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    let a = body_json(&r);
    let types: Vec<&str> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "custom",
            "error",
            "page_time",
            "form_submit",
            "click",
            "route"
        ]
    );
    assert_eq!(a["events"][0]["data"], json!({"feature": "export"}));
    assert_eq!(a["events"][1]["message"], "Failed to load");
    assert_eq!(a["events"][5]["route"], "/dashboard");
    assert_eq!(a["keptEvents"], 6);
    assert!(a.get("nextCursor").is_none(), "one page: {a}");
    assert_eq!(a["user"]["userId"], "user_123");
    assert_eq!(a["user"]["errorCount"], 1);
    assert_eq!(a["errors"].as_array().unwrap().len(), 1);
    assert_eq!(a["journey"][0]["route"], "/dashboard");
    assert_eq!(a["journey"][0]["current"], true);
    assert_eq!(a["flagged"], json!([]));
    assert_eq!(a["liveVisitor"], Value::Null);

    // Pages of 4 then 2, each event once.
    let p1 = body_json(&activity_of(&h, "/api/users/user_123/activity?limit=4"));
    assert_eq!(p1["events"].as_array().unwrap().len(), 4);
    let cursor = p1["nextCursor"].as_str().expect("a next page").to_owned();
    let p2 = body_json(&activity_of(
        &h,
        &format!("/api/users/user_123/activity?limit=4&cursor={cursor}"),
    ));
    let seqs: Vec<u64> = p1["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["events"].as_array().unwrap())
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 5, 4, 3, 2, 1]);
    assert!(p2.get("nextCursor").is_none());
}

#[test]
fn user_activity_refuses_bad_input_with_named_4xx() {
    let h = harness();
    activity(&h, part_a_batch());
    for (path, status, needle) in [
        ("/api/users/nobody/activity", 404, "user not found"),
        ("/api/users/user_123/activity?limit=0", 400, "limit"),
        ("/api/users/user_123/activity?limit=501", 400, "limit"),
        ("/api/users/user_123/activity?limit=x", 400, "limit"),
        ("/api/users/user_123/activity?cursor=abc", 400, "cursor"),
        ("/api/users/user_123/activity?cursor=0", 400, "cursor"),
        ("/api/users/user_123/activity?cursor=-3", 400, "cursor"),
    ] {
        let r = activity_of(&h, path);
        assert_eq!(r.response.as_ref().unwrap().status(), status, "{path}");
        assert!(error_of(&r).contains(needle), "{path}: {}", error_of(&r));
    }
    let long = "u".repeat(300);
    let r = activity_of(&h, &format!("/api/users/{long}/activity"));
    assert_eq!(r.response.as_ref().unwrap().status(), 400);
    // Keys: none is 401, the public key 403, another site's secret key sees nothing of it.
    let path = "/api/users/user_123/activity";
    assert_eq!(h.send("GET", path, &[], "").response.unwrap().status(), 401);
    assert_eq!(
        h.send("GET", path, &[("X-Tippen-API-Key", "pk_a")], "")
            .response
            .unwrap()
            .status(),
        403
    );
    let r = h.send("DELETE", path, &[("X-Tippen-API-Key", "sk_a")], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 405);
    // The user survives: a DELETE of the activity path is not a deletion of the user.
    assert_eq!(activity_of(&h, path).response.unwrap().status(), 200);
}

#[test]
fn user_activity_links_a_live_visitor_the_in_app_tracker_named() {
    let h = harness();
    let mut batch = part_a_batch();
    batch["visitorId"] = json!("visitor_live");
    // Not (yet) a live visitor: no link shown.
    activity(&h, batch.clone());
    let a = body_json(&activity_of(&h, "/api/users/user_123/activity"));
    assert_eq!(a["liveVisitor"], Value::Null);
    // The visitor tracker on the same page: the user is that live visitor.
    let t = h.track(
        "pk_a",
        &pageview("visitor_live", "t1", "https://example.com/app"),
    );
    assert_eq!(t.response.as_ref().unwrap().status(), 200);
    let a = body_json(&activity_of(&h, "/api/users/user_123/activity"));
    assert_eq!(
        a["liveVisitor"],
        json!({"visitorId": "visitor_live", "isBot": false})
    );
    // The visitor left: the link stays, the live visitor is gone.
    h.clock.advance(Duration::from_secs(120));
    let a = body_json(&activity_of(&h, "/api/users/user_123/activity"));
    assert_eq!(a["liveVisitor"], Value::Null);
    // A bad visitor id only drops the link; the batch is kept.
    let mut bad = part_a_batch();
    bad["userId"] = json!("user_456");
    bad["visitorId"] = json!("v".repeat(1000));
    assert_eq!(activity(&h, bad).response.unwrap().status(), 200);
    let a = body_json(&activity_of(&h, "/api/users/user_456/activity"));
    assert_eq!(a["liveVisitor"], Value::Null);
    assert_eq!(a["keptEvents"], 6);
}
