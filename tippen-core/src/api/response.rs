//! Writing a response: error answers, JSON bodies, common headers, preflights.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::invite::{InviteError, InviteToVisitor};
use crate::protocol::VideoCallResponse;
use crate::service::{Outcome, ServiceError};

/// `200 {"success":true,"deleted":<bool>}`: the answer of a deletion (visitor or user).
pub(super) fn deleted_response(deleted: bool) -> Response<Bytes> {
    #[derive(Serialize)]
    struct Deleted {
        success: bool,
        deleted: bool,
    }
    json_response(
        StatusCode::OK,
        &Deleted {
            success: true,
            deleted,
        },
    )
}

pub(super) fn no_video_provider() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "no video provider is configured on this server; use /api/send-video-invite with a guestUrl",
    )
}

pub(super) fn video_call_response(invite: &crate::invite::Invite) -> VideoCallResponse {
    VideoCallResponse {
        success: true,
        invite_id: invite.invite_id.clone(),
        host_url: invite.host_url.clone().unwrap_or_default(),
        guest_url: invite.guest_url.clone(),
        state: invite.state,
        expires_at: invite.expires_at,
    }
}

/// An error answer: status and message, sent as `{"error":"<message>"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message naming the problem.
    pub message: String,
    pub(super) allow: Option<&'static str>,
    /// `Retry-After` in seconds (429 and 503 say 1 unless set).
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// `413`: a request body over `limit` bytes ([`Limits::max_body_bytes`](crate::Limits)).
    /// Hosts that read bodies themselves answer it as soon as they know, without reading the
    /// rest.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large (limit {limit} bytes)"),
        )
    }

    /// The same error answered with `Retry-After: <secs>`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Bytes> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        let mut r = json_response(
            self.status,
            &Body {
                error: &self.message,
            },
        );
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::VisitorNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "Visitor not found")
            }
            ServiceError::Contention(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ServiceError::Invite(err @ InviteError::NotFound { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, err.to_string())
            }
            ServiceError::Invite(err) => ApiError::new(StatusCode::CONFLICT, err.to_string()),
            ServiceError::OptedOut(_) => ApiError::new(StatusCode::GONE, e.to_string()),
            ServiceError::HistoryDisabled => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, e.to_string())
            }
            ServiceError::Quota(message) => ApiError {
                retry_after: Some(60),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            },
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "store failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error")
            }
        }
    }
}

pub(super) fn with_common_headers(mut r: Response<Bytes>) -> Response<Bytes> {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

pub(super) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Bytes::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_common_headers(r)
}

#[cfg(feature = "assets")]
pub(super) fn static_response(
    content_type: &'static str,
    body: std::borrow::Cow<'static, str>,
) -> Response<Bytes> {
    let body = match body {
        std::borrow::Cow::Borrowed(b) => Bytes::from_static(b.as_bytes()),
        std::borrow::Cow::Owned(b) => Bytes::from(b),
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    with_common_headers(r)
}

pub(super) fn preflight() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, X-Tippen-API-Key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    with_common_headers(r)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrackResponse<'a> {
    pub(super) success: bool,
    pub(super) session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) invite: Option<InviteToVisitor>,
}

#[derive(Serialize)]
pub(super) struct InviteStateResponse {
    pub(super) success: bool,
    pub(super) state: crate::invite::InviteState,
}

#[derive(Serialize)]
pub(super) struct Success {
    pub(super) success: bool,
}

#[derive(Serialize)]
pub(super) struct ActivityResponse {
    pub(super) success: bool,
    pub(super) stored: usize,
    pub(super) analyzed: bool,
}

#[derive(Serialize)]
pub(super) struct VisitorsResponse {
    pub(super) visitors: Vec<crate::protocol::VisitorView>,
    pub(super) seq: u64,
}

/// `200 {"success":true,"state":…}`, or the conflict (409) of an event that found the invite
/// expired, keeping the expiry's broadcast.
pub(super) fn invite_change_response(
    change: crate::service::InviteChange,
) -> (Response<Bytes>, Outcome) {
    let response = match change.refused {
        Some(err) => ApiError::from(ServiceError::Invite(err)).into_response(),
        None => json_response(
            StatusCode::OK,
            &InviteStateResponse {
                success: true,
                state: change.invite.state,
            },
        ),
    };
    (response, change.outcome)
}
