//! Invites' guest URLs (issue 17): the tracker opens the guest URL full-screen in a frame
//! allowed the camera and microphone, so it must be `https://`, and on a site that lists
//! origins or with an https provider, on one of them or the provider's.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use tippen_core::video::CustomerConnect;
use tippen_core::{Config, ManualClock, MemoryStore, Site, Timestamp, Tippen};

fn invite(h: &Harness, key: &str, guest_url: &str) -> (u16, serde_json::Value) {
    let answer = h.send(
        "POST",
        "/api/send-video-invite",
        &[("X-Tippen-API-Key", key)],
        json!({"visitorId": "v1", "guestUrl": guest_url}).to_string(),
    );
    (
        answer.response.as_ref().unwrap().status().as_u16(),
        body_json(&answer),
    )
}

#[test]
fn plain_http_and_tricks_are_refused_everywhere() {
    let h = harness();
    h.track("pk_a", &pageview("v1", "t1", "https://x.test/"));
    for bad in [
        "http://video.test/guest",
        "https://video.test@evil.test/guest",
        "javascript:alert(1)",
        "//evil.test/guest",
    ] {
        assert_eq!(
            invite(&h, "sk_a", bad),
            (
                400,
                json!({"error": "guestUrl must be an https:// URL of at most 2048 bytes"})
            ),
            "{bad}"
        );
    }
    assert_eq!(invite(&h, "sk_a", "https://video.test/guest").0, 200);
}

#[test]
fn a_site_with_an_allowlist_accepts_its_origins_and_the_providers_only() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let tippen = Tippen::new(
        Arc::new(MemoryStore::new()),
        clock.clone(),
        Config::default(),
    )
    .with_video_provider(Arc::new(CustomerConnect::new(
        "https://meet.provider.test/api",
    )));
    let site =
        Site::new("a", "A", "pk_a", "sk_a").with_guest_url_origins(&["https://meet.acme.test"]);
    block(tippen.put_site(&site)).unwrap();
    let h = Harness { tippen, clock };
    h.track("pk_a", &pageview("v1", "t1", "https://x.test/"));
    assert_eq!(
        invite(&h, "sk_a", "https://evil.test/guest"),
        (
            400,
            json!({"error": "guestUrl's origin https://evil.test is not allowed for this site (allowed: https://meet.acme.test, https://meet.provider.test)"})
        )
    );
    assert_eq!(invite(&h, "sk_a", "https://meet.acme.test/room/1").0, 200);
    let cancel = h.send(
        "POST",
        "/api/invites/cancel",
        &[("X-Tippen-API-Key", "sk_a")],
        json!({"visitorId": "v1", "inviteId": "x"}).to_string(),
    );
    assert_eq!(cancel.response.as_ref().unwrap().status(), 404);
    let answer = h.send(
        "POST",
        "/api/send-video-invite",
        &[("X-Tippen-API-Key", "sk_a")],
        json!({"visitorId": "v1", "inviteId": "inv_provider", "guestUrl": "https://MEET.provider.test/g/1"}).to_string(),
    );
    // The first invite is still open: a conflict, but not about the URL.
    assert_eq!(answer.response.as_ref().unwrap().status(), 409);
}

#[test]
fn with_an_https_provider_and_no_allowlist_only_the_providers_origin_is_accepted() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let tippen = Tippen::new(
        Arc::new(MemoryStore::new()),
        clock.clone(),
        Config::default(),
    )
    .with_video_provider(Arc::new(CustomerConnect::new(
        "https://meet.provider.test/api",
    )));
    block(tippen.put_site(&Site::new("a", "A", "pk_a", "sk_a"))).unwrap();
    let h = Harness { tippen, clock };
    h.track("pk_a", &pageview("v1", "t1", "https://x.test/"));
    assert_eq!(
        invite(&h, "sk_a", "https://app.example/guest/abc123"),
        (
            400,
            json!({"error": "guestUrl's origin https://app.example is not allowed for this site (allowed: https://meet.provider.test)"})
        )
    );
    assert_eq!(
        invite(&h, "sk_a", "https://meet.provider.test/guest/abc123").0,
        200
    );
}

#[test]
fn without_an_https_provider_or_allowlist_any_https_origin_is_accepted() {
    // Part A's example is accepted as it stands on a host with no provider (the reference
    // server's default).
    let h = harness();
    h.track("pk_a", &pageview("v1", "t1", "https://x.test/"));
    assert_eq!(
        invite(&h, "sk_a", "https://app.example/guest/abc123"),
        (200, json!({"success": true}))
    );
}
