//! Server mode: peers connect to `server.path`. A path with placeholders
//! (`/subscribe/{user_id}`) accepts every URL it matches and binds the
//! connection to the values there (see `routing::Binding`); any other path
//! is 404. Authentication and `max_connections` are checked before the
//! upgrade (401 / 503) by the transport's `Gate` (`fednode_ws::server`),
//! which also performs the upgrade; each admitted peer gets its own
//! [`Conn`](crate::conn::Conn) and session.

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use fednode_ws::identity::PeerInfo;
use fednode_ws::server::{upgrade, Rejection, ServerStream};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::error_type;
use crate::routing::Binding;
use crate::session;
use crate::shared::Shared;

/// Every request goes to [`accept`], which matches its path against the
/// configured one itself (axum's router would read `{name}` as its own
/// syntax, and would not percent-decode the way the contract says).
pub(crate) fn router(sh: Arc<Shared>) -> Router {
    Router::new().fallback(accept).with_state(sh)
}

async fn accept(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let template = sh.s.path.as_ref().expect("server mode has a path");
    let Some(values) = template.matches(req.uri().path()) else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let bound = (!template.is_literal()).then(|| Binding::new(template.names(), values));
    if sh.cancel.is_cancelled() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let gate = sh.gate.as_ref().expect("server mode has a gate");
    let admission = match gate.admit(req.headers()) {
        Ok(a) => a,
        Err(rejected) => {
            let kind = match rejected {
                Rejection::Unauthorized { .. } => error_type::UNAUTHORIZED,
                Rejection::Full { .. } => error_type::CONNECTION_LIMIT,
            };
            sh.metrics.error(kind).inc();
            tracing::info!(component = %sh.name, %remote, kind, "connection refused");
            return rejected.into_response();
        }
    };
    let config = sh.ws_config;
    let tracker = sh.tracker.clone();
    let identity = sh.identity.clone();
    upgrade(
        req,
        config,
        &tracker,
        &identity,
        move |ws, peer| async move {
            let _slot = admission;
            serve_peer(sh, ws, remote, peer, bound).await;
        },
    )
}

async fn serve_peer(
    sh: Arc<Shared>,
    ws: ServerStream,
    remote: SocketAddr,
    peer: PeerInfo,
    bound: Option<Binding>,
) {
    let conn = sh.open_conn(Some(remote), bound);
    let bound = conn.binding().map(|b| b.describe().to_string());
    tracing::info!(component = %sh.name, conn = %conn.id, %remote, peer_node = peer.node.as_deref(),
        bound = bound.as_deref(), "peer connected");
    conn.begin_session(peer);
    let end = session::run(&sh, &conn, ws).await;
    sh.close_conn(&conn);
    tracing::info!(component = %sh.name, conn = %conn.id, %remote, %end, "peer disconnected");
}
