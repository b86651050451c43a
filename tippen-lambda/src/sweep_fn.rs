//! The scheduled function: an EventBridge rule (every minute on AWS) runs the core's deadline
//! work for every site — visitors whose grace passed, invites that expired — and fans the
//! messages out. Reads never wait for it: the core hides a visitor whose grace has passed
//! from `INITIAL_VISITORS`, `/api/visitors` and invite lookups even before it is swept.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

use crate::host::{HostError, LambdaHost};

/// Runs the scheduled function until the Lambda runtime stops it. The event's content is
/// ignored (any EventBridge event, or `{}` from a test's Invoke call).
pub async fn run(host: LambdaHost) -> Result<(), HostError> {
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let host = host.clone();
        // Boxed: keeps the runtime's future type shallow (and the binary's layout queries).
        Box::pin(async move {
            let sent = host
                .sweep_all()
                .await
                .map_err(lambda_runtime::Error::from)?;
            Ok::<_, lambda_runtime::Error>(json!({ "messages": sent }))
        })
    }))
    .await
    .map_err(|e| HostError::Aws(format!("Lambda runtime: {e}")))
}
