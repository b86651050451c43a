//! `run_lookups`: the enrichment drive loop as one bounded call (the Lambda host's), over the
//! memory store, a scripted provider transport and the manual clock.

mod common;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use serde_json::Value;
use tippen_core::Effects as Handled;
use tippen_core::api::RequestContext;
use tippen_core::enrichment::{
    Enricher, PlannerConfig, Provider, ProviderConfig, ProviderKind, run_lookups,
};
use tippen_core::{LookupRequest, SiteId, Transport, TransportError};

const IP: &str = "9.9.9.9";

/// Answers provider requests from a script, recording the paths asked for.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<http::Response<Bytes>>>,
    asked: Mutex<Vec<String>>,
}

impl Scripted {
    fn answering(answers: Vec<http::Response<Bytes>>) -> Self {
        Scripted {
            answers: Mutex::new(answers.into()),
            asked: Mutex::default(),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        self.asked
            .lock()
            .unwrap()
            .push(request.uri().path().to_owned());
        Ok(self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("an unscripted provider request"))
    }
}

fn company() -> http::Response<Bytes> {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Bytes::from_static(
            br#"{"ip":"9.9.9.9","company":{"name":"Stand-in Corp","domain":"standin.example","type":"business"}}"#,
        ))
        .unwrap()
}

fn too_many(retry_after_secs: u64) -> http::Response<Bytes> {
    http::Response::builder()
        .status(429)
        .header("retry-after", retry_after_secs.to_string())
        .body(Bytes::new())
        .unwrap()
}

fn provider() -> Box<dyn Provider> {
    ProviderConfig::new(ProviderKind::Ipinfo, "test_token")
        .with_base_url("https://ipinfo.test")
        .build()
        .unwrap()
}

fn pageview(h: &Harness, key: &str, visitor: &str) -> Handled {
    let body = format!(
        r#"{{"event":"pageview","visitor":{{"visitorId":"{visitor}","url":"https://e.example/"}},"website":"e.example"}}"#
    );
    let req = http::Request::post("/track/visitor")
        .header("X-Tippen-API-Key", key)
        .body(Bytes::from(body))
        .unwrap();
    let ctx = RequestContext {
        client_ip: Some(IP.parse().unwrap()),
        ..RequestContext::default()
    };
    block(h.tippen.handle(req, &ctx))
}

fn stats(h: &Harness, key: &str) -> Value {
    let r = h.send("GET", &format!("/api/stats?apiKey={key}"), &[], "");
    assert_eq!(r.response.as_ref().unwrap().status(), 200);
    body_json(&r)
}

fn enriched(effects: &tippen_core::Effects) -> Value {
    let messages = effects.broadcast_texts();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m: Value = serde_json::from_str(messages[0]).unwrap();
    assert_eq!(m["type"], "VISITOR_UPDATE");
    assert_eq!(m["event"], "enriched");
    m["visitor"].clone()
}

#[test]
fn one_provider_request_serves_both_sites_after_a_retry_within_the_deadline() {
    let h = harness();
    let mut lookups: Vec<LookupRequest> = pageview(&h, "pk_a", "va").lookups;
    lookups.extend(pageview(&h, "pk_b", "vb").lookups);
    assert_eq!(lookups.len(), 2, "both visits miss the empty cache");

    let transport = Scripted::answering(vec![too_many(2), company()]);
    let provider = provider();
    let enricher = Enricher::new(provider.into(), PlannerConfig::default());
    let slept = Mutex::new(Vec::new());
    let until = h.tippen.now().plus(Duration::from_secs(10));
    let run = block(run_lookups(
        &h.tippen,
        &enricher,
        &transport,
        lookups,
        until,
        |d| {
            slept.lock().unwrap().push(d);
            h.clock.advance(d);
            std::future::ready(())
        },
    ));

    assert_eq!(transport.asked(), vec!["/9.9.9.9", "/9.9.9.9"]);
    assert_eq!(*slept.lock().unwrap(), vec![Duration::from_secs(2)]);
    assert_eq!(run.provider_requests, 2);
    assert_eq!(run.enriched, 2);
    assert!(!run.unfinished);
    let sites: Vec<&SiteId> = run
        .effects
        .iter()
        .map(|e| e.site.as_ref().unwrap())
        .collect();
    assert_eq!(sites, vec![&SiteId::from("a"), &SiteId::from("b")]);
    for effects in &run.effects {
        let v = enriched(effects);
        assert_eq!(v["company"], "Stand-in Corp");
        assert_eq!(v["companyDomain"], "standin.example");
        assert_eq!(v["enrichmentSource"], "provider");
    }
    // Site a is charged both requests (the retry too) and the rate-limited failure; site b
    // joined the lookup in flight.
    let a = stats(&h, "sk_a");
    assert_eq!(a["creditsUsed"], 2);
    assert_eq!(a["cacheMisses"], 1);
    assert_eq!(a["failures"]["rateLimited"], 1);
    let b = stats(&h, "sk_b");
    assert_eq!(b["creditsUsed"], 0);
    assert_eq!(b["creditsSavedBySingleFlight"], 1);

    // The shared cache has it: a third visit (any site) needs no lookup.
    assert!(pageview(&h, "pk_b", "vc").lookups.is_empty());
    let ip: IpAddr = IP.parse().unwrap();
    assert!(block(h.tippen.fresh_cached_lookup(ip)).unwrap().is_some());
}

#[test]
fn a_retry_due_after_the_deadline_waits_in_the_driver_for_the_next_call() {
    let h = harness();
    let lookups = pageview(&h, "pk_a", "va").lookups;
    let transport = Scripted::answering(vec![too_many(15), company()]);
    let provider = provider();
    let enricher = Enricher::new(provider.into(), PlannerConfig::default());
    let no_sleep =
        |_: Duration| -> std::future::Ready<()> { panic!("nothing is due before the deadline") };
    let until = h.tippen.now().plus(Duration::from_secs(10));
    let run = block(run_lookups(
        &h.tippen, &enricher, &transport, lookups, until, no_sleep,
    ));
    assert_eq!(run.provider_requests, 1);
    assert!(run.unfinished && run.effects.is_empty());

    // A later call with nothing new starts the retry once it is due.
    // (Within the visitor's grace: an expired visitor is not updated.)
    h.clock.advance(Duration::from_secs(16));
    let until = h.tippen.now().plus(Duration::from_secs(10));
    let run = block(run_lookups(
        &h.tippen,
        &enricher,
        &transport,
        Vec::new(),
        until,
        no_sleep,
    ));
    assert_eq!(run.provider_requests, 1);
    assert!(!run.unfinished);
    assert_eq!(run.effects.len(), 1);
    assert_eq!(enriched(&run.effects[0])["company"], "Stand-in Corp");
    assert_eq!(stats(&h, "sk_a")["creditsUsed"], 2);
}

#[test]
fn a_visitor_whose_address_was_cached_meanwhile_gets_the_cache_without_a_request() {
    let h = harness();
    let lookups = pageview(&h, "pk_a", "va").lookups;
    let ip: IpAddr = IP.parse().unwrap();
    // Another instance settled a lookup of the address after this visit missed the cache.
    let provider = provider();
    let profile = provider.parse_response(&company(), h.tippen.now());
    block(h.tippen.cache_lookup(ip, &profile)).unwrap();

    let transport = Scripted::default();
    let enricher = Enricher::new(provider.into(), PlannerConfig::default());
    let until = h.tippen.now().plus(Duration::from_secs(10));
    let run = block(run_lookups(
        &h.tippen,
        &enricher,
        &transport,
        lookups,
        until,
        |_| std::future::ready(()),
    ));
    assert!(transport.asked().is_empty());
    assert_eq!(run.provider_requests, 0);
    let v = enriched(&run.effects[0]);
    assert_eq!(v["company"], "Stand-in Corp");
    assert_eq!(v["enrichmentSource"], "cache");
    assert_eq!(stats(&h, "sk_a")["creditsUsed"], 0);
}

/// The long-running hosts' side of an [`Enricher`]: records the provider requests it was asked
/// to start and gives visitors their answers at once.
struct Recording<'a> {
    tippen: &'a tippen_core::Tippen,
    spawned: Mutex<Vec<IpAddr>>,
    delivered: Mutex<Vec<(SiteId, Value)>>,
}

#[async_trait]
impl tippen_core::enrichment::LookupIo for Recording<'_> {
    fn spawn_lookup(&self, ip: IpAddr) {
        self.spawned.lock().unwrap().push(ip);
    }

    async fn deliver(
        &self,
        site: SiteId,
        visitor: String,
        answer: std::sync::Arc<tippen_core::enrichment::Answer>,
    ) {
        let effects = answer.give(self.tippen, &site, &visitor).await;
        self.delivered
            .lock()
            .unwrap()
            .push((site, enriched(&effects)));
    }
}

#[test]
fn the_enricher_single_flights_retries_at_its_deadline_and_then_serves_the_cache() {
    use tippen_core::enrichment::lookup;
    let h = harness();
    let io = Recording {
        tippen: &h.tippen,
        spawned: Mutex::default(),
        delivered: Mutex::default(),
    };
    let enricher = Enricher::new(provider().into(), PlannerConfig::default());
    let transport = Scripted::answering(vec![too_many(2), company()]);
    let ip: IpAddr = IP.parse().unwrap();
    let ask = |key: &str, visitor: &str| {
        for request in pageview(&h, key, visitor).lookups {
            block(enricher.submit(&h.tippen, &io, request));
        }
    };
    let answer = || {
        block(lookup(
            &**enricher.provider(),
            &transport,
            ip,
            h.tippen.now(),
        ))
    };

    // Two sites' visitors from one address: one provider request.
    ask("pk_a", "va");
    ask("pk_b", "vb");
    assert_eq!(*io.spawned.lock().unwrap(), [ip]);
    assert_eq!(enricher.next_deadline(), None);

    // Rate limited: nobody is answered, and the retry is due in 2 s.
    block(enricher.done(&h.tippen, &io, ip, answer()));
    assert!(io.delivered.lock().unwrap().is_empty());
    let due = enricher.next_deadline().expect("a retry");
    assert_eq!(due, h.tippen.now().plus(Duration::from_secs(2)));
    block(enricher.handle_timeout(&h.tippen, &io));
    assert_eq!(
        io.spawned.lock().unwrap().len(),
        1,
        "an early wake-up starts nothing"
    );
    h.clock.set(due);
    block(enricher.handle_timeout(&h.tippen, &io));
    assert_eq!(*io.spawned.lock().unwrap(), [ip, ip]);

    // A third visitor arrives meanwhile; the host has not handed its lookup over yet.
    let held = pageview(&h, "pk_a", "vc").lookups;
    assert_eq!(held.len(), 1, "nothing is cached yet");

    // The answer reaches both waiting visitors, each on its own site.
    block(enricher.done(&h.tippen, &io, ip, answer()));
    let delivered = std::mem::take(&mut *io.delivered.lock().unwrap());
    let sites: Vec<&str> = delivered.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(sites, ["a", "b"]);
    for (_, visitor) in &delivered {
        assert_eq!(visitor["company"], "Stand-in Corp");
        assert_eq!(visitor["enrichmentSource"], "provider");
    }
    assert_eq!(transport.asked().len(), 2);

    // The held lookup, handed over after the address settled: answered from the shared
    // cache, without a provider request.
    for request in held {
        block(enricher.submit(&h.tippen, &io, request));
    }
    assert_eq!(io.spawned.lock().unwrap().len(), 2);
    let delivered = io.delivered.lock().unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].1["enrichmentSource"], "cache");
}
