//! The axum host on the open internet (issue 17): the hardened accept loop
//! ([`tippen_axum::serve`]) and the host's own limits, each tried with a real client on a
//! real socket — a 10 MB upload that reads its 413, slow headers and idle connections closed,
//! a slow body answered 408, the connection cap, rate limits per address and per key with
//! `Retry-After`, and idle WebSockets closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tippen_axum::{HostConfig, RateLimit, RateLimits, ServeConfig, TippenHost};
use tippen_core::{Config, MemoryStore, Site, SystemClock, Tippen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    addr: std::net::SocketAddr,
    host: TippenHost,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.host.begin_shutdown();
    }
}

async fn start(host_config: HostConfig, serve_config: ServeConfig) -> Running {
    let tippen = Arc::new(Tippen::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Config::default(),
    ));
    tippen
        .put_site(&Site::new("a", "A", "pk_a", "sk_a"))
        .await
        .unwrap();
    let host = TippenHost::with_config(tippen, host_config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stopping = host.clone();
    tokio::spawn(tippen_axum::serve(
        listener,
        host.router(),
        serve_config,
        async move { stopping.shutdown_requested().await },
    ));
    Running { addr, host }
}

fn open() -> HostConfig {
    HostConfig {
        rate_limits: RateLimits::none(),
        ..HostConfig::default()
    }
}

/// Reads until the peer closes (or `within` passes); the bytes and whether it closed.
async fn read_all(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Reads one response (header and a `Content-Length` body).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole answer: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_streaming_a_10_mb_body_reads_the_413() {
    let server = start(open(), ServeConfig::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let size = 10 * 1024 * 1024;
    stream
        .write_all(
            format!(
                "POST /track/visitor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Tippen-API-Key: pk_a\r\nContent-Length: {size}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Like Python's http.client: the whole body first, then the answer.
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..size / chunk.len() {
        stream
            .write_all(&chunk)
            .await
            .expect("the server keeps reading the refused body (no broken pipe)");
    }
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.ends_with(r#"{"error":"request body too large (limit 65536 bytes)"}"#),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed() {
    let timeout = Duration::from_millis(400);
    let server = start(
        open(),
        ServeConfig::default().with_header_read_timeout(timeout),
    )
    .await;
    // Slow-loris: half a header, then nothing.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /track/visitor HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_all(&mut slow, Duration::from_secs(3)).await;
    assert!(closed, "a header that never ends is cut off");
    assert!(started.elapsed() >= timeout - Duration::from_millis(50));
    // Kept alive after an answer, then idle: closed as well.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, closed) = read_all(&mut idle, Duration::from_secs(3)).await;
    assert!(closed, "an idle kept-alive connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_is_408() {
    let server = start(
        HostConfig {
            body_read_timeout: Duration::from_millis(300),
            ..open()
        },
        ServeConfig::default(),
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /track/visitor HTTP/1.1\r\nHost: x\r\nX-Tippen-API-Key: pk_a\r\nContent-Length: 100\r\n\r\n{\"event\":")
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"the request body did not arrive within 0.3 s"}"#),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed() {
    let server = start(open(), ServeConfig::default().with_max_connections(3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    let _ = over.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (got, closed) = read_all(&mut over, Duration::from_secs(2)).await;
    assert!(
        closed && got.is_empty(),
        "the fourth connection is closed unanswered"
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (got, _) = read_all(&mut s, Duration::from_millis(300)).await;
        if got.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "a freed place is taken again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let per_client = start(
        HostConfig {
            rate_limits: RateLimits {
                per_client: Some(RateLimit::new(1, 5)),
                per_key: None,
            },
            ..HostConfig::default()
        },
        ServeConfig::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", per_client.addr);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let answer = client.get(format!("{base}/")).send().await.unwrap();
        statuses.push(answer.status().as_u16());
        if answer.status() == 429 {
            assert_eq!(answer.headers()["retry-after"], "1");
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(
                body["error"],
                "too many requests from this address; retry in 1 s"
            );
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);

    let per_key = start(
        HostConfig {
            rate_limits: RateLimits {
                per_client: None,
                per_key: Some(RateLimit::new(1, 3)),
            },
            ..HostConfig::default()
        },
        ServeConfig::default(),
    )
    .await;
    let base = format!("http://{}", per_key.addr);
    let list = |key: &'static str| {
        client
            .get(format!("{base}/api/visitors"))
            .header("X-Tippen-API-Key", key)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(list("sk_a").await.unwrap().status(), 200);
    }
    let refused = list("sk_a").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another key has its own bucket; a key in a beacon's body counts too.
    assert_eq!(list("pk_a").await.unwrap().status(), 403);
    for _ in 0..2 {
        client
            .post(format!("{base}/track/leave"))
            .body(r#"{"apiKey":"pk_a","visitorId":"v"}"#)
            .send()
            .await
            .unwrap();
    }
    let beacon = client
        .post(format!("{base}/track/leave"))
        .body(r#"{"apiKey":"pk_a","visitorId":"v"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(beacon.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websockets_are_pinged_and_closed_when_silent() {
    let server = start(
        HostConfig {
            ws_idle_timeout: Duration::from_millis(600),
            ..open()
        },
        ServeConfig::default(),
    )
    .await;
    let url = format!("ws://{}/ws/dashboard?apiKey=sk_a", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Reading answers the host's pings: the socket stays open well past the timeout.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, ws.next()).await {
        match msg.unwrap() {
            tokio_tungstenite::tungstenite::Message::Ping(_) => pings += 1,
            tokio_tungstenite::tungstenite::Message::Close(c) => {
                panic!("closed while answering pings: {c:?}")
            }
            _ => {}
        }
    }
    assert!(pings >= 2, "pinged every third of the timeout ({pings})");
    // Silent (no pong): closed.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                break frame.map(|f| f.reason.to_string());
            }
            Ok(Some(Ok(_))) => continue,
            // Answering a queued ping found the connection closed already.
            Ok(Some(Err(_)) | None) => break Some("idle".to_owned()),
            Err(_) => panic!("the silent socket is still open"),
        }
    };
    assert_eq!(closed.as_deref(), Some("idle"));
}
