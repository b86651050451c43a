//! [`LambdaHost`]: the core, the DynamoDB store and the fan-out, shared by the three
//! functions. Everything here runs inside one invocation: nothing is left running after the
//! handler returns (Lambda freezes the process then).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use tippen_core::api::{ApiError, RequestContext, SocketRole, presented_key};
use tippen_core::host::{self, HostIo};
use tippen_core::notify::Notice;
use tippen_core::{
    Broadcast, Deadline, Effects, KeyHash, LookupRequest, ServiceError, SiteId, Store, StoreError,
    SystemClock, Timestamp, Tippen, VisitorPush,
};

use crate::config::{ConfigError, LambdaConfig};
#[cfg(feature = "enrich")]
use crate::enrich_fn::Enrichment;
use crate::fanout::Fanout;
#[cfg(feature = "outbound")]
use crate::outbound::Outbound;
use tippen_dynamodb::{DynamoHistory, DynamoStore, SweepClaim, SweepEnd, Wake, sdk_config};

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
    /// When this instance last purged history by retention ([`crate::retention`]).
    pub(crate) history_purged: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How long past its deadline an asked-for sweep invocation holds the poller lease: wakes due
/// by then need no other invocation while it has one to wait for.
const ASKED_SWEEP_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// A write's deadline this much past the leave linger still counts as an exit beacon's (the
/// request's own latency); a later one (a tab's grace, seconds to minutes) is left to the
/// scheduled runs, or every tracking call would invoke the sweep function.
const LINGER_SLACK: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a site's sweep lease lasts from its claim or renewal ([`DynamoStore::claim_sweep`]):
/// longer than one batch of a sweep takes (a batch closes up to the core's `sweep_batch`
/// visitors eight at a time, a few DynamoDB calls each), short enough that a holder that
/// crashed keeps the others out only briefly.
const SWEEP_LEASE: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`LambdaHost::sweep_site`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SiteSweep {
    /// Swept until nothing more was due (or nothing was): the messages sent, the site's
    /// next deadline, and a time by which every deadline was met (the start of the last
    /// sweep; `None` when nothing was swept, or not to the end).
    Swept {
        sent: usize,
        next: Option<Timestamp>,
        through: Option<Timestamp>,
    },
    /// Something was due (at `due`), but another invocation holds the site's sweep lease:
    /// nothing swept here, and the holder was asked to sweep once more.
    Skipped { due: Timestamp },
}

/// The sites of the wakes found due that still need a sweep, each once with its earliest
/// such wake: not those whose wakes are all no later than the time by which this invocation
/// met every deadline of the site (`met`).
fn sites_to_sweep<'a>(
    due: &'a [Wake],
    met: &HashMap<SiteId, Timestamp>,
) -> Vec<(&'a SiteId, Timestamp)> {
    let mut sites: Vec<(&SiteId, Timestamp)> = due
        .iter()
        .filter(|w| met.get(&w.site).is_none_or(|through| w.at > *through))
        .map(|w| (&w.site, w.at))
        .collect();
    sites.sort();
    sites.dedup_by(|later, first| later.0 == first.0);
    sites
}

/// Splits the wakes found due into those met (their site swept) and those kept (their site
/// was being swept by another invocation: see [`LambdaHost::poll_wakes`]).
fn met_wakes(
    due: Vec<Wake>,
    skipped: &std::collections::HashSet<SiteId>,
) -> (Vec<Wake>, Vec<Wake>) {
    due.into_iter().partition(|w| !skipped.contains(&w.site))
}

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
        // The history store `TIPPEN_HISTORY_TABLE` names, the items of each configured site
        // expiring by TTL after its retention; none when history is off.
        let history = config.history_table.as_deref().map(|table| {
            let store = config.sites.iter().fold(
                DynamoHistory::new(dynamodb.clone(), table),
                |store, site| store.with_retention(&site.id, site.history_retention()),
            );
            Arc::new(store) as Arc<dyn tippen_core::history::HistoryStore>
        });
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
        if let Some(refusal) = self.over_address_limit(source_ip).await {
            return refusal;
        }
        if let Some(refusal) = self.over_key_limit(&req).await {
            return refusal;
        }
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

    /// The `429` for a client address over `TIPPEN_RATE_LIMIT_PER_IP` (off unless set),
    /// counted per window in the table; not counted without an address, nor when the counter
    /// cannot be written (logged).
    pub(crate) async fn over_address_limit(
        &self,
        ip: Option<IpAddr>,
    ) -> Option<http::Response<Bytes>> {
        let limit = self.config.rate_limits.per_client?;
        let ip = ip?;
        let now = self.tippen.now();
        let window = limit.window(now);
        match self.store.count_address(ip, window).await {
            Ok(true) => None,
            Ok(false) => Some(tippen_core::rate::too_many_from_address(
                window.retry_after(now),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "address rate counter unavailable; request let through");
                None
            }
        }
    }

    /// The `429` for a key over its limit (the site's own, else `TIPPEN_RATE_LIMIT_PER_KEY`),
    /// counted per window in the table. A request without a known key is not counted (the
    /// core refuses it), nor is one when the counter cannot be written (logged).
    pub(crate) async fn over_key_limit(
        &self,
        req: &http::Request<Bytes>,
    ) -> Option<http::Response<Bytes>> {
        let key = presented_key(req)?;
        if key.len() > self.tippen.config().limits.max_key_bytes {
            return None;
        }
        let (site, _) = self.tippen.authenticate(&key).await.ok().flatten()?;
        let limit = site.key_rate_limit(self.config.rate_limits.per_key)?;
        let now = self.tippen.now();
        let window = limit.window(now);
        match self.store.count_request(&KeyHash::of(&key), window).await {
            Ok(true) => None,
            Ok(false) => Some(tippen_core::rate::too_many_with_key(
                window.retry_after(now),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "rate counter unavailable; request let through");
                None
            }
        }
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
    /// invocation then stays for the deadlines due within it ([`poll_wakes`](Self::poll_wakes)):
    /// those the pass found, and those any invocation writes meanwhile (a closed tab's leave
    /// linger), so removals reach dashboards when they are due instead of at the next
    /// scheduled run. Returns how many messages were sent.
    pub async fn sweep_all(&self, window: std::time::Duration) -> Result<usize, HostError> {
        let sites = self.site_ids().await?;
        self.sweep_sites(sites, window).await
    }

    /// The deadline work of `sites` only, as [`sweep_all`](Self::sweep_all) does it for every
    /// site. The invocation [`arm`](HostIo::arm) asks for names none: it only meets the
    /// wakes. A site another invocation is sweeping (`SiteSweep::Skipped`) is left to it
    /// (it sweeps once more for us); with a window, the site also becomes a wake due now, so
    /// the wake polling below comes back to it and chains its next deadline.
    pub async fn sweep_sites(
        &self,
        sites: Vec<SiteId>,
        window: std::time::Duration,
    ) -> Result<usize, HostError> {
        let until = self.tippen.now().plus(window);
        let mut notices = Vec::new();
        let mut sent = 0;
        let mut first_pass = Ok(());
        let chained: std::collections::HashSet<SiteId> = sites.iter().cloned().collect();
        let mut met = HashMap::new();
        for site in sites {
            // A deadline within the window becomes a wake: whichever invocation polls the
            // wakes then (this one, or one holding the lease longer) meets it.
            let wake = match self.sweep_site(&site, None, &mut notices).await {
                Ok(SiteSweep::Swept {
                    sent: n,
                    next,
                    through,
                }) => {
                    sent += n;
                    if let Some(through) = through {
                        met.insert(site.clone(), through);
                    }
                    next.filter(|at| *at <= until)
                }
                Ok(SiteSweep::Skipped { due }) => Some(due).filter(|_| !window.is_zero()),
                Err(e) => {
                    first_pass = Err(e);
                    break;
                }
            };
            if let Some(at) = wake
                && let Err(e) = self.store.put_wake(&site, at).await
            {
                first_pass = Err(e.into());
                break;
            }
        }
        HostIo::notify(self, std::mem::take(&mut notices)).await;
        first_pass?;
        Ok(sent + self.poll(until, &chained, met).await?)
    }

    /// Meets the wakes ([`DynamoStore::wakes`]: deadlines of any site that must not wait for
    /// the next scheduled run): sweeps the sites whose wake is due and forgets those wakes.
    /// Until `until`, and while a wake due by then is pending, it holds the poller lease
    /// ([`DynamoStore::claim_poller`]), reads the wakes again every
    /// [`wake_poll`](Self::wake_poll) and meets each one it has read when it is due (a read
    /// is a Query; a linger's wake written since is read before it is due); the next
    /// deadline within `until` of a site in `chained` (the sites of the run's first pass)
    /// becomes a wake too. Without
    /// the lease (another invocation polls longer, or has taken it over) or past `until` it
    /// makes one pass. Before it returns early it gives the lease back and looks once more,
    /// so a wake written by an invocation that saw the lease held is never left behind (a
    /// wake due after `until` is not this invocation's: its writer saw no lease covering it).
    ///
    /// The wakes of a site another invocation is sweeping (`SiteSweep::Skipped`) are kept,
    /// not forgotten: that invocation was asked to sweep once more before it lets the site
    /// go, which meets them, and should it fail, the wakes are still there for the next poll
    /// (this one's, [`wake_poll`](Self::wake_poll) later, while it holds the poller lease, or
    /// the next scheduled run's). Returns how many messages were sent.
    pub async fn poll_wakes(
        &self,
        until: Timestamp,
        chained: &std::collections::HashSet<SiteId>,
    ) -> Result<usize, HostError> {
        self.poll(until, chained, HashMap::new()).await
    }

    /// [`poll_wakes`](Self::poll_wakes), knowing the sites this invocation has swept and by
    /// when every deadline of each was met (`met`): a due wake no later than that is
    /// forgotten without sweeping its site again. A site's sweep with a due wake skips the
    /// index read that decides whether anything is due, unless its wakes were kept at the
    /// previous poll (by then another invocation has most likely met them).
    async fn poll(
        &self,
        until: Timestamp,
        chained: &std::collections::HashSet<SiteId>,
        mut met: HashMap<SiteId, Timestamp>,
    ) -> Result<usize, HostError> {
        let mut sent = 0;
        let mut holding = false;
        let mut kept_before = std::collections::HashSet::new();
        // The wakes pending after the last pass, and when they were read.
        let mut known: Option<(Timestamp, Vec<Wake>)> = None;
        loop {
            let now = self.tippen.now();
            let (wakes, read) = match known.take() {
                // Between two reads (one every `wake_poll`), the wakes of the last one: a wake
                // written since is due a leave linger after it was written, at least twice
                // `wake_poll`, so the next read finds it before it is due.
                Some((read, wakes)) if holding && now < read.plus(self.wake_poll()) => {
                    (wakes, read)
                }
                _ => {
                    if !holding && now < until {
                        holding = self.store.claim_poller(until).await?;
                    }
                    let (wakes, lease) = self.store.wakes().await?;
                    // Kept while it is still ours: an invocation asked for a later deadline
                    // takes it over (its window ends later), and this one stops.
                    holding &= lease == Some(until);
                    (wakes, now)
                }
            };
            let (due, pending): (Vec<_>, Vec<_>) = wakes.into_iter().partition(|w| w.at <= now);
            let sites = sites_to_sweep(&due, &met);
            tracing::trace!(
                due = due.len(),
                pending = pending.len(),
                holding,
                "wakes read"
            );
            let mut notices = Vec::new();
            let mut swept = Ok(());
            let mut skipped = std::collections::HashSet::new();
            let mut chained_at = Vec::new();
            for (site, at) in sites {
                let hint = Some(at).filter(|_| !kept_before.contains(site));
                match self.sweep_site(site, hint, &mut notices).await {
                    Ok(SiteSweep::Swept {
                        sent: n,
                        next,
                        through,
                    }) => {
                        sent += n;
                        if let Some(through) = through {
                            met.insert(site.clone(), through);
                        }
                        if let Some(at) = next.filter(|at| *at <= until && chained.contains(site)) {
                            if let Err(e) = self.store.put_wake(site, at).await {
                                swept = Err(e.into());
                                break;
                            }
                            chained_at.push(Wake::new(site.clone(), at));
                        }
                    }
                    Ok(SiteSweep::Skipped { .. }) => {
                        skipped.insert(site.clone());
                    }
                    Err(e) => {
                        swept = Err(e);
                        break;
                    }
                }
            }
            HostIo::notify(self, notices).await;
            swept?;
            // Only once met: a wake of a failed invocation stays for the next one, and so
            // does one of a site another invocation is sweeping.
            let (mut forgotten, kept) = met_wakes(due, &skipped);
            // A wake that came due while this invocation swept its site (a long sweep, or
            // rounds one after another) is met as well: forgotten now, not read again.
            let (early, pending): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|w| met.get(&w.site).is_some_and(|through| w.at <= *through));
            forgotten.extend(early);
            let mut earliest = pending
                .iter()
                .chain(&chained_at)
                .map(|w| w.at)
                .filter(|at| *at <= until)
                .min();
            // Known until the next read; kept ones are read again then.
            known = Some((read, pending.into_iter().chain(chained_at).collect()));
            self.store.delete_wakes(&forgotten).await?;
            kept_before = skipped;
            let now = self.tippen.now();
            if let Some(first) = forgotten.iter().map(|w| w.at).min() {
                tracing::debug!(
                    wakes = forgotten.len(),
                    kept = kept.len(),
                    late_ms = now.since(first).as_millis() as u64,
                    "wakes met"
                );
            }
            if !kept.is_empty() {
                let again = now.plus(self.wake_poll());
                earliest = Some(earliest.map_or(again, |e| e.min(again)));
            }
            if !holding || now >= until {
                return Ok(sent);
            }
            let Some(earliest) = earliest else {
                self.store.release_poller(until).await?;
                holding = false;
                if self.store.wakes().await?.0.iter().all(|w| w.at > until) {
                    return Ok(sent);
                }
                continue;
            };
            let next_read = read.plus(self.wake_poll());
            let wait = earliest.min(next_read).max(now).since(now);
            tokio::time::sleep(wait.min(until.since(now))).await;
        }
    }

    /// How often a sweep invocation holding the poller lease reads the wakes: half the leave
    /// linger (between 50 ms and 1 s), so a wake a tracking call writes (due a linger later)
    /// is read well before it is due, and then met on time.
    pub fn wake_poll(&self) -> std::time::Duration {
        (self.tippen.config().presence.leave_linger / 2).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(1),
        )
    }

    /// Sweeps one site until nothing more is due, applying each sweep's effects but keeping
    /// their support alerts in `notices` (one Slack delivery for the pass).
    ///
    /// One cheap index read first decides whether the site has anything due (not when the
    /// caller knows of a deadline `due` by now: a wake), and only then does it take the
    /// site's sweep lease ([`DynamoStore::claim_sweep`]), so that one invocation
    /// at a time closes a site's due visitors: two at once (the scheduled run and the one
    /// polling the wakes) each made every close's conditional writes, the loser repeating
    /// them after its conflict, and on a store serving calls one after another (moto) the
    /// repeats delayed every other request. When the lease is held elsewhere this sweeps
    /// nothing and answers [`SiteSweep::Skipped`]; the claim has asked the holder for one more
    /// round.
    ///
    /// Why nothing due is left behind: the holder's last step is
    /// [`DynamoStore::end_sweep`], a release conditional on no such request. Say the holder
    /// reads the index a last time, finds the next deadline still ahead, and that deadline
    /// comes due before its release, while another invocation reads it due and finds the
    /// lease held. That invocation's request (`again`) and the holder's release are
    /// conditional writes on the same item, so one comes first: the request first, and the
    /// release fails, the holder keeps the lease and sweeps again (its index read is later
    /// than the other's, which saw the deadline due); the release first, and the request
    /// fails its "held" condition, and that invocation claims the lease and sweeps itself.
    /// A deadline nobody read as due in between is like any other: whichever invocation
    /// next finds it due claims the free lease. The lease lasts [`SWEEP_LEASE`] and is
    /// renewed between batches, so a holder that crashed keeps the others out that long at
    /// most; a holder too slow for its lease just sweeps beside the next one (harmless: the
    /// core's writes are conditional) and stops at its end.
    async fn sweep_site(
        &self,
        site: &SiteId,
        due: Option<Timestamp>,
        notices: &mut Vec<Notice>,
    ) -> Result<SiteSweep, HostError> {
        let now = self.tippen.now();
        let due = match due.filter(|d| *d <= now) {
            // A wake's deadline (it may have been met already: then the sweep finds nothing,
            // which costs what the index read would have saved, and wakes are rarely met
            // before their poll).
            Some(due) => due,
            None => {
                let next = self.tippen.next_deadline(site).await?;
                tracing::debug!(
                    site = %site,
                    next_ms = ?next.map(Timestamp::as_millis),
                    "sweep: the site's next deadline"
                );
                match next.filter(|d| *d <= self.tippen.now()) {
                    Some(due) => due,
                    None => {
                        return Ok(SiteSweep::Swept {
                            sent: 0,
                            next,
                            through: None,
                        });
                    }
                }
            }
        };
        let now = self.tippen.now();
        let holder = tippen_dynamodb::store::write_token();
        let lease = now.plus(SWEEP_LEASE);
        if self.store.claim_sweep(site, &holder, now, lease).await? == SweepClaim::Held {
            tracing::debug!(site = %site, "sweep: another invocation is sweeping the site; it sweeps again");
            return Ok(SiteSweep::Skipped { due });
        }
        let swept = self.sweep_holding(site, &holder, lease, notices).await;
        if swept.is_err()
            && let Err(e) = self.store.abandon_sweep(site, &holder).await
        {
            tracing::warn!(site = %site, error = %e, "could not give the sweep lease back; it runs out");
        }
        swept
    }

    /// [`sweep_site`](Self::sweep_site)'s sweeps, holding the lease as `holder` until
    /// `lease` (renewed when less than half of [`SWEEP_LEASE`] is left before a batch).
    async fn sweep_holding(
        &self,
        site: &SiteId,
        holder: &str,
        mut lease: Timestamp,
        notices: &mut Vec<Notice>,
    ) -> Result<SiteSweep, HostError> {
        let mut sent = 0;
        let mut next = None;
        let mut through = None;
        // The caller found the site due; a round asked for again reads the index first (the
        // request is often for what this sweep has just closed: it was read before).
        let mut due = true;
        // Bounded: a sweep returns a due deadline only while more batches are due, and a
        // round asked for again sweeps what another invocation found due.
        for _ in 0..100 {
            let now = self.tippen.now();
            if lease.since(now) < SWEEP_LEASE / 2 {
                lease = now.plus(SWEEP_LEASE);
                if !self.store.renew_sweep(site, holder, lease).await? {
                    tracing::debug!(site = %site, "sweep: the lease ran out and was taken over");
                    return Ok(SiteSweep::Swept {
                        sent,
                        next,
                        through: None,
                    });
                }
            }
            if due {
                // Read before the core reads its clock: every deadline up to it is met.
                through = Some(self.tippen.now());
                let mut swept = self.tippen.handle_timeout(site).await?;
                next = swept.deadline.and_then(Deadline::at);
                tracing::debug!(
                    site = %site,
                    messages = swept.broadcasts.len(),
                    next_ms = ?next.map(Timestamp::as_millis),
                    "sweep: swept"
                );
                sent += swept.broadcasts.len();
                notices.append(&mut swept.notifications);
                self.apply(swept, None).await;
                // More than one batch was due: go again.
                if next.is_some_and(|d| d <= self.tippen.now()) {
                    continue;
                }
            }
            let now = self.tippen.now();
            lease = now.plus(SWEEP_LEASE);
            match self.store.end_sweep(site, holder, lease).await? {
                SweepEnd::Released => {
                    return Ok(SiteSweep::Swept {
                        sent,
                        next,
                        through,
                    });
                }
                SweepEnd::Again => {
                    // Read after the request: whatever its sender found due is due in it.
                    next = self.tippen.next_deadline(site).await?;
                    due = next.is_some_and(|d| d <= self.tippen.now());
                    tracing::debug!(site = %site, due, "sweep: asked to sweep again");
                }
                SweepEnd::Lost => {
                    tracing::debug!(site = %site, "sweep: the lease ran out and was taken over");
                    return Ok(SiteSweep::Swept {
                        sent,
                        next,
                        through: None,
                    });
                }
            }
        }
        self.store.abandon_sweep(site, holder).await?;
        Ok(SiteSweep::Swept {
            sent,
            next: self.tippen.next_deadline(site).await?,
            through: None,
        })
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
    /// an exit beacon's, which the scheduled run would notice up to a minute late — is also
    /// written as a wake ([`DynamoStore::put_wake`]), which the sweep invocation holding the
    /// poller lease reads within [`LambdaHost::wake_poll`] and meets when it is due
    /// ([`LambdaHost::poll_wakes`]). Only when no invocation holds the lease until then does
    /// this ask the sweep function (`TIPPEN_SWEEP_FUNCTION`, asynchronous Invoke) to poll the
    /// wakes, with a window up to the deadline. So a linger's end never waits for an Invoke
    /// while another sweep invocation polls, and an Invoke served late is made up for by the
    /// next scheduled run (its pass over every site, and its wake polling).
    async fn arm(&self, site: &SiteId, deadline: Deadline) {
        let Deadline::AtMost(at) = deadline else {
            return;
        };
        let now = self.tippen.now();
        let soon = self.tippen.config().presence.leave_linger + LINGER_SLACK;
        if at > now.plus(soon) {
            return;
        }
        if let Err(e) = self.store.put_wake(site, at).await {
            tracing::warn!(site = %site, error = %e, "could not write the wake; asking the sweep function");
        }
        tracing::debug!(site = %site, at_ms = at.as_millis(), "wake written");
        let Some(function) = &self.config.sweep_function else {
            return;
        };
        match self.store.poller_until().await {
            Ok(Some(until)) if until >= at => return,
            Ok(_) => {}
            Err(e) => tracing::warn!(site = %site, error = %e, "could not read the poller lease"),
        }
        let until = at.max(now).plus(ASKED_SWEEP_SLACK);
        let event = serde_json::json!({
            "windowMs": until.since(now).as_millis() as u64,
            "sites": [],
            "askedAt": now.as_millis(),
        });
        let sent = self
            .lambda
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send()
            .await;
        tracing::debug!(
            site = %site,
            invoke_ms = self.tippen.now().since(now).as_millis() as u64,
            ok = sent.is_ok(),
            "sweep function asked to poll the wakes"
        );
        if let Err(e) = sent {
            tracing::warn!(site = %site, error = ?e, "could not invoke the sweep function; the next scheduled run sweeps");
        }
    }

    async fn start_lookups(&self, lookups: Vec<LookupRequest>) {
        self.hand_off_lookups(lookups).await;
    }

    /// Delivers support notices to Slack before returning, within `TIPPEN_SLACK_BUDGET_MS`
    /// (see [`crate::outbound`]'s notes). Without feature `outbound` or a working client
    /// they are only logged (dashboards have them already).
    async fn notify(&self, notices: Vec<Notice>) {
        if notices.is_empty() {
            return;
        }
        #[cfg(feature = "outbound")]
        if let Some(outbound) = &self.outbound {
            outbound.notify(&self.tippen, notices).await;
            return;
        }
        tracing::warn!(
            alerts = notices.len(),
            "alerts not sent: this function has no outbound HTTPS client"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wakes_of_a_site_swept_elsewhere_are_kept() {
        let at = Timestamp::from_millis;
        let (a, b) = (SiteId::from("a"), SiteId::from("b"));
        let due = vec![
            Wake::new(a.clone(), at(1000)),
            Wake::new(b.clone(), at(1100)),
            Wake::new(a.clone(), at(1200)),
        ];
        let skipped = std::collections::HashSet::from([a.clone()]);
        let (met, kept) = met_wakes(due.clone(), &skipped);
        assert_eq!(met, [due[1].clone()]);
        assert_eq!(kept, [due[0].clone(), due[2].clone()]);
        let (met, kept) = met_wakes(due.clone(), &Default::default());
        assert_eq!((met, kept), (due, Vec::new()));
    }

    #[test]
    fn a_site_is_swept_once_for_its_wakes_not_met_already() {
        let at = Timestamp::from_millis;
        let (a, b, c) = (SiteId::from("a"), SiteId::from("b"), SiteId::from("c"));
        let due = vec![
            Wake::new(a.clone(), at(1000)),
            Wake::new(b.clone(), at(1100)),
            Wake::new(a.clone(), at(1200)),
            Wake::new(c.clone(), at(1300)),
            Wake::new(b.clone(), at(900)),
        ];
        assert_eq!(
            sites_to_sweep(&due, &HashMap::new()),
            [(&a, at(1000)), (&b, at(900)), (&c, at(1300))]
        );
        // `a` was swept from 1100 on: its wake at 1200 is not met yet; `c`'s is.
        let met = HashMap::from([(a.clone(), at(1100)), (c.clone(), at(1300))]);
        assert_eq!(sites_to_sweep(&due, &met), [(&a, at(1200)), (&b, at(900))]);
    }
}
