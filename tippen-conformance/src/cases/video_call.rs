//! `POST /api/video-call` against the suite's video provider stand-in ([`crate::StandIns`]).

use std::time::Duration;

use serde_json::{Value, json};

use super::{PROMPT, is_invite_update, leave_ok, listed_visitor, step_failure, track_hidden};
use crate::dashboard::{Dashboard, is_type};
use crate::http::{Answer, Http, Req};
use crate::socket::VisitorSocket;
use crate::wire::{describe_json, unique_id};
use crate::{Failure, StandIns, Target};

fn stand_ins(t: &Target) -> Result<&StandIns, Failure> {
    t.outbound.stand_ins.as_ref().ok_or_else(|| {
        step_failure(
            "(starting the case)",
            "the suite's stand-ins",
            "none configured",
        )
    })
}

async fn call(http: &Http, key: &str, body: &Value) -> Result<Answer, Failure> {
    http.send(Req::post("/api/video-call").key(key).json(body))
        .await
}

/// Fails unless the provider got exactly `n` requests whose `hostName` contains `tag`.
fn provider_asked(s: &StandIns, tag: &str, n: usize, step: &str) -> Result<Vec<Value>, Failure> {
    let got = s.video_requests(tag);
    if got.len() == n {
        Ok(got)
    } else {
        Err(step_failure(
            step,
            format!("the video provider asked {n} time(s) for this case ({tag})"),
            format!(
                "asked {} time(s): {}",
                got.len(),
                describe_json(&json!(got))
            ),
        ))
    }
}

/// One call creates a session with the provider (the predecessor's request shape) and sends
/// the invite: the admin gets the host URL, the visitor's channel the guest URL, dashboards
/// `VIDEO_INVITE_SENT`; a retry with the invite id answers the same session without asking
/// the provider again; another invite while this one is open is `409` before the provider is
/// asked.
pub(super) async fn video_call_creates_a_session_and_sends_the_invite(
    t: &Target,
) -> Result<(), Failure> {
    let s = stand_ins(t)?;
    let http = Http::new(t)?;
    let id = unique_id("call");
    let host = format!("Alice {id}");
    track_hidden(&http, &t.public_key, &id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let mut tab = VisitorSocket::open(t, &t.public_key, &id, "tab 1").await?;
    let invite = unique_id("inv");
    let body = json!({"visitorId": id, "inviteId": invite, "invitedBy": host});
    let answer = call(&http, &t.secret_key, &body).await?;
    let got = answer.expect_ok_json(200)?;
    let asked = provider_asked(s, &id, 1, &answer.sent)?;
    if asked[0] != json!({"hostName": host, "guestName": "Visitor", "isAdmin": true}) {
        return Err(step_failure(
            &answer.sent,
            format!(
                "the provider asked {{\"hostName\":\"{host}\",\"guestName\":\"Visitor\",\"isAdmin\":true}}"
            ),
            describe_json(&asked[0]),
        ));
    }
    let host_url = got["hostUrl"].as_str().unwrap_or("");
    let guest = got["guestUrl"].as_str().unwrap_or("").to_owned();
    let ok = got["success"] == true
        && got["inviteId"] == invite.as_str()
        && host_url.starts_with("https://video.conformance.test/host/sess_")
        && guest == host_url.replace("/host/", "/guest/")
        && got["state"] == "sent"
        && got["expiresAt"].as_i64().is_some();
    if !ok {
        return Err(answer.fail(format!(
            "HTTP 200 {{\"success\":true,\"inviteId\":\"{invite}\",\"hostUrl\":\"https://video.conformance.test/host/sess_<n>\",\"guestUrl\":\"…/guest/sess_<n>\",\"state\":\"sent\",\"expiresAt\":<ms>}} (the stand-in's session)"
        )));
    }
    tab.note(format!("POST /api/video-call for {id}"));
    let pushed = tab
        .wait_for("VIDEO_INVITE", PROMPT, |m| is_type(m, "VIDEO_INVITE"))
        .await?;
    if pushed["guestUrl"] != guest.as_str() || pushed["inviteId"] != invite.as_str() {
        return Err(tab.mismatch(
            &format!("VIDEO_INVITE {invite} with the provider's guest URL {guest}"),
            &pushed,
        ));
    }
    dashboard.note(format!("POST /api/video-call for {id}"));
    let (sent, _) = dashboard
        .wait_for_any_order("VIDEO_INVITE_SENT", PROMPT, |m| {
            is_type(m, "VIDEO_INVITE_SENT") && m["visitorId"] == id.as_str()
        })
        .await?;
    if sent["guestUrl"] != guest.as_str() {
        return Err(dashboard.mismatch(
            &format!("VIDEO_INVITE_SENT with the provider's guest URL {guest}"),
            &sent,
        ));
    }
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE sent", PROMPT, |m| {
            is_invite_update(m, &invite, "sent")
        })
        .await?;

    let retry = call(&http, &t.secret_key, &body).await?;
    let again = retry.expect_ok_json(200)?;
    if again["hostUrl"] != got["hostUrl"] || again["inviteId"] != invite.as_str() {
        return Err(retry.fail(format!(
            "HTTP 200 answering the stored invite (hostUrl {host_url})"
        )));
    }
    provider_asked(s, &id, 1, &retry.sent)?;
    let other = call(
        &http,
        &t.secret_key,
        &json!({"visitorId": id, "inviteId": unique_id("inv"), "hostName": host}),
    )
    .await?;
    other.expect_error_mentioning(409, &invite)?;
    provider_asked(s, &id, 1, &other.sent)?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    tab.close().await;
    dashboard.close().await;
    Ok(())
}

/// An unknown visitor (404), the public key (403) and a missing `visitorId` (400 naming it)
/// are refused before the provider is asked.
pub(super) async fn video_call_refusals_ask_no_provider(t: &Target) -> Result<(), Failure> {
    let s = stand_ins(t)?;
    let http = Http::new(t)?;
    let id = unique_id("call_refused");
    track_hidden(&http, &t.public_key, &id).await?;
    let host = format!("Alice {id}");
    call(
        &http,
        &t.secret_key,
        &json!({"visitorId": unique_id("nobody"), "hostName": host}),
    )
    .await?
    .expect_json(404, &json!({"error": "Visitor not found"}))?;
    call(
        &http,
        &t.public_key,
        &json!({"visitorId": id, "hostName": host}),
    )
    .await?
    .expect_error(403)?;
    let missing = call(&http, &t.secret_key, &json!({"hostName": host})).await?;
    missing.expect_error_mentioning(400, "visitorId")?;
    provider_asked(s, &id, 0, "three refused calls")?;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if listed.get("invite").is_some() {
        return Err(step_failure(
            "GET /api/visitors after refused calls",
            "the visitor without `invite`",
            describe_json(&listed),
        ));
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}

/// The provider failing (500), answering out of contract, or rate limiting: `502`, `502`,
/// `503` with `Retry-After`; nothing is sent (no invite listed, nothing on the dashboard);
/// once the provider answers, the same visitor is invited.
pub(super) async fn video_call_provider_failures_send_nothing(t: &Target) -> Result<(), Failure> {
    let s = stand_ins(t)?;
    let http = Http::new(t)?;
    let id = unique_id("call_failing");
    track_hidden(&http, &t.public_key, &id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    for (n, (mode, status)) in [("fail-500", 502), ("malformed", 502), ("rate-limited", 503)]
        .into_iter()
        .enumerate()
    {
        let answer = call(
            &http,
            &t.secret_key,
            &json!({"visitorId": id, "hostName": format!("{mode} {id}")}),
        )
        .await?;
        answer.expect_error(status)?;
        if status == 503 && answer.header("retry-after").is_none() {
            return Err(answer.fail("HTTP 503 with a Retry-After header"));
        }
        provider_asked(s, &id, n + 1, &answer.sent)?;
        let listed = listed_visitor(&http, &t.secret_key, &id).await?;
        if listed.get("invite").is_some() {
            return Err(step_failure(
                format!("GET /api/visitors after {}", answer.sent),
                "the visitor without `invite` (nothing was sent)",
                describe_json(&listed),
            ));
        }
    }
    dashboard.note(format!("three failed video calls for {id}"));
    dashboard
        .expect_none(
            "no invite message while the provider fails",
            Duration::from_millis(300),
            |m| {
                (is_type(m, "VIDEO_INVITE_SENT") || is_type(m, "VIDEO_INVITE_UPDATE"))
                    && m["visitorId"] == id.as_str()
            },
        )
        .await?;
    let answer = call(
        &http,
        &t.secret_key,
        &json!({"visitorId": id, "hostName": format!("Alice {id}")}),
    )
    .await?;
    let body = answer.expect_ok_json(200)?;
    if body["state"] != "sent" {
        return Err(answer.fail("HTTP 200 with state sent once the provider answers"));
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    dashboard.close().await;
    Ok(())
}
