//! Alert rules for company visits, evaluated purely.
//!
//! A site keeps a list of [`AlertRule`]s (in configuration, `alertRules`, and through the
//! secret-key API `/api/alert-rules`) and where alerts go ([`AlertDestinations`]: a Slack
//! incoming webhook and signed webhooks). The service evaluates the rules on the events that
//! can change an answer — a new visit, a page view, a company identified by enrichment, the
//! visit's close — never on a heartbeat: [`Subject`] is what such an event knows about the visit, [`AlertRule::matches`]
//! decides, and a match becomes an [`AlertNotice`] once the rule's cooldown for that company
//! is claimed in the store (one alert per company and rule per cooldown, across processes).
//!
//! Every condition a rule sets must hold (they combine with "and"; a rule with none matches
//! every subject it is evaluated on):
//!
//! | condition | holds when |
//! |---|---|
//! | `domains` (target accounts) | the company's domain is one of them or a subdomain of one |
//! | `industries` | the company's industry is one of them (case-insensitive) |
//! | `employeesMin` / `employeesMax` | the lower bound of the company's employee range (`51-200` → 51, `10000+` → 10000) is within |
//! | `countries` | the last part of the company's location (`San Francisco, CA, US` → `US`) is one of them |
//! | `pages` + `minPageWeight` (hot pages) | the weights of the listed pages viewed in this visit add up to `minPageWeight` (default: the smallest weight, i.e. any listed page); a path ending in `*` is a prefix |
//! | `minLeadScore` | [`lead_score`] is at least this |
//! | `newCompany` | the company was identified by this very event (enrichment settled, or a new visit whose company came from the cache) |
//! | `returningWithinDays` | the company has a closed visit in the site's history that started within that many days before this visit (needs visit history) |
//!
//! `businessHours` (optional) limits alerts to a weekly window in an IANA time zone.
//! `cooldownMinutes` (default 60) is per company and rule; a visitor without an identified
//! company is its own "company" for the cooldown.

use std::fmt;

use chrono::{Datelike, NaiveTime, Timelike, Weekday};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::presence::Company;
use crate::protocol::EnrichmentSource;
use crate::site::SiteId;
use crate::slack::WebhookUrl;

/// Default cooldown per company and rule.
pub const DEFAULT_COOLDOWN_MINUTES: u32 = 60;
/// Most rules per site.
pub const MAX_RULES: usize = 50;
/// Most webhooks per site.
pub const MAX_WEBHOOKS: usize = 5;
/// Most entries in one list of a rule (domains, industries, countries, pages).
pub const MAX_LIST: usize = 200;

/// Where a rule came from: the configuration (replaced at every start) or the API (kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// The server's configuration (`alertRules`).
    #[default]
    Config,
    /// `POST /api/alert-rules` or `PUT /api/alert-rules/{id}`.
    Api,
}

/// A page that makes a visit "hot", with its weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HotPage {
    /// A path (`/pricing`), or a prefix ending in `*` (`/docs/*`).
    pub path: String,
    /// Its weight (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// What must hold for a rule to match; every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    /// Target accounts: company domains (a subdomain matches too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Company industries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub industries: Vec<String>,
    /// Least employees (the lower bound of the company's range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees_min: Option<u32>,
    /// Most employees (the lower bound of the company's range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees_max: Option<u32>,
    /// Countries (the last part of the company's location, e.g. `US`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Hot pages with weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<HotPage>,
    /// The weight the visit's hot pages must add up to (default: the smallest listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_page_weight: Option<u32>,
    /// The least [`lead_score`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lead_score: Option<u32>,
    /// Only when this event identified the company.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_company: bool,
    /// Only a company that visited before, within this many days (a closed visit in the
    /// site's history that started at most this long before this visit). Needs visit
    /// history; without it the condition never holds. Checked by the service after every
    /// other condition ([`AlertRule::matches`] leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returning_within_days: Option<u32>,
}

/// A weekly window in a time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BusinessHours {
    /// An IANA time zone (`Europe/Berlin`, `America/New_York`, `UTC`).
    pub time_zone: String,
    /// Days (`mon` … `sun`); default Monday to Friday.
    #[serde(default = "weekdays")]
    pub days: Vec<String>,
    /// Start, `HH:MM` (default `09:00`).
    #[serde(default = "nine")]
    pub start: String,
    /// End, `HH:MM`, exclusive (default `17:00`).
    #[serde(default = "five")]
    pub end: String,
}

fn weekdays() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .map(String::from)
        .to_vec()
}
fn nine() -> String {
    "09:00".into()
}
fn five() -> String {
    "17:00".into()
}

/// One alert rule of a site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRule {
    /// Its id within the site: 1 to 64 of `A-Z a-z 0-9 - _ .`.
    pub id: String,
    /// A name people read (default: the id).
    #[serde(default)]
    pub name: String,
    /// What must hold.
    #[serde(default)]
    pub when: Conditions,
    /// Minutes between two alerts of this rule for one company (default 60, 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_minutes: Option<u32>,
    /// Only within these hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHours>,
    /// Where the rule came from (set by the server).
    #[serde(default)]
    pub source: RuleSource,
}

/// A rule was refused; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn bad(msg: impl Into<String>) -> RuleError {
    RuleError(msg.into())
}

fn hh_mm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

fn weekday(s: &str) -> Option<Weekday> {
    s.to_ascii_lowercase().parse::<Weekday>().ok()
}

impl AlertRule {
    /// Checks the rule and fills defaults (the name). Lists are trimmed and lower-cased where
    /// compared without case.
    pub fn checked(mut self) -> Result<AlertRule, RuleError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !id_ok {
            return Err(bad(
                "rule id must be 1 to 64 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        if self.name.trim().is_empty() {
            self.name = self.id.clone();
        }
        if self.name.len() > 128 {
            return Err(bad("rule name must be at most 128 bytes"));
        }
        let w = &mut self.when;
        for (what, list) in [
            ("domains", &mut w.domains),
            ("industries", &mut w.industries),
            ("countries", &mut w.countries),
        ] {
            if list.len() > MAX_LIST {
                return Err(bad(format!("{what} may list at most {MAX_LIST} entries")));
            }
            for item in list.iter_mut() {
                *item = item.trim().trim_start_matches('.').to_ascii_lowercase();
                if item.is_empty() || item.len() > 253 {
                    return Err(bad(format!("{what} entries must be 1 to 253 bytes")));
                }
            }
        }
        if w.pages.len() > MAX_LIST {
            return Err(bad(format!("pages may list at most {MAX_LIST} entries")));
        }
        for page in &w.pages {
            if !page.path.starts_with('/') || page.path.len() > 512 {
                return Err(bad(format!(
                    "page path {:?} must start with / and be at most 512 bytes",
                    page.path
                )));
            }
        }
        if let (Some(lo), Some(hi)) = (w.employees_min, w.employees_max)
            && lo > hi
        {
            return Err(bad("employeesMin must not be above employeesMax"));
        }
        if w.min_page_weight.is_some() && w.pages.is_empty() {
            return Err(bad("minPageWeight needs pages"));
        }
        if w.returning_within_days.is_some_and(|d| d == 0 || d > 3650) {
            return Err(bad("returningWithinDays must be 1 to 3650"));
        }
        if let Some(score) = w.min_lead_score
            && score > 100
        {
            return Err(bad("minLeadScore must be 0 to 100"));
        }
        if let Some(hours) = &self.business_hours {
            if hours.time_zone.parse::<chrono_tz::Tz>().is_err() {
                return Err(bad(format!(
                    "businessHours.timeZone {:?} is not an IANA time zone",
                    hours.time_zone
                )));
            }
            if hours.days.is_empty() || hours.days.iter().any(|d| weekday(d).is_none()) {
                return Err(bad("businessHours.days must name days as mon … sun"));
            }
            match (hh_mm(&hours.start), hh_mm(&hours.end)) {
                (Some(s), Some(e)) if s < e => {}
                _ => {
                    return Err(bad(
                        "businessHours.start and end must be HH:MM with start before end",
                    ));
                }
            }
        }
        Ok(self)
    }

    /// The cooldown, in milliseconds.
    pub fn cooldown_ms(&self) -> i64 {
        i64::from(self.cooldown_minutes.unwrap_or(DEFAULT_COOLDOWN_MINUTES)) * 60_000
    }

    /// Whether `at` is within the rule's business hours (always, without any).
    pub fn in_hours(&self, at: Timestamp) -> bool {
        let Some(hours) = &self.business_hours else {
            return true;
        };
        let (Ok(tz), Some(start), Some(end)) = (
            hours.time_zone.parse::<chrono_tz::Tz>(),
            hh_mm(&hours.start),
            hh_mm(&hours.end),
        ) else {
            return false;
        };
        let Some(utc) = chrono::DateTime::from_timestamp_millis(at.as_millis()) else {
            return false;
        };
        let local = utc.with_timezone(&tz);
        let day_ok = hours
            .days
            .iter()
            .any(|d| weekday(d) == Some(local.weekday()));
        let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second());
        day_ok && time.is_some_and(|t| start <= t && t < end)
    }

    /// The hot-page weight of `pages` (each listed page counts once).
    pub fn page_weight(&self, pages: &[String]) -> u32 {
        self.when
            .pages
            .iter()
            .filter(|hot| pages.iter().any(|p| path_matches(&hot.path, p)))
            .map(|hot| hot.weight)
            .sum()
    }

    /// Whether the rule's conditions hold for `subject` (business hours apart).
    pub fn matches(&self, subject: &Subject) -> bool {
        let w = &self.when;
        let c = &subject.company;
        let lower = |s: &Option<String>| s.as_deref().map(str::to_ascii_lowercase);
        if !w.domains.is_empty() {
            let Some(domain) = lower(&c.domain) else {
                return false;
            };
            let domain = domain.trim_start_matches("www.");
            if !w
                .domains
                .iter()
                .any(|d| domain == d || domain.ends_with(&format!(".{d}")))
            {
                return false;
            }
        }
        if !w.industries.is_empty()
            && !lower(&c.industry).is_some_and(|i| w.industries.contains(&i))
        {
            return false;
        }
        if w.employees_min.is_some() || w.employees_max.is_some() {
            let Some(n) = c.employees.as_deref().and_then(employees_lower_bound) else {
                return false;
            };
            if w.employees_min.is_some_and(|min| n < min) || w.employees_max.is_some_and(|m| n > m)
            {
                return false;
            }
        }
        if !w.countries.is_empty()
            && !country(c).is_some_and(|country| w.countries.contains(&country))
        {
            return false;
        }
        if !w.pages.is_empty() {
            let min = w
                .min_page_weight
                .unwrap_or_else(|| w.pages.iter().map(|p| p.weight).min().unwrap_or(1));
            if self.page_weight(&subject.pages) < min.max(1) {
                return false;
            }
        }
        if let Some(min) = w.min_lead_score
            && lead_score(subject) < min
        {
            return false;
        }
        if w.new_company && !subject.identified_now {
            return false;
        }
        true
    }
}

/// Whether `path` is `pattern`, or starts with it when it ends in `*`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path || pattern.trim_end_matches('/') == path.trim_end_matches('/'),
    }
}

/// The lower bound of an employee range: `51-200` → 51, `10000+` → 10000, `1,001-5,000` →
/// 1001.
pub fn employees_lower_bound(range: &str) -> Option<u32> {
    let digits: String = range
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The company's country: the last comma-separated part of its location, lower-cased.
fn country(c: &Company) -> Option<String> {
    let loc = c.enriched_location.as_deref()?;
    let last = loc.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_ascii_lowercase())
}

/// Whether the company is a real, identified company (not a fallback).
pub fn identified(c: &Company) -> bool {
    c.source != EnrichmentSource::Fallback
}

/// What an event knows about a visit, for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The visitor.
    pub visitor_id: String,
    /// Its company (a fallback when not identified).
    pub company: Company,
    /// The distinct paths viewed in this visit, in order.
    pub pages: Vec<String>,
    /// Page views in this visit.
    pub page_views: u64,
    /// Time since the visit started.
    pub time_on_site_ms: u64,
    /// When the visit started.
    pub visit_started_at: Timestamp,
    /// Whether this event identified the company.
    pub identified_now: bool,
}

impl Subject {
    /// The key the cooldown is counted by: the company's domain (or name) when identified,
    /// otherwise the visitor.
    pub fn cooldown_key(&self) -> String {
        if identified(&self.company) {
            let key = self
                .company
                .domain
                .as_deref()
                .unwrap_or(&self.company.name)
                .to_ascii_lowercase();
            format!("company:{key}")
        } else {
            format!("visitor:{}", self.visitor_id)
        }
    }
}

/// The lead score, 0 to 100, from engagement and company data:
///
/// - pages: 5 per page view, at most 30;
/// - time on site: 1 per 30 s, at most 20;
/// - an identified company: 20;
/// - its size (lower bound of the employee range): 10 from 50, 20 from 200, 30 from 1000.
pub fn lead_score(s: &Subject) -> u32 {
    let pages = (s.page_views.min(6) as u32) * 5;
    let time = ((s.time_on_site_ms / 30_000).min(20)) as u32;
    let (company, size) = if identified(&s.company) {
        let n = s
            .company
            .employees
            .as_deref()
            .and_then(employees_lower_bound)
            .unwrap_or(0);
        let size = match n {
            1000.. => 30,
            200.. => 20,
            50.. => 10,
            _ => 0,
        };
        (20, size)
    } else {
        (0, 0)
    };
    (pages + time + company + size).min(100)
}

/// A secret webhooks are signed with. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// The secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SigningSecret(secret.into())
    }

    /// The secret's bytes, to sign with. Never log them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

/// One webhook: where and with which secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTarget {
    /// The receiver's URL (`http(s)://`).
    pub url: WebhookUrl,
    /// The signing secret (at least 16 characters).
    pub secret: SigningSecret,
}

/// Where a site's alerts go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertDestinations {
    /// A Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_webhook_url: Option<WebhookUrl>,
    /// Signed webhooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookTarget>,
}

impl AlertDestinations {
    /// Whether alerts go nowhere.
    pub fn is_empty(&self) -> bool {
        self.slack_webhook_url.is_none() && self.webhooks.is_empty()
    }

    /// Checks the destinations.
    pub fn checked(self) -> Result<Self, RuleError> {
        if self.webhooks.len() > MAX_WEBHOOKS {
            return Err(bad(format!("at most {MAX_WEBHOOKS} webhooks")));
        }
        if self
            .webhooks
            .iter()
            .any(|w| w.secret.expose().chars().count() < 16)
        {
            return Err(bad("a webhook secret needs at least 16 characters"));
        }
        Ok(self)
    }
}

/// Checks a site's whole rule list (each rule, at most [`MAX_RULES`], distinct ids) and marks
/// each with `source`.
pub fn check_rules(rules: Vec<AlertRule>, source: RuleSource) -> Result<Vec<AlertRule>, RuleError> {
    if rules.len() > MAX_RULES {
        return Err(bad(format!("a site has at most {MAX_RULES} alert rules")));
    }
    let mut checked: Vec<AlertRule> = Vec::with_capacity(rules.len());
    for rule in rules {
        let mut rule = rule.checked()?;
        if checked.iter().any(|r| r.id == rule.id) {
            return Err(bad(format!("rule id {:?} is used twice", rule.id)));
        }
        rule.source = source;
        checked.push(rule);
    }
    Ok(checked)
}

/// The rules a site keeps when its configuration is loaded again: the configured ones, then
/// those created through the API whose ids the configuration does not use.
pub fn merge_configured(configured: &[AlertRule], stored: &[AlertRule]) -> Vec<AlertRule> {
    let mut rules = configured.to_vec();
    rules.extend(
        stored
            .iter()
            .filter(|r| r.source == RuleSource::Api && !configured.iter().any(|c| c.id == r.id))
            .cloned(),
    );
    rules
}

/// How the server treats alert destinations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Whether destinations set through the API may be plain `http://` and name loopback,
    /// private or link-local addresses (`TIPPEN_ALERT_PRIVATE_DESTINATIONS=1`; off by default:
    /// a secret-key holder could otherwise make the server call into its own network).
    /// Destinations in the configuration are the operator's and always allowed.
    pub allow_private_destinations: bool,
    /// The server's public base URL (`TIPPEN_PUBLIC_URL`), for the links in alerts (Slack's
    /// buttons, a webhook's `dashboardUrl`); `None`: alerts carry no links.
    pub public_url: Option<String>,
}

/// Checks a destination URL set through the API: `https://`, and not a loopback, private or
/// link-local address (nor `localhost`), unless `allow_private`. Names that resolve to such
/// addresses cannot be seen without DNS; a firewall for outbound traffic covers those.
pub fn check_destination_url(url: &WebhookUrl, allow_private: bool) -> Result<(), RuleError> {
    if allow_private {
        return Ok(());
    }
    let uri: http::Uri = url
        .expose()
        .parse()
        .map_err(|_| bad("a destination must be a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("a destination must be an https:// URL"));
    }
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let private = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !crate::enrichment::classify(ip).is_public(),
        Err(_) => {
            let h = host.to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost") || h.ends_with(".internal")
        }
    };
    if private {
        return Err(bad(format!(
            "a destination may not point at a local or private address ({host})"
        )));
    }
    Ok(())
}

/// An alert to deliver: the rule that matched, the visit, and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertNotice {
    /// The site.
    pub site: SiteId,
    /// The site's name.
    pub site_name: String,
    /// The alert's id (`alt_` and 16 hex digits), the same in every destination.
    pub alert_id: String,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's name.
    pub rule_name: String,
    /// The visit.
    pub subject: Subject,
    /// Its lead score.
    pub lead_score: u32,
    /// When the qualifying event happened.
    pub at: Timestamp,
    /// Where it goes.
    pub destinations: AlertDestinations,
}

/// How many entries of a site's alert log a store keeps (the newest).
pub const ALERT_LOG_KEEP: usize = 200;

/// One entry of a site's alert log ([`Store::log_alert`](crate::Store::log_alert)): an alert
/// raised, or the end of one delivery of an alert or a support alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertLogEntry {
    /// When (epoch ms).
    pub at: i64,
    /// `raised`, `delivered` or `failed`.
    pub event: String,
    /// `alert` (an alert rule) or `support` (a support alert).
    pub kind: String,
    /// The alert's id (`alt_…`), or the support alert's user id.
    pub id: String,
    /// The rule (raised alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// The rule's name (raised alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    /// The visitor (raised alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// The company's name (raised alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// The company's domain (raised alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The lead score (raised alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_score: Option<u32>,
    /// `slack` or `webhook` (deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Where it went: the destination's origin only (deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Attempts made (deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Why it failed (failed deliveries; never a URL or a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AlertLogEntry {
    /// The entry of an alert raised.
    pub fn raised(notice: &AlertNotice) -> Self {
        AlertLogEntry {
            at: notice.at.as_millis(),
            event: "raised".into(),
            kind: "alert".into(),
            id: notice.alert_id.clone(),
            rule_id: Some(notice.rule_id.clone()),
            rule_name: Some(notice.rule_name.clone()),
            visitor_id: Some(notice.subject.visitor_id.clone()),
            company: Some(notice.subject.company.name.clone()),
            domain: notice.subject.company.domain.clone(),
            lead_score: Some(notice.lead_score),
            channel: None,
            destination: None,
            attempts: None,
            reason: None,
        }
    }
}

/// The rules of `rules` that match `subject` at `at` (conditions and business hours),
/// before cooldowns.
pub fn matching<'a>(
    rules: &'a [AlertRule],
    subject: &Subject,
    at: Timestamp,
) -> Vec<&'a AlertRule> {
    rules
        .iter()
        .filter(|r| r.in_hours(at) && r.matches(subject))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Company {
        Company {
            name: "Acme".into(),
            location: "San Francisco, CA".into(),
            domain: Some("acme.com".into()),
            industry: Some("Software".into()),
            revenue: None,
            employees: Some("51-200".into()),
            enriched_location: Some("San Francisco, CA, US".into()),
            source: EnrichmentSource::Provider,
            is_cached: false,
            enriched_at: None,
        }
    }

    fn subject(pages: &[&str]) -> Subject {
        Subject {
            visitor_id: "v1".into(),
            company: acme(),
            pages: pages.iter().map(|p| p.to_string()).collect(),
            page_views: pages.len() as u64,
            time_on_site_ms: 60_000,
            visit_started_at: Timestamp::from_millis(0),
            identified_now: false,
        }
    }

    fn rule(json: serde_json::Value) -> AlertRule {
        serde_json::from_value::<AlertRule>(json)
            .unwrap()
            .checked()
            .unwrap()
    }

    #[test]
    fn conditions_combine_with_and() {
        let r = rule(
            serde_json::json!({"id":"r","when":{"domains":["ACME.com"],"pages":[{"path":"/pricing"}]}}),
        );
        assert!(r.matches(&subject(&["/", "/pricing"])));
        assert!(!r.matches(&subject(&["/"])));
        let mut other = subject(&["/pricing"]);
        other.company.domain = Some("acme.com.evil.test".into());
        assert!(!r.matches(&other));
        other.company.domain = Some("eu.acme.com".into());
        assert!(r.matches(&other));
    }

    #[test]
    fn company_filters() {
        let r = rule(
            serde_json::json!({"id":"r","when":{"industries":["software"],"employeesMin":50,"employeesMax":500,"countries":["us"]}}),
        );
        assert!(r.matches(&subject(&["/"])));
        let mut small = subject(&["/"]);
        small.company.employees = Some("11-50".into());
        assert!(!r.matches(&small));
        let mut de = subject(&["/"]);
        de.company.enriched_location = Some("Berlin, DE".into());
        assert!(!r.matches(&de));
    }

    #[test]
    fn page_weights_add_up() {
        let r = rule(
            serde_json::json!({"id":"r","when":{"pages":[{"path":"/pricing","weight":5},{"path":"/docs/*","weight":3}],"minPageWeight":8}}),
        );
        assert!(!r.matches(&subject(&["/pricing"])));
        assert!(r.matches(&subject(&["/pricing", "/docs/api"])));
        assert!(!r.matches(&subject(&["/docs/a", "/docs/b"])));
    }

    #[test]
    fn lead_score_formula() {
        let mut s = subject(&["/", "/a", "/b"]);
        // 3 pages 15 + 60 s 2 + company 20 + 51 employees 10.
        assert_eq!(lead_score(&s), 47);
        s.company = Company::unknown();
        assert_eq!(lead_score(&s), 17);
        s.page_views = 100;
        s.time_on_site_ms = 3_600_000;
        assert_eq!(lead_score(&s), 50);
    }

    #[test]
    fn business_hours_in_a_time_zone() {
        let r = rule(serde_json::json!({"id":"r","businessHours":{"timeZone":"Europe/Berlin"}}));
        // 2026-12-02 (Wednesday) 08:30 UTC is 09:30 in Berlin.
        let wed = chrono::DateTime::parse_from_rfc3339("2026-12-02T08:30:00Z").unwrap();
        assert!(r.in_hours(Timestamp::from_millis(wed.timestamp_millis())));
        let early = chrono::DateTime::parse_from_rfc3339("2026-12-02T07:30:00Z").unwrap();
        assert!(!r.in_hours(Timestamp::from_millis(early.timestamp_millis())));
        let sat = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap();
        assert!(!r.in_hours(Timestamp::from_millis(sat.timestamp_millis())));
    }

    #[test]
    fn bad_rules_are_named() {
        let check = |v: serde_json::Value| {
            serde_json::from_value::<AlertRule>(v)
                .unwrap()
                .checked()
                .unwrap_err()
                .0
        };
        assert!(check(serde_json::json!({"id":"a b"})).contains("rule id"));
        assert!(
            check(serde_json::json!({"id":"r","businessHours":{"timeZone":"Mars/Base"}}))
                .contains("IANA")
        );
        assert!(
            check(serde_json::json!({"id":"r","when":{"pages":[{"path":"pricing"}]}}))
                .contains("must start with /")
        );
    }

    #[test]
    fn secrets_are_not_shown() {
        let d = AlertDestinations {
            slack_webhook_url: Some(
                WebhookUrl::parse("https://hooks.slack.com/services/X").unwrap(),
            ),
            webhooks: vec![WebhookTarget {
                url: WebhookUrl::parse("https://hooks.example/t/secretpath").unwrap(),
                secret: SigningSecret::new("0123456789abcdef-secret"),
            }],
        };
        let shown = format!("{d:?}");
        assert!(
            !shown.contains("secretpath")
                && !shown.contains("abcdef-secret")
                && !shown.contains("/X")
        );
    }
}
