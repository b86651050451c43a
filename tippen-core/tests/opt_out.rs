//! A deletion is an opt-out (issue 17): what is left is a tombstone with the visitor's id only;
//! until its retention ends the visitor's tracking calls are refused with 410 instead of
//! recreating it, and it is never listed. Then it is swept silently and the id is free again.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tippen_core::{Config, SiteId};

fn status(h: &tippen_core::Effects) -> u16 {
    h.response.as_ref().unwrap().status().as_u16()
}

fn heartbeat(visitor: &str) -> String {
    json!({"event": "heartbeat", "visitor": {"visitorId": visitor, "tabId": "t1", "url": "https://x.test/"}})
        .to_string()
}

fn delete(h: &Harness, visitor: &str) -> tippen_core::Effects {
    h.send(
        "DELETE",
        &format!("/api/visitors/{visitor}"),
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    )
}

#[test]
fn a_deleted_visitor_is_not_tracked_again_until_its_opt_out_ends() {
    let mut config = Config::default();
    config.privacy.opt_out_retention = Duration::from_secs(3600);
    let h = harness_with(config);
    let site = SiteId::from("a");
    assert_eq!(
        status(&h.track("pk_a", &pageview("v1", "t1", "https://x.test/"))),
        200
    );
    let deleted = delete(&h, "v1");
    assert_eq!(
        body_json(&deleted),
        json!({"success": true, "deleted": true})
    );

    // The tombstone holds the id and nothing else.
    let stored = block(h.tippen.store().visitor(&site, "v1"))
        .unwrap()
        .unwrap()
        .value;
    assert!(stored.tabs.is_empty() && stored.user_agent.is_none() && stored.website.is_empty());
    assert!(stored.opted_out_until.is_some());

    for body in [
        heartbeat("v1"),
        pageview("v1", "t2", "https://x.test/again"),
    ] {
        h.clock.advance(Duration::from_secs(60));
        let refused = h.track("pk_a", &body);
        assert_eq!(status(&refused), 410);
        assert_eq!(
            body_json(&refused),
            json!({"error": "visitor v1 was deleted and has opted out of tracking"})
        );
        assert!(refused.broadcasts.is_empty(), "nothing is announced");
    }
    let listed = h.send("GET", "/api/visitors", &[("X-Tippen-API-Key", "sk_a")], "");
    assert_eq!(body_json(&listed)["visitors"], json!([]));
    // An exit beacon changes nothing; deleting again has nothing to delete.
    let beacon = json!({"apiKey": "pk_a", "visitorId": "v1", "tabId": "t1"}).to_string();
    assert_eq!(status(&h.send("POST", "/track/leave", &[], beacon)), 200);
    assert_eq!(
        body_json(&delete(&h, "v1")),
        json!({"success": true, "deleted": false})
    );

    // The retention ends (counted from the last deletion): swept silently, tracked again.
    h.clock.advance(Duration::from_secs(3600));
    let swept = block(h.tippen.handle_timeout(&site)).unwrap();
    assert!(swept.broadcasts.is_empty(), "{:?}", swept.broadcasts);
    assert!(
        block(h.tippen.store().visitor(&site, "v1"))
            .unwrap()
            .is_none()
    );
    assert_eq!(status(&h.track("pk_a", &heartbeat("v1"))), 200);
}

#[test]
fn deleting_an_unknown_id_still_opts_it_out() {
    let h = harness();
    assert_eq!(
        body_json(&delete(&h, "gone")),
        json!({"success": true, "deleted": false})
    );
    assert_eq!(
        status(&h.track("pk_a", &pageview("gone", "t", "https://x.test/"))),
        410
    );
    // Another site's visitor with the same id is not affected.
    assert_eq!(
        status(&h.track("pk_b", &pageview("gone", "t", "https://x.test/"))),
        200
    );
}
