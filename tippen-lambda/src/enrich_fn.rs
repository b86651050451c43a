//! The enrichment function (feature `enrich`): runs the lookups the HTTP function handed over
//! in an asynchronous invocation ([`EnrichEvent`]), to the end or until
//! `TIPPEN_ENRICH_BUDGET_MS`, and applies their effects (the `VISITOR_UPDATE`s) before it
//! returns. See
//! [`crate::enrich`] for the design and what a deployment should set.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use tippen_core::enrichment::{Enricher, LookupRun, PlannerConfig, Provider, run_lookups};

use crate::config::ConfigError;
use crate::enrich::EnrichEvent;
use crate::host::{HostError, LambdaHost};

/// The provider and the lookup bookkeeping of one instance (kept across its invocations).
#[derive(Debug)]
pub struct Enrichment {
    enricher: Enricher,
}

impl Enrichment {
    /// The provider `TIPPEN_ENRICHMENT_*` names, with the default planner (50 lookups a
    /// minute, 4 attempts).
    pub fn new(provider: Box<dyn Provider>) -> Self {
        Enrichment {
            enricher: Enricher::new(provider.into(), PlannerConfig::default()),
        }
    }
}

impl LambdaHost {
    /// Runs one enrichment event: the lookups (and any this instance queued earlier that are
    /// due) through the core's [`run_lookups`], within the budget; then applies the enriched
    /// visitors' effects, in order.
    pub async fn enrich(&self, event: EnrichEvent) -> Result<LookupRun, HostError> {
        let (Some(enrichment), Some(outbound)) = (self.enrichment(), self.outbound()) else {
            return Err(ConfigError::Missing("TIPPEN_ENRICHMENT_PROVIDER").into());
        };
        let tippen = self.tippen();
        let until = tippen.now().plus(self.config().enrich_budget);
        let lookups = event.tippen_lookups;
        let mut run = run_lookups(
            tippen,
            &enrichment.enricher,
            outbound.transport(),
            lookups,
            until,
            tokio::time::sleep,
        )
        .await;
        for effects in std::mem::take(&mut run.effects) {
            self.apply(effects, None).await;
        }
        if run.unfinished {
            tracing::info!(
                budget_ms = self.config().enrich_budget.as_millis() as u64,
                "lookups still queued (rate limit or retry) after the budget; this instance's next invocation starts them"
            );
        }
        Ok(run)
    }
}

/// Runs the enrichment function until the Lambda runtime stops it. Fails at once when no
/// provider is configured (the function exists only for it).
pub async fn run(host: LambdaHost) -> Result<(), HostError> {
    if host.enrichment().is_none() {
        return Err(ConfigError::Missing("TIPPEN_ENRICHMENT_PROVIDER").into());
    }
    let host = Arc::new(host);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let host = host.clone();
        // Boxed: keeps the runtime's future type shallow (and the binary's layout queries).
        Box::pin(async move {
            let event: EnrichEvent = serde_json::from_value(event.payload).map_err(|e| {
                lambda_runtime::Error::from(format!("not an enrichment event: {e}"))
            })?;
            let run = host
                .enrich(event)
                .await
                .map_err(lambda_runtime::Error::from)?;
            Ok::<_, lambda_runtime::Error>(json!({
                "providerRequests": run.provider_requests,
                "enriched": run.enriched,
                "unfinished": run.unfinished,
            }))
        })
    }))
    .await
    .map_err(|e| HostError::Aws(format!("Lambda runtime: {e}")))
}
