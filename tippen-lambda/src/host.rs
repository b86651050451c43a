//! [`LambdaHost`]: the core, the DynamoDB store and the fan-out, shared by the three
//! functions. Everything here runs inside one invocation: nothing is left running after the
//! handler returns (Lambda freezes the process then).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use tippen_core::api::{ApiError, RequestContext, SocketRole};
use tippen_core::host::{self, HostIo};
use tippen_core::support::SupportNotice;
use tippen_core::{
    Broadcast, Deadline, Effects, LookupRequest, ServiceError, SiteId, Store, StoreError,
    SystemClock, Timestamp, Tippen, VisitorPush,
};

use crate::config::{ConfigError, LambdaConfig};
#[cfg(feature = "enrich")]
use crate::enrich_fn::Enrichment;
use crate::fanout::Fanout;
#[cfg(feature = "outbound")]
use crate::outbound::Outbound;
use crate::store::DynamoStore;

/// Why a function could not start or an operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HostError {
    /// The environment is incomplete or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A core operation failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// An AWS call outside the store failed.
    #[error("AWS call failed: {0}")]
    Aws(String),
}

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

/// tippen on Lambda: the core over DynamoDB, and the fan-out to API Gateway connections.
#[derive(Clone, Debug)]
pub struct LambdaHost {
    tippen: Arc<Tippen>,
    store: Arc<DynamoStore>,
    fanout: Fanout,
    lambda: aws_sdk_lambda::Client,
    config: Arc<LambdaConfig>,
    site_ids: Arc<std::sync::Mutex<Option<CachedSiteIds>>>,
    /// The video provider's and Slack's HTTPS client (None when it could not be built).
    #[cfg(feature = "outbound")]
    outbound: Option<Arc<Outbound>>,
    /// The enrichment provider and this instance's lookup bookkeeping (the enrichment
    /// function; None without `TIPPEN_ENRICHMENT_PROVIDER`).
    #[cfg(feature = "enrich")]
    enrichment: Option<Arc<Enrichment>>,
    /// Per site, the end of the window of the last sweep invocation this instance asked for
    /// ([`LambdaHost::arm`]): a deadline within it needs no other.
    sweeps_asked: Arc<std::sync::Mutex<std::collections::HashMap<SiteId, Timestamp>>>,
    /// When this instance last purged history by retention ([`crate::retention`]).
    pub(crate) history_purged: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How long past the deadline an asked-for sweep invocation stays (more deadlines of the site
/// falling due meanwhile are swept by it too).
const ASKED_SWEEP_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// A write's deadline this much past the leave linger still counts as an exit beacon's (the
/// request's own latency); a later one (a tab's grace, seconds to minutes) is left to the
/// scheduled runs, or every tracking call would invoke the sweep function.
const LINGER_SLACK: std::time::Duration = std::time::Duration::from_millis(250);

/// The site ids as read at an instant.
type CachedSiteIds = (std::time::Instant, Vec<SiteId>);

impl LambdaHost {
    /// Reads the environment, builds the clients and registers the configured sites (cold
    /// start).
    pub async fn from_env() -> Result<Self, HostError> {
        let config = LambdaConfig::from_env()?;
        let sdk = sdk_config().await;
        let host = Self::new(&sdk, config);
        for site in &host.config.sites {
            host.register_site(site).await?;
        }
        Ok(host)
    }

    /// Stores a configured site unless it is stored already as it is (every cold start of
    /// every function does this: it must be cheap and must tolerate racing instances).
    async fn register_site(&self, site: &tippen_core::Site) -> Result<(), HostError> {
        let mut attempt = 0;
        loop {
            let stored = self.store.site_by_key(&site.secret_key_hash).await?;
            if stored.as_ref() == Some(site) {
                return Ok(());
            }
            match self.tippen.put_site(site).await {
                Ok(()) => return Ok(()),
                // Another instance registering at the same moment cancels our transaction.
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(site = %site.id, error = %e, "site registration raced; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A host over the given SDK configuration and settings (registers no site).
    pub fn new(sdk: &aws_config::SdkConfig, config: LambdaConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let history = crate::history::from_config(&dynamodb, &config);
        let store = Arc::new(
            DynamoStore::new(dynamodb, &config.table).with_site_cache(config.site_cache_ttl),
        );
        let management = aws_sdk_apigatewaymanagement::Client::from_conf(
            aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                .endpoint_url(&config.ws_endpoint)
                .build(),
        );
        let fanout = Fanout::new(management, store.clone(), config.fanout_concurrency);
        let mut tippen = Tippen::new(store.clone(), Arc::new(SystemClock), config.core.clone());
        if let Some(history) = history {
            tippen = tippen.with_history(history);
        }
        #[cfg(feature = "outbound")]
        if let Some(url) = &config.video_provider_url {
            tippen =
                tippen.with_video_provider(Arc::new(tippen_core::video::CustomerConnect::new(url)));
        }
        let tippen = Arc::new(tippen);
        #[cfg(feature = "outbound")]
        let outbound = Outbound::new(&config).map(Arc::new);
        #[cfg(feature = "enrich")]
        let enrichment = config
            .enrichment
            .as_ref()
            .and_then(|provider| match provider.build() {
                Ok(provider) => Some(Arc::new(Enrichment::new(provider))),
                Err(e) => {
                    tracing::error!(error = %e, "enrichment provider unusable");
                    None
                }
            });
        LambdaHost {
            tippen,
            store,
            fanout,
            lambda: aws_sdk_lambda::Client::new(sdk),
            config: Arc::new(config),
            site_ids: Arc::default(),
            #[cfg(feature = "outbound")]
            outbound,
            #[cfg(feature = "enrich")]
            enrichment,
            sweeps_asked: Arc::default(),
            history_purged: Arc::default(),
        }
    }

    /// The core service.
    pub fn tippen(&self) -> &Arc<Tippen> {
        &self.tippen
    }

    /// The store.
    pub fn store(&self) -> &Arc<DynamoStore> {
        &self.store
    }

    /// The fan-out.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// The settings.
    pub fn config(&self) -> &LambdaConfig {
        &self.config
    }

    /// The outbound HTTPS client (None when it could not be built).
    #[cfg(feature = "outbound")]
    pub fn outbound(&self) -> Option<&Outbound> {
        self.outbound.as_deref()
    }

    /// The enrichment provider and lookup bookkeeping (None without a provider).
    #[cfg(feature = "enrich")]
    pub fn enrichment(&self) -> Option<&Enrichment> {
        self.enrichment.as_deref()
    }

    /// The Lambda client (asynchronous invocations: the WebSocket function's greeting, the
    /// enrichment function).
    pub fn lambda(&self) -> &aws_sdk_lambda::Client {
        &self.lambda
    }

    /// Answers one HTTP request through the core — its outbound call (the video provider) over
    /// HTTPS when built with feature `outbound` — and applies its effects before returning (the
    /// invocation ends with the response): dashboard messages, visitor pushes, enrichment
    /// lookups handed to the enrichment function ([`crate::enrich`]; the answer never waits
    /// for the provider) and Slack notifications. `source_ip` is API Gateway's
    /// `requestContext` source address, never a header.
    pub async fn handle_http(
        &self,
        req: http::Request<Bytes>,
        source_ip: Option<IpAddr>,
    ) -> http::Response<Bytes> {
        let ctx = RequestContext {
            client_ip: source_ip,
            place: self
                .config
                .geo_headers
                .and_then(|geo| tippen_core::history::Place::from_headers(req.headers(), geo)),
            ..RequestContext::default()
        };
        #[cfg(feature = "outbound")]
        let effects = match &self.outbound {
            Some(outbound) => {
                self.tippen
                    .handle_with(req, &ctx, outbound.transport())
                    .await
            }
            None => self.tippen.handle(req, &ctx).await,
        };
        #[cfg(not(feature = "outbound"))]
        let effects = self.tippen.handle(req, &ctx).await;
        let answer = self.apply(effects, None).await;
        // The core answers every request; a missing answer would be its bug, not the client's.
        answer.response.unwrap_or_else(|| {
            let e = ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "no response");
            e.into_response()
        })
    }

    /// Performs `effects` through [`host::apply`] (this host's [`HostIo`]): `origin` is the
    /// connection whose frame caused them (their visitor pushes skip it). Returns the
    /// response or reply to send.
    pub async fn apply(&self, effects: Effects, origin: Option<&str>) -> host::Answer {
        host::apply(&self.tippen, self, effects, origin).await
    }

    /// The deadline work of every site (the scheduled function): sweeps each site until
    /// nothing more is due, applying what each sweep asks for, and delivers the support
    /// alerts of the pass to Slack at once (also when a site failed). With a `window`, the
    /// invocation then stays for the deadlines the pass found within it: it sleeps until the
    /// earliest, sweeps that site again, and so on, so those removals reach dashboards when
    /// they are due instead of at the next scheduled run. Only sites with such a deadline are
    /// read again; a deadline set meanwhile by another invocation is the next run's (with
    /// graces longer than the window, none falls within it). Returns how many messages were
    /// sent.
    pub async fn sweep_all(&self, window: std::time::Duration) -> Result<usize, HostError> {
        let sites = self.site_ids().await?;
        self.sweep_sites(sites, window).await
    }

    /// The deadline work of `sites` only, as [`sweep_all`](Self::sweep_all) does it for every
    /// site (an invocation asked for by [`arm`](HostIo::arm) for one site's near deadline).
    pub async fn sweep_sites(
        &self,
        sites: Vec<SiteId>,
        window: std::time::Duration,
    ) -> Result<usize, HostError> {
        let until = self.tippen.now().plus(window);
        let mut notices = Vec::new();
        let mut sent = 0;
        let mut waiting = Vec::new();
        let mut first_pass = Ok(());
        for site in sites {
            match self.sweep_site(&site, &mut notices).await {
                Ok((n, next)) => {
                    sent += n;
                    waiting.extend(next.filter(|at| *at <= until).map(|at| (at, site)));
                }
                Err(e) => {
                    first_pass = Err(e);
                    break;
                }
            }
        }
        HostIo::notify(self, std::mem::take(&mut notices)).await;
        first_pass?;
        while let Some(index) = (0..waiting.len()).min_by_key(|&i| waiting[i].0) {
            let (at, site) = waiting.swap_remove(index);
            let now = self.tippen.now();
            if at > now {
                tokio::time::sleep(at.since(now)).await;
            }
            let swept = self.sweep_site(&site, &mut notices).await;
            HostIo::notify(self, std::mem::take(&mut notices)).await;
            let (n, next) = swept?;
            sent += n;
            waiting.extend(next.filter(|at| *at <= until).map(|at| (at, site)));
        }
        Ok(sent)
    }

    /// Sweeps one site until nothing more is due, applying each sweep's effects but keeping
    /// their support alerts in `notices` (one Slack delivery for the pass): the messages
    /// sent, and the site's next deadline.
    async fn sweep_site(
        &self,
        site: &SiteId,
        notices: &mut Vec<SupportNotice>,
    ) -> Result<(usize, Option<Timestamp>), HostError> {
        // One cheap index read decides whether the site has anything due.
        let due = self.tippen.next_deadline(site).await?;
        if due.is_none_or(|d| d > self.tippen.now()) {
            return Ok((0, due));
        }
        let mut sent = 0;
        // Bounded: a sweep returns a due deadline only while more batches are due.
        for _ in 0..100 {
            let mut swept = self.tippen.handle_timeout(site).await?;
            let next = swept.deadline.and_then(Deadline::at);
            sent += swept.broadcasts.len();
            notices.append(&mut swept.notifications);
            self.apply(swept, None).await;
            // More than one batch was due: go again.
            if next.is_none_or(|d| d > self.tippen.now()) {
                return Ok((sent, next));
            }
        }
        Ok((sent, self.tippen.next_deadline(site).await?))
    }

    /// Every site's id, re-read from the store at most every `site_cache_ttl` by this
    /// instance (the scheduled function runs often; sites change rarely).
    async fn site_ids(&self) -> Result<Vec<SiteId>, HostError> {
        let ttl = self.config.site_cache_ttl;
        {
            let cached = self.site_ids.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, ids)) = cached.as_ref()
                && at.elapsed() < ttl
            {
                return Ok(ids.clone());
            }
        }
        let ids: Vec<SiteId> = self
            .store
            .sites()
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        *self.site_ids.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), ids.clone()));
        Ok(ids)
    }
}

/// The Lambda host's side of [`host::apply`]: API Gateway connections, the enrichment
/// function and Slack, all done before the invocation returns.
#[async_trait]
impl HostIo for LambdaHost {
    /// A connection id.
    type Socket = str;

    async fn broadcast(&self, site: &SiteId, messages: &[Broadcast]) {
        let dashboards = SocketRole::Dashboard { site: site.clone() };
        self.fanout.send(&dashboards, messages, None).await;
    }

    async fn push(&self, site: &SiteId, push: &VisitorPush, skip: Option<&str>) -> bool {
        let visitor = SocketRole::Visitor {
            site: site.clone(),
            visitor_id: push.visitor_id.clone(),
        };
        self.fanout
            .send(&visitor, std::slice::from_ref(push), skip)
            .await
    }

    /// The core's writes keep each site's deadline in DynamoDB, where the scheduled function
    /// ([`LambdaHost::sweep_all`]) reads it. A write's deadline due within the leave linger —
    /// an exit beacon's, which the scheduled run would notice up to a minute late — also asks
    /// the scheduled function (`TIPPEN_SWEEP_FUNCTION`, asynchronous Invoke) to sweep that site
    /// when it falls due; once per window per instance.
    async fn arm(&self, site: &SiteId, deadline: Deadline) {
        let (Some(function), Deadline::AtMost(at)) = (&self.config.sweep_function, deadline) else {
            return;
        };
        let now = self.tippen.now();
        let soon = self.tippen.config().presence.leave_linger + LINGER_SLACK;
        if at > now.plus(soon) {
            return;
        }
        let until = at.max(now).plus(ASKED_SWEEP_SLACK);
        {
            let mut asked = self.sweeps_asked.lock().unwrap_or_else(|e| e.into_inner());
            if asked.get(site).is_some_and(|end| at <= *end && now < *end) {
                return;
            }
            asked.insert(site.clone(), until);
        }
        let event = serde_json::json!({
            "windowMs": until.since(now).as_millis() as u64,
            "sites": [site.as_str()],
        });
        let sent = self
            .lambda
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(site = %site, error = ?e, "could not invoke the sweep function; the next scheduled run sweeps");
            self.sweeps_asked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(site);
        }
    }

    async fn start_lookups(&self, lookups: Vec<LookupRequest>) {
        self.hand_off_lookups(lookups).await;
    }

    /// Delivers support notices to Slack before returning, within `TIPPEN_SLACK_BUDGET_MS`
    /// (see [`crate::outbound`]'s notes). Without feature `outbound` or a working client
    /// they are only logged (dashboards have them already).
    async fn notify(&self, notices: Vec<SupportNotice>) {
        if notices.is_empty() {
            return;
        }
        #[cfg(feature = "outbound")]
        if let Some(outbound) = &self.outbound {
            outbound
                .notify(&self.tippen.config().support, notices)
                .await;
            return;
        }
        tracing::warn!(
            alerts = notices.len(),
            "support alerts not sent to Slack: this function has no outbound HTTPS client"
        );
    }
}
