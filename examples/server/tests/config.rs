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
            secret_key = "sk_acme_0123456789abcdefgh"

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
    let listed: Value = visitors(&client, &base, "sk_acme_0123456789abcdefgh")
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
        "[[sites]]\nid = \"acme\"\npublic_key = \"pk_acme\"\nsecret_key = \"sk_acme_0123456789abcdefgh\"\n",
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
    assert_eq!(
        status(visitors(&client, &base, "sk_acme_0123456789abcdefgh")).await,
        200
    );
    assert_eq!(
        status(visitors(&client, &base, "demo_api_key")).await,
        200,
        "demo is back"
    );
}

/// Runs the binary with `args` until it exits (it must, within 10 s); its status and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tippen-server"))
        .args(args)
        .env_remove("TIPPEN_CONFIG")
        .env_remove("TIPPEN_NO_DEMO")
        .env_remove("TIPPEN_LISTEN")
        .env_remove("TIPPEN_ALLOW_PUBLIC_DEMO")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tippen-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.success(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (true, "still running".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_demo_key_is_refused_off_loopback_and_short_secret_keys_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tippen.db");
    let db = db.to_str().unwrap();
    let (ok, err) = run_to_exit(&["--listen", "0.0.0.0:0", "--db", db], &[]);
    assert!(!ok, "refused");
    assert!(
        err.contains("refusing to serve the demo site") && err.contains("--allow-public-demo"),
        "{err}"
    );
    // Asked explicitly, or without the demo site, it starts (and keeps running).
    let (_, err) = run_to_exit(
        &["--listen", "0.0.0.0:0", "--db", db, "--allow-public-demo"],
        &[],
    );
    assert_eq!(err, "still running");

    let config = dir.path().join("short.toml");
    std::fs::write(
        &config,
        "[[sites]]\nid = \"acme\"\npublic_key = \"pk_acme\"\nsecret_key = \"sk_acme_secret\"\n",
    )
    .unwrap();
    let (ok, err) = run_to_exit(
        &["--listen", "127.0.0.1:0", "--db", db, "--no-demo"],
        &[("TIPPEN_CONFIG", config.to_str().unwrap())],
    );
    assert!(!ok);
    assert!(
        err.contains(r#"site "acme": the secret key has 14 characters; it needs at least 24"#),
        "{err}"
    );
}
