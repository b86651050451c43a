//! [`Enrichment`]: IP → company lookups inside a site's Durable Object.
//!
//! The object hands over the lookups the core asks for ([`Effects::lookups`]) and answers at
//! once; the lookups run in the background (`spawn_local`) through the core's [`Enricher`]
//! (cache check, single flight, rate limit, retries, settling: the drive loop every
//! long-running host shares). The provider request is built and parsed by the core's
//! [`Provider`](tippen_core::enrichment::Provider) and sent with
//! [`FetchTransport`](crate::transport::FetchTransport) (`worker::Fetch`); a settled lookup
//! goes to the shared cache (KV) and to each waiting visitor, whose effects (the
//! `VISITOR_UPDATE`) the object applies like any other. What is this host's own: the
//! background tasks (`spawn_local`) and the timer at [`Enricher::next_deadline`] (a queued
//! lookup, a retry: a runtime `setTimeout`, [`Delay`]).
//!
//! One object serves one site, so the enricher here single-flights the lookups of that site;
//! across sites the shared cache saves the credits.
//!
//! [`Effects::lookups`]: tippen_core::Effects::lookups

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use async_trait::async_trait;
use tippen_core::enrichment::steps::{self, Answer};
use tippen_core::enrichment::{
    Enricher, LookupIo, PlannerConfig, ProviderConfig, ProviderConfigError,
};
use tippen_core::{LookupRequest, SiteId, Timestamp};
use worker::Delay;
use worker::send::SendFuture;

use crate::object::Host;

/// The enricher of one object, and its pending timer.
#[derive(Debug)]
pub struct Enrichment {
    enricher: Enricher,
    /// When the pending timer fires (one at a time).
    timer: Cell<Option<Timestamp>>,
}

impl Enrichment {
    /// The provider `config` describes, with the default planner (50 lookups a minute).
    pub fn new(config: &ProviderConfig) -> Result<Self, ProviderConfigError> {
        Ok(Enrichment {
            enricher: Enricher::new(Arc::from(config.build()?), PlannerConfig::default()),
            timer: Cell::new(None),
        })
    }

    /// Runs `lookups` (call it in a background task); `host` applies their effects.
    pub(crate) async fn submit(self: Rc<Self>, host: Host, lookups: Vec<LookupRequest>) {
        for lookup in lookups {
            self.enricher.submit(&host.tippen, &host, lookup).await;
        }
        self.arm(&host);
    }

    /// A timer at the enricher's next deadline (queued or retried lookups); an early or extra
    /// wake-up starts nothing.
    fn arm(self: &Rc<Self>, host: &Host) {
        let Some(at) = self.enricher.next_deadline() else {
            return;
        };
        if self.timer.get().is_some_and(|armed| armed <= at) {
            return;
        }
        self.timer.set(Some(at));
        let (enrichment, host) = (self.clone(), host.clone());
        wasm_bindgen_futures::spawn_local(async move {
            Delay::from(at.since(host.tippen.now())).await;
            if enrichment.timer.get() == Some(at) {
                enrichment.timer.set(None);
            }
            enrichment
                .enricher
                .handle_timeout(&host.tippen, &host)
                .await;
            enrichment.arm(&host);
        });
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl LookupIo for Host {
    /// Sends the provider request in its own task.
    fn spawn_lookup(&self, ip: IpAddr) {
        let host = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let Some(enrichment) = host.enrichment.clone() else {
                return;
            };
            let provider = enrichment.enricher.provider().clone();
            let result = steps::lookup(&*provider, &host.transport, ip, host.tippen.now()).await;
            enrichment
                .enricher
                .done(&host.tippen, &host, ip, result)
                .await;
            enrichment.arm(&host);
        });
    }

    async fn deliver(&self, site: SiteId, visitor: String, answer: Arc<Answer>) {
        // The runtime is single-threaded; these futures never cross threads.
        SendFuture::new(async {
            let effects = answer.give(&self.tippen, &site, &visitor).await;
            // An alarm that could not be set is logged; no one waits for this task.
            let _ = self.apply(effects, None).await;
        })
        .await;
    }
}
