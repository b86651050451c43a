//! Black-box conformance suite for tippen hosts.
//!
//! Every tippen host (axum, AWS Lambda, Cloudflare Workers) serves one HTTP and
//! WebSocket contract, written down in `docs/contract.md` (Part A of the predecessor's protocol
//! byte for byte, plus tippen's Part B additions). This crate checks that contract from the
//! outside, in the manner of juniper's `run_http_test_suite`: it knows nothing of the server's
//! internals, it only talks HTTP and WebSocket to a base URL.
//!
//! # What the server under test must have
//!
//! Three sites, whose keys go into a [`Target`]:
//!
//! - a **legacy** single-key site ([`Target::legacy_key`]): its one key is both public and
//!   secret, the way the predecessor's clients use it;
//! - the **main** site ([`Target::public_key`], [`Target::secret_key`]): most cases track and
//!   watch visitors here, concurrently;
//! - the **other** site ([`Target::other_site_public_key`], [`Target::other_site_secret_key`]):
//!   only the sequence-number case writes to it, so that one dashboard there sees every broadcast
//!   number exactly once, in order; the isolation case only reads it. Nothing else may write to
//!   the other site while the suite runs.
//!
//! Presence timings are short for tests (for example a visible grace of 2 s and a hidden grace
//! of 5 s) and told to the suite in [`Target::visible_grace`] and [`Target::hidden_grace`].
//! An expiry must be seen no earlier than 0.3 s before its grace period ends and no later than
//! 1.5 s after; the hidden grace must exceed the visible grace by at least 2 s so the two can be
//! told apart. The server's heartbeat interval does not matter: the suite sends its own.
//!
//! The sites need not be empty: every case makes its own visitor ids with a random suffix and
//! looks only at those. Cases are independent and run concurrently; the ones that wait for
//! expiry wait side by side, so the whole suite takes a little more than the hidden grace.
//!
//! # Outbound services: the stand-ins
//!
//! Some cases need the host to reach outbound services: `POST /api/video-call` a video
//! provider, support alerts a Slack webhook, enrichment IPinfo. The suite serves stand-ins of
//! all three itself, on one port ([`StandIns`]; its module documentation lists the paths and
//! the host settings), and the host under test is pointed at them before it starts. A
//! [`Target`] declares what its host uses in [`Target::outbound`]; a case needing something
//! not declared is not run and is listed in [`Report::not_run`] (never counted as passed).
//! Enrichment also needs [`Outbound::client_ip_header`], the header through which the suite
//! makes a request come from a public address as the host reads client addresses.
//!
//! The visitor channel is reached at `{base_url}/ws/visitor` unless
//! [`Target::visitor_ws_url`] says otherwise.
//!
//! # Running it from a host's integration test
//!
//! A host starts its server on a loopback port with the three sites and short timings, then
//! calls [`run_all`] and asserts on the [`Report`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use tippen_conformance::{Target, run_all};
//!
//! # async fn host_test(port: u16) {
//! // ... start the host's server on 127.0.0.1:{port} with three sites and these timings ...
//! let target = Target {
//!     base_url: format!("http://127.0.0.1:{port}"),
//!     dashboard_ws_url: None,
//!     legacy_key: "legacy-key".into(),
//!     public_key: "pk_main".into(),
//!     secret_key: "sk_main".into(),
//!     other_site_public_key: "pk_other".into(),
//!     other_site_secret_key: "sk_other".into(),
//!     visitor_ws_url: None,
//!     visible_grace: Duration::from_secs(2),
//!     hidden_grace: Duration::from_secs(5),
//!     leave_linger: Duration::from_secs(1),
//!     outbound: Default::default(),
//!     verified_site_public_key: None,
//!     rate_limited_site_public_key: None,
//!     quota_site_keys: None,
//!     alert_site_keys: None,
//!     operator_token: None,
//!     history: true,
//!     revocation_delay: Duration::ZERO,
//! };
//! let report = run_all(&target).await;
//! println!("{report}");
//! report.assert_passed();
//! # }
//! ```
//!
//! A host whose server runs outside the test process (wrangler dev, cargo lambda watch) runs
//! the suite with the `tippen-conformance` binary instead, configured by environment
//! variables (`tippen-conformance --help` lists them); it exits non-zero when a case fails.
//!
//! In a tokio test this sits inside `#[tokio::test(flavor = "multi_thread")]`. [`cases`] lists
//! the cases by name and [`run_cases`] runs a chosen subset, which helps while a host is being
//! brought up; [`run_cases_bounded`] runs them at most N at a time, for hosts whose local
//! stand-ins (an emulated database serving one call at a time) cannot take the whole suite's
//! opening burst. The binary has the same choices (`TIPPEN_CASES`, `TIPPEN_SKIP_CASES`,
//! `TIPPEN_CONCURRENCY`), and serves the stand-ins with `--stand-ins <addr>` (`--with
//! video,slack,enrichment`, `--client-ip-header`, `--require-all`).
//!
//! # Failures
//!
//! A failing check is a [`Failure`] that says what was sent, what the contract expects and what
//! came back (status, the headers that matter, the body). The suite never panics on an answer
//! it did not expect; only [`Report::assert_passed`] panics, listing every failing case.
//!
//! Only `http://` base URLs are supported (the WebSocket client is built without TLS): the suite
//! is meant for servers on this machine.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cases;
mod dashboard;
mod http;
mod socket;
mod stand_ins;
mod wire;

pub use stand_ins::{ENRICHMENT_DELAY, IPINFO_TOKEN, StandIns};

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};

/// Where the server under test listens, its keys, and its presence timings.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL without a trailing slash, for example `http://127.0.0.1:3000`.
    pub base_url: String,
    /// Where dashboards connect, when that is not `{base_url}/ws/dashboard` (a host whose
    /// WebSockets are served elsewhere, such as API Gateway's WebSocket API): a `ws://` URL,
    /// possibly with a query, to which the suite appends `apiKey=<key>`. `None` (the usual
    /// case): derived from [`base_url`](Self::base_url).
    pub dashboard_ws_url: Option<String>,
    /// Where the visitor channel is, when not `{base_url}/ws/visitor` (API Gateway's WebSocket
    /// API): a `ws://` URL, possibly with a query, to which the suite appends
    /// `apiKey=<key>&visitorId=<id>`. `None`: derived from [`base_url`](Self::base_url).
    pub visitor_ws_url: Option<String>,
    /// Key of the legacy single-key site: accepted wherever a public or a secret key is.
    pub legacy_key: String,
    /// Public (tracking) key of the main site.
    pub public_key: String,
    /// Secret (dashboard) key of the main site.
    pub secret_key: String,
    /// Secret key of the other site; only the sequence-number case writes to that site.
    pub other_site_secret_key: String,
    /// Public key of the other site.
    pub other_site_public_key: String,
    /// How long the server keeps a visible tab after its last event.
    pub visible_grace: Duration,
    /// How long the server keeps a hidden tab after its last event.
    pub hidden_grace: Duration,
    /// How long the server holds a tab after its exit beacon before dropping it
    /// (`TIPPEN_LEAVE_LINGER_MS`; the core's default is 2 s).
    pub leave_linger: Duration,
    /// The outbound services the host was pointed at (the suite's [`StandIns`]); the cases
    /// that need one run only when it is declared here.
    pub outbound: Outbound,
    /// Public key of a site configured with the identity secret [`IDENTITY_SECRET`] (verified
    /// in-app identities); the cases of [`Capability::VerifiedIdentities`] run only when it is
    /// given. Only those cases write to that site.
    pub verified_site_public_key: Option<String>,
    /// Public key of a site configured with its own per-key rate limit of
    /// [`RATE_LIMITED_SITE_PER_SECOND`] requests a second (`rateLimitPerKey` in
    /// `TIPPEN_SITES`, bursts of 4); the cases of [`Capability::RateLimitedSite`] run only when
    /// it is given. Only those cases use that site.
    pub rate_limited_site_public_key: Option<String>,
    /// Public and secret key of a site configured with its own small socket quotas
    /// ([`QUOTA_SITE_MAX_SOCKETS`], [`QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS`],
    /// [`QUOTA_SITE_SNAPSHOTS_PER_MINUTE`]: `maxSockets`, `maxSocketsPerAddress`,
    /// `snapshotsPerMinute` in `TIPPEN_SITES`); the cases of [`Capability::QuotaSite`] run
    /// only when it is given (and [`Outbound::client_ip_header`], through which every socket
    /// they open comes from an address of its own). Only those cases use that site.
    pub quota_site_keys: Option<(String, String)>,
    /// Public and secret key of a site for the alert case (no configuration of its own: the
    /// case sets its rules and destinations through the API); the case of
    /// [`Capability::AlertSite`] runs only when it is given, with [`Capability::Enrichment`].
    /// Only that case uses the site.
    pub alert_site_keys: Option<(String, String)>,
    /// The operator token the host was configured with (`TIPPEN_OPERATOR_TOKEN`); the cases
    /// of [`Capability::Operator`] (sites and keys at runtime, member roles, the audit log)
    /// run only when it is given. They create sites of their own.
    pub operator_token: Option<String>,
    /// The host keeps visit history (its `Tippen` has a history store: `with_history`): the
    /// history cases check visits, companies, analytics, CSV and erasure. `false`: they check
    /// that the history routes answer `501 {"error":…}` instead. The runner's
    /// `--with history` (`TIPPEN_WITH=…,history`) sets it.
    pub history: bool,
    /// How long after its answer a change that takes access away (a revoked key or member
    /// token, a disabled site) or gives it back (a site enabled again) may still be unseen by
    /// some requests: a host whose instances each keep sites for a while (Lambda's
    /// `TIPPEN_SITE_CACHE_MS`). The cases check such a change this long after its answer,
    /// when every request must see it (before, one request may see it and the next, on another
    /// instance, not). [`Duration::ZERO`] (every host that keeps one view of its sites): at
    /// once.
    pub revocation_delay: Duration,
}

/// The per-key rate limit (requests a second, bursts of 4) the site of
/// [`Target::rate_limited_site_public_key`] must be configured with (`"rateLimitPerKey":1`).
pub const RATE_LIMITED_SITE_PER_SECOND: u32 = 1;

/// The most open sockets the site of [`Target::quota_site_keys`] must allow
/// (`"maxSockets":4`).
pub const QUOTA_SITE_MAX_SOCKETS: usize = 4;

/// The most open sockets from one address the site of [`Target::quota_site_keys`] must allow
/// (`"maxSocketsPerAddress":2`).
pub const QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS: usize = 2;

/// The `GET_VISITORS` a minute per dashboard the site of [`Target::quota_site_keys`] must
/// allow (`"snapshotsPerMinute":12`).
pub const QUOTA_SITE_SNAPSHOTS_PER_MINUTE: usize = 12;

/// The one origin the site of [`Target::other_site_secret_key`] must list as its dashboard
/// origins (`"dashboardOrigins":["https://dash.conformance.test"]`): pages of it may open that
/// site's dashboard socket, pages of other origins may not.
pub const OTHER_SITE_DASHBOARD_ORIGIN: &str = "https://dash.conformance.test";

/// The operator token the test harnesses configure their hosts with
/// (`TIPPEN_OPERATOR_TOKEN`) and pass as [`Target::operator_token`].
pub const OPERATOR_TOKEN: &str = "op_conformance_0123456789abcdef0123456789";

/// The identity secret the site of [`Target::verified_site_public_key`] must be configured
/// with (`identitySecret` in `TIPPEN_SITES`).
pub const IDENTITY_SECRET: &str = "idv_conformance_0123456789abcdef";

impl Target {
    /// True when the host was configured with `capability` (see [`Outbound`]).
    pub fn has(&self, capability: Capability) -> bool {
        let o = &self.outbound;
        let stand_ins = o.stand_ins.is_some();
        match capability {
            Capability::VideoProvider => stand_ins && o.video_provider,
            Capability::Slack => stand_ins && o.slack,
            Capability::Enrichment => stand_ins && o.enrichment && o.client_ip_header.is_some(),
            Capability::VerifiedIdentities => self.verified_site_public_key.is_some(),
            Capability::RateLimitedSite => self.rate_limited_site_public_key.is_some(),
            Capability::QuotaSite => self.quota_site_keys.is_some() && o.client_ip_header.is_some(),
            Capability::AlertSite => {
                self.alert_site_keys.is_some() && self.has(Capability::Enrichment)
            }
            Capability::Operator => self.operator_token.is_some(),
        }
    }
}

/// The outbound services a host under test was pointed at: all of them at the suite's
/// [`StandIns`] (see there for the host settings). A case that needs one whose flag is off is
/// reported as not run ([`Report::not_run`]), never as passed.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// The stand-ins the suite serves (started by the runner before the host is asked).
    pub stand_ins: Option<StandIns>,
    /// `TIPPEN_VIDEO_PROVIDER_URL` points at [`StandIns::video_provider_url`].
    pub video_provider: bool,
    /// `TIPPEN_SLACK_WEBHOOK_URL` points at [`StandIns::slack_webhook_url`].
    pub slack: bool,
    /// The enrichment provider is the IPinfo stand-in ([`StandIns::ipinfo_base_url`], key
    /// [`IPINFO_TOKEN`]).
    pub enrichment: bool,
    /// A request header through which the suite can make a tracking request come from a
    /// public address, as the host reads its clients' addresses: `X-Forwarded-For` behind a
    /// trusted proxy (axum), `CF-Connecting-IP` (`wrangler dev` passes it through), a header
    /// the test's API Gateway stand-in turns into `sourceIp` (Lambda). Needed for
    /// enrichment.
    pub client_ip_header: Option<String>,
}

/// What some cases need the host to be configured with: an outbound service, or a site
/// configured a particular way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// The video provider (`POST /api/video-call`).
    VideoProvider,
    /// The Slack webhook (support alerts).
    Slack,
    /// Company enrichment through IPinfo, and a header carrying the client's address.
    Enrichment,
    /// A site verifying in-app identities with [`IDENTITY_SECRET`]
    /// ([`Target::verified_site_public_key`]).
    VerifiedIdentities,
    /// A site with its own per-key rate limit of [`RATE_LIMITED_SITE_PER_SECOND`]
    /// ([`Target::rate_limited_site_public_key`]).
    RateLimitedSite,
    /// A site with its own small socket quotas ([`Target::quota_site_keys`]), and a header
    /// carrying the client's address ([`Outbound::client_ip_header`]).
    QuotaSite,
    /// A site of the alert case's own ([`Target::alert_site_keys`]), company enrichment
    /// ([`Capability::Enrichment`]), and alert destinations on the loopback stand-ins allowed
    /// (`TIPPEN_ALERT_PRIVATE_DESTINATIONS=1`).
    AlertSite,
    /// The operator API ([`Target::operator_token`]).
    Operator,
}

impl Capability {
    /// The capability's name in the runner's `--with` list.
    pub fn name(self) -> &'static str {
        match self {
            Capability::VideoProvider => "video",
            Capability::Slack => "slack",
            Capability::Enrichment => "enrichment",
            Capability::VerifiedIdentities => "verified-identities",
            Capability::RateLimitedSite => "rate-limited-site",
            Capability::QuotaSite => "quota-site",
            Capability::AlertSite => "alert-site",
            Capability::Operator => "operator",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::VideoProvider => "the video provider stand-in (--with video)",
            Capability::Slack => "the Slack webhook stand-in (--with slack)",
            Capability::Enrichment => {
                "the IPinfo stand-in and a client address header (--with enrichment, --client-ip-header)"
            }
            Capability::VerifiedIdentities => {
                "a site with the identity secret IDENTITY_SECRET (--verified-public-key)"
            }
            Capability::RateLimitedSite => {
                "a site with rateLimitPerKey RATE_LIMITED_SITE_PER_SECOND (--rate-limited-public-key)"
            }
            Capability::AlertSite => {
                "a site for the alert case (--alert-public-key, --alert-secret-key), enrichment, and TIPPEN_ALERT_PRIVATE_DESTINATIONS=1 on the host"
            }
            Capability::Operator => "the operator token (--operator-token)",
            Capability::QuotaSite => {
                "a site with maxSockets 4, maxSocketsPerAddress 2, snapshotsPerMinute 12 (--quota-public-key, --quota-secret-key) and a client address header (--client-ip-header)"
            }
        })
    }
}

/// One named check of the contract.
pub struct Case {
    /// Short snake_case name, unique within [`cases`].
    pub name: &'static str,
    /// The outbound service the case needs the host to be configured with, if any.
    pub needs: Option<Capability>,
    run: fn(&Target) -> BoxFuture<'_, Result<(), Failure>>,
}

impl Case {
    /// Runs this case against `target`.
    pub async fn run(&self, target: &Target) -> Result<(), Failure> {
        (self.run)(target).await
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish()
    }
}

/// Why a case failed: what was sent, what the contract expects, what came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The server answered, but not as the contract says.
    #[error("sent: {sent}\n  expected: {expected}\n  got: {got}")]
    Mismatch {
        /// The request or message that was sent (or the step of the case).
        sent: String,
        /// What the contract expects.
        expected: String,
        /// What came back.
        got: String,
    },
    /// A request could not be sent or its answer could not be read.
    #[error("sent: {sent}\n  transport error: {error}")]
    Transport {
        /// The request or message that was being sent.
        sent: String,
        /// The client library's error, as text.
        error: String,
    },
    /// An expected WebSocket message did not arrive in time.
    #[error(
        "sent: {sent}\n  expected within {waited:?}: {expected}\n  got nothing matching; received meanwhile: {seen}"
    )]
    Timeout {
        /// What had been sent before waiting.
        sent: String,
        /// The message that was awaited.
        expected: String,
        /// How long the case waited.
        waited: Duration,
        /// The other messages received while waiting (possibly shortened).
        seen: String,
    },
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: &'static str,
    /// `Ok` when every check of the case passed.
    pub outcome: Result<(), Failure>,
    /// Wall time the case took.
    pub elapsed: Duration,
}

/// The outcome of a run: one [`CaseResult`] per case, in [`cases`] order.
///
/// Its `Display` is a table of every case with its result and time, followed by the failure
/// messages.
#[derive(Debug)]
pub struct Report {
    /// Every case's outcome.
    pub results: Vec<CaseResult>,
    /// The cases given but not run, because the target lacks what they need.
    pub not_run: Vec<(&'static str, Capability)>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Report {
    /// True when every case passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.outcome.is_ok())
    }

    /// Panics unless every case given was run and passed.
    #[track_caller]
    pub fn assert_all_ran_and_passed(&self) {
        self.assert_passed();
        if !self.not_run.is_empty() {
            panic!("cases not run for want of a capability\n\n{self}");
        }
    }

    /// The failing cases with their failures.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &Failure)> {
        self.results
            .iter()
            .filter_map(|r| r.outcome.as_ref().err().map(|f| (r.name, f)))
    }

    /// Panics, listing every failing case and why, unless every case passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            let failing = self.failures().count();
            panic!(
                "{failing} of {} conformance cases failed\n\n{self}",
                self.results.len()
            );
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(f, "{:<width$}  result  time", "case")?;
        for r in &self.results {
            let result = if r.outcome.is_ok() { "ok" } else { "FAILED" };
            writeln!(
                f,
                "{:<width$}  {result:<6}  {:>5} ms",
                r.name,
                r.elapsed.as_millis()
            )?;
        }
        let failed = self.failures().count();
        writeln!(
            f,
            "{} passed, {failed} failed in {:.1} s",
            self.results.len() - failed,
            self.elapsed.as_secs_f64()
        )?;
        for (name, needs) in &self.not_run {
            writeln!(f, "not run: {name} (needs {needs})")?;
        }
        for (name, failure) in self.failures() {
            writeln!(f, "\n--- {name}\n  {failure}")?;
        }
        Ok(())
    }
}

/// Every case of the suite, in a stable order.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// Runs every case of [`cases`] concurrently against `target` and collects the outcomes (the
/// cases needing a capability the target lacks are listed in [`Report::not_run`]).
pub async fn run_all(target: &Target) -> Report {
    run_cases(target, cases()).await
}

/// Runs the given cases concurrently against `target` and collects the outcomes.
pub async fn run_cases(target: &Target, cases: Vec<Case>) -> Report {
    run_cases_bounded(target, cases, usize::MAX).await
}

/// Runs the given cases against `target`, at most `limit` at a time (in the given order,
/// each starting as soon as an earlier one finishes), and collects the outcomes in the given
/// order. For hosts whose backing services serve fewer requests at once than the whole suite
/// makes (a local emulator): every case still runs, with the same expectations; each case's
/// time counts from its own start.
pub async fn run_cases_bounded(target: &Target, cases: Vec<Case>, limit: usize) -> Report {
    let start = Instant::now();
    let (cases, lacking): (Vec<Case>, Vec<Case>) = cases
        .into_iter()
        .partition(|c| c.needs.is_none_or(|need| target.has(need)));
    let not_run = lacking
        .iter()
        .filter_map(|c| c.needs.map(|need| (c.name, need)))
        .collect();
    let mut results: Vec<(usize, CaseResult)> = stream::iter(cases.iter().enumerate())
        .map(|(index, case)| async move {
            let started = Instant::now();
            let outcome = case.run(target).await;
            let result = CaseResult {
                name: case.name,
                outcome,
                elapsed: started.elapsed(),
            };
            (index, result)
        })
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    results.sort_by_key(|(index, _)| *index);
    let results = results.into_iter().map(|(_, result)| result).collect();
    Report {
        results,
        not_run,
        elapsed: start.elapsed(),
    }
}
