//! The HTTP server: auth, body checks, the members a templated path binds,
//! publish, 202.

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use fednode_kit::component::Listen;
use fednode_kit::config::{Credential, PortsConfig};
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::json::{bind_member, Bound};
use fednode_kit::subject::Template;
use fednode_kit::{Component, Context, Health, Message, Meta, StartError};
use fednode_ws::server::PathTemplate;
use futures::StreamExt;
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
    /// `tls`, once started.
    tls: std::sync::OnceLock<Arc<fednode_ws::tls::Acceptor>>,
}

struct Shared {
    ctx: Context,
    credential: Credential,
    /// `path`; its placeholders bind members of the body.
    template: PathTemplate,
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
            tls: std::sync::OnceLock::new(),
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

    fn listens(&self) -> Vec<Listen> {
        self.cfg.listen().into_iter().collect()
    }

    fn reread_certificates(&self) -> Result<(), String> {
        self.tls.get().map_or(Ok(()), |a| a.reread())
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let tls = self
            .cfg
            .tls
            .as_ref()
            .map(|t| {
                fednode_ws::tls::Acceptor::load(t, &format!("components.{}.config.tls", ctx.name))
            })
            .transpose()
            .map_err(StartError::new)?;
        if let Some(a) = &tls {
            let _ = self.tls.set(a.clone());
        }
        let addr = format!("{}:{}", self.cfg.bind, self.cfg.http_port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| StartError::new(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().ok();
        *self.local.lock() = local;
        let template = self.cfg.template().expect("validated: path");
        let literal = template.is_literal();
        let shared = Arc::new(Shared {
            template,
            credential: self.credential.clone(),
            subject: self.cfg.ports.output("out").expect("validated: out port"),
            max_body: self.cfg.max_body_bytes,
            metrics: Metrics::new(&ctx),
            ctx: ctx.clone(),
        });
        let app = if literal {
            let base = self.cfg.path.trim_end_matches('/').to_string();
            Router::new()
                .route(if base.is_empty() { "/" } else { &base }, post(ingest))
                .route(&format!("{base}/{{*suffix}}"), post(ingest))
                .with_state(shared)
        } else {
            // Matched here, not by axum, whose router reads `{name}` as
            // its own syntax.
            Router::new().fallback(templated).with_state(shared)
        };
        let addr = local.map_or(addr, |a| a.to_string());
        tracing::info!(component = %ctx.name, %addr, path = %self.cfg.path, "http input listening");
        ctx.tracker.spawn(fednode_ws::server::serve(
            listener,
            app,
            fednode_ws::config::default_handshake_timeout(),
            tls,
            ctx.cancel.clone(),
            "http input",
        ));
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

/// An answer that also closes the connection: the rest of the request's
/// body (if any) is never read.
fn refuse(s: &Shared, code: StatusCode, body: serde_json::Value) -> Response {
    let mut response = answer(s, code, body);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large(s: &Shared, what: &str) -> Response {
    s.metrics.errors.with(&["too_large"]).inc();
    refuse(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({"error": "too_large", "message": format!("{what} than max_body_bytes ({} bytes)", s.max_body)}),
    )
}

/// The body, or `None` as soon as it grows past `limit` (a chunked body is
/// not read further).
async fn read_limited(body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// A literal `path`: `POST {path}` and `POST {path}/{anything}`.
async fn ingest(State(s): State<Arc<Shared>>, request: Request) -> Response {
    receive(&s, request, Vec::new()).await
}

/// A `path` with placeholders: only the paths it matches (404 otherwise,
/// 405 for another method), binding its values.
async fn templated(State(s): State<Arc<Shared>>, request: Request) -> Response {
    let Some(values) = s.template.matches(request.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if request.method() != http::Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    }
    receive(&s, request, values).await
}

/// Auth first, then the declared length, then the body read up to the
/// limit: nothing of a refused request's body is ever read or held. Then
/// the body must be JSON and, for each of `bound` (the path's placeholder
/// values), hold that member or get it.
async fn receive(s: &Shared, request: Request, bound: Vec<String>) -> Response {
    let (parts, body) = request.into_parts();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.credential.accepts(auth) {
        s.metrics.errors.with(&["unauthorized"]).inc();
        return refuse(
            s,
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized"}),
        );
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > s.max_body as u64) {
        return too_large(s, &format!("body is {len} bytes, more"));
    }
    let body = match read_limited(body, s.max_body).await {
        Ok(Some(body)) => body,
        Ok(None) => return too_large(s, "body is longer"),
        Err(e) => {
            s.metrics.errors.with(&["read_error"]).inc();
            return refuse(
                s,
                StatusCode::BAD_REQUEST,
                json!({"error": "read_error", "message": format!("the body could not be read: {e}")}),
            );
        }
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            s.metrics.errors.with(&["parse_error"]).inc();
            return answer(
                s,
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_json", "message": format!("the body is not JSON: {e}")}),
            );
        }
    };
    let mut body = body;
    for (name, bound) in s.template.names().iter().zip(bound) {
        match bind_member(&body, name, &bound) {
            Bound::Added(with) => {
                body = with;
                if let serde_json::Value::Object(members) = &mut value {
                    members.insert(name.to_string(), serde_json::Value::String(bound));
                }
            }
            Bound::Present(given) if given == bound => {}
            Bound::Present(given) => {
                s.metrics.errors.with(&["bound_mismatch"]).inc();
                return answer(
                    s,
                    StatusCode::BAD_REQUEST,
                    json!({"error": "bound_mismatch", "message": format!(
                        "the path binds {name} to {bound:?}, but the body has {name} {given:?}"
                    )}),
                );
            }
            Bound::NotAnObject => {
                s.metrics.errors.with(&["not_an_object"]).inc();
                return answer(
                    s,
                    StatusCode::BAD_REQUEST,
                    json!({"error": "not_an_object", "message": format!(
                        "the path binds {name} to {bound:?}, so the body must be a JSON object (it gets {name} when missing)"
                    )}),
                );
            }
        }
    }
    let id = new_id();
    let subject = s.subject.render(&value, Some(s.ctx.bus.origin()));
    let msg = Message::new(subject, body).with_meta(Meta {
        id: Some(id.clone()),
        timestamp: Some(now_millis()),
        node: None,
        replay: false,
        origin: None,
    });
    match s.ctx.bus.publish_retrying(msg, &s.ctx.cancel).await {
        Ok(_) => {
            s.metrics.published.inc();
            answer(
                s,
                StatusCode::ACCEPTED,
                json!({"accepted": true, "id": &*id}),
            )
        }
        Err(e) => {
            s.metrics.errors.with(&["publish_error"]).inc();
            answer(
                s,
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": e.to_string()}),
            )
        }
    }
}
