//! The browser assets every host serves: the tracker script, the dashboard, the Command Center
//! and the demo page.
//! Plain files, no build step; embedded so that every host serves the same bytes. Behind the
//! crate feature `assets` (on by default): a backend serving its own pages can leave them out.

/// `/tippen-tracker.js`: the visitor tracker.
pub const TRACKER_JS: &str = include_str!("../assets/tippen-tracker.js");
/// `/tippen-app-tracker.js`: the in-app tracker for logged-in product users (support
/// triggers).
pub const APP_TRACKER_JS: &str = include_str!("../assets/tippen-app-tracker.js");
/// `/dashboard`: the live visitor dashboard.
pub const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
/// `/command-center`: the operator's overview of every site (the operator API).
pub const COMMAND_CENTER_HTML: &str = include_str!("../assets/command-center.html");
/// `/demo`: a demo page carrying the tracker.
pub const DEMO_HTML: &str = include_str!("../assets/demo.html");

/// A served asset: its content type and bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

const JS: &str = "application/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Where the served dashboard reads its socket's URL (empty: beside the page).
pub const DASHBOARD_WS_MARKER: &str = r#"<meta name="tippen-dashboard-ws-url" content="">"#;
/// Where the served tracker reads its socket's URL (empty: beside its endpoint).
pub const TRACKER_WS_MARKER: &str = "var SERVED_VISITOR_WS_URL = '';";

impl Asset {
    /// The body to serve: the file, told where the host's sockets are when they are not
    /// beside its HTTP routes (the dashboard's `<meta name="tippen-dashboard-ws-url">`, the
    /// tracker's `SERVED_VISITOR_WS_URL`).
    pub fn body_for(&self, sockets: &crate::config::SocketUrls) -> std::borrow::Cow<'static, str> {
        let replaced = if self.body == DASHBOARD_HTML {
            sockets.dashboard.as_deref().map(|url| {
                let attr = url
                    .replace('&', "&amp;")
                    .replace('"', "&quot;")
                    .replace('<', "&lt;");
                (
                    DASHBOARD_WS_MARKER,
                    format!(r#"<meta name="tippen-dashboard-ws-url" content="{attr}">"#),
                )
            })
        } else if self.body == TRACKER_JS {
            sockets.visitor.as_deref().map(|url| {
                // A JSON string is a JavaScript string literal; `<` escaped for good measure.
                let literal = serde_json::to_string(url)
                    .unwrap_or_default()
                    .replace('<', "\\u003c");
                (
                    TRACKER_WS_MARKER,
                    format!("var SERVED_VISITOR_WS_URL = {literal};"),
                )
            })
        } else {
            None
        };
        match replaced {
            Some((marker, with)) => self.body.replacen(marker, &with, 1).into(),
            None => self.body.into(),
        }
    }
}

/// The asset served at `path` (without a trailing slash), if any.
pub fn find(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/tippen-tracker.js" => (JS, TRACKER_JS),
        "/tippen-app-tracker.js" => (JS, APP_TRACKER_JS),
        "/dashboard" => (HTML, DASHBOARD_HTML),
        "/demo" => (HTML, DEMO_HTML),
        "/command-center" => (HTML, COMMAND_CENTER_HTML),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
