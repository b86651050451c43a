//! `tippen-conformance`: runs the black-box suite against a server that is already running
//! (wrangler dev, cargo lambda watch, a deployed host) and exits non-zero when a case fails.
//!
//! With `--stand-ins <addr>` it first serves the stand-ins of the outbound services (video
//! provider, Slack webhook, IPinfo) on that address, where the host was pointed before it
//! started; `--with video,slack,enrichment` says which of them the host uses, and only then do
//! the cases that need them run (the others are listed as not run, never as passed).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tippen_conformance::{Capability, Outbound, StandIns, Target, cases, run_cases_bounded};

/// Runs tippen's HTTP + WebSocket conformance suite against a running host.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the host's HTTP contract, without a trailing slash.
    #[arg(long, env = "TIPPEN_BASE_URL")]
    base_url: String,
    /// Where dashboards connect, when not `{base-url}/ws/dashboard`; `apiKey=<key>` is appended.
    #[arg(long, env = "TIPPEN_DASHBOARD_WS_URL")]
    dashboard_ws_url: Option<String>,
    /// Key of the legacy single-key site.
    #[arg(long, env = "TIPPEN_LEGACY_KEY")]
    legacy_key: String,
    /// Public key of the main site.
    #[arg(long, env = "TIPPEN_PUBLIC_KEY")]
    public_key: String,
    /// Secret key of the main site.
    #[arg(long, env = "TIPPEN_SECRET_KEY")]
    secret_key: String,
    /// Public key of the other site (nothing else may write to it during the run).
    #[arg(long, env = "TIPPEN_OTHER_PUBLIC_KEY")]
    other_site_public_key: String,
    /// Secret key of the other site.
    #[arg(long, env = "TIPPEN_OTHER_SECRET_KEY")]
    other_site_secret_key: String,
    /// The server's visible-tab grace period, in milliseconds.
    #[arg(long, env = "TIPPEN_VISIBLE_GRACE_MS")]
    visible_grace_ms: u64,
    /// The server's hidden-tab grace period, in milliseconds.
    #[arg(long, env = "TIPPEN_HIDDEN_GRACE_MS")]
    hidden_grace_ms: u64,
    /// How long the server holds a tab after its exit beacon, in milliseconds (the core's
    /// default when the host does not set it).
    #[arg(long, env = "TIPPEN_LEAVE_LINGER_MS", default_value_t = 2000)]
    leave_linger_ms: u64,
    /// Run only the cases whose names contain one of these substrings (comma-separated).
    #[arg(long, env = "TIPPEN_CASES", value_delimiter = ',')]
    cases: Vec<String>,
    /// Leave out the cases whose names contain one of these substrings (comma-separated).
    #[arg(long, env = "TIPPEN_SKIP_CASES", value_delimiter = ',')]
    skip_cases: Vec<String>,
    /// Run at most this many cases at a time (all at once when absent).
    #[arg(long, env = "TIPPEN_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Where the visitor channel is, when not `{base-url}/ws/visitor`; `apiKey=<key>&visitorId=<id>`
    /// is appended.
    #[arg(long, env = "TIPPEN_VISITOR_WS_URL")]
    visitor_ws_url: Option<String>,
    /// Serve the stand-ins (video provider at /video, Slack webhook at /slack/hook, IPinfo at
    /// /ipinfo with the key `conformance_token`) on this address, e.g. 127.0.0.1:8805.
    #[arg(long, env = "TIPPEN_STAND_INS")]
    stand_ins: Option<SocketAddr>,
    /// The stand-ins the host was pointed at (comma-separated: video, slack, enrichment), and
    /// `history` when the host keeps visit history; the cases needing a stand-in run only when
    /// it is listed, the history cases check history with `history` and its 501s without.
    #[arg(long = "with", env = "TIPPEN_WITH", value_delimiter = ',')]
    with: Vec<String>,
    /// The request header through which a tracking request names the client's address, as
    /// the host reads it (X-Forwarded-For behind a trusted proxy, CF-Connecting-IP, ...);
    /// needed by the enrichment cases.
    #[arg(long, env = "TIPPEN_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// Public key of a site configured with `identitySecret` = tippen_conformance's
    /// `IDENTITY_SECRET` (runs the verified-identity cases).
    #[arg(long, env = "TIPPEN_VERIFIED_PUBLIC_KEY")]
    verified_public_key: Option<String>,
    /// Public key of a site configured with `"rateLimitPerKey":1` (runs the rate-limit cases).
    #[arg(long, env = "TIPPEN_RATE_LIMITED_PUBLIC_KEY")]
    rate_limited_public_key: Option<String>,
    /// Public key of a site configured with `"maxSockets":4,"maxSocketsPerAddress":2,
    /// "snapshotsPerMinute":12` (runs the socket-quota cases, with --quota-secret-key and
    /// --client-ip-header).
    #[arg(long, env = "TIPPEN_QUOTA_PUBLIC_KEY", requires = "quota_secret_key")]
    quota_public_key: Option<String>,
    /// Secret key of that site.
    #[arg(long, env = "TIPPEN_QUOTA_SECRET_KEY", requires = "quota_public_key")]
    quota_secret_key: Option<String>,
    /// Public key of a site for the alert case (its rules and destinations are set through the
    /// API), with --alert-secret-key.
    #[arg(long, env = "TIPPEN_ALERT_PUBLIC_KEY", requires = "alert_secret_key")]
    alert_public_key: Option<String>,
    /// Secret key of that site.
    #[arg(long, env = "TIPPEN_ALERT_SECRET_KEY", requires = "alert_public_key")]
    alert_secret_key: Option<String>,
    /// The host's operator token (`TIPPEN_OPERATOR_TOKEN`): the operator and role cases run.
    #[arg(long, env = "TIPPEN_OPERATOR_TOKEN")]
    operator_token: Option<String>,
    /// How long a revocation, a disabled or re-enabled site may go unseen by some requests (a
    /// host whose instances cache sites: Lambda's `TIPPEN_SITE_CACHE_MS`), in milliseconds;
    /// the cases check such a change this long after it.
    #[arg(long, env = "TIPPEN_REVOCATION_DELAY_MS", default_value_t = 0)]
    revocation_delay_ms: u64,
    /// Fail when a selected case is not run for want of a capability.
    #[arg(long, env = "TIPPEN_REQUIRE_ALL")]
    require_all: bool,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let known = [
        Capability::VideoProvider,
        Capability::Slack,
        Capability::Enrichment,
    ];
    // `history` is the host's own (a history store), not a stand-in.
    let history = args.with.iter().any(|n| n == "history");
    for name in args.with.iter().filter(|n| *n != "history") {
        if !known.iter().any(|c| c.name() == name) {
            eprintln!("--with: unknown capability {name:?} (video, slack, enrichment, history)");
            return ExitCode::FAILURE;
        }
    }
    let with = |c: Capability| args.with.iter().any(|n| n == c.name());
    if args.with.iter().any(|n| n != "history") && args.stand_ins.is_none() {
        eprintln!("--with {:?} needs --stand-ins <addr>", args.with);
        return ExitCode::FAILURE;
    }
    if with(Capability::Enrichment) && args.client_ip_header.is_none() {
        eprintln!("--with enrichment needs --client-ip-header");
        return ExitCode::FAILURE;
    }
    let stand_ins = match args.stand_ins {
        Some(addr) => match StandIns::start(addr).await {
            Ok(s) => {
                println!("stand-ins on {}:\n{}\n", s.base_url(), s.host_settings());
                Some(s)
            }
            Err(e) => {
                eprintln!("cannot serve the stand-ins on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let outbound = Outbound {
        stand_ins,
        video_provider: with(Capability::VideoProvider),
        slack: with(Capability::Slack),
        enrichment: with(Capability::Enrichment),
        client_ip_header: args.client_ip_header.clone(),
    };
    let target = Target {
        base_url: args.base_url.trim_end_matches('/').to_owned(),
        dashboard_ws_url: args.dashboard_ws_url,
        legacy_key: args.legacy_key,
        public_key: args.public_key,
        secret_key: args.secret_key,
        other_site_public_key: args.other_site_public_key,
        other_site_secret_key: args.other_site_secret_key,
        visible_grace: Duration::from_millis(args.visible_grace_ms),
        hidden_grace: Duration::from_millis(args.hidden_grace_ms),
        leave_linger: Duration::from_millis(args.leave_linger_ms),
        revocation_delay: Duration::from_millis(args.revocation_delay_ms),
        visitor_ws_url: args.visitor_ws_url,
        outbound,
        verified_site_public_key: args.verified_public_key,
        rate_limited_site_public_key: args.rate_limited_public_key,
        quota_site_keys: args.quota_public_key.zip(args.quota_secret_key),
        alert_site_keys: args.alert_public_key.zip(args.alert_secret_key),
        operator_token: args.operator_token,
        history,
    };
    let selected: Vec<_> = cases()
        .into_iter()
        .filter(|c| args.cases.is_empty() || args.cases.iter().any(|s| c.name.contains(s)))
        .filter(|c| !args.skip_cases.iter().any(|s| c.name.contains(s)))
        .collect();
    if selected.is_empty() {
        eprintln!("no case matches {:?}", args.cases);
        return ExitCode::FAILURE;
    }
    let report = run_cases_bounded(&target, selected, args.concurrency.unwrap_or(usize::MAX)).await;
    println!("{report}");
    let explicitly_chosen = !args.cases.is_empty();
    if !report.not_run.is_empty() && (args.require_all || explicitly_chosen) {
        eprintln!(
            "{} selected case(s) not run: the host was not pointed at what they need",
            report.not_run.len()
        );
        return ExitCode::FAILURE;
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
