//! Tabs: several tabs are one visitor; leaving closes a tab, the last tab takes the visitor.

use std::time::Duration;

use serde_json::{Value, json};

use super::{PROMPT, leave_ok, listed_visitor, not_listed, step_failure, track_ok};
use crate::dashboard::{Dashboard, is_removal, is_update, percent_encode};
use crate::http::{Http, Req};
use crate::wire::{describe_json, tab_ids, unique_id};
use crate::{Failure, Target};

/// How soon a `left` removal must reach a dashboard.
const LEFT_PROMPTLY: Duration = Duration::from_millis(1500);

/// Waits for `VISITOR_REMOVED` of `id` with reason `left` within [`LEFT_PROMPTLY`].
async fn removed_as_left(dashboard: &mut Dashboard, id: &str) -> Result<(), Failure> {
    let (removed, _) = dashboard
        .wait_for(
            &format!("VISITOR_REMOVED for {id} with reason `left`"),
            LEFT_PROMPTLY,
            |m| is_removal(m, id),
        )
        .await?;
    if removed.get("reason") != Some(&json!("left")) {
        return Err(dashboard.mismatch("VISITOR_REMOVED with reason `left`", &removed));
    }
    Ok(())
}

/// Two tab ids of one visitor are one row with two `tabs`; the second tab is broadcast as
/// `tab_opened`.
pub(super) async fn two_tabs_are_one_visitor(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("twotabs");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/one",
        json!({"tabId": "tab_a"}),
    )
    .await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/two",
        json!({"tabId": "tab_b"}),
    )
    .await?;
    dashboard.note(format!(
        "POST /track/visitor {id} with tabId tab_a, then tab_b"
    ));
    dashboard
        .wait_for(
            &format!("VISITOR_UPDATE new_visitor for {id}"),
            PROMPT,
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;
    let (opened, _) = dashboard
        .wait_for(
            &format!("VISITOR_UPDATE tab_opened for {id}"),
            PROMPT,
            |m| is_update(m, &id, "tab_opened"),
        )
        .await?;
    let visitor = opened.get("visitor").cloned().unwrap_or(Value::Null);
    if tab_ids(&visitor) != ["tab_a", "tab_b"] {
        return Err(dashboard.mismatch(
            "VISITOR_UPDATE tab_opened whose visitor has tabs tab_a and tab_b",
            &opened,
        ));
    }
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if tab_ids(&listed) != ["tab_a", "tab_b"] {
        return Err(step_failure(
            format!("GET /api/visitors after tracking {id} in tabs tab_a and tab_b"),
            "one row with `tabs` tab_a and tab_b",
            describe_json(&listed),
        ));
    }
    super::check_field(
        "GET /api/visitors: `url` is the most recently active tab's page",
        &listed,
        "url",
        &json!("https://x.test/two"),
    )?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    removed_as_left(&mut dashboard, &id).await?;
    dashboard.close().await;
    Ok(())
}

/// Leaving one of two tabs keeps the visitor (`VISITOR_UPDATE` `tab_closed`, one tab left);
/// leaving the last removes it at once with reason `left`.
pub(super) async fn leaving_one_tab_keeps_the_visitor(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("leaveone");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/1",
        json!({"tabId": "t1"}),
    )
    .await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/2",
        json!({"tabId": "t2"}),
    )
    .await?;
    leave_ok(&http, &t.public_key, &id, Some("t1")).await?;
    dashboard.note(format!("POST /track/leave {id} tab t1 (t2 still open)"));
    let (closed, _) = dashboard
        .wait_for(
            &format!("VISITOR_UPDATE tab_closed for {id}"),
            PROMPT,
            |m| is_update(m, &id, "tab_closed"),
        )
        .await?;
    let visitor = closed.get("visitor").cloned().unwrap_or(Value::Null);
    if tab_ids(&visitor) != ["t2"] {
        return Err(dashboard.mismatch(
            "VISITOR_UPDATE tab_closed whose visitor has only tab t2",
            &closed,
        ));
    }
    dashboard
        .expect_none(
            &format!("no VISITOR_REMOVED for {id}: tab t2 is still open"),
            Duration::from_millis(200),
            |m| is_removal(m, &id),
        )
        .await?;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if tab_ids(&listed) != ["t2"] {
        return Err(step_failure(
            format!("GET /api/visitors after {id} left tab t1"),
            "the visitor listed with only tab t2",
            describe_json(&listed),
        ));
    }
    leave_ok(&http, &t.public_key, &id, Some("t2")).await?;
    dashboard.note(format!("POST /track/leave {id} tab t2, its last"));
    removed_as_left(&mut dashboard, &id).await?;
    not_listed(&http, &t.secret_key, &id, "its last tab left").await?;
    dashboard.close().await;
    Ok(())
}

/// `navigator.sendBeacon` cannot set headers: the key in the query or in the body, the JSON
/// sent as `text/plain`, still removes the visitor with reason `left`.
pub(super) async fn leave_beacon_works_without_headers(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let by_query = unique_id("beaconq");
    let by_body = unique_id("beaconb");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    for id in [&by_query, &by_body] {
        track_ok(
            &http,
            &t.public_key,
            "pageview",
            id,
            "https://x.test/",
            json!({"tabId": "only"}),
        )
        .await?;
    }
    let ok = json!({"success": true});
    http.send(
        Req::post(format!(
            "/track/leave?apiKey={}",
            percent_encode(&t.public_key)
        ))
        .raw(
            "text/plain;charset=UTF-8",
            json!({"visitorId": by_query, "tabId": "only"}).to_string(),
        ),
    )
    .await?
    .expect_json(200, &ok)?;
    dashboard.note(format!(
        "POST /track/leave?apiKey=… text/plain for {by_query}"
    ));
    removed_as_left(&mut dashboard, &by_query).await?;
    http.send(Req::post("/track/leave").raw(
        "text/plain;charset=UTF-8",
        json!({"apiKey": t.public_key, "visitorId": by_body, "tabId": "only"}).to_string(),
    ))
    .await?
    .expect_json(200, &ok)?;
    dashboard.note(format!(
        "POST /track/leave text/plain with apiKey in the body for {by_body}"
    ));
    removed_as_left(&mut dashboard, &by_body).await?;
    not_listed(&http, &t.secret_key, &by_query, "it left").await?;
    not_listed(&http, &t.secret_key, &by_body, "it left").await?;
    dashboard.close().await;
    Ok(())
}

/// A leave without `tabId` takes the whole visitor (all tabs); the `leave` event of
/// `/track/visitor` is the same as `/track/leave`; an unknown visitor's leave is still
/// `200 {"success":true}`.
pub(super) async fn leave_variants(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let whole = unique_id("leavewhole");
    let by_event = unique_id("leaveevent");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    for tab in ["a", "b", "c"] {
        track_ok(
            &http,
            &t.public_key,
            "pageview",
            &whole,
            "https://x.test/",
            json!({"tabId": tab}),
        )
        .await?;
    }
    leave_ok(&http, &t.public_key, &whole, None).await?;
    dashboard.note(format!(
        "POST /track/leave {whole} without tabId (three tabs open)"
    ));
    removed_as_left(&mut dashboard, &whole).await?;

    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &by_event,
        "https://x.test/",
        json!({"tabId": "a"}),
    )
    .await?;
    // The contract says the `leave` event "is the same as `POST /track/leave`" but does not say
    // which of the two success bodies it answers with: either is accepted.
    let answer = super::track(
        &http,
        &t.public_key,
        &crate::wire::track_body("leave", &by_event, "https://x.test/", json!({"tabId": "a"})),
    )
    .await?;
    let body = answer.expect_ok_json(200)?;
    if body != json!({"success": true, "sessionId": by_event}) && body != json!({"success": true}) {
        return Err(answer.fail(format!(
            "HTTP 200 {{\"success\":true,\"sessionId\":\"{by_event}\"}} (or {{\"success\":true}})"
        )));
    }
    dashboard.note(format!(
        "POST /track/visitor event `leave` for {by_event} tab a, its only tab"
    ));
    removed_as_left(&mut dashboard, &by_event).await?;

    leave_ok(&http, &t.public_key, &unique_id("never_seen"), Some("x")).await?;
    leave_ok(&http, &t.public_key, &whole, None).await?;
    dashboard.close().await;
    Ok(())
}
