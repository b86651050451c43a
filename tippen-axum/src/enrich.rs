//! Enrichment on tokio: one task owns the core's [`Enricher`] (cache check, single flight,
//! rate limit, retries, settling: the drive loop every long-running host shares), fed through
//! a channel with the lookups the core asks for; provider requests run in their own tasks with
//! reqwest, so a tracking request never waits for the provider; a visitor's enrichment is
//! given and applied under its site's lock, in a task of its own. This host keeps only the
//! channel task, the tokio timer at [`Enricher::next_deadline`] and those tasks.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tippen_core::enrichment::steps::{self, Answer};
use tippen_core::enrichment::{
    CompanyProfile, Enricher, LookupFailure, LookupIo, PlannerConfig, Provider, ProviderConfig,
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

/// The task owning the [`Enricher`]: lookups in, provider answers in, its timer.
struct Worker {
    io: Io,
    enricher: Enricher,
    done_rx: mpsc::UnboundedReceiver<(IpAddr, Result<CompanyProfile, LookupFailure>)>,
    shutdown: watch::Receiver<bool>,
}

/// The host's side of the [`Enricher`]: provider requests in their own tasks (reqwest), and
/// a visitor's enrichment under its site's lock.
struct Io {
    host: Weak<Inner>,
    tippen: Arc<Tippen>,
    provider: Arc<dyn Provider>,
    transport: HttpTransport,
    done_tx: mpsc::UnboundedSender<(IpAddr, Result<CompanyProfile, LookupFailure>)>,
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
            io: Io {
                host: Arc::downgrade(inner),
                tippen: inner.tippen.clone(),
                provider: config.provider.clone(),
                transport,
                done_tx,
            },
            enricher: Enricher::new(config.provider.clone(), config.planner),
            done_rx,
            shutdown,
        })
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<LookupRequest>) {
        tracing::info!(provider = %self.io.provider.kind(), "enrichment started");
        let tippen = self.io.tippen.clone();
        loop {
            let wait = self
                .enricher
                .next_deadline()
                .map(|at| at.since(tippen.now()));
            tokio::select! {
                () = stopped(&mut self.shutdown) => return,
                request = rx.recv() => match request {
                    Some(request) => self.enricher.submit(&tippen, &self.io, request).await,
                    None => return,
                },
                Some((ip, result)) = self.done_rx.recv() => {
                    self.enricher.done(&tippen, &self.io, ip, result).await;
                }
                () = sleep_for(wait) => self.enricher.handle_timeout(&tippen, &self.io).await,
            }
        }
    }
}

#[async_trait::async_trait]
impl LookupIo for Io {
    fn spawn_lookup(&self, ip: IpAddr) {
        let transport = self.transport.clone();
        let provider = self.provider.clone();
        let tippen = self.tippen.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = steps::lookup(&*provider, &transport, ip, tippen.now()).await;
            let _ = done.send((ip, result));
        });
    }

    /// In its own task, so the enricher never waits for a site's lock.
    async fn deliver(&self, site: SiteId, visitor: String, answer: Arc<Answer>) {
        let Some(inner) = self.host.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let host = TippenHost { inner };
            let state = host.site(&site);
            let _owner = state.lock.lock().await;
            let effects = answer.give(&host.inner.tippen, &site, &visitor).await;
            host.apply(effects, None).await;
        });
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
