//! [`Enrichment`]: IP → company lookups inside a site's Durable Object.
//!
//! The object hands over the lookups the core asks for (`Handled::lookups`) and answers at
//! once; the lookups run in the background (`spawn_local`): the bookkeeping is the core's
//! [`LookupDriver`] (single flight, rate limit, retries, which site is charged), the provider
//! request is built and parsed by the core's [`Provider`] and sent with
//! [`FetchTransport`](crate::transport::FetchTransport) (`worker::Fetch`). When a lookup
//! settles, the result goes to the shared cache ([`Tippen::cache_lookup`], KV) and to each
//! waiting visitor ([`Tippen::complete_lookup`]); the `VISITOR_UPDATE`s go to the site's
//! dashboards. Timers (a queued lookup, a retry) are runtime `setTimeout`s ([`Delay`]).
//!
//! One object serves one site, so the driver here single-flights the lookups of that site;
//! across sites the shared cache saves the credits.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;

use tippen_core::enrichment::{
    CompanyProfile, Completion, LookupDriver, LookupFailure, PlannerConfig, Provider,
    ProviderConfig, ProviderConfigError, SiteEvent,
};
use tippen_core::protocol::Sequenced;
use tippen_core::{LookupRequest, SiteId, Tippen, Transport};
use worker::Delay;

use crate::transport::FetchTransport;

/// Sends texts to the site's dashboards.
type Publish = Rc<dyn Fn(Vec<String>)>;

/// The provider and the lookup bookkeeping of one object.
pub struct Enrichment {
    provider: Box<dyn Provider>,
    driver: RefCell<LookupDriver<String>>,
    /// When the pending timer fires (one at a time).
    timer: Cell<Option<tippen_core::Timestamp>>,
}

impl std::fmt::Debug for Enrichment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrichment")
            .field("provider", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

/// What a background task needs.
#[derive(Clone)]
struct Task {
    enrichment: Rc<Enrichment>,
    tippen: Rc<Tippen>,
    transport: FetchTransport,
    publish: Publish,
}

impl Enrichment {
    /// The provider `config` describes, with the default planner (50 lookups a minute).
    pub fn new(config: &ProviderConfig) -> Result<Self, ProviderConfigError> {
        Ok(Enrichment {
            provider: config.build()?,
            driver: RefCell::new(LookupDriver::new(PlannerConfig::default())),
            timer: Cell::new(None),
        })
    }

    /// Runs `lookups` (call it in a background task); `publish` sends the resulting
    /// broadcasts to the site's dashboards.
    pub async fn submit(
        self: Rc<Self>,
        tippen: Rc<Tippen>,
        transport: FetchTransport,
        lookups: Vec<LookupRequest>,
        publish: impl Fn(Vec<String>) + 'static,
    ) {
        let task = Task {
            enrichment: self,
            tippen,
            transport,
            publish: Rc::new(publish),
        };
        for lookup in lookups {
            task.request(lookup).await;
        }
    }
}

impl Task {
    fn driver(&self) -> std::cell::RefMut<'_, LookupDriver<String>> {
        self.enrichment.driver.borrow_mut()
    }

    async fn record(&self, events: Vec<SiteEvent>) {
        for (site, event) in events {
            if let Err(e) = self.tippen.record_enrichment(&site, &[event]).await {
                tracing::warn!(site = %site, error = %e, "could not record enrichment stats");
            }
        }
    }

    async fn request(&self, request: LookupRequest) {
        let LookupRequest {
            site,
            visitor_id,
            ip,
        } = request;
        // A lookup of this address may have settled since the visitor's cache check.
        let pending = self.enrichment.driver.borrow().is_pending(ip);
        if !pending {
            match self.tippen.fresh_cached_lookup(ip).await {
                Ok(Some(entry)) => {
                    self.record(vec![(
                        site.clone(),
                        tippen_core::enrichment::EnrichmentEvent::JoinedInFlight,
                    )])
                    .await;
                    let outcome = self
                        .tippen
                        .apply_cached_lookup(&site, &visitor_id, &entry)
                        .await;
                    self.deliver(&site, outcome);
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "enrichment cache read failed"),
            }
        }
        let now = self.tippen.now();
        let requested = self.driver().request(site, visitor_id, ip, now);
        self.record(requested.events).await;
        if requested.start {
            self.start(ip).await;
        }
        self.arm();
    }

    /// Sends the provider request for `ip` in its own task.
    async fn start(&self, ip: IpAddr) {
        let started = self.enrichment.driver.borrow().started(ip);
        self.record(started.into_iter().collect()).await;
        let task = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = task.lookup(ip).await;
            task.done(ip, result).await;
        });
    }

    /// One provider request: the core builds it, `fetch` sends it, the core parses the answer.
    async fn lookup(&self, ip: IpAddr) -> Result<CompanyProfile, LookupFailure> {
        let provider = &self.enrichment.provider;
        match self.transport.send(provider.build_request(ip)).await {
            Err(e) => Err(LookupFailure::Transient(e.to_string())),
            Ok(response) => provider.parse_response(&response, self.tippen.now()),
        }
    }

    async fn done(&self, ip: IpAddr, result: Result<CompanyProfile, LookupFailure>) {
        let provider = self.enrichment.provider.kind();
        if let Err(failure) = &result {
            match failure {
                LookupFailure::NotFound => {}
                LookupFailure::InvalidKey => tracing::error!(
                    %provider,
                    "the enrichment provider rejected the API key; visitors get fallbacks"
                ),
                other => tracing::warn!(%provider, error = %other, "enrichment lookup failed"),
            }
        }
        let now = self.tippen.now();
        let (events, completion) = self.driver().complete(ip, &result, now);
        self.record(events).await;
        match completion {
            Completion::Retrying { at } => {
                tracing::debug!(%provider, retry_in = ?at.since(now), "enrichment lookup will be retried");
                self.arm();
            }
            Completion::Settled(waiters) => {
                // Cache first: a request arriving after this finds the answer there.
                if let Err(e) = self.tippen.cache_lookup(ip, &result).await {
                    tracing::warn!(error = %e, "could not store the enrichment result");
                }
                for (site, visitor) in waiters {
                    let outcome = self.tippen.complete_lookup(&site, &visitor, &result).await;
                    self.deliver(&site, outcome);
                }
            }
        }
    }

    /// Publishes what updating a visitor broadcast.
    fn deliver(
        &self,
        site: &SiteId,
        outcome: Result<tippen_core::Outcome, tippen_core::ServiceError>,
    ) {
        match outcome {
            Ok(outcome) => {
                (self.publish)(outcome.messages.iter().map(Sequenced::to_json).collect())
            }
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "could not update an enriched visitor");
            }
        }
    }

    /// A timer at the driver's next deadline (queued or retried lookups); an early or extra
    /// wake-up starts nothing.
    fn arm(&self) {
        let Some(at) = self.enrichment.driver.borrow().next_deadline() else {
            return;
        };
        if self.enrichment.timer.get().is_some_and(|armed| armed <= at) {
            return;
        }
        self.enrichment.timer.set(Some(at));
        let task = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let wait = at.since(task.tippen.now());
            Delay::from(wait).await;
            if task.enrichment.timer.get() == Some(at) {
                task.enrichment.timer.set(None);
            }
            let now = task.tippen.now();
            let due = task.driver().handle_timeout(now);
            for ip in due {
                task.start(ip).await;
            }
            task.arm();
        });
    }
}
