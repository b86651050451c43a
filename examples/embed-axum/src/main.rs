//! The shop of `tippen_embed_axum::app` on a loopback port, with tippen under `/tippen`.
//!
//! `EMBED_LISTEN` (default `127.0.0.1:8788`) is the address; logs go to stderr, filtered by
//! `RUST_LOG` (default `info`). Visitors are kept in memory.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;

use tippen_axum::TippenHost;
use tippen_core::{Config, KeyRole, MemoryStore, Site, SystemClock, Tippen};
use tippen_embed_axum::{Shop, TIPPEN_PREFIX, app};

/// The shop's tippen site: the public key goes into its pages, the secret key opens the
/// dashboard. A real application reads them from its configuration.
const PUBLIC_KEY: &str = "pk_shop_public";
const SECRET_KEY: &str = "sk_shop_secret";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let tippen = Tippen::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Config::default(),
    );
    let site = Site::new("shop", "Fernhill Coffee", PUBLIC_KEY, SECRET_KEY);
    tippen.put_site(&site).await?;
    let host = TippenHost::new(tippen);
    host.arm_stored_deadlines().await?;

    // The shop's staff sign in with `POST /login` and use tippen's API in their role.
    let shop = Shop::new("Fernhill Coffee", PUBLIC_KEY).with_staff(
        "shop",
        &[
            ("ada", "change-me-ada", KeyRole::Agent),
            ("vera", "change-me-vera", KeyRole::Viewer),
        ],
    );
    let app = app(shop, &host);
    let listen = std::env::var("EMBED_LISTEN").unwrap_or_else(|_| "127.0.0.1:8788".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    println!("shop:      http://{addr}/");
    println!("dashboard: http://{addr}{TIPPEN_PREFIX}/dashboard?apiKey={SECRET_KEY}");

    let stopping = host.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        stopping.shutdown().await;
    })
    .await?;
    Ok(())
}
