// Shared helpers for the core's integration tests (not a test target of its own).
#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use tippen_core::Effects as Handled;
use tippen_core::api::RequestContext;
use tippen_core::{Config, ManualClock, MemoryStore, Site, Timestamp, Tippen};

pub const T0: i64 = 1_729_080_000_000;

pub struct Harness {
    pub tippen: Tippen,
    pub clock: Arc<ManualClock>,
}

/// Runs a future that never waits on anything but the memory store.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    f.now_or_never().expect("the memory store never suspends")
}

pub fn harness() -> Harness {
    harness_with(Config::default())
}

pub fn harness_with(config: Config) -> Harness {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock.clone(), config);
    block(tippen.put_site(&Site::legacy("demo", "Demo", "demo_api_key"))).unwrap();
    block(tippen.put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))).unwrap();
    block(tippen.put_site(&Site::new("b", "Site B", "pk_b", "sk_b"))).unwrap();
    Harness { tippen, clock }
}

impl Harness {
    pub fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Handled {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body.into()).unwrap();
        block(self.tippen.handle(req, &RequestContext::default()))
    }

    pub fn track(&self, key: &str, body: &str) -> Handled {
        self.send(
            "POST",
            "/track/visitor",
            &[("X-Tippen-API-Key", key)],
            body.to_owned(),
        )
    }
}

pub fn body_json(h: &Handled) -> serde_json::Value {
    serde_json::from_slice(h.response.as_ref().unwrap().body()).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(h.response.as_ref().unwrap().body())
        )
    })
}

pub fn pageview(visitor: &str, tab: &str, url: &str) -> String {
    format!(
        r#"{{"event":"pageview","visitor":{{"visitorId":"{visitor}","tabId":"{tab}","url":"{url}","timestamp":"2025-10-16T12:00:00Z"}},"website":"example.com"}}"#
    )
}
