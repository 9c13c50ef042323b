//! The admin HTTP server

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fednode_kit::{AdminError, AdminRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// The routes, over a runtime.
pub fn router(rt: Arc<Runtime>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/components", get(components))
        .route("/components/{name}/request", post(request))
        .route("/components/{name}/buffer", get(buffer))
        .with_state(rt)
}

/// Bind the admin server (an error names the address) and serve until
/// `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    rt: Arc<Runtime>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("admin server cannot listen on {addr} (http.listen): {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let app = router(rt);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok((local, task))
}

async fn health(State(rt): State<Arc<Runtime>>) -> Response {
    let (healthy, components) = rt.health();
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"healthy": healthy, "components": components})),
    )
        .into_response()
}

async fn ready(State(rt): State<Arc<Runtime>>) -> Response {
    let ready = rt.ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"ready": ready, "bus": {"kind": rt.bus.kind(), "connected": rt.bus.is_connected()}})),
    )
        .into_response()
}

async fn metrics(State(rt): State<Arc<Runtime>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        rt.metrics.render(),
    )
        .into_response()
}

async fn components(State(rt): State<Arc<Runtime>>) -> Json<Value> {
    Json(rt.describe())
}

fn admin_error(e: AdminError) -> Response {
    let (code, kind) = match &e {
        AdminError::NotSupported(_) => (StatusCode::NOT_FOUND, "not_supported"),
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (code, Json(json!({"error": kind, "message": e.to_string()}))).into_response()
}

fn no_component(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "message": format!("no enabled component named {name:?}")})),
    )
        .into_response()
}

async fn request(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(c) = rt.component(&name) else {
        return no_component(&name);
    };
    let req: AdminRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return admin_error(AdminError::BadRequest(format!(
                "expected {{\"method\", \"params\"?, \"connection\"?}}: {e}"
            )))
        }
    };
    match c.admin_request(req).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

#[derive(Deserialize)]
struct BufferQuery {
    count: Option<usize>,
    start_time: Option<i64>,
}

async fn buffer(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
    Query(q): Query<BufferQuery>,
) -> Response {
    let Some(c) = rt.component(&name) else {
        return no_component(&name);
    };
    match c.buffer(q.count, q.start_time).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}
