//! A visitor-channel WebSocket client (`/ws/visitor`): JSON text messages without `seq`.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::dashboard::{percent_encode, upgrade};
use crate::wire::{describe_bytes, describe_json};
use crate::{Failure, Target};

/// How long to wait for the upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The visitor channel's URL for `key` and `visitor_id` (each left out when `None`).
pub(crate) fn visitor_url(target: &Target, key: Option<&str>, visitor_id: Option<&str>) -> String {
    let mut params = Vec::new();
    if let Some(key) = key {
        params.push(format!("apiKey={}", percent_encode(key)));
    }
    if let Some(id) = visitor_id {
        params.push(format!("visitorId={}", percent_encode(id)));
    }
    let query = params.join("&");
    if let Some(url) = &target.visitor_ws_url {
        if query.is_empty() {
            return url.clone();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        return format!("{url}{sep}{query}");
    }
    let base = target.base_url.trim_end_matches('/');
    let base = match base.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}"),
        None => base.replacen("https://", "wss://", 1),
    };
    if query.is_empty() {
        format!("{base}/ws/visitor")
    } else {
        format!("{base}/ws/visitor?{query}")
    }
}

/// One tab's visitor channel.
pub(crate) struct VisitorSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    label: String,
    last_sent: String,
    /// Every message received, parsed.
    received: Vec<Value>,
}

impl VisitorSocket {
    /// Opens `visitor_id`'s channel with `key`; `tab` names it in failure messages.
    pub(crate) async fn open(
        target: &Target,
        key: &str,
        visitor_id: &str,
        tab: &str,
    ) -> Result<Self, Failure> {
        let url = visitor_url(target, Some(key), Some(visitor_id));
        let ws = upgrade(&url).await?;
        Ok(VisitorSocket {
            ws,
            label: format!("visitor channel ({tab}) of {visitor_id}"),
            last_sent: format!("WebSocket upgrade GET {url}"),
            received: Vec::new(),
        })
    }

    /// Notes what the case did last, for failure messages.
    pub(crate) fn note(&mut self, step: impl Into<String>) {
        self.last_sent = step.into();
    }

    /// Sends a JSON text message.
    pub(crate) async fn send(&mut self, message: &Value) -> Result<(), Failure> {
        self.send_text(message.to_string()).await
    }

    /// Sends a text message as it is.
    pub(crate) async fn send_text(&mut self, text: String) -> Result<(), Failure> {
        self.last_sent = format!("{} ← {}", self.label, describe_bytes(text.as_bytes(), 200));
        let sent = self.last_sent.clone();
        tokio::time::timeout(CONNECT_TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .map_err(|_| Failure::Transport {
                sent: sent.clone(),
                error: "send did not complete".into(),
            })?
            .map_err(|e| Failure::Transport {
                sent,
                error: e.to_string(),
            })
    }

    /// The next JSON message; `None` at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Value>, Failure> {
        loop {
            let frame = match tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(self.closed("the connection ended")),
                Ok(Some(Err(e))) => return Err(self.closed(&e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let text = match frame {
                Message::Text(text) => text.to_string(),
                Message::Close(frame) => {
                    return Err(self.closed(&format!("the server closed it: {frame:?}")));
                }
                Message::Binary(bytes) => {
                    return Err(Failure::Mismatch {
                        sent: self.last_sent.clone(),
                        expected: "text (JSON) messages only".into(),
                        got: format!("a binary message {}", describe_bytes(&bytes, 200)),
                    });
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let value: Value = serde_json::from_str(&text).map_err(|e| Failure::Mismatch {
                sent: self.last_sent.clone(),
                expected: "every message to be JSON".into(),
                got: format!("{text:?} ({e})"),
            })?;
            if !value.get("type").is_some_and(Value::is_string) {
                return Err(self.mismatch("every message to have a string `type`", &value));
            }
            self.received.push(value.clone());
            return Ok(Some(value));
        }
    }

    /// Waits until a message satisfying `matches` arrives (skipping others) and returns it.
    pub(crate) async fn wait_for(
        &mut self,
        expected: &str,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failure> {
        let deadline = Instant::now() + within;
        while let Some(value) = self.next(deadline).await? {
            if matches(&value) {
                return Ok(value);
            }
        }
        Err(Failure::Timeout {
            sent: self.last_sent.clone(),
            expected: format!("{expected} on the {}", self.label),
            waited: within,
            seen: self.recent(),
        })
    }

    /// The next message, whatever it is, within `within`.
    pub(crate) async fn next_message(
        &mut self,
        expected: &str,
        within: Duration,
    ) -> Result<Value, Failure> {
        self.wait_for(expected, within, |_| true).await
    }

    /// Reads messages for `window` and fails if one satisfies `forbidden`.
    pub(crate) async fn expect_none(
        &mut self,
        rule: &str,
        window: Duration,
        forbidden: impl Fn(&Value) -> bool,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + window;
        while let Some(value) = self.next(deadline).await? {
            if forbidden(&value) {
                return Err(self.mismatch(rule, &value));
            }
        }
        Ok(())
    }

    /// A mismatch on this socket.
    pub(crate) fn mismatch(&self, expected: &str, got: &Value) -> Failure {
        Failure::Mismatch {
            sent: self.last_sent.clone(),
            expected: expected.to_owned(),
            got: format!("{}: {}", self.label, describe_json(got)),
        }
    }

    fn closed(&self, why: &str) -> Failure {
        Failure::Transport {
            sent: self.last_sent.clone(),
            error: format!(
                "the {} stopped: {why}; received before: {}",
                self.label,
                self.recent()
            ),
        }
    }

    fn recent(&self) -> String {
        if self.received.is_empty() {
            return "(nothing)".into();
        }
        let skip = self.received.len().saturating_sub(8);
        let mut text = String::new();
        if skip > 0 {
            text.push_str(&format!("({skip} earlier) "));
        }
        for message in &self.received[skip..] {
            text.push_str(&describe_json(message));
            text.push(' ');
        }
        text
    }

    /// Closes the socket politely (errors ignored).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// What a server answered a WebSocket upgrade.
pub(crate) enum Upgraded {
    /// HTTP 101: the socket opened (and was closed again at once).
    Opened,
    /// Another HTTP answer: its status, headers and body.
    Refused {
        status: u16,
        headers: tokio_tungstenite::tungstenite::http::HeaderMap,
        body: Vec<u8>,
    },
}

impl Upgraded {
    /// The answer, for a failure message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Upgraded::Opened => "HTTP 101, the socket opened".into(),
            Upgraded::Refused { status, body, .. } => {
                format!("HTTP {status} {}", describe_bytes(body, 300))
            }
        }
    }

    /// The `error` of a refusal's JSON body, if it has one.
    pub(crate) fn error(&self) -> Option<String> {
        match self {
            Upgraded::Opened => None,
            Upgraded::Refused { body, .. } => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned)),
        }
    }
}

/// Tries the WebSocket upgrade `req` (`sent` describes it): opened or refused, or a failure
/// when no HTTP answer came.
pub(crate) async fn try_upgrade(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    sent: &str,
) -> Result<Upgraded, Failure> {
    let transport = |error: String| Failure::Transport {
        sent: sent.to_owned(),
        error,
    };
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .map_err(|_| transport(format!("no answer within {CONNECT_TIMEOUT:?}")))?;
    match attempt {
        Ok((mut ws, _)) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            Ok(Upgraded::Opened)
        }
        Err(WsError::Http(response)) => Ok(Upgraded::Refused {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.body().clone().unwrap_or_default(),
        }),
        Err(other) => Err(transport(other.to_string())),
    }
}

/// Tries a WebSocket upgrade at `url` that the server must refuse; returns the refusal's HTTP
/// status and body, or a failure when the upgrade succeeds.
pub(crate) async fn refused_at(url: &str) -> Result<(u16, Vec<u8>), Failure> {
    let sent = format!("WebSocket upgrade GET {url}");
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| Failure::Transport {
            sent: sent.clone(),
            error: format!("no answer within {CONNECT_TIMEOUT:?}"),
        })?;
    match attempt {
        Ok((mut ws, _)) => {
            let first = tokio::time::timeout(Duration::from_millis(500), ws.next())
                .await
                .ok()
                .flatten()
                .and_then(Result::ok)
                .map_or("(nothing)".to_owned(), |m| m.to_string());
            let _ = ws.close(None).await;
            Err(Failure::Mismatch {
                sent,
                expected: "the upgrade refused with an HTTP error status".into(),
                got: format!("HTTP 101, the socket opened; first message {first}"),
            })
        }
        Err(WsError::Http(response)) => Ok((
            response.status().as_u16(),
            response.body().clone().unwrap_or_default(),
        )),
        Err(other) => Err(Failure::Transport {
            sent,
            error: other.to_string(),
        }),
    }
}
