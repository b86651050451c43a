//! The history API over the memory stores: a visit of three pages shows up in order with its
//! durations, in the companies and the analytics; CSV; bad input; erasure; no store → 501.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tippen_core::api::RequestContext;
use tippen_core::enrichment::{CachePolicy, CompanyProfile};
use tippen_core::history::{MemoryHistory, Place};
use tippen_core::{Config, Effects, ManualClock, MemoryStore, Site, Store, Timestamp, Tippen};

struct H {
    tippen: Tippen,
    clock: Arc<ManualClock>,
}

const IP: &str = "8.8.8.8";

fn with_history() -> H {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let store = Arc::new(MemoryStore::new());
    // The address's company is in the shared cache: visits are identified at once.
    let profile = CompanyProfile {
        name: "Acme Corp".into(),
        domain: Some("acme.example".into()),
        industry: Some("Anvils".into()),
        revenue_range: Some("$1M-$10M".into()),
        employee_range: Some("11-50".into()),
        location: Some("Springfield, IL, US".into()),
    };
    let entry = CachePolicy::default()
        .entry_for(&Ok(profile), Timestamp::from_millis(T0))
        .unwrap();
    block(store.put_cached_lookup(IP.parse().unwrap(), &entry)).unwrap();
    let tippen = Tippen::new(store, clock.clone(), Config::default())
        .with_history(Arc::new(MemoryHistory::new()));
    block(tippen.put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))).unwrap();
    H { tippen, clock }
}

impl H {
    fn send(&self, method: &str, uri: &str, body: &str, place: Option<Place>) -> Effects {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(
                "X-Tippen-API-Key",
                if uri.starts_with("/track") {
                    "pk_a"
                } else {
                    "sk_a"
                },
            )
            .body(Bytes::from(body.to_owned()))
            .unwrap();
        let ctx = RequestContext {
            client_ip: Some(IP.parse().unwrap()),
            place,
            ..RequestContext::default()
        };
        block(self.tippen.handle(req, &ctx))
    }

    fn get(&self, uri: &str) -> (u16, serde_json::Value) {
        let r = self.send("GET", uri, "", None);
        let status = r.response.as_ref().unwrap().status().as_u16();
        (status, body_json(&r))
    }

    fn page(&self, visitor: &str, url: &str) {
        let r = self.send(
            "POST",
            "/track/visitor",
            &pageview(visitor, "t1", url),
            Some(Place::new(Some("DE"), Some("Berlin"))),
        );
        assert_eq!(r.response.unwrap().status(), 200);
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A visit of three pages (10 s, 20 s, 5 s), ended by a beacon and swept.
    fn three_pages(&self, visitor: &str) {
        self.page(
            visitor,
            "https://example.com/?utm_source=mail&utm_campaign=q4",
        );
        self.advance(10);
        self.page(visitor, "https://example.com/pricing");
        self.advance(20);
        self.page(visitor, "https://example.com/docs");
        self.advance(5);
        let leave = format!(r#"{{"visitorId":"{visitor}","tabId":"t1"}}"#);
        let r = self.send("POST", "/track/leave", &leave, None);
        assert_eq!(r.response.unwrap().status(), 200);
        self.advance(60);
        block(self.tippen.sweep(&"a".into())).unwrap();
    }
}

#[test]
fn a_visit_of_three_pages_is_listed_counted_and_erased() {
    let h = with_history();
    h.three_pages("v1");
    let (status, body) = h.get("/api/visits");
    assert_eq!(status, 200, "{body}");
    let visits = body["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 1, "{body}");
    let v = &visits[0];
    let pages: Vec<(String, u64)> = v["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_owned(),
                p["durationMs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pages,
        [
            ("/".to_owned(), 10_000),
            ("/pricing".to_owned(), 20_000),
            ("/docs".to_owned(), 5_000)
        ]
    );
    assert_eq!(v["durationMs"], 35_000);
    assert_eq!(v["startedAt"], Timestamp::from_millis(T0).to_rfc3339());
    assert_eq!(v["company"]["domain"], "acme.example");
    assert_eq!(v["place"]["country"], "DE", "the host's geodata wins");
    assert_eq!(v["utm"]["campaign"], "q4");
    assert_eq!(v["endReason"], "left");
    assert!(body["nextCursor"].is_null());

    let id = v["visitId"].as_str().unwrap();
    let (status, one) = h.get(&format!("/api/visits/{id}"));
    assert_eq!((status, &one), (200, v));

    let (status, companies) = h.get("/api/companies?window=7d");
    assert_eq!(status, 200, "{companies}");
    let c = &companies["companies"][0];
    assert_eq!(c["key"], "acme.example");
    assert_eq!(c["visits"], 1);
    assert_eq!(c["visitors"], 1);
    assert_eq!(c["pageViews"], 3);
    assert_eq!(c["totalMs"], 35_000);
    assert_eq!(c["returning"], false);

    let (status, detail) = h.get("/api/companies/ACME.example");
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["visits"][0]["visitId"], id);
    assert_eq!(detail["summary"]["visits"], 1);

    let (status, a) = h.get("/api/analytics?window=24h");
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["visits"], 1);
    assert_eq!(a["visitors"], 1);
    assert_eq!(a["pageViews"], 3);
    assert_eq!(a["identifiedShare"], 1.0);
    assert_eq!(a["bounceRate"], 0.0);
    assert_eq!(a["topPages"][0]["count"], 1);
    assert_eq!(a["topUtmSources"][0]["key"], "mail");
    assert_eq!(a["topCountries"][0]["key"], "DE");
    assert_eq!(a["topCompanies"][0]["key"], "acme.example");
    let buckets = a["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 24, "hourly buckets over a day");
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["visits"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );

    let csv = h.send("GET", "/api/visits?format=csv", "", None);
    let r = csv.response.unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = String::from_utf8(r.body().to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("visitId,visitorId,startedAt"));
    assert!(
        lines[1].contains("/ (10s) > /pricing (20s) > /docs (5s)"),
        "{text}"
    );

    // Erasure removes it everywhere.
    let r = h.send("DELETE", "/api/visitors/v1", "", None);
    assert_eq!(r.response.unwrap().status(), 200);
    assert_eq!(h.get("/api/visits").1["visits"], serde_json::json!([]));
    assert_eq!(h.get(&format!("/api/visits/{id}")).0, 404);
    assert_eq!(h.get("/api/analytics?window=24h").1["visits"], 0);
    assert_eq!(
        h.get("/api/companies?window=7d").1["companies"],
        serde_json::json!([])
    );
}

#[test]
fn visits_page_with_a_cursor_and_filter() {
    let h = with_history();
    for i in 0..5 {
        h.three_pages(&format!("p{i}"));
    }
    let mut seen = Vec::new();
    let mut uri = "/api/visits?limit=2".to_owned();
    loop {
        let (status, body) = h.get(&uri);
        assert_eq!(status, 200, "{body}");
        for v in body["visits"].as_array().unwrap() {
            seen.push(v["visitorId"].as_str().unwrap().to_owned());
        }
        match body["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/visits?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["p4", "p3", "p2", "p1", "p0"],
        "newest first, each once"
    );
    let (_, body) = h.get("/api/visits?page=/pricing&country=de&company=acme.example");
    assert_eq!(body["visits"].as_array().unwrap().len(), 5);
    let (_, body) = h.get("/api/visits?page=/nowhere");
    assert_eq!(body["visits"], serde_json::json!([]));
    let to = Timestamp::from_millis(T0 + 1000).to_rfc3339();
    let (_, body) = h.get(&format!("/api/visits?to={to}"));
    assert_eq!(
        body["visits"].as_array().unwrap().len(),
        1,
        "from/to bound the start"
    );
}

#[test]
fn bad_input_is_a_named_400_and_keys_are_checked() {
    let h = with_history();
    for (uri, names) in [
        ("/api/visits?from=yesterday", "'from'"),
        ("/api/visits?limit=0", "'limit'"),
        ("/api/visits?limit=100000", "'limit'"),
        ("/api/visits?cursor=nope", "'cursor'"),
        ("/api/visits?format=xml", "'format'"),
        ("/api/visits?from=2000&to=1000", "'from'"),
        ("/api/companies?window=7w", "window"),
        ("/api/companies?limit=1001", "'limit'"),
        ("/api/analytics?window=0d", "window"),
    ] {
        let (status, body) = h.get(uri);
        assert_eq!(status, 400, "{uri}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(names),
            "{uri}: {body}"
        );
    }
    assert_eq!(h.get("/api/visits/vis_unknown").0, 404);
    assert_eq!(h.get("/api/companies/unknown.example").0, 404);
    let r = h.send("POST", "/api/visits", "", None);
    assert_eq!(r.response.unwrap().status(), 405);
    // The public key may only track.
    let req = http::Request::get("/api/visits?apiKey=pk_a")
        .body(Bytes::new())
        .unwrap();
    let r = block(h.tippen.handle(req, &RequestContext::default()));
    assert_eq!(r.response.unwrap().status(), 403);
}

#[test]
fn without_a_history_store_the_api_answers_501() {
    let h = harness();
    for uri in [
        "/api/visits?apiKey=sk_a",
        "/api/companies?apiKey=sk_a",
        "/api/analytics?apiKey=sk_a",
    ] {
        let r = h.send("GET", uri, &[], Bytes::new());
        assert_eq!(r.response.as_ref().unwrap().status(), 501, "{uri}");
        assert!(
            body_json(&r)["error"]
                .as_str()
                .unwrap()
                .contains("history is not enabled")
        );
    }
}
