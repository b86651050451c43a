//! The load baseline: a bare axum server that parses the same `POST /track/visitor` JSON as
//! tippen and answers the same body, with no keys, no store and no dashboards.
//!
//! `cargo run --release -p tippen-benches --bin bare_axum -- 127.0.0.1:8788`
//! (used by `scripts/load.sh`, which compares it with the reference server under `wrk`).

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use tippen_core::protocol::TrackVisitorRequest;

async fn track(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<TrackVisitorRequest>(&body) {
        Ok(req) => {
            let out = serde_json::json!({"success": true, "sessionId": req.visitor.visitor_id});
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                out.to_string(),
            )
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"error": e.to_string()}).to_string(),
        ),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8788".to_owned());
    let app = Router::new().route("/track/visitor", post(track));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare axum on http://{addr}");
    axum::serve(listener, app).await
}
