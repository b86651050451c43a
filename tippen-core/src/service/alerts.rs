//! The service's side of alert rules: a [`Subject`] from a visitor record, and the rules of
//! a site evaluated on it with their cooldowns claimed in the store. See [`crate::alerts`].

use crate::alerts::{self, ALERT_LOG_KEEP, AlertLogEntry, AlertNotice, Subject};
use crate::clock::Timestamp;
use crate::notify::{Label, Notice, Sent};
use crate::presence::{Company, VisitorRecord};
use crate::site::Site;

use super::Tippen;

/// What `record` tells the rules at `now`; `identified_now` when the event identified its
/// company.
pub(crate) fn subject_of(record: &VisitorRecord, now: Timestamp, identified_now: bool) -> Subject {
    let mut pages: Vec<String> = Vec::new();
    let mut started = record.first_seen;
    if let Some(visit) = &record.visit {
        started = visit.started_at;
        for page in &visit.pages {
            if !pages.iter().any(|p| **p == *page.path) {
                pages.push(page.path.to_string());
            }
        }
    }
    Subject {
        visitor_id: record.visitor_id.clone(),
        company: Company::clone(&record.company),
        pages,
        page_views: record.page_views.into(),
        time_on_site_ms: u64::try_from(now.as_millis() - started.as_millis()).unwrap_or(0),
        visit_started_at: started,
        identified_now: identified_now && alerts::identified(&record.company),
    }
}

impl Tippen {
    /// Records the end of one delivery ([`crate::notify::send`]) in the site's alert log, so
    /// `GET /api/alerts` shows it (every host calls this after each delivery). A store
    /// failure is logged.
    pub async fn record_delivery(&self, label: &Label, sent: &Sent) {
        let (event, attempts, reason) = match sent {
            Sent::Yes { attempts } => ("delivered", *attempts, None),
            Sent::No { attempts, reason } => ("failed", *attempts, Some(reason.clone())),
        };
        let entry = AlertLogEntry {
            at: self.clock.now().as_millis(),
            event: event.into(),
            kind: label.kind.into(),
            id: label.id.clone(),
            rule_id: None,
            rule_name: None,
            visitor_id: None,
            company: None,
            domain: None,
            lead_score: None,
            channel: Some(label.channel.into()),
            destination: Some(label.destination.clone()),
            attempts: Some(attempts),
            reason,
        };
        self.log_alert(&crate::site::SiteId::from(label.site.as_str()), entry)
            .await;
    }

    async fn log_alert(&self, site: &crate::site::SiteId, entry: AlertLogEntry) {
        if let Err(e) = self.store.log_alert(site, &entry, ALERT_LOG_KEEP).await {
            tracing::warn!(site = %site, error = %e, "alert log not written");
        }
    }

    /// The effects of `outcome` on `site` (`exact`: its deadline was read after a sweep), with
    /// the alerts its subjects raise. `known` is the site when the caller holds it; otherwise
    /// it is read, only when there are subjects.
    pub(crate) async fn effects_with_alerts(
        &self,
        site: &crate::site::SiteId,
        known: Option<&Site>,
        mut outcome: crate::service::Outcome,
        exact: bool,
    ) -> crate::effects::Effects {
        let subjects = std::mem::take(&mut outcome.alert_subjects);
        let mut effects = crate::effects::Effects::from_outcome(site, outcome, exact);
        if subjects.is_empty() {
            return effects;
        }
        let read;
        let site_record = match known {
            Some(s) => Some(s),
            None => {
                read = match self.store.site(site).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(site = %site, error = %e, "site not read; alert rules skipped");
                        None
                    }
                };
                read.as_ref()
            }
        };
        if let Some(s) = site_record {
            effects
                .notifications
                .extend(self.alerts_of(s, subjects).await);
        }
        effects
    }

    /// The alerts `subjects` raise on `site` now: every rule that matches (conditions and
    /// business hours) and whose cooldown for the subject's company this call claims. The
    /// claim is one atomic store call ([`Store::spend_ticket`](crate::Store::spend_ticket)
    /// with the key `alert:<rule>:<company>`), so of concurrent events, and across processes
    /// sharing the store, one alerts per cooldown. A store failure skips the alert (logged).
    pub(crate) async fn alerts_of(&self, site: &Site, subjects: Vec<Subject>) -> Vec<Notice> {
        if site.alert_rules.is_empty() || subjects.is_empty() {
            return Vec::new();
        }
        let now = self.clock.now();
        let mut notices = Vec::new();
        for subject in subjects {
            for rule in alerts::matching(&site.alert_rules, &subject, now) {
                if let Some(days) = rule.when.returning_within_days
                    && !self.returned_within(site, &subject, days).await
                {
                    continue;
                }
                let key = format!("alert:{}:{}", rule.id, subject.cooldown_key());
                let until = Timestamp::from_millis(now.as_millis() + rule.cooldown_ms().max(1));
                match self.store.spend_ticket(&site.id, &key, now, until).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(site = %site.id, rule = %rule.id, error = %e, "alert cooldown not claimed; alert skipped");
                        continue;
                    }
                }
                tracing::info!(site = %site.id, rule = %rule.id, visitor = %subject.visitor_id, "alert rule matched");
                let notice = AlertNotice {
                    site: site.id.clone(),
                    site_name: site.name.clone(),
                    alert_id: self.ids.id("alt"),
                    rule_id: rule.id.clone(),
                    rule_name: rule.name.clone(),
                    lead_score: alerts::lead_score(&subject),
                    subject: subject.clone(),
                    at: now,
                    destinations: site.alert_destinations.clone(),
                };
                self.log_alert(&site.id, AlertLogEntry::raised(&notice))
                    .await;
                notices.push(Notice::Alert(Box::new(notice)));
            }
        }
        notices
    }

    /// Whether the subject's company has a closed visit in the site's history that started
    /// within `days` before the subject's visit (false without history, for an unidentified
    /// company, or when history cannot be read: logged).
    async fn returned_within(&self, site: &Site, subject: &Subject, days: u32) -> bool {
        let Some(history) = self.history() else {
            return false;
        };
        if !alerts::identified(&subject.company) {
            return false;
        }
        let company = subject
            .company
            .domain
            .clone()
            .unwrap_or_else(|| subject.company.name.clone());
        let to = subject.visit_started_at;
        let query = crate::history::VisitQuery {
            from: Timestamp::from_millis(to.as_millis() - i64::from(days) * 86_400_000),
            to,
            filter: crate::history::VisitFilter {
                company: Some(company),
                ..Default::default()
            },
            after: None,
            limit: 1,
        };
        match history.visits(&site.id, &query).await {
            Ok(visits) => !visits.is_empty(),
            Err(e) => {
                tracing::warn!(site = %site.id, error = %e, "history not read; returningWithinDays taken as not met");
                false
            }
        }
    }
}
