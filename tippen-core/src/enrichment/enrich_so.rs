//! Enrich.so API v3, "Resolve company from IP" (<https://doc.enrich.so>), the predecessor's
//! provider.
//!
//! `POST https://dev.enrich.so/api/v3/ip-to-company` with `{"ip": "<ip>"}` and the key in
//! `x-api-key` (`dev.enrich.so` is the production host despite its name). Cost: 100 credits,
//! not charged when no domain is found. A hit:
//!
//! ```json
//! {"success": true,
//!  "data": {"searchIp": "8.8.8.8", "ipDomain": "google.com", "ipOrganization": "Google LLC",
//!           "ipCountryName": "United States", "ipCountryCode": "US", "ipRegionName": "California",
//!           "ipCity": "Mountain View", "ipIsp": "Google LLC", "ipUsageType": "DCH", …},
//!  "meta": {"requestId": "…", "creditsUsed": 100, "creditsRemaining": 4900}}
//! ```
//!
//! Errors are `{"error", "message", "statusCode"}` or RFC 9457 problem details
//! (`{"type", "title", "status", "detail"}`): 400 validation, 401 invalid key, 402 not enough
//! credits, 429 with `Retry-After`, 500. A response with neither `ipDomain` nor
//! `ipOrganization` is [`LookupFailure::NotFound`]; one with only the organization still
//! names it (often the network operator).
//!
//! `ipUsageType` follows IP2Location's usage-type codes (the documented example is `DCH`,
//! data centre/hosting); the network-like ones become the profile's `industry`.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;

use super::provider::{
    self, ApiKey, CompanyProfile, LookupFailure, Provider, ProviderConfigError, ProviderKind,
};
use crate::Timestamp;

/// The Enrich.so v3 IP-to-company wire format. Built by
/// [`ProviderConfig::build`](super::ProviderConfig::build).
#[derive(Debug)]
pub struct EnrichSo {
    key: ApiKey,
    key_header: HeaderValue,
    base_url: String,
}

impl EnrichSo {
    pub(crate) fn new(key: ApiKey, base_url: String) -> Result<Self, ProviderConfigError> {
        Ok(EnrichSo {
            key_header: key.header_value("")?,
            key,
            base_url,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    success: Option<bool>,
    data: Option<Data>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    ip_domain: Option<String>,
    ip_organization: Option<String>,
    ip_country_code: Option<String>,
    ip_country_name: Option<String>,
    ip_region_name: Option<String>,
    ip_city: Option<String>,
    ip_usage_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    detail: Option<serde_json::Value>,
    message: Option<String>,
    title: Option<String>,
}

impl Provider for EnrichSo {
    fn kind(&self) -> ProviderKind {
        ProviderKind::EnrichSo
    }

    fn build_request(&self, ip: IpAddr) -> http::Request<Bytes> {
        let body = serde_json::json!({ "ip": ip.to_string() }).to_string();
        provider::request(
            Method::POST,
            format!("{}/ip-to-company", self.base_url),
            &[
                (
                    HeaderName::from_static("x-api-key"),
                    self.key_header.clone(),
                ),
                (header::ACCEPT, HeaderValue::from_static("application/json")),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            Bytes::from(body),
        )
    }

    fn parse_response(
        &self,
        response: &http::Response<Bytes>,
        now: Timestamp,
    ) -> Result<CompanyProfile, LookupFailure> {
        let body = response.body();
        if response.status() == StatusCode::BAD_REQUEST {
            return Err(LookupFailure::Malformed(format!(
                "the provider rejected the request: {}",
                self.error_message(body)
            )));
        }
        if let Some(failure) = provider::status_failure(response, now, &self.key) {
            return Err(failure);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(LookupFailure::NotFound);
        }
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|e| provider::malformed_json(&e, body, &self.key))?;
        if envelope.success == Some(false) {
            return Err(LookupFailure::Malformed(format!(
                "success: false ({})",
                self.key
                    .redact(envelope.message.as_deref().unwrap_or("no message"))
            )));
        }
        let Some(data) = envelope.data else {
            return Err(LookupFailure::NotFound);
        };
        let domain = provider::non_empty(data.ip_domain.as_deref());
        let name = provider::non_empty(data.ip_organization.as_deref()).or_else(|| domain.clone());
        let Some(name) = name else {
            return Err(LookupFailure::NotFound);
        };
        Ok(CompanyProfile {
            name,
            domain,
            industry: data
                .ip_usage_type
                .as_deref()
                .and_then(usage_type)
                .map(str::to_owned),
            revenue_range: None,
            employee_range: None,
            location: provider::join_location(&[
                data.ip_city.as_deref(),
                data.ip_region_name.as_deref(),
                data.ip_country_code
                    .as_deref()
                    .or(data.ip_country_name.as_deref()),
            ]),
        })
    }
}

impl EnrichSo {
    fn error_message(&self, body: &[u8]) -> String {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let message = parsed.and_then(|e| {
            e.detail
                .and_then(|d| d.as_str().map(str::to_owned))
                .or(e.message)
                .or(e.title)
        });
        match message {
            Some(m) => self.key.redact(&m),
            None => provider::excerpt(body, &self.key),
        }
    }
}

/// IP2Location usage types that say what kind of network an address is on.
fn usage_type(code: &str) -> Option<&'static str> {
    match code {
        "ISP" => Some("Internet Service Provider"),
        "MOB" => Some("Mobile Carrier"),
        "DCH" => Some("Hosting"),
        "CDN" => Some("Content Delivery Network"),
        "EDU" => Some("Education"),
        "GOV" => Some("Government"),
        "MIL" => Some("Military"),
        _ => None,
    }
}
