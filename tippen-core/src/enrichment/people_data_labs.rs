//! People Data Labs IP Enrichment API
//! (<https://docs.peopledatalabs.com/docs/reference-ip-enrichment-api>): the one provider
//! here that also gives industry, revenue and head count.
//!
//! `GET https://api.peopledatalabs.com/v5/ip/enrich?ip=<ip>` with the key in `X-Api-Key`.
//! Charged per match. A match is HTTP 200:
//!
//! ```json
//! {"status": 200,
//!  "data": {"ip": {"address": "72.212.42.169", …},
//!           "company": {"name": "people data labs", "display_name": "People Data Labs",
//!                       "website": "peopledatalabs.com", "industry": "computer software",
//!                       "inferred_revenue": "$25m-$50m", "size": "11-50", "employee_count": 129,
//!                       "location": {"name": "san francisco, california, united states", …}}}}
//! ```
//!
//! No match is HTTP 404 `{"status": 404, "error": {"type": "not_found", …}}`; other errors
//! carry `{"status", "error": {"type", "message"}}`: 401 `authentication_error`, 402
//! `payment_required` (out of credits), 429 `rate_limit_error`, 5xx.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use serde::Deserialize;

use super::provider::{
    self, ApiKey, CompanyProfile, LookupFailure, Provider, ProviderConfigError, ProviderKind,
};
use crate::Timestamp;

/// The People Data Labs IP Enrichment wire format. Built by
/// [`ProviderConfig::build`](super::ProviderConfig::build).
#[derive(Debug)]
pub struct PeopleDataLabs {
    key: ApiKey,
    key_header: HeaderValue,
    base_url: String,
}

impl PeopleDataLabs {
    pub(crate) fn new(key: ApiKey, base_url: String) -> Result<Self, ProviderConfigError> {
        Ok(PeopleDataLabs {
            key_header: key.header_value("")?,
            key,
            base_url,
        })
    }
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    company: Option<Company>,
    ip: Option<IpRecord>,
}

#[derive(Deserialize)]
struct IpRecord {
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Company {
    name: Option<String>,
    display_name: Option<String>,
    website: Option<String>,
    industry: Option<String>,
    inferred_revenue: Option<String>,
    size: Option<String>,
    employee_count: Option<u64>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Location {
    name: Option<String>,
}

impl Provider for PeopleDataLabs {
    fn kind(&self) -> ProviderKind {
        ProviderKind::PeopleDataLabs
    }

    fn build_request(&self, ip: IpAddr) -> http::Request<Bytes> {
        provider::request(
            Method::GET,
            format!("{}/v5/ip/enrich?ip={ip}", self.base_url),
            &[
                (
                    HeaderName::from_static("x-api-key"),
                    self.key_header.clone(),
                ),
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
        if let Some(failure) = provider::status_failure(response, now, &self.key) {
            return Err(failure);
        }
        let body = response.body();
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(LookupFailure::NotFound);
        }
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|e| provider::malformed_json(&e, body, &self.key))?;
        let data = envelope.data.ok_or(LookupFailure::NotFound)?;
        let company = data.company.ok_or(LookupFailure::NotFound)?;
        let name = provider::non_empty(company.display_name.as_deref())
            .or_else(|| provider::non_empty(company.name.as_deref()))
            .ok_or(LookupFailure::NotFound)?;
        let company_location = company.location.and_then(|l| l.name);
        let ip_location = data.ip.and_then(|ip| ip.location).and_then(|l| l.name);
        Ok(CompanyProfile {
            name,
            domain: provider::non_empty(company.website.as_deref()),
            industry: provider::non_empty(company.industry.as_deref()),
            revenue_range: provider::non_empty(company.inferred_revenue.as_deref()),
            employee_range: provider::non_empty(company.size.as_deref())
                .or_else(|| company.employee_count.map(|n| n.to_string())),
            location: provider::non_empty(company_location.as_deref())
                .or_else(|| provider::non_empty(ip_location.as_deref())),
        })
    }
}
