//! # tippen-server
//!
//! The tippen reference server: the whole contract on axum, visitors kept in a SQLite file, or
//! in Redis (`--redis URL`) so that several replicas share them.
//!
//! ```text
//! cargo run -p tippen-server                 # http://127.0.0.1:8787, ./tippen.db, demo site
//! cargo run -p tippen-server -- --help
//! ```
//!
//! ## Flags (each with an environment fallback)
//!
//! | flag | env | default | |
//! |---|---|---|---|
//! | `--listen ADDR` | `TIPPEN_LISTEN` | `127.0.0.1:8787` | address to listen on (`:0` picks a free port) |
//! | `--db FILE` | `TIPPEN_DB` | `./tippen.db` | SQLite file, created (with its folder) if absent |
//! | `--redis URL` | `TIPPEN_REDIS_URL` | none | keep sites, visitors, users, sequences and the enrichment cache in Redis instead of the SQLite file (below) |
//! | `--redis-deadline-poll-ms MS` | `TIPPEN_REDIS_DEADLINE_POLL_MS` | 5000 | with `--redis`: how often the replica reads every site's next deadline from Redis and arms its timer at it |
//! | `--config FILE` | `TIPPEN_CONFIG` | none | sites, timings, trusted proxies (below) |
//! | `--no-demo` | `TIPPEN_NO_DEMO` | off | do not register the demo site |
//! | `--allow-public-demo` | `TIPPEN_ALLOW_PUBLIC_DEMO` | off | serve the demo site on a non-loopback address (refused otherwise) |
//! | `--max-connections N` | `TIPPEN_MAX_CONNECTIONS` | 10000 | open connections at most; more are closed at once |
//! | `--header-timeout-ms MS` | `TIPPEN_HEADER_TIMEOUT_MS` | 10000 | a request header must arrive within it; idle keep-alive connections close after it |
//! | `--body-timeout-ms MS` | `TIPPEN_BODY_TIMEOUT_MS` | 30000 | a request body must arrive within it (408) |
//! | `--ws-idle-timeout-ms MS` | `TIPPEN_WS_IDLE_TIMEOUT_MS` | 120000 | a silent WebSocket is closed (pinged every third of it) |
//! | `--rate-limit-per-ip N` | `TIPPEN_RATE_LIMIT_PER_IP` | 100 | requests/s per client address, bursts of 4N (429 + `Retry-After`); 0: off |
//! | `--rate-limit-per-key N` | `TIPPEN_RATE_LIMIT_PER_KEY` | 1000 | requests/s per key, bursts of 4N; 0: off |
//!
//! The enrichment provider can also be set (overriding the file's `[enrichment]`) with
//! `TIPPEN_ENRICHMENT_PROVIDER`, `TIPPEN_ENRICHMENT_API_KEY` and `TIPPEN_ENRICHMENT_BASE_URL`.
//! Without a provider the server runs, says so at start, and every visitor gets a fallback
//! company (`Direct Visitor` / `Unknown Company`).
//!
//! Support alerts go to Slack when `TIPPEN_SLACK_WEBHOOK_URL` (or `[support]
//! slack_webhook_url`) is set; `TIPPEN_PUBLIC_URL` (or `public_url`) is the server's public
//! base URL, for the link back to the dashboard in each message.
//!
//! Timings can also be overridden (for tests) with `TIPPEN_HEARTBEAT_MS`,
//! `TIPPEN_VISIBLE_GRACE_MS`, `TIPPEN_HIDDEN_GRACE_MS`, `TIPPEN_LEAVE_LINGER_MS` and
//! `TIPPEN_INVITE_TTL_MS` (milliseconds), the video provider with `TIPPEN_VIDEO_PROVIDER_URL`, and each `[support]`
//! key with `TIPPEN_SUPPORT_<KEY>` (tiers: `all`, `none` or a comma-separated list): the names
//! and checks every host shares (`tippen_core::settings`). Logs go to stderr, filtered by
//! `RUST_LOG` (default `info`).
//!
//! ## Several replicas on Redis
//!
//! With `--redis redis://host:6379` (or `TIPPEN_REDIS_URL`; `redis://user:password@host:port/db`
//! works too) the live state goes to Redis (`tippen_redis::RedisStore`) instead of the SQLite
//! file, so replicas started with the same URL and the same configuration share it: a visitor
//! tracked through one is listed by every other's `GET /api/visitors`, and their messages share
//! one sequence. Visit history stays in each replica's `--db` file (give each its own).
//!
//! Timers need no leader: besides the deadlines it learns from its own writes, each replica
//! reads every site's next deadline from Redis every `--redis-deadline-poll-ms` and arms its
//! timer at it, so when a replica dies the others remove its visitors (at most one poll
//! period late). Replicas sweeping one site at once are safe: a removal is a conditional
//! write, so each visitor is removed exactly once. Dashboards hear every replica's changes:
//! each write numbers its messages and publishes them on the site's Redis channel in one
//! script, and a replica holding dashboards of a site subscribes to it
//! (`tippen_redis::RedisBus`), replaying a gap from the site's log in Redis or resyncing its
//! dashboards with a snapshot. A visitor's own pushes (an invite on its `/ws/visitor` socket)
//! reach the sockets on the replica that made the change; on another replica the visitor
//! gets the invite in its next heartbeat response.
//! The rate limits (`--rate-limit-per-ip`, `--rate-limit-per-key`, a site's
//! `rate_limit_per_key`) are counted in Redis for all replicas together
//! (`tippen_redis::RedisRateLimiter`; a replica that cannot reach Redis lets requests through).
//! At start each replica retires the sites its configuration does not list, so every replica
//! needs the same sites.
//!
//! ## The demo site
//!
//! Unless `--no-demo` is given, site `demo` is registered in legacy single-key mode with the key
//! `demo_api_key`, so the predecessor's documented curl commands work verbatim. That key is
//! public knowledge: anyone can read that site's visitors. The server logs a warning saying so,
//! and refuses to start with it on a non-loopback `--listen` address unless
//! `--allow-public-demo` is given. Configured secret and legacy keys need at least 24
//! characters (`openssl rand -hex 16`).
//! At start it prints the dashboard and demo-page URLs.
//!
//! ## Configuration file (TOML)
//!
//! ```toml
//! trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]   # IPs or CIDRs; empty: headers ignored
//!
//! [presence]                 # milliseconds; absent keys keep these defaults
//! heartbeat_ms = 30000
//! visible_grace_ms = 60000
//! hidden_grace_ms = 300000
//! leave_linger_ms = 2000     # a tab that sent its exit beacon is held this long
//!
//! [enrichment]               # IP → company; absent: fallbacks only
//! provider = "ipinfo"        # ipinfo | ipinfo_lite | enrich_so | people_data_labs
//! api_key = "…"              # or TIPPEN_ENRICHMENT_API_KEY
//! # base_url = "https://…"   # another endpoint (proxy, test double)
//! rate_limit_per_minute = 50 # excess lookups wait in a queue (default 50)
//! request_timeout_ms = 5000  # a slower provider answer fails and is retried
//!
//! public_url = "https://tippen.example.com"   # links in Slack messages (or TIPPEN_PUBLIC_URL)
//!
//! [support]                  # support triggers; absent keys keep these defaults
//! stuck_after_ms = 300000    # stuck: same page longer than this, while present
//! presence_window_ms = 120000 # present: an event within this
//! low_activity_window_ms = 600000
//! low_activity_min_events = 3 # low activity: fewer interactions in the window
//! error_window_ms = 300000
//! error_burst_max = 3        # error burst: more errors in the window
//! inactivity_after_ms = 900000
//! stuck_tiers = ["all"]      # ["all"], [] (off) or free_trial / paid / enterprise
//! low_activity_tiers = ["free_trial"]
//! error_burst_tiers = ["all"]
//! inactivity_tiers = ["free_trial"]
//! slack_cooldown_ms = 600000 # at most one Slack message per user per this
//! retention_ms = 86400000    # users and raw events are forgotten after this without events
//! max_raw_events = 100       # raw events kept per user
//! # slack_webhook_url = "https://hooks.slack.com/services/…"  # better: TIPPEN_SLACK_WEBHOOK_URL
//!
//! [limits]                   # quotas; absent keys keep these defaults (also TIPPEN_MAX_…)
//! max_body_bytes = 65536     # 413 beyond
//! max_id_bytes = 128         # visitor, tab, invite and user ids; 400 beyond
//! max_frame_bytes = 4096     # WebSocket text frames; an ERROR reply beyond
//! max_tabs_per_visitor = 20  # the least recently seen tab is dropped beyond
//! max_departed_tabs = 20     # departures remembered per visitor; the oldest forgotten beyond
//! max_visitors_per_site = 10000 # a new visitor is 429 beyond
//! max_users_per_site = 10000 # a new support user is 429 beyond
//! opt_out_retention_ms = 2592000000 # a deleted visitor's id is refused (410) this long
//!
//! [[sites]]
//! id = "acme"                # letters, digits, '-', '_', '.'
//! name = "Acme Inc."         # optional, defaults to the id
//! public_key = "pk_…"        # the tracker snippet's key: tracking only
//! secret_key = "sk_…"        # dashboards, invites, visitor list
//! # secret_key_sha256 = "…"  # instead of secret_key: its SHA-256 as 64 hex digits
//! honor_gpc = true           # honour Sec-GPC: 1 (default true)
//!
//! [[sites]]
//! id = "old-client"
//! legacy_single_key = true   # one key for everything (no public_key)
//! secret_key = "…"
//! ```
//!
//! Keys are hashed (SHA-256) before they are stored; the database never holds a plain key.
//! The file is the source of truth for sites: at every start its sites (and the demo site) are
//! written to the database, and sites the database has but the file no longer lists are retired
//! with their visitors. `examples/server/tippen.example.toml` is a commented example.

#![forbid(unsafe_code)]

mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use std::time::Duration;
use thiserror::Error;

use tippen_axum::{
    HostConfig, HostError, RateLimit, RateLimits, ServeConfig, SqliteError, SqliteHistory,
    SqliteStore, TippenHost,
};
use tippen_core::host::HostIo;
use tippen_core::settings::register_sites;
use tippen_core::video::CustomerConnect;
use tippen_core::{Config, Deadline, ServiceError, SiteId, Store, StoreError, SystemClock, Tippen};
use tippen_redis::{RedisBus, RedisError, RedisRateLimiter, RedisStore};
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, DEMO_KEY, DEMO_SITE_ID, FileConfig};

/// jemalloc, not the system allocator: with glibc's malloc the server's long-lived visitor
/// records and its per-request buffers share pages that are never given back (fragmentation),
/// and 100,000 live visitors held 12.6 KB of RSS each against 2.9 KB with jemalloc (`load
/// hold`, `scripts/load-bench.sh`; README, "Under load").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The tippen reference server (axum + SQLite).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "TIPPEN_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// SQLite database file, created if absent (with --redis: visit history only).
    #[arg(long, env = "TIPPEN_DB", default_value = "./tippen.db")]
    db: PathBuf,
    /// Keep the live state (sites, visitors, users, sequences, enrichment cache) in this Redis,
    /// shared by every replica given the same URL, instead of the SQLite file.
    #[arg(long, env = "TIPPEN_REDIS_URL")]
    redis: Option<String>,
    /// With --redis: how often (milliseconds) to read every site's next deadline from Redis
    /// and arm the timer at it, so the visitors of a replica that died are still removed.
    #[arg(long, env = "TIPPEN_REDIS_DEADLINE_POLL_MS", default_value_t = 5_000)]
    redis_deadline_poll_ms: u64,
    /// Configuration file (TOML): sites, presence timings, trusted proxies.
    #[arg(long, env = "TIPPEN_CONFIG")]
    config: Option<PathBuf>,
    /// Do not register the demo site (`demo`, key `demo_api_key`). From the environment:
    /// `1`, `true`, `yes` or `on`.
    #[arg(
        long,
        env = "TIPPEN_NO_DEMO",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    no_demo: bool,
    /// Serve the demo site (whose key is public knowledge) on a non-loopback address too;
    /// without it the server refuses to start so. From the environment: `1`, `true`, `yes`
    /// or `on`.
    #[arg(
        long,
        env = "TIPPEN_ALLOW_PUBLIC_DEMO",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    allow_public_demo: bool,
    /// Most connections open at once (WebSockets included); more are closed at once.
    #[arg(long, env = "TIPPEN_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// A request's header must arrive within this many milliseconds (also: idle keep-alive
    /// connections are closed after it).
    #[arg(long, env = "TIPPEN_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// A request's body must arrive within this many milliseconds (408 otherwise).
    #[arg(long, env = "TIPPEN_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// A WebSocket silent for this many milliseconds is closed (pinged every third of it).
    #[arg(long, env = "TIPPEN_WS_IDLE_TIMEOUT_MS", default_value_t = 120_000)]
    ws_idle_timeout_ms: u64,
    /// Requests per second per client address (bursts of four times as many); 0: no limit.
    #[arg(long, env = "TIPPEN_RATE_LIMIT_PER_IP", default_value_t = 100)]
    rate_limit_per_ip: u32,
    /// Requests per second per key (bursts of four times as many); 0: no limit.
    #[arg(long, env = "TIPPEN_RATE_LIMIT_PER_KEY", default_value_t = 1000)]
    rate_limit_per_key: u32,
}

/// `per_second` sustained with bursts of four times as many; `None` for 0.
fn rate_limit(per_second: u32) -> Option<RateLimit> {
    (per_second > 0).then(|| RateLimit::new(per_second, per_second.saturating_mul(4)))
}

/// Where the live state is kept.
enum LiveStore {
    /// The SQLite file (the embedded default).
    Sqlite(Arc<SqliteStore>),
    /// Redis, shared with other replicas.
    Redis(Arc<RedisStore>),
}

impl LiveStore {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            LiveStore::Sqlite(s) => s.clone(),
            LiveStore::Redis(s) => s.clone(),
        }
    }

    async fn remove_site(&self, site: &SiteId) -> Result<bool, StoreError> {
        match self {
            LiveStore::Sqlite(s) => s.remove_site(site).await,
            LiveStore::Redis(s) => s.remove_site(site).await,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, Error)]
enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot create the database folder {path}: {source}")]
    DbFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error(
        "refusing to serve the demo site (key `{DEMO_KEY}`, public knowledge: anyone could read \
         its visitors) on the non-loopback address {0}; run with --no-demo and a config file, \
         or give --allow-public-demo to expose it anyway"
    )]
    PublicDemo(SocketAddr),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tippen-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tippen-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), ServerError> {
    let demo = !args.no_demo;
    if demo && !args.listen.ip().is_loopback() && !args.allow_public_demo {
        return Err(ServerError::PublicDemo(args.listen));
    }
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let settings = file.into_settings(demo, |var| std::env::var(var).ok())?;

    if let Some(folder) = args.db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|source| ServerError::DbFolder {
            path: folder.to_path_buf(),
            source,
        })?;
    }
    let live = match &args.redis {
        Some(url) => LiveStore::Redis(Arc::new(RedisStore::connect(url).await?)),
        None => LiveStore::Sqlite(Arc::new(SqliteStore::open(&args.db)?)),
    };
    let store = live.store();

    let sites = settings.sites;
    if demo {
        tracing::warn!(
            "the demo site `{DEMO_SITE_ID}` is enabled in legacy single-key mode with the key \
             `{DEMO_KEY}`, which is public knowledge: anyone can track to it and read its \
             visitors; run with --no-demo in production"
        );
    }
    if sites.is_empty() {
        tracing::warn!("no site is configured: every key will be refused (see --config)");
    }
    for old in store.sites().await? {
        // A site the operator API created or took over stays.
        if !old.managed && !sites.iter().any(|s| s.id == old.id) {
            tracing::warn!(site = %old.id, "site is no longer configured; retiring it and its keys");
            live.remove_site(&old.id).await?;
        }
    }
    let config = Config {
        presence: settings.presence,
        support: settings.support,
        invites: settings.invites,
        limits: settings.limits,
        privacy: settings.privacy,
        alerts: settings.alerts.clone(),
        audit: settings.audit,
        operator_token: settings.operator_token,
        ..Config::default()
    };
    match &settings.slack {
        Some(s) => tracing::info!(
            webhook = %s.webhook,
            dashboard_links = s.dashboard_base_url.is_some(),
            "support alerts go to Slack"
        ),
        None => tracing::info!(
            "no Slack webhook ([support] slack_webhook_url or TIPPEN_SLACK_WEBHOOK_URL): \
             support alerts go to dashboards only"
        ),
    }
    tracing::info!(presence = ?config.presence, invites = ?config.invites, "timings");
    // Visit history in the same file (its own tables); on by default.
    let history = Arc::new(SqliteHistory::open(&args.db)?);
    let mut tippen = Tippen::new(store, Arc::new(SystemClock), config).with_history(history);
    match &settings.video_provider_url {
        Some(url) => {
            tippen = tippen.with_video_provider(Arc::new(CustomerConnect::new(url)));
            tracing::info!("video provider configured: POST /api/video-call creates sessions");
        }
        None => tracing::info!(
            "no video provider ([invites] video_provider_url or TIPPEN_VIDEO_PROVIDER_URL): \
             admins invite with their own guest URL"
        ),
    }
    let tippen = Arc::new(tippen);
    register_sites(&tippen, &sites).await?;
    for site in &sites {
        tracing::info!(site = %site.id, legacy = site.legacy_single_key, "site configured");
    }
    match &settings.enrichment {
        Some(e) => tracing::info!(
            provider = %e.provider.kind(),
            rate_limit_per_minute = e.planner.rate_limit.max_starts,
            "enrichment enabled"
        ),
        None => tracing::warn!(
            "no enrichment provider configured ([enrichment] or TIPPEN_ENRICHMENT_PROVIDER): \
             visitors get fallback companies only"
        ),
    }
    let host_config = HostConfig {
        trusted_proxies: settings.trusted_proxies,
        enrichment: settings.enrichment,
        slack: settings.slack,
        body_read_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
        ws_idle_timeout: Duration::from_millis(args.ws_idle_timeout_ms.max(1)),
        rate_limits: RateLimits {
            per_client: rate_limit(args.rate_limit_per_ip),
            per_key: rate_limit(args.rate_limit_per_key),
        },
        ..HostConfig::default()
    };
    let host = match &live {
        // Dashboards hear every replica's messages through the Redis bus, and the replicas
        // count their rate limits together in Redis.
        LiveStore::Redis(store) => {
            let bus = RedisBus::connect(store).await?;
            let limits = RedisRateLimiter::new(store).await?;
            TippenHost::with_bus(tippen, host_config, Arc::new(bus))
                .with_shared_limits(Arc::new(limits))
        }
        LiveStore::Sqlite(_) => TippenHost::with_config(tippen, host_config),
    };
    host.arm_stored_deadlines().await?;
    if args.redis.is_some() {
        follow_shared_deadlines(
            host.clone(),
            Duration::from_millis(args.redis_deadline_poll_ms.max(1)),
        );
    }
    host.spawn_history_purge(Duration::from_secs(3600));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(
        db = %args.db.display(),
        redis = args.redis.is_some(),
        "tippen listening on http://{addr}"
    );
    println!("tippen listening on http://{addr}");
    if demo {
        println!("  dashboard: http://{addr}/dashboard?apiKey={DEMO_KEY}");
        println!("  demo page: http://{addr}/demo?apiKey={DEMO_KEY}");
    } else {
        println!("  dashboard: http://{addr}/dashboard (enter a site's secret key)");
    }

    let stopping = host.clone();
    let serve_config = ServeConfig::default()
        .with_max_connections(args.max_connections)
        .with_header_read_timeout(Duration::from_millis(args.header_timeout_ms.max(1)));
    tippen_axum::serve(listener, host.router(), serve_config, async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stopping.begin_shutdown();
    })
    .await
    .map_err(ServerError::Serve)?;
    host.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Every `every`, arms each site's timer at the site's next deadline as stored: with a store
/// shared by several replicas, deadlines written through another replica (one that may have
/// died since) are swept here too. Arming merges with what is armed (the earlier wins), and
/// a sweep that finds nothing due is a no-op.
fn follow_shared_deadlines(host: TippenHost, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let tippen = host.tippen().clone();
            let sites = match tippen.store().sites().await {
                Ok(sites) => sites,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the sites' deadlines; next try later");
                    continue;
                }
            };
            for site in sites {
                match tippen.next_deadline(&site.id).await {
                    Ok(Some(at)) => HostIo::arm(&host, &site.id, Deadline::AtMost(at)).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(site = %site.id, error = %e, "cannot read the next deadline")
                    }
                }
            }
        }
    });
}

/// Ctrl-C, or SIGTERM on unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
