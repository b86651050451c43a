//! The history routes: `GET /api/visits`, `/api/visits/{id}`, `/api/companies`,
//! `/api/companies/{domain}`, `/api/analytics` — parsing their parameters (a bad one is a 400
//! naming it) and shaping their answers (JSON, or CSV with `format=csv`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::extract::{percent_decode, query_param};
use super::response::{ApiError, json_response, with_common_headers};
use crate::clock::Timestamp;
use crate::history::{
    VisitCursor, VisitFilter, VisitQuery, Window, companies_csv, visit_csv_header, visit_csv_row,
};
use crate::service::Tippen;
use crate::site::SiteId;

/// Visits per JSON page: default and most.
const JSON_LIMIT: (usize, usize) = (50, 500);
/// Companies per JSON answer (most visits first): default and most.
const COMPANIES_LIMIT: (usize, usize) = (100, 1000);
/// Visits per CSV response: default and most.
const CSV_LIMIT: (usize, usize) = (1000, 10_000);

impl HistoryOp {
    /// Whether the request exports (CSV): the admin role's, not a viewer's.
    pub(super) fn exports(&self) -> bool {
        matches!(
            self,
            HistoryOp::Visits { csv: true, .. } | HistoryOp::Companies { csv: true, .. }
        )
    }
}

/// A parsed history request.
#[derive(Debug)]
pub(super) enum HistoryOp {
    Visits {
        query: VisitQuery,
        csv: bool,
    },
    Visit {
        visit_id: String,
    },
    Companies {
        window: Window,
        csv: bool,
        limit: usize,
    },
    Company {
        key: String,
        window: Window,
        after: Option<VisitCursor>,
        limit: usize,
    },
    Analytics {
        window: Window,
    },
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    query_param(query, name).filter(|v| !v.is_empty())
}

fn time_param(query: Option<&str>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    let Some(raw) = param(query, name) else {
        return Ok(None);
    };
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(Some(Timestamp::from_millis(ms)));
    }
    Timestamp::parse_rfc3339(&raw).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid '{name}' (expected an RFC 3339 time or epoch milliseconds)"
        ))
    })
}

fn format_param(query: Option<&str>) -> Result<bool, ApiError> {
    match param(query, "format").as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "invalid 'format' (expected json or csv)",
        )),
    }
}

fn limit_param(query: Option<&str>, (default, max): (usize, usize)) -> Result<usize, ApiError> {
    match param(query, "limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("invalid 'limit' (expected 1 to {max})"))),
    }
}

fn cursor_param(query: Option<&str>) -> Result<Option<VisitCursor>, ApiError> {
    param(query, "cursor")
        .map(|c| {
            VisitCursor::decode(&c).ok_or_else(|| {
                ApiError::bad_request("invalid 'cursor' (pass back a nextCursor as it came)")
            })
        })
        .transpose()
}

fn window_param(query: Option<&str>, default: &str) -> Result<Window, ApiError> {
    Window::parse(&param(query, "window").unwrap_or_else(|| default.to_owned()))
        .map_err(ApiError::bad_request)
}

fn text_param(query: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    match param(query, name) {
        Some(v) if v.len() > 512 => Err(ApiError::bad_request(format!(
            "'{name}' too long (at most 512 bytes)"
        ))),
        v => Ok(v),
    }
}

/// The id after `prefix` in `path` (percent-decoded), checked.
fn path_id(path: &str, prefix: &str, what: &str) -> Result<String, ApiError> {
    let raw = path.trim_end_matches('/').trim_start_matches(prefix);
    let id = percent_decode(raw);
    if id.is_empty() || id.len() > 253 || id.contains('/') {
        return Err(ApiError::bad_request(format!("invalid {what}")));
    }
    Ok(id)
}

impl HistoryOp {
    /// `GET /api/visits`.
    pub(super) fn visits(query: Option<&str>) -> Result<HistoryOp, ApiError> {
        let csv = format_param(query)?;
        let from = time_param(query, "from")?.unwrap_or(Timestamp::EPOCH);
        let to = time_param(query, "to")?.unwrap_or(Timestamp::from_millis(i64::MAX));
        if from > to {
            return Err(ApiError::bad_request("'from' is after 'to'"));
        }
        let limit = limit_param(query, if csv { CSV_LIMIT } else { JSON_LIMIT })?;
        Ok(HistoryOp::Visits {
            query: VisitQuery {
                from,
                to,
                filter: VisitFilter {
                    company: text_param(query, "company")?,
                    page: text_param(query, "page")?,
                    country: text_param(query, "country")?,
                    visitor: text_param(query, "visitor")?,
                },
                after: cursor_param(query)?,
                limit,
            },
            csv,
        })
    }

    /// `GET /api/visits/{id}`.
    pub(super) fn visit(path: &str) -> Result<HistoryOp, ApiError> {
        Ok(HistoryOp::Visit {
            visit_id: path_id(path, "/api/visits/", "visit id")?,
        })
    }

    /// `GET /api/companies`.
    pub(super) fn companies(query: Option<&str>) -> Result<HistoryOp, ApiError> {
        let csv = format_param(query)?;
        Ok(HistoryOp::Companies {
            csv,
            window: window_param(query, "7d")?,
            limit: limit_param(query, if csv { CSV_LIMIT } else { COMPANIES_LIMIT })?,
        })
    }

    /// `GET /api/companies/{domain}`.
    pub(super) fn company(path: &str, query: Option<&str>) -> Result<HistoryOp, ApiError> {
        Ok(HistoryOp::Company {
            key: path_id(path, "/api/companies/", "company domain")?,
            window: window_param(query, "30d")?,
            after: cursor_param(query)?,
            limit: limit_param(query, JSON_LIMIT)?,
        })
    }

    /// `GET /api/analytics`.
    pub(super) fn analytics(query: Option<&str>) -> Result<HistoryOp, ApiError> {
        Ok(HistoryOp::Analytics {
            window: window_param(query, "24h")?,
        })
    }
}

fn csv_response(name: &str, body: String, next: Option<&str>) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(v) = next.and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert("x-next-cursor", v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-next-cursor"),
        );
    }
    with_common_headers(r)
}

impl Tippen {
    /// Runs a history request for `site`.
    pub(super) async fn history_response(
        &self,
        site: &SiteId,
        op: HistoryOp,
    ) -> Result<Response<Bytes>, ApiError> {
        Ok(match op {
            HistoryOp::Visits { query, csv } => {
                let page = self.history_visits(site, &query).await?;
                if csv {
                    let mut body = visit_csv_header();
                    for v in &page.visits {
                        body.push_str(&visit_csv_row(v));
                    }
                    csv_response("visits.csv", body, page.next_cursor.as_deref())
                } else {
                    json_response(StatusCode::OK, &page)
                }
            }
            HistoryOp::Visit { visit_id } => match self.history_visit(site, &visit_id).await? {
                Some(v) => json_response(StatusCode::OK, &v),
                None => {
                    return Err(ApiError::new(StatusCode::NOT_FOUND, "visit not found"));
                }
            },
            HistoryOp::Companies { window, csv, limit } => {
                let companies = self.history_companies(site, &window, limit).await?;
                if csv {
                    csv_response("companies.csv", companies_csv(&companies), None)
                } else {
                    #[derive(serde::Serialize)]
                    struct Body<'a> {
                        window: &'a str,
                        companies: &'a [crate::history::CompanySummary],
                    }
                    json_response(
                        StatusCode::OK,
                        &Body {
                            window: &window.label,
                            companies: &companies,
                        },
                    )
                }
            }
            HistoryOp::Company {
                key,
                window,
                after,
                limit,
            } => match self
                .history_company(site, &key, &window, after, limit)
                .await?
            {
                Some(detail) => json_response(StatusCode::OK, &detail),
                None => {
                    return Err(ApiError::new(StatusCode::NOT_FOUND, "company not found"));
                }
            },
            HistoryOp::Analytics { window } => json_response(
                StatusCode::OK,
                &self.history_analytics(site, &window).await?,
            ),
        })
    }
}
