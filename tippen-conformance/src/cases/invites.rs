//! `POST /api/send-video-invite`.

use serde_json::{Value, json};

use super::{PROMPT, leave_ok, track_ok};
use crate::dashboard::{Dashboard, is_type, is_update};
use crate::http::{Http, Req};
use crate::wire::unique_id;
use crate::{Failure, Target};

/// Waits for `VIDEO_INVITE_SENT` for `id` and checks its `guestUrl`.
async fn invite_broadcast(
    dashboard: &mut Dashboard,
    id: &str,
    guest_url: &str,
) -> Result<(), Failure> {
    let (sent, _) = dashboard
        .wait_for(&format!("VIDEO_INVITE_SENT for {id}"), PROMPT, |m| {
            is_type(m, "VIDEO_INVITE_SENT")
                && m.get("visitorId").and_then(Value::as_str) == Some(id)
        })
        .await?;
    if sent.get("guestUrl").and_then(Value::as_str) != Some(guest_url) {
        return Err(dashboard.mismatch(
            &format!("VIDEO_INVITE_SENT with visitorId {id} and guestUrl {guest_url}"),
            &sent,
        ));
    }
    Ok(())
}

/// With the secret key, an invite for a present visitor is `200 {"success":true}` and every
/// dashboard of the site (two here) gets `VIDEO_INVITE_SENT` with the visitor and the guest URL.
pub(super) async fn invite_reaches_dashboards(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("invited");
    let guest_url = format!("https://video.test/guest/{id}");
    let mut first = Dashboard::connect(t, &t.secret_key).await?;
    let mut second = Dashboard::connect(t, &t.secret_key).await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    first.note(format!("POST /track/visitor {id}"));
    first
        .wait_for(
            &format!("VISITOR_UPDATE new_visitor for {id}"),
            PROMPT,
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;
    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .json(&json!({"visitorId": id, "guestUrl": guest_url})),
    )
    .await?
    .expect_json(200, &json!({"success": true}))?;
    for dashboard in [&mut first, &mut second] {
        dashboard.note(format!("POST /api/send-video-invite for {id}"));
        invite_broadcast(dashboard, &id, &guest_url).await?;
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    first.close().await;
    second.close().await;
    Ok(())
}

/// Part A's invite body, the legacy key in the `apiKey` field: `200 {"success":true}` and
/// `VIDEO_INVITE_SENT` on the legacy site's dashboard.
pub(super) async fn part_a_invite_with_key_in_body(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("invited_a");
    let guest_url = format!("https://app.example/guest/{id}");
    let mut dashboard = Dashboard::connect(t, &t.legacy_key).await?;
    track_ok(
        &http,
        &t.legacy_key,
        "pageview",
        &id,
        "https://test.com/",
        json!({}),
    )
    .await?;
    http.send(Req::post("/api/send-video-invite").json(&json!({
        "apiKey": t.legacy_key,
        "visitorId": id,
        "guestUrl": guest_url
    })))
    .await?
    .expect_json(200, &json!({"success": true}))?;
    dashboard.note(format!(
        "POST /api/send-video-invite (Part A body, legacy key) for {id}"
    ));
    invite_broadcast(&mut dashboard, &id, &guest_url).await?;
    leave_ok(&http, &t.legacy_key, &id, None).await?;
    dashboard.close().await;
    Ok(())
}

/// An invite for a visitor never seen, or one that left, is `404 {"error":"Visitor not found"}`.
pub(super) async fn invite_for_absent_visitor_is_404(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let gone = unique_id("gone");
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &gone,
        "https://x.test/",
        json!({}),
    )
    .await?;
    leave_ok(&http, &t.public_key, &gone, None).await?;
    for id in [unique_id("never"), gone] {
        http.send(
            Req::post("/api/send-video-invite")
                .key(&t.secret_key)
                .json(&json!({"visitorId": id, "guestUrl": "https://video.test/guest/none"})),
        )
        .await?
        .expect_json(404, &json!({"error": "Visitor not found"}))?;
    }
    Ok(())
}
