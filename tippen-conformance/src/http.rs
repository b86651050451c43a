//! A small HTTP client that remembers what it sent, so every failed check can say so.

use std::time::Duration;

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::wire::{describe_bytes, describe_json};
use crate::{Failure, Target};

/// The header that carries a site key.
pub(crate) const KEY_HEADER: &str = "X-Tippen-API-Key";

/// How long one request may take before the case fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client bound to the server under test.
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    /// A fresh client for `target` (one per case keeps cases independent).
    pub(crate) fn new(target: &Target) -> Result<Self, Failure> {
        Self::at(&target.base_url)
    }

    /// A fresh client for the server at `base_url`.
    pub(crate) fn at(base_url: &str) -> Result<Self, Failure> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Failure::Transport {
                sent: "(building the HTTP client)".into(),
                error: e.to_string(),
            })?;
        Ok(Http {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends `req` and reads the whole answer.
    pub(crate) async fn send(&self, req: Req) -> Result<Answer, Failure> {
        let sent = req.describe();
        let url = format!("{}{}", self.base, req.path);
        let mut builder = self.client.request(req.method.clone(), &url);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.clone());
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(|e| Failure::Transport {
            sent: sent.clone(),
            error: error_chain(&e),
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Transport {
                sent: sent.clone(),
                error: format!("reading the body of a {status} answer: {}", error_chain(&e)),
            })?
            .to_vec();
        Ok(Answer {
            sent,
            status,
            headers,
            body,
        })
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A request to send.
pub(crate) struct Req {
    method: Method,
    path: String,
    headers: Vec<(String, HeaderValue)>,
    body: Option<Vec<u8>>,
}

impl Req {
    /// A request with any method.
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        Req {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `GET path`.
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Req::new(Method::GET, path)
    }

    /// `POST path`.
    pub(crate) fn post(path: impl Into<String>) -> Self {
        Req::new(Method::POST, path)
    }

    /// Adds a header whose value is text.
    pub(crate) fn header(self, name: &str, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(v) => self.header_value(name, v),
            // Not representable as a header: send the bytes as they are.
            Err(_) => self.header_value(
                name,
                HeaderValue::from_bytes(value.as_bytes())
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
            ),
        }
    }

    /// Adds a header with raw bytes.
    pub(crate) fn header_value(mut self, name: &str, value: HeaderValue) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    /// Presents `key` in the `X-Tippen-API-Key` header.
    pub(crate) fn key(self, key: &str) -> Self {
        self.header(KEY_HEADER, key)
    }

    /// A JSON body with `Content-Type: application/json`.
    pub(crate) fn json(self, body: &Value) -> Self {
        self.raw("application/json", body.to_string().into_bytes())
    }

    /// A body of any bytes with the given content type.
    pub(crate) fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self = self.header("Content-Type", content_type);
        self.body = Some(body.into());
        self
    }

    /// `METHOD path [headers] body`, shortened, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!("{} {}", self.method, self.path);
        for (name, value) in &self.headers {
            text.push_str(&format!(
                " [{name}: {}]",
                describe_bytes(value.as_bytes(), 80)
            ));
        }
        if let Some(body) = &self.body {
            text.push_str(&format!(" body {}", describe_bytes(body, 300)));
        }
        text
    }
}

/// An answer together with the request that produced it.
pub(crate) struct Answer {
    /// The request, described.
    pub(crate) sent: String,
    /// The status code.
    pub(crate) status: StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    /// The whole body.
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// `HTTP 200, content-type …, body …`, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!("HTTP {}", self.status.as_u16());
        for name in [
            "content-type",
            "allow",
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "retry-after",
        ] {
            if let Some(v) = self.headers.get(name) {
                text.push_str(&format!(", {name}: {}", describe_bytes(v.as_bytes(), 120)));
            }
        }
        text.push_str(&format!(", body {}", describe_bytes(&self.body, 400)));
        text
    }

    /// A mismatch between `expected` and this answer.
    pub(crate) fn fail(&self, expected: impl Into<String>) -> Failure {
        Failure::Mismatch {
            sent: self.sent.clone(),
            expected: expected.into(),
            got: self.describe(),
        }
    }

    /// A header's value as text, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the status code.
    pub(crate) fn expect_status(&self, status: u16) -> Result<&Self, Failure> {
        if self.status.as_u16() == status {
            Ok(self)
        } else {
            Err(self.fail(format!("HTTP {status}")))
        }
    }

    /// Checks that the content type is `application/json` (parameters allowed).
    pub(crate) fn expect_json_type(&self) -> Result<&Self, Failure> {
        let ok = self
            .header("content-type")
            .is_some_and(|ct| media_type(ct) == "application/json");
        if ok {
            Ok(self)
        } else {
            Err(self.fail("Content-Type: application/json"))
        }
    }

    /// Parses the body as JSON.
    pub(crate) fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| self.fail(format!("a JSON body ({e})")))
    }

    /// Checks status, JSON content type, and that the parsed body equals `expected` exactly.
    pub(crate) fn expect_json(&self, status: u16, expected: &Value) -> Result<Value, Failure> {
        let want = format!("HTTP {status} with JSON body {}", describe_json(expected));
        if self.status.as_u16() != status {
            return Err(self.fail(want));
        }
        self.expect_json_type()?;
        let body = self.json()?;
        if &body == expected {
            Ok(body)
        } else {
            Err(self.fail(want))
        }
    }

    /// Checks status and a JSON 2xx body (any object); returns it.
    pub(crate) fn expect_ok_json(&self, status: u16) -> Result<Value, Failure> {
        self.expect_status(status)?;
        self.expect_json_type()?;
        let body = self.json()?;
        if body.is_object() {
            Ok(body)
        } else {
            Err(self.fail(format!("HTTP {status} with a JSON object body")))
        }
    }

    /// Checks that this is the contract's error shape: `status`, JSON content type, a body that
    /// is an object with exactly one field, `error`, a non-empty string. Returns the message.
    pub(crate) fn expect_error(&self, status: u16) -> Result<String, Failure> {
        let want = format!(
            "HTTP {status} with a JSON body {{\"error\":\"<message>\"}} (exactly one string field)"
        );
        if self.status.as_u16() != status {
            return Err(self.fail(want));
        }
        self.error_shape(&want)
    }

    /// Checks the error shape for any status.
    pub(crate) fn error_shape(&self, want: &str) -> Result<String, Failure> {
        self.expect_json_type()
            .map_err(|_| self.fail(format!("{want}; Content-Type: application/json")))?;
        let body: Value = serde_json::from_slice(&self.body).map_err(|_| self.fail(want))?;
        match body.as_object() {
            Some(obj) if obj.len() == 1 => match obj.get("error") {
                Some(Value::String(msg)) if !msg.is_empty() => Ok(msg.clone()),
                _ => Err(self.fail(want)),
            },
            _ => Err(self.fail(want)),
        }
    }

    /// Checks the error shape and that the message contains `needle` (ASCII case-insensitive).
    pub(crate) fn expect_error_mentioning(
        &self,
        status: u16,
        needle: &str,
    ) -> Result<String, Failure> {
        let message = self.expect_error(status)?;
        if message
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
        {
            Ok(message)
        } else {
            Err(self.fail(format!(
                "HTTP {status} with an error message that mentions `{needle}`"
            )))
        }
    }
}

/// The media type of a `Content-Type` value, lower case, without parameters.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
