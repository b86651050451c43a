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

/// An error burst of a user with an email: one message on the Slack stand-in naming the user,
/// and none for a second burst within the cooldown.
pub(super) async fn support_alert_reaches_slack_once(t: &Target) -> Result<(), Failure> {
    let Some(s) = t.outbound.stand_ins.as_ref() else {
        return Err(super::step_failure(
            "(starting the case)",
            "the suite's stand-ins",
            "none configured",
        ));
    };
    let http = Http::new(t)?;
    let user = unique_id("slack_user");
    let email = format!("{user}@acme.test");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let error = json!({"type": "error", "message": "Failed to load", "route": "/billing",
        "timestamp": crate::wire::now_ms()});
    let batch = json!({
        "apiKey": t.public_key,
        "userId": user,
        "userEmail": email,
        "subscriptionTier": "paid",
        "events": [error, error, error, error],
    });
    http.send(Req::post("/api/track/user-activity").json(&batch))
        .await?
        .expect_json(
            200,
            &json!({"success": true, "stored": 4, "analyzed": true}),
        )?;
    dashboard
        .wait_for_any_order(&format!("SUPPORT_ALERT for {user}"), PROMPT, |m| {
            is_type(m, "SUPPORT_ALERT") && m["user"]["userId"].as_str() == Some(user.as_str())
        })
        .await?;
    let deadline = std::time::Instant::now() + PROMPT;
    while s.slack_messages(&email).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got = s.slack_messages(&email);
    if got.len() != 1 {
        return Err(super::step_failure(
            format!("an error burst of {user} ({email})"),
            format!("one Slack message naming {email} within {PROMPT:?}"),
            format!("{} message(s): {}", got.len(), serde_json::Value::from(got)),
        ));
    }
    http.send(Req::post("/api/track/user-activity").json(&batch))
        .await?
        .expect_ok_json(200)?;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let got = s.slack_messages(&email).len();
    if got != 1 {
        return Err(super::step_failure(
            format!("a second error burst of {user} within the cooldown"),
            "still one Slack message",
            format!("{got}"),
        ));
    }
    dashboard.close().await;
    Ok(())
}

/// A site with an identity secret takes an activity batch only with `userHash`, the hex
/// HMAC-SHA256 of `userId` under that secret: missing or wrong (another user's, garbage) is a
/// 401 naming `userHash`; the right one (either hex case) is stored.
pub(super) async fn verified_identities_need_a_matching_user_hash(
    t: &Target,
) -> Result<(), Failure> {
    let Some(key) = t.verified_site_public_key.as_deref() else {
        unreachable!("run only with Capability::VerifiedIdentities");
    };
    let http = Http::new(t)?;
    let user = unique_id("verified");
    let event = json!({"type": "route", "route": "/home", "timestamp": crate::wire::now_ms()});
    let batch = |hash: Option<String>| {
        let mut body = json!({"apiKey": key, "userId": user, "events": [event]});
        if let Some(hash) = hash {
            body["userHash"] = json!(hash);
        }
        Req::post("/api/track/user-activity").json(&body)
    };
    // None; another user's; not hex; under another secret. (The request's body, shown in a
    // failure, says which.)
    for hash in [
        None,
        Some(sign(crate::IDENTITY_SECRET, "someone_else")),
        Some("not-a-hash".to_owned()),
        Some(sign("idv_other_0123456789abcdefgh", &user)),
    ] {
        http.send(batch(hash))
            .await?
            .expect_error_mentioning(401, "userHash")?;
    }
    http.send(batch(Some(
        sign(crate::IDENTITY_SECRET, &user).to_uppercase(),
    )))
    .await?
    .expect_json(
        200,
        &json!({"success": true, "stored": 1, "analyzed": true}),
    )?;
    Ok(())
}

/// `hex(HMAC-SHA256(secret, user_id))`, as a product's backend computes a `userHash`.
fn sign(secret: &str, user_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(user_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `GET /api/users/{id}/activity`: a user's batch read back newest first, in pages that walk
/// every event once; the journey and the errors; the live visitor the batch's `visitorId`
/// named while it is present; 404 for an unknown user, 400 naming a bad `cursor` or `limit`,
/// 401 without a key and 403 with the public key.
pub(super) async fn user_activity_reads_the_timeline_back_in_pages(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let user = unique_id("activity");
    let visitor = unique_id("visitor");
    let t0 = crate::wire::now_ms();
    let events = json!([
        {"type": "route", "route": "/home", "timestamp": t0},
        {"type": "click", "element": "button.next", "route": "/home", "timestamp": t0 + 1000},
        {"type": "route", "route": "/billing", "timestamp": t0 + 4000},
        {"type": "error", "message": "Card declined", "route": "/billing", "timestamp": t0 + 5000},
        {"type": "custom", "name": "feature_used", "data": {"feature": "export"}, "timestamp": t0 + 6000},
    ]);
    // The visitor tracker on the same page first: the user is a live visitor.
    super::track(
        &http,
        &t.public_key,
        &crate::wire::track_body(
            "pageview",
            &visitor,
            "https://conformance.test/billing",
            json!({}),
        ),
    )
    .await?
    .expect_status(200)?;
    http.send(Req::post("/api/track/user-activity").json(&json!({
        "apiKey": t.public_key,
        "userId": user,
        "subscriptionTier": "paid",
        "visitorId": visitor,
        "events": events,
    })))
    .await?
    .expect_json(
        200,
        &json!({"success": true, "stored": 5, "analyzed": true}),
    )?;
    let path = format!("/api/users/{user}/activity");
    let answer = http.send(Req::get(&path).key(&t.secret_key)).await?;
    let all = answer.expect_ok_json(200)?;
    let types: Vec<&str> = all["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["type"].as_str()).collect())
        .unwrap_or_default();
    if types != ["custom", "error", "route", "click", "route"]
        || all["events"][1]["message"] != "Card declined"
        || all["events"][4]["route"] != "/home"
    {
        return Err(answer.fail(
            "events newest first: custom, error (Card declined), route, click, route (/home)",
        ));
    }
    let journey: Vec<(&str, u64)> = all["journey"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["route"].as_str()?, s["durationMs"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    if journey.len() != 2 || journey[0] != ("/home", 4000) || journey[1].0 != "/billing" {
        return Err(answer.fail("journey /home (4000 ms) then /billing"));
    }
    if all["errors"].as_array().map(Vec::len) != Some(1)
        || all["user"]["userId"] != json!(user)
        || all["liveVisitor"]["visitorId"] != json!(visitor)
    {
        return Err(answer.fail(format!(
            "one error, user {user}, liveVisitor.visitorId {visitor}"
        )));
    }
    // Pages of two: 2 + 2 + 1, each event once, in the same order.
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..3 {
        let url = match &cursor {
            None => format!("{path}?limit=2"),
            Some(c) => format!("{path}?limit=2&cursor={c}"),
        };
        let answer = http.send(Req::get(&url).key(&t.secret_key)).await?;
        let body = answer.expect_ok_json(200)?;
        let got = body["events"].as_array().cloned().unwrap_or_default();
        seqs.extend(got.iter().filter_map(|e| e["seq"].as_u64()));
        cursor = body["nextCursor"].as_str().map(str::to_owned);
        if got.len() != if page < 2 { 2 } else { 1 } || (page < 2) != cursor.is_some() {
            return Err(answer.fail(format!(
                "page {} of 3: {} events{}",
                page + 1,
                if page < 2 { 2 } else { 1 },
                if page < 2 {
                    " and a nextCursor"
                } else {
                    ", no nextCursor"
                }
            )));
        }
    }
    let expected: Vec<u64> = all["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["seq"].as_u64()).collect())
        .unwrap_or_default();
    if seqs != expected || seqs.len() != 5 {
        return Err(Failure::Mismatch {
            sent: format!("GET {path}?limit=2 and its cursors"),
            expected: format!("the events of one page, in order: {expected:?}"),
            got: format!("{seqs:?}"),
        });
    }
    // Refusals.
    let unknown = format!("/api/users/{}/activity", unique_id("nobody"));
    http.send(Req::get(&unknown).key(&t.secret_key))
        .await?
        .expect_error(404)?;
    http.send(Req::get(format!("{path}?cursor=not-a-cursor")).key(&t.secret_key))
        .await?
        .expect_error_mentioning(400, "cursor")?;
    http.send(Req::get(format!("{path}?limit=0")).key(&t.secret_key))
        .await?
        .expect_error_mentioning(400, "limit")?;
    http.send(Req::get(&path)).await?.expect_error(401)?;
    http.send(Req::get(&path).key(&t.public_key))
        .await?
        .expect_error(403)?;
    Ok(())
}
