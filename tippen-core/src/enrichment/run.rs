//! [`run_lookups`]: the enrichment drive loop as one bounded call, for a host whose work must
//! end when its invocation ends (a serverless function: AWS Lambda freezes the process as soon
//! as the handler returns, so no background task or timer may outlive it).
//!
//! It does what the long-running hosts' loops do, step by step, with the same accounting
//! ([`LookupDriver`]): a cache check for an address nobody is looking up (the shared cache may
//! have the answer since the visitor's own check), then admission (start, join, queue), the
//! provider request (built and parsed by the core's [`Provider`], sent over the host's
//! [`Transport`]), and settling — the result goes to the shared cache
//! ([`Tippen::cache_lookup`]) and to each waiting visitor ([`Tippen::complete_lookup`]).
//! Queued lookups (rate limit) and retries are waited for with the host's `sleep` while their
//! time comes before `until`; what is still pending then stays in the driver for the host's
//! next call. Provider requests are sent one at a time.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::{
    CompanyProfile, Completion, EnrichmentEvent, LookupDriver, LookupFailure, Provider, SiteEvent,
};
use crate::protocol::Sequenced;
use crate::service::{LookupRequest, Outcome, ServiceError};
use crate::transport::Transport;
use crate::{SiteId, Timestamp, Tippen};

/// What one [`run_lookups`] call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupRun {
    /// Dashboard messages to send (`VISITOR_UPDATE`s of enriched visitors), per site, in
    /// order.
    pub messages: Vec<(SiteId, Vec<String>)>,
    /// Provider requests sent.
    pub provider_requests: usize,
    /// Visitors given a company (from the provider or the shared cache).
    pub enriched: usize,
    /// Lookups were still queued or waiting for a retry at `until`; they stay in the driver
    /// (a later call with the same driver starts them when due).
    pub unfinished: bool,
}

/// One provider request: the core builds it, `transport` sends it, the core parses the answer.
/// A transport error (timeout, connection) is [`LookupFailure::Transient`].
pub async fn lookup(
    provider: &dyn Provider,
    transport: &dyn Transport,
    ip: IpAddr,
    now: Timestamp,
) -> Result<CompanyProfile, LookupFailure> {
    match transport.send(provider.build_request(ip)).await {
        Err(e) => Err(LookupFailure::Transient(e.to_string())),
        Ok(response) => provider.parse_response(&response, now),
    }
}

/// Runs `lookups` (and whatever `driver` has queued from an earlier call that is due) to the
/// end, or until `until`: see the module notes. `sleep` waits (a tokio sleep, a runtime
/// timer). Counters go to each site's stats as they happen; failures of the store are logged
/// and skipped (a visitor then keeps its fallback company).
pub async fn run_lookups<F, Fut>(
    tippen: &Tippen,
    provider: &dyn Provider,
    transport: &dyn Transport,
    driver: &mut LookupDriver<String>,
    lookups: Vec<LookupRequest>,
    until: Timestamp,
    mut sleep: F,
) -> LookupRun
where
    F: FnMut(std::time::Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut run = LookupRun::default();
    let mut due: VecDeque<IpAddr> = driver.handle_timeout(tippen.now()).into();
    for request in lookups {
        if let Some(ip) = admit(tippen, driver, request, &mut run).await {
            due.push_back(ip);
        }
    }
    loop {
        while let Some(ip) = due.pop_front() {
            if let Some(event) = driver.started(ip) {
                record(tippen, vec![event]).await;
            }
            run.provider_requests += 1;
            let result = lookup(provider, transport, ip, tippen.now()).await;
            settle(tippen, provider, driver, ip, result, &mut run).await;
        }
        let Some(at) = driver.next_deadline() else {
            return run;
        };
        if at > until {
            run.unfinished = true;
            return run;
        }
        let now = tippen.now();
        if at > now {
            sleep(at.since(now)).await;
        }
        due.extend(driver.handle_timeout(tippen.now()));
    }
}

/// A visitor's lookup: answered from the cache when nobody is looking its address up and the
/// cache has it now, else admitted to the driver. Returns the address to start now.
async fn admit(
    tippen: &Tippen,
    driver: &mut LookupDriver<String>,
    request: LookupRequest,
    run: &mut LookupRun,
) -> Option<IpAddr> {
    let LookupRequest {
        site,
        visitor_id,
        ip,
    } = request;
    if !driver.is_pending(ip) {
        match tippen.fresh_cached_lookup(ip).await {
            Ok(Some(entry)) => {
                // Another lookup settled since the visitor's own cache check.
                record(
                    tippen,
                    vec![(site.clone(), EnrichmentEvent::JoinedInFlight)],
                )
                .await;
                let outcome = tippen.apply_cached_lookup(&site, &visitor_id, &entry).await;
                deliver(site, outcome, run);
                return None;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "enrichment cache read failed"),
        }
    }
    let requested = driver.request(site, visitor_id, ip, tippen.now());
    if requested
        .events
        .iter()
        .any(|(_, e)| *e == EnrichmentEvent::QueueFull)
    {
        tracing::warn!("enrichment queue full: visitor keeps its fallback company");
    }
    record(tippen, requested.events).await;
    requested.start.then_some(ip)
}

/// The provider answered for `ip`: count, then retry later or settle (cache first, then each
/// waiter).
async fn settle(
    tippen: &Tippen,
    provider: &dyn Provider,
    driver: &mut LookupDriver<String>,
    ip: IpAddr,
    result: Result<CompanyProfile, LookupFailure>,
    run: &mut LookupRun,
) {
    let kind = provider.kind();
    if let Err(failure) = &result {
        match failure {
            LookupFailure::NotFound => {}
            LookupFailure::InvalidKey => tracing::error!(
                provider = %kind,
                "the enrichment provider rejected the API key; visitors get fallbacks"
            ),
            LookupFailure::QuotaExhausted => {
                tracing::error!(provider = %kind, "the enrichment provider's quota is exhausted");
            }
            other => tracing::warn!(provider = %kind, error = %other, "enrichment lookup failed"),
        }
    }
    let now = tippen.now();
    let (events, completion) = driver.complete(ip, &result, now);
    record(tippen, events).await;
    match completion {
        Completion::Retrying { at } => {
            tracing::debug!(provider = %kind, retry_in = ?at.since(now), "enrichment lookup will be retried");
        }
        Completion::Settled(waiters) => {
            // Cache first: a request arriving after this finds the answer there.
            if let Err(e) = tippen.cache_lookup(ip, &result).await {
                tracing::warn!(error = %e, "could not store the enrichment result");
            }
            for (site, visitor) in waiters {
                let outcome = tippen.complete_lookup(&site, &visitor, &result).await;
                deliver(site, outcome, run);
            }
        }
    }
}

async fn record(tippen: &Tippen, events: Vec<SiteEvent>) {
    for (site, event) in events {
        if let Err(e) = tippen.record_enrichment(&site, &[event]).await {
            tracing::warn!(site = %site, error = %e, "could not record enrichment stats");
        }
    }
}

fn deliver(site: SiteId, outcome: Result<Outcome, ServiceError>, run: &mut LookupRun) {
    match outcome {
        Ok(outcome) => {
            if !outcome.messages.is_empty() {
                run.enriched += 1;
                run.messages.push((
                    site,
                    outcome.messages.iter().map(Sequenced::to_json).collect(),
                ));
            }
        }
        Err(e) => tracing::warn!(site = %site, error = %e, "could not update an enriched visitor"),
    }
}
