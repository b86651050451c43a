//! `/api/alert-rules`: a site's alert rules through its secret key.
//!
//! - `GET /api/alert-rules` → `200 {"rules":[…],"destinations":{"slack":bool,"webhooks":n}}`
//!   (destinations are described, never shown: they hold secrets);
//! - `POST /api/alert-rules` with a rule → `201` and the rule as stored (`409` when its id is
//!   taken);
//! - `GET`/`PUT`/`DELETE /api/alert-rules/{id}` → the rule, the rule as replaced (the body's
//!   `id`, if any, must be `{id}`), `{"success":true,"deleted":true}`; `404` for an unknown id.
//!
//! - `GET /api/alert-destinations` → `200 {"slack":bool,"webhooks":[{"url":"https://host/…"}]}`
//!   (URLs shortened to their origin, secrets never shown); `PUT` with
//!   `{"slackWebhookUrl"?,"webhooks":[{"url","secret"}]}` replaces them (`https://`, no local
//!   or private address, unless [`AlertsConfig::allow_private_destinations`](crate::alerts::AlertsConfig)).
//!
//! - `GET /api/alerts?limit=50` → `200 {"alerts":[…],"failures":[…]}`: the latest alerts
//!   raised (newest first, `limit` 1–200), each with its deliveries (`channel`,
//!   `destination` (origin only), `state` `delivered`/`failed`, `attempts`, `reason`, `at`),
//!   and the latest failed deliveries of any kind (support alerts too).
//!
//! Rules written here are marked `"source":"api"` and kept when the configuration is loaded
//! again (see [`crate::settings::register_sites`]). Two admins writing at the same instant:
//! the last write wins.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::json;

use super::{ApiError, json_response, parse_body};
use crate::alerts::{AlertDestinations, AlertRule, RuleSource, check_destination_url, check_rules};
use crate::service::Tippen;
use crate::site::Site;

impl Tippen {
    pub(super) async fn alert_rules_call(
        &self,
        mut site: Site,
        method: &Method,
        id: Option<String>,
        body: &Bytes,
    ) -> Result<Response<Bytes>, ApiError> {
        let position = |site: &Site, id: &str| site.alert_rules.iter().position(|r| r.id == id);
        let not_found =
            |id: &str| ApiError::new(StatusCode::NOT_FOUND, format!("no alert rule {id:?}"));
        let target: String;
        let status = match (method, id) {
            (m, None) if m == Method::GET || m == Method::HEAD => {
                let body = json!({
                    "rules": site.alert_rules,
                    "destinations": {
                        "slack": site.alert_destinations.slack_webhook_url.is_some(),
                        "webhooks": site.alert_destinations.webhooks.len(),
                    },
                });
                return Ok(json_response(StatusCode::OK, &body));
            }
            (m, Some(id)) if m == Method::GET || m == Method::HEAD => {
                let i = position(&site, &id).ok_or_else(|| not_found(&id))?;
                return Ok(json_response(StatusCode::OK, &site.alert_rules[i]));
            }
            (m, Some(id)) if m == Method::DELETE => {
                let i = position(&site, &id).ok_or_else(|| not_found(&id))?;
                site.alert_rules.remove(i);
                self.put_site(&site).await?;
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"success": true, "deleted": true}),
                ));
            }
            (m, None) if m == Method::POST => {
                let rule: AlertRule = parse_body(body)?;
                if position(&site, &rule.id).is_some() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "alert rule {:?} exists; PUT /api/alert-rules/{} replaces it",
                            rule.id, rule.id
                        ),
                    ));
                }
                target = rule.id.clone();
                site.alert_rules.push(rule);
                StatusCode::CREATED
            }
            (m, Some(id)) if m == Method::PUT => {
                let mut value: serde_json::Value = parse_body(body)?;
                match value.get("id") {
                    None => {
                        if let Some(obj) = value.as_object_mut() {
                            obj.insert("id".into(), json!(id));
                        }
                    }
                    Some(given) if given == &json!(id) => {}
                    Some(_) => {
                        return Err(ApiError::bad_request(format!(
                            "the body's id must be the path's ({id:?})"
                        )));
                    }
                }
                let rule: AlertRule = parse_body(value.to_string().as_bytes())?;
                let i = position(&site, &id).ok_or_else(|| not_found(&id))?;
                target = id;
                site.alert_rules[i] = rule;
                StatusCode::OK
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {method} not allowed here"),
                ));
            }
        };
        // Every rule is checked again (limits, distinct ids); the written one is the API's.
        let sources: Vec<(String, RuleSource)> = site
            .alert_rules
            .iter()
            .map(|r| (r.id.clone(), r.source))
            .collect();
        let mut checked = check_rules(std::mem::take(&mut site.alert_rules), RuleSource::Api)
            .map_err(|e| ApiError::bad_request(e.0))?;
        for (rule, (_, source)) in checked.iter_mut().zip(&sources) {
            if rule.id != target {
                rule.source = *source;
            }
        }
        let stored = checked.iter().find(|r| r.id == target).cloned();
        site.alert_rules = checked;
        self.put_site(&site).await?;
        Ok(json_response(status, &stored))
    }

    pub(super) async fn alert_destinations_call(
        &self,
        mut site: Site,
        method: &Method,
        body: &Bytes,
    ) -> Result<Response<Bytes>, ApiError> {
        if method == Method::PUT {
            let given: AlertDestinations = parse_body(body)?;
            let given = given.checked().map_err(|e| ApiError::bad_request(e.0))?;
            let allow = self.config().alerts.allow_private_destinations;
            for url in given
                .slack_webhook_url
                .iter()
                .chain(given.webhooks.iter().map(|w| &w.url))
            {
                check_destination_url(url, allow).map_err(|e| ApiError::bad_request(e.0))?;
            }
            site.alert_destinations = given;
            self.put_site(&site).await?;
        }
        let d = &site.alert_destinations;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "slack": d.slack_webhook_url.is_some(),
                "webhooks": d.webhooks.iter().map(|w| json!({"url": w.url.to_string()})).collect::<Vec<_>>(),
            }),
        ))
    }

    pub(super) async fn alerts_response(
        &self,
        site: &Site,
        query: Option<&str>,
    ) -> Result<Response<Bytes>, ApiError> {
        let limit = match super::query_param(query, "limit") {
            None => 50,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("limit must be a whole number from 1 to 200")
                })?,
        };
        let log = self
            .store()
            .alert_log(&site.id, crate::alerts::ALERT_LOG_KEEP)
            .await
            .map_err(crate::service::ServiceError::from)?;
        let delivery = |e: &crate::alerts::AlertLogEntry| {
            json!({
                "state": e.event, "channel": e.channel, "destination": e.destination,
                "attempts": e.attempts, "reason": e.reason, "at": e.at,
            })
        };
        let alerts: Vec<serde_json::Value> = log
            .iter()
            .filter(|e| e.event == "raised")
            .take(limit)
            .map(|raised| {
                let deliveries: Vec<serde_json::Value> = log
                    .iter()
                    .rev()
                    .filter(|e| e.event != "raised" && e.kind == "alert" && e.id == raised.id)
                    .map(delivery)
                    .collect();
                json!({
                    "alertId": raised.id, "at": raised.at, "ruleId": raised.rule_id,
                    "ruleName": raised.rule_name, "visitorId": raised.visitor_id,
                    "company": raised.company, "domain": raised.domain,
                    "leadScore": raised.lead_score, "deliveries": deliveries,
                })
            })
            .collect();
        let failures: Vec<serde_json::Value> = log
            .iter()
            .filter(|e| e.event == "failed")
            .take(limit)
            .map(|e| {
                let mut d = delivery(e);
                d["kind"] = json!(e.kind);
                d["id"] = json!(e.id);
                d
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"alerts": alerts, "failures": failures}),
        ))
    }
}
