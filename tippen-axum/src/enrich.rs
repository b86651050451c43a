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
//! These steps are the core's ([`steps`]); this host keeps the channel task, the per-site lock
//! and the tokio timers. Accounting per site is the core's [`LookupDriver`] (shared with the other hosts): the site
//! of the first visitor waiting for an address is charged the provider requests for it
//! (retries too); every later visitor waiting for the same address counts as a credit saved by
//! single flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tippen_core::enrichment::steps::{self, Answer, FailureLog};
use tippen_core::enrichment::{
    CompanyProfile, LookupDriver, LookupFailure, PlannerConfig, Provider, ProviderConfig,
    ProviderConfigError,
};
use tippen_core::{LookupRequest, SiteId, Tippen};
use tokio::sync::{mpsc, watch};

use crate::host::{Inner, TippenHost, stopped};
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
    /// Logs failed lookups (a rejected key once until one succeeds).
    failures: FailureLog,
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
            failures: FailureLog::default(),
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

    async fn request(&mut self, request: LookupRequest) {
        // A lookup of this address may have settled since the visitor's cache check.
        if !self.driver.is_pending(request.ip)
            && let Some(answer) = steps::from_cache(&self.tippen, &request).await
        {
            self.deliver(request.site, vec![request.visitor_id], Arc::new(answer));
            return;
        }
        let ip = request.ip;
        let requested = steps::request(&mut self.driver, request, self.tippen.now());
        if steps::admitted(&self.tippen, requested).await {
            self.start(ip).await;
        }
    }

    /// Sends the provider request for `ip` in its own task.
    async fn start(&mut self, ip: IpAddr) {
        steps::record(&self.tippen, self.driver.started(ip).into_iter().collect()).await;
        let transport = self.transport.clone();
        let provider = self.provider.clone();
        let tippen = self.tippen.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = steps::lookup(&*provider, &transport, ip, tippen.now()).await;
            let _ = done.send((ip, result));
        });
    }

    async fn done(&mut self, ip: IpAddr, result: Result<CompanyProfile, LookupFailure>) {
        let provider = self.provider.kind();
        self.failures.log(provider, &result);
        let now = self.tippen.now();
        let completed = self.driver.complete(ip, &result, now);
        let Some(waiters) =
            steps::settle(&self.tippen, provider, ip, &result, now, completed).await
        else {
            return;
        };
        let mut by_site: HashMap<SiteId, Vec<String>> = HashMap::new();
        for (site, visitor) in waiters {
            by_site.entry(site).or_default().push(visitor);
        }
        let answer = Arc::new(Answer::Lookup(result));
        for (site, visitors) in by_site {
            self.deliver(site, visitors, answer.clone());
        }
    }

    /// Gives `answer` to `visitors` of `site`, under the site's lock, publishing what it
    /// broadcasts; in its own task so the planner never waits for a site.
    fn deliver(&self, site: SiteId, visitors: Vec<String>, answer: Arc<Answer>) {
        let Some(inner) = self.host.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let host = TippenHost { inner };
            let state = host.site(&site);
            let _owner = state.lock.lock().await;
            for visitor in visitors {
                let effects = answer.give(&host.inner.tippen, &site, &visitor).await;
                host.apply(effects, None).await;
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
