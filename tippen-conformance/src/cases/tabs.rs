//! Tabs: several tabs are one visitor; leaving closes a tab when the leave linger ends (unless
//! the tab, or another tab of the visitor, reports again meanwhile), the last tab takes the
//! visitor.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{EARLY, LATE, PROMPT, leave_ok, listed_visitor, not_listed, step_failure, track_ok};
use crate::dashboard::{Dashboard, is_removal, is_update, percent_encode};
use crate::http::{Http, Req};
use crate::wire::{describe_json, tab_ids, unique_id};
use crate::{Failure, Target};

/// How soon after the leave linger a `left` removal must reach a dashboard.
const LEFT_PROMPTLY: Duration = LATE;

/// Waits for `VISITOR_REMOVED` of `id` with reason `left`, for a beacon sent at `left` by
/// tabs that last reported at `seen`: it comes when the leave linger ends (or the tabs' grace,
/// if that ends first), not before (less [`EARLY`]), and within [`LEFT_PROMPTLY`] after.
async fn removed_as_left(
    dashboard: &mut Dashboard,
    t: &Target,
    id: &str,
    left: Instant,
    seen: Instant,
) -> Result<(), Failure> {
    let due = (left + t.leave_linger).min(seen + t.visible_grace);
    // Any order: the removals of two visitors that left together come in either order.
    let (removed, at) = dashboard
        .wait_for_any_order(
            &format!(
                "VISITOR_REMOVED for {id} with reason `left` when the leave linger ({} ms) ends",
                t.leave_linger.as_millis()
            ),
            (due.max(left) + LEFT_PROMPTLY).saturating_duration_since(Instant::now()),
            |m| is_removal(m, id),
        )
        .await?;
    if removed.get("reason") != Some(&json!("left")) {
        return Err(dashboard.mismatch("VISITOR_REMOVED with reason `left`", &removed));
    }
    if at + EARLY < due {
        return Err(dashboard.mismatch(
            &format!(
                "VISITOR_REMOVED no sooner than the leave linger ({} ms) after the beacon, not {} ms \
                 after",
                t.leave_linger.as_millis(),
                at.duration_since(left).as_millis()
            ),
            &removed,
        ));
    }
    Ok(())
}

/// Two tab ids of one visitor are one row with two `tabs`; the second tab is broadcast as
/// `tab_opened`.
pub(super) async fn two_tabs_are_one_visitor(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("twotabs");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let seen = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/one",
        json!({"tabId": "tab_a"}),
    )
    .await?
    .at;
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
    let left = leave_ok(&http, &t.public_key, &id, None).await?;
    removed_as_left(&mut dashboard, t, &id, left.at, seen).await?;
    dashboard.close().await;
    Ok(())
}

/// Leaving one of two tabs keeps the visitor (`VISITOR_UPDATE` `tab_closed` when the leave
/// linger ends, one tab left); leaving the last removes it with reason `left` when its linger
/// ends.
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
            t.leave_linger + PROMPT,
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
    // t2 reports first: with the suite's short graces it must not expire during its linger.
    let seen = track_ok(
        &http,
        &t.public_key,
        "heartbeat",
        &id,
        "https://x.test/2",
        json!({"tabId": "t2"}),
    )
    .await?
    .at;
    let left = leave_ok(&http, &t.public_key, &id, Some("t2")).await?;
    dashboard.note(format!("POST /track/leave {id} tab t2, its last"));
    removed_as_left(&mut dashboard, t, &id, left.at, seen).await?;
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
    let mut seen = Vec::new();
    for id in [&by_query, &by_body] {
        let sent = track_ok(
            &http,
            &t.public_key,
            "pageview",
            id,
            "https://x.test/",
            json!({"tabId": "only"}),
        )
        .await?;
        seen.push(sent.at);
    }
    let ok = json!({"success": true});
    let left = Instant::now();
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
    let left_by_body = Instant::now();
    http.send(Req::post("/track/leave").raw(
        "text/plain;charset=UTF-8",
        json!({"apiKey": t.public_key, "visitorId": by_body, "tabId": "only"}).to_string(),
    ))
    .await?
    .expect_json(200, &ok)?;
    dashboard.note(format!(
        "POST /track/leave?apiKey=… text/plain for {by_query}, then POST /track/leave \
         text/plain with apiKey in the body for {by_body}"
    ));
    removed_as_left(&mut dashboard, t, &by_query, left, seen[0]).await?;
    removed_as_left(&mut dashboard, t, &by_body, left_by_body, seen[1]).await?;
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
    let seen = Instant::now();
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
    let left = leave_ok(&http, &t.public_key, &whole, None).await?;
    dashboard.note(format!(
        "POST /track/leave {whole} without tabId (three tabs open)"
    ));
    removed_as_left(&mut dashboard, t, &whole, left.at, seen).await?;

    let seen = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &by_event,
        "https://x.test/",
        json!({"tabId": "a"}),
    )
    .await?
    .at;
    // The contract says the `leave` event "is the same as `POST /track/leave`" but does not say
    // which of the two success bodies it answers with: either is accepted.
    let left = Instant::now();
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
    removed_as_left(&mut dashboard, t, &by_event, left, seen).await?;

    leave_ok(&http, &t.public_key, &unique_id("never_seen"), Some("x")).await?;
    leave_ok(&http, &t.public_key, &whole, None).await?;
    dashboard.close().await;
    Ok(())
}

/// Until `until`, the visitor's tab keeps heartbeating (`extra` names it; the suite's graces
/// are short) while the dashboard must see nothing matching `unwanted`.
#[allow(clippy::too_many_arguments)]
async fn keep_alive_expecting_none(
    t: &Target,
    http: &Http,
    dashboard: &mut Dashboard,
    id: &str,
    until: Instant,
    extra: Value,
    what: &str,
    unwanted: impl Fn(&Value) -> bool + Copy,
) -> Result<(), Failure> {
    while Instant::now() < until {
        dashboard
            .expect_none(
                what,
                (t.visible_grace / 4).min(until.saturating_duration_since(Instant::now())),
                unwanted,
            )
            .await?;
        track_ok(
            http,
            &t.public_key,
            "heartbeat",
            id,
            "https://x.test/a",
            extra.clone(),
        )
        .await?;
    }
    Ok(())
}

/// A reload, a back/forward navigation or a page restored from the back/forward cache sends
/// the exit beacon, then the next page's page view from the same tab id: within the leave
/// linger that keeps the visitor (no `VISITOR_REMOVED`, no second `new_visitor`) and its
/// counts (`pageViews` goes on). A beacon naming a page (`pageId`) the tab has already left
/// — the next page's page view overtook it — changes nothing. Another tab of the visitor
/// reporting within the linger keeps the visitor too; the tab that left is closed
/// (`tab_closed`) when its linger ends.
pub(super) async fn a_return_within_the_leave_linger_keeps_the_visitor(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("reload");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let page = |tab: &'static str| json!({ "tabId": tab });
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/a",
        page("r1"),
    )
    .await?;
    dashboard.note(format!("POST /track/visitor pageview {id} tab r1"));
    dashboard
        .wait_for(
            &format!("VISITOR_UPDATE new_visitor for {id}"),
            PROMPT,
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;

    // A reload: the beacon, then the same tab's page view.
    leave_ok(&http, &t.public_key, &id, Some("r1")).await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/a",
        page("r1"),
    )
    .await?;
    dashboard.note(format!(
        "POST /track/leave {id} tab r1, then at once POST /track/visitor pageview tab r1 (a reload)"
    ));
    let (reloaded, _) = dashboard
        .wait_for(
            &format!("VISITOR_UPDATE pageview for {id} (the reloaded page)"),
            PROMPT,
            |m| is_update(m, &id, "pageview") || is_removal(m, &id),
        )
        .await?;
    if is_removal(&reloaded, &id) {
        return Err(dashboard.mismatch(
            "no VISITOR_REMOVED: the tab reported again within the leave linger",
            &reloaded,
        ));
    }
    if reloaded["visitor"]["pageViews"] != json!(2) {
        return Err(dashboard.mismatch(
            "VISITOR_UPDATE pageview with pageViews 2 (the visit goes on)",
            &reloaded,
        ));
    }
    // The reloaded page heartbeats on (the suite's graces are short) while nothing may remove
    // the visitor, past the end of the linger.
    keep_alive_expecting_none(
        t,
        &http,
        &mut dashboard,
        &id,
        Instant::now() + t.leave_linger + LATE,
        page("r1"),
        &format!("no VISITOR_REMOVED and no new visit for {id} after the reload"),
        |m| is_removal(m, &id) || is_update(m, &id, "new_visitor"),
    )
    .await?;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if tab_ids(&listed) != ["r1"] || listed["pageViews"] != json!(2) {
        return Err(step_failure(
            format!(
                "GET /api/visitors {} ms after {id} reloaded tab r1",
                (t.leave_linger + LATE).as_millis()
            ),
            "the visitor listed with tab r1 and pageViews 2",
            describe_json(&listed),
        ));
    }

    // A reload whose beacon reaches the server after the next page's page view (browsers
    // send the beacon asynchronously): the beacon names the page it left, which is no longer
    // the tab's page, so it changes nothing.
    let pages = |page: &str| json!({ "tabId": "r1", "pageId": page });
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/a",
        pages("p1"),
    )
    .await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/a",
        pages("p2"),
    )
    .await?;
    let stale = Instant::now();
    http.send(
        Req::post("/track/leave")
            .key(&t.public_key)
            .json(&json!({"visitorId": id, "tabId": "r1", "pageId": "p1"})),
    )
    .await?
    .expect_json(200, &json!({"success": true}))?;
    dashboard.note(format!(
        "POST /track/visitor pageview {id} tab r1 pageId p1, then pageId p2 (a reload), then \
         POST /track/leave for pageId p1 (the old page's beacon, arriving late)"
    ));
    keep_alive_expecting_none(
        t,
        &http,
        &mut dashboard,
        &id,
        stale + t.leave_linger + LATE,
        pages("p2"),
        &format!("no VISITOR_REMOVED for {id}: the beacon was for a page already left"),
        |m| is_removal(m, &id) || is_update(m, &id, "tab_closed"),
    )
    .await?;

    // Another tab of the visitor reports within the linger (a page on another subdomain of
    // the site gets another tab id): the visitor stays, tab r1 closes when its linger ends.
    leave_ok(&http, &t.public_key, &id, Some("r1")).await?;
    let seen = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://shop.x.test/",
        page("r2"),
    )
    .await?
    .at;
    dashboard.note(format!(
        "POST /track/leave {id} tab r1, then at once POST /track/visitor pageview tab r2"
    ));
    let (closed, _) = dashboard
        .wait_for(
            &format!("VISITOR_UPDATE tab_closed for {id} (tab r1) when the linger ends"),
            t.leave_linger + PROMPT,
            |m| is_update(m, &id, "tab_closed") || is_removal(m, &id),
        )
        .await?;
    if is_removal(&closed, &id) || tab_ids(&closed["visitor"]) != ["r2"] {
        return Err(dashboard.mismatch(
            "VISITOR_UPDATE tab_closed whose visitor has only tab r2 (no removal)",
            &closed,
        ));
    }
    if closed["visitor"]["pageViews"] != json!(5) {
        return Err(dashboard.mismatch("the visitor with pageViews 5", &closed));
    }
    let left = leave_ok(&http, &t.public_key, &id, Some("r2")).await?;
    dashboard.note(format!("POST /track/leave {id} tab r2, its last"));
    removed_as_left(&mut dashboard, t, &id, left.at, seen).await?;
    dashboard.close().await;
    Ok(())
}

/// A real close: the visitor stays listed during the leave linger, then dashboards hear
/// `VISITOR_REMOVED` with reason `left` (not before the linger ends, within 1.5 s after), and
/// it is no longer listed; a heartbeat that was in flight when the tab closed does not bring
/// it back.
pub(super) async fn a_leave_removes_the_visitor_when_the_linger_ends(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("close");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let seen = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({"tabId": "c1"}),
    )
    .await?
    .at;
    dashboard
        .wait_for(
            &format!("VISITOR_UPDATE new_visitor for {id}"),
            PROMPT,
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;
    let left = leave_ok(&http, &t.public_key, &id, Some("c1")).await?;
    dashboard.note(format!("POST /track/leave {id} tab c1, its only tab"));
    if t.leave_linger > EARLY + Duration::from_millis(200) {
        listed_visitor(&http, &t.secret_key, &id)
            .await
            .map_err(|f| {
                super::because(
                    f,
                    "a tab that sent its beacon is listed until its linger ends",
                )
            })?;
    }
    removed_as_left(&mut dashboard, t, &id, left.at, seen).await?;
    not_listed(
        &http,
        &t.secret_key,
        &id,
        "its tab left and the linger is over",
    )
    .await?;
    track_ok(
        &http,
        &t.public_key,
        "heartbeat",
        &id,
        "https://x.test/",
        json!({"tabId": "c1"}),
    )
    .await?;
    dashboard.note(format!(
        "POST /track/visitor heartbeat {id} tab c1 after its removal (in flight when it closed)"
    ));
    dashboard
        .expect_none(
            &format!("no new visit for {id}: a late heartbeat of a closed tab changes nothing"),
            Duration::from_millis(300),
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;
    dashboard.close().await;
    Ok(())
}
