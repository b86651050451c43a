//! Enrichment on tokio: one task owns the provider's [`LookupPlanner`] (single flight and
//! rate limit), fed through a channel with the lookups the core asks for; provider requests
//! run in their own tasks with reqwest, so a tracking request never waits for the provider.
//!
//! The drive loop, per the core's rules: a lookup request → [`LookupPlanner::request`]
//! (start, join or queue); a timer at [`LookupPlanner::next_deadline`] →
//! [`LookupPlanner::handle_timeout`] starts what the rate limit allows; a provider answer →
//! [`LookupPlanner::complete`], which retries (429, 202, transient) or settles: the result goes
//! to the shared cache ([`Tippen::cache_lookup`]) and to each waiting visitor
//! ([`Tippen::complete_lookup`], under its site's lock), whose dashboards hear
//! `VISITOR_UPDATE` with event `enriched`.
//!
//! Accounting per site is the core's [`LookupDriver`] (shared with the other hosts): the site
//! of the first visitor waiting for an address is charged the provider requests for it
//! (retries too); every later visitor waiting for the same address counts as a credit saved by
//! single flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tippen_core::enrichment::{
    CompanyProfile, Completion, EnrichmentEvent, LookupDriver, LookupFailure, PlannerConfig,
    Provider, ProviderConfig, ProviderConfigError, SiteEvent,
};
use tippen_core::protocol::Sequenced;
use tippen_core::{LookupRequest, SiteId, Tippen, Transport};
use tokio::sync::{mpsc, watch};

use crate::host::{Inner, TippenHost, publish, stopped};
use tippen_http::HttpTransport;

/// Enrichment settings of a [`TippenHost`](crate::TippenHost): the provider, its rate limit
/// and retries, and how long one provider request may take.
#[derive(Clone, Debug)]
pub struct EnrichmentConfig {
    /// The provider (its wire format, key and base URL).
    pub provider: Arc<dyn Provider>,
    /// Rate limit (default 50 per minute) and retries of the provider.
    pub planner: PlannerConfig,
    /// A provider request taking longer fails as transient (and is retried). Default 5 s.
    pub request_timeout: Duration,
}

impl EnrichmentConfig {
    /// `provider` (from [`ProviderConfig::build`]) with the default planner settings and
    /// request timeout.
    pub fn new(provider: Box<dyn Provider>) -> Self {
        EnrichmentConfig {
            provider: Arc::from(provider),
            planner: PlannerConfig::default(),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The provider `config` describes, with the defaults otherwise.
    pub fn from_provider_config(config: &ProviderConfig) -> Result<Self, ProviderConfigError> {
        Ok(Self::new(config.build()?))
    }
}

/// The host's side of the enrichment task: the channel into it, and its receiving end until
/// the task is started (on the first lookup, inside the runtime).
pub(crate) struct Enrichment {
    config: EnrichmentConfig,
    tx: mpsc::UnboundedSender<LookupRequest>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<LookupRequest>>>,
}

impl Enrichment {
    pub(crate) fn new(config: EnrichmentConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Enrichment {
            config,
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Hands lookups to the task (starting it the first time). Never waits.
    pub(crate) fn submit(
        &self,
        lookups: Vec<LookupRequest>,
        inner: &Arc<Inner>,
        shutdown: watch::Receiver<bool>,
    ) {
        if lookups.is_empty() {
            return;
        }
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = rx {
            match Worker::new(&self.config, inner, shutdown) {
                Ok(worker) => {
                    tokio::spawn(worker.run(rx));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the enrichment HTTP client; visitors get fallbacks");
                    return;
                }
            }
        }
        for lookup in lookups {
            // An error only means the task has stopped (shutting down).
            let _ = self.tx.send(lookup);
        }
    }
}

/// The task owning the planner.
struct Worker {
    host: Weak<Inner>,
    tippen: Arc<Tippen>,
    provider: Arc<dyn Provider>,
    transport: HttpTransport,
    /// Single flight, rate limit and the site charged for each address.
    driver: LookupDriver<String>,
    done_tx: mpsc::UnboundedSender<(IpAddr, Result<CompanyProfile, LookupFailure>)>,
    done_rx: mpsc::UnboundedReceiver<(IpAddr, Result<CompanyProfile, LookupFailure>)>,
    shutdown: watch::Receiver<bool>,
    /// The last answer said the key is invalid (logged once until a lookup succeeds).
    key_rejected: bool,
}

impl Worker {
    fn new(
        config: &EnrichmentConfig,
        inner: &Arc<Inner>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, reqwest::Error> {
        let transport = HttpTransport::new(config.request_timeout)?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Ok(Worker {
            host: Arc::downgrade(inner),
            tippen: inner.tippen.clone(),
            provider: config.provider.clone(),
            transport,
            driver: LookupDriver::new(config.planner),
            done_tx,
            done_rx,
            shutdown,
            key_rejected: false,
        })
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<LookupRequest>) {
        tracing::info!(provider = %self.provider.kind(), "enrichment started");
        loop {
            let wait = self
                .driver
                .next_deadline()
                .map(|at| at.since(self.tippen.now()));
            tokio::select! {
                () = stopped(&mut self.shutdown) => return,
                request = rx.recv() => match request {
                    Some(request) => self.request(request).await,
                    None => return,
                },
                Some((ip, result)) = self.done_rx.recv() => self.done(ip, result).await,
                () = sleep_for(wait) => {
                    let now = self.tippen.now();
                    for ip in self.driver.handle_timeout(now) {
                        self.start(ip).await;
                    }
                }
            }
        }
    }

    async fn count(&self, site: &SiteId, event: EnrichmentEvent) {
        if let Err(e) = self.tippen.record_enrichment(site, &[event]).await {
            tracing::warn!(site = %site, error = %e, "could not record enrichment stats");
        }
    }

    async fn record(&self, events: Vec<SiteEvent>) {
        for (site, event) in events {
            self.count(&site, event).await;
        }
    }

    async fn request(&mut self, request: LookupRequest) {
        let LookupRequest {
            site,
            visitor_id,
            ip,
        } = request;
        // A lookup of this address may have settled since the visitor's cache check.
        if !self.driver.is_pending(ip) {
            match self.tippen.fresh_cached_lookup(ip).await {
                Ok(Some(entry)) => {
                    self.count(&site, EnrichmentEvent::JoinedInFlight).await;
                    let tippen = self.tippen.clone();
                    self.deliver(site, vec![visitor_id], move |site, visitor| {
                        let tippen = tippen.clone();
                        let entry = entry.clone();
                        async move { tippen.apply_cached_lookup(&site, &visitor, &entry).await }
                    });
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "enrichment cache read failed"),
            }
        }
        let now = self.tippen.now();
        let requested = self.driver.request(site, visitor_id, ip, now);
        if requested
            .events
            .iter()
            .any(|(_, e)| *e == EnrichmentEvent::QueueFull)
        {
            tracing::warn!("enrichment queue full: visitor keeps its fallback company");
        }
        self.record(requested.events).await;
        if requested.start {
            self.start(ip).await;
        }
    }

    /// Sends the provider request for `ip` in its own task.
    async fn start(&mut self, ip: IpAddr) {
        if let Some((site, event)) = self.driver.started(ip) {
            self.count(&site, event).await;
        }
        let transport = self.transport.clone();
        let provider = self.provider.clone();
        let tippen = self.tippen.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = lookup(&transport, &*provider, &tippen, ip).await;
            let _ = done.send((ip, result));
        });
    }

    async fn done(&mut self, ip: IpAddr, result: Result<CompanyProfile, LookupFailure>) {
        let provider = self.provider.kind();
        match &result {
            Ok(_) => self.key_rejected = false,
            Err(failure) => match failure {
                LookupFailure::InvalidKey => {
                    if !std::mem::replace(&mut self.key_rejected, true) {
                        tracing::error!(
                            %provider,
                            "the enrichment provider rejected the API key; visitors get fallbacks until the key is fixed"
                        );
                    }
                }
                LookupFailure::QuotaExhausted => {
                    tracing::error!(%provider, "the enrichment provider's quota is exhausted");
                }
                LookupFailure::NotFound => {}
                other => tracing::warn!(%provider, error = %other, "enrichment lookup failed"),
            },
        }
        let now = self.tippen.now();
        let (events, completion) = self.driver.complete(ip, &result, now);
        self.record(events).await;
        match completion {
            Completion::Retrying { at } => {
                tracing::debug!(%provider, retry_in = ?at.since(now), "enrichment lookup will be retried");
            }
            Completion::Settled(waiters) => {
                // Cache first: a request arriving after this finds the answer there.
                if let Err(e) = self.tippen.cache_lookup(ip, &result).await {
                    tracing::warn!(error = %e, "could not store the enrichment result");
                }
                let mut by_site: HashMap<SiteId, Vec<String>> = HashMap::new();
                for (site, visitor) in waiters {
                    by_site.entry(site).or_default().push(visitor);
                }
                let result = Arc::new(result);
                for (site, visitors) in by_site {
                    let tippen = self.tippen.clone();
                    let result = result.clone();
                    self.deliver(site, visitors, move |site, visitor| {
                        let tippen = tippen.clone();
                        let result = result.clone();
                        async move { tippen.complete_lookup(&site, &visitor, &result).await }
                    });
                }
            }
        }
    }

    /// Updates `visitors` of `site` with `update`, under the site's lock, publishing what it
    /// broadcasts; in its own task so the planner never waits for a site.
    fn deliver<F, Fut>(&self, site: SiteId, visitors: Vec<String>, update: F)
    where
        F: Fn(SiteId, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<tippen_core::Outcome, tippen_core::ServiceError>>
            + Send,
    {
        let Some(inner) = self.host.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let host = TippenHost { inner };
            let state = host.site(&site);
            let _owner = state.lock.lock().await;
            for visitor in visitors {
                match update(site.clone(), visitor).await {
                    Ok(outcome) => {
                        publish(
                            &state,
                            outcome.messages.iter().map(Sequenced::to_json).collect(),
                        );
                    }
                    Err(e) => {
                        tracing::warn!(site = %site, error = %e, "could not update an enriched visitor");
                    }
                }
            }
        });
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// One provider request: the core builds it, the transport sends it, the core parses the
/// answer. A timeout or a connection error is [`LookupFailure::Transient`].
async fn lookup(
    transport: &HttpTransport,
    provider: &dyn Provider,
    tippen: &Tippen,
    ip: IpAddr,
) -> Result<CompanyProfile, LookupFailure> {
    match transport.send(provider.build_request(ip)).await {
        Err(e) => Err(LookupFailure::Transient(e.to_string())),
        Ok(response) => provider.parse_response(&response, tippen.now()),
    }
}
