//! Company enrichment through the suite's IPinfo stand-in ([`crate::StandIns`]): a visitor
//! from a public address (given in the target's client address header) is listed at once with
//! the fallback, and its company reaches the dashboards when the provider answers; the shared
//! cache serves another site; `/api/stats` counts exactly; Global Privacy Control skips the
//! lookup.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PROMPT, leave_ok, listed_visitor, step_failure};
use crate::dashboard::{Dashboard, is_update};
use crate::http::{Http, Req};
use crate::stand_ins::{STAND_IN_COMPANY, STAND_IN_DOMAIN};
use crate::wire::{describe_json, track_body, unique_id};
use crate::{ENRICHMENT_DELAY, Failure, IPINFO_TOKEN, StandIns, Target};

/// How long the company may take to reach a dashboard after the page view (the stand-in
/// answers after [`ENRICHMENT_DELAY`]; a host may hand the lookup to another process first).
const ENRICHED_WITHIN: Duration = Duration::from_secs(10);

/// A random globally reachable address in 9.0.0.0/8 (not special-purpose: looked up).
pub(super) fn random_public_ip() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write(unique_id("ip").as_bytes());
    let n = h.finish();
    let part = |shift: u32| 1 + (n >> shift) % 250;
    format!("9.{}.{}.{}", part(0), part(16), part(32))
}

pub(super) fn setup(t: &Target) -> Result<(&StandIns, &str), Failure> {
    match (&t.outbound.stand_ins, &t.outbound.client_ip_header) {
        (Some(s), Some(h)) => Ok((s, h.as_str())),
        _ => Err(step_failure(
            "(starting the case)",
            "the suite's stand-ins and a client address header",
            "not configured",
        )),
    }
}

/// `POST /track/visitor` of a page view of `id` with `key`, from `ip` (through `header`),
/// with `extra` headers; checks the success answer and returns when it arrived.
pub(super) async fn track_from(
    http: &Http,
    key: &str,
    id: &str,
    header: &str,
    ip: &str,
    extra: &[(&str, &str)],
) -> Result<Instant, Failure> {
    let mut req = Req::post("/track/visitor")
        .key(key)
        .header(header, ip)
        .json(&track_body(
            "pageview",
            id,
            "https://enrich.test/",
            json!({"tabId": "tab_1", "visibility": "hidden"}),
        ));
    for (name, value) in extra {
        req = req.header(name, value);
    }
    let answer = http.send(req).await?;
    let answered = Instant::now();
    let body = answer.expect_ok_json(200)?;
    if body["success"] != true || body["sessionId"] != id {
        return Err(answer.fail(format!(
            "HTTP 200 {{\"success\":true,\"sessionId\":\"{id}\"}}"
        )));
    }
    Ok(answered)
}

fn delta(before: &Value, after: &Value, field: &str) -> i64 {
    after[field].as_i64().unwrap_or(0) - before[field].as_i64().unwrap_or(0)
}

/// A new visitor of the main site from a public address: the tracking answer does not wait for
/// the provider, dashboards hear `new_visitor` with the fallback and then `enriched` with the
/// stand-in's company (`enrichmentSource` `provider`); the provider was asked once, with the
/// configured key. A visitor of another site (the legacy one) from the same address is listed
/// at once from the shared cache (`cache`, `isCached`), with no further request. `/api/stats`
/// counts exactly that: a miss and a credit on the main site, a cache hit on the other. On a
/// host keeping history, the identified visit, once closed, counts for the company in
/// `/api/companies` and is in `/api/companies/{domain}`'s timeline.
pub(super) async fn enrichment_reaches_dashboards_and_is_counted(
    t: &Target,
) -> Result<(), Failure> {
    let (s, header) = setup(t)?;
    let http = Http::new(t)?;
    let ip = random_public_ip();
    let before_main = super::stats::stats(&http, &t.secret_key).await?;
    let before_other = super::stats::stats(&http, &t.legacy_key).await?;
    let mut dashboard = Dashboard::connect(t, &t.secret_key).await?;
    let first = unique_id("enrich");
    let answered = track_from(&http, &t.public_key, &first, header, &ip, &[]).await?;
    dashboard.note(format!(
        "POST /track/visitor {first} with {header}: {ip} (a public address)"
    ));
    let (new, _) = dashboard
        .wait_for_any_order("VISITOR_UPDATE new_visitor", PROMPT, |m| {
            is_update(m, &first, "new_visitor")
        })
        .await?;
    if new["visitor"]["enrichmentSource"] != "fallback"
        || new["visitor"]["company"] != "Unknown Company"
    {
        return Err(dashboard.mismatch(
            "new_visitor listed at once with the fallback (\"Unknown Company\", enrichmentSource fallback), the lookup still running",
            &new,
        ));
    }
    let (enriched, _) = dashboard
        .wait_for_any_order(
            "VISITOR_UPDATE enriched with the stand-in's company",
            ENRICHED_WITHIN,
            |m| is_update(m, &first, "enriched"),
        )
        .await?;
    let v = &enriched["visitor"];
    if v["company"] != STAND_IN_COMPANY
        || v["enrichmentSource"] != "provider"
        || v["isCached"] != false
        || v["companyDomain"] != STAND_IN_DOMAIN
        || !v["location"].as_str().is_some_and(|l| l.contains("Zurich"))
    {
        return Err(dashboard.mismatch(
            &format!(
                "VISITOR_UPDATE enriched: company {STAND_IN_COMPANY}, companyDomain {STAND_IN_DOMAIN}, location in Zurich, enrichmentSource provider, isCached false"
            ),
            &enriched,
        ));
    }
    let asked = s.ipinfo_requests(&ip);
    let step = format!("the page view of {first} from {ip}");
    if asked.len() != 1
        || asked[0].authorization.as_deref() != Some(&format!("Bearer {IPINFO_TOKEN}"))
    {
        return Err(step_failure(
            step,
            format!("the provider asked once for {ip} with `Authorization: Bearer {IPINFO_TOKEN}`"),
            format!("{asked:?}"),
        ));
    }
    if asked[0].answered_at.is_none_or(|at| answered >= at) {
        return Err(step_failure(
            step,
            format!(
                "the tracking answer before the provider's (it takes {ENRICHMENT_DELAY:?}): the answer does not wait for the lookup"
            ),
            "the tracking answer came after the provider answered",
        ));
    }

    let second = unique_id("enrich_other");
    track_from(&http, &t.legacy_key, &second, header, &ip, &[]).await?;
    let listed = listed_visitor(&http, &t.legacy_key, &second).await?;
    if listed["company"] != STAND_IN_COMPANY
        || listed["enrichmentSource"] != "cache"
        || listed["isCached"] != true
    {
        return Err(step_failure(
            format!("GET /api/visitors (legacy site) after {second}'s page view from {ip}"),
            format!(
                "the company {STAND_IN_COMPANY} at once from the shared cache (enrichmentSource cache, isCached true)"
            ),
            describe_json(&listed),
        ));
    }
    tokio::time::sleep(ENRICHMENT_DELAY + Duration::from_millis(300)).await;
    let total = s.ipinfo_requests(&ip).len();
    if total != 1 {
        return Err(step_failure(
            format!("two sites' visitors from {ip}"),
            "one provider request for the address",
            format!("{total}"),
        ));
    }
    let after_main = super::stats::stats(&http, &t.secret_key).await?;
    let after_other = super::stats::stats(&http, &t.legacy_key).await?;
    let main = [("creditsUsed", 1), ("cacheMisses", 1), ("cacheHits", 0)];
    let other = [
        ("cacheHits", 1),
        ("creditsSavedByCache", 1),
        ("creditsUsed", 0),
        ("cacheMisses", 0),
    ];
    for (site, before, after, want) in [
        ("main", &before_main, &after_main, &main[..]),
        ("legacy", &before_other, &after_other, &other[..]),
    ] {
        if want.iter().any(|(f, n)| delta(before, after, f) != *n) {
            return Err(step_failure(
                format!("GET /api/stats of the {site} site before and after"),
                format!("changes {want:?}"),
                format!("{} -> {}", describe_json(before), describe_json(after)),
            ));
        }
    }
    leave_ok(&http, &t.public_key, &first, None).await?;
    leave_ok(&http, &t.legacy_key, &second, None).await?;
    if t.history {
        // The identified visit, once closed, counts for its company.
        dashboard
            .wait_for_any_order(
                "VISITOR_REMOVED",
                t.leave_linger + super::LATE + PROMPT,
                |m| crate::dashboard::is_removal(m, &first),
            )
            .await?;
        super::history::counted_for_the_stand_in_company(&http, t, &first).await?;
    }
    dashboard.close().await;
    Ok(())
}

/// A browser sending `Sec-GPC: 1` from a public address gets no lookup (the site honours
/// Global Privacy Control by default): listed with the fallback, the provider never asked,
/// `skipsByReason.globalPrivacyControl` counted.
pub(super) async fn global_privacy_control_skips_the_lookup(t: &Target) -> Result<(), Failure> {
    let (s, header) = setup(t)?;
    let http = Http::new(t)?;
    let ip = random_public_ip();
    let before = super::stats::stats(&http, &t.secret_key).await?;
    let id = unique_id("gpc");
    track_from(&http, &t.public_key, &id, header, &ip, &[("Sec-GPC", "1")]).await?;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if listed["company"] != "Unknown Company" || listed["enrichmentSource"] != "fallback" {
        return Err(step_failure(
            format!("GET /api/visitors after {id}'s page view from {ip} with Sec-GPC: 1"),
            "company \"Unknown Company\", enrichmentSource fallback",
            describe_json(&listed),
        ));
    }
    tokio::time::sleep(ENRICHMENT_DELAY + Duration::from_millis(300)).await;
    let asked = s.ipinfo_requests(&ip).len();
    let after = super::stats::stats(&http, &t.secret_key).await?;
    let gpc = |v: &Value| {
        v["skipsByReason"]["globalPrivacyControl"]
            .as_i64()
            .unwrap_or(0)
    };
    if asked != 0 || gpc(&after) - gpc(&before) != 1 {
        return Err(step_failure(
            format!("a page view from {ip} with Sec-GPC: 1"),
            "no provider request, skipsByReason.globalPrivacyControl + 1",
            format!(
                "{asked} provider request(s); stats {} -> {}",
                describe_json(&before),
                describe_json(&after)
            ),
        ));
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    Ok(())
}

/// Do Not Track where the site honours it (the main site is configured with
/// `"honorDnt":true`): a browser sending `DNT: 1` from a public address gets no lookup,
/// `skipsByReason.doNotTrack` counted. On a site that does not (the legacy site, by default)
/// the same header changes nothing: its address is looked up.
pub(super) async fn do_not_track_skips_the_lookup_where_the_site_honours_it(
    t: &Target,
) -> Result<(), Failure> {
    let (s, header) = setup(t)?;
    let http = Http::new(t)?;
    let ip = random_public_ip();
    let before = super::stats::stats(&http, &t.secret_key).await?;
    let id = unique_id("dnt");
    track_from(&http, &t.public_key, &id, header, &ip, &[("DNT", "1")]).await?;
    let listed = listed_visitor(&http, &t.secret_key, &id).await?;
    if listed["company"] != "Unknown Company" || listed["enrichmentSource"] != "fallback" {
        return Err(step_failure(
            format!("GET /api/visitors after {id}'s page view from {ip} with DNT: 1"),
            "company \"Unknown Company\", enrichmentSource fallback",
            describe_json(&listed),
        ));
    }
    let other_ip = random_public_ip();
    let other = unique_id("dnt_unhonoured");
    let unhonoured = t.verified_site_public_key.as_deref();
    if let Some(key) = unhonoured {
        track_from(&http, key, &other, header, &other_ip, &[("DNT", "1")]).await?;
    }
    tokio::time::sleep(ENRICHMENT_DELAY + Duration::from_millis(300)).await;
    let after = super::stats::stats(&http, &t.secret_key).await?;
    let dnt = |v: &Value| v["skipsByReason"]["doNotTrack"].as_i64().unwrap_or(0);
    let asked = s.ipinfo_requests(&ip).len();
    if asked != 0 || dnt(&after) - dnt(&before) != 1 {
        return Err(step_failure(
            format!("a page view from {ip} with DNT: 1 to a site honouring it"),
            "no provider request, skipsByReason.doNotTrack + 1",
            format!(
                "{asked} provider request(s); stats {} -> {}",
                describe_json(&before),
                describe_json(&after)
            ),
        ));
    }
    leave_ok(&http, &t.public_key, &id, None).await?;
    let Some(key) = unhonoured else {
        return Ok(());
    };
    // The lookup of the site that does not honour DNT is on its way or done.
    let deadline = Instant::now() + ENRICHED_WITHIN;
    while s.ipinfo_requests(&other_ip).is_empty() {
        if Instant::now() > deadline {
            return Err(step_failure(
                format!("a page view from {other_ip} with DNT: 1 to a site without honorDnt"),
                "the provider asked for the address",
                format!("no request within {} s", ENRICHED_WITHIN.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    leave_ok(&http, key, &other, None).await?;
    Ok(())
}
