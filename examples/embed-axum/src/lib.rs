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
//!
//! The shop's staff sign in with the shop's own login (`POST /login`, a session cookie), and
//! tippen takes that sign-in instead of a key ([`tippen_axum::Authorize`], [`StaffSessions`]):
//! a signed-in agent calls `/tippen/api/visitors` and `/tippen/api/send-video-invite` with
//! just the shop's cookie, each in their role, and tippen records their name on the invite and
//! in the audit log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tippen_axum::{Authorize, TippenHost};
use tippen_core::api::Principal;
use tippen_core::{IdGenerator, KeyRole, SecureIds, SiteId};

/// Where tippen is mounted in the application.
pub const TIPPEN_PREFIX: &str = "/tippen";

/// The application's own state: the shop's name, the public key its pages give the tracker,
/// and the orders taken (in memory).
#[derive(Clone)]
pub struct Shop {
    name: Arc<str>,
    tracker_key: Arc<str>,
    orders: Arc<Mutex<Vec<Order>>>,
    site: SiteId,
    staff: Arc<Vec<StaffMember>>,
    sessions: StaffSessions,
}

/// A member of the shop's staff: their login, and their role in tippen.
#[derive(Clone, Debug)]
struct StaffMember {
    name: String,
    password: String,
    role: KeyRole,
}

/// The shop's signed-in staff by session cookie, and what makes tippen take them
/// ([`Authorize`]): a request carrying a live `shop_session` cookie is its member's, on the
/// shop's site, in their role.
#[derive(Clone, Default)]
pub struct StaffSessions {
    site: Option<SiteId>,
    by_cookie: Arc<Mutex<HashMap<String, (String, KeyRole)>>>,
}

/// The shop's session cookie.
pub const SESSION_COOKIE: &str = "shop_session";

impl Authorize for StaffSessions {
    fn principal(&self, parts: &axum::http::request::Parts) -> Option<Principal> {
        let cookies = parts
            .headers
            .get(axum::http::header::COOKIE)?
            .to_str()
            .ok()?;
        let session = cookies
            .split(';')
            .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))?;
        let sessions = self
            .by_cookie
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (name, role) = sessions.get(session)?;
        Some(Principal {
            site: self.site.clone()?,
            role: *role,
            name: name.clone(),
        })
    }
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
            site: SiteId::from("shop"),
            staff: Arc::default(),
            sessions: StaffSessions::default(),
        }
    }

    /// The same shop whose staff use tippen's site `site`, signing in with `POST /login`
    /// (`{"name","password"}`) as the members `staff` lists (`(name, password, role)`; a
    /// real shop keeps password hashes, or delegates to its identity provider).
    pub fn with_staff(mut self, site: &str, staff: &[(&str, &str, KeyRole)]) -> Self {
        self.site = SiteId::from(site);
        self.sessions.site = Some(self.site.clone());
        self.staff = Arc::new(
            staff
                .iter()
                .map(|(name, password, role)| StaffMember {
                    name: (*name).to_owned(),
                    password: (*password).to_owned(),
                    role: *role,
                })
                .collect(),
        );
        self
    }
}

/// A sign-in of `POST /login`.
#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

async fn login(State(shop): State<Shop>, Json(login): Json<Login>) -> axum::response::Response {
    let Some(member) = shop
        .staff
        .iter()
        .find(|m| m.name == login.name && m.password == login.password)
    else {
        return (StatusCode::UNAUTHORIZED, "Wrong name or password.\n").into_response();
    };
    let ids = SecureIds;
    let session = format!("{:016x}{:016x}", ids.next_u64(), ids.next_u64());
    shop.sessions
        .by_cookie
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(session.clone(), (member.name.clone(), member.role));
    (
        StatusCode::NO_CONTENT,
        [(
            axum::http::header::SET_COOKIE,
            format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"),
        )],
    )
        .into_response()
}

/// The whole application: the shop's routes with their state and fallback, and `tippen`'s
/// router nested under [`TIPPEN_PREFIX`]. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so tippen knows client addresses.
pub fn app(shop: Shop, tippen: &TippenHost) -> Router {
    let sessions = shop.sessions.clone();
    Router::new()
        .route("/", get(home))
        .route("/orders", get(orders).post(order))
        .route("/login", axum::routing::post(login))
        .fallback(not_found)
        // The shop's state is given first: `merge` takes a router of the same state type, and
        // tippen's router has its state already (`Router<()>`).
        .with_state(shop)
        // tippen under the prefix: `Router::new().nest(TIPPEN_PREFIX, tippen.router())` plus
        // `/tippen/`. tippen sees paths without the prefix (`/track/visitor`) and answers every
        // path under it, unknown ones with its JSON 404; the shop's fallback answers the rest.
        // Requests without a key are the signed-in staff member's, if any.
        .merge(tippen.router_at_with(TIPPEN_PREFIX, sessions))
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
