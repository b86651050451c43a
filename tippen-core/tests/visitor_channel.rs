//! The visitor channel's protocol in the core (memory store): authorization, the hello, the
//! visitor's answers on the socket, delivery reports, and the pushes a host sends to a
//! visitor's sockets.

mod common;

use std::time::Duration;

use common::*;
use http::HeaderMap;
use serde_json::{Value, json};
use tippen_core::Effects as Handled;
use tippen_core::api::SocketRole;
use tippen_core::invite::InviteConfig;
use tippen_core::{Config, SiteId};

fn site() -> SiteId {
    SiteId::from("a")
}

fn with_visitor(config: Config) -> Harness {
    let h = harness_with(config);
    assert_eq!(
        h.track("pk_a", &pageview("v1", "t", "https://example.com/"))
            .response
            .as_ref()
            .unwrap()
            .status(),
        200
    );
    h
}

fn invite(h: &Harness, invite_id: &str) -> Handled {
    h.send(
        "POST",
        "/api/send-video-invite",
        &[("X-Tippen-API-Key", "sk_a")],
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": invite_id,
               "invitedBy": "Alice"})
        .to_string(),
    )
}

fn pushes(h: &Handled) -> Vec<(String, Value)> {
    h.pushes
        .iter()
        .map(|p| (p.visitor_id.clone(), serde_json::from_str(&p.text).unwrap()))
        .collect()
}

fn raw_pushes(h: &Handled) -> Vec<(String, String)> {
    h.pushes
        .iter()
        .map(|p| (p.visitor_id.clone(), p.text.to_string()))
        .collect()
}

fn visitor() -> SocketRole {
    SocketRole::Visitor {
        site: site(),
        visitor_id: "v1".to_owned(),
    }
}

fn states(broadcasts: &[tippen_core::Broadcast]) -> Vec<String> {
    broadcasts
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .filter(|m| m["type"] == "VIDEO_INVITE_UPDATE")
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect()
}

fn status(r: Option<Result<SocketRole, http::Response<bytes::Bytes>>>) -> u16 {
    r.unwrap()
        .map(|_| 200)
        .unwrap_or_else(|e| e.status().as_u16())
}

#[test]
fn authorization_takes_any_site_key_and_needs_a_visitor_id() {
    let h = harness();
    let auth = |q: &str| {
        status(block(h.tippen.authorize_socket(
            "/ws/visitor",
            &HeaderMap::new(),
            Some(q),
        )))
    };
    assert_eq!(
        block(h.tippen.authorize_socket(
            "/ws/visitor/",
            &HeaderMap::new(),
            Some("apiKey=pk_a&visitorId=v1")
        ))
        .unwrap()
        .unwrap(),
        visitor()
    );
    assert!(
        block(
            h.tippen
                .authorize_socket("/track/visitor", &HeaderMap::new(), Some("apiKey=pk_a"))
        )
        .is_none()
    );
    assert_eq!(auth("apiKey=sk_a&visitorId=v1"), 200);
    assert_eq!(auth("apiKey=demo_api_key&visitorId=v1"), 200);
    assert_eq!(auth("visitorId=v1"), 401);
    assert_eq!(auth("apiKey=nope&visitorId=v1"), 403);
    assert_eq!(auth("apiKey=pk_a"), 400);
    assert_eq!(
        auth(&format!("apiKey=pk_a&visitorId={}", "x".repeat(129))),
        400
    );
    // Without an upgrade, the route says what it is.
    let r = h.send("GET", "/ws/visitor?apiKey=pk_a&visitorId=v1", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 426);
}

#[test]
fn sending_pushes_the_invite_and_later_changes_push_updates() {
    let h = with_visitor(Config::default());
    let r = invite(&h, "i1");
    let p = pushes(&r);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "v1");
    assert_eq!(
        p[0].1,
        json!({"type":"VIDEO_INVITE","inviteId":"i1","guestUrl":"https://g/1",
               "invitedBy":"Alice","expiresAt":T0 + 60_000,"expiresIn":60_000})
    );
    assert_eq!(r.pushes[0].invite.as_deref(), Some("i1"));
    // A retry pushes nothing.
    assert!(invite(&h, "i1").pushes.is_empty());

    // Delivery: once.
    let d = block(h.tippen.invite_delivered(&site(), "v1", "i1")).unwrap();
    assert_eq!(states(&d.broadcasts), ["delivered"]);
    assert!(
        block(h.tippen.invite_delivered(&site(), "v1", "i1"))
            .unwrap()
            .is_quiet()
    );
    assert!(
        block(h.tippen.invite_delivered(&site(), "v1", "nope"))
            .unwrap()
            .is_quiet()
    );

    let c = h.send(
        "POST",
        "/api/invites/cancel",
        &[("X-Tippen-API-Key", "sk_a")],
        json!({"visitorId": "v1", "inviteId": "i1"}).to_string(),
    );
    assert_eq!(c.response.as_ref().unwrap().status(), 200);
    let p = pushes(&c);
    assert_eq!(
        p,
        [(
            "v1".to_owned(),
            json!({"type":"VIDEO_INVITE_UPDATE","inviteId":"i1","state":"cancelled"})
        )]
    );
    assert_eq!(c.pushes[0].invite, None);
}

#[test]
fn an_expiry_by_sweep_is_pushed() {
    let config = Config {
        invites: InviteConfig {
            ttl: Duration::from_secs(20),
        },
        ..Config::default()
    };
    let h = with_visitor(config);
    invite(&h, "i1");
    h.clock.advance(Duration::from_secs(20));
    let swept = block(h.tippen.handle_timeout(&site())).unwrap();
    assert_eq!(states(&swept.broadcasts), ["expired"]);
    assert_eq!(
        raw_pushes(&swept),
        [(
            "v1".to_owned(),
            r#"{"type":"VIDEO_INVITE_UPDATE","inviteId":"i1","state":"expired"}"#.to_owned()
        )]
    );
}

#[test]
fn the_hello_carries_the_open_invite_and_delivers_it_once() {
    let h = with_visitor(Config::default());
    let open = |visitor_id: &str| {
        let role = SocketRole::Visitor {
            site: site(),
            visitor_id: visitor_id.to_owned(),
        };
        block(h.tippen.socket_open(&role)).unwrap()
    };
    for nobody in [open("v1"), open("nobody")] {
        assert!(nobody.reply.is_none() && nobody.is_quiet());
    }
    invite(&h, "i1");
    h.clock.advance(Duration::from_secs(5));
    let hello = open("v1");
    let reply: Value = serde_json::from_str(hello.reply.as_deref().unwrap()).unwrap();
    assert_eq!(reply["type"], "VIDEO_INVITE");
    assert_eq!(reply["inviteId"], "i1");
    assert_eq!(reply["expiresIn"], 55_000);
    assert_eq!(states(&hello.broadcasts), ["delivered"]);
    // A second tab: the invite again, no second `delivered`.
    let hello = open("v1");
    assert!(hello.reply.is_some());
    assert!(hello.broadcasts.is_empty());
}

#[test]
fn the_visitor_answers_on_the_socket() {
    let h = with_visitor(Config::default());
    invite(&h, "i1");
    let say = |text: &str| block(h.tippen.socket_frame(&visitor(), text)).unwrap();
    let reply = |r: &Handled| serde_json::from_str::<Value>(r.reply.as_deref().unwrap()).unwrap();

    let r = say(r#"{"type":"INVITE_SEEN","inviteId":"i1"}"#);
    assert_eq!(
        reply(&r),
        json!({"type":"VIDEO_INVITE_UPDATE","inviteId":"i1","state":"seen"})
    );
    assert_eq!(states(&r.broadcasts), ["seen"]);
    let r = say(r#"{"type":"INVITE_ACCEPTED","inviteId":"i1"}"#);
    assert_eq!(reply(&r)["state"], "accepted");
    assert_eq!(states(&r.broadcasts), ["accepted"]);
    // The visitor's other tabs hear it too (they hide the popup).
    assert_eq!(
        raw_pushes(&r),
        [(
            "v1".to_owned(),
            r#"{"type":"VIDEO_INVITE_UPDATE","inviteId":"i1","state":"accepted"}"#.to_owned()
        )]
    );
    // Repeating it is a no-op with the same reply.
    let r = say(r#"{"type":"INVITE_ACCEPTED","inviteId":"i1"}"#);
    assert_eq!(reply(&r)["state"], "accepted");
    assert!(r.broadcasts.is_empty() && r.pushes.is_empty());

    let r = say(r#"{"type":"INVITE_DECLINED","inviteId":"i1"}"#);
    assert_eq!(reply(&r)["type"], "ERROR");
    assert!(reply(&r)["error"].as_str().unwrap().contains("accepted"));
    assert!(r.broadcasts.is_empty() && r.pushes.is_empty());
    let r = say(r#"{"type":"INVITE_SEEN","inviteId":"nope"}"#);
    assert_eq!(
        reply(&r),
        json!({"type":"ERROR","error":"invite nope not found"})
    );
    for junk in [
        "",
        "null",
        r#"{"type":"PING"}"#,
        r#"{"type":"INVITE_SEEN"}"#,
    ] {
        let r = say(junk);
        assert_eq!(reply(&r)["type"], "ERROR", "{junk}");
        assert!(r.broadcasts.is_empty() && r.pushes.is_empty());
    }
}
