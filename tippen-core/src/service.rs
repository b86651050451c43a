//! [`Tippen`]: the core's operations over an injected [`Store`] and [`Clock`].
//!
//! Each operation reads the clock once, reads and conditionally writes records (retrying on a
//! [`StoreError::Conflict`]; every operation goes through the one loop of `service/update.rs`,
//! with its change to the record written as a pure transition), and returns an [`Outcome`]: the dashboard messages it caused,
//! numbered with the site's sequence, and the deadline the host must wake up for. Nothing is
//! sent from here; the host fans the messages out.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use futures_util::{StreamExt, stream};
use thiserror::Error;

use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::enrichment::{
    CachedLookup, CompanyProfile, EnrichmentEvent, EnrichmentSource, EnrichmentStats,
    LookupFailure, VisitorSignals, lookup_target,
};
use crate::history::{HistoryStore, Place};
use crate::ids::{IdGenerator, SecureIds};
use crate::invite::{Invite, InviteError, InviteEvent, InviteState, InviteToVisitor, NewInvite};
use crate::presence::{Company, Ping, RemovalReason, TabsChange, UpdateKind, VisitorRecord};
use crate::protocol::{Sequenced, ServerMessage, VisitorView};
use crate::site::{KeyHash, KeyRole, Site, SiteId};
use crate::store::{Store, StoreError, Versioned};
use crate::video::VideoProvider;

mod alerts;
mod history;
mod reads;
mod support;
mod update;

pub use history::{CompanyDetail, VisitPage};
pub use support::SupportOverview;
use update::{Numbered, Write};

/// Why an operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Concurrent writers kept winning; the operation gave up after the configured attempts.
    #[error("too much contention on visitor {0}; try again")]
    Contention(String),
    /// The visitor is not (or no longer) present.
    #[error("Visitor not found")]
    VisitorNotFound,
    /// A video invite operation was refused (nothing changed).
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// A quota of [`Limits`](crate::config::Limits) would be exceeded (nothing changed).
    #[error("{0}")]
    Quota(String),
    /// The service has no history store ([`Tippen::with_history`]).
    #[error("visit history is not enabled on this server")]
    HistoryDisabled,
    /// The visitor was deleted and so opted out of tracking (its tombstone is in force).
    #[error("visitor {0} was deleted and has opted out of tracking")]
    OptedOut(String),
}

/// What an operation caused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages for every dashboard of the site, in order, each with its sequence number.
    pub messages: Vec<Sequenced>,
    /// When the host must call [`Tippen::sweep`] for this site next (`None`: nothing pending).
    /// After a write this is the written record's deadline (the host keeps the minimum of
    /// what it has armed); after a sweep it is the site's next deadline.
    pub deadline: Option<Timestamp>,
    /// Enrichment lookups the host should run (a new visit whose address the cache could not
    /// answer). The host deduplicates and rate-limits them with a
    /// [`LookupPlanner`](crate::enrichment::LookupPlanner), sends the provider request, and
    /// calls [`Tippen::cache_lookup`] then [`Tippen::complete_lookup`] for each waiter.
    pub lookups: Vec<LookupRequest>,
    /// For a tracking call: the visitor's open video invite, to show on its page (it rides
    /// on the `/track/visitor` response).
    pub invite: Option<InviteToVisitor>,
    /// Messages for one visitor's open visitor-channel sockets, as `(visitorId, json)`: the
    /// `VIDEO_INVITE` of a newly sent invite. The state changes a page must hear about are
    /// derived from [`messages`](Self::messages); [`visitor_pushes`](Self::visitor_pushes)
    /// returns both, in order.
    pub visitor_messages: Vec<(String, String)>,
    /// Support alerts to notify people of outside the dashboards (Slack), cooldown already
    /// applied: the host delivers each ([`crate::slack`] builds the request) without delaying
    /// the response.
    pub notifications: Vec<crate::support::SupportNotice>,
    /// What the events of this outcome that can change an alert rule's answer (a new visit, a
    /// page view, a company identified) tell the rules; the API layer, which holds the site,
    /// evaluates them ([`crate::alerts`]).
    pub alert_subjects: Vec<crate::alerts::Subject>,
}

impl Outcome {
    /// Everything to push to visitors' sockets, as `(visitorId, json)`:
    /// [`visitor_messages`](Self::visitor_messages), then a
    /// `{"type":"VIDEO_INVITE_UPDATE","inviteId","state"}` for each invite state change in
    /// [`messages`](Self::messages) that a page acts on (every state but `sent` and
    /// `delivered`), so a page hides a popup that was cancelled, expired or answered in
    /// another tab.
    pub fn visitor_pushes(&self) -> Vec<(String, String)> {
        let mut pushes = self.visitor_messages.clone();
        pushes.extend(visitor_updates(&self.messages));
        pushes
    }
}

/// The visitor-directed `VIDEO_INVITE_UPDATE`s for the invite changes among `messages`.
pub(crate) fn visitor_updates(messages: &[Sequenced]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter_map(|m| match &m.message {
            ServerMessage::VideoInviteUpdate {
                invite_id,
                visitor_id,
                state,
                ..
            } if !matches!(state, InviteState::Sent | InviteState::Delivered) => {
                let update = InviteToVisitor::VideoInviteUpdate {
                    invite_id: invite_id.clone(),
                    state: *state,
                };
                Some((
                    visitor_id.clone(),
                    serde_json::to_string(&update).unwrap_or_default(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// What [`Tippen::invite_event`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteChange {
    /// The invite as it is now.
    pub invite: Invite,
    /// The dashboard messages (none for an idempotent no-op).
    pub outcome: Outcome,
    /// Set when the event came at or after the invite's expiry: the expiry was applied and
    /// reported (in [`outcome`](Self::outcome)), and the event conflicts with it.
    pub refused: Option<InviteError>,
}

/// A visitor waiting for the company behind an address. The address lives only here (and in
/// the shared cache, keyed by address alone): visitor records never store it. Serializable
/// (`{"site","visitorId","ip"}`) for hosts that hand lookups to another process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupRequest {
    /// The visitor's site (whose credits the lookup uses).
    pub site: SiteId,
    /// The visitor.
    pub visitor_id: String,
    /// The address to look up, as [`lookup_target`] returned it.
    pub ip: IpAddr,
}

/// What is known about the client of a tracking request, beyond the ping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Where the client is, from the host's request geodata (kept on the visit).
    pub place: Option<Place>,
    /// The client's address, as the host determined it.
    pub ip: Option<IpAddr>,
    /// The browser sent `Sec-GPC: 1` (Global Privacy Control).
    pub sends_gpc: bool,
    /// The site honours Global Privacy Control ([`Site::honor_gpc`]).
    pub site_honours_gpc: bool,
    /// The browser sent `DNT: 1` (Do Not Track).
    pub sends_dnt: bool,
    /// The site honours Do Not Track ([`Site::honor_dnt`]).
    pub site_honours_dnt: bool,
}

/// The core service. Cheap to share (`Arc`), holds no per-request state.
pub struct Tippen {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Config,
    ids: Arc<dyn IdGenerator>,
    video: Option<Arc<dyn VideoProvider>>,
    history: Option<Arc<dyn HistoryStore>>,
    /// The rollups this service last read or wrote, with their versions (see
    /// [`history::RollupCache`]).
    rollup_cache: history::RollupCache,
    /// Each site's last `INITIAL_VISITORS` text for dashboard sockets (see
    /// [`Limits::snapshot_reuse`](crate::config::Limits::snapshot_reuse)).
    snapshots: std::sync::Mutex<std::collections::HashMap<SiteId, SnapshotText>>,
}

/// A site's `INITIAL_VISITORS` text as built at `built_at`, for its sequence number `seq`.
struct SnapshotText {
    seq: u64,
    built_at: Timestamp,
    text: Arc<str>,
}

impl std::fmt::Debug for Tippen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tippen")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How many due visitors one sweep settles at once (each its own record; the messages keep
/// the due order).
const SWEEP_CONCURRENCY: usize = 8;

fn bots() -> &'static isbot::Bots {
    static BOTS: OnceLock<isbot::Bots> = OnceLock::new();
    BOTS.get_or_init(isbot::Bots::default)
}

/// Whether a user agent belongs to a known bot (crawlers, monitors, headless tools).
pub(crate) fn is_bot(user_agent: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| bots().is_bot(ua))
}

impl Tippen {
    /// A service over `store` with `clock` and `config`.
    ///
    /// Invite ids come from [`SecureIds`], the platform's secure random source (on
    /// `wasm32-unknown-unknown`, `crypto.getRandomValues`). Tests that want reproducible ids
    /// inject a [`SeededIds`](crate::SeededIds) with [`with_ids`](Self::with_ids).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: Config) -> Self {
        Tippen {
            store,
            clock,
            config,
            ids: Arc::new(SecureIds),
            video: None,
            history: None,
            rollup_cache: history::RollupCache::default(),
            snapshots: std::sync::Mutex::default(),
        }
    }

    /// The same service creating video sessions with `provider`, which enables the one-call
    /// invite endpoint `POST /api/video-call` (without a provider it answers 501).
    pub fn with_video_provider(mut self, provider: Arc<dyn VideoProvider>) -> Self {
        self.video = Some(provider);
        self
    }

    /// The video-session provider, when one is configured.
    pub fn video_provider(&self) -> Option<&Arc<dyn VideoProvider>> {
        self.video.as_ref()
    }

    /// The same service generating ids (invite ids) with `ids`: a
    /// [`SeededIds`](crate::SeededIds) for deterministic tests, or a host's own source.
    pub fn with_ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = ids;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Registers (or replaces) a site.
    pub async fn put_site(&self, site: &Site) -> Result<(), ServiceError> {
        Ok(self.store.put_site(site).await?)
    }

    /// The site and role of a presented key (a credential past its expiry: the site, as
    /// [`KeyRole::Public`]); `None` for an unknown key. [`route`](Self::route) decides what the
    /// key may do (expiry, a disabled site, the route's role).
    pub async fn authenticate(&self, key: &str) -> Result<Option<(Site, KeyRole)>, ServiceError> {
        let hash = KeyHash::of(key);
        let Some(site) = self.store.site_by_key(&hash).await? else {
            return Ok(None);
        };
        Ok(match site.access_of(&hash, self.now()) {
            Some(crate::site::KeyMatch::Valid { role, .. }) => Some((site, role)),
            // An expired credential still names its site (which answers 401 for it).
            Some(crate::site::KeyMatch::Expired) => Some((site, KeyRole::Public)),
            None => None,
        })
    }

    pub(crate) async fn sequence(
        &self,
        site: &SiteId,
        messages: Vec<ServerMessage>,
    ) -> Result<Vec<Sequenced>, ServiceError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let n = messages.len() as u64;
        let last = if self.store.publishes_broadcasts() {
            let unnumbered: Vec<String> = messages.iter().map(Sequenced::unnumbered_json).collect();
            self.store
                .advance_sequence_publishing(site, &unnumbered)
                .await?
        } else {
            self.store.advance_sequence(site, n).await?
        };
        Ok(messages
            .into_iter()
            .zip(last + 1 - n..)
            .map(|(message, seq)| Sequenced { message, seq })
            .collect())
    }

    /// `messages` as numbered: with the numbers taken before their write ([`Numbered`]),
    /// else numbered now ([`sequence`](Self::sequence)).
    pub(crate) async fn sequence_numbered(
        &self,
        site: &SiteId,
        messages: Vec<ServerMessage>,
        numbered: Numbered,
    ) -> Result<Vec<Sequenced>, ServiceError> {
        match numbered {
            Some(numbers) if numbers.len() == messages.len() => Ok(messages
                .into_iter()
                .zip(numbers)
                .map(|(message, seq)| Sequenced { message, seq })
                .collect()),
            _ => self.sequence(site, messages).await,
        }
    }

    fn view(&self, record: &VisitorRecord, now: Timestamp) -> VisitorView {
        VisitorView::of(record, now, &self.config.presence)
    }

    /// A tracker event: creates, updates or restarts the visitor's visit. Same as
    /// [`track_client`](Self::track_client) with only the address known (no Global Privacy
    /// Control signal).
    pub async fn track(
        &self,
        site: &SiteId,
        visitor_id: &str,
        ping: &Ping,
        client_ip: Option<IpAddr>,
    ) -> Result<Outcome, ServiceError> {
        let client = ClientInfo {
            ip: client_ip,
            ..ClientInfo::default()
        };
        self.track_client(site, visitor_id, ping, client).await
    }

    /// A tracker event: creates, updates or restarts the visitor's visit.
    ///
    /// A new visit is enriched at once when it can be: no lookup for a bot, a visitor sending
    /// Global Privacy Control to a site that honours it, or an address that is not public
    /// ([`lookup_target`]; the visitor gets the fallback company and the skip is counted);
    /// a fresh entry of the shared cache fills the company (source `cache`, a credit saved);
    /// otherwise the visitor is listed with the fallback and the outcome's
    /// [`lookups`](Outcome::lookups) asks the host for a lookup.
    pub async fn track_client(
        &self,
        site: &SiteId,
        visitor_id: &str,
        ping: &Ping,
        client: ClientInfo,
    ) -> Result<Outcome, ServiceError> {
        let now = self.clock.now();
        // A new visit's company, read from the shared cache only when a transition asks for
        // it: then the record it was given is tried again with the company.
        let mut first = None;
        let mut read = None;
        let (tracked, numbered) =
            loop {
                let transition = |current: Option<Versioned<VisitorRecord>>| {
                    Ok(self.track_step(
                        site,
                        visitor_id,
                        ping,
                        &client,
                        first.as_ref(),
                        current,
                        now,
                    ))
                };
                let (step, numbered) =
                    self.update_numbered(site, visitor_id, read.take(), transition, |step| {
                        match step {
                            TrackStep::Tracked(tracked) => tracked.messages.len(),
                            _ => 0,
                        }
                    })
                    .await?;
                match step {
                    TrackStep::NeedsCompany(current) => {
                        if current.is_none() {
                            self.check_visitor_quota(site).await?;
                        }
                        let bot = is_bot(ping.user_agent.as_deref());
                        first = Some(self.first_company(&client, bot, now).await?);
                        read = Some(*current);
                    }
                    TrackStep::Ignored => return Ok(Outcome::default()),
                    TrackStep::OptedOut => {
                        return Err(ServiceError::OptedOut(visitor_id.to_owned()));
                    }
                    TrackStep::Tracked(tracked) => break (*tracked, numbered),
                }
            };
        let mut lookups = Vec::new();
        if let Some(first) = tracked.enrichment {
            if let Some(event) = first.event {
                self.record_enrichment_logged(site, &[event]).await;
            }
            lookups.extend(first.lookup.map(|ip| LookupRequest {
                site: site.clone(),
                visitor_id: visitor_id.to_owned(),
                ip,
            }));
        }
        Ok(Outcome {
            messages: self
                .sequence_numbered(site, tracked.messages, numbered)
                .await?,
            deadline: Some(tracked.deadline),
            lookups,
            invite: tracked.invite,
            alert_subjects: tracked.subject.into_iter().collect(),
            ..Outcome::default()
        })
    }

    /// Refuses a new visitor when the site holds
    /// [`Limits::max_visitors_per_site`](crate::config::Limits) records already.
    async fn check_visitor_quota(&self, site: &SiteId) -> Result<(), ServiceError> {
        let max = self.config.limits.max_visitors_per_site;
        if self.store.count_visitors(site).await? >= max {
            tracing::warn!(site = %site, max, "visitor quota reached; refusing a new visitor");
            return Err(ServiceError::Quota(format!(
                "this site has reached its limit of {max} visitors; try again later"
            )));
        }
        Ok(())
    }

    /// The transition of a tracker event (see [`track_client`](Self::track_client)).
    #[allow(clippy::too_many_arguments)]
    fn track_step(
        &self,
        site: &SiteId,
        visitor_id: &str,
        ping: &Ping,
        client: &ClientInfo,
        first: Option<&FirstCompany>,
        current: Option<Versioned<VisitorRecord>>,
        now: Timestamp,
    ) -> (Write<VisitorRecord>, TrackStep) {
        let cfg = &self.config.presence;
        if current.as_ref().is_some_and(|v| v.value.opted_out_at(now)) {
            // Deleted: its tombstone keeps it from being tracked again.
            return (Write::Keep, TrackStep::OptedOut);
        }
        if current
            .as_ref()
            .is_some_and(|v| v.value.ignores(ping, now, cfg))
        {
            // In flight when its tab closed: changes nothing.
            return (Write::Keep, TrackStep::Ignored);
        }
        let mut messages = Vec::with_capacity(2);
        let mut invite_messages = Vec::new();
        let mut enrichment = None;
        let mut closed = None;
        // The record as read, kept only where the store has a cheaper write for a change
        // that is a heartbeat's alone.
        let mut before = None;
        let (mut record, update) = match current {
            Some(v) if v.value.live_at(now, cfg) => {
                if self.store.touches_visitors() {
                    before = Some(v.value.clone());
                }
                let mut record = v.value;
                let update = record.apply(ping, now, cfg);
                // The open invite rides on this response: it is delivered now (or, if its
                // time has come, expired).
                if let Some(m) = record.expire_invite(now, cfg) {
                    invite_messages.push(ServerMessage::from(m));
                } else if let Some(invite) = record.invite.as_mut().filter(|i| i.is_open())
                    && let Ok(Some(m)) = invite.handle(InviteEvent::Delivered, now)
                {
                    invite_messages.push(ServerMessage::from(m));
                }
                record.refresh_deadline(cfg);
                (record, update)
            }
            stale => {
                let Some(first) = first else {
                    return (Write::Keep, TrackStep::NeedsCompany(Box::new(stale)));
                };
                if let Some(old) = stale.as_ref().filter(|v| !v.value.is_tombstone()) {
                    // Expired but not yet swept: report the removal (and close its visit)
                    // first.
                    let reason = old.value.removal_reason(cfg);
                    messages.push(ServerMessage::VisitorRemoved {
                        visitor_id: old.value.visitor_id.clone(),
                        reason,
                    });
                    let mut ended = old.value.clone();
                    if let Some(m) = ended.end_invite(now, cfg) {
                        messages.push(m.into());
                    }
                    closed = ended.close_visit(site, reason);
                }
                enrichment = Some(first.clone());
                let company = first.company.clone();
                let mut record =
                    VisitorRecord::start(visitor_id, ping, first.is_bot, company, now, cfg);
                if let Some(old) = &stale {
                    record.inherit_departures(&old.value, now, cfg);
                }
                (record, Some(UpdateKind::NewVisitor))
            }
        };
        let subject = match update {
            Some(UpdateKind::NewVisitor) => Some(alerts::subject_of(&record, now, true)),
            Some(UpdateKind::Pageview) => Some(alerts::subject_of(&record, now, false)),
            _ => None,
        };
        if let Some(event) = update {
            messages.push(ServerMessage::VisitorUpdate {
                visitor: Box::new(self.view(&record, now)),
                event,
            });
        }
        messages.append(&mut invite_messages);
        record.note_place(client.place.as_ref());
        let tracked = Tracked {
            messages,
            deadline: record.deadline,
            invite: record.open_invite().map(|i| i.visitor_message(now)),
            enrichment,
            subject,
        };
        let write = if before.is_some_and(|b| record.only_touched_since(&b)) {
            Write::Touch(record)
        } else {
            Write::Save(record)
        };
        (write.closing(closed), TrackStep::Tracked(Box::new(tracked)))
    }

    /// An exit beacon for one tab (`Some`) or the whole visitor (`None`). The tab is held for
    /// the [leave linger](crate::PresenceConfig::leave_linger): dashboards hear nothing now,
    /// and the outcome's deadline is the linger's end, when a sweep drops the tab (and removes
    /// the visitor with reason `left` if it was the last) unless it reported again.
    pub async fn leave(
        &self,
        site: &SiteId,
        visitor_id: &str,
        tab_id: Option<&str>,
    ) -> Result<Outcome, ServiceError> {
        self.leave_page(site, visitor_id, tab_id, None).await
    }

    /// An exit beacon from page `page_id` of a tab (see [`leave`](Self::leave)): a beacon for
    /// a page the tab has already left (the next page's page view came first) changes nothing.
    pub async fn leave_page(
        &self,
        site: &SiteId,
        visitor_id: &str,
        tab_id: Option<&str>,
        page_id: Option<&str>,
    ) -> Result<Outcome, ServiceError> {
        let cfg = &self.config.presence;
        let now = self.clock.now();
        let (left, numbered) = self
            .update_numbered(
                site,
                visitor_id,
                None,
                |current: Option<Versioned<VisitorRecord>>| {
                    let Some(current) = current else {
                        return Ok((Write::Keep, None));
                    };
                    let mut record = current.value;
                    let before = record.clone();
                    let change = if record.live_at(now, cfg) {
                        let change = record.leave_page(tab_id, page_id, now, cfg);
                        cap_departures(&mut record, self.config.limits.max_departed_tabs);
                        change
                    } else if record.is_tombstone() {
                        // Already gone and announced.
                        return Ok((Write::Keep, None));
                    } else {
                        record.expire(now, cfg)
                    };
                    let ended = match change {
                        TabsChange::Removed(_) => record.end_invite(now, cfg),
                        _ => None,
                    };
                    let deadline = (!record.tabs.is_empty()).then_some(record.deadline);
                    if change == TabsChange::Unchanged {
                        if record == before {
                            return Ok((Write::Keep, None));
                        }
                        // A tab held for its linger (the deadline is its end), or only a
                        // departure to remember: nothing for dashboards yet.
                        return Ok((Write::Save(record), Some((Vec::new(), deadline, None))));
                    }
                    let (write, mut messages, subject) = self.settle(site, record, change, now);
                    messages.extend(ended.map(ServerMessage::from));
                    Ok((write, Some((messages, deadline, subject))))
                },
                |left| left.as_ref().map_or(0, |(messages, _, _)| messages.len()),
            )
            .await?;
        let Some((messages, deadline, subject)) = left else {
            return Ok(Outcome::default());
        };
        Ok(Outcome {
            messages: self.sequence_numbered(site, messages, numbered).await?,
            deadline,
            alert_subjects: subject.into_iter().collect(),
            ..Outcome::default()
        })
    }

    /// What to write for `record` after its tabs changed by `change`, and what dashboards
    /// hear once it is written.
    ///
    /// A removal closes the visit (after the caller ended the invite), to be written to
    /// history before the record.
    fn settle(
        &self,
        site: &SiteId,
        mut record: VisitorRecord,
        change: TabsChange,
        now: Timestamp,
    ) -> Settled {
        match change {
            TabsChange::Removed(reason) => {
                let removed = ServerMessage::VisitorRemoved {
                    visitor_id: record.visitor_id.clone(),
                    reason,
                };
                // The visit as it closes, for the alert rules (its final engagement).
                let subject = record
                    .visit
                    .is_some()
                    .then(|| alerts::subject_of(&record, now, false));
                let closed = record.close_visit(site, reason);
                if record.is_tombstone() {
                    // Kept for the departure quiet period, then removed silently by a sweep.
                    (Write::Save(record).closing(closed), vec![removed], subject)
                } else {
                    (Write::Remove.closing(closed), vec![removed], subject)
                }
            }
            TabsChange::TabsClosed => {
                let update = ServerMessage::VisitorUpdate {
                    visitor: Box::new(self.view(&record, now)),
                    event: UpdateKind::TabClosed,
                };
                (Write::Save(record), vec![update], None)
            }
            TabsChange::Unchanged => (Write::Keep, Vec::new(), None),
        }
    }

    /// Time-driven work for a site: drops expired tabs and removes expired visitors, and
    /// re-evaluates the support rules of due users (time-driven triggers, windows ageing out,
    /// retention).
    ///
    /// Costs O(k · log n) for k due records (the store's deadline index). Spurious calls are
    /// harmless. The outcome's `deadline` is the site's next deadline; it is `<= now` only
    /// when more than [`Limits::sweep_batch`](crate::config::Limits) records were due, and
    /// then the host calls again.
    pub async fn sweep(&self, site: &SiteId) -> Result<Outcome, ServiceError> {
        let cfg = &self.config.presence;
        let now = self.clock.now();
        let (mut messages, notifications) = self.sweep_users(site, now).await?;
        let due = self
            .store
            .due_visitors(site, now, self.config.limits.sweep_batch)
            .await?;
        // The due visitors are settled a few at a time: with history on, a close is several
        // history writes before the removal, and one after another they held back the pass
        // (and every tab or visitor due later in it) by a close's time per visitor ahead.
        let swept: Vec<_> = stream::iter(due)
            .map(|current| async move {
                let id = current.value.visitor_id.clone();
                self.update_numbered(
                    site,
                    &id,
                    Some(Some(current)),
                    |current| {
                        let Some(current) = current else {
                            return Ok((Write::Keep, (Vec::new(), None)));
                        };
                        let mut record = current.value.clone();
                        let change = record.expire(now, cfg);
                        let ended = match change {
                            TabsChange::Removed(_) => record.end_invite(now, cfg),
                            _ => record.expire_invite(now, cfg),
                        };
                        let ended = ended.map(ServerMessage::from);
                        Ok(if current.value.is_tombstone() {
                            // A departed visitor's quiet period is over: forget it silently.
                            if current.value.deadline <= now {
                                (Write::Remove, (Vec::new(), None))
                            } else {
                                (Write::Keep, (Vec::new(), None))
                            }
                        } else if change == TabsChange::Unchanged
                            && (ended.is_some() || record.deadline != current.value.deadline)
                        {
                            // An expired invite, or a stale index entry: rewrite to move it.
                            (Write::Save(record), (ended.into_iter().collect(), None))
                        } else {
                            let (write, mut messages, subject) =
                                self.settle(site, record, change, now);
                            messages.extend(ended);
                            (write, (messages, subject))
                        })
                    },
                    |(messages, _)| messages.len(),
                )
                .await
            })
            .buffered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        // Messages numbered with their writes keep their numbers; the rest are numbered now.
        let mut numbered = Vec::new();
        let mut alert_subjects = Vec::new();
        for swept in swept {
            match swept {
                Ok(((m, subject), Some(numbers))) => {
                    alert_subjects.extend(subject);
                    numbered.extend(self.sequence_numbered(site, m, Some(numbers)).await?);
                }
                Ok(((mut m, subject), None)) => {
                    alert_subjects.extend(subject);
                    messages.append(&mut m);
                }
                // Concurrent writers kept moving it: they re-armed its deadline.
                Err(ServiceError::Contention(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut messages = self.sequence(site, messages).await?;
        if !numbered.is_empty() {
            messages.append(&mut numbered);
            messages.sort_by_key(|m| m.seq);
        }
        Ok(Outcome {
            messages,
            deadline: self.next_deadline(site).await?,
            notifications,
            alert_subjects,
            ..Outcome::default()
        })
    }

    /// Deletes a visitor's data at once (a privacy request); dashboards hear
    /// `VISITOR_REMOVED` with reason `deleted`. Returns whether there was anything to delete.
    ///
    /// A deletion is also an opt-out: what is left is a tombstone holding only the id, for
    /// [`PrivacyConfig::opt_out_retention`](crate::config::PrivacyConfig), during which the
    /// visitor's tracking calls are refused ([`ServiceError::OptedOut`]) instead of
    /// recreating it. It is left for an id the store does not hold too (an opt-out request for
    /// a visitor who is gone). The deletion is durable ([`Store::sync`]) before this returns.
    pub async fn delete_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<(bool, Outcome), ServiceError> {
        let now = self.clock.now();
        let until = now.plus(self.config.privacy.opt_out_retention);
        let ((deleted, messages), numbered) = self
            .update_numbered(
                site,
                visitor_id,
                None,
                |current: Option<Versioned<VisitorRecord>>| {
                    let tombstone = VisitorRecord::opted_out(visitor_id, now, until);
                    let Some(current) = current else {
                        return Ok((Write::Save(tombstone), (false, Vec::new())));
                    };
                    let deleted = current.value.opted_out_until.is_none();
                    let mut messages = Vec::new();
                    if current.value.live_at(now, &self.config.presence) {
                        messages.push(ServerMessage::VisitorRemoved {
                            visitor_id: visitor_id.to_owned(),
                            reason: RemovalReason::Deleted,
                        });
                        let mut record = current.value;
                        let ended = record.end_invite(now, &self.config.presence);
                        messages.extend(ended.map(ServerMessage::from));
                    }
                    Ok((Write::Save(tombstone), (deleted, messages)))
                },
                |(_, messages)| messages.len(),
            )
            .await?;
        // Its open visit went with the record; its closed visits go too.
        let erased = self.erase_history(site, visitor_id).await?;
        let outcome = Outcome {
            messages: self.sequence_numbered(site, messages, numbered).await?,
            deadline: Some(until),
            ..Outcome::default()
        };
        self.store.sync().await?;
        Ok((deleted || erased > 0, outcome))
    }

    /// The site's next deadline, as stored: the earliest of its visitors' and its support
    /// users'.
    pub async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, ServiceError> {
        let visitors = self.store.next_deadline(site).await?;
        let users = self.store.next_user_deadline(site).await?;
        Ok(visitors.into_iter().chain(users).min())
    }

    /// The visitors live now (never one whose grace has passed, swept or not), oldest first.
    pub async fn live_visitors(&self, site: &SiteId) -> Result<Vec<VisitorView>, ServiceError> {
        let now = self.clock.now();
        let mut records: Vec<VisitorRecord> = self
            .store
            .visitors(site)
            .await?
            .into_iter()
            .filter(|r| r.live_at(now, &self.config.presence))
            .collect();
        records.sort_by(|a, b| (a.first_seen, &a.visitor_id).cmp(&(b.first_seen, &b.visitor_id)));
        Ok(records.iter().map(|r| self.view(r, now)).collect())
    }

    /// `INITIAL_VISITORS` with the site's current sequence number.
    ///
    /// The number is read before the list, so every change numbered up to it is in the list
    /// (a change numbered after it may be too; applying it again is harmless).
    pub async fn snapshot(&self, site: &SiteId) -> Result<Sequenced, ServiceError> {
        let seq = self.store.sequence(site).await?;
        let visitors = self.live_visitors(site).await?;
        Ok(Sequenced {
            message: ServerMessage::InitialVisitors { visitors },
            seq,
        })
    }

    /// The `INITIAL_VISITORS` text for a dashboard socket: [`snapshot`](Self::snapshot)'s,
    /// or the one built for the site less than
    /// [`Limits::snapshot_reuse`](crate::config::Limits::snapshot_reuse) ago when the site's
    /// sequence number has not moved since.
    pub(crate) async fn snapshot_text(&self, site: &SiteId) -> Result<String, ServiceError> {
        let reuse = self.config.limits.snapshot_reuse;
        if reuse.is_zero() {
            return Ok(self.snapshot(site).await?.to_json());
        }
        let seq = self.store.sequence(site).await?;
        let now = self.clock.now();
        let lock = || self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(text) = lock()
            .get(site)
            .filter(|c| c.seq == seq && now >= c.built_at && now < c.built_at.plus(reuse))
            .map(|c| c.text.clone())
        {
            return Ok(text.to_string());
        }
        // Built on the number just read, as `snapshot` does (number first, then the visitors).
        let text = Sequenced {
            message: ServerMessage::InitialVisitors {
                visitors: self.live_visitors(site).await?,
            },
            seq,
        }
        .to_json();
        let mut cached = lock();
        // Only sites whose texts are still reusable stay.
        cached.retain(|_, c| now < c.built_at.plus(reuse));
        cached.insert(
            site.clone(),
            SnapshotText {
                seq,
                built_at: now,
                text: Arc::from(text.as_str()),
            },
        );
        Ok(text)
    }

    /// A reply to one dashboard, carrying the current sequence number.
    pub async fn reply(
        &self,
        site: &SiteId,
        message: ServerMessage,
    ) -> Result<Sequenced, ServiceError> {
        Ok(Sequenced {
            message,
            seq: self.store.sequence(site).await?,
        })
    }

    /// 64 bits from the injected id generator (ticket nonces).
    pub(crate) fn next_random(&self) -> u64 {
        self.ids.next_u64()
    }

    /// A fresh invite id (`inv_` and 16 hex digits) from the injected generator.
    pub fn new_invite_id(&self) -> String {
        self.ids.id("inv")
    }

    /// Invites a live visitor to a video call.
    ///
    /// The visitor must be live ([`ServiceError::VisitorNotFound`]). The visitor's current
    /// invite having the same id makes this an idempotent no-op returning it (no message);
    /// another open invite is refused ([`InviteError::AlreadyOpen`]) unless it is due, in
    /// which case it expires first (its message). Dashboards hear Part A's
    /// `VIDEO_INVITE_SENT`, then `VIDEO_INVITE_UPDATE` with state `sent`.
    pub async fn send_invite(
        &self,
        site: &SiteId,
        new: NewInvite,
    ) -> Result<(Invite, Outcome), ServiceError> {
        let cfg = &self.config.presence;
        let now = self.clock.now();
        let (sent, numbered) = self
            .update_numbered(
                site,
                &new.visitor_id,
                None,
                |current: Option<Versioned<VisitorRecord>>| {
                    let current = current
                        .filter(|v| v.value.live_at(now, cfg))
                        .ok_or(ServiceError::VisitorNotFound)?;
                    let mut record = current.value;
                    if let Some(existing) = record
                        .invite
                        .as_deref()
                        .filter(|i| i.invite_id == new.invite_id)
                    {
                        return Ok((Write::Keep, (existing.clone(), None)));
                    }
                    let mut messages = Vec::with_capacity(3);
                    messages.extend(record.expire_invite(now, cfg).map(ServerMessage::from));
                    if let Some(open) = record.open_invite() {
                        return Err(InviteError::AlreadyOpen {
                            invite_id: open.invite_id.clone(),
                        }
                        .into());
                    }
                    let invite = Invite::new(new.clone(), now, &self.config.invites);
                    messages.push(invite.part_a_message());
                    messages.push(invite.message().into());
                    // The visit keeps the previous invite's final state, and this one's.
                    record.note_invite();
                    record.invite = Some(Box::new(invite.clone()));
                    record.note_invite();
                    record.refresh_deadline(cfg);
                    let deadline = record.deadline;
                    Ok((Write::Save(record), (invite, Some((messages, deadline)))))
                },
                |(_, sent)| sent.as_ref().map_or(0, |(messages, _)| messages.len()),
            )
            .await?;
        let (invite, Some((messages, deadline))) = sent else {
            // The same invite again: an idempotent no-op.
            return Ok((sent.0, Outcome::default()));
        };
        let push = serde_json::to_string(&invite.visitor_message(now)).unwrap_or_default();
        let outcome = Outcome {
            messages: self.sequence_numbered(site, messages, numbered).await?,
            deadline: Some(deadline),
            visitor_messages: vec![(invite.visitor_id.clone(), push)],
            ..Outcome::default()
        };
        // An invite is committed before it is acknowledged.
        self.store.sync().await?;
        Ok((invite, outcome))
    }

    /// Applies `event` to the visitor's invite `invite_id` (the visitor's answers, a cancel).
    ///
    /// An unknown invite (or visitor) is [`InviteError::NotFound`]; an event contradicting a
    /// final state is [`InviteError::Conflict`] (nothing changed); an event already reflected
    /// is a no-op without messages. An event reaching an open invite at or after its expiry
    /// finds it expired: the expiry is stored and reported, and
    /// [`InviteChange::refused`] names the conflict.
    pub async fn invite_event(
        &self,
        site: &SiteId,
        visitor_id: &str,
        invite_id: &str,
        event: InviteEvent,
    ) -> Result<InviteChange, ServiceError> {
        let cfg = &self.config.presence;
        let now = self.clock.now();
        let not_found = || InviteError::NotFound {
            invite_id: invite_id.to_owned(),
        };
        let ((invite, changed), numbered) = self
            .update_numbered(
                site,
                visitor_id,
                None,
                |current: Option<Versioned<VisitorRecord>>| {
                    let mut record = current.ok_or_else(not_found)?.value;
                    let Some(invite) = record
                        .invite
                        .as_deref_mut()
                        .filter(|i| i.invite_id == invite_id)
                    else {
                        return Err(not_found().into());
                    };
                    let Some(message) = invite.handle(event, now)? else {
                        return Ok((Write::Keep, (invite.clone(), None)));
                    };
                    let refused = (invite.state != event.target()).then(|| InviteError::Conflict {
                        invite_id: invite_id.to_owned(),
                        current: invite.state,
                        requested: event.target(),
                    });
                    let invite = invite.clone();
                    record.note_invite();
                    record.refresh_deadline(cfg);
                    let deadline = (!record.tabs.is_empty()).then_some(record.deadline);
                    let changed = (ServerMessage::from(message), deadline, refused);
                    Ok((Write::Save(record), (invite, Some(changed))))
                },
                |(_, changed)| usize::from(changed.is_some()),
            )
            .await?;
        let Some((message, deadline, refused)) = changed else {
            return Ok(InviteChange {
                invite,
                outcome: Outcome::default(),
                refused: None,
            });
        };
        let outcome = Outcome {
            messages: self
                .sequence_numbered(site, vec![message], numbered)
                .await?,
            deadline,
            ..Outcome::default()
        };
        // An invite's change (an answer, a cancel) is committed before it is acknowledged.
        self.store.sync().await?;
        Ok(InviteChange {
            invite,
            outcome,
            refused,
        })
    }

    /// The company a new visit starts with, the enrichment event to count, and the address
    /// to look up when the cache could not answer.
    async fn first_company(
        &self,
        client: &ClientInfo,
        bot: bool,
        now: Timestamp,
    ) -> Result<FirstCompany, ServiceError> {
        let Some(ip) = client.ip else {
            // The host could not tell the address: nothing to look up or count.
            return Ok(FirstCompany {
                is_bot: bot,
                company: Company::unknown(),
                event: None,
                lookup: None,
            });
        };
        let signals = VisitorSignals {
            is_bot: bot,
            sends_gpc: client.sends_gpc,
            site_honours_gpc: client.site_honours_gpc,
            sends_dnt: client.sends_dnt,
            site_honours_dnt: client.site_honours_dnt,
        };
        let target = match lookup_target(ip, signals) {
            Ok(target) => target,
            Err(cause) => {
                return Ok(FirstCompany {
                    is_bot: bot,
                    // Named by the address (a local bot is still a direct visitor).
                    company: Company::fallback_for(Some(ip)),
                    event: Some(EnrichmentEvent::Skipped(cause)),
                    lookup: None,
                });
            }
        };
        let cached = self.store.cached_lookup(target).await?;
        Ok(match cached.filter(|e| e.is_fresh(now)) {
            Some(entry) => match entry.profile() {
                Some(profile) => FirstCompany {
                    is_bot: bot,
                    company: Company::from_profile(
                        profile,
                        EnrichmentSource::Cache,
                        entry.looked_up_at,
                    ),
                    event: Some(EnrichmentEvent::CacheHit),
                    lookup: None,
                },
                None => FirstCompany {
                    is_bot: bot,
                    company: Company::unknown(),
                    event: Some(EnrichmentEvent::NegativeCacheHit),
                    lookup: None,
                },
            },
            None => FirstCompany {
                is_bot: bot,
                company: Company::unknown(),
                event: Some(EnrichmentEvent::CacheMiss),
                lookup: Some(target),
            },
        })
    }

    async fn record_enrichment_logged(&self, site: &SiteId, events: &[EnrichmentEvent]) {
        if let Err(e) = self.store.record_enrichment(site, events).await {
            // Accounting must not fail the visitor's request.
            tracing::warn!(site = %site, error = %e, "could not record enrichment stats");
        }
    }

    /// The shared cache's entry for `ip` if it is still fresh.
    pub async fn fresh_cached_lookup(
        &self,
        ip: IpAddr,
    ) -> Result<Option<CachedLookup>, ServiceError> {
        let now = self.clock.now();
        Ok(self
            .store
            .cached_lookup(ip)
            .await?
            .filter(|e| e.is_fresh(now)))
    }

    /// Stores a finished provider lookup of `ip` in the shared cache, as
    /// [`Config::enrichment_cache`] says (profiles and "not found" only). Call it once per
    /// settled lookup, before [`complete_lookup`](Self::complete_lookup) for its waiters.
    /// Returns the stored entry.
    pub async fn cache_lookup(
        &self,
        ip: IpAddr,
        result: &Result<CompanyProfile, LookupFailure>,
    ) -> Result<Option<CachedLookup>, ServiceError> {
        let entry = self
            .config
            .enrichment_cache
            .entry_for(result, self.clock.now());
        if let Some(entry) = &entry {
            self.store.put_cached_lookup(ip, entry).await?;
        }
        Ok(entry)
    }

    /// A provider lookup for a waiting visitor finished: a found company replaces the
    /// visitor's fallback (source `provider`) and dashboards hear `VISITOR_UPDATE` with event
    /// `enriched`. Nothing changes for a failure, for a visitor no longer live, or for one
    /// whose company is no longer a fallback.
    pub async fn complete_lookup(
        &self,
        site: &SiteId,
        visitor_id: &str,
        result: &Result<CompanyProfile, LookupFailure>,
    ) -> Result<Outcome, ServiceError> {
        match result {
            Ok(profile) => {
                let company =
                    Company::from_profile(profile, EnrichmentSource::Provider, self.clock.now());
                self.enrich_visitor(site, visitor_id, company).await
            }
            Err(_) => Ok(Outcome::default()),
        }
    }

    /// Fills a waiting visitor's company from a cache entry (source `cache`): for a visitor
    /// whose lookup was asked for just as another finished and filled the cache.
    pub async fn apply_cached_lookup(
        &self,
        site: &SiteId,
        visitor_id: &str,
        entry: &CachedLookup,
    ) -> Result<Outcome, ServiceError> {
        match entry.profile() {
            Some(profile) => {
                let company =
                    Company::from_profile(profile, EnrichmentSource::Cache, entry.looked_up_at);
                self.enrich_visitor(site, visitor_id, company).await
            }
            None => Ok(Outcome::default()),
        }
    }

    async fn enrich_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        company: Company,
    ) -> Result<Outcome, ServiceError> {
        let cfg = &self.config.presence;
        let (enriched, numbered) = self
            .update_numbered(
                site,
                visitor_id,
                None,
                |current: Option<Versioned<VisitorRecord>>| {
                    let now = self.clock.now();
                    let Some(current) = current.filter(|v| {
                        v.value.live_at(now, cfg)
                            && v.value.company.source == EnrichmentSource::Fallback
                    }) else {
                        return Ok((Write::Keep, None));
                    };
                    let mut record = current.value;
                    record.company = company.clone().shared();
                    let message = ServerMessage::VisitorUpdate {
                        visitor: Box::new(self.view(&record, now)),
                        event: UpdateKind::Enriched,
                    };
                    let subject = alerts::subject_of(&record, now, true);
                    Ok((Write::Save(record), Some((message, subject))))
                },
                |enriched| usize::from(enriched.is_some()),
            )
            .await?;
        let (message, subject) = enriched.unzip();
        Ok(Outcome {
            messages: self
                .sequence_numbered(site, message.into_iter().collect(), numbered)
                .await?,
            alert_subjects: subject.into_iter().collect(),
            ..Outcome::default()
        })
    }

    /// Adds enrichment events to the site's counters (hosts count provider requests,
    /// single-flight joins and failures here).
    pub async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), ServiceError> {
        Ok(self.store.record_enrichment(site, events).await?)
    }

    /// The site's enrichment counters.
    pub async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, ServiceError> {
        Ok(self.store.enrichment_stats(site).await?)
    }
}

/// Forgets the oldest departures beyond `max` (at least one is kept: the tab that just left),
/// so exit beacons naming ever new tab ids cannot grow a record.
fn cap_departures(record: &mut VisitorRecord, max: usize) {
    let max = max.max(1);
    if record.left_tabs.len() > max {
        record.left_tabs.sort_by_key(|l| l.at);
        let excess = record.left_tabs.len() - max;
        record.left_tabs.drain(..excess);
    }
}

/// How a new visit starts, enrichment-wise.
#[derive(Clone)]
struct FirstCompany {
    /// Whether the visitor's user agent is a known bot.
    is_bot: bool,
    company: Company,
    /// `None` when the address is unknown: nothing to count.
    event: Option<EnrichmentEvent>,
    lookup: Option<IpAddr>,
}

/// What the transition of a tracker event decided.
enum TrackStep {
    /// A ping in flight when its tab closed: nothing changes.
    Ignored,
    /// The visitor was deleted (opted out): nothing changes, the tracker is told.
    OptedOut,
    /// A new visit starts: read its company from the shared cache, then try again on this
    /// record (as read, nothing written).
    NeedsCompany(Box<Option<Versioned<VisitorRecord>>>),
    /// The record is written.
    Tracked(Box<Tracked>),
}

/// A tracker event's written result, for the outcome.
/// What [`Tippen::settle`] makes of a tabs change: the write, the dashboards' messages, and a
/// closing visit for the alert rules.
type Settled = (
    Write<VisitorRecord>,
    Vec<ServerMessage>,
    Option<crate::alerts::Subject>,
);

struct Tracked {
    /// Unsequenced dashboard messages, in order.
    messages: Vec<ServerMessage>,
    /// The written record's deadline.
    deadline: Timestamp,
    /// The visitor's open invite, to show on its page.
    invite: Option<InviteToVisitor>,
    /// The company this new visit started with (`None`: not a new visit).
    enrichment: Option<FirstCompany>,
    /// For the alert rules: a new visit or a page view.
    subject: Option<crate::alerts::Subject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_are_flagged() {
        assert!(is_bot(Some(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        )));
        assert!(!is_bot(Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
        )));
        assert!(!is_bot(None));
    }
}
