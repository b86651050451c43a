//! Video sessions for invites, sans-IO: a [`VideoProvider`] builds the provider's
//! `http::Request` and parses its `http::Response`; the host sends it with its own transport.
//!
//! [`CustomerConnect`] speaks the predecessor's provider API (`POST …/create-session` with
//! `hostName`, `guestName`, `isAdmin` → `success`, `sessionId`, `roomId`, `urls.host`,
//! `urls.guest`), with a configurable base URL.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What an admin asks for: who hosts and who is invited (names shown in the call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    /// The admin's display name.
    pub host_name: String,
    /// The visitor's display name (e.g. their company).
    pub guest_name: String,
}

/// A created video session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoSession {
    /// The provider's session id.
    pub session_id: String,
    /// The provider's room id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// Where the admin joins.
    pub host_url: String,
    /// Where the visitor joins (the invite's `guestUrl`).
    pub guest_url: String,
}

/// Why a session could not be created.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoError {
    /// The provider refused the credentials (401/403).
    #[error("the video provider refused the credentials (HTTP {0})")]
    Unauthorized(u16),
    /// The provider is rate limiting (429).
    #[error("the video provider is rate limiting")]
    RateLimited,
    /// The provider failed (5xx) or said `success: false`.
    #[error("the video provider failed: {0}")]
    Failed(String),
    /// The answer was not the documented shape.
    #[error("unexpected answer from the video provider: {0}")]
    Malformed(String),
}

/// A video-session provider, sans-IO.
pub trait VideoProvider: std::fmt::Debug + Send + Sync {
    /// The request creating a session.
    fn create_session_request(&self, request: &SessionRequest) -> Request<Bytes>;

    /// The session, from the provider's answer.
    fn parse_session(&self, response: &Response<Bytes>) -> Result<VideoSession, VideoError>;

    /// The `https://` origin the provider's guest URLs are on, which invites sent with a guest
    /// URL may point at whatever a site's allowlist says. `None` (the default): none.
    fn guest_origin(&self) -> Option<String> {
        None
    }
}

/// The predecessor's provider ("Customer Connect" video API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerConnect {
    base_url: String,
}

impl CustomerConnect {
    /// The provider at `base_url` (e.g. `https://…workers.dev/public/video-connect`); requests
    /// go to `<base_url>/create-session`.
    pub fn new(base_url: &str) -> Self {
        CustomerConnect {
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    host_name: &'a str,
    guest_name: &'a str,
    is_admin: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAnswer {
    success: bool,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
    #[serde(default)]
    urls: Option<Urls>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Urls {
    host: String,
    guest: String,
}

impl VideoProvider for CustomerConnect {
    fn guest_origin(&self) -> Option<String> {
        crate::site::https_origin(&self.base_url)
    }

    fn create_session_request(&self, request: &SessionRequest) -> Request<Bytes> {
        let body = CreateBody {
            host_name: &request.host_name,
            guest_name: &request.guest_name,
            is_admin: true,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut req = Request::new(Bytes::from(bytes));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = format!("{}/create-session", self.base_url)
            .parse()
            .unwrap_or_default();
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        req
    }

    fn parse_session(&self, response: &Response<Bytes>) -> Result<VideoSession, VideoError> {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(VideoError::Unauthorized(status.as_u16()));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(VideoError::RateLimited);
        }
        if status.is_server_error() {
            return Err(VideoError::Failed(format!("HTTP {}", status.as_u16())));
        }
        let answer: CreateAnswer = serde_json::from_slice(response.body())
            .map_err(|e| VideoError::Malformed(e.to_string()))?;
        if !answer.success || !status.is_success() {
            return Err(VideoError::Failed(answer.error.unwrap_or_else(|| {
                format!("success: false (HTTP {})", status.as_u16())
            })));
        }
        let (Some(session_id), Some(urls)) = (answer.session_id, answer.urls) else {
            return Err(VideoError::Malformed(
                "missing sessionId or urls".to_owned(),
            ));
        };
        for url in [&urls.host, &urls.guest] {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err(VideoError::Malformed(format!("not an http(s) URL: {url}")));
            }
        }
        Ok(VideoSession {
            session_id,
            room_id: answer.room_id,
            host_url: urls.host,
            guest_url: urls.guest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The predecessor's documented answer, verbatim.
    const DOCUMENTED: &str = r#"{
  "success": true,
  "sessionId": "vc_1761130191378_03i6oy",
  "roomId": "bbb349e5-ceb3-4cea-bca7-5a9b0407ef61",
  "urls": {
    "host": "https://app.customerconnect.live/public/video-connect/host/vc_1761130191378_03i6oy?roomId=bbb349e5-ceb3-4cea-bca7-5a9b0407ef61&hostName=Tippen%20Agent&isAdmin=true",
    "guest": "https://app.customerconnect.live/public/video-connect/guest/vc_1761130191378_03i6oy?roomId=bbb349e5-ceb3-4cea-bca7-5a9b0407ef61&guestName=Acme%20Corporation&isAdmin=true"
  }
}"#;

    fn answer(status: u16, body: &str) -> Response<Bytes> {
        let mut r = Response::new(Bytes::from(body.to_owned()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    }

    #[test]
    fn request_has_the_documented_shape() {
        let p = CustomerConnect::new("https://video.example/public/video-connect/");
        let req = p.create_session_request(&SessionRequest {
            host_name: "Tippen Agent".into(),
            guest_name: "Acme Corporation".into(),
        });
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri(),
            "https://video.example/public/video-connect/create-session"
        );
        assert_eq!(req.headers()[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"hostName":"Tippen Agent","guestName":"Acme Corporation","isAdmin":true})
        );
    }

    #[test]
    fn documented_answer_parses() {
        let p = CustomerConnect::new("https://video.example");
        let s = p.parse_session(&answer(200, DOCUMENTED)).unwrap();
        assert_eq!(s.session_id, "vc_1761130191378_03i6oy");
        assert_eq!(
            s.room_id.as_deref(),
            Some("bbb349e5-ceb3-4cea-bca7-5a9b0407ef61")
        );
        assert!(s.host_url.contains("/host/vc_1761130191378_03i6oy"));
        assert!(s.guest_url.contains("/guest/vc_1761130191378_03i6oy"));
    }

    #[test]
    fn failures_are_typed() {
        let p = CustomerConnect::new("https://video.example");
        assert_eq!(
            p.parse_session(&answer(403, "{}")),
            Err(VideoError::Unauthorized(403))
        );
        assert_eq!(
            p.parse_session(&answer(429, "")),
            Err(VideoError::RateLimited)
        );
        assert!(matches!(
            p.parse_session(&answer(502, "<html>")),
            Err(VideoError::Failed(_))
        ));
        assert_eq!(
            p.parse_session(&answer(200, r#"{"success":false,"error":"room limit"}"#)),
            Err(VideoError::Failed("room limit".into()))
        );
        assert!(matches!(
            p.parse_session(&answer(200, "not json")),
            Err(VideoError::Malformed(_))
        ));
        assert!(matches!(
            p.parse_session(&answer(200, r#"{"success":true,"sessionId":"x"}"#)),
            Err(VideoError::Malformed(_))
        ));
        assert!(matches!(
            p.parse_session(&answer(
                200,
                r#"{"success":true,"sessionId":"x","urls":{"host":"javascript:1","guest":"https://g"}}"#
            )),
            Err(VideoError::Malformed(_))
        ));
    }
}
