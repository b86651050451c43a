//! CORS: keys, not cookies, authenticate, so every origin is allowed.

use reqwest::Method;
use serde_json::json;

use super::leave_ok;
use crate::http::{Answer, Http, Req};
use crate::wire::{track_body, unique_id};
use crate::{Failure, Target};

const ORIGIN: &str = "https://customer-site.test";

/// True when the comma-separated header `name` lists `item` (case-insensitive), or is `*`.
fn lists(answer: &Answer, name: &str, item: &str) -> bool {
    answer.header(name).is_some_and(|value| {
        value
            .split(',')
            .any(|v| v.trim().eq_ignore_ascii_case(item) || v.trim() == "*")
    })
}

/// `OPTIONS` preflights from a foreign origin: 204 (200 tolerated) with
/// `Access-Control-Allow-Origin: *`, the asked-for method allowed, `Content-Type` and
/// `X-Tippen-API-Key` allowed, `Access-Control-Max-Age: 86400`.
pub(super) async fn preflight_is_answered(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let routes = [
        ("/track/visitor", "POST"),
        ("/track/leave", "POST"),
        ("/api/visitors", "GET"),
        ("/api/send-video-invite", "POST"),
        ("/api/track/user-activity", "POST"),
        ("/api/operator/sites/any", "PATCH"),
        ("/api/members/any", "DELETE"),
    ];
    for (path, method) in routes {
        let answer = http
            .send(
                Req::new(Method::OPTIONS, path)
                    .header("Origin", ORIGIN)
                    .header("Access-Control-Request-Method", method)
                    .header(
                        "Access-Control-Request-Headers",
                        "content-type,x-tippen-api-key",
                    ),
            )
            .await?;
        let status = answer.status.as_u16();
        if status != 204 && status != 200 {
            return Err(answer.fail("HTTP 204 (CORS preflight)"));
        }
        if answer.header("access-control-allow-origin") != Some("*") {
            return Err(answer.fail("Access-Control-Allow-Origin: *"));
        }
        if !lists(&answer, "access-control-allow-methods", method) {
            return Err(answer.fail(format!(
                "Access-Control-Allow-Methods listing {method} (contract: GET, POST, PUT, PATCH, DELETE, OPTIONS)"
            )));
        }
        for header in ["X-Tippen-API-Key", "Content-Type"] {
            if !lists(&answer, "access-control-allow-headers", header) {
                return Err(answer.fail(format!(
                    "Access-Control-Allow-Headers listing {header} (contract: Content-Type, X-Tippen-API-Key)"
                )));
            }
        }
        if answer.header("access-control-max-age") != Some("86400") {
            return Err(answer.fail("Access-Control-Max-Age: 86400"));
        }
    }
    Ok(())
}

/// Ordinary answers, successes and errors alike, carry `Access-Control-Allow-Origin: *`.
pub(super) async fn every_response_allows_any_origin(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let id = unique_id("cors");
    let requests = [
        Req::get("/"),
        Req::post("/track/visitor")
            .key(&t.public_key)
            .json(&track_body("pageview", &id, "https://x.test/", json!({}))),
        Req::get("/api/visitors").key(&t.secret_key),
        Req::post("/track/visitor").json(&track_body(
            "pageview",
            &id,
            "https://x.test/",
            json!({}),
        )),
        Req::get("/api/visitors").key(&t.public_key),
        Req::post("/track/visitor")
            .key(&t.public_key)
            .raw("application/json", "{"),
        Req::get("/nope"),
        Req::get("/track/visitor").key(&t.public_key),
    ];
    for req in requests {
        let answer = http.send(req.header("Origin", ORIGIN)).await?;
        if answer.header("access-control-allow-origin") != Some("*") {
            return Err(answer.fail(format!(
                "HTTP {} carrying Access-Control-Allow-Origin: *",
                answer.status.as_u16()
            )));
        }
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}
