//! The HTTP server: auth, body checks, publish, 202.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use fednode_kit::config::{Credential, PortsConfig};
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::subject::Template;
use fednode_kit::{Component, Context, Health, Message, Meta, StartError};
use parking_lot::Mutex;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;

/// A running (or not yet started) `http_input`.
pub struct HttpInput {
    cfg: Config,
    credential: Credential,
    local: Mutex<Option<SocketAddr>>,
}

struct Shared {
    ctx: Context,
    credential: Credential,
    subject: Template,
    max_body: usize,
    metrics: Metrics,
}

impl HttpInput {
    pub fn new(cfg: Config, credential: Credential) -> Self {
        HttpInput {
            cfg,
            credential,
            local: Mutex::new(None),
        }
    }

    /// The bound address once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local.lock()
    }
}

#[async_trait]
impl Component for HttpInput {
    fn ports(&self) -> &PortsConfig {
        &self.cfg.ports
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let addr = format!("{}:{}", self.cfg.bind, self.cfg.http_port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| StartError::new(format!("cannot listen on {addr}: {e}")))?;
        *self.local.lock() = listener.local_addr().ok();
        let shared = Arc::new(Shared {
            credential: self.credential.clone(),
            subject: self.cfg.ports.output("out").expect("validated: out port"),
            max_body: self.cfg.max_body_bytes,
            metrics: Metrics::new(&ctx),
            ctx: ctx.clone(),
        });
        let base = self.cfg.path.trim_end_matches('/').to_string();
        let app = Router::new()
            .route(if base.is_empty() { "/" } else { &base }, post(ingest))
            .route(&format!("{base}/{{*suffix}}"), post(ingest))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared);
        let cancel = ctx.cancel.clone();
        tracing::info!(component = %ctx.name, %addr, path = %self.cfg.path, "http input listening");
        ctx.tracker.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
        });
        Ok(())
    }

    fn health(&self) -> Health {
        Health::ok(
            "running",
            json!({"addr": self.local_addr().map(|a| a.to_string()), "path": self.cfg.path}),
        )
    }
}

fn answer(s: &Shared, code: StatusCode, body: serde_json::Value) -> Response {
    s.metrics.requests.with(&[code.as_str()]).inc();
    (code, Json(body)).into_response()
}

async fn ingest(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.credential.accepts(auth) {
        s.metrics.errors.with(&["unauthorized"]).inc();
        return answer(
            &s,
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized"}),
        );
    }
    if body.len() > s.max_body {
        s.metrics.errors.with(&["too_large"]).inc();
        return answer(
            &s,
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "too_large", "message": format!("body is {} bytes; the limit is {}", body.len(), s.max_body)}),
        );
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            s.metrics.errors.with(&["parse_error"]).inc();
            return answer(
                &s,
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_json", "message": format!("the body is not JSON: {e}")}),
            );
        }
    };
    let id = new_id();
    let subject = s.subject.render(&value, Some(s.ctx.bus.origin()));
    let msg = Message::new(subject, body).with_meta(Meta {
        id: Some(id.as_str().into()),
        timestamp: Some(now_millis()),
        node: None,
        replay: false,
        origin: None,
    });
    match s.ctx.bus.publish_retrying(msg, &s.ctx.cancel).await {
        Ok(_) => {
            s.metrics.published.inc();
            answer(
                &s,
                StatusCode::ACCEPTED,
                json!({"accepted": true, "id": id}),
            )
        }
        Err(e) => {
            s.metrics.errors.with(&["publish_error"]).inc();
            answer(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": e.to_string()}),
            )
        }
    }
}
