//! `tippen-conformance`: runs the black-box suite against a server that is already running
//! (wrangler dev, cargo lambda watch, a deployed host) and exits non-zero when a case fails.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tippen_conformance::{Target, cases, run_cases_bounded};

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
    /// Run only the cases whose names contain one of these substrings (comma-separated).
    #[arg(long, env = "TIPPEN_CASES", value_delimiter = ',')]
    cases: Vec<String>,
    /// Leave out the cases whose names contain one of these substrings (comma-separated).
    #[arg(long, env = "TIPPEN_SKIP_CASES", value_delimiter = ',')]
    skip_cases: Vec<String>,
    /// Run at most this many cases at a time (all at once when absent).
    #[arg(long, env = "TIPPEN_CONCURRENCY")]
    concurrency: Option<usize>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
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
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
