//! tippen nested in an existing axum application.
//!
//! [`app`] is the application: a small shop with its own routes (`/`, `/orders`), its own
//! state ([`Shop`]) and its own fallback, and tippen's whole contract under `/tippen` —
//! `/tippen/track/visitor`, `/tippen/ws/dashboard`, `/tippen/dashboard`,
//! `/tippen/tippen-tracker.js`, ... The shop's home page carries the tracker from
//! `/tippen/tippen-tracker.js`; the tracker and the dashboard page find tippen's endpoints
//! under the prefix they were served from. `src/main.rs` serves it:
//!
//! ```text
//! cargo run -p tippen-embed-axum     # http://127.0.0.1:8788/ and /tippen/dashboard?apiKey=…
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tippen_axum::TippenHost;

/// Where tippen is mounted in the application.
pub const TIPPEN_PREFIX: &str = "/tippen";

/// The application's own state: the shop's name, the public key its pages give the tracker,
/// and the orders taken (in memory).
#[derive(Clone)]
pub struct Shop {
    name: Arc<str>,
    tracker_key: Arc<str>,
    orders: Arc<Mutex<Vec<Order>>>,
}

/// One order of the shop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

impl Shop {
    /// A shop without orders whose pages track visitors with the site's public key.
    pub fn new(name: &str, tracker_key: &str) -> Self {
        Shop {
            name: name.into(),
            tracker_key: tracker_key.into(),
            orders: Arc::default(),
        }
    }
}

/// The whole application: the shop's routes with their state and fallback, and `tippen`'s
/// router nested under [`TIPPEN_PREFIX`]. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so tippen knows client addresses.
pub fn app(shop: Shop, tippen: &TippenHost) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/orders", get(orders).post(order))
        .fallback(not_found)
        // The shop's state is given first: `merge` takes a router of the same state type, and
        // tippen's router has its state already (`Router<()>`).
        .with_state(shop)
        // tippen under the prefix: `Router::new().nest(TIPPEN_PREFIX, tippen.router())` plus
        // `/tippen/`. tippen sees paths without the prefix (`/track/visitor`) and answers every
        // path under it, unknown ones with its JSON 404; the shop's fallback answers the rest.
        .merge(tippen.router_at(TIPPEN_PREFIX))
}

async fn home(State(shop): State<Shop>) -> Html<String> {
    let name = escape(&shop.name);
    let key = escape(&shop.tracker_key);
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
         <body>\n<h1>{name}</h1>\n<p>Fresh coffee, roasted weekly. <a href=\"/orders\">Orders</a></p>\n\
         <script src=\"{TIPPEN_PREFIX}/tippen-tracker.js\" data-tippen-api-key=\"{key}\" async></script>\n\
         </body>\n</html>\n"
    ))
}

async fn orders(State(shop): State<Shop>) -> Json<Vec<Order>> {
    let orders = shop.orders.lock().unwrap_or_else(PoisonError::into_inner);
    Json(orders.clone())
}

async fn order(State(shop): State<Shop>, Json(order): Json<Order>) -> impl IntoResponse {
    let mut orders = shop.orders.lock().unwrap_or_else(PoisonError::into_inner);
    orders.push(order.clone());
    (StatusCode::CREATED, Json(order))
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "Not on the menu.\n")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
