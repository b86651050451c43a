//! tippen's enrichment function (asynchronous invocations from the HTTP function). Configuration: environment variables, see `tippen_lambda::LambdaConfig`.

// The AWS SDK's and the runtime's futures nest deeply.
#![recursion_limit = "256"]

use tippen_lambda::{HostError, LambdaHost};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), HostError> {
    tippen_lambda::init_logging();
    tippen_lambda::enrich_fn::run(LambdaHost::from_env().await?).await
}
