//! The deployable tippen Worker: `tippen_worker::fetch` as the Worker's entry point and
//! `TippenSite`, the per-site Durable Object class, delegating to `tippen_worker::SiteObject`.
//! See `README.md` beside this crate for `wrangler dev` and `wrangler deploy`.

use worker::{Context, Env, Request, Response, Result, event};

/// The Worker's entry point.
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    tippen_worker::fetch(req, &env).await
}

pub use site::TippenSite;

/// The Durable Object class. The `#[durable_object]` macro generates the JavaScript-facing
/// methods (constructor, `fetch`, `alarm`, `webSocketMessage`, ...) without doc comments.
#[allow(missing_docs)]
mod site {
    use worker::{
        DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
        durable_object,
    };

    /// One site's Durable Object (`class_name = "TippenSite"` in `wrangler.toml`).
    #[durable_object]
    pub struct TippenSite {
        inner: tippen_worker::SiteObject,
    }

    impl DurableObject for TippenSite {
        fn new(state: State, env: Env) -> Self {
            TippenSite {
                inner: tippen_worker::SiteObject::new(state, env),
            }
        }

        async fn fetch(&self, req: Request) -> Result<Response> {
            self.inner.fetch(req).await
        }

        async fn alarm(&self) -> Result<Response> {
            self.inner.alarm().await
        }

        async fn websocket_message(
            &self,
            ws: WebSocket,
            message: WebSocketIncomingMessage,
        ) -> Result<()> {
            self.inner.websocket_message(ws, message).await
        }

        async fn websocket_close(
            &self,
            ws: WebSocket,
            code: usize,
            reason: String,
            was_clean: bool,
        ) -> Result<()> {
            self.inner
                .websocket_close(ws, code, reason, was_clean)
                .await
        }

        async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
            self.inner.websocket_error(ws, error).await
        }
    }
}
