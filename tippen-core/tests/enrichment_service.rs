//! Enrichment through the service and the HTTP contract: skips, cache hits, lookups asked of
//! the host, completion pushed to dashboards, and the stats endpoint.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use tippen_core::Effects as Handled;
use tippen_core::SiteId;
use tippen_core::api::RequestContext;
use tippen_core::enrichment::{CompanyProfile, LookupFailure};

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

fn ping_from(h: &Harness, key: &str, visitor: &str, ip: &str, headers: &[(&str, &str)]) -> Handled {
    ping_as(h, key, visitor, ip, CHROME, headers)
}

fn ping_as(
    h: &Harness,
    key: &str,
    visitor: &str,
    ip: &str,
    user_agent: &str,
    headers: &[(&str, &str)],
) -> Handled {
    let body = format!(
        r#"{{"event":"pageview","visitor":{{"visitorId":"{visitor}","url":"https://e.example/","userAgent":"{user_agent}"}},"website":"e.example"}}"#
    );
    let mut b = http::Request::post("/track/visitor").header("X-Tippen-API-Key", key);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let ctx = RequestContext {
        client_ip: Some(ip.parse().unwrap()),
        ..RequestContext::default()
    };
    let handled = block(h.tippen.handle(b.body(Bytes::from(body)).unwrap(), &ctx));
    assert_eq!(handled.response.as_ref().unwrap().status(), 200);
    handled
}

fn visitor_of(h: &Handled) -> Value {
    let m: Value = serde_json::from_str(&h.broadcasts[0]).unwrap();
    m["visitor"].clone()
}

fn stats(h: &Harness, key: &str) -> Value {
    let r = h.send("GET", &format!("/api/stats?apiKey={key}"), &[], "");
    assert_eq!(
        r.response.as_ref().unwrap().status(),
        200,
        "{:?}",
        r.response.as_ref().unwrap().body()
    );
    body_json(&r)
}

fn acme() -> CompanyProfile {
    CompanyProfile {
        name: "Acme Corp".into(),
        domain: Some("acme.example".into()),
        industry: Some("Anvils".into()),
        revenue_range: Some("$10m-$50m".into()),
        employee_range: Some("51-200".into()),
        location: Some("Springfield, US".into()),
    }
}

#[test]
fn a_public_address_asks_for_one_lookup_and_the_company_follows() {
    let h = harness();
    let r = ping_from(&h, "pk_a", "v1", "8.8.8.8", &[]);
    let v = visitor_of(&r);
    assert_eq!(v["company"], "Unknown Company");
    assert_eq!(v["enrichmentSource"], "fallback");
    assert_eq!(r.lookups.len(), 1);
    let ip: IpAddr = "8.8.8.8".parse().unwrap();
    assert_eq!(r.lookups[0].ip, ip);
    assert_eq!(r.lookups[0].visitor_id, "v1");
    assert_eq!(r.lookups[0].site, SiteId::from("a"));

    // A heartbeat of the same visit asks for nothing.
    let hb = r#"{"event":"heartbeat","visitor":{"visitorId":"v1","url":"https://e.example/"}}"#;
    let ctx = RequestContext {
        client_ip: Some(ip),
        ..RequestContext::default()
    };
    let req = http::Request::post("/track/visitor")
        .header("X-Tippen-API-Key", "pk_a")
        .body(Bytes::from(hb))
        .unwrap();
    assert!(block(h.tippen.handle(req, &ctx)).lookups.is_empty());

    let result = Ok(acme());
    block(h.tippen.cache_lookup(ip, &result))
        .unwrap()
        .expect("cached");
    let out = block(h.tippen.complete_lookup(&SiteId::from("a"), "v1", &result)).unwrap();
    assert_eq!(out.messages.len(), 1);
    let m: Value = serde_json::from_str(&out.messages[0].to_json()).unwrap();
    assert_eq!(m["type"], "VISITOR_UPDATE");
    assert_eq!(m["event"], "enriched");
    assert_eq!(m["visitor"]["company"], "Acme Corp");
    assert_eq!(m["visitor"]["companyDomain"], "acme.example");
    assert_eq!(m["visitor"]["industry"], "Anvils");
    assert_eq!(m["visitor"]["revenue"], "$10m-$50m");
    assert_eq!(m["visitor"]["employees"], "51-200");
    assert_eq!(m["visitor"]["enrichmentSource"], "provider");
    assert_eq!(m["visitor"]["isCached"], false);
    assert!(m["visitor"]["enrichedAt"].is_string());
    // Completing twice changes nothing more.
    let again = block(h.tippen.complete_lookup(&SiteId::from("a"), "v1", &result)).unwrap();
    assert!(again.messages.is_empty());

    // Another site's visitor from the same address: a cache hit, no lookup, a credit saved.
    let r = ping_from(&h, "pk_b", "w1", "8.8.8.8", &[]);
    assert!(r.lookups.is_empty());
    let v = visitor_of(&r);
    assert_eq!(v["company"], "Acme Corp");
    assert_eq!(v["enrichmentSource"], "cache");
    assert_eq!(v["isCached"], true);
    let sb = stats(&h, "sk_b");
    assert_eq!(sb["cacheHits"], 1);
    assert_eq!(sb["creditsSaved"], 1);
    assert_eq!(sb["hitRatio"], 1.0);
    let sa = stats(&h, "sk_a");
    assert_eq!(sa["cacheMisses"], 1);
    assert_eq!(sa["cacheHits"], 0);
}

#[test]
fn failures_leave_the_fallback_and_only_not_found_is_cached() {
    let h = harness();
    let ip: IpAddr = "9.9.9.9".parse().unwrap();
    ping_from(&h, "pk_a", "v1", "9.9.9.9", &[]);
    let quota = Err(LookupFailure::QuotaExhausted);
    assert_eq!(block(h.tippen.cache_lookup(ip, &quota)).unwrap(), None);
    let out = block(h.tippen.complete_lookup(&SiteId::from("a"), "v1", &quota)).unwrap();
    assert!(out.messages.is_empty());
    assert_eq!(ping_from(&h, "pk_a", "v2", "9.9.9.9", &[]).lookups.len(), 1);

    let not_found = Err(LookupFailure::NotFound);
    assert!(
        block(h.tippen.cache_lookup(ip, &not_found))
            .unwrap()
            .is_some()
    );
    let r = ping_from(&h, "pk_a", "v3", "9.9.9.9", &[]);
    assert!(
        r.lookups.is_empty(),
        "a negative answer is served from the cache"
    );
    assert_eq!(visitor_of(&r)["company"], "Unknown Company");
    let s = stats(&h, "sk_a");
    assert_eq!(s["negativeCacheHits"], 1);
    assert_eq!(s["creditsSavedByCache"], 1);

    // A day later the negative entry is stale: ask again.
    h.clock.advance(Duration::from_secs(86_400));
    assert_eq!(ping_from(&h, "pk_a", "v4", "9.9.9.9", &[]).lookups.len(), 1);
}

#[test]
fn hits_expire_after_thirty_days() {
    let h = harness();
    let ip: IpAddr = "1.1.1.1".parse().unwrap();
    block(h.tippen.cache_lookup(ip, &Ok(acme()))).unwrap();
    h.clock.advance(Duration::from_secs(30 * 86_400 - 1));
    assert!(
        ping_from(&h, "pk_a", "v1", "1.1.1.1", &[])
            .lookups
            .is_empty()
    );
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(ping_from(&h, "pk_a", "v2", "1.1.1.1", &[]).lookups.len(), 1);
}

#[test]
fn skips_cost_nothing_and_are_counted_by_reason() {
    let h = harness();
    // Private, loopback, CGNAT: the fallback names the address.
    let r = ping_from(&h, "pk_a", "p1", "192.168.0.4", &[]);
    assert!(r.lookups.is_empty());
    assert_eq!(visitor_of(&r)["company"], "Direct Visitor");
    assert!(
        ping_from(&h, "pk_a", "p2", "127.0.0.1", &[])
            .lookups
            .is_empty()
    );
    assert!(
        ping_from(&h, "pk_a", "p3", "100.64.1.1", &[])
            .lookups
            .is_empty()
    );
    assert!(
        ping_from(&h, "pk_a", "p4", "fd00::1", &[])
            .lookups
            .is_empty()
    );
    // A bot.
    let r = ping_as(
        &h,
        "pk_a",
        "b1",
        "8.8.8.8",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        &[],
    );
    assert!(r.lookups.is_empty());
    assert_eq!(visitor_of(&r)["company"], "Unknown Company");
    // Global Privacy Control: honoured by default.
    let r = ping_from(&h, "pk_a", "g1", "8.8.8.8", &[("Sec-GPC", "1")]);
    assert!(r.lookups.is_empty());
    // `Sec-GPC: 0` is no signal.
    assert_eq!(
        ping_from(&h, "pk_a", "g2", "8.8.8.8", &[("Sec-GPC", "0")])
            .lookups
            .len(),
        1
    );
    let s = stats(&h, "sk_a");
    let skips = &s["skipsByReason"];
    assert_eq!(skips["private"], 1, "{s}");
    assert_eq!(skips["loopback"], 1, "{s}");
    assert_eq!(skips["sharedAddressSpace"], 1, "{s}");
    assert_eq!(skips["uniqueLocal"], 1, "{s}");
    assert_eq!(skips["bot"], 1, "{s}");
    assert_eq!(skips["globalPrivacyControl"], 1, "{s}");
    assert_eq!(s["creditsUsed"], 0);
    assert_eq!(s["cacheMisses"], 1);
}

#[test]
fn a_site_that_does_not_honour_gpc_looks_up() {
    let h = harness();
    let mut site = tippen_core::Site::new("c", "C", "pk_c", "sk_c");
    site.honor_gpc = false;
    block(h.tippen.put_site(&site)).unwrap();
    let r = ping_from(&h, "pk_c", "g1", "8.8.8.8", &[("Sec-GPC", "1")]);
    assert_eq!(r.lookups.len(), 1);
    // The context flag counts like the header.
    let body = r#"{"event":"pageview","visitor":{"visitorId":"g2","url":"/"}}"#;
    let ctx = RequestContext {
        client_ip: Some("8.8.4.4".parse().unwrap()),
        gpc: true,
        ..RequestContext::default()
    };
    let req = http::Request::post("/track/visitor")
        .header("X-Tippen-API-Key", "pk_a")
        .body(Bytes::from(body))
        .unwrap();
    assert!(block(h.tippen.handle(req, &ctx)).lookups.is_empty());
}

#[test]
fn the_stats_endpoint_needs_the_secret_key() {
    let h = harness();
    let r = h.send("GET", "/api/stats?apiKey=pk_a", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 403);
    let r = h.send("GET", "/api/stats", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 401);
    let r = h.send("POST", "/api/stats?apiKey=sk_a", &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 405);
    let s = stats(&h, "sk_a");
    assert_eq!(s["creditsUsed"], 0);
    assert_eq!(s["hitRatio"], Value::Null);
    assert_eq!(s["skipsByReason"], serde_json::json!({}));
}
