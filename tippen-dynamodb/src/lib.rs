#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod history;
pub mod store;

/// The AWS SDK's DynamoDB client crate, at the version these stores use.
pub use aws_sdk_dynamodb;
pub use history::DynamoHistory;
pub use store::{Connection, DynamoStore, FanoutTarget, SweepClaim, SweepEnd, Wake};

/// The AWS SDK configuration with a rustls (ring) HTTPS client and no OpenSSL. Endpoint
/// overrides come from the standard variables (`AWS_ENDPOINT_URL_DYNAMODB`, …) only.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::{Builder, tls};
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}
