//! Keys and the error table: every error is `{"error":"<message>"}` with the right status.

use reqwest::Method;
use serde_json::{Value, json};

use super::{leave_ok, listed_visitor, step_failure, track, track_ok};
use crate::dashboard::{percent_encode, refused};
use crate::http::{Answer, Http, Req, media_type};
use crate::wire::{describe_bytes, track_body, unique_id};
use crate::{Failure, Target};

const NO_KEY: &str = "API key required";
const BAD_KEY: &str = "invalid API key";
const NEEDS_SECRET: &str = "this endpoint requires the site's secret key";

/// A refused dashboard upgrade must have `status`, and a body, if any, of the error shape.
async fn dashboard_refused_with(
    t: &Target,
    key: Option<&str>,
    status: u16,
    message: &str,
) -> Result<(), Failure> {
    let (got, body) = refused(t, key).await?;
    let sent = format!(
        "WebSocket upgrade GET /ws/dashboard{}",
        key.map_or(String::new(), |k| format!("?apiKey={k}"))
    );
    if got != status {
        return Err(step_failure(
            sent,
            format!("the upgrade refused with HTTP {status}"),
            format!("HTTP {got}, body {}", describe_bytes(&body, 300)),
        ));
    }
    if !body.is_empty()
        && serde_json::from_slice::<Value>(&body).ok() != Some(json!({"error": message}))
    {
        return Err(step_failure(
            sent,
            format!("HTTP {status} {{\"error\":\"{message}\"}}"),
            format!("HTTP {got}, body {}", describe_bytes(&body, 300)),
        ));
    }
    Ok(())
}

/// No key anywhere: `401 {"error":"API key required"}` on every keyed route, and the dashboard
/// upgrade is refused with 401.
pub(super) async fn no_key_is_401(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let want = json!({"error": NO_KEY});
    let id = unique_id("nokey");
    let requests = [
        Req::post("/track/visitor").json(&track_body(
            "pageview",
            &id,
            "https://x.test/",
            json!({}),
        )),
        Req::post("/track/leave").json(&json!({"visitorId": id})),
        Req::get("/api/visitors"),
        Req::post("/api/send-video-invite")
            .json(&json!({"visitorId": id, "guestUrl": "https://video.test/g/1"})),
        Req::post("/api/track/user-activity").json(&json!({
            "userId": id, "userEmail": "a@b.test", "subscriptionTier": "paid", "events": []
        })),
    ];
    for req in requests {
        http.send(req).await?.expect_json(401, &want)?;
    }
    dashboard_refused_with(t, None, 401, NO_KEY).await
}

/// An unknown key, in the header, the query or the body: `403 {"error":"invalid API key"}`;
/// the dashboard upgrade is refused with 403.
pub(super) async fn unknown_key_is_403(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let want = json!({"error": BAD_KEY});
    let bogus = unique_id("no_such_key");
    let id = unique_id("badkey");
    let body = track_body("pageview", &id, "https://x.test/", json!({}));
    let mut in_body = body.clone();
    in_body["apiKey"] = json!(bogus);
    let requests = [
        Req::post("/track/visitor").key(&bogus).json(&body),
        Req::post(format!("/track/visitor?apiKey={}", percent_encode(&bogus))).json(&body),
        Req::post("/track/visitor").json(&in_body),
        Req::get("/api/visitors").key(&bogus),
        Req::post("/api/send-video-invite")
            .key(&bogus)
            .json(&json!({"visitorId": id, "guestUrl": "https://video.test/g/1"})),
    ];
    for req in requests {
        http.send(req).await?.expect_json(403, &want)?;
    }
    dashboard_refused_with(t, Some(&bogus), 403, BAD_KEY).await
}

/// The public key on secret-key routes: `403 {"error":"this endpoint requires the site's secret
/// key"}`, including the dashboard upgrade.
pub(super) async fn public_key_on_secret_routes_is_403(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let want = json!({"error": NEEDS_SECRET});
    let id = unique_id("pubkey");
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &id,
        "https://x.test/",
        json!({}),
    )
    .await?;
    let requests = [
        Req::get("/api/visitors").key(&t.public_key),
        Req::get(format!(
            "/api/visitors?apiKey={}",
            percent_encode(&t.public_key)
        )),
        Req::post("/api/send-video-invite")
            .key(&t.public_key)
            .json(&json!({"visitorId": id, "guestUrl": "https://video.test/g/1"})),
        Req::post("/api/send-video-invite").json(&json!({
            "apiKey": t.public_key, "visitorId": id, "guestUrl": "https://video.test/g/1"
        })),
    ];
    for req in requests {
        http.send(req).await?.expect_json(403, &want)?;
    }
    dashboard_refused_with(t, Some(&t.public_key), 403, NEEDS_SECRET).await?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}

/// The key may travel in the `apiKey` query parameter or the `apiKey` body field.
pub(super) async fn key_in_query_or_body_is_accepted(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("keyplaces");
    let ok = json!({"success": true, "sessionId": id});
    let body = track_body("pageview", &id, "https://x.test/", json!({}));
    http.send(
        Req::post(format!(
            "/track/visitor?apiKey={}",
            percent_encode(&t.public_key)
        ))
        .json(&body),
    )
    .await?
    .expect_json(200, &ok)?;
    let mut in_body = track_body("heartbeat", &id, "https://x.test/", json!({}));
    in_body["apiKey"] = json!(t.public_key);
    http.send(Req::post("/track/visitor").json(&in_body))
        .await?
        .expect_json(200, &ok)?;
    http.send(Req::get(format!(
        "/api/visitors?apiKey={}",
        percent_encode(&t.secret_key)
    )))
    .await?
    .expect_ok_json(200)?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}

/// Malformed JSON: 400 whose message mentions JSON, on every JSON route.
pub(super) async fn malformed_json_is_400(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let broken = r#"{"event":"pageview","visitor":{"visitorId":"x","#;
    let requests = [
        Req::post("/track/visitor")
            .key(&t.public_key)
            .raw("application/json", broken),
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .raw("application/json", broken),
        Req::post("/api/track/user-activity")
            .key(&t.public_key)
            .raw("application/json", broken),
    ];
    for req in requests {
        http.send(req).await?.expect_error_mentioning(400, "json")?;
    }
    Ok(())
}

/// A missing required field: 400 whose message names it.
pub(super) async fn missing_field_is_400_naming_it(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let cases = [
        (
            json!({"event": "pageview", "visitor": {"url": "https://x.test/"}, "website": "x.test"}),
            "visitorId",
        ),
        (json!({"event": "pageview", "website": "x.test"}), "visitor"),
        (
            json!({"visitor": {"visitorId": unique_id("noevent"), "url": "https://x.test/"}}),
            "event",
        ),
    ];
    for (body, field) in cases {
        track(&http, &t.public_key, &body)
            .await?
            .expect_error_mentioning(400, field)
            .map_err(|f| {
                super::because(f, &format!("`{field}` is missing or of the wrong type"))
            })?;
    }
    http.send(
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .json(&json!({"guestUrl": "https://video.test/g/1"})),
    )
    .await?
    .expect_error_mentioning(400, "visitorId")?;
    Ok(())
}

/// A field of the wrong type: 400 whose message names it.
pub(super) async fn wrong_type_is_400_naming_the_field(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("wrongtype");
    let cases = [
        (
            json!({"event": "pageview", "visitor": {"visitorId": 123, "url": "https://x.test/"}}),
            "visitorId",
        ),
        (json!({"event": "pageview", "visitor": "me"}), "visitor"),
        (
            json!({"event": 5, "visitor": {"visitorId": id, "url": "https://x.test/"}}),
            "event",
        ),
        (
            json!({"event": "pageview", "visitor": {"visitorId": id, "url": 42}}),
            "url",
        ),
        (
            json!({"event": "pageview", "visitor": {"visitorId": id, "url": "https://x.test/", "tabId": 7}}),
            "tabId",
        ),
    ];
    for (body, field) in cases {
        track(&http, &t.public_key, &body)
            .await?
            .expect_error_mentioning(400, field)
            .map_err(|f| {
                super::because(f, &format!("`{field}` is missing or of the wrong type"))
            })?;
    }
    Ok(())
}

/// `visitorId` and `tabId` ≤ 128 bytes, `visibility` and `event` from their lists: the limits
/// themselves pass, one byte more is a 400 naming the field. A `url` over 2048 bytes is
/// accepted and cut to 2048 bytes (real pages have long tracking query strings).
pub(super) async fn field_limits_are_enforced(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let base = unique_id("limits");
    let long_id = format!("{base}{}", "v".repeat(128 - base.len()));
    let long_url = format!("https://x.test/{}", "p".repeat(2048 - 15));
    let long_tab = "t".repeat(128);
    // At the limits: accepted.
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &long_id,
        &long_url,
        json!({"tabId": long_tab}),
    )
    .await?;
    leave_ok(&http, &t.public_key, &long_id, None).await?;
    let id = unique_id("limits");
    let over = [
        (
            track_body(
                "pageview",
                &format!("{long_id}v"),
                "https://x.test/",
                json!({}),
            ),
            "visitorId",
            "`visitorId` is 129 bytes (limit 128)",
        ),
        (
            track_body(
                "pageview",
                &id,
                "https://x.test/",
                json!({"tabId": format!("{long_tab}t")}),
            ),
            "tabId",
            "`tabId` is 129 bytes (limit 128)",
        ),
        (
            track_body(
                "pageview",
                &id,
                "https://x.test/",
                json!({"visibility": "sideways"}),
            ),
            "visibility",
            "`visibility` is \"sideways\" (visible | hidden)",
        ),
        (
            track_body("explode", &id, "https://x.test/", json!({})),
            "event",
            "`event` is \"explode\" (pageview | heartbeat | visibility | leave)",
        ),
    ];
    let cut_id = unique_id("longurl");
    track_ok(
        &http,
        &t.public_key,
        "pageview",
        &cut_id,
        &format!("{long_url}pppp"),
        json!({}),
    )
    .await?;
    let listed = listed_visitor(&http, &t.secret_key, &cut_id).await?;
    let url_len = listed.get("url").and_then(Value::as_str).map(str::len);
    if url_len != Some(2048) {
        return Err(Failure::Mismatch {
            sent: format!("POST /track/visitor with a 2052-byte url for {cut_id}"),
            expected: "the visitor listed with its url cut to 2048 bytes".to_owned(),
            got: format!("url length {url_len:?} in {listed}"),
        });
    }
    leave_ok(&http, &t.public_key, &cut_id, None).await?;
    for (body, field, why) in over {
        track(&http, &t.public_key, &body)
            .await?
            .expect_error_mentioning(400, field)
            .map_err(|f| super::because(f, why))?;
    }
    Ok(())
}

/// JSON is accepted whatever the content type says (never a 415): `text/plain` and none.
pub(super) async fn json_is_accepted_with_any_content_type(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("ctype");
    let ok = json!({"success": true, "sessionId": id});
    let body = track_body("pageview", &id, "https://x.test/", json!({})).to_string();
    http.send(
        Req::post("/track/visitor")
            .key(&t.public_key)
            .raw("text/plain;charset=UTF-8", body.clone()),
    )
    .await?
    .expect_json(200, &ok)?;
    http.send(
        Req::post("/track/visitor")
            .key(&t.public_key)
            .raw("application/x-www-form-urlencoded", body),
    )
    .await?
    .expect_json(200, &ok)?;
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}

/// Unknown routes: 404 with the error shape.
pub(super) async fn unknown_route_is_404(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let requests = [
        Req::get("/nope"),
        Req::get("/track/visitor/extra"),
        Req::post("/api/nope").key(&t.secret_key).json(&json!({})),
        // Not under `/api/visitors/`: the contract gives the secret key "deletion" without
        // naming its path, and a host may serve `DELETE /api/visitors/{id}` there.
        Req::get("/api/no/such/route").key(&t.secret_key),
        Req::get("/track").key(&t.public_key),
    ];
    for req in requests {
        http.send(req).await?.expect_error(404)?;
    }
    Ok(())
}

/// A known route with the wrong method: 405 with an `Allow` header naming the right one.
pub(super) async fn wrong_method_is_405_with_allow(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let cases = [
        (Method::GET, "/track/visitor", "POST", &t.public_key),
        (Method::DELETE, "/track/visitor", "POST", &t.public_key),
        (Method::PUT, "/track/leave", "POST", &t.public_key),
        (Method::POST, "/api/visitors", "GET", &t.secret_key),
        (Method::GET, "/api/send-video-invite", "POST", &t.secret_key),
        (Method::POST, "/", "GET", &t.public_key),
    ];
    for (method, path, allowed, key) in cases {
        let answer = http.send(Req::new(method, path).key(key)).await?;
        answer.expect_error(405)?;
        allow_lists(&answer, allowed)?;
    }
    Ok(())
}

fn allow_lists(answer: &Answer, method: &str) -> Result<(), Failure> {
    let ok = answer.header("allow").is_some_and(|allow| {
        allow
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case(method))
    });
    if ok {
        Ok(())
    } else {
        Err(answer.fail(format!("HTTP 405 with an `Allow` header listing {method}")))
    }
}

/// A body over 64 KiB: 413 with the error shape.
pub(super) async fn body_over_64_kib_is_413(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("big");
    let body = track_body(
        "pageview",
        &id,
        "https://x.test/",
        json!({"referrer": format!("https://r.test/{}", "a".repeat(65 * 1024))}),
    );
    track(&http, &t.public_key, &body)
        .await?
        .expect_error(413)?;
    let mut activity = activity_batch(&t.public_key, &id, 1);
    activity["userEmail"] = json!(format!("{}@big.test", "a".repeat(70 * 1024)));
    http.send(Req::post("/api/track/user-activity").json(&activity))
        .await?
        .expect_error(413)?;
    Ok(())
}

/// A body sent without `Content-Length` (chunked) that grows past the limit is refused with
/// `413 {"error":…}` all the same: hosts that read bodies themselves cap the stream rather
/// than trusting a declared length (issue 17).
pub(super) async fn chunked_body_over_the_limit_is_413(t: &Target) -> Result<(), Failure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sent = "POST /track/visitor, Transfer-Encoding: chunked, 256 KiB of JSON".to_owned();
    let fail = |got: String| step_failure(sent.clone(), "HTTP 413 with {\"error\":…}", got);
    let url = reqwest::Url::parse(&format!(
        "{}/track/visitor",
        t.base_url.trim_end_matches('/')
    ))
    .map_err(|e| fail(format!("base URL: {e}")))?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         X-Tippen-API-Key: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        url.path(),
        t.public_key
    );
    let id = unique_id("chunked");
    let body = track_body(
        "pageview",
        &id,
        "https://x.test/",
        json!({"referrer": format!("https://r.test/{}", "a".repeat(256 * 1024))}),
    )
    .to_string()
    .into_bytes();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(16 * 1024) {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        write.write_all(b"0\r\n\r\n").await?;
        write.flush().await?;
        // Keep the write half open until the answer has been read.
        Ok::<_, std::io::Error>(write)
    });
    let mut answer = Vec::new();
    let read_all = read.read_to_end(&mut answer);
    let read_result = tokio::time::timeout(std::time::Duration::from_secs(10), read_all).await;
    writer.abort();
    match read_result {
        Err(_) => return Err(fail("no complete answer within 10 s".into())),
        // A reset after the answer arrived still leaves the answer to check.
        Ok(Err(e)) if answer.is_empty() => return Err(fail(format!("read: {e}"))),
        Ok(_) => {}
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return Err(fail(describe_bytes(&answer, 400)));
    };
    let status = head.split(' ').nth(1).unwrap_or_default();
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let error = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
    if status != "413" || error.is_none_or(|e| e.is_empty()) {
        return Err(fail(format!(
            "{head} / body {}",
            describe_bytes(body.as_bytes(), 400)
        )));
    }
    Ok(())
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A user-activity batch in Part A's shape with `n` events of every kind.
fn activity_batch(key: &str, user: &str, n: usize) -> Value {
    let kinds = [
        json!({"type": "route", "route": "/dashboard"}),
        json!({"type": "click", "element": "button.save", "route": "/dashboard"}),
        json!({"type": "form_submit", "formId": "signup", "route": "/onboarding"}),
        json!({"type": "page_time", "route": "/dashboard", "duration": 120000}),
        json!({"type": "error", "message": "Failed to load", "route": "/dashboard"}),
        json!({"type": "custom", "name": "feature_used", "data": {"feature": "export"}}),
    ];
    let start = crate::wire::now_ms();
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let mut e = kinds[i % kinds.len()].clone();
            e["timestamp"] = json!(start + i as i64 * 1000);
            e
        })
        .collect();
    json!({
        "apiKey": key,
        "userId": user,
        "userEmail": format!("{user}@acme.test"),
        "subscriptionTier": "free_trial",
        "events": events,
    })
}

/// 50 events: `200 {"success":true,"stored":50,"analyzed":true}`; 51 events: 413.
pub(super) async fn user_activity_batch_limit_is_50(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let user = unique_id("user");
    http.send(Req::post("/api/track/user-activity").json(&activity_batch(
        &t.public_key,
        &user,
        50,
    )))
    .await?
    .expect_json(
        200,
        &json!({"success": true, "stored": 50, "analyzed": true}),
    )?;
    http.send(Req::post("/api/track/user-activity").json(&activity_batch(
        &t.public_key,
        &user,
        51,
    )))
    .await?
    .expect_error(413)?;
    Ok(())
}

/// Garbage bodies, headers and keys never produce a 5xx: a 2xx is a JSON object, anything else
/// has the error shape. (Bytes that are not UTF-8 are [`non_utf8_input_is_never_a_server_error`].)
pub(super) async fn garbage_is_never_a_server_error(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("garbage");
    let track_bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"\"pageview\"".to_vec(),
        b"1e999999".to_vec(),
        b"-0".to_vec(),
        b"{\"event\":\"pageview\",\"visitor\":{\"visitorId\":1e400,\"url\":\"https://x.test/\"}}"
            .to_vec(),
        format!("{{\"event\":\"pageview\",\"visitor\":{{\"visitorId\":\"{id}\",\"url\":\"https://x.test/\",\"timestamp\":123456789012345678901234567890}}}}").into_bytes(),
        format!("{{\"event\":\"pageview\",\"visitor\":{{\"visitorId\":\"{id}\",\"url\":\"https://x.test/\",\"timestamp\":\"not a time\"}},\"website\":[1,2]}}").into_bytes(),
        format!("{{\"event\":\"pageview\",\"visitor\":{{\"visitorId\":\"{id}\",\"url\":\"https://x.test/\",\"visibility\":null,\"tabId\":null}}}}").into_bytes(),
        b"{\"event\":\"pageview\",\"visitor\":{\"visitorId\":\"\\ud800\",\"url\":\"https://x.test/\"}}".to_vec(),
        format!("{{\"event\":\"pageview\",\"visitor\":{{\"visitorId\":\"{id}\\u0000\",\"url\":\"https://x.test/\\u0000\"}}}}").into_bytes(),
        format!("{{\"event\":\"pageview\",\"event\":\"heartbeat\",\"visitor\":{{\"visitorId\":\"{id}\",\"url\":\"https://x.test/\"}}}}").into_bytes(),
        format!("\u{feff}{{\"event\":\"pageview\",\"visitor\":{{\"visitorId\":\"{id}\",\"url\":\"https://x.test/\"}}}}").into_bytes(),
        format!("{{\"event\":\"pageview\",\"visitor\":{{\"visitorId\":\"{id}\",\"url\":\"https://x.test/\"}}}} trailing").into_bytes(),
        b"{\"event\":\"pageview\",\"visitor\":{\"visitorId\":\"\",\"url\":\"\"}}".to_vec(),
        "[".repeat(20_000).into_bytes(),
        format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes(),
    ];
    let mut requests: Vec<Req> = track_bodies
        .iter()
        .map(|b| {
            Req::post("/track/visitor")
                .key(&t.public_key)
                .raw("application/json", b.clone())
        })
        .collect();
    let invite_bodies: [&[u8]; 4] = [
        b"",
        b"null",
        b"{\"visitorId\":[],\"guestUrl\":{}}",
        b"{\"visitorId\":\"\\ud800\",\"guestUrl\":1e999}",
    ];
    for body in invite_bodies {
        requests.push(
            Req::post("/api/send-video-invite")
                .key(&t.secret_key)
                .raw("application/json", body),
        );
    }
    let activity_bodies = [
        json!({"apiKey": t.public_key, "userId": id, "events": null}),
        json!({"apiKey": t.public_key, "userId": id, "events": {}}),
        json!({"apiKey": t.public_key, "userId": 1e300, "events": [{"type": "route"}]}),
        json!({"apiKey": t.public_key, "userId": id, "subscriptionTier": "platinum", "events": []}),
        json!({"apiKey": t.public_key, "userId": id, "events": [{"type": "warp", "timestamp": -1}]}),
        json!({"apiKey": t.public_key, "userId": id, "events": [{"type": "route", "timestamp": "yesterday"}]}),
        json!({"apiKey": t.public_key, "userId": id, "events": [{"type": "page_time", "duration": u64::MAX, "timestamp": u64::MAX}]}),
        json!({"apiKey": ["not", "a", "key"], "userId": id, "events": []}),
    ];
    for body in &activity_bodies {
        requests.push(Req::post("/api/track/user-activity").json(body));
    }
    for body in [&b""[..], b"null", b"garbage", b"{\"visitorId\":[]}"] {
        requests.push(
            Req::post("/track/leave")
                .key(&t.public_key)
                .raw("text/plain", body),
        );
    }
    requests.push(
        Req::post("/track/visitor")
            .key(&"k".repeat(4096))
            .json(&track_body("pageview", &id, "https://x.test/", json!({}))),
    );
    requests.push(Req::get("/api/visitors?apiKey=%FF%FE&apiKey=&apiKey"));
    requests.push(Req::get("/api/visitors?%%%=%%%").key(&t.secret_key));
    requests.push(Req::new(Method::PATCH, "/api/visitors").key(&t.secret_key));
    requests.push(Req::get("/%FF%FE/..%2F..%2Fetc%2Fpasswd"));
    for req in requests {
        let answer = http.send(req).await?;
        acceptable_non_error(&answer)?;
    }
    Ok(())
}

/// Bytes that are not UTF-8 — in a key header, in bodies declared JSON on the tracking and
/// invite routes, in a plain-text leave beacon — never produce a 5xx: a 2xx is a JSON object,
/// anything else has the error shape. A case of its own because some HTTP front ends refuse
/// such bytes before the host sees them (`cargo lambda watch`'s function URLs answer them
/// with their own 500), so a host can run this case through another entry point.
pub(super) async fn non_utf8_input_is_never_a_server_error(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("nonutf8");
    let requests = [
        Req::post("/track/visitor")
            .header_value(
                crate::http::KEY_HEADER,
                reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").map_err(|e| {
                    step_failure("building a header", "a header value", e.to_string())
                })?,
            )
            .json(&track_body("pageview", &id, "https://x.test/", json!({}))),
        Req::post("/track/visitor").key(&t.public_key).raw(
            "application/json",
            &b"{\"event\":\"pageview\",\"visitor\":{\"visitorId\":\"\xff\xfe\",\"url\":\"https://x.test/\"}}"[..],
        ),
        Req::post("/track/visitor")
            .key(&t.public_key)
            .raw("application/json", &b"\xff\xfe\xfd"[..]),
        Req::post("/api/send-video-invite")
            .key(&t.secret_key)
            .raw("application/json", &b"\xff"[..]),
        Req::post("/track/leave")
            .key(&t.public_key)
            .raw("text/plain", &b"\xff\xfe"[..]),
    ];
    for req in requests {
        let answer = http.send(req).await?;
        acceptable_non_error(&answer)?;
    }
    Ok(())
}

/// Any status below 500; a 2xx is a JSON object, a 4xx has the error shape.
fn acceptable_non_error(answer: &Answer) -> Result<(), Failure> {
    let status = answer.status.as_u16();
    if status >= 500 {
        return Err(answer.fail("any status below 500 (a client's garbage is a 4xx)"));
    }
    if (200..300).contains(&status) {
        answer.expect_ok_json(status)?;
    } else if status >= 400 {
        answer.error_shape(&format!(
            "HTTP {status} with a JSON body {{\"error\":\"<message>\"}} (exactly one string field)"
        ))?;
    }
    Ok(())
}

/// The served dashboard and tracker are told where the host's sockets are: the URLs the suite
/// was given (`TIPPEN_DASHBOARD_WS_URL`, `TIPPEN_VISITOR_WS_URL`) when they are elsewhere, none
/// when they are beside the HTTP routes.
pub(super) async fn served_pages_are_told_where_the_sockets_are(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let escape = |url: &str| {
        url.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
    };
    // A host whose sockets are not beside its HTTP routes (the suite was told where they are)
    // names them in the pages it serves; any other names none (the pages look beside them).
    let dashboard_meta = format!(
        r#"<meta name="tippen-dashboard-ws-url" content="{}">"#,
        t.dashboard_ws_url
            .as_deref()
            .map(escape)
            .unwrap_or_default()
    );
    let tracker_line = match &t.visitor_ws_url {
        Some(url) => format!(
            "var SERVED_VISITOR_WS_URL = {};",
            serde_json::to_string(url).unwrap_or_default()
        ),
        None => "var SERVED_VISITOR_WS_URL = '';".to_owned(),
    };
    for (path, want) in [
        ("/dashboard", dashboard_meta),
        ("/tippen-tracker.js", tracker_line),
    ] {
        let answer = http.send(Req::get(path)).await?;
        answer.expect_status(200)?;
        if !String::from_utf8_lossy(&answer.body).contains(&want) {
            return Err(answer.fail(format!(
                "HTTP 200 whose body contains {want:?} (where the host's sockets are)"
            )));
        }
    }
    Ok(())
}

/// The tracker script, the dashboard page and the demo page are served.
pub(super) async fn static_pages_are_served(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let pages = [
        ("/tippen-tracker.js", "application/javascript"),
        ("/dashboard", "text/html"),
        ("/demo", "text/html"),
    ];
    for (path, media) in pages {
        let answer = http.send(Req::get(path)).await?;
        answer.expect_status(200)?;
        if answer.header("content-type").map(media_type).as_deref() != Some(media) {
            return Err(answer.fail(format!("HTTP 200 with Content-Type: {media}")));
        }
        if answer.body.is_empty() {
            return Err(answer.fail("a non-empty body"));
        }
    }
    Ok(())
}
