//! Visit history: `GET /api/visits`, `/api/visits/{id}`, `/api/companies`,
//! `/api/companies/{domain}`, `/api/analytics`, CSV, erasure.
//!
//! A host declares whether it keeps history ([`Target::history`], the runner's
//! `--with history`). With history, these cases check the visits; without, they check that
//! the history routes answer `501 {"error":…}` (never a crash, never an empty success).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{PROMPT, Sent, leave_ok, step_failure, track_ok};
use crate::dashboard::{Dashboard, is_removal};
use crate::http::{Answer, Http, Req};
use crate::stand_ins::STAND_IN_DOMAIN;
use crate::wire::unique_id;
use crate::{Failure, Target};

/// A host without history answers every history route with the error shape and 501.
async fn history_is_off(http: &Http, t: &Target) -> Result<(), Failure> {
    for path in [
        "/api/visits",
        "/api/visits/vis_0000000000000000",
        "/api/companies?window=7d",
        "/api/companies/acme.example",
        "/api/analytics?window=24h",
    ] {
        http.send(Req::get(path).key(&t.secret_key))
            .await?
            .expect_error(501)?;
    }
    Ok(())
}

fn get(path: String, t: &Target) -> Req {
    Req::get(path).key(&t.secret_key)
}

/// The visits of `visitor` as `GET /api/visits?visitor=` lists them.
async fn visits_of(
    http: &Http,
    t: &Target,
    visitor: &str,
) -> Result<(Vec<Value>, Answer), Failure> {
    let answer = http
        .send(get(format!("/api/visits?visitor={visitor}"), t))
        .await?;
    let body = answer.expect_ok_json(200)?;
    let visits = body["visits"]
        .as_array()
        .cloned()
        .ok_or_else(|| answer.fail("a JSON body with a `visits` array"))?;
    Ok((visits, answer))
}

fn totals(analytics: &Value) -> (u64, u64) {
    (
        analytics["visits"].as_u64().unwrap_or(0),
        analytics["pageViews"].as_u64().unwrap_or(0),
    )
}

async fn analytics(http: &Http, t: &Target) -> Result<Value, Failure> {
    http.send(get("/api/analytics?window=24h".to_owned(), t))
        .await?
        .expect_ok_json(200)
}

/// Bounds of the server's time between two events: from the first request's answer to the
/// second's sending at least, from the first's sending to the second's answer at most (plus
/// a millisecond of rounding either way).
fn between(a: Sent, b: Sent) -> (u64, u64) {
    let lo = b.at.saturating_duration_since(a.answered).as_millis() as u64;
    let hi = b.answered.saturating_duration_since(a.at).as_millis() as u64;
    (lo.saturating_sub(1), hi + 1)
}

/// A visitor browses three pages and leaves: after its removal `GET /api/visits` has one
/// visit with the three pages in order, each lasting (by the server's clock) between what
/// the requests' timings allow; `/api/visits/{id}` returns it; the analytics count it; the
/// CSV export parses with a standard CSV reader and has its row; `DELETE
/// /api/visitors/{id}` erases it (`/api/visits/{id}` is 404 after).
pub(super) async fn a_visit_of_three_pages_is_kept_exported_and_erased(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    if !t.history {
        return history_is_off(&http, t).await;
    }
    let id = unique_id("history");
    let before = totals(&analytics(&http, t).await?);
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let base = format!("https://conformance.test/{id}");
    let urls = [
        format!("{base}/?utm_source=conformance"),
        format!("{base}/pricing"),
        format!("{base}/docs"),
    ];
    let paths = [
        format!("/{id}/"),
        format!("/{id}/pricing"),
        format!("/{id}/docs"),
    ];
    let mut sent = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        if i > 0 {
            // Time on the page, as the server will measure it (bounded below).
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        sent.push(track_ok(&http, &t.public_key, "pageview", &id, url, json!({})).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = leave_ok(&http, &t.public_key, &id, None).await?;
    dashboard.note(format!("three page views and an exit beacon of {id}"));
    dashboard
        .wait_for(
            "VISITOR_REMOVED",
            t.leave_linger + super::LATE + PROMPT,
            |m| is_removal(m, &id),
        )
        .await?;
    dashboard.close().await;

    // The visit is written before the removal is announced.
    let (visits, answer) = visits_of(&http, t, &id).await?;
    let [visit] = visits.as_slice() else {
        return Err(answer.fail(format!("exactly one visit of {id}")));
    };
    let pages: Vec<(&str, u64)> = visit["pages"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|p| {
                    (
                        p["path"].as_str().unwrap_or(""),
                        p["durationMs"].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let ends = [sent[1], sent[2], left];
    let ok = pages.len() == 3
        && pages.iter().enumerate().all(|(i, (path, ms))| {
            let (lo, hi) = between(sent[i], ends[i]);
            *path == paths[i] && (lo..=hi).contains(ms)
        });
    if !ok {
        let want: Vec<String> = (0..3)
            .map(|i| {
                let (lo, hi) = between(sent[i], ends[i]);
                format!("{} for {lo}..={hi} ms", paths[i])
            })
            .collect();
        return Err(answer.fail(format!("pages in order: {}", want.join(", "))));
    }
    if visit["landingPage"] != paths[0].as_str()
        || visit["exitPage"] != paths[2].as_str()
        || visit["utm"]["source"] != "conformance"
        || visit["endReason"] != "left"
    {
        return Err(
            answer.fail("landingPage, exitPage, utm.source `conformance` and endReason `left`")
        );
    }
    let visit_id = visit["visitId"].as_str().unwrap_or_default().to_owned();
    let one = http.send(get(format!("/api/visits/{visit_id}"), t)).await?;
    if &one.expect_ok_json(200)? != visit {
        return Err(one.fail("the same visit as the list"));
    }

    let after = analytics(&http, t).await?;
    let (visits_now, views_now) = totals(&after);
    if visits_now < before.0 + 1 || views_now < before.1 + 3 {
        return Err(step_failure(
            "GET /api/analytics?window=24h after the visit",
            format!(
                "visits >= {} and pageViews >= {} (one more visit of three pages)",
                before.0 + 1,
                before.1 + 3
            ),
            after.to_string(),
        ));
    }

    let csv = http
        .send(get(format!("/api/visits?visitor={id}&format=csv"), t))
        .await?;
    csv.expect_status(200)?;
    if !csv
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/csv"))
    {
        return Err(csv.fail("Content-Type: text/csv"));
    }
    let mut reader = csv::Reader::from_reader(csv.body.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| csv.fail(format!("a CSV header row ({e})")))?
        .clone();
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .map_err(|e| csv.fail(format!("CSV a standard reader parses ({e})")))?;
    let column = |name: &str| headers.iter().position(|h| h == name);
    let row_ok = rows.len() == 1
        && column("visitId").is_some_and(|c| rows[0].get(c) == Some(visit_id.as_str()))
        && column("pages").is_some_and(|c| {
            rows[0].get(c).is_some_and(|p| {
                let at = |s: &str| p.find(&format!("{s} ("));
                matches!((at(&paths[0]), at(&paths[1]), at(&paths[2])), (Some(a), Some(b), Some(c)) if a < b && b < c)
            })
        });
    if !row_ok {
        return Err(csv.fail("one CSV row with the visit's id and its pages in order"));
    }

    http.send(Req::new(Method::DELETE, format!("/api/visitors/{id}")).key(&t.secret_key))
        .await?
        .expect_json(200, &json!({"success": true, "deleted": true}))?;
    let (visits, answer) = visits_of(&http, t, &id).await?;
    if !visits.is_empty() {
        return Err(answer.fail("no visits after the visitor was deleted"));
    }
    http.send(get(format!("/api/visits/{visit_id}"), t))
        .await?
        .expect_error(404)?;
    Ok(())
}

/// Bad history parameters are 400s naming the parameter; the public key is refused (403).
pub(super) async fn history_parameters_are_checked(t: &Target) -> Result<(), Failure> {
    let http = Http::new(t)?;
    if !t.history {
        return history_is_off(&http, t).await;
    }
    for (path, names) in [
        ("/api/visits?from=yesterday", "from"),
        ("/api/visits?limit=0", "limit"),
        ("/api/visits?cursor=%%%", "cursor"),
        ("/api/visits?format=xml", "format"),
        ("/api/companies?window=7w", "window"),
        ("/api/analytics?window=0d", "window"),
    ] {
        http.send(get(path.to_owned(), t))
            .await?
            .expect_error_mentioning(400, names)?;
    }
    http.send(Req::get("/api/visits").key(&t.public_key))
        .await?
        .expect_error(403)?;
    http.send(get("/api/visits/vis_0000000000000000".to_owned(), t))
        .await?
        .expect_error(404)?;
    Ok(())
}

/// With history: the closed visit of `visitor` (identified as the IPinfo stand-in's company,
/// on the main site) is counted in `GET /api/companies` under the company's domain, and
/// `GET /api/companies/{domain}` lists it in its timeline. (Part of
/// `enrichment_reaches_dashboards_and_is_counted`, whose lookup identifies it: a case of its
/// own would add a lookup to the counters that case checks.)
pub(super) async fn counted_for_the_stand_in_company(
    http: &Http,
    t: &Target,
    visitor: &str,
) -> Result<(), Failure> {
    let answer = http
        .send(get("/api/companies?window=7d".to_owned(), t))
        .await?;
    let body = answer.expect_ok_json(200)?;
    let counted = body["companies"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["key"] == STAND_IN_DOMAIN && c["visits"].as_u64() >= Some(1))
    });
    if !counted {
        return Err(answer.fail(format!(
            "{STAND_IN_DOMAIN} among the companies, with visits"
        )));
    }
    let detail = http
        .send(get(
            format!("/api/companies/{STAND_IN_DOMAIN}?limit=500"),
            t,
        ))
        .await?;
    let body = detail.expect_ok_json(200)?;
    let listed = body["visits"]
        .as_array()
        .is_some_and(|vs| vs.iter().any(|v| v["visitorId"] == visitor));
    if !listed || body["summary"]["key"] != STAND_IN_DOMAIN {
        return Err(detail.fail(format!(
            "the company's summary and a visit of {visitor} in its timeline"
        )));
    }
    Ok(())
}
