//! The visit model: [`OpenVisit`] (kept inside the live visitor record while the visit lasts)
//! and [`Visit`] (what [`OpenVisit::close`] makes of it when presence removes the visitor).
//! Pure functions of the events and `now`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::invite::Invite;
use crate::presence::{Company, EnrichmentSource, RemovalReason, VisitorRecord};
use crate::protocol::InviteState;
use crate::site::SiteId;

/// At most this many pages are kept per visit, the first ones in order; later page views are
/// counted in [`Visit::more_pages`] (and the last one is still the [`Visit::exit_page`]).
pub const MAX_PAGES: usize = 50;

/// Longest page path kept (longer ones are cut at a character boundary).
const MAX_PATH_BYTES: usize = 200;
/// Longest referrer kept.
const MAX_REFERRER_BYTES: usize = 300;
/// Longest UTM value, city or browser/OS name kept.
const MAX_SHORT_BYTES: usize = 100;

/// One page of a visit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageVisit {
    /// The page's path (no origin, query or fragment). Shared: in an open visit, the latest
    /// page's path is also its [`exit_page`](OpenVisit::exit_page) and its tab's
    /// [`path`](VisitTab::path).
    pub path: Arc<str>,
    /// When it was viewed (server time).
    #[serde(with = "crate::clock::rfc3339")]
    pub at: Timestamp,
    /// Time on the page: until the next page view in the same tab, else until the tab's last
    /// event or exit beacon.
    pub duration_ms: u64,
}

/// UTM parameters of the landing address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Utm {
    /// `utm_source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `utm_medium`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// `utm_campaign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// `utm_term`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// `utm_content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.campaign.is_none()
            && self.term.is_none()
            && self.content.is_none()
    }

    /// The UTM parameters in `url`'s query (none when it has no query).
    pub fn of_url(url: &str) -> Utm {
        let mut utm = Utm::default();
        let Some(query) = url
            .split('#')
            .next()
            .and_then(|u| u.split_once('?'))
            .map(|q| q.1)
        else {
            return utm;
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "utm_source" => &mut utm.source,
                "utm_medium" => &mut utm.medium,
                "utm_campaign" => &mut utm.campaign,
                "utm_term" => &mut utm.term,
                "utm_content" => &mut utm.content,
                _ => continue,
            };
            if slot.is_none() && !v.trim().is_empty() {
                *slot = Some(cut(v.trim(), MAX_SHORT_BYTES));
            }
        }
        utm
    }
}

/// Where the visitor was, as far as anyone knows: the host's request geodata (Cloudflare's
/// `cf` object or `CF-IPCountry`, CloudFront's viewer headers) or, failing that, the
/// enrichment provider's company location.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Place {
    /// ISO 3166-1 alpha-2 country code, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// City name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

/// Which request headers carry geodata (a host names the ones its platform sets; the core
/// never trusts them on its own, since a client could send them to a host that does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeoHeaders {
    /// Amazon CloudFront's viewer headers: `CloudFront-Viewer-Country`,
    /// `CloudFront-Viewer-City`.
    CloudFront,
    /// Cloudflare's `CF-IPCountry` and (with the "visitor location headers" managed
    /// transform) `cf-ipcity`.
    Cloudflare,
}

impl Place {
    /// A place from a country code and a city, each checked (a code that is not two ASCII
    /// letters, or Cloudflare's `XX`/`T1`, is dropped; the city is trimmed and cut).
    pub fn new(country: Option<&str>, city: Option<&str>) -> Place {
        let country = country
            .map(str::trim)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase)
            .filter(|c| c != "XX" && c != "T1");
        let city = city
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| cut(c, MAX_SHORT_BYTES));
        Place { country, city }
    }

    /// The place in `headers` as `source` sets them (`None` when they carry no country).
    pub fn from_headers(headers: &http::HeaderMap, source: GeoHeaders) -> Option<Place> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let place = match source {
            GeoHeaders::CloudFront => Place::new(
                get("cloudfront-viewer-country"),
                get("cloudfront-viewer-city"),
            ),
            GeoHeaders::Cloudflare => Place::new(get("cf-ipcountry"), get("cf-ipcity")),
        };
        place.country.is_some().then_some(place)
    }

    /// The place in a company location as providers write it (`"City, Region, CC"`): the
    /// first part as the city, a last part of two letters as the country.
    pub fn from_location(location: &str) -> Place {
        let parts: Vec<&str> = location.split(',').map(str::trim).collect();
        let country = parts.last().filter(|_| parts.len() > 1).copied();
        Place::new(country, parts.first().copied())
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.city.is_none()
    }
}

/// The class of device a user agent belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// A desktop or laptop browser.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// A crawler or other automated client.
    Bot,
    /// Anything else (consoles, TVs, unknown).
    Other,
}

/// Browser, OS and device class, parsed from the user agent (with `woothee`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Browser name (`Chrome`, `Safari`, … or `Unknown`).
    pub browser: String,
    /// Operating system (`Windows 10`, `Mac OSX`, `iPhone`, `Android`, … or `Unknown`).
    pub os: String,
    /// Device class.
    pub class: DeviceClass,
}

impl Device {
    /// Parses `user_agent` (`None`: unknown).
    pub fn parse(user_agent: Option<&str>, is_bot: bool) -> Device {
        let unknown = |class| Device {
            browser: "Unknown".to_owned(),
            os: "Unknown".to_owned(),
            class,
        };
        let fallback = if is_bot {
            DeviceClass::Bot
        } else {
            DeviceClass::Other
        };
        let Some(ua) = user_agent.filter(|u| !u.is_empty()) else {
            return unknown(fallback);
        };
        let Some(parsed) = woothee::parser::Parser::new().parse(ua) else {
            return unknown(fallback);
        };
        let known = |s: &str| {
            if s.is_empty() || s == "UNKNOWN" {
                "Unknown".to_owned()
            } else {
                cut(s, MAX_SHORT_BYTES)
            }
        };
        let class = if is_bot {
            DeviceClass::Bot
        } else {
            match parsed.category {
                "pc" => DeviceClass::Desktop,
                "smartphone" | "mobilephone" => {
                    if parsed.os == "iPad" || (parsed.os == "Android" && !ua.contains("Mobile")) {
                        DeviceClass::Tablet
                    } else {
                        DeviceClass::Mobile
                    }
                }
                "crawler" => DeviceClass::Bot,
                _ => DeviceClass::Other,
            }
        };
        Device {
            browser: known(parsed.name),
            os: known(parsed.os),
            class,
        }
    }
}

/// The company of a visit (identified visits only; fallbacks such as `Unknown Company` are no
/// company).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitCompany {
    /// Name.
    pub name: String,
    /// Web domain (the key of company aggregates; visits of a company without one are
    /// aggregated under its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Industry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// Employee range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Revenue range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<String>,
    /// Where the data came from (`provider` or `cache`).
    pub source: EnrichmentSource,
}

impl VisitCompany {
    /// The visit's company from the live record's (`None` for a fallback).
    pub fn of(company: &Company) -> Option<VisitCompany> {
        (company.source != EnrichmentSource::Fallback).then(|| VisitCompany {
            name: company.name.clone(),
            domain: company.domain.as_ref().map(|d| d.to_ascii_lowercase()),
            industry: company.industry.clone(),
            size: company.employees.clone(),
            revenue: company.revenue.clone(),
            source: company.source,
        })
    }

    /// The key company aggregates use: the domain, lower case, else the name.
    pub fn key(&self) -> String {
        match &self.domain {
            Some(d) => d.to_ascii_lowercase(),
            None => self.name.clone(),
        }
    }
}

/// An invite sent during a visit, with its last known state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitInvite {
    /// The invite id.
    pub invite_id: String,
    /// Its state when the visit closed (final unless the invite outlived the visit).
    pub state: InviteState,
    /// When it was sent.
    #[serde(with = "crate::clock::rfc3339")]
    pub sent_at: Timestamp,
    /// When its state last changed.
    #[serde(with = "crate::clock::rfc3339")]
    pub updated_at: Timestamp,
}

impl From<&Invite> for VisitInvite {
    fn from(i: &Invite) -> Self {
        VisitInvite {
            invite_id: i.invite_id.clone(),
            state: i.state,
            sent_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// A tab's place in the open visit: the page it shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitTab {
    /// The tab.
    pub tab_id: String,
    /// Path of its current page (shared with [`OpenVisit::exit_page`] while it is the
    /// visit's latest page).
    pub path: Arc<str>,
    /// Index of its current page in [`OpenVisit::pages`] (`None`: beyond [`MAX_PAGES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// A visit in progress, kept in the live [`VisitorRecord::visit`] (so the live store persists
/// it with the record, and it costs no write of its own). Updated by every event of the
/// visitor; turned into a [`Visit`] by [`close`](Self::close) when presence removes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenVisit {
    /// The visit's id ([`visit_id`]; boxed, as it never changes).
    pub visit_id: Box<str>,
    /// When it started.
    pub started_at: Timestamp,
    /// The visitor's latest event or exit beacon so far: the visit's end if it closes now.
    pub last_at: Timestamp,
    /// The landing address (origin and query kept, for UTM and the landing host). Shared with
    /// the address the event carried (see [`on_event`](Self::on_event)), so a visitor still
    /// on its landing page holds one copy of it.
    pub landing_url: Arc<str>,
    /// Pages in order of viewing, at most [`MAX_PAGES`].
    pub pages: Vec<PageVisit>,
    /// Page views beyond [`MAX_PAGES`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_pages: u32,
    /// Path of the latest page view.
    pub exit_page: Arc<str>,
    /// The tabs of the visit and their current pages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tabs: Vec<VisitTab>,
    /// Where the visitor is, when the host said (boxed: most hosts say nothing, and every
    /// live visitor would otherwise carry an empty place inline; never `Some` of an empty
    /// place, see [`place`](Self::place)).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "boxed_place"
    )]
    pub place: Option<Box<Place>>,
    /// Invites sent during the visit (a boxed slice: most visits have none, and it grows one
    /// at a time).
    #[serde(default, skip_serializing_if = "<[VisitInvite]>::is_empty")]
    pub invites: Box<[VisitInvite]>,
}

/// Reads an open visit's place, an empty one as none.
fn boxed_place<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<Place>>, D::Error> {
    Ok(Option::<Place>::deserialize(d)?
        .filter(|p| !p.is_empty())
        .map(Box::new))
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The id of the visit of `visitor_id` that started at `started_at`: `vis_` and 16 hex
/// digits of a SHA-256 of both, so closing the same visit twice (a retried close, a restart's
/// sweep) names the same visit.
pub fn visit_id(visitor_id: &str, started_at: Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(visitor_id.as_bytes());
    h.update(b":");
    h.update(started_at.as_millis().to_be_bytes());
    let digest = h.finalize();
    format!("vis_{}", hex::encode(&digest[..8]))
}

/// The empty path, shared.
fn no_path() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// The place of an open visit that has none.
static NO_PLACE: Place = Place {
    country: None,
    city: None,
};

impl OpenVisit {
    /// Where the visitor is, as far as the host said (empty when it said nothing).
    pub fn place(&self) -> &Place {
        self.place.as_deref().unwrap_or(&NO_PLACE)
    }

    /// A visit of `visitor_id` starting at `now`.
    pub fn start(visitor_id: &str, now: Timestamp) -> OpenVisit {
        OpenVisit {
            visit_id: visit_id(visitor_id, now).into(),
            started_at: now,
            last_at: now,
            landing_url: no_path(),
            pages: Vec::new(),
            more_pages: 0,
            exit_page: no_path(),
            tabs: Vec::new(),
            place: None,
            invites: Box::default(),
        }
    }

    /// Whether an event of tab `tab_id` showing `url` changes the visit beyond its times: it
    /// opens a page (see [`on_event`](Self::on_event)) or names a tab not seen before. Any
    /// other event (a heartbeat on the same page) only moves the tab's last event, which the
    /// live record keeps ([`Tab::last_seen`](crate::presence::Tab::last_seen)) and
    /// [`close`](Self::close) and [`extend_tab`](Self::extend_tab) read back: presence calls
    /// [`on_event`](Self::on_event) only when this is true, so a heartbeat leaves the open
    /// visit as it is (no clone, and no larger write of the record).
    pub fn changed_by(&self, tab_id: &str, url: &str, page_view: bool) -> bool {
        let path = path_of(url);
        match self.tabs.iter().find(|t| t.tab_id == tab_id) {
            None => true,
            Some(tab) => {
                !path.is_empty() && (page_view || tab.page.is_none() || *tab.path != *path)
            }
        }
    }

    /// An event of tab `tab_id` at `now` showing `url` (empty: unchanged). A page view, a
    /// tab not seen before, or another path than the tab's opens a page (an empty `url` never
    /// does); otherwise the tab's current page lasts until `now`. The visit's first page keeps
    /// `url` itself as its [`landing_url`](Self::landing_url) (a clone of the `Arc`) when it is
    /// no longer than the bound.
    pub fn on_event(&mut self, tab_id: &str, url: &Arc<str>, page_view: bool, now: Timestamp) {
        self.last_at = self.last_at.max(now);
        let path = path_of(url);
        let i = match self.tabs.iter().position(|t| t.tab_id == tab_id) {
            Some(i) => i,
            None => {
                // Exactly one more: an open visit lives as long as its visitor, and a vector's
                // first push would room four (most visits have one tab and few pages).
                self.tabs.reserve_exact(1);
                self.tabs.push(VisitTab {
                    tab_id: tab_id.to_owned(),
                    path: no_path(),
                    page: None,
                });
                self.tabs.len() - 1
            }
        };
        self.extend_page(i, now);
        let tab = &self.tabs[i];
        let opens = !path.is_empty() && (page_view || tab.page.is_none() || *tab.path != *path);
        if !opens {
            return;
        }
        if self.pages.is_empty() && self.more_pages == 0 {
            self.landing_url = if url.len() <= MAX_REFERRER_BYTES {
                url.clone()
            } else {
                Arc::from(cut(url, MAX_REFERRER_BYTES))
            };
        }
        // One copy of the path for the page, the exit page and the tab's.
        let path: Arc<str> = Arc::from(path);
        let page = if self.pages.len() < MAX_PAGES {
            self.pages.reserve_exact(1);
            self.pages.push(PageVisit {
                path: path.clone(),
                at: now,
                duration_ms: 0,
            });
            Some((self.pages.len() - 1) as u32)
        } else {
            self.more_pages = self.more_pages.saturating_add(1);
            None
        };
        self.exit_page = path.clone();
        let tab = &mut self.tabs[i];
        tab.path = path;
        // A page beyond the bound still replaces the tab's current page (so the earlier one
        // stops counting), with no entry to extend.
        tab.page = page.or(Some(u32::MAX));
    }

    /// An exit beacon of `tab_id` (`None`: every tab) at `now`: the tab's current page lasts
    /// until now.
    pub fn on_leave(&mut self, tab_id: Option<&str>, now: Timestamp) {
        self.last_at = self.last_at.max(now);
        for i in 0..self.tabs.len() {
            if tab_id.is_none_or(|id| id == self.tabs[i].tab_id) {
                self.extend_page(i, now);
            }
        }
    }

    /// Forgets the tabs not in `live` (their pages keep the time they had).
    pub fn retain_tabs<'a>(&mut self, live: impl Fn(&str) -> bool + 'a) {
        self.tabs.retain(|t| live(&t.tab_id));
    }

    /// The tab `tab_id`'s current page lasts at least until `until` (its last event or exit
    /// beacon), and the visit too: called for a tab the live record drops, whose last event
    /// would otherwise be forgotten.
    pub fn extend_tab(&mut self, tab_id: &str, until: Timestamp) {
        self.last_at = self.last_at.max(until);
        if let Some(i) = self.tabs.iter().position(|t| t.tab_id == tab_id) {
            self.extend_page(i, until);
        }
    }

    /// Records `invite`'s current state (by invite id).
    pub fn note_invite(&mut self, invite: &Invite) {
        let seen = VisitInvite::from(invite);
        match self
            .invites
            .iter_mut()
            .find(|i| i.invite_id == seen.invite_id)
        {
            Some(i) => *i = seen,
            None => {
                let mut invites = std::mem::take(&mut self.invites).into_vec();
                invites.reserve_exact(1);
                invites.push(seen);
                self.invites = invites.into_boxed_slice();
            }
        }
    }

    fn extend_page(&mut self, tab: usize, now: Timestamp) {
        extend(&mut self.pages, &self.tabs[tab], now);
    }

    /// The closed visit of `record` (whose open visit this is) on `site`, ended for `reason`.
    /// A pure function of the record: closing the same record again gives the same visit.
    /// The record's tabs still held say how long their current pages lasted and when the
    /// visit ended (their last events: heartbeats leave the open visit unchanged; see
    /// [`changed_by`](Self::changed_by)). [`Visit::visit_number`] is left at 1; the service
    /// sets it from the stored history.
    pub fn close(&self, site: &SiteId, record: &VisitorRecord, reason: RemovalReason) -> Visit {
        let mut pages = self.pages.clone();
        let mut last_at = self.last_at;
        for tab in &record.tabs {
            let until = tab.last_event();
            last_at = last_at.max(until);
            if let Some(open) = self.tabs.iter().find(|t| t.tab_id == tab.tab_id) {
                extend(&mut pages, open, until);
            }
        }
        let company = VisitCompany::of(&record.company);
        let noted = self.place();
        let place = if noted.country.is_some() {
            noted.clone()
        } else {
            record
                .company
                .enriched_location
                .as_deref()
                .map(Place::from_location)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| noted.clone())
        };
        let mut invites = self.invites.to_vec();
        if let Some(invite) = record.invite.as_deref()
            && invite.created_at >= self.started_at
        {
            match invites.iter_mut().find(|i| i.invite_id == invite.invite_id) {
                Some(i) => *i = invite.into(),
                None => invites.push(invite.into()),
            }
        }
        let landing_host = host_of(&self.landing_url);
        let referrer = record
            .referrer
            .as_deref()
            .filter(|r| host_of(r).is_none() || host_of(r) != landing_host)
            .map(|r| cut(r, MAX_REFERRER_BYTES));
        Visit {
            site: site.clone(),
            visit_id: self.visit_id.to_string(),
            visitor_id: record.visitor_id.clone(),
            started_at: self.started_at,
            ended_at: last_at,
            duration_ms: last_at
                .as_millis()
                .saturating_sub(self.started_at.as_millis()) as u64,
            landing_page: self
                .pages
                .first()
                .map(|p| p.path.to_string())
                .unwrap_or_default(),
            exit_page: self.exit_page.to_string(),
            pages,
            more_pages: self.more_pages,
            page_views: record.page_views.into(),
            referrer,
            utm: Utm::of_url(&self.landing_url),
            device: Device::parse(record.user_agent.as_deref(), record.is_bot),
            place,
            company,
            is_bot: record.is_bot,
            visit_number: 1,
            invites,
            end_reason: reason,
        }
    }
}

/// The page `tab` shows (in `pages`) lasts at least until `until`.
fn extend(pages: &mut [PageVisit], tab: &VisitTab, until: Timestamp) {
    if let Some(page) = tab.page.and_then(|p| pages.get_mut(p as usize)) {
        page.duration_ms = page
            .duration_ms
            .max(until.as_millis().saturating_sub(page.at.as_millis()) as u64);
    }
}

/// A closed visit, as history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Visit {
    /// The site.
    pub site: SiteId,
    /// The visit's id ([`visit_id`]): stable across a retried or repeated close.
    pub visit_id: String,
    /// The visitor.
    pub visitor_id: String,
    /// When it started (server time).
    #[serde(with = "crate::clock::rfc3339")]
    pub started_at: Timestamp,
    /// The visitor's last event or exit beacon.
    #[serde(with = "crate::clock::rfc3339")]
    pub ended_at: Timestamp,
    /// `ended_at - started_at`.
    pub duration_ms: u64,
    /// Path of the first page.
    pub landing_page: String,
    /// Path of the last page viewed.
    pub exit_page: String,
    /// Pages in order, with time on each, at most [`MAX_PAGES`].
    pub pages: Vec<PageVisit>,
    /// Page views beyond [`MAX_PAGES`].
    #[serde(default)]
    pub more_pages: u32,
    /// Page view events counted by presence.
    pub page_views: u64,
    /// `document.referrer` of the first page view, when it is another site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// UTM parameters of the landing address.
    #[serde(default)]
    pub utm: Utm,
    /// Browser, OS and device class.
    pub device: Device,
    /// Country and city, when known.
    #[serde(default)]
    pub place: Place,
    /// The company, when identified (enrichment that settled while the visit was open
    /// included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<VisitCompany>,
    /// Whether the user agent is a known bot.
    pub is_bot: bool,
    /// 1 for the visitor's first visit (within retention), 2 for the next, …
    pub visit_number: u32,
    /// Invites sent during the visit, with their last state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invites: Vec<VisitInvite>,
    /// Why presence removed the visitor.
    pub end_reason: RemovalReason,
}

impl Visit {
    /// Whether the visitor had visited before (within retention).
    pub fn is_returning(&self) -> bool {
        self.visit_number > 1
    }

    /// One page view or none: a bounce.
    pub fn is_bounce(&self) -> bool {
        self.pages.len() as u64 + u64::from(self.more_pages) <= 1
    }

    /// The host of the referrer (lower case), if any.
    pub fn referrer_host(&self) -> Option<String> {
        self.referrer.as_deref().and_then(host_of)
    }
}

/// The path of `url`: no scheme, host, query or fragment; cut to a bounded length. A bare
/// path stays as it is (minus query and fragment).
pub fn path_of(url: &str) -> String {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = &rest[..end];
    if path.is_empty() && !url.is_empty() {
        return "/".to_owned();
    }
    cut(path, MAX_PATH_BYTES)
}

/// The host of an absolute `url`, lower case, without port or user info.
pub fn host_of(url: &str) -> Option<String> {
    let (_, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]"))?
    } else {
        host.split(':').next()?.to_owned()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn pages_get_the_time_until_the_next_page_of_their_tab() {
        let mut v = OpenVisit::start("v", t(0));
        v.on_event(
            "a",
            &"https://x.example/?utm_source=news".into(),
            true,
            t(0),
        );
        v.on_event("a", &"".into(), false, t(30_000));
        v.on_event("b", &"https://x.example/pricing".into(), true, t(40_000));
        v.on_event("a", &"https://x.example/docs#intro".into(), true, t(50_000));
        v.on_event("b", &"".into(), false, t(70_000));
        v.on_leave(Some("a"), t(65_000));
        let paths: Vec<_> = v.pages.iter().map(|p| (&*p.path, p.duration_ms)).collect();
        assert_eq!(
            paths,
            [("/", 50_000), ("/pricing", 30_000), ("/docs", 15_000)]
        );
        assert_eq!(&*v.exit_page, "/docs");
        assert_eq!(v.last_at, t(70_000));
        assert_eq!(Utm::of_url(&v.landing_url).source.as_deref(), Some("news"));
    }

    #[test]
    fn pages_beyond_the_bound_are_counted() {
        let mut v = OpenVisit::start("v", t(0));
        for i in 0..(MAX_PAGES as i64 + 3) {
            v.on_event("a", &format!("/p{i}").into(), true, t(i * 1000));
        }
        assert_eq!(v.pages.len(), MAX_PAGES);
        assert_eq!(v.more_pages, 3);
        assert_eq!(*v.exit_page, *format!("/p{}", MAX_PAGES + 2));
        // The last kept page stopped counting when the next (uncounted) one opened.
        assert_eq!(v.pages[MAX_PAGES - 1].duration_ms, 1000);
    }

    #[test]
    fn paths_hosts_and_places_are_parsed() {
        assert_eq!(path_of("https://a.example"), "/");
        assert_eq!(path_of("https://a.example/x/y?q=1#f"), "/x/y");
        assert_eq!(path_of("/x?q"), "/x");
        assert_eq!(path_of(""), "");
        assert_eq!(
            host_of("https://u@WWW.A.example:8443/x").as_deref(),
            Some("www.a.example")
        );
        assert_eq!(host_of("/relative"), None);
        assert_eq!(
            Place::from_location("San Francisco, CA, us"),
            Place {
                country: Some("US".into()),
                city: Some("San Francisco".into())
            }
        );
        assert_eq!(Place::new(Some("XX"), None), Place::default());
        let mut h = http::HeaderMap::new();
        h.insert("cloudfront-viewer-country", "DE".parse().unwrap());
        h.insert("cloudfront-viewer-city", "Berlin".parse().unwrap());
        assert_eq!(
            Place::from_headers(&h, GeoHeaders::CloudFront),
            Some(Place::new(Some("DE"), Some("Berlin")))
        );
        assert_eq!(Place::from_headers(&h, GeoHeaders::Cloudflare), None);
    }

    #[test]
    fn devices_are_classified() {
        let d = Device::parse(
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            ),
            false,
        );
        assert_eq!(
            (d.browser.as_str(), d.class),
            ("Chrome", DeviceClass::Desktop)
        );
        let d = Device::parse(
            Some(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            ),
            false,
        );
        assert_eq!(d.class, DeviceClass::Mobile);
        let d = Device::parse(
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            true,
        );
        assert_eq!(d.class, DeviceClass::Bot);
        assert_eq!(Device::parse(None, false).class, DeviceClass::Other);
    }
}
