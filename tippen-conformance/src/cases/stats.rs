//! `GET /api/stats`: the site's enrichment accounting.

use serde_json::Value;

use crate::dashboard::percent_encode;
use crate::http::{Http, Req};
use crate::{Failure, Target};

/// The counters `GET /api/stats` answers with (non-negative integers).
pub(crate) const COUNTERS: [&str; 8] = [
    "creditsUsed",
    "creditsSavedByCache",
    "creditsSavedBySingleFlight",
    "cacheHits",
    "negativeCacheHits",
    "cacheMisses",
    "queueOverflows",
    "creditsSaved",
];

/// `GET /api/stats` with `key`, checked against the contract's shape; the answer's body.
pub(crate) async fn stats(http: &Http, key: &str) -> Result<Value, Failure> {
    let answer = http.send(Req::get("/api/stats").key(key)).await?;
    let body = answer.expect_ok_json(200)?;
    let counters_ok = COUNTERS.iter().all(|c| body[c].as_u64().is_some());
    let maps_ok = ["failures", "skipsByReason"].iter().all(|m| {
        body[m]
            .as_object()
            .is_some_and(|o| o.values().all(|v| v.as_u64().is_some()))
    });
    let ratio_ok = body["hitRatio"].is_null() || body["hitRatio"].as_f64().is_some();
    if counters_ok && maps_ok && ratio_ok {
        Ok(body)
    } else {
        Err(answer.fail(format!(
            "HTTP 200 with integer {}, objects of integers `failures` and `skipsByReason`, `hitRatio` a number or null",
            COUNTERS.join(", ")
        )))
    }
}

/// `GET /api/stats` answers the accounting with the secret key (in the header or the query)
/// or the legacy key; the public key is refused (403), no key 401.
pub(super) async fn api_stats_answers_the_accounting(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let body = stats(&http, &t.secret_key).await?;
    let saved = body["creditsSavedByCache"].as_u64().unwrap_or(0)
        + body["creditsSavedBySingleFlight"].as_u64().unwrap_or(0);
    if body["creditsSaved"].as_u64() != Some(saved) {
        return Err(super::step_failure(
            "GET /api/stats",
            "creditsSaved = creditsSavedByCache + creditsSavedBySingleFlight",
            crate::wire::describe_json(&body),
        ));
    }
    stats(&http, &t.legacy_key).await?;
    http.send(Req::get(format!(
        "/api/stats?apiKey={}",
        percent_encode(&t.secret_key)
    )))
    .await?
    .expect_ok_json(200)?;
    http.send(Req::get("/api/stats").key(&t.public_key))
        .await?
        .expect_error(403)?;
    http.send(Req::get("/api/stats")).await?.expect_error(401)?;
    Ok(())
}
