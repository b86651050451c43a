//! The compact stored form of a closed visit, for stores that keep the visit's identity in
//! columns or keys of their own (site, visit id, visitor id, start): those are left out, times
//! are milliseconds after the start, pages are `[path, offset, duration]` triples, the landing
//! and exit pages are kept only when the pages don't already say them, and empty or default
//! fields are skipped, under one-letter names. A typical visit of three pages takes about a
//! third of its full JSON ([`Visit`]'s API form).
//!
//! [`decode`] also reads the full JSON form, so rows written before a store adopted this
//! one stay readable.

use serde::{Deserialize, Serialize};

use super::visit::{Device, DeviceClass, PageVisit, Place, Utm, Visit, VisitCompany, VisitInvite};
use crate::clock::Timestamp;
use crate::presence::RemovalReason;
use crate::site::SiteId;

/// The format marker: the first field of every compact record.
const FORMAT: u8 = 1;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize)]
struct Compact {
    /// [`FORMAT`].
    v: u8,
    /// `ended_at - started_at`, ms.
    e: i64,
    /// `duration_ms`, when it is not `e`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<u64>,
    /// Pages: path, ms after the start, duration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    p: Vec<(std::sync::Arc<str>, i64, u64)>,
    /// `more_pages`.
    #[serde(default, skip_serializing_if = "is_zero")]
    m: u32,
    /// The landing page, when it is not the first page's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    /// The exit page, when it is not the last page's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    /// `page_views`.
    n: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    u: Utm,
    /// Browser, OS, class.
    d: (String, String, DeviceClass),
    #[serde(default, skip_serializing_if = "Place::is_empty")]
    g: Place,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<VisitCompany>,
    #[serde(default, skip_serializing_if = "is_false")]
    b: bool,
    /// `visit_number`.
    k: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    i: Vec<VisitInvite>,
    /// `end_reason`.
    z: RemovalReason,
}

/// `visit` in the compact form (without its site, ids and start, which the caller stores).
pub fn encode(visit: &Visit) -> String {
    let start = visit.started_at.as_millis();
    let e = visit.ended_at.as_millis() - start;
    let first = visit.pages.first().map(|p| &*p.path);
    let last = visit.pages.last().map(|p| &*p.path);
    let compact = Compact {
        v: FORMAT,
        e,
        t: (i64::try_from(visit.duration_ms).ok() != Some(e)).then_some(visit.duration_ms),
        p: visit
            .pages
            .iter()
            .map(|p| (p.path.clone(), p.at.as_millis() - start, p.duration_ms))
            .collect(),
        m: visit.more_pages,
        l: (first != Some(visit.landing_page.as_str())).then(|| visit.landing_page.clone()),
        x: (last != Some(visit.exit_page.as_str())).then(|| visit.exit_page.clone()),
        n: visit.page_views,
        r: visit.referrer.clone(),
        u: visit.utm.clone(),
        d: (
            visit.device.browser.clone(),
            visit.device.os.clone(),
            visit.device.class,
        ),
        g: visit.place.clone(),
        c: visit.company.clone(),
        b: visit.is_bot,
        k: visit.visit_number,
        i: visit.invites.clone(),
        z: visit.end_reason,
    };
    serde_json::to_string(&compact).expect("a visit always serializes")
}

/// The visit stored as `text` ([`encode`]'s form, or the full JSON of [`Visit`]) under
/// `site`, `visit_id`, `visitor_id` and `started_at`.
pub fn decode(
    site: &SiteId,
    visit_id: &str,
    visitor_id: &str,
    started_at: Timestamp,
    text: &str,
) -> Result<Visit, serde_json::Error> {
    // `v` is always the first field written.
    let Some(rest) = text.strip_prefix("{\"v\":") else {
        return serde_json::from_str(text);
    };
    if !rest.starts_with(&format!("{FORMAT},")) {
        let format: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return Err(serde::de::Error::custom(format!(
            "unknown compact visit format {format}"
        )));
    }
    let c: Compact = serde_json::from_str(text)?;
    let start = started_at.as_millis();
    let at = |offset: i64| Timestamp::from_millis(start.saturating_add(offset));
    let pages: Vec<PageVisit> =
        c.p.into_iter()
            .map(|(path, offset, duration_ms)| PageVisit {
                path,
                at: at(offset),
                duration_ms,
            })
            .collect();
    let landing_page =
        c.l.or_else(|| pages.first().map(|p| p.path.to_string()))
            .unwrap_or_default();
    let exit_page =
        c.x.or_else(|| pages.last().map(|p| p.path.to_string()))
            .unwrap_or_default();
    Ok(Visit {
        site: site.clone(),
        visit_id: visit_id.to_owned(),
        visitor_id: visitor_id.to_owned(),
        started_at,
        ended_at: at(c.e),
        duration_ms: c.t.unwrap_or(c.e.max(0) as u64),
        landing_page,
        exit_page,
        pages,
        more_pages: c.m,
        page_views: c.n,
        referrer: c.r,
        utm: c.u,
        device: Device {
            browser: c.d.0,
            os: c.d.1,
            class: c.d.2,
        },
        place: c.g,
        company: c.c,
        is_bot: c.b,
        visit_number: c.k,
        invites: c.i,
        end_reason: c.z,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::EnrichmentSource;
    use crate::protocol::InviteState;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn full() -> Visit {
        Visit {
            site: SiteId::from("s"),
            visit_id: "vis_0123456789abcdef".into(),
            visitor_id: "visitor_1729080000000_abc".into(),
            started_at: t(1_796_000_000_000),
            ended_at: t(1_796_000_090_000),
            duration_ms: 90_000,
            landing_page: "/".into(),
            exit_page: "/pricing".into(),
            pages: vec![
                PageVisit {
                    path: "/".into(),
                    at: t(1_796_000_000_000),
                    duration_ms: 30_000,
                },
                PageVisit {
                    path: "/pricing".into(),
                    at: t(1_796_000_030_000),
                    duration_ms: 60_000,
                },
            ],
            more_pages: 0,
            page_views: 2,
            referrer: Some("https://www.google.com/".into()),
            utm: Utm {
                source: Some("news".into()),
                ..Utm::default()
            },
            device: Device {
                browser: "Chrome".into(),
                os: "Windows 10".into(),
                class: DeviceClass::Desktop,
            },
            place: Place::new(Some("DE"), Some("Berlin")),
            company: Some(VisitCompany {
                name: "Acme".into(),
                domain: Some("acme.example".into()),
                industry: Some("Software".into()),
                size: Some("51-200".into()),
                revenue: None,
                source: EnrichmentSource::Provider,
            }),
            is_bot: false,
            visit_number: 3,
            invites: vec![VisitInvite {
                invite_id: "inv_1".into(),
                state: InviteState::Accepted,
                sent_at: t(1_796_000_040_000),
                updated_at: t(1_796_000_045_000),
            }],
            end_reason: RemovalReason::Left,
        }
    }

    fn round_trip(v: &Visit) -> (Visit, usize) {
        let text = encode(v);
        let back =
            decode(&v.site, &v.visit_id, &v.visitor_id, v.started_at, &text).expect("decodes");
        (back, text.len())
    }

    #[test]
    fn every_field_comes_back_in_about_half_the_bytes() {
        let v = full();
        let (back, compact) = round_trip(&v);
        assert_eq!(back, v);
        let json = serde_json::to_string(&v).unwrap().len();
        assert!(compact * 2 < json + 100, "{compact} B compact vs {json} B");
    }

    #[test]
    fn odd_visits_come_back_too() {
        // No pages, pages beyond the bound (the exit page is not the last kept one), a
        // landing page that is not the first page, a duration that is not end - start, a bot.
        let mut a = full();
        a.pages.clear();
        a.landing_page = String::new();
        a.exit_page = String::new();
        a.company = None;
        a.invites.clear();
        a.utm = Utm::default();
        a.place = Place::default();
        a.referrer = None;
        a.is_bot = true;
        a.end_reason = RemovalReason::Inactive;
        assert_eq!(round_trip(&a).0, a);
        let mut b = full();
        b.more_pages = 4;
        b.exit_page = "/later".into();
        b.landing_page = "/landing".into();
        b.duration_ms = 1;
        assert_eq!(round_trip(&b).0, b);
    }

    #[test]
    fn the_full_form_is_read_too_and_other_formats_are_refused() {
        let v = full();
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            decode(&v.site, "ignored", "ignored", t(0), &json).expect("full form"),
            v
        );
        let err = decode(&v.site, "x", "y", t(0), r#"{"v":2,"e":0}"#).expect_err("format 2");
        assert!(err.to_string().contains("format 2"), "{err}");
    }
}
