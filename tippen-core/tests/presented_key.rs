//! `api::presented_key`: where a request's key is found (header, query, JSON body), in order.

use bytes::Bytes;
use tippen_core::api::presented_key;

fn req(uri: &str, header: Option<&str>, body: &'static str) -> http::Request<Bytes> {
    let mut b = http::Request::post(uri);
    if let Some(h) = header {
        b = b.header("X-Tippen-API-Key", h);
    }
    b.body(Bytes::from_static(body.as_bytes())).unwrap()
}

#[test]
fn header_then_query_then_body() {
    let body = r#"{"apiKey":"from_body","visitorId":"v"}"#;
    assert_eq!(
        presented_key(&req(
            "/track/leave?apiKey=from_query",
            Some("from_header"),
            body
        ))
        .as_deref(),
        Some("from_header")
    );
    assert_eq!(
        presented_key(&req("/track/leave?apiKey=from_query", None, body)).as_deref(),
        Some("from_query")
    );
    assert_eq!(
        presented_key(&req("/track/leave", None, body)).as_deref(),
        Some("from_body")
    );
}

#[test]
fn no_key_anywhere_is_none() {
    assert_eq!(presented_key(&req("/track/leave", None, "")), None);
    assert_eq!(presented_key(&req("/track/leave", None, "not json")), None);
    assert_eq!(presented_key(&req("/track/leave", None, "[1,2]")), None);
    assert_eq!(
        presented_key(&req("/track/leave?apiKey=", Some(""), r#"{"apiKey":""}"#)),
        None
    );
    assert_eq!(
        presented_key(&req("/track/leave", None, r#"{"apiKey":7}"#)),
        None
    );
}
