//! IPinfo (<https://ipinfo.io/developers>), in two flavours that share one parser.
//!
//! - [`ProviderKind::Ipinfo`]: `GET https://ipinfo.io/<ip>` — `city`, `region`, `country`,
//!   `org` (`"AS15169 Google LLC"`) on every plan; `company {name, domain, type}` and
//!   `asn {asn, name, domain, route, type}` on paid plans; `{"ip": …, "bogon": true}` for a
//!   bogon.
//! - [`ProviderKind::IpinfoLite`]: `GET https://api.ipinfo.io/lite/<ip>` — free and
//!   unlimited: `asn`, `as_name`, `as_domain`, `country_code`, `country`, `continent_code`,
//!   `continent`.
//!
//! The token goes in `Authorization: Bearer` (IPinfo accepts Basic, Bearer or `?token=`; a
//! header keeps it out of URLs and logs). Errors: 403 `{"title": "Unknown token", …}`; 404
//! `{"status": 404, "error": {"title": "Wrong ip", …}}`; 429 `{"title": "Rate limit exceeded",
//! "message": "Upgrade to increase your usage limits …"}` — IPinfo's 429 is its monthly quota,
//! so a 429 without `Retry-After` is [`LookupFailure::QuotaExhausted`] and one with it
//! [`LookupFailure::RateLimited`].
//!
//! The profile's name is the most specific one present: `company.name`, then `asn.name`, then
//! `as_name`, then `org` without its AS number. `industry` is the network type IPinfo gives
//! (`isp` → "Internet Service Provider", `hosting` → "Hosting", `education`, `government`),
//! left empty for `business`.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::Value;

use super::provider::{
    self, ApiKey, CompanyProfile, LookupFailure, Provider, ProviderConfigError, ProviderKind,
};
use crate::Timestamp;

/// The IPinfo wire format (standard or Lite API). Built by
/// [`ProviderConfig::build`](super::ProviderConfig::build).
#[derive(Debug)]
pub struct Ipinfo {
    kind: ProviderKind,
    key: ApiKey,
    authorization: HeaderValue,
    base_url: String,
}

impl Ipinfo {
    pub(crate) fn new(
        kind: ProviderKind,
        key: ApiKey,
        base_url: String,
    ) -> Result<Self, ProviderConfigError> {
        Ok(Ipinfo {
            kind,
            authorization: key.header_value("Bearer ")?,
            key,
            base_url,
        })
    }
}

impl Provider for Ipinfo {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn build_request(&self, ip: IpAddr) -> http::Request<Bytes> {
        provider::request(
            Method::GET,
            format!("{}/{ip}", self.base_url),
            &[
                (header::AUTHORIZATION, self.authorization.clone()),
                (header::ACCEPT, HeaderValue::from_static("application/json")),
            ],
            Bytes::new(),
        )
    }

    fn parse_response(
        &self,
        response: &http::Response<Bytes>,
        now: Timestamp,
    ) -> Result<CompanyProfile, LookupFailure> {
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            return Err(match provider::parse_retry_after(response.headers(), now) {
                Some(wait) => LookupFailure::RateLimited {
                    retry_after: Some(wait),
                },
                None => LookupFailure::QuotaExhausted,
            });
        }
        if let Some(failure) = provider::status_failure(response, now, &self.key) {
            return Err(failure);
        }
        let body = response.body();
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(LookupFailure::NotFound);
        }
        let json: Value = serde_json::from_slice(body)
            .map_err(|e| provider::malformed_json(&e, body, &self.key))?;
        if !json.is_object() {
            return Err(LookupFailure::Malformed(format!(
                "expected a JSON object, got {}",
                provider::excerpt(body, &self.key)
            )));
        }
        profile(&json).ok_or(LookupFailure::NotFound)
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn profile(json: &Value) -> Option<CompanyProfile> {
    if json.get("bogon").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    // The most specific owner first: company (paid plans), then the AS object (paid plans),
    // then Lite's flat AS fields, then the `org` string of the free standard API.
    let company = json.get("company").filter(|c| text(c, "name").is_some());
    let asn = json
        .get("asn")
        .filter(|a| a.is_object() && text(a, "name").is_some());
    let (name, domain, kind) = if let Some(c) = company {
        (text(c, "name"), text(c, "domain"), text(c, "type"))
    } else if let Some(a) = asn {
        (text(a, "name"), text(a, "domain"), text(a, "type"))
    } else if let Some(name) = text(json, "as_name") {
        (Some(name), text(json, "as_domain"), None)
    } else {
        (text(json, "org").map(strip_as_number), None, None)
    };
    let name = provider::non_empty(name)?;
    Some(CompanyProfile {
        name,
        domain: provider::non_empty(domain),
        industry: kind.and_then(network_type).map(str::to_owned),
        revenue_range: None,
        employee_range: None,
        location: provider::join_location(&[
            text(json, "city"),
            text(json, "region"),
            text(json, "country"),
        ]),
    })
}

/// `"AS15169 Google LLC"` → `"Google LLC"`.
fn strip_as_number(org: &str) -> &str {
    match org.split_once(' ') {
        Some((asn, rest))
            if asn.len() > 2
                && asn.starts_with("AS")
                && asn[2..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.trim()
        }
        _ => org,
    }
}

fn network_type(kind: &str) -> Option<&'static str> {
    match kind {
        "isp" => Some("Internet Service Provider"),
        "hosting" => Some("Hosting"),
        "education" => Some("Education"),
        "government" => Some("Government"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_numbers_are_stripped() {
        assert_eq!(strip_as_number("AS15169 Google LLC"), "Google LLC");
        assert_eq!(strip_as_number("ASUS Computer"), "ASUS Computer");
        assert_eq!(strip_as_number("AS Pacific"), "AS Pacific");
        assert_eq!(strip_as_number("Acme"), "Acme");
    }
}
