//! The audit log: who did what on which site, when, from which address.
//!
//! Every admin action (deletions, alert rules and destinations, member tokens), every invite
//! an agent sends or cancels, every operator action (sites created, changed, disabled; keys
//! rotated and revoked) and every such action a member token was refused (`outcome: denied`)
//! is recorded through [`Store::log_audit`](crate::Store::log_audit) and read back with
//! `GET /api/audit` (a site's admin) or `GET /api/operator/audit` (the operator). Entries are
//! kept for [`AuditConfig::retention`] (`TIPPEN_AUDIT_RETENTION_DAYS`, 365 days by default).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::site::{Credential, SiteId};

/// How long audit entries are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// Entries older than this are dropped (at the next write of the site's log, and never
    /// answered).
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention: Duration::from_secs(365 * 86_400),
        }
    }
}

/// Most entries a read answers.
pub const AUDIT_READ_MAX: usize = 1_000;

/// Most entries a store must keep per site (it may drop older ones beyond it).
pub const AUDIT_KEEP_MAX: usize = 100_000;

/// Who acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// The site's secret key.
    SecretKey,
    /// The site's legacy single key.
    LegacyKey,
    /// The site's public key.
    PublicKey,
    /// A rotated-out primary key in its overlap.
    RotatedKey,
    /// A member token (its holder's name is [`Actor::name`]).
    Member,
    /// The operator token.
    Operator,
    /// A user of an embedding backend, signed in by the backend's own means (cookies, OIDC)
    /// and handed to tippen as a [`Principal`](crate::api::Principal).
    Session,
}

/// Who did something: the kind of credential, and for a member token its holder's name and the
/// token's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The kind of credential.
    pub kind: ActorKind,
    /// The member's name (member tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The credential's id (member tokens and rotated keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl Actor {
    /// The operator.
    pub fn operator() -> Actor {
        Actor {
            kind: ActorKind::Operator,
            name: None,
            key_id: None,
        }
    }

    /// Who presented `credential` (a member token or a rotated key).
    pub fn of_credential(credential: &Credential) -> Actor {
        Actor {
            kind: if credential.name.is_some() {
                ActorKind::Member
            } else {
                ActorKind::RotatedKey
            },
            name: credential.name.clone(),
            key_id: Some(credential.id.clone()),
        }
    }

    /// A primary key of the given kind.
    pub fn key(kind: ActorKind) -> Actor {
        Actor {
            kind,
            name: None,
            key_id: None,
        }
    }

    /// A person (a member token or a backend's signed-in user): worth recording refusals of.
    pub fn is_member(&self) -> bool {
        matches!(self.kind, ActorKind::Member | ActorKind::Session)
    }
}

/// Whether the action happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Done,
    /// Refused: the actor's role does not allow it (`403`).
    Denied,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// When.
    pub at: Timestamp,
    /// Which site.
    pub site: SiteId,
    /// Who.
    pub actor: Actor,
    /// What: `site.create`, `site.update`, `key.rotate`, `key.revoke`, `member.create`,
    /// `member.revoke`, `visitor.delete`, `user.delete`, `invite.send`, `invite.cancel`,
    /// `videoCall.create`, `alertRule.put`, `alertRule.delete`, `alertDestinations.put`.
    pub action: String,
    /// On what (a visitor id, a rule id, a key id), when the action names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// From which client address, when the host knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Done or denied.
    pub outcome: Outcome,
}

/// The oldest entry time kept at `now`.
pub(crate) fn retained_since(config: &AuditConfig, now: Timestamp) -> Timestamp {
    now.minus(config.retention)
}

/// Audit logs held in memory ([`Store::log_audit`](crate::Store::log_audit)), oldest first, for
/// the memory and SQLite stores.
#[derive(Clone, Debug, Default)]
pub struct AuditLogs(std::collections::HashMap<SiteId, std::collections::VecDeque<AuditEntry>>);

impl AuditLogs {
    /// Appends `entry`, dropping the site's entries before `keep_after` (and beyond
    /// [`AUDIT_KEEP_MAX`]).
    pub fn push(&mut self, entry: AuditEntry, keep_after: Timestamp) {
        let log = self.0.entry(entry.site.clone()).or_default();
        log.push_back(entry);
        while log
            .front()
            .is_some_and(|e| e.at < keep_after || log.len() > AUDIT_KEEP_MAX)
        {
            log.pop_front();
        }
    }

    /// The site's entries at or after `since`, newest first, at most `limit`.
    pub fn latest(&self, site: &SiteId, since: Timestamp, limit: usize) -> Vec<AuditEntry> {
        self.0
            .get(site)
            .map(|log| {
                log.iter()
                    .rev()
                    .take_while(|e| e.at >= since)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}
