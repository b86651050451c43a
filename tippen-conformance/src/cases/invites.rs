//! `POST /api/send-video-invite`.

use serde_json::{Value, json};

use super::{PROMPT, leave_ok, track_ok};
use crate::dashboard::{Dashboard, is_removal, is_type, is_update};
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
    let left = leave_ok(&http, &t.public_key, &gone, None).await?;
    super::gone_after_leave(&http, t, &t.secret_key, &gone, left).await?;
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

/// With no channel open, the pending invite rides on the next `/track/visitor` answer (which
/// delivers it); the visitor answers through `POST /track/invite` (key in the body, the
/// header or the query): the state now, a repeated answer a no-op, a contradiction `409`, an
/// unknown invite `404`; once final, the tracking answer is Part A's again.
pub(super) async fn invite_rides_on_track_visitor_and_is_answered_over_http(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("ride");
    super::track_hidden(&http, &t.public_key, &id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let invite = unique_id("inv");
    super::send_invite(&http, t, &id, &invite, "Bob").await?;
    dashboard.note(format!("POST /api/send-video-invite {invite}"));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE sent", PROMPT, |m| {
            super::is_invite_update(m, &invite, "sent")
        })
        .await?;
    let heartbeat = crate::wire::track_body(
        "heartbeat",
        &id,
        "https://x.test/invite",
        json!({"tabId": "tab_1", "visibility": "hidden"}),
    );
    let answer = super::track(&http, &t.public_key, &heartbeat).await?;
    let body = answer.expect_ok_json(200)?;
    let rides = &body["invite"];
    let ok = body["success"] == true
        && body["sessionId"] == id.as_str()
        && rides["type"] == "VIDEO_INVITE"
        && rides["inviteId"] == invite.as_str()
        && rides["guestUrl"] == super::guest_url(&invite).as_str()
        && rides["invitedBy"] == "Bob"
        && rides["expiresAt"].as_i64().is_some()
        && rides["expiresIn"].as_u64().is_some_and(|ms| ms > 0);
    if !ok {
        return Err(answer.fail(format!(
            "HTTP 200 {{\"success\":true,\"sessionId\":\"{id}\",\"invite\":{{\"type\":\"VIDEO_INVITE\",\"inviteId\":\"{invite}\",\"guestUrl\":…,\"invitedBy\":\"Bob\",\"expiresAt\":<ms>,\"expiresIn\":<ms > 0>}}}}"
        )));
    }
    dashboard.note(format!("heartbeat of {id}, its answer carrying {invite}"));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE delivered", PROMPT, |m| {
            super::is_invite_update(m, &invite, "delivered")
        })
        .await?;

    let event = |kind: &str| json!({"visitorId": id, "inviteId": invite, "type": kind});
    let with_body_key = |kind: &str| {
        let mut body = event(kind);
        body["apiKey"] = json!(t.public_key);
        Req::post("/track/invite").raw("text/plain;charset=UTF-8", body.to_string())
    };
    let state = |s: &str| json!({"success": true, "state": s});
    http.send(with_body_key("INVITE_SEEN"))
        .await?
        .expect_json(200, &state("seen"))?;
    http.send(
        Req::post("/track/invite")
            .key(&t.public_key)
            .json(&event("INVITE_SEEN")),
    )
    .await?
    .expect_json(200, &state("seen"))?;
    http.send(
        Req::post(format!(
            "/track/invite?apiKey={}",
            crate::dashboard::percent_encode(&t.public_key)
        ))
        .json(&event("INVITE_ACCEPTED")),
    )
    .await?
    .expect_json(200, &state("accepted"))?;
    dashboard.note(format!(
        "POST /track/invite {invite}: seen, seen again, accepted"
    ));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE accepted", PROMPT, |m| {
            super::is_invite_update(m, &invite, "accepted")
        })
        .await?;
    let seen = dashboard.count(|m| super::is_invite_update(m, &invite, "seen"));
    if seen != 1 {
        return Err(super::step_failure(
            format!("POST /track/invite {invite} INVITE_SEEN twice"),
            "one VIDEO_INVITE_UPDATE seen (the repeated answer is a no-op)",
            format!("{seen}"),
        ));
    }
    http.send(with_body_key("INVITE_DECLINED"))
        .await?
        .expect_error_mentioning(409, "accepted")?;
    let unknown = unique_id("inv_unknown");
    http.send(
        Req::post("/track/invite")
            .key(&t.public_key)
            .json(&json!({"visitorId": id, "inviteId": unknown, "type": "INVITE_SEEN"})),
    )
    .await?
    .expect_json(
        404,
        &json!({"error": format!("invite {unknown} not found")}),
    )?;
    http.send(
        Req::post("/track/invite")
            .key(&t.public_key)
            .json(&json!({"visitorId": id, "inviteId": invite, "type": "INVITE_MAYBE"})),
    )
    .await?
    .expect_error(400)?;
    super::track(&http, &t.public_key, &heartbeat)
        .await?
        .expect_json(200, &json!({"success": true, "sessionId": id}))?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    dashboard.close().await;
    Ok(())
}

/// One open invite per visitor: a retry with its id is a no-op, another id `409` naming it;
/// cancelling needs the secret key and a known invite; after a cancel a new invite can be
/// sent; the visitor leaving ends it with `visitor_left`, broadcast after `VISITOR_REMOVED`.
pub(super) async fn invite_conflicts_retries_cancel_and_visitor_left(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("conflict");
    super::track_hidden(&http, &t.public_key, &id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let first = unique_id("inv_a");
    let second = unique_id("inv_b");
    super::send_invite(&http, t, &id, &first, "Dana").await?;
    super::send_invite(&http, t, &id, &first, "Dana").await?;
    let invite = |invite_id: &str| {
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .json(&json!({"visitorId": id, "inviteId": invite_id,
                "guestUrl": super::guest_url(invite_id)}))
    };
    http.send(invite(&second))
        .await?
        .expect_error_mentioning(409, &first)?;
    let cancel = |key: &str, invite_id: &str| {
        Req::post("/api/invites/cancel")
            .key(key)
            .json(&json!({"visitorId": id, "inviteId": invite_id}))
    };
    http.send(cancel(&t.public_key, &first))
        .await?
        .expect_error(403)?;
    http.send(cancel(&t.secret_key, &unique_id("inv_unknown")))
        .await?
        .expect_error(404)?;
    http.send(cancel(&t.secret_key, &first))
        .await?
        .expect_json(200, &json!({"success": true, "state": "cancelled"}))?;
    dashboard.note(format!(
        "invite {first} sent twice (a retry), {second} refused, {first} cancelled"
    ));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE cancelled", PROMPT, |m| {
            super::is_invite_update(m, &first, "cancelled")
        })
        .await?;
    let sent = dashboard.count(|m| super::is_invite_update(m, &first, "sent"));
    let part_a = dashboard
        .count(|m| is_type(m, "VIDEO_INVITE_SENT") && m["visitorId"].as_str() == Some(id.as_str()));
    if sent != 1 || part_a != 1 {
        return Err(super::step_failure(
            format!("POST /api/send-video-invite {first} twice"),
            "one VIDEO_INVITE_SENT and one VIDEO_INVITE_UPDATE sent (the retry broadcasts nothing)",
            format!("{part_a} VIDEO_INVITE_SENT, {sent} VIDEO_INVITE_UPDATE sent"),
        ));
    }
    if dashboard.count(|m| super::is_invite_update(m, &second, "sent")) != 0 {
        return Err(super::step_failure(
            format!("POST /api/send-video-invite {second} while {first} was open (409)"),
            "nothing broadcast for the refused invite",
            "a VIDEO_INVITE_UPDATE sent for it",
        ));
    }
    http.send(invite(&second))
        .await?
        .expect_json(200, &json!({"success": true}))?;
    dashboard.note(format!("invite {second} after the cancel"));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE sent", PROMPT, |m| {
            super::is_invite_update(m, &second, "sent")
        })
        .await?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    dashboard.note(format!("POST /track/leave {id} with {second} open"));
    let (removed, _) = dashboard
        .wait_for_any_order("VISITOR_REMOVED", t.leave_linger + PROMPT, |m| {
            is_removal(m, &id)
        })
        .await?;
    let (left, _) = dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE visitor_left", PROMPT, |m| {
            super::is_invite_update(m, &second, "visitor_left")
        })
        .await?;
    if removed["seq"].as_u64() >= left["seq"].as_u64() {
        return Err(dashboard.mismatch(
            &format!(
                "VIDEO_INVITE_UPDATE visitor_left broadcast after VISITOR_REMOVED (seq {})",
                removed["seq"]
            ),
            &left,
        ));
    }
    dashboard.close().await;
    Ok(())
}
