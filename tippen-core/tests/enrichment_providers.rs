//! Provider wire formats against recorded responses (`tests/fixtures/enrichment/`, see its
//! README for where each body comes from).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tippen_core::Timestamp;
use tippen_core::enrichment::{
    CompanyProfile, LookupFailure, Provider, ProviderConfig, ProviderKind,
};

/// 2024-10-16T12:00:00Z.
const NOW: Timestamp = Timestamp::from_millis(1_729_080_000_000);
const KEY: &str = "tok_SECRET_3f9a1c";

/// Loads `fixtures/enrichment/<name>`: status line, headers, blank line, body.
fn fixture(name: &str) -> http::Response<Bytes> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/enrichment")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let (head, body) = text
        .split_once("\n\n")
        .expect("a blank line after the headers");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut response = http::Response::builder().status(status);
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        response = response.header(name.trim(), value.trim());
    }
    response.body(Bytes::from(body.to_owned())).unwrap()
}

fn provider(kind: ProviderKind) -> Box<dyn Provider> {
    ProviderConfig::new(kind, KEY).build().unwrap()
}

fn parse(kind: ProviderKind, name: &str) -> Result<CompanyProfile, LookupFailure> {
    provider(kind).parse_response(&fixture(name), NOW)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

const ALL: [ProviderKind; 4] = [
    ProviderKind::Ipinfo,
    ProviderKind::IpinfoLite,
    ProviderKind::EnrichSo,
    ProviderKind::PeopleDataLabs,
];

// ---- requests -------------------------------------------------------------------------

#[test]
fn ipinfo_requests() {
    let req = provider(ProviderKind::Ipinfo).build_request(ip("8.8.8.8"));
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri(), "https://ipinfo.io/8.8.8.8");
    assert_eq!(req.headers()["authorization"], format!("Bearer {KEY}"));
    assert_eq!(req.headers()["accept"], "application/json");
    let req = provider(ProviderKind::IpinfoLite).build_request(ip("2001:4860:4860::8888"));
    assert_eq!(req.uri(), "https://api.ipinfo.io/lite/2001:4860:4860::8888");
}

#[test]
fn enrich_so_request() {
    let req = provider(ProviderKind::EnrichSo).build_request(ip("8.8.8.8"));
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri(), "https://dev.enrich.so/api/v3/ip-to-company");
    assert_eq!(req.headers()["x-api-key"], KEY);
    assert_eq!(req.headers()["content-type"], "application/json");
    assert_eq!(req.body().as_ref(), br#"{"ip":"8.8.8.8"}"#);
}

#[test]
fn people_data_labs_request() {
    let req = provider(ProviderKind::PeopleDataLabs).build_request(ip("2001:db8::1"));
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(
        req.uri(),
        "https://api.peopledatalabs.com/v5/ip/enrich?ip=2001:db8::1"
    );
    assert_eq!(req.headers()["x-api-key"], KEY);
}

#[test]
fn base_url_override_points_at_a_test_double() {
    for kind in ALL {
        let p = ProviderConfig::new(kind, KEY)
            .with_base_url("http://127.0.0.1:9000/mock/")
            .build()
            .unwrap();
        let req = p.build_request(ip("1.2.3.4"));
        assert_eq!(req.uri().host(), Some("127.0.0.1"), "{kind}");
        assert_eq!(req.uri().port_u16(), Some(9000), "{kind}");
        assert!(
            req.uri().path().starts_with("/mock/"),
            "{kind}: {}",
            req.uri()
        );
        assert!(!req.uri().path().contains("//"), "{kind}: {}", req.uri());
    }
}

#[test]
fn the_key_never_shows_in_debug_output() {
    for kind in ALL {
        let config = ProviderConfig::new(kind, KEY);
        let p = config.build().unwrap();
        let req = p.build_request(ip("8.8.8.8"));
        let debug = format!("{config:?} {p:?} {req:?}");
        assert!(!debug.contains(KEY), "{kind}: {debug}");
        assert!(!req.uri().to_string().contains(KEY), "{kind}");
    }
}

// ---- IPinfo ---------------------------------------------------------------------------

#[test]
fn ipinfo_paid_plan_prefers_company() {
    assert_eq!(
        parse(ProviderKind::Ipinfo, "ipinfo/standard_business.http"),
        Ok(CompanyProfile {
            name: "Sprint Springfield POP".into(),
            domain: some("sprint.com"),
            industry: some("Internet Service Provider"),
            revenue_range: None,
            employee_range: None,
            location: some("Springfield, Massachusetts, US"),
        })
    );
}

#[test]
fn ipinfo_free_plan_uses_org() {
    assert_eq!(
        parse(ProviderKind::Ipinfo, "ipinfo/standard_free_8.8.8.8.http"),
        Ok(CompanyProfile {
            name: "Google LLC".into(),
            location: some("Mountain View, California, US"),
            ..CompanyProfile::default()
        })
    );
}

#[test]
fn ipinfo_lite() {
    assert_eq!(
        parse(ProviderKind::IpinfoLite, "ipinfo/lite_8.8.8.8.http"),
        Ok(CompanyProfile {
            name: "Google LLC".into(),
            domain: some("google.com"),
            location: some("United States"),
            ..CompanyProfile::default()
        })
    );
}

#[test]
fn ipinfo_errors() {
    let kind = ProviderKind::Ipinfo;
    assert_eq!(
        parse(kind, "ipinfo/bogon.http"),
        Err(LookupFailure::NotFound)
    );
    assert_eq!(
        parse(kind, "ipinfo/unknown_token_403.http"),
        Err(LookupFailure::InvalidKey)
    );
    assert_eq!(
        parse(kind, "ipinfo/quota_429.http"),
        Err(LookupFailure::QuotaExhausted)
    );
    assert_eq!(
        parse(kind, "ipinfo/rate_limited_retry_after.http"),
        Err(LookupFailure::RateLimited {
            retry_after: Some(Duration::from_secs(45))
        })
    );
    assert_eq!(
        parse(kind, "ipinfo/wrong_ip_404.http"),
        Err(LookupFailure::NotFound)
    );
    assert_eq!(
        parse(kind, "ipinfo/internal_error_500.http"),
        Err(LookupFailure::Transient("HTTP 500".into()))
    );
}

#[test]
fn a_body_that_echoes_the_key_is_redacted() {
    let failure = parse(
        ProviderKind::Ipinfo,
        "ipinfo/invalid_token_400_echoes_token.http",
    )
    .unwrap_err();
    let message = failure.to_string();
    assert!(
        matches!(failure, LookupFailure::Malformed(_)),
        "{failure:?}"
    );
    assert!(message.contains("[redacted]"), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert!(!format!("{failure:?}").contains(KEY));
}

// ---- Enrich.so ------------------------------------------------------------------------

#[test]
fn enrich_so_hit() {
    assert_eq!(
        parse(ProviderKind::EnrichSo, "enrich_so/hit.http"),
        Ok(CompanyProfile {
            name: "Google LLC".into(),
            domain: some("google.com"),
            industry: some("Hosting"),
            revenue_range: None,
            employee_range: None,
            location: some("Mountain View, California, US"),
        })
    );
}

#[test]
fn enrich_so_organization_without_domain() {
    assert_eq!(
        parse(ProviderKind::EnrichSo, "enrich_so/org_only.http"),
        Ok(CompanyProfile {
            name: "Cloudflare Inc".into(),
            ..CompanyProfile::default()
        })
    );
}

#[test]
fn enrich_so_errors() {
    let kind = ProviderKind::EnrichSo;
    assert_eq!(
        parse(kind, "enrich_so/no_company.http"),
        Err(LookupFailure::NotFound)
    );
    assert_eq!(
        parse(kind, "enrich_so/invalid_key_401.http"),
        Err(LookupFailure::InvalidKey)
    );
    assert_eq!(
        parse(kind, "enrich_so/legacy_host_jwt_malformed.http"),
        Err(LookupFailure::InvalidKey)
    );
    assert_eq!(
        parse(kind, "enrich_so/no_credits_402.http"),
        Err(LookupFailure::QuotaExhausted)
    );
    assert_eq!(
        parse(kind, "enrich_so/rate_limited_429.http"),
        Err(LookupFailure::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        })
    );
    assert_eq!(
        parse(kind, "enrich_so/validation_400.http"),
        Err(LookupFailure::Malformed(
            "the provider rejected the request: \"ip\" must be a non-empty string".into()
        ))
    );
    assert_eq!(
        parse(kind, "enrich_so/internal_error_500.http"),
        Err(LookupFailure::Transient("HTTP 500".into()))
    );
}

// ---- People Data Labs -----------------------------------------------------------------

#[test]
fn people_data_labs_hit_has_firmographics() {
    assert_eq!(
        parse(ProviderKind::PeopleDataLabs, "people_data_labs/hit.http"),
        Ok(CompanyProfile {
            name: "People Data Labs".into(),
            domain: some("peopledatalabs.com"),
            industry: some("computer software"),
            revenue_range: some("$25m-$50m"),
            employee_range: some("11-50"),
            location: some("san francisco, california, united states"),
        })
    );
}

#[test]
fn people_data_labs_errors() {
    let kind = ProviderKind::PeopleDataLabs;
    assert_eq!(
        parse(kind, "people_data_labs/not_found_404.http"),
        Err(LookupFailure::NotFound)
    );
    assert_eq!(
        parse(kind, "people_data_labs/invalid_key_401.http"),
        Err(LookupFailure::InvalidKey)
    );
    assert_eq!(
        parse(kind, "people_data_labs/payment_required_402.http"),
        Err(LookupFailure::QuotaExhausted)
    );
    assert_eq!(
        parse(kind, "people_data_labs/rate_limited_429.http"),
        Err(LookupFailure::RateLimited { retry_after: None })
    );
}

// ---- every provider -------------------------------------------------------------------

#[test]
fn queued_202_with_an_http_date() {
    for kind in ALL {
        assert_eq!(
            parse(kind, "common/queued_202.http"),
            Err(LookupFailure::Queued {
                retry_after: Some(Duration::from_secs(20))
            }),
            "{kind}"
        );
    }
}

#[test]
fn unavailable_is_transient() {
    for kind in ALL {
        assert_eq!(
            parse(kind, "common/unavailable_503.http"),
            Err(LookupFailure::Transient("HTTP 503".into())),
            "{kind}"
        );
    }
}

#[test]
fn empty_answers_are_not_found_and_garbage_is_malformed() {
    for kind in ALL {
        let p = provider(kind);
        let empty = http::Response::new(Bytes::new());
        assert_eq!(
            p.parse_response(&empty, NOW),
            Err(LookupFailure::NotFound),
            "{kind}"
        );
        let no_content = http::Response::builder()
            .status(204)
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            p.parse_response(&no_content, NOW),
            Err(LookupFailure::NotFound),
            "{kind}"
        );
        let html = http::Response::new(Bytes::from_static(b"<html>login</html>"));
        assert!(
            matches!(
                p.parse_response(&html, NOW),
                Err(LookupFailure::Malformed(_))
            ),
            "{kind}"
        );
        let teapot = http::Response::builder()
            .status(418)
            .body(Bytes::from(format!("key {KEY} is a teapot")))
            .unwrap();
        let failure = p.parse_response(&teapot, NOW).unwrap_err();
        assert!(matches!(failure, LookupFailure::Malformed(_)), "{kind}");
        assert!(!failure.to_string().contains(KEY), "{kind}: {failure}");
    }
}
