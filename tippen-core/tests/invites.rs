//! Video invites through the HTTP contract (`Tippen::handle` with the memory store): Part A's
//! endpoint, idempotency, one open invite per visitor, the visitor's answers, the invite
//! riding on the heartbeat response, expiry, the visitor leaving and cancelling.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tippen_core::Effects as Handled;
use tippen_core::invite::InviteConfig;
use tippen_core::{Config, SiteId};

fn broadcasts(h: &Handled) -> Vec<Value> {
    h.broadcasts
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

fn seq(m: &Value) -> u64 {
    m["seq"].as_u64().expect("a broadcast has a seq")
}

fn error_of(h: &Handled) -> String {
    let v = body_json(h);
    let obj = v.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 1, "error body has exactly one field: {v}");
    obj["error"].as_str().expect("error is a string").to_owned()
}

fn invite(h: &Harness, key: &str, body: Value) -> Handled {
    h.send(
        "POST",
        "/api/send-video-invite",
        &[("X-Tippen-API-Key", key)],
        body.to_string(),
    )
}

fn answer(h: &Harness, visitor: &str, invite_id: &str, kind: &str) -> Handled {
    h.send(
        "POST",
        "/track/invite",
        &[("X-Tippen-API-Key", "pk_a")],
        json!({"visitorId": visitor, "inviteId": invite_id, "type": kind}).to_string(),
    )
}

fn heartbeat(visitor: &str, tab: &str) -> String {
    format!(
        r#"{{"event":"heartbeat","visitor":{{"visitorId":"{visitor}","tabId":"{tab}"}},"website":"example.com"}}"#
    )
}

/// Harness with site `a` having visitor `v1` (one tab `t`) at T0.
fn with_visitor(config: Config) -> Harness {
    let h = harness_with(config);
    let r = h.track("pk_a", &pageview("v1", "t", "https://example.com/"));
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    h
}

fn update(m: &Value) -> (&str, &str) {
    assert_eq!(m["type"], "VIDEO_INVITE_UPDATE", "{m}");
    (
        m["inviteId"].as_str().unwrap(),
        m["state"].as_str().unwrap(),
    )
}

#[test]
fn part_a_invite_broadcasts_sent_then_update_with_consecutive_seq() {
    let h = with_visitor(Config::default());
    let r = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://video.example/g/1"}),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        r.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true}"#
    );
    let m = broadcasts(&r);
    assert_eq!(m.len(), 2, "{m:?}");
    let n = seq(&m[0]);
    assert_eq!(
        m[0],
        json!({"type":"VIDEO_INVITE_SENT","visitorId":"v1",
               "guestUrl":"https://video.example/g/1","seq":n})
    );
    let id = m[1]["inviteId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inv_") && id.len() == 20, "{id}");
    assert_eq!(
        m[1],
        json!({"type":"VIDEO_INVITE_UPDATE","inviteId":id,"visitorId":"v1","state":"sent",
               "expiresAt":T0 + 60_000,"updatedAt":T0,"seq":n + 1})
    );
    // The host is told to wake up for the invite's expiry, not only the tab's.
    assert_eq!(
        r.deadline.and_then(|d| d.at()).map(|d| d.as_millis()),
        Some(T0 + 60_000)
    );

    // Legacy single-key site: the one key may invite.
    let h = harness();
    h.track("demo_api_key", &pageview("v9", "t", "https://example.com/"));
    let r = invite(
        &h,
        "demo_api_key",
        json!({"visitorId": "v9", "guestUrl": "https://video.example/g/9"}),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    assert_eq!(broadcasts(&r).len(), 2);
}

#[test]
fn retry_with_the_same_invite_id_is_idempotent_and_a_second_open_invite_is_409() {
    let h = with_visitor(Config::default());
    let body = json!({"visitorId": "v1", "guestUrl": "https://video.example/g/1",
                      "inviteId": "inv_admin_1", "invitedBy": "Alice"});
    let first = invite(&h, "sk_a", body.clone());
    assert_eq!(first.response.as_ref().unwrap().status(), 200);
    let m = broadcasts(&first);
    assert_eq!(update(&m[1]), ("inv_admin_1", "sent"));
    assert_eq!(m[1]["invitedBy"], "Alice");

    h.clock.advance(Duration::from_secs(1));
    let again = invite(&h, "sk_a", body);
    assert_eq!(again.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        again.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true}"#
    );
    assert!(again.broadcasts.is_empty(), "a retry broadcasts nothing");

    let other = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://video.example/g/2", "inviteId": "inv_2"}),
    );
    assert_eq!(other.response.as_ref().unwrap().status(), 409);
    assert!(other.broadcasts.is_empty());
    let e = error_of(&other);
    assert!(e.contains("inv_admin_1"), "{e}");

    // Once the first is final, the visitor may be invited again.
    assert_eq!(
        answer(&h, "v1", "inv_admin_1", "INVITE_DECLINED")
            .response
            .as_ref()
            .unwrap()
            .status(),
        200
    );
    let second = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://video.example/g/2", "inviteId": "inv_2"}),
    );
    assert_eq!(second.response.as_ref().unwrap().status(), 200);
    assert_eq!(update(&broadcasts(&second)[1]), ("inv_2", "sent"));
}

#[test]
fn the_visitor_answers_seen_then_accepted_by_post() {
    let h = with_visitor(Config::default());
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    let seen = answer(&h, "v1", "i1", "INVITE_SEEN");
    assert_eq!(seen.response.as_ref().unwrap().status(), 200);
    assert_eq!(body_json(&seen), json!({"success": true, "state": "seen"}));
    let m = broadcasts(&seen);
    assert_eq!(m.len(), 1);
    assert_eq!(update(&m[0]), ("i1", "seen"));

    // The key may also ride in the body (sendBeacon).
    let accepted = h.send(
        "POST",
        "/track/invite",
        &[],
        json!({"apiKey": "pk_a", "visitorId": "v1", "inviteId": "i1", "type": "INVITE_ACCEPTED"})
            .to_string(),
    );
    assert_eq!(
        body_json(&accepted),
        json!({"success": true, "state": "accepted"})
    );
    let m2 = broadcasts(&accepted);
    assert_eq!(update(&m2[0]), ("i1", "accepted"));
    assert_eq!(seq(&m2[0]), seq(&m[0]) + 1);

    // Repeats are no-ops; a contradiction is a 409 naming both states.
    let repeat = answer(&h, "v1", "i1", "INVITE_ACCEPTED");
    assert_eq!(
        (
            repeat.response.as_ref().unwrap().status().as_u16(),
            repeat.broadcasts.len()
        ),
        (200, 0)
    );
    let late_seen = answer(&h, "v1", "i1", "INVITE_SEEN");
    assert_eq!(body_json(&late_seen)["state"], "accepted");
    let declined = answer(&h, "v1", "i1", "INVITE_DECLINED");
    assert_eq!(declined.response.as_ref().unwrap().status(), 409);
    let e = error_of(&declined);
    assert!(e.contains("accepted") && e.contains("declined"), "{e}");
}

#[test]
fn the_invite_rides_on_the_heartbeat_response_and_becomes_delivered() {
    let h = with_visitor(Config::default());
    // Without an invite the body stays Part A's, byte for byte.
    let hb = h.track("pk_a", &heartbeat("v1", "t"));
    assert_eq!(
        hb.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true,"sessionId":"v1"}"#
    );
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1",
               "invitedBy": "Alice"}),
    );
    h.clock.advance(Duration::from_secs(15));
    let hb = h.track("pk_a", &heartbeat("v1", "t"));
    assert_eq!(hb.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        body_json(&hb),
        json!({"success": true, "sessionId": "v1",
               "invite": {"type": "VIDEO_INVITE", "inviteId": "i1", "guestUrl": "https://g/1",
                          "invitedBy": "Alice", "expiresAt": T0 + 60_000,
                          "expiresIn": 45_000}})
    );
    let m = broadcasts(&hb);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(update(&m[0]), ("i1", "delivered"));

    // Still open: it keeps riding, without another message.
    h.clock.advance(Duration::from_secs(1));
    let hb = h.track("pk_a", &heartbeat("v1", "t"));
    assert_eq!(body_json(&hb)["invite"]["inviteId"], "i1");
    assert!(hb.broadcasts.is_empty());

    // Answered: gone from the response.
    answer(&h, "v1", "i1", "INVITE_DECLINED");
    let hb = h.track("pk_a", &heartbeat("v1", "t"));
    assert_eq!(
        hb.response.as_ref().unwrap().body().as_ref(),
        br#"{"success":true,"sessionId":"v1"}"#
    );
}

#[test]
fn an_unanswered_invite_expires_by_sweep_at_exactly_the_ttl() {
    let config = Config {
        invites: InviteConfig {
            ttl: Duration::from_secs(20),
        },
        ..Config::default()
    };
    let h = with_visitor(config);
    let site = SiteId::from("a");
    let r = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    assert_eq!(
        r.deadline.and_then(|d| d.at()).map(|d| d.as_millis()),
        Some(T0 + 20_000)
    );
    assert_eq!(
        block(h.tippen.next_deadline(&site))
            .unwrap()
            .map(|d| d.as_millis()),
        Some(T0 + 20_000)
    );

    h.clock.advance(Duration::from_millis(19_999));
    let out = block(h.tippen.sweep(&site)).unwrap();
    assert!(out.messages.is_empty(), "not before the deadline");

    h.clock.advance(Duration::from_millis(1));
    let out = block(h.tippen.sweep(&site)).unwrap();
    assert_eq!(out.messages.len(), 1);
    let m: Value = serde_json::from_str(&out.messages[0].to_json()).unwrap();
    assert_eq!(update(&m), ("i1", "expired"));
    assert_eq!(m["updatedAt"], T0 + 20_000);
    // Now only the tab's expiry is pending.
    assert_eq!(out.deadline.map(|d| d.as_millis()), Some(T0 + 60_000));

    let late = answer(&h, "v1", "i1", "INVITE_ACCEPTED");
    assert_eq!(late.response.as_ref().unwrap().status(), 409);
    let e = error_of(&late);
    assert!(e.contains("expired") && e.contains("accepted"), "{e}");
    assert!(late.broadcasts.is_empty());
}

#[test]
fn an_answer_at_the_deadline_finds_it_expired_and_the_expiry_is_broadcast() {
    let h = with_visitor(Config::default());
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    h.track("pk_a", &heartbeat("v1", "t"));
    h.clock.advance(Duration::from_secs(59));
    h.track("pk_a", &heartbeat("v1", "t"));
    h.clock.advance(Duration::from_secs(1));
    let late = answer(&h, "v1", "i1", "INVITE_ACCEPTED");
    assert_eq!(late.response.as_ref().unwrap().status(), 409);
    let e = error_of(&late);
    assert!(e.contains("expired") && e.contains("accepted"), "{e}");
    let m = broadcasts(&late);
    assert_eq!(m.len(), 1);
    assert_eq!(update(&m[0]), ("i1", "expired"));
}

#[test]
fn the_visitor_leaving_ends_its_invite_with_visitor_left() {
    let h = with_visitor(Config::default());
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    let left = h.send(
        "POST",
        "/track/leave",
        &[("X-Tippen-API-Key", "pk_a")],
        r#"{"visitorId":"v1","tabId":"t"}"#,
    );
    assert_eq!(left.response.as_ref().unwrap().status(), 200);
    assert!(
        broadcasts(&left).is_empty(),
        "the tab is held for the leave linger"
    );
    h.clock
        .advance(tippen_core::PresenceConfig::default().leave_linger);
    let out = block(h.tippen.sweep(&SiteId::from("a"))).unwrap();
    let m: Vec<Value> = out
        .messages
        .iter()
        .map(|m| serde_json::from_str(&m.to_json()).unwrap())
        .collect();
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(m[0]["type"], "VISITOR_REMOVED");
    assert_eq!(m[0]["reason"], "left");
    assert_eq!(update(&m[1]), ("i1", "visitor_left"));
    assert_eq!(seq(&m[1]), seq(&m[0]) + 1);

    // An inactive visitor, removed by the sweep, too.
    let h = with_visitor(Config::default());
    // The tab (seen at T0) expires at T0 + 60 s, before the invite sent at T0 + 30 s.
    h.clock.advance(Duration::from_secs(30));
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i2"}),
    );
    h.clock.advance(Duration::from_secs(30));
    let out = block(h.tippen.sweep(&SiteId::from("a"))).unwrap();
    let m: Vec<Value> = out
        .messages
        .iter()
        .map(|m| serde_json::from_str(&m.to_json()).unwrap())
        .collect();
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        (m[0]["type"].as_str(), m[0]["reason"].as_str()),
        (Some("VISITOR_REMOVED"), Some("inactive"))
    );
    assert_eq!(update(&m[1]), ("i2", "visitor_left"));

    // Deleted (privacy request).
    let h = with_visitor(Config::default());
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i3"}),
    );
    let del = h.send(
        "DELETE",
        "/api/visitors/v1",
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    );
    let m = broadcasts(&del);
    assert_eq!(m[0]["reason"], "deleted");
    assert_eq!(update(&m[1]), ("i3", "visitor_left"));
}

#[test]
fn an_unswept_expiry_reported_on_the_next_ping_ends_the_invite() {
    let h = with_visitor(Config::default());
    // The tab (seen at T0) expires at T0 + 60 s, before the invite sent at T0 + 30 s.
    h.clock.advance(Duration::from_secs(30));
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    h.clock.advance(Duration::from_secs(30));
    let r = h.track("pk_a", &pageview("v1", "t", "https://example.com/"));
    let m = broadcasts(&r);
    let kinds: Vec<&str> = m.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["VISITOR_REMOVED", "VIDEO_INVITE_UPDATE", "VISITOR_UPDATE"]
    );
    assert_eq!(update(&m[1]), ("i1", "visitor_left"));
    // The new visit has no invite.
    assert!(body_json(&r).get("invite").is_none());
}

#[test]
fn the_admin_cancels() {
    let h = with_visitor(Config::default());
    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    let body = json!({"visitorId": "v1", "inviteId": "i1"}).to_string();
    let public = h.send(
        "POST",
        "/api/invites/cancel",
        &[("X-Tippen-API-Key", "pk_a")],
        body.clone(),
    );
    assert_eq!(public.response.as_ref().unwrap().status(), 403);
    let c = h.send(
        "POST",
        "/api/invites/cancel",
        &[("X-Tippen-API-Key", "sk_a")],
        body.clone(),
    );
    assert_eq!(c.response.as_ref().unwrap().status(), 200);
    assert_eq!(
        body_json(&c),
        json!({"success": true, "state": "cancelled"})
    );
    let m = broadcasts(&c);
    assert_eq!(update(&m[0]), ("i1", "cancelled"));
    // The visitor's page learns nothing more from heartbeats; its late answer conflicts.
    let hb = h.track("pk_a", &heartbeat("v1", "t"));
    assert!(body_json(&hb).get("invite").is_none());
    let late = answer(&h, "v1", "i1", "INVITE_ACCEPTED");
    assert_eq!(late.response.as_ref().unwrap().status(), 409);
    assert!(error_of(&late).contains("cancelled"));
}

#[test]
fn errors_are_json() {
    let h = with_visitor(Config::default());
    let r = invite(
        &h,
        "sk_a",
        json!({"visitorId": "nobody", "guestUrl": "https://g/1"}),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 404);
    assert_eq!(error_of(&r), "Visitor not found");
    assert!(r.broadcasts.is_empty());

    let r = answer(&h, "v1", "nope", "INVITE_SEEN");
    assert_eq!(r.response.as_ref().unwrap().status(), 404);
    assert!(error_of(&r).contains("nope"));
    let r = answer(&h, "nobody", "nope", "INVITE_SEEN");
    assert_eq!(r.response.as_ref().unwrap().status(), 404);
    error_of(&r);
    let r = h.send(
        "POST",
        "/api/invites/cancel",
        &[("X-Tippen-API-Key", "sk_a")],
        json!({"visitorId": "v1", "inviteId": "nope"}).to_string(),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 404);
    error_of(&r);

    let r = answer(&h, "v1", "i1", "INVITE_JOINED");
    assert_eq!(r.response.as_ref().unwrap().status(), 400);
    error_of(&r);
    let r = h.send(
        "POST",
        "/track/invite",
        &[],
        json!({"visitorId": "v1", "inviteId": "i1", "type": "INVITE_SEEN"}).to_string(),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 401);
    let r = h.send("GET", "/track/invite", &[("X-Tippen-API-Key", "pk_a")], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 405);
    error_of(&r);

    invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i1"}),
    );
    let r = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": "i2"}),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 409);
    error_of(&r);
}

#[test]
fn generated_invite_ids_come_from_the_injected_generator() {
    use std::sync::Arc;
    use tippen_core::{IdGenerator, ManualClock, MemoryStore, SeededIds, Site, Timestamp, Tippen};

    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock, Config::default())
        .with_ids(Arc::new(SeededIds::new(7)));
    block(tippen.put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))).unwrap();
    let h = Harness {
        tippen,
        clock: Arc::new(ManualClock::new(Timestamp::from_millis(T0))),
    };
    h.track("pk_a", &pageview("v1", "t", "https://example.com/"));
    let r = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g/1"}),
    );
    let expected = SeededIds::new(7).id("inv");
    assert_eq!(broadcasts(&r)[1]["inviteId"], expected.as_str());
}

/// The `<Visitor>` JSON carries the open invite (so a dashboard that connects later shows the
/// lock), and no longer once it is answered.
#[test]
fn the_visitor_json_shows_the_open_invite_only() {
    let h = with_visitor(Config::default());
    let list = |h: &Harness| body_json(&h.send("GET", "/api/visitors?apiKey=sk_a", &[], ""));
    assert!(
        list(&h)["visitors"][0].get("invite").is_none(),
        "no invite yet"
    );
    let r = invite(
        &h,
        "sk_a",
        json!({"visitorId": "v1", "guestUrl": "https://g.example/1", "inviteId": "inv_open", "invitedBy": "Ada"}),
    );
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    let v = &list(&h)["visitors"][0];
    assert_eq!(v["invite"]["inviteId"], "inv_open");
    assert_eq!(v["invite"]["state"], "sent");
    assert_eq!(v["invite"]["invitedBy"], "Ada");
    assert!(v["invite"]["expiresAt"].is_i64());
    assert_eq!(
        answer(&h, "v1", "inv_open", "INVITE_DECLINED")
            .response
            .as_ref()
            .unwrap()
            .status(),
        200
    );
    assert!(
        list(&h)["visitors"][0].get("invite").is_none(),
        "a final invite is not shown"
    );
}
