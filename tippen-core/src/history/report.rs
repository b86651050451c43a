//! What the history API answers, computed purely from rollups and visits: per-company
//! summaries, analytics over a window, and CSV.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::rollup::{DAY_MS, HOUR_MS, Rollup, RollupKey, RollupScope};
use super::visit::{Visit, VisitCompany};
use crate::clock::Timestamp;

/// The longest window the API accepts.
pub const MAX_WINDOW: Duration = Duration::from_secs(400 * 24 * 3600);

/// A window ending now: `24h`, `7d`, `30d` (any whole number of hours `h` or days `d`, from
/// 1 hour to [`MAX_WINDOW`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// As asked (`7d`).
    pub label: String,
    /// Its length.
    pub length: Duration,
}

impl Window {
    /// Parses `24h`, `7d`, …; the error names what is accepted.
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad = || format!("invalid window '{s}' (expected e.g. 24h, 7d or 30d)");
        let s = s.trim();
        let (n, unit) = s.split_at(s.len().saturating_sub(1));
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(bad)?;
        let length = Duration::from_secs(secs);
        if n == 0 || length > MAX_WINDOW {
            return Err(format!("window '{s}' out of range (1h to 400d)"));
        }
        Ok(Window {
            label: s.to_owned(),
            length,
        })
    }

    /// `[from, to)` of the window ending at `now`.
    pub fn range(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        (now.minus(self.length), now)
    }

    /// The width of the buckets the analytics report in: an hour up to two days, else a day.
    pub fn bucket_ms(&self) -> i64 {
        if self.length <= Duration::from_secs(2 * 86_400) {
            HOUR_MS
        } else {
            DAY_MS
        }
    }
}

/// A key and its count in a top list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    /// The page, host, source, country or company.
    pub key: String,
    /// How many visits.
    pub count: u64,
}

fn counts(v: Vec<(String, u64)>) -> Vec<Count> {
    v.into_iter()
        .map(|(key, count)| Count { key, count })
        .collect()
}

/// One company over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanySummary {
    /// The aggregation key (the domain, else the name): the `{domain}` of
    /// `/api/companies/{domain}`.
    pub key: String,
    /// The company's latest data.
    pub company: Option<VisitCompany>,
    /// Visits.
    pub visits: u64,
    /// Distinct visitors (estimated).
    pub visitors: u64,
    /// Page views.
    pub page_views: u64,
    /// Total time on site, in milliseconds.
    pub total_ms: u64,
    /// First visit start in the window.
    pub first_seen: Option<String>,
    /// Last visit end in the window.
    pub last_seen: Option<String>,
    /// Whether a visit in the window was a returning visitor's.
    pub returning: bool,
    /// Most viewed pages.
    pub top_pages: Vec<Count>,
    /// Invites sent to its visitors.
    pub invites_sent: u64,
}

/// Per-company summaries of the company rollups given (those of one window), most visits
/// first.
pub fn company_summaries(rollups: &[Rollup]) -> Vec<CompanySummary> {
    let mut by_company: BTreeMap<&str, Rollup> = BTreeMap::new();
    for r in rollups {
        let RollupScope::Company(key) = &r.key.scope else {
            continue;
        };
        match by_company.get_mut(key.as_str()) {
            Some(total) => total.merge(r),
            None => {
                by_company.insert(key, r.clone());
            }
        }
    }
    let mut out: Vec<CompanySummary> = by_company
        .into_iter()
        .filter(|(_, r)| r.visits > 0)
        .map(|(key, r)| CompanySummary {
            key: key.to_owned(),
            company: r.company.clone(),
            visits: r.visits,
            visitors: r.visitors.estimate().max(u64::from(r.visits > 0)),
            page_views: r.page_views,
            total_ms: r.total_ms,
            first_seen: r.first_at.map(Timestamp::to_rfc3339),
            last_seen: r.last_at.map(Timestamp::to_rfc3339),
            returning: r.returning > 0,
            top_pages: counts(r.pages.top(5)),
            invites_sent: r.invites_sent,
        })
        .collect();
    out.sort_by(|a, b| {
        b.visits
            .cmp(&a.visits)
            .then_with(|| b.last_seen.cmp(&a.last_seen))
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

/// One bucket of the analytics' time series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Bucket start.
    pub start: String,
    /// Distinct visitors (estimated).
    pub visitors: u64,
    /// Visits.
    pub visits: u64,
    /// Page views.
    pub page_views: u64,
}

/// Analytics over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analytics {
    /// The window asked for (`7d`).
    pub window: String,
    /// Window start.
    pub from: String,
    /// Window end (now).
    pub to: String,
    /// Width of each bucket, in milliseconds.
    pub bucket_ms: i64,
    /// Visitors, visits and page views per bucket, oldest first, empty buckets included.
    pub buckets: Vec<Bucket>,
    /// Distinct visitors over the window (estimated).
    pub visitors: u64,
    /// Visits (bots excluded).
    pub visits: u64,
    /// Bot visits.
    pub bot_visits: u64,
    /// Page views.
    pub page_views: u64,
    /// Share of visits from an identified company (0..1).
    pub identified_share: f64,
    /// Share of visits from returning visitors (0..1).
    pub returning_share: f64,
    /// Median visit duration (estimated from a histogram), in milliseconds.
    pub median_duration_ms: Option<u64>,
    /// Share of visits with at most one page (0..1).
    pub bounce_rate: f64,
    /// Most viewed pages (per visit).
    pub top_pages: Vec<Count>,
    /// Top referrer hosts.
    pub top_referrers: Vec<Count>,
    /// Top UTM sources.
    pub top_utm_sources: Vec<Count>,
    /// Top countries.
    pub top_countries: Vec<Count>,
    /// Top companies (by key).
    pub top_companies: Vec<Count>,
    /// Invites sent.
    pub invites_sent: u64,
    /// Invites accepted.
    pub invites_accepted: u64,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 1000.0).round() / 1000.0
    }
}

/// Analytics of `window` ending at `now` from the site's hourly rollups in it.
pub fn analytics(window: &Window, now: Timestamp, rollups: &[Rollup]) -> Analytics {
    let (from, to) = window.range(now);
    let width = window.bucket_ms();
    let first = from.as_millis().div_euclid(width) * width;
    let mut total = Rollup::new(RollupKey {
        scope: RollupScope::Site,
        bucket: from,
    });
    let mut buckets: BTreeMap<i64, Rollup> = BTreeMap::new();
    let mut start = first;
    while start < to.as_millis() {
        buckets.insert(
            start,
            Rollup::new(RollupKey {
                scope: RollupScope::Site,
                bucket: Timestamp::from_millis(start),
            }),
        );
        start += width;
    }
    for r in rollups.iter().filter(|r| r.key.scope == RollupScope::Site) {
        total.merge(r);
        let b = r.key.bucket.as_millis().div_euclid(width) * width;
        if let Some(bucket) = buckets.get_mut(&b) {
            bucket.merge(r);
        }
    }
    let limit = 10;
    Analytics {
        window: window.label.clone(),
        from: from.to_rfc3339(),
        to: to.to_rfc3339(),
        bucket_ms: width,
        buckets: buckets
            .into_iter()
            .map(|(start, r)| Bucket {
                start: Timestamp::from_millis(start).to_rfc3339(),
                visitors: if r.visits == 0 {
                    0
                } else {
                    r.visitors.estimate().max(1)
                },
                visits: r.visits,
                page_views: r.page_views,
            })
            .collect(),
        visitors: if total.visits == 0 {
            0
        } else {
            total.visitors.estimate().max(1)
        },
        visits: total.visits,
        bot_visits: total.bot_visits,
        page_views: total.page_views,
        identified_share: share(total.identified, total.visits),
        returning_share: share(total.returning, total.visits),
        median_duration_ms: total.median_duration_ms(),
        bounce_rate: share(total.bounces, total.visits),
        top_pages: counts(total.pages.top(limit)),
        top_referrers: counts(total.referrers.top(limit)),
        top_utm_sources: counts(total.utm_sources.top(limit)),
        top_countries: counts(total.countries.top(limit)),
        top_companies: counts(total.companies.top(limit)),
        invites_sent: total.invites_sent,
        invites_accepted: total.invites_accepted,
    }
}

/// A CSV field: quoted when it holds a comma, quote, CR or LF, or leading/trailing space
/// (quotes doubled); a text starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`
/// so a spreadsheet shows it instead of evaluating it (visitor-controlled text: referrers,
/// UTM values, paths).
pub fn csv_field(s: &str) -> String {
    let guarded;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{s}");
        guarded.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_row(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// The header row of [`visit_csv_row`].
pub const VISIT_CSV_HEADER: &[&str] = &[
    "visitId",
    "visitorId",
    "startedAt",
    "endedAt",
    "durationMs",
    "landingPage",
    "exitPage",
    "pages",
    "pageViews",
    "referrer",
    "utmSource",
    "utmMedium",
    "utmCampaign",
    "browser",
    "os",
    "device",
    "country",
    "city",
    "company",
    "companyDomain",
    "industry",
    "size",
    "revenue",
    "isBot",
    "visitNumber",
    "invites",
    "endReason",
];

/// The CSV header line of visits.
pub fn visit_csv_header() -> String {
    csv_row(
        &VISIT_CSV_HEADER
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    )
}

/// One visit as a CSV line (`pages` as `path (seconds)` joined by ` > `; invites as
/// `id:state` joined by spaces).
pub fn visit_csv_row(v: &Visit) -> String {
    let company = v.company.as_ref();
    let text = |s: Option<&String>| s.cloned().unwrap_or_default();
    let json = |x: &dyn erased::Ser| x.json();
    let pages = v
        .pages
        .iter()
        .map(|p| format!("{} ({}s)", p.path, p.duration_ms / 1000))
        .collect::<Vec<_>>()
        .join(" > ");
    csv_row(&[
        v.visit_id.clone(),
        v.visitor_id.clone(),
        v.started_at.to_rfc3339(),
        v.ended_at.to_rfc3339(),
        v.duration_ms.to_string(),
        v.landing_page.clone(),
        v.exit_page.clone(),
        pages,
        v.page_views.to_string(),
        text(v.referrer.as_ref()),
        text(v.utm.source.as_ref()),
        text(v.utm.medium.as_ref()),
        text(v.utm.campaign.as_ref()),
        v.device.browser.clone(),
        v.device.os.clone(),
        json(&v.device.class),
        text(v.place.country.as_ref()),
        text(v.place.city.as_ref()),
        company.map(|c| c.name.clone()).unwrap_or_default(),
        text(company.and_then(|c| c.domain.as_ref())),
        text(company.and_then(|c| c.industry.as_ref())),
        text(company.and_then(|c| c.size.as_ref())),
        text(company.and_then(|c| c.revenue.as_ref())),
        v.is_bot.to_string(),
        v.visit_number.to_string(),
        v.invites
            .iter()
            .map(|i| format!("{}:{}", i.invite_id, erased::Ser::json(&i.state)))
            .collect::<Vec<_>>()
            .join(" "),
        json(&v.end_reason),
    ])
}

/// The CSV of company summaries (header line included).
pub fn companies_csv(companies: &[CompanySummary]) -> String {
    let mut out = csv_row(
        &[
            "key",
            "name",
            "domain",
            "industry",
            "size",
            "revenue",
            "visits",
            "visitors",
            "pageViews",
            "totalMs",
            "firstSeen",
            "lastSeen",
            "returning",
            "topPages",
        ]
        .map(str::to_owned),
    );
    for c in companies {
        let company = c.company.as_ref();
        let text = |s: Option<&String>| s.cloned().unwrap_or_default();
        out.push_str(&csv_row(&[
            c.key.clone(),
            company.map(|c| c.name.clone()).unwrap_or_default(),
            text(company.and_then(|c| c.domain.as_ref())),
            text(company.and_then(|c| c.industry.as_ref())),
            text(company.and_then(|c| c.size.as_ref())),
            text(company.and_then(|c| c.revenue.as_ref())),
            c.visits.to_string(),
            c.visitors.to_string(),
            c.page_views.to_string(),
            c.total_ms.to_string(),
            c.first_seen.clone().unwrap_or_default(),
            c.last_seen.clone().unwrap_or_default(),
            c.returning.to_string(),
            c.top_pages
                .iter()
                .map(|p| p.key.clone())
                .collect::<Vec<_>>()
                .join(" "),
        ]));
    }
    out
}

/// A serde enum's plain name (`"left"` → `left`).
mod erased {
    pub(super) trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_value(self)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_name_their_errors() {
        assert_eq!(
            Window::parse("7d").unwrap().length,
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(Window::parse("24h").unwrap().bucket_ms(), HOUR_MS);
        assert_eq!(Window::parse("30d").unwrap().bucket_ms(), DAY_MS);
        for bad in ["", "7", "d", "0d", "7w", "-1d", "9999d"] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains("window"), "{bad}: {e}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_guarded() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("=1,2"), "\"'=1,2\"");
    }
}
