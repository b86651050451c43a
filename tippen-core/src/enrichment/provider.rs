//! The [`Provider`] trait (sans-IO: build a request, parse a response), the types both sides
//! share, and the configuration that selects a provider.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::{EnrichSo, Ipinfo, PeopleDataLabs};
use crate::Timestamp;

/// What a provider knows about the company behind an address. Fields a provider does not
/// supply are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyProfile {
    /// The company's name, e.g. `"Google LLC"`.
    pub name: String,
    /// Its web domain, e.g. `"google.com"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Its industry, e.g. `"computer software"`, or the kind of network (`"Hosting"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// Its estimated annual revenue range, e.g. `"$25m-$50m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_range: Option<String>,
    /// Its head-count range, e.g. `"51-200"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_range: Option<String>,
    /// Where the address (or the company) is, e.g. `"Mountain View, California, US"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Why a lookup produced no profile.
///
/// None of the messages contain the API key: providers redact it from anything they quote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupFailure {
    /// The provider knows no company for this address (cached as a negative answer).
    #[error("the provider knows no company for this address")]
    NotFound,
    /// The account's credits or monthly quota are used up.
    #[error("the provider account's credits or quota are exhausted")]
    QuotaExhausted,
    /// Too many requests: wait `retry_after` (when the provider said) and try again.
    #[error("rate limited by the provider{}", after(.retry_after))]
    RateLimited {
        /// How long the provider asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The provider accepted the lookup but has no answer yet (HTTP 202): ask again later.
    #[error("the provider queued the lookup{}", after(.retry_after))]
    Queued {
        /// How long the provider asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The provider failed this time (5xx); hosts also report timeouts and connection errors
    /// here.
    #[error("the provider failed transiently: {0}")]
    Transient(String),
    /// The provider rejected the API key (401/403).
    #[error("the provider rejected the API key")]
    InvalidKey,
    /// The provider answered something this parser does not understand.
    #[error("malformed provider response: {0}")]
    Malformed(String),
}

fn after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; retry after {} s", d.as_secs()),
        None => String::new(),
    }
}

impl LookupFailure {
    /// The failure's kind, without details (for storage and counters).
    pub const fn kind(&self) -> FailureKind {
        match self {
            LookupFailure::NotFound => FailureKind::NotFound,
            LookupFailure::QuotaExhausted => FailureKind::QuotaExhausted,
            LookupFailure::RateLimited { .. } => FailureKind::RateLimited,
            LookupFailure::Queued { .. } => FailureKind::Queued,
            LookupFailure::Transient(_) => FailureKind::Transient,
            LookupFailure::InvalidKey => FailureKind::InvalidKey,
            LookupFailure::Malformed(_) => FailureKind::Malformed,
        }
    }

    /// How long the provider asked to wait, if it said.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            LookupFailure::RateLimited { retry_after } | LookupFailure::Queued { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// The kind of a [`LookupFailure`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// [`LookupFailure::NotFound`].
    NotFound,
    /// [`LookupFailure::QuotaExhausted`].
    QuotaExhausted,
    /// [`LookupFailure::RateLimited`].
    RateLimited,
    /// [`LookupFailure::Queued`].
    Queued,
    /// [`LookupFailure::Transient`].
    Transient,
    /// [`LookupFailure::InvalidKey`].
    InvalidKey,
    /// [`LookupFailure::Malformed`].
    Malformed,
}

impl FailureKind {
    /// Whether asking again soon may succeed: rate limited, queued, transient.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::RateLimited | FailureKind::Queued | FailureKind::Transient
        )
    }
}

/// An IP → company provider, sans-IO: it builds the HTTP request for one address and parses
/// the HTTP response; the host sends the one and receives the other.
pub trait Provider: fmt::Debug + Send + Sync {
    /// Which wire format this is.
    fn kind(&self) -> ProviderKind;

    /// The request that looks `ip` up. The API key travels in a header marked sensitive
    /// (hidden from `Debug`), never in the URL.
    fn build_request(&self, ip: IpAddr) -> http::Request<Bytes>;

    /// The profile in `response`, or why there is none. `now` turns an HTTP-date
    /// `Retry-After` into a duration.
    fn parse_response(
        &self,
        response: &http::Response<Bytes>,
        now: Timestamp,
    ) -> Result<CompanyProfile, LookupFailure>;
}

/// The wire formats tippen speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// IPinfo's standard API, `GET https://ipinfo.io/<ip>`: city/region/country and `org` on
    /// every plan, the `company` and `asn` objects on paid plans. See [`Ipinfo`].
    Ipinfo,
    /// IPinfo Lite, `GET https://api.ipinfo.io/lite/<ip>` (free, unlimited): the AS's name and
    /// domain and the country. See [`Ipinfo`].
    IpinfoLite,
    /// Enrich.so API v3 IP to Company, `POST https://dev.enrich.so/api/v3/ip-to-company`
    /// (the predecessor's provider). See [`EnrichSo`].
    EnrichSo,
    /// People Data Labs IP Enrichment, `GET https://api.peopledatalabs.com/v5/ip/enrich`:
    /// industry, revenue and head count as well. See [`PeopleDataLabs`].
    PeopleDataLabs,
}

impl ProviderKind {
    /// Every provider.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Ipinfo,
        ProviderKind::IpinfoLite,
        ProviderKind::EnrichSo,
        ProviderKind::PeopleDataLabs,
    ];

    /// The provider whose [`as_str`](Self::as_str) name is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The stable snake_case name, as in configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ipinfo => "ipinfo",
            ProviderKind::IpinfoLite => "ipinfo_lite",
            ProviderKind::EnrichSo => "enrich_so",
            ProviderKind::PeopleDataLabs => "people_data_labs",
        }
    }

    /// The production base URL.
    pub const fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Ipinfo => "https://ipinfo.io",
            ProviderKind::IpinfoLite => "https://api.ipinfo.io/lite",
            ProviderKind::EnrichSo => "https://dev.enrich.so/api/v3",
            ProviderKind::PeopleDataLabs => "https://api.peopledatalabs.com",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider API key. Its `Debug` and `Display` print `[redacted]`; only
/// [`expose`](Self::expose) gives the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The secret itself, for the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "[redacted]")
        }
    }

    /// The key as a header value marked sensitive (hidden from `Debug`, never compressed
    /// into HPACK tables).
    pub(crate) fn header_value(&self, prefix: &str) -> Result<HeaderValue, ProviderConfigError> {
        let mut value = HeaderValue::try_from(format!("{prefix}{}", self.0))
            .map_err(|_| ProviderConfigError::InvalidApiKey)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey(key.to_owned())
    }
}

/// Which provider to use, with which key, at which URL.
///
/// Deserializes from configuration such as
/// `{ kind = "ipinfo_lite", api_key = "…", base_url = "http://127.0.0.1:9999/lite" }`;
/// `base_url` defaults to the provider's production URL. `Debug` redacts the key.
///
/// ```
/// use tippen_core::enrichment::{ProviderConfig, ProviderKind};
///
/// let config = ProviderConfig::new(ProviderKind::IpinfoLite, "secret-token");
/// let provider = config.build().unwrap();
/// let request = provider.build_request("8.8.8.8".parse().unwrap());
/// assert_eq!(request.uri(), "https://api.ipinfo.io/lite/8.8.8.8");
/// assert!(!format!("{config:?} {request:?}").contains("secret-token"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ProviderConfig {
    /// The wire format.
    pub kind: ProviderKind,
    /// The API key (token).
    pub api_key: ApiKey,
    /// The base URL, without a trailing slash; `None` for the production URL.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// Why a [`ProviderConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderConfigError {
    /// The API key is empty.
    #[error("the provider API key is empty")]
    EmptyApiKey,
    /// The API key contains characters that cannot go in an HTTP header.
    #[error("the provider API key contains characters not allowed in an HTTP header")]
    InvalidApiKey,
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("invalid provider base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why provider settings (a name, a key, a base URL, from a file or the environment) name no
/// usable provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderSettingsError {
    /// A key or base URL is set, but no provider name.
    #[error(
        "an API key or base URL is set but no provider (api_key / TIPPEN_ENRICHMENT_API_KEY need provider / TIPPEN_ENRICHMENT_PROVIDER)"
    )]
    NoProvider,
    /// The provider name is not one of [`ProviderKind::ALL`].
    #[error(
        "unknown provider {name:?} (expected one of ipinfo, ipinfo_lite, enrich_so, people_data_labs)"
    )]
    UnknownProvider {
        /// The name as configured.
        name: String,
    },
    /// A provider is named, but no API key is set.
    #[error("provider {name} needs api_key (or TIPPEN_ENRICHMENT_API_KEY)")]
    MissingApiKey {
        /// The provider's name.
        name: String,
    },
    /// The key or the base URL is unusable.
    #[error(transparent)]
    Invalid(#[from] ProviderConfigError),
}

impl ProviderConfig {
    /// The provider that `provider` (a [`ProviderKind`] name), `api_key` and `base_url` settings
    /// name, checked by building it once; `None` when none is named and nothing else is set.
    /// Every host reads its settings (a file, the environment, Worker vars) into these three.
    pub fn from_settings(
        provider: Option<String>,
        api_key: Option<String>,
        base_url: Option<String>,
    ) -> Result<Option<Self>, ProviderSettingsError> {
        let Some(name) = provider else {
            if api_key.is_some() || base_url.is_some() {
                return Err(ProviderSettingsError::NoProvider);
            }
            return Ok(None);
        };
        let kind = ProviderKind::from_name(&name)
            .ok_or(ProviderSettingsError::UnknownProvider { name: name.clone() })?;
        let api_key = api_key.ok_or(ProviderSettingsError::MissingApiKey { name })?;
        let mut config = ProviderConfig::new(kind, api_key);
        if let Some(url) = base_url {
            config = config.with_base_url(url);
        }
        config.build()?;
        Ok(Some(config))
    }

    /// A configuration for `kind` at its production URL.
    pub fn new(kind: ProviderKind, api_key: impl Into<ApiKey>) -> Self {
        ProviderConfig {
            kind,
            api_key: api_key.into(),
            base_url: None,
        }
    }

    /// The same configuration at another base URL (a test double, a proxy, another region).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// The base URL in use, without a trailing slash.
    pub fn effective_base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(self.kind.default_base_url())
            .trim_end_matches('/')
    }

    /// The provider, after checking the key and the URL.
    pub fn build(&self) -> Result<Box<dyn Provider>, ProviderConfigError> {
        if self.api_key.expose().trim().is_empty() {
            return Err(ProviderConfigError::EmptyApiKey);
        }
        let base = validate_base_url(self.effective_base_url())?;
        let provider: Box<dyn Provider> = match self.kind {
            ProviderKind::Ipinfo => Box::new(Ipinfo::new(
                ProviderKind::Ipinfo,
                self.api_key.clone(),
                base,
            )?),
            ProviderKind::IpinfoLite => Box::new(Ipinfo::new(
                ProviderKind::IpinfoLite,
                self.api_key.clone(),
                base,
            )?),
            ProviderKind::EnrichSo => Box::new(EnrichSo::new(self.api_key.clone(), base)?),
            ProviderKind::PeopleDataLabs => {
                Box::new(PeopleDataLabs::new(self.api_key.clone(), base)?)
            }
        };
        Ok(provider)
    }
}

fn validate_base_url(url: &str) -> Result<String, ProviderConfigError> {
    let invalid = |reason: &str| ProviderConfigError::InvalidBaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    if uri.authority().is_none() {
        return Err(invalid("no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(invalid("no query or fragment allowed"));
    }
    // Every address must give a valid request URI.
    for probe in ["255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
        format!("{url}/{probe}")
            .parse::<http::Uri>()
            .map_err(|_| invalid("cannot append a path"))?;
    }
    Ok(url.to_owned())
}

/// Builds a request whose URI was validated by [`ProviderConfig::build`].
pub(crate) fn request(
    method: http::Method,
    uri: String,
    headers: &[(header::HeaderName, HeaderValue)],
    body: Bytes,
) -> http::Request<Bytes> {
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    // The base URL was checked with the longest IPv4 and IPv6 forms; an IP's text never holds
    // characters a URI path forbids.
    *req.uri_mut() = uri
        .parse()
        .expect("the base URL was validated when the provider was built");
    for (name, value) in headers {
        req.headers_mut().insert(name.clone(), value.clone());
    }
    req
}

/// The failure an HTTP status means when the body adds nothing, shared by all providers:
/// 202 queued, 401/403 invalid key, 402 quota, 404 not found, 429 rate limited, 5xx
/// transient. `None` for 2xx other than 202.
pub(crate) fn status_failure(
    response: &http::Response<Bytes>,
    now: Timestamp,
    key: &ApiKey,
) -> Option<LookupFailure> {
    let status = response.status();
    let retry_after = || parse_retry_after(response.headers(), now);
    Some(match status {
        StatusCode::ACCEPTED => LookupFailure::Queued {
            retry_after: retry_after(),
        },
        s if s.is_success() => return None,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LookupFailure::InvalidKey,
        StatusCode::PAYMENT_REQUIRED => LookupFailure::QuotaExhausted,
        StatusCode::NOT_FOUND => LookupFailure::NotFound,
        StatusCode::TOO_MANY_REQUESTS => LookupFailure::RateLimited {
            retry_after: retry_after(),
        },
        StatusCode::REQUEST_TIMEOUT => LookupFailure::Transient("HTTP 408".to_owned()),
        s if s.is_server_error() => LookupFailure::Transient(format!("HTTP {}", s.as_u16())),
        s => LookupFailure::Malformed(format!(
            "unexpected HTTP {}: {}",
            s.as_u16(),
            excerpt(response.body(), key)
        )),
    })
}

/// At most 200 characters of a body, with the key redacted, for error messages.
pub(crate) fn excerpt(body: &[u8], key: &ApiKey) -> String {
    let text = String::from_utf8_lossy(body);
    let cut: String = text.chars().take(200).collect();
    let cut = if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    };
    key.redact(&cut)
}

/// A JSON parse failure as a [`LookupFailure::Malformed`], with the key redacted.
pub(crate) fn malformed_json(err: &serde_json::Error, body: &[u8], key: &ApiKey) -> LookupFailure {
    LookupFailure::Malformed(format!(
        "{err} in body {:?}",
        excerpt(body, key).replace('\n', " ")
    ))
}

/// `Some(s)` for a non-blank string, trimmed.
pub(crate) fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The non-blank parts joined with `", "`, or `None`.
pub(crate) fn join_location(parts: &[Option<&str>]) -> Option<String> {
    let parts: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.map(str::trim).filter(|p| !p.is_empty()))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The wait a `Retry-After` header asks for (RFC 9110 §10.2.3): delay-seconds, or an
/// HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms) taken relative to
/// `now`; a date in the past means zero. `None` when absent or unreadable.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tippen_core::{enrichment::parse_retry_after, Timestamp};
///
/// let now = Timestamp::from_millis(1_445_412_480_000); // Wed, 21 Oct 2015 07:28:00 GMT
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(120)));
/// h.insert("retry-after", "Wed, 21 Oct 2015 07:29:30 GMT".parse().unwrap());
/// assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(90)));
/// ```
pub fn parse_retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Very long digit strings saturate rather than fail.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(Timestamp::from_millis(at.saturating_mul(1000)).since(now))
}

/// Seconds since the epoch of an HTTP-date in any of its three forms.
fn parse_http_date(value: &str) -> Option<i64> {
    use chrono::NaiveDateTime;
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
    // asctime:     Sun Nov  6 08:49:37 1994
    for format in [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    // Sun, 06 Nov 1994 08:49:37 GMT
    const T: i64 = 784_111_777_000;

    #[test]
    fn retry_after_all_forms() {
        let now = Timestamp::from_millis(T - 60_000);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(&headers(form), now),
                Some(Duration::from_secs(60)),
                "{form}"
            );
        }
        assert_eq!(parse_retry_after(&headers("0"), now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&headers(" 30 "), now),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_in_the_past_is_zero_and_junk_is_none() {
        let now = Timestamp::from_millis(T + 5_000);
        assert_eq!(
            parse_retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&headers("soon"), now), None);
        assert_eq!(parse_retry_after(&headers("-5"), now), None);
        assert_eq!(parse_retry_after(&headers("1.5"), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
        assert_eq!(
            parse_retry_after(&headers("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn api_key_is_redacted_everywhere() {
        let key = ApiKey::new("sk_live_abc123");
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
        assert_eq!(key.to_string(), "[redacted]");
        assert_eq!(
            key.redact("token sk_live_abc123 was bad"),
            "token [redacted] was bad"
        );
        let config = ProviderConfig::new(ProviderKind::EnrichSo, key);
        assert!(!format!("{config:?}").contains("abc123"));
        let value = config.api_key.header_value("Bearer ").unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("abc123"));
    }

    #[test]
    fn config_validation() {
        let build = |c: ProviderConfig| c.build().map(|p| p.kind());
        assert_eq!(
            build(ProviderConfig::new(ProviderKind::Ipinfo, "  ")),
            Err(ProviderConfigError::EmptyApiKey)
        );
        assert_eq!(
            build(ProviderConfig::new(ProviderKind::Ipinfo, "bad\nkey")),
            Err(ProviderConfigError::InvalidApiKey)
        );
        for url in ["ftp://x", "not a url", "/relative", "http://h/?q=1"] {
            assert!(
                matches!(
                    build(ProviderConfig::new(ProviderKind::Ipinfo, "k").with_base_url(url)),
                    Err(ProviderConfigError::InvalidBaseUrl { .. })
                ),
                "{url}"
            );
        }
        assert_eq!(
            build(
                ProviderConfig::new(ProviderKind::EnrichSo, "k")
                    .with_base_url("http://127.0.0.1:8080/api/v3/")
            ),
            Ok(ProviderKind::EnrichSo)
        );
    }

    #[test]
    fn config_deserializes() {
        let config: ProviderConfig = serde_json::from_str(
            r#"{"kind":"people_data_labs","api_key":"k","base_url":"http://localhost:1"}"#,
        )
        .unwrap();
        assert_eq!(config.kind, ProviderKind::PeopleDataLabs);
        assert_eq!(config.effective_base_url(), "http://localhost:1");
        let config: ProviderConfig =
            serde_json::from_str(r#"{"kind":"ipinfo_lite","api_key":"k"}"#).unwrap();
        assert_eq!(config.effective_base_url(), "https://api.ipinfo.io/lite");
    }

    #[test]
    fn failure_messages() {
        assert_eq!(
            LookupFailure::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }
            .to_string(),
            "rate limited by the provider; retry after 30 s"
        );
        assert_eq!(
            LookupFailure::Queued { retry_after: None }.to_string(),
            "the provider queued the lookup"
        );
        assert!(FailureKind::Transient.is_retryable());
        assert!(!FailureKind::NotFound.is_retryable());
    }
}
