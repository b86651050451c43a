//! Creates tippen's DynamoDB table (keys, the `due` index, TTL) for local runs against moto
//! or DynamoDB Local; on AWS `template.yaml` declares the same table. Reads `TIPPEN_TABLE` and
//! the standard AWS variables (`AWS_ENDPOINT_URL_DYNAMODB` for a local endpoint).

use tippen_lambda::{DynamoStore, HostError, sdk_config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), HostError> {
    let table = std::env::var("TIPPEN_TABLE")
        .map_err(|_| tippen_lambda::ConfigError::Missing("TIPPEN_TABLE"))?;
    let sdk = sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    store.create_table().await?;
    println!("table {table} ready");
    Ok(())
}
