//! Abuse of the public key (issue 17): what anyone holding the tracker's key can send is
//! bounded — over-long ids, keys and frames are refused with the documented 4xx or an `ERROR`
//! reply, and change nothing.

use serde_json::json;

use super::{listed_visitor, step_failure, track, track_ok};
use crate::dashboard::{Dashboard, dashboard_ticket_url, dashboard_url, is_type, percent_encode};
use crate::http::{Http, Req};
use crate::socket::{Upgraded, try_upgrade, visitor_url};
use crate::wire::{track_body, unique_id};
use crate::{Failure, OTHER_SITE_DASHBOARD_ORIGIN, RATE_LIMITED_SITE_PER_SECOND, Target};

/// The `/track/leave` flood of the issue: exit beacons (`text/plain`, key in the body or the
/// query) naming 60 KB tab ids are each refused with 400 naming `tabId`, as is the `leave`
/// event of `/track/visitor`; the visitor is untouched (still listed, its tab still there).
pub(super) async fn leave_flood_with_huge_tab_ids_is_refused(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("flood");
    let report = |event| {
        track_ok(
            &http,
            &t.public_key,
            event,
            &id,
            "https://x.test/",
            json!({"tabId": "real", "visibility": "hidden"}),
        )
    };
    report("pageview").await?;
    let huge = "t".repeat(60 * 1024);
    for i in 0..40 {
        if i % 10 == 9 {
            // Keeps the visitor alive however slowly a loaded host takes 60 KB bodies (the
            // one record must hold its one tab at the end).
            report("heartbeat").await?;
        }
        let beacon = if i % 2 == 0 {
            Req::post("/track/leave").raw(
                "text/plain;charset=UTF-8",
                json!({"apiKey": t.public_key, "visitorId": id, "tabId": format!("{huge}{i}")})
                    .to_string(),
            )
        } else {
            Req::post(format!(
                "/track/leave?apiKey={}",
                percent_encode(&t.public_key)
            ))
            .raw(
                "text/plain;charset=UTF-8",
                json!({"visitorId": id, "tabId": format!("{huge}{i}")}).to_string(),
            )
        };
        http.send(beacon)
            .await?
            .expect_error_mentioning(400, "tabId")?;
    }
    let body = json!({"event": "leave", "visitor": {"visitorId": id, "tabId": huge}});
    track(&http, &t.public_key, &body)
        .await?
        .expect_error_mentioning(400, "tabId")?;
    let visitor = listed_visitor(&http, &t.secret_key, &id).await?;
    let tabs = visitor["tabs"].as_array().map_or(0, Vec::len);
    if tabs != 1 {
        return Err(step_failure(
            "GET /api/visitors after 41 refused exit beacons",
            "the visitor with its one tab `real`",
            format!("{tabs} tabs: {visitor}"),
        ));
    }
    Ok(())
}

/// A key longer than any site's (10 KB) is an unknown key (403); an id over the limit is 400
/// on the invite routes too.
pub(super) async fn over_long_keys_and_ids_are_refused(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("longkey");
    let body = track_body("pageview", &id, "https://x.test/", json!({}));
    track(&http, &"k".repeat(10 * 1024), &body)
        .await?
        .expect_json(403, &json!({"error": "invalid API key"}))?;
    let long = "i".repeat(1000);
    http.send(
        Req::post("/track/invite")
            .key(&t.public_key)
            .json(&json!({"visitorId": id, "type": "INVITE_SEEN", "inviteId": long})),
    )
    .await?
    .expect_error_mentioning(400, "inviteId")?;
    http.send(
        Req::post("/api/invites/cancel")
            .key(&t.secret_key)
            .json(&json!({"visitorId": long, "inviteId": "x"})),
    )
    .await?
    .expect_error_mentioning(400, "visitorId")?;
    Ok(())
}

/// A dashboard frame over the frame limit (8 KiB) is answered with an `ERROR` and the socket
/// keeps working (a `PING` after it gets its `PONG`).
pub(super) async fn over_long_dashboard_frames_get_an_error(t: &Target) -> Result<(), Failure> {
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let frame = json!({"type": "PING", "pad": "x".repeat(8 * 1024)}).to_string();
    dashboard.send_text(frame).await?;
    let (error, _) = dashboard
        .wait_for("an ERROR naming the frame limit", super::PROMPT, |m| {
            is_type(m, "ERROR")
        })
        .await?;
    if !error["error"]
        .as_str()
        .is_some_and(|e| e.contains("exceeds the limit"))
    {
        return Err(dashboard.mismatch("ERROR: message of … bytes exceeds the limit of …", &error));
    }
    dashboard.ping().await?;
    dashboard.close().await;
    Ok(())
}

/// An invite's guest URL (opened full-screen in a frame allowed the camera and microphone)
/// must be `https://`: plain `http:`, credentials in the URL and other schemes are 400, and
/// no invite is sent.
pub(super) async fn guest_urls_must_be_https(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("guest");
    super::track_hidden(&http, &t.public_key, &id).await?;
    for bad in [
        "http://video.conformance.test/guest/1",
        "https://video.conformance.test@evil.test/guest/1",
        "javascript:alert(1)",
    ] {
        http.send(
            Req::post("/api/send-video-invite")
                .key(&t.secret_key)
                .json(&json!({"visitorId": id, "guestUrl": bad})),
        )
        .await?
        .expect_error_mentioning(400, "guestUrl")?;
    }
    let visitor = listed_visitor(&http, &t.secret_key, &id).await?;
    if !visitor["invite"].is_null() {
        return Err(step_failure(
            "GET /api/visitors after three refused invites",
            "the visitor without an open invite",
            visitor.to_string(),
        ));
    }
    Ok(())
}

/// Requests sent at once with the rate-limited site's key before a 429 must have come.
const RATE_LIMIT_ATTEMPTS: usize = 30;

/// A key over its site's own rate limit (1 a second, bursts of 4) is answered
/// `429 {"error":…}` with `Retry-After` (whole seconds, 1 to 5); another site's key at the same
/// moment is not limited, and the limited key is answered again once `Retry-After` has passed.
/// Then the same for its WebSocket upgrades (in this case, not a case of its own: two cases
/// spending one key's budget at once would fail each other).
pub(super) async fn a_key_over_its_rate_limit_gets_429_with_retry_after(
    t: &Target,
) -> Result<(), Failure> {
    let Some(key) = t.rate_limited_site_public_key.as_deref() else {
        return Err(step_failure(
            "the rate-limit case",
            "a rate-limited site's public key",
            "none given",
        ));
    };
    let http = Http::new(t)?;
    let id = unique_id("rated");
    let url = "https://x.test/";
    // A quiet key's first request is within its limit.
    track_ok(&http, key, "pageview", &id, url, json!({})).await?;
    let mut refused = None;
    for _ in 0..RATE_LIMIT_ATTEMPTS {
        let answer = track(&http, key, &track_body("heartbeat", &id, url, json!({}))).await?;
        match answer.status.as_u16() {
            200 => {}
            429 => {
                refused = Some(answer);
                break;
            }
            _ => return Err(answer.fail("HTTP 200, or 429 once over the site's rate limit")),
        }
    }
    let Some(answer) = refused else {
        return Err(step_failure(
            format!(
                "{RATE_LIMIT_ATTEMPTS} heartbeats at once with the key of a site limited to \
                 {RATE_LIMITED_SITE_PER_SECOND} a second, bursts of 4"
            ),
            "HTTP 429 once the burst is spent",
            "every one answered 200",
        ));
    };
    answer.expect_error_mentioning(429, "too many requests")?;
    let Some(retry) = answer
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=5).contains(s))
    else {
        return Err(answer.fail("HTTP 429 with Retry-After: whole seconds, 1 to 5"));
    };
    // Normal traffic is not limited: the main site's key, at the same moment.
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &unique_id("unlimited"),
        url,
        json!({}),
    )
    .await?;
    // Retry-After is honest: once it has passed the key is answered again.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    track_ok(&http, key, "heartbeat", &id, url, json!({})).await?;
    upgrades_over_the_limit_are_refused(t, key, &id).await
}

/// The same key's WebSocket upgrades (the visitor channel) count against the same limit: one
/// is refused `429 {"error":…}` once the burst is spent, and an upgrade succeeds again a
/// `Retry-After` later. (`Retry-After` is checked when the refusal carries it: API Gateway's
/// WebSocket `$connect` passes on the status and the body of a refusal.)
async fn upgrades_over_the_limit_are_refused(
    t: &Target,
    key: &str,
    id: &str,
) -> Result<(), Failure> {
    let url = visitor_url(t, Some(key), Some(id));
    let sent = format!("WebSocket upgrade GET {url}");
    let upgrade = || async { try_upgrade(client_request(&url, &sent)?, &sent).await };
    let mut refused = None;
    for _ in 0..RATE_LIMIT_ATTEMPTS {
        match upgrade().await? {
            Upgraded::Opened => {}
            answer @ Upgraded::Refused { status: 429, .. } => {
                refused = Some(answer);
                break;
            }
            answer => {
                return Err(Failure::Mismatch {
                    sent,
                    expected: "HTTP 101, or 429 once over the site's rate limit".into(),
                    got: answer.describe(),
                });
            }
        }
    }
    let Some(answer) = refused else {
        return Err(step_failure(
            format!(
                "{RATE_LIMIT_ATTEMPTS} visitor-channel upgrades in a row with the key of a site \
                 limited to {RATE_LIMITED_SITE_PER_SECOND} a second, bursts of 4"
            ),
            "an upgrade refused with HTTP 429 once the burst is spent",
            "every one upgraded",
        ));
    };
    // The WebSocket client keeps of a refused upgrade's body only the bytes that arrived with
    // its head (tungstenite's handshake `tail`): a server writing the body in a later segment
    // (`wrangler dev` now and then) reaches the client without it. The status is checked
    // there, the body wherever it arrives.
    let bodiless = matches!(&answer, Upgraded::Refused { body, .. } if body.is_empty());
    if !bodiless
        && !answer
            .error()
            .is_some_and(|e| e.to_lowercase().contains("too many requests"))
    {
        return Err(Failure::Mismatch {
            sent,
            expected: "HTTP 429 {\"error\": \"… too many requests …\"}".into(),
            got: answer.describe(),
        });
    }
    let retry_after = match &answer {
        Upgraded::Refused { headers, .. } => headers.get("retry-after"),
        Upgraded::Opened => None,
    };
    // With `Retry-After`, one upgrade once it has passed must succeed; without, one a second
    // until one does, for at most the 5 s a `Retry-After` may say.
    let (pause, tries) = match retry_after {
        None => (1, 5),
        Some(v) => match v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(s) if (1..=5).contains(&s) => (s, 1),
            _ => {
                return Err(Failure::Mismatch {
                    sent,
                    expected: "Retry-After: whole seconds, 1 to 5".into(),
                    got: format!("Retry-After: {v:?}"),
                });
            }
        },
    };
    let mut last = String::new();
    for attempt in 1..=tries {
        tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
        match upgrade().await? {
            Upgraded::Opened => return Ok(()),
            answer => last = format!("{} s after the 429: {}", pause * attempt, answer.describe()),
        }
    }
    Err(Failure::Mismatch {
        sent: format!("{sent} (again)"),
        expected: "HTTP 101 once Retry-After has passed".into(),
        got: last,
    })
}

/// `url` as a WebSocket client request (`sent` describes it in a failure).
fn client_request(
    url: &str,
    sent: &str,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, Failure> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    url.into_client_request().map_err(|e| Failure::Transport {
        sent: sent.to_owned(),
        error: e.to_string(),
    })
}

/// A site listing dashboard origins lets browsers of those origins open its dashboard socket,
/// and refuses the upgrade with `403 {"error": "…origin…"}` for a page of another origin (a
/// foreign page using a leaked secret key); a client sending no `Origin` (no browser) still
/// connects. A site listing none (the main site) takes any origin.
pub(super) async fn dashboard_origins_are_enforced(t: &Target) -> Result<(), Failure> {
    let evil = "https://evil.conformance.test";
    for (key, origin, allowed) in [
        (
            &t.other_site_secret_key,
            Some(OTHER_SITE_DASHBOARD_ORIGIN),
            true,
        ),
        (&t.other_site_secret_key, None, true),
        (&t.other_site_secret_key, Some(evil), false),
        (&t.secret_key, Some(evil), true),
    ] {
        let url = dashboard_url(t, Some(key));
        let sent = match origin {
            Some(o) => format!("WebSocket upgrade GET {url} with Origin: {o}"),
            None => format!("WebSocket upgrade GET {url} without Origin"),
        };
        let mut req = client_request(&url, &sent)?;
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("an origin is a header value"));
        }
        let answer = try_upgrade(req, &sent).await?;
        match (&answer, allowed) {
            (Upgraded::Opened, true) => {}
            // `wrangler dev` hands the client a refused upgrade that carried an `Origin`
            // without its body (the Worker's log shows its 403): the status is checked there,
            // the body wherever it arrives.
            (
                Upgraded::Refused {
                    status: 403, body, ..
                },
                false,
            ) if body.is_empty() => {}
            (Upgraded::Refused { status: 403, .. }, false) => {
                if !answer.error().is_some_and(|e| e.contains("origin")) {
                    return Err(Failure::Mismatch {
                        sent,
                        expected: "HTTP 403 {\"error\": \"… origin …\"}".into(),
                        got: answer.describe(),
                    });
                }
            }
            _ => {
                return Err(Failure::Mismatch {
                    sent,
                    expected: if allowed {
                        "HTTP 101: the socket opens".into()
                    } else {
                        "HTTP 403 for a page of an origin the site does not list".into()
                    },
                    got: answer.describe(),
                });
            }
        }
    }
    Ok(())
}

/// Dashboards need not put the secret key in a URL: `POST /api/ws-ticket` with the secret key
/// in the header answers `200 {"ticket": "…", "expiresAt": <epoch ms>}`, not cached; the
/// ticket opens one dashboard socket of its site (`/ws/dashboard?ticket=…`), once: spent
/// again, changed in any part, or moved to another site, it is refused with 403 naming the
/// ticket. No key is 401, the public key 403.
pub(super) async fn dashboard_tickets_open_one_socket_once(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    http.send(Req::post("/api/ws-ticket"))
        .await?
        .expect_error(401)?;
    http.send(Req::post("/api/ws-ticket").key(&t.public_key))
        .await?
        .expect_error(403)?;
    let issue = |key: String| {
        let http = &http;
        async move {
            let answer = http.send(Req::post("/api/ws-ticket").key(&key)).await?;
            let body = answer.expect_ok_json(200)?;
            let ticket = body["ticket"].as_str().map(str::to_owned);
            let expires = body["expiresAt"].as_i64();
            let cached = answer
                .header("cache-control")
                .is_none_or(|c| !c.contains("no-store"));
            match (ticket, expires) {
                (Some(ticket), Some(expires)) if !ticket.is_empty() && expires > 0 && !cached => {
                    Ok(ticket)
                }
                _ => Err(answer.fail(
                    "HTTP 200 {\"ticket\": \"…\", \"expiresAt\": <epoch ms>} with Cache-Control: no-store",
                )),
            }
        }
    };

    // The ticket opens the site's dashboard: it lists the site's visitor.
    let id = unique_id("ticket");
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    let ticket = issue(t.secret_key.clone()).await?;
    let url = dashboard_ticket_url(t, &ticket);
    let dashboard = Dashboard::connect_url(url.clone(), false).await?;
    if crate::wire::count_visitor(&dashboard.initial["visitors"], &id) != 1 {
        return Err(dashboard.mismatch(
            &format!("INITIAL_VISITORS of the ticket's site, listing {id}"),
            &dashboard.initial,
        ));
    }
    dashboard.close().await;

    // Spent, changed, or moved to the other site: refused.
    let other = issue(t.other_site_secret_key.clone()).await?;
    let (other_site, other_rest) = split_site(&other);
    let (_, rest) = split_site(&ticket);
    let mut flipped = ticket.clone();
    let last = flipped.pop().unwrap_or('0');
    flipped.push(if last == '0' { '1' } else { '0' });
    for (what, bad) in [
        ("spent once already", ticket.clone()),
        ("with its last digit changed", flipped),
        ("naming the other site", format!("{other_site}{rest}")),
        (
            "of the other site naming this one",
            format!("{}{other_rest}", split_site(&ticket).0),
        ),
        ("that is not a ticket", "not-a-ticket".to_owned()),
    ] {
        let url = dashboard_ticket_url(t, &bad);
        let sent = format!("WebSocket upgrade GET {url} (a ticket {what})");
        let answer = try_upgrade(client_request(&url, &sent)?, &sent).await?;
        // `wrangler dev` may hand the client a refused upgrade without its body (see
        // `dashboard_origins_are_enforced`): the status is checked there, the body wherever
        // it arrives.
        let named = match &answer {
            Upgraded::Refused { body, .. } if body.is_empty() => true,
            _ => answer.error().is_some_and(|e| e.contains("ticket")),
        };
        if !matches!(answer, Upgraded::Refused { status: 403, .. }) || !named {
            return Err(Failure::Mismatch {
                sent,
                expected: "HTTP 403 {\"error\": \"… ticket …\"}".into(),
                got: answer.describe(),
            });
        }
    }
    // The other site's ticket, untouched, opens its own dashboard (and only once).
    let dashboard = Dashboard::connect_url(dashboard_ticket_url(t, &other), false).await?;
    dashboard.close().await;
    Ok(())
}

/// A ticket's site id (everything before its last three dot-separated parts) and the rest,
/// starting at that dot.
fn split_site(ticket: &str) -> (&str, &str) {
    let mut dots = ticket.rmatch_indices('.').map(|(i, _)| i);
    match dots.nth(2) {
        Some(i) => ticket.split_at(i),
        None => (ticket, ""),
    }
}
