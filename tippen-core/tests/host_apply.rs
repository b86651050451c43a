//! The host layer's apply order, kept for every host: [`host::apply`] drives a recording
//! [`HostIo`] and the test reads back what it was asked to do, in order.

mod common;

use std::sync::Mutex;

use async_trait::async_trait;
use common::*;
use serde_json::json;
use tippen_core::host::{self, HostIo};
use tippen_core::notify::Notice;
use tippen_core::{Broadcast, Deadline, LookupRequest, SiteId, VisitorPush};

/// Records every call, as text, in order; `reach` says whether a push finds a socket.
struct Recorder {
    calls: Mutex<Vec<String>>,
    reach: bool,
}

impl Recorder {
    fn new(reach: bool) -> Self {
        Recorder {
            calls: Mutex::new(Vec::new()),
            reach,
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

#[async_trait]
impl HostIo for Recorder {
    type Socket = u32;

    async fn broadcast(&self, site: &SiteId, messages: &[Broadcast]) {
        for m in messages {
            let v: serde_json::Value = serde_json::from_str(&m.text).unwrap();
            let what = ["state", "event", "reason"]
                .iter()
                .find_map(|k| v[*k].as_str())
                .unwrap_or("");
            let kind = v["type"].as_str().unwrap();
            self.log(format!("broadcast {site} {} {kind} {what}", m.seq));
        }
    }

    async fn push(&self, site: &SiteId, push: &VisitorPush, skip: Option<&u32>) -> bool {
        let v: serde_json::Value = serde_json::from_str(&push.text).unwrap();
        self.log(format!(
            "push {site} {} {} skip={skip:?}",
            push.visitor_id,
            v["type"].as_str().unwrap()
        ));
        self.reach
    }

    async fn arm(&self, site: &SiteId, deadline: Deadline) {
        self.log(format!(
            "arm {site} {:?}",
            deadline.at().map(|t| t.as_millis() - T0)
        ));
    }

    async fn start_lookups(&self, lookups: Vec<LookupRequest>) {
        self.log(format!("lookups {}", lookups.len()));
    }

    async fn notify(&self, notices: Vec<Notice>) {
        self.log(format!("notify {}", notices.len()));
    }
}

fn send_invite(h: &Harness, invite_id: &str) -> tippen_core::Effects {
    h.send(
        "POST",
        "/api/send-video-invite",
        &[("X-Tippen-API-Key", "sk_a")],
        json!({"visitorId": "v1", "guestUrl": "https://g/1", "inviteId": invite_id}).to_string(),
    )
}

#[test]
fn apply_keeps_the_order_and_reports_a_delivered_invite_once_per_push() {
    let h = harness();
    let io = Recorder::new(true);
    let tracked = h.track("pk_a", &pageview("v1", "t", "https://example.com/"));
    let answer = block(host::apply(&h.tippen, &io, tracked, None));
    assert_eq!(answer.response.unwrap().status(), 200);
    assert_eq!(
        io.take(),
        [
            "broadcast a 1 VISITOR_UPDATE new_visitor",
            "arm a Some(60000)"
        ]
    );

    // The invite's push reached a socket: `delivered` is recorded once and broadcast right
    // after the push, before the deadline is armed.
    let answer = block(host::apply(&h.tippen, &io, send_invite(&h, "i1"), Some(&7)));
    assert_eq!(answer.response.unwrap().status(), 200);
    assert_eq!(
        io.take(),
        [
            "broadcast a 2 VIDEO_INVITE_SENT ",
            "broadcast a 3 VIDEO_INVITE_UPDATE sent",
            "push a v1 VIDEO_INVITE skip=Some(7)",
            "broadcast a 4 VIDEO_INVITE_UPDATE delivered",
            "arm a Some(60000)",
        ]
    );
}

#[test]
fn a_push_that_reached_no_socket_delivers_nothing() {
    let h = harness();
    let io = Recorder::new(false);
    let tracked = h.track("pk_a", &pageview("v1", "t", "https://example.com/"));
    let _ = block(host::apply(&h.tippen, &io, tracked, None));
    io.take();
    let _ = block(host::apply(&h.tippen, &io, send_invite(&h, "i1"), None));
    assert_eq!(
        io.take(),
        [
            "broadcast a 2 VIDEO_INVITE_SENT ",
            "broadcast a 3 VIDEO_INVITE_UPDATE sent",
            "push a v1 VIDEO_INVITE skip=None",
            "arm a Some(60000)",
        ]
    );
}

#[test]
fn a_sweep_replaces_the_deadline_and_effects_without_a_site_do_nothing() {
    let h = harness();
    let io = Recorder::new(true);
    let tracked = h.track("pk_a", &pageview("v1", "t", "https://example.com/"));
    let _ = block(host::apply(&h.tippen, &io, tracked, None));
    io.take();
    h.clock.advance(std::time::Duration::from_secs(60));
    let swept = block(h.tippen.handle_timeout(&SiteId::from("a"))).unwrap();
    assert_eq!(swept.deadline, Some(Deadline::Exactly(None)));
    let _ = block(host::apply(&h.tippen, &io, swept, None));
    assert_eq!(
        io.take(),
        ["broadcast a 2 VISITOR_REMOVED inactive", "arm a None"]
    );

    let not_found = h.send("GET", "/nope", &[], "");
    let answer = block(host::apply(&h.tippen, &io, not_found, None));
    assert_eq!(answer.response.unwrap().status(), 404);
    assert!(io.take().is_empty());
}
