//! Expiry on the server's clock: visible tabs after the visible grace, hidden tabs after the
//! hidden grace, heartbeats keep them alive. These cases wait, side by side.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    EARLY, LATE, PROMPT, Sent, leave_ok, listed_visitor, not_listed, sleep_until, step_failure,
    track_ok,
};
use crate::dashboard::{Dashboard, is_removal, is_update};
use crate::http::{Http, Req};
use crate::wire::{describe_json, tab_ids, unique_id};
use crate::{Failure, Target};

/// Waits for the `inactive` removal of `id` whose last event was `last`, and checks it came
/// neither before `grace − EARLY` after the request was sent nor after `grace + LATE` after its
/// answer.
async fn expires_on_time(
    dashboard: &mut Dashboard,
    id: &str,
    last: Sent,
    grace: Duration,
    which: &str,
) -> Result<(), Failure> {
    let deadline = last.answered + grace + LATE;
    let (removed, at) = dashboard
        .wait_for(
            &format!(
                "VISITOR_REMOVED for {id} with reason `inactive` within {which} {grace:?} + {LATE:?} of its last event"
            ),
            deadline.saturating_duration_since(Instant::now()),
            |m| is_removal(m, id),
        )
        .await?;
    if removed.get("reason") != Some(&json!("inactive")) {
        return Err(dashboard.mismatch("VISITOR_REMOVED with reason `inactive`", &removed));
    }
    let after = at.saturating_duration_since(last.at);
    if after + EARLY < grace {
        return Err(dashboard.mismatch(
            &format!(
                "no removal before the {which} {grace:?} (− {EARLY:?}) since the last event; it came after {after:?}"
            ),
            &removed,
        ));
    }
    Ok(())
}

/// A visitor with no further event is removed (`inactive`) after the visible grace: not before
/// it, and within it plus 1.5 s; then it is not listed and cannot be invited.
pub(super) async fn silent_visitor_expires_after_visible_grace(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("silent");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let last = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    dashboard.note(format!("POST /track/visitor pageview {id}, then silence"));
    expires_on_time(&mut dashboard, &id, last, t.visible_grace, "visible grace").await?;
    not_listed(&http, &t.secret_key, &id, "it expired").await?;
    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .json(&json!({"visitorId": id, "guestUrl": "https://video.test/g/late"})),
    )
    .await?
    .expect_json(404, &json!({"error": "Visitor not found"}))?;
    dashboard.close().await;
    Ok(())
}

/// Heartbeats (every quarter of the visible grace) keep a visitor well past the visible grace;
/// once they stop, it expires on time after the last one.
pub(super) async fn heartbeats_keep_visitor_alive(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("alive");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let first = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    let keep_until = first.answered + t.visible_grace + LATE + Duration::from_millis(500);
    let every = (t.visible_grace / 4).max(Duration::from_millis(100));
    let mut last = first;
    dashboard.note(format!(
        "POST /track/visitor pageview {id}, then a heartbeat every {every:?}"
    ));
    while Instant::now() < keep_until {
        dashboard
            .expect_none(
                &format!("no VISITOR_REMOVED for {id} while it sends heartbeats"),
                every,
                |m| is_removal(m, &id),
            )
            .await?;
        last = track_ok(
            &http,
            &t.public_key,
            "heartbeat",
            &id,
            "https://x.test/",
            json!({}),
        )
        .await?;
    }
    listed_visitor(&http, &t.secret_key, &id).await?;
    dashboard.note(format!("last heartbeat of {id}, then silence"));
    expires_on_time(&mut dashboard, &id, last, t.visible_grace, "visible grace").await?;
    not_listed(&http, &t.secret_key, &id, "it expired").await?;
    dashboard.close().await;
    Ok(())
}

/// Fails unless the hidden grace is long enough to be told apart from the visible grace.
fn graces_distinguishable(t: &Target) -> Result<(), Failure> {
    let needed = t.visible_grace + LATE + Duration::from_millis(500);
    if t.hidden_grace >= needed {
        Ok(())
    } else {
        Err(step_failure(
            "checking the Target's timings",
            format!(
                "hidden_grace ≥ visible_grace + {:?} ({needed:?}) so the two can be told apart",
                LATE + Duration::from_millis(500)
            ),
            format!(
                "visible_grace {:?}, hidden_grace {:?}",
                t.visible_grace, t.hidden_grace
            ),
        ))
    }
}

/// A tab reported hidden (`visibility` event) is `idle`, outlives the visible grace, and is
/// removed (`inactive`) after the hidden grace.
pub(super) async fn hidden_tab_outlives_visible_grace(t: &Target) -> Result<(), Failure> {
    graces_distinguishable(t)?;
    let http = Http::new(t)?;
    let id = unique_id("hidden");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    let hidden = track_ok(
        &http,
        &t.public_key,
        "visibility",
        &id,
        "https://x.test/",
        json!({"visibility": "hidden"}),
    )
    .await?;
    dashboard.note(format!(
        "POST /track/visitor event `visibility` hidden for {id}"
    ));
    let (update, _) = dashboard
        .wait_for(
            &format!("VISITOR_UPDATE visibility for {id}"),
            PROMPT,
            |m| is_update(m, &id, "visibility"),
        )
        .await?;
    let visitor = update.get("visitor").cloned().unwrap_or(Value::Null);
    let tab_hidden = visitor
        .get("tabs")
        .and_then(|tabs| tabs.get(0))
        .and_then(|tab| tab.get("visibility"))
        == Some(&json!("hidden"));
    if visitor.get("status") != Some(&json!("idle")) || !tab_hidden {
        return Err(dashboard.mismatch(
            "VISITOR_UPDATE visibility whose visitor is `idle` with its tab `hidden`",
            &update,
        ));
    }
    let past_visible = hidden.answered + t.visible_grace + LATE;
    dashboard.note(format!("hidden tab of {id}, then silence"));
    dashboard
        .expect_none(
            &format!("no VISITOR_REMOVED for {id} within the visible grace: its tab is hidden"),
            past_visible.saturating_duration_since(Instant::now()),
            |m| is_removal(m, &id),
        )
        .await?;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    super::check_field(
        "GET /api/visitors after the visible grace, tab hidden",
        &listed,
        "status",
        &json!("idle"),
    )?;
    expires_on_time(&mut dashboard, &id, hidden, t.hidden_grace, "hidden grace").await?;
    not_listed(&http, &t.secret_key, &id, "its hidden tab expired").await?;
    dashboard.close().await;
    Ok(())
}

/// A visitor with a visible and a hidden tab loses the visible tab after the visible grace
/// (still listed, now `idle` with the hidden tab only) and goes after the hidden grace.
pub(super) async fn tabs_expire_one_by_one(t: &Target) -> Result<(), Failure> {
    graces_distinguishable(t)?;
    let http = Http::new(t)?;
    let id = unique_id("tabexpiry");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let visible = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/v",
        json!({"tabId": "shown"}),
    )
    .await?;
    let hidden = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/h",
        json!({"tabId": "behind", "visibility": "hidden"}),
    )
    .await?;
    sleep_until(visible.answered + t.visible_grace + LATE).await;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if tab_ids(&listed) != ["behind"] || listed.get("status") != Some(&json!("idle")) {
        return Err(step_failure(
            format!(
                "GET /api/visitors {:?} after {id}'s visible tab `shown` went silent (hidden tab `behind` too)",
                t.visible_grace + LATE
            ),
            "the visitor listed, `idle`, with only the tab `behind`",
            describe_json(&listed),
        ));
    }
    dashboard.note(format!("{id}: visible tab expired, hidden tab silent"));
    expires_on_time(&mut dashboard, &id, hidden, t.hidden_grace, "hidden grace").await?;
    dashboard.close().await;
    Ok(())
}

/// Without a dashboard (a host may expire lazily on read): `/api/visitors` lists the visitor
/// just before the visible grace and never once it is over.
pub(super) async fn api_visitors_never_lists_expired(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("lazy");
    let sent = track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    let still_alive = sent.at
        + t.visible_grace
            .saturating_sub(EARLY + Duration::from_millis(200));
    sleep_until(still_alive).await;
    listed_visitor(&http, &t.secret_key, &id).await?;
    sleep_until(sent.answered + t.visible_grace + LATE).await;
    not_listed(
        &http,
        &t.secret_key,
        &id,
        "its visible grace is over (+ 1.5 s)",
    )
    .await?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}
