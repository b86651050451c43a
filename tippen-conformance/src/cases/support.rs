//! Support triggers: `POST /api/track/user-activity` analysed, `SUPPORT_ALERT` /
//! `SUPPORT_RECOVERED` on the dashboards, `GET /api/support/users`, `DELETE /api/users/{id}`.

use serde_json::json;

use super::PROMPT;
use crate::dashboard::{Dashboard, is_type};
use crate::http::{Http, Req};
use crate::wire::unique_id;
use crate::{Failure, Target};

/// Four errors in one batch: dashboards hear `SUPPORT_ALERT` raising `error_burst`, the
/// overview (secret key only) lists the open alert, and deleting the user reports it
/// recovered with resolution `deleted`.
pub(super) async fn error_burst_alerts_dashboards_and_the_overview(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let user = unique_id("user");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let error = json!({"type": "error", "message": "Failed to load", "route": "/billing",
        "timestamp": crate::wire::now_ms()});
    http.send(Req::post("/api/track/user-activity").json(&json!({
        "apiKey": t.public_key,
        "userId": user,
        "userEmail": format!("{user}@acme.test"),
        "subscriptionTier": "paid",
        "events": [error, error, error, error],
    })))
    .await?
    .expect_json(
        200,
        &json!({"success": true, "stored": 4, "analyzed": true}),
    )?;
    let (alert, _) = dashboard
        .wait_for(&format!("SUPPORT_ALERT for {user}"), PROMPT, |m| {
            is_type(m, "SUPPORT_ALERT") && m["user"]["userId"].as_str() == Some(user.as_str())
        })
        .await?;
    if alert["raised"] != json!(["error_burst"])
        || alert["user"]["route"] != "/billing"
        || alert["user"]["subscriptionTier"] != "paid"
    {
        return Err(dashboard.mismatch(
            "SUPPORT_ALERT raising [\"error_burst\"] for a paid user on /billing",
            &alert,
        ));
    }
    http.send(Req::get("/api/support/users").key(&t.public_key))
        .await?
        .expect_error(403)?;
    let answer = http
        .send(Req::get("/api/support/users").key(&t.secret_key))
        .await?;
    let overview = answer.expect_ok_json(200)?;
    let listed = |field: &str| {
        overview[field].as_array().is_some_and(|a| {
            a.iter()
                .any(|u| u["userId"].as_str() == Some(user.as_str()))
        })
    };
    if !listed("users") || !listed("alerts") {
        return Err(answer.fail(format!("{user} in both users and alerts")));
    }
    http.send(Req::new(reqwest::Method::DELETE, format!("/api/users/{user}")).key(&t.secret_key))
        .await?
        .expect_json(200, &json!({"success": true, "deleted": true}))?;
    let (gone, _) = dashboard
        .wait_for(&format!("SUPPORT_RECOVERED for {user}"), PROMPT, |m| {
            is_type(m, "SUPPORT_RECOVERED") && m["userId"].as_str() == Some(user.as_str())
        })
        .await?;
    if gone["resolution"] != "deleted" || gone["cleared"] != json!(["error_burst"]) {
        return Err(dashboard.mismatch(
            "SUPPORT_RECOVERED with resolution deleted, cleared [\"error_burst\"]",
            &gone,
        ));
    }
    dashboard.close().await;
    Ok(())
}
