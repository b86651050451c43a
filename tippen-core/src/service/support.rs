//! The support operations of [`Tippen`]: activity batches, due users, the overview and
//! deletion, over the [`UserRecord`] state machine of [`crate::support`].

use crate::clock::Timestamp;
use crate::protocol::{ActivityEvent, ServerMessage};
use crate::site::SiteId;
use crate::store::Versioned;
use crate::support::activity::{ActivityPage, LiveVisitor, UserActivity};
use crate::support::{
    Resolution, SupportChange, SupportNotice, UserIdentity, UserRecord, UserSummary,
};

use super::update::Write;
use super::{Outcome, ServiceError, Tippen};

/// What [`Tippen::support_overview`] returns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportOverview {
    /// Users seen within retention, most recently active first (at most
    /// [`Tippen::SUPPORT_OVERVIEW_LIMIT`]).
    pub users: Vec<UserSummary>,
    /// The users needing support now (open alerts), longest-standing first.
    pub alerts: Vec<UserSummary>,
    /// The site's message counter when the overview was read.
    pub seq: u64,
}

impl Tippen {
    /// Most users listed by [`support_overview`](Self::support_overview).
    pub const SUPPORT_OVERVIEW_LIMIT: usize = 500;

    fn support_messages(
        &self,
        site: &SiteId,
        record: &UserRecord,
        change: Option<SupportChange>,
        now: Timestamp,
        messages: &mut Vec<ServerMessage>,
        notifications: &mut Vec<SupportNotice>,
    ) {
        let cfg = &self.config().support;
        match change {
            None => {}
            Some(SupportChange::Alert { raised, notify }) => {
                let user = record.summary(now, cfg);
                if notify {
                    notifications.push(SupportNotice {
                        site: site.clone(),
                        user: user.clone(),
                        raised: raised.clone(),
                        at: now,
                    });
                }
                messages.push(ServerMessage::SupportAlert {
                    user: Box::new(user),
                    raised,
                });
            }
            Some(SupportChange::Recovered { cleared }) => {
                messages.push(ServerMessage::SupportRecovered {
                    user_id: record.user_id.clone(),
                    cleared,
                    resolution: Resolution::Recovered,
                    at: now.to_rfc3339(),
                });
            }
        }
    }

    fn ended(record: &UserRecord, resolution: Resolution, now: Timestamp) -> Option<ServerMessage> {
        record
            .needs_support()
            .then(|| ServerMessage::SupportRecovered {
                user_id: record.user_id.clone(),
                cleared: record.triggers.clone(),
                resolution,
                at: now.to_rfc3339(),
            })
    }

    /// A batch of in-app activity events of one user (`POST /api/track/user-activity`),
    /// received now: applies it to the user's record (creating it on a first event; an empty
    /// batch only updates a known user's email and tier), evaluates the rules and
    /// reports alerts (`SUPPORT_ALERT` / `SUPPORT_RECOVERED`), the Slack notifications the
    /// cooldown allows, and the user's deadline.
    pub async fn record_activity(
        &self,
        site: &SiteId,
        user_id: &str,
        identity: &UserIdentity,
        events: &[ActivityEvent],
    ) -> Result<Outcome, ServiceError> {
        let cfg = &self.config().support;
        let now = self.now();
        // A new user is counted against the site's quota once, then the batch is tried again.
        let mut quota_checked = false;
        let recorded = loop {
            let step = self
                .update(site, user_id, |current: Option<Versioned<UserRecord>>| {
                    if events.is_empty()
                        && current
                            .as_ref()
                            .is_none_or(|v| v.value.expired_at(now, cfg))
                    {
                        // Nothing to record for a user not (or no longer) known.
                        return Ok((Write::Keep, Some(None)));
                    }
                    if current.is_none() && !quota_checked {
                        return Ok((Write::Keep, None));
                    }
                    let mut messages = Vec::new();
                    let mut notifications = Vec::new();
                    let mut record = match current {
                        Some(v) if !v.value.expired_at(now, cfg) => v.value,
                        Some(v) => {
                            // Retention ended but not yet swept: start over.
                            messages.extend(Self::ended(&v.value, Resolution::Expired, now));
                            UserRecord::new(user_id, now, cfg)
                        }
                        None => UserRecord::new(user_id, now, cfg),
                    };
                    let change = record.apply_batch(identity, events, now, cfg);
                    self.support_messages(
                        site,
                        &record,
                        change,
                        now,
                        &mut messages,
                        &mut notifications,
                    );
                    let deadline = record.deadline;
                    Ok((
                        Write::Save(record),
                        Some(Some((messages, notifications, deadline))),
                    ))
                })
                .await?;
            match step {
                Some(recorded) => break recorded,
                None => {
                    let max = self.config().limits.max_users_per_site;
                    if self.store().count_users(site).await? >= max {
                        tracing::warn!(site = %site, max, "support user quota reached");
                        return Err(ServiceError::Quota(format!(
                            "this site has reached its limit of {max} support users; try again later"
                        )));
                    }
                    quota_checked = true;
                }
            }
        };
        let Some((messages, notifications, deadline)) = recorded else {
            return Ok(Outcome::default());
        };
        let outcome = Outcome {
            messages: self.sequence(site, messages).await?,
            deadline: Some(deadline),
            notifications,
            ..Outcome::default()
        };
        // An acknowledged batch is committed.
        self.store().sync().await?;
        Ok(outcome)
    }

    /// The time-driven part of the support rules for the users due at `now` (at most
    /// [`Limits::sweep_batch`](crate::config::Limits)): re-evaluates each, removes those whose
    /// retention ended. Returns the unsequenced messages and the notifications.
    pub(super) async fn sweep_users(
        &self,
        site: &SiteId,
        now: Timestamp,
    ) -> Result<(Vec<ServerMessage>, Vec<SupportNotice>), ServiceError> {
        let cfg = &self.config().support;
        let due = self
            .store()
            .due_users(site, now, self.config().limits.sweep_batch)
            .await?;
        let mut messages = Vec::new();
        let mut notifications = Vec::new();
        for current in due {
            let id = current.value.user_id.clone();
            let swept = self
                .update_from(site, &id, Some(current), |current| {
                    let mut messages = Vec::new();
                    let mut notifications = Vec::new();
                    let Some(current) = current.filter(|v| v.value.deadline <= now) else {
                        // Gone, or moved on by a concurrent write.
                        return Ok((Write::Keep, (messages, notifications)));
                    };
                    if current.value.expired_at(now, cfg) {
                        messages.extend(Self::ended(&current.value, Resolution::Expired, now));
                        return Ok((Write::Remove, (messages, notifications)));
                    }
                    let mut record = current.value;
                    let change = record.handle_timeout(now, cfg);
                    self.support_messages(
                        site,
                        &record,
                        change,
                        now,
                        &mut messages,
                        &mut notifications,
                    );
                    Ok((Write::Save(record), (messages, notifications)))
                })
                .await;
            match swept {
                Ok((m, n)) => {
                    messages.extend(m);
                    notifications.extend(n);
                }
                // Concurrent writers kept moving it: they re-armed its deadline.
                Err(ServiceError::Contention(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((messages, notifications))
    }

    /// The site's support users (summaries) and open alerts.
    pub async fn support_overview(&self, site: &SiteId) -> Result<SupportOverview, ServiceError> {
        let cfg = &self.config().support;
        let now = self.now();
        let seq = self.store().sequence(site).await?;
        let mut records: Vec<UserRecord> = self
            .store()
            .users(site)
            .await?
            .into_iter()
            .filter(|r| !r.expired_at(now, cfg))
            .collect();
        records.sort_by(|a, b| (b.last_event, &a.user_id).cmp(&(a.last_event, &b.user_id)));
        let mut alerts: Vec<&UserRecord> = records.iter().filter(|r| r.needs_support()).collect();
        alerts.sort_by(|a, b| (a.alert_since, &a.user_id).cmp(&(b.alert_since, &b.user_id)));
        Ok(SupportOverview {
            alerts: alerts.iter().map(|r| r.summary(now, cfg)).collect(),
            users: records
                .iter()
                .take(Self::SUPPORT_OVERVIEW_LIMIT)
                .map(|r| r.summary(now, cfg))
                .collect(),
            seq,
        })
    }

    /// A user's activity (`GET /api/users/{id}/activity`): one page of the kept events, the
    /// journey, the errors, why the user is flagged, and the live visitor the user is when
    /// the in-app tracker linked one and that visitor is present now. `None` for a user not
    /// known (or whose retention ended).
    pub async fn user_activity(
        &self,
        site: &SiteId,
        user_id: &str,
        page: ActivityPage,
    ) -> Result<Option<UserActivity>, ServiceError> {
        let cfg = &self.config().support;
        let now = self.now();
        let Some(record) = self
            .store()
            .user(site, user_id)
            .await?
            .map(|v| v.value)
            .filter(|r| !r.expired_at(now, cfg))
        else {
            return Ok(None);
        };
        let live = match record.visitor_id.as_deref() {
            Some(id) => self.present_visitor(site, id).await?.map(|v| LiveVisitor {
                visitor_id: id.to_owned(),
                is_bot: v.is_bot,
            }),
            None => None,
        };
        Ok(Some(record.activity(now, cfg, page, live)))
    }

    /// Deletes a user's activity data at once (a privacy request); a user needing support
    /// is reported recovered with resolution `deleted`. Returns whether there was anything
    /// to delete.
    pub async fn delete_user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<(bool, Outcome), ServiceError> {
        let now = self.now();
        let deleted = self
            .update(site, user_id, |current: Option<Versioned<UserRecord>>| {
                Ok(match current {
                    None => (Write::Keep, None),
                    Some(v) => (
                        Write::Remove,
                        Some(Self::ended(&v.value, Resolution::Deleted, now)),
                    ),
                })
            })
            .await?;
        let Some(ended) = deleted else {
            return Ok((false, Outcome::default()));
        };
        let outcome = Outcome {
            messages: self.sequence(site, ended.into_iter().collect()).await?,
            ..Outcome::default()
        };
        // A privacy deletion is committed before it is acknowledged.
        self.store().sync().await?;
        Ok((true, outcome))
    }
}
