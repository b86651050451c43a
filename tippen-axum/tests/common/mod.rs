//! Helpers shared by the host's integration tests: serving a router on a loopback port and
//! reading JSON messages from a WebSocket.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tippen_axum::{SqliteStore, TippenHost};
use tippen_core::{Config, Site, SystemClock, Tippen};
use tokio_tungstenite::tungstenite::Message;

/// A host on a loopback port over a temporary SQLite file.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The listening address.
    pub addr: SocketAddr,
    /// An HTTP client.
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Starts a host with `sites`, the default configuration and the real clock; `configure`
/// finishes the service (a video provider, say).
pub async fn start(sites: &[Site], configure: impl FnOnce(Tippen) -> Tippen) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("tippen.db")).expect("open SQLite");
    let tippen = Tippen::new(Arc::new(store), Arc::new(SystemClock), Config::default());
    let tippen = Arc::new(configure(tippen));
    for site in sites {
        tippen.put_site(site).await.expect("put_site");
    }
    let addr = serve(TippenHost::new(tippen).router()).await;
    Server {
        base: format!("http://{addr}"),
        addr,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Server {
    /// POSTs `body` as JSON with `key` in the header: the status and the JSON answer.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-Tippen-API-Key", key)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A desktop browser's page view of `visitor_id` on site `pk_a`.
    pub async fn pageview(&self, visitor_id: &str) {
        let body = json!({
            "event": "pageview",
            "visitor": {
                "visitorId": visitor_id,
                "url": "https://example.com/pricing",
                "timestamp": "2025-10-16T12:00:00Z",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            },
            "website": "example.com",
        });
        let (status, _) = self.post("/track/visitor", "pk_a", body).await;
        assert_eq!(status, 200);
    }

    /// A WebSocket to `path` (with its query), upgraded (101).
    pub async fn socket(&self, path: &str) -> Ws {
        let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{}{path}", self.addr))
            .await
            .expect("connect");
        assert_eq!(response.status().as_u16(), 101);
        ws
    }

    /// A dashboard of site `a`, past its `INITIAL_VISITORS`.
    pub async fn dashboard(&self) -> Ws {
        let mut ws = self.socket("/ws/dashboard?apiKey=sk_a").await;
        next_matching(&mut ws, Duration::from_secs(2), |v| {
            v["type"] == "INITIAL_VISITORS"
        })
        .await;
        ws
    }

    /// `visitor_id`'s visitor channel on site `a`.
    pub async fn visitor(&self, visitor_id: &str) -> Ws {
        self.socket(&format!("/ws/visitor?apiKey=pk_a&visitorId={visitor_id}"))
            .await
    }
}

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `app` (with the peer address available to handlers) on a fresh loopback port.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    addr
}

/// Reads JSON text messages until one satisfies `want`, for at most `within`; panics with what
/// it saw otherwise.
pub async fn next_matching(ws: &mut Ws, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no matching message within {within:?}; saw {seen:?}"))
            .expect("socket open")
            .expect("message");
        let Ok(text) = msg.to_text() else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if want(&v) {
            return v;
        }
        seen.push(v);
    }
}

/// Nothing but control frames arrives within `within`.
pub async fn quiet(ws: &mut Ws, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => panic!("unexpected message {t}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}
