//! The scheduled function: an EventBridge rule (every minute on AWS) runs the core's deadline
//! work for every site — visitors whose grace passed, invites that expired — and fans the
//! messages out. Reads never wait for it: the core hides a visitor whose grace has passed
//! from `INITIAL_VISITORS`, `/api/visitors` and invite lookups even before it is swept.
//!
//! The event may carry `{"windowMs": n}` (the rule's input in `template.yaml`): the invocation
//! then also handles the deadlines due within `n` ms ([`LambdaHost::sweep_all`]) — those its
//! first pass found and the wakes any function writes meanwhile — so a visitor's removal
//! reaches dashboards about when its grace or its leave linger ends rather than up to a minute
//! later. Any other event (EventBridge's own, `{}`) is one pass. With `{"sites": ["a", …]}`
//! only those sites get the first pass; the HTTP function asks with `"sites": []` (only the
//! wakes) when a closed tab's linger ends before any running invocation would poll. An
//! `askedAt` (milliseconds since the epoch) is only logged: how long the event queued.

use tippen_core::SiteId;

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

use crate::host::{HostError, LambdaHost};

/// The longest window an event may ask for (a scheduled run every minute needs less; the
/// function's timeout must be longer than the window).
pub const MAX_WINDOW: Duration = Duration::from_secs(600);

/// The window an event asks for: `windowMs` (a number of milliseconds up to
/// [`MAX_WINDOW`]); none (zero) when the event has no such field.
pub fn window(event: &Value) -> Result<Duration, String> {
    match event.get("windowMs") {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        Some(v) => v
            .as_u64()
            .map(Duration::from_millis)
            .filter(|w| *w <= MAX_WINDOW)
            .ok_or_else(|| {
                format!(
                    "windowMs must be a whole number of milliseconds up to {}, not {v}",
                    MAX_WINDOW.as_millis()
                )
            }),
    }
}

/// The sites an event names (`sites`, an array of site ids); `None`: every site.
pub fn sites(event: &Value) -> Result<Option<Vec<SiteId>>, String> {
    match event.get("sites") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| id.as_str().map(SiteId::from))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| "sites must be an array of site ids".to_owned()),
        Some(other) => Err(format!("sites must be an array of site ids, not {other}")),
    }
}

/// Runs the scheduled function until the Lambda runtime stops it.
pub async fn run(host: LambdaHost) -> Result<(), HostError> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let host = host.clone();
        // Boxed: keeps the runtime's future type shallow (and the binary's layout queries).
        Box::pin(async move {
            let window = window(&event.payload).map_err(lambda_runtime::Error::from)?;
            let sites = sites(&event.payload).map_err(lambda_runtime::Error::from)?;
            let now = host.tippen().now().as_millis();
            let asked = event
                .payload
                .get("askedAt")
                .and_then(serde_json::Value::as_i64);
            tracing::debug!(
                now_ms = now,
                queued_ms = ?asked.map(|at| now - at),
                window_ms = window.as_millis() as u64,
                sites = ?sites,
                "sweep invocation"
            );
            // A scheduled run (every site) also purges history by retention, hourly, beside
            // the sweep ([`crate::retention`]).
            let (sent, purged) = match sites {
                Some(sites) => (host.sweep_sites(sites, window).await, Ok(None)),
                None => tokio::join!(host.sweep_all(window), host.purge_history_if_due()),
            };
            let purged = purged.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "history purge failed; the next run tries again");
                None
            });
            let sent = sent.map_err(lambda_runtime::Error::from)?;
            Ok::<_, lambda_runtime::Error>(json!({ "messages": sent, "purgedVisits": purged }))
        })
    }))
    .await
    .map_err(|e| HostError::Aws(format!("Lambda runtime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_comes_from_the_event() {
        assert_eq!(window(&json!({})), Ok(Duration::ZERO));
        // EventBridge's own scheduled event has no windowMs.
        assert_eq!(
            window(&json!({"detail-type": "Scheduled Event", "source": "aws.events"})),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            window(&json!({"windowMs": 50000})),
            Ok(Duration::from_millis(50000))
        );
        assert_eq!(sites(&json!({"windowMs": 3000})), Ok(None));
        assert_eq!(
            sites(&json!({"windowMs": 3000, "sites": ["a", "b"]})),
            Ok(Some(vec![SiteId::from("a"), SiteId::from("b")]))
        );
        assert!(sites(&json!({"sites": "a"})).is_err());
        assert!(sites(&json!({"sites": [1]})).is_err());
        for bad in [json!(-1), json!(1.5), json!("50000"), json!(600_001)] {
            let err = window(&json!({ "windowMs": bad })).expect_err("refused");
            assert!(err.contains("windowMs"), "{err}");
        }
    }
}
