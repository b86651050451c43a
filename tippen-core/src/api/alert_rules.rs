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
}
