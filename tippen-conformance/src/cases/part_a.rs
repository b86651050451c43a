//! Part A: the predecessor's clients, byte for byte.

use serde_json::{Value, json};

use super::{
    check_field, check_visitor_shape, leave_ok, listed_visitor, step_failure, track, track_ok,
};
use crate::dashboard::Dashboard;
use crate::http::{Http, Req, media_type};
use crate::wire::{now_ms, rfc3339_utc_ms, unique_id};
use crate::{Failure, Target};

/// `GET /` → `200`, body exactly `Tippen API`, plain text.
pub(super) async fn root_answers_tippen_api(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let answer = http.send(Req::get("/")).await?;
    answer.expect_status(200)?;
    if answer.body != b"Tippen API" {
        return Err(answer.fail("HTTP 200 with the body exactly `Tippen API`"));
    }
    if answer.header("content-type").map(media_type).as_deref() != Some("text/plain") {
        return Err(answer.fail("Content-Type: text/plain"));
    }
    Ok(())
}

/// The predecessor's documented curl, the exact bytes, answered with exactly
/// `{"success":true,"sessionId":"test"}` as JSON.
pub(super) async fn predecessor_curl_is_answered_exactly(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let body = r#"{"event":"pageview","visitor":{"visitorId":"test","url":"https://test.com","timestamp":"2025-10-16T12:00:00Z"},"website":"test.com"}"#;
    let answer = http
        .send(
            Req::post("/track/visitor")
                .raw("application/json", body)
                .key(&t.legacy_key),
        )
        .await?;
    answer.expect_json(200, &json!({"success": true, "sessionId": "test"}))?;
    Ok(())
}

/// Part A's full example (with `userAgent` and `referrer`) is accepted exactly, and the legacy
/// key, used as a secret key, lists the visitor with what was sent and server-clock times.
pub(super) async fn full_part_a_pageview_is_listed(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("parta");
    let body = json!({
        "event": "pageview",
        "visitor": {
            "visitorId": id,
            "url": "https://example.com/products",
            "timestamp": "2025-10-16T12:00:00Z",
            "userAgent": "Mozilla/5.0 ...",
            "referrer": "https://google.com/search?q=best+products"
        },
        "website": "example.com"
    });
    let before = now_ms();
    track(&http, &t.legacy_key, &body)
        .await?
        .expect_json(200, &json!({"success": true, "sessionId": id}))?;
    let visitor = listed_visitor(&http, &t.legacy_key, &id).await?;
    let after = now_ms();
    let from = format!("GET /api/visitors (legacy key) after tracking {id}");
    check_visitor_shape(&from, &visitor)?;
    check_field(
        &from,
        &visitor,
        "url",
        &json!("https://example.com/products"),
    )?;
    check_field(&from, &visitor, "website", &json!("example.com"))?;
    check_field(
        &from,
        &visitor,
        "referrer",
        &json!("https://google.com/search?q=best+products"),
    )?;
    check_field(&from, &visitor, "userAgent", &json!("Mozilla/5.0 ..."))?;
    check_field(&from, &visitor, "status", &json!("active"))?;
    check_field(&from, &visitor, "pageViews", &json!(1))?;
    // `timestamp` and `lastActivity` are the server's clock, not the client's 2025 date.
    for field in ["timestamp", "lastActivity"] {
        let ms = visitor
            .get(field)
            .and_then(Value::as_str)
            .and_then(rfc3339_utc_ms)
            .unwrap_or(0);
        if ms < before - 60_000 || ms > after + 60_000 {
            return Err(step_failure(
                &from,
                format!(
                    "`{field}` on the server's clock (within a minute of now), not the client's \
                     timestamp"
                ),
                format!("`{field}` = {}", visitor.get(field).unwrap_or(&Value::Null)),
            ));
        }
    }
    leave_ok(&http, &t.legacy_key, &id, None).await?;
    Ok(())
}

/// A `heartbeat` event after a `pageview` gets the same exact answer.
pub(super) async fn heartbeat_is_accepted(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("heartbeat");
    for event in ["pageview", "heartbeat", "heartbeat"] {
        let body = json!({
            "event": event,
            "visitor": {
                "visitorId": id,
                "url": "https://test.com/",
                "timestamp": "2025-10-16T12:00:00Z"
            },
            "website": "test.com"
        });
        track(&http, &t.legacy_key, &body)
            .await?
            .expect_json(200, &json!({"success": true, "sessionId": id}))?;
    }
    listed_visitor(&http, &t.legacy_key, &id).await?;
    leave_ok(&http, &t.legacy_key, &id, None).await?;
    Ok(())
}

/// The legacy key tracks, lists visitors, opens a dashboard and sends invites.
pub(super) async fn legacy_key_is_public_and_secret(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("legacy");
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
    dashboard.note(format!("POST /track/visitor (legacy key) for {id}"));
    dashboard
        .wait_for(
            &format!("VISITOR_UPDATE new_visitor for {id}"),
            super::PROMPT,
            |m| crate::dashboard::is_update(m, &id, "new_visitor"),
        )
        .await?;
    listed_visitor(&http, &t.legacy_key, &id).await?;
    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.legacy_key)
            .json(&json!({"visitorId": unique_id("nobody"), "guestUrl": "https://video.test/g/1"})),
    )
    .await?
    .expect_json(404, &json!({"error": "Visitor not found"}))?;
    leave_ok(&http, &t.legacy_key, &id, None).await?;
    dashboard.close().await;
    Ok(())
}
