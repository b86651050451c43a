//! Who may do what: the caller a key names, member tokens, and the audit log's routes.
//!
//! - `GET /api/members` (admin) → `200 {"members":[{"id","name","role","createdAt"}]}`;
//! - `POST /api/members` (admin) with `{"name":"Ada Lovelace","role":"viewer"|"agent"|"admin"}`
//!   → `201 {"id","name","role","createdAt","token"}` (the token is shown this once);
//! - `DELETE /api/members/{id}` (admin) → `200 {"success":true,"deleted":true}`, `404` for an
//!   unknown id; the token answers `403` from then on;
//! - `GET /api/me` (viewer and above) → `200 {"site","siteName","role","kind","name"}`: who
//!   the key or session is (`role` `viewer`, `agent` or `admin`; `name` a member's);
//! - `GET /api/audit?limit=100` (admin) → `200 {"entries":[…]}`, newest first (`limit`
//!   1–1000), within the audit retention.
//!
//! Every route's role is in `docs/access.md`.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, RequestContext, json_response, parse_body, query_param};
use crate::audit::{Actor, ActorKind, AuditEntry, Outcome};
use crate::service::{ServiceError, Tippen};
use crate::site::{Credential, KeyHash, KeyMatch, KeyRole, Site, issue_key};

/// An authorized caller: the site, what the presented key may do, and who it is.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The site.
    pub site: Site,
    /// What the key may do.
    pub role: KeyRole,
    /// Who presented the key.
    pub actor: Actor,
}

/// `GET /api/me`: who the key (or session) is, on which site, in which role — what a
/// dashboard needs to show a viewer no invite button and a member their own name.
pub(crate) fn me(caller: &Caller) -> serde_json::Value {
    json!({
        "site": caller.site.id.as_str(),
        "siteName": caller.site.name,
        "role": caller.role.as_str(),
        "kind": caller.actor.kind,
        "name": caller.actor.name,
    })
}

/// An action to record once it is done: who, what, on what, from where.
#[derive(Clone, Debug)]
pub(crate) struct AuditNote {
    pub actor: Actor,
    pub action: &'static str,
    pub target: Option<String>,
    pub address: Option<String>,
}

impl AuditNote {
    pub(crate) fn new(
        caller: &Caller,
        action: &'static str,
        target: Option<String>,
        ctx: &RequestContext,
    ) -> Self {
        AuditNote {
            actor: caller.actor.clone(),
            action,
            target,
            address: ctx.client_ip.map(|ip| ip.to_string()),
        }
    }
}

/// The refusal for a key whose role is below `need`.
fn role_refusal(role: KeyRole, need: KeyRole) -> ApiError {
    let message = match (role, need) {
        (KeyRole::Public, _) => "this endpoint requires the site's secret key".to_owned(),
        (_, KeyRole::Secret) => format!(
            "this endpoint requires the admin role (the secret key or an admin's token); this token is a {}'s",
            role.as_str()
        ),
        (_, need) => format!(
            "this endpoint requires the {} role or above; this token is a {}'s",
            need.as_str(),
            role.as_str()
        ),
    };
    ApiError::new(StatusCode::FORBIDDEN, message)
}

impl Tippen {
    /// Checks `key` for `need`: the caller on success; `401` without a key or with an expired
    /// one, `403` for an unknown key, a disabled site or a role below `need`. Without a key,
    /// the embedding backend's [`Principal`](super::Principal) in `ctx` (if any) is the caller. A
    /// member (or a backend's user) refused `action` (when named) is recorded in the audit log
    /// as `denied`.
    pub(crate) async fn caller(
        &self,
        key: Option<&str>,
        need: KeyRole,
        ctx: &RequestContext,
        action: Option<&'static str>,
    ) -> Result<Caller, ApiError> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            if let Some(principal) = &ctx.principal {
                return self.principal_caller(principal, need, ctx, action).await;
            }
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "API key required"));
        };
        if key.len() > self.config().limits.max_key_bytes {
            // No site has such a key: refused without hashing it.
            return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid API key"));
        }
        let hash = KeyHash::of(key);
        let invalid = || ApiError::new(StatusCode::FORBIDDEN, "invalid API key");
        let site = self
            .store()
            .site_by_key(&hash)
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(invalid)?;
        let (role, credential) = match site.access_of(&hash, self.now()) {
            None => return Err(invalid()),
            Some(KeyMatch::Expired) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "API key expired (it was rotated or its overlap ended; use the site's new key)",
                ));
            }
            Some(KeyMatch::Valid { role, credential }) => (role, credential),
        };
        if site.disabled {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("site {:?} is disabled", site.id.as_str()),
            ));
        }
        let actor = match &credential {
            Some(c) => Actor::of_credential(c),
            None if role == KeyRole::Public => Actor::key(ActorKind::PublicKey),
            None if site.legacy_single_key => Actor::key(ActorKind::LegacyKey),
            None => Actor::key(ActorKind::SecretKey),
        };
        self.check_role(Caller { site, role, actor }, role, need, ctx, action)
            .await
    }

    /// The caller an embedding backend vouches for (its own session), checked like a key.
    async fn principal_caller(
        &self,
        principal: &super::Principal,
        need: KeyRole,
        ctx: &RequestContext,
        action: Option<&'static str>,
    ) -> Result<Caller, ApiError> {
        let site = self
            .store()
            .site(&principal.site)
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("no site {:?} for this session", principal.site.as_str()),
                )
            })?;
        if site.disabled {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("site {:?} is disabled", site.id.as_str()),
            ));
        }
        let actor = Actor {
            kind: ActorKind::Session,
            name: Some(principal.name.clone()),
            key_id: None,
        };
        self.check_role(
            Caller {
                site,
                role: principal.role,
                actor,
            },
            principal.role,
            need,
            ctx,
            action,
        )
        .await
    }

    /// `caller` when `role` reaches `need`, else `403` (a person refused `action` recorded).
    async fn check_role(
        &self,
        caller: Caller,
        role: KeyRole,
        need: KeyRole,
        ctx: &RequestContext,
        action: Option<&'static str>,
    ) -> Result<Caller, ApiError> {
        if role < need {
            if let Some(action) = action
                && caller.actor.is_member()
            {
                let note = AuditNote::new(&caller, action, None, ctx);
                self.record_audit(&caller.site.id, note, Outcome::Denied)
                    .await;
            }
            return Err(role_refusal(role, need));
        }
        Ok(caller)
    }

    /// The site's record as stored now, for a change of it: the one a key found may come from
    /// a host's cache (Lambda's), and a change made on it would undo another made since.
    pub(crate) async fn fresh_site(&self, site: Site) -> Result<Site, ApiError> {
        Ok(self
            .store()
            .site(&site.id)
            .await
            .map_err(ServiceError::from)?
            .unwrap_or(site))
    }

    /// Records an audit entry for `site`. A store failure is logged, not answered: the action
    /// itself is done.
    pub(crate) async fn record_audit(
        &self,
        site: &crate::SiteId,
        note: AuditNote,
        outcome: Outcome,
    ) {
        let now = self.now();
        let entry = AuditEntry {
            at: now,
            site: site.clone(),
            actor: note.actor,
            action: note.action.to_owned(),
            target: note.target,
            address: note.address,
            outcome,
        };
        let keep_after = crate::audit::retained_since(&self.config().audit, now);
        if let Err(e) = self.store().log_audit(&entry, keep_after).await {
            tracing::error!(site = %site, action = %entry.action, error = %e, "audit entry lost");
        }
    }

    /// `/api/members[/{id}]`: a site's member tokens (admin).
    pub(super) async fn members_call(
        &self,
        caller: Caller,
        method: &Method,
        id: Option<String>,
        body: &Bytes,
        ctx: &RequestContext,
    ) -> Result<Response<Bytes>, ApiError> {
        let mut site = caller.site.clone();
        if method != Method::GET && method != Method::HEAD {
            site = self.fresh_site(site).await?;
        }
        match (method, id) {
            (m, None) if m == Method::GET || m == Method::HEAD => {
                let members: Vec<_> = site
                    .credentials
                    .iter()
                    .filter(|c| c.name.is_some())
                    .map(credential_view)
                    .collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "members": members }),
                ))
            }
            (m, None) if m == Method::POST => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NewMember {
                    name: String,
                    role: String,
                }
                let new: NewMember = parse_body(body)?;
                let name = new.name.trim();
                if name.is_empty() || name.chars().count() > 128 {
                    return Err(ApiError::bad_request(
                        "name must be 1 to 128 characters (the person the token is for)",
                    ));
                }
                let role = KeyRole::member(&new.role).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown role {:?} at role (expected viewer, agent or admin)",
                        super::cut(new.role.clone(), 32)
                    ))
                })?;
                if site.credentials.len() >= MAX_CREDENTIALS {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "the site has {MAX_CREDENTIALS} member tokens and keys; revoke one first"
                        ),
                    ));
                }
                let token = issue_key("tmk_", &site.id);
                let credential = Credential {
                    id: format!("mem_{:016x}", self.next_random()),
                    hash: KeyHash::of(&token),
                    role,
                    name: Some(name.to_owned()),
                    created_at: self.now(),
                    expires_at: None,
                };
                site.credentials.push(credential.clone());
                self.put_site(&site).await?;
                let note =
                    AuditNote::new(&caller, "member.create", Some(credential.id.clone()), ctx);
                self.record_audit(&site.id, note, Outcome::Done).await;
                let mut view = credential_view(&credential);
                view["token"] = json!(token);
                Ok(json_response(StatusCode::CREATED, &view))
            }
            (m, Some(id)) if m == Method::DELETE => {
                let i = site
                    .credentials
                    .iter()
                    .position(|c| c.id == id && c.name.is_some())
                    .ok_or_else(|| {
                        ApiError::new(StatusCode::NOT_FOUND, format!("no member token {id:?}"))
                    })?;
                site.credentials.remove(i);
                self.put_site(&site).await?;
                let note = AuditNote::new(&caller, "member.revoke", Some(id), ctx);
                self.record_audit(&site.id, note, Outcome::Done).await;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"success": true, "deleted": true}),
                ))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed here"),
            )),
        }
    }

    /// The audit entries of `sites`, newest first, at most the query's `limit`.
    pub(crate) async fn audit_entries(
        &self,
        sites: &[crate::SiteId],
        query: Option<&str>,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        let limit = match query_param(query, "limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=crate::audit::AUDIT_READ_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "limit must be a whole number from 1 to {}",
                        crate::audit::AUDIT_READ_MAX
                    ))
                })?,
        };
        let since = crate::audit::retained_since(&self.config().audit, self.now());
        let mut entries = Vec::new();
        for site in sites {
            entries.extend(
                self.store()
                    .audit_log(site, since, limit)
                    .await
                    .map_err(ServiceError::from)?,
            );
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.at));
        entries.truncate(limit);
        Ok(entries)
    }
}

/// The audit outcome of an action done.
pub(crate) fn done() -> Outcome {
    Outcome::Done
}

/// Most runtime credentials (member tokens and rotated keys) a site holds: every store indexes
/// each, and DynamoDB writes a site with its key entries in one transaction of at most 100
/// items.
pub(crate) const MAX_CREDENTIALS: usize = 40;

/// A credential as the API shows it (never its hash).
pub(crate) fn credential_view(c: &Credential) -> serde_json::Value {
    let mut view = json!({
        "id": c.id,
        "role": c.role.as_str(),
        "createdAt": c.created_at.to_rfc3339(),
    });
    if let Some(name) = &c.name {
        view["name"] = json!(name);
    }
    if let Some(at) = c.expires_at {
        view["expiresAt"] = json!(at.to_rfc3339());
    }
    view
}

/// An audit entry as the API shows it.
pub(crate) fn audit_view(e: &AuditEntry) -> serde_json::Value {
    let mut view = serde_json::to_value(e).unwrap_or_default();
    view["at"] = json!(e.at.to_rfc3339());
    view
}
