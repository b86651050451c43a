//! Company enrichment on Lambda: the hand-off from the HTTP function and the enrichment
//! function's work.
//!
//! Lambda freezes the process as soon as a handler returns, so the HTTP function can neither
//! wait for the provider (the tracking answer would wait with it) nor leave a lookup running
//! in the background. It hands the lookups the core asked for
//! ([`Effects::lookups`](tippen_core::Effects::lookups)) to the enrichment function
//! (`TIPPEN_ENRICH_FUNCTION`) in an **asynchronous invocation** (`InvocationType=Event`:
//! Lambda queues the event and answers at once) and returns.
//!
//! The enrichment function (feature `enrich`, [`crate::enrich_fn`]) runs them with the
//! core's [`run_lookups`](tippen_core::enrichment::run_lookups): the shared cache first (the
//! DynamoDB store's cache items are shared by every site and every instance), then the
//! provider over [`tippen_http::HttpTransport`] (request built and parsed by the core),
//! the result to the cache ([`Tippen::cache_lookup`](tippen_core::Tippen::cache_lookup)) and
//! to each waiting visitor ([`Tippen::complete_lookup`](tippen_core::Tippen::complete_lookup)),
//! the per-site counters to the store, and the effects of the visitors' updates (their
//! `VISITOR_UPDATE`s) applied through [`LambdaHost::apply`] — all before the invocation
//! returns.
//!
//! Single flight and the rate limit are the core's [`Enricher`](tippen_core::enrichment::Enricher) (the one every host drives),
//! kept by each instance across its invocations (Lambda runs one invocation at a time per
//! instance). They are **per instance**: Lambda starts more instances when events arrive
//! faster than one instance handles them. A deployment that must hold the provider's rate
//! limit (50 lookups a minute by default) sets the function's reserved concurrency to 1
//! (`template.yaml` does): events then queue in Lambda's asynchronous queue and one instance
//! drives them all. Two instances looking up the same address at once would each spend a
//! credit; the shared cache prevents it afterwards. A lookup queued by the rate limit (or a
//! retry) that is not due within `TIPPEN_ENRICH_BUDGET_MS` stays in the instance's enricher and
//! is started by that instance's next invocation; if the instance is recycled first it is
//! lost and the visitor keeps the fallback company (a later visit from that address asks
//! again, since nothing was cached).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::{Deserialize, Serialize};
use tippen_core::LookupRequest;

use crate::host::LambdaHost;

/// The enrichment function's event: `{"tippenLookups":[{"site":…,"visitorId":…,"ip":…}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichEvent {
    /// The lookups to run.
    pub tippen_lookups: Vec<LookupRequest>,
}

impl LambdaHost {
    /// Hands `lookups` to the enrichment function (asynchronous invocation; returns once
    /// Lambda queued the event): this host's `HostIo::start_lookups`. Without
    /// `TIPPEN_ENRICH_FUNCTION`, or when the invocation fails, they are dropped (logged): the
    /// visitors keep the fallback company.
    pub async fn hand_off_lookups(&self, lookups: Vec<LookupRequest>) {
        let Some(function) = &self.config().enrich_function else {
            tracing::debug!(
                lookups = lookups.len(),
                "no TIPPEN_ENRICH_FUNCTION: enrichment is off; visitors keep the fallback company"
            );
            return;
        };
        let event = EnrichEvent {
            tippen_lookups: lookups,
        };
        let payload = match serde_json::to_vec(&event) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "could not encode the enrichment event");
                return;
            }
        };
        let sent = self
            .lambda()
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(
                lookups = event.tippen_lookups.len(),
                error = ?e,
                "could not invoke the enrichment function; visitors keep the fallback company"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_round_trips_and_rejects_unknown_fields() {
        let request = LookupRequest {
            site: tippen_core::SiteId::from("a"),
            visitor_id: "v1".into(),
            ip: "9.9.9.9".parse().unwrap(),
        };
        let event = EnrichEvent {
            tippen_lookups: vec![request.clone()],
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"tippenLookups":[{"site":"a","visitorId":"v1","ip":"9.9.9.9"}]}"#
        );
        let back: EnrichEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.tippen_lookups[0], request);
        assert!(serde_json::from_str::<EnrichEvent>(r#"{"tippenLookups":[],"x":1}"#).is_err());
        assert!(
            serde_json::from_str::<EnrichEvent>(
                r#"{"tippenLookups":[{"site":"a","visitorId":"v","ip":"nope"}]}"#
            )
            .is_err()
        );
    }
}
