//! `GET /api/visitors` and the dashboard WebSocket.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    PROMPT, check_field, check_visitor_shape, leave_ok, listed_visitor, step_failure, track_ok,
};
use crate::dashboard::{Dashboard, is_removal, is_type, is_update, mentions};
use crate::http::{Http, Req};
use crate::wire::{find_visitor, now_ms, tab_ids, unique_id};
use crate::{Failure, Target};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// `GET /api/visitors` with the secret key lists a tracked visitor with all of Part A's fields
/// and the additions; a crawler is listed and flagged `isBot`.
pub(super) async fn api_visitors_lists_full_visitor(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("listed");
    let bot = unique_id("bot");
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://shop.test/pricing",
        json!({"userAgent": CHROME, "tabId": "tab_1", "referrer": "https://search.test/"}),
    )
    .await?;
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &bot,
        "https://shop.test/",
        json!({"userAgent": GOOGLEBOT}),
    )
    .await?;
    let visitor = listed_visitor(&http, &t.secret_key, &id).await?;
    let from = format!("GET /api/visitors (secret key) after tracking {id}");
    check_visitor_shape(&from, &visitor)?;
    check_field(&from, &visitor, "visitorId", &json!(id))?;
    check_field(&from, &visitor, "website", &json!("conformance.test"))?;
    check_field(&from, &visitor, "url", &json!("https://shop.test/pricing"))?;
    check_field(&from, &visitor, "status", &json!("active"))?;
    check_field(&from, &visitor, "isBot", &json!(false))?;
    check_field(&from, &visitor, "userAgent", &json!(CHROME))?;
    check_field(&from, &visitor, "referrer", &json!("https://search.test/"))?;
    let tabs = visitor.get("tabs").cloned().unwrap_or(Value::Null);
    let tab = tabs.get(0).cloned().unwrap_or(Value::Null);
    if tabs.as_array().map(Vec::len) != Some(1)
        || tab.get("tabId") != Some(&json!("tab_1"))
        || tab.get("url") != Some(&json!("https://shop.test/pricing"))
        || tab.get("visibility") != Some(&json!("visible"))
    {
        return Err(step_failure(
            &from,
            "`tabs` = [{\"tabId\":\"tab_1\",\"url\":\"https://shop.test/pricing\",\"visibility\":\"visible\",\"lastSeen\":…}]",
            format!("`tabs` = {tabs}"),
        ));
    }
    let crawler = listed_visitor(&http, &t.secret_key, &bot).await?;
    let from = format!("GET /api/visitors (secret key) after tracking {bot} as Googlebot");
    check_visitor_shape(&from, &crawler)?;
    check_field(&from, &crawler, "isBot", &json!(true))?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    leave_ok(&http, &t.public_key, &bot, None).await?;
    Ok(())
}

/// On connect the first message is `INITIAL_VISITORS` with an integer `seq`, listing a visitor
/// tracked just before, in the `<Visitor>` shape.
pub(super) async fn dashboard_starts_with_initial_visitors(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("initial");
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    let dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let Some(visitor) = dashboard
        .initial
        .get("visitors")
        .and_then(|list| find_visitor(list, &id))
    else {
        return Err(dashboard.mismatch(
            &format!("INITIAL_VISITORS listing {id}, tracked just before connecting"),
            &dashboard.initial,
        ));
    };
    check_visitor_shape("INITIAL_VISITORS on connect", visitor)?;
    dashboard.close().await;
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}

/// A new visitor is broadcast as `VISITOR_UPDATE` `new_visitor`, a page view of another URL as
/// `pageview` with the new `url`; both carry a larger `seq` than the snapshot.
pub(super) async fn dashboard_sees_new_visitor_and_pageview(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("watched");
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let initial_seq = dashboard.seq();
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/a",
        json!({}),
    )
    .await?;
    dashboard.note(format!(
        "POST /track/visitor pageview {id} on https://x.test/a"
    ));
    let (first, _) = dashboard
        .wait_for(
            &format!("VISITOR_UPDATE new_visitor for {id}"),
            PROMPT,
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;
    let visitor = first.get("visitor").cloned().unwrap_or(Value::Null);
    check_visitor_shape("VISITOR_UPDATE new_visitor", &visitor)?;
    check_field(
        "VISITOR_UPDATE new_visitor",
        &visitor,
        "url",
        &json!("https://x.test/a"),
    )?;
    let first_seq = first.get("seq").and_then(Value::as_u64).unwrap_or(0);
    if first_seq <= initial_seq {
        return Err(dashboard.mismatch(
            &format!("a broadcast seq greater than the snapshot's {initial_seq}"),
            &first,
        ));
    }
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/b",
        json!({}),
    )
    .await?;
    dashboard.note(format!(
        "POST /track/visitor pageview {id} on https://x.test/b"
    ));
    let (second, _) = dashboard
        .wait_for(&format!("VISITOR_UPDATE pageview for {id}"), PROMPT, |m| {
            is_update(m, &id, "pageview")
        })
        .await?;
    let visitor = second.get("visitor").cloned().unwrap_or(Value::Null);
    check_visitor_shape("VISITOR_UPDATE pageview", &visitor)?;
    check_field(
        "VISITOR_UPDATE pageview",
        &visitor,
        "url",
        &json!("https://x.test/b"),
    )?;
    check_field("VISITOR_UPDATE pageview", &visitor, "pageViews", &json!(2))?;
    if second.get("seq").and_then(Value::as_u64).unwrap_or(0) <= first_seq {
        return Err(dashboard.mismatch(
            &format!("a broadcast seq greater than the previous broadcast's {first_seq}"),
            &second,
        ));
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    dashboard.close().await;
    Ok(())
}

/// On the other site, where only this case writes, one dashboard sees every broadcast with
/// exactly the previous `seq` + 1 and every reply with the current `seq`: new visitor, a
/// heartbeat that changes nothing (not broadcast), page view, second tab, `PING`,
/// `GET_VISITORS`, closing a tab, an invite, leaving.
pub(super) async fn dashboard_sequence_is_exact(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let key = &t.other_site_public_key;
    let id = unique_id("sequence");
    let mut dash = Dashboard::connect_exact(t, &t.other_site_secret_key).await?;
    let s0 = dash.seq();

    track_ok(
        &http,
        key,
        "pageview",
        &id,
        "https://other.test/a",
        json!({"tabId": "t1"}),
    )
    .await?;
    dash.note(format!(
        "POST /track/visitor (other site) pageview {id} tab t1"
    ));
    let (m, _) = dash
        .wait_for("VISITOR_UPDATE new_visitor", PROMPT, |m| {
            is_update(m, &id, "new_visitor")
        })
        .await?;
    if m.get("seq").and_then(Value::as_u64) != Some(s0 + 1) {
        return Err(dash.mismatch(
            &format!(
                "the first broadcast after INITIAL_VISITORS (seq {s0}) to carry seq {}",
                s0 + 1
            ),
            &m,
        ));
    }

    track_ok(
        &http,
        key,
        "heartbeat",
        &id,
        "https://other.test/a",
        json!({"tabId": "t1"}),
    )
    .await?;
    dash.note(format!(
        "POST /track/visitor (other site) heartbeat {id} tab t1, nothing changed, then PING"
    ));
    let before = dash.seq();
    let pong = dash.ping().await?;
    if pong.get("seq").and_then(Value::as_u64) != Some(before) {
        return Err(dash.mismatch(
            &format!("PONG with seq {before}: a heartbeat that changes nothing is not broadcast"),
            &pong,
        ));
    }
    dash.expect_none(
        "no broadcast for a heartbeat that changes nothing a dashboard shows",
        Duration::from_millis(300),
        |m| mentions(m, &id),
    )
    .await?;

    track_ok(
        &http,
        key,
        "pageview",
        &id,
        "https://other.test/b",
        json!({"tabId": "t1"}),
    )
    .await?;
    dash.note(format!(
        "POST /track/visitor (other site) pageview {id} tab t1 on /b"
    ));
    dash.wait_for("VISITOR_UPDATE pageview", PROMPT, |m| {
        is_update(m, &id, "pageview")
    })
    .await?;

    track_ok(
        &http,
        key,
        "pageview",
        &id,
        "https://other.test/c",
        json!({"tabId": "t2"}),
    )
    .await?;
    dash.note(format!(
        "POST /track/visitor (other site) pageview {id} tab t2"
    ));
    dash.wait_for("VISITOR_UPDATE tab_opened", PROMPT, |m| {
        is_update(m, &id, "tab_opened")
    })
    .await?;

    let snapshot = dash.get_visitors().await?;
    let listed = snapshot
        .get("visitors")
        .and_then(|l| find_visitor(l, &id))
        .map(tab_ids);
    if listed != Some(vec!["t1".to_owned(), "t2".to_owned()]) {
        return Err(dash.mismatch(
            &format!("INITIAL_VISITORS listing {id} with tabs t1 and t2"),
            &snapshot,
        ));
    }

    // Tab t1 reports again first (a heartbeat that changes nothing, so nothing is broadcast):
    // with the suite's short graces it must not expire while t2's leave linger runs.
    let t1_reports = || {
        track_ok(
            &http,
            key,
            "heartbeat",
            &id,
            "https://other.test/b",
            json!({"tabId": "t1"}),
        )
    };
    t1_reports().await?;
    leave_ok(&http, key, &id, Some("t2")).await?;
    dash.note(format!("POST /track/leave (other site) {id} tab t2"));
    dash.wait_for("VISITOR_UPDATE tab_closed", t.leave_linger + PROMPT, |m| {
        is_update(m, &id, "tab_closed")
    })
    .await?;
    // t1 reports once more (nothing broadcast), as a live tab does: the steps below are three
    // more requests and two broadcasts before t1's own beacon, and on a slow host (Lambda
    // under emulation on a loaded machine: tracking requests of 0.3-1 s) those plus the linger
    // just waited for can outlast t1's short grace counted from its report before t2 left.
    t1_reports().await?;

    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.other_site_secret_key)
            .json(&json!({"visitorId": id, "guestUrl": "https://video.test/g/seq"})),
    )
    .await?
    .expect_json(200, &json!({"success": true}))?;
    dash.note(format!("POST /api/send-video-invite (other site) for {id}"));
    dash.wait_for("VIDEO_INVITE_SENT", PROMPT, |m| {
        is_type(m, "VIDEO_INVITE_SENT") && mentions(m, &id)
    })
    .await?;

    leave_ok(&http, key, &id, Some("t1")).await?;
    dash.note(format!(
        "POST /track/leave (other site) {id} tab t1, its last"
    ));
    let (removed, _) = dash
        .wait_for("VISITOR_REMOVED", t.leave_linger + PROMPT, |m| {
            is_removal(m, &id)
        })
        .await?;
    if removed.get("reason") != Some(&json!("left")) {
        return Err(dash.mismatch("VISITOR_REMOVED with reason `left`", &removed));
    }
    // A server that tracks invites ends the open one with a `VIDEO_INVITE_UPDATE`
    // (`visitor_left`) right after the removal; the exact-seq check of every message read
    // while waiting for the PONG covers it, so the PONG must carry the seq of the message
    // before it.
    let pong = dash.ping().await?;
    let last = dash.seq();
    if pong.get("seq").and_then(Value::as_u64) != Some(last) {
        return Err(dash.mismatch(&format!("PONG with the current seq {last}"), &pong));
    }
    if last < s0 + 6 {
        return Err(step_failure(
            format!("the sequence case on the other site for {id}"),
            format!("at least 6 broadcasts after seq {s0}"),
            format!("last seq {last}"),
        ));
    }
    dash.close().await;
    Ok(())
}

/// `PING` → `PONG` with an epoch-millisecond `timestamp` close to now.
pub(super) async fn dashboard_ping_gets_pong(t: &Target) -> Result<(), Failure> {
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    for _ in 0..2 {
        let before = now_ms();
        let pong = dashboard.ping().await?;
        let after = now_ms();
        let ok = pong
            .get("timestamp")
            .and_then(Value::as_i64)
            .is_some_and(|ts| ts >= before - 5_000 && ts <= after + 5_000);
        if !ok {
            return Err(dashboard.mismatch(
                &format!(
                    "PONG with `timestamp` in epoch milliseconds near now ({before}..{after} ± 5 s)"
                ),
                &pong,
            ));
        }
    }
    dashboard.close().await;
    Ok(())
}

/// `GET_VISITORS` → `INITIAL_VISITORS` with the current visitors, including one tracked after
/// connecting.
pub(super) async fn dashboard_get_visitors_gets_snapshot(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("snapshot");
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
    dashboard.note(format!("POST /track/visitor {id}, then GET_VISITORS"));
    let snapshot = dashboard.get_visitors().await?;
    let Some(visitor) = snapshot.get("visitors").and_then(|l| find_visitor(l, &id)) else {
        return Err(dashboard.mismatch(&format!("INITIAL_VISITORS listing {id}"), &snapshot));
    };
    check_visitor_shape("INITIAL_VISITORS after GET_VISITORS", visitor)?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    dashboard.close().await;
    Ok(())
}

/// An unknown message type, or text that is not JSON, gets an `ERROR` with a string `error`,
/// and the connection stays open.
pub(super) async fn dashboard_unknown_message_gets_error(t: &Target) -> Result<(), Failure> {
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    for text in [
        r#"{"type":"FOO"}"#.to_owned(),
        "not json at all".to_owned(),
        r#"{"no_type":true}"#.to_owned(),
    ] {
        dashboard.send_text(text).await?;
        let (error, _) = dashboard
            .wait_for("an ERROR message", PROMPT, |m| is_type(m, "ERROR"))
            .await?;
        if error
            .get("error")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(dashboard.mismatch("ERROR with a non-empty string `error`", &error));
        }
    }
    dashboard.ping().await?;
    dashboard.close().await;
    Ok(())
}

/// The upgrade is refused (HTTP 401/403, not 101) without a key, with an unknown key and with a
/// public key; the legacy key and the secret key are accepted.
pub(super) async fn dashboard_refuses_wrong_keys(t: &Target) -> Result<(), Failure> {
    let cases: [(Option<String>, u16); 3] = [
        (None, 401),
        (Some(unique_id("bogus")), 403),
        (Some(t.other_site_public_key.clone()), 403),
    ];
    for (key, status) in cases {
        let (got, body) = crate::dashboard::refused(t, key.as_deref()).await?;
        if got != status {
            return Err(step_failure(
                format!("WebSocket upgrade GET /ws/dashboard with key {key:?}"),
                format!("the upgrade refused with HTTP {status}"),
                format!(
                    "HTTP {got}, body {}",
                    crate::wire::describe_bytes(&body, 300)
                ),
            ));
        }
    }
    for key in [&t.secret_key, &t.legacy_key, &t.other_site_secret_key] {
        Dashboard::connect(t, key).await?.close().await;
    }
    Ok(())
}
