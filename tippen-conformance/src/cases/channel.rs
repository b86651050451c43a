//! The visitor channel (`/ws/visitor`): the invite pushed to every open tab, the hello,
//! answers on the socket with replies, other tabs told, errors, keys and refusals.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    PROMPT, channel_update, guest_url, is_invite_update, leave_ok, send_invite, step_failure,
    track_hidden,
};
use crate::dashboard::{Dashboard, is_type};
use crate::http::{Http, Req};
use crate::socket::{VisitorSocket, refused_at, visitor_url};
use crate::wire::{describe_bytes, unique_id};
use crate::{Failure, Target};

/// How long a socket must stay quiet to count as "heard nothing".
const QUIET: Duration = Duration::from_millis(300);

/// Checks a `VIDEO_INVITE` for `invite_id` sent by `invited_by`.
fn check_invite_message(
    socket: &VisitorSocket,
    message: &Value,
    invite_id: &str,
    invited_by: &str,
) -> Result<(), Failure> {
    let ok = message["inviteId"] == invite_id
        && message["guestUrl"] == guest_url(invite_id).as_str()
        && message["invitedBy"] == invited_by
        && message["expiresAt"].as_i64().is_some()
        && message["expiresIn"].as_u64().is_some_and(|ms| ms > 0);
    if ok {
        Ok(())
    } else {
        Err(socket.mismatch(
            &format!(
                "{{\"type\":\"VIDEO_INVITE\",\"inviteId\":\"{invite_id}\",\"guestUrl\":\"{}\",\"invitedBy\":\"{invited_by}\",\"expiresAt\":<ms>,\"expiresIn\":<ms > 0>}}",
                guest_url(invite_id)
            ),
            message,
        ))
    }
}

/// Sends `answer` for `invite_id` on `tab` and expects the reply
/// `{"type":"VIDEO_INVITE_UPDATE","inviteId","state"}` there.
async fn answer_on(
    tab: &mut VisitorSocket,
    answer: &str,
    invite_id: &str,
    state: &str,
) -> Result<(), Failure> {
    tab.send(&json!({"type": answer, "inviteId": invite_id}))
        .await?;
    let reply = tab
        .wait_for(&format!("the reply {state}"), PROMPT, |m| {
            is_type(m, "VIDEO_INVITE_UPDATE") || is_type(m, "ERROR")
        })
        .await?;
    let want = channel_update(invite_id, state);
    if reply != want {
        return Err(tab.mismatch(&want.to_string(), &reply));
    }
    Ok(())
}

/// An invite is pushed at once to each of the visitor's open tabs (and no other visitor's),
/// dashboards hear `sent` then `delivered` once; answers on one tab get a reply there, the
/// other tab and the dashboards hear the change; answers that make no sense get `ERROR` and
/// the socket stays open.
pub(super) async fn visitor_channel_pushes_invites_and_takes_answers(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("vchan");
    let other_id = unique_id("vchan_other");
    track_hidden(&http, &t.public_key, &id).await?;
    track_hidden(&http, &t.public_key, &other_id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let mut tab1 = VisitorSocket::open(t, &t.public_key, &id, "tab 1").await?;
    let mut tab2 = VisitorSocket::open(t, &t.public_key, &id, "tab 2").await?;
    let mut other = VisitorSocket::open(t, &t.public_key, &other_id, "another visitor").await?;
    tab1.expect_none("no hello: the visitor has no open invite", QUIET, |_| true)
        .await?;

    let invite = unique_id("inv");
    send_invite(&http, t, &id, &invite, "Alice").await?;
    for tab in [&mut tab1, &mut tab2] {
        tab.note(format!("POST /api/send-video-invite {invite} for {id}"));
        let pushed = tab
            .wait_for("VIDEO_INVITE pushed", PROMPT, |m| {
                is_type(m, "VIDEO_INVITE")
            })
            .await?;
        check_invite_message(tab, &pushed, &invite, "Alice")?;
    }
    dashboard.note(format!("POST /api/send-video-invite {invite} for {id}"));
    for state in ["sent", "delivered"] {
        dashboard
            .wait_for_any_order(&format!("VIDEO_INVITE_UPDATE {state}"), PROMPT, |m| {
                is_invite_update(m, &invite, state)
            })
            .await?;
    }

    for (answer, state) in [("INVITE_SEEN", "seen"), ("INVITE_ACCEPTED", "accepted")] {
        answer_on(&mut tab1, answer, &invite, state).await?;
        tab2.note(format!("{answer} on tab 1"));
        let told = tab2
            .wait_for(
                &format!("the update {state} (answered on tab 1)"),
                PROMPT,
                |m| is_type(m, "VIDEO_INVITE_UPDATE"),
            )
            .await?;
        if told != channel_update(&invite, state) {
            return Err(tab2.mismatch(&channel_update(&invite, state).to_string(), &told));
        }
        dashboard.note(format!("{answer} on the visitor channel"));
        dashboard
            .wait_for_any_order(&format!("VIDEO_INVITE_UPDATE {state}"), PROMPT, |m| {
                is_invite_update(m, &invite, state)
            })
            .await?;
    }
    tab1.expect_none("the answering tab hears its reply once", QUIET, |m| {
        is_type(m, "VIDEO_INVITE_UPDATE")
    })
    .await?;
    let delivered = dashboard.count(|m| is_invite_update(m, &invite, "delivered"));
    if delivered != 1 {
        return Err(step_failure(
            format!("{invite} pushed to two tabs of {id}"),
            "one VIDEO_INVITE_UPDATE delivered on the dashboard however many tabs got it",
            format!("{delivered}"),
        ));
    }

    // Nonsense: an ERROR each, the socket stays open.
    let unknown = unique_id("inv_unknown");
    for (message, mentions) in [
        (
            json!({"type": "INVITE_DECLINED", "inviteId": invite}).to_string(),
            "accepted",
        ),
        ("not json".to_owned(), ""),
        (
            json!({"type": "INVITE_SEEN", "inviteId": unknown}).to_string(),
            "not found",
        ),
    ] {
        tab1.send_text(message).await?;
        let error = tab1
            .wait_for("an ERROR", PROMPT, |m| {
                is_type(m, "ERROR") || is_type(m, "VIDEO_INVITE_UPDATE")
            })
            .await?;
        let text = error["error"].as_str().unwrap_or("");
        if !is_type(&error, "ERROR") || text.is_empty() || !text.contains(mentions) {
            return Err(tab1.mismatch(
                &format!("{{\"type\":\"ERROR\",\"error\":\"…{mentions}…\"}}"),
                &error,
            ));
        }
    }
    other
        .expect_none(
            "another visitor's channel hears nothing of it",
            QUIET,
            |_| true,
        )
        .await?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    leave_ok(&http, &t.public_key, &other_id, None).await?;
    for socket in [tab1, tab2, other] {
        socket.close().await;
    }
    dashboard.close().await;
    Ok(())
}

/// With no channel open the invite stays `sent`; a channel opened later gets it as its first
/// message (which delivers it, once however many tabs open); a cancel reaches every tab as an
/// update.
pub(super) async fn visitor_channel_hello_carries_the_open_invite(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("vhello");
    track_hidden(&http, &t.public_key, &id).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let invite = unique_id("inv");
    send_invite(&http, t, &id, &invite, "Carol").await?;
    dashboard.note(format!(
        "POST /api/send-video-invite {invite}, no channel open"
    ));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE sent", PROMPT, |m| {
            is_invite_update(m, &invite, "sent")
        })
        .await?;
    dashboard
        .expect_none("no delivered while no channel is open", QUIET, |m| {
            is_invite_update(m, &invite, "delivered")
        })
        .await?;

    let mut tabs = Vec::new();
    for tab in ["tab 1", "tab 2"] {
        let mut socket = VisitorSocket::open(t, &t.public_key, &id, tab).await?;
        let hello = socket
            .next_message("the hello VIDEO_INVITE", PROMPT)
            .await?;
        if !is_type(&hello, "VIDEO_INVITE") {
            return Err(socket.mismatch("the first message to be VIDEO_INVITE", &hello));
        }
        check_invite_message(&socket, &hello, &invite, "Carol")?;
        dashboard.note(format!("visitor channel {tab} opened"));
        if tabs.is_empty() {
            dashboard
                .wait_for_any_order(
                    "VIDEO_INVITE_UPDATE delivered (by the hello)",
                    PROMPT,
                    |m| is_invite_update(m, &invite, "delivered"),
                )
                .await?;
        }
        tabs.push(socket);
    }
    dashboard
        .expect_none("delivered only once", QUIET, |m| {
            is_invite_update(m, &invite, "delivered")
        })
        .await?;
    let delivered = dashboard.count(|m| is_invite_update(m, &invite, "delivered"));
    if delivered != 1 {
        return Err(step_failure(
            format!("two channels of {id} opened, {invite} open"),
            "one VIDEO_INVITE_UPDATE delivered",
            format!("{delivered}"),
        ));
    }

    http.send(
        Req::post("/api/invites/cancel")
            .key(&t.secret_key)
            .json(&json!({"visitorId": id, "inviteId": invite})),
    )
    .await?
    .expect_json(200, &json!({"success": true, "state": "cancelled"}))?;
    for tab in &mut tabs {
        tab.note(format!("POST /api/invites/cancel {invite}"));
        let update = tab
            .wait_for("the update cancelled", PROMPT, |m| {
                is_type(m, "VIDEO_INVITE_UPDATE")
            })
            .await?;
        if update != channel_update(&invite, "cancelled") {
            return Err(tab.mismatch(&channel_update(&invite, "cancelled").to_string(), &update));
        }
    }
    dashboard.note(format!("POST /api/invites/cancel {invite}"));
    dashboard
        .wait_for_any_order("VIDEO_INVITE_UPDATE cancelled", PROMPT, |m| {
            is_invite_update(m, &invite, "cancelled")
        })
        .await?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    for tab in tabs {
        tab.close().await;
    }
    dashboard.close().await;
    Ok(())
}

/// The channel takes a site's public, secret or legacy key; refusals are plain HTTP answers:
/// unknown key 403, no key 401, no or an over-long `visitorId` 400.
pub(super) async fn visitor_channel_keys_and_refusals(t: &Target) -> Result<(), Failure> {
    let id = unique_id("vkeys");
    for key in [&t.secret_key, &t.legacy_key] {
        VisitorSocket::open(t, key, &id, "opened with a secret or legacy key")
            .await?
            .close()
            .await;
    }
    let long = "v".repeat(129);
    for (key, visitor, status) in [
        (Some("nope_not_a_key"), Some(id.as_str()), 403),
        (None, Some(id.as_str()), 401),
        (Some(t.public_key.as_str()), None, 400),
        (Some(t.public_key.as_str()), Some(long.as_str()), 400),
    ] {
        let url = visitor_url(t, key, visitor);
        let (got, body) = refused_at(&url).await?;
        if got != status {
            return Err(step_failure(
                format!("WebSocket upgrade GET {url}"),
                format!("the upgrade refused with HTTP {status}"),
                format!("HTTP {got}, body {}", describe_bytes(&body, 300)),
            ));
        }
    }
    Ok(())
}
