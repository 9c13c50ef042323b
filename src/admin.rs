//! The admin HTTP server

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fednode_kit::config::Credential;
use fednode_kit::{AdminError, AdminRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// The routes, over a runtime. Every path but the two health probes needs
/// `auth` (`http.auth`; [`Credential::None`] lets everything through).
pub fn router(rt: Arc<Runtime>, auth: Credential) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/components", get(components))
        .route("/components/{name}/request", post(request))
        .route("/components/{name}/buffer", get(buffer))
        .route("/reload", post(reload))
        .route("/version", get(version))
        .route_layer(middleware::from_fn_with_state(Arc::new(auth), authorize));
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .merge(guarded)
        .with_state(rt)
}

/// Bind the admin server (an error names the address) and serve until
/// `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    auth: Credential,
    tls: Option<&fednode_ws::tls::ServerTls>,
    rt: Arc<Runtime>,
    cancel: CancellationToken,
) -> Result<Admin, String> {
    let tls = tls
        .map(|t| fednode_ws::tls::Acceptor::load(t, "http.tls"))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("admin server cannot listen on {addr} (http.listen): {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let app = router(rt, auth);
    let task = tokio::spawn(fednode_ws::server::serve(
        listener,
        app,
        fednode_ws::config::default_handshake_timeout(),
        tls.clone(),
        cancel,
        "admin server",
    ));
    Ok(Admin { local, task, tls })
}

/// A serving admin server.
pub struct Admin {
    pub local: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
    /// `http.tls`, whose files a reload reads again.
    pub tls: Option<Arc<fednode_ws::tls::Acceptor>>,
}

/// 401 (closing the connection) unless the request carries the credential.
async fn authorize(State(auth): State<Arc<Credential>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.accepts(given) {
        return next.run(req).await;
    }
    let challenge = if matches!(*auth, Credential::Basic { .. }) {
        "Basic realm=\"fednode admin\""
    } else {
        "Bearer realm=\"fednode admin\""
    };
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, challenge),
            (header::CONNECTION, "close"),
        ],
        Json(json!({"error": "unauthorized", "message": "this admin path needs the credential of http.auth"})),
    )
        .into_response()
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
        Json(json!({
            "healthy": healthy,
            "config_generation": rt.generation(),
            "bus": rt.bus_health(),
            "components": components,
        })),
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

/// `GET /version`: the build this node runs.
async fn version() -> Response {
    Json(json!({"version": crate::VERSION, "git_sha": crate::GIT_SHA})).into_response()
}

/// `POST /reload`: what SIGHUP does, answered as JSON: 200 with what
/// changed, 400 with the errors of a file that changes nothing, 500 when a
/// component of the new config did not start.
async fn reload(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.reload().await {
        Ok(report) => {
            let code = if report.failed.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (code, Json(report.to_json())).into_response()
        }
        Err(crate::runtime::ReloadError::Invalid(errors)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid_config",
                "message": "the config was not reloaded; the running config is unchanged",
                "errors": errors,
                "config_generation": rt.generation(),
            })),
        )
            .into_response(),
        Err(crate::runtime::ReloadError::Stopping) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "stopping", "message": "the node is stopping"})),
        )
            .into_response(),
    }
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
