//! The browser assets every host serves: the tracker script, the dashboard and the demo page.
//! Plain files, no build step; embedded so that every host serves the same bytes.

/// `/tippen-tracker.js`: the visitor tracker.
pub const TRACKER_JS: &str = include_str!("../assets/tippen-tracker.js");
/// `/tippen-app-tracker.js`: the in-app tracker for logged-in product users (support
/// triggers).
pub const APP_TRACKER_JS: &str = include_str!("../assets/tippen-app-tracker.js");
/// `/dashboard`: the live visitor dashboard.
pub const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
/// `/demo`: a demo page carrying the tracker.
pub const DEMO_HTML: &str = include_str!("../assets/demo.html");
