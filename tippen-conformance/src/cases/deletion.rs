//! Privacy deletion: `DELETE /api/visitors/{visitorId}` and `DELETE /api/users/{userId}`.

use reqwest::Method;
use serde_json::json;

use super::{PROMPT, is_invite_update, not_listed, send_invite, track_hidden};
use crate::dashboard::{Dashboard, is_removal};
use crate::http::{Http, Req};
use crate::wire::unique_id;
use crate::{Failure, Target};

fn delete(path: String, key: &str) -> Req {
    Req::new(Method::DELETE, path).key(key)
}

/// Deleting a live visitor (secret key only) answers `deleted: true`, dashboards hear
/// `VISITOR_REMOVED` reason `deleted` and then its open invite ended as `visitor_left`; it is
/// no longer listed, and deleting it again answers `deleted: false`.
pub(super) async fn deleting_a_visitor_removes_it_everywhere(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("delete");
    track_hidden(&http, &t.public_key, &id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let invite = unique_id("inv");
    send_invite(&http, t, &id, &invite, "Erin").await?;
    let path = format!("/api/visitors/{id}");
    http.send(delete(path.clone(), &t.public_key))
        .await?
        .expect_error(403)?;
    http.send(delete(path.clone(), &t.secret_key))
        .await?
        .expect_json(200, &json!({"success": true, "deleted": true}))?;
    dashboard.note(format!("DELETE {path} (an invite open)"));
    let (removed, _) = dashboard
        .wait_for_any_order("VISITOR_REMOVED", PROMPT, |m| is_removal(m, &id))
        .await?;
    if removed["reason"] != "deleted" {
        return Err(dashboard.mismatch("VISITOR_REMOVED with reason `deleted`", &removed));
    }
    let (left, _) = dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE visitor_left", PROMPT, |m| {
            is_invite_update(m, &invite, "visitor_left")
        })
        .await?;
    if removed["seq"].as_u64() >= left["seq"].as_u64() {
        return Err(dashboard.mismatch(
            "VIDEO_INVITE_UPDATE visitor_left after VISITOR_REMOVED",
            &left,
        ));
    }
    not_listed(&http, &t.secret_key, &id, "it was deleted").await?;
    http.send(delete(path, &t.secret_key))
        .await?
        .expect_json(200, &json!({"success": true, "deleted": false}))?;
    dashboard.close().await;
    Ok(())
}

/// Deleting an unknown visitor or user answers `deleted: false`; both routes refuse the
/// public key (403) and a missing key (401).
pub(super) async fn deleting_unknown_ids_is_false_and_needs_the_secret_key(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    for path in [
        format!("/api/visitors/{}", unique_id("never")),
        format!("/api/users/{}", unique_id("nobody")),
    ] {
        http.send(delete(path.clone(), &t.secret_key))
            .await?
            .expect_json(200, &json!({"success": true, "deleted": false}))?;
        http.send(delete(path.clone(), &t.public_key))
            .await?
            .expect_error(403)?;
        http.send(Req::new(Method::DELETE, path))
            .await?
            .expect_error(401)?;
    }
    Ok(())
}

/// A deletion is an opt-out: the deleted visitor's next heartbeat and page view are refused
/// with `410 {"error":"visitor <id> was deleted and has opted out of tracking"}`, recreate
/// nothing (not listed, nothing broadcast), and an exit beacon is still a quiet 200.
pub(super) async fn a_deleted_visitor_is_not_tracked_again(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("optout");
    track_hidden(&http, &t.public_key, &id).await?;
    http.send(delete(format!("/api/visitors/{id}"), &t.secret_key))
        .await?
        .expect_json(200, &json!({"success": true, "deleted": true}))?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let refused =
        json!({"error": format!("visitor {id} was deleted and has opted out of tracking")});
    for (event, url) in [
        ("heartbeat", "https://x.test/invite"),
        ("pageview", "https://x.test/again"),
    ] {
        let body = crate::wire::track_body(
            event,
            &id,
            url,
            json!({"tabId": "tab_1", "visibility": "hidden"}),
        );
        http.send(Req::post("/track/visitor").key(&t.public_key).json(&body))
            .await?
            .expect_json(410, &refused)?;
    }
    http.send(
        Req::post("/track/leave")
            .key(&t.public_key)
            .json(&json!({"visitorId": id, "tabId": "tab_1"})),
    )
    .await?
    .expect_json(200, &json!({"success": true}))?;
    not_listed(&http, &t.secret_key, &id, "it was deleted (opted out)").await?;
    dashboard.note(format!("tracking {id} after its deletion"));
    dashboard
        .expect_none("a message about the deleted visitor", PROMPT / 3, |m| {
            crate::dashboard::mentions(m, &id)
        })
        .await?;
    dashboard.close().await;
    Ok(())
}
