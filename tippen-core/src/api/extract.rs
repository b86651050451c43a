//! Reading a request: the key (header, query or body), query parameters, JSON bodies, ids.

use bytes::Bytes;
use http::{HeaderMap, Request};
use serde::de::DeserializeOwned;

use super::response::ApiError;
use crate::protocol::{
    CancelInviteRequest, LeaveRequest, SendVideoInviteRequest, TrackInviteRequest,
    TrackVisitorRequest, UserActivityRequest, VideoCallRequest,
};

/// The header carrying the key (Part A).
pub const API_KEY_HEADER: &str = "x-tippen-api-key";

/// The Global Privacy Control request header.
pub const GPC_HEADER: &str = "sec-gpc";

/// Whether the request carries `Sec-GPC: 1`.
pub(super) fn sends_gpc(headers: &HeaderMap) -> bool {
    headers
        .get(GPC_HEADER)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
}

/// The Do Not Track request header.
pub const DNT_HEADER: &str = "dnt";

/// Whether the request carries `DNT: 1`.
pub(super) fn sends_dnt(headers: &HeaderMap) -> bool {
    headers
        .get(DNT_HEADER)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
}

/// The value of query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `s` percent-encoded for a path segment or a query value (only unreserved characters kept).
pub(super) fn percent_encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    // form_urlencoded also maps '+' to ' '; path segments keep '+', so protect it first.
    let protected = s.replace('+', "%2B");
    form_urlencoded::parse(format!("x={protected}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub(super) fn key_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(query, "apiKey"))
        .filter(|k| !k.is_empty())
}

/// The key a request presents, from the places the routes accept it: the `X-Tippen-API-Key`
/// header, the `apiKey` query parameter, or an `apiKey` string field of a JSON body (in that
/// order). Nothing else is checked. For hosts that must pick a site's owner before running the
/// request (the Workers host forwards to the site's Durable Object); [`Tippen::route`](crate::Tippen::route) still
/// decides every answer.
pub fn presented_key(req: &Request<Bytes>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct BodyKey {
        #[serde(rename = "apiKey")]
        api_key: Option<String>,
    }
    key_from(req.headers(), req.uri().query()).or_else(|| {
        serde_json::from_slice::<BodyKey>(req.body())
            .ok()
            .and_then(|b| b.api_key)
            .filter(|k| !k.is_empty())
    })
}

/// A JSON request body that may carry the site's key (`apiKey`).
pub(super) trait KeyedBody: DeserializeOwned {
    /// The key in the body, if any.
    fn api_key(&self) -> Option<&str>;
}

macro_rules! keyed_body {
    ($($t:ty),* $(,)?) => {
        $(impl KeyedBody for $t {
            fn api_key(&self) -> Option<&str> {
                self.api_key.as_deref()
            }
        })*
    };
}

keyed_body!(
    TrackVisitorRequest,
    LeaveRequest,
    SendVideoInviteRequest,
    VideoCallRequest,
    CancelInviteRequest,
    TrackInviteRequest,
    UserActivityRequest,
);

pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    // The hot path (heartbeats) parses once without tracking paths; only a failed parse pays
    // for a second pass that names the field.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                // serde_json appends " at line L column C"; the path says more.
                let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                // Name JSON shapes, not Rust types.
                if let Some(i) = msg.find("expected struct ") {
                    msg.replace_range(i.., "expected a JSON object");
                }
                if path == "." {
                    ApiError::bad_request(format!("invalid request body: {msg}"))
                } else {
                    ApiError::bad_request(format!("{msg} at {path}"))
                }
            }
            _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
        }
    })
}

pub(super) fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

pub(super) fn check_id(what: &str, id: &str, max: usize) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > max {
        return Err(ApiError::bad_request(format!(
            "{what} must be 1 to {max} bytes long"
        )));
    }
    Ok(())
}

/// A tracker's page id as kept: none when absent, empty or longer than `max` bytes (it only
/// orders an exit beacon against page views, so a bad one is dropped rather than refused).
pub(super) fn page_id(id: Option<String>, max: usize) -> Option<String> {
    id.filter(|p| !p.is_empty() && p.len() <= max)
}
