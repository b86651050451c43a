//! The built server with a configuration file: key roles of configured sites, `--no-demo`,
//! and sites dropped from the file losing their keys at the next start.

mod common;

use common::Server;
use serde_json::{Value, json};

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

fn track(client: &reqwest::Client, base: &str, key: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/track/visitor"))
        .header("X-Tippen-API-Key", key)
        .json(&json!({
            "event": "pageview",
            "visitor": {"visitorId": "visitor_config", "url": "https://acme.test/"},
            "website": "acme.test",
        }))
}

fn visitors(client: &reqwest::Client, base: &str, key: &str) -> reqwest::RequestBuilder {
    client
        .get(format!("{base}/api/visitors"))
        .header("X-Tippen-API-Key", key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_sites_their_key_roles_and_retirement() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tippen.db");
    let config = dir.path().join("tippen.toml");
    let hashed = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"; // "password"
    std::fs::write(
        &config,
        format!(
            r#"
            [[sites]]
            id = "acme"
            public_key = "pk_acme"
            secret_key = "sk_acme"

            [[sites]]
            id = "globex"
            public_key = "pk_globex"
            secret_key_sha256 = "{hashed}"
            "#
        ),
    )
    .expect("write config");
    let config_arg = config.to_str().expect("utf-8 path");
    let client = reqwest::Client::new();

    let server = Server::start_with(&db, &[], &["--no-demo", "--config", config_arg]);
    let base = server.base_url.clone();
    assert_eq!(
        status(track(&client, &base, "pk_acme")).await,
        200,
        "public key tracks"
    );
    assert_eq!(
        status(visitors(&client, &base, "pk_acme")).await,
        403,
        "public key cannot list"
    );
    let listed: Value = visitors(&client, &base, "sk_acme")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["visitors"][0]["visitorId"], "visitor_config");
    assert_eq!(
        status(visitors(&client, &base, "password")).await,
        200,
        "hashed secret key"
    );
    assert_eq!(
        status(visitors(&client, &base, hashed)).await,
        403,
        "the hash is not a key"
    );
    assert_eq!(
        status(track(&client, &base, "demo_api_key")).await,
        403,
        "--no-demo"
    );
    server.kill();

    // The file no longer lists globex: its keys stop working; acme and the demo site work.
    std::fs::write(
        &config,
        "[[sites]]\nid = \"acme\"\npublic_key = \"pk_acme\"\nsecret_key = \"sk_acme\"\n",
    )
    .expect("rewrite config");
    let server = Server::start(&db, &[("TIPPEN_CONFIG", config_arg.to_owned())]);
    let base = server.base_url.clone();
    assert_eq!(
        status(visitors(&client, &base, "password")).await,
        403,
        "retired"
    );
    assert_eq!(
        status(track(&client, &base, "pk_globex")).await,
        403,
        "retired"
    );
    assert_eq!(status(visitors(&client, &base, "sk_acme")).await, 200);
    assert_eq!(
        status(visitors(&client, &base, "demo_api_key")).await,
        200,
        "demo is back"
    );
}
