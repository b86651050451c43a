//! Presence of one visitor: its tabs, page views and deadline, as pure functions of `now`.
//!
//! A visitor is live while at least one tab is live. A tab is live until its last event plus the
//! grace of its visibility ([`PresenceConfig::visible_grace`] or
//! [`PresenceConfig::hidden_grace`]); at that instant (`now >= expiry`) it is gone. The record's
//! [`deadline`](VisitorRecord::deadline) is the earliest tab expiry: the next moment something
//! about this visitor changes without any input. Stores index records by it so that a sweep
//! touches only what is due. While the visitor has tabs, an open video invite's expiry
//! ([`VisitorRecord::invite`]) counts too: the deadline is the earlier of the two.
//!
//! An exit beacon does not drop its tab at once: the tab is held for
//! [`PresenceConfig::leave_linger`] ([`Tab::left_at`]), since a reload, a back/forward
//! navigation or a page restored from the back/forward cache sends the same beacon as a close.
//! An event from that tab (the next page, same tab id) or another tab of the visitor within the
//! linger keeps the visitor and its counts; otherwise the tab goes when the linger ends, and
//! the visitor with reason `left` if it was the last.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::PresenceConfig;
use crate::history::{OpenVisit, Place, Visit};
use crate::invite::{Invite, InviteEvent, InviteMessage};
pub use crate::protocol::{EnrichmentSource, RemovalReason, UpdateKind, Visibility};
use crate::protocol::{OpenInviteView, TabView, VisitorView};
use crate::site::SiteId;

/// What a tracker reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    /// A page was (re)loaded or the SPA navigated.
    PageView,
    /// Still here.
    Heartbeat,
    /// The tab's visibility changed.
    VisibilityChange,
}

/// One tracker event for one tab, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// What happened.
    pub kind: PingKind,
    /// The tab that sent it.
    pub tab_id: String,
    /// The tab's current URL (empty: unchanged).
    pub url: String,
    /// The tab's visibility.
    pub visibility: Visibility,
    /// `document.referrer`, if sent.
    pub referrer: Option<String>,
    /// `navigator.userAgent`, if sent.
    pub user_agent: Option<String>,
    /// The `website` field.
    pub website: String,
    /// The client's own timestamp, recorded as sent and never used for expiry.
    pub client_timestamp: Option<String>,
    /// The page (document) that sent it, if the tracker says: new on every page load.
    pub page_id: Option<String>,
}

/// One tab of a visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tab {
    /// Tracker-chosen tab id.
    pub tab_id: String,
    /// Current URL (shared with the open visit's
    /// [`landing_url`](crate::history::OpenVisit::landing_url) while the tab shows the landing
    /// page).
    pub url: Arc<str>,
    /// Current visibility.
    pub visibility: Visibility,
    /// Server time of the tab's last event.
    pub last_seen: Timestamp,
    /// When the tab's exit beacon arrived, if it sent one since its last event: the tab is
    /// dropped [`PresenceConfig::leave_linger`] later unless it reports again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<Timestamp>,
    /// The page (document) of the tab's last page view, if the tracker named it: an exit
    /// beacon for another page is for one the tab has already left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_id: Option<Box<str>>,
}

impl Tab {
    /// When this tab stops being live: its grace after its last event, or the end of its
    /// leave linger if that comes first.
    pub fn expiry(&self, cfg: &PresenceConfig) -> Timestamp {
        let grace = match self.visibility {
            Visibility::Visible => cfg.visible_grace,
            Visibility::Hidden => cfg.hidden_grace,
        };
        let expiry = self.last_seen.plus(grace);
        match self.left_at {
            Some(at) => expiry.min(at.plus(cfg.leave_linger)),
            None => expiry,
        }
    }

    /// Whether the tab is live at `now`.
    pub fn live_at(&self, now: Timestamp, cfg: &PresenceConfig) -> bool {
        now < self.expiry(cfg)
    }

    /// Its last event or exit beacon, whichever came later.
    pub fn last_event(&self) -> Timestamp {
        self.left_at
            .map_or(self.last_seen, |at| at.max(self.last_seen))
    }
}

/// A tab that sent an exit beacon, remembered for [`PresenceConfig::departure_quiet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftTab {
    /// The tab.
    pub tab_id: String,
    /// When its beacon arrived.
    pub at: Timestamp,
}

/// Company data shown for a visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// Company name (`Unknown Company`, `Direct Visitor` as fallbacks).
    pub name: String,
    /// Location shown in the table.
    pub location: String,
    /// Company web domain.
    pub domain: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Revenue range.
    pub revenue: Option<String>,
    /// Employee range.
    pub employees: Option<String>,
    /// Location as reported by the provider.
    pub enriched_location: Option<String>,
    /// Source of this data.
    pub source: EnrichmentSource,
    /// Whether it came from the cache.
    pub is_cached: bool,
    /// When it was looked up.
    pub enriched_at: Option<Timestamp>,
}

impl Company {
    /// The fallback for a visitor from a private or local address.
    pub fn direct_visitor() -> Self {
        Company::fallback(crate::enrichment::DIRECT_VISITOR)
    }

    /// The fallback for a visitor whose company is not known.
    pub fn unknown() -> Self {
        Company::fallback(crate::enrichment::UNKNOWN_COMPANY)
    }

    /// The fallback for a visitor at `ip` (`None`: address unknown), before any lookup.
    pub(crate) fn fallback_for(ip: Option<std::net::IpAddr>) -> Self {
        match ip
            .map(crate::enrichment::classify)
            .and_then(|c| c.skip_reason())
        {
            Some(reason) => Company::fallback(reason.fallback_company()),
            None => Company::unknown(),
        }
    }

    /// The company of a provider's profile, from `source` (`Provider`, or `Cache` with
    /// `is_cached`), looked up at `enriched_at`.
    pub(crate) fn from_profile(
        profile: &crate::enrichment::CompanyProfile,
        source: EnrichmentSource,
        enriched_at: Timestamp,
    ) -> Self {
        Company {
            name: profile.name.clone(),
            location: profile
                .location
                .clone()
                .unwrap_or_else(|| "Unknown".to_owned()),
            domain: profile.domain.clone(),
            industry: profile.industry.clone(),
            revenue: profile.revenue_range.clone(),
            employees: profile.employee_range.clone(),
            enriched_location: profile.location.clone(),
            source,
            is_cached: source == EnrichmentSource::Cache,
            enriched_at: Some(enriched_at),
        }
    }

    /// This company as a shared value: a fallback equal to [`Company::unknown`] or
    /// [`Company::direct_visitor`] is the one allocation every record shares; any other
    /// company gets its own.
    pub fn shared(self) -> Arc<Company> {
        static FALLBACKS: LazyLock<[Arc<Company>; 2]> = LazyLock::new(|| {
            [
                Arc::new(Company::unknown()),
                Arc::new(Company::direct_visitor()),
            ]
        });
        if self.source == EnrichmentSource::Fallback
            && let Some(shared) = FALLBACKS.iter().find(|f| ***f == self)
        {
            return shared.clone();
        }
        Arc::new(self)
    }

    /// The fallback company named `name` (source `fallback`).
    pub fn fallback(name: &str) -> Self {
        Company {
            name: name.to_owned(),
            location: "Unknown".to_owned(),
            domain: None,
            industry: None,
            revenue: None,
            employees: None,
            enriched_location: None,
            source: EnrichmentSource::Fallback,
            is_cached: false,
            enriched_at: None,
        }
    }
}

/// Most distinct texts [`shared_text`] keeps; when full it starts over (texts already handed
/// out stay valid), so memory stays bounded whatever clients send.
const SHARED_TEXTS: usize = 4096;

/// `text` as a shared string: the same allocation for every live visitor sending the same
/// text (a site's `website`, a browser's user agent, repeated across thousands of visitors).
/// A bounded table; texts beyond its room are shared again once it starts over.
pub fn shared_text(text: &str) -> Arc<str> {
    static TEXTS: LazyLock<std::sync::Mutex<std::collections::HashSet<Arc<str>>>> =
        LazyLock::new(Default::default);
    let mut texts = TEXTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = texts.get(text) {
        return shared.clone();
    }
    if texts.len() >= SHARED_TEXTS {
        texts.clear();
    }
    let shared: Arc<str> = Arc::from(text);
    texts.insert(shared.clone());
    shared
}

fn shared_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    <std::borrow::Cow<'de, str>>::deserialize(d).map(|s| shared_text(&s))
}

fn shared_opt_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    <Option<std::borrow::Cow<'de, str>>>::deserialize(d).map(|s| s.map(|s| shared_text(&s)))
}

/// Reads a record's company as [`Company::shared`].
fn shared_company<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<Company>, D::Error> {
    Company::deserialize(d).map(Company::shared)
}

/// A visitor as stored: everything the dashboard shows, plus the deadline index key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorRecord {
    /// Tracker-chosen visitor id (`visitor_<ms>_<random>`).
    pub visitor_id: String,
    /// The `website` field of the last event (shared: see [`shared_text`]).
    #[serde(deserialize_with = "shared_str")]
    pub website: Arc<str>,
    /// Server time this visit started.
    pub first_seen: Timestamp,
    /// Server time of the last event.
    pub last_activity: Timestamp,
    /// Page views in this visit.
    pub page_views: u32,
    /// Referrer of the first page view.
    pub referrer: Option<Box<str>>,
    /// Last user agent (shared: see [`shared_text`]).
    #[serde(default, deserialize_with = "shared_opt_str")]
    pub user_agent: Option<Arc<str>>,
    /// Whether the user agent is a known bot.
    pub is_bot: bool,
    /// The client's last timestamp, as sent.
    pub client_timestamp: Option<Box<str>>,
    /// Company data. Shared: most visitors carry one of the fallbacks
    /// ([`Company::unknown`], [`Company::direct_visitor`]), and a record read back from a
    /// store shares them too ([`Company::shared`]), so a live visitor costs a pointer here.
    #[serde(deserialize_with = "shared_company")]
    pub company: Arc<Company>,
    /// Live tabs, most recently seen last.
    pub tabs: Vec<Tab>,
    /// Tabs that left recently (see [`PresenceConfig::departure_quiet`]). A record with no
    /// tabs but some left tabs is a departed visitor's tombstone: not listed, removed silently
    /// at its deadline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_tabs: Vec<LeftTab>,
    /// The visitor's current (or last) video invite: at most one open invite per visitor.
    /// Boxed: most visitors have none, and every live visitor's record would otherwise carry
    /// an invite's room inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<Box<Invite>>,
    /// Earliest tab expiry, or the open invite's expiry if earlier (a tombstone: when its
    /// quiet period ends); [`Timestamp::EPOCH`] when there is nothing to wait for.
    pub deadline: Timestamp,
    /// Set on a deleted visitor's opt-out tombstone (nothing else is kept): until then its
    /// tracking calls are refused instead of recreating it (see
    /// [`PrivacyConfig`](crate::config::PrivacyConfig)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opted_out_until: Option<Timestamp>,
    /// The visit in progress (see [`crate::history`]): opened by the first event, kept in
    /// this same record, taken out and closed when presence removes the visitor. `None` on
    /// tombstones. Only the events that change it (a page opened, a tab seen or dropped, an
    /// exit beacon, an invite) write it; a heartbeat leaves it shared with the stored record
    /// (see [`OpenVisit::changed_by`]), so cloning a record costs no copy of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit: Option<Arc<OpenVisit>>,
}

/// Result of removing tabs from a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TabsChange {
    /// Nothing was removed.
    Unchanged,
    /// Some tabs were removed; others remain.
    TabsClosed,
    /// The last tab is gone: the visitor is removed for this reason.
    Removed(RemovalReason),
}

impl VisitorRecord {
    /// Whether `self` differs from `before` only in what a plain heartbeat moves: the time of
    /// the last activity, the client's timestamp, the tabs' `last_seen` and their order, and
    /// a deadline that did not move earlier. Such a change may be stored as a touch
    /// ([`Store::touch_visitor`](crate::Store::touch_visitor)): no dashboard sees it, and a
    /// store shared by several replicas need not rewrite the record for it.
    pub fn only_touched_since(&self, before: &VisitorRecord) -> bool {
        // Destructured, so a new field has to be placed on one side or the other.
        let VisitorRecord {
            visitor_id,
            website,
            first_seen,
            last_activity: _,
            page_views,
            referrer,
            user_agent,
            is_bot,
            client_timestamp: _,
            company,
            tabs,
            left_tabs,
            invite,
            deadline,
            opted_out_until,
            visit,
        } = self;
        let same_tabs = tabs.len() == before.tabs.len()
            && tabs.iter().all(|t| {
                before.tabs.iter().any(|b| {
                    b.tab_id == t.tab_id
                        && b.url == t.url
                        && b.visibility == t.visibility
                        && b.left_at == t.left_at
                        && b.page_id == t.page_id
                })
            });
        same_tabs
            && *deadline >= before.deadline
            && *visitor_id == before.visitor_id
            && *website == before.website
            && *first_seen == before.first_seen
            && *page_views == before.page_views
            && *referrer == before.referrer
            && *user_agent == before.user_agent
            && *is_bot == before.is_bot
            && *company == before.company
            && *left_tabs == before.left_tabs
            && *invite == before.invite
            && *opted_out_until == before.opted_out_until
            && *visit == before.visit
    }

    /// Starts a visit with its first ping.
    pub fn start(
        visitor_id: &str,
        ping: &Ping,
        is_bot: bool,
        company: Company,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> Self {
        let mut record = VisitorRecord {
            visitor_id: visitor_id.to_owned(),
            website: shared_text(&ping.website),
            first_seen: now,
            last_activity: now,
            page_views: 0,
            referrer: ping
                .referrer
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(Box::from),
            user_agent: ping.user_agent.as_deref().map(shared_text),
            is_bot,
            client_timestamp: ping.client_timestamp.as_deref().map(Box::from),
            company: company.shared(),
            tabs: Vec::new(),
            left_tabs: Vec::new(),
            invite: None,
            deadline: Timestamp::EPOCH,
            opted_out_until: None,
            visit: None,
        };
        record.apply(ping, now, cfg);
        record
    }

    /// A deleted visitor's opt-out tombstone: the id and `until`, nothing else.
    pub(crate) fn opted_out(visitor_id: &str, now: Timestamp, until: Timestamp) -> Self {
        VisitorRecord {
            visitor_id: visitor_id.to_owned(),
            website: Arc::from(""),
            first_seen: now,
            last_activity: now,
            page_views: 0,
            referrer: None,
            user_agent: None,
            is_bot: false,
            client_timestamp: None,
            company: Company::unknown().shared(),
            tabs: Vec::new(),
            left_tabs: Vec::new(),
            invite: None,
            deadline: until,
            opted_out_until: Some(until),
            visit: None,
        }
    }

    /// Whether this is a departed visitor's tombstone (no tabs, some recently left) or a
    /// deleted visitor's opt-out tombstone.
    pub(crate) fn is_tombstone(&self) -> bool {
        self.tabs.is_empty() && (!self.left_tabs.is_empty() || self.opted_out_until.is_some())
    }

    /// Whether this is an opt-out tombstone still in force at `now`.
    pub(crate) fn opted_out_at(&self, now: Timestamp) -> bool {
        self.opted_out_until.is_some_and(|until| now < until)
    }

    /// Whether `ping` comes from a tab that left less than
    /// [`departure_quiet`](PresenceConfig::departure_quiet) ago and is not a page view: such
    /// a ping was in flight when the tab closed and must change nothing.
    pub(crate) fn ignores(&self, ping: &Ping, now: Timestamp, cfg: &PresenceConfig) -> bool {
        ping.kind != PingKind::PageView
            && self
                .left_tabs
                .iter()
                .any(|l| l.tab_id == ping.tab_id && now < l.at.plus(cfg.departure_quiet))
    }

    /// Carries the recently left tabs of a previous visit over to this one.
    pub(crate) fn inherit_departures(
        &mut self,
        previous: &VisitorRecord,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) {
        self.left_tabs = previous
            .left_tabs
            .iter()
            .filter(|l| {
                now < l.at.plus(cfg.departure_quiet)
                    && self.tabs.iter().all(|t| t.tab_id != l.tab_id)
            })
            .cloned()
            .collect();
        self.recompute_deadline(cfg);
    }

    /// Whether some tab is live at `now`.
    pub fn live_at(&self, now: Timestamp, cfg: &PresenceConfig) -> bool {
        self.tabs.iter().any(|t| t.live_at(now, cfg))
    }

    /// Applies a ping to a live record and says what a dashboard should hear, if anything.
    ///
    /// The caller has checked [`live_at`](Self::live_at); expired tabs are dropped first.
    pub fn apply(
        &mut self,
        ping: &Ping,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> Option<UpdateKind> {
        let new_visit = self.tabs.is_empty();
        // A heartbeat or visibility change of a page the tab has left (it arrived after the
        // next page's view: a navigation, a reload) says nothing about the tab's page or
        // visibility now; it only shows the visitor is still there.
        let stale = ping.kind != PingKind::PageView
            && self.is_stale_beacon(Some(&ping.tab_id), ping.page_id.as_deref(), now, cfg);
        self.retain_tabs(|t| t.live_at(now, cfg));
        self.left_tabs
            .retain(|l| l.tab_id != ping.tab_id && now < l.at.plus(cfg.departure_quiet));
        self.last_activity = now;
        if let Some(agent) = ping.user_agent.as_deref()
            && self.user_agent.as_deref() != Some(agent)
        {
            self.user_agent = Some(shared_text(agent));
        }
        if !ping.website.is_empty() && *self.website != *ping.website {
            self.website = shared_text(&ping.website);
        }
        if let Some(sent) = &ping.client_timestamp
            && self.client_timestamp.as_deref() != Some(sent.as_str())
        {
            self.client_timestamp = Some(sent.as_str().into());
        }
        if ping.kind == PingKind::PageView {
            self.page_views = self.page_views.saturating_add(1);
        }
        let visit = self
            .visit
            .get_or_insert_with(|| Arc::new(OpenVisit::start(&self.visitor_id, self.first_seen)));
        let page_view = ping.kind == PingKind::PageView;
        // One copy of a new address, for the tab and (on the visit's first page) the visit.
        let url: Arc<str> = match self.tabs.iter().find(|t| t.tab_id == ping.tab_id) {
            Some(tab) if stale || ping.url.is_empty() || *tab.url == *ping.url => tab.url.clone(),
            _ => Arc::from(ping.url.as_str()),
        };
        let held = |id: &str| id == ping.tab_id || self.tabs.iter().any(|t| t.tab_id == id);
        let forgets = visit.tabs.iter().any(|t| !held(&t.tab_id));
        if forgets || (!stale && visit.changed_by(&ping.tab_id, &ping.url, page_view)) {
            let visit = Arc::make_mut(visit);
            visit.retain_tabs(held);
            if !stale {
                let sent = if ping.url.is_empty() {
                    Arc::default()
                } else {
                    url.clone()
                };
                visit.on_event(&ping.tab_id, &sent, page_view, now);
            }
        }
        let update = match self.tabs.iter().position(|t| t.tab_id == ping.tab_id) {
            Some(i) => {
                let mut tab = self.tabs.remove(i);
                let url_changed = !Arc::ptr_eq(&tab.url, &url);
                let vis_changed = !stale && tab.visibility != ping.visibility;
                if url_changed {
                    tab.url = url;
                }
                if !stale {
                    tab.visibility = ping.visibility;
                }
                tab.last_seen = now;
                if ping.kind == PingKind::PageView && ping.page_id.is_some() {
                    tab.page_id = ping.page_id.as_deref().map(Box::from);
                }
                // It reported again (a reload, a page restored from the back/forward cache):
                // not gone after all.
                tab.left_at = None;
                self.tabs.push(tab);
                if ping.kind == PingKind::PageView || url_changed {
                    Some(UpdateKind::Pageview)
                } else if vis_changed {
                    Some(UpdateKind::Visibility)
                } else {
                    None
                }
            }
            None => {
                self.tabs.push(Tab {
                    tab_id: ping.tab_id.clone(),
                    url,
                    visibility: ping.visibility,
                    last_seen: now,
                    left_at: None,
                    page_id: ping.page_id.as_deref().map(Box::from),
                });
                if self.tabs.len() > cfg.max_tabs_per_visitor.max(1) {
                    let oldest = self.tabs[0].tab_id.clone();
                    self.retain_tabs(|t| t.tab_id != oldest);
                }
                Some(if new_visit {
                    UpdateKind::NewVisitor
                } else {
                    UpdateKind::TabOpened
                })
            }
        };
        self.recompute_deadline(cfg);
        update
    }

    /// An exit beacon for `tab_id` (or every live tab when `None`): the tab is held for the
    /// [leave linger](PresenceConfig::leave_linger) and dropped when it ends unless it reports
    /// again. Tabs already expired are dropped now (with a zero linger, the leaving ones too).
    pub fn leave(
        &mut self,
        tab_id: Option<&str>,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> TabsChange {
        self.leave_page(tab_id, None, now, cfg)
    }

    /// An exit beacon from page `page_id` of `tab_id` (see [`leave`](Self::leave)). A beacon
    /// naming another page than the tab's last page view is stale — a reload's next page
    /// reported before its old page's beacon arrived — and changes nothing.
    pub fn leave_page(
        &mut self,
        tab_id: Option<&str>,
        page_id: Option<&str>,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> TabsChange {
        if self.is_stale_beacon(tab_id, page_id, now, cfg) {
            return TabsChange::Unchanged;
        }
        let quiet = cfg.departure_quiet;
        self.left_tabs.retain(|l| now < l.at.plus(quiet));
        let left: Vec<String> = match tab_id {
            Some(id) => vec![id.to_owned()],
            None => self
                .tabs
                .iter()
                .filter(|t| t.live_at(now, cfg))
                .map(|t| t.tab_id.clone())
                .collect(),
        };
        for tab in self
            .tabs
            .iter_mut()
            .filter(|t| left.contains(&t.tab_id) && t.live_at(now, cfg))
        {
            // A second beacon does not extend the linger (nor the time on its page).
            if tab.left_at.is_none()
                && let Some(visit) = self.visit.as_mut()
            {
                Arc::make_mut(visit).on_leave(Some(&tab.tab_id), now);
            }
            tab.left_at.get_or_insert(now);
        }
        if !quiet.is_zero() {
            self.left_tabs.retain(|l| !left.contains(&l.tab_id));
            self.left_tabs
                .extend(left.into_iter().map(|tab_id| LeftTab { tab_id, at: now }));
        }
        let change = self.drop_expired(now, cfg);
        if change == TabsChange::TabsClosed {
            self.last_activity = self.last_activity.max(now);
        }
        change
    }

    /// Whether a beacon from page `page_id` of `tab_id` is for a page the (live) tab has left.
    fn is_stale_beacon(
        &self,
        tab_id: Option<&str>,
        page_id: Option<&str>,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> bool {
        let (Some(tab_id), Some(page_id)) = (tab_id, page_id) else {
            return false;
        };
        self.tabs.iter().any(|t| {
            t.tab_id == tab_id
                && t.live_at(now, cfg)
                && t.page_id.as_deref().is_some_and(|p| p != page_id)
        })
    }

    /// Drops the tabs expired at `now` (a leaving tab's linger over, or its grace).
    pub fn expire(&mut self, now: Timestamp, cfg: &PresenceConfig) -> TabsChange {
        self.left_tabs
            .retain(|l| now < l.at.plus(cfg.departure_quiet));
        self.drop_expired(now, cfg)
    }

    /// Why the visitor is gone once every tab has expired: `left` when the last tab to expire
    /// had sent its exit beacon, `inactive` otherwise.
    pub fn removal_reason(&self, cfg: &PresenceConfig) -> RemovalReason {
        let last = self.tabs.iter().map(|t| t.expiry(cfg)).max();
        let left = self
            .tabs
            .iter()
            .any(|t| t.left_at.is_some() && Some(t.expiry(cfg)) == last);
        if left {
            RemovalReason::Left
        } else {
            RemovalReason::Inactive
        }
    }

    /// Keeps the tabs for which `keep` is true; the open visit notes the last event of each
    /// tab dropped (how long its page lasted). It forgets such a tab only at the visitor's
    /// next event (in [`apply`](Self::apply)), unless that event comes from the tab itself:
    /// back after its grace, it goes on with its page.
    fn retain_tabs(&mut self, keep: impl Fn(&Tab) -> bool) {
        if self.tabs.iter().all(&keep) {
            return;
        }
        if let Some(visit) = self.visit.as_mut() {
            let visit = Arc::make_mut(visit);
            for tab in self.tabs.iter().filter(|t| !keep(t)) {
                visit.extend_tab(&tab.tab_id, tab.last_event());
            }
        }
        self.tabs.retain(keep);
    }

    fn drop_expired(&mut self, now: Timestamp, cfg: &PresenceConfig) -> TabsChange {
        let before = self.tabs.len();
        let reason = self.removal_reason(cfg);
        self.retain_tabs(|t| t.live_at(now, cfg));
        self.recompute_deadline(cfg);
        if self.tabs.is_empty() {
            TabsChange::Removed(reason)
        } else if self.tabs.len() != before {
            TabsChange::TabsClosed
        } else {
            TabsChange::Unchanged
        }
    }

    /// Takes the open visit out and closes it (see [`OpenVisit::close`]) for `reason`: call
    /// it when presence removes the visitor, after its invite has ended.
    pub fn close_visit(&mut self, site: &SiteId, reason: RemovalReason) -> Option<Visit> {
        let open = self.visit.take()?;
        Some(open.close(site, self, reason))
    }

    /// Notes where the visitor is (the host's request geodata) on the open visit, unless it
    /// already knows.
    pub fn note_place(&mut self, place: Option<&Place>) {
        if let (Some(visit), Some(place)) = (self.visit.as_mut(), place)
            && visit.place().country.is_none()
            && visit.place() != place
        {
            Arc::make_mut(visit).place = (!place.is_empty()).then(|| Box::new(place.clone()));
        }
    }

    /// Notes the current invite's state on the open visit.
    pub(crate) fn note_invite(&mut self) {
        if let (Some(visit), Some(invite)) = (self.visit.as_mut(), self.invite.as_ref()) {
            Arc::make_mut(visit).note_invite(invite);
        }
    }

    /// Whether every tab is hidden (shown as status `idle`).
    pub fn is_idle(&self) -> bool {
        !self.tabs.is_empty() && self.tabs.iter().all(|t| t.visibility == Visibility::Hidden)
    }

    /// The most recently active tab.
    pub fn current_tab(&self) -> Option<&Tab> {
        self.tabs.last()
    }

    /// The open invite, if any.
    pub(crate) fn open_invite(&self) -> Option<&Invite> {
        self.invite.as_deref().filter(|i| i.is_open())
    }

    /// Expires the open invite if it is due at `now` (and updates the deadline); the
    /// dashboard message when it did.
    pub(crate) fn expire_invite(
        &mut self,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> Option<InviteMessage> {
        let message = self.invite.as_mut()?.expire(now);
        self.recompute_deadline(cfg);
        message
    }

    /// Ends the open invite because the visitor left (`visitor_left`, or `expired` when it was
    /// already due); the dashboard message when there was an open invite.
    pub(crate) fn end_invite(
        &mut self,
        now: Timestamp,
        cfg: &PresenceConfig,
    ) -> Option<InviteMessage> {
        let invite = self.invite.as_mut().filter(|i| i.is_open())?;
        let message = invite.handle(InviteEvent::VisitorLeft, now).ok().flatten();
        self.recompute_deadline(cfg);
        message
    }

    /// Recomputes [`deadline`](Self::deadline) after the tabs or the invite changed.
    pub(crate) fn refresh_deadline(&mut self, cfg: &PresenceConfig) {
        self.recompute_deadline(cfg);
    }

    fn recompute_deadline(&mut self, cfg: &PresenceConfig) {
        let invite = self.invite.as_deref().and_then(Invite::deadline);
        self.deadline = match self.tabs.iter().map(|t| t.expiry(cfg)).min() {
            Some(d) => invite.map_or(d, |i| i.min(d)),
            None => self
                .left_tabs
                .iter()
                .map(|l| l.at.plus(cfg.departure_quiet))
                .chain(self.opted_out_until)
                .max()
                .unwrap_or(Timestamp::EPOCH),
        };
    }
}

impl VisitorView {
    /// The view of `record`, showing only tabs live at `now`.
    pub fn of(record: &VisitorRecord, now: Timestamp, cfg: &PresenceConfig) -> Self {
        let c = &record.company;
        let tabs: Vec<TabView> = record
            .tabs
            .iter()
            .filter(|t| t.live_at(now, cfg))
            .map(|t| TabView {
                tab_id: t.tab_id.clone(),
                url: t.url.to_string(),
                visibility: t.visibility,
                last_seen: t.last_seen.to_rfc3339(),
            })
            .collect();
        let idle = !tabs.is_empty() && tabs.iter().all(|t| t.visibility == Visibility::Hidden);
        VisitorView {
            visitor_id: record.visitor_id.clone(),
            company: c.name.clone(),
            location: c.location.clone(),
            last_role: "Unknown".to_owned(),
            page_views: record.page_views.into(),
            timestamp: record.first_seen.to_rfc3339(),
            last_activity: record.last_activity.to_rfc3339(),
            status: if idle { "idle" } else { "active" }.to_owned(),
            website: record.website.to_string(),
            company_domain: c.domain.clone(),
            industry: c.industry.clone(),
            revenue: c.revenue.clone(),
            employees: c.employees.clone(),
            enriched_location: c.enriched_location.clone(),
            enrichment_source: c.source,
            is_cached: c.is_cached,
            enriched_at: c.enriched_at.map(Timestamp::to_rfc3339),
            url: tabs.last().map(|t| t.url.clone()),
            referrer: record.referrer.as_deref().map(str::to_owned),
            user_agent: record.user_agent.as_deref().map(str::to_owned),
            is_bot: record.is_bot,
            tabs,
            invite: record
                .invite
                .as_ref()
                .filter(|i| i.is_open() && !i.is_due(now))
                .map(|i| OpenInviteView {
                    invite_id: i.invite_id.clone(),
                    state: i.state,
                    invited_by: i.invited_by.clone(),
                    expires_at: i.expires_at,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ping(kind: PingKind, tab: &str, url: &str, vis: Visibility) -> Ping {
        Ping {
            kind,
            tab_id: tab.into(),
            url: url.into(),
            visibility: vis,
            referrer: None,
            user_agent: None,
            website: "example.com".into(),
            client_timestamp: None,
            page_id: None,
        }
    }

    #[test]
    fn live_records_share_fallbacks_and_repeated_texts_also_when_read_back() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let mut view = ping(
            PingKind::PageView,
            "t",
            "https://x.example/a",
            Visibility::Visible,
        );
        view.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) Test/1.0".into());
        let a = VisitorRecord::start("a", &view, false, Company::unknown(), t0, &cfg);
        let b = VisitorRecord::start("b", &view, false, Company::unknown(), t0, &cfg);
        let same = |x: &Option<Arc<str>>, y: &Option<Arc<str>>| match (x, y) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        assert!(Arc::ptr_eq(&a.company, &b.company));
        assert!(Arc::ptr_eq(&a.website, &b.website));
        assert!(same(&a.user_agent, &b.user_agent));
        // Read back from a store's JSON: equal, and sharing the same allocations.
        let back: VisitorRecord =
            serde_json::from_str(&serde_json::to_string(&a).expect("json")).expect("read back");
        assert_eq!(back, a);
        assert!(Arc::ptr_eq(&back.company, &a.company));
        assert!(Arc::ptr_eq(&back.website, &a.website));
        assert!(same(&back.user_agent, &a.user_agent));
        // An identified company is the record's own; another agent is another text.
        let mut acme = Company::unknown();
        acme.name = "Acme".into();
        acme.source = EnrichmentSource::Provider;
        let identified = VisitorRecord::start("c", &view, false, acme, t0, &cfg);
        assert!(!Arc::ptr_eq(&identified.company, &a.company));
        assert_eq!(identified.company.name, "Acme");
        let mut other = a.clone();
        let mut beat = ping(PingKind::Heartbeat, "t", "", Visibility::Visible);
        beat.user_agent = Some("curl/8.0".into());
        other.apply(&beat, t0.plus(Duration::from_secs(1)), &cfg);
        assert_eq!(other.user_agent.as_deref(), Some("curl/8.0"));
        assert_eq!(a.user_agent.as_deref(), view.user_agent.as_deref());
    }

    #[test]
    fn a_visitor_holds_one_copy_of_its_address_and_of_its_page_path() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let at = |s: u64| t0.plus(Duration::from_secs(s));
        let landing = "https://x.example/pricing?utm_source=news";
        let view = |url: &str| ping(PingKind::PageView, "t", url, Visibility::Visible);
        let mut r = VisitorRecord::start("v", &view(landing), false, Company::unknown(), t0, &cfg);
        let open = |r: &VisitorRecord| Arc::clone(r.visit.as_ref().expect("an open visit"));
        let v = open(&r);
        // On the landing page: the tab's address is the visit's landing address, and the
        // page's path is the exit page's and the visit tab's.
        assert_eq!(&*v.landing_url, landing);
        assert!(Arc::ptr_eq(&r.tabs[0].url, &v.landing_url));
        assert_eq!(&*v.pages[0].path, "/pricing");
        assert!(Arc::ptr_eq(&v.pages[0].path, &v.exit_page));
        assert!(Arc::ptr_eq(&v.pages[0].path, &v.tabs[0].path));
        // A heartbeat on the same page keeps the shared copies (and the visit itself).
        r.apply(
            &ping(PingKind::Heartbeat, "t", landing, Visibility::Visible),
            at(30),
            &cfg,
        );
        assert!(
            Arc::ptr_eq(&open(&r), &v),
            "a heartbeat leaves the visit as it is"
        );
        assert!(Arc::ptr_eq(&r.tabs[0].url, &v.landing_url));
        // The next page: the landing address stays, the tab moves on, the new path is shared.
        r.apply(&view("https://x.example/docs"), at(40), &cfg);
        let w = open(&r);
        assert_eq!(&*w.landing_url, landing);
        assert_eq!(&*r.tabs[0].url, "https://x.example/docs");
        assert!(Arc::ptr_eq(&w.pages[1].path, &w.exit_page));
        assert!(Arc::ptr_eq(&w.pages[1].path, &w.tabs[0].path));
        // An address beyond the landing bound is cut in the visit, kept whole in the tab.
        let long = format!("https://x.example/?q={}", "a".repeat(400));
        let r = VisitorRecord::start("w", &view(&long), false, Company::unknown(), t0, &cfg);
        let v = open(&r);
        assert_eq!(&*r.tabs[0].url, long);
        assert!(v.landing_url.len() < long.len());
        assert!(long.starts_with(&*v.landing_url));
    }

    #[test]
    fn only_a_plain_heartbeat_is_a_touch() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let at = |s: u64| t0.plus(Duration::from_secs(s));
        let url = "https://x.example/";
        let view = |tab: &str| ping(PingKind::PageView, tab, url, Visibility::Visible);
        let beat = |tab: &str| ping(PingKind::Heartbeat, tab, url, Visibility::Visible);
        let mut two_tabs =
            VisitorRecord::start("v", &view("a"), false, Company::unknown(), t0, &cfg);
        two_tabs.apply(&view("b"), at(1), &cfg);
        two_tabs.refresh_deadline(&cfg);
        let after = |r: &VisitorRecord, p: &Ping, s: u64| {
            let mut next = r.clone();
            next.apply(p, at(s), &cfg);
            next.refresh_deadline(&cfg);
            next
        };
        let mut with_ts = beat("a");
        with_ts.client_timestamp = Some("2024-10-16T12:00:05Z".into());
        for (what, p) in [("a heartbeat", beat("a")), ("its client time", with_ts)] {
            let next = after(&two_tabs, &p, 5);
            assert_ne!(next, two_tabs);
            assert!(next.only_touched_since(&two_tabs), "{what} is a touch");
        }
        let hidden = ping(PingKind::VisibilityChange, "a", url, Visibility::Hidden);
        let moved = ping(
            PingKind::Heartbeat,
            "a",
            "https://x.example/pricing",
            Visibility::Visible,
        );
        for (what, p) in [
            ("a page view", view("a")),
            ("a new tab", view("c")),
            ("a visibility change", hidden),
            ("a new URL", moved),
        ] {
            let next = after(&two_tabs, &p, 5);
            assert!(!next.only_touched_since(&two_tabs), "{what} is a save");
        }
        // A tab that expired is dropped by the heartbeat of another: a save.
        let late = after(&two_tabs, &beat("b"), 3_600);
        assert!(late.tabs.len() < two_tabs.tabs.len());
        assert!(!late.only_touched_since(&two_tabs));
        // An open invite delivered, or any other field changed: a save.
        let mut renamed = after(&two_tabs, &beat("a"), 5);
        Arc::make_mut(&mut renamed.company).name = "Acme".into();
        assert!(!renamed.only_touched_since(&two_tabs));
    }

    #[test]
    fn a_heartbeat_leaves_the_open_visit_shared_and_the_close_still_counts_its_time() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let at = |s: u64| t0.plus(Duration::from_secs(s));
        let mut r = VisitorRecord::start(
            "v",
            &ping(
                PingKind::PageView,
                "a",
                "https://x.example/",
                Visibility::Visible,
            ),
            false,
            Company::unknown(),
            t0,
            &cfg,
        );
        let before = r.visit.clone().expect("a visit");
        let heartbeat = ping(
            PingKind::Heartbeat,
            "a",
            "https://x.example/",
            Visibility::Visible,
        );
        r.apply(&heartbeat, at(20), &cfg);
        r.apply(&heartbeat, at(40), &cfg);
        assert!(
            Arc::ptr_eq(&before, r.visit.as_ref().expect("visit")),
            "heartbeats on the same page change nothing in the visit"
        );
        // The close reads the tab's last event back: the page lasted 40 s.
        let closed = r
            .clone()
            .close_visit(&SiteId::from("s"), RemovalReason::Inactive);
        let closed = closed.expect("closed");
        assert_eq!(closed.pages[0].duration_ms, 40_000);
        assert_eq!(closed.ended_at, at(40));
        // A page view changes it (a copy: the stored record's visit is untouched).
        r.apply(
            &ping(
                PingKind::PageView,
                "a",
                "https://x.example/b",
                Visibility::Visible,
            ),
            at(50),
            &cfg,
        );
        let after = r.visit.as_ref().expect("visit");
        assert!(!Arc::ptr_eq(&before, after));
        assert_eq!((before.pages.len(), after.pages.len()), (1, 2));
        assert_eq!(after.pages[0].duration_ms, 50_000);
    }

    #[test]
    fn deadline_is_earliest_tab_expiry_and_hidden_tabs_last_longer() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let mut r = VisitorRecord::start(
            "v",
            &ping(PingKind::PageView, "a", "/", Visibility::Hidden),
            false,
            Company::unknown(),
            t0,
            &cfg,
        );
        assert_eq!(r.deadline, t0.plus(cfg.hidden_grace));
        let t1 = t0.plus(Duration::from_secs(10));
        let up = r.apply(
            &ping(PingKind::PageView, "b", "/x", Visibility::Visible),
            t1,
            &cfg,
        );
        assert_eq!(up, Some(UpdateKind::TabOpened));
        assert_eq!(r.deadline, t1.plus(cfg.visible_grace));
        assert_eq!(r.page_views, 2);
        // b expires first; a remains.
        assert_eq!(
            r.expire(t1.plus(cfg.visible_grace), &cfg),
            TabsChange::TabsClosed
        );
        assert!(r.is_idle());
        assert_eq!(
            r.expire(t0.plus(cfg.hidden_grace), &cfg),
            TabsChange::Removed(RemovalReason::Inactive)
        );
    }

    #[test]
    fn an_open_invite_due_before_the_tabs_sets_the_deadline() {
        use crate::invite::{InviteConfig, NewInvite};
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let p = ping(PingKind::PageView, "a", "/", Visibility::Hidden);
        let mut r = VisitorRecord::start("v", &p, false, Company::unknown(), t0, &cfg);
        let ttl = InviteConfig::default();
        r.invite = Some(Box::new(Invite::new(
            NewInvite::new("i", "v", "u"),
            t0,
            &ttl,
        )));
        r.refresh_deadline(&cfg);
        assert_eq!(r.deadline, t0.plus(ttl.ttl));
        assert_eq!(
            r.expire_invite(t0.plus(ttl.ttl), &cfg).map(|m| m.state()),
            Some(crate::invite::InviteState::Expired)
        );
        assert_eq!(r.deadline, t0.plus(cfg.hidden_grace));
        assert!(
            r.end_invite(t0, &cfg).is_none(),
            "a final invite does not end again"
        );
    }

    #[test]
    fn heartbeat_without_change_is_silent() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(5);
        let p = ping(PingKind::PageView, "a", "/", Visibility::Visible);
        let mut r = VisitorRecord::start("v", &p, false, Company::unknown(), t0, &cfg);
        let hb = ping(PingKind::Heartbeat, "a", "/", Visibility::Visible);
        assert_eq!(r.apply(&hb, t0.plus(Duration::from_secs(30)), &cfg), None);
        let hidden = ping(PingKind::VisibilityChange, "a", "/", Visibility::Hidden);
        assert_eq!(
            r.apply(&hidden, t0.plus(Duration::from_secs(31)), &cfg),
            Some(UpdateKind::Visibility)
        );
        let t2 = t0.plus(Duration::from_secs(32));
        assert_eq!(r.leave(Some("a"), t2, &cfg), TabsChange::Unchanged);
        assert_eq!(r.deadline, t2.plus(cfg.leave_linger));
    }

    #[test]
    fn a_left_tab_lingers_and_its_next_page_keeps_the_visit() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let p = ping(PingKind::PageView, "a", "/", Visibility::Visible);
        let mut r = VisitorRecord::start("v", &p, false, Company::unknown(), t0, &cfg);
        let t1 = t0.plus(Duration::from_secs(5));
        assert_eq!(r.leave(Some("a"), t1, &cfg), TabsChange::Unchanged);
        assert!(r.live_at(
            t1.plus(cfg.leave_linger).minus(Duration::from_millis(1)),
            &cfg
        ));
        assert_eq!(r.deadline, t1.plus(cfg.leave_linger));
        // The reload's page view, within the linger: the same visit, one more page view.
        let t2 = t1.plus(Duration::from_millis(300));
        let reload = ping(PingKind::PageView, "a", "/", Visibility::Visible);
        assert_eq!(r.apply(&reload, t2, &cfg), Some(UpdateKind::Pageview));
        assert_eq!(r.page_views, 2);
        assert_eq!(r.tabs[0].left_at, None);
        assert_eq!(r.deadline, t2.plus(cfg.visible_grace));
        // A close: gone when the linger ends, with reason `left`.
        let t3 = t2.plus(Duration::from_secs(1));
        r.leave(Some("a"), t3, &cfg);
        // A second beacon does not extend the linger.
        r.leave(None, t3.plus(Duration::from_secs(1)), &cfg);
        assert_eq!(r.deadline, t3.plus(cfg.leave_linger));
        let end = t3.plus(cfg.leave_linger);
        assert_eq!(
            r.expire(end.minus(Duration::from_millis(1)), &cfg),
            TabsChange::Unchanged
        );
        assert_eq!(
            r.expire(end, &cfg),
            TabsChange::Removed(RemovalReason::Left)
        );
    }

    #[test]
    fn a_beacon_for_a_page_the_tab_has_left_is_stale() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let page = |id: &str| Ping {
            page_id: Some(id.into()),
            ..ping(PingKind::PageView, "a", "/", Visibility::Visible)
        };
        let mut r = VisitorRecord::start("v", &page("p1"), false, Company::unknown(), t0, &cfg);
        // A reload whose next page reported before the old page's beacon arrived.
        r.apply(&page("p2"), t0.plus(Duration::from_millis(100)), &cfg);
        let late = t0.plus(Duration::from_millis(103));
        let before = r.clone();
        assert_eq!(
            r.leave_page(Some("a"), Some("p1"), late, &cfg),
            TabsChange::Unchanged
        );
        assert_eq!(r, before, "nothing held, no departure remembered");
        // A heartbeat does not change the page; the current page's beacon counts.
        let hb = Ping {
            page_id: Some("p1".into()),
            ..ping(PingKind::Heartbeat, "a", "/", Visibility::Visible)
        };
        r.apply(&hb, late, &cfg);
        assert_eq!(r.tabs[0].page_id.as_deref(), Some("p2"));
        // The old page's last heartbeat and its going hidden, overtaken by the next page's
        // view on another URL: the tab stays on the new page, visible, and dashboards hear
        // nothing (the old URL is not broadcast again); the visit keeps one page change.
        let next = Ping {
            page_id: Some("p3".into()),
            ..ping(PingKind::PageView, "a", "/pricing", Visibility::Visible)
        };
        r.apply(&next, late, &cfg);
        let pages = r
            .visit
            .as_ref()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        for old in [
            Ping {
                page_id: Some("p2".into()),
                ..ping(PingKind::Heartbeat, "a", "/", Visibility::Visible)
            },
            Ping {
                page_id: Some("p2".into()),
                ..ping(PingKind::VisibilityChange, "a", "/", Visibility::Hidden)
            },
        ] {
            assert_eq!(
                r.apply(&old, late, &cfg),
                None,
                "{:?} of the old page",
                old.kind
            );
            assert_eq!(&*r.tabs[0].url, "/pricing");
            assert_eq!(r.tabs[0].visibility, Visibility::Visible);
        }
        assert_eq!(
            r.visit
                .as_ref()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            pages,
            "the visit records no page of a stale ping"
        );
        // A heartbeat of the current page still moves the page (a single-page app's route).
        let spa = Ping {
            page_id: Some("p3".into()),
            ..ping(
                PingKind::Heartbeat,
                "a",
                "/pricing/plans",
                Visibility::Visible,
            )
        };
        assert_eq!(r.apply(&spa, late, &cfg), Some(UpdateKind::Pageview));
        assert_eq!(&*r.tabs[0].url, "/pricing/plans");
        r.leave_page(Some("a"), Some("p3"), late, &cfg);
        assert_eq!(r.tabs[0].left_at, Some(late));
    }

    #[test]
    fn a_zero_linger_drops_the_tab_at_once() {
        let cfg = PresenceConfig {
            leave_linger: Duration::ZERO,
            ..PresenceConfig::default()
        };
        let t0 = Timestamp::from_millis(1_000_000);
        let p = ping(PingKind::PageView, "a", "/", Visibility::Visible);
        let mut r = VisitorRecord::start("v", &p, false, Company::unknown(), t0, &cfg);
        r.apply(
            &ping(PingKind::PageView, "b", "/", Visibility::Visible),
            t0,
            &cfg,
        );
        assert_eq!(r.leave(Some("a"), t0, &cfg), TabsChange::TabsClosed);
        assert_eq!(
            r.leave(Some("b"), t0, &cfg),
            TabsChange::Removed(RemovalReason::Left)
        );
    }

    #[test]
    fn the_removal_reason_is_the_last_tab_to_go() {
        let cfg = PresenceConfig::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let mut r = VisitorRecord::start(
            "v",
            &ping(PingKind::PageView, "quiet", "/", Visibility::Visible),
            false,
            Company::unknown(),
            t0,
            &cfg,
        );
        // A tab that left just before the quiet one's grace ends: it lasts longer, so `left`.
        let t1 = t0.plus(cfg.visible_grace).minus(Duration::from_millis(500));
        r.apply(
            &ping(PingKind::PageView, "b", "/", Visibility::Visible),
            t1,
            &cfg,
        );
        r.leave(Some("b"), t1, &cfg);
        assert_eq!(r.removal_reason(&cfg), RemovalReason::Left);
        let late = t1.plus(Duration::from_secs(60));
        assert_eq!(
            r.clone().expire(late, &cfg),
            TabsChange::Removed(RemovalReason::Left)
        );
        // One that left long before the other went quiet: `inactive`.
        let mut r2 = VisitorRecord::start(
            "v",
            &ping(PingKind::PageView, "a", "/", Visibility::Visible),
            false,
            Company::unknown(),
            t0,
            &cfg,
        );
        r2.apply(
            &ping(PingKind::PageView, "b", "/", Visibility::Visible),
            t0,
            &cfg,
        );
        r2.leave(Some("a"), t0, &cfg);
        assert_eq!(
            r2.expire(late, &cfg),
            TabsChange::Removed(RemovalReason::Inactive)
        );
    }
}
