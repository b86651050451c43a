//! Sites are tenants: nothing of one site is visible to, or changeable by, another's keys.

use std::time::Duration;

use serde_json::json;

use super::{PROMPT, leave_ok, listed_visitor, not_listed, track_ok};
use crate::dashboard::{Dashboard, is_update, mentions};
use crate::http::{Http, Req};
use crate::wire::unique_id;
use crate::{Failure, Target};

/// A visitor of the main site never reaches the other site: not in its `/api/visitors`, not in
/// its dashboard's snapshot or broadcasts; the other site's secret key cannot invite it (404).
/// (Only reads the other site, so the sequence case there stays exact.)
pub(super) async fn sites_are_isolated(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("isolated");
    let mut mine = Dashboard::connect(t, &t.secret_key).await?;
    let mut theirs = Dashboard::connect(t, &t.other_site_secret_key).await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://a.test/",
        json!({}),
    )
    .await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://a.test/2",
        json!({}),
    )
    .await?;
    mine.note(format!("POST /track/visitor (main site) for {id}"));
    mine.wait_for(
        &format!("VISITOR_UPDATE new_visitor for {id}"),
        PROMPT,
        |m| is_update(m, &id, "new_visitor"),
    )
    .await?;
    listed_visitor(&http, &t.secret_key, &id).await?;
    not_listed(
        &http,
        &t.other_site_secret_key,
        &id,
        "it was tracked with the main site's key",
    )
    .await?;
    not_listed(
        &http,
        &t.legacy_key,
        &id,
        "it was tracked with the main site's key",
    )
    .await?;
    theirs.note(format!(
        "POST /track/visitor (main site) for {id}, watched from the other site's dashboard"
    ));
    let rule = format!("nothing about {id}, a visitor of another site");
    theirs
        .expect_none(&rule, Duration::from_millis(500), |m| mentions(m, &id))
        .await?;
    let snapshot = theirs.get_visitors().await?;
    if mentions(&snapshot, &id) {
        return Err(theirs.mismatch(&rule, &snapshot));
    }
    if mentions(&theirs.initial, &id) {
        return Err(theirs.mismatch(&rule, &theirs.initial.clone()));
    }
    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.other_site_secret_key)
            .json(&json!({"visitorId": id, "guestUrl": "https://video.test/g/x"})),
    )
    .await?
    .expect_json(404, &json!({"error": "Visitor not found"}))?;
    mine.expect_none(
        &format!("no VIDEO_INVITE_SENT for {id}: the invite came from another site"),
        Duration::from_millis(300),
        |m| crate::dashboard::is_type(m, "VIDEO_INVITE_SENT") && mentions(m, &id),
    )
    .await?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    theirs
        .expect_none(&rule, Duration::from_millis(300), |m| mentions(m, &id))
        .await?;
    mine.close().await;
    theirs.close().await;
    Ok(())
}

/// One visitor id tracked on the legacy site and on the main site is two visitors: each site
/// lists its own, and leaving one site does not touch the other.
pub(super) async fn same_visitor_id_on_two_sites_is_two_visitors(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("twosites");
    // Hidden, for the hidden grace: it must outlast the legacy site's leave linger.
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://main.test/",
        json!({"visibility": "hidden"}),
    )
    .await?;
    track_ok(
        &http,
        &t.legacy_key,
        "pageview",
        &id,
        "https://legacy.test/",
        json!({}),
    )
    .await?;
    let main = listed_visitor(&http, &t.secret_key, &id).await?;
    let legacy = listed_visitor(&http, &t.legacy_key, &id).await?;
    super::check_field(
        "GET /api/visitors (main site)",
        &main,
        "url",
        &json!("https://main.test/"),
    )?;
    super::check_field(
        "GET /api/visitors (legacy site)",
        &legacy,
        "url",
        &json!("https://legacy.test/"),
    )?;
    let left = leave_ok(&http, &t.legacy_key, &id, None).await?;
    super::gone_after_leave(&http, t, &t.legacy_key, &id, left).await?;
    not_listed(&http, &t.legacy_key, &id, "it left the legacy site").await?;
    listed_visitor(&http, &t.secret_key, &id).await?;
    let left = leave_ok(&http, &t.public_key, &id, None).await?;
    super::gone_after_leave(&http, t, &t.secret_key, &id, left).await?;
    Ok(())
}
