//! [`run_lookups`]: the enrichment drive loop as one bounded call, for a host whose work must
//! end when its invocation ends (a serverless function: AWS Lambda freezes the process as soon
//! as the handler returns, so no background task or timer may outlive it).
//!
//! It does what the long-running hosts' loops do, step by step, with the same accounting
//! ([`LookupDriver`]): a cache check for an address nobody is looking up (the shared cache may
//! have the answer since the visitor's own check), then admission (start, join, queue), the
//! provider request (built and parsed by the core's [`Provider`], sent over the host's
//! [`Transport`]), and settling — the result goes to the shared cache
//! ([`Tippen::cache_lookup`]) and to each waiting visitor ([`Tippen::complete_lookup`]): the
//! [`steps`] the long-running hosts call from their own loops.
//! Queued lookups (rate limit) and retries are waited for with the host's `sleep` while their
//! time comes before `until`; what is still pending then stays in the driver for the host's
//! next call. Provider requests are sent one at a time.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::steps::{self, Answer, FailureLog, lookup};
use super::{CompanyProfile, LookupDriver, LookupFailure, Provider};
use crate::effects::Effects;
use crate::service::LookupRequest;
use crate::transport::Transport;
use crate::{Timestamp, Tippen};

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
    /// Lookups were still queued or waiting for a retry at `until`; they stay in the driver
    /// (a later call with the same driver starts them when due).
    pub unfinished: bool,
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
    let mut failures = FailureLog::default();
    let mut due: VecDeque<IpAddr> = driver.handle_timeout(tippen.now()).into();
    for request in lookups {
        if let Some(ip) = admit(tippen, driver, request, &mut run).await {
            due.push_back(ip);
        }
    }
    loop {
        while let Some(ip) = due.pop_front() {
            steps::record(tippen, driver.started(ip).into_iter().collect()).await;
            run.provider_requests += 1;
            let result = lookup(provider, transport, ip, tippen.now()).await;
            settle(
                tippen,
                provider,
                driver,
                &mut failures,
                ip,
                result,
                &mut run,
            )
            .await;
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
    if !driver.is_pending(request.ip)
        && let Some(answer) = steps::from_cache(tippen, &request).await
    {
        let messages = answer
            .give(tippen, &request.site, &request.visitor_id)
            .await;
        deliver(messages, run);
        return None;
    }
    let ip = request.ip;
    let requested = steps::request(driver, request, tippen.now());
    steps::admitted(tippen, requested).await.then_some(ip)
}

/// The provider answered for `ip`: count, then retry later or settle (cache first, then each
/// waiter).
async fn settle(
    tippen: &Tippen,
    provider: &dyn Provider,
    driver: &mut LookupDriver<String>,
    failures: &mut FailureLog,
    ip: IpAddr,
    result: Result<CompanyProfile, LookupFailure>,
    run: &mut LookupRun,
) {
    let kind = provider.kind();
    failures.log(kind, &result);
    let now = tippen.now();
    let completed = driver.complete(ip, &result, now);
    if let Some(waiters) = steps::settle(tippen, kind, ip, &result, now, completed).await {
        let answer = Answer::Lookup(result);
        for (site, visitor) in waiters {
            let messages = answer.give(tippen, &site, &visitor).await;
            deliver(messages, run);
        }
    }
}

/// Keeps what giving a visitor its company broadcast, to send.
fn deliver(effects: Effects, run: &mut LookupRun) {
    if !effects.broadcasts.is_empty() {
        run.enriched += 1;
        run.effects.push(effects);
    }
}
