//! The WebSocket function: API Gateway WebSocket API routes `$connect` (key check, role from
//! the query: `role=visitor&visitorId=…` for the visitor channel, a dashboard otherwise),
//! `$disconnect` and `$default` (dashboard and visitor-channel messages).
//!
//! API Gateway does not let a function send on a connection before its `$connect` returned.
//! So `$connect` stores the connection and invokes this same function asynchronously
//! (`InvocationType=Event`) with a [`Hello`] event. Until the greeting is done, fan-outs
//! append the connection's messages to its outbox in DynamoDB instead of posting them. The
//! greeting waits until the connection is open (`GetConnection`), sends the first message
//! (`INITIAL_VISITORS` for a dashboard, the open invite for a visitor), marks the connection
//! greeted and sends its outbox (dashboard messages the snapshot already reflects are
//! skipped). Nothing arrives before the first message and nothing after the snapshot is lost.

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use lambda_runtime::{LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tippen_core::api::ApiError;

use crate::fanout::Posted;
use crate::host::{HostError, LambdaHost};
use crate::store::Connection;
use tippen_core::api::SocketRole;

/// The event `$connect` sends (asynchronously) to greet a new connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The connection to greet.
    pub tippen_hello: String,
}

/// How long a greeting waits for API Gateway to open the connection.
const OPEN_WAIT: Duration = Duration::from_secs(5);

fn respond(status: u16, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = i64::from(status);
    r.body = body.map(Body::Text);
    r
}

fn from_core(res: http::Response<Bytes>) -> ApiGatewayProxyResponse {
    let status = res.status().as_u16();
    let body = String::from_utf8_lossy(res.body()).into_owned();
    let mut r = respond(status, (!body.is_empty()).then_some(body));
    if let Some(ct) = res.headers().get(http::header::CONTENT_TYPE) {
        r.headers.insert(http::header::CONTENT_TYPE, ct.clone());
    }
    r
}

/// The `seq` of a dashboard message.
fn message_seq(text: &str) -> Option<u64> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("seq")
        .and_then(Value::as_u64)
}

fn query_string(req: &ApiGatewayWebsocketProxyRequest) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in req.query_string_parameters.iter() {
        q.append_pair(k, v);
    }
    q.finish()
}

impl LambdaHost {
    /// Handles one WebSocket route event.
    pub async fn handle_ws(
        &self,
        req: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HostError> {
        let ctx = &req.request_context;
        let Some(connection_id) = ctx.connection_id.clone() else {
            return Ok(respond(400, Some(r#"{"error":"no connectionId"}"#.into())));
        };
        match ctx.route_key.as_deref() {
            Some("$connect") => self.ws_connect(&req, connection_id).await,
            Some("$disconnect") => {
                if let Some(conn) = self.store().connection(&connection_id).await? {
                    self.store().remove_connection(&conn).await?;
                }
                Ok(respond(200, None))
            }
            _ => {
                let text = req.body.clone().unwrap_or_default();
                self.ws_message(connection_id, &text).await?;
                Ok(respond(200, None))
            }
        }
    }

    async fn ws_connect(
        &self,
        req: &ApiGatewayWebsocketProxyRequest,
        connection_id: String,
    ) -> Result<ApiGatewayProxyResponse, HostError> {
        let query = query_string(req);
        let path = match req.query_string_parameters.first("role") {
            None | Some("dashboard") => "/ws/dashboard",
            Some("visitor") => "/ws/visitor",
            Some(other) => {
                let e = ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    format!("unknown role {other:?} (expected dashboard or visitor)"),
                );
                return Ok(from_core(e.into_response()));
            }
        };
        // Upgrades count against the limits like requests (the same counters).
        let source_ip = req
            .request_context
            .identity
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok());
        if let Some(refusal) = self.over_address_limit(source_ip).await {
            return Ok(from_core(refusal));
        }
        if let Ok(mut head) = http::Request::builder()
            .uri(format!("{path}?{query}"))
            .body(bytes::Bytes::new())
        {
            *head.headers_mut() = req.headers.clone();
            if let Some(refusal) = self.over_key_limit(&head).await {
                return Ok(from_core(refusal));
            }
        }
        let authorized = self
            .tippen()
            .authorize_socket(path, &req.headers, Some(&query));
        let role = match authorized.await {
            Some(Ok(role)) => role,
            Some(Err(refusal)) => return Ok(from_core(refusal)),
            // Both paths above are socket paths; answer like an unknown route all the same.
            None => {
                let e = ApiError::new(http::StatusCode::NOT_FOUND, format!("{path} is no socket"));
                return Ok(from_core(e.into_response()));
            }
        };
        // The socket quotas, before the connection is stored (API Gateway refuses the upgrade
        // with this status and body). Counting and storing are two steps: upgrades to one
        // site racing each other may pass the quota by as many as race.
        let now = self.tippen().now();
        let address_tag = source_ip.map(tippen_core::quota::address_tag);
        let quotas = self.tippen().socket_quotas_of(role.site()).await;
        let (on_site, from_address) = self
            .store()
            .count_connections(role.site(), address_tag.as_deref(), now)
            .await?;
        if let Err(refusal) = quotas.admit(on_site, from_address) {
            tracing::debug!(site = %role.site(), "upgrade over a socket quota");
            return Ok(from_core(refusal));
        }
        let budget = matches!(role, SocketRole::Dashboard { .. }).then(|| quotas.snapshot_budget());
        let conn = Connection {
            connection_id: connection_id.clone(),
            role,
        };
        self.store()
            .put_connection(&conn, now, address_tag.as_deref(), budget.as_ref())
            .await?;
        let function = self
            .config()
            .ws_function
            .clone()
            .ok_or(crate::config::ConfigError::Missing("TIPPEN_WS_FUNCTION"))?;
        let payload = serde_json::to_vec(&Hello {
            tippen_hello: connection_id,
        })
        .map_err(|e| HostError::Aws(e.to_string()))?;
        self.lambda()
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| HostError::Aws(format!("Invoke (hello): {e:?}")))?;
        Ok(respond(200, None))
    }

    /// Waits until API Gateway reports the connection open; false if it never does.
    async fn wait_open(&self, connection_id: &str) -> bool {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            if self.fanout().is_open(connection_id).await {
                return true;
            }
            if start.elapsed() >= OPEN_WAIT {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Greets a new connection (the asynchronous invocation `$connect` made; until then
    /// fan-outs queue messages in the connection's outbox): waits until it is open, sends the
    /// first message,
    /// then marks it greeted and sends what was queued meanwhile, in order. Nothing reaches
    /// the connection before its first message, and nothing fanned out after its snapshot is
    /// lost.
    pub async fn ws_hello(&self, hello: Hello) -> Result<(), HostError> {
        let Some(conn) = self.store().connection(&hello.tippen_hello).await? else {
            return Ok(());
        };
        if !self.wait_open(&conn.connection_id).await {
            tracing::info!(connection = %conn.connection_id, "connection never opened");
            self.fanout().forget(conn).await;
            return Ok(());
        }
        // The first message is the reply; its effects (a visitor's invite now delivered)
        // go out first.
        let opened = self.tippen().socket_open(&conn.role).await?;
        let first = self.apply(opened, Some(&conn.connection_id)).await.reply;
        let seen_seq = first.as_deref().and_then(message_seq);
        if let Some(first) = first
            && self.fanout().post(&conn.connection_id, &first).await != Posted::Sent
        {
            self.fanout().forget(conn).await;
            return Ok(());
        }
        let Some(queued) = self.store().greet_connection(&conn).await? else {
            return Ok(());
        };
        // Dashboard messages the snapshot already reflects are skipped.
        let queued: Vec<String> = queued
            .into_iter()
            .filter(|text| seen_seq.is_none_or(|seen| message_seq(text).is_none_or(|s| s > seen)))
            .collect();
        if self.fanout().post_all(&conn.connection_id, &queued).await == Posted::Gone {
            self.fanout().forget(conn).await;
        }
        Ok(())
    }

    async fn ws_message(&self, connection_id: String, text: &str) -> Result<(), HostError> {
        // A dashboard's `GET_VISITORS` spends from its snapshot budget, stored with the
        // connection: the budget is saved only if no other frame of the connection spent from
        // it meanwhile, else the frame is read again (a snapshot changes nothing, so building
        // one again is harmless).
        let attempts = self.tippen().config().limits.max_write_attempts.max(1);
        let mut answered = None;
        for _ in 0..attempts {
            let Some((conn, stored)) = self.store().connection_with_budget(&connection_id).await?
            else {
                return Ok(());
            };
            let before = stored.unwrap_or_default();
            let mut budget = before;
            let effects = self
                .tippen()
                .socket_frame_within(&conn.role, &mut budget, text)
                .await?;
            if budget != before
                && !self
                    .store()
                    .save_snapshot_budget(&connection_id, stored.as_ref(), &budget)
                    .await?
            {
                continue;
            }
            answered = Some(effects);
            break;
        }
        let Some(effects) = answered else {
            tracing::warn!(connection = %connection_id, "snapshot budget contended; frame dropped");
            return Ok(());
        };
        // Pushes skip this connection: it gets the reply.
        if let Some(reply) = self.apply(effects, Some(&connection_id)).await.reply {
            self.fanout().post(&connection_id, &reply).await;
        }
        Ok(())
    }

    /// Handles any event the WebSocket function receives: a route event or a [`Hello`].
    pub async fn handle_ws_event(&self, event: Value) -> Result<Value, HostError> {
        if event.get("tippenHello").is_some() {
            let hello: Hello =
                serde_json::from_value(event).map_err(|e| HostError::Aws(e.to_string()))?;
            self.ws_hello(hello).await?;
            return Ok(Value::Null);
        }
        let req: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).map_err(|e| HostError::Aws(e.to_string()))?;
        let res = self.handle_ws(req).await?;
        serde_json::to_value(res).map_err(|e| HostError::Aws(e.to_string()))
    }
}

/// Runs the WebSocket function until the Lambda runtime stops it.
pub async fn run(host: LambdaHost) -> Result<(), HostError> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let host = host.clone();
        // Boxed: keeps the runtime's future type shallow (and the binary's layout queries).
        Box::pin(async move {
            host.handle_ws_event(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        })
    }))
    .await
    .map_err(|e| HostError::Aws(format!("Lambda runtime: {e}")))
}
