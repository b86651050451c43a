//! [`Enricher`]: the enrichment drive loop of a long-running host (axum, a Durable Object),
//! written once. The host only sends provider requests, sleeps until
//! [`Enricher::next_deadline`], and runs a visitor's enrichment under its site's owner
//! ([`LookupIo`]); the bookkeeping — cache check, admission, single flight, rate limit,
//! retries, failure logging, settling — is here, made of the [`steps`].
//!
//! No lock is held across an `.await`: tasks of a single-threaded runtime interleave there.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::steps::{self, Answer, FailureLog};
use super::{CompanyProfile, LookupDriver, LookupFailure, PlannerConfig, Provider};
use crate::service::LookupRequest;
use crate::{SiteId, Timestamp, Tippen};

/// What a long-running host does for its [`Enricher`].
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait LookupIo {
    /// Sends the provider request for `ip` in the background ([`steps::lookup`] with the
    /// host's transport) and, when it answers, calls [`Enricher::done`]. Never waits for it.
    fn spawn_lookup(&self, ip: IpAddr);

    /// Gives `answer` to `visitor` of `site` ([`Answer::give`]) under the site's owner, and
    /// applies the effects (`tippen_core::host::apply`).
    async fn deliver(&self, site: SiteId, visitor: String, answer: Arc<Answer>);
}

/// The provider and the lookup bookkeeping of one long-running host.
pub struct Enricher {
    provider: Arc<dyn Provider>,
    driver: Mutex<LookupDriver<String>>,
    failures: Mutex<FailureLog>,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("provider", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Enricher {
    /// An enricher for `provider`, rate limited and retried as `planner` says.
    pub fn new(provider: Arc<dyn Provider>, planner: PlannerConfig) -> Self {
        Enricher {
            provider,
            driver: Mutex::new(LookupDriver::new(planner)),
            failures: Mutex::new(FailureLog::default()),
        }
    }

    /// The provider (to build and parse its requests: [`steps::lookup`]).
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (a queued lookup, a retry).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        lock(&self.driver).next_deadline()
    }

    /// A lookup the core asked for: answered from the shared cache when nobody is looking the
    /// address up and the cache has it now, else admitted (started, joined or queued).
    pub async fn submit<I: LookupIo + ?Sized>(
        &self,
        tippen: &Tippen,
        io: &I,
        request: LookupRequest,
    ) {
        let pending = lock(&self.driver).is_pending(request.ip);
        if !pending && let Some(answer) = steps::from_cache(tippen, &request).await {
            io.deliver(request.site, request.visitor_id, Arc::new(answer))
                .await;
            return;
        }
        let ip = request.ip;
        let requested = steps::request(&mut lock(&self.driver), request, tippen.now());
        if steps::admitted(tippen, requested).await {
            self.start(tippen, io, ip).await;
        }
    }

    /// The provider answered for `ip`: retried later, or settled — the shared cache first,
    /// then each waiting visitor.
    pub async fn done<I: LookupIo + ?Sized>(
        &self,
        tippen: &Tippen,
        io: &I,
        ip: IpAddr,
        result: Result<CompanyProfile, LookupFailure>,
    ) {
        let kind = self.provider.kind();
        lock(&self.failures).log(kind, &result);
        let now = tippen.now();
        let completed = lock(&self.driver).complete(ip, &result, now);
        if let Some(waiters) = steps::settle(tippen, kind, ip, &result, now, completed).await {
            let answer = Arc::new(Answer::Lookup(result));
            for (site, visitor) in waiters {
                io.deliver(site, visitor, answer.clone()).await;
            }
        }
    }

    /// The host's timer reached [`next_deadline`](Self::next_deadline): starts what the rate
    /// limit and the retries allow now, and checks the cache for the addresses another
    /// process is looking up. An early or extra call starts nothing.
    pub async fn handle_timeout<I: LookupIo + ?Sized>(&self, tippen: &Tippen, io: &I) {
        let now = tippen.now();
        let (due, elsewhere) = {
            let mut driver = lock(&self.driver);
            (driver.handle_timeout(now), driver.due_elsewhere(now))
        };
        for ip in due {
            self.start(tippen, io, ip).await;
        }
        for ip in elsewhere {
            self.check_elsewhere(tippen, io, ip).await;
        }
    }

    /// Sends the provider request for `ip` unless another process sharing the store has
    /// claimed its lookup ([`Store::claim_lookup`](crate::Store::claim_lookup)): then waits
    /// for that process's result in the cache instead. Once claimed, the cache is read again
    /// (the last claimer may have written it and released its claim just before), and the
    /// request is sent only when it still has nothing. A failed claim is logged and the
    /// request sent (a second request beats a visitor left without a company).
    async fn start<I: LookupIo + ?Sized>(&self, tippen: &Tippen, io: &I, ip: IpAddr) {
        let (hold, poll) = {
            let driver = lock(&self.driver);
            (driver.config().claim_hold, driver.config().claim_poll)
        };
        match tippen.store().claim_lookup(ip, hold).await {
            Ok(true) => {
                if self.settled_elsewhere(tippen, io, ip).await {
                    if let Err(e) = tippen.store().release_lookup(ip).await {
                        tracing::warn!(error = %e, "could not release an enrichment lookup claim");
                    }
                    return;
                }
            }
            Ok(false) => {
                tracing::debug!(%ip, "another replica is looking this address up");
                lock(&self.driver).elsewhere(ip, tippen.now().plus(poll));
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not claim an enrichment lookup"),
        }
        let started = lock(&self.driver).started(ip);
        steps::record(tippen, started.into_iter().collect()).await;
        io.spawn_lookup(ip);
    }

    /// Another process was looking `ip` up: its result, once in the cache, goes to this
    /// process's waiters; while its claim holds, check again later; when the claim is gone
    /// without a result (that process died or gave up), look it up here.
    async fn check_elsewhere<I: LookupIo + ?Sized>(&self, tippen: &Tippen, io: &I, ip: IpAddr) {
        if !self.settled_elsewhere(tippen, io, ip).await {
            self.start(tippen, io, ip).await;
        }
    }

    /// Gives the waiters of `ip` the shared cache's fresh entry, if it has one (another
    /// process settled the lookup); whether it had. A failed read is logged and counts as
    /// none.
    async fn settled_elsewhere<I: LookupIo + ?Sized>(
        &self,
        tippen: &Tippen,
        io: &I,
        ip: IpAddr,
    ) -> bool {
        let entry = match tippen.fresh_cached_lookup(ip).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "enrichment cache read failed");
                return false;
            }
        };
        let (events, waiters) = lock(&self.driver).settled_elsewhere(ip, tippen.now());
        steps::record(tippen, events).await;
        let answer = Arc::new(Answer::Cached(entry));
        for (site, visitor) in waiters {
            io.deliver(site, visitor, answer.clone()).await;
        }
        true
    }
}
