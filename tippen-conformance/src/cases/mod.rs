//! The cases, grouped by the part of the contract they check, and the steps they share.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{Answer, Http, Req};
use crate::wire::{describe_json, find_visitor, track_body};
use crate::{Case, Failure};

mod abuse;
mod alerts;
mod channel;
mod cors;
mod dashboard;
mod deletion;
mod enrichment;
mod errors;
mod expiry;
mod history;
mod invites;
mod operator;
mod part_a;
mod quotas;
mod sites;
mod stats;
mod support;
mod tabs;
mod video_call;

/// How long a prompt consequence (a broadcast after a request, a reply) may take.
pub(crate) const PROMPT: Duration = Duration::from_secs(3);
/// How much earlier than the grace period an expiry may be seen (clock and scheduling jitter).
pub(crate) const EARLY: Duration = Duration::from_millis(300);
/// How much later than the grace period an expiry may be seen (sweep timer latency).
pub(crate) const LATE: Duration = Duration::from_millis(1500);

/// `Case { name: "<fn name>", run: <module>::<fn> }`.
macro_rules! case {
    ($module:ident :: $name:ident) => {
        Case {
            name: stringify!($name),
            needs: None,
            run: |target| Box::pin($module::$name(target)),
        }
    };
    ($module:ident :: $name:ident, needs $need:ident) => {
        Case {
            name: stringify!($name),
            needs: Some(crate::Capability::$need),
            run: |target| Box::pin($module::$name(target)),
        }
    };
}

/// Every case, in a stable order.
pub(crate) fn all() -> Vec<Case> {
    vec![
        // Visit history (or, on a host without it, its 501s).
        case!(history::a_visit_of_three_pages_is_kept_exported_and_erased),
        case!(history::history_parameters_are_checked),
        // Part A, byte for byte.
        case!(part_a::root_answers_tippen_api),
        case!(part_a::predecessor_curl_is_answered_exactly),
        case!(part_a::full_part_a_pageview_is_listed),
        case!(part_a::heartbeat_is_accepted),
        case!(part_a::legacy_key_is_public_and_secret),
        // Keys and the error table.
        case!(errors::no_key_is_401),
        case!(errors::unknown_key_is_403),
        case!(errors::public_key_on_secret_routes_is_403),
        case!(errors::key_in_query_or_body_is_accepted),
        case!(errors::malformed_json_is_400),
        case!(errors::missing_field_is_400_naming_it),
        case!(errors::wrong_type_is_400_naming_the_field),
        case!(errors::field_limits_are_enforced),
        case!(errors::json_is_accepted_with_any_content_type),
        case!(errors::unknown_route_is_404),
        case!(errors::wrong_method_is_405_with_allow),
        case!(errors::body_over_64_kib_is_413),
        case!(errors::chunked_body_over_the_limit_is_413),
        case!(errors::user_activity_batch_limit_is_50),
        case!(errors::garbage_is_never_a_server_error),
        case!(errors::non_utf8_input_is_never_a_server_error),
        case!(errors::static_pages_are_served),
        // Abuse of the public key: bounded ids, keys and frames.
        case!(abuse::leave_flood_with_huge_tab_ids_is_refused),
        case!(abuse::over_long_keys_and_ids_are_refused),
        case!(abuse::over_long_dashboard_frames_get_an_error),
        case!(abuse::guest_urls_must_be_https),
        case!(abuse::a_key_over_its_rate_limit_gets_429_with_retry_after, needs RateLimitedSite),
        case!(abuse::dashboard_origins_are_enforced),
        case!(abuse::dashboard_tickets_open_one_socket_once),
        // Socket quotas.
        case!(quotas::sockets_over_a_sites_quota_are_refused_until_one_closes, needs QuotaSite),
        case!(quotas::sockets_over_an_addresss_quota_are_refused_until_one_closes, needs QuotaSite),
        case!(
            quotas::a_dashboard_over_its_snapshot_quota_gets_an_error_and_still_hears_broadcasts,
            needs QuotaSite
        ),
        case!(errors::served_pages_are_told_where_the_sockets_are),
        // CORS.
        case!(cors::preflight_is_answered),
        case!(cors::every_response_allows_any_origin),
        // Sites.
        case!(sites::sites_are_isolated),
        case!(sites::same_visitor_id_on_two_sites_is_two_visitors),
        // The visitor list.
        case!(dashboard::api_visitors_lists_full_visitor),
        // Dashboard WebSocket.
        case!(dashboard::dashboard_starts_with_initial_visitors),
        case!(dashboard::dashboard_sees_new_visitor_and_pageview),
        case!(dashboard::dashboard_sequence_is_exact),
        case!(dashboard::dashboard_ping_gets_pong),
        case!(dashboard::dashboard_get_visitors_gets_snapshot),
        case!(dashboard::dashboard_unknown_message_gets_error),
        case!(dashboard::dashboard_refuses_wrong_keys),
        // Tabs and leaving.
        case!(tabs::two_tabs_are_one_visitor),
        case!(tabs::leaving_one_tab_keeps_the_visitor),
        case!(tabs::leave_beacon_works_without_headers),
        case!(tabs::leave_variants),
        case!(tabs::a_return_within_the_leave_linger_keeps_the_visitor),
        case!(tabs::a_leave_removes_the_visitor_when_the_linger_ends),
        // Expiry.
        case!(expiry::silent_visitor_expires_after_visible_grace),
        case!(expiry::heartbeats_keep_visitor_alive),
        case!(expiry::hidden_tab_outlives_visible_grace),
        case!(expiry::tabs_expire_one_by_one),
        case!(expiry::api_visitors_never_lists_expired),
        // Video invites.
        case!(invites::invite_reaches_dashboards),
        case!(invites::part_a_invite_with_key_in_body),
        case!(invites::invite_for_absent_visitor_is_404),
        case!(invites::invite_rides_on_track_visitor_and_is_answered_over_http),
        case!(invites::invite_conflicts_retries_cancel_and_visitor_left),
        // The visitor channel.
        case!(channel::visitor_channel_pushes_invites_and_takes_answers),
        case!(channel::visitor_channel_hello_carries_the_open_invite),
        case!(channel::visitor_channel_keys_and_refusals),
        // Privacy deletion and statistics.
        case!(deletion::deleting_a_visitor_removes_it_everywhere),
        case!(deletion::deleting_unknown_ids_is_false_and_needs_the_secret_key),
        case!(deletion::a_deleted_visitor_is_not_tracked_again),
        case!(stats::api_stats_answers_the_accounting),
        // The video provider (stand-in).
        case!(video_call::video_call_creates_a_session_and_sends_the_invite, needs VideoProvider),
        case!(video_call::video_call_refusals_ask_no_provider, needs VideoProvider),
        case!(video_call::video_call_provider_failures_send_nothing, needs VideoProvider),
        // Enrichment (IPinfo stand-in).
        case!(enrichment::enrichment_reaches_dashboards_and_is_counted, needs Enrichment),
        case!(enrichment::global_privacy_control_skips_the_lookup, needs Enrichment),
        case!(
            enrichment::do_not_track_skips_the_lookup_where_the_site_honours_it,
            needs Enrichment
        ),
        // Alert rules (the IPinfo stand-in's companies, the Slack and webhook stand-ins).
        case!(
            alerts::alert_rules_reach_slack_and_signed_webhooks_once,
            needs AlertSite
        ),
        // Many customers: sites and keys at runtime, member roles, the audit log.
        case!(operator::operator_creates_a_site_whose_keys_work_at_once, needs Operator),
        case!(operator::a_rotated_key_works_until_its_overlap_ends, needs Operator),
        case!(
            operator::member_roles_limit_what_a_token_may_do_and_the_audit_names_them,
            needs Operator
        ),
        // Support triggers.
        case!(support::error_burst_alerts_dashboards_and_the_overview),
        case!(support::user_activity_reads_the_timeline_back_in_pages),
        case!(support::support_alert_reaches_slack_once, needs Slack),
        case!(
            support::verified_identities_need_a_matching_user_hash,
            needs VerifiedIdentities
        ),
    ]
}

/// Sends a `POST /track/visitor` with `key` in the header and returns the answer.
pub(crate) async fn track(http: &Http, key: &str, body: &Value) -> Result<Answer, Failure> {
    http.send(Req::post("/track/visitor").key(key).json(body))
        .await
}

/// Timing of one request: just before it was sent and just after its answer arrived. The
/// server's clock reading for the event lies in between.
#[derive(Clone, Copy)]
pub(crate) struct Sent {
    /// Just before sending.
    pub(crate) at: Instant,
    /// Just after the answer.
    pub(crate) answered: Instant,
}

/// Tracks `event` for `visitor_id` on `url` (extra `visitor` fields in `extra`) and checks the
/// success answer: `200 {"success":true,"sessionId":"<visitorId>"}` (further fields, such as a
/// pending invite, are allowed here; the Part A cases check the exact body).
pub(crate) async fn track_ok(
    http: &Http,
    key: &str,
    event: &str,
    visitor_id: &str,
    url: &str,
    extra: Value,
) -> Result<Sent, Failure> {
    let at = Instant::now();
    let answer = track(http, key, &track_body(event, visitor_id, url, extra)).await?;
    let answered = Instant::now();
    let body = answer.expect_ok_json(200)?;
    if body.get("success") != Some(&Value::Bool(true))
        || body.get("sessionId").and_then(Value::as_str) != Some(visitor_id)
    {
        return Err(answer.fail(format!(
            "HTTP 200 {{\"success\":true,\"sessionId\":\"{visitor_id}\"}}"
        )));
    }
    Ok(Sent { at, answered })
}

/// `POST /track/leave` with `key` in the header for `visitor_id` (and `tab_id`), expecting
/// `200 {"success":true}`.
pub(crate) async fn leave_ok(
    http: &Http,
    key: &str,
    visitor_id: &str,
    tab_id: Option<&str>,
) -> Result<Sent, Failure> {
    let mut body = json!({ "visitorId": visitor_id });
    if let Some(tab) = tab_id {
        body["tabId"] = json!(tab);
    }
    let at = Instant::now();
    let answer = http
        .send(Req::post("/track/leave").key(key).json(&body))
        .await?;
    let answered = Instant::now();
    answer.expect_json(200, &json!({"success": true}))?;
    Ok(Sent { at, answered })
}

/// Waits until `visitor_id`, whose last tab sent its exit beacon (`left`), is no longer
/// listed by `GET /api/visitors` with `key`: when the leave linger ends (polled; within
/// [`LATE`] after it).
pub(crate) async fn gone_after_leave(
    http: &Http,
    t: &crate::Target,
    key: &str,
    visitor_id: &str,
    left: Sent,
) -> Result<(), Failure> {
    let give_up = left.answered + t.leave_linger + LATE;
    loop {
        let (visitors, answer) = list_visitors(http, key).await?;
        if crate::wire::count_visitor(&visitors, visitor_id) == 0 {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(answer.fail(format!(
                "{visitor_id} not listed within {} ms of its exit beacon (the leave linger, {} ms, \
                 and {} ms)",
                (give_up - left.at).as_millis(),
                t.leave_linger.as_millis(),
                LATE.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /api/visitors` with `key`: checks `200 {"visitors":[...],"seq":n}` and returns the
/// `visitors` array with the answer (for failure messages).
pub(crate) async fn list_visitors(http: &Http, key: &str) -> Result<(Value, Answer), Failure> {
    let answer = http.send(Req::get("/api/visitors").key(key)).await?;
    let body = answer.expect_ok_json(200)?;
    let visitors = body.get("visitors").filter(|v| v.is_array()).cloned();
    let seq_ok = body.get("seq").and_then(Value::as_u64).is_some();
    match visitors {
        Some(visitors) if seq_ok => Ok((visitors, answer)),
        _ => Err(answer.fail("HTTP 200 {\"visitors\":[<Visitor>...],\"seq\":<integer>}")),
    }
}

/// The visitor as `GET /api/visitors` lists it; fails when it is not listed exactly once.
pub(crate) async fn listed_visitor(
    http: &Http,
    key: &str,
    visitor_id: &str,
) -> Result<Value, Failure> {
    let (visitors, answer) = list_visitors(http, key).await?;
    match crate::wire::count_visitor(&visitors, visitor_id) {
        1 => Ok(find_visitor(&visitors, visitor_id)
            .cloned()
            .unwrap_or(Value::Null)),
        n => Err(answer.fail(format!(
            "the visitor {visitor_id} listed exactly once (listed {n} times)"
        ))),
    }
}

/// Fails when `GET /api/visitors` lists `visitor_id`.
pub(crate) async fn not_listed(
    http: &Http,
    key: &str,
    visitor_id: &str,
    why: &str,
) -> Result<(), Failure> {
    let (visitors, answer) = list_visitors(http, key).await?;
    match find_visitor(&visitors, visitor_id) {
        None => Ok(()),
        Some(v) => Err(Failure::Mismatch {
            sent: answer.sent,
            expected: format!("the visitor {visitor_id} not listed ({why})"),
            got: format!("listed: {}", describe_json(v)),
        }),
    }
}

/// A failure about a step that is not one request (timing, a combination of answers).
pub(crate) fn step_failure(
    step: impl Into<String>,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> Failure {
    Failure::Mismatch {
        sent: step.into(),
        expected: expected.into(),
        got: got.into(),
    }
}

/// Checks a `<Visitor>`'s shape (see [`crate::wire::visitor_shape_problems`]).
pub(crate) fn check_visitor_shape(where_from: &str, visitor: &Value) -> Result<(), Failure> {
    let problems = crate::wire::visitor_shape_problems(visitor);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(step_failure(
            where_from,
            "a <Visitor> with Part A's nine fields and the contract's additions",
            format!(
                "{}; the visitor: {}",
                problems.join("; "),
                describe_json(visitor)
            ),
        ))
    }
}

/// Checks that `visitor[field]` equals `want`.
pub(crate) fn check_field(
    where_from: &str,
    visitor: &Value,
    field: &str,
    want: &Value,
) -> Result<(), Failure> {
    if visitor.get(field) == Some(want) {
        Ok(())
    } else {
        Err(step_failure(
            where_from,
            format!("`{field}` = {want}"),
            format!(
                "`{field}` = {}; the visitor: {}",
                visitor
                    .get(field)
                    .map_or("missing".into(), Value::to_string),
                describe_json(visitor)
            ),
        ))
    }
}

/// Sleeps until `when` (no-op when it has passed).
pub(crate) async fn sleep_until(when: Instant) {
    tokio::time::sleep_until(when.into()).await;
}

/// Adds `why` to what a failure expected, for checks in a loop whose request is shortened in
/// the message (which field was too long, say).
pub(crate) fn because(failure: Failure, why: &str) -> Failure {
    match failure {
        Failure::Mismatch {
            sent,
            expected,
            got,
        } => Failure::Mismatch {
            sent,
            expected: format!("{expected} — {why}"),
            got,
        },
        other => other,
    }
}

/// Tracks a page view of `visitor_id` in a hidden tab (`tab_1`): the visitor stays for the
/// hidden grace, long enough for a case's steps on a slow host, without heartbeats (whose
/// answers would deliver a pending invite).
pub(crate) async fn track_hidden(
    http: &Http,
    key: &str,
    visitor_id: &str,
) -> Result<Sent, Failure> {
    track_ok(
        http,
        key,
        "pageview",
        visitor_id,
        "https://x.test/invite",
        json!({"tabId": "tab_1", "visibility": "hidden"}),
    )
    .await
}

/// `POST /api/send-video-invite` with the secret key, expecting Part A's `200 {"success":true}`.
pub(crate) async fn send_invite(
    http: &Http,
    t: &crate::Target,
    visitor_id: &str,
    invite_id: &str,
    invited_by: &str,
) -> Result<(), Failure> {
    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .json(&json!({
                "visitorId": visitor_id,
                "inviteId": invite_id,
                "invitedBy": invited_by,
                "guestUrl": guest_url(invite_id),
            })),
    )
    .await?
    .expect_json(200, &json!({"success": true}))?;
    Ok(())
}

/// The guest URL the cases invite with.
pub(crate) fn guest_url(invite_id: &str) -> String {
    format!("https://video.conformance.test/guest/{invite_id}")
}

/// True when `message` is a `VIDEO_INVITE_UPDATE` of `invite_id` to `state`.
pub(crate) fn is_invite_update(message: &Value, invite_id: &str, state: &str) -> bool {
    crate::dashboard::is_type(message, "VIDEO_INVITE_UPDATE")
        && message.get("inviteId").and_then(Value::as_str) == Some(invite_id)
        && message.get("state").and_then(Value::as_str) == Some(state)
}

/// The visitor channel's exact update message.
pub(crate) fn channel_update(invite_id: &str, state: &str) -> Value {
    json!({"type": "VIDEO_INVITE_UPDATE", "inviteId": invite_id, "state": state})
}
