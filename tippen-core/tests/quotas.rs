//! Quotas of `Limits` (issue 17): every id is length-checked on every route and socket frame,
//! departed tabs are capped, new visitors and support users beyond a site's quota are refused
//! with 429 — and nothing grows.

mod common;

use common::*;
use serde_json::json;
use tippen_core::api::SocketRole;
use tippen_core::{Config, Limits, SiteId};

fn status(h: &tippen_core::Effects) -> u16 {
    h.response.as_ref().unwrap().status().as_u16()
}

fn leave(h: &Harness, visitor: &str, tab: &str) -> tippen_core::Effects {
    let body = json!({"apiKey": "pk_a", "visitorId": visitor, "tabId": tab}).to_string();
    h.send(
        "POST",
        "/track/leave",
        &[("Content-Type", "text/plain")],
        body,
    )
}

fn stored(h: &Harness, site: &str, visitor: &str) -> tippen_core::presence::VisitorRecord {
    block(h.tippen.store().visitor(&SiteId::from(site), visitor))
        .unwrap()
        .expect("a stored record")
        .value
}

#[test]
fn over_long_tab_ids_on_leave_are_400_and_store_nothing() {
    let h = harness();
    assert_eq!(
        status(&h.track("pk_a", &pageview("v1", "t1", "https://x.test/"))),
        200
    );
    let before = serde_json::to_string(&stored(&h, "a", "v1")).unwrap().len();
    let huge = "x".repeat(60 * 1024);
    for _ in 0..20 {
        let answer = leave(&h, "v1", &huge);
        assert_eq!(status(&answer), 400, "{:?}", body_json(&answer));
        assert_eq!(
            body_json(&answer),
            json!({"error": "tabId must be 1 to 128 bytes long"})
        );
    }
    // The `leave` event of /track/visitor is checked the same way.
    let body = json!({"event": "leave", "visitor": {"visitorId": "v1", "tabId": huge}});
    assert_eq!(status(&h.track("pk_a", &body.to_string())), 400);
    let after = serde_json::to_string(&stored(&h, "a", "v1")).unwrap().len();
    assert_eq!(before, after, "nothing grew");
}

#[test]
fn departures_of_ever_new_tabs_are_capped() {
    let h = harness();
    let max = Limits::default().max_departed_tabs;
    h.track("pk_a", &pageview("v1", "t1", "https://x.test/"));
    for i in 0..400 {
        assert_eq!(status(&leave(&h, "v1", &format!("ghost_{i}"))), 200);
    }
    let record = stored(&h, "a", "v1");
    assert_eq!(record.left_tabs.len(), max);
    assert_eq!(record.left_tabs.last().unwrap().tab_id, "ghost_399");
    assert_eq!(record.tabs.len(), 1, "the live tab stays");
}

#[test]
fn a_site_at_its_visitor_quota_refuses_new_visitors_only() {
    let mut config = Config::default();
    config.limits.max_visitors_per_site = 3;
    let h = harness_with(config);
    for i in 0..3 {
        assert_eq!(
            status(&h.track("pk_a", &pageview(&format!("v{i}"), "t", "https://x.test/"))),
            200
        );
    }
    let refused = h.track("pk_a", &pageview("v3", "t", "https://x.test/"));
    assert_eq!(status(&refused), 429);
    assert_eq!(
        refused.response.as_ref().unwrap().headers()["retry-after"],
        "60"
    );
    assert_eq!(
        body_json(&refused),
        json!({"error": "this site has reached its limit of 3 visitors; try again later"})
    );
    assert!(refused.broadcasts.is_empty());
    let site = SiteId::from("a");
    assert_eq!(block(h.tippen.store().count_visitors(&site)).unwrap(), 3);
    // Known visitors keep being tracked; another site is not affected.
    assert_eq!(
        status(&h.track("pk_a", &pageview("v0", "t2", "https://x.test/b"))),
        200
    );
    assert_eq!(
        status(&h.track("pk_b", &pageview("v3", "t", "https://x.test/"))),
        200
    );
    // A visitor leaving makes room.
    h.send(
        "POST",
        "/track/leave",
        &[],
        json!({"apiKey": "pk_a", "visitorId": "v1"}).to_string(),
    );
    h.clock.advance(std::time::Duration::from_secs(11));
    block(h.tippen.handle_timeout(&site)).unwrap();
    assert_eq!(
        status(&h.track("pk_a", &pageview("v3", "t", "https://x.test/"))),
        200
    );
}

fn activity(user: &str) -> String {
    json!({
        "apiKey": "pk_a",
        "userId": user,
        "events": [{"type": "route", "route": "/home", "timestamp": 1}],
    })
    .to_string()
}

#[test]
fn a_site_at_its_user_quota_refuses_new_users_only() {
    let mut config = Config::default();
    config.limits.max_users_per_site = 2;
    let h = harness_with(config);
    let post = |user: &str| h.send("POST", "/api/track/user-activity", &[], activity(user));
    assert_eq!(status(&post("u1")), 200);
    assert_eq!(status(&post("u2")), 200);
    for i in 0..50 {
        let refused = post(&format!("flood_{i}"));
        assert_eq!(status(&refused), 429);
        assert_eq!(
            body_json(&refused),
            json!({"error": "this site has reached its limit of 2 support users; try again later"})
        );
    }
    assert_eq!(
        block(h.tippen.store().count_users(&SiteId::from("a"))).unwrap(),
        2
    );
    assert_eq!(status(&post("u1")), 200, "a known user is still analysed");
}

#[test]
fn over_long_keys_are_refused_unhashed() {
    let h = harness();
    let key = "k".repeat(10_000);
    let answer = h.track(&key, &pageview("v1", "t1", "https://x.test/"));
    assert_eq!(status(&answer), 403);
    assert_eq!(body_json(&answer), json!({"error": "invalid API key"}));
}

#[test]
fn over_long_socket_frames_and_invite_ids_get_an_error_and_change_nothing() {
    let h = harness();
    h.track("pk_a", &pageview("v1", "t1", "https://x.test/"));
    let site = SiteId::from("a");
    let big = format!(r#"{{"type":"PING","pad":"{}"}}"#, "x".repeat(8 * 1024));
    let dashboard = SocketRole::Dashboard { site: site.clone() };
    let reply = block(h.tippen.socket_frame(&dashboard, &big)).unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply.reply.as_deref().unwrap()).unwrap();
    assert_eq!(reply["type"], "ERROR");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 4096")
    );
    let visitor = SocketRole::Visitor {
        site,
        visitor_id: "v1".into(),
    };
    let frame = json!({"type": "INVITE_SEEN", "inviteId": "i".repeat(2000)}).to_string();
    let reply = block(h.tippen.socket_frame(&visitor, &frame)).unwrap();
    let text: serde_json::Value = serde_json::from_str(reply.reply.as_deref().unwrap()).unwrap();
    assert_eq!(
        text,
        json!({"type": "ERROR", "error": "inviteId must be 1 to 128 bytes long"})
    );
    assert!(reply.broadcasts.is_empty());
}

#[test]
fn a_dashboard_over_its_snapshot_budget_gets_an_error_until_it_refills() {
    let mut config = Config::default();
    config.limits.snapshots_per_minute = 3;
    config.limits.snapshot_reuse = std::time::Duration::ZERO;
    let h = harness_with(config);
    let site = SiteId::from("a");
    let dashboard = SocketRole::Dashboard { site: site.clone() };
    let stored = block(h.tippen.store().sites()).unwrap();
    let quotas = h
        .tippen
        .socket_quotas(stored.iter().find(|s| s.id == site).unwrap());
    let mut budget = quotas.snapshot_budget();
    let ask = |budget: &mut tippen_core::quota::SnapshotBudget, text: &str| {
        let effects = block(h.tippen.socket_frame_within(&dashboard, budget, text)).unwrap();
        assert!(effects.broadcasts.is_empty());
        serde_json::from_str::<serde_json::Value>(effects.reply.as_deref().unwrap()).unwrap()
    };
    for _ in 0..3 {
        assert_eq!(
            ask(&mut budget, r#"{"type":"GET_VISITORS"}"#)["type"],
            "INITIAL_VISITORS"
        );
    }
    let refused = ask(&mut budget, r#"{"type":"GET_VISITORS"}"#);
    assert_eq!(refused["type"], "ERROR");
    assert_eq!(
        refused["error"],
        "snapshot quota: at most 3 GET_VISITORS a minute per dashboard \
         (snapshotsPerMinute, TIPPEN_SNAPSHOTS_PER_MINUTE); retry in 20 s"
    );
    // Other frames are not counted nor refused.
    assert_eq!(ask(&mut budget, r#"{"type":"PING"}"#)["type"], "PONG");
    // A visitor channel has no snapshot budget: its frames go through as they are.
    let visitor = SocketRole::Visitor {
        site,
        visitor_id: "v1".into(),
    };
    let before = budget;
    block(
        h.tippen
            .socket_frame_within(&visitor, &mut budget, r#"{"type":"GET_VISITORS"}"#),
    )
    .unwrap();
    assert_eq!(budget, before);
    // A third of a minute later, one more.
    h.clock.advance(std::time::Duration::from_secs(20));
    assert_eq!(
        ask(&mut budget, r#"{"type":"GET_VISITORS"}"#)["type"],
        "INITIAL_VISITORS"
    );
    assert_eq!(
        ask(&mut budget, r#"{"type":"GET_VISITORS"}"#)["type"],
        "ERROR"
    );
}
