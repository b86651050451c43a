//! The operator API: sites, keys and settings at runtime, across sites, authorized by the
//! operator token (`TIPPEN_OPERATOR_TOKEN`, presented like a key: `X-Tippen-Api-Key`,
//! `Authorization: Bearer` or `apiKey`). Off (`403`) without one.
//!
//! - `GET /api/operator/sites` → `200 {"sites":[<site>…]}`;
//! - `POST /api/operator/sites` with a site's settings as in `TIPPEN_SITES` but no keys
//!   (`{"id","name"?,"honorGpc"?,"dashboardOrigins"?,…}`) → `201 {"site":<site>,
//!   "publicKey","secretKey"}` (the keys are shown this once); `409` when the id is taken;
//! - `GET /api/operator/sites/{id}` → `200 <site>`; `PATCH` with the settings to change
//!   (the same fields, plus `"disabled": bool`) → `200 <site>`;
//! - `POST /api/operator/sites/{id}/rotate-key` with `{"key":"public"|"secret",
//!   "overlapSeconds":3600}` → `200 {"key":<new key>,"previous":{"id","expiresAt"}}`: the old
//!   key keeps working until `expiresAt` (`overlapSeconds` 0–2,592,000, default 86,400), then
//!   answers `401`;
//! - `DELETE /api/operator/sites/{id}/keys/{keyId}` → revokes a rotated key in its overlap or a
//!   member token at once;
//! - `GET /api/operator/overview` → `200 {"sites":[<site>…],"totals":{…}}`: the Command
//!   Center's figures (each site's `overview`: live visitors, visits today (UTC), credits
//!   used and saved, cache hit rate, identified share, alerts today, recent errors);
//! - `GET /api/operator/audit?site=<id>&limit=100` → `200 {"entries":[…]}`, newest first, of
//!   one site or all.
//!
//! `<site>` is `{"id","name","disabled","managed","legacy","settings":{…},"keys":[…],
//! "overview":{…}}`, never a key, a hash or a secret. Every change is in the site's audit log
//! (actor `operator`) and marks the site [`managed`](crate::Site::managed): the configuration no
//! longer overwrites it.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{AuditNote, credential_view};
use super::{ApiError, RequestContext, json_response, key_from, parse_body, percent_decode};
use crate::audit::{Actor, Outcome};
use crate::service::{ServiceError, Tippen};
use crate::site::{Credential, KeyHash, KeyRole, Site, SiteId, issue_key};

/// An operator route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OperatorRoute {
    Sites,
    Site,
    Rotate,
    Key,
    Overview,
    Audit,
}

/// Longest overlap of a rotated key: 30 days.
const MAX_OVERLAP_SECS: u64 = 30 * 86_400;

impl OperatorRoute {
    pub(crate) fn of(path: &str) -> Option<OperatorRoute> {
        let rest = path.strip_prefix("/api/operator/")?;
        Some(match rest {
            "sites" => OperatorRoute::Sites,
            "overview" => OperatorRoute::Overview,
            "audit" => OperatorRoute::Audit,
            _ => {
                let rest = rest.strip_prefix("sites/")?;
                let mut parts = rest.split('/');
                let id = parts.next().filter(|id| !id.is_empty())?;
                let _ = id;
                match (parts.next(), parts.next(), parts.next()) {
                    (None, _, _) => OperatorRoute::Site,
                    (Some("rotate-key"), None, _) => OperatorRoute::Rotate,
                    (Some("keys"), Some(k), None) if !k.is_empty() => OperatorRoute::Key,
                    _ => return None,
                }
            }
        })
    }

    pub(crate) fn allow(self) -> &'static str {
        match self {
            OperatorRoute::Sites => "GET, HEAD, POST, OPTIONS",
            OperatorRoute::Site => "GET, HEAD, PATCH, OPTIONS",
            OperatorRoute::Rotate => "POST, OPTIONS",
            OperatorRoute::Key => "DELETE, OPTIONS",
            OperatorRoute::Overview | OperatorRoute::Audit => "GET, HEAD, OPTIONS",
        }
    }
}

/// The site an operator request concerns, for hosts that keep each site apart (the Worker
/// forwards it to that site's owner): the path's `{id}`, or a create's body `id`. `None` for
/// requests across sites (list, overview, audit without `site`) and for anything else.
pub fn operator_site(path: &str, query: Option<&str>, body: &[u8]) -> Option<SiteId> {
    let path = path.trim_end_matches('/');
    match OperatorRoute::of(path)? {
        OperatorRoute::Sites => {
            #[derive(Deserialize)]
            struct Id {
                id: String,
            }
            serde_json::from_slice::<Id>(body)
                .ok()
                .map(|i| SiteId(i.id))
        }
        OperatorRoute::Overview => None,
        OperatorRoute::Audit => super::query_param(query, "site").map(SiteId),
        _ => path
            .strip_prefix("/api/operator/sites/")
            .and_then(|rest| rest.split('/').next())
            .map(|id| SiteId(percent_decode(id))),
    }
}

/// For an operator request across sites (one [`operator_site`] names none: the list, the
/// overview, the audit of every site), the path and query to ask each site's owner with
/// (the same operator token), to be joined by [`operator_combine`]. `None` for anything else.
pub fn operator_fanout_path(path: &str, query: Option<&str>, site: &SiteId) -> Option<String> {
    let path = path.trim_end_matches('/');
    let id = super::extract::percent_encode_component(site.as_str());
    match OperatorRoute::of(path)? {
        OperatorRoute::Sites | OperatorRoute::Overview => Some(format!("/api/operator/sites/{id}")),
        OperatorRoute::Audit if super::query_param(query, "site").is_none() => {
            let limit = super::query_param(query, "limit").unwrap_or_else(|| "100".to_owned());
            Some(format!(
                "/api/operator/audit?site={id}&limit={}",
                super::extract::percent_encode_component(&limit)
            ))
        }
        _ => None,
    }
}

/// Joins the sites' answers to the requests of [`operator_fanout_path`] (each a `200` body)
/// into the answer of the request across sites.
pub fn operator_combine(path: &str, query: Option<&str>, answers: Vec<Value>) -> Value {
    match OperatorRoute::of(path.trim_end_matches('/')) {
        Some(OperatorRoute::Overview) => overview_of(answers),
        Some(OperatorRoute::Audit) => {
            let limit = super::query_param(query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100);
            let mut entries: Vec<Value> = answers
                .into_iter()
                .flat_map(|a| a["entries"].as_array().cloned().unwrap_or_default())
                .collect();
            entries.sort_by(|a, b| b["at"].as_str().cmp(&a["at"].as_str()));
            entries.truncate(limit);
            json!({ "entries": entries })
        }
        _ => {
            let mut sites = answers;
            sites.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            json!({ "sites": sites })
        }
    }
}

/// The Command Center's answer from the sites' views (each with its `overview`): the sites
/// and the platform's totals. Hosts that gather the views themselves (the Worker) call it.
pub fn overview_of(mut sites: Vec<Value>) -> Value {
    sites.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let sum = |field: &str| -> u64 {
        sites
            .iter()
            .filter_map(|s| s["overview"][field].as_u64())
            .sum()
    };
    let totals = json!({
        "sites": sites.len(),
        "activeSites": sites.iter().filter(|s| s["disabled"] != json!(true)).count(),
        "liveVisitors": sum("liveVisitors"),
        "visitsToday": sum("visitsToday"),
        "creditsUsed": sum("creditsUsed"),
        "creditsSaved": sum("creditsSaved"),
        "alertsToday": sum("alertsToday"),
        "errors": sites
            .iter()
            .filter_map(|s| s["overview"]["recentErrors"].as_array().map(Vec::len))
            .sum::<usize>(),
    });
    json!({ "sites": sites, "totals": totals })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotation {
    key: String,
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

impl Tippen {
    /// Checks the operator token a request presents (as a key): the refusal to answer, if
    /// any (`None`: the token is right). For hosts that answer requests across sites
    /// themselves ([`operator_combine`]).
    pub fn operator_refusal(&self, req: &http::Request<Bytes>) -> Option<Response<Bytes>> {
        self.check_operator(key_from(req.headers(), req.uri().query()).as_deref())
            .err()
            .map(ApiError::into_response)
    }

    /// Checks the operator token: `401` without one, `403` when the API is off or for a wrong
    /// one.
    fn check_operator(&self, key: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = self.config().operator_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the operator API is off (set TIPPEN_OPERATOR_TOKEN)",
            ));
        };
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "operator token required",
            ));
        };
        if key.len() > self.config().limits.max_key_bytes || !expected.matches(&KeyHash::of(key)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid operator token",
            ));
        }
        Ok(())
    }

    /// One operator request (see the module docs).
    pub(super) async fn operator_call(
        &self,
        route: OperatorRoute,
        parts: &http::request::Parts,
        path: &str,
        query: Option<&str>,
        body: &Bytes,
        ctx: &RequestContext,
    ) -> Result<Response<Bytes>, ApiError> {
        self.check_operator(key_from(&parts.headers, query).as_deref())?;
        let note = |action: &'static str, target: Option<String>| AuditNote {
            actor: Actor::operator(),
            action,
            target,
            address: ctx.client_ip.map(|ip| ip.to_string()),
        };
        let path = path.trim_end_matches('/');
        let site_of_path = || {
            operator_site(path, query, body)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no route for {path}")))
        };
        let stored = |id: SiteId| async move {
            self.store()
                .site(&id)
                .await
                .map_err(ServiceError::from)?
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no site {id}")))
        };
        match route {
            OperatorRoute::Sites if parts.method == Method::POST => {
                let (site, public_key, secret_key) = self.new_site(body)?;
                if self
                    .store()
                    .site(&site.id)
                    .await
                    .map_err(ServiceError::from)?
                    .is_some()
                {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("site {:?} exists", site.id.as_str()),
                    ));
                }
                self.put_site(&site).await?;
                self.record_audit(&site.id, note("site.create", None), Outcome::Done)
                    .await;
                let view = self.site_view(&site).await?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"site": view, "publicKey": public_key, "secretKey": secret_key}),
                ))
            }
            OperatorRoute::Sites => {
                let mut views = Vec::new();
                for site in self.store().sites().await.map_err(ServiceError::from)? {
                    views.push(self.site_view(&site).await?);
                }
                views.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                Ok(json_response(StatusCode::OK, &json!({ "sites": views })))
            }
            OperatorRoute::Overview => {
                let mut views = Vec::new();
                for site in self.store().sites().await.map_err(ServiceError::from)? {
                    views.push(self.site_view(&site).await?);
                }
                Ok(json_response(StatusCode::OK, &overview_of(views)))
            }
            OperatorRoute::Audit => {
                let sites = match super::query_param(query, "site") {
                    Some(id) => vec![stored(SiteId(id)).await?.id],
                    None => self
                        .store()
                        .sites()
                        .await
                        .map_err(ServiceError::from)?
                        .into_iter()
                        .map(|s| s.id)
                        .collect(),
                };
                let entries = self.audit_entries(&sites, query).await?;
                let entries: Vec<_> = entries.iter().map(super::access::audit_view).collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "entries": entries }),
                ))
            }
            OperatorRoute::Site => {
                let mut site = stored(site_of_path()?).await?;
                if parts.method == Method::PATCH {
                    self.patch_site(&mut site, body)?;
                    site.managed = true;
                    self.put_site(&site).await?;
                    self.record_audit(&site.id, note("site.update", None), Outcome::Done)
                        .await;
                }
                Ok(json_response(StatusCode::OK, &self.site_view(&site).await?))
            }
            OperatorRoute::Rotate => {
                let mut site = stored(site_of_path()?).await?;
                let rotation: Rotation = parse_body(body)?;
                let overlap = rotation.overlap_seconds.unwrap_or(86_400);
                if overlap > MAX_OVERLAP_SECS {
                    return Err(ApiError::bad_request(format!(
                        "overlapSeconds must be from 0 to {MAX_OVERLAP_SECS}"
                    )));
                }
                let now = self.now();
                let (prefix, role, old) = match (rotation.key.as_str(), site.legacy_single_key) {
                    ("public", false) => ("tpk_", KeyRole::Public, site.public_key_hash),
                    ("secret", false) => ("tsk_", KeyRole::Secret, Some(site.secret_key_hash)),
                    ("secret" | "legacy", true) => {
                        ("tsk_", KeyRole::Secret, Some(site.secret_key_hash))
                    }
                    ("public", true) => {
                        return Err(ApiError::bad_request(
                            "a legacy single-key site has no public key; rotate \"secret\"",
                        ));
                    }
                    (other, _) => {
                        return Err(ApiError::bad_request(format!(
                            "unknown key {:?} at key (expected public or secret)",
                            super::cut(other.to_owned(), 32)
                        )));
                    }
                };
                let key = issue_key(prefix, &site.id);
                match role {
                    KeyRole::Public => site.public_key_hash = Some(KeyHash::of(&key)),
                    _ => site.secret_key_hash = KeyHash::of(&key),
                }
                let expires_at = now.plus(std::time::Duration::from_secs(overlap));
                // Rotated keys whose overlap ended long ago are dropped from the record.
                let month = std::time::Duration::from_secs(MAX_OVERLAP_SECS);
                site.credentials
                    .retain(|c| c.expires_at.is_none_or(|at| at.plus(month) > now));
                let previous = old.map(|hash| Credential {
                    id: format!("key_{:016x}", self.next_random()),
                    hash,
                    role,
                    name: None,
                    created_at: now,
                    expires_at: Some(expires_at),
                });
                if let Some(previous) = &previous {
                    if site.credentials.len() >= super::access::MAX_CREDENTIALS {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            format!(
                                "the site has {} member tokens and keys; revoke one first",
                                super::access::MAX_CREDENTIALS
                            ),
                        ));
                    }
                    site.credentials.push(previous.clone());
                }
                site.managed = true;
                self.put_site(&site).await?;
                self.record_audit(
                    &site.id,
                    note("key.rotate", previous.as_ref().map(|p| p.id.clone())),
                    Outcome::Done,
                )
                .await;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "key": key,
                        "role": role.as_str(),
                        "previous": previous.as_ref().map(credential_view),
                    }),
                ))
            }
            OperatorRoute::Key => {
                let mut site = stored(site_of_path()?).await?;
                let key_id = percent_decode(path.rsplit('/').next().unwrap_or_default());
                let i = site
                    .credentials
                    .iter()
                    .position(|c| c.id == key_id)
                    .ok_or_else(|| {
                        ApiError::new(StatusCode::NOT_FOUND, format!("no key {key_id:?}"))
                    })?;
                site.credentials.remove(i);
                site.managed = true;
                self.put_site(&site).await?;
                self.record_audit(&site.id, note("key.revoke", Some(key_id)), Outcome::Done)
                    .await;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"success": true, "deleted": true}),
                ))
            }
        }
    }

    /// A new site from a create request's body, with fresh keys.
    fn new_site(&self, body: &[u8]) -> Result<(Site, String, String), ApiError> {
        let mut value: Value = parse_body(body)?;
        let Some(obj) = value.as_object_mut() else {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        };
        for field in ["publicKey", "secretKey", "legacyKey"] {
            if obj.contains_key(field) {
                return Err(ApiError::bad_request(format!(
                    "{field} is issued by the server: leave it out"
                )));
            }
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("missing field 'id' at id"))?
            .to_owned();
        if id.starts_with("__") {
            return Err(ApiError::bad_request(format!(
                "site id {:?} is reserved (ids starting with \"__\" are the hosts' own)",
                super::cut(id, 64)
            )));
        }
        let site_id = SiteId(id);
        let public_key = issue_key("tpk_", &site_id);
        let secret_key = issue_key("tsk_", &site_id);
        obj.insert("publicKey".into(), json!(public_key));
        obj.insert("secretKey".into(), json!(secret_key));
        let mut site = self.checked_site(&value)?;
        site.managed = true;
        Ok((site, public_key, secret_key))
    }

    /// Applies a `PATCH`'s settings to `site` (keys, member tokens and alert rules stay).
    fn patch_site(&self, site: &mut Site, body: &[u8]) -> Result<(), ApiError> {
        let patch: Value = parse_body(body)?;
        let Some(patch) = patch.as_object() else {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        };
        let mut value = settings_of(site);
        let obj = value.as_object_mut().expect("settings are an object");
        let mut disabled = site.disabled;
        for (field, v) in patch {
            match field.as_str() {
                "id" if v != &json!(site.id.as_str()) => {
                    return Err(ApiError::bad_request("a site's id cannot change"));
                }
                "id" => {}
                "publicKey" | "secretKey" | "legacyKey" => {
                    return Err(ApiError::bad_request(format!(
                        "{field} cannot be set: rotate it with POST /api/operator/sites/{}/rotate-key",
                        site.id
                    )));
                }
                "alertRules" => {
                    return Err(ApiError::bad_request(
                        "alert rules have their own API (/api/alert-rules)",
                    ));
                }
                "disabled" => {
                    disabled = v.as_bool().ok_or_else(|| {
                        ApiError::bad_request("disabled must be true or false at disabled")
                    })?;
                }
                _ => {
                    obj.insert(field.clone(), v.clone());
                }
            }
        }
        // Placeholder keys: the checks need some; the site's own stay.
        obj.insert("publicKey".into(), json!("tpk_placeholder"));
        obj.insert(
            "secretKey".into(),
            json!("tsk_placeholder_0123456789abcdef"),
        );
        let checked = self.checked_site(&value)?;
        if patch.contains_key("alertDestinations") {
            self.check_destinations(&checked.alert_destinations)?;
        }
        let keep = site.clone();
        *site = Site {
            id: keep.id,
            public_key_hash: keep.public_key_hash,
            secret_key_hash: keep.secret_key_hash,
            legacy_single_key: keep.legacy_single_key,
            alert_rules: keep.alert_rules,
            credentials: keep.credentials,
            managed: keep.managed,
            disabled,
            ..checked
        };
        Ok(())
    }

    /// A site from settings as in `TIPPEN_SITES`, with its checks.
    fn checked_site(&self, value: &Value) -> Result<Site, ApiError> {
        let entry: crate::settings::SiteEntry = parse_body(value.to_string().as_bytes())?;
        let id = entry.id.clone();
        let site = entry
            .into_spec()
            .and_then(crate::settings::SiteSpec::into_site)
            .map_err(|e| ApiError::bad_request(format!("site {id:?}: {e}")))?;
        self.check_destinations(&site.alert_destinations)?;
        Ok(site)
    }

    /// Alert destinations set through the API: `https://` and public, unless allowed.
    fn check_destinations(
        &self,
        destinations: &crate::alerts::AlertDestinations,
    ) -> Result<(), ApiError> {
        let allow = self.config().alerts.allow_private_destinations;
        for url in destinations
            .slack_webhook_url
            .iter()
            .chain(destinations.webhooks.iter().map(|w| &w.url))
        {
            crate::alerts::check_destination_url(url, allow)
                .map_err(|e| ApiError::bad_request(e.0))?;
        }
        Ok(())
    }

    /// A site as the operator API shows it, with its Command Center figures.
    pub(crate) async fn site_view(&self, site: &Site) -> Result<Value, ApiError> {
        let mut settings = settings_of(site);
        if let Some(obj) = settings.as_object_mut() {
            // Secrets stay out of every answer.
            obj.remove("identitySecret");
            obj.remove("alertDestinations");
            obj.insert(
                "identityVerification".into(),
                json!(site.identity_secret.is_some()),
            );
        }
        let keys: Vec<Value> = site.credentials.iter().map(credential_view).collect();
        Ok(json!({
            "id": site.id.as_str(),
            "name": site.name,
            "disabled": site.disabled,
            "managed": site.managed,
            "legacy": site.legacy_single_key,
            "settings": settings,
            "alertRules": site.alert_rules.len(),
            "alertDestinations": {
                "slack": site.alert_destinations.slack_webhook_url.is_some(),
                "webhooks": site.alert_destinations.webhooks.len(),
            },
            "keys": keys,
            "overview": self.site_overview(site).await?,
        }))
    }

    /// A site's Command Center figures.
    async fn site_overview(&self, site: &Site) -> Result<Value, ApiError> {
        let now = self.now();
        let midnight =
            crate::Timestamp::from_millis(now.as_millis() - now.as_millis().rem_euclid(86_400_000));
        // Present visitors, as dashboards list them (a record may outlive its visitor's
        // presence a little: a leave's linger, an expiry not swept yet).
        let live = self.visitor_listing(&site.id).await?.0.len();
        let stats = self.enrichment_stats(&site.id).await?;
        let lookups = stats.cache_hits + stats.negative_cache_hits + stats.cache_misses;
        let (visits_today, identified_share) = match self.history() {
            None => (Value::Null, Value::Null),
            Some(history) => {
                let rollups = history
                    .rollups(
                        &site.id,
                        &crate::history::RollupQuery {
                            select: crate::history::RollupSelect::Site,
                            from: midnight,
                            to: now.plus(std::time::Duration::from_millis(1)),
                        },
                    )
                    .await
                    .map_err(ServiceError::from)?;
                let visits: u64 = rollups.iter().map(|r| r.visits).sum();
                let identified: u64 = rollups.iter().map(|r| r.identified).sum();
                let share = if visits == 0 {
                    0.0
                } else {
                    (identified as f64 / visits as f64 * 1000.0).round() / 1000.0
                };
                (json!(visits), json!(share))
            }
        };
        let log = self
            .store()
            .alert_log(&site.id, crate::alerts::ALERT_LOG_KEEP)
            .await
            .map_err(ServiceError::from)?;
        let alerts_today = log
            .iter()
            .filter(|e| e.event == "raised" && e.at >= midnight.as_millis())
            .count();
        let mut errors: Vec<Value> = log
            .iter()
            .filter(|e| e.event == "failed")
            .take(5)
            .map(|e| {
                json!({
                    "at": crate::Timestamp::from_millis(e.at).to_rfc3339(),
                    "kind": "delivery",
                    "message": format!(
                        "{} delivery failed: {}",
                        e.channel.as_deref().unwrap_or("alert"),
                        e.reason.as_deref().unwrap_or("unknown reason")
                    ),
                })
            })
            .collect();
        for (kind, n) in &stats.failures {
            errors.push(json!({
                "kind": "enrichment",
                "message": format!("{n} enrichment lookups failed ({})", serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
            }));
        }
        Ok(json!({
            "liveVisitors": live,
            "visitsToday": visits_today,
            "identifiedShare": identified_share,
            "creditsUsed": stats.credits_used,
            "creditsSaved": stats.credits_saved_by_cache + stats.credits_saved_by_single_flight,
            "cacheHitRate": if lookups == 0 { Value::Null } else {
                json!(((stats.cache_hits + stats.negative_cache_hits) as f64 / lookups as f64 * 1000.0).round() / 1000.0)
            },
            "alertsToday": alerts_today,
            "recentErrors": errors,
        }))
    }
}

/// A site's settings in the form of a `TIPPEN_SITES` entry (no keys).
fn settings_of(site: &Site) -> Value {
    let mut v = json!({
        "id": site.id.as_str(),
        "name": site.name,
        "honorGpc": site.honor_gpc,
        "honorDnt": site.honor_dnt,
        "guestUrlOrigins": site.guest_url_origins,
        "dashboardOrigins": site.dashboard_origins,
        "historyRetentionDays": site.history_retention_days,
        "rateLimitPerKey": site.rate_limit_per_key.map(|l| l.per_second),
        "maxSockets": site.socket_quotas.max_sockets,
        "maxSocketsPerAddress": site.socket_quotas.max_sockets_per_address,
        "snapshotsPerMinute": site.socket_quotas.snapshots_per_minute,
        "alertDestinations": site.alert_destinations,
    });
    if let Some(secret) = &site.identity_secret {
        v["identitySecret"] = json!(secret.expose());
    }
    v
}
