//! A dashboard WebSocket client that checks every message's envelope as it arrives.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wire::{describe_bytes, describe_json};
use crate::{Failure, Target};

/// How long to wait for the upgrade and for the first message.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Message types that answer one connection and carry the current `seq` without advancing it.
const REPLIES: [&str; 3] = ["INITIAL_VISITORS", "PONG", "ERROR"];

/// `ws://…/ws/dashboard?apiKey=…` for `key` (no query parameter when `key` is `None`).
pub(crate) fn dashboard_url(target: &Target, key: Option<&str>) -> String {
    if let Some(url) = &target.dashboard_ws_url {
        let sep = if url.contains('?') { '&' } else { '?' };
        return match key {
            Some(key) => format!("{url}{sep}apiKey={}", percent_encode(key)),
            None => url.clone(),
        };
    }
    let base = target.base_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    match key {
        Some(key) => format!("{base}/ws/dashboard?apiKey={}", percent_encode(key)),
        None => format!("{base}/ws/dashboard"),
    }
}

/// `ws://…/ws/dashboard?ticket=…`: the dashboard socket opened with a ticket of
/// `POST /api/ws-ticket` instead of the key.
pub(crate) fn dashboard_ticket_url(target: &Target, ticket: &str) -> String {
    let url = dashboard_url(target, None);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}ticket={}", percent_encode(ticket))
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A connected dashboard.
pub(crate) struct Dashboard {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// What this dashboard is, and what was last sent on it, for failure messages.
    label: String,
    last_sent: String,
    /// Every message received, as text (for failure messages).
    seen: Vec<String>,
    /// The `seq` of the last message received.
    last_seq: Option<u64>,
    /// When set, broadcasts must be exactly `last_seq + 1` and replies exactly `last_seq`.
    exact_seq: bool,
    /// The `INITIAL_VISITORS` message received on connect.
    pub(crate) initial: Value,
}

impl Dashboard {
    /// Connects with `key` and reads the first message, which must be `INITIAL_VISITORS` with a
    /// `visitors` array and an integer `seq`.
    pub(crate) async fn connect(target: &Target, key: &str) -> Result<Self, Failure> {
        Self::connect_with(target, key, false).await
    }

    /// Like [`Dashboard::connect`], and from then on every broadcast must carry exactly the
    /// previous `seq` + 1 and every reply exactly the previous `seq`. Only honest where no other
    /// traffic reaches the site.
    pub(crate) async fn connect_exact(target: &Target, key: &str) -> Result<Self, Failure> {
        Self::connect_with(target, key, true).await
    }

    async fn connect_with(target: &Target, key: &str, exact_seq: bool) -> Result<Self, Failure> {
        Self::connect_with_header(target, key, exact_seq, None).await
    }

    /// Like [`Dashboard::connect`], with one more header on the upgrade (the client's
    /// address, say).
    pub(crate) async fn connect_from(
        target: &Target,
        key: &str,
        header: (&str, &str),
    ) -> Result<Self, Failure> {
        Self::connect_with_header(target, key, false, Some(header)).await
    }

    async fn connect_with_header(
        target: &Target,
        key: &str,
        exact_seq: bool,
        header: Option<(&str, &str)>,
    ) -> Result<Self, Failure> {
        Self::connect_url_with(dashboard_url(target, Some(key)), exact_seq, header).await
    }

    /// Connects to the dashboard socket at `url` (its query carries the credential) and reads
    /// the first message, like [`Dashboard::connect`].
    pub(crate) async fn connect_url(url: String, exact_seq: bool) -> Result<Self, Failure> {
        Self::connect_url_with(url, exact_seq, None).await
    }

    async fn connect_url_with(
        url: String,
        exact_seq: bool,
        header: Option<(&str, &str)>,
    ) -> Result<Self, Failure> {
        let ws = upgrade_with(&url, header).await?;
        let mut dashboard = Dashboard {
            ws,
            label: format!("dashboard {url}"),
            last_sent: format!("WebSocket upgrade GET {url}"),
            seen: Vec::new(),
            last_seq: None,
            exact_seq,
            initial: Value::Null,
        };
        let first = dashboard
            .next(Instant::now() + CONNECT_TIMEOUT)
            .await?
            .ok_or_else(|| dashboard.timeout("an INITIAL_VISITORS message", CONNECT_TIMEOUT))?
            .0;
        if first.get("type").and_then(Value::as_str) != Some("INITIAL_VISITORS")
            || !first.get("visitors").is_some_and(Value::is_array)
        {
            return Err(dashboard.mismatch(
                "the first message to be {\"type\":\"INITIAL_VISITORS\",\"visitors\":[...],\"seq\":n}",
                &first,
            ));
        }
        dashboard.initial = first;
        Ok(dashboard)
    }

    /// The `seq` of the last message received.
    pub(crate) fn seq(&self) -> u64 {
        self.last_seq.unwrap_or(0)
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

    /// Notes what the case did last (an HTTP request, say), for failure messages.
    pub(crate) fn note(&mut self, step: impl Into<String>) {
        self.last_sent = step.into();
    }

    /// The next message, checked, with its arrival time; `None` at `deadline`.
    pub(crate) async fn next(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(Value, Instant)>, Failure> {
        loop {
            let frame = match tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(self.closed("the connection ended")),
                Ok(Some(Err(e))) => return Err(self.closed(&e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let at = Instant::now();
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
            self.seen.push(text.clone());
            let value: Value = serde_json::from_str(&text).map_err(|e| Failure::Mismatch {
                sent: self.last_sent.clone(),
                expected: "every message to be JSON".into(),
                got: format!("{text:?} ({e})"),
            })?;
            self.check_envelope(&value)?;
            return Ok(Some((value, at)));
        }
    }

    /// Every message is an object with a string `type` and an integer `seq`; in exact mode,
    /// broadcasts advance `seq` by one and replies repeat it.
    fn check_envelope(&mut self, value: &Value) -> Result<(), Failure> {
        let kind = value.get("type").and_then(Value::as_str);
        let seq = value.get("seq").and_then(Value::as_u64);
        let (Some(kind), Some(seq)) = (kind, seq) else {
            return Err(self.mismatch(
                "every message to be an object with a string `type` and an integer `seq`",
                value,
            ));
        };
        let is_reply = REPLIES.contains(&kind);
        if self.exact_seq
            && let Some(last) = self.last_seq
        {
            let want = if is_reply { last } else { last + 1 };
            if seq != want {
                let rule = if is_reply {
                    format!("a {kind} reply to carry the current seq {last} without advancing it")
                } else {
                    format!(
                        "the broadcast {kind} to carry seq {want} (previous message had {last}; \
                         only this case writes to this site)"
                    )
                };
                return Err(self.mismatch(&rule, value));
            }
        }
        self.last_seq = Some(seq);
        Ok(())
    }

    /// Waits until a message satisfying `matches` arrives (skipping others) and returns it with
    /// its arrival time.
    pub(crate) async fn wait_for(
        &mut self,
        expected: &str,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Instant), Failure> {
        let deadline = Instant::now() + within;
        while let Some((value, at)) = self.next(deadline).await? {
            if matches(&value) {
                return Ok((value, at));
            }
        }
        Err(self.timeout(expected, within))
    }

    /// Like [`Dashboard::wait_for`], but a matching message received earlier (skipped while
    /// waiting for another) counts too: for broadcasts that hosts with several writers may
    /// deliver in either order (each predicate names a unique id and state).
    pub(crate) async fn wait_for_any_order(
        &mut self,
        expected: &str,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Instant), Failure> {
        let earlier = self
            .seen
            .iter()
            .filter_map(|text| serde_json::from_str::<Value>(text).ok())
            .find(|m| matches(m));
        match earlier {
            Some(m) => Ok((m, Instant::now())),
            None => self.wait_for(expected, within, matches).await,
        }
    }

    /// Reads messages for `window` and fails if one satisfies `forbidden`.
    pub(crate) async fn expect_none(
        &mut self,
        rule: &str,
        window: Duration,
        forbidden: impl Fn(&Value) -> bool,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + window;
        while let Some((value, _)) = self.next(deadline).await? {
            if forbidden(&value) {
                return Err(self.mismatch(rule, &value));
            }
        }
        Ok(())
    }

    /// Sends `{"type":"PING"}` and waits for the `PONG`, skipping broadcasts.
    pub(crate) async fn ping(&mut self) -> Result<Value, Failure> {
        self.send(&serde_json::json!({"type": "PING"})).await?;
        Ok(self
            .wait_for("a PONG", CONNECT_TIMEOUT, |m| is_type(m, "PONG"))
            .await?
            .0)
    }

    /// Sends `{"type":"GET_VISITORS"}` and waits for the `INITIAL_VISITORS` answer.
    pub(crate) async fn get_visitors(&mut self) -> Result<Value, Failure> {
        self.send(&serde_json::json!({"type": "GET_VISITORS"}))
            .await?;
        let (answer, _) = self
            .wait_for("an INITIAL_VISITORS answer", CONNECT_TIMEOUT, |m| {
                is_type(m, "INITIAL_VISITORS")
            })
            .await?;
        if answer.get("visitors").is_some_and(Value::is_array) {
            Ok(answer)
        } else {
            Err(self.mismatch("INITIAL_VISITORS with a `visitors` array", &answer))
        }
    }

    /// How many of the messages received so far satisfy `matches`.
    pub(crate) fn count(&self, matches: impl Fn(&Value) -> bool) -> usize {
        self.seen
            .iter()
            .filter_map(|text| serde_json::from_str::<Value>(text).ok())
            .filter(|m| matches(m))
            .count()
    }

    /// A mismatch on this connection.
    pub(crate) fn mismatch(&self, expected: &str, got: &Value) -> Failure {
        Failure::Mismatch {
            sent: self.last_sent.clone(),
            expected: expected.to_owned(),
            got: format!("{}: {}", self.label, describe_json(got)),
        }
    }

    fn timeout(&self, expected: &str, waited: Duration) -> Failure {
        Failure::Timeout {
            sent: self.last_sent.clone(),
            expected: format!("{expected} on {}", self.label),
            waited,
            seen: self.recent(),
        }
    }

    fn closed(&self, why: &str) -> Failure {
        Failure::Transport {
            sent: self.last_sent.clone(),
            error: format!(
                "{} stopped: {why}; received before: {}",
                self.label,
                self.recent()
            ),
        }
    }

    /// The last few messages received, shortened.
    fn recent(&self) -> String {
        if self.seen.is_empty() {
            return "(nothing)".into();
        }
        let skip = self.seen.len().saturating_sub(8);
        let mut text = String::new();
        if skip > 0 {
            text.push_str(&format!("({skip} earlier) "));
        }
        for message in &self.seen[skip..] {
            text.push_str(&describe_bytes(message.as_bytes(), 240));
            text.push(' ');
        }
        text
    }

    /// Closes the connection politely (errors ignored: the case is over).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// Tries to open a dashboard that the server must refuse; returns the HTTP status and body of
/// the refusal, or a failure when the upgrade succeeds.
pub(crate) async fn refused(target: &Target, key: Option<&str>) -> Result<(u16, Vec<u8>), Failure> {
    crate::socket::refused_at(&dashboard_url(target, key)).await
}

/// True when `message` has `"type": kind`.
pub(crate) fn is_type(message: &Value, kind: &str) -> bool {
    message.get("type").and_then(Value::as_str) == Some(kind)
}

/// True when `message` is a `VISITOR_UPDATE` about `visitor_id` with `event`.
pub(crate) fn is_update(message: &Value, visitor_id: &str, event: &str) -> bool {
    is_type(message, "VISITOR_UPDATE")
        && message.get("event").and_then(Value::as_str) == Some(event)
        && message
            .get("visitor")
            .and_then(|v| v.get("visitorId"))
            .and_then(Value::as_str)
            == Some(visitor_id)
}

/// True when `message` is a `VISITOR_REMOVED` of `visitor_id` (any reason).
pub(crate) fn is_removal(message: &Value, visitor_id: &str) -> bool {
    is_type(message, "VISITOR_REMOVED")
        && message.get("visitorId").and_then(Value::as_str) == Some(visitor_id)
}

/// True when `message` concerns `visitor_id` in any way.
pub(crate) fn mentions(message: &Value, visitor_id: &str) -> bool {
    message.get("visitorId").and_then(Value::as_str) == Some(visitor_id)
        || message
            .get("visitor")
            .and_then(|v| v.get("visitorId"))
            .and_then(Value::as_str)
            == Some(visitor_id)
        || message
            .get("visitors")
            .is_some_and(|list| crate::wire::find_visitor(list, visitor_id).is_some())
}

/// Opens a WebSocket to `url`: a failed or refused upgrade is a [`Failure`] naming what came
/// back.
pub(crate) async fn upgrade(
    url: &str,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, Failure> {
    upgrade_with(url, None).await
}

/// Like [`upgrade`], with one more header on the upgrade request.
pub(crate) async fn upgrade_with(
    url: &str,
    header: Option<(&str, &str)>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, Failure> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let sent = match header {
        Some((name, value)) => format!("WebSocket upgrade GET {url} ({name}: {value})"),
        None => format!("WebSocket upgrade GET {url}"),
    };
    let bad = |error: String| Failure::Transport {
        sent: sent.clone(),
        error,
    };
    let mut req = url.into_client_request().map_err(|e| bad(e.to_string()))?;
    if let Some((name, value)) = header {
        req.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?,
            HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?,
        );
    }
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .map_err(|_| Failure::Transport {
            sent: sent.clone(),
            error: format!("no upgrade within {CONNECT_TIMEOUT:?}"),
        })?;
    let (ws, _) = connected.map_err(|e| match e {
        WsError::Http(response) => Failure::Mismatch {
            sent: sent.clone(),
            expected: "HTTP 101 Switching Protocols".into(),
            got: format!(
                "HTTP {}, body {}",
                response.status().as_u16(),
                response
                    .body()
                    .as_deref()
                    .map_or("(none)".into(), |b| describe_bytes(b, 300))
            ),
        },
        other => Failure::Transport {
            sent: sent.clone(),
            error: other.to_string(),
        },
    })?;
    Ok(ws)
}
