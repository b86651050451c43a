//! [`run_lookups`]: the enrichment drive loop as one bounded call, for a host whose work must
//! end when its invocation ends (a serverless function: AWS Lambda freezes the process as soon
//! as the handler returns, so no background task or timer may outlive it).
//!
//! It drives the same [`Enricher`] the long-running hosts drive (cache check, admission,
//! single flight, rate limit, retries, settling), with provider requests sent one at a time
//! over the host's [`Transport`] instead of in background tasks. Queued lookups (rate limit)
//! and retries are waited for with the host's `sleep` while their time comes before `until`;
//! what is still pending then stays in the enricher for the host's next call.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::engine::{Enricher, LookupIo};
use super::steps::{Answer, lookup};
use crate::effects::Effects;
use crate::service::LookupRequest;
use crate::transport::Transport;
use crate::{SiteId, Timestamp, Tippen};

/// What one [`run_lookups`] call did.
#[derive(Debug, Default)]
pub struct LookupRun {
    /// What the enriched visitors' updates ask of the host (their `VISITOR_UPDATE`
    /// broadcasts), in order: apply each with [`host::apply`](crate::host::apply).
    pub effects: Vec<Effects>,
    /// Provider requests sent.
    pub provider_requests: usize,
    /// Visitors given a company (from the provider or the shared cache).
    pub enriched: usize,
    /// Lookups were still queued or waiting for a retry at `until`; they stay in the enricher
    /// (a later call with the same enricher starts them when due).
    pub unfinished: bool,
}

/// The bounded run's side of the [`Enricher`]: provider requests queued to be sent in turn,
/// visitors' effects collected.
struct Collect<'a> {
    tippen: &'a Tippen,
    due: Mutex<VecDeque<IpAddr>>,
    effects: Mutex<Vec<Effects>>,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl LookupIo for Collect<'_> {
    fn spawn_lookup(&self, ip: IpAddr) {
        lock(&self.due).push_back(ip);
    }

    async fn deliver(&self, site: SiteId, visitor: String, answer: Arc<Answer>) {
        let effects = answer.give(self.tippen, &site, &visitor).await;
        if !effects.broadcasts.is_empty() {
            lock(&self.effects).push(effects);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `lookups` (and whatever `enricher` has queued from an earlier call that is due) to
/// the end, or until `until`: see the module notes. `sleep` waits (a tokio sleep, a runtime
/// timer). Counters go to each site's stats as they happen; failures of the store are logged
/// and skipped (a visitor then keeps its fallback company).
pub async fn run_lookups<F, Fut>(
    tippen: &Tippen,
    enricher: &Enricher,
    transport: &dyn Transport,
    lookups: Vec<LookupRequest>,
    until: Timestamp,
    mut sleep: F,
) -> LookupRun
where
    F: FnMut(std::time::Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let io = Collect {
        tippen,
        due: Mutex::default(),
        effects: Mutex::default(),
    };
    let mut run = LookupRun::default();
    enricher.handle_timeout(tippen, &io).await;
    for request in lookups {
        enricher.submit(tippen, &io, request).await;
    }
    loop {
        loop {
            // Not in the loop's head: the guard would live through the body.
            let next = lock(&io.due).pop_front();
            let Some(ip) = next else {
                break;
            };
            run.provider_requests += 1;
            let result = lookup(&**enricher.provider(), transport, ip, tippen.now()).await;
            enricher.done(tippen, &io, ip, result).await;
        }
        let Some(at) = enricher.next_deadline() else {
            break;
        };
        if at > until {
            run.unfinished = true;
            break;
        }
        let now = tippen.now();
        if at > now {
            sleep(at.since(now)).await;
        }
        enricher.handle_timeout(tippen, &io).await;
    }
    run.effects = io.effects.into_inner().unwrap_or_else(|e| e.into_inner());
    run.enriched = run.effects.len();
    run
}
