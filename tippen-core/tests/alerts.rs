//! Alert rules (issue 16): the `/api/alert-rules` and `/api/alert-destinations` API, rules
//! evaluated on page views and settled lookups with their cooldowns, and a property test
//! against a model: a cooldown is never violated, a qualifying visit alerts exactly once per
//! cooldown window, rules that don't match never alert.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use tippen_core::Effects as Handled;
use tippen_core::api::RequestContext;
use tippen_core::enrichment::CompanyProfile;
use tippen_core::enrichment::steps::Answer;
use tippen_core::notify::Notice;
use tippen_core::{Config, SiteId};

fn status(h: &Handled) -> u16 {
    h.response.as_ref().unwrap().status().as_u16()
}

fn api(h: &Harness, method: &str, uri: &str, key: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = h.send(method, uri, &[("X-Tippen-API-Key", key)], body);
    let json = if r.response.as_ref().unwrap().body().is_empty() {
        Value::Null
    } else {
        body_json(&r)
    };
    (status(&r), json)
}

#[test]
fn rules_are_created_read_replaced_and_deleted_with_the_secret_key() {
    let h = harness();
    let rule = json!({"id": "pricing", "name": "Target on pricing",
        "when": {"domains": ["acme.com"], "pages": [{"path": "/pricing", "weight": 5}]}});
    assert_eq!(
        api(&h, "GET", "/api/alert-rules", "sk_a", Value::Null),
        (
            200,
            json!({"rules": [], "destinations": {"slack": false, "webhooks": 0}})
        )
    );
    assert_eq!(
        api(&h, "POST", "/api/alert-rules", "pk_a", rule.clone()).0,
        403
    );
    let (code, created) = api(&h, "POST", "/api/alert-rules", "sk_a", rule.clone());
    assert_eq!(code, 201);
    assert_eq!(created["source"], "api");
    assert_eq!(created["when"]["pages"][0]["weight"], 5);
    let (code, e) = api(&h, "POST", "/api/alert-rules", "sk_a", rule.clone());
    assert_eq!(code, 409, "{e}");
    let (code, e) = api(
        &h,
        "POST",
        "/api/alert-rules",
        "sk_a",
        json!({"id": "x", "businessHours": {"timeZone": "Nowhere/Else"}}),
    );
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("IANA"), "{e}");
    let (code, e) = api(
        &h,
        "POST",
        "/api/alert-rules",
        "sk_a",
        json!({"id": "x", "when": {"colour": "red"}}),
    );
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("colour"), "{e}");
    let (code, replaced) = api(
        &h,
        "PUT",
        "/api/alert-rules/pricing",
        "sk_a",
        json!({"when": {"domains": ["acme.com"]}, "cooldownMinutes": 5}),
    );
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(replaced["id"], "pricing");
    assert_eq!(replaced["cooldownMinutes"], 5);
    assert_eq!(
        api(
            &h,
            "PUT",
            "/api/alert-rules/pricing",
            "sk_a",
            json!({"id": "other"})
        )
        .0,
        400
    );
    assert_eq!(
        api(&h, "PUT", "/api/alert-rules/nope", "sk_a", json!({})).0,
        404
    );
    assert_eq!(
        api(&h, "GET", "/api/alert-rules/pricing", "sk_a", Value::Null).1,
        replaced
    );
    // Site B sees none of site A's rules.
    assert_eq!(
        api(&h, "GET", "/api/alert-rules", "sk_b", Value::Null).1["rules"],
        json!([])
    );
    assert_eq!(
        api(
            &h,
            "DELETE",
            "/api/alert-rules/pricing",
            "sk_a",
            Value::Null
        ),
        (200, json!({"success": true, "deleted": true}))
    );
    assert_eq!(
        api(
            &h,
            "DELETE",
            "/api/alert-rules/pricing",
            "sk_a",
            Value::Null
        )
        .0,
        404
    );
    let r = h.send(
        "PATCH",
        "/api/alert-rules",
        &[("X-Tippen-API-Key", "sk_a")],
        "",
    );
    assert_eq!(status(&r), 405);
}

#[test]
fn destinations_are_https_and_public_unless_allowed_and_never_shown() {
    let h = harness();
    let put = |h: &Harness, body: Value| api(h, "PUT", "/api/alert-destinations", "sk_a", body);
    let (code, e) = put(
        &h,
        json!({"webhooks": [{"url": "http://hooks.example/x", "secret": "0123456789abcdef"}]}),
    );
    assert_eq!(
        (code, e["error"].as_str().unwrap()),
        (400, "a destination must be an https:// URL")
    );
    let (code, e) = put(&h, json!({"slackWebhookUrl": "https://127.0.0.1/hook"}));
    assert_eq!(code, 400);
    assert!(
        e["error"].as_str().unwrap().contains("local or private"),
        "{e}"
    );
    let (code, e) = put(
        &h,
        json!({"webhooks": [{"url": "https://hooks.example/x", "secret": "short"}]}),
    );
    assert_eq!(code, 400);
    assert!(
        e["error"].as_str().unwrap().contains("16 characters"),
        "{e}"
    );
    let (code, shown) = put(
        &h,
        json!({"slackWebhookUrl": "https://hooks.slack.com/services/T/B/secretpart",
               "webhooks": [{"url": "https://hooks.example/path/secretpath", "secret": "whsec_0123456789abcdef"}]}),
    );
    assert_eq!(code, 200);
    assert_eq!(
        shown,
        json!({"slack": true, "webhooks": [{"url": "https://hooks.example/…"}]})
    );
    let text = api(&h, "GET", "/api/alert-destinations", "sk_a", Value::Null)
        .1
        .to_string();
    assert!(
        !text.contains("secretpart") && !text.contains("whsec") && !text.contains("secretpath")
    );

    let mut config = Config::default();
    config.alerts.allow_private_destinations = true;
    let h = harness_with(config);
    assert_eq!(
        put(
            &h,
            json!({"webhooks": [{"url": "http://127.0.0.1:9/x", "secret": "0123456789abcdef"}]})
        )
        .0,
        200
    );
}

fn pageview_from(h: &Harness, visitor: &str, path: &str, ip: &str) -> Handled {
    let body = format!(
        r#"{{"event":"pageview","visitor":{{"visitorId":"{visitor}","tabId":"t1","url":"https://shop.example{path}"}},"website":"shop.example"}}"#
    );
    let req = http::Request::post("/track/visitor")
        .header("X-Tippen-API-Key", "pk_a")
        .body(Bytes::from(body))
        .unwrap();
    let ctx = RequestContext {
        client_ip: Some(ip.parse().unwrap()),
        ..RequestContext::default()
    };
    let r = block(h.tippen.handle(req, &ctx));
    assert_eq!(status(&r), 200);
    r
}

fn settle(h: &Harness, visitor: &str, domain: &str) -> Handled {
    let profile = CompanyProfile {
        name: format!("{domain} Inc"),
        domain: Some(domain.to_owned()),
        industry: Some("Software".into()),
        revenue_range: None,
        employee_range: Some("201-500".into()),
        location: Some("Boston, MA, US".into()),
    };
    block(Answer::Lookup(Ok(profile)).give(&h.tippen, &SiteId::from("a"), visitor))
}

fn alerts(h: &Handled) -> Vec<(String, String, String)> {
    h.notifications
        .iter()
        .filter_map(|n| match n {
            Notice::Alert(a) => Some((
                a.rule_id.clone(),
                a.subject.visitor_id.clone(),
                a.subject.company.domain.clone().unwrap_or_default(),
            )),
            Notice::Support(_) => None,
        })
        .collect()
}

fn with_rule(h: &Harness, rule: Value) {
    assert_eq!(api(h, "POST", "/api/alert-rules", "sk_a", rule).0, 201);
    let (code, _) = api(
        h,
        "PUT",
        "/api/alert-destinations",
        "sk_a",
        json!({"webhooks": [{"url": "https://hooks.example/a", "secret": "0123456789abcdef"}]}),
    );
    assert_eq!(code, 200);
}

#[test]
fn a_target_company_on_pricing_alerts_once_per_cooldown() {
    let h = harness();
    with_rule(
        &h,
        json!({"id": "hot", "when": {"domains": ["acme.com"], "pages": [{"path": "/pricing"}]},
               "cooldownMinutes": 60}),
    );
    // The page view comes first: the company is not known yet.
    assert!(alerts(&pageview_from(&h, "v1", "/pricing", "9.9.9.9")).is_empty());
    let settled = settle(&h, "v1", "acme.com");
    assert_eq!(
        alerts(&settled),
        vec![("hot".into(), "v1".into(), "acme.com".into())]
    );
    let Notice::Alert(a) = &settled.notifications[0] else {
        unreachable!()
    };
    assert_eq!(
        a.destinations.webhooks.len(),
        1,
        "the site's destinations ride along"
    );
    assert_eq!(a.subject.pages, vec!["/pricing".to_owned()]);
    // More page views of the same visit, another visitor of the company: within the cooldown.
    h.clock.advance(Duration::from_secs(60));
    assert!(alerts(&pageview_from(&h, "v1", "/pricing", "9.9.9.9")).is_empty());
    assert!(alerts(&pageview_from(&h, "v2", "/pricing", "9.9.9.10")).is_empty());
    assert!(alerts(&settle(&h, "v2", "acme.com")).is_empty());
    // Another company that matches nothing, on the same page.
    assert!(alerts(&pageview_from(&h, "v3", "/pricing", "9.9.9.11")).is_empty());
    assert!(alerts(&settle(&h, "v3", "other.example")).is_empty());
    // After the cooldown (v2 timed out meanwhile: a new visit), a qualifying visit alerts
    // again.
    h.clock.advance(Duration::from_secs(3600));
    assert!(alerts(&pageview_from(&h, "v2", "/pricing", "9.9.9.10")).is_empty());
    assert_eq!(
        alerts(&settle(&h, "v2", "acme.com")),
        vec![("hot".into(), "v2".into(), "acme.com".into())]
    );
}

#[test]
fn a_newly_identified_company_alerts_when_its_lookup_settles_only() {
    let h = harness();
    with_rule(
        &h,
        json!({"id": "new", "when": {"newCompany": true}, "cooldownMinutes": 0}),
    );
    assert!(alerts(&pageview_from(&h, "v1", "/", "9.9.9.9")).is_empty());
    assert_eq!(alerts(&settle(&h, "v1", "acme.com")).len(), 1);
    assert!(alerts(&pageview_from(&h, "v1", "/docs", "9.9.9.9")).is_empty());
}

#[test]
fn sites_without_rules_raise_nothing_and_heartbeats_never_evaluate() {
    let h = harness();
    pageview_from(&h, "v1", "/pricing", "9.9.9.9");
    assert!(settle(&h, "v1", "acme.com").notifications.is_empty());
    with_rule(&h, json!({"id": "all", "cooldownMinutes": 0}));
    let heartbeat = r#"{"event":"heartbeat","visitor":{"visitorId":"v1","tabId":"t1","url":"https://shop.example/pricing"},"website":"shop.example"}"#;
    assert!(h.track("pk_a", heartbeat).notifications.is_empty());
    assert_eq!(
        alerts(&pageview_from(&h, "v1", "/pricing?x=1", "9.9.9.9")).len(),
        1
    );
}

#[derive(Clone, Debug)]
enum Op {
    /// A page view by visitor `v` (0..4) of `/pricing` or `/`.
    View { v: usize, pricing: bool },
    /// Visitor `v`'s lookup settles with company `c` (0: the target, 1: another).
    Settle { v: usize, c: usize },
    /// Time passes (seconds).
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, any::<bool>()).prop_map(|(v, pricing)| Op::View { v, pricing }),
        (0..4usize, 0..2usize).prop_map(|(v, c)| Op::Settle { v, c }),
        prop_oneof![Just(7u64), Just(41), Just(299), Just(301), Just(900)].prop_map(Op::Wait),
    ]
}

const COOLDOWN_S: u64 = 300;
const DOMAINS: [&str; 2] = ["target.example", "other.example"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a model of one rule (the target domain and `/pricing`, a 5-minute cooldown):
    /// an event alerts exactly when its visit qualifies and the company's last alert is at
    /// least the cooldown old; so alerts of one company are never closer than the cooldown and
    /// a company that does not match never alerts. Visitors time out after the grace, as
    /// presence has it, which the model follows.
    #[test]
    fn alerts_follow_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let h = harness();
        with_rule(&h, json!({"id": "hot", "when": {"domains": [DOMAINS[0]], "pages": [{"path": "/pricing"}]}, "cooldownMinutes": 5}));
        // Page views without a visibility are of a visible tab. The waits never add up to
        // exactly the grace or the cooldown from an event, so no boundary is ambiguous.
        let grace = Config::default().presence.visible_grace;
        // The model: each visitor's company (once settled), pages seen, last event.
        let mut company: HashMap<usize, usize> = HashMap::new();
        let mut pricing: HashMap<usize, bool> = HashMap::new();
        let mut last_seen: HashMap<usize, u64> = HashMap::new();
        let mut last_alert: Option<u64> = None;
        let mut now = 0u64;
        for op in ops {
            // A visitor silent for longer than the grace is gone: its next view starts anew.
            for v in 0..4 {
                if last_seen.get(&v).is_some_and(|t| now - t > grace.as_secs()) {
                    last_seen.remove(&v);
                    company.remove(&v);
                    pricing.remove(&v);
                }
            }
            let (got, qualifies) = match op {
                Op::Wait(s) => {
                    h.clock.advance(Duration::from_secs(s));
                    now += s;
                    continue;
                }
                Op::View { v, pricing: p } => {
                    let got = alerts(&pageview_from(&h, &format!("v{v}"), if p { "/pricing" } else { "/" }, &format!("9.9.9.{v}")));
                    last_seen.insert(v, now);
                    *pricing.entry(v).or_default() |= p;
                    (got, company.get(&v) == Some(&0) && pricing[&v])
                }
                Op::Settle { v, c } => {
                    if !last_seen.contains_key(&v) || company.contains_key(&v) {
                        // Nothing waits for a lookup: the service ignores it.
                        let got = alerts(&settle(&h, &format!("v{v}"), DOMAINS[c]));
                        prop_assert!(got.is_empty());
                        continue;
                    }
                    let got = alerts(&settle(&h, &format!("v{v}"), DOMAINS[c]));
                    company.insert(v, c);
                    (got, c == 0 && pricing[&v])
                }
            };
            let due = last_alert.is_none_or(|t| now - t >= COOLDOWN_S);
            if qualifies && due {
                prop_assert_eq!(got.len(), 1, "a qualifying event after the cooldown alerts once");
                prop_assert_eq!(&got[0].2, DOMAINS[0]);
                last_alert = Some(now);
            } else {
                prop_assert!(got.is_empty(), "no alert expected at {}s: {:?}", now, got);
            }
        }
    }
}

#[test]
fn a_returning_company_alerts_only_with_a_visit_in_its_window() {
    use std::sync::Arc;
    use tippen_core::history::MemoryHistory;
    let clock = Arc::new(tippen_core::ManualClock::new(
        tippen_core::Timestamp::from_millis(T0),
    ));
    let tippen = tippen_core::Tippen::new(
        Arc::new(tippen_core::MemoryStore::new()),
        clock.clone(),
        Config::default(),
    )
    .with_history(Arc::new(MemoryHistory::new()));
    block(tippen.put_site(&tippen_core::Site::new("a", "Site A", "pk_a", "sk_a"))).unwrap();
    let h = Harness { tippen, clock };
    with_rule(
        &h,
        json!({"id": "back", "when": {"returningWithinDays": 7}, "cooldownMinutes": 0}),
    );
    // A first visit of acme: nothing to return from yet.
    pageview_from(&h, "v1", "/", "9.9.9.9");
    assert!(alerts(&settle(&h, "v1", "acme.com")).is_empty());
    // It closes (the visitor times out and the sweep closes its visit into history).
    h.clock.advance(Duration::from_secs(600));
    block(h.tippen.handle_timeout(&SiteId::from("a"))).unwrap();
    // Three days later another visitor of acme: it returns within 7 days.
    h.clock.advance(Duration::from_secs(3 * 86_400));
    pageview_from(&h, "v2", "/", "9.9.9.10");
    assert_eq!(
        alerts(&settle(&h, "v2", "acme.com")),
        vec![("back".into(), "v2".into(), "acme.com".into())]
    );
    // A company with no earlier visit does not.
    pageview_from(&h, "v3", "/", "9.9.9.11");
    assert!(alerts(&settle(&h, "v3", "globex.example")).is_empty());
    // Ten days after acme's first visit, a new visit is outside the window... but v2's visit
    // (three days ago) still counts once it has closed: close it, wait 8 days, come back.
    h.clock.advance(Duration::from_secs(600));
    block(h.tippen.handle_timeout(&SiteId::from("a"))).unwrap();
    h.clock.advance(Duration::from_secs(8 * 86_400));
    pageview_from(&h, "v4", "/", "9.9.9.12");
    assert!(
        alerts(&settle(&h, "v4", "acme.com")).is_empty(),
        "acme's last visit is 8 days old: outside 7 days"
    );
}

#[test]
fn the_alert_log_shows_alerts_with_their_deliveries_and_failures() {
    use tippen_core::notify::{Notifier, Sent};
    let h = harness();
    with_rule(
        &h,
        json!({"id": "hot", "name": "Hot", "when": {"domains": ["acme.com"]}}),
    );
    pageview_from(&h, "v1", "/pricing", "9.9.9.9");
    let settled = settle(&h, "v1", "acme.com");
    let outgoing = Notifier::default().outgoing(&settled.notifications);
    assert_eq!(outgoing.len(), 1, "one webhook");
    let (code, log) = api(&h, "GET", "/api/alerts", "sk_a", Value::Null);
    assert_eq!(code, 200);
    let alert = &log["alerts"][0];
    assert_eq!(
        (
            &alert["ruleId"],
            &alert["domain"],
            &alert["visitorId"],
            &alert["deliveries"]
        ),
        (&json!("hot"), &json!("acme.com"), &json!("v1"), &json!([]))
    );
    block(h.tippen.record_delivery(
        &outgoing[0].label,
        &Sent::No {
            attempts: 4,
            reason: "the receiver answered 500 Internal Server Error 4 times".into(),
        },
    ));
    let (_, log) = api(&h, "GET", "/api/alerts?limit=5", "sk_a", Value::Null);
    let d = &log["alerts"][0]["deliveries"][0];
    assert_eq!(
        (
            &d["state"],
            &d["channel"],
            &d["destination"],
            &d["attempts"]
        ),
        (
            &json!("failed"),
            &json!("webhook"),
            &json!("https://hooks.example/…"),
            &json!(4)
        )
    );
    assert_eq!(log["failures"][0]["id"], alert["alertId"]);
    assert_eq!(
        api(&h, "GET", "/api/alerts?limit=0", "sk_a", Value::Null).0,
        400
    );
    assert_eq!(api(&h, "GET", "/api/alerts", "pk_a", Value::Null).0, 403);
    assert_eq!(
        api(&h, "GET", "/api/alerts", "sk_b", Value::Null).1,
        json!({"alerts": [], "failures": []})
    );
}

#[test]
fn a_visit_is_evaluated_again_when_it_closes() {
    let h = harness();
    // 5 points a page view, 1 per 30 s on the site: 20 needs time, which only the close
    // (the sweep that removes the silent visitor) sees.
    with_rule(
        &h,
        json!({"id": "engaged", "when": {"minLeadScore": 20}, "cooldownMinutes": 0}),
    );
    assert!(alerts(&pageview_from(&h, "v1", "/", "9.9.9.9")).is_empty());
    h.clock.advance(Duration::from_secs(50));
    assert!(
        alerts(&pageview_from(&h, "v1", "/docs", "9.9.9.9")).is_empty(),
        "10 + 1 points"
    );
    // Silent past the grace: the sweep closes the visit (last event + 60 s).
    h.clock.advance(Duration::from_secs(600));
    let closed = block(h.tippen.handle_timeout(&SiteId::from("a"))).unwrap();
    assert!(
        closed
            .broadcast_texts()
            .iter()
            .any(|t| t.contains("VISITOR_REMOVED")),
        "the sweep removed the visitor"
    );
    assert_eq!(
        alerts(&closed),
        vec![("engaged".into(), "v1".into(), String::new())]
    );
}

#[test]
fn alerts_link_back_with_the_public_url_without_a_support_slack_webhook() {
    use tippen_core::notify::Notifier;
    let h = harness();
    with_rule(&h, json!({"id": "hot", "when": {"domains": ["acme.com"]}}));
    pageview_from(&h, "v1", "/pricing", "9.9.9.9");
    let settled = settle(&h, "v1", "acme.com");
    let mut config = Config::default();
    config.alerts.public_url = Some("https://tippen.example".into());
    let out = Notifier::new(None, &config).outgoing(&settled.notifications);
    let body: Value = serde_json::from_slice(&out[0].body).unwrap();
    assert_eq!(
        body["dashboardUrl"],
        "https://tippen.example/dashboard#visitor=v1"
    );
    let none = Notifier::new(None, &Config::default()).outgoing(&settled.notifications);
    let body: Value = serde_json::from_slice(&none[0].body).unwrap();
    assert_eq!(body["dashboardUrl"], Value::Null);
}
