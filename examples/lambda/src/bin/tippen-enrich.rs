//! tippen's enrichment function (asynchronous invocations from the HTTP function). Configuration: environment variables, see `tippen_lambda::LambdaConfig`.

// The AWS SDK's and the runtime's futures nest deeply.
#![recursion_limit = "256"]

use tippen_lambda::{HostError, LambdaHost};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), HostError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .with_ansi(false)
        .init();
    let host = LambdaHost::from_env().await?;
    tippen_lambda::enrich_fn::run(host).await
}
